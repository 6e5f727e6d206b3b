#!/usr/bin/python3
"""nemesis.py - one seeded fault-injection run against a real cluster.

Owns the nemesis run of issue 8: a 3- or 5-node raftkv cluster plus
raftkv-proxy, each node in its own network namespace, >= 10 concurrent
clients on a small key set, faults on a schedule drawn from the seed, then a
heal, final reads, and the checks (per-key linearizability with checker.py,
final reads inside the checked history, CAS counters equal to the
acknowledged increments).

    /usr/bin/python3 tests/chaos/nemesis.py [--seed S] [--duration SECONDS]
        [--nodes 3|5] [--clients N] [--membership] [--keep]

Layout.  The run creates namespaces <prefix>-hub and <prefix>-n1..nN
(prefix "rkc<pid>", so two runs never collide).  The hub holds a bridge
with the address 10.A.B.254/24 (A.B from the pid: a subnet per run); node i
gets a veth pair from the bridge, 10.A.B.i, and listens on :7001 (peer) and
:7002 (client) there.  The proxy runs in the hub and dials the nodes over
the bridge; clients (threads of this script, in the root namespace) reach
the proxy through its unix socket and the nodes (STATUS, final reads)
through their admin unix sockets -- pathname unix sockets cross network
namespaces.  Nothing is added to the root namespace's network.

Faults (one at a time, schedule from the seed; leader targets are found
via STATUS at the moment the fault starts):
  kill         kill -9 (1 in 4: SIGTERM) of a node or of the leader; restarted
               after a pause
  pause        SIGSTOP of a node or of the leader for longer than the
               election timeout, then SIGCONT
  partition    majority/minority, isolated leader, or a "bridge" (two sides
               that only one node can reach); both directions cut by
               blackhole/prohibit/unreachable routes in the node namespaces;
               half of the time the proxy is cut from the minority too
  asym         one-way cuts: a node (often the leader) cannot send to the
               others (or they cannot send to it) while the reverse path
               works.  Over TCP a one-way IP cut also starves the reverse
               direction of ACKs, so this is "SYNs and data from one side
               still arrive", not a clean one-way channel.
  restart_all  every node killed (-9, or SIGTERM in 1 of 2) and started
               again, sometimes after longer than the proxy's queue wait
  member       (only with --membership) a follower is removed from the
               cluster (`member remove` on the leader's admin socket), killed,
               its data directory wiped, started again with --join and
               added back (`member add`: a learner, promoted by whichever
               node leads once it caught up, or after 15 s by `member
               promote`); the fault ends when it is a voter again, and a
               run fails if that takes longer than 30 s
Clock skew: raftkv-node has no clock hook, so there is none.

Outcomes recorded per op (see checker.py): ok, fail (a reply that
guarantees no effect: UNAVAILABLE / NOT_LEADER / INVALID_ARGUMENT /
TOO_LARGE from the proxy -- the proxy turns a write whose fate it does not
know into TIMEOUT), unknown (TIMEOUT, INTERNAL, no reply, connection lost
after sending).

Exit status: 0 PASS, 1 FAIL, 77 skipped (not root, no `ip`; a FAIL when
CI=true).  One line on stdout per run, plus details on failure; the history
of a failing run is kept (path printed), node logs next to it.
"""
import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
SKIP = 77


def _prereq_missing(why):
    if os.environ.get("CI") == "true":
        print("chaos FAIL: %s (CI=true: a missing prerequisite is a failure)" % why)
        sys.exit(1)
    print("chaos SKIP: %s" % why)
    sys.exit(SKIP)


if os.geteuid() != 0:
    _prereq_missing("needs root for network namespaces")
if not shutil.which("ip"):
    _prereq_missing("iproute2 'ip' not found")

sys.path.insert(0, os.path.join(TESTS, "cluster"))
sys.path.insert(0, os.path.join(TESTS, "proxy"))
sys.path.insert(0, HERE)

import harness  # noqa: E402
import pxharness  # noqa: E402
from checker import FAIL, OK, UNKNOWN, Op, check  # noqa: E402
from harness import T, pb, req_cas, req_del, req_get, req_set, req_status, wait_until  # noqa: E402

WRAPPER = os.path.join(HERE, "in-netns")
PEER_PORT, CLIENT_PORT, PROXY_PORT = 7001, 7002, 7000
REG_KEYS = ["r%d" % i for i in range(5)]
CTR_KEYS = ["ctr0", "ctr1"]
OUT_DIR = os.environ.get("CHAOS_DIR") or "/tmp/raftkv-chaos"


def ip(*args, check=True):
    r = subprocess.run(["ip"] + list(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30, text=True)
    if check and r.returncode != 0:
        raise RuntimeError("ip %s: %s" % (" ".join(args), r.stderr.strip()))
    return r


# ---------------------------------------------------------------------------
# network namespaces


class Net:
    """The run's namespaces, bridge, veths and route cuts."""

    def __init__(self, n):
        pid = os.getpid()
        self.prefix = "rkc%d" % pid
        self.subnet = "10.%d.%d" % (16 + (pid >> 8) % 224, pid & 255)
        self.n = n
        self.made = []
        self.cuts = set()  # (src, dst, kind): src cannot send to dst

    def ns(self, who):
        return "%s-%s" % (self.prefix, "hub" if who == "hub" else "n%d" % who)

    def addr(self, who):
        return "%s.%d" % (self.subnet, 254 if who == "hub" else who)

    def setup(self):
        hub = self.ns("hub")
        ip("netns", "add", hub)
        self.made.append(hub)
        ip("-n", hub, "link", "set", "lo", "up")
        ip("-n", hub, "link", "add", "br0", "type", "bridge")
        ip("-n", hub, "addr", "add", self.addr("hub") + "/24", "dev", "br0")
        ip("-n", hub, "link", "set", "br0", "up")
        for i in range(1, self.n + 1):
            ns = self.ns(i)
            ip("netns", "add", ns)
            self.made.append(ns)
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", hub, "link", "add", "v%d" % i, "type", "veth", "peer", "name", "eth0", "netns", ns)
            ip("-n", hub, "link", "set", "v%d" % i, "master", "br0", "up")
            ip("-n", ns, "addr", "add", self.addr(i) + "/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")

    def cut(self, src, dst, kind="blackhole"):
        ip("-n", self.ns(src), "route", "replace", kind, self.addr(dst) + "/32")
        self.cuts.add((src, dst, kind))

    def heal(self):
        for src, dst, kind in sorted(self.cuts, key=str):
            ip("-n", self.ns(src), "route", "del", kind, self.addr(dst) + "/32", check=False)
        self.cuts.clear()

    def teardown(self):
        for ns in reversed(self.made):
            ip("netns", "del", ns, check=False)
        self.made = []

    @staticmethod
    def reap_stale():
        """Delete namespaces a killed earlier run (rkc<pid>-*, pid gone)
        could not delete itself."""
        gone = []
        for ln in ip("netns", "list", check=False).stdout.splitlines():
            name = ln.split()[0] if ln.split() else ""
            m = re.match(r"rkc(\d+)-(hub|n\d+)$", name)
            if not m:
                continue
            try:
                os.kill(int(m.group(1)), 0)
            except ProcessLookupError:
                ip("netns", "del", name, check=False)
                gone.append(name)
        return gone

    def leftovers(self):
        out = ip("netns", "list", check=False).stdout
        return [ln.split()[0] for ln in out.splitlines() if ln.startswith(self.prefix + "-")]


# ---------------------------------------------------------------------------
# the cluster: harness.Cluster with addresses in the namespaces


class NsCluster(harness.Cluster):
    def __init__(self, n, net, **opts):
        self.net = net
        super().__init__(n, **opts)

    def write_config(self):
        # Plaintext on the namespaces' 10.x addresses, which the nodes serve
        # only when told there is nothing to authenticate: this suite is
        # about Raft under faults, tests/security about who may talk.
        lines = ["[cluster]", "name = %s" % self.name, "insecure = true"]
        lines += ["%s = %s" % kv for kv in self.opts.items()]
        for i, nd in self.nodes.items():
            lines += ["", "[node.%d]" % i,
                      "peer = %s:%d" % (self.net.addr(i), PEER_PORT),
                      "client = %s:%d" % (self.net.addr(i), CLIENT_PORT),
                      "admin = %s" % nd.admin,
                      "data_dir = %s" % nd.data_dir]
        self.proxy_sock = os.path.join(self.dir, "proxy.sock")
        lines += ["", "[proxy]", "listen = %s:%d" % (self.net.addr("hub"), PROXY_PORT),
                  "unix = %s" % self.proxy_sock]
        if harness.PROXY_THREADS:
            lines.append("threads = %s" % harness.PROXY_THREADS)
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n")

    def client(self, i, timeout=None):
        return harness.Client.unix(self.nodes[i].admin, timeout or T(10))

    def wait_serving(self, i, timeout=None):
        nd = self.nodes[i]

        def up():
            if not nd.running():
                raise AssertionError("node %d exited with %s during start-up" % (i, nd.proc.returncode))
            return harness.answers_status(self.client(i, 1))
        wait_until(up, timeout or T(20), "node %d to answer STATUS on its admin socket" % i)


# ---------------------------------------------------------------------------
# clients


class Recorder:
    def __init__(self):
        self.lock = threading.Lock()
        self.ops = []
        self.t0 = time.monotonic()

    def now(self):
        return time.monotonic() - self.t0

    def add(self, op):
        with self.lock:
            op.id = len(self.ops)
            self.ops.append(op)


WRITE_FAIL = (harness.UNAVAILABLE, harness.NOT_LEADER, harness.INVALID_ARGUMENT, harness.TOO_LARGE)


def _val(b):
    return b.decode("latin-1")


def do_op(conn_box, path, rec, cid, kind, key, value=None, expected=None, timeout_ms=0):
    """Run one op through conn_box[0] (a harness.Client.unix on `path`, opened if
    needed) and record it.  Returns (the recorded Op, the Response or
    None)."""
    k = key.encode()
    if kind == "get":
        req = req_get(k)
    elif kind == "set":
        req = req_set(k, value.encode())
    elif kind == "del":
        req = req_del(k)
    elif expected is None:
        req = req_cas(k, value.encode(), expect_absent=True)
    else:
        req = req_cas(k, value.encode(), expected=expected.encode())
    if timeout_ms:
        req.timeout_ms = timeout_ms
    op = Op(kind, key, rec.now(), None, value=value, expected=expected, client=cid)
    try:
        if conn_box[0] is None:
            conn_box[0] = harness.Client.unix(path, T(15))
    except OSError:
        op.ret, op.outcome = rec.now(), FAIL  # never sent
        rec.add(op)
        return op, None
    try:
        r = conn_box[0].call(req)
    except (OSError, EOFError, harness.ProtocolError):
        conn_box[0].close()
        conn_box[0] = None
        op.ret, op.outcome = rec.now(), UNKNOWN
        rec.add(op)
        return op, None
    op.ret = rec.now()
    st = r.status
    if st not in (harness.OK, harness.NOT_FOUND, harness.CAS_FAILED):
        op.note = "%s: %s" % (harness.status_name(st), r.message)
    if kind == "get":
        if st == harness.OK:
            op.out = _val(r.get.value)
        elif st == harness.NOT_FOUND:
            op.out = None
        else:
            op.outcome = FAIL if st in WRITE_FAIL + (harness.TIMEOUT,) else UNKNOWN
    elif st == harness.OK:
        op.applied = True
    elif kind == "cas" and st == harness.CAS_FAILED:
        op.applied = False
        op.out = None if r.cas.current_absent else _val(r.cas.current)
    elif kind == "del" and st == harness.NOT_FOUND:
        op.applied = False
    elif st in WRITE_FAIL:
        op.outcome = FAIL
    else:
        op.outcome = UNKNOWN
    rec.add(op)
    return op, r


def client_loop(cid, seed, c, rec, stop):
    """One client: 3 in 4 go through the proxy; the others talk to the
    nodes' admin sockets directly (no session, following NOT_LEADER hints),
    so the nodes' own replies are checked too.  A third of the requests
    carry a short timeout_ms, so TIMEOUT (unknown) outcomes happen."""
    rng = random.Random("%s/client/%d" % (seed, cid))
    direct = cid % 4 == 3
    node = rng.choice(list(c.nodes))
    box = [None]
    known = {}  # key -> last value this client saw
    n = 0

    def op(kind, key, **kw):
        nonlocal node
        tmo = rng.randint(150, 1500) if rng.random() < 0.33 else 0
        path = c.nodes[node].admin if direct else c.proxy_sock
        o, r = do_op(box, path, rec, cid, kind, key, timeout_ms=tmo, **kw)
        if direct and o.outcome != OK:
            if box[0]:
                box[0].close()
                box[0] = None
            if r is not None and r.status == harness.NOT_LEADER and r.leader_id in c.nodes:
                node = r.leader_id
            else:
                node = rng.choice(list(c.nodes))
        if o.outcome != OK:
            time.sleep(0.02)  # do not spin on a cluster without leader
        return o

    try:
        while not stop.is_set():
            n += 1
            if rng.random() < 0.2:  # CAS increment of a counter
                key = rng.choice(CTR_KEYS)
                g = op("get", key)
                if g.outcome == OK:
                    cur = int(g.out) if g.out is not None else 0
                    op("cas", key, value=str(cur + 1), expected=g.out)
                continue
            key = rng.choice(REG_KEYS)
            r = rng.random()
            if r < 0.45:
                o = op("get", key)
                if o.outcome == OK:
                    known[key] = o.out
            elif r < 0.7:
                o = op("set", key, value="c%d.%d" % (cid, n))
                if o.outcome == OK:
                    known[key] = o.value
            elif r < 0.95:
                o = op("cas", key, value="c%d.%d" % (cid, n), expected=known.get(key))
                if o.outcome == OK:
                    known[key] = o.value if o.applied else o.out
            else:
                o = op("del", key)
                if o.outcome == OK:
                    known[key] = None
    finally:
        if box[0]:
            box[0].close()


# ---------------------------------------------------------------------------
# the fault schedule


KINDS = ["kill", "kill_leader", "pause", "pause_leader", "partition", "isolate_leader", "bridge",
         "asym", "restart_all"]
COUNTED = {"kill": "kill", "kill_leader": "kill", "pause": "pause", "pause_leader": "pause",
           "partition": "partition", "isolate_leader": "partition", "bridge": "partition",
           "asym": "asym", "restart_all": "restart_all", "member": "member"}
FAULT_COUNTS = ("kill", "pause", "partition", "asym", "restart_all", "member")


def schedule(seed, n, duration, membership=False):
    """[(start second, kind, params)] -- a pure function of (seed, n,
    duration, membership): every kind once in a seeded order, then random
    extras (restart_all at most twice).  Without membership the schedule of
    a seed is what it was before the member kind existed."""
    rng = random.Random("%s/schedule" % seed)
    kinds = KINDS + ["member"] if membership else KINDS
    deck = list(kinds)
    rng.shuffle(deck)
    out, t, restarts = [], 1.0 + rng.random(), 0
    while True:
        kind = deck.pop(0) if deck else rng.choice(kinds)
        if kind == "restart_all":
            if restarts >= 2:
                continue
            restarts += 1
        p = {"node": rng.randint(1, n), "route": rng.choice(["blackhole", "prohibit", "unreachable"]),
             "proxy_cut": rng.random() < 0.5, "term": rng.random() < 0.25}
        if kind in ("kill", "kill_leader"):
            p["down"] = rng.uniform(0.2, 3.0)
        elif kind in ("pause", "pause_leader"):
            p["down"] = rng.uniform(0.6, 3.0)
        elif kind == "restart_all":
            p["down"] = rng.choice([rng.uniform(0.1, 1.5), rng.uniform(3.5, 5.0)])
            p["term"] = rng.random() < 0.5
        elif kind == "member":
            p["down"] = rng.uniform(3.0, 6.0)  # at least; it ends once the node votes again
        else:
            p["down"] = rng.uniform(1.5, 5.0)
        if kind == "partition":
            ids = list(range(1, n + 1))
            rng.shuffle(ids)
            p["minority"] = sorted(ids[:(n - 1) // 2 if n == 5 and rng.random() < 0.5 else 1])
        if kind == "bridge":
            ids = list(range(1, n + 1))
            rng.shuffle(ids)
            p["bridge"] = ids[0]
            half = (n - 1) // 2
            p["sides"] = (sorted(ids[1:1 + half]), sorted(ids[1 + half:]))
        if kind == "asym":
            p["leader"] = rng.random() < 0.6
            p["outbound"] = rng.random() < 0.5
        if t + p["down"] > duration - 1.0:
            break
        out.append((round(t, 3), kind, p))
        t += p["down"] + rng.uniform(0.5, 2.0)
    return out


class Nemesis:
    def __init__(self, c, net, rec):
        self.c, self.net, self.rec = c, net, rec
        self.counts = {k: 0 for k in FAULT_COUNTS}
        self.log = []
        self.term_windows = []  # (from, to): nodes being stopped with SIGTERM

    def note(self, what, **kw):
        e = {"t": round(self.rec.now(), 3), "fault": what} | kw
        self.log.append(e)

    def leader(self):
        return self.c.find_leader()

    def target(self, p, want_leader):
        lead = self.leader() if want_leader else None
        return lead or p["node"]

    def partition(self, sides, p):
        """Cut every pair across the sides (both directions); the proxy
        stays with sides[0] (cut from the rest) if p['proxy_cut']."""
        for a_side, b_side in ((sides[0], sides[1]), (sides[1], sides[0])):
            for a in a_side:
                for b in b_side:
                    self.net.cut(a, b, p["route"])
        if p["proxy_cut"]:
            for b in sides[1]:
                self.net.cut("hub", b, p["route"])
                self.net.cut(b, "hub", p["route"])

    def apply(self, kind, p, until):
        """Inject one fault, hold it until `until` (rec time), heal it."""
        n = self.c.n
        all_ids = list(range(1, n + 1))
        self.counts[COUNTED[kind]] += 1
        if kind in ("kill", "kill_leader"):
            i = self.target(p, kind == "kill_leader")
            sig = signal.SIGTERM if p["term"] else signal.SIGKILL
            self.note(kind, node=i, sig=sig.name)
            self.stop_nodes([i], sig)
            self.hold(until)
            self.c.start_node(i)
        elif kind in ("pause", "pause_leader"):
            i = self.target(p, kind == "pause_leader")
            self.note(kind, node=i)
            self.c.pause(i)
            self.hold(until)
            self.c.resume(i)
        elif kind == "member":
            self.rejoin_wiped(p)
            self.hold(until)
        elif kind == "restart_all":
            sig = signal.SIGTERM if p["term"] else signal.SIGKILL
            self.note(kind, sig=sig.name)
            self.stop_nodes(all_ids, sig)
            self.hold(until)
            for i in all_ids:
                self.c.start_node(i, wait=False)
            for i in all_ids:
                self.c.wait_serving(i)
        else:
            if kind == "partition":
                minority = p["minority"]
                sides = ([i for i in all_ids if i not in minority], minority)
                self.note(kind, minority=minority, route=p["route"], proxy_cut=p["proxy_cut"])
                self.partition(sides, p)
            elif kind == "isolate_leader":
                lead = self.target(p, True)
                sides = ([i for i in all_ids if i != lead], [lead])
                self.note(kind, node=lead, route=p["route"], proxy_cut=p["proxy_cut"])
                self.partition(sides, p)
            elif kind == "bridge":
                a, b = p["sides"]
                self.note(kind, bridge=p["bridge"], sides=[a, b], route=p["route"])
                for x in a:
                    for y in b:
                        self.net.cut(x, y, p["route"])
                        self.net.cut(y, x, p["route"])
            elif kind == "asym":
                i = self.target(p, p["leader"])
                others = [j for j in all_ids if j != i]
                self.note(kind, node=i, outbound=p["outbound"], route=p["route"])
                for j in others:
                    if p["outbound"]:
                        self.net.cut(i, j, p["route"])
                    else:
                        self.net.cut(j, i, p["route"])
            self.hold(until)
            self.net.heal()
        self.note("healed " + kind)

    # -- membership -----------------------------------------------------

    def members(self, i=None):
        """{id: voter?} as node i (default: the leader) reports it, or None."""
        i = i or self.leader()
        st = self.c.status(i) if i else None
        return {m.id: m.voter for m in st.members} if st is not None else None

    def member_change(self, op, i, done, seconds, grace=0.0):
        """Send one membership change to the leader's admin socket until
        done(members) holds: a lost answer, a leader change, or another
        change still in flight (FAILED_PRECONDITION) only mean "again".
        Nothing is sent during the first `grace` seconds (the leader may do
        it itself)."""
        start = time.monotonic()
        deadline = start + T(seconds)
        answers = []
        while True:
            ms = self.members()
            if ms is not None and done(ms):
                return answers
            if time.monotonic() > deadline:
                raise AssertionError("member %s %d not done within %.0fs (members %s, answers %s)" %
                                     (pb.MemberOp.Name(op), i, T(seconds), ms, answers[-3:]))
            lead = self.leader()
            if lead and ms is not None and time.monotonic() - start >= grace:
                r = pb.Request()
                r.member_change.op = op
                r.member_change.id = i
                try:
                    with harness.Client.unix(self.c.nodes[lead].admin, T(5)) as cl:
                        a = cl.call(r)
                    answers.append(harness.status_name(a.status))
                except (OSError, EOFError, harness.ProtocolError) as e:
                    answers.append(type(e).__name__)
            time.sleep(0.1)

    def rejoin_wiped(self, p):
        """A follower removed, wiped and added back: the operator's "replace
        a dead disk" by hand, with clients still talking to it."""
        lead = self.leader()
        i = p["node"] if p["node"] != lead else p["node"] % self.c.n + 1
        nd = self.c.nodes[i]
        self.note("member", node=i, step="remove")
        self.member_change(pb.MEMBER_REMOVE, i, lambda ms: i not in ms, 20)
        # A leader lists a change once it is in its log; wipe the node only
        # once every other member has it, i.e. once it is committed.
        others = [j for j in self.c.running_ids() if j != i]
        wait_until(lambda: all(i not in (self.members(j) or {i: 0}) for j in others), T(20),
                   "every member to have node %d's removal" % i, interval=0.05)
        self.c.kill(i, signal.SIGKILL)
        shutil.rmtree(nd.data_dir, ignore_errors=True)
        # From now on it must never found a cluster of its own.
        nd.extra_args = ["--join"]
        self.c.start_node(i)
        self.note("member", node=i, step="add")
        self.member_change(pb.MEMBER_ADD, i, lambda ms: i in ms, 20)
        # Whichever node leads promotes it once it has caught up, after a
        # leader change too: the wish is in the replicated state
        # (api_member.c).  Faults can keep it from catching up for a while
        # (no quorum, a cut link), so after a grace period the nemesis sends
        # `member promote` itself, which is recorded as such.
        t0 = time.monotonic()
        sent = self.member_change(pb.MEMBER_PROMOTE, i, lambda ms: ms.get(i), 30, grace=T(15))
        self.note("member", node=i, step="voter", after_s=round(time.monotonic() - t0, 3),
                  by="member promote" if sent else "the leader")

    def stop_nodes(self, ids, sig):
        t0 = self.rec.now()
        for i in ids:
            self.c.kill(i, sig)
        if sig == signal.SIGTERM:
            self.term_windows.append((t0, self.rec.now()))

    def hold(self, until):
        # The fault's length is part of the seed's schedule; nothing to poll.
        left = until - self.rec.now()
        if left > 0:
            time.sleep(left)

    def heal_all(self):
        self.net.heal()
        for i, nd in self.c.nodes.items():
            if nd.paused:
                self.c.resume(i)
            if not nd.running():
                self.c.start_node(i)


# ---------------------------------------------------------------------------
# one run


def proxy_leader(path):
    with harness.Client.unix(path, T(2)) as cl:
        return cl.call(req_status()).status_info.proxy.leader_id


def final_reads(c, rec, deadline_s):
    """Read every key through the proxy and through each node's admin socket
    until each read succeeds; these reads are part of the checked history."""
    deadline = time.monotonic() + deadline_s
    targets = [("proxy", c.proxy_sock)] + [("node%d" % i, c.nodes[i].admin) for i in c.nodes]
    finals = {}
    for who, path in targets:
        box = [None]
        for key in REG_KEYS + CTR_KEYS:
            while True:
                op, _ = do_op(box, path, rec, -1, "get", key)
                if op.outcome == OK:
                    finals.setdefault(key, {})[who] = op.out
                    break
                if time.monotonic() > deadline:
                    raise AssertionError("final read of %s via %s did not succeed within %.0fs" %
                                         (key, who, deadline_s))
                time.sleep(0.05)
        if box[0]:
            box[0].close()
    return finals


def counter_check(ops, finals):
    bad = []
    for key in CTR_KEYS:
        acked = sum(1 for o in ops if o.key == key and o.kind == "cas" and o.outcome == OK and o.applied)
        unknown = sum(1 for o in ops if o.key == key and o.kind == "cas" and o.outcome == UNKNOWN)
        for who, v in finals[key].items():
            got = int(v) if v is not None else 0
            if not acked <= got <= acked + unknown:
                bad.append("counter %s via %s = %d, acknowledged increments %d (+%d unknown)" %
                           (key, who, got, acked, unknown))
    return bad


def run(args):
    seed = args.seed
    rng = random.Random("%s/setup" % seed)
    n = args.nodes or rng.choice([3, 5])
    sched = schedule(seed, n, args.duration, args.membership)
    net = Net(n)
    os.environ.update(CHAOS_NS=net.prefix, CHAOS_NODE_BIN=os.path.abspath(harness.NODE_BIN),
                      CHAOS_PROXY_BIN=os.path.abspath(pxharness.PROXY_BIN))
    harness.NODE_BIN = WRAPPER
    pxharness.PROXY_BIN = WRAPPER
    os.makedirs(OUT_DIR, exist_ok=True)
    hist_path = os.path.join(OUT_DIR, "chaos-seed%s-%s.jsonl" % (seed, net.prefix))
    rec = Recorder()
    stop = threading.Event()
    threads = []
    c = px = nem = None
    reason = None
    started = time.monotonic()
    try:
        stale = Net.reap_stale()
        if stale and args.verbose:
            print("removed namespaces of dead runs: %s" % " ".join(stale))
        net.setup()
        c = NsCluster(n, net, name="chaos%s" % seed)
        c.start()
        c.wait_leader()
        px = pxharness.Proxy(c)
        px.start(wait=False)
        wait_until(lambda: proxy_leader(c.proxy_sock), T(20), "the proxy to know a leader")
        nem = Nemesis(c, net, rec)
        rec.t0 = time.monotonic()
        for cid in range(args.clients):
            t = threading.Thread(target=client_loop, args=(cid, seed, c, rec, stop), daemon=True)
            t.start()
            threads.append(t)
        for at, kind, p in sched:
            nem.hold(at)
            nem.apply(kind, p, at + p["down"])
        nem.hold(args.duration)
        nem.note("heal all")
        nem.heal_all()
        stop.set()
        for t in threads:
            t.join(T(30))
        if any(t.is_alive() for t in threads):
            raise AssertionError("a client thread did not stop")
        c.wait_leader(timeout=T(30))
        finals = final_reads(c, rec, T(60))
        ops = list(rec.ops)
        verdict, results = check(ops, budget=args.budget)
        problems = [r.explain() for r in results if r.verdict is not True]
        problems += counter_check(ops, finals)
        if verdict is None and not problems:
            problems.append("checker inconclusive")
        if problems:
            reason = problems[0].splitlines()[0]
            print("\n".join(problems))
        code = px.stop()
        if code != 0:
            raise AssertionError("the proxy exited %s on SIGTERM" % code)
        px.check_clean()
        c.check_clean()
    except harness.Interrupted:
        reason = "interrupted"
        raise
    except Exception as e:  # noqa: BLE001 - any failure is this run's result
        reason = "%s: %s" % (type(e).__name__, str(e).splitlines()[0] if str(e) else "")
        traceback.print_exc(file=sys.stdout)
        if c:
            c.print_logs(20)
    finally:
        stop.set()
        if px and px.running():
            px.kill()
        if c:
            c.close()
        net.teardown()
        ops = list(rec.ops)
        with open(hist_path, "w") as f:
            f.write(json.dumps({"run": {"seed": seed, "nodes": n, "duration": args.duration,
                                        "schedule": sched,
                                        "sigterm_windows": nem.term_windows if nem else []}}) + "\n")
            for e in (nem.log if nem else []):
                f.write(json.dumps(e) + "\n")
            for o in ops:
                f.write(json.dumps({"op": o.to_json()}) + "\n")
        if reason and c:
            logs = hist_path[:-len(".jsonl")] + "-logs"
            shutil.copytree(c.dir, logs, ignore=shutil.ignore_patterns("data-*", "*.sock"),
                            dirs_exist_ok=True)
        left = net.leftovers()
        alive = [pid for pid in harness._PROCS if harness._PROCS[pid].poll() is None]
        if left or alive:
            reason = reason or "left behind: namespaces %s, processes %s" % (left, alive)
        counts = nem.counts if nem else {k: 0 for k in FAULT_COUNTS}
        n_ok = sum(1 for o in ops if o.outcome == OK)
        n_fail = sum(1 for o in ops if o.outcome == FAIL)
        n_unk = len(ops) - n_ok - n_fail
        print("chaos seed=%s nodes=%d duration=%ds ops=%d (ok %d, fail %d, unknown %d) faults: %s result=%s%s" %
              (seed, n, args.duration, len(ops), n_ok, n_fail, n_unk,
               " ".join("%s=%d" % kv for kv in counts.items()),
               "FAIL " + reason if reason else "PASS",
               " history=%s" % hist_path if reason or args.keep else ""), flush=True)
        if not reason and not args.keep:
            os.unlink(hist_path)
        took = time.monotonic() - started
        if args.verbose:
            print("  (run took %.1fs)" % took)
    return 1 if reason else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", default=None, help="schedule seed (default: random)")
    ap.add_argument("--duration", type=int, default=60, help="seconds of load and faults")
    ap.add_argument("--nodes", type=int, choices=(3, 5), default=None, help="default: from the seed")
    ap.add_argument("--clients", type=int, default=12)
    ap.add_argument("--budget", type=int, default=5_000_000, help="checker search steps per key")
    ap.add_argument("--membership", action="store_true",
                    help="add membership changes (remove, wipe, rejoin a follower) to the faults")
    ap.add_argument("--keep", action="store_true", help="keep the history of a passing run too")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    if args.seed is None:
        args.seed = str(random.SystemRandom().randrange(1, 1 << 31))
    if not os.access(harness.NODE_BIN, os.X_OK) or not os.access(pxharness.PROXY_BIN, os.X_OK):
        print("chaos FAIL: build raftkv-node and raftkv-proxy first (or set RAFTKV_NODE/RAFTKV_PROXY)")
        return 1
    try:
        return run(args)
    except harness.Interrupted:
        return 1


if __name__ == "__main__":
    sys.exit(main())
