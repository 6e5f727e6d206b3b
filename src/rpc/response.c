/* response.c - building and sending answers to clients: the Response
 * envelope, error answers and WATCH_LEADER events, one way for the node
 * and the proxy alike (their bytes on the wire must not drift apart). */
#include "rpc/rpc.h"

#include "common/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void rpc_response_init(Raftkv__Response *resp, uint64_t id, Raftkv__Status st, const char *msg)
{
    raftkv__response__init(resp);
    resp->has_id = 1;
    resp->id = id;
    resp->has_status = 1;
    resp->status = st;
    resp->message = (char *)msg;
}

void rpc_response_vinit(Raftkv__Response *resp, char *buf, uint64_t id, Raftkv__Status st,
                        const char *fmt, va_list ap)
{
    vsnprintf(buf, RPC_MSG_MAX, fmt, ap);
    rpc_response_init(resp, id, st, buf);
}

void rpc_send(struct rpc_client *cl, Raftkv__Response *resp)
{
    if (!cl)
        return;
    cl->replies++;
    cl->last_reply_id = resp->id;
    cl->last_status = (int)resp->status;
    if (!cl->conn)
        return; /* the client left while its request waited */
    int rv = net_conn_send_msg(cl->conn, &resp->base);
    if (rv < 0 && rv != -ENOBUFS && rv != -EPIPE)
        log_warn("cannot answer %s: %s", net_conn_peer_name(cl->conn), strerror(-rv));
}

void rpc_send_hinted(struct rpc_client *cl, Raftkv__Response *resp)
{
    if (cl && cl->srv->ops->leader_hint)
        cl->srv->ops->leader_hint(cl->srv->owner, resp);
    rpc_send(cl, resp);
}

void rpc_reply_error(struct rpc_client *cl, uint64_t id, Raftkv__Status st, const char *fmt, ...)
{
    char msg[RPC_MSG_MAX];
    Raftkv__Response resp;
    va_list ap;
    va_start(ap, fmt);
    rpc_response_vinit(&resp, msg, id, st, fmt, ap);
    va_end(ap);
    rpc_send_hinted(cl, &resp);
}

void rpc_send_leader_event(struct rpc_client *cl, uint64_t leader, uint64_t term,
                           const char *address)
{
    Raftkv__LeaderEvent ev = RAFTKV__LEADER_EVENT__INIT;
    ev.has_leader_id = 1;
    ev.leader_id = leader;
    ev.has_term = 1;
    ev.term = term;
    ev.leader_address = (char *)address;
    Raftkv__Response resp;
    rpc_response_init(&resp, cl->watch_id, RAFTKV__STATUS__OK, NULL);
    resp.result_case = RAFTKV__RESPONSE__RESULT_LEADER_EVENT;
    resp.leader_event = &ev;
    rpc_send(cl, &resp);
}
