/* net_int.h - what the files of src/net share with each other and not with
 * the daemons: socket set-up helpers and the hook by which a listener learns
 * that one of its connections is gone. */
#ifndef RAFTKV_NET_INT_H
#define RAFTKV_NET_INT_H

#include "net/conn.h"

/* Close with a reason of the caller's choosing (a listener evicting an idle
 * connection); like net_conn_close() otherwise. */
void net_conn_shut(struct net_conn *c, enum net_close_reason reason, int err);

/* Called once, just before c is freed, however it ends. */
void net_conn_set_release_hook(struct net_conn *c, void (*fn)(struct net_conn *c, void *arg), void *arg);

/* O_NONBLOCK + FD_CLOEXEC; TCP_NODELAY when fd is TCP (Raft and request
 * latency matter more than packet count).  -errno. */
int net_socket_prepare(int fd);

/* A TCP socket whose local and peer addresses are the same: it connected
 * to itself (dial.c treats that as a refused connect). */
bool net_fd_connected_to_itself(int fd);

/* tls.c for conn.c. */
struct ssl_st;
/* The node id the verified peer certificate names (tls.h, "Names").  0, or
 * -EACCES: none, or two different ones. */
int net_tls_peer_node(struct ssl_st *ssl, uint32_t *id);
/* OpenSSL's last error as one line; clears the thread's error queue. */
void net_tls_error_string(char *buf, size_t len);

/* Revocation of established connections.  tls.c keeps the list head of
 * the TLS connections made from a context (conn.c links and unlinks them,
 * all on the loop thread that owns t); on a reload conn.c closes those the
 * new CRLs revoke. */
struct net_conn **net_tls_conn_list(struct net_tls *t);
/* Whether ssl was made from t's current context (not from before a reload). */
bool net_tls_ssl_current(const struct net_tls *t, const struct ssl_st *ssl);
/* Whether t's CRLs list ssl's verified peer certificate. */
bool net_tls_ssl_revoked(const struct net_tls *t, const struct ssl_st *ssl);
/* conn.c: closes t's connections whose peer is revoked now; the count. */
int net_tls_recheck_conns(struct net_tls *t);
/* conn.c: t is being freed; its connections forget it. */
void net_tls_forget_conns(struct net_tls *t);

#endif
