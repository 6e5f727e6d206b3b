/* tls.c - the OpenSSL context and the certificate-name rules; the
 * per-connection state machine lives in conn.c next to the plaintext path it
 * replaces. */
#include "net/tls.h"

#include "net/net_int.h"

#include <errno.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct net_tls {
    SSL_CTX *ctx;
    STACK_OF(X509_CRL) *crls; /* ctx's CRLs, for rechecking established links */
    struct net_conn *conns;   /* TLS connections made from t (conn.c's list) */
};

void net_tls_err_reset(void)
{
    if (ERR_peek_error() != 0)
        ERR_clear_error();
}

void net_tls_error_string(char *buf, size_t len)
{
    unsigned long e = ERR_peek_last_error();
    if (e)
        ERR_error_string_n(e, buf, len);
    else
        snprintf(buf, len, "unknown error");
    ERR_clear_error();
}

/* -errno for a file OpenSSL could not load: check it ourselves, since
 * OpenSSL's own error says little about why. */
static int file_error(const char *what, const char *path, char *err, size_t errlen)
{
    char why[200];
    int rv = -EINVAL;

    if (access(path, R_OK) != 0) {
        rv = -errno;
        snprintf(why, sizeof(why), "%s", strerror(errno));
        ERR_clear_error();
    } else {
        net_tls_error_string(why, sizeof(why));
    }
    snprintf(err, errlen, "TLS %s %s: %s", what, path, why);
    return rv;
}

/* X509_V_FLAG_CRL_CHECK wants a CRL for every issuer; a CA the CRL file
 * has nothing from (one being rotated in, say) revokes nothing instead of
 * refusing everyone it issued. */
static int verify_cb(int ok, X509_STORE_CTX *x)
{
    if (!ok && X509_STORE_CTX_get_error(x) == X509_V_ERR_UNABLE_TO_GET_CRL) {
        X509_STORE_CTX_set_error(x, X509_V_OK);
        return 1;
    }
    return ok;
}

/* Whether a CA certificate in store signed crl. */
static bool crl_signed_by_store(X509_STORE *store, X509_CRL *crl)
{
    STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(store);
    for (int i = 0; i < sk_X509_OBJECT_num(objs); i++) {
        X509 *ca = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, i));
        if (ca && X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(ca)) == 0 &&
            X509_CRL_verify(crl, X509_get0_pubkey(ca)) == 1)
            return true;
    }
    ERR_clear_error();
    return false;
}

/* Every CRL in path into ctx's store, checked: at least one, each signed by
 * a CA of f->ca and not past its nextUpdate (an expired CRL would make
 * OpenSSL refuse every certificate of its CA). */
static int crl_load(SSL_CTX *ctx, const struct net_tls_files *f, STACK_OF(X509_CRL) *crls, char *err,
                    size_t errlen)
{
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    BIO *b = BIO_new_file(f->crl, "r");
    X509_CRL *crl;
    int rv = 0;

    if (!b)
        return file_error("CRL", f->crl, err, errlen);
    while (rv == 0 && (crl = PEM_read_bio_X509_CRL(b, NULL, NULL, NULL))) {
        const ASN1_TIME *next = X509_CRL_get0_nextUpdate(crl);
        if (!crl_signed_by_store(store, crl)) {
            snprintf(err, errlen, "TLS CRL %s: a CRL not signed by a CA of %s", f->crl, f->ca);
            rv = -EINVAL;
        } else if (next && X509_cmp_current_time(next) <= 0) {
            snprintf(err, errlen, "TLS CRL %s: expired (nextUpdate passed); renew it with 'raftkvctl certs crl'",
                     f->crl);
            rv = -EINVAL;
        } else if (!X509_STORE_add_crl(store, crl) || !sk_X509_CRL_push(crls, crl)) {
            rv = file_error("CRL", f->crl, err, errlen);
        } else {
            continue; /* crls holds it now */
        }
        X509_CRL_free(crl);
    }
    /* the loop ends on "no start line" at the end of the file */
    unsigned long e = ERR_peek_last_error();
    if (rv == 0 && ERR_GET_REASON(e) != PEM_R_NO_START_LINE) {
        rv = file_error("CRL", f->crl, err, errlen);
    } else if (rv == 0 && sk_X509_CRL_num(crls) == 0) {
        snprintf(err, errlen, "TLS CRL %s: no CRL in the file ('raftkvctl certs crl' writes an empty one)",
                 f->crl);
        rv = -EINVAL;
    }
    ERR_clear_error();
    BIO_free(b);
    if (rv == 0)
        X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
    return rv;
}

/* A context loaded from f, or NULL with err set and *rv the error; its
 * CRLs go to *crls (an empty stack without a CRL file). */
static SSL_CTX *ctx_load(const struct net_tls_files *f, STACK_OF(X509_CRL) **crls, int *rv, char *err,
                         size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());

    ERR_clear_error();
    *rv = -ENOMEM;
    *crls = ctx ? sk_X509_CRL_new_null() : NULL;
    if (!*crls) {
        SSL_CTX_free(ctx);
        snprintf(err, errlen, "TLS: out of memory");
        return NULL;
    }
    *rv = -EINVAL;
    /* TLS 1.3 only: its handshake has no renegotiation, no RSA key
     * exchange, no weak suites to configure away. */
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION)) {
        snprintf(err, errlen, "TLS: this OpenSSL has no TLS 1.3");
        goto fail;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* No tickets: a server would otherwise write them after the handshake
     * on its own; links are long-lived, resumption buys nothing. */
    SSL_CTX_set_num_tickets(ctx, 0);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    /* conn.c hands SSL_write a queue chunk that may grow between a
     * WANT_WRITE and the retry; partial writes let it consume record by
     * record like sendmsg. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    /* Read ahead: one read(2) takes whatever records the socket holds,
     * instead of two per record (its 5-byte header, then its body). */
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, verify_cb);
    if (!SSL_CTX_load_verify_locations(ctx, f->ca, NULL)) {
        *rv = file_error("CA", f->ca, err, errlen);
        goto fail;
    }
    if (f->crl && *f->crl && (*rv = crl_load(ctx, f, *crls, err, errlen)) < 0)
        goto fail;
    *rv = -EINVAL;
    if (!f->cert)
        return ctx;
    if (SSL_CTX_use_certificate_chain_file(ctx, f->cert) != 1) {
        *rv = file_error("certificate", f->cert, err, errlen);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, f->key, SSL_FILETYPE_PEM) != 1) {
        *rv = file_error("key", f->key, err, errlen);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen, "TLS key %s does not belong to certificate %s", f->key, f->cert);
        ERR_clear_error();
        goto fail;
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    sk_X509_CRL_pop_free(*crls, X509_CRL_free);
    *crls = NULL;
    return NULL;
}

int net_tls_new(const struct net_tls_files *f, struct net_tls **out, char *err, size_t errlen)
{
    struct net_tls *t = calloc(1, sizeof(*t));
    int rv = -ENOMEM;

    *out = NULL;
    if (!t) {
        snprintf(err, errlen, "TLS: out of memory");
        return rv;
    }
    if (!(t->ctx = ctx_load(f, &t->crls, &rv, err, errlen))) {
        free(t);
        return rv;
    }
    *out = t;
    return 0;
}

int net_tls_reload(struct net_tls *t, const struct net_tls_files *f, char *err, size_t errlen)
{
    int rv;
    STACK_OF(X509_CRL) *crls;
    SSL_CTX *ctx = ctx_load(f, &crls, &rv, err, errlen);
    if (!ctx)
        return rv;
    /* Every SSL holds a reference to the context it was made from, so
     * connections made before this keep working on the old one -- unless
     * the new CRLs revoke their peer. */
    SSL_CTX_free(t->ctx);
    sk_X509_CRL_pop_free(t->crls, X509_CRL_free);
    t->ctx = ctx;
    t->crls = crls;
    return net_tls_recheck_conns(t);
}

void net_tls_free(struct net_tls *t)
{
    if (!t)
        return;
    net_tls_forget_conns(t);
    SSL_CTX_free(t->ctx);
    sk_X509_CRL_pop_free(t->crls, X509_CRL_free);
    free(t);
}

struct net_conn **net_tls_conn_list(struct net_tls *t)
{
    return &t->conns;
}

bool net_tls_ssl_current(const struct net_tls *t, const struct ssl_st *ssl)
{
    return SSL_get_SSL_CTX(ssl) == t->ctx;
}

bool net_tls_ssl_revoked(const struct net_tls *t, const struct ssl_st *ssl)
{
    X509 *x = SSL_get0_peer_certificate(ssl);
    X509_REVOKED *rev;

    for (int i = 0; x && i < sk_X509_CRL_num(t->crls); i++) {
        X509_CRL *crl = sk_X509_CRL_value(t->crls, i);
        if (X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_issuer_name(x)) == 0 &&
            X509_CRL_get0_by_cert(crl, &rev, x) == 1)
            return true;
    }
    return false;
}

struct ssl_st *net_tls_ssl_new(struct net_tls *t, int fd, enum net_tls_mode mode, const char *expect_name)
{
    SSL *ssl = SSL_new(t->ctx);
    if (!ssl)
        return NULL;
    if (!SSL_set_fd(ssl, fd) || (expect_name && !SSL_set1_host(ssl, expect_name))) {
        SSL_free(ssl);
        return NULL;
    }
    if (mode == NET_TLS_SERVER_ANY_CLIENT)
        SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL); /* verified if sent, not required */
    if (mode == NET_TLS_CLIENT)
        SSL_set_connect_state(ssl);
    else
        SSL_set_accept_state(ssl);
    return ssl;
}

int net_tls_name_node_id(const char *name, size_t len, uint32_t *id)
{
    size_t plen = sizeof(NET_TLS_NODE_PREFIX) - 1;
    uint64_t v = 0;

    if (len <= plen || len > plen + 10 || memcmp(name, NET_TLS_NODE_PREFIX, plen) != 0)
        return -EINVAL;
    if (name[plen] == '0')
        return -EINVAL; /* one spelling per id: "raftkv-node-01" is not node 1 */
    for (size_t i = plen; i < len; i++) {
        if (name[i] < '0' || name[i] > '9')
            return -EINVAL;
        v = v * 10 + (uint64_t)(name[i] - '0');
    }
    if (v == 0 || v > UINT32_MAX)
        return -EINVAL;
    *id = (uint32_t)v;
    return 0;
}

void net_tls_node_name(uint32_t id, char *buf, size_t len)
{
    snprintf(buf, len, NET_TLS_NODE_PREFIX "%u", id);
}

/* Adds the id a name stands for; two different ids in one certificate make
 * it ambiguous, which is refused as a whole. */
struct node_names {
    uint32_t id;
    bool found;
};

static int note_name(const char *s, size_t len, void *arg)
{
    struct node_names *nn = arg;
    uint32_t v;
    if (net_tls_name_node_id(s, len, &v) < 0)
        return 0; /* another name (a host name, say): not ours to judge */
    if (nn->found && nn->id != v)
        return -EACCES;
    nn->id = v;
    nn->found = true;
    return 0;
}

static int call_name(const ASN1_STRING *a, int (*fn)(const char *, size_t, void *), void *arg)
{
    const unsigned char *s = ASN1_STRING_get0_data(a);
    int len = ASN1_STRING_length(a);
    if (len < 0 || memchr(s, '\0', (size_t)len))
        return 0;
    return fn((const char *)s, (size_t)len, arg);
}

int net_tls_peer_names(struct ssl_st *ssl, int (*fn)(const char *name, size_t len, void *arg), void *arg)
{
    X509 *x = SSL_get0_peer_certificate(ssl);
    bool any_dns = false;
    int rv = 0;

    if (!x)
        return -EACCES;
    GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans) && rv == 0; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        if (g->type != GEN_DNS)
            continue;
        any_dns = true;
        rv = call_name(g->d.dNSName, fn, arg);
    }
    GENERAL_NAMES_free(sans);
    if (!any_dns && rv == 0) {
        /* RFC 6125: the CN counts only when there are no DNS names. */
        const X509_NAME *subj = X509_get_subject_name(x);
        for (int i = -1; rv == 0 && (i = X509_NAME_get_index_by_NID(subj, NID_commonName, i)) >= 0;)
            rv = call_name(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, i)), fn, arg);
    }
    return rv;
}

int net_tls_peer_node(struct ssl_st *ssl, uint32_t *id)
{
    struct node_names nn = {0};
    int rv = net_tls_peer_names(ssl, note_name, &nn);
    if (rv < 0)
        return rv;
    if (!nn.found)
        return -EACCES;
    *id = nn.id;
    return 0;
}
