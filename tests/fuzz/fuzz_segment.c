/* fuzz_segment.c - libFuzzer target: log segment recovery.  The input is
 * written as log/<first>.seg of an empty data dir (first taken from the
 * segment header's first-index field when the input is long enough, else 1)
 * and the dir is opened with store_open(): CRC checks, torn-tail cutting,
 * refusal of other damage; whatever is recovered is read back. */
#include <inttypes.h>

#include "common/endian.h"
#include "store_dir.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t first = size >= 24 ? get_le64(data + 16) : 1;
    char name[32];
    snprintf(name, sizeof(name), "%020" PRIu64 ".seg", first);
    store_dir_run("log", name, data, size);
    return 0;
}
