/* test_lease.c - leader-lease reads (thesis §6.4.1, cfg.lease_reads): when
 * a leader answers read-index requests without a heartbeat round, how long
 * the lease lasts (dated from when heartbeats were sent), what ends it, and
 * the voter-side rules that make it hold. */
#include "harness.h"

#define E 10 /* h_config()'s election_ticks */

static struct raft_config lease_config(raft_id id, unsigned drift)
{
    struct raft_config cfg = h_config(id);
    cfg.lease_reads = true;
    cfg.lease_drift_ticks = drift;
    return cfg;
}

/* Leader 1 of {1..voters}, its no-op committed, nothing else in flight. */
static struct h_node *lease_leader(unsigned voters, const struct raft_config *cfg)
{
    struct h_node *l = h_restore(1, voters, 1, 0, T(1), 1, cfg);
    h_make_leader(l);
    if (voters > 1)
        h_ack_all(l);
    h_drain(l);
    return l;
}

/* One tick; returns the round of the heartbeat it sent (0: none). */
static uint64_t tick_round(struct h_node *l)
{
    h_tick(l, 1);
    h_drain(l);
    const struct raft_msg *m = h_find(l, H_NOW, RAFT_MSG_HEARTBEAT, RAFT_NONE);
    return m ? m->ctx : 0;
}

/* Ask a read; true if it was answered in the same batch, with no round. */
static bool read_now(struct h_node *l, uint64_t ctx)
{
    CHECK_RV(raft_read_index(l->r, ctx), RAFT_OK);
    h_drain(l);
    for (size_t i = 0; i < l->out.n_reads; i++)
        if (l->out.reads[i].ctx == ctx) {
            CHECK_RV(l->out.reads[i].err, RAFT_OK);
            CHECK_EQ(l->out.reads[i].index, raft_commit_index(l->r));
            return true;
        }
    return false;
}

#define B(id) (1u << (id))

struct window_case {
    const char *name;
    bool lease;
    unsigned voters;
    unsigned drift;
    uint32_t ackers; /* bit i: node i answers the heartbeat */
    unsigned wait;   /* ticks between that heartbeat and the read */
    bool served;     /* answered at once, on the lease */
};

/* The window is E - 1 - drift ticks from the send: 9 with no drift. */
static const struct window_case window_cases[] = {
    {"3 voters, one answer, read at once", true, 3, 0, B(2), 0, true},
    {"3 voters, last tick of the window", true, 3, 0, B(3), 8, true},
    {"3 voters, window over", true, 3, 0, B(2) | B(3), 9, false},
    {"drift 3: last tick of a window of 6", true, 3, 3, B(2), 5, true},
    {"drift 3: window of 6 over", true, 3, 3, B(2), 6, false},
    {"3 voters, nobody answered", true, 3, 0, 0, 0, false},
    {"5 voters, one answer is no quorum", true, 5, 0, B(4), 0, false},
    {"5 voters, two answers are", true, 5, 0, B(2) | B(5), 3, true},
    {"single voter needs nobody", true, 1, 0, 0, 50, true},
    {"lease off: always a round", false, 3, 0, B(2) | B(3), 0, false},
};

static void test_lease_window_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(window_cases) / sizeof(window_cases[0]); i++) {
        const struct window_case *c = &window_cases[i];
        h_case = c->name;
        struct raft_config cfg = lease_config(1, c->drift);
        cfg.lease_reads = c->lease;
        struct h_node *l = lease_leader(c->voters, &cfg);
        uint64_t round = tick_round(l);
        CHECK(c->voters == 1 || !c->lease || round != 0); /* off: the last read round, 0 */
        for (raft_id id = 2; id <= c->voters; id++)
            if (c->ackers & B(id))
                h_heartbeat_resp(l, id, round);
        h_tick(l, c->wait); /* later heartbeats go unanswered */
        h_drain(l);
        CHECK_EQ(h_status(l).lease_valid, c->served);
        CHECK_EQ(read_now(l, 77), c->served);
        struct raft_status st = h_status(l);
        CHECK_EQ(st.counters.lease_reads, c->served ? 1 : 0);
        if (!c->served) {
            /* it waits for a round of its own, as without a lease: at once
             * when no round is in flight, else the next heartbeat's */
            const struct raft_msg *hb = h_find(l, H_NOW, RAFT_MSG_HEARTBEAT, 2);
            uint64_t again = hb ? hb->ctx : tick_round(l);
            CHECK(again != 0);
            for (raft_id id = 2; id <= c->voters; id++)
                h_step(l, (struct raft_msg){.type = RAFT_MSG_HEARTBEAT_RESP, .from = id,
                                            .term = raft_current_term(l->r), .ctx = again});
            h_drain(l);
            CHECK_EQ(l->out.n_reads, 1);
            CHECK_EQ(l->out.reads[0].ctx, 77);
        }
        h_free(l);
    }
    h_case = NULL;
}

/* An answer dates the lease from when its heartbeat went out, not from
 * when the answer came in. */
static void test_lease_dated_by_send(void **state)
{
    (void)state;
    struct raft_config cfg = lease_config(1, 0);
    struct h_node *l = lease_leader(3, &cfg);
    uint64_t old = tick_round(l);
    h_tick(l, E - 1); /* the window of 9 ticks since `old` went out is over */
    h_drain(l);
    h_heartbeat_resp(l, 2, old); /* arrives just now */
    CHECK(!h_status(l).lease_valid);
    CHECK(!read_now(l, 1));
    /* an answer to a heartbeat sent a tick ago renews it */
    uint64_t fresh = tick_round(l);
    CHECK(fresh > old);
    h_heartbeat_resp(l, 3, fresh);
    CHECK(h_status(l).lease_valid);
    CHECK(read_now(l, 2));
    h_free(l);
}

/* A read forwarded by a follower is answered at once, with no round. */
static void test_forwarded_read_on_lease(void **state)
{
    (void)state;
    struct raft_config cfg = lease_config(1, 0);
    struct h_node *l = lease_leader(3, &cfg);
    h_heartbeat_resp(l, 2, tick_round(l));
    h_step(l, (struct raft_msg){.type = RAFT_MSG_READ_INDEX, .from = 3,
                                .term = raft_current_term(l->r), .ctx = 42});
    h_drain(l);
    const struct raft_msg *m = h_find(l, H_NOW, RAFT_MSG_READ_INDEX_RESP, 3);
    CHECK(m != NULL);
    CHECK(!m->reject);
    CHECK_EQ(m->ctx, 42);
    CHECK_EQ(m->index, raft_commit_index(l->r));
    CHECK_EQ(h_count(l, H_ANY, RAFT_MSG_HEARTBEAT, RAFT_NONE), 0);
    h_free(l);
}

/* A new leader has no lease until an entry of its own term commits: its
 * commit index may lag what the previous leader acknowledged. */
static void test_lease_needs_commit_in_term(void **state)
{
    (void)state;
    struct raft_config cfg = lease_config(1, 0);
    struct h_node *l = h_restore(1, 3, 1, 0, T(1), 1, &cfg);
    h_make_leader(l); /* no-op at 2, not acknowledged by anybody */
    uint64_t round = tick_round(l);
    h_heartbeat_resp(l, 2, round);
    h_heartbeat_resp(l, 3, round);
    CHECK(!h_status(l).lease_valid);
    CHECK(!read_now(l, 5));
    h_ack(l, 2, 2); /* the no-op commits: the waiting read goes by its round */
    CHECK_EQ(raft_commit_index(l->r), 2);
    h_heartbeat_resp(l, 2, tick_round(l));
    CHECK(h_status(l).lease_valid);
    CHECK(read_now(l, 6));
    h_free(l);
}

struct end_case {
    const char *name;
    int how; /* see below */
};

enum { END_NEWER_TERM, END_CHECK_QUORUM, END_TRANSFER, END_TIMEOUT_NOW_SENT };

static const struct end_case end_cases[] = {
    {"a newer leader's heartbeat: stepped down", END_NEWER_TERM},
    {"check-quorum step-down", END_CHECK_QUORUM},
    {"transfer under way (target lagging)", END_TRANSFER},
    {"TimeoutNow sent: none for the rest of the term", END_TIMEOUT_NOW_SENT},
};

static void test_lease_ends_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(end_cases) / sizeof(end_cases[0]); i++) {
        const struct end_case *c = &end_cases[i];
        h_case = c->name;
        struct raft_config cfg = lease_config(1, 0);
        struct h_node *l = lease_leader(3, &cfg);
        raft_term term = raft_current_term(l->r);
        h_heartbeat_resp(l, 2, tick_round(l));
        CHECK(h_status(l).lease_valid);
        switch (c->how) {
        case END_NEWER_TERM:
            h_step(l, (struct raft_msg){.type = RAFT_MSG_HEARTBEAT, .from = 3, .term = term + 1,
                                        .commit = 0});
            h_drain(l);
            CHECK_EQ(raft_role(l->r), RAFT_FOLLOWER);
            CHECK(!h_status(l).lease_valid);
            /* the read goes to the new leader, nothing is answered here */
            CHECK_RV(raft_read_index(l->r, 9), RAFT_OK);
            h_drain(l);
            CHECK_EQ(l->out.n_reads, 0);
            CHECK(h_find(l, H_ANY, RAFT_MSG_READ_INDEX, 3) != NULL);
            break;
        case END_CHECK_QUORUM:
            h_tick(l, 2 * E); /* nobody answers any more */
            h_drain(l);
            CHECK_EQ(raft_role(l->r), RAFT_FOLLOWER);
            CHECK(!h_status(l).lease_valid);
            break;
        case END_TRANSFER: {
            h_propose(l, 1, 8); /* node 3 lacks it: no TimeoutNow yet */
            h_drain(l);
            CHECK_RV(raft_transfer_leader(l->r, 3), RAFT_OK);
            h_drain(l);
            CHECK_EQ(h_count(l, H_ANY, RAFT_MSG_TIMEOUT_NOW, 3), 0);
            CHECK(!h_status(l).lease_valid);
            CHECK(!read_now(l, 9));
            /* given up after an election timeout, no TimeoutNow ever went
             * out: a fresh quorum of answers gives a lease again */
            h_tick(l, E);
            h_drain(l);
            CHECK_EQ(h_status(l).transferee, RAFT_NONE);
            CHECK_EQ(raft_role(l->r), RAFT_LEADER);
            h_heartbeat_resp(l, 2, tick_round(l));
            CHECK(h_status(l).lease_valid);
            break;
        }
        case END_TIMEOUT_NOW_SENT:
            CHECK_RV(raft_transfer_leader(l->r, 2), RAFT_OK); /* caught up: goes at once */
            h_drain(l);
            CHECK_EQ(h_count(l, H_ANY, RAFT_MSG_TIMEOUT_NOW, 2), 1);
            CHECK(!h_status(l).lease_valid);
            h_tick(l, E); /* the transfer times out; we still lead this term */
            h_drain(l);
            CHECK_EQ(h_status(l).transferee, RAFT_NONE);
            CHECK_EQ(raft_role(l->r), RAFT_LEADER);
            h_heartbeat_resp(l, 3, tick_round(l));
            CHECK(!h_status(l).lease_valid); /* the TimeoutNow may still arrive */
            CHECK(!read_now(l, 10));
            break;
        }
        h_free(l);
    }
    h_case = NULL;
}

struct voter_case {
    const char *name;
    bool lease;
    unsigned ticks_since_start;
    uint8_t type; /* a VOTE, or a stale APPEND_RESP reject with a newer term */
    bool heard_leader; /* a heartbeat from leader 2 came just before */
    raft_term term_after;
    bool granted;
};

/* Node 1 of 3, term 2 (log 1,1,2), restarted; node 3 asks for term 3, or
 * answers with term 3 something node 1 sent long ago. */
static const struct voter_case voter_cases[] = {
    {"lease: no vote in the first election timeout after a start", true, 0,
     RAFT_MSG_VOTE, false, 2, false},
    {"lease: still none a tick before it ends", true, E - 1, RAFT_MSG_VOTE, false, 2, false},
    {"lease: a vote once it has passed", true, E, RAFT_MSG_VOTE, false, 3, true},
    {"no lease: a vote at once after a start", false, 0, RAFT_MSG_VOTE, false, 3, true},
    {"lease: a stale reply does not move a follower in lease to a newer term", true, E,
     RAFT_MSG_APPEND_RESP, true, 2, false},
    {"no lease: a stale reply moves it (old rule)", false, E, RAFT_MSG_APPEND_RESP, true, 3, false},
    {"lease: out of lease a stale reply moves it", true, 2 * E, RAFT_MSG_APPEND_RESP, false, 3,
     false},
};

static void test_voter_rules_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(voter_cases) / sizeof(voter_cases[0]); i++) {
        const struct voter_case *c = &voter_cases[i];
        h_case = c->name;
        struct raft_config cfg = lease_config(1, 0);
        cfg.lease_reads = c->lease;
        cfg.election_ticks = E;
        cfg.seed = 1;
        struct h_node *n = h_restore(1, 3, 2, 0, T(1, 1, 2), 3, &cfg);
        /* stay a follower however long we tick: leader 2 never stops
         * talking unless the case says it went quiet */
        for (unsigned t = 0; t < c->ticks_since_start; t++) {
            if (t % 3 == 0 && c->ticks_since_start - t > E)
                h_step(n, (struct raft_msg){.type = RAFT_MSG_HEARTBEAT, .from = 2, .term = 2});
            h_tick(n, 1);
        }
        if (c->heard_leader)
            h_step(n, (struct raft_msg){.type = RAFT_MSG_HEARTBEAT, .from = 2, .term = 2});
        h_drain(n);
        CHECK(raft_role(n->r) != RAFT_LEADER); /* maybe a pre-candidate: terms stay */
        if (c->type == RAFT_MSG_VOTE)
            h_step(n, (struct raft_msg){.type = RAFT_MSG_VOTE, .from = 3, .term = 3, .index = 3,
                                        .log_term = 2});
        else
            h_step(n, (struct raft_msg){.type = RAFT_MSG_APPEND_RESP, .from = 3, .term = 3,
                                        .reject = true, .index = 1});
        h_drain(n);
        CHECK_EQ(raft_current_term(n->r), c->term_after);
        const struct raft_msg *m = h_find(n, H_ANY, RAFT_MSG_VOTE_RESP, 3);
        CHECK_EQ(m != NULL && !m->reject, c->granted);
        h_free(n);
    }
    h_case = NULL;
}

static void test_config_checked(void **state)
{
    (void)state;
    struct raft *r = NULL;
    struct raft_config cfg = lease_config(1, 0);
    cfg.check_quorum = false; /* the lease rests on leader stickiness */
    CHECK_RV(raft_new(&r, &cfg), RAFT_EINVAL);
    cfg = lease_config(1, E - 1); /* no tick left */
    CHECK_RV(raft_new(&r, &cfg), RAFT_EINVAL);
    cfg = lease_config(1, E - 2); /* one tick */
    CHECK_RV(raft_new(&r, &cfg), RAFT_OK);
    raft_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lease_window_table),
        cmocka_unit_test(test_lease_dated_by_send),
        cmocka_unit_test(test_forwarded_read_on_lease),
        cmocka_unit_test(test_lease_needs_commit_in_term),
        cmocka_unit_test(test_lease_ends_table),
        cmocka_unit_test(test_voter_rules_table),
        cmocka_unit_test(test_config_checked),
    };
    return cmocka_run_group_tests_name("raft-lease", tests, NULL, NULL);
}
