/* evtest.c - the deadline timer behind EVTEST_UNTIL. */
#include "evtest.h"

static void deadline_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    ((struct evtest_deadline *)w->data)->expired = true;
}

void evtest_deadline_start(struct evtest_deadline *d, struct ev_loop *loop, double seconds)
{
    d->loop = loop;
    d->expired = false;
    ev_timer_init(&d->timer, deadline_cb, seconds, 0.);
    d->timer.data = d;
    ev_timer_start(loop, &d->timer);
}

void evtest_deadline_stop(struct evtest_deadline *d)
{
    ev_timer_stop(d->loop, &d->timer);
}
