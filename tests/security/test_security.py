#!/usr/bin/python3
"""Hostile network against the peer port (issue 15).  The attack of the
issue: one heartbeat frame claiming to be node 1 of cluster "raftkv" with
term 10^12, sent to the followers' peer ports.  Here the attacker even knows
the cluster id.  Certificates come from 'raftkvctl config generate --tls'.

  plaintext      mutual TLS on: the frame in plaintext to a peer port is a
                 failed handshake; closed, logged, nothing changes
  other_ca       a certificate from another CA (same names): refused
  impostor       node 2's valid certificate, frame claiming node 1: the
                 frame is dropped (logged with a count), link closed
  huge_term      plaintext mode (insecure: anyone can claim to be node 1),
                 a term past RAFT_TERM_MAX (2^64 - 65536): refused, not
                 adopted; a non-member sender: refused and closed
  revoked_node   [cluster] tls_crl set; a follower's certificate revoked
                 (certs revoke) and SIGHUP to every node: the others close
                 their links with it and refuse its handshakes from then
                 on; the other two go on committing, same leader and term
  slow_handshake 20 connections that start a TLS handshake and stall: the
                 loop serves writes and a real TLS handshake meanwhile, and
                 the stalled ones are cut off at frame_timeout_ms

"Nothing changes" = every node's term and the leader are as before, writes
go on.  Ordering instead of sleeping: after an attack frame whose effect is
silent, a frame that closes the connection is sent on the same one; once it
is closed, the first was handled.

    RAFTKV_NODE=build/src/node/raftkv-node RAFTKV_CTL=build/src/ctl/raftkvctl \\
      /usr/bin/python3 tests/security/test_security.py [-k NAME]
"""
import os
import signal
import socket
import ssl
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cluster"))
import harness  # noqa: E402
from harness import (OK, Cluster, Session, T, expect, expect_status, frame, main, make_certs, peer_pb,  # noqa: E402
                     report)

CTL = harness.CTL_BIN
CLUSTER_ID = "5ec0de5ec0de5ec0de5ec0de5ec0de00"
HEARTBEAT = 7
RAFT_TERM_MAX = (1 << 64) - 1 - 65536


def forged(to, term=10 ** 12, claims=1, cluster="raftkv"):
    """The issue's frame: a heartbeat claiming to come from node `claims`."""
    msg = peer_pb.PeerMessage(cluster=cluster, from_id=claims, cluster_id=bytes.fromhex(CLUSTER_ID))
    msg.raft.type = HEARTBEAT
    msg.raft.term = term
    msg.raft.to = to
    setattr(msg.raft, "from", claims)  # 'from' is a Python keyword
    return frame(msg.SerializeToString())


def tls_connect(port, ca, cert, key, node):
    """A TLS client the way a node dials: it checks the server is `node`."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(ca)
    ctx.load_cert_chain(cert, key)
    raw = socket.create_connection(("127.0.0.1", port), timeout=T(10))
    return ctx.wrap_socket(raw, server_hostname="raftkv-node-%d" % node)


def closed_within(sock, timeout):
    """True once the node closed the connection (EOF, reset or a TLS alert)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, min(1.0, deadline - time.monotonic())))
        try:
            if not sock.recv(65536):
                return True
        except (socket.timeout, ssl.SSLWantReadError):
            continue
        except (ConnectionError, ssl.SSLError, OSError):
            return True
    return False


def refused(c, i, sock, data, what, log_pattern, since):
    """data sent on sock makes node i close it and log log_pattern."""
    try:
        sock.sendall(data)
    except (ssl.SSLError, ConnectionError):
        pass  # closed already
    expect(closed_within(sock, T(10)), "node %d kept open: %s", i, what)
    sock.close()
    c.wait_log(i, log_pattern, since=since)


def stall_handshakes(port, n=20):
    """n connections that send a TLS record header promising a ClientHello,
    then nothing more."""
    stalled = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=T(10))
        s.sendall(b"\x16\x03\x01\x02\x00\x01")
        stalled.append(s)
    return stalled


def expect_cut_off(c, i, stalled, t0, size0):
    """Every stalled handshake closed by node i within frame_timeout_ms
    (1000) plus slack, and logged; the seconds since t0."""
    for s in stalled:
        expect(closed_within(s, T(5)), "a stalled handshake was not cut off")
        s.close()
    took = time.monotonic() - t0
    expect(took < T(1) + T(4), "stalled handshakes cut off after %.1fs (frame_timeout_ms 1000)", took)
    c.wait_log(i, r"TLS handshake with .* failed: not completed within the frame timeout", since=size0)
    return took


class World:
    """A 3-node cluster named "raftkv" with a known id, a leader, a session
    for writes, and the terms to compare against."""

    def __init__(self, c):
        self.c = c
        self.lead = c.start_and_lead()
        self.s = Session(c)
        self.n = 0
        self.write("start")
        self.terms = {i: c.status(i).term for i in c.nodes}
        self.followers = [i for i in c.nodes if i != self.lead]

    def write(self, what):
        self.n += 1
        expect_status(self.s.set(b"k", b"%d" % self.n), OK, "write after %s" % what)

    def unchanged(self, what):
        """Term and leader as before, on every node, and writes go on."""
        self.write(what)
        for i in self.c.nodes:
            st = self.c.status(i)
            expect(st is not None, "node %d does not answer after %s", i, what)
            expect(st.term == self.terms[i], "node %d: term %d -> %d after %s", i, self.terms[i],
                   st.term, what)
            expect(st.leader_id == self.lead, "node %d: leader %d -> %d after %s", i, self.lead,
                   st.leader_id, what)

    def close(self):
        self.s.close()


def tls_cluster(opts=None):
    c = Cluster(3, name="raftkv", cluster_id=CLUSTER_ID, **(opts or {}))
    c.set_tls(make_certs(c.dir))
    return c


def test_plaintext():
    with tls_cluster() as c:
        w = World(c)
        for i in w.followers:
            size0 = c.log_size(i)
            s = socket.create_connection(("127.0.0.1", c.nodes[i].peer_port), timeout=T(10))
            refused(c, i, s, forged(i), "a plaintext peer connection",
                    r"TLS handshake with 127\.0\.0\.1:\d+ failed", size0)
        w.unchanged("the forged heartbeat in plaintext")
        w.close()
        report("plaintext forged heartbeat to followers %s: handshake refused, terms %s unchanged"
               % (w.followers, w.terms))


def test_other_ca():
    with tls_cluster() as c:
        w = World(c)
        other = make_certs(os.path.join(c.dir, "stranger"))
        tls = c.tls_dir
        for i in w.followers:
            size0 = c.log_size(i)
            # our side trusts the real CA, so only the node's check can stop it
            try:
                s = tls_connect(c.nodes[i].peer_port, os.path.join(tls, "ca.crt"),
                                os.path.join(other, "node-1.crt"), os.path.join(other, "node-1.key"), i)
            except (ssl.SSLError, ConnectionError):
                s = None  # refused inside the handshake: as good
            pattern = r"TLS handshake with .* failed: certificate refused"
            if s:
                refused(c, i, s, forged(i), "a certificate of another CA", pattern, size0)
            else:
                c.wait_log(i, pattern, since=size0)
        w.unchanged("node 1's name on a certificate of another CA")
        w.close()
        report("certificate of another CA refused by followers %s; terms unchanged" % w.followers)


def test_impostor():
    with tls_cluster() as c:
        w = World(c)
        tls = c.tls_dir
        liar = [i for i in w.followers if i != 2][0] if w.lead != 2 else w.followers[0]
        claims = w.lead if w.lead != 2 else [i for i in c.nodes if i not in (2, liar)][0]
        for i in w.followers:
            if i == 2:
                continue  # node 2 talking to itself is not the case here
            size0 = c.log_size(i)
            s = tls_connect(c.nodes[i].peer_port, os.path.join(tls, "ca.crt"),
                            os.path.join(tls, "node-2.crt"), os.path.join(tls, "node-2.key"), i)
            refused(c, i, s, forged(i, claims=claims), "the link of an impostor",
                    r"claims to be node %d but its certificate names raftkv-node-2; closing "
                    r"\(1 such messages so far" % claims, size0)
        w.unchanged("node 2's certificate claiming node %d" % claims)
        w.close()
        report("node 2's valid certificate claiming node %d (term 10^12): dropped, counted and closed; "
               "terms %s unchanged" % (claims, w.terms))


def test_huge_term():
    """Plaintext mode: nothing tells a stranger from a member, but a term
    that would leave no room to count up is still refused."""
    with Cluster(3, name="raftkv", cluster_id=CLUSTER_ID) as c:
        w = World(c)
        for i in w.followers:
            size0 = c.log_size(i)
            s = socket.create_connection(("127.0.0.1", c.nodes[i].peer_port), timeout=T(10))
            for term in (RAFT_TERM_MAX + 1, (1 << 64) - 1):
                s.sendall(forged(i, term=term, claims=w.lead))
            # a non-member's frame closes the connection: the ones before it
            # on the same connection were handled by then
            refused(c, i, s, forged(i, term=5, claims=9), "a non-member's connection",
                    r"refusing peer .*: node 9 is not a member", size0)
        w.unchanged("heartbeats with terms past 2^64 - 65536")
        w.close()
        report("terms 2^64-65535 and 2^64-1 claiming the leader %d refused by followers %s (terms %s); "
               "a non-member's frame refused" % (w.lead, w.followers, w.terms))


def test_revoked_node():
    c = Cluster(3, name="raftkv", cluster_id=CLUSTER_ID)
    with c:
        tls = make_certs(c.dir)
        c.opts["tls_crl"] = os.path.join(tls, "crl.pem")  # config generate --tls wrote it, empty
        c.set_tls(tls)
        w = World(c)
        f = w.followers[0]
        others = [i for i in c.nodes if i != f]
        r = subprocess.run([CTL, "certs", "revoke", "node-%d" % f, "--tls-dir", tls], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=T(30))
        expect(r.returncode == 0, "certs revoke node-%d: %s", f, r.stdout.decode(errors="replace"))
        sizes = {i: c.log_size(i) for i in c.nodes}
        for i in c.nodes:
            os.kill(c.nodes[i].pid, signal.SIGHUP)
        for i in others:
            c.wait_log(i, r"SIGHUP: closed [12] connections whose certificate the CRL revokes", since=sizes[i])
            # redials either way: its server or its client certificate refused
            c.wait_log(i, r"TLS handshake with .* failed: certificate refused: certificate revoked", since=sizes[i])
        for k in range(5):
            w.write("node %d revoked" % f)
        for i in others:
            st = c.status(i)
            expect(st.term == w.terms[i] and st.leader_id == w.lead, "node %d: term %d -> %d, leader %d -> %d "
                   "after revoking node %d", i, w.terms[i], st.term, w.lead, st.leader_id, f)
        lead_commit = c.status(w.lead).commit_index
        st = c.status(f)
        expect(st.commit_index < lead_commit, "revoked node %d still follows: commit %d, leader's %d", f,
               st.commit_index, lead_commit)
        w.close()
        report("node %d's certificate revoked, SIGHUP: nodes %s closed their links and refuse it; 5 writes "
               "committed without it (its commit %d, the leader's %d)" % (f, others, st.commit_index, lead_commit))


def test_slow_handshake():
    with tls_cluster({"frame_timeout_ms": 1000}) as c:
        w = World(c)
        tls = c.tls_dir
        i = w.followers[0]
        size0 = c.log_size(i)
        # 20: the peer port admits 4 per member + 16 at once (listener.h)
        stalled = stall_handshakes(c.nodes[i].peer_port)
        t0 = time.monotonic()
        # meanwhile: writes commit (the follower acks them), and a real
        # handshake with the same node completes
        for k in range(5):
            w.write("stalled handshakes, %d" % k)
        good = tls_connect(c.nodes[i].peer_port, os.path.join(tls, "ca.crt"),
                           os.path.join(tls, "node-%d.crt" % w.lead), os.path.join(tls, "node-%d.key" % w.lead), i)
        hs_ms = (time.monotonic() - t0) * 1000
        expect(good.version() == "TLSv1.3", "negotiated %s", good.version())
        good.close()
        took = expect_cut_off(c, i, stalled, t0, size0)
        w.unchanged("20 stalled handshakes")
        w.close()
        report("20 stalled handshakes on node %d: 5 writes and a real handshake in %.0f ms meanwhile; "
               "all cut off within %.1fs" % (i, hs_ms, took))


if __name__ == "__main__":
    if not os.access(CTL, os.X_OK):
        print("SKIP: no raftkvctl at %s (set RAFTKV_CTL)" % CTL)
        sys.exit(harness.SKIP)
    main([test_plaintext, test_other_ca, test_impostor, test_huge_term, test_revoked_node, test_slow_handshake])
