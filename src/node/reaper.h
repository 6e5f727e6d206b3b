/* reaper.h - frees, on one background thread, what would take the event
 * loop too long to free: a state machine a received snapshot replaced
 * (millions of keys) and what the dictionary kept for a background snapshot
 * writer (kv_thaw).  Jobs queue, so a new one never waits for the one
 * before to finish. */
#ifndef RAFTKV_NODE_REAPER_H
#define RAFTKV_NODE_REAPER_H

#include "node/workq.h"

struct kv;
struct kv_garbage;

struct reaper {
    struct workq q;
};

void reaper_init(struct reaper *r);
/* Either may be NULL.  Frees on the spot when no thread can be had. */
void reaper_free_later(struct reaper *r, struct kv *kv, struct kv_garbage *g);
/* Frees everything still queued, then stops the thread. */
void reaper_stop(struct reaper *r);

#endif
