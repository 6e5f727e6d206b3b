"""clusterbench.py - what the cluster benchmarks (membership-bench.py,
snapxfer-bench.py) share: raftkvctl, the default timing, the prefill, and
sequential writers that record when each write was acknowledged and how
long it took."""
import json
import os
import re
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "cluster"))
import harness  # noqa: E402
from harness import Session  # noqa: E402

CTL = os.environ.get("RAFTKV_CTL") or os.path.join(ROOT, "build", "src", "ctl", "raftkvctl")
DEFAULT_TIMING = dict(tick_ms=10, heartbeat_interval_ms=20, election_timeout_ms=150,
                      request_timeout_ms=5000, reconnect_min_ms=10, reconnect_max_ms=1000)


def ctl(c, *args, timeout=120):
    p = subprocess.run([CTL, "-c", c.config, "-t", "10s"] + list(args), stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError("raftkvctl %s: exit %d: %s" % (" ".join(args), p.returncode, p.stderr.strip()))
    return p.stdout


def members(c):
    return {m["id"]: m for m in json.loads(ctl(c, "-o", "json", "members"))["members"]}


def start_joining(c, i):
    """Start a node i that is not in the membership yet (--join), with
    addresses of its own in the config."""
    peer, client = harness.free_listen_ports(2)
    c.nodes[i] = harness.Node(c, i, peer, client)
    c.nodes[i].extra_args = ["--join"]
    c.write_config()
    c.start_node(i)


def loaded(c, lead, keys, writers):
    """Prefill keys keys and say so."""
    took = prefill(c, lead, keys)
    print("cluster of 3 on 127.0.0.1, %d CPUs, default timing; %d keys of 100 B loaded in %.0f s; "
          "%d writers" % (os.cpu_count(), keys, took, writers))


def prefill(c, lead, keys):
    """keys keys of 100 B through raftkvctl bench's prefill; seconds taken."""
    t = time.monotonic()
    out = subprocess.run([CTL, "-e", c.nodes[lead].client_address, "-o", "plain", "bench",
                          "--clients", "64", "--keys", str(keys), "--value-size", "100",
                          "--ratio", "0:1", "--requests", "1"],
                         capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError("prefill failed: " + out.stderr)
    return time.monotonic() - t


class Writers:
    """n sequential writers (one SET at a time each, sessions that follow
    NOT_LEADER hints) until the with-block ends."""

    def __init__(self, c, n):
        self.c, self.stop, self.done, self.errors = c, threading.Event(), [], []
        self.lock = threading.Lock()
        self.ths = [threading.Thread(target=self.run, args=(w,)) for w in range(n)]

    def run(self, w):
        s = Session(self.c)
        i = 0
        while not self.stop.is_set():
            i += 1
            t0 = time.monotonic()
            try:
                r = s.write(harness.req_set(b"w%d-%d" % (w, i), b"x" * 100), timeout=10)
                ok = r.status == harness.OK
            except Exception as e:  # noqa: BLE001 - a bench records, never dies
                ok, r = False, e
            t1 = time.monotonic()
            with self.lock:
                if ok:
                    self.done.append((t1, t1 - t0))
                else:
                    self.errors.append(repr(r)[:200])
        s.close()

    def __enter__(self):
        for t in self.ths:
            t.start()
        return self

    def __exit__(self, *a):
        self.stop.set()
        for t in self.ths:
            t.join(30)

    def window(self, t0, t1):
        """(writes, median ms, p99 ms, max ms, longest gap ms) of the writes
        acknowledged in [t0, t1]; the gap counts from t0 and up to t1."""
        with self.lock:
            pts = sorted(d for d in self.done if t0 <= d[0] <= t1)
        lat = sorted(x[1] for x in pts)
        ts = [x[0] for x in pts]
        if len(ts) < 2:
            return len(lat), float("nan"), float("nan"), float("nan"), float("inf")
        gap = max(b - a for a, b in zip([t0] + ts, ts + [t1]))
        q = lambda f: lat[min(len(lat) - 1, int(f * len(lat)))] * 1000  # noqa: E731
        return len(lat), q(0.5), q(0.99), lat[-1] * 1000, gap * 1000

    def gap(self, t0, t1):
        return self.window(t0, t1)[4] / 1000


def kb_fields(path, names):
    """The named "Key: N kB" fields of a /proc file, 0 when absent."""
    out = dict.fromkeys(names, 0)
    try:
        with open(path) as f:
            for ln in f:
                k, _, v = ln.partition(":")
                if k in out:
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


def rss_mb(pid):
    return kb_fields("/proc/%d/status" % pid, ["VmRSS"])["VmRSS"] / 1024


class Sampler(threading.Thread):
    def __init__(self, pids):
        super().__init__(daemon=True)
        self.pids, self.stop, self.peak = pids, threading.Event(), {i: 0.0 for i in pids}

    def run(self):
        while not self.stop.is_set():
            for i, p in self.pids.items():
                self.peak[i] = max(self.peak[i], rss_mb(p))
            time.sleep(0.02)


def add_member(c, lead, writers):
    """Start node 4 with --join and `member add 4` while writers sequential
    writers keep writing; print how long until node 4 is a caught-up voter,
    the transfer as both ends logged it, the writes' latency and longest
    gap meanwhile, RSS of the leader and node 4, loop lag and terms."""
    terms0 = {i: c.status(i).term for i in (1, 2, 3)}
    start_joining(c, 4)
    log4 = c.log_size(4)
    logl = c.log_size(lead)
    samp = Sampler({lead: c.nodes[lead].pid, 4: c.nodes[4].pid})
    before = {i: rss_mb(p) for i, p in samp.pids.items()}
    samp.start()
    with Writers(c, writers) as w:
        time.sleep(1.0)
        base = w.window(time.monotonic() - 1.0, time.monotonic())
        t0 = time.monotonic()
        ctl(c, "member", "add", "4")

        def caught_up():
            m = members(c).get(4)
            return m and m.get("role") == "voter" and m.get("lag", 1 << 62) < 1000
        harness.wait_until(caught_up, 600, "node 4 a caught-up voter", interval=0.05)
        t1 = time.monotonic()
        time.sleep(0.5)
        during = w.window(t0 - 0.1, t1 + 0.5)
    samp.stop.set()
    samp.join()
    after = {i: rss_mb(p) for i, p in samp.pids.items()}
    st = {i: c.status(i) for i in (1, 2, 3, 4)}
    terms1 = {i: st[i].term for i in (1, 2, 3)}
    rx = re.findall(r"received snapshot (\d+) \((\d+) bytes\) from node \d+ in (\d+) ms, "
                    r"checked and loaded in (\d+) ms", c.log_since(4, log4))
    tx = re.findall(r"sent snapshot \d+ \(\d+ bytes\) to node 4 in (\d+) ms", c.log_since(lead, logl))
    print("member add 4 -> caught-up voter: %.2f s" % (t1 - t0))
    for idx, size, xfer, load in rx:
        print("node 4: snapshot %s, %.1f MB, received in %s ms, checked and loaded (off the loop) "
              "in %s ms" % (idx, int(size) / 1e6, xfer, load))
    print("leader %d: sent in %s ms" % (lead, ", ".join(tx) or "?"))
    print("writes before: n=%d median %.1f ms p99 %.1f ms max %.1f ms" % base[:4])
    print("writes during: n=%d median %.1f ms p99 %.1f ms max %.1f ms; longest gap %.0f ms" % during)
    print("RSS MB (before / peak during / after): leader %d %.0f / %.0f / %.0f; node 4 %.0f / "
          "%.0f / %.0f" % (lead, before[lead], samp.peak[lead], after[lead], before[4],
                           samp.peak[4], after[4]))
    print("data_bytes %d, snapshot_bytes %d" % (st[lead].data_bytes, st[lead].snapshot_bytes))
    print("loop_lag_max since start: " + ", ".join(
        "node %d %.1f ms" % (i, st[i].loop_lag_max_us / 1000) for i in (1, 2, 3, 4)))
    print("terms before %s after %s; writes failed %d%s" %
          (terms0, terms1, len(w.errors), (": " + w.errors[0]) if w.errors else ""))

