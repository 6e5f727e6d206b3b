#!/usr/bin/env bash
# Issue 14's snapshot-transfer numbers (bench/snapxfer-bench.py): a node
# added to a loaded cluster catches up by a streamed snapshot; time, write
# latency meanwhile, RSS of sender and receiver, loop lag.  Every process is
# killed by PID on exit.
#
#   bench/snapxfer-bench.sh [BUILD_DIR]     (default: build-release)
#   KEYS=1000000 WRITERS=8 bench/snapxfer-bench.sh
exec "$(dirname "$0")/with-build.sh" "${1:-build-release}" bench/snapxfer-bench.py
