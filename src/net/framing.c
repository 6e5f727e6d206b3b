/* framing.c - length-prefixed frame encoding and the in-place incremental
 * decoder.  The decoder never trusts a length prefix beyond max_frame, so a
 * hostile peer can make it hold at most max_frame + one read chunk, and
 * never much more than twice what it actually sent. */
#include "net/framing.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* A connection's reads start with room for 4 KiB and double, up to 64 KiB,
 * each time one fills all the room it had: a busy connection soon reads
 * many frames at once, while each of thousands of idle or trickling ones
 * holds 4 KiB.  Memory allocated is memory resident once the heap is in
 * huge pages (node/hugepages.c), touched or not. */
#define MIN_CHUNK (4u * 1024u)
#define READ_CHUNK (64u * 1024u)
/* An idle buffer bigger than this is given back: one large frame must not
 * pin megabytes on every connection that ever carried one. */
#define SHRINK_ABOVE (4u * READ_CHUNK)

void net_frame_put_header(uint8_t hdr[NET_FRAME_HDR], uint32_t len)
{
    hdr[0] = (uint8_t)(len >> 24);
    hdr[1] = (uint8_t)(len >> 16);
    hdr[2] = (uint8_t)(len >> 8);
    hdr[3] = (uint8_t)len;
}

uint32_t net_frame_get_header(const uint8_t hdr[NET_FRAME_HDR])
{
    return (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
}

int64_t net_frame_encode(uint8_t *out, size_t cap, const void *payload, size_t len, size_t max_frame)
{
    if (len > max_frame || len > NET_FRAME_MAX_LIMIT)
        return -EMSGSIZE;
    if (cap < NET_FRAME_HDR + len)
        return -ENOSPC;
    net_frame_put_header(out, (uint32_t)len);
    if (len)
        memcpy(out + NET_FRAME_HDR, payload, len);
    return (int64_t)(NET_FRAME_HDR + len);
}

void net_decoder_init(struct net_decoder *d, size_t max_frame)
{
    memset(d, 0, sizeof(*d));
    d->max_frame = max_frame < NET_FRAME_MAX_LIMIT ? max_frame : NET_FRAME_MAX_LIMIT;
}

void net_decoder_free(struct net_decoder *d)
{
    free(d->buf);
    net_decoder_init(d, d->max_frame);
}

size_t net_decoder_buffered(const struct net_decoder *d)
{
    return d->end - d->start;
}

/* Bytes still missing from the frame at the front, if its length is known
 * and acceptable; 0 otherwise. */
static size_t frame_remaining(const struct net_decoder *d)
{
    size_t have = d->end - d->start;

    if (have < NET_FRAME_HDR)
        return 0;
    uint32_t len = net_frame_get_header(d->buf + d->start);
    if (len > d->max_frame || have >= NET_FRAME_HDR + (size_t)len)
        return 0;
    return NET_FRAME_HDR + len - have;
}

int net_decoder_space(struct net_decoder *d, size_t want, uint8_t **space, size_t *avail)
{
    size_t have = d->end - d->start, rem = frame_remaining(d);
    /* The length prefix is only the peer's claim: reserve at most as much
     * again as has arrived (or as the caller wants), so a peer that
     * announces max_frame and then trickles bytes makes us hold about what
     * it sent, while a real large frame costs a few doublings.  Asking for
     * a fixed chunk instead would regrow (and realloc would copy, touching
     * every page) on each trickled byte. */
    size_t ahead = have > want ? have : want;
    if (rem > ahead)
        rem = ahead;
    size_t need = want > rem ? want : rem;

    size_t chunk = d->chunk ? d->chunk : MIN_CHUNK;
    if (need == 0)
        need = chunk;
    if (have == 0) {
        d->start = d->end = 0;
        if (d->cap > SHRINK_ABOVE && need <= READ_CHUNK) {
            free(d->buf);
            d->buf = NULL;
            d->cap = 0;
        }
    }
    if (d->cap - d->end < need) {
        if (d->start) {
            memmove(d->buf, d->buf + d->start, have);
            d->start = 0;
            d->end = have;
        }
        if (d->cap - d->end < need) {
            /* A chunk more than needed, so a peer trickling bytes into a
             * frame does not cost a realloc (and a copy) per byte. */
            size_t ncap = have + need + chunk;
            uint8_t *nb = realloc(d->buf, ncap);
            if (!nb)
                return -ENOMEM;
            d->buf = nb;
            d->cap = ncap;
        }
    }
    *space = d->buf + d->end;
    *avail = d->cap - d->end;
    return 0;
}

void net_decoder_commit(struct net_decoder *d, size_t n)
{
    d->end += n;
    if (n && d->end == d->cap && d->chunk < READ_CHUNK)
        d->chunk = (d->chunk ? d->chunk : MIN_CHUNK) * 2;
}

int net_decoder_feed(struct net_decoder *d, const void *data, size_t len)
{
    while (len) {
        uint8_t *space;
        size_t avail;
        int r = net_decoder_space(d, len, &space, &avail);
        if (r < 0)
            return r;
        size_t n = avail < len ? avail : len;
        memcpy(space, data, n);
        net_decoder_commit(d, n);
        data = (const uint8_t *)data + n;
        len -= n;
    }
    return 0;
}

int net_decoder_next(struct net_decoder *d, const uint8_t **payload, size_t *len)
{
    size_t have = d->end - d->start;

    if (d->failed)
        return -EMSGSIZE;
    if (have < NET_FRAME_HDR)
        return 0;
    uint32_t n = net_frame_get_header(d->buf + d->start);
    if (n > d->max_frame) {
        d->failed = true;
        return -EMSGSIZE;
    }
    if (have < NET_FRAME_HDR + (size_t)n)
        return 0;
    *payload = d->buf + d->start + NET_FRAME_HDR;
    *len = n;
    d->start += NET_FRAME_HDR + n;
    return 1;
}
