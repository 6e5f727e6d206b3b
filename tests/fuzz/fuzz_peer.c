/* fuzz_peer.c - libFuzzer target: a peer frame (src/node/peer_codec.h
 * peer_decode), for cluster "fuzz".  Decoded messages are walked (entries,
 * snapshot chunk) and freed. */
#include <stdint.h>

#include "node/peer_codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct peer_decoded d;
    char why[256];
    if (peer_decode(data, size, "fuzz", &d, why, sizeof(why)) != PEER_DECODE_OK)
        return 0;
    volatile uint64_t sink = d.msg.term;
    for (uint32_t i = 0; i < d.msg.n_entries; i++) {
        const struct raft_entry *e = &d.msg.entries[i];
        sink += e->index + e->term + e->len;
        if (e->len)
            sink += e->data[0] + e->data[e->len - 1];
    }
    if (d.has_chunk && d.chunk.len)
        sink += d.chunk.data[0] + d.chunk.data[d.chunk.len - 1];
    if (d.msg.snap_len)
        sink += ((const uint8_t *)d.msg.snap_data)[d.msg.snap_len - 1];
    (void)sink;
    peer_decoded_free(&d);
    return 0;
}
