/* proxy.c - the client side of the proxy: listeners, turning requests into
 * ops, and answering them with the client's own request id.  Connections
 * themselves are src/rpc's; the routing lives in route.c (reads), writeq.c
 * (writes) and status.c. */
#include "proxy/proxy_int.h"

#include "common/addr.h"
#include "common/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
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

/* ---- ops ------------------------------------------------------------- */

/* Answered ops are kept for the next requests: under load the proxy
 * allocates nothing per request.  The list is capped so that a burst does
 * not pin its peak forever. */
#define FREE_OPS_MAX 4096

struct op *op_alloc(struct proxy *p)
{
    struct op *op = p->free_ops;
    if (!op)
        return calloc(1, sizeof(*op));
    p->free_ops = op->next;
    p->n_free_ops--;
    /* Everything but the inline body, which is written before it is read. */
    memset(op, 0, offsetof(struct op, body_inline));
    return op;
}

void ops_free(struct proxy *p)
{
    struct op *op;
    while ((op = p->free_ops)) {
        p->free_ops = op->next;
        free(op);
    }
    p->n_free_ops = 0;
}

void op_free(struct proxy *p, struct op *op)
{
    if (op->slot)
        session_release(p, op->slot);
    if (op->req)
        raftkv__request__free_unpacked(op->req, NULL);
    if (op->body && op->body != op->body_inline)
        free(op->body);
    if (op->cl) {
        p->in_flight--;
        rpc_client_release(op->cl);
    }
    if (p->n_free_ops >= FREE_OPS_MAX) {
        free(op);
        return;
    }
    op->next = p->free_ops;
    p->free_ops = op;
    p->n_free_ops++;
}

uint64_t op_client_id(const struct op *op)
{
    return op->req ? op->req->client_id : op->sess_client_id;
}

void op_set_session(struct op *op, uint64_t client_id, uint64_t seq)
{
    if (op->req) {
        op->req->has_client_id = 1;
        op->req->client_id = client_id;
        op->req->has_sequence = 1;
        op->req->sequence = seq;
    } else {
        op->sess_client_id = client_id;
        op->sess_seq = seq;
    }
}

/* ---- answers ---------------------------------------------------------- */

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

static struct op *op_new(struct proxy *p, struct rpc_client *cl, enum op_kind kind, int op_case, uint64_t id,
                         uint32_t timeout_ms)
{
    struct op *op = op_alloc(p);
    if (!op)
        return NULL;
    op->kind = kind;
    op->op_case = op_case;
    op->cl = cl;
    /* Caps what one client can park here (limits.max_in_flight). */
    rpc_client_hold(cl);
    p->in_flight++;
    op->client_req_id = id;
    op->arrival = ++p->next_arrival;
    op->arrived = proxy_now(p);
    uint64_t ms = timeout_ms ? timeout_ms : p->cfg->cluster.request_timeout_ms;
    op->deadline = proxy_now(p) + (double)ms / 1000.0;
    return op;
}

/* The kind of op a request becomes; false for the ones the proxy does not
 * route (WATCH_LEADER, unknown operations). */
static bool kind_of(int op_case, enum op_kind *kind)
{
    switch (op_case) {
    case RAFTKV__REQUEST__OP_GET:
    case RAFTKV__REQUEST__OP_LIST: *kind = OP_READ; return true;
    case RAFTKV__REQUEST__OP_SET:
    case RAFTKV__REQUEST__OP_DEL:
    case RAFTKV__REQUEST__OP_CAS: *kind = OP_WRITE; return true;
    case RAFTKV__REQUEST__OP_TRANSFER_LEADER: *kind = OP_TRANSFER; return true;
    case RAFTKV__REQUEST__OP_STATUS: *kind = OP_FANOUT; return true;
    default: return false;
    }
}

/* false (answered) for a write whose session is half given. */
static bool session_ok(struct rpc_client *cl, enum op_kind kind, uint64_t id, uint64_t client_id, uint64_t seq)
{
    if (kind == OP_WRITE && (client_id == 0) != (seq == 0)) {
        rpc_reply_error(cl, id, RAFTKV__STATUS__INVALID_ARGUMENT,
                        "client_id and sequence go together: give both or neither");
        return false;
    }
    return true;
}

static void dispatch(struct proxy *p, struct op *op)
{
    switch (op->kind) {
    case OP_READ: route_read(p, op); break;
    case OP_FANOUT: status_answer(p, op); break;
    default: writeq_submit(p, op); break;
    }
}

static void on_request(struct rpc_client *cl, Raftkv__Request *req)
{
    struct proxy *p = cl->srv->owner;
    enum op_kind kind;
    if (req->op_case == RAFTKV__REQUEST__OP_WATCH_LEADER) {
        watch_add(p, cl, req->id);
        raftkv__request__free_unpacked(req, NULL);
        return;
    }
    if (!kind_of(req->op_case, &kind)) {
        rpc_reply_error(cl, req->id, RAFTKV__STATUS__INVALID_ARGUMENT,
                        "request names no operation this server knows");
        raftkv__request__free_unpacked(req, NULL);
        return;
    }
    if (!session_ok(cl, kind, req->id, req->client_id, req->sequence)) {
        raftkv__request__free_unpacked(req, NULL);
        return;
    }
    struct op *op = op_new(p, cl, kind, req->op_case, req->id, req->timeout_ms);
    if (!op) {
        rpc_reply_error(cl, req->id, RAFTKV__STATUS__INTERNAL, "out of memory");
        raftkv__request__free_unpacked(req, NULL);
        return;
    }
    op->req = req;
    dispatch(p, op);
}

/* ---- the lean path ---------------------------------------------------- */

static void *scratch_alloc(void *data, size_t size)
{
    struct proxy *p = data;
    size = (size + 15) & ~(size_t)15;
    if (size <= sizeof(p->scratch.buf) - p->scratch.used) {
        void *at = p->scratch.buf + p->scratch.used;
        p->scratch.used += size;
        return at;
    }
    return malloc(size); /* a big value: rare */
}

static void scratch_free(void *data, void *ptr)
{
    struct proxy *p = data;
    uint8_t *b = ptr;
    if (b < p->scratch.buf || b >= p->scratch.buf + sizeof(p->scratch.buf))
        free(ptr);
}

/* Would a node take these bytes as a Request?  A frame it refuses makes it
 * close the link, and with it every other client's requests on it, so the
 * proxy forwards only what passes: the wire walk of frame.c (fuzzed to
 * pass nothing protobuf-c refuses), or, for what it cannot judge, the
 * node's own decoder into an arena, so the check allocates nothing. */
static bool request_decodes(struct proxy *p, const uint8_t *payload, size_t len)
{
    if (pxframe_valid(&raftkv__request__descriptor, payload, len))
        return true;
    p->scratch.used = 0;
    Raftkv__Request *req = raftkv__request__unpack(&p->scratch.a, len, payload);
    if (!req)
        return false;
    raftkv__request__free_unpacked(req, &p->scratch.a);
    p->scratch.used = 0;
    return true;
}

/* Reads and writes are forwarded as the bytes the client sent, re-addressed
 * (frame.c).  Anything else, or a frame the router cannot cut, goes the
 * decoding path (false). */
static bool on_frame(struct rpc_client *cl, const uint8_t *payload, size_t len)
{
    struct proxy *p = cl->srv->owner;
    struct pxframe_request fr;
    enum op_kind kind = OP_READ;
    if (pxframe_scan_request(payload, len, &fr) < 0 || fr.cuts.overflow || !kind_of((int)fr.op, &kind) ||
        (kind != OP_READ && kind != OP_WRITE) || !request_decodes(p, payload, len))
        return false;
    /* the rights check the decoded path gets in src/rpc, before anything
     * is forwarded */
    if (!rpc_authorize_op(cl, (Raftkv__Request__OpCase)fr.op, fr.id))
        return true;
    if (!session_ok(cl, kind, fr.id, fr.client_id, fr.sequence))
        return true;
    struct op *op = op_new(p, cl, kind, (int)fr.op, fr.id, fr.timeout_ms);
    if (op)
        op->body = len <= sizeof(op->body_inline) ? op->body_inline : malloc(len);
    if (!op || !op->body) {
        if (op)
            op_free(p, op);
        rpc_reply_error(cl, fr.id, RAFTKV__STATUS__INTERNAL, "out of memory");
        return true;
    }
    op->body_len = pxframe_copy_uncut(payload, len, &fr.cuts, op->body);
    op->sess_client_id = fr.client_id;
    op->sess_seq = fr.sequence;
    dispatch(p, op);
    return true;
}

static const struct rpc_server_ops rpc_ops = {.on_request = on_request, .on_frame = on_frame};

static void server_init(struct proxy *p)
{
    p->scratch.a.alloc = scratch_alloc;
    p->scratch.a.free = scratch_free;
    p->scratch.a.allocator_data = p;
    /* max_connections holds per loop: a share would refuse clients at one
     * loop while another has room, since the kernel, not the proxy, picks
     * the loop that accepts. */
    rpc_server_init(&p->rpc, p->loop, &rpc_ops, p, p->cfg->cluster.max_connections, &p->limits);
    rpc_server_secure(&p->rpc, &p->sec);
}

int proxy_start(struct proxy *p, char *err, size_t errlen)
{
    const struct config_proxy *pc = &p->cfg->proxy;
    server_init(p);
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

int proxy_share_listeners(struct proxy *p, const struct proxy *first, char *err, size_t errlen)
{
    server_init(p);
    int rv = 0;
    if (first->tcp_l)
        rv = rpc_server_share(&p->rpc, first->tcp_l, &p->tcp_l);
    if (rv >= 0 && first->unix_l)
        rv = rpc_server_share(&p->rpc, first->unix_l, &p->unix_l);
    if (rv < 0)
        snprintf(err, errlen, "proxy thread %zu cannot share the listening sockets: %s", p->index,
                 strerror(-rv));
    return rv;
}

/* xorshift64: read routing's coin, per loop (random() takes a lock). */
uint64_t proxy_random(struct proxy *p)
{
    uint64_t x = p->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return p->rng = x;
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
