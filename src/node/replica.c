/* replica.c - drives the consensus core against the store and the
 * key-value state machine: recovery at start-up, the ready/advance loop,
 * messages held until their batch is durable, and automatic snapshots.
 *
 * Ordering is the whole job here.  The store does its writes in the order
 * they are queued and reports durability as a sequence number; a message the
 * core marked "after persist" is released only when the store's sequence has
 * passed every write queued before it.
 */
#include "node/replica.h"

#include "common/log.h"
#include "store/store.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct held_msg {
    uint64_t seq; /* store operation that must be durable first */
    struct raft_msg msg;
};

struct replica {
    struct replica_config cfg;
    struct replica_hooks hooks;
    struct raft *raft;
    struct store *st;
    struct kv *kv;

    uint64_t last_seq; /* newest store operation queued */
    uint64_t done_seq; /* newest store operation known durable */

    struct held_msg *held; /* FIFO of after-persist messages */
    size_t n_held, cap_held;

    struct store_record *recs; /* reused per batch: raft entries as store records */
    size_t cap_recs;

    /* a snapshot being written: taken by the core once durable */
    bool snap_saving;
    uint64_t snap_seq;
    raft_index snap_index;
    raft_index last_snap_index;

    int err;
    char errmsg[256];
};

static void fail(struct replica *rp, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(struct replica *rp, int err, const char *fmt, ...)
{
    if (rp->err)
        return; /* keep the first cause */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rp->errmsg, sizeof(rp->errmsg), fmt, ap);
    va_end(ap);
    rp->err = err ? err : -EIO;
    log_event(LOG_ERR, "failed", NULL, "%s; this node takes no more writes and leaves the "
              "cluster's quorum until restarted", rp->errmsg);
    /* From here on the core is frozen (no ready round, no tick, no input):
     * a leader that cannot write its log must not keep heartbeating and
     * look alive, and a follower must not pile up entries it cannot store.
     * Tell the owner it leads nothing any more, so watchers, the proxy and
     * STATUS= move on at once instead of after a timeout. */
    rp->hooks.soft_state(rp->hooks.arg, RAFT_NONE, RAFT_FOLLOWER, raft_current_term(rp->raft));
}

static void store_log(void *arg, enum store_log_level level, const char *msg)
{
    (void)arg;
    if (level == STORE_LOG_ERROR)
        log_error("store: %s", msg);
    else if (level == STORE_LOG_WARN)
        log_warn("store: %s", msg);
    else
        log_info("store: %s", msg);
}

static void meta_to_store(const struct raft_snapshot_meta *in, struct store_snap_meta *out)
{
    memset(out, 0, sizeof(*out));
    out->index = in->index;
    out->term = in->term;
    out->conf_len = (uint32_t)raft_conf_encode(&in->conf, out->conf);
}

static int meta_from_store(const struct store_snap_meta *in, struct raft_snapshot_meta *out)
{
    memset(out, 0, sizeof(*out));
    out->index = in->index;
    out->term = in->term;
    return raft_conf_decode(in->conf, in->conf_len, &out->conf);
}

/* ---- start-up --------------------------------------------------------- */

static void recovering(struct replica *rp, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void recovering(struct replica *rp, const char *fmt, ...)
{
    if (!rp->hooks.recovering)
        return;
    char buf[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    rp->hooks.recovering(rp->hooks.arg, buf);
}

static void store_recover_progress(void *arg, size_t done, size_t total)
{
    recovering(arg, "verified log segment %zu of %zu", done, total);
}

static int restore(struct replica *rp, char *err, size_t errlen)
{
    struct store_hard_state shs;
    store_hard_state(rp->st, &shs);
    struct raft_hard_state hs = {.term = shs.term, .vote = shs.vote};

    struct kv_config kvc = {.session_ttl_ms = rp->cfg.session_ttl_ms,
                            .max_sessions = rp->cfg.max_sessions};
    struct raft_snapshot_meta snap;
    bool have_snap = false;
    struct store_snap_meta sm;
    if (store_snapshot_meta(rp->st, &sm)) {
        void *data = NULL;
        size_t len = 0;
        recovering(rp, "loading the snapshot at index %llu", (unsigned long long)sm.index);
        int rv = store_snapshot_load(rp->st, &sm, &data, &len);
        if (rv < 0) {
            snprintf(err, errlen, "cannot read snapshot: %s", strerror(-rv));
            return rv;
        }
        if (meta_from_store(&sm, &snap) != 0) {
            free(data);
            snprintf(err, errlen, "snapshot at index %llu has an unreadable membership",
                     (unsigned long long)sm.index);
            return -EBADMSG;
        }
        struct kv *kv = NULL;
        rv = kv_snapshot_load(data, len, &kvc, &kv);
        free(data);
        if (rv != KV_OK) {
            snprintf(err, errlen, "snapshot at index %llu does not load: %s",
                     (unsigned long long)sm.index, kv_strerror(rv));
            return -EBADMSG;
        }
        kv_free(rp->kv);
        rp->kv = kv;
        have_snap = true;
        rp->last_snap_index = snap.index;
    }

    uint64_t lo = (have_snap ? snap.index : 0) + 1;
    uint64_t hi = store_last_index(rp->st);
    struct store_record *recs = NULL;
    size_t n = 0;
    if (hi >= lo) {
        recovering(rp, "reading log entries %llu..%llu", (unsigned long long)lo,
                   (unsigned long long)hi);
        int rv = store_read(rp->st, lo, hi, &recs, &n);
        if (rv < 0) {
            snprintf(err, errlen, "cannot read log %llu..%llu: %s", (unsigned long long)lo,
                     (unsigned long long)hi, strerror(-rv));
            return rv;
        }
    }
    struct raft_entry *ents = n ? calloc(n, sizeof(*ents)) : NULL;
    if (n && !ents) {
        free(recs);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        ents[i].index = recs[i].index;
        ents[i].term = recs[i].term;
        ents[i].type = recs[i].type;
        ents[i].data = recs[i].data;
        ents[i].len = recs[i].len;
    }
    bool empty = hs.term == 0 && n == 0 && !have_snap;
    int rv = 0;
    if (!empty)
        rv = raft_restore(rp->raft, &hs, have_snap ? &snap : NULL, ents, n);
    free(ents);
    free(recs);
    if (rv != 0) {
        snprintf(err, errlen, "stored state is inconsistent (%s)", raft_strerror(rv));
        return -EINVAL;
    }
    if (empty) {
        if (raft_conf_find(&rp->cfg.initial, rp->cfg.id)) {
            /* Every initial member writes the same first entry, so doing it
             * again after a crash that lost it is harmless. */
            rv = raft_bootstrap(rp->raft, &rp->cfg.initial);
            if (rv != 0) {
                snprintf(err, errlen, "bootstrap failed: %s", raft_strerror(rv));
                return -EINVAL;
            }
            log_info("bootstrapping a new cluster of %u members", rp->cfg.initial.n);
        } else {
            log_info("empty data directory and not an initial member: waiting for the leader");
        }
    } else {
        log_info("recovered term %llu, snapshot %llu, log %llu..%llu",
                 (unsigned long long)hs.term, (unsigned long long)(have_snap ? snap.index : 0),
                 (unsigned long long)lo, (unsigned long long)(n ? hi : lo - 1));
    }
    return 0;
}

int replica_open(struct replica **out, const struct replica_config *cfg,
                 const struct replica_hooks *hooks, char *err, size_t errlen)
{
    struct replica *rp = calloc(1, sizeof(*rp));
    if (!rp)
        return -ENOMEM;
    rp->cfg = *cfg;
    rp->hooks = *hooks;

    struct raft_config rc;
    raft_config_defaults(&rc, cfg->id);
    rc.election_ticks = cfg->election_ticks;
    rc.heartbeat_ticks = cfg->heartbeat_ticks;
    if (cfg->max_msg_bytes)
        rc.max_msg_bytes = cfg->max_msg_bytes;
    rc.snapshot_trailing = cfg->snapshot_trailing;
    rc.seed = cfg->id ^ (uint64_t)(uintptr_t)rp; /* timeouts differ between runs, as they should */
    int rv = raft_new(&rp->raft, &rc);
    if (rv != 0) {
        snprintf(err, errlen, "bad consensus settings: %s", raft_strerror(rv));
        free(rp);
        return -EINVAL;
    }
    struct kv_config kvc = {.session_ttl_ms = cfg->session_ttl_ms, .max_sessions = cfg->max_sessions};
    rp->kv = kv_new(&kvc);
    if (!rp->kv) {
        replica_close(rp);
        return -ENOMEM;
    }

    struct store_options so;
    store_options_default(&so);
    if (cfg->segment_size)
        so.segment_size = cfg->segment_size;
    so.log = store_log;
    so.log_arg = rp;
    so.recover_progress = store_recover_progress;
    struct store_open_info info;
    memset(&info, 0, sizeof(info));
    rv = store_open(cfg->data_dir, &so, &rp->st, &info);
    if (rv < 0) {
        snprintf(err, errlen, "%s: %s", cfg->data_dir, info.error[0] ? info.error : strerror(-rv));
        replica_close(rp);
        return rv;
    }
    if (info.cut_bytes)
        log_warn("store: cut %llu bytes of torn log tail: %s", (unsigned long long)info.cut_bytes,
                 info.cut_reason);
    rv = restore(rp, err, errlen);
    if (rv < 0) {
        replica_close(rp);
        return rv;
    }
    *out = rp;
    return 0;
}

void replica_close(struct replica *rp)
{
    if (!rp)
        return;
    if (rp->st) {
        int rv = store_close(rp->st);
        if (rv < 0)
            log_warn("store closed with error: %s", strerror(-rv));
    }
    raft_free(rp->raft);
    kv_free(rp->kv);
    free(rp->held);
    free(rp->recs);
    free(rp);
}

/* ---- the ready loop --------------------------------------------------- */

static void hold(struct replica *rp, const struct raft_msg *m, uint64_t seq)
{
    /* After-persist messages are replies and votes: they never carry
     * entries or snapshot bytes, so a shallow copy owns all of it. */
    if (rp->n_held == rp->cap_held) {
        size_t cap = rp->cap_held ? rp->cap_held * 2 : 64;
        struct held_msg *h = realloc(rp->held, cap * sizeof(*h));
        if (!h) {
            fail(rp, -ENOMEM, "out of memory holding a reply");
            return;
        }
        rp->held = h;
        rp->cap_held = cap;
    }
    rp->held[rp->n_held].seq = seq;
    rp->held[rp->n_held].msg = *m;
    rp->held[rp->n_held].msg.entries = NULL;
    rp->held[rp->n_held].msg.n_entries = 0;
    rp->n_held++;
}

static void release_held(struct replica *rp)
{
    size_t k = 0;
    while (k < rp->n_held && rp->held[k].seq <= rp->done_seq) {
        rp->hooks.send(rp->hooks.arg, &rp->held[k].msg);
        k++;
    }
    if (k) {
        memmove(rp->held, rp->held + k, (rp->n_held - k) * sizeof(*rp->held));
        rp->n_held -= k;
    }
}

static int persist(struct replica *rp, const struct raft_ready *rd)
{
    struct store_hard_state hs = {.term = rd->hs.term, .vote = rd->hs.vote};
    bool hs_pending = rd->hs_changed;
    int rv;
    if (rd->has_snapshot) {
        if (hs_pending) {
            rv = store_append(rp->st, &hs, NULL, 0, &rp->last_seq);
            if (rv < 0)
                return rv;
            hs_pending = false;
        }
        struct store_snap_meta sm;
        meta_to_store(&rd->snap, &sm);
        rv = store_snapshot_save(rp->st, &sm, rd->snap_data, rd->snap_len, &rp->last_seq);
        if (rv < 0)
            return rv;
        rp->last_snap_index = rd->snap.index;
    }
    if (!rd->n_entries && !hs_pending)
        return 0;
    if (rd->n_entries > rp->cap_recs) {
        size_t cap = rp->cap_recs ? rp->cap_recs : 256;
        while (cap < rd->n_entries)
            cap *= 2;
        struct store_record *r = realloc(rp->recs, cap * sizeof(*r));
        if (!r)
            return -ENOMEM;
        rp->recs = r;
        rp->cap_recs = cap;
    }
    for (size_t i = 0; i < rd->n_entries; i++) {
        const struct raft_entry *e = &rd->entries[i];
        rp->recs[i] = (struct store_record){
            .index = e->index, .term = e->term, .data = e->data, .len = e->len, .type = e->type};
    }
    return store_append(rp->st, hs_pending ? &hs : NULL, rp->recs, rd->n_entries, &rp->last_seq);
}

static void apply_snapshot(struct replica *rp, const struct raft_ready *rd)
{
    struct kv_config kvc = {.session_ttl_ms = rp->cfg.session_ttl_ms,
                            .max_sessions = rp->cfg.max_sessions};
    struct kv *kv = NULL;
    int rv = kv_snapshot_load(rd->snap_data, rd->snap_len, &kvc, &kv);
    if (rv != KV_OK) {
        fail(rp, -EBADMSG, "snapshot %llu from the leader does not load: %s",
             (unsigned long long)rd->snap.index, kv_strerror(rv));
        return;
    }
    kv_free(rp->kv);
    rp->kv = kv;
    log_event(LOG_INFO, "snapshot", NULL, "installed snapshot at index %llu (%zu bytes)",
              (unsigned long long)rd->snap.index, rd->snap_len);
}

static void apply(struct replica *rp, const struct raft_entry *e)
{
    if (e->index <= kv_applied_index(rp->kv))
        return; /* covered by a snapshot we loaded */
    int rv;
    if (e->type == RAFT_ENTRY_NORMAL && e->len) {
        struct kv_result res;
        rv = kv_apply(rp->kv, e->index, e->data, e->len, &res);
        if (rv == KV_OK) {
            rp->hooks.applied(rp->hooks.arg, e, &res);
            return;
        }
    } else {
        rv = kv_skip(rp->kv, e->index);
        if (rv == KV_OK) {
            rp->hooks.applied(rp->hooks.arg, e, NULL);
            return;
        }
    }
    fail(rp, -EIO, "cannot apply entry %llu: %s", (unsigned long long)e->index, kv_strerror(rv));
}

struct snap_buf {
    uint8_t *p;
    size_t n, cap;
};

static int snap_buf_write(void *ctx, const void *buf, size_t len)
{
    struct snap_buf *b = ctx;
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
    return 0;
}

/* Write a snapshot of the state machine once enough log has built up.  The
 * core is told only when it is durable, so a follower is never sent a
 * snapshot the store cannot produce. */
static void maybe_snapshot(struct replica *rp)
{
    uint64_t applied = kv_applied_index(rp->kv);
    if (rp->snap_saving || rp->cfg.snapshot_entries == 0 ||
        applied < rp->last_snap_index + rp->cfg.snapshot_entries)
        return;
    struct raft_snapshot_meta meta = {.index = applied};
    struct raft_entry e;
    if (raft_entry_at(rp->raft, applied, &e) != 0 || raft_conf_at(rp->raft, applied, &meta.conf) != 0)
        return;
    meta.term = e.term;
    struct snap_buf b = {0};
    int rv = kv_snapshot_write(rp->kv, snap_buf_write, &b);
    if (rv != KV_OK) {
        free(b.p);
        log_warn("snapshot at %llu failed: %s", (unsigned long long)applied, kv_strerror(rv));
        return;
    }
    struct store_snap_meta sm;
    meta_to_store(&meta, &sm);
    rv = store_snapshot_save(rp->st, &sm, b.p, b.n, &rp->last_seq);
    free(b.p);
    if (rv < 0) {
        fail(rp, rv, "cannot save snapshot: %s", store_errmsg(rp->st));
        return;
    }
    rp->snap_saving = true;
    rp->snap_seq = rp->last_seq;
    rp->snap_index = applied;
    rp->last_snap_index = applied;
    log_event(LOG_INFO, "snapshot", NULL, "writing snapshot at index %llu (%zu bytes, %zu keys)",
              (unsigned long long)applied, b.n, kv_dict_count(kv_dict(rp->kv)));
}

void replica_process(struct replica *rp)
{
    for (unsigned guard = 0; guard < 1024 && !rp->err && raft_has_ready(rp->raft); guard++) {
        struct raft_ready rd;
        raft_ready(rp->raft, &rd);
        int rv = persist(rp, &rd);
        if (rv < 0) {
            fail(rp, rv, "disk write failed: %s", store_errmsg(rp->st)[0] ? store_errmsg(rp->st) : strerror(-rv));
            raft_advance(rp->raft, &rd);
            return;
        }
        for (size_t i = 0; i < rd.n_msgs; i++)
            rp->hooks.send(rp->hooks.arg, &rd.msgs[i]);
        for (size_t i = 0; i < rd.n_msgs_after_persist; i++) {
            if (rp->last_seq <= rp->done_seq)
                rp->hooks.send(rp->hooks.arg, &rd.msgs_after_persist[i]);
            else
                hold(rp, &rd.msgs_after_persist[i], rp->last_seq);
        }
        if (rd.has_snapshot)
            apply_snapshot(rp, &rd);
        for (size_t i = 0; i < rd.n_committed; i++)
            apply(rp, &rd.committed[i]);
        for (size_t i = 0; i < rd.n_reads; i++)
            rp->hooks.read_state(rp->hooks.arg, &rd.reads[i]);
        if (rd.ss_changed)
            rp->hooks.soft_state(rp->hooks.arg, rd.leader, rd.role, rd.term);
        raft_advance(rp->raft, &rd);
    }
    if (!rp->err)
        maybe_snapshot(rp);
}

void replica_store_event(struct replica *rp)
{
    struct store_progress p;
    int rv = store_poll(rp->st, &p);
    if (rv < 0) {
        fail(rp, rv, "disk failed: %s", store_errmsg(rp->st));
        return;
    }
    rp->done_seq = p.done_seq;
    raft_persisted(rp->raft, p.durable_index, p.durable_term);
    release_held(rp);
    if (rp->snap_saving && rp->done_seq >= rp->snap_seq) {
        rp->snap_saving = false;
        raft_snapshot_taken(rp->raft, rp->snap_index);
        rv = store_compact(rp->st, rp->snap_index, &rp->last_seq);
        if (rv < 0)
            fail(rp, rv, "cannot compact log: %s", store_errmsg(rp->st));
    }
    replica_process(rp);
}

int replica_store_fd(const struct replica *rp) { return store_eventfd(rp->st); }
int replica_error(const struct replica *rp) { return rp->err; }
const char *replica_errmsg(const struct replica *rp) { return rp->errmsg; }
struct raft *replica_raft(struct replica *rp) { return rp->raft; }
const struct kv *replica_kv(const struct replica *rp) { return rp->kv; }
uint64_t replica_applied(const struct replica *rp) { return kv_applied_index(rp->kv); }

int replica_snapshot_load(struct replica *rp, struct raft_snapshot_meta *meta, void **data, size_t *len)
{
    struct store_snap_meta sm;
    int rv = store_snapshot_load(rp->st, &sm, data, len);
    if (rv < 0)
        return rv;
    if (meta_from_store(&sm, meta) != 0) {
        free(*data);
        *data = NULL;
        return -EBADMSG;
    }
    return 0;
}
