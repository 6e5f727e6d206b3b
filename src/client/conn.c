/* conn.c - a non-blocking framed connection to a raftkv server.  The
 * blocking client and the benchmark both sit on it, so the wire handling
 * exists once. */
#include "client/conn.h"

#include "net/tls.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
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
    SSL_free(cc->ssl);
    cc->ssl = NULL;
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

/* The TLS handshake on a connected socket, waiting with poll() at most
 * timeout_ms in all; 0 with cc->ssl set, or -errno with err. */
static int tls_handshake(struct client_conn *cc, int fd, int timeout_ms, char *err, size_t errlen)
{
    uint64_t deadline = client_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    SSL *ssl = net_tls_ssl_new(cc->tls, fd, NET_TLS_CLIENT, NULL);
    if (!ssl) {
        snprintf(err, errlen, "%s: TLS: out of memory", cc->name);
        return -ENOMEM;
    }
    for (;;) {
        ERR_clear_error();
        errno = 0;
        int r = SSL_connect(ssl);
        if (r == 1) {
            cc->ssl = ssl;
            return 0;
        }
        int e = SSL_get_error(ssl, r);
        uint64_t now = client_now_ns();
        if ((e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) && now < deadline) {
            struct pollfd p = {.fd = fd, .events = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT};
            if (poll(&p, 1, (int)((deadline - now) / 1000000ull) + 1) >= 0 || errno == EINTR)
                continue;
        }
        int rv = e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? -ETIMEDOUT : -EPROTO;
        long vr = SSL_get_verify_result(ssl);
        char why[256];
        if (rv == -ETIMEDOUT)
            snprintf(why, sizeof(why), "no answer in time");
        else if (vr != X509_V_OK)
            snprintf(why, sizeof(why), "server certificate refused: %s", X509_verify_cert_error_string(vr));
        else if (e == SSL_ERROR_SYSCALL || !ERR_peek_last_error())
            snprintf(why, sizeof(why), "connection closed during the handshake (is it a TLS port? "
                     "is our certificate accepted?)");
        else
            ERR_error_string_n(ERR_peek_last_error(), why, sizeof(why));
        if (rv == -EPROTO && vr != X509_V_OK)
            rv = -EACCES;
        ERR_clear_error();
        SSL_free(ssl);
        snprintf(err, errlen, "TLS handshake with %s failed: %s", cc->name, why);
        return rv;
    }
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
        if (cc->tls && (r = tls_handshake(cc, fd, timeout_ms, err, errlen)) < 0) {
            close(fd);
            return r;
        }
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

/* SSL_write/SSL_read with send/recv's outcome: bytes, 0 at EOF, -1 with
 * errno (EAGAIN: wait for the socket). */
static ssize_t tls_io(struct client_conn *cc, void *buf, size_t len, bool out)
{
    int n = (int)(len < INT_MAX ? len : INT_MAX);
    net_tls_err_reset();
    errno = 0;
    n = out ? SSL_write(cc->ssl, buf, n) : SSL_read(cc->ssl, buf, n);
    if (n > 0)
        return n;
    switch (SSL_get_error(cc->ssl, n)) {
    case SSL_ERROR_ZERO_RETURN:
        if (out) { /* send() never says 0: the caller would spin */
            errno = ECONNRESET;
            return -1;
        }
        return 0;
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_SYSCALL:
        if (!errno && !out)
            return 0; /* the server just closed */
        if (!errno)
            errno = ECONNRESET;
        return -1;
    default:
        ERR_clear_error();
        errno = EPROTO;
        return -1;
    }
}

int client_conn_flush(struct client_conn *cc)
{
    while (cc->out_off < cc->out_len) {
        ssize_t n = cc->ssl ? tls_io(cc, cc->out + cc->out_off, cc->out_len - cc->out_off, true)
                            : send(cc->fd, cc->out + cc->out_off, cc->out_len - cc->out_off, MSG_NOSIGNAL);
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
    bool got = false;
    if (r < 0)
        return r;
    for (;;) {
        ssize_t n = cc->ssl ? tls_io(cc, space, avail, false) : recv(cc->fd, space, avail, 0);
        if (n > 0) {
            net_decoder_commit(&cc->dec, (size_t)n);
            got = true;
            /* Bytes OpenSSL still holds -- decrypted, or read ahead and
             * not yet decrypted -- wake no poll(). */
            if (cc->ssl && SSL_has_pending(cc->ssl) &&
                (r = net_decoder_space(&cc->dec, 0, &space, &avail)) == 0)
                continue;
            return r;
        }
        if (n == 0)
            return -ECONNRESET;
        if (errno == EINTR)
            continue;
        if (got && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0; /* read ahead held only part of a record */
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
