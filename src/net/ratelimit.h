/* ratelimit.h - "log this at most once per interval, and say how many were
 * left out": keeps a flood of hostile connections from becoming a flood of
 * log lines.  Header-only; the caller owns the state and the clock. */
#ifndef RAFTKV_NET_RATELIMIT_H
#define RAFTKV_NET_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

struct net_ratelimit {
    double interval; /* seconds between two lines */
    double last;     /* when the last line went out; 0 = never */
    uint64_t suppressed;
};

/* true: log now, and *suppressed holds how many events were swallowed
 * since the last line (then reset); false: swallow this one. */
static inline bool net_ratelimit_ok(struct net_ratelimit *rl, double now, uint64_t *suppressed)
{
    if (rl->last != 0 && now - rl->last < rl->interval) {
        rl->suppressed++;
        return false;
    }
    rl->last = now;
    *suppressed = rl->suppressed;
    rl->suppressed = 0;
    return true;
}

#endif
