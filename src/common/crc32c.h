/* crc32c.h - CRC-32C (Castagnoli), the checksum of every record, meta and
 * snapshot file.  Uses the SSE4.2 crc32 instruction when the CPU has it
 * (checked once at run time) and a slicing-by-8 table otherwise. */
#ifndef RAFTKV_COMMON_CRC32C_H
#define RAFTKV_COMMON_CRC32C_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Extend crc (0 to start) over buf; crc32c(crc32c(0, a), b) == crc32c(0, ab). */
uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

/* The table-driven path on its own, so tests can compare both paths. */
uint32_t crc32c_sw(uint32_t crc, const void *buf, size_t len);

/* Whether crc32c() uses the hardware instruction on this machine. */
bool crc32c_hw_available(void);

#endif
