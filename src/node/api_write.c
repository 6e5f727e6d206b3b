/* api_write.c - SET, DEL and CAS on a node: decode the request into a kv
 * command, admit it (healthy, running, leader), propose it to Raft, and
 * wait until its entry is applied (or lost to a leadership change).
 */
#include "node/api_int.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static Raftkv__Status write_outcome(const struct kv_result *res, const char **msg)
{
    *msg = "";
    switch (res->status) {
    case KV_STATUS_OK: return RAFTKV__STATUS__OK;
    case KV_STATUS_NOT_FOUND: *msg = "no such key"; return RAFTKV__STATUS__NOT_FOUND;
    case KV_STATUS_CAS_FAILED: *msg = "current value differs from the expected one"; return RAFTKV__STATUS__CAS_FAILED;
    case KV_STATUS_STALE:
        *msg = "sequence is older than this client's last write; not applied";
        return RAFTKV__STATUS__INVALID_ARGUMENT;
    case KV_STATUS_SESSION_EXPIRED:
        *msg = "client session expired; start again with a new client_id at sequence 1";
        return RAFTKV__STATUS__INVALID_ARGUMENT;
    case KV_STATUS_NO_SPACE:
        *msg = "the dataset is at the cluster's quota (cluster.max_data_bytes); delete keys "
               "or raise the quota";
        return RAFTKV__STATUS__NO_SPACE;
    case KV_STATUS_INVALID:
    default:
        *msg = "the log entry did not decode as a command";
        return RAFTKV__STATUS__INTERNAL;
    }
}

static void respond_write(struct waiter *w, const struct kv_result *res)
{
    Raftkv__Response resp;
    Raftkv__SetResponse set = RAFTKV__SET_RESPONSE__INIT;
    Raftkv__DelResponse del = RAFTKV__DEL_RESPONSE__INIT;
    Raftkv__CasResponse cas = RAFTKV__CAS_RESPONSE__INIT;
    const char *msg;
    Raftkv__Status st = write_outcome(res, &msg);
    rpc_response_init(&resp, w->req_id, st, *msg ? msg : NULL);
    switch (w->ctx) { /* for writes, ctx holds the request's op */
    case RAFTKV__REQUEST__OP_SET:
        set.has_index = 1;
        set.index = res->index;
        resp.result_case = RAFTKV__RESPONSE__RESULT_SET;
        resp.set = &set;
        break;
    case RAFTKV__REQUEST__OP_DEL:
        del.has_index = 1;
        del.index = res->index;
        resp.result_case = RAFTKV__RESPONSE__RESULT_DEL;
        resp.del = &del;
        break;
    default:
        cas.has_index = 1;
        cas.index = res->index;
        if (res->status == KV_STATUS_CAS_FAILED) {
            cas.has_current_absent = 1;
            cas.current_absent = res->current_absent;
            if (!res->current_absent) {
                cas.has_current = 1;
                cas.current.data = (uint8_t *)res->current;
                cas.current.len = res->current_len;
            }
        }
        resp.result_case = RAFTKV__RESPONSE__RESULT_CAS;
        resp.cas = &cas;
        break;
    }
    rpc_send(w->client, &resp);
}

static void respond_lost(struct waiter *w)
{
    rpc_reply_error(w->client, w->req_id, RAFTKV__STATUS__UNAVAILABLE,
                    "leadership changed before the write committed; it was not applied, retry");
}

void api_applied(void *arg, const struct raft_entry *e, const struct kv_result *res)
{
    struct node *n = arg;
    if (e->type == RAFT_ENTRY_CONF)
        api_member_applied(n, e);
    while (n->writes.head && n->writes.head->index <= e->index) {
        struct waiter *w = waitq_pop(&n->writes);
        if (w->index == e->index && w->term == e->term && res) {
            metrics_counter_inc(n->m ? n->m->proposals_committed : NULL);
            respond_write(w, res);
        } else {
            metrics_counter_inc(n->m ? n->m->proposals_failed : NULL);
            respond_lost(w);
        }
        api_waiter_free(w);
    }
}

static bool check_value(struct node *n, struct rpc_client *cl, uint64_t id, const ProtobufCBinaryData *v)
{
    if (v->len > n->cfg->cluster.max_value_bytes) {
        rpc_reply_error(cl, id, RAFTKV__STATUS__TOO_LARGE, "value of %zu bytes exceeds the limit of %llu",
                        v->len, (unsigned long long)n->cfg->cluster.max_value_bytes);
        return false;
    }
    return true;
}

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Step 1: the request as a kv command pointing into req (no copies), or
 * false once answered. */
static bool write_decode(struct node *n, struct rpc_client *cl, const Raftkv__Request *req,
                         struct kv_command *cmd)
{
    uint64_t id = req->id;
    memset(cmd, 0, sizeof(*cmd));
    switch (req->op_case) {
    case RAFTKV__REQUEST__OP_SET:
        if (!api_check_key(n, cl, id, &req->set->key, req->set->has_key) ||
            !check_value(n, cl, id, &req->set->value))
            return false;
        cmd->op = KV_OP_SET;
        cmd->key = req->set->key.data;
        cmd->key_len = req->set->key.len;
        cmd->value = req->set->value.data;
        cmd->value_len = req->set->value.len;
        break;
    case RAFTKV__REQUEST__OP_DEL:
        if (!api_check_key(n, cl, id, &req->del->key, req->del->has_key))
            return false;
        cmd->op = KV_OP_DEL;
        cmd->key = req->del->key.data;
        cmd->key_len = req->del->key.len;
        break;
    default: {
        const Raftkv__CasRequest *c = req->cas;
        if (!api_check_key(n, cl, id, &c->key, c->has_key) || !check_value(n, cl, id, &c->value) ||
            !check_value(n, cl, id, &c->expected))
            return false;
        if (c->expect_absent && c->has_expected) {
            rpc_reply_error(cl, id, RAFTKV__STATUS__INVALID_ARGUMENT,
                            "cas: give either an expected value or expect_absent, not both");
            return false;
        }
        cmd->op = KV_OP_CAS;
        cmd->key = c->key.data;
        cmd->key_len = c->key.len;
        cmd->value = c->value.data;
        cmd->value_len = c->value.len;
        cmd->expect_absent = c->expect_absent;
        cmd->expected = c->expected.data;
        cmd->expected_len = c->expected.len;
        break;
    }
    }
    if ((req->client_id == 0) != (req->sequence == 0)) {
        rpc_reply_error(cl, id, RAFTKV__STATUS__INVALID_ARGUMENT,
                        "client_id and sequence go together: give both or neither");
        return false;
    }
    cmd->client_id = req->client_id;
    cmd->sequence = req->sequence;
    return true;
}

/* Step 2: may this node take a write now?  false once answered.  Role and
 * a failed disk are the replica's to check, at the proposal itself. */
static bool write_admit(struct node *n, struct rpc_client *cl, uint64_t id)
{
    if (n->stopping) {
        rpc_reply_error(cl, id, RAFTKV__STATUS__UNAVAILABLE, "node %u is shutting down", n->id);
        return false;
    }
    return true;
}

/* Step 3: encode and propose; the entry's index and term, or false once
 * answered.  Commands that fit are encoded on the stack. */
static bool write_propose(struct node *n, struct rpc_client *cl, uint64_t id, struct kv_command *cmd,
                          raft_index *idx, raft_term *term)
{
    cmd->time_ms = wall_ms();
    size_t sz = kv_command_size(cmd), len = 0;
    uint8_t stackbuf[512];
    uint8_t *buf = sz <= sizeof(stackbuf) ? stackbuf : malloc(sz);
    if (!buf || kv_command_encode(cmd, buf, sz, &len) != KV_OK) {
        if (buf != stackbuf)
            free(buf);
        rpc_reply_error(cl, id, RAFTKV__STATUS__INTERNAL, "cannot encode the command");
        return false;
    }
    int rv = replica_propose(n->rp, buf, (uint32_t)len, idx, term);
    if (buf != stackbuf)
        free(buf);
    if (rv != 0)
        metrics_counter_inc(n->m ? n->m->proposals_failed : NULL);
    if (rv == REPLICA_EFAILED) {
        rpc_reply_error(cl, id, RAFTKV__STATUS__UNAVAILABLE, "node %u is not taking writes: %s",
                        n->id, replica_errmsg(n->rp));
        return false;
    }
    if (rv == RAFT_ENOTLEADER) {
        api_respond_not_leader(n, cl, id);
        return false;
    }
    if (rv == RAFT_ETRANSFER) {
        rpc_reply_error(cl, id, RAFTKV__STATUS__UNAVAILABLE, "leadership transfer in progress; retry");
        return false;
    }
    if (rv != 0) {
        rpc_reply_error(cl, id, RAFTKV__STATUS__UNAVAILABLE, "cannot propose: %s", raft_strerror(rv));
        return false;
    }
    return true;
}

/* Step 4: park the request until its entry is applied (api_applied). */
static void write_wait(struct node *n, struct rpc_client *cl, const Raftkv__Request *req,
                       raft_index idx, raft_term term)
{
    struct waiter *w = api_waiter_new(n, WAIT_WRITE, cl, req);
    if (!w) {
        rpc_reply_error(cl, req->id, RAFTKV__STATUS__INTERNAL, "out of memory");
        return;
    }
    w->index = idx;
    w->term = term;
    w->ctx = (uint64_t)req->op_case;
    /* An index at or below a waiting one means our log was cut there while
     * we were not leader: those older entries can never commit. */
    while (n->writes.tail && n->writes.tail->index >= idx) {
        struct waiter *lost = n->writes.tail;
        waitq_unlink(&n->writes, lost);
        metrics_counter_inc(n->m ? n->m->proposals_failed : NULL);
        respond_lost(lost);
        api_waiter_free(lost);
    }
    waitq_push(&n->writes, w);
    node_mark_dirty(n);
}

void api_handle_write(struct node *n, struct rpc_client *cl, const Raftkv__Request *req)
{
    struct kv_command cmd;
    raft_index idx;
    raft_term term;
    if (write_decode(n, cl, req, &cmd) && write_admit(n, cl, req->id) &&
        write_propose(n, cl, req->id, &cmd, &idx, &term))
        write_wait(n, cl, req, idx, term);
}
