/* test_vote.c - RequestVote on the voter's side (Raft §5.2, §5.4.1), the
 * candidate's tally, and leader stickiness (thesis §4.2.3). */
#include "harness.h"

enum expect { SILENT, GRANT, REJECT };

struct vote_case {
    const char *name;
    raft_term hs_term;
    raft_id hs_vote;
    raft_id from;
    raft_term term;       /* request term */
    raft_index index;     /* candidate's last index */
    raft_term log_term;   /* candidate's last term */
    enum expect expect;
    raft_term term_after;
    raft_id vote_after;
};

/* The voter (node 1 of 3) holds [1 1 2]: last index 3, last term 2. */
static const struct vote_case vote_cases[] = {
    {"higher term, same log", 2, 0, 2, 3, 3, 2, GRANT, 3, 2},
    {"higher term, longer log, same last term", 2, 0, 2, 3, 5, 2, GRANT, 3, 2},
    {"higher term, shorter log, newer last term", 2, 0, 2, 3, 2, 3, GRANT, 3, 2},
    {"higher term, longer log, older last term", 2, 0, 2, 3, 9, 1, REJECT, 3, 0},
    {"higher term, same last term, shorter log", 2, 0, 2, 3, 2, 2, REJECT, 3, 0},
    {"higher term clears an old-term vote", 2, 3, 2, 3, 3, 2, GRANT, 3, 2},
    {"higher term, old vote cleared, log stale", 2, 3, 2, 3, 2, 1, REJECT, 3, 0},
    {"equal term, no vote yet", 3, 0, 2, 3, 3, 2, GRANT, 3, 2},
    {"equal term, voted for another", 3, 3, 2, 3, 3, 2, REJECT, 3, 3},
    {"equal term, voted for itself", 3, 1, 2, 3, 9, 9, REJECT, 3, 1},
    {"equal term, re-grant to the same candidate", 3, 2, 2, 3, 3, 2, GRANT, 3, 2},
    {"lower term is ignored", 3, 0, 2, 2, 9, 2, SILENT, 3, 0},
};

static void test_vote_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(vote_cases) / sizeof(vote_cases[0]); i++) {
        const struct vote_case *c = &vote_cases[i];
        h_case = c->name;
        struct h_node *n = h_restore(1, 3, c->hs_term, c->hs_vote, T(1, 1, 2), 3, NULL);
        h_step(n, (struct raft_msg){.type = RAFT_MSG_VOTE, .from = c->from, .term = c->term,
                                    .index = c->index, .log_term = c->log_term});
        h_drain(n);
        struct raft_status st = h_status(n);
        CHECK_EQ(st.term, c->term_after);
        CHECK_EQ(st.vote, c->vote_after);
        CHECK_EQ(st.role, RAFT_FOLLOWER);
        /* a vote answer promises durable state: never in msgs */
        CHECK_EQ(h_count(n, H_NOW, RAFT_MSG_VOTE_RESP, RAFT_NONE), 0);
        const struct raft_msg *m = h_find(n, H_AFTER, RAFT_MSG_VOTE_RESP, c->from);
        if (c->expect == SILENT) {
            CHECK(m == NULL);
        } else {
            CHECK(m != NULL);
            CHECK_EQ(m->reject, c->expect == REJECT);
            CHECK_EQ(m->term, c->term_after);
            CHECK_EQ(h_count(n, H_AFTER, RAFT_MSG_VOTE_RESP, RAFT_NONE), 1);
        }
        bool hs_moved = c->term_after != c->hs_term || c->vote_after != c->hs_vote;
        CHECK_EQ(n->out.hs_changed, hs_moved);
        if (hs_moved) {
            CHECK_EQ(n->out.hs.term, c->term_after);
            CHECK_EQ(n->out.hs.vote, c->vote_after);
        }
        h_free(n);
    }
    h_case = NULL;
}

static bool granted(struct h_node *n, raft_id from, raft_term term)
{
    h_step(n, (struct raft_msg){.type = RAFT_MSG_VOTE, .from = from, .term = term, .index = 3,
                                .log_term = 2});
    h_drain(n);
    const struct raft_msg *m = h_find(n, H_AFTER, RAFT_MSG_VOTE_RESP, from);
    assert_non_null(m);
    return !m->reject;
}

/* One vote per term: the first candidate of a term gets it, a rival in the
 * same term does not, the first asks again (a lost reply) and gets it again,
 * and the next term starts fresh. */
static void test_one_vote_per_term(void **state)
{
    (void)state;
    struct h_node *n = h_restore(1, 3, 2, 0, T(1, 1, 2), 3, NULL);
    assert_true(granted(n, 2, 3));
    assert_false(granted(n, 3, 3));
    assert_true(granted(n, 2, 3));
    assert_int_equal(h_status(n).vote, 2);
    assert_true(granted(n, 3, 4));
    assert_int_equal(h_status(n).vote, 3);
    assert_false(granted(n, 2, 4));
    h_free(n);
}

/* The grant and the hard state recording it come out in the same ready
 * batch, the grant behind persistence. */
static void test_grant_waits_for_persist(void **state)
{
    (void)state;
    struct h_node *n = h_restore(1, 3, 2, 0, T(1, 1, 2), 3, NULL);
    h_step(n, (struct raft_msg){.type = RAFT_MSG_VOTE, .from = 2, .term = 3, .index = 3,
                                .log_term = 2});
    assert_true(raft_has_ready(n->r));
    struct raft_ready rd;
    raft_ready(n->r, &rd);
    assert_true(rd.hs_changed);
    assert_int_equal(rd.hs.term, 3);
    assert_int_equal(rd.hs.vote, 2);
    assert_int_equal(rd.n_msgs, 0);
    assert_int_equal(rd.n_msgs_after_persist, 1);
    assert_int_equal(rd.msgs_after_persist[0].type, RAFT_MSG_VOTE_RESP);
    assert_false(rd.msgs_after_persist[0].reject);
    raft_advance(n->r, &rd);
    assert_false(raft_has_ready(n->r));
    h_free(n);
}

/* ---- the candidate ------------------------------------------------------- */

/* Node 1 of 3 with log [1 1 2] at term 2, pre-vote off, campaigning. */
static struct h_node *candidate(void)
{
    struct raft_config cfg = h_config(1);
    cfg.pre_vote = false;
    struct h_node *n = h_restore(1, 3, 2, 0, T(1, 1, 2), 3, &cfg);
    assert_int_equal(raft_campaign(n->r), RAFT_OK);
    return n;
}

static void test_campaign_without_prevote(void **state)
{
    (void)state;
    struct h_node *n = candidate();
    h_drain(n);
    struct raft_status st = h_status(n);
    assert_int_equal(st.role, RAFT_CANDIDATE);
    assert_int_equal(st.term, 3);
    assert_int_equal(st.vote, 1);
    assert_true(n->out.hs_changed);
    assert_int_equal(n->out.hs.term, 3);
    assert_int_equal(n->out.hs.vote, 1);
    /* the request carries a freshly bumped term: after persist */
    assert_int_equal(h_count(n, H_NOW, RAFT_MSG_VOTE, RAFT_NONE), 0);
    for (raft_id to = 2; to <= 3; to++) {
        const struct raft_msg *m = h_find(n, H_AFTER, RAFT_MSG_VOTE, to);
        assert_non_null(m);
        assert_int_equal(m->term, 3);
        assert_int_equal(m->index, 3);
        assert_int_equal(m->log_term, 2);
        assert_int_equal(m->ctx, 0);
    }
    assert_int_equal(h_count(n, H_ANY, RAFT_MSG_PREVOTE, RAFT_NONE), 0);
    h_free(n);
}

struct resp {
    raft_id from;
    bool reject;
};

struct tally_case {
    const char *name;
    struct resp resps[6];
    size_t n;
    enum raft_role role_after;
};

/* Candidate node 1 of five voters {1..5} plus learner 6, term 3. */
static const struct tally_case tally_cases[] = {
    {"two grants make a quorum with itself", {{2, false}, {3, false}}, 2, RAFT_LEADER},
    {"one grant is not enough", {{2, false}}, 1, RAFT_CANDIDATE},
    {"a duplicate grant counts once", {{2, false}, {2, false}}, 2, RAFT_CANDIDATE},
    {"a learner's grant does not count", {{2, false}, {6, false}}, 2, RAFT_CANDIDATE},
    {"a stranger's grant does not count", {{2, false}, {9, false}}, 2, RAFT_CANDIDATE},
    {"three rejections end the campaign", {{2, true}, {3, true}, {4, true}}, 3, RAFT_FOLLOWER},
    {"two rejections do not", {{2, true}, {3, true}}, 2, RAFT_CANDIDATE},
    {"a changed mind counts once", {{2, true}, {2, false}, {3, false}}, 3, RAFT_CANDIDATE},
    {"mixed, grants win", {{2, true}, {3, false}, {4, true}, {5, false}}, 4, RAFT_LEADER},
};

static void test_candidate_tally(void **state)
{
    (void)state;
    struct raft_config cfg = h_config(1);
    cfg.pre_vote = false;
    for (size_t i = 0; i < sizeof(tally_cases) / sizeof(tally_cases[0]); i++) {
        const struct tally_case *c = &tally_cases[i];
        h_case = c->name;
        struct raft_conf conf = h_conf(5, 1);
        struct h_node *n = h_restore_conf(1, &conf, 2, 0, T(1, 1, 2), 3, &cfg);
        CHECK_RV(raft_campaign(n->r), RAFT_OK);
        CHECK_EQ(h_count(n, H_ANY, RAFT_MSG_VOTE, 6), 0); /* no request to the learner */
        h_drain(n);
        CHECK_EQ(h_count(n, H_ANY, RAFT_MSG_VOTE, 6), 0);
        CHECK_EQ(h_count(n, H_ANY, RAFT_MSG_VOTE, RAFT_NONE), 4);
        for (size_t k = 0; k < c->n; k++)
            h_step(n, (struct raft_msg){.type = RAFT_MSG_VOTE_RESP, .from = c->resps[k].from,
                                        .term = 3, .reject = c->resps[k].reject});
        struct raft_status st = h_status(n);
        CHECK_EQ(st.role, c->role_after);
        CHECK_EQ(st.term, 3);
        CHECK_EQ(st.leader, c->role_after == RAFT_LEADER ? 1 : 0);
        h_free(n);
    }
    h_case = NULL;
}

/* A vote response from a higher term turns the candidate into a follower
 * of that term. */
static void test_candidate_sees_higher_term(void **state)
{
    (void)state;
    struct h_node *n = candidate();
    h_step(n, (struct raft_msg){.type = RAFT_MSG_VOTE_RESP, .from = 2, .term = 7, .reject = true});
    struct raft_status st = h_status(n);
    assert_int_equal(st.role, RAFT_FOLLOWER);
    assert_int_equal(st.term, 7);
    assert_int_equal(st.vote, 0);
    h_free(n);
}

/* ---- leader stickiness ---------------------------------------------------- */

struct sticky_case {
    const char *name;
    bool check_quorum;
    uint8_t type;     /* VOTE or PREVOTE */
    uint64_t ctx;
    unsigned ticks;   /* quiet ticks after hearing from the leader */
    bool answered;    /* a response was produced */
    bool grant;
    raft_term term_after;
};

/* Follower 1 of 3 at term 2 has just heard a heartbeat from leader 2; node
 * 3 (log as good as 1's) asks for votes for term 3. election_ticks = 10. */
static const struct sticky_case sticky_cases[] = {
    {"vote in lease is ignored", true, RAFT_MSG_VOTE, 0, 0, false, false, 2},
    {"vote late in lease is ignored", true, RAFT_MSG_VOTE, 0, 9, false, false, 2},
    {"pre-vote in lease is ignored", true, RAFT_MSG_PREVOTE, 0, 0, false, false, 2},
    {"transfer vote in lease is granted", true, RAFT_MSG_VOTE, RAFT_CTX_TRANSFER, 0, true, true, 3},
    {"transfer pre-vote in lease is granted", true, RAFT_MSG_PREVOTE, RAFT_CTX_TRANSFER, 0, true,
     true, 2},
    {"vote after an election timeout of silence", true, RAFT_MSG_VOTE, 0, 10, true, true, 3},
    {"pre-vote after an election timeout of silence", true, RAFT_MSG_PREVOTE, 0, 10, true, true, 2},
    {"no stickiness without check-quorum", false, RAFT_MSG_VOTE, 0, 0, true, true, 3},
};

static void test_leader_stickiness(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(sticky_cases) / sizeof(sticky_cases[0]); i++) {
        const struct sticky_case *c = &sticky_cases[i];
        h_case = c->name;
        struct raft_config cfg = h_config(1);
        cfg.check_quorum = c->check_quorum;
        struct h_node *n = h_restore(1, 3, 2, 0, T(1, 1, 2), 3, &cfg);
        h_step(n, (struct raft_msg){.type = RAFT_MSG_HEARTBEAT, .from = 2, .term = 2});
        CHECK_EQ(raft_leader(n->r), 2);
        h_tick(n, c->ticks);
        h_drain(n);
        h_step(n, (struct raft_msg){.type = c->type, .from = 3, .term = 3, .index = 3,
                                    .log_term = 2, .ctx = c->ctx});
        h_drain(n);
        uint8_t resp = c->type == RAFT_MSG_VOTE ? RAFT_MSG_VOTE_RESP : RAFT_MSG_PREVOTE_RESP;
        const struct raft_msg *m = h_find(n, H_ANY, resp, 3);
        CHECK_EQ(m != NULL, c->answered);
        if (m) {
            CHECK_EQ(m->reject, !c->grant);
            /* pre-vote answers may go at once, vote answers may not */
            CHECK_EQ(h_find(n, H_NOW, resp, 3) != NULL, c->type == RAFT_MSG_PREVOTE);
        }
        CHECK_EQ(raft_current_term(n->r), c->term_after);
        if (!c->answered)
            CHECK_EQ(raft_leader(n->r), 2);
        h_free(n);
    }
    h_case = NULL;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vote_table),
        cmocka_unit_test(test_one_vote_per_term),
        cmocka_unit_test(test_grant_waits_for_persist),
        cmocka_unit_test(test_campaign_without_prevote),
        cmocka_unit_test(test_candidate_tally),
        cmocka_unit_test(test_candidate_sees_higher_term),
        cmocka_unit_test(test_leader_stickiness),
    };
    return cmocka_run_group_tests_name("raft-vote", tests, NULL, NULL);
}
