/* helpers.c - shared test support, see helpers.h. */
#include "helpers.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

uint8_t *encode_cmd(const struct kv_command *cmd, size_t *len)
{
    size_t cap = kv_command_size(cmd);
    assert_true(cap > 0);
    uint8_t *buf = malloc(cap);
    assert_non_null(buf);
    assert_int_equal(kv_command_encode(cmd, buf, cap, len), KV_OK);
    assert_int_equal(*len, cap);
    return buf;
}

void apply_cmd(struct kv *kv, uint64_t index, const struct kv_command *cmd,
               struct kv_result *res)
{
    size_t len;
    uint8_t *buf = encode_cmd(cmd, &len);
    assert_int_equal(kv_apply(kv, index, buf, len, res), KV_OK);
    free(buf);
}

static struct kv_command session_cmd(enum kv_op op, const char *key,
                                     uint64_t client, uint64_t seq, uint64_t time_ms)
{
    return (struct kv_command){
        .op = op, .client_id = client, .sequence = seq, .time_ms = time_ms,
        .key = key, .key_len = strlen(key),
    };
}

struct kv_command cmd_set(const char *key, const char *val, uint64_t client,
                          uint64_t seq, uint64_t time_ms)
{
    struct kv_command c = session_cmd(KV_OP_SET, key, client, seq, time_ms);
    c.value = val;
    c.value_len = strlen(val);
    return c;
}

struct kv_command cmd_del(const char *key, uint64_t client, uint64_t seq,
                          uint64_t time_ms)
{
    return session_cmd(KV_OP_DEL, key, client, seq, time_ms);
}

struct kv_command cmd_cas(const char *key, const char *expected, const char *val,
                          uint64_t client, uint64_t seq, uint64_t time_ms)
{
    struct kv_command c = cmd_set(key, val, client, seq, time_ms);
    c.op = KV_OP_CAS;
    c.expect_absent = expected == NULL;
    if (expected) {
        c.expected = expected;
        c.expected_len = strlen(expected);
    }
    return c;
}

uint8_t *snapshot_bytes(const struct kv *kv, size_t *len)
{
    void *p = NULL;
    assert_int_equal(kv_snapshot_to_buffer(kv, &p, len), KV_OK);
    return p;
}

void assert_same_state(const struct kv *a, const struct kv *b)
{
    size_t la, lb;
    uint8_t *sa = snapshot_bytes(a, &la), *sb = snapshot_bytes(b, &lb);
    assert_int_equal(la, lb);
    assert_memory_equal(sa, sb, la);
    free(sa);
    free(sb);
}

void assert_value(const struct kv *kv, const char *key, const char *val)
{
    const void *v;
    size_t vlen;
    int rc = kv_dict_get(kv_dict(kv), key, strlen(key), &v, &vlen);
    if (!val) {
        assert_int_equal(rc, KV_ENOTFOUND);
        return;
    }
    assert_int_equal(rc, KV_OK);
    assert_int_equal(vlen, strlen(val));
    assert_memory_equal(v, val, vlen);
}
