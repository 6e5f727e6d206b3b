/* sim.h - the types every part of the deterministic simulator shares.
 * One struct sim holds a whole seed's world (nodes, disks, network, checker
 * state, counters), so a run depends on nothing but its seed number. */
#ifndef SIM_SIM_H
#define SIM_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "node/replica.h"
#include "prng.h"
#include "raft/raft.h"

/* Up to 5 initial members plus one spare that membership changes cycle in. */
#define SIM_MAX_NODES 6
/* Largest entry payload we ever produce: proposals are <= 32 bytes, conf
 * entries <= RAFT_CONF_ENCODED_MAX; anything bigger is a core bug. */
#define SIM_DATA_MAX 160
#define SIM_NEVER UINT64_MAX

#define U(x) ((unsigned long long)(x))

enum fail_kind {
    FAIL_NONE = 0,
    FAIL_SAFETY,   /* a Raft safety property broke */
    FAIL_CONTRACT, /* the core broke raft.h's driver contract */
    FAIL_LIVENESS, /* the healed cluster did not converge in time */
};

/* Snapshot bytes.  Owned by the seed's arena (struct sim.blobs) and freed only
 * when the seed ends: disks and messages in flight share them. */
struct blob {
    struct blob *next;
    raft_index index;
    raft_term term;
    size_t len;
    uint8_t data[];
};

struct dentry {
    raft_index index;
    raft_term term;
    uint8_t type;
    uint32_t len;
    uint8_t data[SIM_DATA_MAX];
};

/* What survives a crash.  Like src/store, a snapshot keeps the log that
 * continues it, and a later compaction drops what the snapshot covers. */
struct disk {
    struct raft_hard_state hs;
    bool has_snap;
    struct raft_snapshot_meta snap;
    const struct blob *snap_blob;
    struct dentry *log; /* contiguous; log[0].index == snap.index + 1 if any */
    size_t n, cap;
    bool has_incs; /* the incarnation file (storage.h) */
    struct replica_incarnations incs;
};

/* A message on the wire: a deep copy, since ready pointers die at advance. */
struct netmsg {
    uint64_t at;  /* delivery time */
    uint64_t seq; /* tie-break so equal times keep a deterministic order */
    unsigned from_inc; /* sender incarnation, for reporting back to it */
    uint64_t from_dir; /* sender's data-directory incarnation, as peer messages carry it */
    bool dup;          /* a network duplicate: the sender's transport never saw it */
    struct raft_msg m;
    struct raft_entry ents[]; /* followed by the entries' data bytes */
};

/* One write the replica queued through the storage table, durable later
 * and in order. */
enum wop_kind { WOP_APPEND, WOP_SNAPSHOT, WOP_COMPACT, WOP_INCS };
struct wop {
    struct wop *next;
    uint64_t seq;
    enum wop_kind kind;
    bool has_hs;
    struct raft_hard_state hs;
    struct raft_snapshot_meta snap;
    const struct blob *snap_blob;
    raft_index upto;
    struct dentry *ents;
    size_t n_ents;
    struct replica_incarnations incs;
};

/* What the checker knows of a node's state machine (the replica's real kv):
 * a hash chain over applied entries plus the set of applied proposal ids
 * (the kv's keys).  Rebuilt from the kv when a snapshot replaces it. */
struct sm {
    raft_index applied;
    raft_term applied_term;
    uint64_t chain;
    struct raft_conf conf;
    uint64_t *ids;
    size_t ids_words;
};

struct proposal {
    raft_index index;
    raft_term term;
    uint64_t id;
};

struct pread {
    uint64_t ctx;
    raft_index index;
};

struct node {
    struct sim *sim;
    raft_id id;
    bool up;
    bool started;        /* ever ran (the spare starts absent) */
    bool decommissioned; /* stopped after removal: restarts only when re-added */
    unsigned inc;        /* incarnation: bumped on every crash */
    /* Data-directory incarnation (never 0): drawn at the first start and
     * again when the disk is wiped; carried on every message it sends. */
    uint64_t dir_inc;
    unsigned wipes;
    bool joiner; /* wiped once: an empty disk never bootstraps again */
    /* Its identity file's flag: the directory started empty and joined
     * rather than bootstrapping (replica_set_identity); set at each start
     * from an empty disk, kept across crashes, gone with a wipe. */
    bool joined;
    /* A snapshot written "in the background" (storage.h snapshot_begin, a
     * writer thread in the node): the view serialised when it began, reported done
     * whenever the schedule says, gone with a crash. */
    bool bg_on;
    struct raft_snapshot_meta bg_meta;
    void *bg_data;
    size_t bg_len;
    bool wiped_down; /* wiped during this downtime (once is enough) */
    struct replica *rp; /* the real driver (src/node/replica.c) over the disk below */
    struct disk disk;
    struct wop *pend, *pend_tail;
    size_t n_pend;
    uint64_t next_seq; /* of the newest queued write */
    struct sm sm;
    /* The vote this node granted in each term, kept across crashes (a
     * wipe loses it with the disk). */
    raft_id *voted;
    size_t voted_cap;
    uint64_t next_tick;
    unsigned tick_period;
    uint64_t restart_at;
    uint64_t stop_at;
    bool dirty; /* got an input this step: its state must be checked */

    /* Observations for the invariants, reset on crash. */
    raft_index last_commit;
    raft_term last_term;
    enum raft_role last_role;
    raft_id last_leader;
    raft_term shadow_term; /* leader append-only: its log while leader of this term */
    raft_index shadow_first;
    raft_term *shadow;
    size_t shadow_n, shadow_cap;

    struct proposal *props;
    size_t n_props, props_cap;
    struct pread *reads;
    size_t n_reads, reads_cap;
};

/* Per-seed knobs, all drawn from the seed. */
struct params {
    uint32_t loss_ppm, dup_ppm, long_delay_ppm;
    unsigned delay_max;
    uint32_t partition_ppm, crash_ppm, prop_ppm, read_ppm;
    uint32_t transfer_ppm, conf_ppm, disk_ppm, snap_ppm, clock_change_ppm;
    unsigned snap_every;
    uint32_t churn_ppm;  /* chance that a new leader is soon crashed or cut off */
    uint32_t strike_ppm; /* chance that a leader is cut off just after it commits */
    unsigned election_ticks, heartbeat_ticks;
    uint32_t max_msg_entries, max_msg_bytes, max_inflight, max_apply;
    unsigned snapshot_trailing, learner_max_lag;
    bool pre_vote, check_quorum;
    uint32_t wipe_ppm; /* per step, chance that a down node's disk is wiped (when safe) */
    bool bg_snapshots; /* the replica writes snapshots through snapshot_begin/adopt */
    /* Leader-lease reads (--lease): on in every node, with the drift margin
     * the clocks below need; tick periods are drawn from [tick_min, tick_max]. */
    bool lease;
    unsigned lease_drift;
    unsigned tick_min, tick_max;
    uint32_t handover_ppm; /* chance that a leader goes deaf once it sent TimeoutNow */
};

/* --lease: clocks within the drift the lease allows for.  --lease-wild-clocks:
 * the same lease and margin, with clocks that break that bound. */
enum lease_mode { LEASE_OFF = 0, LEASE_BOUNDED, LEASE_WILD };

struct stats {
    uint64_t proposals, committed, reads, reads_failed, elections;
    uint64_t snaps_taken, snaps_installed, snaps_sent;
    uint64_t conf_changes, transfers, crashes, partitions;
    uint64_t delivered, dropped, steps;
    uint64_t wipes, stale; /* disks wiped; messages the incarnation rule dropped */
    uint64_t withheld;     /* vote requests a joined, unrecorded node left unanswered */
    uint64_t lease_reads;  /* read-index requests a leader answered on its lease */
};

/* (index, term) -> what that entry must look like everywhere. */
struct itab_slot {
    raft_index index;
    raft_term term; /* 0: empty slot */
    uint64_t hash;
    raft_term prev; /* term at index - 1, or UINT64_MAX if unknown */
};

struct checker {
    raft_id *leader_of_term;
    size_t lot_cap;
    struct itab_slot *itab;
    size_t itab_cap, itab_n;
    /* Committed entries as seen through any node's commit index: their term
     * and the observer's term when first seen (an upper bound on the term in
     * which they were committed: leaders of later terms must hold them). */
    raft_term *cterm, *cobs;
    size_t c_cap;
    raft_index gmax;
    /* The one global history of applied entries. */
    raft_term *hterm;
    uint64_t *hchain;
    size_t h_cap;
    raft_index hmax;
    /* The newest membership anybody applied: certainly committed. */
    struct raft_conf conf;
    raft_index conf_index;
    struct raft_conf initial; /* the bootstrap membership */
    /* Client-visible facts for liveness and linearizability. */
    uint64_t *acked;
    size_t acked_words;
    raft_index told; /* highest commit index any client has been told about */
    raft_index *read_told;
    size_t read_cap;
    /* The incarnation the applied history records for each node (0: none)
     * and the index that recorded it. */
    uint64_t rec[SIM_MAX_NODES + 1];
    raft_index rec_at[SIM_MAX_NODES + 1];
};

struct net {
    struct netmsg **heap;
    size_t n, cap;
    uint64_t seq;
    bool cut[SIM_MAX_NODES + 1][SIM_MAX_NODES + 1]; /* cut[a][b]: a -> b dropped */
    bool partitioned;
    uint64_t heal_at;
};

#define TRACE_RING 50
#define TRACE_LINE 400

struct sim {
    uint64_t seed;
    enum lease_mode lease_mode;
    unsigned n_init;  /* initial members 1..n_init */
    unsigned n_nodes; /* n_init + the spare */
    uint64_t now;
    uint64_t steps;
    bool faults; /* false once the schedule ends and the cluster heals */
    struct prng rng;
    struct params p;
    struct node nodes[SIM_MAX_NODES + 1]; /* 1-based: nodes[id] */
    struct net net;
    struct checker ck;
    struct stats st;
    struct blob *blobs;
    uint64_t next_prop_id, next_read_ctx;
    raft_term churn_seen; /* highest leader term the churn adversary considered */
    raft_id churn_target;
    raft_id just_committed; /* a leader whose commit index moved this step */
    uint64_t churn_at;
    raft_id handed_over; /* a leader that sent TimeoutNow this step */

    int trace_mode; /* 0 off, 1 keep the last TRACE_RING lines, 2 print all */
    char ring[TRACE_RING][TRACE_LINE];
    unsigned ring_n;

    enum fail_kind fail;
    char fail_msg[512];
};

/* sim.c */
void tracef(struct sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define TRACE(s, ...)                                                                              \
    do {                                                                                           \
        if ((s)->trace_mode)                                                                       \
            tracef((s), __VA_ARGS__);                                                              \
    } while (0)
void sim_fail(struct sim *s, enum fail_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
const char *fail_kind_name(enum fail_kind k);
void *xrealloc(void *p, size_t size);
/* Grow *arr (elements of size elem) to hold at least need, zero-filling. */
void grow(void *arr, size_t *cap, size_t need, size_t elem);

/* world.c */
void world_run(struct sim *s, uint64_t seed, unsigned nodes, uint64_t steps, int trace_mode,
               enum lease_mode lease);
void world_free(struct sim *s);
raft_id world_leader(struct sim *s);

/* node.c */
void node_start(struct sim *s, struct node *n);
void node_crash(struct sim *s, struct node *n, const char *why);
void node_wipe(struct sim *s, struct node *n);
void node_drive(struct sim *s, struct node *n);
void node_free(struct node *n);
const struct blob *blob_new(struct sim *s, raft_index index, raft_term term, const void *data,
                            size_t len);

/* disk.c */
void disk_storage(struct node *n, struct replica_storage *io);
void disk_complete(struct sim *s, struct node *n, size_t max);
void disk_crash(struct sim *s, struct node *n);
/* The background snapshot write of n finished (or failed, now and then). */
void disk_bg_done(struct sim *s, struct node *n);
raft_index disk_last_index(const struct disk *d);
const struct dentry *disk_entry(const struct disk *d, raft_index index);
void disk_free(struct node *n);

/* net.c */
struct netmsg *netmsg_copy(struct sim *s, struct node *from, const struct raft_msg *m);
void net_send(struct sim *s, struct node *from, struct netmsg *nm);
void net_deliver_due(struct sim *s);
void net_heal(struct sim *s);
enum part_how {
    PART_RANDOM,         /* a random shape (leader: who may be cut off) */
    PART_ISOLATE_LEADER, /* leader (and maybe one more) cut off from the rest */
    PART_DEAF_LEADER,    /* leader hears nobody, everybody hears it */
};
void net_partition(struct sim *s, raft_id leader, enum part_how how);
void net_free(struct sim *s);
void fmt_msg(char *buf, size_t len, const struct raft_msg *m);

/* check.c */
void check_node(struct sim *s, struct node *n);
void check_apply(struct sim *s, struct node *n, raft_index index, raft_term term, uint64_t chain);
void check_read(struct sim *s, struct node *n, const struct raft_read_state *rs);
void check_sent(struct sim *s, struct node *n, const struct raft_msg *m);
void check_vote_taken(struct sim *s, struct node *to, const struct netmsg *nm, bool admitted,
                      enum raft_role role, raft_term term);
void check_ack(struct sim *s, uint64_t id, raft_index index);
void check_served(struct sim *s, raft_index applied);
bool check_acked_applied(struct sim *s, struct node *n, uint64_t *missing);
void check_free(struct checker *ck);
uint64_t entry_hash(const struct raft_entry *e);

#endif
