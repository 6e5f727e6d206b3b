/* api_admin.c - what a node tells and does for operators: STATUS (role,
 * indexes, members, follower progress), TRANSFER_LEADER (answered once a
 * new leader is known) and WATCH_LEADER streams.
 */
#include "node/api_int.h"
#include "node/storage_store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

static const char *progress_state_name(uint8_t s)
{
    return s == 0 ? "probe" : s == 1 ? "replicate" : "snapshot";
}

void api_handle_status(struct node *n, struct rpc_client *cl, const Raftkv__Request *req)
{
    struct raft_status st;
    replica_status(n->rp, &st);
    Raftkv__NodeStatus ns = RAFTKV__NODE_STATUS__INIT;
    ns.has_id = 1;
    ns.id = n->id;
    /* A failed node's core is frozen in whatever role it had: say failed,
     * so nobody takes a frozen "leader" for a live one. */
    ns.role = replica_error(n->rp) ? "failed" : (char *)raft_role_name(st.role);
    ns.has_term = 1;
    ns.term = st.term;
    ns.has_leader_id = 1;
    ns.leader_id = st.leader;
    ns.has_commit_index = 1;
    ns.commit_index = st.commit;
    ns.has_applied_index = 1;
    ns.applied_index = replica_applied(n->rp);
    ns.has_last_index = 1;
    ns.last_index = st.last_index;
    ns.has_snapshot_index = 1;
    ns.snapshot_index = st.snap_index;
    ns.version = RAFTKV_VERSION_STRING;
    ns.has_uptime_ms = 1;
    ns.uptime_ms = (uint64_t)((ev_now(n->loop) - n->start) * 1000.0);
    const struct config_node *me = node_member(n, n->id);
    ns.client_address = me ? me->client : NULL;
    ns.error = replica_error(n->rp) ? (char *)replica_errmsg(n->rp) : NULL;
    ns.has_keys = 1;
    ns.keys = kv_dict_count(kv_dict(replica_kv(n->rp)));
    ns.has_loop_lag_max_us = 1;
    ns.loop_lag_max_us = (uint64_t)(n->lag.max_s * 1e6);
    ns.has_snapshot_duration_ms = n->snap_seconds > 0;
    ns.snapshot_duration_ms = (uint64_t)(n->snap_seconds * 1000.0);
    ns.has_snapshot_bytes = storage_store_snapshot_bytes(n->storage, &ns.snapshot_bytes) == 0;
    ns.has_data_bytes = 1;
    ns.data_bytes = kv_dict_data_bytes(kv_dict(replica_kv(n->rp)));
    ns.has_memory_bytes = metrics_resident_bytes(&ns.memory_bytes) == 0;
    ns.has_quota_bytes = 1;
    ns.quota_bytes = kv_quota(replica_kv(n->rp));
    ns.security = (char *)rpc_security_mode(&n->sec);
    char role[RPC_ROLE_DESC_MAX + 16];
    snprintf(role, sizeof(role), "%s (%s)", rpc_role_name(cl->role), cl->who);
    ns.your_role = role;

    Raftkv__Member members[RAFT_MAX_MEMBERS], *mptr[RAFT_MAX_MEMBERS];
    for (uint32_t i = 0; i < st.conf.n; i++) {
        raftkv__member__init(&members[i]);
        const struct config_node *cn = node_member(n, st.conf.m[i].id);
        members[i].has_id = 1;
        members[i].id = st.conf.m[i].id;
        members[i].has_voter = 1;
        members[i].voter = st.conf.m[i].role == RAFT_VOTER;
        members[i].peer_address = cn ? cn->peer : NULL;
        members[i].client_address = cn ? cn->client : NULL;
        mptr[i] = &members[i];
    }
    ns.n_members = st.conf.n;
    ns.members = mptr;

    Raftkv__FollowerProgress fp[RAFT_MAX_MEMBERS], *fptr[RAFT_MAX_MEMBERS];
    size_t nf = 0;
    for (uint32_t i = 0; i < st.n_progress; i++) {
        const struct raft_progress_status *ps = &st.progress[i];
        if (ps->id == n->id)
            continue;
        raftkv__follower_progress__init(&fp[nf]);
        fp[nf].has_id = 1;
        fp[nf].id = ps->id;
        fp[nf].has_match_index = 1;
        fp[nf].match_index = ps->match;
        fp[nf].has_lag = 1;
        fp[nf].lag = st.last_index > ps->match ? st.last_index - ps->match : 0;
        fp[nf].state = (char *)progress_state_name(ps->state);
        fp[nf].has_active = 1;
        fp[nf].active = ps->recent_active;
        fptr[nf] = &fp[nf];
        nf++;
    }
    ns.n_followers = nf;
    ns.followers = fptr;
    api_member_status(n, &ns);

    Raftkv__StatusResponse sr = RAFTKV__STATUS_RESPONSE__INIT;
    sr.node = &ns;
    Raftkv__Response resp;
    rpc_response_init(&resp, req->id, RAFTKV__STATUS__OK, NULL);
    resp.result_case = RAFTKV__RESPONSE__RESULT_STATUS_INFO;
    resp.status_info = &sr;
    rpc_send_hinted(cl, &resp);
}

void api_handle_metrics(struct node *n, struct rpc_client *cl, const Raftkv__Request *req)
{
    /* Like membership: admin only (the HTTP endpoint is the opt-in way to
     * publish metrics). */
    if (!api_authorize(cl, API_RIGHT_ADMIN)) {
        rpc_reply_error(cl, req->id, RAFTKV__STATUS__PERMISSION_DENIED, "METRICS needs the admin role");
        return;
    }
    char *text = NULL;
    size_t len = 0;
    bool json = req->metrics->has_format && req->metrics->format == RAFTKV__METRICS_FORMAT__METRICS_JSON;
    int rv = json ? metrics_render_json(n->m->reg, &text, &len)
                  : metrics_render_prometheus(n->m->reg, &text, &len);
    if (rv < 0) {
        rpc_reply_error(cl, req->id, RAFTKV__STATUS__INTERNAL, "out of memory");
        return;
    }
    Raftkv__MetricsResponse mr = RAFTKV__METRICS_RESPONSE__INIT;
    mr.text = text;
    Raftkv__Response resp;
    rpc_response_init(&resp, req->id, RAFTKV__STATUS__OK, NULL);
    resp.result_case = RAFTKV__RESPONSE__RESULT_METRICS;
    resp.metrics = &mr;
    rpc_send(cl, &resp);
    free(text);
}

static void respond_transfer(struct node *n, struct rpc_client *cl, uint64_t id)
{
    Raftkv__TransferLeaderResponse tr = RAFTKV__TRANSFER_LEADER_RESPONSE__INIT;
    tr.has_leader_id = 1;
    tr.leader_id = n->leader;
    tr.has_term = 1;
    tr.term = n->term;
    Raftkv__Response resp;
    rpc_response_init(&resp, id, RAFTKV__STATUS__OK, NULL);
    resp.result_case = RAFTKV__RESPONSE__RESULT_TRANSFER_LEADER;
    resp.transfer_leader = &tr;
    rpc_send_hinted(cl, &resp);
}

void api_handle_transfer(struct node *n, struct rpc_client *cl, const Raftkv__Request *req)
{
    if (replica_role(n->rp) != RAFT_LEADER) {
        api_respond_not_leader(n, cl, req->id);
        return;
    }
    uint64_t target = req->transfer_leader->target_id;
    if (target == n->id) {
        respond_transfer(n, cl, req->id);
        return;
    }
    int rv = replica_transfer(n->rp, target);
    if (rv != 0) {
        rpc_reply_error(cl, req->id, RAFTKV__STATUS__INVALID_ARGUMENT,
                        "cannot transfer leadership to %llu: %s", (unsigned long long)target,
                        rv == RAFT_EINVAL ? "no such voting member" : raft_strerror(rv));
        return;
    }
    struct waiter *w = api_waiter_new(n, WAIT_TRANSFER, cl, req);
    if (!w) {
        rpc_reply_error(cl, req->id, RAFTKV__STATUS__INTERNAL, "out of memory");
        return;
    }
    waitq_push(&n->transfers, w);
    node_mark_dirty(n);
}

static const char *leader_address(struct node *n)
{
    const struct config_node *cn = node_member(n, n->leader);
    return cn ? cn->client : NULL;
}

void api_handle_watch(struct node *n, struct rpc_client *cl, const Raftkv__Request *req)
{
    rpc_watch(cl, req->id, n->leader, n->term, leader_address(n));
}

/* Watchers hear of every change; a transfer is done once someone else
 * leads. */
void api_admin_leader_changed(struct node *n)
{
    rpc_notify_leader(&n->rpc, n->leader, n->term, leader_address(n));
    if (n->leader && n->leader != n->id) {
        struct waiter *w;
        while ((w = waitq_pop(&n->transfers))) {
            respond_transfer(n, w->client, w->req_id);
            api_waiter_free(w);
        }
    }
}
