/* session.c - the client session table: client_id -> last applied sequence
 * and its result, in a chained hash table for lookup plus a recency list.
 * Log time only grows, so the list is also ordered by last activity: expiry
 * and eviction take from its head, and a snapshot written in list order
 * rebuilds the same table on every replica. */
#include "kv/kv_int.h"

#include <stdlib.h>

static size_t bucket(const struct kv_sessions *t, uint64_t client_id)
{
    /* Fibonacci hashing: client ids are often small counters. */
    return (size_t)((client_id * 0x9e3779b97f4a7c15ull) >> 32) & (t->nbuckets - 1);
}

static void free_session(struct kv_session *s)
{
    free(s->value);
    free(s);
}

void kv_sessions_free(struct kv_sessions *t)
{
    struct kv_session *s = t->head;
    while (s) {
        struct kv_session *next = s->next;
        free_session(s);
        s = next;
    }
    free(t->buckets);
    memset(t, 0, sizeof(*t));
}

int kv_sessions_copy(const struct kv_sessions *from, struct kv_sessions *to)
{
    memset(to, 0, sizeof(*to));
    for (const struct kv_session *s = from->head; s; s = s->next) {
        struct kv_session *c = malloc(sizeof(*c));
        uint8_t *v = s->has_value && s->value_len ? malloc(s->value_len) : NULL;
        if (!c || (s->has_value && s->value_len && !v)) {
            free(c);
            free(v);
            kv_sessions_free(to);
            return KV_ENOMEM;
        }
        *c = *s;
        c->value = v;
        if (v)
            memcpy(v, s->value, s->value_len);
        c->hnext = c->next = NULL;
        c->prev = to->tail;
        if (to->tail)
            to->tail->next = c;
        else
            to->head = c;
        to->tail = c;
        to->count++;
    }
    return KV_OK;
}

struct kv_session *kv_sessions_find(const struct kv_sessions *t, uint64_t client_id)
{
    if (!t->nbuckets)
        return NULL;
    struct kv_session *s = t->buckets[bucket(t, client_id)];
    while (s && s->client_id != client_id)
        s = s->hnext;
    return s;
}

int kv_sessions_reserve(struct kv_sessions *t)
{
    if (t->count < t->nbuckets)
        return KV_OK;
    size_t n = t->nbuckets ? t->nbuckets * 2 : 64;
    struct kv_session **b = calloc(n, sizeof(*b));
    if (!b)
        return KV_ENOMEM;
    free(t->buckets);
    t->buckets = b;
    t->nbuckets = n;
    for (struct kv_session *s = t->head; s; s = s->next) {
        size_t i = bucket(t, s->client_id);
        s->hnext = b[i];
        b[i] = s;
    }
    return KV_OK;
}

static void list_unlink(struct kv_sessions *t, struct kv_session *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        t->head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    else
        t->tail = s->prev;
    s->prev = s->next = NULL;
}

static void list_append(struct kv_sessions *t, struct kv_session *s)
{
    s->prev = t->tail;
    s->next = NULL;
    if (t->tail)
        t->tail->next = s;
    else
        t->head = s;
    t->tail = s;
}

void kv_sessions_add(struct kv_sessions *t, struct kv_session *s)
{
    size_t i = bucket(t, s->client_id);
    s->hnext = t->buckets[i];
    t->buckets[i] = s;
    list_append(t, s);
    t->count++;
}

void kv_sessions_touch(struct kv_sessions *t, struct kv_session *s, uint64_t now_ms)
{
    s->last_active_ms = now_ms;
    if (t->tail != s) {
        list_unlink(t, s);
        list_append(t, s);
    }
}

void kv_sessions_drop(struct kv_sessions *t, struct kv_session *s)
{
    struct kv_session **pp = &t->buckets[bucket(t, s->client_id)];
    while (*pp != s)
        pp = &(*pp)->hnext;
    *pp = s->hnext;
    list_unlink(t, s);
    t->count--;
    free_session(s);
}

void kv_sessions_expire(struct kv_sessions *t, uint64_t now_ms, uint64_t ttl_ms)
{
    while (t->head && now_ms - t->head->last_active_ms > ttl_ms)
        kv_sessions_drop(t, t->head);
}

int kv_session_cache_value(struct kv_session *s, const void *val, size_t len,
                           bool has_value)
{
    uint8_t *copy = NULL;
    if (has_value) {
        /* One byte at least so that an empty value is a non-NULL copy. */
        copy = malloc(len ? len : 1);
        if (!copy)
            return KV_ENOMEM;
        if (len)
            memcpy(copy, val, len);
    }
    free(s->value);
    s->value = copy;
    s->value_len = has_value ? len : 0;
    s->has_value = has_value;
    return KV_OK;
}
