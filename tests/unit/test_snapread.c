/* test_snapread.c - the snapshot sender's reads off the loop
 * (src/node/snapread.c): chunks come back whole and at the right offsets,
 * the end of the file and a bad descriptor are reported, the loop hears of
 * each finished read, stopping finishes what is queued, and after the stop
 * a read happens on the spot. */
#include "node/snapread.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define CHUNK (256u * 1024)
#define NREQ 6
#define FILE_LEN (NREQ * CHUNK - 1000) /* the last chunk is short */

struct fix {
    struct ev_loop *loop;
    struct snapread r;
    int fd;
    unsigned wakeups;
    struct snapread_req q[NREQ];
    uint8_t *buf[NREQ];
};

static uint8_t byte_at(uint64_t off)
{
    return (uint8_t)(off * 2654435761u >> 13);
}

static void on_done(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)loop, (void)revents;
    struct fix *f = w->data;
    f->wakeups++;
}

static int setup(void **state)
{
    struct fix *f = calloc(1, sizeof(*f));
    char path[] = "/tmp/raftkv-snapread-XXXXXX";
    f->fd = mkstemp(path);
    assert_true(f->fd >= 0);
    unlink(path);
    uint8_t *data = malloc(FILE_LEN);
    for (uint64_t i = 0; i < FILE_LEN; i++)
        data[i] = byte_at(i);
    assert_int_equal(write(f->fd, data, FILE_LEN), FILE_LEN);
    free(data);
    f->loop = ev_loop_new(EVFLAG_AUTO);
    snapread_init(&f->r, f->loop, on_done, f);
    for (int i = 0; i < NREQ; i++) {
        f->buf[i] = malloc(CHUNK);
        f->q[i] = (struct snapread_req){.fd = f->fd, .off = (uint64_t)i * CHUNK, .len = CHUNK,
                                        .buf = f->buf[i]};
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fix *f = *state;
    snapread_stop(&f->r); /* idempotent for the tests that stopped already */
    ev_loop_destroy(f->loop);
    close(f->fd);
    for (int i = 0; i < NREQ; i++)
        free(f->buf[i]);
    free(f);
    return 0;
}

static void check(const struct snapread_req *q)
{
    uint64_t want = q->off + q->len <= FILE_LEN ? q->len : FILE_LEN - q->off;
    assert_int_equal(q->rv, (ssize_t)want);
    const uint8_t *b = q->buf;
    for (uint64_t i = 0; i < want; i++)
        if (b[i] != byte_at(q->off + i))
            fail_msg("byte %llu of the read at %llu is wrong", (unsigned long long)i,
                     (unsigned long long)q->off);
}

/* Runs the loop until every request is collected (5 s at most). */
static void collect_all(struct fix *f, int n)
{
    for (int round = 0; round < 5000; round++) {
        int left = 0;
        for (int i = 0; i < n; i++)
            left += !snapread_collect(&f->q[i]);
        if (!left)
            return;
        ev_run(f->loop, EVRUN_ONCE | EVRUN_NOWAIT);
        usleep(1000);
    }
    fail_msg("reads not done within 5 s");
}

static void test_reads_on_the_thread(void **state)
{
    struct fix *f = *state;
    /* out of order, as transfers to several followers would ask */
    for (int i = NREQ - 1; i >= 0; i--)
        snapread_submit(&f->r, &f->q[i]);
    for (int i = 0; i < NREQ; i++)
        assert_true(f->q[i].busy);
    collect_all(f, NREQ);
    for (int i = 0; i < NREQ; i++) {
        assert_false(f->q[i].busy);
        check(&f->q[i]);
    }
    /* the last chunk is the short one */
    assert_int_equal(f->q[NREQ - 1].rv, (ssize_t)(CHUNK - 1000));
    /* the loop was woken: the ev_async is how a transfer learns its chunk is in */
    for (int i = 0; i < 1000 && f->wakeups == 0; i++) {
        ev_run(f->loop, EVRUN_ONCE | EVRUN_NOWAIT);
        usleep(1000);
    }
    assert_true(f->wakeups > 0);
    /* a request is reusable once collected */
    snapread_submit(&f->r, &f->q[0]);
    collect_all(f, 1);
    check(&f->q[0]);
}

static void test_bad_descriptor_and_past_the_end(void **state)
{
    struct fix *f = *state;
    f->q[0].fd = -1;
    f->q[1].off = FILE_LEN + 5; /* nothing there: 0 bytes, not an error */
    snapread_submit(&f->r, &f->q[0]);
    snapread_submit(&f->r, &f->q[1]);
    collect_all(f, 2);
    assert_int_equal(f->q[0].rv, -EBADF);
    assert_int_equal(f->q[1].rv, 0);
}

static void test_stop_finishes_the_queue(void **state)
{
    struct fix *f = *state;
    for (int i = 0; i < NREQ; i++)
        snapread_submit(&f->r, &f->q[i]);
    snapread_stop(&f->r);
    /* no loop run needed: after the stop every read is done */
    for (int i = 0; i < NREQ; i++) {
        assert_true(snapread_collect(&f->q[i]));
        check(&f->q[i]);
    }
    /* and later ones are read on the spot */
    memset(f->buf[2], 0, CHUNK);
    snapread_submit(&f->r, &f->q[2]);
    assert_true(snapread_collect(&f->q[2]));
    check(&f->q[2]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reads_on_the_thread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_descriptor_and_past_the_end, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_finishes_the_queue, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
