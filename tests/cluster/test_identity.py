#!/usr/bin/python3
"""Cluster identity (issue 13): a node of another cluster, even under the
same name, is refused and changes nothing; a node that lost its data
refuses to start and names the fix; a data directory restored from an old
backup catches up and loses nothing."""
import os
import secrets
import shutil
import signal
import socket
import time

from harness import (OK, Cluster, Session, T, expect, expect_status, frame, main, peer_pb, report,
                     req_get, req_list, req_set, wait_until)

WIPE_KEYS = 20000


def raw_peer(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=T(5))
    s.settimeout(T(5))
    return s


def expect_closed(s, what):
    try:
        data = s.recv(1)
    except (ConnectionResetError, socket.timeout) as e:
        if isinstance(e, socket.timeout):
            raise AssertionError("%s: connection not closed" % what)
        data = b""
    expect(data == b"", "%s: connection not closed (got %r)" % (what, data))
    s.close()


def vote_frame(name, cluster_id, from_id, to, term):
    msg = peer_pb.PeerMessage(cluster=name, from_id=from_id, cluster_id=cluster_id, incarnation=1)
    msg.raft.type = 3  # RAFT_MSG_VOTE
    msg.raft.term = term
    msg.raft.to = to
    setattr(msg.raft, "from", from_id)
    return frame(msg.SerializeToString())


def test_foreign_cluster():
    """Cluster B shares cluster A's default name, and (misconfigured) its
    node 2 address is A's node 2: B's traffic reaches A's node 2 and is
    refused, with both ids in the log; A's terms and leader do not move."""
    ida, idb = secrets.token_hex(16), secrets.token_hex(16)
    with Cluster(3, name="raftkv", cluster_id=ida) as a, \
            Cluster(3, name="raftkv", cluster_id=idb) as b:
        lead = a.start_and_lead()
        s = Session(a)
        expect_status(s.set(b"before", b"1"), OK, "write before")
        terms = {i: a.status(i).term for i in a.nodes}
        size0 = a.log_size(2)
        b.nodes[2].peer_port = a.nodes[2].peer_port
        b.write_config()
        b.start([1, 3])
        b.wait_leader([1, 3])
        a.wait_log(2, r"refusing peer .*cluster 'raftkv' id %s, this is cluster 'raftkv' id %s"
                   % (idb, ida), since=size0)
        # the same, hand-made, in a high term: refused and the connection closed
        s2 = raw_peer(a.nodes[2].peer_port)
        s2.sendall(vote_frame("raftkv", bytes.fromhex(idb), 1, 2, 1000))
        expect_closed(s2, "vote from another cluster id")
        # right cluster, but a sender that is no member and not in the file
        s3 = raw_peer(a.nodes[2].peer_port)
        s3.sendall(vote_frame("raftkv", bytes.fromhex(ida), 9, 2, 1000))
        expect_closed(s3, "vote from non-member 9")
        a.wait_log(2, r"node 9 is not a member of cluster 'raftkv' id %s" % ida, since=size0)
        # and without any id (a binary that predates cluster ids)
        s4 = raw_peer(a.nodes[2].peer_port)
        s4.sendall(frame(peer_pb.PeerMessage(cluster="raftkv", from_id=1).SerializeToString()))
        expect_closed(s4, "message without a cluster id")
        expect_status(s.set(b"after", b"2"), OK, "write after")
        after = {i: a.status(i).term for i in a.nodes}
        expect(after == terms, "terms moved: %s -> %s", terms, after)
        expect(a.wait_leader() == lead, "leader changed")
        refusals = a.log_since(2, size0).count("refusing peer")
        expect(refusals <= 4, "refusals not rate-limited: %d lines", refusals)
        report("cluster B (same name, id %s..) refused by A's node 2 (id %s..) in %d log line(s); "
               "terms %s unchanged, leader %d" % (idb[:8], ida[:8], refusals, after, lead))


def write_many(c, lead, prefix, n, batch=500):
    """SET n keys on the leader, pipelined; returns the acknowledged ones."""
    acked = {}
    with c.client(lead, timeout=T(30)) as cl:
        for start in range(0, n, batch):
            ids = {}
            for k in range(start, min(n, start + batch)):
                key, val = b"%s%06d" % (prefix, k), b"v%d" % k
                ids[cl.send(req_set(key, val))] = (key, val)
            for rid, (key, val) in ids.items():
                r = cl.recv_for(rid)
                expect_status(r, OK, "SET %r" % key)
                acked[key] = val
    return acked


def check_keys(c, node, want, stale):
    """node lists exactly the keys of want, each with its value."""
    got, after = {}, None
    with c.client(node, timeout=T(30)) as cl:
        while True:
            r = cl.call(req_list(b"", limit=1000, start_after=after, stale=stale))
            expect_status(r, OK, "LIST on node %d" % node)
            keys = list(r.list.keys)
            if not keys:
                break
            for k in keys:
                got[k] = None
            if not r.list.truncated:
                break
            after = keys[-1]
        missing = [k for k in want if k not in got]
        expect(not missing, "node %d lost %d acknowledged keys, e.g. %r", node, len(missing), missing[:3])
        expect(len(got) == len(want), "node %d lists %d keys, want %d", node, len(got), len(want))
        for k in list(want)[:: max(1, len(want) // 200)]:
            r = cl.call(req_get(k, stale=stale))
            expect(r.status == OK and r.get.value == want[k], "node %d: %r = %r, want %r", node, k,
                   r.get.value, want[k])


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def leader_cpu(c, lead, seconds=3.0):
    pid = c.nodes[lead].pid
    t0, c0 = time.monotonic(), cpu_seconds(pid)
    time.sleep(seconds)  # measuring idle CPU is the point: nothing to wait for
    return (cpu_seconds(pid) - c0) / (time.monotonic() - t0)


def test_wiped_follower_refuses_to_start():
    with Cluster(3) as c:
        lead = c.start_and_lead()
        want = write_many(c, lead, b"w", WIPE_KEYS)
        commit = c.wait_caught_up()
        f = [i for i in c.nodes if i != lead][0]
        c.kill(f)
        shutil.rmtree(c.nodes[f].data_dir)
        size0 = c.log_size(f)
        t0 = time.monotonic()
        c.start_node(f, wait=False)
        nd = c.nodes[f]
        wait_until(lambda: nd.proc.poll() is not None, T(15), "wiped node %d to exit" % f)
        took = time.monotonic() - t0
        code = c._reap(f, "exit")
        expect(code == 78, "wiped node %d exited with %s, want 78 (EX_CONFIG)", f, code)
        line = c.log_has(f, r".*lost its data.*raftkvctl member replace %d.*" % f, since=size0)
        expect(line, "no journal line naming 'raftkvctl member replace %d'", f)
        expect(not c.log_has(f, r"bootstrapping", since=size0), "wiped node bootstrapped")
        cpu = leader_cpu(c, lead)
        expect(cpu < 0.10, "leader %d burns %.0f%% CPU while idle", lead, cpu * 100)
        expect_status(Session(c).set(b"after", b"wipe"), OK, "write after the wipe")
        want[b"after"] = b"wipe"
        c.wait_caught_up()
        for i in c.running_ids():
            check_keys(c, i, want, stale=True)
        report("wiped node %d exited 78 after %.1fs (commit %d, %d keys): %s; leader %d idle at "
               "%.1f%% CPU; every acknowledged key on nodes %s" %
               (f, took, commit, len(want), line.group(0).strip()[-90:], lead, cpu * 100,
                c.running_ids()))


def test_slow_disk_start():
    """A fresh cluster on a disk whose every fsync takes SLOW_FSYNC_MS: each
    node writes its identity file (two fsyncs) while it decides to
    bootstrap, and none of that may happen on the event loop, or one
    iteration would take twice SLOW_FSYNC_MS and delay heartbeats."""
    slow_ms = 400
    with Cluster(3) as c:
        for nd in c.nodes.values():
            nd.extra_args = ["--test-disk-fault", "fsync:DELAY=%d,start" % slow_ms]
        c.start(wait=False)
        for i in c.nodes:
            c.wait_log(i, r"every fsync is %d ms slower from the start" % slow_ms)
        for i in c.nodes:  # decided (bootstrap, or join one that did): the file is written
            c.wait_log(i, r"bootstrapping a new cluster|never held data: joining", timeout=T(20))
        # Elections cannot settle while saving a vote takes two slow fsyncs
        # (longer than the election timeout): the disk turns fast again.
        for i in c.nodes:
            c.signal_nowait(i, signal.SIGUSR2)
            c.wait_log(i, r"TEST: SIGUSR2: every fsync of the store now takes 0 ms longer")
        lead = c.wait_leader()
        expect_status(Session(c).set(b"slow", b"disk"), OK, "write on the slow disk")
        lags = {}
        for i in c.nodes:
            ident = os.path.join(c.nodes[i].data_dir, "identity")
            wait_until(lambda: os.path.exists(ident), T(10), "node %d's identity file" % i)
            lags[i] = c.status(i).loop_lag_max_us / 1000.0
        for i, lag in lags.items():
            expect(lag < slow_ms / 2, "node %d: an event-loop iteration took %.1f ms with "
                   "%d ms fsyncs: the loop waited for the disk", i, lag, slow_ms)
        report("fresh cluster with %d ms fsyncs: leader %d; longest loop iteration %s ms" %
               (slow_ms, lead, ", ".join("%.1f" % lags[i] for i in sorted(lags))))


def test_stale_backup_catches_up():
    with Cluster(3) as c:
        lead = c.start_and_lead()
        want = write_many(c, lead, b"a", 2000)
        c.wait_caught_up()
        f = [i for i in c.nodes if i != lead][0]
        backup = c.nodes[f].data_dir + ".backup"
        shutil.copytree(c.nodes[f].data_dir, backup)
        want.update(write_many(c, lead, b"b", 3000))
        c.kill(f)
        shutil.rmtree(c.nodes[f].data_dir)
        shutil.copytree(backup, c.nodes[f].data_dir)
        t0 = time.monotonic()
        c.start_node(f)
        lead = c.wait_leader()
        commit = c.status(lead).commit_index
        c.wait_applied(f, commit, T(15))
        took = time.monotonic() - t0
        check_keys(c, f, want, stale=True)
        # and it votes again: it is needed for a quorum once another node is gone
        other = [i for i in c.nodes if i not in (f, lead)][0]
        c.kill(other)
        expect_status(Session(c).set(b"after", b"restore"), OK, "write that needs node %d" % f)
        report("node %d restored from a backup %d keys old caught up to commit %d in %.1fs and "
               "holds all %d keys" % (f, 3000, commit, took, len(want)))


if __name__ == "__main__":
    main([test_foreign_cluster, test_wiped_follower_refuses_to_start, test_slow_disk_start,
          test_stale_backup_catches_up])
