#!/usr/bin/env bash
# Issue 13's numbers (bench/membership-bench.py): time for a new node to
# become a caught-up voter, client-visible write gaps while members are
# added and removed, and idle CPU.  Every process is killed by PID on exit.
#
#   bench/membership-bench.sh [BUILD_DIR]     (default: build-release)
#   KEYS=1000000 WRITERS=8 bench/membership-bench.sh
exec "$(dirname "$0")/with-build.sh" "${1:-build-release}" bench/membership-bench.py
