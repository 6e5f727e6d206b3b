/* confgen.c - "config generate": a raftkv.conf for a new N-node cluster, or
 * (--add-node N) one more [node.N] section appended to an existing file.
 * The text is checked with the node's own parser and validator before it is
 * written, so what this prints is what raftkv-node accepts. */
#include "ctl/ctl.h"

#include "common/addr.h"
#include "common/config.h"
#include "ctl/certgen.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

struct gen_opts {
    uint64_t nodes, base_port, add_node;
    const char *host, *data_dir_base, *run_dir, *name, *file;
    const char *tls_dir; /* --tls: certificates go here; NULL = no TLS */
    char cluster_id[33];
    bool host_set, run_dir_set;
    bool insecure;       /* --insecure: plaintext beyond loopback, no rights checked */
};

/* 128 random bits as hex: what makes this cluster distinct from any other
 * generated with the same name. */
static int random_id(char out[33])
{
    uint8_t b[16];
    size_t got = 0;
    while (got < sizeof(b)) {
        ssize_t n = getrandom(b + got, sizeof(b) - got, 0);
        if (n < 0 && errno != EINTR)
            return -errno;
        if (n > 0)
            got += (size_t)n;
    }
    for (size_t i = 0; i < sizeof(b); i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
    return 0;
}

static const struct option gen_long[] = {
    {"nodes", required_argument, 0, 'N'},         {"base-port", required_argument, 0, 'P'},
    {"host", required_argument, 0, 'H'},          {"data-dir-base", required_argument, 0, 'D'},
    {"run-dir", required_argument, 0, 'R'},       {"name", required_argument, 0, 'M'},
    {"file", required_argument, 0, 'f'},          {"add-node", required_argument, 0, 'A'},
    {"tls", no_argument, 0, 'T'},                 {"tls-dir", required_argument, 0, 'd'},
    {"insecure", no_argument, 0, 'I'},
    {0, 0, 0, 0},
};

static int gen_opt(struct ctl *ctl, int c, const char *arg, void *ud)
{
    (void)ctl;
    struct gen_opts *o = ud;
    switch (c) {
    case 'N':
        if (ctl_parse_u64(arg, &o->nodes) < 0 || o->nodes < 1 || o->nodes > CONFIG_MAX_NODES)
            return ctl_usage_error("config", "--nodes %s: expected 1..%d", arg, CONFIG_MAX_NODES);
        return 0;
    case 'P':
        if (ctl_parse_u64(arg, &o->base_port) < 0 || o->base_port < 1)
            return ctl_usage_error("config", "--base-port %s: expected a port number", arg);
        return 0;
    case 'A':
        if (ctl_parse_u64(arg, &o->add_node) < 0 || o->add_node < 1 || o->add_node > CONFIG_MAX_NODE_ID)
            return ctl_usage_error("config", "--add-node %s: expected a node id 1..%d", arg,
                                   CONFIG_MAX_NODE_ID);
        return 0;
    case 'H': o->host = arg; o->host_set = true; return 0;
    case 'D': o->data_dir_base = arg; return 0;
    case 'R': o->run_dir = arg; o->run_dir_set = true; return 0;
    case 'M': o->name = arg; return 0;
    case 'f': o->file = arg; return 0;
    case 'T': if (!o->tls_dir) o->tls_dir = CTL_TLS_DIR_DEFAULT; return 0;
    case 'd': o->tls_dir = arg; return 0;
    case 'I': o->insecure = true; return 0;
    }
    return EXIT_USAGE;
}

/* "[::1]" for a v6 literal, so that host:port parses back. */
static void host_port(char *buf, size_t len, const char *host, uint64_t port)
{
    if (strchr(host, ':') && host[0] != '[')
        snprintf(buf, len, "[%s]:%" PRIu64, host, port);
    else
        snprintf(buf, len, "%s:%" PRIu64, host, port);
}

/* One [node.N] section; the same shape for a new cluster and an added node. */
static void render_node(FILE *f, uint64_t id, const char *host, uint64_t peer_port,
                        uint64_t client_port, const char *run_dir, const char *tls_dir)
{
    char addr[300];
    fprintf(f, "\n[node.%" PRIu64 "]\n", id);
    host_port(addr, sizeof(addr), host, peer_port);
    fprintf(f, "peer = %s\n", addr);
    host_port(addr, sizeof(addr), host, client_port);
    fprintf(f, "client = %s\n", addr);
    fprintf(f, "admin = %s/node-%" PRIu64 ".sock\n", run_dir, id);
    if (tls_dir)
        fprintf(f, "tls_cert = %s/node-%" PRIu64 ".crt\ntls_key = %s/node-%" PRIu64 ".key\n", tls_dir, id,
                tls_dir, id);
}

static char *render(const struct gen_opts *o)
{
    char *text = NULL, addr[300];
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return NULL;
    fprintf(f,
            "# raftkv.conf for a %" PRIu64 "-node cluster, written by 'raftkvctl config generate'.\n"
            "# The same file goes on every host; each node is started with --id N.\n"
            "# The [node.N] sections found at a node's first start found the cluster;\n"
            "# after that the membership lives in the Raft log and this file only gives\n"
            "# addresses (add one with 'raftkvctl config generate --add-node N -f FILE').\n"
            "# Every option and its default: raftkv.conf(5).\n\n"
            "[cluster]\nname = %s\n"
            "# Random: a node refuses peers of another cluster id, even under the same name.\n"
            "id = %s\ndata_dir_base = %s\n",
            o->nodes, o->name, o->cluster_id, o->data_dir_base);
    if (o->tls_dir)
        fprintf(f, "# TLS on every TCP socket; peer links mutual, each node's certificate names\n"
                   "# it raftkv-node-N.  Clients: a raftkv-client-ROLE certificate gives ROLE;\n"
                   "# without one they may read only ('raftkvctl certs add-client write NAME').\n"
                   "# Revoked certificates: 'raftkvctl certs revoke NAME' adds to crl.pem.\n"
                   "tls_ca = %s/ca.crt\ntls_crl = %s/" CERTGEN_CRL_FILE "\nanonymous_role = read\n",
                o->tls_dir, o->tls_dir);
    if (o->insecure)
        fprintf(f, "# INSECURE: plaintext, and every client may do anything, admin included;\n"
                   "# anyone who can reach a peer port can speak for any member.  Use --tls.\n"
                   "insecure = true\n");
    for (uint64_t i = 1; i <= o->nodes; i++)
        render_node(f, i, o->host, o->base_port + 100 + i, o->base_port + i, o->run_dir, o->tls_dir);
    host_port(addr, sizeof(addr), o->host, o->base_port);
    fprintf(f, "\n[proxy]\nlisten = %s\nunix = %s/proxy.sock\n", addr, o->run_dir);
    if (o->tls_dir)
        fprintf(f, "tls_cert = %s/proxy.crt\ntls_key = %s/proxy.key\n", o->tls_dir, o->tls_dir);
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

/* What raftkv-node would say about text: 0, or -EINVAL with err filled. */
static int check_text(const char *name, const char *text, char *err, size_t errlen)
{
    struct config cfg;
    int r = config_init(&cfg);
    if (r == 0)
        r = config_parse_string(&cfg, name, text, strlen(text), err, errlen);
    if (r == 0)
        r = config_validate(&cfg, err, errlen);
    config_free(&cfg);
    return r;
}

/* ---- --add-node ---------------------------------------------------------- */

/* The port of a "host:port" config address, 0 for none (unix, unset). */
static unsigned port_of(const char *a)
{
    char host[256];
    uint16_t port = 0;
    if (!a || addr_is_unix_str(a) || addr_split(a, host, sizeof(host), &port) < 0)
        return 0;
    return port;
}

static bool port_used(const struct config *cfg, unsigned port)
{
    if (port_of(cfg->proxy.listen) == port)
        return true;
    for (size_t i = 0; i < cfg->n_nodes; i++)
        if (port_of(cfg->nodes[i].peer) == port || port_of(cfg->nodes[i].client) == port)
            return true;
    return false;
}

/* Next port above every port of kind (peer: true) that no address of the
 * file uses; 0 when none is left. */
static unsigned next_port(const struct config *cfg, bool peer, unsigned also_taken)
{
    unsigned max = 0;
    for (size_t i = 0; i < cfg->n_nodes; i++) {
        unsigned p = port_of(peer ? cfg->nodes[i].peer : cfg->nodes[i].client);
        max = p > max ? p : max;
    }
    for (unsigned p = max + 1; p <= 65535; p++)
        if (p != also_taken && !port_used(cfg, p))
            return p;
    return 0;
}

static const struct config_node *highest_node(const struct config *cfg)
{
    const struct config_node *hi = NULL;
    for (size_t i = 0; i < cfg->n_nodes; i++)
        if (!hi || cfg->nodes[i].id > hi->id)
            hi = &cfg->nodes[i];
    return hi;
}

static char *read_whole(const char *path, int *err)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        *err = errno;
        return NULL;
    }
    char *text = NULL;
    size_t len = 0, cap = 0, n;
    do {
        if (len + 4096 + 1 > cap) {
            char *t = realloc(text, cap = 2 * cap + 4096 + 1);
            if (!t) {
                free(text);
                fclose(f);
                *err = ENOMEM;
                return NULL;
            }
            text = t;
        }
        n = fread(text + len, 1, cap - len - 1, f);
        len += n;
    } while (n > 0);
    *err = ferror(f) ? EIO : 0;
    fclose(f);
    if (*err) {
        free(text);
        return NULL;
    }
    text[len] = 0;
    return text;
}

/* The section for node o->add_node, in the shape of the file's other nodes:
 * their host (that of the highest id, unless --host), the next free peer and
 * client ports, an admin socket next to theirs (unless --run-dir). */
static char *render_added(const struct gen_opts *o, const struct config *cfg, const char *path,
                          char *err, size_t errlen)
{
    const struct config_node *hi = highest_node(cfg);
    char host[256] = "127.0.0.1", run_dir[256] = "/run/raftkv";
    uint16_t ignored;
    if (o->host_set)
        snprintf(host, sizeof(host), "%s", o->host);
    else if (hi && hi->peer && addr_split(hi->peer, host, sizeof(host), &ignored) < 0)
        snprintf(host, sizeof(host), "127.0.0.1");
    if (o->run_dir_set)
        snprintf(run_dir, sizeof(run_dir), "%s", o->run_dir);
    else if (hi && hi->admin && hi->admin[0] == '/' && strrchr(hi->admin, '/') != hi->admin)
        snprintf(run_dir, sizeof(run_dir), "%.*s", (int)(strrchr(hi->admin, '/') - hi->admin), hi->admin);
    unsigned peer = next_port(cfg, true, 0), client = peer ? next_port(cfg, false, peer) : 0;
    if (!peer || !client) {
        snprintf(err, errlen, "%s: no free port left above those in use", path);
        return NULL;
    }
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return NULL;
    render_node(f, o->add_node, host, peer, client, run_dir, o->tls_dir);
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

/* Append with one write and fsync: the rest of the file is not touched (an
 * operator's comments and order stay), and a reader sees the old file or the
 * new one, never half a section. */
static int append_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t len = strlen(text);
    ssize_t w = write(fd, text, len);
    int rv = w < 0 ? -errno : (size_t)w != len ? -EIO : fsync(fd) < 0 ? -errno : 0;
    if (close(fd) < 0 && rv == 0)
        rv = -errno;
    return rv;
}

static int add_node(struct ctl *ctl, const struct gen_opts *o)
{
    const char *path = o->file ? o->file : ctl->o.config ? ctl->o.config : CONFIG_DEFAULT_PATH;
    char err[512] = "";
    int e;
    char *old = read_whole(path, &e);
    if (!old)
        return ctl_fail(EXIT_ERROR, "config generate: cannot read %s: %s", path, strerror(e));
    struct config cfg;
    int r = config_init(&cfg);
    if (r == 0)
        r = config_parse_string(&cfg, path, old, strlen(old), err, sizeof(err));
    if (r == 0 && config_node_find(&cfg, (uint32_t)o->add_node)) {
        config_free(&cfg);
        free(old);
        return ctl_fail(EXIT_USAGE, "config generate: %s already has [node.%" PRIu64 "]", path, o->add_node);
    }
    char *section = r == 0 ? render_added(o, &cfg, path, err, sizeof(err)) : NULL;
    config_free(&cfg);
    if (!section) {
        free(old);
        return ctl_fail(EXIT_USAGE, "config generate: %s", r < 0 || err[0] ? err : "out of memory");
    }
    /* A file without a final newline would glue the section to its last line. */
    size_t ol = strlen(old);
    const char *sep = ol && old[ol - 1] != '\n' ? "\n" : "";
    char *added = NULL, *whole = NULL;
    if (asprintf(&added, "%s%s", sep, section) < 0)
        added = NULL;
    if (!added || asprintf(&whole, "%s%s", old, added) < 0)
        whole = NULL;
    free(old);
    free(section);
    r = whole ? check_text(path, whole, err, sizeof(err)) : -ENOMEM;
    free(whole);
    if (r < 0) {
        free(added);
        return ctl_fail(r == -ENOMEM ? EXIT_ERROR : EXIT_USAGE, "config generate: [node.%" PRIu64
                        "] would make an invalid file: %s", o->add_node, r == -ENOMEM ? "out of memory" : err);
    }
    if (o->tls_dir && o->file && (r = certgen_node(o->tls_dir, o->add_node, NULL, err, sizeof(err))) < 0) {
        free(added);
        return ctl_fail(EXIT_ERROR, "config generate: certificate for node %" PRIu64 ": %s", o->add_node, err);
    }
    if (!o->file) {
        /* No --file: show what would be appended, change nothing. */
        fputs(added + strlen(sep), stdout);
        free(added);
        return EXIT_OK;
    }
    r = append_file(path, added);
    free(added);
    if (r < 0)
        return ctl_fail(EXIT_ERROR, "config generate: appending to %s: %s", path, strerror(-r));
    fprintf(stderr, "added [node.%" PRIu64 "] to %s; copy the file to every host, run "
                    "`systemctl daemon-reload` there, then start the node and `raftkvctl member add %" PRIu64
                    "`\n", o->add_node, path, o->add_node);
    return EXIT_OK;
}

static int generate(struct ctl *ctl, int argc, char **argv)
{
    struct gen_opts o = {.base_port = 7000, .host = "127.0.0.1", .data_dir_base = "/var/lib/raftkv",
                         .run_dir = "/run/raftkv", .name = "raftkv"};
    char err[512];
    int r = ctl_getopt(ctl, ctl_find_command("config"), argc, argv, gen_long, "f:", gen_opt, &o);
    if (r)
        return r < 0 ? 0 : r;
    if (optind != argc)
        return ctl_usage_error("config", "unexpected argument '%s'", argv[optind]);
    if (o.add_node && o.nodes)
        return ctl_usage_error("config", "--add-node and --nodes do not go together");
    if (o.add_node)
        return add_node(ctl, &o);
    if (!o.nodes)
        return ctl_usage_error("config", "generate needs --nodes N (or --add-node N)");
    if (o.base_port + 100 + o.nodes > 65535)
        return ctl_usage_error("config", "--base-port %" PRIu64 " leaves no room for %" PRIu64
                               " nodes (ports up to base+100+N)", o.base_port, o.nodes);
    if (random_id(o.cluster_id) < 0)
        return ctl_fail(EXIT_ERROR, "config generate: no randomness for the cluster id: %s",
                        strerror(errno));
    char *text = render(&o);
    if (!text)
        return ctl_fail(EXIT_ERROR, "config generate: out of memory");
    if (check_text("generated raftkv.conf", text, err, sizeof(err)) < 0) {
        free(text);
        return ctl_fail(EXIT_USAGE, "config generate: the options give an invalid file: %s", err);
    }
    /* What the daemons would refuse (rpc_security_check): plaintext on a
     * routable address, unless insecure is asked for. */
    char probe[300];
    struct addr pa;
    host_port(probe, sizeof(probe), o.host, 1);
    if (!o.tls_dir && !o.insecure && (addr_parse(probe, &pa) < 0 || !addr_is_loopback(&pa))) {
        free(text);
        return ctl_usage_error("config", "--host %s is not a loopback address: give --tls (certificates, "
                               "roles) or, on a network you trust completely, --insecure", o.host);
    }

    /* Certificates first: a config naming files that are not there would
     * be worse than no config. */
    if (o.tls_dir && (r = certgen_cluster(o.tls_dir, o.nodes, err, sizeof(err))) < 0) {
        free(text);
        return ctl_fail(EXIT_ERROR, "config generate --tls: %s", err);
    }
    if (o.tls_dir)
        fprintf(stderr, "wrote a CA, %" PRIu64 " node certificates, proxy.crt and admin.crt (for raftkvctl "
                        "--tls-cert) to %s (keys mode 0600: give node N only its own node-N.key)\n",
                o.nodes, o.tls_dir);
    FILE *out = o.file ? fopen(o.file, "w") : stdout;
    if (!out) {
        free(text);
        return ctl_fail(EXIT_ERROR, "config generate: cannot write %s: %s", o.file, strerror(errno));
    }
    fputs(text, out);
    free(text);
    if (o.file && fclose(out) != 0)
        return ctl_fail(EXIT_ERROR, "config generate: writing %s: %s", o.file, strerror(errno));
    if (o.file)
        fprintf(stderr, "wrote %s: %" PRIu64 " nodes, clients on %s:%" PRIu64 "..%" PRIu64 ", proxy on %s:%" PRIu64
                        "\n", o.file, o.nodes, o.host, o.base_port + 1, o.base_port + o.nodes, o.host, o.base_port);
    return EXIT_OK;
}

int cmd_config(struct ctl *ctl, int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "generate") == 0)
        return generate(ctl, argc - 1, argv + 1);
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0))
        return generate(ctl, argc, argv);
    return ctl_usage_error("config", "expected 'config generate --nodes N ...' or 'config generate --add-node N ...'");
}
