/* fuzz_meta.c - libFuzzer target: the hard-state file.  The input is the
 * `meta` file of an otherwise empty data dir, opened with store_open(); a
 * 40-byte input is tried again with its CRC32C (bytes 36..40) recomputed. */
#include <string.h>

#include "common/crc32c.h"
#include "common/endian.h"
#include "store_dir.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    store_dir_run(NULL, "meta", data, size);
    if (size == 40) {
        uint8_t fixed[40];
        memcpy(fixed, data, 40);
        put_le32(fixed + 36, crc32c(0, fixed, 36));
        if (memcmp(fixed, data, 40) != 0)
            store_dir_run(NULL, "meta", fixed, 40);
    }
    return 0;
}
