/* raft.h - the consensus core's public interface.
 *
 * A pure state machine in the shape of etcd's raft library: the caller feeds
 * it ticks, received messages and proposals, and collects a "ready" batch of
 * work (state and entries to persist, messages to send, entries to apply,
 * read-index results).  The core never does I/O, never reads a clock and never
 * blocks, so the same code runs in a node daemon and in a deterministic
 * simulator.
 *
 * Threading: a struct raft is owned by one thread.  Nothing here is
 * thread-safe and nothing needs to be.
 *
 * The ready/advance contract (read this before writing a driver):
 *
 *   while (raft_has_ready(r)) {
 *       struct raft_ready rd;
 *       raft_ready(r, &rd);
 *       1. hand rd.hs, rd.snapshot and rd.entries to storage, in that order
 *          (entries replace everything the log held at or after
 *          rd.entries[0].index);
 *       2. send rd.msgs at once, in any order;
 *       3. keep rd.msgs_after_persist (copy them) and send them only after
 *          everything from step 1 of this batch, and of every earlier batch,
 *          is durable;
 *       4. apply rd.snapshot (if any) and then rd.committed in order;
 *       5. answer rd.reads once the state machine has applied rd.reads[i].index
 *          (a read with err != RAFT_OK failed: retry or report it);
 *       raft_advance(r, &rd);
 *   }
 *   ... later, when storage says entries up to (index, term) are durable:
 *   raft_persisted(r, index, term);
 *   (A batch that carried only a snapshot needs no raft_persisted(): the
 *   core counts an installed snapshot as durable, and the acknowledgement it
 *   sends is an after-persist message, so it waits for the snapshot write.)
 *
 * Every pointer in a ready batch stays valid until raft_advance(); between
 * raft_ready() and raft_advance() no other raft_* call may be made on r.
 *
 * Which messages may go before persistence: only those whose truth does not
 * depend on this node's unsynced state.  A leader's AppendEntries, heartbeats,
 * snapshots and TimeoutNow go in rd.msgs (Raft thesis 10.2.1: the leader may
 * write its own log in parallel with replicating it; it only counts itself
 * towards a commit quorum once raft_persisted() says so).  Pre-vote traffic and
 * ReadIndex forwarding change no durable state and also go in rd.msgs.
 * Everything else a non-leader says (a granted vote, a vote request carrying
 * a freshly bumped term, an AppendEntries acknowledgement) promises something
 * about durable state and goes in rd.msgs_after_persist.
 */
#ifndef RAFTKV_RAFT_H
#define RAFTKV_RAFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RAFT_MAX_MEMBERS 16
#define RAFT_NONE 0 /* "no node": ids are never 0 */
/* The highest term the core accepts.  A message with a higher term is
 * dropped (and counted in raft_status.refused_terms), and a node at this
 * term no longer campaigns: adding one must never wrap to 0. */
#define RAFT_TERM_MAX (UINT64_MAX - 65536)

typedef uint64_t raft_id;
typedef uint64_t raft_index;
typedef uint64_t raft_term;

/* Errors are small negative numbers; raft_strerror() names them. */
enum raft_err {
    RAFT_OK = 0,
    RAFT_ENOTLEADER = -1,   /* only the leader may do that */
    RAFT_ETRANSFER = -2,    /* leadership transfer in progress: try later */
    RAFT_ECONFPENDING = -3, /* a membership change is not committed yet */
    RAFT_EINVAL = -4,       /* bad argument */
    RAFT_ENOMEM = -5,
    RAFT_ENOLEADER = -6,    /* follower does not know a leader to ask */
    RAFT_ELAGGING = -7,     /* learner not caught up enough to promote */
    RAFT_ELOSTLEADER = -8,  /* leadership lost before a read was confirmed */
    RAFT_ECOMPACTED = -9,   /* index already compacted away */
    RAFT_EUNAVAIL = -10,    /* index not in the log (yet) */
    RAFT_ESTATE = -11,      /* call not valid in the current state */
};
const char *raft_strerror(int err);

enum raft_role {
    RAFT_FOLLOWER = 0,
    RAFT_PRECANDIDATE,
    RAFT_CANDIDATE,
    RAFT_LEADER,
};
const char *raft_role_name(enum raft_role role);

enum raft_entry_type {
    RAFT_ENTRY_NORMAL = 0, /* application data; an empty one is a leader's no-op */
    RAFT_ENTRY_CONF = 1,   /* a whole new membership, see raft_conf_decode() */
};

struct raft_entry {
    raft_term term;
    raft_index index;
    const uint8_t *data;
    uint32_t len;
    uint8_t type; /* enum raft_entry_type */
};

enum raft_member_role {
    RAFT_VOTER = 1,
    RAFT_LEARNER = 2, /* receives the log, never votes or counts for quorum */
};

struct raft_member {
    raft_id id;
    uint8_t role; /* enum raft_member_role */
};

/* A membership.  Configuration entries carry a whole one (not a delta), so a
 * node that joins late learns the membership from the log or snapshot alone. */
struct raft_conf {
    uint32_t n;
    struct raft_member m[RAFT_MAX_MEMBERS];
};

/* Thesis 4.1: one server at a time. */
enum raft_conf_op {
    RAFT_CONF_ADD_LEARNER = 1,
    RAFT_CONF_PROMOTE = 2,  /* learner -> voter; refused while it lags */
    RAFT_CONF_REMOVE = 3,
    RAFT_CONF_ADD_VOTER = 4, /* straight in as a voter (prefer learner+promote) */
};

struct raft_conf_change {
    uint8_t op; /* enum raft_conf_op */
    raft_id id;
};

/* Wire form of struct raft_conf inside a RAFT_ENTRY_CONF entry:
 * u32 n, then n * (u64 id, u8 role), little-endian.  */
#define RAFT_CONF_ENCODED_MAX (4 + RAFT_MAX_MEMBERS * 9)
size_t raft_conf_encode(const struct raft_conf *c, uint8_t *buf);
int raft_conf_decode(const uint8_t *buf, size_t len, struct raft_conf *c);
const struct raft_member *raft_conf_find(const struct raft_conf *c, raft_id id);
unsigned raft_conf_voters(const struct raft_conf *c);

struct raft_snapshot_meta {
    raft_index index; /* last index the snapshot covers */
    raft_term term;   /* term of that entry */
    struct raft_conf conf;
};

/* What must be durable before after-persist messages go out. */
struct raft_hard_state {
    raft_term term;
    raft_id vote;
};

enum raft_msg_type {
    RAFT_MSG_NONE = 0,
    RAFT_MSG_PREVOTE,          /* term = proposed term; index/log_term = last log */
    RAFT_MSG_PREVOTE_RESP,     /* reject */
    RAFT_MSG_VOTE,             /* index/log_term = last log; ctx may be RAFT_CTX_TRANSFER */
    RAFT_MSG_VOTE_RESP,        /* reject */
    RAFT_MSG_APPEND,           /* index/log_term = prev entry; entries; commit */
    RAFT_MSG_APPEND_RESP,      /* index = match (or rejected prev); reject; hint_*; ctx may be RAFT_CTX_LOST */
    RAFT_MSG_HEARTBEAT,        /* commit; ctx = read-index round; index = leader's match for the receiver */
    RAFT_MSG_HEARTBEAT_RESP,   /* ctx echoed */
    RAFT_MSG_SNAPSHOT,         /* snap (+ snap_data/snap_len filled by the driver) */
    RAFT_MSG_TIMEOUT_NOW,      /* transfer target: campaign now */
    RAFT_MSG_READ_INDEX,       /* follower -> leader; ctx = caller's read id */
    RAFT_MSG_READ_INDEX_RESP,  /* index = read index; ctx; reject if refused */
    RAFT_MSG_TYPE_COUNT
};
const char *raft_msg_type_name(int type);

#define RAFT_CTX_TRANSFER 1 /* in VOTE/PREVOTE ctx: election asked for by the leader */
/* In a rejecting APPEND_RESP ctx: the answer to a HEARTBEAT, whose index is
 * the match the leader holds for us, not to an AppendEntries.  Only this
 * answer may make the leader forget a follower's match; a rejected append
 * can be a late answer to a probe sent before match moved. */
#define RAFT_CTX_LOST 2

struct raft_msg {
    uint8_t type; /* enum raft_msg_type */
    bool reject;
    raft_id from;
    raft_id to;
    raft_term term;
    raft_index index;
    raft_term log_term;
    raft_index commit;
    raft_index hint_index; /* APPEND_RESP reject: where the leader should retry */
    raft_term hint_term;   /* APPEND_RESP reject: term of follower's entry at index, 0 if none */
    uint64_t ctx;
    const struct raft_entry *entries;
    uint32_t n_entries;
    struct raft_snapshot_meta snap;
    /* SNAPSHOT: the core leaves these empty on messages it emits (it never
     * holds snapshot bytes of its own); the driver attaches the snapshot the
     * metadata names.  On a received SNAPSHOT that it accepts, the core
     * copies the bytes during raft_step() (the caller may free them once it
     * returns) and hands the copy out as raft_ready.snap_data.  A driver
     * that keeps a received snapshot itself (on disk, streamed) steps the
     * metadata with snap_data NULL and snap_len 0: raft_ready.snap_data is
     * then NULL too and the driver installs what it kept. */
    const void *snap_data;
    size_t snap_len;
};

struct raft_read_state {
    uint64_t ctx;     /* the id given to raft_read_index() */
    raft_index index; /* serve the read once applied >= index */
    int err;          /* RAFT_OK, or why the read cannot be confirmed */
};

struct raft_ready {
    bool hs_changed;
    struct raft_hard_state hs;

    bool has_snapshot; /* a snapshot received from the leader: persist + apply */
    struct raft_snapshot_meta snap;
    const void *snap_data;
    size_t snap_len;

    /* To persist; replaces the log from entries[0].index on.  Possibly
     * only the first part of what is new (one block of the log, log.c),
     * and committed likewise: the rest comes in the next batch, and
     * msgs_after_persist, which acknowledge all of it, with the last part. */
    const struct raft_entry *entries;
    size_t n_entries;

    const struct raft_msg *msgs;
    size_t n_msgs;
    const struct raft_msg *msgs_after_persist;
    size_t n_msgs_after_persist;

    const struct raft_entry *committed; /* to apply, in order */
    size_t n_committed;

    const struct raft_read_state *reads;
    size_t n_reads;

    /* soft state, for status displays and routing */
    bool ss_changed;
    raft_id leader;
    enum raft_role role;
    raft_term term;
};

/* What an entry costs on the wire beyond its payload (index, term, type,
 * length), for max_inflight_bytes: many small entries cost the encoder
 * more than their bytes say. */
#define RAFT_ENTRY_WIRE_BYTES 24

struct raft_config {
    raft_id id;
    unsigned election_ticks;  /* minimum election timeout; actual is random in [e, 2e) */
    unsigned heartbeat_ticks; /* leader heartbeat interval, < election_ticks */
    uint32_t max_msg_entries; /* entries per AppendEntries */
    uint32_t max_msg_bytes;   /* payload bytes per AppendEntries (at least one entry is sent) */
    uint32_t max_inflight;    /* AppendEntries in flight per follower */
    /* ... and at most this many bytes in them (payload plus
     * RAFT_ENTRY_WIRE_BYTES per entry; 0 = no limit; one message always
     * goes).  What the leader encodes in one go for a follower that is far
     * behind: 64 messages of 4096 entries each took its loop 144 ms at
     * 10 M keys, past the election timeout.  Like etcd's MaxInflightBytes. */
    uint64_t max_inflight_bytes;
    uint32_t max_apply_entries; /* committed entries handed out per ready batch */
    raft_index learner_max_lag; /* promote only learners this close to the leader */
    raft_index snapshot_trailing; /* entries kept behind a snapshot for slow followers */
    bool pre_vote;
    bool check_quorum;
    /* Leader-lease reads (thesis §6.4.1), off by default; needs check_quorum
     * (raft_new refuses it without).  A leader that has committed an entry
     * of its term, is not transferring leadership (nor sent a TimeoutNow in
     * this term), and whose heartbeats a quorum acknowledged within the
     * last election_ticks - 1 - lease_drift_ticks ticks, counted from when
     * they were SENT, answers raft_read_index() (its own and forwarded
     * ones) at once with its commit index, without a heartbeat round.
     * Safe only under a clock assumption the core cannot check: no node's
     * ticks run faster than the leader's by more than lease_drift_ticks over
     * an election timeout, and the leader never counts fewer ticks than
     * have passed (a paused or stalled leader must catch its ticks up before
     * it is asked for a read).  Every voter must run with it on: the
     * voter-side rule (no vote for an election timeout after a (re)start,
     * see election_in_lease) is what makes the lease hold across crashes. */
    bool lease_reads;
    unsigned lease_drift_ticks; /* < election_ticks - 1 */
    uint64_t seed; /* for election timeout randomization; give each node its own */
};
void raft_config_defaults(struct raft_config *cfg, raft_id id);

struct raft_progress_status {
    raft_id id;
    uint8_t role;      /* enum raft_member_role */
    uint8_t state;     /* 0 probe, 1 replicate, 2 snapshot */
    bool recent_active; /* heard from within the last one or two election timeouts */
    raft_index match;
    raft_index next;
    uint32_t inflight;
};

/* Events since raft_new(), for monitoring: plain counts the core keeps as it
 * goes (no clock, no I/O); the host turns them into rates. */
struct raft_counters {
    uint64_t prevotes_started; /* pre-vote campaigns */
    uint64_t prevotes_lost;    /* ... that a majority refused */
    uint64_t read_index_rounds; /* heartbeat rounds a leader ran for reads */
    uint64_t lease_reads;       /* read-index requests a leader answered on its lease */
};

struct raft_status {
    raft_id id;
    enum raft_role role;
    raft_term term;
    raft_id vote;
    raft_id leader;
    raft_index commit;
    raft_index applied;
    raft_index persisted;
    raft_index first_index;
    raft_index last_index;
    raft_term last_term;
    raft_index snap_index;
    raft_id transferee;
    bool lease_valid; /* leader: a read-index request now would be answered on the lease */
    uint64_t refused_terms; /* messages/campaigns refused at RAFT_TERM_MAX */
    struct raft_counters counters;
    struct raft_conf conf;
    /* The entry that set conf (appended, maybe not committed yet); the
     * snapshot's index when that entry was compacted into it. */
    raft_index conf_index;
    uint32_t n_progress; /* leader only; the members of conf, nobody else */
    struct raft_progress_status progress[RAFT_MAX_MEMBERS];
};

struct raft;

/* Create a node.  Before it does anything useful, give it its persisted
 * state with raft_restore(), or raft_bootstrap() for a brand new cluster. */
int raft_new(struct raft **out, const struct raft_config *cfg);
void raft_free(struct raft *r);

/* Load persisted state after a (re)start.  snap may be NULL (no snapshot);
 * entries must follow the snapshot without gaps.  Everything loaded counts as
 * durable.  The state machine is expected to hold exactly the snapshot. */
int raft_restore(struct raft *r, const struct raft_hard_state *hs,
                 const struct raft_snapshot_meta *snap,
                 const struct raft_entry *entries, size_t n);

/* A brand-new cluster: every initial member calls this with the same conf on
 * an empty state; it writes the same entry (index 1, term 1) on each.  A node
 * joining an existing cluster does not bootstrap: the leader feeds it. */
int raft_bootstrap(struct raft *r, const struct raft_conf *conf);

/* Inputs.
 *
 * Out of memory: the core never aborts on a failed allocation.  Each input
 * below returns RAFT_ENOMEM when one failed while it ran, and leaves the node
 * consistent: what the input did is kept, and what it could not do is
 * dropped the way a lost message is, which Raft already survives.  A message
 * or read result not queued is never handed out (heartbeats, probes and the
 * driver's read and proposal timeouts retry); an entry not appended is not
 * proposed (raft_propose) or not acknowledged (AppendEntries, resent by the
 * leader); a snapshot not copied is not installed; a new leader that cannot
 * append its no-op steps down.  raft_ready() does not fail: a message it
 * could not build counts as lost.  After raft_new(), raft_restore() or
 * raft_bootstrap() fails with RAFT_ENOMEM, free the node and start over.
 * The driver may retry the input, or carry on as after a lost message. */
int raft_tick(struct raft *r);
int raft_step(struct raft *r, const struct raft_msg *m);
int raft_propose(struct raft *r, const void *data, uint32_t len,
                 raft_index *index_out, raft_term *term_out);
int raft_propose_conf(struct raft *r, const struct raft_conf_change *cc,
                      raft_index *index_out);
/* Ask for a read index; the answer comes back in a later ready batch as a
 * raft_read_state with the same ctx.  On a follower the request travels to
 * the leader and back, and a lost message means no answer at all: the driver
 * must time reads out (as it times out proposals whose entry never commits). */
int raft_read_index(struct raft *r, uint64_t ctx);
int raft_transfer_leader(struct raft *r, raft_id target); /* RAFT_NONE: best follower */
int raft_campaign(struct raft *r); /* start an election now (tests, tools) */
int raft_persisted(struct raft *r, raft_index index, raft_term term);
/* The state machine has a durable snapshot covering up to index (which must
 * be applied already): the core may forget older entries. */
int raft_snapshot_taken(struct raft *r, raft_index index);
/* The membership in force at index (for writing a snapshot's metadata). */
int raft_conf_at(const struct raft *r, raft_index index, struct raft_conf *out);
/* The latest snapshot's metadata (index 0 when there is none). */
void raft_snapshot_meta(const struct raft *r, struct raft_snapshot_meta *out);
void raft_report_snapshot(struct raft *r, raft_id to, bool ok);
/* The application started sending `to` its snapshot at index: its newest,
 * which may be older or newer than the one the core asked for (the core
 * learns of a snapshot only once it is durable).  Compaction keeps the
 * entries after it while that follower loads it (snapshot.c). */
void raft_snapshot_shipping(struct raft *r, raft_id to, raft_index index);
void raft_report_unreachable(struct raft *r, raft_id to);

/* Output. */
bool raft_has_ready(const struct raft *r);
void raft_ready(struct raft *r, struct raft_ready *rd);
void raft_advance(struct raft *r, const struct raft_ready *rd);

/* Test-only: before each allocation the core calls fail(arg), and fails the
 * allocation if it returns true.  NULL (the default) turns it off.  One hook
 * for the whole process: set it only while no other thread runs the core. */
void raft_set_alloc_fail(bool (*fail)(void *arg), void *arg);

/* Read-only views. */
void raft_status(const struct raft *r, struct raft_status *st);
enum raft_role raft_role(const struct raft *r);
raft_term raft_current_term(const struct raft *r);
raft_id raft_leader(const struct raft *r);
raft_index raft_commit_index(const struct raft *r);
raft_index raft_first_index(const struct raft *r); /* the oldest entry held (after compaction) */
raft_index raft_last_index(const struct raft *r);
/* Entry at index from the in-memory log, or RAFT_ECOMPACTED / RAFT_EUNAVAIL. */
int raft_entry_at(const struct raft *r, raft_index index, struct raft_entry *out);
/* Bytes held by the in-memory log (headers + payload), for memory accounting. */
size_t raft_log_memory(const struct raft *r);

#endif
