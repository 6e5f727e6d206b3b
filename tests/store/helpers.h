/* helpers.h - shared by the store tests: temporary data directories,
 * deterministic record contents and whole-file manipulation for damage. */
#ifndef RAFTKV_TESTS_STORE_HELPERS_H
#define RAFTKV_TESTS_STORE_HELPERS_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

/* A fresh directory under $TMPDIR (or /tmp); th_rmrf() removes it. */
char *th_tmpdir(const char *tag);
void th_rmrf(const char *path);
/* Copy every regular file of src (recursively) into dst (created). */
void th_copytree(const char *src, const char *dst);

/* Deterministic payload of a record: depends on index, term and salt, so a
 * record from an older term never compares equal to a newer one. */
uint32_t th_len(uint64_t index, uint64_t term, uint32_t salt, uint32_t maxlen);
void th_fill(uint8_t *buf, uint32_t len, uint64_t index, uint64_t term, uint32_t salt);
/* Build n records from first with the given term; buffers owned by the caller
 * (free th_recs_free). */
struct store_record *th_recs(uint64_t first, size_t n, uint64_t term, uint32_t salt,
                             uint32_t maxlen);
void th_recs_free(struct store_record *r, size_t n);
int th_rec_ok(const struct store_record *r, uint64_t term, uint32_t salt, uint32_t maxlen);

uint8_t *th_slurp(const char *path, size_t *len);
void th_spit(const char *path, const uint8_t *buf, size_t len);
/* Path of the n-th (0-based, sorted) segment file of a data dir, malloc'd. */
char *th_segment(const char *dir, int n);
int th_nsegments(const char *dir);

struct store *th_open(const char *dir, const struct store_options *o);
uint64_t th_rng(uint64_t *s);
/* The store's snapshot has meta's index, term and conf, and exactly data. */
void th_check_snapshot(struct store *st, const struct store_snap_meta *want, const void *data,
                       size_t len);

#endif
