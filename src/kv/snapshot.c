/* snapshot.c - the snapshot codec: a cursor that streams the whole state
 * (applied index, log time, session table, every pair in key order, the
 * recorded incarnations, the members kept learners, the quota) in
 * chunks of any size, and a loader that trusts nothing in the bytes and
 * builds a fresh state machine, so a bad snapshot never touches the current
 * one. */
#include "kv/kv_int.h"

#include "common/crc32c.h"
#include "common/endian.h"

#include <stdlib.h>

static const uint8_t magic[4] = {'R', 'K', 'V', 'S'};

#define HEADER_LEN (4 + 4 + 8 * 4)
#define TRAILER_LEN 4
#define SESSION_HAS_VALUE 1

enum phase { PH_HEADER, PH_SESSIONS, PH_PAIRS, PH_INCARNATIONS, PH_KEEP, PH_QUOTA, PH_TRAILER,
             PH_DONE };

/* Output of a record waits as up to four byte ranges, copied out as chunk
 * space allows; this is what lets a chunk end anywhere, mid-value included. */
struct seg {
    const uint8_t *p;
    size_t len;
};

struct kv_snapshot_writer {
    const struct kv *kv;
    uint64_t kv_gen, dict_gen;
    enum phase phase;
    const struct kv_session *session;
    struct kv_iter it;
    uint32_t crc;
    struct seg seg[4];
    unsigned nseg, cur;
    uint8_t stage[HEADER_LEN + 2 * KV_UVARINT_MAX]; /* >= any record's fixed part */
    uint8_t stage2[KV_UVARINT_MAX];
    uint8_t incs[KV_UVARINT_MAX * (1 + 2 * KV_MAX_INCARNATIONS)];
    uint8_t keeps[KV_UVARINT_MAX * (1 + KV_MAX_KEEP_LEARNERS)];
};

struct kv_snapshot_writer *kv_snapshot_writer_new(const struct kv *kv)
{
    struct kv_snapshot_writer *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->kv = kv;
    w->kv_gen = kv->gen;
    w->dict_gen = kv_dict_gen(kv->dict);
    kv_dict_seek(kv->dict, &w->it, NULL, 0, false);
    w->session = kv->sessions.head;
    return w;
}

void kv_snapshot_writer_free(struct kv_snapshot_writer *w)
{
    free(w);
}

static void add_seg(struct kv_snapshot_writer *w, const uint8_t *p, size_t len)
{
    w->seg[w->nseg++] = (struct seg){p, len};
}

static void put_header(struct kv_snapshot_writer *w)
{
    const struct kv *kv = w->kv;
    uint8_t *p = w->stage;
    memcpy(p, magic, 4);
    put_le32(p + 4, KV_SNAPSHOT_VERSION);
    put_le64(p + 8, kv->applied);
    put_le64(p + 16, kv->log_time_ms);
    put_le64(p + 24, kv->sessions.count);
    put_le64(p + 32, kv_dict_count(kv->dict));
    add_seg(w, w->stage, HEADER_LEN);
}

static void put_session(struct kv_snapshot_writer *w, const struct kv_session *s)
{
    uint8_t *p = w->stage;
    p = kv_put_uvarint(p, s->client_id);
    p = kv_put_uvarint(p, s->last_seq);
    p = kv_put_uvarint(p, s->last_active_ms);
    p = kv_put_uvarint(p, s->result_index);
    *p++ = s->status;
    *p++ = s->has_value ? SESSION_HAS_VALUE : 0;
    if (s->has_value)
        p = kv_put_uvarint(p, s->value_len);
    add_seg(w, w->stage, (size_t)(p - w->stage));
    if (s->has_value)
        add_seg(w, s->value, s->value_len);
}

/* Queues the next record's bytes; false once the stream is complete. */
static bool refill(struct kv_snapshot_writer *w)
{
    const void *k, *v;
    size_t kl, vl;
    w->nseg = w->cur = 0;
    switch (w->phase) {
    case PH_HEADER:
        put_header(w);
        w->phase = PH_SESSIONS;
        return true;
    case PH_SESSIONS:
        if (w->session) {
            put_session(w, w->session);
            w->session = w->session->next;
            return true;
        }
        w->phase = PH_PAIRS;
        /* fall through */
    case PH_PAIRS:
        if (kv_iter_next(&w->it, &k, &kl, &v, &vl)) {
            add_seg(w, w->stage, (size_t)(kv_put_uvarint(w->stage, kl) - w->stage));
            add_seg(w, k, kl);
            add_seg(w, w->stage2, (size_t)(kv_put_uvarint(w->stage2, vl) - w->stage2));
            add_seg(w, v, vl);
            return true;
        }
        w->phase = PH_INCARNATIONS;
        /* fall through */
    case PH_INCARNATIONS: {
        uint8_t *p = kv_put_uvarint(w->incs, w->kv->n_inc);
        for (size_t i = 0; i < w->kv->n_inc; i++) {
            p = kv_put_uvarint(p, w->kv->inc[i].id);
            p = kv_put_uvarint(p, w->kv->inc[i].inc);
        }
        add_seg(w, w->incs, (size_t)(p - w->incs));
        w->phase = PH_KEEP;
        return true;
    }
    case PH_KEEP: {
        uint8_t *p = kv_put_uvarint(w->keeps, w->kv->n_keep);
        for (size_t i = 0; i < w->kv->n_keep; i++)
            p = kv_put_uvarint(p, w->kv->keep[i]);
        add_seg(w, w->keeps, (size_t)(p - w->keeps));
        w->phase = PH_QUOTA;
        return true;
    }
    case PH_QUOTA: {
        uint8_t *p = kv_put_uvarint(w->stage2, w->kv->quota);
        add_seg(w, w->stage2, (size_t)(p - w->stage2));
        w->phase = PH_TRAILER;
        return true;
    }
    case PH_TRAILER:
        put_le32(w->stage, w->crc);
        add_seg(w, w->stage, TRAILER_LEN);
        w->phase = PH_DONE;
        return true;
    case PH_DONE:
        break;
    }
    return false;
}

ssize_t kv_snapshot_writer_next(struct kv_snapshot_writer *w, void *buf, size_t cap)
{
    if (w->kv->gen != w->kv_gen || kv_dict_gen(w->kv->dict) != w->dict_gen)
        return KV_EBUSY;
    uint8_t *out = buf;
    size_t n = 0;
    while (n < cap) {
        if (w->cur == w->nseg) {
            if (!refill(w))
                break;
            continue;
        }
        struct seg *s = &w->seg[w->cur];
        size_t take = s->len < cap - n ? s->len : cap - n;
        if (take) {
            memcpy(out + n, s->p, take);
            /* The trailer is the checksum itself; extending over it is
             * harmless because nothing reads w->crc afterwards. */
            w->crc = crc32c(w->crc, s->p, take);
        }
        n += take;
        s->p += take;
        s->len -= take;
        if (!s->len)
            w->cur++;
    }
    return (ssize_t)n;
}

struct growbuf {
    uint8_t *p;
    size_t n, cap;
};

static int growbuf_write(void *ctx, const void *buf, size_t len)
{
    struct growbuf *b = ctx;
    if (b->n + len > b->cap) {
        size_t cap = b->cap ? b->cap : 1 << 16;
        while (cap < b->n + len)
            cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p)
            return KV_ENOMEM;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, buf, len);
    b->n += len;
    return KV_OK;
}

int kv_snapshot_to_buffer(const struct kv *kv, void **buf, size_t *len)
{
    struct growbuf b = {0};
    int rc = kv_snapshot_write(kv, growbuf_write, &b);
    if (rc != KV_OK) {
        free(b.p);
        return rc;
    }
    *buf = b.p;
    *len = b.n;
    return KV_OK;
}

int kv_snapshot_write(const struct kv *kv, kv_write_fn fn, void *ctx)
{
    enum { CHUNK = 64 * 1024 };
    struct kv_snapshot_writer *w = kv_snapshot_writer_new(kv);
    uint8_t *buf = malloc(CHUNK);
    int rc = KV_OK;
    if (!w || !buf) {
        rc = KV_ENOMEM;
    } else {
        ssize_t n;
        while ((n = kv_snapshot_writer_next(w, buf, CHUNK)) > 0)
            if ((rc = fn(ctx, buf, (size_t)n)) != 0)
                break;
        if (n < 0)
            rc = (int)n;
    }
    free(buf);
    kv_snapshot_writer_free(w);
    return rc;
}

static int load_sessions(struct kv *kv, struct kv_reader *r, uint64_t count)
{
    uint64_t prev_active = 0;
    for (uint64_t i = 0; i < count; i++) {
        uint64_t id = kv_rd_uvarint(r), seq = kv_rd_uvarint(r);
        uint64_t active = kv_rd_uvarint(r), index = kv_rd_uvarint(r);
        uint8_t status = kv_rd_u8(r), flags = kv_rd_u8(r);
        const uint8_t *val = NULL;
        size_t vlen = 0;
        bool has_value = flags & SESSION_HAS_VALUE;
        if (has_value)
            val = kv_rd_bytes(r, &vlen);
        /* Only what apply could have produced: results that are cached,
         * a value only with CAS_FAILED, recency order matching log time. */
        if (r->bad || !id || !seq || index > kv->applied || flags > SESSION_HAS_VALUE ||
            (status != KV_STATUS_OK && status != KV_STATUS_NOT_FOUND &&
             status != KV_STATUS_CAS_FAILED && status != KV_STATUS_NO_SPACE) ||
            (has_value && status != KV_STATUS_CAS_FAILED) ||
            active < prev_active || active > kv->log_time_ms ||
            kv_sessions_find(&kv->sessions, id))
            return KV_EBADMSG;
        prev_active = active;

        struct kv_session *s;
        if (kv_sessions_reserve(&kv->sessions) != KV_OK || !(s = calloc(1, sizeof(*s))))
            return KV_ENOMEM;
        if (kv_session_cache_value(s, val, vlen, has_value) != KV_OK) {
            free(s);
            return KV_ENOMEM;
        }
        s->client_id = id;
        s->last_seq = seq;
        s->last_active_ms = active;
        s->result_index = index;
        s->status = status;
        kv_sessions_add(&kv->sessions, s);
    }
    return KV_OK;
}

static int key_order(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    size_t m = alen < blen ? alen : blen;
    int c = m ? memcmp(a, b, m) : 0;
    return c ? c : (alen > blen) - (alen < blen);
}

static int load_pairs(struct kv *kv, struct kv_reader *r, uint64_t count)
{
    const uint8_t *prev = NULL;
    size_t prevlen = 0;
    for (uint64_t i = 0; i < count; i++) {
        size_t kl, vl;
        const uint8_t *k = kv_rd_bytes(r, &kl);
        const uint8_t *v = kv_rd_bytes(r, &vl);
        if (r->bad || (i > 0 && key_order(k, kl, prev, prevlen) <= 0))
            return KV_EBADMSG;
        int rc = kv_dict_set(kv->dict, k, kl, v, vl);
        if (rc != KV_OK)
            return rc;
        prev = k;
        prevlen = kl;
    }
    return KV_OK;
}

/* Strictly increasing member ids, no zero incarnation: one byte form. */
static int load_incarnations(struct kv *kv, struct kv_reader *r)
{
    uint64_t n = kv_rd_uvarint(r), prev = 0;
    if (n > KV_MAX_INCARNATIONS)
        return KV_EBADMSG;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t id = kv_rd_uvarint(r), inc = kv_rd_uvarint(r);
        if (r->bad || id <= prev || !inc)
            return KV_EBADMSG;
        kv->inc[kv->n_inc++] = (struct kv_inc){id, inc};
        prev = id;
    }
    return r->bad ? KV_EBADMSG : KV_OK;
}

/* Strictly increasing non-zero member ids. */
static int load_keep(struct kv *kv, struct kv_reader *r)
{
    uint64_t n = kv_rd_uvarint(r), prev = 0;
    if (n > KV_MAX_KEEP_LEARNERS)
        return KV_EBADMSG;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t id = kv_rd_uvarint(r);
        if (r->bad || id <= prev)
            return KV_EBADMSG;
        kv->keep[kv->n_keep++] = id;
        prev = id;
    }
    return r->bad ? KV_EBADMSG : KV_OK;
}

int kv_snapshot_load(const void *buf, size_t len, const struct kv_config *cfg,
                     struct kv **out)
{
    const uint8_t *b = buf;
    if (len < HEADER_LEN + TRAILER_LEN || memcmp(b, magic, 4) != 0)
        return KV_EBADMSG;
    uint32_t version = get_le32(b + 4);
    if (version < 1 || version > KV_SNAPSHOT_VERSION)
        return KV_EVERSION;
    if (crc32c(0, b, len - TRAILER_LEN) != get_le32(b + len - TRAILER_LEN))
        return KV_EBADMSG;

    struct kv *kv = kv_new(cfg);
    if (!kv)
        return KV_ENOMEM;
    kv->applied = get_le64(b + 8);
    kv->log_time_ms = get_le64(b + 16);
    uint64_t nsessions = get_le64(b + 24), nkeys = get_le64(b + 32);
    struct kv_reader r = {b + HEADER_LEN, b + len - TRAILER_LEN, false};
    int rc = load_sessions(kv, &r, nsessions);
    if (rc == KV_OK)
        rc = load_pairs(kv, &r, nkeys);
    if (rc == KV_OK && version >= 2)
        rc = load_incarnations(kv, &r);
    if (rc == KV_OK && version >= 3)
        rc = load_keep(kv, &r);
    if (rc == KV_OK && version >= 4) {
        kv->quota = kv_rd_uvarint(&r);
        rc = r.bad ? KV_EBADMSG : KV_OK;
    }
    if (rc == KV_OK && r.p != r.end)
        rc = KV_EBADMSG;
    if (rc != KV_OK) {
        kv_free(kv);
        return rc;
    }
    *out = kv;
    return KV_OK;
}
