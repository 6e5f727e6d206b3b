#!/usr/bin/python3
"""Membership at runtime through raftkvctl: grow 3 -> 4 -> 5 and shrink back
(also under a steady write load), remove the leader, two concurrent changes
(one refused), a learner added with --learner stays one (across a leader
change too), every leader promotes a caught-up learner (not only the one
that added it) but never one that has not caught up, requests on the TCP
client port are refused, and a follower that lost its data comes back
through `member replace`, or through remove + add by hand."""
import json
import os
import shutil
import subprocess
import time

from harness import (OK, Client, Cluster, Node, Session, T, expect, expect_status, frame,
                     free_listen_ports, main, pb, report, req_get, req_transfer, status_name,
                     wait_until)
from test_diskfault import Writer

FAILED_PRECONDITION_NAME, PERMISSION_DENIED_NAME = "FAILED_PRECONDITION", "PERMISSION_DENIED"

CTL = os.environ.get("RAFTKV_CTL") or os.path.join(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))), "build", "src", "ctl", "raftkvctl")


def ctl(c, *args, timeout=None):
    """Run raftkvctl against the cluster's config; (exit code, stdout, stderr)."""
    argv = [CTL, "-c", c.config, "-t", "%ds" % int(T(15))] + list(args)
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=timeout or T(60))
    return p.returncode, p.stdout, p.stderr


def add_node_to_config(c, i):
    """A new [node.i] in the shared config file, as an operator would add it."""
    peer, client = free_listen_ports(2)
    c.nodes[i] = Node(c, i, peer, client)
    c.nodes[i].extra_args = ["--join"]
    c.write_config()


def grown_cluster(n):
    """A cluster that will grow: its [cluster] id is written down, since a
    derived one changes with the [node.N] list (raftkv-node(8))."""
    return Cluster(n, cluster_id=os.urandom(16).hex())


def members(c):
    code, out, err = ctl(c, "-o", "json", "members")
    expect(code == 0, "members: exit %d: %s", code, err)
    return {m["id"]: m for m in json.loads(out)["members"]}


def wait_members(c, want, what):
    """want: {id: 'voter'|'learner'} exactly, as the leader reports it."""
    def cond():
        try:
            ms = members(c)
        except (AssertionError, ValueError):
            return None
        return ms if {i: m["role"] for i, m in ms.items()} == want else None
    return wait_until(cond, T(30), what, interval=0.1)


def member(c, *args):
    code, out, err = ctl(c, "member", *args)
    report("member %s -> exit %d %s" % (" ".join(args), code, (err or out).strip().splitlines()[-1:]))
    return code, out, err


def member_ok(c, *args):
    """member ... that must succeed; retried while the previous change (an
    automatic promotion, say) is still in flight, as the refusal says."""
    def attempt():
        code, _, err = member(c, *args)
        if code == 6 and "in flight" in err:
            return None
        expect(code == 0, "member %s: exit %d: %s", " ".join(args), code, err)
        return True
    wait_until(attempt, T(20), "member %s accepted" % " ".join(args), interval=0.2)


def leader_of(c):
    """The leader as the members listing reports it."""
    return [i for i, m in members(c).items() if m.get("leader")][0]


def move_leadership(c, away_from):
    """Hand leadership from away_from to another voter; returns the new leader."""
    target = [i for i, m in members(c).items() if i != away_from and m["role"] == "voter"][0]
    r = c.admin_call(away_from, req_transfer(target), timeout=T(15))
    expect_status(r, OK, "transfer from %d to %d" % (away_from, target))
    voters = [i for i, m in members(c).items() if m["role"] == "voter"]
    return c.wait_leader(ids=voters, exclude=(away_from,))


def stays(c, cond, seconds, what):
    """cond(members) holds on every look for `seconds` (polled)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        ms = members(c)
        expect(cond(ms), "%s: %s", what, ms)
        time.sleep(0.2)


def grow_and_shrink():
    with grown_cluster(3) as c:
        c.start()
        c.wait_leader()
        s = Session(c)
        s.set_all({b"k%d" % i: b"v%d" % i for i in range(200)})
        for i in (4, 5):
            add_node_to_config(c, i)
            c.start_node(i)
            code, _, err = member(c, "add", str(i))
            expect(code == 0, "member add %d: exit %d: %s", i, code, err)
            want = {j: "voter" for j in range(1, i + 1)}
            wait_members(c, want, "node %d promoted to voter" % i)
            expect_status(s.set(b"after-%d" % i, b"x"), OK, "write with %d members" % i)
        # the new node holds the data
        def has_data():
            r = c.call(5, pb.Request(get=pb.GetRequest(key=b"k7", consistency=pb.STALE)))
            return r.status == OK and r.get.value == b"v7"
        wait_until(has_data, T(20), "node 5 to hold k7")
        # shrink back to 3
        for i in (5, 4):
            code, _, err = member(c, "remove", str(i))
            expect(code == 0, "member remove %d: exit %d: %s", i, code, err)
            c.stop(i)
        wait_members(c, {1: "voter", 2: "voter", 3: "voter"}, "back to 3 voters")
        expect_status(s.set(b"after-shrink", b"x"), OK, "write after shrinking")


def remove_leader():
    with grown_cluster(3) as c:
        c.start()
        lead = c.wait_leader()
        s = Session(c)
        expect_status(s.set(b"a", b"1"), OK, "write")
        code, _, err = member(c, "remove", str(lead))
        expect(code == 0, "member remove of the leader %d: exit %d: %s", lead, code, err)
        rest = [i for i in c.nodes if i != lead]
        new = c.wait_leader(ids=rest)
        expect(new != lead, "leader still %d", lead)
        ms = wait_members(c, {i: "voter" for i in rest}, "leader %d removed" % lead)
        expect(lead not in ms, "old leader still listed")
        c.stop(lead)
        expect_status(s.set(b"a", b"2"), OK, "write after removing the old leader")
        # with one of two voters down, removing the other would lose quorum
        other = [i for i in rest if i != new][0]
        c.kill(other)
        code, _, err = member(c, "remove", str(other))
        expect(code == 0, "removing a dead voter of 2 keeps the live leader: exit %d %s", code, err)


def concurrent_and_refused():
    with grown_cluster(3) as c:
        c.start()
        lead = c.wait_leader()
        add_node_to_config(c, 4)
        add_node_to_config(c, 5)
        c.start_node(4)
        c.start_node(5)
        with Client.unix(c.nodes[lead].admin) as cl:
            reqs = []
            for i in (4, 5):
                r = pb.Request()
                r.member_change.op = pb.MEMBER_ADD
                r.member_change.id = i
                r.member_change.peer_address = "127.0.0.1:%d" % c.nodes[i].peer_port
                r.member_change.client_address = c.nodes[i].client_address
                r.member_change.learner = True
                reqs.append(r)
            # in one write, so that the node reads both before the first
            # can commit
            for r in reqs:
                r.id = Client.new_id()
            cl.sock.sendall(b"".join(frame(r.SerializeToString()) for r in reqs))
            answers = [cl.recv_for(r.id) for r in reqs]
        names = sorted(status_name(a.status) for a in answers)
        report("two concurrent adds: %s (%s)" % (names, [a.message for a in answers]))
        expect(names == sorted(["OK", FAILED_PRECONDITION_NAME]), "got %s", names)
        # on the TCP client port: refused
        r = pb.Request()
        r.member_change.op = pb.MEMBER_PROMOTE
        r.member_change.id = 4
        resp = c.call(lead, r)
        expect(status_name(resp.status) == PERMISSION_DENIED_NAME, "TCP member change: %s",
               status_name(resp.status))
        # the learner added with learner=true stays one, and is caught up
        added = [i for i, a in zip((4, 5), answers) if a.status == OK][0]
        want = {1: "voter", 2: "voter", 3: "voter", added: "learner"}
        ms = wait_members(c, want, "learner %d listed" % added)
        wait_until(lambda: members(c)[added].get("health") == "ok", T(20),
                   "learner %d caught up" % added, interval=0.1)
        Session(c).set_all({b"x%d" % i: b"y" for i in range(50)})
        ms = members(c)
        expect(ms[added]["role"] == "learner" and not ms[added].get("auto_promote"),
               "--learner node was promoted: %s", ms[added])
        # quorum guard: with two voters down, removing a third is refused
        downs = [i for i in (1, 2, 3) if i != lead][:1]
        for i in downs:
            c.kill(i)
            wait_until(lambda: members(c)[i].get("health") == "inactive", T(20),
                       "node %d inactive" % i, interval=0.1)
        victim = [i for i in (1, 2, 3) if i != lead and i not in downs][0]
        code, _, err = member(c, "remove", str(victim))
        expect(code == 6, "quorum-losing remove: exit %d (%s)", code, err)
        # explicit promote of the learner works
        code, _, err = member(c, "promote", str(added))
        expect(code == 0, "promote %d: exit %d %s", added, code, err)


def follower_with_data(c, prefix):
    """Start c, write 100 keys prefix0..prefix99 and pick a follower whose
    data directory's incarnation the leader has recorded (guard.c records it
    once the follower holds data)."""
    c.start()
    lead = c.wait_leader()
    s = Session(c)
    s.set_all({b"%s%d" % (prefix, i): b"v" for i in range(100)})
    f = [i for i in c.nodes if i != lead][0]
    c.wait_log(lead, r"recording incarnation .* of node %d\b" % f, T(20))
    return s, f


def wait_holds(c, f, key):
    def has_data():
        r = c.call(f, pb.Request(get=pb.GetRequest(key=key, consistency=pb.STALE)))
        return r.status == OK and r.get.value == b"v"
    wait_until(has_data, T(20), "node %d to hold %r again" % (f, key))


def replace_wiped():
    with grown_cluster(3) as c:
        s, f = follower_with_data(c, b"r")
        c.kill(f)
        shutil.rmtree(c.nodes[f].data_dir)
        code, _, err = member(c, "replace", str(f))
        expect(code == 0, "member replace %d: exit %d: %s", f, code, err)
        c.start_node(f)
        wait_members(c, {i: "voter" for i in c.nodes}, "replaced node %d a voter again" % f)
        wait_holds(c, f, b"r7")
        expect_status(s.set(b"after-replace", b"x"), OK, "write after the replace")


def remove_wipe_add():
    """The same disk swap done by hand: remove, wipe, start with --join, add.
    The leader had recorded the old data directory's incarnation; the add must
    forget it, or the new node's probe is answered "a member whose data is
    incarnation X" and it refuses to start (exit 78)."""
    with grown_cluster(3) as c:
        _, f = follower_with_data(c, b"w")
        code, _, err = member(c, "remove", str(f))
        expect(code == 0, "member remove %d: exit %d: %s", f, code, err)
        wait_members(c, {i: "voter" for i in c.nodes if i != f}, "node %d removed" % f)
        c.kill(f)
        shutil.rmtree(c.nodes[f].data_dir)
        c.nodes[f].extra_args = ["--join"]
        c.start_node(f)
        code, _, err = member(c, "add", str(f))
        expect(code == 0, "member add %d: exit %d: %s", f, code, err)
        wait_members(c, {i: "voter" for i in c.nodes}, "re-added node %d promoted" % f)
        wait_holds(c, f, b"w7")
        expect(c.nodes[f].proc.poll() is None, "node %d exited (code %s) after its re-add",
               f, c.nodes[f].proc.poll())


def promoted_after_leader_change():
    """The leader that added a learner loses leadership before the learner
    caught up (its process is not even started): the next leader promotes
    it once it has."""
    with grown_cluster(3) as c:
        c.start()
        lead = c.wait_leader()
        s = Session(c)
        s.set_all({b"p%d" % i: b"v" for i in range(100)})
        add_node_to_config(c, 4)
        member_ok(c, "add", "4")
        wait_members(c, {1: "voter", 2: "voter", 3: "voter", 4: "learner"}, "node 4 a learner")
        new = move_leadership(c, lead)
        report("leadership moved from %d to %d with learner 4 not started" % (lead, new))
        ms = members(c)
        expect(ms[4]["role"] == "learner" and ms[4].get("auto_promote"),
               "node 4 before it started: %s", ms[4])
        c.start_node(4)
        wait_members(c, {i: "voter" for i in range(1, 5)}, "node 4 promoted by leader %d" % new)
        expect(leader_of(c) != lead or new == lead, "leadership went back to %d" % lead)
        wait_holds(c, 4, b"p7")
        expect_status(s.set(b"after", b"x"), OK, "write with 4 voters")


def never_caught_up_not_promoted():
    """A learner whose process never runs, then one that is paused, is never
    promoted however long the leader waits; started (resumed), it is."""
    with grown_cluster(3) as c:
        c.start()
        c.wait_leader()
        s = Session(c)
        s.set_all({b"n%d" % i: b"v" for i in range(50)})
        add_node_to_config(c, 4)
        member_ok(c, "add", "4")
        wait_until(lambda: (members(c).get(4) or {}).get("lag", 0) > 0, T(20),
                   "the leader to list node 4 as a learner behind it", interval=0.1)
        s.set_all({b"m%d" % i: b"v" for i in range(20)})
        stays(c, lambda ms: ms[4]["role"] == "learner", T(3), "node 4 never started")
        c.start_node(4)
        wait_members(c, {i: "voter" for i in range(1, 5)}, "node 4 promoted once started")
        # a learner whose process stops right after its add: the add's entry
        # never reaches it
        add_node_to_config(c, 5)
        c.start_node(5)
        c.pause(5)
        member_ok(c, "add", "5")
        wait_until(lambda: (members(c).get(5) or {}).get("lag", 0) > 0, T(20),
                   "the leader to list node 5 as a learner behind it", interval=0.1)
        stays(c, lambda ms: ms[5]["role"] == "learner", T(3), "node 5 paused")
        c.resume(5)
        wait_members(c, {i: "voter" for i in range(1, 6)}, "node 5 promoted once resumed")


def learner_kept_across_leader_change():
    """--learner is in the replicated state: a new leader does not promote
    the learner either; `member promote` does."""
    with grown_cluster(3) as c:
        c.start()
        lead = c.wait_leader()
        s = Session(c)
        add_node_to_config(c, 4)
        c.start_node(4)
        member_ok(c, "add", "4", "--learner")
        wait_members(c, {1: "voter", 2: "voter", 3: "voter", 4: "learner"}, "node 4 a learner")
        wait_until(lambda: members(c)[4].get("health") == "ok", T(20), "learner 4 caught up",
                   interval=0.1)
        new = move_leadership(c, lead)
        report("leadership moved from %d to %d" % (lead, new))
        s.set_all({b"x%d" % i: b"y" for i in range(50)})
        wait_until(lambda: members(c)[4].get("lag") == 0, T(20), "learner 4 caught up with %d" % new,
                   interval=0.1)
        stays(c, lambda ms: ms[4]["role"] == "learner" and ms[4].get("auto_promote") is False,
              T(2), "--learner node 4 under leader %d" % new)
        member_ok(c, "promote", "4")
        wait_members(c, {i: "voter" for i in range(1, 5)}, "node 4 promoted by hand")


def grow_and_shrink_under_load():
    """3 -> 5 -> 3 while one session writes all the time: every write is
    acknowledged (retriable answers during the changes are retried under the
    same sequence number) and every acknowledged key is readable after."""
    with grown_cluster(3) as c:
        c.start()
        c.wait_leader()
        w = Writer(c)
        w.start()
        try:
            w.wait_acks(50, "before growing")
            for i in (4, 5):
                add_node_to_config(c, i)
                c.start_node(i)
                member_ok(c, "add", str(i))
                wait_members(c, {j: "voter" for j in range(1, i + 1)}, "node %d promoted" % i)
                w.wait_acks(50, "with %d voters" % i)
            for i in (5, 4):
                member_ok(c, "remove", str(i))
                wait_members(c, {j: "voter" for j in range(1, i)}, "node %d removed" % i)
                c.stop(i)
                w.wait_acks(50, "after removing %d" % i)
        finally:
            w.finish()
        expect(w.error is None, "writer failed: %r", w.error)
        retried = w.session.retries
        report("%d writes acknowledged, %d retried attempts (%s)" %
               (len(w.acked), len(retried), sorted({r for _, r in retried})[:5]))
        lead = c.wait_leader(ids=[1, 2, 3])
        with c.client(lead) as cl:
            for k, v in w.acked.items():
                r = cl.call(req_get(k))
                expect(r.status == OK and r.get.value == v, "acknowledged %r: %s %r", k,
                       status_name(r.status), r.get.value[:20])


if __name__ == "__main__":
    main([grow_and_shrink, remove_leader, concurrent_and_refused, replace_wiped, remove_wipe_add,
          promoted_after_leader_change, never_caught_up_not_promoted,
          learner_kept_across_leader_change, grow_and_shrink_under_load])
