/* conn.h - one framed protobuf connection to a raftkv server (node or
 * proxy), non-blocking underneath so that one thread can drive many of them
 * (raftkvctl bench) while client.c builds the blocking API on top.  Requests
 * are queued as frames into an output buffer and written as the socket takes
 * them; responses are decoded from the incoming stream in arrival order. */
#ifndef RAFTKV_CLIENT_CONN_H
#define RAFTKV_CLIENT_CONN_H

#include "common/addr.h"
#include "net/framing.h"
#include "raftkv.pb-c.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Responses may carry many keys (LIST) or large values, so the client's own
 * limit is more generous than the server's default max_frame_bytes. */
#define CLIENT_DEFAULT_MAX_FRAME (64u * 1024u * 1024u)

struct net_tls;
struct ssl_st;

struct client_conn {
    int fd;                  /* -1 when closed */
    /* TLS on TCP endpoints when tls is set (net/tls.h, NET_TLS_CLIENT: the
     * server's certificate must come from its CA); unix stays plaintext.
     * Set after client_conn_init; open/close keep it. */
    struct net_tls *tls;
    struct ssl_st *ssl;      /* the open connection's, or NULL */
    struct net_decoder dec;
    uint8_t *out;
    size_t out_off, out_len, out_cap; /* unsent bytes are out[out_off..out_len) */
    size_t max_frame;
    char name[ADDR_STRLEN];  /* the endpoint as given, for messages */
};

/* Monotonic clock in nanoseconds. */
uint64_t client_now_ns(void);

void client_conn_init(struct client_conn *cc, size_t max_frame);

/* Connects to "unix:/path", "/path" or "host:port" (names are resolved,
 * which may block) within timeout_ms, TLS handshake included.  Errors:
 * -errno of the socket call, -ETIMEDOUT, -EINVAL for an unparsable
 * endpoint, -EPROTO/-EACCES for a TLS handshake refused; err gets one line. */
int client_conn_open(struct client_conn *cc, const char *endpoint, int timeout_ms,
                     char *err, size_t errlen);
void client_conn_close(struct client_conn *cc);
bool client_conn_is_open(const struct client_conn *cc);

/* Appends req as one frame to the output buffer.  -EMSGSIZE, -ENOMEM. */
int client_conn_queue(struct client_conn *cc, const Raftkv__Request *req);
bool client_conn_want_write(const struct client_conn *cc);

/* Writes what the socket takes now: 0 when everything queued is sent,
 * -EAGAIN when some is left, another -errno when the connection broke. */
int client_conn_flush(struct client_conn *cc);

/* Reads what is available (under TLS, everything OpenSSL already holds
 * too, so that poll() on fd is a true guide): 0 after reading something,
 * -EAGAIN when nothing was there, -ECONNRESET at end of stream, another
 * -errno on failure. */
int client_conn_fill(struct client_conn *cc);

/* The next complete response: 1 with *resp (free with
 * raftkv__response__free_unpacked), 0 when more bytes are needed, -EPROTO
 * for a frame that is not a Response, -EMSGSIZE for an oversized frame. */
int client_conn_next(struct client_conn *cc, Raftkv__Response **resp);

#endif
