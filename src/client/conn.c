/* conn.c - a non-blocking framed connection to a raftkv server.  The
 * blocking client and the benchmark both sit on it, so the wire handling
 * exists once. */
#include "client/conn.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

uint64_t client_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void client_conn_init(struct client_conn *cc, size_t max_frame)
{
    memset(cc, 0, sizeof(*cc));
    cc->fd = -1;
    cc->max_frame = max_frame ? max_frame : CLIENT_DEFAULT_MAX_FRAME;
    net_decoder_init(&cc->dec, cc->max_frame);
}

bool client_conn_is_open(const struct client_conn *cc)
{
    return cc->fd >= 0;
}

void client_conn_close(struct client_conn *cc)
{
    if (cc->fd >= 0)
        close(cc->fd);
    cc->fd = -1;
    net_decoder_free(&cc->dec);
    free(cc->out);
    cc->out = NULL;
    cc->out_off = cc->out_len = cc->out_cap = 0;
}

/* Waits for the non-blocking connect to finish; 0 or -errno. */
static int wait_connected(int fd, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int r;
    do
        r = poll(&p, 1, timeout_ms);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        return -errno;
    if (r == 0)
        return -ETIMEDOUT;
    int soerr = 0;
    socklen_t sl = sizeof(soerr);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
        return -errno;
    return -soerr;
}

int client_conn_open(struct client_conn *cc, const char *endpoint, int timeout_ms,
                     char *err, size_t errlen)
{
    struct addr a;
    client_conn_close(cc);
    snprintf(cc->name, sizeof(cc->name), "%s", endpoint);
    int r = addr_resolve(endpoint, &a);
    if (r < 0) {
        snprintf(err, errlen, "%s: %s", endpoint,
                 r == -EINVAL ? "not an address (expected host:port or unix:/path)"
                 : r == -ENOENT ? "host name does not resolve" : strerror(-r));
        return r == -ENOENT ? -EHOSTUNREACH : r;
    }
    int fd = socket(a.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        r = -errno;
        snprintf(err, errlen, "%s: socket: %s", endpoint, strerror(-r));
        return r;
    }
    r = connect(fd, (const struct sockaddr *)&a.ss, a.len) == 0 ? 0 : -errno;
    if (r == -EINPROGRESS || r == -EAGAIN)
        r = wait_connected(fd, timeout_ms);
    if (r < 0) {
        close(fd);
        snprintf(err, errlen, "cannot connect to %s: %s", endpoint,
                 r == -ETIMEDOUT ? "no answer in time" : strerror(-r));
        return r;
    }
    if (a.ss.ss_family != AF_UNIX) {
        /* Requests are small and latency-bound: never wait for Nagle. */
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    cc->fd = fd;
    net_decoder_init(&cc->dec, cc->max_frame);
    return 0;
}

int client_conn_queue(struct client_conn *cc, const Raftkv__Request *req)
{
    size_t len = raftkv__request__get_packed_size(req);
    if (len > cc->max_frame)
        return -EMSGSIZE;
    if (cc->out_off == cc->out_len)
        cc->out_off = cc->out_len = 0;
    size_t need = cc->out_len + NET_FRAME_HDR + len;
    if (need > cc->out_cap) {
        size_t cap = cc->out_cap ? cc->out_cap : 4096;
        while (cap < need)
            cap *= 2;
        uint8_t *p = realloc(cc->out, cap);
        if (!p)
            return -ENOMEM;
        cc->out = p;
        cc->out_cap = cap;
    }
    net_frame_put_header(cc->out + cc->out_len, (uint32_t)len);
    raftkv__request__pack(req, cc->out + cc->out_len + NET_FRAME_HDR);
    cc->out_len = need;
    return 0;
}

bool client_conn_want_write(const struct client_conn *cc)
{
    return cc->out_off < cc->out_len;
}

int client_conn_flush(struct client_conn *cc)
{
    while (cc->out_off < cc->out_len) {
        ssize_t n = send(cc->fd, cc->out + cc->out_off, cc->out_len - cc->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EWOULDBLOCK ? -EAGAIN : -errno;
        }
        cc->out_off += (size_t)n;
    }
    cc->out_off = cc->out_len = 0;
    /* A large LIST or value must not pin its buffer for the connection's life. */
    if (cc->out_cap > 1024 * 1024) {
        free(cc->out);
        cc->out = NULL;
        cc->out_cap = 0;
    }
    return 0;
}

int client_conn_fill(struct client_conn *cc)
{
    uint8_t *space;
    size_t avail;
    int r = net_decoder_space(&cc->dec, 0, &space, &avail);
    if (r < 0)
        return r;
    for (;;) {
        ssize_t n = recv(cc->fd, space, avail, 0);
        if (n > 0) {
            net_decoder_commit(&cc->dec, (size_t)n);
            return 0;
        }
        if (n == 0)
            return -ECONNRESET;
        if (errno == EINTR)
            continue;
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
}

int client_conn_next(struct client_conn *cc, Raftkv__Response **resp)
{
    const uint8_t *payload;
    size_t len;
    int r = net_decoder_next(&cc->dec, &payload, &len);
    if (r <= 0)
        return r;
    *resp = raftkv__response__unpack(NULL, len, payload);
    return *resp ? 1 : -EPROTO;
}
