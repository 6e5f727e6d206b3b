/* bootstrap.c - identity at start-up, and bootstrapping a cluster only
 * once.  A node whose data directory is empty asks every other [node.N]
 * (Probe) before writing anything: a peer holding data that recorded this
 * node's data directory means the data was lost (refuse to start, exit 78,
 * name the fix); one that lists it unrecorded or not at all means join and
 * wait for the leader; only a majority of empty initial members bootstraps
 * (never with --join).  Whether the directory joined is kept in its
 * identity file: it grants no vote until the log records it (replica.h).
 * That file is written and fsynced on a thread: on a disk busy with
 * writeback its two fsyncs took 28 ms, an event-loop iteration long enough
 * to delay heartbeats.
 */
#include "node/node_int.h"
#include "node/workq.h"

#include "common/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#define PROBE_INTERVAL_S 0.2
#define PROGRESS_LOG_S 10.0

struct probe_seen {
    raft_id id;
    bool replied;
    struct peer_probe_reply r;
};

/* One identity_save on the thread, and what the loop does once it is on
 * disk: bootstrap (then_join NULL) or join the cluster then_join saw. */
struct save_job {
    struct workq_job job;
    struct bootstrap *b;
    struct identity id; /* a copy: the thread never touches the node */
    atomic_bool done;   /* release: rv and err are written before */
    int rv;
    char err[256];
    bool then_join;
    struct probe_seen then_seen;
};

struct bootstrap {
    struct node *n;
    const char *data_dir;
    bool unsaved;   /* identity chosen but not on disk yet */
    bool deciding;
    bool saving;    /* a decision waits for its identity file (save_job) */
    bool join;      /* --join: never bootstrap */
    ev_timer probe;
    double started, logged;
    struct probe_seen seen[CONFIG_MAX_NODES];
    struct workq q; /* started by the first save only */
    ev_async saved;
    struct save_job sj;
};

static void id_hex(const uint8_t *id, char out[2 * PEER_CLUSTER_ID_LEN + 1])
{
    peer_cluster_id_hex(id, PEER_CLUSTER_ID_LEN, out);
}

int bootstrap_identity(struct node *n, const char *data_dir, char *err, size_t errlen)
{
    struct bootstrap *b = calloc(1, sizeof(*b));
    if (!b)
        return -ENOMEM;
    b->n = n;
    b->data_dir = data_dir;
    workq_init(&b->q, false); /* the decision waits for it: not background */
    n->boot = b;
    uint8_t cid[PEER_CLUSTER_ID_LEN];
    bool derived;
    identity_config_cluster_id(n->cfg, cid, &derived);
    char want[2 * PEER_CLUSTER_ID_LEN + 1], have[2 * PEER_CLUSTER_ID_LEN + 1];
    id_hex(cid, want);
    struct identity id;
    int rv = identity_load(data_dir, &id, err, errlen);
    if (rv == -ENOENT) {
        memset(&id, 0, sizeof(id));
        memcpy(id.cluster_id, cid, sizeof(cid));
        id.node_id = n->id;
        if ((rv = identity_new_incarnation(&id.incarnation)) < 0) {
            snprintf(err, errlen, "no randomness for a new incarnation: %s", strerror(-rv));
            return rv;
        }
        b->unsaved = true;
    } else if (rv < 0) {
        return rv;
    } else {
        id_hex(id.cluster_id, have);
        if (id.node_id != n->id) {
            snprintf(err, errlen, "data directory %s belongs to node %u, not node %u",
                     data_dir, id.node_id, n->id);
            return -ESTALE;
        }
        if (memcmp(id.cluster_id, cid, sizeof(cid)) != 0 && !derived) {
            snprintf(err, errlen, "data directory %s belongs to cluster %s, but %s says "
                     "[cluster] id = %s", data_dir, have, n->cfg->path, want);
            return -ESTALE;
        }
    }
    n->ident = id;
    n->pident = (struct peer_ident){.cluster = n->cfg->cluster.name,
                                    .cluster_id = n->ident.cluster_id,
                                    .incarnation = n->ident.incarnation};
    if (derived) {
        /* The data directory's id wins over a re-derived one: editing the
         * [node.N] list must not cut this node off its cluster. */
        id_hex(n->ident.cluster_id, have);
        log_warn("%s has no [cluster] id: using %s id %s; put 'id = %s' into [cluster] on every "
                 "host (before adding nodes, a new node would derive another id)",
                 n->cfg->path, b->unsaved ? "the derived" : "the data directory's", have, have);
    }
    return 0;
}

/* Only for data from before identity files existed, before the loop runs. */
static int save_now(struct bootstrap *b, char *err, size_t errlen)
{
    if (!b->unsaved)
        return 0;
    int rv = identity_save(b->data_dir, &b->n->ident, err, errlen);
    if (rv == 0)
        b->unsaved = false;
    return rv;
}

static void done(struct bootstrap *b)
{
    b->deciding = false;
    ev_timer_stop(b->n->loop, &b->probe);
    node_mark_dirty(b->n);
}

static void fail_start(struct bootstrap *b, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail_start(struct bootstrap *b, int code, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_event(LOG_ERR, "refused_start", NULL, "%s", msg);
    sd_notifyf(0, "STATUS=refused to start: %s", msg);
    done(b);
    b->n->exit_code = code;
    ev_break(b->n->loop, EVBREAK_ALL);
}

static void bootstrap_now(struct bootstrap *b)
{
    char err[256];
    if (replica_bootstrap(b->n->rp, err, sizeof(err)) < 0) {
        fail_start(b, 1, "cannot bootstrap: %s", err);
        return;
    }
    done(b);
}

static void join_now(struct bootstrap *b, const struct probe_seen *p)
{
    if (p->r.is_member)
        log_notice("node %u is a %s of the running cluster (seen from node %llu, term %llu) "
                   "and never held data: joining, waiting for the leader", b->n->id,
                   p->r.role == RAFT_LEARNER ? "learner" : "voter", (unsigned long long)p->id,
                   (unsigned long long)p->r.term);
    else
        log_notice("node %u is not a member of the running cluster (seen from node %llu): "
                   "waiting to be added with 'raftkvctl member add %u'", b->n->id,
                   (unsigned long long)p->id, b->n->id);
    done(b);
}

/* The identity file is on disk (or could not be written): the decision
 * the save waited for goes ahead. */
static void saved(struct bootstrap *b)
{
    struct save_job *j = &b->sj;
    b->saving = false;
    if (j->rv < 0) {
        fail_start(b, 1, "%s", j->err);
        return;
    }
    b->unsaved = false;
    replica_set_identity(b->n->rp, b->n->ident.incarnation, b->n->ident.joined);
    if (j->then_join)
        join_now(b, &j->then_seen);
    else
        bootstrap_now(b);
}

static void run_save(struct workq_job *wj)
{
    struct save_job *j = (struct save_job *)wj;
    j->rv = identity_save(j->b->data_dir, &j->id, j->err, sizeof(j->err));
    atomic_store_explicit(&j->done, true, memory_order_release);
    ev_async_send(j->b->n->loop, &j->b->saved);
}

static void on_saved(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)revents;
    struct bootstrap *b = w->data;
    if (!b->saving || !atomic_load_explicit(&b->sj.done, memory_order_acquire))
        return;
    ev_async_stop(loop, w);
    workq_stop(&b->q); /* its one job is done: no idle thread for the node's life */
    saved(b);
}

/* Whether this empty directory joined a running cluster: kept in the
 * identity file, since a joined directory grants no vote until the log
 * records it, across restarts too (replica_set_identity).  A directory
 * that joined once and then bootstraps (no cluster answered after all)
 * never held anything of a running cluster's: it votes.  The decision
 * (join when p, else bootstrap) is carried out once the file is on disk. */
static void decide_joined(struct bootstrap *b, bool joined, const struct probe_seen *p)
{
    struct node *n = b->n;
    struct save_job *j = &b->sj;
    if (n->ident.joined != joined) {
        n->ident.joined = joined;
        b->unsaved = true;
    }
    *j = (struct save_job){.b = b, .id = n->ident, .then_join = p != NULL};
    if (p)
        j->then_seen = *p;
    b->saving = true;
    if (!b->unsaved) {
        saved(b);
        return;
    }
    j->job.run = run_save;
    ev_async_init(&b->saved, on_saved);
    b->saved.data = b;
    ev_async_start(n->loop, &b->saved);
    if (!workq_push(&b->q, &j->job)) {
        /* No thread to be had: write it here, the loop waits for the disk. */
        ev_async_stop(n->loop, &b->saved);
        j->rv = identity_save(b->data_dir, &j->id, j->err, sizeof(j->err));
        saved(b);
    }
}

bool bootstrap_deciding(const struct node *n)
{
    return n->boot && n->boot->deciding;
}

static void decide_bootstrap(struct bootstrap *b)
{
    decide_joined(b, false, NULL);
}

static void decide_join(struct bootstrap *b, const struct probe_seen *p)
{
    /* A cluster that never held an election (term 1: its members only
     * bootstrapped) has recorded no directory, so this one cannot be a
     * recorded member that lost its data; and it is the usual race of a
     * cluster's first start (one member bootstrapped, the rest join it),
     * where the joiners' votes elect the first leader: withholding them
     * would leave the cluster without one. */
    decide_joined(b, p->r.term > 1, p);
}

/* The decision table of raftkv-node(8), on the replies so far. */
static void decide(struct bootstrap *b)
{
    struct node *n = b->n;
    if (b->saving) /* decided: replies meanwhile change nothing */
        return;
    const struct probe_seen *best = NULL;
    unsigned empty = config_node_find(n->cfg, n->id) ? 1 : 0; /* itself */
    for (size_t i = 0; i < n->cfg->n_nodes; i++) {
        const struct probe_seen *p = &b->seen[i];
        if (!p->replied)
            continue;
        if (p->r.state == PEER_PROBE_EMPTY) {
            empty++;
            continue;
        }
        if (p->r.is_member && p->r.recorded_incarnation) {
            char cid[2 * PEER_CLUSTER_ID_LEN + 1];
            id_hex(n->ident.cluster_id, cid);
            fail_start(b, NODE_EXIT_CONFIG,
                       "node %u: data directory %s is empty but cluster %s (term %llu, commit "
                       "%llu, seen from node %llu) already has node %u's data (incarnation "
                       "%016llx); this node lost its data. To bring it back: raftkvctl member "
                       "replace %u   (on any member), then start raftkv-node@%u again.",
                       n->id, b->data_dir, cid, (unsigned long long)p->r.term,
                       (unsigned long long)p->r.commit, (unsigned long long)p->id, n->id,
                       (unsigned long long)p->r.recorded_incarnation, n->id, n->id);
            return;
        }
        if (!best || p->r.term > best->r.term ||
            (p->r.term == best->r.term && p->r.commit > best->r.commit))
            best = p;
    }
    if (best) {
        decide_join(b, best);
        return;
    }
    if (!b->join && empty > n->cfg->n_nodes / 2) {
        log_notice("%u of %zu configured members have empty data directories: a new cluster",
                   empty, n->cfg->n_nodes);
        decide_bootstrap(b);
    }
}

static void on_probe_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct bootstrap *b = w->data;
    struct node *n = b->n;
    double now = ev_now(loop);
    if (now - b->logged >= PROGRESS_LOG_S) {
        b->logged = now;
        unsigned got = 0;
        for (size_t i = 0; i < n->cfg->n_nodes; i++)
            got += b->seen[i].replied;
        log_notice("empty data directory: asking the other members whether the cluster exists "
                   "(%u of %zu answered after %.0f s)", got, n->cfg->n_nodes - 1, now - b->started);
    }
    for (size_t i = 0; i < n->cfg->n_nodes; i++)
        if (n->cfg->nodes[i].id != n->id)
            peer_send_probe(n, n->cfg->nodes[i].id, NULL);
}

int bootstrap_start(struct node *n, bool join, char *err, size_t errlen)
{
    struct bootstrap *b = n->boot;
    b->join = join;
    replica_set_identity(n->rp, n->ident.incarnation, n->ident.joined);
    if (!replica_empty(n->rp)) {
        /* Data from before identity files existed: adopt it as it is. */
        int rv = save_now(b, err, errlen);
        bootstrap_free(n);
        return rv;
    }
    b->deciding = true;
    b->started = b->logged = ev_now(n->loop);
    ev_timer_init(&b->probe, on_probe_timer, 0.0, PROBE_INTERVAL_S);
    b->probe.data = b;
    ev_timer_start(n->loop, &b->probe);
    for (size_t i = 0; i < n->cfg->n_nodes; i++)
        b->seen[i].id = n->cfg->nodes[i].id;
    decide(b); /* one configured member: a majority on its own */
    if (n->exit_code) {
        snprintf(err, errlen, "bootstrap failed (see above)");
        return -EIO;
    }
    return 0;
}

void bootstrap_free(struct node *n)
{
    if (!n->boot)
        return;
    workq_stop(&n->boot->q); /* a save in progress finishes first */
    ev_async_stop(n->loop, &n->boot->saved);
    ev_timer_stop(n->loop, &n->boot->probe);
    free(n->boot);
    n->boot = NULL;
}

void bootstrap_on_probe(struct node *n, const struct peer_decoded *d)
{
    struct peer_probe_reply r = {.state = PEER_PROBE_EMPTY};
    struct raft_status st;
    replica_status(n->rp, &st);
    if (!bootstrap_deciding(n) && st.last_index > 0) {
        const struct raft_member *m = raft_conf_find(&st.conf, d->from_id);
        r = (struct peer_probe_reply){
            .state = PEER_PROBE_DATA, .term = st.term, .commit = st.commit,
            .is_member = m != NULL, .role = m ? m->role : 0,
            .recorded_incarnation = replica_incarnation(n->rp, d->from_id)};
    }
    peer_send_probe(n, d->from_id, &r);
}

void bootstrap_on_reply(struct node *n, const struct peer_decoded *d)
{
    struct bootstrap *b = n->boot;
    if (!bootstrap_deciding(n))
        return;
    for (size_t i = 0; i < n->cfg->n_nodes; i++)
        if (b->seen[i].id == d->from_id) {
            b->seen[i].replied = true;
            b->seen[i].r = d->reply;
        }
    decide(b);
}
