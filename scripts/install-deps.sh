#!/usr/bin/env bash
# Install everything raftkv needs to build and test on Debian 12 (bookworm).
# Idempotent; uses sudo when not run as root.
set -euo pipefail

packages=(
  build-essential meson ninja-build pkg-config
  libcmocka-dev libev-dev libprotobuf-c-dev protobuf-c-compiler libsystemd-dev
  python3 python3-protobuf protobuf-compiler
  libreadline-dev scdoc
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
