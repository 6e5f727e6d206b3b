/* command.c - the command codec: the bytes a client write becomes in a Raft
 * log entry.  Decoding is strict (one valid byte form per command, checksum,
 * no trailing bytes) because every replica must reach the same verdict on
 * the same bytes, and it never copies: decoded fields point into the input. */
#include "kv/kv_int.h"

#include "common/crc32c.h"
#include "common/endian.h"

#define CRC_LEN 4

/* Fields each op carries; anything else in struct kv_command must be empty. */
static bool op_has_key(enum kv_op op)
{
    return op == KV_OP_SET || op == KV_OP_DEL || op == KV_OP_CAS;
}

/* Cluster bookkeeping: a member id, no session. */
static bool op_has_member(enum kv_op op)
{
    return op == KV_OP_RECORD_INCARNATION || op == KV_OP_KEEP_LEARNER;
}

#define KV_OP_LAST KV_OP_SET_QUOTA

static bool op_has_value(enum kv_op op)
{
    return op == KV_OP_SET || op == KV_OP_CAS;
}

static bool valid_session(uint64_t client_id, uint64_t sequence)
{
    return client_id ? sequence != 0 : sequence == 0;
}

static size_t bytes_len(size_t n)
{
    return kv_uvarint_len(n) + n;
}

size_t kv_command_size(const struct kv_command *c)
{
    bool mem = op_has_member(c->op);
    bool quota = c->op == KV_OP_SET_QUOTA;
    if ((unsigned)c->op > KV_OP_LAST || !valid_session(c->client_id, c->sequence) ||
        (mem && (c->client_id || !c->member_id)) || (!mem && c->member_id) ||
        (c->op != KV_OP_RECORD_INCARNATION && c->incarnation) ||
        (c->op != KV_OP_KEEP_LEARNER && c->keep) || (quota && c->client_id) ||
        (!quota && c->quota_bytes))
        return 0;
    if (c->key_len > UINT32_MAX || c->value_len > UINT32_MAX ||
        c->expected_len > UINT32_MAX)
        return 0;
    bool cas = c->op == KV_OP_CAS;
    if ((!op_has_key(c->op) && c->key_len) ||
        (!op_has_value(c->op) && c->value_len) ||
        (!cas && (c->expected_len || c->expect_absent)) ||
        (cas && c->expect_absent && c->expected_len))
        return 0;

    size_t n = 2 + kv_uvarint_len(c->client_id) + kv_uvarint_len(c->sequence) +
               kv_uvarint_len(c->time_ms);
    if (op_has_key(c->op))
        n += bytes_len(c->key_len);
    if (cas)
        n += 1 + (c->expect_absent ? 0 : bytes_len(c->expected_len));
    if (op_has_value(c->op))
        n += bytes_len(c->value_len);
    if (mem)
        n += kv_uvarint_len(c->member_id);
    if (c->op == KV_OP_RECORD_INCARNATION)
        n += kv_uvarint_len(c->incarnation);
    if (c->op == KV_OP_KEEP_LEARNER)
        n += 1;
    if (quota)
        n += kv_uvarint_len(c->quota_bytes);
    return n + CRC_LEN;
}

static uint8_t *put_bytes(uint8_t *p, const void *b, size_t n)
{
    p = kv_put_uvarint(p, n);
    if (n)
        memcpy(p, b, n);
    return p + n;
}

int kv_command_encode(const struct kv_command *c, void *buf, size_t cap,
                      size_t *len)
{
    size_t need = kv_command_size(c);
    if (!need)
        return KV_EINVAL;
    if (cap < need)
        return KV_ENOSPC;
    uint8_t *start = buf, *p = start;
    *p++ = KV_COMMAND_VERSION;
    *p++ = (uint8_t)c->op;
    p = kv_put_uvarint(p, c->client_id);
    p = kv_put_uvarint(p, c->sequence);
    p = kv_put_uvarint(p, c->time_ms);
    if (op_has_key(c->op))
        p = put_bytes(p, c->key, c->key_len);
    if (c->op == KV_OP_CAS) {
        *p++ = !c->expect_absent;
        if (!c->expect_absent)
            p = put_bytes(p, c->expected, c->expected_len);
    }
    if (op_has_value(c->op))
        p = put_bytes(p, c->value, c->value_len);
    if (op_has_member(c->op))
        p = kv_put_uvarint(p, c->member_id);
    if (c->op == KV_OP_RECORD_INCARNATION)
        p = kv_put_uvarint(p, c->incarnation);
    if (c->op == KV_OP_KEEP_LEARNER)
        *p++ = c->keep;
    if (c->op == KV_OP_SET_QUOTA)
        p = kv_put_uvarint(p, c->quota_bytes);
    put_le32(p, crc32c(0, start, (size_t)(p - start)));
    *len = need;
    return KV_OK;
}

int kv_command_decode(const void *buf, size_t len, struct kv_command *c)
{
    struct kv_reader r = {buf, (const uint8_t *)buf + len, false};
    struct kv_command d = {0};

    /* The version decides the layout, so it is judged before the checksum:
     * a newer writer's entry gets KV_EVERSION rather than "corrupt". */
    uint8_t version = kv_rd_u8(&r);
    if (r.bad)
        return KV_EBADMSG;
    if (version != KV_COMMAND_VERSION)
        return KV_EVERSION;
    if (len < 2 + CRC_LEN ||
        crc32c(0, buf, len - CRC_LEN) != get_le32(r.end - CRC_LEN))
        return KV_EBADMSG;
    r.end -= CRC_LEN;

    uint8_t op = kv_rd_u8(&r);
    if (op > KV_OP_LAST)
        return KV_EBADMSG;
    d.op = (enum kv_op)op;
    d.client_id = kv_rd_uvarint(&r);
    d.sequence = kv_rd_uvarint(&r);
    d.time_ms = kv_rd_uvarint(&r);
    if (op_has_key(d.op))
        d.key = kv_rd_bytes(&r, &d.key_len);
    if (d.op == KV_OP_CAS) {
        uint8_t has_expected = kv_rd_u8(&r);
        if (has_expected > 1)
            return KV_EBADMSG;
        d.expect_absent = !has_expected;
        if (has_expected)
            d.expected = kv_rd_bytes(&r, &d.expected_len);
    }
    if (op_has_value(d.op))
        d.value = kv_rd_bytes(&r, &d.value_len);
    if (op_has_member(d.op)) {
        d.member_id = kv_rd_uvarint(&r);
        if (d.client_id || !d.member_id)
            return KV_EBADMSG;
    }
    if (d.op == KV_OP_RECORD_INCARNATION)
        d.incarnation = kv_rd_uvarint(&r);
    if (d.op == KV_OP_KEEP_LEARNER) {
        uint8_t keep = kv_rd_u8(&r);
        if (keep > 1)
            return KV_EBADMSG;
        d.keep = keep;
    }
    if (d.op == KV_OP_SET_QUOTA && (d.quota_bytes = kv_rd_uvarint(&r), d.client_id))
        return KV_EBADMSG;
    if (r.bad || r.p != r.end || !valid_session(d.client_id, d.sequence))
        return KV_EBADMSG;
    *c = d;
    return KV_OK;
}
