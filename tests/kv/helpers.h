/* helpers.h - what the kv tests share: a seeded PRNG, encoding and applying
 * a command in one call, and capturing a whole snapshot in memory. */
#ifndef RAFTKV_TESTS_KV_HELPERS_H
#define RAFTKV_TESTS_KV_HELPERS_H

#include "kv/kv.h"

#include <stddef.h>
#include <stdint.h>

/* splitmix64: small, seedable, same sequence everywhere. */
static inline uint64_t test_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Encodes cmd into a fresh buffer (asserting it is valid); free() it. */
uint8_t *encode_cmd(const struct kv_command *cmd, size_t *len);

/* Encodes and applies cmd at index, asserting kv_apply returned KV_OK. */
void apply_cmd(struct kv *kv, uint64_t index, const struct kv_command *cmd,
               struct kv_result *res);

/* SET/DEL/CAS with a session in one line each, for readable scenarios. */
struct kv_command cmd_set(const char *key, const char *val, uint64_t client,
                          uint64_t seq, uint64_t time_ms);
struct kv_command cmd_del(const char *key, uint64_t client, uint64_t seq,
                          uint64_t time_ms);
/* expected NULL: expect absent. */
struct kv_command cmd_cas(const char *key, const char *expected, const char *val,
                          uint64_t client, uint64_t seq, uint64_t time_ms);

/* The whole snapshot of kv, malloc'd; free() it. */
uint8_t *snapshot_bytes(const struct kv *kv, size_t *len);

/* Asserts that a and b write byte-identical snapshots: the same state. */
void assert_same_state(const struct kv *a, const struct kv *b);

/* Asserts the value stored under key (NULL: asserts it is absent). */
void assert_value(const struct kv *kv, const char *key, const char *val);

#endif
