/* proxy_int.h - the proxy's shared state.  One event loop; every request a
 * client sends becomes an op that is routed to a node (an upstream), parked
 * until it can be, or answered by the proxy itself.  Files by concern:
 * proxy.c clients, upstream.c node links and health, route.c read choice,
 * writeq.c the leader wait queue and write retries, session.c the session
 * pool, status.c STATUS and WATCH_LEADER, frame.c the wire fields the lean
 * path reads and rewrites. */
#ifndef RAFTKV_PROXY_INT_H
#define RAFTKV_PROXY_INT_H

#include "common/config.h"
#include "net/conn.h"
#include "net/dial.h"
#include "net/listener.h"
#include "proxy/frame.h"
#include "raftkv.pb-c.h"
#include "rpc/rpc.h"

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROXY_VERSION_STRING RAFTKV_VERSION_STRING
/* The node answers a link's WATCH_LEADER with this id forever; proxy ids
 * for everything else start above it. */
#define WATCH_ID 1

struct proxy;
struct fanout;
struct proxy_metrics;

enum op_kind { OP_READ, OP_WRITE, OP_TRANSFER, OP_POLL, OP_FANOUT };

struct slot {                /* session.c */
    uint64_t client_id;
    uint64_t seq;
    struct slot *next_free;
};

/* A request body up to this size lives inside its op (no allocation per
 * request); a larger one is malloc'ed. */
#define OP_BODY_INLINE 512

struct op {
    enum op_kind kind;
    int op_case;             /* Raftkv__Request__OpCase */
    struct rpc_client *cl;   /* NULL for the proxy's own requests */
    /* Either req (decoded; id/session rewritten per attempt) or, on the lean
     * path (reads and writes), body: the client's bytes minus id, client_id
     * and sequence (frame.c), sent behind our own header. */
    Raftkv__Request *req;
    uint8_t *body;
    size_t body_len;
    uint64_t sess_client_id, sess_seq; /* body's session; client_id 0: none */
    uint64_t client_req_id;
    uint64_t arrival;        /* global arrival order, for the queue */
    double arrived;          /* proxy_now() at arrival, for the latency metrics */
    double deadline;         /* give up (answer) at this time */
    double queued_since;     /* in the leader queue since */
    double not_before;       /* retry pacing */
    struct slot *slot;       /* proxy-assigned session, or NULL */
    bool maybe_applied;      /* an earlier attempt's fate is unknown */
    uint64_t tried;          /* bitmask of upstream indexes (reads) */
    Raftkv__Status last_status;
    char last_msg[160];
    /* while sent */
    struct upstream *up;
    uint64_t up_id;
    double sent_at;
    struct fanout *fo;
    size_t fo_index;
    struct op *prev, *next;  /* upstream outstanding list, a waiting list or
                              * the free list */
    uint8_t body_inline[OP_BODY_INLINE];
};

struct oplist {
    struct op *head, *tail;
    size_t n;
};

struct upstream {
    struct proxy *p;
    size_t index;
    uint32_t id;
    const char *address;
    struct net_dial *dial;
    bool up;
    bool healthy;
    struct oplist out;       /* sent, unanswered */
    uint32_t in_flight;      /* client reads/writes among them */
    double ewma_us;
    double next_poll;
    double probe_backoff;    /* seconds, while unhealthy */
    bool poll_out;
    /* How far behind; see update_lag() in upstream.c. */
    uint64_t lag;
    bool lag_known;
    bool status_known;       /* applied/commit/last_index below are from a poll */
    bool leader_view;        /* match_index/leader_lag below are from the leader */
    uint64_t match_index, leader_lag;
    uint64_t applied, commit, last_index, term;
    const char *role;        /* literal */
    uint64_t reads_served, writes_served;
};

struct proxy {
    struct ev_loop *loop;
    const struct config *cfg;
    struct net_conn_limits limits;
    struct net_listener *tcp_l, *unix_l;
    struct upstream *ups;
    size_t n_ups;
    uint32_t leader;         /* 0 = unknown */
    uint64_t term;
    double leader_since;
    struct oplist queue;     /* writes and transfers waiting for a leader */
    struct oplist parked;    /* reads waiting for a node to serve them */
    double next_deadline_scan; /* writeq.c: of the writes sent */
    uint32_t reclaimed_for;  /* writeq.c: the leader old leaders' writes went to */
    struct rpc_server rpc;   /* clients, WATCH_LEADER streams */
    struct fanout *fanouts;  /* status.c: STATUS fanouts in progress */
    uint64_t next_up_id;
    uint64_t next_arrival;
    uint32_t in_flight;      /* client requests not yet answered */
    double start;
    ev_timer tick;
    char notify[160];
    /* workers.c: this loop's number (0: the main thread's, which speaks
     * for the process: logs leader changes, notifies systemd, publishes
     * the metrics' gauges) of n_workers. */
    size_t index, n_workers;
    uint64_t rng;            /* proxy_random() */
    /* session.c */
    struct slot *free_slots;
    size_t n_slots;
    /* proxy.c: answered ops kept for reuse, and the arena a lean request is
     * checked in (decoded by protobuf-c without malloc, then dropped). */
    struct op *free_ops;
    size_t n_free_ops;
    struct {
        ProtobufCAllocator a;
        size_t used;
        _Alignas(16) uint8_t buf[8192];
    } scratch;
    struct proxy_metrics *m; /* metrics.c */
    /* security.c: TLS (sec.tls, [proxy] tls_cert) on the TCP port and the
     * node links, and the rights of clients, which the proxy checks itself. */
    struct rpc_security sec;
};

/* workers.c: serve until SIGTERM/SIGINT; the exit code. */
int proxy_workers_run(const struct config *cfg);

/* security.c: this loop's TLS context and rights policy. */
int proxy_security_start(struct proxy *p, char *err, size_t errlen);
void proxy_security_reload(struct proxy *p);
void proxy_security_stop(struct proxy *p);

/* proxy.c */
int proxy_start(struct proxy *p, char *err, size_t errlen);
/* Serve first's listening sockets from p's loop too (loops 1..). */
int proxy_share_listeners(struct proxy *p, const struct proxy *first, char *err, size_t errlen);
uint64_t proxy_random(struct proxy *p);
void proxy_stop(struct proxy *p);
void op_answer(struct proxy *p, struct op *op, Raftkv__Response *resp);
void op_fail(struct proxy *p, struct op *op, Raftkv__Status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void op_free(struct proxy *p, struct op *op);
struct op *op_alloc(struct proxy *p); /* zeroed; NULL when out of memory */
void ops_free(struct proxy *p);       /* the free list, at exit */
/* The write session the op carries (client_id 0: none). */
uint64_t op_client_id(const struct op *op);
void op_set_session(struct op *op, uint64_t client_id, uint64_t seq);
double proxy_now(const struct proxy *p);

/* oplist helpers (proxy.c) */
void oplist_push(struct oplist *l, struct op *op);
void oplist_insert_ordered(struct oplist *l, struct op *op);
void oplist_remove(struct oplist *l, struct op *op);

/* upstream.c */
int upstreams_start(struct proxy *p, char *err, size_t errlen);
void upstreams_stop(struct proxy *p);
int upstream_send(struct upstream *u, struct op *op);
void upstream_forget(struct upstream *u, struct op *op);
void upstreams_tick(struct proxy *p, double now);
struct upstream *upstream_by_id(struct proxy *p, uint64_t id);
size_t upstreams_reachable(const struct proxy *p);
size_t upstreams_healthy(const struct proxy *p);
void proxy_set_leader(struct proxy *p, uint64_t id, uint64_t term, const char *why);

/* route.c */
void route_read(struct proxy *p, struct op *op);
void route_read_done(struct proxy *p, struct op *op, Raftkv__Response *resp);
void route_requeue_read(struct proxy *p, struct op *op);
void route_tick(struct proxy *p, double now);

/* writeq.c */
void writeq_submit(struct proxy *p, struct op *op);
void writeq_done(struct proxy *p, struct op *op, Raftkv__Response *resp);
void writeq_requeue(struct proxy *p, struct op *op, bool fate_unknown, const char *why);
void writeq_flush(struct proxy *p);
void writeq_tick(struct proxy *p, double now);

/* session.c */
struct slot *session_acquire(struct proxy *p);
void session_release(struct proxy *p, struct slot *s);
void session_renew(struct slot *s);
void sessions_free(struct proxy *p);

/* status.c */
void status_answer(struct proxy *p, struct op *op);
struct op *status_poll_op(struct proxy *p);
void status_fanout_done(struct proxy *p, struct op *op, Raftkv__Response *resp);
void status_tick(struct proxy *p, double now);
void watch_add(struct proxy *p, struct rpc_client *cl, uint64_t id);
void watch_notify(struct proxy *p);
void status_notify_systemd(struct proxy *p);

/* metrics.c: Prometheus series and the HTTP endpoint ([proxy] metrics). */
int proxy_metrics_start(struct proxy *p, char *err, size_t errlen);
void proxy_metrics_stop(struct proxy *p);
void proxy_metrics_publish(struct proxy *p); /* every tick: gauges, loop heartbeat */
void proxy_metrics_answered(struct proxy *p, const struct op *op, int status);
void proxy_metrics_sent(struct proxy *p, const struct upstream *u, const struct op *op);
void proxy_metrics_served(struct proxy *p, const struct upstream *u, const struct op *op);
void proxy_metrics_retry(struct proxy *p, bool write);
void proxy_metrics_queued(struct proxy *p);
void proxy_metrics_dequeued(struct proxy *p, const struct op *op);
void proxy_metrics_leader_changed(struct proxy *p);
/* What STATUS reports for the whole process: p's own numbers now plus the
 * other loops' as of their last tick (TICK_S); served counts from the
 * shared counters. */
struct proxy_totals {
    uint64_t in_flight, queued;
    uint64_t up_in_flight[CONFIG_MAX_NODES], reads[CONFIG_MAX_NODES], writes[CONFIG_MAX_NODES];
};
void proxy_metrics_totals(const struct proxy *p, struct proxy_totals *t);

#endif
