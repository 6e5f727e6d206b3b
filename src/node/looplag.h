/* looplag.h - how long one event loop iteration's work took, and why a long
 * one was long: the loop thread ran, waited for a CPU, or slept in the
 * kernel (disk I/O, a lock, a page fault).  The scheduler's own accounts
 * (/proc/thread-self/schedstat) are read once per tick and again when an
 * iteration was long, never per iteration. */
#ifndef RAFTKV_NODE_LOOPLAG_H
#define RAFTKV_NODE_LOOPLAG_H

#include <stdbool.h>
#include <stdint.h>

struct looplag_sched {
    uint64_t cpu_ns, wait_ns; /* on a CPU; runnable but waiting for one */
    uint64_t steal_ticks;     /* all CPUs' steal (/proc/stat, USER_HZ); UINT64_MAX: unknown */
    double at;                /* monotonic seconds of the reading */
};

struct looplag {
    double warn_s;      /* an iteration longer than this is worth a line */
    double max_s;       /* the longest iteration since start (STATUS) */
    double warned_at;   /* when the last warning went out */
    double warned_lag;  /* the longest iteration warned about in that minute */
    bool started;       /* the first iteration includes recovery: not counted */
    int fd;             /* the loop thread's schedstat, or -1 */
    int stat_fd;        /* /proc/stat (steal), or -1 */
    struct looplag_sched tick; /* read at the last tick */
};

/* Where a long iteration's time went, over the window from the reading
 * `before` (the last tick's) to `after` (at the iteration's end). */
enum looplag_cause {
    LOOPLAG_UNKNOWN,   /* no run queue figures, or no share above half */
    LOOPLAG_CPU_SHORT, /* runnable, waiting for a CPU */
    LOOPLAG_BLOCKED,   /* asleep in the kernel outside the poll */
    LOOPLAG_WORK,      /* running: our own code */
    /* "asleep", while the hypervisor took at least half as much of each
     * CPU: the guest's clocks leave steal out of run and wait times, so a
     * thread whose vCPU is taken looks asleep */
    LOOPLAG_STOLEN,
};
struct looplag_why {
    double window, ran, waited, slept; /* seconds; slept includes steal */
    double stolen; /* steal per CPU over the window (10 ms resolution); -1 unknown */
    enum looplag_cause cause;
};
void looplag_sample(const struct looplag *l, double now, struct looplag_sched *s);
void looplag_explain(const struct looplag_sched *before, const struct looplag_sched *after,
                     double start, struct looplag_why *why);

/* Call from the loop's thread: the schedstat file named is that thread's.
 * warn_s: the journal line's threshold (cluster.loop_lag_warn_ms). */
void looplag_init(struct looplag *l, double warn_s);
void looplag_close(struct looplag *l);

/* Once per tick. */
void looplag_tick(struct looplag *l, double now);

/* At the end of an iteration that began (its poll returned) at start;
 * logs a rate-limited warning for one over the threshold.  Returns the
 * iteration's length, or -1 for the first (recovery: not counted). */
double looplag_iteration(struct looplag *l, double start, double now);

#endif
