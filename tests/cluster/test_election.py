#!/usr/bin/python3
"""Elections: one leader at start (3 and 5 nodes), follower redirect, and a
new leader after kill -9 of the old one."""
import time

from harness import (NOT_LEADER, OK, Cluster, Session, T, expect, expect_status, main,
                     report, req_cas, req_del, req_get, req_set, req_transfer, wait_until)


def check_start(n):
    t0 = time.monotonic()
    with Cluster(n) as c:
        lead = c.start_and_lead()
        elapsed = time.monotonic() - t0

        def all_members():
            # A node that started after the others had elected joins the
            # running cluster and learns the members from the log: a
            # moment after it knows the leader.
            st = c.statuses()
            return st if all(len(s.members) == n for s in st.values()) else None
        st = wait_until(all_members, T(10), "every node lists %d members" % n)
        leaders = [i for i, s in st.items() if s.role == "leader"]
        expect(leaders == [lead], "leaders: %s", leaders)
        term = st[lead].term
        for i, s in st.items():
            expect(s.id == i, "node %d reports id %d", i, s.id)
            expect(s.term == term and s.leader_id == lead,
                   "node %d: term %d leader %d, leader %d says term %d", i, s.term, s.leader_id, lead, term)
            expect(s.role in ("leader", "follower"), "node %d role %s", i, s.role)
            expect(len(s.members) == n, "node %d lists %d members", i, len(s.members))
            for m in s.members:
                expect(m.client_address == c.nodes[m.id].client_address and m.voter,
                       "node %d: member %d client %s voter %s", i, m.id, m.client_address, m.voter)
            expect(s.client_address == c.nodes[i].client_address, "node %d client_address %s",
                   i, s.client_address)
            expect(s.version != "", "node %d: empty version", i)
        expect(len(st[lead].followers) == n - 1, "leader reports %d followers", len(st[lead].followers))
        # The first write commits and every node applies it.
        r = Session(c).set(b"hello", b"world")
        expect_status(r, OK, "first write")
        c.wait_caught_up()
        for i in c.nodes:
            expect(c.call(i, req_get(b"hello")).get.value == b"world", "node %d lost the write", i)
        report("%d nodes: leader %d in term %d, agreed by all after %.2fs" % (n, lead, term, elapsed))


def test_election_3():
    check_start(3)


def test_election_5():
    check_start(5)


def test_follower_redirect():
    with Cluster(3) as c:
        lead = c.start_and_lead()
        expect_status(Session(c).set(b"k", b"v0"), OK, "seed write")
        lead_addr = c.nodes[lead].client_address
        for f in c.nodes:
            if f == lead:
                continue
            for what, req in (("SET", req_set(b"k", b"v1")), ("DEL", req_del(b"k")),
                              ("CAS", req_cas(b"k", b"v2", expected=b"v0")),
                              ("SET with session", req_set(b"k", b"v3", client_id=99, sequence=1)),
                              ("TRANSFER_LEADER", req_transfer(0))):
                # TRANSFER_LEADER needs the admin role: the admin socket
                r = (c.admin_call if what == "TRANSFER_LEADER" else c.call)(f, req)
                expect_status(r, NOT_LEADER, "%s to follower %d" % (what, f))
                expect(r.leader_id == lead and r.leader_address == lead_addr,
                       "%s to follower %d: hint %d %r, want %d %r", what, f, r.leader_id,
                       r.leader_address, lead, lead_addr)
        # nothing of it was applied
        c.wait_caught_up()
        for i in c.nodes:
            r = c.call(i, req_get(b"k"))
            expect(r.status == OK and r.get.value == b"v0", "node %d: k = %r", i, r.get.value)
        # following the hint works
        port = int(lead_addr.rsplit(":", 1)[1])
        expect(port == c.nodes[lead].client_port, "hint port")
        expect_status(c.call(lead, req_set(b"k", b"v4")), OK, "write at the hinted leader")
        report("followers answer NOT_LEADER naming node %d at %s" % (lead, lead_addr))


def check_kill_leader(n):
    with Cluster(n) as c:
        old = c.start_and_lead()
        s = Session(c)
        for k in range(20):
            expect_status(s.set(b"before-%d" % k, b"v%d" % k), OK, "write before the kill")
        old_term = c.status(old).term
        t0 = time.monotonic()
        c.kill(old)
        # A steady client: retry one write until it is acknowledged.
        r = s.set(b"after-0", b"x", timeout=T(30))
        t_write = time.monotonic() - t0
        expect_status(r, OK, "first write after the kill")
        new = c.wait_leader()
        expect(new != old, "leader is still %d", old)
        new_term = c.status(new).term
        expect(new_term > old_term, "term %d not above %d", new_term, old_term)
        for k in range(1, 20):
            expect_status(s.set(b"after-%d" % k, b"x"), OK, "write after the kill")
        for k in range(20):
            r = c.call(new, req_get(b"before-%d" % k))
            expect(r.status == OK and r.get.value == b"v%d" % k, "before-%d lost: %s", k, r)
        report("%d nodes: kill -9 of leader %d (term %d) -> leader %d (term %d); first write "
               "acknowledged %.0f ms after the kill" % (n, old, old_term, new, new_term, t_write * 1000))


def test_kill_leader_3():
    check_kill_leader(3)


def test_kill_leader_5():
    check_kill_leader(5)


def test_kill_leader_twice_5():
    """5 nodes survive two failures: kill two leaders in a row."""
    with Cluster(5) as c:
        c.start()
        s = Session(c)
        killed = []
        for round_ in range(2):
            lead = c.wait_leader()
            expect_status(s.set(b"round", b"%d" % round_), OK, "write")
            c.kill(lead)
            killed.append(lead)
        expect_status(s.set(b"round", b"final"), OK, "write with two nodes down")
        lead = c.wait_leader()
        expect(lead not in killed, "dead node %d leads", lead)
        wait_until(lambda: c.call(lead, req_get(b"round")).get.value == b"final", T(10), "final value")
        report("killed leaders %s; node %d leads the remaining three" % (killed, lead))


if __name__ == "__main__":
    main([test_election_3, test_election_5, test_follower_redirect, test_kill_leader_3,
          test_kill_leader_5, test_kill_leader_twice_5])
