#!/usr/bin/python3
"""snapxfer-bench.py - issue 14's snapshot-transfer numbers, one run, real
processes on 127.0.0.1.

A 3-node cluster with the default timing (tick 10 ms, heartbeat 20 ms,
election timeout 150 ms) is filled with KEYS keys of 100 B (raftkvctl
bench's prefill).  WRITERS sequential writers keep writing while node 4 is
started with --join and added (`raftkvctl member add 4`); it catches up by
snapshot, streamed from the leader's file.  Reported:
  - time from the command to node 4 being a voter less than 1000 entries
    behind, and node 4's own account of the transfer and the load;
  - the writers' latency while the transfer runs (median, p99, max) and the
    longest stretch with no acknowledged write;
  - RSS of the leader and of node 4 sampled every 20 ms: before, peak
    during, after; the snapshot's size;
  - every node's longest loop iteration since start (STATUS
    loop_lag_max_us; the leader's includes the prefill);
  - leader changes during the run (terms before/after).

    bench/snapxfer-bench.sh [BUILD_DIR]     (default: build-release)
    KEYS=1000000 WRITERS=8 bench/snapxfer-bench.sh
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clusterbench import DEFAULT_TIMING, add_member, harness, loaded  # noqa: E402
from harness import Cluster  # noqa: E402

KEYS = int(os.environ.get("KEYS", "1000000"))
WRITERS = int(os.environ.get("WRITERS", "8"))


def main():
    with Cluster(3, cluster_id=os.urandom(16).hex(), log_level="info", **DEFAULT_TIMING) as c:
        lead = c.start_and_lead()
        loaded(c, lead, KEYS, WRITERS)
        lead = c.wait_leader()
        # the leader's snapshot must cover the prefill, or node 4 catches up from the log
        harness.wait_until(lambda: (st := c.status(lead)) and st.snapshot_index >= KEYS // 2, 300,
                           "a snapshot covering the prefill")
        add_member(c, lead, WRITERS)


if __name__ == "__main__":
    main()
