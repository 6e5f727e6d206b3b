/* prng.h - the simulator's only source of randomness and hashing.
 * xoshiro256** seeded through splitmix64: a seed number replays the exact
 * same schedule on any machine and libc (rand() is neither), and integer
 * parts-per-million probabilities keep floating point out of the schedule. */
#ifndef SIM_PRNG_H
#define SIM_PRNG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct prng {
    uint64_t s[4];
};

static inline uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* A good 64-bit finalizer: used to hash entries and build the history chain. */
static inline uint64_t mix64(uint64_t x)
{
    uint64_t t = x;
    return splitmix64(&t);
}

static inline void prng_seed(struct prng *p, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        p->s[i] = splitmix64(&x);
}

static inline uint64_t prng_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static inline uint64_t prng_next(struct prng *p)
{
    uint64_t *s = p->s;
    uint64_t result = prng_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = prng_rotl(s[3], 45);
    return result;
}

/* Uniform in [0, n); 0 when n == 0.  Lemire's multiply-shift: no modulo bias
 * worth caring about at these ranges, and no loop. */
static inline uint64_t prng_below(struct prng *p, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)prng_next(p) * n) >> 64);
}

/* Uniform in [lo, hi], inclusive. */
static inline uint64_t prng_range(struct prng *p, uint64_t lo, uint64_t hi)
{
    return lo + prng_below(p, hi - lo + 1);
}

/* True with probability ppm / 1,000,000. */
static inline bool prng_chance(struct prng *p, uint32_t ppm)
{
    return prng_below(p, 1000000) < ppm;
}

/* Word at a time: the invariant checks hash every in-memory entry of every
 * node that changed in a step, so this is the simulator's hottest loop. */
static inline uint64_t hash_bytes(uint64_t h, const void *data, size_t len)
{
    const uint8_t *b = data;
    h ^= len * 0x9e3779b97f4a7c15ULL;
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, b, 8);
        h = prng_rotl((h ^ w) * 0xff51afd7ed558ccdULL, 31);
        b += 8;
        len -= 8;
    }
    uint64_t w = 0;
    if (len)
        memcpy(&w, b, len);
    return mix64(h ^ w ^ ((uint64_t)len << 56));
}

#endif
