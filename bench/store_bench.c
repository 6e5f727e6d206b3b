/* store_bench.c - storage numbers for BENCHMARKS.md, side by side on one file
 * system: the one-fdatasync-per-record floor, the store's group commit with
 * many concurrent producers (throughput and time to durable), and recovery
 * (open + verify) of a large log from the page cache.
 *
 *   store-bench [--dir D] [--size B] [--floor N] [--producers P]
 *               [--per-producer N] [--batch-wait-us U,...] [--recovery-mb M]
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "store/store.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "store-bench: %s: %s\n", what, strerror(rc < 0 ? -rc : rc));
    exit(1);
}

static char *mkdir_under(const char *base, const char *tag)
{
    char *p = NULL;
    if (asprintf(&p, "%s/store-bench-%s-XXXXXX", base, tag) < 0 || !mkdtemp(p))
        die("mkdtemp", errno);
    return p;
}

static void rm_rf(const char *p)
{
    char *cmd = NULL;
    if (asprintf(&cmd, "rm -rf '%s'", p) > 0 && system(cmd) != 0)
        fprintf(stderr, "store-bench: could not remove %s\n", p);
    free(cmd);
}

/* ---- 1. the floor: one write + fdatasync per record ---- */
static double bench_floor(const char *base, size_t size, int n)
{
    char *dir = mkdir_under(base, "floor"), *path = NULL;
    if (asprintf(&path, "%s/raw", dir) < 0)
        die("asprintf", ENOMEM);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0)
        die("open", errno);
    char *buf = calloc(1, size);
    double t0 = now();
    for (int i = 0; i < n; i++) {
        if (write(fd, buf, size) != (ssize_t)size)
            die("write", errno);
        if (fdatasync(fd) < 0)
            die("fdatasync", errno);
    }
    double rate = n / (now() - t0);
    close(fd);
    free(buf);
    free(path);
    rm_rf(dir);
    free(dir);
    return rate;
}

/* ---- 2. group commit with concurrent producers ---- */
struct gc {
    struct store *st;
    pthread_mutex_t mu; /* serializes the owner-thread API */
    /* Producers wait on this word with a futex rather than a condition
     * variable, so a finished batch does not convoy 64 threads through one
     * mutex: the harness should cost less than the store it measures. */
    _Atomic uint32_t done_seq;
    _Atomic int err;
    _Atomic bool stop;
    size_t size;
    int per;
    uint8_t *payload;
};

struct producer {
    struct gc *g;
    pthread_t th;
    double *lat;
};

static void *producer_main(void *arg)
{
    struct producer *p = arg;
    struct gc *g = p->g;
    for (int i = 0; i < g->per; i++) {
        double t0 = now();
        pthread_mutex_lock(&g->mu);
        struct store_record r = {.index = store_last_index(g->st) + 1, .term = 1,
                                 .data = g->payload, .len = (uint32_t)g->size};
        uint64_t seq;
        int rc = store_append(g->st, NULL, &r, 1, &seq);
        pthread_mutex_unlock(&g->mu);
        if (rc < 0)
            die("store_append", rc);
        for (;;) {
            uint32_t d = atomic_load(&g->done_seq);
            if ((int32_t)(d - (uint32_t)seq) >= 0 || atomic_load(&g->err))
                break;
            syscall(SYS_futex, &g->done_seq, FUTEX_WAIT_PRIVATE, d, NULL, NULL, 0);
        }
        p->lat[i] = now() - t0;
    }
    return NULL;
}

/* The event loop's part: wait on the eventfd, poll, wake whoever waits. */
static void *collector_main(void *arg)
{
    struct gc *g = arg;
    for (;;) {
        struct pollfd pfd = {.fd = store_eventfd(g->st), .events = POLLIN};
        poll(&pfd, 1, 100);
        pthread_mutex_lock(&g->mu);
        struct store_progress pr;
        int err = store_poll(g->st, &pr);
        pthread_mutex_unlock(&g->mu);
        if (err)
            atomic_store(&g->err, err);
        if ((uint32_t)pr.done_seq != atomic_load(&g->done_seq) || err) {
            atomic_store(&g->done_seq, (uint32_t)pr.done_seq);
            syscall(SYS_futex, &g->done_seq, FUTEX_WAKE_PRIVATE, 1 << 30, NULL, NULL, 0);
        }
        if (atomic_load(&g->stop) || err)
            return NULL;
    }
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void bench_group(const char *base, size_t size, int nprod, int per, unsigned wait_us,
                        double floor_rate)
{
    char *dir = mkdir_under(base, "group");
    struct store_options o;
    store_options_default(&o);
    o.batch_wait_us = wait_us;
    struct gc g = {.size = size, .per = per};
    struct store_open_info info;
    int rc = store_open(dir, &o, &g.st, &info);
    if (rc < 0)
        die(info.error, rc);
    pthread_mutex_init(&g.mu, NULL);
    g.payload = calloc(1, size);
    memset(g.payload, 0xab, size);
    struct producer *ps = calloc((size_t)nprod, sizeof(*ps));
    pthread_t coll;
    store_fault_reset(); /* only to count fdatasync calls: nothing is armed */
    pthread_create(&coll, NULL, collector_main, &g);
    double t0 = now();
    for (int i = 0; i < nprod; i++) {
        ps[i].g = &g;
        ps[i].lat = calloc((size_t)per, sizeof(double));
        pthread_create(&ps[i].th, NULL, producer_main, &ps[i]);
    }
    for (int i = 0; i < nprod; i++)
        pthread_join(ps[i].th, NULL);
    double el = now() - t0;
    atomic_store(&g.stop, true);
    pthread_join(coll, NULL);
    size_t total = (size_t)nprod * (size_t)per;
    double *all = malloc(total * sizeof(double));
    for (int i = 0; i < nprod; i++) {
        memcpy(all + (size_t)i * (size_t)per, ps[i].lat, (size_t)per * sizeof(double));
        free(ps[i].lat);
    }
    qsort(all, total, sizeof(double), cmp_d);
    double rate = (double)total / el;
    unsigned long syncs = store_fault_count(STORE_FAULT_FDATASYNC);
    printf("group commit: %d producers x %d records of %zu B, batch_wait_us=%u: "
           "%.0f records/s (%.1fx floor), time to durable p50 %.0f us, p99 %.0f us, "
           "%.1f records per fdatasync\n",
           nprod, per, size, wait_us, rate, rate / floor_rate, all[total / 2] * 1e6,
           all[total * 99 / 100] * 1e6, syncs ? (double)total / (double)syncs : 0.0);
    free(all);
    free(ps);
    free(g.payload);
    if ((rc = store_close(g.st)) < 0)
        die("store_close", rc);
    rm_rf(dir);
    free(dir);
}

/* ---- 3. recovery of a large log ---- */
static void bench_recovery(const char *base, size_t size, uint64_t mb)
{
    char *dir = mkdir_under(base, "recovery");
    struct store *st;
    struct store_open_info info;
    int rc = store_open(dir, NULL, &st, &info);
    if (rc < 0)
        die(info.error, rc);
    const size_t batch = 8192;
    struct store_record *r = calloc(batch, sizeof(*r));
    uint8_t *payload = malloc(size);
    for (size_t i = 0; i < size; i++)
        payload[i] = (uint8_t)(i * 7);
    uint64_t want = mb << 20, bytes = 0, next = 1, seq = 0;
    double tw = now();
    while (bytes < want) {
        for (size_t i = 0; i < batch; i++)
            r[i] = (struct store_record){.index = next + i, .term = 1, .data = payload,
                                         .len = (uint32_t)size};
        if ((rc = store_append(st, NULL, r, batch, &seq)) < 0)
            die("store_append", rc);
        next += batch;
        bytes += batch * (size + 32);
        if (next % (batch * 16) == 1 && (rc = store_wait(st, seq)) < 0)
            die("store_wait", rc); /* bound the queue */
    }
    if ((rc = store_wait(st, seq)) < 0 || (rc = store_close(st)) < 0)
        die("writing the log", rc);
    double wrote = now() - tw;
    /* First open pulls the files into the page cache; the second is timed. */
    double best = 1e9;
    for (int run = 0; run < 4; run++) {
        double t0 = now();
        if ((rc = store_open(dir, NULL, &st, &info)) < 0)
            die(info.error, rc);
        double el = now() - t0;
        if (run > 0 && el < best)
            best = el;
        if (store_last_index(st) != next - 1)
            die("recovered log has the wrong length", EIO);
        store_close(st);
    }
    printf("recovery: %.0f MiB log (%llu records of %zu B; written in %.1f s), "
           "open+verify from page cache: %.3f s = %.0f MB/s\n",
           (double)bytes / (1 << 20), (unsigned long long)(next - 1), size, wrote, best,
           (double)bytes / best / 1e6);
    free(r);
    free(payload);
    rm_rf(dir);
    free(dir);
}

int main(int argc, char **argv)
{
    const char *base = "/tmp";
    size_t size = 128;
    int floor_n = 3000, nprod = 64, per = 3000;
    uint64_t rec_mb = 1024;
    char waits[128] = "0,200";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--dir"))
            base = argv[i + 1];
        else if (!strcmp(argv[i], "--size"))
            size = strtoul(argv[i + 1], NULL, 0);
        else if (!strcmp(argv[i], "--floor"))
            floor_n = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--producers"))
            nprod = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--per-producer"))
            per = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--batch-wait-us"))
            snprintf(waits, sizeof(waits), "%s", argv[i + 1]);
        else if (!strcmp(argv[i], "--recovery-mb"))
            rec_mb = strtoull(argv[i + 1], NULL, 0);
        else {
            fprintf(stderr, "usage: see the comment at the top of bench/store_bench.c\n");
            return 2;
        }
    }
    double fl = bench_floor(base, size, floor_n);
    printf("floor: write(%zu B) + fdatasync per record: %.0f records/s\n", size, fl);
    for (char *save = NULL, *w = strtok_r(waits, ",", &save); w; w = strtok_r(NULL, ",", &save))
        bench_group(base, size, nprod, per, (unsigned)atoi(w), fl);
    if (rec_mb)
        bench_recovery(base, size, rec_mb);
    return 0;
}
