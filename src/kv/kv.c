/* kv.c - the state machine: applying committed log entries to the dictionary
 * under the client-session rules, deterministically.  Nothing here may
 * depend on anything but the entries applied (no clock, no randomness, no
 * addresses), or replicas would drift apart. */
#include "kv/kv_int.h"

#include <stdlib.h>

const char *kv_strerror(int err)
{
    switch (err) {
    case KV_OK: return "ok";
    case KV_ENOMEM: return "out of memory";
    case KV_EINVAL: return "invalid argument";
    case KV_EBADMSG: return "malformed or corrupt data";
    case KV_EVERSION: return "unsupported format version";
    case KV_ENOSPC: return "buffer too small";
    case KV_ENOTFOUND: return "not found";
    case KV_EINDEX: return "log index already applied";
    case KV_EBUSY: return "state changed during snapshot";
    }
    return "unknown error";
}

const char *kv_status_name(enum kv_status s)
{
    switch (s) {
    case KV_STATUS_OK: return "OK";
    case KV_STATUS_NOT_FOUND: return "NOT_FOUND";
    case KV_STATUS_CAS_FAILED: return "CAS_FAILED";
    case KV_STATUS_INVALID: return "INVALID";
    case KV_STATUS_STALE: return "STALE";
    case KV_STATUS_SESSION_EXPIRED: return "SESSION_EXPIRED";
    case KV_STATUS_NO_SPACE: return "NO_SPACE";
    }
    return "UNKNOWN";
}

struct kv *kv_new_empty(const struct kv_config *cfg)
{
    struct kv *kv = calloc(1, sizeof(*kv));
    if (!kv)
        return NULL;
    if (cfg)
        kv->cfg = *cfg;
    if (!kv->cfg.session_ttl_ms)
        kv->cfg.session_ttl_ms = KV_SESSION_TTL_DEFAULT_MS;
    if (!kv->cfg.max_sessions)
        kv->cfg.max_sessions = KV_MAX_SESSIONS_DEFAULT;
    return kv;
}

struct kv *kv_new(const struct kv_config *cfg)
{
    struct kv *kv = kv_new_empty(cfg);
    if (kv && !(kv->dict = kv_dict_new())) {
        free(kv);
        return NULL;
    }
    return kv;
}

void kv_free(struct kv *kv)
{
    if (!kv)
        return;
    kv_dict_free(kv->dict);
    kv_sessions_free(&kv->sessions);
    free(kv);
}

struct kv *kv_freeze(struct kv *kv)
{
    struct kv *v = malloc(sizeof(*v));
    if (!v)
        return NULL;
    *v = *kv;
    v->dict = NULL;
    if (kv_sessions_copy(&kv->sessions, &v->sessions) != KV_OK) {
        free(v);
        return NULL;
    }
    if (!(v->dict = kv_dict_freeze(kv->dict))) {
        kv_free(v);
        return NULL;
    }
    return v;
}

struct kv_garbage *kv_thaw(struct kv *kv, struct kv *view)
{
    if (!view)
        return NULL;
    struct kv_garbage *g = kv_dict_thaw(kv->dict, view->dict);
    view->dict = NULL;
    kv_free(view);
    return g;
}

uint64_t kv_applied_index(const struct kv *kv)
{
    return kv->applied;
}

uint64_t kv_log_time_ms(const struct kv *kv)
{
    return kv->log_time_ms;
}

size_t kv_session_count(const struct kv *kv)
{
    return kv->sessions.count;
}

static size_t inc_pos(const struct kv *kv, uint64_t id)
{
    size_t i = 0;
    while (i < kv->n_inc && kv->inc[i].id < id)
        i++;
    return i;
}

uint64_t kv_incarnation(const struct kv *kv, uint64_t member_id)
{
    size_t i = inc_pos(kv, member_id);
    return i < kv->n_inc && kv->inc[i].id == member_id ? kv->inc[i].inc : 0;
}

int kv_inc_set(struct kv *kv, uint64_t id, uint64_t inc)
{
    size_t i = inc_pos(kv, id);
    bool found = i < kv->n_inc && kv->inc[i].id == id;
    if (found && inc) {
        kv->inc[i].inc = inc;
    } else if (found) {
        memmove(&kv->inc[i], &kv->inc[i + 1], (kv->n_inc - i - 1) * sizeof(kv->inc[0]));
        kv->n_inc--;
    } else if (inc) {
        if (kv->n_inc == KV_MAX_INCARNATIONS)
            return KV_ENOSPC;
        memmove(&kv->inc[i + 1], &kv->inc[i], (kv->n_inc - i) * sizeof(kv->inc[0]));
        kv->inc[i] = (struct kv_inc){id, inc};
        kv->n_inc++;
    }
    kv->gen++;
    kv->inc_gen++;
    return KV_OK;
}

uint64_t kv_incarnation_gen(const struct kv *kv) { return kv->inc_gen; }

size_t kv_incarnation_list(const struct kv *kv, uint64_t *ids, uint64_t *incs, size_t max)
{
    size_t n = kv->n_inc < max ? kv->n_inc : max;
    for (size_t i = 0; i < n; i++) {
        ids[i] = kv->inc[i].id;
        incs[i] = kv->inc[i].inc;
    }
    return n;
}

static size_t keep_pos(const struct kv *kv, uint64_t id)
{
    size_t i = 0;
    while (i < kv->n_keep && kv->keep[i] < id)
        i++;
    return i;
}

bool kv_keep_learner(const struct kv *kv, uint64_t member_id)
{
    size_t i = keep_pos(kv, member_id);
    return i < kv->n_keep && kv->keep[i] == member_id;
}

int kv_keep_set(struct kv *kv, uint64_t id, bool keep)
{
    size_t i = keep_pos(kv, id);
    bool found = i < kv->n_keep && kv->keep[i] == id;
    if (found && !keep) {
        memmove(&kv->keep[i], &kv->keep[i + 1], (kv->n_keep - i - 1) * sizeof(kv->keep[0]));
        kv->n_keep--;
    } else if (!found && keep) {
        if (kv->n_keep == KV_MAX_KEEP_LEARNERS)
            return KV_ENOSPC;
        memmove(&kv->keep[i + 1], &kv->keep[i], (kv->n_keep - i) * sizeof(kv->keep[0]));
        kv->keep[i] = id;
        kv->n_keep++;
    }
    kv->gen++;
    return KV_OK;
}

const struct kv_dict *kv_dict(const struct kv *kv)
{
    return kv->dict;
}

int kv_skip(struct kv *kv, uint64_t index)
{
    if (index <= kv->applied)
        return KV_EINDEX;
    kv->applied = index;
    kv->gen++;
    return KV_OK;
}

static bool value_equals(const void *a, size_t alen, const void *b, size_t blen)
{
    return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

uint64_t kv_quota(const struct kv *kv) { return kv->quota; }

/* Would setting key to a value of value_len bytes grow the dictionary past
 * the quota?  Shrinking or same-size writes always pass, so a full dataset
 * can be cut back; the lookup is skipped when even a new key would fit. */
static bool over_quota(const struct kv *kv, const void *key, size_t key_len, size_t value_len)
{
    uint64_t bytes = kv_dict_data_bytes(kv->dict), add = (uint64_t)key_len + value_len;
    if (!kv->quota || bytes + add <= kv->quota)
        return false;
    const void *cur;
    size_t curlen;
    uint64_t old = kv_dict_get(kv->dict, key, key_len, &cur, &curlen) == KV_OK
                       ? (uint64_t)key_len + curlen
                       : 0;
    return add > old && bytes - old + add > kv->quota;
}

/* SET's and a passing CAS's write, unless over the quota. */
static int put(struct kv *kv, const struct kv_command *c, struct kv_result *res)
{
    if (over_quota(kv, c->key, c->key_len, c->value_len)) {
        res->status = KV_STATUS_NO_SPACE;
        return KV_OK;
    }
    return kv_dict_set(kv->dict, c->key, c->key_len, c->value, c->value_len);
}

/* Runs the command against the dictionary.  KV_ENOMEM only with the
 * dictionary unchanged. */
static int execute(struct kv *kv, const struct kv_command *c, struct kv_result *res)
{
    const void *cur;
    size_t curlen;
    int rc;
    switch (c->op) {
    case KV_OP_NOOP:
        return KV_OK;
    case KV_OP_SET:
        return put(kv, c, res);
    case KV_OP_DEL:
        rc = kv_dict_del(kv->dict, c->key, c->key_len);
        if (rc == KV_ENOTFOUND)
            res->status = KV_STATUS_NOT_FOUND;
        return rc == KV_ENOMEM ? rc : KV_OK;
    case KV_OP_CAS:
        rc = kv_dict_get(kv->dict, c->key, c->key_len, &cur, &curlen);
        if ((rc == KV_OK && !c->expect_absent &&
             value_equals(cur, curlen, c->expected, c->expected_len)) ||
            (rc == KV_ENOTFOUND && c->expect_absent))
            return put(kv, c, res);
        res->status = KV_STATUS_CAS_FAILED;
        res->current_absent = rc == KV_ENOTFOUND;
        if (rc == KV_OK) {
            res->current = cur;
            res->current_len = curlen;
        }
        return KV_OK;
    case KV_OP_RECORD_INCARNATION:
        /* A full table is a deterministic outcome, not a node failure. */
        if (kv_inc_set(kv, c->member_id, c->incarnation) != KV_OK)
            res->status = KV_STATUS_INVALID;
        return KV_OK;
    case KV_OP_KEEP_LEARNER:
        if (kv_keep_set(kv, c->member_id, c->keep) != KV_OK)
            res->status = KV_STATUS_INVALID;
        return KV_OK;
    case KV_OP_SET_QUOTA:
        kv->quota = c->quota_bytes;
        return KV_OK;
    }
    return KV_OK;
}

static void cached_result(const struct kv_session *s, struct kv_result *res)
{
    res->status = (enum kv_status)s->status;
    res->index = s->result_index;
    res->duplicate = true;
    if (res->status == KV_STATUS_CAS_FAILED) {
        res->current_absent = !s->has_value;
        res->current = s->value;
        res->current_len = s->value_len;
    }
}

/* Applies a decoded command with the session rules.  Everything that can
 * fail comes first; expiry, eviction and the session update come after, so
 * KV_ENOMEM leaves the state exactly as it was. */
static int apply_command(struct kv *kv, uint64_t index, const struct kv_command *c,
                         struct kv_result *res)
{
    uint64_t now = c->time_ms > kv->log_time_ms ? c->time_ms : kv->log_time_ms;
    struct kv_session *s = NULL, *fresh = NULL;
    bool applies = true;
    if (c->client_id) {
        s = kv_sessions_find(&kv->sessions, c->client_id);
        if (s && now - s->last_active_ms > kv->cfg.session_ttl_ms)
            s = NULL; /* idle too long: the expiry below removes it */
        if (s && c->sequence < s->last_seq) {
            res->status = KV_STATUS_STALE;
            s = NULL;
            applies = false;
        } else if (s && c->sequence == s->last_seq) {
            cached_result(s, res);
            applies = false;
        } else if (!s && c->sequence != 1) {
            res->status = KV_STATUS_SESSION_EXPIRED;
            applies = false;
        } else if (!s) {
            if (kv_sessions_reserve(&kv->sessions) != KV_OK ||
                !(s = fresh = calloc(1, sizeof(*s))))
                return KV_ENOMEM;
            s->client_id = c->client_id;
        }
    }

    if (applies) {
        int rc = execute(kv, c, res);
        /* A failed CAS changed nothing, so caching its value may still fail. */
        if (rc == KV_OK && s)
            rc = kv_session_cache_value(s, res->current, res->current_len,
                                        res->status == KV_STATUS_CAS_FAILED &&
                                            !res->current_absent);
        if (rc != KV_OK) {
            free(fresh);
            return rc;
        }
    }

    kv->log_time_ms = now;
    kv_sessions_expire(&kv->sessions, now, kv->cfg.session_ttl_ms);
    if (fresh) {
        /* Evict before adding: the newcomer must not be the victim. */
        while (kv->sessions.count >= kv->cfg.max_sessions)
            kv_sessions_drop(&kv->sessions, kv->sessions.head);
        kv_sessions_add(&kv->sessions, fresh);
    }
    if (s) {
        if (applies) {
            s->last_seq = c->sequence;
            s->result_index = index;
            s->status = (uint8_t)res->status;
            if (s->has_value)
                res->current = s->value;
        }
        /* A retry is activity too: it keeps the session alive. */
        kv_sessions_touch(&kv->sessions, s, now);
    }
    return KV_OK;
}

int kv_apply(struct kv *kv, uint64_t index, const void *entry, size_t len,
             struct kv_result *res)
{
    if (index <= kv->applied)
        return KV_EINDEX;
    memset(res, 0, sizeof(*res));
    res->index = index;

    struct kv_command c;
    if (kv_command_decode(entry, len, &c) != KV_OK) {
        res->status = KV_STATUS_INVALID;
    } else {
        int rc = apply_command(kv, index, &c, res);
        if (rc != KV_OK)
            return rc;
    }
    kv->applied = index;
    kv->gen++;
    return KV_OK;
}
