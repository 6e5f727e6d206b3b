/* node_metrics.c - raftkv-node's Prometheus series (node_metrics.h) and its
 * health checks.  The loop publishes Raft state into gauges once per
 * iteration (a few relaxed stores); the HTTP thread reads only those
 * atomics, so a scrape never waits for the loop nor the loop for a scrape. */
#include "node/node_metrics.h"

#include "common/log.h"
#include "node/node_int.h"
#include "node/storage_store.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const op_names[NM_OP_COUNT] = {
    "get", "list", "set", "del", "cas", "status", "transfer_leader", "watch_leader",
    "member_change", "other"};

enum node_metrics_op node_metrics_op(Raftkv__Request__OpCase op)
{
    switch (op) {
    case RAFTKV__REQUEST__OP_GET: return NM_OP_GET;
    case RAFTKV__REQUEST__OP_LIST: return NM_OP_LIST;
    case RAFTKV__REQUEST__OP_SET: return NM_OP_SET;
    case RAFTKV__REQUEST__OP_DEL: return NM_OP_DEL;
    case RAFTKV__REQUEST__OP_CAS: return NM_OP_CAS;
    case RAFTKV__REQUEST__OP_STATUS: return NM_OP_STATUS;
    case RAFTKV__REQUEST__OP_TRANSFER_LEADER: return NM_OP_TRANSFER;
    case RAFTKV__REQUEST__OP_WATCH_LEADER: return NM_OP_WATCH;
    case RAFTKV__REQUEST__OP_MEMBER_CHANGE: return NM_OP_MEMBER;
    default: return NM_OP_OTHER;
    }
}

/* "NOT_FOUND" -> "not_found", from the .proto's own names, so a new status
 * code is labelled without touching this file. */
static void status_label(unsigned i, char *buf, size_t len)
{
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(&raftkv__status__descriptor,
                                                                       (int)i);
    if (!v || i == NM_STATUS_COUNT - 1) {
        snprintf(buf, len, "other");
        return;
    }
    size_t k = 0;
    for (const char *c = v->name; *c && k + 1 < len; c++)
        buf[k++] = (char)tolower((unsigned char)*c);
    buf[k] = 0;
}

void node_metrics_request(struct node *n, enum node_metrics_op op, int status, double seconds)
{
    struct node_metrics *m = n->m;
    if (!m)
        return;
    unsigned st = status >= 0 && status < NM_STATUS_COUNT - 1 ? (unsigned)status : NM_STATUS_COUNT - 1;
    metrics_counter_inc(m->requests[op][st]);
    metrics_hist_observe(m->latency[op][st], seconds < 0 ? 0 : seconds);
    m->answered++;
}

void node_metrics_synced(void *arg, uint64_t records, uint64_t bytes, double sync_seconds)
{
    struct node *n = arg;
    struct node_metrics *m = n->m;
    if (!m)
        return;
    metrics_hist_observe(m->fsync_seconds, sync_seconds);
    metrics_counter_add(m->bytes_written, bytes);
    metrics_counter_add(m->records_written, records);
    if (records)
        metrics_hist_observe(m->batch_records, (double)records);
}

void node_metrics_soft_state(struct node *n, bool leader_changed, bool became_candidate)
{
    if (!n->m)
        return;
    if (leader_changed && n->leader != RAFT_NONE)
        metrics_counter_inc(n->m->leader_changes);
    if (became_candidate)
        metrics_counter_inc(n->m->elections);
}

/* /readyz reasons the loop knows and the HTTP thread cannot work out from
 * the gauges. */
enum { NOT_READY_NONE, NOT_READY_STOPPING, NOT_READY_BOOTSTRAP };

/* A follower further behind than this in applying is not ready: it would
 * serve linearizable reads only after applying that much. */
#define READY_APPLY_SLACK 1000.0

void node_metrics_publish(struct node *n)
{
    struct node_metrics *m = n->m;
    if (!m)
        return;
    metrics_heartbeat_beat(&m->hb);
    bool failed = replica_error(n->rp) != 0;
    metrics_gauge_set(m->has_leader, n->leader != RAFT_NONE && !failed);
    metrics_gauge_set(m->is_leader, n->role == RAFT_LEADER && !failed);
    metrics_gauge_set(m->term, (double)n->term);
    metrics_gauge_set(m->commit, (double)replica_commit_index(n->rp));
    metrics_gauge_set(m->applied, (double)replica_applied(n->rp));
    metrics_gauge_set(m->disk_failed, failed);
    metrics_gauge_set(m->in_flight, (double)(n->writes.n + n->reads.n + n->transfers.n));
    atomic_store_explicit(&m->not_ready,
                          n->stopping ? NOT_READY_STOPPING
                          : bootstrap_deciding(n) ? NOT_READY_BOOTSTRAP
                                                  : NOT_READY_NONE,
                          memory_order_relaxed);
}

void node_metrics_publish_slow(struct node *n)
{
    struct node_metrics *m = n->m;
    if (!m)
        return;
    struct raft_status st;
    replica_status(n->rp, &st);
    metrics_gauge_set(m->last_index, (double)st.last_index);
    metrics_gauge_set(m->snapshot_index, (double)st.snap_index);
    metrics_gauge_set(m->members, st.conf.n);
    for (unsigned i = 0; i < m->n_peers; i++) {
        double lag = 0;
        for (uint32_t k = 0; k < st.n_progress; k++)
            if (st.progress[k].id == m->peers[i].id && st.last_index > st.progress[k].match)
                lag = (double)(st.last_index - st.progress[k].match);
        metrics_gauge_set(m->peers[i].lag, st.role == RAFT_LEADER ? lag : 0);
    }
    const struct kv *kv = replica_kv(n->rp);
    metrics_gauge_set(m->keys, (double)kv_dict_count(kv_dict(kv)));
    metrics_gauge_set(m->data_bytes, (double)kv_dict_data_bytes(kv_dict(kv)));
    metrics_gauge_set(m->quota_bytes, (double)kv_quota(kv));
    uint64_t sb;
    if (storage_store_snapshot_bytes(n->storage, &sb) == 0)
        metrics_gauge_set(m->snapshot_bytes, (double)sb);
    size_t conns = 0;
    if (n->client_l)
        conns += net_listener_conns(n->client_l);
    if (n->admin_l)
        conns += net_listener_conns(n->admin_l);
    metrics_gauge_set(m->connections, (double)conns);
}

/* ---- health (HTTP thread) ---------------------------------------------- */

static int healthz(void *arg, char *reason, size_t len)
{
    struct node_metrics *m = arg;
    return metrics_heartbeat_check(&m->hb, m->health_max_s, reason, len);
}

static int readyz(void *arg, char *reason, size_t len)
{
    struct node_metrics *m = arg;
    if (healthz(arg, reason, len) < 0)
        return -1;
    int nr = atomic_load_explicit(&m->not_ready, memory_order_relaxed);
    double commit = metrics_gauge_get(m->commit), applied = metrics_gauge_get(m->applied);
    if (metrics_gauge_get(m->disk_failed) != 0)
        snprintf(reason, len, "not ready: the disk failed; the node takes no writes (see the journal)");
    else if (nr == NOT_READY_STOPPING)
        snprintf(reason, len, "not ready: stopping");
    else if (nr == NOT_READY_BOOTSTRAP)
        snprintf(reason, len, "not ready: empty data directory, waiting for peers to decide");
    else if (metrics_gauge_get(m->has_leader) == 0)
        snprintf(reason, len, "not ready: no leader (cut off from it, or an election is on)");
    else if (commit - applied > READY_APPLY_SLACK)
        snprintf(reason, len, "not ready: catching up, applied %.0f of %.0f committed entries",
                 applied, commit);
    else
        return 0;
    return -1;
}

/* ---- registration ------------------------------------------------------ */

#define G(name, help) metrics_gauge_new(r, name, help, NULL)
#define C(name, help) metrics_counter_new(r, name, help, NULL, 0)

static int register_all(struct node *n, struct node_metrics *m)
{
    struct metrics_registry *r = m->reg;
    m->has_leader = G("raftkv_raft_has_leader", "1 if this node knows a leader, else 0.");
    m->is_leader = G("raftkv_raft_is_leader", "1 if this node is the leader, else 0.");
    m->term = G("raftkv_raft_term", "Current Raft term.");
    m->commit = G("raftkv_raft_commit_index", "Highest log index known to be committed.");
    m->applied = G("raftkv_raft_applied_index", "Highest log index applied to the dictionary.");
    m->last_index = G("raftkv_raft_last_index", "Last index in this node's log.");
    m->snapshot_index = G("raftkv_raft_snapshot_index", "Last index covered by the snapshot.");
    m->members = G("raftkv_raft_members", "Members (voters and learners) in the configuration.");
    m->leader_changes = C("raftkv_raft_leader_changes_total",
                          "Times this node saw a new leader (a different node, or one again after none).");
    m->elections = C("raftkv_raft_elections_total",
                     "Elections this node started as a candidate (pre-votes not counted).");
    m->proposals_committed = C("raftkv_raft_proposals_committed_total",
                               "Client writes this node proposed as leader that committed.");
    m->proposals_failed = C("raftkv_raft_proposals_failed_total",
                            "Client writes refused by the core or lost to a leadership change.");
    m->snapshots_taken = C("raftkv_snapshots_taken_total", "Snapshots written by this node.");
    m->snapshots_installed = C("raftkv_snapshots_installed_total",
                               "Snapshots received from a leader and installed.");
    m->snapshot_seconds = metrics_hist_new(r, "raftkv_snapshot_duration_seconds",
                                           "Time to write a snapshot (forked writer).", NULL,
                                           metrics_buckets_long, metrics_buckets_long_n, 0);
    m->snapshot_install_seconds = metrics_hist_new(
        r, "raftkv_snapshot_install_duration_seconds",
        "Time from the first chunk of a received snapshot until it was loaded.", NULL,
        metrics_buckets_long, metrics_buckets_long_n, 0);
    m->snapshot_bytes = G("raftkv_snapshot_size_bytes", "Size of the current snapshot file.");
    for (size_t i = 0; i < n->cfg->n_nodes; i++) {
        uint32_t id = n->cfg->nodes[i].id;
        if (id == n->id || m->n_peers >= CONFIG_MAX_NODES)
            continue;
        char l[32];
        snprintf(l, sizeof(l), "peer=\"%u\"", id);
        m->peers[m->n_peers].id = id;
        m->peers[m->n_peers].lag = metrics_gauge_new(
            r, "raftkv_raft_follower_lag_entries",
            "On the leader: entries in its log that the follower has not matched yet (0 elsewhere).",
            l);
        if (!m->peers[m->n_peers].lag)
            return -ENOMEM;
        m->n_peers++;
    }
    m->fsync_seconds = metrics_hist_new(r, "raftkv_disk_fsync_duration_seconds",
                                        "fdatasync of the log per group commit.", NULL,
                                        metrics_buckets_latency, metrics_buckets_latency_n, 0);
    m->batch_records = metrics_hist_new(r, "raftkv_disk_batch_records",
                                        "Log records made durable by one group commit.", NULL,
                                        metrics_buckets_count, metrics_buckets_count_n, 0);
    m->bytes_written = C("raftkv_disk_written_bytes_total", "Bytes the store wrote (log records and snapshots it was handed).");
    m->records_written = C("raftkv_disk_written_records_total", "Log records written.");
    m->disk_failed = G("raftkv_disk_failed",
                       "1 once a disk write failed: the node stops taking writes until restarted.");
    m->keys = G("raftkv_kv_keys", "Keys in the dictionary.");
    m->data_bytes = G("raftkv_kv_data_bytes", "Bytes of keys plus values in the dictionary.");
    m->quota_bytes = G("raftkv_kv_quota_bytes", "The dataset quota in force (0 = none).");
    m->in_flight = G("raftkv_requests_in_flight", "Requests waiting for Raft (writes, reads, transfers).");
    m->connections = G("raftkv_connections", "Open client and admin connections.");
    m->loop_lag = metrics_hist_new(r, "raftkv_loop_iteration_seconds",
                                   "Work done in one event-loop iteration (its lag).", NULL,
                                   metrics_buckets_latency, metrics_buckets_latency_n, 0);
    for (unsigned o = 0; o < NM_OP_COUNT; o++)
        for (unsigned s = 0; s < NM_STATUS_COUNT; s++) {
            char st[32], l[96];
            status_label(s, st, sizeof(st));
            snprintf(l, sizeof(l), "op=\"%s\",status=\"%s\"", op_names[o], st);
            m->requests[o][s] = metrics_counter_new(r, "raftkv_requests_total",
                                                    "Client requests answered, by op and status.",
                                                    l, METRICS_HIDE_ZERO);
            m->latency[o][s] = metrics_hist_new(
                r, "raftkv_request_duration_seconds",
                "Time from a request's arrival to its answer, by op and status.", l,
                metrics_buckets_latency, metrics_buckets_latency_n, METRICS_HIDE_ZERO);
            if (!m->requests[o][s] || !m->latency[o][s])
                return -ENOMEM;
        }
    if (!m->has_leader || !m->is_leader || !m->term || !m->commit || !m->applied ||
        !m->last_index || !m->snapshot_index || !m->members || !m->leader_changes ||
        !m->elections || !m->proposals_committed || !m->proposals_failed ||
        !m->snapshots_taken || !m->snapshots_installed || !m->snapshot_seconds ||
        !m->snapshot_install_seconds || !m->snapshot_bytes || !m->fsync_seconds ||
        !m->batch_records || !m->bytes_written || !m->records_written || !m->disk_failed ||
        !m->keys || !m->data_bytes || !m->quota_bytes || !m->in_flight || !m->connections ||
        !m->loop_lag)
        return -ENOMEM;
    return metrics_add_process(r, RAFTKV_VERSION_STRING);
}

#undef G
#undef C

/* A loop that has not turned for this long is stuck, not slow: loop stalls
 * of a few seconds were measured on an overloaded 2-core machine
 * (BENCHMARKS.md) and must not fail the liveness check. */
#define HEALTH_MIN_S 5.0

int node_metrics_start(struct node *n, char *err, size_t errlen)
{
    struct node_metrics *m = calloc(1, sizeof(*m));
    if (!m || metrics_registry_new(&m->reg) < 0) {
        free(m);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    n->m = m;
    double et = (double)n->cfg->cluster.election_timeout_ms / 1000.0;
    m->health_max_s = 10 * et > HEALTH_MIN_S ? 10 * et : HEALTH_MIN_S;
    int rv = register_all(n, m);
    if (rv < 0)
        snprintf(err, errlen, "out of memory");
    return rv;
}

int node_metrics_serve(struct node *n, char *err, size_t errlen)
{
    struct node_metrics *m = n->m;
    int rv;
    node_metrics_publish(n);
    node_metrics_publish_slow(n);
    const struct config_node *me = config_node_find(n->cfg, n->id);
    if (!me || !me->metrics || !me->metrics[0])
        return 0;
    struct metrics_http_config hc = {
        .address = me->metrics, .reg = m->reg, .healthz = healthz, .readyz = readyz, .arg = m};
    rv = metrics_http_start(&m->http, &hc, err, errlen);
    if (rv == 0)
        log_info("metrics: serving /metrics, /healthz and /readyz on %s (port %u)", me->metrics,
                 metrics_http_port(m->http));
    return rv;
}

void node_metrics_stop(struct node *n)
{
    if (!n->m)
        return;
    metrics_http_stop(n->m->http);
    metrics_registry_free(n->m->reg);
    free(n->m);
    n->m = NULL;
}
