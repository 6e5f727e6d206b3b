/* net.c - the simulated network: deep-copied messages in a delivery-time
 * heap, with loss, duplication, variable (sometimes very long) delay and
 * therefore reordering, plus partitions (symmetric, asymmetric, and a leader
 * cut off from the majority) that form and heal. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

struct netmsg *netmsg_copy(struct sim *s, struct node *from, const struct raft_msg *m)
{
    size_t data = 0;
    for (uint32_t i = 0; i < m->n_entries; i++)
        data += m->entries[i].len;
    struct netmsg *nm =
        xrealloc(NULL, sizeof *nm + m->n_entries * sizeof(struct raft_entry) + data);
    memset(nm, 0, sizeof *nm);
    nm->m = *m;
    uint8_t *p = (uint8_t *)(nm->ents + m->n_entries);
    for (uint32_t i = 0; i < m->n_entries; i++) {
        nm->ents[i] = m->entries[i];
        nm->ents[i].data = m->entries[i].len ? p : NULL;
        if (m->entries[i].len)
            memcpy(p, m->entries[i].data, m->entries[i].len);
        p += m->entries[i].len;
    }
    nm->m.entries = m->n_entries ? nm->ents : NULL;
    if (m->from != from->id || m->to == from->id || m->to == RAFT_NONE || m->to > s->n_nodes ||
        m->type == RAFT_MSG_NONE || m->type >= RAFT_MSG_TYPE_COUNT)
        sim_fail(s, FAIL_CONTRACT, "n%llu emitted a malformed message: type %u from %llu to %llu",
                 U(from->id), m->type, U(m->from), U(m->to));
    return nm;
}

void fmt_msg(char *buf, size_t len, const struct raft_msg *m)
{
    int k = snprintf(buf, len, "%s n%llu->n%llu term %llu", raft_msg_type_name(m->type),
                     U(m->from), U(m->to), U(m->term));
    if (k < 0 || (size_t)k >= len)
        return;
    buf += k;
    len -= (size_t)k;
    switch (m->type) {
    case RAFT_MSG_APPEND:
        snprintf(buf, len, " prev (%llu,%llu) n=%u commit %llu", U(m->index), U(m->log_term),
                 m->n_entries, U(m->commit));
        break;
    case RAFT_MSG_APPEND_RESP:
        snprintf(buf, len, " index %llu%s hint (%llu,%llu)%s", U(m->index),
                 m->reject ? " REJECT" : "", U(m->hint_index), U(m->hint_term),
                 m->ctx == RAFT_CTX_LOST ? " lost (heartbeat answer)" : "");
        break;
    case RAFT_MSG_PREVOTE:
    case RAFT_MSG_VOTE:
        snprintf(buf, len, " last (%llu,%llu)%s", U(m->index), U(m->log_term),
                 m->ctx == RAFT_CTX_TRANSFER ? " transfer" : "");
        break;
    case RAFT_MSG_PREVOTE_RESP:
    case RAFT_MSG_VOTE_RESP:
        snprintf(buf, len, "%s", m->reject ? " REJECT" : " granted");
        break;
    case RAFT_MSG_HEARTBEAT:
    case RAFT_MSG_HEARTBEAT_RESP:
        snprintf(buf, len, " commit %llu ctx %llu", U(m->commit), U(m->ctx));
        break;
    case RAFT_MSG_SNAPSHOT:
        snprintf(buf, len, " snap (%llu,%llu) %zu bytes", U(m->snap.index), U(m->snap.term),
                 m->snap_len);
        break;
    case RAFT_MSG_READ_INDEX:
    case RAFT_MSG_READ_INDEX_RESP:
        snprintf(buf, len, " ctx %llu index %llu%s", U(m->ctx), U(m->index),
                 m->reject ? " REJECT" : "");
        break;
    default:
        break;
    }
}

/* ---- delivery-time heap -------------------------------------------------- */

static bool before(const struct netmsg *a, const struct netmsg *b)
{
    return a->at < b->at || (a->at == b->at && a->seq < b->seq);
}

static void heap_push(struct net *net, struct netmsg *nm)
{
    grow(&net->heap, &net->cap, net->n + 1, sizeof *net->heap);
    size_t i = net->n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!before(nm, net->heap[parent]))
            break;
        net->heap[i] = net->heap[parent];
        i = parent;
    }
    net->heap[i] = nm;
}

static struct netmsg *heap_pop(struct net *net)
{
    struct netmsg *top = net->heap[0], *last = net->heap[--net->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= net->n)
            break;
        if (c + 1 < net->n && before(net->heap[c + 1], net->heap[c]))
            c++;
        if (!before(net->heap[c], last))
            break;
        net->heap[i] = net->heap[c];
        i = c;
    }
    if (net->n)
        net->heap[i] = last;
    return top;
}

/* ---- sending and delivering ---------------------------------------------- */

static uint64_t draw_delay(struct sim *s)
{
    if (s->faults && prng_chance(&s->rng, s->p.long_delay_ppm))
        return prng_range(&s->rng, s->p.delay_max, 400);
    return prng_range(&s->rng, 1, s->p.delay_max);
}

/* The core never holds snapshot bytes: attach the sender's durable
 * snapshot under its own metadata, as raftkv-node's peer.c does (never older
 * than what the core asked for; the follower's answer sorts out the rest). */
static void attach_snapshot(struct sim *s, struct node *from, struct raft_msg *m)
{
    struct raft_snapshot_meta meta;
    void *data = NULL;
    size_t len = 0;
    if (replica_snapshot_load(from->rp, &meta, &data, &len) < 0) {
        TRACE(s, "n%llu has no snapshot bytes for (%llu,%llu): the message will fail",
              U(from->id), U(m->snap.index), U(m->snap.term));
        return;
    }
    const struct blob *b = blob_new(s, meta.index, meta.term, data, len);
    free(data);
    m->snap = meta;
    m->index = meta.index;
    m->log_term = meta.term;
    m->snap_data = b->data;
    m->snap_len = b->len;
    s->st.snaps_sent++;
}

void net_send(struct sim *s, struct node *from, struct netmsg *nm)
{
    nm->from_inc = from->inc;
    nm->from_dir = from->dir_inc;
    check_sent(s, from, &nm->m);
    if (nm->m.type == RAFT_MSG_SNAPSHOT && !nm->m.snap_data)
        attach_snapshot(s, from, &nm->m);
    if (s->faults && prng_chance(&s->rng, s->p.loss_ppm)) {
        if (s->trace_mode) {
            char buf[160];
            fmt_msg(buf, sizeof buf, &nm->m);
            tracef(s, "lost %s", buf);
        }
        s->st.dropped++;
        free(nm);
        return;
    }
    if (s->faults && prng_chance(&s->rng, s->p.dup_ppm)) {
        size_t size = sizeof *nm + nm->m.n_entries * sizeof(struct raft_entry);
        for (uint32_t i = 0; i < nm->m.n_entries; i++)
            size += nm->ents[i].len;
        struct netmsg *dup = xrealloc(NULL, size);
        memcpy(dup, nm, size);
        /* Re-point the copy's entries at its own storage. */
        dup->m.entries = nm->m.n_entries ? dup->ents : NULL;
        uint8_t *p = (uint8_t *)(dup->ents + nm->m.n_entries);
        for (uint32_t i = 0; i < nm->m.n_entries; i++) {
            if (dup->ents[i].len)
                dup->ents[i].data = p;
            p += dup->ents[i].len;
        }
        dup->dup = true;
        dup->at = s->now + draw_delay(s);
        dup->seq = ++s->net.seq;
        heap_push(&s->net, dup);
    }
    nm->at = s->now + draw_delay(s);
    nm->seq = ++s->net.seq;
    heap_push(&s->net, nm);
    /* Keep every run bounded: a core that floods the network is broken. */
    if (s->net.n > 100000)
        sim_fail(s, FAIL_CONTRACT, "message storm: %zu messages in flight (n%llu sending %s)",
                 s->net.n, U(from->id), raft_msg_type_name(nm->m.type));
}

static void report_back(struct sim *s, const struct netmsg *nm, bool delivered)
{
    struct node *from = &s->nodes[nm->m.from];
    if (nm->dup || !from->up || from->inc != nm->from_inc)
        return; /* one report per send, as a transport gives */
    if (nm->m.type == RAFT_MSG_SNAPSHOT)
        replica_report_snapshot(from->rp, nm->m.to, delivered);
    else if (!delivered && nm->m.type == RAFT_MSG_APPEND && prng_chance(&s->rng, 250000))
        replica_report_unreachable(from->rp, nm->m.to); /* as a transport noticing a dead link */
    else
        return;
    from->dirty = true;
    node_drive(s, from);
}

void net_deliver_due(struct sim *s)
{
    struct net *net = &s->net;
    while (net->n && net->heap[0]->at <= s->now && !s->fail) {
        struct netmsg *nm = heap_pop(net);
        struct node *to = &s->nodes[nm->m.to];
        const char *drop = NULL;
        if (!to->up)
            drop = "receiver down";
        else if (net->cut[nm->m.from][nm->m.to])
            drop = "partition";
        else if (nm->m.type == RAFT_MSG_SNAPSHOT && !nm->m.snap_data)
            drop = "no snapshot bytes";
        char buf[160] = "";
        if (s->trace_mode)
            fmt_msg(buf, sizeof buf, &nm->m);
        if (drop) {
            TRACE(s, "drop (%s) %s", drop, buf);
            s->st.dropped++;
            report_back(s, nm, false);
            free(nm);
            continue;
        }
        TRACE(s, "deliver %s", buf);
        s->st.delivered++;
        /* As raftkv-node's guard.c: the incarnation rule, then (leader) the
         * record of a member's data directory, both the replica's. */
        enum raft_role role = replica_role(to->rp);
        raft_term term = replica_term(to->rp);
        int rc = replica_step_from(to->rp, nm->from_dir, &nm->m);
        bool dropped = rc == REPLICA_ESTALEINC || rc == REPLICA_EWITHHELD;
        check_vote_taken(s, to, nm, !dropped, role, term);
        if (rc == REPLICA_ESTALEINC) {
            TRACE(s, "n%llu dropped it: n%llu's data directory %016llx is not the recorded one",
                  U(to->id), U(nm->m.from), U(nm->from_dir));
            s->st.stale++;
        } else if (rc == REPLICA_EWITHHELD) {
            TRACE(s, "n%llu dropped it: it joined and its log does not record its data "
                  "directory %016llx yet", U(to->id), U(to->dir_inc));
            s->st.withheld++;
        } else if (rc != RAFT_OK) {
            TRACE(s, "n%llu step: %s", U(to->id), raft_strerror(rc));
        }
        if (!dropped &&
            replica_record_incarnation(to->rp, nm->m.from, nm->from_dir, s->now) == 1)
            TRACE(s, "n%llu proposes to record n%llu's data directory %016llx", U(to->id),
                  U(nm->m.from), U(nm->from_dir));
        to->dirty = true;
        node_drive(s, to);
        if (nm->m.type == RAFT_MSG_SNAPSHOT)
            report_back(s, nm, true);
        free(nm);
    }
}

/* ---- partitions ------------------------------------------------------------ */

void net_heal(struct sim *s)
{
    memset(s->net.cut, 0, sizeof s->net.cut);
    if (s->net.partitioned)
        TRACE(s, "partition healed");
    s->net.partitioned = false;
    s->net.heal_at = SIM_NEVER;
}

static void cut_between(struct sim *s, const bool *side)
{
    for (unsigned a = 1; a <= s->n_nodes; a++)
        for (unsigned b = 1; b <= s->n_nodes; b++)
            if (side[a] != side[b])
                s->net.cut[a][b] = true;
}

/* x hears nobody (deaf) or nobody hears x. */
static void cut_one_way(struct sim *s, raft_id x, bool deaf)
{
    for (unsigned i = 1; i <= s->n_nodes; i++) {
        if (deaf)
            s->net.cut[i][x] = true;
        else
            s->net.cut[x][i] = true;
    }
}

/* Form one partition of a random shape (or the one how names), to heal at
 * a random later time. */
void net_partition(struct sim *s, raft_id leader, enum part_how how)
{
    bool side[SIM_MAX_NODES + 1] = {false};
    unsigned nn = s->n_nodes;
    const char *shape;
    unsigned pick = how == PART_ISOLATE_LEADER ? 4
                    : how == PART_DEAF_LEADER  ? 5
                                               : (unsigned)prng_below(&s->rng, leader ? 5 : 4);
    switch (pick) {
    case 0: /* random symmetric split */
        for (unsigned i = 1; i <= nn; i++)
            side[i] = prng_chance(&s->rng, 500000);
        cut_between(s, side);
        shape = "split";
        break;
    case 1: { /* one node alone */
        side[prng_range(&s->rng, 1, nn)] = true;
        cut_between(s, side);
        shape = "isolate one";
        break;
    }
    case 2: { /* asymmetric: one node can send but not receive, or the reverse */
        unsigned x = (unsigned)prng_range(&s->rng, 1, nn);
        bool deaf = prng_chance(&s->rng, 500000);
        cut_one_way(s, x, deaf);
        shape = deaf ? "one node deaf" : "one node mute";
        break;
    }
    case 5: /* the leader that just sent TimeoutNow hears nobody (world.c) */
        cut_one_way(s, leader, true);
        shape = "leader deaf after its TimeoutNow";
        break;
    case 3: /* random one-way link cuts */
        for (unsigned a = 1; a <= nn; a++)
            for (unsigned b = 1; b <= nn; b++)
                s->net.cut[a][b] = a != b && prng_chance(&s->rng, 300000);
        shape = "random one-way links";
        break;
    default: /* the leader (plus maybe one follower) cut off from the majority */
        side[leader] = true;
        if (s->n_init >= 5 && prng_chance(&s->rng, 500000))
            side[prng_range(&s->rng, 1, nn)] = true;
        cut_between(s, side);
        shape = "leader isolated";
        break;
    }
    s->net.partitioned = true;
    s->net.heal_at = s->now + prng_range(&s->rng, 30, 1500);
    s->st.partitions++;
    if (s->trace_mode) {
        char buf[128];
        size_t k = 0;
        for (unsigned a = 1; a <= nn; a++)
            for (unsigned b = 1; b <= nn; b++)
                if (s->net.cut[a][b] && k + 8 < sizeof buf)
                    k += (size_t)snprintf(buf + k, sizeof buf - k, " %u>%u", a, b);
        buf[k] = 0;
        tracef(s, "PARTITION (%s) until t=%llu, cut:%s", shape, U(s->net.heal_at), buf);
    }
}

void net_free(struct sim *s)
{
    for (size_t i = 0; i < s->net.n; i++)
        free(s->net.heap[i]);
    free(s->net.heap);
    s->net.heap = NULL;
    s->net.n = s->net.cap = 0;
}
