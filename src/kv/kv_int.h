/* kv_int.h - what the files of src/kv share and nobody else may use: the
 * state machine's layout, the session table, and the bounds-checked byte
 * reader and varint helpers both codecs are built on. */
#ifndef RAFTKV_KV_INT_H
#define RAFTKV_KV_INT_H

#include "kv/kv.h"

#include <string.h>

/* ---- dictionary internals ---- */

/* Bumped by every change: lets a snapshot writer notice it was overtaken. */
uint64_t kv_dict_gen(const struct kv_dict *d);
/* Every B+tree invariant (order, fill, uniform depth, count); for tests. */
bool kv_dict_check(const struct kv_dict *d);

/* ---- sessions ---- */

struct kv_session {
    uint64_t client_id;
    uint64_t last_seq;
    uint64_t last_active_ms; /* log time of the last command */
    uint64_t result_index;
    uint8_t status;          /* enum kv_status of the last command */
    bool has_value;          /* CAS_FAILED with a current value cached */
    uint8_t *value;
    size_t value_len;
    struct kv_session *hnext;
    struct kv_session *prev, *next; /* recency list, least recent first */
};

struct kv_sessions {
    struct kv_session **buckets;
    size_t nbuckets; /* power of two, or 0 before the first session */
    size_t count;
    struct kv_session *head, *tail;
};

void kv_sessions_free(struct kv_sessions *t);
/* A copy of the list (no lookup table: for writing a snapshot). */
int kv_sessions_copy(const struct kv_sessions *from, struct kv_sessions *to);
struct kv_session *kv_sessions_find(const struct kv_sessions *t, uint64_t client_id);
/* Makes room for one more session so that kv_sessions_add cannot fail. */
int kv_sessions_reserve(struct kv_sessions *t);
/* Appends s (not in the table) as the most recently used. */
void kv_sessions_add(struct kv_sessions *t, struct kv_session *s);
void kv_sessions_touch(struct kv_sessions *t, struct kv_session *s, uint64_t now_ms);
void kv_sessions_drop(struct kv_sessions *t, struct kv_session *s);
/* Drops sessions idle for more than ttl_ms at log time now_ms. */
void kv_sessions_expire(struct kv_sessions *t, uint64_t now_ms, uint64_t ttl_ms);
/* Replaces the cached CAS value (NULL: none).  KV_ENOMEM leaves it as it was. */
int kv_session_cache_value(struct kv_session *s, const void *val, size_t len,
                           bool has_value);

/* ---- the state machine ---- */

struct kv {
    struct kv_dict *dict;
    struct kv_sessions sessions;
    struct kv_config cfg;
    uint64_t applied;
    uint64_t log_time_ms;
    uint64_t gen; /* changes of anything but the dictionary */
    size_t n_inc; /* recorded incarnations, sorted by member id */
    struct kv_inc {
        uint64_t id, inc;
    } inc[KV_MAX_INCARNATIONS];
    uint64_t inc_gen; /* changes of the incarnation table (kv_incarnation_gen) */
    size_t n_keep; /* members kept learners, increasing */
    uint64_t keep[KV_MAX_KEEP_LEARNERS];
    uint64_t quota; /* KV_OP_SET_QUOTA; 0 = none */
};

/* Records (inc != 0) or forgets (inc == 0) a member's incarnation; KV_ENOSPC
 * when the table is full. */
int kv_inc_set(struct kv *kv, uint64_t id, uint64_t inc);
/* Marks (keep) or unmarks member id as kept a learner; KV_ENOSPC when the
 * table is full. */
int kv_keep_set(struct kv *kv, uint64_t id, bool keep);

/* A state machine with an empty dictionary; cfg defaults filled in. */
struct kv *kv_new_empty(const struct kv_config *cfg);

/* ---- byte codecs ---- */

#define KV_UVARINT_MAX 10

static inline size_t kv_uvarint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static inline uint8_t *kv_put_uvarint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

/* Reads from [p, end) and latches failure instead of returning codes, so a
 * decoder reads field after field and checks once: after the first error
 * every read yields zeros and nothing is read out of bounds. */
struct kv_reader {
    const uint8_t *p, *end;
    bool bad;
};

static inline size_t kv_rd_left(const struct kv_reader *r)
{
    return r->bad ? 0 : (size_t)(r->end - r->p);
}

static inline uint8_t kv_rd_u8(struct kv_reader *r)
{
    if (kv_rd_left(r) < 1) {
        r->bad = true;
        return 0;
    }
    return *r->p++;
}

static inline const uint8_t *kv_rd_take(struct kv_reader *r, size_t n)
{
    if (kv_rd_left(r) < n) {
        r->bad = true;
        return NULL;
    }
    const uint8_t *p = r->p;
    r->p += n;
    return p;
}

/* Only the shortest encoding of each value is accepted, so every value has
 * exactly one valid byte form. */
static inline uint64_t kv_rd_uvarint(struct kv_reader *r)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < KV_UVARINT_MAX; i++) {
        uint8_t b = kv_rd_u8(r);
        if (r->bad)
            return 0;
        if (i == KV_UVARINT_MAX - 1 && b > 1)
            break;
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            if (b == 0 && i > 0)
                break;
            return v;
        }
    }
    r->bad = true;
    return 0;
}

/* A uvarint length (at most UINT32_MAX) and that many bytes. */
static inline const uint8_t *kv_rd_bytes(struct kv_reader *r, size_t *len)
{
    uint64_t n = kv_rd_uvarint(r);
    if (n > UINT32_MAX || n > kv_rd_left(r)) {
        r->bad = true;
        *len = 0;
        return NULL;
    }
    *len = (size_t)n;
    return kv_rd_take(r, (size_t)n);
}

#endif
