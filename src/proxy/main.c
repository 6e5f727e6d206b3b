/* main.c - raftkv-proxy: command line, configuration and logging; the
 * event loops are workers.c's.  Exit codes: 0 clean stop, 1 runtime
 * failure, 2 usage or configuration error. */
#include "proxy/proxy_int.h"

#include "common/config.h"
#include "common/log.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: raftkv-proxy [options]\n"
            "\n"
            "Serve raftkv clients on one stable address: writes go to the leader, reads\n"
            "are spread over the followers, and requests wait out elections.\n"
            "\n"
            "Options:\n"
            "  -c, --config PATH       configuration file (default %s)\n"
            "  -L, --listen ADDR       TCP address to serve (default: proxy.listen; \"\" = none)\n"
            "  -u, --unix PATH         unix socket to serve (default: proxy.unix; \"\" = none)\n"
            "  -l, --log-level LEVEL   error, warning, notice, info or debug (default: cluster.log_level)\n"
            "  -s, --set KEY=VALUE     override any option, e.g. --set proxy.queue_wait_ms=5000\n"
            "  -h, --help              show this help and exit\n"
            "  -V, --version           show the version and exit\n"
            "\n"
            "Stops on SIGTERM or SIGINT; SIGHUP reloads the TLS certificates.\n"
            "See raftkv-proxy(8) and raftkv.conf(5).\n",
            CONFIG_DEFAULT_PATH);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, 0, 'c'}, {"listen", required_argument, 0, 'L'},
        {"unix", required_argument, 0, 'u'},   {"log-level", required_argument, 0, 'l'},
        {"set", required_argument, 0, 's'},    {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},      {0, 0, 0, 0},
    };
    const char *path = CONFIG_DEFAULT_PATH, *listen_addr = NULL, *unix_path = NULL, *level = NULL;
    char *sets[64];
    size_t n_sets = 0;
    for (int c; (c = getopt_long(argc, argv, "c:L:u:l:s:hV", opts, NULL)) != -1;) {
        switch (c) {
        case 'c': path = optarg; break;
        case 'L': listen_addr = optarg; break;
        case 'u': unix_path = optarg; break;
        case 'l': level = optarg; break;
        case 's':
            if (n_sets == sizeof(sets) / sizeof(sets[0])) {
                fprintf(stderr, "raftkv-proxy: too many --set options\n");
                return 2;
            }
            sets[n_sets++] = optarg;
            break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("raftkv-proxy %s\n", PROXY_VERSION_STRING); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "raftkv-proxy: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }

    struct config cfg;
    char err[512];
    config_init(&cfg);
    int rv = config_parse_file(&cfg, path, err, sizeof(err));
    for (size_t i = 0; rv >= 0 && i < n_sets; i++)
        rv = config_set_arg(&cfg, sets[i], err, sizeof(err));
    if (rv >= 0 && listen_addr)
        rv = config_set(&cfg, "proxy.listen", listen_addr, err, sizeof(err));
    if (rv >= 0 && unix_path)
        rv = config_set(&cfg, "proxy.unix", unix_path, err, sizeof(err));
    if (rv >= 0 && level)
        rv = config_set(&cfg, "cluster.log_level", level, err, sizeof(err));
    if (rv >= 0)
        rv = config_validate(&cfg, err, sizeof(err));
    if (rv < 0) {
        fprintf(stderr, "raftkv-proxy: %s\n", err);
        config_free(&cfg);
        return 2;
    }

    signal(SIGPIPE, SIG_IGN);
    log_init("raftkv-proxy", (enum log_target)cfg.cluster.log_target);
    log_set_level(cfg.cluster.log_level);
    int code = proxy_workers_run(&cfg);
    config_free(&cfg);
    return code;
}
