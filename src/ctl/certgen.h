/* certgen.h - a cluster CA and node certificates through OpenSSL's API (no
 * shell-out to openssl(1), no cfssl): what 'raftkvctl config generate --tls'
 * writes.  Keys are EC P-256; a node's certificate names it
 * "raftkv-node-N" as CN and as subjectAltName DNS (net/tls.h, "Names"),
 * and is good for both TLS roles, since every node both dials and accepts. */
#ifndef RAFTKV_CTL_CERTGEN_H
#define RAFTKV_CTL_CERTGEN_H

#include <stddef.h>
#include <stdint.h>

#define CERTGEN_CA_DAYS 3650
#define CERTGEN_NODE_DAYS 825
#define CERTGEN_NAME_MAX 64
/* src/rpc/auth.c's names: the proxy's, and a client's "raftkv-client-ROLE"
 * or "raftkv-client-ROLE-LABEL". */
#define CERTGEN_PROXY_NAME "raftkv-proxy"
#define CERTGEN_CLIENT_PREFIX "raftkv-client-"

/* Writes dir/ca.crt, dir/ca.key; for each id in 1..nodes dir/node-ID.crt
 * and dir/node-ID.key; dir/proxy.crt and .key ("raftkv-proxy"); and
 * dir/admin.crt and .key ("raftkv-client-admin", a client-only
 * certificate for raftkvctl); dir/crl.pem, the CA's (empty) revocation
 * list (certgen_crl).  Keys mode 0600; dir is created mode 0700 if
 * missing.  Never overwrites: an existing file is -EEXIST, so a second run
 * cannot silently replace a cluster's CA.  0 or -errno, with one line in
 * err. */
int certgen_cluster(const char *dir, uint64_t nodes, char *err, size_t errlen);

/* One more node certificate from the CA in dir (dir/ca.crt, dir/ca.key).
 * ip (NULL: none): an IP address it also names (subjectAltName IP), for
 * TLS software that checks a server's address, as Go's and etcd's do;
 * raftkv itself goes by the DNS name. */
int certgen_node(const char *dir, uint64_t id, const char *ip, char *err, size_t errlen);

/* A client-only certificate named name, valid for days (0: it expires at
 * once -- for tests of expiry), as dir/stem.crt and dir/stem.key; ip as
 * above (etcd checks a client's address against it). */
int certgen_client(const char *dir, const char *stem, const char *name, long days, const char *ip, char *err,
                   size_t errlen);

/* Revocation: dir/crl.pem, the CA's certificate revocation list, made or
 * updated: each of the n certificate files (issued by the CA in dir; the
 * CA itself is refused) is added to what it already lists, then the list
 * is signed again, valid from an hour ago (clocks a little behind) for
 * CERTGEN_CA_DAYS, its CRL number one higher, and replaced atomically
 * (mode 0644: it is public).  n = 0 writes it afresh with what it lists
 * (an empty CRL the first time).  *listed: how many certificates it
 * revokes now.  0 or -errno with one line in err. */
#define CERTGEN_CRL_FILE "crl.pem"
int certgen_crl(const char *dir, const char *const *certs, size_t n, size_t *listed, char *err, size_t errlen);

#endif
