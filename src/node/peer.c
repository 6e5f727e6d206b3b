/* peer.c - Raft messages between nodes.  Each node dials every other member
 * and sends on that link only; it receives on the connections the others
 * dialled to its peer socket.  Messages are fire-and-forget: Raft already
 * tolerates loss, so a link that is down simply drops what is sent to it.
 */
#include "node/node_int.h"

#include "common/addr.h"
#include "common/log.h"
#include "net/ratelimit.h"
#include "net/tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct peer_link *link_for(struct node *n, raft_id id)
{
    for (unsigned i = 0; i < n->n_peers; i++)
        if (n->peers[i].id == id)
            return &n->peers[i];
    return NULL;
}

void peer_send(void *arg, const struct raft_msg *m)
{
    struct node *n = arg;
    struct peer_link *pl = link_for(n, m->to);
    if (!pl || !net_dial_is_up(pl->dial))
        return;
    if (m->type == RAFT_MSG_SNAPSHOT) {
        snapxfer_send(n, pl, m);
        return;
    }
    const struct ProtobufCMessage *pm = peer_encode(&n->enc, &n->pident, m, NULL);
    if (!pm) {
        log_warn("out of memory encoding a message for node %u", pl->id);
        return;
    }
    int rv = net_dial_send_msg(pl->dial, pm);
    if (rv == 0)
        node_metrics_peer_sent(n, m);
    else if (rv != -ENOTCONN)
        log_debug("send to node %u failed: %s", pl->id, strerror(-rv));
}

void peer_send_probe(struct node *n, raft_id to, const struct peer_probe_reply *reply)
{
    struct peer_link *pl = link_for(n, to);
    if (!pl || !net_dial_is_up(pl->dial))
        return;
    const struct ProtobufCMessage *pm = peer_encode_probe(&n->enc, &n->pident, n->id, reply);
    if (pm)
        (void)net_dial_send_msg(pl->dial, pm);
}

/* ---- inbound ---------------------------------------------------------- */

static void deliver(struct node *n, struct net_conn *c, struct peer_decoded *d)
{
    struct raft_msg *m = &d->msg;
    if (m->to != n->id) {
        log_warn("peer %s sent a message for node %llu to node %u; closing",
                 net_conn_peer_name(c), (unsigned long long)m->to, n->id);
        net_conn_close(c, -EINVAL);
        return;
    }
    if (m->type == RAFT_MSG_SNAPSHOT) {
        if (d->has_chunk) {
            void *own = peer_decoded_take_chunk(d);
            snapxfer_recv(n, net_conn_userdata(c), c, m, &d->chunk, &own);
            free(own);
        }
    } else {
        /* A follower's read may be answered on the lease: judge it by the
         * time now, not by the last tick the timer gave. */
        if (m->type == RAFT_MSG_READ_INDEX && n->cfg->cluster.lease_reads)
            node_lease_clock(n);
        replica_step(n->rp, m);
    }
    node_mark_dirty(n);
}

static void on_peer_frame(struct net_conn *c, const uint8_t *payload, size_t len, void *ud)
{
    struct peer_in *in = ud;
    struct node *node = in->node;
    struct peer_decoded d;
    char why[160];
    int rv = peer_decode(payload, len, &node->pident, &d, why, sizeof(why));
    if (rv == PEER_DECODE_CLUSTER) {
        /* A misconfigured node retries forever: one line per minute. */
        static struct net_ratelimit rl = {.interval = 60.0};
        uint64_t more;
        if (net_ratelimit_ok(&rl, ev_now(node->loop), &more))
            log_warn("refusing peer %s: %s (%llu more refusals not logged)", net_conn_peer_name(c),
                     why, (unsigned long long)more);
        net_conn_close(c, -EPERM);
        return;
    }
    if (rv != PEER_DECODE_OK) {
        static struct net_ratelimit rl = {.interval = 10.0};
        uint64_t more;
        if (net_ratelimit_ok(&rl, ev_now(node->loop), &more))
            log_warn("bad message from peer %s (%s); closing (%llu more not logged)",
                     net_conn_peer_name(c), why, (unsigned long long)more);
        net_conn_close(c, -EPROTO);
        return;
    }
    if (guard_admit(node, c, &d))
        deliver(node, c, &d);
    peer_decoded_free(&d);
}

static void on_peer_close(struct net_conn *c, enum net_close_reason reason, int err, void *ud)
{
    (void)c, (void)reason, (void)err;
    struct peer_in *in = ud;
    if (!in)
        return;
    snapxfer_conn_closed(in->node, in);
    free(in);
}

static const struct net_conn_ops peer_conn_ops = {
    .on_frame = on_peer_frame,
    .on_close = on_peer_close,
};

static void on_peer_accept(struct net_listener *l, struct net_conn *c, void *ud)
{
    (void)l;
    struct node *n = ud;
    struct peer_in *in = calloc(1, sizeof(*in));
    if (!in) {
        net_conn_destroy(c);
        return;
    }
    in->node = n;
    net_conn_set_userdata(c, in);
}

/* ---- outbound --------------------------------------------------------- */

static void on_link_up(struct net_dial *d, void *ud)
{
    (void)d;
    struct peer_link *pl = ud;
    log_info("link to node %u is up", pl->id);
}

static void on_link_down(struct net_dial *d, enum net_close_reason reason, int err, void *ud)
{
    (void)d;
    struct peer_link *pl = ud;
    log_info("link to node %u is down (%s%s%s)", pl->id, net_close_reason_str(reason),
             err ? ": " : "", err ? strerror(-err) : "");
    snapxfer_link_down(pl->node, pl);
    replica_report_unreachable(pl->node->rp, pl->id);
    node_mark_dirty(pl->node);
}

static void on_link_frame(struct net_dial *d, const uint8_t *payload, size_t len, void *ud)
{
    (void)d, (void)payload, (void)len, (void)ud;
    /* nothing comes back on an outbound link */
}

static const struct net_dial_ops link_ops = {
    .on_up = on_link_up,
    .on_frame = on_link_frame,
    .on_down = on_link_down,
};

static struct net_dial_opts dial_opts(const struct node *n)
{
    const struct config *cfg = n->cfg;
    struct net_dial_opts dopts = {
        .limits = n->peer_limits,
        .connect_timeout_ms = (uint32_t)cfg->cluster.connect_timeout_ms,
        .backoff_min_ms = (uint32_t)cfg->cluster.reconnect_min_ms,
        .backoff_max_ms = (uint32_t)cfg->cluster.reconnect_max_ms,
        .tls = n->tls,
    };
    return dopts;
}

int peer_link_add(struct node *n, raft_id id, const char *address, char *err, size_t errlen)
{
    if (id == n->id)
        return 0;
    struct addr a;
    int rv = addr_parse(address, &a);
    if (rv < 0) {
        snprintf(err, errlen, "node %llu peer address '%s': %s", (unsigned long long)id, address,
                 strerror(-rv));
        return rv;
    }
    struct peer_link *pl = link_for(n, id);
    if (!pl) {
        if (n->n_peers == CONFIG_MAX_NODES) {
            snprintf(err, errlen, "no room for a link to node %llu", (unsigned long long)id);
            return -ENOSPC;
        }
        pl = &n->peers[n->n_peers];
        pl->id = (uint32_t)id;
        pl->node = n;
    } else {
        /* A member re-added under a new address: dial the new one. */
        snapxfer_send_abort(n, pl, "the member's address changed");
        net_dial_free(pl->dial);
    }
    struct net_dial_opts dopts = dial_opts(n);
    /* We send Raft messages only to the node that proves it is id. */
    net_tls_node_name((uint32_t)id, dopts.tls_expect_name, sizeof(dopts.tls_expect_name));
    pl->dial = net_dial_new(n->loop, &a, &dopts, &link_ops, pl);
    if (!pl->dial) {
        snprintf(err, errlen, "cannot set up the link to node %llu", (unsigned long long)id);
        if (pl == &n->peers[n->n_peers])
            return -ENOMEM;
        /* drop the slot: it has no dial any more */
        *pl = n->peers[--n->n_peers];
        return -ENOMEM;
    }
    if (pl == &n->peers[n->n_peers])
        n->n_peers++;
    return 0;
}

bool peer_link_has(struct node *n, raft_id id)
{
    return id == n->id || link_for(n, id) != NULL;
}

int peer_start(struct node *n, char *err, size_t errlen)
{
    const struct config *cfg = n->cfg;
    const struct config_node *me = config_node_find(cfg, n->id);
    struct net_listener_opts lo = {
        .max_conns = cfg->n_nodes * 4 + 16,
        .limits = n->peer_limits,
        .conn_ops = &peer_conn_ops,
    };
    static const struct net_listener_ops lops = {.on_accept = on_peer_accept};
    bool inherited = false;
    lo.tls = n->tls;
    int rv = net_listener_start(n->loop, "peer", me->peer, 0660, &lo, &lops, n, &n->peer_l,
                                &inherited, err, errlen);
    if (rv < 0)
        return rv;
    log_info("peer socket %s%s", me->peer, inherited ? " (from systemd)" : "");

    for (size_t i = 0; i < cfg->n_nodes; i++)
        if ((rv = peer_link_add(n, cfg->nodes[i].id, cfg->nodes[i].peer, err, errlen)) < 0)
            return rv;
    return 0;
}

void peer_stop(struct node *n)
{
    for (unsigned i = 0; i < n->n_peers; i++) {
        if (n->peers[i].dial) {
            /* push out what is queued (a hand-off's TimeoutNow) before going */
            struct net_conn *c = net_dial_conn(n->peers[i].dial);
            if (c)
                net_conn_flush(c);
            net_dial_free(n->peers[i].dial);
        }
        snapxfer_send_close(&n->peers[i].tx);
        n->peers[i].dial = NULL;
    }
    n->n_peers = 0;
    if (n->peer_l) {
        net_listener_close_conns(n->peer_l);
        net_listener_free(n->peer_l);
    }
    n->peer_l = NULL;
}
