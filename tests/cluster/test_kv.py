#!/usr/bin/python3
"""Writes and reads through the client protocol on a 3-node cluster: SET,
GET, DEL, CAS, LIST paging, binary data, argument checks, pipelining,
stale versus linearizable reads on followers, and the data quota."""
import os
import subprocess

from harness import (CAS_FAILED, INVALID_ARGUMENT, NOT_FOUND, OK, ROOT, TIMEOUT, TOO_LARGE,
                     UNAVAILABLE, Cluster, Session, T, expect, expect_status, main, pb, report,
                     req_cas, req_del, req_get, req_list, req_set, wait_until)

CTL = os.environ.get("RAFTKV_CTL") or os.path.join(ROOT, "build", "src", "ctl", "raftkvctl")


def test_set_get_del_cas():
    with Cluster(3) as c:
        lead = c.start_and_lead()
        s = Session(c)
        r = s.set(b"a", b"1")
        expect_status(r, OK, "SET a")
        expect(r.HasField("set") and r.set.index > 0, "SET returns its log index: %s", r)
        idx = r.set.index
        r = c.call(lead, req_get(b"a"))
        expect_status(r, OK, "GET a")
        expect(r.get.value == b"1" and r.get.applied_index >= idx, "GET a: %s", r)
        r = c.call(lead, req_get(b"missing"))
        expect_status(r, NOT_FOUND, "GET missing")
        # overwrite
        expect_status(s.set(b"a", b"2"), OK, "SET a again")
        expect(c.call(lead, req_get(b"a")).get.value == b"2", "overwrite")
        # empty value is a value
        expect_status(s.set(b"empty", b""), OK, "SET empty value")
        r = c.call(lead, req_get(b"empty"))
        expect(r.status == OK and r.get.HasField("value") and r.get.value == b"", "empty value: %s", r)
        # DEL
        r = s.write(req_del(b"a"))
        expect_status(r, OK, "DEL a")
        expect(r.HasField("del") and getattr(r, "del").index > idx, "DEL index: %s", r)
        expect_status(c.call(lead, req_get(b"a")), NOT_FOUND, "GET after DEL")
        expect_status(s.write(req_del(b"a")), NOT_FOUND, "DEL of a missing key")
        # CAS expect-absent
        expect_status(s.write(req_cas(b"c", b"first", expect_absent=True)), OK, "CAS absent->first")
        r = s.write(req_cas(b"c", b"second", expect_absent=True))
        expect_status(r, CAS_FAILED, "CAS expect-absent on a present key")
        expect(r.cas.current == b"first" and not r.cas.current_absent, "CAS_FAILED current: %s", r)
        # CAS expected value
        r = s.write(req_cas(b"c", b"third", expected=b"wrong"))
        expect_status(r, CAS_FAILED, "CAS with a wrong expectation")
        expect(r.cas.HasField("current") and r.cas.current == b"first", "CAS_FAILED current: %s", r)
        r = s.write(req_cas(b"c", b"third", expected=b"first"))
        expect_status(r, OK, "CAS first->third")
        expect(r.cas.index > 0, "CAS index")
        r = s.write(req_cas(b"nokey", b"x", expected=b"y"))
        expect_status(r, CAS_FAILED, "CAS expecting a value of a missing key")
        expect(r.cas.current_absent and not r.cas.HasField("current"), "current_absent: %s", r)
        # CAS to an empty expected value is not "absent"
        expect_status(s.set(b"e", b""), OK, "SET e empty")
        expect_status(s.write(req_cas(b"e", b"full", expected=b"")), OK, "CAS ''->full")
        expect_status(s.write(req_cas(b"e2", b"full", expected=b"")), CAS_FAILED,
                      "CAS '' on a missing key")
        # every node converges on the same values
        c.wait_caught_up()
        for i in c.nodes:
            got = {k: c.call(i, req_get(k, stale=True)) for k in (b"a", b"c", b"e", b"empty")}
            expect(got[b"a"].status == NOT_FOUND, "node %d: a exists", i)
            expect(got[b"c"].get.value == b"third", "node %d: c = %r", i, got[b"c"].get.value)
            expect(got[b"e"].get.value == b"full", "node %d: e = %r", i, got[b"e"].get.value)
            expect(got[b"empty"].status == OK and got[b"empty"].get.value == b"", "node %d: empty", i)
        report("SET/GET/DEL/CAS semantics hold on the leader and every follower")


def test_bad_arguments():
    with Cluster(3, max_key_bytes="64", max_value_bytes="1KiB", max_frame_bytes="64KiB",
                 max_pending_output_bytes="128KiB") as c:
        lead = c.start_and_lead()
        s = Session(c)
        cases = [
            ("empty key SET", req_set(b"", b"v"), INVALID_ARGUMENT),
            ("SET without a key", None, INVALID_ARGUMENT),
            ("65-byte key", req_set(b"k" * 65, b"v"), TOO_LARGE),
            ("1025-byte value", req_set(b"k", b"v" * 1025), TOO_LARGE),
            ("CAS with expected and expect_absent",
             req_cas(b"k", b"v", expected=b"x", expect_absent=True), INVALID_ARGUMENT),
            ("CAS with a too large expected", req_cas(b"k", b"v", expected=b"x" * 1025), TOO_LARGE),
            ("client_id without sequence", req_set(b"k", b"v", client_id=5), INVALID_ARGUMENT),
            ("sequence without client_id", req_set(b"k", b"v", sequence=5), INVALID_ARGUMENT),
            ("empty key GET", req_get(b""), INVALID_ARGUMENT),
            ("65-byte key GET", req_get(b"k" * 65), TOO_LARGE),
            ("65-byte LIST prefix", req_list(b"k" * 65), TOO_LARGE),
            ("empty Request (no op)", None, INVALID_ARGUMENT),
        ]
        from harness import pb
        for what, req, want in cases:
            if req is None:
                req = pb.Request()
                if what.startswith("SET"):
                    req.set.value = b"v"
            r = c.call(lead, req)
            expect_status(r, want, what)
            expect(r.message != "", "%s: no message", what)
        # the exact limits are fine
        expect_status(s.set(b"k" * 64, b"v" * 1024), OK, "64-byte key, 1 KiB value")
        expect(c.call(lead, req_get(b"k" * 64)).get.value == b"v" * 1024, "limit-sized value")
        # a replay of an old sequence is never applied again
        s2 = Session(c)
        for v in (b"1", b"2", b"3"):
            expect_status(s2.set(b"seq", v), OK, "SET seq=%r" % v)
        r = c.call(lead, req_set(b"seq", b"older", client_id=s2.client_id, sequence=1))
        expect_status(r, (OK, INVALID_ARGUMENT), "replay of sequence 1 after 3")
        v = c.call(lead, req_get(b"seq")).get.value
        expect(v == b"3", "a replay of sequence 1 changed the value to %r (answer %s)", v, r)
        report("argument checks answer INVALID_ARGUMENT/TOO_LARGE with a message; limits are inclusive")


def test_list_paging():
    with Cluster(3) as c:
        lead = c.start_and_lead()
        keys = [b"p/%03d" % i for i in range(25)]
        # pipelined writes on one connection, no session
        with c.client(lead) as cl:
            rids = [cl.send(req_set(k, k + b"!")) for k in keys + [b"q/1", b"o/1", b"p", b"p0"]]
            for rid in rids:
                expect_status(cl.recv_for(rid), OK, "pipelined SET")
        f = [i for i in c.nodes if i != lead][0]
        for node, stale in ((lead, False), (f, False), (f, True)):
            got, after, pages = [], None, 0
            while True:
                r = c.call(node, req_list(b"p/", limit=10, start_after=after, stale=stale))
                expect_status(r, OK, "LIST")
                pages += 1
                got += list(r.list.keys)
                expect(len(r.list.keys) <= 10, "page of %d keys", len(r.list.keys))
                if not r.list.truncated:
                    break
                expect(pages < 10, "LIST never ends")
                after = r.list.keys[-1]
            expect(got == keys, "node %d LIST p/ %s: %r", node, "stale" if stale else "", got)
            expect(pages == 3, "%d pages", pages)
        r = c.call(lead, req_list(b"p/", limit=25))
        expect(len(r.list.keys) == 25 and not r.list.truncated, "exact limit: truncated=%s", r.list.truncated)
        r = c.call(lead, req_list(b""))
        expect(len(r.list.keys) == 29 and not r.list.truncated, "LIST all: %d", len(r.list.keys))
        expect(list(r.list.keys) == sorted(r.list.keys), "LIST is not sorted")
        r = c.call(lead, req_list(b"p", limit=2))
        expect(list(r.list.keys) == [b"p", b"p/000"] and r.list.truncated, "LIST p: %s", r.list.keys)
        r = c.call(lead, req_list(b"zzz"))
        expect_status(r, OK, "LIST with no match")
        expect(len(r.list.keys) == 0 and not r.list.truncated, "no match: %s", r.list)
        r = c.call(lead, req_list(b"p/", start_after=b"p/023"))
        expect(list(r.list.keys) == [b"p/024"], "start_after p/023: %s", r.list.keys)
        expect(r.list.applied_index > 0, "LIST reports applied_index")
        report("LIST by prefix pages 25 keys as 10+10+5 on leader and follower")


def test_binary_data():
    with Cluster(3) as c:
        lead = c.start_and_lead()
        s = Session(c)
        data = {
            b"\x00": b"\x00",
            b"\x00a\x00": b"nul\x00in\x00the\x00middle",
            b"\x00\x00": bytes(range(256)) * 4,
            b"\xff\xfe\x00": b"\x00" * 1000,
            b"bin/\x00\x01": b"\xff" * 3,
            b"bin/\x00\x02": b"",
            "ключ".encode(): "значение".encode(),
        }
        for k, v in data.items():
            expect_status(s.set(k, v), OK, "SET %r" % k)
        r = s.write(req_cas(b"\x00a\x00", b"\x00new\x00", expected=b"nul\x00in\x00the\x00middle"))
        expect_status(r, OK, "CAS with NUL bytes in the expectation")
        data[b"\x00a\x00"] = b"\x00new\x00"
        r = s.write(req_cas(b"\x00a\x00", b"x", expected=b"\x00new"))  # a prefix is not equal
        expect_status(r, CAS_FAILED, "CAS with a prefix of the value")
        expect(r.cas.current == b"\x00new\x00", "current %r", r.cas.current)
        c.wait_caught_up()
        for i in c.nodes:
            for k, v in data.items():
                r = c.call(i, req_get(k, stale=(i != lead)))
                expect(r.status == OK and r.get.value == v, "node %d: %r = %r", i, k, r.get.value)
            r = c.call(i, req_list(b"\x00"))
            expect(list(r.list.keys) == [b"\x00", b"\x00\x00", b"\x00a\x00"], "LIST \\0: %s", r.list.keys)
            r = c.call(i, req_list(b"bin/\x00"))
            expect(list(r.list.keys) == [b"bin/\x00\x01", b"bin/\x00\x02"], "LIST bin/\\0: %s", r.list.keys)
        expect_status(c.call(lead, req_get(b"\x00b")), NOT_FOUND, "GET \\0b")
        report("keys and values with NUL and 0xff bytes round-trip on every node")


def test_large_values_pipelined():
    with Cluster(3) as c:
        lead = c.start_and_lead()
        big = bytes((i * 7) & 0xFF for i in range(1 << 20))  # exactly 1 MiB: the default limit
        s = Session(c)
        expect_status(s.set(b"big", big), OK, "1 MiB value")
        expect_status(s.set(b"big2", big + b"x"), TOO_LARGE, "1 MiB + 1 value")
        with c.client(lead) as cl:
            rids = [cl.send(req_set(b"pl/%04d" % i, b"v%d" % i)) for i in range(500)]
            for rid in rids:
                expect_status(cl.recv_for(rid), OK, "pipelined SET")
            # reads begun after the writes were acknowledged must see them
            # (reads sent before the acks may legally miss them)
            rgets = [cl.send(req_get(b"pl/%04d" % i)) for i in range(0, 500, 50)]
            for n, rid in zip(range(0, 500, 50), rgets):
                r = cl.recv_for(rid)
                expect(r.status == OK and r.get.value == b"v%d" % n, "pipelined GET %d: %s", n, r)
        c.wait_caught_up()
        for i in c.nodes:
            r = c.call(i, req_get(b"big", stale=True))
            expect(r.get.value == big, "node %d: big value differs", i)
        report("1 MiB value replicated; 500 pipelined SETs then pipelined GETs on one connection, matched by id")


def test_follower_reads():
    """Linearizable reads on followers see every acknowledged write; stale
    reads are served from local state, even without a leader."""
    with Cluster(3) as c:
        lead = c.start_and_lead()
        s = Session(c)
        fs = [i for i in c.nodes if i != lead]
        conns = {i: c.client(i) for i in c.nodes}
        try:
            stale_behind = 0
            for k in range(60):
                r = s.set(b"x", b"%d" % k)
                expect_status(r, OK, "SET x")
                idx = r.set.index
                for f in fs:
                    g = conns[f].call(req_get(b"x"))
                    expect_status(g, OK, "linearizable GET on follower %d" % f)
                    expect(g.get.value == b"%d" % k and g.get.applied_index >= idx,
                           "follower %d: linearizable read after write %d returned %r (applied %d < %d?)",
                           f, k, g.get.value, g.get.applied_index, idx)
                    g = conns[f].call(req_get(b"x", stale=True))
                    expect(g.status == OK, "stale GET: %s", g)
                    # a stale read is consistent with the applied index it reports
                    if g.get.applied_index >= idx:
                        expect(g.get.value == b"%d" % k, "stale read at applied %d >= %d gave %r",
                               g.get.applied_index, idx, g.get.value)
                    else:
                        stale_behind += 1
                        expect(int(g.get.value) < k, "stale value from the future")
        finally:
            for cl in conns.values():
                cl.close()
        # Leave one follower alone: it still answers stale reads, never a
        # linearizable one.
        f = fs[0]
        c.kill(lead)
        c.kill(fs[1])
        r = c.call(f, req_get(b"x", stale=True))
        expect(r.status == OK and r.get.value == b"59", "stale read on a lone follower: %s", r)
        r = c.call(f, req_get(b"x", timeout_ms=1000), timeout=T(10))
        expect_status(r, (UNAVAILABLE, TIMEOUT), "linearizable read on a lone follower")
        r = c.call(f, req_list(b"", timeout_ms=1000), timeout=T(10))
        expect_status(r, (UNAVAILABLE, TIMEOUT), "linearizable LIST on a lone follower")
        r = c.call(f, req_list(b"", stale=True))
        expect(r.status == OK and list(r.list.keys) == [b"x"], "stale LIST on a lone follower: %s", r)
        report("60 writes: linearizable follower reads always current; stale reads %d times behind; "
               "a lone follower serves stale reads only" % stale_behind)


def test_quota():
    """cluster.max_data_bytes goes through the log: every node holds it;
    writes that would grow the dataset past it get NO_SPACE (raftkvctl exit
    7) and change nothing; deletes, shrinking and same-size writes work."""
    quota = 20000
    with Cluster(3, max_data_bytes=quota) as c:
        lead = c.start_and_lead()
        wait_until(lambda: all((st := c.status(i)) and st.quota_bytes == quota for i in c.nodes),
                   T(10), "every node to hold the quota %d from the log" % quota)
        s = Session(c)
        val = b"v" * 996  # with a 4-byte key: 1000 bytes a pair
        written = 0
        for k in range(25):
            r = s.set(b"q%03d" % k, val)
            if r.status != OK:
                break
            written += 1
        expect(written == 20, "%d pairs of 1000 bytes fit a %d-byte quota, want 20", written, quota)
        expect_status(r, pb.NO_SPACE, "write past the quota")
        expect("max_data_bytes" in r.message, "NO_SPACE message: %r", r.message)
        expect(c.call(lead, req_get(b"q%03d" % written)).status == NOT_FOUND,
               "a refused write changed nothing")
        expect_status(s.set(b"q000", b"w" * 996), OK, "same-size overwrite at the quota")
        expect_status(s.write(req_cas(b"q001", b"w" * 997, expected=b"v" * 996)), pb.NO_SPACE,
                      "CAS growing past the quota")
        p = subprocess.run([CTL, "-c", c.config, "set", "q100", "x"], capture_output=True,
                           text=True, timeout=T(30))
        expect(p.returncode == 7 and "no space" in p.stderr, "raftkvctl set past the quota: "
               "exit %d %r", p.returncode, p.stderr)
        expect_status(s.set(b"q002", b"x"), OK, "shrinking overwrite")
        expect_status(s.write(req_del(b"q003")), OK, "delete")
        expect_status(s.set(b"q100", b"x" * 1500), OK, "a write that fits again")
        c.wait_caught_up()
        sizes = {i: c.status(i).data_bytes for i in c.nodes}
        expect(len(set(sizes.values())) == 1 and max(sizes.values()) <= quota,
               "data_bytes per node %s, quota %d", sizes, quota)
        report("quota %d: 20 pairs of 1000 bytes fit, the 21st NO_SPACE; data_bytes %s" %
               (quota, sizes))


if __name__ == "__main__":
    main([test_set_get_del_cas, test_bad_arguments, test_list_paging, test_binary_data,
          test_large_values_pipelined, test_follower_reads, test_quota])
