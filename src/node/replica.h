/* replica.h - one node's replicated state: the consensus core, its durable
 * store and the key-value state machine, wired by the ready/advance loop.
 *
 * The replica knows nothing of sockets or clients.  It asks its owner to
 * send Raft messages, and tells it what was applied, which reads are ready
 * and when leadership moved, through the hooks below.  It reads no clock
 * and does no I/O of its own: storage is the table in node/storage.h, and
 * the owner reports its completions with replica_durable().  Everything
 * runs on the owner's thread.
 */
#ifndef RAFTKV_NODE_REPLICA_H
#define RAFTKV_NODE_REPLICA_H

#include "kv/kv.h"
#include "node/storage.h"
#include "raft/raft.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct replica;

struct replica_config {
    struct raft_config raft;    /* id, timing, limits; seed 0: a new one per run */
    struct raft_conf initial;   /* bootstrap membership, from the config file */
    uint64_t snapshot_entries;  /* snapshot after this many entries since the last, */
    uint64_t snapshot_bytes;    /* or this many bytes of entries (0: by count only), */
    /* ... but not before the log since the last one holds this many
     * hundredths of the dataset's bytes (0: no such floor) */
    uint32_t snapshot_min_log_pct;
    uint64_t session_ttl_ms;
    size_t max_sessions;
    uint32_t apply_per_turn;    /* entries applied per replica_turn(); 0: 1024 */
};
void replica_config_defaults(struct replica_config *cfg, raft_id id);
/* Whether a snapshot is due, given what the log since the last one holds
 * and the dataset's size (bytes of keys and values). */
bool replica_snapshot_due(const struct replica_config *cfg, uint64_t entries, uint64_t log_bytes,
                          uint64_t data_bytes);

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
    /* May be NULL.  The state machine was replaced by a snapshot (at
     * start-up, or one received from the leader). */
    void (*installed)(void *arg, const struct raft_snapshot_meta *meta, const struct kv *kv);
    /* May be NULL (then kv_free()).  Free the dictionary a received
     * snapshot replaced: millions of keys take a while, the owner may do
     * it off its loop. */
    void (*retire)(void *arg, struct kv *kv);
    /* May be NULL (then kv_garbage_free()).  Free what the dictionary kept
     * for a background snapshot writer (kv_thaw): after a long snapshot,
     * many small frees, also better done off the loop. */
    void (*dispose)(void *arg, struct kv_garbage *g);
};

/* Recover the log, hard state and snapshot from storage, and restore the
 * core.  An empty storage is left empty (replica_empty()): the owner decides
 * whether to replica_bootstrap() or wait for a leader, since an empty data
 * directory may be a member that lost its data.  The replica owns io from
 * here on (closes it in replica_close(), or here on failure).  On failure err
 * says why. */
int replica_open(struct replica **out, const struct replica_config *cfg,
                 const struct replica_hooks *hooks, const struct replica_storage *io, char *err,
                 size_t errlen);
void replica_close(struct replica *rp);

/* Drain ready batches: persist, send, apply.  Call after each input.  It
 * stops once this turn's slice of applied entries is used up (a long
 * catch-up), leaving the rest for the next turn: while
 * replica_has_ready(), call again after the next replica_turn() (the node
 * does so on its next loop iteration, after polling its sockets). */
void replica_process(struct replica *rp);
/* A new turn: replica_process() calls up to the next one apply at most
 * apply_per_turn entries between them, however many there are (the node
 * calls it once per loop iteration; one iteration ran three full slices,
 * 27 ms of applying at 10 M keys, when the slice was per call). */
void replica_turn(struct replica *rp);
bool replica_has_ready(const struct replica *rp);
/* Storage made writes durable (see storage.h); releases held messages and
 * runs a ready round. */
void replica_durable(struct replica *rp, const struct replica_durable *d);
/* The background write io.snapshot_begin started finished: rv 0, or why
 * not (-errno).  Adopts it and, once durable, compacts the log. */
void replica_snapshot_written(struct replica *rp, int rv);
/* Storage failed: the replica fails with the storage's reason. */
void replica_storage_failed(struct replica *rp, int err);

/* Non-zero once the disk failed or the state machine could not go on; the
 * node then refuses writes and says why. */
int replica_error(const struct replica *rp);
const char *replica_errmsg(const struct replica *rp);

/* The only door into the consensus core.  Once the replica failed the core
 * is frozen: every input below is refused with REPLICA_EFAILED (a tick or
 * an unreachable report is dropped), and the replica leads nothing. */
enum { REPLICA_EFAILED = -100 };
int replica_step(struct replica *rp, const struct raft_msg *m);
/* A snapshot the driver streamed from the leader into storage (never whole
 * in memory; storage adopts it with snapshot_adopt(received=true)) and
 * loaded into kv (owned by the replica from here on): steps the core with m,
 * a RAFT_MSG_SNAPSHOT with meta only (snap_data NULL).  -ESTALE when the core
 * did not take it: kv is freed and storage discards the file. */
int replica_snapshot_received(struct replica *rp, const struct raft_msg *m, struct kv *kv);
/* The state machine settings, for a driver loading a snapshot itself. */
struct kv_config;
void replica_kv_config(const struct replica *rp, struct kv_config *kvc);
int replica_propose(struct replica *rp, const void *data, uint32_t len, raft_index *index,
                    raft_term *term);
int replica_read_index(struct replica *rp, uint64_t ctx);
int replica_transfer(struct replica *rp, raft_id target); /* RAFT_NONE: best follower */
int replica_propose_conf(struct replica *rp, const struct raft_conf_change *cc, raft_index *index);
void replica_report_snapshot(struct replica *rp, raft_id to, bool ok);
void replica_snapshot_shipping(struct replica *rp, raft_id to, raft_index index);
int replica_tick(struct replica *rp);
void replica_report_unreachable(struct replica *rp, raft_id to);
/* A failed replica reports itself a follower without a leader. */
void replica_status(const struct replica *rp, struct raft_status *st);
enum raft_role replica_role(const struct replica *rp);
raft_term replica_term(const struct replica *rp);
raft_id replica_leader(const struct replica *rp);
raft_index replica_commit_index(const struct replica *rp);
/* The core's bound for promoting a learner (raft_config.learner_max_lag). */
raft_index replica_learner_max_lag(const struct replica *rp);
int replica_entry_at(const struct replica *rp, raft_index index, struct raft_entry *out);

/* ---- data-directory incarnations ----------------------------------------
 * Every peer message carries its sender's data-directory incarnation (a
 * random number drawn when the directory was first initialised; 0 from a
 * sender that has none).  Once a member holds data the leader records its
 * incarnation in the replicated state (KV_OP_RECORD_INCARNATION).  A member
 * that lost its data comes back with another incarnation and must never
 * vote under its old identity: its vote requests (its self-vote), pre-vote
 * requests and its answers to either are dropped.  So is anything from it
 * with a higher term than ours: with its vote requests dropped nobody
 * follows it to the terms it campaigns in (pre-vote off), and one such term
 * in an append answer would depose the leader, again and again.  Everything
 * else from it (appends acknowledged, heartbeats) is what it really holds
 * now and goes through.  raftkv-node (guard.c) and the simulator (tests/sim) both decide
 * with these functions.
 *
 * "Recorded" means applied (by the state machine, or as the incarnation
 * file has it after a restart: see replica.c), or in a RECORD_INCARNATION
 * entry of the log not applied yet (a node that restarted learns its commit
 * index only from the next leader, yet it may stand for election before):
 * for votes a tail entry can only add a refusal, never lift one.  A higher
 * term (not a vote) from the directory that the newest record in the tail
 * names goes through: after a restart from a snapshot older than a member
 * replace, the old record would otherwise shut out that member's terms,
 * and with them a leader of a higher term (for good, on a learner, which
 * hears from the leader alone). */

/* The incarnation the applied history records for member (0: none): the
 * state machine's, or the incarnation file's while that is newer. */
uint64_t replica_incarnation(const struct replica *rp, raft_id member);

/* True when m (from m->from, whose messages carry incarnation) must be
 * dropped: a vote, or a higher term, from a data directory other than the
 * one recorded for the sender.  *recorded (may be NULL) gets the recorded
 * incarnation that differs, or 0. */
bool replica_incarnation_refused(const struct replica *rp, const struct raft_msg *m,
                                 uint64_t incarnation, uint64_t *recorded);
/* replica_step(), unless replica_incarnation_refused(): REPLICA_ESTALEINC,
 * or replica_vote_withheld(): REPLICA_EWITHHELD (below). */
enum { REPLICA_ESTALEINC = -101 };
int replica_step_from(struct replica *rp, uint64_t incarnation, const struct raft_msg *m);
/* Propose a cluster-bookkeeping kv command (no session; cmd->time_ms set by
 * the caller).  Leader only.  0 or a RAFT_E* / REPLICA_E* code. */
struct kv_command;
int replica_propose_bookkeeping(struct replica *rp, const struct kv_command *cmd);
/* Propose RECORD_INCARNATION(member, incarnation); 0 forgets what is
 * recorded (member replace, or adding a removed node again).  Leader only.
 * time_ms stamps the command (session expiry).  0 or a RAFT_E* / REPLICA_E*
 * code. */
int replica_propose_incarnation(struct replica *rp, raft_id member, uint64_t incarnation,
                                uint64_t time_ms);
/* Call for every admitted message from member: on the leader, once the
 * member acknowledged data and nothing is recorded for it, propose its
 * incarnation (at most once per member and term).  1 proposed, 0 nothing
 * to do, <0 the proposal failed. */
int replica_record_incarnation(struct replica *rp, raft_id member, uint64_t incarnation,
                               uint64_t time_ms);

/* This node's own data directory: its incarnation, and whether it started
 * empty and joined a running cluster rather than bootstrapping one (kept
 * across restarts by the owner: raftkv-node's identity file).  A joined
 * directory grants no vote, pre-vote included, and does not campaign until
 * its own log records its incarnation: a candidate whose log is older than
 * the record of this member's previous directory would take its vote
 * (FINDINGS.md 6).  Call before the first input; a bootstrapped or older
 * directory (joined false) votes as ever. */
void replica_set_identity(struct replica *rp, uint64_t incarnation, bool joined);
/* Whether this node withholds its vote now (above). */
bool replica_withholding(struct replica *rp);
/* True when m must be dropped because this node withholds its vote: a vote
 * or pre-vote request, or TimeoutNow. */
bool replica_vote_withheld(struct replica *rp, const struct raft_msg *m);
/* replica_step_from()'s answer for those. */
enum { REPLICA_EWITHHELD = -102 };

/* Nothing was on disk at start-up and nothing was bootstrapped since. */
bool replica_empty(const struct replica *rp);
/* Write the first entry of a brand-new cluster (cfg.initial). */
int replica_bootstrap(struct replica *rp, char *err, size_t errlen);

const struct kv *replica_kv(const struct replica *rp);
uint64_t replica_applied(const struct replica *rp);

/* The durable snapshot a SNAPSHOT message names, as one malloc'd buffer. */
int replica_snapshot_load(struct replica *rp, struct raft_snapshot_meta *meta,
                          void **data, size_t *len);

#endif
