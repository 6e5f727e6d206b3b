#!/usr/bin/python3
"""schedstall.py - why an event loop thread stalled, from a perf sched trace.

    perf sched record -g -o FILE -- sleep 30      (as root, during a bench)
    bench/schedstall.py FILE PID [PID...]         (PIDs of raftkv-node)

For the main thread of each PID (the node's event loop) it reads
`perf sched timehist --state -g` and reports every time the thread was off
the CPU for longer than --min-ms, split in two:

- waiting for a CPU (preempted, or woken and not yet running: "sch
  delay"), which is the machine being short of CPUs (or the hypervisor's
  steal);
- asleep other than in epoll_wait (blocked: I/O, a lock, a page fault), with
  the kernel stack it slept in, which is the loop doing something blocking.

Sleeping in epoll_wait is the loop being idle and is not counted.  Used by
bench/snapshot-bench.py with SCHED_TRACE=SECONDS.
"""
import argparse
import collections
import re
import subprocess
import sys

LINE = re.compile(r"^\s*([\d.]+)\s+\[(\d+)\]\s+(.+?)\[(\d+)(?:/(\d+))?\]\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(\S)\s*(.*)$")
IDLE = ("ep_poll", "do_epoll_wait")


def parse(path):
    p = subprocess.run(["perf", "sched", "timehist", "-i", path, "--state", "-g"],
                       capture_output=True, text=True, timeout=600)
    for line in p.stdout.splitlines():
        m = LINE.match(line)
        if m:
            t, _cpu, _name, tid, pid, wait, delay, run, state, stack = m.groups()
            yield (float(t), int(tid), int(pid or tid), float(wait), float(delay), float(run), state,
                   stack.strip())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file")
    ap.add_argument("pids", nargs="+", type=int)
    ap.add_argument("--min-ms", type=float, default=20.0)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    loops = set(a.pids)
    prev = {}  # tid -> (state, stack) at its last switch-out
    out = {pid: {"cpu_wait": [], "blocked": collections.defaultdict(list)} for pid in loops}
    for t, tid, pid, wait, delay, run, state, stack in parse(a.file):
        if tid not in loops:
            continue
        st, stk = prev.get(tid, ("?", ""))
        # Preempted (left running): the whole time off the CPU was a wait
        # for one, whatever perf calls it.
        cpu_wait = delay + (wait if st == "R" else 0.0)
        if cpu_wait >= a.min_ms:
            out[tid]["cpu_wait"].append((t, cpu_wait))
        if st != "R" and wait >= a.min_ms and not any(f in stk for f in IDLE):
            key = "%s %s" % (st, " <- ".join(stk.split(" <- ")[:5]))
            out[tid]["blocked"][key].append((t, wait))
        prev[tid] = (state, stack)
    res = {}
    for pid, o in out.items():
        cw = [d for _, d in o["cpu_wait"]]
        res[pid] = {
            "cpu_wait_over_min": {"count": len(cw), "total_ms": round(sum(cw), 1),
                                  "max_ms": round(max(cw), 1) if cw else 0},
            "blocked_over_min": {k: {"count": len(v), "total_ms": round(sum(w for _, w in v), 1),
                                     "max_ms": round(max(w for _, w in v), 1)}
                                 for k, v in sorted(o["blocked"].items(), key=lambda kv: -sum(w for _, w in kv[1]))},
        }
    if a.json:
        import json
        print(json.dumps(res, indent=1))
        return
    for pid, r in res.items():
        c = r["cpu_wait_over_min"]
        print("loop thread %d: waited for a CPU >= %.0f ms %d times (total %.1f ms, max %.1f ms)"
              % (pid, a.min_ms, c["count"], c["total_ms"], c["max_ms"]))
        for k, v in r["blocked_over_min"].items():
            print("  blocked >= %.0f ms %d times (total %.1f ms, max %.1f ms) in %s"
                  % (a.min_ms, v["count"], v["total_ms"], v["max_ms"], k))


if __name__ == "__main__":
    sys.exit(main())
