/* check.c - the invariants.  Safety properties of Raft (election safety,
 * leader append-only, log matching, leader completeness, state machine
 * safety, monotonic commit), linearizable ReadIndex, and raft.h's
 * persistence contract, checked on every node that got input in a step. */
#include <stdlib.h>
#include <string.h>

#include "sim.h"

uint64_t entry_hash(const struct raft_entry *e)
{
    return hash_bytes(0x51d0 + e->type, e->data, e->len);
}

/* ---- (index, term) -> entry table: open addressing ------------------------ */

static size_t itab_pos(raft_index i, raft_term t, size_t cap)
{
    return (size_t)(mix64(i * 0x9e3779b97f4a7c15ULL ^ t) & (cap - 1));
}

static struct itab_slot *itab_get(struct checker *ck, raft_index i, raft_term t)
{
    if ((ck->itab_n + 1) * 2 > ck->itab_cap) {
        size_t old_cap = ck->itab_cap, cap = old_cap ? old_cap * 2 : 1024;
        struct itab_slot *old = ck->itab;
        ck->itab = xrealloc(NULL, cap * sizeof *ck->itab);
        memset(ck->itab, 0, cap * sizeof *ck->itab);
        ck->itab_cap = cap;
        for (size_t k = 0; k < old_cap; k++) {
            if (!old[k].term)
                continue;
            size_t p = itab_pos(old[k].index, old[k].term, cap);
            while (ck->itab[p].term)
                p = (p + 1) & (cap - 1);
            ck->itab[p] = old[k];
        }
        free(old);
    }
    size_t p = itab_pos(i, t, ck->itab_cap);
    while (ck->itab[p].term && (ck->itab[p].index != i || ck->itab[p].term != t))
        p = (p + 1) & (ck->itab_cap - 1);
    return &ck->itab[p];
}

/* ---- per-node check -------------------------------------------------------- */

static raft_term committed_term(struct sim *s, struct node *n, raft_index i)
{
    struct raft_entry e;
    int rc = replica_entry_at(n->rp, i, &e);
    if (rc == RAFT_OK)
        return e.term;
    if (rc == RAFT_ECOMPACTED && i <= s->ck.hmax)
        return s->ck.hterm[i];
    sim_fail(s, FAIL_CONTRACT, "n%llu: commit index covers %llu but raft_entry_at says %s",
             U(n->id), U(i), raft_strerror(rc));
    return 0;
}

/* Record what n's commit index newly reveals as committed. */
static void observe_commit(struct sim *s, struct node *n, const struct raft_status *st)
{
    struct checker *ck = &s->ck;
    if (st->commit <= ck->gmax)
        return;
    size_t cap = ck->c_cap; /* cterm and cobs always have the same capacity */
    grow(&ck->cterm, &ck->c_cap, st->commit + 1, sizeof *ck->cterm);
    grow(&ck->cobs, &cap, st->commit + 1, sizeof *ck->cobs);
    for (raft_index i = ck->gmax + 1; i <= st->commit && !s->fail; i++) {
        raft_term t = committed_term(s, n, i);
        ck->cterm[i] = t;
        ck->cobs[i] = st->term;
        if (i <= ck->hmax && ck->hterm[i] != t)
            sim_fail(s, FAIL_SAFETY,
                     "state machine safety: n%llu commits (%llu, term %llu) but (%llu, term "
                     "%llu) was applied",
                     U(n->id), U(i), U(t), U(i), U(ck->hterm[i]));
        TRACE(s, "COMMIT %llu (term %llu) first seen on n%llu (term %llu)", U(i), U(t),
              U(n->id), U(st->term));
    }
    ck->gmax = st->commit;
}

static void check_log(struct sim *s, struct node *n, const struct raft_status *st)
{
    struct checker *ck = &s->ck;
    bool leader = st->role == RAFT_LEADER;
    bool shadowed = leader && n->shadow_term == st->term;
    raft_index shadow_last = n->shadow_first + n->shadow_n - 1;

    if (shadowed && n->shadow_n && st->last_index < shadow_last)
        sim_fail(s, FAIL_SAFETY,
                 "leader append-only: n%llu, leader of term %llu, shrank its log from %llu to "
                 "%llu",
                 U(n->id), U(st->term), U(shadow_last), U(st->last_index));

    /* The term before the first entry: the snapshot's, known from history. */
    raft_term prev = UINT64_MAX;
    if (st->first_index == 1)
        prev = 0;
    else if (st->first_index - 1 <= ck->hmax && st->first_index - 1 == st->snap_index)
        prev = ck->hterm[st->first_index - 1];

    for (raft_index i = st->first_index; i <= st->last_index && !s->fail; i++) {
        struct raft_entry e;
        int rc = replica_entry_at(n->rp, i, &e);
        if (rc != RAFT_OK || e.index != i) {
            sim_fail(s, FAIL_CONTRACT, "n%llu: raft_entry_at(%llu) in [%llu, %llu]: %s",
                     U(n->id), U(i), U(st->first_index), U(st->last_index), raft_strerror(rc));
            return;
        }
        uint64_t h = entry_hash(&e);
        struct itab_slot *sl = itab_get(ck, i, e.term);
        if (!sl->term) {
            sl->index = i;
            sl->term = e.term;
            sl->hash = h;
            sl->prev = prev;
            ck->itab_n++;
        } else if (sl->hash != h) {
            sim_fail(s, FAIL_SAFETY,
                     "log matching: n%llu holds a different entry at (%llu, term %llu) than "
                     "another log did",
                     U(n->id), U(i), U(e.term));
        } else if (prev != UINT64_MAX && sl->prev != UINT64_MAX && sl->prev != prev) {
            sim_fail(s, FAIL_SAFETY,
                     "log matching: n%llu has (%llu, term %llu) after term %llu, another log "
                     "had it after term %llu",
                     U(n->id), U(i), U(e.term), U(prev), U(sl->prev));
        } else if (sl->prev == UINT64_MAX) {
            sl->prev = prev;
        }
        if (i <= st->commit && ck->cterm[i] != e.term)
            sim_fail(s, FAIL_SAFETY,
                     "committed entry changed: n%llu has (%llu, term %llu) below its commit "
                     "index %llu, but term %llu was committed there",
                     U(n->id), U(i), U(e.term), U(st->commit), U(ck->cterm[i]));
        if (leader && i <= ck->gmax && ck->cobs[i] < st->term && ck->cterm[i] != e.term)
            sim_fail(s, FAIL_SAFETY,
                     "leader completeness: n%llu, leader of term %llu, has term %llu at %llu "
                     "where term %llu was committed by term %llu",
                     U(n->id), U(st->term), U(e.term), U(i), U(ck->cterm[i]), U(ck->cobs[i]));
        if (shadowed && i >= n->shadow_first && i <= shadow_last &&
            n->shadow[i - n->shadow_first] != e.term)
            sim_fail(s, FAIL_SAFETY,
                     "leader append-only: n%llu, leader of term %llu, overwrote (%llu, term "
                     "%llu) with term %llu",
                     U(n->id), U(st->term), U(i), U(n->shadow[i - n->shadow_first]), U(e.term));
        prev = e.term;
    }
    if (!leader || s->fail) {
        n->shadow_term = 0;
        return;
    }
    for (raft_index i = st->last_index + 1; i <= ck->gmax; i++) {
        if (ck->cobs[i] < st->term) {
            sim_fail(s, FAIL_SAFETY,
                     "leader completeness: n%llu, leader of term %llu, lacks committed entry "
                     "(%llu, term %llu) (committed by term %llu; its log ends at %llu)",
                     U(n->id), U(st->term), U(i), U(ck->cterm[i]), U(ck->cobs[i]),
                     U(st->last_index));
            return;
        }
    }
    /* Remember this leader's log to hold it to append-only. */
    n->shadow_term = st->term;
    n->shadow_first = st->first_index;
    n->shadow_n = (size_t)(st->last_index + 1 - st->first_index);
    grow(&n->shadow, &n->shadow_cap, n->shadow_n, sizeof *n->shadow);
    for (size_t k = 0; k < n->shadow_n; k++) {
        struct raft_entry e;
        replica_entry_at(n->rp, st->first_index + k, &e);
        n->shadow[k] = e.term;
    }
}

void check_node(struct sim *s, struct node *n)
{
    if (!n->up || s->fail)
        return;
    struct checker *ck = &s->ck;
    struct raft_status st;
    replica_status(n->rp, &st);

    if (st.role != n->last_role || st.term != n->last_term || st.leader != n->last_leader)
        TRACE(s, "n%llu is %s, term %llu, leader %llu, commit %llu, log %llu..%llu", U(n->id),
              raft_role_name(st.role), U(st.term), U(st.leader), U(st.commit),
              U(st.first_index), U(st.last_index));
    if (st.term < n->last_term)
        sim_fail(s, FAIL_SAFETY, "term went backwards: n%llu from %llu to %llu", U(n->id),
                 U(n->last_term), U(st.term));

    if (st.role == RAFT_LEADER) {
        grow(&ck->leader_of_term, &ck->lot_cap, st.term + 1, sizeof *ck->leader_of_term);
        if (ck->leader_of_term[st.term] == RAFT_NONE) {
            ck->leader_of_term[st.term] = n->id;
            s->st.elections++;
            TRACE(s, "LEADER n%llu for term %llu", U(n->id), U(st.term));
        } else if (ck->leader_of_term[st.term] != n->id) {
            sim_fail(s, FAIL_SAFETY, "election safety: n%llu and n%llu are both leader of term %llu",
                     U(ck->leader_of_term[st.term]), U(n->id), U(st.term));
        }
    }

    if (st.commit < n->last_commit)
        sim_fail(s, FAIL_SAFETY, "commit index decreased: n%llu from %llu to %llu (no crash)",
                 U(n->id), U(n->last_commit), U(st.commit));
    if (st.commit > st.last_index)
        sim_fail(s, FAIL_CONTRACT, "n%llu: commit index %llu beyond its last index %llu",
                 U(n->id), U(st.commit), U(st.last_index));
    if (n->sm.applied > st.commit)
        sim_fail(s, FAIL_CONTRACT, "n%llu: applied %llu but commit index is %llu", U(n->id),
                 U(n->sm.applied), U(st.commit));
    if (st.first_index > st.last_index + 1)
        sim_fail(s, FAIL_CONTRACT, "n%llu: log bounds [%llu, %llu]", U(n->id),
                 U(st.first_index), U(st.last_index));
    if (s->fail)
        return;

    if (st.role == RAFT_LEADER && st.commit > n->last_commit)
        s->just_committed = n->id;
    observe_commit(s, n, &st);
    /* Figure 2 / §5.4.2: a leader moves its commit index only onto an entry
     * of its own term; older entries get committed underneath one.  Counting
     * replicas of an older entry is exactly what Figure 8 shows is unsafe. */
    if (!s->fail && st.role == RAFT_LEADER && n->last_role == RAFT_LEADER &&
        n->last_term == st.term && st.commit > n->last_commit && ck->cterm[st.commit] < st.term)
        sim_fail(s, FAIL_SAFETY,
                 "commit rule: n%llu, leader of term %llu, advanced its commit index from %llu "
                 "to %llu, an entry of older term %llu",
                 U(n->id), U(st.term), U(n->last_commit), U(st.commit), U(ck->cterm[st.commit]));
    if (!s->fail)
        check_log(s, n, &st);

    n->last_commit = st.commit;
    n->last_term = st.term;
    n->last_role = st.role;
    n->last_leader = st.leader;
}

/* ---- state machine safety -------------------------------------------------- */

void check_apply(struct sim *s, struct node *n, raft_index index, raft_term term, uint64_t chain)
{
    struct checker *ck = &s->ck;
    if (index <= ck->hmax) {
        if (ck->hterm[index] != term || ck->hchain[index] != chain)
            sim_fail(s, FAIL_SAFETY,
                     "state machine safety: n%llu applied (%llu, term %llu) but the history "
                     "has (%llu, term %llu)%s",
                     U(n->id), U(index), U(term), U(index), U(ck->hterm[index]),
                     ck->hterm[index] == term ? " with a different prefix" : "");
    } else if (index == ck->hmax + 1) {
        size_t cap = ck->h_cap;
        grow(&ck->hterm, &ck->h_cap, index + 1, sizeof *ck->hterm);
        grow(&ck->hchain, &cap, index + 1, sizeof *ck->hchain);
        ck->hterm[index] = term;
        ck->hchain[index] = chain;
        ck->hmax = index;
    } else {
        sim_fail(s, FAIL_SAFETY,
                 "state machine safety: n%llu reached state %llu that nobody applied up to "
                 "(history ends at %llu)",
                 U(n->id), U(index), U(ck->hmax));
    }
    if (index <= ck->gmax && ck->cterm[index] != term)
        sim_fail(s, FAIL_SAFETY,
                 "state machine safety: n%llu applied (%llu, term %llu) but term %llu was "
                 "committed there",
                 U(n->id), U(index), U(term), U(ck->cterm[index]));
}

void check_ack(struct sim *s, uint64_t id, raft_index index)
{
    struct checker *ck = &s->ck;
    grow(&ck->acked, &ck->acked_words, id / 64 + 1, 8);
    ck->acked[id / 64] |= 1ULL << (id % 64);
    if (index > ck->told)
        ck->told = index;
    s->st.committed++;
}

void check_served(struct sim *s, raft_index applied)
{
    if (applied > s->ck.told)
        s->ck.told = applied;
}

/* Linearizable reads: a read released at index i must see every write a
 * client had been told about before it asked. */
void check_read(struct sim *s, struct node *n, const struct raft_read_state *rs)
{
    struct checker *ck = &s->ck;
    if (rs->ctx >= s->next_read_ctx || rs->ctx == 0) {
        sim_fail(s, FAIL_CONTRACT, "n%llu released read ctx %llu that nobody asked for",
                 U(n->id), U(rs->ctx));
        return;
    }
    TRACE(s, "n%llu read %llu released: index %llu, %s (client knew of %llu)", U(n->id),
          U(rs->ctx), U(rs->index), raft_strerror(rs->err), U(ck->read_told[rs->ctx]));
    if (rs->err != RAFT_OK) {
        s->st.reads_failed++;
        return;
    }
    if (rs->index < ck->read_told[rs->ctx])
        sim_fail(s, FAIL_SAFETY,
                 "linearizability: n%llu released read %llu at index %llu, but a client had "
                 "been told of commit index %llu before asking",
                 U(n->id), U(rs->ctx), U(rs->index), U(ck->read_told[rs->ctx]));
}

/* raft.h: whatever a non-leader promises about its durable state goes out
 * only once that state is on disk.  Check it against the simulated disk. */
void check_sent(struct sim *s, struct node *n, const struct raft_msg *m)
{
    const struct disk *d = &n->disk;
    const char *what = NULL;
    switch (m->type) {
    case RAFT_MSG_VOTE:
        if (d->hs.term < m->term || (d->hs.term == m->term && d->hs.vote != n->id))
            what = "vote request before its term and self-vote are durable";
        break;
    case RAFT_MSG_VOTE_RESP:
        if (!m->reject &&
            (d->hs.term < m->term || (d->hs.term == m->term && d->hs.vote != m->to)))
            what = "granted vote before it is durable";
        break;
    case RAFT_MSG_APPEND_RESP:
        /* Judged in the ack's own term only: writes that landed in the same
         * fsync may already hold a newer leader's repair of the log. */
        if (!m->reject && (d->hs.term < m->term ||
                           (d->hs.term == m->term && disk_last_index(d) < m->index)))
            what = "append acknowledgement before the entries (or term) are durable";
        break;
    default:
        break;
    }
    if (m->type == RAFT_MSG_VOTE_RESP && !m->reject && !what) {
        /* One vote per term, across crashes: what a lost hard state breaks. */
        grow(&n->voted, &n->voted_cap, m->term + 1, sizeof *n->voted);
        if (n->voted[m->term] != RAFT_NONE && n->voted[m->term] != m->to)
            sim_fail(s, FAIL_SAFETY, "election safety: n%llu voted for n%llu and n%llu in term %llu",
                     U(n->id), U(n->voted[m->term]), U(m->to), U(m->term));
        n->voted[m->term] = m->to;
    }
    if (what) {
        char buf[160];
        fmt_msg(buf, sizeof buf, m);
        /* Figure 2: respond only after updating stable storage.  Since the
         * simulator runs the real driver, breaking it is the driver's
         * safety bug (a crash then makes the promise a lie). */
        sim_fail(s, FAIL_SAFETY,
                 "persistence: n%llu sent %s: %s (disk: term %llu vote %llu last index %llu)",
                 U(n->id), buf, what, U(d->hs.term), U(d->hs.vote), U(disk_last_index(d)));
    }
}

/* What the incarnation rule is for: a node that lost its data never votes
 * under its old identity.  A vote is taken when a candidate of that term
 * takes a granted answer, or when a node grants a RequestVote (which stands
 * on the candidate's own vote).  Either, sent from a data directory other
 * than the one the applied history records for the sender, is a violation:
 * the wiped node may have voted differently in that term before, or lack
 * entries its old self acknowledged, so two leaders of one term or a lost
 * committed entry can follow.  Called after to's replica took (admitted)
 * or dropped nm; role and term are to's from before. */
void check_vote_taken(struct sim *s, struct node *to, const struct netmsg *nm, bool admitted,
                      enum raft_role role, raft_term term)
{
    const struct raft_msg *m = &nm->m;
    uint64_t rec = s->ck.rec[m->from];
    if (!admitted || !rec || rec == nm->from_dir)
        return;
    bool taken = m->type == RAFT_MSG_VOTE_RESP && !m->reject && role == RAFT_CANDIDATE &&
                 term == m->term;
    if (m->type == RAFT_MSG_VOTE && to->up) {
        struct raft_status st;
        replica_status(to->rp, &st);
        taken = st.term == m->term && st.vote == m->from;
    }
    if (!taken)
        return;
    char buf[160];
    fmt_msg(buf, sizeof buf, m);
    sim_fail(s, FAIL_SAFETY,
             "wiped vote: n%llu took %s from data directory %016llx, but the history records "
             "n%llu's as %016llx (a node that lost its data voted under its old identity)",
             U(to->id), buf, U(nm->from_dir), U(m->from), U(rec));
}

bool check_acked_applied(struct sim *s, struct node *n, uint64_t *missing)
{
    struct checker *ck = &s->ck;
    for (size_t w = 0; w < ck->acked_words; w++) {
        uint64_t have = w < n->sm.ids_words ? n->sm.ids[w] : 0;
        uint64_t lack = ck->acked[w] & ~have;
        if (lack) {
            *missing = w * 64 + (uint64_t)__builtin_ctzll(lack);
            return false;
        }
    }
    return true;
}

void check_free(struct checker *ck)
{
    free(ck->leader_of_term);
    free(ck->itab);
    free(ck->cterm);
    free(ck->cobs);
    free(ck->hterm);
    free(ck->hchain);
    free(ck->acked);
    free(ck->read_told);
    memset(ck, 0, sizeof *ck);
}
