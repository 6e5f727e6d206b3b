#!/usr/bin/python3
"""Client ports, the proxy and rights (issue 15, part 2).  Certificates come
from 'raftkvctl config generate --tls' and 'raftkvctl certs add-client'.

  plaintext_client  TLS on: a plaintext request to a node's client port and
                    to the proxy's port gets no answer; the socket is closed
  other_ca_client   a client certificate of another CA: handshake refused
  expired_client    a certificate of the cluster's CA that has expired
                    (certs add-client --days 0): refused
  roles             read / write / admin certificates and none (anonymous
                    = read, as config generate --tls writes): each allowed
                    exactly its ops, PERMISSION_DENIED with a message
                    otherwise, on a node and through the proxy; raftkvctl
                    exits 8; the admin socket (SO_PEERCRED) is admin
  reload            the CA and every certificate replaced, SIGHUP to nodes
                    and proxy: an established client connection and the
                    peer links stay (same leader and term, writes go on),
                    the old admin certificate is refused on new
                    connections, the new one works
  revoked_client    [cluster] tls_crl set; a write client's certificate
                    revoked (certs revoke) and SIGHUP to nodes and proxy:
                    its established connections to a node and to the
                    proxy are closed, new handshakes with it refused; the
                    admin connection and the peer links stay
  slow_client_hs    20 stalled handshakes on a client port: a TLS client
                    works meanwhile, all cut off at frame_timeout_ms
  plaintext_modes   no TLS: loopback clients get anonymous_role (write),
                    transfer-leader needs the admin socket; a non-loopback
                    address without insecure: the node exits 2 and says
                    why; insecure = true: everyone is admin, and the log
                    and STATUS say INSECURE

    RAFTKV_NODE=build/src/node/raftkv-node RAFTKV_PROXY=build/src/proxy/raftkv-proxy \\
      RAFTKV_CTL=build/src/ctl/raftkvctl /usr/bin/python3 tests/security/test_clients.py [-k NAME]
"""
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "proxy"))
sys.path.insert(0, HERE)
import pxharness  # noqa: E402  (puts tests/cluster on the path)
import harness  # noqa: E402
from harness import (OK, Client, T, expect, expect_status, frame, main, pb, report, req_get,  # noqa: E402
                     make_certs, req_set, req_status, req_transfer, status_name, tls_context, wait_until)
from test_security import CTL, closed_within, expect_cut_off, stall_handshakes  # noqa: E402

PERMISSION_DENIED = pb.PERMISSION_DENIED
EXIT_PERMISSION = 8


def ctl(*args, env=None):
    return subprocess.run([CTL] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=T(30), env=env)


def add_client(tls, role, label=None, days=None):
    """certs add-client ROLE [LABEL]: (crt, key) paths."""
    args = ["certs", "add-client", role] + ([label] if label else []) + ["--tls-dir", tls]
    if days is not None:
        args += ["--days", str(days)]
    r = ctl(*args)
    expect(r.returncode == 0, "certs add-client %s: %s", role, r.stderr.decode(errors="replace"))
    stem = "client-%s%s" % (role, "-" + label if label else "")
    return os.path.join(tls, stem + ".crt"), os.path.join(tls, stem + ".key")


def tls_proxied(opts=None):
    """3 nodes and a proxy, TLS everywhere, anonymous clients may read only
    (what config generate --tls writes)."""
    o = {"anonymous_role": "read"}
    o.update(opts or {})
    pc = pxharness.ProxiedCluster(3, **o)
    pc.c.set_tls(make_certs(pc.c.dir))
    return pc


def handshake_refused(port, ctx):
    """True when the server refuses ctx's handshake (TLS 1.3: the client may
    finish first and see the alert only on its first read)."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=T(10))
        s = ctx.wrap_socket(s)
    except (ssl.SSLError, ConnectionError):
        return True
    try:
        s.sendall(frame(req_status(id=1).SerializeToString()))
        s.settimeout(T(10))
        return not s.recv(4)
    except (ssl.SSLError, ConnectionError, socket.timeout):
        return True
    finally:
        s.close()


def test_plaintext_client():
    with tls_proxied() as (c, px):
        c.start_and_lead()
        px.start()
        for name, port, log in (("node 1", c.nodes[1].client_port, lambda: c.log(1)),
                                ("proxy", px.port, px.log)):
            s = socket.create_connection(("127.0.0.1", port), timeout=T(10))
            s.sendall(frame(req_status(id=1).SerializeToString()))
            expect(closed_within(s, T(10)), "%s kept a plaintext client open", name)
            s.close()
            wait_until(lambda: "TLS handshake with 127.0.0.1" in log(), T(10), "%s to log the handshake" % name)
        report("a plaintext STATUS to node 1's client port and to the proxy: no answer, closed, logged")


def test_other_ca_client():
    with tls_proxied() as (c, px):
        c.start_and_lead()
        px.start()
        other = make_certs(os.path.join(c.dir, "stranger"))
        # trusts the real CA, shows a certificate of another one
        ctx = tls_context(os.path.join(c.tls_dir, "ca.crt"), os.path.join(other, "admin.crt"),
                          os.path.join(other, "admin.key"))
        for name, port in (("node 1", c.nodes[1].client_port), ("proxy", px.port)):
            expect(handshake_refused(port, ctx), "%s took an admin certificate of another CA", name)
        c.wait_log(1, r"TLS handshake with .* failed: certificate refused")
        # and the client side: a server of another CA is refused by raftkvctl
        r = ctl("--tls-ca", os.path.join(other, "ca.crt"), "-e", "127.0.0.1:%d" % c.nodes[1].client_port,
                "status")
        expect(r.returncode != 0 and b"certificate" in r.stderr, "raftkvctl trusted a node of another CA: %r",
               r.stderr)
        report("an admin certificate of another CA: refused by node 1 and the proxy; raftkvctl with "
               "another CA refuses the node")


def test_expired_client():
    with tls_proxied() as (c, px):
        crt, key = add_client(c.tls_dir, "admin", "expired", days=0)
        time.sleep(1.1)  # notAfter = issue time: let it pass (a second's resolution)
        c.start_and_lead()
        px.start()
        ctx = tls_context(os.path.join(c.tls_dir, "ca.crt"), crt, key)
        for name, port in (("node 1", c.nodes[1].client_port), ("proxy", px.port)):
            expect(handshake_refused(port, ctx), "%s took an expired certificate", name)
        c.wait_log(1, r"certificate refused: certificate has expired")
        report("an expired admin certificate of the cluster's CA: refused by node 1 and the proxy")


def transfer_allowed(c, call, what):
    """TRANSFER_LEADER through call (c.call or c.admin_call) is allowed: a
    transfer to itself on whichever node leads now answers OK, tried again
    if an election moved the leader meanwhile."""
    def once():
        cur = c.wait_leader()
        r = call(cur, req_transfer(cur), timeout=T(15))
        expect(r.status != PERMISSION_DENIED, "transfer on %s: %r", what, r.message)
        return r.status == OK
    wait_until(once, T(30), "a transfer on %s" % what)


def call_as(port, ctx, req):
    with Client(port, tls=ctx) as cl:
        return cl.call(req)


def test_roles():
    with tls_proxied() as (c, px):
        lead = c.start_and_lead()
        px.start()
        px.wait_leader()
        tls = c.tls_dir
        ca = os.path.join(tls, "ca.crt")
        ctxs = {"none": tls_context(ca)}
        for role in ("read", "write"):
            ctxs[role] = tls_context(ca, *add_client(tls, role, "app"))
        ctxs["admin"] = tls_context(ca, os.path.join(tls, "admin.crt"), os.path.join(tls, "admin.key"))
        rank = {"none": 1, "read": 1, "write": 2, "admin": 3}  # anonymous_role = read
        other = [i for i in c.nodes if i != lead][0]
        ops = [("GET", 1, lambda: req_get(b"k")), ("SET", 2, lambda: req_set(b"k", b"v")),
               ("TRANSFER_LEADER", 3, lambda: req_transfer(lead))]  # to itself: a no-op when allowed
        seen = []
        for who, ctx in ctxs.items():
            for where, port in (("node %d" % lead, c.nodes[lead].client_port), ("proxy", px.port)):
                for op, need, mk in ops:
                    r = call_as(port, ctx, mk())
                    if rank[who] >= need:
                        # allowed: whatever the cluster says (an election under load may
                        # make it NOT_LEADER), but never a refusal of rights
                        expect(r.status != PERMISSION_DENIED, "%s as %s via %s: %s %r", op, who, where,
                               status_name(r.status), r.message)
                    else:
                        expect(r.status == PERMISSION_DENIED, "%s as %s via %s: %s, want PERMISSION_DENIED",
                               op, who, where, status_name(r.status))
                        expect("role" in r.message, "no role named in %r", r.message)
                        seen.append(r.message)
        # a real transfer through the proxy with the admin certificate
        r = call_as(px.port, ctxs["admin"], req_transfer(other))
        expect_status(r, OK, "transfer through the proxy as admin")
        expect(r.transfer_leader.leader_id == other, "transfer answered leader %d, want %d",
               r.transfer_leader.leader_id, other)
        # raftkvctl: exit 8, with the role in the message
        base = ["--tls-ca", ca, "-e", "127.0.0.1:%d" % px.port]
        write_crt = os.path.join(tls, "client-write-app.crt")
        write_key = os.path.join(tls, "client-write-app.key")
        r = ctl(*base, "--tls-cert", write_crt, "--tls-key", write_key, "transfer-leader", str(lead))
        expect(r.returncode == EXIT_PERMISSION and b"admin role" in r.stderr,
               "raftkvctl transfer-leader as write: exit %d %r", r.returncode, r.stderr)
        r = ctl(*base, "set", "k", "v")
        expect(r.returncode == EXIT_PERMISSION, "raftkvctl set without a certificate: exit %d %r", r.returncode,
               r.stderr)
        r = ctl(*base, "--tls-cert", write_crt, "--tls-key", write_key, "set", "k", "v")
        expect(r.returncode == 0, "raftkvctl set as write: exit %d %r", r.returncode, r.stderr)
        # the admin socket: SO_PEERCRED, this user runs the nodes: admin
        transfer_allowed(c, c.admin_call, "the admin socket")
        st = c.admin_call(lead, req_status()).status_info.node
        expect(st.security == "TLS" and st.your_role.startswith("admin"), "STATUS security %r, your_role %r",
               st.security, st.your_role)
        report("roles none/read/write/admin on node and proxy: %d refusals, e.g. %r; raftkvctl exit 8; "
               "admin socket admin (%s)" % (len(seen), seen[0], st.your_role))


def replace_certs(c, new):
    """Copy new's CA and node and proxy certificates over the files c's
    config names (an operator rotating the cluster's CA)."""
    for f in os.listdir(new):
        if f.startswith(("ca.", "node-", "proxy.")):
            dst = os.path.join(c.tls_dir, f)
            shutil.copyfile(os.path.join(new, f), dst + ".new")
            os.replace(dst + ".new", dst)


def reload_all(c, px, pattern=r"SIGHUP: reloaded CA"):
    """SIGHUP to every node and the proxy, back once each logged the
    reload; the nodes' log sizes from before."""
    sizes = {i: c.log_size(i) for i in c.nodes}
    for i in c.nodes:
        os.kill(c.nodes[i].pid, signal.SIGHUP)
    os.kill(px.proc.pid, signal.SIGHUP)
    for i in c.nodes:
        c.wait_log(i, pattern, since=sizes[i])
    wait_until(lambda: "SIGHUP: reloaded CA" in px.log(), T(10), "the proxy to reload")
    return sizes


def test_reload():
    with tls_proxied() as (c, px):
        lead = c.start_and_lead()
        px.start()
        px.wait_leader()
        old_admin = tls_context(os.path.join(c.tls_dir, "ca.crt"), os.path.join(c.tls_dir, "admin.crt"),
                                os.path.join(c.tls_dir, "admin.key"))
        term = c.status(lead).term
        held = Client(c.nodes[lead].client_port, tls=old_admin)  # established before the reload
        held_px = Client(px.port, tls=old_admin)
        expect_status(held.call(req_set(b"before", b"1")), OK, "write before the reload")
        new = make_certs(os.path.join(c.dir, "rotated"))
        replace_certs(c, new)
        sizes = reload_all(c, px)
        # established: the client connections and the peer links
        expect_status(held.call(req_set(b"after", b"1")), OK, "write on a connection made before the reload")
        expect_status(held_px.call(req_set(b"after-px", b"1")), OK, "write through the proxy, old connection")
        new_admin = tls_context(os.path.join(new, "ca.crt"), os.path.join(new, "admin.crt"),
                                os.path.join(new, "admin.key"))
        c.client_tls = new_admin
        for i in c.nodes:
            st = c.status(i)
            expect(st is not None and st.term == term and st.leader_id == lead,
                   "node %d after the reload: %s (term %d, leader %d before)", i, st, term, lead)
        # new connections: the old certificate refused (by the server: this
        # client trusts the new CA), the new one works
        stale = tls_context(os.path.join(new, "ca.crt"), os.path.join(c.tls_dir, "admin.crt"),
                            os.path.join(c.tls_dir, "admin.key"))
        for name, port in (("node %d" % lead, c.nodes[lead].client_port), ("proxy", px.port)):
            expect(handshake_refused(port, stale), "%s took the old CA's admin certificate after "
                   "the reload", name)
            expect_status(call_as(port, new_admin, req_set(b"new", b"1")), OK, "write with the new certificate "
                          "via %s" % name)
        for i in c.nodes:
            expect("is down" not in c.log_since(i, sizes[i]), "node %d lost a peer link", i)
        held.close()
        held_px.close()
        report("CA and certificates rotated, SIGHUP: old connections and peer links kept (leader %d, term "
               "%d), the old admin certificate refused on new connections, the new one works" % (lead, term))


def test_revoked_client():
    with tls_proxied() as (c, px):
        crl = os.path.join(c.tls_dir, "crl.pem")  # config generate --tls wrote it, empty
        c.opts["tls_crl"] = crl
        c.write_config()
        lead = c.start_and_lead()
        px.start()
        px.wait_leader()
        crt, key = add_client(c.tls_dir, "write", "billing")
        billing = tls_context(os.path.join(c.tls_dir, "ca.crt"), crt, key)
        held = Client(c.nodes[lead].client_port, tls=billing)
        held_px = Client(px.port, tls=billing)
        admin = Client(c.nodes[lead].client_port, tls=c.client_tls)
        expect_status(held.call(req_set(b"billing", b"1")), OK, "write with the billing certificate")
        expect_status(held_px.call(req_set(b"billing-px", b"1")), OK, "write through the proxy")
        term = c.status(lead).term
        r = ctl("certs", "revoke", "client-write-billing", "--tls-dir", c.tls_dir)
        expect(r.returncode == 0 and b"1 certificates revoked" in r.stderr, "certs revoke: %d %s", r.returncode,
               r.stderr.decode(errors="replace"))
        sizes = reload_all(c, px, r"SIGHUP: reloaded CA .* and CRL ")
        c.wait_log(lead, r"SIGHUP: closed 1 connections whose certificate the CRL revokes", since=sizes[lead])
        wait_until(lambda: "closed 1 connections whose certificate the CRL revokes" in px.log(), T(10),
                   "the proxy to close the revoked client")
        expect(closed_within(held.sock, T(10)), "node %d kept a revoked client's connection", lead)
        expect(closed_within(held_px.sock, T(10)), "the proxy kept a revoked client's connection")
        for name, port in (("node %d" % lead, c.nodes[lead].client_port), ("proxy", px.port)):
            expect(handshake_refused(port, billing), "%s took a revoked certificate after the reload", name)
        c.wait_log(lead, r"certificate refused: certificate revoked", since=sizes[lead])
        expect_status(admin.call(req_set(b"admin", b"1")), OK, "the admin connection after the reload")
        for i in c.nodes:
            st = c.status(i)
            expect(st is not None and st.term == term and st.leader_id == lead,
                   "node %d after the reload: %s (term %d, leader %d before)", i, st, term, lead)
            expect("is down" not in c.log_since(i, sizes[i]), "node %d lost a peer link", i)
        for k in (held, held_px, admin):
            k.close()
        report("client-write-billing revoked, SIGHUP: its connections to node %d and the proxy closed, new "
               "handshakes refused; admin connection and peer links kept (term %d)" % (lead, term))


def test_slow_client_hs():
    with tls_proxied({"frame_timeout_ms": 1000}) as (c, px):
        lead = c.start_and_lead()
        port = c.nodes[lead].client_port
        size0 = c.log_size(lead)
        stalled = stall_handshakes(port)
        t0 = time.monotonic()
        for k in range(5):
            expect_status(c.call(lead, req_set(b"k%d" % k, b"v")), OK, "TLS write while handshakes stall")
        took_ok = (time.monotonic() - t0) * 1000
        took = expect_cut_off(c, lead, stalled, t0, size0)
        report("20 stalled client handshakes on node %d: 5 TLS writes (new connection each) in %.0f ms "
               "meanwhile; all cut off within %.1fs" % (lead, took_ok, took))


def test_plaintext_modes():
    with harness.Cluster(3) as c:
        lead = c.start_and_lead()
        expect_status(c.call(lead, req_set(b"k", b"v")), OK, "anonymous write on loopback")
        r = c.call(lead, req_transfer(lead))
        expect(r.status == PERMISSION_DENIED and "admin" in r.message, "transfer on TCP: %s %r",
               status_name(r.status), r.message)
        transfer_allowed(c, c.admin_call, "the admin socket")
        st = c.status(lead)
        expect(st.security == "plaintext on loopback" and st.your_role.startswith("write"),
               "security %r, your_role %r", st.security, st.your_role)
        c.wait_log(lead, r"security: plaintext on loopback")
    # a routable address without TLS or insecure: refused at start
    with harness.Cluster(1) as c:
        conf = open(c.config).read().replace("client = 127.0.0.1:", "client = 192.0.2.1:")
        open(c.config, "w").write(conf)
        p = subprocess.run([harness.NODE_BIN, "--id", "1", "--config", c.config], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=T(30))
        out = p.stdout.decode(errors="replace")
        expect(p.returncode == 2 and "192.0.2.1" in out and "insecure = true" in out,
               "node with a routable plaintext address: exit %d: %s", p.returncode, out[-500:])
    with harness.Cluster(3, insecure="true") as c:
        lead = c.start_and_lead()
        transfer_allowed(c, c.call, "TCP in insecure mode")
        st = c.status(lead)
        expect(st.security.startswith("INSECURE") and st.your_role.startswith("admin"),
               "insecure: security %r, your_role %r", st.security, st.your_role)
        c.wait_log(lead, r"INSECURE mode")
    report("plaintext on loopback: TCP writes, admin only on the admin socket; 192.0.2.1 without TLS: "
           "exit 2; insecure: TCP admin, STATUS and log say INSECURE")


if __name__ == "__main__":
    if not os.access(CTL, os.X_OK):
        print("SKIP: no raftkvctl at %s (set RAFTKV_CTL)" % CTL)
        sys.exit(harness.SKIP)
    main([test_plaintext_client, test_other_ca_client, test_expired_client, test_roles, test_reload,
          test_revoked_client, test_slow_client_hs, test_plaintext_modes])
