/* snapxfer.c - InstallSnapshot between nodes, streamed.  The leader reads
 * its snapshot file one chunk at a time and never has more than a fixed
 * window of bytes queued on a link; the follower writes the chunks to the
 * store's receive file from a thread (and stops reading the link while
 * that thread is behind), checks the data's CRC, loads the dictionary from
 * the file (mapped, not read) and only then hands the core the snapshot's
 * metadata (replica_snapshot_received).  Neither side holds a whole
 * snapshot in memory.  A transfer cut by a leader change, a crash or a
 * partition is dropped on both sides; the core asks again, from offset 0.
 */
#include "node/snapxfer.h"

#include "node/node_int.h"

#include "common/log.h"
#include "kv/kv.h"
#include "net/ratelimit.h"
#include "store/store.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Chunk size (capped by half the peer frame limit) and the most data
 * bytes queued on one link: 4 MiB in flight at 10 ms ticks is far more
 * than a disk or a 1 Gbit/s link delivers, and bounds the sender's memory. */
#define SNAP_CHUNK (1u << 20)
#define SNAP_WINDOW_CHUNKS 4
/* A follower checks and loads a snapshot after the last chunk (seconds at
 * millions of keys) and acknowledges only then; the core's snapshot timeout
 * is shorter and asks again.  The same snapshot is not sent again over the
 * same connection within this long: at 1 M keys it went out four times.
 * The load takes longer the larger the file (11-14 s for 1.1 GB at 10 M
 * keys, so a fixed 10 s sent it twice), hence a second per
 * SNAP_LOAD_BYTES_PER_S on top.  Nor is a newer one: when the leader
 * snapshots again meanwhile, the core asks for the new one as soon as a
 * heartbeat answer unblocks its probe and the loading follower refuses
 * it, and at 10 M keys that made a member add fetch and load a second
 * 1.1 GB.  The core keeps the log after the first for a loading follower
 * (snapshot.c), so once loaded it continues with entries.  Waiting long
 * costs nothing when the follower is gone: a link that goes down clears
 * done_index. */
#define SNAP_RESEND_AFTER_S 10.0
#define SNAP_LOAD_BYTES_PER_S (25.0 * 1024 * 1024)

static size_t chunk_size(const struct node *n)
{
    size_t chunk = SNAP_CHUNK;
    if (chunk > n->peer_limits.max_frame / 2)
        chunk = n->peer_limits.max_frame / 2;
    return chunk;
}

/* ---- sending ---------------------------------------------------------- */

/* Collects tx's finished reads; whether none is on the snapread thread any
 * more.  Once an orphaned transfer's last read is in, its fd is closed. */
static bool tx_reads_idle(struct snap_tx *tx)
{
    bool idle = true;
    for (unsigned i = 0; i < SNAP_READS; i++)
        idle &= snapread_collect(&tx->slot[i].rd);
    if (idle && tx->orphan) {
        store_snapshot_reader_close(tx->orphan_fd);
        tx->orphan = false;
    }
    return idle;
}

static void tx_free_bufs(struct snap_tx *tx)
{
    for (unsigned i = 0; i < SNAP_READS; i++) {
        free(tx->slot[i].buf);
        tx->slot[i].buf = NULL;
    }
}

void snapxfer_send_close(struct snap_tx *tx)
{
    bool idle = tx_reads_idle(tx);
    if (tx->active) {
        tx->active = false;
        tx->head = tx->used = 0;
        if (idle || tx->orphan) {
            store_snapshot_reader_close(tx->src.fd); /* the thread reads none of ours */
        } else {
            tx->orphan = true; /* its reads use src.fd: closed when they are in */
            tx->orphan_fd = tx->src.fd;
        }
    }
    if (idle)
        tx_free_bufs(tx);
}

void snapxfer_send_abort(struct node *n, struct peer_link *pl, const char *why)
{
    struct snap_tx *tx = &pl->tx;
    if (!tx->active)
        return;
    log_info("snapshot: transfer of %llu to node %u stopped after %llu of %llu bytes: %s",
             (unsigned long long)tx->src.meta.index, pl->id, (unsigned long long)tx->sent,
             (unsigned long long)tx->src.len, why);
    snapxfer_send_close(tx);
    /* The core waits in SNAPSHOT state for this follower: let it probe
     * again now rather than after its snapshot timeout. */
    replica_report_snapshot(n->rp, pl->id, false);
    node_mark_dirty(n);
}

void snapxfer_link_down(struct node *n, struct peer_link *pl)
{
    pl->tx.done_index = 0;
    snapxfer_send_abort(n, pl, "link down");
}

void snapxfer_send(struct node *n, struct peer_link *pl, const struct raft_msg *m)
{
    struct snap_tx *tx = &pl->tx;
    struct storage_snap_source src;
    int rv = storage_store_snapshot_source(n->storage, &src);
    if (rv < 0) {
        log_warn("snapshot: cannot open the snapshot for node %u: %s", pl->id, strerror(-rv));
        return;
    }
    if ((tx->active && tx->src.meta.index == src.meta.index) ||
        (!tx->active && tx->done_index && tx->done_index <= src.meta.index &&
         ev_time() - tx->done_at < SNAP_RESEND_AFTER_S + (double)tx->done_len / SNAP_LOAD_BYTES_PER_S)) {
        /* The core asked again (its snapshot timeout) while this one is on
         * its way, or is being loaded: let it arrive rather than start over. */
        store_snapshot_reader_close(src.fd);
        return;
    }
    if (tx->active)
        snapxfer_send_abort(n, pl, "a newer snapshot replaces it");
    /* Send what the store holds, under its own metadata: it is never older
     * than what the core asked for, and the follower's ack sorts out the
     * rest. */
    tx->msg = *m;
    tx->msg.snap = src.meta;
    tx->msg.index = src.meta.index;
    tx->msg.log_term = src.meta.term;
    tx->msg.snap_data = NULL;
    tx->msg.snap_len = 0;
    tx->src = src;
    tx->sent = tx->read_off = 0;
    tx->head = tx->used = 0;
    tx->started = ev_time();
    tx->active = true;
    /* The store's newest, not necessarily the core's: tell it which, so
     * compaction keeps what follows this one. */
    replica_snapshot_shipping(n->rp, pl->id, src.meta.index);
    log_info("snapshot: sending snapshot %llu (%llu bytes) to node %u",
             (unsigned long long)src.meta.index, (unsigned long long)src.len, pl->id);
    snapxfer_pump(n, pl);
}

/* Queues reads ahead of what is sent, up to SNAP_READS chunks and what the
 * rate allows by now.  false: out of memory. */
static bool tx_read_ahead(struct node *n, struct snap_tx *tx, size_t chunk)
{
    uint64_t rate = n->cfg->cluster.snapshot_send_rate;
    /* An empty snapshot still needs its one (last) chunk: a read of 0. */
    while (tx->used < SNAP_READS &&
           (tx->read_off < tx->src.len || (tx->src.len == 0 && tx->sent == 0 && tx->used == 0))) {
        size_t k = tx->src.len - tx->read_off < chunk ? (size_t)(tx->src.len - tx->read_off) : chunk;
        if (rate && k) {
            /* With a rate: what the time since the start allows (each
             * tick pumps). */
            double budget = (ev_time() - tx->started) * (double)rate - (double)tx->read_off;
            if (budget < 1.0)
                return true;
            if ((double)k > budget)
                k = (size_t)budget;
        }
        struct snap_slot *sl = &tx->slot[(tx->head + tx->used) % SNAP_READS];
        if (!sl->buf && !(sl->buf = malloc(chunk)))
            return false;
        sl->rd = (struct snapread_req){.fd = tx->src.fd, .off = tx->src.off + tx->read_off,
                                       .len = k, .buf = sl->buf};
        snapread_submit(&n->snapread, &sl->rd);
        tx->read_off += k;
        tx->used++;
        if (!k)
            break;
    }
    return true;
}

void snapxfer_pump(struct node *n, struct peer_link *pl)
{
    struct snap_tx *tx = &pl->tx;
    bool idle = tx_reads_idle(tx);
    if (!tx->active) {
        if (idle)
            tx_free_bufs(tx); /* a closed transfer's last reads are in */
        return;
    }
    if (tx->orphan)
        return; /* the closed transfer's reads finish before this one reads */
    if (n->role != RAFT_LEADER || n->term != tx->msg.term) {
        snapxfer_send_abort(n, pl, "no longer the leader of that term");
        return;
    }
    struct net_conn *c = net_dial_conn(pl->dial);
    if (!c) {
        snapxfer_send_abort(n, pl, "link down");
        return;
    }
    size_t chunk = chunk_size(n);
    if (!tx_read_ahead(n, tx, chunk)) {
        snapxfer_send_abort(n, pl, "out of memory");
        return;
    }
    /* Send the chunks that are in, in order, while the link's window has
     * room; each one sent frees a slot for the next read. */
    while (tx->used && !tx->slot[tx->head].rd.busy &&
           net_conn_pending_output(c) < SNAP_WINDOW_CHUNKS * chunk) {
        struct snap_slot *sl = &tx->slot[tx->head];
        size_t k = sl->rd.len;
        if (sl->rd.rv != (ssize_t)k) {
            snapxfer_send_abort(n, pl, sl->rd.rv < 0 ? strerror((int)-sl->rd.rv)
                                                     : "snapshot file shorter than its header");
            return;
        }
        struct peer_chunk pc = {.offset = tx->sent, .total = tx->src.len, .data = sl->buf,
                                .len = k, .last = tx->sent + k == tx->src.len, .has_crc = true,
                                .crc = tx->src.crc};
        const struct ProtobufCMessage *pm = peer_encode(&n->enc, &n->pident, &tx->msg, &pc);
        int rv = pm ? net_dial_send_msg(pl->dial, pm) : -ENOMEM;
        if (rv < 0) {
            snapxfer_send_abort(n, pl, strerror(-rv));
            return;
        }
        tx->sent += k;
        tx->head = (tx->head + 1) % SNAP_READS;
        tx->used--;
        if (pc.last) {
            log_event(LOG_INFO, "snapshot", NULL,
                      "sent snapshot %llu (%llu bytes) to node %u in %.0f ms",
                      (unsigned long long)tx->src.meta.index, (unsigned long long)tx->src.len,
                      pl->id, (ev_time() - tx->started) * 1e3);
            snapxfer_send_close(tx);
            tx->done_index = tx->src.meta.index;
            tx->done_len = tx->src.len;
            tx->done_at = ev_time();
            return;
        }
        if (!tx_read_ahead(n, tx, chunk)) {
            snapxfer_send_abort(n, pl, "out of memory");
            return;
        }
    }
}

void snapxfer_read_done(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)loop, (void)revents;
    snapxfer_pump_all(w->data);
}

void snapxfer_pump_all(struct node *n)
{
    for (unsigned i = 0; i < n->n_peers; i++)
        snapxfer_pump(n, &n->peers[i]);
}

/* ---- receiving -------------------------------------------------------- */

/* The file work, as jobs run in order on rx->q's thread (or on the spot). */
enum rx_op { RX_OPEN, RX_WRITE, RX_DROP };

struct rx_job {
    struct workq_job job; /* first */
    struct snap_rx *rx;
    enum rx_op op;
    uint64_t gen;
    struct storage_store *ss;        /* RX_OPEN */
    struct raft_snapshot_meta meta;  /* RX_OPEN */
    const void *data;                /* RX_WRITE */
    size_t len;
    void *own; /* a heap block data lies in: freed once written */
};

void snaprx_init(struct snap_rx *rx, struct workq *q, void (*wake)(void *arg), void *arg)
{
    *rx = (struct snap_rx){.q = q, .wake = wake, .wake_arg = arg};
}

/* The file is gone; the loop learns it from failed_gen (snaprx_check). */
static void rx_fail(struct snap_rx *rx, uint64_t gen, int rv)
{
    if (rx->w)
        store_snapshot_stream_close(rx->w, false);
    rx->w = NULL;
    atomic_store_explicit(&rx->failed_rv, rv, memory_order_relaxed);
    atomic_store_explicit(&rx->failed_gen, gen, memory_order_release);
}

static void rx_run(struct rx_job *j)
{
    struct snap_rx *rx = j->rx;
    int rv;
    switch (j->op) {
    case RX_OPEN:
        /* a file left over (the drop before this one always comes first,
         * but the file must not outlive the transfer in any case) */
        if (rx->w)
            store_snapshot_stream_close(rx->w, false);
        rx->w = NULL;
        if ((rv = storage_store_rx_open(j->ss, &j->meta, &rx->w)) < 0) {
            rx->w = NULL;
            rx_fail(rx, j->gen, rv);
        }
        break;
    case RX_WRITE:
        /* no file: this transfer failed already, and its chunks go nowhere */
        if (rx->w && (rv = store_snapshot_stream_write(rx->w, j->data, j->len)) < 0)
            rx_fail(rx, j->gen, rv);
        break;
    case RX_DROP:
        if (rx->w)
            store_snapshot_stream_close(rx->w, false);
        rx->w = NULL;
        break;
    }
    free(j->own);
}

static void rx_job_run(struct workq_job *wj)
{
    struct rx_job *j = (struct rx_job *)wj;
    struct snap_rx *rx = j->rx;
    rx_run(j);
    free(j);
    /* release: the loop that counts this job done sees rx->w as it left it */
    atomic_fetch_add_explicit(&rx->done, 1, memory_order_release);
    rx->wake(rx->wake_arg);
}

unsigned snaprx_pending(const struct snap_rx *rx)
{
    return rx->queued - atomic_load_explicit(&rx->done, memory_order_acquire);
}

bool snaprx_idle(const struct snap_rx *rx)
{
    return snaprx_pending(rx) == 0;
}

/* Runs t's work after whatever is queued: on the thread, or here when
 * there is none.  Out of memory for the job, the loop waits for the queue
 * to drain (at most a few chunks' writes) and does it itself. */
static void rx_do(struct snap_rx *rx, struct rx_job *t)
{
    t->rx = rx;
    if (rx->q) {
        struct rx_job *j = malloc(sizeof(*j));
        if (j && t->op == RX_WRITE && !t->own && t->len) {
            /* bytes that are not ours to keep: the thread writes a copy */
            if ((t->own = malloc(t->len)))
                t->data = memcpy(t->own, t->data, t->len);
            else
                free(j), j = NULL;
        }
        if (j) {
            *j = *t;
            j->job.run = rx_job_run;
            rx->queued++;
            if (workq_push(rx->q, &j->job))
                return;
            /* No thread (none could start, or it is stopped): nothing is
             * queued either, so doing it here keeps the order. */
            rx->queued--;
            *t = *j;
            free(j);
        } else {
            for (int i = 0; !snaprx_idle(rx); i++)
                (void)usleep(i < 100 ? 100 : 1000);
        }
    }
    rx_run(t);
}

int snaprx_check(struct snap_rx *rx)
{
    if (!rx->active || rx->finishing ||
        atomic_load_explicit(&rx->failed_gen, memory_order_acquire) != rx->gen)
        return 0;
    int rv = atomic_load_explicit(&rx->failed_rv, memory_order_relaxed);
    log_warn("snapshot: receiving snapshot %llu stopped after %llu of %llu bytes: "
             "cannot write it: %s",
             (unsigned long long)rx->msg.snap.index, (unsigned long long)rx->got,
             (unsigned long long)rx->total, strerror(-rv));
    rx->active = false; /* the failure closed the file */
    rx->owner = NULL;
    return rv;
}

void snaprx_abort(struct snap_rx *rx, const char *why)
{
    if (!rx->active || rx->finishing)
        return;
    log_info("snapshot: receiving snapshot %llu stopped after %llu of %llu bytes: %s",
             (unsigned long long)rx->msg.snap.index, (unsigned long long)rx->got,
             (unsigned long long)rx->total, why);
    /* Deleting a file of a gigabyte takes the file system a while: the
     * thread does it. */
    rx_do(rx, &(struct rx_job){.op = RX_DROP, .gen = rx->gen});
    rx->active = false;
    rx->owner = NULL;
}

int snaprx_finish(struct snap_rx *rx, struct storage_store *ss, const struct kv_config *kvc,
                  struct kv **kv)
{
    int rv;
    if (!rx->w) {
        /* the file is gone: a write failed after the last chunk came */
        rv = atomic_load_explicit(&rx->failed_gen, memory_order_acquire) == rx->gen
                 ? atomic_load_explicit(&rx->failed_rv, memory_order_relaxed)
                 : -EIO;
    } else {
        rv = storage_store_rx_finish(ss, rx->w, rx->has_crc ? &rx->crc : NULL, kvc, kv);
        rx->w = NULL;
    }
    if (rv < 0) {
        log_warn("snapshot: snapshot %llu from node %llu (%llu bytes) is unusable: %s",
                 (unsigned long long)rx->msg.snap.index, (unsigned long long)rx->msg.from,
                 (unsigned long long)rx->total,
                 rv == -EBADMSG ? "CRC mismatch or bad contents" : strerror(-rv));
        return rv;
    }
    return SNAPRX_DONE;
}

void snaprx_finished(struct snap_rx *rx)
{
    rx->finishing = false;
    rx->active = false;
    rx->owner = NULL;
}

void snaprx_stop(struct snap_rx *rx, const char *why)
{
    /* the transfer in progress, or one all in whose check never started */
    if (rx->active && !rx->finishing)
        snaprx_abort(rx, why);
    if (rx->q)
        workq_stop(rx->q);
    if (rx->w)
        store_snapshot_stream_close(rx->w, false);
    rx->w = NULL;
    rx->active = rx->finishing = false;
    rx->owner = NULL;
}

/* Whether chunk c of m, from owner, is the next piece of the transfer in
 * progress. */
static bool continues(const struct snap_rx *rx, const void *owner, const struct raft_msg *m,
                      const struct peer_chunk *c)
{
    return rx->active && !rx->finishing && rx->owner == owner &&
           rx->msg.snap.index == m->snap.index && rx->msg.snap.term == m->snap.term &&
           rx->total == c->total && rx->got == c->offset;
}

int snaprx_chunk(struct snap_rx *rx, struct storage_store *ss, const void *owner,
                 const struct raft_msg *m, const struct peer_chunk *c, void **own, double now)
{
    if (c->offset == 0 && !rx->finishing) {
        /* A new transfer (from this leader or another) replaces any other:
         * the store has one receive file.  (While one is being checked and
         * loaded, that one owns the file: whatever comes is dropped, and
         * the sender repeats it when its core asks.) */
        snaprx_abort(rx, "a new transfer started");
        rx->gen++;
        rx->active = true;
        rx->owner = owner;
        rx->msg = *m;
        rx->msg.snap_data = NULL;
        rx->msg.snap_len = 0;
        rx->total = c->total;
        rx->got = 0;
        rx->started = now;
        rx_do(rx, &(struct rx_job){.op = RX_OPEN, .gen = rx->gen, .ss = ss, .meta = m->snap});
    } else if (!continues(rx, owner, m, c)) {
        /* A piece of a transfer we are not receiving (cut short, or
         * replaced by a newer one): the sender starts over when its core
         * asks again. */
        static struct net_ratelimit rl = {.interval = 10.0};
        uint64_t more;
        if (net_ratelimit_ok(&rl, now, &more))
            log_info("snapshot: dropped a chunk of snapshot %llu at offset %llu from node %llu: "
                     "not the transfer in progress (%llu more not logged)",
                     (unsigned long long)m->snap.index, (unsigned long long)c->offset,
                     (unsigned long long)m->from, (unsigned long long)more);
        if (rx->active && rx->owner == owner)
            snaprx_abort(rx, "a chunk out of order");
        return SNAPRX_MORE;
    }
    struct rx_job t = {.op = RX_WRITE, .gen = rx->gen, .data = c->data, .len = c->len};
    if (own && *own) {
        t.own = *own;
        *own = NULL;
    }
    rx_do(rx, &t);
    /* Without a thread a failure shows at once; with one, at a later
     * chunk or the wake after it. */
    int rv = snaprx_check(rx);
    if (rv < 0)
        return rv;
    rx->got += c->len;
    /* The step message carries the term and commit of the last chunk's
     * sender: the same leader and term (it stops a transfer otherwise). */
    rx->msg.term = m->term;
    rx->msg.commit = m->commit;
    if (!c->last)
        return SNAPRX_MORE;
    rx->has_crc = c->has_crc;
    rx->crc = c->crc;
    rx->finishing = true;
    return SNAPRX_LAST;
}

/* ---- the node's receiver: file work and the last step off the loop ---- */

/* Chunks queued for the writer thread before the sending connection is
 * no longer read, and the number at which it is read again: with TCP's
 * own flow control behind it, this bounds what a receiver holds when its
 * disk is slower than the link. */
#define RX_QUEUE_MAX 4
#define RX_QUEUE_RESUME 1

static void *rx_thread(void *arg)
{
    node_background_thread();
    struct node *n = arg;
    n->rx_job.rv = snaprx_finish(&n->rx, n->storage, &n->rx_job.kvc, &n->rx_job.kv);
    n->rx_job.loaded_at = ev_time();
    ev_async_send(n->loop, &n->rx_job.done);
    return NULL;
}

/* The receive file checked and loaded (or not): hand it to the core. */
static void rx_deliver(struct node *n)
{
    snaprx_finished(&n->rx);
    struct kv *kv = n->rx_job.kv;
    n->rx_job.kv = NULL;
    if (n->rx_job.rv != SNAPRX_DONE)
        return;
    int rv = replica_snapshot_received(n->rp, &n->rx.msg, kv);
    if (rv == 0 && n->m) {
        metrics_counter_inc(n->m->snapshots_installed);
        metrics_hist_observe(n->m->snapshot_install_seconds, n->rx_job.loaded_at - n->rx.started);
    }
    log_info("snapshot: received snapshot %llu (%llu bytes) from node %llu in %.0f ms, "
             "checked and loaded in %.0f ms%s%s",
             (unsigned long long)n->rx.msg.snap.index, (unsigned long long)n->rx.total,
             (unsigned long long)n->rx.msg.from, (n->rx_job.last_at - n->rx.started) * 1e3,
             (n->rx_job.loaded_at - n->rx_job.last_at) * 1e3,
             n->rx_job.on_loop ? " on the loop (no thread)" : "",
             rv == -ESTALE ? "; not needed any more (dropped)" : "");
    node_mark_dirty(n);
}

static void on_rx_loaded(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)loop, (void)revents;
    struct node *n = w->data;
    if (!n->rx_job.running)
        return;
    pthread_join(n->rx_job.thread, NULL);
    n->rx_job.running = false;
    rx_deliver(n);
}

/* All chunks in and written: check and load the file on a thread. */
static void rx_finish_when_written(struct node *n)
{
    if (!n->rx_job.want || !snaprx_idle(&n->rx))
        return;
    n->rx_job.want = false;
    n->rx_job.kv = NULL;
    n->rx_job.last_at = ev_time();
    n->rx_job.on_loop = false;
    if (!ev_is_active(&n->rx_job.done)) {
        ev_async_init(&n->rx_job.done, on_rx_loaded);
        n->rx_job.done.data = n;
        ev_async_start(n->loop, &n->rx_job.done);
    }
    if (pthread_create(&n->rx_job.thread, NULL, rx_thread, n) == 0) {
        n->rx_job.running = true;
        return;
    }
    /* No thread to be had: do it here, the loop pauses for the load. */
    n->rx_job.on_loop = true;
    n->rx_job.rv = snaprx_finish(&n->rx, n->storage, &n->rx_job.kvc, &n->rx_job.kv);
    n->rx_job.loaded_at = ev_time();
    rx_deliver(n);
}

static void rx_resume_reading(struct node *n)
{
    if (n->rx_paused && snaprx_pending(&n->rx) <= RX_QUEUE_RESUME) {
        log_debug("snapshot: the writer caught up: reading node %llu's chunks again",
                  (unsigned long long)n->rx.msg.from);
        net_conn_set_reading(n->rx_paused, true);
        n->rx_paused = NULL;
        n->rx_paused_in = NULL;
    }
}

/* From the writer thread: a job is done. */
static void rx_wake(void *arg)
{
    struct node *n = arg;
    ev_async_send(n->loop, &n->rx_written);
}

static void on_rx_written(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)loop, (void)revents;
    struct node *n = w->data;
    (void)snaprx_check(&n->rx); /* a failed write stops the transfer (logged) */
    rx_resume_reading(n);
    rx_finish_when_written(n);
}

void snapxfer_recv_init(struct node *n)
{
    workq_init(&n->rx_writer, false);
    snaprx_init(&n->rx, &n->rx_writer, rx_wake, n);
    ev_async_init(&n->rx_written, on_rx_written);
    n->rx_written.data = n;
}

void snapxfer_recv(struct node *n, struct peer_in *in, struct net_conn *c,
                   const struct raft_msg *m, const struct peer_chunk *chunk, void **own)
{
    if (!ev_is_active(&n->rx_written))
        ev_async_start(n->loop, &n->rx_written);
    int rv = snaprx_chunk(&n->rx, n->storage, in, m, chunk, own, ev_now(n->loop));
    if (n->rx_paused != c && snaprx_pending(&n->rx) >= RX_QUEUE_MAX) {
        /* The disk is behind the link: let TCP hold the rest.  Only the
         * connection whose chunks are queued is held; one held before
         * (its transfer replaced by this one) sends nothing that is kept. */
        if (n->rx_paused)
            net_conn_set_reading(n->rx_paused, true);
        log_debug("snapshot: %u chunks wait for the disk: not reading node %llu's for now",
                  snaprx_pending(&n->rx), (unsigned long long)m->from);
        net_conn_set_reading(c, false);
        n->rx_paused = c;
        n->rx_paused_in = in;
    }
    if (rv != SNAPRX_LAST)
        return;
    replica_kv_config(n->rp, &n->rx_job.kvc);
    n->rx_job.want = true;
    rx_finish_when_written(n);
}

void snapxfer_recv_abort(struct node *n, const char *why)
{
    if (n->rx_job.running) {
        /* a load in progress finishes first (it owns the file) */
        pthread_join(n->rx_job.thread, NULL);
        n->rx_job.running = false;
        snaprx_finished(&n->rx);
    }
    n->rx_job.want = false;
    kv_free(n->rx_job.kv);
    n->rx_job.kv = NULL;
    if (ev_is_active(&n->rx_job.done))
        ev_async_stop(n->loop, &n->rx_job.done);
    snaprx_stop(&n->rx, why);
    if (ev_is_active(&n->rx_written))
        ev_async_stop(n->loop, &n->rx_written);
}

void snapxfer_conn_closed(struct node *n, const struct peer_in *in)
{
    if (n->rx_paused_in == in) {
        n->rx_paused = NULL;
        n->rx_paused_in = NULL;
    }
    if (n->rx.active && n->rx.owner == in)
        snaprx_abort(&n->rx, "the connection closed");
}
