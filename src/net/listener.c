/* listener.c - binding or inheriting listening sockets and accepting on
 * them.  Accept errors never stop the daemon: running out of fds evicts an
 * idle connection, or refuses the client with a spare fd, or pauses
 * accepting briefly, never spins; anything else is skipped.  At capacity,
 * idle connections give way to new ones. */
#include "net/listener.h"
#include "net/tls.h"

#include "net/net_int.h"
#include "net/ratelimit.h"

#include <errno.h>
#include <stdio.h>
#include <ev.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#define ACCEPTS_PER_WAKEUP 64
#define EMFILE_PAUSE_SECONDS 0.1
/* Only a connection this quiet may be evicted for a newcomer: a client
 * between two requests, or waiting a moment for an answer, is not idle. */
#define EVICT_MIN_IDLE_SECONDS 1.0

struct lconn {
    struct net_listener *l;
    struct net_conn *c;
    bool evicted; /* no longer counted in nconns */
    struct lconn *prev, *next;
};

struct net_listener {
    struct ev_loop *loop;
    int fd;
    ev_io io;
    ev_timer pause;
    struct net_listener_opts opts;
    struct net_listener_ops ops;
    void *ud;
    size_t nconns;
    int reserve; /* a spare fd (/dev/null): out of fds, it is given up to
                  * accept and close one client instead of leaving the
                  * accept queue full of them; -1 if it could not be had */
    uint64_t refused, evicted;
    struct net_ratelimit refuse_rl; /* on_refuse: one call per 10 s */
    struct lconn conns; /* list head of live connections */
    bool tls_on;        /* opts.tls, and the socket is TCP */
};

/* ---- binding ------------------------------------------------------------ */

/* A socket file is stale when connecting to it is refused: nobody listens.
 * Unlinking a live one would silently steal it from a running daemon. */
static int clear_stale_unix(const struct addr *a)
{
    const char *path = addr_unix_path(a);
    struct stat st;

    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISSOCK(st.st_mode))
        return -EADDRINUSE;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int r = connect(fd, (const struct sockaddr *)&a->ss, a->len);
    int e = errno;
    close(fd);
    if (r == 0)
        return -EADDRINUSE;
    if (e != ECONNREFUSED && e != ENOENT)
        return -e;
    return unlink(path) < 0 && errno != ENOENT ? -errno : 0;
}

int net_listen_bind(const struct addr *a, int backlog, mode_t unix_mode)
{
    int fam = addr_family(a), one = 1, fd, r;

    if (fam == AF_UNIX && (r = clear_stale_unix(a)) < 0)
        return r;
    fd = socket(fam, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (fam != AF_UNIX && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
        goto fail;
    if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0)
        goto fail;
    if (fam == AF_UNIX && chmod(addr_unix_path(a), unix_mode) < 0)
        goto fail;
    if (listen(fd, backlog > 0 ? backlog : SOMAXCONN) < 0)
        goto fail;
    return fd;
fail:
    r = -errno;
    close(fd);
    return r;
}

/* The local address of a socket. */
static int fd_addr(int fd, struct addr *out)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);

    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return -errno;
    return addr_from_sockaddr(out, (struct sockaddr *)&ss, len);
}

/* ---- socket activation -------------------------------------------------- */

static struct {
    bool loaded;
    int n;
    char **names;
} inherited;

static int load_inherited(void)
{
    if (inherited.loaded)
        return 0;
    /* Keep the environment: clearing it is not thread-safe, and nothing we
     * exec must see LISTEN_FDS anyway because our fds are close-on-exec. */
    int n = sd_listen_fds_with_names(0, &inherited.names);
    if (n < 0)
        return n;
    inherited.n = n;
    inherited.loaded = true;
    for (int i = 0; i < n; i++) {
        int fd = SD_LISTEN_FDS_START + i;
        (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    return 0;
}

int net_listen_fds_named(const char *name, int *fds, size_t max)
{
    int r = load_inherited();
    size_t found = 0;

    if (r < 0)
        return r;
    for (int i = 0; i < inherited.n && found < max; i++) {
        if (!inherited.names || !inherited.names[i] || strcmp(inherited.names[i], name) != 0)
            continue;
        int fd = SD_LISTEN_FDS_START + i;
        if (sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) <= 0)
            return -ENOTSOCK;
        fds[found++] = fd;
    }
    return (int)found;
}

int net_listen_open(const char *name, const struct addr *a, int backlog, mode_t unix_mode, bool *inherit)
{
    int fd, n = net_listen_fds_named(name, &fd, 1);

    if (inherit)
        *inherit = n > 0;
    if (n < 0)
        return n;
    if (n > 0) {
        /* A socket unit left over from an older raftkv.conf (no daemon-reload
         * since the address changed) would have the node answer where no
         * peer or client looks for it.  Refuse rather than serve there. */
        struct addr got;
        if (a && a->len && addr_port(a) != 0 && (fd_addr(fd, &got) < 0 || !addr_equal(&got, a)))
            return -EADDRNOTAVAIL;
        int r = net_socket_prepare(fd);
        return r < 0 ? r : fd;
    }
    return net_listen_bind(a, backlog, unix_mode);
}

/* ---- accepting ---------------------------------------------------------- */

static void conn_released(struct net_conn *c, void *arg)
{
    struct lconn *lc = arg;

    lc->prev->next = lc->next;
    lc->next->prev = lc->prev;
    if (lc->l && !lc->evicted)
        lc->l->nconns--;
    free(lc);
}

/* Close the connection idle longest (at least EVICT_MIN_IDLE_SECONDS, with
 * nothing buffered either way) to make room: otherwise thousands of
 * connections that never send anything would lock every real client out,
 * by max_conns or by the fd limit.  Its fd is closed at once. */
static bool evict_idle(struct net_listener *l)
{
    double best = ev_now(l->loop) - EVICT_MIN_IDLE_SECONDS;
    struct lconn *victim = NULL;

    for (struct lconn *lc = l->conns.next; lc != &l->conns; lc = lc->next) {
        double t = lc->evicted ? -1.0 : net_conn_idle_since(lc->c);
        if (t >= 0 && t <= best) {
            best = t;
            victim = lc;
        }
    }
    if (!victim)
        return false;
    victim->evicted = true;
    l->nconns--;
    l->evicted++;
    net_conn_shut(victim->c, NET_CLOSE_EVICTED, -EMFILE);
    return true;
}

static void refuse(struct net_listener *l, int fd)
{
    close(fd);
    l->refused++;
    uint64_t more;
    if (l->ops.on_refuse && net_ratelimit_ok(&l->refuse_rl, ev_now(l->loop), &more))
        l->ops.on_refuse(l, more, l->ud);
}

/* Out of fds and nobody idle enough to evict: refuse the next client with
 * the spare fd.  Leaving clients queued would keep the queue full of the
 * flood that caused this, so a real client arriving a second later (when
 * idle ones can be evicted) would still wait behind all of it. */
static bool refuse_with_reserve(struct net_listener *l)
{
    if (l->reserve < 0)
        return false;
    close(l->reserve);
    int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0)
        refuse(l, fd);
    l->reserve = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return fd >= 0;
}

static void accept_one(struct net_listener *l, int fd)
{
    struct lconn *lc;
    struct net_conn *c;

    if (l->nconns >= l->opts.max_conns && !evict_idle(l)) {
        refuse(l, fd);
        return;
    }
    lc = calloc(1, sizeof(*lc));
    if (!lc) {
        close(fd);
        return;
    }
    c = net_conn_new(l->loop, fd, &l->opts.limits, l->opts.conn_ops, NULL);
    if (!c) {
        free(lc);
        return;
    }
    if (l->tls_on &&
        net_conn_start_tls(c, l->opts.tls,
                           l->opts.tls_cert_optional ? NET_TLS_SERVER_ANY_CLIENT : NET_TLS_SERVER,
                           NULL) < 0) {
        net_conn_destroy(c);
        free(lc);
        return;
    }
    lc->l = l;
    lc->c = c;
    lc->next = l->conns.next;
    lc->prev = &l->conns;
    l->conns.next->prev = lc;
    l->conns.next = lc;
    l->nconns++;
    net_conn_set_release_hook(c, conn_released, lc);
    l->ops.on_accept(l, c, l->ud);
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct net_listener *l = w->data;

    for (int i = 0; i < ACCEPTS_PER_WAKEUP; i++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            accept_one(l, fd);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
            continue;
        if ((errno == EMFILE || errno == ENFILE) && (evict_idle(l) || refuse_with_reserve(l)))
            continue; /* that freed an fd, or refused one client */
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            /* Level-triggered: the pending client would wake us forever. */
            ev_io_stop(loop, &l->io);
            ev_timer_set(&l->pause, EMFILE_PAUSE_SECONDS, 0.);
            ev_timer_start(loop, &l->pause);
        }
        return; /* EAGAIN and anything unexpected */
    }
}

static void pause_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct net_listener *l = w->data;
    ev_io_start(loop, &l->io);
}

struct net_listener *net_listener_new(struct ev_loop *loop, int fd, const struct net_listener_opts *opts,
                                      const struct net_listener_ops *ops, void *ud)
{
    struct net_listener *l = calloc(1, sizeof(*l));

    if (!l) {
        close(fd);
        return NULL;
    }
    l->loop = loop;
    l->fd = fd;
    l->opts = *opts;
    l->ops = *ops;
    l->ud = ud;
    l->conns.next = l->conns.prev = &l->conns;
    if (opts->tls) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        /* Unix sockets stay plaintext: file mode and SO_PEERCRED guard them. */
        l->tls_on = getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 && ss.ss_family != AF_UNIX;
    }
    l->refuse_rl.interval = 10.0;
    l->reserve = open("/dev/null", O_RDONLY | O_CLOEXEC);
    ev_io_init(&l->io, accept_cb, fd, EV_READ);
    ev_timer_init(&l->pause, pause_cb, 0., 0.);
    l->io.data = l->pause.data = l;
    ev_io_start(loop, &l->io);
    return l;
}

void net_listener_free(struct net_listener *l)
{
    if (!l)
        return;
    ev_io_stop(l->loop, &l->io);
    ev_timer_stop(l->loop, &l->pause);
    close(l->fd);
    if (l->reserve >= 0)
        close(l->reserve);
    /* Survivors unlink from each other through their own neighbours; turning
     * them into a ring of their own keeps that working without the head. */
    struct lconn *first = l->conns.next, *last = l->conns.prev;
    for (struct lconn *lc = first; lc != &l->conns; lc = lc->next)
        lc->l = NULL;
    if (first != &l->conns) {
        first->prev = last;
        last->next = first;
    }
    free(l);
}

void net_listener_close_conns(struct net_listener *l)
{
    if (!l)
        return;
    /* A connection inside one of its own callbacks is freed when that
     * returns, so it may stay linked: walk by the saved successor. */
    for (struct lconn *lc = l->conns.next, *next; lc != &l->conns; lc = next) {
        next = lc->next;
        net_conn_close_now(lc->c);
    }
}

size_t net_listener_conns(const struct net_listener *l)
{
    return l ? l->nconns : 0;
}

uint64_t net_listener_refused(const struct net_listener *l)
{
    return l->refused;
}

uint64_t net_listener_evicted(const struct net_listener *l)
{
    return l->evicted;
}

int net_listener_addr(const struct net_listener *l, struct addr *out)
{
    return fd_addr(l->fd, out);
}

int net_listener_fd(const struct net_listener *l)
{
    return l->fd;
}

int net_listener_start(struct ev_loop *loop, const char *name, const char *address,
                       mode_t unix_mode, const struct net_listener_opts *opts,
                       const struct net_listener_ops *ops, void *ud,
                       struct net_listener **out, bool *from_systemd, char *err, size_t errlen)
{
    struct addr a;
    int rv = addr_parse(address, &a);
    if (rv < 0) {
        snprintf(err, errlen, "%s address '%s': %s", name, address, strerror(-rv));
        return rv;
    }
    bool inherited_fd = false;
    int fd = net_listen_open(name, &a, 1024, unix_mode, &inherited_fd);
    if (from_systemd)
        *from_systemd = inherited_fd;
    if (fd == -EADDRNOTAVAIL && inherited_fd) {
        snprintf(err, errlen, "the %s socket passed by systemd is not bound to %s as configured "
                 "(run `systemctl daemon-reload` after changing addresses)", name, address);
        return fd;
    }
    if (fd < 0) {
        snprintf(err, errlen, "cannot listen on %s address %s: %s", name, address, strerror(-fd));
        return fd;
    }
    *out = net_listener_new(loop, fd, opts, ops, ud);
    if (!*out) {
        snprintf(err, errlen, "cannot set up the %s listener on %s", name, address);
        return -ENOMEM;
    }
    return 0;
}
