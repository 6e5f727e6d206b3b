/* raft.c - the node object: creation, restore, message dispatch, proposals,
 * and the ready/advance hand-off that carries work out.
 *
 * The rules live in term.c (§5.1), election.c, replication.c, quorum.c,
 * readindex.c, transfer.c, snapshot.c and conf.c; this file only routes.
 */
#include "raft/raft_int.h"

#include <string.h>

const char *raft_strerror(int err)
{
    switch (err) {
    case RAFT_OK: return "ok";
    case RAFT_ENOTLEADER: return "not the leader";
    case RAFT_ETRANSFER: return "leadership transfer in progress";
    case RAFT_ECONFPENDING: return "a membership change is still pending";
    case RAFT_EINVAL: return "invalid argument";
    case RAFT_ENOMEM: return "out of memory";
    case RAFT_ENOLEADER: return "no known leader";
    case RAFT_ELAGGING: return "learner has not caught up";
    case RAFT_ELOSTLEADER: return "leadership lost";
    case RAFT_ECOMPACTED: return "index compacted";
    case RAFT_EUNAVAIL: return "index not in log";
    case RAFT_ESTATE: return "not allowed in this state";
    default: return "unknown error";
    }
}

const char *raft_role_name(enum raft_role role)
{
    static const char *names[] = {"follower", "pre-candidate", "candidate", "leader"};
    return (unsigned)role < 4 ? names[role] : "?";
}

const char *raft_msg_type_name(int type)
{
    static const char *names[RAFT_MSG_TYPE_COUNT] = {
        "none", "prevote", "prevote-resp", "vote", "vote-resp", "append",
        "append-resp", "heartbeat", "heartbeat-resp", "snapshot", "timeout-now",
        "read-index", "read-index-resp",
    };
    return type >= 0 && type < RAFT_MSG_TYPE_COUNT ? names[type] : "?";
}

void raft_config_defaults(struct raft_config *cfg, raft_id id)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->id = id;
    cfg->election_ticks = 10;
    cfg->heartbeat_ticks = 1;
    cfg->max_msg_entries = 4096;
    cfg->max_msg_bytes = 1u << 20;
    cfg->max_inflight = 64;
    cfg->max_inflight_bytes = 1u << 20;
    cfg->max_apply_entries = 16384;
    cfg->learner_max_lag = 1000;
    cfg->snapshot_trailing = 0;
    cfg->pre_vote = true;
    cfg->check_quorum = true;
    cfg->seed = id;
}

/* Messages whose content does not depend on this node's unsynced state may
 * leave at once; see the contract at the top of raft.h. */
static bool msg_needs_persist(const struct raft *r, uint8_t type)
{
    if (r->role == RAFT_LEADER)
        return false;
    switch (type) {
    case RAFT_MSG_PREVOTE:
    case RAFT_MSG_PREVOTE_RESP:
    case RAFT_MSG_READ_INDEX:
    case RAFT_MSG_HEARTBEAT_RESP:
        return false;
    default:
        return true;
    }
}

struct raft_msg *raft_msg_new(struct raft *r, uint8_t type, raft_id to)
{
    struct raft_vec *v = msg_needs_persist(r, type) ? &r->msgs_after_persist : &r->msgs;
    struct raft_msg *m = raft_vec_push_or_discard(r, v, sizeof(*m));
    m->type = type;
    m->from = r->id;
    m->to = to;
    m->term = r->term;
    return m;
}

int raft_new(struct raft **out, const struct raft_config *cfg)
{
    if (!cfg || cfg->id == RAFT_NONE || cfg->election_ticks < 2 || cfg->heartbeat_ticks == 0 ||
        cfg->heartbeat_ticks >= cfg->election_ticks || cfg->max_msg_entries == 0 ||
        cfg->max_inflight == 0 || cfg->max_apply_entries == 0)
        return RAFT_EINVAL;
    /* The lease rests on leader stickiness (check_quorum) and must last at
     * least a tick. */
    if (cfg->lease_reads && (!cfg->check_quorum || cfg->lease_drift_ticks + 2 > cfg->election_ticks))
        return RAFT_EINVAL;
    struct raft *r = raft_realloc(NULL, sizeof(*r));
    if (!r)
        return RAFT_ENOMEM;
    memset(r, 0, sizeof(*r));
    r->cfg = *cfg;
    if (r->cfg.max_inflight > RAFT_MAX_INFLIGHT)
        r->cfg.max_inflight = RAFT_MAX_INFLIGHT;
    r->id = cfg->id;
    raftlog_init(&r->log);
    r->next_to_persist = 1;
    /* splitmix-style scramble so nearby seeds give unrelated timeouts */
    uint64_t s = cfg->seed + 0x9e3779b97f4a7c15ULL * cfg->id;
    s = (s ^ (s >> 30)) * 0xbf58476d1ce4e5b9ULL;
    r->rng = s ? s : 1;
    election_become_follower(r, 0, RAFT_NONE);
    r->reported_role = RAFT_FOLLOWER;
    *out = r;
    return 0;
}

void raft_free(struct raft *r)
{
    if (!r)
        return;
    raftlog_free(&r->log);
    free(r->reads.items);
    free(r->msgs.items);
    free(r->msgs_after_persist.items);
    free(r->read_results.items);
    free(r->received_snap_data);
    free(r);
}

int raft_restore(struct raft *r, const struct raft_hard_state *hs,
                 const struct raft_snapshot_meta *snap,
                 const struct raft_entry *entries, size_t n)
{
    if (r->term != 0 || raftlog_last_index(&r->log) != 0)
        return RAFT_ESTATE;
    raft_index prev = 0;
    raft_term prev_term = 0;
    if (snap) {
        prev = snap->index;
        prev_term = snap->term;
    }
    for (size_t i = 0; i < n; i++) {
        if (entries[i].index != prev + 1 + i || entries[i].term == 0 ||
            entries[i].term < (i ? entries[i - 1].term : prev_term) ||
            (entries[i].len && !entries[i].data))
            return RAFT_EINVAL;
    }
    if (hs && (n ? entries[n - 1].term : prev_term) > hs->term)
        return RAFT_EINVAL;
    if ((hs && hs->term > RAFT_TERM_MAX) || (n ? entries[n - 1].term : prev_term) > RAFT_TERM_MAX)
        return RAFT_EINVAL;
    if (snap) {
        raftlog_reset(&r->log, snap->index, snap->term);
        r->snapshot = *snap;
        r->conf = snap->conf;
        r->conf_index = 0;
        r->commit = r->applied = snap->index;
    }
    for (size_t i = 0; i < n; i++) {
        int rv = raftlog_append(&r->log, entries[i].term, entries[i].type, entries[i].data, entries[i].len);
        if (rv)
            return rv;
    }
    r->persisted = raftlog_last_index(&r->log);
    r->next_to_persist = r->persisted + 1;
    conf_recompute(r);
    if (hs) {
        r->term = hs->term;
        r->vote = hs->vote;
    }
    r->reported_hard_state.term = r->term;
    r->reported_hard_state.vote = r->vote;
    r->reported_term = r->term;
    raft_id vote = r->vote;
    election_become_follower(r, r->term, RAFT_NONE);
    r->vote = vote; /* becoming a follower of the same term keeps the vote */
    return 0;
}

int raft_bootstrap(struct raft *r, const struct raft_conf *conf)
{
    if (r->term != 0 || raftlog_last_index(&r->log) != 0 || r->snapshot.index != 0)
        return RAFT_ESTATE;
    if (!conf || conf->n == 0 || raft_conf_voters(conf) == 0)
        return RAFT_EINVAL;
    uint8_t buf[RAFT_CONF_ENCODED_MAX];
    size_t len = raft_conf_encode(conf, buf);
    if (!raft_append_entry(r, 1, RAFT_ENTRY_CONF, buf, (uint32_t)len))
        return RAFT_ENOMEM;
    r->term = 1;
    return 0;
}

/* Append to our own log as leader (or at bootstrap); a configuration entry
 * takes effect the moment it is in the log (thesis 4.1). */
bool raft_append_entry(struct raft *r, raft_term term, uint8_t type, const void *data, uint32_t len)
{
    if (raftlog_append(&r->log, term, type, data, len) != 0) {
        r->out_of_memory = true;
        return false;
    }
    if (type == RAFT_ENTRY_CONF) {
        /* r->conf is the newest configuration before this entry */
        struct raft_conf c, before = r->conf;
        if (raft_conf_decode(data, len, &c) == 0)
            conf_apply(r, &c, raftlog_last_index(&r->log), &before);
    }
    return true;
}

static int tick(struct raft *r)
{
    r->ticks++;
    if (r->role == RAFT_LEADER)
        replication_tick(r);
    else
        election_tick(r);
    return 0;
}

static int step(struct raft *r, const struct raft_msg *m)
{
    if (!m || m->type == RAFT_MSG_NONE || m->type >= RAFT_MSG_TYPE_COUNT || m->from == RAFT_NONE ||
        m->from == r->id || (m->to != r->id && m->to != RAFT_NONE))
        return RAFT_EINVAL;
    if (m->n_entries && !m->entries)
        return RAFT_EINVAL;
    if (!term_admit(r, m))
        return 0;

    switch (m->type) {
    case RAFT_MSG_PREVOTE:
    case RAFT_MSG_VOTE:
        election_handle_vote(r, m);
        break;
    case RAFT_MSG_PREVOTE_RESP:
    case RAFT_MSG_VOTE_RESP:
        election_handle_vote_resp(r, m);
        break;
    case RAFT_MSG_APPEND:
    case RAFT_MSG_HEARTBEAT:
    case RAFT_MSG_SNAPSHOT:
        if (!election_follow(r, m))
            return RAFT_EINVAL; /* a second leader in our term: a peer is broken or lying */
        if (m->type == RAFT_MSG_APPEND)
            replication_handle_append(r, m);
        else if (m->type == RAFT_MSG_HEARTBEAT)
            replication_handle_heartbeat(r, m);
        else
            snapshot_handle(r, m);
        break;
    case RAFT_MSG_APPEND_RESP:
        replication_handle_append_resp(r, m);
        break;
    case RAFT_MSG_HEARTBEAT_RESP:
        replication_handle_heartbeat_resp(r, m);
        break;
    case RAFT_MSG_TIMEOUT_NOW:
        transfer_handle_timeout_now(r, m);
        break;
    case RAFT_MSG_READ_INDEX:
        return readindex_handle_request(r, m);
    case RAFT_MSG_READ_INDEX_RESP:
        readindex_handle_resp(r, m);
        break;
    default:
        break;
    }
    return 0;
}

static int propose(struct raft *r, const void *data, uint32_t len, raft_index *index_out,
                   raft_term *term_out)
{
    if (r->role != RAFT_LEADER)
        return RAFT_ENOTLEADER;
    if (r->transferee != RAFT_NONE)
        return RAFT_ETRANSFER;
    if (len && !data)
        return RAFT_EINVAL;
    if (!raft_append_entry(r, r->term, RAFT_ENTRY_NORMAL, data, len))
        return RAFT_ENOMEM;
    if (index_out)
        *index_out = raftlog_last_index(&r->log);
    if (term_out)
        *term_out = r->term;
    return 0;
}

static int propose_conf(struct raft *r, const struct raft_conf_change *cc, raft_index *index_out)
{
    if (r->role != RAFT_LEADER)
        return RAFT_ENOTLEADER;
    if (r->transferee != RAFT_NONE)
        return RAFT_ETRANSFER;
    if (r->pending_conf_index > r->commit)
        return RAFT_ECONFPENDING;
    struct raft_conf next;
    int rv = conf_change_make(r, cc, &next);
    if (rv)
        return rv;
    uint8_t buf[RAFT_CONF_ENCODED_MAX];
    size_t len = raft_conf_encode(&next, buf);
    if (!raft_append_entry(r, r->term, RAFT_ENTRY_CONF, buf, (uint32_t)len))
        return RAFT_ENOMEM;
    r->pending_conf_index = raftlog_last_index(&r->log);
    if (index_out)
        *index_out = r->pending_conf_index;
    return 0;
}

static int read_index(struct raft *r, uint64_t ctx)
{
    if (r->role == RAFT_LEADER)
        return readindex_request(r, RAFT_NONE, ctx);
    if (r->leader == RAFT_NONE)
        return RAFT_ENOLEADER;
    struct raft_msg *m = raft_msg_new(r, RAFT_MSG_READ_INDEX, r->leader);
    m->ctx = ctx;
    return 0;
}

static int campaign(struct raft *r)
{
    if (r->role == RAFT_LEADER)
        return RAFT_ESTATE;
    if (!conf_is_voter(r, r->id))
        return RAFT_ESTATE;
    return election_campaign(r, r->cfg.pre_vote, false) ? 0 : RAFT_ESTATE;
}

static int persisted(struct raft *r, raft_index index, raft_term term)
{
    /* A report for entries that were since replaced by a conflicting suffix
     * must not count: the term check tells the two apart (log matching). */
    if (index > raftlog_last_index(&r->log) || index <= r->persisted)
        return 0;
    raft_term t;
    if (raftlog_term(&r->log, index, &t) != 0 || t != term)
        return 0;
    r->persisted = index;
    if (r->role == RAFT_LEADER)
        replication_maybe_commit(r);
    return 0;
}

/* Every input starts with a clean out-of-memory flag and reports what it
 * hit (the policy is in raft.h). */
#define INPUT(r, call) ((r)->out_of_memory = false, raft_input_result((r), (call)))

int raft_tick(struct raft *r) { return INPUT(r, tick(r)); }
int raft_step(struct raft *r, const struct raft_msg *m) { return INPUT(r, step(r, m)); }
int raft_campaign(struct raft *r) { return INPUT(r, campaign(r)); }
int raft_read_index(struct raft *r, uint64_t ctx) { return INPUT(r, read_index(r, ctx)); }
int raft_transfer_leader(struct raft *r, raft_id target) { return INPUT(r, transfer_start(r, target)); }

int raft_propose(struct raft *r, const void *data, uint32_t len, raft_index *index_out,
                 raft_term *term_out)
{
    return INPUT(r, propose(r, data, len, index_out, term_out));
}

int raft_propose_conf(struct raft *r, const struct raft_conf_change *cc, raft_index *index_out)
{
    return INPUT(r, propose_conf(r, cc, index_out));
}

int raft_persisted(struct raft *r, raft_index index, raft_term term)
{
    return INPUT(r, persisted(r, index, term));
}

void raft_report_unreachable(struct raft *r, raft_id to)
{
    if (r->role != RAFT_LEADER)
        return;
    struct raft_progress *pr = progress_get(r, to);
    if (pr && pr->state == PROGRESS_REPLICATE)
        progress_become_probe(pr);
}

/* ---- ready / advance -------------------------------------------------- */

static raft_index apply_limit(const struct raft *r)
{
    /* Apply only what is committed and also durable here: a node that
     * crashes must never have applied more than it can replay. */
    raft_index lim = r->commit < r->persisted ? r->commit : r->persisted;
    if (lim > r->applied + r->cfg.max_apply_entries)
        lim = r->applied + r->cfg.max_apply_entries;
    return lim;
}

bool raft_has_ready(const struct raft *r)
{
    if (r->term != r->reported_hard_state.term || r->vote != r->reported_hard_state.vote)
        return true;
    if (r->leader != r->reported_leader || r->role != r->reported_role || r->term != r->reported_term)
        return true;
    if (r->next_to_persist <= raftlog_last_index(&r->log) || r->received_snap_pending)
        return true;
    if (r->msgs.n || r->msgs_after_persist.n || r->read_results.n)
        return true;
    if (apply_limit(r) > r->applied)
        return true;
    if (r->role == RAFT_LEADER &&
        (readindex_round_due(r) || replication_has_sendable(r)))
        return true;
    return false;
}

void raft_ready(struct raft *r, struct raft_ready *rd)
{
    memset(rd, 0, sizeof(*rd));
    if (r->role == RAFT_LEADER) {
        if (readindex_round_due(r))
            readindex_start_round(r);
        replication_send_all(r);
    }

    rd->hs.term = r->term;
    rd->hs.vote = r->vote;
    rd->hs_changed = r->term != r->reported_hard_state.term || r->vote != r->reported_hard_state.vote;
    r->reported_hard_state = rd->hs;

    if (r->received_snap_pending) {
        rd->has_snapshot = true;
        rd->snap = r->received_snap;
        rd->snap_data = r->received_snap_data;
        rd->snap_len = r->received_snap_len;
    }

    raft_index last = raftlog_last_index(&r->log);
    if (r->next_to_persist < raftlog_first_index(&r->log))
        r->next_to_persist = raftlog_first_index(&r->log);
    /* Each is one array, so it ends where the log's block does; the rest
     * is the next round's (raft_has_ready stays true). */
    if (r->next_to_persist <= last) {
        rd->entries = raftlog_get(&r->log, r->next_to_persist);
        rd->n_entries = raftlog_run(&r->log, r->next_to_persist, last);
        r->next_to_persist += rd->n_entries;
    }

    raft_index lim = apply_limit(r);
    if (lim > r->applied) {
        rd->committed = raftlog_get(&r->log, r->applied + 1);
        RAFT_ASSERT(rd->committed != NULL);
        rd->n_committed = raftlog_run(&r->log, r->applied + 1, lim);
        r->applied += rd->n_committed;
    }

    rd->msgs = r->msgs.items;
    rd->n_msgs = r->msgs.n;
    /* They acknowledge every entry appended so far: while some wait for
     * the next round, so do they. */
    if (r->next_to_persist > last) {
        rd->msgs_after_persist = r->msgs_after_persist.items;
        rd->n_msgs_after_persist = r->msgs_after_persist.n;
    }
    rd->reads = r->read_results.items;
    rd->n_reads = r->read_results.n;

    rd->leader = r->leader;
    rd->role = r->role;
    rd->term = r->term;
    rd->ss_changed = r->leader != r->reported_leader || r->role != r->reported_role || r->term != r->reported_term;
    r->reported_leader = r->leader;
    r->reported_role = r->role;
    r->reported_term = r->term;
}

void raft_advance(struct raft *r, const struct raft_ready *rd)
{
    r->msgs.n = 0;
    if (rd->n_msgs_after_persist == r->msgs_after_persist.n)
        r->msgs_after_persist.n = 0; /* handed out, not held back (raft_ready) */
    r->read_results.n = 0;
    if (r->received_snap_pending) {
        free(r->received_snap_data);
        r->received_snap_data = NULL;
        r->received_snap_len = 0;
        r->received_snap_pending = false;
    }
}

/* ---- views ------------------------------------------------------------ */

void raft_status(const struct raft *r, struct raft_status *st)
{
    memset(st, 0, sizeof(*st));
    st->id = r->id;
    st->role = r->role;
    st->term = r->term;
    st->vote = r->vote;
    st->leader = r->leader;
    st->commit = r->commit;
    st->applied = r->applied;
    st->persisted = r->persisted;
    st->first_index = raftlog_first_index(&r->log);
    st->last_index = raftlog_last_index(&r->log);
    st->last_term = raftlog_last_term(&r->log);
    st->snap_index = r->snapshot.index;
    st->transferee = r->transferee;
    st->lease_valid = readindex_lease_valid(r);
    st->refused_terms = r->refused_terms;
    st->counters = r->counters;
    st->conf = r->conf;
    st->conf_index = r->conf_index ? r->conf_index : r->snapshot.index;
    if (r->role != RAFT_LEADER)
        return;
    for (unsigned i = 0; i < r->n_progress; i++) {
        const struct raft_progress *pr = &r->progress[i];
        if (pr->departing)
            continue; /* not a member: listed is what conf lists */
        struct raft_progress_status *ps = &st->progress[st->n_progress++];
        ps->id = pr->id;
        ps->role = pr->role;
        ps->state = pr->state;
        ps->recent_active = pr->recent_active || pr->active_prev;
        ps->match = pr->id == r->id ? r->persisted : pr->match;
        ps->next = pr->next;
        ps->inflight = pr->inflight_count;
    }
}

enum raft_role raft_role(const struct raft *r) { return r->role; }
raft_term raft_current_term(const struct raft *r) { return r->term; }
raft_id raft_leader(const struct raft *r) { return r->leader; }
raft_index raft_commit_index(const struct raft *r) { return r->commit; }
raft_index raft_first_index(const struct raft *r) { return raftlog_first_index(&r->log); }
raft_index raft_last_index(const struct raft *r) { return raftlog_last_index(&r->log); }
size_t raft_log_memory(const struct raft *r) { return raftlog_memory(&r->log); }

int raft_entry_at(const struct raft *r, raft_index index, struct raft_entry *out)
{
    if (index <= r->log.prev_index)
        return RAFT_ECOMPACTED;
    const struct raft_entry *e = raftlog_get(&r->log, index);
    if (!e)
        return RAFT_EUNAVAIL;
    *out = *e;
    return 0;
}
