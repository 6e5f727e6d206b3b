/* node_metrics.h - what raftkv-node counts for Prometheus (issue 16) and
 * its /metrics, /healthz and /readyz endpoint.  The series themselves live
 * in a metrics registry (metrics/metrics.h); this is the node's list of
 * them and the hooks that move them.  Everything here is called on the
 * event loop except where noted; updates are atomics, never locks. */
#ifndef RAFTKV_NODE_NODE_METRICS_H
#define RAFTKV_NODE_NODE_METRICS_H

#include "common/config.h"
#include "metrics/http.h"
#include "metrics/metrics.h"
#include "metrics/requests.h"
#include "raft/raft.h"
#include "raftkv.pb-c.h"

#include <stdbool.h>
#include <stdint.h>

struct node;

/* When the log indices moved: the commit index, and this node's durable
 * (fdatasync'ed) index.  Consecutive moves less than a millisecond apart
 * share an entry, so NODE_INDEX_TIMES entries span seconds even under full
 * load; a slow request looks up when its index became durable and
 * committed there, without any bookkeeping per request. */
#define NODE_INDEX_TIMES 4096
struct node_index_times {
    struct {
        uint64_t index; /* the highest index reached within the entry's millisecond */
        double at;      /* ev_time() when that millisecond began */
    } e[NODE_INDEX_TIMES];
    unsigned next, n;
};

struct node_metrics {
    struct metrics_registry *reg;
    struct metrics_http *http;
    struct metrics_heartbeat hb;
    double health_max_s; /* /healthz: longest the loop may stand still */
    _Atomic int not_ready; /* a reason code for /readyz, 0 = none (see node_metrics.c) */

    /* raft */
    struct metrics_gauge *has_leader, *is_leader, *term, *commit, *applied, *last_index,
        *snapshot_index, *members;
    struct metrics_counter *leader_changes, *elections, *proposals_committed, *proposals_failed;
    struct metrics_counter *snapshots_taken, *snapshots_installed;
    struct metrics_hist *snapshot_seconds, *snapshot_install_seconds;
    struct metrics_counter *prevotes, *prevotes_lost, *read_index_rounds, *lease_reads;
    /* Per other member, registered the first time it is seen (members
     * added at runtime too); a removed member's series stay, at lag 0. */
    struct node_peer_metrics {
        uint64_t id;
        struct metrics_gauge *lag;
        struct metrics_counter *msgs, *appends, *append_bytes;
    } peers[RAFT_MAX_MEMBERS];
    unsigned n_peers;
    /* disk */
    struct metrics_hist *fsync_seconds, *batch_records;
    struct metrics_counter *bytes_written, *records_written;
    struct metrics_gauge *disk_failed, *snapshot_bytes, *segments, *log_bytes;
    /* dataset */
    struct metrics_gauge *keys, *data_bytes, *quota_bytes;
    /* requests */
    struct metrics_requests requests;
    struct metrics_gauge *in_flight, *connections;
    /* [0] client port, [1] admin socket: refused at max_connections (or
     * out of fds), and idle connections closed to make room */
    struct metrics_counter *refused[2], *evicted[2];
    struct metrics_counter *slow_requests;
    double slow_logged_at;    /* ev_now() of the last slow-request line */
    uint64_t slow_unlogged;   /* slow requests not logged since (rate limit) */
    uint64_t answered; /* requests counted: the synchronous path skips one a waiter counted */
    struct node_index_times durable_at, committed_at;
    uint64_t commit_seen;
    /* process */
    struct metrics_hist *loop_lag;
};

/* Register every series: before the store's writer thread starts, which
 * counts into them.  0 or -errno with one line in err. */
int node_metrics_start(struct node *n, char *err, size_t errlen);
/* Once the replica is open: first values and, when [node.N] metrics is
 * set, the HTTP thread. */
int node_metrics_serve(struct node *n, char *err, size_t errlen);
/* Stop the HTTP thread, then free (after the store's writer stopped). */
void node_metrics_stop(struct node *n);

/* Once per loop iteration, after the ready round: the Raft gauges and the
 * loop heartbeat. */
void node_metrics_publish(struct node *n);
/* Once a second: per-follower lag and the dataset's size. */
void node_metrics_publish_slow(struct node *n);
void node_metrics_soft_state(struct node *n, bool leader_changed, bool became_candidate);

/* A Raft message went out to its peer's link (peer.c). */
void node_metrics_peer_sent(struct node *n, const struct raft_msg *m);

struct waiter;
/* A parked request was answered with status: count it, and log it when it
 * took longer than cluster.slow_request_ms. */
void node_metrics_waiter_done(struct node *n, const struct waiter *w, int status);
/* Keep the request's key (truncated) in w for that log line. */
void node_metrics_note_key(struct waiter *w, const Raftkv__Request *req);
/* One answered request: op, status and seconds since it arrived. */
void node_metrics_request(struct node *n, enum metrics_op op, int status, double seconds);

/* The log became durable up to index on this node (a store completion). */
void node_metrics_durable(struct node *n, uint64_t index);
/* After a ready round: notes when the commit index moved. */
void node_metrics_committed(struct node *n);

/* The store's writer thread, after each group commit (any thread). */
void node_metrics_synced(void *arg, uint64_t records, uint64_t bytes, double sync_seconds);

#endif
