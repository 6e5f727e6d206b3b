/* main.c - raftkvctl: the command table, options before the command, and
 * the choice between running one command and the shell. */
#include "ctl/ctl.h"

#include "common/config.h"

#include <stdlib.h>
#include <string.h>

const struct ctl_command ctl_commands[] = {
    {"get", cmd_get, "[--stale] KEY", "Print the value of KEY (exit 3 if there is none).",
     "  --stale               serve from the node's local state, maybe behind\n"},
    {"set", cmd_set, "KEY VALUE|-", "Set KEY to VALUE, or to all of stdin with '-' (binary-safe).", ""},
    {"del", cmd_del, "KEY", "Delete KEY (exit 3 if there was none).", ""},
    {"cas", cmd_cas, "KEY EXPECTED NEW | --absent KEY NEW",
     "Set KEY to NEW only if it holds EXPECTED, or with --absent only if it does\n"
     "not exist (exit 4 otherwise). EXPECTED or NEW may be '-' for stdin.",
     "  --absent              expect KEY not to exist\n"},
    {"list", cmd_list, "[PREFIX] [--limit N] [--stale]", "List keys starting with PREFIX, in order.",
     "  -l, --limit N         at most N keys (default: all)\n"
     "  --stale               serve from the node's local state, maybe behind\n"},
    {"status", cmd_status, "[--watch [--interval DUR] [--count N]]",
     "Show every node: role, term, commit and applied index, lag, health; '*'\n"
     "marks the leader. Exit 5 when there is no leader.",
     "  -w, --watch           refresh until interrupted\n"
     "  -i, --interval DUR    between refreshes (default 1s)\n"
     "  -n, --count N         stop after N refreshes\n"},
    {"members", cmd_members, "",
     "List the members: addresses, voter or learner, and on the leader's word\n"
     "each one's match index, lag and health.", ""},
    {"member", cmd_member, "add|remove|promote|replace NODE_ID [--peer ADDR] [--client ADDR] [--learner] [--force]",
     "Change the membership, one node at a time, through the leader's admin\n"
     "socket (from the config's [node.N] admin). add: as a learner, promoted\n"
     "once caught up unless --learner; addresses default to [node.N]. remove:\n"
     "the leader hands over first; refused (exit 6) if quorum would be lost\n"
     "unless --force. promote: learner to voter. replace: remove, then add\n"
     "again under the same id (new disk or machine). Exit 6: refused.",
     "  --peer ADDR           add/replace: the node's peer address (default [node.N] peer)\n"
     "  --client ADDR         add/replace: its client address (default [node.N] client)\n"
     "  --learner             add/replace: keep it a learner (no automatic promotion)\n"
     "  --force               remove: even if the cluster would lose quorum\n"},
    {"transfer-leader", cmd_transfer_leader, "[NODE_ID]",
     "Move leadership to NODE_ID, or to the most caught-up follower; waits\n"
     "until it moved and says who leads.", ""},
    {"metrics", cmd_metrics, "",
     "Print a node's metrics (ask its admin socket: -e unix:/run/raftkv/node-N.sock),\n"
     "the series its /metrics serves; -o prometheus (default) or -o json.", ""},
    {"config", cmd_config, "generate --nodes N [--base-port P] [--host H] [--data-dir-base D] [--run-dir D] [--name NAME] [--tls [--tls-dir DIR]] [--file PATH]\n"
     "       config generate --add-node N [--host H] [--run-dir D] [--tls [--tls-dir DIR]] [--file PATH]",
     "Write a ready raftkv.conf for an N-node cluster plus proxy (to stdout\n"
     "or PATH). Node i gets client port P+i and peer port P+100+i; the proxy\n"
     "listens on P. --add-node N appends a [node.N] section with the next free\n"
     "peer and client ports to the existing file PATH, leaving the rest as it\n"
     "is (without --file: prints the section for -c's file, changes nothing).\n"
     "--tls also creates a cluster CA, one key pair per node, the proxy's and\n"
     "an admin client's in DIR, and turns TLS on (raftkv.conf(5), tls_ca).\n"
     "Without --tls, a --host that is not loopback needs --insecure.",
     "  --nodes N             cluster size, 1..64\n"
     "  --base-port P         default 7000\n"
     "  --host H              address every node listens on (default 127.0.0.1)\n"
     "  --data-dir-base D     parent of the data directories (default /var/lib/raftkv)\n"
     "  --run-dir D           directory of the unix sockets (default /run/raftkv)\n"
     "  --name NAME           cluster name (default raftkv)\n"
     "  --add-node N          append [node.N] to PATH (host: the last node's, or --host)\n"
     "  --tls                 TLS everywhere: write a CA, node, proxy and admin certificates\n"
     "  --insecure            plaintext on any address, no rights checked (raftkv.conf(5))\n"
     "  --tls-dir DIR         where (default " CTL_TLS_DIR_DEFAULT "); implies --tls;\n"
     "                        existing files are never replaced\n"
     "  -f, --file PATH       write there instead of stdout\n"},
    {"certs", cmd_certs,
     "add-node N | add-client ROLE [LABEL] | revoke NAME... | crl  [--tls-dir DIR] [--days D] [--ip ADDR]",
     "Issue one more certificate from the cluster CA in DIR (ca.crt, ca.key, as\n"
     "'config generate --tls' wrote them): add-node N writes node-N.crt/.key\n"
     "(raftkv-node-N); add-client writes client-ROLE[-LABEL].crt/.key named\n"
     "raftkv-client-ROLE[-LABEL], which gives a client that role (read, write\n"
     "or admin) on nodes and proxy. Existing files are never replaced.\n"
     "revoke NAME adds certificates (DIR/NAME.crt, e.g. node-3 or\n"
     "client-write-billing, or a .crt path) to DIR/crl.pem, the CA's signed\n"
     "revocation list, creating it if missing; crl writes it afresh (empty the\n"
     "first time). Name it in [cluster] tls_crl on every host and reload.",
     "  --tls-dir DIR         the CA's directory (default " CTL_TLS_DIR_DEFAULT ")\n"
     "  --days D              validity (default 825; 0: expired at once, for tests)\n"
     "  --ip ADDR             add-node, add-client: the certificate also names this IP\n"
     "                        address (for TLS software that checks it: Go, etcd)\n"},
    {"bench", cmd_bench,
     "[--clients C] [--requests N | --duration DUR] [--value-size B] [--keys K] [--ratio SET:GET] [--stale] [--pipeline P]",
     "Load generator: C closed-loop clients, each on its own connection with up\n"
     "to P requests in flight; reports throughput and latency percentiles.",
     "  --clients C           concurrent connections (default 16)\n"
     "  --requests N          total requests (default 10000)\n"
     "  --duration DUR        run this long instead, e.g. 10s\n"
     "  --value-size B        bytes per value (default 100)\n"
     "  --keys K              key space: bench:0 .. bench:K-1 (default 1000)\n"
     "  --ratio SET:GET       mix of writes and reads (default 1:1)\n"
     "  --stale               reads may be served stale\n"
     "  --pipeline P          requests in flight per client (default 1)\n"
     "  --no-prefill          do not write the keys before a run with reads\n"},
    {NULL, NULL, NULL, NULL, NULL},
};

const struct ctl_command *ctl_find_command(const char *name)
{
    for (const struct ctl_command *c = ctl_commands; c->name; c++)
        if (strcmp(c->name, name) == 0)
            return c;
    return NULL;
}

void ctl_usage(FILE *out)
{
    char eps[1024];
    fprintf(out, "Usage: raftkvctl [OPTIONS] COMMAND [ARGS]\n"
                 "       raftkvctl [OPTIONS]            (shell: commands from the terminal or a pipe)\n\n"
                 "Commands:\n");
    for (const struct ctl_command *c = ctl_commands; c->name; c++) {
        const char *nl = strchr(c->summary, '\n');
        fprintf(out, "  %-16s %.*s\n", c->name, nl ? (int)(nl - c->summary) : (int)strlen(c->summary),
                c->summary);
    }
    ctl_default_endpoints(NULL, eps, sizeof(eps));
    fprintf(out,
            "\nOptions:\n"
            "  -e, --endpoint LIST   unix:/path or host:port, comma-separated; each is tried\n"
            "                        (default: $RAFTKV_ENDPOINT, else from the config: %s)\n"
            "  -c, --config PATH     raftkv.conf giving the proxy's and nodes' addresses\n"
            "                        (default %s)\n"
            "  -o, --output FORMAT   table, json or plain\n"
            "  -t, --timeout DUR     per request, retries included (default 5s)\n"
            "  -b, --base64          JSON: every key and value as base64\n"
            "  --tls-ca FILE         TLS to TCP endpoints (default $RAFTKV_TLS_CA, else\n"
            "                        the config's [cluster] tls_ca)\n"
            "  --tls-cert FILE, --tls-key FILE  a client certificate and key: its role\n"
            "  -h, --help            this help; COMMAND --help for a command's\n"
            "  -V, --version         print the version\n\n"
            "Exit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 cas failed,\n"
            "5 unavailable (unreachable, no leader, timed out), 6 membership change\n"
            "refused, 7 no space (the data quota is full), 8 not permitted (the\n"
            "connection's role). See raftkvctl(1).\n",
            eps, CONFIG_DEFAULT_PATH);
}

int ctl_run_command(struct ctl *ctl, int argc, char **argv)
{
    const struct ctl_command *cmd = ctl_find_command(argv[0]);
    if (!cmd)
        return ctl_usage_error(NULL, "unknown command '%s'", argv[0]);
    /* Options given on one command line count for that command only. */
    struct ctl_opts saved = ctl->o;
    int code = cmd->run(ctl, argc, argv);
    ctl->o = saved;
    fflush(stdout);
    return code;
}

static int global_opt(struct ctl *ctl, int c, const char *arg, void *ud)
{
    (void)ctl, (void)arg, (void)ud;
    if (c != 'V')
        return ctl_usage_error(NULL, "bad option");
    printf("raftkvctl %s\n", RAFTKV_VERSION_STRING);
    return -1;
}

int main(int argc, char **argv)
{
    static const struct option version[] = {{"version", no_argument, 0, 'V'}, {0, 0, 0, 0}};
    struct ctl ctl = {.o = {.timeout_ms = 5000}};
    int code = ctl_getopt(&ctl, NULL, argc, argv, version, "V", global_opt, NULL);
    if (code)
        return code < 0 ? EXIT_OK : code;
    if (optind < argc)
        code = ctl_run_command(&ctl, argc - optind, argv + optind);
    else
        code = ctl_shell(&ctl);
    ctl_free(&ctl);
    return code;
}
