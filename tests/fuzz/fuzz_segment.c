/* fuzz_segment.c - libFuzzer target: log segment recovery.  The input is
 * written as log/<first>.seg of an empty data dir (first taken from the
 * segment header's first-index field when the input is long enough, else 1)
 * and the dir is opened with store_open(): CRC checks, torn-tail cutting,
 * refusal of other damage; whatever is recovered is read back.  Each input
 * is tried as given and again with every CRC32C it holds recomputed (header,
 * then each record's header and data as far as the lengths lead), so
 * mutations also reach the checks behind the checksums. */
#include <inttypes.h>

#include "common/crc32c.h"
#include "common/endian.h"
#include "store_dir.h"

#define SEG_HDR 32 /* src/store/internal.h */
#define REC_HDR 32

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void run(const uint8_t *data, size_t size)
{
    uint64_t first = size >= 24 ? get_le64(data + 16) : 1;
    char name[32];
    snprintf(name, sizeof(name), "%020" PRIu64 ".seg", first);
    store_dir_run("log", name, data, size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    run(data, size);
    if (size < SEG_HDR)
        return 0;
    uint8_t *fixed = malloc(size);
    if (!fixed)
        return 0;
    memcpy(fixed, data, size);
    put_le32(fixed + 28, crc32c(0, fixed, 28));
    size_t off = SEG_HDR;
    while (size - off >= REC_HDR) {
        uint8_t *h = fixed + off;
        uint32_t len = get_le32(h + 4);
        size_t dlen = len <= size - off - REC_HDR ? len : size - off - REC_HDR;
        put_le32(h + 28, crc32c(0, h + REC_HDR, dlen));
        put_le32(h, crc32c(0, h + 4, REC_HDR - 4));
        off += REC_HDR + dlen;
    }
    if (memcmp(fixed, data, size) != 0)
        run(fixed, size);
    free(fixed);
    return 0;
}
