/* test_framing.c - the frame decoder gives the same frames however the byte
 * stream is split (every two-way split, byte by byte, random chunks), takes
 * zero-length and maximum-size frames, refuses oversize lengths as soon as
 * the header is in, and gives back memory after a large frame. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "net/framing.h"

#define MAX_FRAME (200u * 1024u)

/* Empty frames next to each other and at the start; the large stream also
 * crosses the decoder's 64 KiB read chunk.  The small one keeps "every split
 * point" quadratic cost low. */
static const size_t small_sizes[] = { 0, 1, 0, 3, 100, 300, 0, 5, 2 };
static const size_t large_sizes[] = { 0, 1, 0, 3, 100, 70000, 0, 5, 65536, 2 };
static const size_t *sizes;
static size_t nframes;

static void use(const size_t *s, size_t n)
{
    sizes = s;
    nframes = n;
}
#define USE(a) use(a, sizeof(a) / sizeof(a[0]))

static uint8_t *build_stream(size_t *len)
{
    size_t total = 0, off = 0;
    for (size_t i = 0; i < nframes; i++)
        total += NET_FRAME_HDR + sizes[i];
    uint8_t *s = malloc(total), *payload = malloc(MAX_FRAME);
    for (size_t i = 0; i < nframes; i++) {
        for (size_t j = 0; j < sizes[i]; j++)
            payload[j] = (uint8_t)(i * 31 + j * 7);
        int64_t n = net_frame_encode(s + off, total - off, payload, sizes[i], MAX_FRAME);
        assert_int_equal(n, NET_FRAME_HDR + sizes[i]);
        off += (size_t)n;
    }
    free(payload);
    *len = total;
    return s;
}

/* Drains complete frames, checking each against the expected sequence. */
static void drain(struct net_decoder *d, size_t *next)
{
    const uint8_t *p;
    size_t len;
    int r;

    while ((r = net_decoder_next(d, &p, &len)) == 1) {
        assert_true(*next < nframes);
        assert_int_equal(len, sizes[*next]);
        for (size_t j = 0; j < len; j++)
            if (p[j] != (uint8_t)(*next * 31 + j * 7))
                fail_msg("frame %zu byte %zu differs", *next, j);
        (*next)++;
    }
    assert_int_equal(r, 0);
}

static void feed_in_pieces(const uint8_t *s, size_t len, const size_t *cuts, size_t ncuts)
{
    struct net_decoder d;
    size_t next = 0, prev = 0;

    net_decoder_init(&d, MAX_FRAME);
    for (size_t i = 0; i <= ncuts; i++) {
        size_t end = i < ncuts ? cuts[i] : len;
        assert_int_equal(net_decoder_feed(&d, s + prev, end - prev), 0);
        drain(&d, &next);
        prev = end;
    }
    assert_int_equal(next, nframes);
    assert_int_equal(net_decoder_buffered(&d), 0);
    net_decoder_free(&d);
}

static void test_every_split(void **state)
{
    size_t len;
    USE(small_sizes);
    uint8_t *s = build_stream(&len);

    for (size_t cut = 0; cut <= len; cut++)
        feed_in_pieces(s, len, &cut, 1);
    free(s);
}

static void test_byte_by_byte_and_random(void **state)
{
    size_t len;
    USE(large_sizes);
    uint8_t *s = build_stream(&len);
    size_t *cuts = malloc(len * sizeof(*cuts));
    uint64_t x = 88172645463325252ull;

    for (size_t i = 0; i < len; i++)
        cuts[i] = i + 1;
    feed_in_pieces(s, len, cuts, len - 1);
    for (int round = 0; round < 200; round++) {
        size_t n = 0, pos = 0;
        while (pos < len) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            pos += 1 + x % (round % 2 ? 17 : 9000);
            if (pos < len)
                cuts[n++] = pos;
        }
        feed_in_pieces(s, len, cuts, n);
    }
    free(cuts);
    free(s);
}

/* Reading straight into the decoder's buffer, as net_conn does. */
static void test_space_commit(void **state)
{
    size_t len, off = 0, next = 0;
    USE(large_sizes);
    uint8_t *s = build_stream(&len);
    struct net_decoder d;

    net_decoder_init(&d, MAX_FRAME);
    while (off < len) {
        uint8_t *space;
        size_t avail;
        assert_int_equal(net_decoder_space(&d, 0, &space, &avail), 0);
        assert_true(avail > 0);
        size_t n = avail < 1000 ? avail : 1000;
        if (n > len - off)
            n = len - off;
        memcpy(space, s + off, n);
        net_decoder_commit(&d, n);
        off += n;
        drain(&d, &next);
    }
    assert_int_equal(next, nframes);
    net_decoder_free(&d);
    free(s);
}

static void test_oversize(void **state)
{
    struct net_decoder d;
    uint8_t hdr[NET_FRAME_HDR], frame[NET_FRAME_HDR + 1025];
    const uint8_t *p;
    size_t len;

    /* Exactly max is fine. */
    net_decoder_init(&d, 1024);
    uint8_t *payload = calloc(1, 1025);
    assert_int_equal(net_frame_encode(frame, sizeof(frame), payload, 1024, 1024), NET_FRAME_HDR + 1024);
    assert_int_equal(net_decoder_feed(&d, frame, NET_FRAME_HDR + 1024), 0);
    assert_int_equal(net_decoder_next(&d, &p, &len), 1);
    assert_int_equal(len, 1024);

    /* max + 1 is refused from the header alone, and stays refused. */
    net_frame_put_header(hdr, 1025);
    assert_int_equal(net_decoder_feed(&d, hdr, 3), 0);
    assert_int_equal(net_decoder_next(&d, &p, &len), 0);
    assert_int_equal(net_decoder_feed(&d, hdr + 3, 1), 0);
    assert_int_equal(net_decoder_next(&d, &p, &len), -EMSGSIZE);
    assert_int_equal(net_decoder_next(&d, &p, &len), -EMSGSIZE);
    net_decoder_free(&d);

    /* A hostile 4 GiB length allocates nothing. */
    net_decoder_init(&d, 1024);
    net_frame_put_header(hdr, 0xffffffffu);
    assert_int_equal(net_decoder_feed(&d, hdr, 4), 0);
    assert_int_equal(net_decoder_next(&d, &p, &len), -EMSGSIZE);
    assert_true(d.cap <= 64 * 1024);
    net_decoder_free(&d);

    /* The encoder refuses what the decoder would. */
    assert_int_equal(net_frame_encode(frame, sizeof(frame), payload, 1025, 1024), -EMSGSIZE);
    assert_int_equal(net_frame_encode(frame, 10, payload, 7, 1024), -ENOSPC);
    free(payload);
}

static void test_zero_length(void **state)
{
    struct net_decoder d;
    uint8_t zeros[12] = { 0 };
    const uint8_t *p;
    size_t len;

    net_decoder_init(&d, 16);
    assert_int_equal(net_decoder_feed(&d, zeros, sizeof(zeros)), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(net_decoder_next(&d, &p, &len), 1);
        assert_int_equal(len, 0);
    }
    assert_int_equal(net_decoder_next(&d, &p, &len), 0);
    net_decoder_free(&d);
}

static void test_memory_given_back(void **state)
{
    const size_t max = 1u << 20;
    struct net_decoder d;
    uint8_t *frame = calloc(1, NET_FRAME_HDR + max), *space;
    const uint8_t *p;
    size_t len, avail;

    net_decoder_init(&d, max);
    net_frame_put_header(frame, (uint32_t)max);
    assert_int_equal(net_decoder_feed(&d, frame, NET_FRAME_HDR + max), 0);
    assert_int_equal(net_decoder_next(&d, &p, &len), 1);
    assert_true(d.cap >= max);
    assert_int_equal(net_decoder_space(&d, 0, &space, &avail), 0);
    assert_true(d.cap <= 64 * 1024);
    net_decoder_free(&d);
    free(frame);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_split),
        cmocka_unit_test(test_byte_by_byte_and_random),
        cmocka_unit_test(test_space_commit),
        cmocka_unit_test(test_oversize),
        cmocka_unit_test(test_zero_length),
        cmocka_unit_test(test_memory_given_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
