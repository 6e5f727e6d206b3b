/* tls.h - TLS (OpenSSL 3) for framed connections: one context per daemon
 * holding the CA that vouches for peers plus this process's own certificate
 * and key, replaceable at run time (net_tls_reload: new connections use the
 * new files, established ones keep theirs).  Peer links are mutual: the
 * other side must present a certificate issued by the CA, or the handshake
 * fails; on client ports a certificate is optional (NET_TLS_SERVER_ANY_CLIENT).  TLS 1.3
 * only, no renegotiation, no session tickets (nothing is written after the
 * handshake that the loop did not ask for).  The handshake itself is driven
 * by net_conn (conn.c), non-blocking, and cut off at frame_timeout_ms.
 *
 * Revocation: with a CRL file, a peer whose certificate is listed in its
 * issuer's CRL is refused at the handshake (X509_V_FLAG_CRL_CHECK on the
 * leaf), and a reload closes the established connections it now revokes.
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
    const char *cert; /* PEM: our certificate (chain); NULL: present none
                       * (a client without a certificate) */
    const char *key;  /* PEM: its private key; NULL with cert */
    const char *crl;  /* PEM: certificate revocation lists of the CA(s), or
                       * NULL/"" for none.  Each must be signed by a CA in ca;
                       * a revoked peer certificate fails the handshake.  A
                       * CA with no CRL in the file revokes nothing (so a CA
                       * being rotated in needs no CRL yet). */
};

/* Which end of a handshake, and what the other end must show. */
enum net_tls_mode {
    NET_TLS_CLIENT,            /* verify the server's certificate */
    NET_TLS_SERVER,            /* the client must present a certificate */
    NET_TLS_SERVER_ANY_CLIENT, /* a client certificate is verified if sent */
};

/* Loads and checks the files (the key must match the certificate).  0, or
 * -ENOENT/-EACCES/-EINVAL/-ENOMEM with one line in err naming the file and
 * OpenSSL's reason. */
int net_tls_new(const struct net_tls_files *files, struct net_tls **out, char *err, size_t errlen);
/* Loads the files again (a rotated certificate, a new CA) into a new
 * context that every later connection uses; connections already made keep
 * the old one until they close -- except those whose peer certificate the
 * new CRL revokes: they are closed (NET_CLOSE_TLS, -EACCES), from the loop,
 * as a handshake would refuse them now.  Call it on the loop thread that
 * owns t's connections.  The number of connections closed (>= 0), or
 * -errno with err set; on failure t is unchanged. */
int net_tls_reload(struct net_tls *t, const struct net_tls_files *files, char *err, size_t errlen);
void net_tls_free(struct net_tls *t);

/* A new SSL on fd for a blocking client (src/client) or net_conn.  A client
 * with expect_name checks that the server's certificate carries it
 * (SSL_set1_host).  NULL when out of memory. */
struct ssl_st;
struct ssl_st *net_tls_ssl_new(struct net_tls *t, int fd, enum net_tls_mode mode, const char *expect_name);

/* Calls fn with each name the verified peer certificate is known by, under
 * the rule above (subjectAltName DNS entries, else the subject CNs); names
 * with an embedded NUL are skipped.  Stops at, and returns, fn's first
 * non-zero result; -EACCES without a peer certificate. */
int net_tls_peer_names(struct ssl_st *ssl, int (*fn)(const char *name, size_t len, void *arg), void *arg);

/* Before an SSL_read/SSL_write whose failure SSL_get_error() judges: the
 * thread's OpenSSL error queue must be empty.  ERR_clear_error() wipes all
 * of its slots every time, the largest single OpenSSL cost per request in
 * a profile of 64 clients' gets; this looks first and clears only when
 * something is there. */
void net_tls_err_reset(void);

/* "raftkv-node-N" -> N.  Strict: decimal, no sign, no leading zero, no
 * trailing text, 1..UINT32_MAX.  0 or -EINVAL. */
int net_tls_name_node_id(const char *name, size_t len, uint32_t *id);
/* The name a node's certificate must carry. */
void net_tls_node_name(uint32_t id, char *buf, size_t len);

#endif
