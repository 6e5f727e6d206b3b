/* readindex.c - linearizable reads without writing the log (thesis §6.4).
 *
 * A read asked at the leader (or forwarded by a follower) is stamped with the
 * commit index and the next heartbeat round.  Once a majority has answered
 * that round, nobody else can have been leader with a newer commit, so the
 * state machine may serve the read as soon as it has applied that index.
 * Reads that arrive together share one round: raft_ready() broadcasts at
 * most one round per batch, however many reads wait on it.
 *
 * With cfg.lease_reads (thesis §6.4.1) a leader skips the round while its
 * lease holds: a quorum acknowledged heartbeats it sent less than
 * election_ticks - 1 - lease_drift_ticks ticks ago.  Each of those voters
 * then refuses to vote for anybody else until a whole election timeout of
 * its own ticks has passed since it received one (leader stickiness,
 * election_in_lease), so no other leader can exist before the lease ends.
 * The "- 1" is the tick granularity: a tick count says only that the time
 * lies somewhere within that tick.
 */
#include "raft/raft_int.h"

#include <string.h>

static struct raft_pending_read *reads_at(struct raft *r, size_t i)
{
    return &((struct raft_pending_read *)r->reads.items)[i];
}

static void emit(struct raft *r, const struct raft_pending_read *p, int err)
{
    if (p->from == RAFT_NONE || p->from == r->id) {
        struct raft_read_state *rs = raft_vec_push_or_discard(r, &r->read_results, sizeof(*rs));
        rs->ctx = p->ctx;
        rs->index = err ? 0 : p->index;
        rs->err = err;
        return;
    }
    struct raft_msg *m = raft_msg_new(r, RAFT_MSG_READ_INDEX_RESP, p->from);
    m->ctx = p->ctx;
    m->index = err ? 0 : p->index;
    m->reject = err != 0;
}

int readindex_request(struct raft *r, raft_id from, uint64_t ctx)
{
    if (readindex_lease_valid(r)) {
        struct raft_pending_read now = {.ctx = ctx, .from = from, .index = r->commit};
        r->counters.lease_reads++;
        emit(r, &now, RAFT_OK);
        return 0;
    }
    struct raft_pending_read *p = raft_vec_push(&r->reads, sizeof(*p));
    if (!p) {
        r->out_of_memory = true;
        return RAFT_ENOMEM;
    }
    p->ctx = ctx;
    p->from = from;
    if (r->committed_in_term) {
        p->index = r->commit;
        p->round = r->read_round + 1;
        r->read_round_wanted = true;
    }
    /* else: our commit index may be stale until the no-op of this term
     * commits; readindex_on_commit_in_term() stamps it then. */
    readindex_release(r);
    return 0;
}

void readindex_on_commit_in_term(struct raft *r)
{
    for (size_t i = 0; i < r->reads.n; i++) {
        struct raft_pending_read *p = reads_at(r, i);
        if (p->index == 0) {
            p->index = r->commit;
            p->round = r->read_round + 1;
            r->read_round_wanted = true;
        }
    }
    readindex_release(r);
}

static uint64_t round_acked(const struct raft *r, const struct raft_progress *pr)
{
    return pr->id == r->id ? r->read_round : pr->read_ack;
}

/* The newest round a quorum of voters (us included) has acknowledged. */
static uint64_t quorum_round(const struct raft *r)
{
    return quorum_agreed(r, round_acked);
}

/* Only one round is in flight at a time: reads that arrive meanwhile wait
 * for it to finish and then share the next one.  Under load this halves the
 * heartbeats a leader sends and answers per read, and a lost round cannot
 * stall anything: the periodic heartbeat re-sends the current round. */
bool readindex_round_due(const struct raft *r)
{
    return r->read_round_wanted && quorum_round(r) >= r->read_round;
}

/* A new round goes out; every read stamped so far waits for this one at
 * the latest (they carry read_round + 1), so none wants another yet. */
static void new_round(struct raft *r)
{
    r->read_round++;
    r->read_round_wanted = false;
    unsigned slot = (unsigned)(r->read_round % RAFT_LEASE_RING);
    r->lease_sent[slot].round = r->read_round;
    r->lease_sent[slot].tick = r->ticks + 1;
    replication_broadcast_heartbeat(r, r->read_round);
}

void readindex_start_round(struct raft *r)
{
    r->counters.read_index_rounds++;
    new_round(r);
    readindex_release(r);
}

void readindex_lease_heartbeat(struct raft *r)
{
    new_round(r);
}

void readindex_lease_ack(struct raft *r, struct raft_progress *pr, uint64_t round)
{
    if (!r->cfg.lease_reads || round == 0)
        return;
    unsigned slot = (unsigned)(round % RAFT_LEASE_RING);
    /* Overwritten: a round this old dates nothing we still need. */
    if (r->lease_sent[slot].round != round)
        return;
    if (r->lease_sent[slot].tick > pr->lease_tick)
        pr->lease_tick = r->lease_sent[slot].tick;
}

static uint64_t lease_heard(const struct raft *r, const struct raft_progress *pr)
{
    return pr->id == r->id ? r->ticks + 1 : pr->lease_tick;
}

bool readindex_lease_valid(const struct raft *r)
{
    if (!r->cfg.lease_reads || r->role != RAFT_LEADER || !r->committed_in_term)
        return false;
    /* A transfer target campaigns on TimeoutNow and the voters waive their
     * stickiness for it, so it may win while our lease runs: no lease while
     * a transfer is under way, nor for the rest of a term in which a
     * TimeoutNow went out (a delayed one may still arrive). */
#ifndef RAFT_BREAK_LEASE
#ifndef RAFT_BREAK_LEASE_TRANSFER /* test-only: a lease that outlives a TimeoutNow */
    if (r->transferee != RAFT_NONE || r->lease_off_term == r->term)
        return false;
#endif
    uint64_t since = quorum_agreed(r, lease_heard);
    unsigned window = r->cfg.election_ticks - 1 - r->cfg.lease_drift_ticks;
#else
    /* test-only: a lease that ignores transfers and outlives the voters'
     * stickiness; the simulator must catch the stale reads */
    uint64_t since = quorum_agreed(r, lease_heard);
    unsigned window = 3 * r->cfg.election_ticks;
#endif
    return since != 0 && r->ticks + 1 - since < window;
}

void readindex_release(struct raft *r)
{
    if (r->role != RAFT_LEADER || r->reads.n == 0)
        return;
    uint64_t acked = quorum_round(r);
    size_t k = 0;
    /* FIFO: rounds never decrease along the queue, and unstamped reads
     * (index 0) can only sit at its front. */
    while (k < r->reads.n) {
        struct raft_pending_read *p = reads_at(r, k);
        if (p->index == 0 || p->round == 0 || p->round > r->read_round || p->round > acked)
            break;
        emit(r, p, RAFT_OK);
        k++;
    }
    if (k) {
        memmove(r->reads.items, reads_at(r, k), (r->reads.n - k) * sizeof(struct raft_pending_read));
        r->reads.n -= k;
    }
}

void readindex_fail_all(struct raft *r, int err)
{
    for (size_t i = 0; i < r->reads.n; i++)
        emit(r, reads_at(r, i), err);
    r->reads.n = 0;
}

int readindex_handle_request(struct raft *r, const struct raft_msg *m)
{
    if (r->role == RAFT_LEADER)
        return readindex_request(r, m->from, m->ctx);
    /* Not (or no longer) the leader: say so at once rather than let the
     * asker wait out its timeout. */
    struct raft_msg *out = raft_msg_new(r, RAFT_MSG_READ_INDEX_RESP, m->from);
    out->reject = true;
    out->ctx = m->ctx;
    return 0;
}

void readindex_handle_resp(struct raft *r, const struct raft_msg *m)
{
    struct raft_read_state *rs = raft_vec_push_or_discard(r, &r->read_results, sizeof(*rs));
    rs->ctx = m->ctx;
    rs->index = m->reject ? 0 : m->index;
    rs->err = m->reject ? RAFT_ELOSTLEADER : RAFT_OK;
}
