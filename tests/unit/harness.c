/* harness.c - see harness.h. */
#include "harness.h"

#include <stdlib.h>
#include <string.h>

const char *h_case;

struct raft_config h_config(raft_id id)
{
    struct raft_config cfg;
    raft_config_defaults(&cfg, id);
    return cfg;
}

struct h_node *h_new(raft_id id, const struct raft_config *cfg)
{
    struct raft_config c = cfg ? *cfg : h_config(id);
    c.id = id;
    struct h_node *n = calloc(1, sizeof(*n));
    assert_non_null(n);
    n->id = id;
    CHECK_RV(raft_new(&n->r, &c), RAFT_OK);
    return n;
}

void h_free(struct h_node *n)
{
    if (!n)
        return;
    raft_free(n->r);
    free(n);
}

void h_free_all(struct h_node **nodes, size_t count)
{
    for (size_t i = 0; i < count; i++)
        h_free(nodes[i]);
}

struct raft_conf h_conf(unsigned voters, unsigned learners)
{
    struct raft_conf c;
    memset(&c, 0, sizeof(c));
    for (unsigned i = 0; i < voters + learners; i++) {
        c.m[c.n].id = i + 1;
        c.m[c.n].role = i < voters ? RAFT_VOTER : RAFT_LEARNER;
        c.n++;
    }
    return c;
}

struct h_node *h_boot(raft_id id, unsigned voters, const struct raft_config *cfg)
{
    struct h_node *n = h_new(id, cfg);
    struct raft_conf c = h_conf(voters, 0);
    CHECK_RV(raft_bootstrap(n->r, &c), RAFT_OK);
    h_sync(n);
    return n;
}

/* Payload storage for logs built by h_make_log(): conf bytes, then one byte
 * per index.  Static, so entries built from it outlive the call. */
static uint8_t h_conf_bytes[RAFT_CONF_ENCODED_MAX];
static uint8_t h_index_bytes[256];

void h_make_log(struct raft_entry *ents, const struct raft_conf *conf, const raft_term *terms,
                size_t n)
{
    for (unsigned i = 0; i < 256; i++)
        h_index_bytes[i] = (uint8_t)i;
    for (size_t i = 0; i < n; i++) {
        struct raft_entry *e = &ents[i];
        memset(e, 0, sizeof(*e));
        e->index = i + 1;
        e->term = terms[i];
        if (i == 0) {
            e->type = RAFT_ENTRY_CONF;
            e->len = (uint32_t)raft_conf_encode(conf, h_conf_bytes);
            e->data = h_conf_bytes;
        } else {
            e->type = RAFT_ENTRY_NORMAL;
            e->len = 1;
            e->data = &h_index_bytes[(i + 1) & 0xff];
        }
    }
}

struct h_node *h_restore_conf(raft_id id, const struct raft_conf *conf, raft_term term,
                              raft_id vote, const raft_term *terms, size_t n,
                              const struct raft_config *cfg)
{
    struct h_node *node = h_new(id, cfg);
    struct raft_entry *ents = calloc(n ? n : 1, sizeof(*ents));
    assert_non_null(ents);
    h_make_log(ents, conf, terms, n);
    struct raft_hard_state hs = {.term = term, .vote = vote};
    int rv = raft_restore(node->r, &hs, NULL, ents, n);
    free(ents);
    CHECK_RV(rv, RAFT_OK);
    h_drain(node);
    return node;
}

struct h_node *h_restore(raft_id id, unsigned voters, raft_term term, raft_id vote,
                         const raft_term *terms, size_t n, const struct raft_config *cfg)
{
    struct raft_conf c = h_conf(voters, 0);
    return h_restore_conf(id, &c, term, vote, terms, n, cfg);
}

/* ---- copying ready batches ------------------------------------------------ */

static const uint8_t *arena_copy(struct h_out *o, const void *p, size_t len)
{
    if (!len)
        return NULL;
    if (o->arena_used + len > sizeof(o->arena))
        fail_msg("harness arena full (%zu + %zu bytes)", o->arena_used, len);
    uint8_t *dst = o->arena + o->arena_used;
    memcpy(dst, p, len);
    o->arena_used += len;
    return dst;
}

static void copy_entry(struct h_out *o, struct raft_entry *dst, const struct raft_entry *src)
{
    *dst = *src;
    dst->data = arena_copy(o, src->data, src->len);
}

static void copy_msgs(struct h_out *o, struct raft_msg *dst, size_t *n, const struct raft_msg *src,
                      size_t count)
{
    for (size_t i = 0; i < count; i++) {
        if (*n >= H_MAX_MSGS)
            fail_msg("harness: more than %d messages", H_MAX_MSGS);
        struct raft_msg *m = &dst[(*n)++];
        *m = src[i];
        if (m->n_entries) {
            if (o->n_msg_ents + m->n_entries > H_MAX_ENTS)
                fail_msg("harness: too many message entries");
            struct raft_entry *e = &o->msg_ents[o->n_msg_ents];
            for (uint32_t k = 0; k < m->n_entries; k++)
                copy_entry(o, &e[k], &src[i].entries[k]);
            o->n_msg_ents += m->n_entries;
            m->entries = e;
        }
        m->snap_data = arena_copy(o, src[i].snap_data, src[i].snap_len);
    }
}

static void copy_entries(struct h_out *o, struct raft_entry *dst, size_t *n,
                         const struct raft_entry *src, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        if (*n >= H_MAX_ENTS)
            fail_msg("harness: more than %d entries", H_MAX_ENTS);
        copy_entry(o, &dst[(*n)++], &src[i]);
    }
}

static void out_clear(struct h_out *o)
{
    o->n_msgs = o->n_ap = o->n_ents = o->n_committed = o->n_reads = 0;
    o->hs_changed = o->has_snapshot = false;
    o->snap_data = NULL;
    o->snap_len = 0;
    o->batches = 0;
    o->n_msg_ents = 0;
    o->arena_used = 0;
}

void h_drain_more(struct h_node *n)
{
    struct h_out *o = &n->out;
    for (unsigned guard = 0; raft_has_ready(n->r); guard++) {
        if (guard > 1000)
            fail_msg("node %llu: raft_has_ready() never settles", (unsigned long long)n->id);
        struct raft_ready rd;
        raft_ready(n->r, &rd);
        o->batches++;
        if (rd.hs_changed)
            o->hs_changed = true;
        o->hs = rd.hs;
        if (rd.has_snapshot) {
            o->has_snapshot = true;
            o->snap = rd.snap;
            o->snap_data = arena_copy(o, rd.snap_data, rd.snap_len);
            o->snap_len = rd.snap_len;
        }
        /* entries replace the log from entries[0].index on */
        if (rd.n_entries) {
            while (o->n_ents && o->ents[o->n_ents - 1].index >= rd.entries[0].index)
                o->n_ents--;
        }
        copy_entries(o, o->ents, &o->n_ents, rd.entries, rd.n_entries);
        copy_entries(o, o->committed, &o->n_committed, rd.committed, rd.n_committed);
        copy_msgs(o, o->msgs, &o->n_msgs, rd.msgs, rd.n_msgs);
        copy_msgs(o, o->ap, &o->n_ap, rd.msgs_after_persist, rd.n_msgs_after_persist);
        for (size_t i = 0; i < rd.n_reads; i++) {
            if (o->n_reads >= H_MAX_READS)
                fail_msg("harness: too many reads");
            o->reads[o->n_reads++] = rd.reads[i];
        }
        raft_advance(n->r, &rd);
    }
}

void h_drain(struct h_node *n)
{
    out_clear(&n->out);
    h_drain_more(n);
}

void h_persist(struct h_node *n)
{
    struct raft_status st;
    raft_status(n->r, &st);
    if (st.last_index > st.persisted)
        CHECK_RV(raft_persisted(n->r, st.last_index, st.last_term), RAFT_OK);
}

void h_sync(struct h_node *n)
{
    h_drain(n);
    h_persist(n);
    h_drain_more(n);
}

void h_step(struct h_node *n, struct raft_msg m)
{
    if (m.to == RAFT_NONE)
        m.to = n->id;
    int rv = raft_step(n->r, &m);
    if (rv != RAFT_OK)
        fail_msg("[%s] raft_step(%s from %llu) on node %llu: %s", h_case ? h_case : "-",
                 raft_msg_type_name(m.type), (unsigned long long)m.from,
                 (unsigned long long)n->id, raft_strerror(rv));
}

void h_tick(struct h_node *n, unsigned ticks)
{
    for (unsigned i = 0; i < ticks; i++)
        raft_tick(n->r);
}

void h_make_leader(struct h_node *n)
{
    CHECK_RV(raft_campaign(n->r), RAFT_OK);
    h_drain(n);
    struct raft_status st = h_status(n);
    if (st.role == RAFT_PRECANDIDATE) {
        for (uint32_t i = 0; i < st.conf.n && raft_role(n->r) == RAFT_PRECANDIDATE; i++) {
            if (st.conf.m[i].id == n->id || st.conf.m[i].role != RAFT_VOTER)
                continue;
            h_step(n, (struct raft_msg){.type = RAFT_MSG_PREVOTE_RESP, .from = st.conf.m[i].id,
                                        .term = st.term + 1});
        }
        h_drain_more(n);
    }
    st = h_status(n);
    for (uint32_t i = 0; i < st.conf.n && raft_role(n->r) == RAFT_CANDIDATE; i++) {
        if (st.conf.m[i].id == n->id || st.conf.m[i].role != RAFT_VOTER)
            continue;
        h_step(n, (struct raft_msg){.type = RAFT_MSG_VOTE_RESP, .from = st.conf.m[i].id,
                                    .term = st.term});
    }
    CHECK_EQ(raft_role(n->r), RAFT_LEADER);
    h_sync(n);
}

void h_ack(struct h_node *n, raft_id from, raft_index index)
{
    h_step(n, (struct raft_msg){.type = RAFT_MSG_APPEND_RESP, .from = from,
                                .term = raft_current_term(n->r), .index = index});
    h_drain(n);
}

void h_ack_all(struct h_node *n)
{
    struct raft_status st = h_status(n);
    for (uint32_t i = 0; i < st.conf.n; i++) {
        if (st.conf.m[i].id == n->id)
            continue;
        h_step(n, (struct raft_msg){.type = RAFT_MSG_APPEND_RESP, .from = st.conf.m[i].id,
                                    .term = st.term, .index = st.last_index});
    }
    h_sync(n);
    CHECK_EQ(raft_commit_index(n->r), raft_last_index(n->r));
}

void h_heartbeat_resp(struct h_node *n, raft_id from, uint64_t ctx)
{
    h_step(n, (struct raft_msg){.type = RAFT_MSG_HEARTBEAT_RESP, .from = from,
                                .term = raft_current_term(n->r), .ctx = ctx});
    h_drain(n);
}

void h_propose(struct h_node *n, unsigned count, uint32_t size)
{
    static uint8_t buf[65536];
    assert_true(size <= sizeof(buf));
    for (unsigned i = 0; i < count; i++) {
        memset(buf, (int)(i & 0xff), size);
        CHECK_RV(raft_propose(n->r, buf, size, NULL, NULL), RAFT_OK);
    }
}

static struct h_node *node_by_id(struct h_node **nodes, size_t count, raft_id id)
{
    for (size_t i = 0; i < count; i++)
        if (nodes[i] && nodes[i]->id == id)
            return nodes[i];
    return NULL;
}

static void deliver(struct h_node **nodes, size_t count, const struct raft_msg *m, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct h_node *to = node_by_id(nodes, count, m[i].to);
        if (to)
            h_step(to, m[i]);
    }
}

void h_net_run(struct h_node **nodes, size_t count, unsigned rounds)
{
    for (unsigned round = 0; round < rounds; round++) {
        size_t sent = 0;
        for (size_t i = 0; i < count; i++) {
            if (!nodes[i])
                continue;
            h_sync(nodes[i]);
            const struct h_out *o = &nodes[i]->out;
            sent += o->n_msgs + o->n_ap;
            deliver(nodes, count, o->msgs, o->n_msgs);
            deliver(nodes, count, o->ap, o->n_ap);
        }
        if (sent == 0)
            return;
    }
}

/* ---- looking at output -------------------------------------------------- */

const struct raft_msg *h_nth(const struct h_node *n, enum h_where where, uint8_t type, raft_id to,
                             size_t k)
{
    const struct h_out *o = &n->out;
    if (where & H_NOW)
        for (size_t i = 0; i < o->n_msgs; i++)
            if (o->msgs[i].type == type && (to == RAFT_NONE || o->msgs[i].to == to) && k-- == 0)
                return &o->msgs[i];
    if (where & H_AFTER)
        for (size_t i = 0; i < o->n_ap; i++)
            if (o->ap[i].type == type && (to == RAFT_NONE || o->ap[i].to == to) && k-- == 0)
                return &o->ap[i];
    return NULL;
}

const struct raft_msg *h_find(const struct h_node *n, enum h_where where, uint8_t type, raft_id to)
{
    return h_nth(n, where, type, to, 0);
}

size_t h_count(const struct h_node *n, enum h_where where, uint8_t type, raft_id to)
{
    size_t k = 0;
    while (h_nth(n, where, type, to, k))
        k++;
    return k;
}

struct raft_status h_status(const struct h_node *n)
{
    struct raft_status st;
    raft_status(n->r, &st);
    return st;
}

struct raft_progress_status h_progress(const struct h_node *n, raft_id id)
{
    struct raft_status st = h_status(n);
    for (uint32_t i = 0; i < st.n_progress; i++)
        if (st.progress[i].id == id)
            return st.progress[i];
    fail_msg("[%s] node %llu has no progress for %llu", h_case ? h_case : "-",
             (unsigned long long)n->id, (unsigned long long)id);
    struct raft_progress_status none = {0};
    return none;
}

raft_term h_term_at(const struct h_node *n, raft_index i)
{
    struct raft_entry e;
    return raft_entry_at(n->r, i, &e) == 0 ? e.term : 0;
}

bool h_log_is(const struct h_node *n, const raft_term *terms, size_t count)
{
    if (raft_last_index(n->r) != count)
        return false;
    for (size_t i = 0; i < count; i++)
        if (h_term_at(n, i + 1) != terms[i])
            return false;
    return true;
}
