/* api_member.c - membership requests on a node (member add, remove, promote,
 * replace), who may make them, the addresses of members that the config file
 * did not name at start-up, and the automatic promotion of learners once
 * they have caught up.
 *
 * Automatic promotion is a property of the replicated state, so that every
 * leader does it, not only the one that added the learner: a learner is
 * promoted unless the kv state machine says it is kept one
 * (KV_OP_KEEP_LEARNER, set by `member add --learner`, cleared by `member
 * add` and `member promote`).  The flag's entry precedes the add in the log,
 * so a leader that applied everything up to the configuration entry knows
 * the operator's wish for every learner in it.
 */
#include "node/api_int.h"

#include "common/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MEMBER_TICK_S 0.1
#define CONFIG_REREAD_S 2.0
/* After an automatic promotion that did not commit (leader change, no
 * quorum), operators' requests get this long before the next attempt. */
#define AUTO_RETRY_S 2.0

/* One membership change waiting for its entry to commit.  The core takes one
 * change at a time, so there is at most one; client NULL: the leader's own
 * automatic promotion. */
struct member_pending {
    struct rpc_client *client;
    uint64_t req_id;
    double deadline;
    int op; /* Raftkv__MemberOp */
    raft_id id;
    raft_index index;
    raft_term term;
    bool committed, lost;
    bool readd, learner; /* REPLACE: add id again once its removal committed */
};

struct api_member {
    struct node *n;
    ev_timer timer;
    /* Addresses learned from requests or from re-reading the config file. */
    struct config_node book[RAFT_MAX_MEMBERS];
    unsigned n_book;
    struct member_pending *p;
    double auto_after; /* no automatic promotion before this ev_now() */
    double reread_at;
    raft_index max_lag;
};

/* ---- authorization ---------------------------------------------------- */

bool api_authorize(const struct rpc_client *cl, enum api_right right)
{
    /* src/rpc refused what the connection's role does not allow before
     * the request got here; this is the second line for the admin ops. */
    return cl->role >= (right == API_RIGHT_ADMIN ? RPC_ROLE_ADMIN
                        : right == API_RIGHT_WRITE ? RPC_ROLE_WRITE : RPC_ROLE_READ);
}

/* ---- addresses -------------------------------------------------------- */

const struct config_node *api_member_addr(const struct node *n, raft_id id)
{
    const struct api_member *m = n->member;
    for (unsigned i = 0; m && i < m->n_book; i++)
        if (m->book[i].id == id)
            return &m->book[i];
    return NULL;
}

static int book_set(struct api_member *m, raft_id id, const char *peer, const char *client)
{
    struct config_node *cn = (struct config_node *)api_member_addr(m->n, id);
    if (!cn) {
        if (m->n_book == RAFT_MAX_MEMBERS)
            return -ENOSPC;
        cn = &m->book[m->n_book++];
        memset(cn, 0, sizeof(*cn));
        cn->id = (uint32_t)id;
    }
    char *p = strdup(peer), *c = strdup(client ? client : "");
    if (!p || !c) {
        free(p);
        free(c);
        return -ENOMEM;
    }
    free(cn->peer);
    free(cn->client);
    cn->peer = p;
    cn->client = c;
    return 0;
}

/* [node.id] of the config file as it is now: the operator adds new members
 * there (raftkv.conf gives addresses, the log gives membership). */
static int book_from_file(struct api_member *m, raft_id id)
{
    struct config cfg;
    char err[256];
    int rv = config_init(&cfg);
    if (rv == 0 && (rv = config_parse_file(&cfg, m->n->cfg->path, err, sizeof(err))) < 0)
        log_warn("re-reading %s for the address of node %llu: %s", m->n->cfg->path,
                 (unsigned long long)id, err);
    const struct config_node *cn = rv == 0 ? config_node_find(&cfg, (uint32_t)id) : NULL;
    rv = cn && cn->peer ? book_set(m, id, cn->peer, cn->client) : -ENOENT;
    config_free(&cfg);
    return rv;
}

/* Every member gets a link, whichever way it joined. */
static void ensure_links(struct api_member *m, const struct raft_conf *conf, double now)
{
    struct node *n = m->n;
    bool reread = now >= m->reread_at;
    for (uint32_t i = 0; i < conf->n; i++) {
        raft_id id = conf->m[i].id;
        if (peer_link_has(n, id))
            continue;
        const struct config_node *cn = node_member(n, id);
        if (!cn && reread) {
            m->reread_at = now + CONFIG_REREAD_S;
            if (book_from_file(m, id) == 0)
                cn = node_member(n, id);
            else
                log_warn("member %llu has no address: add [node.%llu] to %s",
                         (unsigned long long)id, (unsigned long long)id, n->cfg->path);
        }
        char err[256];
        if (cn && peer_link_add(n, id, cn->peer, err, sizeof(err)) < 0)
            log_warn("%s", err);
    }
}

/* ---- answers ---------------------------------------------------------- */

static const struct raft_progress_status *progress_of(const struct raft_status *st, raft_id id)
{
    for (uint32_t i = 0; i < st->n_progress; i++)
        if (st->progress[i].id == id)
            return &st->progress[i];
    return NULL;
}

static const char *member_health(const struct api_member *m, const struct raft_status *st,
                                 const struct raft_progress_status *ps, uint64_t lag)
{
    if (ps->id == st->id)
        return "ok";
    if (!ps->recent_active)
        return "inactive";
    return lag <= m->max_lag ? "ok" : "catching-up";
}

void api_member_status(struct node *n, Raftkv__NodeStatus *ns)
{
    struct raft_status st;
    replica_status(n->rp, &st);
    for (size_t i = 0; i < ns->n_members; i++) {
        Raftkv__Member *mb = ns->members[i];
        const struct raft_member *rm = raft_conf_find(&st.conf, mb->id);
        mb->role = rm && rm->role == RAFT_LEARNER ? "learner" : "voter";
        const struct raft_progress_status *ps = progress_of(&st, mb->id);
        if (!ps)
            continue;
        uint64_t lag = st.last_index > ps->match ? st.last_index - ps->match : 0;
        if (ps->id == st.id)
            lag = 0;
        mb->has_match_index = mb->has_lag = mb->has_auto_promote = 1;
        mb->match_index = ps->id == st.id ? st.last_index : ps->match;
        mb->lag = lag;
        mb->health = (char *)member_health(n->member, &st, ps, lag);
        mb->auto_promote = rm && rm->role == RAFT_LEARNER &&
                           !kv_keep_learner(replica_kv(n->rp), mb->id);
    }
}

static void reply_done(struct node *n, struct member_pending *p)
{
    struct raft_status st;
    replica_status(n->rp, &st);
    Raftkv__Member mbs[RAFT_MAX_MEMBERS], *ptr[RAFT_MAX_MEMBERS];
    for (uint32_t i = 0; i < st.conf.n; i++) {
        raftkv__member__init(&mbs[i]);
        const struct config_node *cn = node_member(n, st.conf.m[i].id);
        mbs[i].has_id = mbs[i].has_voter = 1;
        mbs[i].id = st.conf.m[i].id;
        mbs[i].voter = st.conf.m[i].role == RAFT_VOTER;
        mbs[i].role = mbs[i].voter ? "voter" : "learner";
        mbs[i].peer_address = cn ? cn->peer : NULL;
        mbs[i].client_address = cn ? cn->client : NULL;
        ptr[i] = &mbs[i];
    }
    Raftkv__MemberChangeResponse mr = RAFTKV__MEMBER_CHANGE_RESPONSE__INIT;
    mr.has_index = 1;
    mr.index = p->index;
    mr.n_members = st.conf.n;
    mr.members = ptr;
    Raftkv__Response resp;
    rpc_response_init(&resp, p->req_id, RAFTKV__STATUS__OK, NULL);
    resp.result_case = RAFTKV__RESPONSE__RESULT_MEMBER_CHANGE;
    resp.member_change = &mr;
    if (n->role == RAFT_LEADER) {
        resp.has_leader_id = 1;
        resp.leader_id = n->id;
    }
    rpc_send_hinted(p->client, &resp);
}

static void pending_free(struct api_member *m)
{
    struct member_pending *p = m->p;
    m->p = NULL;
    if (p && p->client)
        rpc_client_release(p->client);
    free(p);
}

/* ---- proposing -------------------------------------------------------- */

static const char *op_name(int op)
{
    switch (op) {
    case RAFTKV__MEMBER_OP__MEMBER_ADD: return "add";
    case RAFTKV__MEMBER_OP__MEMBER_REMOVE: return "remove";
    case RAFTKV__MEMBER_OP__MEMBER_PROMOTE: return "promote";
    default: return "replace";
    }
}

/* Proposes; on failure answers (when cl) and returns false. */
static bool propose(struct api_member *m, struct rpc_client *cl, uint64_t req_id, uint8_t cop,
                    raft_id id, struct member_pending *p)
{
    struct node *n = m->n;
    raft_index idx = 0;
    raft_term term = 0;
    struct raft_conf_change cc = {.op = cop, .id = id};
    int rv = replica_propose_conf(n->rp, &cc, &idx);
    if (rv == 0) {
        term = replica_term(n->rp);
        p->index = idx;
        p->term = term;
        p->committed = p->lost = false;
        node_mark_dirty(n);
        return true;
    }
    if (!cl)
        return false;
    switch (rv) {
    case RAFT_ECONFPENDING:
        rpc_reply_error(cl, req_id, RAFTKV__STATUS__FAILED_PRECONDITION,
              "another membership change is in flight (not committed yet); retry once "
              "'raftkvctl members' shows it");
        break;
    case RAFT_ETRANSFER:
        rpc_reply_error(cl, req_id, RAFTKV__STATUS__UNAVAILABLE, "leadership transfer in progress; retry");
        break;
    case RAFT_ELAGGING:
        rpc_reply_error(cl, req_id, RAFTKV__STATUS__FAILED_PRECONDITION,
              "learner %llu is more than %llu entries behind the leader; promote it once it "
              "has caught up (see 'raftkvctl members')", (unsigned long long)id,
              (unsigned long long)m->max_lag);
        break;
    case RAFT_ENOTLEADER:
        rpc_reply_error(cl, req_id, RAFTKV__STATUS__NOT_LEADER, "node %u is not the leader", n->id);
        break;
    case RAFT_EINVAL:
        rpc_reply_error(cl, req_id, RAFTKV__STATUS__INVALID_ARGUMENT,
              cop == RAFT_CONF_PROMOTE ? "node %llu is not a learner"
              : cop == RAFT_CONF_REMOVE ? "node %llu is not a member, or is the last voter"
                                        : "node %llu is already a member, or the cluster is full",
              (unsigned long long)id);
        break;
    case REPLICA_EFAILED:
        rpc_reply_error(cl, req_id, RAFTKV__STATUS__UNAVAILABLE, "node %u failed: %s", n->id,
                        replica_errmsg(n->rp));
        break;
    default:
        rpc_reply_error(cl, req_id, RAFTKV__STATUS__INTERNAL, "cannot propose: %s", raft_strerror(rv));
        break;
    }
    return false;
}

/* Would removing voter id leave fewer reachable voters than a majority? */
static bool quorum_after_removal(const struct raft_status *st, raft_id id, unsigned *voters,
                                 unsigned *reachable)
{
    *voters = *reachable = 0;
    for (uint32_t i = 0; i < st->conf.n; i++) {
        if (st->conf.m[i].id == id || st->conf.m[i].role != RAFT_VOTER)
            continue;
        (*voters)++;
        const struct raft_progress_status *ps = progress_of(st, st->conf.m[i].id);
        *reachable += st->conf.m[i].id == st->id || (ps && ps->recent_active);
    }
    return *reachable >= *voters / 2 + 1;
}

/* Addresses for ADD/REPLACE: the request's, else the config file's. */
static bool resolve_addresses(struct api_member *m, struct rpc_client *cl, uint64_t req_id,
                              const Raftkv__MemberChangeRequest *mc)
{
    struct node *n = m->n;
    int rv;
    if (mc->peer_address && *mc->peer_address)
        rv = book_set(m, mc->id, mc->peer_address, mc->client_address);
    else if (config_node_find(n->cfg, (uint32_t)mc->id))
        rv = 0;
    else
        rv = book_from_file(m, mc->id);
    const struct config_node *cn = node_member(n, mc->id);
    char err[256];
    if (rv < 0 || !cn) {
        rpc_reply_error(cl, req_id, RAFTKV__STATUS__INVALID_ARGUMENT,
              "no peer address for node %llu: give one (--peer) or add [node.%llu] to %s",
              (unsigned long long)mc->id, (unsigned long long)mc->id, n->cfg->path);
        return false;
    }
    if (peer_link_add(n, mc->id, cn->peer, err, sizeof(err)) < 0) {
        rpc_reply_error(cl, req_id, RAFTKV__STATUS__INVALID_ARGUMENT, "%s", err);
        return false;
    }
    return true;
}

static bool check_removal(struct api_member *m, struct rpc_client *cl, uint64_t req_id,
                          const Raftkv__MemberChangeRequest *mc, const struct raft_status *st)
{
    struct node *n = m->n;
    const struct raft_member *rm = raft_conf_find(&st->conf, mc->id);
    if (!rm) {
        rpc_reply_error(cl, req_id, RAFTKV__STATUS__INVALID_ARGUMENT, "node %llu is not a member",
              (unsigned long long)mc->id);
        return false;
    }
    unsigned voters, reachable;
    if (rm->role == RAFT_VOTER && !quorum_after_removal(st, mc->id, &voters, &reachable) &&
        !mc->force) {
        rpc_reply_error(cl, req_id, RAFTKV__STATUS__FAILED_PRECONDITION,
              "removing voter %llu would leave %u voters of which only %u are reachable, fewer "
              "than the %u a quorum needs; bring members back first, or use --force",
              (unsigned long long)mc->id, voters, reachable, voters / 2 + 1);
        return false;
    }
    if (mc->id == n->id) {
        /* The leader cannot count itself out of a quorum it leads: hand over
         * first; the client retries at the new leader. */
        int rv = raft_conf_voters(&st->conf) > 1 ? replica_transfer(n->rp, RAFT_NONE) : RAFT_EINVAL;
        if (rv == 0 || rv == RAFT_ETRANSFER) {
            node_mark_dirty(n);
            rpc_reply_error(cl, req_id, RAFTKV__STATUS__UNAVAILABLE,
                  "node %u leads: handing leadership to another voter before removing it; retry",
                  n->id);
        } else {
            rpc_reply_error(cl, req_id, RAFTKV__STATUS__FAILED_PRECONDITION,
                  "node %u leads and no other voter can take over: %s", n->id, raft_strerror(rv));
        }
        return false;
    }
    return true;
}

/* A node added (again) comes with an empty data directory, a new
 * incarnation: forget the one the log recorded for an earlier membership
 * first, or bootstrap.c refuses its start and guard.c drops its votes.  The
 * forget entry precedes the add in the log, so no member ever answers a probe
 * with "a member, and its data is incarnation X" for the new node.  Not
 * leader any more: the add that follows fails and says so. */
static void forget_incarnation(struct node *n, raft_id id)
{
    if (!replica_incarnation(n->rp, id))
        return;
    if (guard_propose_incarnation(n, id, 0) < 0)
        log_warn("membership: cannot forget node %llu's recorded incarnation",
                 (unsigned long long)id);
}

/* Records whether id stays a learner (`--learner`) or is promoted once
 * caught up.  For an add, proposed before the add itself: whichever leader
 * applied the add applied this too.  Not leader any more: the change that
 * follows fails and says so. */
static void keep_learner(struct node *n, raft_id id, bool keep)
{
    if (kv_keep_learner(replica_kv(n->rp), id) == keep)
        return;
    struct kv_command cmd = {.op = KV_OP_KEEP_LEARNER, .member_id = id, .keep = keep};
    if (node_propose_bookkeeping(n, &cmd) < 0)
        log_warn("membership: cannot record whether node %llu stays a learner",
                 (unsigned long long)id);
}

void api_member_handle(struct node *n, struct rpc_client *cl, const Raftkv__Request *req)
{
    struct api_member *m = n->member;
    const Raftkv__MemberChangeRequest *mc = req->member_change;
    uint64_t rid = req->id;
    if (!api_authorize(cl, API_RIGHT_ADMIN)) {
        rpc_reply_error(cl, rid, RAFTKV__STATUS__PERMISSION_DENIED,
              "membership changes need the admin role: a client certificate for it, or "
              "the node's admin socket as root or the raftkv group");
        return;
    }
    if (!mc->has_op || !mc->has_id || mc->id == RAFT_NONE || mc->id > CONFIG_MAX_NODE_ID ||
        mc->op < RAFTKV__MEMBER_OP__MEMBER_ADD || mc->op > RAFTKV__MEMBER_OP__MEMBER_REPLACE) {
        rpc_reply_error(cl, rid, RAFTKV__STATUS__INVALID_ARGUMENT,
              "member change needs an op (add, remove, promote, replace) and a node id 1..%d",
              CONFIG_MAX_NODE_ID);
        return;
    }
    if (replica_error(n->rp) || n->stopping) {
        rpc_reply_error(cl, rid, RAFTKV__STATUS__UNAVAILABLE, "node %u is %s", n->id,
              n->stopping ? "shutting down" : "failed");
        return;
    }
    if (n->role != RAFT_LEADER) {
        api_respond_not_leader(n, cl, rid);
        return;
    }
    if (m->p) {
        rpc_reply_error(cl, rid, RAFTKV__STATUS__FAILED_PRECONDITION,
              "another membership change (%s node %llu) is in flight; retry once it committed",
              m->p->client ? op_name(m->p->op) : "automatic promotion of",
              (unsigned long long)m->p->id);
        return;
    }
    struct raft_status st;
    replica_status(n->rp, &st);
    struct member_pending *p = calloc(1, sizeof(*p));
    if (!p) {
        rpc_reply_error(cl, rid, RAFTKV__STATUS__INTERNAL, "out of memory");
        return;
    }
    p->op = mc->op;
    p->id = mc->id;
    p->learner = mc->learner;
    uint8_t cop = 0;
    bool ok = true;
    switch (mc->op) {
    case RAFTKV__MEMBER_OP__MEMBER_ADD:
        ok = resolve_addresses(m, cl, rid, mc);
        cop = RAFT_CONF_ADD_LEARNER;
        if (ok && !raft_conf_find(&st.conf, mc->id)) {
            forget_incarnation(n, mc->id);
            keep_learner(n, mc->id, mc->learner);
        }
        break;
    case RAFTKV__MEMBER_OP__MEMBER_REMOVE:
        ok = check_removal(m, cl, rid, mc, &st);
        cop = RAFT_CONF_REMOVE;
        break;
    case RAFTKV__MEMBER_OP__MEMBER_PROMOTE:
        cop = RAFT_CONF_PROMOTE;
        break;
    default:
        ok = check_removal(m, cl, rid, mc, &st) && resolve_addresses(m, cl, rid, mc);
        cop = RAFT_CONF_REMOVE;
        p->readd = true;
        break;
    }
    if (!ok || !propose(m, cl, rid, cop, mc->id, p)) {
        free(p);
        return;
    }
    if (cop == RAFT_CONF_PROMOTE)
        keep_learner(n, mc->id, false); /* a voter now: no wish left to keep */
    log_notice("membership: %s node %llu proposed at index %llu", op_name(mc->op),
               (unsigned long long)mc->id, (unsigned long long)p->index);
    p->client = cl;
    rpc_client_hold(cl);
    p->req_id = rid;
    uint64_t ms = req->timeout_ms ? req->timeout_ms : n->cfg->cluster.request_timeout_ms;
    p->deadline = ev_now(n->loop) + (double)ms / 1000.0;
    m->p = p;
}

void api_member_applied(struct node *n, const struct raft_entry *e)
{
    struct api_member *m = n->member;
    if (!m || !m->p || e->index < m->p->index)
        return;
    /* No raft_* calls here (we are inside a ready batch): the timer finishes. */
    m->p->committed = e->index == m->p->index && e->term == m->p->term;
    m->p->lost = !m->p->committed;
    ev_feed_event(n->loop, &m->timer, EV_TIMER);
}

/* ---- the timer: finish changes, links, automatic promotion ------------ */

static void finish_pending(struct api_member *m, double now)
{
    struct node *n = m->n;
    struct member_pending *p = m->p;
    if (p->committed && p->readd) {
        p->readd = false;
        log_notice("membership: node %llu removed; adding it again as a learner",
                   (unsigned long long)p->id);
        forget_incarnation(n, p->id);
        keep_learner(n, p->id, p->learner);
        if (!propose(m, p->client, p->req_id, RAFT_CONF_ADD_LEARNER, p->id, p)) {
            if (!p->client)
                log_warn("membership: node %llu was removed but not added again; run "
                         "'raftkvctl member add %llu'", (unsigned long long)p->id,
                         (unsigned long long)p->id);
            pending_free(m);
            return;
        }
        return;
    }
    if (p->committed) {
        log_notice("membership: %s node %llu committed at index %llu", op_name(p->op),
                   (unsigned long long)p->id, (unsigned long long)p->index);
        if (p->client)
            reply_done(n, p);
    } else if (!p->lost && now < p->deadline) {
        return;
    } else if (!p->client) {
        m->auto_after = now + AUTO_RETRY_S; /* an automatic promotion failed */
    } else if (p->lost) {
        rpc_reply_error(p->client, p->req_id, RAFTKV__STATUS__UNAVAILABLE,
              "leadership changed before the change committed; it was not applied, retry");
    } else {
        rpc_reply_error(p->client, p->req_id, RAFTKV__STATUS__TIMEOUT,
              "membership change not committed in time; it may still be: see "
              "'raftkvctl members'");
    }
    pending_free(m);
}

/* May learner id be promoted without an operator?  Not when it is kept a
 * learner; not before this node applied the configuration entry (and so the
 * flag that precedes it); not before the learner acknowledged that entry (a
 * learner whose link never worked is never promoted); not before this node
 * applied the record of the learner's data directory and the learner holds
 * every entry this node applied, that record among them (a directory that
 * joined grants no vote until its own log records it, replica.h: promoted
 * earlier, it is a failed voter until the next append reaches it, and for
 * good if this leader dies first and the rest need its vote); and only
 * when its match is within the configured lag of the leader's log. */
static bool promotable(const struct api_member *m, const struct raft_status *st, raft_id id)
{
    const struct kv *kv = replica_kv(m->n->rp);
    const struct raft_progress_status *ps = progress_of(st, id);
    return !kv_keep_learner(kv, id) && replica_incarnation(m->n->rp, id) && ps &&
           ps->match >= kv_applied_index(kv) && kv_applied_index(kv) >= st->conf_index &&
           st->commit >= st->conf_index && ps && ps->recent_active &&
           ps->match >= st->conf_index && ps->match + m->max_lag >= st->last_index;
}

/* Every leader, one change at a time: proposes the promotion of the first
 * caught-up learner it finds. */
static void auto_promote(struct api_member *m, const struct raft_status *st, double now)
{
    if (m->p || now < m->auto_after)
        return;
    for (uint32_t i = 0; i < st->conf.n && !m->p; i++) {
        raft_id id = st->conf.m[i].id;
        if (st->conf.m[i].role != RAFT_LEARNER || !promotable(m, st, id))
            continue;
        struct member_pending *p = calloc(1, sizeof(*p));
        if (!p)
            return;
        p->op = RAFTKV__MEMBER_OP__MEMBER_PROMOTE;
        p->id = id;
        p->deadline = now + (double)m->n->cfg->cluster.request_timeout_ms / 1000.0;
        if (!propose(m, NULL, 0, RAFT_CONF_PROMOTE, id, p)) {
            free(p);
            continue;
        }
        const struct raft_progress_status *ps = progress_of(st, id);
        log_notice("membership: learner %llu caught up (match %llu of %llu); promoting it",
                   (unsigned long long)id, (unsigned long long)ps->match,
                   (unsigned long long)st->last_index);
        m->p = p;
    }
}

static void on_member_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct api_member *m = w->data;
    struct node *n = m->n;
    double now = ev_now(loop);
    if (replica_error(n->rp))
        return;
    if (m->p)
        finish_pending(m, now);
    struct raft_status st;
    replica_status(n->rp, &st);
    ensure_links(m, &st.conf, now);
    if (st.role == RAFT_LEADER && !n->stopping)
        auto_promote(m, &st, now);
}

int api_member_start(struct node *n, char *err, size_t errlen)
{
    struct api_member *m = calloc(1, sizeof(*m));
    if (!m) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    m->n = n;
    m->max_lag = replica_learner_max_lag(n->rp);
    n->member = m;
    ev_timer_init(&m->timer, on_member_timer, MEMBER_TICK_S, MEMBER_TICK_S);
    m->timer.data = m;
    ev_timer_start(n->loop, &m->timer);
    return 0;
}

void api_member_stop(struct node *n)
{
    struct api_member *m = n->member;
    if (!m)
        return;
    if (m->p && m->p->client)
        rpc_reply_error(m->p->client, m->p->req_id, RAFTKV__STATUS__UNAVAILABLE,
              "node %u is stopping before the membership change was confirmed; see "
              "'raftkvctl members'", n->id);
    pending_free(m);
    ev_timer_stop(n->loop, &m->timer);
    for (unsigned i = 0; i < m->n_book; i++) {
        free(m->book[i].peer);
        free(m->book[i].client);
    }
    n->member = NULL;
    free(m);
}
