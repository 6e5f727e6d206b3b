/* metrics.c - the registry, lock-free updates and the text/JSON renderers
 * (see metrics.h for the rules). */
#include "metrics/metrics.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum series_type { SER_COUNTER, SER_GAUGE, SER_GAUGE_FN, SER_HIST };

struct series {
    char *name, *help, *labels;
    enum series_type type;
    unsigned flags;
    union {
        struct metrics_counter counter;
        struct metrics_gauge gauge;
        struct metrics_hist hist;
        struct {
            metrics_gauge_fn fn;
            void *arg;
        } fn;
    } u;
    struct series *next;
};

/* The lock guards the list, not the values: series are added at start-up
 * and, rarely, when a member joins at runtime, while a renderer on another
 * thread walks the list.  Updates to values never take it. */
struct metrics_registry {
    pthread_mutex_t mu;
    struct series *head;
};

const double metrics_buckets_latency[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                          0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5,
                                          5,      10};
const unsigned metrics_buckets_latency_n =
    sizeof(metrics_buckets_latency) / sizeof(metrics_buckets_latency[0]);
const double metrics_buckets_long[] = {0.001, 0.01, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600};
const unsigned metrics_buckets_long_n = sizeof(metrics_buckets_long) / sizeof(metrics_buckets_long[0]);
const double metrics_buckets_count[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096};
const unsigned metrics_buckets_count_n =
    sizeof(metrics_buckets_count) / sizeof(metrics_buckets_count[0]);

static uint64_t dbits(double v)
{
    uint64_t b;
    memcpy(&b, &v, sizeof(b));
    return b;
}

static double bitsd(uint64_t b)
{
    double v;
    memcpy(&v, &b, sizeof(v));
    return v;
}

void metrics_gauge_set(struct metrics_gauge *g, double v)
{
    if (g)
        atomic_store_explicit(&g->bits, dbits(v), memory_order_relaxed);
}

double metrics_gauge_get(const struct metrics_gauge *g)
{
    return bitsd(atomic_load_explicit(&g->bits, memory_order_relaxed));
}

void metrics_hist_observe(struct metrics_hist *h, double v)
{
    if (!h)
        return;
    unsigned i = 0;
    while (i < h->n_bounds && v > h->bounds[i])
        i++;
    atomic_fetch_add_explicit(&h->counts[i], 1, memory_order_relaxed);
    uint64_t old = atomic_load_explicit(&h->sum_bits, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(&h->sum_bits, &old, dbits(bitsd(old) + v),
                                                  memory_order_relaxed, memory_order_relaxed)) {
    }
}

uint64_t metrics_hist_count(const struct metrics_hist *h)
{
    uint64_t n = 0;
    for (unsigned i = 0; i <= h->n_bounds; i++)
        n += atomic_load_explicit(&h->counts[i], memory_order_relaxed);
    return n;
}

/* ---- registration ------------------------------------------------------ */

int metrics_registry_new(struct metrics_registry **out)
{
    *out = calloc(1, sizeof(**out));
    if (!*out)
        return -ENOMEM;
    pthread_mutex_init(&(*out)->mu, NULL);
    return 0;
}

void metrics_registry_free(struct metrics_registry *r)
{
    if (!r)
        return;
    for (struct series *s = r->head, *next; s; s = next) {
        next = s->next;
        free(s->name);
        free(s->help);
        free(s->labels);
        free(s);
    }
    pthread_mutex_destroy(&r->mu);
    free(r);
}

/* Series of one family stay together: the text format wants one HELP/TYPE
 * and then every labelled variant. */
static struct series *add_locked(struct metrics_registry *r, const char *name,
                                 const char *help, const char *labels, enum series_type type,
                                 unsigned flags)
{
    struct series **at = &r->head, *last_same = NULL;
    for (struct series *s = r->head; s; s = s->next) {
        if (strcmp(s->name, name) == 0) {
            bool gauge_like = (s->type == SER_GAUGE || s->type == SER_GAUGE_FN) &&
                              (type == SER_GAUGE || type == SER_GAUGE_FN);
            if (s->type != type && !gauge_like)
                return NULL;
            last_same = s;
        }
        at = &s->next;
    }
    if (last_same)
        at = &last_same->next;
    struct series *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->name = strdup(name);
    s->help = strdup(help);
    s->labels = labels && labels[0] ? strdup(labels) : NULL;
    if (!s->name || !s->help || (labels && labels[0] && !s->labels)) {
        free(s->name);
        free(s->help);
        free(s->labels);
        free(s);
        return NULL;
    }
    s->type = type;
    s->flags = flags;
    s->next = *at;
    *at = s;
    return s;
}

static struct series *add(struct metrics_registry *r, const char *name, const char *help,
                          const char *labels, enum series_type type, unsigned flags,
                          const double *bounds, unsigned n_bounds)
{
    pthread_mutex_lock(&r->mu);
    struct series *s = add_locked(r, name, help, labels, type, flags);
    if (s && type == SER_HIST) {
        /* Set before a renderer can see the series. */
        s->u.hist.bounds = bounds;
        s->u.hist.n_bounds = n_bounds;
    }
    pthread_mutex_unlock(&r->mu);
    return s;
}

struct metrics_counter *metrics_counter_new(struct metrics_registry *r, const char *name,
                                            const char *help, const char *labels, unsigned flags)
{
    struct series *s = add(r, name, help, labels, SER_COUNTER, flags, NULL, 0);
    return s ? &s->u.counter : NULL;
}

struct metrics_gauge *metrics_gauge_new(struct metrics_registry *r, const char *name,
                                        const char *help, const char *labels)
{
    struct series *s = add(r, name, help, labels, SER_GAUGE, 0, NULL, 0);
    return s ? &s->u.gauge : NULL;
}

struct metrics_hist *metrics_hist_new(struct metrics_registry *r, const char *name,
                                      const char *help, const char *labels, const double *bounds,
                                      unsigned n_bounds, unsigned flags)
{
    if (n_bounds > METRICS_MAX_BUCKETS)
        return NULL;
    struct series *s = add(r, name, help, labels, SER_HIST, flags, bounds, n_bounds);
    return s ? &s->u.hist : NULL;
}

int metrics_gauge_fn_new(struct metrics_registry *r, const char *name, const char *help,
                         const char *labels, metrics_gauge_fn fn, void *arg)
{
    pthread_mutex_lock(&r->mu);
    struct series *s = add_locked(r, name, help, labels, SER_GAUGE_FN, 0);
    if (s) {
        s->u.fn.fn = fn;
        s->u.fn.arg = arg;
    }
    pthread_mutex_unlock(&r->mu);
    return s ? 0 : -ENOMEM;
}

/* ---- rendering --------------------------------------------------------- */

struct buf {
    char *p;
    size_t len, cap;
    bool oom;
};

static void bprintf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bprintf(struct buf *b, const char *fmt, ...)
{
    if (b->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = true;
            return;
        }
        if (b->p && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 16384;
        while (cap < b->len + (size_t)n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

static int finish(struct buf *b, char **out, size_t *len)
{
    if (b->oom || !b->p) {
        free(b->p);
        return -ENOMEM;
    }
    *out = b->p;
    *len = b->len;
    return 0;
}

/* The text format's HELP escapes backslash and newline. */
static void put_help(struct buf *b, const char *help)
{
    for (const char *c = help; *c; c++) {
        if (*c == '\\')
            bprintf(b, "\\\\");
        else if (*c == '\n')
            bprintf(b, "\\n");
        else
            bprintf(b, "%c", *c);
    }
}

/* Go's strconv formatting is what Prometheus prints; %.17g round-trips and
 * special values get the spellings the format defines. */
static void put_value(struct buf *b, double v)
{
    if (isnan(v))
        bprintf(b, "NaN");
    else if (isinf(v))
        bprintf(b, v > 0 ? "+Inf" : "-Inf");
    else if (v == floor(v) && fabs(v) < 1e15)
        bprintf(b, "%.0f", v);
    else
        bprintf(b, "%.17g", v);
}

static bool hidden(const struct series *s)
{
    if (!(s->flags & METRICS_HIDE_ZERO))
        return false;
    if (s->type == SER_COUNTER)
        return metrics_counter_get(&s->u.counter) == 0;
    if (s->type == SER_HIST)
        return metrics_hist_count(&s->u.hist) == 0;
    return false;
}

static double gauge_value(const struct series *s)
{
    return s->type == SER_GAUGE_FN ? s->u.fn.fn(s->u.fn.arg) : metrics_gauge_get(&s->u.gauge);
}

/* One snapshot of a histogram's buckets, cumulative, and its count. */
static uint64_t hist_read(const struct metrics_hist *h, uint64_t *cum)
{
    uint64_t n = 0;
    for (unsigned i = 0; i <= h->n_bounds; i++) {
        n += atomic_load_explicit(&h->counts[i], memory_order_relaxed);
        cum[i] = n;
    }
    return n;
}

static void labels_with(struct buf *b, const char *labels, const char *extra)
{
    if (!labels && !extra)
        return;
    bprintf(b, "{%s%s%s}", labels ? labels : "", labels && extra ? "," : "", extra ? extra : "");
}

/* Renderers hold the list lock (a scrape of a few hundred series takes well
 * under a millisecond); the registry is logically const to them. */
static void list_lock(const struct metrics_registry *r)
{
    pthread_mutex_lock((pthread_mutex_t *)&r->mu);
}

static void list_unlock(const struct metrics_registry *r)
{
    pthread_mutex_unlock((pthread_mutex_t *)&r->mu);
}

int metrics_render_prometheus(const struct metrics_registry *r, char **out, size_t *len)
{
    static const char *const type_names[] = {"counter", "gauge", "gauge", "histogram"};
    struct buf b = {0};
    list_lock(r);
    const char *family = NULL;
    for (const struct series *s = r->head; s; s = s->next) {
        if (hidden(s))
            continue;
        if (!family || strcmp(family, s->name) != 0) {
            family = s->name;
            bprintf(&b, "# HELP %s ", s->name);
            put_help(&b, s->help);
            bprintf(&b, "\n# TYPE %s %s\n", s->name, type_names[s->type]);
        }
        if (s->type == SER_HIST) {
            const struct metrics_hist *h = &s->u.hist;
            uint64_t cum[METRICS_MAX_BUCKETS + 1];
            uint64_t n = hist_read(h, cum);
            for (unsigned i = 0; i <= h->n_bounds; i++) {
                char le[48];
                if (i < h->n_bounds)
                    snprintf(le, sizeof(le), "le=\"%.6g\"", h->bounds[i]);
                else
                    snprintf(le, sizeof(le), "le=\"+Inf\"");
                bprintf(&b, "%s_bucket", s->name);
                labels_with(&b, s->labels, le);
                bprintf(&b, " %llu\n", (unsigned long long)cum[i]);
            }
            bprintf(&b, "%s_sum", s->name);
            labels_with(&b, s->labels, NULL);
            bprintf(&b, " ");
            put_value(&b, bitsd(atomic_load_explicit(&h->sum_bits, memory_order_relaxed)));
            bprintf(&b, "\n%s_count", s->name);
            labels_with(&b, s->labels, NULL);
            bprintf(&b, " %llu\n", (unsigned long long)n);
            continue;
        }
        bprintf(&b, "%s", s->name);
        labels_with(&b, s->labels, NULL);
        bprintf(&b, " ");
        if (s->type == SER_COUNTER)
            bprintf(&b, "%llu", (unsigned long long)metrics_counter_get(&s->u.counter));
        else
            put_value(&b, gauge_value(s));
        bprintf(&b, "\n");
    }
    list_unlock(r);
    if (!b.p)
        bprintf(&b, "%s", "");
    return finish(&b, out, len);
}

/* JSON has no NaN or Infinity: null stands for both. */
static void put_json_value(struct buf *b, double v)
{
    if (isnan(v) || isinf(v))
        bprintf(b, "null");
    else
        put_value(b, v);
}

/* A series key as JSON string content: the label quotes escaped. */
static void put_json_key(struct buf *b, const struct series *s)
{
    bprintf(b, "\"%s", s->name);
    if (s->labels) {
        bprintf(b, "{");
        for (const char *c = s->labels; *c; c++)
            bprintf(b, *c == '"' || *c == '\\' ? "\\%c" : "%c", *c);
        bprintf(b, "}");
    }
    bprintf(b, "\"");
}

int metrics_render_json(const struct metrics_registry *r, char **out, size_t *len)
{
    struct buf b = {0};
    bprintf(&b, "{");
    bool first = true;
    list_lock(r);
    for (const struct series *s = r->head; s; s = s->next) {
        if (hidden(s))
            continue;
        bprintf(&b, "%s", first ? "" : ",");
        first = false;
        put_json_key(&b, s);
        bprintf(&b, ":");
        if (s->type == SER_COUNTER) {
            bprintf(&b, "%llu", (unsigned long long)metrics_counter_get(&s->u.counter));
        } else if (s->type == SER_HIST) {
            const struct metrics_hist *h = &s->u.hist;
            uint64_t cum[METRICS_MAX_BUCKETS + 1];
            uint64_t n = hist_read(h, cum);
            bprintf(&b, "{\"count\":%llu,\"sum\":", (unsigned long long)n);
            put_json_value(&b, bitsd(atomic_load_explicit(&h->sum_bits, memory_order_relaxed)));
            bprintf(&b, ",\"buckets\":{");
            for (unsigned i = 0; i <= h->n_bounds; i++) {
                if (i < h->n_bounds)
                    bprintf(&b, "%s\"%.6g\":%llu", i ? "," : "", h->bounds[i],
                            (unsigned long long)cum[i]);
                else
                    bprintf(&b, "%s\"+Inf\":%llu", i ? "," : "", (unsigned long long)cum[i]);
            }
            bprintf(&b, "}}");
        } else {
            put_json_value(&b, gauge_value(s));
        }
    }
    list_unlock(r);
    bprintf(&b, "}\n");
    return finish(&b, out, len);
}
