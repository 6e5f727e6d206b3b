/* test_store_basic.c - the store's contract without faults: appends become
 * durable and survive reopen, conflict repair replaces the tail, segments roll
 * and are compacted, snapshots replace or keep the log, the directory lock,
 * version refusal, argument checks and the eventfd completion path. */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/crc32c.h"
#include "common/endian.h"
#include "helpers.h"

#define MAXLEN 300

static void check_range(struct store *st, uint64_t lo, uint64_t hi, uint64_t (*term_of)(uint64_t),
                        uint32_t salt)
{
    struct store_record *r;
    size_t n;
    assert_int_equal(store_read(st, lo, hi, &r, &n), 0);
    assert_int_equal(n, hi - lo + 1);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(r[i].index, lo + i);
        assert_true(th_rec_ok(&r[i], term_of(lo + i), salt, MAXLEN));
    }
    free(r);
}

static uint64_t term1(uint64_t i)
{
    (void)i;
    return 1;
}

static void append(struct store *st, uint64_t first, size_t n, uint64_t term, uint32_t salt)
{
    struct store_record *r = th_recs(first, n, term, salt, MAXLEN);
    assert_int_equal(store_append_sync(st, NULL, r, n), 0);
    th_recs_free(r, n);
}

static void test_empty(void **state)
{
    (void)state;
    char *dir = th_tmpdir("empty");
    struct store *st = th_open(dir, NULL);
    assert_int_equal(store_first_index(st), 1);
    assert_int_equal(store_last_index(st), 0);
    assert_int_equal(store_last_term(st), 0);
    struct store_hard_state hs;
    store_hard_state(st, &hs);
    assert_int_equal(hs.term, 0);
    assert_false(store_snapshot_meta(st, NULL));
    assert_int_equal(store_close(st), 0);
    st = th_open(dir, NULL);
    assert_int_equal(store_last_index(st), 0);
    assert_int_equal(store_close(st), 0);
    th_rmrf(dir);
    free(dir);
}

static void test_append_reopen(void **state)
{
    (void)state;
    char *dir = th_tmpdir("append");
    struct store *st = th_open(dir, NULL);
    struct store_hard_state hs = {.term = 5, .vote = 3};
    struct store_record *r = th_recs(1, 100, 1, 0, MAXLEN);
    assert_int_equal(store_append_sync(st, &hs, r, 40), 0);
    assert_int_equal(store_append_sync(st, NULL, r + 40, 60), 0);
    th_recs_free(r, 100);
    check_range(st, 1, 100, term1, 0);
    check_range(st, 37, 41, term1, 0);
    assert_int_equal(store_last_index(st), 100);
    assert_int_equal(store_close(st), 0);

    st = th_open(dir, NULL);
    struct store_hard_state got;
    store_hard_state(st, &got);
    assert_int_equal(got.term, 5);
    assert_int_equal(got.vote, 3);
    assert_int_equal(store_first_index(st), 1);
    assert_int_equal(store_last_index(st), 100);
    assert_int_equal(store_last_term(st), 1);
    check_range(st, 1, 100, term1, 0);
    /* hard state alone */
    hs.term = 6;
    assert_int_equal(store_append_sync(st, &hs, NULL, 0), 0);
    assert_int_equal(store_close(st), 0);
    st = th_open(dir, NULL);
    store_hard_state(st, &got);
    assert_int_equal(got.term, 6);
    struct store_record *x;
    size_t n;
    assert_int_equal(store_read(st, 0, 5, &x, &n), -ERANGE);
    assert_int_equal(store_read(st, 90, 101, &x, &n), -ERANGE);
    assert_int_equal(store_close(st), 0);
    th_rmrf(dir);
    free(dir);
}

static uint64_t term_trunc(uint64_t i)
{
    return i < 30 ? 1 : 2;
}

static void test_truncate_suffix(void **state)
{
    (void)state;
    char *dir = th_tmpdir("trunc");
    struct store_options o;
    store_options_default(&o);
    o.segment_size = 2048; /* several segments, so the cut crosses files */
    struct store *st = th_open(dir, &o);
    append(st, 1, 50, 1, 0);
    int before = th_nsegments(dir);
    assert_true(before > 3);
    append(st, 30, 11, 2, 0);
    assert_int_equal(store_last_index(st), 40);
    assert_int_equal(store_last_term(st), 2);
    uint64_t t;
    assert_int_equal(store_term(st, 29, &t), 0);
    assert_int_equal(t, 1);
    assert_int_equal(store_term(st, 30, &t), 0);
    assert_int_equal(t, 2);
    check_range(st, 1, 40, term_trunc, 0);
    assert_int_equal(store_close(st), 0);
    st = th_open(dir, &o);
    assert_int_equal(store_last_index(st), 40);
    check_range(st, 1, 40, term_trunc, 0);
    /* Replace from the very first index. */
    append(st, 1, 3, 3, 7);
    assert_int_equal(store_last_index(st), 3);
    assert_int_equal(store_close(st), 0);
    st = th_open(dir, &o);
    assert_int_equal(store_last_index(st), 3);
    assert_int_equal(store_last_term(st), 3);
    assert_int_equal(th_nsegments(dir), 1);
    assert_int_equal(store_close(st), 0);
    th_rmrf(dir);
    free(dir);
}

static void test_roll_compact_snapshot(void **state)
{
    (void)state;
    char *dir = th_tmpdir("compact");
    struct store_options o;
    store_options_default(&o);
    o.segment_size = 4096;
    struct store *st = th_open(dir, &o);
    append(st, 1, 500, 1, 0);
    int nseg = th_nsegments(dir);
    assert_true(nseg > 10);
    assert_int_equal(store_compact(st, 10, NULL), -EINVAL); /* no snapshot yet */
    struct store_snap_meta m = {.index = 300, .term = 1, .conf_len = 3, .conf = {1, 2, 3}};
    const char data[] = "the dictionary at 300";
    uint64_t seq;
    assert_int_equal(store_snapshot_save(st, &m, data, sizeof(data), &seq), 0);
    assert_int_equal(store_wait(st, seq), 0);
    assert_int_equal(store_last_index(st), 500); /* log kept: it continues the snapshot */
    assert_int_equal(store_compact(st, 301, NULL), -EINVAL);
    assert_int_equal(store_compact(st, 300, &seq), 0);
    assert_int_equal(store_wait(st, seq), 0);
    uint64_t first = store_first_index(st);
    assert_true(first > 200 && first <= 301);
    assert_true(th_nsegments(dir) < nseg);
    check_range(st, first, 500, term1, 0);
    assert_int_equal(store_close(st), 0);

    st = th_open(dir, &o);
    assert_int_equal(store_first_index(st), first);
    assert_int_equal(store_last_index(st), 500);
    struct store_snap_meta got;
    assert_true(store_snapshot_meta(st, &got));
    assert_int_equal(got.index, 300);
    assert_int_equal(got.conf_len, 3);
    assert_memory_equal(got.conf, m.conf, 3);
    void *buf;
    size_t len;
    assert_int_equal(store_snapshot_load(st, &got, &buf, &len), 0);
    assert_int_equal(len, sizeof(data));
    assert_memory_equal(buf, data, len);
    free(buf);
    check_range(st, first, 500, term1, 0);
    assert_int_equal(store_close(st), 0);
    th_rmrf(dir);
    free(dir);
}

/* A snapshot streamed in the background (as the node's writer thread does), larger
 * than the stream's buffer, adopted in order with the log; a stale one is
 * refused and removed; a leftover snapshot.bg is removed on open. */
static void test_snapshot_stream_adopt(void **state)
{
    (void)state;
    char *dir = th_tmpdir("adopt");
    struct store *st = th_open(dir, NULL);
    append(st, 1, 50, 1, 0);
    struct store_snap_meta m = {.index = 40, .term = 1, .conf_len = 2, .conf = {7, 8}};
    size_t big = (3u << 20) + 12345;
    uint8_t *data = malloc(big);
    assert_non_null(data);
    for (size_t i = 0; i < big; i++)
        data[i] = (uint8_t)(i * 31 + (i >> 13));
    struct store_snap_stream *ss;
    assert_int_equal(store_snapshot_stream_open(st, &m, STORE_SNAP_BG, &ss), 0);
    for (size_t off = 0; off < big; off += 70001)
        assert_int_equal(store_snapshot_stream_write(ss, data + off,
                                                     big - off < 70001 ? big - off : 70001), 0);
    assert_int_equal(store_snapshot_stream_close(ss, true), 0);
    assert_false(store_snapshot_meta(st, NULL)); /* nothing adopted yet */
    uint64_t seq;
    assert_int_equal(store_snapshot_adopt(st, &m, STORE_SNAP_BG, &seq), 0);
    assert_int_equal(store_wait(st, seq), 0);
    assert_int_equal(store_last_index(st), 50); /* log kept: it continues the snapshot */
    /* stale: at or below the current snapshot */
    assert_int_equal(store_snapshot_stream_open(st, &m, STORE_SNAP_BG, &ss), 0);
    assert_int_equal(store_snapshot_stream_write(ss, "x", 1), 0);
    assert_int_equal(store_snapshot_stream_close(ss, true), 0);
    assert_int_equal(store_snapshot_adopt(st, &m, STORE_SNAP_BG, &seq), -ESTALE);
    char bg[4096];
    snprintf(bg, sizeof(bg), "%s/snap/snapshot.bg", dir);
    assert_int_equal(access(bg, F_OK), -1);
    /* a child that died half-way leaves its file: it goes on the next open */
    assert_int_equal(store_close(st), 0);
    th_spit(bg, (const uint8_t *)"partial", 7);
    st = th_open(dir, NULL);
    assert_int_equal(access(bg, F_OK), -1);
    th_check_snapshot(st, &m, data, big);

    /* A sender reads the current snapshot in pieces through its own fd,
     * which keeps the bytes when a newer snapshot replaces the file. */
    struct store_snap_reader r;
    assert_int_equal(store_snapshot_reader_open(st, &r), 0);
    assert_int_equal(r.meta.index, 40);
    assert_int_equal(r.data_len, big);
    assert_int_equal(r.data_crc, crc32c(0, data, big));

    /* A snapshot received from a leader goes to its own file (a background
     * write may be running at the same time), is readable mapped before it
     * is adopted, and is adopted like a background one. */
    struct store_snap_meta m2 = {.index = 45, .term = 2, .conf_len = 1, .conf = {9}};
    struct store_snap_stream *other;
    assert_int_equal(store_snapshot_stream_open(st, &m2, STORE_SNAP_BG, &other), 0);
    assert_int_equal(store_snapshot_stream_open(st, &m2, STORE_SNAP_RX, &ss), 0);
    assert_int_equal(store_snapshot_stream_write(other, "other", 5), 0);
    size_t rx_len = big / 2;
    for (size_t off = 0; off < rx_len; off += 65536)
        assert_int_equal(store_snapshot_stream_write(ss, data + big - rx_len + off,
                                                     rx_len - off < 65536 ? rx_len - off : 65536), 0);
    assert_int_equal(store_snapshot_stream_crc(ss), crc32c(0, data + big - rx_len, rx_len));
    assert_int_equal(store_snapshot_stream_close(ss, true), 0);
    assert_int_equal(store_snapshot_stream_close(other, false), 0);
    struct store_snap_map map;
    assert_int_equal(store_snapshot_stream_map(st, STORE_SNAP_RX, &map), 0);
    assert_int_equal(map.len, rx_len);
    assert_memory_equal(map.data, data + big - rx_len, rx_len);
    store_snapshot_unmap(&map);
    assert_int_equal(store_snapshot_adopt(st, &m2, STORE_SNAP_RX, &seq), 0);
    assert_int_equal(store_wait(st, seq), 0);
    th_check_snapshot(st, &m2, data + big - rx_len, rx_len);
    /* the old snapshot is still whole behind the reader's fd */
    uint8_t *old = malloc(big);
    assert_non_null(old);
    assert_int_equal(pread(r.fd, old, big, (off_t)r.data_off), (ssize_t)big);
    assert_memory_equal(old, data, big);
    free(old);
    close(r.fd);
    /* an abandoned transfer's file goes on the next open too */
    assert_int_equal(store_close(st), 0);
    snprintf(bg, sizeof(bg), "%s/snap/snapshot.rx", dir);
    th_spit(bg, (const uint8_t *)"partial", 7);
    st = th_open(dir, NULL);
    assert_int_equal(access(bg, F_OK), -1);
    assert_int_equal(store_snapshot_stream_map(st, STORE_SNAP_RX, &map), -ENOENT);
    assert_int_equal(store_close(st), 0);
    th_rmrf(dir);
    free(data);
    free(dir);
}

static void test_snapshot_replaces_log(void **state)
{
    (void)state;
    char *dir = th_tmpdir("snapreset");
    struct store *st = th_open(dir, NULL);
    append(st, 1, 10, 1, 0);
    struct store_snap_meta m = {.index = 20, .term = 3};
    uint64_t seq;
    assert_int_equal(store_snapshot_save(st, &m, "abc", 3, &seq), 0);
    assert_int_equal(store_last_index(st), 20);
    assert_int_equal(store_last_term(st), 3);
    assert_int_equal(store_first_index(st), 21);
    struct store_record *r = th_recs(5, 1, 3, 0, MAXLEN);
    assert_int_equal(store_append(st, NULL, r, 1, NULL), -EINVAL); /* below the snapshot */
    th_recs_free(r, 1);
    append(st, 21, 5, 3, 0);
    assert_int_equal(store_wait(st, seq), 0);
    assert_int_equal(store_close(st), 0);
    st = th_open(dir, NULL);
    assert_int_equal(store_first_index(st), 21);
    assert_int_equal(store_last_index(st), 25);
    struct store_progress p;
    assert_int_equal(store_poll(st, &p), 0);
    assert_int_equal(p.durable_index, 25);
    assert_int_equal(p.durable_term, 3);
    assert_int_equal(store_close(st), 0);

    /* A crash between the snapshot's rename and deleting the old log leaves
     * a log that does not continue the snapshot: it is discarded on open. */
    char *other = th_tmpdir("snapreset2");
    st = th_open(other, NULL);
    append(st, 1, 30, 2, 0);
    assert_int_equal(store_close(st), 0);
    char *src = NULL, *dst = NULL;
    assert_true(asprintf(&src, "%s/snap/snapshot", dir) > 0);
    assert_true(asprintf(&dst, "%s/snap/snapshot", other) > 0);
    size_t len;
    uint8_t *b = th_slurp(src, &len);
    th_spit(dst, b, len);
    free(b);
    struct store_open_info info;
    assert_int_equal(store_open(other, NULL, &st, &info), 0);
    assert_int_equal(info.dropped_records, 30);
    assert_int_equal(store_last_index(st), 20);
    assert_int_equal(store_close(st), 0);
    free(src);
    free(dst);
    th_rmrf(other);
    free(other);
    th_rmrf(dir);
    free(dir);
}

static void test_lock(void **state)
{
    (void)state;
    char *dir = th_tmpdir("lock");
    struct store *st = th_open(dir, NULL), *st2 = NULL;
    struct store_open_info info;
    assert_int_equal(store_open(dir, NULL, &st2, &info), -EBUSY);
    assert_non_null(strstr(info.error, "in use"));
    assert_int_equal(store_close(st), 0);
    st = th_open(dir, NULL);
    assert_int_equal(store_close(st), 0);
    th_rmrf(dir);
    free(dir);
}

/* Bump the version field of a file and fix its checksum, as a newer build
 * would write it: the store must refuse with a message, not misread it. */
static void bump_version(const char *path, size_t crc_at, size_t crc_len)
{
    size_t len;
    uint8_t *b = th_slurp(path, &len);
    put_le32(b + 8, 99);
    if (crc_len)
        put_le32(b + crc_at, crc32c(0, b, crc_len));
    th_spit(path, b, len);
    free(b);
}

static void expect_refused(const char *dir, int code, const char *needle)
{
    struct store *st = NULL;
    struct store_open_info info;
    int rc = store_open(dir, NULL, &st, &info);
    if (rc != code || !strstr(info.error, needle))
        fail_msg("open: %d (%s), wanted %d containing '%s'", rc, info.error, code, needle);
}

static void test_version_refused(void **state)
{
    (void)state;
    char *dir = th_tmpdir("version");
    struct store *st = th_open(dir, NULL);
    struct store_hard_state hs = {.term = 1};
    struct store_record *r = th_recs(1, 5, 1, 0, MAXLEN);
    assert_int_equal(store_append_sync(st, &hs, r, 5), 0);
    th_recs_free(r, 5);
    struct store_snap_meta m = {.index = 3, .term = 1};
    uint64_t seq;
    assert_int_equal(store_snapshot_save(st, &m, "x", 1, &seq), 0);
    assert_int_equal(store_wait(st, seq), 0);
    assert_int_equal(store_close(st), 0);

    char *copy = th_tmpdir("version-copy"), *p = NULL;
    th_copytree(dir, copy);
    char *seg = th_segment(copy, 0);
    bump_version(seg, 28, 28);
    expect_refused(copy, -EPROTONOSUPPORT, "format version 99");
    free(seg);
    th_rmrf(copy);

    th_copytree(dir, copy);
    assert_true(asprintf(&p, "%s/meta", copy) > 0);
    bump_version(p, 36, 36);
    expect_refused(copy, -EPROTONOSUPPORT, "format version 99");
    free(p);
    th_rmrf(copy);

    th_copytree(dir, copy);
    assert_true(asprintf(&p, "%s/snap/snapshot", copy) > 0);
    bump_version(p, 0, 0);
    expect_refused(copy, -EPROTONOSUPPORT, "format version 99");
    free(p);
    th_rmrf(copy);
    free(copy);
    th_rmrf(dir);
    free(dir);
}

static void test_validation(void **state)
{
    (void)state;
    char *dir = th_tmpdir("valid");
    struct store *st = th_open(dir, NULL);
    struct store_record *r = th_recs(2, 3, 1, 0, MAXLEN);
    assert_int_equal(store_append(st, NULL, r, 3, NULL), -EINVAL); /* gap: log empty */
    th_recs_free(r, 3);
    append(st, 1, 5, 2, 0);
    r = th_recs(6, 2, 1, 0, MAXLEN);
    assert_int_equal(store_append(st, NULL, r, 2, NULL), -EINVAL); /* term goes down */
    th_recs_free(r, 2);
    r = th_recs(6, 3, 2, 0, MAXLEN);
    r[2].index = 9;
    assert_int_equal(store_append(st, NULL, r, 3, NULL), -EINVAL); /* not consecutive */
    th_recs_free(r, 3);
    struct store_snap_meta m = {.index = 3, .term = 2, .conf_len = STORE_CONF_MAX + 1};
    assert_int_equal(store_snapshot_save(st, &m, NULL, 0, NULL), -EINVAL);
    assert_int_equal(store_last_index(st), 5);
    assert_int_equal(store_close(st), 0);
    th_rmrf(dir);
    free(dir);
}

/* The event-loop path: append asynchronously, wait for the eventfd to become
 * readable, learn the durable index from store_poll(). */
static void test_eventfd(void **state)
{
    (void)state;
    char *dir = th_tmpdir("eventfd");
    struct store *st = th_open(dir, NULL);
    struct store_record *r = th_recs(1, 200, 4, 0, MAXLEN);
    uint64_t seq = 0;
    for (int i = 0; i < 200; i += 20)
        assert_int_equal(store_append(st, NULL, r + i, 20, &seq), 0);
    struct store_progress p = {0};
    while (p.done_seq < seq) {
        struct pollfd pfd = {.fd = store_eventfd(st), .events = POLLIN};
        assert_int_equal(poll(&pfd, 1, 10000), 1);
        assert_int_equal(store_poll(st, &p), 0);
    }
    assert_int_equal(p.durable_index, 200);
    assert_int_equal(p.durable_term, 4);
    th_recs_free(r, 200);
    assert_int_equal(store_close(st), 0);
    th_rmrf(dir);
    free(dir);
}

/* The incarnation file: absent at first, what the last save wrote after a
 * reopen (in order with an append), refused as damaged when a byte flips,
 * and a leftover temp file of a crashed save is removed on open. */
static void test_incarnation_file(void **state)
{
    (void)state;
    char *dir = th_tmpdir("incfile");
    struct store *st = th_open(dir, NULL);
    void *data = NULL;
    size_t len = 0;
    assert_int_equal(store_incarnations_load(st, &data, &len), -ENOENT);
    struct store_record *r = th_recs(1, 3, 1, 0, MAXLEN);
    uint64_t seq = 0;
    assert_int_equal(store_incarnations_save(st, "first", 5, &seq), 0);
    assert_int_equal(store_append(st, NULL, r, 3, &seq), 0);
    assert_int_equal(store_incarnations_save(st, "second", 6, &seq), 0);
    assert_int_equal(store_incarnations_save(st, NULL, STORE_INC_MAX + 1, &seq), -EINVAL);
    assert_int_equal(store_wait(st, seq), 0);
    assert_int_equal(store_close(st), 0);
    char tmp[4096], path[4096];
    snprintf(tmp, sizeof(tmp), "%s/incarnations.tmp", dir);
    snprintf(path, sizeof(path), "%s/incarnations", dir);
    th_spit(tmp, (const uint8_t *)"torn", 4);
    st = th_open(dir, NULL);
    assert_int_equal(store_incarnations_load(st, &data, &len), 0);
    assert_int_equal(len, 6);
    assert_memory_equal(data, "second", 6);
    free(data);
    assert_int_equal(access(tmp, F_OK), -1);
    assert_int_equal(store_close(st), 0);
    size_t n = 0;
    uint8_t *b = th_slurp(path, &n);
    b[17] ^= 1;
    th_spit(path, b, n);
    free(b);
    st = th_open(dir, NULL);
    assert_int_equal(store_incarnations_load(st, &data, &len), -EBADMSG);
    assert_int_equal(store_last_index(st), 3);
    assert_int_equal(store_close(st), 0);
    th_recs_free(r, 3);
    th_rmrf(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_append_reopen),
        cmocka_unit_test(test_truncate_suffix),
        cmocka_unit_test(test_roll_compact_snapshot),
        cmocka_unit_test(test_snapshot_replaces_log),
        cmocka_unit_test(test_snapshot_stream_adopt),
        cmocka_unit_test(test_lock),
        cmocka_unit_test(test_version_refused),
        cmocka_unit_test(test_validation),
        cmocka_unit_test(test_eventfd),
        cmocka_unit_test(test_incarnation_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
