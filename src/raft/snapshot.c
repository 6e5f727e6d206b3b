/* snapshot.c - log compaction and InstallSnapshot (Raft §7).
 *
 * The core never holds snapshot bytes of its own: the application says which
 * index its latest durable snapshot covers, the core forgets the log before
 * it, and asks the application (via a SNAPSHOT message carrying only the
 * metadata) to ship that snapshot to a follower that fell behind it.
 */
#include "raft/raft_int.h"

#include <string.h>

/* A follower still loading the snapshot we sent it needs the entries after
 * it next.  Compacting past them would make it fetch and load a second,
 * newer snapshot (at 10 M keys a 1.1 GB transfer and 12-17 s of loading
 * cost a member add 90 s instead of 30).  So while it answers, the entry
 * after its snapshot stays.  The node ships the newest snapshot its store
 * holds, which can be one newer than ours (we learn of a snapshot only
 * once it is durable), so the hold covers a snapshot sent from either of
 * our last two, and no older: it spans two snapshot intervals at most, and
 * a follower that never finishes cannot make the log grow without bound. */
static raft_index compaction_floor(const struct raft *r, raft_index oldest, raft_index to)
{
    if (r->role != RAFT_LEADER)
        return to;
    for (unsigned i = 0; i < r->n_progress; i++) {
        const struct raft_progress *pr = &r->progress[i];
        if (pr->id == r->id || !pr->snap_sent || pr->snap_sent < oldest || pr->match >= pr->snap_sent)
            continue;
        if ((pr->recent_active || pr->active_prev) && pr->snap_sent < to)
            to = pr->snap_sent;
    }
    return to;
}

int raft_snapshot_taken(struct raft *r, raft_index index)
{
    if (index <= r->snapshot.index)
        return 0;
    if (index > r->applied)
        return RAFT_EINVAL;
    struct raft_snapshot_meta meta = {.index = index};
    if (raftlog_term(&r->log, index, &meta.term) != 0)
        return RAFT_ECOMPACTED;
    int rv = raft_conf_at(r, index, &meta.conf);
    if (rv)
        return rv;
    raft_index oldest = r->snapshot_before;
    r->snapshot_before = r->snapshot.index;
    r->snapshot = meta;
    raft_index to = index > r->cfg.snapshot_trailing ? index - r->cfg.snapshot_trailing : 0;
    raftlog_compact_to(&r->log, compaction_floor(r, oldest, to));
    return 0;
}

void raft_snapshot_meta(const struct raft *r, struct raft_snapshot_meta *out)
{
    *out = r->snapshot;
}

void snapshot_send(struct raft *r, struct raft_progress *pr)
{
    RAFT_ASSERT(r->snapshot.index >= r->log.prev_index && r->snapshot.index > 0);
    struct raft_msg *m = raft_msg_new(r, RAFT_MSG_SNAPSHOT, pr->id);
    m->snap = r->snapshot;
    m->index = r->snapshot.index;
    m->log_term = r->snapshot.term;
    /* Asked again while it loads the first one (a heartbeat answer
     * unblocked a probe it refused), the hold stays with the first. */
    if (!pr->snap_sent || pr->match >= pr->snap_sent)
        pr->snap_sent = r->snapshot.index;
    progress_become_snapshot(pr, r->snapshot.index);
}

void raft_snapshot_shipping(struct raft *r, raft_id to, raft_index index)
{
    struct raft_progress *pr = r->role == RAFT_LEADER ? progress_get(r, to) : NULL;
    if (!pr || !index)
        return;
    pr->snap_sent = index;
    /* Its acknowledgement of this one ends the SNAPSHOT state. */
    if (pr->state == PROGRESS_SNAPSHOT)
        pr->pending_snapshot = index;
}

void raft_report_snapshot(struct raft *r, raft_id to, bool ok)
{
    if (r->role != RAFT_LEADER)
        return;
    struct raft_progress *pr = progress_get(r, to);
    if (!pr || pr->state != PROGRESS_SNAPSHOT)
        return;
    if (!ok)
        pr->pending_snapshot = 0;
    progress_become_probe(pr);
    /* On success wait for the follower's own acknowledgement before
     * sending more; it is on its way. */
    pr->probe_sent = ok;
}

void snapshot_handle(struct raft *r, const struct raft_msg *m)
{
    const struct raft_snapshot_meta *s = &m->snap;
    struct raft_msg *out;
    if (s->index <= r->commit) {
        out = raft_msg_new(r, RAFT_MSG_APPEND_RESP, m->from);
        out->index = r->commit;
        return;
    }
    raft_term t;
    if (raftlog_term(&r->log, s->index, &t) == 0 && t == s->term) {
        /* We already hold everything it covers; just learn it is committed. */
        replication_commit_to(r, s->index);
        out = raft_msg_new(r, RAFT_MSG_APPEND_RESP, m->from);
        out->index = r->commit;
        return;
    }
    void *copy = NULL;
    if (m->snap_len) {
        if (!m->snap_data)
            return;
        if (!(copy = raft_realloc(NULL, m->snap_len))) {
            /* Not installed and not acknowledged: the leader's snapshot
             * timeout sends it again. */
            r->out_of_memory = true;
            return;
        }
        memcpy(copy, m->snap_data, m->snap_len);
    }
    free(r->received_snap_data);
    r->received_snap_data = copy;
    r->received_snap_len = m->snap_len;
    r->received_snap = *s;
    r->received_snap_pending = true;

    raftlog_reset(&r->log, s->index, s->term);
    r->snapshot = *s;
    r->commit = r->applied = r->persisted = s->index;
    r->next_to_persist = s->index + 1;
    conf_apply(r, &s->conf, 0, NULL);
    out = raft_msg_new(r, RAFT_MSG_APPEND_RESP, m->from);
    out->index = s->index;
}
