#!/usr/bin/python3
"""metrics-bench.py - issue 16's numbers: what the metrics cost, and what a
scrape costs.

  1. Throughput with metrics on (every node serving /metrics, scraped every
     SCRAPE_S seconds as Prometheus would) against off (no metrics address),
     3 nodes, 64 clients, 100 B values, writes (1:0) then linearizable reads
     (0:1), straight to the leader.  ROUNDS rounds, on and off interleaved,
     each on a fresh cluster, so drift on the machine hits both alike.
  2. Scrape time and size of /metrics on a 5-node cluster after a mixed
     workload has filled every histogram: SCRAPES scrapes of the leader and
     of a follower, median and max time, bytes and series.

Run through bench/metrics-bench.sh (a release build).  Every process is the
harness's, stopped by PID.
"""
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "cluster"))
import harness  # noqa: E402

CTL = os.environ.get("RAFTKV_CTL") or os.path.join(ROOT, "build", "src", "ctl", "raftkvctl")
DURATION = os.environ.get("DURATION", "10")
ROUNDS = int(os.environ.get("ROUNDS", "3"))
SCRAPES = int(os.environ.get("SCRAPES", "200"))
SCRAPE_S = float(os.environ.get("SCRAPE_S", "1"))
TIMING = dict(tick_ms=10, heartbeat_interval_ms=20, election_timeout_ms=150,
              request_timeout_ms=5000, reconnect_min_ms=10, reconnect_max_ms=1000)


def bench(endpoint, ratio, duration=DURATION):
    out = subprocess.run([CTL, "-e", endpoint, "-o", "plain", "bench", "--clients", "64",
                          "--duration", duration, "--value-size", "100", "--ratio", ratio],
                         capture_output=True, text=True, timeout=int(duration) * 4 + 120).stdout
    return {k: float(v) for k, v in (ln.split("\t") for ln in out.strip().splitlines())}


def get(port, path="/metrics"):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=10) as r:
        return r.read()


class Scraper(threading.Thread):
    """Scrapes every node every SCRAPE_S seconds, like a Prometheus server."""

    def __init__(self, ports):
        super().__init__(daemon=True)
        self.ports, self.stop, self.n = ports, threading.Event(), 0

    def run(self):
        while not self.stop.wait(SCRAPE_S):
            for p in self.ports:
                get(p)
                self.n += 1


def one_round(metrics):
    with harness.Cluster(3, metrics=metrics, **TIMING) as c:
        lead = c.start_and_lead()
        ep = c.nodes[lead].client_address
        bench(ep, "1:0", "2")  # warm-up: connections, first allocations
        sc = Scraper([nd.metrics_port for nd in c.nodes.values()]) if metrics else None
        if sc:
            sc.start()
        w = bench(ep, "1:0")
        r = bench(ep, "0:1")
        if sc:
            sc.stop.set()
            sc.join(10)
        return w["ops_per_sec"], r["ops_per_sec"], w.get("p99_us", 0), r.get("p99_us", 0), \
            sc.n if sc else 0


def throughput():
    res = {True: [], False: []}
    for i in range(ROUNDS):
        for on in ((False, True) if i % 2 == 0 else (True, False)):
            res[on].append(one_round(on))
            print("round %d metrics %-3s writes %8.0f/s reads %8.0f/s p99 %6.0f/%6.0f us scrapes %d"
                  % (i + 1, "on" if on else "off", *res[on][-1]), flush=True)
    for k, name in ((0, "writes/s"), (1, "reads/s")):
        off = [x[k] for x in res[False]]
        on = [x[k] for x in res[True]]
        print("%-9s off median %8.0f (range %.0f-%.0f)  on median %8.0f (range %.0f-%.0f)  "
              "on/off %.3f" % (name, statistics.median(off), min(off), max(off),
                               statistics.median(on), min(on), max(on),
                               statistics.median(on) / statistics.median(off)), flush=True)


def scrape_cost():
    with harness.Cluster(5, metrics=True, **TIMING) as c:
        lead = c.start_and_lead()
        ep = c.nodes[lead].client_address
        bench(ep, "1:1", "5")  # fills request, fsync, batch and loop histograms
        follower = next(i for i in c.nodes if i != lead)
        for who, i in (("leader", lead), ("follower", follower)):
            port = c.nodes[i].metrics_port
            times, size = [], 0
            for _ in range(SCRAPES):
                t0 = time.perf_counter()
                body = get(port)
                times.append(time.perf_counter() - t0)
                size = len(body)
            series = sum(1 for ln in body.decode().splitlines() if ln and not ln.startswith("#"))
            times.sort()
            print("5 nodes, %-8s /metrics: %d bytes, %d samples; %d scrapes: median %.2f ms, "
                  "p99 %.2f ms, max %.2f ms" % (who, size, series, SCRAPES,
                                                statistics.median(times) * 1e3,
                                                times[int(len(times) * 0.99) - 1] * 1e3,
                                                times[-1] * 1e3), flush=True)


if __name__ == "__main__":
    print("metrics-bench: %s, DURATION=%s ROUNDS=%d SCRAPE_S=%g" %
          (time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), DURATION, ROUNDS, SCRAPE_S),
          flush=True)
    throughput()
    scrape_cost()
