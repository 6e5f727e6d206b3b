/* metrics.h - a small Prometheus metrics registry shared by raftkv-node and
 * raftkv-proxy.
 *
 * Every series is registered once, before the threads that update or read
 * it start; after that the registry's shape never changes.  Updates are
 * relaxed C11 atomics (a counter add is one `lock xadd`), so the Raft loop
 * and the store's writer thread never take a lock to count, and the HTTP
 * thread renders a scrape without stopping either of them.  A scrape may see
 * one histogram bucket updated and the next not yet: _count is derived from
 * the buckets it read, so every exposition is self-consistent.
 *
 * Names follow Prometheus conventions (raftkv_ prefix, base units, _total
 * on counters, _seconds on durations); series of one family are labelled
 * variants registered with the same name and help. */
#ifndef RAFTKV_METRICS_METRICS_H
#define RAFTKV_METRICS_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct metrics_counter {
    _Atomic uint64_t v;
};

/* A double kept as its bit pattern: atomic stores of 64-bit integers are
 * lock-free everywhere raftkv runs, atomic doubles are not guaranteed. */
struct metrics_gauge {
    _Atomic uint64_t bits;
};

#define METRICS_MAX_BUCKETS 24
struct metrics_hist {
    const double *bounds; /* upper bounds, ascending; +Inf implied */
    unsigned n_bounds;
    _Atomic uint64_t counts[METRICS_MAX_BUCKETS + 1]; /* per bucket, not cumulative */
    _Atomic uint64_t sum_bits;                        /* double */
};

static inline void metrics_counter_add(struct metrics_counter *c, uint64_t d)
{
    if (c)
        atomic_fetch_add_explicit(&c->v, d, memory_order_relaxed);
}

static inline void metrics_counter_inc(struct metrics_counter *c)
{
    metrics_counter_add(c, 1);
}

static inline uint64_t metrics_counter_get(const struct metrics_counter *c)
{
    return atomic_load_explicit(&c->v, memory_order_relaxed);
}

/* A counter that mirrors a total kept elsewhere (the Raft core's event
 * counts) by its one writer: it stays monotonic as long as the source is. */
static inline void metrics_counter_set(struct metrics_counter *c, uint64_t total)
{
    if (c)
        atomic_store_explicit(&c->v, total, memory_order_relaxed);
}

void metrics_gauge_set(struct metrics_gauge *g, double v);
double metrics_gauge_get(const struct metrics_gauge *g);
/* Any number of threads may observe at once (sum is a CAS loop). */
void metrics_hist_observe(struct metrics_hist *h, double v);
uint64_t metrics_hist_count(const struct metrics_hist *h);

/* Bucket layouts shared by node and proxy. */
extern const double metrics_buckets_latency[]; /* 100 µs .. 10 s */
extern const unsigned metrics_buckets_latency_n;
extern const double metrics_buckets_long[];    /* 1 ms .. 10 min: snapshots */
extern const unsigned metrics_buckets_long_n;
extern const double metrics_buckets_count[];   /* 1 .. 4096: batch sizes */
extern const unsigned metrics_buckets_count_n;

struct metrics_registry;

/* A gauge computed by the scraping thread when it renders (e.g. RSS read
 * from /proc); must be safe to call from that thread. */
typedef double (*metrics_gauge_fn)(void *arg);

/* Series flags. */
#define METRICS_HIDE_ZERO 1u /* not rendered until it moved (label sets never used) */

int metrics_registry_new(struct metrics_registry **out);
void metrics_registry_free(struct metrics_registry *r);

/* Register one series; labels is the inside of {...} (e.g.
 * `op="set",status="ok"`) or NULL.  Strings are copied.  The returned
 * pointer stays valid until metrics_registry_free().  NULL: out of memory
 * or a name used with another type. */
struct metrics_counter *metrics_counter_new(struct metrics_registry *r, const char *name,
                                            const char *help, const char *labels,
                                            unsigned flags);
struct metrics_gauge *metrics_gauge_new(struct metrics_registry *r, const char *name,
                                        const char *help, const char *labels);
struct metrics_hist *metrics_hist_new(struct metrics_registry *r, const char *name,
                                      const char *help, const char *labels, const double *bounds,
                                      unsigned n_bounds, unsigned flags);
int metrics_gauge_fn_new(struct metrics_registry *r, const char *name, const char *help,
                         const char *labels, metrics_gauge_fn fn, void *arg);

/* Render every series in the Prometheus text format 0.0.4 into a malloc'ed,
 * NUL-terminated buffer (*out, *len).  0 or -ENOMEM. */
int metrics_render_prometheus(const struct metrics_registry *r, char **out, size_t *len);
/* The same data as one JSON object: {"name{labels}": value, ...}, histograms
 * as {"count":..,"sum":..,"buckets":{"le":cumulative,...}}. */
int metrics_render_json(const struct metrics_registry *r, char **out, size_t *len);

/* Process metrics every raftkv daemon exposes: resident memory, open file
 * descriptors, start time, build info (version and git commit). */
int metrics_add_process(struct metrics_registry *r, const char *version);
/* Resident set size from /proc/self/statm.  0 or -errno. */
int metrics_resident_bytes(uint64_t *out);

#endif
