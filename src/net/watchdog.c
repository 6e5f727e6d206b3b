/* watchdog.c - WATCHDOG=1 pings from the event loop; see watchdog.h. */
#include "net/watchdog.h"

#include <stdint.h>
#include <systemd/sd-daemon.h>

static void on_watchdog(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)w, (void)revents;
    sd_notify(0, "WATCHDOG=1");
}

bool net_watchdog_start(struct ev_loop *loop, ev_timer *w)
{
    uint64_t usec = 0;
    /* sd_watchdog_enabled() also checks WATCHDOG_PID, so a child that
     * inherited the environment does not ping for its parent. */
    if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0)
        return false;
    /* Half the interval: one late ping is not yet a missed deadline. */
    double iv = (double)usec / 2e6;
    ev_timer_init(w, on_watchdog, iv, iv);
    ev_timer_start(loop, w);
    return true;
}
