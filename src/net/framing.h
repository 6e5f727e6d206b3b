/* framing.h - the one framing of every raftkv socket: a 4-byte big-endian
 * payload length, then the payload (one protobuf message).  Pure code over
 * byte buffers, no I/O, so it can be unit-tested and fuzzed on its own. */
#ifndef RAFTKV_NET_FRAMING_H
#define RAFTKV_NET_FRAMING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NET_FRAME_HDR 4u
#define NET_FRAME_MAX_LIMIT 0x7fffffffu /* hard ceiling for any max_frame */

/* Writes the header for a payload of len bytes. */
void net_frame_put_header(uint8_t hdr[NET_FRAME_HDR], uint32_t len);
uint32_t net_frame_get_header(const uint8_t hdr[NET_FRAME_HDR]);

/* Header + payload into out.  Returns NET_FRAME_HDR + len, -EMSGSIZE if len
 * exceeds max_frame, -ENOSPC if out is too small. */
int64_t net_frame_encode(uint8_t *out, size_t cap, const void *payload, size_t len, size_t max_frame);

/* Incremental decoder that owns its input buffer, so bytes can be read
 * straight into it (net_decoder_space, net_decoder_commit) and frames handed out in
 * place without a copy.  Arbitrary splits of the stream give the same
 * frames.  Memory is bounded by max_frame + a read chunk. */
struct net_decoder {
    uint8_t *buf;
    size_t cap, start, end; /* unconsumed bytes are buf[start..end) */
    size_t max_frame;
    size_t chunk;           /* room a read gets by default; 0: the smallest */
    bool failed;            /* oversize seen: the stream is unusable */
};

void net_decoder_init(struct net_decoder *d, size_t max_frame);
void net_decoder_free(struct net_decoder *d);

/* Room to read into at the end of the buffer: at least want bytes and,
 * of what the frame in progress still needs, up to as much again as is
 * buffered (want 0: a read chunk, 4 KiB at first and doubled up to 64 KiB
 * each time a commit fills the room); *avail may be more.  Compacts or
 * grows the buffer.  -ENOMEM. */
int net_decoder_space(struct net_decoder *d, size_t want, uint8_t **space, size_t *avail);
/* n bytes were written at the pointer net_decoder_space returned. */
void net_decoder_commit(struct net_decoder *d, size_t n);

/* Copying convenience: net_decoder_space + memcpy + commit.  -ENOMEM. */
int net_decoder_feed(struct net_decoder *d, const void *data, size_t len);

/* The next complete frame: 1 with payload and len set (valid until the next
 * space/feed call), 0 when more bytes are needed, -EMSGSIZE when the length
 * prefix exceeds max_frame (and from then on). */
int net_decoder_next(struct net_decoder *d, const uint8_t **payload, size_t *len);

/* Bytes received but not yet returned as frames. */
size_t net_decoder_buffered(const struct net_decoder *d);

#endif
