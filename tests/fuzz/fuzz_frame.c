/* fuzz_frame.c - libFuzzer target: the frame decoder (src/net/framing.h).
 * The first input byte picks max_frame and a chunk-size seed; the rest is
 * fed to a net_decoder in varying chunk sizes, draining frames after each
 * chunk.  Checks that frames are never longer than max_frame and that the
 * zero-copy path (space + commit) agrees with the copying one. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "net/framing.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t drain(struct net_decoder *d, size_t max_frame)
{
    size_t frames = 0;
    const uint8_t *p;
    size_t len;
    int rc;
    while ((rc = net_decoder_next(d, &p, &len)) == 1) {
        assert(len <= max_frame);
        frames++;
    }
    assert(rc == 0 || rc < 0);
    return frames;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const size_t maxes[] = {0, 1, 4, 16, 255, 4096, 65536, 1u << 20};
    size_t max_frame = maxes[data[0] & 7];
    unsigned chunk_seed = data[0] >> 3;
    data++;
    size--;

    /* copying path, chunk sizes varying with the seed */
    struct net_decoder d;
    net_decoder_init(&d, max_frame);
    size_t off = 0, n = 0, frames_a = 0;
    while (off < size) {
        size_t chunk = 1 + ((chunk_seed + n * 7) % 13);
        if (chunk > size - off)
            chunk = size - off;
        if (net_decoder_feed(&d, data + off, chunk) < 0)
            break;
        off += chunk;
        n++;
        frames_a += drain(&d, max_frame);
    }
    net_decoder_free(&d);

    /* zero-copy path, as the connection code reads */
    net_decoder_init(&d, max_frame);
    off = 0;
    size_t frames_b = 0;
    while (off < size) {
        uint8_t *space;
        size_t avail;
        if (net_decoder_space(&d, 0, &space, &avail) < 0)
            break;
        size_t chunk = size - off < avail ? size - off : avail;
        memcpy(space, data + off, chunk);
        net_decoder_commit(&d, chunk);
        off += chunk;
        frames_b += drain(&d, max_frame);
    }
    net_decoder_free(&d);
    /* Both paths see the same stream, so the same frames (an oversize
     * header stops both at the same point). */
    assert(frames_a == frames_b || off < size);
    return 0;
}
