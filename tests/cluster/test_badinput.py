#!/usr/bin/python3
"""Bad input on the client and peer sockets: the node closes that one
connection, logs why, and keeps serving everyone else."""
import random
import socket
import struct
import time

from harness import (OK, Client, Cluster, Session, T, expect, expect_status, frame, main, pb, peer_pb,
                     report, req_get, req_set, req_status, wait_closed)

MAX_FRAME = 256 * 1024


def bad_cluster():
    return Cluster(3, max_frame_bytes="256KiB", max_pending_output_bytes="512KiB",
                   max_value_bytes="128KiB")


class Checker:
    """Keeps one long-lived, well-behaved client on every node and checks
    after each bad connection that it (and a fresh one) still gets answers."""

    def __init__(self, c):
        self.c = c
        self.s = Session(c)
        self.keep = {i: c.client(i) for i in c.nodes}
        self.n = 0

    def ok(self, what):
        self.n += 1
        r = self.s.set(b"check", b"%d" % self.n)
        expect_status(r, OK, "write after %s" % what)
        for i, cl in self.keep.items():
            r = cl.call(req_get(b"check"))
            expect(r.status == OK and r.get.value == b"%d" % self.n,
                   "node %d, existing client, after %s: %s", i, what, r)
            with self.c.client(i) as fresh:
                expect_status(fresh.call(req_status()), OK, "new client on node %d after %s" % (i, what))
        for i in self.c.nodes:
            expect(self.c.nodes[i].running(), "node %d died after %s", i, what)

    def close(self):
        for cl in self.keep.values():
            cl.close()
        self.s.close()


def raw(c, i, port=None):
    s = socket.create_connection(("127.0.0.1", port or c.nodes[i].client_port), timeout=T(10))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def expect_closed(s, what):
    expect(wait_closed(s, T(10)), "%s: the node did not close the connection", what)
    s.close()


def is_request(payload):
    try:
        pb.Request().ParseFromString(payload)
        return True
    except Exception:
        return False


def test_client_bad_input():
    with bad_cluster() as c:
        lead = c.start_and_lead()
        chk = Checker(c)
        chk.ok("start")
        log0 = {i: c.log_size(i) for i in c.nodes}
        lines = []
        for i in (lead, [j for j in c.nodes if j != lead][0]):
            # 1. random bytes: seeded, so the case is known: a length prefix
            # over the limit, or a complete frame that is not a Request
            rng = random.Random(1234 + i)
            for attempt in range(6):
                data = bytes(rng.getrandbits(8) for _ in range(4096))
                n = struct.unpack(">I", data[:4])[0]
                if n <= MAX_FRAME:
                    data = data[:4] + bytes(rng.getrandbits(8) for _ in range(n))
                    if is_request(data[4:]):
                        continue  # random bytes that happen to parse: not this case
                s = raw(c, i)
                s.sendall(data)
                expect_closed(s, "random bytes (length prefix %d)" % n)
                chk.ok("random bytes")
            # 2. a truncated frame, then close
            body = req_set(b"trunc", b"x" * 100, id=5).SerializeToString()
            s = raw(c, i)
            s.sendall(frame(body)[:50])
            s.close()
            chk.ok("a truncated frame")
            r = c.call(lead, req_get(b"trunc"))
            expect(r.status != OK, "the truncated SET was applied")
            # 2b. a truncated frame and the client stays: the node must not
            # block on it (the other clients are checked meanwhile)
            s_stay = raw(c, i)
            s_stay.sendall(frame(body)[:50])
            chk.ok("a truncated frame held open")
            # 3. oversized length prefixes
            for n in (MAX_FRAME + 1, 0x7FFFFFFF, 0xFFFFFFFF):
                s = raw(c, i)
                s.sendall(struct.pack(">I", n) + b"\0" * 100)
                expect_closed(s, "length prefix %d" % n)
                chk.ok("length prefix %d" % n)
            # 4. valid frames carrying garbage protobuf
            for payload in (b"\xff" * 32, b"\x0a\xff\xff\xff\xff\x0f", b"\x08", b"\x52\x05abc"):
                expect(not is_request(payload), "test bug: %r parses" % payload)
                s = raw(c, i)
                s.sendall(frame(payload))
                s.settimeout(T(10))
                # the node may say why before it hangs up
                hdr = b""
                try:
                    hdr = s.recv(4)
                except (ConnectionResetError, socket.timeout):
                    pass
                if len(hdr) == 4:
                    n = struct.unpack(">I", hdr)[0]
                    body = b""
                    while len(body) < n:
                        chunk = s.recv(n - len(body))
                        if not chunk:
                            break
                        body += chunk
                    r = pb.Response()
                    r.ParseFromString(body)
                    expect(r.status == pb.INVALID_ARGUMENT, "garbage protobuf answered %s", r)
                expect_closed(s, "garbage protobuf %r" % payload)
                chk.ok("garbage protobuf")
            # 5. a zero-length frame is an empty Request: answered, not fatal
            with Client(c.nodes[i].client_port) as cl:
                cl.sock.sendall(frame(b""))
                r = cl.recv()
                expect(r.status == pb.INVALID_ARGUMENT, "empty Request answered %s", r)
                expect_status(cl.call(req_status()), OK, "same connection after an empty Request")
            chk.ok("an empty frame")
            # the half frame held open is still there, harmless; drop it now
            s_stay.close()
            chk.ok("closing the held truncated frame")
            # A connection's close reason is logged from the loop after its
            # socket is closed, so after the client saw EOF.
            c.wait_log(i, r"is not a Request", since=log0[i])
            c.wait_log(i, r"protocol error", since=log0[i])
            log = c.log_since(i, log0[i])
            lines.append("node %d logged: %d 'not a Request', %d 'protocol error'" %
                         (i, log.count("is not a Request"), log.count("protocol error")))
        chk.close()
        for ln in lines:
            report(ln)


def test_client_never_reads():
    """A client pipelines GETs of a 100 KiB value and never reads: the node
    disconnects it once its output backlog passes max_pending_output_bytes,
    logs it, and keeps serving others."""
    with bad_cluster() as c:
        c.start_and_lead()
        chk = Checker(c)
        expect_status(chk.s.set(b"big", b"b" * (100 * 1024)), OK, "SET big")
        chk.ok("start")
        c.wait_caught_up()
        for i in c.nodes:
            size0 = c.log_size(i)
            s = raw(c, i)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            req = frame(req_get(b"big", stale=True, id=1).SerializeToString())
            t0 = time.monotonic()
            sent, closed = 0, False
            s.settimeout(0.5)
            deadline = time.monotonic() + T(30)
            while time.monotonic() < deadline:
                try:
                    s.sendall(req * 100)
                    sent += 100
                except socket.timeout:
                    pass  # our send buffer is full: the node stopped reading, or closed
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
                    break
                if c.log_has(i, "output limit", size0):
                    closed = True
                    break
            expect(closed, "node %d kept a non-reading client after %d requests", i, sent)
            c.wait_log(i, r"output limit reached", since=size0)
            # the node's side is closed: reading now ends in EOF/reset after
            # whatever was already in flight
            expect(wait_closed(s, T(10)), "node %d: connection still open", i)
            s.close()
            chk.ok("a client that never reads")
            report("node %d disconnected a non-reading client after %d pipelined GETs (%.0f ms) "
                   "and logged 'output limit reached'" % (i, sent, (time.monotonic() - t0) * 1000))
        chk.close()


def peer_vote(cluster, to):
    """A framed, well-formed peer message from node 2 in term 1000."""
    msg = peer_pb.PeerMessage(cluster=cluster, from_id=2)
    msg.raft.type = 1
    msg.raft.term = 1000
    msg.raft.to = to
    setattr(msg.raft, "from", 2)  # 'from' is a Python keyword
    return frame(msg.SerializeToString())


def test_peer_bad_input():
    with bad_cluster() as c:
        lead = c.start_and_lead()
        chk = Checker(c)
        chk.ok("start")
        for i in c.nodes:
            size0 = c.log_size(i)
            port = c.nodes[i].peer_port
            # a well-formed message from another cluster
            s = raw(c, i, port)
            s.sendall(peer_vote("someone-else", i))
            expect_closed(s, "peer message from another cluster")
            c.wait_log(i, r"refusing peer", since=size0)
            # it must not have disturbed the term
            chk.ok("a peer message from another cluster")
            st = c.status(i)
            expect(st.term < 1000, "node %d took term %d from a foreign cluster", i, st.term)
            # garbage on the peer port
            for data in (b"\xff" * 64, frame(b"\xff" * 32), struct.pack(">I", 0xFFFFFFF0) + b"x",
                         frame(b"\x0a\x03abc")):
                s = raw(c, i, port)
                s.sendall(data)
                expect_closed(s, "peer garbage %r" % data[:16])
                chk.ok("peer garbage")
            # same cluster name but a message for someone else
            s = raw(c, i, port)
            s.sendall(peer_vote(c.name, 99))
            expect_closed(s, "peer message addressed to node 99")
            chk.ok("a misaddressed peer message")
            st = c.status(i)
            expect(st.term < 1000, "node %d took term %d from a misaddressed message", i, st.term)
        lead2 = c.wait_leader()
        report("foreign-cluster, garbage and misaddressed peer frames closed on all nodes; "
               "leader %d -> %d, terms untouched" % (lead, lead2))
        chk.close()


if __name__ == "__main__":
    main([test_client_bad_input, test_client_never_reads, test_peer_bad_input])
