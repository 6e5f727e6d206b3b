/* replica_fix.c - see replica_fix.h. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kv/kv.h"
#include "replica_fix.h"

/* ---- storage in memory: writes land at once, durable when told -------- */

static raft_index mem_first(const struct mem *m)
{
    return m->has_snap ? m->snap.index + 1 : 1;
}

static void mem_hard_state(void *arg, struct raft_hard_state *hs)
{
    *hs = ((struct mem *)arg)->hs;
}

static raft_index mem_last_index(void *arg)
{
    struct mem *m = arg;
    return mem_first(m) + m->n - 1;
}

static int mem_read(void *arg, raft_index lo, raft_index hi, struct raft_entry **ents, size_t *n)
{
    struct mem *m = arg;
    size_t k = (size_t)(hi - lo + 1);
    struct raft_entry *e = malloc(k * (sizeof(*e) + 64));
    uint8_t *p = (uint8_t *)(e + k);
    for (size_t i = 0; i < k; i++) {
        const struct raft_entry *src = &m->ents[lo - mem_first(m) + i];
        e[i] = *src;
        memcpy(p, src->data, src->len);
        e[i].data = p;
        p += 64;
    }
    *ents = e;
    *n = k;
    return 0;
}

static int mem_snapshot_load(void *arg, struct raft_snapshot_meta *meta, void **data, size_t *len)
{
    struct mem *m = arg;
    if (!m->has_snap)
        return -ENOENT;
    *meta = m->snap;
    *data = malloc(m->snap_len);
    memcpy(*data, m->snap_data, m->snap_len);
    *len = m->snap_len;
    return 0;
}

static int mem_append(void *arg, const struct raft_hard_state *hs, const struct raft_entry *ents,
                      size_t n, uint64_t *seq)
{
    struct mem *m = arg;
    if (hs)
        m->hs = *hs;
    if (n) {
        m->n = (size_t)(ents[0].index - mem_first(m));
        for (size_t i = 0; i < n; i++, m->n++) {
            assert_true(m->n < MEM_MAX && ents[i].len <= 64);
            m->ents[m->n] = ents[i];
            memcpy(m->data[m->n], ents[i].data, ents[i].len);
            m->ents[m->n].data = m->data[m->n];
        }
    }
    *seq = ++m->seq;
    return 0;
}

/* The snapshot covers the log up to meta->index: drop that part (the
 * replica compacts later; doing it here keeps the array simple). */
static int mem_snapshot_save(void *arg, const struct raft_snapshot_meta *meta, const void *data,
                             size_t len, uint64_t *seq)
{
    struct mem *m = arg;
    size_t drop = (size_t)(meta->index - mem_first(m) + 1);
    memmove(m->ents, m->ents + drop, (m->n - drop) * sizeof(m->ents[0]));
    memmove(m->data, m->data + drop, (m->n - drop) * sizeof(m->data[0]));
    m->n -= drop;
    for (size_t i = 0; i < m->n; i++)
        m->ents[i].data = m->data[i];
    free(m->snap_data);
    m->snap_data = malloc(len);
    memcpy(m->snap_data, data, len);
    m->snap_len = len;
    m->snap = *meta;
    m->has_snap = true;
    *seq = ++m->seq;
    return 0;
}

static int mem_compact(void *arg, raft_index upto, uint64_t *seq)
{
    (void)upto;
    *seq = ++((struct mem *)arg)->seq;
    return 0;
}

static int mem_incarnations_load(void *arg, struct replica_incarnations *out)
{
    struct mem *m = arg;
    if (!m->has_incs)
        return -ENOENT;
    *out = m->incs;
    return 0;
}

static int mem_incarnations_save(void *arg, const struct replica_incarnations *inc, uint64_t *seq)
{
    struct mem *m = arg;
    m->incs = *inc;
    m->has_incs = true;
    *seq = ++m->seq;
    return 0;
}

/* ---- a replica under test ----------------------------------------------- */

static void on_send(void *arg, const struct raft_msg *m)
{
    struct fix *f = arg;
    if (f->n_sent < SENT_MAX)
        f->sent[f->n_sent++] = *m;
}
static void on_applied(void *arg, const struct raft_entry *e, const struct kv_result *r)
{
    (void)e, (void)r;
    ((struct fix *)arg)->n_applied++;
}
static void on_read(void *arg, const struct raft_read_state *rs) { (void)arg, (void)rs; }
static void on_soft(void *arg, raft_id l, enum raft_role r, raft_term t)
{
    (void)arg, (void)l, (void)r, (void)t;
}

void fix_open(struct fix *f, raft_id id, bool with_file)
{
    struct replica_config cfg;
    replica_config_defaults(&cfg, id);
    cfg.raft.seed = 7;
    cfg.raft.pre_vote = false;
    cfg.raft.check_quorum = false; /* no leader stickiness: votes are the point here */
    cfg.snapshot_entries = 3; /* node 1: no stagger */
    cfg.apply_per_turn = f->apply_per_turn;
    struct replica_hooks hooks = {.arg = f, .send = on_send, .applied = on_applied,
                                  .read_state = on_read, .soft_state = on_soft};
    struct replica_storage io = {.arg = &f->mem, .hard_state = mem_hard_state,
                                 .last_index = mem_last_index, .read = mem_read,
                                 .snapshot_load = mem_snapshot_load, .append = mem_append,
                                 .snapshot_save = mem_snapshot_save, .compact = mem_compact};
    if (with_file) {
        io.incarnations_load = mem_incarnations_load;
        io.incarnations_save = mem_incarnations_save;
    }
    char err[256];
    assert_int_equal(replica_open(&f->rp, &cfg, &hooks, &io, err, sizeof(err)), 0);
    f->id = id;
    f->n_sent = 0;
}

void fix_sync(struct fix *f)
{
    for (int round = 0; round < 2; round++) { /* the second: what the first wrote */
        replica_process(f->rp);
        raft_index last = mem_last_index(&f->mem);
        struct raft_entry e;
        raft_term term = replica_entry_at(f->rp, last, &e) == 0 ? e.term
                         : f->mem.has_snap                      ? f->mem.snap.term
                                                                : 0;
        struct replica_durable d = {.seq = f->mem.seq, .index = last, .term = term};
        replica_durable(f->rp, &d);
    }
}

static uint8_t ebuf[MEM_MAX][64];

struct raft_entry conf_entry(raft_index index, raft_term term)
{
    struct raft_conf c = {.n = 3, .m = {{1, RAFT_VOTER}, {2, RAFT_VOTER}, {3, RAFT_VOTER}}};
    size_t len = raft_conf_encode(&c, ebuf[index]);
    return (struct raft_entry){.index = index, .term = term, .type = RAFT_ENTRY_CONF,
                               .data = ebuf[index], .len = (uint32_t)len};
}

struct raft_entry noop_entry(raft_index index, raft_term term)
{
    return (struct raft_entry){.index = index, .term = term, .type = RAFT_ENTRY_NORMAL};
}

struct raft_entry record_entry(raft_index index, raft_term term, raft_id member,
                                      uint64_t inc)
{
    struct kv_command c = {.op = KV_OP_RECORD_INCARNATION, .member_id = member,
                           .incarnation = inc, .time_ms = 1};
    size_t len = 0;
    assert_int_equal(kv_command_encode(&c, ebuf[index], 64, &len), KV_OK);
    return (struct raft_entry){.index = index, .term = term, .type = RAFT_ENTRY_NORMAL,
                               .data = ebuf[index], .len = (uint32_t)len};
}

void fix_append(struct fix *f, raft_id from, raft_term term, raft_index prev,
                   raft_term prev_term, const struct raft_entry *ents, uint32_t n,
                   raft_index commit)
{
    struct raft_msg m = {.type = RAFT_MSG_APPEND, .from = from, .term = term,
                         .index = prev, .log_term = prev_term, .commit = commit,
                         .entries = ents, .n_entries = n};
    m.to = f->id;
    assert_int_equal(replica_step_from(f->rp, 0, &m), 0);
    fix_sync(f);
}

int ask_vote(struct fix *f, uint8_t type, raft_id from, uint64_t inc, raft_term term,
                    raft_index index, raft_term log_term)
{
    struct raft_msg m = {.type = type, .from = from, .term = term, .index = index,
                         .log_term = log_term};
    m.to = f->id;
    int rv = replica_step_from(f->rp, inc, &m);
    fix_sync(f);
    return rv;
}

bool granted(const struct fix *f, raft_id to)
{
    for (size_t i = 0; i < f->n_sent; i++)
        if (f->sent[i].type == RAFT_MSG_VOTE_RESP && f->sent[i].to == to && !f->sent[i].reject)
            return true;
    return false;
}

void fix_close(struct fix *f)
{
    replica_close(f->rp);
    f->rp = NULL;
}

void fix_free(struct fix *f)
{
    fix_close(f);
    free(f->mem.snap_data);
    free(f);
}

