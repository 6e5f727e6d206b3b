/* status.c - what the proxy tells about itself: STATUS (its view of the
 * cluster; with fanout, every node's own STATUS gathered within a short
 * deadline), WATCH_LEADER streams of the proxy's leader, and the systemd
 * STATUS= line.  The view is the answering loop's (workers.c), with the
 * counts of every loop added up. */
#include "proxy/proxy_int.h"

#include "common/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>

/* Fanout answers with whatever arrived by then: a stopped node must not
 * stall the operator's status view. */
#define FANOUT_WAIT_S 1.0

struct fanout {
    struct op *op;             /* the client's STATUS */
    double deadline;
    size_t n, pending;
    struct op **child;         /* per upstream; NULL once settled */
    uint8_t **packed;          /* per upstream: its NodeStatus, packed */
    size_t *packed_len;
    struct fanout *next;
};

static void send_proxy_status(struct proxy *p, struct op *op, Raftkv__NodeStatus **nodes, size_t n_nodes)
{
    double now = proxy_now(p);
    struct proxy_totals t;
    proxy_metrics_totals(p, &t);
    Raftkv__ProxyNodeView *views = calloc(p->n_ups, sizeof(*views));
    Raftkv__ProxyNodeView **vptr = calloc(p->n_ups, sizeof(*vptr));
    if (!views || !vptr) {
        free(views), free(vptr);
        op_fail(p, op, RAFTKV__STATUS__INTERNAL, "out of memory");
        return;
    }
    for (size_t i = 0; i < p->n_ups; i++) {
        const struct upstream *u = &p->ups[i];
        Raftkv__ProxyNodeView *v = &views[i];
        raftkv__proxy_node_view__init(v);
        v->has_id = 1;
        v->id = u->id;
        v->address = (char *)u->address;
        v->has_healthy = 1;
        v->healthy = u->up && u->healthy;
        v->has_in_flight = 1;
        v->in_flight = (uint32_t)t.up_in_flight[i];
        v->has_latency_us = 1;
        v->latency_us = (uint64_t)u->ewma_us;
        v->has_lag = u->lag_known;
        v->lag = u->lag;
        v->has_reads_served = 1;
        v->reads_served = t.reads[i];
        v->has_writes_served = 1;
        v->writes_served = t.writes[i];
        vptr[i] = v;
    }
    Raftkv__ProxyStatus ps = RAFTKV__PROXY_STATUS__INIT;
    ps.has_leader_id = 1;
    ps.leader_id = p->leader;
    ps.has_leader_since_ms = 1;
    ps.leader_since_ms = p->leader ? (uint64_t)((now - p->leader_since) * 1000.0) : 0;
    ps.n_nodes = p->n_ups;
    ps.nodes = vptr;
    ps.has_queued = 1;
    ps.queued = (uint32_t)t.queued;
    ps.has_in_flight = 1;
    ps.in_flight = (uint32_t)(t.in_flight - 1); /* not counting this STATUS */
    ps.version = PROXY_VERSION_STRING;
    ps.has_uptime_ms = 1;
    ps.uptime_ms = (uint64_t)((now - p->start) * 1000.0);
    Raftkv__StatusResponse sr = RAFTKV__STATUS_RESPONSE__INIT;
    sr.proxy = &ps;
    sr.n_nodes = n_nodes;
    sr.nodes = nodes;
    Raftkv__Response resp;
    rpc_response_init(&resp, op->client_req_id, RAFTKV__STATUS__OK, NULL);
    resp.result_case = RAFTKV__RESPONSE__RESULT_STATUS_INFO;
    resp.status_info = &sr;
    op_answer(p, op, &resp);
    free(views);
    free(vptr);
}

static void fanout_finish(struct proxy *p, struct fanout *fo)
{
    for (struct fanout **pp = &p->fanouts; *pp; pp = &(*pp)->next)
        if (*pp == fo) {
            *pp = fo->next;
            break;
        }
    Raftkv__NodeStatus **nodes = calloc(fo->n + 1, sizeof(*nodes));
    size_t n = 0;
    for (size_t i = 0; i < fo->n; i++) {
        struct op *c = fo->child[i];
        if (c) { /* still unanswered: drop it */
            if (c->up)
                upstream_forget(c->up, c);
            op_free(p, c);
        }
        if (nodes && fo->packed[i]) {
            nodes[n] = raftkv__node_status__unpack(NULL, fo->packed_len[i], fo->packed[i]);
            if (nodes[n])
                n++;
        }
        free(fo->packed[i]);
    }
    send_proxy_status(p, fo->op, nodes, n);
    for (size_t i = 0; i < n; i++)
        raftkv__node_status__free_unpacked(nodes[i], NULL);
    free(nodes);
    free(fo->child);
    free(fo->packed);
    free(fo->packed_len);
    free(fo);
}

void status_fanout_done(struct proxy *p, struct op *op, Raftkv__Response *resp)
{
    struct fanout *fo = op->fo;
    size_t i = op->fo_index;
    if (resp && resp->status == RAFTKV__STATUS__OK && resp->result_case == RAFTKV__RESPONSE__RESULT_STATUS_INFO &&
        resp->status_info->node) {
        size_t len = raftkv__node_status__get_packed_size(resp->status_info->node);
        fo->packed[i] = malloc(len ? len : 1);
        if (fo->packed[i])
            fo->packed_len[i] = raftkv__node_status__pack(resp->status_info->node, fo->packed[i]);
    }
    fo->child[i] = NULL;
    op_free(p, op);
    if (--fo->pending == 0)
        fanout_finish(p, fo);
}

static struct op *status_op(struct proxy *p)
{
    struct op *op = op_alloc(p);
    Raftkv__Request *req = calloc(1, sizeof(*req));
    Raftkv__StatusRequest *sr = calloc(1, sizeof(*sr));
    if (!op || !req || !sr) {
        if (op)
            op_free(p, op);
        free(req), free(sr);
        return NULL;
    }
    raftkv__request__init(req);
    raftkv__status_request__init(sr);
    req->op_case = RAFTKV__REQUEST__OP_STATUS;
    req->status = sr;
    op->req = req;
    op->op_case = RAFTKV__REQUEST__OP_STATUS;
    return op;
}

struct op *status_poll_op(struct proxy *p)
{
    struct op *op = status_op(p);
    if (op)
        op->kind = OP_POLL;
    return op;
}

void status_answer(struct proxy *p, struct op *op)
{
    if (!op->req->status->fanout) {
        send_proxy_status(p, op, NULL, 0);
        return;
    }
    struct fanout *fo = calloc(1, sizeof(*fo));
    if (!fo || !(fo->child = calloc(p->n_ups, sizeof(*fo->child))) ||
        !(fo->packed = calloc(p->n_ups, sizeof(*fo->packed))) ||
        !(fo->packed_len = calloc(p->n_ups, sizeof(*fo->packed_len)))) {
        if (fo)
            free(fo->child), free(fo->packed);
        free(fo);
        op_fail(p, op, RAFTKV__STATUS__INTERNAL, "out of memory");
        return;
    }
    fo->op = op;
    fo->n = p->n_ups;
    fo->deadline = proxy_now(p) + FANOUT_WAIT_S;
    fo->next = p->fanouts;
    p->fanouts = fo;
    fo->pending = 1; /* held until every child is out */
    for (size_t i = 0; i < p->n_ups; i++) {
        struct op *c = status_op(p);
        if (!c)
            continue;
        c->kind = OP_FANOUT;
        c->fo = fo;
        c->fo_index = i;
        if (upstream_send(&p->ups[i], c) < 0) {
            op_free(p, c);
            continue;
        }
        fo->child[i] = c;
        fo->pending++;
    }
    if (--fo->pending == 0)
        fanout_finish(p, fo);
}

void status_tick(struct proxy *p, double now)
{
    struct fanout *fo = p->fanouts;
    while (fo) {
        struct fanout *next = fo->next;
        if (now >= fo->deadline)
            fanout_finish(p, fo);
        fo = next;
    }
}

/* ---- WATCH_LEADER ------------------------------------------------------ */

static const char *leader_address(struct proxy *p)
{
    struct upstream *l = p->leader ? upstream_by_id(p, p->leader) : NULL;
    return l ? l->address : NULL;
}

void watch_add(struct proxy *p, struct rpc_client *cl, uint64_t id)
{
    rpc_watch(cl, id, p->leader, p->term, leader_address(p));
}

void watch_notify(struct proxy *p)
{
    rpc_notify_leader(&p->rpc, p->leader, p->term, leader_address(p));
}

void status_notify_systemd(struct proxy *p)
{
    char buf[sizeof(p->notify)];
    char lead[32];
    if (p->index) /* loop 0 speaks for the process */
        return;
    if (p->leader)
        snprintf(lead, sizeof(lead), "leader %u", p->leader);
    else
        snprintf(lead, sizeof(lead), "no leader");
    snprintf(buf, sizeof(buf), "STATUS=%s, %zu/%zu nodes healthy, %zu queued%s", lead,
             upstreams_healthy(p), p->n_ups, p->queue.n, p->sec.insecure ? " (INSECURE)" : "");
    if (strcmp(buf, p->notify) == 0)
        return;
    memcpy(p->notify, buf, sizeof(buf));
    sd_notify(0, buf);
}
