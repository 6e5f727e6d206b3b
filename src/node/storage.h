/* storage.h - the operations table between the replica and its durable
 * storage.  src/node/storage_store.c implements it over src/store, the
 * simulator (tests/sim/disk.c) over its disk model with crashes and torn
 * writes, so both run the same driver (replica.c).
 *
 * Writes are queued and become durable later, in the order they were
 * queued; each returns a sequence number.  The owner reports completion by
 * calling replica_durable() with the newest durable sequence number; nothing
 * is durable before that call, whatever the write call returned.
 */
#ifndef RAFTKV_NODE_STORAGE_H
#define RAFTKV_NODE_STORAGE_H

#include "raft/raft.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kv;

/* The data-directory incarnations (replica.h) that the state machine had
 * recorded once it applied index: a fact of the committed history, kept in
 * a file of its own so that a restart from an older snapshot still knows
 * the records applied since (replica.c, "the incarnation file"). */
#define REPLICA_MAX_INCARNATIONS 64
struct replica_incarnations {
    raft_index index; /* 0: none */
    uint32_t n;
    struct {
        raft_id id;           /* increasing */
        uint64_t incarnation; /* never 0 */
    } m[REPLICA_MAX_INCARNATIONS];
};

struct replica_storage {
    void *arg;
    /* ---- recovery: what is durable at start-up ---- */
    void (*hard_state)(void *arg, struct raft_hard_state *hs);
    /* Last log index (the snapshot's index when the log is empty). */
    raft_index (*last_index)(void *arg);
    /* Entries lo..hi into *ents (one malloc'd block holding the array and
     * the bytes; free() it). */
    int (*read)(void *arg, raft_index lo, raft_index hi, struct raft_entry **ents, size_t *n);
    /* The newest snapshot, its bytes in one malloc'd buffer; -ENOENT if none. */
    int (*snapshot_load)(void *arg, struct raft_snapshot_meta *meta, void **data, size_t *len);

    /* ---- writes, durable later and in order ---- */
    /* hs may be NULL, n may be 0.  Entries from ents[0].index on replace the
     * log from there. */
    int (*append)(void *arg, const struct raft_hard_state *hs, const struct raft_entry *ents,
                  size_t n, uint64_t *seq);
    /* Atomically replace the snapshot.  A log that does not hold meta->index
     * with meta->term is discarded. */
    int (*snapshot_save)(void *arg, const struct raft_snapshot_meta *meta, const void *data,
                         size_t len, uint64_t *seq);
    /* Optional (NULL: the replica serialises kv on its own thread and calls
     * snapshot_save).  Start writing kv, a frozen view (kv_freeze) as of
     * meta->index, without blocking the caller; the view stays valid and
     * unchanged until replica_snapshot_written(), which the owner then calls
     * exactly once (node: a writer thread).  0: started. */
    int (*snapshot_begin)(void *arg, const struct raft_snapshot_meta *meta, const struct kv *kv);
    /* What snapshot_begin wrote (received=false), or a snapshot the driver
     * streamed from the leader (received=true, replica_snapshot_received),
     * becomes the snapshot, in order with the other writes and with
     * snapshot_save's log rule; -ESTALE if a snapshot at or past
     * meta->index is already there (one installed meanwhile). */
    int (*snapshot_adopt)(void *arg, const struct raft_snapshot_meta *meta, bool received,
                          uint64_t *seq);
    /* Optional: drop a received snapshot the core did not take. */
    void (*snapshot_discard)(void *arg);
    /* Entries up to upto (covered by the durable snapshot) may go. */
    int (*compact)(void *arg, raft_index upto, uint64_t *seq);

    /* ---- the incarnation file: optional, both or neither (NULL: a
     * restart knows only the records of its snapshot and log) ---- */
    /* What the newest durable save wrote; -ENOENT if none, -EBADMSG if it
     * is damaged (the replica then does without it). */
    int (*incarnations_load)(void *arg, struct replica_incarnations *out);
    /* Atomically replace it, in order with the other writes. */
    int (*incarnations_save)(void *arg, const struct replica_incarnations *inc, uint64_t *seq);

    /* Why the last call failed, for the operator ("" if it does not know). */
    const char *(*errmsg)(void *arg);
    /* Finish queued work and release everything (may be NULL). */
    int (*close)(void *arg);
};

/* Completion: every write with seq <= seq is durable, and the durable log
 * ends at (index, term). */
struct replica_durable {
    uint64_t seq;
    raft_index index;
    raft_term term;
};

#endif
