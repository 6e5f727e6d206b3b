/* api.c - the client protocol on a node (proto/raftkv.proto), the common
 * part: requests parked until Raft decides (waiters), the answers every
 * kind shares, dispatch to api_write.c, api_read.c, api_admin.c and
 * api_member.c, and
 * answering what waits on timeouts, leader changes, a failed disk and stop.
 * Client connections themselves are src/rpc's.
 */
#include "node/api_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- waiters ---------------------------------------------------------- */

void waitq_push(struct waitq *q, struct waiter *w)
{
    w->next = NULL;
    w->prev = q->tail;
    if (q->tail)
        q->tail->next = w;
    else
        q->head = w;
    q->tail = w;
    q->n++;
}

void waitq_unlink(struct waitq *q, struct waiter *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        q->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        q->tail = w->prev;
    w->prev = w->next = NULL;
    q->n--;
}

struct waiter *waitq_pop(struct waitq *q)
{
    struct waiter *w = q->head;
    if (w)
        waitq_unlink(q, w);
    return w;
}

/* Ended waiters are kept for the next requests (no allocation per parked
 * request under load), up to this many. */
#define FREE_WAITERS_MAX 4096

void api_waiter_free(struct waiter *w)
{
    struct node *n = w->client->srv->owner;
    /* Counted here, where every parked request ends, right after its
     * answer went to rpc_send(). */
    if (w->client->last_reply_id == w->req_id && w->client->replies)
        node_metrics_waiter_done(n, w, w->client->last_status);
    if (w->req)
        raftkv__request__free_unpacked(w->req, NULL);
    rpc_client_release(w->client);
    if (n->n_free_waiters >= FREE_WAITERS_MAX) {
        free(w);
        return;
    }
    w->next = n->free_waiters;
    n->free_waiters = w;
    n->n_free_waiters++;
}

void api_waiters_free(struct node *n)
{
    struct waiter *w;
    while ((w = n->free_waiters)) {
        n->free_waiters = w->next;
        free(w);
    }
    n->n_free_waiters = 0;
}

struct waiter *api_waiter_new(struct node *n, enum wait_kind kind, struct rpc_client *cl,
                              const Raftkv__Request *req)
{
    struct waiter *w = n->free_waiters;
    if (w) {
        n->free_waiters = w->next;
        n->n_free_waiters--;
        memset(w, 0, sizeof(*w));
    } else if (!(w = calloc(1, sizeof(*w)))) {
        return NULL;
    }
    w->kind = kind;
    w->client = cl;
    /* Caps what one client can park here (client_limits.max_in_flight). */
    rpc_client_hold(cl);
    w->req_id = req->id;
    w->op = (uint8_t)metrics_requests_op(req->op_case);
    w->arrived = n->cur_arrived;
    node_metrics_note_key(w, req);
    uint64_t ms = req->timeout_ms ? req->timeout_ms : n->cfg->cluster.request_timeout_ms;
    w->deadline = ev_now(n->loop) + (double)ms / 1000.0;
    return w;
}

/* ---- shared answers --------------------------------------------------- */

static void add_leader_hint(void *owner, Raftkv__Response *resp)
{
    struct node *n = owner;
    if (!n->leader || n->leader == n->id)
        return;
    const struct config_node *cn = node_member(n, n->leader);
    resp->has_leader_id = 1;
    resp->leader_id = n->leader;
    if (cn)
        resp->leader_address = cn->client;
}

void api_respond_not_leader(struct node *n, struct rpc_client *cl, uint64_t id)
{
    if (n->leader && n->leader != n->id)
        rpc_reply_error(cl, id, RAFTKV__STATUS__NOT_LEADER, "node %u is not the leader; node %llu is",
                        n->id, (unsigned long long)n->leader);
    else
        rpc_reply_error(cl, id, RAFTKV__STATUS__UNAVAILABLE,
                        "no leader: election in progress or no quorum reachable");
}

bool api_check_key(struct node *n, struct rpc_client *cl, uint64_t id, const ProtobufCBinaryData *k,
                   bool has)
{
    if (!has || k->len == 0) {
        rpc_reply_error(cl, id, RAFTKV__STATUS__INVALID_ARGUMENT, "key must not be empty");
        return false;
    }
    if (k->len > n->cfg->cluster.max_key_bytes) {
        rpc_reply_error(cl, id, RAFTKV__STATUS__TOO_LARGE, "key of %zu bytes exceeds the limit of %llu",
                        k->len, (unsigned long long)n->cfg->cluster.max_key_bytes);
        return false;
    }
    return true;
}

/* ---- dispatch --------------------------------------------------------- */

static void on_request(struct rpc_client *cl, Raftkv__Request *req)
{
    struct node *n = cl->srv->owner;
    bool kept = false;
    /* Requests answered at once are counted here; parked ones when their
     * waiter ends (api_waiter_free), which bumps n->m->answered. */
    uint64_t id = req->id, replies = cl->replies, answered = n->m ? n->m->answered : 0;
    enum metrics_op op = metrics_requests_op(req->op_case);
    n->cur_arrived = ev_now(n->loop);
    switch (req->op_case) {
    case RAFTKV__REQUEST__OP_GET:
    case RAFTKV__REQUEST__OP_LIST:
        api_handle_read(n, cl, req, &kept);
        break;
    case RAFTKV__REQUEST__OP_SET:
    case RAFTKV__REQUEST__OP_DEL:
    case RAFTKV__REQUEST__OP_CAS:
        api_handle_write(n, cl, req);
        break;
    case RAFTKV__REQUEST__OP_STATUS:
        api_handle_status(n, cl, req);
        break;
    case RAFTKV__REQUEST__OP_TRANSFER_LEADER:
        api_handle_transfer(n, cl, req);
        break;
    case RAFTKV__REQUEST__OP_WATCH_LEADER:
        api_handle_watch(n, cl, req);
        break;
    case RAFTKV__REQUEST__OP_MEMBER_CHANGE:
        api_member_handle(n, cl, req);
        break;
    case RAFTKV__REQUEST__OP_METRICS:
        api_handle_metrics(n, cl, req);
        break;
    default:
        rpc_reply_error(cl, req->id, RAFTKV__STATUS__INVALID_ARGUMENT,
                        "request names no operation this server knows");
        break;
    }
    if (!kept)
        raftkv__request__free_unpacked(req, NULL);
    if (n->m && cl->replies != replies && cl->last_reply_id == id && n->m->answered == answered)
        node_metrics_request(n, op, cl->last_status, ev_time() - n->cur_arrived);
}

/* ---- leader changes, failure, timeouts, stop ------------------------- */

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
                rpc_reply_error(w->client, w->req_id, RAFTKV__STATUS__TIMEOUT,
                                "node %u %s before the write was confirmed: it may or may not have "
                                "been applied; retry it in the same session", n->id, why);
            else
                rpc_reply_error(w->client, w->req_id, RAFTKV__STATUS__UNAVAILABLE,
                                "node %u %s", n->id, why);
            if (w->client->conn)
                net_conn_flush(w->client->conn);
            api_waiter_free(w);
        }
    }
}

/* The disk failed: writes in flight may still commit through the others
 * (their entries went out before the failure) or not -- say exactly that,
 * now, rather than after request_timeout_ms.  Reads here cannot finish. */
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
    api_admin_leader_changed(n);
    api_reads_leader_changed(n);
}

static void expire(struct waitq *q, double now, const char *what)
{
    for (struct waiter *w = q->head, *next; w; w = next) {
        next = w->next;
        if (w->deadline <= now) {
            waitq_unlink(q, w);
            rpc_reply_error(w->client, w->req_id, RAFTKV__STATUS__TIMEOUT, "%s", what);
            api_waiter_free(w);
        }
    }
}

void api_sweep(struct node *n, double now)
{
    expire(&n->writes, now, "write not confirmed in time: it may or may not have been applied");
    expire(&n->reads, now, "read not confirmed in time");
    expire(&n->transfers, now, "leadership transfer did not finish in time");
}

void api_fail_all(struct node *n)
{
    answer_waiting(n, true, "is stopping");
}

/* ---- listeners -------------------------------------------------------- */

static const struct rpc_server_ops rpc_ops = {
    .on_request = on_request,
    .leader_hint = add_leader_hint,
};

int api_start(struct node *n, char *err, size_t errlen)
{
    const struct config_node *me = node_member(n, n->id);
    rpc_server_init(&n->rpc, n->loop, &rpc_ops, n, n->cfg->cluster.max_connections,
                    &n->client_limits);
    rpc_server_secure(&n->rpc, &n->sec);
    int rv = rpc_server_listen(&n->rpc, "client", me->client, 0, &n->client_l, err, errlen);
    if (rv < 0)
        return rv;
    if (me->admin && me->admin[0]) {
        char path[4200];
        snprintf(path, sizeof(path), "%s%s", me->admin[0] == '/' ? "unix:" : "", me->admin);
        rv = rpc_server_listen(&n->rpc, "admin", path, 0660, &n->admin_l, err, errlen);
        if (rv < 0)
            return rv;
    }
    return api_member_start(n, err, errlen);
}

void api_stop(struct node *n)
{
    api_member_stop(n);
    net_listener_close_conns(n->client_l);
    net_listener_close_conns(n->admin_l);
    rpc_server_stop(&n->rpc);
    if (n->client_l)
        net_listener_free(n->client_l);
    if (n->admin_l)
        net_listener_free(n->admin_l);
    n->client_l = n->admin_l = NULL;
}
