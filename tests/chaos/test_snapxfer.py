#!/usr/bin/python3
"""test_snapxfer.py - snapshot transfers cut in the middle (issue 14): the
leader killed, the receiving follower killed, and the follower partitioned
from the leader, each while a snapshot is on its way.  The transfer is
paced (cluster.snapshot_send_rate) so that "in the middle" is a state the
test waits for -- the follower's snap/snapshot.rx exists and holds part of
the data -- not a moment it hopes to hit.  Every time the follower must end
up with every acknowledged key, and no half-received file may be left.

Runs in network namespaces (tests/chaos/nemesis.py's Net): needs root;
exit 77 (skipped) otherwise, a failure when CI=true.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import nemesis  # noqa: E402  (exits 77 without root or `ip`)
from nemesis import Net, NsCluster  # noqa: E402
import harness  # noqa: E402
import pxharness  # noqa: E402
from harness import (OK, Session, T, expect, expect_status, main, report, req_get,  # noqa: E402
                     wait_until)

KEYS = 480
VALUE = 8192                 # ~3.9 MB of data
RATE = 1 << 20               # bytes/s: the transfer takes about 4 s


def rx_path(c, i):
    return os.path.join(c.nodes[i].data_dir, "snap", "snapshot.rx")


def rx_size(c, i):
    try:
        return os.path.getsize(rx_path(c, i))
    except OSError:
        return -1


def value(k, gen):
    return (b"%d-%05d-" % (gen, k)) * (VALUE // 8)


class Transfer:
    """A 3-node cluster in namespaces where follower f was down while the
    others wrote a few MB and compacted their logs past it; start() brings
    f back and returns once a transfer to it is part-way."""

    def __init__(self, net):
        self.c = NsCluster(3, net, name="snapxfer", snapshot_entries=100,
                           snapshot_send_rate=RATE)

    def __enter__(self):
        self.c.__enter__()
        return self

    def __exit__(self, *exc):
        return self.c.__exit__(*exc)

    def prepare(self):
        c = self.c
        c.start()
        self.lead = c.wait_leader()
        self.f = [i for i in c.nodes if i != self.lead][0]
        self.other = [i for i in c.nodes if i not in (self.lead, self.f)][0]
        self.s = Session(c)
        self.want = {}
        self.write(0, 20)
        c.wait_applied(self.f, c.status(self.lead).commit_index)
        f_last = c.status(self.f).last_index
        c.kill(self.f)
        self.write(1, KEYS)
        # the leader's snapshot must cover more than f's log plus the
        # entries kept behind a snapshot, or f catches up from the log
        wait_until(lambda: (st := c.status(self.lead)) and st.snapshot_index > f_last + 20 and st,
                   T(20), "leader %d's snapshot to pass node %d's log" % (self.lead, self.f))

    def write(self, gen, n):
        for k in range(n):
            key = b"x%05d" % k
            self.want[key] = value(k, gen)
            expect_status(self.s.set(key, self.want[key]), OK, "write %r" % key)

    def start_half_way(self):
        self.prepare()
        c = self.c
        c.start_node(self.f)
        total = KEYS * VALUE
        # (the receive file grows in 1 MiB steps: its write buffer)
        size = wait_until(lambda: 0 < (n := rx_size(c, self.f)) < total * 3 // 4 and n,
                          T(20), "node %d to have received part of the snapshot" % self.f)
        return size

    def check_done(self, lead):
        """f (and everyone) serves every acknowledged key and no receive
        file is left behind."""
        c = self.c
        target = c.status(lead).commit_index
        c.wait_applied(self.f, target, T(60))
        with c.client(self.f) as cl:
            for k, v in self.want.items():
                r = cl.call(req_get(k, stale=True))
                expect(r.status == OK and r.get.value == v, "node %d: %r = %s (%d bytes)", self.f,
                       k, r.status, len(r.get.value))
        st = c.status(self.f)
        expect(st.keys == len(self.want), "node %d STATUS keys %d, want %d", self.f, st.keys,
               len(self.want))
        expect(st.snapshot_index > 0, "node %d installed no snapshot", self.f)
        wait_until(lambda: rx_size(c, self.f) < 0, T(10),
                   "node %d's snapshot.rx to be gone (adopted or removed)" % self.f)
        return st


def with_net(fn):
    def run():
        net = Net(3)
        os.environ.update(CHAOS_NS=net.prefix, CHAOS_NODE_BIN=os.path.abspath(NODE_BIN))
        try:
            Net.reap_stale()
            net.setup()
            fn(net)
        finally:
            net.heal()
            net.teardown()
    run.__name__ = fn.__name__
    return run


@with_net
def test_follower_killed_mid_transfer(net):
    with Transfer(net) as t:
        got = t.start_half_way()
        t.c.kill(t.f)
        # kill -9 leaves the partial file; the restart must not trip on it
        expect(rx_size(t.c, t.f) > 0, "node %d's partial snapshot.rx vanished", t.f)
        t.write(2, 10)  # the two others go on meanwhile
        t.c.start_node(t.f)
        st = t.check_done(t.lead)
        report("node %d killed with %d of %d bytes received; restarted, it got snapshot %d "
               "again from the start and serves all %d keys" %
               (t.f, got, KEYS * VALUE, st.snapshot_index, len(t.want)))


@with_net
def test_leader_killed_mid_transfer(net):
    with Transfer(net) as t:
        got = t.start_half_way()
        t.c.kill(t.lead)
        new = t.c.wait_leader(ids=[t.f, t.other])
        expect(new == t.other, "node %d (the one with the old log) leads", new)
        t.write(2, 10)  # needs f: it commits once f installed the new leader's snapshot
        st = t.check_done(new)
        report("leader %d killed with %d of %d bytes at node %d; new leader %d sent its own "
               "snapshot, installed at %d, all %d keys served" %
               (t.lead, got, KEYS * VALUE, t.f, new, st.snapshot_index, len(t.want)))


@with_net
def test_partition_mid_transfer(net):
    with Transfer(net) as t:
        got = t.start_half_way()
        net.cut(t.f, t.lead)
        net.cut(t.lead, t.f)
        # hold the cut until f noticed it: it no longer follows the leader
        wait_until(lambda: (st := t.c.status(t.f)) and st.leader_id != t.lead, T(20),
                   "node %d to lose leader %d behind the cut" % (t.f, t.lead))
        stuck = rx_size(t.c, t.f)
        t.write(2, 10)  # the leader and the third node commit without f
        net.heal()
        st = t.check_done(t.lead)
        report("partitioned node %d from leader %d with %d (then %d) of %d bytes received; "
               "after the heal it installed snapshot %d, all %d keys served" %
               (t.f, t.lead, got, stuck, KEYS * VALUE, st.snapshot_index, len(t.want)))


NODE_BIN = harness.NODE_BIN
harness.NODE_BIN = nemesis.WRAPPER
pxharness.PROXY_BIN = nemesis.WRAPPER

if __name__ == "__main__":
    main([test_follower_killed_mid_transfer, test_leader_killed_mid_transfer,
          test_partition_mid_transfer])
