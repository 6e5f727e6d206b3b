/* certgen.c - the cluster CA, node certificates and the CA's revocation
 * list (certgen.h).  The CA may sign only end-entity certificates (pathlen
 * 0); a node certificate cannot sign anything.  Nothing is written until
 * every key and certificate is made, and no existing key or certificate is
 * replaced; the CRL alone is rewritten, atomically. */
#include "ctl/certgen.h"

#include "net/tls.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int ossl_fail(char *err, size_t errlen, const char *what)
{
    char why[200];
    unsigned long e = ERR_peek_last_error();
    if (e)
        ERR_error_string_n(e, why, sizeof(why));
    else
        snprintf(why, sizeof(why), "out of memory");
    ERR_clear_error();
    snprintf(err, errlen, "%s: %s", what, why);
    return -EINVAL;
}

static bool add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *ex = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    bool ok = ex && X509_add_ext(x, ex, -1);
    X509_EXTENSION_free(ex);
    return ok;
}

/* A certificate for key named cn, signed by issuer (NULL: self-signed CA);
 * server: good for both TLS roles, else a client's only; ip: also an
 * subjectAltName IP address (NULL: none). */
static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key, long days,
                       bool server, const char *ip)
{
    bool ca = issuer == NULL;
    unsigned char serial[16];
    X509 *x = X509_new();
    BIGNUM *bn = NULL;
    bool ok = x && RAND_bytes(serial, sizeof(serial)) == 1;
    if (ok) {
        serial[0] &= 0x7f; /* a positive serial, as RFC 5280 asks */
        bn = BN_bin2bn(serial, sizeof(serial), NULL);
        ok = bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) && X509_set_version(x, X509_VERSION_3) &&
             /* an hour of slack for clocks a little behind ours */
             X509_gmtime_adj(X509_getm_notBefore(x), -3600) &&
             X509_gmtime_adj(X509_getm_notAfter(x), days * 86400L) && X509_set_pubkey(x, key);
    }
    BN_free(bn);
    X509_NAME *name = ok ? X509_get_subject_name(x) : NULL;
    ok = ok && X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"raftkv", -1, -1, 0) &&
         X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0) &&
         X509_set_issuer_name(x, ca ? name : X509_get_subject_name(issuer));
    if (ok) {
        X509V3_CTX ctx;
        X509V3_set_ctx_nodb(&ctx);
        X509V3_set_ctx(&ctx, ca ? x : issuer, x, NULL, NULL, 0);
        char san[CERTGEN_NAME_MAX + 80];
        snprintf(san, sizeof(san), "DNS:%s%s%s", cn, ip ? ",IP:" : "", ip ? ip : "");
        ok = add_ext(x, &ctx, NID_subject_key_identifier, "hash") &&
             (ca ? add_ext(x, &ctx, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") &&
                       add_ext(x, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign")
                 : add_ext(x, &ctx, NID_basic_constraints, "critical,CA:FALSE") &&
                       add_ext(x, &ctx, NID_key_usage, "critical,digitalSignature") &&
                       /* a node or the proxy is a TLS server (it accepts) and a
                        * client (it dials); a client certificate cannot pose
                        * as a server */
                       add_ext(x, &ctx, NID_ext_key_usage, server ? "serverAuth,clientAuth" : "clientAuth") &&
                       add_ext(x, &ctx, NID_subject_alt_name, san) &&
                       add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always")) &&
             X509_sign(x, ca ? key : issuer_key, EVP_sha256()) > 0;
    }
    if (!ok) {
        X509_free(x);
        return NULL;
    }
    return x;
}

/* What write_pem writes: one of the three. */
struct pem_obj {
    X509 *cert;
    EVP_PKEY *key;
    X509_CRL *crl;
};

/* Creates path (never replacing it) and writes the PEM of o, synced. */
static int write_pem(const char *path, struct pem_obj o, char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, o.key ? 0600 : 0644);
    if (fd < 0) {
        int rv = -errno;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return rv;
    }
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        unlink(path);
        snprintf(err, errlen, "%s: out of memory", path);
        return -ENOMEM;
    }
    bool ok = o.key   ? PEM_write_PrivateKey(f, o.key, NULL, NULL, 0, NULL, NULL)
              : o.crl ? PEM_write_X509_CRL(f, o.crl)
                      : PEM_write_X509(f, o.cert);
    ok = ok && fflush(f) == 0 && fsync(fd) == 0;
    if (fclose(f) != 0 || !ok) {
        unlink(path);
        return ossl_fail(err, errlen, path);
    }
    return 0;
}

struct pair {
    char crt[4096], key[4096];
};

static void pair_paths(struct pair *p, const char *dir, const char *stem)
{
    snprintf(p->crt, sizeof(p->crt), "%s/%s.crt", dir, stem);
    snprintf(p->key, sizeof(p->key), "%s/%s.key", dir, stem);
}

static int refuse_existing(const struct pair *p, char *err, size_t errlen)
{
    const char *paths[2] = {p->crt, p->key};
    for (int i = 0; i < 2; i++)
        if (access(paths[i], F_OK) == 0) {
            snprintf(err, errlen, "%s exists; not replacing it (remove it first to start over)", paths[i]);
            return -EEXIST;
        }
    return 0;
}

/* A node's or the proxy's key must be readable by the services, which run
 * as group raftkv (units/): root writing gives the file (and the directory,
 * mode 0750) to that group, the key mode 0640.  Elsewhere -- tests, a
 * user's own directory -- everything stays the writer's alone. */
static void share_with_services(const char *path, mode_t mode)
{
    struct group *g = geteuid() == 0 ? getgrnam("raftkv") : NULL;
    if (g && chown(path, (uid_t)-1, g->gr_gid) == 0)
        (void)chmod(path, mode);
}

/* A fresh key and its certificate, written to p. */
static int issue(const struct pair *p, const char *cn, X509 *ca, EVP_PKEY *ca_key, long days, bool server,
                 const char *ip, X509 **cert_out, EVP_PKEY **key_out, char *err, size_t errlen)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = key ? make_cert(key, cn, ca, ca_key, days, server, ip) : NULL;
    int rv = x ? 0 : ossl_fail(err, errlen, cn);
    if (rv == 0 && (rv = write_pem(p->key, (struct pem_obj){.key = key}, err, errlen)) == 0 &&
        (rv = write_pem(p->crt, (struct pem_obj){.cert = x}, err, errlen)) < 0)
        unlink(p->key);
    if (rv == 0 && server && ca)
        share_with_services(p->key, 0640);
    if (rv == 0 && cert_out && key_out) {
        *cert_out = x;
        *key_out = key;
        return 0;
    }
    X509_free(x);
    EVP_PKEY_free(key);
    return rv;
}

static int issue_node(const char *dir, uint64_t id, const char *ip, X509 *ca, EVP_PKEY *ca_key, char *err,
                      size_t errlen)
{
    char stem[32], cn[NET_TLS_NAME_MAX];
    struct pair p;
    if (id == 0 || id > UINT32_MAX) {
        snprintf(err, errlen, "node id %" PRIu64 " out of range", id);
        return -EINVAL;
    }
    snprintf(stem, sizeof(stem), "node-%" PRIu64, id);
    pair_paths(&p, dir, stem);
    net_tls_node_name((uint32_t)id, cn, sizeof(cn));
    int rv = refuse_existing(&p, err, errlen);
    return rv < 0 ? rv : issue(&p, cn, ca, ca_key, CERTGEN_NODE_DAYS, true, ip, NULL, NULL, err, errlen);
}

/* dir/stem.crt and .key for name, never replacing either. */
static int issue_named(const char *dir, const char *stem, const char *name, long days, bool server,
                       const char *ip, X509 *ca, EVP_PKEY *ca_key, char *err, size_t errlen)
{
    struct pair p;
    pair_paths(&p, dir, stem);
    int rv = refuse_existing(&p, err, errlen);
    return rv < 0 ? rv : issue(&p, name, ca, ca_key, days, server, ip, NULL, NULL, err, errlen);
}

static int make_dir(const char *dir, char *err, size_t errlen)
{
    if (mkdir(dir, 0700) == 0) {
        share_with_services(dir, 0750);
        return 0;
    }
    if (errno == EEXIST)
        return 0;
    int rv = -errno;
    snprintf(err, errlen, "%s: %s", dir, strerror(errno));
    return rv;
}

int certgen_cluster(const char *dir, uint64_t nodes, char *err, size_t errlen)
{
    struct pair ca_p;
    X509 *ca = NULL;
    EVP_PKEY *ca_key = NULL;
    int rv = make_dir(dir, err, errlen);
    if (rv < 0)
        return rv;
    pair_paths(&ca_p, dir, "ca");
    if ((rv = refuse_existing(&ca_p, err, errlen)) < 0)
        return rv;
    for (uint64_t i = 0; i <= nodes + 1; i++) {
        char stem[32];
        struct pair p;
        /* 0: the proxy, nodes + 1: the admin client, else node i */
        snprintf(stem, sizeof(stem), "node-%" PRIu64, i);
        pair_paths(&p, dir, i == 0 ? "proxy" : i > nodes ? "admin" : stem);
        if ((rv = refuse_existing(&p, err, errlen)) < 0)
            return rv;
    }
    char crl[4200];
    snprintf(crl, sizeof(crl), "%s/" CERTGEN_CRL_FILE, dir);
    if (access(crl, F_OK) == 0) {
        snprintf(err, errlen, "%s exists; not replacing it (remove it first to start over)", crl);
        return -EEXIST;
    }
    if ((rv = issue(&ca_p, "raftkv cluster CA", NULL, NULL, CERTGEN_CA_DAYS, false, NULL, &ca, &ca_key, err,
                    errlen)) < 0)
        return rv;
    for (uint64_t i = 1; i <= nodes && rv == 0; i++)
        rv = issue_node(dir, i, NULL, ca, ca_key, err, errlen);
    if (rv == 0)
        rv = issue_named(dir, "proxy", CERTGEN_PROXY_NAME, CERTGEN_NODE_DAYS, true, NULL, ca, ca_key, err,
                         errlen);
    if (rv == 0)
        rv = issue_named(dir, "admin", CERTGEN_CLIENT_PREFIX "admin", CERTGEN_NODE_DAYS, false, NULL, ca,
                         ca_key, err, errlen);
    if (rv == 0) /* empty: revoking one later needs no config change */
        rv = certgen_crl(dir, NULL, 0, NULL, err, errlen);
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    return rv;
}

/* The CA in dir (ca.crt, ca.key), for issuing one more certificate. */
static int load_ca(const char *dir, X509 **ca, EVP_PKEY **ca_key, char *err, size_t errlen)
{
    struct pair ca_p;
    pair_paths(&ca_p, dir, "ca");
    FILE *fc = fopen(ca_p.crt, "r"), *fk = fopen(ca_p.key, "r");
    int rv = 0;
    *ca = fc ? PEM_read_X509(fc, NULL, NULL, NULL) : NULL;
    *ca_key = fk ? PEM_read_PrivateKey(fk, NULL, NULL, NULL) : NULL;
    if (!fc || !fk) {
        rv = -errno;
        snprintf(err, errlen, "%s: %s", !fc ? ca_p.crt : ca_p.key, strerror(errno));
    } else if (!*ca || !*ca_key) {
        rv = ossl_fail(err, errlen, !*ca ? ca_p.crt : ca_p.key);
    }
    if (fc)
        fclose(fc);
    if (fk)
        fclose(fk);
    if (rv < 0) {
        X509_free(*ca);
        EVP_PKEY_free(*ca_key);
    }
    return rv;
}

int certgen_node(const char *dir, uint64_t id, const char *ip, char *err, size_t errlen)
{
    X509 *ca;
    EVP_PKEY *ca_key;
    int rv = load_ca(dir, &ca, &ca_key, err, errlen);
    if (rv < 0)
        return rv;
    rv = issue_node(dir, id, ip, ca, ca_key, err, errlen);
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    return rv;
}

int certgen_client(const char *dir, const char *stem, const char *name, long days, const char *ip, char *err,
                   size_t errlen)
{
    X509 *ca;
    EVP_PKEY *ca_key;
    if (strlen(name) >= CERTGEN_NAME_MAX) {
        snprintf(err, errlen, "name '%s' is longer than %d bytes", name, CERTGEN_NAME_MAX - 1);
        return -EINVAL;
    }
    int rv = load_ca(dir, &ca, &ca_key, err, errlen);
    if (rv < 0)
        return rv;
    rv = issue_named(dir, stem, name, days, false, ip, ca, ca_key, err, errlen);
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    return rv;
}

/* ---- revocation list ------------------------------------------------------ */

/* dir/crl.pem as it is, or a new empty CRL of ca when there is none. */
static int crl_open(const char *path, X509 *ca, X509_CRL **out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    X509_CRL *crl;
    if (!f && errno != ENOENT) {
        int rv = -errno;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return rv;
    }
    if (f) {
        crl = PEM_read_X509_CRL(f, NULL, NULL, NULL);
        fclose(f);
        if (!crl)
            return ossl_fail(err, errlen, path);
        if (X509_CRL_verify(crl, X509_get0_pubkey(ca)) != 1) {
            X509_CRL_free(crl);
            ERR_clear_error();
            snprintf(err, errlen, "%s is not signed by this CA; move it away to start a new one", path);
            return -EINVAL;
        }
    } else if (!(crl = X509_CRL_new()) || !X509_CRL_set_version(crl, X509_CRL_VERSION_2) ||
               !X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca))) {
        X509_CRL_free(crl);
        return ossl_fail(err, errlen, path);
    }
    *out = crl;
    return 0;
}

/* Adds the certificate in path to crl unless it is there already. */
static int crl_add(X509_CRL *crl, const char *path, X509 *ca, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        int rv = -errno;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return rv;
    }
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    X509_REVOKED *rev = NULL;
    ASN1_TIME *now = NULL;
    int rv = 0;
    fclose(f);
    if (!x)
        return ossl_fail(err, errlen, path);
    if (X509_cmp(x, ca) == 0) {
        snprintf(err, errlen, "%s is the CA itself: to retire a CA, rotate it (raftkv.conf(5), TLS)", path);
        rv = -EINVAL;
    } else if (X509_check_issued(ca, x) != X509_V_OK || X509_verify(x, X509_get0_pubkey(ca)) != 1) {
        snprintf(err, errlen, "%s was not issued by this CA", path);
        rv = -EINVAL;
    } else if (X509_CRL_get0_by_cert(crl, &rev, x) != 1) {
        rev = X509_REVOKED_new();
        now = X509_gmtime_adj(NULL, 0);
        if (!rev || !now || !X509_REVOKED_set_serialNumber(rev, X509_get_serialNumber(x)) ||
            !X509_REVOKED_set_revocationDate(rev, now) || !X509_CRL_add0_revoked(crl, rev)) {
            X509_REVOKED_free(rev);
            rv = ossl_fail(err, errlen, path);
        }
    }
    ERR_clear_error();
    ASN1_TIME_free(now);
    X509_free(x);
    return rv;
}

/* Replaces the extension nid of crl with value (X509V3 config syntax). */
static bool crl_set_ext(X509_CRL *crl, X509 *ca, int nid, const char *value)
{
    X509V3_CTX ctx;
    int i;
    while ((i = X509_CRL_get_ext_by_NID(crl, nid, -1)) >= 0)
        X509_EXTENSION_free(X509_CRL_delete_ext(crl, i));
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, ca, NULL, NULL, crl, 0);
    X509_EXTENSION *ex = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    bool ok = ex && X509_CRL_add_ext(crl, ex, -1);
    X509_EXTENSION_free(ex);
    return ok;
}

/* Dates, CRL number + 1, authority key id, sorted, signed. */
static bool crl_sign(X509_CRL *crl, X509 *ca, EVP_PKEY *ca_key)
{
    ASN1_INTEGER *num = X509_CRL_get_ext_d2i(crl, NID_crl_number, NULL, NULL);
    uint64_t n = 0;
    if (!num || ASN1_INTEGER_get_uint64(&n, num) != 1)
        n = 0;
    ASN1_INTEGER_free(num);
    ERR_clear_error();
    num = ASN1_INTEGER_new();
    ASN1_TIME *last = X509_gmtime_adj(NULL, -3600), *next = X509_gmtime_adj(NULL, CERTGEN_CA_DAYS * 86400L);
    bool ok = num && last && next && ASN1_INTEGER_set_uint64(num, n + 1) &&
              X509_CRL_set1_lastUpdate(crl, last) && X509_CRL_set1_nextUpdate(crl, next) &&
              X509_CRL_add1_ext_i2d(crl, NID_crl_number, num, 0, X509V3_ADD_REPLACE) == 1 &&
              crl_set_ext(crl, ca, NID_authority_key_identifier, "keyid:always") && X509_CRL_sort(crl) &&
              X509_CRL_sign(crl, ca_key, EVP_sha256()) > 0;
    ASN1_INTEGER_free(num);
    ASN1_TIME_free(last);
    ASN1_TIME_free(next);
    return ok;
}

/* path replaced by crl's PEM: temp file, fsync, rename. */
static int crl_write(const char *path, X509_CRL *crl, char *err, size_t errlen)
{
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    (void)unlink(tmp); /* left by an earlier run that died */
    int rv = write_pem(tmp, (struct pem_obj){.crl = crl}, err, errlen);
    if (rv == 0 && rename(tmp, path) < 0) {
        rv = -errno;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        unlink(tmp);
    }
    return rv;
}

int certgen_crl(const char *dir, const char *const *certs, size_t n, size_t *listed, char *err, size_t errlen)
{
    char path[4096];
    X509 *ca;
    EVP_PKEY *ca_key;
    X509_CRL *crl = NULL;
    int rv = load_ca(dir, &ca, &ca_key, err, errlen);
    if (rv < 0)
        return rv;
    snprintf(path, sizeof(path), "%s/" CERTGEN_CRL_FILE, dir);
    rv = crl_open(path, ca, &crl, err, errlen);
    for (size_t i = 0; rv == 0 && i < n; i++)
        rv = crl_add(crl, certs[i], ca, err, errlen);
    if (rv == 0 && !crl_sign(crl, ca, ca_key))
        rv = ossl_fail(err, errlen, path);
    if (rv == 0)
        rv = crl_write(path, crl, err, errlen);
    if (rv == 0 && listed) {
        STACK_OF(X509_REVOKED) *revs = X509_CRL_get_REVOKED(crl);
        *listed = revs ? (size_t)sk_X509_REVOKED_num(revs) : 0;
    }
    X509_CRL_free(crl);
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    return rv;
}
