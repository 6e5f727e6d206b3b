/* test_commit.c - the leader's commit rule: a quorum of voters has the
 * entry durable (the leader itself only after raft_persisted()), and the
 * entry is of the leader's own term (Raft §5.4.2, Figure 8). */
#include "harness.h"

struct ack {
    raft_id from;
    raft_index index; /* offset: base + index */
};

struct commit_case {
    const char *name;
    unsigned voters;
    unsigned learners;
    struct ack acks[5];
    size_t n_acks;
    bool leader_persists;
    raft_index commit; /* as an offset from the committed base */
};

/* Everything up to `base` (bootstrap entry + no-op) is committed; the
 * leader proposes base+1..base+3 and the followers acknowledge as listed. */
static const struct commit_case cases[] = {
    {"3 voters: one follower, leader not durable", 3, 0, {{2, 3}}, 1, false, 0},
    {"3 voters: one follower, leader durable", 3, 0, {{2, 3}}, 1, true, 3},
    {"3 voters: two followers, leader not durable", 3, 0, {{2, 3}, {3, 3}}, 2, false, 3},
    {"3 voters: leader alone", 3, 0, {{0, 0}}, 0, true, 0},
    {"3 voters: lowest of the quorum", 3, 0, {{2, 2}}, 1, true, 2},
    {"3 voters: two followers at different points", 3, 0, {{2, 1}, {3, 2}}, 2, false, 1},
    {"5 voters: one follower and leader", 5, 0, {{2, 3}}, 1, true, 0},
    {"5 voters: two followers and leader", 5, 0, {{2, 3}, {3, 1}}, 2, true, 1},
    {"5 voters: three followers, leader not durable", 5, 0, {{2, 3}, {3, 3}, {4, 2}}, 3, false, 2},
    {"learner's ack does not count", 3, 1, {{4, 3}}, 1, true, 0},
    {"learners' acks do not count", 3, 2, {{4, 3}, {5, 3}, {2, 1}}, 3, true, 1},
    {"single voter commits on its own persistence", 1, 0, {{0, 0}}, 0, true, 3},
    {"single voter waits for its persistence", 1, 0, {{0, 0}}, 0, false, 0},
};

static void test_commit_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct commit_case *c = &cases[i];
        h_case = c->name;
        struct raft_conf conf = h_conf(c->voters, c->learners);
        struct h_node *l = h_restore_conf(1, &conf, 1, 0, T(1), 1, NULL);
        h_make_leader(l);
        h_ack_all(l);
        raft_index base = raft_commit_index(l->r);
        CHECK_EQ(base, 2);
        h_propose(l, 3, 8);
        h_drain(l);
        CHECK_EQ(raft_commit_index(l->r), base);
        for (size_t k = 0; k < c->n_acks; k++)
            h_ack(l, c->acks[k].from, base + c->acks[k].index);
        if (c->leader_persists)
            h_persist(l);
        h_drain(l);
        CHECK_EQ(raft_commit_index(l->r), base + c->commit);
        /* what is committed (and durable on the leader) is handed out */
        raft_index applied = c->leader_persists ? base + c->commit : base;
        CHECK_EQ(h_status(l).applied, applied);
        if (!c->leader_persists) {
            /* once durable, the leader applies what the quorum committed */
            h_persist(l);
            h_drain(l);
            CHECK_EQ(h_status(l).applied, raft_commit_index(l->r));
        }
        h_free(l);
    }
    h_case = NULL;
}

/* Figure 8: node 1 led term 2 and wrote (2, term 2) only locally; it is
 * elected again in term 4 (no-op at 3).  Even once (2, term 2) sits on a
 * majority it is not committed by counting; the no-op of term 4 commits it. */
static void test_figure8(void **state)
{
    (void)state;
    struct h_node *l = h_restore(1, 3, 3, 0, T(1, 2), 2, NULL);
    h_make_leader(l);
    assert_int_equal(raft_current_term(l->r), 4);
    assert_int_equal(raft_last_index(l->r), 3);
    assert_int_equal(h_status(l).persisted, 3);

    h_ack(l, 2, 2);
    h_ack(l, 3, 2);
    assert_int_equal(raft_commit_index(l->r), 0);
    assert_int_equal(l->out.n_committed, 0);
    assert_int_equal(h_progress(l, 2).match, 2);
    assert_int_equal(h_progress(l, 3).match, 2);

    h_ack(l, 2, 3);
    assert_int_equal(raft_commit_index(l->r), 3);
    assert_int_equal(l->out.n_committed, 3);
    assert_int_equal(l->out.committed[0].term, 1);
    assert_int_equal(l->out.committed[1].term, 2);
    assert_int_equal(l->out.committed[2].term, 4);
    assert_int_equal(l->out.committed[2].len, 0); /* the no-op */
    h_free(l);
}

/* The same with the leader's own entry not durable yet: a follower ack of
 * the no-op plus the old entry everywhere is not enough. */
static void test_figure8_leader_not_durable(void **state)
{
    (void)state;
    struct h_node *l = h_restore(1, 5, 3, 0, T(1, 2), 2, NULL);
    assert_int_equal(raft_campaign(l->r), RAFT_OK);
    for (raft_id id = 2; id <= 5 && raft_role(l->r) == RAFT_PRECANDIDATE; id++)
        h_step(l, (struct raft_msg){.type = RAFT_MSG_PREVOTE_RESP, .from = id, .term = 4});
    for (raft_id id = 2; id <= 5 && raft_role(l->r) == RAFT_CANDIDATE; id++)
        h_step(l, (struct raft_msg){.type = RAFT_MSG_VOTE_RESP, .from = id, .term = 4});
    assert_int_equal(raft_role(l->r), RAFT_LEADER);
    h_drain(l); /* no raft_persisted(): the no-op is not durable here */
    h_ack(l, 2, 3);
    h_ack(l, 3, 2);
    h_ack(l, 4, 2);
    assert_int_equal(raft_commit_index(l->r), 0);
    h_ack(l, 3, 3);
    assert_int_equal(raft_commit_index(l->r), 0); /* 2 of 5 have the no-op */
    h_persist(l);
    h_drain(l);
    assert_int_equal(raft_commit_index(l->r), 3);
    h_free(l);
}

/* Acknowledgements of entries the leader never had are ignored, and
 * duplicates do not regress anything. */
static void test_bogus_and_duplicate_acks(void **state)
{
    (void)state;
    struct h_node *l = h_restore(1, 3, 1, 0, T(1), 1, NULL);
    h_make_leader(l);
    h_ack(l, 2, 50);
    assert_int_equal(raft_commit_index(l->r), 0);
    assert_int_equal(h_progress(l, 2).match, 0);
    h_ack(l, 2, 2);
    assert_int_equal(raft_commit_index(l->r), 2);
    h_ack(l, 2, 1);
    assert_int_equal(h_progress(l, 2).match, 2);
    assert_int_equal(raft_commit_index(l->r), 2);
    h_free(l);
}

/* At most max_apply_entries committed entries per ready batch. */
static void test_apply_batches_bounded(void **state)
{
    (void)state;
    struct raft_config cfg = h_config(1);
    cfg.max_apply_entries = 2;
    struct h_node *l = h_boot(1, 1, &cfg);
    h_make_leader(l);
    h_propose(l, 5, 1);
    h_drain(l);
    h_persist(l);
    assert_int_equal(raft_commit_index(l->r), 7);
    raft_index applied = h_status(l).applied;
    while (raft_has_ready(l->r)) {
        struct raft_ready rd;
        raft_ready(l->r, &rd);
        assert_true(rd.n_committed <= 2);
        if (rd.n_committed) {
            assert_int_equal(rd.committed[0].index, applied + 1);
            applied += rd.n_committed;
        }
        raft_advance(l->r, &rd);
    }
    assert_int_equal(applied, 7);
    h_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_commit_table),
        cmocka_unit_test(test_figure8),
        cmocka_unit_test(test_figure8_leader_not_durable),
        cmocka_unit_test(test_bogus_and_duplicate_acks),
        cmocka_unit_test(test_apply_batches_bounded),
    };
    return cmocka_run_group_tests_name("raft-commit", tests, NULL, NULL);
}
