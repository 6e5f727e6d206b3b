/* hist.h - a latency histogram in the style of HdrHistogram: log-linear
 * buckets (64 per power of two, so any recorded value is known to within
 * about 1.6%) over the whole uint64 range, in a fixed 30 KiB. */
#ifndef RAFTKV_CTL_HIST_H
#define RAFTKV_CTL_HIST_H

#include <stdint.h>

#define HIST_SUB_BITS 6
#define HIST_BUCKETS (128 + (63 - 7 + 1) * 64)

struct hist {
    uint64_t counts[HIST_BUCKETS];
    uint64_t n, min, max, sum;
};

void hist_init(struct hist *h);
void hist_add(struct hist *h, uint64_t v);
void hist_merge(struct hist *dst, const struct hist *src);
/* The value below which a fraction q (0..1) of the samples fall, as the
 * middle of its bucket clamped to [min, max]; 0 when empty. */
uint64_t hist_quantile(const struct hist *h, double q);
double hist_mean(const struct hist *h);

#endif
