/* security.c - a node's TLS context and client-rights policy: built once
 * from [cluster] tls_ca, tls_crl, insecure and anonymous_role and this
 * node's certificate, shared by the peer links and the client port, and
 * loaded again from the same files on SIGHUP without dropping a connection
 * (but those whose certificate the new CRL revokes). */
#include "node/node_int.h"

#include "common/log.h"
#include "net/tls.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static struct net_tls_files node_files(const struct node *n)
{
    const struct config_node *me = config_node_find(n->cfg, n->id);
    struct net_tls_files f = {.ca = n->cfg->cluster.tls_ca, .cert = me->tls_cert, .key = me->tls_key,
                              .crl = n->cfg->cluster.tls_crl};
    return f;
}

int node_security_start(struct node *n, char *err, size_t errlen)
{
    const struct config *cfg = n->cfg;
    const struct config_node *me = config_node_find(cfg, n->id);
    n->sec.insecure = cfg->cluster.insecure != 0;
    n->sec.anonymous = (enum rpc_role)cfg->cluster.anonymous_role;
    if (*cfg->cluster.tls_ca) {
        struct net_tls_files f = node_files(n);
        int rv = net_tls_new(&f, &n->tls, err, errlen);
        if (rv < 0)
            return rv;
        n->sec.tls = n->tls;
    }
    const char *addrs[] = {me->peer, me->client};
    int rv = rpc_security_check(&n->sec, addrs, 2, err, errlen);
    if (rv < 0)
        return rv;
    if (n->sec.insecure)
        log_warn("INSECURE mode ([cluster] insecure = true): every client has every right, and "
                 "%s", n->tls ? "rights are not checked" : "anyone who can reach a peer port can "
                 "speak for any member");
    else if (n->tls)
        log_info("security: TLS 1.3, CA %s, this node's certificate %s, %s%s; peer links mutual, "
                 "clients without a certificate get role %s", cfg->cluster.tls_ca, me->tls_cert,
                 *cfg->cluster.tls_crl ? "CRL " : "no CRL", cfg->cluster.tls_crl,
                 rpc_role_name(n->sec.anonymous));
    else
        log_notice("security: plaintext on loopback ([cluster] tls_ca is not set); TCP clients "
                   "get role %s, admin takes the admin socket", rpc_role_name(n->sec.anonymous));
    return 0;
}

void node_security_reload(struct node *n)
{
    char err[512];
    if (!n->tls) {
        log_notice("SIGHUP: no TLS configured ([cluster] tls_ca), nothing to reload");
        return;
    }
    struct net_tls_files f = node_files(n);
    int rv = net_tls_reload(n->tls, &f, err, sizeof(err));
    if (rv < 0)
        log_error("SIGHUP: certificates not reloaded, the old ones stay in use: %s", err);
    else
        log_notice("SIGHUP: reloaded CA %s, certificate %s%s%s; new connections use them, "
                   "established ones stay%s", f.ca, f.cert, *f.crl ? " and CRL " : "", f.crl,
                   rv > 0 ? " but those whose certificate the CRL revokes" : "");
    if (rv > 0)
        log_notice("SIGHUP: closed %d connections whose certificate the CRL revokes", rv);
}

void node_security_stop(struct node *n)
{
    net_tls_free(n->tls);
    n->tls = NULL;
    n->sec.tls = NULL;
}
