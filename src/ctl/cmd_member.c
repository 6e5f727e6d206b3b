/* cmd_member.c - membership commands (member add/remove/promote/replace) and
 * the members table.  Nodes take membership changes only on their admin
 * socket and only as leader, so the request goes to the local admin sockets
 * the config file names and follows a NOT_LEADER hint to the leader's. */
#include "ctl/ctl.h"

#include "common/config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RETRY_PAUSE_MS 100

void ctl_print_members(struct ctl *ctl, const Raftkv__Member *const *ms, size_t n, uint64_t leader)
{
    enum ctl_format f = ctl_format(ctl, FMT_TABLE);
    if (f == FMT_JSON) {
        fputs("{\"members\":[", stdout);
        for (size_t i = 0; i < n; i++) {
            const Raftkv__Member *m = ms[i];
            printf("%s{\"id\":%" PRIu64 ",\"peer\":", i ? "," : "", m->id);
            json_string(stdout, m->peer_address);
            fputs(",\"client\":", stdout);
            json_string(stdout, m->client_address);
            printf(",\"voter\":%s,\"role\":\"%s\",\"leader\":%s", m->voter ? "true" : "false",
                   m->voter ? "voter" : "learner", m->id == leader ? "true" : "false");
            if (m->has_match_index)
                printf(",\"match_index\":%" PRIu64 ",\"lag\":%" PRIu64 ",\"auto_promote\":%s",
                       m->match_index, m->lag, m->auto_promote ? "true" : "false");
            if (m->health) {
                fputs(",\"health\":", stdout);
                json_string(stdout, m->health);
            }
            fputc('}', stdout);
        }
        fputs("]}\n", stdout);
        return;
    }
    struct table *t = table_new(8, (const char *const[]){"ID", "PEER", "CLIENT", "ROLE", "MATCH", "LAG",
                                                          "HEALTH", "LEADER"});
    for (size_t i = 0; i < n; i++) {
        const Raftkv__Member *m = ms[i];
        char id[24], match[24], lag[24], role[32];
        snprintf(id, sizeof(id), "%" PRIu64, m->id);
        snprintf(role, sizeof(role), "%s%s", m->voter ? "voter" : "learner",
                 m->auto_promote ? " (auto)" : "");
        snprintf(match, sizeof(match), m->has_match_index ? "%" PRIu64 : "-", m->match_index);
        snprintf(lag, sizeof(lag), m->has_lag ? "%" PRIu64 : "-", m->lag);
        table_add(t, (const char *const[]){id, m->peer_address ? m->peer_address : "?",
                                           m->client_address ? m->client_address : "?", role, match, lag,
                                           m->health ? m->health : "-", m->id == leader ? "yes" : "no"});
    }
    table_print(t, stdout, f == FMT_TABLE);
    table_free(t);
}

struct member_opts {
    const char *peer, *client;
    bool learner, force;
};

static const struct option member_long[] = {
    {"peer", required_argument, 0, 'P'}, {"client", required_argument, 0, 'C'},
    {"learner", no_argument, 0, 'L'},    {"force", no_argument, 0, 'F'},
    {0, 0, 0, 0},
};

static int member_opt(struct ctl *ctl, int c, const char *arg, void *ud)
{
    (void)ctl;
    struct member_opts *o = ud;
    switch (c) {
    case 'P': o->peer = arg; return 0;
    case 'C': o->client = arg; return 0;
    case 'L': o->learner = true; return 0;
    case 'F': o->force = true; return 0;
    }
    return EXIT_USAGE;
}

/* The admin socket of node id ("unix:/path") from the config, or "". */
static void admin_endpoint(const struct config *cfg, uint64_t id, char *buf, size_t len)
{
    const struct config_node *cn = id <= CONFIG_MAX_NODE_ID ? config_node_find(cfg, (uint32_t)id) : NULL;
    buf[0] = '\0';
    if (cn && cn->admin && *cn->admin)
        snprintf(buf, len, "unix:%s", cn->admin);
}

/* Every admin socket in the config, starting with the start-th node (mod
 * their number): the client takes the first that answers, so a retry after
 * "no leader here" starts one further and does not keep asking a node that
 * cannot know the leader (one that lost its data and waits to be added). */
static void all_admin_endpoints(const struct config *cfg, size_t start, char *buf, size_t len)
{
    buf[0] = '\0';
    for (size_t k = 0; k < cfg->n_nodes; k++) {
        char one[512];
        size_t l = strlen(buf);
        admin_endpoint(cfg, cfg->nodes[(start + k) % cfg->n_nodes].id, one, sizeof(one));
        if (*one)
            snprintf(buf + l, len - l, "%s%s", l ? "," : "", one);
    }
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* One attempt per endpoint list; follows NOT_LEADER to the leader's admin
 * socket and retries UNAVAILABLE (election, a leader handing over before
 * its own removal) until the deadline. */
static int member_call(struct ctl *ctl, const struct config *cfg, Raftkv__Request *req,
                       Raftkv__Response **resp, char *err, size_t errlen)
{
    char eps[4096];
    size_t start = 0;
    unsigned timeout = ctl->o.timeout_ms ? ctl->o.timeout_ms : 5000;
    double deadline = now_ms() + timeout;
    struct net_tls *tls;
    if (ctl_tls(ctl, &tls) != 0) {
        snprintf(err, errlen, "no TLS context (see above)");
        return -EINVAL;
    }
    if (ctl->o.endpoints)
        snprintf(eps, sizeof(eps), "%s", ctl->o.endpoints);
    else
        all_admin_endpoints(cfg, start, eps, sizeof(eps));
    if (!*eps) {
        snprintf(err, errlen, "no admin socket in %s ([node.N] admin = PATH); give -e unix:PATH",
                 ctl->o.config ? ctl->o.config : CONFIG_DEFAULT_PATH);
        return -EINVAL;
    }
    for (;;) {
        double left = deadline - now_ms();
        if (left < 1)
            return -ETIMEDOUT;
        struct client *c;
        struct client_opts o = {.endpoints = eps, .no_retry = true, .timeout_ms = (unsigned)left,
                                .tls = tls};
        int rv = client_new(&c, &o, err, errlen);
        if (rv < 0)
            return rv;
        req->id = 0;
        rv = client_call(c, req, resp, err, errlen);
        client_free(c);
        if (rv < 0)
            return rv;
        Raftkv__Status st = (*resp)->status;
        if (st == RAFTKV__STATUS__NOT_LEADER && (*resp)->leader_id) {
            admin_endpoint(cfg, (*resp)->leader_id, eps, sizeof(eps));
            if (!*eps) {
                snprintf(err, errlen, "node %" PRIu64 " leads and its admin socket is not in the "
                         "config: run this on its host, or 'raftkvctl transfer-leader' to a local node",
                         (*resp)->leader_id);
                client_response_free(*resp);
                *resp = NULL;
                return -EHOSTUNREACH;
            }
        } else if (st != RAFTKV__STATUS__UNAVAILABLE && st != RAFTKV__STATUS__NOT_LEADER) {
            return 0;
        }
        if (deadline - now_ms() < RETRY_PAUSE_MS)
            return 0; /* the last answer stands */
        bool no_hint = st == RAFTKV__STATUS__UNAVAILABLE || !(*resp)->leader_id;
        client_response_free(*resp);
        *resp = NULL;
        struct timespec ts = {0, RETRY_PAUSE_MS * 1000000L};
        nanosleep(&ts, NULL);
        if (!ctl->o.endpoints && no_hint)
            all_admin_endpoints(cfg, ++start, eps, sizeof(eps));
    }
}

static const struct {
    const char *name;
    Raftkv__MemberOp op;
} member_ops[] = {
    {"add", RAFTKV__MEMBER_OP__MEMBER_ADD},
    {"remove", RAFTKV__MEMBER_OP__MEMBER_REMOVE},
    {"promote", RAFTKV__MEMBER_OP__MEMBER_PROMOTE},
    {"replace", RAFTKV__MEMBER_OP__MEMBER_REPLACE},
};

static int member_run(struct ctl *ctl, const struct config *cfg, Raftkv__MemberOp op, uint64_t id,
                      const struct member_opts *o, const char *what)
{
    Raftkv__Request req = RAFTKV__REQUEST__INIT;
    Raftkv__MemberChangeRequest mc = RAFTKV__MEMBER_CHANGE_REQUEST__INIT;
    mc.has_op = mc.has_id = 1;
    mc.op = op;
    mc.id = id;
    mc.has_learner = o->learner;
    mc.learner = o->learner;
    mc.has_force = o->force;
    mc.force = o->force;
    if (op == RAFTKV__MEMBER_OP__MEMBER_ADD || op == RAFTKV__MEMBER_OP__MEMBER_REPLACE) {
        const struct config_node *cn = id <= CONFIG_MAX_NODE_ID ? config_node_find(cfg, (uint32_t)id) : NULL;
        mc.peer_address = (char *)(o->peer ? o->peer : cn ? cn->peer : NULL);
        mc.client_address = (char *)(o->client ? o->client : cn ? cn->client : NULL);
        if (!mc.peer_address)
            return ctl_usage_error("member", "no [node.%" PRIu64 "] in %s: give --peer ADDR and --client ADDR",
                                   id, ctl->o.config ? ctl->o.config : CONFIG_DEFAULT_PATH);
    }
    req.op_case = RAFTKV__REQUEST__OP_MEMBER_CHANGE;
    req.member_change = &mc;
    if (ctl->o.timeout_ms == 0)
        ctl->o.timeout_ms = 5000;
    Raftkv__Response *resp = NULL;
    char err[CLIENT_ERRLEN];
    int r = member_call(ctl, cfg, &req, &resp, err, sizeof(err));
    if (r < 0 || resp->status != RAFTKV__STATUS__OK || !resp->member_change) {
        int code = ctl_report(ctl, what, r, resp, err);
        client_response_free(resp);
        return code ? code : EXIT_ERROR;
    }
    const Raftkv__MemberChangeResponse *mr = resp->member_change;
    if (ctl_format(ctl, FMT_TABLE) == FMT_TABLE)
        printf("%s: committed at index %" PRIu64 "\n", what, mr->index);
    ctl_print_members(ctl, (const Raftkv__Member *const *)mr->members, mr->n_members, resp->leader_id);
    client_response_free(resp);
    return EXIT_OK;
}

int cmd_member(struct ctl *ctl, int argc, char **argv)
{
    struct member_opts o = {0};
    int r = ctl_getopt(ctl, ctl_find_command("member"), argc, argv, member_long, "", member_opt, &o);
    if (r)
        return r < 0 ? 0 : r;
    uint64_t id;
    if (argc - optind != 2)
        return ctl_usage_error("member", "expected add|remove|promote|replace and a node id");
    if (ctl_parse_u64(argv[optind + 1], &id) < 0 || id == 0 || id > CONFIG_MAX_NODE_ID)
        return ctl_usage_error("member", "'%s' is not a node id", argv[optind + 1]);
    const char *sub = argv[optind];
    size_t k = 0;
    while (k < sizeof(member_ops) / sizeof(member_ops[0]) && strcmp(member_ops[k].name, sub) != 0)
        k++;
    if (k == sizeof(member_ops) / sizeof(member_ops[0]))
        return ctl_usage_error("member", "unknown subcommand '%s'", sub);
    Raftkv__MemberOp op = member_ops[k].op;
    if ((o.peer || o.client || o.learner) && op != RAFTKV__MEMBER_OP__MEMBER_ADD &&
        op != RAFTKV__MEMBER_OP__MEMBER_REPLACE)
        return ctl_usage_error("member", "--peer, --client and --learner go with add and replace");
    if (o.force && op != RAFTKV__MEMBER_OP__MEMBER_REMOVE)
        return ctl_usage_error("member", "--force goes with remove");
    struct config cfg;
    char err[512], what[64];
    config_init(&cfg);
    if (config_parse_file(&cfg, ctl->o.config ? ctl->o.config : CONFIG_DEFAULT_PATH, err, sizeof(err)) < 0 &&
        !(ctl->o.endpoints && (o.peer || op != RAFTKV__MEMBER_OP__MEMBER_ADD))) {
        config_free(&cfg);
        return ctl_fail(EXIT_USAGE, "member %s: %s", sub, err);
    }
    snprintf(what, sizeof(what), "member %s %" PRIu64, sub, id);
    r = member_run(ctl, &cfg, op, id, &o, what);
    config_free(&cfg);
    return r;
}
