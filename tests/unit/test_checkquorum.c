/* test_checkquorum.c - a leader that has not heard from a majority within an
 * election timeout steps down (thesis §6.2). */
#include "harness.h"

#define PERIODS 4

struct cq_case {
    const char *name;
    unsigned voters;
    unsigned learners;
    bool check_quorum;
    uint32_t heard[PERIODS]; /* bit i: node i answers during that period */
    bool use_append_resp;    /* answer with APPEND_RESP instead of HEARTBEAT_RESP */
    int stepped_down_in;     /* period (0-based) at whose end it steps down; -1 never */
};

#define B(id) (1u << (id))

static const struct cq_case cases[] = {
    {"3 voters, silence", 3, 0, true, {0, 0, 0, 0}, false, 0},
    {"3 voters, one follower keeps answering", 3, 0, true,
     {B(2), B(2), B(3), B(2) | B(3)}, false, -1},
    {"3 voters, answers via append acks", 3, 0, true, {B(2), B(3), B(2), B(3)}, true, -1},
    {"3 voters, silence after one period", 3, 0, true, {B(2), 0, B(2), B(2)}, false, 1},
    {"5 voters, one follower is not a majority", 5, 0, true, {B(2), B(2), B(2), B(2)}, false, 0},
    {"5 voters, two followers are", 5, 0, true,
     {B(2) | B(3), B(4) | B(5), B(2) | B(5), B(3) | B(4)}, false, -1},
    {"learners do not count", 3, 2, true, {B(4) | B(5), 0, 0, 0}, false, 0},
    {"check-quorum off: never", 3, 0, false, {0, 0, 0, 0}, false, -1},
    {"single voter needs nobody", 1, 0, true, {0, 0, 0, 0}, false, -1},
};

static void test_check_quorum_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct cq_case *c = &cases[i];
        h_case = c->name;
        struct raft_config cfg = h_config(1);
        cfg.check_quorum = c->check_quorum;
        struct raft_conf conf = h_conf(c->voters, c->learners);
        struct h_node *l = h_restore_conf(1, &conf, 1, 0, T(1), 1, &cfg);
        h_make_leader(l);
        raft_term term = raft_current_term(l->r);
        int down = -1;
        for (int p = 0; p < PERIODS && down < 0; p++) {
            for (unsigned t = 0; t < cfg.election_ticks; t++) {
                /* it must not step down before a whole timeout passed */
                CHECK_EQ(raft_role(l->r), RAFT_LEADER);
                if (t == cfg.election_ticks / 2) {
                    for (raft_id id = 2; id <= c->voters + c->learners; id++) {
                        if (!(c->heard[p] & B(id)))
                            continue;
                        if (c->use_append_resp)
                            h_step(l, (struct raft_msg){.type = RAFT_MSG_APPEND_RESP,
                                                        .from = id, .term = term,
                                                        .index = raft_last_index(l->r)});
                        else
                            h_step(l, (struct raft_msg){.type = RAFT_MSG_HEARTBEAT_RESP,
                                                        .from = id, .term = term});
                    }
                }
                h_tick(l, 1);
                h_drain(l);
            }
            if (raft_role(l->r) != RAFT_LEADER)
                down = p;
        }
        CHECK_EQ(down, c->stepped_down_in);
        if (down >= 0) {
            struct raft_status st = h_status(l);
            CHECK_EQ(st.role, RAFT_FOLLOWER);
            CHECK_EQ(st.term, term); /* stepping down is not a new term */
            CHECK_EQ(st.leader, RAFT_NONE);
            CHECK_EQ(raft_propose(l->r, "x", 1, NULL, NULL), RAFT_ENOTLEADER);
        }
        h_free(l);
    }
    h_case = NULL;
}

static bool status_active(const struct raft_status *st, raft_id id)
{
    for (unsigned i = 0; i < st->n_progress; i++)
        if (st->progress[i].id == id)
            return st->progress[i].recent_active;
    return false;
}

/* STATUS's "reachable" (recent_active) does not blink off when a new
 * check-quorum round starts: a follower heard from in the last round still
 * counts until a whole round passed without it (member remove's quorum
 * check read a just-cleared flag and refused, under load). */
static void test_status_active_spans_rounds(void **state)
{
    (void)state;
    struct raft_config cfg = h_config(1);
    struct h_node *l = h_restore(1, 3, 1, 0, T(1), 1, &cfg);
    h_make_leader(l);
    raft_term term = raft_current_term(l->r);
    for (unsigned round = 0; round < 2; round++) {
        for (unsigned t = 0; t < cfg.election_ticks; t++) {
            /* node 2 answers in every round, node 3 in the first only */
            if (t == 1)
                for (raft_id id = 2; id <= (round == 0 ? 3u : 2u); id++)
                    h_step(l, (struct raft_msg){.type = RAFT_MSG_HEARTBEAT_RESP, .from = id,
                                                .term = term});
            h_tick(l, 1);
            h_drain(l);
            struct raft_status st = h_status(l);
            CHECK_EQ(status_active(&st, 2), t >= 1 || round > 0);
            /* node 3: active from its answer until the end of the round
             * after it */
            CHECK_EQ(status_active(&st, 3), round == 0 ? t >= 1 : t + 1 < cfg.election_ticks);
        }
    }
    CHECK_EQ(raft_role(l->r), RAFT_LEADER);
    h_free(l);
}

/* A deposed leader that missed the new term learns it from the rejection
 * its stale heartbeat draws, and a newer leader's heartbeat takes over. */
static void test_stale_leader_learns_new_term(void **state)
{
    (void)state;
    struct h_node *l = h_restore(1, 3, 1, 0, T(1), 1, NULL);
    h_make_leader(l);
    raft_term term = raft_current_term(l->r);
    h_step(l, (struct raft_msg){.type = RAFT_MSG_APPEND_RESP, .from = 2, .term = term + 3,
                                .reject = true});
    h_drain(l);
    assert_int_equal(raft_role(l->r), RAFT_FOLLOWER);
    assert_int_equal(raft_current_term(l->r), term + 3);
    assert_true(l->out.hs_changed);
    h_step(l, (struct raft_msg){.type = RAFT_MSG_HEARTBEAT, .from = 3, .term = term + 3});
    assert_int_equal(raft_leader(l->r), 3);
    h_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_quorum_table),
        cmocka_unit_test(test_stale_leader_learns_new_term),
        cmocka_unit_test(test_status_active_spans_rounds),
    };
    return cmocka_run_group_tests_name("raft-checkquorum", tests, NULL, NULL);
}
