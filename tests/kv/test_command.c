/* test_command.c - the command codec: every op round-trips, every
 * truncation and every corrupted byte is rejected, hand-built bytes with a
 * valid checksum but a bad structure are rejected, and whatever decodes
 * re-encodes to the very same bytes (one byte form per command). */
#include "helpers.h"

#include "common/crc32c.h"
#include "common/endian.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

static uint8_t big[300];

static struct kv_command samples[13];

static int setup(void **state)
{
    (void)state;
    memset(big, 0xab, sizeof(big));
    samples[0] = (struct kv_command){.op = KV_OP_NOOP, .time_ms = 5};
    samples[1] = cmd_set("k", "v", 0, 0, 0);
    samples[2] = cmd_set("key", "value", 7, 1, 1700000000000ull);
    samples[3] = (struct kv_command){.op = KV_OP_SET, .client_id = UINT64_MAX,
                                     .sequence = UINT64_MAX, .time_ms = UINT64_MAX,
                                     .key = "\0\xff", .key_len = 2,
                                     .value = big, .value_len = sizeof(big)};
    samples[4] = cmd_set("", "", 1, 2, 3); /* empty key and value */
    samples[5] = cmd_del("gone", 9, 128, 1);
    samples[6] = cmd_cas("c", "old", "new", 3, 4, 5);
    samples[7] = cmd_cas("c", NULL, "new", 3, 4, 5);
    samples[8] = cmd_cas("c", "", "", 0, 0, 0); /* expects an empty value, not absence */
    samples[9] = (struct kv_command){.op = KV_OP_KEEP_LEARNER, .member_id = 300, .keep = true,
                                     .time_ms = 7};
    samples[10] = (struct kv_command){.op = KV_OP_RECORD_INCARNATION, .member_id = 4,
                                      .incarnation = UINT64_MAX};
    samples[11] = (struct kv_command){.op = KV_OP_SET_QUOTA, .quota_bytes = 2ull << 30, .time_ms = 3};
    samples[12] = (struct kv_command){.op = KV_OP_SET_QUOTA}; /* no quota */
    return 0;
}

static void assert_same_command(const struct kv_command *a, const struct kv_command *b)
{
    assert_int_equal(a->op, b->op);
    assert_int_equal(a->client_id, b->client_id);
    assert_int_equal(a->sequence, b->sequence);
    assert_int_equal(a->time_ms, b->time_ms);
    assert_int_equal(a->key_len, b->key_len);
    assert_int_equal(a->value_len, b->value_len);
    assert_int_equal(a->expected_len, b->expected_len);
    assert_int_equal(a->expect_absent, b->expect_absent);
    assert_int_equal(a->member_id, b->member_id);
    assert_int_equal(a->incarnation, b->incarnation);
    assert_int_equal(a->keep, b->keep);
    assert_int_equal(a->quota_bytes, b->quota_bytes);
    if (a->key_len)
        assert_memory_equal(a->key, b->key, a->key_len);
    if (a->value_len)
        assert_memory_equal(a->value, b->value, a->value_len);
    if (a->expected_len)
        assert_memory_equal(a->expected, b->expected, a->expected_len);
}

static void test_round_trip(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
        size_t len;
        uint8_t *buf = encode_cmd(&samples[i], &len);
        struct kv_command d;
        assert_int_equal(kv_command_decode(buf, len, &d), KV_OK);
        assert_same_command(&samples[i], &d);
        /* Zero copies: decoded fields point into the buffer. */
        if (d.key_len)
            assert_true((const uint8_t *)d.key > buf && (const uint8_t *)d.key < buf + len);
        free(buf);
    }
}

static void test_compact(void **state)
{
    (void)state;
    /* 100-byte value, 16-byte key, a session: header and lengths in ~20 bytes. */
    struct kv_command c = {.op = KV_OP_SET, .client_id = 12345, .sequence = 77,
                           .time_ms = 1700000000000ull, .key = big, .key_len = 16,
                           .value = big, .value_len = 100};
    assert_true(kv_command_size(&c) <= 116 + 20);
}

static void test_every_truncation(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
        size_t len;
        uint8_t *buf = encode_cmd(&samples[i], &len);
        for (size_t cut = 0; cut < len; cut++) {
            struct kv_command d;
            /* A copy of exactly cut bytes, so ASan catches any over-read. */
            uint8_t *t = malloc(cut ? cut : 1);
            memcpy(t, buf, cut);
            assert_int_equal(kv_command_decode(t, cut, &d), KV_EBADMSG);
            free(t);
        }
        free(buf);
    }
}

static void test_every_corrupted_byte(void **state)
{
    (void)state;
    static const uint8_t flips[] = {0x01, 0x02, 0x10, 0x80, 0xff, 0x55};
    for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
        size_t len;
        uint8_t *buf = encode_cmd(&samples[i], &len);
        for (size_t off = 0; off < len; off++) {
            for (size_t f = 0; f < sizeof(flips); f++) {
                struct kv_command d;
                buf[off] ^= flips[f];
                int rc = kv_command_decode(buf, len, &d);
                assert_int_equal(rc, off == 0 ? KV_EVERSION : KV_EBADMSG);
                buf[off] ^= flips[f];
            }
        }
        /* A byte more at the end is as bad as a byte less. */
        uint8_t *longer = malloc(len + 1);
        memcpy(longer, buf, len);
        longer[len] = 0;
        struct kv_command d;
        assert_int_equal(kv_command_decode(longer, len + 1, &d), KV_EBADMSG);
        free(longer);
        free(buf);
    }
}

/* Hand-built bodies with a correct checksum, to reach the structural checks
 * behind it. */
static int decode_sealed(const uint8_t *body, size_t n)
{
    uint8_t buf[64];
    assert_true(n + 4 <= sizeof(buf));
    memcpy(buf, body, n);
    put_le32(buf + n, crc32c(0, buf, n));
    struct kv_command d;
    int rc = kv_command_decode(buf, n + 4, &d);
    if (rc == KV_OK) {
        /* Whatever is accepted has exactly this byte form. */
        uint8_t again[64];
        size_t len;
        assert_int_equal(kv_command_encode(&d, again, sizeof(again), &len), KV_OK);
        assert_int_equal(len, n + 4);
        assert_memory_equal(again, buf, len);
    }
    return rc;
}

#define SEALED(...) decode_sealed((const uint8_t[]){__VA_ARGS__}, \
                                  sizeof((const uint8_t[]){__VA_ARGS__}))

static void test_structure(void **state)
{
    (void)state;
    /* The baseline: version 1, op, client, seq, time, [fields]. */
    assert_int_equal(SEALED(1, KV_OP_NOOP, 0, 0, 0), KV_OK);
    assert_int_equal(SEALED(1, KV_OP_DEL, 1, 1, 0, 1, 'k'), KV_OK);
    assert_int_equal(SEALED(1, KV_OP_SET, 0, 0, 0, 1, 'k', 0), KV_OK);
    assert_int_equal(SEALED(1, KV_OP_CAS, 0, 0, 0, 1, 'k', 0, 1, 'v'), KV_OK);
    assert_int_equal(SEALED(1, KV_OP_CAS, 0, 0, 0, 1, 'k', 1, 0, 1, 'v'), KV_OK);

    assert_int_equal(SEALED(2, KV_OP_NOOP, 0, 0, 0), KV_EVERSION);
    assert_int_equal(SEALED(0, KV_OP_NOOP, 0, 0, 0), KV_EVERSION);
    assert_int_equal(SEALED(1, 4, 0, 0, 0), KV_EBADMSG);    /* unknown op */
    assert_int_equal(SEALED(1, 0xff, 0, 0, 0), KV_EBADMSG);
    assert_int_equal(SEALED(1, KV_OP_NOOP, 0, 0, 0, 0), KV_EBADMSG); /* trailing */
    assert_int_equal(SEALED(1, KV_OP_NOOP, 0, 0), KV_EBADMSG);       /* short */
    assert_int_equal(SEALED(1), KV_EBADMSG);
    /* Sessions: both ids or neither. */
    assert_int_equal(SEALED(1, KV_OP_NOOP, 0, 5, 0), KV_EBADMSG);
    assert_int_equal(SEALED(1, KV_OP_NOOP, 5, 0, 0), KV_EBADMSG);
    /* Varints: overlong forms, 11 bytes, overflow in the 10th byte. */
    assert_int_equal(SEALED(1, KV_OP_NOOP, 0, 0, 0x80, 0x00), KV_EBADMSG);
    assert_int_equal(SEALED(1, KV_OP_NOOP, 0, 0, 0x81, 0x80, 0x00), KV_EBADMSG);
    assert_int_equal(SEALED(1, KV_OP_NOOP, 0, 0, 0x81, 0x01), KV_OK);
    assert_int_equal(SEALED(1, KV_OP_NOOP, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                            0xff, 0xff, 0xff, 0x01), KV_OK);
    assert_int_equal(SEALED(1, KV_OP_NOOP, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                            0xff, 0xff, 0xff, 0x02), KV_EBADMSG);
    assert_int_equal(SEALED(1, KV_OP_NOOP, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
                            0x80, 0x80, 0x80, 0x80, 0x01), KV_EBADMSG);
    /* Lengths past the end, and a length varint cut short. */
    assert_int_equal(SEALED(1, KV_OP_DEL, 0, 0, 0, 2, 'k'), KV_EBADMSG);
    assert_int_equal(SEALED(1, KV_OP_DEL, 0, 0, 0, 0x80), KV_EBADMSG);
    assert_int_equal(SEALED(1, KV_OP_DEL, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f), KV_EBADMSG);
    assert_int_equal(SEALED(1, KV_OP_SET, 0, 0, 0, 1, 'k'), KV_EBADMSG); /* no value */
    /* CAS expectation flag is 0 or 1. */
    assert_int_equal(SEALED(1, KV_OP_CAS, 0, 0, 0, 1, 'k', 2, 0, 1, 'v'), KV_EBADMSG);
    /* KEEP_LEARNER: member id (non-zero), flag 0 or 1, no session. */
    assert_int_equal(SEALED(1, KV_OP_KEEP_LEARNER, 0, 0, 9, 4, 1), KV_OK);
    assert_int_equal(SEALED(1, KV_OP_KEEP_LEARNER, 0, 0, 9, 4, 0), KV_OK);
    assert_int_equal(SEALED(1, KV_OP_KEEP_LEARNER, 0, 0, 9, 4, 2), KV_EBADMSG);
    assert_int_equal(SEALED(1, KV_OP_KEEP_LEARNER, 0, 0, 9, 0, 1), KV_EBADMSG);
    assert_int_equal(SEALED(1, KV_OP_KEEP_LEARNER, 1, 1, 9, 4, 1), KV_EBADMSG);
    assert_int_equal(SEALED(1, KV_OP_KEEP_LEARNER, 0, 0, 9, 4), KV_EBADMSG);
    /* SET_QUOTA: one uvarint, no session. */
    assert_int_equal(SEALED(1, KV_OP_SET_QUOTA, 0, 0, 9, 0x80, 0x01), KV_OK);
    assert_int_equal(SEALED(1, KV_OP_SET_QUOTA, 0, 0, 9, 4, 1), KV_EBADMSG);
    assert_int_equal(SEALED(1, KV_OP_SET_QUOTA, 1, 1, 9, 4), KV_EBADMSG);
    assert_int_equal(SEALED(1, KV_OP_SET_QUOTA, 0, 0, 9), KV_EBADMSG);
    assert_int_equal(SEALED(1, KV_OP_SET_QUOTA + 1, 0, 0, 9, 4), KV_EBADMSG);
}

static void test_encode_rejects(void **state)
{
    (void)state;
    uint8_t buf[512];
    size_t len;
    struct kv_command bad[] = {
        {.op = (enum kv_op)4},
        {.op = KV_OP_NOOP, .key = "k", .key_len = 1},
        {.op = KV_OP_DEL, .key = "k", .key_len = 1, .value = "v", .value_len = 1},
        {.op = KV_OP_SET, .expected = "e", .expected_len = 1},
        {.op = KV_OP_SET, .expect_absent = true},
        {.op = KV_OP_CAS, .expect_absent = true, .expected = "e", .expected_len = 1},
        {.op = KV_OP_SET, .client_id = 1},
        {.op = KV_OP_SET, .sequence = 1},
        {.op = KV_OP_SET, .key = big, .key_len = (size_t)UINT32_MAX + 1},
        {.op = KV_OP_KEEP_LEARNER, .keep = true},                      /* no member */
        {.op = KV_OP_KEEP_LEARNER, .member_id = 2, .incarnation = 1},
        {.op = KV_OP_KEEP_LEARNER, .member_id = 2, .client_id = 1, .sequence = 1},
        {.op = KV_OP_SET, .key = "k", .key_len = 1, .keep = true},
        {.op = KV_OP_RECORD_INCARNATION, .member_id = 2, .incarnation = 1, .keep = true},
        {.op = KV_OP_SET_QUOTA, .member_id = 2},
        {.op = KV_OP_SET_QUOTA, .client_id = 1, .sequence = 1},
        {.op = KV_OP_SET, .key = "k", .key_len = 1, .quota_bytes = 1},
        {.op = (enum kv_op)(KV_OP_SET_QUOTA + 1)},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(kv_command_size(&bad[i]), 0);
        assert_int_equal(kv_command_encode(&bad[i], buf, sizeof(buf), &len), KV_EINVAL);
    }
    size_t need = kv_command_size(&samples[3]);
    for (size_t cap = 0; cap < need; cap += 7)
        assert_int_equal(kv_command_encode(&samples[3], buf, cap, &len), KV_ENOSPC);
    assert_int_equal(kv_command_encode(&samples[3], buf, need, &len), KV_OK);
}

/* Seeded mutations of valid encodings and plain random bytes: no crash, no
 * over-read (ASan), and anything accepted re-encodes byte for byte. */
static void test_fuzz(void **state)
{
    (void)state;
    uint64_t rng = 42;
    for (int round = 0; round < 20000; round++) {
        size_t len;
        uint8_t *buf;
        if (round % 4 == 0) {
            len = test_rand(&rng) % 40;
            buf = malloc(len ? len : 1);
            for (size_t i = 0; i < len; i++)
                buf[i] = (uint8_t)test_rand(&rng);
        } else {
            buf = encode_cmd(&samples[test_rand(&rng) % (sizeof(samples) / sizeof(samples[0]))], &len);
            unsigned edits = 1 + (unsigned)(test_rand(&rng) % 3);
            for (unsigned e = 0; e < edits; e++)
                buf[test_rand(&rng) % len] = (uint8_t)test_rand(&rng);
            /* Reseal half the time so the structure checks get exercised. */
            if (round % 2 && len >= 4)
                put_le32(buf + len - 4, crc32c(0, buf, len - 4));
        }
        struct kv_command d;
        if (kv_command_decode(buf, len, &d) == KV_OK) {
            uint8_t again[512];
            size_t n;
            assert_int_equal(kv_command_encode(&d, again, sizeof(again), &n), KV_OK);
            assert_int_equal(n, len);
            assert_memory_equal(again, buf, len);
        }
        free(buf);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_compact),
        cmocka_unit_test(test_every_truncation),
        cmocka_unit_test(test_every_corrupted_byte),
        cmocka_unit_test(test_structure),
        cmocka_unit_test(test_encode_rejects),
        cmocka_unit_test(test_fuzz),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
