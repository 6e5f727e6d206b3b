/* watchdog.h - the event loop's side of systemd's watchdog (WatchdogSec=).
 * The ping comes from a loop timer, so a wedged loop stops pinging and the
 * service manager restarts the process. */
#ifndef RAFTKV_NET_WATCHDOG_H
#define RAFTKV_NET_WATCHDOG_H

#include <ev.h>
#include <stdbool.h>

/* Start a timer on loop that sends WATCHDOG=1 at half the interval systemd
 * asked for.  Returns false (and leaves w unstarted) when no watchdog is
 * enabled for this process. */
bool net_watchdog_start(struct ev_loop *loop, ev_timer *w);

#endif
