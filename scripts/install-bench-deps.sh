#!/usr/bin/env bash
# Install what bench/etcd-vs-raftkv.sh needs on Debian 12 (bookworm): etcd
# 3.4 (server and etcdctl), Go, and the Go sources of etcd's client
# (golang-etcd-server-dev, which pulls its dependencies as golang-*-dev), to
# build bench/etcd/loadgen.go offline.  Idempotent; uses sudo when not root.
# Benchmarks are run by hand, so scripts/install-deps.sh does not do this.
set -euo pipefail

packages=(etcd-server etcd-client golang-go golang-etcd-server-dev)

"$(dirname "$0")/apt-install.sh" install-bench-deps "${packages[@]}"
# The Debian package enables an etcd.service on install; the benchmark
# starts its own members on other ports, but a running system etcd would
# share the CPUs, so stop it (not an error when absent).
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet etcd 2>/dev/null; then
  echo "install-bench-deps: stopping the system etcd.service (it would share the CPUs)"
  $SUDO systemctl stop etcd || true
  $SUDO systemctl disable etcd 2>/dev/null || true
fi
