/* main.c - raftkv-node: command line, configuration, logging set-up, then
 * hand over to the node object.  Exit codes: 0 clean stop, 1 runtime
 * failure (disk, state), 2 usage or configuration error.
 */
#include "common/config.h"
#include "common/log.h"
#include "node/node.h"
#include "node/node_int.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: raftkv-node --id N [options]\n"
            "\n"
            "Run member N of a raftkv cluster described by the configuration file.\n"
            "\n"
            "Options:\n"
            "  -i, --id N              this node's id: its [node.N] section (required)\n"
            "  -c, --config PATH       configuration file (default %s)\n"
            "  -d, --data-dir DIR      data directory (default: node.N.data_dir from the file)\n"
            "  -l, --log-level LEVEL   error, warning, notice, info or debug (default: cluster.log_level)\n"
            "  -s, --set KEY=VALUE     override any option, e.g. --set cluster.tick_ms=5\n"
            "                          or --set node.2.client=127.0.0.1:7102\n"
            "  -h, --help              show this help and exit\n"
            "  -V, --version           show the version and exit\n"
            "\n"
            "Stops on SIGTERM or SIGINT; a leader first hands leadership to the most\n"
            "caught-up follower.  See raftkv-node(8) and raftkv.conf(5).\n",
            CONFIG_DEFAULT_PATH);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"id", required_argument, 0, 'i'},       {"config", required_argument, 0, 'c'},
        {"data-dir", required_argument, 0, 'd'}, {"log-level", required_argument, 0, 'l'},
        {"set", required_argument, 0, 's'},      {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},        {0, 0, 0, 0},
    };
    const char *path = CONFIG_DEFAULT_PATH, *data_dir = NULL, *level = NULL;
    char *sets[64];
    size_t n_sets = 0;
    long id = -1;
    for (int c; (c = getopt_long(argc, argv, "i:c:d:l:s:hV", opts, NULL)) != -1;) {
        switch (c) {
        case 'i': {
            char *end;
            id = strtol(optarg, &end, 10);
            if (*end || id <= 0 || id > CONFIG_MAX_NODE_ID) {
                fprintf(stderr, "raftkv-node: --id: '%s' is not a node id (1..%d)\n", optarg,
                        CONFIG_MAX_NODE_ID);
                return 2;
            }
            break;
        }
        case 'c': path = optarg; break;
        case 'd': data_dir = optarg; break;
        case 'l': level = optarg; break;
        case 's':
            if (n_sets == sizeof(sets) / sizeof(sets[0])) {
                fprintf(stderr, "raftkv-node: too many --set options\n");
                return 2;
            }
            sets[n_sets++] = optarg;
            break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("raftkv-node %s\n", RAFTKV_VERSION_STRING); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "raftkv-node: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (id < 0) {
        fprintf(stderr, "raftkv-node: --id is required\n");
        usage(stderr);
        return 2;
    }

    struct config cfg;
    char err[512];
    config_init(&cfg);
    if (config_parse_file(&cfg, path, err, sizeof(err)) < 0) {
        fprintf(stderr, "raftkv-node: %s\n", err);
        config_free(&cfg);
        return 2;
    }
    for (size_t i = 0; i < n_sets; i++) {
        char *eq = strchr(sets[i], '=');
        if (!eq) {
            fprintf(stderr, "raftkv-node: --set %s: expected KEY=VALUE\n", sets[i]);
            config_free(&cfg);
            return 2;
        }
        *eq = 0;
        if (config_set(&cfg, sets[i], eq + 1, err, sizeof(err)) < 0) {
            fprintf(stderr, "raftkv-node: %s\n", err);
            config_free(&cfg);
            return 2;
        }
    }
    char key[64];
    snprintf(key, sizeof(key), "node.%ld.data_dir", id);
    if ((data_dir && config_set(&cfg, key, data_dir, err, sizeof(err)) < 0) ||
        (level && config_set(&cfg, "cluster.log_level", level, err, sizeof(err)) < 0) ||
        config_validate(&cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "raftkv-node: %s\n", err);
        config_free(&cfg);
        return 2;
    }

    signal(SIGPIPE, SIG_IGN);
    log_init("raftkv-node", (enum log_target)cfg.cluster.log_target);
    log_set_level(cfg.cluster.log_level);
    log_set_node((uint64_t)id);

    struct node *n = NULL;
    int rv = node_new(&n, &cfg, (uint32_t)id, err, sizeof(err));
    if (rv < 0) {
        log_error("cannot start: %s", err);
        config_free(&cfg);
        return rv == -ENOENT || rv == -EINVAL ? 2 : 1;
    }
    int code = node_run(n);
    node_free(n);
    config_free(&cfg);
    return code;
}
