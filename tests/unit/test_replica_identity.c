/* test_replica_identity.c - the replica's two rules about data directories
 * that issue 13 left open (tests/sim/FINDINGS.md 6 and 8), over a storage
 * table kept in memory:
 *  - a directory that joined (did not bootstrap) grants no vote and does not
 *    campaign until its own log records its incarnation;
 *  - the incarnation file: a replica restarted from a snapshot older than a
 *    member replace still knows the replace, so it takes the new
 *    directory's votes without waiting for a leader.
 * Each test fails without its rule (REPLICA_BREAK_JOINED, or the file ops
 * left out: the second half of test_restart_knows_replace shows that). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kv/kv.h"
#include "replica_fix.h"

/* ---- FINDINGS.md 6: the voter's side ------------------------------------ */

/* Node 2 joined with directory B2: it has the log of leader 1 (term 2) but
 * no record of B2, so candidate 3's request goes unanswered and its own
 * clock does not run out; once a record of B2 is in its log (not yet
 * committed), it votes. */
/* Node 2, directory B2 (joined or not), with leader 1's log of term 2:
 * voters 1..3 and a no-op, committed. */
static struct fix *node2_with_log(bool joined)
{
    struct fix *f = calloc(1, sizeof(*f));
    fix_open(f, 2, true);
    replica_set_identity(f->rp, 0xB2, joined);
    struct raft_entry e[] = {conf_entry(1, 1), noop_entry(2, 2)};
    fix_append(f, 1, 2, 0, 0, e, 2, 2);
    f->n_sent = 0;
    return f;
}

static void test_joined_withholds_until_recorded(void **state)
{
    (void)state;
    struct fix *f = node2_with_log(true);
    assert_true(replica_withholding(f->rp));
    assert_int_equal(ask_vote(f, RAFT_MSG_VOTE, 3, 0xC3, 3, 2, 2), REPLICA_EWITHHELD);
    assert_int_equal(ask_vote(f, RAFT_MSG_PREVOTE, 3, 0xC3, 3, 2, 2), REPLICA_EWITHHELD);
    assert_int_equal(ask_vote(f, RAFT_MSG_TIMEOUT_NOW, 1, 0, 2, 0, 0), REPLICA_EWITHHELD);
    assert_false(granted(f, 3));
    /* Its self-vote would be such a vote: it does not campaign. */
    for (int i = 0; i < 200; i++) {
        replica_tick(f->rp);
        fix_sync(f);
    }
    assert_int_equal(replica_role(f->rp), RAFT_FOLLOWER);
    assert_int_equal(replica_term(f->rp), 2);
    /* A record of the directory node 2 had before does not count... */
    struct raft_entry r1[] = {record_entry(3, 2, 2, 0xB1)};
    fix_append(f, 1, 2, 2, 2, r1, 1, 3);
    assert_true(replica_withholding(f->rp));
    /* ... its own does, applied or not. */
    struct raft_entry r2[] = {record_entry(4, 2, 2, 0), record_entry(5, 2, 2, 0xB2)};
    fix_append(f, 1, 2, 3, 2, r2, 2, 3);
    assert_false(replica_withholding(f->rp));
    f->n_sent = 0;
    assert_int_equal(ask_vote(f, RAFT_MSG_VOTE, 3, 0xC3, 3, 5, 2), 0);
    assert_true(granted(f, 3));
    /* The answer is kept between calls (ticks ask often) and must follow
     * the log: leader 3 of term 3 replaces the uncommitted record at 5,
     * so node 2 withholds again (the forget at 4 is the newest now)... */
    struct raft_entry r3[] = {noop_entry(5, 3)};
    fix_append(f, 3, 3, 4, 2, r3, 1, 3);
    assert_true(replica_withholding(f->rp));
    /* ... until a record of B2 is logged again, and it stays so once
     * applied, when the tail no longer holds it. */
    struct raft_entry r4[] = {record_entry(6, 3, 2, 0xB2), noop_entry(7, 3)};
    fix_append(f, 3, 3, 5, 3, r4, 2, 3);
    assert_false(replica_withholding(f->rp));
    struct raft_entry r5[] = {noop_entry(8, 3)};
    fix_append(f, 3, 3, 7, 3, r5, 1, 8);
    fix_sync(f);
    assert_false(replica_withholding(f->rp));
    fix_free(f);
}

/* The same log on a directory that bootstrapped (or predates the flag):
 * it votes as ever. */
static void test_bootstrapped_votes(void **state)
{
    (void)state;
    struct fix *f = node2_with_log(false);
    assert_false(replica_withholding(f->rp));
    assert_int_equal(ask_vote(f, RAFT_MSG_VOTE, 3, 0xC3, 3, 2, 2), 0);
    assert_true(granted(f, 3));
    fix_free(f);
}

/* ---- FINDINGS.md 8: the incarnation file -------------------------------- */

/* Node 1 applies node 3's first directory (C1), snapshots at 3, then applies
 * a member replace of node 3 (forget at 4, C2 at 5), and restarts: its state
 * machine is the snapshot again.  Whether it now refuses a vote of each of
 * node 3's directories. */
static void restart_after_replace(bool with_file, bool *refused_c2, bool *refused_c1)
{
    struct fix *f = calloc(1, sizeof(*f));
    fix_open(f, 1, with_file);
    struct raft_entry e[] = {conf_entry(1, 1), record_entry(2, 2, 3, 0xC1), noop_entry(3, 2)};
    fix_append(f, 2, 2, 0, 0, e, 3, 3);
    assert_true(f->mem.has_snap);
    assert_int_equal(f->mem.snap.index, 3);
    struct raft_entry r[] = {record_entry(4, 2, 3, 0), record_entry(5, 2, 3, 0xC2)};
    fix_append(f, 2, 2, 3, 2, r, 2, 5);
    assert_int_equal(replica_applied(f->rp), 5);
    struct raft_msg v = {.type = RAFT_MSG_VOTE, .from = 3, .to = 1, .term = 3, .index = 5,
                         .log_term = 2};
    assert_false(replica_incarnation_refused(f->rp, &v, 0xC2, NULL));
    fix_close(f);
    fix_open(f, 1, with_file);
    assert_int_equal(replica_applied(f->rp), 3);
    *refused_c2 = replica_incarnation_refused(f->rp, &v, 0xC2, NULL);
    *refused_c1 = replica_incarnation_refused(f->rp, &v, 0xC1, NULL);
    fix_free(f);
}

static void test_restart_knows_replace(void **state)
{
    (void)state;
    bool c2, c1;
    restart_after_replace(true, &c2, &c1);
    assert_false(c2);
    assert_true(c1);
    /* Without the file (storage without it, as before): C2 is refused until
     * a leader's commit index lets the replace apply again. */
    restart_after_replace(false, &c2, &c1);
    assert_true(c2);
    assert_true(c1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_joined_withholds_until_recorded),
        cmocka_unit_test(test_bootstrapped_votes),
        cmocka_unit_test(test_restart_knows_replace),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
