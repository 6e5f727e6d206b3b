"""ctlharness.py - a real local raftkv cluster for raftkvctl's tests.

The cluster is described by `raftkvctl config generate` itself (so every
test also checks that raftkv-node accepts what it writes) and run as plain
raftkv-node processes on 127.0.0.1.  Standard library only.

Environment:
  RAFTKV_CTL    the raftkvctl binary (default build/src/ctl/raftkvctl)
  RAFTKV_NODE   the raftkv-node binary (default build/src/node/raftkv-node)
  RAFTKV_KEEP   keep the temporary directory (config, data, logs)

Every process started is recorded by PID and killed at close(), at exit,
on SIGTERM/SIGINT (meson's timeout), and through PR_SET_PDEATHSIG when the
test itself dies.  Every wait is bounded by a deadline.
"""
import atexit
import ctypes
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CTL = os.environ.get("RAFTKV_CTL") or os.path.join(ROOT, "build", "src", "ctl", "raftkvctl")
NODE = os.environ.get("RAFTKV_NODE") or os.path.join(ROOT, "build", "src", "node", "raftkv-node")


def _sanitized(path):
    try:
        with open(path, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


# Sanitizer builds run several times slower: stretch every deadline.
SCALE = 4.0 if (_sanitized(CTL) or _sanitized(NODE)) else 1.0

_live = set()  # PIDs of every process still running


def _kill_all():
    for pid in list(_live):
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        _live.discard(pid)


def _on_signal(sig, frame):
    _kill_all()
    sys.exit(128 + sig)


atexit.register(_kill_all)
signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGINT, _on_signal)
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent():
    _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def wait_until(what, fn, timeout=10.0, step=0.05):
    """Polls fn() until it returns something true; fails after timeout."""
    deadline = time.monotonic() + timeout * SCALE
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(step)
    raise AssertionError("timed out waiting for %s (last: %r)" % (what, last))


def _ports_free(ports):
    socks = []
    try:
        for p in ports:
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", p))
            socks.append(s)
        return True
    except OSError:
        return False
    finally:
        for s in socks:
            s.close()


def free_base_port(n):
    """A base port P with P, P+1..P+n and P+101..P+100+n all free."""
    for _ in range(200):
        base = random.randrange(20000, 60000, 10)
        ports = [base] + [base + i for i in range(1, n + 1)] + [base + 100 + i for i in range(1, n + 1)]
        if _ports_free(ports):
            return base
    raise AssertionError("no free port range found")


class Result:
    def __init__(self, args, rc, out, err):
        self.args, self.rc, self.out, self.err = args, rc, out, err

    @property
    def text(self):
        return self.out.decode("utf-8", "replace")

    def __repr__(self):
        return "raftkvctl %s -> rc=%d stdout=%r stderr=%r" % (" ".join(self.args), self.rc, self.out[:400],
                                                             self.err[:400])


def ctl(*args, input=None, env=None, timeout=60):
    """Runs raftkvctl; returns a Result (stdout as bytes, stderr as text)."""
    e = dict(os.environ)
    e.pop("RAFTKV_ENDPOINT", None)
    e.update(env or {})
    p = subprocess.Popen([CTL] + list(args), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=e, preexec_fn=_die_with_parent)
    _live.add(p.pid)
    try:
        out, err = p.communicate(input=input if input is not None else b"", timeout=timeout * SCALE)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        raise AssertionError("raftkvctl %s did not finish in time" % " ".join(args))
    finally:
        _live.discard(p.pid)
    return Result(list(args), p.returncode, out, err.decode("utf-8", "replace"))


def expect(res, rc=0, out=None, err_has=None):
    """Checks a Result's exit code, stdout (exact bytes) and stderr (substring)."""
    if res.rc != rc:
        raise AssertionError("expected rc=%d: %r" % (rc, res))
    if out is not None and res.out != out:
        raise AssertionError("expected stdout %r: %r" % (out, res))
    if err_has is not None and err_has not in res.err:
        raise AssertionError("expected %r on stderr: %r" % (err_has, res))
    return res


class Cluster:
    def __init__(self, n=3):
        self.n = n
        self.dir = tempfile.mkdtemp(prefix="raftkv-ctl-")
        self.base = free_base_port(n)
        self.conf = os.path.join(self.dir, "raftkv.conf")
        expect(ctl("config", "generate", "--nodes", str(n), "--base-port", str(self.base),
                   "--data-dir-base", os.path.join(self.dir, "data"), "--run-dir", self.dir,
                   "--name", "ctltest", "--insecure", "-f", self.conf))
        self.procs = {}
        for i in range(1, n + 1):
            self.start(i)
        self.wait_leader()

    def client(self, i):
        return "127.0.0.1:%d" % (self.base + i)

    @property
    def endpoints(self):
        return ",".join(self.client(i) for i in range(1, self.n + 1))

    def start(self, i):
        log = open(os.path.join(self.dir, "node%d.log" % i), "ab")
        p = subprocess.Popen([NODE, "--id", str(i), "--config", self.conf], stdout=log, stderr=subprocess.STDOUT,
                             preexec_fn=_die_with_parent)
        log.close()
        _live.add(p.pid)
        self.procs[i] = p

    def stop(self, i, sig=signal.SIGKILL):
        p = self.procs.pop(i, None)
        if p:
            p.send_signal(sig)
            try:
                p.wait(timeout=10 * SCALE)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            _live.discard(p.pid)

    def ctl(self, *args, **kw):
        """raftkvctl against this cluster through its config (nodes as endpoints)."""
        return ctl("-c", self.conf, *args, **kw)

    def wait_leader(self, timeout=15.0):
        """A leader and every node up and healthy: a majority elects a
        leader before the last node may even listen, and the tests check
        all n rows of 'status'."""
        def ok():
            r = ctl("-c", self.conf, "-t", "1s", "-o", "plain", "status")
            rows = [ln.split("\t") for ln in r.text.splitlines()]
            return (r.rc == 0 and len(rows) == self.n and all(len(f) == 8 and f[7] == "ok" for f in rows)
                    and sum(f[0].endswith("*") for f in rows) == 1)
        wait_until("a leader and all %d nodes healthy" % self.n, ok, timeout=timeout)

    def leader(self):
        r = expect(self.ctl("-o", "plain", "status"))
        for line in r.text.splitlines():
            if line.split("\t")[0].endswith("*"):
                return int(line.split("\t")[0][:-1])
        raise AssertionError("no leader in %r" % r)

    def close(self):
        for i in list(self.procs):
            self.stop(i)
        if os.environ.get("RAFTKV_KEEP"):
            print("kept", self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


def run(tests):
    """Runs test functions (each taking a Cluster, or None when named
    *_nocluster) on one shared cluster; prints one line per test; exit
    status 1 when any failed."""
    failed = 0
    only = sys.argv[1:]
    cluster = None
    try:
        for t in tests:
            if only and t.__name__ not in only:
                continue
            start = time.monotonic()
            try:
                if cluster is None and not t.__name__.endswith("_nocluster"):
                    cluster = Cluster()
                t(cluster)
                print("ok   %-40s %.2fs" % (t.__name__, time.monotonic() - start))
            except Exception:
                failed += 1
                print("FAIL %s" % t.__name__)
                traceback.print_exc()
                if cluster:
                    for i in range(1, cluster.n + 1):
                        path = os.path.join(cluster.dir, "node%d.log" % i)
                        if os.path.exists(path):
                            with open(path, "rb") as f:
                                tail = f.read()[-1500:].decode("utf-8", "replace")
                            print("--- node%d.log (tail) ---\n%s" % (i, tail))
    finally:
        if cluster:
            cluster.close()
        _kill_all()
    print("%d failed" % failed)
    sys.exit(1 if failed else 0)
