/* guard.c - who may talk to this node: every decoded peer message passes
 * here before the consensus core sees it.  Refused: under mutual TLS, a
 * message whose sender is not the node the link's certificate names; a sender that is neither
 * a member nor a [node.N] of the config, any Raft message while an empty
 * node is still deciding whether to bootstrap, and votes (and higher terms)
 * from a member whose data directory is not the one the cluster recorded (a
 * wiped node must never vote under its old identity); and, on a node whose
 * directory joined and is not recorded yet, vote requests and TimeoutNow (it
 * grants no vote until recorded).  A leader records each member's
 * incarnation in the log once the member holds data.  The rules are
 * replica.c's (replica_incarnation_refused, replica_vote_withheld,
 * replica_record_incarnation),
 * which the simulator drives too; this file logs and counts.  Probes go to
 * bootstrap.c.  (Cluster name and id were already checked by peer_decode.)
 */
#include "node/node_int.h"

#include "common/log.h"
#include "net/ratelimit.h"
#include "net/tls.h"

#include <errno.h>
#include <stdlib.h>

struct guard {
    struct net_ratelimit refuse_rl, vote_rl, impostor_rl, withheld_rl;
    uint64_t impostors; /* frames whose sender is not the link's certificate */
    uint64_t refused;
    uint64_t votes_dropped;
    uint64_t votes_withheld; /* requests this node, joined and unrecorded, left unanswered */
};

int guard_new(struct node *n)
{
    n->guard = calloc(1, sizeof(*n->guard));
    if (!n->guard)
        return -ENOMEM;
    n->guard->refuse_rl.interval = 60.0; /* a misconfigured node retries forever */
    n->guard->vote_rl.interval = 10.0;
    n->guard->impostor_rl.interval = 10.0;
    n->guard->withheld_rl.interval = 10.0;
    return 0;
}

void guard_free(struct node *n)
{
    free(n->guard);
    n->guard = NULL;
}

static bool is_known(struct node *n, raft_id id)
{
    if (node_member(n, id))
        return true;
    /* Not in the file: a member added at runtime still counts.  Rare, so
     * the full status copy is affordable here. */
    struct raft_status st;
    replica_status(n->rp, &st);
    return raft_conf_find(&st.conf, id) != NULL;
}

/* The incarnation rule itself (which votes to drop, when to record) is
 * replica.c's, so that the simulator runs the same code. */
static uint64_t now_ms(struct node *n)
{
    return (uint64_t)(ev_now(n->loop) * 1000.0);
}

int guard_propose_incarnation(struct node *n, raft_id member, uint64_t incarnation)
{
    if (replica_propose_incarnation(n->rp, member, incarnation, now_ms(n)) != 0)
        return -EAGAIN;
    node_mark_dirty(n);
    return 0;
}

int node_propose_bookkeeping(struct node *n, struct kv_command *cmd)
{
    cmd->time_ms = now_ms(n);
    if (replica_propose_bookkeeping(n->rp, cmd) != 0)
        return -EAGAIN;
    node_mark_dirty(n);
    return 0;
}

/* Under mutual TLS a frame speaks for the node its link's certificate
 * names, and only for it: a member's stolen or misissued key must not let
 * it act as another member (vote twice, lead in its name).  A link that
 * lies once is closed -- an honest node never does. */
static bool authenticated(struct node *n, struct net_conn *c, const struct peer_decoded *d)
{
    struct guard *g = n->guard;
    uint32_t who = 0;
    int rv = net_conn_tls_peer_node(c, &who);
    if (!n->tls || rv == -ENOENT) /* plaintext mode, or a unix socket */
        return true;
    if (rv == 0 && who == d->from_id)
        return true;
    uint64_t more;
    g->impostors++;
    if (net_ratelimit_ok(&g->impostor_rl, ev_now(n->loop), &more)) {
        char name[NET_TLS_NAME_MAX];
        if (rv == 0)
            net_tls_node_name(who, name, sizeof(name));
        log_warn("dropping a message from peer %s: it claims to be node %llu but its certificate "
                 "names %s; closing (%llu such messages so far, %llu more not logged)",
                 net_conn_peer_name(c), (unsigned long long)d->from_id,
                 rv == 0 ? name : "no node (or two)", (unsigned long long)g->impostors,
                 (unsigned long long)more);
    }
    net_conn_close(c, -EPERM);
    return false;
}

bool guard_admit(struct node *n, struct net_conn *c, const struct peer_decoded *d)
{
    struct guard *g = n->guard;
    if (!authenticated(n, c, d))
        return false;
    if (!is_known(n, d->from_id)) {
        uint64_t more;
        g->refused++;
        if (net_ratelimit_ok(&g->refuse_rl, ev_now(n->loop), &more)) {
            char ours[2 * PEER_CLUSTER_ID_LEN + 1];
            peer_cluster_id_hex(n->ident.cluster_id, PEER_CLUSTER_ID_LEN, ours);
            log_warn("refusing peer %s: node %llu is not a member of cluster '%s' id %s "
                     "(same cluster id; %llu more refusals not logged)",
                     net_conn_peer_name(c), (unsigned long long)d->from_id, n->cfg->cluster.name,
                     ours, (unsigned long long)more);
        }
        net_conn_close(c, -EPERM);
        return false;
    }
    switch (d->body) {
    case PEER_BODY_PROBE:
        bootstrap_on_probe(n, d);
        return false;
    case PEER_BODY_PROBE_REPLY:
        bootstrap_on_reply(n, d);
        return false;
    case PEER_BODY_RAFT:
        break;
    }
    /* An empty node that has not decided yet must not take a log (it may
     * be a wiped member about to be refused) nor vote. */
    if (bootstrap_deciding(n))
        return false;
    uint64_t recorded;
    if (replica_incarnation_refused(n->rp, &d->msg, d->incarnation, &recorded)) {
        uint64_t more;
        g->votes_dropped++;
        if (net_ratelimit_ok(&g->vote_rl, ev_now(n->loop), &more))
            log_warn("dropping a %s (term %llu) from node %llu: its data directory is "
                     "incarnation %016llx, the cluster recorded %016llx (it lost its data?) "
                     "(%llu more dropped)",
                     raft_msg_type_name(d->msg.type), (unsigned long long)d->msg.term,
                     (unsigned long long)d->from_id,
                     (unsigned long long)d->incarnation, (unsigned long long)recorded,
                     (unsigned long long)more);
        return false;
    }
    if (replica_vote_withheld(n->rp, &d->msg)) {
        uint64_t more;
        g->votes_withheld++;
        if (net_ratelimit_ok(&g->withheld_rl, ev_now(n->loop), &more))
            log_notice("not answering a %s (term %llu) from node %llu: this node joined with an "
                       "empty data directory and votes only once its log records that directory "
                       "(incarnation %016llx), which the leader does once it holds data (%llu "
                       "more not logged)",
                       raft_msg_type_name(d->msg.type), (unsigned long long)d->msg.term,
                       (unsigned long long)d->from_id, (unsigned long long)n->ident.incarnation,
                       (unsigned long long)more);
        return false;
    }
    if (replica_record_incarnation(n->rp, d->from_id, d->incarnation, now_ms(n)) == 1) {
        node_mark_dirty(n);
        log_info("recording incarnation %016llx of node %llu's data directory",
                 (unsigned long long)d->incarnation, (unsigned long long)d->from_id);
    }
    return true;
}
