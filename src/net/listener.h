/* listener.h - listening sockets: bound by the daemon, or inherited from
 * systemd socket activation by name; an accept loop that turns each client
 * into a net_conn and refuses clients beyond a connection limit. */
#ifndef RAFTKV_NET_LISTENER_H
#define RAFTKV_NET_LISTENER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/addr.h"
#include "net/conn.h"

struct ev_loop;
struct net_listener;

/* Bind and listen on a (TCP: SO_REUSEADDR, so a restart does not wait out
 * TIME_WAIT; unix: a stale socket file nobody listens on is replaced, a live
 * one is -EADDRINUSE, then chmod to unix_mode).  Returns the fd (non-blocking,
 * close-on-exec) or -errno. */
int net_listen_bind(const struct addr *a, int backlog, mode_t unix_mode);

/* Listening sockets systemd passed with FileDescriptorName=name ("peer",
 * "client", "admin"): up to max fds into fds; returns how many (0: none, the
 * caller binds itself) or -errno.  The inherited set is read once per
 * process, so several names can be asked for in any order. */
int net_listen_fds_named(const char *name, int *fds, size_t max);

/* The inherited socket named name if there is one, else net_listen_bind(a).
 * *inherited tells which (may be NULL). */
int net_listen_open(const char *name, const struct addr *a, int backlog, mode_t unix_mode,
                    bool *inherited);

struct net_listener_opts {
    size_t max_conns;               /* open conns from this listener at once;
                                     * at the limit (or out of fds) the one idle
                                     * longest, for over a second, is closed
                                     * to admit a newcomer */
    struct net_conn_limits limits;  /* for every accepted connection */
    const struct net_conn_ops *conn_ops; /* for every accepted connection */
    /* TLS server side (and client certificates required: tls.h) on every
     * TCP connection; NULL = plaintext.  Unix sockets stay plaintext. */
    struct net_tls *tls;
    /* Client ports: a client certificate is checked if one is sent, but
     * none is required (the owner decides what an anonymous client may). */
    bool tls_cert_optional;
};

struct net_listener_ops {
    /* A new connection, already reading.  ud is the listener's; set the
     * connection's own with net_conn_set_userdata(). */
    void (*on_accept)(struct net_listener *l, struct net_conn *c, void *ud);
    /* Optional: a client was refused because max_conns are open and none
     * of them has been idle long enough to give way (it gets accept +
     * close, so it sees EOF at once instead of hanging).  Called at most
     * once per 10 s, so a flood does not become a log flood; unreported
     * says how many refusals since the last call were not reported.  An
     * idle one that does give way is closed as NET_CLOSE_EVICTED (its
     * on_close says so). */
    void (*on_refuse)(struct net_listener *l, uint64_t unreported, void *ud);
};

/* Takes ownership of a listening fd and starts accepting.  NULL (fd closed)
 * on allocation failure. */
struct net_listener *net_listener_new(struct ev_loop *loop, int fd, const struct net_listener_opts *opts,
                                      const struct net_listener_ops *ops, void *ud);
/* Stops accepting and closes the listening fd.  Connections already accepted
 * stay open and independent.  A bound unix socket file is left in place
 * (systemd or the next start replaces it). */
/* Everything a daemon does to serve one address: parse it ("host:port",
 * "unix:/path" or "/path"), take the systemd socket called `name` or bind
 * it, and start a listener.  On failure err holds one line naming the
 * address; *inherited says whether systemd passed the socket. */
int net_listener_start(struct ev_loop *loop, const char *name, const char *address,
                       mode_t unix_mode, const struct net_listener_opts *opts,
                       const struct net_listener_ops *ops, void *ud,
                       struct net_listener **out, bool *inherited, char *err, size_t errlen);
void net_listener_free(struct net_listener *l);
/* Close every connection l accepted (their on_close runs), as a daemon does
 * before it exits: nothing it accepted outlives its loop. */
void net_listener_close_conns(struct net_listener *l);

size_t net_listener_conns(const struct net_listener *l);   /* open now; NULL: 0 */
uint64_t net_listener_refused(const struct net_listener *l); /* since creation */
uint64_t net_listener_evicted(const struct net_listener *l); /* since creation */
/* Local address (to learn an ephemeral port).  -errno. */
int net_listener_addr(const struct net_listener *l, struct addr *out);
int net_listener_fd(const struct net_listener *l);

#endif
