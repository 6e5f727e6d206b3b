#!/usr/bin/python3
"""Socket activation as systemd does it (LISTEN_FDS, LISTEN_FDNAMES,
LISTEN_PID), with the test holding the listening sockets the way the
.socket units do: the node serves on inherited peer and client sockets, a
client that connects while the node is down is answered once it is back
(nothing queued in the backlog is lost), and a socket bound to another
address than raftkv.conf names is refused with a clear message."""
import socket
import time

from harness import (OK, Client, Cluster, Session, T, expect, expect_status, main, report, req_status,
                     wait_until)


def listening(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(128)
    return s


def check_inherited_sockets_and_restart():
    with Cluster(3) as c:
        nd = c.nodes[1]
        socks = [("peer", listening(nd.peer_port)), ("client", listening(nd.client_port))]
        try:
            nd.listen_fds = socks
            lead = c.start_and_lead()
            for name in ("peer", "client"):
                expect(c.log_has(1, r"%s socket 127\.0\.0\.1:\d+ \(from systemd\)" % name),
                       "node 1 did not say it uses the inherited %s socket", name)
            s = Session(c)
            expect_status(s.set(b"k", b"v1"), OK, "write")
            c.wait_caught_up()
            report("node 1 serves on the peer and client sockets it inherited (leader %d)" % lead)

            # Down, with the sockets still held: a client connects (the
            # kernel completes the handshake into the backlog) and sends.
            c.stop(1)
            cl = Client(nd.client_port, timeout=T(20))
            try:
                rid = cl.send(req_status())
                t0 = time.monotonic()
                c.start_node(1)
                r = cl.recv_for(rid)
                expect_status(r, OK, "status sent while the node was down")
                report("a request sent while node 1 was stopped was answered %.0f ms after "
                       "the restart began" % (1000 * (time.monotonic() - t0)))
            finally:
                cl.close()
        finally:
            for _, sk in socks:
                sk.close()


def check_wrong_address_refused():
    with Cluster(3) as c:
        nd = c.nodes[1]
        stray = listening(0)  # what a socket unit from an older raftkv.conf would hold
        try:
            nd.listen_fds = [("peer", stray)]
            c.start_node(1, wait=False)
            wait_until(lambda: not nd.running(), T(10), "node 1 to refuse the stray socket")
            code = nd.proc.returncode
            expect(code != 0, "node 1 exited %s with a peer socket on the wrong port", code)
            expect(c.log_has(1, r"peer socket passed by systemd is not bound to 127\.0\.0\.1:%d" %
                             nd.peer_port), "no word of the address mismatch in the log")
            expect(c.log_has(1, r"daemon-reload"), "the log does not say how to fix it")
            report("a peer socket on port %d instead of %d: exit %d, with the reason" % (
                stray.getsockname()[1], nd.peer_port, code))
            c._reap(1, "refused")  # an expected exit, not a crash
        finally:
            stray.close()
        nd.listen_fds = []


if __name__ == "__main__":
    main([check_inherited_sockets_and_restart, check_wrong_address_refused])
