/* harness.h - small helpers shared by the consensus-core unit tests.
 *
 * Everything goes through the public API (raft/raft.h).  A test builds one or
 * a few nodes by hand (bootstrap or restore with a log given as a list of
 * terms), steps crafted messages into them, and inspects what came out of
 * the ready batches.  The harness deep-copies every ready batch into the
 * node's `out` record before raft_advance(), so a test can look at messages,
 * entries, reads and hard state after the fact.
 */
#ifndef RAFTKV_TESTS_UNIT_HARNESS_H
#define RAFTKV_TESTS_UNIT_HARNESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "raft/raft.h"

#define H_MAX_MSGS 512
#define H_MAX_ENTS 8192
#define H_MAX_READS 64
#define H_ARENA (1u << 20)

/* Everything the node handed out since the last h_drain() cleared it. */
struct h_out {
    struct raft_msg msgs[H_MAX_MSGS]; /* rd.msgs: may go at once */
    size_t n_msgs;
    struct raft_msg ap[H_MAX_MSGS]; /* rd.msgs_after_persist */
    size_t n_ap;
    struct raft_entry ents[H_MAX_ENTS]; /* rd.entries, in order */
    size_t n_ents;
    struct raft_entry committed[H_MAX_ENTS]; /* rd.committed, in order */
    size_t n_committed;
    struct raft_read_state reads[H_MAX_READS];
    size_t n_reads;
    bool hs_changed; /* some batch changed the hard state; hs is the last one */
    struct raft_hard_state hs;
    bool has_snapshot;
    struct raft_snapshot_meta snap;
    const uint8_t *snap_data; /* copy, in the arena */
    size_t snap_len;
    unsigned batches;

    /* deep copies of entries carried by messages, and of payload bytes */
    struct raft_entry msg_ents[H_MAX_ENTS];
    size_t n_msg_ents;
    uint8_t arena[H_ARENA];
    size_t arena_used;
};

struct h_node {
    struct raft *r;
    raft_id id;
    struct h_out out;
};

/* Where to look for a message. */
enum h_where { H_NOW = 1, H_AFTER = 2, H_ANY = 3 };

/* ---- named checks for table-driven tests ------------------------------ */

/* Set by a table loop so a failed check names its row. */
extern const char *h_case;

#define CHECK(c)                                                                       \
    do {                                                                               \
        if (!(c))                                                                      \
            fail_msg("[%s] line %d: check failed: %s", h_case ? h_case : "-", __LINE__, #c); \
    } while (0)

#define CHECK_EQ(a, b)                                                                 \
    do {                                                                               \
        unsigned long long h_a_ = (unsigned long long)(a);                             \
        unsigned long long h_b_ = (unsigned long long)(b);                             \
        if (h_a_ != h_b_)                                                              \
            fail_msg("[%s] line %d: %s = %llu, expected %s = %llu", h_case ? h_case : "-", \
                     __LINE__, #a, h_a_, #b, h_b_);                                    \
    } while (0)

#define CHECK_RV(a, b)                                                                 \
    do {                                                                               \
        int h_a_ = (a), h_b_ = (b);                                                    \
        if (h_a_ != h_b_)                                                              \
            fail_msg("[%s] line %d: %s = %d (%s), expected %d (%s)", h_case ? h_case : "-", \
                     __LINE__, #a, h_a_, raft_strerror(h_a_), h_b_, raft_strerror(h_b_)); \
    } while (0)

/* ---- nodes -------------------------------------------------------------- */

/* raft_config_defaults() for id; the tests rely on its documented fields
 * (election_ticks 10, heartbeat_ticks 1, pre_vote and check_quorum on). */
struct raft_config h_config(raft_id id);

/* raft_new() with cfg (NULL: h_config(id)); asserts success. */
struct h_node *h_new(raft_id id, const struct raft_config *cfg);
void h_free(struct h_node *n);
void h_free_all(struct h_node **nodes, size_t count);

/* The membership {1..voters} as voters, then {voters+1..voters+learners}
 * as learners. */
struct raft_conf h_conf(unsigned voters, unsigned learners);

/* A brand-new member of the cluster {1..voters}: bootstrap, then drain and
 * persist so the bootstrap entry is durable. */
struct h_node *h_boot(raft_id id, unsigned voters, const struct raft_config *cfg);

/* A restarted node: entry 1 is the configuration entry for conf (term
 * terms[0]), entries 2..n are normal entries whose one-byte payload is the low
 * byte of their index; entry i has term terms[i-1].  hs = {term, vote}. */
struct h_node *h_restore_conf(raft_id id, const struct raft_conf *conf, raft_term term,
                              raft_id vote, const raft_term *terms, size_t n,
                              const struct raft_config *cfg);
/* Same, with conf = h_conf(voters, 0). */
struct h_node *h_restore(raft_id id, unsigned voters, raft_term term, raft_id vote,
                         const raft_term *terms, size_t n, const struct raft_config *cfg);
/* Fill ents[0..n) as h_restore_conf() describes (index 1 = conf entry). */
void h_make_log(struct raft_entry *ents, const struct raft_conf *conf, const raft_term *terms,
                size_t n);

/* ---- driving ---------------------------------------------------------- */

/* Clear n->out, then raft_ready()/raft_advance() until nothing is ready,
 * copying every batch into n->out. */
void h_drain(struct h_node *n);
/* Like h_drain() but adds to what n->out already holds. */
void h_drain_more(struct h_node *n);
/* Storage says everything in the log is durable: raft_persisted(last). */
void h_persist(struct h_node *n);
/* h_drain(), h_persist(), h_drain_more(): a node whose disk is instant. */
void h_sync(struct h_node *n);

/* raft_step() that must succeed.  `to` 0 is filled with the node's id. */
void h_step(struct h_node *n, struct raft_msg m);
void h_tick(struct h_node *n, unsigned ticks);

/* Campaign and feed grants from every other voter until n leads; leaves n
 * synced (its no-op durable) with its first APPENDs in n->out. */
void h_make_leader(struct h_node *n);
/* Leader n hears APPEND_RESP index from `from`; then drains. */
void h_ack(struct h_node *n, raft_id from, raft_index index);
/* Every follower acknowledges the leader's last index; the leader persists;
 * drained.  Afterwards every follower is in replicate state, all committed. */
void h_ack_all(struct h_node *n);
/* HEARTBEAT_RESP from `from` with ctx; then drains. */
void h_heartbeat_resp(struct h_node *n, raft_id from, uint64_t ctx);

/* Propose count entries of size bytes each (payload byte = i); asserts OK. */
void h_propose(struct h_node *n, unsigned count, uint32_t size);

/* Deliver every message among nodes (sync each, step what it sent into the
 * recipients present) until no node sends anything; at most `rounds`. */
void h_net_run(struct h_node **nodes, size_t count, unsigned rounds);

/* ---- looking at output -------------------------------------------------- */

/* First message of type to `to` (RAFT_NONE: anyone) in the chosen lists. */
const struct raft_msg *h_find(const struct h_node *n, enum h_where where, uint8_t type, raft_id to);
size_t h_count(const struct h_node *n, enum h_where where, uint8_t type, raft_id to);
/* The k-th (0-based) such message, or NULL. */
const struct raft_msg *h_nth(const struct h_node *n, enum h_where where, uint8_t type, raft_id to,
                             size_t k);

struct raft_status h_status(const struct h_node *n);
/* Progress of follower id as the leader sees it (fails the test if absent). */
struct raft_progress_status h_progress(const struct h_node *n, raft_id id);
/* Term of entry i in n's log (0 if it is not in memory). */
raft_term h_term_at(const struct h_node *n, raft_index i);
/* True if n's in-memory log holds exactly terms[0..count) from index 1. */
bool h_log_is(const struct h_node *n, const raft_term *terms, size_t count);

/* Builds a raft_term array literal: T(1, 1, 2) */
#define T(...) ((const raft_term[]){__VA_ARGS__})
#define NT(...) (sizeof((const raft_term[]){__VA_ARGS__}) / sizeof(raft_term))

#endif
