/* test_transfer.c - leadership transfer (thesis §3.10): catch the target
 * up, send it TimeoutNow, refuse proposals meanwhile, give up after an
 * election timeout; the target campaigns at once with the transfer flag. */
#include "harness.h"

static struct h_node *caught_up_leader(void)
{
    struct h_node *l = h_restore(1, 3, 1, 0, T(1), 1, NULL);
    h_make_leader(l);
    h_ack_all(l);
    return l;
}

static void test_caught_up_target_gets_timeout_now(void **state)
{
    (void)state;
    struct h_node *l = caught_up_leader();
    assert_int_equal(raft_transfer_leader(l->r, 2), RAFT_OK);
    assert_int_equal(h_status(l).transferee, 2);
    h_drain(l);
    const struct raft_msg *m = h_find(l, H_NOW, RAFT_MSG_TIMEOUT_NOW, 2);
    assert_non_null(m);
    assert_int_equal(m->term, raft_current_term(l->r));
    assert_int_equal(h_count(l, H_ANY, RAFT_MSG_TIMEOUT_NOW, RAFT_NONE), 1);
    /* no new work while leadership is being handed over */
    assert_int_equal(raft_propose(l->r, "x", 1, NULL, NULL), RAFT_ETRANSFER);
    struct raft_conf_change cc = {.op = RAFT_CONF_ADD_LEARNER, .id = 4};
    assert_int_equal(raft_propose_conf(l->r, &cc, NULL), RAFT_ETRANSFER);
    /* asking again for the same target changes nothing */
    assert_int_equal(raft_transfer_leader(l->r, 2), RAFT_OK);
    h_drain(l);
    assert_int_equal(h_count(l, H_ANY, RAFT_MSG_TIMEOUT_NOW, RAFT_NONE), 0);
    h_free(l);
}

static void test_lagging_target_catches_up_first(void **state)
{
    (void)state;
    struct h_node *l = caught_up_leader();
    h_propose(l, 3, 8);
    h_drain(l);
    assert_int_equal(h_count(l, H_NOW, RAFT_MSG_APPEND, 3), 1);
    raft_index last = raft_last_index(l->r);
    h_ack(l, 2, last);
    assert_int_equal(raft_transfer_leader(l->r, 3), RAFT_OK);
    h_drain(l);
    assert_int_equal(h_count(l, H_ANY, RAFT_MSG_TIMEOUT_NOW, RAFT_NONE), 0);
    assert_int_equal(raft_propose(l->r, "x", 1, NULL, NULL), RAFT_ETRANSFER);
    /* partial progress is not enough */
    h_ack(l, 3, last - 1);
    assert_int_equal(h_count(l, H_ANY, RAFT_MSG_TIMEOUT_NOW, RAFT_NONE), 0);
    /* a target that lost its entries is sent them again */
    h_step(l, (struct raft_msg){.type = RAFT_MSG_APPEND_RESP, .from = 3,
                                .term = raft_current_term(l->r), .reject = true, .index = last - 1,
                                .hint_index = last - 1});
    raft_report_unreachable(l->r, 3);
    h_drain(l);
    const struct raft_msg *m = h_find(l, H_NOW, RAFT_MSG_APPEND, 3);
    assert_non_null(m);
    assert_int_equal(m->index + m->n_entries, last);
    h_ack(l, 3, last);
    m = h_find(l, H_NOW, RAFT_MSG_TIMEOUT_NOW, 3);
    assert_non_null(m);
    h_free(l);
}

static void test_transfer_aborts_after_election_timeout(void **state)
{
    (void)state;
    struct h_node *l = caught_up_leader();
    h_propose(l, 1, 8);
    h_drain(l);
    assert_int_equal(raft_transfer_leader(l->r, 3), RAFT_OK);
    raft_term term = raft_current_term(l->r);
    for (unsigned t = 1; t <= 10; t++) {
        /* followers answer heartbeats: only the transfer times out */
        h_heartbeat_resp(l, 2, 0);
        h_heartbeat_resp(l, 3, 0);
        h_tick(l, 1);
        h_drain(l);
        if (t < 10)
            assert_int_equal(h_status(l).transferee, 3);
    }
    struct raft_status st = h_status(l);
    assert_int_equal(st.role, RAFT_LEADER);
    assert_int_equal(st.term, term);
    assert_int_equal(st.transferee, RAFT_NONE);
    assert_int_equal(raft_propose(l->r, "x", 1, NULL, NULL), RAFT_OK);
    h_free(l);
}

struct arg_case {
    const char *name;
    bool as_leader;
    raft_id target;
    int rv;
    raft_id transferee; /* afterwards */
};

/* Leader 1 of voters {1,2,3} + learner 4; node 3 is further ahead than 2. */
static const struct arg_case arg_cases[] = {
    {"not the leader", false, 2, RAFT_ENOTLEADER, 0},
    {"learner target", true, 4, RAFT_EINVAL, 0},
    {"unknown target", true, 9, RAFT_EINVAL, 0},
    {"itself: nothing to do", true, 1, RAFT_OK, 0},
    {"any: the most caught-up voter", true, RAFT_NONE, RAFT_OK, 3},
    {"a named voter", true, 2, RAFT_OK, 2},
};

static void test_transfer_args_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(arg_cases) / sizeof(arg_cases[0]); i++) {
        const struct arg_case *c = &arg_cases[i];
        h_case = c->name;
        struct raft_conf conf = h_conf(3, 1);
        struct h_node *n = h_restore_conf(1, &conf, 1, 0, T(1), 1, NULL);
        if (c->as_leader) {
            h_make_leader(n);
            h_ack(n, 3, raft_last_index(n->r));
            h_ack(n, 4, raft_last_index(n->r));
        }
        CHECK_RV(raft_transfer_leader(n->r, c->target), c->rv);
        CHECK_EQ(h_status(n).transferee, c->transferee);
        h_free(n);
    }
    h_case = NULL;
}

/* The target skips pre-vote and its leader stickiness waiver travels with
 * its vote requests. */
static void test_timeout_now_target_campaigns(void **state)
{
    (void)state;
    struct h_node *n = h_restore(2, 3, 2, 0, T(1, 1), 2, NULL); /* pre_vote on */
    h_step(n, (struct raft_msg){.type = RAFT_MSG_HEARTBEAT, .from = 1, .term = 2});
    h_drain(n);
    h_step(n, (struct raft_msg){.type = RAFT_MSG_TIMEOUT_NOW, .from = 1, .term = 2});
    h_drain(n);
    struct raft_status st = h_status(n);
    assert_int_equal(st.role, RAFT_CANDIDATE);
    assert_int_equal(st.term, 3);
    assert_int_equal(st.vote, 2);
    assert_int_equal(h_count(n, H_ANY, RAFT_MSG_PREVOTE, RAFT_NONE), 0);
    for (raft_id to = 1; to <= 3; to += 2) {
        const struct raft_msg *m = h_find(n, H_AFTER, RAFT_MSG_VOTE, to);
        assert_non_null(m);
        assert_int_equal(m->term, 3);
        assert_int_equal(m->ctx, RAFT_CTX_TRANSFER);
        assert_int_equal(m->index, 2);
        assert_int_equal(m->log_term, 1);
    }
    h_free(n);
}

/* TimeoutNow is ignored by a learner and when it is stale. */
static void test_timeout_now_ignored(void **state)
{
    (void)state;
    struct raft_conf conf = h_conf(3, 1);
    struct h_node *learner = h_restore_conf(4, &conf, 2, 0, T(1, 1), 2, NULL);
    h_step(learner, (struct raft_msg){.type = RAFT_MSG_TIMEOUT_NOW, .from = 1, .term = 2});
    h_drain(learner);
    assert_int_equal(raft_role(learner->r), RAFT_FOLLOWER);
    assert_int_equal(raft_current_term(learner->r), 2);
    assert_int_equal(learner->out.n_msgs + learner->out.n_ap, 0);
    h_free(learner);

    struct h_node *n = h_restore(2, 3, 5, 0, T(1, 1), 2, NULL);
    h_step(n, (struct raft_msg){.type = RAFT_MSG_TIMEOUT_NOW, .from = 1, .term = 4});
    h_drain(n);
    assert_int_equal(raft_role(n->r), RAFT_FOLLOWER);
    assert_int_equal(raft_current_term(n->r), 5);
    assert_int_equal(h_count(n, H_ANY, RAFT_MSG_VOTE, RAFT_NONE), 0);
    h_free(n);
}

/* End to end with three real nodes: followers inside their leader lease
 * still vote for the transfer target, which becomes leader. */
static void test_transfer_end_to_end(void **state)
{
    (void)state;
    struct h_node *nodes[3];
    for (raft_id id = 1; id <= 3; id++)
        nodes[id - 1] = h_boot(id, 3, NULL);
    assert_int_equal(raft_campaign(nodes[0]->r), RAFT_OK);
    h_net_run(nodes, 3, 50);
    assert_int_equal(raft_role(nodes[0]->r), RAFT_LEADER);
    h_tick(nodes[0], 1); /* heartbeat carries the commit index */
    h_net_run(nodes, 3, 50);
    for (int i = 0; i < 3; i++)
        assert_int_equal(raft_leader(nodes[i]->r), 1);
    raft_term term = raft_current_term(nodes[0]->r);

    assert_int_equal(raft_transfer_leader(nodes[0]->r, 3), RAFT_OK);
    h_net_run(nodes, 3, 50);
    assert_int_equal(raft_role(nodes[2]->r), RAFT_LEADER);
    assert_int_equal(raft_current_term(nodes[2]->r), term + 1);
    assert_int_equal(raft_role(nodes[0]->r), RAFT_FOLLOWER);
    assert_int_equal(h_status(nodes[0]).transferee, RAFT_NONE);
    h_tick(nodes[2], 1);
    h_net_run(nodes, 3, 50);
    for (int i = 0; i < 3; i++)
        assert_int_equal(raft_leader(nodes[i]->r), 3);
    h_free_all(nodes, 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_caught_up_target_gets_timeout_now),
        cmocka_unit_test(test_lagging_target_catches_up_first),
        cmocka_unit_test(test_transfer_aborts_after_election_timeout),
        cmocka_unit_test(test_transfer_args_table),
        cmocka_unit_test(test_timeout_now_target_campaigns),
        cmocka_unit_test(test_timeout_now_ignored),
        cmocka_unit_test(test_transfer_end_to_end),
    };
    return cmocka_run_group_tests_name("raft-transfer", tests, NULL, NULL);
}
