/* crc_fix.h - shared by the fuzz targets whose input ends in a CRC32C of
 * everything before it: run the check on the input as given, then again
 * with that trailing CRC recomputed, so mutations also reach the parsing
 * behind the checksum. */
#ifndef RAFTKV_FUZZ_CRC_FIX_H
#define RAFTKV_FUZZ_CRC_FIX_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/crc32c.h"
#include "common/endian.h"

static inline void fuzz_with_trailing_crc(const uint8_t *data, size_t size,
                                          void (*check)(const uint8_t *, size_t))
{
    check(data, size);
    if (size < 4)
        return;
    uint8_t *fixed = malloc(size);
    if (!fixed)
        return;
    memcpy(fixed, data, size);
    put_le32(fixed + size - 4, crc32c(0, fixed, size - 4));
    check(fixed, size);
    free(fixed);
}

#endif
