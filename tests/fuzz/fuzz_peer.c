/* fuzz_peer.c - libFuzzer target: a peer frame (src/node/peer_codec.h
 * peer_decode), for cluster "fuzz" with the all-zero id.  Decoded messages are walked (entries,
 * snapshot chunk) and freed. */
#include <stdint.h>

#include "node/peer_codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct peer_decoded d;
    char why[256];
    static const uint8_t zero_id[PEER_CLUSTER_ID_LEN];
    const struct peer_ident self = {.cluster = "fuzz", .cluster_id = zero_id, .incarnation = 1};
    if (peer_decode(data, size, &self, &d, why, sizeof(why)) != PEER_DECODE_OK)
        return 0;
    volatile uint64_t sink = d.msg.term + d.incarnation + d.reply.term;
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
