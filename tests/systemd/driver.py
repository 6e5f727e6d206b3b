#!/usr/bin/python3
"""driver.py - the raftkv .deb under a real systemd (issue 7), driven by run.sh.

Builds the package (scripts/build-deb.sh), installs it in a Debian bookworm
container booted with systemd-nspawn (systemd as PID 1, own network
namespace), then checks the units, sd_notify STATUS=, journald fields,
restart on a crash, leadership hand-off on stop, a reboot, and the package's
upgrade/remove/purge.  One line per step: `systemd <step>: PASS|FAIL detail`,
then `systemd: N passed, M failed`.  Every command and wait has a deadline;
the container is powered off (then killed by PID) whatever happens.

Environment: RAFTKV_ROOTFS_CACHE (default /var/cache/raftkv-test) holds the
debootstrap tarball; RAFTKV_SYSTEMD_KEEP=1 keeps the temp dir.
"""
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "cluster"))

import harness  # noqa: E402  (protobuf modules, Client, signal -> Interrupted)
from harness import Client, req_get, req_set, Interrupted  # noqa: E402

CACHE = os.environ.get("RAFTKV_ROOTFS_CACHE") or "/var/cache/raftkv-test"
MIRROR = os.environ.get("RAFTKV_MIRROR") or "http://deb.debian.org/debian"
# systemd + what raftkv's binaries link to (so dpkg -i needs no network) +
# man-db for `man -w`.
PACKAGES = ["systemd", "systemd-sysv", "dbus", "libsystemd0", "libev4", "libprotobuf-c1", "libssl3",
            "libmicrohttpd12", "procps",
            "libreadline8", "man-db"]
NODES = (1, 2, 3)
SERVICES = ["raftkv-node@%d.service" % i for i in NODES] + ["raftkv-proxy.service"]

results = []
step_started = [time.monotonic()]


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def report(step, ok, detail):
    results.append(ok)
    print("systemd %s: %s %s [%.0f s]" % (step, "PASS" if ok else "FAIL", detail,
                                          time.monotonic() - step_started[0]), flush=True)


class Deadline:
    def __init__(self, seconds):
        self.end = time.monotonic() + seconds

    def left(self, cap=None):
        left = self.end - time.monotonic()
        if left <= 0:
            raise Fail("step deadline passed")
        return min(left, cap) if cap else left


def wait_for(cond, dl, what, cap=None, interval=0.2):
    """Poll cond() until truthy, within min(cap, what is left of dl)."""
    end = time.monotonic() + dl.left(cap)
    last = None
    while True:
        try:
            v = cond()
            if v:
                return v
        except (OSError, Fail, subprocess.SubprocessError, ValueError) as e:
            last = e
        if time.monotonic() >= end:
            raise Fail("timed out waiting for %s%s" % (what, " (last: %s)" % last if last else ""))
        time.sleep(interval)


def holds(cond, seconds, dl, interval=0.2):
    """Check cond() for `seconds`: None if it held throughout, else the
    first value that was not truthy (for "it stays stopped")."""
    end = time.monotonic() + dl.left(seconds)
    while True:
        v = cond()
        if not v:
            return v if v is not None else False
        if time.monotonic() >= end:
            return None
        time.sleep(interval)


def host(cmd, dl, cap=None, env=None, check_rc=True):
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=dl.left(cap), env=env, text=True)
    if check_rc and p.returncode != 0:
        raise Fail("%s: exit %d: %s" % (" ".join(cmd), p.returncode, p.stdout.strip()[-600:]))
    return p


# ---------------------------------------------------------------------------
# the container


class Container:
    """A systemd-nspawn --boot of `root`; commands go in with nsenter."""

    def __init__(self, root, logdir):
        self.root = root
        self.logdir = logdir
        self.proc = None
        self.pid1 = None
        self.boots = 0

    def _find_pid1(self):
        # The container's init is the descendant of nspawn whose PID in its
        # own namespace is 1.
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open("/proc/%s/status" % d) as f:
                    st = f.read()
            except OSError:
                continue
            nspid = [l.split()[1:] for l in st.splitlines() if l.startswith("NSpid:")]
            if not nspid or len(nspid[0]) < 2 or nspid[0][-1] != "1":
                continue
            pid = int(d)
            p = pid
            for _ in range(8):  # walk up to nspawn
                try:
                    with open("/proc/%d/stat" % p) as f:
                        p = int(f.read().rsplit(")", 1)[1].split()[1])
                except OSError:
                    break
                if p == self.proc.pid:
                    return pid
                if p <= 1:
                    break
        return None

    def boot(self, dl):
        self.boots += 1
        log = open(os.path.join(self.logdir, "nspawn-%d.log" % self.boots), "wb")
        self.proc = subprocess.Popen(
            ["systemd-nspawn", "--register=no", "--keep-unit", "--private-network", "--quiet",
             "--console=read-only", "-D", self.root, "--boot"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, preexec_fn=harness._child_setup)
        log.close()
        harness._PROCS[self.proc.pid] = self.proc  # killed by PID at exit, whatever happens

        def pid1():
            if self.proc.poll() is not None:
                raise Fail("systemd-nspawn exited with %d" % self.proc.returncode)
            return self._find_pid1()
        self.pid1 = wait_for(pid1, dl, "the container's PID 1", cap=30, interval=0.05)
        def settled():
            # "offline" until PID 1 has its control socket; --wait only
            # covers "initializing"/"starting".
            st = self.run(["systemctl", "is-system-running", "--wait"], dl, cap=60,
                          check_rc=False).stdout.strip()
            return st if st in ("running", "degraded", "maintenance") else None
        return wait_for(settled, dl, "systemctl is-system-running", cap=60)

    def run(self, cmd, dl, cap=None, check_rc=True):
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C", "SYSTEMD_PAGER": "",
               "DEBIAN_FRONTEND": "noninteractive", "HOME": "/root", "TERM": "dumb"}
        full = ["nsenter", "-t", str(self.pid1), "-a", "--"] + cmd
        p = subprocess.run(full, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE,
                           timeout=dl.left(cap), env=env, text=True)
        if check_rc and p.returncode != 0:
            raise Fail("%s: exit %d: %s" % (" ".join(cmd), p.returncode,
                                            (p.stdout + p.stderr).strip()[-600:]))
        return p

    def out(self, cmd, dl, cap=None):
        return self.run(cmd, dl, cap).stdout.strip()

    def path(self, p):
        """A path inside the running container, reachable from the host."""
        return "/proc/%d/root%s" % (self.pid1, p)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def poweroff(self, seconds=120):
        """systemctl poweroff, wait for nspawn to exit; after the deadline
        kill nspawn and the container's init by PID.  True if clean."""
        if not self.running():
            return True
        dl = Deadline(seconds)
        try:
            self.run(["systemctl", "poweroff"], dl, cap=20, check_rc=False)
        except (Fail, subprocess.SubprocessError, OSError):
            pass
        try:
            self.proc.wait(timeout=max(1, dl.end - time.monotonic()))
            harness._PROCS.pop(self.proc.pid, None)
            return self.proc.returncode == 0
        except subprocess.TimeoutExpired:
            pass
        for pid in (self.pid1, self.proc.pid):
            try:
                if pid:
                    os.kill(pid, 9)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        harness._PROCS.pop(self.proc.pid, None)
        return False


# ---------------------------------------------------------------------------
# raftkv inside the container


def ctl(ct, dl, *args, endpoint="unix:/run/raftkv/proxy.sock", check_rc=True):
    return ct.run(["raftkvctl", "-e", endpoint, "-t", "5s"] + list(args), dl, cap=20,
                  check_rc=check_rc)


def status(ct, dl, endpoint="unix:/run/raftkv/proxy.sock"):
    """raftkvctl -o json status: {node id: row}."""
    p = ctl(ct, dl, "-o", "json", "status", endpoint=endpoint)
    data = json.loads(p.stdout)
    rows = data.get("nodes", data) if isinstance(data, dict) else data
    return {int(r["id"]): r for r in rows}


def leader_of(st):
    leaders = [i for i, r in st.items() if r.get("role") == "leader"]
    return leaders[0] if len(leaders) == 1 else None


def unit_props(ct, dl, unit, *props):
    out = ct.out(["systemctl", "show", unit] + ["-p" + p for p in props], dl, cap=10)
    return dict(l.split("=", 1) for l in out.splitlines() if "=" in l)


def all_active(ct, dl):
    p = ct.run(["systemctl", "is-active"] + SERVICES, dl, cap=10, check_rc=False)
    states = p.stdout.split()
    return states if states == ["active"] * len(SERVICES) else None


def wait_cluster(ct, dl, cap=60):
    wait_for(lambda: all_active(ct, dl), dl, "every unit active", cap=cap)
    return wait_for(lambda: leader_of(status(ct, dl)), dl, "a leader", cap=cap)


def proxy_client(ct, path="/run/raftkv/proxy.sock", timeout=10):
    """A harness.Client on a unix socket of the container (the proxy's by
    default), reached through /proc."""
    return Client.unix(ct.path(path), timeout)


def missing_keys(ct, keys, dl):
    """Keys (dict key -> value) not readable with their value via the proxy."""
    bad = []
    with proxy_client(ct) as c:
        for k, v in keys.items():
            dl.left()
            r = c.call(req_get(k))
            if r.status != harness.OK or r.get.value != v:
                bad.append(k)
    return bad


def journal(ct, dl, unit, *match):
    out = ct.out(["journalctl", "--no-pager", "-o", "json", "-u", unit] + list(match), dl, cap=20)
    return [json.loads(l) for l in out.splitlines() if l.strip()]


# ---------------------------------------------------------------------------
# steps


class Run:
    def __init__(self, tmp):
        self.tmp = tmp
        self.ct = None
        self.deb = None
        self.acked = {}  # key (bytes) -> value (bytes): every acknowledged write

    def save_journal(self, step):
        """The container's journal of this boot, for a failed step."""
        if not (self.ct and self.ct.running()):
            return
        path = os.path.join(self.tmp, "journal-%s.txt" % step)
        try:
            out = self.ct.run(["journalctl", "--no-pager", "-b", "-o", "short-monotonic"],
                              Deadline(30), check_rc=False).stdout
            with open(path, "w") as f:
                f.write(out)
            print("  journal of the container: %s%s" % (
                path, "" if os.environ.get("RAFTKV_SYSTEMD_KEEP") else " (RAFTKV_SYSTEMD_KEEP=1 keeps it)"))
            if os.environ.get("RAFTKV_SYSTEMD_VERBOSE"):
                print("".join("  | " + l + "\n" for l in out.splitlines()[-40:]), end="")
        except (Fail, subprocess.SubprocessError, OSError) as e:
            print("  (no journal: %s)" % e)

    def build_deb(self, outdir, dl, version=None):
        env = dict(os.environ)
        if version:
            env["RAFTKV_PKG_VERSION"] = version
        os.makedirs(outdir, exist_ok=True)
        logf = os.path.join(self.tmp, "build-deb-%s.log" % (version or "1"))
        p = host([os.path.join(ROOT, "scripts", "build-deb.sh"), outdir], dl, env=env,
                 check_rc=False)
        with open(logf, "w") as f:
            f.write(p.stdout)
        lines = p.stdout.strip().splitlines()
        if p.returncode != 0 or not lines or not os.path.isfile(lines[-1].strip()):
            raise Fail("scripts/build-deb.sh exit %d (log %s): %s" %
                       (p.returncode, logf, "\n".join(lines[-15:])))
        return lines[-1].strip()

    def rootfs(self, dl):
        # Named by the package list, so a changed list makes a new cache.
        tag = hashlib.sha1(",".join(sorted(PACKAGES)).encode()).hexdigest()[:12]
        tarball = os.path.join(CACHE, "bookworm-%s.tar" % tag)
        made = False
        if not os.path.exists(tarball):
            os.makedirs(CACHE, exist_ok=True)
            work = tempfile.mkdtemp(prefix="debootstrap-", dir=CACHE)
            try:
                host(["debootstrap", "--variant=minbase", "--include=" + ",".join(PACKAGES),
                      "bookworm", os.path.join(work, "root"), MIRROR], dl, cap=900)
                host(["chroot", os.path.join(work, "root"), "apt-get", "clean"], dl, cap=60)
                host(["tar", "--numeric-owner", "--xattrs", "-C", os.path.join(work, "root"),
                      "-cf", os.path.join(work, "root.tar"), "."], dl, cap=300)
                os.rename(os.path.join(work, "root.tar"), tarball)  # atomic: no half cache
                made = True
            finally:
                shutil.rmtree(work, ignore_errors=True)
        root = os.path.join(self.tmp, "root")
        os.makedirs(root)
        host(["tar", "--numeric-owner", "--xattrs", "-C", root, "-xf", tarball], dl, cap=300)
        return root, tarball, made

    def step_install(self):
        dl = Deadline(1500)
        t0 = time.monotonic()
        self.deb = self.build_deb(os.path.join(self.tmp, "deb1"), dl)
        t_build = time.monotonic() - t0
        t0 = time.monotonic()
        root, tarball, made = self.rootfs(dl)
        t_root = time.monotonic() - t0
        shutil.copy(self.deb, os.path.join(root, "root", "raftkv.deb"))
        self.ct = Container(root, self.tmp)
        state = self.ct.boot(dl)
        check(state in ("running", "degraded"), "container state %r" % state)
        ct = self.ct
        ct.run(["dpkg", "-i", "/root/raftkv.deb"], dl, cap=120)
        pw = ct.out(["getent", "passwd", "raftkv"], dl, cap=10)
        check(pw.startswith("raftkv:"), "no raftkv user: %r" % pw)
        conff = ct.out(["dpkg-query", "-W", "-f=${Conffiles}", "raftkv"], dl, cap=10)
        check("/etc/raftkv/raftkv.conf" in conff, "raftkv.conf is not a conffile: %r" % conff)
        check(os.path.isfile(ct.path("/etc/raftkv/raftkv.conf")), "no /etc/raftkv/raftkv.conf")
        pages = {}
        for page in (["raftkvctl"], ["8", "raftkv-node"], ["8", "raftkv-proxy"], ["5", "raftkv.conf"]):
            pages[page[-1]] = ct.out(["man", "-w"] + page, dl, cap=20)
        ver = ct.out(["dpkg-query", "-W", "-f=${Version}", "raftkv"], dl, cap=10)
        target = ct.run(["systemctl", "is-enabled", "raftkv.target"], dl, cap=10,
                        check_rc=False).stdout.strip()
        report("install", True, "raftkv %s (build %.0fs, rootfs %.0fs%s, %s); user, conffile, "
               "man pages %s; raftkv.target %s; container %s" %
               (ver, t_build, t_root, " debootstrap" if made else " from cache", os.path.basename(self.deb),
                " ".join(sorted(pages.values())), target, state))

    def step_start(self):
        dl = Deadline(120)
        ct = self.ct
        # TLS on (issue 15): the CA and every key pair in /etc/raftkv/tls,
        # node and proxy keys given to the raftkv group by the generator
        ct.run(["raftkvctl", "config", "generate", "--nodes", "3", "--tls", "--file",
                "/etc/raftkv/raftkv.conf"], dl, cap=10)
        mode = ct.out(["stat", "-c", "%a %G", "/etc/raftkv/tls/node-1.key"], dl, cap=10)
        check(mode == "640 raftkv", "node-1.key: %r, want '640 raftkv'" % mode)
        # Only the members: raftkv.target itself is the package's to enable
        # (checked in the reboot step).
        ct.run(["systemctl", "enable"] + SERVICES, dl, cap=30)
        t0 = time.monotonic()
        ct.run(["systemctl", "start", "raftkv.target"], dl, cap=60)
        leader = wait_cluster(ct, dl)
        report("start", True, "raftkv.target: %s active, leader node %d after %.1fs" %
               (" ".join(SERVICES), leader, time.monotonic() - t0))

    def step_ctl(self):
        dl = Deadline(60)
        ct = self.ct
        ctl(ct, dl, "set", "hello", "world")
        v = ctl(ct, dl, "get", "hello").stdout.strip()
        check(v == "world", "get via proxy: %r" % v)
        self.acked[b"hello"] = b"world"
        st = status(ct, dl)
        check(sorted(st) == list(NODES), "status via proxy lists %s" % sorted(st))
        check(leader_of(st), "status via proxy: no single leader: %s" % st)
        seen = []
        for i in NODES:
            ep = "unix:/run/raftkv/node-%d.sock" % i
            sti = status(ct, dl, endpoint=ep)
            check(i in sti, "status on node-%d.sock lacks node %d" % (i, i))
            # A read on a follower's admin socket: forwarded or answered
            # (linearizable); either way it must see the write.
            g = ctl(ct, dl, "get", "hello", endpoint=ep)
            check(g.stdout.strip() == "world", "get on node-%d.sock: %r" % (i, g.stdout))
            seen.append("%d:%s" % (i, sti[i].get("role")))
        report("ctl", True, "set/get/status via proxy.sock; status+get via node-N.sock (%s)" %
               " ".join(seen))

    def step_status_journal(self):
        dl = Deadline(60)
        ct = self.ct

        def texts_match():
            st = status(ct, dl)
            out = {}
            for i in NODES:
                txt = unit_props(ct, dl, "raftkv-node@%d.service" % i, "StatusText")["StatusText"]
                r = st[i]
                term, commit = int(r["term"]), int(r["commit_index"])
                if r["role"] == "leader":
                    want = "leader, term %d, commit %d" % (term, commit)
                else:
                    want = "%s of %d, term %d" % (r["role"], r["leader_id"], term)
                if not txt.startswith(want):
                    raise Fail("node %d: StatusText %r, node reports %r (want %r)" % (i, txt, r, want))
                out[i] = txt
            return out
        texts = wait_for(texts_match, dl, "StatusText to match raftkvctl status", cap=20)
        fields = []
        for i in NODES:
            # journald stores what a service sent on its own schedule.
            ents = wait_for(lambda: journal(ct, dl, "raftkv-node@%d.service" % i,
                                            "RAFTKV_EVENT=leader_change"),
                            dl, "node %d's RAFTKV_EVENT=leader_change in the journal" % i, cap=20)
            e = ents[-1]
            for f in ("RAFTKV_NODE", "RAFTKV_TERM", "RAFTKV_ROLE", "RAFTKV_LEADER"):
                check(f in e, "node %d: leader_change entry lacks %s: %s" % (i, f, e))
            check(e["RAFTKV_NODE"] == str(i), "node %d: RAFTKV_NODE=%s" % (i, e["RAFTKV_NODE"]))
            fields.append("%d:%d entries, term %s" % (i, len(ents), e["RAFTKV_TERM"]))
        report("status-journal", True, "StatusText %s; leader_change %s" %
               ("; ".join("%d=%r" % kv for kv in texts.items()), ", ".join(fields)))

    def step_kill(self):
        dl = Deadline(120)
        ct = self.ct
        old = wait_cluster(ct, dl)
        unit = "raftkv-node@%d.service" % old
        before = unit_props(ct, dl, unit, "NRestarts", "MainPID")
        # The sockets systemd holds for the node must outlive the crash
        # restart: that is what keeps queued connections.
        socks = ["raftkv-node@%d.socket" % old, "raftkv-node-peer@%d.socket" % old,
                 "raftkv-node-client@%d.socket" % old]
        socks_before = {u: unit_props(ct, dl, u, "ActiveEnterTimestampMonotonic")
                        for u in socks}
        t0 = time.monotonic()
        ct.run(["systemctl", "kill", "-s", "KILL", unit], dl, cap=10)

        def new_leader():
            for i in NODES:
                if i == old:
                    continue
                st = status(ct, dl, endpoint="unix:/run/raftkv/node-%d.sock" % i)
                ld = leader_of(st)
                if ld and ld != old:
                    return ld
            return None
        new = wait_for(new_leader, dl, "a new leader", cap=30)
        t_elect = time.monotonic() - t0

        def restarted():
            p = unit_props(ct, dl, unit, "NRestarts", "MainPID", "ActiveState")
            return (p if int(p["NRestarts"]) > int(before["NRestarts"]) and
                    p["ActiveState"] == "active" and p["MainPID"] not in ("0", before["MainPID"])
                    else None)
        after = wait_for(restarted, dl, "%s restarted by systemd" % unit, cap=30)
        for u in socks:
            p = unit_props(ct, dl, u, "ActiveState", "ActiveEnterTimestampMonotonic")
            check(p["ActiveState"] == "active" and
                  p["ActiveEnterTimestampMonotonic"] == socks_before[u]["ActiveEnterTimestampMonotonic"],
                  "%s was restarted with the service (%s -> %s, %s)" % (
                      u, socks_before[u]["ActiveEnterTimestampMonotonic"],
                      p["ActiveEnterTimestampMonotonic"], p["ActiveState"]))
        log = ct.out(["journalctl", "-b", "-u", unit, "-o", "cat", "--no-pager"], dl, cap=10)
        check(re.search(r"peer socket \S+ \(from systemd\)", log) and
              re.search(r"client socket \S+ \(from systemd\)", log),
              "%s did not use the peer/client sockets systemd holds" % unit)
        ctl(ct, dl, "set", "after-kill", "yes")
        self.acked[b"after-kill"] = b"yes"
        target = int(status(ct, dl)[new]["commit_index"])

        def caught_up():
            r = status(ct, dl, endpoint="unix:/run/raftkv/node-%d.sock" % old)[old]
            return r if int(r["commit_index"]) >= target else None
        r = wait_for(caught_up, dl, "node %d's commit index to reach %d" % (old, target), cap=30)
        report("kill-leader", True, "killed leader %d; node %d leads after %.1fs; NRestarts %s->%s, "
               "PID %s->%s; its 3 sockets kept; node %d commit %s >= %d (%s)" %
               (old, new, t_elect, before["NRestarts"], after["NRestarts"], before["MainPID"],
                after["MainPID"], old, r["commit_index"], target, r.get("role")))

    def step_stop_handoff(self):
        dl = Deadline(180)
        ct = self.ct
        old = wait_cluster(ct, dl)
        unit = "raftkv-node@%d.service" % old
        since = ct.out(["date", "+%Y-%m-%d %H:%M:%S"], dl, cap=5)
        stop = threading.Event()
        w = {"ok": 0, "failed": 0, "errors": [], "lat": 0.0}
        acked = {}

        def writer():
            i = 0
            c = None
            while not stop.is_set():
                i += 1
                k, v = b"w-%06d" % i, b"v-%d" % i
                t = time.monotonic()
                try:
                    if c is None:
                        c = proxy_client(ct)
                    r = c.call(req_set(k, v))
                    if r.status == harness.OK:
                        w["ok"] += 1
                        acked[k] = v
                    else:
                        w["failed"] += 1
                        w["errors"].append("%s: %s %s" % (k, harness.status_name(r.status),
                                                           r.error if r.HasField("error") else ""))
                except (OSError, harness.ProtocolError) as e:
                    w["failed"] += 1
                    w["errors"].append("%s: %r" % (k, e))
                    if c:
                        c.close()
                    c = None
                w["lat"] = max(w["lat"], time.monotonic() - t)
            if c:
                c.close()
        th = threading.Thread(target=writer, daemon=True)
        th.start()
        try:
            wait_for(lambda: w["ok"] >= 50, dl, "50 writes before the stop", cap=20, interval=0.05)
            n0 = w["ok"]
            t0 = time.monotonic()
            ct.run(["systemctl", "stop", unit], dl, cap=160)
            t_stop = time.monotonic() - t0
            # Stopped means stopped: nothing (e.g. a peer dialling its
            # socket) may start it again behind the admin's back.
            state = []

            def inactive():
                state[:] = [ct.run(["systemctl", "is-active", unit], dl, cap=10,
                                   check_rc=False).stdout.strip()]
                return state[0] in ("inactive", "failed")
            came_back = holds(inactive, 3, dl) is not None
            wait_for(lambda: w["ok"] >= n0 + 100, dl, "100 more writes after the stop", cap=30,
                     interval=0.05)
        finally:
            stop.set()
            th.join(timeout=30)
        check(not th.is_alive(), "writer did not stop")
        ents = ct.out(["journalctl", "--no-pager", "-o", "cat", "-u", unit, "--since", since], dl,
                      cap=20)
        handed = "handing leadership" in ents
        timed_out = "did not finish in time" in ents
        new = wait_for(lambda: leader_of(status(ct, dl)), dl, "a leader after the stop", cap=20)
        bad = missing_keys(ct, acked, dl)
        self.acked.update(acked)
        # systemd still holds the stopped node's sockets: a client that
        # connects now waits in the backlog and is answered once the node
        # is started again (and does not start it).
        queued = proxy_client(ct, "/run/raftkv/node-%d.sock" % old, timeout=60)
        try:
            rid = queued.send(harness.req_status())
            still = holds(inactive, 2, dl) is None
            ct.run(["systemctl", "start", unit], dl, cap=60)
            r = queued.recv_for(rid)
            queued_ok = r.status == harness.OK and still
        finally:
            queued.close()
        wait_cluster(ct, dl)
        detail = ("stopped leader %d in %.1fs, node %d leads; journal: %s; writes %d acked, %d failed, "
                  "max latency %.0f ms; %d acked keys unreadable" %
                  (old, t_stop, new, "hand-off" + (" timed out" if timed_out else "") if handed
                   else "no hand-off logged", w["ok"], w["failed"], w["lat"] * 1000, len(bad)))
        if came_back:
            detail += "; %s was %s again within 3 s of the stop (socket-activated?)" % (unit, state[0])
        detail += ("; a STATUS sent to the stopped node's admin socket was answered after the start"
                   if queued_ok else "; a STATUS queued on the stopped node's admin socket %s" %
                   ("started the node" if not still else "got %s" % harness.status_name(r.status)))
        ok = (handed and not timed_out and new != old and w["failed"] == 0 and not bad and not came_back
              and queued_ok)
        if w["errors"]:
            detail += "; first errors: %s" % w["errors"][:3]
        report("stop-handoff", ok, detail)

    def step_stop_target(self):
        dl = Deadline(240)
        ct = self.ct
        wait_cluster(ct, dl)
        t0 = time.monotonic()
        ct.run(["systemctl", "stop", "raftkv.target"], dl, cap=180)
        t_stop = time.monotonic() - t0
        up = []

        def none_active():
            out = ct.out(["systemctl", "list-units", "--plain", "--no-legend", "--state=active",
                          "raftkv*.service"], dl, cap=10)
            # raftkv-sockets@*.service run nothing: they only keep the held
            # sockets from starting a stopped daemon.
            up[:] = [l.split()[0] for l in out.splitlines()
                     if not l.startswith("raftkv-sockets@")]
            return not up
        back = holds(none_active, 3, dl) is not None
        ct.run(["systemctl", "start", "raftkv.target"], dl, cap=60)
        leader = wait_cluster(ct, dl)
        bad = missing_keys(ct, self.acked, dl)
        check(not bad, "%d acknowledged keys missing after stop/start, e.g. %s" % (len(bad), bad[:5]))
        check(not back, "after `systemctl stop raftkv.target` (%.1fs) still or again active: %s" %
              (t_stop, " ".join(up)))
        report("stop-target", True, "systemctl stop raftkv.target in %.1fs, all services stayed "
               "stopped for 3 s; started again, leader %d, %d keys present" %
               (t_stop, leader, len(self.acked)))

    def step_reboot(self):
        dl = Deadline(240)
        ct = self.ct
        enabled = ct.out(["systemctl", "is-enabled", "raftkv.target"], dl, cap=10)
        check(enabled == "enabled", "raftkv.target is %r (the package enables it)" % enabled)
        wants = ct.path("/etc/systemd/system/multi-user.target.wants/raftkv.target")
        check(os.path.islink(wants), "no multi-user.target.wants/raftkv.target link")
        t0 = time.monotonic()
        clean = ct.poweroff(120)
        t_off = time.monotonic() - t0
        check(clean, "container did not power off cleanly within 120 s")
        t0 = time.monotonic()
        state = ct.boot(dl)
        # Nothing is started by hand: raftkv.target comes up at boot.
        leader = wait_cluster(ct, dl, cap=90)
        t_up = time.monotonic() - t0
        bad = missing_keys(ct, self.acked, dl)
        check(not bad, "%d of %d acknowledged keys missing after reboot, e.g. %s" %
              (len(bad), len(self.acked), bad[:5]))
        report("reboot", True, "poweroff %.1fs, boot to all units active %.1fs (system %s, leader %d); "
               "%d acknowledged keys all present" % (t_off, t_up, state, leader, len(self.acked)))

    def step_tls_reload(self):
        """TLS on the TCP ports, rights, and systemctl reload keeping the
        cluster: no unit restarts, the leader stays, writes go on."""
        dl = Deadline(120)
        ct = self.ct
        leader = wait_cluster(ct, dl)
        tls = ["--tls-cert", "/etc/raftkv/tls/admin.crt", "--tls-key", "/etc/raftkv/tls/admin.key"]
        # TCP: the CA comes from the config; without a certificate: read only
        r = ctl(ct, dl, "get", "hello", endpoint="127.0.0.1:7000")
        check(r.stdout.strip() == "world", "TLS get through the proxy's TCP port: %r" % r.stdout)
        r = ctl(ct, dl, "set", "x", "1", endpoint="127.0.0.1:7000", check_rc=False)
        check(r.returncode == 8, "anonymous TLS set: exit %d, want 8 (%s)" % (r.returncode, r.stderr))
        ctl(ct, dl, *tls, "set", "x", "1", endpoint="127.0.0.1:7000")
        self.acked[b"x"] = b"1"
        # a plaintext STATUS frame (bash: the container has no python): no
        # answer, at most a TLS alert record (0x15) before the close
        r = ct.run(["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/7001; printf '\\0\\0\\0\\2\\x7a\\0' >&3; "
                    "timeout 5 cat <&3 | head -c 1 | od -An -tx1"], dl, cap=20, check_rc=False)
        check(r.stdout.strip() in ("", "15"), "plaintext to node 1's TLS port: first byte back %r" % r.stdout)
        units = ["raftkv-node@%d.service" % i for i in NODES] + ["raftkv-proxy.service"]
        pids = {u: unit_props(ct, dl, u, "MainPID")["MainPID"] for u in units}
        ct.run(["systemctl", "reload"] + units, dl, cap=60)
        for u in units:
            p = unit_props(ct, dl, u, "MainPID", "ActiveState")
            check(p["MainPID"] == pids[u] and p["ActiveState"] == "active", "%s after reload: %s" % (u, p))
            wait_for(lambda: journal(ct, dl, u, "--grep", "SIGHUP: reloaded"), dl, "%s to log the reload" % u,
                     cap=20)
        st = status(ct, dl)
        check(leader_of(st) == leader, "leader %s after the reload, %d before" % (leader_of(st), leader))
        ctl(ct, dl, *tls, "set", "after-reload", "1", endpoint="127.0.0.1:7000")
        self.acked[b"after-reload"] = b"1"
        report("tls-reload", True, "TLS on the proxy's and nodes' TCP ports (anonymous set: exit 8, admin "
               "certificate: OK, plaintext: no answer); systemctl reload of 4 units: same PIDs, leader %d "
               "kept, writes go on" % leader)

    def step_add_node(self):
        """README, "Adding, removing and replacing a node": add node 4 to the
        running 3-node cluster exactly as documented there."""
        dl = Deadline(240)
        ct = self.ct
        wait_cluster(ct, dl)
        conf = ct.path("/etc/raftkv/raftkv.conf")
        with open(conf) as f:
            before = f.read()
        ct.run(["raftkvctl", "config", "generate", "--add-node", "4", "--tls", "--file",
                "/etc/raftkv/raftkv.conf"], dl, cap=10)
        with open(conf) as f:
            after = f.read()
        added = after[len(before):]
        check(after.startswith(before) and "[node.4]" in added,
              "--add-node did not just append [node.4]: %r" % added)
        # make 4 a joiner: the README's one place for --join
        ct.run(["mkdir", "-p", "/etc/systemd/system/raftkv-node@4.service.d"], dl, cap=10)
        ct.run(["sh", "-c", "printf '[Service]\\nEnvironment=RAFTKV_NODE_ARGS=--join\\n' >"
                "/etc/systemd/system/raftkv-node@4.service.d/join.conf"], dl, cap=10)
        ct.run(["systemctl", "daemon-reload"], dl, cap=60)
        for u in ("raftkv-node-peer@4.socket", "raftkv-node-client@4.socket"):
            p = unit_props(ct, dl, u, "LoadState", "FragmentPath")
            check(p.get("LoadState") == "loaded" and "/generator" in p.get("FragmentPath", ""),
                  "%s after daemon-reload: %s" % (u, p))
        t0 = time.monotonic()
        ct.run(["systemctl", "enable", "--now", "raftkv-node@4.service"], dl, cap=60)
        pid = unit_props(ct, dl, "raftkv-node@4.service", "MainPID")["MainPID"]
        argv = ct.out(["cat", "/proc/%s/cmdline" % pid], dl, cap=10).split("\0")
        check("--join" in argv, "raftkv-node@4 runs without --join: %s" % argv)
        # membership commands go to the leader's admin socket, found from the config
        ct.run(["raftkvctl", "-t", "10s", "member", "add", "4"], dl, cap=30)

        def caught_up_voter():
            out = ct.out(["raftkvctl", "-t", "5s", "-o", "json", "members"], dl, cap=20)
            ms = {int(m["id"]): m for m in json.loads(out)["members"]}
            m = ms.get(4)
            return ms if m and m.get("role") == "voter" and m.get("health") == "ok" else None
        ms = wait_for(caught_up_voter, dl, "node 4 a caught-up voter in raftkvctl members", cap=60,
                      interval=0.5)
        t_voter = time.monotonic() - t0
        ctl(ct, dl, "set", "after-add", "4")
        self.acked[b"after-add"] = b"4"
        ep4 = "unix:/run/raftkv/node-4.sock"
        got = {}
        for k in (b"hello", b"after-add"):
            got[k] = ctl(ct, dl, "get", k.decode(), endpoint=ep4).stdout.strip().encode()
            check(got[k] == self.acked[k], "get %s through node 4: %r, want %r" % (k, got[k], self.acked[k]))
        log = ct.out(["journalctl", "-b", "-u", "raftkv-node@4", "-o", "cat", "--no-pager"], dl, cap=10)
        check("bootstrapping" not in log, "node 4 bootstrapped a cluster of its own:\n%s" % log[-800:])
        report("add-node", True, "config generate --add-node 4 appended %d bytes; join drop-in, "
               "daemon-reload: node 4's sockets generated; started with --join; member add 4: "
               "voter, health ok %.1fs after the start (members %s); 'hello', 'after-add' read "
               "through node-4.sock" % (len(added), t_voter,
                                        " ".join("%d:%s" % (i, m["role"]) for i, m in sorted(ms.items()))))

    def step_package(self):
        dl = Deadline(1500)
        ct = self.ct
        old_ver = ct.out(["dpkg-query", "-W", "-f=${Version}", "raftkv"], dl, cap=10)
        upstream = old_ver.split(":")[-1].rsplit("-", 1)[0]
        new_ver = upstream + "+systemdtest1"
        t0 = time.monotonic()
        deb2 = self.build_deb(os.path.join(self.tmp, "deb2"), dl, version=new_ver)
        t_build = time.monotonic() - t0
        got = host(["dpkg-deb", "-f", deb2, "Version"], dl, cap=10).stdout.strip()
        gt = host(["dpkg", "--compare-versions", got, "gt", old_ver], dl, cap=10, check_rc=False)
        check(gt.returncode == 0, "rebuilt package version %r is not above %r" % (got, old_ver))
        shutil.copy(deb2, ct.path("/root/raftkv-new.deb"))
        conf_before = open(ct.path("/etc/raftkv/raftkv.conf")).read()
        inv = {u: unit_props(ct, dl, u, "InvocationID")["InvocationID"] for u in SERVICES}
        ct.run(["dpkg", "-i", "/root/raftkv-new.deb"], dl, cap=180)
        ver = ct.out(["dpkg-query", "-W", "-f=${Version}", "raftkv"], dl, cap=10)
        check(ver == got, "installed version %r after upgrade, want %r" % (ver, got))
        check(open(ct.path("/etc/raftkv/raftkv.conf")).read() == conf_before,
              "the upgrade changed /etc/raftkv/raftkv.conf")
        wait_cluster(ct, dl)
        inv2 = {u: unit_props(ct, dl, u, "InvocationID")["InvocationID"] for u in SERVICES}
        same = [u for u in SERVICES if inv[u] == inv2[u]]
        check(not same, "not restarted by the upgrade: %s" % same)
        ctl(ct, dl, "set", "after-upgrade", "yes")
        self.acked[b"after-upgrade"] = b"yes"
        bad = missing_keys(ct, self.acked, dl)
        check(not bad, "%d acknowledged keys missing after upgrade, e.g. %s" % (len(bad), bad[:5]))
        detail = "upgrade %s -> %s (build %.0fs): config kept, all 4 services restarted, %d keys " \
            "present" % (old_ver, ver, t_build, len(self.acked))

        ct.run(["dpkg", "-r", "raftkv"], dl, cap=180)
        # Any raftkv unit still up (a service, or a socket that would start
        # one) outlives the binaries it runs.
        left = ct.out(["systemctl", "list-units", "--plain", "--no-legend", "--state=active",
                       "raftkv*"], dl, cap=10)
        check(not left, "still active after dpkg -r: %s" % " ".join(
            l.split()[0] for l in left.splitlines()))
        data = [d for d in ("/var/lib/raftkv/1", "/var/lib/raftkv/2", "/var/lib/raftkv/3")
                if os.path.isdir(ct.path(d)) and os.listdir(ct.path(d))]
        check(len(data) == 3, "after dpkg -r only %s of /var/lib/raftkv/N kept" % data)
        check(os.path.isfile(ct.path("/etc/raftkv/raftkv.conf")), "dpkg -r removed raftkv.conf")
        st = ct.out(["dpkg-query", "-W", "-f=${Status}", "raftkv"], dl, cap=10)
        check(st.endswith("config-files"), "status after dpkg -r: %r" % st)
        detail += "; dpkg -r: services gone, /var/lib/raftkv/1-3 and conffile kept"

        ct.run(["dpkg", "-P", "raftkv"], dl, cap=120)
        for d in ("/var/lib/raftkv", "/etc/raftkv"):
            check(not os.path.exists(ct.path(d)), "%s still there after dpkg -P" % d)
        detail += "; dpkg -P: /var/lib/raftkv and /etc/raftkv gone"
        report("package", True, detail)

    def step_poweroff(self):
        t0 = time.monotonic()
        clean = self.ct.poweroff(120)
        report("poweroff", clean, "container stopped in %.1fs%s" %
               (time.monotonic() - t0, "" if clean else " (killed by PID after the deadline)"))


STEPS = [("install", "step_install", True), ("start", "step_start", True),
         ("ctl", "step_ctl", False), ("tls-reload", "step_tls_reload", False),
         ("status-journal", "step_status_journal", False),
         ("kill-leader", "step_kill", False), ("stop-handoff", "step_stop_handoff", False),
         ("stop-target", "step_stop_target", False), ("reboot", "step_reboot", True), ("add-node", "step_add_node", False),
         ("package", "step_package", False)]
# RAFTKV_SYSTEMD_STEPS=install,start,add-node: only these (and the poweroff).
ONLY = [x for x in (os.environ.get("RAFTKV_SYSTEMD_STEPS") or "").split(",") if x]


def main():
    tmp = tempfile.mkdtemp(prefix="raftkv-systemd-", dir="/var/tmp")
    run = Run(tmp)
    t_all = time.monotonic()
    blocked = None
    try:
        for name, meth, needed in STEPS:
            if ONLY and name not in ONLY:
                continue
            if blocked:
                report(name, False, "not run: step %s failed" % blocked)
                continue
            step_started[0] = time.monotonic()
            try:
                getattr(run, meth)()
            except (Fail, AssertionError, subprocess.SubprocessError, OSError, ValueError,
                    KeyError) as e:
                report(name, False, "%s: %s" % (type(e).__name__, e))
                run.save_journal(name)
                if os.environ.get("RAFTKV_SYSTEMD_VERBOSE"):
                    traceback.print_exc()
                if needed:
                    blocked = name
        if run.ct:
            step_started[0] = time.monotonic()
            run.step_poweroff()
    except Interrupted as e:
        print("systemd: interrupted (%s)" % e, flush=True)
        results.append(False)
    finally:
        if run.ct and run.ct.running():
            run.ct.poweroff(60)
        if os.environ.get("RAFTKV_SYSTEMD_KEEP"):
            print("kept", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    passed = sum(1 for r in results if r)
    failed = len(results) - passed
    print("systemd: %d passed, %d failed (%.0f s)" % (passed, failed, time.monotonic() - t_all))
    return 1 if failed or not results else 0


if __name__ == "__main__":
    sys.exit(main())
