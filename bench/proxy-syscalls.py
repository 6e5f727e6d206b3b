#!/usr/bin/python3
"""proxy-syscalls.py - what one request costs each process, through
raftkv-proxy and straight to the leader (issue 17): system calls per
request (strace -c -f attached to the proxy and every node while
`raftkvctl bench` runs a fixed number of requests; a count, so it does not
depend on how loaded the machine is) and CPU milliseconds per 1,000
requests (utime + stime from /proc/PID/stat, in a second run without
strace; this one does depend on the machine).

    bench/proxy-syscalls.sh [BUILD_DIR]      (default: build-release)
    REQUESTS=20000 CLIENTS=64 PIPELINE=16 THREADS=2 bench/proxy-syscalls.sh build-release

THREADS sets [proxy] threads (default: the proxy's own, one per CPU).
Reuses tests/cluster/harness.py; every process is killed by PID on exit.
"""
import os
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "proxy"))
# The proxy's own default thread count (one per CPU), not the tests' 2.
os.environ.setdefault("RAFTKV_TEST_PROXY_THREADS", "")
from pxharness import ProxiedCluster  # noqa: E402

CTL = os.environ.get("RAFTKV_CTL") or os.path.join(ROOT, "build", "src", "ctl", "raftkvctl")
REQUESTS = int(os.environ.get("REQUESTS", "20000"))
CLIENTS = os.environ.get("CLIENTS", "64")
PIPELINE = os.environ.get("PIPELINE", "1")
THREADS = os.environ.get("THREADS")
DEFAULT_TIMING = dict(tick_ms=10, heartbeat_interval_ms=20, election_timeout_ms=150,
                      request_timeout_ms=5000, reconnect_min_ms=10, reconnect_max_ms=1000)
HZ = os.sysconf("SC_CLK_TCK")


def bench(endpoint, ratio, prefill=False):
    args = [CTL, "-e", endpoint, "-o", "plain", "bench", "--clients", CLIENTS, "--pipeline", PIPELINE,
            "--requests", str(REQUESTS), "--value-size", "100", "--ratio", ratio]
    if not prefill:
        args.append("--no-prefill")
    out = subprocess.run(args, capture_output=True, text=True, timeout=600).stdout
    return {k: float(v) for k, v in (ln.split("\t") for ln in out.strip().splitlines())}


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime


def strace_total(path):
    with open(path) as f:
        for line in f:
            parts = line.split()
            if parts and parts[-1] == "total":
                return int(parts[3])
    return 0


def measure(pids, endpoint, ratio):
    """{name: (syscalls per request, CPU ms per 1,000 requests)} and the bench result."""
    before = {n: cpu_ticks(p) for n, p in pids.items()}
    res = bench(endpoint, ratio)
    cpu = {n: (cpu_ticks(p) - before[n]) * 1000.0 / HZ / (res["ok"] + res["errors"]) * 1000 for n, p in pids.items()}
    tmp = tempfile.mkdtemp(prefix="pxsys-")
    tracers = {n: subprocess.Popen(["strace", "-c", "-f", "-o", os.path.join(tmp, n), "-p", str(p)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
               for n, p in pids.items()}
    time.sleep(1.0)  # attached to every thread
    traced = bench(endpoint, ratio)
    for t in tracers.values():
        t.send_signal(signal.SIGINT)
    for t in tracers.values():
        t.wait(60)
    calls = {n: strace_total(os.path.join(tmp, n)) / (traced["ok"] + traced["errors"]) for n in pids}
    return {n: (calls[n], cpu[n]) for n in pids}, res


def main():
    proxy_args = ("--set", "proxy.threads=%s" % THREADS) if THREADS else ()
    with ProxiedCluster(3, log_level="notice", proxy_args=proxy_args, **DEFAULT_TIMING) as (c, px):
        lead = c.start_and_lead()
        px.start()
        px.wait_leader(lead)
        pids = {"proxy": px.proc.pid}
        pids.update({"node%d%s" % (i, "(leader)" if i == lead else ""): nd.pid for i, nd in c.nodes.items()})
        bench("127.0.0.1:%d" % px.port, "1:1", prefill=True)  # the keys the reads find
        print("%d clients, pipeline %s, %d requests of 100 B per run; proxy threads %s" %
              (int(CLIENTS), PIPELINE, REQUESTS, THREADS or "default"))
        for ratio, what in (("1:0", "writes"), ("0:1", "reads")):
            for name, ep in (("proxy", "127.0.0.1:%d" % px.port), ("leader", c.nodes[lead].client_address)):
                per, res = measure(pids, ep, ratio)
                print("%-6s via %-6s %8.0f ops/s (unstraced run)  " % (what, name, res["ops_per_sec"]) +
                      "  ".join("%s %.2f sys/req %.1f cpu-ms/kreq" % (n, s, m) for n, (s, m) in per.items()))
                sys.stdout.flush()


if __name__ == "__main__":
    main()
