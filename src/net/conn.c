/* conn.c - framed connection: in-place frame decoding, a chunked output
 * queue flushed with sendmsg/iovec, and a lifetime protocol that keeps the
 * struct alive while any of its callbacks runs, so user code may close or
 * destroy the connection from anywhere. */
#include "net/conn.h"

#include "common/addr.h"
#include "common/log.h"
#include "net/framing.h"
#include "net/net_int.h"
#include "net/ratelimit.h"
#include "net/tls.h"

#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <protobuf-c/protobuf-c.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define OUT_CHUNK (64u * 1024u)
#define IOV_BATCH 64
#define READS_PER_WAKEUP 4     /* then let other connections have a turn */
#define MIN_READ (16u * 1024u) /* never read() into a sliver of buffer */
#define LINGER_SECONDS 5.0     /* close_after_flush gives up on a non-reader */
#define TLS_HANDSHAKE_DEFAULT_MS 10000u /* when frame_timeout_ms is 0 (no limit) */

struct chunk {
    struct chunk *next;
    size_t head, tail, cap; /* unsent bytes are data[head..tail) */
    uint8_t data[];
};

struct net_conn {
    struct ev_loop *loop;
    int fd;
    ev_io rio, wio;
    ev_timer defer; /* deferred close callback, resumed dispatch, linger */
    ev_timer stall; /* a partial frame's deadline (frame_timeout_ms) */
    ev_timer ostall; /* output_backpressure: the peer's deadline to take a byte */
    uint64_t ostall_bytes; /* bytes_out when that deadline was armed */
    bool co_queued;         /* on the loop's coalescer list (out_kick) */
    struct net_conn *co_next;
    uint64_t stall_frames; /* frames_in when that deadline was armed */
    double last_active;    /* ev_now() of the last byte in or out */
    struct net_decoder dec;
    struct chunk *out_head, *out_tail;
    size_t pending;
    uint32_t in_flight;     /* net_conn_request_begin() minus _end() */
    struct net_conn_limits lim;
    struct net_conn_ops ops;
    void *ud;

    unsigned depth;         /* our libev callbacks on the stack */
    bool closed;            /* fd gone; on_close pending (unless destroyed) */
    bool destroyed;         /* free when depth drops to 0; no callbacks */
    bool reading;           /* the socket is read: user_reading && !out_paused */
    bool user_reading;      /* net_conn_set_reading() */
    bool out_paused;        /* output_backpressure: output over the mark */
    bool dispatch_pending;  /* frames buffered while reading was off */
    bool flush_then_close;
    enum net_close_reason reason;
    int err;

    /* TLS (start_tls): ssl is NULL on a plaintext connection. */
    SSL *ssl;
    bool tls;                /* was TLS (ssl is freed at close) */
    bool tls_handshaking;
    bool tls_write_wants_read; /* SSL_write said WANT_READ: wio would spin */
    bool tls_read_wants_write; /* SSL_read said WANT_WRITE: retry on wio */
    int tls_node_rc;         /* net_conn_tls_peer_node() */
    uint32_t tls_node;
    /* On its context's list (net_tls_conn_list) while open, so a reload
     * with a new CRL can close it; tls_owner NULL once off the list. */
    struct net_tls *tls_owner;
    struct net_conn *tls_next, **tls_pprev;

    struct net_conn_stats st;
    void (*release)(struct net_conn *c, void *arg);
    void *release_arg;
    char peer[ADDR_STRLEN];
};

/* net_coalesce_start: one per thread, for one loop.  Connections with
 * output queued outside their own callbacks wait on its list; its prepare
 * watcher writes them just before the loop blocks, one sendmsg each however
 * many frames the iteration queued. */
struct coalescer {
    struct ev_loop *loop;
    ev_prepare w;
    struct net_conn *head;
};
static _Thread_local struct coalescer *tl_coalescer;

static void co_unlink(struct net_conn *c)
{
    if (!c->co_queued || !tl_coalescer)
        return;
    for (struct net_conn **pp = &tl_coalescer->head; *pp; pp = &(*pp)->co_next)
        if (*pp == c) {
            *pp = c->co_next;
            break;
        }
    c->co_queued = false;
}

static const char *const reason_names[] = {
    [NET_CLOSE_LOCAL] = "closed locally",
    [NET_CLOSE_EOF] = "closed by peer",
    [NET_CLOSE_ERROR] = "socket error",
    [NET_CLOSE_PROTOCOL] = "protocol error (frame too large)",
    [NET_CLOSE_SLOW_READER] = "peer not reading (output limit reached)",
    [NET_CLOSE_NOMEM] = "out of memory",
    [NET_CLOSE_STALLED] = "frame not completed in time (frame_timeout_ms)",
    [NET_CLOSE_EVICTED] = "idle connection evicted to admit a new client",
    [NET_CLOSE_TLS] = "TLS handshake failed",
};

const char *net_close_reason_str(enum net_close_reason r)
{
    return r <= NET_CLOSE_TLS ? reason_names[r] : "?";
}

int net_socket_prepare(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int fl = fcntl(fd, F_GETFL), one = 1;

    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
        return -errno;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0 &&
        (ss.ss_family == AF_INET || ss.ss_family == AF_INET6))
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return 0;
}

/* ---- lifetime ----------------------------------------------------------- */

static void tls_unlink(struct net_conn *c)
{
    if (!c->tls_owner)
        return;
    *c->tls_pprev = c->tls_next;
    if (c->tls_next)
        c->tls_next->tls_pprev = c->tls_pprev;
    c->tls_owner = NULL;
    c->tls_next = NULL;
    c->tls_pprev = NULL;
}

static void free_output(struct net_conn *c)
{
    while (c->out_head) {
        struct chunk *next = c->out_head->next;
        free(c->out_head);
        c->out_head = next;
    }
    c->out_tail = NULL;
    c->pending = 0;
}

static void conn_free(struct net_conn *c)
{
    ev_timer_stop(c->loop, &c->defer);
    ev_timer_stop(c->loop, &c->stall);
    ev_timer_stop(c->loop, &c->ostall);
    co_unlink(c);
    ev_io_stop(c->loop, &c->rio);
    ev_io_stop(c->loop, &c->wio);
    tls_unlink(c);
    SSL_free(c->ssl);
    if (c->fd >= 0)
        close(c->fd);
    free_output(c);
    net_decoder_free(&c->dec);
    if (c->release)
        c->release(c, c->release_arg);
    free(c);
}

/* Every entry from libev brackets its work with enter/leave; leave returns
 * true when c was freed and must not be touched again. */
static void enter(struct net_conn *c)
{
    c->depth++;
}

static bool leave(struct net_conn *c)
{
    if (--c->depth == 0 && c->destroyed) {
        conn_free(c);
        return true;
    }
    return false;
}

/* Release the socket and buffers now; the callback waits for the loop. */
static void shut(struct net_conn *c, enum net_close_reason reason, int err)
{
    if (c->closed)
        return;
    c->closed = true;
    c->reason = reason;
    c->err = err;
    ev_io_stop(c->loop, &c->rio);
    ev_io_stop(c->loop, &c->wio);
    ev_timer_stop(c->loop, &c->stall);
    ev_timer_stop(c->loop, &c->ostall);
    /* No close_notify: it could block or fail on a dead socket, and every
     * frame is length-prefixed, so a truncation is seen without it. */
    tls_unlink(c);
    SSL_free(c->ssl);
    c->ssl = NULL;
    close(c->fd);
    c->fd = -1;
    free_output(c);
    net_decoder_free(&c->dec);
    ev_timer_stop(c->loop, &c->defer);
    ev_timer_set(&c->defer, 0., 0.);
    ev_timer_start(c->loop, &c->defer);
}

void net_conn_close(struct net_conn *c, int err)
{
    shut(c, NET_CLOSE_LOCAL, err);
}

void net_conn_shut(struct net_conn *c, enum net_close_reason reason, int err)
{
    shut(c, reason, err);
}

void net_conn_destroy(struct net_conn *c)
{
    shut(c, NET_CLOSE_LOCAL, 0);
    ev_timer_stop(c->loop, &c->defer);
    c->destroyed = true;
    if (c->depth == 0)
        conn_free(c);
}

void net_conn_close_now(struct net_conn *c)
{
    enter(c);
    shut(c, NET_CLOSE_LOCAL, 0);
    ev_timer_stop(c->loop, &c->defer);
    if (!c->destroyed && c->ops.on_close)
        c->ops.on_close(c, c->reason, c->err, c->ud);
    c->destroyed = true;
    leave(c);
}

void net_conn_set_release_hook(struct net_conn *c, void (*fn)(struct net_conn *, void *), void *arg)
{
    c->release = fn;
    c->release_arg = arg;
}

/* ---- output ------------------------------------------------------------- */

static void reading_apply(struct net_conn *c);

/* What the output queue may hold before the connection is cut off.  With
 * output_backpressure reading stops at max_pending_output, so past it come
 * only answers to requests already read: at most max_in_flight of them. */
static size_t out_ceiling(const struct net_conn *c)
{
    if (!c->lim.output_backpressure)
        return c->lim.max_pending_output;
    size_t n = c->lim.max_in_flight ? c->lim.max_in_flight : 1;
    return c->lim.max_pending_output + n * (c->lim.max_frame + NET_FRAME_HDR);
}

static void ostall_arm(struct net_conn *c)
{
    c->ostall_bytes = c->st.bytes_out;
    ev_timer_stop(c->loop, &c->ostall);
    ev_timer_set(&c->ostall, NET_OUTPUT_STALL_MS / 1000.0, 0.);
    ev_timer_start(c->loop, &c->ostall);
}

/* output_backpressure: over the mark, read no more requests (what is read
 * already is answered, and queues); at half of it, read again.  The daemon
 * thus never queues more than it was asked for, and a big batch of answers
 * waits for the reader instead of costing it the connection. */
static void out_pressure(struct net_conn *c)
{
    if (!c->lim.output_backpressure || c->closed)
        return;
    if (!c->out_paused && c->pending >= c->lim.max_pending_output) {
        c->out_paused = true;
        reading_apply(c);
        ostall_arm(c);
    } else if (c->out_paused && c->pending <= c->lim.max_pending_output / 2) {
        c->out_paused = false;
        ev_timer_stop(c->loop, &c->ostall);
        reading_apply(c);
    }
}

/* A peer that took no byte for a whole period while over the mark stopped
 * reading: only now is it cut off. */
static void ostall_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct net_conn *c = w->data;

    (void)loop, (void)revents;
    enter(c);
    if (!c->closed && c->out_paused) {
        if (c->st.bytes_out == c->ostall_bytes)
            shut(c, NET_CLOSE_SLOW_READER, -ENOBUFS);
        else
            ostall_arm(c);
    }
    leave(c);
}

/* Space for one frame of len payload bytes at the queue's end, header
 * written; NULL with *r set on failure. */
static uint8_t *out_reserve(struct net_conn *c, size_t len, int *r)
{
    size_t need = NET_FRAME_HDR + len;
    struct chunk *t = c->out_tail;

    if (c->closed || c->flush_then_close) {
        *r = -EPIPE;
        return NULL;
    }
    if (len > c->lim.max_frame || len > NET_FRAME_MAX_LIMIT) {
        *r = -EMSGSIZE;
        return NULL;
    }
    if (c->pending + need > out_ceiling(c)) {
        shut(c, NET_CLOSE_SLOW_READER, -ENOBUFS);
        *r = -ENOBUFS;
        return NULL;
    }
    if (!t || t->cap - t->tail < need) {
        size_t cap = need > OUT_CHUNK ? need : OUT_CHUNK;
        t = malloc(sizeof(*t) + cap);
        if (!t) {
            shut(c, NET_CLOSE_NOMEM, -ENOMEM);
            *r = -ENOMEM;
            return NULL;
        }
        t->next = NULL;
        t->head = t->tail = 0;
        t->cap = cap;
        if (c->out_tail)
            c->out_tail->next = t;
        else
            c->out_head = t;
        c->out_tail = t;
    }
    uint8_t *p = t->data + t->tail;
    net_frame_put_header(p, (uint32_t)len);
    t->tail += need;
    c->pending += need;
    c->st.frames_out++;
    out_pressure(c);
    return p + NET_FRAME_HDR;
}

static bool out_write(struct net_conn *c);

/* A frame was queued.  On a connection whose socket has room, write it now:
 * arming EV_WRITE for every reply and disarming it once sent costs two
 * epoll_ctl calls and a loop iteration per request, which profiling showed
 * was a tenth of a busy leader's CPU.  EV_WRITE is armed only when the
 * socket is full. */
static void out_flush_now(struct net_conn *c)
{
    if (ev_is_active(&c->wio) || c->closed || !c->pending || c->tls_handshaking)
        return;
    if (!out_write(c) && !c->closed && !c->tls_write_wants_read)
        ev_io_start(c->loop, &c->wio);
}

/* Replies produced while this connection's own input is being dispatched
 * wait for the end of that read: one sendmsg then carries them all, and a
 * client that pipelines without reading fills our queue (and is cut off)
 * instead of the kernel's buffers.  Frames queued from anywhere else (a
 * proxy relaying many clients' requests to one node, a node answering a
 * batch of reads) wait for the loop's coalescer, when it has one. */
static void out_kick(struct net_conn *c)
{
    struct coalescer *co = tl_coalescer;

    if (c->depth)
        return;
    if (!co || co->loop != c->loop) {
        out_flush_now(c);
        return;
    }
    if (!c->co_queued && !ev_is_active(&c->wio)) {
        c->co_queued = true;
        c->co_next = co->head;
        co->head = c;
    }
}

static void co_flush(struct coalescer *co)
{
    struct net_conn *c;

    while ((c = co->head)) {
        co->head = c->co_next;
        c->co_queued = false;
        c->co_next = NULL;
        enter(c);
        out_flush_now(c);
        leave(c);
    }
}

static void co_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)loop, (void)revents;
    co_flush(w->data);
}

int net_coalesce_start(struct ev_loop *loop)
{
    struct coalescer *co = tl_coalescer;

    if (co)
        return co->loop == loop ? 0 : -EBUSY;
    co = calloc(1, sizeof(*co));
    if (!co)
        return -ENOMEM;
    co->loop = loop;
    ev_prepare_init(&co->w, co_cb);
    /* After every other prepare callback, a node's ready round among them:
     * libev runs the prepare watchers of one pass by priority, and starting
     * one inside that pass would be too late for it. */
    ev_set_priority(&co->w, EV_MINPRI);
    co->w.data = co;
    ev_prepare_start(loop, &co->w);
    ev_unref(loop); /* it alone does not keep ev_run() going */
    tl_coalescer = co;
    return 0;
}

void net_coalesce_stop(struct ev_loop *loop)
{
    struct coalescer *co = tl_coalescer;

    if (!co || co->loop != loop)
        return;
    co_flush(co);
    ev_ref(loop);
    ev_prepare_stop(loop, &co->w);
    free(co);
    tl_coalescer = NULL;
}

int net_conn_send(struct net_conn *c, const void *payload, size_t len)
{
    int r = 0;
    uint8_t *p = out_reserve(c, len, &r);

    if (!p)
        return r;
    if (len)
        memcpy(p, payload, len);
    out_kick(c);
    return 0;
}

int net_conn_sendv(struct net_conn *c, const struct iovec *iov, size_t n)
{
    int r = 0;
    size_t len = 0;

    for (size_t i = 0; i < n; i++)
        len += iov[i].iov_len;
    uint8_t *p = out_reserve(c, len, &r);
    if (!p)
        return r;
    for (size_t i = 0; i < n; i++) {
        if (iov[i].iov_len)
            memcpy(p, iov[i].iov_base, iov[i].iov_len);
        p += iov[i].iov_len;
    }
    out_kick(c);
    return 0;
}

int net_conn_send_msg(struct net_conn *c, const ProtobufCMessage *msg)
{
    int r = 0;
    size_t len = protobuf_c_message_get_packed_size(msg);
    uint8_t *p = out_reserve(c, len, &r);

    if (!p)
        return r;
    protobuf_c_message_pack(msg, p);
    out_kick(c);
    return 0;
}

/* Drops n sent bytes from the queue front; keeps one emptied standard chunk
 * for reuse so a steady request/response flow does not malloc per frame. */
static void out_consume(struct net_conn *c, size_t n)
{
    c->pending -= n;
    c->st.bytes_out += n;
    c->last_active = ev_now(c->loop);
    while (n) {
        struct chunk *h = c->out_head;
        size_t k = h->tail - h->head < n ? h->tail - h->head : n;
        h->head += k;
        n -= k;
        if (h->head < h->tail)
            break;
        if (h == c->out_tail && h->cap == OUT_CHUNK) {
            h->head = h->tail = 0;
            break;
        }
        c->out_head = h->next;
        if (!c->out_head)
            c->out_tail = NULL;
        free(h);
    }
    out_pressure(c);
}

static void tls_fail(struct net_conn *c, const char *what, int err);

/* SSL_write, chunk by chunk (no writev over TLS): -1 with the queue
 * untouched when the socket is full or TLS must read first. */
static ssize_t tls_write_some(struct net_conn *c)
{
    struct chunk *k = c->out_head;
    while (k->tail == k->head)
        k = k->next; /* pending > 0: a non-empty chunk follows */
    net_tls_err_reset();
    int n = SSL_write(c->ssl, k->data + k->head, (int)(k->tail - k->head < INT_MAX ? k->tail - k->head : INT_MAX));
    if (n > 0)
        return n;
    int e = SSL_get_error(c->ssl, n);
    if (e == SSL_ERROR_WANT_READ)
        c->tls_write_wants_read = true;
    else if (e != SSL_ERROR_WANT_WRITE)
        tls_fail(c, "write", e == SSL_ERROR_SYSCALL && errno ? -errno : -EPROTO);
    return -1;
}

/* Writes until the queue is empty or the socket is full.  Returns true if
 * the queue was drained. */
static bool out_write(struct net_conn *c)
{
    if (c->tls_handshaking)
        return false;
    c->tls_write_wants_read = false;
    while (!c->closed && c->pending && c->ssl) {
        ssize_t n = tls_write_some(c);
        if (n < 0)
            return false;
        out_consume(c, (size_t)n);
    }
    while (!c->closed && c->pending) {
        struct iovec iov[IOV_BATCH];
        struct msghdr mh = { .msg_iov = iov };
        size_t total = 0;

        for (struct chunk *k = c->out_head; k && mh.msg_iovlen < IOV_BATCH; k = k->next) {
            if (k->tail == k->head)
                continue;
            iov[mh.msg_iovlen].iov_base = k->data + k->head;
            iov[mh.msg_iovlen].iov_len = k->tail - k->head;
            total += k->tail - k->head;
            mh.msg_iovlen++;
        }
        ssize_t n = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                shut(c, NET_CLOSE_ERROR, -errno);
            return false;
        }
        out_consume(c, (size_t)n);
        if ((size_t)n < total)
            return false; /* socket buffer full */
    }
    if (c->closed)
        return false;
    ev_io_stop(c->loop, &c->wio);
    if (c->flush_then_close)
        shut(c, NET_CLOSE_LOCAL, c->err);
    return true;
}

int net_conn_flush(struct net_conn *c)
{
    if (c->closed)
        return -EPIPE;
    out_write(c);
    return 0;
}

void net_conn_close_after_flush(struct net_conn *c, int err)
{
    if (c->closed || c->flush_then_close)
        return;
    if (!c->pending) {
        shut(c, NET_CLOSE_LOCAL, err);
        return;
    }
    c->flush_then_close = true;
    c->err = err;
    ev_io_stop(c->loop, &c->rio);
    ev_timer_stop(c->loop, &c->defer);
    ev_timer_set(&c->defer, LINGER_SECONDS, 0.);
    ev_timer_start(c->loop, &c->defer);
}

static void tls_handshake(struct net_conn *c);

static void wio_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct net_conn *c = w->data;

    enter(c);
    if (c->tls_handshaking) {
        tls_handshake(c);
        out_flush_now(c); /* what on_ready sent, if it just completed */
    } else {
        if (c->tls_read_wants_write) {
            c->tls_read_wants_write = false;
            ev_feed_event(loop, &c->rio, EV_READ);
        }
        if (out_write(c) && c->ops.on_drain && !c->closed)
            c->ops.on_drain(c, c->ud);
        else if (c->tls_write_wants_read || (!c->pending && !c->closed))
            ev_io_stop(loop, &c->wio); /* rio_cb writes again after reading */
    }
    leave(c);
}

/* ---- input -------------------------------------------------------------- */

/* The partial-frame clock.  Armed when bytes of an incomplete frame sit in
 * the buffer, stopped when none do.  It is not reset by every byte (a
 * client sending one byte a second would never time out) but only by
 * frames completing, so a fast pipelining client whose reads often end
 * mid-frame is never cut off. */
static void stall_check(struct net_conn *c)
{
    /* While handshaking the timer is the handshake's deadline. */
    if (c->closed || !c->lim.frame_timeout_ms || c->tls_handshaking)
        return;
    if (!net_decoder_buffered(&c->dec) || !c->reading) {
        ev_timer_stop(c->loop, &c->stall);
        return;
    }
    if (ev_is_active(&c->stall))
        return;
    c->stall_frames = c->st.frames_in;
    ev_timer_set(&c->stall, (double)c->lim.frame_timeout_ms / 1000.0, 0.);
    ev_timer_start(c->loop, &c->stall);
}

static void stall_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct net_conn *c = w->data;

    (void)loop, (void)revents;
    enter(c);
    if (c->tls_handshaking)
        tls_fail(c, "handshake", -ETIMEDOUT);
    else if (c->st.frames_in != c->stall_frames)
        stall_check(c); /* progress: give the frame now in front a full period */
    else if (!c->closed && c->reading && net_decoder_buffered(&c->dec))
        shut(c, NET_CLOSE_STALLED, -ETIMEDOUT);
    leave(c);
}

static void dispatch(struct net_conn *c)
{
    const uint8_t *p;
    size_t len;

    c->dispatch_pending = false;
    while (!c->closed && c->reading && !c->flush_then_close) {
        int r = net_decoder_next(&c->dec, &p, &len);
        if (r == 0)
            return;
        if (r < 0) {
            shut(c, NET_CLOSE_PROTOCOL, r);
            return;
        }
        c->st.frames_in++;
        c->ops.on_frame(c, p, len, c->ud);
    }
}

/* Input already inside OpenSSL (decrypted, or a record read whole) wakes
 * no epoll: have the loop come back for it. */
static void tls_more_input(struct net_conn *c)
{
    if (c->ssl && !c->closed && c->reading && !c->flush_then_close && !c->tls_handshaking &&
        SSL_has_pending(c->ssl))
        ev_feed_event(c->loop, &c->rio, EV_READ);
}

/* read(2), or SSL_read with its outcome mapped onto read's: >0 bytes,
 * 0 EOF (close_notify, or the peer just closed), -1 with errno (EAGAIN: try
 * again on readiness). */
static ssize_t conn_read(struct net_conn *c, void *buf, size_t len)
{
    if (!c->ssl)
        return read(c->fd, buf, len);
    net_tls_err_reset();
    errno = 0;
    int n = SSL_read(c->ssl, buf, (int)(len < INT_MAX ? len : INT_MAX));
    if (n > 0)
        return n;
    switch (SSL_get_error(c->ssl, n)) {
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_WANT_READ:
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_WANT_WRITE:
        c->tls_read_wants_write = true;
        ev_io_start(c->loop, &c->wio);
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_SYSCALL:
        if (!errno)
            return 0; /* SSL_OP_IGNORE_UNEXPECTED_EOF: a plain close */
        return -1;
    default:
        tls_fail(c, "read", -EPROTO);
        errno = EAGAIN; /* already closed: nothing more to do */
        return -1;
    }
}

static void rio_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct net_conn *c = w->data;

    enter(c);
    if (c->tls_handshaking) {
        tls_handshake(c);
        if (c->tls_handshaking || c->closed) {
            leave(c);
            return;
        }
    }
    for (int i = 0; i < READS_PER_WAKEUP && !c->closed && c->reading && !c->flush_then_close; i++) {
        uint8_t *space;
        size_t avail;
        if (net_decoder_space(&c->dec, MIN_READ, &space, &avail) < 0) {
            shut(c, NET_CLOSE_NOMEM, -ENOMEM);
            break;
        }
        ssize_t n = conn_read(c, space, avail);
        if (n > 0) {
            net_decoder_commit(&c->dec, (size_t)n);
            c->st.bytes_in += (uint64_t)n;
            c->last_active = ev_now(loop);
            dispatch(c);
            /* Plaintext: a short read most likely drained the socket.
             * TLS: SSL_read returns a record at a time, so a short one says
             * nothing; but with read-ahead, nothing left inside OpenSSL
             * means its last read(2) ended on a record boundary, most
             * likely the socket's end.  Either way, stopping early only
             * costs a wakeup (epoll is level-triggered), while reading on
             * costs a read(2) that says EAGAIN per request. */
            if (c->ssl ? !SSL_has_pending(c->ssl) : (size_t)n < avail)
                break;
        } else if (n == 0) {
            /* Replies already queued still get their chance to leave. */
            out_write(c);
            shut(c, NET_CLOSE_EOF, 0);
        } else if (errno == EINTR) {
            continue;
        } else {
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                shut(c, NET_CLOSE_ERROR, -errno);
            break;
        }
    }
    tls_more_input(c);
    out_flush_now(c);
    stall_check(c);
    leave(c);
}

/* Reads the socket when the daemon wants requests (net_conn_set_reading)
 * and the output queue is below the mark (out_pressure). */
static void reading_apply(struct net_conn *c)
{
    bool on = c->user_reading && !c->out_paused;
    if (c->closed || c->reading == on)
        return;
    c->reading = on;
    stall_check(c); /* a paused reader's buffered bytes are our doing */
    if (!on) {
        ev_io_stop(c->loop, &c->rio);
        return;
    }
    if (c->flush_then_close)
        return;
    ev_io_start(c->loop, &c->rio);
    tls_more_input(c);
    if (net_decoder_buffered(&c->dec)) {
        c->dispatch_pending = true;
        if (!ev_is_active(&c->defer)) {
            ev_timer_set(&c->defer, 0., 0.);
            ev_timer_start(c->loop, &c->defer);
        }
    }
}

void net_conn_set_reading(struct net_conn *c, bool on)
{
    if (c->closed)
        return;
    c->user_reading = on;
    reading_apply(c);
}

static void defer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct net_conn *c = w->data;

    enter(c);
    if (c->flush_then_close && !c->closed)
        shut(c, NET_CLOSE_LOCAL, c->err); /* linger expired */
    if (c->closed) {
        /* shut() re-armed the timer if it ran just now; the callback below
         * is the one it was armed for. */
        ev_timer_stop(c->loop, &c->defer);
        if (!c->destroyed && c->ops.on_close)
            c->ops.on_close(c, c->reason, c->err, c->ud);
        c->destroyed = true;
    } else if (c->dispatch_pending) {
        dispatch(c);
        out_flush_now(c);
        stall_check(c);
    }
    leave(c);
}

/* ---- TLS ------------------------------------------------------------------ */

/* One log line per 10 s per thread (event loop) for failed handshakes and bad
 * records: a scanner hitting a TLS port must not flood the journal. */
static void tls_fail(struct net_conn *c, const char *what, int err)
{
    static _Thread_local struct net_ratelimit rl = {.interval = 10.0};
    char why[256];
    uint64_t more;
    long vr = c->ssl ? SSL_get_verify_result(c->ssl) : X509_V_OK;

    if (err == -ETIMEDOUT)
        snprintf(why, sizeof(why), "not completed within the frame timeout");
    else if (vr != X509_V_OK)
        snprintf(why, sizeof(why), "certificate refused: %s", X509_verify_cert_error_string(vr));
    else
        net_tls_error_string(why, sizeof(why));
    if (err == -EPROTO && vr != X509_V_OK)
        err = -EACCES;
    if (net_ratelimit_ok(&rl, ev_now(c->loop), &more))
        log_warn("TLS %s with %s failed: %s (%llu more TLS failures not logged)", what, c->peer, why,
                 (unsigned long long)more);
    ERR_clear_error();
    shut(c, NET_CLOSE_TLS, err);
}

/* A peer the current CRLs revoke: closed like a refused handshake. */
static void tls_revoked(struct net_conn *c, const char *when)
{
    static _Thread_local struct net_ratelimit rl = {.interval = 10.0};
    uint64_t more;
    if (net_ratelimit_ok(&rl, ev_now(c->loop), &more))
        log_notice("TLS: closing the %s connection with %s: its certificate is revoked by the reloaded CRL "
                   "(%llu more such closes not logged)", when, c->peer, (unsigned long long)more);
    shut(c, NET_CLOSE_TLS, -EACCES);
}

int net_tls_recheck_conns(struct net_tls *t)
{
    int n = 0;
    for (struct net_conn *c = *net_tls_conn_list(t), *next; c; c = next) {
        next = c->tls_next;
        if (!c->closed && !c->tls_handshaking && c->ssl && net_tls_ssl_revoked(t, c->ssl)) {
            tls_revoked(c, "established");
            n++;
        }
    }
    return n;
}

void net_tls_forget_conns(struct net_tls *t)
{
    struct net_conn **head = net_tls_conn_list(t);
    while (*head)
        tls_unlink(*head);
}

static void tls_handshake(struct net_conn *c)
{
    ERR_clear_error();
    errno = 0;
    int r = SSL_do_handshake(c->ssl);
    if (r == 1 && c->tls_owner && !net_tls_ssl_current(c->tls_owner, c->ssl) &&
        net_tls_ssl_revoked(c->tls_owner, c->ssl)) {
        /* begun before a reload whose CRL revokes this peer */
        tls_revoked(c, "handshake");
        return;
    }
    if (r == 1) {
        c->tls_handshaking = false;
        ev_io_stop(c->loop, &c->wio);
        ev_timer_stop(c->loop, &c->stall);
        c->tls_node_rc = net_tls_peer_node(c->ssl, &c->tls_node);
        c->last_active = ev_now(c->loop);
        out_flush_now(c); /* frames queued during the handshake */
        tls_more_input(c);
        if (c->ops.on_ready && !c->closed)
            c->ops.on_ready(c, c->ud);
        return;
    }
    switch (SSL_get_error(c->ssl, r)) {
    case SSL_ERROR_WANT_READ:
        ev_io_stop(c->loop, &c->wio);
        return;
    case SSL_ERROR_WANT_WRITE:
        ev_io_start(c->loop, &c->wio);
        return;
    case SSL_ERROR_SYSCALL:
        tls_fail(c, "handshake", errno ? -errno : -ECONNRESET);
        return;
    default:
        tls_fail(c, "handshake", -EPROTO);
        return;
    }
}

int net_conn_start_tls(struct net_conn *c, struct net_tls *t, enum net_tls_mode mode,
                       const char *expect_name)
{
    if (c->closed)
        return -EPIPE;
    c->ssl = net_tls_ssl_new(t, c->fd, mode, expect_name);
    if (!c->ssl) {
        ERR_clear_error();
        shut(c, NET_CLOSE_NOMEM, -ENOMEM);
        return -ENOMEM;
    }
    c->tls = true;
    c->tls_handshaking = true;
    c->tls_node_rc = -EACCES;
    struct net_conn **head = net_tls_conn_list(t);
    c->tls_owner = t;
    c->tls_next = *head;
    c->tls_pprev = head;
    if (*head)
        (*head)->tls_pprev = &c->tls_next;
    *head = c;
    /* The stall timer doubles as the handshake deadline: a peer that
     * connects and then trickles (or sends nothing) is cut off like a
     * half-sent frame, and never blocks the loop meanwhile. */
    uint32_t ms = c->lim.frame_timeout_ms ? c->lim.frame_timeout_ms : TLS_HANDSHAKE_DEFAULT_MS;
    ev_timer_stop(c->loop, &c->stall);
    ev_timer_set(&c->stall, ms / 1000.0, 0.);
    ev_timer_start(c->loop, &c->stall);
    /* The client speaks first: its ClientHello goes out once the socket
     * says writable (at once, normally), from the loop. */
    if (mode == NET_TLS_CLIENT)
        ev_io_start(c->loop, &c->wio);
    return 0;
}

bool net_conn_is_tls(const struct net_conn *c)
{
    return c->tls;
}

int net_conn_tls_peer_node(const struct net_conn *c, uint32_t *id)
{
    if (!c->tls)
        return -ENOENT;
    if (c->tls_handshaking)
        return -EACCES;
    if (c->tls_node_rc == 0)
        *id = c->tls_node;
    return c->tls_node_rc;
}

int net_conn_tls_peer_names(const struct net_conn *c, int (*fn)(const char *name, size_t len, void *arg),
                            void *arg)
{
    if (!c->tls)
        return -ENOENT;
    if (c->tls_handshaking || !c->ssl)
        return -EACCES;
    return net_tls_peer_names(c->ssl, fn, arg);
}

/* ---- creation and accessors --------------------------------------------- */

struct net_conn *net_conn_new(struct ev_loop *loop, int fd, const struct net_conn_limits *limits,
                              const struct net_conn_ops *ops, void *ud)
{
    struct net_conn *c = calloc(1, sizeof(*c));
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    struct addr a;

    if (!c || net_socket_prepare(fd) < 0) {
        free(c);
        close(fd);
        return NULL;
    }
    c->loop = loop;
    c->fd = fd;
    c->lim = *limits;
    c->ops = *ops;
    c->ud = ud;
    c->reading = c->user_reading = true;
    net_decoder_init(&c->dec, limits->max_frame);
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0 &&
        addr_from_sockaddr(&a, (struct sockaddr *)&ss, sl) == 0)
        addr_format(&a, c->peer, sizeof(c->peer));
    else
        strcpy(c->peer, "?");
    ev_io_init(&c->rio, rio_cb, fd, EV_READ);
    ev_io_init(&c->wio, wio_cb, fd, EV_WRITE);
    ev_timer_init(&c->defer, defer_cb, 0., 0.);
    ev_timer_init(&c->stall, stall_cb, 0., 0.);
    ev_timer_init(&c->ostall, ostall_cb, 0., 0.);
    c->rio.data = c->wio.data = c->defer.data = c->stall.data = c->ostall.data = c;
    c->last_active = ev_now(loop);
    ev_io_start(loop, &c->rio);
    return c;
}

bool net_conn_is_open(const struct net_conn *c)
{
    return !c->closed && !c->flush_then_close;
}

void net_conn_log_client_close(struct net_conn *c, enum net_close_reason reason, int err)
{
    static _Thread_local struct net_ratelimit rl = {.interval = 10.0};
    uint64_t more;
    if (reason == NET_CLOSE_EOF || reason == NET_CLOSE_LOCAL ||
        !net_ratelimit_ok(&rl, ev_now(c->loop), &more))
        return;
    log_info("client %s closed: %s%s%s (%llu more such closes not logged)", net_conn_peer_name(c),
             net_close_reason_str(reason), err ? ": " : "", err ? strerror(-err) : "",
             (unsigned long long)more);
}

void net_conn_request_begin(struct net_conn *c)
{
    if (!c)
        return;
    if (++c->in_flight == c->lim.max_in_flight)
        net_conn_set_reading(c, false);
}

void net_conn_request_end(struct net_conn *c)
{
    if (!c || c->in_flight == 0)
        return;
    c->in_flight--;
    if (c->lim.max_in_flight && c->in_flight == c->lim.max_in_flight / 2)
        net_conn_set_reading(c, true);
}

double net_conn_idle_since(const struct net_conn *c)
{
    if (c->closed || c->pending || c->in_flight || net_decoder_buffered(&c->dec))
        return -1.0;
    return c->last_active;
}

size_t net_conn_pending_output(const struct net_conn *c)
{
    return c->pending;
}

int net_conn_fd(const struct net_conn *c)
{
    return c->fd;
}

void *net_conn_userdata(const struct net_conn *c)
{
    return c->ud;
}

void net_conn_set_userdata(struct net_conn *c, void *ud)
{
    c->ud = ud;
}

const char *net_conn_peer_name(const struct net_conn *c)
{
    return c->peer;
}

void net_conn_get_stats(const struct net_conn *c, struct net_conn_stats *st)
{
    *st = c->st;
}
