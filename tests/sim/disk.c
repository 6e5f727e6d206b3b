/* disk.c - each node's simulated disk and its queue of pending writes.
 * Ready batches reach the disk later and in order; only then is
 * raft_persisted() called and are the batch's after-persist messages sent.
 * A crash keeps a random prefix of the queue, possibly torn inside a batch
 * (in raft.h's order: hard state, snapshot, entries), and loses the rest. */
#include <stdlib.h>
#include <string.h>

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
    if (d->has_snap && m->index < d->snap.index)
        return; /* never replace a newer snapshot by an older one */
    /* Keep the log after the snapshot only if it continues from it; an entry
     * with another term at that index means the rest is a dead branch. */
    const struct dentry *e = disk_entry(d, m->index);
    if (e && e->term == m->term)
        disk_drop_through(d, m->index);
    else
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

/* Write parts of a batch: 0 nothing, 1 hard state, 2 + snapshot, 2 + k
 * entries; SIZE_MAX the whole batch. */
static void disk_write_parts(struct sim *s, struct node *n, const struct batch *b, size_t parts)
{
    if (parts == 0)
        return;
    if (b->has_hs)
        n->disk.hs = b->hs;
    if (parts == 1)
        return;
    if (b->has_snap)
        disk_put_snapshot(n, &b->snap, b->snap_blob);
    size_t k = parts - 2 < b->n_ents ? parts - 2 : b->n_ents;
    disk_put_entries(s, n, b->ents, k);
}

void batch_free(struct batch *b)
{
    for (size_t i = 0; i < b->n_msgs; i++)
        free(b->msgs[i]);
    free(b->msgs);
    free(b->ents);
    free(b);
}

/* The oldest pending write lands: make it durable, tell the core, and let
 * the messages that waited for it go. */
static void disk_complete_one(struct sim *s, struct node *n)
{
    struct batch *b = n->pend;
    if (!b)
        return;
    n->pend = b->next;
    if (!n->pend)
        n->pend_tail = NULL;
    n->n_pend--;
    disk_write_parts(s, n, b, SIZE_MAX);
    n->dirty = true;

    if (b->local_snap) {
        n->local_snap_pending = 0;
        if (!n->mem_snap || n->mem_snap->index < b->snap.index)
            n->mem_snap = b->snap_blob;
        int rc = raft_snapshot_taken(n->r, b->snap.index);
        s->st.snaps_taken++;
        TRACE(s, "n%llu snapshot at %llu durable: raft_snapshot_taken -> %s", U(n->id),
              U(b->snap.index), raft_strerror(rc));
    }
    if (b->n_ents) {
        const struct dentry *last = &b->ents[b->n_ents - 1];
        int rc = raft_persisted(n->r, last->index, last->term);
        TRACE(s, "n%llu persisted %llu..%llu (term %llu)%s%s", U(n->id), U(b->ents[0].index),
              U(last->index), U(last->term), rc ? ": " : "", rc ? raft_strerror(rc) : "");
    }
    for (size_t i = 0; i < b->n_msgs; i++) {
        net_send(s, n, b->msgs[i]);
        b->msgs[i] = NULL;
    }
    b->n_msgs = 0;
    batch_free(b);
}

/* One fsync: the oldest max pending writes land, and any batches right
 * behind them that only wait to send messages go along. */
void disk_complete(struct sim *s, struct node *n, size_t max)
{
    for (size_t k = 0; n->up && n->pend && !s->fail; k++) {
        const struct batch *b = n->pend;
        if (k >= max && (b->has_hs || b->has_snap || b->n_ents))
            break;
        disk_complete_one(s, n);
    }
}

void disk_queue(struct sim *s, struct node *n, struct batch *b)
{
    if (!b->has_hs && !b->has_snap && !b->n_ents && !b->n_msgs) {
        batch_free(b);
        return;
    }
    if (n->pend_tail)
        n->pend_tail->next = b;
    else
        n->pend = b;
    n->pend_tail = b;
    n->n_pend++;
    /* Nothing to write and nothing ahead of it: its messages may go now. */
    if (n->pend == b && !b->has_hs && !b->has_snap && !b->n_ents)
        disk_complete(s, n, 0);
}

void disk_crash(struct sim *s, struct node *n)
{
    size_t landed = (size_t)prng_below(&s->rng, n->n_pend + 1);
    size_t i = 0;
    for (struct batch *b = n->pend; b; i++) {
        struct batch *next = b->next;
        if (i < landed) {
            disk_write_parts(s, n, b, SIZE_MAX);
        } else if (i == landed && prng_chance(&s->rng, 500000)) {
            size_t parts = (size_t)prng_below(&s->rng, 2 + b->n_ents);
            TRACE(s, "n%llu torn write: batch %zu of %zu, %zu parts", U(n->id), i, n->n_pend,
                  parts);
            disk_write_parts(s, n, b, parts);
        }
        batch_free(b);
        b = next;
    }
    if (n->n_pend)
        TRACE(s, "n%llu crash: %zu of %zu pending writes had landed", U(n->id), landed,
              n->n_pend);
    n->pend = n->pend_tail = NULL;
    n->n_pend = 0;
}

void disk_free(struct disk *d)
{
    free(d->log);
    d->log = NULL;
    d->n = d->cap = 0;
}
