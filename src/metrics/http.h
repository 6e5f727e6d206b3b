/* http.h - the metrics and health endpoint of raftkv-node and raftkv-proxy:
 * libmicrohttpd serving on its own thread, so a scrape never runs on (or
 * waits for) the event loop.  It reads only the registry's atomics and
 * whatever the health callbacks read, which must be atomics too.
 *
 *   GET /metrics   Prometheus text format 0.0.4
 *   GET /healthz   200 "ok" while the process's loop turns, else 503
 *   GET /readyz    200 "ready" when the callback says so, else 503 + reason
 */
#ifndef RAFTKV_METRICS_HTTP_H
#define RAFTKV_METRICS_HTTP_H

#include "metrics/metrics.h"

#include <stddef.h>
#include <stdint.h>

/* Called on the HTTP thread.  0: healthy/ready; otherwise -1 with a
 * one-line reason in reason. */
typedef int (*metrics_check_fn)(void *arg, char *reason, size_t len);

struct metrics_http_config {
    const char *address;             /* "host:port"; port 0 = ephemeral */
    const struct metrics_registry *reg;
    metrics_check_fn healthz, readyz;
    void *arg;
};

struct metrics_http;

/* Bind and start serving (and log where).  0, or -errno with one line in
 * err. */
int metrics_http_start(struct metrics_http **out, const struct metrics_http_config *cfg, char *err,
                       size_t errlen);
/* The bound port (useful with port 0). */
uint16_t metrics_http_port(const struct metrics_http *h);
/* Stop the thread and close the socket; NULL is fine. */
void metrics_http_stop(struct metrics_http *h);

/* Loop heartbeat for /healthz: the owning loop stamps it on every
 * iteration, the HTTP thread compares it with the clock. */
struct metrics_heartbeat {
    _Atomic uint64_t mono_ns;
};
void metrics_heartbeat_beat(struct metrics_heartbeat *hb);
/* 0 when the last beat is at most max_s old, else -1 and a reason. */
int metrics_heartbeat_check(const struct metrics_heartbeat *hb, double max_s, char *reason,
                            size_t len);

#endif
