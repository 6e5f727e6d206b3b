/* term.c - the §5.1 term rule, applied to every message before its type is
 * looked at: a newer term makes us follow it, an older one is answered so
 * its sender learns ours, and a term about to run out of 64 bits is refused.
 * Leader stickiness (thesis §4.2.3) first decides whether a newer-term vote
 * request may disturb us at all.
 */
#include "raft/raft_int.h"

bool term_can_advance(struct raft *r)
{
    /* Campaigning adds one to our term: past the limit it would wrap to 0
     * and every rule that compares terms would be turned upside down. */
    if (r->term < RAFT_TERM_MAX)
        return true;
    r->refused_terms++;
    return false;
}

static void reply_stale(struct raft *r, const struct raft_msg *m)
{
    /* A deposed leader or a pre-candidate behind the times only learns the
     * newer term if somebody tells it; otherwise, with pre-vote and
     * check-quorum, it could stay stuck at its old term. */
    if ((r->cfg.check_quorum || r->cfg.pre_vote) &&
        (m->type == RAFT_MSG_HEARTBEAT || m->type == RAFT_MSG_APPEND)) {
        struct raft_msg *out = raft_msg_new(r, RAFT_MSG_APPEND_RESP, m->from);
        out->reject = true;
        out->index = m->index;
    } else if (m->type == RAFT_MSG_PREVOTE) {
        struct raft_msg *out = raft_msg_new(r, RAFT_MSG_PREVOTE_RESP, m->from);
        out->reject = true;
    }
}

/* False when the message must go no further. */
static bool newer_term(struct raft *r, const struct raft_msg *m)
{
    bool vote_request = m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PREVOTE;
    /* Leader stickiness: while we hear from a live leader, a vote request is
     * a disruption, not an election -- unless the leader itself asked. */
    if (vote_request && m->ctx != RAFT_CTX_TRANSFER && election_in_lease(r))
        return false;
    /* Lease reads: nor may anything but a leader's message move a follower
     * in lease to a newer term.  A stale reply to what it sent long ago as
     * leader or candidate would leave it in that term with no leader and no
     * vote, free to elect somebody at once while the leader it acknowledged
     * still serves reads on its lease. */
    bool from_leader = m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT ||
                       m->type == RAFT_MSG_SNAPSHOT || m->type == RAFT_MSG_TIMEOUT_NOW;
    if (r->cfg.lease_reads && !vote_request && !from_leader && r->role == RAFT_FOLLOWER &&
        election_in_lease(r))
        return false;
    switch (m->type) {
    case RAFT_MSG_PREVOTE:
        break; /* a pre-vote never changes our term */
    case RAFT_MSG_PREVOTE_RESP:
        if (m->reject)
            election_become_follower(r, m->term, RAFT_NONE);
        /* a grant is for the term we are about to campaign in */
        break;
    case RAFT_MSG_APPEND:
    case RAFT_MSG_HEARTBEAT:
    case RAFT_MSG_SNAPSHOT:
        election_become_follower(r, m->term, m->from);
        break;
    case RAFT_MSG_VOTE: {
        /* Figure 2: only a granted vote restarts the election timer (see
         * election_handle_vote).  A stale candidate on a fast clock would
         * otherwise keep resetting the timers of the only nodes that could
         * win (found by the simulator). */
        unsigned elapsed = r->election_elapsed, timeout = r->randomized_timeout;
        election_become_follower(r, m->term, RAFT_NONE);
        r->election_elapsed = elapsed;
        r->randomized_timeout = timeout;
        break;
    }
    default:
        election_become_follower(r, m->term, RAFT_NONE);
        break;
    }
    return true;
}

bool term_admit(struct raft *r, const struct raft_msg *m)
{
    if (m->term > RAFT_TERM_MAX) {
        /* Nobody honest gets here; adopting it would leave no room to
         * campaign, so the cluster could never elect again. */
        r->refused_terms++;
        return false;
    }
    if (m->term > r->term)
        return newer_term(r, m);
    if (m->term < r->term) {
        reply_stale(r, m);
        return false;
    }
    return true;
}
