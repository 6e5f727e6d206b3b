"""raftkvctl get/set/del/cas/list in every output format, binary values,
exit codes and usage errors, against a real 3-node cluster."""
import base64
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ctlharness import ctl, expect, run, wait_until  # noqa: E402


def test_set_get_del_plain(c):
    expect(c.ctl("set", "k1", "hello"), out=b"OK\n")
    expect(c.ctl("get", "k1"), out=b"hello")
    expect(c.ctl("-o", "plain", "get", "k1"), out=b"hello")
    expect(c.ctl("del", "k1"), out=b"OK\n")
    expect(c.ctl("get", "k1"), rc=3, out=b"", err_has="get k1: not found")
    expect(c.ctl("del", "k1"), rc=3, err_has="del k1: not found")


def test_set_get_table_json(c):
    expect(c.ctl("set", "-o", "table", "k2", "v2"))
    r = expect(c.ctl("-o", "table", "get", "k2"))
    assert r.text.split("\n")[0].split() == ["KEY", "VALUE"], r
    assert r.text.split("\n")[1].split() == ["k2", "v2"], r
    r = expect(c.ctl("-o", "json", "set", "k2", "v3"))
    doc = json.loads(r.out)
    assert doc["ok"] is True and doc["index"] > 0, r
    doc = json.loads(expect(c.ctl("get", "k2", "-o", "json")).out)
    assert doc["key"] == "k2" and doc["value"] == "v3" and doc["applied_index"] >= 1, doc
    doc = json.loads(expect(c.ctl("-o", "json", "del", "k2")).out)
    assert doc["ok"] is True, doc


def test_binary_stdin_roundtrip(c):
    data = bytes(range(256)) * 40 + b"\x00\xff\n"
    expect(c.ctl("set", "bin", "-", input=data), out=b"OK\n")
    expect(c.ctl("get", "bin"), out=data)
    doc = json.loads(expect(c.ctl("-o", "json", "get", "bin")).out)
    assert "value" not in doc and base64.b64decode(doc["value_base64"]) == data, doc
    r = expect(c.ctl("-o", "table", "get", "bin"))
    assert b"\\x00\\x01" in r.out and b"\\xff" in r.out, r
    # Control characters in valid UTF-8 stay a JSON string, escaped.
    expect(c.ctl("set", "ctl", "-", input=b"a\x01b\"\xc3\xa9"))
    doc = json.loads(expect(c.ctl("-o", "json", "get", "ctl")).out)
    assert doc["value"] == "a\x01b\"\u00e9", doc
    doc = json.loads(expect(c.ctl("-o", "json", "--base64", "get", "ctl")).out)
    assert base64.b64decode(doc["value_base64"]) == b"a\x01b\"\xc3\xa9" and "key_base64" in doc, doc


def test_cas(c):
    expect(c.ctl("cas", "--absent", "lock", "me"), out=b"OK\n")
    expect(c.ctl("cas", "--absent", "lock", "you"), rc=4, err_has='current value is "me"')
    r = expect(c.ctl("-o", "json", "cas", "lock", "you", "x"), rc=4)
    assert json.loads(r.out) == {"ok": False, "current": "me"}, r
    expect(c.ctl("cas", "lock", "me", "-", input=b"new\x00val"), out=b"OK\n")
    expect(c.ctl("get", "lock"), out=b"new\x00val")
    expect(c.ctl("cas", "missing", "a", "b"), rc=4, err_has="does not exist")
    r = expect(c.ctl("-o", "json", "cas", "missing", "a", "b"), rc=4)
    assert json.loads(r.out) == {"ok": False, "current_absent": True}, r
    expect(c.ctl("-o", "table", "cas", "lock", "-", "v2", input=b"new\x00val"))
    expect(c.ctl("get", "lock"), out=b"v2")
    expect(c.ctl("cas", "--absent", "lock", "a", "b"), rc=2, err_has="--absent")
    expect(c.ctl("cas", "lock", "-", "-"), rc=2, err_has="stdin")


def test_list(c):
    for k in ["ls/a", "ls/b", "ls/c", "lt/z"]:
        expect(c.ctl("set", k, "1"))
    expect(c.ctl("list", "ls/"), out=b"ls/a\nls/b\nls/c\n")
    expect(c.ctl("list", "ls/", "--limit", "2"), out=b"ls/a\nls/b\n")
    doc = json.loads(expect(c.ctl("-o", "json", "list", "ls/", "-l", "2")).out)
    assert doc == {"keys": [{"key": "ls/a"}, {"key": "ls/b"}], "count": 2, "truncated": True}, doc
    doc = json.loads(expect(c.ctl("-o", "json", "list", "ls/")).out)
    assert doc["count"] == 3 and doc["truncated"] is False, doc
    r = expect(c.ctl("-o", "table", "list", "ls/", "--stale"))
    assert r.text.splitlines() == ["KEY", "ls/a", "ls/b", "ls/c", "(3 keys)"], r
    expect(c.ctl("list", "nothing-here/"), out=b"")
    all_keys = expect(c.ctl("list")).out.split(b"\n")
    assert b"lt/z" in all_keys and b"ls/a" in all_keys


def test_list_pages(c):
    # More keys than one server page (1000): the client pages through.
    script = "".join("set pg/%04d x\n" % i for i in range(1100)).encode()
    expect(ctl("-e", c.endpoints, input=script))
    keys = expect(c.ctl("list", "pg/")).out.split()
    assert len(keys) == 1100 and keys[0] == b"pg/0000" and keys[-1] == b"pg/1099", len(keys)
    assert len(expect(c.ctl("list", "pg/", "--limit", "1050")).out.split()) == 1050


def test_stale_read(c):
    expect(c.ctl("set", "st", "v"))
    # Straight to each node: a stale read is served locally, by followers
    # too, and may lag behind (not found yet) until they apply the write.
    for i in range(1, c.n + 1):
        def fresh():
            r = ctl("-e", c.client(i), "get", "--stale", "st")
            assert (r.rc, r.out) in ((0, b"v"), (3, b"")), r
            return r.rc == 0
        wait_until("node %d to apply the write" % i, fresh)
    # A linearizable read through any node sees it at once.
    for i in range(1, c.n + 1):
        expect(ctl("-e", c.client(i), "set", "st", str(i)))
        expect(ctl("-e", c.client(i % c.n + 1), "get", "st"), out=str(i).encode())


def test_endpoints(c):
    expect(c.ctl("set", "ep", "1"))
    # Every node works as the endpoint: followers redirect writes to the leader.
    for i in range(1, c.n + 1):
        expect(ctl("-e", c.client(i), "set", "ep", str(i)), out=b"OK\n")
        expect(ctl("get", "ep", env={"RAFTKV_ENDPOINT": c.client(i)}), out=str(i).encode())
    # A dead endpoint first in the list is skipped.
    expect(ctl("-e", "127.0.0.1:1," + c.client(2), "get", "ep"), out=b"3")
    expect(ctl("-e", "unix:" + c.dir + "/proxy.sock," + c.client(1), "get", "ep"), out=b"3")


def test_usage_errors_nocluster(c):
    expect(ctl("get"), rc=2, err_has="expected")
    expect(ctl("set", "onlykey"), rc=2)
    expect(ctl("frobnicate"), rc=2, err_has="unknown command 'frobnicate'")
    expect(ctl("get", "--bogus", "k"), rc=2, err_has="--bogus")
    expect(ctl("-o", "yaml", "get", "k"), rc=2, err_has="table, json, plain or prometheus")
    expect(ctl("--timeout", "soon", "get", "k"), rc=2, err_has="--timeout")
    expect(ctl("list", "--limit", "x"), rc=2)
    expect(ctl("-e", "not-an-address", "get", "k"), rc=2, err_has="expected host:port")
    r = expect(ctl("--help"))
    assert b"Exit codes" in r.out and b"transfer-leader" in r.out, r
    for cmd in ["get", "set", "del", "cas", "list", "status", "members", "transfer-leader", "bench"]:
        r = expect(ctl(cmd, "--help"))
        assert r.out.startswith(b"Usage: raftkvctl [OPTIONS] " + cmd.encode()), r
    expect(ctl("config", "--help"))
    assert expect(ctl("--version")).out.startswith(b"raftkvctl ")


def test_unreachable_nocluster(c):
    r = expect(ctl("-e", "127.0.0.1:1", "-t", "300ms", "get", "k"), rc=5, err_has="cannot reach raftkv")
    assert r.err.count("\n") == 1, r
    expect(ctl("-e", "unix:/nonexistent/raftkv.sock", "-t", "300ms", "set", "k", "v"), rc=5,
           err_has="No such file")


if __name__ == "__main__":
    run([test_usage_errors_nocluster, test_unreachable_nocluster, test_set_get_del_plain, test_set_get_table_json,
         test_binary_stdin_roundtrip, test_cas, test_list, test_list_pages, test_stale_read, test_endpoints])
