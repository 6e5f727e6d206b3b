/* replication.c - AppendEntries and heartbeats on both sides, and the
 * leader's commit rule (Raft §5.3, §5.4.2; thesis ch. 10 for pipelining).
 *
 * The leader never builds AppendEntries while handling an input: inputs only
 * move progress cursors, and raft_ready() turns every cursor that has
 * something to send into messages.  That is what batches many proposals into
 * one message, and what keeps message entry pointers valid (the log cannot
 * change between raft_ready() and raft_advance()).
 */
#include "raft/raft_int.h"

void replication_commit_to(struct raft *r, raft_index index)
{
    if (index > r->commit) {
        r->commit = index;
        conf_on_commit(r);
    }
}

/* Does this follower have something the leader should send now? */
static bool wants_send(const struct raft *r, const struct raft_progress *pr)
{
    if (pr->id == r->id || progress_paused(pr, &r->cfg))
        return false;
    if (pr->next - 1 < r->log.prev_index)
        return true; /* needs a snapshot */
    if (pr->next <= raftlog_last_index(&r->log))
        return true;
    /* a probe that finds where the follower's log matches ours */
    return pr->state == PROGRESS_PROBE && pr->match < raftlog_last_index(&r->log);
}

bool replication_has_sendable(const struct raft *r)
{
    for (unsigned i = 0; i < r->n_progress; i++)
        if (wants_send(r, &r->progress[i]))
            return true;
    return false;
}

static void send_to(struct raft *r, struct raft_progress *pr)
{
    /* Bounded: each round either fills an in-flight slot or returns. */
    for (unsigned guard = 0; guard <= RAFT_MAX_INFLIGHT && wants_send(r, pr); guard++) {
        if (pr->next - 1 < r->log.prev_index) {
            snapshot_send(r, pr);
            return;
        }
        raft_index prev = pr->next - 1;
        raft_term prev_term;
        int rv = raftlog_term(&r->log, prev, &prev_term);
        RAFT_ASSERT(rv == 0);
        uint64_t bytes;
        size_t n = raftlog_batch(&r->log, pr->next, r->cfg.max_msg_entries, r->cfg.max_msg_bytes,
                                 &bytes);
        struct raft_msg *m = raft_msg_new(r, RAFT_MSG_APPEND, pr->id);
        m->index = prev;
        m->log_term = prev_term;
        m->commit = r->commit;
        m->entries = n ? raftlog_get(&r->log, pr->next) : NULL;
        m->n_entries = (uint32_t)n;
        if (pr->state == PROGRESS_PROBE) {
            pr->probe_sent = true;
            return;
        }
        pr->next += n;
        progress_inflight_add(pr, pr->next - 1, bytes);
    }
}

void replication_send_all(struct raft *r)
{
    for (unsigned i = 0; i < r->n_progress; i++)
        send_to(r, &r->progress[i]);
}

void replication_broadcast_heartbeat(struct raft *r, uint64_t round)
{
    for (unsigned i = 0; i < r->n_progress; i++) {
        struct raft_progress *pr = &r->progress[i];
        if (pr->id == r->id)
            continue;
        struct raft_msg *m = raft_msg_new(r, RAFT_MSG_HEARTBEAT, pr->id);
        /* Never tell a follower to commit past what it is known to hold. */
        m->commit = pr->match < r->commit ? pr->match : r->commit;
        /* What we believe it holds, so that a follower which lost it says so
         * even when there is nothing new to append. */
        m->index = pr->match;
        m->ctx = round;
    }
}

static uint64_t heard_from(const struct raft *r, const struct raft_progress *pr)
{
    return pr->id == r->id || pr->recent_active;
}

void replication_tick(struct raft *r)
{
    r->election_elapsed++;
    r->heartbeat_elapsed++;
    transfer_tick(r);
    if (r->election_elapsed >= r->cfg.election_ticks) {
        r->election_elapsed = 0;
        if (r->cfg.check_quorum) {
            /* A leader cut off from a majority must stop acting as one, or
             * clients keep talking to it while the rest elect another. */
            if (!quorum_agreed(r, heard_from)) {
                election_become_follower(r, r->term, RAFT_NONE);
                return;
            }
            for (unsigned i = 0; i < r->n_progress; i++)
                if (r->progress[i].id != r->id) {
                    r->progress[i].active_prev = r->progress[i].recent_active;
                    r->progress[i].recent_active = false;
                }
        }
    }
    for (unsigned i = 0; i < r->n_progress; i++) {
        /* Lost AppendEntries leave a pipelined follower waiting for entries
         * we think are in flight; after a quiet election timeout fall back to
         * probing, which resends from the last acknowledged index. */
        struct raft_progress *pr = &r->progress[i];
        if (pr->id == r->id)
            continue;
        bool waiting = (pr->state == PROGRESS_REPLICATE && pr->inflight_count) || pr->state == PROGRESS_SNAPSHOT;
        if (!waiting) {
            pr->stall_ticks = 0;
            continue;
        }
        unsigned limit = r->cfg.election_ticks * (pr->state == PROGRESS_SNAPSHOT ? 4 : 1);
        if (++pr->stall_ticks >= limit)
            progress_become_probe(pr);
    }
    if (r->heartbeat_elapsed >= r->cfg.heartbeat_ticks) {
        r->heartbeat_elapsed = 0;
        /* For the lease each heartbeat is a round of its own: its answers
         * must say when they were sent, not when a read last asked. */
        if (r->cfg.lease_reads)
            readindex_lease_heartbeat(r);
        else
            replication_broadcast_heartbeat(r, r->read_round);
    }
}

static raft_index first_index_of_term(const struct raft *r, raft_index i, raft_term t)
{
    while (i - 1 > r->log.prev_index && raftlog_term_or0(&r->log, i - 1) == t)
        i--;
    return i;
}

static bool entries_valid(const struct raft_msg *m)
{
    raft_term prev = m->log_term;
    for (uint32_t k = 0; k < m->n_entries; k++) {
        const struct raft_entry *e = &m->entries[k];
        if (e->index != m->index + 1 + k || e->term < prev || e->term > m->term ||
            (e->len && !e->data))
            return false;
        prev = e->term;
    }
    return true;
}

static void truncate_from(struct raft *r, raft_index i)
{
    raftlog_truncate_from(&r->log, i);
    if (r->persisted >= i)
        r->persisted = i - 1;
    if (r->next_to_persist > i)
        r->next_to_persist = i;
    if (r->conf_index >= i)
        conf_recompute(r);
}

void replication_handle_append(struct raft *r, const struct raft_msg *m)
{
    struct raft_msg *out;
    if (!entries_valid(m))
        return;
    if (m->index < r->commit) {
        /* Everything up to our commit index is already settled. */
        out = raft_msg_new(r, RAFT_MSG_APPEND_RESP, m->from);
        out->index = r->commit;
        return;
    }
    raft_term t;
    if (raftlog_term(&r->log, m->index, &t) != 0 || t != m->log_term) {
        out = raft_msg_new(r, RAFT_MSG_APPEND_RESP, m->from);
        out->reject = true;
        out->index = m->index;
        raft_index last = raftlog_last_index(&r->log);
        if (m->index > last) {
            out->hint_index = last + 1;
        } else {
            /* Skip the whole conflicting term in one round trip (§5.3). */
            out->hint_term = t;
            out->hint_index = first_index_of_term(r, m->index, t);
        }
        return;
    }
    for (uint32_t k = 0; k < m->n_entries; k++) {
        const struct raft_entry *e = &m->entries[k];
        if (e->index <= raftlog_last_index(&r->log)) {
            if (raftlog_term_or0(&r->log, e->index) == e->term)
                continue;
            if (e->index <= r->commit)
                return; /* would rewrite a committed entry: refuse the message */
            truncate_from(r, e->index);
        }
        if (!raft_append_entry(r, e->term, e->type, e->data, e->len))
            return; /* out of memory: no acknowledgement, the leader resends */
    }
    raft_index last_new = m->index + m->n_entries;
    replication_commit_to(r, m->commit < last_new ? m->commit : last_new);
    out = raft_msg_new(r, RAFT_MSG_APPEND_RESP, m->from);
    out->index = last_new;
}

static raft_index last_index_of_term(const struct raft *r, raft_index upto, raft_term t)
{
    raft_index i = upto < raftlog_last_index(&r->log) ? upto : raftlog_last_index(&r->log);
    for (; i > r->log.prev_index; i--) {
        raft_term ti = raftlog_term_or0(&r->log, i);
        if (ti == t)
            return i;
        if (ti < t)
            break;
    }
    return 0;
}

void replication_handle_append_resp(struct raft *r, const struct raft_msg *m)
{
    struct raft_progress *pr = progress_get(r, m->from);
    if (r->role != RAFT_LEADER || !pr)
        return;
    pr->recent_active = true;
    if (m->reject) {
        raft_index hint = m->hint_index;
        if (m->hint_term) {
            raft_index j = last_index_of_term(r, m->index, m->hint_term);
            if (j)
                hint = j + 1;
        }
        if (hint == 0)
            hint = 1;
        if (m->ctx == RAFT_CTX_LOST) {
            /* A heartbeat's index is the match we held when we sent it, so
             * only its answer can prove entries lost.  An append rejection
             * may answer a probe sent before match moved past its hint (the
             * network delays and duplicates it); taken as proof it threw away
             * a good match (found by the simulator, seed 81703). */
            if (progress_lost_entries(pr, m->index, hint))
                progress_forget(pr, hint);
            return;
        }
        if (progress_maybe_decr(pr, m->index, hint) && pr->state == PROGRESS_REPLICATE)
            progress_become_probe(pr);
        return;
    }
    if (m->index > raftlog_last_index(&r->log))
        return; /* acknowledges entries we never sent: ignore */
    if (!progress_maybe_update(pr, m->index))
        return;
    if (pr->state == PROGRESS_PROBE)
        progress_become_replicate(pr);
    else if (pr->state == PROGRESS_SNAPSHOT && pr->match >= pr->pending_snapshot)
        progress_become_replicate(pr);
    else if (pr->state == PROGRESS_REPLICATE)
        progress_inflight_free_to(pr, m->index);
    replication_maybe_commit(r);
    /* Look it up again: a commit that completes a removal drops the departing
     * members, and the slots left move (conf_on_commit). */
    if (r->role == RAFT_LEADER && (pr = progress_get(r, m->from)))
        transfer_maybe_finish(r, pr);
}

void replication_handle_heartbeat(struct raft *r, const struct raft_msg *m)
{
    raft_index c = m->commit < raftlog_last_index(&r->log) ? m->commit : raftlog_last_index(&r->log);
    replication_commit_to(r, c);
    struct raft_msg *out = raft_msg_new(r, RAFT_MSG_HEARTBEAT_RESP, m->from);
    out->ctx = m->ctx;
    raft_index last = raftlog_last_index(&r->log);
    if (m->index > last) {
        /* We acknowledged entries we no longer hold (a wiped, restored or cut
         * disk): answer as to an append at that index, with where our log
         * really ends, so the leader probes from there. */
        out = raft_msg_new(r, RAFT_MSG_APPEND_RESP, m->from);
        out->reject = true;
        out->index = m->index;
        out->hint_index = last + 1;
        out->ctx = RAFT_CTX_LOST;
    }
}

void replication_handle_heartbeat_resp(struct raft *r, const struct raft_msg *m)
{
    struct raft_progress *pr = progress_get(r, m->from);
    if (r->role != RAFT_LEADER || !pr)
        return;
    pr->recent_active = true;
    pr->probe_sent = false;
    if (m->ctx > pr->read_ack)
        pr->read_ack = m->ctx;
    readindex_lease_ack(r, pr, m->ctx);
    readindex_release(r);
}

/* The leader counts itself only for what its own disk holds. */
static uint64_t durable_match(const struct raft *r, const struct raft_progress *pr)
{
    return pr->id == r->id ? r->persisted : pr->match;
}

bool replication_maybe_commit(struct raft *r)
{
    raft_index idx = quorum_agreed(r, durable_match);
    if (idx <= r->commit)
        return false;
#ifndef RAFT_BREAK_COMMIT_OLD_TERM
    /* §5.4.2: a replica count proves nothing for an older term's entry. */
    if (raftlog_term_or0(&r->log, idx) != r->term)
        return false;
#endif
    replication_commit_to(r, idx);
    if (!r->committed_in_term && raftlog_term_or0(&r->log, r->commit) == r->term) {
        r->committed_in_term = true;
        readindex_on_commit_in_term(r);
    }
    if (!conf_is_voter(r, r->id) && r->commit >= r->conf_index) {
        /* We managed our own removal to its commit (thesis 4.2.2); now go. */
        election_become_follower(r, r->term, RAFT_NONE);
    }
    return true;
}
