/* fuzz_snapshot.c - libFuzzer target: loading a kv snapshot
 * (kv_snapshot_load).  A snapshot that loads must write back out. */
#include <stdint.h>

#include "kv/kv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int sink_write(void *ctx, const void *buf, size_t len)
{
    *(size_t *)ctx += len;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct kv *kv = NULL;
    if (kv_snapshot_load(data, size, NULL, &kv) != KV_OK)
        return 0;
    size_t n = 0;
    (void)kv_snapshot_write(kv, sink_write, &n);
    kv_free(kv);
    return 0;
}
