/* node.c - one simulated server: the real driver (src/node/replica.c, with
 * its key-value state machine) over the simulated disk, its lifecycle
 * (bootstrap, start, crash, restart from disk), and what the checker learns
 * from the driver's hooks: sends, applies, reads and installed snapshots. */
#include <stdlib.h>
#include <string.h>

#include "sim.h"

const struct blob *blob_new(struct sim *s, raft_index index, raft_term term, const void *data,
                            size_t len)
{
    struct blob *b = xrealloc(NULL, sizeof *b + len);
    b->index = index;
    b->term = term;
    b->len = len;
    if (len)
        memcpy(b->data, data, len);
    b->next = s->blobs;
    s->blobs = b;
    return b;
}

/* ---- the state machine, as the checker sees it --------------------------- */

static void sm_reset(struct sm *sm)
{
    if (sm->ids_words)
        memset(sm->ids, 0, sm->ids_words * 8);
    sm->applied = 0;
    sm->applied_term = 0;
    sm->chain = 0;
    memset(&sm->conf, 0, sizeof sm->conf);
}

static void sm_add_id(struct sim *s, struct node *n, uint64_t id, raft_index index)
{
    struct sm *sm = &n->sm;
    grow(&sm->ids, &sm->ids_words, id / 64 + 1, 8);
    uint64_t bit = 1ULL << (id % 64);
    if (sm->ids[id / 64] & bit)
        sim_fail(s, FAIL_SAFETY,
                 "state machine safety: n%llu applied proposal %llu a second time at %llu",
                 U(n->id), U(id), U(index));
    sm->ids[id / 64] |= bit;
}

/* The replica replaced its kv by a snapshot (restart, or InstallSnapshot).
 * The kv must be a state the global history went through at meta's index. */
static void on_installed(void *arg, const struct raft_snapshot_meta *meta, const struct kv *kv)
{
    struct node *n = arg;
    struct sim *s = n->sim;
    struct sm *sm = &n->sm;
    if (meta->index < sm->applied) {
        sim_fail(s, FAIL_SAFETY,
                 "state machine safety: n%llu handed a snapshot at %llu (term %llu) that would "
                 "un-apply its entries up to %llu",
                 U(n->id), U(meta->index), U(meta->term), U(sm->applied));
        return;
    }
    if (kv_applied_index(kv) != meta->index) {
        sim_fail(s, FAIL_SAFETY,
                 "snapshot: n%llu got metadata (index %llu, term %llu) for a state at %llu",
                 U(n->id), U(meta->index), U(meta->term), U(kv_applied_index(kv)));
        return;
    }
    if (meta->index > s->ck.hmax) {
        sim_fail(s, FAIL_SAFETY,
                 "state machine safety: n%llu reached state %llu that nobody applied up to "
                 "(history ends at %llu)",
                 U(n->id), U(meta->index), U(s->ck.hmax));
        return;
    }
    sm_reset(sm);
    struct kv_iter it;
    const void *key, *val;
    size_t klen, vlen;
    kv_dict_seek(kv_dict(kv), &it, NULL, 0, false);
    while (!s->fail && kv_iter_next(&it, &key, &klen, &val, &vlen)) {
        uint64_t id;
        if (klen != sizeof id) {
            sim_fail(s, FAIL_SAFETY, "n%llu: snapshot holds a key nobody wrote", U(n->id));
            return;
        }
        memcpy(&id, key, sizeof id);
        sm_add_id(s, n, id, meta->index);
    }
    sm->applied = meta->index;
    sm->applied_term = meta->term;
    sm->chain = s->ck.hchain[meta->index];
    sm->conf = meta->conf;
    s->st.snaps_installed++;
    check_apply(s, n, meta->index, meta->term, sm->chain);
    TRACE(s, "n%llu state machine from snapshot %llu term %llu (%zu keys)", U(n->id),
          U(meta->index), U(meta->term), kv_dict_count(kv_dict(kv)));
}

static void on_applied(void *arg, const struct raft_entry *e, const struct kv_result *res)
{
    (void)res;
    struct node *n = arg;
    struct sim *s = n->sim;
    struct sm *sm = &n->sm;
    if (s->fail)
        return;
    if (e->index != sm->applied + 1) {
        sim_fail(s, FAIL_SAFETY,
                 "state machine safety: n%llu was handed entry %llu to apply after %llu",
                 U(n->id), U(e->index), U(sm->applied));
        return;
    }
    sm->chain = mix64(sm->chain ^ mix64(e->index) ^ mix64(e->term * 0x9e3779b97f4a7c15ULL) ^
                      entry_hash(e));
    sm->applied = e->index;
    sm->applied_term = e->term;
    check_apply(s, n, e->index, e->term, sm->chain);
    if (e->type == RAFT_ENTRY_CONF) {
        if (raft_conf_decode(e->data, e->len, &sm->conf) != RAFT_OK)
            sim_fail(s, FAIL_CONTRACT, "n%llu: conf entry %llu does not decode", U(n->id),
                     U(e->index));
        if (e->index > s->ck.conf_index) {
            s->ck.conf = sm->conf;
            s->ck.conf_index = e->index;
        }
        TRACE(s, "n%llu apply %llu conf (%u members)", U(n->id), U(e->index), sm->conf.n);
    } else if (e->len) {
        struct kv_command cmd;
        uint64_t id;
        bool ok = kv_command_decode(e->data, e->len, &cmd) == KV_OK;
        if (ok && cmd.op == KV_OP_RECORD_INCARNATION && cmd.member_id >= 1 &&
            cmd.member_id <= s->n_nodes) {
            /* The leader's replica records (or, before a member add,
             * forgets) a data directory: what the history now says. */
            if (e->index > s->ck.rec_at[cmd.member_id]) {
                s->ck.rec[cmd.member_id] = cmd.incarnation;
                s->ck.rec_at[cmd.member_id] = e->index;
                TRACE(s, "n%llu apply %llu: n%llu's data directory is %016llx", U(n->id),
                      U(e->index), U(cmd.member_id), U(cmd.incarnation));
            }
            return;
        }
        if (!ok || cmd.key_len != sizeof id) {
            sim_fail(s, FAIL_SAFETY, "n%llu applied entry %llu that nobody proposed", U(n->id),
                     U(e->index));
            return;
        }
        memcpy(&id, cmd.key, sizeof id);
        sm_add_id(s, n, id, e->index);
    }
}

static void on_read_state(void *arg, const struct raft_read_state *rs)
{
    struct node *n = arg;
    struct sim *s = n->sim;
    check_read(s, n, rs);
    if (rs->err != RAFT_OK)
        return;
    grow(&n->reads, &n->reads_cap, n->n_reads + 1, sizeof *n->reads);
    n->reads[n->n_reads].ctx = rs->ctx;
    n->reads[n->n_reads++].index = rs->index;
}

static void on_send(void *arg, const struct raft_msg *m)
{
    struct node *n = arg;
    if (m->type == RAFT_MSG_TIMEOUT_NOW)
        n->sim->handed_over = n->id;
    if (!n->sim->fail)
        net_send(n->sim, n, netmsg_copy(n->sim, n, m));
}

static void on_soft_state(void *arg, raft_id leader, enum raft_role role, raft_term term)
{
    (void)leader, (void)role, (void)term;
    struct node *n = arg;
    n->dirty = true; /* check_node reads the new state */
}

/* Proposals this node accepted are acknowledged to their client once the
 * node has applied their index and the history holds the same term there. */
static void node_resolve(struct sim *s, struct node *n)
{
    size_t k = 0;
    for (size_t i = 0; i < n->n_props; i++) {
        struct proposal *p = &n->props[i];
        if (p->index > n->sm.applied) {
            n->props[k++] = *p;
            continue;
        }
        if (p->index <= s->ck.hmax && s->ck.hterm[p->index] == p->term)
            check_ack(s, p->id, p->index);
    }
    n->n_props = k;

    k = 0;
    for (size_t i = 0; i < n->n_reads; i++) {
        if (n->reads[i].index > n->sm.applied) {
            n->reads[k++] = n->reads[i];
            continue;
        }
        s->st.reads++;
        check_served(s, n->sm.applied);
        TRACE(s, "n%llu read %llu served at applied %llu", U(n->id), U(n->reads[i].ctx),
              U(n->sm.applied));
    }
    n->n_reads = k;
}

/* ---- lifecycle ----------------------------------------------------------- */

static void node_config(struct sim *s, struct node *n, struct replica_config *rc)
{
    replica_config_defaults(rc, n->id);
    struct raft_config *cfg = &rc->raft;
    cfg->election_ticks = s->p.election_ticks;
    cfg->heartbeat_ticks = s->p.heartbeat_ticks;
    cfg->max_msg_entries = s->p.max_msg_entries;
    cfg->max_msg_bytes = s->p.max_msg_bytes;
    cfg->max_inflight = s->p.max_inflight;
    cfg->max_apply_entries = s->p.max_apply;
    cfg->learner_max_lag = s->p.learner_max_lag;
    cfg->snapshot_trailing = s->p.snapshot_trailing;
    cfg->pre_vote = s->p.pre_vote;
    cfg->check_quorum = s->p.check_quorum;
    cfg->lease_reads = s->p.lease;
    cfg->lease_drift_ticks = s->p.lease_drift;
    /* Each incarnation its own timeout sequence, all derived from the seed
     * (never 0: that asks the replica for a per-run one). */
    cfg->seed = mix64(s->seed * 1000003ULL + n->id * 7919ULL + n->inc) | 1;
    rc->initial = s->ck.initial;
    rc->snapshot_entries = s->p.snap_every;
}

/* Start n from exactly what its disk holds: an initial member with an empty
 * disk bootstraps (again, if a crash lost its first write), any other waits
 * for the leader. */
void node_start(struct sim *s, struct node *n)
{
    n->sim = s;
    if (!n->dir_inc)
        n->dir_inc = mix64(s->seed * 0x9e3779b97f4a7c15ULL + n->id) | 1;
    n->up = true;
    n->started = true;
    n->decommissioned = false;
    n->wiped_down = false;
    n->restart_at = SIM_NEVER;
    n->stop_at = SIM_NEVER;
    n->last_commit = 0;
    n->last_term = 0;
    n->last_role = RAFT_FOLLOWER;
    n->last_leader = RAFT_NONE;
    n->shadow_term = 0;
    n->next_tick = s->now + prng_range(&s->rng, 1, n->tick_period);
    n->dirty = true;
    sm_reset(&n->sm);
    const struct disk *d = &n->disk;
    TRACE(s, "n%llu start from disk: term %llu vote %llu snap %llu log %llu..%llu", U(n->id),
          U(d->hs.term), U(d->hs.vote), U(d->has_snap ? d->snap.index : 0),
          U(d->n ? d->log[0].index : 0), U(d->n ? d->log[d->n - 1].index : 0));

    struct replica_config rc;
    node_config(s, n, &rc);
    struct replica_hooks hooks = {
        .arg = n,
        .send = on_send,
        .applied = on_applied,
        .read_state = on_read_state,
        .soft_state = on_soft_state,
        .installed = on_installed,
    };
    struct replica_storage io;
    disk_storage(n, &io);
    char err[256];
    int rc_open = replica_open(&n->rp, &rc, &hooks, &io, err, sizeof err);
    if (rc_open < 0) {
        n->rp = NULL;
        n->up = false;
        sim_fail(s, FAIL_CONTRACT, "n%llu: replica_open: %s", U(n->id), err);
        return;
    }
    /* An empty disk of an initial member that was never wiped is one that
     * never wrote (or lost to a crash) its first entry.  A wiped one waits
     * for the leader, as raftkv-node's bootstrap.c has it join (or refuses
     * it, when a member answers with its recorded incarnation: the sim
     * plays the case where the refusal did not happen). */
    bool empty = replica_empty(n->rp);
    bool boot = empty && !n->joiner && raft_conf_find(&rc.initial, n->id);
    if (boot && replica_bootstrap(n->rp, err, sizeof err) < 0) {
        sim_fail(s, FAIL_CONTRACT, "n%llu: replica_bootstrap: %s", U(n->id), err);
        return;
    }
    /* As bootstrap.c keeps it in the identity file. */
    if (empty)
        n->joined = !boot;
    replica_set_identity(n->rp, n->dir_inc, n->joined);
    node_drive(s, n);
}

/* Power loss: memory and unacknowledged writes are gone, except a random
 * prefix of the write queue that happened to reach the platter. */
/* What the replica counted that the checker's totals want, before it goes. */
static void count_closing(struct sim *s, struct node *n)
{
    if (!n->rp)
        return;
    struct raft_status st;
    replica_status(n->rp, &st);
    s->st.lease_reads += st.counters.lease_reads;
}

void node_crash(struct sim *s, struct node *n, const char *why)
{
    if (!n->up)
        return;
    count_closing(s, n);
    disk_crash(s, n);
    replica_close(n->rp);
    n->rp = NULL;
    n->up = false;
    n->inc++;
    n->n_props = 0;
    n->n_reads = 0;
    n->dirty = false;
    sm_reset(&n->sm);
    TRACE(s, "n%llu CRASH (%s): disk term %llu vote %llu, last index %llu", U(n->id), why,
          U(n->disk.hs.term), U(n->disk.hs.vote), U(disk_last_index(&n->disk)));
}

/* The disk of a node that is down is lost (a replaced drive, rm -rf of the
 * data directory): it comes back empty, with a new data-directory
 * incarnation, and no record of the votes it granted. */
void node_wipe(struct sim *s, struct node *n)
{
    disk_free(n);
    memset(&n->disk, 0, sizeof n->disk);
    if (n->voted_cap)
        memset(n->voted, 0, n->voted_cap * sizeof *n->voted);
    n->wipes++;
    n->dir_inc = mix64(s->seed * 0x9e3779b97f4a7c15ULL + n->id + 0x100ULL * n->wipes) | 1;
    n->joiner = true;
    n->wiped_down = true;
    s->st.wipes++;
    TRACE(s, "n%llu WIPED while down: empty disk, data directory %016llx", U(n->id),
          U(n->dir_inc));
}

void node_free(struct node *n)
{
    if (n->sim)
        count_closing(n->sim, n);
    replica_close(n->rp);
    n->rp = NULL;
    disk_free(n);
    free(n->sm.ids);
    free(n->shadow);
    free(n->props);
    free(n->reads);
    free(n->voted);
}

/* After every input: the replica runs its ready rounds (persist, send,
 * apply), exactly as in raftkv-node.  A replica that failed is a bug here:
 * the simulated disk never fails. */
void node_drive(struct sim *s, struct node *n)
{
    if (!n->up || s->fail)
        return;
    n->dirty = true;
    /* all of it now: the simulator has no loop to come back on */
    for (unsigned i = 0; i < 1024 && replica_has_ready(n->rp); i++) {
        replica_turn(n->rp);
        replica_process(n->rp);
    }
    if (!s->fail && replica_error(n->rp))
        sim_fail(s, FAIL_CONTRACT, "n%llu: the replica failed: %s", U(n->id),
                 replica_errmsg(n->rp));
    if (!s->fail)
        node_resolve(s, n);
}
