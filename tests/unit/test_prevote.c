/* test_prevote.c - pre-vote (thesis §9.6): asking whether an election could
 * be won before disturbing anyone with a new term. */
#include "harness.h"

/* Node 1 of 3 at term 2 with log [1 1 2] starts a pre-election. */
static void test_precandidate_changes_nothing_durable(void **state)
{
    (void)state;
    struct h_node *n = h_restore(1, 3, 2, 3, T(1, 1, 2), 3, NULL);
    assert_int_equal(raft_campaign(n->r), RAFT_OK);
    h_drain(n);
    struct raft_status st = h_status(n);
    assert_int_equal(st.role, RAFT_PRECANDIDATE);
    assert_int_equal(st.term, 2);
    assert_int_equal(st.vote, 3);
    assert_false(n->out.hs_changed);
    /* pre-vote traffic changes no durable state: it goes at once */
    assert_int_equal(h_count(n, H_AFTER, RAFT_MSG_PREVOTE, RAFT_NONE), 0);
    assert_int_equal(h_count(n, H_ANY, RAFT_MSG_VOTE, RAFT_NONE), 0);
    for (raft_id to = 2; to <= 3; to++) {
        const struct raft_msg *m = h_find(n, H_NOW, RAFT_MSG_PREVOTE, to);
        assert_non_null(m);
        assert_int_equal(m->term, 3); /* the term it would campaign in */
        assert_int_equal(m->index, 3);
        assert_int_equal(m->log_term, 2);
    }
    h_free(n);
}

/* An election timeout starts a pre-election, not an election. */
static void test_timeout_starts_prevote(void **state)
{
    (void)state;
    struct h_node *n = h_restore(1, 3, 2, 0, T(1, 1, 2), 3, NULL);
    h_tick(n, 20); /* randomized timeout is in [10, 20) */
    h_drain(n);
    assert_int_equal(raft_role(n->r), RAFT_PRECANDIDATE);
    assert_int_equal(raft_current_term(n->r), 2);
    assert_int_equal(h_count(n, H_NOW, RAFT_MSG_PREVOTE, RAFT_NONE), 2);
    h_free(n);
}

enum expect { SILENT, GRANT, REJECT };

struct voter_case {
    const char *name;
    raft_term hs_term;
    raft_id hs_vote;
    raft_term term; /* pre-vote term */
    raft_index index;
    raft_term log_term;
    enum expect expect;
    raft_term resp_term;
};

/* Voter node 1 of 3 with log [1 1 2]; node 2 asks. */
static const struct voter_case voter_cases[] = {
    {"up to date, next term", 2, 0, 3, 3, 2, GRANT, 3},
    {"up to date, far future term", 2, 0, 9, 3, 2, GRANT, 9},
    {"log behind by term", 2, 0, 3, 7, 1, REJECT, 2},
    {"log behind by index", 2, 0, 3, 2, 2, REJECT, 2},
    {"voted for another in its own term", 2, 3, 3, 3, 2, GRANT, 3},
    {"equal term, not voted", 3, 0, 3, 3, 2, GRANT, 3},
    {"equal term, voted for another", 3, 3, 3, 3, 2, REJECT, 3},
    {"stale term is rejected", 4, 0, 3, 3, 2, REJECT, 4},
};

static void test_prevote_voter_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(voter_cases) / sizeof(voter_cases[0]); i++) {
        const struct voter_case *c = &voter_cases[i];
        h_case = c->name;
        struct h_node *n = h_restore(1, 3, c->hs_term, c->hs_vote, T(1, 1, 2), 3, NULL);
        h_step(n, (struct raft_msg){.type = RAFT_MSG_PREVOTE, .from = 2, .term = c->term,
                                    .index = c->index, .log_term = c->log_term});
        h_drain(n);
        struct raft_status st = h_status(n);
        /* a pre-vote never changes the voter's term or vote */
        CHECK_EQ(st.term, c->hs_term);
        CHECK_EQ(st.vote, c->hs_vote);
        CHECK(!n->out.hs_changed);
        CHECK_EQ(h_count(n, H_AFTER, RAFT_MSG_PREVOTE_RESP, RAFT_NONE), 0);
        const struct raft_msg *m = h_find(n, H_NOW, RAFT_MSG_PREVOTE_RESP, 2);
        CHECK_EQ(m != NULL, c->expect != SILENT);
        if (m) {
            CHECK_EQ(m->reject, c->expect == REJECT);
            CHECK_EQ(m->term, c->resp_term);
        }
        h_free(n);
    }
    h_case = NULL;
}

struct presp {
    raft_id from;
    bool reject;
    raft_term term;
};

struct tally_case {
    const char *name;
    struct presp resps[5];
    size_t n;
    enum raft_role role_after;
    raft_term term_after;
};

/* Pre-candidate node 1 of voters {1..5} + learner 6, at term 2. */
static const struct tally_case tally_cases[] = {
    {"quorum of grants", {{2, false, 3}, {3, false, 3}}, 2, RAFT_CANDIDATE, 3},
    {"one grant", {{2, false, 3}}, 1, RAFT_PRECANDIDATE, 2},
    {"duplicate grant counts once", {{2, false, 3}, {2, false, 3}}, 2, RAFT_PRECANDIDATE, 2},
    {"grant for the wrong term is ignored", {{2, false, 2}, {3, false, 2}}, 2, RAFT_PRECANDIDATE, 2},
    {"learner's grant does not count", {{2, false, 3}, {6, false, 3}}, 2, RAFT_PRECANDIDATE, 2},
    {"rejection quorum returns to follower", {{2, true, 2}, {3, true, 2}, {4, true, 2}}, 3,
     RAFT_FOLLOWER, 2},
    {"two rejections wait", {{2, true, 2}, {3, true, 2}}, 2, RAFT_PRECANDIDATE, 2},
    {"rejection from a higher term", {{2, true, 5}}, 1, RAFT_FOLLOWER, 5},
    {"mixed, grants win", {{2, true, 2}, {3, false, 3}, {4, true, 2}, {5, false, 3}}, 4,
     RAFT_CANDIDATE, 3},
};

static void test_precandidate_tally(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(tally_cases) / sizeof(tally_cases[0]); i++) {
        const struct tally_case *c = &tally_cases[i];
        h_case = c->name;
        struct raft_conf conf = h_conf(5, 1);
        struct h_node *n = h_restore_conf(1, &conf, 2, 4, T(1, 1, 2), 3, NULL);
        CHECK_RV(raft_campaign(n->r), RAFT_OK);
        h_drain(n);
        CHECK_EQ(h_count(n, H_NOW, RAFT_MSG_PREVOTE, RAFT_NONE), 4);
        for (size_t k = 0; k < c->n; k++)
            h_step(n, (struct raft_msg){.type = RAFT_MSG_PREVOTE_RESP, .from = c->resps[k].from,
                                        .term = c->resps[k].term, .reject = c->resps[k].reject});
        h_drain(n);
        struct raft_status st = h_status(n);
        CHECK_EQ(st.role, c->role_after);
        CHECK_EQ(st.term, c->term_after);
        if (c->role_after == RAFT_CANDIDATE) {
            /* now a real election: term+1, own vote, requests after persist */
            CHECK_EQ(st.vote, 1);
            CHECK(n->out.hs_changed);
            CHECK_EQ(n->out.hs.term, 3);
            CHECK_EQ(n->out.hs.vote, 1);
            CHECK_EQ(h_count(n, H_AFTER, RAFT_MSG_VOTE, RAFT_NONE), 4);
            CHECK_EQ(h_count(n, H_NOW, RAFT_MSG_VOTE, RAFT_NONE), 0);
            const struct raft_msg *m = h_find(n, H_AFTER, RAFT_MSG_VOTE, 2);
            CHECK(m != NULL);
            CHECK_EQ(m->term, 3);
            CHECK_EQ(m->ctx, 0);
        } else {
            CHECK_EQ(h_count(n, H_ANY, RAFT_MSG_VOTE, RAFT_NONE), 0);
            if (st.term == 2) {
                CHECK_EQ(st.vote, 4); /* a failed pre-vote leaves no trace */
                CHECK(!n->out.hs_changed);
            }
        }
        h_free(n);
    }
    h_case = NULL;
}

/* A single voter wins its pre-vote and its vote alone. */
static void test_single_voter_elects_itself(void **state)
{
    (void)state;
    struct h_node *n = h_boot(1, 1, NULL);
    assert_int_equal(raft_campaign(n->r), RAFT_OK);
    assert_int_equal(raft_role(n->r), RAFT_LEADER);
    assert_int_equal(raft_current_term(n->r), 2);
    h_free(n);
}

/* Hearing from a leader of its term ends a pre-election. */
static void test_precandidate_yields_to_leader(void **state)
{
    (void)state;
    struct h_node *n = h_restore(1, 3, 2, 0, T(1, 1, 2), 3, NULL);
    assert_int_equal(raft_campaign(n->r), RAFT_OK);
    h_step(n, (struct raft_msg){.type = RAFT_MSG_HEARTBEAT, .from = 3, .term = 2});
    assert_int_equal(raft_role(n->r), RAFT_FOLLOWER);
    assert_int_equal(raft_leader(n->r), 3);
    assert_int_equal(raft_current_term(n->r), 2);
    h_free(n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_precandidate_changes_nothing_durable),
        cmocka_unit_test(test_timeout_starts_prevote),
        cmocka_unit_test(test_prevote_voter_table),
        cmocka_unit_test(test_precandidate_tally),
        cmocka_unit_test(test_single_voter_elects_itself),
        cmocka_unit_test(test_precandidate_yields_to_leader),
    };
    return cmocka_run_group_tests_name("raft-prevote", tests, NULL, NULL);
}
