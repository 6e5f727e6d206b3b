/* rpc.h - the server side of the client protocol (proto/raftkv.proto) that
 * raftkv-node and raftkv-proxy share: client connections and their
 * listeners, the Response envelope, and WATCH_LEADER streams.  What a
 * request means is the owner's (the node or the proxy): on_request. */
#ifndef RAFTKV_RPC_RPC_H
#define RAFTKV_RPC_RPC_H

#include "net/conn.h"
#include "net/listener.h"
#include "raftkv.pb-c.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct rpc_server;

/* A client connection.  Requests still being worked on hold a reference
 * (rpc_client_hold), so a client that leaves meanwhile is freed only once
 * they finish; their answers are then dropped. */
struct rpc_client {
    struct rpc_server *srv;
    struct net_conn *conn; /* NULL once closed */
    unsigned refs;
    bool watching;
    bool admin; /* accepted on the server's admin_listener */
    uint64_t watch_id;
    struct rpc_client *next_watcher;
    /* The last answer rpc_send() was given (sent or, the client gone,
     * dropped): lets the owner count answers by status without a table of
     * requests. */
    uint64_t replies;
    uint64_t last_reply_id;
    int last_status;
};

struct rpc_server_ops {
    /* One decoded request; the callee owns req. */
    void (*on_request)(struct rpc_client *cl, Raftkv__Request *req);
    /* Optional: sees each frame first, and takes it (true) or has it
     * decoded for on_request (false).  payload is valid during the call. */
    bool (*on_frame)(struct rpc_client *cl, const uint8_t *payload, size_t len);
    /* Optional: add the owner's leader hint to resp (rpc_send_hinted). */
    void (*leader_hint)(void *owner, Raftkv__Response *resp);
};

struct rpc_server {
    struct ev_loop *loop;
    const struct rpc_server_ops *ops;
    void *owner;
    size_t max_conns;
    struct net_conn_limits limits;
    struct rpc_client *watchers;
    /* Connections accepted here carry admin rights (rpc_client.admin):
     * a socket whose file mode guards it.  NULL: none. */
    const struct net_listener *admin_listener;
};

/* server.c */
void rpc_server_init(struct rpc_server *s, struct ev_loop *loop, const struct rpc_server_ops *ops,
                     void *owner, size_t max_conns, const struct net_conn_limits *limits);
/* Serve address (net_listener_start) for this server's clients.  -errno,
 * with one line in err. */
int rpc_server_listen(struct rpc_server *s, const char *name, const char *address, mode_t mode,
                      struct net_listener **out, char *err, size_t errlen);
/* Accept on l's socket too, from this server's loop (another thread's
 * loop serving the same address: whichever loop wakes first takes a new
 * client).  -errno. */
int rpc_server_share(struct rpc_server *s, const struct net_listener *l, struct net_listener **out);
/* Ends every WATCH_LEADER stream; the caller frees its listeners. */
void rpc_server_stop(struct rpc_server *s);

/* A request starts/finishes waiting: counts against the connection's
 * max_in_flight and keeps cl alive. */
void rpc_client_hold(struct rpc_client *cl);
void rpc_client_release(struct rpc_client *cl);

/* Start (or re-aim at id) cl's WATCH_LEADER stream and send the current
 * leader; the others get every change through rpc_notify_leader. */
void rpc_watch(struct rpc_client *cl, uint64_t id, uint64_t leader, uint64_t term,
               const char *address);
void rpc_unwatch(struct rpc_client *cl);
void rpc_notify_leader(struct rpc_server *s, uint64_t leader, uint64_t term, const char *address);

/* response.c */
/* The envelope every answer shares: id, status and (when msg is not NULL)
 * the message; the result is the caller's to add. */
void rpc_response_init(Raftkv__Response *resp, uint64_t id, Raftkv__Status st, const char *msg);
/* The same with the message formatted into buf, RPC_MSG_MAX bytes. */
#define RPC_MSG_MAX 512
void rpc_response_vinit(Raftkv__Response *resp, char *buf, uint64_t id, Raftkv__Status st,
                        const char *fmt, va_list ap) __attribute__((format(printf, 5, 0)));
/* Send resp to cl; nothing if cl is NULL or gone. */
void rpc_send(struct rpc_client *cl, Raftkv__Response *resp);
/* The same with the owner's leader hint. */
void rpc_send_hinted(struct rpc_client *cl, Raftkv__Response *resp);
/* An answer with no result: status and a formatted message, hinted. */
void rpc_reply_error(struct rpc_client *cl, uint64_t id, Raftkv__Status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* One WATCH_LEADER event under cl's watch id. */
void rpc_send_leader_event(struct rpc_client *cl, uint64_t leader, uint64_t term,
                           const char *address);

#endif
