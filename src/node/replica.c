/* replica.c - drives the consensus core against durable storage (through
 * the table in storage.h) and the key-value state machine: recovery at
 * start-up, the ready/advance loop, messages held until their batch is
 * durable, and automatic snapshots.  The only code that calls into the core.
 *
 * Ordering is the whole job here.  Storage does its writes in the order they
 * are queued and reports durability as a sequence number; a message the core
 * marked "after persist" is released only when that sequence has passed
 * every write queued before it.  No clock, no sockets, no files: the
 * simulator (tests/sim) runs this file as it is.
 */
#include "node/replica.h"

#include "common/log.h"

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
    struct replica_storage io;
    struct kv *kv;
    /* the leader's snapshot, loaded by the driver, until the core takes it */
    struct kv *rx_kv;

    uint64_t turn_applied; /* entries applied since replica_turn() */

    uint64_t last_seq; /* newest store operation queued */
    uint64_t done_seq; /* newest store operation known durable */

    struct held_msg *held; /* FIFO of after-persist messages */
    size_t n_held, cap_held;

    /* a snapshot being written in the background (io.snapshot_begin) from
     * snap_view, a frozen view of snap_src (kv_freeze); snap_src is kv,
     * or the state machine a received snapshot replaced meanwhile, kept
     * until the writer is done with it */
    bool snap_writing;
    struct raft_snapshot_meta snap_meta;
    struct kv *snap_src, *snap_view;
    /* a snapshot being written: taken by the core once durable */
    bool snap_saving;
    uint64_t snap_seq;
    raft_index snap_index;
    raft_index last_snap_index;
    uint64_t log_bytes; /* of entries applied since last_snap_index */

    bool empty; /* nothing on disk at start-up and not bootstrapped since */

    /* RECORD_INCARNATION proposed for a member in a term: one per term. */
    struct {
        raft_id id;
        raft_term term;
    } rec[RAFT_MAX_MEMBERS];

    /* This data directory (replica_set_identity): its incarnation, and
     * whether it started empty and joined instead of bootstrapping. */
    uint64_t self_inc;
    bool joined;
    /* withholding()'s scan of the log tail for this node's own record,
     * kept between calls: ticks ask often, and while a node catches up its
     * tail is long (rescanned whole on every tick, 15-68 ms a second at
     * 10 M keys).  Entries up to `to` (of term to_term) are scanned; `at`
     * is the newest record of this node among them past the applied
     * view (0: none), of incarnation `inc`. */
    struct {
        bool valid;
        raft_index to, at, first;
        raft_term to_term;
        uint64_t inc;
    } wh;

    /* The incarnation file as loaded at start-up or last queued: while its
     * index is past the state machine's it is the applied view (a restart
     * from an older snapshot; see "the incarnation file" below). */
    struct replica_incarnations incs;

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

static const char *io_errmsg(struct replica *rp, int err);
static bool withholding(struct replica *rp);

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

void replica_kv_config(const struct replica *rp, struct kv_config *kvc)
{
    *kvc = (struct kv_config){.session_ttl_ms = rp->cfg.session_ttl_ms,
                              .max_sessions = rp->cfg.max_sessions};
}

static int restore(struct replica *rp, char *err, size_t errlen)
{
    struct raft_hard_state hs;
    rp->io.hard_state(rp->io.arg, &hs);

    struct kv_config kvc;
    replica_kv_config(rp, &kvc);
    struct raft_snapshot_meta snap;
    bool have_snap = false;
    void *data = NULL;
    size_t len = 0;
    recovering(rp, "loading the snapshot");
    int rv = rp->io.snapshot_load(rp->io.arg, &snap, &data, &len);
    if (rv < 0 && rv != -ENOENT) {
        snprintf(err, errlen, "cannot read snapshot: %s", strerror(-rv));
        return rv;
    }
    if (rv == 0) {
        struct kv *kv = NULL;
        rv = kv_snapshot_load(data, len, &kvc, &kv);
        free(data);
        if (rv != KV_OK) {
            snprintf(err, errlen, "snapshot at index %llu does not load: %s",
                     (unsigned long long)snap.index, kv_strerror(rv));
            return -EBADMSG;
        }
        kv_free(rp->kv);
        rp->kv = kv;
        have_snap = true;
        rp->last_snap_index = snap.index;
        if (rp->hooks.installed)
            rp->hooks.installed(rp->hooks.arg, &snap, rp->kv);
    }

    uint64_t lo = (have_snap ? snap.index : 0) + 1;
    uint64_t hi = rp->io.last_index(rp->io.arg);
    struct raft_entry *ents = NULL;
    size_t n = 0;
    if (hi >= lo) {
        recovering(rp, "reading log entries %llu..%llu", (unsigned long long)lo,
                   (unsigned long long)hi);
        rv = rp->io.read(rp->io.arg, lo, hi, &ents, &n);
        if (rv < 0) {
            snprintf(err, errlen, "cannot read log %llu..%llu: %s", (unsigned long long)lo,
                     (unsigned long long)hi, strerror(-rv));
            return rv;
        }
    }
    bool empty = hs.term == 0 && n == 0 && !have_snap;
    rv = 0;
    if (!empty)
        rv = raft_restore(rp->raft, &hs, have_snap ? &snap : NULL, ents, n);
    free(ents);
    if (rv != 0) {
        snprintf(err, errlen, "stored state is inconsistent (%s)", raft_strerror(rv));
        return -EINVAL;
    }
    rp->empty = empty;
    if (empty) {
        /* Whether to bootstrap is the owner's call (node/bootstrap.c):
         * an empty directory may be a member that lost its data. */
        log_info("empty data directory");
    } else {
        log_info("recovered term %llu, snapshot %llu, log %llu..%llu",
                 (unsigned long long)hs.term, (unsigned long long)(have_snap ? snap.index : 0),
                 (unsigned long long)lo, (unsigned long long)(n ? hi : lo - 1));
    }
    return 0;
}

/* The incarnation file (storage.h): the records the state machine had
 * applied at some index.  A restart rolls the state machine back to its
 * snapshot, and a record applied since then is back in the unapplied tail,
 * where a forget does not count (replica.h: a tail entry only adds
 * refusals) until a leader's commit index lets it apply again.  A member
 * whose snapshot predates a member replace would refuse the votes of that
 * member's new directory meanwhile, and with one more voter rightly
 * refused, no candidate might reach a quorum (FINDINGS.md 8).  With the
 * file the restarted node knows every record it had applied.
 *
 * Why a file of its own and not etcd's HardState.Commit (persist the commit
 * index, apply up to it at start-up): the file's content is a fact of the
 * committed history whatever this node's log holds, so it may be written
 * at any moment, in any order against the log.  A commit index in `meta` is
 * not: the store writes meta before it syncs the log of the same group
 * commit, so a crash between them would leave a commit index over entries
 * that are lost, or stale ones a truncation had not yet replaced on disk;
 * and writing meta at every commit would add a rename and two fsyncs to
 * every group commit, where the file is written once per record.
 *
 * The file is queued in the ready round that applies the record (apply()).
 * A crash before it lands leaves the view from before the record plus the
 * record in the log tail (the core applies only entries durable here),
 * which only refuses more (safe) and is what the node had before this file.
 * Waiting for the write before applying would not narrow that: what a
 * restart knows depends on what reached the disk, not on when the record
 * was applied.  A damaged file is ignored for the same reason.  Old data
 * directories have none: they start as they did. */
static void load_incarnations(struct replica *rp)
{
#ifdef REPLICA_BREAK_INCFILE
    /* Test builds: a restart knows only its snapshot and log, as before. */
    return;
#endif
    if (!rp->io.incarnations_load || rp->empty)
        return;
    struct replica_incarnations inc;
    int rv = rp->io.incarnations_load(rp->io.arg, &inc);
    if (rv == -ENOENT)
        return;
    if (rv < 0) {
        log_warn("incarnation file: %s; ignored (data-directory records are known from the "
                 "snapshot and log only)", rv == -EBADMSG ? "damaged" : strerror(-rv));
        return;
    }
    if (inc.index <= kv_applied_index(rp->kv))
        return; /* the snapshot is at least as new */
    rp->incs = inc;
    log_info("incarnation file: %u data-directory records as of index %llu", inc.n,
             (unsigned long long)inc.index);
}

/* The state machine's records changed at the entry just applied: write the
 * file, unless it already holds a newer state (entries applied again after
 * a restart). */
static void save_incarnations(struct replica *rp)
{
    raft_index index = kv_applied_index(rp->kv);
    if (!rp->io.incarnations_save || index <= rp->incs.index)
        return;
    struct replica_incarnations inc = {.index = index};
    uint64_t ids[REPLICA_MAX_INCARNATIONS], incs[REPLICA_MAX_INCARNATIONS];
    inc.n = (uint32_t)kv_incarnation_list(rp->kv, ids, incs, REPLICA_MAX_INCARNATIONS);
    for (uint32_t i = 0; i < inc.n; i++) {
        inc.m[i].id = ids[i];
        inc.m[i].incarnation = incs[i];
    }
    int rv = rp->io.incarnations_save(rp->io.arg, &inc, &rp->last_seq);
    if (rv < 0) {
        fail(rp, rv, "cannot save the incarnation file: %s", io_errmsg(rp, rv));
        return;
    }
    rp->incs = inc;
}

/* Entries applied per turn (loop iteration) at most, by default.  A node
 * that restarts from a snapshot re-applies the log after it (up to a
 * quarter of the dataset: millions of entries, seconds of work) once it
 * learns the commit index, and a follower that waited for a CPU has a
 * backlog; in one loop iteration that starves heartbeats.  An entry costs
 * 2-5 us on a 10 M-key dictionary (cache misses down the tree), so this is
 * 2-5 ms of work, well inside the loop's 20 ms; the loop polls its sockets
 * between turns (replica_has_ready).  A steady write load commits far
 * fewer entries per iteration, so this bounds only catch-up. */
#define APPLY_PER_TURN 1024

void replica_config_defaults(struct replica_config *cfg, raft_id id)
{
    memset(cfg, 0, sizeof(*cfg));
    raft_config_defaults(&cfg->raft, id);
    cfg->raft.seed = 0;
}

int replica_open(struct replica **out, const struct replica_config *cfg,
                 const struct replica_hooks *hooks, const struct replica_storage *io, char *err,
                 size_t errlen)
{
    struct replica *rp = calloc(1, sizeof(*rp));
    if (!rp) {
        if (io->close)
            io->close(io->arg);
        return -ENOMEM;
    }
    rp->cfg = *cfg;
    rp->hooks = *hooks;
    rp->io = *io;

    struct raft_config rc = cfg->raft;
    if (!rp->cfg.apply_per_turn)
        rp->cfg.apply_per_turn = APPLY_PER_TURN;
    /* One ready batch is applied whole, so a turn's last one may overrun
     * the slice: by at most a quarter of it. */
    uint32_t batch = rp->cfg.apply_per_turn / 4 ? rp->cfg.apply_per_turn / 4 : 1;
    if (rc.max_apply_entries > batch)
        rc.max_apply_entries = batch;
    if (!rc.seed)
        rc.seed = rc.id ^ (uint64_t)(uintptr_t)rp; /* timeouts differ between runs, as they should */
    int rv = raft_new(&rp->raft, &rc);
    if (rv != 0) {
        snprintf(err, errlen, "bad consensus settings: %s", raft_strerror(rv));
        replica_close(rp);
        return -EINVAL;
    }
    struct kv_config kvc;
    replica_kv_config(rp, &kvc);
    rp->kv = kv_new(&kvc);
    if (!rp->kv) {
        replica_close(rp);
        return -ENOMEM;
    }
    rv = restore(rp, err, errlen);
    if (rv < 0) {
        replica_close(rp);
        return rv;
    }
    load_incarnations(rp);
    *out = rp;
    return 0;
}

/* A state machine nobody uses any more. */
static void retire_kv(struct replica *rp, struct kv *kv)
{
    if (rp->hooks.retire)
        rp->hooks.retire(rp->hooks.arg, kv);
    else
        kv_free(kv);
}

static void dispose(struct replica *rp, struct kv_garbage *g)
{
    if (g && rp->hooks.dispose)
        rp->hooks.dispose(rp->hooks.arg, g);
    else
        kv_garbage_free(g);
}

/* The background writer is done with its view (or was stopped). */
static void snap_view_end(struct replica *rp)
{
    if (!rp->snap_view)
        return;
    dispose(rp, kv_thaw(rp->snap_src, rp->snap_view));
    if (rp->snap_src != rp->kv)
        retire_kv(rp, rp->snap_src);
    rp->snap_src = rp->snap_view = NULL;
}

void replica_close(struct replica *rp)
{
    if (!rp)
        return;
    if (rp->io.close)
        rp->io.close(rp->io.arg); /* stops a background writer first */
    rp->hooks.retire = NULL;
    rp->hooks.dispose = NULL; /* everything goes now */
    snap_view_end(rp);
    raft_free(rp->raft);
    kv_free(rp->kv);
    kv_free(rp->rx_kv);
    free(rp->held);
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

/* raft.h's order: hard state, then a received snapshot, then entries. */
static int persist(struct replica *rp, const struct raft_ready *rd)
{
    bool hs_pending = rd->hs_changed;
    int rv;
    if (rd->has_snapshot) {
        if (hs_pending) {
            rv = rp->io.append(rp->io.arg, &rd->hs, NULL, 0, &rp->last_seq);
            if (rv < 0)
                return rv;
            hs_pending = false;
        }
        if (rd->snap_data)
            rv = rp->io.snapshot_save(rp->io.arg, &rd->snap, rd->snap_data, rd->snap_len,
                                      &rp->last_seq);
        else /* streamed into storage by the driver (replica_snapshot_received) */
            rv = rp->io.snapshot_adopt(rp->io.arg, &rd->snap, true, &rp->last_seq);
        if (rv < 0)
            return rv;
        rp->last_snap_index = rd->snap.index;
        rp->log_bytes = 0;
    }
    if (!rd->n_entries && !hs_pending)
        return 0;
    return rp->io.append(rp->io.arg, hs_pending ? &rd->hs : NULL, rd->entries, rd->n_entries,
                         &rp->last_seq);
}

static const char *io_errmsg(struct replica *rp, int err)
{
    const char *m = rp->io.errmsg ? rp->io.errmsg(rp->io.arg) : "";
    return m[0] ? m : strerror(-err);
}

static void apply_snapshot(struct replica *rp, const struct raft_ready *rd)
{
    struct kv *kv = NULL;
    if (!rd->snap_data) {
        /* Loaded by the driver before it stepped the core with the meta. */
        if (!rp->rx_kv || kv_applied_index(rp->rx_kv) != rd->snap.index) {
            fail(rp, -EINVAL, "snapshot %llu from the leader was not loaded",
                 (unsigned long long)rd->snap.index);
            return;
        }
        kv = rp->rx_kv;
        rp->rx_kv = NULL;
    } else {
        struct kv_config kvc;
        replica_kv_config(rp, &kvc);
        int rv = kv_snapshot_load(rd->snap_data, rd->snap_len, &kvc, &kv);
        if (rv != KV_OK) {
            fail(rp, -EBADMSG, "snapshot %llu from the leader does not load: %s",
                 (unsigned long long)rd->snap.index, kv_strerror(rv));
            return;
        }
    }
    /* A background writer still reads the old one: it goes when that is
     * done (snap_view_end). */
    if (rp->kv != rp->snap_src)
        retire_kv(rp, rp->kv);
    rp->kv = kv;
    if (rp->hooks.installed)
        rp->hooks.installed(rp->hooks.arg, &rd->snap, rp->kv);
    log_event(LOG_INFO, "snapshot", NULL, "installed snapshot at index %llu",
              (unsigned long long)rd->snap.index);
}

static void apply(struct replica *rp, const struct raft_entry *e)
{
    if (e->index <= kv_applied_index(rp->kv))
        return; /* covered by a snapshot we loaded */
    rp->log_bytes += e->len;
    int rv;
    if (e->type == RAFT_ENTRY_NORMAL && e->len) {
        struct kv_result res;
        uint64_t gen = kv_incarnation_gen(rp->kv);
        rv = kv_apply(rp->kv, e->index, e->data, e->len, &res);
        if (rv == KV_OK) {
            if (kv_incarnation_gen(rp->kv) != gen)
                save_incarnations(rp);
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

/* A snapshot queued with the store: the core takes it once durable. */
static void saving(struct replica *rp, raft_index index)
{
    rp->snap_saving = true;
    rp->snap_seq = rp->last_seq;
    rp->snap_index = index;
}

/* Write a snapshot of the state machine once enough log has built up.  The
 * core is told only when it is durable, so a follower is never sent a
 * snapshot the store cannot produce. */
/* Due: the log since the last snapshot reached snapshot_entries entries or
 * snapshot_bytes bytes, and is no longer small next to the dataset.  A
 * snapshot costs the whole dataset (at 10 M keys of 100 B, 1.1 GB written
 * per node); without that floor a snapshot every 100 000 entries rewrote it
 * every 5 s under load, saturating disk and CPU until elections followed. */
/*
 * Each node also scales the three thresholds by 1, 1.25, 1.5 or 1.75 (by
 * its id): replicas that apply the same log would otherwise start their
 * snapshots at the same entry, so all of them pay the node copies and the
 * disk writes at once and no quorum is left running at full speed (seen
 * on a 3-node cluster: all three started within 50 ms, every time).  Staggered,
 * at most one node of a small cluster is usually snapshotting.
 */
static uint64_t stagger(const struct replica_config *cfg, uint64_t threshold)
{
    uint64_t quarters = 4 + (cfg->raft.id ? (cfg->raft.id - 1) % 4 : 0);
    return threshold > UINT64_MAX / 8 ? threshold : threshold * quarters / 4;
}

bool replica_snapshot_due(const struct replica_config *cfg, uint64_t entries, uint64_t log_bytes,
                          uint64_t data_bytes)
{
    bool count = cfg->snapshot_entries && entries >= stagger(cfg, cfg->snapshot_entries);
    bool size = cfg->snapshot_bytes && log_bytes >= stagger(cfg, cfg->snapshot_bytes);
    if (!count && !size)
        return false;
    return log_bytes >= stagger(cfg, data_bytes / 100 * cfg->snapshot_min_log_pct);
}

static void maybe_snapshot(struct replica *rp)
{
    uint64_t applied = kv_applied_index(rp->kv);
    if (rp->snap_saving || rp->snap_writing || applied <= rp->last_snap_index ||
        !replica_snapshot_due(&rp->cfg, applied - rp->last_snap_index, rp->log_bytes,
                              kv_dict_data_bytes(kv_dict(rp->kv))))
        return;
    struct raft_snapshot_meta meta = {.index = applied};
    struct raft_entry e;
    if (raft_entry_at(rp->raft, applied, &e) != 0 || raft_conf_at(rp->raft, applied, &meta.conf) != 0)
        return;
    meta.term = e.term;
    /* Whatever happens, the next attempt waits for another snapshot_entries
     * entries: a failing disk is not retried in a tight loop. */
    rp->last_snap_index = applied;
    rp->log_bytes = 0;
    if (rp->io.snapshot_begin) {
        /* The writer reads a frozen view while applying goes on: the loop
         * pays one node copy per tree level for each region first written
         * meanwhile, nothing per key now. */
        struct kv *view = kv_freeze(rp->kv);
        int rv = view ? rp->io.snapshot_begin(rp->io.arg, &meta, view) : -ENOMEM;
        if (rv == 0) {
            rp->snap_writing = true;
            rp->snap_meta = meta;
            rp->snap_src = rp->kv;
            rp->snap_view = view;
            log_info("snapshot: writing snapshot at index %llu in the background (%zu keys)",
                     (unsigned long long)applied, kv_dict_count(kv_dict(rp->kv)));
            return;
        }
        dispose(rp, kv_thaw(rp->kv, view));
        log_warn("snapshot: cannot write in the background (%s); writing at index %llu on "
                 "the loop", strerror(-rv), (unsigned long long)applied);
    }
    void *data;
    size_t len;
    int rv = kv_snapshot_to_buffer(rp->kv, &data, &len);
    if (rv != KV_OK) {
        log_warn("snapshot at %llu failed: %s", (unsigned long long)applied, kv_strerror(rv));
        return;
    }
    rv = rp->io.snapshot_save(rp->io.arg, &meta, data, len, &rp->last_seq);
    free(data);
    if (rv < 0) {
        fail(rp, rv, "cannot save snapshot: %s", io_errmsg(rp, rv));
        return;
    }
    saving(rp, applied);
    log_event(LOG_INFO, "snapshot", NULL, "writing snapshot at index %llu (%zu bytes, %zu keys)",
              (unsigned long long)applied, len, kv_dict_count(kv_dict(rp->kv)));
}

/* Everything queued so far is durable: after-persist messages may go now. */
static bool durable_now(const struct replica *rp)
{
#ifdef REPLICA_BREAK_HOLD
    /* Teeth build (tests/sim): promise votes and appends before they are on
     * disk.  The simulator must catch it. */
    (void)rp;
    return true;
#else
    return rp->last_seq <= rp->done_seq;
#endif
}

bool replica_has_ready(const struct replica *rp)
{
    return !rp->err && raft_has_ready(rp->raft);
}

void replica_turn(struct replica *rp)
{
    rp->turn_applied = 0;
}

void replica_process(struct replica *rp)
{
    for (unsigned guard = 0;
         guard < 1024 && rp->turn_applied < rp->cfg.apply_per_turn && replica_has_ready(rp);
         guard++) {
        struct raft_ready rd;
        raft_ready(rp->raft, &rd);
        int rv = persist(rp, &rd);
        if (rv < 0) {
            fail(rp, rv, "disk write failed: %s", io_errmsg(rp, rv));
            raft_advance(rp->raft, &rd);
            return;
        }
        for (size_t i = 0; i < rd.n_msgs; i++)
            rp->hooks.send(rp->hooks.arg, &rd.msgs[i]);
        for (size_t i = 0; i < rd.n_msgs_after_persist; i++) {
            if (durable_now(rp))
                rp->hooks.send(rp->hooks.arg, &rd.msgs_after_persist[i]);
            else
                hold(rp, &rd.msgs_after_persist[i], rp->last_seq);
        }
        if (rd.has_snapshot)
            apply_snapshot(rp, &rd);
        for (size_t i = 0; i < rd.n_committed; i++)
            apply(rp, &rd.committed[i]);
        rp->turn_applied += rd.n_committed;
        for (size_t i = 0; i < rd.n_reads; i++)
            rp->hooks.read_state(rp->hooks.arg, &rd.reads[i]);
        if (rd.ss_changed)
            rp->hooks.soft_state(rp->hooks.arg, rd.leader, rd.role, rd.term);
        raft_advance(rp->raft, &rd);
    }
    if (!rp->err)
        maybe_snapshot(rp);
}

void replica_durable(struct replica *rp, const struct replica_durable *d)
{
    if (rp->err)
        return; /* frozen: nothing more goes into the core */
    rp->done_seq = d->seq;
    raft_persisted(rp->raft, d->index, d->term);
    release_held(rp);
    if (rp->snap_saving && rp->done_seq >= rp->snap_seq) {
        rp->snap_saving = false;
        raft_snapshot_taken(rp->raft, rp->snap_index);
        raft_index first = raft_first_index(rp->raft);
        if (first + rp->cfg.raft.snapshot_trailing <= rp->snap_index)
            log_info("snapshot: the log is kept from index %llu, not %llu: a follower is still "
                     "loading the snapshot before it",
                     (unsigned long long)first,
                     (unsigned long long)(rp->snap_index - rp->cfg.raft.snapshot_trailing + 1));
        int rv = rp->io.compact(rp->io.arg, rp->snap_index, &rp->last_seq);
        if (rv < 0)
            fail(rp, rv, "cannot compact log: %s", io_errmsg(rp, rv));
    }
    replica_process(rp);
}

void replica_snapshot_written(struct replica *rp, int rv)
{
    /* What the snapshot cost in memory: what changed while it was written. */
    uint64_t kept = rp->snap_src ? kv_dict_frozen_bytes(kv_dict(rp->snap_src)) : 0;
    snap_view_end(rp);
    if (!rp->snap_writing)
        return;
    rp->snap_writing = false;
    if (rp->err)
        return;
    raft_index index = rp->snap_meta.index;
    if (rv < 0) {
        /* The log still holds everything: only compaction waits. */
        log_warn("snapshot: background write at index %llu failed: %s; next attempt after "
                 "%llu more entries", (unsigned long long)index, strerror(-rv),
                 (unsigned long long)rp->cfg.snapshot_entries);
        return;
    }
    rv = rp->io.snapshot_adopt(rp->io.arg, &rp->snap_meta, false, &rp->last_seq);
    if (rv == -ESTALE) {
        log_info("snapshot: dropped the one at index %llu: a newer one was installed meanwhile",
                 (unsigned long long)index);
        return;
    }
    if (rv < 0) {
        fail(rp, rv, "cannot save snapshot: %s", io_errmsg(rp, rv));
        return;
    }
    saving(rp, index);
    log_event(LOG_INFO, "snapshot", NULL,
              "wrote snapshot at index %llu in the background; %.1f MB of tree nodes and "
              "entries were kept for it meanwhile", (unsigned long long)index, (double)kept / 1e6);
    replica_process(rp);
}

void replica_storage_failed(struct replica *rp, int err)
{
    fail(rp, err, "disk failed: %s", io_errmsg(rp, err));
}

bool replica_empty(const struct replica *rp) { return rp->empty; }

int replica_bootstrap(struct replica *rp, char *err, size_t errlen)
{
    /* Every initial member writes the same first entry, so doing it again
     * after a crash that lost it is harmless. */
    int rv = raft_bootstrap(rp->raft, &rp->cfg.initial);
    if (rv != 0) {
        snprintf(err, errlen, "bootstrap failed: %s", raft_strerror(rv));
        return -EINVAL;
    }
    rp->empty = false;
    log_info("bootstrapping a new cluster of %u members", rp->cfg.initial.n);
    return 0;
}

int replica_error(const struct replica *rp) { return rp->err; }
const char *replica_errmsg(const struct replica *rp) { return rp->errmsg; }
const struct kv *replica_kv(const struct replica *rp) { return rp->kv; }
uint64_t replica_applied(const struct replica *rp) { return kv_applied_index(rp->kv); }

/* ---- the door into the core ------------------------------------------- */

int replica_step(struct replica *rp, const struct raft_msg *m)
{
    return rp->err ? REPLICA_EFAILED : raft_step(rp->raft, m);
}

int replica_snapshot_received(struct replica *rp, const struct raft_msg *m, struct kv *kv)
{
    /* Freeing millions of keys takes a second: a dictionary not taken goes
     * the way of any other retired one (the hook's thread), never here. */
    if (rp->err || m->type != RAFT_MSG_SNAPSHOT || m->snap_data ||
        kv_applied_index(kv) != m->snap.index) {
        retire_kv(rp, kv);
        return rp->err ? REPLICA_EFAILED : -EINVAL;
    }
    if (rp->rx_kv)
        retire_kv(rp, rp->rx_kv);
    rp->rx_kv = kv;
    int rv = raft_step(rp->raft, m);
    replica_process(rp);
    if (rp->rx_kv) {
        /* The core did not take it (stale, or already covered). */
        retire_kv(rp, rp->rx_kv);
        rp->rx_kv = NULL;
        if (rp->io.snapshot_discard)
            rp->io.snapshot_discard(rp->io.arg);
        return rv ? rv : -ESTALE;
    }
    return rv;
}

int replica_propose(struct replica *rp, const void *data, uint32_t len, raft_index *index,
                    raft_term *term)
{
    return rp->err ? REPLICA_EFAILED : raft_propose(rp->raft, data, len, index, term);
}

int replica_read_index(struct replica *rp, uint64_t ctx)
{
    return rp->err ? REPLICA_EFAILED : raft_read_index(rp->raft, ctx);
}

int replica_transfer(struct replica *rp, raft_id target)
{
    return rp->err ? REPLICA_EFAILED : raft_transfer_leader(rp->raft, target);
}

int replica_propose_conf(struct replica *rp, const struct raft_conf_change *cc, raft_index *index)
{
    return rp->err ? REPLICA_EFAILED : raft_propose_conf(rp->raft, cc, index);
}

void replica_report_snapshot(struct replica *rp, raft_id to, bool ok)
{
    if (!rp->err)
        raft_report_snapshot(rp->raft, to, ok);
}

void replica_snapshot_shipping(struct replica *rp, raft_id to, raft_index index)
{
    if (!rp->err)
        raft_snapshot_shipping(rp->raft, to, index);
}

int replica_tick(struct replica *rp)
{
    if (rp->err)
        return REPLICA_EFAILED;
    /* A node withholding its vote does not campaign (see withholding());
     * a leader keeps ticking: heartbeats. */
    if (raft_role(rp->raft) != RAFT_LEADER && withholding(rp))
        return 0;
    raft_tick(rp->raft);
    return 0;
}

void replica_report_unreachable(struct replica *rp, raft_id to)
{
    if (!rp->err)
        raft_report_unreachable(rp->raft, to);
}

void replica_status(const struct replica *rp, struct raft_status *st)
{
    raft_status(rp->raft, st);
    if (rp->err) {
        st->role = RAFT_FOLLOWER;
        st->leader = RAFT_NONE;
        st->n_progress = 0;
    }
}

enum raft_role replica_role(const struct replica *rp)
{
    return rp->err ? RAFT_FOLLOWER : raft_role(rp->raft);
}

raft_term replica_term(const struct replica *rp) { return raft_current_term(rp->raft); }
raft_id replica_leader(const struct replica *rp) { return rp->err ? RAFT_NONE : raft_leader(rp->raft); }
raft_index replica_commit_index(const struct replica *rp) { return raft_commit_index(rp->raft); }
raft_index replica_learner_max_lag(const struct replica *rp) { return rp->cfg.raft.learner_max_lag; }

int replica_entry_at(const struct replica *rp, raft_index index, struct raft_entry *out)
{
    return raft_entry_at(rp->raft, index, out);
}

int replica_snapshot_load(struct replica *rp, struct raft_snapshot_meta *meta, void **data, size_t *len)
{
    return rp->io.snapshot_load(rp->io.arg, meta, data, len);
}

/* ---- data-directory incarnations --------------------------------------- */

static bool is_vote(uint8_t type)
{
    return type == RAFT_MSG_PREVOTE || type == RAFT_MSG_PREVOTE_RESP || type == RAFT_MSG_VOTE ||
           type == RAFT_MSG_VOTE_RESP;
}

/* Whether e is a RECORD_INCARNATION of member; *inc gets what it records
 * (0: a forget). */
static bool entry_is_record(const struct raft_entry *e, raft_id member, uint64_t *inc)
{
    struct kv_command c;
    if (e->type != RAFT_ENTRY_NORMAL || !e->len ||
        kv_command_decode(e->data, e->len, &c) != KV_OK || c.op != KV_OP_RECORD_INCARNATION ||
        c.member_id != member)
        return false;
    *inc = c.incarnation;
    return true;
}

/* The incarnation a log entry records for member: 0 when it is no
 * RECORD_INCARNATION of member, or a forget (which counts once applied). */
static uint64_t entry_records(const struct raft_entry *e, raft_id member)
{
    uint64_t inc = 0;
    return entry_is_record(e, member, &inc) ? inc : 0;
}

/* The incarnation the applied history records for member (0: none): the
 * state machine's, or the incarnation file's while that is newer (after a
 * restart from an older snapshot, until the state machine passes it). */
static uint64_t applied_record(const struct replica *rp, raft_id member)
{
    if (rp->incs.index <= kv_applied_index(rp->kv))
        return kv_incarnation(rp->kv, member);
    for (uint32_t i = 0; i < rp->incs.n; i++)
        if (rp->incs.m[i].id == member)
            return rp->incs.m[i].incarnation;
    return 0;
}

uint64_t replica_incarnation(const struct replica *rp, raft_id member)
{
    return applied_record(rp, member);
}

/* The first log index past what applied_record() covers: "the tail". */
static raft_index tail_first(const struct replica *rp)
{
    raft_index applied = kv_applied_index(rp->kv);
    return (rp->incs.index > applied ? rp->incs.index : applied) + 1;
}

/* An incarnation recorded for member other than inc: in the applied view,
 * or in the log beyond it (see replica.h).  0 if none. */
static uint64_t recorded_other(const struct replica *rp, raft_id member, uint64_t inc)
{
    uint64_t rec = applied_record(rp, member);
    if (rec && rec != inc)
        return rec;
    raft_index last = raft_last_index(rp->raft);
    for (raft_index i = tail_first(rp); i <= last; i++) {
        struct raft_entry e;
        if (raft_entry_at(rp->raft, i, &e) != 0)
            continue;
        uint64_t r = entry_records(&e, member);
        if (r && r != inc)
            return r;
    }
    return 0;
}

/* Whether the tail holds a RECORD_INCARNATION of member; *inc gets what the
 * newest one records (0: a forget). */
static bool newest_in_tail(const struct replica *rp, raft_id member, uint64_t *inc)
{
    bool found = false;
    raft_index last = raft_last_index(rp->raft);
    for (raft_index i = tail_first(rp); i <= last; i++) {
        struct raft_entry e;
        uint64_t r;
        if (raft_entry_at(rp->raft, i, &e) == 0 && entry_is_record(&e, member, &r)) {
            *inc = r;
            found = true;
        }
    }
    return found;
}

/* The incarnation the newest RECORD_INCARNATION of member in the tail
 * records: 0 if there is none or it is a forget. */
static uint64_t newest_logged(const struct replica *rp, raft_id member)
{
    uint64_t inc = 0;
    return newest_in_tail(rp, member, &inc) ? inc : 0;
}


/* ---- the voter's side: a joined directory votes once recorded ----------
 * The rule above lives on the candidate's side, and a candidate knows only
 * the records its own log holds.  A member removed long ago and added back
 * with its old log does not hold the record of a member that was wiped
 * since; started, it is a voter in its stale configuration, may time out
 * before the leader reaches it, and the wiped member (empty log) grants its
 * vote: with a stale configuration of three, that vote elects a leader that
 * lacks committed entries (FINDINGS.md 6, 5-node seed 4149).  So the check
 * moves to the voter: a node whose data directory started empty and joined
 * (did not bootstrap: raftkv-node's identity file says so) grants no vote,
 * pre-vote included, until its own log records its current directory.  It
 * does not stand either (its self-vote is such a vote): its election clock
 * stops and TimeoutNow is dropped.  Once recorded, its votes are those of
 * the directory the history knows: a leader records a directory only once
 * it applied the forget of the one before (replica_record_incarnation), so
 * the history no longer names the lost one, and the log that reaches the
 * record holds every entry committed before it.  A bootstrapped directory
 * never lost anything and votes from the start.  Until recorded the node is
 * a failed voter, as it already was to every member that holds its old
 * record; the leader records it as soon as it acknowledges data, which a
 * learner does long before it is caught up and promoted. */
static bool withholding(struct replica *rp)
{
#ifdef REPLICA_BREAK_JOINED
    /* Test builds: the voter-side rule off. */
    return false;
#endif
    if (!rp->joined)
        return false;
    raft_id self = rp->cfg.raft.id;
    raft_index last = raft_last_index(rp->raft), first = tail_first(rp);
    struct raft_entry e;
    /* Same (index, term) at the end of what was scanned: the same entries
     * up to there (Log Matching).  Otherwise (a truncated or replaced
     * tail, or a tail that starts earlier than before) scan it afresh. */
    if (!rp->wh.valid || rp->wh.to > last || first < rp->wh.first ||
        (rp->wh.to >= first &&
         (raft_entry_at(rp->raft, rp->wh.to, &e) != 0 || e.term != rp->wh.to_term))) {
        rp->wh.valid = true;
        rp->wh.to = first - 1;
        rp->wh.at = 0;
    }
    rp->wh.first = first;
    /* A record now applied is the applied view's, and was the newest. */
    if (rp->wh.at && rp->wh.at < first)
        rp->wh.at = 0;
    if (rp->wh.to < first - 1)
        rp->wh.to = first - 1;
    for (raft_index i = rp->wh.to + 1; i <= last; i++) {
        uint64_t r;
        if (raft_entry_at(rp->raft, i, &e) != 0)
            break;
        if (entry_is_record(&e, self, &r)) {
            rp->wh.at = i;
            rp->wh.inc = r;
        }
        rp->wh.to = i;
        rp->wh.to_term = e.term;
    }
    /* What the log says this directory is now, applied or not: the newest
     * record in the tail, else the applied one (0: none, or forgotten). */
    uint64_t rec = rp->wh.at ? rp->wh.inc : applied_record(rp, self);
    return rec != rp->self_inc;
}

void replica_set_identity(struct replica *rp, uint64_t incarnation, bool joined)
{
    rp->self_inc = incarnation;
    rp->joined = joined && incarnation;
    rp->wh.valid = false;
}

bool replica_withholding(struct replica *rp)
{
    return !rp->err && withholding(rp);
}

bool replica_vote_withheld(struct replica *rp, const struct raft_msg *m)
{
    return (m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PREVOTE ||
            m->type == RAFT_MSG_TIMEOUT_NOW) &&
           withholding(rp);
}

bool replica_incarnation_refused(const struct replica *rp, const struct raft_msg *m,
                                 uint64_t incarnation, uint64_t *recorded)
{
    if (recorded)
        *recorded = 0;
    if (!is_vote(m->type) && m->term <= raft_current_term(rp->raft))
        return false;
    uint64_t rec = recorded_other(rp, m->from, incarnation);
    /* A higher term (not a vote) from the directory that the newest record
     * in our unapplied log names is let through.  After a restart the
     * applied state is only the snapshot, which may predate a member
     * replace (forget, then record of the new directory), and the forget
     * counts only once applied: the old record would refuse the new
     * directory's terms, and with them a leader of a higher term, until
     * something is applied, which only that leader can make happen (sim
     * seeds 49093, 85945: a learner restarted from an old snapshot hears
     * from the leader alone and never caught up; FINDINGS.md 8).  A term
     * is never a safety matter (dropping higher terms is for liveness, see
     * replica.h); votes still need the forget applied. */
    if (rec && !is_vote(m->type) && newest_logged(rp, m->from) == incarnation)
        rec = 0;
#ifdef REPLICA_BREAK_WIPE
    /* Teeth build (tests/sim): a member that lost its data votes under its
     * old identity.  The simulator must catch it. */
    if (is_vote(m->type))
        rec = 0;
#endif
    if (recorded)
        *recorded = rec;
    return rec != 0;
}

int replica_step_from(struct replica *rp, uint64_t incarnation, const struct raft_msg *m)
{
    if (rp->err)
        return REPLICA_EFAILED;
    if (replica_incarnation_refused(rp, m, incarnation, NULL))
        return REPLICA_ESTALEINC;
    if (replica_vote_withheld(rp, m))
        return REPLICA_EWITHHELD;
    return raft_step(rp->raft, m);
}

int replica_propose_bookkeeping(struct replica *rp, const struct kv_command *cmd)
{
    if (rp->err)
        return REPLICA_EFAILED;
    uint8_t buf[64];
    size_t len = 0;
    if (kv_command_encode(cmd, buf, sizeof(buf), &len) != KV_OK)
        return RAFT_EINVAL;
    raft_index idx;
    raft_term term;
    return raft_propose(rp->raft, buf, (uint32_t)len, &idx, &term);
}

int replica_propose_incarnation(struct replica *rp, raft_id member, uint64_t incarnation,
                                uint64_t time_ms)
{
    struct kv_command cmd = {.op = KV_OP_RECORD_INCARNATION, .member_id = member,
                             .incarnation = incarnation, .time_ms = time_ms};
    int rv = replica_propose_bookkeeping(rp, &cmd);
    if (rv == 0 && !incarnation)
        /* Forgotten (the node comes back with a new data directory): its
         * new incarnation may be recorded in this same term. */
        for (size_t i = 0; i < RAFT_MAX_MEMBERS; i++)
            if (rp->rec[i].id == member)
                rp->rec[i].term = 0;
    return rv;
}

int replica_record_incarnation(struct replica *rp, raft_id member, uint64_t incarnation,
                               uint64_t time_ms)
{
    if (rp->err || !incarnation || raft_role(rp->raft) != RAFT_LEADER ||
        applied_record(rp, member))
        return 0;
    /* One proposal per member and term: a lost one (the leader changed) is
     * proposed again by the next leader. */
    raft_term term = raft_current_term(rp->raft);
    size_t k = 0;
    for (size_t i = 0; i < RAFT_MAX_MEMBERS; i++) {
        if (rp->rec[i].id == member) {
            k = i;
            break;
        }
        if (rp->rec[i].term < rp->rec[k].term)
            k = i;
    }
    if (rp->rec[k].id == member && rp->rec[k].term == term)
        return 0;
    struct raft_status st;
    raft_status(rp->raft, &st);
    bool has_data = false;
    for (uint32_t i = 0; i < st.n_progress; i++)
        if (st.progress[i].id == member)
            has_data = st.progress[i].match > 0;
    if (!has_data)
        return 0;
    rp->rec[k].id = member;
    rp->rec[k].term = term;
    /* A record in the log not applied yet (a new leader learns its commit
     * index only now) is not overridden; a forget waits until applied. */
    if (recorded_other(rp, member, 0))
        return 0;
    int rv = replica_propose_incarnation(rp, member, incarnation, time_ms);
    return rv == 0 ? 1 : rv;
}
