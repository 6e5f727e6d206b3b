#!/usr/bin/env bash
# Issue 17: system calls and CPU per request of the proxy and every node,
# through the proxy and straight to the leader (bench/proxy-syscalls.py).
# Every process is killed by PID on exit.
#
#   bench/proxy-syscalls.sh [BUILD_DIR]     (default: build-release)
#   REQUESTS=20000 PIPELINE=16 THREADS=2 bench/proxy-syscalls.sh
exec "$(dirname "$0")/with-build.sh" "${1:-build-release}" bench/proxy-syscalls.py
