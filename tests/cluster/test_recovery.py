#!/usr/bin/python3
"""Restarts: an old leader rejoins and catches up from the log; a follower
that missed a compaction catches up from a snapshot; a whole cluster
stopped (SIGTERM, and kill -9) and started keeps every acknowledged write."""
import os
import re
import signal
import time

from harness import (OK, Cluster, Session, T, expect, expect_status, main, report, req_del, req_get,
                     req_list, wait_until)


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
        # (the log keeps snapshot_entries/10 entries below a snapshot)
        # A snapshot is reported once the store's writer thread made it
        # durable, which may be after the writes it covers were acknowledged.
        lst = wait_until(lambda: (st := c.status(lead)) and st.snapshot_index > f_last + 50 and st,
                         T(10), "leader %d's snapshot_index to cover the restarted node's last "
                         "index %d" % (lead, f_last))
        size0 = c.log_size(lead)
        t0 = time.monotonic()
        c.start_node(f)
        c.wait_applied(f, lst.commit_index)
        took = time.monotonic() - t0
        st = wait_until(lambda: (st := c.status(f)) and st.snapshot_index >= lst.snapshot_index and st,
                        T(10), "node %d's snapshot_index to reach the leader's %d (the snapshot "
                        "installed)" % (f, lst.snapshot_index))
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
        # Snapshots are written by a child process in the background, so a
        # node may not have one yet when the last write is acknowledged (an
        # ASan build forks slowly); the restart must load one to test anything.
        wait_until(lambda: all((st := c.status(i)) and st.snapshot_index > 0 for i in c.nodes),
                   T(10), "every node to have written a snapshot")
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


BG_STARTED = r"writing snapshot at index \d+ in the background"
BG_ENDED = (r"wrote snapshot at index \d+ in the background|background write at index \d+ failed"
            r"|dropped the one at index \d+")


def writers(c, i, since=0):
    """(started, ended) background snapshot writers of node i, from its log."""
    log = c.log_since(i, since)
    return len(re.findall(BG_STARTED, log)), len(re.findall(BG_ENDED, log))


def test_snapshot_in_background():
    """Snapshots are written by a writer thread from a frozen view of the
    state machine (storage_store.c, kv_freeze), adopted and reported: STATUS
    carries their size and duration and the loop's longest iteration; every
    writer started ends and is joined; a restart loads the snapshot."""
    with Cluster(3, snapshot_entries=200) as c:
        lead = c.start_and_lead()
        s = Session(c)
        want = s.set_all((b"b%04d" % k, b"%04d" % k * 500) for k in range(600))
        st = wait_until(lambda: (st := c.status(lead)) and st.snapshot_index >= 400 and st,
                        T(10), "leader %d to take two snapshots" % lead)
        c.wait_log(lead, r"wrote snapshot at index \d+ in the background", T(10))
        expect(st.HasField("snapshot_bytes") and st.snapshot_bytes >= 300 * 2000,
               "snapshot_bytes %d for at least 300 keys of 2000 bytes", st.snapshot_bytes)
        expect(st.HasField("snapshot_duration_ms"), "STATUS has no snapshot_duration_ms")
        expect(st.HasField("loop_lag_max_us") and st.loop_lag_max_us > 0, "STATUS has no loop lag")
        expect(st.data_bytes >= 600 * 2000, "data_bytes %d for 600 values of 2000 bytes",
               st.data_bytes)
        expect(st.memory_bytes > st.data_bytes, "memory_bytes %d below data_bytes %d",
               st.memory_bytes, st.data_bytes)
        # no more writes, so no new snapshot: every writer started must end
        wait_until(lambda: (n := writers(c, lead)) and n[0] == n[1] and n[0] > 0, T(10),
                   "node %d's snapshot writers to end" % lead)
        expect(c.stop(lead) == 0, "clean stop")
        c.start_node(lead)
        st2 = wait_until(lambda: (x := c.status(lead)) and x, T(10), "node %d back" % lead)
        expect(st2.snapshot_index >= 400, "restarted from snapshot %d, want >= 400",
               st2.snapshot_index)
        c.wait_caught_up()
        check_all_keys(c, lead, want)
        report("snapshot %d: %d bytes in %d ms; longest loop iteration %.1f ms" %
               (st.snapshot_index, st.snapshot_bytes, st.snapshot_duration_ms,
                st.loop_lag_max_us / 1000))


def test_snapshot_writer_stalled():
    """Issue 14: a snapshot that takes far longer than the election timeout
    (its writer held for a minute by --test-disk-fault snapshot:DELAY) causes
    no election: the loop goes on, writes commit and apply on that node
    while the view the writer holds stays frozen, and no second writer
    starts.  Released, it finishes and is adopted."""
    from test_diskfault import Writer
    with Cluster(3, snapshot_entries=200) as c:
        for nd in c.nodes.values():
            nd.extra_args = ["--test-disk-fault", "snapshot:DELAY=60000"]
        lead = c.start_and_lead()
        node = next(i for i in c.nodes if i != lead)
        off = len(c.log(node).encode())
        c.signal_nowait(node, signal.SIGUSR2)
        c.wait_log(node, r"TEST: SIGUSR2: the background snapshot writer now waits 60000",
                   since=off)
        w = Writer(c)
        w.start()
        try:
            wait_until(lambda: writers(c, node, off)[0] >= 1, T(30),
                       "node %d to start a snapshot writer" % node)
            st0 = c.status(node)
            term0 = {i: c.status(i).term for i in c.nodes}
            # many election timeouts' worth of writes, all applied on that node
            target = st0.applied_index + 1000
            wait_until(lambda: (x := c.status(node)) and x.applied_index >= target, T(30),
                       "node %d to apply 1000 entries past its held snapshot" % node)
            term1 = {i: c.status(i).term for i in c.nodes}
            expect(term1 == term0, "terms moved while a snapshot writer was held: %s -> %s",
                   term0, term1)
            started, ended = writers(c, node, off)
            expect((started, ended) == (1, 0),
                   "node %d started %d and ended %d writers while one was held", node,
                   started, ended)
            expect(c.status(node).snapshot_index == st0.snapshot_index,
                   "a snapshot was adopted while the writer was held")
            c.signal_nowait(node, signal.SIGUSR2)
            wait_until(lambda: (x := c.status(node)) and x.snapshot_index > st0.snapshot_index,
                       T(30), "node %d's held snapshot to be adopted" % node)
        finally:
            w.stop.set()
            w.join(T(30))
        expect(w.error is None, "writer: %s", w.error)
        report("snapshot writer of node %d held while %d+ entries applied: no term change "
               "(%s), writes went on (%d acknowledged)" % (node, 1000, term0, len(w.acked)))


def test_snapshot_received_on_slow_disk():
    """Issue 14: a node receiving a snapshot writes it off its event loop.
    The follower's disk takes SLOW_MS longer for every write while it
    receives a snapshot of ~8-12 MB (chunks of 1 MiB): written on the loop,
    each chunk's write was an iteration of at least SLOW_MS.  With the
    writes on a thread, and the connection not read while the writer is
    behind, the loop stays short and the snapshot still arrives whole."""
    slow_ms = 100
    with Cluster(3, snapshot_entries=100, log_level="debug") as c:
        lead = c.start_and_lead()
        f = [i for i in c.nodes if i != lead][0]
        s = Session(c)
        want = s.set_all((b"w%04d" % k, b"first-%d" % k) for k in range(20))
        c.wait_applied(f, c.status(lead).commit_index)
        f_last = c.status(f).last_index
        c.kill(f)
        want.update(s.set_all((b"w%04d" % k, (b"%07d-" % k) * 1000) for k in range(1500)))
        lst = wait_until(lambda: (st := c.status(lead)) and st.snapshot_index > f_last + 50 and st,
                         T(20), "leader %d's snapshot to pass node %d's log" % (lead, f))
        c.nodes[f].extra_args = ["--test-disk-fault", "write:DELAY=%d,start" % slow_ms]
        size0 = c.log_size(f)
        c.start_node(f)
        c.wait_log(f, r"every write is %d ms slower from the start" % slow_ms, since=size0)
        st = wait_until(lambda: (x := c.status(f)) and x.snapshot_index >= lst.snapshot_index and x,
                        T(60), "node %d to install snapshot %d" % (f, lst.snapshot_index))
        c.wait_log(f, r"received snapshot \d+ \(\d+ bytes\)", since=size0)
        # the writer fell behind the link, and the link waited for it
        c.wait_log(f, r"chunks wait for the disk: not reading", since=size0)
        c.wait_log(f, r"the writer caught up: reading node \d+'s chunks again", since=size0)
        c.wait_applied(f, lst.commit_index, T(30))
        lag = c.status(f).loop_lag_max_us / 1000.0
        check_all_keys(c, f, want)
        expect(lag < slow_ms / 2, "node %d: an event-loop iteration took %.1f ms with %d ms "
               "writes: it waited for the disk", f, lag, slow_ms)
        report("node %d received snapshot %d (%d keys) with %d ms writes; longest loop "
               "iteration %.1f ms" % (f, st.snapshot_index, len(want), slow_ms, lag))


if __name__ == "__main__":
    main([test_old_leader_rejoins_by_log, test_follower_catches_up_by_snapshot,
          test_old_leader_catches_up_by_snapshot, test_full_stop_sigterm,
          test_full_stop_kill9, test_snapshot_in_background, test_snapshot_writer_stalled,
          test_snapshot_received_on_slow_disk])
