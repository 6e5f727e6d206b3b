/* writer.c - the writer thread: takes everything queued, writes it in order,
 * syncs once (group commit), then publishes progress and pokes the eventfd.
 * On the first write/sync failure it marks the store failed and stops doing
 * I/O for good: no retries that could reorder or half-apply work. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/endian.h"
#include "store/internal.h"

static int do_append(struct store *st, const struct op *op, struct serr *e)
{
    struct seglog *lg = &st->seglog;
    int rc;
    if (op->first <= seglog_last(lg) && (rc = seglog_truncate(lg, op->first, e)) < 0)
        return rc;
    const uint8_t *p = op->buf;
    for (size_t i = 0; i < op->n; i++) {
        size_t len = REC_HDR + get_le32(p + 4);
        if ((rc = seglog_put(lg, p, len, op->first + i, get_le64(p + 16), e)) < 0)
            return rc;
        p += len;
    }
    return 0;
}

static int do_snapshot(struct store *st, const struct op *op, struct serr *e)
{
    int rc = seglog_flush(&st->seglog, e);
    if (rc < 0)
        return rc;
    struct snap_file nsf;
    if (op->kind == OP_ADOPT)
        rc = snap_adopt(st->snapdir, st->snapdirfd, &op->meta, op->src, &nsf, e);
    else
        rc = snap_save(st->snapdir, st->snapdirfd, &op->meta, op->buf, op->len, &nsf, e);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&st->mu);
    struct snap_file old = st->snap;
    st->snap = nsf;
    pthread_mutex_unlock(&st->mu);
    /* Its last close frees the replaced file's blocks: not under the lock
     * the loop takes, not on this thread either (sys_close_detached). */
    sys_close_detached(&old.fd, 1);
    /* Snapshot first, then drop the log: a crash in between leaves a log
     * that does not continue the snapshot, which store_open() discards. */
    if (op->reset)
        return seglog_reset(&st->seglog, op->meta.index + 1, op->meta.term, e);
    return 0;
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int process(struct store *st, struct op *ops, uint64_t *nrec, double *sync_s,
                   struct serr *e)
{
    bool hs_dirty = false;
    struct store_hard_state hs = {0};
    int rc = 0;
    for (struct op *op = ops; op && rc == 0; op = op->next) {
        switch (op->kind) {
        case OP_APPEND:
            if (op->has_hs) {
                hs = op->hs;
                hs_dirty = true;
            }
            if (op->n)
                rc = do_append(st, op, e);
            *nrec += op->n;
            break;
        case OP_SNAP:
        case OP_ADOPT:
            rc = do_snapshot(st, op, e);
            break;
        case OP_COMPACT:
            if ((rc = seglog_flush(&st->seglog, e)) == 0)
                rc = seglog_compact(&st->seglog, op->upto, e);
            break;
        case OP_INC:
            /* Its content does not depend on the log: any order against
             * the log writes of this batch is fine. */
            rc = inc_save(st->dir, st->dirfd, op->buf, op->len, e);
            break;
        }
    }
    if (rc == 0)
        rc = seglog_flush(&st->seglog, e);
    /* Only the newest hard state matters; any order against the log is fine
     * because nothing of this batch is reported before both are synced. */
    if (rc == 0 && hs_dirty)
        rc = meta_save(st->dir, st->dirfd, &hs, e);
    if (rc == 0) {
        double t0 = mono_s();
        rc = seglog_sync(&st->seglog, e);
        *sync_s = mono_s() - t0;
    }
    if (rc == 0 && hs_dirty) {
        pthread_mutex_lock(&st->mu);
        st->durable_hs = hs;
        pthread_mutex_unlock(&st->mu);
    }
    return rc;
}

void op_free_list(struct op *op)
{
    while (op) {
        struct op *next = op->next;
        free(op);
        op = next;
    }
}

static void recompute_min_first(struct store *st)
{
    st->q_min_first = UINT64_MAX;
    for (struct op *op = st->qhead; op; op = op->next) {
        if (op->kind == OP_APPEND && op->n && op->first < st->q_min_first)
            st->q_min_first = op->first;
        if (op->kind == OP_SNAP && op->reset)
            st->q_min_first = 1;
    }
}

/* Give producers that were just woken by the last sync a moment to queue
 * their next records, so they share the next sync instead of splitting into
 * two alternating half-size groups.  Bounded; off by default. */
static void batch_wait(struct store *st)
{
    if (!st->opts.batch_wait_us || st->q_records >= st->last_batch_records)
        return;
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    dl.tv_nsec += (long)st->opts.batch_wait_us * 1000;
    dl.tv_sec += dl.tv_nsec / 1000000000;
    dl.tv_nsec %= 1000000000;
    st->batch_waiting = true;
    while (st->q_records < st->last_batch_records && !st->stop && !st->crash)
        if (pthread_cond_timedwait(&st->work, &st->mu, &dl) == ETIMEDOUT)
            break;
    st->batch_waiting = false;
}

static void *writer_main(void *arg)
{
    struct store *st = arg;
    pthread_mutex_lock(&st->mu);
    for (;;) {
        while (!st->qhead && !st->stop && !st->crash)
            pthread_cond_wait(&st->work, &st->mu);
        if (st->crash || (!st->qhead && st->stop))
            break;
        if (st->failed) {
            /* Never durable; the owner learned why from store_poll(). */
            st->qtail->next = st->spent;
            st->spent = st->qhead;
            st->qhead = st->qtail = NULL;
            st->q_records = 0;
            continue;
        }
        batch_wait(st);
        /* Take a prefix of the queue: whole ops, at least one. */
        struct op *ops = st->qhead, *last = ops;
        uint64_t bytes = last->len, recs = last->n;
        while (last->next && bytes + last->next->len <= STORE_MAX_UNSYNCED) {
            last = last->next;
            bytes += last->len;
            recs += last->n;
        }
        st->qhead = last->next;
        if (!st->qhead)
            st->qtail = NULL;
        last->next = NULL;
        st->q_records -= recs;
        pthread_mutex_unlock(&st->mu);

        struct serr e = {0};
        uint64_t nrec = 0;
        double sync_s = 0;
        int rc = process(st, ops, &nrec, &sync_s, &e);
        if (rc == 0 && st->opts.synced)
            st->opts.synced(st->opts.synced_arg, nrec, bytes, sync_s);

        pthread_mutex_lock(&st->mu);
        if (rc < 0) {
            __atomic_store_n(&st->failed, rc, __ATOMIC_RELEASE);
            st->err = e;
            store_logf(&st->opts, STORE_LOG_ERROR, "store failed, refusing further writes: %s",
                       e.msg);
        } else {
            st->done_seq = last->seq;
            st->durable_index = seglog_last(&st->seglog);
            st->durable_term = seglog_last_term(&st->seglog);
        }
        st->last_batch_records = nrec;
        recompute_min_first(st);
        last->next = st->spent; /* the owner frees them (store_poll) */
        st->spent = ops;
        pthread_cond_broadcast(&st->done);
        pthread_mutex_unlock(&st->mu);
        /* After the unlock: the loop this wakes takes the lock first thing
         * (store_poll), and must not find it still held. */
        uint64_t one = 1;
        if (write(st->efd, &one, sizeof(one)) < 0) {
            /* only fails if the counter would overflow: it is readable then */
        }
        pthread_mutex_lock(&st->mu);
    }
    pthread_mutex_unlock(&st->mu);
    return NULL;
}

int writer_start(struct store *st)
{
    int rc = pthread_create(&st->writer, NULL, writer_main, st);
    if (rc)
        return -rc;
    st->writer_started = true;
    return 0;
}

void writer_stop(struct store *st, bool crash)
{
    if (!st->writer_started)
        return;
    pthread_mutex_lock(&st->mu);
    if (crash)
        st->crash = true;
    st->stop = true;
    pthread_cond_broadcast(&st->work);
    pthread_mutex_unlock(&st->mu);
    pthread_join(st->writer, NULL);
    st->writer_started = false;
}
