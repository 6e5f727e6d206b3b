/* test_append.c - AppendEntries on the follower's side (Raft §5.3): the
 * consistency check and its hint, truncation of a conflicting suffix,
 * idempotence, and the follower's commit rule. */
#include "harness.h"
#include "raft/raft_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOG(...) .log = T(__VA_ARGS__), .n_log = NT(__VA_ARGS__)
#define ENTS(...) .ents = T(__VA_ARGS__), .n_ents = NT(__VA_ARGS__)
#define AFTER(...) .after = T(__VA_ARGS__), .n_after = NT(__VA_ARGS__)

#define PAYLOAD 0xee /* what the "leader" writes; h_make_log() uses the index */

struct append_case {
    const char *name;
    const raft_term *log; /* follower's log from index 1 */
    size_t n_log;
    raft_index commit_before;
    raft_index prev;
    raft_term prev_term;
    const raft_term *ents; /* terms of entries prev+1 .. */
    size_t n_ents;
    raft_index leader_commit;
    /* expected */
    bool reject;
    raft_index resp_index;
    raft_index hint_index;
    raft_term hint_term;
    const raft_term *after; /* follower's log afterwards */
    size_t n_after;
    raft_index commit_after;
    raft_index first_new; /* first entry handed out to persist; 0: none */
    raft_index persisted_after;
};

/* Follower node 1 of 3, hard state term 3; leader 2 of term 3 sends. */
static const struct append_case cases[] = {
    {"append at the end", LOG(1, 1, 2, 2, 2), 0, 5, 2, ENTS(3, 3), 0,
     false, 7, 0, 0, AFTER(1, 1, 2, 2, 2, 3, 3), 0, 6, 5},
    {"prev beyond last: hint is last+1", LOG(1, 1, 2, 2, 2), 0, 7, 3, ENTS(3), 0,
     true, 7, 6, 0, AFTER(1, 1, 2, 2, 2), 0, 0, 5},
    {"prev term mismatch inside a term run", LOG(1, 1, 2, 2, 2), 0, 4, 3, ENTS(3), 0,
     true, 4, 3, 2, AFTER(1, 1, 2, 2, 2), 0, 0, 5},
    {"prev term mismatch at last", LOG(1, 1, 1, 2, 2), 0, 5, 3, ENTS(3), 0,
     true, 5, 4, 2, AFTER(1, 1, 1, 2, 2), 0, 0, 5},
    {"prev term mismatch in the first term", LOG(1, 1), 0, 2, 2, ENTS(3), 0,
     true, 2, 1, 1, AFTER(1, 1), 0, 0, 2},
    {"conflicting suffix is truncated", LOG(1, 1, 2, 2, 2), 0, 3, 2, ENTS(3, 3), 0,
     false, 5, 0, 0, AFTER(1, 1, 2, 3, 3), 0, 4, 3},
    {"conflict after matching entries", LOG(1, 1, 2, 2, 2), 0, 2, 1, ENTS(2, 3, 3, 3), 0,
     false, 6, 0, 0, AFTER(1, 1, 2, 3, 3, 3), 0, 4, 3},
    {"entries already present are not rewritten", LOG(1, 1, 2, 2, 2), 0, 2, 1, ENTS(2, 2), 0,
     false, 4, 0, 0, AFTER(1, 1, 2, 2, 2), 0, 0, 5},
    {"present then new", LOG(1, 1, 2, 2, 2), 0, 3, 2, ENTS(2, 2, 3), 0,
     false, 6, 0, 0, AFTER(1, 1, 2, 2, 2, 3), 0, 6, 5},
    {"commit is capped by the last new entry", LOG(1, 1, 2, 2, 2), 0, 2, 1, ENTS(2), 5,
     false, 3, 0, 0, AFTER(1, 1, 2, 2, 2), 3, 0, 5},
    {"commit is capped by the leader's commit", LOG(1, 1, 2, 2, 2), 0, 5, 2, ENTS(3, 3), 6,
     false, 7, 0, 0, AFTER(1, 1, 2, 2, 2, 3, 3), 6, 6, 5},
    {"empty append commits up to prev", LOG(1, 1, 2, 2, 2), 0, 3, 2, .n_ents = 0, 5,
     false, 3, 0, 0, AFTER(1, 1, 2, 2, 2), 3, 0, 5},
    {"empty append at last", LOG(1, 1, 2, 2, 2), 0, 5, 2, .n_ents = 0, 4,
     false, 5, 0, 0, AFTER(1, 1, 2, 2, 2), 4, 0, 5},
    {"commit never decreases", LOG(1, 1, 2, 2, 2), 4, 4, 2, ENTS(2), 1,
     false, 5, 0, 0, AFTER(1, 1, 2, 2, 2), 4, 0, 5},
    {"append below the commit index: answer commit", LOG(1, 1, 2, 2, 2), 4, 2, 1, ENTS(2, 2), 5,
     false, 4, 0, 0, AFTER(1, 1, 2, 2, 2), 4, 0, 5},
    {"empty follower log, prev 0", .n_log = 0, 0, 0, 0, ENTS(1, 1), 1,
     false, 2, 0, 0, AFTER(1, 1), 1, 1, 0},
    {"empty follower log, prev beyond", .n_log = 0, 0, 3, 1, ENTS(3), 0,
     true, 3, 1, 0, .n_after = 0, 0, 0, 0},
};

static void test_append_table(void **state)
{
    (void)state;
    static const uint8_t payload = PAYLOAD;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct append_case *c = &cases[i];
        h_case = c->name;
        struct h_node *n = h_restore(1, 3, 3, 0, c->log, c->n_log, NULL);
        if (c->commit_before) {
            h_step(n, (struct raft_msg){.type = RAFT_MSG_HEARTBEAT, .from = 2, .term = 3,
                                        .commit = c->commit_before});
            CHECK_EQ(raft_commit_index(n->r), c->commit_before);
        }
        h_drain(n);
        struct raft_entry ents[8];
        for (size_t k = 0; k < c->n_ents; k++)
            ents[k] = (struct raft_entry){.index = c->prev + 1 + k, .term = c->ents[k],
                                          .data = &payload, .len = 1};
        h_step(n, (struct raft_msg){.type = RAFT_MSG_APPEND, .from = 2, .term = 3,
                                    .index = c->prev, .log_term = c->prev_term,
                                    .entries = c->n_ents ? ents : NULL,
                                    .n_entries = (uint32_t)c->n_ents,
                                    .commit = c->leader_commit});
        /* before anything is persisted */
        struct raft_status st = h_status(n);
        CHECK_EQ(st.persisted, c->persisted_after);
        CHECK_EQ(st.commit, c->commit_after);
        h_drain(n);

        /* an acknowledgement promises durable state: after persist only */
        CHECK_EQ(h_count(n, H_NOW, RAFT_MSG_APPEND_RESP, RAFT_NONE), 0);
        CHECK_EQ(h_count(n, H_AFTER, RAFT_MSG_APPEND_RESP, RAFT_NONE), 1);
        const struct raft_msg *m = h_find(n, H_AFTER, RAFT_MSG_APPEND_RESP, 2);
        CHECK(m != NULL);
        CHECK_EQ(m->term, 3);
        CHECK_EQ(m->reject, c->reject);
        CHECK_EQ(m->index, c->resp_index);
        if (c->reject) {
            CHECK_EQ(m->hint_index, c->hint_index);
            CHECK_EQ(m->hint_term, c->hint_term);
        }
        CHECK(h_log_is(n, c->after, c->n_after));

        /* entries handed out for persisting: exactly the new suffix */
        if (c->first_new) {
            CHECK(n->out.n_ents > 0);
            CHECK_EQ(n->out.ents[0].index, c->first_new);
            CHECK_EQ(n->out.ents[n->out.n_ents - 1].index, c->n_after);
        } else {
            CHECK_EQ(n->out.n_ents, 0);
        }
        /* entries the follower kept still carry the bytes it had */
        raft_index keep = c->first_new ? c->first_new - 1 : c->n_after;
        for (raft_index k = 2; k <= keep && k <= c->n_log; k++) {
            struct raft_entry e;
            CHECK_RV(raft_entry_at(n->r, k, &e), RAFT_OK);
            CHECK_EQ(e.len, 1);
            CHECK_EQ(e.data[0], (uint8_t)k);
        }
        for (raft_index k = keep + 1; k <= c->n_after; k++) {
            struct raft_entry e;
            CHECK_RV(raft_entry_at(n->r, k, &e), RAFT_OK);
            CHECK_EQ(e.data[0], PAYLOAD);
        }
        h_free(n);
    }
    h_case = NULL;
}

struct term_case {
    const char *name;
    raft_term msg_term;
    bool reject;
    raft_term term_after;
    raft_id leader_after;
};

/* Follower at term 3 (no leader known) hears APPEND prev (2,1) from node 2. */
static const struct term_case term_cases[] = {
    {"same term: leader learned", 3, false, 3, 2},
    {"higher term: adopted with its leader", 5, false, 5, 2},
    {"lower term: rejected, sender told our term", 2, true, 3, 0},
};

static void test_append_term_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(term_cases) / sizeof(term_cases[0]); i++) {
        const struct term_case *c = &term_cases[i];
        h_case = c->name;
        struct h_node *n = h_restore(1, 3, 3, 0, T(1, 1), 2, NULL);
        h_step(n, (struct raft_msg){.type = RAFT_MSG_APPEND, .from = 2, .term = c->msg_term,
                                    .index = 2, .log_term = 1});
        h_drain(n);
        const struct raft_msg *m = h_find(n, H_ANY, RAFT_MSG_APPEND_RESP, 2);
        CHECK(m != NULL);
        CHECK_EQ(m->reject, c->reject);
        CHECK_EQ(m->term, c->term_after);
        CHECK_EQ(raft_current_term(n->r), c->term_after);
        CHECK_EQ(raft_leader(n->r), c->leader_after);
        CHECK_EQ(raft_role(n->r), RAFT_FOLLOWER);
        h_free(n);
    }
    h_case = NULL;
}

/* A committed entry is applied only once it is durable here too. */
static void test_apply_waits_for_persist(void **state)
{
    (void)state;
    static const uint8_t payload = PAYLOAD;
    struct h_node *n = h_restore(1, 3, 3, 0, T(1, 1), 2, NULL);
    struct raft_entry ents[2] = {
        {.index = 3, .term = 3, .data = &payload, .len = 1},
        {.index = 4, .term = 3, .data = &payload, .len = 1},
    };
    h_step(n, (struct raft_msg){.type = RAFT_MSG_APPEND, .from = 2, .term = 3, .index = 2,
                                .log_term = 1, .entries = ents, .n_entries = 2, .commit = 4});
    h_drain(n);
    assert_int_equal(raft_commit_index(n->r), 4);
    assert_int_equal(n->out.n_ents, 2);
    /* the restored entries 1..2 were durable: they may be applied */
    assert_int_equal(n->out.n_committed, 2);
    assert_int_equal(n->out.committed[1].index, 2);
    assert_int_equal(raft_persisted(n->r, 3, 3), RAFT_OK);
    h_drain(n);
    assert_int_equal(n->out.n_committed, 1);
    assert_int_equal(n->out.committed[0].index, 3);
    /* a report for a term the entry does not have is ignored */
    assert_int_equal(raft_persisted(n->r, 4, 2), RAFT_OK);
    h_drain(n);
    assert_int_equal(n->out.n_committed, 0);
    h_persist(n);
    h_drain(n);
    assert_int_equal(n->out.n_committed, 1);
    assert_int_equal(n->out.committed[0].index, 4);
    assert_int_equal(n->out.committed[0].data[0], PAYLOAD);
    h_free(n);
}

/* Entries that cross a block of the in-memory log (log.c) are handed out
 * to persist in two batches; the reply, which acknowledges all of them,
 * waits for the second: sent after the first alone, it would count entries
 * not yet durable towards the leader's quorum. */
static void test_append_across_blocks(void **state)
{
    (void)state;
    static const uint8_t payload = PAYLOAD;
    static raft_term terms[RAFTLOG_BLOCK - 2];
    for (size_t i = 0; i < RAFTLOG_BLOCK - 2; i++)
        terms[i] = 1;
    struct h_node *n = h_restore(1, 3, 3, 0, terms, RAFTLOG_BLOCK - 2, NULL);
    h_drain(n);
    struct raft_entry ents[4];
    for (unsigned k = 0; k < 4; k++)
        ents[k] = (struct raft_entry){.index = RAFTLOG_BLOCK - 1 + k, .term = 3, .data = &payload,
                                      .len = 1};
    assert_int_equal(raft_step(n->r, &(struct raft_msg){.type = RAFT_MSG_APPEND, .from = 2, .to = 1,
                                                        .term = 3, .index = RAFTLOG_BLOCK - 2,
                                                        .log_term = 1, .entries = ents,
                                                        .n_entries = 4}),
                     RAFT_OK);
    struct raft_ready rd;
    raft_ready(n->r, &rd);
    assert_int_equal(rd.n_entries, 2);
    assert_int_equal(rd.entries[0].index, RAFTLOG_BLOCK - 1);
    assert_int_equal(rd.entries[1].index, RAFTLOG_BLOCK);
    assert_int_equal(rd.n_msgs_after_persist, 0);
    raft_advance(n->r, &rd);
    assert_true(raft_has_ready(n->r));
    raft_ready(n->r, &rd);
    assert_int_equal(rd.n_entries, 2);
    assert_int_equal(rd.entries[0].index, RAFTLOG_BLOCK + 1);
    assert_int_equal(rd.entries[1].index, RAFTLOG_BLOCK + 2);
    assert_int_equal(rd.n_msgs_after_persist, 1);
    assert_int_equal(rd.msgs_after_persist[0].type, RAFT_MSG_APPEND_RESP);
    assert_int_equal(rd.msgs_after_persist[0].index, RAFTLOG_BLOCK + 2);
    raft_advance(n->r, &rd);
    assert_false(raft_has_ready(n->r));
    h_free(n);
}

/* A persistence report for entries a conflicting append has since replaced
 * must not make the replacements count as durable. */
static void test_persisted_report_after_truncation(void **state)
{
    (void)state;
    static const uint8_t payload = PAYLOAD;
    struct h_node *n = h_restore(1, 3, 3, 0, T(1, 1), 2, NULL);
    struct raft_entry old[2] = {
        {.index = 3, .term = 2, .data = &payload, .len = 1},
        {.index = 4, .term = 2, .data = &payload, .len = 1},
    };
    h_step(n, (struct raft_msg){.type = RAFT_MSG_APPEND, .from = 2, .term = 3, .index = 2,
                                .log_term = 1, .entries = old, .n_entries = 2});
    h_drain(n);
    struct raft_entry repl = {.index = 3, .term = 3, .data = &payload, .len = 1};
    h_step(n, (struct raft_msg){.type = RAFT_MSG_APPEND, .from = 2, .term = 3, .index = 2,
                                .log_term = 1, .entries = &repl, .n_entries = 1, .commit = 3});
    assert_true(h_log_is(n, T(1, 1, 3), 3));
    /* storage finally reports the old (4, 2) and (3, 2) as durable */
    assert_int_equal(raft_persisted(n->r, 4, 2), RAFT_OK);
    assert_int_equal(raft_persisted(n->r, 3, 2), RAFT_OK);
    assert_int_equal(h_status(n).persisted, 2);
    h_drain(n);
    assert_int_equal(n->out.n_committed, 2); /* only 1..2 */
    h_free(n);
}

/* Heartbeats move the commit index, but never past the follower's log. */
static void test_heartbeat_commit(void **state)
{
    (void)state;
    struct h_node *n = h_restore(1, 3, 3, 0, T(1, 1, 2), 3, NULL);
    h_step(n, (struct raft_msg){.type = RAFT_MSG_HEARTBEAT, .from = 2, .term = 3, .commit = 9,
                                .ctx = 4});
    assert_int_equal(raft_commit_index(n->r), 3);
    h_drain(n);
    /* heartbeat answers promise nothing durable: they go at once */
    const struct raft_msg *m = h_find(n, H_NOW, RAFT_MSG_HEARTBEAT_RESP, 2);
    assert_non_null(m);
    assert_int_equal(m->ctx, 4);
    h_free(n);
}

/* ---- randomized: the follower's log against a model ---------------------- */

#define MODEL_MAX 4096

struct mentry {
    raft_term term;
    uint32_t len;
    uint32_t seed; /* payload byte j is (uint8_t)(seed + j) */
};

static uint64_t rnd_state;
static uint32_t rnd(uint32_t n)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 7;
    rnd_state ^= rnd_state << 17;
    return n ? (uint32_t)(rnd_state % n) : 0;
}

/* A "leader" log L (changed by successive leaders above a stable committed
 * prefix) is shipped to follower 1 in random slices with random commit
 * indexes, while the follower persists, applies and compacts.  After every
 * step the follower's in-memory log must equal what Raft's rules say:
 * entries present with the same term are kept (same bytes), the first
 * conflict truncates, appends below the commit index change nothing. */
static void run_model(uint64_t seed, raft_index trailing)
{
    static struct mentry L[MODEL_MAX + 1], F[MODEL_MAX + 1];
    static uint8_t bytes[64][512];
    rnd_state = seed;
    struct raft_config cfg = h_config(1);
    cfg.snapshot_trailing = trailing;
    struct h_node *n = h_restore(1, 3, 1, 0, T(1), 1, &cfg);
    struct raft_entry e1;
    CHECK_RV(raft_entry_at(n->r, 1, &e1), RAFT_OK);
    L[1] = F[1] = (struct mentry){.term = 1, .len = e1.len, .seed = 0};
    raft_index nl = 1, nf = 1, stable = 1, commit = 0;
    raft_term term = 1;
    uint32_t seeds = 1;
    unsigned truncations = 0;
    for (int step = 0; step < 1500; step++) {
        uint32_t op = rnd(10);
        if (op < 3 && nl < MODEL_MAX - 8) {
            unsigned k = 1 + rnd(6);
            for (unsigned j = 0; j < k; j++)
                L[++nl] = (struct mentry){.term = term, .len = rnd(4) ? rnd(300) : 0,
                                          .seed = seeds++};
        } else if (op == 3) {
            /* a new leader whose log diverges above the stable prefix */
            term++;
            raft_index keep = stable + rnd((uint32_t)(nl - stable + 1));
            nl = keep;
        } else {
            /* ship L[prev+1 .. prev+k] with some commit index */
            raft_index lo = commit, hi = nf < nl ? nf : nl;
            if (hi < lo)
                continue;
            raft_index prev = lo + rnd((uint32_t)(hi - lo + 1));
            unsigned k = rnd(8);
            if (prev + k > nl)
                k = (unsigned)(nl - prev);
            struct raft_entry ents[8];
            for (unsigned j = 0; j < k; j++) {
                const struct mentry *m = &L[prev + 1 + j];
                uint8_t *b = bytes[j];
                for (uint32_t x = 0; x < m->len; x++)
                    b[x] = (uint8_t)(m->seed + x);
                ents[j] = (struct raft_entry){.index = prev + 1 + j, .term = m->term,
                                              .type = prev + 1 + j == 1 ? RAFT_ENTRY_CONF
                                                                        : RAFT_ENTRY_NORMAL,
                                              .data = b, .len = m->len};
            }
            raft_index lcommit = rnd(5) == 0 ? prev + k : rnd((uint32_t)(prev + k + 1));
            if (lcommit > stable)
                stable = lcommit;
            h_step(n, (struct raft_msg){.type = RAFT_MSG_APPEND, .from = 2, .term = term,
                                        .index = prev, .log_term = L[prev].term,
                                        .entries = k ? ents : NULL, .n_entries = k,
                                        .commit = lcommit});
            /* the model of the same rules */
            if (prev >= commit && prev <= nf && F[prev].term == L[prev].term) {
                for (unsigned j = 0; j < k; j++) {
                    raft_index i = prev + 1 + j;
                    if (i <= nf && F[i].term == L[i].term)
                        continue;
                    truncations += i <= nf;
                    nf = i;
                    F[i] = L[i];
                }
                raft_index c = lcommit < prev + k ? lcommit : prev + k;
                if (c > commit)
                    commit = c;
            }
        }
        h_sync(n);
        struct raft_status st = h_status(n);
        CHECK_EQ(st.last_index, nf);
        CHECK_EQ(st.commit, commit);
        CHECK_EQ(st.applied, commit);
        if (rnd(8) == 0 && st.applied > st.snap_index)
            CHECK_RV(raft_snapshot_taken(n->r, st.snap_index + 1 +
                                                   rnd((uint32_t)(st.applied - st.snap_index))),
                     RAFT_OK);
        st = h_status(n);
        for (raft_index i = st.first_index; i <= st.last_index; i++) {
            struct raft_entry e;
            CHECK_RV(raft_entry_at(n->r, i, &e), RAFT_OK);
            CHECK_EQ(e.index, i);
            CHECK_EQ(e.term, F[i].term);
            CHECK_EQ(e.len, F[i].len);
            if (i > 1)
                for (uint32_t x = 0; x < e.len; x++)
                    if (e.data[x] != (uint8_t)(F[i].seed + x))
                        fail_msg("seed %llu step %d: entry %llu byte %u corrupt",
                                 (unsigned long long)seed, step, (unsigned long long)i, x);
        }
    }
    if (getenv("UNIT_VERBOSE"))
        printf("model seed %llu: last %llu commit %llu term %llu truncations %u\n",
               (unsigned long long)seed, (unsigned long long)nf, (unsigned long long)commit,
               (unsigned long long)term, truncations);
    CHECK(truncations > 10); /* the run did exercise conflicts */
    h_free(n);
}

static void test_append_random_model(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 6; seed++) {
        h_case = "random model";
        run_model(seed * 0x9e3779b97f4a7c15ULL, seed % 3 == 0 ? 5 : 0);
    }
    h_case = NULL;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_table),
        cmocka_unit_test(test_append_term_table),
        cmocka_unit_test(test_apply_waits_for_persist),
        cmocka_unit_test(test_persisted_report_after_truncation),
        cmocka_unit_test(test_append_across_blocks),
        cmocka_unit_test(test_heartbeat_commit),
        cmocka_unit_test(test_append_random_model),
    };
    return cmocka_run_group_tests_name("raft-append", tests, NULL, NULL);
}
