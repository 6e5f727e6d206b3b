/* replica.h - one node's replicated state: the consensus core, its durable
 * store and the key-value state machine, wired by the ready/advance loop.
 *
 * The replica knows nothing of sockets or clients.  It asks its owner to
 * send Raft messages, and tells it what was applied, which reads are ready
 * and when leadership moved, through the hooks below.  Everything runs on
 * the owner's thread; the store's writer thread signals through an eventfd.
 */
#ifndef RAFTKV_NODE_REPLICA_H
#define RAFTKV_NODE_REPLICA_H

#include "kv/kv.h"
#include "raft/raft.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct replica;

struct replica_config {
    raft_id id;
    const char *data_dir;
    struct raft_conf initial;   /* bootstrap membership, from the config file */
    unsigned election_ticks;
    unsigned heartbeat_ticks;
    uint32_t max_msg_bytes;     /* bound on one AppendEntries' payload */
    uint64_t snapshot_entries;  /* snapshot after this many entries since the last */
    uint64_t snapshot_trailing; /* entries kept in memory behind a snapshot */
    uint64_t segment_size;      /* log segment size in bytes; 0: store default */
    uint64_t session_ttl_ms;
    size_t max_sessions;
};

struct replica_hooks {
    void *arg;
    /* Send m to m->to.  SNAPSHOT messages carry only metadata: the owner
     * attaches the bytes from replica_snapshot_load(). */
    void (*send)(void *arg, const struct raft_msg *m);
    /* A committed entry was applied; res is NULL for entries that are not
     * key-value commands (the leader's no-op, membership). */
    void (*applied)(void *arg, const struct raft_entry *e, const struct kv_result *res);
    /* A read index is known (or failed); serve once applied >= rs->index. */
    void (*read_state)(void *arg, const struct raft_read_state *rs);
    /* Leader, role or term changed. */
    void (*soft_state)(void *arg, raft_id leader, enum raft_role role, raft_term term);
    /* May be NULL.  replica_open() is still recovering: what it is doing
     * now ("verified log segment 3 of 40", "loading snapshot ...").  Called
     * often enough during a long start-up to keep a start timeout at bay. */
    void (*recovering)(void *arg, const char *what);
};

/* Open the data directory, recover the log, hard state and snapshot, and
 * restore the core (or bootstrap a brand-new member).  On failure err says
 * why, naming files and offsets where the store could. */
int replica_open(struct replica **out, const struct replica_config *cfg,
                 const struct replica_hooks *hooks, char *err, size_t errlen);
void replica_close(struct replica *rp);

/* Drain every ready batch: persist, send, apply.  Call after each input. */
void replica_process(struct replica *rp);
/* The store's eventfd became readable: collect durability progress. */
void replica_store_event(struct replica *rp);
int replica_store_fd(const struct replica *rp);

/* Non-zero once the disk failed or the state machine could not go on; the
 * node then refuses writes and says why. */
int replica_error(const struct replica *rp);
const char *replica_errmsg(const struct replica *rp);

struct raft *replica_raft(struct replica *rp);
const struct kv *replica_kv(const struct replica *rp);
uint64_t replica_applied(const struct replica *rp);

/* The durable snapshot a SNAPSHOT message names, as one malloc'd buffer. */
int replica_snapshot_load(struct replica *rp, struct raft_snapshot_meta *meta,
                          void **data, size_t *len);

#endif
