/* cmd_status.c - the cluster at a glance (status, members) and leadership
 * transfer.  A node only reports on itself, so the view asks every member
 * it lists; a proxy answers for all of them (fanout). */
#include "ctl/ctl.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NODE_TIMEOUT_MS 2000u

static Raftkv__NodeStatus *find_ns(Raftkv__NodeStatus **list, size_t n, uint64_t id)
{
    for (size_t i = 0; i < n; i++)
        if (list[i] && list[i]->id == id)
            return list[i];
    return NULL;
}

static struct node_row *add_row(struct cluster_view *v, uint64_t id, const char *address)
{
    struct node_row *r = &v->rows[v->n_rows++];
    memset(r, 0, sizeof(*r));
    r->id = id;
    snprintf(r->address, sizeof(r->address), "%s", address ? address : "?");
    return r;
}

/* Asks one node directly, once, with a short deadline. */
static void ask_node(struct ctl *ctl, struct cluster_view *v, struct node_row *row)
{
    struct client *c;
    struct client_opts o = {.endpoints = row->address, .no_retry = true, .tls = ctl->tls,
                            .timeout_ms = ctl->o.timeout_ms && ctl->o.timeout_ms < NODE_TIMEOUT_MS
                                              ? ctl->o.timeout_ms : NODE_TIMEOUT_MS};
    Raftkv__Response *resp = NULL;
    if (client_new(&c, &o, row->error, sizeof(row->error)) < 0)
        return;
    if (client_status(c, false, &resp, row->error, sizeof(row->error)) == 0) {
        if (resp->status_info && resp->status_info->node) {
            v->extra[v->n_extra++] = resp;
            row->ns = resp->status_info->node;
        } else {
            snprintf(row->error, sizeof(row->error), "%s", resp->message ? resp->message : "no status");
            client_response_free(resp);
        }
    }
    client_free(c);
}

static int gather_from_proxy(struct cluster_view *v, const Raftkv__StatusResponse *sr)
{
    const Raftkv__ProxyStatus *p = sr->proxy;
    v->proxy = p;
    v->leader = p->leader_id;
    v->rows = calloc(p->n_nodes + sr->n_nodes + 1, sizeof(*v->rows));
    if (!v->rows)
        return -ENOMEM;
    for (size_t i = 0; i < p->n_nodes; i++) {
        struct node_row *r = add_row(v, p->nodes[i]->id, p->nodes[i]->address);
        r->pv = p->nodes[i];
        r->ns = find_ns(sr->nodes, sr->n_nodes, r->id);
        if (!r->ns)
            snprintf(r->error, sizeof(r->error), "%s", r->pv->healthy ? "no status from the node" : "down");
    }
    for (size_t i = 0; i < sr->n_nodes; i++) {
        bool seen = false;
        for (size_t k = 0; k < v->n_rows; k++)
            seen |= v->rows[k].id == sr->nodes[i]->id;
        if (!seen)
            add_row(v, sr->nodes[i]->id, sr->nodes[i]->client_address)->ns = sr->nodes[i];
    }
    return 0;
}

static int gather_from_node(struct ctl *ctl, struct cluster_view *v, Raftkv__NodeStatus *self)
{
    size_t n = self->n_members ? self->n_members : 1;
    v->rows = calloc(n, sizeof(*v->rows));
    v->extra = calloc(n, sizeof(*v->extra));
    if (!v->rows || !v->extra)
        return -ENOMEM;
    if (!self->n_members)
        add_row(v, self->id, self->client_address)->ns = self;
    for (size_t i = 0; i < self->n_members; i++) {
        const Raftkv__Member *m = self->members[i];
        struct node_row *r = add_row(v, m->id, m->client_address);
        if (m->id == self->id)
            r->ns = self;
        else if (m->client_address && *m->client_address)
            ask_node(ctl, v, r);
        else
            snprintf(r->error, sizeof(r->error), "no client address known");
    }
    /* The node that says it leads with the highest term is the leader. */
    uint64_t best_term = 0;
    v->leader = self->leader_id;
    for (size_t i = 0; i < v->n_rows; i++) {
        const Raftkv__NodeStatus *ns = v->rows[i].ns;
        if (ns && ns->role && strcmp(ns->role, "leader") == 0 && ns->term >= best_term) {
            best_term = ns->term;
            v->leader = ns->id;
        }
    }
    return 0;
}

int cluster_view_gather(struct ctl *ctl, struct cluster_view *v, char *err, size_t errlen)
{
    memset(v, 0, sizeof(*v));
    struct client *c = ctl_client(ctl);
    if (!c) {
        snprintf(err, errlen, "bad endpoint list");
        return -EINVAL;
    }
    int r = client_status(c, true, &v->first, err, errlen);
    if (r < 0)
        return r;
    const Raftkv__StatusResponse *sr = v->first->status_info;
    if (v->first->status != RAFTKV__STATUS__OK || !sr || (!sr->proxy && !sr->node)) {
        snprintf(err, errlen, "%s answered STATUS with %s: %s", client_endpoint(c) ? client_endpoint(c) : "server",
                 client_status_name(v->first->status), v->first->message ? v->first->message : "no status");
        cluster_view_free(v);
        return -EPROTO;
    }
    r = sr->proxy ? gather_from_proxy(v, sr) : gather_from_node(ctl, v, sr->node);
    if (r < 0) {
        snprintf(err, errlen, "out of memory");
        cluster_view_free(v);
    }
    return r;
}

void cluster_view_free(struct cluster_view *v)
{
    client_response_free(v->first);
    for (size_t i = 0; i < v->n_extra; i++)
        client_response_free(v->extra[i]);
    free(v->extra);
    free(v->rows);
    memset(v, 0, sizeof(*v));
}

size_t cluster_view_reachable(const struct cluster_view *v)
{
    size_t n = 0;
    for (size_t i = 0; i < v->n_rows; i++)
        n += v->rows[i].ns != NULL || (v->rows[i].pv && v->rows[i].pv->healthy);
    return n;
}

static const struct node_row *leader_row(const struct cluster_view *v)
{
    for (size_t i = 0; i < v->n_rows; i++)
        if (v->rows[i].id == v->leader && v->rows[i].ns)
            return &v->rows[i];
    return NULL;
}

/* Beyond this many entries behind the leader's commit a reachable node is
 * "behind": the proxy's default max_lag_entries, past which it stops sending
 * the node reads. */
#define BEHIND_ENTRIES 1000

static const Raftkv__FollowerProgress *leader_progress(const struct node_row *l, uint64_t id)
{
    if (l)
        for (size_t i = 0; i < l->ns->n_followers; i++)
            if (l->ns->followers[i]->id == id)
                return l->ns->followers[i];
    return NULL;
}

/* Entries the node is behind the leader; false when nobody can tell.  The
 * largest of the leader's view (its last index minus the node's match), the
 * node's applied index against the leader's commit, and the node's last
 * index against the leader's match.  The leader's view alone can be stale: a
 * node that lost its log keeps its old match there and would look caught
 * up.  The proxy computes the same (update_lag() in src/proxy/upstream.c). */
static bool row_lag(const struct cluster_view *v, const struct node_row *r, uint64_t *lag)
{
    const struct node_row *l = leader_row(v);
    *lag = 0;
    if (r->id == v->leader && r->ns)
        return true;
    bool known = false;
    const Raftkv__FollowerProgress *fp = leader_progress(l, r->id);
    if (fp) {
        *lag = fp->lag;
        known = true;
    } else if (r->pv && r->pv->has_lag) {
        *lag = r->pv->lag;
        known = true;
    }
    if (l && r->ns) {
        uint64_t behind = l->ns->commit_index > r->ns->applied_index ? l->ns->commit_index - r->ns->applied_index : 0;
        if (behind > *lag)
            *lag = behind;
        known = true;
    }
    if (fp && r->ns && fp->match_index > r->ns->last_index && fp->match_index - r->ns->last_index > *lag)
        *lag = fp->match_index - r->ns->last_index;
    return known;
}

static const char *row_health(const struct cluster_view *v, const struct node_row *r)
{
    const struct node_row *l = leader_row(v);
    if (r->pv && !r->pv->healthy)
        return "down";
    if (!r->ns)
        return "down";
    if (r->ns->error && *r->ns->error)
        return "failed";
    if (!l || l == r)
        return "ok";
    /* A new leader has heard from nobody yet: silence alone says little,
     * silence while behind says the leader cannot reach the node. */
    const Raftkv__FollowerProgress *fp = leader_progress(l, r->id);
    if (fp && fp->has_active && !fp->active && fp->lag > 0)
        return "inactive";
    uint64_t lag;
    if (row_lag(v, r, &lag) && lag > BEHIND_ENTRIES)
        return "behind";
    return "ok";
}

static void fmt_u64(char *buf, size_t len, bool known, uint64_t v)
{
    if (known)
        snprintf(buf, len, "%" PRIu64, v);
    else
        snprintf(buf, len, "-");
}

static void print_status_json(const struct cluster_view *v)
{
    printf("{\"leader\":%" PRIu64 ",\"reachable\":%zu,\"total\":%zu", v->leader, cluster_view_reachable(v),
           v->n_rows);
    if (v->proxy) {
        const Raftkv__ProxyStatus *p = v->proxy;
        printf(",\"proxy\":{\"leader_id\":%" PRIu64 ",\"leader_since_ms\":%" PRIu64 ",\"queued\":%u,"
               "\"in_flight\":%u,\"uptime_ms\":%" PRIu64 ",\"version\":",
               p->leader_id, p->leader_since_ms, p->queued, p->in_flight, p->uptime_ms);
        json_string(stdout, p->version);
        fputc('}', stdout);
    }
    fputs(",\"nodes\":[", stdout);
    for (size_t i = 0; i < v->n_rows; i++) {
        const struct node_row *r = &v->rows[i];
        const Raftkv__NodeStatus *ns = r->ns;
        uint64_t lag = 0;
        printf("%s{\"id\":%" PRIu64 ",\"address\":", i ? "," : "", r->id);
        json_string(stdout, r->address);
        printf(",\"leader\":%s,\"reachable\":%s,\"health\":\"%s\"", r->id == v->leader ? "true" : "false",
               ns ? "true" : "false", row_health(v, r));
        if (row_lag(v, r, &lag))
            printf(",\"lag\":%" PRIu64, lag);
        if (ns) {
            fputs(",\"role\":", stdout);
            json_string(stdout, ns->role);
            printf(",\"term\":%" PRIu64 ",\"leader_id\":%" PRIu64 ",\"commit_index\":%" PRIu64
                   ",\"applied_index\":%" PRIu64 ",\"last_index\":%" PRIu64 ",\"snapshot_index\":%" PRIu64
                   ",\"keys\":%" PRIu64 ",\"uptime_ms\":%" PRIu64 ",\"version\":",
                   ns->term, ns->leader_id, ns->commit_index, ns->applied_index, ns->last_index,
                   ns->snapshot_index, ns->keys, ns->uptime_ms);
            json_string(stdout, ns->version);
            if (ns->has_loop_lag_max_us)
                printf(",\"loop_lag_max_ms\":%.1f", (double)ns->loop_lag_max_us / 1000.0);
            if (ns->has_snapshot_duration_ms)
                printf(",\"snapshot_duration_ms\":%" PRIu64, ns->snapshot_duration_ms);
            if (ns->has_snapshot_bytes)
                printf(",\"snapshot_bytes\":%" PRIu64, ns->snapshot_bytes);
            if (ns->has_data_bytes)
                printf(",\"data_bytes\":%" PRIu64, ns->data_bytes);
            if (ns->has_memory_bytes)
                printf(",\"memory_bytes\":%" PRIu64, ns->memory_bytes);
            if (ns->has_quota_bytes)
                printf(",\"quota_bytes\":%" PRIu64, ns->quota_bytes);
            if (ns->security) {
                fputs(",\"security\":", stdout);
                json_string(stdout, ns->security);
            }
            if (ns->your_role) {
                fputs(",\"your_role\":", stdout);
                json_string(stdout, ns->your_role);
            }
        }
        if (ns && ns->error && *ns->error) {
            fputs(",\"error\":", stdout);
            json_string(stdout, ns->error);
        } else if (!ns && r->error[0]) {
            fputs(",\"error\":", stdout);
            json_string(stdout, r->error);
        }
        if (r->pv)
            printf(",\"proxy\":{\"healthy\":%s,\"in_flight\":%u,\"latency_us\":%" PRIu64
                   ",\"reads_served\":%" PRIu64 ",\"writes_served\":%" PRIu64 "}",
                   r->pv->healthy ? "true" : "false", r->pv->in_flight, r->pv->latency_us,
                   r->pv->reads_served, r->pv->writes_served);
        fputc('}', stdout);
    }
    fputs("]}\n", stdout);
}

static void print_status_table(const struct cluster_view *v, bool header)
{
    static const char *const base[] = {"ID", "ADDRESS", "ROLE", "TERM", "COMMIT", "APPLIED", "LAG", "HEALTH",
                                       "INFLIGHT", "LATENCY", "READS", "WRITES"};
    size_t ncols = v->proxy ? 12 : 8;
    struct table *t = table_new(ncols, base);
    for (size_t i = 0; i < v->n_rows; i++) {
        const struct node_row *r = &v->rows[i];
        const Raftkv__NodeStatus *ns = r->ns;
        char c[12][ADDR_STRLEN];
        uint64_t lag = 0;
        snprintf(c[0], sizeof(c[0]), "%" PRIu64 "%s", r->id, r->id == v->leader ? "*" : "");
        snprintf(c[1], sizeof(c[1]), "%s", r->address);
        snprintf(c[2], sizeof(c[2]), "%s", ns && ns->role ? ns->role : "-");
        fmt_u64(c[3], sizeof(c[3]), ns, ns ? ns->term : 0);
        fmt_u64(c[4], sizeof(c[4]), ns, ns ? ns->commit_index : 0);
        fmt_u64(c[5], sizeof(c[5]), ns, ns ? ns->applied_index : 0);
        bool lag_known = row_lag(v, r, &lag);
        fmt_u64(c[6], sizeof(c[6]), lag_known, lag);
        snprintf(c[7], sizeof(c[7]), "%s", row_health(v, r));
        if (r->pv) {
            snprintf(c[8], sizeof(c[8]), "%u", r->pv->in_flight);
            snprintf(c[9], sizeof(c[9]), "%.1fms", (double)r->pv->latency_us / 1000.0);
            snprintf(c[10], sizeof(c[10]), "%" PRIu64, r->pv->reads_served);
            snprintf(c[11], sizeof(c[11]), "%" PRIu64, r->pv->writes_served);
        } else {
            for (int k = 8; k < 12; k++)
                snprintf(c[k], sizeof(c[k]), "-");
        }
        const char *cells[12];
        for (int k = 0; k < 12; k++)
            cells[k] = c[k];
        table_add(t, cells);
    }
    table_print(t, stdout, header);
    table_free(t);
}

/* The lines around the table that a person reads first. */
static void print_status_summary(const struct cluster_view *v)
{
    const struct node_row *l = leader_row(v);
    if (v->proxy)
        printf("proxy: leader node %" PRIu64 " for %.1fs, %u writes queued, %u in flight, up %.0fs, version %s\n",
               v->proxy->leader_id, (double)v->proxy->leader_since_ms / 1000.0, v->proxy->queued,
               v->proxy->in_flight, (double)v->proxy->uptime_ms / 1000.0,
               v->proxy->version ? v->proxy->version : "?");
    if (v->leader && l)
        printf("cluster: %zu of %zu nodes reachable, leader node %" PRIu64 " (term %" PRIu64 ")\n",
               cluster_view_reachable(v), v->n_rows, v->leader, l->ns->term);
    else
        printf("cluster: %zu of %zu nodes reachable, NO LEADER\n", cluster_view_reachable(v), v->n_rows);
    for (size_t i = 0; i < v->n_rows; i++)
        if (v->rows[i].ns && v->rows[i].ns->error && *v->rows[i].ns->error)
            printf("node %" PRIu64 ": %s\n", v->rows[i].id, v->rows[i].ns->error);
        else if (!v->rows[i].ns && v->rows[i].error[0])
            printf("node %" PRIu64 ": %s\n", v->rows[i].id, v->rows[i].error);
    /* Said to the person reading, so nobody runs it by mistake (stderr:
     * the table's shape stays what scripts expect). */
    if (l && l->ns->security && strncmp(l->ns->security, "INSECURE", 8) == 0)
        fprintf(stderr, "raftkvctl: warning: the cluster runs %s: every client may do anything\n",
                l->ns->security);
}

struct status_opts {
    bool watch;
    unsigned interval_ms;
    uint64_t count;
};

static const struct option status_long[] = {
    {"watch", no_argument, 0, 'w'}, {"interval", required_argument, 0, 'i'},
    {"count", required_argument, 0, 'n'}, {0, 0, 0, 0},
};

static int status_opt(struct ctl *ctl, int c, const char *arg, void *ud)
{
    (void)ctl;
    struct status_opts *o = ud;
    switch (c) {
    case 'w': o->watch = true; return 0;
    case 'i':
        if (ctl_parse_duration_ms(arg, &o->interval_ms) < 0 || o->interval_ms == 0)
            return ctl_usage_error("status", "--interval %s: expected a duration like 1s", arg);
        return 0;
    case 'n':
        if (ctl_parse_u64(arg, &o->count) < 0)
            return ctl_usage_error("status", "--count %s: expected a number", arg);
        return 0;
    }
    return EXIT_USAGE;
}

static int status_once(struct ctl *ctl, bool clear)
{
    struct cluster_view v;
    char err[CLIENT_ERRLEN];
    int r = cluster_view_gather(ctl, &v, err, sizeof(err));
    if (clear)
        fputs("\033[H\033[2J", stdout);
    if (r < 0)
        return ctl_report(ctl, "status", r, NULL, err);
    switch (ctl_format(ctl, FMT_TABLE)) {
    case FMT_JSON: print_status_json(&v); break;
    case FMT_PLAIN: print_status_table(&v, false); break;
    default:
        print_status_summary(&v);
        print_status_table(&v, true);
        break;
    }
    int code = leader_row(&v) ? EXIT_OK : EXIT_UNAVAILABLE;
    cluster_view_free(&v);
    return code;
}

int cmd_status(struct ctl *ctl, int argc, char **argv)
{
    struct status_opts o = {.interval_ms = 1000};
    int r = ctl_getopt(ctl, ctl_find_command("status"), argc, argv, status_long, "wi:n:", status_opt, &o);
    if (r)
        return r < 0 ? 0 : r;
    if (optind != argc)
        return ctl_usage_error("status", "unexpected argument '%s'", argv[optind]);
    if (!o.watch)
        return status_once(ctl, false);
    bool tty = isatty(STDOUT_FILENO) && ctl_format(ctl, FMT_TABLE) == FMT_TABLE;
    for (uint64_t i = 0; o.count == 0 || i < o.count; i++) {
        if (i) {
            struct timespec ts = {.tv_sec = o.interval_ms / 1000, .tv_nsec = (long)(o.interval_ms % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        }
        r = status_once(ctl, tty);
        if (tty)
            printf("\nevery %.1fs; Ctrl-C to stop\n", o.interval_ms / 1000.0);
        fflush(stdout);
    }
    return r;
}

/* ---- members --------------------------------------------------------- */

static const Raftkv__NodeStatus *any_status(const struct cluster_view *v)
{
    const struct node_row *l = leader_row(v);
    if (l)
        return l->ns;
    for (size_t i = 0; i < v->n_rows; i++)
        if (v->rows[i].ns && v->rows[i].ns->n_members)
            return v->rows[i].ns;
    return NULL;
}

int cmd_members(struct ctl *ctl, int argc, char **argv)
{
    int r = ctl_getopt(ctl, ctl_find_command("members"), argc, argv, NULL, NULL, NULL, NULL);
    if (r)
        return r < 0 ? 0 : r;
    if (optind != argc)
        return ctl_usage_error("members", "unexpected argument '%s'", argv[optind]);
    struct cluster_view v;
    char err[CLIENT_ERRLEN];
    if ((r = cluster_view_gather(ctl, &v, err, sizeof(err))) < 0)
        return ctl_report(ctl, "members", r, NULL, err);
    const Raftkv__NodeStatus *ns = any_status(&v);
    if (!ns) {
        cluster_view_free(&v);
        return ctl_fail(EXIT_UNAVAILABLE, "members: no node answered; see 'raftkvctl status'");
    }
    ctl_print_members(ctl, (const Raftkv__Member *const *)ns->members, ns->n_members, v.leader);
    cluster_view_free(&v);
    return EXIT_OK;
}

/* ---- transfer-leader ------------------------------------------------- */

int cmd_transfer_leader(struct ctl *ctl, int argc, char **argv)
{
    int r = ctl_getopt(ctl, ctl_find_command("transfer-leader"), argc, argv, NULL, NULL, NULL, NULL);
    uint64_t target = 0;
    char err[CLIENT_ERRLEN], w[64];
    if (r)
        return r < 0 ? 0 : r;
    if (argc - optind > 1)
        return ctl_usage_error("transfer-leader", "expected at most one NODE_ID");
    if (argc - optind == 1 && (ctl_parse_u64(argv[optind], &target) < 0 || target == 0))
        return ctl_usage_error("transfer-leader", "'%s' is not a node id", argv[optind]);
    struct client *c = ctl_client(ctl);
    if (!c)
        return EXIT_USAGE;
    Raftkv__Response *resp = NULL;
    r = client_transfer_leader(c, target, &resp, err, sizeof(err));
    if (target)
        snprintf(w, sizeof(w), "transfer-leader %" PRIu64, target);
    else
        snprintf(w, sizeof(w), "transfer-leader");
    if (r < 0 || resp->status != RAFTKV__STATUS__OK || resp->result_case != RAFTKV__RESPONSE__RESULT_TRANSFER_LEADER) {
        int code = ctl_report(ctl, w, r, resp, err);
        client_response_free(resp);
        return code ? code : EXIT_ERROR;
    }
    const Raftkv__TransferLeaderResponse *tr = resp->transfer_leader;
    switch (ctl_format(ctl, FMT_TABLE)) {
    case FMT_JSON:
        printf("{\"leader_id\":%" PRIu64 ",\"term\":%" PRIu64 "}\n", tr->leader_id, tr->term);
        break;
    case FMT_PLAIN: printf("%" PRIu64 "\n", tr->leader_id); break;
    default: printf("node %" PRIu64 " leads now (term %" PRIu64 ")\n", tr->leader_id, tr->term); break;
    }
    r = target && tr->leader_id != target
            ? ctl_fail(EXIT_ERROR, "transfer-leader: node %" PRIu64 " leads, not %" PRIu64 "; retry", tr->leader_id,
                       target)
            : EXIT_OK;
    client_response_free(resp);
    return r;
}

int cmd_metrics(struct ctl *ctl, int argc, char **argv)
{
    int r = ctl_getopt(ctl, ctl_find_command("metrics"), argc, argv, NULL, NULL, NULL, NULL);
    char err[CLIENT_ERRLEN];
    if (r)
        return r < 0 ? 0 : r;
    if (argc - optind > 0)
        return ctl_usage_error("metrics", "unexpected argument '%s'", argv[optind]);
    struct client *c = ctl_client(ctl);
    if (!c)
        return EXIT_USAGE;
    Raftkv__Response *resp = NULL;
    r = client_metrics(c, ctl_format(ctl, FMT_PROMETHEUS) == FMT_JSON, &resp, err, sizeof(err));
    if (r < 0 || resp->status != RAFTKV__STATUS__OK ||
        resp->result_case != RAFTKV__RESPONSE__RESULT_METRICS) {
        int code = ctl_report(ctl, "metrics", r, resp, err);
        client_response_free(resp);
        return code ? code : EXIT_ERROR;
    }
    fputs(resp->metrics->text ? resp->metrics->text : "", stdout);
    client_response_free(resp);
    return EXIT_OK;
}
