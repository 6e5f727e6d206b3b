/* proxy.c - the client side of the proxy: listeners, decoding requests into
 * ops, and answering them with the client's own request id.  The routing
 * itself lives in route.c (reads), writeq.c (writes) and status.c. */
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

void client_unref(struct client *cl)
{
    if (--cl->refs == 0)
        free(cl);
}

void client_send(struct client *cl, Raftkv__Response *resp)
{
    if (!cl || !cl->conn)
        return;
    int rv = net_conn_send_msg(cl->conn, &resp->base);
    if (rv < 0 && rv != -ENOBUFS && rv != -EPIPE)
        log_warn("cannot answer %s: %s", net_conn_peer_name(cl->conn), strerror(-rv));
}

void op_free(struct proxy *p, struct op *op)
{
    if (op->slot)
        session_release(p, op->slot);
    if (op->req)
        raftkv__request__free_unpacked(op->req, NULL);
    if (op->cl) {
        p->in_flight--;
        net_conn_request_end(op->cl->conn);
        client_unref(op->cl);
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
    client_send(op->cl, resp);
    resp->leader_address = hint;
    op_free(p, op);
}

void op_fail(struct proxy *p, struct op *op, Raftkv__Status st, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    Raftkv__Response resp = RAFTKV__RESPONSE__INIT;
    resp.has_status = 1;
    resp.status = st;
    resp.message = msg;
    op_answer(p, op, &resp);
}

static void reply_now(struct client *cl, uint64_t id, Raftkv__Status st, const char *msg)
{
    Raftkv__Response resp = RAFTKV__RESPONSE__INIT;
    resp.has_id = 1;
    resp.id = id;
    resp.has_status = 1;
    resp.status = st;
    resp.message = (char *)msg;
    client_send(cl, &resp);
}

/* ---- requests --------------------------------------------------------- */

static struct op *op_new(struct proxy *p, struct client *cl, Raftkv__Request *req, enum op_kind kind)
{
    struct op *op = calloc(1, sizeof(*op));
    if (!op)
        return NULL;
    op->kind = kind;
    op->cl = cl;
    cl->refs++;
    /* Caps what one client can park here (limits.max_in_flight). */
    net_conn_request_begin(cl->conn);
    p->in_flight++;
    op->req = req;
    op->client_req_id = req->id;
    op->arrival = ++p->next_arrival;
    uint64_t ms = req->timeout_ms ? req->timeout_ms : p->cfg->cluster.request_timeout_ms;
    op->deadline = proxy_now(p) + (double)ms / 1000.0;
    return op;
}

static void on_client_frame(struct net_conn *c, const uint8_t *payload, size_t len, void *ud)
{
    struct client *cl = ud;
    struct proxy *p = cl->p;
    Raftkv__Request *req = raftkv__request__unpack(NULL, len, payload);
    if (!req) {
        log_warn("client %s sent a frame that is not a Request; closing", net_conn_peer_name(c));
        reply_now(cl, 0, RAFTKV__STATUS__INVALID_ARGUMENT, "frame is not a raftkv.Request");
        net_conn_close_after_flush(c, -EPROTO);
        return;
    }
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
        reply_now(cl, req->id, RAFTKV__STATUS__INVALID_ARGUMENT, "request names no operation this server knows");
        raftkv__request__free_unpacked(req, NULL);
        return;
    }
    if (kind == OP_WRITE && (req->client_id == 0) != (req->sequence == 0)) {
        reply_now(cl, req->id, RAFTKV__STATUS__INVALID_ARGUMENT,
                  "client_id and sequence go together: give both or neither");
        raftkv__request__free_unpacked(req, NULL);
        return;
    }
    struct op *op = op_new(p, cl, req, kind);
    if (!op) {
        reply_now(cl, req->id, RAFTKV__STATUS__INTERNAL, "out of memory");
        raftkv__request__free_unpacked(req, NULL);
        return;
    }
    switch (kind) {
    case OP_READ: route_read(p, op); break;
    case OP_FANOUT: status_answer(p, op); break;
    default: writeq_submit(p, op); break;
    }
}

static void on_client_close(struct net_conn *c, enum net_close_reason reason, int err, void *ud)
{
    struct client *cl = ud;
    if (!cl)
        return;
    net_conn_log_client_close(c, reason, err);
    if (cl->watching)
        watch_remove(cl->p, cl);
    /* Its ops run to the end (a write's session slot must learn the
     * outcome); their answers are dropped. */
    cl->conn = NULL;
    client_unref(cl);
}

static const struct net_conn_ops client_conn_ops = {
    .on_frame = on_client_frame,
    .on_close = on_client_close,
};

static void on_accept(struct net_listener *l, struct net_conn *c, void *ud)
{
    (void)l;
    struct client *cl = calloc(1, sizeof(*cl));
    if (!cl) {
        net_conn_destroy(c);
        return;
    }
    cl->p = ud;
    cl->conn = c;
    cl->refs = 1;
    net_conn_set_userdata(c, cl);
}

static void on_refuse(struct net_listener *l, uint64_t more, void *ud)
{
    (void)l;
    struct proxy *p = ud;
    log_warn("refused a client: %llu connections open (max_connections), none idle long enough "
             "to give way (%llu more refusals not logged)",
             (unsigned long long)p->cfg->cluster.max_connections, (unsigned long long)more);
}

static int open_listener(struct proxy *p, const char *name, const char *address, struct net_listener **out,
                         char *err, size_t errlen)
{
    struct net_listener_opts lo = {
        .max_conns = p->cfg->cluster.max_connections,
        .limits = p->limits,
        .conn_ops = &client_conn_ops,
    };
    static const struct net_listener_ops lops = {.on_accept = on_accept, .on_refuse = on_refuse};
    bool inherited = false;
    /* The unix socket is the same public entry point as the TCP port. */
    int rv = net_listener_start(p->loop, name, address, 0666, &lo, &lops, p, out, &inherited, err,
                                errlen);
    if (rv == 0)
        log_info("%s socket %s%s", name, address, inherited ? " (from systemd)" : "");
    return rv;
}

int proxy_start(struct proxy *p, char *err, size_t errlen)
{
    const struct config_proxy *pc = &p->cfg->proxy;
    if (pc->listen && *pc->listen) {
        int rv = open_listener(p, "client", pc->listen, &p->tcp_l, err, errlen);
        if (rv < 0)
            return rv;
    }
    if (pc->unix_path && *pc->unix_path) {
        char path[4200];
        snprintf(path, sizeof(path), "%s%s", pc->unix_path[0] == '/' ? "unix:" : "", pc->unix_path);
        int rv = open_listener(p, "unix", path, &p->unix_l, err, errlen);
        if (rv < 0)
            return rv;
    }
    return 0;
}

void proxy_stop(struct proxy *p)
{
    while (p->watchers)
        watch_remove(p, p->watchers);
    if (p->tcp_l)
        net_listener_free(p->tcp_l);
    if (p->unix_l)
        net_listener_free(p->unix_l);
    p->tcp_l = p->unix_l = NULL;
}
