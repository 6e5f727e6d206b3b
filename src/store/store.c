/* store.c - the public API: opening and recovering a data directory, the
 * owner thread's view of the log (which already includes queued work), input
 * validation, queueing operations for the writer, progress and reads. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/endian.h"
#include "store/internal.h"

void store_options_default(struct store_options *o)
{
    memset(o, 0, sizeof(*o));
    o->segment_size = 64u << 20;
}

/* ---- term runs of the owner's view ---- */

static int runs_push(struct store *st, uint64_t first, uint64_t term)
{
    if (st->nruns && st->runs[st->nruns - 1].term == term)
        return 0;
    if (st->nruns == st->capruns) {
        size_t nc = st->capruns ? st->capruns * 2 : 16;
        struct term_run *nr = realloc(st->runs, nc * sizeof(*nr));
        if (!nr)
            return -ENOMEM;
        st->runs = nr;
        st->capruns = nc;
    }
    st->runs[st->nruns++] = (struct term_run){.first = first, .term = term};
    return 0;
}

static uint64_t runs_term(const struct store *st, uint64_t index)
{
    size_t lo = 0, hi = st->nruns;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (st->runs[mid].first <= index)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo ? st->runs[lo - 1].term : 0;
}

int store_term(const struct store *st, uint64_t index, uint64_t *term)
{
    if (st->has_snap && index == st->snap_meta.index) {
        *term = st->snap_meta.term;
        return 0;
    }
    if (index < st->first || index > st->last || index == 0)
        return -ERANGE;
    *term = runs_term(st, index);
    return 0;
}

/* ---- open / close ---- */

static void store_free(struct store *st)
{
    if (!st)
        return;
    seglog_close(&st->seglog);
    snap_close(&st->snap);
    op_free_list(st->qhead);
    op_free_list(st->spent);
    if (st->efd >= 0)
        close(st->efd);
    if (st->snapdirfd >= 0)
        close(st->snapdirfd);
    if (st->dirfd >= 0)
        close(st->dirfd); /* releases the flock */
    pthread_mutex_destroy(&st->mu);
    pthread_cond_destroy(&st->work);
    pthread_cond_destroy(&st->done);
    free(st->runs);
    free(st->dir);
    free(st->snapdir);
    free(st);
}

static void remove_stale_tmp(const char *dir, const char *name)
{
    char *p = path_join(dir, name);
    if (p && unlink(p) == 0) {
        /* a save that crashed before its rename: the old file stands */
    }
    free(p);
}

/* The log must continue the snapshot: otherwise a crash hit between writing
 * a snapshot that replaced the log and deleting the old log; drop it. */
static int reconcile(struct store *st, struct store_open_info *info, struct serr *e)
{
    struct seglog *lg = &st->seglog;
    uint64_t lf = seglog_first(lg), ll = seglog_last(lg);
    if (!st->snap.present) {
        if (lg->nsegs && lf != 1)
            return serr_set(e, -EINVAL, "%s: log starts at index %llu but there is no "
                            "snapshot covering the entries before it", lg->dir,
                            (unsigned long long)lf);
        return 0;
    }
    uint64_t si = st->snap.meta.index, stt = st->snap.meta.term;
    const char *why = NULL;
    if (!lg->nsegs) {
        lg->next_index = si + 1;
        lg->empty_term = stt;
        return 0;
    }
    if (lf > si + 1)
        return serr_set(e, -EINVAL, "%s: log starts at index %llu, after the snapshot's "
                        "last index %llu: entries in between are missing", lg->dir,
                        (unsigned long long)lf, (unsigned long long)si);
    if (ll < si)
        why = "log ends before the snapshot";
    else if (lf <= si && runs_term(st, si) != stt)
        why = "log has a different term at the snapshot's index";
    else if (lf == si + 1 && ll >= lf && runs_term(st, lf) < stt)
        why = "log's first term is older than the snapshot's";
    if (!why) {
        lg->empty_term = stt;
        return 0;
    }
    uint64_t dropped = ll >= lf ? ll - lf + 1 : 0;
    store_logf(&st->opts, STORE_LOG_WARN, "%s: discarding %llu records: %s (snapshot at %llu)",
               lg->dir, (unsigned long long)dropped, why, (unsigned long long)si);
    if (info)
        info->dropped_records = dropped;
    st->nruns = 0;
    return seglog_reset(lg, si + 1, stt, e);
}

int store_open(const char *dir, const struct store_options *opts, struct store **out,
               struct store_open_info *info)
{
    struct serr e = {0};
    if (info)
        memset(info, 0, sizeof(*info));
    struct store *st = calloc(1, sizeof(*st));
    if (!st)
        return -ENOMEM;
    st->dirfd = st->snapdirfd = st->efd = -1;
    st->seglog.dirfd = -1;
    st->snap.fd = -1;
    /* Adaptive: the writer takes the lock once per record it appends, for
     * a few stores each time, and the loop queues and polls under it.  A
     * plain mutex put the loop to sleep on every collision (~5 a second
     * per node at 10 M keys, perf), and on a busy machine a woken thread
     * may wait milliseconds for a CPU; spinning briefly wins the lock. */
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ADAPTIVE_NP);
    pthread_mutex_init(&st->mu, &ma);
    pthread_mutexattr_destroy(&ma);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&st->work, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&st->done, NULL);
    if (opts)
        st->opts = *opts;
    else
        store_options_default(&st->opts);
    if (!st->opts.segment_size)
        st->opts.segment_size = 64u << 20;
    st->q_min_first = UINT64_MAX;
    st->next_seq = 1;

    int rc;
    st->dir = strdup(dir);
    st->snapdir = path_join(dir, "snap");
    if (!st->dir || !st->snapdir) {
        rc = serr_set(&e, -ENOMEM, "out of memory");
        goto fail;
    }
    if ((rc = dir_lock(dir, &st->dirfd, &e)) < 0)
        goto fail;
    remove_stale_tmp(dir, "meta.tmp");
    remove_stale_tmp(dir, INC_NAME ".tmp");
    if ((rc = meta_load(dir, &st->hs, &e)) < 0)
        goto fail;
    if ((rc = dir_open_or_create(st->snapdir, &e)) < 0)
        goto fail;
    st->snapdirfd = rc;
    remove_stale_tmp(st->snapdir, "snapshot.tmp");
    remove_stale_tmp(st->snapdir, SNAP_BG_NAME);
    remove_stale_tmp(st->snapdir, SNAP_RX_NAME);
    if ((rc = snap_load(st->snapdir, &st->snap, &e)) < 0)
        goto fail;
    if ((rc = seglog_recover(&st->seglog, dir, &st->mu, &st->opts, info, &e, &st->runs,
                             &st->nruns)) < 0)
        goto fail;
    st->capruns = st->nruns;
    st->seglog.seg_size = st->opts.segment_size;
    if ((rc = reconcile(st, info, &e)) < 0)
        goto fail;
    /* Make the new directories themselves durable. */
    if ((rc = sys_fsync(st->dirfd)) < 0) {
        serr_set(&e, rc, "fsync directory %s: %s", dir, strerror(-rc));
        goto fail;
    }

    st->durable_hs = st->hs;
    st->has_snap = st->snap.present;
    if (st->has_snap)
        st->snap_meta = st->snap.meta;
    st->first = seglog_first(&st->seglog);
    st->last = seglog_last(&st->seglog);
    st->durable_index = st->last;
    st->durable_term = seglog_last_term(&st->seglog);
    st->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (st->efd < 0) {
        rc = serr_set(&e, -errno, "eventfd: %s", strerror(errno));
        goto fail;
    }
    if ((rc = writer_start(st)) < 0) {
        serr_set(&e, rc, "starting writer thread: %s", strerror(-rc));
        goto fail;
    }
    *out = st;
    return 0;
fail:
    if (info)
        snprintf(info->error, sizeof(info->error), "%s", e.msg);
    store_logf(opts, STORE_LOG_ERROR, "cannot open store: %s", e.msg);
    store_free(st);
    return rc;
}

int store_close(struct store *st)
{
    if (!st)
        return 0;
    writer_stop(st, false);
    int rc = st->failed;
    store_free(st);
    return rc;
}

void store_crash(struct store *st)
{
    if (!st)
        return;
    writer_stop(st, true);
    store_free(st);
}

/* ---- owner's view ---- */

void store_hard_state(const struct store *st, struct store_hard_state *hs)
{
    *hs = st->hs;
}

uint64_t store_first_index(struct store *st)
{
    pthread_mutex_lock(&st->mu);
    uint64_t f = seglog_first(&st->seglog);
    pthread_mutex_unlock(&st->mu);
    return f > st->first ? f : st->first;
}

uint64_t store_last_index(const struct store *st)
{
    return st->last;
}

uint64_t store_last_term(const struct store *st)
{
    uint64_t t = 0;
    if (store_term(st, st->last, &t) < 0)
        t = 0;
    return t;
}

bool store_snapshot_meta(const struct store *st, struct store_snap_meta *meta)
{
    if (st->has_snap && meta)
        *meta = st->snap_meta;
    return st->has_snap;
}

bool store_failed(const struct store *st)
{
    return __atomic_load_n(&st->failed, __ATOMIC_ACQUIRE) != 0;
}

const char *store_errmsg(const struct store *st)
{
    return store_failed(st) ? st->err.msg : "";
}

/* ---- queueing ---- */

/* Every call checks: a plain atomic read (the writer stores it so), not the
 * lock the writer holds while it works. */
static int check_failed(struct store *st)
{
    return __atomic_load_n(&st->failed, __ATOMIC_ACQUIRE);
}

static void enqueue(struct store *st, struct op *op, uint64_t *seq)
{
    op->seq = st->next_seq++;
    if (seq)
        *seq = op->seq;
    pthread_mutex_lock(&st->mu);
    if (st->qtail)
        st->qtail->next = op;
    else
        st->qhead = op;
    st->qtail = op;
    st->q_records += op->n;
    if (op->kind == OP_APPEND && op->n && op->first < st->q_min_first)
        st->q_min_first = op->first;
    if (op->kind == OP_SNAP && op->reset)
        st->q_min_first = 1;
    /* Wake the writer only when it waits for exactly this: every extra
     * wake-up costs a context switch per record under load.  Signalled
     * after the unlock, or the writer wakes only to wait for the lock. */
    bool wake = st->qhead == op || (st->batch_waiting && st->q_records >= st->last_batch_records);
    pthread_mutex_unlock(&st->mu);
    if (wake)
        pthread_cond_signal(&st->work);
}

static struct op *op_new(enum op_kind kind, size_t len)
{
    struct op *op = calloc(1, sizeof(*op) + len);
    if (!op)
        return NULL;
    op->kind = kind;
    op->len = len;
    op->buf = (uint8_t *)(op + 1);
    return op;
}

static int check_records(const struct store *st, const struct store_record *recs, size_t n,
                         size_t *bytes)
{
    uint64_t f = recs[0].index;
    uint64_t lower = st->has_snap ? st->snap_meta.index + 1 : 1;
    if (st->first > lower)
        lower = st->first;
    if (f < lower || f > st->last + 1)
        return -EINVAL;
    uint64_t prev = 0;
    if (f > 1 && store_term(st, f - 1, &prev) < 0)
        return -EINVAL;
    size_t b = 0;
    for (size_t i = 0; i < n; i++) {
        if (recs[i].index != f + i || recs[i].term < prev || recs[i].len > STORE_MAX_RECORD ||
            (recs[i].len && !recs[i].data))
            return -EINVAL;
        prev = recs[i].term;
        b += rec_frame_size(recs[i].len);
    }
    *bytes = b;
    return 0;
}

int store_append(struct store *st, const struct store_hard_state *hs,
                 const struct store_record *recs, size_t n, uint64_t *seq)
{
    int rc = check_failed(st);
    if (rc < 0)
        return rc;
    size_t bytes = 0;
    if (n && (rc = check_records(st, recs, n, &bytes)) < 0)
        return rc;
    struct op *op = op_new(OP_APPEND, bytes);
    if (!op)
        return -ENOMEM;
    if (hs) {
        op->has_hs = true;
        op->hs = *hs;
    }
    if (n) {
        op->first = recs[0].index;
        op->n = n;
        uint8_t *p = op->buf;
        for (size_t i = 0; i < n; i++) {
            rec_encode(p, &recs[i]);
            p += rec_frame_size(recs[i].len);
        }
        /* The owner's view: the tail from op->first on is replaced. */
        while (st->nruns && st->runs[st->nruns - 1].first >= op->first)
            st->nruns--;
        for (size_t i = 0; i < n; i++)
            if (runs_push(st, recs[i].index, recs[i].term) < 0) {
                free(op);
                return -ENOMEM;
            }
        st->last = recs[n - 1].index;
    }
    if (hs)
        st->hs = *hs;
    enqueue(st, op, seq);
    return 0;
}

/* Queue op (OP_SNAP or OP_ADOPT) for meta: the log is kept if it holds
 * meta's index and term, otherwise dropped. */
static void queue_snapshot(struct store *st, struct op *op, const struct store_snap_meta *meta,
                           uint64_t *seq)
{
    op->meta = *meta;
    uint64_t t;
    op->reset = !(meta->index >= st->first && store_term(st, meta->index, &t) == 0 &&
                  t == meta->term);
    st->has_snap = true;
    st->snap_meta = *meta;
    if (op->reset) {
        st->first = meta->index + 1;
        st->last = meta->index;
        st->nruns = 0;
    }
    enqueue(st, op, seq);
}

int store_snapshot_save(struct store *st, const struct store_snap_meta *meta,
                        const void *data, size_t len, uint64_t *seq)
{
    int rc = check_failed(st);
    if (rc < 0)
        return rc;
    if (meta->conf_len > STORE_CONF_MAX || (st->has_snap && meta->index <= st->snap_meta.index) ||
        meta->index == 0 || (len && !data))
        return -EINVAL;
    struct op *op = op_new(OP_SNAP, len);
    if (!op)
        return -ENOMEM;
    if (len)
        memcpy(op->buf, data, len);
    queue_snapshot(st, op, meta, seq);
    return 0;
}

void store_snapshot_discard(const struct store *st, enum store_snap_src src)
{
    char *p = path_join(st->snapdir, snap_src_name(src));
    if (p)
        unlink(p);
    free(p);
}

int store_snapshot_adopt(struct store *st, const struct store_snap_meta *meta,
                         enum store_snap_src src, uint64_t *seq)
{
    int rc = check_failed(st);
    if (rc < 0)
        return rc;
    if (meta->conf_len > STORE_CONF_MAX || meta->index == 0)
        return -EINVAL;
    if (st->has_snap && meta->index <= st->snap_meta.index) {
        store_snapshot_discard(st, src);
        return -ESTALE;
    }
    struct op *op = op_new(OP_ADOPT, 0);
    if (!op)
        return -ENOMEM;
    op->src = src;
    queue_snapshot(st, op, meta, seq);
    return 0;
}

int store_compact(struct store *st, uint64_t upto, uint64_t *seq)
{
    int rc = check_failed(st);
    if (rc < 0)
        return rc;
    if (!st->has_snap || upto > st->snap_meta.index)
        return -EINVAL;
    struct op *op = op_new(OP_COMPACT, 0);
    if (!op)
        return -ENOMEM;
    op->upto = upto;
    enqueue(st, op, seq);
    return 0;
}

int store_incarnations_save(struct store *st, const void *data, size_t len, uint64_t *seq)
{
    int rc = check_failed(st);
    if (rc < 0)
        return rc;
    if (len > STORE_INC_MAX || (len && !data))
        return -EINVAL;
    struct op *op = op_new(OP_INC, len);
    if (!op)
        return -ENOMEM;
    if (len)
        memcpy(op->buf, data, len);
    enqueue(st, op, seq);
    return 0;
}

int store_incarnations_load(struct store *st, void **data, size_t *len)
{
    struct serr e = {0};
    int rc = inc_load(st->dir, data, len, &e);
    if (rc == -ENOENT || rc == -ENOMEM || rc == 0)
        return rc;
    store_logf(&st->opts, STORE_LOG_WARN, "%s", e.msg);
    return -EBADMSG;
}

/* ---- completion ---- */

int store_eventfd(const struct store *st)
{
    return st->efd;
}

int store_poll(struct store *st, struct store_progress *p)
{
    uint64_t v;
    while (read(st->efd, &v, sizeof(v)) > 0) {
    }
    pthread_mutex_lock(&st->mu);
    p->done_seq = st->done_seq;
    p->durable_index = st->durable_index;
    p->durable_term = st->durable_term;
    p->err = st->failed;
    struct op *spent = st->spent;
    st->spent = NULL;
    pthread_mutex_unlock(&st->mu);
    op_free_list(spent);
    return p->err;
}

int store_wait(struct store *st, uint64_t seq)
{
    pthread_mutex_lock(&st->mu);
    while (st->done_seq < seq && !st->failed && st->writer_started)
        pthread_cond_wait(&st->done, &st->mu);
    int rc = st->failed ? st->failed : (st->done_seq >= seq ? 0 : -ESHUTDOWN);
    struct op *spent = st->spent;
    st->spent = NULL;
    pthread_mutex_unlock(&st->mu);
    op_free_list(spent);
    return rc;
}

int store_append_sync(struct store *st, const struct store_hard_state *hs,
                      const struct store_record *recs, size_t n)
{
    uint64_t seq;
    int rc = store_append(st, hs, recs, n, &seq);
    return rc < 0 ? rc : store_wait(st, seq);
}

/* ---- reads ---- */

int store_read(struct store *st, uint64_t lo, uint64_t hi, struct store_record **out,
               size_t *n)
{
    pthread_mutex_lock(&st->mu);
    uint64_t lim = st->durable_index;
    if (st->q_min_first - 1 < lim)
        lim = st->q_min_first - 1;
    int rc = hi > lim ? -ERANGE : seglog_read_locked(&st->seglog, lo, hi, out, n);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

int store_snapshot_size(struct store *st, uint64_t *size)
{
    pthread_mutex_lock(&st->mu);
    int rc = st->snap.present ? 0 : -ENOENT;
    if (rc == 0)
        *size = st->snap.data_len;
    pthread_mutex_unlock(&st->mu);
    return rc;
}

void store_log_files(struct store *st, uint64_t *segments, uint64_t *bytes)
{
    pthread_mutex_lock(&st->mu);
    *segments = st->seglog.nsegs;
    *bytes = 0;
    for (size_t i = 0; i < st->seglog.nsegs; i++)
        *bytes += st->seglog.segs[i].size;
    pthread_mutex_unlock(&st->mu);
}

int store_snapshot_read(struct store *st, uint64_t off, void *buf, size_t len)
{
    pthread_mutex_lock(&st->mu);
    int rc = 0;
    if (!st->snap.present)
        rc = -ENOENT;
    else if (off > st->snap.data_len || len > st->snap.data_len - off)
        rc = -ERANGE;
    if (rc == 0)
        rc = file_pread_full(st->snap.fd, buf, len, st->snap.data_off + off);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

int store_snapshot_reader_open(struct store *st, struct store_snap_reader *r)
{
    pthread_mutex_lock(&st->mu);
    int rc = st->snap.present ? 0 : -ENOENT;
    uint8_t crc[4];
    if (rc == 0) {
        r->meta = st->snap.meta;
        r->data_off = st->snap.data_off;
        r->data_len = st->snap.data_len;
        rc = file_pread_full(st->snap.fd, crc, sizeof(crc), SNAP_DATA_CRC_OFF);
    }
    if (rc == 0 && (r->fd = fcntl(st->snap.fd, F_DUPFD_CLOEXEC, 0)) < 0)
        rc = -errno;
    pthread_mutex_unlock(&st->mu);
    if (rc == 0)
        r->data_crc = get_le32(crc);
    return rc;
}

void store_snapshot_reader_close(int fd)
{
    sys_close_detached(&fd, 1);
}

int store_snapshot_load(struct store *st, struct store_snap_meta *meta, void **data,
                        size_t *len)
{
    /* One lock for size and bytes: the writer may swap in a newer snapshot. */
    pthread_mutex_lock(&st->mu);
    int rc = st->snap.present ? 0 : -ENOENT;
    uint64_t size = st->snap.data_len;
    void *b = NULL;
    if (rc == 0 && !(b = malloc(size ? size : 1)))
        rc = -ENOMEM;
    if (rc == 0)
        rc = file_pread_full(st->snap.fd, b, size, st->snap.data_off);
    if (rc == 0 && meta)
        *meta = st->snap.meta;
    pthread_mutex_unlock(&st->mu);
    if (rc < 0) {
        free(b);
        return rc;
    }
    *data = b;
    *len = size;
    return 0;
}
