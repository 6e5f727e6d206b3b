/* dial.h - a persistent outbound link (node -> peer, proxy -> node): connects
 * without blocking, with a connect timeout, and keeps reconnecting with
 * exponential backoff and jitter; reports up/down and delivers frames in
 * order over whichever connection is current. */
#ifndef RAFTKV_NET_DIAL_H
#define RAFTKV_NET_DIAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/addr.h"
#include "net/conn.h"

struct ev_loop;
struct ProtobufCMessage;
struct net_dial;

struct net_dial_opts {
    struct net_conn_limits limits;
    uint32_t connect_timeout_ms; /* config cluster.connect_timeout_ms */
    uint32_t backoff_min_ms;     /* config cluster.reconnect_min_ms */
    uint32_t backoff_max_ms;     /* config cluster.reconnect_max_ms */
    /* TLS client side on a TCP address (unix stays plaintext); NULL =
     * plaintext.  tls_expect_name: the name the server's certificate must
     * carry ("raftkv-node-N"), "" = any the CA issued. */
    struct net_tls *tls;
    char tls_expect_name[32];
};

/* Every callback may call net_dial_free(d) or net_dial_reset(d). */
struct net_dial_ops {
    /* Connected; sends work from now until on_down. */
    void (*on_up)(struct net_dial *d, void *ud);
    /* A frame from the remote end, in order; payload valid during the call. */
    void (*on_frame)(struct net_dial *d, const uint8_t *payload, size_t len, void *ud);
    /* The link that on_up announced is gone (reason/err as for net_conn);
     * a reconnect is already scheduled.  Frames queued but unsent are lost. */
    void (*on_down)(struct net_dial *d, enum net_close_reason reason, int err, void *ud);
    /* Optional: an attempt failed (-ECONNREFUSED, -ETIMEDOUT, a TLS
     * handshake refused or timed out, ...) and the next is due in
     * retry_ms.  Only while down; for rate-limited logging.  Under TLS,
     * on_up comes only once the handshake is done: a peer that fails it
     * was never up. */
    void (*on_fail)(struct net_dial *d, int err, uint32_t retry_ms, void *ud);
};

/* Starts the first attempt at once (its outcome arrives from the loop).
 * NULL on allocation failure.  Unix and TCP addresses both work. */
struct net_dial *net_dial_new(struct ev_loop *loop, const struct addr *to, const struct net_dial_opts *opts,
                              const struct net_dial_ops *ops, void *ud);
/* Drops the link without callbacks and frees.  Safe inside callbacks. */
void net_dial_free(struct net_dial *d);

/* Queue a frame on the current link: 0, -ENOTCONN while down, or an error
 * of net_conn_send (-ENOBUFS etc.; the link then goes down and recovers). */
int net_dial_send(struct net_dial *d, const void *payload, size_t len);
int net_dial_send_msg(struct net_dial *d, const struct ProtobufCMessage *msg);
struct iovec;
int net_dial_sendv(struct net_dial *d, const struct iovec *iov, size_t n);

/* Drop the current link or attempt (e.g. the peer spoke another cluster's
 * protocol) and reconnect after the usual backoff; on_down follows if it was
 * up.  err is passed to on_down as NET_CLOSE_LOCAL's err. */
void net_dial_reset(struct net_dial *d, int err);
/* Skip the remaining backoff and try now (e.g. a hint says the peer is back). */
void net_dial_retry_now(struct net_dial *d);

bool net_dial_is_up(const struct net_dial *d);
struct net_conn *net_dial_conn(const struct net_dial *d); /* NULL while down */
const struct addr *net_dial_addr(const struct net_dial *d);
uint32_t net_dial_failures(const struct net_dial *d); /* consecutive, reset by traffic */
void *net_dial_userdata(const struct net_dial *d);

#endif
