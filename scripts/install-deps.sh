#!/usr/bin/env bash
# Install everything raftkv needs to build and test on Debian 12 (bookworm).
# Idempotent; uses sudo when not run as root.
set -euo pipefail

packages=(
  build-essential meson ninja-build pkg-config
  libcmocka-dev libev-dev libprotobuf-c-dev protobuf-c-compiler libsystemd-dev
  # TLS on peer links and raftkvctl config generate --tls (OpenSSL 3)
  libssl-dev
  python3 python3-protobuf protobuf-compiler
  libreadline-dev scdoc
  clang libclang-rt-14-dev
  # packages and the systemd container test (tests/systemd)
  debhelper dpkg-dev fakeroot lintian rpm rpmlint debootstrap systemd-container
  # fault injection (tests/chaos): network namespaces and veth pairs
  iproute2 procps
  # metrics endpoint (issue 16) and promtool for checking /metrics and the alert rules
  libmicrohttpd-dev prometheus
)

exec "$(dirname "$0")/apt-install.sh" install-deps "${packages[@]}"
