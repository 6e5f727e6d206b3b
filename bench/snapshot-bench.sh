#!/usr/bin/env bash
# Issue 14's numbers (bench/snapshot-bench.py): elections, latency and loop
# lag while snapshots of a growing dataset are written under write load.
# Every process is killed by PID on exit.
#
#   bench/snapshot-bench.sh [BUILD_DIR]     (default: build-release)
#   KEYS=2000000 DURATION=40 CLIENTS=64 bench/snapshot-bench.sh build-rel
exec "$(dirname "$0")/with-build.sh" "${1:-build-release}" bench/snapshot-bench.py
