#!/usr/bin/python3
"""Client sessions: a write retried with the same (client_id, sequence)
returns its original result and is applied once -- also when the first try
was cut off by kill -9 of the leader."""
from harness import (CAS_FAILED, INVALID_ARGUMENT, OK, Cluster, Session, expect, expect_status, main,
                     report, req_cas, req_del, req_get, req_set)


def test_retry_same_sequence():
    with Cluster(3) as c:
        lead = c.start_and_lead()
        s, other = Session(c), Session(c)
        # SET retried after someone else overwrote the key: not applied again
        r1 = s.write(req_set(b"k", b"mine"))
        expect_status(r1, OK, "SET seq 1")
        expect_status(other.set(b"k", b"theirs"), OK, "other client's SET")
        r2 = s.write(req_set(b"k", b"mine"), seq=1)
        expect_status(r2, OK, "retry of SET seq 1")
        expect(r2.set.index == r1.set.index, "retry answered index %d, the original was %d",
               r2.set.index, r1.set.index)
        v = c.call(lead, req_get(b"k")).get.value
        expect(v == b"theirs", "retried SET applied twice: k = %r", v)
        # the same request twice on one connection, pipelined
        with c.client(lead) as cl:
            a = cl.send(req_set(b"p", b"1", client_id=s.client_id, sequence=2))
            b = cl.send(req_set(b"p", b"1", client_id=s.client_id, sequence=2))
            ra, rb = cl.recv_for(a), cl.recv_for(b)
        s.seq = 2
        expect_status(ra, OK, "pipelined seq 2, first")
        expect_status(rb, OK, "pipelined seq 2, duplicate")
        expect(ra.set.index == rb.set.index, "duplicate answered index %d vs %d", rb.set.index, ra.set.index)
        # CAS increment retried: the retry must not fail (the first try already
        # changed the value) and must not increment again
        expect_status(s.write(req_cas(b"n", b"0", expect_absent=True)), OK, "counter = 0")
        r1 = s.write(req_cas(b"n", b"1", expected=b"0"))
        expect_status(r1, OK, "CAS 0->1")
        seq = s.seq
        for _ in range(3):
            r = s.write(req_cas(b"n", b"1", expected=b"0"), seq=seq)
            expect_status(r, OK, "retried CAS 0->1 (a CAS_FAILED here means it was applied twice)")
            expect(r.cas.index == r1.cas.index, "retried CAS index %d vs %d", r.cas.index, r1.cas.index)
        expect(c.call(lead, req_get(b"n")).get.value == b"1", "counter")
        # a CAS whose first outcome was CAS_FAILED keeps that outcome on retry,
        # even though it would succeed now
        expect_status(other.set(b"m", b"old"), OK, "m = old")
        r1 = s.write(req_cas(b"m", b"new", expected=b"x"))
        expect_status(r1, CAS_FAILED, "CAS x->new")
        seq = s.seq
        expect_status(other.set(b"m", b"x"), OK, "m = x")
        r = s.write(req_cas(b"m", b"new", expected=b"x"), seq=seq)
        expect_status(r, CAS_FAILED, "retry of a failed CAS must repeat the original result")
        expect(c.call(lead, req_get(b"m")).get.value == b"x", "retried failed CAS applied")
        # DEL retried: original OK, not NOT_FOUND
        expect_status(s.set(b"d", b"1"), OK, "SET d")
        r1 = s.write(req_del(b"d"))
        expect_status(r1, OK, "DEL d")
        r = s.write(req_del(b"d"), seq=s.seq)
        expect_status(r, OK, "retried DEL (original result OK)")
        # the retry is answered on a follower's leader after a restart of
        # the whole cluster too: sessions are in the replicated state
        for i in list(c.nodes):
            c.stop(i)
        c.start()
        c.wait_leader()
        # (a session remembers its latest write: retry that one)
        r = s.write(req_del(b"d"), seq=s.seq)
        expect_status(r, OK, "retried DEL after a full restart (original result OK, not NOT_FOUND)")
        expect(getattr(r, "del").index == getattr(r1, "del").index, "DEL retry index %d vs %d",
               getattr(r, "del").index, getattr(r1, "del").index)
        lead = c.wait_leader()
        expect(c.call(lead, req_get(b"n")).get.value == b"1", "counter after restart")
        # an older sequence than the latest is refused, never applied
        r = c.call(lead, req_cas(b"n", b"1", expected=b"0", client_id=s.client_id, sequence=4))
        expect_status(r, (OK, INVALID_ARGUMENT), "CAS with a sequence older than the latest")
        expect(c.call(lead, req_get(b"n")).get.value == b"1", "old-sequence CAS applied")
        report("SET, pipelined duplicate, CAS-increment, failed CAS and DEL retries return the "
               "original result and apply once, also after a full restart")


def test_retry_across_leader_kill():
    """Send a CAS increment, kill -9 the leader before reading the answer,
    retry on the new leader with the same sequence; repeat.  Every increment
    must end OK and the counter must equal the number of increments."""
    with Cluster(3) as c:
        c.start()
        c.wait_leader()
        s = Session(c)
        expect_status(s.write(req_cas(b"ctr", b"0", expect_absent=True)), OK, "counter = 0")
        value, cut = 0, 0
        for rnd in range(40):
            req = req_cas(b"ctr", b"%d" % (value + 1), expected=b"%d" % value)
            if rnd % 8 == 3:
                lead = c.wait_leader()
                s.seq += 1
                req.client_id, req.sequence = s.client_id, s.seq
                with c.client(lead) as cl:
                    cl.send(req)
                    c.kill(lead)  # the outcome of that send is unknown
                cut += 1
                r = s.write(req_cas(b"ctr", b"%d" % (value + 1), expected=b"%d" % value), seq=s.seq)
                c.start_node(lead)
            else:
                r = s.write(req)
            expect_status(r, OK, "increment %d -> %d (CAS_FAILED = applied twice)" % (value, value + 1))
            value += 1
        lead = c.wait_leader()
        got = c.call(lead, req_get(b"ctr")).get.value
        expect(got == b"%d" % value, "counter is %r after %d increments", got, value)
        report("%d CAS increments, %d of them cut off by kill -9 of the leader and retried: counter = %s"
               % (value, cut, got.decode()))


def test_many_clients_interleaved():
    with Cluster(3) as c:
        lead = c.start_and_lead()
        sessions = [Session(c) for _ in range(20)]
        for rnd in range(10):
            for j, s in enumerate(sessions):
                expect_status(s.set(b"c%d" % j, b"%d" % rnd), OK, "write")
                if rnd % 3 == 0:  # and a duplicate of it
                    r = c.call(lead, req_set(b"c%d" % j, b"%d" % rnd, client_id=s.client_id, sequence=s.seq))
                    expect_status(r, OK, "duplicate")
        for j in range(20):
            expect(c.call(lead, req_get(b"c%d" % j)).get.value == b"9", "client %d", j)
        report("20 sessions x 10 writes with duplicates interleaved")


if __name__ == "__main__":
    main([test_retry_same_sequence, test_retry_across_leader_kill, test_many_clients_interleaved])
