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
#include "raftkv.pb-c.h"

#include <stdbool.h>
#include <stdint.h>

struct node;

/* Request kinds counted apart (label op). */
enum node_metrics_op {
    NM_OP_GET, NM_OP_LIST, NM_OP_SET, NM_OP_DEL, NM_OP_CAS, NM_OP_STATUS, NM_OP_TRANSFER,
    NM_OP_WATCH, NM_OP_MEMBER, NM_OP_OTHER, NM_OP_COUNT
};
/* Status codes beyond this share the last slot (label "other"). */
#define NM_STATUS_COUNT 13

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
    struct {
        uint64_t id;
        struct metrics_gauge *lag;
    } peers[CONFIG_MAX_NODES];
    unsigned n_peers;
    /* disk */
    struct metrics_hist *fsync_seconds, *batch_records;
    struct metrics_counter *bytes_written, *records_written;
    struct metrics_gauge *disk_failed, *snapshot_bytes;
    /* dataset */
    struct metrics_gauge *keys, *data_bytes, *quota_bytes;
    /* requests */
    struct metrics_counter *requests[NM_OP_COUNT][NM_STATUS_COUNT];
    struct metrics_hist *latency[NM_OP_COUNT][NM_STATUS_COUNT];
    struct metrics_gauge *in_flight, *connections;
    uint64_t answered; /* requests counted: the synchronous path skips one a waiter counted */
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

/* A request's op for the labels. */
enum node_metrics_op node_metrics_op(Raftkv__Request__OpCase op);
/* One answered request: op, status and seconds since it arrived. */
void node_metrics_request(struct node *n, enum node_metrics_op op, int status, double seconds);

/* The store's writer thread, after each group commit (any thread). */
void node_metrics_synced(void *arg, uint64_t records, uint64_t bytes, double sync_seconds);

#endif
