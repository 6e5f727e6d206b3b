/* test_looplag.c - the loop lag warning names the right cause: a thread
 * that slept in the kernel, one that ran, and one that waited for a CPU
 * (a lower-priority thread sharing one CPU with a busy one) are told apart
 * from the scheduler's own accounts, not from the CPU share alone. */
#include "node/looplag.h"

#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define BUSY_S 0.2

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void spin(double secs)
{
    double end = mono() + secs;
    while (mono() < end) {
    }
}

/* Reads before, runs what(), reads after, as looplag_iteration does when
 * an iteration that began at `start` ends. */
static void measure(void (*what)(void), struct looplag_why *why)
{
    struct looplag l;
    struct looplag_sched before, after;
    looplag_init(&l, 0.050);
    assert_true(l.fd >= 0 || l.fd == -1);
    looplag_sample(&l, mono(), &before);
    double start = mono();
    what();
    looplag_sample(&l, mono(), &after);
    looplag_explain(&before, &after, start, why);
    looplag_close(&l);
}

static void do_sleep(void)
{
    struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)(BUSY_S * 1e9)};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static void do_spin(void)
{
    spin(BUSY_S);
}

static void test_blocked(void **state)
{
    (void)state;
    struct looplag_why why;
    measure(do_sleep, &why);
    if (why.cause == LOOPLAG_UNKNOWN && why.waited == 0)
        skip(); /* no schedstat on this kernel */
    assert_int_equal(why.cause, LOOPLAG_BLOCKED);
    assert_true(why.slept >= BUSY_S * 0.9);
    assert_true(why.ran < BUSY_S / 2);
}

static void test_work(void **state)
{
    (void)state;
    struct looplag_why why;
    measure(do_spin, &why);
    /* On a busy machine the spinner may also wait; it still ran or waited,
     * never slept. */
    assert_true(why.slept < BUSY_S / 4);
    assert_true(why.ran + why.waited >= BUSY_S * 0.9);
    if (why.waited < BUSY_S / 4)
        assert_int_equal(why.cause, LOOPLAG_WORK);
}

/* A normal-priority spinner pinned to the CPU this thread is pinned to. */
static atomic_bool hog_stop;
static void *hog(void *arg)
{
    cpu_set_t *set = arg;
    sched_setaffinity(0, sizeof(*set), set);
    while (!atomic_load(&hog_stop)) {
    }
    return NULL;
}

static void test_cpu_short(void **state)
{
    (void)state;
    cpu_set_t one, old;
    CPU_ZERO(&one);
    CPU_SET(0, &one);
    assert_int_equal(sched_getaffinity(0, sizeof(old), &old), 0);
    if (sched_setaffinity(0, sizeof(one), &one) != 0)
        skip();
    pthread_t t;
    atomic_store(&hog_stop, false);
    assert_int_equal(pthread_create(&t, NULL, hog, &one), 0);
    /* nice 19 against nice 0 on one CPU: this thread gets ~1.5% of it.
     * Raising one's own nice needs no privilege. */
    pid_t tid = (pid_t)syscall(SYS_gettid);
    int was = getpriority(PRIO_PROCESS, (id_t)tid);
    assert_int_equal(setpriority(PRIO_PROCESS, (id_t)tid, 19), 0);
    struct looplag_why why;
    measure(do_spin, &why);
    atomic_store(&hog_stop, true);
    pthread_join(t, NULL);
    (void)setpriority(PRIO_PROCESS, (id_t)tid, was); /* lowering it back may be refused: harmless */
    sched_setaffinity(0, sizeof(old), &old);
    if (why.cause == LOOPLAG_UNKNOWN && why.waited == 0)
        skip();
    assert_int_equal(why.cause, LOOPLAG_CPU_SHORT);
    assert_true(why.waited > BUSY_S / 2);
}

/* The threshold is the one configured (cluster.loop_lag_warn_ms); within a
 * minute only an iteration 1.25 times the last one warned about is logged. */
static void test_threshold(void **state)
{
    (void)state;
    struct looplag l;
    looplag_init(&l, 0.020);
    assert_true(looplag_iteration(&l, 100.0, 100.5) < 0); /* the first: recovery */
    assert_true(looplag_iteration(&l, 100.0, 100.015) > 0.014);
    assert_true(l.warned_lag == 0);
    looplag_iteration(&l, 101.0, 101.030);
    assert_true(l.warned_lag > 0.029 && l.warned_lag < 0.031);
    looplag_iteration(&l, 102.0, 102.035); /* < 1.25 x 30 ms, same minute: no line */
    assert_true(l.warned_lag < 0.031);
    looplag_iteration(&l, 103.0, 103.040); /* > 1.25 x 30 ms: a line */
    assert_true(l.warned_lag > 0.039);
    assert_true(l.max_s > 0.039);
    looplag_close(&l);

    looplag_init(&l, 0.050); /* the default: 30 ms says nothing */
    looplag_iteration(&l, 100.0, 100.001);
    looplag_iteration(&l, 101.0, 101.030);
    assert_true(l.warned_lag == 0);
    looplag_close(&l);
}

/* Synthetic readings: a 30 ms iteration with 1 ms run and no wait.  With
 * 30 ms of steal on each CPU meanwhile the 29 ms "asleep" are put down to
 * the hypervisor; with none, or steal unknown, to a block in the kernel. */
static void test_stolen(void **state)
{
    (void)state;
    uint64_t ncpu = (uint64_t)sysconf(_SC_NPROCESSORS_ONLN);
    uint64_t hz = (uint64_t)sysconf(_SC_CLK_TCK);
    struct looplag_sched before = {.cpu_ns = 1000000000, .wait_ns = 5000000, .steal_ticks = 1000,
                                   .at = 100.0};
    struct looplag_sched after = {.cpu_ns = 1001000000, .wait_ns = 5000000,
                                  .steal_ticks = 1000 + 3 * ncpu * hz / 100, .at = 100.030};
    struct looplag_why why;
    looplag_explain(&before, &after, 100.0, &why);
    assert_true(why.stolen > 0.029 && why.stolen < 0.031);
    assert_true(why.slept > 0.028 && why.slept < 0.030);
    assert_int_equal(why.cause, LOOPLAG_STOLEN);

    after.steal_ticks = before.steal_ticks; /* no steal: a sleep */
    looplag_explain(&before, &after, 100.0, &why);
    assert_true(why.stolen == 0);
    assert_int_equal(why.cause, LOOPLAG_BLOCKED);

    before.steal_ticks = UINT64_MAX; /* no /proc/stat */
    looplag_explain(&before, &after, 100.0, &why);
    assert_true(why.stolen < 0);
    assert_int_equal(why.cause, LOOPLAG_BLOCKED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blocked),
        cmocka_unit_test(test_work),
        cmocka_unit_test(test_stolen),
        cmocka_unit_test(test_cpu_short),
        cmocka_unit_test(test_threshold),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
