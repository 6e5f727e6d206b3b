/* test_snapshot.c - log compaction and InstallSnapshot (Raft §7) on both
 * sides: the follower installs a newer snapshot and hands it out; the leader
 * sends one to a follower whose next entry was compacted away. */
#include "harness.h"

#include <string.h>

#define LOG(...) .log = T(__VA_ARGS__), .n_log = NT(__VA_ARGS__)

struct install_case {
    const char *name;
    const raft_term *log;
    size_t n_log;
    raft_index commit_before;
    raft_index snap_index;
    raft_term snap_term;
    /* expected */
    bool installed;
    raft_index resp_index;
    raft_index commit_after;
    raft_index last_after;
    raft_index first_after;
};

/* Follower node 1 of 3 at term 3; leader 2 of term 3 sends a snapshot whose
 * membership is {1..5}. */
static const struct install_case install_cases[] = {
    {"newer than the whole log", LOG(1, 1, 1, 2, 2), 0, 10, 3, true, 10, 10, 10, 11},
    {"conflicting entry at its index", LOG(1, 1, 1, 2, 2), 0, 5, 3, true, 5, 5, 5, 6},
    {"empty follower", .n_log = 0, 0, 4, 2, true, 4, 4, 4, 5},
    {"covered by the commit index", LOG(1, 1, 1, 2, 2), 4, 3, 1, false, 4, 4, 5, 1},
    {"equal to the commit index", LOG(1, 1, 1, 2, 2), 4, 4, 2, false, 4, 4, 5, 1},
    {"log already holds it: only learns the commit", LOG(1, 1, 1, 2, 2), 2, 4, 2, false, 4, 4,
     5, 1},
};

static void test_install_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(install_cases) / sizeof(install_cases[0]); i++) {
        const struct install_case *c = &install_cases[i];
        h_case = c->name;
        struct h_node *n = h_restore(1, 3, 3, 0, c->log, c->n_log, NULL);
        if (c->commit_before)
            h_step(n, (struct raft_msg){.type = RAFT_MSG_HEARTBEAT, .from = 2, .term = 3,
                                        .commit = c->commit_before});
        h_drain(n);
        char data[32];
        strcpy(data, "snapshot bytes");
        struct raft_msg m = {.type = RAFT_MSG_SNAPSHOT, .from = 2, .term = 3,
                             .index = c->snap_index, .log_term = c->snap_term,
                             .snap = {.index = c->snap_index, .term = c->snap_term,
                                      .conf = h_conf(5, 0)},
                             .snap_data = data, .snap_len = sizeof("snapshot bytes")};
        h_step(n, m);
        memset(data, 'X', sizeof(data)); /* the core must have its own copy */
        h_drain(n);
        CHECK_EQ(n->out.has_snapshot, c->installed);
        struct raft_status st = h_status(n);
        if (c->installed) {
            CHECK_EQ(n->out.snap.index, c->snap_index);
            CHECK_EQ(n->out.snap.term, c->snap_term);
            CHECK_EQ(n->out.snap.conf.n, 5);
            CHECK_EQ(n->out.snap_len, sizeof("snapshot bytes"));
            CHECK(n->out.snap_data && memcmp(n->out.snap_data, "snapshot bytes",
                                             sizeof("snapshot bytes")) == 0);
            CHECK_EQ(n->out.n_ents, 0);
            CHECK_EQ(n->out.n_committed, 0); /* the snapshot replaces applying */
            CHECK_EQ(st.snap_index, c->snap_index);
            CHECK_EQ(st.last_term, c->snap_term);
            CHECK_EQ(st.conf.n, 5); /* its membership takes effect */
            CHECK_EQ(st.applied, c->snap_index);
        }
        CHECK_EQ(st.commit, c->commit_after);
        CHECK_EQ(st.last_index, c->last_after);
        CHECK_EQ(st.first_index, c->first_after);
        const struct raft_msg *r = h_find(n, H_AFTER, RAFT_MSG_APPEND_RESP, 2);
        CHECK(r != NULL);
        CHECK(!r->reject);
        CHECK_EQ(r->index, c->resp_index);
        CHECK_EQ(h_count(n, H_NOW, RAFT_MSG_APPEND_RESP, RAFT_NONE), 0);
        h_free(n);
    }
    h_case = NULL;
}

/* After installing, the follower carries on from the snapshot's index. */
static void test_follower_continues_after_snapshot(void **state)
{
    (void)state;
    struct h_node *n = h_restore(1, 3, 3, 0, T(1, 1), 2, NULL);
    h_step(n, (struct raft_msg){.type = RAFT_MSG_SNAPSHOT, .from = 2, .term = 3,
                                .snap = {.index = 10, .term = 3, .conf = h_conf(3, 0)}});
    h_drain(n);
    assert_true(n->out.has_snapshot);
    assert_int_equal(n->out.snap_len, 0);
    static const uint8_t b = 7;
    struct raft_entry e = {.index = 11, .term = 3, .data = &b, .len = 1};
    h_step(n, (struct raft_msg){.type = RAFT_MSG_APPEND, .from = 2, .term = 3, .index = 10,
                                .log_term = 3, .entries = &e, .n_entries = 1, .commit = 11});
    h_drain(n);
    const struct raft_msg *r = h_find(n, H_AFTER, RAFT_MSG_APPEND_RESP, 2);
    assert_non_null(r);
    assert_false(r->reject);
    assert_int_equal(r->index, 11);
    assert_int_equal(n->out.n_ents, 1);
    assert_int_equal(n->out.ents[0].index, 11);
    h_persist(n);
    h_drain(n);
    assert_int_equal(n->out.n_committed, 1);
    assert_int_equal(n->out.committed[0].index, 11);
    /* an append before the snapshot is answered with the commit index */
    h_step(n, (struct raft_msg){.type = RAFT_MSG_APPEND, .from = 2, .term = 3, .index = 4,
                                .log_term = 1});
    h_drain(n);
    r = h_find(n, H_AFTER, RAFT_MSG_APPEND_RESP, 2);
    assert_non_null(r);
    assert_false(r->reject);
    assert_int_equal(r->index, 11);
    h_free(n);
}

/* Leader 1 of 3: node 2 keeps up, node 3 never answered its first probe.
 * Entries up to 7 are committed, applied and snapshotted. */
static struct h_node *leader_with_snapshot(void)
{
    struct h_node *l = h_restore(1, 3, 1, 0, T(1), 1, NULL);
    h_make_leader(l);
    h_propose(l, 5, 16);
    h_sync(l);
    h_ack(l, 2, 7);
    assert_int_equal(raft_commit_index(l->r), 7);
    assert_int_equal(h_status(l).applied, 7);
    assert_int_equal(raft_snapshot_taken(l->r, 7), RAFT_OK);
    struct raft_status st = h_status(l);
    assert_int_equal(st.snap_index, 7);
    assert_int_equal(st.first_index, 8);
    struct raft_entry e;
    assert_int_equal(raft_entry_at(l->r, 7, &e), RAFT_ECOMPACTED);
    return l;
}

/* Node 3 asks again (a heartbeat answer unblocks the probe): its next entry
 * is gone, so it is sent a snapshot and nothing else until it confirms. */
static void send_snapshot_to_3(struct h_node *l)
{
    h_heartbeat_resp(l, 3, 0);
    const struct raft_msg *m = h_find(l, H_NOW, RAFT_MSG_SNAPSHOT, 3);
    assert_non_null(m);
    assert_int_equal(m->snap.index, 7);
    assert_int_equal(m->snap.term, 2);
    assert_int_equal(m->snap.conf.n, 3);
    assert_null(m->snap_data); /* the driver attaches the bytes */
    assert_int_equal(h_count(l, H_ANY, RAFT_MSG_APPEND, 3), 0);
    assert_int_equal(h_progress(l, 3).state, 2);
    h_propose(l, 1, 16);
    h_drain(l);
    assert_int_equal(h_count(l, H_ANY, RAFT_MSG_APPEND, 3), 0);
    assert_int_equal(h_count(l, H_ANY, RAFT_MSG_SNAPSHOT, 3), 0);
    assert_int_equal(h_count(l, H_NOW, RAFT_MSG_APPEND, 2), 1);
}

enum how { FOLLOWER_ACK, REPORT_OK_THEN_ACK, REPORT_FAILURE };

struct resume_case {
    const char *name;
    enum how how;
};

static const struct resume_case resume_cases[] = {
    {"the follower's own acknowledgement", FOLLOWER_ACK},
    {"raft_report_snapshot(ok), then the acknowledgement", REPORT_OK_THEN_ACK},
    {"raft_report_snapshot(failed): sent again", REPORT_FAILURE},
};

static void test_leader_snapshot_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(resume_cases) / sizeof(resume_cases[0]); i++) {
        const struct resume_case *c = &resume_cases[i];
        h_case = c->name;
        struct h_node *l = leader_with_snapshot();
        send_snapshot_to_3(l);
        raft_index last = raft_last_index(l->r);
        switch (c->how) {
        case REPORT_FAILURE:
            raft_report_snapshot(l->r, 3, false);
            h_drain(l);
            CHECK_EQ(h_count(l, H_NOW, RAFT_MSG_SNAPSHOT, 3), 1);
            CHECK_EQ(h_progress(l, 3).state, 2);
            break;
        case REPORT_OK_THEN_ACK:
            raft_report_snapshot(l->r, 3, true);
            h_drain(l);
            /* wait for the follower's own answer before sending more */
            CHECK_EQ(h_count(l, H_ANY, RAFT_MSG_APPEND, 3), 0);
            CHECK_EQ(h_count(l, H_ANY, RAFT_MSG_SNAPSHOT, 3), 0);
            /* fall through */
        case FOLLOWER_ACK:
            h_ack(l, 3, 7);
            CHECK_EQ(h_progress(l, 3).match, 7);
            CHECK_EQ(h_progress(l, 3).state, 1);
            const struct raft_msg *m = h_find(l, H_NOW, RAFT_MSG_APPEND, 3);
            CHECK(m != NULL);
            CHECK_EQ(m->index, 7);
            CHECK_EQ(m->log_term, 2);
            CHECK_EQ(m->n_entries, last - 7);
            break;
        }
        h_free(l);
    }
    h_case = NULL;
}

enum hold_how {
    HOLD_LOADING,
    HOLD_SILENT,
    HOLD_CAUGHT_UP,
    HOLD_ASKED_AGAIN,
    HOLD_SHIPPED,
    HOLD_TWO_INTERVALS,
};

struct hold_case {
    const char *name;
    enum hold_how how;
    raft_index first_after; /* after the snapshot at 12 (or at 17) */
};

static const struct hold_case hold_cases[] = {
    {"a follower loading our snapshot keeps the entry after it", HOLD_LOADING, 8},
    {"a silent one does not", HOLD_SILENT, 13},
    {"nor one that acknowledged it", HOLD_CAUGHT_UP, 13},
    {"asked again after a newer snapshot, the hold stays with the first", HOLD_ASKED_AGAIN, 8},
    {"the node ships its newer one: the hold moves to it", HOLD_SHIPPED, 13},
    {"the hold lasts two snapshot intervals", HOLD_TWO_INTERVALS, 23},
};

/* After a silent stretch node 3's progress probes again; its refusal
 * (it is still loading) makes the leader send its newest snapshot. */
static void ask_again(struct h_node *l)
{
    struct raft_config cfg = h_config(1);
    raft_index probed = 0;
    bool found = false;
    for (unsigned k = 0; k < 8 * cfg.election_ticks && !found; k++) {
        h_tick(l, 1);
        h_heartbeat_resp(l, 2, 0);
        h_heartbeat_resp(l, 3, 0);
        const struct raft_msg *probe = h_find(l, H_ANY, RAFT_MSG_APPEND, 3);
        if (probe) {
            probed = probe->index;
            found = true;
        }
    }
    CHECK(found);
    h_step(l, (struct raft_msg){.type = RAFT_MSG_APPEND_RESP, .from = 3,
                                .term = raft_current_term(l->r), .reject = true,
                                .index = probed, .hint_index = 1});
    h_drain(l);
    CHECK_EQ(h_count(l, H_NOW, RAFT_MSG_SNAPSHOT, 3), 1);
}

/* Entries up to `upto` proposed, committed by node 2 and snapshotted. */
static void snapshot_at(struct h_node *l, raft_index upto)
{
    h_propose(l, (unsigned)(upto - raft_last_index(l->r)), 16);
    h_sync(l);
    h_ack(l, 2, upto);
    CHECK_EQ(h_status(l).applied, upto);
    CHECK_RV(raft_snapshot_taken(l->r, upto), RAFT_OK);
}

/* The leader snapshots again while node 3 still loads the snapshot at 7:
 * compaction stops at 7 so that node 3 continues with entries, not with a
 * second snapshot, as long as it answers, even if the leader was asked
 * for a newer one meanwhile, and for two snapshot intervals at most. */
static void test_compaction_hold_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(hold_cases) / sizeof(hold_cases[0]); i++) {
        const struct hold_case *c = &hold_cases[i];
        h_case = c->name;
        struct h_node *l = leader_with_snapshot();
        send_snapshot_to_3(l);
        if (c->how == HOLD_SILENT) {
            /* two check-quorum rounds answered by node 2 only */
            struct raft_config cfg = h_config(1);
            for (unsigned k = 0; k < 2 * cfg.election_ticks; k++) {
                h_tick(l, 1);
                h_heartbeat_resp(l, 2, 0);
            }
            CHECK_EQ(h_status(l).role, RAFT_LEADER);
        }
        if (c->how == HOLD_CAUGHT_UP)
            h_ack(l, 3, 7);
        snapshot_at(l, 12);
        if (c->how == HOLD_ASKED_AGAIN || c->how == HOLD_SHIPPED) {
            CHECK_EQ(h_status(l).first_index, 8);
            ask_again(l); /* now with the snapshot at 12 */
            if (c->how == HOLD_SHIPPED)
                raft_snapshot_shipping(l->r, 3, 12); /* what the node's store sent */
            snapshot_at(l, 17);
        }
        if (c->how == HOLD_TWO_INTERVALS) {
            snapshot_at(l, 17);
            CHECK_EQ(h_status(l).first_index, 8);
            snapshot_at(l, 22);
        }
        CHECK_EQ(h_status(l).first_index, c->first_after);
        if (c->how == HOLD_SHIPPED) {
            h_drain(l);
            h_ack(l, 3, 12);
            CHECK_EQ(h_count(l, H_NOW, RAFT_MSG_SNAPSHOT, 3), 0);
            const struct raft_msg *m = h_find(l, H_NOW, RAFT_MSG_APPEND, 3);
            CHECK(m != NULL);
            CHECK_EQ(m->index, 12);
        }
        if (c->how == HOLD_LOADING) {
            /* loaded: it goes on from the entries, no second snapshot */
            h_drain(l);
            h_ack(l, 3, 7);
            CHECK_EQ(h_count(l, H_NOW, RAFT_MSG_SNAPSHOT, 3), 0);
            const struct raft_msg *m = h_find(l, H_NOW, RAFT_MSG_APPEND, 3);
            CHECK(m != NULL);
            CHECK_EQ(m->index, 7);
            CHECK_EQ(m->n_entries, raft_last_index(l->r) - 7);
        }
        h_free(l);
    }
    h_case = NULL;
}

struct taken_case {
    const char *name;
    raft_index trailing;
    raft_index index;
    int rv;
    raft_index first_after;
    raft_index snap_after;
};

/* Single-node leader with entries 1..6, all applied. */
static const struct taken_case taken_cases[] = {
    {"compacts up to the index", 0, 4, RAFT_OK, 5, 4},
    {"keeps snapshot_trailing entries", 2, 4, RAFT_OK, 3, 4},
    {"trailing longer than the log", 10, 4, RAFT_OK, 1, 4},
    {"not applied yet", 0, 7, RAFT_EINVAL, 1, 0},
    {"index 0 is a no-op", 0, 0, RAFT_OK, 1, 0},
};

static void test_snapshot_taken_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(taken_cases) / sizeof(taken_cases[0]); i++) {
        const struct taken_case *c = &taken_cases[i];
        h_case = c->name;
        struct raft_config cfg = h_config(1);
        cfg.snapshot_trailing = c->trailing;
        struct h_node *l = h_boot(1, 1, &cfg);
        h_make_leader(l);
        h_propose(l, 4, 8);
        h_sync(l);
        CHECK_EQ(h_status(l).applied, 6);
        h_propose(l, 1, 8); /* 7: not committed, not applied */
        h_drain(l);
        CHECK_RV(raft_snapshot_taken(l->r, c->index), c->rv);
        struct raft_status st = h_status(l);
        CHECK_EQ(st.first_index, c->first_after);
        CHECK_EQ(st.snap_index, c->snap_after);
        CHECK_EQ(st.last_index, 7);
        /* an older snapshot than the one we have is a no-op */
        if (c->snap_after) {
            CHECK_RV(raft_snapshot_taken(l->r, c->snap_after - 1), RAFT_OK);
            CHECK_EQ(h_status(l).snap_index, c->snap_after);
        }
        /* the log still works after compaction */
        h_sync(l);
        CHECK_EQ(raft_commit_index(l->r), 7);
        h_free(l);
    }
    h_case = NULL;
}

/* The snapshot's membership is the one in force at its index. */
static void test_snapshot_carries_conf(void **state)
{
    (void)state;
    struct h_node *l = h_restore(1, 3, 1, 0, T(1), 1, NULL);
    h_make_leader(l);
    h_ack_all(l);
    struct raft_conf_change cc = {.op = RAFT_CONF_ADD_LEARNER, .id = 4};
    raft_index ci;
    assert_int_equal(raft_propose_conf(l->r, &cc, &ci), RAFT_OK);
    h_propose(l, 1, 4);
    h_sync(l);
    h_ack(l, 2, ci + 1);
    assert_int_equal(raft_commit_index(l->r), ci + 1);
    h_drain(l);
    assert_int_equal(raft_snapshot_taken(l->r, ci + 1), RAFT_OK);
    /* the learner never answered its probe; when it does, it needs the
     * snapshot */
    h_heartbeat_resp(l, 4, 0);
    const struct raft_msg *m = h_find(l, H_NOW, RAFT_MSG_SNAPSHOT, 4);
    assert_non_null(m);
    assert_int_equal(m->snap.index, ci + 1);
    assert_int_equal(m->snap.conf.n, 4);
    const struct raft_member *mb = raft_conf_find(&m->snap.conf, 4);
    assert_non_null(mb);
    assert_int_equal(mb->role, RAFT_LEARNER);
    h_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_install_table),
        cmocka_unit_test(test_follower_continues_after_snapshot),
        cmocka_unit_test(test_leader_snapshot_table),
        cmocka_unit_test(test_snapshot_taken_table),
        cmocka_unit_test(test_compaction_hold_table),
        cmocka_unit_test(test_snapshot_carries_conf),
    };
    return cmocka_run_group_tests_name("raft-snapshot", tests, NULL, NULL);
}
