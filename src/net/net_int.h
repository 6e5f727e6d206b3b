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

/* tls.c for conn.c. */
struct ssl_st;
/* The node id the verified peer certificate names (tls.h, "Names").  0, or
 * -EACCES: none, or two different ones. */
int net_tls_peer_node(struct ssl_st *ssl, uint32_t *id);
/* OpenSSL's last error as one line; clears the thread's error queue. */
void net_tls_error_string(char *buf, size_t len);

#endif
