/* peer_codec.c - struct raft_msg <-> raftkv.peer.PeerMessage.
 *
 * Decoding trusts nothing: types, entry counts, membership and snapshot
 * chunk bounds are checked here, so the consensus core only ever sees
 * messages that are well-formed (it still checks their Raft meaning).
 */
#include "node/peer_codec.h"

#include "peer.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct enc_msg {
    Raftkv__Peer__PeerMessage pm;
    Raftkv__Peer__Probe probe;
    Raftkv__Peer__ProbeReply reply;
    Raftkv__Peer__RaftMessage rm;
    Raftkv__Peer__SnapshotMeta sm;
    Raftkv__Peer__ConfMember members[RAFT_MAX_MEMBERS];
    Raftkv__Peer__ConfMember *member_ptrs[RAFT_MAX_MEMBERS];
};

int peer_encoder_init(struct peer_encoder *e)
{
    memset(e, 0, sizeof(*e));
    e->msg = calloc(1, sizeof(struct enc_msg));
    return e->msg ? 0 : -1;
}

void peer_encoder_free(struct peer_encoder *e)
{
    free(e->ents);
    free(e->ptrs);
    free(e->msg);
    memset(e, 0, sizeof(*e));
}

static int reserve(struct peer_encoder *e, size_t n)
{
    if (n <= e->cap)
        return 0;
    size_t cap = e->cap ? e->cap : 256;
    while (cap < n)
        cap *= 2;
    Raftkv__Peer__Entry *ents = realloc(e->ents, cap * sizeof(*ents));
    if (!ents)
        return -1;
    e->ents = ents;
    void **ptrs = realloc(e->ptrs, cap * sizeof(*ptrs));
    if (!ptrs)
        return -1;
    e->ptrs = ptrs;
    e->cap = cap;
    return 0;
}

#define SET(field, val)            \
    do {                           \
        rm->has_##field = (val) != 0; \
        rm->field = (val);         \
    } while (0)

static struct enc_msg *envelope(struct peer_encoder *e, const struct peer_ident *id, uint64_t from)
{
    struct enc_msg *x = e->msg;
    raftkv__peer__peer_message__init(&x->pm);
    x->pm.cluster = (char *)id->cluster;
    x->pm.has_from_id = 1;
    x->pm.from_id = from;
    x->pm.has_cluster_id = 1;
    x->pm.cluster_id.data = (uint8_t *)id->cluster_id;
    x->pm.cluster_id.len = PEER_CLUSTER_ID_LEN;
    x->pm.has_incarnation = id->incarnation != 0;
    x->pm.incarnation = id->incarnation;
    return x;
}

const struct ProtobufCMessage *peer_encode_probe(struct peer_encoder *e, const struct peer_ident *id,
                                                 uint64_t from, const struct peer_probe_reply *r)
{
    struct enc_msg *x = envelope(e, id, from);
    if (!r) {
        raftkv__peer__probe__init(&x->probe);
        x->pm.body_case = RAFTKV__PEER__PEER_MESSAGE__BODY_PROBE;
        x->pm.probe = &x->probe;
        return &x->pm.base;
    }
    Raftkv__Peer__ProbeReply *pr = &x->reply;
    raftkv__peer__probe_reply__init(pr);
    pr->has_state = pr->has_term = pr->has_commit = pr->has_is_member = pr->has_role =
        pr->has_recorded_incarnation = 1;
    pr->state = r->state;
    pr->term = r->term;
    pr->commit = r->commit;
    pr->is_member = r->is_member;
    pr->role = r->role;
    pr->recorded_incarnation = r->recorded_incarnation;
    x->pm.body_case = RAFTKV__PEER__PEER_MESSAGE__BODY_PROBE_REPLY;
    x->pm.probe_reply = pr;
    return &x->pm.base;
}

const struct ProtobufCMessage *peer_encode(struct peer_encoder *e, const struct peer_ident *id,
                                           const struct raft_msg *m,
                                           const struct peer_chunk *chunk)
{
    if (reserve(e, m->n_entries) != 0)
        return NULL;
    struct enc_msg *x = envelope(e, id, m->from);
    raftkv__peer__raft_message__init(&x->rm);
    Raftkv__Peer__RaftMessage *rm = &x->rm;
    x->pm.body_case = RAFTKV__PEER__PEER_MESSAGE__BODY_RAFT;
    x->pm.raft = rm;
    SET(type, m->type);
    SET(from, m->from);
    SET(to, m->to);
    SET(term, m->term);
    SET(index, m->index);
    SET(log_term, m->log_term);
    SET(commit, m->commit);
    SET(reject, m->reject);
    SET(hint_index, m->hint_index);
    SET(hint_term, m->hint_term);
    SET(ctx, m->ctx);
    Raftkv__Peer__Entry *ents = e->ents;
    for (uint32_t i = 0; i < m->n_entries; i++) {
        const struct raft_entry *re = &m->entries[i];
        raftkv__peer__entry__init(&ents[i]);
        ents[i].has_term = 1;
        ents[i].term = re->term;
        ents[i].has_index = 1;
        ents[i].index = re->index;
        ents[i].has_type = re->type != 0;
        ents[i].type = re->type;
        ents[i].has_data = re->len != 0;
        ents[i].data.len = re->len;
        ents[i].data.data = (uint8_t *)re->data;
        e->ptrs[i] = &ents[i];
    }
    rm->n_entries = m->n_entries;
    rm->entries = (Raftkv__Peer__Entry **)e->ptrs;
    if (m->type == RAFT_MSG_SNAPSHOT) {
        raftkv__peer__snapshot_meta__init(&x->sm);
        x->sm.has_index = 1;
        x->sm.index = m->snap.index;
        x->sm.has_term = 1;
        x->sm.term = m->snap.term;
        for (uint32_t i = 0; i < m->snap.conf.n; i++) {
            raftkv__peer__conf_member__init(&x->members[i]);
            x->members[i].has_id = 1;
            x->members[i].id = m->snap.conf.m[i].id;
            x->members[i].has_role = 1;
            x->members[i].role = m->snap.conf.m[i].role;
            x->member_ptrs[i] = &x->members[i];
        }
        x->sm.n_members = m->snap.conf.n;
        x->sm.members = x->member_ptrs;
        rm->snapshot = &x->sm;
        if (chunk) {
            rm->has_snapshot_offset = 1;
            rm->snapshot_offset = chunk->offset;
            rm->has_snapshot_size = 1;
            rm->snapshot_size = chunk->total;
            rm->has_snapshot_chunk = 1;
            rm->snapshot_chunk.data = (uint8_t *)chunk->data;
            rm->snapshot_chunk.len = chunk->len;
            rm->has_snapshot_last = 1;
            rm->snapshot_last = chunk->last;
            rm->has_snapshot_crc = chunk->has_crc;
            rm->snapshot_crc = chunk->crc;
        }
    }
    return &x->pm.base;
}

static int bad(char *why, size_t whylen, const char *reason)
{
    if (why && whylen)
        snprintf(why, whylen, "%s", reason);
    return PEER_DECODE_BAD;
}

void peer_cluster_id_hex(const uint8_t *id, size_t len, char out[2 * PEER_CLUSTER_ID_LEN + 1])
{
    if (len != PEER_CLUSTER_ID_LEN) {
        snprintf(out, 2 * PEER_CLUSTER_ID_LEN + 1, len ? "(%zu bytes)" : "none", len);
        return;
    }
    for (size_t i = 0; i < PEER_CLUSTER_ID_LEN; i++)
        snprintf(out + 2 * i, 3, "%02x", id[i]);
}

/* Name and id must both match: equal default names are common, and an id
 * missing (a binary older than cluster ids) is as foreign as a different one. */
static bool same_cluster(const Raftkv__Peer__PeerMessage *pm, const struct peer_ident *self,
                         char *why, size_t whylen)
{
    bool id_ok = pm->has_cluster_id && pm->cluster_id.len == PEER_CLUSTER_ID_LEN &&
                 memcmp(pm->cluster_id.data, self->cluster_id, PEER_CLUSTER_ID_LEN) == 0;
    if (pm->cluster && strcmp(pm->cluster, self->cluster) == 0 && id_ok)
        return true;
    if (why && whylen) {
        char theirs[2 * PEER_CLUSTER_ID_LEN + 1], ours[2 * PEER_CLUSTER_ID_LEN + 1];
        peer_cluster_id_hex(pm->has_cluster_id ? pm->cluster_id.data : NULL,
                            pm->has_cluster_id ? pm->cluster_id.len : 0, theirs);
        peer_cluster_id_hex(self->cluster_id, PEER_CLUSTER_ID_LEN, ours);
        snprintf(why, whylen, "node %llu of cluster '%s' id %s, this is cluster '%s' id %s",
                 (unsigned long long)pm->from_id, pm->cluster ? pm->cluster : "", theirs,
                 self->cluster, ours);
    }
    return false;
}

int peer_decode(const uint8_t *buf, size_t len, const struct peer_ident *self,
                struct peer_decoded *out, char *why, size_t whylen)
{
    memset(out, 0, sizeof(*out));
    Raftkv__Peer__PeerMessage *pm = raftkv__peer__peer_message__unpack(NULL, len, buf);
    if (!pm)
        return bad(why, whylen, "undecodable peer message");
    out->pb = pm;
    if (!same_cluster(pm, self, why, whylen)) {
        peer_decoded_free(out);
        return PEER_DECODE_CLUSTER;
    }
    int rv = PEER_DECODE_BAD;
    const char *reason = NULL;
    out->from_id = pm->from_id;
    out->incarnation = pm->incarnation;
    if (!pm->from_id) {
        reason = "sender id missing";
        goto fail;
    }
    if (pm->body_case == RAFTKV__PEER__PEER_MESSAGE__BODY_PROBE && pm->probe) {
        out->body = PEER_BODY_PROBE;
        return PEER_DECODE_OK;
    }
    if (pm->body_case == RAFTKV__PEER__PEER_MESSAGE__BODY_PROBE_REPLY && pm->probe_reply) {
        const Raftkv__Peer__ProbeReply *pr = pm->probe_reply;
        if ((pr->state != PEER_PROBE_EMPTY && pr->state != PEER_PROBE_DATA) ||
            (pr->is_member && pr->role != RAFT_VOTER && pr->role != RAFT_LEARNER)) {
            reason = "malformed probe reply";
            goto fail;
        }
        out->body = PEER_BODY_PROBE_REPLY;
        out->reply = (struct peer_probe_reply){
            .state = pr->state, .term = pr->term, .commit = pr->commit,
            .is_member = pr->is_member, .role = pr->role,
            .recorded_incarnation = pr->recorded_incarnation};
        return PEER_DECODE_OK;
    }
    const Raftkv__Peer__RaftMessage *rm = pm->raft;
    out->body = PEER_BODY_RAFT;
    if (pm->body_case != RAFTKV__PEER__PEER_MESSAGE__BODY_RAFT || !rm) {
        reason = "peer message without a body";
        goto fail;
    }
    struct raft_msg *m = &out->msg;
    if (rm->type == RAFT_MSG_NONE || rm->type >= RAFT_MSG_TYPE_COUNT) {
        reason = "unknown raft message type";
        goto fail;
    }
    if (!rm->from || rm->from != pm->from_id) {
        reason = "sender id missing or inconsistent";
        goto fail;
    }
    m->type = (uint8_t)rm->type;
    m->from = rm->from;
    m->to = rm->to;
    m->term = rm->term;
    m->index = rm->index;
    m->log_term = rm->log_term;
    m->commit = rm->commit;
    m->reject = rm->reject;
    m->hint_index = rm->hint_index;
    m->hint_term = rm->hint_term;
    m->ctx = rm->ctx;
    if (rm->n_entries) {
        if (m->type != RAFT_MSG_APPEND || rm->n_entries > UINT32_MAX) {
            reason = "entries on a message that carries none";
            goto fail;
        }
        out->ents = calloc(rm->n_entries, sizeof(*out->ents));
        if (!out->ents) {
            rv = PEER_DECODE_NOMEM;
            reason = "out of memory";
            goto fail;
        }
        for (size_t i = 0; i < rm->n_entries; i++) {
            const Raftkv__Peer__Entry *pe = rm->entries[i];
            if (pe->type > RAFT_ENTRY_CONF || pe->data.len > UINT32_MAX) {
                reason = "bad entry";
                goto fail;
            }
            out->ents[i].term = pe->term;
            out->ents[i].index = pe->index;
            out->ents[i].type = (uint8_t)pe->type;
            out->ents[i].data = pe->data.data;
            out->ents[i].len = (uint32_t)pe->data.len;
        }
        m->entries = out->ents;
        m->n_entries = (uint32_t)rm->n_entries;
    }
    if (m->type == RAFT_MSG_SNAPSHOT) {
        const Raftkv__Peer__SnapshotMeta *sm = rm->snapshot;
        if (!sm || sm->n_members > RAFT_MAX_MEMBERS || sm->index == 0) {
            reason = "snapshot without valid metadata";
            goto fail;
        }
        m->snap.index = sm->index;
        m->snap.term = sm->term;
        m->snap.conf.n = (uint32_t)sm->n_members;
        for (size_t i = 0; i < sm->n_members; i++) {
            uint32_t role = sm->members[i]->role;
            if (!sm->members[i]->id || (role != RAFT_VOTER && role != RAFT_LEARNER)) {
                reason = "snapshot membership is malformed";
                goto fail;
            }
            m->snap.conf.m[i].id = sm->members[i]->id;
            m->snap.conf.m[i].role = (uint8_t)role;
        }
        if (rm->has_snapshot_chunk) {
            struct peer_chunk *c = &out->chunk;
            c->offset = rm->snapshot_offset;
            c->total = rm->snapshot_size;
            c->data = rm->snapshot_chunk.data;
            c->len = rm->snapshot_chunk.len;
            c->last = rm->snapshot_last;
            c->has_crc = rm->has_snapshot_crc;
            c->crc = rm->snapshot_crc;
            if (c->offset > c->total || c->len > c->total - c->offset ||
                (c->last && c->offset + c->len != c->total)) {
                reason = "snapshot chunk out of bounds";
                goto fail;
            }
            out->has_chunk = true;
        }
    }
    return PEER_DECODE_OK;
fail:
    bad(why, whylen, reason);
    peer_decoded_free(out);
    return rv;
}

void *peer_decoded_take_chunk(struct peer_decoded *d)
{
    Raftkv__Peer__PeerMessage *pm = d->pb;
    if (!d->has_chunk || !pm || !pm->raft || !pm->raft->snapshot_chunk.data)
        return NULL;
    /* protobuf-c copied the bytes into a block of their own (the default
     * allocator is malloc), and frees it only if the field still holds it. */
    void *p = pm->raft->snapshot_chunk.data;
    pm->raft->snapshot_chunk.data = NULL;
    pm->raft->snapshot_chunk.len = 0;
    return p;
}

void peer_decoded_free(struct peer_decoded *d)
{
    if (d->pb)
        raftkv__peer__peer_message__free_unpacked(d->pb, NULL);
    free(d->ents);
    memset(d, 0, sizeof(*d));
}
