#!/usr/bin/python3
"""proxy-bench.py - raftkv-proxy versus straight to the leader, same run.

A local 3-node cluster with the default timing (tick 10 ms, heartbeat
20 ms, election timeout 150 ms) plus the proxy, all on 127.0.0.1:
  1. raftkvctl bench --clients 64 --duration D --value-size 100 for writes
     (1:0) and reads (0:1), alternating leader / proxy, R rounds each;
  2. the share of the proxy's reads served by followers (its STATUS);
  3. client-visible unavailability after kill -9 of the leader: 8 writers
     through the proxy; the longest stretch with no write completing
     around the kill, per trial (the killed node is restarted between).
Run through bench/proxy-bench.sh.  Reuses tests/cluster/harness.py.
"""
import os
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "proxy"))
# The proxy's own default thread count (one per CPU), not the tests' 2.
os.environ.setdefault("RAFTKV_TEST_PROXY_THREADS", "")
from pxharness import ProxiedCluster  # noqa: E402
import harness  # noqa: E402

CTL = os.environ.get("RAFTKV_CTL") or os.path.join(ROOT, "build", "src", "ctl", "raftkvctl")
DURATION = os.environ.get("DURATION", "10")
ROUNDS = int(os.environ.get("ROUNDS", "1"))
TRIALS = int(os.environ.get("TRIALS", "10"))
PIPELINE = os.environ.get("PIPELINE", "1")  # requests in flight per client connection
# LEASE=1: cluster.lease_reads on (leader-lease reads, raftkv.conf(5) LEASE READS).
LEASE = os.environ.get("LEASE", "0") not in ("", "0")
DEFAULT_TIMING = dict(tick_ms=10, heartbeat_interval_ms=20, election_timeout_ms=150,
                      request_timeout_ms=5000, reconnect_min_ms=10, reconnect_max_ms=1000)


def bench(endpoint, ratio):
    out = subprocess.run([CTL, "-e", endpoint, "-o", "plain", "bench", "--clients", "64", "--duration",
                          DURATION, "--value-size", "100", "--ratio", ratio, "--pipeline", PIPELINE],
                         capture_output=True, text=True, timeout=int(DURATION) * 4 + 120).stdout
    return {k: float(v) for k, v in (ln.split("\t") for ln in out.strip().splitlines())}


def throughput(c, px, lead):
    rows = []
    for ratio, what in (("1:0", "writes"), ("0:1", "reads")):
        for r in range(ROUNDS):
            for name, ep in (("leader", c.nodes[lead].client_address), ("proxy", "127.0.0.1:%d" % px.port)):
                before = px.view()[1] if name == "proxy" else None
                res = bench(ep, ratio)
                share = None
                if before is not None and what == "reads":
                    after = px.view()[1]
                    d = {i: after[i].reads_served - before[i].reads_served for i in after}
                    tot = sum(d.values())
                    share = sum(v for i, v in d.items() if i != lead) / tot if tot else 0
                rows.append((what, name, res, share))
                print("%-6s via %-6s %9.0f ops/s  p50 %6.2f ms  p99 %6.2f ms  errors %d%s" %
                      (what, name, res["ops_per_sec"], res["p50_us"] / 1e3, res["p99_us"] / 1e3,
                       res["errors"], "  followers served %.1f%%" % (share * 100) if share is not None else ""))
                sys.stdout.flush()
    return rows


def unavailability_trial(c, px):
    lead = px.wait_leader()
    stop = threading.Event()
    done, errors = [], []

    def writer(w):
        with px.client(timeout=30) as cl:
            i = 0
            while not stop.is_set():
                i += 1
                r = cl.call(harness.req_set(b"u%d-%d" % (w, i), b"x"))
                if r.status != harness.OK:
                    errors.append(harness.status_name(r.status) + " " + r.message)
                done.append(time.monotonic())

    ths = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in ths:
        t.start()
    time.sleep(0.5)
    t_kill = time.monotonic()
    c.kill(lead)
    time.sleep(1.5)
    stop.set()
    for t in ths:
        t.join(30)
    ts = sorted(t for t in done if t >= t_kill - 0.2)
    gap = max(b - a for a, b in zip(ts, ts[1:])) if len(ts) > 1 else float("inf")
    c.start_node(lead)
    c.wait_caught_up()
    px.wait_leader()
    return gap, errors


def main():
    timing = dict(DEFAULT_TIMING, lease_reads="true") if LEASE else DEFAULT_TIMING
    print("cluster.lease_reads = %s" % ("true" if LEASE else "false"))
    with ProxiedCluster(3, log_level="notice", **timing) as (c, px):
        lead = c.start_and_lead()
        px.start()
        px.wait_leader(lead)
        print("cluster of 3 + proxy on 127.0.0.1, %d CPUs, leader %d, %s s per run, pipeline %s" %
              (os.cpu_count(), lead, DURATION, PIPELINE))
        rows = throughput(c, px, lead)
        for what in ("writes", "reads"):
            lv = [r[2]["ops_per_sec"] for r in rows if r[0] == what and r[1] == "leader"]
            pv = [r[2]["ops_per_sec"] for r in rows if r[0] == what and r[1] == "proxy"]
            print("%s: proxy/leader throughput %.2f" % (what, statistics.median(pv) / statistics.median(lv)))
        gaps, errs = [], []
        for t in range(TRIALS):
            gap, e = unavailability_trial(c, px)
            gaps.append(gap)
            errs += e
            print("trial %2d: no write completed for %.0f ms%s" % (t + 1, gap * 1000,
                                                                   ", %d failed" % len(e) if e else ""))
            sys.stdout.flush()
        if gaps:  # TRIALS=0 measures throughput only
            print("unavailability after kill -9 of the leader: median %.0f ms, min %.0f, max %.0f over %d trials; "
                  "%d client writes failed" % (statistics.median(gaps) * 1000, min(gaps) * 1000, max(gaps) * 1000,
                                              len(gaps), len(errs)))


if __name__ == "__main__":
    main()
