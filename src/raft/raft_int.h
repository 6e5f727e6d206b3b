/* raft_int.h - the consensus core's private state, shared by its files.
 *
 * Nothing outside src/raft includes this.  Each concern lives in its own
 * file (log.c, election.c, replication.c, ...); this header is where they
 * meet: the struct raft itself and the small internal API between files.
 */
#ifndef RAFTKV_RAFT_INT_H
#define RAFTKV_RAFT_INT_H

#include "raft/raft.h"

#include <stdio.h>
#include <stdlib.h>

/* A broken internal invariant is a bug in this library, never bad input:
 * stop at once rather than replicate a corrupt state. */
#define RAFT_ASSERT(cond)                                                      \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "raft: invariant failed at %s:%d: %s\n", __FILE__, \
                    __LINE__, #cond);                                          \
            abort();                                                           \
        }                                                                      \
    } while (0)

#define RAFT_MAX_INFLIGHT 256
/* Rounds whose send time a leader remembers for its lease; an answer to an
 * older one is simply not counted (reads then take a round). */
#define RAFT_LEASE_RING 64
/* Progress slots: every member of the newest configuration, and, until it
 * commits, every member it drops from the one it replaced (conf.c). */
#define RAFT_MAX_PROGRESS (2 * RAFT_MAX_MEMBERS)

/* ---- in-memory log (log.c) -------------------------------------------- */

/* Entries [prev_index+1, prev_index+n] live in entries[head, head+n), a
 * sliding array that only grows at the tail, shrinks at the tail (conflict
 * truncation) or at the head (compaction).  Their payloads live back to
 * back in a list of chunks (4 KiB, doubling up to 1 MiB, or one payload if
 * larger) that are never moved: once no entry held has its payload
 * there, a chunk is freed by a later append (a few per append), never in
 * between, so a payload pointer stays valid until the next append.  One
 * copy per entry, no allocation per entry, and no pause to copy the whole
 * log (the single byte buffer this replaces was doubled and
 * copied whole: hundreds of MB on the loop at millions of keys). */
struct raftlog_chunk {
    struct raftlog_chunk *next;
    raft_index last; /* >= the index of every entry with its payload here */
    size_t used, cap;
    uint8_t data[];
};

/* Headers live in blocks of RAFTLOG_BLOCK: position p (head + k for the
 * k-th entry held) is blocks[p / RAFTLOG_BLOCK][p % RAFTLOG_BLOCK].  Blocks
 * never move or grow, so no append ever copies the headers held: one
 * array doubling to 2^22 headers copied 64 MB into fresh pages, 0.3-0.5 s
 * on the loop (10 M keys, a leader change).  A run of entries handed out
 * as an array (raftlog_run) ends at its block's end. */
#define RAFTLOG_BLOCK 16384u

struct raft_log {
    struct raftlog_chunk **blocks; /* each holds RAFTLOG_BLOCK headers in data */
    size_t n_blocks, cap_blocks;
    size_t head, n;                /* head < RAFTLOG_BLOCK once compacted */
    struct raftlog_chunk *chunks, *chunk_tail; /* oldest .. newest */
    struct raftlog_chunk *dead;                /* cut off by truncation */
    size_t chunk_bytes;                        /* allocated, for raftlog_memory */
    raft_index prev_index; /* the entry just before the first one we hold */
    raft_term prev_term;
};

void raftlog_init(struct raft_log *l);
void raftlog_free(struct raft_log *l);
static inline raft_index raftlog_first_index(const struct raft_log *l) { return l->prev_index + 1; }
static inline raft_index raftlog_last_index(const struct raft_log *l) { return l->prev_index + l->n; }
raft_term raftlog_last_term(const struct raft_log *l);
/* 0 and *term set, or RAFT_ECOMPACTED / RAFT_EUNAVAIL. */
int raftlog_term(const struct raft_log *l, raft_index i, raft_term *term);
/* Term at i, or 0 when i is outside what we know (0 is never a real term). */
raft_term raftlog_term_or0(const struct raft_log *l, raft_index i);
const struct raft_entry *raftlog_get(const struct raft_log *l, raft_index i);
/* How many entries from i on (at most to last) raftlog_get(l, i) returns as
 * one array: up to the end of i's block.  0 when i is not held. */
size_t raftlog_run(const struct raft_log *l, raft_index i, raft_index last);
int raftlog_append(struct raft_log *l, raft_term term, uint8_t type, const void *data, uint32_t len);
void raftlog_truncate_from(struct raft_log *l, raft_index i);
void raftlog_compact_to(struct raft_log *l, raft_index i);
void raftlog_reset(struct raft_log *l, raft_index prev_index, raft_term prev_term);
size_t raftlog_memory(const struct raft_log *l);
/* Number of entries starting at from that fit the limits (at least one when from <= last). */
size_t raftlog_batch(const struct raft_log *l, raft_index from, uint32_t max_entries, uint32_t max_bytes,
                     uint64_t *wire_bytes);

/* ---- per-follower replication progress (progress.c) ------------------ */

enum progress_state { PROGRESS_PROBE = 0, PROGRESS_REPLICATE = 1, PROGRESS_SNAPSHOT = 2 };

struct raft_progress {
    raft_id id;
    uint8_t role;  /* enum raft_member_role; RAFT_LEARNER when departing */
    uint8_t state; /* enum progress_state */
    bool departing; /* not in conf: its removal is not committed yet (conf.c) */
    bool probe_sent;    /* PROBE: one append is out; wait for an answer */
    bool recent_active; /* heard from since the last check-quorum round */
    /* ... or in the round before: what raft_status() reports, since a flag
     * just cleared by a new round says nothing about the follower yet. */
    bool active_prev;
    raft_index match, next;
    raft_index pending_snapshot;
    /* Oldest snapshot sent to it that it has not acknowledged
     * (snapshot.c): compaction keeps the entry after it for a while. */
    raft_index snap_sent;
    uint64_t read_ack; /* highest read-index round it acknowledged */
    /* Lease reads: 1 + the leader's tick count when it first sent the
     * newest round this follower acknowledged (0: none this term). */
    uint64_t lease_tick;
    unsigned stall_ticks; /* ticks with appends in flight and no progress */
    /* last index carried by each in-flight AppendEntries, oldest first,
     * and its size (raftlog_batch's count) */
    raft_index inflight[RAFT_MAX_INFLIGHT];
    uint64_t inflight_size[RAFT_MAX_INFLIGHT];
    uint64_t inflight_bytes; /* sum of inflight_size */
    uint32_t inflight_head, inflight_count;
};

struct raft_progress *progress_get(struct raft *r, raft_id id);
void progress_reset(struct raft_progress *pr, raft_index next);
void progress_become_probe(struct raft_progress *pr);
void progress_become_replicate(struct raft_progress *pr);
void progress_become_snapshot(struct raft_progress *pr, raft_index snap_index);
bool progress_maybe_update(struct raft_progress *pr, raft_index index);
bool progress_maybe_decr(struct raft_progress *pr, raft_index rejected, raft_index hint_next);
/* A heartbeat's rejection (RAFT_CTX_LOST) proving the follower lost entries
 * it had acknowledged (a wiped, restored or cut disk); progress_forget() then
 * probes from where its log really ends, and catches it up by log or snapshot
 * like any new follower. */
bool progress_lost_entries(const struct raft_progress *pr, raft_index rejected, raft_index hint_next);
void progress_forget(struct raft_progress *pr, raft_index next);
bool progress_inflight_full(const struct raft_progress *pr, const struct raft_config *cfg);
void progress_inflight_add(struct raft_progress *pr, raft_index last, uint64_t bytes);
void progress_inflight_free_to(struct raft_progress *pr, raft_index index);
bool progress_paused(const struct raft_progress *pr, const struct raft_config *cfg);

/* ---- the node --------------------------------------------------------- */

struct raft_pending_read {
    uint64_t ctx;
    raft_id from;     /* RAFT_NONE: asked locally */
    raft_index index; /* 0 until the leader has committed in its term */
    uint64_t round;   /* heartbeat round that must be acknowledged */
};

/* A growable array of fixed-size items, reused batch after batch so the hot
 * path allocates only while it is still learning its working-set size. */
struct raft_vec {
    void *items;
    size_t n, cap;
};

struct raft {
    struct raft_config cfg;
    raft_id id;

    /* persistent (Figure 2) */
    raft_term term;
    raft_id vote;
    struct raft_log log;

    /* volatile */
    enum raft_role role;
    raft_id leader;
    raft_index commit;
    raft_index applied;   /* handed out for applying */
    raft_index persisted; /* durable here, and still part of our log */
    raft_index next_to_persist; /* first index not yet handed out for persisting */

    /* membership: the newest configuration in the log takes effect at once */
    struct raft_conf conf;
    raft_index conf_index;         /* entry that set conf; 0 if from snapshot */
    raft_index pending_conf_index; /* leader: no new change until commit >= this */
    struct raft_snapshot_meta snapshot; /* latest snapshot the application holds */
    raft_index snapshot_before;         /* the one taken before it (snapshot.c) */

    /* one per member of conf, plus one per departing member (conf.c), kept
     * on every role; the leader drives them */
    struct raft_progress progress[RAFT_MAX_PROGRESS];
    unsigned n_progress;
    unsigned n_departing;
    raft_id transferee;
    unsigned transfer_elapsed;
    bool committed_in_term; /* a current-term entry is committed */

    /* elections */
    raft_id granted[RAFT_MAX_MEMBERS];
    raft_id rejected[RAFT_MAX_MEMBERS];
    unsigned n_granted, n_rejected;
    unsigned election_elapsed;
    unsigned heartbeat_elapsed;
    unsigned randomized_timeout;
    uint64_t rng;
    uint64_t refused_terms; /* messages or campaigns refused by RAFT_TERM_MAX */
    struct raft_counters counters;

    /* read index */
    uint64_t read_round; /* last heartbeat round broadcast */
    bool read_round_wanted;
    struct raft_vec reads; /* struct raft_pending_read, FIFO */

    /* lease reads (readindex.c) */
    uint64_t ticks; /* raft_tick() calls since raft_new(): the node's clock */
    /* When each of the newest rounds first went out: an acknowledgement of
     * round r proves the follower heard from us no earlier than that. */
    struct {
        uint64_t round, tick; /* tick: 1 + ticks at the send */
    } lease_sent[RAFT_LEASE_RING];
    raft_term lease_off_term; /* a TimeoutNow went out in this term: no lease in it */

    /* output, and what the last ready batch reported (to spot changes) */
    struct raft_vec msgs;               /* struct raft_msg, may go at once */
    struct raft_vec msgs_after_persist; /* struct raft_msg, wait for durability */
    struct raft_vec read_results;       /* struct raft_read_state */
    struct raft_hard_state reported_hard_state;
    raft_id reported_leader;
    enum raft_role reported_role;
    raft_term reported_term;
    /* a snapshot accepted from the leader, not yet handed out */
    bool received_snap_pending;
    struct raft_snapshot_meta received_snap;
    void *received_snap_data;
    size_t received_snap_len;

    /* out of memory (alloc.c): set by a failed allocation, reported and
     * cleared by the input that caused it */
    bool out_of_memory;
    union {
        struct raft_msg msg;
        struct raft_read_state read;
    } discard;
};

/* alloc.c */
void *raft_realloc(void *p, size_t size); /* every allocation; free() releases */
void *raft_vec_push(struct raft_vec *v, size_t item_size); /* NULL when out of memory */
/* A slot to fill; out of memory, a scratch one whose content is dropped. */
void *raft_vec_push_or_discard(struct raft *r, struct raft_vec *v, size_t item_size);
/* What an input returns: rv, or RAFT_ENOMEM if an allocation failed in it. */
int raft_input_result(struct raft *r, int rv);

/* raft.c */
/* Queue a message; out of memory it is dropped as if lost on the network. */
struct raft_msg *raft_msg_new(struct raft *r, uint8_t type, raft_id to);
bool raft_append_entry(struct raft *r, raft_term term, uint8_t type, const void *data, uint32_t len);

/* term.c */
bool term_admit(struct raft *r, const struct raft_msg *m); /* false: drop it */
bool term_can_advance(struct raft *r);                     /* false: counted as refused */

/* quorum.c: every majority the core takes, over the voters of r->conf */
unsigned quorum_size(const struct raft *r);
typedef uint64_t (*quorum_value_fn)(const struct raft *r, const struct raft_progress *pr);
/* The largest value a majority of voters has reached (0 if too few voters). */
uint64_t quorum_agreed(const struct raft *r, quorum_value_fn value);
enum quorum_vote { QUORUM_PENDING, QUORUM_WON, QUORUM_LOST };
enum quorum_vote quorum_vote_result(const struct raft *r);

/* election.c */
void election_reset_timeout(struct raft *r);
void election_become_follower(struct raft *r, raft_term term, raft_id leader);
void election_become_leader(struct raft *r);
bool election_campaign(struct raft *r, bool pre_vote, bool transfer); /* false: term exhausted */
bool election_follow(struct raft *r, const struct raft_msg *m); /* false: we lead this term */
void election_tick(struct raft *r);
void election_handle_vote(struct raft *r, const struct raft_msg *m);
void election_handle_vote_resp(struct raft *r, const struct raft_msg *m);
bool election_in_lease(const struct raft *r);

/* replication.c */
void replication_tick(struct raft *r);
void replication_broadcast_heartbeat(struct raft *r, uint64_t round);
void replication_send_all(struct raft *r);
bool replication_has_sendable(const struct raft *r);
void replication_handle_append(struct raft *r, const struct raft_msg *m);
void replication_handle_append_resp(struct raft *r, const struct raft_msg *m);
void replication_handle_heartbeat(struct raft *r, const struct raft_msg *m);
void replication_handle_heartbeat_resp(struct raft *r, const struct raft_msg *m);
bool replication_maybe_commit(struct raft *r);
void replication_commit_to(struct raft *r, raft_index index);

/* readindex.c */
int readindex_request(struct raft *r, raft_id from, uint64_t ctx);
int readindex_handle_request(struct raft *r, const struct raft_msg *m);
void readindex_on_commit_in_term(struct raft *r);
void readindex_release(struct raft *r);
void readindex_fail_all(struct raft *r, int err);
void readindex_handle_resp(struct raft *r, const struct raft_msg *m);
void readindex_start_round(struct raft *r);
bool readindex_round_due(const struct raft *r);
/* Lease reads: the periodic heartbeat (a new round each time, so its
 * answers date the lease), an answer to a round, and whether it holds. */
void readindex_lease_heartbeat(struct raft *r);
void readindex_lease_ack(struct raft *r, struct raft_progress *pr, uint64_t round);
bool readindex_lease_valid(const struct raft *r);

/* transfer.c */
int transfer_start(struct raft *r, raft_id target); /* raft_transfer_leader() */
void transfer_abort(struct raft *r);
void transfer_maybe_finish(struct raft *r, struct raft_progress *pr);
void transfer_tick(struct raft *r);
void transfer_handle_timeout_now(struct raft *r, const struct raft_msg *m);

/* snapshot.c */
void snapshot_send(struct raft *r, struct raft_progress *pr);
void snapshot_handle(struct raft *r, const struct raft_msg *m);

/* conf.c */
bool conf_is_voter(const struct raft *r, raft_id id);
/* c takes effect as of index; before: the configuration in force just
 * before it, when the caller knows it (NULL: looked up in the log). */
void conf_apply(struct raft *r, const struct raft_conf *c, raft_index index,
                const struct raft_conf *before);
void conf_recompute(struct raft *r);
void conf_on_commit(struct raft *r); /* commit moved: drop departing members once it is in force */
int conf_change_make(const struct raft *r, const struct raft_conf_change *cc, struct raft_conf *out);

#endif
