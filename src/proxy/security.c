/* security.c - the proxy's TLS context ([cluster] tls_ca and tls_crl,
 * [proxy] tls_cert) and its clients' rights policy, per event loop.  Each loop loads its own
 * context and is the only thread that touches it, so a reload (SIGHUP,
 * passed on by loop 0) needs no lock: every loop swaps its own, and
 * connections made before keep the context they started with. */
#include "proxy/proxy_int.h"

#include "common/log.h"
#include "net/tls.h"

static struct net_tls_files proxy_files(const struct config *cfg)
{
    struct net_tls_files f = {.ca = cfg->cluster.tls_ca, .cert = cfg->proxy.tls_cert, .key = cfg->proxy.tls_key,
                              .crl = cfg->cluster.tls_crl};
    return f;
}

int proxy_security_start(struct proxy *p, char *err, size_t errlen)
{
    const struct config *cfg = p->cfg;
    p->sec.insecure = cfg->cluster.insecure != 0;
    p->sec.anonymous = (enum rpc_role)cfg->cluster.anonymous_role;
    if (*cfg->cluster.tls_ca) {
        struct net_tls_files f = proxy_files(cfg);
        int rv = net_tls_new(&f, &p->sec.tls, err, errlen);
        if (rv < 0)
            return rv;
    }
    /* plaintext is served on loopback only unless insecure */
    const char *addrs[] = {cfg->proxy.listen};
    int rv = rpc_security_check(&p->sec, addrs, 1, err, errlen);
    if (rv < 0 || p->index)
        return rv;
    if (p->sec.insecure)
        log_warn("INSECURE mode ([cluster] insecure = true): every client has every right");
    else
        log_info("security: %s; clients without a certificate get role %s", rpc_security_mode(&p->sec),
                 rpc_role_name(p->sec.anonymous));
    return 0;
}

void proxy_security_reload(struct proxy *p)
{
    char err[512];
    struct net_tls_files f = proxy_files(p->cfg);
    int rv;
    if (!p->sec.tls) {
        if (p->index == 0)
            log_notice("SIGHUP: no TLS configured ([cluster] tls_ca), nothing to reload");
    } else if ((rv = net_tls_reload(p->sec.tls, &f, err, sizeof(err))) < 0) {
        log_error("SIGHUP: loop %zu: certificates not reloaded, the old ones stay in use: %s", p->index,
                  err);
    } else {
        /* each loop its own line only when it closed something */
        if (p->index == 0)
            log_notice("SIGHUP: reloaded CA %s, certificate %s%s%s; new connections use them", f.ca, f.cert,
                       *f.crl ? " and CRL " : "", f.crl);
        if (rv > 0)
            log_notice("SIGHUP: loop %zu closed %d connections whose certificate the CRL revokes", p->index, rv);
    }
}

void proxy_security_stop(struct proxy *p)
{
    net_tls_free(p->sec.tls);
    p->sec.tls = NULL;
}
