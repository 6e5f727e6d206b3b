/* disk.c - each node's simulated disk, implementing the replica's storage
 * table (src/node/storage.h): writes are queued and land later, in order,
 * whenever the schedule says; only then does the replica hear they are
 * durable.  A crash keeps a random prefix of the queue, possibly torn inside
 * an append (hard state first, then entries), and loses the rest. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kv/kv.h"
#include "sim.h"

raft_index disk_last_index(const struct disk *d)
{
    if (d->n)
        return d->log[d->n - 1].index;
    return d->has_snap ? d->snap.index : 0;
}

const struct dentry *disk_entry(const struct disk *d, raft_index index)
{
    if (!d->n || index < d->log[0].index || index > d->log[d->n - 1].index)
        return NULL;
    return &d->log[index - d->log[0].index];
}

/* Forget log entries at or below index (a snapshot covers them). */
static void disk_drop_through(struct disk *d, raft_index index)
{
    if (!d->n || index < d->log[0].index)
        return;
    if (index >= d->log[d->n - 1].index) {
        d->n = 0;
        return;
    }
    size_t k = (size_t)(index - d->log[0].index + 1);
    memmove(d->log, d->log + k, (d->n - k) * sizeof *d->log);
    d->n -= k;
}

static void disk_put_snapshot(struct node *n, const struct raft_snapshot_meta *m,
                              const struct blob *b)
{
    struct disk *d = &n->disk;
    /* Keep the log only if it continues from the snapshot; an entry with
     * another term at that index means the rest is a dead branch.  What the
     * snapshot covers goes at the next compaction, as in src/store. */
    const struct dentry *e = disk_entry(d, m->index);
    if (!e || e->term != m->term)
        d->n = 0;
    d->has_snap = true;
    d->snap = *m;
    d->snap_blob = b;
}

/* Entries replace everything at or after the first one's index. */
static void disk_put_entries(struct sim *s, struct node *n, const struct dentry *ents, size_t k)
{
    struct disk *d = &n->disk;
    raft_index snap = d->has_snap ? d->snap.index : 0;
    while (k && ents[0].index <= snap) {
        ents++; /* already covered by the snapshot on disk */
        k--;
    }
    if (!k)
        return;
    raft_index first = ents[0].index;
    if (first > disk_last_index(d) + 1) {
        sim_fail(s, FAIL_CONTRACT,
                 "n%llu: ready entries start at %llu but the log ends at %llu (a gap)",
                 U(n->id), U(first), U(disk_last_index(d)));
        return;
    }
    if (d->n && first <= d->log[d->n - 1].index)
        d->n = (size_t)(first - d->log[0].index);
    grow(&d->log, &d->cap, d->n + k, sizeof *d->log);
    memcpy(d->log + d->n, ents, k * sizeof *ents);
    d->n += k;
}

/* Write the first parts of a write: for an append, 0 nothing, 1 the hard
 * state, 1 + k also k entries; SIZE_MAX all of it. */
static void disk_write_parts(struct sim *s, struct node *n, const struct wop *w, size_t parts)
{
    if (parts == 0)
        return;
    switch (w->kind) {
    case WOP_APPEND:
        if (w->has_hs)
            n->disk.hs = w->hs;
        disk_put_entries(s, n, w->ents, parts - 1 < w->n_ents ? parts - 1 : w->n_ents);
        break;
    case WOP_SNAPSHOT:
        disk_put_snapshot(n, &w->snap, w->snap_blob);
        break;
    case WOP_COMPACT:
        disk_drop_through(&n->disk, w->upto);
        break;
    case WOP_INCS: /* replaced atomically: all or nothing */
        n->disk.has_incs = true;
        n->disk.incs = w->incs;
        break;
    }
}

static void wop_free(struct wop *w)
{
    free(w->ents);
    free(w);
}

/* The oldest max pending writes land (one fsync), and the replica hears
 * how far its writes are durable. */
void disk_complete(struct sim *s, struct node *n, size_t max)
{
    uint64_t seq = 0;
    for (size_t k = 0; k < max && n->pend && !s->fail; k++) {
        struct wop *w = n->pend;
        n->pend = w->next;
        if (!n->pend)
            n->pend_tail = NULL;
        n->n_pend--;
        disk_write_parts(s, n, w, SIZE_MAX);
        seq = w->seq;
        wop_free(w);
    }
    if (!seq || s->fail)
        return;
    const struct disk *d = &n->disk;
    struct replica_durable done = {.seq = seq, .index = disk_last_index(d)};
    const struct dentry *last = disk_entry(d, done.index);
    done.term = last ? last->term : d->has_snap ? d->snap.term : 0;
    TRACE(s, "n%llu durable through write %llu (log ends at %llu, term %llu)", U(n->id), U(seq),
          U(done.index), U(done.term));
    n->dirty = true;
    replica_turn(n->rp); /* no loop iterations here: each input is a turn */
    replica_durable(n->rp, &done);
}

static void bg_drop(struct node *n)
{
    free(n->bg_data);
    n->bg_data = NULL;
    n->bg_len = 0;
    n->bg_on = false;
}

void disk_crash(struct sim *s, struct node *n)
{
    size_t landed = (size_t)prng_below(&s->rng, n->n_pend + 1);
    size_t i = 0;
    for (struct wop *w = n->pend; w; i++) {
        struct wop *next = w->next;
        if (i < landed) {
            disk_write_parts(s, n, w, SIZE_MAX);
        } else if (i == landed && prng_chance(&s->rng, 500000)) {
            size_t parts = (size_t)prng_below(&s->rng, 2 + w->n_ents);
            TRACE(s, "n%llu torn write: %zu of %zu, %zu parts", U(n->id), i, n->n_pend, parts);
            disk_write_parts(s, n, w, parts);
        }
        wop_free(w);
        w = next;
    }
    if (n->n_pend)
        TRACE(s, "n%llu crash: %zu of %zu pending writes had landed", U(n->id), landed,
              n->n_pend);
    n->pend = n->pend_tail = NULL;
    n->n_pend = 0;
    bg_drop(n); /* the child dies with the node; its file is removed on open */
}

void disk_free(struct node *n)
{
    bg_drop(n);
    struct wop *w = n->pend;
    while (w) {
        struct wop *next = w->next;
        wop_free(w);
        w = next;
    }
    n->pend = n->pend_tail = NULL;
    n->n_pend = 0;
    free(n->disk.log);
    n->disk.log = NULL;
    n->disk.n = n->disk.cap = 0;
}

/* ---- the storage table ---------------------------------------------------- */

static struct wop *queue(struct node *n, enum wop_kind kind, uint64_t *seq)
{
    struct wop *w = xrealloc(NULL, sizeof *w);
    memset(w, 0, sizeof *w);
    w->kind = kind;
    w->seq = ++n->next_seq;
    if (n->pend_tail)
        n->pend_tail->next = w;
    else
        n->pend = w;
    n->pend_tail = w;
    n->n_pend++;
    if (seq)
        *seq = w->seq;
    return w;
}

static void io_hard_state(void *arg, struct raft_hard_state *hs)
{
    struct node *n = arg;
    *hs = n->disk.hs;
}

static raft_index io_last_index(void *arg)
{
    struct node *n = arg;
    return disk_last_index(&n->disk);
}

static int io_read(void *arg, raft_index lo, raft_index hi, struct raft_entry **ents, size_t *count)
{
    struct node *n = arg;
    size_t k = (size_t)(hi - lo + 1);
    struct raft_entry *e = xrealloc(NULL, k * (sizeof *e + SIM_DATA_MAX));
    uint8_t *p = (uint8_t *)(e + k);
    for (size_t i = 0; i < k; i++) {
        const struct dentry *de = disk_entry(&n->disk, lo + i);
        if (!de) {
            free(e);
            return -ERANGE;
        }
        e[i] = (struct raft_entry){.index = de->index, .term = de->term, .type = de->type,
                                   .len = de->len, .data = p};
        memcpy(p, de->data, de->len);
        p += SIM_DATA_MAX;
    }
    *ents = e;
    *count = k;
    return 0;
}

static int io_snapshot_load(void *arg, struct raft_snapshot_meta *meta, void **data, size_t *len)
{
    struct node *n = arg;
    if (!n->disk.has_snap)
        return -ENOENT;
    *meta = n->disk.snap;
    *len = n->disk.snap_blob->len;
    *data = xrealloc(NULL, *len);
    memcpy(*data, n->disk.snap_blob->data, *len);
    return 0;
}

static int io_append(void *arg, const struct raft_hard_state *hs, const struct raft_entry *e,
                     size_t count, uint64_t *seq)
{
    struct node *n = arg;
    struct sim *s = n->sim;
    for (size_t i = 0; i < count; i++) {
        if (e[i].len > SIM_DATA_MAX || (i && e[i].index != e[i - 1].index + 1) ||
            (i && e[i].term < e[i - 1].term)) {
            sim_fail(s, FAIL_CONTRACT, "n%llu: entries to append malformed at %llu (term %llu, "
                     "%u bytes)", U(n->id), U(e[i].index), U(e[i].term), e[i].len);
            return -EINVAL;
        }
    }
    struct wop *w = queue(n, WOP_APPEND, seq);
    if (hs) {
        w->has_hs = true;
        w->hs = *hs;
    }
    if (count) {
        w->ents = xrealloc(NULL, count * sizeof *w->ents);
        w->n_ents = count;
        for (size_t i = 0; i < count; i++) {
            w->ents[i] = (struct dentry){.index = e[i].index, .term = e[i].term,
                                         .type = e[i].type, .len = e[i].len};
            if (e[i].len)
                memcpy(w->ents[i].data, e[i].data, e[i].len);
        }
    }
    TRACE(s, "n%llu queue write %llu: hs %s(term %llu vote %llu), %zu entries %llu..%llu",
          U(n->id), U(w->seq), hs ? "" : "unchanged ", U(hs ? hs->term : 0),
          U(hs ? hs->vote : 0), count, U(count ? e[0].index : 0),
          U(count ? e[count - 1].index : 0));
    return 0;
}

static int io_snapshot_save(void *arg, const struct raft_snapshot_meta *meta, const void *data,
                            size_t len, uint64_t *seq)
{
    struct node *n = arg;
    struct wop *w = queue(n, WOP_SNAPSHOT, seq);
    w->snap = *meta;
    w->snap_blob = blob_new(n->sim, meta->index, meta->term, data, len);
    TRACE(n->sim, "n%llu queue write %llu: snapshot at %llu (term %llu, %zu bytes)", U(n->id),
          U(w->seq), U(meta->index), U(meta->term), len);
    return 0;
}

/* The newest snapshot on the disk or queued for it (src/store counts
 * queued ones too). */
static raft_index newest_snapshot(const struct node *n)
{
    raft_index idx = n->disk.has_snap ? n->disk.snap.index : 0;
    for (const struct wop *w = n->pend; w; w = w->next)
        if (w->kind == WOP_SNAPSHOT && w->snap.index > idx)
            idx = w->snap.index;
    return idx;
}

static int io_snapshot_begin(void *arg, const struct raft_snapshot_meta *meta, const struct kv *kv)
{
    struct node *n = arg;
    if (n->bg_on)
        return -EBUSY;
    if (kv_snapshot_to_buffer(kv, &n->bg_data, &n->bg_len) != KV_OK)
        return -ENOMEM;
    n->bg_on = true;
    n->bg_meta = *meta;
    TRACE(n->sim, "n%llu background snapshot at %llu begins (%zu bytes)", U(n->id),
          U(meta->index), n->bg_len);
    return 0;
}

static int io_snapshot_adopt(void *arg, const struct raft_snapshot_meta *meta, bool received,
                             uint64_t *seq)
{
    struct node *n = arg;
    if (received) {
        /* The simulated network carries snapshot bytes inside the message. */
        sim_fail(n->sim, FAIL_CONTRACT, "n%llu: adopt of a received snapshot %llu", U(n->id),
                 U(meta->index));
        return -EINVAL;
    }
    if (!n->bg_data || meta->index != n->bg_meta.index) {
        sim_fail(n->sim, FAIL_CONTRACT, "n%llu: adopt of snapshot %llu, but the background "
                 "write was %s", U(n->id), U(meta->index), n->bg_data ? "another" : "none");
        return -EINVAL;
    }
    if (newest_snapshot(n) >= meta->index) {
        TRACE(n->sim, "n%llu background snapshot at %llu is stale: %llu installed meanwhile",
              U(n->id), U(meta->index), U(newest_snapshot(n)));
        return -ESTALE;
    }
    return io_snapshot_save(arg, meta, n->bg_data, n->bg_len, seq);
}

void disk_bg_done(struct sim *s, struct node *n)
{
    /* Sometimes the child fails (disk full, killed): the replica must carry
     * on with the log it has. */
    int rv = prng_chance(&s->rng, 100000) ? -EIO : 0;
    TRACE(s, "n%llu background snapshot at %llu %s", U(n->id), U(n->bg_meta.index),
          rv ? "FAILED" : "written");
    n->bg_on = false;
    replica_turn(n->rp);
    replica_snapshot_written(n->rp, rv);
    bg_drop(n);
}

static int io_compact(void *arg, raft_index upto, uint64_t *seq)
{
    struct node *n = arg;
    struct wop *w = queue(n, WOP_COMPACT, seq);
    w->upto = upto;
    n->sim->st.snaps_taken++;
    return 0;
}

static int io_incarnations_load(void *arg, struct replica_incarnations *out)
{
    struct node *n = arg;
    if (!n->disk.has_incs)
        return -ENOENT;
    *out = n->disk.incs;
    return 0;
}

static int io_incarnations_save(void *arg, const struct replica_incarnations *inc, uint64_t *seq)
{
    struct node *n = arg;
    struct wop *w = queue(n, WOP_INCS, seq);
    w->incs = *inc;
    TRACE(n->sim, "n%llu queue write %llu: incarnation file as of %llu (%u records)", U(n->id),
          U(w->seq), U(inc->index), inc->n);
    return 0;
}

void disk_storage(struct node *n, struct replica_storage *io)
{
    *io = (struct replica_storage){
        .arg = n,
        .hard_state = io_hard_state,
        .last_index = io_last_index,
        .read = io_read,
        .snapshot_load = io_snapshot_load,
        .append = io_append,
        .snapshot_save = io_snapshot_save,
        .compact = io_compact,
        .incarnations_load = io_incarnations_load,
        .incarnations_save = io_incarnations_save,
    };
    if (n->sim->p.bg_snapshots) {
        io->snapshot_begin = io_snapshot_begin;
        io->snapshot_adopt = io_snapshot_adopt;
    }
}
