#!/usr/bin/env bash
# Run one of bench/*.py against a release build's node, proxy and raftkvctl:
#   bench/with-build.sh BUILD_DIR bench/NAME.py
# (configures BUILD_DIR as a release build first if it is not one yet).
set -euo pipefail
cd "$(dirname "$0")/.."
b=$1
[ -d "$b/meson-private" ] || meson setup "$b" --buildtype=release -Dtests=disabled >/dev/null
ninja -C "$b" src/node/raftkv-node src/proxy/raftkv-proxy src/ctl/raftkvctl >/dev/null
RAFTKV_NODE=$b/src/node/raftkv-node RAFTKV_PROXY=$b/src/proxy/raftkv-proxy RAFTKV_CTL=$b/src/ctl/raftkvctl \
  exec /usr/bin/python3 "$(pwd)/$2"
