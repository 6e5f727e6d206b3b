/* election.c - terms, timeouts, pre-vote and vote (Raft §5.2, §5.4.1,
 * thesis §9.6), and the role changes they cause.
 *
 * Timeouts are counted in ticks the caller feeds; randomness comes from the
 * node's own seeded generator, so a simulation replays exactly.
 */
#include "raft/raft_int.h"

static uint64_t rng_next(struct raft *r)
{
    /* xorshift64*: tiny, good enough to spread election timeouts */
    uint64_t x = r->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

void election_reset_timeout(struct raft *r)
{
    r->election_elapsed = 0;
    r->heartbeat_elapsed = 0;
    r->randomized_timeout = r->cfg.election_ticks + (unsigned)(rng_next(r) % r->cfg.election_ticks);
}

bool election_in_lease(const struct raft *r)
{
    if (!r->cfg.check_quorum)
        return false;
    if (r->leader != RAFT_NONE && r->election_elapsed < r->cfg.election_ticks)
        return true;
    /* Lease reads: before a crash we may have acknowledged a heartbeat that
     * a leader's lease counts on, and we no longer know when.  So for the
     * first election timeout of our clock after a (re)start we vote for
     * nobody, as if we had just heard from that leader (readindex.c). */
    return r->cfg.lease_reads && r->ticks < r->cfg.election_ticks;
}

static void votes_reset(struct raft *r)
{
    r->n_granted = r->n_rejected = 0;
}

void election_become_follower(struct raft *r, raft_term term, raft_id leader)
{
    if (r->role == RAFT_LEADER)
        readindex_fail_all(r, RAFT_ELOSTLEADER);
    if (term != r->term) {
        r->term = term;
        r->vote = RAFT_NONE;
    }
    r->role = RAFT_FOLLOWER;
    r->leader = leader;
    r->transferee = RAFT_NONE;
    r->read_round_wanted = false;
    votes_reset(r);
    election_reset_timeout(r);
}

bool election_follow(struct raft *r, const struct raft_msg *m)
{
    if (r->role == RAFT_LEADER)
        return false;
    /* §5.2: a candidate that hears from the leader of its term steps down,
     * and hearing from the leader is what keeps a follower from campaigning. */
    if (r->role != RAFT_FOLLOWER || r->leader != m->from)
        election_become_follower(r, m->term, m->from);
    r->election_elapsed = 0;
    return true;
}

static void become_precandidate(struct raft *r)
{
    RAFT_ASSERT(r->role != RAFT_LEADER);
    /* The term stays: a pre-vote that fails must leave no trace, which is
     * the whole point of it. */
    r->role = RAFT_PRECANDIDATE;
    r->leader = RAFT_NONE;
    votes_reset(r);
    election_reset_timeout(r);
}

static void become_candidate(struct raft *r)
{
    RAFT_ASSERT(r->role != RAFT_LEADER);
    r->term++;
    r->vote = r->id;
    r->role = RAFT_CANDIDATE;
    r->leader = RAFT_NONE;
    votes_reset(r);
    election_reset_timeout(r);
}

void election_become_leader(struct raft *r)
{
    RAFT_ASSERT(r->role == RAFT_CANDIDATE);
    r->role = RAFT_LEADER;
    r->leader = r->id;
    r->transferee = RAFT_NONE;
    r->committed_in_term = false;
    election_reset_timeout(r);
    raft_index next = raftlog_last_index(&r->log) + 1;
    for (unsigned i = 0; i < r->n_progress; i++) {
        progress_reset(&r->progress[i], next);
        r->progress[i].recent_active = r->progress[i].id == r->id;
    }
    /* The no-op commits everything before it (§5.4.2: entries of earlier
     * terms are committed only indirectly), and until it commits we neither
     * serve reads nor accept a membership change. */
    if (!raft_append_entry(r, r->term, RAFT_ENTRY_NORMAL, NULL, 0)) {
        /* A leader without its no-op could never serve a read: give the
         * term up and let a later election try again. */
        election_become_follower(r, r->term, RAFT_NONE);
        return;
    }
    r->pending_conf_index = raftlog_last_index(&r->log);
    replication_maybe_commit(r); /* a one-voter cluster commits alone */
}

/* True once the tally has decided; then it has also acted. */
static bool tally(struct raft *r, bool pre_vote, bool transfer)
{
    switch (quorum_vote_result(r)) {
    case QUORUM_WON:
        if (pre_vote)
            election_campaign(r, false, transfer);
        else
            election_become_leader(r);
        return true;
    case QUORUM_LOST:
        if (pre_vote)
            r->counters.prevotes_lost++;
        election_become_follower(r, r->term, RAFT_NONE);
        return true;
    default:
        return false;
    }
}

static bool record_vote(struct raft *r, raft_id id, bool granted)
{
    for (unsigned i = 0; i < r->n_granted; i++)
        if (r->granted[i] == id)
            return false;
    for (unsigned i = 0; i < r->n_rejected; i++)
        if (r->rejected[i] == id)
            return false;
    if (!conf_is_voter(r, id))
        return false;
    if (granted)
        r->granted[r->n_granted++] = id;
    else
        r->rejected[r->n_rejected++] = id;
    return true;
}

bool election_campaign(struct raft *r, bool pre_vote, bool transfer)
{
    if (!term_can_advance(r))
        return false;
    /* Real campaigns the host counts itself (a soft-state change). */
    if (pre_vote) {
        become_precandidate(r);
        r->counters.prevotes_started++;
    } else {
        become_candidate(r);
    }
    record_vote(r, r->id, true);
    if (tally(r, pre_vote, transfer))
        return true;
    raft_term term = pre_vote ? r->term + 1 : r->term;
    raft_index last = raftlog_last_index(&r->log);
    raft_term last_term = raftlog_last_term(&r->log);
    for (uint32_t i = 0; i < r->conf.n; i++) {
        const struct raft_member *mb = &r->conf.m[i];
        if (mb->id == r->id || mb->role != RAFT_VOTER)
            continue;
        struct raft_msg *m = raft_msg_new(r, pre_vote ? RAFT_MSG_PREVOTE : RAFT_MSG_VOTE, mb->id);
        m->term = term;
        m->index = last;
        m->log_term = last_term;
        m->ctx = transfer ? RAFT_CTX_TRANSFER : 0;
    }
    return true;
}

void election_tick(struct raft *r)
{
    r->election_elapsed++;
    if (r->election_elapsed >= r->randomized_timeout && conf_is_voter(r, r->id))
        election_campaign(r, r->cfg.pre_vote, false);
}

static bool log_up_to_date(const struct raft *r, raft_index index, raft_term term)
{
#ifdef RAFT_BREAK_VOTE_LOG_CHECK
    (void)r, (void)index, (void)term;
    return true; /* test-only: the simulator must catch this */
#else
    raft_term last_term = raftlog_last_term(&r->log);
    return term > last_term || (term == last_term && index >= raftlog_last_index(&r->log));
#endif
}

void election_handle_vote(struct raft *r, const struct raft_msg *m)
{
    bool pre = m->type == RAFT_MSG_PREVOTE;
    bool can_vote = r->vote == m->from || (r->vote == RAFT_NONE && r->leader == RAFT_NONE) ||
                    (pre && m->term > r->term);
    struct raft_msg *out = raft_msg_new(r, pre ? RAFT_MSG_PREVOTE_RESP : RAFT_MSG_VOTE_RESP, m->from);
    if (can_vote && log_up_to_date(r, m->index, m->log_term)) {
        /* Answer in the asker's term: a pre-vote grant is for the term the
         * pre-candidate will campaign in, not ours. */
        out->term = m->term;
        if (!pre) {
            r->vote = m->from;
            r->election_elapsed = 0;
        }
    } else {
        out->reject = true;
    }
}

void election_handle_vote_resp(struct raft *r, const struct raft_msg *m)
{
    bool pre = m->type == RAFT_MSG_PREVOTE_RESP;
    if (pre) {
        if (r->role != RAFT_PRECANDIDATE)
            return;
        /* grants carry term+1; rejections carry the voter's (our) term */
        if (!m->reject && m->term != r->term + 1)
            return;
    } else if (r->role != RAFT_CANDIDATE) {
        return;
    }
    if (record_vote(r, m->from, !m->reject))
        tally(r, pre, false);
}
