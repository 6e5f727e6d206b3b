/* requests.h - client requests counted by op and status, the same way on
 * the node (raftkv_requests_total) and the proxy (raftkv_proxy_...): one
 * counter and one latency histogram per (op, status) pair, shown once used. */
#ifndef RAFTKV_METRICS_REQUESTS_H
#define RAFTKV_METRICS_REQUESTS_H

#include "metrics/metrics.h"
#include "raftkv.pb-c.h"

enum metrics_op {
    METRICS_OP_GET, METRICS_OP_LIST, METRICS_OP_SET, METRICS_OP_DEL, METRICS_OP_CAS,
    METRICS_OP_STATUS, METRICS_OP_TRANSFER, METRICS_OP_WATCH, METRICS_OP_MEMBER,
    METRICS_OP_METRICS, METRICS_OP_OTHER, METRICS_OP_COUNT
};
/* Status codes beyond the .proto's first ones share the last slot ("other"). */
#define METRICS_STATUS_COUNT 13

struct metrics_requests {
    struct metrics_counter *total[METRICS_OP_COUNT][METRICS_STATUS_COUNT];
    struct metrics_hist *seconds[METRICS_OP_COUNT][METRICS_STATUS_COUNT];
};

/* Register <prefix>_requests_total and <prefix>_request_duration_seconds.
 * 0 or -ENOMEM. */
int metrics_requests_register(struct metrics_registry *r, struct metrics_requests *q,
                              const char *prefix, const char *what);
enum metrics_op metrics_requests_op(Raftkv__Request__OpCase op);
/* The op label: "get", "set", ... */
const char *metrics_requests_op_name(enum metrics_op op);
void metrics_requests_observe(struct metrics_requests *q, enum metrics_op op, int status,
                              double seconds);

#endif
