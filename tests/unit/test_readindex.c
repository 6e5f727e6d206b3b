/* test_readindex.c - linearizable reads without log writes (thesis §6.4):
 * the leader confirms it still leads with one heartbeat round per batch of
 * reads, after its own term's no-op commits; followers forward reads. */
#include "harness.h"

static uint64_t round_sent(const struct h_node *l, raft_id to)
{
    const struct raft_msg *m = h_find(l, H_NOW, RAFT_MSG_HEARTBEAT, to);
    assert_non_null(m);
    return m->ctx;
}

static void test_leader_waits_for_noop_and_round(void **state)
{
    (void)state;
    struct h_node *l = h_restore(1, 3, 1, 0, T(1), 1, NULL);
    h_make_leader(l); /* no-op at 2, durable on the leader only */
    assert_int_equal(raft_read_index(l->r, 7), RAFT_OK);
    h_drain(l);
    assert_int_equal(l->out.n_reads, 0);
    assert_int_equal(h_count(l, H_ANY, RAFT_MSG_HEARTBEAT, RAFT_NONE), 0);

    /* the no-op commits: now the read is stamped and a round goes out */
    h_ack(l, 2, 2);
    assert_int_equal(raft_commit_index(l->r), 2);
    assert_int_equal(l->out.n_reads, 0);
    uint64_t round = round_sent(l, 2);
    assert_true(round > 0);
    assert_int_equal(round_sent(l, 3), round);

    /* an answer to an older round proves nothing about this read */
    h_heartbeat_resp(l, 3, round - 1);
    assert_int_equal(l->out.n_reads, 0);
    h_heartbeat_resp(l, 3, round);
    assert_int_equal(l->out.n_reads, 1);
    assert_int_equal(l->out.reads[0].ctx, 7);
    assert_int_equal(l->out.reads[0].index, 2);
    assert_int_equal(l->out.reads[0].err, RAFT_OK);
    /* and only once */
    h_heartbeat_resp(l, 2, round);
    assert_int_equal(l->out.n_reads, 0);
    h_free(l);
}

static struct h_node *committed_leader(unsigned voters)
{
    struct h_node *l = h_restore(1, voters, 1, 0, T(1), 1, NULL);
    h_make_leader(l);
    h_ack_all(l);
    return l;
}

static void test_reads_together_share_one_round(void **state)
{
    (void)state;
    struct h_node *l = committed_leader(3);
    raft_index commit = raft_commit_index(l->r);
    assert_int_equal(raft_read_index(l->r, 1), RAFT_OK);
    assert_int_equal(raft_read_index(l->r, 2), RAFT_OK);
    assert_int_equal(raft_read_index(l->r, 3), RAFT_OK);
    h_drain(l);
    assert_int_equal(h_count(l, H_NOW, RAFT_MSG_HEARTBEAT, 2), 1);
    assert_int_equal(h_count(l, H_NOW, RAFT_MSG_HEARTBEAT, 3), 1);
    uint64_t round = round_sent(l, 2);
    h_heartbeat_resp(l, 2, round);
    assert_int_equal(l->out.n_reads, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(l->out.reads[i].ctx, i + 1);
        assert_int_equal(l->out.reads[i].index, commit);
        assert_int_equal(l->out.reads[i].err, RAFT_OK);
    }
    h_free(l);
}

/* A read asked while a round is already in flight waits for the next one. */
static void test_later_read_needs_later_round(void **state)
{
    (void)state;
    struct h_node *l = committed_leader(3);
    assert_int_equal(raft_read_index(l->r, 1), RAFT_OK);
    h_drain(l);
    uint64_t r1 = round_sent(l, 2);
    h_propose(l, 1, 4);
    h_drain(l);
    h_ack_all(l);
    raft_index commit2 = raft_commit_index(l->r);
    assert_int_equal(raft_read_index(l->r, 2), RAFT_OK);
    h_drain(l);
    /* one round in flight at a time: read 2 waits for round r1 to finish */
    assert_null(h_find(l, H_NOW, RAFT_MSG_HEARTBEAT, 3));
    h_heartbeat_resp(l, 3, r1);
    assert_int_equal(l->out.n_reads, 1);
    assert_int_equal(l->out.reads[0].ctx, 1);
    assert_int_equal(l->out.reads[0].index, commit2 - 1);
    uint64_t r2 = round_sent(l, 3); /* started as soon as r1 finished */
    assert_true(r2 > r1);
    h_heartbeat_resp(l, 3, r2);
    assert_int_equal(l->out.n_reads, 1);
    assert_int_equal(l->out.reads[0].ctx, 2);
    assert_int_equal(l->out.reads[0].index, commit2);
    h_free(l);
}

/* A 5-voter leader needs two followers for a round. */
static void test_round_needs_quorum(void **state)
{
    (void)state;
    struct h_node *l = committed_leader(5);
    assert_int_equal(raft_read_index(l->r, 9), RAFT_OK);
    h_drain(l);
    uint64_t round = round_sent(l, 4);
    h_heartbeat_resp(l, 4, round);
    assert_int_equal(l->out.n_reads, 0);
    h_heartbeat_resp(l, 4, round); /* the same follower twice */
    assert_int_equal(l->out.n_reads, 0);
    h_heartbeat_resp(l, 5, round);
    assert_int_equal(l->out.n_reads, 1);
    h_free(l);
}

static void test_follower_forwards_read(void **state)
{
    (void)state;
    struct h_node *f = h_restore(2, 3, 2, 0, T(1, 1), 2, NULL);
    assert_int_equal(raft_read_index(f->r, 42), RAFT_ENOLEADER);
    h_step(f, (struct raft_msg){.type = RAFT_MSG_HEARTBEAT, .from = 1, .term = 2});
    h_drain(f);
    assert_int_equal(raft_read_index(f->r, 42), RAFT_OK);
    h_drain(f);
    /* forwarding changes no durable state: it goes at once */
    const struct raft_msg *m = h_find(f, H_NOW, RAFT_MSG_READ_INDEX, 1);
    assert_non_null(m);
    assert_int_equal(m->ctx, 42);
    assert_int_equal(m->term, 2);
    assert_int_equal(f->out.n_reads, 0);

    h_step(f, (struct raft_msg){.type = RAFT_MSG_READ_INDEX_RESP, .from = 1, .term = 2,
                                .index = 9, .ctx = 42});
    h_step(f, (struct raft_msg){.type = RAFT_MSG_READ_INDEX_RESP, .from = 1, .term = 2,
                                .ctx = 43, .reject = true});
    h_drain(f);
    assert_int_equal(f->out.n_reads, 2);
    assert_int_equal(f->out.reads[0].ctx, 42);
    assert_int_equal(f->out.reads[0].index, 9);
    assert_int_equal(f->out.reads[0].err, RAFT_OK);
    assert_int_equal(f->out.reads[1].ctx, 43);
    assert_int_equal(f->out.reads[1].err, RAFT_ELOSTLEADER);
    h_free(f);
}

static void test_leader_answers_forwarded_read(void **state)
{
    (void)state;
    struct h_node *l = committed_leader(3);
    raft_index commit = raft_commit_index(l->r);
    h_step(l, (struct raft_msg){.type = RAFT_MSG_READ_INDEX, .from = 2,
                                .term = raft_current_term(l->r), .ctx = 5});
    h_drain(l);
    assert_int_equal(h_count(l, H_ANY, RAFT_MSG_READ_INDEX_RESP, RAFT_NONE), 0);
    h_heartbeat_resp(l, 3, round_sent(l, 3));
    const struct raft_msg *m = h_find(l, H_NOW, RAFT_MSG_READ_INDEX_RESP, 2);
    assert_non_null(m);
    assert_false(m->reject);
    assert_int_equal(m->ctx, 5);
    assert_int_equal(m->index, commit);
    assert_int_equal(l->out.n_reads, 0); /* not a local read */
    h_free(l);
}

/* A follower asked for a read index (it is not the leader) refuses. */
static void test_non_leader_refuses_read_index(void **state)
{
    (void)state;
    struct h_node *f = h_restore(2, 3, 2, 0, T(1, 1), 2, NULL);
    h_step(f, (struct raft_msg){.type = RAFT_MSG_READ_INDEX, .from = 3, .term = 2, .ctx = 8});
    h_drain(f);
    const struct raft_msg *m = h_find(f, H_ANY, RAFT_MSG_READ_INDEX_RESP, 3);
    assert_non_null(m);
    assert_true(m->reject);
    assert_int_equal(m->ctx, 8);
    h_free(f);
}

enum cause { HIGHER_TERM_HEARTBEAT, CHECK_QUORUM, TRANSFER_VOTE };

struct lost_case {
    const char *name;
    enum cause cause;
};

static const struct lost_case lost_cases[] = {
    {"a newer leader's heartbeat", HIGHER_TERM_HEARTBEAT},
    {"check-quorum step-down", CHECK_QUORUM},
    {"a transfer vote for a higher term", TRANSFER_VOTE},
};

static void test_step_down_fails_reads_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(lost_cases) / sizeof(lost_cases[0]); i++) {
        const struct lost_case *c = &lost_cases[i];
        h_case = c->name;
        struct h_node *l = committed_leader(3);
        raft_term term = raft_current_term(l->r);
        CHECK_RV(raft_read_index(l->r, 7), RAFT_OK);
        h_step(l, (struct raft_msg){.type = RAFT_MSG_READ_INDEX, .from = 2, .term = term, .ctx = 8});
        h_drain(l);
        switch (c->cause) {
        case HIGHER_TERM_HEARTBEAT:
            h_step(l, (struct raft_msg){.type = RAFT_MSG_HEARTBEAT, .from = 3, .term = term + 1});
            break;
        case CHECK_QUORUM:
            h_tick(l, 10); /* nobody answered during the first period */
            h_tick(l, 10);
            break;
        case TRANSFER_VOTE:
            h_step(l, (struct raft_msg){.type = RAFT_MSG_VOTE, .from = 3, .term = term + 1,
                                        .index = raft_last_index(l->r),
                                        .log_term = term, .ctx = RAFT_CTX_TRANSFER});
            break;
        }
        CHECK_EQ(raft_role(l->r), RAFT_FOLLOWER);
        h_drain(l);
        CHECK_EQ(l->out.n_reads, 1);
        CHECK_EQ(l->out.reads[0].ctx, 7);
        CHECK_RV(l->out.reads[0].err, RAFT_ELOSTLEADER);
        const struct raft_msg *m = h_find(l, H_ANY, RAFT_MSG_READ_INDEX_RESP, 2);
        CHECK(m != NULL);
        CHECK(m->reject);
        CHECK_EQ(m->ctx, 8);
        h_free(l);
    }
    h_case = NULL;
}

static void test_single_node_releases_at_once(void **state)
{
    (void)state;
    struct h_node *l = h_boot(1, 1, NULL);
    h_make_leader(l);
    raft_index commit = raft_commit_index(l->r);
    assert_int_equal(commit, 2);
    assert_int_equal(raft_read_index(l->r, 11), RAFT_OK);
    assert_true(raft_has_ready(l->r));
    struct raft_ready rd;
    raft_ready(l->r, &rd);
    assert_int_equal(rd.n_reads, 1);
    assert_int_equal(rd.reads[0].ctx, 11);
    assert_int_equal(rd.reads[0].index, commit);
    assert_int_equal(rd.reads[0].err, RAFT_OK);
    assert_int_equal(rd.n_msgs + rd.n_msgs_after_persist, 0);
    raft_advance(l->r, &rd);
    assert_false(raft_has_ready(l->r));
    h_free(l);
}

/* A single node that has not made its no-op durable cannot serve reads yet. */
static void test_single_node_waits_for_its_noop(void **state)
{
    (void)state;
    struct h_node *l = h_boot(1, 1, NULL);
    assert_int_equal(raft_campaign(l->r), RAFT_OK);
    assert_int_equal(raft_role(l->r), RAFT_LEADER);
    assert_int_equal(raft_read_index(l->r, 11), RAFT_OK);
    h_drain(l);
    assert_int_equal(l->out.n_reads, 0);
    h_persist(l);
    h_drain(l);
    assert_int_equal(l->out.n_reads, 1);
    assert_int_equal(l->out.reads[0].index, 2);
    h_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_leader_waits_for_noop_and_round),
        cmocka_unit_test(test_reads_together_share_one_round),
        cmocka_unit_test(test_later_read_needs_later_round),
        cmocka_unit_test(test_round_needs_quorum),
        cmocka_unit_test(test_follower_forwards_read),
        cmocka_unit_test(test_leader_answers_forwarded_read),
        cmocka_unit_test(test_non_leader_refuses_read_index),
        cmocka_unit_test(test_step_down_fails_reads_table),
        cmocka_unit_test(test_single_node_releases_at_once),
        cmocka_unit_test(test_single_node_waits_for_its_noop),
    };
    return cmocka_run_group_tests_name("raft-readindex", tests, NULL, NULL);
}
