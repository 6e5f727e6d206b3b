/* fuzz_snapshot.c - libFuzzer target: loading a kv snapshot
 * (kv_snapshot_load).  Each input is loaded as given and again with its
 * trailing CRC32C recomputed, so mutations reach the parsing behind the
 * checksum.  A snapshot that loads is written back out. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crc_fix.h"
#include "kv/kv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int sink_write(void *ctx, const void *buf, size_t len)
{
    *(size_t *)ctx += len;
    return 0;
}

static void load(const uint8_t *data, size_t size)
{
    struct kv *kv = NULL;
    if (kv_snapshot_load(data, size, NULL, &kv) != KV_OK)
        return;
    size_t n = 0;
    (void)kv_snapshot_write(kv, sink_write, &n);
    kv_free(kv);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_with_trailing_crc(data, size, load);
    return 0;
}
