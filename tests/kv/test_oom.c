/* test_oom.c - allocation failure: with malloc, calloc and realloc made to
 * fail from the Nth call on (the binary links with --wrap), every apply that
 * reports KV_ENOMEM leaves the state byte-identical, applying the entry again
 * afterwards gives what an unharmed replica got, and a snapshot load that
 * runs out of memory leaks nothing (ASan) and leaves the caller's pointer
 * alone.  The same holds with a frozen view out (kv_freeze), which keeps the
 * state from before. */
#include "helpers.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);

static long countdown = -1; /* allocations left before failing; -1: never fail */

static bool should_fail(void)
{
    if (countdown < 0)
        return false;
    if (countdown == 0)
        return true;
    countdown--;
    return false;
}

void *__wrap_malloc(size_t n)
{
    return should_fail() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size)
{
    return should_fail() ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n)
{
    return should_fail() ? NULL : __real_realloc(p, n);
}

static struct kv *clone(const struct kv *kv)
{
    size_t len;
    uint8_t *snap = snapshot_bytes(kv, &len);
    struct kv *copy = NULL;
    assert_int_equal(kv_snapshot_load(snap, len, NULL, &copy), KV_OK);
    free(snap);
    return copy;
}

/* Even keys k00000.. with a value each, and two sessions. */
static struct kv *base_state(int nkeys)
{
    struct kv *kv = kv_new(NULL);
    struct kv_result r;
    char key[16];
    uint64_t index = 1;
    for (int i = 0; i < nkeys; i++) {
        snprintf(key, sizeof(key), "k%05d", i * 2);
        struct kv_command c = cmd_set(key, "value", 0, 0, 1);
        apply_cmd(kv, index++, &c, &r);
    }
    struct kv_command c = cmd_set("k00000", "v", 1, 1, 2);
    apply_cmd(kv, index++, &c, &r);
    c = cmd_cas("k00002", "no", "v", 2, 1, 2);
    apply_cmd(kv, index++, &c, &r);
    return kv;
}

/* With frozen set, each attempt runs with a view of the state out
 * (kv_freeze, as while a snapshot is written): the view stays the state
 * before, whether the apply failed or not. */
static void apply_oom(bool frozen)
{
    struct kv_command cmds[] = {
        cmd_set("k00001", "inserted", 3, 1, 10),        /* new session, new key */
        cmd_set("k00000", "a longer value", 1, 2, 10),  /* existing key, resized */
        cmd_cas("k00004", "no", "v", 4, 1, 10),         /* failed CAS cached */
        cmd_cas("k00006", "wrong", "v", 2, 2, 10),      /* ... in an old session */
        cmd_cas("k00008", "value", "swapped", 1, 3, 10),
        cmd_cas("new", NULL, "created", 0, 0, 10),
        cmd_del("k00010", 1, 4, 10),
    };
    /* Big enough for an insert to split two levels. */
    struct kv *ref = base_state(3000);
    uint64_t index = kv_applied_index(ref) + 1;
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++, index++) {
        size_t len;
        uint8_t *buf = encode_cmd(&cmds[i], &len);
        struct kv_result want, got;
        struct kv *before = clone(ref);
        assert_int_equal(kv_apply(ref, index, buf, len, &want), KV_OK);
        bool reached_ok = false;
        for (long fail_at = 0; !reached_ok; fail_at++) {
            struct kv *kv = clone(before);
            struct kv *view = frozen ? kv_freeze(kv) : NULL;
            assert_true(!frozen || view);
            countdown = fail_at;
            int rc = kv_apply(kv, index, buf, len, &got);
            countdown = -1;
            if (rc == KV_ENOMEM) {
                assert_same_state(kv, before);
                assert_int_equal(kv_apply(kv, index, buf, len, &got), KV_OK);
            } else {
                assert_int_equal(rc, KV_OK);
                reached_ok = true;
            }
            assert_int_equal(got.status, want.status);
            assert_same_state(kv, ref);
            if (view) {
                assert_same_state(view, before);
                kv_garbage_free(kv_thaw(kv, view));
                assert_same_state(kv, ref);
            }
            kv_free(kv);
        }
        kv_free(before);
        free(buf);
    }
    kv_free(ref);
}

static void test_apply_oom(void **state)
{
    (void)state;
    apply_oom(false);
}

static void test_apply_oom_frozen(void **state)
{
    (void)state;
    apply_oom(true);
}

static void test_load_oom(void **state)
{
    (void)state;
    struct kv *kv = base_state(300);
    size_t len;
    uint8_t *snap = snapshot_bytes(kv, &len);
    for (long fail_at = 0;; fail_at++) {
        struct kv *out = (struct kv *)0x1;
        countdown = fail_at;
        int rc = kv_snapshot_load(snap, len, NULL, &out);
        countdown = -1;
        if (rc == KV_OK) {
            kv_free(out);
            break;
        }
        assert_int_equal(rc, KV_ENOMEM);
        assert_ptr_equal(out, (struct kv *)0x1);
        /* Every allocation site of a load is reached well before this. */
        assert_true(fail_at < 10000);
    }
    free(snap);
    kv_free(kv);
}

static void test_constructors_oom(void **state)
{
    (void)state;
    for (long fail_at = 0; fail_at < 3; fail_at++) {
        countdown = fail_at;
        struct kv *kv = kv_new(NULL);
        countdown = -1;
        kv_free(kv);
    }
    struct kv *kv = kv_new(NULL);
    countdown = 0;
    assert_null(kv_snapshot_writer_new(kv));
    assert_int_equal(kv_snapshot_write(kv, NULL, NULL), KV_ENOMEM);
    countdown = -1;
    kv_free(kv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_apply_oom),
        cmocka_unit_test(test_apply_oom_frozen),
        cmocka_unit_test(test_load_oom),
        cmocka_unit_test(test_constructors_oom),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
