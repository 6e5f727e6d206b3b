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
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clusterbench import DEFAULT_TIMING, Writers, ctl, harness, loaded, members, start_joining  # noqa: E402
from harness import Cluster  # noqa: E402

KEYS = int(os.environ.get("KEYS", "1000000"))
WRITERS = int(os.environ.get("WRITERS", "8"))


def rss_mb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for ln in f:
                if ln.startswith("VmRSS:"):
                    return int(ln.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Sampler(threading.Thread):
    def __init__(self, pids):
        super().__init__(daemon=True)
        self.pids, self.stop, self.peak = pids, threading.Event(), {i: 0.0 for i in pids}

    def run(self):
        while not self.stop.is_set():
            for i, p in self.pids.items():
                self.peak[i] = max(self.peak[i], rss_mb(p))
            time.sleep(0.02)


def main():
    with Cluster(3, cluster_id=os.urandom(16).hex(), log_level="info", **DEFAULT_TIMING) as c:
        lead = c.start_and_lead()
        loaded(c, lead, KEYS, WRITERS)
        lead = c.wait_leader()
        # the leader's snapshot must cover the prefill, or node 4 catches up from the log
        harness.wait_until(lambda: (st := c.status(lead)) and st.snapshot_index >= KEYS // 2, 300,
                           "a snapshot covering the prefill")
        terms0 = {i: c.status(i).term for i in (1, 2, 3)}
        start_joining(c, 4)
        log4 = c.log_size(4)
        logl = c.log_size(lead)
        samp = Sampler({lead: c.nodes[lead].pid, 4: c.nodes[4].pid})
        before = {i: rss_mb(p) for i, p in samp.pids.items()}
        samp.start()
        with Writers(c, WRITERS) as w:
            time.sleep(1.0)
            base = w.window(time.monotonic() - 1.0, time.monotonic())
            t0 = time.monotonic()
            ctl(c, "member", "add", "4")

            def caught_up():
                m = members(c).get(4)
                return m and m.get("role") == "voter" and m.get("lag", 1 << 62) < 1000
            harness.wait_until(caught_up, 600, "node 4 a caught-up voter", interval=0.05)
            t1 = time.monotonic()
            time.sleep(0.5)
            during = w.window(t0 - 0.1, t1 + 0.5)
        samp.stop.set()
        samp.join()
        after = {i: rss_mb(p) for i, p in samp.pids.items()}
        st = {i: c.status(i) for i in (1, 2, 3, 4)}
        terms1 = {i: st[i].term for i in (1, 2, 3)}
        rx = re.findall(r"received snapshot (\d+) \((\d+) bytes\) from node \d+ in (\d+) ms, "
                        r"checked and loaded in (\d+) ms", c.log_since(4, log4))
        tx = re.findall(r"sent snapshot \d+ \(\d+ bytes\) to node 4 in (\d+) ms", c.log_since(lead, logl))
        print("member add 4 -> caught-up voter: %.2f s" % (t1 - t0))
        for idx, size, xfer, load in rx:
            print("node 4: snapshot %s, %.1f MB, received in %s ms, checked and loaded (off the loop) "
                  "in %s ms" % (idx, int(size) / 1e6, xfer, load))
        print("leader %d: sent in %s ms" % (lead, ", ".join(tx) or "?"))
        print("writes before: n=%d median %.1f ms p99 %.1f ms max %.1f ms" % base[:4])
        print("writes during: n=%d median %.1f ms p99 %.1f ms max %.1f ms; longest gap %.0f ms" % during)
        print("RSS MB (before / peak during / after): leader %d %.0f / %.0f / %.0f; node 4 %.0f / "
              "%.0f / %.0f" % (lead, before[lead], samp.peak[lead], after[lead], before[4],
                               samp.peak[4], after[4]))
        print("data_bytes %d, snapshot_bytes %d" % (st[lead].data_bytes, st[lead].snapshot_bytes))
        print("loop_lag_max since start: " + ", ".join(
            "node %d %.1f ms" % (i, st[i].loop_lag_max_us / 1000) for i in (1, 2, 3, 4)))
        print("terms before %s after %s; writes failed %d%s" %
              (terms0, terms1, len(w.errors), (": " + w.errors[0]) if w.errors else ""))


if __name__ == "__main__":
    main()
