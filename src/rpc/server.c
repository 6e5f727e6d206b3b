/* server.c - client connections of a node or proxy: listeners, one
 * rpc_client per connection (reference-counted while requests wait),
 * decoding each frame into a Request for the owner, and the list of
 * clients watching the leader. */
#include "rpc/rpc.h"

#include "common/addr.h"
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void rpc_server_init(struct rpc_server *s, struct ev_loop *loop, const struct rpc_server_ops *ops,
                     void *owner, size_t max_conns, const struct net_conn_limits *limits)
{
    s->loop = loop;
    s->ops = ops;
    s->owner = owner;
    s->max_conns = max_conns;
    s->limits = *limits;
    s->watchers = NULL;
    memset(&s->sec, 0, sizeof(s->sec));
    s->sec.anonymous = RPC_ROLE_READ;
}

void rpc_server_secure(struct rpc_server *s, const struct rpc_security *sec)
{
    s->sec = *sec;
}

static void client_unref(struct rpc_client *cl)
{
    if (--cl->refs == 0)
        free(cl);
}

void rpc_client_hold(struct rpc_client *cl)
{
    cl->refs++;
    net_conn_request_begin(cl->conn);
}

void rpc_client_release(struct rpc_client *cl)
{
    net_conn_request_end(cl->conn);
    client_unref(cl);
}

/* ---- WATCH_LEADER ------------------------------------------------------ */

void rpc_watch(struct rpc_client *cl, uint64_t id, uint64_t leader, uint64_t term,
               const char *address)
{
    cl->watch_id = id;
    if (!cl->watching) {
        cl->watching = true;
        cl->next_watcher = cl->srv->watchers;
        cl->srv->watchers = cl;
    }
    rpc_send_leader_event(cl, leader, term, address);
}

void rpc_unwatch(struct rpc_client *cl)
{
    for (struct rpc_client **pp = &cl->srv->watchers; *pp; pp = &(*pp)->next_watcher)
        if (*pp == cl) {
            *pp = cl->next_watcher;
            break;
        }
    cl->watching = false;
}

void rpc_notify_leader(struct rpc_server *s, uint64_t leader, uint64_t term, const char *address)
{
    for (struct rpc_client *cl = s->watchers; cl; cl = cl->next_watcher)
        rpc_send_leader_event(cl, leader, term, address);
}

void rpc_server_stop(struct rpc_server *s)
{
    while (s->watchers)
        rpc_unwatch(s->watchers);
}

/* ---- connections ------------------------------------------------------- */

static void on_client_frame(struct net_conn *c, const uint8_t *payload, size_t len, void *ud)
{
    struct rpc_client *cl = ud;
    if (cl->srv->ops->on_frame && cl->srv->ops->on_frame(cl, payload, len))
        return;
    Raftkv__Request *req = raftkv__request__unpack(NULL, len, payload);
    if (!req) {
        log_warn("client %s sent a frame that is not a Request; closing", net_conn_peer_name(c));
        rpc_reply_error(cl, 0, RAFTKV__STATUS__INVALID_ARGUMENT, "frame is not a raftkv.Request");
        net_conn_close_after_flush(c, -EPROTO);
        return;
    }
    /* One check for node and proxy alike, before the owner sees it. */
    if (!rpc_authorize(cl, req)) {
        raftkv__request__free_unpacked(req, NULL);
        return;
    }
    cl->srv->ops->on_request(cl, req);
}

static void on_client_close(struct net_conn *c, enum net_close_reason reason, int err, void *ud)
{
    struct rpc_client *cl = ud;
    if (!cl)
        return;
    net_conn_log_client_close(c, reason, err);
    if (cl->watching)
        rpc_unwatch(cl);
    /* Requests still waiting run to the end (a write's session must learn
     * its outcome); their answers are dropped. */
    cl->conn = NULL;
    client_unref(cl);
}

static void on_client_ready(struct net_conn *c, void *ud)
{
    struct rpc_client *cl = ud;
    if (cl)
        rpc_auth_tls(cl, c);
}

static const struct net_conn_ops client_conn_ops = {
    .on_frame = on_client_frame,
    .on_close = on_client_close,
    .on_ready = on_client_ready,
};

static void on_client_accept(struct net_listener *l, struct net_conn *c, void *ud)
{
    struct rpc_client *cl = calloc(1, sizeof(*cl));
    if (!cl) {
        net_conn_destroy(c);
        return;
    }
    cl->srv = ud;
    cl->conn = c;
    cl->refs = 1;
    /* No frame arrives before a TLS handshake ends (on_client_ready). */
    if (net_conn_is_tls(c))
        snprintf(cl->who, sizeof(cl->who), "a TLS handshake not yet done");
    else
        rpc_auth_plain(cl, c);
    net_conn_set_userdata(c, cl);
}

static void on_client_refuse(struct net_listener *l, uint64_t more, void *ud)
{
    (void)l;
    struct rpc_server *s = ud;
    log_warn("refused a client: %llu connections open (max_connections), none idle "
             "long enough to give way (%llu more refusals not logged)",
             (unsigned long long)s->max_conns, (unsigned long long)more);
}

static const struct net_listener_ops listener_ops = {.on_accept = on_client_accept,
                                                     .on_refuse = on_client_refuse};

static struct net_listener_opts listener_opts(const struct rpc_server *s)
{
    struct net_listener_opts lo = {
        .max_conns = s->max_conns,
        .limits = s->limits,
        .conn_ops = &client_conn_ops,
        .tls = s->sec.tls,
        .tls_cert_optional = true,
    };
    return lo;
}

int rpc_server_listen(struct rpc_server *s, const char *name, const char *address, mode_t mode,
                      struct net_listener **out, char *err, size_t errlen)
{
    struct net_listener_opts lo = listener_opts(s);
    bool inherited = false;
    int rv = net_listener_start(s->loop, name, address, mode, &lo, &listener_ops, s, out, &inherited, err,
                                errlen);
    if (rv == 0)
        log_info("%s socket %s%s%s", name, address, inherited ? " (from systemd)" : "",
                 s->sec.tls && !addr_is_unix_str(address) ? " (TLS)" : "");
    return rv;
}

int rpc_server_share(struct rpc_server *s, const struct net_listener *l, struct net_listener **out)
{
    int fd = fcntl(net_listener_fd(l), F_DUPFD_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct net_listener_opts lo = listener_opts(s);
    *out = net_listener_new(s->loop, fd, &lo, &listener_ops, s);
    return *out ? 0 : -ENOMEM;
}
