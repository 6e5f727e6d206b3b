#!/usr/bin/python3
"""Restarts: an old leader rejoins and catches up from the log; a follower
that missed a compaction catches up from a snapshot; a whole cluster
stopped (SIGTERM, and kill -9) and started keeps every acknowledged write."""
import signal
import time

from harness import (OK, Cluster, Session, expect, expect_status, main, report, req_del, req_get,
                     req_list)


def check_all_keys(c, node, expected, stale=True):
    """node serves every key of `expected` with its value, and LIST shows
    exactly those keys."""
    with c.client(node) as cl:
        for k, v in expected.items():
            r = cl.call(req_get(k, stale=stale))
            expect(r.status == OK and r.get.value == v, "node %d: %r = %s %r, want %r", node, k,
                   r.status, r.get.value, v)
        keys, after = [], None
        while True:
            r = cl.call(req_list(b"", limit=1000, start_after=after, stale=stale))
            expect_status(r, OK, "LIST")
            keys += list(r.list.keys)
            if not r.list.truncated:
                break
            after = r.list.keys[-1]
    expect(sorted(keys) == sorted(expected), "node %d lists %d keys, want %d", node, len(keys), len(expected))


def test_old_leader_rejoins_by_log():
    with Cluster(3) as c:
        old = c.start_and_lead()
        s = Session(c)
        want = s.set_all((b"k%03d" % k, b"a%d" % k) for k in range(30))
        c.kill(old)
        new = c.wait_leader()
        want.update(s.set_all(((b"k%03d" % k, b"b%d" % k) for k in range(30, 130)),
                              "write while %d is down" % old))
        commit = c.status(new).commit_index
        t0 = time.monotonic()
        c.start_node(old)
        c.wait_applied(old, commit)
        took = time.monotonic() - t0
        st = c.status(old)
        expect(st.role == "follower" and st.leader_id == c.wait_leader(), "rejoined as %s of %d",
               st.role, st.leader_id)
        expect(st.snapshot_index == 0, "caught up by snapshot (snapshot_index %d), expected by log",
               st.snapshot_index)
        check_all_keys(c, old, want)
        # and it takes part again: it is needed for a quorum once another node is gone
        other = [i for i in c.nodes if i not in (old, new)][0]
        c.kill(other)
        expect_status(s.set(b"after", b"rejoin"), OK, "write that needs the rejoined node")
        report("old leader %d restarted and applied %d entries from the log in %.0f ms" %
               (old, commit, took * 1000))


def catch_up_by_snapshot(victim):
    with Cluster(3, snapshot_entries=50) as c:
        lead = c.start_and_lead()
        f = lead if victim == "leader" else [i for i in c.nodes if i != lead][0]
        s = Session(c)
        want = s.set_all((b"s%04d" % k, b"first-%d" % k) for k in range(20))
        c.wait_applied(f, c.status(lead).commit_index)
        f_last = c.status(f).last_index
        c.kill(f)
        # a few hundred writes, some overwrites and deletes, while f is down
        for k in range(300):
            key = b"s%04d" % (k % 250)
            want[key] = b"second-%d" % k
            expect_status(s.set(key, want[key]), OK, "write while %d is down" % f)
        for k in range(0, 250, 10):
            expect_status(s.write(req_del(b"s%04d" % k)), OK, "delete")
            del want[b"s%04d" % k]
        lead = c.wait_leader()
        lst = c.status(lead)
        # (the log keeps snapshot_entries/10 entries below a snapshot)
        expect(lst.snapshot_index > f_last + 50,
               "leader's snapshot_index %d does not cover the restarted node's last index %d",
               lst.snapshot_index, f_last)
        size0 = c.log_size(lead)
        t0 = time.monotonic()
        c.start_node(f)
        c.wait_applied(f, lst.commit_index)
        took = time.monotonic() - t0
        st = c.status(f)
        expect(st.snapshot_index >= lst.snapshot_index,
               "follower snapshot_index %d < leader's %d: it did not install the snapshot",
               st.snapshot_index, lst.snapshot_index)
        check_all_keys(c, f, want)
        expect(st.keys == len(want), "STATUS keys %d, want %d", st.keys, len(want))
        sent = "sent snapshot" in c.log_since(lead, size0)
        # survives its own restart from the installed snapshot plus log tail
        expect(c.stop(f) == 0, "clean stop")
        c.start_node(f)
        c.wait_caught_up()
        check_all_keys(c, f, want)
        report("old %s %d (last index %d) restarted after compaction to %d: installed snapshot "
               "%d%s, applied %d in %.0f ms, serves all %d keys" %
               (victim, f, f_last, lst.snapshot_index, st.snapshot_index,
                " (leader logged 'sent snapshot')" if sent else "", lst.commit_index, took * 1000,
                len(want)))


def test_follower_catches_up_by_snapshot():
    catch_up_by_snapshot("follower")


def test_old_leader_catches_up_by_snapshot():
    catch_up_by_snapshot("leader")


def full_stop_start(how):
    with Cluster(3, snapshot_entries=100) as c:
        c.start()
        c.wait_leader()
        s = Session(c)
        want = {}
        for k in range(250):
            key = b"f%03d" % (k % 200)
            want[key] = b"v%d" % k
            expect_status(s.set(key, want[key]), OK, "write")
        # the last acknowledged write is the one that matters most
        for i in list(c.nodes):
            if how == "SIGTERM":
                code = c.stop(i)
                expect(code == 0, "node %d exited %d after SIGTERM", i, code)
            else:
                c.kill(i, signal.SIGKILL)
        t0 = time.monotonic()
        lead = c.start_and_lead()
        took = time.monotonic() - t0
        for i in c.nodes:
            # a linearizable read on every node after the restart
            check_all_keys(c, i, want, stale=False)
        snaps = [c.status(i).snapshot_index for i in c.nodes]
        expect(min(snaps) > 0, "snapshot indexes %s: restart did not load a snapshot", snaps)
        expect_status(s.set(b"after", b"restart"), OK, "write after the restart")
        report("%s of all 3 nodes, then start: leader %d after %.0f ms, all %d acknowledged keys "
               "present everywhere (loaded snapshots %s + log tail)" %
               (how, lead, took * 1000, len(want), "/".join(map(str, snaps))))


def test_full_stop_sigterm():
    full_stop_start("SIGTERM")


def test_full_stop_kill9():
    full_stop_start("kill -9")


if __name__ == "__main__":
    main([test_old_leader_rejoins_by_log, test_follower_catches_up_by_snapshot,
          test_old_leader_catches_up_by_snapshot, test_full_stop_sigterm,
          test_full_stop_kill9])
