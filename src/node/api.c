/* api.c - the client protocol on a node (proto/raftkv.proto): decode and
 * check requests, propose writes, ask for read indexes, and answer once Raft
 * has decided.  Writes wait for their entry to be applied; linearizable
 * reads wait for a confirmed read index and for the state machine to reach
 * it; stale reads are answered at once.
 */
#include "node/node_int.h"

#include "common/addr.h"
#include "common/log.h"
#include "raftkv.pb-c.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LIST_DEFAULT_LIMIT 1000
#define LIST_MAX_LIMIT 10000

/* ---- clients and waiters ---------------------------------------------- */

void api_client_unref(struct api_client *c)
{
    if (--c->refs == 0)
        free(c);
}

void waitq_push(struct waitq *q, struct waiter *w)
{
    w->next = NULL;
    if (q->tail)
        q->tail->next = w;
    else
        q->head = w;
    q->tail = w;
    q->n++;
}

static struct waiter *waitq_pop(struct waitq *q)
{
    struct waiter *w = q->head;
    if (!w)
        return NULL;
    q->head = w->next;
    if (!q->head)
        q->tail = NULL;
    q->n--;
    return w;
}

/* Remove w, whose predecessor is prev (NULL at the head). */
static void waitq_unlink(struct waitq *q, struct waiter *prev, struct waiter *w)
{
    if (prev)
        prev->next = w->next;
    else
        q->head = w->next;
    if (q->tail == w)
        q->tail = prev;
    q->n--;
}

static void waiter_free(struct waiter *w)
{
    if (w->req)
        raftkv__request__free_unpacked(w->req, NULL);
    net_conn_request_end(w->client->conn);
    api_client_unref(w->client);
    free(w);
}

static struct waiter *waiter_new(struct node *n, enum wait_kind kind, struct api_client *cl,
                                 const Raftkv__Request *req)
{
    struct waiter *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->kind = kind;
    w->client = cl;
    cl->refs++;
    /* Caps what one client can park here (client_limits.max_in_flight). */
    net_conn_request_begin(cl->conn);
    w->req_id = req->id;
    uint64_t ms = req->timeout_ms ? req->timeout_ms : n->cfg->cluster.request_timeout_ms;
    w->deadline = ev_now(n->loop) + (double)ms / 1000.0;
    return w;
}

/* ---- responses -------------------------------------------------------- */

static void send_response(struct api_client *cl, Raftkv__Response *resp)
{
    if (!cl->conn)
        return; /* the client left while we waited */
    int rv = net_conn_send_msg(cl->conn, &resp->base);
    if (rv < 0 && rv != -ENOBUFS && rv != -EPIPE)
        log_warn("cannot answer %s: %s", net_conn_peer_name(cl->conn), strerror(-rv));
}

static void add_leader_hint(struct node *n, Raftkv__Response *resp)
{
    if (!n->leader || n->leader == n->id)
        return;
    const struct config_node *cn = node_member(n, n->leader);
    resp->has_leader_id = 1;
    resp->leader_id = n->leader;
    if (cn)
        resp->leader_address = cn->client;
}

static void respond_error(struct node *n, struct api_client *cl, uint64_t id, Raftkv__Status st,
                          const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void respond_error(struct node *n, struct api_client *cl, uint64_t id, Raftkv__Status st,
                          const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    Raftkv__Response resp = RAFTKV__RESPONSE__INIT;
    resp.has_id = 1;
    resp.id = id;
    resp.has_status = 1;
    resp.status = st;
    resp.message = msg;
    add_leader_hint(n, &resp);
    send_response(cl, &resp);
}

static void respond_not_leader(struct node *n, struct api_client *cl, uint64_t id)
{
    if (n->leader && n->leader != n->id)
        respond_error(n, cl, id, RAFTKV__STATUS__NOT_LEADER, "node %u is not the leader; node %llu is",
                      n->id, (unsigned long long)n->leader);
    else
        respond_error(n, cl, id, RAFTKV__STATUS__UNAVAILABLE,
                      "no leader: election in progress or no quorum reachable");
}

/* ---- writes ----------------------------------------------------------- */

static Raftkv__Status write_outcome(const struct kv_result *res, const char **msg)
{
    *msg = "";
    switch (res->status) {
    case KV_STATUS_OK: return RAFTKV__STATUS__OK;
    case KV_STATUS_NOT_FOUND: *msg = "no such key"; return RAFTKV__STATUS__NOT_FOUND;
    case KV_STATUS_CAS_FAILED: *msg = "current value differs from the expected one"; return RAFTKV__STATUS__CAS_FAILED;
    case KV_STATUS_STALE:
        *msg = "sequence is older than this client's last write; not applied";
        return RAFTKV__STATUS__INVALID_ARGUMENT;
    case KV_STATUS_SESSION_EXPIRED:
        *msg = "client session expired; start again with a new client_id at sequence 1";
        return RAFTKV__STATUS__INVALID_ARGUMENT;
    case KV_STATUS_INVALID:
    default:
        *msg = "the log entry did not decode as a command";
        return RAFTKV__STATUS__INTERNAL;
    }
}

static void respond_write(struct node *n, struct waiter *w, const struct kv_result *res)
{
    (void)n;
    Raftkv__Response resp = RAFTKV__RESPONSE__INIT;
    Raftkv__SetResponse set = RAFTKV__SET_RESPONSE__INIT;
    Raftkv__DelResponse del = RAFTKV__DEL_RESPONSE__INIT;
    Raftkv__CasResponse cas = RAFTKV__CAS_RESPONSE__INIT;
    const char *msg;
    resp.has_id = 1;
    resp.id = w->req_id;
    resp.has_status = 1;
    resp.status = write_outcome(res, &msg);
    if (*msg)
        resp.message = (char *)msg;
    switch (w->ctx) { /* for writes, ctx holds the request's op */
    case RAFTKV__REQUEST__OP_SET:
        set.has_index = 1;
        set.index = res->index;
        resp.result_case = RAFTKV__RESPONSE__RESULT_SET;
        resp.set = &set;
        break;
    case RAFTKV__REQUEST__OP_DEL:
        del.has_index = 1;
        del.index = res->index;
        resp.result_case = RAFTKV__RESPONSE__RESULT_DEL;
        resp.del = &del;
        break;
    default:
        cas.has_index = 1;
        cas.index = res->index;
        if (res->status == KV_STATUS_CAS_FAILED) {
            cas.has_current_absent = 1;
            cas.current_absent = res->current_absent;
            if (!res->current_absent) {
                cas.has_current = 1;
                cas.current.data = (uint8_t *)res->current;
                cas.current.len = res->current_len;
            }
        }
        resp.result_case = RAFTKV__RESPONSE__RESULT_CAS;
        resp.cas = &cas;
        break;
    }
    send_response(w->client, &resp);
}

static void respond_lost(struct node *n, struct waiter *w)
{
    respond_error(n, w->client, w->req_id, RAFTKV__STATUS__UNAVAILABLE,
                  "leadership changed before the write committed; it was not applied, retry");
}

void api_applied(void *arg, const struct raft_entry *e, const struct kv_result *res)
{
    struct node *n = arg;
    while (n->writes.head && n->writes.head->index <= e->index) {
        struct waiter *w = waitq_pop(&n->writes);
        if (w->index == e->index && w->term == e->term && res)
            respond_write(n, w, res);
        else
            respond_lost(n, w);
        waiter_free(w);
    }
}

static bool check_key(struct node *n, struct api_client *cl, uint64_t id, const ProtobufCBinaryData *k,
                      bool has)
{
    if (!has || k->len == 0) {
        respond_error(n, cl, id, RAFTKV__STATUS__INVALID_ARGUMENT, "key must not be empty");
        return false;
    }
    if (k->len > n->cfg->cluster.max_key_bytes) {
        respond_error(n, cl, id, RAFTKV__STATUS__TOO_LARGE, "key of %zu bytes exceeds the limit of %llu",
                      k->len, (unsigned long long)n->cfg->cluster.max_key_bytes);
        return false;
    }
    return true;
}

static bool check_value(struct node *n, struct api_client *cl, uint64_t id, const ProtobufCBinaryData *v)
{
    if (v->len > n->cfg->cluster.max_value_bytes) {
        respond_error(n, cl, id, RAFTKV__STATUS__TOO_LARGE, "value of %zu bytes exceeds the limit of %llu",
                      v->len, (unsigned long long)n->cfg->cluster.max_value_bytes);
        return false;
    }
    return true;
}

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void handle_write(struct node *n, struct api_client *cl, const Raftkv__Request *req)
{
    uint64_t id = req->id;
    struct kv_command cmd;
    memset(&cmd, 0, sizeof(cmd));
    switch (req->op_case) {
    case RAFTKV__REQUEST__OP_SET:
        if (!check_key(n, cl, id, &req->set->key, req->set->has_key) || !check_value(n, cl, id, &req->set->value))
            return;
        cmd.op = KV_OP_SET;
        cmd.key = req->set->key.data;
        cmd.key_len = req->set->key.len;
        cmd.value = req->set->value.data;
        cmd.value_len = req->set->value.len;
        break;
    case RAFTKV__REQUEST__OP_DEL:
        if (!check_key(n, cl, id, &req->del->key, req->del->has_key))
            return;
        cmd.op = KV_OP_DEL;
        cmd.key = req->del->key.data;
        cmd.key_len = req->del->key.len;
        break;
    default: {
        const Raftkv__CasRequest *c = req->cas;
        if (!check_key(n, cl, id, &c->key, c->has_key) || !check_value(n, cl, id, &c->value) ||
            !check_value(n, cl, id, &c->expected))
            return;
        if (c->expect_absent && c->has_expected) {
            respond_error(n, cl, id, RAFTKV__STATUS__INVALID_ARGUMENT,
                          "cas: give either an expected value or expect_absent, not both");
            return;
        }
        cmd.op = KV_OP_CAS;
        cmd.key = c->key.data;
        cmd.key_len = c->key.len;
        cmd.value = c->value.data;
        cmd.value_len = c->value.len;
        cmd.expect_absent = c->expect_absent;
        cmd.expected = c->expected.data;
        cmd.expected_len = c->expected.len;
        break;
    }
    }
    if ((req->client_id == 0) != (req->sequence == 0)) {
        respond_error(n, cl, id, RAFTKV__STATUS__INVALID_ARGUMENT,
                      "client_id and sequence go together: give both or neither");
        return;
    }
    if (replica_error(n->rp)) {
        respond_error(n, cl, id, RAFTKV__STATUS__UNAVAILABLE, "node %u is not taking writes: %s",
                      n->id, replica_errmsg(n->rp));
        return;
    }
    if (n->stopping) {
        respond_error(n, cl, id, RAFTKV__STATUS__UNAVAILABLE, "node %u is shutting down", n->id);
        return;
    }
    struct raft *r = replica_raft(n->rp);
    if (raft_role(r) != RAFT_LEADER) {
        respond_not_leader(n, cl, id);
        return;
    }
    cmd.client_id = req->client_id;
    cmd.sequence = req->sequence;
    cmd.time_ms = wall_ms();
    size_t sz = kv_command_size(&cmd), len = 0;
    uint8_t stackbuf[512];
    uint8_t *buf = sz <= sizeof(stackbuf) ? stackbuf : malloc(sz);
    if (!buf || kv_command_encode(&cmd, buf, sz, &len) != KV_OK) {
        if (buf != stackbuf)
            free(buf);
        respond_error(n, cl, id, RAFTKV__STATUS__INTERNAL, "cannot encode the command");
        return;
    }
    raft_index idx;
    raft_term term;
    int rv = raft_propose(r, buf, (uint32_t)len, &idx, &term);
    if (buf != stackbuf)
        free(buf);
    if (rv == RAFT_ETRANSFER) {
        respond_error(n, cl, id, RAFTKV__STATUS__UNAVAILABLE, "leadership transfer in progress; retry");
        return;
    }
    if (rv != 0) {
        respond_error(n, cl, id, RAFTKV__STATUS__UNAVAILABLE, "cannot propose: %s", raft_strerror(rv));
        return;
    }
    struct waiter *w = waiter_new(n, WAIT_WRITE, cl, req);
    if (!w) {
        respond_error(n, cl, id, RAFTKV__STATUS__INTERNAL, "out of memory");
        return;
    }
    w->index = idx;
    w->term = term;
    w->ctx = (uint64_t)req->op_case;
    /* An index at or below a waiting one means our log was cut there while
     * we were not leader: those older entries can never commit. */
    while (n->writes.tail && n->writes.tail->index >= idx) {
        struct waiter *prev = NULL;
        for (struct waiter *x = n->writes.head; x && x != n->writes.tail; x = x->next)
            prev = x;
        struct waiter *lost = n->writes.tail;
        waitq_unlink(&n->writes, prev, lost);
        respond_lost(n, lost);
        waiter_free(lost);
    }
    waitq_push(&n->writes, w);
    node_mark_dirty(n);
}

/* ---- reads ------------------------------------------------------------ */

struct list_acc {
    ProtobufCBinaryData *keys;
    size_t n;
};

static int list_collect(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
    (void)val, (void)vlen;
    struct list_acc *a = ctx;
    a->keys[a->n].data = (uint8_t *)key;
    a->keys[a->n].len = klen;
    a->n++;
    return 0;
}

static void serve_read(struct node *n, struct api_client *cl, const Raftkv__Request *req)
{
    const struct kv *kv = replica_kv(n->rp);
    uint64_t applied = kv_applied_index(kv);
    Raftkv__Response resp = RAFTKV__RESPONSE__INIT;
    resp.has_id = 1;
    resp.id = req->id;
    resp.has_status = 1;
    resp.status = RAFTKV__STATUS__OK;
    if (req->op_case == RAFTKV__REQUEST__OP_GET) {
        Raftkv__GetResponse get = RAFTKV__GET_RESPONSE__INIT;
        const void *val;
        size_t vlen;
        const ProtobufCBinaryData *k = &req->get->key;
        get.has_applied_index = 1;
        get.applied_index = applied;
        if (kv_dict_get(kv_dict(kv), k->data, k->len, &val, &vlen) == KV_OK) {
            get.has_value = 1;
            get.value.data = (uint8_t *)val;
            get.value.len = vlen;
        } else {
            resp.status = RAFTKV__STATUS__NOT_FOUND;
            resp.message = "no such key";
        }
        resp.result_case = RAFTKV__RESPONSE__RESULT_GET;
        resp.get = &get;
        send_response(cl, &resp);
        return;
    }
    const Raftkv__ListRequest *lr = req->list;
    size_t limit = lr->limit ? lr->limit : LIST_DEFAULT_LIMIT;
    if (limit > LIST_MAX_LIMIT)
        limit = LIST_MAX_LIMIT;
    struct list_acc acc = {.keys = calloc(limit, sizeof(ProtobufCBinaryData))};
    if (!acc.keys) {
        respond_error(n, cl, req->id, RAFTKV__STATUS__INTERNAL, "out of memory");
        return;
    }
    bool more = false;
    kv_dict_list(kv_dict(kv), lr->prefix.data, lr->prefix.len,
                 lr->has_start_after ? lr->start_after.data : NULL, lr->start_after.len, limit,
                 list_collect, &acc, &more);
    Raftkv__ListResponse list = RAFTKV__LIST_RESPONSE__INIT;
    list.keys = acc.keys;
    list.n_keys = acc.n;
    list.has_truncated = 1;
    list.truncated = more;
    list.has_applied_index = 1;
    list.applied_index = applied;
    resp.result_case = RAFTKV__RESPONSE__RESULT_LIST;
    resp.list = &list;
    send_response(cl, &resp);
    free(acc.keys);
}

static void handle_read(struct node *n, struct api_client *cl, Raftkv__Request *req, bool *kept)
{
    Raftkv__Consistency cons;
    if (req->op_case == RAFTKV__REQUEST__OP_GET) {
        if (!check_key(n, cl, req->id, &req->get->key, req->get->has_key))
            return;
        cons = req->get->consistency;
    } else {
        if (req->list->prefix.len > n->cfg->cluster.max_key_bytes) {
            respond_error(n, cl, req->id, RAFTKV__STATUS__TOO_LARGE, "prefix longer than the key limit");
            return;
        }
        cons = req->list->consistency;
    }
    if (cons == RAFTKV__CONSISTENCY__STALE) {
        serve_read(n, cl, req);
        return;
    }
    if (replica_error(n->rp)) {
        respond_error(n, cl, req->id, RAFTKV__STATUS__UNAVAILABLE,
                      "node %u cannot confirm a linearizable read: %s; ask another node, "
                      "or for a stale read", n->id, replica_errmsg(n->rp));
        return;
    }
    uint64_t ctx = ++n->next_ctx;
    int rv = raft_read_index(replica_raft(n->rp), ctx);
    if (rv != 0) {
        respond_error(n, cl, req->id, RAFTKV__STATUS__UNAVAILABLE,
                      "no leader to confirm a linearizable read (%s); retry, or ask for a stale read",
                      raft_strerror(rv));
        return;
    }
    struct waiter *w = waiter_new(n, WAIT_READ, cl, req);
    if (!w) {
        respond_error(n, cl, req->id, RAFTKV__STATUS__INTERNAL, "out of memory");
        return;
    }
    w->ctx = ctx;
    w->req = req;
    *kept = true;
    waitq_push(&n->reads, w);
    node_mark_dirty(n);
}

void api_read_state(void *arg, const struct raft_read_state *rs)
{
    struct node *n = arg;
    struct waiter *prev = NULL;
    for (struct waiter *w = n->reads.head; w; prev = w, w = w->next) {
        if (w->ctx != rs->ctx || w->index_known)
            continue;
        if (rs->err) {
            waitq_unlink(&n->reads, prev, w);
            respond_error(n, w->client, w->req_id, RAFTKV__STATUS__UNAVAILABLE,
                          "leadership changed before the read was confirmed; retry");
            waiter_free(w);
            return;
        }
        w->index = rs->index;
        w->index_known = true;
        return;
    }
}

void api_serve_ready_reads(struct node *n)
{
    uint64_t applied = replica_applied(n->rp);
    struct waiter *prev = NULL, *w = n->reads.head;
    while (w) {
        struct waiter *next = w->next;
        if (w->index_known && w->index <= applied) {
            waitq_unlink(&n->reads, prev, w);
            serve_read(n, w->client, w->req);
            waiter_free(w);
        } else {
            prev = w;
        }
        w = next;
    }
}

/* ---- status, transfer, watch ------------------------------------------ */

static const char *progress_state_name(uint8_t s)
{
    return s == 0 ? "probe" : s == 1 ? "replicate" : "snapshot";
}

static void handle_status(struct node *n, struct api_client *cl, const Raftkv__Request *req)
{
    struct raft_status st;
    raft_status(replica_raft(n->rp), &st);
    Raftkv__NodeStatus ns = RAFTKV__NODE_STATUS__INIT;
    ns.has_id = 1;
    ns.id = n->id;
    /* A failed node's core is frozen in whatever role it had: say failed,
     * so nobody takes a frozen "leader" for a live one. */
    ns.role = replica_error(n->rp) ? "failed" : (char *)raft_role_name(st.role);
    ns.has_term = 1;
    ns.term = st.term;
    ns.has_leader_id = 1;
    ns.leader_id = replica_error(n->rp) ? 0 : st.leader;
    ns.has_commit_index = 1;
    ns.commit_index = st.commit;
    ns.has_applied_index = 1;
    ns.applied_index = replica_applied(n->rp);
    ns.has_last_index = 1;
    ns.last_index = st.last_index;
    ns.has_snapshot_index = 1;
    ns.snapshot_index = st.snap_index;
    ns.version = RAFTKV_VERSION_STRING;
    ns.has_uptime_ms = 1;
    ns.uptime_ms = (uint64_t)((ev_now(n->loop) - n->start) * 1000.0);
    const struct config_node *me = node_member(n, n->id);
    ns.client_address = me ? me->client : NULL;
    ns.error = replica_error(n->rp) ? (char *)replica_errmsg(n->rp) : NULL;
    ns.has_keys = 1;
    ns.keys = kv_dict_count(kv_dict(replica_kv(n->rp)));

    Raftkv__Member members[RAFT_MAX_MEMBERS], *mptr[RAFT_MAX_MEMBERS];
    for (uint32_t i = 0; i < st.conf.n; i++) {
        raftkv__member__init(&members[i]);
        const struct config_node *cn = node_member(n, st.conf.m[i].id);
        members[i].has_id = 1;
        members[i].id = st.conf.m[i].id;
        members[i].has_voter = 1;
        members[i].voter = st.conf.m[i].role == RAFT_VOTER;
        members[i].peer_address = cn ? cn->peer : NULL;
        members[i].client_address = cn ? cn->client : NULL;
        mptr[i] = &members[i];
    }
    ns.n_members = st.conf.n;
    ns.members = mptr;

    Raftkv__FollowerProgress fp[RAFT_MAX_MEMBERS], *fptr[RAFT_MAX_MEMBERS];
    size_t nf = 0;
    for (uint32_t i = 0; i < st.n_progress; i++) {
        const struct raft_progress_status *ps = &st.progress[i];
        if (ps->id == n->id)
            continue;
        raftkv__follower_progress__init(&fp[nf]);
        fp[nf].has_id = 1;
        fp[nf].id = ps->id;
        fp[nf].has_match_index = 1;
        fp[nf].match_index = ps->match;
        fp[nf].has_lag = 1;
        fp[nf].lag = st.last_index > ps->match ? st.last_index - ps->match : 0;
        fp[nf].state = (char *)progress_state_name(ps->state);
        fp[nf].has_active = 1;
        fp[nf].active = ps->recent_active;
        fptr[nf] = &fp[nf];
        nf++;
    }
    ns.n_followers = nf;
    ns.followers = fptr;

    Raftkv__StatusResponse sr = RAFTKV__STATUS_RESPONSE__INIT;
    sr.node = &ns;
    Raftkv__Response resp = RAFTKV__RESPONSE__INIT;
    resp.has_id = 1;
    resp.id = req->id;
    resp.has_status = 1;
    resp.status = RAFTKV__STATUS__OK;
    resp.result_case = RAFTKV__RESPONSE__RESULT_STATUS_INFO;
    resp.status_info = &sr;
    add_leader_hint(n, &resp);
    send_response(cl, &resp);
}

static void respond_transfer(struct node *n, struct api_client *cl, uint64_t id)
{
    Raftkv__TransferLeaderResponse tr = RAFTKV__TRANSFER_LEADER_RESPONSE__INIT;
    tr.has_leader_id = 1;
    tr.leader_id = n->leader;
    tr.has_term = 1;
    tr.term = n->term;
    Raftkv__Response resp = RAFTKV__RESPONSE__INIT;
    resp.has_id = 1;
    resp.id = id;
    resp.has_status = 1;
    resp.status = RAFTKV__STATUS__OK;
    resp.result_case = RAFTKV__RESPONSE__RESULT_TRANSFER_LEADER;
    resp.transfer_leader = &tr;
    add_leader_hint(n, &resp);
    send_response(cl, &resp);
}

static void handle_transfer(struct node *n, struct api_client *cl, const Raftkv__Request *req)
{
    struct raft *r = replica_raft(n->rp);
    if (raft_role(r) != RAFT_LEADER || replica_error(n->rp)) {
        respond_not_leader(n, cl, req->id);
        return;
    }
    uint64_t target = req->transfer_leader->target_id;
    if (target == n->id) {
        respond_transfer(n, cl, req->id);
        return;
    }
    int rv = raft_transfer_leader(r, target);
    if (rv != 0) {
        respond_error(n, cl, req->id, RAFTKV__STATUS__INVALID_ARGUMENT,
                      "cannot transfer leadership to %llu: %s", (unsigned long long)target,
                      rv == RAFT_EINVAL ? "no such voting member" : raft_strerror(rv));
        return;
    }
    struct waiter *w = waiter_new(n, WAIT_TRANSFER, cl, req);
    if (!w) {
        respond_error(n, cl, req->id, RAFTKV__STATUS__INTERNAL, "out of memory");
        return;
    }
    waitq_push(&n->transfers, w);
    node_mark_dirty(n);
}

static void send_leader_event(struct node *n, struct api_client *cl)
{
    Raftkv__LeaderEvent ev = RAFTKV__LEADER_EVENT__INIT;
    ev.has_leader_id = 1;
    ev.leader_id = n->leader;
    ev.has_term = 1;
    ev.term = n->term;
    const struct config_node *cn = node_member(n, n->leader);
    ev.leader_address = cn ? cn->client : NULL;
    Raftkv__Response resp = RAFTKV__RESPONSE__INIT;
    resp.has_id = 1;
    resp.id = cl->watch_id;
    resp.has_status = 1;
    resp.status = RAFTKV__STATUS__OK;
    resp.result_case = RAFTKV__RESPONSE__RESULT_LEADER_EVENT;
    resp.leader_event = &ev;
    send_response(cl, &resp);
}

static void handle_watch(struct node *n, struct api_client *cl, const Raftkv__Request *req)
{
    cl->watch_id = req->id;
    if (!cl->watching) {
        cl->watching = true;
        cl->next_watcher = n->watchers;
        n->watchers = cl;
    }
    send_leader_event(n, cl);
}

static void unwatch(struct node *n, struct api_client *cl)
{
    for (struct api_client **p = &n->watchers; *p; p = &(*p)->next_watcher)
        if (*p == cl) {
            *p = cl->next_watcher;
            break;
        }
    cl->watching = false;
}

/* The disk failed: writes in flight may still commit through the others
 * (their entries went out before the failure) or not -- say exactly that,
 * now, rather than after request_timeout_ms.  Reads here cannot finish. */
/* Answer every waiting write, read (and transfer, if asked) now; why says
 * what became of this node.  A waiting write is already in our log: it may
 * still commit (the next leader may hold it, or we may lead again after a
 * restart), so it gets TIMEOUT -- UNAVAILABLE would promise it did not
 * happen.  Answers are written at once: the loop may not run again. */
static void answer_waiting(struct node *n, bool transfers, const char *why)
{
    struct waitq *qs[] = {&n->writes, &n->reads, &n->transfers};
    for (size_t i = 0; i < (transfers ? 3u : 2u); i++) {
        struct waiter *w;
        while ((w = waitq_pop(qs[i]))) {
            if (qs[i] == &n->writes)
                respond_error(n, w->client, w->req_id, RAFTKV__STATUS__TIMEOUT,
                              "node %u %s before the write was confirmed: it may or may not have "
                              "been applied; retry it in the same session", n->id, why);
            else
                respond_error(n, w->client, w->req_id, RAFTKV__STATUS__UNAVAILABLE,
                              "node %u %s", n->id, why);
            if (w->client->conn)
                net_conn_flush(w->client->conn);
            waiter_free(w);
        }
    }
}

static void fail_waiting(struct node *n)
{
    char why[320];
    snprintf(why, sizeof(why), "failed (%s)", replica_errmsg(n->rp));
    answer_waiting(n, false, why);
}

void api_leader_changed(struct node *n)
{
    if (replica_error(n->rp))
        fail_waiting(n);
    for (struct api_client *cl = n->watchers; cl; cl = cl->next_watcher)
        send_leader_event(n, cl);
    if (n->leader && n->leader != n->id) {
        struct waiter *w;
        while ((w = waitq_pop(&n->transfers))) {
            respond_transfer(n, w->client, w->req_id);
            waiter_free(w);
        }
    }
    /* Forwarded reads whose leader is gone will never be answered. */
    if (n->role != RAFT_LEADER) {
        struct waiter *prev = NULL, *w = n->reads.head;
        while (w) {
            struct waiter *next = w->next;
            if (!w->index_known) {
                waitq_unlink(&n->reads, prev, w);
                respond_error(n, w->client, w->req_id, RAFTKV__STATUS__UNAVAILABLE,
                              "leader changed before the read was confirmed; retry");
                waiter_free(w);
            } else {
                prev = w;
            }
            w = next;
        }
    }
}

/* ---- timeouts and shutdown ------------------------------------------- */

static void expire(struct node *n, struct waitq *q, double now, const char *what)
{
    struct waiter *prev = NULL, *w = q->head;
    while (w) {
        struct waiter *next = w->next;
        if (w->deadline <= now) {
            waitq_unlink(q, prev, w);
            respond_error(n, w->client, w->req_id, RAFTKV__STATUS__TIMEOUT, "%s", what);
            waiter_free(w);
        } else {
            prev = w;
        }
        w = next;
    }
}

void api_sweep(struct node *n, double now)
{
    expire(n, &n->writes, now, "write not confirmed in time: it may or may not have been applied");
    expire(n, &n->reads, now, "read not confirmed in time");
    expire(n, &n->transfers, now, "leadership transfer did not finish in time");
}

void api_fail_all(struct node *n)
{
    answer_waiting(n, true, "is stopping");
}

/* ---- connections ------------------------------------------------------ */

static void on_client_frame(struct net_conn *c, const uint8_t *payload, size_t len, void *ud)
{
    struct api_client *cl = ud;
    struct node *n = cl->node;
    Raftkv__Request *req = raftkv__request__unpack(NULL, len, payload);
    if (!req) {
        log_warn("client %s sent a frame that is not a Request; closing", net_conn_peer_name(c));
        respond_error(n, cl, 0, RAFTKV__STATUS__INVALID_ARGUMENT, "frame is not a raftkv.Request");
        net_conn_close_after_flush(c, -EPROTO);
        return;
    }
    bool kept = false;
    switch (req->op_case) {
    case RAFTKV__REQUEST__OP_GET:
    case RAFTKV__REQUEST__OP_LIST:
        handle_read(n, cl, req, &kept);
        break;
    case RAFTKV__REQUEST__OP_SET:
    case RAFTKV__REQUEST__OP_DEL:
    case RAFTKV__REQUEST__OP_CAS:
        handle_write(n, cl, req);
        break;
    case RAFTKV__REQUEST__OP_STATUS:
        handle_status(n, cl, req);
        break;
    case RAFTKV__REQUEST__OP_TRANSFER_LEADER:
        handle_transfer(n, cl, req);
        break;
    case RAFTKV__REQUEST__OP_WATCH_LEADER:
        handle_watch(n, cl, req);
        break;
    default:
        respond_error(n, cl, req->id, RAFTKV__STATUS__INVALID_ARGUMENT,
                      "request names no operation this server knows");
        break;
    }
    if (!kept)
        raftkv__request__free_unpacked(req, NULL);
}

static void on_client_close(struct net_conn *c, enum net_close_reason reason, int err, void *ud)
{
    struct api_client *cl = ud;
    if (!cl)
        return;
    net_conn_log_client_close(c, reason, err);
    if (cl->watching)
        unwatch(cl->node, cl);
    cl->conn = NULL;
    api_client_unref(cl);
}

static const struct net_conn_ops client_conn_ops = {
    .on_frame = on_client_frame,
    .on_close = on_client_close,
};

static void on_client_accept(struct net_listener *l, struct net_conn *c, void *ud)
{
    (void)l;
    struct node *n = ud;
    struct api_client *cl = calloc(1, sizeof(*cl));
    if (!cl) {
        net_conn_destroy(c);
        return;
    }
    cl->node = n;
    cl->conn = c;
    cl->refs = 1;
    net_conn_set_userdata(c, cl);
}

static void on_client_refuse(struct net_listener *l, uint64_t more, void *ud)
{
    (void)l;
    struct node *n = ud;
    log_warn("refused a client: %llu connections open (max_connections), none idle "
             "long enough to give way (%llu more refusals not logged)",
             (unsigned long long)n->cfg->cluster.max_connections, (unsigned long long)more);
}

static int open_listener(struct node *n, const char *name, const char *address, mode_t mode,
                         struct net_listener **out, char *err, size_t errlen)
{
    struct net_listener_opts lo = {
        .max_conns = n->cfg->cluster.max_connections,
        .limits = n->client_limits,
        .conn_ops = &client_conn_ops,
    };
    static const struct net_listener_ops lops = {.on_accept = on_client_accept,
                                                 .on_refuse = on_client_refuse};
    bool inherited = false;
    int rv = net_listener_start(n->loop, name, address, mode, &lo, &lops, n, out, &inherited, err,
                                errlen);
    if (rv == 0)
        log_info("%s socket %s%s", name, address, inherited ? " (from systemd)" : "");
    return rv;
}

int api_start(struct node *n, char *err, size_t errlen)
{
    const struct config_node *me = node_member(n, n->id);
    int rv = open_listener(n, "client", me->client, 0, &n->client_l, err, errlen);
    if (rv < 0)
        return rv;
    if (me->admin && me->admin[0]) {
        char path[4200];
        snprintf(path, sizeof(path), "%s%s", me->admin[0] == '/' ? "unix:" : "", me->admin);
        rv = open_listener(n, "admin", path, 0660, &n->admin_l, err, errlen);
        if (rv < 0)
            return rv;
    }
    return 0;
}

void api_stop(struct node *n)
{
    while (n->watchers)
        unwatch(n, n->watchers);
    if (n->client_l)
        net_listener_free(n->client_l);
    if (n->admin_l)
        net_listener_free(n->admin_l);
    n->client_l = n->admin_l = NULL;
}
