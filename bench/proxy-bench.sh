#!/usr/bin/env bash
# Proxy numbers for BENCHMARKS.md: throughput and p99 through raftkv-proxy
# versus straight to the leader in the same run, the share of reads served
# by followers, and client-visible unavailability after kill -9 of the
# leader (median of TRIALS).  Every process is killed by PID on exit.
#
#   bench/proxy-bench.sh [BUILD_DIR]      (default: build)
#   DURATION=10 ROUNDS=1 TRIALS=10 bench/proxy-bench.sh
#   PIPELINE=16 TRIALS=0 bench/proxy-bench.sh build-release   (16 requests in flight per client)
#   LEASE=1 TRIALS=0 bench/proxy-bench.sh build-release   (cluster.lease_reads on)
set -euo pipefail
cd "$(dirname "$0")/.."
b=${1:-build}
ninja -C "$b" src/node/raftkv-node src/proxy/raftkv-proxy src/ctl/raftkvctl >/dev/null
RAFTKV_NODE=$b/src/node/raftkv-node RAFTKV_PROXY=$b/src/proxy/raftkv-proxy RAFTKV_CTL=$b/src/ctl/raftkvctl \
  exec /usr/bin/python3 bench/proxy-bench.py
