/* workers.c - the proxy's event loops ([proxy] threads), from start to a
 * clean stop.  Each loop is a whole proxy (struct proxy) on its own thread:
 * its share of the clients, its own links to every node (each with its own
 * WATCH_LEADER and STATUS polls, so each learns the leader first hand), its
 * own write queue and sessions; nothing on the data path is shared or
 * locked.  Loop 0 runs on the main thread and owns the signals, systemd's
 * notifications and watchdog, and the metrics endpoint. */
#include "proxy/proxy_int.h"

#include "common/log.h"
#include "net/watchdog.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

/* Deadlines, health and retries are checked this often. */
#define TICK_S 0.005
/* The default thread count follows the CPUs this process may use, up to
 * this: beyond it the nodes, not the proxy, are the limit. */
#define DEFAULT_THREADS_MAX 8

struct worker {
    struct proxy p;
    pthread_t thread;
    bool thread_started;
    ev_async stop;   /* loops 1..: loop 0 asks them to stop */
    ev_async reload; /* loops 1..: loop 0 passes SIGHUP on */
};

/* Loop 0's view of all loops, for the signals it takes for everyone. */
struct workers {
    struct worker *ws;
    size_t n;
};

static size_t threads_wanted(const struct config *cfg)
{
    if (cfg->proxy.threads)
        return (size_t)cfg->proxy.threads;
    cpu_set_t set;
    int n = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : (int)sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > DEFAULT_THREADS_MAX ? DEFAULT_THREADS_MAX : (size_t)n;
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)revents;
    struct proxy *p = w->data;
    double now = proxy_now(p);
    upstreams_tick(p, now);
    proxy_metrics_publish(p);
    route_tick(p, now);
    writeq_tick(p, now);
    status_tick(p, now);
    status_notify_systemd(p);
}

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)revents;
    log_notice("got %s; stopping", strsignal(w->signum));
    sd_notify(0, "STOPPING=1");
    ev_break(loop, EVBREAK_ALL);
}

static void on_stop(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)w, (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

static void on_reload(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)loop, (void)revents;
    proxy_security_reload(w->data);
}

/* systemctl reload: the certificate files again, on every loop (each on its
 * own thread); links and clients stay. */
static void on_hup(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop, (void)revents;
    struct workers *all = w->data;
    sd_notify(0, "RELOADING=1");
    proxy_security_reload(&all->ws[0].p);
    for (size_t i = 1; i < all->n; i++)
        if (all->ws[i].thread_started)
            ev_async_send(all->ws[i].p.loop, &all->ws[i].reload);
    sd_notify(0, "READY=1");
}

static void drop_waiting(struct proxy *p, struct oplist *l)
{
    struct op *op;
    while ((op = l->head)) {
        oplist_remove(l, op);
        /* A write queued again after an unknown outcome may be applied. */
        if (op->maybe_applied)
            op_fail(p, op, RAFTKV__STATUS__TIMEOUT,
                    "proxy is stopping; the write may or may not have been applied");
        else
            op_fail(p, op, RAFTKV__STATUS__UNAVAILABLE, "proxy is stopping");
    }
}

/* Everything of one loop, on the thread that ran it.  The metrics stay:
 * they are loop 0's, freed once every loop is done. */
static void worker_finish(struct proxy *p)
{
    ev_timer_stop(p->loop, &p->tick);
    drop_waiting(p, &p->queue);
    drop_waiting(p, &p->parked);
    while (p->fanouts)
        status_tick(p, 1e300);
    proxy_stop(p);
    upstreams_stop(p);
    sessions_free(p);
    /* Give answers already queued one chance to leave. */
    ev_run(p->loop, EVRUN_NOWAIT);
    ops_free(p);
    proxy_security_stop(p);
}

static int worker_init(struct worker *w, const struct config *cfg, size_t index, size_t n, struct proxy *first,
                       char *err, size_t errlen)
{
    struct proxy *p = &w->p;
    p->cfg = cfg;
    p->index = index;
    p->n_workers = n;
    p->loop = index ? ev_loop_new(EVFLAG_AUTO) : ev_default_loop(EVFLAG_AUTO);
    if (!p->loop) {
        snprintf(err, errlen, "cannot create an event loop");
        return -ENOMEM;
    }
    p->limits.max_frame = cfg->cluster.max_frame_bytes;
    p->limits.max_pending_output = cfg->cluster.max_pending_output_bytes;
    p->limits.frame_timeout_ms = (uint32_t)cfg->cluster.frame_timeout_ms;
    p->limits.max_in_flight = NET_CLIENT_MAX_IN_FLIGHT; /* upstream links never count requests */
    p->start = ev_now(p->loop);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    p->rng = ((uint64_t)ts.tv_nsec << 16 ^ (uint64_t)getpid() << 8 ^ index) | 1;
    int rv = proxy_security_start(p, err, errlen);
    if (rv >= 0)
        rv = index ? proxy_share_listeners(p, first, err, errlen) : proxy_start(p, err, errlen);
    if (rv >= 0)
        rv = upstreams_start(p, err, errlen);
    if (rv >= 0 && index == 0)
        rv = proxy_metrics_start(p, err, errlen);
    if (rv < 0)
        return rv;
    p->m = first ? first->m : p->m;
    ev_timer_init(&p->tick, on_tick, TICK_S, TICK_S);
    p->tick.data = p;
    ev_timer_start(p->loop, &p->tick);
    if (index) {
        ev_async_init(&w->stop, on_stop);
        ev_async_start(p->loop, &w->stop);
        ev_async_init(&w->reload, on_reload);
        w->reload.data = p;
        ev_async_start(p->loop, &w->reload);
    }
    return 0;
}

/* A loop's run on the thread that owns it (the coalescer is per thread). */
static void worker_run(struct proxy *p)
{
    if (net_coalesce_start(p->loop) < 0)
        log_warn("loop %zu: no output coalescing: out of memory", p->index);
    ev_run(p->loop, 0);
    net_coalesce_stop(p->loop);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    worker_run(&w->p);
    worker_finish(&w->p);
    return NULL;
}

static void workers_free(struct worker *ws, size_t n)
{
    for (size_t i = n; i-- > 0;) {
        struct proxy *p = &ws[i].p;
        if (!p->loop)
            continue;
        if (i) {
            ev_async_stop(p->loop, &ws[i].stop);
            ev_async_stop(p->loop, &ws[i].reload);
        }
        ev_loop_destroy(p->loop);
    }
    proxy_metrics_stop(&ws[0].p);
    free(ws);
}

int proxy_workers_run(const struct config *cfg)
{
    size_t n = threads_wanted(cfg);
    struct worker *ws = calloc(n, sizeof(*ws));
    if (!ws) {
        log_error("cannot start: out of memory");
        return 1;
    }
    char err[512];
    int rv = 0;
    size_t ready = 0;
    for (; ready < n && rv >= 0; ready++)
        rv = worker_init(&ws[ready], cfg, ready, n, ready ? &ws[0].p : NULL, err, sizeof(err));
    if (rv < 0) {
        log_error("cannot start: %s", err);
        for (size_t i = ready; i-- > 0;) {
            proxy_stop(&ws[i].p);
            upstreams_stop(&ws[i].p);
            proxy_security_stop(&ws[i].p);
        }
        workers_free(ws, n);
        return rv == -EINVAL || rv == -ENOENT || rv == -EPERM ? 2 : 1;
    }
    struct proxy *p = &ws[0].p;
    ev_signal sig_term, sig_int, sig_hup;
    ev_signal_init(&sig_term, on_signal, SIGTERM);
    ev_signal_start(p->loop, &sig_term);
    ev_signal_init(&sig_int, on_signal, SIGINT);
    ev_signal_start(p->loop, &sig_int);
    struct workers every = {.ws = ws, .n = n};
    ev_signal_init(&sig_hup, on_hup, SIGHUP);
    sig_hup.data = &every;
    ev_signal_start(p->loop, &sig_hup);
    ev_timer watchdog;
    bool watched = net_watchdog_start(p->loop, &watchdog);
    /* Threads block the signals; loop 0 (this thread) takes them. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    for (size_t i = 1; i < n; i++) {
        int e = pthread_create(&ws[i].thread, NULL, worker_main, &ws[i]);
        if (e) {
            log_warn("cannot start proxy thread %zu: %s; serving with fewer", i, strerror(e));
            break;
        }
        ws[i].thread_started = true;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    sd_notify(0, "READY=1");
    status_notify_systemd(p);
    log_notice("proxy serving %zu nodes with %zu event loops (raftkv %s)", p->n_ups, n, PROXY_VERSION_STRING);
    worker_run(p);

    if (watched)
        ev_timer_stop(p->loop, &watchdog);
    ev_signal_stop(p->loop, &sig_term);
    ev_signal_stop(p->loop, &sig_int);
    ev_signal_stop(p->loop, &sig_hup);
    for (size_t i = 1; i < n; i++) {
        if (ws[i].thread_started) {
            ev_async_send(ws[i].p.loop, &ws[i].stop);
            pthread_join(ws[i].thread, NULL);
        } else {
            worker_finish(&ws[i].p);
        }
    }
    worker_finish(p);
    workers_free(ws, n);
    return 0;
}
