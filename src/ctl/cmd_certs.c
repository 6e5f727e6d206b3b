/* cmd_certs.c - "certs": one more certificate from the cluster CA that
 * 'config generate --tls' made: a node's (add-node) or a client's with a
 * role (add-client), named the way raftkv-node and raftkv-proxy read them;
 * and the CA's revocation list ([cluster] tls_crl): revoke, crl. */
#include "ctl/ctl.h"

#include "ctl/certgen.h"
#include "rpc/rpc.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

struct certs_opts {
    const char *dir;
    uint64_t days;
    const char *ip; /* --ip: also a subjectAltName IP address */
};

static const struct option certs_long[] = {
    {"tls-dir", required_argument, 0, 'd'},
    {"days", required_argument, 0, 'D'},
    {"ip", required_argument, 0, 'I'},
    {0, 0, 0, 0},
};

static int certs_opt(struct ctl *ctl, int c, const char *arg, void *ud)
{
    (void)ctl;
    struct certs_opts *o = ud;
    switch (c) {
    case 'd': o->dir = arg; return 0;
    case 'I': {
        unsigned char buf[sizeof(struct in6_addr)];
        if (inet_pton(AF_INET, arg, buf) != 1 && inet_pton(AF_INET6, arg, buf) != 1)
            return ctl_usage_error("certs", "--ip %s: expected an IPv4 or IPv6 address", arg);
        o->ip = arg;
        return 0;
    }
    case 'D':
        /* 0 is allowed: a certificate that has expired by the time it is
         * used, to try what expiry looks like. */
        if (ctl_parse_u64(arg, &o->days) < 0 || o->days > 36500)
            return ctl_usage_error("certs", "--days %s: expected 0..36500", arg);
        return 0;
    }
    return EXIT_USAGE;
}

static int add_node(const struct certs_opts *o, const char *id_s)
{
    char err[512];
    uint64_t id;
    if (ctl_parse_u64(id_s, &id) < 0 || id < 1 || id > UINT32_MAX)
        return ctl_usage_error("certs", "add-node %s: expected a node id", id_s);
    if (certgen_node(o->dir, id, o->ip, err, sizeof(err)) < 0)
        return ctl_fail(EXIT_ERROR, "certs add-node: %s", err);
    fprintf(stderr, "wrote %s/node-%" PRIu64 ".crt and .key (raftkv-node-%" PRIu64 ")\n", o->dir, id, id);
    return EXIT_OK;
}

static int add_client(const struct certs_opts *o, const char *role, const char *label)
{
    char name[CERTGEN_NAME_MAX + 64], stem[CERTGEN_NAME_MAX + 64], err[512];
    enum rpc_role r;
    snprintf(name, sizeof(name), CERTGEN_CLIENT_PREFIX "%s%s%s", role, label ? "-" : "", label ? label : "");
    /* The daemons' own rule decides what a valid name is. */
    if (rpc_role_from_cert_name(name, strlen(name), &r) < 0 || strlen(name) >= CERTGEN_NAME_MAX)
        return ctl_usage_error("certs", "add-client %s %s: expected a role (read, write, admin) and an "
                               "optional label of letters, digits, '.', '_', '-'", role, label ? label : "");
    snprintf(stem, sizeof(stem), "client-%s%s%s", role, label ? "-" : "", label ? label : "");
    if (certgen_client(o->dir, stem, name, (long)o->days, o->ip, err, sizeof(err)) < 0)
        return ctl_fail(EXIT_ERROR, "certs add-client: %s", err);
    fprintf(stderr, "wrote %s/%s.crt and .key (%s, role %s, %" PRIu64 " days); use them with "
                    "raftkvctl --tls-cert/--tls-key\n", o->dir, stem, name, rpc_role_name(r), o->days);
    return EXIT_OK;
}

/* NAME is a certificate file (a path, or ending in .crt) or the stem of
 * one in the TLS directory: node-3, client-write-billing, admin, proxy. */
static int revoke(const struct certs_opts *o, char **names, int n)
{
    char err[512], paths[16][4096];
    const char *list[16] = {0};
    size_t listed = 0;
    if (n > 16)
        return ctl_usage_error("certs", "revoke: at most 16 certificates at a time");
    for (int i = 0; i < n; i++) {
        size_t len = strlen(names[i]);
        bool file = strchr(names[i], '/') || (len > 4 && strcmp(names[i] + len - 4, ".crt") == 0);
        if (!*names[i])
            return ctl_usage_error("certs", "revoke: an empty name");
        if (file)
            snprintf(paths[i], sizeof(paths[i]), "%s", names[i]);
        else
            snprintf(paths[i], sizeof(paths[i]), "%s/%s.crt", o->dir, names[i]);
        list[i] = paths[i];
    }
    if (certgen_crl(o->dir, list, (size_t)n, &listed, err, sizeof(err)) < 0)
        return ctl_fail(EXIT_ERROR, "certs %s: %s", n ? "revoke" : "crl", err);
    for (int i = 0; i < n; i++)
        fprintf(stderr, "revoked %s\n", list[i]);
    fprintf(stderr, "wrote %s/" CERTGEN_CRL_FILE " (%zu certificates revoked); copy it to every host, name it "
                    "in [cluster] tls_crl and reload nodes and proxy (systemctl reload): their connections "
                    "with a revoked certificate are closed\n", o->dir, listed);
    return EXIT_OK;
}

int cmd_certs(struct ctl *ctl, int argc, char **argv)
{
    struct certs_opts o = {.dir = CTL_TLS_DIR_DEFAULT, .days = CERTGEN_NODE_DAYS};
    int r = ctl_getopt(ctl, ctl_find_command("certs"), argc, argv, certs_long, "", certs_opt, &o);
    if (r)
        return r < 0 ? 0 : r;
    int n = argc - optind;
    char **a = argv + optind;
    if (n == 2 && strcmp(a[0], "add-node") == 0)
        return add_node(&o, a[1]);
    if ((n == 2 || n == 3) && strcmp(a[0], "add-client") == 0)
        return add_client(&o, a[1], n == 3 ? a[2] : NULL);
    if (n >= 2 && strcmp(a[0], "revoke") == 0)
        return revoke(&o, a + 1, n - 1);
    if (n == 1 && strcmp(a[0], "crl") == 0)
        return revoke(&o, NULL, 0);
    return ctl_usage_error("certs", "expected add-node N, add-client ROLE [LABEL], revoke NAME... or crl");
}
