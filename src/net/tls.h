/* tls.h - TLS (OpenSSL 3) for framed connections: one context per daemon
 * holding the CA that vouches for peers plus this process's own certificate
 * and key.  Mutual: whichever side a connection is on, the other side must
 * present a certificate issued by the CA, or the handshake fails.  TLS 1.3
 * only, no renegotiation, no session tickets (nothing is written after the
 * handshake that the loop did not ask for).  The handshake itself is driven
 * by net_conn (conn.c), non-blocking, and cut off at frame_timeout_ms.
 *
 * Names: a raftkv node's certificate names it "raftkv-node-N" (N = its
 * node id) as a subjectAltName DNS entry, or, only when the certificate has
 * no DNS entries at all, as its subject CN -- the same rule OpenSSL's host
 * check (SSL_set1_host) applies, so the dialer's check of "is this node N"
 * and the acceptor's "which node is this" cannot disagree. */
#ifndef RAFTKV_NET_TLS_H
#define RAFTKV_NET_TLS_H

#include <stddef.h>
#include <stdint.h>

#define NET_TLS_NODE_PREFIX "raftkv-node-"
/* "raftkv-node-" + up to 10 digits + NUL */
#define NET_TLS_NAME_MAX 32

struct net_tls;

struct net_tls_files {
    const char *ca;   /* PEM: the CA certificate(s) peers must be issued by */
    const char *cert; /* PEM: our certificate (chain) */
    const char *key;  /* PEM: its private key */
};

/* Loads and checks the files (the key must match the certificate).  0, or
 * -ENOENT/-EACCES/-EINVAL/-ENOMEM with one line in err naming the file and
 * OpenSSL's reason. */
int net_tls_new(const struct net_tls_files *files, struct net_tls **out, char *err, size_t errlen);
void net_tls_free(struct net_tls *t);

/* "raftkv-node-N" -> N.  Strict: decimal, no sign, no leading zero, no
 * trailing text, 1..UINT32_MAX.  0 or -EINVAL. */
int net_tls_name_node_id(const char *name, size_t len, uint32_t *id);
/* The name a node's certificate must carry. */
void net_tls_node_name(uint32_t id, char *buf, size_t len);

#endif
