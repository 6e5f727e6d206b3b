/* proxy.c - the client side of the proxy: listeners, turning requests into
 * ops, and answering them with the client's own request id.  Connections
 * themselves are src/rpc's; the routing lives in route.c (reads), writeq.c
 * (writes) and status.c. */
#include "proxy/proxy_int.h"

#include "common/addr.h"
#include "common/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

double proxy_now(const struct proxy *p)
{
    return ev_now(p->loop);
}

/* ---- op lists --------------------------------------------------------- */

void oplist_push(struct oplist *l, struct op *op)
{
    op->next = NULL;
    op->prev = l->tail;
    if (l->tail)
        l->tail->next = op;
    else
        l->head = op;
    l->tail = op;
    l->n++;
}

/* Requeued writes go back in front of later arrivals, so a client's writes
 * still leave in the order it sent them. */
void oplist_insert_ordered(struct oplist *l, struct op *op)
{
    struct op *at = l->tail;
    while (at && at->arrival > op->arrival)
        at = at->prev;
    op->prev = at;
    op->next = at ? at->next : l->head;
    if (op->next)
        op->next->prev = op;
    else
        l->tail = op;
    if (at)
        at->next = op;
    else
        l->head = op;
    l->n++;
}

void oplist_remove(struct oplist *l, struct op *op)
{
    if (op->prev)
        op->prev->next = op->next;
    else
        l->head = op->next;
    if (op->next)
        op->next->prev = op->prev;
    else
        l->tail = op->prev;
    op->prev = op->next = NULL;
    l->n--;
}

/* ---- answers ---------------------------------------------------------- */

void op_free(struct proxy *p, struct op *op)
{
    if (op->slot)
        session_release(p, op->slot);
    if (op->req)
        raftkv__request__free_unpacked(op->req, NULL);
    if (op->cl) {
        p->in_flight--;
        rpc_client_release(op->cl);
    }
    free(op);
}

/* Relay resp under the client's id.  The proxy is the client's one stable
 * address, so a node's leader hint must not send the client elsewhere. */
void op_answer(struct proxy *p, struct op *op, Raftkv__Response *resp)
{
    resp->has_id = 1;
    resp->id = op->client_req_id;
    resp->has_leader_id = 0;
    char *hint = resp->leader_address; /* owned by resp when unpacked */
    resp->leader_address = NULL;
    proxy_metrics_answered(p, op, (int)resp->status);
    rpc_send(op->cl, resp);
    resp->leader_address = hint;
    op_free(p, op);
}

void op_fail(struct proxy *p, struct op *op, Raftkv__Status st, const char *fmt, ...)
{
    char msg[RPC_MSG_MAX];
    Raftkv__Response resp;
    va_list ap;
    va_start(ap, fmt);
    rpc_response_vinit(&resp, msg, op->client_req_id, st, fmt, ap);
    va_end(ap);
    op_answer(p, op, &resp);
}

/* ---- requests --------------------------------------------------------- */

static struct op *op_new(struct proxy *p, struct rpc_client *cl, Raftkv__Request *req, enum op_kind kind)
{
    struct op *op = calloc(1, sizeof(*op));
    if (!op)
        return NULL;
    op->kind = kind;
    op->cl = cl;
    /* Caps what one client can park here (limits.max_in_flight). */
    rpc_client_hold(cl);
    p->in_flight++;
    op->req = req;
    op->client_req_id = req->id;
    op->arrival = ++p->next_arrival;
    op->arrived = proxy_now(p);
    uint64_t ms = req->timeout_ms ? req->timeout_ms : p->cfg->cluster.request_timeout_ms;
    op->deadline = proxy_now(p) + (double)ms / 1000.0;
    return op;
}

static void on_request(struct rpc_client *cl, Raftkv__Request *req)
{
    struct proxy *p = cl->srv->owner;
    enum op_kind kind;
    switch (req->op_case) {
    case RAFTKV__REQUEST__OP_GET:
    case RAFTKV__REQUEST__OP_LIST: kind = OP_READ; break;
    case RAFTKV__REQUEST__OP_SET:
    case RAFTKV__REQUEST__OP_DEL:
    case RAFTKV__REQUEST__OP_CAS: kind = OP_WRITE; break;
    case RAFTKV__REQUEST__OP_TRANSFER_LEADER: kind = OP_TRANSFER; break;
    case RAFTKV__REQUEST__OP_STATUS: kind = OP_FANOUT; break;
    case RAFTKV__REQUEST__OP_WATCH_LEADER:
        watch_add(p, cl, req->id);
        raftkv__request__free_unpacked(req, NULL);
        return;
    default:
        rpc_reply_error(cl, req->id, RAFTKV__STATUS__INVALID_ARGUMENT,
                        "request names no operation this server knows");
        raftkv__request__free_unpacked(req, NULL);
        return;
    }
    if (kind == OP_WRITE && (req->client_id == 0) != (req->sequence == 0)) {
        rpc_reply_error(cl, req->id, RAFTKV__STATUS__INVALID_ARGUMENT,
                        "client_id and sequence go together: give both or neither");
        raftkv__request__free_unpacked(req, NULL);
        return;
    }
    struct op *op = op_new(p, cl, req, kind);
    if (!op) {
        rpc_reply_error(cl, req->id, RAFTKV__STATUS__INTERNAL, "out of memory");
        raftkv__request__free_unpacked(req, NULL);
        return;
    }
    switch (kind) {
    case OP_READ: route_read(p, op); break;
    case OP_FANOUT: status_answer(p, op); break;
    default: writeq_submit(p, op); break;
    }
}

static const struct rpc_server_ops rpc_ops = {.on_request = on_request};

int proxy_start(struct proxy *p, char *err, size_t errlen)
{
    const struct config_proxy *pc = &p->cfg->proxy;
    rpc_server_init(&p->rpc, p->loop, &rpc_ops, p, p->cfg->cluster.max_connections, &p->limits);
    rpc_server_secure(&p->rpc, &p->sec);
    /* The unix socket is the same public entry point as the TCP port. */
    if (pc->listen && *pc->listen) {
        int rv = rpc_server_listen(&p->rpc, "client", pc->listen, 0666, &p->tcp_l, err, errlen);
        if (rv < 0)
            return rv;
    }
    if (pc->unix_path && *pc->unix_path) {
        char path[4200];
        snprintf(path, sizeof(path), "%s%s", pc->unix_path[0] == '/' ? "unix:" : "", pc->unix_path);
        int rv = rpc_server_listen(&p->rpc, "unix", path, 0666, &p->unix_l, err, errlen);
        if (rv < 0)
            return rv;
    }
    return 0;
}

void proxy_stop(struct proxy *p)
{
    rpc_server_stop(&p->rpc);
    if (p->tcp_l)
        net_listener_free(p->tcp_l);
    if (p->unix_l)
        net_listener_free(p->unix_l);
    p->tcp_l = p->unix_l = NULL;
}
