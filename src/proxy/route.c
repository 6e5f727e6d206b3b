/* route.c - where a read goes.  Followers first, by power of two choices on
 * outstanding requests (ties: lower recent latency), skipping nodes that are
 * down, unhealthy, or more than max_lag_entries behind (by the leader's
 * view or their own); the leader only when no follower can serve.
 * Consistency is the client's: a linearizable read on a follower costs a
 * ReadIndex round trip to the leader, not a proxy hop.  A read that fails
 * for a reason another node may not share goes to another node until its
 * deadline. */
#include "proxy/proxy_int.h"

#include "common/log.h"

#include <stdio.h>
#include <stdlib.h>

#define READ_RETRY_S 0.01

static bool can_serve(const struct proxy *p, const struct upstream *u, const struct op *op)
{
    if (!u->up || !u->healthy || (op->tried & (1ull << u->index)))
        return false;
    if (u->id == p->leader)
        return true;
    return !u->lag_known || u->lag <= p->cfg->proxy.max_lag_entries;
}

static bool better(const struct upstream *a, const struct upstream *b)
{
    if (a->in_flight != b->in_flight)
        return a->in_flight < b->in_flight;
    return a->ewma_us < b->ewma_us;
}

static struct upstream *choose(struct proxy *p, const struct op *op)
{
    struct upstream *cand[CONFIG_MAX_NODES];
    size_t n = 0;
    struct upstream *leader = NULL;
    for (size_t i = 0; i < p->n_ups && n < CONFIG_MAX_NODES; i++) {
        struct upstream *u = &p->ups[i];
        if (!can_serve(p, u, op))
            continue;
        if (u->id == p->leader)
            leader = u;
        else
            cand[n++] = u;
    }
    if (n == 0)
        return leader;
    if (n == 1)
        return cand[0];
    size_t a = (size_t)(proxy_random(p) % n), b = (size_t)(proxy_random(p) % (n - 1));
    if (b >= a)
        b++;
    return better(cand[b], cand[a]) ? cand[b] : cand[a];
}

static void park(struct proxy *p, struct op *op)
{
    op->not_before = proxy_now(p) + READ_RETRY_S;
    oplist_push(&p->parked, op);
}

static void give_up(struct proxy *p, struct op *op)
{
    if (op->last_msg[0])
        op_fail(p, op, op->last_status, "%s", op->last_msg);
    else
        op_fail(p, op, RAFTKV__STATUS__UNAVAILABLE, "no node could serve the read in time; %zu of %zu nodes reachable",
                upstreams_reachable(p), p->n_ups);
}

void route_read(struct proxy *p, struct op *op)
{
    if (proxy_now(p) >= op->deadline) {
        give_up(p, op);
        return;
    }
    struct upstream *u = choose(p, op);
    if (!u && op->tried) {
        op->tried = 0; /* everyone had a go: start over */
        u = choose(p, op);
    }
    if (!u || upstream_send(u, op) < 0) {
        park(p, op);
        return;
    }
    op->tried |= 1ull << u->index;
}

void route_requeue_read(struct proxy *p, struct op *op)
{
    proxy_metrics_retry(p, false);
    route_read(p, op);
}

void route_read_done(struct proxy *p, struct op *op, Raftkv__Response *resp)
{
    switch (resp->status) {
    case RAFTKV__STATUS__UNAVAILABLE:
    case RAFTKV__STATUS__TIMEOUT:
    case RAFTKV__STATUS__NOT_LEADER:
        op->last_status = resp->status;
        snprintf(op->last_msg, sizeof(op->last_msg), "%s", resp->message ? resp->message : "");
        /* A follower without a leader fails fast; do not spin on it. */
        proxy_metrics_retry(p, false);
        park(p, op);
        return;
    default:
        break;
    }
    op_answer(p, op, resp);
}

void route_tick(struct proxy *p, double now)
{
    struct op *op = p->parked.head;
    while (op) {
        struct op *next = op->next;
        if (op->not_before <= now || now >= op->deadline) {
            oplist_remove(&p->parked, op);
            route_read(p, op);
        }
        op = next;
    }
}
