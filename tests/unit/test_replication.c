/* test_replication.c - the leader's side of log replication: fast
 * backtracking with the follower's hint, pipelining bounded by max_inflight,
 * batching bounded by max_msg_entries / max_msg_bytes, heartbeats. */
#include "harness.h"

#define LOG(...) .log = T(__VA_ARGS__), .n_log = NT(__VA_ARGS__)

/* Node 1 restored with log terms[] (hard state term = last term), elected. */
static struct h_node *leader_with(const raft_term *terms, size_t n, unsigned voters,
                                  const struct raft_config *cfg)
{
    struct h_node *l = h_restore(1, voters, terms[n - 1], 0, terms, n, cfg);
    h_make_leader(l);
    return l;
}

struct bt_case {
    const char *name;
    const raft_term *log;
    size_t n_log;
    raft_index rejected; /* the reply's index: prev of the append it answers */
    raft_index hint_index;
    raft_term hint_term;
    bool resend;           /* a new append must follow */
    raft_index next_prev;  /* ... with this prev index */
};

/* Leader log [1 1 3 3 3 5 5], elected in term 6 (no-op at 8); its first
 * probe to node 2 has prev (7, 5).  Node 2 rejects it. */
static const struct bt_case bt_cases[] = {
    {"follower log shorter", LOG(1, 1, 3, 3, 3, 5, 5), 7, 4, 0, true, 3},
    {"follower empty", LOG(1, 1, 3, 3, 3, 5, 5), 7, 1, 0, true, 0},
    {"hint term unknown to the leader: skip the follower's term",
     LOG(1, 1, 3, 3, 3, 5, 5), 7, 3, 2, true, 2},
    {"hint term known to the leader: skip to the leader's last of it",
     LOG(1, 1, 3, 3, 3, 5, 5), 7, 3, 3, true, 5},
    {"hint term 4 between the leader's terms", LOG(1, 1, 3, 3, 3, 5, 5), 7, 5, 4, true, 4},
    {"hint past the rejected index is clamped", LOG(1, 1, 3, 3, 3, 5, 5), 7, 20, 0, true, 6},
    {"stale rejection is ignored", LOG(1, 1, 3, 3, 3, 5, 5), 5, 2, 0, false, 0},
};

static void test_backtracking_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bt_cases) / sizeof(bt_cases[0]); i++) {
        const struct bt_case *c = &bt_cases[i];
        h_case = c->name;
        struct h_node *l = leader_with(c->log, c->n_log, 3, NULL);
        CHECK_EQ(raft_current_term(l->r), 6);
        const struct raft_msg *probe = h_find(l, H_NOW, RAFT_MSG_APPEND, 2);
        CHECK(probe != NULL);
        CHECK_EQ(probe->index, 7);
        CHECK_EQ(probe->log_term, 5);
        CHECK_EQ(probe->n_entries, 1);
        /* one probe at a time: nothing more goes out until it is answered */
        h_propose(l, 1, 8);
        h_drain(l);
        CHECK_EQ(h_count(l, H_ANY, RAFT_MSG_APPEND, 2), 0);

        h_step(l, (struct raft_msg){.type = RAFT_MSG_APPEND_RESP, .from = 2, .term = 6,
                                    .reject = true, .index = c->rejected,
                                    .hint_index = c->hint_index, .hint_term = c->hint_term});
        h_drain(l);
        const struct raft_msg *m = h_find(l, H_NOW, RAFT_MSG_APPEND, 2);
        CHECK_EQ(m != NULL, c->resend);
        if (m) {
            CHECK_EQ(m->index, c->next_prev);
            CHECK_EQ(m->log_term, h_term_at(l, c->next_prev));
            CHECK_EQ(m->n_entries, raft_last_index(l->r) - c->next_prev);
            CHECK_EQ(m->entries[0].index, c->next_prev + 1);
            /* the follower accepts: replication switches to pipelining */
            h_ack(l, 2, raft_last_index(l->r));
            struct raft_progress_status p = h_progress(l, 2);
            CHECK_EQ(p.state, 1);
            CHECK_EQ(p.match, raft_last_index(l->r));
        }
        h_free(l);
    }
    h_case = NULL;
}

struct pipe_case {
    const char *name;
    uint32_t max_inflight;
    uint32_t max_entries;
    unsigned proposals;
    size_t first_burst; /* appends to node 2 in the first batch */
    uint64_t max_bytes; /* max_inflight_bytes; 0 = no limit */
};

/* Proposals are 16 bytes: 40 on the wire with RAFT_ENTRY_WIRE_BYTES. */
static const struct pipe_case pipe_cases[] = {
    {"window of 3, one entry per message", 3, 1, 5, 3, 0},
    {"window of 1", 1, 1, 3, 1, 0},
    {"window larger than the work", 64, 1, 5, 5, 0},
    {"window of 2, two entries per message", 2, 2, 10, 2, 0},
    /* a follower far behind: the bytes, not the count, close the window */
    {"byte window: 160 + 160 >= 300", 64, 4, 40, 2, 300},
    {"byte window below one message: one still goes", 64, 4, 40, 1, 10},
    {"byte window of exactly one message", 64, 4, 40, 1, 160},
};

static void test_pipelining_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(pipe_cases) / sizeof(pipe_cases[0]); i++) {
        const struct pipe_case *c = &pipe_cases[i];
        h_case = c->name;
        struct raft_config cfg = h_config(1);
        cfg.max_inflight = c->max_inflight;
        cfg.max_msg_entries = c->max_entries;
        cfg.max_inflight_bytes = c->max_bytes;
        struct h_node *l = leader_with(T(1), 1, 3, &cfg);
        h_ack_all(l);
        raft_index base = raft_last_index(l->r);
        h_propose(l, c->proposals, 16);
        h_drain(l);
        CHECK_EQ(h_count(l, H_NOW, RAFT_MSG_APPEND, 2), c->first_burst);
        CHECK_EQ(h_progress(l, 2).inflight, c->first_burst);
        raft_index prev = base;
        for (size_t k = 0; k < c->first_burst; k++) {
            const struct raft_msg *m = h_nth(l, H_NOW, RAFT_MSG_APPEND, 2, k);
            CHECK_EQ(m->index, prev);
            CHECK(m->n_entries >= 1 && m->n_entries <= c->max_entries);
            prev += m->n_entries;
        }
        /* acknowledging the first frees one slot */
        const struct raft_msg *first = h_nth(l, H_NOW, RAFT_MSG_APPEND, 2, 0);
        raft_index first_last = first->index + first->n_entries;
        size_t more_expected = prev < raft_last_index(l->r) ? 1 : 0;
        h_ack(l, 2, first_last);
        CHECK_EQ(h_count(l, H_NOW, RAFT_MSG_APPEND, 2), more_expected);
        if (more_expected)
            CHECK_EQ(h_find(l, H_NOW, RAFT_MSG_APPEND, 2)->index, prev);
        h_free(l);
    }
    h_case = NULL;
}

struct batch_case {
    const char *name;
    uint32_t max_entries;
    uint32_t max_bytes;
    uint32_t sizes[6];
    size_t n_sizes;
    size_t per_msg[6]; /* entries in each append to node 2, in order */
    size_t n_msgs;
};

static const struct batch_case batch_cases[] = {
    {"entry limit", 2, 1u << 20, {10, 10, 10, 10, 10}, 5, {2, 2, 1}, 3},
    {"byte limit", 100, 250, {100, 100, 100, 100, 100}, 5, {2, 2, 1}, 3},
    {"exact byte fit", 100, 200, {100, 100}, 2, {2}, 1},
    {"oversized entry goes alone", 100, 50, {100, 10, 10}, 3, {1, 2}, 2},
    {"empty entries count against the entry limit", 3, 1, {0, 0, 0, 0}, 4, {3, 1}, 2},
    {"everything proposed together in one message", 100, 1u << 20, {5, 5, 5, 5, 5, 5}, 6, {6}, 1},
};

static void test_batching_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(batch_cases) / sizeof(batch_cases[0]); i++) {
        const struct batch_case *c = &batch_cases[i];
        h_case = c->name;
        struct raft_config cfg = h_config(1);
        cfg.max_msg_entries = c->max_entries;
        cfg.max_msg_bytes = c->max_bytes;
        struct h_node *l = leader_with(T(1), 1, 3, &cfg);
        h_ack_all(l);
        for (size_t k = 0; k < c->n_sizes; k++)
            h_propose(l, 1, c->sizes[k]);
        h_drain(l);
        CHECK_EQ(h_count(l, H_NOW, RAFT_MSG_APPEND, 2), c->n_msgs);
        raft_index next = 3; /* after the bootstrap entry and the no-op */
        for (size_t k = 0; k < c->n_msgs; k++) {
            const struct raft_msg *m = h_nth(l, H_NOW, RAFT_MSG_APPEND, 2, k);
            CHECK(m != NULL);
            CHECK_EQ(m->n_entries, c->per_msg[k]);
            CHECK_EQ(m->index + 1, next);
            for (uint32_t e = 0; e < m->n_entries; e++) {
                CHECK_EQ(m->entries[e].index, next);
                CHECK_EQ(m->entries[e].len, c->sizes[next - 3]);
                next++;
            }
        }
        h_free(l);
    }
    h_case = NULL;
}

/* The leader's own appends leave before its log is durable (thesis 10.2.1). */
static void test_leader_sends_before_persist(void **state)
{
    (void)state;
    struct h_node *l = leader_with(T(1), 1, 3, NULL);
    h_ack_all(l);
    h_drain(l);
    assert_int_equal(h_count(l, H_ANY, RAFT_MSG_APPEND, RAFT_NONE), 0); /* nothing to send */
    h_propose(l, 2, 4);
    h_drain(l);
    assert_int_equal(l->out.n_ents, 2);
    assert_true(h_status(l).persisted < raft_last_index(l->r));
    assert_int_equal(l->out.n_ap, 0);
    assert_int_equal(h_count(l, H_NOW, RAFT_MSG_APPEND, 2), 1);
    assert_int_equal(h_count(l, H_NOW, RAFT_MSG_APPEND, 3), 1);
    h_free(l);
}

/* Heartbeats go to every follower each heartbeat_ticks, and never tell a
 * follower to commit past what it is known to hold. */
static void test_heartbeat_commit_clamped(void **state)
{
    (void)state;
    struct h_node *l = leader_with(T(1), 1, 3, NULL);
    h_ack_all(l);
    raft_index match3 = raft_last_index(l->r);
    h_propose(l, 3, 4);
    h_drain(l);
    h_ack(l, 2, raft_last_index(l->r));
    h_persist(l);
    h_drain(l);
    assert_int_equal(raft_commit_index(l->r), raft_last_index(l->r));
    h_tick(l, 1);
    h_drain(l);
    const struct raft_msg *hb2 = h_find(l, H_NOW, RAFT_MSG_HEARTBEAT, 2);
    const struct raft_msg *hb3 = h_find(l, H_NOW, RAFT_MSG_HEARTBEAT, 3);
    assert_non_null(hb2);
    assert_non_null(hb3);
    assert_int_equal(hb2->commit, raft_commit_index(l->r));
    assert_int_equal(hb3->commit, match3);
    h_free(l);
}

/* An unreachable follower in pipeline mode falls back to probing from its
 * last acknowledged entry; the probe goes out and then one at a time. */
static void test_unreachable_falls_back_to_probe(void **state)
{
    (void)state;
    struct h_node *l = leader_with(T(1), 1, 3, NULL);
    h_ack_all(l);
    raft_index match = raft_last_index(l->r);
    h_propose(l, 3, 4);
    h_drain(l);
    assert_int_equal(h_progress(l, 2).state, 1);
    raft_report_unreachable(l->r, 2);
    struct raft_progress_status p = h_progress(l, 2);
    assert_int_equal(p.state, 0);
    assert_int_equal(p.next, match + 1);
    h_drain(l);
    assert_int_equal(h_count(l, H_NOW, RAFT_MSG_APPEND, 2), 1);
    assert_int_equal(h_find(l, H_NOW, RAFT_MSG_APPEND, 2)->index, match);
    h_propose(l, 1, 4);
    h_drain(l);
    assert_int_equal(h_count(l, H_NOW, RAFT_MSG_APPEND, 2), 0);
    h_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backtracking_table),
        cmocka_unit_test(test_pipelining_table),
        cmocka_unit_test(test_batching_table),
        cmocka_unit_test(test_leader_sends_before_persist),
        cmocka_unit_test(test_heartbeat_commit_clamped),
        cmocka_unit_test(test_unreachable_falls_back_to_probe),
    };
    return cmocka_run_group_tests_name("raft-replication", tests, NULL, NULL);
}
