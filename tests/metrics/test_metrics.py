"""test_metrics.py - /metrics, /healthz and /readyz of raftkv-node and
raftkv-proxy (issue 16), on a real 3-node cluster and proxy on 127.0.0.1.

    RAFTKV_NODE=build/src/node/raftkv-node RAFTKV_PROXY=build/src/proxy/raftkv-proxy \\
        PROMTOOL=/usr/bin/promtool /usr/bin/python3 tests/metrics/test_metrics.py [-k NAME]

Every wait has a deadline (harness.wait_until); every process is the
harness's, stopped by PID.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "proxy"))

import pxharness  # noqa: E402
import harness  # noqa: E402
from harness import OK, T, main, report, wait_until  # noqa: E402

PROMTOOL = os.environ.get("PROMTOOL", "promtool")


def http_get(port, path):
    """(status, body) of GET http://127.0.0.1:port/path."""
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=T(5)) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


def parse(text):
    """{(name, labels string): float} of every sample."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, "malformed sample line %r" % line
        out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out


def scrape(port):
    status, body = http_get(port, "/metrics")
    assert status == 200, "/metrics answered %d" % status
    return parse(body)


def promtool_check(port, what):
    status, body = http_get(port, "/metrics")
    assert status == 200
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=body.encode(), capture_output=True,
                       timeout=T(30))
    problems = (p.stdout + p.stderr).decode().strip()
    assert p.returncode == 0 and not problems, "promtool check metrics on %s: exit %d: %s" % (
        what, p.returncode, problems)
    return len(body)


def families(port):
    """Names of the metric families a /metrics page declares."""
    return set(re.findall(r"^# TYPE (\S+) ", http_get(port, "/metrics")[1], re.M))


def check_shipped_names(exported):
    """Every raftkv_ series the shipped dashboard and alert rules use is one
    the node or the proxy exports (a renamed metric must not leave them
    blank)."""
    d = os.environ.get("RAFTKV_MONITORING_DIR",
                       os.path.join(harness.ROOT, "packaging", "monitoring"))
    used = set()
    for f in ("raftkv-alerts.yml", "raftkv-dashboard.json"):
        with open(os.path.join(d, f)) as fh:
            text = fh.read()
        if f.endswith(".json"):
            json.loads(text)
        for name in re.findall(r"\b(raftkv_[a-z_]+)", text):
            used.add(re.sub(r"_(bucket|sum|count)$", "", name))
    missing = sorted(used - exported)
    assert not missing, "dashboard/rules use series nobody exports: %s" % missing
    return len(used)


def check_documented(names, page):
    """Every family is named in the man page (raftkv-node(8) / raftkv-proxy(8))."""
    with open(os.path.join(harness.ROOT, "man", page)) as f:
        text = f.read()
    missing = sorted(n for n in names if "*%s*" % n not in text and "*%s*{" % n not in text)
    assert not missing, "not documented in man/%s: %s" % (page, missing)


def set_ok(port, prefix="raftkv"):
    return scrape(port).get(("%s_requests_total" % prefix, '{op="set",status="ok"}'), 0)


def write_n(call, n, tag):
    for k in range(n):
        harness.expect_status(call(harness.req_set(b"%s-%d" % (tag, k), b"v")), OK, "set")


def check_promtool_clean():
    with pxharness.ProxiedCluster(3, metrics=True) as (c, px):
        lead = c.start_and_lead()
        px.start()
        px.wait_leader(lead)
        write_n(px.call, 10, b"p")
        harness.expect_status(px.call(harness.req_get(b"p-1")), OK, "get through the proxy")
        harness.expect_status(c.call(lead, harness.req_get(b"missing")), harness.NOT_FOUND,
                              "get of a missing key")
        for i, nd in c.nodes.items():
            size = promtool_check(nd.metrics_port, "node %d" % i)
            report("node %d: /metrics %d bytes, promtool clean" % (i, size))
        size = promtool_check(c.proxy_metrics_port, "the proxy")
        report("proxy: /metrics %d bytes, promtool clean" % size)
        exported = families(c.proxy_metrics_port)
        check_documented(exported, "raftkv-proxy.8.scd")
        for nd in c.nodes.values():
            check_documented(families(nd.metrics_port), "raftkv-node.8.scd")
            exported |= families(nd.metrics_port)
        report("dashboard and alert rules use %d series, all exported" % check_shipped_names(exported))
        m = scrape(c.nodes[lead].metrics_port)
        for name in ("raftkv_raft_is_leader", "raftkv_raft_has_leader"):
            assert m[(name, "")] == 1, "%s on the leader: %s" % (name, m[(name, "")])
        assert any(k[0] == "raftkv_disk_fsync_duration_seconds_count" and v > 0
                   for k, v in m.items()), "no fsync observed on the leader"
        for i, nd in c.nodes.items():
            for path in ("/nope", "/metrics/"):
                st, _ = http_get(nd.metrics_port, path)
                assert st == 404, "GET %s answered %d" % (path, st)


def check_request_counters():
    """Exactly N sets on the leader count N; N more through the proxy count
    N on the proxy and N more on the leader."""
    n = 25
    with pxharness.ProxiedCluster(3, metrics=True) as (c, px):
        lead = c.start_and_lead()
        port = c.nodes[lead].metrics_port
        assert set_ok(port) == 0, "sets counted before any was made"
        with c.client(lead) as cl:
            write_n(cl.call, n, b"d")
        # the count moves right after the answer leaves: wait for it, then
        # make sure it does not go past N
        wait_until(lambda: set_ok(port) == n, T(5), "leader's set/ok counter to reach %d (is %s)"
                   % (n, set_ok(port)))
        px.start()
        px.wait_leader(lead)
        write_n(px.call, n, b"x")
        wait_until(lambda: set_ok(c.proxy_metrics_port, "raftkv_proxy") == n, T(5),
                   "proxy's set/ok counter to reach %d" % n)
        wait_until(lambda: set_ok(port) == 2 * n, T(5), "leader's set/ok counter to reach %d" % (2 * n))
        m = scrape(port)
        assert m[("raftkv_raft_proposals_committed_total", "")] >= 2 * n
        for f in c.nodes:
            if f != lead:  # 2n entries of a few bytes went to each follower
                peer = '{peer="%d"}' % f
                assert m[("raftkv_raft_append_entries_sent_total", peer)] >= 1, (f, m)
                assert m[("raftkv_raft_append_entries_sent_bytes_total", peer)] >= n, (f, m)
                assert m[("raftkv_raft_messages_sent_total", peer)] >= \
                    m[("raftkv_raft_append_entries_sent_total", peer)], (f, m)
        rounds = m[("raftkv_raft_read_index_rounds_total", "")]
        with c.client(lead) as cl:
            harness.expect_status(cl.call(harness.req_get(b"d-0")), OK, "get")
        wait_until(lambda: scrape(port)[("raftkv_raft_read_index_rounds_total", "")] > rounds, T(5),
                   "a read-index round to be counted (the gauges publish once a second)")
        assert m[("raftkv_request_duration_seconds_count", '{op="set",status="ok"}')] == 2 * n
        for i in c.nodes:
            if i != lead:
                assert set_ok(c.nodes[i].metrics_port) == 0, "follower %d counted sets" % i
        pm = scrape(c.proxy_metrics_port)
        sent = pm[("raftkv_proxy_upstream_requests_total", '{node="%d"}' % lead)]
        assert sent == n, "proxy sent %s requests to the leader, want %d" % (sent, n)
        report("leader counted %d sets, proxy %d; proxy sent %d to node %d" %
               (2 * n, n, sent, lead))


def ready(port):
    return http_get(port, "/readyz")


def check_readyz_flips():
    """A follower cut off from the leader (the other two stopped) answers
    /readyz 503 with a reason, /healthz stays 200; healed, 200 again."""
    with pxharness.ProxiedCluster(3, metrics=True) as (c, px):
        lead = c.start_and_lead()
        px.start()
        px.wait_leader(lead)
        for i, nd in c.nodes.items():
            wait_until(lambda: ready(nd.metrics_port)[0] == 200, T(10), "node %d ready" % i)
        wait_until(lambda: ready(c.proxy_metrics_port)[0] == 200, T(10), "proxy ready")
        f = next(i for i in c.nodes if i != lead)
        others = [i for i in c.nodes if i != f]
        port = c.nodes[f].metrics_port
        for i in others:
            c.pause(i)
        st, body = wait_until(lambda: (lambda r: r if r[0] == 503 else None)(ready(port)), T(10),
                              "node %d /readyz to answer 503" % f)
        assert "no leader" in body, "reason: %r" % body
        hst, hbody = http_get(port, "/healthz")
        assert hst == 200 and hbody.strip() == "ok", "healthz %d %r" % (hst, hbody)
        m = scrape(port)
        assert m[("raftkv_raft_has_leader", "")] == 0
        wait_until(lambda: ready(c.proxy_metrics_port)[0] == 503, T(10), "proxy /readyz 503")
        report("node %d cut off: /readyz %d %r, /healthz 200" % (f, st, body.strip()))
        for i in others:
            c.resume(i)
        wait_until(lambda: ready(port)[0] == 200, T(15), "node %d /readyz 200 after healing" % f)
        wait_until(lambda: ready(c.proxy_metrics_port)[0] == 200, T(15), "proxy /readyz 200")
        c.wait_leader()
        m = scrape(port)
        assert m[("raftkv_raft_has_leader", "")] == 1
        report("healed: node %d and the proxy ready again" % f)


def ctl(*args):
    ctl_bin = os.environ.get("RAFTKV_CTL") or os.path.join(harness.ROOT, "build", "src", "ctl",
                                                           "raftkvctl")
    return subprocess.run([ctl_bin] + list(args), capture_output=True, timeout=T(30))


def check_ctl_metrics():
    """raftkvctl metrics over the admin socket, in both formats, without
    HTTP; refused on the client port."""
    with harness.Cluster(3) as c:
        lead = c.start_and_lead()
        with c.client(lead) as cl:
            write_n(cl.call, 3, b"c")
        admin = "unix:" + c.nodes[lead].admin
        p = ctl("-e", admin, "metrics", "-o", "json")
        assert p.returncode == 0, "raftkvctl metrics -o json: %d %s" % (p.returncode, p.stderr)
        m = json.loads(p.stdout)
        assert m["raftkv_raft_is_leader"] == 1, m.get("raftkv_raft_is_leader")
        n = m['raftkv_requests_total{op="set",status="ok"}']
        assert n == 3, "set/ok counted %s, want 3" % n
        p = ctl("-e", admin, "metrics", "-o", "prometheus")
        assert p.returncode == 0, p.stderr
        assert parse(p.stdout.decode())[("raftkv_raft_is_leader", "")] == 1
        chk = subprocess.run([PROMTOOL, "check", "metrics"], input=p.stdout, capture_output=True,
                             timeout=T(30))
        assert chk.returncode == 0 and not (chk.stdout + chk.stderr).strip(), chk.stdout + chk.stderr
        p = ctl("-e", c.nodes[lead].client_address, "metrics")
        assert p.returncode != 0 and b"admin socket" in p.stderr, (p.returncode, p.stderr)
        report("raftkvctl metrics: json and prometheus on the admin socket, refused on the client port")


def check_slow_request_logged():
    """A write held up by both followers being stopped is logged once as a
    slow request with its op, escaped key and stages, and counted."""
    with harness.Cluster(3, metrics=True, slow_request_ms=100) as c:
        lead = c.start_and_lead()
        followers = [i for i in c.nodes if i != lead]
        since = c.log_size(lead)
        with c.client(lead, timeout=T(20)) as cl:
            for i in followers:
                c.pause(i)
            t0 = time.monotonic()
            rid = cl.send(harness.req_set(b"slow\nkey", b"v"))
            # it cannot commit while both are stopped: let it wait past the
            # threshold (a deadline, not a guess), then let it finish
            wait_until(lambda: time.monotonic() - t0 > 0.25, T(5), "the write to be slow")
            for i in followers:
                c.resume(i)
            cl.recv_for(rid)  # OK, or UNAVAILABLE if a new leader dropped it
        line = c.wait_log(lead, r"slow request: set .*", timeout=T(10), since=since).group(0)
        assert '"slow\\nkey"' in line, "key not escaped: %r" % line
        for field in ("RAFTKV_OP=set", "RAFTKV_STAGE_US_COMMIT_APPLY=", "RAFTKV_DURATION_US=",
                      "proposal to commit and apply"):
            assert field in line, "%s missing from %r" % (field, line)
        n = scrape(c.nodes[lead].metrics_port)[("raftkv_slow_requests_total", "")]
        assert n >= 1, "raftkv_slow_requests_total %s" % n
        report("logged: %s" % line[:200])


FSYNC_DELAY_MS = 300


def check_slow_fsync_logged():
    """With the node's fdatasync made 300 ms slower (the test-only slow
    disk), a SET is logged as slow with its fsync and commit stages at 300
    ms or more, and the fsync histogram holds the slow syncs.  One node, so
    that its own disk decides the commit: with three, the followers' disks
    may commit an entry before the leader's sync ends, and whether the
    FSYNC stage is known at answer time would be a race."""
    with harness.Cluster(1, metrics=True, slow_request_ms=100) as c:
        for nd in c.nodes.values():
            nd.extra_args = ["--test-disk-fault", "fdatasync:DELAY=%d" % FSYNC_DELAY_MS]
        lead = c.start_and_lead()
        offs = {i: c.log_size(i) for i in c.nodes}
        for i in c.nodes:
            c.signal_nowait(i, signal.SIGUSR2)
        for i in c.nodes:  # the signal is handled on the loop: wait for it
            c.wait_log(i, r"TEST: SIGUSR2: every fdatasync", since=offs[i])
        since = c.log_size(lead)
        with c.client(lead, timeout=T(20)) as cl:
            r = cl.call(harness.req_set(b"slow-disk", b"v"))
            assert r.status == OK, harness.status_name(r.status)
        line = c.wait_log(lead, r"slow request: set .*", timeout=T(10), since=since).group(0)
        stage = {}
        for name in ("FSYNC", "COMMIT", "APPLY"):
            m = re.search(r"RAFTKV_STAGE_US_%s=(\d+)" % name, line)
            assert m, "RAFTKV_STAGE_US_%s missing or empty in %r" % (name, line)
            stage[name] = int(m.group(1))
        # the entry's own sync starts after it was written: at least the
        # delay (less the history's 1 ms resolution) after arrival
        floor_us = FSYNC_DELAY_MS * 1000 - 2000
        assert stage["FSYNC"] >= floor_us, (stage, line)
        assert stage["COMMIT"] >= stage["FSYNC"] - 2000, (stage, line)
        assert "local fdatasync after" in line, line
        ms = scrape(c.nodes[lead].metrics_port)
        slow = ms[("raftkv_disk_fsync_duration_seconds_count", "")] - \
            ms[("raftkv_disk_fsync_duration_seconds_bucket", '{le="0.25"}')]
        assert slow >= 1, "no fdatasync over 0.25 s in the histogram"
        report("stages (us): %r; %d syncs over 0.25 s" % (stage, slow))


def check_runtime_member_series():
    """A member added at runtime, absent from the leader's config file when
    it started, gets its lag and traffic series on the leader."""
    from test_membership import add_node_to_config, member_ok, wait_members
    # a fixed [cluster] id: a derived one changes with the [node.N] list
    with harness.Cluster(3, cluster_id=os.urandom(16).hex(), metrics=True) as c:
        c.start()
        lead = c.wait_leader()
        add_node_to_config(c, 4)
        c.start_node(4)
        member_ok(c, "add", "4")
        wait_members(c, {1: "voter", 2: "voter", 3: "voter", 4: "voter"}, "node 4 promoted")
        lead = c.wait_leader()
        key = ("raftkv_raft_append_entries_sent_total", '{peer="4"}')
        wait_until(lambda: scrape(c.nodes[lead].metrics_port).get(key, 0) > 0, T(10),
                   "the leader's series for node 4")
        m = scrape(c.nodes[lead].metrics_port)
        assert ("raftkv_raft_follower_lag_entries", '{peer="4"}') in m, sorted(m)
        report("leader %d: node 4 sent %d appends, lag %d" % (
            lead, m[key], m[("raftkv_raft_follower_lag_entries", '{peer="4"}')]))


def check_off_by_default():
    """Without a metrics address nothing listens: the node starts as before."""
    with harness.Cluster(1) as c:
        c.start_and_lead()
        assert "metrics: serving" not in c.log(1), "metrics served without being configured"


if __name__ == "__main__":
    main([check_promtool_clean, check_request_counters, check_readyz_flips, check_ctl_metrics,
          check_slow_request_logged, check_slow_fsync_logged, check_runtime_member_series, check_off_by_default])
