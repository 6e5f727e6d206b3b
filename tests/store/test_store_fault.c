/* test_store_fault.c - injected I/O errors.  A fixed workload that exercises
 * every seam operation (appends, segment rolls, hard-state saves, conflict
 * truncation, snapshots that keep or replace the log, compaction) is run
 * again and again with EIO or ENOSPC injected at the Nth call of one kind,
 * for every N the workload reaches.  The store must fail loudly and stay
 * failed, and the directory must reopen to the state before or after the
 * failed step, with everything acknowledged intact. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "helpers.h"

#define MAXLEN 60
#define SALT 5
#define MAXI 128

enum step_kind { S_APPEND, S_HS, S_SNAP, S_COMPACT };

struct step {
    enum step_kind kind;
    uint64_t first, n, term; /* S_APPEND: records; S_SNAP: index=first, term */
    uint64_t hs_term;        /* S_APPEND/S_HS: 0 = no hard state */
};

static const struct step workload[] = {
    {S_APPEND, 1, 20, 1, 1},
    {S_APPEND, 21, 40, 1, 0}, /* rolls segments */
    {S_HS, 0, 0, 0, 2},
    {S_APPEND, 41, 10, 2, 0}, /* replaces 41..60 */
    {S_SNAP, 30, 0, 1, 0},    /* keeps the log */
    {S_COMPACT, 30, 0, 0, 0},
    {S_APPEND, 51, 30, 2, 3},
    {S_SNAP, 100, 0, 3, 0},   /* replaces the log */
    {S_APPEND, 101, 10, 3, 0},
};
#define NSTEPS (sizeof(workload) / sizeof(workload[0]))

struct model {
    uint64_t term[MAXI + 1]; /* 0 = no record */
    uint64_t last, snap, snap_term, hs_term;
};

static void model_apply(struct model *m, const struct step *s)
{
    switch (s->kind) {
    case S_APPEND:
        for (uint64_t i = s->first; i <= MAXI; i++)
            m->term[i] = 0;
        for (uint64_t i = 0; i < s->n; i++)
            m->term[s->first + i] = s->term;
        m->last = s->first + s->n - 1;
        if (s->hs_term)
            m->hs_term = s->hs_term;
        break;
    case S_HS:
        m->hs_term = s->hs_term;
        break;
    case S_SNAP:
        if (m->term[s->first] != s->term) {
            memset(m->term, 0, sizeof(m->term));
            m->last = s->first;
        }
        m->snap = s->first;
        m->snap_term = s->term;
        break;
    case S_COMPACT:
        break;
    }
}

static int run_step(struct store *st, const struct step *s)
{
    struct store_hard_state hs = {.term = s->hs_term, .vote = 1};
    uint64_t seq;
    int rc;
    switch (s->kind) {
    case S_APPEND: {
        struct store_record *r = th_recs(s->first, s->n, s->term, SALT, MAXLEN);
        rc = store_append_sync(st, s->hs_term ? &hs : NULL, r, s->n);
        th_recs_free(r, s->n);
        return rc;
    }
    case S_HS:
        return store_append_sync(st, &hs, NULL, 0);
    case S_SNAP: {
        struct store_snap_meta m = {.index = s->first, .term = s->term, .conf_len = 1};
        rc = store_snapshot_save(st, &m, "snap", 4, &seq);
        return rc < 0 ? rc : store_wait(st, seq);
    }
    case S_COMPACT:
        rc = store_compact(st, s->first, &seq);
        return rc < 0 ? rc : store_wait(st, seq);
    }
    return -EINVAL;
}

/* Does the reopened store match model x, holding at least up to `must`? */
static bool matches(struct store *st, const struct model *x, uint64_t must)
{
    uint64_t last = store_last_index(st), first = store_first_index(st);
    struct store_snap_meta sm;
    bool has = store_snapshot_meta(st, &sm);
    if ((has ? sm.index : 0) != x->snap || last < must || last > x->last)
        return false;
    if (first > last)
        return true;
    struct store_record *r;
    size_t n;
    if (store_read(st, first, last, &r, &n) != 0)
        return false;
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++)
        ok = r[i].index <= MAXI && x->term[r[i].index] &&
             th_rec_ok(&r[i], x->term[r[i].index], SALT, MAXLEN);
    free(r);
    return ok;
}

static struct store_options opts(void)
{
    struct store_options o;
    store_options_default(&o);
    o.segment_size = 1024;
    return o;
}

/* One run: 0 if the workload finished (fault never hit), 1 if it failed and
 * recovered correctly. */
static int one_run(enum store_fault_op op, unsigned long nth, int err)
{
    char *dir = th_tmpdir("fault");
    struct store_options o = opts();
    store_fault_reset();
    struct store *st = th_open(dir, &o);
    store_fault_arm(op, nth, err);
    struct model before = {0}, after = {0};
    size_t k;
    int rc = 0;
    for (k = 0; k < NSTEPS; k++) {
        before = after;
        model_apply(&after, &workload[k]);
        if ((rc = run_step(st, &workload[k])) != 0)
            break;
    }
    store_fault_reset();
    if (k == NSTEPS) {
        assert_int_equal(store_close(st), 0);
        th_rmrf(dir);
        free(dir);
        return 0;
    }
    /* Loud and sticky: the error, a reason naming the operation, and every
     * further change refused with the same error. */
    assert_int_equal(rc, -err);
    assert_true(store_failed(st));
    if (!strstr(store_errmsg(st), store_fault_op_name(op)) &&
        !(op == STORE_FAULT_OPEN && strstr(store_errmsg(st), "create")))
        fail_msg("%s #%lu: message does not name the operation: %s", store_fault_op_name(op),
                 nth, store_errmsg(st));
    struct store_progress p;
    assert_int_equal(store_poll(st, &p), -err);
    struct store_record *r = th_recs(store_last_index(st) + 1, 1, 9, SALT, MAXLEN);
    assert_int_equal(store_append(st, NULL, r, 1, NULL), -err);
    th_recs_free(r, 1);
    assert_int_equal(store_close(st), -err);

    /* Reopen: the state before the failed step, or after it (it may have
     * reached the disk before the error), never anything else. */
    struct store_open_info info;
    rc = store_open(dir, &o, &st, &info);
    if (rc != 0)
        fail_msg("%s #%lu at step %zu: reopen failed: %s", store_fault_op_name(op), nth, k,
                 info.error);
    const struct step *s = &workload[k];
    /* A conflict repair may stop part-way: records past the conflict point
     * were never committed (the leader does not have them), so losing some
     * of them is safe; everything before it must stay. */
    uint64_t must = s->kind == S_APPEND ? s->first - 1 : after.last;
    if (!matches(st, &before, must < before.last ? must : before.last) &&
        !matches(st, &after, must))
        fail_msg("%s #%lu at step %zu: recovered log [%llu, %llu] matches neither side",
                 store_fault_op_name(op), nth, k, (unsigned long long)store_first_index(st),
                 (unsigned long long)store_last_index(st));
    struct store_hard_state hs;
    store_hard_state(st, &hs);
    assert_true(hs.term == before.hs_term || hs.term == after.hs_term);
    /* And it works again. */
    uint64_t next = store_last_index(st) + 1;
    r = th_recs(next, 5, 9, SALT, MAXLEN);
    assert_int_equal(store_append_sync(st, NULL, r, 5), 0);
    th_recs_free(r, 5);
    assert_int_equal(store_close(st), 0);
    st = th_open(dir, &o);
    assert_int_equal(store_last_index(st), next + 4);
    assert_int_equal(store_close(st), 0);
    th_rmrf(dir);
    free(dir);
    return 1;
}

static void sweep(enum store_fault_op op)
{
    static const int errs[] = {EIO, ENOSPC};
    for (int e = 0; e < 2; e++) {
        unsigned long nth;
        unsigned hits = 0;
        for (nth = 1; one_run(op, nth, errs[e]); nth++)
            hits++;
        print_message("%s/%s: failed at each of %u calls, all recovered\n",
                      store_fault_op_name(op), errs[e] == EIO ? "EIO" : "ENOSPC", hits);
        assert_true(hits > 0);
    }
}

static void test_fault_open(void **state) { (void)state; sweep(STORE_FAULT_OPEN); }
static void test_fault_write(void **state) { (void)state; sweep(STORE_FAULT_WRITE); }
static void test_fault_fdatasync(void **state) { (void)state; sweep(STORE_FAULT_FDATASYNC); }
static void test_fault_fsync(void **state) { (void)state; sweep(STORE_FAULT_FSYNC); }
static void test_fault_rename(void **state) { (void)state; sweep(STORE_FAULT_RENAME); }
static void test_fault_ftruncate(void **state) { (void)state; sweep(STORE_FAULT_FTRUNCATE); }
static void test_fault_unlink(void **state) { (void)state; sweep(STORE_FAULT_UNLINK); }

/* Faults while opening: a clear error, nothing changed, a clean retry. */
static void test_fault_during_open(void **state)
{
    (void)state;
    char *dir = th_tmpdir("fault-open");
    struct store_options o = opts();
    store_fault_reset();
    struct store *st = th_open(dir, &o);
    for (size_t k = 0; k < 3; k++)
        assert_int_equal(run_step(st, &workload[k]), 0);
    assert_int_equal(store_close(st), 0);
    static const enum store_fault_op ops[] = {STORE_FAULT_OPEN, STORE_FAULT_FSYNC};
    for (int i = 0; i < 2; i++) {
        store_fault_reset();
        store_fault_arm(ops[i], 1, EIO);
        struct store_open_info info;
        assert_int_equal(store_open(dir, &o, &st, &info), -EIO);
        assert_true(info.error[0] != '\0');
        store_fault_reset();
        st = th_open(dir, &o);
        assert_int_equal(store_last_index(st), 60);
        assert_int_equal(store_close(st), 0);
    }
    th_rmrf(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fault_open),
        cmocka_unit_test(test_fault_write),
        cmocka_unit_test(test_fault_fdatasync),
        cmocka_unit_test(test_fault_fsync),
        cmocka_unit_test(test_fault_rename),
        cmocka_unit_test(test_fault_ftruncate),
        cmocka_unit_test(test_fault_unlink),
        cmocka_unit_test(test_fault_during_open),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
