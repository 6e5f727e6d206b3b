/* evtest.h - bounded waiting on a libev loop for the net tests: every wait
 * has a deadline, so a broken build fails fast instead of hanging. */
#ifndef RAFTKV_TESTS_NET_EVTEST_H
#define RAFTKV_TESTS_NET_EVTEST_H

#include <ev.h>
#include <stdbool.h>

struct evtest_deadline {
    struct ev_loop *loop;
    ev_timer timer;
    bool expired;
};

void evtest_deadline_start(struct evtest_deadline *d, struct ev_loop *loop, double seconds);
void evtest_deadline_stop(struct evtest_deadline *d);

/* Runs the loop until cond holds or timeout_s passes; evaluates to cond. */
#define EVTEST_UNTIL(loop, timeout_s, cond)                          \
    __extension__({                                                  \
        struct evtest_deadline dl_;                                  \
        evtest_deadline_start(&dl_, (loop), (timeout_s));            \
        while (!(cond) && !dl_.expired)                              \
            ev_run((loop), EVRUN_ONCE);                              \
        evtest_deadline_stop(&dl_);                                  \
        (bool)(cond);                                                \
    })

/* Runs the loop for about seconds, to show that something does not happen. */
#define EVTEST_FOR(loop, seconds) ((void)EVTEST_UNTIL((loop), (seconds), false))

#endif
