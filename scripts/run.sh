#!/usr/bin/env bash
# The main job, until raftkv-node exists: build, then run the consensus core
# through the deterministic simulator (3- and 5-node clusters under loss,
# partitions, crashes, transfers, snapshots and membership changes) and
# through the in-process throughput benchmark, printing a readable summary.
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=${SIM_SEEDS:-200}
[ -d build/meson-private ] || meson setup build >/dev/null
ninja -C build >/dev/null
echo "== simulator: $seeds seeds per cluster size"
build/tests/sim/sim --nodes 3 --seeds "$seeds"
build/tests/sim/sim --nodes 5 --seeds "$seeds"
echo "== consensus core throughput (3 nodes in one process, no I/O)"
build/bench/raft-bench --entries 2000000 --size 100
