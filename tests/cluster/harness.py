"""harness.py - run real raftkv-node processes on 127.0.0.1 and talk to them.

Used by the test_*.py files next to it; each of those is runnable alone:

    RAFTKV_NODE=build/src/node/raftkv-node /usr/bin/python3 tests/cluster/test_kv.py [-k NAME]

Environment:
  RAFTKV_NODE        the raftkv-node binary (default: build/src/node/raftkv-node)
  RAFTKV_PROTO_DIR   directory holding raftkv.proto and peer.proto (default: ../../proto)
  RAFTKV_TIME_SCALE  multiply every deadline (default 1; 4 when the binary
                     is built with AddressSanitizer)
  RAFTKV_KEEP        keep the temporary directory (configs, data, logs)
  RAFTKV_SAN_IGNORE  regex: sanitizer report lines matching it do not fail a
                     scenario (a known, filed finding; local use only)

Every process the harness starts is recorded by PID and killed when the
cluster is closed, when the script exits (atexit), when it gets SIGTERM/
SIGINT (meson's timeout), and -- through PR_SET_PDEATHSIG -- when the
script itself dies.  Every wait is a bounded wait_until() loop.
"""
import atexit
import ctypes
import fcntl
import importlib
import os
import random
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SKIP = 77  # meson: test skipped

NODE_BIN = os.environ.get("RAFTKV_NODE") or os.path.join(ROOT, "build", "src", "node", "raftkv-node")
PROTO_DIR = os.environ.get("RAFTKV_PROTO_DIR") or os.path.join(ROOT, "proto")

try:
    import google.protobuf  # noqa: F401 -- Debian: python3-protobuf
except ImportError as e:  # pragma: no cover
    print("SKIP: python protobuf module missing (%s); run with /usr/bin/python3, "
          "scripts/install-deps.sh installs python3-protobuf" % e)
    sys.exit(SKIP)


def _is_sanitized(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
        return b"__asan_init" in data or b"AddressSanitizer" in data
    except OSError:
        return False


SANITIZED = _is_sanitized(NODE_BIN)
SCALE = float(os.environ.get("RAFTKV_TIME_SCALE") or (4 if SANITIZED else 1))


# [proxy] threads for every proxy the tests start: two event loops whatever
# the machine, so the tests cover the multi-threaded proxy (issue 17).
# RAFTKV_TEST_PROXY_THREADS= (empty) leaves the key out (a proxy built
# before it existed refuses it).
PROXY_THREADS = os.environ.get("RAFTKV_TEST_PROXY_THREADS", "2")


def T(seconds):
    """A deadline, stretched for slow (sanitizer) builds."""
    return seconds * SCALE


# ---------------------------------------------------------------------------
# generated protobuf modules

_TOP_TMP = tempfile.mkdtemp(prefix="raftkv-cluster-")


def _gen_proto():
    out = os.path.join(_TOP_TMP, "pb")
    os.makedirs(out)
    protoc = os.environ.get("PROTOC") or shutil.which("protoc") or "/usr/bin/protoc"
    if not os.path.exists(protoc):
        print("SKIP: protoc not found (Debian: protobuf-compiler)")
        sys.exit(SKIP)
    subprocess.run([protoc, "--python_out=" + out, "-I", PROTO_DIR,
                    os.path.join(PROTO_DIR, "raftkv.proto"), os.path.join(PROTO_DIR, "peer.proto")],
                   check=True)
    sys.path.insert(0, out)
    return importlib.import_module("raftkv_pb2"), importlib.import_module("peer_pb2")


pb, peer_pb = _gen_proto()
OK, NOT_FOUND, NOT_LEADER, UNAVAILABLE = pb.OK, pb.NOT_FOUND, pb.NOT_LEADER, pb.UNAVAILABLE
CAS_FAILED, INVALID_ARGUMENT, TOO_LARGE, TIMEOUT, INTERNAL = (
    pb.CAS_FAILED, pb.INVALID_ARGUMENT, pb.TOO_LARGE, pb.TIMEOUT, pb.INTERNAL)
STALE, LINEARIZABLE = pb.STALE, pb.LINEARIZABLE


def status_name(s):
    return pb.Status.Name(s) if s in pb.Status.values() else str(s)


# ---------------------------------------------------------------------------
# process bookkeeping: nothing we start outlives us

_PROCS = {}  # pid -> Popen


def _kill_all():
    for pid, p in list(_PROCS.items()):
        if p.poll() is None:
            try:
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        _PROCS.pop(pid, None)


def _cleanup_tmp():
    if os.environ.get("RAFTKV_KEEP"):
        print("kept", _TOP_TMP)
    else:
        shutil.rmtree(_TOP_TMP, ignore_errors=True)


atexit.register(_cleanup_tmp)
atexit.register(_kill_all)  # atexit runs LIFO: kill first, then remove files


class Interrupted(BaseException):
    pass


def _on_signal(signum, frame):
    raise Interrupted("got signal %d" % signum)


signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGINT, _on_signal)

_libc = ctypes.CDLL(None, use_errno=True)


def _child_setup():
    # PR_SET_PDEATHSIG: die with the harness even if it is SIGKILLed.
    _libc.prctl(1, signal.SIGKILL, 0, 0, 0)


def _socket_activation(argv, env, named_socks):
    """argv, preexec function and fds to keep for passing named_socks the way
    systemd does: as fds 3, 4, ... with LISTEN_FDS, LISTEN_FDNAMES and
    LISTEN_PID (the PID is only known in the child: a shell sets it and
    execs)."""
    n = len(named_socks)
    fds = [s.fileno() for _, s in named_socks]
    env["LISTEN_FDS"] = str(n)
    env["LISTEN_FDNAMES"] = ":".join(name for name, _ in named_socks)
    env.pop("LISTEN_PID", None)

    def setup():
        _child_setup()
        # Out of the way first, so moving one into place cannot clobber another.
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in fds]
        for k, fd in enumerate(high):
            os.dup2(fd, 3 + k)  # dup2 clears FD_CLOEXEC on the copy
            os.close(fd)
    return (["/bin/sh", "-c", 'LISTEN_PID=$$; export LISTEN_PID; exec "$@"', "sh"] + argv, setup,
            tuple(range(3, 3 + n)))


# ---------------------------------------------------------------------------
# waiting


class WaitTimeout(AssertionError):
    pass


def wait_until(cond, timeout, what, interval=0.02):
    """Poll cond() until it returns something truthy; return that.  Raise
    WaitTimeout naming `what` (and the last exception cond raised) after
    `timeout` seconds (already scaled by the caller if needed)."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = cond()
            if v:
                return v
        except (OSError, ProtocolError) as e:
            last_exc = e
        if time.monotonic() >= deadline:
            raise WaitTimeout("timed out after %.1fs waiting for %s%s" %
                              (timeout, what, " (last error: %r)" % last_exc if last_exc else ""))
        time.sleep(interval)


def free_listen_ports(n):
    """n distinct loopback ports below the kernel's ephemeral range that were
    free a moment ago, for daemons to listen on.  A port the kernel hands
    out for bind(port 0) comes from that range, so an outgoing connection
    (a node dialling its peers) can take one as its source port before the
    daemon binds it: seen in a full ASan run of the metrics suite, and in
    abuse-tls, where nodes 1 and 2 dialling node 3's peer port before it
    listened connected to themselves (a TCP self-connect: source port =
    destination port) and node 3 exited with EADDRINUSE.  Ports below the
    range are never handed out that way."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    socks, ports = [], []
    try:
        while len(ports) < n:
            port = random.randrange(10000, max(low, 10001))
            if port in ports:
                continue
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                s.close()
                continue
            socks.append(s)
            ports.append(port)
    finally:
        for s in socks:
            s.close()
    return ports


# ---------------------------------------------------------------------------
# client protocol


class ProtocolError(Exception):
    pass


def frame(msg_bytes):
    return struct.pack(">I", len(msg_bytes)) + msg_bytes


CTL_BIN = os.environ.get("RAFTKV_CTL") or os.path.join(ROOT, "build", "src", "ctl", "raftkvctl")


def make_certs(where, nodes=3):
    """A CA and node, proxy and admin certificates in where/tls, made the way
    an operator makes them ('raftkvctl config generate --tls')."""
    d = os.path.join(where, "tls")
    os.makedirs(where, exist_ok=True)
    r = subprocess.run([CTL_BIN, "config", "generate", "--nodes", str(nodes), "--tls-dir", d,
                        "-f", os.path.join(where, "generated.conf")],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=T(30))
    expect(r.returncode == 0, "config generate --tls failed: %s", r.stdout.decode(errors="replace"))
    for f in ["ca.crt", "ca.key", "proxy.crt", "admin.crt"] + \
            ["node-%d.%s" % (i, e) for i in range(1, nodes + 1) for e in ("crt", "key")]:
        expect(os.path.exists(os.path.join(d, f)), "config generate --tls wrote no %s", f)
    expect(os.stat(os.path.join(d, "node-1.key")).st_mode & 0o077 == 0, "node-1.key is readable by others")
    return d


def tls_context(ca, cert=None, key=None):
    """A TLS 1.3 client context that trusts ca and, with cert, shows it
    (raftkvctl --tls-ca/--tls-cert/--tls-key does the same).  Servers are
    checked against the CA only: a client reaches nodes and proxy alike."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.load_verify_locations(ca)
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return bytes(buf)


def wait_closed(sock, timeout):
    """Read and discard until the peer closes (EOF or reset); True if it did
    within timeout seconds, False if the connection is still open."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        sock.settimeout(min(left, 1.0))
        try:
            if not sock.recv(65536):
                return True
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return True


class Client:
    """One connection to a node's client port.  call() sends one request and
    waits for its response; send()/recv_for() pipeline several."""

    _next_id = 1

    def __init__(self, port, timeout=None, host="127.0.0.1", tls=None):
        """tls: an ssl.SSLContext (tls_context()) for a TLS client port."""
        self.port = port
        self.timeout = timeout if timeout is not None else T(10)
        self.sock = socket.create_connection((host, port), timeout=self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            try:
                self.sock = tls.wrap_socket(self.sock)
            except (OSError, ssl.SSLError):
                self.sock.close()
                raise
        self.stash = {}

    @classmethod
    def unix(cls, path, timeout=None):
        """The same over a unix socket (a node's admin socket, the proxy's)."""
        c = cls.__new__(cls)
        c.port = path
        c.timeout = timeout if timeout is not None else T(10)
        c.stash = {}
        c.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.sock.settimeout(c.timeout)
        try:
            c.sock.connect(path)
        except OSError:
            c.sock.close()
            raise
        return c

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    @classmethod
    def new_id(cls):
        cls._next_id += 1
        return cls._next_id

    def send(self, req):
        if not req.HasField("id"):
            req.id = Client.new_id()
        self.sock.sendall(frame(req.SerializeToString()))
        return req.id

    def recv(self):
        n = struct.unpack(">I", recv_exact(self.sock, 4))[0]
        body = recv_exact(self.sock, n)
        r = pb.Response()
        try:
            r.ParseFromString(body)
        except Exception as e:
            raise ProtocolError("response does not parse: %s" % e)
        return r

    def recv_for(self, rid):
        if rid in self.stash:
            return self.stash.pop(rid)
        while True:
            r = self.recv()
            if r.id == rid:
                return r
            self.stash[r.id] = r

    def call(self, req):
        return self.recv_for(self.send(req))


# request builders ----------------------------------------------------------


def req_get(key, stale=False, **kw):
    r = pb.Request(**kw)
    r.get.key = key
    if stale:
        r.get.consistency = STALE
    return r


def req_set(key, value, **kw):
    r = pb.Request(**kw)
    r.set.key = key
    r.set.value = value
    return r


def req_del(key, **kw):  # 'del' is a Python keyword: reach the field by name
    r = pb.Request(**kw)
    getattr(r, "del").key = key
    return r


def req_cas(key, value, expected=None, expect_absent=False, **kw):
    r = pb.Request(**kw)
    r.cas.key = key
    r.cas.value = value
    if expected is not None:
        r.cas.expected = expected
    if expect_absent:
        r.cas.expect_absent = True
    return r


def req_list(prefix=b"", limit=0, start_after=None, stale=False, **kw):
    r = pb.Request(**kw)
    r.list.prefix = prefix
    if limit:
        r.list.limit = limit
    if start_after is not None:
        r.list.start_after = start_after
    if stale:
        r.list.consistency = STALE
    return r


def req_status(**kw):
    r = pb.Request(**kw)
    r.status.SetInParent()
    return r


def req_transfer(target, **kw):
    r = pb.Request(**kw)
    r.transfer_leader.target_id = target
    return r


def answers_status(client):
    """True if client's server answers a STATUS request (the client is
    closed).  A completed connect is not enough to call a process up: the
    kernel completes it into the backlog of any listening socket, one
    inherited from systemd even before the process runs, and raftkv-node
    and raftkv-proxy listen before their SIGTERM handlers are in place.  An
    answer comes from the running event loop."""
    try:
        with client:
            return client.call(req_status()).status == OK
    except (OSError, EOFError, ProtocolError):
        return False


def new_client_id():
    return random.SystemRandom().getrandbits(62) | 1


# ---------------------------------------------------------------------------
# the cluster


def _fmt_ms(v):
    return "%d" % v


class Node:
    def __init__(self, cluster, nid, peer_port, client_port):
        self.cluster = cluster
        self.id = nid
        self.peer_port = peer_port
        self.client_port = client_port
        self.metrics_port = None
        self.admin = os.path.join(cluster.dir, "node-%d.sock" % nid)
        self.data_dir = os.path.join(cluster.dir, "data-%d" % nid)
        self.log_path = os.path.join(cluster.dir, "node-%d.log" % nid)
        self.proc = None
        self.paused = False
        self.starts = 0
        self.extra_args = []  # more raftkv-node flags for the next starts
        self.listen_fds = []  # [(name, listening socket)] passed as systemd would

    @property
    def client_address(self):
        return "127.0.0.1:%d" % self.client_port

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None


class Cluster:
    """N raftkv-node processes from one generated config file.  Use as a
    context manager: every process is killed on exit, and on an exception the
    tail of every node's log is printed."""

    DEFAULTS = {
        "tick_ms": 10,
        "heartbeat_interval_ms": 30,
        "election_timeout_ms": 300,
        "request_timeout_ms": 5000,
        "reconnect_min_ms": 10,
        "reconnect_max_ms": 200,
    }

    def __init__(self, n, name=None, log_level="info", cluster_id=None, metrics=False,
                 **cluster_opts):
        """metrics: give every node and the proxy a loopback /metrics
        address (node.metrics_port, cluster.proxy_metrics_port)."""
        self.n = n
        self.cluster_id = cluster_id  # [cluster] id; None: derived by the nodes
        self.dir = tempfile.mkdtemp(prefix="c%d-" % n, dir=_TOP_TMP)
        self.name = name or "test%d" % random.randrange(1 << 30)
        self.opts = dict(self.DEFAULTS)
        self.opts.update(cluster_opts)
        self.opts["log_level"] = log_level
        ports = free_listen_ports(2 * n + 1)
        self.nodes = {i: Node(self, i, ports[2 * (i - 1)], ports[2 * (i - 1) + 1])
                      for i in range(1, n + 1)}
        self.proxy_port = ports[-1]
        self.proxy_metrics_port = None
        if metrics:
            mports = free_listen_ports(n + 1)
            for i, nd in self.nodes.items():
                nd.metrics_port = mports[i - 1]
            self.proxy_metrics_port = mports[-1]
        self.config = os.path.join(self.dir, "raftkv.conf")
        self.tls_dir = None  # set_tls(): TLS everywhere, clients with the admin certificate
        self.client_tls = None  # ssl.SSLContext for the client ports, or None (plaintext)
        self.write_config()
        self.exit_codes = []  # (node, signal or 'exit', code) of every process that ended

    # -- config and processes ------------------------------------------------

    def write_config(self):
        lines = ["[cluster]", "name = %s" % self.name]
        if self.cluster_id:
            lines.append("id = %s" % self.cluster_id)
        for k, v in self.opts.items():
            lines.append("%s = %s" % (k, v))
        if self.tls_dir:
            lines.append("tls_ca = %s/ca.crt" % self.tls_dir)
        for i, nd in self.nodes.items():
            lines += ["", "[node.%d]" % i,
                      "peer = 127.0.0.1:%d" % nd.peer_port,
                      "client = 127.0.0.1:%d" % nd.client_port,
                      "admin = %s" % nd.admin,
                      "data_dir = %s" % nd.data_dir]
            if self.tls_dir:
                lines += ["tls_cert = %s/node-%d.crt" % (self.tls_dir, i),
                          "tls_key = %s/node-%d.key" % (self.tls_dir, i)]
            if nd.metrics_port:
                lines.append("metrics = 127.0.0.1:%d" % nd.metrics_port)
        lines += ["", "[proxy]", "listen = 127.0.0.1:%d" % self.proxy_port, "unix ="]
        if PROXY_THREADS:
            lines.append("threads = %s" % PROXY_THREADS)
        if self.tls_dir:
            lines += ["tls_cert = %s/proxy.crt" % self.tls_dir, "tls_key = %s/proxy.key" % self.tls_dir]
        if self.proxy_metrics_port:
            lines.append("metrics = 127.0.0.1:%d" % self.proxy_metrics_port)
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n")

    def set_tls(self, tls_dir):
        """TLS with the CA and the node-N and proxy certificates in tls_dir
        (as 'raftkvctl config generate --tls' writes them): mutual on peer
        links; this harness's clients show admin.crt."""
        self.tls_dir = tls_dir
        self.client_tls = tls_context(os.path.join(tls_dir, "ca.crt"), os.path.join(tls_dir, "admin.crt"),
                                      os.path.join(tls_dir, "admin.key"))
        self.write_config()

    def start(self, ids=None, wait=True):
        for i in ids or self.nodes:
            self.start_node(i, wait=wait)
        return self

    def start_node(self, i, wait=True):
        nd = self.nodes[i]
        assert not nd.running(), "node %d already running" % i
        self._reap_dead(i)
        nd.starts += 1
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "abort_on_error=0:detect_leaks=1")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        logf = open(nd.log_path, "ab")
        logf.write(("==== harness: start #%d of node %d at %.3f ====\n" %
                    (nd.starts, i, time.time())).encode())
        logf.flush()
        argv = [NODE_BIN, "--id", str(i), "--config", self.config] + nd.extra_args
        setup, keep = _child_setup, ()
        if nd.listen_fds:
            argv, setup, keep = _socket_activation(argv, env, nd.listen_fds)
        nd.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, env=env,
                                   preexec_fn=setup, close_fds=True, pass_fds=keep)
        logf.close()
        _PROCS[nd.proc.pid] = nd.proc
        nd.paused = False
        if wait:
            self.wait_serving(i)

    def start_and_lead(self):
        """Start every node and return the leader they agree on."""
        self.start()
        return self.wait_leader()

    def wait_serving(self, i, timeout=None):
        nd = self.nodes[i]

        def up():
            if not nd.running():
                raise AssertionError("node %d exited with %s during start-up" % (i, nd.proc.returncode))
            return answers_status(Client(nd.client_port, timeout=1, tls=self.client_tls))
        wait_until(up, timeout or T(20), "node %d to answer STATUS" % i)

    def _reap(self, i, how):
        nd = self.nodes[i]
        code = nd.proc.returncode
        self.exit_codes.append((i, how, code))
        _PROCS.pop(nd.proc.pid, None)
        return code

    def _reap_dead(self, i):
        """Record a process that ended without the harness asking: a crash."""
        nd = self.nodes[i]
        if nd.proc is not None and nd.proc.pid in _PROCS and nd.proc.poll() is not None:
            self._reap(i, "died")

    def kill(self, i, sig=signal.SIGKILL):
        """kill -9 (default) and wait for the process to be gone."""
        nd = self.nodes[i]
        if not nd.running():
            self._reap_dead(i)
            return nd.proc.returncode if nd.proc else None
        os.kill(nd.pid, sig)
        if nd.paused and sig != signal.SIGKILL:
            os.kill(nd.pid, signal.SIGCONT)
        nd.proc.wait(timeout=T(20))
        nd.paused = False
        return self._reap(i, signal.Signals(sig).name)

    def stop(self, i, timeout=None):
        """SIGTERM and wait for a clean exit; returns the exit code."""
        nd = self.nodes[i]
        assert nd.running(), "node %d not running" % i
        if nd.paused:
            self.resume(i)
        os.kill(nd.pid, signal.SIGTERM)
        try:
            nd.proc.wait(timeout=timeout or T(20))
        except subprocess.TimeoutExpired:
            os.kill(nd.pid, signal.SIGKILL)
            nd.proc.wait(timeout=T(10))
            self._reap(i, "SIGTERM-then-SIGKILL")
            raise AssertionError("node %d did not exit within %.0fs of SIGTERM" % (i, timeout or T(20)))
        return self._reap(i, "SIGTERM")

    def signal_nowait(self, i, sig):
        os.kill(self.nodes[i].pid, sig)

    def pause(self, i):
        os.kill(self.nodes[i].pid, signal.SIGSTOP)
        self.nodes[i].paused = True

    def resume(self, i):
        os.kill(self.nodes[i].pid, signal.SIGCONT)
        self.nodes[i].paused = False

    def restart(self, i, wait=True):
        if self.nodes[i].running():
            self.stop(i)
        self.start_node(i, wait=wait)

    def running_ids(self):
        return [i for i, nd in self.nodes.items() if nd.running() and not nd.paused]

    def close(self):
        for i, nd in self.nodes.items():
            self._reap_dead(i)
            if nd.running():
                try:
                    os.kill(nd.pid, signal.SIGCONT)
                    os.kill(nd.pid, signal.SIGKILL)
                    nd.proc.wait(timeout=10)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    pass
                _PROCS.pop(nd.pid, None)

    def __enter__(self):
        return self

    def __exit__(self, etype, e, tb):
        try:
            if etype is not None:
                self.print_logs()
        finally:
            self.close()
        if etype is None:
            self.check_clean()
        return False

    # -- logs --------------------------------------------------------------

    def log(self, i):
        try:
            with open(self.nodes[i].log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_size(self, i):
        try:
            return os.path.getsize(self.nodes[i].log_path)
        except FileNotFoundError:
            return 0

    def log_since(self, i, offset):
        return self.log(i).encode()[offset:].decode("utf-8", "replace")

    def log_has(self, i, pattern, since=0):
        return re.search(pattern, self.log_since(i, since))

    def wait_log(self, i, pattern, timeout=None, since=0):
        rx = re.compile(pattern)
        return wait_until(lambda: rx.search(self.log_since(i, since)), timeout or T(10),
                          "node %d to log /%s/" % (i, pattern))

    def print_logs(self, lines=40):
        for i in self.nodes:
            text = self.log(i).splitlines()
            print("---- node %d log (%s), last %d of %d lines ----" %
                  (i, self.nodes[i].log_path, min(lines, len(text)), len(text)))
            for ln in text[-lines:]:
                print("  " + ln)
        sys.stdout.flush()

    def check_clean(self):
        """No sanitizer report in any log and every SIGTERM stop exited 0."""
        bad = []
        ignore = os.environ.get("RAFTKV_SAN_IGNORE")
        for i in self.nodes:
            for m in re.finditer(r"(ERROR: (Address|Leak)Sanitizer.*|.*runtime error:.*)", self.log(i)):
                if not (ignore and re.search(ignore, m.group(0))):
                    bad.append("node %d: %s" % (i, m.group(0)))
        for i, how, code in self.exit_codes:
            if how == "SIGTERM" and code != 0:
                bad.append("node %d exited with %s after SIGTERM" % (i, code))
            if how == "died":
                bad.append("node %d died on its own (exit status %s)" % (i, code))
        if bad:
            self.print_logs()
            raise AssertionError("unclean run: " + "; ".join(bad[:10]))

    # -- talking to nodes -------------------------------------------------

    def client(self, i, timeout=None):
        return Client(self.nodes[i].client_port, timeout, tls=self.client_tls)

    def call(self, i, req, timeout=None):
        with self.client(i, timeout) as c:
            return c.call(req)

    def admin_call(self, i, req, timeout=None):
        """req on node i's admin socket, where this user (the nodes' own) is
        admin: TRANSFER_LEADER, MEMBER_CHANGE, METRICS."""
        with Client.unix(self.nodes[i].admin, timeout) as c:
            return c.call(req)

    def status(self, i, timeout=None):
        """NodeStatus of node i, or None if it does not answer."""
        try:
            r = self.call(i, req_status(), timeout or T(2))
        except (OSError, EOFError, ProtocolError):
            return None
        return r.status_info.node if r.status == OK else None

    def statuses(self, ids=None):
        return {i: self.status(i) for i in (ids or self.running_ids())}

    def agreed_leader(self, ids=None):
        """The leader id if exactly one node among ids (default: the running,
        unpaused ones) says it is leader and every one of them names it, in
        the same term; else None."""
        ids = ids or self.running_ids()
        st = self.statuses(ids)
        if any(s is None for s in st.values()):
            return None
        leaders = [i for i, s in st.items() if s.role == "leader"]
        if len(leaders) != 1:
            return None
        lead = leaders[0]
        term = st[lead].term
        if all(s.leader_id == lead and s.term == term for s in st.values()):
            return lead
        return None

    def wait_leader(self, ids=None, timeout=None, exclude=()):
        def cond():
            lead = self.agreed_leader(ids)
            return lead if lead and lead not in exclude else None
        return wait_until(cond, timeout or T(30),
                          "one leader agreed on by nodes %s%s" %
                          (ids or self.running_ids(), " other than %s" % list(exclude) if exclude else ""))

    def find_leader(self, ids=None):
        """A node that says it is leader (no agreement check), or None."""
        for i in ids or self.running_ids():
            s = self.status(i)
            if s is not None and s.role == "leader":
                return i
        return None

    def wait_applied(self, i, index, timeout=None):
        def cond():
            s = self.status(i)
            return s is not None and s.applied_index >= index
        wait_until(cond, timeout or T(30), "node %d to apply index %d" % (i, index))

    def wait_caught_up(self, ids=None, timeout=None):
        """Every node in ids has applied everything the leader has committed."""
        ids = ids or self.running_ids()
        lead = self.wait_leader(ids)
        target = self.status(lead).commit_index
        for i in ids:
            self.wait_applied(i, target, timeout)
        return target


class Session:
    """A write session: one client_id, sequence numbers 1, 2, 3... Each write
    is retried with the same (client_id, sequence) -- following NOT_LEADER
    hints, across UNAVAILABLE/TIMEOUT and dropped connections -- until it
    gets a definite answer or the deadline passes."""

    RETRY = (NOT_LEADER, UNAVAILABLE, TIMEOUT)

    def __init__(self, cluster, client_id=None):
        self.cluster = cluster
        self.client_id = client_id or new_client_id()
        self.seq = 0
        self.conns = {}
        self.target = None
        self.retries = []  # (seq, status name or exception) of every retried attempt

    def close(self):
        for c in self.conns.values():
            c.close()
        self.conns = {}

    def _conn(self, i):
        if i not in self.conns:
            self.conns[i] = self.cluster.client(i, timeout=T(10))
        return self.conns[i]

    def _drop(self, i):
        c = self.conns.pop(i, None)
        if c:
            c.close()

    def write(self, req, timeout=None, seq=None):
        """Send req (a SET/DEL/CAS Request) with the next sequence number (or
        the given one, to replay a retry) and return the first definite
        Response."""
        if seq is None:
            self.seq += 1
            seq = self.seq
        req.client_id = self.client_id
        req.sequence = seq
        deadline = time.monotonic() + (timeout or T(30))
        ids = list(self.cluster.nodes)
        k = 0
        while True:
            cand = self.target
            if cand is None or not self.cluster.nodes[cand].running() or self.cluster.nodes[cand].paused:
                live = self.cluster.running_ids() or ids
                cand = live[k % len(live)]
                k += 1
            req.ClearField("id")
            try:
                r = self._conn(cand).call(req)
            except (OSError, EOFError, ProtocolError) as e:
                self._drop(cand)
                self.target = None
                self.retries.append((seq, repr(e)))
                r = None
            if r is not None:
                if r.status not in self.RETRY:
                    self.target = cand
                    return r
                self.retries.append((seq, status_name(r.status)))
                self.target = r.leader_id if r.status == NOT_LEADER and r.leader_id else None
                if r.status == TIMEOUT:
                    self.target = None
            if time.monotonic() >= deadline:
                raise WaitTimeout("write seq %d not decided within %.0fs (last: %s)" %
                                  (seq, timeout or T(30), status_name(r.status) if r else "no answer"))
            if r is None or r.status != NOT_LEADER or not r.leader_id:
                time.sleep(0.02)

    def set(self, key, value, **kw):
        return self.write(req_set(key, value), **kw)

    def set_all(self, items, what="write"):
        """SET every (key, value) of items, each acknowledged OK; returns
        them as a dict."""
        items = dict(items)
        for k, v in items.items():
            r = self.set(k, v)
            if r.status != OK:
                raise AssertionError("%s %r: got %s (%r)" % (what, k, status_name(r.status), r.message))
        return items


def stale_get(cluster, i, key):
    return cluster.call(i, req_get(key, stale=True))


# ---------------------------------------------------------------------------
# scenario runner


def expect(cond, msg, *args):
    if not cond:
        raise AssertionError(msg % args if args else msg)


def expect_status(resp, want, what):
    wants = want if isinstance(want, (tuple, list, set)) else (want,)
    if resp.status not in wants:
        raise AssertionError("%s: got %s (%r), want %s" % (
            what, status_name(resp.status), resp.message, "/".join(status_name(w) for w in wants)))


def report(msg):
    print("   " + msg)
    sys.stdout.flush()


def run(scenarios, argv=None):
    """Run the scenario functions in order (or those whose name contains the
    -k argument), one line per scenario, exit 1 if any failed."""
    argv = sys.argv[1:] if argv is None else argv
    only = argv[argv.index("-k") + 1] if "-k" in argv else None
    print("raftkv cluster tests: node=%s%s, time scale %g, files in %s" %
          (NODE_BIN, " (sanitized)" if SANITIZED else "", SCALE, _TOP_TMP))
    if not os.access(NODE_BIN, os.X_OK):
        print("FAIL: %s is not an executable; build it or set RAFTKV_NODE" % NODE_BIN)
        return 1
    failed, passed = [], 0
    t_all = time.monotonic()
    try:
        for fn in scenarios:
            name = fn.__name__
            if only and only not in name:
                continue
            t0 = time.monotonic()
            try:
                fn()
            except Interrupted:
                print("INTERRUPTED %s after %.1fs" % (name, time.monotonic() - t0))
                raise
            except Exception as e:  # noqa: BLE001 - one scenario's failure must not stop the rest
                failed.append(name)
                print("FAIL %s (%.1fs): %s: %s" % (name, time.monotonic() - t0, type(e).__name__, e))
                traceback.print_exc(file=sys.stdout)
            else:
                passed += 1
                print("PASS %s (%.1fs)" % (name, time.monotonic() - t0))
            sys.stdout.flush()
            _kill_all()
    except Interrupted:
        _kill_all()
        return 1
    print("%d passed, %d failed in %.1fs%s" % (passed, len(failed), time.monotonic() - t_all,
                                              (": " + " ".join(failed)) if failed else ""))
    return 1 if failed else 0


def main(scenarios):
    sys.exit(run(scenarios))
