/* http.c - /metrics, /healthz and /readyz over libmicrohttpd (http.h). */
#include "metrics/http.h"

#include "common/addr.h"
#include "common/log.h"

#include <errno.h>
#include <microhttpd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct metrics_http {
    struct MHD_Daemon *d;
    int fd;
    uint16_t port;
    struct metrics_http_config cfg;
};

/* Scrapers and probes are few; a handful of slots is plenty and caps what a
 * flood of connections can cost. */
#define HTTP_MAX_CONNS 32
#define HTTP_TIMEOUT_S 10

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *type,
                             char *body, size_t len, enum MHD_ResponseMemoryMode mode)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, mode);
    if (!r) {
        if (mode == MHD_RESPMEM_MUST_FREE)
            free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result check(struct MHD_Connection *c, metrics_check_fn fn, void *arg,
                             const char *ok)
{
    char reason[256] = "";
    char body[300];
    int rv = fn ? fn(arg, reason, sizeof(reason)) : 0;
    int n = snprintf(body, sizeof(body), "%s\n", rv == 0 ? ok : reason);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof(body))
        n = sizeof(body) - 1;
    return reply(c, rv == 0 ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
                 "text/plain; charset=utf-8", body, (size_t)n, MHD_RESPMEM_MUST_COPY);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_len, void **con_cls)
{
    (void)version, (void)upload;
    struct metrics_http *h = cls;
    /* Nothing we serve takes a body: refuse one rather than buffer it. */
    if (*upload_len)
        return MHD_NO;
    (void)con_cls;
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
        static char msg[] = "only GET and HEAD\n";
        return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", msg,
                     sizeof(msg) - 1, MHD_RESPMEM_PERSISTENT);
    }
    if (strcmp(url, "/metrics") == 0) {
        char *body;
        size_t len;
        if (metrics_render_prometheus(h->cfg.reg, &body, &len) < 0) {
            static char msg[] = "out of memory\n";
            return reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "text/plain; charset=utf-8", msg,
                         sizeof(msg) - 1, MHD_RESPMEM_PERSISTENT);
        }
        return reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", body, len,
                     MHD_RESPMEM_MUST_FREE);
    }
    if (strcmp(url, "/healthz") == 0)
        return check(c, h->cfg.healthz, h->cfg.arg, "ok");
    if (strcmp(url, "/readyz") == 0)
        return check(c, h->cfg.readyz, h->cfg.arg, "ready");
    static char msg[] = "not found: try /metrics, /healthz or /readyz\n";
    return reply(c, MHD_HTTP_NOT_FOUND, "text/plain; charset=utf-8", msg, sizeof(msg) - 1,
                 MHD_RESPMEM_PERSISTENT);
}

/* We bind the socket ourselves: errors then carry errno, and port 0 tells
 * us which port it got. */
static int bind_listen(const char *address, int *fdp, uint16_t *port, char *err, size_t errlen)
{
    struct addr a;
    int rv = addr_resolve(address, &a);
    if (rv == 0 && addr_family(&a) == AF_UNIX)
        rv = -EINVAL;
    if (rv < 0) {
        snprintf(err, errlen, "metrics address %s: %s", address,
                 rv == -EINVAL ? "expected host:port" : strerror(-rv));
        return rv;
    }
    int fd = socket(addr_family(&a), SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        rv = -errno;
        snprintf(err, errlen, "metrics socket: %s", strerror(errno));
        return rv;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&a.ss, a.len) < 0 || listen(fd, 64) < 0) {
        rv = -errno;
        snprintf(err, errlen, "cannot serve metrics on %s: %s", address, strerror(errno));
        close(fd);
        return rv;
    }
    struct addr got;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0 &&
        addr_from_sockaddr(&got, (struct sockaddr *)&ss, len) == 0)
        *port = addr_port(&got);
    *fdp = fd;
    return 0;
}

int metrics_http_start(struct metrics_http **out, const struct metrics_http_config *cfg, char *err,
                       size_t errlen)
{
    struct metrics_http *h = calloc(1, sizeof(*h));
    if (!h) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    h->cfg = *cfg;
    int rv = bind_listen(cfg->address, &h->fd, &h->port, err, errlen);
    if (rv < 0) {
        free(h);
        return rv;
    }
    /* The server's thread must not take the daemon's signals: SIGTERM is
     * the event loop's to handle.  Threads inherit the creator's mask. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    h->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, 0, NULL, NULL,
                            on_request, h, MHD_OPTION_LISTEN_SOCKET, h->fd,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)HTTP_MAX_CONNS,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTP_TIMEOUT_S,
                            MHD_OPTION_END);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!h->d) {
        snprintf(err, errlen, "cannot start the metrics server on %s", cfg->address);
        close(h->fd);
        free(h);
        return -EIO;
    }
    log_info("metrics: serving /metrics, /healthz and /readyz on %s (port %u)", cfg->address,
             h->port);
    *out = h;
    return 0;
}

uint16_t metrics_http_port(const struct metrics_http *h)
{
    return h->port;
}

void metrics_http_stop(struct metrics_http *h)
{
    if (!h)
        return;
    MHD_stop_daemon(h->d);
    close(h->fd);
    free(h);
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void metrics_heartbeat_beat(struct metrics_heartbeat *hb)
{
    atomic_store_explicit(&hb->mono_ns, mono_ns(), memory_order_relaxed);
}

int metrics_heartbeat_check(const struct metrics_heartbeat *hb, double max_s, char *reason,
                            size_t len)
{
    uint64_t last = atomic_load_explicit(&hb->mono_ns, memory_order_relaxed);
    double age = (double)(mono_ns() - last) / 1e9;
    if (last && age <= max_s)
        return 0;
    if (!last)
        snprintf(reason, len, "the event loop has not started");
    else
        snprintf(reason, len, "the event loop has not turned for %.1f s (limit %.1f s)", age,
                 max_s);
    return -1;
}
