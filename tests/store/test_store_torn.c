/* test_store_torn.c - crash damage.  A log of a few hundred records is cut at
 * every byte offset and has every single byte flipped; meta and snapshot
 * temp files are torn at every offset and their live files flipped; pages go
 * missing in the unsynced tail; and seeded power cuts hit a store with
 * appends in flight.  Recovery must return exactly the records before the
 * damage (never a damaged one) or refuse with file and offset, and keep every
 * record that was reported durable. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/endian.h"
#include "helpers.h"

#define MAXLEN 40
#define SALT 11

static char *pathf(const char *dir, const char *rel)
{
    char *p = NULL;
    assert_true(asprintf(&p, "%s/%s", dir, rel) > 0);
    return p;
}

/* The records of the recovered log must be exactly 1..k with the expected
 * contents, where term_of tells each index's term. */
static void expect_prefix(struct store *st, uint64_t k, uint64_t term)
{
    assert_int_equal(store_last_index(st), k);
    if (!k)
        return;
    struct store_record *r;
    size_t n;
    assert_int_equal(store_read(st, 1, k, &r, &n), 0);
    assert_int_equal(n, k);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(r[i].index, i + 1);
        assert_true(th_rec_ok(&r[i], term, SALT, MAXLEN));
    }
    free(r);
}

/* Offsets where each record of a segment ends (ends[0] = header end). */
static size_t frame_ends(const uint8_t *b, size_t len, size_t *ends, size_t max)
{
    size_t n = 0, off = 32;
    ends[n++] = off;
    while (off + 32 <= len && n < max) {
        off += 32 + get_le32(b + off + 4);
        ends[n++] = off;
    }
    return n;
}

/* Build a log of n records in batches of `batch`, all synced. */
static char *make_log(const char *tag, uint64_t n, size_t batch, uint64_t seg_size)
{
    char *dir = th_tmpdir(tag);
    struct store_options o;
    store_options_default(&o);
    if (seg_size)
        o.segment_size = seg_size;
    struct store *st = th_open(dir, &o);
    struct store_record *r = th_recs(1, n, 1, SALT, MAXLEN);
    for (uint64_t i = 0; i < n; i += batch)
        assert_int_equal(store_append_sync(st, NULL, r + i, i + batch <= n ? batch : n - i), 0);
    th_recs_free(r, n);
    assert_int_equal(store_close(st), 0);
    return dir;
}

static void test_log_cut_every_offset(void **state)
{
    (void)state;
    const uint64_t n = 250;
    char *dir = make_log("cut", n, 25, 0);
    char *seg = th_segment(dir, 0);
    size_t len;
    uint8_t *orig = th_slurp(seg, &len);
    size_t ends[512];
    size_t nends = frame_ends(orig, len, ends, 512);
    assert_int_equal(nends, n + 1);
    assert_int_equal(ends[n], len);
    /* Everything up to the start of the last batch had been reported durable
     * when the "power" went: those records must survive every cut there. */
    size_t durable_end = ends[n - 25];

    for (size_t cut = 0; cut <= len; cut++) {
        th_spit(seg, orig, cut);
        struct store *st = NULL;
        struct store_open_info info;
        int rc = store_open(dir, NULL, &st, &info);
        if (rc != 0)
            fail_msg("cut at %zu: open failed: %s", cut, info.error);
        uint64_t k = 0;
        while (k < n && ends[k + 1] <= cut)
            k++;
        expect_prefix(st, k, 1);
        if (cut >= durable_end)
            assert_true(k >= n - 25);
        size_t kept = cut < 32 ? 0 : ends[k];
        assert_int_equal(info.cut_bytes, cut - kept);
        if (cut != kept)
            assert_true(info.cut_reason[0] != '\0');
        assert_int_equal(store_close(st), 0);
        if (cut < 32) /* the torn segment was removed; put the file back */
            assert_int_equal(th_nsegments(dir), 0);
    }
    /* A cut store appends and reopens cleanly. */
    th_spit(seg, orig, ends[100] + 7);
    struct store *st = th_open(dir, NULL);
    struct store_record *r = th_recs(101, 10, 2, SALT, MAXLEN);
    assert_int_equal(store_append_sync(st, NULL, r, 10), 0);
    th_recs_free(r, 10);
    assert_int_equal(store_close(st), 0);
    struct store_open_info info;
    assert_int_equal(store_open(dir, NULL, &st, &info), 0);
    assert_int_equal(info.cut_bytes, 0);
    assert_int_equal(store_last_index(st), 110);
    assert_int_equal(store_close(st), 0);
    free(orig);
    free(seg);
    th_rmrf(dir);
    free(dir);
}

/* Flip each byte of every segment of a multi-segment log. */
static void test_log_flip_every_byte(void **state)
{
    (void)state;
    const uint64_t n = 250;
    char *dir = make_log("flip", n, 10, 4096);
    int nseg = th_nsegments(dir);
    assert_true(nseg >= 3);
    unsigned refused = 0, opened = 0;
    uint64_t base = 1; /* first index of the current segment */
    for (int s = 0; s < nseg; s++) {
        char *seg = th_segment(dir, s);
        size_t len;
        uint8_t *orig = th_slurp(seg, &len);
        size_t ends[512];
        size_t nends = frame_ends(orig, len, ends, 512);
        for (size_t off = 0; off < len; off++) {
            orig[off] ^= 0x20;
            th_spit(seg, orig, len);
            orig[off] ^= 0x20;
            struct store *st = NULL;
            struct store_open_info info;
            int rc = store_open(dir, NULL, &st, &info);
            /* Which record holds the damaged byte: index base + k. */
            uint64_t k = 0;
            while (k + 1 < nends && ends[k + 1] <= off)
                k++;
            if (rc == 0) {
                /* Only a cut before the damaged record is acceptable. */
                assert_true(s == nseg - 1);
                assert_true(off >= 32);
                expect_prefix(st, base + k - 1, 1);
                assert_int_equal(store_close(st), 0);
                opened++;
            } else {
                if (!strstr(info.error, seg) || !strstr(info.error, "offset"))
                    fail_msg("flip at %s+%zu: error does not name file and offset: %s", seg,
                             off, info.error);
                refused++;
            }
        }
        th_spit(seg, orig, len);
        base += nends - 1;
        free(orig);
        free(seg);
    }
    print_message("flips: %u refused with file+offset, %u opened with a clean prefix\n",
                  refused, opened);
    struct store *st = th_open(dir, NULL);
    expect_prefix(st, n, 1);
    assert_int_equal(store_close(st), 0);
    th_rmrf(dir);
    free(dir);
}

/* Pages of the last, unsynced write that never reached the disk read back
 * as zeros, possibly with later pages present: cut at the first of them.
 * Zeros far from the end cannot be a torn write: refuse. */
static void test_log_missing_pages(void **state)
{
    (void)state;
    const uint64_t n = 300;
    char *dir = make_log("pages", n, 300, 0);
    char *seg = th_segment(dir, 0);
    size_t len;
    uint8_t *orig = th_slurp(seg, &len);
    size_t ends[512];
    frame_ends(orig, len, ends, 512);
    uint8_t *b = malloc(len);
    for (size_t pg = 0; pg < len; pg += 512) {
        for (int variant = 0; variant < 2; variant++) {
            memcpy(b, orig, len);
            /* variant 0: a 4 KiB page; variant 1: from a record boundary on */
            size_t from = pg, to = pg + 4096 < len ? pg + 4096 : len;
            if (variant) {
                size_t k = 0;
                while (ends[k + 1] <= pg)
                    k++;
                from = ends[k];
            }
            if (from < 32)
                continue;
            memset(b + from, 0, to - from);
            th_spit(seg, b, len);
            struct store *st = NULL;
            struct store_open_info info;
            int rc = store_open(dir, NULL, &st, &info);
            if (rc != 0)
                fail_msg("zeros at %zu..%zu: %s", from, to, info.error);
            uint64_t k = 0;
            while (ends[k + 1] <= from)
                k++;
            expect_prefix(st, k, 1);
            assert_int_equal(info.cut_bytes, len - ends[k]);
            assert_int_equal(store_close(st), 0);
            th_spit(seg, orig, len);
        }
    }
    free(b);
    free(orig);
    free(seg);
    th_rmrf(dir);
    free(dir);

    /* More than one unsynced write's worth of log after the damage. */
    dir = th_tmpdir("pages-far");
    struct store *st = th_open(dir, NULL);
    uint8_t *big = calloc(1, 64 << 10);
    memset(big, 7, 64 << 10);
    for (uint64_t i = 1; i <= 140; i++) {
        struct store_record r = {.index = i, .term = 1, .data = big, .len = 64 << 10};
        assert_int_equal(store_append_sync(st, NULL, &r, 1), 0);
    }
    free(big);
    assert_int_equal(store_close(st), 0);
    seg = th_segment(dir, 0);
    orig = th_slurp(seg, &len);
    memset(orig + 8192, 0, 4096);
    th_spit(seg, orig, len);
    struct store_open_info info;
    assert_int_equal(store_open(dir, NULL, &st, &info), -EINVAL);
    assert_non_null(strstr(info.error, "not a torn write"));
    assert_non_null(strstr(info.error, seg));
    free(orig);
    free(seg);
    th_rmrf(dir);
    free(dir);
}

/* Bytes of the file `rel` that a store at a fresh directory would write after
 * `setup` ran there. */
static uint8_t *file_of(void (*setup)(struct store *), const char *rel, size_t *len)
{
    char *dir = th_tmpdir("gen");
    struct store *st = th_open(dir, NULL);
    setup(st);
    assert_int_equal(store_close(st), 0);
    char *p = pathf(dir, rel);
    uint8_t *b = th_slurp(p, len);
    free(p);
    th_rmrf(dir);
    free(dir);
    return b;
}

static void hs_old(struct store *st)
{
    struct store_hard_state hs = {.term = 5, .vote = 2};
    assert_int_equal(store_append_sync(st, &hs, NULL, 0), 0);
}

static void hs_new(struct store *st)
{
    struct store_hard_state hs = {.term = 7, .vote = 3};
    assert_int_equal(store_append_sync(st, &hs, NULL, 0), 0);
}

static void test_meta_torn(void **state)
{
    (void)state;
    size_t nlen;
    uint8_t *newb = file_of(hs_new, "meta", &nlen);
    char *dir = th_tmpdir("meta");
    struct store *st = th_open(dir, NULL);
    hs_old(st);
    assert_int_equal(store_close(st), 0);
    char *tmp = pathf(dir, "meta.tmp"), *meta = pathf(dir, "meta");
    size_t olen;
    uint8_t *oldb = th_slurp(meta, &olen);

    /* A crash while writing or before renaming the temp file: old state. */
    for (size_t cut = 0; cut <= nlen; cut++) {
        th_spit(tmp, newb, cut);
        st = th_open(dir, NULL);
        struct store_hard_state hs;
        store_hard_state(st, &hs);
        assert_int_equal(hs.term, 5);
        assert_int_equal(hs.vote, 2);
        assert_int_equal(store_close(st), 0);
        assert_int_not_equal(access(tmp, F_OK), 0); /* cleaned up */
    }
    /* Damage to the live file is never read as a value. */
    for (size_t off = 0; off < olen; off++) {
        for (int cut = 0; cut < 2; cut++) {
            uint8_t b[64];
            memcpy(b, oldb, olen);
            b[off] ^= 0x01;
            th_spit(meta, b, cut ? off : olen);
            struct store_open_info info;
            int rc = store_open(dir, NULL, &st, &info);
            assert_true(rc < 0);
            assert_non_null(strstr(info.error, meta));
        }
    }
    th_spit(meta, oldb, olen);
    st = th_open(dir, NULL);
    assert_int_equal(store_close(st), 0);
    free(oldb);
    free(newb);
    free(tmp);
    free(meta);
    th_rmrf(dir);
    free(dir);
}

static const char snap_a[] = "snapshot A: the dictionary at index 10";

static void snap_new(struct store *st)
{
    struct store_snap_meta m = {.index = 50, .term = 4, .conf_len = 5, .conf = "conf"};
    uint8_t data[700];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 13);
    uint64_t seq;
    assert_int_equal(store_snapshot_save(st, &m, data, sizeof(data), &seq), 0);
    assert_int_equal(store_wait(st, seq), 0);
}

static void check_snap_a(struct store *st)
{
    struct store_snap_meta m;
    void *d;
    size_t l;
    assert_int_equal(store_snapshot_load(st, &m, &d, &l), 0);
    assert_int_equal(m.index, 10);
    assert_int_equal(m.term, 2);
    assert_int_equal(l, sizeof(snap_a));
    assert_memory_equal(d, snap_a, l);
    free(d);
}

static void test_snapshot_torn(void **state)
{
    (void)state;
    size_t nlen;
    uint8_t *newb = file_of(snap_new, "snap/snapshot", &nlen);
    char *dir = th_tmpdir("snap");
    struct store *st = th_open(dir, NULL);
    struct store_snap_meta m = {.index = 10, .term = 2, .conf_len = 2, .conf = {9, 9}};
    uint64_t seq;
    assert_int_equal(store_snapshot_save(st, &m, snap_a, sizeof(snap_a), &seq), 0);
    assert_int_equal(store_wait(st, seq), 0);
    assert_int_equal(store_close(st), 0);
    char *tmp = pathf(dir, "snap/snapshot.tmp"), *live = pathf(dir, "snap/snapshot");

    for (size_t cut = 0; cut <= nlen; cut++) {
        th_spit(tmp, newb, cut);
        st = th_open(dir, NULL);
        check_snap_a(st);
        assert_int_equal(store_close(st), 0);
    }
    size_t olen;
    uint8_t *oldb = th_slurp(live, &olen);
    uint8_t *b = malloc(olen);
    for (size_t off = 0; off < olen; off++) {
        for (int cut = 0; cut < 2; cut++) {
            memcpy(b, oldb, olen);
            b[off] ^= 0x80;
            th_spit(live, b, cut ? off : olen);
            struct store_open_info info;
            int rc = store_open(dir, NULL, &st, &info);
            if (rc == 0)
                fail_msg("snapshot damaged at %zu (cut %d) was accepted", off, cut);
            assert_non_null(strstr(info.error, live));
        }
    }
    th_spit(live, oldb, olen);
    st = th_open(dir, NULL);
    check_snap_a(st);
    assert_int_equal(store_close(st), 0);
    free(b);
    free(oldb);
    free(newb);
    free(tmp);
    free(live);
    th_rmrf(dir);
    free(dir);
}

/* Seeded power cuts with appends in flight: the seam knows what was synced,
 * cuts every file back to somewhere between that and what was written, and
 * sometimes loses a page in between. */
static void test_power_cut(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 150; seed++) {
        char *dir = th_tmpdir("power");
        store_fault_reset();
        store_fault_track(true);
        struct store_options o;
        store_options_default(&o);
        o.segment_size = 8192;
        struct store *st = th_open(dir, &o);
        uint64_t rng = seed, next = 1, durable = 0, term = 1;
        int rounds = 2 + (int)(th_rng(&rng) % 6);
        for (int i = 0; i < rounds; i++) {
            size_t n = 1 + th_rng(&rng) % 40;
            struct store_record *r = th_recs(next, n, term, SALT, MAXLEN);
            uint64_t seq;
            assert_int_equal(store_append(st, NULL, r, n, &seq), 0);
            next += n;
            if (th_rng(&rng) % 2 || i + 1 < rounds) {
                assert_int_equal(store_wait(st, seq), 0);
                durable = next - 1;
            }
            th_recs_free(r, n);
        }
        store_crash(st);
        store_fault_power_cut(seed);
        store_fault_reset();
        struct store_open_info info;
        int rc = store_open(dir, &o, &st, &info);
        if (rc != 0)
            fail_msg("seed %llu: reopen after power cut failed: %s", (unsigned long long)seed,
                     info.error);
        uint64_t last = store_last_index(st);
        if (last < durable)
            fail_msg("seed %llu: lost durable records: have %llu, %llu were durable",
                     (unsigned long long)seed, (unsigned long long)last,
                     (unsigned long long)durable);
        assert_true(last < next);
        expect_prefix(st, last, term);
        assert_int_equal(store_close(st), 0);
        th_rmrf(dir);
        free(dir);
    }
}

/* The damage loops reopen thousands of times; what they check is file
 * contents, not the disk cache, so the seam skips the real syncs there. */
static int fast_syncs(void **state)
{
    (void)state;
    store_fault_reset();
    store_fault_fake_sync(true);
    return 0;
}

static int real_syncs(void **state)
{
    (void)state;
    store_fault_reset();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_log_cut_every_offset, fast_syncs, real_syncs),
        cmocka_unit_test_setup_teardown(test_log_flip_every_byte, fast_syncs, real_syncs),
        cmocka_unit_test_setup_teardown(test_log_missing_pages, fast_syncs, real_syncs),
        cmocka_unit_test_setup_teardown(test_meta_torn, fast_syncs, real_syncs),
        cmocka_unit_test_setup_teardown(test_snapshot_torn, fast_syncs, real_syncs),
        cmocka_unit_test(test_power_cut),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
