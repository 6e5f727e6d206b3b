#!/usr/bin/python3
"""membership-bench.py - issue 13's numbers, one run, real processes on 127.0.0.1.

A 3-node cluster with the default timing (tick 10 ms, heartbeat 20 ms,
election timeout 150 ms) is filled with KEYS keys of 100 B (raftkvctl bench's
prefill). Then WRITERS sequential writers (one SET at a time each, sessions
that follow NOT_LEADER hints) keep writing while, one after the other:
  1. node 4 is started with --join and `raftkvctl member add 4`: the time from
     the command to node 4 being a voter less than 1000 entries behind;
  2. a follower is removed (`raftkvctl member remove`);
  3. the leader is removed (it hands leadership over first).
For each change: the longest stretch with no acknowledged write, from just
before the command until 0.5 s after it completed (target: <= 50 ms).
Then the writers stop and the CPU of every node is sampled while idle
(target: < 2%), and once more with a wiped follower refused at start-up.

    bench/membership-bench.sh [BUILD_DIR]     (default: build-release)
    KEYS=1000000 WRITERS=8 bench/membership-bench.sh
"""
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clusterbench import DEFAULT_TIMING, Writers, ctl, harness, loaded, members, start_joining  # noqa: E402
from harness import Cluster  # noqa: E402

KEYS = int(os.environ.get("KEYS", "1000000"))
WRITERS = int(os.environ.get("WRITERS", "8"))
CLK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK  # utime + stime


def change(c, w, what, *args, until=None):
    time.sleep(0.5)
    t0 = time.monotonic()
    ctl(c, "member", *args)
    if until:
        harness.wait_until(until, 600, what, interval=0.05)
    t1 = time.monotonic()
    time.sleep(0.5)
    g = w.gap(t0 - 0.1, t1 + 0.5)
    print("%-34s took %7.0f ms; longest write gap %5.0f ms" % (what, (t1 - t0) * 1000, g * 1000))
    sys.stdout.flush()
    return t1 - t0, g


def idle_cpu(c, ids, secs=5.0):
    pids = {i: c.nodes[i].pid for i in ids}
    a = {i: cpu_seconds(p) for i, p in pids.items()}
    time.sleep(secs)
    return {i: (cpu_seconds(p) - a[i]) / secs * 100 for i, p in pids.items()}


def main():
    with Cluster(3, cluster_id=os.urandom(16).hex(), log_level="notice", **DEFAULT_TIMING) as c:
        lead = c.start_and_lead()
        loaded(c, lead, KEYS, WRITERS)
        start_joining(c, 4)
        with Writers(c, WRITERS) as w:
            def caught_up():
                m = members(c).get(4)
                return m and m.get("role") == "voter" and m.get("lag", 1 << 62) < 1000
            add_s, add_gap = change(c, w, "member add 4 (learner->voter)", "add", "4", until=caught_up)
            lead = c.wait_leader()
            fol = next(i for i in (1, 2, 3) if i != lead)
            _, rm_gap = change(c, w, "member remove %d (follower)" % fol, "remove", str(fol),
                               until=lambda: fol not in members(c))
            c.stop(fol)
            _, rml_gap = change(c, w, "member remove %d (the leader)" % lead, "remove", str(lead),
                                until=lambda: lead not in members(c))
            c.stop(lead)
        print("writes acknowledged %d, failed %d%s" % (len(w.done), len(w.errors),
                                                       (": " + w.errors[0]) if w.errors else ""))
        left = [i for i in c.running_ids()]
        time.sleep(2)
        cpu = idle_cpu(c, left)
        print("idle CPU: " + ", ".join("node %d %.2f%%" % (i, v) for i, v in sorted(cpu.items())))
        # A follower whose data directory is wiped is refused at start-up
        # (exit 78); the leader must stay idle meanwhile.
        lead = c.wait_leader()
        fol = next(i for i in left if i != lead)
        c.kill(fol)
        shutil.rmtree(c.nodes[fol].data_dir)
        c.start_node(fol, wait=False)
        harness.wait_until(lambda: c.nodes[fol].proc.poll() is not None, 30, "wiped node %d to exit" % fol)
        code = c._reap(fol, "exit")  # expected: 78, not a crash
        cpu = idle_cpu(c, [lead])
        print("wiped follower %d exited %s; leader %d idle CPU %.2f%%" % (fol, code, lead, cpu[lead]))
        print("summary: add->voter %.2f s at %d keys; write gaps add %.0f ms, remove follower %.0f ms, "
              "remove leader %.0f ms" % (add_s, KEYS, add_gap * 1000, rm_gap * 1000, rml_gap * 1000))


if __name__ == "__main__":
    main()
