/* hist.c - log-linear latency histogram (see hist.h). */
#include "ctl/hist.h"

#include <string.h>

void hist_init(struct hist *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

static unsigned bucket_of(uint64_t v)
{
    if (v < 128)
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* 7..63 */
    unsigned shift = e - HIST_SUB_BITS;
    return 128u + (e - 7u) * 64u + (unsigned)((v >> shift) - 64u);
}

/* Middle of bucket i. */
static uint64_t bucket_value(unsigned i)
{
    if (i < 128)
        return i;
    unsigned e = (i - 128u) / 64u + 7u, shift = e - HIST_SUB_BITS;
    uint64_t lo = (uint64_t)(64u + (i - 128u) % 64u) << shift;
    return lo + ((1ull << shift) >> 1);
}

void hist_add(struct hist *h, uint64_t v)
{
    h->counts[bucket_of(v)]++;
    h->n++;
    h->sum += v;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
}

void hist_merge(struct hist *dst, const struct hist *src)
{
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        dst->counts[i] += src->counts[i];
    dst->n += src->n;
    dst->sum += src->sum;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
}

uint64_t hist_quantile(const struct hist *h, double q)
{
    if (!h->n)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)h->n + 0.5), seen = 0;
    if (rank < 1)
        rank = 1;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            uint64_t v = bucket_value(i);
            return v < h->min ? h->min : v > h->max ? h->max : v;
        }
    }
    return h->max;
}

double hist_mean(const struct hist *h)
{
    return h->n ? (double)h->sum / (double)h->n : 0.0;
}
