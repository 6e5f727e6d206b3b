/* progress.c - what the leader knows about each follower's log.
 *
 * A follower is probed (one AppendEntries at a time until we find where its
 * log matches ours), then replicated to (optimistic, pipelined, bounded by
 * an in-flight window), or sent a snapshot when what it needs was compacted.
 */
#include "raft/raft_int.h"

static void inflight_clear(struct raft_progress *pr)
{
    pr->inflight_head = pr->inflight_count = 0;
    pr->inflight_bytes = 0;
}

struct raft_progress *progress_get(struct raft *r, raft_id id)
{
    for (unsigned i = 0; i < r->n_progress; i++)
        if (r->progress[i].id == id)
            return &r->progress[i];
    return NULL;
}

void progress_reset(struct raft_progress *pr, raft_index next)
{
    pr->state = PROGRESS_PROBE;
    pr->probe_sent = false;
    pr->recent_active = false;
    pr->active_prev = false;
    pr->match = 0;
    pr->next = next;
    pr->pending_snapshot = 0;
    pr->snap_sent = 0;
    pr->read_ack = 0;
    pr->lease_tick = 0;
    pr->stall_ticks = 0;
    inflight_clear(pr);
}

void progress_become_probe(struct raft_progress *pr)
{
    /* Leaving SNAPSHOT, the follower holds at least the snapshot. */
    raft_index from = pr->match + 1;
    if (pr->state == PROGRESS_SNAPSHOT && pr->pending_snapshot + 1 > from)
        from = pr->pending_snapshot + 1;
    pr->state = PROGRESS_PROBE;
    pr->next = from;
    pr->probe_sent = false;
    pr->pending_snapshot = 0;
    pr->stall_ticks = 0;
    inflight_clear(pr);
}

void progress_become_replicate(struct raft_progress *pr)
{
    pr->state = PROGRESS_REPLICATE;
    pr->next = pr->match + 1;
    pr->probe_sent = false;
    pr->pending_snapshot = 0;
    pr->stall_ticks = 0;
    inflight_clear(pr);
}

void progress_become_snapshot(struct raft_progress *pr, raft_index snap_index)
{
    pr->state = PROGRESS_SNAPSHOT;
    pr->pending_snapshot = snap_index;
    pr->probe_sent = false;
    pr->stall_ticks = 0;
    inflight_clear(pr);
}

/* A successful AppendEntries reply for index.  False if it tells us nothing
 * new (a duplicate or reordered reply). */
bool progress_maybe_update(struct raft_progress *pr, raft_index index)
{
    bool updated = false;
    if (index > pr->match) {
        pr->match = index;
        pr->stall_ticks = 0;
        updated = true;
    }
    if (pr->next < index + 1)
        pr->next = index + 1;
    pr->probe_sent = false;
    return updated;
}

/* A rejected AppendEntries whose previous entry was `rejected`.  False when
 * the rejection is stale (answers a message we have already moved past). */
bool progress_maybe_decr(struct raft_progress *pr, raft_index rejected, raft_index hint_next)
{
    if (pr->state == PROGRESS_REPLICATE) {
        if (rejected <= pr->match)
            return false;
        pr->next = pr->match + 1;
        return true;
    }
    if (pr->next == 0 || pr->next - 1 != rejected)
        return false;
    raft_index next = hint_next < rejected ? hint_next : rejected;
    if (next < pr->match + 1)
        next = pr->match + 1;
    if (next < 1)
        next = 1;
    /* Probe again at once only when the answer moved us.  A follower that
     * keeps giving the same answer then costs one probe per heartbeat
     * response instead of a reply-driven hot loop. */
    if (next != pr->next)
        pr->probe_sent = false;
    pr->next = next;
    return true;
}

bool progress_lost_entries(const struct raft_progress *pr, raft_index rejected, raft_index hint_next)
{
    /* Asked only about a heartbeat's answer (RAFT_CTX_LOST): a rejection of
     * a match at or past ours whose retry point is at or below it, so the
     * follower no longer holds entries it acknowledged.  A heartbeat sent
     * under an older, lower match is only late.  An append rejection is never
     * evidence: a probe above match, sent before match moved, is answered
     * with a hint that the match has since passed.  A success below match
     * cannot be told apart from a reordered acknowledgement either. */
    return rejected >= pr->match && hint_next <= pr->match;
}

void progress_forget(struct raft_progress *pr, raft_index next)
{
    progress_become_probe(pr);
    pr->match = 0;
    pr->next = next;
}

bool progress_inflight_full(const struct raft_progress *pr, const struct raft_config *cfg)
{
    uint32_t cap = cfg->max_inflight < RAFT_MAX_INFLIGHT ? cfg->max_inflight : RAFT_MAX_INFLIGHT;
    return pr->inflight_count >= cap ||
           (cfg->max_inflight_bytes && pr->inflight_bytes >= cfg->max_inflight_bytes);
}

void progress_inflight_add(struct raft_progress *pr, raft_index last, uint64_t bytes)
{
    RAFT_ASSERT(pr->inflight_count < RAFT_MAX_INFLIGHT);
    unsigned slot = (pr->inflight_head + pr->inflight_count) % RAFT_MAX_INFLIGHT;
    pr->inflight[slot] = last;
    pr->inflight_size[slot] = bytes;
    pr->inflight_bytes += bytes;
    pr->inflight_count++;
}

void progress_inflight_free_to(struct raft_progress *pr, raft_index index)
{
    while (pr->inflight_count && pr->inflight[pr->inflight_head] <= index) {
        pr->inflight_bytes -= pr->inflight_size[pr->inflight_head];
        pr->inflight_head = (pr->inflight_head + 1) % RAFT_MAX_INFLIGHT;
        pr->inflight_count--;
    }
}

bool progress_paused(const struct raft_progress *pr, const struct raft_config *cfg)
{
    switch (pr->state) {
    case PROGRESS_PROBE:
        return pr->probe_sent;
    case PROGRESS_REPLICATE:
        return progress_inflight_full(pr, cfg);
    default:
        return true;
    }
}
