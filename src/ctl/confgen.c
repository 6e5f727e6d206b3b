/* confgen.c - "config generate": a raftkv.conf for a new N-node cluster.
 * The text is checked with the node's own parser and validator before it is
 * written, so what this prints is what raftkv-node accepts. */
#include "ctl/ctl.h"

#include "common/config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

struct gen_opts {
    uint64_t nodes, base_port;
    const char *host, *data_dir_base, *run_dir, *name, *file;
};

static const struct option gen_long[] = {
    {"nodes", required_argument, 0, 'N'},         {"base-port", required_argument, 0, 'P'},
    {"host", required_argument, 0, 'H'},          {"data-dir-base", required_argument, 0, 'D'},
    {"run-dir", required_argument, 0, 'R'},       {"name", required_argument, 0, 'M'},
    {"file", required_argument, 0, 'f'},          {0, 0, 0, 0},
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
    case 'H': o->host = arg; return 0;
    case 'D': o->data_dir_base = arg; return 0;
    case 'R': o->run_dir = arg; return 0;
    case 'M': o->name = arg; return 0;
    case 'f': o->file = arg; return 0;
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
            "# Every option and its default: raftkv.conf(5).\n\n"
            "[cluster]\nname = %s\ndata_dir_base = %s\n",
            o->nodes, o->name, o->data_dir_base);
    for (uint64_t i = 1; i <= o->nodes; i++) {
        fprintf(f, "\n[node.%" PRIu64 "]\n", i);
        host_port(addr, sizeof(addr), o->host, o->base_port + 100 + i);
        fprintf(f, "peer = %s\n", addr);
        host_port(addr, sizeof(addr), o->host, o->base_port + i);
        fprintf(f, "client = %s\n", addr);
        fprintf(f, "admin = %s/node-%" PRIu64 ".sock\n", o->run_dir, i);
    }
    host_port(addr, sizeof(addr), o->host, o->base_port);
    fprintf(f, "\n[proxy]\nlisten = %s\nunix = %s/proxy.sock\n", addr, o->run_dir);
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
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
    if (!o.nodes)
        return ctl_usage_error("config", "generate needs --nodes N");
    if (o.base_port + 100 + o.nodes > 65535)
        return ctl_usage_error("config", "--base-port %" PRIu64 " leaves no room for %" PRIu64
                               " nodes (ports up to base+100+N)", o.base_port, o.nodes);
    char *text = render(&o);
    if (!text)
        return ctl_fail(EXIT_ERROR, "config generate: out of memory");

    struct config cfg;
    r = config_init(&cfg);
    if (r == 0)
        r = config_parse_string(&cfg, "generated raftkv.conf", text, strlen(text), err, sizeof(err));
    if (r == 0)
        r = config_validate(&cfg, err, sizeof(err));
    config_free(&cfg);
    if (r < 0) {
        free(text);
        return ctl_fail(EXIT_USAGE, "config generate: the options give an invalid file: %s", err);
    }

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
    return ctl_usage_error("config", "expected 'config generate --nodes N ...'");
}
