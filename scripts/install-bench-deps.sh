#!/usr/bin/env bash
# Install what bench/etcd-vs-raftkv.sh needs on Debian 12 (bookworm): etcd
# 3.4 (server and etcdctl), Go, and the Go sources of etcd's client
# (golang-etcd-server-dev, which pulls its dependencies as golang-*-dev), to
# build bench/etcd/loadgen.go offline.  Idempotent; uses sudo when not root.
# Benchmarks are run by hand, so scripts/install-deps.sh does not do this.
set -euo pipefail

packages=(etcd-server etcd-client golang-go golang-etcd-server-dev)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-bench-deps: all ${#packages[@]} packages present"
  exit 0
fi
echo "install-bench-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
# --no-install-recommends keeps the etcd-server package from pulling more
# than the binaries.  The Debian package enables an etcd.service on install;
# the benchmark starts its own members on other ports, but a running system
# etcd would share the CPUs, so stop it (not an error when absent).
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet etcd 2>/dev/null; then
  echo "install-bench-deps: stopping the system etcd.service (it would share the CPUs)"
  $SUDO systemctl stop etcd || true
  $SUDO systemctl disable etcd 2>/dev/null || true
fi
