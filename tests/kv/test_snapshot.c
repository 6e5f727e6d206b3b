/* test_snapshot.c - the snapshot codec: a state with sessions and binary
 * pairs round-trips to identical bytes and identical behaviour, the chunked
 * writer yields the same stream at every chunk size, a state change under an
 * open writer is caught, and corruption at every byte, every truncation and
 * hand-built streams with a valid checksum but impossible contents are all
 * rejected without touching the caller's pointer or leaking (ASan). */
#include "helpers.h"

#include "common/crc32c.h"
#include "common/endian.h"
#include "kv/kv_int.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

/* Pairs with NUL bytes and empty fields, and three kinds of cached result:
 * OK, CAS_FAILED with a value, CAS_FAILED on absence. */
static struct kv *sample_state(void)
{
    struct kv *kv = kv_new(NULL);
    struct kv_result r;
    struct kv_command c = cmd_set("k1", "v1", 0, 0, 100);
    apply_cmd(kv, 1, &c, &r);
    c = cmd_set("", "", 0, 0, 100);
    c.key = "\0z";
    c.key_len = 2;
    apply_cmd(kv, 2, &c, &r);
    c = cmd_set("k2", "", 7, 1, 200);
    apply_cmd(kv, 3, &c, &r);
    c = cmd_cas("k1", "nope", "x", 8, 1, 300);
    apply_cmd(kv, 4, &c, &r);
    c = cmd_cas("absent", "nope", "x", 9, 5, 300);
    c.sequence = 1;
    apply_cmd(kv, 5, &c, &r);
    assert_int_equal(kv_skip(kv, 9), KV_OK);
    return kv;
}

static void test_round_trip(void **state)
{
    (void)state;
    struct kv *kv = sample_state();
    size_t len, len2;
    uint8_t *snap = snapshot_bytes(kv, &len);
    struct kv *copy = NULL;
    assert_int_equal(kv_snapshot_load(snap, len, NULL, &copy), KV_OK);
    assert_int_equal(kv_applied_index(copy), 9);
    assert_int_equal(kv_log_time_ms(copy), 300);
    assert_int_equal(kv_session_count(copy), 3);
    assert_int_equal(kv_dict_count(kv_dict(copy)), 3);
    assert_value(copy, "k1", "v1");
    uint8_t *snap2 = snapshot_bytes(copy, &len2);
    assert_int_equal(len, len2);
    assert_memory_equal(snap, snap2, len);

    /* The restored sessions answer retries like the original would. */
    struct kv_result r;
    struct kv_command c = cmd_cas("k1", "nope", "x", 8, 1, 400);
    apply_cmd(copy, 10, &c, &r);
    assert_true(r.duplicate);
    assert_int_equal(r.status, KV_STATUS_CAS_FAILED);
    assert_int_equal(r.index, 4);
    assert_int_equal(r.current_len, 2);
    assert_memory_equal(r.current, "v1", 2);
    c = cmd_cas("absent", "nope", "x", 9, 1, 400);
    apply_cmd(copy, 11, &c, &r);
    assert_true(r.duplicate && r.current_absent);
    free(snap);
    free(snap2);
    kv_free(copy);
    kv_free(kv);
}

static void test_empty_state(void **state)
{
    (void)state;
    struct kv *kv = kv_new(NULL), *copy = NULL;
    size_t len;
    uint8_t *snap = snapshot_bytes(kv, &len);
    assert_int_equal(len, 47); /* header, empty incarnation and kept-learner tables, no quota, crc */
    assert_int_equal(kv_snapshot_load(snap, len, NULL, &copy), KV_OK);
    assert_int_equal(kv_dict_count(kv_dict(copy)), 0);
    free(snap);
    kv_free(copy);
    kv_free(kv);
}

static void test_chunk_sizes(void **state)
{
    (void)state;
    struct kv *kv = sample_state();
    /* A value longer than a chunk, so records straddle chunks. */
    char big[3000];
    memset(big, 'q', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    struct kv_result r;
    struct kv_command c = cmd_set("big", big, 0, 0, 300);
    apply_cmd(kv, 10, &c, &r);
    size_t len;
    uint8_t *whole = snapshot_bytes(kv, &len);
    static const size_t sizes[] = {1, 2, 3, 7, 44, 45, 1000, 100000};
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        struct kv_snapshot_writer *w = kv_snapshot_writer_new(kv);
        uint8_t *out = malloc(len + sizes[s]);
        size_t got = 0;
        ssize_t n;
        while ((n = kv_snapshot_writer_next(w, out + got, sizes[s])) > 0) {
            assert_true((size_t)n <= sizes[s]);
            /* Only the last chunk may be short. */
            if ((size_t)n < sizes[s])
                assert_int_equal(got + (size_t)n, len);
            got += (size_t)n;
        }
        assert_int_equal(n, 0);
        assert_int_equal(kv_snapshot_writer_next(w, out, sizes[s]), 0);
        assert_int_equal(got, len);
        assert_memory_equal(out, whole, len);
        free(out);
        kv_snapshot_writer_free(w);
    }
    free(whole);
    kv_free(kv);
}

static void test_change_under_writer(void **state)
{
    (void)state;
    struct kv *kv = sample_state();
    struct kv_snapshot_writer *w = kv_snapshot_writer_new(kv);
    uint8_t buf[16];
    assert_int_equal(kv_snapshot_writer_next(w, buf, sizeof(buf)), 16);
    struct kv_result r;
    struct kv_command c = cmd_del("zzz", 0, 0, 0); /* changes only the index */
    apply_cmd(kv, 10, &c, &r);
    assert_int_equal(kv_snapshot_writer_next(w, buf, sizeof(buf)), KV_EBUSY);
    kv_snapshot_writer_free(w);
    kv_free(kv);
}

static int fail_after_first(void *ctx, const void *buf, size_t len)
{
    (void)buf;
    (void)len;
    return ++*(int *)ctx > 1 ? -42 : 0;
}

static void test_callback_stops(void **state)
{
    (void)state;
    struct kv *kv = kv_new(NULL);
    char key[16];
    for (int i = 0; i < 20000; i++)
        kv_dict_set(kv->dict, key, (size_t)snprintf(key, sizeof(key), "%d", i), key, 8);
    int calls = 0;
    assert_int_equal(kv_snapshot_write(kv, fail_after_first, &calls), -42);
    assert_int_equal(calls, 2);
    kv_free(kv);
}

static struct kv *const untouched = (struct kv *)0x1;

static void assert_rejected(const uint8_t *buf, size_t len)
{
    struct kv *out = untouched;
    /* An exact-size copy so that ASan sees any read past the end. */
    uint8_t *copy = malloc(len ? len : 1);
    memcpy(copy, buf, len);
    int rc = kv_snapshot_load(copy, len, NULL, &out);
    assert_true(rc == KV_EBADMSG || rc == KV_EVERSION);
    assert_ptr_equal(out, untouched);
    free(copy);
}

static void test_every_corruption(void **state)
{
    (void)state;
    struct kv *kv = sample_state();
    size_t len;
    uint8_t *snap = snapshot_bytes(kv, &len);
    for (size_t off = 0; off < len; off++) {
        for (unsigned bit = 0; bit < 8; bit++) {
            snap[off] ^= (uint8_t)(1u << bit);
            assert_rejected(snap, len);
            snap[off] ^= (uint8_t)(1u << bit);
        }
    }
    for (size_t cut = 0; cut < len; cut++)
        assert_rejected(snap, cut);
    uint8_t *longer = malloc(len + 1);
    memcpy(longer, snap, len);
    longer[len] = 0;
    assert_rejected(longer, len + 1);
    free(longer);
    free(snap);
    kv_free(kv);
}

/* ---- hand-built streams with a valid checksum ---- */

struct sb {
    uint8_t b[256];
    size_t n;
};

static void sb_header(struct sb *s, uint64_t applied, uint64_t log_time,
                      uint64_t nsessions, uint64_t nkeys)
{
    memcpy(s->b, "RKVS", 4);
    put_le32(s->b + 4, 1); /* v1 (no incarnation table): old snapshots must keep loading */
    put_le64(s->b + 8, applied);
    put_le64(s->b + 16, log_time);
    put_le64(s->b + 24, nsessions);
    put_le64(s->b + 32, nkeys);
    s->n = 40;
}

static void sb_var(struct sb *s, uint64_t v)
{
    s->n = (size_t)(kv_put_uvarint(s->b + s->n, v) - s->b);
}

static void sb_u8(struct sb *s, uint8_t v)
{
    s->b[s->n++] = v;
}

static void sb_str(struct sb *s, const char *str)
{
    sb_var(s, strlen(str));
    memcpy(s->b + s->n, str, strlen(str));
    s->n += strlen(str);
}

static void sb_session(struct sb *s, uint64_t id, uint64_t seq, uint64_t active,
                       uint64_t index, uint8_t status, uint8_t flags)
{
    sb_var(s, id);
    sb_var(s, seq);
    sb_var(s, active);
    sb_var(s, index);
    sb_u8(s, status);
    sb_u8(s, flags);
}

static int sb_load(struct sb *s)
{
    put_le32(s->b + s->n, crc32c(0, s->b, s->n));
    struct kv *out = untouched;
    int rc = kv_snapshot_load(s->b, s->n + 4, NULL, &out);
    if (rc == KV_OK)
        kv_free(out);
    else
        assert_ptr_equal(out, untouched);
    return rc;
}

static void test_impossible_contents(void **state)
{
    (void)state;
    struct sb s;
    /* Baseline: accepted. */
    sb_header(&s, 10, 100, 1, 2);
    sb_session(&s, 1, 1, 100, 10, KV_STATUS_CAS_FAILED, 1);
    sb_str(&s, "cur");
    sb_str(&s, "a");
    sb_str(&s, "1");
    sb_str(&s, "b");
    sb_str(&s, "2");
    assert_int_equal(sb_load(&s), KV_OK);

    sb_header(&s, 10, 100, 0, 2); /* keys out of order */
    sb_str(&s, "b"), sb_str(&s, "1"), sb_str(&s, "a"), sb_str(&s, "2");
    assert_int_equal(sb_load(&s), KV_EBADMSG);
    sb_header(&s, 10, 100, 0, 2); /* duplicate key */
    sb_str(&s, "a"), sb_str(&s, "1"), sb_str(&s, "a"), sb_str(&s, "2");
    assert_int_equal(sb_load(&s), KV_EBADMSG);
    sb_header(&s, 10, 100, 0, 2); /* fewer pairs than counted */
    sb_str(&s, "a"), sb_str(&s, "1");
    assert_int_equal(sb_load(&s), KV_EBADMSG);
    sb_header(&s, 10, 100, 0, 1); /* more bytes than counted */
    sb_str(&s, "a"), sb_str(&s, "1"), sb_str(&s, "b"), sb_str(&s, "2");
    assert_int_equal(sb_load(&s), KV_EBADMSG);
    sb_header(&s, 10, 100, 0, UINT64_MAX); /* absurd count */
    sb_str(&s, "a"), sb_str(&s, "1");
    assert_int_equal(sb_load(&s), KV_EBADMSG);
    sb_header(&s, 10, 100, 0, 1); /* length past the end */
    sb_var(&s, 200), sb_str(&s, "x");
    assert_int_equal(sb_load(&s), KV_EBADMSG);

    static const struct {
        uint64_t id, seq, active, index;
        uint8_t status, flags;
    } bad[] = {
        {0, 1, 100, 10, KV_STATUS_OK, 0},              /* client 0 */
        {1, 0, 100, 10, KV_STATUS_OK, 0},              /* sequence 0 */
        {1, 1, 101, 10, KV_STATUS_OK, 0},              /* active after log time */
        {1, 1, 100, 11, KV_STATUS_OK, 0},              /* result after applied */
        {1, 1, 100, 10, KV_STATUS_INVALID, 0},         /* never cached */
        {1, 1, 100, 10, KV_STATUS_STALE, 0},
        {1, 1, 100, 10, 200, 0},
        {1, 1, 100, 10, KV_STATUS_OK, 2},              /* unknown flag */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        sb_header(&s, 10, 100, 1, 0);
        sb_session(&s, bad[i].id, bad[i].seq, bad[i].active, bad[i].index,
                   bad[i].status, bad[i].flags);
        assert_int_equal(sb_load(&s), KV_EBADMSG);
    }
    sb_header(&s, 10, 100, 1, 0); /* a value with a result that has none */
    sb_session(&s, 1, 1, 100, 10, KV_STATUS_OK, 1);
    sb_str(&s, "v");
    assert_int_equal(sb_load(&s), KV_EBADMSG);
    sb_header(&s, 10, 100, 2, 0); /* the same client twice */
    sb_session(&s, 1, 1, 50, 10, KV_STATUS_OK, 0);
    sb_session(&s, 1, 2, 60, 10, KV_STATUS_OK, 0);
    assert_int_equal(sb_load(&s), KV_EBADMSG);
    sb_header(&s, 10, 100, 2, 0); /* recency order against log time */
    sb_session(&s, 1, 1, 60, 10, KV_STATUS_OK, 0);
    sb_session(&s, 2, 1, 50, 10, KV_STATUS_OK, 0);
    assert_int_equal(sb_load(&s), KV_EBADMSG);

    sb_header(&s, 10, 100, 0, 0);
    put_le32(s.b + 4, KV_SNAPSHOT_VERSION + 1);
    assert_int_equal(sb_load(&s), KV_EVERSION);
    sb_header(&s, 10, 100, 0, 0);
    s.b[0] = 'X';
    assert_int_equal(sb_load(&s), KV_EBADMSG);
}

/* An empty state of the given version whose tables after the pairs are
 * n_empty empty ones, then vals[0..n): must be refused. */
static void assert_bad_tail(uint32_t version, unsigned n_empty, const uint64_t *vals, size_t n)
{
    struct sb s;
    sb_header(&s, 10, 100, 0, 0);
    put_le32(s.b + 4, version);
    for (unsigned k = 0; k < n_empty; k++)
        sb_var(&s, 0);
    for (size_t k = 0; k < n; k++)
        sb_var(&s, vals[k]);
    assert_int_equal(sb_load(&s), KV_EBADMSG);
}

/* v2's incarnation table: written, loaded back, and checked strictly; a v1
 * stream (written before the table existed) loads with none recorded. */
static void test_incarnations(void **state)
{
    (void)state;
    struct kv *kv = kv_new(NULL);
    static const uint64_t recs[][2] = {{3, 77}, {1, 5}, {2, 9}, {2, 0} /* forgotten, as by replace */};
    for (size_t i = 0; i < 4; i++) {
        struct kv_command rec = {.op = KV_OP_RECORD_INCARNATION, .member_id = recs[i][0],
                                 .incarnation = recs[i][1]};
        struct kv_result res;
        apply_cmd(kv, i + 1, &rec, &res);
        assert_int_equal(res.status, KV_STATUS_OK);
    }
    size_t len;
    uint8_t *snap = snapshot_bytes(kv, &len);
    struct kv *back = NULL;
    assert_int_equal(kv_snapshot_load(snap, len, NULL, &back), KV_OK);
    assert_int_equal(kv_incarnation(back, 1), 5);
    assert_int_equal(kv_incarnation(back, 2), 0);
    assert_int_equal(kv_incarnation(back, 3), 77);
    assert_same_state(kv, back);
    kv_free(back);
    free(snap);
    kv_free(kv);

    struct sb s;
    sb_header(&s, 10, 100, 0, 1); /* v1: loads, nothing recorded */
    sb_str(&s, "a"), sb_str(&s, "1");
    put_le32(s.b + s.n, crc32c(0, s.b, s.n));
    struct kv *old = NULL;
    assert_int_equal(kv_snapshot_load(s.b, s.n + 4, NULL, &old), KV_OK);
    assert_int_equal(kv_incarnation(old, 1), 0);
    assert_value(old, "a", "1");
    kv_free(old);

    /* count, then (id, incarnation) pairs */
    static const uint64_t bad[][5] = {
        {2, 2, 5, 1, 6}, /* ids not increasing */
        {1, 0, 5},       /* member 0 */
        {1, 1, 0},       /* incarnation 0 */
        {65},            /* over the table size */
        {2, 1, 5},       /* fewer than counted */
    };
    static const size_t nvals[] = {5, 3, 3, 1, 3};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_bad_tail(2, 0, bad[i], nvals[i]);
}

/* v3's table of members kept learners: set and cleared by KEEP_LEARNER,
 * written, loaded back, checked strictly; a v2 stream loads with none kept. */
static void test_keep_learners(void **state)
{
    (void)state;
    struct kv *kv = kv_new(NULL);
    static const struct {
        uint64_t id;
        bool keep;
    } cmds[] = {{7, true}, {3, true}, {5, true}, {5, false}, {9, false}, {3, true}};
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        struct kv_command c = {.op = KV_OP_KEEP_LEARNER, .member_id = cmds[i].id,
                               .keep = cmds[i].keep};
        struct kv_result res;
        apply_cmd(kv, i + 1, &c, &res);
        assert_int_equal(res.status, KV_STATUS_OK);
    }
    assert_true(kv_keep_learner(kv, 3) && kv_keep_learner(kv, 7));
    assert_false(kv_keep_learner(kv, 5) || kv_keep_learner(kv, 9) || kv_keep_learner(kv, 1));
    size_t len;
    uint8_t *snap = snapshot_bytes(kv, &len);
    struct kv *back = NULL;
    assert_int_equal(kv_snapshot_load(snap, len, NULL, &back), KV_OK);
    assert_true(kv_keep_learner(back, 3) && kv_keep_learner(back, 7));
    assert_false(kv_keep_learner(back, 5));
    assert_same_state(kv, back);
    kv_free(back);
    free(snap);

    /* A full table is a deterministic INVALID outcome, not a failure. */
    uint64_t idx = 100;
    for (uint64_t id = 1000; kv->n_keep < KV_MAX_KEEP_LEARNERS; id++) {
        struct kv_command c = {.op = KV_OP_KEEP_LEARNER, .member_id = id, .keep = true};
        struct kv_result res;
        apply_cmd(kv, idx++, &c, &res);
        assert_int_equal(res.status, KV_STATUS_OK);
    }
    struct kv_command c = {.op = KV_OP_KEEP_LEARNER, .member_id = 50, .keep = true};
    struct kv_result res;
    apply_cmd(kv, idx++, &c, &res);
    assert_int_equal(res.status, KV_STATUS_INVALID);
    assert_false(kv_keep_learner(kv, 50));
    kv_free(kv);

    struct sb s;
    sb_header(&s, 10, 100, 0, 1); /* v2: loads, nobody kept */
    put_le32(s.b + 4, 2);
    sb_str(&s, "a"), sb_str(&s, "1");
    sb_var(&s, 1), sb_var(&s, 4), sb_var(&s, 99); /* incarnation of member 4 */
    put_le32(s.b + s.n, crc32c(0, s.b, s.n));
    struct kv *old = NULL;
    assert_int_equal(kv_snapshot_load(s.b, s.n + 4, NULL, &old), KV_OK);
    assert_int_equal(kv_incarnation(old, 4), 99);
    assert_false(kv_keep_learner(old, 4));
    assert_value(old, "a", "1");
    kv_free(old);

    /* an empty incarnation table, then count and member ids */
    static const uint64_t bad[][4] = {
        {2, 5, 5},    /* ids not increasing */
        {2, 5, 4},
        {1, 0},       /* member 0 */
        {65},         /* over the table size */
        {3, 1, 2},    /* fewer than counted */
    };
    static const size_t nvals[] = {3, 3, 2, 1, 3};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_bad_tail(3, 1, bad[i], nvals[i]);
    sb_header(&s, 10, 100, 0, 0); /* and the good form of the same */
    put_le32(s.b + 4, 3);
    sb_var(&s, 0), sb_var(&s, 2), sb_var(&s, 1), sb_var(&s, 5);
    assert_int_equal(sb_load(&s), KV_OK);
}

/* v4 adds the quota after the kept learners; v3 (none) still loads. */
static void test_quota_field(void **state)
{
    (void)state;
    struct sb s;
    sb_header(&s, 10, 100, 0, 0);
    put_le32(s.b + 4, 4);
    sb_var(&s, 0), sb_var(&s, 0), sb_var(&s, 1ull << 31);
    put_le32(s.b + s.n, crc32c(0, s.b, s.n));
    struct kv *kv = NULL;
    assert_int_equal(kv_snapshot_load(s.b, s.n + 4, NULL, &kv), KV_OK);
    assert_int_equal(kv_quota(kv), 1ull << 31);
    kv_free(kv);
    sb_header(&s, 10, 100, 0, 0); /* v4 without the quota: truncated */
    put_le32(s.b + 4, 4);
    sb_var(&s, 0), sb_var(&s, 0);
    assert_int_equal(sb_load(&s), KV_EBADMSG);
    sb_header(&s, 10, 100, 0, 0); /* v3 with one: trailing bytes */
    put_le32(s.b + 4, 3);
    sb_var(&s, 0), sb_var(&s, 0), sb_var(&s, 5);
    assert_int_equal(sb_load(&s), KV_EBADMSG);
}

/* A larger state streamed in 4 KiB chunks and loaded back. */
static void test_large_stream(void **state)
{
    (void)state;
    struct kv *kv = kv_new(NULL);
    char key[16], val[100];
    memset(val, 'v', sizeof(val));
    for (int i = 0; i < 50000; i++)
        kv_dict_set(kv->dict, key, (size_t)snprintf(key, sizeof(key), "key%07d", i),
                    val, sizeof(val));
    struct kv_snapshot_writer *w = kv_snapshot_writer_new(kv);
    size_t cap = 8 << 20, got = 0;
    uint8_t *buf = malloc(cap);
    ssize_t n;
    while ((n = kv_snapshot_writer_next(w, buf + got, 4096)) > 0)
        got += (size_t)n;
    kv_snapshot_writer_free(w);
    struct kv *copy = NULL;
    assert_int_equal(kv_snapshot_load(buf, got, NULL, &copy), KV_OK);
    assert_int_equal(kv_dict_count(kv_dict(copy)), 50000);
    assert_true(kv_dict_check(kv_dict(copy)));
    assert_int_equal(kv_dict_data_bytes(kv_dict(copy)), kv_dict_data_bytes(kv_dict(kv)));
    free(buf);
    kv_free(copy);
    kv_free(kv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_empty_state),
        cmocka_unit_test(test_chunk_sizes),
        cmocka_unit_test(test_change_under_writer),
        cmocka_unit_test(test_callback_stops),
        cmocka_unit_test(test_every_corruption),
        cmocka_unit_test(test_impossible_contents),
        cmocka_unit_test(test_large_stream),
        cmocka_unit_test(test_incarnations),
        cmocka_unit_test(test_keep_learners),
        cmocka_unit_test(test_quota_field),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
