/* auth.c - rights on the client protocol: which role a connection has
 * (client certificate name, SO_PEERCRED on unix sockets, the anonymous
 * role), which role each operation needs, and the rule that a daemon
 * without TLS serves only on loopback unless told it is insecure. */
#include "rpc/rpc.h"

#include "common/addr.h"
#include "common/config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CLIENT_PREFIX "raftkv-client-"
#define PROXY_NAME "raftkv-proxy"
#define NODE_PREFIX "raftkv-node-"

const char *rpc_role_name(enum rpc_role r)
{
    return config_role_name((int)r);
}

static bool label_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

static bool has_prefix(const char *s, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && memcmp(s, prefix, n) == 0;
}

int rpc_role_from_cert_name(const char *name, size_t len, enum rpc_role *out)
{
    if ((len == strlen(PROXY_NAME) && memcmp(name, PROXY_NAME, len) == 0) ||
        (has_prefix(name, len, NODE_PREFIX) && len > strlen(NODE_PREFIX))) {
        *out = RPC_ROLE_ADMIN;
        return 0;
    }
    if (!has_prefix(name, len, CLIENT_PREFIX))
        return -EINVAL;
    const char *r = name + strlen(CLIENT_PREFIX);
    size_t rest = len - strlen(CLIENT_PREFIX);
    const char *dash = memchr(r, '-', rest);
    size_t rlen = dash ? (size_t)(dash - r) : rest;
    int role = config_role_parse(r, rlen);
    /* "none" names a certificate that vouches for nobody: refuse it rather
     * than guess. */
    if (role <= (int)RPC_ROLE_NONE)
        return -EINVAL;
    if (dash) {
        if (rlen + 1 == rest)
            return -EINVAL; /* "raftkv-client-write-": empty label */
        for (size_t i = rlen + 1; i < rest; i++)
            if (!label_char(r[i]))
                return -EINVAL;
    }
    *out = (enum rpc_role)role;
    return 0;
}

enum rpc_role rpc_op_role(Raftkv__Request__OpCase op)
{
    switch (op) {
    case RAFTKV__REQUEST__OP_SET:
    case RAFTKV__REQUEST__OP_DEL:
    case RAFTKV__REQUEST__OP_CAS:
        return RPC_ROLE_WRITE;
    case RAFTKV__REQUEST__OP_TRANSFER_LEADER:
    case RAFTKV__REQUEST__OP_MEMBER_CHANGE:
    case RAFTKV__REQUEST__OP_METRICS:
        return RPC_ROLE_ADMIN;
    default:
        /* reads, STATUS, WATCH_LEADER; an unknown op is answered
         * INVALID_ARGUMENT by the owner */
        return RPC_ROLE_READ;
    }
}

int rpc_security_check(const struct rpc_security *sec, const char *const *addrs, size_t n,
                       char *err, size_t errlen)
{
    if (sec->tls || sec->insecure)
        return 0;
    for (size_t i = 0; i < n; i++) {
        struct addr a;
        if (!addrs[i] || !*addrs[i] || addr_is_unix_str(addrs[i]))
            continue;
        /* A name or wildcard that does not parse as loopback is refused:
         * it may well reach other hosts. */
        if (addr_parse(addrs[i], &a) < 0 || !addr_is_loopback(&a)) {
            snprintf(err, errlen,
                     "%s is not a loopback address, and without TLS nothing would authenticate "
                     "who connects to it: set [cluster] tls_ca ('raftkvctl config generate --tls'), "
                     "or insecure = true to run without authentication (raftkv.conf(5))",
                     addrs[i]);
            return -EPERM;
        }
    }
    return 0;
}

const char *rpc_security_mode(const struct rpc_security *sec)
{
    if (sec->insecure)
        return sec->tls ? "INSECURE (TLS, but no rights checked)" : "INSECURE (no authentication)";
    return sec->tls ? "TLS" : "plaintext on loopback";
}

/* ---- deciding a connection's role ------------------------------------ */

struct cert_role {
    enum rpc_role role;
    bool found;
    char name[64];
};

static int note_cert_name(const char *name, size_t len, void *arg)
{
    struct cert_role *cr = arg;
    enum rpc_role r;
    if (rpc_role_from_cert_name(name, len, &r) < 0)
        return 0; /* a host name, say: not a raftkv role */
    if (cr->found && cr->role != r)
        return -EACCES; /* two roles in one certificate: ambiguous, refused */
    cr->role = r;
    cr->found = true;
    snprintf(cr->name, sizeof(cr->name), "%.*s", (int)len, name);
    return 0;
}

void rpc_auth_tls(struct rpc_client *cl, const struct net_conn *c)
{
    const struct rpc_security *sec = &cl->srv->sec;
    struct cert_role cr = {0};
    int rv = net_conn_tls_peer_names(c, note_cert_name, &cr);
    if (sec->insecure) {
        cl->role = RPC_ROLE_ADMIN;
        snprintf(cl->who, sizeof(cl->who), "insecure mode");
    } else if (rv == -EACCES && cr.found) {
        cl->role = RPC_ROLE_NONE;
        snprintf(cl->who, sizeof(cl->who), "a certificate naming two roles");
    } else if (rv == 0 && cr.found) {
        cl->role = cr.role;
        snprintf(cl->who, sizeof(cl->who), "certificate %s", cr.name);
    } else {
        cl->role = sec->anonymous;
        snprintf(cl->who, sizeof(cl->who), "%s", rv == 0 ? "a certificate with no raftkv role"
                                                         : "no client certificate");
    }
}

/* True when the peer is in our group (its primary or a supplementary
 * one): "the raftkv group" is whatever group this daemon runs as. */
static bool peer_in_group(int fd, gid_t pgid)
{
    gid_t groups[256];
    socklen_t len = sizeof(groups);
    gid_t ours = getegid();
    if (pgid == ours)
        return true;
#ifdef SO_PEERGROUPS
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0)
        return false; /* too many groups: primary only */
#else
    return false;
#endif
    for (size_t i = 0; i < len / sizeof(gid_t); i++)
        if (groups[i] == ours)
            return true;
    return false;
}

void rpc_auth_plain(struct rpc_client *cl, const struct net_conn *c)
{
    const struct rpc_security *sec = &cl->srv->sec;
    int fd = net_conn_fd(c);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    struct ucred uc;
    socklen_t ul = sizeof(uc);

    if (sec->insecure) {
        cl->role = RPC_ROLE_ADMIN;
        snprintf(cl->who, sizeof(cl->who), "insecure mode");
        return;
    }
    cl->role = sec->anonymous;
    snprintf(cl->who, sizeof(cl->who), "an unauthenticated TCP client");
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0 || ss.ss_family != AF_UNIX)
        return;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &ul) < 0) {
        snprintf(cl->who, sizeof(cl->who), "a unix client of unknown uid");
        return;
    }
    if (uc.uid == 0 || uc.uid == geteuid() || peer_in_group(fd, uc.gid)) {
        cl->role = RPC_ROLE_ADMIN;
        snprintf(cl->who, sizeof(cl->who), "uid %u on a unix socket (root, or this daemon's user or group)",
                 (unsigned)uc.uid);
    } else {
        snprintf(cl->who, sizeof(cl->who), "uid %u on a unix socket (not in this daemon's group)",
                 (unsigned)uc.uid);
    }
}

bool rpc_authorize(struct rpc_client *cl, const Raftkv__Request *req)
{
    return rpc_authorize_op(cl, req->op_case, req->id);
}

bool rpc_authorize_op(struct rpc_client *cl, Raftkv__Request__OpCase op, uint64_t id)
{
    enum rpc_role need = rpc_op_role(op);
    if (cl->role >= need)
        return true;
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field(&raftkv__request__descriptor, (unsigned)op);
    rpc_reply_error(cl, id, RAFTKV__STATUS__PERMISSION_DENIED,
                    "%s needs the %s role; this connection has %s (%s)", f ? f->name : "this request",
                    rpc_role_name(need), rpc_role_name(cl->role), cl->who);
    return false;
}
