/* storage_store.c - the replica's storage table over src/store: raft
 * entries and snapshot metadata mapped to store records and the store's
 * opaque membership blob, the incarnation file's bytes (replica.c keeps the
 * records there), the store's log lines sent to the node's log, and
 * the background snapshot writer: a thread that streams a frozen view of
 * the state machine (kv_freeze) into the store's snapshot.bg and signals an
 * eventfd when done.
 */
#include "node/storage_store.h"

#include "common/endian.h"
#include "common/log.h"
#include "store/store.h"

#include "kv/kv.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

struct storage_store {
    struct store *st;
    struct store_record *recs; /* reused per append: raft entries as store records */
    size_t cap_recs;
    struct storage_store_hooks hooks;
    /* the background snapshot writer, if one runs (started, not reaped) */
    struct {
        bool running;
        pthread_t thread;
        int efd; /* eventfd, written once by the thread at its end */
        atomic_bool cancel;
        int result; /* 0 or -errno; read after the eventfd fired */
        struct store_snap_meta sm;
        const struct kv *view;
        struct timespec start;
    } bg;
};

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

static void recover_progress(void *arg, size_t done, size_t total)
{
    struct storage_store *ss = arg;
    if (!ss->hooks.recovering)
        return;
    char buf[96];
    snprintf(buf, sizeof(buf), "verified log segment %zu of %zu", done, total);
    ss->hooks.recovering(ss->hooks.arg, buf);
}

static void meta_to_store(const struct raft_snapshot_meta *in, struct store_snap_meta *out)
{
    memset(out, 0, sizeof(*out));
    out->index = in->index;
    out->term = in->term;
    out->conf_len = (uint32_t)raft_conf_encode(&in->conf, out->conf);
}

static void ss_hard_state(void *arg, struct raft_hard_state *hs)
{
    struct storage_store *ss = arg;
    struct store_hard_state shs;
    store_hard_state(ss->st, &shs);
    hs->term = shs.term;
    hs->vote = shs.vote;
}

static raft_index ss_last_index(void *arg)
{
    struct storage_store *ss = arg;
    return store_last_index(ss->st);
}

static int ss_read(void *arg, raft_index lo, raft_index hi, struct raft_entry **ents, size_t *n)
{
    struct storage_store *ss = arg;
    struct store_record *recs = NULL;
    size_t k = 0;
    int rv = store_read(ss->st, lo, hi, &recs, &k);
    if (rv < 0)
        return rv;
    /* Entries and the records' bytes in one block, as the table promises. */
    size_t bytes = 0;
    for (size_t i = 0; i < k; i++)
        bytes += recs[i].len;
    struct raft_entry *e = malloc(k * sizeof(*e) + bytes + 1);
    if (!e) {
        free(recs);
        return -ENOMEM;
    }
    uint8_t *p = (uint8_t *)(e + k);
    for (size_t i = 0; i < k; i++) {
        e[i] = (struct raft_entry){.index = recs[i].index, .term = recs[i].term,
                                   .type = recs[i].type, .len = recs[i].len, .data = p};
        if (recs[i].len)
            memcpy(p, recs[i].data, recs[i].len);
        p += recs[i].len;
    }
    free(recs);
    *ents = e;
    *n = k;
    return 0;
}

static int meta_from_store(const struct store_snap_meta *in, struct raft_snapshot_meta *out)
{
    memset(out, 0, sizeof(*out));
    out->index = in->index;
    out->term = in->term;
    return raft_conf_decode(in->conf, in->conf_len, &out->conf) != 0 ? -EBADMSG : 0;
}

static int ss_snapshot_load(void *arg, struct raft_snapshot_meta *meta, void **data, size_t *len)
{
    struct storage_store *ss = arg;
    struct store_snap_meta sm;
    if (!store_snapshot_meta(ss->st, &sm))
        return -ENOENT;
    int rv = store_snapshot_load(ss->st, &sm, data, len);
    if (rv < 0)
        return rv;
    if ((rv = meta_from_store(&sm, meta)) < 0) {
        free(*data);
        *data = NULL;
    }
    return rv;
}

static int ss_append(void *arg, const struct raft_hard_state *hs, const struct raft_entry *ents,
                     size_t n, uint64_t *seq)
{
    struct storage_store *ss = arg;
    if (n > ss->cap_recs) {
        size_t cap = ss->cap_recs ? ss->cap_recs : 256;
        while (cap < n)
            cap *= 2;
        struct store_record *r = realloc(ss->recs, cap * sizeof(*r));
        if (!r)
            return -ENOMEM;
        ss->recs = r;
        ss->cap_recs = cap;
    }
    for (size_t i = 0; i < n; i++)
        ss->recs[i] = (struct store_record){.index = ents[i].index, .term = ents[i].term,
                                            .data = ents[i].data, .len = ents[i].len,
                                            .type = ents[i].type};
    struct store_hard_state shs = {.term = hs ? hs->term : 0, .vote = hs ? hs->vote : 0};
    return store_append(ss->st, hs ? &shs : NULL, ss->recs, n, seq);
}

static int ss_snapshot_save(void *arg, const struct raft_snapshot_meta *meta, const void *data,
                            size_t len, uint64_t *seq)
{
    struct storage_store *ss = arg;
    struct store_snap_meta sm;
    meta_to_store(meta, &sm);
    return store_snapshot_save(ss->st, &sm, data, len, seq);
}

/* ---- the incarnation file ------------------------------------------------
 * The store keeps the bytes (with its own magic, version and CRC); this is
 * what they hold: u64 index, u32 count, then count x (u64 member id, u64
 * incarnation), little-endian, ids increasing, nothing zero. */
#define INC_ITEM 16

static int ss_incarnations_save(void *arg, const struct replica_incarnations *inc, uint64_t *seq)
{
    struct storage_store *ss = arg;
    if (inc->n > REPLICA_MAX_INCARNATIONS)
        return -EINVAL;
    uint8_t b[12 + REPLICA_MAX_INCARNATIONS * INC_ITEM];
    put_le64(b, inc->index);
    put_le32(b + 8, inc->n);
    for (uint32_t i = 0; i < inc->n; i++) {
        put_le64(b + 12 + i * INC_ITEM, inc->m[i].id);
        put_le64(b + 20 + i * INC_ITEM, inc->m[i].incarnation);
    }
    return store_incarnations_save(ss->st, b, 12 + (size_t)inc->n * INC_ITEM, seq);
}

static int ss_incarnations_load(void *arg, struct replica_incarnations *out)
{
    struct storage_store *ss = arg;
    void *data = NULL;
    size_t len = 0;
    int rv = store_incarnations_load(ss->st, &data, &len);
    if (rv < 0)
        return rv;
    const uint8_t *b = data;
    uint32_t n = len >= 12 ? get_le32(b + 8) : 0;
    rv = len >= 12 && n <= REPLICA_MAX_INCARNATIONS && len == 12 + (size_t)n * INC_ITEM ? 0
                                                                                       : -EBADMSG;
    memset(out, 0, sizeof(*out));
    for (uint32_t i = 0; rv == 0 && i < n; i++) {
        out->m[i].id = get_le64(b + 12 + i * INC_ITEM);
        out->m[i].incarnation = get_le64(b + 20 + i * INC_ITEM);
        if (!out->m[i].id || !out->m[i].incarnation || (i && out->m[i].id <= out->m[i - 1].id))
            rv = -EBADMSG;
    }
    if (rv == 0) {
        out->index = get_le64(b);
        out->n = n;
    }
    free(data);
    return rv;
}

/* ---- the background snapshot writer ------------------------------------ */

/* Added to the node's nice value for the writer thread: on a busy machine
 * the loop's heartbeats come first, the snapshot just takes longer. */
#define SNAPSHOT_WRITER_NICE 10

struct bg_out {
    struct store_snap_stream *w;
    const atomic_bool *cancel;
    int err; /* the store's -errno, or -ECANCELED, that stopped the write */
};

static int bg_write(void *ctx, const void *buf, size_t len)
{
    struct bg_out *o = ctx;
    o->err = atomic_load_explicit(o->cancel, memory_order_relaxed)
                 ? -ECANCELED
                 : store_snapshot_stream_write(o->w, buf, len);
    return o->err;
}

/* Tests only: storage_store_test_stall(). */
static atomic_uint test_stall_ms;

void storage_store_test_stall(unsigned ms)
{
    atomic_store(&test_stall_ms, ms);
}

/* Holds the writer (and so its view) as a huge dataset or a slow disk
 * would, until the time is up, the stall is lifted or the store closes. */
static void test_stall(const atomic_bool *cancel)
{
    unsigned ms = atomic_load(&test_stall_ms);
    for (unsigned t = 0; t < ms && atomic_load(&test_stall_ms) && !atomic_load(cancel); t += 10)
        nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
}

/* Only the view, the store's snapshot directory (read only) and its own
 * stream: nothing the loop changes. */
static void *bg_main(void *arg)
{
    struct storage_store *ss = arg;
    /* On Linux a tid names one thread; failing is harmless. */
    setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), SNAPSHOT_WRITER_NICE);
    struct bg_out o = {.cancel = &ss->bg.cancel};
    int rv = store_snapshot_stream_open(ss->st, &ss->bg.sm, STORE_SNAP_BG, &o.w);
    if (rv == 0) {
        test_stall(&ss->bg.cancel);
        int krv = kv_snapshot_write(ss->bg.view, bg_write, &o);
        if (krv != KV_OK) {
            store_snapshot_stream_close(o.w, false);
            rv = o.err < 0 ? o.err : krv == KV_ENOMEM ? -ENOMEM : -EIO;
        } else {
            rv = store_snapshot_stream_close(o.w, true);
        }
    }
    ss->bg.result = rv < 0 ? rv : 0;
    uint64_t one = 1;
    /* The eventfd's counter cannot overflow on one write: never fails. */
    (void)!write(ss->bg.efd, &one, sizeof(one));
    return NULL;
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

static int ss_snapshot_begin(void *arg, const struct raft_snapshot_meta *meta, const struct kv *kv)
{
    struct storage_store *ss = arg;
    if (ss->bg.running || !ss->hooks.bg_started)
        return -EBUSY;
    int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (efd < 0)
        return -errno;
    meta_to_store(meta, &ss->bg.sm);
    ss->bg.view = kv;
    ss->bg.efd = efd;
    ss->bg.result = 0;
    atomic_store(&ss->bg.cancel, false);
    clock_gettime(CLOCK_MONOTONIC, &ss->bg.start);
    int rv = pthread_create(&ss->bg.thread, NULL, bg_main, ss);
    if (rv != 0) {
        close(efd);
        return -rv;
    }
    ss->bg.running = true;
    ss->hooks.bg_started(ss->hooks.arg, efd);
    return 0;
}

/* Joins a writer whose eventfd fired (or that was told to stop). */
static int bg_join(struct storage_store *ss)
{
    pthread_join(ss->bg.thread, NULL);
    close(ss->bg.efd);
    ss->bg.efd = -1;
    ss->bg.running = false;
    return ss->bg.result;
}

int storage_store_bg_reap(struct storage_store *ss, double *seconds)
{
    if (!ss->bg.running)
        return -ECHILD;
    uint64_t v;
    if (read(ss->bg.efd, &v, sizeof(v)) != (ssize_t)sizeof(v))
        return -EAGAIN; /* woken early: not done yet */
    *seconds = seconds_since(&ss->bg.start);
    return bg_join(ss);
}

int storage_store_snapshot_bytes(struct storage_store *ss, uint64_t *bytes)
{
    return store_snapshot_size(ss->st, bytes);
}

void storage_store_log_files(struct storage_store *ss, uint64_t *segments, uint64_t *bytes)
{
    store_log_files(ss->st, segments, bytes);
}

static void bg_stop(struct storage_store *ss)
{
    if (!ss->bg.running)
        return;
    atomic_store(&ss->bg.cancel, true);
    bg_join(ss);
}

static int ss_snapshot_adopt(void *arg, const struct raft_snapshot_meta *meta, bool received,
                             uint64_t *seq)
{
    struct storage_store *ss = arg;
    struct store_snap_meta sm;
    meta_to_store(meta, &sm);
    return store_snapshot_adopt(ss->st, &sm, received ? STORE_SNAP_RX : STORE_SNAP_BG, seq);
}

static void ss_snapshot_discard(void *arg)
{
    struct storage_store *ss = arg;
    store_snapshot_discard(ss->st, STORE_SNAP_RX);
}

/* ---- snapshot transfer ------------------------------------------------ */

int storage_store_snapshot_source(struct storage_store *ss, struct storage_snap_source *src)
{
    struct store_snap_reader r;
    int rv = store_snapshot_reader_open(ss->st, &r);
    if (rv < 0)
        return rv;
    if ((rv = meta_from_store(&r.meta, &src->meta)) < 0) {
        store_snapshot_reader_close(r.fd);
        return rv;
    }
    src->fd = r.fd;
    src->off = r.data_off;
    src->len = r.data_len;
    src->crc = r.data_crc;
    return 0;
}

int storage_store_rx_open(struct storage_store *ss, const struct raft_snapshot_meta *meta,
                          struct store_snap_stream **out)
{
    struct store_snap_meta sm;
    meta_to_store(meta, &sm);
    return store_snapshot_stream_open(ss->st, &sm, STORE_SNAP_RX, out);
}

int storage_store_rx_finish(struct storage_store *ss, struct store_snap_stream *s,
                            const uint32_t *crc, const struct kv_config *kvc, struct kv **kv)
{
    if (crc && store_snapshot_stream_crc(s) != *crc) {
        store_snapshot_stream_close(s, false);
        return -EBADMSG;
    }
    int rv = store_snapshot_stream_close(s, true);
    if (rv < 0)
        return rv;
    /* Mapped, not read: the file's pages are page cache the kernel can
     * drop, so loading adds only the dictionary itself to our memory. */
    struct store_snap_map m;
    if ((rv = store_snapshot_stream_map(ss->st, STORE_SNAP_RX, &m)) < 0) {
        store_snapshot_discard(ss->st, STORE_SNAP_RX);
        return rv;
    }
    rv = kv_snapshot_load(m.data, m.len, kvc, kv);
    store_snapshot_unmap(&m);
    if (rv != KV_OK) {
        store_snapshot_discard(ss->st, STORE_SNAP_RX);
        return rv == KV_ENOMEM ? -ENOMEM : -EBADMSG;
    }
    return 0;
}

static int ss_compact(void *arg, raft_index upto, uint64_t *seq)
{
    struct storage_store *ss = arg;
    return store_compact(ss->st, upto, seq);
}

static const char *ss_errmsg(void *arg)
{
    struct storage_store *ss = arg;
    return store_errmsg(ss->st);
}

static int ss_close(void *arg)
{
    struct storage_store *ss = arg;
    bg_stop(ss); /* its half-written file goes on the next open */
    int rv = store_close(ss->st);
    if (rv < 0)
        log_warn("store closed with error: %s", strerror(-rv));
    free(ss->recs);
    free(ss);
    return rv;
}

int storage_store_open(struct storage_store **out, struct replica_storage *ops, const char *dir,
                       uint64_t segment_size, const struct storage_store_hooks *hooks,
                       char *err, size_t errlen)
{
    struct storage_store *ss = calloc(1, sizeof(*ss));
    if (!ss) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    ss->hooks = *hooks;
    ss->bg.efd = -1;
    struct store_options so;
    store_options_default(&so);
    if (segment_size)
        so.segment_size = segment_size;
    so.log = store_log;
    so.log_arg = ss;
    so.recover_progress = recover_progress;
    so.synced = hooks->synced;
    so.synced_arg = hooks->arg;
    struct store_open_info info;
    memset(&info, 0, sizeof(info));
    int rv = store_open(dir, &so, &ss->st, &info);
    if (rv < 0) {
        snprintf(err, errlen, "%s: %s", dir, info.error[0] ? info.error : strerror(-rv));
        free(ss);
        return rv;
    }
    if (info.cut_bytes)
        log_warn("store: cut %llu bytes of torn log tail: %s", (unsigned long long)info.cut_bytes,
                 info.cut_reason);
    *ops = (struct replica_storage){
        .arg = ss,
        .hard_state = ss_hard_state,
        .last_index = ss_last_index,
        .read = ss_read,
        .snapshot_load = ss_snapshot_load,
        .append = ss_append,
        .snapshot_save = ss_snapshot_save,
        .snapshot_begin = ss_snapshot_begin,
        .snapshot_adopt = ss_snapshot_adopt,
        .snapshot_discard = ss_snapshot_discard,
        .compact = ss_compact,
        .incarnations_load = ss_incarnations_load,
        .incarnations_save = ss_incarnations_save,
        .errmsg = ss_errmsg,
        .close = ss_close,
    };
    *out = ss;
    return 0;
}

int storage_store_fd(const struct storage_store *ss) { return store_eventfd(ss->st); }

int storage_store_poll(struct storage_store *ss, struct replica_durable *d)
{
    struct store_progress p;
    int rv = store_poll(ss->st, &p);
    if (rv < 0)
        return rv;
    d->seq = p.done_seq;
    d->index = p.durable_index;
    d->term = p.durable_term;
    return 0;
}
