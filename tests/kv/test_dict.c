/* test_dict.c - the ordered dictionary: basic operations on binary keys,
 * prefix listing and paging at their edges, B+tree invariants through
 * splits and merges at every level, and a seeded random run against a
 * sorted-array reference model. */
#include "helpers.h"
#include "kv/kv_int.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

static void test_basic(void **state)
{
    (void)state;
    struct kv_dict *d = kv_dict_new();
    const void *v;
    size_t vl;
    assert_int_equal(kv_dict_get(d, "a", 1, &v, &vl), KV_ENOTFOUND);
    assert_int_equal(kv_dict_del(d, "a", 1), KV_ENOTFOUND);
    assert_int_equal(kv_dict_set(d, "a", 1, "1", 1), KV_OK);
    assert_int_equal(kv_dict_set(d, "b", 1, "22", 2), KV_OK);
    assert_int_equal(kv_dict_count(d), 2);
    assert_int_equal(kv_dict_data_bytes(d), 5);
    assert_int_equal(kv_dict_set(d, "a", 1, "333", 3), KV_OK);
    assert_int_equal(kv_dict_count(d), 2);
    assert_int_equal(kv_dict_data_bytes(d), 7);
    assert_int_equal(kv_dict_get(d, "a", 1, &v, &vl), KV_OK);
    assert_int_equal(vl, 3);
    assert_memory_equal(v, "333", 3);
    assert_int_equal(kv_dict_del(d, "a", 1), KV_OK);
    assert_int_equal(kv_dict_get(d, "a", 1, &v, &vl), KV_ENOTFOUND);
    assert_int_equal(kv_dict_count(d), 1);
    assert_int_equal(kv_dict_data_bytes(d), 3);
    assert_true(kv_dict_mem_bytes(d) > kv_dict_data_bytes(d));
    kv_dict_free(d);
}

/* Keys that differ only after a NUL, the empty key and the empty value,
 * and 0xff bytes (unsigned order). */
static void test_binary_keys(void **state)
{
    (void)state;
    struct kv_dict *d = kv_dict_new();
    static const struct {
        const char *k;
        size_t kl;
    } keys[] = {{"", 0}, {"\0", 1}, {"\0\0", 2}, {"\0a", 2}, {"a", 1},
                {"a\0", 2}, {"a\0b", 3}, {"a\xff", 2}, {"\xff", 1}};
    size_t n = sizeof(keys) / sizeof(keys[0]);
    for (size_t i = n; i-- > 0;)
        assert_int_equal(kv_dict_set(d, keys[i].k, keys[i].kl, keys[i].k, keys[i].kl), KV_OK);
    assert_int_equal(kv_dict_count(d), n);

    struct kv_iter it;
    kv_dict_seek(d, &it, NULL, 0, false);
    const void *k, *v;
    size_t kl, vl;
    for (size_t i = 0; i < n; i++) {
        assert_true(kv_iter_next(&it, &k, &kl, &v, &vl));
        assert_int_equal(kl, keys[i].kl);
        assert_memory_equal(k, keys[i].k, kl);
        assert_int_equal(vl, kl);
    }
    assert_false(kv_iter_next(&it, &k, &kl, &v, &vl));

    assert_int_equal(kv_dict_get(d, "a\0", 2, &v, &vl), KV_OK);
    assert_int_equal(vl, 2);
    assert_int_equal(kv_dict_get(d, "a\0c", 3, &v, &vl), KV_ENOTFOUND);
    assert_int_equal(kv_dict_get(d, "", 0, &v, &vl), KV_OK);
    assert_int_equal(vl, 0);
    assert_int_equal(kv_dict_del(d, "\0", 1), KV_OK);
    assert_int_equal(kv_dict_get(d, "\0\0", 2, &v, &vl), KV_OK);
    kv_dict_free(d);
}

struct collect {
    char keys[64][16];
    size_t n;
    int stop_after; /* callback returns 99 after this many (0: never) */
};

static int collect_fn(void *ctx, const void *key, size_t klen, const void *val,
                      size_t vlen)
{
    (void)val;
    (void)vlen;
    struct collect *c = ctx;
    assert_true(klen < sizeof(c->keys[0]) && c->n < 64);
    memcpy(c->keys[c->n], key, klen);
    c->keys[c->n][klen] = 0;
    c->n++;
    return c->stop_after && (int)c->n == c->stop_after ? 99 : 0;
}

/* Lists into c and returns "more"; sa == NULL: no start_after. */
static bool list(struct kv_dict *d, struct collect *c, const char *prefix,
                 const char *sa, size_t limit)
{
    bool more;
    memset(c, 0, sizeof(*c));
    assert_int_equal(kv_dict_list(d, prefix, strlen(prefix), sa, sa ? strlen(sa) : 0,
                                  limit, collect_fn, c, &more), KV_OK);
    return more;
}

static void assert_keys(const struct collect *c, const char *const *want, size_t n)
{
    assert_int_equal(c->n, n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(c->keys[i], want[i]);
}

static void test_list_prefix(void **state)
{
    (void)state;
    struct kv_dict *d = kv_dict_new();
    const char *all[] = {"a", "ab", "abc", "abd", "ac", "b", "ba"};
    for (size_t i = 0; i < 7; i++)
        kv_dict_set(d, all[i], strlen(all[i]), "", 0);
    struct collect c;

    assert_false(list(d, &c, "", NULL, 0));
    assert_keys(&c, all, 7);
    assert_false(list(d, &c, "ab", NULL, 0));
    assert_keys(&c, (const char *[]){"ab", "abc", "abd"}, 3);
    assert_false(list(d, &c, "abc", NULL, 0));
    assert_keys(&c, (const char *[]){"abc"}, 1);
    assert_false(list(d, &c, "abz", NULL, 0));
    assert_int_equal(c.n, 0);
    assert_false(list(d, &c, "c", NULL, 0)); /* past the last key */
    assert_int_equal(c.n, 0);
    assert_false(list(d, &c, "0", NULL, 0)); /* before the first key */
    assert_int_equal(c.n, 0);

    /* start_after: before the prefix range, equal to the prefix, inside it,
     * equal to a key, between keys, and after the range. */
    assert_false(list(d, &c, "ab", "a", 0));
    assert_keys(&c, (const char *[]){"ab", "abc", "abd"}, 3);
    assert_false(list(d, &c, "ab", "ab", 0));
    assert_keys(&c, (const char *[]){"abc", "abd"}, 2);
    assert_false(list(d, &c, "ab", "abc", 0));
    assert_keys(&c, (const char *[]){"abd"}, 1);
    assert_false(list(d, &c, "ab", "abcz", 0));
    assert_keys(&c, (const char *[]){"abd"}, 1);
    assert_false(list(d, &c, "ab", "abd", 0));
    assert_int_equal(c.n, 0);
    assert_false(list(d, &c, "ab", "b", 0));
    assert_int_equal(c.n, 0);
    assert_false(list(d, &c, "", "", 0)); /* start_after the empty key */
    assert_keys(&c, all, 7);

    /* Limits: "more" is exact, including a limit that ends on the last match. */
    assert_true(list(d, &c, "ab", NULL, 2));
    assert_keys(&c, (const char *[]){"ab", "abc"}, 2);
    assert_false(list(d, &c, "ab", NULL, 3));
    assert_false(list(d, &c, "ab", "abc", 1));
    assert_keys(&c, (const char *[]){"abd"}, 1);
    assert_true(list(d, &c, "", NULL, 1));
    assert_keys(&c, (const char *[]){"a"}, 1);

    /* A callback that stops early makes its value the result. */
    memset(&c, 0, sizeof(c));
    c.stop_after = 2;
    assert_int_equal(kv_dict_list(d, "", 0, NULL, 0, 0, collect_fn, &c, NULL), 99);
    assert_int_equal(c.n, 2);
    kv_dict_free(d);
}

/* Paging with limit 1..n over many keys visits each exactly once, in order,
 * across leaf boundaries. */
static void test_list_paging(void **state)
{
    (void)state;
    struct kv_dict *d = kv_dict_new();
    char k[16];
    for (int i = 0; i < 2000; i++) {
        int n = snprintf(k, sizeof(k), "p%05d", i * 7 % 2000);
        assert_int_equal(kv_dict_set(d, k, (size_t)n, "v", 1), KV_OK);
        n = snprintf(k, sizeof(k), "q%05d", i);
        assert_int_equal(kv_dict_set(d, k, (size_t)n, "v", 1), KV_OK);
    }
    for (size_t limit = 1; limit <= 64; limit = limit * 3 + 1) {
        char last[16] = "";
        int seen = 0;
        bool more = true, first = true;
        while (more) {
            struct collect c;
            more = list(d, &c, "p", first ? NULL : last, limit);
            first = false;
            for (size_t i = 0; i < c.n; i++) {
                snprintf(k, sizeof(k), "p%05d", seen++);
                assert_string_equal(c.keys[i], k);
            }
            if (c.n)
                strcpy(last, c.keys[c.n - 1]);
            assert_true(more ? c.n == limit : c.n <= limit);
        }
        assert_int_equal(seen, 2000);
    }
    kv_dict_free(d);
}

static size_t key_of(char *buf, uint32_t i)
{
    return (size_t)snprintf(buf, 16, "k%08u", i);
}

/* Ascending, descending and scattered inserts and deletes down to nothing:
 * every split, borrow and merge, at every level, keeps the invariants. */
static void test_tree_shapes(void **state)
{
    (void)state;
    enum { N = 150000 };
    static const uint32_t strides[] = {1, N - 1, 7919};
    char k[16];
    for (size_t s = 0; s < 3; s++) {
        struct kv_dict *d = kv_dict_new();
        uint64_t base_mem = kv_dict_mem_bytes(d);
        for (uint32_t i = 0; i < N; i++) {
            uint32_t x = (uint32_t)((uint64_t)i * strides[s] % N);
            assert_int_equal(kv_dict_set(d, k, key_of(k, x), k, 9), KV_OK);
        }
        assert_true(kv_dict_check(d));
        assert_int_equal(kv_dict_count(d), N);
        for (uint32_t i = 0; i < N; i++) {
            uint32_t x = (uint32_t)((uint64_t)i * strides[(s + 1) % 3] % N);
            assert_int_equal(kv_dict_del(d, k, key_of(k, x)), KV_OK);
            if (i % 37501 == 0)
                assert_true(kv_dict_check(d));
        }
        assert_true(kv_dict_check(d));
        assert_int_equal(kv_dict_count(d), 0);
        assert_int_equal(kv_dict_data_bytes(d), 0);
        /* Whatever remains is spare nodes kept for the next insert. */
        assert_true(kv_dict_mem_bytes(d) < base_mem + 8 * 1024);
        kv_dict_free(d);
    }
}

/* ---- randomized model test ---- */

struct ref_pair {
    uint8_t k[6];
    size_t kl;
    uint32_t val;
};

struct ref {
    struct ref_pair *p;
    size_t n;
};

static int ref_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
    size_t m = al < bl ? al : bl;
    int c = m ? memcmp(a, b, m) : 0;
    return c ? c : (al > bl) - (al < bl);
}

static size_t ref_lower(const struct ref *r, const uint8_t *k, size_t kl)
{
    size_t i = 0;
    while (i < r->n && ref_cmp(r->p[i].k, r->p[i].kl, k, kl) < 0)
        i++;
    return i;
}

struct ref_list_check {
    const struct ref *r;
    size_t at;
};

static int check_pair(void *ctx, const void *key, size_t klen, const void *val,
                      size_t vlen)
{
    struct ref_list_check *c = ctx;
    const struct ref_pair *p = &c->r->p[c->at++];
    assert_int_equal(klen, p->kl);
    assert_memory_equal(key, p->k, klen);
    assert_int_equal(vlen, 4);
    assert_memory_equal(val, &p->val, 4);
    return 0;
}

static void random_key(uint64_t *rng, uint8_t *k, size_t *kl)
{
    /* A 4-letter alphabet with NUL and 0xff over lengths 0..6 (5461 keys,
     * three tree levels) makes keys collide and prefix one another. */
    static const uint8_t alphabet[4] = {0x00, 'a', 'b', 0xff};
    *kl = test_rand(rng) % 7;
    for (size_t i = 0; i < *kl; i++)
        k[i] = alphabet[test_rand(rng) % 4];
}

/* One set (with probability grow %) or delete of key k, on d and on the
 * model alike, checking what the dictionary answers. */
static void model_change(struct kv_dict *d, struct ref *r, uint64_t *rng, unsigned grow,
                         const uint8_t *k, size_t kl)
{
    size_t i = ref_lower(r, k, kl);
    bool found = i < r->n && ref_cmp(r->p[i].k, r->p[i].kl, k, kl) == 0;
    if (test_rand(rng) % 100 < grow) {
        uint32_t val = (uint32_t)test_rand(rng);
        assert_int_equal(kv_dict_set(d, k, kl, &val, 4), KV_OK);
        if (!found) {
            memmove(&r->p[i + 1], &r->p[i], (r->n - i) * sizeof(r->p[0]));
            memcpy(r->p[i].k, k, kl);
            r->p[i].kl = kl;
            r->n++;
        }
        r->p[i].val = val;
    } else {
        assert_int_equal(kv_dict_del(d, k, kl), found ? KV_OK : KV_ENOTFOUND);
        if (found) {
            memmove(&r->p[i], &r->p[i + 1], (r->n - i - 1) * sizeof(r->p[0]));
            r->n--;
        }
    }
}

static void test_random_model(void **state)
{
    (void)state;
    uint64_t rng = 20240611;
    struct kv_dict *d = kv_dict_new();
    struct ref r = {calloc(6000, sizeof(struct ref_pair)), 0};
    for (int step = 0; step < 60000; step++) {
        uint8_t k[6], pre[6];
        size_t kl, pl;
        random_key(&rng, k, &kl);
        size_t i = ref_lower(&r, k, kl);
        bool found = i < r.n && ref_cmp(r.p[i].k, r.p[i].kl, k, kl) == 0;
        /* Phases that mostly grow and mostly shrink, so merges happen too;
         * one step in twenty lists instead. */
        unsigned grow = (step / 5000) % 2 ? 30 : 70;
        if (test_rand(&rng) % 100 < 95) {
            model_change(d, &r, &rng, grow * 100 / 95, k, kl);
        } else {
            random_key(&rng, pre, &pl);
            pl = pl > 2 ? 2 : pl;
            size_t limit = test_rand(&rng) % 5;
            bool use_sa = test_rand(&rng) % 2, more;
            /* The reference answer: scan from the later of the two bounds. */
            size_t from = ref_lower(&r, pre, pl);
            if (use_sa) {
                size_t j = ref_lower(&r, k, kl);
                if (found)
                    j++;
                from = j > from ? j : from;
            }
            size_t to = from;
            while (to < r.n && r.p[to].kl >= pl && memcmp(r.p[to].k, pre, pl) == 0)
                to++;
            size_t want = limit && to - from > limit ? limit : to - from;
            struct ref_list_check c = {&r, from};
            assert_int_equal(kv_dict_list(d, pre, pl, use_sa ? k : NULL, kl, limit,
                                          check_pair, &c, &more), KV_OK);
            assert_int_equal(c.at - from, want);
            assert_int_equal(more, from + want < to);
        }
        const void *v;
        size_t vl;
        i = ref_lower(&r, k, kl);
        found = i < r.n && ref_cmp(r.p[i].k, r.p[i].kl, k, kl) == 0;
        assert_int_equal(kv_dict_get(d, k, kl, &v, &vl), found ? KV_OK : KV_ENOTFOUND);
        if (found)
            assert_memory_equal(v, &r.p[i].val, 4);
        assert_int_equal(kv_dict_count(d), r.n);
        if (step % 1000 == 0)
            assert_true(kv_dict_check(d));
    }
    struct ref_list_check c = {&r, 0};
    assert_int_equal(kv_dict_list(d, "", 0, NULL, 0, 0, check_pair, &c, NULL), KV_OK);
    assert_int_equal(c.at, r.n);
    free(r.p);
    kv_dict_free(d);
}

/* A frozen view (kv_dict_freeze) keeps answering with the dictionary as it
 * was, key for key and value for value, while the live tree goes through
 * tens of thousands of sets, overwrites and deletes (splits and merges at
 * every level); both trees keep their invariants; and after thaw the live
 * tree is whole (ASan sees any node or entry freed while the view read it,
 * or lost). */
static void test_frozen_versions(void **state)
{
    (void)state;
    uint64_t rng = 20261207;
    struct kv_dict *d = kv_dict_new();
    struct ref r = {calloc(6000, sizeof(struct ref_pair)), 0};
    struct ref was = {calloc(6000, sizeof(struct ref_pair)), 0};
    struct kv_garbage *pending = NULL;
    for (int round = 0; round < 8; round++) {
        /* Round 0 freezes an empty tree; later ones a grown or shrunk one. */
        struct kv_dict *v = kv_dict_freeze(d);
        assert_non_null(v);
        assert_null(kv_dict_freeze(d)); /* one view at a time */
        memcpy(was.p, r.p, r.n * sizeof(r.p[0]));
        was.n = r.n;
        for (int step = 0; step < 8000; step++) {
            uint8_t k[6];
            size_t kl;
            random_key(&rng, k, &kl);
            model_change(d, &r, &rng, (round + step / 2000) % 2 ? 35 : 75, k, kl);
            /* The view answers point lookups from the old version. */
            const void *val;
            size_t vl;
            size_t i = ref_lower(&was, k, kl);
            bool found = i < was.n && ref_cmp(was.p[i].k, was.p[i].kl, k, kl) == 0;
            assert_int_equal(kv_dict_get(v, k, kl, &val, &vl), found ? KV_OK : KV_ENOTFOUND);
            if (found)
                assert_memory_equal(val, &was.p[i].val, 4);
            if (step % 2000 == 0) {
                assert_true(kv_dict_check(d));
                assert_true(kv_dict_check(v));
                struct ref_list_check c = {&was, 0};
                assert_int_equal(kv_dict_list(v, "", 0, NULL, 0, 0, check_pair, &c, NULL), KV_OK);
                assert_int_equal(c.at, was.n);
            }
        }
        assert_int_equal(kv_dict_count(v), was.n);
        struct ref_list_check c = {&was, 0};
        assert_int_equal(kv_dict_list(v, "", 0, NULL, 0, 0, check_pair, &c, NULL), KV_OK);
        assert_int_equal(c.at, was.n);
        /* What the changes kept for the view is counted as memory in use. */
        uint64_t frozen_mem = kv_dict_mem_bytes(d);
        uint64_t kept = kv_dict_frozen_bytes(d);
        if (round > 0) /* 8000 changes to a non-empty tree copied something */
            assert_true(kept > 0 && kept < frozen_mem);
        /* Even rounds keep their leftovers for the next, which merges them
         * with its own and frees the lot in slices, as the node's loop does
         * (under ASan a double or missed free fails here). */
        struct kv_garbage *g = kv_dict_thaw(d, v);
        if (g && pending)
            assert_int_equal(kv_garbage_merge(pending, g), 0);
        else if (g)
            pending = g;
        if (round % 2 && pending) {
            int slices = 0;
            while (!kv_garbage_free_some(pending, 64))
                slices++;
            assert_true(slices > 0);
            pending = NULL;
        }
        assert_int_equal(kv_dict_frozen_bytes(d), 0);
        assert_true(kv_dict_mem_bytes(d) <= frozen_mem);
        assert_true(kv_dict_check(d));
        assert_int_equal(kv_dict_count(d), r.n);
        c = (struct ref_list_check){&r, 0};
        assert_int_equal(kv_dict_list(d, "", 0, NULL, 0, 0, check_pair, &c, NULL), KV_OK);
        assert_int_equal(c.at, r.n);
    }
    /* Freed while frozen: the view's owner is gone too (kv_dict_free). */
    struct kv_dict *v = kv_dict_freeze(d);
    uint32_t val = 1;
    assert_int_equal(kv_dict_set(d, "x", 1, &val, 4), KV_OK);
    kv_dict_free(v);
    kv_dict_free(d);
    free(r.p);
    free(was.p);
}

/* Replacing a value whose key is also a separator must not disturb lookups
 * (the leaf gets a copy; the separator keeps the old entry). */
static void test_replace_separator_keys(void **state)
{
    (void)state;
    struct kv_dict *d = kv_dict_new();
    char k[16];
    for (uint32_t i = 0; i < 5000; i++)
        kv_dict_set(d, k, key_of(k, i), "x", 1);
    for (uint32_t round = 0; round < 3; round++) {
        for (uint32_t i = 0; i < 5000; i++) {
            char v[32];
            memset(v, 'a' + (int)round, sizeof(v));
            assert_int_equal(kv_dict_set(d, k, key_of(k, i), v, 1 + round * 10), KV_OK);
        }
        assert_true(kv_dict_check(d));
    }
    for (uint32_t i = 0; i < 5000; i += 2)
        assert_int_equal(kv_dict_del(d, k, key_of(k, i)), KV_OK);
    for (uint32_t i = 0; i < 5000; i++) {
        const void *v;
        size_t vl;
        assert_int_equal(kv_dict_get(d, k, key_of(k, i), &v, &vl),
                         i % 2 ? KV_OK : KV_ENOTFOUND);
        if (i % 2)
            assert_int_equal(vl, 21);
    }
    assert_int_equal(kv_dict_data_bytes(d), 2500u * (9 + 21));
    assert_true(kv_dict_check(d));
    kv_dict_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_binary_keys),
        cmocka_unit_test(test_list_prefix),
        cmocka_unit_test(test_list_paging),
        cmocka_unit_test(test_tree_shapes),
        cmocka_unit_test(test_random_model),
        cmocka_unit_test(test_replace_separator_keys),
        cmocka_unit_test(test_frozen_versions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
