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
struct net_tls;

/* auth.c: who may do what.  Rights grow: read (GET, LIST, STATUS,
 * WATCH_LEADER) < write (SET, DEL, CAS) < admin (TRANSFER_LEADER,
 * MEMBER_CHANGE, METRICS).  Decided once per connection:
 *   - insecure mode: admin, for everyone;
 *   - TLS with a client certificate issued by the cluster CA: the role its
 *     name gives (rpc_role_from_cert_name); another name: anonymous;
 *   - a unix socket: admin for root, this daemon's user and members of its
 *     group (SO_PEERCRED, SO_PEERGROUPS); anonymous for anyone else;
 *   - TCP without a certificate (TLS, or plaintext on loopback): anonymous.
 * "anonymous" is [cluster] anonymous_role. */
enum rpc_role { RPC_ROLE_NONE, RPC_ROLE_READ, RPC_ROLE_WRITE, RPC_ROLE_ADMIN };
#define RPC_ROLE_DESC_MAX 96

struct rpc_security {
    struct net_tls *tls;     /* TCP listeners serve TLS with it; NULL: plaintext */
    bool insecure;           /* [cluster] insecure: no authentication at all */
    enum rpc_role anonymous; /* [cluster] anonymous_role */
};

/* Same order as config_role_name(), which parses and names them. */
const char *rpc_role_name(enum rpc_role r);
/* A certificate name -> role: "raftkv-client-ROLE" or
 * "raftkv-client-ROLE-LABEL" (LABEL: letters, digits, '.', '_', '-'), and
 * "raftkv-node-N" and "raftkv-proxy", which are admin (a node can forge
 * Raft traffic anyway; the proxy enforces its own clients' rights).  0 or
 * -EINVAL (not a raftkv client name). */
int rpc_role_from_cert_name(const char *name, size_t len, enum rpc_role *out);
/* The least role that may send op. */
enum rpc_role rpc_op_role(Raftkv__Request__OpCase op);
/* Without TLS and without insecure, a daemon serves only on loopback:
 * 0 when every address in addrs is loopback (or unix), else -EPERM with
 * one line in err naming the first one that is not. */
int rpc_security_check(const struct rpc_security *sec, const char *const *addrs, size_t n,
                       char *err, size_t errlen);
/* "TLS", "plaintext on loopback" or "INSECURE (no authentication)", for
 * the start-up log, STATUS and systemd's STATUS=. */
const char *rpc_security_mode(const struct rpc_security *sec);

/* A client connection.  Requests still being worked on hold a reference
 * (rpc_client_hold), so a client that leaves meanwhile is freed only once
 * they finish; their answers are then dropped. */
struct rpc_client {
    struct rpc_server *srv;
    struct net_conn *conn; /* NULL once closed */
    unsigned refs;
    bool watching;
    enum rpc_role role;
    char who[RPC_ROLE_DESC_MAX]; /* how role was decided, for refusals */
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
     * decoded for on_request (false).  payload is valid during the call.
     * A frame it takes skips rpc_authorize: it must call rpc_authorize_op. */
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
    struct rpc_security sec;
};

/* auth.c, for server.c: set cl->role for a connection accepted in
 * plaintext (unix: SO_PEERCRED) or once its TLS handshake is done; false
 * (and PERMISSION_DENIED sent) when req needs more than cl->role. */
void rpc_auth_plain(struct rpc_client *cl, const struct net_conn *c);
void rpc_auth_tls(struct rpc_client *cl, const struct net_conn *c);
bool rpc_authorize(struct rpc_client *cl, const Raftkv__Request *req);
/* The same by the request's op and id alone: for an owner that routes raw
 * frames (the proxy's lean path, rpc_server_ops.on_frame) without decoding
 * them, which must check before it forwards. */
bool rpc_authorize_op(struct rpc_client *cl, Raftkv__Request__OpCase op, uint64_t id);

/* server.c */
void rpc_server_init(struct rpc_server *s, struct ev_loop *loop, const struct rpc_server_ops *ops,
                     void *owner, size_t max_conns, const struct net_conn_limits *limits);
/* TLS and rights for every listener opened after this (auth.c). */
void rpc_server_secure(struct rpc_server *s, const struct rpc_security *sec);
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
