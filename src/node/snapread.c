/* snapread.c - outgoing snapshot chunks read on a workq thread
 * (snapread.h).  One thread serves every transfer; each has at most
 * SNAP_READS reads queued, so a transfer waits at most for the others'
 * few chunks. */
#include "node/snapread.h"

#include <errno.h>
#include <unistd.h>

void snapread_init(struct snapread *r, struct ev_loop *loop,
                   void (*cb)(struct ev_loop *, ev_async *, int), void *data)
{
    *r = (struct snapread){.loop = loop};
    /* Not in the background: each chunk's read is short, and the transfer
     * waits for it; at a lower priority under load it would wait for a CPU
     * after every chunk. */
    workq_init(&r->q, false);
    ev_async_init(&r->done, cb);
    r->done.data = data;
}

static ssize_t read_full(int fd, void *buf, size_t len, uint64_t off)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = pread(fd, (char *)buf + got, len - got, (off_t)(off + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

static void run_read(struct workq_job *j)
{
    struct snapread_req *q = (struct snapread_req *)j;
    q->rv = read_full(q->fd, q->buf, q->len, q->off);
    /* release: the loop that sees done sees rv and the buffer's bytes */
    atomic_store_explicit(&q->done, true, memory_order_release);
}

static void run_and_wake(struct workq_job *j)
{
    struct snapread *r = ((struct snapread_req *)j)->r;
    run_read(j);
    ev_async_send(r->loop, &r->done);
}

void snapread_submit(struct snapread *r, struct snapread_req *q)
{
    q->busy = true;
    q->r = r;
    q->job.run = run_and_wake;
    atomic_store_explicit(&q->done, false, memory_order_relaxed);
    if (!ev_is_active(&r->done))
        ev_async_start(r->loop, &r->done);
    if (!workq_push(&r->q, &q->job))
        run_read(&q->job); /* no thread to be had: the loop waits for this read */
}

bool snapread_collect(struct snapread_req *q)
{
    if (q->busy && atomic_load_explicit(&q->done, memory_order_acquire))
        q->busy = false;
    return !q->busy;
}

void snapread_stop(struct snapread *r)
{
    workq_stop(&r->q);
    if (ev_is_active(&r->done))
        ev_async_stop(r->loop, &r->done);
}
