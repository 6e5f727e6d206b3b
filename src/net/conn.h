/* conn.h - a framed connection on a non-blocking stream socket, driven by a
 * libev loop: frames in through on_frame, frames out through a bounded
 * output queue, and one close callback that says why.  A peer that sends a
 * bad frame or stops reading is disconnected; nobody else is affected. */
#ifndef RAFTKV_NET_CONN_H
#define RAFTKV_NET_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/tls.h"

struct ev_loop;
struct ProtobufCMessage;
struct net_conn;

enum net_close_reason {
    NET_CLOSE_LOCAL,       /* net_conn_close() was called; err as passed */
    NET_CLOSE_EOF,         /* the peer closed its side; err = 0 */
    NET_CLOSE_ERROR,       /* read/write failed; err = -errno (-ECONNRESET, ...) */
    NET_CLOSE_PROTOCOL,    /* frame longer than max_frame; err = -EMSGSIZE */
    NET_CLOSE_SLOW_READER, /* output queue over max_pending; err = -ENOBUFS */
    NET_CLOSE_NOMEM,       /* buffer allocation failed; err = -ENOMEM */
    NET_CLOSE_STALLED,     /* a frame begun was not completed within
                            * frame_timeout_ms; err = -ETIMEDOUT */
    NET_CLOSE_EVICTED,     /* idle, and its listener needed the slot or the
                            * fd for a new client; err = -EMFILE */
    NET_CLOSE_TLS,         /* TLS handshake failed (-EPROTO: not TLS or
                            * refused; -EACCES: certificate not accepted;
                            * -ETIMEDOUT: not completed within
                            * frame_timeout_ms) or a TLS record was bad */
};

const char *net_close_reason_str(enum net_close_reason r);

struct net_conn_ops {
    /* One complete frame.  payload is valid only during the call.  May call
     * anything on this or other connections, including net_conn_close() and
     * net_conn_destroy() on c itself: no further frames are delivered then. */
    void (*on_frame)(struct net_conn *c, const uint8_t *payload, size_t len, void *ud);
    /* The connection is closed (fd already closed).  Runs from the event
     * loop, never from inside a net_conn_* call, exactly once per
     * connection unless net_conn_destroy() came first.  c is freed when this
     * returns: drop every pointer to it here. */
    void (*on_close)(struct net_conn *c, enum net_close_reason reason, int err, void *ud);
    /* Optional: output that had backed up (the socket was full) has now
     * all been written -- for flow control.  Frames that leave at once on
     * a socket with room never back up and do not trigger it. */
    void (*on_drain)(struct net_conn *c, void *ud);
    /* Optional: the TLS handshake completed (net_conn_start_tls); never
     * called on a plaintext connection.  Same rules as on_frame. */
    void (*on_ready)(struct net_conn *c, void *ud);
};

struct net_conn_limits {
    size_t max_frame;          /* both directions; config cluster.max_frame_bytes */
    size_t max_pending_output; /* config cluster.max_pending_output_bytes */
    /* A frame whose first bytes arrived must be complete within this long
     * (while frames keep completing on the connection, the clock restarts),
     * else the connection is closed as NET_CLOSE_STALLED: a slowloris client
     * cannot hold a buffer and a slot forever.  0 = no limit.  Config
     * cluster.frame_timeout_ms. */
    uint32_t frame_timeout_ms;
    /* Requests in flight (net_conn_request_begin/_end) at which the
     * connection stops being read until half of them are answered; 0 = no
     * cap. */
    uint32_t max_in_flight;
    /* Request/response connections (a daemon's clients, the proxy's links
     * among them): output queued past max_pending_output no longer closes
     * the connection but stops the reading of new requests until half of
     * it has drained (like Redis's output buffers of normal clients).  The
     * answers to requests already read still queue (at most
     * max_in_flight frames more), so a batch of large answers the daemon
     * produced itself never costs a shared link.  The connection is closed
     * as NET_CLOSE_SLOW_READER only when the peer takes no byte for
     * NET_OUTPUT_STALL_MS while over the mark: a reader that really
     * stopped.  false: the old rule,
     * closed at once over max_pending_output (peer links, whose output the
     * daemon paces itself). */
    bool output_backpressure;
};

/* output_backpressure: how long a peer over the mark may take no byte
 * before it is cut off.  Long enough for any live reader (a proxy, a client
 * between two reads) and short enough that a dead one gives back its
 * buffers and slot soon. */
#define NET_OUTPUT_STALL_MS 5000u

/* max_in_flight of client connections (node and proxy): one client
 * pipelining thousands of requests must not turn into thousands parked in
 * the daemon, nor, through the proxy, into forwarded requests whose
 * answers swamp the links to the nodes (a node drops a link that falls
 * max_pending_output_bytes behind). */
#define NET_CLIENT_MAX_IN_FLIGHT 1024u

/* Takes ownership of fd (made non-blocking and close-on-exec; TCP_NODELAY
 * on TCP) and starts reading.  NULL (fd closed) on allocation failure. */
struct net_conn *net_conn_new(struct ev_loop *loop, int fd, const struct net_conn_limits *limits,
                              const struct net_conn_ops *ops, void *ud);

/* Output coalescing for the calling thread's loop: from now on, frames
 * queued on a connection of loop outside that connection's own callbacks
 * are written just before the loop next blocks (after every other
 * ev_prepare callback), so everything one loop iteration queues on a
 * connection leaves in one sendmsg.  Without it they are written at once.
 * One loop per thread; 0, -EBUSY (another loop has it), -ENOMEM.  Stop
 * (writes what waits) before the loop is destroyed. */
int net_coalesce_start(struct ev_loop *loop);
void net_coalesce_stop(struct ev_loop *loop);

/* Queue one frame.  Sent from this connection's own callback, it is
 * written when that callback ends (all frames of one read in one sendmsg);
 * otherwise see net_coalesce_start.  0, or:
 * -EPIPE the connection is closed/closing; -EMSGSIZE payload over max_frame
 * (nothing queued, connection stays up); -ENOBUFS the queue would exceed
 * max_pending_output (with output_backpressure: its hard ceiling,
 * max_pending_output + max_in_flight largest frames): the connection is
 * closed as NET_CLOSE_SLOW_READER; -ENOMEM (closed as NET_CLOSE_NOMEM). */
int net_conn_send(struct net_conn *c, const void *payload, size_t len);
/* Same, one frame whose payload is the n pieces in order (a proxy
 * re-addressing a frame: new fields, then the bytes it keeps). */
struct iovec;
int net_conn_sendv(struct net_conn *c, const struct iovec *iov, size_t n);
/* Same, packing a protobuf-c message straight into the queue. */
int net_conn_send_msg(struct net_conn *c, const struct ProtobufCMessage *msg);

/* Try to write queued output now instead of at the next loop iteration.
 * 0 (possibly with output left), -EPIPE if closed.  A write error closes the
 * connection (callback deferred as always). */
int net_conn_flush(struct net_conn *c);

/* Close now: fd closed, queued output dropped, no more frames delivered;
 * on_close(c, NET_CLOSE_LOCAL, err) follows from the loop.  Idempotent. */
void net_conn_close(struct net_conn *c, int err);
/* Close after the queued output has been written (or failed); no more
 * frames are delivered meanwhile.  For "send the error reply, then hang up". */
void net_conn_close_after_flush(struct net_conn *c, int err);
/* Close and free with no callback, from anywhere (including this
 * connection's own callbacks: the free is then deferred until they return). */
void net_conn_destroy(struct net_conn *c);
/* Close, run on_close now if it has not run, and free: for a daemon's exit,
 * when the loop will not turn again to deliver it.  The one net_conn_* call
 * that runs on_close itself. */
void net_conn_close_now(struct net_conn *c);

/* Stop/resume delivering frames (the socket is not read while stopped), so a
 * daemon can cap the requests in flight per client.  Resuming delivers
 * frames already buffered from the loop, not from inside this call.  With
 * output_backpressure, output over the mark keeps it stopped as well. */
void net_conn_set_reading(struct net_conn *c, bool on);

bool net_conn_is_open(const struct net_conn *c);
size_t net_conn_pending_output(const struct net_conn *c);
int net_conn_fd(const struct net_conn *c);      /* -1 once closed */
void *net_conn_userdata(const struct net_conn *c);
void net_conn_set_userdata(struct net_conn *c, void *ud);
/* Remote address as text ("10.0.0.2:40312", "unix:"), for logs. */
const char *net_conn_peer_name(const struct net_conn *c);

/* A daemon brackets each request it has read but not yet answered.  At
 * limits.max_in_flight the connection is not read until half of them are
 * answered, so one client pipelining without waiting cannot park an
 * unbounded number of requests; and a connection waiting for an answer is
 * never idle, so it is not evicted (say, while a write waits out an
 * election).  c may be NULL (the connection is already gone). */
void net_conn_request_begin(struct net_conn *c);
void net_conn_request_end(struct net_conn *c);

/* For a daemon's client on_close: log a close that was not a plain EOF or
 * our own doing (a stalled frame, an evicted idler, a reset), at most one
 * line per 10 s per thread (event loop) with the count of those left out, so a flood
 * of hostile connections does not become a flood of log lines. */
void net_conn_log_client_close(struct net_conn *c, enum net_close_reason reason, int err);

/* ev_now() of the last byte read or written (or of creation); a negative
 * value while input or output is buffered or a request is in flight (the
 * connection is not idle). */
double net_conn_idle_since(const struct net_conn *c);

/* Counters since creation. */
struct net_conn_stats {
    uint64_t frames_in, frames_out, bytes_in, bytes_out;
};
void net_conn_get_stats(const struct net_conn *c, struct net_conn_stats *st);

/* TLS (net/tls.h) on a connection just made by net_conn_new (nothing read
 * or sent on it yet): the handshake runs from the loop, non-blocking, and
 * must complete within limits.frame_timeout_ms (10 s when that is 0), else
 * the connection closes as NET_CLOSE_TLS/-ETIMEDOUT.  Frames sent meanwhile
 * are queued and leave once it completes; no frame is delivered before.
 * A client (NET_TLS_CLIENT) with expect_name refuses a server whose
 * certificate does not carry that name.  0, or -ENOMEM (c is then closed). */
int net_conn_start_tls(struct net_conn *c, struct net_tls *t, enum net_tls_mode mode,
                       const char *expect_name);
bool net_conn_is_tls(const struct net_conn *c);
/* The node id the peer's verified certificate names ("raftkv-node-N").
 * 0; -ENOENT not a TLS connection; -EACCES the certificate names no node
 * (or two).  Only meaningful once frames arrive (the handshake is done). */
int net_conn_tls_peer_node(const struct net_conn *c, uint32_t *id);
/* net_tls_peer_names() on the connection's verified peer certificate:
 * -ENOENT not TLS, -EACCES no certificate (or handshake not done). */
int net_conn_tls_peer_names(const struct net_conn *c, int (*fn)(const char *name, size_t len, void *arg),
                            void *arg);

#endif
