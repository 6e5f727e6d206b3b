"""raftkvctl config generate: the file it writes is what raftkv-node
accepts (every other test file's cluster is also started from one), for
several sizes; bad options are usage errors."""
import os
import re
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ctlharness import Cluster, ctl, expect, free_base_port, run  # noqa: E402


def test_shape_nocluster(c):
    # a routable host without TLS: refused unless insecure is asked for
    expect(ctl("config", "generate", "--nodes", "5", "--host", "10.0.0.7"), rc=2, err_has="--insecure")
    r = expect(ctl("config", "generate", "--nodes", "5", "--base-port", "9000", "--host", "10.0.0.7",
                   "--insecure"))
    text = r.text
    assert "\ninsecure = true\n" in text, text
    assert re.findall(r"^\[(\S+)\]$", text, re.M) == ["cluster"] + ["node.%d" % i for i in range(1, 6)] + ["proxy"]
    for i in range(1, 6):
        assert "peer = 10.0.0.7:%d\nclient = 10.0.0.7:%d\nadmin = /run/raftkv/node-%d.sock" % (
            9100 + i, 9000 + i, i) in text, text
    assert "listen = 10.0.0.7:9000\nunix = /run/raftkv/proxy.sock" in text, text
    assert "data_dir_base = /var/lib/raftkv" in text and "name = raftkv" in text, text
    r = expect(ctl("config", "generate", "--nodes", "2", "--host", "::1"))
    assert "client = [::1]:7001" in r.text, r


def test_file_matches_stdout_nocluster(c):
    d = tempfile.mkdtemp()
    try:
        path = os.path.join(d, "r.conf")
        args = ["config", "generate", "--nodes", "3", "--data-dir-base", d + "/data", "--run-dir", d]
        r = expect(ctl(*args, "-f", path), out=b"")
        assert "wrote " + path in r.err, r
        with open(path, "rb") as f:
            written = f.read()
        again = expect(ctl(*args)).out
        # the same file but for the cluster id, random on every run
        id_rx = re.compile(rb"^id = ([0-9a-f]{32})$", re.M)
        ids = id_rx.findall(written) + id_rx.findall(again)
        assert len(ids) == 2 and ids[0] != ids[1], ids
        assert id_rx.sub(b"", written) == id_rx.sub(b"", again)
        expect(ctl(*args, "-f", d + "/no/such/dir/x.conf"), rc=1, err_has="cannot write")
    finally:
        shutil.rmtree(d)


def test_bad_options_nocluster(c):
    expect(ctl("config", "generate"), rc=2, err_has="--nodes")
    expect(ctl("config", "generate", "--nodes", "0"), rc=2)
    expect(ctl("config", "generate", "--nodes", "65"), rc=2)
    expect(ctl("config", "generate", "--nodes", "3", "--base-port", "65500"), rc=2, err_has="no room")
    expect(ctl("config", "generate", "--nodes", "3", "--run-dir", "relative"), rc=2, err_has="not an absolute path")
    expect(ctl("config", "generate", "--nodes", "3", "--host", "a b"), rc=2, err_has="is not host:port")
    expect(ctl("config"), rc=2)
    expect(ctl("config", "frob"), rc=2)


def test_add_node_nocluster(c):
    """--add-node N appends one section with the next free ports, byte for byte
    leaving the rest; without --file it only prints; refusals change nothing."""
    d = tempfile.mkdtemp()
    try:
        path = os.path.join(d, "r.conf")
        expect(ctl("config", "generate", "--nodes", "3", "--base-port", "9000", "--run-dir", d, "-f", path))
        with open(path) as f:
            before = f.read() + "# an operator's comment, kept\n"
        with open(path, "w") as f:
            f.write(before)
        section = "\n[node.4]\npeer = 127.0.0.1:9104\nclient = 127.0.0.1:9004\nadmin = %s/node-4.sock\n" % d
        expect(ctl("-c", path, "config", "generate", "--add-node", "4"), out=section.encode())
        with open(path) as f:
            assert f.read() == before, "printing changed the file"
        r = expect(ctl("config", "generate", "--add-node", "4", "-f", path), out=b"")
        assert "member add 4" in r.err, r
        with open(path) as f:
            after = f.read()
        assert after == before + section, after
        # refused: the id is taken, a nonsense id, with --nodes, no such file
        expect(ctl("config", "generate", "--add-node", "4", "-f", path), rc=2, err_has="already has [node.4]")
        expect(ctl("config", "generate", "--add-node", "0", "-f", path), rc=2)
        expect(ctl("config", "generate", "--add-node", "5", "--nodes", "3", "-f", path), rc=2)
        expect(ctl("config", "generate", "--add-node", "5", "-f", d + "/absent.conf"), rc=1, err_has="cannot read")
        with open(path) as f:
            assert f.read() == after, "a refused --add-node changed the file"
        # --host puts the node elsewhere
        expect(ctl("config", "generate", "--add-node", "9", "--host", "10.1.2.3", "-f", path))
        with open(path) as f:
            tail = f.read()[len(after):]
        assert tail == "\n[node.9]\npeer = 10.1.2.3:9105\nclient = 10.1.2.3:9005\nadmin = %s/node-9.sock\n" % d, tail
        # a file without a final newline: the section still starts on its own
        # line; the new ports skip those any address of the file holds
        bare = os.path.join(d, "bare.conf")
        with open(bare, "w") as f:
            f.write("[cluster]\nname = b\n[node.1]\npeer = 127.0.0.1:7002\nclient = 127.0.0.1:7001")
        expect(ctl("config", "generate", "--add-node", "2", "-f", bare))
        with open(bare) as f:
            text = f.read()
        assert text.endswith("client = 127.0.0.1:7001\n\n[node.2]\npeer = 127.0.0.1:7003\n"
                             "client = 127.0.0.1:7004\nadmin = /run/raftkv/node-2.sock\n"), text
    finally:
        shutil.rmtree(d)


def test_single_node_cluster_nocluster(c):
    one = Cluster(n=1)
    try:
        expect(one.ctl("set", "k", "v"))
        expect(one.ctl("get", "k"), out=b"v")
        assert one.leader() == 1
    finally:
        one.close()


def test_three_node_cluster(c):
    # c itself was started from a generated file; it elects and replicates.
    expect(c.ctl("set", "cg", "1"))
    for i in range(1, 4):
        expect(ctl("-e", c.client(i), "get", "cg"), out=b"1")
    assert free_base_port(3) > 0


if __name__ == "__main__":
    run([test_shape_nocluster, test_file_matches_stdout_nocluster, test_bad_options_nocluster,
         test_add_node_nocluster, test_single_node_cluster_nocluster, test_three_node_cluster])
