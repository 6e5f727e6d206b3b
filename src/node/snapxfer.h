/* snapxfer.h - the receiving half of a streamed snapshot transfer as a
 * state machine of its own (snapxfer.c), so that it can be fed any
 * sequence of chunks without a node around it (tests/fuzz/fuzz_snaprx.c).
 */
#ifndef RAFTKV_NODE_SNAPXFER_H
#define RAFTKV_NODE_SNAPXFER_H

#include "node/peer_codec.h"
#include "raft/raft.h"

#include <stdint.h>

struct kv;
struct kv_config;
struct storage_store;
struct store_snap_stream;

/* The snapshot being received: one at a time, from the connection
 * `owner`, into the store's receive file. */
struct snap_rx {
    struct store_snap_stream *w; /* NULL: none */
    const void *owner;
    struct raft_msg msg; /* meta only: what the core is stepped with */
    uint64_t total, got;
    bool has_crc;
    uint32_t crc;
    /* all chunks in: snaprx_finish() owns w (it may run on another thread);
     * chunks arriving meanwhile are dropped */
    bool finishing;
    double started;
};

enum { SNAPRX_MORE = 0, SNAPRX_LAST = 1, SNAPRX_DONE = 2 };

/* One chunk of snapshot message m, arrived on connection owner at time
 * now.  SNAPRX_MORE: kept (or dropped, not being the transfer in progress);
 * SNAPRX_LAST: that was the last one, call snaprx_finish(); negative: this
 * transfer failed and is gone. */
int snaprx_chunk(struct snap_rx *rx, struct storage_store *ss, const void *owner,
                 const struct raft_msg *m, const struct peer_chunk *c, double now);
/* After SNAPRX_LAST, on any thread (it fsyncs and loads: slow at large
 * sizes): SNAPRX_DONE with the CRC matched and *kv loaded (rx->msg is the
 * message to step the core with; the receive file stays for the store to
 * adopt), or negative with the file gone.  Touches rx and the file only. */
int snaprx_finish(struct snap_rx *rx, struct storage_store *ss, const struct kv_config *kvc,
                  struct kv **kv);
/* Back to idle after snaprx_finish() (on the owner's thread). */
void snaprx_finished(struct snap_rx *rx);
/* Drop the transfer in progress, if any, and its file. */
void snaprx_abort(struct snap_rx *rx, const char *why);

#endif
