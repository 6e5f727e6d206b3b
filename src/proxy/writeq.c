/* writeq.c - writes (and leadership transfers) go to the leader; while none
 * is known they wait here, bounded in number (queue_max) and in time
 * (queue_wait_ms), and leave in arrival order.  A write that was refused
 * (NOT_LEADER, UNAVAILABLE) was not applied and simply goes again; one whose
 * fate is unknown (link lost after sending, TIMEOUT, leader replaced) goes
 * again under the same (client_id, sequence), so the node's session table
 * answers it with the original result instead of applying it twice. */
#include "proxy/proxy_int.h"

#include "common/log.h"

#include <stdio.h>
#include <string.h>

/* Pacing between attempts that a node refused without naming a leader. */
#define RETRY_S 0.01
/* How often sent writes are checked against their deadlines. */
#define DEADLINE_SCAN_S 0.05

static const char SESSION_EXPIRED[] = "client session expired";

static void apply_slot(struct op *op)
{
    op_set_session(op, op->slot->client_id, op->slot->seq);
}

static void fail_waiting(struct proxy *p, struct op *op, const char *why)
{
    if (op->maybe_applied)
        op_fail(p, op, RAFTKV__STATUS__TIMEOUT,
                "write may or may not have been applied: %s; %zu of %zu nodes reachable", why,
                upstreams_reachable(p), p->n_ups);
    else
        op_fail(p, op, RAFTKV__STATUS__UNAVAILABLE, "%s; cluster has %zu of %zu nodes reachable", why,
                upstreams_reachable(p), p->n_ups);
}

void writeq_submit(struct proxy *p, struct op *op)
{
    if (op->kind == OP_WRITE && op_client_id(op) == 0) {
        op->slot = session_acquire(p);
        if (!op->slot) {
            op_fail(p, op, RAFTKV__STATUS__INTERNAL, "out of memory");
            return;
        }
        apply_slot(op);
    }
    struct upstream *l = p->leader ? upstream_by_id(p, p->leader) : NULL;
    if ((!l || !l->up || p->queue.n) && p->queue.n >= p->cfg->proxy.queue_max) {
        op_fail(p, op, RAFTKV__STATUS__UNAVAILABLE, "proxy queue full: %zu writes already wait for a leader",
                p->queue.n);
        return;
    }
    op->deadline += (double)p->cfg->proxy.queue_wait_ms / 1000.0;
    op->queued_since = proxy_now(p);
    if (!l || !l->up)
        proxy_metrics_queued(p);
    oplist_insert_ordered(&p->queue, op);
    writeq_flush(p);
}

void writeq_requeue(struct proxy *p, struct op *op, bool fate_unknown, const char *why)
{
    double now = proxy_now(p);
    if (fate_unknown)
        op->maybe_applied = true;
    log_debug("write %llu back in the queue: %s", (unsigned long long)op->arrival, why);
    proxy_metrics_retry(p, true);
    op->not_before = now + RETRY_S;
    op->queued_since = now;
    oplist_insert_ordered(&p->queue, op);
}

/* Writes still waiting on a node that no longer leads: its successor
 * decides them now (same session), whether the old one is dead or not.
 * Writes are only ever sent to the leader, so this is needed once per
 * leader, not on every flush (it walks every request out, reads too). */
static void reclaim_from_old_leaders(struct proxy *p)
{
    if (p->reclaimed_for == p->leader)
        return;
    p->reclaimed_for = p->leader;
    for (size_t i = 0; i < p->n_ups; i++) {
        struct upstream *u = &p->ups[i];
        if (u->id == p->leader)
            continue;
        struct op *op = u->out.head;
        while (op) {
            struct op *next = op->next;
            /* A transfer is answered by the node that ran it; sending it
             * again could move leadership twice. */
            if (op->kind == OP_WRITE) {
                upstream_forget(u, op);
                writeq_requeue(p, op, true, "leader replaced");
                op->not_before = 0;
            }
            op = next;
        }
    }
}

void writeq_flush(struct proxy *p)
{
    struct upstream *l = p->leader ? upstream_by_id(p, p->leader) : NULL;
    if (!l || !l->up)
        return;
    reclaim_from_old_leaders(p);
    double now = proxy_now(p);
    struct op *op;
    while ((op = p->queue.head) && op->not_before <= now) {
        oplist_remove(&p->queue, op);
        if (upstream_send(l, op) < 0) {
            oplist_insert_ordered(&p->queue, op);
            return;
        }
        proxy_metrics_dequeued(p, op);
    }
}

void writeq_done(struct proxy *p, struct op *op, Raftkv__Response *resp)
{
    switch (resp->status) {
    case RAFTKV__STATUS__NOT_LEADER:
        writeq_requeue(p, op, false, "not leader");
        op->not_before = 0;
        writeq_flush(p);
        return;
    case RAFTKV__STATUS__UNAVAILABLE:
        writeq_requeue(p, op, false, resp->message ? resp->message : "unavailable");
        return;
    case RAFTKV__STATUS__TIMEOUT:
        if (op->kind == OP_TRANSFER)
            break;
        writeq_requeue(p, op, true, "node timed out");
        return;
    case RAFTKV__STATUS__INVALID_ARGUMENT:
        if (op->slot && resp->message && strstr(resp->message, SESSION_EXPIRED)) {
            if (op->maybe_applied) {
                op_fail(p, op, RAFTKV__STATUS__TIMEOUT,
                        "write may or may not have been applied: its session expired while it was retried");
                return;
            }
            /* Nothing of this write can have been applied under the old id. */
            session_renew(op->slot);
            op->slot->seq = 1;
            apply_slot(op);
            writeq_requeue(p, op, false, "session expired");
            op->not_before = 0;
            writeq_flush(p);
            return;
        }
        break;
    default:
        break;
    }
    op_answer(p, op, resp);
}

void writeq_tick(struct proxy *p, double now)
{
    double wait = (double)p->cfg->proxy.queue_wait_ms / 1000.0;
    struct op *op = p->queue.head;
    while (op) {
        struct op *next = op->next;
        if (now - op->queued_since >= wait || now >= op->deadline) {
            char why[96];
            oplist_remove(&p->queue, op);
            snprintf(why, sizeof(why), "no leader elected within %llu ms",
                     (unsigned long long)p->cfg->proxy.queue_wait_ms);
            fail_waiting(p, op, why);
        }
        op = next;
    }
    /* A node that never answers (stopped, wedged) must not hold a write
     * past its deadline.  That walks every request out on every link, so
     * not on every tick: under pipelined load it was 3% of the proxy's
     * CPU, and a deadline of seconds can be met DEADLINE_SCAN_S late. */
    for (size_t i = 0; now >= p->next_deadline_scan && i < p->n_ups; i++) {
        struct upstream *u = &p->ups[i];
        op = u->out.head;
        while (op) {
            struct op *next = op->next;
            if ((op->kind == OP_WRITE || op->kind == OP_TRANSFER) && now >= op->deadline) {
                upstream_forget(u, op);
                op->maybe_applied = op->kind == OP_WRITE;
                fail_waiting(p, op, "no answer from the leader in time");
            }
            op = next;
        }
    }
    if (now >= p->next_deadline_scan)
        p->next_deadline_scan = now + DEADLINE_SCAN_S;
    writeq_flush(p);
}
