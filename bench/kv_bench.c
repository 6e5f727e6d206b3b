/* kv_bench.c - speed and memory of the key-value state machine alone (no
 * Raft, no disk): dictionary set/get/list/delete on N keys in random order,
 * kv_apply of encoded session writes from 64 clients, and a snapshot written
 * and loaded back.  Memory is the dictionary's own count and the process's
 * resident growth, both per key.
 *
 * Usage: kv-bench [--keys N] [--value-size BYTES] [--list-limit L]
 */
#include "kv/kv.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    if (f)
        fclose(f);
    return kib;
}

/* Key i under a bijective scramble, so "random order" needs no shuffle array
 * and key i can be rebuilt at will. */
static size_t key_of(char *buf, uint64_t i)
{
    uint64_t x = i * 0x9e3779b97f4a7c15ull;
    x ^= x >> 29;
    return (size_t)snprintf(buf, 32, "user:%016llx", (unsigned long long)x);
}

static void report(const char *what, size_t ops, double secs)
{
    printf("%-28s %10.0f ops/s  (%zu ops, %.3f s)\n", what, (double)ops / secs, ops, secs);
}

static int count_fn(void *ctx, const void *k, size_t kl, const void *v, size_t vl)
{
    (void)k;
    (void)v;
    *(size_t *)ctx += kl + vl;
    return 0;
}

static int sink(void *ctx, const void *buf, size_t len)
{
    (void)buf;
    *(size_t *)ctx += len;
    return 0;
}

struct growbuf {
    unsigned char *p;
    size_t len, cap;
};

static int keep(void *ctx, const void *buf, size_t len)
{
    struct growbuf *g = ctx;
    if (g->len + len > g->cap) {
        g->cap = (g->len + len) * 2;
        if (!(g->p = realloc(g->p, g->cap)))
            return -1;
    }
    memcpy(g->p + g->len, buf, len);
    g->len += len;
    return 0;
}

static void bench_dict(size_t n, size_t vsize, size_t list_limit)
{
    char key[32];
    unsigned char *val = malloc(vsize);
    memset(val, 'v', vsize);
    long rss0 = rss_kib();
    struct kv_dict *d = kv_dict_new();

    double t = now_s();
    for (size_t i = 0; i < n; i++)
        if (kv_dict_set(d, key, key_of(key, i), val, vsize) != KV_OK)
            abort();
    report("set (insert, random order)", n, now_s() - t);
    long rss1 = rss_kib();
    printf("%-28s %10.1f bytes/key by count (%.1f of it key+value), %.1f by RSS\n",
           "memory", (double)kv_dict_mem_bytes(d) / (double)n,
           (double)kv_dict_data_bytes(d) / (double)n,
           (double)(rss1 - rss0) * 1024.0 / (double)n);

    t = now_s();
    for (size_t i = 0; i < n; i++) {
        const void *v;
        size_t vl;
        if (kv_dict_get(d, key, key_of(key, (i * 7919) % n), &v, &vl) != KV_OK)
            abort();
    }
    report("get (random)", n, now_s() - t);

    t = now_s();
    for (size_t i = 0; i < n; i++)
        kv_dict_set(d, key, key_of(key, (i * 7919) % n), val, vsize);
    report("set (overwrite, random)", n, now_s() - t);

    /* LIST pages: a random 2-hex-digit prefix ("user:3f", ~n/256 keys). */
    size_t lists = n / 100, bytes = 0;
    t = now_s();
    for (size_t i = 0; i < lists; i++) {
        char prefix[8];
        snprintf(prefix, sizeof(prefix), "user:%02zx", (i * 37) % 256);
        bool more;
        kv_dict_list(d, prefix, 7, NULL, 0, list_limit, count_fn, &bytes, &more);
    }
    double secs = now_s() - t;
    char what[64];
    snprintf(what, sizeof(what), "list (prefix, limit %zu)", list_limit);
    report(what, lists, secs);
    printf("%-28s %10.0f keys/s\n", "list throughput",
           (double)lists * (double)list_limit / secs);

    t = now_s();
    struct kv_iter it;
    const void *k, *v;
    size_t kl, vl, seen = 0;
    kv_dict_seek(d, &it, NULL, 0, false);
    while (kv_iter_next(&it, &k, &kl, &v, &vl))
        seen++;
    report("full ordered scan", seen, now_s() - t);

    t = now_s();
    for (size_t i = 0; i < n; i++)
        if (kv_dict_del(d, key, key_of(key, (i * 7919) % n)) != KV_OK)
            abort();
    report("del (random)", n, now_s() - t);
    kv_dict_free(d);
    free(val);
}

static void bench_apply(size_t n, size_t vsize)
{
    enum { CLIENTS = 64 };
    char key[32];
    unsigned char *val = malloc(vsize), *buf = malloc(vsize + 128);
    memset(val, 'v', vsize);
    struct kv *kv = kv_new(NULL);
    uint64_t seq[CLIENTS] = {0};
    double encode = 0, apply = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t c = i % CLIENTS;
        struct kv_command cmd = {.op = KV_OP_SET, .client_id = 1000 + c,
                                 .sequence = ++seq[c], .time_ms = 1700000000000ull + i / 50,
                                 .value = val, .value_len = vsize};
        cmd.key = key;
        cmd.key_len = key_of(key, i);
        size_t len;
        double t0 = now_s();
        if (kv_command_encode(&cmd, buf, vsize + 128, &len) != KV_OK)
            abort();
        double t1 = now_s();
        struct kv_result res;
        if (kv_apply(kv, i + 1, buf, len, &res) != KV_OK || res.status != KV_STATUS_OK)
            abort();
        double t2 = now_s();
        encode += t1 - t0;
        apply += t2 - t1;
        if (i == 0)
            printf("%-28s %10zu bytes for a %zu-byte key and %zu-byte value\n",
                   "encoded SET command", len, cmd.key_len, vsize);
    }
    report("command encode", n, encode);
    report("kv_apply (64 sessions)", n, apply);

    size_t snap_bytes = 0;
    double t = now_s();
    kv_snapshot_write(kv, sink, &snap_bytes);
    double secs = now_s() - t;
    printf("%-28s %10.0f MB/s  (%zu bytes, %.1f bytes/key, %.3f s)\n", "snapshot write",
           (double)snap_bytes / secs / 1e6, snap_bytes, (double)snap_bytes / (double)n, secs);

    struct growbuf g = {0};
    kv_snapshot_write(kv, keep, &g);
    struct kv *copy;
    t = now_s();
    if (kv_snapshot_load(g.p, g.len, NULL, &copy) != KV_OK)
        abort();
    secs = now_s() - t;
    printf("%-28s %10.0f MB/s  (%.3f s)\n", "snapshot load", (double)g.len / secs / 1e6, secs);
    kv_free(copy);
    free(g.p);
    kv_free(kv);
    free(val);
    free(buf);
}

int main(int argc, char **argv)
{
    size_t n = 1000000, vsize = 100, list_limit = 100;
    static const struct option opts[] = {
        {"keys", required_argument, NULL, 'n'},
        {"value-size", required_argument, NULL, 's'},
        {"list-limit", required_argument, NULL, 'l'},
        {NULL, 0, NULL, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'n': n = strtoull(optarg, NULL, 10); break;
        case 's': vsize = strtoull(optarg, NULL, 10); break;
        case 'l': list_limit = strtoull(optarg, NULL, 10); break;
        default:
            fprintf(stderr, "usage: kv-bench [--keys N] [--value-size BYTES] [--list-limit L]\n");
            return 2;
        }
    }
    if (!n) {
        fprintf(stderr, "kv-bench: --keys must be positive\n");
        return 2;
    }
    printf("kv-bench: %zu keys (21 bytes), %zu-byte values\n", n, vsize);
    bench_dict(n, vsize, list_limit);
    bench_apply(n, vsize);
    return 0;
}
