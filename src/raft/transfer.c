/* transfer.c - leadership transfer (thesis §3.10): stop taking proposals,
 * bring the target's log up to ours, then tell it to campaign at once with
 * TimeoutNow.  Gives up after an election timeout so a dead target cannot
 * freeze writes.
 */
#include "raft/raft_int.h"

static void send_timeout_now(struct raft *r, raft_id to)
{
    /* Its target may now win without waiting out our lease (readindex.c). */
    r->lease_off_term = r->term;
    raft_msg_new(r, RAFT_MSG_TIMEOUT_NOW, to);
}

int transfer_start(struct raft *r, raft_id target)
{
    if (r->role != RAFT_LEADER)
        return RAFT_ENOTLEADER;
    if (target == RAFT_NONE) {
        /* best candidate: the most caught-up voter */
        raft_index best = 0;
        for (unsigned i = 0; i < r->n_progress; i++) {
            const struct raft_progress *pr = &r->progress[i];
            if (pr->id == r->id || pr->role != RAFT_VOTER)
                continue;
            if (target == RAFT_NONE || pr->match > best) {
                target = pr->id;
                best = pr->match;
            }
        }
        if (target == RAFT_NONE)
            return RAFT_EINVAL;
    }
    if (target == r->id)
        return 0;
    if (!conf_is_voter(r, target))
        return RAFT_EINVAL;
    if (r->transferee == target)
        return 0;
    r->transferee = target;
    r->transfer_elapsed = 0;
    struct raft_progress *pr = progress_get(r, target);
    RAFT_ASSERT(pr != NULL);
    transfer_maybe_finish(r, pr);
    return 0;
}

void transfer_maybe_finish(struct raft *r, struct raft_progress *pr)
{
    if (r->transferee == pr->id && pr->match == raftlog_last_index(&r->log))
        send_timeout_now(r, pr->id);
}

void transfer_abort(struct raft *r)
{
    r->transferee = RAFT_NONE;
    r->transfer_elapsed = 0;
}

void transfer_tick(struct raft *r)
{
    if (r->transferee == RAFT_NONE)
        return;
    if (++r->transfer_elapsed >= r->cfg.election_ticks)
        transfer_abort(r);
}

void transfer_handle_timeout_now(struct raft *r, const struct raft_msg *m)
{
    (void)m;
    if (r->role == RAFT_LEADER || !conf_is_voter(r, r->id))
        return;
    /* The leader asked: skip pre-vote, and voters waive leader stickiness. */
    election_campaign(r, false, true);
}
