/* seglog.c - the segment log: the list of segment files, its recovery at
 * start-up, appending (with rolls to new segments), suffix truncation, prefix
 * compaction and range reads.  The writer thread is the only mutator; every
 * change to the segment array happens under lg->mu so readers on other
 * threads see it whole.  Prefix seglog_, apart from common/log.h's log_. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/endian.h"
#include "store/internal.h"

static char *seg_path(const struct seglog *lg, uint64_t first)
{
    char name[40];
    snprintf(name, sizeof(name), "%020" PRIu64 ".seg", first);
    return path_join(lg->dir, name);
}

static uint64_t seg_last(const struct seg *s)
{
    return s->first + s->n - 1;
}

uint64_t seglog_first(const struct seglog *lg)
{
    return lg->nsegs ? lg->segs[0].first : lg->next_index;
}

uint64_t seglog_last(const struct seglog *lg)
{
    return lg->nsegs ? seg_last(&lg->segs[lg->nsegs - 1]) : lg->next_index - 1;
}

uint64_t seglog_last_term(const struct seglog *lg)
{
    for (size_t i = lg->nsegs; i-- > 0;)
        if (lg->segs[i].n)
            return lg->segs[i].last_term;
    return lg->empty_term;
}

static struct seg *seg_find(struct seglog *lg, uint64_t index)
{
    size_t lo = 0, hi = lg->nsegs;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (lg->segs[mid].first <= index)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return NULL;
    struct seg *s = &lg->segs[lo - 1];
    return s->n && index <= seg_last(s) ? s : NULL;
}

static uint64_t rec_end(const struct seg *s, uint64_t i)
{
    return i + 1 < s->n ? s->off[i + 1] : s->size;
}

static int seg_push(struct seglog *lg, const struct seg *s)
{
    if (lg->nsegs == lg->capsegs) {
        size_t nc = lg->capsegs ? lg->capsegs * 2 : 8;
        struct seg *ns = realloc(lg->segs, nc * sizeof(*ns));
        if (!ns)
            return -ENOMEM;
        lg->segs = ns;
        lg->capsegs = nc;
    }
    lg->segs[lg->nsegs++] = *s;
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Segment names are their first index, so sorting names sorts the log. */
static int list_segments(const struct seglog *lg, uint64_t **firsts, size_t *n,
                         struct serr *e)
{
    DIR *d = opendir(lg->dir);
    if (!d)
        return serr_set(e, -errno, "opendir %s: %s", lg->dir, strerror(errno));
    uint64_t *v = NULL;
    size_t cnt = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        uint64_t first;
        char tail[8];
        if (strlen(de->d_name) != 24 ||
            sscanf(de->d_name, "%20" SCNu64 "%7s", &first, tail) != 2 ||
            strcmp(tail, ".seg") != 0)
            continue;
        if (cnt == cap) {
            cap = cap ? cap * 2 : 16;
            uint64_t *nv = realloc(v, cap * sizeof(*nv));
            if (!nv) {
                free(v);
                closedir(d);
                return serr_set(e, -ENOMEM, "out of memory");
            }
            v = nv;
        }
        v[cnt++] = first;
    }
    closedir(d);
    if (cnt > 1) /* qsort's base must not be NULL, even for no elements */
        qsort(v, cnt, sizeof(*v), cmp_u64);
    *firsts = v;
    *n = cnt;
    return 0;
}

static int runs_append(struct term_run **runs, size_t *nruns, size_t *cap,
                       const struct term_run *add, size_t nadd)
{
    for (size_t i = 0; i < nadd; i++) {
        if (*nruns && (*runs)[*nruns - 1].term == add[i].term)
            continue;
        if (*nruns == *cap) {
            size_t nc = *cap ? *cap * 2 : 16;
            struct term_run *nr = realloc(*runs, nc * sizeof(*nr));
            if (!nr)
                return -ENOMEM;
            *runs = nr;
            *cap = nc;
        }
        (*runs)[(*nruns)++] = add[i];
    }
    return 0;
}

/* The last segment ends in a torn write: cut it off for good, so the next
 * append starts from clean ground. */
static int cut_tail(struct seglog *lg, const char *path, struct seg *s,
                    const struct seg_scan *sc, struct store_open_info *info,
                    struct serr *e)
{
    uint64_t cut = sc->file_size - sc->valid_size;
    int rc;
    if (sc->header_torn) {
        if ((rc = sys_unlink(path)) < 0)
            return serr_set(e, rc, "unlink torn segment %s: %s", path, strerror(-rc));
        if ((rc = sys_fsync(lg->dirfd)) < 0)
            return serr_set(e, rc, "fsync directory %s: %s", lg->dir, strerror(-rc));
    } else {
        if ((rc = sys_ftruncate(s->fd, (off_t)sc->valid_size)) < 0)
            return serr_set(e, rc, "ftruncate %s: %s", path, strerror(-rc));
        if ((rc = sys_fdatasync(s->fd)) < 0)
            return serr_set(e, rc, "fdatasync %s: %s", path, strerror(-rc));
    }
    store_logf(lg->opts, STORE_LOG_WARN, "%s: cut %llu bytes of torn tail (%s)", path,
               (unsigned long long)cut, sc->why);
    if (info) {
        info->cut_bytes += cut;
        snprintf(info->cut_reason, sizeof(info->cut_reason), "%s: %s", path, sc->why);
    }
    return 0;
}

int seglog_recover(struct seglog *lg, const char *dir, pthread_mutex_t *mu,
                   const struct store_options *opts, struct store_open_info *info,
                   struct serr *e, struct term_run **runs, size_t *nruns)
{
    memset(lg, 0, sizeof(*lg));
    lg->mu = mu;
    lg->opts = opts;
    lg->dirfd = -1;
    lg->next_index = 1;
    lg->dir = path_join(dir, "log");
    if (!lg->dir)
        return serr_set(e, -ENOMEM, "out of memory");
    int rc = dir_open_or_create(lg->dir, e);
    if (rc < 0)
        return rc;
    lg->dirfd = rc;
    uint64_t *firsts = NULL;
    size_t n = 0, caprun = 0;
    if ((rc = list_segments(lg, &firsts, &n, e)) < 0)
        return rc;
    for (size_t i = 0; i < n && rc == 0; i++) {
        char *path = seg_path(lg, firsts[i]);
        if (!path) {
            rc = serr_set(e, -ENOMEM, "out of memory");
            break;
        }
        struct seg_scan sc;
        bool is_last = i + 1 == n;
        rc = seg_scan(path, firsts[i], is_last, &sc, e);
        if (rc == 0 && lg->nsegs) {
            const struct seg *prev = &lg->segs[lg->nsegs - 1];
            if (firsts[i] != prev->first + prev->n && !(sc.header_torn && sc.n == 0))
                rc = serr_set(e, -EINVAL, "%s: starts at index %llu but the previous segment "
                              "ends at %llu (missing or extra segment)", path,
                              (unsigned long long)firsts[i],
                              (unsigned long long)(prev->first + prev->n - 1));
        }
        struct seg s = {.first = firsts[i], .n = sc.n, .off = sc.off, .cap = sc.n,
                        .size = sc.valid_size, .fd = -1};
        if (rc == 0 && !sc.header_torn) {
            s.fd = sys_open(path, O_RDWR, 0);
            if (s.fd < 0)
                rc = serr_set(e, s.fd, "open %s: %s", path, strerror(-s.fd));
        }
        if (rc == 0 && sc.torn)
            rc = cut_tail(lg, path, &s, &sc, info, e);
        if (rc == 0 && sc.nruns)
            s.last_term = sc.runs[sc.nruns - 1].term;
        if (rc == 0 && runs_append(runs, nruns, &caprun, sc.runs, sc.nruns) < 0)
            rc = serr_set(e, -ENOMEM, "out of memory");
        if (rc == 0 && !sc.header_torn) {
            if (seg_push(lg, &s) < 0)
                rc = serr_set(e, -ENOMEM, "out of memory");
            else
                s.off = NULL;
        }
        if (s.off)
            free(s.off);
        if (rc < 0)
            sys_close(s.fd);
        free(sc.runs);
        free(path);
        if (rc == 0 && lg->opts && lg->opts->recover_progress)
            lg->opts->recover_progress(lg->opts->log_arg, i + 1, n);
    }
    free(firsts);
    return rc;
}

void seglog_close(struct seglog *lg)
{
    for (size_t i = 0; i < lg->nsegs; i++) {
        sys_close(lg->segs[i].fd);
        free(lg->segs[i].off);
    }
    free(lg->segs);
    free(lg->iov);
    if (lg->dirfd >= 0)
        sys_close(lg->dirfd);
    free(lg->dir);
    memset(lg, 0, sizeof(*lg));
    lg->dirfd = -1;
}

int seglog_flush(struct seglog *lg, struct serr *e)
{
    if (!lg->niov)
        return 0;
    struct seg *s = &lg->segs[lg->nsegs - 1];
    ssize_t w = sys_pwritev_all(s->fd, lg->iov, lg->niov, (off_t)s->size);
    lg->niov = 0;
    if (w < 0) {
        char *p = seg_path(lg, s->first);
        serr_set(e, (int)w, "write %s at offset %llu: %s", p ? p : lg->dir,
                 (unsigned long long)s->size, strerror((int)-w));
        free(p);
        return (int)w;
    }
    s->size += lg->pend_bytes;
    lg->pend_bytes = 0;
    lg->dirty = true;
    return 0;
}

int seglog_sync(struct seglog *lg, struct serr *e)
{
    if (!lg->dirty)
        return 0;
    struct seg *s = &lg->segs[lg->nsegs - 1];
    int rc = sys_fdatasync(s->fd);
    if (rc < 0) {
        char *p = seg_path(lg, s->first);
        serr_set(e, rc, "fdatasync %s: %s", p ? p : lg->dir, strerror(-rc));
        free(p);
        return rc;
    }
    lg->dirty = false;
    lg->unsynced = 0;
    return 0;
}

static int push_iov(struct seglog *lg, const void *p, size_t len)
{
    if (lg->niov == lg->capiov) {
        int nc = lg->capiov ? lg->capiov * 2 : 256;
        struct iovec *ni = realloc(lg->iov, (size_t)nc * sizeof(*ni));
        if (!ni)
            return -ENOMEM;
        lg->iov = ni;
        lg->capiov = nc;
    }
    lg->iov[lg->niov++] = (struct iovec){.iov_base = (void *)p, .iov_len = len};
    lg->pend_bytes += len;
    lg->unsynced += len;
    return 0;
}

/* Start a new segment whose first record will be `first`.  The previous one
 * is synced first, so only the newest segment can ever hold unsynced data:
 * that is what lets recovery call damage anywhere else corruption. */
static int roll(struct seglog *lg, uint64_t first, struct serr *e)
{
    int rc;
    if (lg->nsegs && ((rc = seglog_flush(lg, e)) < 0 || (rc = seglog_sync(lg, e)) < 0))
        return rc;
    char *path = seg_path(lg, first);
    if (!path)
        return serr_set(e, -ENOMEM, "out of memory");
    int fd = sys_open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        rc = serr_set(e, fd, "create %s: %s", path, strerror(-fd));
        free(path);
        return rc;
    }
    /* The new name must be durable before anything in it is called durable. */
    if ((rc = sys_fsync(lg->dirfd)) < 0) {
        serr_set(e, rc, "fsync directory %s: %s", lg->dir, strerror(-rc));
        sys_close(fd);
        free(path);
        return rc;
    }
    free(path);
    struct seg s = {.first = first, .fd = fd};
    pthread_mutex_lock(lg->mu);
    rc = seg_push(lg, &s);
    pthread_mutex_unlock(lg->mu);
    if (rc < 0) {
        sys_close(fd);
        return serr_set(e, rc, "out of memory");
    }
    seg_header_encode(lg->seg_hdr, first);
    if ((rc = push_iov(lg, lg->seg_hdr, SEG_HDR)) < 0)
        return serr_set(e, rc, "out of memory");
    lg->dirty = true;
    return 0;
}

int seglog_put(struct seglog *lg, const uint8_t *frame, size_t len, uint64_t index,
               uint64_t term, struct serr *e)
{
    int rc;
    struct seg *s = lg->nsegs ? &lg->segs[lg->nsegs - 1] : NULL;
    if (!s || (s->n && s->size + lg->pend_bytes + len > lg->seg_size)) {
        if ((rc = roll(lg, index, e)) < 0)
            return rc;
        s = &lg->segs[lg->nsegs - 1];
    } else if (lg->unsynced && lg->unsynced + len > STORE_MAX_UNSYNCED) {
        /* Keep the promise recovery depends on (STORE_MAX_UNSYNCED). */
        if ((rc = seglog_flush(lg, e)) < 0 || (rc = seglog_sync(lg, e)) < 0)
            return rc;
    }
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 1024;
        pthread_mutex_lock(lg->mu);
        uint32_t *no = realloc(s->off, nc * sizeof(*no));
        if (no) {
            s->off = no;
            s->cap = nc;
        }
        pthread_mutex_unlock(lg->mu);
        if (!no)
            return serr_set(e, -ENOMEM, "out of memory");
    }
    uint64_t off = s->size + lg->pend_bytes;
    if ((rc = push_iov(lg, frame, len)) < 0)
        return serr_set(e, rc, "out of memory");
    pthread_mutex_lock(lg->mu);
    s->off[s->n++] = (uint32_t)off;
    s->last_term = term;
    pthread_mutex_unlock(lg->mu);
    return 0;
}

static int drop_last_seg(struct seglog *lg, struct serr *e)
{
    struct seg *s = &lg->segs[lg->nsegs - 1];
    char *path = seg_path(lg, s->first);
    if (!path)
        return serr_set(e, -ENOMEM, "out of memory");
    int rc = sys_unlink(path);
    if (rc < 0) {
        serr_set(e, rc, "unlink %s: %s", path, strerror(-rc));
        free(path);
        return rc;
    }
    free(path);
    pthread_mutex_lock(lg->mu);
    int fd = s->fd;
    free(s->off);
    lg->nsegs--;
    pthread_mutex_unlock(lg->mu);
    sys_close_detached(&fd, 1); /* frees the unlinked file's blocks */
    return 0;
}

int seglog_term_at(struct seglog *lg, uint64_t index, uint64_t *term, struct serr *e)
{
    struct seg *s = seg_find(lg, index);
    if (!s)
        return -ERANGE;
    uint8_t h[REC_HDR];
    uint64_t off = s->off[index - s->first];
    int rc = file_pread_full(s->fd, h, REC_HDR, off);
    if (rc < 0)
        return serr_set(e, rc, "%s: read at offset %llu: %s", lg->dir,
                        (unsigned long long)off, strerror(-rc));
    *term = get_le64(h + 16);
    return 0;
}

int seglog_truncate(struct seglog *lg, uint64_t from, struct serr *e)
{
    if (from > seglog_last(lg))
        return 0;
    int rc = seglog_flush(lg, e);
    if (rc < 0)
        return rc;
    bool unlinked = false;
    /* Newest first, so a crash part-way leaves a contiguous log. */
    while (lg->nsegs > 1 && lg->segs[lg->nsegs - 1].first > from) {
        if ((rc = drop_last_seg(lg, e)) < 0)
            return rc;
        unlinked = true;
    }
    struct seg *s = &lg->segs[lg->nsegs - 1];
    uint64_t keep = from - s->first, new_term = s->last_term;
    uint64_t cut_at = keep < s->n ? s->off[keep] : s->size;
    if (keep > 0 && (rc = seglog_term_at(lg, from - 1, &new_term, e)) < 0)
        return rc;
    char *path = seg_path(lg, s->first);
    if (!path)
        return serr_set(e, -ENOMEM, "out of memory");
    /* Make the cut durable before new records land where the old ones were:
     * a crash must never leave old and new records interleaved. */
    if ((rc = sys_ftruncate(s->fd, (off_t)cut_at)) < 0)
        serr_set(e, rc, "ftruncate %s: %s", path, strerror(-rc));
    else if ((rc = sys_fdatasync(s->fd)) < 0)
        serr_set(e, rc, "fdatasync %s: %s", path, strerror(-rc));
    else if (unlinked && (rc = sys_fsync(lg->dirfd)) < 0)
        serr_set(e, rc, "fsync directory %s: %s", lg->dir, strerror(-rc));
    free(path);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(lg->mu);
    s->n = keep;
    s->size = cut_at;
    s->last_term = new_term;
    pthread_mutex_unlock(lg->mu);
    lg->dirty = false;
    lg->unsynced = 0;
    return 0;
}

int seglog_reset(struct seglog *lg, uint64_t next_index, uint64_t term, struct serr *e)
{
    int rc = 0;
    lg->niov = 0;
    lg->pend_bytes = 0;
    while (lg->nsegs)
        if ((rc = drop_last_seg(lg, e)) < 0)
            return rc;
    if ((rc = sys_fsync(lg->dirfd)) < 0)
        return serr_set(e, rc, "fsync directory %s: %s", lg->dir, strerror(-rc));
    pthread_mutex_lock(lg->mu);
    lg->next_index = next_index;
    lg->empty_term = term;
    pthread_mutex_unlock(lg->mu);
    lg->dirty = false;
    lg->unsynced = 0;
    return 0;
}

int seglog_compact(struct seglog *lg, uint64_t upto, struct serr *e)
{
    size_t drop = 0;
    /* Never the active segment: appends continue in it. */
    while (drop + 1 < lg->nsegs && lg->segs[drop].first + lg->segs[drop].n <= upto + 1)
        drop++;
    if (!drop)
        return 0;
    int rc = 0;
    size_t done = 0;
    /* Oldest first, so a crash part-way leaves a contiguous log. */
    for (; done < drop; done++) {
        char *path = seg_path(lg, lg->segs[done].first);
        if (!path) {
            rc = serr_set(e, -ENOMEM, "out of memory");
            break;
        }
        rc = sys_unlink(path);
        if (rc < 0)
            serr_set(e, rc, "unlink %s: %s", path, strerror(-rc));
        free(path);
        if (rc < 0)
            break;
    }
    int *fds = malloc(done * sizeof(*fds) + 1);
    pthread_mutex_lock(lg->mu);
    for (size_t i = 0; i < done; i++) {
        if (fds)
            fds[i] = lg->segs[i].fd;
        else
            sys_close(lg->segs[i].fd);
        free(lg->segs[i].off);
    }
    memmove(lg->segs, lg->segs + done, (lg->nsegs - done) * sizeof(*lg->segs));
    lg->nsegs -= done;
    pthread_mutex_unlock(lg->mu);
    /* The last closes free the unlinked segments' blocks: off this thread
     * and outside the lock readers take. */
    if (fds)
        sys_close_detached(fds, done);
    free(fds);
    if (rc == 0 && (rc = sys_fsync(lg->dirfd)) < 0)
        serr_set(e, rc, "fsync directory %s: %s", lg->dir, strerror(-rc));
    return rc;
}

int seglog_read_locked(struct seglog *lg, uint64_t lo, uint64_t hi,
                       struct store_record **out, size_t *n)
{
    if (lo > hi || lo < seglog_first(lg) || hi > seglog_last(lg))
        return -ERANGE;
    size_t cnt = (size_t)(hi - lo + 1);
    uint64_t bytes = 0;
    for (uint64_t i = lo; i <= hi;) {
        struct seg *s = seg_find(lg, i);
        if (!s)
            return -ERANGE;
        uint64_t last = seg_last(s) < hi ? seg_last(s) : hi;
        bytes += rec_end(s, last - s->first) - s->off[i - s->first];
        i = last + 1;
    }
    size_t head = cnt * sizeof(struct store_record);
    uint8_t *blk = malloc(head + bytes + 1);
    if (!blk)
        return -ENOMEM;
    struct store_record *recs = (struct store_record *)blk;
    uint8_t *p = blk + head;
    size_t k = 0;
    for (uint64_t i = lo; i <= hi;) {
        struct seg *s = seg_find(lg, i);
        uint64_t last = seg_last(s) < hi ? seg_last(s) : hi;
        uint64_t a = s->off[i - s->first], b = rec_end(s, last - s->first);
        int rc = file_pread_full(s->fd, p, (size_t)(b - a), a);
        if (rc < 0) {
            free(blk);
            return rc;
        }
        for (uint64_t j = i; j <= last; j++) {
            uint64_t ra = s->off[j - s->first], rb = rec_end(s, j - s->first);
            if (rec_decode(p + (ra - a), (size_t)(rb - ra), &recs[k]) < 0 ||
                recs[k].index != j) {
                free(blk);
                return -EIO;
            }
            k++;
        }
        p += b - a;
        i = last + 1;
    }
    *out = recs;
    *n = cnt;
    return 0;
}
