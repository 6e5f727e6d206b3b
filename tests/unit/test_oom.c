/* test_oom.c - the out-of-memory policy of raft.h: an input that cannot get
 * memory returns RAFT_ENOMEM, never aborts, leaves the node consistent (what
 * it could not do is dropped like a lost message), and the same input
 * succeeds once memory is back.  Failures come from raft_set_alloc_fail(). */
#include "harness.h"
#include "raft/raft_int.h"

#include <string.h>

static bool failing;

static bool fail_while_on(void *arg)
{
    (void)arg;
    return failing;
}

/* Runs one input with every allocation failing. */
#define UNDER_OOM(expr) (failing = true, (expr))

static uint8_t big[8192]; /* larger than the log's first byte buffer */

struct oom_case {
    const char *name;
    struct h_node *(*setup)(void);
    int (*input)(struct h_node *n);
    void (*after_failure)(struct h_node *n); /* checks; memory is back */
    void (*after_retry)(struct h_node *n);   /* checks after the same input */
};

/* ---- a follower's AppendEntries that needs its log to grow ---- */

static struct h_node *follower(void) { return h_restore(1, 3, 2, 0, T(1, 1, 2), 3, NULL); }

static int append_big(struct h_node *n)
{
    struct raft_entry e = {.term = 2, .index = 4, .data = big, .len = sizeof(big)};
    return raft_step(n->r, &(struct raft_msg){.type = RAFT_MSG_APPEND, .from = 2, .to = 1,
                                              .term = 2, .index = 3, .log_term = 2,
                                              .entries = &e, .n_entries = 1, .commit = 3});
}

static void append_dropped(struct h_node *n)
{
    h_drain(n);
    CHECK(h_log_is(n, T(1, 1, 2), 3));
    CHECK_EQ(h_count(n, H_ANY, RAFT_MSG_APPEND_RESP, 2), 0); /* no false acknowledgement */
    CHECK_EQ(raft_leader(n->r), 2);
}

static void append_taken(struct h_node *n)
{
    h_drain(n);
    CHECK(h_log_is(n, T(1, 1, 2, 2), 4));
    const struct raft_msg *m = h_find(n, H_AFTER, RAFT_MSG_APPEND_RESP, 2);
    CHECK(m && !m->reject && m->index == 4);
}

/* ---- a follower's InstallSnapshot whose bytes it must copy ---- */

static int snapshot_in(struct h_node *n)
{
    return raft_step(n->r, &(struct raft_msg){.type = RAFT_MSG_SNAPSHOT, .from = 2, .to = 1,
                                              .term = 3, .snap = {.index = 10, .term = 3,
                                                                  .conf = h_conf(3, 0)},
                                              .snap_data = big, .snap_len = sizeof(big)});
}

static void snapshot_dropped(struct h_node *n)
{
    h_drain(n);
    CHECK(!n->out.has_snapshot);
    CHECK_EQ(h_status(n).snap_index, 0);
    CHECK_EQ(h_status(n).commit, 0);
    CHECK_EQ(h_count(n, H_ANY, RAFT_MSG_APPEND_RESP, 2), 0);
}

static void snapshot_taken(struct h_node *n)
{
    h_drain(n);
    CHECK(n->out.has_snapshot);
    CHECK_EQ(n->out.snap_len, sizeof(big));
    CHECK_EQ(h_status(n).snap_index, 10);
}

/* ---- a vote whose answer cannot be queued (a node that never sent) ---- */

static int vote_in(struct h_node *n)
{
    return raft_step(n->r, &(struct raft_msg){.type = RAFT_MSG_VOTE, .from = 2, .to = 1,
                                              .term = 3, .index = 3, .log_term = 2});
}

static void vote_unanswered(struct h_node *n)
{
    h_drain(n);
    /* The grant is kept (and persisted) but its answer was lost, as on a
     * network; asking again gets the same answer. */
    CHECK_EQ(h_status(n).term, 3);
    CHECK_EQ(h_status(n).vote, 2);
    CHECK_EQ(n->out.n_msgs + n->out.n_ap, 0);
}

static void vote_answered(struct h_node *n)
{
    h_drain(n);
    const struct raft_msg *m = h_find(n, H_AFTER, RAFT_MSG_VOTE_RESP, 2);
    CHECK(m && !m->reject && m->term == 3);
}

/* ---- a leader's proposal that needs its log to grow ---- */

static struct h_node *leader(void)
{
    struct h_node *n = h_boot(1, 3, NULL);
    h_make_leader(n);
    h_ack_all(n);
    return n;
}

static int propose_big(struct h_node *n)
{
    return raft_propose(n->r, big, sizeof(big), NULL, NULL);
}

static void nothing_proposed(struct h_node *n)
{
    CHECK_EQ(raft_last_index(n->r), 2);
    CHECK_EQ(raft_role(n->r), RAFT_LEADER);
}

static void proposed(struct h_node *n)
{
    CHECK_EQ(raft_last_index(n->r), 3);
}

/* ---- a read index the leader cannot queue ---- */

static int read_in(struct h_node *n) { return raft_read_index(n->r, 77); }

static void read_refused(struct h_node *n)
{
    h_drain(n);
    CHECK_EQ(n->out.n_reads, 0);
    CHECK_EQ(raft_role(n->r), RAFT_LEADER);
}

static void read_pending(struct h_node *n)
{
    h_drain(n);
    const struct raft_msg *hb = h_find(n, H_NOW, RAFT_MSG_HEARTBEAT, 2);
    CHECK(hb != NULL);
    h_heartbeat_resp(n, 2, hb->ctx);
    CHECK_EQ(n->out.n_reads, 1);
    CHECK_EQ(n->out.reads[0].ctx, 77);
    CHECK_RV(n->out.reads[0].err, RAFT_OK);
}

/* ---- a new leader whose no-op cannot be appended ---- */

#define FULL_LOG RAFTLOG_BLOCK /* the log's first block of headers holds exactly this many */

static struct h_node *candidate_with_full_log(void)
{
    raft_term terms[FULL_LOG];
    for (size_t i = 0; i < FULL_LOG; i++)
        terms[i] = 1;
    struct raft_config cfg = h_config(1);
    cfg.pre_vote = false;
    struct h_node *n = h_restore(1, 3, 1, 0, terms, FULL_LOG, &cfg);
    CHECK_RV(raft_campaign(n->r), RAFT_OK);
    h_sync(n);
    return n;
}

static int win_vote(struct h_node *n)
{
    return raft_step(n->r, &(struct raft_msg){.type = RAFT_MSG_VOTE_RESP, .from = 2, .to = 1,
                                              .term = raft_current_term(n->r)});
}

static void stepped_down(struct h_node *n)
{
    h_drain(n);
    CHECK_EQ(raft_role(n->r), RAFT_FOLLOWER);
    CHECK_EQ(raft_current_term(n->r), 2);
    CHECK_EQ(raft_last_index(n->r), FULL_LOG);
    CHECK_EQ(h_count(n, H_ANY, RAFT_MSG_APPEND, RAFT_NONE), 0);
    /* the next election works */
    CHECK_RV(raft_campaign(n->r), RAFT_OK);
    h_sync(n);
}

static void leads(struct h_node *n)
{
    h_sync(n);
    CHECK_EQ(raft_role(n->r), RAFT_LEADER);
    CHECK_EQ(raft_current_term(n->r), 3);
    CHECK_EQ(raft_last_index(n->r), FULL_LOG + 1);
}

static const struct oom_case oom_cases[] = {
    {"follower append", follower, append_big, append_dropped, append_taken},
    {"follower snapshot", follower, snapshot_in, snapshot_dropped, snapshot_taken},
    {"vote answer", follower, vote_in, vote_unanswered, vote_answered},
    {"leader proposal", leader, propose_big, nothing_proposed, proposed},
    {"leader read index", leader, read_in, read_refused, read_pending},
    {"leader no-op", candidate_with_full_log, win_vote, stepped_down, leads},
};

static void test_inputs_report_enomem(void **state)
{
    (void)state;
    raft_set_alloc_fail(fail_while_on, NULL);
    for (size_t i = 0; i < sizeof(oom_cases) / sizeof(oom_cases[0]); i++) {
        const struct oom_case *c = &oom_cases[i];
        h_case = c->name;
        struct h_node *n = c->setup();
        int rv = UNDER_OOM(c->input(n));
        failing = false;
        CHECK_RV(rv, RAFT_ENOMEM);
        c->after_failure(n);
        CHECK_RV(c->input(n), RAFT_OK);
        c->after_retry(n);
        h_free(n);
    }
    h_case = NULL;
    raft_set_alloc_fail(NULL, NULL);
}

static void test_new_reports_enomem(void **state)
{
    (void)state;
    raft_set_alloc_fail(fail_while_on, NULL);
    struct raft *r = NULL;
    struct raft_config cfg = h_config(1);
    CHECK_RV(UNDER_OOM(raft_new(&r, &cfg)), RAFT_ENOMEM);
    failing = false;
    CHECK(r == NULL);
    raft_set_alloc_fail(NULL, NULL);
}

int main(void)
{
    memset(big, 0xab, sizeof(big));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inputs_report_enomem),
        cmocka_unit_test(test_new_reports_enomem),
    };
    return cmocka_run_group_tests_name("raft-oom", tests, NULL, NULL);
}
