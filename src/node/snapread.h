/* snapread.h - the snapshot sender's reads, on a background thread.  A
 * snapshot file the page cache no longer holds (evicted, or written long
 * ago) made pread wait for the disk on the leader's loop: at 10 M keys, 51
 * waits while it sent 1.1 GB to a new member, one of them a 12 ms loop
 * iteration.  The loop queues a few chunks' reads per transfer and sends
 * each chunk, in order, when the thread has it. */
#ifndef RAFTKV_NODE_SNAPREAD_H
#define RAFTKV_NODE_SNAPREAD_H

#include "node/workq.h"

#include <ev.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* One read.  The loop owns it while !busy; between snapread_submit() and
 * the snapread_collect() that returns true the thread may use fd and buf,
 * so neither may be closed or freed meanwhile. */
struct snapread_req {
    struct workq_job job; /* first */
    struct snapread *r;
    int fd;
    uint64_t off;
    size_t len;
    void *buf;
    ssize_t rv; /* bytes read (short only at the end of the file), or -errno */
    bool busy;
    atomic_bool done;
};

struct snapread {
    struct workq q;
    struct ev_loop *loop;
    ev_async done; /* its callback runs on the loop after each read */
};

void snapread_init(struct snapread *r, struct ev_loop *loop,
                   void (*cb)(struct ev_loop *, ev_async *, int), void *data);
/* Queues q's read (fd, off, len and buf set).  Without a thread (none
 * could be started, or stopped) it reads on the spot: q is done at once. */
void snapread_submit(struct snapread *r, struct snapread_req *q);
/* true once q's read is done: q is the loop's again (busy is false). */
bool snapread_collect(struct snapread_req *q);
/* Finishes what is queued, then stops the thread: every request is done,
 * and any later one is read on the spot.  Idempotent. */
void snapread_stop(struct snapread *r);

#endif
