/* api_read.c - GET and LIST on a node.  Stale reads are served at once;
 * linearizable ones ask Raft for a read index (ReadIndex, on followers
 * too) and wait until it is confirmed and the state machine has reached it.
 * The reads of one loop iteration share one read index (api_reads_ask).
 */
#include "node/api_int.h"

#include <stdio.h>
#include <stdlib.h>

#define LIST_DEFAULT_LIMIT 1000
#define LIST_MAX_LIMIT 10000

struct list_acc {
    ProtobufCBinaryData *keys;
    size_t n;
};

static int list_collect(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
    (void)val, (void)vlen;
    struct list_acc *a = ctx;
    a->keys[a->n].data = (uint8_t *)key;
    a->keys[a->n].len = klen;
    a->n++;
    return 0;
}

static void serve_read(struct node *n, struct rpc_client *cl, const Raftkv__Request *req)
{
    const struct kv *kv = replica_kv(n->rp);
    uint64_t applied = kv_applied_index(kv);
    Raftkv__Response resp;
    rpc_response_init(&resp, req->id, RAFTKV__STATUS__OK, NULL);
    if (req->op_case == RAFTKV__REQUEST__OP_GET) {
        Raftkv__GetResponse get = RAFTKV__GET_RESPONSE__INIT;
        const void *val;
        size_t vlen;
        const ProtobufCBinaryData *k = &req->get->key;
        get.has_applied_index = 1;
        get.applied_index = applied;
        if (kv_dict_get(kv_dict(kv), k->data, k->len, &val, &vlen) == KV_OK) {
            get.has_value = 1;
            get.value.data = (uint8_t *)val;
            get.value.len = vlen;
        } else {
            resp.status = RAFTKV__STATUS__NOT_FOUND;
            resp.message = "no such key";
        }
        resp.result_case = RAFTKV__RESPONSE__RESULT_GET;
        resp.get = &get;
        rpc_send(cl, &resp);
        return;
    }
    const Raftkv__ListRequest *lr = req->list;
    size_t limit = lr->limit ? lr->limit : LIST_DEFAULT_LIMIT;
    if (limit > LIST_MAX_LIMIT)
        limit = LIST_MAX_LIMIT;
    struct list_acc acc = {.keys = calloc(limit, sizeof(ProtobufCBinaryData))};
    if (!acc.keys) {
        rpc_reply_error(cl, req->id, RAFTKV__STATUS__INTERNAL, "out of memory");
        return;
    }
    bool more = false;
    kv_dict_list(kv_dict(kv), lr->prefix.data, lr->prefix.len,
                 lr->has_start_after ? lr->start_after.data : NULL, lr->start_after.len, limit,
                 list_collect, &acc, &more);
    Raftkv__ListResponse list = RAFTKV__LIST_RESPONSE__INIT;
    list.keys = acc.keys;
    list.n_keys = acc.n;
    list.has_truncated = 1;
    list.truncated = more;
    list.has_applied_index = 1;
    list.applied_index = applied;
    resp.result_case = RAFTKV__RESPONSE__RESULT_LIST;
    resp.list = &list;
    rpc_send(cl, &resp);
    free(acc.keys);
}

void api_handle_read(struct node *n, struct rpc_client *cl, Raftkv__Request *req, bool *kept)
{
    Raftkv__Consistency cons;
    if (req->op_case == RAFTKV__REQUEST__OP_GET) {
        if (!api_check_key(n, cl, req->id, &req->get->key, req->get->has_key))
            return;
        cons = req->get->consistency;
    } else {
        if (req->list->prefix.len > n->cfg->cluster.max_key_bytes) {
            rpc_reply_error(cl, req->id, RAFTKV__STATUS__TOO_LARGE, "prefix longer than the key limit");
            return;
        }
        cons = req->list->consistency;
    }
    if (cons == RAFTKV__CONSISTENCY__STALE) {
        serve_read(n, cl, req);
        return;
    }
    struct waiter *w = api_waiter_new(n, WAIT_READ, cl, req);
    if (!w) {
        rpc_reply_error(cl, req->id, RAFTKV__STATUS__INTERNAL, "out of memory");
        return;
    }
    if (!n->read_batch_ctx)
        n->read_batch_ctx = ++n->next_ctx;
    w->ctx = n->read_batch_ctx;
    w->req = req;
    *kept = true;
    waitq_push(&n->reads, w);
    node_mark_dirty(n);
}

/* Every read of the batch arrived before this request is made, so the
 * index it returns serves each of them as well as one of its own would
 * (thesis §6.4).  A follower sends one READ_INDEX per batch, not per read,
 * and the leader stamps and answers one. */
void api_reads_ask(struct node *n)
{
    uint64_t ctx = n->read_batch_ctx;
    if (!ctx)
        return;
    n->read_batch_ctx = 0;
    if (n->cfg->cluster.lease_reads)
        node_lease_clock(n); /* a lease is judged by the time now */
    int rv = replica_read_index(n->rp, ctx);
    if (rv == 0)
        return;
    char msg[RPC_MSG_MAX];
    if (rv == REPLICA_EFAILED)
        snprintf(msg, sizeof(msg), "node %u cannot confirm a linearizable read: %s; ask another node, "
                 "or for a stale read", n->id, replica_errmsg(n->rp));
    else
        snprintf(msg, sizeof(msg), "no leader to confirm a linearizable read (%s); retry, or ask for "
                 "a stale read", raft_strerror(rv));
    for (struct waiter *w = n->reads.tail, *prev; w && w->ctx == ctx; w = prev) {
        prev = w->prev;
        waitq_unlink(&n->reads, w);
        rpc_reply_error(w->client, w->req_id, RAFTKV__STATUS__UNAVAILABLE, "%s", msg);
        api_waiter_free(w);
    }
}

/* Waiters sit in ctx order (a batch shares one ctx; batches are numbered
 * in order), so one pass finds a batch. */
void api_read_state(void *arg, const struct raft_read_state *rs)
{
    struct node *n = arg;
    for (struct waiter *w = n->reads.head, *next; w && w->ctx <= rs->ctx; w = next) {
        next = w->next;
        if (w->ctx != rs->ctx || w->index_known)
            continue;
        if (rs->err) {
            waitq_unlink(&n->reads, w);
            rpc_reply_error(w->client, w->req_id, RAFTKV__STATUS__UNAVAILABLE,
                            "leadership changed before the read was confirmed; retry");
            api_waiter_free(w);
            continue;
        }
        w->index = rs->index;
        w->index_known = true;
        w->known_at = ev_time();
    }
}

void api_serve_ready_reads(struct node *n)
{
    uint64_t applied = replica_applied(n->rp);
    for (struct waiter *w = n->reads.head, *next; w; w = next) {
        next = w->next;
        if (w->index_known && w->index <= applied) {
            waitq_unlink(&n->reads, w);
            serve_read(n, w->client, w->req);
            api_waiter_free(w);
        }
    }
}

/* Forwarded reads whose leader is gone will never be answered. */
void api_reads_leader_changed(struct node *n)
{
    if (n->role == RAFT_LEADER)
        return;
    for (struct waiter *w = n->reads.head, *next; w; w = next) {
        next = w->next;
        if (!w->index_known) {
            waitq_unlink(&n->reads, w);
            rpc_reply_error(w->client, w->req_id, RAFTKV__STATUS__UNAVAILABLE,
                            "leader changed before the read was confirmed; retry");
            api_waiter_free(w);
        }
    }
}
