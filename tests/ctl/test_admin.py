"""raftkvctl status, members, transfer-leader, and what it says when the
cluster loses its quorum or is down entirely."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ctlharness import ctl, expect, run, wait_until  # noqa: E402


def test_status_formats(c):
    leader = c.leader()
    r = expect(c.ctl("status"))
    lines = r.text.splitlines()
    assert lines[0] == "cluster: 3 of 3 nodes reachable, leader node %d (term %s" % (
        leader, lines[0].split("term ")[1].rstrip(")")) + ")", r
    assert lines[1].split() == ["ID", "ADDRESS", "ROLE", "TERM", "COMMIT", "APPLIED", "LAG", "HEALTH"], r
    rows = [l.split() for l in lines[2:]]
    assert [row[0].rstrip("*") for row in rows] == ["1", "2", "3"], r
    for row in rows:
        assert row[1] == c.client(int(row[0].rstrip("*"))), row
        assert row[2] == ("leader" if row[0].endswith("*") else "follower"), row
        assert row[7] == "ok", row
    plain = expect(c.ctl("-o", "plain", "status")).text.splitlines()
    assert len(plain) == 3 and all(len(l.split("\t")) == 8 for l in plain), plain
    doc = json.loads(expect(c.ctl("-o", "json", "status")).out)
    assert doc["leader"] == leader and doc["reachable"] == 3 and doc["total"] == 3, doc
    for n in doc["nodes"]:
        assert n["reachable"] and n["health"] == "ok" and n["lag"] >= 0, n
        assert n["role"] in ("leader", "follower") and n["commit_index"] >= n["applied_index"] - 0, n
        assert n["leader"] == (n["id"] == leader), n
    # The same view from any node.
    for i in range(1, c.n + 1):
        doc = json.loads(expect(ctl("-e", c.client(i), "-o", "json", "status")).out)
        assert doc["leader"] == leader and doc["reachable"] == 3, doc


def test_status_watch(c):
    r = expect(c.ctl("status", "--watch", "--interval", "100ms", "--count", "3"))
    assert r.text.count("cluster: 3 of 3 nodes reachable") == 3, r
    r = expect(c.ctl("-o", "json", "status", "-w", "-i", "50ms", "-n", "2"))
    docs = [json.loads(l) for l in r.text.splitlines()]
    assert len(docs) == 2 and all(d["reachable"] == 3 for d in docs), r


def test_members(c):
    leader = c.leader()
    r = expect(c.ctl("members"))
    lines = r.text.splitlines()
    assert lines[0].split() == ["ID", "PEER", "CLIENT", "ROLE", "MATCH", "LAG", "HEALTH", "LEADER"], r
    for i, l in enumerate(lines[1:], start=1):
        f = l.split()
        assert f[:4] + f[-1:] == [str(i), "127.0.0.1:%d" % (c.base + 100 + i), c.client(i), "voter",
                                  "yes" if i == leader else "no"], f
        assert f[6] in ("ok", "catching-up"), f
    plain = expect(c.ctl("-o", "plain", "members")).text.splitlines()
    assert plain[0].split("\t")[:3] == ["1", "127.0.0.1:%d" % (c.base + 101), c.client(1)], plain
    doc = json.loads(expect(c.ctl("-o", "json", "members")).out)
    assert [m["id"] for m in doc["members"]] == [1, 2, 3], doc
    assert sum(m["leader"] for m in doc["members"]) == 1 and all(m["voter"] and m["role"] == "voter" for m in doc["members"]), doc


def test_transfer_leader(c):
    old = c.leader()
    target = old % 3 + 1
    r = expect(c.ctl("transfer-leader", str(target)))
    assert r.text.startswith("node %d leads now (term " % target), r
    assert c.leader() == target
    # Without an id: the most caught-up follower, whoever that is.
    doc = json.loads(expect(c.ctl("-o", "json", "transfer-leader")).out)
    assert doc["leader_id"] != target and doc["term"] > 0, doc
    wait_until("status to agree", lambda: c.leader() == doc["leader_id"])
    # Through a follower: the request is redirected to the leader.
    follower = doc["leader_id"] % 3 + 1
    r = expect(ctl("-e", c.client(follower), "-o", "plain", "transfer-leader", str(follower)))
    assert r.out == b"%d\n" % follower, r
    # To the node that already leads: nothing to do.
    expect(c.ctl("-o", "plain", "transfer-leader", str(follower)), out=b"%d\n" % follower)
    expect(c.ctl("transfer-leader", "9"), rc=1, err_has="no such voting member")
    expect(c.ctl("transfer-leader", "zero"), rc=2)


def test_unavailable(c):
    """Last: stops nodes."""
    expect(c.ctl("set", "before", "1"))
    leader = c.leader()
    others = [i for i in range(1, 4) if i != leader]
    c.stop(others[0])
    c.stop(others[1])
    # The old leader steps down once it misses its quorum (check-quorum).
    r = c.ctl("-t", "2s", "set", "k", "v")
    assert r.rc == 5, r
    # UNAVAILABLE, or TIMEOUT if the leader had not noticed yet.
    assert "unavailable" in r.err or "timed out" in r.err, r
    assert "1 of 3 nodes reachable" in r.err and r.err.count("\n") == 1, r
    r = c.ctl("status")
    assert r.rc == 5 and b"1 of 3 nodes reachable" in r.out and b"down" in r.out, r
    doc = json.loads(c.ctl("-o", "json", "status").out)
    assert doc["reachable"] == 1 and [n["health"] for n in doc["nodes"]].count("down") == 2, doc
    # A stale read still works on the lone node.
    expect(ctl("-e", c.client(leader), "get", "--stale", "before"), out=b"1")
    c.stop(leader)
    r = c.ctl("-t", "500ms", "get", "before")
    assert r.rc == 5 and "cannot reach raftkv" in r.err and "Connection refused" in r.err, r
    expect(c.ctl("-t", "500ms", "status"), rc=5)
    expect(c.ctl("-t", "500ms", "members"), rc=5)
    expect(c.ctl("-t", "500ms", "transfer-leader"), rc=5)
    expect(c.ctl("-t", "500ms", "bench", "--requests", "10"), rc=5)
    # Back up: the acknowledged write is still there.
    for i in range(1, 4):
        c.start(i)
    c.wait_leader()
    expect(c.ctl("get", "before"), out=b"1")


if __name__ == "__main__":
    run([test_status_formats, test_status_watch, test_members, test_transfer_leader, test_unavailable])
