/* requests.c - requests by op and status (requests.h). */
#include "metrics/requests.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>

static const char *const op_names[METRICS_OP_COUNT] = {
    "get", "list", "set", "del", "cas", "status", "transfer_leader", "watch_leader",
    "member_change", "metrics", "other"};

enum metrics_op metrics_requests_op(Raftkv__Request__OpCase op)
{
    switch (op) {
    case RAFTKV__REQUEST__OP_GET: return METRICS_OP_GET;
    case RAFTKV__REQUEST__OP_LIST: return METRICS_OP_LIST;
    case RAFTKV__REQUEST__OP_SET: return METRICS_OP_SET;
    case RAFTKV__REQUEST__OP_DEL: return METRICS_OP_DEL;
    case RAFTKV__REQUEST__OP_CAS: return METRICS_OP_CAS;
    case RAFTKV__REQUEST__OP_STATUS: return METRICS_OP_STATUS;
    case RAFTKV__REQUEST__OP_TRANSFER_LEADER: return METRICS_OP_TRANSFER;
    case RAFTKV__REQUEST__OP_WATCH_LEADER: return METRICS_OP_WATCH;
    case RAFTKV__REQUEST__OP_MEMBER_CHANGE: return METRICS_OP_MEMBER;
    case RAFTKV__REQUEST__OP_METRICS: return METRICS_OP_METRICS;
    default: return METRICS_OP_OTHER;
    }
}

const char *metrics_requests_op_name(enum metrics_op op)
{
    return op_names[op < METRICS_OP_COUNT ? op : METRICS_OP_OTHER];
}

/* "NOT_FOUND" -> "not_found", from the .proto's own names, so a new status
 * code is labelled without touching this file. */
static void status_label(unsigned i, char *buf, size_t len)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&raftkv__status__descriptor, (int)i);
    if (!v || i == METRICS_STATUS_COUNT - 1) {
        snprintf(buf, len, "other");
        return;
    }
    size_t k = 0;
    for (const char *c = v->name; *c && k + 1 < len; c++)
        buf[k++] = (char)tolower((unsigned char)*c);
    buf[k] = 0;
}

int metrics_requests_register(struct metrics_registry *r, struct metrics_requests *q,
                              const char *prefix, const char *what)
{
    char total[96], secs[96], help_total[160], help_secs[200];
    snprintf(total, sizeof(total), "%s_requests_total", prefix);
    snprintf(secs, sizeof(secs), "%s_request_duration_seconds", prefix);
    snprintf(help_total, sizeof(help_total), "%s answered, by op and status.", what);
    snprintf(help_secs, sizeof(help_secs),
             "Time from arrival to answer of %s, by op and status.", what);
    for (unsigned o = 0; o < METRICS_OP_COUNT; o++)
        for (unsigned s = 0; s < METRICS_STATUS_COUNT; s++) {
            char st[32], l[96];
            status_label(s, st, sizeof(st));
            snprintf(l, sizeof(l), "op=\"%s\",status=\"%s\"", op_names[o], st);
            q->total[o][s] = metrics_counter_new(r, total, help_total, l, METRICS_HIDE_ZERO);
            q->seconds[o][s] =
                metrics_hist_new(r, secs, help_secs, l, metrics_buckets_latency,
                                 metrics_buckets_latency_n, METRICS_HIDE_ZERO);
            if (!q->total[o][s] || !q->seconds[o][s])
                return -ENOMEM;
        }
    return 0;
}

void metrics_requests_observe(struct metrics_requests *q, enum metrics_op op, int status,
                              double seconds)
{
    unsigned st = status >= 0 && status < METRICS_STATUS_COUNT - 1 ? (unsigned)status
                                                                   : METRICS_STATUS_COUNT - 1;
    metrics_counter_inc(q->total[op][st]);
    metrics_hist_observe(q->seconds[op][st], seconds < 0 ? 0 : seconds);
}
