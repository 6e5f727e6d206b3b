/* fault.c - the seam every mutating system call of the store goes through,
 * so tests can fail the Nth call of a kind with EIO/ENOSPC and can simulate a
 * power cut (files fall back to what was last synced, give or take a torn tail).
 * Disarmed it costs one relaxed atomic increment per call. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/internal.h"

static atomic_ulong calls[STORE_FAULT_NOPS];
static atomic_ulong fail_at[STORE_FAULT_NOPS]; /* 0 = disarmed */
static atomic_int fail_err[STORE_FAULT_NOPS];
static atomic_uint delay_us[STORE_FAULT_NOPS]; /* 0 = none */
static atomic_bool tracking, fake_sync;

/* Power-cut bookkeeping, by path: bytes known durable. */
struct tracked {
    char *path;
    int fd; /* -1 once closed */
    uint64_t synced;
};
static pthread_mutex_t track_mu = PTHREAD_MUTEX_INITIALIZER;
static struct tracked *trk;
static size_t ntrk, captrk;

static const char *const op_names[STORE_FAULT_NOPS] = {
    "open", "write", "fdatasync", "fsync", "rename", "ftruncate", "unlink",
};

const char *store_fault_op_name(enum store_fault_op op)
{
    return (unsigned)op < STORE_FAULT_NOPS ? op_names[op] : "?";
}

void store_fault_arm(enum store_fault_op op, unsigned long nth, int err)
{
    if ((unsigned)op >= STORE_FAULT_NOPS || nth == 0)
        return;
    atomic_store(&fail_err[op], err);
    atomic_store(&fail_at[op], atomic_load(&calls[op]) + nth);
}

static void track_clear_locked(void)
{
    for (size_t i = 0; i < ntrk; i++)
        free(trk[i].path);
    free(trk);
    trk = NULL;
    ntrk = captrk = 0;
}

void store_fault_reset(void)
{
    for (int i = 0; i < STORE_FAULT_NOPS; i++) {
        atomic_store(&fail_at[i], 0);
        atomic_store(&calls[i], 0);
        atomic_store(&delay_us[i], 0);
    }
    atomic_store(&tracking, false);
    atomic_store(&fake_sync, false);
    pthread_mutex_lock(&track_mu);
    track_clear_locked();
    pthread_mutex_unlock(&track_mu);
}

unsigned long store_fault_count(enum store_fault_op op)
{
    return (unsigned)op < STORE_FAULT_NOPS ? atomic_load(&calls[op]) : 0;
}

void store_fault_track(bool on)
{
    atomic_store(&tracking, on);
}

void store_fault_fake_sync(bool on)
{
    atomic_store(&fake_sync, on);
}

void store_fault_delay(enum store_fault_op op, unsigned usec)
{
    if ((unsigned)op < STORE_FAULT_NOPS)
        atomic_store(&delay_us[op], usec);
}

/* 0, or the armed -errno for this call. */
static int hit(enum store_fault_op op)
{
    unsigned long n = atomic_fetch_add_explicit(&calls[op], 1, memory_order_relaxed) + 1;
    unsigned us = atomic_load_explicit(&delay_us[op], memory_order_relaxed);
    if (us) {
        /* A slow disk: the call's own thread waits, as in a real one. */
        struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (long)(us % 1000000) * 1000};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
        }
    }
    unsigned long at = atomic_load_explicit(&fail_at[op], memory_order_relaxed);
    if (at && n == at) {
        atomic_store(&fail_at[op], 0);
        return -atomic_load(&fail_err[op]);
    }
    return 0;
}

static uint64_t fd_size(int fd)
{
    struct stat sb;
    return fstat(fd, &sb) == 0 ? (uint64_t)sb.st_size : 0;
}

static struct tracked *find_locked(const char *path, int fd)
{
    for (size_t i = 0; i < ntrk; i++)
        if ((path && strcmp(trk[i].path, path) == 0) || (!path && trk[i].fd == fd))
            return &trk[i];
    return NULL;
}

static void track_open(const char *path, int fd)
{
    if (!atomic_load(&tracking))
        return;
    pthread_mutex_lock(&track_mu);
    struct tracked *t = find_locked(path, -1);
    if (!t) {
        if (ntrk == captrk) {
            size_t nc = captrk ? captrk * 2 : 64;
            struct tracked *nt = realloc(trk, nc * sizeof(*nt));
            if (!nt)
                goto out;
            trk = nt;
            captrk = nc;
        }
        t = &trk[ntrk++];
        t->path = strdup(path);
        /* What was there before tracking started counts as durable. */
        t->synced = fd_size(fd);
    }
    t->fd = fd;
out:
    pthread_mutex_unlock(&track_mu);
}

static void track_fd(int fd, bool sync, off_t trunc)
{
    if (!atomic_load(&tracking))
        return;
    pthread_mutex_lock(&track_mu);
    struct tracked *t = find_locked(NULL, fd);
    if (t) {
        if (sync)
            t->synced = fd_size(fd);
        else if (trunc >= 0 && (uint64_t)trunc < t->synced)
            t->synced = (uint64_t)trunc;
    }
    pthread_mutex_unlock(&track_mu);
}

int sys_open(const char *path, int flags, mode_t mode)
{
    int rc = hit(STORE_FAULT_OPEN);
    if (rc)
        return rc;
    int fd = open(path, flags | O_CLOEXEC, mode);
    if (fd < 0)
        return -errno;
    track_open(path, fd);
    return fd;
}

static void untrack_fd(int fd)
{
    if (atomic_load(&tracking)) {
        pthread_mutex_lock(&track_mu);
        struct tracked *t = find_locked(NULL, fd);
        if (t)
            t->fd = -1;
        pthread_mutex_unlock(&track_mu);
    }
}

void sys_close(int fd)
{
    if (fd < 0)
        return;
    untrack_fd(fd);
    close(fd);
}

struct closing {
    size_t n;
    int fd[];
};

static void *closer_main(void *arg)
{
    struct closing *c = arg;
    for (size_t i = 0; i < c->n; i++)
        close(c->fd[i]);
    free(c);
    return NULL;
}

/* The last close of a file that was unlinked or renamed over frees its
 * blocks: for a snapshot of a large dataset, or a log segment, that can
 * wait behind the file system's journal for 100 ms or more while the disk
 * is busy.  Nobody needs to wait for it, so a short-lived thread does it,
 * and the store's writer (and the lock it may hold) does not. */
void sys_close_detached(const int *fds, size_t n)
{
    size_t k = 0;
    struct closing *c = n ? malloc(sizeof(*c) + n * sizeof(int)) : NULL;
    for (size_t i = 0; i < n; i++)
        if (fds[i] >= 0) {
            untrack_fd(fds[i]);
            if (c)
                c->fd[k++] = fds[i];
            else
                close(fds[i]);
        }
    if (!c)
        return;
    c->n = k;
    pthread_attr_t attr;
    pthread_t t;
    bool started = false;
    if (k && pthread_attr_init(&attr) == 0) {
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        started = pthread_create(&t, &attr, closer_main, c) == 0;
        pthread_attr_destroy(&attr);
    }
    if (!started)
        closer_main(c);
}

/* A failing write writes part of its data first, as a full disk would. */
static ssize_t half_iov(int fd, const struct iovec *iov, int iovcnt, off_t off)
{
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    size_t half = total / 2;
    for (int i = 0; i < iovcnt && half; i++) {
        size_t l = iov[i].iov_len < half ? iov[i].iov_len : half;
        ssize_t w = off >= 0 ? pwrite(fd, iov[i].iov_base, l, off) : write(fd, iov[i].iov_base, l);
        if (w <= 0)
            break;
        if (off >= 0)
            off += w;
        half -= (size_t)w;
    }
    return 0;
}

ssize_t sys_pwritev_all(int fd, const struct iovec *iov_in, int iovcnt, off_t off)
{
    int rc = hit(STORE_FAULT_WRITE);
    if (rc) {
        half_iov(fd, iov_in, iovcnt, off);
        return rc;
    }
    /* Copy so short writes can advance through the vector. */
    struct iovec small[64], *iov = small;
    if (iovcnt > 64) {
        iov = malloc(sizeof(*iov) * (size_t)iovcnt);
        if (!iov)
            return -ENOMEM;
    }
    memcpy(iov, iov_in, sizeof(*iov) * (size_t)iovcnt);
    ssize_t total = 0;
    int i = 0;
    while (i < iovcnt) {
        int cnt = iovcnt - i > IOV_MAX ? IOV_MAX : iovcnt - i;
        ssize_t w = pwritev(fd, iov + i, cnt, off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            total = -errno;
            break;
        }
        if (w == 0) {
            total = -EIO;
            break;
        }
        off += w;
        total += w;
        while (i < iovcnt && (size_t)w >= iov[i].iov_len) {
            w -= (ssize_t)iov[i].iov_len;
            i++;
        }
        if (i < iovcnt) {
            iov[i].iov_base = (uint8_t *)iov[i].iov_base + w;
            iov[i].iov_len -= (size_t)w;
        }
    }
    if (iov != small)
        free(iov);
    return total;
}

ssize_t sys_write_all(int fd, const void *buf, size_t len)
{
    struct iovec v = {.iov_base = (void *)buf, .iov_len = len};
    int rc = hit(STORE_FAULT_WRITE);
    if (rc) {
        half_iov(fd, &v, 1, -1);
        return rc;
    }
    const uint8_t *p = buf;
    size_t left = len;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (w == 0)
            return -EIO;
        p += w;
        left -= (size_t)w;
    }
    return (ssize_t)len;
}

int sys_fdatasync(int fd)
{
    int rc = hit(STORE_FAULT_FDATASYNC);
    if (rc)
        return rc;
    if (!atomic_load_explicit(&fake_sync, memory_order_relaxed) && fdatasync(fd) < 0)
        return -errno;
    track_fd(fd, true, -1);
    return 0;
}

int sys_fsync(int fd)
{
    int rc = hit(STORE_FAULT_FSYNC);
    if (rc)
        return rc;
    if (!atomic_load_explicit(&fake_sync, memory_order_relaxed) && fsync(fd) < 0)
        return -errno;
    track_fd(fd, true, -1);
    return 0;
}

int sys_rename(const char *from, const char *to)
{
    int rc = hit(STORE_FAULT_RENAME);
    if (rc)
        return rc;
    if (rename(from, to) < 0)
        return -errno;
    if (atomic_load(&tracking)) {
        pthread_mutex_lock(&track_mu);
        struct tracked *dst = find_locked(to, -1), *src = find_locked(from, -1);
        if (dst) {
            free(dst->path);
            *dst = trk[--ntrk];
            src = find_locked(from, -1);
        }
        if (src) {
            free(src->path);
            src->path = strdup(to);
        }
        pthread_mutex_unlock(&track_mu);
    }
    return 0;
}

int sys_ftruncate(int fd, off_t len)
{
    int rc = hit(STORE_FAULT_FTRUNCATE);
    if (rc)
        return rc;
    if (ftruncate(fd, len) < 0)
        return -errno;
    track_fd(fd, false, len);
    return 0;
}

int sys_unlink(const char *path)
{
    int rc = hit(STORE_FAULT_UNLINK);
    if (rc)
        return rc;
    if (unlink(path) < 0)
        return -errno;
    if (atomic_load(&tracking)) {
        pthread_mutex_lock(&track_mu);
        struct tracked *t = find_locked(path, -1);
        if (t) {
            free(t->path);
            *t = trk[--ntrk];
        }
        pthread_mutex_unlock(&track_mu);
    }
    return 0;
}

static uint64_t rng_next(uint64_t *s)
{
    /* splitmix64: good enough to pick cut points, and seedable */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void store_fault_power_cut(uint64_t seed)
{
    pthread_mutex_lock(&track_mu);
    for (size_t i = 0; i < ntrk; i++) {
        struct tracked *t = &trk[i];
        struct stat sb;
        if (stat(t->path, &sb) < 0 || (uint64_t)sb.st_size <= t->synced)
            continue;
        uint64_t size = (uint64_t)sb.st_size;
        uint64_t keep = t->synced + rng_next(&seed) % (size - t->synced + 1);
        int fd = open(t->path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        if (keep > t->synced && rng_next(&seed) % 3 == 0) {
            /* A page of the unsynced part never reached the disk: it reads
             * back as zeros while later pages made it. */
            uint64_t pg = (t->synced + rng_next(&seed) % (keep - t->synced)) & ~4095ull;
            uint64_t from = pg < t->synced ? t->synced : pg;
            uint64_t to = pg + 4096 < keep ? pg + 4096 : keep;
            static const uint8_t zeros[4096];
            if (to > from && pwrite(fd, zeros, to - from, (off_t)from) < 0) {
                /* best effort: the cut below still simulates a crash */
            }
        }
        if (ftruncate(fd, (off_t)keep) < 0) {
            /* best effort */
        }
        close(fd);
        t->synced = keep;
    }
    pthread_mutex_unlock(&track_mu);
}
