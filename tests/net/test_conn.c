/* test_conn.c - net_conn over a socketpair with a real libev loop: frames
 * both ways in order, protobuf sends, partial writes, the pending-output
 * limit disconnecting a peer that never reads, oversize frames, EOF, pausing,
 * close-after-flush, closing or destroying from inside on_frame, and output
 * coalescing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <ev.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "evtest.h"
#include "net/conn.h"
#include "net/framing.h"
#include "raftkv.pb-c.h"

#define MAX_FRAME (4u << 20)

struct side {
    struct net_conn *c;
    int frames;
    size_t bytes;
    uint8_t last[64];
    size_t last_len;
    bool closed, drained;
    enum net_close_reason reason;
    int err;
    /* behaviour on each frame */
    enum { KEEP, CLOSE_ON_FIRST, DESTROY_ON_FIRST, PAUSE_ON_FIRST, ECHO } mode;
};

static void on_frame(struct net_conn *c, const uint8_t *p, size_t len, void *ud)
{
    struct side *s = ud;

    assert_false(s->closed);
    s->frames++;
    s->bytes += len;
    s->last_len = len;
    memcpy(s->last, p, len < sizeof(s->last) ? len : sizeof(s->last));
    switch (s->mode) {
    case CLOSE_ON_FIRST:
        net_conn_close(c, -ECANCELED);
        /* Closed already: sends fail, nothing is queued. */
        assert_int_equal(net_conn_send(c, "x", 1), -EPIPE);
        assert_false(net_conn_is_open(c));
        break;
    case DESTROY_ON_FIRST:
        net_conn_destroy(c);
        s->c = NULL;
        break;
    case PAUSE_ON_FIRST:
        net_conn_set_reading(c, false);
        break;
    case ECHO:
        assert_int_equal(net_conn_send(c, p, len), 0);
        break;
    case KEEP:
        break;
    }
}

static void on_close(struct net_conn *c, enum net_close_reason reason, int err, void *ud)
{
    struct side *s = ud;

    assert_false(s->closed);
    s->closed = true;
    s->reason = reason;
    s->err = err;
    s->c = NULL;
}

static void on_drain(struct net_conn *c, void *ud)
{
    ((struct side *)ud)->drained = true;
}

static const struct net_conn_ops ops = { .on_frame = on_frame, .on_close = on_close, .on_drain = on_drain };

struct pair {
    struct ev_loop *loop;
    struct side a, b;
    int raw; /* the other end when only one side is a net_conn */
};

static const struct net_conn_limits limits = {.max_frame = MAX_FRAME, .max_pending_output = 8u << 20};

static void pair_conns(struct pair *p, const struct net_conn_limits *la)
{
    int sv[2];

    memset(p, 0, sizeof(*p));
    p->loop = ev_loop_new(EVFLAG_AUTO);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    p->a.c = net_conn_new(p->loop, sv[0], la ? la : &limits, &ops, &p->a);
    p->b.c = net_conn_new(p->loop, sv[1], &limits, &ops, &p->b);
    assert_non_null(p->a.c);
    assert_non_null(p->b.c);
    p->raw = -1;
}

/* a is a net_conn, raw is a plain socket the test reads/writes itself. */
static void pair_raw(struct pair *p, const struct net_conn_limits *la)
{
    int sv[2];

    memset(p, 0, sizeof(*p));
    p->loop = ev_loop_new(EVFLAG_AUTO);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    p->a.c = net_conn_new(p->loop, sv[0], la ? la : &limits, &ops, &p->a);
    p->raw = sv[1];
}

static void pair_free(struct pair *p)
{
    if (p->a.c)
        net_conn_destroy(p->a.c);
    if (p->b.c)
        net_conn_destroy(p->b.c);
    if (p->raw >= 0)
        close(p->raw);
    ev_loop_destroy(p->loop);
}

static void test_frames_both_ways(void **state)
{
    struct pair p;

    pair_conns(&p, NULL);
    p.b.mode = ECHO;
    assert_int_equal(net_conn_send(p.a.c, "one", 3), 0);
    assert_int_equal(net_conn_send(p.a.c, "", 0), 0);
    assert_int_equal(net_conn_send(p.a.c, "three", 5), 0);
    assert_true(EVTEST_UNTIL(p.loop, 5, p.a.frames == 3));
    assert_int_equal(p.b.frames, 3);
    assert_int_equal(p.a.frames, 3);
    assert_int_equal(p.a.last_len, 5);
    assert_memory_equal(p.a.last, "three", 5);
    /* small frames on an idle socket are written at once: nothing backed up */
    assert_false(p.a.drained);

    struct net_conn_stats st;
    net_conn_get_stats(p.a.c, &st);
    assert_int_equal(st.frames_out, 3);
    assert_int_equal(st.frames_in, 3);
    assert_int_equal(st.bytes_out, 3 * NET_FRAME_HDR + 8);

    /* Over max_frame: refused, connection unharmed. */
    void *big = calloc(1, MAX_FRAME + 1);
    assert_int_equal(net_conn_send(p.a.c, big, MAX_FRAME + 1), -EMSGSIZE);
    assert_true(net_conn_is_open(p.a.c));
    free(big);
    assert_string_equal(net_conn_peer_name(p.a.c), "unix:");
    pair_free(&p);
}

static void test_send_msg(void **state)
{
    struct pair p;
    Raftkv__Request req = RAFTKV__REQUEST__INIT, *back;

    pair_conns(&p, NULL);
    req.has_id = 1;
    req.id = 0xfeedbeef;
    req.has_client_id = 1;
    req.client_id = 42;
    assert_int_equal(net_conn_send_msg(p.a.c, &req.base), 0);
    assert_true(EVTEST_UNTIL(p.loop, 5, p.b.frames == 1));
    back = raftkv__request__unpack(NULL, p.b.last_len, p.b.last);
    assert_non_null(back);
    assert_int_equal(back->id, 0xfeedbeef);
    assert_int_equal(back->client_id, 42);
    raftkv__request__free_unpacked(back, NULL);
    pair_free(&p);
}

/* A 2 MiB frame through a socket whose buffer holds a fraction of it: the
 * first write is partial, the rest follows from the loop, bytes intact. */
static void test_partial_writes(void **state)
{
    struct pair p;
    size_t big = 2u << 20;
    uint8_t *buf = malloc(big);
    int small = 16 * 1024;

    pair_conns(&p, NULL);
    for (size_t i = 0; i < big; i++)
        buf[i] = (uint8_t)(i * 13 + 1);
    assert_int_equal(setsockopt(net_conn_fd(p.a.c), SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    assert_int_equal(net_conn_send(p.a.c, buf, big), 0);
    assert_int_equal(net_conn_send(p.a.c, "tail", 4), 0);
    assert_int_equal(net_conn_flush(p.a.c), 0);
    size_t left = net_conn_pending_output(p.a.c);
    assert_true(left > 0 && left < big + 4 + 2 * NET_FRAME_HDR);
    assert_true(EVTEST_UNTIL(p.loop, 10, p.b.frames == 2));
    assert_int_equal(p.b.bytes, big + 4);
    assert_memory_equal(p.b.last, "tail", 4);
    assert_int_equal(net_conn_pending_output(p.a.c), 0);
    assert_true(p.a.drained); /* the backed-up queue emptied */
    free(buf);
    pair_free(&p);
}

/* The peer never reads: queued output reaches max_pending_output and the
 * connection is dropped instead of growing. */
static void test_slow_reader(void **state)
{
    struct net_conn_limits lim = {.max_frame = MAX_FRAME, .max_pending_output = 256 * 1024};
    struct pair p;
    uint8_t chunk[16 * 1024] = { 0 };
    int r = 0, sent = 0;

    pair_raw(&p, &lim);
    /* Let the loop write what the socket takes, then keep adding. */
    while (r == 0 && sent < 10000) {
        r = net_conn_send(p.a.c, chunk, sizeof(chunk));
        if (r == 0)
            sent++;
        if (sent % 8 == 0)
            EVTEST_FOR(p.loop, 0.001);
    }
    assert_int_equal(r, -ENOBUFS);
    assert_true(net_conn_pending_output(p.a.c) <= lim.max_pending_output);
    assert_false(p.a.closed); /* the callback comes from the loop, later */
    assert_int_equal(net_conn_send(p.a.c, "x", 1), -EPIPE);
    assert_true(EVTEST_UNTIL(p.loop, 5, p.a.closed));
    assert_int_equal(p.a.reason, NET_CLOSE_SLOW_READER);
    assert_int_equal(p.a.err, -ENOBUFS);
    assert_string_equal(net_close_reason_str(p.a.reason), "peer not reading (output limit reached)");
    pair_free(&p);
}

/* A frame begun and never finished (a byte every 100 ms) is cut off after
 * frame_timeout_ms; frames that keep completing are not. */
static void test_stalled_frame(void **state)
{
    struct net_conn_limits lim = {.max_frame = MAX_FRAME, .max_pending_output = 8u << 20,
                                  .frame_timeout_ms = 300};
    struct pair p;
    uint8_t hdr[NET_FRAME_HDR];

    pair_raw(&p, &lim);
    net_frame_put_header(hdr, 1000);
    assert_int_equal(write(p.raw, hdr, sizeof(hdr)), (ssize_t)sizeof(hdr));
    double t0 = ev_time();
    for (int i = 0; i < 20 && !p.a.closed; i++) {
        (void)send(p.raw, "x", 1, MSG_NOSIGNAL); /* fails once the conn gave up */
        EVTEST_FOR(p.loop, 0.1);
    }
    assert_true(p.a.closed);
    assert_int_equal(p.a.reason, NET_CLOSE_STALLED);
    assert_int_equal(p.a.err, -ETIMEDOUT);
    assert_true(ev_time() - t0 < 1.0);
    pair_free(&p);

    /* A client pipelining small frames, each write ending mid-frame, for
     * three timeouts' worth: never closed. */
    pair_raw(&p, &lim);
    uint8_t two[2 * (NET_FRAME_HDR + 4)];
    net_frame_put_header(two, 4);
    memcpy(two + NET_FRAME_HDR, "abcd", 4);
    memcpy(two + NET_FRAME_HDR + 4, two, NET_FRAME_HDR + 4);
    assert_int_equal(write(p.raw, two, 5), 5); /* header + "a" */
    for (int i = 0; i < 20; i++) {
        /* "bcd" ends this frame, header + "a" begins the next */
        assert_int_equal(send(p.raw, two + 5, 8, MSG_NOSIGNAL), 8);
        EVTEST_FOR(p.loop, 0.05);
    }
    assert_false(p.a.closed);
    assert_int_equal(p.a.frames, 20);
    pair_free(&p);
}

static void test_oversize_input(void **state)
{
    struct pair p;
    uint8_t hdr[NET_FRAME_HDR];

    pair_raw(&p, NULL);
    net_frame_put_header(hdr, 3);
    assert_int_equal(write(p.raw, hdr, 4), 4);
    assert_int_equal(write(p.raw, "abc", 3), 3);
    net_frame_put_header(hdr, MAX_FRAME + 1);
    assert_int_equal(write(p.raw, hdr, 4), 4);
    assert_true(EVTEST_UNTIL(p.loop, 5, p.a.closed));
    assert_int_equal(p.a.frames, 1);
    assert_int_equal(p.a.reason, NET_CLOSE_PROTOCOL);
    assert_int_equal(p.a.err, -EMSGSIZE);
    /* The fd is closed: the peer sees EOF. */
    char c;
    assert_int_equal(read(p.raw, &c, 1), 0);
    pair_free(&p);
}

static void test_eof_with_partial_frame(void **state)
{
    struct pair p;

    pair_raw(&p, NULL);
    assert_int_equal(write(p.raw, "\0\0\0\5ab", 6), 6);
    shutdown(p.raw, SHUT_WR);
    assert_true(EVTEST_UNTIL(p.loop, 5, p.a.closed));
    assert_int_equal(p.a.frames, 0);
    assert_int_equal(p.a.reason, NET_CLOSE_EOF);
    assert_int_equal(p.a.err, 0);
    pair_free(&p);
}

static void send_three(struct pair *p)
{
    assert_int_equal(net_conn_send(p->a.c, "1", 1), 0);
    assert_int_equal(net_conn_send(p->a.c, "2", 1), 0);
    assert_int_equal(net_conn_send(p->a.c, "3", 1), 0);
    /* One write: all three arrive in one read on the other side. */
    assert_int_equal(net_conn_flush(p->a.c), 0);
}

static void test_close_from_callback(void **state)
{
    struct pair p;

    pair_conns(&p, NULL);
    p.b.mode = CLOSE_ON_FIRST;
    send_three(&p);
    assert_true(EVTEST_UNTIL(p.loop, 5, p.b.closed && p.a.closed));
    assert_int_equal(p.b.frames, 1);
    assert_int_equal(p.b.reason, NET_CLOSE_LOCAL);
    assert_int_equal(p.b.err, -ECANCELED);
    assert_int_equal(p.a.reason, NET_CLOSE_EOF);
    pair_free(&p);
}

static void test_destroy_from_callback(void **state)
{
    struct pair p;

    pair_conns(&p, NULL);
    p.b.mode = DESTROY_ON_FIRST;
    send_three(&p);
    assert_true(EVTEST_UNTIL(p.loop, 5, p.a.closed));
    EVTEST_FOR(p.loop, 0.02);
    assert_int_equal(p.b.frames, 1);
    assert_false(p.b.closed); /* destroy means: no callback */
    pair_free(&p);
}

static void test_pause_resume(void **state)
{
    struct pair p;

    pair_conns(&p, NULL);
    p.b.mode = PAUSE_ON_FIRST;
    send_three(&p);
    assert_true(EVTEST_UNTIL(p.loop, 5, p.b.frames == 1));
    EVTEST_FOR(p.loop, 0.05);
    assert_int_equal(p.b.frames, 1);
    p.b.mode = KEEP;
    net_conn_set_reading(p.b.c, true);
    assert_int_equal(p.b.frames, 1); /* delivered from the loop, not from here */
    assert_true(EVTEST_UNTIL(p.loop, 5, p.b.frames == 3));
    assert_memory_equal(p.b.last, "3", 1);
    pair_free(&p);
}

static void test_close_after_flush(void **state)
{
    struct pair p;

    pair_conns(&p, NULL);
    assert_int_equal(net_conn_send(p.a.c, "bye", 3), 0);
    net_conn_close_after_flush(p.a.c, -EPROTO);
    assert_false(net_conn_is_open(p.a.c));
    assert_int_equal(net_conn_send(p.a.c, "more", 4), -EPIPE);
    assert_true(EVTEST_UNTIL(p.loop, 5, p.a.closed && p.b.closed));
    assert_int_equal(p.b.frames, 1);
    assert_memory_equal(p.b.last, "bye", 3);
    assert_int_equal(p.b.reason, NET_CLOSE_EOF);
    assert_int_equal(p.a.reason, NET_CLOSE_LOCAL);
    assert_int_equal(p.a.err, -EPROTO);
    pair_free(&p);
}

/* With the loop's coalescer, frames queued outside the connection's own
 * callbacks (a proxy relaying, a node answering a batch) wait until the
 * loop is about to block and then leave in one write: after the sends the
 * peer has nothing yet, one loop turn later all three, in order.  Without
 * it each leaves at once; stopping it writes what waits. */
static void test_coalesce(void **state)
{
    struct pair p;
    uint8_t buf[64];

    (void)state;
    pair_raw(&p, NULL);
    assert_int_equal(net_conn_send(p.a.c, "now", 3), 0);
    assert_int_equal(recv(p.raw, buf, sizeof(buf), MSG_DONTWAIT), 7);
    assert_int_equal(net_coalesce_start(p.loop), 0);
    assert_int_equal(net_coalesce_start(p.loop), 0);
    assert_int_equal(net_conn_send(p.a.c, "one", 3), 0);
    assert_int_equal(net_conn_send(p.a.c, "two", 3), 0);
    assert_int_equal(net_conn_send(p.a.c, "six", 3), 0);
    assert_int_equal(recv(p.raw, buf, sizeof(buf), MSG_DONTWAIT), -1);
    ev_run(p.loop, EVRUN_NOWAIT);
    assert_int_equal(recv(p.raw, buf, sizeof(buf), MSG_DONTWAIT), 21);
    assert_memory_equal(buf + 4, "one", 3);
    assert_memory_equal(buf + 18, "six", 3);
    assert_int_equal(net_conn_send(p.a.c, "end", 3), 0);
    net_coalesce_stop(p.loop);
    assert_int_equal(recv(p.raw, buf, sizeof(buf), MSG_DONTWAIT), 7);
    /* a connection freed while it waits leaves nothing dangling */
    assert_int_equal(net_coalesce_start(p.loop), 0);
    assert_int_equal(net_conn_send(p.a.c, "bye", 3), 0);
    net_conn_destroy(p.a.c);
    p.a.c = NULL;
    ev_run(p.loop, EVRUN_NOWAIT);
    net_coalesce_stop(p.loop);
    pair_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frames_both_ways),
        cmocka_unit_test(test_send_msg),
        cmocka_unit_test(test_partial_writes),
        cmocka_unit_test(test_slow_reader),
        cmocka_unit_test(test_stalled_frame),
        cmocka_unit_test(test_oversize_input),
        cmocka_unit_test(test_eof_with_partial_frame),
        cmocka_unit_test(test_close_from_callback),
        cmocka_unit_test(test_destroy_from_callback),
        cmocka_unit_test(test_pause_resume),
        cmocka_unit_test(test_close_after_flush),
        cmocka_unit_test(test_coalesce),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
