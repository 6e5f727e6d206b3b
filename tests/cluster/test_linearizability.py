#!/usr/bin/python3
"""Concurrent clients on one register while leaders are killed and
restarted; the recorded history (writes with sessions, linearizable reads
on every node) must be linearizable.  Checked with the Wing-Gong-Lowe
search over the history.  The same with leader-lease reads on
(cluster.lease_reads), where the leader is also frozen (SIGSTOP) for
longer than its lease and asked to hand over."""
import random
import re
import threading
import time
import urllib.request

from harness import (NOT_FOUND, NOT_LEADER, OK, TIMEOUT, UNAVAILABLE, Cluster, Session, T, expect,
                     main, report, req_get, req_set, req_transfer, status_name)

INF = float("inf")


class Op:
    __slots__ = ("kind", "val", "inv", "res", "client")

    def __init__(self, kind, val, inv, res, client):
        self.kind, self.val, self.inv, self.res, self.client = kind, val, inv, res, client

    def __repr__(self):
        return "%s(%r)@c%d[%.3f,%.3f]" % (self.kind, self.val, self.client, self.inv, self.res)


def linearizable(ops, initial=None):
    """True if the register history `ops` (writes of unique values, reads
    returning a value or None for absent) has a linearization; else a short
    explanation."""
    ops = sorted(ops, key=lambda o: o.inv)
    n = len(ops)
    full = (1 << n) - 1
    seen = set()
    stack = [(0, initial)]
    best = 0
    while stack:
        done, state = stack.pop()
        if done == full:
            return True
        if (done, state) in seen:
            continue
        seen.add((done, state))
        best = max(best, bin(done).count("1"))
        # An op may go next if it was invoked before every pending op
        # returned.  Ops are sorted by invocation and res >= inv, so the
        # scan stops at the first op invoked after the running minimum of
        # the pending ops' returns: only the window of overlapping ops.
        first = (~done & (done + 1)).bit_length() - 1
        window, horizon = [], INF
        for i in range(first, n):
            if done >> i & 1:
                continue
            o = ops[i]
            if o.inv > horizon:
                break
            horizon = min(horizon, o.res)
            window.append(i)
        for i in window:
            o = ops[i]
            if o.inv > horizon:
                continue
            if o.kind == "w":
                stack.append((done | 1 << i, o.val))
            elif o.val == state:
                stack.append((done | 1 << i, state))
        if len(seen) > 2_000_000:
            return "search too large"
    return "no linearization; at most %d of %d ops could be ordered" % (best, n)


def lease_reads_served(c):
    """raftkv_raft_lease_reads_total summed over the running nodes."""
    total = 0
    for nd in c.nodes.values():
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % nd.metrics_port,
                                        timeout=T(5)) as f:
                text = f.read().decode()
        except OSError:
            continue
        m = re.search(r"^raftkv_raft_lease_reads_total (\d+)", text, re.M)
        total += int(m.group(1)) if m else 0
    return total


def register_under_failures(lease):
    opts = dict(lease_reads="true", metrics=True) if lease else {}
    with Cluster(3, **opts) as c:
        c.start_and_lead()
        if lease:
            for i in c.nodes:
                expect(c.log_has(i, "lease reads on"), "node %d does not log that lease reads are on", i)
        history, lock = [], threading.Lock()
        stop = threading.Event()
        errors = []
        key = b"reg"

        def worker(cid):
            rng = random.Random(cid)
            s = Session(c)
            conns = {}
            n = 0
            try:
                while not stop.is_set():
                    n += 1
                    if rng.random() < 0.5:
                        val = b"c%d-%d" % (cid, n)
                        t0 = time.monotonic()
                        r = s.write(req_set(key, val), timeout=T(60))
                        t1 = time.monotonic()
                        if r.status != OK:
                            raise AssertionError("write got %s" % status_name(r.status))
                        op = Op("w", val, t0, t1, cid)
                    else:
                        node = rng.choice(list(c.nodes))
                        try:
                            if node not in conns:
                                conns[node] = c.client(node, timeout=T(10))
                            t0 = time.monotonic()
                            r = conns[node].call(req_get(key, timeout_ms=1000))
                            t1 = time.monotonic()
                        except (OSError, EOFError):
                            conns.pop(node, None)
                            time.sleep(0.01)
                            continue
                        if r.status in (UNAVAILABLE, NOT_LEADER, TIMEOUT):
                            time.sleep(0.01)
                            continue  # no effect
                        if r.status not in (OK, NOT_FOUND):
                            raise AssertionError("read got %s" % status_name(r.status))
                        op = Op("r", r.get.value if r.status == OK else None, t0, t1, cid)
                    with lock:
                        history.append(op)
            except Exception as e:  # noqa: BLE001 - reported by the main thread
                errors.append("client %d: %r" % (cid, e))
            finally:
                for cl in conns.values():
                    cl.close()
                s.close()

        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(1, 5)]
        for t in threads:
            t.start()
        kills, faults = [], []
        try:
            for rnd in range(3):
                time.sleep(0.4)
                lead = c.find_leader()
                if lead:
                    c.kill(lead)
                    kills.append(lead)
                    time.sleep(0.4)
                    c.start_node(lead)
                if not lease:
                    continue
                # Frozen for longer than the election timeout (300 ms): the
                # others elect a new leader and take writes meanwhile; once
                # resumed, the old one must not answer a read on its lease.
                time.sleep(0.4)
                lead = c.find_leader()
                if lead:
                    c.pause(lead)
                    time.sleep(0.8)
                    c.resume(lead)
                    faults.append("stop %d" % lead)
                # A transfer: the target may win while the lease would run.
                time.sleep(0.4)
                lead = c.find_leader()
                if lead:
                    target = [i for i in c.nodes if i != lead][rnd % 2]
                    r = c.admin_call(lead, req_transfer(target), timeout=T(15))
                    faults.append("transfer %d->%d %s" % (lead, target, status_name(r.status)))
            time.sleep(0.4)
        finally:
            stop.set()
            for t in threads:
                t.join(T(90))
        expect(not any(t.is_alive() for t in threads), "a client thread hung")
        expect(not errors, "client errors: %s", errors)
        writes = sum(1 for o in history if o.kind == "w")
        reads = len(history) - writes
        expect(writes > 20 and reads > 20, "too little history: %d writes, %d reads", writes, reads)
        t0 = time.monotonic()
        ok = linearizable(history)
        took = time.monotonic() - t0
        if ok is not True:
            for o in sorted(history, key=lambda o: o.inv)[:400]:
                print("   ", o)
        expect(ok is True, "history of %d ops is not linearizable: %s", len(history), ok)
        served = lease_reads_served(c) if lease else 0
        if lease:
            expect(served > 0, "no read was answered on a lease")
        report("4 clients, %d writes + %d linearizable reads on all nodes, leaders %s killed and "
               "restarted%s: linearizable (checked in %.2fs)" %
               (writes, reads, kills, "; lease reads on, %s, %d read-index requests answered on a "
                "lease" % (", ".join(faults), served) if lease else "", took))


def test_register_under_failures():
    register_under_failures(lease=False)


def test_register_lease_reads():
    """Lease reads on: kills, a leader frozen past its lease, transfers."""
    register_under_failures(lease=True)


def test_checker_rejects_stale_read():
    """The checker itself: a read of an overwritten value after the
    overwrite completed is caught; overlapping ops may go either way."""
    good = [Op("w", b"a", 0, 1, 1), Op("w", b"b", 2, 3, 1), Op("r", b"a", 0.5, 2.5, 2),
            Op("r", b"b", 2.5, 4, 3)]
    expect(linearizable(good) is True, "a valid history was rejected")
    bad = [Op("w", b"a", 0, 1, 1), Op("w", b"b", 2, 3, 1), Op("r", b"a", 3.5, 4, 2)]
    expect(linearizable(bad) is not True, "a stale read was accepted")
    bad2 = [Op("w", b"a", 0, 1, 1), Op("r", None, 1.5, 2, 2)]
    expect(linearizable(bad2) is not True, "a lost write was accepted")
    report("checker accepts a valid history and rejects a stale read and a lost write")


if __name__ == "__main__":
    main([test_checker_rejects_stale_read, test_register_under_failures, test_register_lease_reads])
