/* api_int.h - the parts of a node's client API: api.c (waiters, shared
 * answers, dispatch, timeouts, listeners), api_write.c (SET, DEL, CAS),
 * api_read.c (GET, LIST), api_admin.c (STATUS, TRANSFER_LEADER,
 * WATCH_LEADER) and api_member.c (MEMBER_CHANGE). */
#ifndef RAFTKV_NODE_API_INT_H
#define RAFTKV_NODE_API_INT_H

#include "node/node_int.h"
#include "raftkv.pb-c.h"

/* api.c */
void waitq_push(struct waitq *q, struct waiter *w);
struct waiter *waitq_pop(struct waitq *q);
void waitq_unlink(struct waitq *q, struct waiter *w);
/* A request parks until Raft decides; the deadline is its own timeout_ms
 * or the cluster's request_timeout_ms.  NULL when out of memory. */
struct waiter *api_waiter_new(struct node *n, enum wait_kind kind, struct rpc_client *cl,
                              const Raftkv__Request *req);
void api_waiter_free(struct waiter *w);
void api_respond_not_leader(struct node *n, struct rpc_client *cl, uint64_t id);
/* false (answered) unless k is a key this cluster takes. */
bool api_check_key(struct node *n, struct rpc_client *cl, uint64_t id, const ProtobufCBinaryData *k,
                   bool has);

/* api_write.c */
void api_handle_write(struct node *n, struct rpc_client *cl, const Raftkv__Request *req);

/* api_read.c: *kept when req now belongs to a waiting read. */
void api_handle_read(struct node *n, struct rpc_client *cl, Raftkv__Request *req, bool *kept);
void api_reads_leader_changed(struct node *n);

/* api_admin.c */
/* METRICS on the admin socket: the registry rendered like /metrics. */
void api_handle_metrics(struct node *n, struct rpc_client *cl, const Raftkv__Request *req);
void api_handle_status(struct node *n, struct rpc_client *cl, const Raftkv__Request *req);
void api_handle_transfer(struct node *n, struct rpc_client *cl, const Raftkv__Request *req);
void api_handle_watch(struct node *n, struct rpc_client *cl, const Raftkv__Request *req);
void api_admin_leader_changed(struct node *n);

/* api_member.c */
enum api_right { API_RIGHT_READ, API_RIGHT_WRITE, API_RIGHT_ADMIN };
/* May this client do that?  The one place later TLS/role work plugs into. */
bool api_authorize(const struct rpc_client *cl, enum api_right right);
int api_member_start(struct node *n, char *err, size_t errlen);
void api_member_stop(struct node *n);
void api_member_handle(struct node *n, struct rpc_client *cl, const Raftkv__Request *req);
void api_member_applied(struct node *n, const struct raft_entry *e);
/* Role, and on the leader catch-up progress, of every member in ns. */
void api_member_status(struct node *n, Raftkv__NodeStatus *ns);

#endif
