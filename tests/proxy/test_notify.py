#!/usr/bin/python3
"""The sd_notify protocol as systemd sees it, without systemd: the test
binds the NOTIFY_SOCKET datagram socket itself (with SO_PASSCRED, so every
message carries the sender's PID) and checks what raftkv-node and
raftkv-proxy send: READY=1 only once serving, STATUS= text that follows the
role, term and commit index, WATCHDOG=1 pings from the event loop at half of
WATCHDOG_USEC, EXTEND_TIMEOUT_USEC= while a restart recovers its log, and
STOPPING=1 on SIGTERM."""
import os
import re
import signal
import socket
import struct
import tempfile
import threading
import time

import pxharness  # first: puts tests/cluster on the path
import harness
from harness import OK, Cluster, Session, T, expect, expect_status, main, report, wait_until


class NotifySocket:
    """A NOTIFY_SOCKET: messages are kept per sender PID, in arrival order.
    A thread reads it all the time, as PID 1 does: sd_notify() blocks the
    sender once a datagram socket's queue (net.unix.max_dgram_qlen, often
    10) is full, and arrival times are only right if read on arrival."""

    def __init__(self):
        self.path = os.path.join(tempfile.mkdtemp(prefix="notify-", dir=harness._TOP_TMP), "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(self.path)
        self.sock.settimeout(0.05)
        self.msgs = []  # (time, pid, {field: value})
        self.lock = threading.Lock()
        self.done = False
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def close(self):
        self.done = True
        self.reader.join(timeout=5)
        self.sock.close()

    def _read(self):
        ucred = struct.calcsize("3i")
        while not self.done:
            try:
                data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(ucred))
            except socket.timeout:
                continue
            except OSError:
                return
            pid = 0
            for level, kind, cdata in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("3i", cdata[:ucred])[0]
            fields = dict(l.split("=", 1) for l in data.decode().split("\n") if "=" in l)
            with self.lock:
                self.msgs.append((time.monotonic(), pid, fields))

    def of(self, pid, field=None, since=0.0):
        with self.lock:
            msgs = list(self.msgs)
        return [(t, f) for t, p, f in msgs
                if p == pid and t >= since and (field is None or field in f)]

    def wait(self, pid, field, pred=lambda v: True, timeout=None, since=0.0, what=None):
        """The first message from pid after since whose field satisfies pred."""
        found = []

        def cond():
            found[:] = [f for _, f in self.of(pid, field, since) if pred(f[field])]
            return bool(found)
        wait_until(cond, timeout or T(10), what or "%s= from pid %d" % (field, pid))
        return found[0][field]

    def statuses(self, pid):
        return [f["STATUS"] for _, f in self.of(pid, "STATUS")]


class notify_env:
    """Processes started inside the with block talk to ns (and get a
    watchdog when usec is given)."""

    def __init__(self, ns, watchdog_usec=None):
        self.env = {"NOTIFY_SOCKET": ns.path}
        if watchdog_usec:
            self.env["WATCHDOG_USEC"] = str(watchdog_usec)

    def __enter__(self):
        os.environ.update(self.env)

    def __exit__(self, *a):
        for k in self.env:
            os.environ.pop(k, None)


def check_node_ready_status_stopping():
    ns = NotifySocket()
    try:
        with Cluster(3) as c:
            with notify_env(ns):
                c.start()
            pids = {i: c.nodes[i].pid for i in c.nodes}
            for i, pid in pids.items():
                ns.wait(pid, "READY", lambda v: v == "1", what="READY=1 from node %d" % i)
            lead = c.wait_leader()
            # STATUS= follows the role: "leader, term T, commit C" on the
            # leader, "follower of L, term T" on the others.
            for i, pid in pids.items():
                st = c.status(i)
                want = (r"leader, term %d, commit \d+$" % st.term if i == lead
                        else r"follower of %d, term %d$" % (lead, st.term))
                ns.wait(pid, "STATUS", lambda v, w=want: re.match(w, v) is not None,
                        what="STATUS=%s from node %d (saw %r)" % (want, i, ns.statuses(pid)[-3:]))
            # The leader's commit index moves with writes; STATUS= keeps up.
            s = Session(c)
            for k in range(20):
                expect_status(s.set(b"k%d" % k, b"v"), OK, "write")
            commit = c.status(lead).commit_index
            ns.wait(pids[lead], "STATUS",
                    lambda v: (m := re.search(r"commit (\d+)$", v)) is not None and int(m.group(1)) >= commit,
                    what="STATUS= with commit >= %d (saw %r)" % (commit, ns.statuses(pids[lead])[-3:]))
            report("READY=1 from 3 nodes; STATUS= leader/follower texts; leader's commit %d shown" % commit)
            # STOPPING=1 on SIGTERM, before the process is gone.
            f = next(i for i in c.nodes if i != lead)
            t0 = time.monotonic()
            c.stop(f)
            # The process is gone, but the reader thread may not have taken
            # its last datagram off the socket yet.
            ns.wait(pids[f], "STOPPING", lambda v: v == "1", since=t0,
                    what="STOPPING=1 from node %d on SIGTERM" % f)
            # No READY=1 was ever sent twice.
            for i, pid in pids.items():
                expect(len(ns.of(pid, "READY")) == 1, "node %d sent READY=1 %d times", i,
                       len(ns.of(pid, "READY")))
            report("STOPPING=1 on SIGTERM")
    finally:
        ns.close()


def check_node_watchdog_and_recovery():
    ns = NotifySocket()
    usec = 500000
    try:
        with Cluster(3) as c:
            c.start()
            lead = c.wait_leader()
            s = Session(c)
            for k in range(50):
                expect_status(s.set(b"k%d" % k, b"v" * 100), OK, "write")
            f = next(i for i in c.nodes if i != lead)
            c.stop(f)
            with notify_env(ns, watchdog_usec=usec):
                c.start_node(f, wait=False)
            pid = c.nodes[f].pid
            ns.wait(pid, "READY", lambda v: v == "1", what="READY=1 after restart")
            msgs = ns.of(pid)
            ready_at = next(t for t, m in msgs if "READY" in m)
            extend = [m for t, m in msgs if "EXTEND_TIMEOUT_USEC" in m and t <= ready_at]
            expect(extend, "no EXTEND_TIMEOUT_USEC= before READY=1 while recovering (got %r)",
                   [m for _, m in msgs][:5])
            expect(int(extend[0]["EXTEND_TIMEOUT_USEC"]) >= 1000000, "extension %s us is too short",
                   extend[0]["EXTEND_TIMEOUT_USEC"])
            expect(extend[0].get("STATUS", "").startswith("recovering: "),
                   "no STATUS=recovering: ... with the extension: %r", extend[0])
            report("restart with a log: %s, %s" % (
                "EXTEND_TIMEOUT_USEC=%s" % extend[0]["EXTEND_TIMEOUT_USEC"], extend[0]["STATUS"]))
            # Pings come from the loop at half the interval: about 20 in a
            # window of 10 intervals.  Asking for half of that keeps a busy
            # CI machine from failing the test; no pings at all, or pings
            # at the full interval, still fail it.
            t0 = time.monotonic()
            window = 10 * usec / 1e6
            # Arrival times are taken by the reader thread: a ping read after
            # the window ends proves every ping sent inside it was read.
            ns.wait(pid, "WATCHDOG", since=t0 + window, timeout=T(5) + window,
                    what="a WATCHDOG=1 after the %.1f s window" % window)
            pings = [t for t, _ in ns.of(pid, "WATCHDOG") if t0 <= t < t0 + window]
            expect(len(pings) >= 10, "only %d WATCHDOG=1 in %.1f s with WATCHDOG_USEC=%d", len(pings),
                   window, usec)
            # A wedged loop stops pinging: that is what lets systemd kill it.
            c.pause(f)
            t1 = time.monotonic()
            wait_until(lambda: time.monotonic() - t1 >= usec / 1e6, T(5), "a paused stretch")
            t2 = time.monotonic()
            wait_until(lambda: time.monotonic() - t2 >= 3 * usec / 1e6, T(5),
                       "a paused stretch")
            expect(not ns.of(pid, "WATCHDOG", since=t2), "a stopped process kept pinging")
            c.resume(f)
            ns.wait(pid, "WATCHDOG", since=time.monotonic(), what="pings after SIGCONT")
            report("%d pings in %.1f s (WATCHDOG_USEC %d ms); none while stopped" % (
                len(pings), window, usec // 1000))
    finally:
        ns.close()


def check_proxy():
    ns = NotifySocket()
    usec = 200000
    try:
        with pxharness.ProxiedCluster(3) as (c, px):
            c.start()
            with notify_env(ns, watchdog_usec=usec):
                px.start()
            pid = px.proc.pid
            ns.wait(pid, "READY", lambda v: v == "1", what="READY=1 from the proxy")
            ns.wait(pid, "STATUS", lambda v: "3/3 nodes healthy" in v,
                    what="proxy STATUS= with 3/3 nodes healthy (saw %r)" % ns.statuses(pid)[-3:])
            t0 = time.monotonic()
            wait_until(lambda: len(ns.of(pid, "WATCHDOG", since=t0)) >= 10, T(10), "10 proxy pings")
            px.stop()
            ns.wait(pid, "STOPPING", lambda v: v == "1", what="STOPPING=1 from the proxy on SIGTERM")
            report("proxy: READY=1, %r, watchdog pings, STOPPING=1" % ns.statuses(pid)[-1])
    finally:
        ns.close()


if __name__ == "__main__":
    main([check_node_ready_status_stopping, check_node_watchdog_and_recovery, check_proxy])
