/* test_catchup.c - a follower that lost entries it had acknowledged (data
 * directory wiped, restored from an old backup) is probed from where its log
 * really ends and caught up by log or snapshot, and the leader never
 * ping-pongs with it: a bounded number of messages per heartbeat interval.
 * Only a heartbeat's answer is evidence of such a loss: a late answer to an
 * old probe must not make the leader forget what the follower holds. */
#include "harness.h"

#define LEADER 1
#define WIPED 2
#define PROPOSALS 20
#define TICKS 40
#define MAX_PER_TICK 4 /* heartbeat + a probe or two while catching up */
#define ROUNDS 64      /* far above MAX_PER_TICK: a hot loop shows up */

enum wipe { EMPTY, REBOOTSTRAPPED, OLD_BACKUP };

struct catchup_case {
    const char *name;
    enum wipe wipe;
    bool compacted; /* the leader no longer holds what the follower needs */
    bool write;     /* a client writes right after the follower comes back */
};

static const struct catchup_case catchup_cases[] = {
    {"wiped, no state at all", EMPTY, false, false},
    {"wiped, bootstrapped again", REBOOTSTRAPPED, false, false},
    {"wiped, bootstrapped again, then a write", REBOOTSTRAPPED, false, true},
    {"restored from an old backup", OLD_BACKUP, false, false},
    {"restored from an old backup, then a write", OLD_BACKUP, false, true},
    {"wiped, leader compacted: snapshot", REBOOTSTRAPPED, true, false},
    {"old backup, leader compacted: snapshot, then a write", OLD_BACKUP, true, true},
};

static struct h_node *wiped_follower(enum wipe wipe)
{
    switch (wipe) {
    case EMPTY:
        return h_new(WIPED, NULL);
    case REBOOTSTRAPPED:
        return h_boot(WIPED, 3, NULL);
    default:
        /* the bootstrap entry and the first entries of term 2 */
        return h_restore(WIPED, 3, 2, 0, T(1, 2, 2, 2), 4, NULL);
    }
}

/* Step every message of `from` addressed to `to`; returns how many. */
static size_t deliver(struct h_node *from, struct h_node *to)
{
    size_t n = 0;
    const struct h_out *o = &from->out;
    for (size_t i = 0; i < o->n_msgs + o->n_ap; i++) {
        const struct raft_msg *m = i < o->n_msgs ? &o->msgs[i] : &o->ap[i - o->n_msgs];
        if (m->to != to->id)
            continue;
        h_step(to, *m);
        n++;
    }
    return n;
}

/* One tick of the leader, then every exchange it causes; returns the
 * messages the leader sent the follower meanwhile. */
static size_t tick_and_exchange(struct h_node *l, struct h_node *f)
{
    size_t to_follower = 0;
    h_tick(l, 1);
    for (unsigned round = 0; round < ROUNDS; round++) {
        h_sync(l);
        size_t sent = deliver(l, f);
        to_follower += sent;
        h_sync(f);
        if (sent + deliver(f, l) == 0)
            break;
    }
    return to_follower;
}

static void test_wiped_follower_catches_up(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(catchup_cases) / sizeof(catchup_cases[0]); i++) {
        const struct catchup_case *c = &catchup_cases[i];
        h_case = c->name;
        struct h_node *l = h_boot(LEADER, 3, NULL);
        h_make_leader(l);
        h_propose(l, PROPOSALS, 16);
        h_ack_all(l); /* the leader records match = last for the follower */
        raft_index last = raft_last_index(l->r);
        CHECK_EQ(h_progress(l, WIPED).match, last);
        if (c->compacted)
            CHECK_RV(raft_snapshot_taken(l->r, last), RAFT_OK);

        struct h_node *f = wiped_follower(c->wipe);
        size_t worst = 0, quiet_worst = 0;
        unsigned caught_up_at = 0;
        for (unsigned t = 1; t <= TICKS; t++) {
            if (t == 1 && c->write)
                h_propose(l, 1, 16);
            last = raft_last_index(l->r);
            size_t sent = tick_and_exchange(l, f);
            if (sent > worst)
                worst = sent;
            if (caught_up_at && sent > quiet_worst)
                quiet_worst = sent;
            if (!caught_up_at && raft_commit_index(f->r) == last)
                caught_up_at = t;
        }
        CHECK(caught_up_at != 0);
        CHECK(worst <= MAX_PER_TICK);
        CHECK_EQ(quiet_worst, 1); /* nothing changes: one heartbeat a tick */
        CHECK_EQ(raft_role(l->r), RAFT_LEADER);
        CHECK_EQ(raft_last_index(f->r), last);
        CHECK_EQ(h_status(f).last_term, h_status(l).last_term);
        CHECK_EQ(h_progress(l, WIPED).match, last);
        CHECK_EQ(h_progress(l, WIPED).state, 1); /* replicate */
        CHECK_EQ(h_status(f).snap_index, c->compacted ? h_status(l).snap_index : 0);
        h_free(f);
        h_free(l);
    }
    h_case = NULL;
}

struct late_case {
    const char *name;
    bool real_probe_answer; /* the follower's own answer to the first probe */
    raft_index rejected;    /* otherwise this crafted rejection */
    raft_index hint;
    uint64_t ctx;
    bool forgets; /* the leader drops its match and probes from the hint */
};

/* Leader 1 with entries 1..10 of term 1 elects itself in term 2 (no-op 11)
 * and probes node 2 (log 1..4) at prev 10, one entry per message.  Node 2
 * answers "reject 10, retry at 5"; a first copy of that answer gets the
 * leader to 5, so match = 5.  Then the case's rejection arrives. */
static const struct late_case late_cases[] = {
    {"late answer to the first probe (hint = match)", true, 0, 0, 0, false},
    {"late probe rejection, hint below match", false, 10, 3, 0, false},
    {"late probe rejection at match, hint below", false, 5, 3, 0, false},
    {"heartbeat answer: entries at match lost", false, 5, 3, RAFT_CTX_LOST, true},
    {"late heartbeat answer under an older match", false, 4, 3, RAFT_CTX_LOST, false},
};

static void test_late_rejection_keeps_match(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(late_cases) / sizeof(late_cases[0]); i++) {
        const struct late_case *c = &late_cases[i];
        h_case = c->name;
        struct raft_config cfg = h_config(LEADER);
        cfg.max_msg_entries = 1;
        struct h_node *l = h_restore(LEADER, 3, 1, 0, T(1, 1, 1, 1, 1, 1, 1, 1, 1, 1), 10, &cfg);
        h_make_leader(l);
        struct raft_config fcfg = h_config(WIPED);
        fcfg.max_msg_entries = 1;
        struct h_node *f = h_restore(WIPED, 3, 1, 0, T(1, 1, 1, 1), 4, &fcfg);

        CHECK_EQ(deliver(l, f), 1); /* the probe at prev 10 */
        h_sync(f);
        const struct raft_msg *rej = h_find(f, H_ANY, RAFT_MSG_APPEND_RESP, LEADER);
        CHECK(rej != NULL && rej->reject);
        CHECK_EQ(rej->index, 10);
        CHECK_EQ(rej->hint_index, 5);
        struct raft_msg late = *rej; /* the network keeps a duplicate */
        if (!c->real_probe_answer)
            late = (struct raft_msg){.type = RAFT_MSG_APPEND_RESP, .from = WIPED,
                                     .term = raft_current_term(l->r), .reject = true,
                                     .index = c->rejected, .hint_index = c->hint, .ctx = c->ctx};

        deliver(f, l); /* the leader probes at prev 4 */
        h_sync(l);
        CHECK_EQ(deliver(l, f), 1);
        h_sync(f);
        deliver(f, l);
        CHECK_EQ(h_progress(l, WIPED).match, 5);
        CHECK_EQ(h_progress(l, WIPED).state, 1); /* replicate */

        h_step(l, late);
        h_drain(l);
        struct raft_progress_status p = h_progress(l, WIPED);
        CHECK_EQ(p.match, c->forgets ? 0 : 5);
        if (c->forgets)
            CHECK_EQ(p.next, c->hint);
        /* Either way it catches up, and is never sent what it acknowledged. */
        const struct raft_msg *next = h_find(l, H_ANY, RAFT_MSG_APPEND, WIPED);
        if (next && !c->forgets)
            CHECK(next->index >= 5);
        for (unsigned t = 0; t < TICKS; t++)
            tick_and_exchange(l, f);
        CHECK_EQ(raft_last_index(f->r), raft_last_index(l->r));
        CHECK_EQ(h_progress(l, WIPED).match, raft_last_index(l->r));
        CHECK_EQ(raft_commit_index(l->r), raft_last_index(l->r));
        h_free(f);
        h_free(l);
    }
    h_case = NULL;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wiped_follower_catches_up),
        cmocka_unit_test(test_late_rejection_keeps_match),
    };
    return cmocka_run_group_tests_name("raft-catchup", tests, NULL, NULL);
}
