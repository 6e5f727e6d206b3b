/* metrics.c - raftkv-proxy's Prometheus series and its /metrics, /healthz
 * and /readyz endpoint (metrics/http.h).  Every loop (workers.c) moves the
 * shared counters where things happen and stores its part of the gauges on
 * every tick; loop 0 sums the parts into the gauges.  The HTTP thread
 * reads only atomics. */
#include "proxy/proxy_int.h"

#include "common/log.h"
#include "metrics/http.h"
#include "metrics/metrics.h"
#include "metrics/requests.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct proxy_metrics {
    struct metrics_registry *reg;
    struct metrics_http *http;
    struct metrics_requests requests;
    struct metrics_gauge *has_leader, *leader_up, *in_flight, *queued, *connections;
    struct metrics_counter *leader_changes, *writes_queued, *write_retries, *read_retries;
    struct metrics_hist *queue_wait;
    struct {
        struct metrics_counter *sent, *reads, *writes;
        struct metrics_gauge *in_flight, *ewma, *healthy, *up;
    } *ups;
    /* One per loop: its heartbeat and what it alone knows of the gauges
     * that add up over loops (up_in_flight: one per node). */
    struct part {
        struct metrics_heartbeat hb;
        _Atomic uint64_t in_flight, queued, conns;
        _Atomic uint64_t *up_in_flight;
    } *parts;
    size_t n_parts, n_ups;
};

/* The proxy's loop ticks every 5 ms; standing still this long is stuck. */
#define PROXY_HEALTH_MAX_S 5.0

/* Healthy while every loop turns. */
static int healthz(void *arg, char *reason, size_t len)
{
    struct proxy_metrics *m = arg;
    for (size_t i = 0; i < m->n_parts; i++)
        if (metrics_heartbeat_check(&m->parts[i].hb, PROXY_HEALTH_MAX_S, reason, len) < 0)
            return -1;
    return 0;
}

static int readyz(void *arg, char *reason, size_t len)
{
    struct proxy_metrics *m = arg;
    if (healthz(arg, reason, len) < 0)
        return -1;
    if (metrics_gauge_get(m->has_leader) == 0) {
        snprintf(reason, len, "not ready: no leader known; writes wait in the queue");
        return -1;
    }
    if (metrics_gauge_get(m->leader_up) == 0) {
        snprintf(reason, len, "not ready: the leader does not answer the proxy");
        return -1;
    }
    return 0;
}

static int register_all(struct proxy *p, struct proxy_metrics *m)
{
    struct metrics_registry *r = m->reg;
    m->has_leader = metrics_gauge_new(r, "raftkv_proxy_has_leader",
                                      "1 if the proxy knows the cluster's leader, else 0.", NULL);
    m->leader_up = metrics_gauge_new(r, "raftkv_proxy_leader_reachable",
                                     "1 if the leader is connected and answers the proxy in time, else 0.", NULL);
    m->leader_changes = metrics_counter_new(r, "raftkv_proxy_leader_changes_total",
                                            "Times the proxy learned of a new leader.", NULL, 0);
    m->in_flight = metrics_gauge_new(r, "raftkv_proxy_requests_in_flight",
                                     "Client requests not yet answered.", NULL);
    m->queued = metrics_gauge_new(r, "raftkv_proxy_queued_writes",
                                  "Writes waiting in the queue for a leader now.", NULL);
    m->writes_queued = metrics_counter_new(
        r, "raftkv_proxy_writes_queued_total",
        "Writes that arrived while no leader was reachable and waited in the queue.", NULL, 0);
    m->queue_wait = metrics_hist_new(
        r, "raftkv_proxy_queue_wait_seconds",
        "Time writes spent in the leader queue (about 0 while a leader is reachable).", NULL,
        metrics_buckets_latency, metrics_buckets_latency_n, 0);
    m->write_retries = metrics_counter_new(
        r, "raftkv_proxy_retries_total",
        "Requests sent again: a write refused or of unknown fate, a read on another node.",
        "kind=\"write\"", 0);
    m->read_retries = metrics_counter_new(
        r, "raftkv_proxy_retries_total",
        "Requests sent again: a write refused or of unknown fate, a read on another node.",
        "kind=\"read\"", 0);
    m->connections = metrics_gauge_new(r, "raftkv_proxy_connections", "Open client connections.",
                                       NULL);
    if (!m->has_leader || !m->leader_up || !m->leader_changes || !m->in_flight || !m->queued ||
        !m->writes_queued || !m->queue_wait || !m->write_retries || !m->read_retries ||
        !m->connections)
        return -ENOMEM;
    m->ups = calloc(p->n_ups ? p->n_ups : 1, sizeof(*m->ups));
    m->n_parts = p->n_workers ? p->n_workers : 1;
    m->n_ups = p->n_ups;
    m->parts = calloc(m->n_parts, sizeof(*m->parts));
    if (!m->ups || !m->parts)
        return -ENOMEM;
    for (size_t i = 0; i < m->n_parts; i++) {
        m->parts[i].up_in_flight = calloc(p->n_ups ? p->n_ups : 1, sizeof(*m->parts[i].up_in_flight));
        if (!m->parts[i].up_in_flight)
            return -ENOMEM;
        metrics_heartbeat_beat(&m->parts[i].hb); /* loops not started yet are not stuck */
    }
    for (size_t i = 0; i < p->n_ups; i++) {
        char l[32];
        snprintf(l, sizeof(l), "node=\"%u\"", p->ups[i].id);
        m->ups[i].sent = metrics_counter_new(r, "raftkv_proxy_upstream_requests_total",
                                             "Client reads and writes sent to each node (retries included).",
                                             l, 0);
        m->ups[i].reads = metrics_counter_new(r, "raftkv_proxy_upstream_reads_total",
                                              "Reads each node served.", l, 0);
        m->ups[i].writes = metrics_counter_new(r, "raftkv_proxy_upstream_writes_total",
                                               "Writes each node decided.", l, 0);
        m->ups[i].in_flight = metrics_gauge_new(r, "raftkv_proxy_upstream_in_flight",
                                                "Client reads and writes each node holds now.", l);
        m->ups[i].ewma = metrics_gauge_new(
            r, "raftkv_proxy_upstream_latency_seconds",
            "Moving average (EWMA) of each node's answer time, as the read routing sees it.", l);
        m->ups[i].healthy = metrics_gauge_new(
            r, "raftkv_proxy_upstream_healthy",
            "1 if the node answers in time and is caught up enough for reads.", l);
        m->ups[i].up = metrics_gauge_new(r, "raftkv_proxy_upstream_up",
                                         "1 if the proxy's link to the node is connected.", l);
        if (!m->ups[i].sent || !m->ups[i].reads || !m->ups[i].writes || !m->ups[i].in_flight ||
            !m->ups[i].ewma || !m->ups[i].healthy || !m->ups[i].up)
            return -ENOMEM;
    }
    if (metrics_requests_register(r, &m->requests, "raftkv_proxy", "Client requests the proxy") < 0)
        return -ENOMEM;
    return metrics_add_process(r, PROXY_VERSION_STRING);
}

int proxy_metrics_start(struct proxy *p, char *err, size_t errlen)
{
    /* A partly built one is freed by proxy_metrics_stop(). */
    struct proxy_metrics *m = p->m = calloc(1, sizeof(*m));
    if (!m || metrics_registry_new(&m->reg) < 0 || register_all(p, m) < 0) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    proxy_metrics_publish(p);
    const char *addr = p->cfg->proxy.metrics;
    if (!addr || !addr[0])
        return 0;
    struct metrics_http_config hc = {
        .address = addr, .reg = m->reg, .healthz = healthz, .readyz = readyz, .arg = m};
    return metrics_http_start(&m->http, &hc, err, errlen);
}

void proxy_metrics_stop(struct proxy *p)
{
    struct proxy_metrics *m = p->m;
    if (!m)
        return;
    metrics_http_stop(m->http);
    metrics_registry_free(m->reg);
    free(m->ups);
    for (size_t i = 0; m->parts && i < m->n_parts; i++)
        free(m->parts[i].up_in_flight);
    free(m->parts);
    free(m);
    p->m = NULL;
}

/* p's part, then (loop 0) the sums and loop 0's view of each node. */
void proxy_metrics_publish(struct proxy *p)
{
    struct proxy_metrics *m = p->m;
    if (!m || p->index >= m->n_parts)
        return;
    struct part *mine = &m->parts[p->index];
    metrics_heartbeat_beat(&mine->hb);
    atomic_store_explicit(&mine->in_flight, p->in_flight, memory_order_relaxed);
    atomic_store_explicit(&mine->queued, p->queue.n, memory_order_relaxed);
    atomic_store_explicit(&mine->conns, net_listener_conns(p->tcp_l) + net_listener_conns(p->unix_l),
                          memory_order_relaxed);
    for (size_t i = 0; i < p->n_ups && i < m->n_ups; i++)
        atomic_store_explicit(&mine->up_in_flight[i], p->ups[i].in_flight, memory_order_relaxed);
    if (p->index != 0)
        return;
    uint64_t in_flight = 0, queued = 0, conns = 0;
    for (size_t k = 0; k < m->n_parts; k++) {
        in_flight += atomic_load_explicit(&m->parts[k].in_flight, memory_order_relaxed);
        queued += atomic_load_explicit(&m->parts[k].queued, memory_order_relaxed);
        conns += atomic_load_explicit(&m->parts[k].conns, memory_order_relaxed);
    }
    struct upstream *l = p->leader ? upstream_by_id(p, p->leader) : NULL;
    metrics_gauge_set(m->has_leader, p->leader != 0);
    /* healthy: it answers within down_after_ms, so a stopped or wedged
     * leader whose TCP link still stands counts as unreachable. */
    metrics_gauge_set(m->leader_up, l && l->up && l->healthy);
    metrics_gauge_set(m->in_flight, (double)in_flight);
    metrics_gauge_set(m->queued, (double)queued);
    metrics_gauge_set(m->connections, (double)conns);
    for (size_t i = 0; i < p->n_ups && i < m->n_ups && m->ups; i++) {
        const struct upstream *u = &p->ups[i];
        uint64_t n = 0;
        for (size_t k = 0; k < m->n_parts; k++)
            n += atomic_load_explicit(&m->parts[k].up_in_flight[i], memory_order_relaxed);
        metrics_gauge_set(m->ups[i].in_flight, (double)n);
        metrics_gauge_set(m->ups[i].ewma, u->ewma_us / 1e6);
        metrics_gauge_set(m->ups[i].healthy, u->up && u->healthy);
        metrics_gauge_set(m->ups[i].up, u->up);
    }
}

void proxy_metrics_totals(const struct proxy *p, struct proxy_totals *t)
{
    const struct proxy_metrics *m = p->m;
    memset(t, 0, sizeof(*t));
    t->in_flight = p->in_flight;
    t->queued = p->queue.n;
    for (size_t i = 0; i < p->n_ups && i < CONFIG_MAX_NODES; i++) {
        t->up_in_flight[i] = p->ups[i].in_flight;
        /* The shared counters move exactly where u->reads_served does. */
        t->reads[i] = m && m->ups ? metrics_counter_get(m->ups[i].reads) : p->ups[i].reads_served;
        t->writes[i] = m && m->ups ? metrics_counter_get(m->ups[i].writes) : p->ups[i].writes_served;
    }
    for (size_t k = 0; m && k < m->n_parts; k++) {
        if (k == p->index)
            continue;
        const struct part *o = &m->parts[k];
        t->in_flight += atomic_load_explicit(&o->in_flight, memory_order_relaxed);
        t->queued += atomic_load_explicit(&o->queued, memory_order_relaxed);
        for (size_t i = 0; i < p->n_ups && i < m->n_ups && i < CONFIG_MAX_NODES; i++)
            t->up_in_flight[i] += atomic_load_explicit(&o->up_in_flight[i], memory_order_relaxed);
    }
}

void proxy_metrics_answered(struct proxy *p, const struct op *op, int status)
{
    if (p->m && op->cl)
        metrics_requests_observe(&p->m->requests, metrics_requests_op(op->op_case), status,
                                 proxy_now(p) - op->arrived);
}

void proxy_metrics_sent(struct proxy *p, const struct upstream *u, const struct op *op)
{
    if (p->m && p->m->ups && (op->kind == OP_READ || op->kind == OP_WRITE))
        metrics_counter_inc(p->m->ups[u->index].sent);
}

void proxy_metrics_served(struct proxy *p, const struct upstream *u, const struct op *op)
{
    if (!p->m || !p->m->ups)
        return;
    if (op->kind == OP_READ)
        metrics_counter_inc(p->m->ups[u->index].reads);
    else if (op->kind == OP_WRITE)
        metrics_counter_inc(p->m->ups[u->index].writes);
}

void proxy_metrics_retry(struct proxy *p, bool write)
{
    if (p->m)
        metrics_counter_inc(write ? p->m->write_retries : p->m->read_retries);
}

void proxy_metrics_queued(struct proxy *p)
{
    if (p->m)
        metrics_counter_inc(p->m->writes_queued);
}

void proxy_metrics_dequeued(struct proxy *p, const struct op *op)
{
    if (p->m)
        metrics_hist_observe(p->m->queue_wait, proxy_now(p) - op->queued_since);
}

void proxy_metrics_leader_changed(struct proxy *p)
{
    if (p->m && p->leader && p->index == 0) /* every loop learns it: count once */
        metrics_counter_inc(p->m->leader_changes);
}
