/* replica_fix.h - a replica (src/node/replica.c) over a storage table kept
 * in memory, for the unit tests of the driver's rules: writes land at once
 * and are durable when the test says so; sent messages and applied entries
 * are recorded. */
#ifndef RAFTKV_TESTS_REPLICA_FIX_H
#define RAFTKV_TESTS_REPLICA_FIX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "node/replica.h"

#define MEM_MAX 32

struct mem {
    struct raft_hard_state hs;
    struct raft_entry ents[MEM_MAX]; /* ents[i].index == first + i */
    uint8_t data[MEM_MAX][64];
    size_t n;
    bool has_snap;
    struct raft_snapshot_meta snap;
    void *snap_data;
    size_t snap_len;
    bool has_incs;
    struct replica_incarnations incs;
    uint64_t seq;
};

#define SENT_MAX 256

struct fix {
    struct mem mem;
    struct replica *rp;
    raft_id id;
    struct raft_msg sent[SENT_MAX];
    size_t n_sent;
    size_t n_applied;        /* entries the replica applied */
    uint32_t apply_per_turn; /* set before fix_open; 0: the default */
};

/* Open (or reopen) replica id over f->mem; with_file: the storage has the
 * incarnation file ops. */
void fix_open(struct fix *f, raft_id id, bool with_file);
/* Everything queued is durable now (all in one turn: no replica_turn). */
void fix_sync(struct fix *f);
/* An entry at index (below MEM_MAX): a conf of voters 1..3, a no-op, or a
 * record of member's incarnation. */
struct raft_entry conf_entry(raft_index index, raft_term term);
struct raft_entry noop_entry(raft_index index, raft_term term);
struct raft_entry record_entry(raft_index index, raft_term term, raft_id member, uint64_t inc);
/* Leader `from` of term appends ents after (prev, prev_term), commit. */
void fix_append(struct fix *f, raft_id from, raft_term term, raft_index prev, raft_term prev_term,
                const struct raft_entry *ents, uint32_t n, raft_index commit);
/* A vote request from `from` (directory inc) whose log ends at (index, log_term). */
int ask_vote(struct fix *f, uint8_t type, raft_id from, uint64_t inc, raft_term term,
             raft_index index, raft_term log_term);
/* Whether a granted VOTE_RESP to `to` went out. */
bool granted(const struct fix *f, raft_id to);
void fix_close(struct fix *f);
void fix_free(struct fix *f);

#endif
