/* test_term.c - the §5.1 term rule at its edge: a term that would run out of
 * 64 bits is refused and counted, never adopted or wrapped. */
#include "harness.h"

struct overflow_case {
    const char *name;
    uint8_t type;
    raft_term term;
    bool refused; /* else adopted */
};

/* The receiver (node 1 of 3) holds [1 1 2] at term 2. */
static const struct overflow_case overflow_cases[] = {
    {"append at the limit is adopted", RAFT_MSG_APPEND, RAFT_TERM_MAX, false},
    {"append just past the limit", RAFT_MSG_APPEND, RAFT_TERM_MAX + 1, true},
    {"heartbeat at 2^64-1", RAFT_MSG_HEARTBEAT, UINT64_MAX, true},
    {"vote request at 2^64-1", RAFT_MSG_VOTE, UINT64_MAX, true},
    {"pre-vote just past the limit", RAFT_MSG_PREVOTE, RAFT_TERM_MAX + 1, true},
    {"snapshot at 2^64-1", RAFT_MSG_SNAPSHOT, UINT64_MAX, true},
    {"vote response at 2^64-1", RAFT_MSG_VOTE_RESP, UINT64_MAX, true},
    {"timeout-now at 2^64-1", RAFT_MSG_TIMEOUT_NOW, UINT64_MAX, true},
};

static void test_overflowing_term_refused(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(overflow_cases) / sizeof(overflow_cases[0]); i++) {
        const struct overflow_case *c = &overflow_cases[i];
        h_case = c->name;
        struct h_node *n = h_restore(1, 3, 2, 0, T(1, 1, 2), 3, NULL);
        h_step(n, (struct raft_msg){.type = c->type, .from = 2, .term = c->term, .index = 3,
                                    .log_term = 2, .commit = 3,
                                    .snap = {.index = 9, .term = 2, .conf = h_conf(3, 0)}});
        h_drain(n);
        struct raft_status st = h_status(n);
        CHECK_EQ(st.refused_terms, c->refused ? 1 : 0);
        CHECK_EQ(st.term, c->refused ? 2 : c->term);
        if (c->refused) {
            CHECK_EQ(n->out.n_msgs + n->out.n_ap, 0);
            CHECK(!n->out.hs_changed);
            CHECK(h_log_is(n, T(1, 1, 2), 3));
        }
        h_free(n);
    }
    h_case = NULL;
}

/* A node already at the limit cannot add one to its term: it neither
 * campaigns on its timer nor when asked, and says why. */
static void test_no_campaign_at_limit(void **state)
{
    (void)state;
    struct raft_config cfg = h_config(1);
    for (int pre_vote = 0; pre_vote < 2; pre_vote++) {
        h_case = pre_vote ? "pre-vote" : "vote";
        cfg.pre_vote = pre_vote;
        struct h_node *n = h_restore(1, 3, RAFT_TERM_MAX, 0, T(1, 1, 2), 3, &cfg);
        h_tick(n, 4 * cfg.election_ticks);
        h_drain(n);
        struct raft_status st = h_status(n);
        CHECK_EQ(st.term, RAFT_TERM_MAX);
        CHECK_EQ(st.role, RAFT_FOLLOWER);
        CHECK(st.refused_terms > 0);
        CHECK_EQ(n->out.n_msgs + n->out.n_ap, 0);
        CHECK_RV(raft_campaign(n->r), RAFT_ESTATE);
        h_free(n);
    }
    h_case = NULL;
}

/* One below the limit an election still works, and lands on the limit. */
static void test_campaign_onto_limit(void **state)
{
    (void)state;
    struct h_node *n = h_restore(1, 1, RAFT_TERM_MAX - 1, 0, T(1), 1, NULL);
    CHECK_RV(raft_campaign(n->r), RAFT_OK);
    h_sync(n);
    struct raft_status st = h_status(n);
    CHECK_EQ(st.role, RAFT_LEADER);
    CHECK_EQ(st.term, RAFT_TERM_MAX);
    CHECK_EQ(st.refused_terms, 0);
    h_free(n);
}

static void test_restore_refuses_term_past_limit(void **state)
{
    (void)state;
    struct raft *r;
    struct raft_config cfg = h_config(1);
    CHECK_RV(raft_new(&r, &cfg), RAFT_OK);
    struct raft_hard_state hs = {.term = RAFT_TERM_MAX + 1};
    CHECK_RV(raft_restore(r, &hs, NULL, NULL, 0), RAFT_EINVAL);
    raft_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_overflowing_term_refused),
        cmocka_unit_test(test_no_campaign_at_limit),
        cmocka_unit_test(test_campaign_onto_limit),
        cmocka_unit_test(test_restore_refuses_term_past_limit),
    };
    return cmocka_run_group_tests_name("raft-term", tests, NULL, NULL);
}
