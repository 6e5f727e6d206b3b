#!/usr/bin/python3
"""raftkv-proxy against real nodes: routing, read spreading, health, riding
through leader loss with exactly-once retries, transfer, restarts, bad input."""
import os
import signal
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pxharness import T, ProxiedCluster, wait_until  # noqa: E402
import harness  # noqa: E402
from harness import (CAS_FAILED, NOT_FOUND, OK, UNAVAILABLE, expect, expect_status, report, req_cas,  # noqa: E402
                     req_del, req_get, req_list, req_set, req_status, req_transfer)


def reads_by_node(px):
    _, v = px.view()
    return {i: x.reads_served for i, x in v.items()}


def test_basics():
    with ProxiedCluster(3) as (c, px):
        lead = c.start_and_lead()
        px.start()
        expect(px.wait_leader() == lead, "proxy leader differs from the cluster's")
        with px.client() as cl:
            expect_status(cl.call(req_set(b"a", b"1")), OK, "SET")
            r = cl.call(req_get(b"a"))
            expect_status(r, OK, "GET")
            expect(r.get.value == b"1", "GET a = %r", r.get.value)
            expect(not r.HasField("leader_id"), "the proxy passed a leader hint on")
            expect_status(cl.call(req_get(b"nope")), NOT_FOUND, "GET missing")
            expect_status(cl.call(req_cas(b"a", b"2", expected=b"1")), OK, "CAS")
            expect_status(cl.call(req_cas(b"a", b"3", expected=b"1")), CAS_FAILED, "CAS stale")
            expect_status(cl.call(req_del(b"a")), OK, "DEL")
            # pipelined: many requests in flight, answered by the client's ids
            ids = [cl.send(req_set(b"p%03d" % i, b"v%d" % i, id=1000 + i)) for i in range(100)]
            for i in ids:
                expect_status(cl.recv_for(i), OK, "pipelined SET %d" % i)
            ids = [cl.send(req_get(b"p%03d" % i, id=5000 + i)) for i in range(100)]
            for k, i in enumerate(ids):
                r = cl.recv_for(i)
                expect(r.status == OK and r.get.value == b"v%d" % k, "pipelined GET %d: %s", k, r)
            r = cl.call(req_list(b"p", limit=1000))
            expect(len(r.list.keys) == 100, "LIST found %d keys", len(r.list.keys))
            # client-supplied sessions pass through untouched
            cid = harness.new_client_id()
            r1 = cl.call(req_cas(b"s", b"1", expect_absent=True, client_id=cid, sequence=1))
            r2 = cl.call(req_cas(b"s", b"1", expect_absent=True, client_id=cid, sequence=1))
            expect_status(r2, OK, "retried own-session CAS")
            expect(r1.cas.index == r2.cas.index, "own session retried: index %d vs %d", r1.cas.index, r2.cas.index)
            # watch
            w = cl.send(harness.pb.Request(watch_leader=harness.pb.WatchLeaderRequest()))
            ev = cl.recv_for(w)
            expect(ev.leader_event.leader_id == lead, "WATCH_LEADER from the proxy: %s", ev)
        st = px.status(fanout=True)
        expect(len(st.nodes) == 3, "fanout gave %d node statuses", len(st.nodes))
        expect(st.proxy.leader_id == lead and len(st.proxy.nodes) == 3, "proxy status %s", st.proxy)
        report("kv ops, 100 pipelined writes and reads, own sessions, WATCH_LEADER and fanout STATUS")


def read_load(px, stop, counts, key=b"k"):
    with px.client() as cl:
        while not stop.is_set():
            ids = [cl.send(req_get(key)) for _ in range(8)]
            for i in ids:
                r = cl.recv_for(i)
                counts[r.status] = counts.get(r.status, 0) + 1


def test_reads_spread():
    with ProxiedCluster(3) as (c, px):
        lead = c.start_and_lead()
        px.start()
        px.wait_leader()
        expect_status(px.call(req_set(b"k", b"v")), OK, "SET")
        before = reads_by_node(px)
        with px.client() as cl:
            for _ in range(150):
                ids = [cl.send(req_get(b"k")) for _ in range(4)]
                for i in ids:
                    expect_status(cl.recv_for(i), OK, "GET")
        after = reads_by_node(px)
        d = {i: after[i] - before[i] for i in after}
        total = sum(d.values())
        fol = [i for i in d if i != lead]
        expect(total == 600, "served %d of 600 reads: %s", total, d)
        share = sum(d[i] for i in fol) / total
        expect(share >= 0.9, "followers served only %.0f%% of reads: %s", share * 100, d)
        for i in fol:
            expect(d[i] >= 0.3 * total, "follower %d served %d of %d reads: %s", i, d[i], total, d)
        report("600 reads: %s (leader %d), %.0f%% on followers" % (d, lead, share * 100))


def test_stopped_follower():
    with ProxiedCluster(3) as (c, px):
        lead = c.start_and_lead()
        px.start()
        px.wait_leader()
        expect_status(px.call(req_set(b"k", b"v")), OK, "SET")
        f = [i for i in c.nodes if i != lead][0]
        stop, counts = threading.Event(), {}
        th = threading.Thread(target=read_load, args=(px, stop, counts))
        th.start()
        try:
            wait_until(lambda: reads_by_node(px)[f] > 50, T(10), "node %d to serve reads" % f)
            c.pause(f)
            t0 = time.monotonic()
            wait_until(lambda: not px.view()[1][f].healthy, T(5), "proxy to mark stopped node %d unhealthy" % f)
            t_mark = time.monotonic() - t0
            n0 = reads_by_node(px)[f]
            total0 = sum(reads_by_node(px).values())
            time.sleep(T(1))
            n1 = reads_by_node(px)[f]
            total1 = sum(reads_by_node(px).values())
            expect(n1 == n0, "stopped node %d served %d reads", f, n1 - n0)
            expect(total1 - total0 > 50, "reads stalled while node %d was stopped: %d", f, total1 - total0)
            c.resume(f)
            t0 = time.monotonic()
            wait_until(lambda: reads_by_node(px)[f] > n1 + 20, T(10), "node %d to get reads back" % f)
            t_back = time.monotonic() - t0
        finally:
            stop.set()
            th.join(T(30))
        bad = {harness.status_name(s): n for s, n in counts.items() if s != OK}
        expect(not bad, "reads failed: %s", bad)
        report("stopped follower marked unhealthy in %.0f ms, no reads while stopped, reads back %.0f ms "
               "after SIGCONT; %d reads all OK" % (t_mark * 1000, t_back * 1000, counts.get(OK, 0)))


def writer(px, wid, stop, acked, errors):
    """SETs of unique keys and CAS increments of this writer's counter."""
    key = b"ctr-%d" % wid
    n = 0
    with px.client(timeout=T(30)) as cl:
        r = cl.call(req_cas(key, b"0", expect_absent=True))
        if r.status != OK:
            errors.append("writer %d init: %s %s" % (wid, harness.status_name(r.status), r.message))
            return
        i = 0
        while not stop.is_set():
            i += 1
            r = cl.call(req_set(b"w%d-%d" % (wid, i), b"%d" % i))
            if r.status != OK:
                errors.append("writer %d SET %d: %s %s" % (wid, i, harness.status_name(r.status), r.message))
                return
            acked.append((b"w%d-%d" % (wid, i), b"%d" % i))
            r = cl.call(req_cas(key, b"%d" % (n + 1), expected=b"%d" % n))
            if r.status != OK:
                errors.append("writer %d CAS %d->%d: %s %s" % (wid, n, n + 1, harness.status_name(r.status),
                                                               r.message))
                return
            n += 1
            acked.append((key, b"%d" % n))


def test_leader_kill_under_load():
    with ProxiedCluster(3) as (c, px):
        lead = c.start_and_lead()
        px.start()
        px.wait_leader()
        stop, acked, errors = threading.Event(), [], []
        ths = [threading.Thread(target=writer, args=(px, w, stop, acked, errors)) for w in range(8)]
        for t in ths:
            t.start()
        try:
            wait_until(lambda: len(acked) > 200 or errors, T(10), "writes to flow")
            n_before = len(acked)
            c.kill(lead)
            px.wait_leader(timeout=T(10), exclude=(lead,))
            wait_until(lambda: len(acked) > n_before + 400 or errors, T(15), "writes to flow after the kill")
        finally:
            stop.set()
            for t in ths:
                t.join(T(60))
        expect(not errors, "client writes failed: %s", errors)
        latest = {}
        for k, v in acked:
            latest[k] = v
        with px.client() as cl:
            for k, v in latest.items():
                r = cl.call(req_get(k))
                expect(r.status == OK and r.get.value == v, "acknowledged %r=%r reads %s %r", k, v,
                       harness.status_name(r.status), r.get.value)
        report("%d writes acknowledged across kill -9 of leader %d, none failed; all readable, counters "
               "match the acknowledged increments" % (len(acked), lead))


def test_transfer():
    # Plaintext: the nodes cannot tell the proxy from any local client, so
    # only insecure mode lets a transfer through it (TLS: test_clients.py).
    with ProxiedCluster(3, insecure="true") as (c, px):
        lead = c.start_and_lead()
        px.start()
        px.wait_leader()
        target = [i for i in c.nodes if i != lead][0]
        r = px.call(req_transfer(target))
        expect_status(r, OK, "TRANSFER_LEADER through the proxy")
        expect(r.transfer_leader.leader_id == target, "transfer answered leader %d", r.transfer_leader.leader_id)
        px.wait_leader(target)
        expect(c.wait_leader() == target, "cluster leader after transfer")
        expect_status(px.call(req_set(b"after", b"1")), OK, "SET after transfer")
        report("leadership moved %d -> %d through the proxy; writes follow" % (lead, target))


def test_proxy_restart():
    with ProxiedCluster(3) as (c, px):
        c.start_and_lead()
        px.start()
        px.wait_leader()
        expect_status(px.call(req_set(b"x", b"1")), OK, "SET")
        px.kill()
        px.start()
        px.wait_leader()
        r = px.call(req_get(b"x"))
        expect(r.status == OK and r.get.value == b"1", "GET after proxy restart: %s", r)
        expect_status(px.call(req_set(b"y", b"2")), OK, "SET after proxy restart")
        code = px.stop()
        expect(code == 0, "proxy exit code on SIGTERM: %s", code)
        px.start()
        expect_status(px.call(req_set(b"z", b"3")), OK, "SET after a clean proxy restart")
        report("kill -9 and SIGTERM restarts of the proxy while the nodes run")


def test_all_nodes_down():
    with ProxiedCluster(3, proxy_args=("--set", "proxy.queue_wait_ms=1500")) as (c, px):
        c.start_and_lead()
        px.start()
        px.wait_leader()
        expect_status(px.call(req_set(b"before", b"1")), OK, "SET")
        for i in c.nodes:
            c.kill(i)
        # no node comes back: UNAVAILABLE after queue_wait_ms, with a clear message
        t0 = time.monotonic()
        r = px.call(req_set(b"lost", b"1"), timeout=T(10))
        dt = time.monotonic() - t0
        expect_status(r, UNAVAILABLE, "write with every node down")
        expect("no leader elected within 1500 ms" in r.message and "0 of 3" in r.message,
               "message: %r", r.message)
        expect(1.4 <= dt <= T(3), "answered after %.2fs, want about 1.5s", dt)
        # nodes come back while a write waits: it succeeds
        with px.client(timeout=T(20)) as cl:
            w = cl.send(req_set(b"waited", b"1"))
            time.sleep(0.2)
            c.start(wait=False)
            r = cl.recv_for(w)
        expect_status(r, OK, "write that waited for the cluster to come back")
        c.wait_leader()
        r = px.call(req_get(b"waited"))
        expect(r.status == OK and r.get.value == b"1", "GET waited: %s", r)
        report("all down: UNAVAILABLE after %.2fs (%r); a write queued during the restart succeeded"
               % (dt, r.message if r.status != OK else "ok"))


def test_bad_input():
    with ProxiedCluster(3) as (c, px):
        c.start_and_lead()
        px.start()
        px.wait_leader()
        with px.client() as good:
            expect_status(good.call(req_set(b"g", b"1")), OK, "SET")
            cases = {
                "garbage": struct.pack(">I", 5) + b"\xff\xff\xff\xff\xff",
                "oversized frame": struct.pack(">I", 64 << 20),
            }
            for name, data in cases.items():
                s = socket.create_connection(("127.0.0.1", px.port), timeout=T(5))
                s.sendall(data)
                expect(harness.wait_closed(s, T(5)), "proxy kept a connection open after %s", name)
                s.close()
                expect_status(good.call(req_get(b"g")), OK, "other connection after %s" % name)
            # an unknown operation is answered, the connection stays
            with px.client() as cl:
                r = cl.call(harness.pb.Request())
                expect(r.status == harness.INVALID_ARGUMENT, "empty request: %s", r)
                expect_status(cl.call(req_get(b"g")), OK, "same connection after an empty request")
        report("garbage and oversized frames close only their connection")


def test_cli():
    import subprocess
    from pxharness import PROXY_BIN
    for args, code in ((["--help"], 0), (["--version"], 0), (["--bogus"], 2),
                       (["--config", "/nonexistent/raftkv.conf"], 2)):
        p = subprocess.run([PROXY_BIN] + args, capture_output=True, timeout=T(10))
        expect(p.returncode == code, "raftkv-proxy %s exited %d, want %d", " ".join(args), p.returncode, code)
    with ProxiedCluster(1) as (c, px):
        p = subprocess.run([PROXY_BIN, "--config", c.config, "--set", "proxy.queue_max=x"],
                           capture_output=True, timeout=T(10))
        expect(p.returncode == 2, "bad --set exited %d", p.returncode)
        sock = os.path.join(c.dir, "px.sock")
        px.extra = ["--unix", sock, "--listen", "127.0.0.1:%d" % px.port]
        c.start_and_lead()
        px.start()
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(T(5))
        s.connect(sock)
        s.sendall(harness.frame(req_status(id=7).SerializeToString()))
        n = struct.unpack(">I", harness.recv_exact(s, 4))[0]
        r = harness.pb.Response.FromString(harness.recv_exact(s, n))
        s.close()
        expect(r.id == 7 and r.status_info.HasField("proxy"), "STATUS over the unix socket: %s", r)
    report("--help/--version exit 0, usage and config errors exit 2; --unix serves")


def test_quota():
    """Issue 14: the data quota through the proxy: fill to the limit, NO_SPACE
    (passed on as is), delete, write again; a full restart at the limit keeps
    the quota (it is in the log and the snapshot) and keeps refusing."""
    quota = 10000
    with ProxiedCluster(3, max_data_bytes=quota, snapshot_entries=5) as (c, px):
        c.start_and_lead()
        px.start()
        px.wait_leader()
        wait_until(lambda: all((st := c.status(i)) and st.quota_bytes == quota for i in c.nodes),
                   T(10), "every node to hold the quota from the log")
        val = b"v" * 996
        with px.client() as cl:
            for k in range(10):
                expect_status(cl.call(req_set(b"q%03d" % k, val)), OK, "SET %d under the quota" % k)
            r = cl.call(req_set(b"q010", val))
            expect(r.status == harness.pb.NO_SPACE and "max_data_bytes" in r.message,
                   "SET past the quota through the proxy: %s %r", r.status, r.message)
            expect_status(cl.call(req_del(b"q000")), OK, "DEL at the quota")
            expect_status(cl.call(req_set(b"q010", val)), OK, "SET after the delete")
        for i in list(c.nodes):
            expect(c.stop(i) == 0, "clean stop of node %d" % i)
        for i in list(c.nodes):
            c.start_node(i)
        c.wait_leader()
        px.wait_leader()
        with px.client() as cl:
            r = cl.call(req_set(b"q011", val))
            expect(r.status == harness.pb.NO_SPACE, "SET past the quota after a restart: %s", r.status)
            r = cl.call(req_get(b"q010"))
            expect(r.status == OK and r.get.value == val, "the last acknowledged write survives")
        report("quota %d through the proxy: 10 pairs of 1000 bytes, then NO_SPACE; delete frees "
               "room; NO_SPACE again after a full restart" % quota)


if __name__ == "__main__":
    harness.main([test_basics, test_reads_spread, test_stopped_follower, test_leader_kill_under_load,
                  test_transfer, test_proxy_restart, test_all_nodes_down, test_bad_input, test_cli,
                  test_quota])
