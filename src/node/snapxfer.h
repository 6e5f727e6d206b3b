/* snapxfer.h - the receiving half of a streamed snapshot transfer as a
 * state machine of its own (snapxfer.c), so that it can be fed any
 * sequence of chunks without a node around it (tests/fuzz/fuzz_snaprx.c).
 */
#ifndef RAFTKV_NODE_SNAPXFER_H
#define RAFTKV_NODE_SNAPXFER_H

#include "node/peer_codec.h"
#include "node/workq.h"
#include "raft/raft.h"

#include <stdbool.h>
#include <stdint.h>

struct kv;
struct kv_config;
struct storage_store;
struct store_snap_stream;
struct workq;

/* The snapshot being received: one at a time, from the connection
 * `owner`, into the store's receive file.  The file work (open, each
 * chunk's CRC and write, dropping the file) runs in order on a workq
 * thread, so that a node receiving a snapshot keeps its loop: written on
 * the loop, 1.1 GB at 10 M keys took 88% of the new member's loop time in
 * the page-cache copy and the CRC, with 69-117 ms iterations. */
struct snap_rx {
    /* the loop's side */
    bool active; /* a transfer is in progress (or all in and finishing) */
    uint64_t gen; /* which transfer: each start counts one */
    const void *owner;
    struct raft_msg msg; /* meta only: what the core is stepped with */
    uint64_t total, got;
    bool has_crc;
    uint32_t crc;
    /* all chunks in: once the queued writes are done (snaprx_idle),
     * snaprx_finish() owns the file (it may run on another thread);
     * chunks arriving meanwhile are dropped */
    bool finishing;
    double started;
    unsigned queued; /* jobs handed to the thread */

    /* set by snaprx_init */
    struct workq *q; /* NULL: the file work is done on the spot */
    void (*wake)(void *arg); /* from the thread after each job */
    void *wake_arg;

    /* the file's side: only the jobs touch w, in order (and snaprx_finish
     * once snaprx_idle) */
    struct store_snap_stream *w;
    _Atomic unsigned done;          /* jobs finished */
    _Atomic uint64_t failed_gen;    /* the last transfer whose file work failed */
    _Atomic int failed_rv;
};

enum { SNAPRX_MORE = 0, SNAPRX_LAST = 1, SNAPRX_DONE = 2 };

/* q NULL: every chunk is written before snaprx_chunk returns.  Otherwise
 * wake(arg) runs on q's thread after each job, to bring the loop round to
 * snaprx_idle / snaprx_failed. */
void snaprx_init(struct snap_rx *rx, struct workq *q, void (*wake)(void *arg), void *arg);
/* One chunk of snapshot message m, arrived on connection owner at time
 * now.  *own, if not NULL, is the heap block c->data lies in: the receiver
 * may keep it (and sets *own to NULL) rather than copy the bytes.
 * SNAPRX_MORE: kept (or dropped, not being the transfer in progress);
 * SNAPRX_LAST: that was the last one: call snaprx_finish() once
 * snaprx_idle(); negative: this transfer failed and is gone. */
int snaprx_chunk(struct snap_rx *rx, struct storage_store *ss, const void *owner,
                 const struct raft_msg *m, const struct peer_chunk *c, void **own, double now);
/* Jobs queued and not yet done. */
unsigned snaprx_pending(const struct snap_rx *rx);
/* No job queued: the file is the loop's (or snaprx_finish's) to use. */
bool snaprx_idle(const struct snap_rx *rx);
/* The transfer in progress lost its file (a write failed): stops it and
 * returns its error, or 0.  On the loop, after a wake. */
int snaprx_check(struct snap_rx *rx);
/* After SNAPRX_LAST and snaprx_idle, on any thread (it fsyncs and loads:
 * slow at large sizes): SNAPRX_DONE with the CRC matched and *kv loaded
 * (rx->msg is the message to step the core with; the receive file stays
 * for the store to adopt), or negative with the file gone.  Touches rx's
 * file side only. */
int snaprx_finish(struct snap_rx *rx, struct storage_store *ss, const struct kv_config *kvc,
                  struct kv **kv);
/* Back to idle after snaprx_finish() (on the owner's thread). */
void snaprx_finished(struct snap_rx *rx);
/* Drop the transfer in progress, if any, and its file (unless all of it is
 * in and being checked: that one finishes). */
void snaprx_abort(struct snap_rx *rx, const char *why);
/* For the owner's exit, with no snaprx_finish running: drops any transfer
 * and its file, waits for the queued jobs and stops the thread. */
void snaprx_stop(struct snap_rx *rx, const char *why);

#endif
