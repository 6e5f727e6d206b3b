/* conf.c - cluster membership: its wire form, one-server-at-a-time changes
 * (thesis §4.1), which configuration is in force at an index, and keeping
 * per-member progress in step with whatever configuration is newest (and
 * with the members it removes until that commits).
 */
#include "raft/raft_int.h"

#include <string.h>

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

size_t raft_conf_encode(const struct raft_conf *c, uint8_t *buf)
{
    uint32_t n = c->n;
    for (int i = 0; i < 4; i++)
        buf[i] = (uint8_t)(n >> (8 * i));
    size_t off = 4;
    for (uint32_t i = 0; i < n; i++) {
        put_u64(buf + off, c->m[i].id);
        buf[off + 8] = c->m[i].role;
        off += 9;
    }
    return off;
}

int raft_conf_decode(const uint8_t *buf, size_t len, struct raft_conf *c)
{
    if (!buf || len < 4)
        return RAFT_EINVAL;
    uint32_t n = (uint32_t)buf[0] | (uint32_t)buf[1] << 8 | (uint32_t)buf[2] << 16 |
                 (uint32_t)buf[3] << 24;
    if (n > RAFT_MAX_MEMBERS || len != 4 + (size_t)n * 9)
        return RAFT_EINVAL;
    struct raft_conf out;
    memset(&out, 0, sizeof(out));
    out.n = n;
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *p = buf + 4 + i * 9;
        out.m[i].id = get_u64(p);
        out.m[i].role = p[8];
        if (out.m[i].id == RAFT_NONE || (out.m[i].role != RAFT_VOTER && out.m[i].role != RAFT_LEARNER))
            return RAFT_EINVAL;
        for (uint32_t j = 0; j < i; j++)
            if (out.m[j].id == out.m[i].id)
                return RAFT_EINVAL;
    }
    *c = out;
    return 0;
}

const struct raft_member *raft_conf_find(const struct raft_conf *c, raft_id id)
{
    for (uint32_t i = 0; i < c->n; i++)
        if (c->m[i].id == id)
            return &c->m[i];
    return NULL;
}

unsigned raft_conf_voters(const struct raft_conf *c)
{
    unsigned n = 0;
    for (uint32_t i = 0; i < c->n; i++)
        n += c->m[i].role == RAFT_VOTER;
    return n;
}

bool conf_is_voter(const struct raft *r, raft_id id)
{
    const struct raft_member *mb = raft_conf_find(&r->conf, id);
    return mb && mb->role == RAFT_VOTER;
}

/* The newest configuration entry at or before index, else the one the latest
 * snapshot carried; returns the entry's index, 0 for the snapshot's. */
static raft_index conf_newest(const struct raft *r, raft_index index, struct raft_conf *out)
{
    for (raft_index i = index; i > r->log.prev_index; i--) {
        const struct raft_entry *e = raftlog_get(&r->log, i);
        if (e->type == RAFT_ENTRY_CONF && raft_conf_decode(e->data, e->len, out) == 0)
            return i;
    }
    *out = r->snapshot.conf;
    return 0;
}

int raft_conf_at(const struct raft *r, raft_index index, struct raft_conf *out)
{
    if (index < r->snapshot.index || index > raftlog_last_index(&r->log))
        return index < r->snapshot.index ? RAFT_ECOMPACTED : RAFT_EUNAVAIL;
    /* At or after the newest configuration entry (or with none in the log:
     * conf_index 0), it is the one in force.  Scanning back instead walked
     * the whole log since the last compaction, twice per snapshot: 2 M
     * entries, 10 ms of the loop at 10 M keys. */
    if (index >= r->conf_index) {
        *out = r->conf;
        return 0;
    }
    conf_newest(r, index, out);
    return 0;
}

/* Progress for id, kept from before when it had one. */
static void track(struct raft *r, raft_id id, uint8_t role, bool departing)
{
    struct raft_progress *pr = progress_get(r, id);
    if (!pr) {
        RAFT_ASSERT(r->n_progress < RAFT_MAX_PROGRESS);
        pr = &r->progress[r->n_progress++];
        progress_reset(pr, raftlog_last_index(&r->log) + 1);
        pr->id = id;
        /* Give a newcomer one check-quorum round to answer before its
         * silence can count against the leader. */
        pr->recent_active = true;
    }
    pr->role = role;
    pr->departing = departing;
    r->n_departing += departing;
}

static bool departs(const struct raft *r, const struct raft_conf *prev, raft_id id)
{
    return id != r->id && raft_conf_find(prev, id) && !raft_conf_find(&r->conf, id);
}

/* Progress for every member of r->conf, and for every member of prev (the
 * configuration r->conf replaced, while r->conf is not committed) that
 * r->conf drops.
 *
 * Until its removal commits, such a member is still one as far as the
 * committed log goes: it may be needed to elect a leader (thesis 4.2.2), and
 * it campaigns when it hears from nobody.  A voter that no leader talked to
 * any more deposed every leader with its RequestVotes of ever higher terms
 * when neither pre-vote nor check-quorum was on (simulator seed 40717,
 * FINDINGS 9).  So the leader replicates to it, as to a learner that counts
 * for no quorum, until the change commits: it keeps hearing from the leader
 * and receives the entry that removes it, after which it no longer
 * campaigns.  etcd gets the same by applying membership at commit.  Not for
 * ourselves: a leader removing itself has nobody to tell. */
static void track_members(struct raft *r, const struct raft_conf *prev)
{
    unsigned kept = 0;
    for (unsigned i = 0; i < r->n_progress; i++) {
        raft_id id = r->progress[i].id;
        if (!raft_conf_find(&r->conf, id) && !departs(r, prev, id))
            continue;
        if (kept != i)
            r->progress[kept] = r->progress[i];
        kept++;
    }
    r->n_progress = kept;
    r->n_departing = 0;
    for (uint32_t i = 0; i < r->conf.n; i++)
        track(r, r->conf.m[i].id, r->conf.m[i].role, false);
    for (uint32_t i = 0; i < prev->n; i++)
        if (departs(r, prev, prev->m[i].id))
            track(r, prev->m[i].id, RAFT_LEARNER, true);
}

void conf_apply(struct raft *r, const struct raft_conf *c, raft_index index,
                const struct raft_conf *before)
{
    /* A leader proposes a change only once the one before has committed, so
     * the configuration before an uncommitted one is the committed one, even
     * where our own commit index lags (a restarted node knows little).  An
     * append knows it (before): looking it up walks back to the last
     * compaction, millions of entries at 10 M keys, 18 ms of the loop. */
    struct raft_conf prev = {.n = 0};
    if (index > r->commit) {
        if (before)
            prev = *before;
        else
            conf_newest(r, index - 1, &prev);
    }
    r->conf = *c;
    r->conf_index = index;
    track_members(r, &prev);
    if (r->role == RAFT_LEADER) {
        if (r->transferee != RAFT_NONE && !conf_is_voter(r, r->transferee))
            transfer_abort(r);
        replication_maybe_commit(r); /* the quorum may have shrunk */
    }
}

void conf_on_commit(struct raft *r)
{
    /* Committed, the newest configuration is the only one: nobody departs. */
    if (r->n_departing && r->commit >= r->conf_index) {
        struct raft_conf none = {.n = 0};
        track_members(r, &none);
    }
}

void conf_recompute(struct raft *r)
{
    struct raft_conf c;
    raft_index at = conf_newest(r, raftlog_last_index(&r->log), &c);
    conf_apply(r, &c, at, NULL);
}

int conf_change_make(const struct raft *r, const struct raft_conf_change *cc, struct raft_conf *out)
{
    if (!cc || cc->id == RAFT_NONE)
        return RAFT_EINVAL;
    *out = r->conf;
    struct raft_member *mb = NULL;
    for (uint32_t i = 0; i < out->n; i++)
        if (out->m[i].id == cc->id)
            mb = &out->m[i];
    switch (cc->op) {
    case RAFT_CONF_ADD_LEARNER:
    case RAFT_CONF_ADD_VOTER:
        if (mb || out->n >= RAFT_MAX_MEMBERS)
            return RAFT_EINVAL;
        out->m[out->n].id = cc->id;
        out->m[out->n].role = cc->op == RAFT_CONF_ADD_VOTER ? RAFT_VOTER : RAFT_LEARNER;
        out->n++;
        return 0;
    case RAFT_CONF_PROMOTE: {
        if (!mb || mb->role != RAFT_LEARNER)
            return RAFT_EINVAL;
        /* A voter that cannot keep up would stall commits (thesis 4.2.1). */
        const struct raft_progress *pr = progress_get((struct raft *)r, cc->id);
        if (!pr || pr->match + r->cfg.learner_max_lag < raftlog_last_index(&r->log))
            return RAFT_ELAGGING;
        mb->role = RAFT_VOTER;
        return 0;
    }
    case RAFT_CONF_REMOVE:
        if (!mb)
            return RAFT_EINVAL;
        if (mb->role == RAFT_VOTER && raft_conf_voters(out) == 1)
            return RAFT_EINVAL; /* the last voter cannot leave */
        *mb = out->m[out->n - 1];
        out->n--;
        return 0;
    default:
        return RAFT_EINVAL;
    }
}
