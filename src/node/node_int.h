/* node_int.h - the daemon's state shared by node.c (lifecycle, timers,
 * replica hooks), peer.c (Raft transport) and api.c (client requests).
 */
#ifndef RAFTKV_NODE_NODE_INT_H
#define RAFTKV_NODE_NODE_INT_H

#include "common/config.h"
#include "net/conn.h"
#include "net/dial.h"
#include "net/listener.h"
#include "node/node.h"
#include "node/peer_codec.h"
#include "node/replica.h"

#include <ev.h>
#include <stdbool.h>

#define RAFTKV_VERSION_STRING "0.1.0"

/* A client connection.  Requests waiting on Raft hold a reference, so a
 * connection that closes while they wait is freed only once they finish. */
struct api_client {
    struct node *node;
    struct net_conn *conn; /* NULL once closed */
    unsigned refs;
    bool watching;
    uint64_t watch_id;
    struct api_client *next_watcher;
};

enum wait_kind { WAIT_WRITE, WAIT_READ, WAIT_TRANSFER };

/* A request parked until Raft decides it. */
struct waiter {
    enum wait_kind kind;
    struct api_client *client;
    uint64_t req_id;
    double deadline;     /* ev_now() based */
    raft_index index;    /* WRITE: proposal index; READ: read index once known */
    raft_term term;      /* WRITE: proposal term */
    uint64_t ctx;        /* READ: read-index ctx */
    bool index_known;    /* READ */
    void *req;           /* READ: the unpacked Raftkv__Request to answer */
    struct waiter *next;
};

struct waitq {
    struct waiter *head, *tail;
    size_t n;
};

struct peer_link {
    uint32_t id;
    struct net_dial *dial;
    struct node *node;
};

/* An inbound peer connection, with the snapshot it may be assembling. */
struct peer_in {
    struct node *node;
    uint8_t *snap_buf;
    uint64_t snap_size, snap_got;
    raft_index snap_index;
};

struct node {
    const struct config *cfg;
    uint32_t id;
    struct ev_loop *loop;
    struct replica *rp;
    double start;

    struct peer_link peers[CONFIG_MAX_NODES];
    unsigned n_peers;
    struct peer_encoder enc;

    struct net_listener *peer_l, *client_l, *admin_l;
    struct net_conn_limits client_limits, peer_limits;

    ev_timer tick;
    ev_timer sweep;
    ev_io store_io;
    ev_prepare flush;
    ev_signal sig_term, sig_int;
    ev_timer stop_timer;
    ev_timer watchdog;
    ev_timer status_timer;  /* keeps STATUS= current (the leader's commit moves) */
    char status[160];       /* last STATUS= sent, to send only changes */
    double recover_notified; /* monotonic time of the last EXTEND_TIMEOUT_USEC */
    bool dirty;
    bool stopping;
    int exit_code;

    uint64_t next_ctx;
    struct waitq writes;   /* in proposal (index) order */
    struct waitq reads;    /* waiting for a read index or for apply */
    struct waitq transfers;
    struct api_client *watchers;

    raft_id leader;
    enum raft_role role;
    raft_term term;
};

/* node.c */
void node_mark_dirty(struct node *n);
const struct config_node *node_member(const struct node *n, raft_id id);
void waitq_push(struct waitq *q, struct waiter *w);
void api_client_unref(struct api_client *c);

/* peer.c */
int peer_start(struct node *n, char *err, size_t errlen);
void peer_stop(struct node *n);
void peer_send(void *arg, const struct raft_msg *m);

/* api.c */
int api_start(struct node *n, char *err, size_t errlen);
void api_stop(struct node *n);
void api_applied(void *arg, const struct raft_entry *e, const struct kv_result *res);
void api_read_state(void *arg, const struct raft_read_state *rs);
void api_leader_changed(struct node *n);
void api_serve_ready_reads(struct node *n);
void api_sweep(struct node *n, double now);
void api_fail_all(struct node *n);

#endif
