/* node.c - one simulated server: its lifecycle (bootstrap, start, crash,
 * restart from disk), the ready/advance driver loop exactly as raft.h
 * describes it, and the replicated state machine with its snapshots. */
#include <stdlib.h>
#include <string.h>

#include "sim.h"

/* ---- snapshots and the state machine ---------------------------------- */

static const struct blob *blob_new(struct sim *s, raft_index index, raft_term term, const void *data,
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

static void put_bytes(uint8_t **p, const void *v, size_t n)
{
    memcpy(*p, v, n);
    *p += n;
}

static bool get_bytes(const uint8_t **p, const uint8_t *end, void *v, size_t n)
{
    if ((size_t)(end - *p) < n)
        return false;
    memcpy(v, *p, n);
    *p += n;
    return true;
}

/* Layout: u64 applied, u64 term, u64 chain, u32 conf_len, conf, u32 words, ids.
 * Native byte order is fine: the bytes never leave this process. */
static const struct blob *sm_serialize(struct sim *s, const struct sm *sm)
{
    uint8_t conf[RAFT_CONF_ENCODED_MAX];
    uint32_t conf_len = (uint32_t)raft_conf_encode(&sm->conf, conf);
    uint32_t words = (uint32_t)sm->ids_words;
    while (words && !sm->ids[words - 1])
        words--; /* trailing zero words carry nothing */
    size_t len = 3 * 8 + 4 + conf_len + 4 + (size_t)words * 8;
    uint8_t *buf = xrealloc(NULL, len), *p = buf;
    put_bytes(&p, &sm->applied, 8);
    put_bytes(&p, &sm->applied_term, 8);
    put_bytes(&p, &sm->chain, 8);
    put_bytes(&p, &conf_len, 4);
    put_bytes(&p, conf, conf_len);
    put_bytes(&p, &words, 4);
    if (words)
        put_bytes(&p, sm->ids, (size_t)words * 8);
    const struct blob *b = blob_new(s, sm->applied, sm->applied_term, buf, len);
    free(buf);
    return b;
}

static bool conf_equal(const struct raft_conf *a, const struct raft_conf *b)
{
    if (a->n != b->n)
        return false;
    for (uint32_t i = 0; i < a->n; i++) {
        const struct raft_member *m = raft_conf_find(b, a->m[i].id);
        if (!m || m->role != a->m[i].role)
            return false;
    }
    return true;
}

/* Replace n's state machine with a snapshot (restart, or InstallSnapshot).
 * The bytes must describe a state the global history went through. */
static void sm_restore(struct sim *s, struct node *n, const struct blob *b,
                       const struct raft_snapshot_meta *meta)
{
    struct sm *sm = &n->sm;
    if (sm->ids_words)
        memset(sm->ids, 0, sm->ids_words * 8);
    sm->applied = 0;
    sm->applied_term = 0;
    sm->chain = 0;
    memset(&sm->conf, 0, sizeof sm->conf);
    if (!b)
        return; /* an empty node: nothing applied yet */

    const uint8_t *p = b->data, *end = b->data + b->len;
    uint32_t conf_len = 0, words = 0;
    raft_index idx = 0;
    raft_term term = 0;
    uint64_t chain = 0;
    uint8_t confb[RAFT_CONF_ENCODED_MAX];
    struct raft_conf conf;
    bool ok = get_bytes(&p, end, &idx, 8) && get_bytes(&p, end, &term, 8) &&
              get_bytes(&p, end, &chain, 8) && get_bytes(&p, end, &conf_len, 4) &&
              conf_len <= sizeof confb && get_bytes(&p, end, confb, conf_len) &&
              raft_conf_decode(confb, conf_len, &conf) == RAFT_OK &&
              get_bytes(&p, end, &words, 4) && (size_t)(end - p) == (size_t)words * 8;
    if (!ok) {
        sim_fail(s, FAIL_CONTRACT, "n%llu: snapshot bytes (index %llu, %zu bytes) do not parse",
                 U(n->id), U(b->index), b->len);
        return;
    }
    if (meta && (meta->index != idx || meta->term != term)) {
        sim_fail(s, FAIL_SAFETY,
                 "snapshot: n%llu got metadata (index %llu, term %llu) for a state at (%llu, %llu)",
                 U(n->id), U(meta->index), U(meta->term), U(idx), U(term));
        return;
    }
    if (meta && !conf_equal(&meta->conf, &conf)) {
        sim_fail(s, FAIL_SAFETY,
                 "snapshot: n%llu metadata at index %llu names a membership (%u members) the "
                 "state machine did not have there (%u members)",
                 U(n->id), U(idx), meta->conf.n, conf.n);
        return;
    }
    grow(&sm->ids, &sm->ids_words, words, 8);
    if (words)
        memcpy(sm->ids, p, (size_t)words * 8);
    sm->applied = idx;
    sm->applied_term = term;
    sm->chain = chain;
    sm->conf = conf;
    if (idx)
        check_apply(s, n, idx, term, chain);
}

static void sm_apply(struct sim *s, struct node *n, const struct raft_entry *e)
{
    struct sm *sm = &n->sm;
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
    } else if (e->len >= 8) {
        uint64_t id;
        memcpy(&id, e->data, 8);
        grow(&sm->ids, &sm->ids_words, id / 64 + 1, 8);
        uint64_t bit = 1ULL << (id % 64);
        if (sm->ids[id / 64] & bit)
            sim_fail(s, FAIL_SAFETY,
                     "state machine safety: n%llu applied proposal %llu a second time at %llu",
                     U(n->id), U(id), U(e->index));
        sm->ids[id / 64] |= bit;
    }
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

static void node_config(struct sim *s, struct node *n, struct raft_config *cfg)
{
    raft_config_defaults(cfg, n->id);
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
    /* Each incarnation its own timeout sequence, all derived from the seed. */
    cfg->seed = mix64(s->seed * 1000003ULL + n->id * 7919ULL + n->inc);
}

/* Start n: bootstrap a new cluster member (conf given), or come back from
 * exactly what its disk holds (which may be nothing, for a joining node). */
void node_start(struct sim *s, struct node *n, const struct raft_conf *bootstrap)
{
    struct raft_config cfg;
    node_config(s, n, &cfg);
    int rc = raft_new(&n->r, &cfg);
    if (rc != RAFT_OK) {
        sim_fail(s, FAIL_CONTRACT, "raft_new(n%llu): %s", U(n->id), raft_strerror(rc));
        return;
    }
    n->up = true;
    n->started = true;
    n->decommissioned = false;
    n->restart_at = SIM_NEVER;
    n->stop_at = SIM_NEVER;
    n->last_commit = 0;
    n->last_term = 0;
    n->last_role = RAFT_FOLLOWER;
    n->last_leader = RAFT_NONE;
    n->shadow_term = 0;
    n->local_snap_pending = 0;
    n->next_tick = s->now + prng_range(&s->rng, 1, n->tick_period);
    n->dirty = true;
    struct disk *d = &n->disk;

    if (bootstrap) {
        rc = raft_bootstrap(n->r, bootstrap);
        if (rc != RAFT_OK) {
            sim_fail(s, FAIL_CONTRACT, "raft_bootstrap(n%llu): %s", U(n->id), raft_strerror(rc));
            return;
        }
        /* Cluster creation is an install step: write what bootstrap made
         * straight to disk, whether or not it also shows up in a ready. */
        struct raft_status st;
        raft_status(n->r, &st);
        d->hs.term = st.term;
        d->hs.vote = st.vote;
        for (raft_index i = st.first_index; i <= st.last_index; i++) {
            struct raft_entry e;
            if (raft_entry_at(n->r, i, &e) != RAFT_OK || e.len > SIM_DATA_MAX) {
                sim_fail(s, FAIL_CONTRACT, "n%llu: bootstrap entry %llu unreadable", U(n->id),
                         U(i));
                return;
            }
            grow(&d->log, &d->cap, d->n + 1, sizeof *d->log);
            struct dentry *de = &d->log[d->n++];
            de->index = e.index;
            de->term = e.term;
            de->type = e.type;
            de->len = e.len;
            if (e.len)
                memcpy(de->data, e.data, e.len);
        }
        sm_restore(s, n, NULL, NULL);
        TRACE(s, "n%llu bootstrap: term %llu, log %llu..%llu", U(n->id), U(st.term),
              U(st.first_index), U(st.last_index));
    } else {
        struct raft_entry *ents = xrealloc(NULL, (d->n + 1) * sizeof *ents);
        for (size_t i = 0; i < d->n; i++) {
            ents[i].index = d->log[i].index;
            ents[i].term = d->log[i].term;
            ents[i].type = d->log[i].type;
            ents[i].len = d->log[i].len;
            ents[i].data = d->log[i].len ? d->log[i].data : NULL;
        }
        rc = raft_restore(n->r, &d->hs, d->has_snap ? &d->snap : NULL, ents, d->n);
        free(ents);
        if (rc != RAFT_OK) {
            sim_fail(s, FAIL_CONTRACT, "raft_restore(n%llu): %s", U(n->id), raft_strerror(rc));
            return;
        }
        sm_restore(s, n, d->has_snap ? d->snap_blob : NULL, d->has_snap ? &d->snap : NULL);
        TRACE(s, "n%llu start from disk: term %llu vote %llu snap %llu log %llu..%llu",
              U(n->id), U(d->hs.term), U(d->hs.vote), U(d->has_snap ? d->snap.index : 0),
              U(d->n ? d->log[0].index : 0), U(d->n ? d->log[d->n - 1].index : 0));
    }
    n->mem_snap = d->has_snap ? d->snap_blob : NULL;
    node_drive(s, n);
}

/* Power loss: memory and unacknowledged writes are gone, except a random
 * prefix of the write queue that happened to reach the platter. */
void node_crash(struct sim *s, struct node *n, const char *why)
{
    if (!n->up)
        return;
    disk_crash(s, n);
    raft_free(n->r);
    n->r = NULL;
    n->up = false;
    n->inc++;
    n->n_props = 0;
    n->n_reads = 0;
    n->local_snap_pending = 0;
    n->mem_snap = NULL;
    n->dirty = false;
    sm_restore(s, n, NULL, NULL);
    TRACE(s, "n%llu CRASH (%s): disk term %llu vote %llu, last index %llu", U(n->id), why,
          U(n->disk.hs.term), U(n->disk.hs.vote), U(disk_last_index(&n->disk)));
}

void node_free(struct node *n)
{
    if (n->r)
        raft_free(n->r);
    n->r = NULL;
    struct batch *b = n->pend;
    while (b) {
        struct batch *next = b->next;
        batch_free(b);
        b = next;
    }
    disk_free(&n->disk);
    free(n->sm.ids);
    free(n->shadow);
    free(n->props);
    free(n->reads);
}

/* ---- the ready/advance loop ---------------------------------------------- */

static struct dentry *copy_entries(struct sim *s, struct node *n, const struct raft_entry *e,
                                   size_t count)
{
    struct dentry *out = xrealloc(NULL, count * sizeof *out);
    for (size_t i = 0; i < count; i++) {
        if (e[i].len > SIM_DATA_MAX || (i && e[i].index != e[i - 1].index + 1) ||
            (i && e[i].term < e[i - 1].term)) {
            sim_fail(s, FAIL_CONTRACT,
                     "n%llu: ready entries malformed at %llu (term %llu, %u bytes)", U(n->id),
                     U(e[i].index), U(e[i].term), e[i].len);
            free(out);
            return NULL;
        }
        out[i].index = e[i].index;
        out[i].term = e[i].term;
        out[i].type = e[i].type;
        out[i].len = e[i].len;
        if (e[i].len)
            memcpy(out[i].data, e[i].data, e[i].len);
    }
    return out;
}

static void handle_ready(struct sim *s, struct node *n, const struct raft_ready *rd)
{
    struct batch *b = xrealloc(NULL, sizeof *b);
    memset(b, 0, sizeof *b);

    /* 1. storage work, queued as one batch. */
    if (rd->hs_changed) {
        b->has_hs = true;
        b->hs = rd->hs;
    }
    if (rd->has_snapshot) {
        b->has_snap = true;
        b->snap = rd->snap;
        b->snap_blob = blob_new(s, rd->snap.index, rd->snap.term, rd->snap_data, rd->snap_len);
    }
    if (rd->n_entries) {
        b->ents = copy_entries(s, n, rd->entries, rd->n_entries);
        b->n_ents = b->ents ? rd->n_entries : 0;
    }
    if (rd->n_msgs_after_persist) {
        b->msgs = xrealloc(NULL, rd->n_msgs_after_persist * sizeof *b->msgs);
        for (size_t i = 0; i < rd->n_msgs_after_persist; i++)
            b->msgs[b->n_msgs++] = netmsg_copy(s, n, &rd->msgs_after_persist[i]);
    }

    /* 4 (snapshot part) before 2, so our own SNAPSHOT sends could use it. */
    if (rd->has_snapshot) {
        if (rd->snap.index < n->sm.applied) {
            sim_fail(s, FAIL_SAFETY,
                     "state machine safety: n%llu handed a snapshot at %llu (term %llu) that "
                     "would un-apply its entries up to %llu",
                     U(n->id), U(rd->snap.index), U(rd->snap.term), U(n->sm.applied));
        } else {
            sm_restore(s, n, b->snap_blob, &rd->snap);
            n->mem_snap = b->snap_blob;
            s->st.snaps_installed++;
            TRACE(s, "n%llu install snapshot %llu term %llu", U(n->id), U(rd->snap.index),
                  U(rd->snap.term));
        }
    }

    /* 2. messages that may go before persistence. */
    for (size_t i = 0; i < rd->n_msgs; i++)
        net_send(s, n, netmsg_copy(s, n, &rd->msgs[i]));

    /* 4. apply committed entries. */
    for (size_t i = 0; i < rd->n_committed && !s->fail; i++)
        sm_apply(s, n, &rd->committed[i]);
    if (rd->n_committed)
        TRACE(s, "n%llu applied %llu..%llu", U(n->id), U(rd->committed[0].index),
              U(rd->committed[rd->n_committed - 1].index));

    /* 5. read-index results: checked now, served once applied. */
    for (size_t i = 0; i < rd->n_reads; i++) {
        check_read(s, n, &rd->reads[i]);
        if (rd->reads[i].err != RAFT_OK)
            continue;
        grow(&n->reads, &n->reads_cap, n->n_reads + 1, sizeof *n->reads);
        n->reads[n->n_reads].ctx = rd->reads[i].ctx;
        n->reads[n->n_reads++].index = rd->reads[i].index;
    }
    node_resolve(s, n);

    if (rd->hs_changed || rd->n_entries)
        TRACE(s, "n%llu ready: hs %s(term %llu vote %llu), %zu entries%s%llu..%llu, %zu+%zu msgs",
              U(n->id), rd->hs_changed ? "" : "unchanged ", U(rd->hs.term), U(rd->hs.vote),
              rd->n_entries, rd->n_entries ? " " : "",
              U(rd->n_entries ? rd->entries[0].index : 0),
              U(rd->n_entries ? rd->entries[rd->n_entries - 1].index : 0), rd->n_msgs,
              rd->n_msgs_after_persist);

    disk_queue(s, n, b);
}

/* Drain the core's ready batches.  Bounded: a core that keeps producing
 * work without new input is broken. */
void node_drive(struct sim *s, struct node *n)
{
    for (unsigned iter = 0; n->up && !s->fail && raft_has_ready(n->r); iter++) {
        if (iter >= 1000) {
            sim_fail(s, FAIL_CONTRACT, "n%llu: raft_has_ready still true after 1000 batches",
                     U(n->id));
            return;
        }
        struct raft_ready rd;
        raft_ready(n->r, &rd);
        n->dirty = true;
        handle_ready(s, n, &rd);
        raft_advance(n->r, &rd);
    }
}

/* Compaction, as a node daemon would do it: serialize the state machine,
 * write it out in order with the log, and tell the core once it is durable. */
void node_maybe_snapshot(struct sim *s, struct node *n)
{
    if (!n->up || n->local_snap_pending || !s->p.snap_every)
        return;
    raft_index base = n->disk.has_snap ? n->disk.snap.index : 0;
    if (n->mem_snap && n->mem_snap->index > base)
        base = n->mem_snap->index;
    if (n->sm.applied < base + s->p.snap_every || !prng_chance(&s->rng, s->p.snap_ppm))
        return;
    struct batch *b = xrealloc(NULL, sizeof *b);
    memset(b, 0, sizeof *b);
    b->has_snap = true;
    b->local_snap = true;
    b->snap.index = n->sm.applied;
    b->snap.term = n->sm.applied_term;
    b->snap.conf = n->sm.conf;
    b->snap_blob = sm_serialize(s, &n->sm);
    n->local_snap_pending = n->sm.applied;
    TRACE(s, "n%llu snapshot at %llu queued", U(n->id), U(n->sm.applied));
    disk_queue(s, n, b);
}
