/* main.c - raftkv-proxy: command line, configuration, logging, the event
 * loop's timers and signals.  Exit codes: 0 clean stop, 1 runtime failure,
 * 2 usage or configuration error. */
#include "proxy/proxy_int.h"

#include "common/config.h"
#include "common/log.h"
#include "net/tls.h"
#include "net/watchdog.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

/* Deadlines, health and retries are checked this often. */
#define TICK_S 0.005

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: raftkv-proxy [options]\n"
            "\n"
            "Serve raftkv clients on one stable address: writes go to the leader, reads\n"
            "are spread over the followers, and requests wait out elections.\n"
            "\n"
            "Options:\n"
            "  -c, --config PATH       configuration file (default %s)\n"
            "  -L, --listen ADDR       TCP address to serve (default: proxy.listen; \"\" = none)\n"
            "  -u, --unix PATH         unix socket to serve (default: proxy.unix; \"\" = none)\n"
            "  -l, --log-level LEVEL   error, warning, notice, info or debug (default: cluster.log_level)\n"
            "  -s, --set KEY=VALUE     override any option, e.g. --set proxy.queue_wait_ms=5000\n"
            "  -h, --help              show this help and exit\n"
            "  -V, --version           show the version and exit\n"
            "\n"
            "Stops on SIGTERM or SIGINT; SIGHUP reloads the TLS certificates.\n"
            "See raftkv-proxy(8) and raftkv.conf(5).\n",
            CONFIG_DEFAULT_PATH);
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

static struct net_tls_files proxy_files(const struct config *cfg)
{
    struct net_tls_files f = {.ca = cfg->cluster.tls_ca, .cert = cfg->proxy.tls_cert, .key = cfg->proxy.tls_key};
    return f;
}

/* TLS from [cluster] tls_ca and [proxy] tls_cert; the rights policy; and
 * the rule that plaintext is served on loopback only unless insecure. */
static int security_start(struct proxy *p, char *err, size_t errlen)
{
    const struct config *cfg = p->cfg;
    p->sec.insecure = cfg->cluster.insecure != 0;
    p->sec.anonymous = (enum rpc_role)cfg->cluster.anonymous_role;
    if (*cfg->cluster.tls_ca) {
        struct net_tls_files f = proxy_files(cfg);
        int rv = net_tls_new(&f, &p->sec.tls, err, errlen);
        if (rv < 0)
            return rv;
    }
    const char *addrs[] = {cfg->proxy.listen};
    int rv = rpc_security_check(&p->sec, addrs, 1, err, errlen);
    if (rv < 0)
        return rv;
    if (p->sec.insecure)
        log_warn("INSECURE mode ([cluster] insecure = true): every client has every right");
    else
        log_info("security: %s; clients without a certificate get role %s", rpc_security_mode(&p->sec),
                 rpc_role_name(p->sec.anonymous));
    return 0;
}

/* systemctl reload: the certificate files again; links and clients stay. */
static void on_hup(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop, (void)revents;
    struct proxy *p = w->data;
    char err[512];
    struct net_tls_files f = proxy_files(p->cfg);
    sd_notify(0, "RELOADING=1");
    if (!p->sec.tls)
        log_notice("SIGHUP: no TLS configured ([cluster] tls_ca), nothing to reload");
    else if (net_tls_reload(p->sec.tls, &f, err, sizeof(err)) < 0)
        log_error("SIGHUP: certificates not reloaded, the old ones stay in use: %s", err);
    else
        log_notice("SIGHUP: reloaded CA %s and certificate %s; new connections use them", f.ca, f.cert);
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

static int run(const struct config *cfg)
{
    struct proxy p;
    memset(&p, 0, sizeof(p));
    p.cfg = cfg;
    p.loop = ev_default_loop(EVFLAG_AUTO);
    p.limits.max_frame = cfg->cluster.max_frame_bytes;
    p.limits.max_pending_output = cfg->cluster.max_pending_output_bytes;
    p.limits.frame_timeout_ms = (uint32_t)cfg->cluster.frame_timeout_ms;
    p.limits.max_in_flight = NET_CLIENT_MAX_IN_FLIGHT; /* upstream links never count requests */
    p.start = ev_now(p.loop);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    srandom((unsigned)(ts.tv_nsec ^ getpid()));
    char err[512];
    int rv = security_start(&p, err, sizeof(err));
    if (rv >= 0)
        rv = proxy_start(&p, err, sizeof(err));
    if (rv >= 0)
        rv = upstreams_start(&p, err, sizeof(err));
    if (rv >= 0)
        rv = proxy_metrics_start(&p, err, sizeof(err));
    if (rv < 0) {
        log_error("cannot start: %s", err);
        proxy_metrics_stop(&p);
        upstreams_stop(&p);
        proxy_stop(&p);
        net_tls_free(p.sec.tls);
        return rv == -EINVAL || rv == -ENOENT || rv == -EPERM ? 2 : 1;
    }
    ev_timer_init(&p.tick, on_tick, TICK_S, TICK_S);
    p.tick.data = &p;
    ev_timer_start(p.loop, &p.tick);
    ev_signal_init(&p.sig_term, on_signal, SIGTERM);
    ev_signal_start(p.loop, &p.sig_term);
    ev_signal_init(&p.sig_int, on_signal, SIGINT);
    ev_signal_start(p.loop, &p.sig_int);
    ev_signal_init(&p.sig_hup, on_hup, SIGHUP);
    p.sig_hup.data = &p;
    ev_signal_start(p.loop, &p.sig_hup);
    ev_timer watchdog;
    bool watched = net_watchdog_start(p.loop, &watchdog);
    sd_notify(0, "READY=1");
    status_notify_systemd(&p);
    log_notice("proxy serving %zu nodes (raftkv %s)", p.n_ups, PROXY_VERSION_STRING);
    ev_run(p.loop, 0);

    ev_timer_stop(p.loop, &p.tick);
    if (watched)
        ev_timer_stop(p.loop, &watchdog);
    drop_waiting(&p, &p.queue);
    drop_waiting(&p, &p.parked);
    while (p.fanouts)
        status_tick(&p, 1e300);
    proxy_stop(&p);
    upstreams_stop(&p);
    sessions_free(&p);
    proxy_metrics_stop(&p);
    /* Give answers already queued one chance to leave. */
    ev_run(p.loop, EVRUN_NOWAIT);
    ev_loop_destroy(p.loop);
    net_tls_free(p.sec.tls);
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, 0, 'c'}, {"listen", required_argument, 0, 'L'},
        {"unix", required_argument, 0, 'u'},   {"log-level", required_argument, 0, 'l'},
        {"set", required_argument, 0, 's'},    {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},      {0, 0, 0, 0},
    };
    const char *path = CONFIG_DEFAULT_PATH, *listen_addr = NULL, *unix_path = NULL, *level = NULL;
    char *sets[64];
    size_t n_sets = 0;
    for (int c; (c = getopt_long(argc, argv, "c:L:u:l:s:hV", opts, NULL)) != -1;) {
        switch (c) {
        case 'c': path = optarg; break;
        case 'L': listen_addr = optarg; break;
        case 'u': unix_path = optarg; break;
        case 'l': level = optarg; break;
        case 's':
            if (n_sets == sizeof(sets) / sizeof(sets[0])) {
                fprintf(stderr, "raftkv-proxy: too many --set options\n");
                return 2;
            }
            sets[n_sets++] = optarg;
            break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("raftkv-proxy %s\n", PROXY_VERSION_STRING); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "raftkv-proxy: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }

    struct config cfg;
    char err[512];
    config_init(&cfg);
    int rv = config_parse_file(&cfg, path, err, sizeof(err));
    for (size_t i = 0; rv >= 0 && i < n_sets; i++)
        rv = config_set_arg(&cfg, sets[i], err, sizeof(err));
    if (rv >= 0 && listen_addr)
        rv = config_set(&cfg, "proxy.listen", listen_addr, err, sizeof(err));
    if (rv >= 0 && unix_path)
        rv = config_set(&cfg, "proxy.unix", unix_path, err, sizeof(err));
    if (rv >= 0 && level)
        rv = config_set(&cfg, "cluster.log_level", level, err, sizeof(err));
    if (rv >= 0)
        rv = config_validate(&cfg, err, sizeof(err));
    if (rv < 0) {
        fprintf(stderr, "raftkv-proxy: %s\n", err);
        config_free(&cfg);
        return 2;
    }

    signal(SIGPIPE, SIG_IGN);
    log_init("raftkv-proxy", (enum log_target)cfg.cluster.log_target);
    log_set_level(cfg.cluster.log_level);
    int code = run(&cfg);
    config_free(&cfg);
    return code;
}
