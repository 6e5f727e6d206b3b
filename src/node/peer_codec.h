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
};

/* Scratch reused across messages so encoding an AppendEntries of thousands
 * of entries does not allocate each time. */
struct peer_encoder {
    void *ents;  /* Raftkv__Peer__Entry[] */
    void **ptrs; /* Raftkv__Peer__Entry *[] */
    size_t cap;
    void *msg;   /* Raftkv__Peer__PeerMessage + its parts */
};

int peer_encoder_init(struct peer_encoder *e);
void peer_encoder_free(struct peer_encoder *e);
/* Build the wire message for m (and chunk, for SNAPSHOT); the result points
 * into e and into m and is valid until the next call. */
const struct ProtobufCMessage *peer_encode(struct peer_encoder *e, const char *cluster,
                                           const struct raft_msg *m,
                                           const struct peer_chunk *chunk);

struct peer_decoded {
    struct raft_msg msg;
    struct peer_chunk chunk; /* SNAPSHOT only */
    bool has_chunk;
    void *pb;                /* the unpacked message the pointers refer to */
    struct raft_entry *ents;
};

enum peer_decode_err {
    PEER_DECODE_OK = 0,
    PEER_DECODE_BAD = -1,     /* not a valid PeerMessage */
    PEER_DECODE_CLUSTER = -2, /* from another cluster */
    PEER_DECODE_NOMEM = -3,
};

/* Decode and validate one frame.  On success free with peer_decoded_free().
 * why (may be NULL) receives a short reason on failure. */
int peer_decode(const uint8_t *buf, size_t len, const char *cluster,
                struct peer_decoded *out, char *why, size_t whylen);
void peer_decoded_free(struct peer_decoded *d);

#endif
