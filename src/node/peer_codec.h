/* peer_codec.h - Raft messages to and from the peer wire format
 * (proto/peer.proto).  Pure functions over bytes: no sockets, so the decoder
 * can be fuzzed on its own.
 */
#ifndef RAFTKV_NODE_PEER_CODEC_H
#define RAFTKV_NODE_PEER_CODEC_H

#include "raft/raft.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ProtobufCMessage;

/* One snapshot chunk riding on a SNAPSHOT message. */
struct peer_chunk {
    uint64_t offset;
    uint64_t total;
    const uint8_t *data;
    size_t len;
    bool last;
    bool has_crc; /* crc32c of all total bytes (absent from older senders) */
    uint32_t crc;
};

/* Scratch reused across messages so encoding an AppendEntries of thousands
 * of entries does not allocate each time. */
struct peer_encoder {
    void *ents;  /* Raftkv__Peer__Entry[] */
    void **ptrs; /* Raftkv__Peer__Entry *[] */
    size_t cap;
    void *msg;   /* Raftkv__Peer__PeerMessage + its parts */
};

/* Who is talking: every message carries the sender's cluster name, cluster
 * id and data-directory incarnation; a receiver checks name and id. */
#define PEER_CLUSTER_ID_LEN 16
struct peer_ident {
    const char *cluster;
    const uint8_t *cluster_id; /* PEER_CLUSTER_ID_LEN bytes */
    uint64_t incarnation;
};

enum peer_probe_state { PEER_PROBE_EMPTY = 1, PEER_PROBE_DATA = 2 };

/* The answer to a Probe (see proto/peer.proto ProbeReply). */
struct peer_probe_reply {
    uint32_t state; /* enum peer_probe_state */
    uint64_t term, commit;
    bool is_member;
    uint32_t role;  /* enum raft_member_role when is_member */
    uint64_t recorded_incarnation;
};

enum peer_body { PEER_BODY_RAFT = 0, PEER_BODY_PROBE, PEER_BODY_PROBE_REPLY };

int peer_encoder_init(struct peer_encoder *e);
void peer_encoder_free(struct peer_encoder *e);
/* Build the wire message for m (and chunk, for SNAPSHOT); the result points
 * into e and into m and is valid until the next call. */
const struct ProtobufCMessage *peer_encode(struct peer_encoder *e, const struct peer_ident *id,
                                           const struct raft_msg *m,
                                           const struct peer_chunk *chunk);
/* A Probe (reply == NULL) or a ProbeReply from node `from`. */
const struct ProtobufCMessage *peer_encode_probe(struct peer_encoder *e, const struct peer_ident *id,
                                                 uint64_t from, const struct peer_probe_reply *reply);

struct peer_decoded {
    enum peer_body body;
    uint64_t from_id;
    uint64_t incarnation;    /* the sender's; 0 if it sent none */
    struct peer_probe_reply reply; /* PEER_BODY_PROBE_REPLY */
    struct raft_msg msg;     /* PEER_BODY_RAFT */
    struct peer_chunk chunk; /* SNAPSHOT only */
    bool has_chunk;
    void *pb;                /* the unpacked message the pointers refer to */
    struct raft_entry *ents;
};

enum peer_decode_err {
    PEER_DECODE_OK = 0,
    PEER_DECODE_BAD = -1,     /* not a valid PeerMessage */
    PEER_DECODE_CLUSTER = -2, /* from another cluster (name or id) */
    PEER_DECODE_NOMEM = -3,
};

/* Decode and validate one frame.  On success free with peer_decoded_free().
 * why (may be NULL) receives a short reason on failure. */
int peer_decode(const uint8_t *buf, size_t len, const struct peer_ident *self,
                struct peer_decoded *out, char *why, size_t whylen);
/* 32 hex digits and a NUL. */
void peer_cluster_id_hex(const uint8_t *id, size_t len, char out[2 * PEER_CLUSTER_ID_LEN + 1]);
void peer_decoded_free(struct peer_decoded *d);
/* Takes the heap block d->chunk.data points into out of d, which no
 * longer frees it: the caller free()s it.  NULL when d has no chunk data,
 * which then stays d's. */
void *peer_decoded_take_chunk(struct peer_decoded *d);

#endif
