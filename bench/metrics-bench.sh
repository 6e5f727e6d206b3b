#!/usr/bin/env bash
# Issue 16's numbers for BENCHMARKS.md (bench/metrics-bench.py): write and
# read throughput with metrics on (scraped each second) against off, and the
# time and size of a /metrics scrape on a 5-node cluster.
#
#   bench/metrics-bench.sh [BUILD_DIR]     (default: build-release)
#   DURATION=10 ROUNDS=3 SCRAPES=200 bench/metrics-bench.sh
exec "$(dirname "$0")/with-build.sh" "${1:-build-release}" bench/metrics-bench.py
