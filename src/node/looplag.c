/* looplag.c - loop lag: the longest iteration, and a journal line that says
 * where a long one's time went.  A low CPU share alone does not tell a
 * thread that waited for a CPU (a machine with more runnable threads than
 * cores) from one that blocked (fsync, a page fault, a lock); the run queue
 * delay in schedstat does. */
#include "node/looplag.h"

#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

/* An iteration over the threshold (50 ms by default: it makes heartbeats
 * late) is worth a journal line, at most one a minute -- except that a
 * longer one is explained too (LOOPLAG_WARN_GROWTH). */
#define LOOPLAG_WARN_EVERY_S 60.0
/* Within the minute, an iteration this much longer than the last one
 * warned about is logged too: the worst ones are what an operator needs
 * the cause of (at twice, a 117 ms iteration after a 69 ms one went
 * unexplained), and the factor still bounds the lines. */
#define LOOPLAG_WARN_GROWTH 1.25

void looplag_init(struct looplag *l, double warn_s)
{
    *l = (struct looplag){.warn_s = warn_s,
                          .fd = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC),
                          .stat_fd = open("/proc/stat", O_RDONLY | O_CLOEXEC)};
}

static double clk_tck(void)
{
    long t = sysconf(_SC_CLK_TCK);
    return t > 0 ? (double)t : 100.0;
}

static double ncpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (double)n : 1.0;
}

/* The "cpu" line's eighth number: all CPUs' steal.  About 6 us a read
 * (the kernel formats the whole file), once a tick. */
static uint64_t read_steal(int fd)
{
    char buf[256];
    ssize_t n = fd >= 0 ? pread(fd, buf, sizeof(buf) - 1, 0) : -1;
    if (n <= 0)
        return UINT64_MAX;
    buf[n] = '\0';
    uint64_t v[8];
    if (sscanf(buf, "cpu %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64
                    " %" SCNu64 " %" SCNu64, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6],
               &v[7]) != 8)
        return UINT64_MAX;
    return v[7];
}

void looplag_close(struct looplag *l)
{
    if (l->fd >= 0)
        close(l->fd);
    if (l->stat_fd >= 0)
        close(l->stat_fd);
    l->fd = l->stat_fd = -1;
}

/* schedstat is "cpu_ns wait_ns timeslices"; without it (a kernel without
 * CONFIG_SCHED_INFO) the thread's CPU clock still splits work from the rest. */
void looplag_sample(const struct looplag *l, double now, struct looplag_sched *s)
{
    char buf[96];
    ssize_t n = l->fd >= 0 ? pread(l->fd, buf, sizeof(buf) - 1, 0) : -1;
    *s = (struct looplag_sched){.at = now, .steal_ticks = read_steal(l->stat_fd)};
    if (n > 0) {
        buf[n] = '\0';
        if (sscanf(buf, "%" SCNu64 " %" SCNu64, &s->cpu_ns, &s->wait_ns) == 2)
            return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    s->cpu_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    s->wait_ns = UINT64_MAX; /* unknown */
}

void looplag_tick(struct looplag *l, double now)
{
    looplag_sample(l, now, &l->tick);
}

/* The window runs from the last tick's reading; the loop was idle in its
 * poll for the part of it before this iteration began, if any. */
void looplag_explain(const struct looplag_sched *before, const struct looplag_sched *after,
                     double start, struct looplag_why *why)
{
    double lag = after->at - start;
    bool known = after->wait_ns != UINT64_MAX && before->wait_ns != UINT64_MAX;
    *why = (struct looplag_why){
        .window = after->at - before->at,
        .ran = (double)(after->cpu_ns - before->cpu_ns) / 1e9,
        .waited = known ? (double)(after->wait_ns - before->wait_ns) / 1e9 : 0,
    };
    double idle = start > before->at ? start - before->at : 0;
    why->slept = why->window - why->ran - why->waited - idle;
    if (why->slept < 0)
        why->slept = 0;
    /* Time the thread neither ran nor waited for may be the hypervisor's:
     * on a VM, 25-36 ms "asleep" with 1 ms run came with bursts of steal
     * in /proc/stat, and bpftrace saw the thread leave no CPU for that
     * long.  Steal is counted per CPU in 10 ms ticks, so it is a bound on
     * what this thread lost, not a measure of it. */
    why->stolen = before->steal_ticks == UINT64_MAX || after->steal_ticks == UINT64_MAX
                      ? -1
                      : (double)(after->steal_ticks - before->steal_ticks) / clk_tck() / ncpus();
    why->cause = !known                   ? LOOPLAG_UNKNOWN
                 : why->waited > lag / 2  ? LOOPLAG_CPU_SHORT
                 : why->slept > lag / 2   ? (why->stolen >= why->slept / 2 ? LOOPLAG_STOLEN
                                                                           : LOOPLAG_BLOCKED)
                 : why->ran > lag / 2     ? LOOPLAG_WORK
                                          : LOOPLAG_UNKNOWN;
}

static void warn(struct looplag *l, double lag, double start, double now)
{
    static const char *const cause[] = {
        [LOOPLAG_UNKNOWN] = "",
        [LOOPLAG_CPU_SHORT] = ": the machine is short of CPUs",
        [LOOPLAG_BLOCKED] = ": the loop blocked in the kernel (disk I/O, a page fault or a lock)",
        [LOOPLAG_WORK] = ": work on the loop",
        [LOOPLAG_STOLEN] = ": the hypervisor took the CPU (steal)",
    };
    struct looplag_sched s;
    struct looplag_why why;
    looplag_sample(l, now, &s);
    looplag_explain(&l->tick, &s, start, &why);
    char steal[80] = "";
    if (why.stolen > 0)
        snprintf(steal, sizeof(steal), " (meanwhile the hypervisor took %.0f ms of each CPU)",
                 why.stolen * 1e3);
    if (s.wait_ns != UINT64_MAX)
        log_event(LOG_WARNING, "loop_lag", NULL,
                  "one event loop iteration took %.0f ms (over %.0f ms delays heartbeats and may cause "
                  "elections); over the last %.0f ms the loop thread ran %.0f ms, waited %.0f ms for a "
                  "CPU and slept %.0f ms outside its poll%s%s",
                  lag * 1e3, l->warn_s * 1e3, why.window * 1e3, why.ran * 1e3, why.waited * 1e3,
                  why.slept * 1e3, steal, cause[why.cause]);
    else
        log_event(LOG_WARNING, "loop_lag", NULL,
                  "one event loop iteration took %.0f ms (over %.0f ms delays heartbeats and may cause "
                  "elections); over the last %.0f ms the loop thread ran %.0f ms",
                  lag * 1e3, l->warn_s * 1e3, why.window * 1e3, why.ran * 1e3);
}

double looplag_iteration(struct looplag *l, double start, double now)
{
    double lag = now - start;
    if (!l->started) {
        l->started = true;
        return -1;
    }
    if (lag > l->max_s)
        l->max_s = lag;
    if (lag > l->warn_s &&
        (start - l->warned_at >= LOOPLAG_WARN_EVERY_S || lag >= LOOPLAG_WARN_GROWTH * l->warned_lag)) {
        if (start - l->warned_at >= LOOPLAG_WARN_EVERY_S)
            l->warned_at = start;
        l->warned_lag = lag;
        warn(l, lag, start, now);
    }
    return lag;
}
