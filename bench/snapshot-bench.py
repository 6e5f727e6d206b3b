#!/usr/bin/python3
"""snapshot-bench.py - issue 14's "what happens today" run, one build per run.

A 3-node cluster with the default timing (tick 10 ms, heartbeat 20 ms,
election timeout 150 ms, a snapshot every 100 000 entries) on 127.0.0.1.
`raftkvctl bench` with CLIENTS writers straight to the leader for DURATION
seconds, 100 B values over KEYS keys (no prefill), so the dataset and each
snapshot grow during the run.  Reported: throughput, latency percentiles,
requests failed, leader changes (terms before/after), and from each node's
STATUS (builds that have them) the longest loop iteration and the last
snapshot's duration and size, plus the nodes' loop_lag lines: the nodes
run with loop_lag_warn_ms = LOOP_WARN_MS (default 20, the issue's target),
so every iteration over the target that gets a line says whether the loop
thread ran, waited for a CPU or blocked.

    bench/snapshot-bench.sh [BUILD_DIR]   (default: build-release)
    KEYS=2000000 DURATION=40 CLIENTS=64 bench/snapshot-bench.sh build-rel

With PREFILL=1 every one of the KEYS keys is written first (raftkvctl
bench's prefill, CLIENTS writers, untimed but counted: leader changes and
loop lag cover it), so the timed run overwrites a dataset of full size:
issue 14's "10 M keys loaded while 64 writers keep writing"
(KEYS=10000000 PREFILL=1).

Memory: every node's peak RSS, sampled every 0.5 s, and STATUS
memory_bytes (the dictionary's allocations, including the tree nodes kept
for a snapshot writer's frozen view) against data_bytes.  With RESTART=1, after the run one follower is killed
(SIGKILL) and started again: time until it answers STATUS and until it has
applied the leader's commit index.  With ADD_MEMBER=1, then node 4 is
added while 8 writers write (clusterbench.add_member, as
snapxfer-bench.py does).

Also reported: the machine's CPU time split (user, system, iowait, steal,
idle, from /proc/stat) over the prefill and over the timed run.  With
SCHED_TRACE=SECONDS (root, perf installed) `perf sched record -g` runs for
that long starting SCHED_AT seconds (default 60) after the cluster starts,
and bench/schedstall.py says, per node, how long its loop thread waited for
a CPU and where it blocked.
"""
import json
import os
import re
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "cluster"))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from harness import Cluster  # noqa: E402
from clusterbench import add_member, kb_fields  # noqa: E402

CTL = os.environ.get("RAFTKV_CTL") or os.path.join(ROOT, "build", "src", "ctl", "raftkvctl")
KEYS = int(os.environ.get("KEYS", "2000000"))
PREFILL = os.environ.get("PREFILL", "0") == "1"
DURATION = int(os.environ.get("DURATION", "40"))
CLIENTS = int(os.environ.get("CLIENTS", "64"))
SCHED_TRACE = int(os.environ.get("SCHED_TRACE", "0"))
SCHED_AT = int(os.environ.get("SCHED_AT", "60"))
DEFAULT_TIMING = dict(tick_ms=10, heartbeat_interval_ms=20, election_timeout_ms=150,
                      request_timeout_ms=5000, reconnect_min_ms=10, reconnect_max_ms=1000)
# The target for the longest iteration: the nodes log (and this
# prints) what any longer one was made of, not just those over the default 50.
LOOP_WARN_MS = int(os.environ.get("LOOP_WARN_MS", "20"))


def field(ns, name):
    return getattr(ns, name) if ns is not None and ns.HasField(name) else None


def cpu_times():
    """Jiffies since boot: user, system, iowait, steal, idle (all CPUs)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = v[:8]
    return {"user": user + nice, "system": system + irq + softirq, "iowait": iowait, "steal": steal, "idle": idle}


def cpu_split(a, b):
    d = {k: b[k] - a[k] for k in a}
    tot = sum(d.values()) or 1
    return {k: round(100.0 * v / tot, 1) for k, v in d.items()}


RESTART = os.environ.get("RESTART", "0") == "1"
ADD_MEMBER = os.environ.get("ADD_MEMBER", "0") == "1"


class MemSampler(threading.Thread):
    """Peak RSS per node (a snapshot's extra memory is in the node itself:
    the tree nodes copied while its writer thread reads the frozen view)."""

    def __init__(self, c):
        super().__init__(daemon=True)
        self.c, self.stop = c, threading.Event()
        self.rss = {i: 0 for i in c.nodes}

    def run(self):
        while not self.stop.wait(0.5):
            for i, nd in self.c.nodes.items():
                if not nd.running():
                    continue
                rss = kb_fields("/proc/%d/status" % nd.pid, ["VmRSS"])["VmRSS"]
                self.rss[i] = max(self.rss[i], rss)

    def report(self):
        return {i: {"rss_peak_mb": round(self.rss[i] / 1024.0, 1)} for i in self.c.nodes}


def restart_follower(c, lead):
    """kill -9 one follower and start it again: seconds to STATUS and to
    having applied what the leader had committed when it was killed."""
    f = [i for i in c.nodes if i != lead][0]
    target = c.status(lead).commit_index
    c.kill(f)
    t0 = time.monotonic()
    c.start_node(f, wait=False)
    c.wait_serving(f, timeout=1800)
    t1 = time.monotonic()
    c.wait_applied(f, target, timeout=1800)
    t2 = time.monotonic()
    st = c.status(f)
    return {"node": f, "seconds_to_status": round(t1 - t0, 2), "seconds_to_caught_up": round(t2 - t0, 2),
            "keys": st.keys, "rss_mb_after": round(kb_fields("/proc/%d/status" % c.nodes[f].pid,
                                                             ["VmRSS"])["VmRSS"] / 1024.0, 1)}


def sched_trace(c, path):
    """perf sched record in the background from SCHED_AT s for SCHED_TRACE s."""
    if not SCHED_TRACE:
        return None
    cmd = "sleep %d && exec perf sched record -g -o %s -- sleep %d" % (SCHED_AT, path, SCHED_TRACE)
    return subprocess.Popen(["sh", "-c", cmd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def sched_report(c, proc, path):
    if proc is None:
        return None
    try:
        proc.wait(timeout=SCHED_AT + SCHED_TRACE + 120)
    except subprocess.TimeoutExpired:
        proc.kill()
        return "perf sched did not finish"
    pids = [str(nd.proc.pid) for nd in c.nodes.values() if nd.proc]
    r = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "schedstall.py"), path] + pids,
                       capture_output=True, text=True, timeout=900)
    return r.stdout + r.stderr


def main():
    with Cluster(3, cluster_id=os.urandom(16).hex(), log_level="info",
                 loop_lag_warn_ms=LOOP_WARN_MS, **DEFAULT_TIMING) as c:
        lead = c.start_and_lead()
        trace_path = os.path.join(c.dir, "sched.data")
        tracer = sched_trace(c, trace_path)
        mem = MemSampler(c)
        mem.start()
        term0 = c.status(lead).term
        prefill_s = None
        cpu = {"start": cpu_times()}
        prefill_note = None
        if PREFILL:
            t0 = time.monotonic()
            p = subprocess.run([CTL, "-e", c.nodes[lead].client_address, "-o", "plain", "bench",
                                "--clients", str(CLIENTS), "--keys", str(KEYS), "--value-size",
                                "100", "--ratio", "0:1", "--requests", "1"],
                               stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               timeout=7200)
            prefill_s = time.monotonic() - t0
            prefill_note = p.stderr.strip()[:500]
            if p.returncode != 0:
                print("prefill failed: exit %d: %s" % (p.returncode, prefill_note))
            lead = c.wait_leader()
        cpu["prefilled"] = cpu_times()
        out = subprocess.run([CTL, "-e", c.nodes[lead].client_address, "-o", "json", "bench",
                              "--clients", str(CLIENTS), "--duration", "%ds" % DURATION,
                              "--value-size", "100", "--keys", str(KEYS), "--ratio", "1:0"],
                             stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             timeout=DURATION + 120)
        cpu["end"] = cpu_times()
        mem.stop.set()
        mem.join()
        b = json.loads(out.stdout) if out.stdout.strip() else {}
        sts = {i: c.status(i) for i in c.nodes}
        terms = [st.term for st in sts.values() if st is not None]
        changes = sum(c.log_since(i, 0).count("leader_change:") for i in c.nodes)
        warns = sum(c.log_since(i, 0).count("loop_lag") for i in c.nodes)
        # the lines themselves: each splits its iteration into ran / waited
        # for a CPU / slept, which says where to look next
        warn_lines = {i: [ln[-400:] for ln in c.log_since(i, 0).splitlines() if "loop_lag" in ln][:20]
                      for i in c.nodes}
        hugepages = {i: (re.findall(r"memory: (.*)", c.log_since(i, 0)) or ["?"])[0] for i in c.nodes}
        lat = b.get("all", {}).get("latency_us", {})
        res = {
            "keys": KEYS, "clients": CLIENTS, "prefill_seconds": prefill_s, "prefill_stderr": prefill_note,
            "cpu_percent_prefill": cpu_split(cpu["start"], cpu["prefilled"]) if PREFILL else None,
            "cpu_percent_run": cpu_split(cpu["prefilled"] if PREFILL else cpu["start"], cpu["end"]),
            "memory": mem.report(),
            "bench_leader_changes": b.get("leader_changes"), "bench_max_gap_ms": b.get("max_gap_us", 0) / 1e3,
            "errors_by_status": b.get("errors_by_status"),
            "seconds": b.get("seconds"),
            "ops_per_sec": b.get("all", {}).get("ops_per_sec"), "ok": b.get("ok"),
            "errors": b.get("errors"), "first_error": b.get("first_error"),
            "p50_ms": lat.get("p50", 0) / 1e3, "p99_ms": lat.get("p99", 0) / 1e3,
            "p999_ms": lat.get("p999", 0) / 1e3, "max_ms": lat.get("max", 0) / 1e3,
            "term_before": term0, "term_after": max(terms) if terms else None,
            "leader_change_log_lines": changes, "loop_lag_warnings": warns,
            "loop_lag_lines": warn_lines,
            "snapshots_written": {i: c.log_since(i, 0).count("in the background (") for i in c.nodes},
            # a snapshot's extra memory: the tree nodes and entries a write
            # copied while the frozen view was read, largest per node
            "snapshot_kept_mb_max": {i: max([float(x) for x in re.findall(
                r"([0-9.]+) MB of tree nodes and entries were kept", c.log_since(i, 0))] or [0.0])
                for i in c.nodes},
            "malloc": hugepages,
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
        run_end = {i: c.log_size(i) for i in c.nodes}
        if RESTART:
            res["restart"] = restart_follower(c, c.wait_leader())
        print(json.dumps(res, indent=1))
        sys.stdout.flush()
        if ADD_MEMBER:
            add_member(c, c.wait_leader(), 8)
        if RESTART or ADD_MEMBER:
            # what the restart and the add cost the loops, and any election
            # they caused, from the nodes' own lines
            for i in c.nodes:
                for ln in c.log_since(i, run_end.get(i, 0)).splitlines():
                    if "loop_lag" in ln or "leader_change:" in ln:
                        print("node %d: %s" % (i, ln[-400:]))
        rep = sched_report(c, tracer, trace_path)
        if rep:
            print(rep)
        if out.returncode != 0:
            print("raftkvctl bench exit %d: %s" % (out.returncode, out.stderr.strip()[:500]))


if __name__ == "__main__":
    main()
