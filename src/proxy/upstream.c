/* upstream.c - one reconnecting link per node: WATCH_LEADER on every link
 * (leader changes arrive at once), a STATUS poll as the safety net, and the
 * health of each node.  A node that leaves any request unanswered for
 * down_after_ms (a stopped process, a wedged disk) is unhealthy: it gets no
 * new reads, its pending reads go elsewhere, and STATUS probes with backoff
 * find out when it answers again. */
#include "proxy/proxy_int.h"

#include "common/addr.h"
#include "common/log.h"
#include "net/tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <systemd/sd-daemon.h>

#define PROBE_MIN_S 0.05
#define EWMA_WEIGHT 0.2

struct upstream *upstream_by_id(struct proxy *p, uint64_t id)
{
    for (size_t i = 0; i < p->n_ups; i++)
        if (p->ups[i].id == id)
            return &p->ups[i];
    return NULL;
}

size_t upstreams_reachable(const struct proxy *p)
{
    size_t n = 0;
    for (size_t i = 0; i < p->n_ups; i++)
        n += p->ups[i].up;
    return n;
}

size_t upstreams_healthy(const struct proxy *p)
{
    size_t n = 0;
    for (size_t i = 0; i < p->n_ups; i++)
        n += p->ups[i].up && p->ups[i].healthy;
    return n;
}

void proxy_set_leader(struct proxy *p, uint64_t id, uint64_t term, const char *why)
{
    if (term < p->term || (term == p->term && id == p->leader) || (term == p->term && id == 0 && p->leader))
        return;
    if (id && !upstream_by_id(p, id))
        return; /* not a member we know how to reach */
    uint32_t old = p->leader;
    p->term = term;
    if (id == old)
        return;
    p->leader = (uint32_t)id;
    p->leader_since = proxy_now(p);
    proxy_metrics_leader_changed(p);
    char b1[24], b2[24];
    if (p->index) /* every loop learns it; loop 0 says it */
        log_debug("loop %zu: leader is node %llu (term %llu)", p->index, (unsigned long long)id,
                  (unsigned long long)term);
    else if (id)
        log_event(LOG_NOTICE, "leader_change",
                  LOG_FIELDS({"RAFTKV_LEADER", log_u64(b1, id)}, {"RAFTKV_TERM", log_u64(b2, term)}),
                  "leader is node %llu (term %llu, from %s)", (unsigned long long)id,
                  (unsigned long long)term, why);
    else
        log_notice("no leader in term %llu (from %s); writes wait", (unsigned long long)term, why);
    watch_notify(p);
    status_notify_systemd(p);
    writeq_flush(p);
}

/* ---- sending ---------------------------------------------------------- */

int upstream_send(struct upstream *u, struct op *op)
{
    struct proxy *p = u->p;
    if (!u->up)
        return -ENOTCONN;
    op->up_id = ++p->next_up_id;
    int rv;
    if (op->body) {
        uint8_t hdr[PXFRAME_HEADER_MAX];
        struct iovec iov[2] = {
            {hdr, pxframe_put_header(hdr, op->up_id, op->sess_client_id, op->sess_seq)},
            {op->body, op->body_len},
        };
        rv = net_dial_sendv(u->dial, iov, 2);
    } else {
        op->req->has_id = 1;
        op->req->id = op->up_id;
        rv = net_dial_send_msg(u->dial, &op->req->base);
    }
    if (rv < 0)
        return rv;
    op->up = u;
    op->sent_at = proxy_now(p);
    oplist_push(&u->out, op);
    if (op->kind == OP_READ || op->kind == OP_WRITE)
        u->in_flight++;
    proxy_metrics_sent(p, u, op);
    return 0;
}

/* Stop waiting for op's answer on u (a late answer is then ignored). */
void upstream_forget(struct upstream *u, struct op *op)
{
    oplist_remove(&u->out, op);
    if (op->kind == OP_READ || op->kind == OP_WRITE)
        u->in_flight--;
    if (op->kind == OP_POLL)
        u->poll_out = false;
    op->up = NULL;
}

static void send_poll(struct upstream *u)
{
    struct op *op = status_poll_op(u->p);
    if (!op)
        return;
    if (upstream_send(u, op) < 0) {
        op_free(u->p, op);
        return;
    }
    u->poll_out = true;
}

/* ---- what nodes tell us ----------------------------------------------- */

/* A follower's lag: the largest of the leader's view (its last index minus
 * the node's match), the leader's commit minus the node's own applied index,
 * and the leader's match minus the node's own last index.  The leader's view
 * alone can be stale: a node that lost its log (wiped, restored from an old
 * backup, cut after corruption) keeps its old match there and would look
 * caught up while it serves nothing. */
static void update_lag(struct proxy *p, struct upstream *u)
{
    const struct upstream *l = p->leader ? upstream_by_id(p, p->leader) : NULL;
    u->lag = 0;
    u->lag_known = l == u;
    if (l == u)
        return;
    if (u->leader_view) {
        u->lag = u->leader_lag;
        u->lag_known = true;
    }
    if (u->status_known && l && l->status_known) {
        uint64_t behind = l->commit > u->applied ? l->commit - u->applied : 0;
        if (behind > u->lag)
            u->lag = behind;
        u->lag_known = true;
    }
    if (u->status_known && u->leader_view && u->match_index > u->last_index &&
        u->match_index - u->last_index > u->lag)
        u->lag = u->match_index - u->last_index;
}

static void learn_status(struct upstream *u, const Raftkv__NodeStatus *ns)
{
    struct proxy *p = u->p;
    u->applied = ns->applied_index;
    u->commit = ns->commit_index;
    u->last_index = ns->last_index;
    u->status_known = true;
    u->term = ns->term;
    u->role = ns->role && strcmp(ns->role, "leader") == 0 ? "leader" : "follower";
    if (ns->role && strcmp(ns->role, "leader") == 0) {
        proxy_set_leader(p, u->id, ns->term, "status poll");
        for (size_t i = 0; i < p->n_ups; i++)
            p->ups[i].leader_view = false;
        for (size_t i = 0; i < ns->n_followers; i++) {
            struct upstream *f = upstream_by_id(p, ns->followers[i]->id);
            if (f) {
                f->leader_lag = ns->followers[i]->lag;
                f->match_index = ns->followers[i]->match_index;
                f->leader_view = true;
            }
        }
    } else if (ns->leader_id) {
        proxy_set_leader(p, ns->leader_id, ns->term, "status poll");
    }
    for (size_t i = 0; i < p->n_ups; i++)
        update_lag(p, &p->ups[i]);
}

static void on_poll_done(struct upstream *u, const Raftkv__Response *resp)
{
    if (resp->status == RAFTKV__STATUS__OK && resp->result_case == RAFTKV__RESPONSE__RESULT_STATUS_INFO &&
        resp->status_info->node)
        learn_status(u, resp->status_info->node);
}

static void mark_healthy(struct upstream *u, bool healthy, const char *why)
{
    if (u->healthy == healthy)
        return;
    u->healthy = healthy;
    if (healthy) {
        log_notice("node %u answers again; healthy", u->id);
    } else {
        log_warn("node %u unhealthy: %s", u->id, why);
        u->probe_backoff = PROBE_MIN_S;
        u->next_poll = proxy_now(u->p) + u->probe_backoff;
        /* Reads are idempotent: give the stuck ones to someone else now. */
        struct op *op = u->out.head;
        while (op) {
            struct op *next = op->next;
            if (op->kind == OP_READ) {
                upstream_forget(u, op);
                route_requeue_read(u->p, op);
            }
            op = next;
        }
    }
    status_notify_systemd(u->p);
}

/* The op a response answers.  u->out is in sending order, which is up_id
 * order, and nodes answer mostly in that order too: the search from the
 * front ends at once, or at the first op sent after the answer's. */
static struct op *find_op(struct upstream *u, uint64_t id)
{
    for (struct op *op = u->out.head; op && op->up_id <= id; op = op->next)
        if (op->up_id == id)
            return op;
    return NULL;
}

/* op's answer arrived: its latency, and no longer outstanding. */
static void answered(struct upstream *u, struct op *op)
{
    double us = (proxy_now(u->p) - op->sent_at) * 1e6;
    u->ewma_us = u->ewma_us ? u->ewma_us * (1 - EWMA_WEIGHT) + us * EWMA_WEIGHT : us;
    upstream_forget(u, op);
}

/* ... with a result that ends it (no retry). */
static void count_served(struct upstream *u, const struct op *op)
{
    if (op->kind == OP_READ)
        u->reads_served++;
    else if (op->kind == OP_WRITE)
        u->writes_served++;
    proxy_metrics_served(u->p, u, op);
}

static bool final_status(int32_t st)
{
    return st == RAFTKV__STATUS__OK || st == RAFTKV__STATUS__NOT_FOUND || st == RAFTKV__STATUS__CAS_FAILED;
}

/* A client's read or write answered for good, with no leader hint to take
 * out: relay the node's bytes under the client's id.  false: the decoding
 * path must look at it (retries, hints, the proxy's own requests). */
static bool relay(struct upstream *u, const uint8_t *payload, size_t len, const struct pxframe_response *r)
{
    struct proxy *p = u->p;
    struct op *op = find_op(u, r->id);
    if (!op || !op->cl || (op->kind != OP_READ && op->kind != OP_WRITE) || !final_status(r->status) ||
        r->has_leader_hint || r->cuts.overflow)
        return false;
    answered(u, op);
    count_served(u, op);
    proxy_metrics_answered(p, op, r->status);
    if (op->cl->conn) {
        uint8_t hdr[PXFRAME_HEADER_MAX];
        struct iovec iov[PXFRAME_MAX_CUTS + 2] = {{hdr, pxframe_put_header(hdr, op->client_req_id, 0, 0)}};
        size_t n = 1 + pxframe_uncut_iov(payload, len, &r->cuts, iov + 1);
        net_conn_sendv(op->cl->conn, iov, n);
    }
    op_free(p, op);
    return true;
}

static void on_frame(struct net_dial *d, const uint8_t *payload, size_t len, void *ud)
{
    (void)d;
    struct upstream *u = ud;
    struct proxy *p = u->p;
    struct pxframe_response r;
    if (pxframe_scan_response(payload, len, &r) == 0 && r.id != WATCH_ID) {
        if (!u->healthy)
            mark_healthy(u, true, NULL);
        if (relay(u, payload, len, &r))
            return;
    }
    Raftkv__Response *resp = raftkv__response__unpack(NULL, len, payload);
    if (!resp) {
        log_warn("node %u sent a frame that is not a Response; reconnecting", u->id);
        net_dial_reset(u->dial, -EPROTO);
        return;
    }
    if (!u->healthy)
        mark_healthy(u, true, NULL);
    if (resp->id == WATCH_ID && resp->result_case == RAFTKV__RESPONSE__RESULT_LEADER_EVENT) {
        const Raftkv__LeaderEvent *ev = resp->leader_event;
        proxy_set_leader(p, ev->leader_id, ev->term, "leader event");
        raftkv__response__free_unpacked(resp, NULL);
        return;
    }
    struct op *op = find_op(u, resp->id);
    if (!op) { /* answered after we gave up on it */
        raftkv__response__free_unpacked(resp, NULL);
        return;
    }
    answered(u, op);
    if (final_status(resp->status))
        count_served(u, op);
    if (resp->status == RAFTKV__STATUS__NOT_LEADER && resp->has_leader_id && resp->leader_id)
        proxy_set_leader(p, resp->leader_id, p->term, "not-leader hint");
    switch (op->kind) {
    case OP_READ: route_read_done(p, op, resp); break;
    case OP_WRITE:
    case OP_TRANSFER: writeq_done(p, op, resp); break;
    case OP_POLL:
        on_poll_done(u, resp);
        op_free(p, op);
        break;
    case OP_FANOUT: status_fanout_done(p, op, resp); break;
    }
    raftkv__response__free_unpacked(resp, NULL);
}

static void on_up(struct net_dial *d, void *ud)
{
    struct upstream *u = ud;
    struct proxy *p = u->p;
    u->up = true;
    u->healthy = true;
    u->lag_known = u->status_known = u->leader_view = false;
    log_info("link to node %u (%s) up", u->id, u->address);
    Raftkv__WatchLeaderRequest w = RAFTKV__WATCH_LEADER_REQUEST__INIT;
    Raftkv__Request req = RAFTKV__REQUEST__INIT;
    req.has_id = 1;
    req.id = WATCH_ID;
    req.op_case = RAFTKV__REQUEST__OP_WATCH_LEADER;
    req.watch_leader = &w;
    net_dial_send_msg(d, &req.base);
    send_poll(u);
    u->next_poll = proxy_now(p) + (double)p->cfg->proxy.poll_interval_ms / 1000.0;
    status_notify_systemd(p);
    writeq_flush(p);
    route_tick(p, proxy_now(p));
}

static void on_down(struct net_dial *d, enum net_close_reason reason, int err, void *ud)
{
    (void)d;
    struct upstream *u = ud;
    struct proxy *p = u->p;
    u->up = false;
    u->poll_out = false;
    log_warn("link to node %u (%s) down: %s%s%s", u->id, u->address, net_close_reason_str(reason),
             err ? ": " : "", err ? strerror(-err) : "");
    if (p->leader == u->id)
        proxy_set_leader(p, 0, p->term, "leader link lost");
    struct op *op;
    while ((op = u->out.head)) {
        upstream_forget(u, op);
        switch (op->kind) {
        case OP_READ: route_requeue_read(p, op); break;
        case OP_WRITE:
        case OP_TRANSFER: writeq_requeue(p, op, true, "leader link lost"); break;
        case OP_POLL: op_free(p, op); break;
        case OP_FANOUT: status_fanout_done(p, op, NULL); break;
        }
    }
    status_notify_systemd(p);
}

static void on_fail(struct net_dial *d, int err, uint32_t retry_ms, void *ud)
{
    (void)d;
    struct upstream *u = ud;
    if (net_dial_failures(u->dial) == 1 || log_enabled(LOG_DEBUG))
        log_info("cannot reach node %u (%s): %s; retrying in %u ms", u->id, u->address, strerror(-err),
                 retry_ms);
}

static const struct net_dial_ops dial_ops = {
    .on_up = on_up, .on_frame = on_frame, .on_down = on_down, .on_fail = on_fail};

void upstreams_tick(struct proxy *p, double now)
{
    double down_after = (double)p->cfg->proxy.down_after_ms / 1000.0;
    double poll = (double)p->cfg->proxy.poll_interval_ms / 1000.0;
    for (size_t i = 0; i < p->n_ups; i++) {
        struct upstream *u = &p->ups[i];
        if (!u->up)
            continue;
        if (u->healthy && u->out.head && now - u->out.head->sent_at > down_after) {
            char why[96];
            snprintf(why, sizeof(why), "a request unanswered for %.0f ms",
                     (now - u->out.head->sent_at) * 1000.0);
            mark_healthy(u, false, why);
        }
        if (u->poll_out || now < u->next_poll)
            continue;
        send_poll(u);
        if (u->healthy) {
            u->next_poll = now + poll;
        } else {
            u->probe_backoff = u->probe_backoff * 2 > poll ? poll : u->probe_backoff * 2;
            u->next_poll = now + u->probe_backoff;
        }
    }
}

int upstreams_start(struct proxy *p, char *err, size_t errlen)
{
    const struct config *cfg = p->cfg;
    p->ups = calloc(cfg->n_nodes, sizeof(*p->ups));
    if (!p->ups) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    p->n_ups = cfg->n_nodes;
    p->next_up_id = WATCH_ID;
    struct net_dial_opts o = {
        .limits = p->limits,
        .connect_timeout_ms = (uint32_t)cfg->cluster.connect_timeout_ms,
        .backoff_min_ms = (uint32_t)cfg->cluster.reconnect_min_ms,
        .backoff_max_ms = (uint32_t)cfg->cluster.reconnect_max_ms,
        .tls = p->sec.tls,
    };
    for (size_t i = 0; i < cfg->n_nodes; i++) {
        struct upstream *u = &p->ups[i];
        u->p = p;
        u->index = i;
        u->id = cfg->nodes[i].id;
        u->address = cfg->nodes[i].client;
        u->role = "unknown";
        struct addr a;
        int rv = addr_resolve(u->address, &a);
        if (rv < 0) {
            snprintf(err, errlen, "node %u client address '%s': %s", u->id, u->address, strerror(-rv));
            return rv;
        }
        /* Requests go only to the node that proves it is u->id. */
        net_tls_node_name(u->id, o.tls_expect_name, sizeof(o.tls_expect_name));
        u->dial = net_dial_new(p->loop, &a, &o, &dial_ops, u);
        if (!u->dial) {
            snprintf(err, errlen, "out of memory");
            return -ENOMEM;
        }
    }
    return 0;
}

void upstreams_stop(struct proxy *p)
{
    for (size_t i = 0; i < p->n_ups; i++) {
        struct upstream *u = &p->ups[i];
        struct op *op;
        while ((op = u->out.head)) {
            upstream_forget(u, op);
            op_free(p, op);
        }
        if (u->dial)
            net_dial_free(u->dial);
    }
    free(p->ups);
    p->ups = NULL;
    p->n_ups = 0;
}
