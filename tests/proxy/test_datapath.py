#!/usr/bin/python3
"""raftkv-proxy's data path (issue 17): many clients share a few upstream
connections per node, with every answer back on its own client's
connection (writes in the order the client sent them); a client that stops
reading its answers holds up nobody else on those shared connections; a
batch of large answers on one shared link is answered whole, without the
node cutting that link."""
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pxharness import T, ProxiedCluster, wait_until  # noqa: E402
import harness  # noqa: E402
from harness import OK, expect, expect_status, report, req_get, req_set  # noqa: E402

# The harness gives every proxy two event loops ([proxy] threads = 2).
PX_ARGS = ()


def proxy_tcp(px):
    """(local port, remote port) of every established TCP connection the
    proxy process holds, from /proc (its socket inodes)."""
    pid = px.proc.pid
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    conns = []
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(path) as f:
            next(f)
            for line in f:
                parts = line.split()
                local, remote, state, inode = parts[1], parts[2], parts[3], parts[9]
                if inode in inodes and state == "01":
                    conns.append((int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16)))
    return conns


def upstream_conns(px, c):
    """{node id: connections from the proxy to that node's client port}"""
    ports = {nd.client_port: i for i, nd in c.nodes.items()}
    counts = {i: 0 for i in c.nodes}
    for _, remote in proxy_tcp(px):
        if remote in ports:
            counts[ports[remote]] += 1
    return counts


def test_shared_upstreams():
    """48 clients pipeline 30 writes each, interleaved, then 30 reads each of
    other clients' keys.  Every answer comes back on the connection that
    asked, under that client's ids; each client's writes are answered in the
    order it sent them; every read sees the last acknowledged write.  All
    that goes over at most a few connections per node."""
    n_clients, k = 48, 30
    with ProxiedCluster(3, proxy_args=PX_ARGS) as (c, px):
        c.start_and_lead()
        px.start()
        px.wait_leader()
        clients = [px.client(timeout=T(20)) for _ in range(n_clients)]
        try:
            sent = {ci: [] for ci in range(n_clients)}
            for j in range(k):
                for ci, cl in enumerate(clients):
                    rid = (ci + 1) * 1000000 + j
                    sent[ci].append(cl.send(req_set(b"key%02d" % ci, b"%d-%d" % (ci, j), id=rid)))
            for ci, cl in enumerate(clients):
                got = []
                for _ in range(k):
                    r = cl.recv()
                    expect_status(r, OK, "pipelined SET on client %d" % ci)
                    got.append(r.id)
                expect(got == sent[ci], "client %d: write answers %s, sent %s", ci, got[:5], sent[ci][:5])
            conns = upstream_conns(px, c)
            expect(all(1 <= n <= 8 for n in conns.values()),
                   "proxy->node connections %s for %d clients", conns, n_clients)
            want = {}
            for j in range(k):
                for ci, cl in enumerate(clients):
                    other = (ci + j + 1) % n_clients
                    rid = cl.send(req_get(b"key%02d" % other, id=(ci + 1) * 1000000 + 500000 + j))
                    want[(ci, rid)] = b"%d-%d" % (other, k - 1)
            for ci, cl in enumerate(clients):
                for _ in range(k):
                    r = cl.recv()
                    expect((ci, r.id) in want, "client %d got an answer it did not ask for: id %d", ci, r.id)
                    expect(r.status == OK and r.get.value == want.pop((ci, r.id)),
                           "client %d: GET %d answered %s %r", ci, r.id, harness.status_name(r.status),
                           r.get.value)
            expect(not want, "%d reads unanswered", len(want))
        finally:
            for cl in clients:
                cl.close()
        report("%d clients x %d pipelined writes then reads: answers on their own connection, writes "
               "in order; proxy->node connections %s" % (n_clients, k, conns))


def test_stalled_reader():
    """A client pipelines 600 GETs of a 16 kB value and never reads the answers.
    Meanwhile another client's requests, on the same upstream connections,
    finish at normal speed; the proxy cuts the stalled one off at its output
    limit (1 MiB here, the proxy's alone), and no link to a node goes down."""
    args = PX_ARGS + ("--set", "cluster.max_value_bytes=64KiB", "--set", "cluster.max_frame_bytes=256KiB",
                      "--set", "cluster.max_pending_output_bytes=1MiB")
    with ProxiedCluster(3, proxy_args=args) as (c, px):
        c.start_and_lead()
        px.start()
        px.wait_leader()
        big = b"x" * 16000
        with px.client() as cl:
            expect_status(cl.call(req_set(b"big", big)), OK, "SET big")
            expect_status(cl.call(req_set(b"small", b"s")), OK, "SET small")
        stalled = px.client()
        stalled.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        try:
            # 600 x 16 kB of answers: past what the kernel buffers (a few
            # MB) and the proxy's output limit hold, and within what a
            # node queues on its link to the proxy.
            try:
                for i in range(600):
                    stalled.send(req_get(b"big", id=100 + i))
            except (ConnectionResetError, BrokenPipeError):
                pass  # cut off already, before it sent them all: the outcome waited for below
            start = time.monotonic()
            worst = 0.0
            with px.client(timeout=T(5)) as cl:
                for i in range(300):
                    t0 = time.monotonic()
                    r = cl.call(req_get(b"small" if i % 2 else b"big"))
                    worst = max(worst, time.monotonic() - t0)
                    expect_status(r, OK, "GET %d beside the stalled client" % i)
            took = time.monotonic() - start
            expect(worst < T(2), "one GET beside the stalled client took %.3f s", worst)
            # Cut off: the proxy no longer holds the stalled client's
            # connection (looked up without reading from it, which would
            # unstall it).
            port = stalled.sock.getsockname()[1]
            wait_until(lambda: all(remote != port for _, remote in proxy_tcp(px)), T(10),
                       "the proxy to cut the stalled client off")
        finally:
            stalled.close()
        log = px.log()
        expect("down:" not in log, "a proxy->node link went down:\n%s", log[-3000:])
        report("300 GETs beside a client that stopped reading: %.2f s, worst %.1f ms; the stalled "
               "client was cut off, every node link stayed up" % (took, worst * 1000))


def node_links(px, c):
    """The proxy's established connections to the nodes' client ports, as
    a set of (proxy's local port, node port): equal sets mean no link was
    replaced."""
    ports = {nd.client_port for nd in c.nodes.values()}
    return {(lp, rp) for lp, rp in proxy_tcp(px) if rp in ports}


def test_large_answers_shared_link():
    """24 clients each pipeline 8 linearizable GETs of a 250 kB value through
    the proxy, with the nodes' output mark (max_pending_output_bytes) at
    1 MiB: a node's answers to one read batch on one proxy link are many
    times that mark.  The node must stop reading that link until its
    answers drain, not cut it off (which would fail every client on it):
    all 192 GETs are answered OK with the whole value, the proxy's links to
    the nodes are the same connections before and after, and no node logs
    a slow reader."""
    n_clients, k = 24, 8
    value = bytes(range(256)) * 976 + b"v" * 144  # 250 000 bytes
    args = PX_ARGS + ("--set", "cluster.max_pending_output_bytes=64MiB")
    with ProxiedCluster(3, proxy_args=args, max_value_bytes="256KiB", max_frame_bytes="512KiB",
                        max_pending_output_bytes="1MiB") as (c, px):
        c.start_and_lead()
        px.start()
        px.wait_leader()
        with px.client(timeout=T(10)) as cl:
            expect_status(cl.call(req_set(b"large", value)), OK, "SET large")
            for _ in range(20):  # every node has applied it before the batch
                expect_status(cl.call(req_get(b"large")), OK, "GET large")
        logs0 = {i: c.log_size(i) for i in c.nodes}
        links0 = node_links(px, c)
        clients = [px.client(timeout=T(30)) for _ in range(n_clients)]
        t0 = time.monotonic()
        try:
            for j in range(k):
                for ci, cl in enumerate(clients):
                    cl.send(req_get(b"large", id=(ci + 1) * 1000 + j))
            for ci, cl in enumerate(clients):
                for _ in range(k):
                    r = cl.recv()
                    expect(r.status == OK and r.get.value == value,
                           "client %d: GET %d answered %s with %d bytes", ci, r.id,
                           harness.status_name(r.status), len(r.get.value))
        finally:
            for cl in clients:
                cl.close()
        took = time.monotonic() - t0
        links1 = node_links(px, c)
        expect(links0 == links1, "proxy->node links changed: %s -> %s", sorted(links0), sorted(links1))
        for i in c.nodes:
            text = c.log_since(i, logs0[i])
            expect("not reading" not in text, "node %d cut a reader off:\n%s", i, text[-2000:])
        log = px.log()
        expect("down:" not in log, "a proxy->node link went down:\n%s", log[-3000:])
        report("%d clients x %d pipelined GETs of 250 kB (%d MB of answers, node output mark 1 MiB): "
               "all answered in %.2f s over the same %d proxy->node links" %
               (n_clients, k, n_clients * k * len(value) // 1000000, took, len(links1)))


if __name__ == "__main__":
    harness.main([test_shared_upstreams, test_stalled_reader, test_large_answers_shared_link])
