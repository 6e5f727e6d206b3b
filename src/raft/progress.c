/* progress.c - what the leader knows about each follower's log.
 *
 * A follower is probed (one AppendEntries at a time until we find where its
 * log matches ours), then replicated to (optimistic, pipelined, bounded by
 * an in-flight window), or sent a snapshot when what it needs was compacted.
 */
#include "raft/raft_int.h"

void progress_reset(struct raft_progress *pr, raft_index next)
{
    pr->state = PR_PROBE;
    pr->probe_sent = false;
    pr->recent_active = false;
    pr->match = 0;
    pr->next = next;
    pr->pending_snapshot = 0;
    pr->read_ack = 0;
    pr->stall_ticks = 0;
    pr->in_start = pr->in_count = 0;
}

void progress_become_probe(struct raft_progress *pr)
{
    /* Leaving SNAPSHOT, the follower holds at least the snapshot. */
    raft_index from = pr->match + 1;
    if (pr->state == PR_SNAPSHOT && pr->pending_snapshot + 1 > from)
        from = pr->pending_snapshot + 1;
    pr->state = PR_PROBE;
    pr->next = from;
    pr->probe_sent = false;
    pr->pending_snapshot = 0;
    pr->stall_ticks = 0;
    pr->in_start = pr->in_count = 0;
}

void progress_become_replicate(struct raft_progress *pr)
{
    pr->state = PR_REPLICATE;
    pr->next = pr->match + 1;
    pr->probe_sent = false;
    pr->pending_snapshot = 0;
    pr->stall_ticks = 0;
    pr->in_start = pr->in_count = 0;
}

void progress_become_snapshot(struct raft_progress *pr, raft_index snap_index)
{
    pr->state = PR_SNAPSHOT;
    pr->pending_snapshot = snap_index;
    pr->probe_sent = false;
    pr->stall_ticks = 0;
    pr->in_start = pr->in_count = 0;
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
    if (pr->state == PR_REPLICATE) {
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
    pr->next = next;
    pr->probe_sent = false;
    return true;
}

bool progress_inflight_full(const struct raft_progress *pr, uint32_t max_inflight)
{
    uint32_t cap = max_inflight < RAFT_MAX_INFLIGHT ? max_inflight : RAFT_MAX_INFLIGHT;
    return pr->in_count >= cap;
}

void progress_inflight_add(struct raft_progress *pr, raft_index last)
{
    RAFT_ASSERT(pr->in_count < RAFT_MAX_INFLIGHT);
    pr->inflight[(pr->in_start + pr->in_count) % RAFT_MAX_INFLIGHT] = last;
    pr->in_count++;
}

void progress_inflight_free_to(struct raft_progress *pr, raft_index index)
{
    while (pr->in_count && pr->inflight[pr->in_start] <= index) {
        pr->in_start = (pr->in_start + 1) % RAFT_MAX_INFLIGHT;
        pr->in_count--;
    }
}

bool progress_paused(const struct raft_progress *pr, uint32_t max_inflight)
{
    switch (pr->state) {
    case PR_PROBE:
        return pr->probe_sent;
    case PR_REPLICATE:
        return progress_inflight_full(pr, max_inflight);
    default:
        return true;
    }
}
