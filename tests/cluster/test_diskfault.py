#!/usr/bin/python3
"""Disk faults on a live node (issue 8).  Every node runs with the test-only
flag --test-disk-fault OP:ERR; SIGUSR2 to one of them makes its store's next
OP fail with ERR.  Scenarios: ENOSPC on a write and EIO on an fdatasync, on a
follower and on the leader, while a client keeps writing.

Checked each time:
  - the failing node says why: a log line, STATUS= "failed: ..." on the
    NOTIFY_SOCKET the test binds, role "failed" and the error in its STATUS
    reply, and UNAVAILABLE naming the error to a client that writes to it;
  - it never acknowledges a write after the fault;
  - the other two keep committing (bounded gap between acknowledgements);
  - no acknowledged write is lost, on the two survivors and -- after the
    node is restarted without the fault -- on the node that failed, which
    catches up to the leader's commit index.

    RAFTKV_NODE=build/src/node/raftkv-node /usr/bin/python3 tests/cluster/test_diskfault.py [-k NAME]
"""
import os
import re
import signal
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "proxy"))

import harness  # noqa: E402
from harness import (OK, TIMEOUT, UNAVAILABLE, Cluster, Session, T, expect, expect_status,  # noqa: E402
                     main, report, req_get, req_set, wait_until)
from pxharness import Proxy  # noqa: E402
from test_notify import NotifySocket, notify_env  # noqa: E402

REASON = {"ENOSPC": "No space left on device", "EIO": "Input/output error"}
MAX_GAP = 5.0  # seconds without an acknowledged write, at most (before scaling)


class Writer(threading.Thread):
    """One session writing k0, k1, ... back to back (retrying each under its
    own sequence number until it is decided); every OK is recorded with the
    time it arrived."""

    def __init__(self, cluster, proxy_port=None):
        super().__init__(daemon=True)
        self.session = Session(cluster)
        self.proxy = harness.Client(proxy_port) if proxy_port else None
        self.undecided = 0  # through the proxy: answers other than OK
        self.acked = {}     # key -> value
        self.ack_times = []
        self.stop = threading.Event()
        self.error = None

    def run(self):
        i = 0
        try:
            while not self.stop.is_set():
                key, val = b"k%05d" % i, b"v%05d-%s" % (i, b"x" * 40)
                if self.proxy:
                    # The proxy retries under its own session; an answer
                    # other than OK leaves the write undecided: not counted.
                    r = self.proxy.call(req_set(key, val))
                    if r.status != OK:
                        self.undecided += 1
                        i += 1
                        continue
                else:
                    r = self.session.set(key, val, timeout=T(30))
                if r.status != OK:
                    raise AssertionError("set %r: %s %r" % (key, r.status, r.message))
                self.acked[key] = val
                self.ack_times.append(time.monotonic())
                i += 1
        except BaseException as e:  # noqa: BLE001 - reported by the scenario
            self.error = e
        finally:
            self.session.close()
            if self.proxy:
                self.proxy.close()

    def wait_acks(self, n, what):
        target = len(self.ack_times) + n
        wait_until(lambda: self.error or len(self.ack_times) >= target, T(20),
                   "%d more acknowledged writes %s" % (n, what))
        if self.error:
            raise AssertionError("writer failed: %r" % self.error)

    def finish(self):
        self.stop.set()
        self.join(T(60))
        expect(not self.is_alive(), "writer thread did not stop")
        if self.error:
            raise AssertionError("writer failed: %r" % self.error)

    def max_gap(self, since):
        ts = [since] + [t for t in self.ack_times if t >= since]
        return max(b - a for a, b in zip(ts, ts[1:])) if len(ts) > 1 else float("inf")


def check_all_acked(c, i, acked, what):
    """Every acknowledged key reads back with its value from node i (stale
    read: node i's own state machine)."""
    for k, v in acked.items():
        r = harness.stale_get(c, i, k)
        expect(r.status == OK and r.get.value == v, "%s: node %d lost acknowledged %r (got %s %r)",
               what, i, k, harness.status_name(r.status), r.get.value)


def fault_scenario(role, op, err, via_proxy=False):
    ns = NotifySocket()
    px = None
    try:
        with Cluster(3) as c:
            for nd in c.nodes.values():
                nd.extra_args = ["--test-disk-fault", "%s:%s" % (op, err)]
            with notify_env(ns):
                c.start()
            lead = c.wait_leader()
            target = lead if role == "leader" else min(i for i in c.nodes if i != lead)
            others = [i for i in c.nodes if i != target]
            if via_proxy:
                px = Proxy(c).start()
                px.wait_leader()
            w = Writer(c, px.port if px else None)
            w.start()
            w.wait_acks(50, "before the fault")
            log_off = c.log_size(target)
            pid = c.nodes[target].pid

            t_fault = time.monotonic()
            c.signal_nowait(target, signal.SIGUSR2)
            reason = REASON[err]
            c.wait_log(target, r"TEST: SIGUSR2", since=log_off)
            # The store only fails when it next does that operation: keep a
            # write in flight on the cluster (the writer) until it does.
            line = c.wait_log(target, r"(disk write failed|disk failed|cannot save snapshot).*%s.*"
                              r"takes no more writes" % re.escape(reason), timeout=T(20), since=log_off)
            t_failed = time.monotonic()
            status = ns.wait(pid, "STATUS", lambda v: v.startswith("failed:") and reason in v,
                             since=t_fault, what="STATUS=failed: ... %s from node %d" % (reason, target))
            st = c.status(target)
            expect(st is not None and st.role == "failed" and reason in st.error,
                   "node %d STATUS reply: role %r error %r", target, st and st.role, st and st.error)
            # A write sent straight to it is refused, naming the reason --
            # and never acknowledged, whatever role its frozen core was in.
            for k in range(5):
                r = c.call(target, req_set(b"direct%d" % k, b"x"))
                expect_status(r, UNAVAILABLE, "write to the failed node %d" % target)
                expect(reason in r.message, "refusal does not name the reason: %r", r.message)
            r = c.call(target, req_get(b"k00000"))
            expect_status(r, UNAVAILABLE, "linearizable read on the failed node")

            # The other two go on: a leader among them, writes keep being
            # acknowledged with a bounded gap.
            new_lead = c.wait_leader(ids=others, timeout=T(10))
            w.wait_acks(100, "after the fault")
            gap = w.max_gap(t_fault)
            w.finish()
            expect(gap <= T(MAX_GAP), "writes stalled for %.2fs after the fault", gap)
            expect(c.status(target).role == "failed", "node %d no longer says failed", target)
            c.wait_caught_up(ids=others)
            for i in others:
                check_all_acked(c, i, w.acked, "survivor")
            n_acked = len(w.acked)

            # Clear the fault: restart without the flag; the node recovers
            # its files (a torn tail is cut) and catches up.
            t0 = time.monotonic()
            os.kill(pid, signal.SIGTERM)
            c.nodes[target].proc.wait(timeout=T(20))
            code = c._reap(target, "SIGTERM-after-disk-failure")
            expect(code == 1, "failed node %d exited with %s after SIGTERM, want 1", target, code)
            stop_s = time.monotonic() - t0
            c.nodes[target].extra_args = []
            c.start_node(target)
            lead_now = c.wait_leader()
            commit = c.status(lead_now).commit_index
            t0 = time.monotonic()
            c.wait_applied(target, commit, timeout=T(30))
            catch_up = time.monotonic() - t0
            for i in c.nodes:
                check_all_acked(c, i, w.acked, "after rejoin")
            r = c.call(target, req_get(b"k00000"))
            expect_status(r, OK, "linearizable read on the rejoined node")
            if px:
                expect(px.stop() == 0, "proxy did not stop cleanly")
            report("%s%s %s:%s on node %d: failed %.2fs after SIGUSR2 (%s); STATUS=%r; new leader %d; "
                   "max gap between acks %.2fs; %d acked writes all present; stopped in %.2fs, "
                   "caught up to %d in %.2fs%s" %
                   (role, " (writes via the proxy)" if px else "", op, err, target, t_failed - t_fault, line.group(0)[:60], status, new_lead,
                    gap, n_acked, stop_s, commit, catch_up,
                    "; %d proxy answers not OK" % w.undecided if px else ""))
    finally:
        if px and px.running():
            px.kill()
        ns.close()


def check_follower_enospc():
    fault_scenario("follower", "write", "ENOSPC")


def check_follower_eio():
    fault_scenario("follower", "fdatasync", "EIO")


def check_leader_enospc():
    fault_scenario("leader", "write", "ENOSPC")


def check_leader_eio():
    fault_scenario("leader", "fdatasync", "EIO")


def check_leader_enospc_via_proxy():
    fault_scenario("leader", "write", "ENOSPC", via_proxy=True)


def check_no_trigger_without_flag():
    """Without --test-disk-fault the node does not even catch SIGUSR2, so no
    config file, environment or stray signal can arm a fault."""
    with Cluster(1) as c:
        c.start()
        with open("/proc/%d/status" % c.nodes[1].pid) as f:
            caught = int(re.search(r"^SigCgt:\s*([0-9a-f]+)", f.read(), re.M).group(1), 16)
        expect(not caught & (1 << (signal.SIGUSR2 - 1)), "SIGUSR2 is caught without the flag")
        expect(caught & (1 << (signal.SIGTERM - 1)), "SigCgt parse: SIGTERM should be caught")
        report("without the flag SIGUSR2 is not caught (SigCgt %x)" % caught)


if __name__ == "__main__":
    main([check_follower_enospc, check_follower_eio, check_leader_enospc, check_leader_eio,
          check_leader_enospc_via_proxy, check_no_trigger_without_flag])
