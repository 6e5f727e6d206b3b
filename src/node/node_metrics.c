/* node_metrics.c - raftkv-node's Prometheus series (node_metrics.h) and its
 * health checks.  The loop publishes Raft state into gauges once per
 * iteration (a few relaxed stores); the HTTP thread reads only those
 * atomics, so a scrape never waits for the loop nor the loop for a scrape. */
#include "node/node_metrics.h"

#include "common/log.h"
#include "node/node_int.h"
#include "node/storage_store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void node_metrics_request(struct node *n, enum metrics_op op, int status, double seconds)
{
    struct node_metrics *m = n->m;
    if (!m)
        return;
    metrics_requests_observe(&m->requests, op, status, seconds);
    m->answered++;
}

void node_metrics_note_key(struct waiter *w, const Raftkv__Request *req)
{
    const ProtobufCBinaryData *k = NULL;
    switch (req->op_case) {
    case RAFTKV__REQUEST__OP_GET: k = &req->get->key; break;
    case RAFTKV__REQUEST__OP_LIST: k = &req->list->prefix; break;
    case RAFTKV__REQUEST__OP_SET: k = &req->set->key; break;
    case RAFTKV__REQUEST__OP_DEL: k = &req->del->key; break;
    case RAFTKV__REQUEST__OP_CAS: k = &req->cas->key; break;
    default: break;
    }
    if (!k || !k->data)
        return;
    w->key_len = (uint32_t)k->len;
    memcpy(w->key, k->data, k->len < sizeof(w->key) ? k->len : sizeof(w->key));
}

/* ---- index times, for the stages of a slow write ----------------------- */

#define INDEX_TIME_RESOLUTION_S 0.001

static void index_times_note(struct node_index_times *t, uint64_t index, double now)
{
    if (t->n) {
        unsigned last = (t->next + NODE_INDEX_TIMES - 1) % NODE_INDEX_TIMES;
        if (index < t->e[last].index)
            t->n = 0; /* the durable log was cut back: older times no longer apply */
        else if (now - t->e[last].at < INDEX_TIME_RESOLUTION_S) {
            t->e[last].index = index;
            return;
        }
    }
    t->e[t->next].index = index;
    t->e[t->next].at = now;
    t->next = (t->next + 1) % NODE_INDEX_TIMES;
    if (t->n < NODE_INDEX_TIMES)
        t->n++;
}

/* When index was first reached, or -1: not yet, or longer ago than the
 * entries reach back.  Entries are in index order: binary search. */
static double index_times_find(const struct node_index_times *t, uint64_t index)
{
    unsigned first = (t->next + NODE_INDEX_TIMES - t->n) % NODE_INDEX_TIMES;
    unsigned lo = 0, hi = t->n; /* the first entry with e.index >= index is in [lo, hi] */
    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        if (t->e[(first + mid) % NODE_INDEX_TIMES].index >= index)
            hi = mid;
        else
            lo = mid + 1;
    }
    /* The oldest entry may have started its millisecond below index and
     * reached it only later: it is an answer only when it is not the oldest
     * kept, or when nothing was evicted yet. */
    if (lo == t->n || (lo == 0 && t->n == NODE_INDEX_TIMES))
        return -1;
    return t->e[(first + lo) % NODE_INDEX_TIMES].at;
}

void node_metrics_durable(struct node *n, uint64_t index)
{
    if (n->m)
        index_times_note(&n->m->durable_at, index, ev_time());
}

void node_metrics_committed(struct node *n)
{
    struct node_metrics *m = n->m;
    uint64_t c = m ? replica_commit_index(n->rp) : 0;
    if (!m || c == m->commit_seen)
        return;
    m->commit_seen = c;
    index_times_note(&m->committed_at, c, ev_time());
}

/* ---- slow requests ------------------------------------------------------ */

/* One line a second at most: a stalled disk makes every request slow, and
 * the journal must not drown in them. */
#define SLOW_LOG_EVERY_S 1.0

/* Microseconds from a to b as a journal value; "" when a stage's time is
 * not known (older than the index history). */
static const char *stage_us(char *buf, double from, double to)
{
    if (from < 0 || to < 0) {
        buf[0] = 0;
        return buf;
    }
    return log_u64(buf, to > from ? (uint64_t)((to - from) * 1e6) : 0);
}

/* The stages of a request, for the message and the journal fields.  A write
 * is proposed on arrival; then this node's fdatasync of it, a majority's
 * (commit), and apply.  With 3 nodes the two followers can commit it before
 * the leader's own disk: the stages are offsets from arrival, not a chain. */
static void slow_stages(const struct node_metrics *m, const struct waiter *w, double now,
                        struct log_field *f, size_t *k, char bufs[][24], char *text, size_t tlen)
{
    if (w->kind == WAIT_READ) {
        double known = w->index_known ? w->known_at : -1;
        f[(*k)++] = (struct log_field){"RAFTKV_STAGE_US_READ_INDEX", stage_us(bufs[0], w->arrived, known)};
        f[(*k)++] = (struct log_field){"RAFTKV_STAGE_US_APPLY_WAIT", stage_us(bufs[1], known, now)};
        if (w->index_known)
            snprintf(text, tlen, "read index after %.0f ms, applied %.0f ms later",
                     (known - w->arrived) * 1e3, (now - known) * 1e3);
        else
            snprintf(text, tlen, "read index never confirmed");
        return;
    }
    double synced = index_times_find(&m->durable_at, w->index);
    double committed = index_times_find(&m->committed_at, w->index);
    f[(*k)++] = (struct log_field){"RAFTKV_STAGE_US_QUEUE", "0"};
    f[(*k)++] = (struct log_field){"RAFTKV_STAGE_US_FSYNC", stage_us(bufs[0], w->arrived, synced)};
    f[(*k)++] = (struct log_field){"RAFTKV_STAGE_US_COMMIT", stage_us(bufs[1], w->arrived, committed)};
    f[(*k)++] = (struct log_field){"RAFTKV_STAGE_US_APPLY", stage_us(bufs[2], committed, now)};
    f[(*k)++] = (struct log_field){"RAFTKV_STAGE_US_COMMIT_APPLY", stage_us(bufs[3], w->arrived, now)};
    char s[40] = "not done or too long ago to tell", c[40] = "?", a[40] = "?";
    if (synced >= 0)
        snprintf(s, sizeof(s), "after %.0f ms", (synced - w->arrived) * 1e3);
    if (committed >= 0) {
        snprintf(c, sizeof(c), "%.0f ms", (committed - w->arrived) * 1e3);
        /* commit noted to the millisecond: never "-0 ms" */
        snprintf(a, sizeof(a), "%.0f ms", now > committed ? (now - committed) * 1e3 : 0.0);
    }
    snprintf(text, tlen, "proposal to commit and apply %.0f ms: local fdatasync %s, committed after %s, "
             "applied %s later", (now - w->arrived) * 1e3, s, c, a);
}

static void log_slow(struct node *n, const struct waiter *w, int status, double now)
{
    struct node_metrics *m = n->m;
    metrics_counter_inc(m->slow_requests);
    if (now - m->slow_logged_at < SLOW_LOG_EVERY_S) {
        m->slow_unlogged++;
        return;
    }
    /* A write is answered as it applies, inside the ready round that
     * learned its commit and before the loop notes the new index: note it
     * now, or the request's own commit would be missing. */
    node_metrics_committed(n);
    char key[NODE_SLOW_KEY_MAX * 4 + 4], total[24], unl[24], cb[24], bufs[4][24];
    char stages[200], more[64] = "";
    log_escape(w->key, w->key_len, sizeof(w->key), key, sizeof(key));
    const ProtobufCEnumValue *sv =
        protobuf_c_enum_descriptor_get_value(&raftkv__status__descriptor, status);
    const char *op = metrics_requests_op_name((enum metrics_op)w->op);
    uint64_t total_us = (uint64_t)((now - w->arrived) * 1e6);
    struct log_field f[16];
    size_t k = 0;
    f[k++] = (struct log_field){"RAFTKV_OP", op};
    f[k++] = (struct log_field){"RAFTKV_KEY", key};
    f[k++] = (struct log_field){"RAFTKV_STATUS", sv ? sv->name : "?"};
    f[k++] = (struct log_field){"RAFTKV_DURATION_US", log_u64(total, total_us)};
    slow_stages(m, w, now, f, &k, bufs, stages, sizeof(stages));
    f[k++] = (struct log_field){"RAFTKV_SLOW_UNLOGGED", log_u64(unl, m->slow_unlogged)};
    f[k++] = (struct log_field){"RAFTKV_COMMIT", log_u64(cb, replica_commit_index(n->rp))};
    f[k] = (struct log_field){NULL, NULL};
    if (m->slow_unlogged)
        snprintf(more, sizeof(more), "; %llu more slow requests since the last line",
                 (unsigned long long)m->slow_unlogged);
    log_event(LOG_WARNING, "slow_request", f,
              "slow request: %s \"%s\" took %.0f ms (%s): %s; role %s, term %llu, leader %llu, "
              "commit %llu, applied %llu%s",
              op, key, total_us / 1e3, sv ? sv->name : "?", stages, raft_role_name(n->role),
              (unsigned long long)n->term, (unsigned long long)n->leader,
              (unsigned long long)replica_commit_index(n->rp),
              (unsigned long long)replica_applied(n->rp), more);
    m->slow_logged_at = now;
    m->slow_unlogged = 0;
}

void node_metrics_waiter_done(struct node *n, const struct waiter *w, int status)
{
    double now = ev_time();
    node_metrics_request(n, (enum metrics_op)w->op, status, now - w->arrived);
    uint64_t slow_ms = n->cfg->cluster.slow_request_ms;
    if (n->m && slow_ms && (now - w->arrived) * 1e3 >= (double)slow_ms)
        log_slow(n, w, status, now);
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

/* The series of one peer, registered on first sight.  NULL when out of
 * memory or past RAFT_MAX_MEMBERS ids (a long history of replaced members):
 * its traffic then goes uncounted rather than mislabelled. */
static struct node_peer_metrics *peer_metrics(struct node_metrics *m, uint64_t id)
{
    for (unsigned i = 0; i < m->n_peers; i++)
        if (m->peers[i].id == id)
            return &m->peers[i];
    if (m->n_peers >= RAFT_MAX_MEMBERS)
        return NULL;
    char l[32];
    snprintf(l, sizeof(l), "peer=\"%llu\"", (unsigned long long)id);
    struct node_peer_metrics *p = &m->peers[m->n_peers];
    p->lag = metrics_gauge_new(
        m->reg, "raftkv_raft_follower_lag_entries",
        "On the leader: entries in its log that the follower has not matched yet (0 elsewhere).", l);
    p->msgs = metrics_counter_new(m->reg, "raftkv_raft_messages_sent_total",
                                  "Raft messages of any kind sent to the peer.", l, 0);
    p->appends = metrics_counter_new(m->reg, "raftkv_raft_append_entries_sent_total",
                                     "AppendEntries messages sent to the peer (heartbeats not counted).",
                                     l, 0);
    p->append_bytes = metrics_counter_new(m->reg, "raftkv_raft_append_entries_sent_bytes_total",
                                          "Entry payload bytes sent to the peer in AppendEntries.", l, 0);
    if (!p->lag || !p->msgs || !p->appends || !p->append_bytes)
        return NULL; /* the registry keeps what it made; retried next time */
    p->id = id;
    m->n_peers++;
    return p;
}

void node_metrics_peer_sent(struct node *n, const struct raft_msg *msg)
{
    struct node_peer_metrics *p = n->m ? peer_metrics(n->m, msg->to) : NULL;
    if (!p)
        return;
    metrics_counter_inc(p->msgs);
    if (msg->type != RAFT_MSG_APPEND)
        return;
    uint64_t bytes = 0;
    for (uint32_t i = 0; i < msg->n_entries; i++)
        bytes += msg->entries[i].len;
    metrics_counter_inc(p->appends);
    metrics_counter_add(p->append_bytes, bytes);
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
    /* Every member in the status gets its series, members added at runtime
     * too; one that left keeps its series at lag 0. */
    for (uint32_t k = 0; k < st.conf.n; k++)
        if (st.conf.m[k].id != n->id)
            (void)peer_metrics(m, st.conf.m[k].id);
    for (unsigned i = 0; i < m->n_peers; i++) {
        double lag = 0;
        for (uint32_t k = 0; k < st.n_progress; k++)
            if (st.progress[k].id == m->peers[i].id && st.last_index > st.progress[k].match)
                lag = (double)(st.last_index - st.progress[k].match);
        metrics_gauge_set(m->peers[i].lag, st.role == RAFT_LEADER ? lag : 0);
    }
    metrics_counter_set(m->prevotes, st.counters.prevotes_started);
    metrics_counter_set(m->prevotes_lost, st.counters.prevotes_lost);
    metrics_counter_set(m->read_index_rounds, st.counters.read_index_rounds);
    metrics_counter_set(m->lease_reads, st.counters.lease_reads);
    const struct kv *kv = replica_kv(n->rp);
    metrics_gauge_set(m->keys, (double)kv_dict_count(kv_dict(kv)));
    metrics_gauge_set(m->data_bytes, (double)kv_dict_data_bytes(kv_dict(kv)));
    metrics_gauge_set(m->quota_bytes, (double)kv_quota(kv));
    uint64_t sb;
    if (storage_store_snapshot_bytes(n->storage, &sb) == 0)
        metrics_gauge_set(m->snapshot_bytes, (double)sb);
    uint64_t segs, lb;
    storage_store_log_files(n->storage, &segs, &lb);
    metrics_gauge_set(m->segments, (double)segs);
    metrics_gauge_set(m->log_bytes, (double)lb);
    metrics_gauge_set(m->connections,
                      (double)(net_listener_conns(n->client_l) + net_listener_conns(n->admin_l)));
    const struct net_listener *ls[2] = {n->client_l, n->admin_l};
    for (int i = 0; i < 2; i++)
        if (ls[i]) {
            metrics_counter_set(m->refused[i], net_listener_refused(ls[i]));
            metrics_counter_set(m->evicted[i], net_listener_evicted(ls[i]));
        }
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
                                           "Time to write a snapshot (writer thread).", NULL,
                                           metrics_buckets_long, metrics_buckets_long_n, 0);
    m->snapshot_install_seconds = metrics_hist_new(
        r, "raftkv_snapshot_install_duration_seconds",
        "Time from the first chunk of a received snapshot until it was loaded.", NULL,
        metrics_buckets_long, metrics_buckets_long_n, 0);
    m->snapshot_bytes = G("raftkv_snapshot_size_bytes", "Size of the current snapshot file.");
    m->prevotes = C("raftkv_raft_prevotes_total",
                    "Pre-vote rounds this node started (a pre-vote raises no term).");
    m->prevotes_lost = C("raftkv_raft_prevotes_lost_total",
                         "Pre-vote rounds a majority refused (a sign of a partitioned or lagging node).");
    m->read_index_rounds = C("raftkv_raft_read_index_rounds_total",
                             "Heartbeat rounds this node ran as leader to confirm linearizable reads.");
    m->lease_reads = C("raftkv_raft_lease_reads_total",
                       "Read-index requests this node answered as leader on its lease, without a "
                       "heartbeat round (cluster.lease_reads).");
    for (size_t i = 0; i < n->cfg->n_nodes; i++)
        if (n->cfg->nodes[i].id != n->id && !peer_metrics(m, n->cfg->nodes[i].id) &&
            m->n_peers < RAFT_MAX_MEMBERS)
            return -ENOMEM;
    m->fsync_seconds = metrics_hist_new(r, "raftkv_disk_fsync_duration_seconds",
                                        "fdatasync of the log per group commit.", NULL,
                                        metrics_buckets_latency, metrics_buckets_latency_n, 0);
    m->batch_records = metrics_hist_new(r, "raftkv_disk_batch_records",
                                        "Log records made durable by one group commit.", NULL,
                                        metrics_buckets_count, metrics_buckets_count_n, 0);
    m->bytes_written = C("raftkv_disk_written_bytes_total", "Bytes the store wrote (log records and snapshots it was handed).");
    m->records_written = C("raftkv_disk_written_records_total", "Log records written.");
    m->segments = G("raftkv_disk_log_segments", "Log segment files on disk.");
    m->log_bytes = G("raftkv_disk_log_bytes", "Bytes of log records in the segment files.");
    m->disk_failed = G("raftkv_disk_failed",
                       "1 once a disk write failed: the node stops taking writes until restarted.");
    m->keys = G("raftkv_kv_keys", "Keys in the dictionary.");
    m->data_bytes = G("raftkv_kv_data_bytes", "Bytes of keys plus values in the dictionary.");
    m->quota_bytes = G("raftkv_kv_quota_bytes", "The dataset quota in force (0 = none).");
    m->in_flight = G("raftkv_requests_in_flight", "Requests waiting for Raft (writes, reads, transfers).");
    m->connections = G("raftkv_connections", "Open client and admin connections.");
    static const char *const listener[2] = {"listener=\"client\"", "listener=\"admin\""};
    for (int i = 0; i < 2; i++) {
        m->refused[i] = metrics_counter_new(
            r, "raftkv_connections_refused_total",
            "Connections refused at the listener's max_connections (or when out of fds).",
            listener[i], 0);
        m->evicted[i] = metrics_counter_new(
            r, "raftkv_connections_evicted_total",
            "Idle connections closed to make room for a new one at max_connections.", listener[i],
            0);
        if (!m->refused[i] || !m->evicted[i])
            return -ENOMEM;
    }
    m->slow_requests = C("raftkv_slow_requests_total",
                         "Requests slower than cluster.slow_request_ms (logged at most one a second).");
    m->loop_lag = metrics_hist_new(r, "raftkv_loop_iteration_seconds",
                                   "Work done in one event-loop iteration (its lag).", NULL,
                                   metrics_buckets_latency, metrics_buckets_latency_n, 0);
    if (metrics_requests_register(r, &m->requests, "raftkv", "Client requests") < 0)
        return -ENOMEM;
    if (!m->has_leader || !m->is_leader || !m->term || !m->commit || !m->applied ||
        !m->last_index || !m->snapshot_index || !m->members || !m->leader_changes ||
        !m->elections || !m->proposals_committed || !m->proposals_failed ||
        !m->snapshots_taken || !m->snapshots_installed || !m->snapshot_seconds ||
        !m->snapshot_install_seconds || !m->snapshot_bytes || !m->fsync_seconds ||
        !m->batch_records || !m->bytes_written || !m->records_written || !m->disk_failed ||
        !m->keys || !m->data_bytes || !m->quota_bytes || !m->in_flight || !m->connections ||
        !m->loop_lag || !m->slow_requests || !m->prevotes || !m->prevotes_lost ||
        !m->read_index_rounds || !m->lease_reads || !m->segments || !m->log_bytes)
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
    /* A partly built one is freed by node_metrics_stop() with the node. */
    struct node_metrics *m = n->m = calloc(1, sizeof(*m));
    int rv = m ? metrics_registry_new(&m->reg) : -ENOMEM;
    if (rv == 0) {
        double et = (double)n->cfg->cluster.election_timeout_ms / 1000.0;
        m->health_max_s = 10 * et > HEALTH_MIN_S ? 10 * et : HEALTH_MIN_S;
        rv = register_all(n, m);
    }
    if (rv < 0)
        snprintf(err, errlen, "out of memory");
    return rv;
}

int node_metrics_serve(struct node *n, char *err, size_t errlen)
{
    struct node_metrics *m = n->m;
    node_metrics_publish(n);
    node_metrics_publish_slow(n);
    const struct config_node *me = config_node_find(n->cfg, n->id);
    if (!me || !me->metrics || !me->metrics[0])
        return 0;
    struct metrics_http_config hc = {
        .address = me->metrics, .reg = m->reg, .healthz = healthz, .readyz = readyz, .arg = m};
    return metrics_http_start(&m->http, &hc, err, errlen);
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
