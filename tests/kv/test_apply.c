/* test_apply.c - applying entries: the result of each op, the applied index
 * rules, undecodable entries changing nothing, client sessions (a retry
 * returns the original result and applies once, stale and expired
 * sequences, expiry by log time, the session cap), the data quota, and
 * determinism: replicas
 * applying the same entries, or one restored from a snapshot midway, end
 * with byte-identical snapshots. */
#include "helpers.h"
#include "kv/kv_int.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

static void assert_current(const struct kv_result *r, const char *val)
{
    assert_int_equal(r->status, KV_STATUS_CAS_FAILED);
    if (!val) {
        assert_true(r->current_absent);
        return;
    }
    assert_false(r->current_absent);
    assert_int_equal(r->current_len, strlen(val));
    assert_memory_equal(r->current, val, r->current_len);
}

static void test_ops(void **state)
{
    (void)state;
    struct kv *kv = kv_new(NULL);
    struct kv_result r;
    struct kv_command c = cmd_set("a", "1", 0, 0, 0);
    apply_cmd(kv, 1, &c, &r);
    assert_int_equal(r.status, KV_STATUS_OK);
    assert_int_equal(r.index, 1);
    assert_false(r.duplicate);
    assert_value(kv, "a", "1");

    c = cmd_del("zz", 0, 0, 0);
    apply_cmd(kv, 2, &c, &r);
    assert_int_equal(r.status, KV_STATUS_NOT_FOUND);
    assert_int_equal(kv_applied_index(kv), 2);

    c = cmd_cas("a", "1", "2", 0, 0, 0);
    apply_cmd(kv, 3, &c, &r);
    assert_int_equal(r.status, KV_STATUS_OK);
    assert_value(kv, "a", "2");
    c = cmd_cas("a", "1", "3", 0, 0, 0);
    apply_cmd(kv, 4, &c, &r);
    assert_current(&r, "2");
    assert_value(kv, "a", "2");
    c = cmd_cas("a", NULL, "3", 0, 0, 0);
    apply_cmd(kv, 5, &c, &r);
    assert_current(&r, "2");
    c = cmd_cas("b", NULL, "", 0, 0, 0);
    apply_cmd(kv, 6, &c, &r);
    assert_int_equal(r.status, KV_STATUS_OK);
    assert_value(kv, "b", "");
    /* An empty value is present: "expect absent" fails, "expect empty" holds. */
    c = cmd_cas("b", NULL, "x", 0, 0, 0);
    apply_cmd(kv, 7, &c, &r);
    assert_current(&r, "");
    c = cmd_cas("b", "", "x", 0, 0, 0);
    apply_cmd(kv, 8, &c, &r);
    assert_int_equal(r.status, KV_STATUS_OK);
    c = cmd_cas("nope", "x", "y", 0, 0, 0);
    apply_cmd(kv, 9, &c, &r);
    assert_current(&r, NULL);
    assert_value(kv, "nope", NULL);

    c = cmd_del("a", 0, 0, 0);
    apply_cmd(kv, 10, &c, &r);
    assert_int_equal(r.status, KV_STATUS_OK);
    assert_value(kv, "a", NULL);
    kv_free(kv);
}

static void test_index_rules(void **state)
{
    (void)state;
    struct kv *kv = kv_new(NULL);
    struct kv_result r;
    size_t len;
    struct kv_command c = cmd_set("a", "1", 0, 0, 0);
    uint8_t *buf = encode_cmd(&c, &len);
    assert_int_equal(kv_apply(kv, 0, buf, len, &r), KV_EINDEX);
    assert_int_equal(kv_apply(kv, 5, buf, len, &r), KV_OK); /* gaps are fine */
    assert_int_equal(kv_apply(kv, 5, buf, len, &r), KV_EINDEX);
    assert_int_equal(kv_apply(kv, 4, buf, len, &r), KV_EINDEX);
    assert_int_equal(kv_skip(kv, 5), KV_EINDEX);
    assert_int_equal(kv_skip(kv, 6), KV_OK);
    assert_int_equal(kv_applied_index(kv), 6);
    assert_int_equal(kv_apply(kv, 7, buf, len, &r), KV_OK);
    assert_int_equal(kv_applied_index(kv), 7);
    free(buf);
    kv_free(kv);
}

/* Garbage is applied as INVALID, identically to skipping that index. */
static void test_invalid_changes_nothing(void **state)
{
    (void)state;
    struct kv *a = kv_new(NULL), *b = kv_new(NULL);
    struct kv_result r;
    struct kv_command c = cmd_set("k", "v", 1, 1, 100);
    apply_cmd(a, 1, &c, &r);
    apply_cmd(b, 1, &c, &r);
    size_t len;
    uint8_t *buf = encode_cmd(&c, &len);
    for (size_t cut = 0; cut < len; cut++) {
        assert_int_equal(kv_apply(a, 2 + cut, buf, cut, &r), KV_OK);
        assert_int_equal(r.status, KV_STATUS_INVALID);
        assert_int_equal(r.index, 2 + cut);
        assert_int_equal(kv_skip(b, 2 + cut), KV_OK);
    }
    buf[len - 1] ^= 1;
    assert_int_equal(kv_apply(a, 100, buf, len, &r), KV_OK);
    assert_int_equal(r.status, KV_STATUS_INVALID);
    assert_int_equal(kv_skip(b, 100), KV_OK);
    assert_same_state(a, b);
    free(buf);
    kv_free(a);
    kv_free(b);
}

static void test_retry_applies_once(void **state)
{
    (void)state;
    struct kv *kv = kv_new(NULL);
    struct kv_result r;
    struct kv_command mine = cmd_set("k", "mine", 1, 1, 10);
    apply_cmd(kv, 1, &mine, &r);
    struct kv_command other = cmd_set("k", "other", 2, 1, 11);
    apply_cmd(kv, 2, &other, &r);

    /* The retry (say, after a leader change) gets the original answer and
     * does not overwrite the later write. */
    apply_cmd(kv, 3, &mine, &r);
    assert_int_equal(r.status, KV_STATUS_OK);
    assert_true(r.duplicate);
    assert_int_equal(r.index, 1);
    assert_value(kv, "k", "other");
    assert_int_equal(kv_applied_index(kv), 3);

    /* A DEL that found nothing stays NOT_FOUND on retry, even though the key
     * exists by then. */
    struct kv_command del = cmd_del("x", 1, 2, 12);
    apply_cmd(kv, 4, &del, &r);
    assert_int_equal(r.status, KV_STATUS_NOT_FOUND);
    struct kv_command setx = cmd_set("x", "1", 2, 2, 13);
    apply_cmd(kv, 5, &setx, &r);
    apply_cmd(kv, 6, &del, &r);
    assert_int_equal(r.status, KV_STATUS_NOT_FOUND);
    assert_true(r.duplicate);
    assert_int_equal(r.index, 4);
    assert_value(kv, "x", "1");

    /* A failed CAS returns the value it saw back then. */
    struct kv_command cas = cmd_cas("k", "mine", "new", 1, 3, 14);
    apply_cmd(kv, 7, &cas, &r);
    assert_current(&r, "other");
    struct kv_command set2 = cmd_set("k", "third", 2, 3, 15);
    apply_cmd(kv, 8, &set2, &r);
    apply_cmd(kv, 9, &cas, &r);
    assert_current(&r, "other");
    assert_true(r.duplicate);
    assert_int_equal(r.index, 7);

    /* ... and one that failed on absence says so on retry. */
    struct kv_command cas2 = cmd_cas("y", "v", "new", 1, 4, 16);
    apply_cmd(kv, 10, &cas2, &r);
    assert_current(&r, NULL);
    apply_cmd(kv, 11, &cas2, &r);
    assert_current(&r, NULL);
    assert_true(r.duplicate);

    /* Older sequences are ignored as stale. */
    struct kv_command old = cmd_set("k", "stale", 1, 2, 17);
    apply_cmd(kv, 12, &old, &r);
    assert_int_equal(r.status, KV_STATUS_STALE);
    assert_int_equal(r.index, 12);
    assert_value(kv, "k", "third");

    /* Sequences may skip ahead (abandoned requests). */
    struct kv_command jump = cmd_set("k", "jump", 1, 10, 18);
    apply_cmd(kv, 13, &jump, &r);
    assert_int_equal(r.status, KV_STATUS_OK);
    assert_value(kv, "k", "jump");

    /* Without a session every copy applies. */
    struct kv_command plain = cmd_del("k", 0, 0, 19);
    apply_cmd(kv, 14, &plain, &r);
    assert_int_equal(r.status, KV_STATUS_OK);
    apply_cmd(kv, 15, &plain, &r);
    assert_int_equal(r.status, KV_STATUS_NOT_FOUND);
    assert_false(r.duplicate);
    kv_free(kv);
}

static void test_unknown_session(void **state)
{
    (void)state;
    struct kv *kv = kv_new(NULL);
    struct kv_result r;
    struct kv_command c = cmd_set("k", "v", 5, 2, 0);
    apply_cmd(kv, 1, &c, &r);
    assert_int_equal(r.status, KV_STATUS_SESSION_EXPIRED);
    assert_value(kv, "k", NULL);
    assert_int_equal(kv_session_count(kv), 0);
    kv_free(kv);
}

static void test_expiry_by_log_time(void **state)
{
    (void)state;
    struct kv_config cfg = {.session_ttl_ms = 1000};
    struct kv *kv = kv_new(&cfg);
    struct kv_result r;
    struct kv_command c = cmd_set("a", "1", 1, 1, 5000);
    apply_cmd(kv, 1, &c, &r);
    c = cmd_set("b", "1", 2, 1, 5000);
    apply_cmd(kv, 2, &c, &r);

    /* Client 2 stays active; client 1 goes idle. */
    c = cmd_set("b", "2", 2, 2, 5600);
    apply_cmd(kv, 3, &c, &r);
    /* Idle for exactly the TTL is not yet expired ... */
    struct kv_command noop = {.op = KV_OP_NOOP, .time_ms = 6000};
    apply_cmd(kv, 4, &noop, &r);
    assert_int_equal(kv_session_count(kv), 2);
    /* ... a leader with a slower clock does not turn log time back ... */
    noop.time_ms = 10;
    apply_cmd(kv, 5, &noop, &r);
    assert_int_equal(kv_log_time_ms(kv), 6000);
    assert_int_equal(kv_session_count(kv), 2);
    /* ... and one millisecond more is too long. */
    noop.time_ms = 6001;
    apply_cmd(kv, 6, &noop, &r);
    assert_int_equal(kv_session_count(kv), 1);
    c = cmd_set("a", "2", 1, 2, 6001);
    apply_cmd(kv, 7, &c, &r);
    assert_int_equal(r.status, KV_STATUS_SESSION_EXPIRED);
    assert_value(kv, "a", "1");

    /* A retry counts as activity. */
    c = cmd_set("b", "2", 2, 2, 6500);
    apply_cmd(kv, 8, &c, &r);
    assert_true(r.duplicate);
    noop.time_ms = 7500;
    apply_cmd(kv, 9, &noop, &r);
    assert_int_equal(kv_session_count(kv), 1);
    noop.time_ms = 7501;
    apply_cmd(kv, 10, &noop, &r);
    assert_int_equal(kv_session_count(kv), 0);
    kv_free(kv);
}

static void test_session_cap(void **state)
{
    (void)state;
    struct kv_config cfg = {.max_sessions = 3};
    struct kv *kv = kv_new(&cfg);
    struct kv_result r;
    struct kv_command c;
    for (uint64_t id = 1; id <= 3; id++) {
        c = cmd_set("k", "v", id, 1, id);
        apply_cmd(kv, id, &c, &r);
    }
    /* Client 1 is the oldest, but using it makes client 2 the oldest. */
    c = cmd_set("k", "v", 1, 2, 10);
    apply_cmd(kv, 4, &c, &r);
    c = cmd_set("k", "v", 4, 1, 11);
    apply_cmd(kv, 5, &c, &r);
    assert_int_equal(kv_session_count(kv), 3);
    c = cmd_set("k", "v", 2, 2, 12);
    apply_cmd(kv, 6, &c, &r);
    assert_int_equal(r.status, KV_STATUS_SESSION_EXPIRED);
    c = cmd_set("k", "v", 1, 2, 12); /* client 1 is still known */
    apply_cmd(kv, 7, &c, &r);
    assert_true(r.duplicate);
    c = cmd_set("k", "v", 3, 2, 12);
    apply_cmd(kv, 8, &c, &r);
    assert_int_equal(r.status, KV_STATUS_OK);
    assert_int_equal(kv_session_count(kv), 3);
    kv_free(kv);
}

/* ---- determinism ---- */

static const char *const keys[] = {"a", "b", "c", "d", "ab", "\0"};

/* A random stream of entries: writes of 5 clients with retries and stale
 * resends, garbage, and log time that mostly moves on but sometimes jumps
 * past the TTL or goes backwards.  Entries are encoded into out[]. */
static void apply_status(struct kv *kv, uint64_t index, struct kv_command c, enum kv_status want)
{
    struct kv_result r;
    apply_cmd(kv, index, &c, &r);
    assert_int_equal(r.status, want);
}

/* The quota (KV_OP_SET_QUOTA): writes that would grow the dictionary past
 * it get NO_SPACE and change nothing; shrinking, same-size writes and
 * deletes always work; the verdict is cached for a session's retry, and the
 * quota and such a session survive a snapshot. */
static void test_quota(void **state)
{
    (void)state;
    struct kv *kv = kv_new(NULL);
    uint64_t i = 1;
    assert_int_equal(kv_quota(kv), 0);
    apply_status(kv, i++, (struct kv_command){.op = KV_OP_SET_QUOTA, .quota_bytes = 20},
                 KV_STATUS_OK);
    assert_int_equal(kv_quota(kv), 20);
    apply_status(kv, i++, cmd_set("a", "123456789", 0, 0, 0), KV_STATUS_OK); /* 10 */
    apply_status(kv, i++, cmd_set("b", "123456789", 0, 0, 0), KV_STATUS_OK); /* 20: at it */
    apply_status(kv, i++, cmd_set("c", "x", 0, 0, 0), KV_STATUS_NO_SPACE);
    apply_status(kv, i++, cmd_cas("c", NULL, "x", 0, 0, 0), KV_STATUS_NO_SPACE);
    assert_int_equal(kv_dict_count(kv_dict(kv)), 2);
    apply_status(kv, i++, cmd_set("a", "987654321", 0, 0, 0), KV_STATUS_OK); /* same size */
    apply_status(kv, i++, cmd_set("a", "9876543210", 0, 0, 0), KV_STATUS_NO_SPACE);
    assert_value(kv, "a", "987654321");
    apply_status(kv, i++, cmd_set("a", "1", 0, 0, 0), KV_STATUS_OK); /* shrinks to 12 */
    apply_status(kv, i++, cmd_set("c", "1234567", 0, 0, 0), KV_STATUS_OK); /* 20 again */
    /* a session's verdict is cached: the retry gets NO_SPACE, applies nothing */
    struct kv_result r;
    struct kv_command big = cmd_set("d", "x", 7, 1, 0);
    apply_cmd(kv, i++, &big, &r);
    assert_int_equal(r.status, KV_STATUS_NO_SPACE);
    apply_status(kv, i++, cmd_del("b", 0, 0, 0), KV_STATUS_OK); /* 10 */
    apply_cmd(kv, i++, &big, &r);
    assert_true(r.duplicate);
    assert_int_equal(r.status, KV_STATUS_NO_SPACE);
    apply_status(kv, i++, cmd_set("d", "x", 7, 2, 0), KV_STATUS_OK);
    apply_status(kv, i++, cmd_cas("c", "1234567", "12345678", 0, 0, 0), KV_STATUS_OK);

    size_t len;
    uint8_t *snap = snapshot_bytes(kv, &len);
    struct kv *back = NULL;
    assert_int_equal(kv_snapshot_load(snap, len, NULL, &back), KV_OK);
    assert_int_equal(kv_quota(back), 20);
    assert_same_state(kv, back);
    kv_free(back);
    free(snap);

    apply_status(kv, i++, (struct kv_command){.op = KV_OP_SET_QUOTA}, KV_STATUS_OK);
    apply_status(kv, i++, cmd_set("e", "a long value past the old quota", 0, 0, 0), KV_STATUS_OK);
    kv_free(kv);
}

static size_t make_entries(uint64_t seed, uint8_t **out, size_t *lens, size_t n)
{
    uint64_t rng = seed, t = 1000, seq[6] = {0};
    for (size_t i = 0; i < n; i++) {
        uint64_t client = test_rand(&rng) % 6; /* 0: no session */
        unsigned roll = (unsigned)(test_rand(&rng) % 100);
        t += roll < 3 ? 5000 : (roll < 6 ? (uint64_t)0 - 500 : test_rand(&rng) % 200);
        if (roll >= 97) {
            lens[i] = test_rand(&rng) % 12;
            out[i] = malloc(lens[i] + 1);
            for (size_t j = 0; j < lens[i]; j++)
                out[i][j] = (uint8_t)test_rand(&rng);
            continue;
        }
        uint64_t s = 0;
        if (client) {
            unsigned how = (unsigned)(test_rand(&rng) % 10);
            /* Mostly next, sometimes a retry or a stale resend or a restart
             * after expiry. */
            s = how < 7 ? ++seq[client] : how < 9 ? seq[client] : seq[client] / 2;
            if (seq[client] > 1 && test_rand(&rng) % 50 == 0)
                s = seq[client] = 1;
            if (!s)
                s = seq[client] = 1;
        }
        const char *k = keys[test_rand(&rng) % 6];
        char v[8];
        snprintf(v, sizeof(v), "%u", (unsigned)(test_rand(&rng) % 4));
        struct kv_command c;
        switch (test_rand(&rng) % 4) {
        case 0: c = cmd_del(k, client, s, t); break;
        case 1: c = cmd_cas(k, test_rand(&rng) % 3 ? v : NULL, "x", client, s, t); break;
        default: c = cmd_set(k, v, client, s, t); break;
        }
        c.key_len = k[0] ? strlen(k) : 1;
        out[i] = encode_cmd(&c, &lens[i]);
    }
    return n;
}

static void test_replicas_agree(void **state)
{
    (void)state;
    enum { N = 4000 };
    struct kv_config cfg = {.session_ttl_ms = 3000, .max_sessions = 4};
    static uint8_t *entries[N];
    static size_t lens[N];
    for (uint64_t seed = 1; seed <= 5; seed++) {
        make_entries(seed, entries, lens, N);
        struct kv *a = kv_new(&cfg), *b = kv_new(&cfg), *c = NULL;
        size_t statuses[6] = {0};
        for (size_t i = 0; i < N; i++) {
            struct kv_result ra, rb;
            assert_int_equal(kv_apply(a, i + 1, entries[i], lens[i], &ra), KV_OK);
            assert_int_equal(kv_apply(b, i + 1, entries[i], lens[i], &rb), KV_OK);
            assert_int_equal(ra.status, rb.status);
            assert_int_equal(ra.index, rb.index);
            assert_int_equal(ra.duplicate, rb.duplicate);
            statuses[ra.status]++;
            if (c) {
                struct kv_result rc;
                assert_int_equal(kv_apply(c, i + 1, entries[i], lens[i], &rc), KV_OK);
                assert_int_equal(ra.status, rc.status);
                assert_int_equal(ra.index, rc.index);
            }
            /* Halfway, a third replica starts from a's snapshot. */
            if (i == N / 2) {
                size_t len;
                uint8_t *snap = snapshot_bytes(a, &len);
                assert_int_equal(kv_snapshot_load(snap, len, &cfg, &c), KV_OK);
                free(snap);
            }
        }
        /* Every outcome was exercised. */
        for (int s = 0; s < 6; s++)
            assert_true(statuses[s] > 0);
        assert_same_state(a, b);
        assert_same_state(a, c);
        assert_true(kv_dict_check(kv_dict(a)));
        kv_free(a);
        kv_free(b);
        kv_free(c);
        for (size_t i = 0; i < N; i++)
            free(entries[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ops),
        cmocka_unit_test(test_index_rules),
        cmocka_unit_test(test_invalid_changes_nothing),
        cmocka_unit_test(test_retry_applies_once),
        cmocka_unit_test(test_unknown_session),
        cmocka_unit_test(test_expiry_by_log_time),
        cmocka_unit_test(test_session_cap),
        cmocka_unit_test(test_quota),
        cmocka_unit_test(test_replicas_agree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
