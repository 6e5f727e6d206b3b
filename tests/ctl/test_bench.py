"""raftkvctl bench on short runs: the figures are sane (work done,
percentiles ordered) in every output format, and a run outlives a leader
change by following NOT_LEADER to the new leader."""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ctlharness import CTL, SCALE, _die_with_parent, _live, expect, run, wait_until  # noqa: E402

PCTS = ["min", "p50", "p90", "p99", "p999", "max"]


def check(doc, requests=None):
    assert doc["errors"] == 0 and doc["ok"] > 0 and doc["seconds"] > 0, doc
    if requests is not None:
        assert doc["ok"] == requests and doc["requests"] == requests, doc
    lat = doc["all"]["latency_us"]
    vals = [lat[p] for p in PCTS]
    assert vals == sorted(vals) and vals[0] > 0, lat
    assert doc["all"]["ops_per_sec"] > 0, doc


def test_writes(c):
    doc = json.loads(expect(c.ctl("-o", "json", "bench", "--clients", "8", "--requests", "2000", "--ratio", "1:0",
                                  "--value-size", "100")).out)
    check(doc, 2000)
    assert doc["set"]["count"] == 2000 and doc["get"]["count"] == 0, doc
    assert doc["target"] == c.client(c.leader()), doc


def test_mixed_pipelined(c):
    doc = json.loads(expect(c.ctl("-o", "json", "bench", "--clients", "4", "--pipeline", "8", "--requests", "3000",
                                  "--keys", "50", "--ratio", "1:3")).out)
    check(doc, 3000)
    assert doc["set"]["count"] > 0 and doc["get"]["count"] > doc["set"]["count"], doc
    assert doc["misses"] == 0, doc  # the keys were written first


def test_stale_duration(c):
    doc = json.loads(expect(c.ctl("-o", "json", "bench", "--clients", "8", "--duration", "1s", "--ratio", "0:1",
                                  "--stale", "--value-size", "10")).out)
    check(doc)
    assert 0.9 < doc["seconds"] < 5 and doc["stale"] is True and doc["set"]["count"] == 0, doc


def test_table_and_plain(c):
    r = expect(c.ctl("bench", "--clients", "2", "--requests", "200"))
    lines = r.text.splitlines()
    assert lines[0].startswith("bench: 2 clients x pipeline 1, 100-byte values"), r
    assert lines[1].startswith("200 requests in ") and "200 ok, 0 errors" in lines[1], r
    assert lines[2].startswith("leader changes seen: 0 (term ") and "longest gap between completions" in lines[2], r
    assert lines[3].split()[0] == "all" and "p99.9" in lines[3], r
    assert lines[4].split()[0] == "set" and lines[5].split()[0] == "get", r
    r = expect(c.ctl("-o", "plain", "bench", "--clients", "2", "--requests", "100", "--ratio", "0:1"))
    kv = dict(l.split("\t") for l in r.text.splitlines())
    assert int(kv["ok"]) == 100 and int(kv["errors"]) == 0 and float(kv["ops_per_sec"]) > 0, kv
    assert float(kv["p50_us"]) <= float(kv["p99_us"]) <= float(kv["max_us"]), kv
    assert int(kv["leader_changes"]) == 0 and float(kv["max_gap_us"]) > 0, kv


def commit_index(c):
    doc = json.loads(expect(c.ctl("-o", "json", "status")).out)
    return max(n.get("commit_index", 0) for n in doc["nodes"])


def test_follows_leader(c):
    """Straight to the leader; leadership moves mid-run.  Without following
    the hint every later request failed NOT_LEADER (issue 14)."""
    old = c.leader()
    target = [i for i in range(1, c.n + 1) if i != old][0]
    start = commit_index(c)
    p = subprocess.Popen([CTL, "-e", c.client(old), "-o", "json", "bench", "--clients", "8",
                          "--duration", "%ds" % int(8 * SCALE), "--ratio", "1:0"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_die_with_parent)
    _live.add(p.pid)
    try:
        wait_until("the bench's writes to commit", lambda: commit_index(c) > start + 500)
        expect(c.ctl("transfer-leader", str(target)))
        at_transfer = commit_index(c)
        out, err = p.communicate(timeout=60 * SCALE)
    finally:
        _live.discard(p.pid)
    doc = json.loads(out)
    assert doc["redirected"] > 0 and doc["leader_changes"] == 1, doc
    # While the transfer runs the old leader refuses with UNAVAILABLE (a
    # real client retries those); nothing else may fail.
    assert set(doc["errors_by_status"]) <= {"UNAVAILABLE"}, (doc, err)
    assert doc["errors"] == sum(doc["errors_by_status"].values()), doc
    # The old leader refuses writes now, so these went to the new one.
    assert commit_index(c) > at_transfer + 500, (doc, at_transfer)


def test_prefill_survives_leader_change(c):
    """The prefill must write every key even when leadership moves under it:
    writes answered UNAVAILABLE or NOT_LEADER are sent again (before, one
    such answer failed the prefill and a 10 M-key run with it)."""
    old = c.leader()
    target = [i for i in range(1, c.n + 1) if i != old][0]
    keys = int(60000 * SCALE)
    start = commit_index(c)
    p = subprocess.Popen([CTL, "-e", c.client(old), "-o", "json", "bench", "--clients", "16", "--keys", str(keys),
                          "--requests", "2000", "--ratio", "0:1"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_die_with_parent)
    _live.add(p.pid)
    try:
        wait_until("the prefill to be under way", lambda: commit_index(c) > start + 2000)
        expect(c.ctl("transfer-leader", str(target)))
        transferred_during_prefill = commit_index(c) < start + keys
        out, err = p.communicate(timeout=120 * SCALE)
    finally:
        _live.discard(p.pid)
    assert p.returncode == 0, (out, err)
    assert transferred_during_prefill, "the prefill ended before the transfer: raise keys"
    doc = json.loads(out)
    assert doc["prefill_retried"] > 0 and b"sent again after a leader change" in err, (doc, err)
    assert doc["errors"] == 0 and doc["misses"] == 0, doc
    listed = expect(c.ctl("-o", "plain", "list", "bench:")).out.split()
    assert len(set(listed)) == keys, (len(listed), keys)


def test_usage_nocluster(c):
    from ctlharness import ctl
    expect(ctl("bench", "--ratio", "x"), rc=2, err_has="--ratio")
    expect(ctl("bench", "--clients", "0"), rc=2)
    expect(ctl("bench", "--duration", "-1"), rc=2)


if __name__ == "__main__":
    run([test_usage_nocluster, test_writes, test_mixed_pipelined, test_stale_duration, test_table_and_plain, test_prefill_survives_leader_change,
         test_follows_leader])
