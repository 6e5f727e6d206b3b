/* test_restore.c - creating nodes: raft_new's configuration checks,
 * raft_restore's validation of persisted state, raft_bootstrap's state
 * checks, and the in-memory log's accounting and compaction. */
#include "harness.h"

#include <string.h>

struct cfg_case {
    const char *name;
    void (*mutate)(struct raft_config *);
    int rv;
};

static void m_none(struct raft_config *c) { (void)c; }
static void m_id0(struct raft_config *c) { c->id = 0; }
static void m_elect1(struct raft_config *c) { c->election_ticks = 1; c->heartbeat_ticks = 1; }
static void m_hb0(struct raft_config *c) { c->heartbeat_ticks = 0; }
static void m_hb_eq(struct raft_config *c) { c->heartbeat_ticks = c->election_ticks; }
static void m_entries0(struct raft_config *c) { c->max_msg_entries = 0; }
static void m_inflight0(struct raft_config *c) { c->max_inflight = 0; }
static void m_apply0(struct raft_config *c) { c->max_apply_entries = 0; }
static void m_inflight_huge(struct raft_config *c) { c->max_inflight = 100000; }
static void m_elect2(struct raft_config *c) { c->election_ticks = 2; c->heartbeat_ticks = 1; }

static const struct cfg_case cfg_cases[] = {
    {"defaults", m_none, RAFT_OK},
    {"id 0", m_id0, RAFT_EINVAL},
    {"election_ticks 1", m_elect1, RAFT_EINVAL},
    {"heartbeat_ticks 0", m_hb0, RAFT_EINVAL},
    {"heartbeat not below election", m_hb_eq, RAFT_EINVAL},
    {"max_msg_entries 0", m_entries0, RAFT_EINVAL},
    {"max_inflight 0", m_inflight0, RAFT_EINVAL},
    {"max_apply_entries 0", m_apply0, RAFT_EINVAL},
    {"huge max_inflight is clamped, not refused", m_inflight_huge, RAFT_OK},
    {"smallest timing", m_elect2, RAFT_OK},
};

static void test_new_config_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cfg_cases) / sizeof(cfg_cases[0]); i++) {
        const struct cfg_case *c = &cfg_cases[i];
        h_case = c->name;
        struct raft_config cfg;
        raft_config_defaults(&cfg, 3);
        c->mutate(&cfg);
        struct raft *r = NULL;
        CHECK_RV(raft_new(&r, &cfg), c->rv);
        CHECK_EQ(r != NULL, c->rv == RAFT_OK);
        if (r) {
            struct raft_status st;
            raft_status(r, &st);
            CHECK_EQ(st.id, 3);
            CHECK_EQ(st.role, RAFT_FOLLOWER);
            CHECK_EQ(st.term, 0);
            CHECK_EQ(st.last_index, 0);
            raft_free(r);
        }
    }
    h_case = NULL;
    struct raft *r = NULL;
    assert_int_equal(raft_new(&r, NULL), RAFT_EINVAL);
    raft_free(NULL);
}

struct ent {
    raft_index index;
    raft_term term;
};

struct restore_case {
    const char *name;
    bool with_snap;
    raft_index snap_index;
    raft_term snap_term;
    struct ent ents[5];
    size_t n;
    bool with_hs;
    raft_term hs_term;
    int rv;
};

static const struct restore_case restore_cases[] = {
    {"contiguous from 1", false, 0, 0, {{1, 1}, {2, 1}, {3, 2}}, 3, true, 2, RAFT_OK},
    {"nothing at all", false, 0, 0, {{0, 0}}, 0, false, 0, RAFT_OK},
    {"hard state only", false, 0, 0, {{0, 0}}, 0, true, 4, RAFT_OK},
    {"gap", false, 0, 0, {{1, 1}, {2, 1}, {4, 1}}, 3, true, 1, RAFT_EINVAL},
    {"does not start at 1", false, 0, 0, {{2, 1}, {3, 1}}, 2, true, 1, RAFT_EINVAL},
    {"duplicate index", false, 0, 0, {{1, 1}, {1, 1}}, 2, true, 1, RAFT_EINVAL},
    {"terms go down", false, 0, 0, {{1, 2}, {2, 1}}, 2, true, 2, RAFT_EINVAL},
    {"log newer than the hard state", false, 0, 0, {{1, 1}, {2, 3}}, 2, true, 2, RAFT_EINVAL},
    {"snapshot then entries", true, 5, 2, {{6, 2}, {7, 3}}, 2, true, 3, RAFT_OK},
    {"snapshot only", true, 5, 2, {{0, 0}}, 0, true, 2, RAFT_OK},
    {"snapshot then a gap", true, 5, 2, {{7, 2}}, 1, true, 2, RAFT_EINVAL},
    {"entries overlapping the snapshot", true, 5, 2, {{5, 2}, {6, 2}}, 2, true, 2, RAFT_EINVAL},
    {"entry older than the snapshot", true, 5, 2, {{6, 1}}, 1, true, 2, RAFT_EINVAL},
    {"snapshot newer than the hard state", true, 5, 3, {{0, 0}}, 0, true, 2, RAFT_EINVAL},
};

static void test_restore_table(void **state)
{
    (void)state;
    static const uint8_t payload[] = "abc";
    for (size_t i = 0; i < sizeof(restore_cases) / sizeof(restore_cases[0]); i++) {
        const struct restore_case *c = &restore_cases[i];
        h_case = c->name;
        struct h_node *n = h_new(1, NULL);
        struct raft_entry ents[5];
        for (size_t k = 0; k < c->n; k++)
            ents[k] = (struct raft_entry){.index = c->ents[k].index, .term = c->ents[k].term,
                                          .data = payload, .len = 3};
        struct raft_snapshot_meta snap = {.index = c->snap_index, .term = c->snap_term,
                                          .conf = h_conf(3, 0)};
        struct raft_hard_state hs = {.term = c->hs_term, .vote = 2};
        CHECK_RV(raft_restore(n->r, c->with_hs ? &hs : NULL, c->with_snap ? &snap : NULL,
                              c->n ? ents : NULL, c->n),
                 c->rv);
        if (c->rv == RAFT_OK) {
            struct raft_status st = h_status(n);
            raft_index first = c->with_snap ? c->snap_index + 1 : 1;
            CHECK_EQ(st.first_index, first);
            CHECK_EQ(st.last_index, first - 1 + c->n);
            CHECK_EQ(st.persisted, st.last_index); /* loaded state is durable */
            CHECK_EQ(st.commit, c->with_snap ? c->snap_index : 0);
            CHECK_EQ(st.applied, st.commit);
            CHECK_EQ(st.snap_index, c->with_snap ? c->snap_index : 0);
            CHECK_EQ(st.term, c->with_hs ? c->hs_term : 0);
            CHECK_EQ(st.vote, c->with_hs ? 2 : 0);
            CHECK_EQ(st.conf.n, c->with_snap ? 3 : 0);
            CHECK_EQ(st.role, RAFT_FOLLOWER);
            /* nothing to persist again and nothing to send */
            h_drain(n);
            CHECK(!n->out.hs_changed);
            CHECK_EQ(n->out.n_ents, 0);
            CHECK_EQ(n->out.n_msgs + n->out.n_ap, 0);
            CHECK_EQ(n->out.n_committed, 0);
            /* a node holds one persisted state: a second load is refused */
            if (st.last_index || st.term)
                CHECK_RV(raft_restore(n->r, &hs, NULL, NULL, 0), RAFT_ESTATE);
            if (st.last_index || st.term || st.snap_index) {
                struct raft_conf conf = h_conf(3, 0);
                CHECK_RV(raft_bootstrap(n->r, &conf), RAFT_ESTATE);
            }
        }
        h_free(n);
    }
    h_case = NULL;
}

/* A restored vote still binds: no second vote in the same term. */
static void test_restored_vote_binds(void **state)
{
    (void)state;
    struct h_node *n = h_restore(1, 3, 5, 3, T(1, 1), 2, NULL);
    h_step(n, (struct raft_msg){.type = RAFT_MSG_VOTE, .from = 2, .term = 5, .index = 9,
                                .log_term = 5});
    h_drain(n);
    const struct raft_msg *m = h_find(n, H_AFTER, RAFT_MSG_VOTE_RESP, 2);
    assert_non_null(m);
    assert_true(m->reject);
    h_free(n);
}

static void test_bootstrap(void **state)
{
    (void)state;
    struct h_node *n = h_new(2, NULL);
    struct raft_conf conf = h_conf(3, 1);
    assert_int_equal(raft_bootstrap(n->r, &conf), RAFT_OK);
    h_drain(n);
    assert_true(n->out.hs_changed);
    assert_int_equal(n->out.hs.term, 1);
    assert_int_equal(n->out.hs.vote, 0);
    assert_int_equal(n->out.n_ents, 1);
    const struct raft_entry *e = &n->out.ents[0];
    assert_int_equal(e->index, 1);
    assert_int_equal(e->term, 1);
    assert_int_equal(e->type, RAFT_ENTRY_CONF);
    struct raft_conf d;
    assert_int_equal(raft_conf_decode(e->data, e->len, &d), RAFT_OK);
    assert_int_equal(d.n, 4);
    assert_int_equal(raft_conf_voters(&d), 3);
    struct raft_status st = h_status(n);
    assert_int_equal(st.conf.n, 4);
    assert_int_equal(st.commit, 0);
    assert_int_equal(st.persisted, 0); /* not durable until storage says so */
    assert_int_equal(raft_bootstrap(n->r, &conf), RAFT_ESTATE);
    struct raft_hard_state hs = {.term = 1};
    assert_int_equal(raft_restore(n->r, &hs, NULL, NULL, 0), RAFT_ESTATE);
    h_free(n);
}

struct boot_case {
    const char *name;
    bool null_conf;
    unsigned voters, learners;
    int rv;
};

static const struct boot_case boot_cases[] = {
    {"no conf", true, 0, 0, RAFT_EINVAL},
    {"empty conf", false, 0, 0, RAFT_EINVAL},
    {"learners only", false, 0, 2, RAFT_EINVAL},
    {"one voter", false, 1, 0, RAFT_OK},
    {"largest", false, 9, 7, RAFT_OK},
};

static void test_bootstrap_args_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(boot_cases) / sizeof(boot_cases[0]); i++) {
        const struct boot_case *c = &boot_cases[i];
        h_case = c->name;
        struct h_node *n = h_new(1, NULL);
        struct raft_conf conf = h_conf(c->voters, c->learners);
        CHECK_RV(raft_bootstrap(n->r, c->null_conf ? NULL : &conf), c->rv);
        CHECK_EQ(raft_last_index(n->r), c->rv == RAFT_OK ? 1 : 0);
        CHECK_EQ(raft_current_term(n->r), c->rv == RAFT_OK ? 1 : 0);
        h_free(n);
    }
    h_case = NULL;
}

static void test_entry_at(void **state)
{
    (void)state;
    struct h_node *l = h_boot(1, 1, NULL);
    h_make_leader(l);
    h_propose(l, 4, 3);
    h_sync(l);
    struct raft_entry e;
    assert_int_equal(raft_entry_at(l->r, 0, &e), RAFT_ECOMPACTED);
    assert_int_equal(raft_entry_at(l->r, 7, &e), RAFT_EUNAVAIL);
    assert_int_equal(raft_entry_at(l->r, 6, &e), RAFT_OK);
    assert_int_equal(e.index, 6);
    assert_int_equal(e.len, 3);
    assert_int_equal(e.data[0], 3);
    assert_int_equal(raft_snapshot_taken(l->r, 4), RAFT_OK);
    assert_int_equal(raft_entry_at(l->r, 4, &e), RAFT_ECOMPACTED);
    assert_int_equal(raft_entry_at(l->r, 5, &e), RAFT_OK);
    h_free(l);
}

/* Memory held by the log covers what it holds, without waste beyond a
 * small factor, and stays bounded while snapshots keep compacting it. */
static void test_log_memory(void **state)
{
    (void)state;
    struct h_node *l = h_boot(1, 1, NULL);
    h_make_leader(l);
    size_t empty = raft_log_memory(l->r);
    enum { N = 2000, SIZE = 100 };
    h_propose(l, N, SIZE);
    h_sync(l);
    size_t held = (size_t)N * (SIZE + sizeof(struct raft_entry));
    size_t mem = raft_log_memory(l->r);
    assert_true(mem >= held);
    assert_true(mem <= 4 * held + empty + 65536);
    /* payloads survive the buffers growing */
    for (raft_index i = 3; i < 3 + N; i += 97) {
        struct raft_entry e;
        assert_int_equal(raft_entry_at(l->r, i, &e), RAFT_OK);
        assert_int_equal(e.len, SIZE);
        assert_int_equal(e.data[0], (uint8_t)(i - 3));
        assert_int_equal(e.data[SIZE - 1], (uint8_t)(i - 3));
    }
    size_t peak = 0;
    for (int round = 0; round < 20; round++) {
        assert_int_equal(raft_snapshot_taken(l->r, raft_commit_index(l->r)), RAFT_OK);
        h_propose(l, N, SIZE);
        h_sync(l);
        size_t m = raft_log_memory(l->r);
        if (m > peak)
            peak = m;
    }
    assert_true(peak <= 2 * mem);
    /* and the newest entries are intact */
    struct raft_entry e;
    raft_index last = raft_last_index(l->r);
    assert_int_equal(raft_entry_at(l->r, last, &e), RAFT_OK);
    assert_int_equal(e.data[0], (uint8_t)(N - 1));
    h_free(l);
}

/* A node restored from a snapshot alone (empty in-memory log) leads, and
 * its first entries (the payload-less no-op first) are stored intact. */
static void test_lead_from_snapshot_only(void **state)
{
    (void)state;
    struct h_node *n = h_new(1, NULL);
    struct raft_snapshot_meta snap = {.index = 50, .term = 3, .conf = h_conf(1, 0)};
    struct raft_hard_state hs = {.term = 3, .vote = 1};
    assert_int_equal(raft_restore(n->r, &hs, &snap, NULL, 0), RAFT_OK);
    h_make_leader(n);
    assert_int_equal(raft_commit_index(n->r), 51);
    h_propose(n, 300, 50);
    h_sync(n);
    assert_int_equal(raft_commit_index(n->r), 351);
    struct raft_entry e;
    assert_int_equal(raft_entry_at(n->r, 51, &e), RAFT_OK);
    assert_int_equal(e.len, 0);
    assert_int_equal(e.term, 4);
    assert_int_equal(raft_entry_at(n->r, 351, &e), RAFT_OK);
    assert_int_equal(e.len, 50);
    assert_int_equal(e.data[49], (uint8_t)299);
    assert_int_equal(n->out.n_committed, 300);
    assert_int_equal(n->out.committed[0].index, 52);
    h_free(n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_config_table),
        cmocka_unit_test(test_restore_table),
        cmocka_unit_test(test_restored_vote_binds),
        cmocka_unit_test(test_bootstrap),
        cmocka_unit_test(test_bootstrap_args_table),
        cmocka_unit_test(test_entry_at),
        cmocka_unit_test(test_log_memory),
        cmocka_unit_test(test_lead_from_snapshot_only),
    };
    return cmocka_run_group_tests_name("raft-restore", tests, NULL, NULL);
}
