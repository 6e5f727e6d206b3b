/* test_store_model.c - seeded randomized model check.  Each seed drives one
 * random sequence of appends (some replacing the tail), hard-state saves,
 * snapshots (keeping or replacing the log), compactions, reads, clean
 * reopens and crash-plus-power-cut reopens against an in-memory model.
 * After a crash the store must come back as the state after some operation
 * not earlier than the last acknowledged one (a later one possibly only in
 * part); after a clean reopen, exactly the model.
 *
 * STORE_MODEL_SEEDS (env) overrides the number of seeds; STORE_MODEL_SEED
 * runs just one, for replaying a failure. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "helpers.h"

#define MAXLEN 200
#define MAXIDX 4096
#define MAXPEND 8

struct mstate {
    uint64_t term[MAXIDX + 1]; /* 0: no record known */
    uint64_t last, snap, snap_term, hs_term;
};

struct pend {
    struct mstate after;
    uint64_t seq;
    uint64_t trunc_from; /* append: its first index (cuts below it are allowed before it) */
};

struct run {
    uint64_t seed, rng;
    uint32_t salt;
    char *dir;
    struct store_options o;
    struct store *st;
    struct mstate acked; /* state after the last acknowledged operation */
    struct pend p[MAXPEND];
    int np;
    uint64_t max_term;
};

static const struct mstate *cur(const struct run *r)
{
    return r->np ? &r->p[r->np - 1].after : &r->acked;
}

static uint64_t rnd(struct run *r, uint64_t n)
{
    return n ? th_rng(&r->rng) % n : 0;
}

static uint64_t term_of(const struct mstate *m, uint64_t i)
{
    if (i == m->snap)
        return m->snap_term;
    return i <= MAXIDX ? m->term[i] : 0;
}

static void settle(struct run *r)
{
    if (!r->np)
        return;
    assert_int_equal(store_wait(r->st, r->p[r->np - 1].seq), 0);
    r->acked = r->p[r->np - 1].after;
    r->np = 0;
}

static struct mstate *push(struct run *r)
{
    if (r->np == MAXPEND)
        settle(r);
    struct pend *p = &r->p[r->np];
    p->after = *cur(r);
    p->trunc_from = UINT64_MAX;
    r->np++;
    return &p->after;
}

static void maybe_wait(struct run *r)
{
    if (rnd(r, 10) < 4)
        settle(r);
}

static void op_append(struct run *r)
{
    const struct mstate *m = cur(r);
    uint64_t lo = m->snap + 1, f = m->last + 1;
    uint64_t first_known = store_first_index(r->st);
    if (first_known > lo)
        lo = first_known;
    if (m->last >= lo && rnd(r, 10) < 3)
        f = m->last - rnd(r, m->last - lo + 1 < 20 ? m->last - lo + 1 : 20);
    size_t n = 1 + rnd(r, 20);
    if (f + n > MAXIDX)
        return;
    uint64_t prev = term_of(m, f - 1), t;
    if (f <= m->last || rnd(r, 4) == 0)
        t = ++r->max_term; /* a new leader (replacing a conflicting tail) */
    else
        t = prev ? prev : r->max_term;
    struct store_hard_state hs = {.term = r->max_term, .vote = 1};
    bool with_hs = rnd(r, 4) == 0;
    struct store_record *recs = th_recs(f, n, t, r->salt, MAXLEN);
    struct mstate *a = push(r);
    r->p[r->np - 1].trunc_from = f;
    for (uint64_t i = f; i <= a->last && i <= MAXIDX; i++)
        a->term[i] = 0;
    for (size_t i = 0; i < n; i++)
        a->term[f + i] = t;
    a->last = f + n - 1;
    if (with_hs)
        a->hs_term = hs.term;
    assert_int_equal(store_append(r->st, with_hs ? &hs : NULL, recs, n, &r->p[r->np - 1].seq), 0);
    th_recs_free(recs, n);
    maybe_wait(r);
}

static void op_hs(struct run *r)
{
    struct store_hard_state hs = {.term = ++r->max_term, .vote = 2};
    struct mstate *a = push(r);
    a->hs_term = hs.term;
    assert_int_equal(store_append(r->st, &hs, NULL, 0, &r->p[r->np - 1].seq), 0);
    maybe_wait(r);
}

static void op_snapshot(struct run *r)
{
    const struct mstate *m = cur(r);
    struct store_snap_meta sm = {.conf_len = 4, .conf = {1, 2, 3, 4}};
    uint64_t lo = m->snap + 1;
    uint64_t first_known = store_first_index(r->st);
    if (first_known > lo)
        lo = first_known;
    unsigned kind = (unsigned)rnd(r, 10);
    if (m->last >= lo && kind < 7) { /* our own snapshot: log kept */
        sm.index = lo + rnd(r, m->last - lo + 1);
        sm.term = term_of(m, sm.index);
    } else if (m->last >= lo && kind < 8) { /* leader's, conflicting term */
        sm.index = lo + rnd(r, m->last - lo + 1);
        sm.term = ++r->max_term;
    } else { /* leader's, beyond our log */
        sm.index = m->last + 1 + rnd(r, 5);
        sm.term = r->max_term;
    }
    if (sm.index > MAXIDX - 40 || sm.index <= m->snap || !sm.term)
        return;
    struct mstate *a = push(r);
    if (term_of(a, sm.index) != sm.term || sm.index > a->last) {
        memset(a->term, 0, sizeof(a->term));
        a->last = sm.index;
    }
    a->snap = sm.index;
    a->snap_term = sm.term;
    uint8_t data[64];
    th_fill(data, sizeof(data), sm.index, sm.term, r->salt);
    assert_int_equal(store_snapshot_save(r->st, &sm, data, sizeof(data),
                                         &r->p[r->np - 1].seq), 0);
    maybe_wait(r);
}

static void op_compact(struct run *r)
{
    const struct mstate *m = cur(r);
    if (!m->snap)
        return;
    uint64_t upto = m->snap - rnd(r, m->snap < 30 ? m->snap : 30);
    push(r);
    assert_int_equal(store_compact(r->st, upto, &r->p[r->np - 1].seq), 0);
    maybe_wait(r);
}

/* Does the open store agree with m on everything it holds, and hold at least
 * up to `must`? */
static bool agrees(struct run *r, const struct mstate *m, uint64_t must)
{
    struct store_snap_meta sm;
    bool has = store_snapshot_meta(r->st, &sm);
    if ((has ? sm.index : 0) != m->snap || (has && sm.term != m->snap_term))
        return false;
    uint64_t first = store_first_index(r->st), last = store_last_index(r->st);
    if (last < must || last > m->last || first > m->snap + 1)
        return false;
    if (first > last)
        return true;
    struct store_record *recs;
    size_t n;
    if (store_read(r->st, first, last, &recs, &n) != 0)
        return false;
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++) {
        uint64_t t = term_of(m, recs[i].index);
        /* below the snapshot the model forgot terms: the store may keep them */
        ok = recs[i].index <= m->snap ? true : t && th_rec_ok(&recs[i], t, r->salt, MAXLEN);
    }
    free(recs);
    return ok;
}

/* Adopt what the store recovered as the new model state. */
static void adopt(struct run *r)
{
    struct mstate m = {0};
    struct store_snap_meta sm;
    if (store_snapshot_meta(r->st, &sm)) {
        m.snap = sm.index;
        m.snap_term = sm.term;
    }
    m.last = store_last_index(r->st);
    for (uint64_t i = m.snap + 1; i <= m.last; i++)
        assert_int_equal(store_term(r->st, i, &m.term[i]), 0);
    struct store_hard_state hs;
    store_hard_state(r->st, &hs);
    m.hs_term = hs.term;
    r->acked = m;
    r->np = 0;
}

static void reopen(struct run *r)
{
    struct store_open_info info;
    int rc = store_open(r->dir, &r->o, &r->st, &info);
    if (rc != 0)
        fail_msg("seed %llu: reopen: %s", (unsigned long long)r->seed, info.error);
}

static void op_crash(struct run *r)
{
    store_crash(r->st);
    store_fault_power_cut(th_rng(&r->rng));
    reopen(r);
    /* Some state from the acknowledged one on; a later append may have got
     * only part-way (its conflict cut done, some of its records written). */
    bool ok = false;
    for (int j = -1; j < r->np && !ok; j++) {
        const struct mstate *m = j < 0 ? &r->acked : &r->p[j].after;
        uint64_t must = m->last;
        for (int k = j + 1; k < r->np; k++)
            if (r->p[k].trunc_from - 1 < must)
                must = r->p[k].trunc_from - 1;
        ok = agrees(r, m, must);
        if (ok) {
            struct store_hard_state hs;
            store_hard_state(r->st, &hs);
            bool hs_ok = hs.term == r->acked.hs_term;
            for (int k = 0; k < r->np; k++)
                hs_ok |= hs.term == r->p[k].after.hs_term;
            if (!hs_ok)
                fail_msg("seed %llu: hard state term %llu after crash is not one written",
                         (unsigned long long)r->seed, (unsigned long long)hs.term);
        }
    }
    if (!ok)
        fail_msg("seed %llu: after a crash with %d ops pending the store [%llu..%llu] matches "
                 "no allowed state", (unsigned long long)r->seed, r->np,
                 (unsigned long long)store_first_index(r->st),
                 (unsigned long long)store_last_index(r->st));
    adopt(r);
}

static void check_exact(struct run *r)
{
    if (!agrees(r, &r->acked, r->acked.last))
        fail_msg("seed %llu: store differs from the model", (unsigned long long)r->seed);
    struct store_hard_state hs;
    store_hard_state(r->st, &hs);
    assert_int_equal(hs.term, r->acked.hs_term);
}

static void op_reopen(struct run *r)
{
    assert_int_equal(store_close(r->st), 0);
    r->acked = *cur(r);
    r->np = 0;
    reopen(r);
    check_exact(r);
}

static void one_seed(uint64_t seed)
{
    struct run *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    r->seed = r->rng = seed;
    r->salt = (uint32_t)seed;
    r->dir = th_tmpdir("model");
    store_options_default(&r->o);
    r->o.segment_size = 2048 + rnd(r, 16384);
    r->max_term = 1;
    store_fault_reset();
    store_fault_fake_sync(true);
    store_fault_track(true);
    reopen(r);
    int ops = 20 + (int)rnd(r, 40);
    for (int i = 0; i < ops; i++) {
        unsigned x = (unsigned)rnd(r, 100);
        if (x < 50)
            op_append(r);
        else if (x < 58)
            op_hs(r);
        else if (x < 66)
            op_snapshot(r);
        else if (x < 74)
            op_compact(r);
        else if (x < 84) {
            settle(r);
            check_exact(r);
        } else if (x < 94)
            op_crash(r);
        else
            op_reopen(r);
    }
    op_reopen(r);
    assert_int_equal(store_close(r->st), 0);
    store_fault_reset();
    th_rmrf(r->dir);
    free(r->dir);
    free(r);
}

static void test_model(void **state)
{
    (void)state;
    const char *one = getenv("STORE_MODEL_SEED"), *cnt = getenv("STORE_MODEL_SEEDS");
    if (one) {
        one_seed(strtoull(one, NULL, 0));
        return;
    }
    uint64_t n = cnt ? strtoull(cnt, NULL, 0) : 1200;
    for (uint64_t s = 1; s <= n; s++)
        one_seed(s);
    print_message("%llu seeded sequences checked\n", (unsigned long long)n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
