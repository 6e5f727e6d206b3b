"""pxharness.py - a raftkv-proxy process next to a harness.Cluster.

The cluster harness (tests/cluster/harness.py) is imported, not copied: its
Cluster already writes a [proxy] section with a free port.  The proxy
process is recorded in the harness's PID table, so it is killed by PID with
everything else.

    RAFTKV_NODE=build/src/node/raftkv-node RAFTKV_PROXY=build/src/proxy/raftkv-proxy \\
        /usr/bin/python3 tests/proxy/test_proxy.py [-k NAME]
"""
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "cluster"))

import harness  # noqa: E402
from harness import T, Client, wait_until  # noqa: E402,F401

PROXY_BIN = os.environ.get("RAFTKV_PROXY") or os.path.join(harness.ROOT, "build", "src", "proxy",
                                                          "raftkv-proxy")


class Proxy:
    def __init__(self, cluster, *extra):
        self.cluster = cluster
        self.port = cluster.proxy_port
        self.log_path = os.path.join(cluster.dir, "proxy.log")
        self.extra = list(extra)
        self.proc = None

    def start(self, wait=True):
        logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen([PROXY_BIN, "--config", self.cluster.config] + self.extra,
                                     stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                     preexec_fn=harness._child_setup, close_fds=True)
        logf.close()
        harness._PROCS[self.proc.pid] = self.proc
        if wait:
            def up():
                if self.proc.poll() is not None:
                    raise AssertionError("proxy exited with %s" % self.proc.returncode)
                return harness.answers_status(Client(self.port, timeout=1, tls=self.cluster.client_tls))
            wait_until(up, T(10), "proxy to answer STATUS")
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig=signal.SIGKILL):
        if not self.running():
            return self.proc.returncode if self.proc else None
        os.kill(self.proc.pid, sig)
        code = self.proc.wait(timeout=T(20))
        harness._PROCS.pop(self.proc.pid, None)
        return code

    def stop(self):
        return self.kill(signal.SIGTERM)

    def client(self, timeout=None):
        return Client(self.port, timeout, tls=self.cluster.client_tls)

    def call(self, req, timeout=None):
        with self.client(timeout) as c:
            return c.call(req)

    def status(self, fanout=False):
        r = harness.req_status()
        if fanout:
            r.status.fanout = True
        resp = self.call(r)
        harness.expect_status(resp, harness.OK, "proxy STATUS")
        return resp.status_info

    def view(self):
        """{node id: ProxyNodeView} plus the leader the proxy believes in."""
        ps = self.status().proxy
        return ps.leader_id, {v.id: v for v in ps.nodes}

    def wait_leader(self, want=None, timeout=None, exclude=()):
        def cond():
            lead = self.status().proxy.leader_id
            return lead if lead and lead not in exclude and (want is None or lead == want) else None
        return wait_until(cond, timeout or T(10), "proxy to know the leader%s%s" %
                          (" %d" % want if want else "", " other than %s" % list(exclude) if exclude else ""))

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def check_clean(self):
        text = self.log()
        for bad in ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer"):
            if bad in text:
                raise AssertionError("sanitizer report in the proxy log:\n" + text[-4000:])


class ProxiedCluster:
    """harness.Cluster plus a proxy; on failure prints the proxy's log too."""

    def __init__(self, n, proxy_args=(), **kw):
        self.c = harness.Cluster(n, **kw)
        self.px = Proxy(self.c, *proxy_args)

    def __enter__(self):
        self.c.__enter__()
        return self.c, self.px

    def __exit__(self, etype, e, tb):
        try:
            if etype is not None:
                text = self.px.log().splitlines()
                print("---- proxy log, last 60 of %d lines ----" % len(text))
                for ln in text[-60:]:
                    print("  " + ln)
            if self.px.running():
                code = self.px.stop()
                if etype is None and code != 0:
                    raise AssertionError("proxy exited %s on SIGTERM; its log ends:\n%s" %
                                         (code, self.px.log()[-4000:]))
            if etype is None:
                self.px.check_clean()
        finally:
            self.c.__exit__(etype, e, tb)
        return False
