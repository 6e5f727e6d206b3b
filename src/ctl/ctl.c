/* ctl.c - the plumbing every raftkvctl command shares: option parsing,
 * finding the endpoints, opening the client, and turning failures into one
 * line on stderr and an exit code. */
#include "ctl/ctl.h"

#include "common/addr.h"
#include "common/config.h"
#include "net/tls.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define DIAG_TIMEOUT_MS 1000u

enum { OPT_TLS_CA = 1000, OPT_TLS_CERT, OPT_TLS_KEY }; /* long options only */

static const struct option common_long[] = {
    {"endpoint", required_argument, 0, 'e'}, {"config", required_argument, 0, 'c'},
    {"output", required_argument, 0, 'o'},   {"timeout", required_argument, 0, 't'},
    {"base64", no_argument, 0, 'b'},         {"help", no_argument, 0, 'h'},
    {"tls-ca", required_argument, 0, OPT_TLS_CA}, {"tls-cert", required_argument, 0, OPT_TLS_CERT},
    {"tls-key", required_argument, 0, OPT_TLS_KEY},
};
#define COMMON_SHORT "e:c:o:t:bh"
#define N_COMMON (sizeof(common_long) / sizeof(common_long[0]))

int ctl_fail(int code, const char *fmt, ...)
{
    va_list ap;
    fputs("raftkvctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return code;
}

int ctl_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "raftkvctl%s%s: ", cmd ? " " : "", cmd ? cmd : "");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see 'raftkvctl %s%s--help')\n", cmd ? cmd : "", cmd ? " " : "");
    return EXIT_USAGE;
}

int ctl_parse_u64(const char *s, uint64_t *out)
{
    char *end;
    if (!s || !*s || *s == '-')
        return -EINVAL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return -EINVAL;
    *out = v;
    return 0;
}

int ctl_parse_duration_ms(const char *s, unsigned *ms)
{
    char *end;
    if (!s || !*s || *s == '-')
        return -EINVAL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || v < 0)
        return -EINVAL;
    double scale = 1000.0; /* a bare number is seconds */
    if (strcmp(end, "ms") == 0)
        scale = 1.0;
    else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0)
        scale = 60000.0;
    else if (*end && strcmp(end, "s") != 0)
        return -EINVAL;
    double r = v * scale;
    if (r > 86400000.0)
        return -EINVAL;
    *ms = (unsigned)(r + 0.5);
    return 0;
}

static int apply_common(struct ctl *ctl, const char *cmd, int c, const char *arg)
{
    switch (c) {
    case 'e': ctl->o.endpoints = arg; return 0;
    case 'c': ctl->o.config = arg; return 0;
    case 'b': ctl->o.base64 = true; return 0;
    case OPT_TLS_CA: ctl->o.tls_ca = arg; return 0;
    case OPT_TLS_CERT: ctl->o.tls_cert = arg; return 0;
    case OPT_TLS_KEY: ctl->o.tls_key = arg; return 0;
    case 'o':
        if (strcmp(arg, "table") == 0)
            ctl->o.format = FMT_TABLE;
        else if (strcmp(arg, "json") == 0)
            ctl->o.format = FMT_JSON;
        else if (strcmp(arg, "plain") == 0)
            ctl->o.format = FMT_PLAIN;
        else if (strcmp(arg, "prometheus") == 0)
            ctl->o.format = FMT_PROMETHEUS; /* metrics; the others print it like plain */
        else
            return ctl_usage_error(cmd, "-o %s: expected table, json, plain or prometheus", arg);
        return 0;
    case 't':
        if (ctl_parse_duration_ms(arg, &ctl->o.timeout_ms) < 0 || ctl->o.timeout_ms == 0)
            return ctl_usage_error(cmd, "--timeout %s: expected a duration like 5s or 500ms", arg);
        return 0;
    }
    return -1;
}

static void command_help(const struct ctl_command *cmd, FILE *out)
{
    fprintf(out, "Usage: raftkvctl [OPTIONS] %s %s\n\n%s\n", cmd->name, cmd->args, cmd->summary);
    if (cmd->help && *cmd->help)
        fprintf(out, "\nOptions:\n%s", cmd->help);
    fprintf(out,
            "\nCommon options (before or after the command):\n"
            "  -e, --endpoint LIST   unix:/path or host:port, comma-separated\n"
            "  -c, --config PATH     raftkv.conf for the default endpoints\n"
            "  -o, --output FORMAT   table, json or plain\n"
            "  -t, --timeout DUR     per request, e.g. 5s or 500ms (default 5s)\n"
            "  -b, --base64          JSON: keys and values as base64\n"
            "  --tls-ca FILE         TLS to TCP endpoints, servers issued by this CA\n"
            "                        (default $RAFTKV_TLS_CA, else the config's tls_ca)\n"
            "  --tls-cert FILE       client certificate: its role (raftkv-client-ROLE)\n"
            "  --tls-key FILE        its key (defaults $RAFTKV_TLS_CERT, $RAFTKV_TLS_KEY)\n"
            "See raftkvctl(1).\n");
}

int ctl_getopt(struct ctl *ctl, const struct ctl_command *cmd, int argc, char **argv,
               const struct option *extra, const char *extra_short,
               int (*on_opt)(struct ctl *ctl, int c, const char *arg, void *ud), void *ud)
{
    struct option all[N_COMMON + 24];
    size_t n = 0;
    for (size_t i = 0; i < N_COMMON; i++)
        all[n++] = common_long[i];
    for (size_t i = 0; extra && extra[i].name && n < sizeof(all) / sizeof(all[0]) - 1; i++)
        all[n++] = extra[i];
    memset(&all[n], 0, sizeof(all[n]));
    char shortopts[64];
    /* Before the command ('+'), parsing stops at the command's name. */
    snprintf(shortopts, sizeof(shortopts), "%s%s%s", cmd ? "" : "+", COMMON_SHORT, extra_short ? extra_short : "");
    const char *name = cmd ? cmd->name : NULL;

    optind = 0; /* GNU: start over, the shell parses many command lines */
    opterr = 0; /* one message of our own instead */
    for (int c; (c = getopt_long(argc, argv, shortopts, all, NULL)) != -1;) {
        if (c == 'h') {
            if (cmd)
                command_help(cmd, stdout);
            else
                ctl_usage(stdout);
            return -1;
        }
        if (c == '?' || c == ':')
            return ctl_usage_error(name, "unknown option '%s', or its value is missing", argv[optind - 1]);
        int r = apply_common(ctl, name, c, optarg);
        if (r == -1)
            r = on_opt ? on_opt(ctl, c, optarg, ud) : ctl_usage_error(name, "bad option");
        if (r)
            return r;
    }
    return 0;
}

/* A proxy listening on a wildcard address is reached on loopback. */
static void connectable(const char *listen, char *buf, size_t len)
{
    char host[256];
    uint16_t port;
    if (addr_split(listen, host, sizeof(host), &port) < 0)
        snprintf(buf, len, "%s", listen);
    else if (!*host || strcmp(host, "*") == 0 || strcmp(host, "0.0.0.0") == 0)
        snprintf(buf, len, "127.0.0.1:%u", port);
    else if (strcmp(host, "::") == 0)
        snprintf(buf, len, "[::1]:%u", port);
    else
        snprintf(buf, len, "%s", listen);
}

static void append(char *buf, size_t len, const char *s)
{
    size_t l = strlen(buf);
    snprintf(buf + l, len - l, "%s%s", l ? "," : "", s);
}

void ctl_default_endpoints(const char *config, char *buf, size_t len)
{
    struct config cfg;
    char err[256], one[ADDR_STRLEN + 8];
    buf[0] = '\0';
    if (config_init(&cfg) < 0 ||
        config_parse_file(&cfg, config ? config : CONFIG_DEFAULT_PATH, err, sizeof(err)) < 0) {
        append(buf, len, "unix:/run/raftkv/proxy.sock");
        config_free(&cfg);
        return;
    }
    if (cfg.proxy.unix_path && *cfg.proxy.unix_path) {
        snprintf(one, sizeof(one), "unix:%s", cfg.proxy.unix_path);
        append(buf, len, one);
    }
    if (cfg.proxy.listen && *cfg.proxy.listen) {
        connectable(cfg.proxy.listen, one, sizeof(one));
        append(buf, len, one);
    }
    /* Then the nodes themselves, so the tool works while the proxy is down. */
    for (size_t i = 0; i < cfg.n_nodes; i++)
        if (cfg.nodes[i].client && *cfg.nodes[i].client) {
            connectable(cfg.nodes[i].client, one, sizeof(one));
            append(buf, len, one);
        }
    config_free(&cfg);
}

static void resolve_endpoints(const struct ctl *ctl, char *buf, size_t len)
{
    const char *env = getenv("RAFTKV_ENDPOINT");
    if (ctl->o.endpoints)
        snprintf(buf, len, "%s", ctl->o.endpoints);
    else if (env && *env && !ctl->o.config)
        snprintf(buf, len, "%s", env);
    else
        ctl_default_endpoints(ctl->o.config, buf, len);
}

static const char *opt_or_env(const char *opt, const char *env)
{
    const char *e = getenv(env);
    return opt ? opt : e && *e ? e : NULL;
}

int ctl_tls(struct ctl *ctl, struct net_tls **out)
{
    char files[sizeof(ctl->tls_files)], err[512], ca_buf[4096] = "";
    const char *ca = opt_or_env(ctl->o.tls_ca, "RAFTKV_TLS_CA");
    const char *cert = opt_or_env(ctl->o.tls_cert, "RAFTKV_TLS_CERT");
    const char *key = opt_or_env(ctl->o.tls_key, "RAFTKV_TLS_KEY");
    if (!ca) {
        /* The cluster's own CA: where the config turns TLS on, the
         * tool follows without being told. */
        struct config cfg;
        if (config_init(&cfg) == 0 &&
            config_parse_file(&cfg, ctl->o.config ? ctl->o.config : CONFIG_DEFAULT_PATH, err, sizeof(err)) == 0 &&
            cfg.cluster.tls_ca && *cfg.cluster.tls_ca)
            snprintf(ca_buf, sizeof(ca_buf), "%s", cfg.cluster.tls_ca);
        config_free(&cfg);
        ca = ca_buf[0] ? ca_buf : NULL;
    }
    *out = NULL;
    if (!ca && !cert)
        return 0;
    if (!ca || (!cert) != (!key))
        return ctl_fail(EXIT_USAGE, "TLS: %s", !ca ? "--tls-cert needs --tls-ca (the cluster's CA)"
                                                   : "--tls-cert and --tls-key go together");
    snprintf(files, sizeof(files), "%s\n%s\n%s", ca, cert ? cert : "", key ? key : "");
    if (ctl->tls && strcmp(files, ctl->tls_files) == 0) {
        *out = ctl->tls;
        return 0;
    }
    struct net_tls_files f = {.ca = ca, .cert = cert, .key = key};
    struct net_tls *t;
    if (net_tls_new(&f, &t, err, sizeof(err)) < 0)
        return ctl_fail(EXIT_USAGE, "%s", err);
    /* The open client may hold connections of the old context. */
    client_free(ctl->cli);
    ctl->cli = NULL;
    net_tls_free(ctl->tls);
    ctl->tls = t;
    snprintf(ctl->tls_files, sizeof(ctl->tls_files), "%s", files);
    *out = t;
    return 0;
}

void ctl_free(struct ctl *ctl)
{
    client_free(ctl->cli);
    ctl->cli = NULL;
    net_tls_free(ctl->tls);
    ctl->tls = NULL;
}

struct client *ctl_client(struct ctl *ctl)
{
    char eps[sizeof(ctl->cli_endpoints)], err[CLIENT_ERRLEN];
    struct net_tls *tls;
    if (ctl_tls(ctl, &tls) != 0)
        return NULL;
    resolve_endpoints(ctl, eps, sizeof(eps));
    if (ctl->cli && strcmp(eps, ctl->cli_endpoints) != 0) {
        client_free(ctl->cli);
        ctl->cli = NULL;
    }
    if (!ctl->cli) {
        struct client_opts co = {.endpoints = eps, .timeout_ms = ctl->o.timeout_ms, .tls = tls};
        if (client_new(&ctl->cli, &co, err, sizeof(err)) < 0) {
            ctl_fail(EXIT_USAGE, "endpoint list '%s': %s", eps, err);
            return NULL;
        }
        snprintf(ctl->cli_endpoints, sizeof(ctl->cli_endpoints), "%s", eps);
    }
    client_set_timeout(ctl->cli, ctl->o.timeout_ms);
    return ctl->cli;
}

static bool unreachable(int rc)
{
    return rc == -ECONNREFUSED || rc == -ENOENT || rc == -ETIMEDOUT || rc == -EHOSTUNREACH ||
           rc == -ECONNRESET || rc == -ENOTCONN || rc == -ENETUNREACH || rc == -EACCES ||
           rc == -EPIPE || rc == -ECONNABORTED;
}

/* "cluster has 1 of 3 nodes reachable", asked quickly of whoever answers. */
static void diagnose(struct ctl *ctl, char *buf, size_t len)
{
    struct ctl sub = {.o = ctl->o, .tls = ctl->tls};
    struct cluster_view v;
    memcpy(sub.tls_files, ctl->tls_files, sizeof(sub.tls_files)); /* so ctl_tls() reuses ctl's */
    char err[CLIENT_ERRLEN];
    buf[0] = '\0';
    sub.o.timeout_ms = DIAG_TIMEOUT_MS;
    if (cluster_view_gather(&sub, &v, err, sizeof(err)) == 0) {
        snprintf(buf, len, "; cluster has %zu of %zu nodes reachable", cluster_view_reachable(&v), v.n_rows);
        cluster_view_free(&v);
    }
    client_free(sub.cli); /* sub.tls is ctl's */
}

int ctl_report(struct ctl *ctl, const char *what, int rc, const Raftkv__Response *resp, const char *err)
{
    char diag[128];
    if (rc < 0) {
        if (rc == -EINVAL)
            return ctl_fail(EXIT_USAGE, "%s: %s; check -e/--endpoint or RAFTKV_ENDPOINT", what, err);
        if (!unreachable(rc))
            return ctl_fail(EXIT_ERROR, "%s: %s", what, err);
        if (rc == -ETIMEDOUT)
            return ctl_fail(EXIT_UNAVAILABLE, "%s: timed out: %s; check 'raftkvctl status' or raise --timeout",
                            what, err);
        return ctl_fail(EXIT_UNAVAILABLE, "%s: cannot reach raftkv: %s; start the proxy or nodes, or point "
                        "-e/RAFTKV_ENDPOINT at a running node (host:port)", what, err);
    }
    const char *msg = resp->message && *resp->message ? resp->message : client_status_name(resp->status);
    switch (resp->status) {
    case RAFTKV__STATUS__OK:
        return EXIT_OK;
    case RAFTKV__STATUS__NOT_FOUND:
        return ctl_fail(EXIT_NOT_FOUND, "%s: not found", what);
    case RAFTKV__STATUS__CAS_FAILED:
        return ctl_fail(EXIT_CAS_FAILED, "%s: %s", what, msg);
    case RAFTKV__STATUS__NOT_LEADER:
    case RAFTKV__STATUS__UNAVAILABLE:
        diagnose(ctl, diag, sizeof(diag));
        return ctl_fail(EXIT_UNAVAILABLE, "%s: unavailable: %s%s; retry later or see 'raftkvctl status'",
                        what, msg, diag);
    case RAFTKV__STATUS__TIMEOUT:
        diagnose(ctl, diag, sizeof(diag));
        return ctl_fail(EXIT_UNAVAILABLE, "%s: timed out on the server: %s%s; see 'raftkvctl status'", what, msg,
                        diag);
    case RAFTKV__STATUS__TOO_LARGE:
        return ctl_fail(EXIT_ERROR, "%s: too large: %s", what, msg);
    case RAFTKV__STATUS__INVALID_ARGUMENT:
        return ctl_fail(EXIT_ERROR, "%s: refused by the server: %s", what, msg);
    case RAFTKV__STATUS__NO_SPACE:
        return ctl_fail(EXIT_NO_SPACE, "%s: no space: %s", what, msg);
    case RAFTKV__STATUS__FAILED_PRECONDITION:
        return ctl_fail(EXIT_REFUSED, "%s: refused: %s", what, msg);
    case RAFTKV__STATUS__PERMISSION_DENIED:
        return ctl_fail(EXIT_PERMISSION, "%s: not permitted: %s; use a client certificate with the role "
                        "(--tls-cert), or the admin socket as root or the raftkv group", what, msg);
    default:
        return ctl_fail(EXIT_ERROR, "%s: server error (%s): %s", what, client_status_name(resp->status), msg);
    }
}
