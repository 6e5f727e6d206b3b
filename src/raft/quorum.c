/* quorum.c - the majority rule, once for every use of it: the commit index
 * (§5.3), the read-index round a majority has confirmed (thesis §6.4), the
 * check-quorum liveness test (thesis §6.2) and an election's outcome (§5.2).
 */
#include "raft/raft_int.h"

unsigned quorum_size(const struct raft *r)
{
    return raft_conf_voters(&r->conf) / 2 + 1;
}

uint64_t quorum_agreed(const struct raft *r, quorum_value_fn value)
{
    uint64_t v[RAFT_MAX_MEMBERS];
    unsigned n = 0;
    for (unsigned i = 0; i < r->n_progress; i++) {
        const struct raft_progress *pr = &r->progress[i];
        if (pr->role != RAFT_VOTER)
            continue;
        /* insertion into a descending array: at most 16 voters */
        uint64_t x = value(r, pr);
        unsigned j = n++;
        for (; j > 0 && v[j - 1] < x; j--)
            v[j] = v[j - 1];
        v[j] = x;
    }
    unsigned q = quorum_size(r);
    return n < q ? 0 : v[q - 1];
}

static bool listed(const raft_id *ids, unsigned n, raft_id id)
{
    for (unsigned i = 0; i < n; i++)
        if (ids[i] == id)
            return true;
    return false;
}

static uint64_t granted(const struct raft *r, const struct raft_progress *pr)
{
    return listed(r->granted, r->n_granted, pr->id);
}

static uint64_t rejected(const struct raft *r, const struct raft_progress *pr)
{
    return listed(r->rejected, r->n_rejected, pr->id);
}

enum quorum_vote quorum_vote_result(const struct raft *r)
{
    if (quorum_agreed(r, granted))
        return QUORUM_WON;
    if (quorum_agreed(r, rejected))
        return QUORUM_LOST;
    return QUORUM_PENDING;
}
