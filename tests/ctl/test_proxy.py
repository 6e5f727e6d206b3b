"""raftkvctl through a proxy: status shows the proxy's own view.  The real
raftkv-proxy is not built yet, so a stand-in on a unix socket answers
STATUS the way issue 5 specifies (StatusResponse.proxy plus the fanout
nodes), encoded by hand in protobuf wire format."""
import json
import os
import shutil
import socket
import struct
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ctlharness import ctl, expect, run  # noqa: E402


def varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def field(num, value):
    """One field: int/bool as varint, str/bytes as length-delimited."""
    if isinstance(value, (bool, int)):
        return varint(num << 3) + varint(int(value))
    if isinstance(value, str):
        value = value.encode()
    return varint(num << 3 | 2) + varint(len(value)) + value


def msg(*fields):
    return b"".join(field(n, v) for n, v in fields)


def read_varint(buf, i):
    v = shift = 0
    while True:
        b = buf[i]
        i += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return v, i


def request_id_and_op(payload):
    i, rid, op = 0, 0, None
    while i < len(payload):
        key, i = read_varint(payload, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = read_varint(payload, i)
            if num == 1:
                rid = v
        elif wt == 2:
            n, i = read_varint(payload, i)
            i += n
            if num >= 10:
                op = num
        else:
            raise ValueError("unexpected wire type %d" % wt)
    return rid, op


def status_response(rid):
    members = [msg((1, i), (2, "10.0.0.%d:7100" % i), (3, "10.0.0.%d:7001" % i), (4, True)) for i in (1, 2, 3)]

    def node(i, role):
        return msg((1, i), (2, role), (3, 7), (4, 2), (5, 100), (6, 99 if i != 2 else 100), (7, 100),
                   (8, 0), *[(9, m) for m in members], (11, "0.1.0"), (12, 5000), (13, "10.0.0.%d:7001" % i))
    views = [msg((1, 1), (2, "10.0.0.1:7001"), (3, True), (4, 2), (5, 1500), (6, 1), (7, 500), (8, 0)),
             msg((1, 2), (2, "10.0.0.2:7001"), (3, True), (4, 5), (5, 2500), (6, 0), (7, 20), (8, 900)),
             msg((1, 3), (2, "10.0.0.3:7001"), (3, False), (4, 0), (5, 0), (6, 0), (7, 480), (8, 0))]
    proxy = msg((1, 2), (2, 12345), *[(3, v) for v in views], (4, 1), (5, 7), (6, "0.1.0-proxy"), (7, 60000))
    sr = msg((2, proxy), (3, node(1, "follower")), (3, node(2, "leader")))
    return msg((1, rid), (2, 0), (15, sr))


def unavailable(rid):
    return msg((1, rid), (2, 3), (3, "stand-in proxy: only STATUS"))


class FakeProxy:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(16)
        self.requests = []
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn):
        with conn:
            buf = b""
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
                while len(buf) >= 4 and len(buf) >= 4 + struct.unpack(">I", buf[:4])[0]:
                    n = struct.unpack(">I", buf[:4])[0]
                    payload, buf = buf[4:4 + n], buf[4 + n:]
                    rid, op = request_id_and_op(payload)
                    self.requests.append(op)
                    out = status_response(rid) if op == 15 else unavailable(rid)
                    conn.sendall(struct.pack(">I", len(out)) + out)

    def close(self):
        self.sock.close()


def with_proxy(fn):
    def wrapper(c):
        d = tempfile.mkdtemp()
        try:
            proxy = FakeProxy(os.path.join(d, "proxy.sock"))
            fn(d, proxy)
            proxy.close()
        finally:
            shutil.rmtree(d)
    wrapper.__name__ = fn.__name__
    return wrapper


@with_proxy
def test_status_table_nocluster(d, proxy):
    r = expect(ctl("-e", "unix:" + d + "/proxy.sock", "status"))
    lines = r.text.splitlines()
    assert lines[0] == "proxy: leader node 2 for 12.3s, 1 writes queued, 7 in flight, up 60s, version 0.1.0-proxy", r
    assert lines[1] == "cluster: 2 of 3 nodes reachable, leader node 2 (term 7)", r
    assert lines[2] == "node 3: down", r
    assert lines[3].split() == ["ID", "ADDRESS", "ROLE", "TERM", "COMMIT", "APPLIED", "LAG", "HEALTH", "INFLIGHT",
                                "LATENCY", "READS", "WRITES"], r
    assert lines[-3].split() == ["1", "10.0.0.1:7001", "follower", "7", "100", "99", "1", "ok", "2", "1.5ms", "500",
                                 "0"], r
    assert lines[-2].split() == ["2*", "10.0.0.2:7001", "leader", "7", "100", "100", "0", "ok", "5", "2.5ms", "20",
                                 "900"], r
    assert lines[-1].split() == ["3", "10.0.0.3:7001", "-", "-", "-", "-", "0", "down", "0", "0.0ms", "480", "0"], r
    assert proxy.requests == [15], proxy.requests  # one STATUS (fanout) answers for every node


@with_proxy
def test_status_json_members_nocluster(d, proxy):
    ep = "unix:" + d + "/proxy.sock"
    doc = json.loads(expect(ctl("-e", ep, "-o", "json", "status")).out)
    assert doc["proxy"] == {"leader_id": 2, "leader_since_ms": 12345, "queued": 1, "in_flight": 7,
                            "uptime_ms": 60000, "version": "0.1.0-proxy"}, doc
    assert [(n["id"], n["health"], n["proxy"]["healthy"]) for n in doc["nodes"]] == [
        (1, "ok", True), (2, "ok", True), (3, "down", False)], doc
    r = expect(ctl("-e", ep, "-o", "plain", "members"))
    assert r.text.splitlines()[1].split("\t") == ["2", "10.0.0.2:7100", "10.0.0.2:7001", "voter", "-", "-",
                                                        "-", "yes"], r


@with_proxy
def test_default_endpoint_is_proxy_socket_nocluster(d, proxy):
    conf = os.path.join(d, "raftkv.conf")
    expect(ctl("config", "generate", "--nodes", "3", "--base-port", "1000", "--run-dir", d, "-f", conf))
    # No -e: the config's proxy socket comes first.
    r = expect(ctl("-c", conf, "-o", "plain", "status"))
    assert len(r.text.splitlines()) == 3 and proxy.requests == [15], r
    # An unavailable answer from the proxy is retried until the deadline, then reported.
    r = ctl("-c", conf, "-t", "300ms", "set", "k", "v")
    assert r.rc == 5 and "stand-in proxy: only STATUS" in r.err, r


if __name__ == "__main__":
    run([test_status_table_nocluster, test_status_json_members_nocluster, test_default_endpoint_is_proxy_socket_nocluster])
