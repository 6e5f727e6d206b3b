/* main.c - raftkv-node: command line, configuration, logging set-up, then
 * hand over to the node object.  Exit codes: 0 clean stop, 1 runtime
 * failure (disk, state), 2 usage or configuration error, 78 (EX_CONFIG) the
 * data directory is not this node's or lost its data (bootstrap.c).
 */
#include "common/config.h"
#include "common/log.h"
#include "node/hugepages.h"
#include "node/node.h"
#include "node/node_int.h"
#include "store/store.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

/* --test-disk-fault: a test harness makes a running node's disk fail (or
 * turn slow) at a moment it picks.  Only a command-line flag with "test" in
 * its name turns it on (no config key, so no shared file can), it is
 * announced at start, and nothing happens until SIGUSR2. */
struct test_fault {
    bool snapshot; /* "snapshot:DELAY=MS": hold the background snapshot writer */
    enum store_fault_op op;
    int err;           /* fail once with this, or ... */
    unsigned delay_ms; /* ... make every call this much slower (SIGUSR2 toggles) */
    bool delaying; /* the delay is on (SIGUSR2 toggles; ",start" starts with it) */
    ev_signal sig;
};

static int test_fault_parse(const char *arg, struct test_fault *f)
{
    const char *colon = strchr(arg, ':');
    if (!colon)
        return -EINVAL;
    f->err = 0;
    f->delay_ms = 0;
    f->delaying = false;
    if (strcmp(colon + 1, "EIO") == 0)
        f->err = EIO;
    else if (strcmp(colon + 1, "ENOSPC") == 0)
        f->err = ENOSPC;
    else if (strncmp(colon + 1, "DELAY=", 6) == 0) {
        char *end;
        errno = 0;
        unsigned long ms = strtoul(colon + 7, &end, 10);
        if (errno || end == colon + 7 || ms == 0 || ms > 60000)
            return -EINVAL;
        /* ",start": slow from the start, for what a node does once at
         * start-up (its identity file); SIGUSR2 then ends it */
        if (strcmp(end, ",start") == 0)
            f->delaying = true;
        else if (*end)
            return -EINVAL;
        f->delay_ms = (unsigned)ms;
    } else
        return -EINVAL;
    f->snapshot = (size_t)(colon - arg) == strlen("snapshot") && strncmp(arg, "snapshot", 8) == 0;
    if (f->snapshot)
        return f->delay_ms && !f->delaying ? 0 : -EINVAL;
    for (int op = 0; op < STORE_FAULT_NOPS; op++) {
        const char *name = store_fault_op_name((enum store_fault_op)op);
        if (strlen(name) == (size_t)(colon - arg) && strncmp(arg, name, strlen(name)) == 0) {
            f->op = (enum store_fault_op)op;
            return 0;
        }
    }
    return -EINVAL;
}

static void on_test_fault(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop, (void)revents;
    struct test_fault *f = w->data;
    if (f->snapshot) {
        f->delaying = !f->delaying;
        storage_store_test_stall(f->delaying ? f->delay_ms : 0);
        log_warn("TEST: SIGUSR2: the background snapshot writer now waits %u ms before writing",
                 f->delaying ? f->delay_ms : 0);
        return;
    }
    if (f->delay_ms) {
        f->delaying = !f->delaying;
        store_fault_delay(f->op, f->delaying ? f->delay_ms * 1000 : 0);
        log_warn("TEST: SIGUSR2: every %s of the store now takes %u ms longer",
                 store_fault_op_name(f->op), f->delaying ? f->delay_ms : 0);
        return;
    }
    /* One failure is enough: a failed store refuses everything after it
     * with the same error and never retries (store.h). */
    store_fault_arm(f->op, 1, f->err);
    log_warn("TEST: SIGUSR2: the store's next %s fails with %s", store_fault_op_name(f->op),
             strerror(f->err));
}

/* Clients, peers and log segments all take fds; systemd's default soft
 * limit (1024) is below one listener's max_connections.  The hard limit is
 * the operator's (LimitNOFILE=): use all of it. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
}

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
            "      --join              never bootstrap: with an empty data directory, wait\n"
            "                          to be added by the leader (raftkvctl member add)\n"
            "  -h, --help              show this help and exit\n"
            "  -V, --version           show the version and exit\n"
            "      --test-disk-fault OP:ERR\n"
            "                          TESTS ONLY: on SIGUSR2, make the store's next OP call\n"
            "                          (write, fdatasync, fsync, rename, open, ...) fail\n"
            "                          with ERR (EIO or ENOSPC), or with ERR = DELAY=MS make\n"
            "                          every OP call MS ms slower until the next SIGUSR2\n"
            "                          (DELAY=MS,start: slower from the start);\n"
            "                          snapshot:DELAY=MS holds each background snapshot\n"
            "                          writer MS ms before it writes.\n"
            "                          Never in production.\n"
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
        {"version", no_argument, 0, 'V'},        {"test-disk-fault", required_argument, 0, 'F'},
        {"join", no_argument, 0, 'J'},
        {0, 0, 0, 0},
    };
    node_hugepages_reexec(argv);
    node_malloc_setup();
    struct test_fault fault;
    bool fault_on = false, join = false;
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
        case 'J': join = true; break;
        case 'V': printf("raftkv-node %s\n", RAFTKV_VERSION_STRING); return 0;
        case 'F':
            if (test_fault_parse(optarg, &fault) < 0) {
                fprintf(stderr,
                        "raftkv-node: --test-disk-fault: '%s' is not OP:EIO, OP:ENOSPC, "
                        "OP:DELAY=MS[,start] (1..60000) or snapshot:DELAY=MS\n",
                        optarg);
                return 2;
            }
            fault_on = true;
            break;
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
        if (config_set_arg(&cfg, sets[i], err, sizeof(err)) < 0) {
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
    raise_nofile();
    log_init("raftkv-node", (enum log_target)cfg.cluster.log_target);
    log_set_level(cfg.cluster.log_level);
    log_set_node((uint64_t)id);

    struct node *n = NULL;
    int rv = node_new(&n, &cfg, (uint32_t)id, join, err, sizeof(err));
    if (rv < 0) {
        log_error("cannot start: %s", err);
        config_free(&cfg);
        /* A data directory of another node or cluster: restarting cannot help. */
        if (rv == -ESTALE)
            return NODE_EXIT_CONFIG;
        return rv == -ENOENT || rv == -EINVAL || rv == -EPERM ? 2 : 1;
    }
    if (fault_on) {
        if (fault.delaying && !fault.snapshot) {
            store_fault_delay(fault.op, fault.delay_ms * 1000);
            log_warn("TEST-ONLY disk fault injection enabled: every %s is %u ms slower from the "
                     "start, until SIGUSR2", store_fault_op_name(fault.op), fault.delay_ms);
        } else if (fault.delay_ms)
            log_warn("TEST-ONLY disk fault injection enabled: SIGUSR2 makes every %s %u ms "
                     "slower, and the next SIGUSR2 normal again",
                     store_fault_op_name(fault.op), fault.delay_ms);
        else
            log_warn("TEST-ONLY disk fault injection enabled: SIGUSR2 makes the next %s fail with %s",
                     store_fault_op_name(fault.op), strerror(fault.err));
        ev_signal_init(&fault.sig, on_test_fault, SIGUSR2);
        fault.sig.data = &fault;
        ev_signal_start(n->loop, &fault.sig);
    }
    int code = node_run(n);
    node_free(n);
    config_free(&cfg);
    return code;
}
