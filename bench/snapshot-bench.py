#!/usr/bin/python3
"""snapshot-bench.py - issue 14's "what happens today" run, one build per run.

A 3-node cluster with the default timing (tick 10 ms, heartbeat 20 ms,
election timeout 150 ms, a snapshot every 100 000 entries) on 127.0.0.1.
`raftkvctl bench` with CLIENTS writers straight to the leader for DURATION
seconds, 100 B values over KEYS keys (no prefill), so the dataset and each
snapshot grow during the run.  Reported: throughput, latency percentiles,
requests failed, leader changes (terms before/after), and from each node's
STATUS (builds that have them) the longest loop iteration and the last
snapshot's duration and size, plus the loop-lag warnings in the logs.

    bench/snapshot-bench.sh [BUILD_DIR]   (default: build-release)
    KEYS=2000000 DURATION=40 CLIENTS=64 bench/snapshot-bench.sh build-rel

With PREFILL=1 every one of the KEYS keys is written first (raftkvctl
bench's prefill, CLIENTS writers, untimed but counted: leader changes and
loop lag cover it), so the timed run overwrites a dataset of full size:
issue 14's "10 M keys loaded while 64 writers keep writing"
(KEYS=10000000 PREFILL=1).
"""
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "cluster"))
from harness import Cluster  # noqa: E402

CTL = os.environ.get("RAFTKV_CTL") or os.path.join(ROOT, "build", "src", "ctl", "raftkvctl")
KEYS = int(os.environ.get("KEYS", "2000000"))
PREFILL = os.environ.get("PREFILL", "0") == "1"
DURATION = int(os.environ.get("DURATION", "40"))
CLIENTS = int(os.environ.get("CLIENTS", "64"))
DEFAULT_TIMING = dict(tick_ms=10, heartbeat_interval_ms=20, election_timeout_ms=150,
                      request_timeout_ms=5000, reconnect_min_ms=10, reconnect_max_ms=1000)


def field(ns, name):
    return getattr(ns, name) if ns is not None and ns.HasField(name) else None


def main():
    with Cluster(3, log_level="info", **DEFAULT_TIMING) as c:
        lead = c.start_and_lead()
        term0 = c.status(lead).term
        prefill_s = None
        if PREFILL:
            t0 = time.monotonic()
            p = subprocess.run([CTL, "-e", c.nodes[lead].client_address, "-o", "plain", "bench",
                                "--clients", str(CLIENTS), "--keys", str(KEYS), "--value-size",
                                "100", "--ratio", "0:1", "--requests", "1"],
                               stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               timeout=7200)
            prefill_s = time.monotonic() - t0
            if p.returncode != 0:
                print("prefill failed: exit %d: %s" % (p.returncode, p.stderr.strip()[:500]))
            lead = c.wait_leader()
        out = subprocess.run([CTL, "-e", c.nodes[lead].client_address, "-o", "json", "bench",
                              "--clients", str(CLIENTS), "--duration", "%ds" % DURATION,
                              "--value-size", "100", "--keys", str(KEYS), "--ratio", "1:0"],
                             stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             timeout=DURATION + 120)
        b = json.loads(out.stdout) if out.stdout.strip() else {}
        sts = {i: c.status(i) for i in c.nodes}
        terms = [st.term for st in sts.values() if st is not None]
        changes = sum(c.log_since(i, 0).count("leader_change:") for i in c.nodes)
        warns = sum(c.log_since(i, 0).count("loop_lag") for i in c.nodes)
        lat = b.get("all", {}).get("latency_us", {})
        res = {
            "keys": KEYS, "clients": CLIENTS, "prefill_seconds": prefill_s,
            "seconds": b.get("seconds"),
            "ops_per_sec": b.get("all", {}).get("ops_per_sec"), "ok": b.get("ok"),
            "errors": b.get("errors"), "first_error": b.get("first_error"),
            "p50_ms": lat.get("p50", 0) / 1e3, "p99_ms": lat.get("p99", 0) / 1e3,
            "p999_ms": lat.get("p999", 0) / 1e3, "max_ms": lat.get("max", 0) / 1e3,
            "term_before": term0, "term_after": max(terms) if terms else None,
            "leader_change_log_lines": changes, "loop_lag_warnings": warns,
            "nodes": {i: {"keys": st.keys if st else None,
                          "snapshot_index": st.snapshot_index if st else None,
                          "loop_lag_max_ms": (field(st, "loop_lag_max_us") or 0) / 1e3
                          if field(st, "loop_lag_max_us") is not None else None,
                          "snapshot_duration_ms": field(st, "snapshot_duration_ms"),
                          "snapshot_bytes": field(st, "snapshot_bytes"),
                          "data_bytes": field(st, "data_bytes"),
                          "memory_bytes": field(st, "memory_bytes")}
                      for i, st in sts.items()},
        }
        print(json.dumps(res, indent=1))
        if out.returncode != 0:
            print("raftkvctl bench exit %d: %s" % (out.returncode, out.stderr.strip()[:500]))


if __name__ == "__main__":
    main()
