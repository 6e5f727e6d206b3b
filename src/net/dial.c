/* dial.c - the reconnecting outbound link: a small state machine (waiting
 * -> connecting -> up -> waiting) on one ev_timer and one ev_io, wrapping a
 * net_conn while up.  Backoff resets only once the far end has sent a frame,
 * so a peer that accepts and drops at once does not get hammered. */
#include "net/dial.h"
#include "net/tls.h"

#include "net/net_int.h"

#include <errno.h>
#include <ev.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* DIAL_HANDSHAKE: connected, TLS handshake running on conn; not up yet,
 * so nothing is sent and a failure is a failed attempt, not a lost link. */
enum dial_state { DIAL_WAITING, DIAL_CONNECTING, DIAL_HANDSHAKE, DIAL_UP };

struct net_dial {
    struct ev_loop *loop;
    struct addr to;
    struct net_dial_opts opts;
    struct net_dial_ops ops;
    void *ud;
    enum dial_state state;
    int fd;               /* DIAL_CONNECTING */
    struct net_conn *conn; /* DIAL_HANDSHAKE, DIAL_UP */
    ev_io wio;
    ev_timer timer;       /* backoff wait, or connect timeout */
    uint32_t failures;
    bool heard;           /* the current link delivered a frame */
    unsigned depth;       /* our callbacks on the stack */
    bool freed;
    uint64_t rng;
};

static const struct net_conn_ops dial_conn_ops;

/* ---- lifetime ----------------------------------------------------------- */

static void enter(struct net_dial *d)
{
    d->depth++;
}

static bool leave(struct net_dial *d)
{
    if (--d->depth == 0 && d->freed) {
        free(d);
        return true;
    }
    return false;
}

static void abort_connect(struct net_dial *d)
{
    if (d->state != DIAL_CONNECTING)
        return;
    ev_io_stop(d->loop, &d->wio);
    close(d->fd);
    d->fd = -1;
    d->state = DIAL_WAITING;
}

void net_dial_free(struct net_dial *d)
{
    if (!d || d->freed)
        return;
    ev_timer_stop(d->loop, &d->timer);
    abort_connect(d);
    if (d->conn)
        net_conn_destroy(d->conn);
    d->conn = NULL;
    d->freed = true;
    if (d->depth == 0)
        free(d);
}

/* ---- backoff ------------------------------------------------------------ */

static uint32_t next_delay_ms(struct net_dial *d)
{
    uint64_t base = d->opts.backoff_min_ms ? d->opts.backoff_min_ms : 1;
    uint32_t shift = d->failures < 31 ? d->failures : 31;

    base <<= shift;
    if (base > d->opts.backoff_max_ms)
        base = d->opts.backoff_max_ms > 0 ? d->opts.backoff_max_ms : 1;
    /* "Equal jitter": at least half the base, so retries never bunch at 0,
     * spread over the other half so a restarted peer is not hit by every
     * node in the same millisecond. */
    d->rng ^= d->rng << 13;
    d->rng ^= d->rng >> 7;
    d->rng ^= d->rng << 17;
    return (uint32_t)(base / 2 + d->rng % (base - base / 2 + 1));
}

static void schedule_retry(struct net_dial *d, int err)
{
    uint32_t ms = next_delay_ms(d);

    if (d->failures < UINT32_MAX)
        d->failures++;
    d->state = DIAL_WAITING;
    ev_timer_stop(d->loop, &d->timer);
    ev_timer_set(&d->timer, ms / 1000.0, 0.);
    ev_timer_start(d->loop, &d->timer);
    if (err && d->ops.on_fail)
        d->ops.on_fail(d, err, ms, d->ud);
}

/* ---- connecting --------------------------------------------------------- */

/* TCP lets a socket dialing a port in the ephemeral range on its own host
 * be given that very port and connect to itself (simultaneous open) when
 * nothing listens there.  The "peer" then echoes our own frames, and the
 * socket holds the port the real server needs. */
bool net_fd_connected_to_itself(int fd)
{
    struct sockaddr_storage local, peer;
    socklen_t llen = sizeof(local), plen = sizeof(peer);
    struct addr a, b;
    if (getsockname(fd, (struct sockaddr *)&local, &llen) < 0 ||
        getpeername(fd, (struct sockaddr *)&peer, &plen) < 0)
        return false;
    if (addr_from_sockaddr(&a, (struct sockaddr *)&local, llen) < 0 ||
        addr_from_sockaddr(&b, (struct sockaddr *)&peer, plen) < 0)
        return false;
    return addr_family(&a) != AF_UNIX && addr_equal(&a, &b);
}

static void become_up(struct net_dial *d, int fd)
{
    if (net_fd_connected_to_itself(fd)) {
        /* Nobody listens there: the same as a refused connect. */
        close(fd);
        schedule_retry(d, -ECONNREFUSED);
        return;
    }
    ev_timer_stop(d->loop, &d->timer);
    d->state = DIAL_UP;
    d->heard = false;
    d->conn = net_conn_new(d->loop, fd, &d->opts.limits, &dial_conn_ops, d);
    bool tls = d->opts.tls && addr_family(&d->to) != AF_UNIX;
    if (d->conn && tls &&
        net_conn_start_tls(d->conn, d->opts.tls, NET_TLS_CLIENT,
                           d->opts.tls_expect_name[0] ? d->opts.tls_expect_name : NULL) < 0) {
        net_conn_destroy(d->conn);
        d->conn = NULL;
    }
    if (!d->conn) {
        schedule_retry(d, -ENOMEM);
        return;
    }
    if (tls) {
        /* on_up once the peer proved who it is (conn_ready); the
         * handshake's own deadline is frame_timeout_ms (conn.c). */
        d->state = DIAL_HANDSHAKE;
        return;
    }
    d->ops.on_up(d, d->ud);
}

static void start_connect(struct net_dial *d)
{
    int fd = socket(addr_family(&d->to), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0) {
        schedule_retry(d, -errno);
        return;
    }
    if (connect(fd, (const struct sockaddr *)&d->to.ss, d->to.len) == 0) {
        become_up(d, fd);
        return;
    }
    if (errno != EINPROGRESS) {
        /* A unix listener with a full backlog says EAGAIN: also a retry. */
        int err = -errno;
        close(fd);
        schedule_retry(d, err);
        return;
    }
    d->fd = fd;
    d->state = DIAL_CONNECTING;
    ev_io_set(&d->wio, fd, EV_WRITE);
    ev_io_start(d->loop, &d->wio);
    ev_timer_stop(d->loop, &d->timer);
    ev_timer_set(&d->timer, d->opts.connect_timeout_ms / 1000.0, 0.);
    ev_timer_start(d->loop, &d->timer);
}

static void wio_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct net_dial *d = w->data;
    int err = 0, fd = d->fd;
    socklen_t len = sizeof(err);

    enter(d);
    ev_io_stop(loop, &d->wio);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    d->fd = -1;
    if (err) {
        close(fd);
        schedule_retry(d, -err);
    } else {
        become_up(d, fd);
    }
    leave(d);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct net_dial *d = w->data;

    enter(d);
    if (d->state == DIAL_CONNECTING) {
        abort_connect(d);
        schedule_retry(d, -ETIMEDOUT);
    } else if (d->state == DIAL_WAITING) {
        start_connect(d);
    }
    leave(d);
}

/* ---- the connection while up -------------------------------------------- */

static void conn_frame(struct net_conn *c, const uint8_t *p, size_t len, void *ud)
{
    struct net_dial *d = ud;

    enter(d);
    if (!d->heard) {
        d->heard = true;
        d->failures = 0;
    }
    d->ops.on_frame(d, p, len, d->ud);
    leave(d);
}

static void conn_ready(struct net_conn *c, void *ud)
{
    struct net_dial *d = ud;

    enter(d);
    d->state = DIAL_UP;
    d->ops.on_up(d, d->ud);
    leave(d);
}

static void conn_close(struct net_conn *c, enum net_close_reason reason, int err, void *ud)
{
    struct net_dial *d = ud;

    enter(d);
    d->conn = NULL;
    if (d->state == DIAL_HANDSHAKE) {
        /* never announced: a failed attempt, reported like a refused connect */
        schedule_retry(d, err ? err : -ECONNRESET);
        leave(d);
        return;
    }
    /* Retry first so that on_down sees a consistent "reconnect pending". */
    schedule_retry(d, 0);
    d->ops.on_down(d, reason, err, d->ud);
    leave(d);
}

static const struct net_conn_ops dial_conn_ops = {
    .on_frame = conn_frame,
    .on_close = conn_close,
    .on_ready = conn_ready,
};

/* ---- API ---------------------------------------------------------------- */

struct net_dial *net_dial_new(struct ev_loop *loop, const struct addr *to, const struct net_dial_opts *opts,
                              const struct net_dial_ops *ops, void *ud)
{
    struct net_dial *d = calloc(1, sizeof(*d));
    struct timespec ts;

    if (!d)
        return NULL;
    d->loop = loop;
    d->to = *to;
    d->opts = *opts;
    d->ops = *ops;
    d->ud = ud;
    d->fd = -1;
    d->state = DIAL_WAITING;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    d->rng = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)(uintptr_t)d ^ (uint64_t)ts.tv_sec;
    if (!d->rng)
        d->rng = 0x9e3779b97f4a7c15ull;
    ev_io_init(&d->wio, wio_cb, -1, EV_WRITE);
    ev_timer_init(&d->timer, timer_cb, 0., 0.);
    d->wio.data = d->timer.data = d;
    /* The first attempt goes through the timer so that no callback runs
     * inside net_dial_new. */
    ev_timer_start(loop, &d->timer);
    return d;
}

int net_dial_send(struct net_dial *d, const void *payload, size_t len)
{
    return d->state == DIAL_UP && d->conn ? net_conn_send(d->conn, payload, len) : -ENOTCONN;
}

int net_dial_sendv(struct net_dial *d, const struct iovec *iov, size_t n)
{
    return d->state == DIAL_UP && d->conn ? net_conn_sendv(d->conn, iov, n) : -ENOTCONN;
}

int net_dial_send_msg(struct net_dial *d, const struct ProtobufCMessage *msg)
{
    return d->state == DIAL_UP && d->conn ? net_conn_send_msg(d->conn, msg) : -ENOTCONN;
}

void net_dial_reset(struct net_dial *d, int err)
{
    if ((d->state == DIAL_UP || d->state == DIAL_HANDSHAKE) && d->conn) {
        net_conn_close(d->conn, err); /* conn_close() schedules the retry */
    } else if (d->state == DIAL_CONNECTING) {
        abort_connect(d);
        schedule_retry(d, 0);
    }
}

void net_dial_retry_now(struct net_dial *d)
{
    if (d->state != DIAL_WAITING)
        return;
    ev_timer_stop(d->loop, &d->timer);
    ev_timer_set(&d->timer, 0., 0.);
    ev_timer_start(d->loop, &d->timer);
}

bool net_dial_is_up(const struct net_dial *d)
{
    return d->state == DIAL_UP && d->conn && net_conn_is_open(d->conn);
}

struct net_conn *net_dial_conn(const struct net_dial *d)
{
    return d->state == DIAL_UP ? d->conn : NULL;
}

const struct addr *net_dial_addr(const struct net_dial *d)
{
    return &d->to;
}

uint32_t net_dial_failures(const struct net_dial *d)
{
    return d->failures;
}

void *net_dial_userdata(const struct net_dial *d)
{
    return d->ud;
}
