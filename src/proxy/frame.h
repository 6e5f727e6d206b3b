/* frame.h - the proxy's frame router: the few top-level fields of a
 * Request or Response (proto/raftkv.proto) it routes on, read straight from
 * the wire bytes, and the cut that lets it re-address a frame (its own id
 * and session in, the client's out, and back) by copying bytes instead of
 * decoding and re-encoding the protobuf.  Pure code over buffers, no I/O,
 * no allocation: fuzzed against protobuf-c by tests/fuzz/fuzz_pxframe.c. */
#ifndef RAFTKV_PROXY_FRAME_H
#define RAFTKV_PROXY_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Occurrences of the cut fields a frame may carry and still be relayed by
 * copying; a frame with more (legal, but no client sends it) goes the
 * decoding path. */
#define PXFRAME_MAX_CUTS 6
/* The longest prefix pxframe_put_header writes: three varint fields. */
#define PXFRAME_HEADER_MAX 33

/* Byte ranges of the frame that the re-addressed frame leaves out. */
struct pxframe_cuts {
    size_t n;
    size_t start[PXFRAME_MAX_CUTS], end[PXFRAME_MAX_CUTS];
    bool overflow; /* more than PXFRAME_MAX_CUTS: do not relay by copying */
};

/* Request: id (1), client_id (2), sequence (3) and timeout_ms (4), last
 * occurrence wins as in any protobuf parser; op is the number of the last
 * oneof member present (10 get .. 19 metrics), 0 if none.  cuts: every
 * occurrence of fields 1-3. */
struct pxframe_request {
    uint64_t id, client_id, sequence;
    uint32_t timeout_ms;
    uint32_t op;
    struct pxframe_cuts cuts;
};

/* Response: id (1), status (2), whether a leader hint (4 or 5) is present,
 * the result member (10..19, 0 none).  cuts: every occurrence of field 1. */
struct pxframe_response {
    uint64_t id;
    int32_t status;
    bool has_id, has_leader_hint;
    uint32_t result;
    struct pxframe_cuts cuts;
};

/* 0, or -EPROTO when b is not a well-formed protobuf message at the top
 * level (bad varint or tag, a length past the end, a group, a known field
 * with the wrong wire type).  Nested messages are not looked into. */
int pxframe_scan_request(const uint8_t *b, size_t len, struct pxframe_request *r);
int pxframe_scan_response(const uint8_t *b, size_t len, struct pxframe_response *r);

/* Would protobuf-c unpack b as a message of type d?  A walk over the wire
 * bytes that checks each known field's wire type against d and descends
 * into nested messages, without building anything.  false also for some
 * frames protobuf-c would take (groups, required fields, packed repeated
 * fields, nesting deeper than 32): the caller then decodes for real.
 * true only if protobuf-c accepts it (fuzz-pxframe holds it to that). */
struct ProtobufCMessageDescriptor;
bool pxframe_valid(const struct ProtobufCMessageDescriptor *d, const uint8_t *b, size_t len);

/* Copies b minus the cuts to out (room for len bytes); returns the length. */
size_t pxframe_copy_uncut(const uint8_t *b, size_t len, const struct pxframe_cuts *c, uint8_t *out);
/* The pieces of b minus the cuts, at most PXFRAME_MAX_CUTS + 1; returns n. */
struct iovec;
size_t pxframe_uncut_iov(const uint8_t *b, size_t len, const struct pxframe_cuts *c, struct iovec *iov);

/* The fields put in front of a cut frame: id (field 1), and client_id (2)
 * and sequence (3) when client_id is not 0.  Returns the length, at most
 * PXFRAME_HEADER_MAX. */
size_t pxframe_put_header(uint8_t out[PXFRAME_HEADER_MAX], uint64_t id, uint64_t client_id, uint64_t sequence);

#endif
