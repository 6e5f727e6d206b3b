#!/usr/bin/python3
"""repro_stop_reply.py - deterministic reproducer of the first nemesis
finding (seed 7): a write the leader had already proposed when it got
SIGTERM was answered UNAVAILABLE ("node N is stopping", api_fail_all in
src/node/api.c), which the protocol and the proxy read as "not applied" --
yet the entry is in the leader's log and is committed once that node leads
again.  Fixed in ae2c297/d24113f (such writes now get TIMEOUT); this stays
as the regression test.  Exit 0 if the answer is honest (TIMEOUT, or the
write really never applies), 1 if a write answered UNAVAILABLE shows up
later.

    RAFTKV_NODE=build/src/node/raftkv-node /usr/bin/python3 tests/chaos/repro_stop_reply.py
"""
import os
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "cluster"))

from harness import (OK, UNAVAILABLE, Cluster, T, expect, expect_status, main, report,  # noqa: E402
                     req_get, req_set, req_status, status_name, wait_until)


def test_write_answered_unavailable_at_sigterm_stays_unapplied():
    with Cluster(3) as c:
        lead = c.start_and_lead()
        f1, f2 = [i for i in c.nodes if i != lead]
        c.pause(f1)
        c.pause(f2)
        with c.client(lead) as cl:
            rid = cl.send(req_set(b"k", b"proposed-then-stopped", timeout_ms=20000))
            expect_status(cl.call(req_status()), OK, "STATUS after the write (the node has it)")
            c.signal_nowait(lead, signal.SIGTERM)
            r = cl.recv_for(rid)
        c.nodes[lead].proc.wait(timeout=T(20))
        c._reap(lead, "SIGTERM")
        # The old leader comes back with the entry in its log; of the two
        # followers only f1 runs, and it cannot win without lead's vote.
        c.start_node(lead)
        c.resume(f1)
        c.wait_leader(ids=[lead, f1])

        def read():
            g = c.call(lead, req_get(b"k"))
            return g if g.status in (OK,) or g.status != UNAVAILABLE else None
        g = wait_until(read, T(20), "a linearizable read of k")
        c.resume(f2)
        applied = g.status == OK and g.get.value == b"proposed-then-stopped"
        report("pending write at SIGTERM answered %s (%r); later read: %s" %
               (status_name(r.status), r.message, "the write IS applied" if applied else status_name(g.status)))
        expect(not (r.status == UNAVAILABLE and applied),
               "a write answered UNAVAILABLE (documented and treated by the proxy as 'not applied') "
               "was applied later")


if __name__ == "__main__":
    main([test_write_answered_unavailable_at_sigterm_stays_unapplied])
