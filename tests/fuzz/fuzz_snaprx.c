/* fuzz_snaprx.c - libFuzzer target: the snapshot chunk receiver
 * (src/node/snapxfer.h snaprx_chunk, then snaprx_finish) fed any sequence of chunks, from two
 * connections, over a real store in a temporary directory.  Each input is a
 * series of records:
 *   u8 flags: bit 0 connection B, bit 1 last, bit 2 has a CRC, bit 3 the CRC
 *             is the right one for what this connection sent since its
 *             last offset 0 (so the loader is reached), bit 4 offset = bytes received so far, bits 5-6
 *             snapshot index 1..4
 *   u16 offset, u16 total (little-endian), u8 len, then len data bytes
 * The peer decoder's guarantees hold as they do on the wire (offset <=
 * total, offset + len <= total, last means offset + len == total); nothing
 * else is assumed.  The receiver must never crash, leak, or hand over a
 * snapshot whose bytes do not match the CRC it was sent with. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "common/crc32c.h"
#include "common/log.h"
#include "kv/kv.h"
#include "node/snapxfer.h"
#include "node/storage_store.h"
#include "store_dir.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct storage_store *ss;
static struct replica_storage ops;
static char dir[64];

static void cleanup(void)
{
    if (ops.close)
        ops.close(ops.arg);
    store_dir_remove(dir);
}

static void setup(void)
{
    snprintf(dir, sizeof(dir), "%s/raftkv-fuzz-snaprx-XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    if (!mkdtemp(dir))
        abort();
    log_set_level(LOG_ERR); /* every dropped transfer logs a line */
    struct storage_store_hooks hooks = {0};
    char err[256];
    if (storage_store_open(&ss, &ops, dir, 0, &hooks, err, sizeof(err)) < 0) {
        fprintf(stderr, "fuzz-snaprx: %s\n", err);
        abort();
    }
    atexit(cleanup);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ss)
        setup();
    static const int owners[2];
    struct snap_rx rx;
    snaprx_init(&rx, NULL, NULL, NULL); /* no thread: every chunk written at once */
    struct kv_config kvc = {.session_ttl_ms = 600000, .max_sessions = 100};
    uint32_t crc[2] = {0, 0}; /* per connection: of what it sent since offset 0 */
    size_t p = 0;
    while (size - p >= 6) {
        uint8_t fl = data[p];
        uint64_t off = data[p + 1] | (uint64_t)data[p + 2] << 8;
        uint64_t total = data[p + 3] | (uint64_t)data[p + 4] << 8;
        size_t len = data[p + 5];
        p += 6;
        if (len > size - p)
            len = size - p;
        if (fl & 0x10)
            off = rx.got;
        if (off > total)
            total = off;
        if (len > total - off)
            len = (size_t)(total - off);
        bool last = fl & 0x02;
        if (last)
            total = off + len;
        unsigned o = fl & 1;
        if (off == 0)
            crc[o] = 0;
        uint32_t next_crc = crc32c(crc[o], data + p, len);
        struct raft_msg m = {.type = RAFT_MSG_SNAPSHOT, .from = 2, .to = 1, .term = 3};
        m.snap.index = 1 + ((fl >> 5) & 3);
        m.snap.term = 2;
        m.snap.conf.n = 1;
        m.snap.conf.m[0].id = 1;
        m.snap.conf.m[0].role = RAFT_VOTER;
        struct peer_chunk c = {.offset = off, .total = total, .data = data + p, .len = len,
                               .last = last, .has_crc = fl & 0x04,
                               .crc = (fl & 0x08) ? next_crc : 0x12345678u};
        struct kv *kv = NULL;
        int rv = snaprx_chunk(&rx, ss, &owners[o], &m, &c, NULL, 0.0);
        if (rv == SNAPRX_LAST) {
            rv = snaprx_finish(&rx, ss, &kvc, &kv);
            snaprx_finished(&rx);
        }
        if (rv == SNAPRX_DONE) {
            /* handed over: it must be what was sent, if a CRC said so */
            if (c.has_crc && !(fl & 0x08))
                abort();
            kv_free(kv);
            if (ops.snapshot_discard)
                ops.snapshot_discard(ops.arg);
        } else if (kv) {
            abort(); /* a state machine only comes with SNAPRX_DONE */
        }
        crc[o] = next_crc;
        p += len;
    }
    snaprx_stop(&rx, "end of input");
    return 0;
}
