#!/usr/bin/python3
"""Leadership transfer: on request (to a named node, to 0 = the best one) and
on SIGTERM of the leader, which hands over before exiting so a steady
stream of writes sees no failure and only a short gap."""
import signal
import time

from harness import (INVALID_ARGUMENT, NOT_LEADER, OK, TIMEOUT, UNAVAILABLE, Cluster, Session, T,
                     expect, expect_status, main, report, req_set, req_status, req_transfer,
                     status_name)


def transfer(c, lead, target):
    t0 = time.monotonic()
    r = c.admin_call(lead, req_transfer(target), timeout=T(15))
    return r, time.monotonic() - t0


def check_transfer_on_request(n):
    with Cluster(n) as c:
        c.start()
        s = Session(c)
        lead = c.wait_leader()
        expect_status(s.set(b"k", b"0"), OK, "write")
        times = []
        # to every other node in turn
        for target in [i for i in c.nodes if i != lead] + [lead]:
            cur = c.wait_leader()
            term = c.status(cur).term
            r, took = transfer(c, cur, target)
            expect_status(r, OK, "TRANSFER_LEADER %d -> %d" % (cur, target))
            expect(r.transfer_leader.leader_id == target, "transfer to %d answered leader %d",
                   target, r.transfer_leader.leader_id)
            now = c.wait_leader()
            expect(now == target, "leader is %d after transfer to %d", now, target)
            expect(c.status(now).term >= term, "term went back")
            expect_status(s.set(b"k", b"%d" % target), OK, "write after transfer to %d" % target)
            times.append(took)
        # to itself: a no-op answered OK
        cur = c.wait_leader()
        r, _ = transfer(c, cur, cur)
        expect_status(r, OK, "transfer to itself")
        expect(r.transfer_leader.leader_id == cur and c.wait_leader() == cur, "leader moved")
        # to 0: the most caught-up follower
        r, took = transfer(c, cur, 0)
        expect_status(r, OK, "transfer to 0")
        new = c.wait_leader()
        expect(new != cur and r.transfer_leader.leader_id == new, "transfer to 0: leader %d -> %d (answer %d)",
               cur, new, r.transfer_leader.leader_id)
        times.append(took)
        # to no such member
        r, _ = transfer(c, new, 99)
        expect_status(r, INVALID_ARGUMENT, "transfer to node 99")
        # on a follower
        f = [i for i in c.nodes if i != new][0]
        r = c.admin_call(f, req_transfer(new))
        expect_status(r, NOT_LEADER, "transfer asked of a follower")
        expect(r.leader_id == new, "hint %d", r.leader_id)
        # to a dead node: must not succeed, and the cluster keeps a leader
        dead = [i for i in c.nodes if i != new][-1]
        c.kill(dead)
        r = c.admin_call(new, req_transfer(dead, timeout_ms=2000), timeout=T(15))
        expect(r.status != OK or r.transfer_leader.leader_id != dead,
               "transfer to dead node %d reported success: %s", dead, r)
        expect_status(r, (TIMEOUT, UNAVAILABLE, INVALID_ARGUMENT), "transfer to a dead node")
        expect_status(s.set(b"k", b"end"), OK, "write after a failed transfer")
        lead = c.wait_leader()
        expect(lead != dead, "dead node leads")
        report("%d nodes: transfers answered in %s ms; to a dead node: %s" %
               (n, "/".join("%.0f" % (t * 1000) for t in times), status_name(r.status)))


def test_transfer_on_request_3():
    check_transfer_on_request(3)


def test_transfer_on_request_5():
    check_transfer_on_request(5)


def check_sigterm_leader(n, rounds):
    with Cluster(n) as c:
        c.start()
        s = Session(c)
        gaps = []
        for rnd in range(rounds):
            lead = c.wait_leader()
            size0 = c.log_size(lead)
            acks = []
            sent_term = None
            t_term = None
            k = 0
            retries0 = len(s.retries)
            # steady stream: 50 writes, SIGTERM, until 50 writes after the old
            # leader exited
            after_exit = 0
            while after_exit < 50:
                if k == 50:
                    c.signal_nowait(lead, signal.SIGTERM)
                    t_term = time.monotonic()
                    sent_term = True
                r = s.set(b"stream", b"%d-%d" % (rnd, k), timeout=T(30))
                expect_status(r, OK, "write %d of the stream" % k)
                acks.append(time.monotonic())
                k += 1
                if sent_term and not c.nodes[lead].running():
                    after_exit += 1
                expect(k < 100000, "leader %d never exited after SIGTERM" % lead)
            code = c.nodes[lead].proc.wait(timeout=T(10))
            c._reap(lead, "SIGTERM")
            expect(code == 0, "leader %d exited %d after SIGTERM", lead, code)
            log = c.log_since(lead, size0)
            expect("handing leadership" in log, "leader %d did not log a hand-off", lead)
            expect("did not finish in time" not in log, "leader %d: hand-off timed out", lead)
            new = c.wait_leader()
            expect(new != lead, "still led by %d", lead)
            i = next(j for j, t in enumerate(acks) if t >= t_term)
            gap = max(b - a for a, b in zip(acks[i - 1:], acks[i:]))
            gaps.append(gap)
            retried = [st for _, st in s.retries[retries0:]]
            report("round %d: SIGTERM of leader %d -> leader %d; longest gap between acknowledged "
                   "writes %.0f ms; retried answers: %s" %
                   (rnd, lead, new, gap * 1000, ", ".join(sorted(set(retried))) or "none"))
            c.start_node(lead)
        # a hand-off costs no election timeout; leave generous room for slow
        # (sanitizer) builds all the same
        expect(max(gaps) < T(1.5), "longest write gap %.0f ms", max(gaps) * 1000)
        report("%d nodes: write gaps at SIGTERM of the leader: %s ms (election timeout %s ms)" %
               (n, "/".join("%.0f" % (g * 1000) for g in gaps), c.opts["election_timeout_ms"]))


def test_sigterm_leader_3():
    check_sigterm_leader(3, 3)


def test_sigterm_leader_5():
    check_sigterm_leader(5, 2)


def test_sigterm_follower_and_lone_node():
    """A follower's SIGTERM is a plain clean stop; a leader with no
    reachable follower stops within a bounded time too."""
    with Cluster(3) as c:
        lead = c.start_and_lead()
        fs = [i for i in c.nodes if i != lead]
        t0 = time.monotonic()
        expect(c.stop(fs[0]) == 0, "follower exit code")
        t_f = time.monotonic() - t0
        expect(c.wait_leader() == lead, "leader changed when a follower stopped")
        c.kill(fs[1])
        t0 = time.monotonic()
        expect(c.stop(lead, timeout=T(10)) == 0, "lone leader exit code")
        t_l = time.monotonic() - t0
        report("follower stopped in %.0f ms; leader with no live follower stopped in %.0f ms"
               % (t_f * 1000, t_l * 1000))


def test_watch_leader():
    """WATCH_LEADER: an event at once, then one per change, on any node."""
    from harness import pb
    with Cluster(3) as c:
        lead = c.start_and_lead()
        f = [i for i in c.nodes if i != lead][0]
        with c.client(f) as w:
            req = pb.Request(id=4242)
            req.watch_leader.SetInParent()
            w.send(req)
            ev = w.recv()
            expect(ev.id == 4242 and ev.status == OK and ev.HasField("leader_event"), "first event: %s", ev)
            expect(ev.leader_event.leader_id == lead and
                   ev.leader_event.leader_address == c.nodes[lead].client_address,
                   "first event names %d %r, leader is %d", ev.leader_event.leader_id,
                   ev.leader_event.leader_address, lead)
            # a transfer away from the leader, then kill -9 of the new one
            target = [i for i in c.nodes if i not in (lead, f)][0]
            expect_status(c.admin_call(lead, req_transfer(target), timeout=T(15)), OK, "transfer")
            seen = []
            while not seen or seen[-1] != target:
                ev = w.recv()
                expect(ev.id == 4242, "event id %d", ev.id)
                seen.append(ev.leader_event.leader_id)
            c.kill(target)
            while seen[-1] in (0, target):
                ev = w.recv()
                seen.append(ev.leader_event.leader_id)
            final = c.wait_leader()
            expect(seen[-1] == final, "last event %d, leader %d", seen[-1], final)
            # the watching connection still serves requests
            expect_status(w.call(req_status()), OK, "STATUS on the watching connection")
        report("watch on node %d saw leaders %d -> %s" % (f, lead, " -> ".join(map(str, seen))))


def test_sigterm_answers_pending_writes():
    """A write still waiting for its commit when the node stops is answered
    (UNAVAILABLE: "node is stopping", or TIMEOUT) before the connection
    closes, so the client knows to retry rather than seeing a bare EOF."""
    with Cluster(3) as c:
        lead = c.start_and_lead()
        for f in c.nodes:
            if f != lead:
                c.pause(f)
        with c.client(lead) as cl:
            rid = cl.send(req_set(b"pending", b"1", client_id=7, sequence=1, timeout_ms=20000))
            # make sure the node has the request before the signal
            st = cl.call(req_status())
            expect_status(st, OK, "STATUS on the same connection")
            c.signal_nowait(lead, signal.SIGTERM)
            try:
                r = cl.recv_for(rid)
                got = status_name(r.status)
            except (EOFError, ConnectionResetError) as e:
                got = "no answer (%s)" % e
                r = None
        c.nodes[lead].proc.wait(timeout=T(20))
        c._reap(lead, "SIGTERM")
        for f in c.nodes:
            if f != lead:
                c.resume(f)
        expect(r is not None, "pending write at SIGTERM: %s, want UNAVAILABLE or TIMEOUT", got)
        expect_status(r, (UNAVAILABLE, TIMEOUT), "pending write at SIGTERM")
        report("a write pending when its leader got SIGTERM was answered %s" % got)


if __name__ == "__main__":
    main([test_transfer_on_request_3, test_transfer_on_request_5, test_sigterm_leader_3,
          test_sigterm_leader_5, test_sigterm_follower_and_lone_node,
          test_watch_leader, test_sigterm_answers_pending_writes])
