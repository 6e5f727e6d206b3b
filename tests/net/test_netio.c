/* test_netio.c - listeners and dialers on real sockets: socket activation by
 * name, echo over TCP 127.0.0.1 (ephemeral port) and over a unix socket in a
 * temp dir, stale/live unix socket files, the connection limit, connect
 * timeout, and a dialer that rides through the listener restarting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "evtest.h"
#include "net/dial.h"
#include "net/listener.h"
#include "net/net_int.h"

static const struct net_conn_limits limits = {.max_frame = 1u << 20, .max_pending_output = 4u << 20};

/* ---- an echo server ----------------------------------------------------- */

struct server {
    struct net_listener *l;
    struct net_conn *conns[8];
    int accepted, refused_cb, closed;
};

static void srv_frame(struct net_conn *c, const uint8_t *p, size_t len, void *ud)
{
    assert_int_equal(net_conn_send(c, p, len), 0);
}

static void srv_close(struct net_conn *c, enum net_close_reason reason, int err, void *ud)
{
    struct server *s = ud;
    for (int i = 0; i < 8; i++)
        if (s->conns[i] == c)
            s->conns[i] = NULL;
    s->closed++;
}

static const struct net_conn_ops srv_conn_ops = { .on_frame = srv_frame, .on_close = srv_close };

static void srv_accept(struct net_listener *l, struct net_conn *c, void *ud)
{
    struct server *s = ud;
    net_conn_set_userdata(c, s);
    for (int i = 0; i < 8; i++)
        if (!s->conns[i]) {
            s->conns[i] = c;
            break;
        }
    s->accepted++;
}

static void srv_refuse(struct net_listener *l, uint64_t unreported, void *ud)
{
    ((struct server *)ud)->refused_cb++;
}

static const struct net_listener_ops srv_ops = { srv_accept, srv_refuse };

static void server_start(struct server *s, struct ev_loop *loop, int fd, size_t max_conns)
{
    struct net_listener_opts o = { .max_conns = max_conns, .limits = limits, .conn_ops = &srv_conn_ops };

    assert_true(fd >= 0);
    s->l = net_listener_new(loop, fd, &o, &srv_ops, s);
    assert_non_null(s->l);
}

/* Listener and its connections gone, as when the daemon dies. */
static void server_stop(struct server *s)
{
    net_listener_free(s->l);
    s->l = NULL;
    for (int i = 0; i < 8; i++)
        if (s->conns[i]) {
            net_conn_destroy(s->conns[i]);
            s->conns[i] = NULL;
        }
}

/* ---- a dialing client --------------------------------------------------- */

struct client {
    struct net_dial *d;
    int ups, downs, fails, frames, last_fail;
    char last[32];
    enum net_close_reason down_reason;
};

static void cl_up(struct net_dial *d, void *ud)
{
    struct client *c = ud;
    c->ups++;
    assert_true(net_dial_is_up(d));
    assert_int_equal(net_dial_send(d, "ping", 4), 0);
}

static void cl_frame(struct net_dial *d, const uint8_t *p, size_t len, void *ud)
{
    struct client *c = ud;
    c->frames++;
    snprintf(c->last, sizeof(c->last), "%.*s", (int)len, (const char *)p);
}

static void cl_down(struct net_dial *d, enum net_close_reason reason, int err, void *ud)
{
    struct client *c = ud;
    c->downs++;
    c->down_reason = reason;
    assert_false(net_dial_is_up(d));
    assert_int_equal(net_dial_send(d, "x", 1), -ENOTCONN);
}

static void cl_fail(struct net_dial *d, int err, uint32_t retry_ms, void *ud)
{
    struct client *c = ud;
    c->fails++;
    c->last_fail = err;
    assert_true(retry_ms <= 50);
}

static const struct net_dial_ops cl_ops = { cl_up, cl_frame, cl_down, cl_fail };

static void client_start(struct client *c, struct ev_loop *loop, const struct addr *to, uint32_t timeout_ms)
{
    struct net_dial_opts o = { .limits = limits, .connect_timeout_ms = timeout_ms, .backoff_min_ms = 2, .backoff_max_ms = 50 };

    memset(c, 0, sizeof(*c));
    c->d = net_dial_new(loop, to, &o, &cl_ops, c);
    assert_non_null(c->d);
}

/* ---- tests -------------------------------------------------------------- */

/* Runs first, before anything else in this process asks for inherited fds:
 * the inherited set is read once.  fd 3 stands in for systemd's. */
static void test_socket_activation(void **state)
{
    struct addr a;
    char pid[16];
    int fds[2];
    bool inherited = false;

    if (fcntl(3, F_GETFD) >= 0)
        skip(); /* fd 3 is taken in this environment; cannot pose as systemd */
    assert_int_equal(addr_parse("127.0.0.1:0", &a), 0);
    int fd = net_listen_bind(&a, 16, 0);
    assert_true(fd >= 0);
    if (fd != 3) {
        assert_int_equal(dup2(fd, 3), 3);
        close(fd);
    }
    snprintf(pid, sizeof(pid), "%d", (int)getpid());
    setenv("LISTEN_PID", pid, 1);
    setenv("LISTEN_FDS", "1", 1);
    setenv("LISTEN_FDNAMES", "client", 1);

    assert_int_equal(net_listen_fds_named("peer", fds, 2), 0);
    assert_int_equal(net_listen_fds_named("client", fds, 2), 1);
    assert_int_equal(fds[0], 3);
    /* Asked again (another listener, same process): same answer. */
    assert_int_equal(net_listen_fds_named("client", fds, 2), 1);
    assert_int_equal(net_listen_open("client", &a, 16, 0, &inherited), 3);
    assert_true(inherited);
    assert_true(fcntl(3, F_GETFD) & FD_CLOEXEC);

    /* It is a working listener. */
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct server s = { 0 };
    struct client c;
    server_start(&s, loop, 3, 8);
    assert_int_equal(net_listener_addr(s.l, &a), 0);
    client_start(&c, loop, &a, 1000);
    assert_true(EVTEST_UNTIL(loop, 5, c.frames == 1));
    net_dial_free(c.d);
    server_stop(&s);
    ev_loop_destroy(loop);

    /* Without the name, the daemon binds itself. */
    assert_int_equal(addr_parse("127.0.0.1:0", &a), 0);
    fd = net_listen_open("admin", &a, 16, 0, &inherited);
    assert_true(fd >= 0);
    assert_false(inherited);
    close(fd);
}

static void echo_roundtrip(const struct addr *bind_addr)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct server s = { 0 };
    struct client c;
    struct addr a;

    server_start(&s, loop, net_listen_bind(bind_addr, 16, 0600), 8);
    assert_int_equal(net_listener_addr(s.l, &a), 0);
    client_start(&c, loop, &a, 1000);
    assert_true(EVTEST_UNTIL(loop, 5, c.frames == 1));
    assert_string_equal(c.last, "ping");
    assert_int_equal(c.ups, 1);
    assert_int_equal(s.accepted, 1);
    assert_int_equal(net_listener_conns(s.l), 1);
    assert_non_null(net_dial_conn(c.d));
    assert_int_equal(net_dial_failures(c.d), 0);

    /* Client goes away: the server side closes and is counted out. */
    net_dial_free(c.d);
    assert_true(EVTEST_UNTIL(loop, 5, s.closed == 1));
    assert_int_equal(net_listener_conns(s.l), 0);
    server_stop(&s);
    ev_loop_destroy(loop);
}

static void test_tcp_echo(void **state)
{
    struct addr a;

    assert_int_equal(addr_parse("127.0.0.1:0", &a), 0);
    echo_roundtrip(&a);
}

static void test_unix_echo_and_stale_file(void **state)
{
    char dir[] = "/tmp/raftkv-net-XXXXXX", path[128];
    struct addr a;
    struct stat st;

    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "unix:%s/node-1.sock", dir);
    assert_int_equal(addr_parse(path, &a), 0);
    echo_roundtrip(&a);

    /* The file stays behind (as after a crash); binding again replaces it. */
    assert_int_equal(lstat(addr_unix_path(&a), &st), 0);
    int fd = net_listen_bind(&a, 16, 0660);
    assert_true(fd >= 0);
    assert_int_equal(stat(addr_unix_path(&a), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0660);
    /* A live listener is never stolen. */
    assert_int_equal(net_listen_bind(&a, 16, 0660), -EADDRINUSE);
    close(fd);
    unlink(addr_unix_path(&a));
    /* Nor is a file that is not a socket. */
    close(open(addr_unix_path(&a), O_CREAT | O_WRONLY, 0600));
    assert_int_equal(net_listen_bind(&a, 16, 0660), -EADDRINUSE);
    unlink(addr_unix_path(&a));
    rmdir(dir);
}

static int raw_connect(const struct addr *a)
{
    int fd = socket(addr_family(a), SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(connect(fd, (const struct sockaddr *)&a->ss, a->len), 0);
    return fd;
}

static void test_max_conns(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct server s = { 0 };
    struct addr a;
    char ch;

    assert_int_equal(addr_parse("127.0.0.1:0", &a), 0);
    server_start(&s, loop, net_listen_bind(&a, 16, 0), 1);
    assert_int_equal(net_listener_addr(s.l, &a), 0);
    int c1 = raw_connect(&a);
    assert_true(EVTEST_UNTIL(loop, 5, s.accepted == 1));
    int c2 = raw_connect(&a);
    assert_true(EVTEST_UNTIL(loop, 5, s.refused_cb == 1));
    assert_int_equal(net_listener_refused(s.l), 1);
    assert_int_equal(read(c2, &ch, 1), 0); /* refused = EOF at once */
    close(c2);
    /* A slot frees up when the first goes. */
    close(c1);
    assert_true(EVTEST_UNTIL(loop, 5, s.closed == 1 && net_listener_conns(s.l) == 0));
    int c3 = raw_connect(&a);
    assert_true(EVTEST_UNTIL(loop, 5, s.accepted == 2));
    /* Idle for over a second, c3 gives way to a newcomer instead. */
    double t0 = ev_time();
    EVTEST_FOR(loop, 1.2);
    assert_true(ev_time() - t0 >= 1.0);
    int c4 = raw_connect(&a);
    assert_true(EVTEST_UNTIL(loop, 5, s.accepted == 3));
    assert_int_equal(net_listener_refused(s.l), 1);
    assert_int_equal(net_listener_evicted(s.l), 1);
    assert_int_equal(read(c3, &ch, 1), 0); /* the idle one got EOF */
    close(c3);
    /* A connection waiting for an answer is not idle however long it waits:
     * c4 keeps its slot and the newcomer is refused. */
    struct net_conn *busy = NULL;
    for (int i = 0; i < 8; i++)
        if (s.conns[i])
            busy = s.conns[i];
    assert_non_null(busy);
    net_conn_request_begin(busy);
    t0 = ev_time();
    EVTEST_FOR(loop, 1.2);
    assert_true(ev_time() - t0 >= 1.0);
    int c5 = raw_connect(&a);
    assert_true(EVTEST_UNTIL(loop, 5, net_listener_refused(s.l) == 2));
    assert_int_equal(net_listener_evicted(s.l), 1);
    assert_int_equal(read(c5, &ch, 1), 0);
    close(c5);
    net_conn_request_end(busy);
    close(c4);
    assert_true(EVTEST_UNTIL(loop, 5, s.closed == 3 && net_listener_conns(s.l) == 0));
    server_stop(&s);
    ev_loop_destroy(loop);
}

static void test_refused_then_backoff(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct client c;
    struct addr a;

    /* Grab a free port, then close it: nobody listens there. */
    assert_int_equal(addr_parse("127.0.0.1:0", &a), 0);
    int fd = net_listen_bind(&a, 1, 0);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    addr_from_sockaddr(&a, (struct sockaddr *)&ss, sl);
    close(fd);

    client_start(&c, loop, &a, 1000);
    assert_true(EVTEST_UNTIL(loop, 5, c.fails >= 5));
    assert_int_equal(c.last_fail, -ECONNREFUSED);
    assert_int_equal(c.ups, 0);
    assert_true(net_dial_failures(c.d) >= 5);
    net_dial_free(c.d);
    ev_loop_destroy(loop);
}

/* A socket that connected to itself (the TCP simultaneous open a dialer
 * gets when the kernel hands it the very port it dials and nobody listens)
 * is told apart from a real connection, which the dialer would keep. */
static void test_self_connect(void **state)
{
    (void)state;
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sin);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_true(net_fd_connected_to_itself(fd));
    close(fd);

    struct addr a;
    assert_int_equal(addr_parse("127.0.0.1:0", &a), 0);
    int lfd = net_listen_bind(&a, 1, 0);
    assert_true(lfd >= 0);
    sl = sizeof(sin);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sin, &sl), 0);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_false(net_fd_connected_to_itself(fd));
    assert_false(net_fd_connected_to_itself(lfd)); /* not connected at all */
    close(fd);
    close(lfd);
}

/* A listener whose accept queue is full drops SYNs, so connect() hangs:
 * the dialer must give up after connect_timeout_ms and retry. */
static void test_connect_timeout(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct client c;
    struct addr a;
    int lfd, fillers[4], n = 0;

    assert_int_equal(addr_parse("127.0.0.1:0", &a), 0);
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(bind(lfd, (struct sockaddr *)&a.ss, a.len), 0);
    assert_int_equal(listen(lfd, 0), 0);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    getsockname(lfd, (struct sockaddr *)&ss, &sl);
    addr_from_sockaddr(&a, (struct sockaddr *)&ss, sl);
    /* Fill the queue with connections nobody accepts. */
    for (; n < 4; n++) {
        fillers[n] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        connect(fillers[n], (struct sockaddr *)&a.ss, a.len);
    }
    EVTEST_FOR(loop, 0.05);
    client_start(&c, loop, &a, 100);
    assert_true(EVTEST_UNTIL(loop, 5, c.fails >= 1 || c.ups >= 1));
    if (c.ups == 0)
        assert_int_equal(c.last_fail, -ETIMEDOUT);
    else
        print_message("kernel accepted past the backlog; timeout path not exercised\n");
    net_dial_free(c.d);
    for (int i = 0; i < n; i++)
        close(fillers[i]);
    close(lfd);
    ev_loop_destroy(loop);
}

static void test_reconnect_after_restart(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct server s = { 0 };
    struct client c;
    struct addr a;

    assert_int_equal(addr_parse("127.0.0.1:0", &a), 0);
    server_start(&s, loop, net_listen_bind(&a, 16, 0), 8);
    assert_int_equal(net_listener_addr(s.l, &a), 0); /* now with the real port */
    client_start(&c, loop, &a, 1000);
    assert_true(EVTEST_UNTIL(loop, 5, c.frames == 1));

    /* The server dies: the link goes down and attempts start failing. */
    server_stop(&s);
    assert_true(EVTEST_UNTIL(loop, 5, c.downs == 1));
    assert_int_equal(c.down_reason, NET_CLOSE_EOF);
    assert_true(EVTEST_UNTIL(loop, 5, c.fails >= 2));

    /* It comes back on the same port: the dialer finds it by itself, says
     * up again, and frames flow (cl_up sends a ping that is echoed). */
    memset(&s, 0, sizeof(s));
    server_start(&s, loop, net_listen_bind(&a, 16, 0), 8);
    assert_true(EVTEST_UNTIL(loop, 5, c.ups == 2 && c.frames == 2));
    assert_int_equal(net_dial_failures(c.d), 0);

    /* A local reset also recovers. */
    net_dial_reset(c.d, -EPROTO);
    assert_true(EVTEST_UNTIL(loop, 5, c.ups == 3 && c.frames == 3));
    assert_int_equal(c.downs, 2);
    assert_int_equal(c.down_reason, NET_CLOSE_LOCAL);
    net_dial_free(c.d);
    server_stop(&s);
    ev_loop_destroy(loop);
}

/* Freeing the dialer from inside its own frame callback is safe. */
static void free_in_frame(struct net_dial *d, const uint8_t *p, size_t len, void *ud)
{
    *(int *)ud += 1;
    net_dial_free(d);
}

static void up_send(struct net_dial *d, void *ud)
{
    assert_int_equal(net_dial_send(d, "a", 1), 0);
    assert_int_equal(net_dial_send(d, "b", 1), 0);
}

static void no_down(struct net_dial *d, enum net_close_reason r, int err, void *ud)
{
    fail_msg("on_down after net_dial_free");
}

static void test_free_from_callback(void **state)
{
    static const struct net_dial_ops ops = { up_send, free_in_frame, no_down, NULL };
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct server s = { 0 };
    struct net_dial_opts o = { .limits = limits, .connect_timeout_ms = 1000, .backoff_min_ms = 2, .backoff_max_ms = 50 };
    struct addr a;
    int frames = 0;

    assert_int_equal(addr_parse("127.0.0.1:0", &a), 0);
    server_start(&s, loop, net_listen_bind(&a, 16, 0), 8);
    assert_int_equal(net_listener_addr(s.l, &a), 0);
    assert_non_null(net_dial_new(loop, &a, &o, &ops, &frames));
    assert_true(EVTEST_UNTIL(loop, 5, frames == 1 && s.closed == 1));
    EVTEST_FOR(loop, 0.02);
    assert_int_equal(frames, 1);
    server_stop(&s);
    ev_loop_destroy(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_socket_activation),
        cmocka_unit_test(test_tcp_echo),
        cmocka_unit_test(test_unix_echo_and_stale_file),
        cmocka_unit_test(test_max_conns),
        cmocka_unit_test(test_refused_then_backoff),
        cmocka_unit_test(test_self_connect),
        cmocka_unit_test(test_connect_timeout),
        cmocka_unit_test(test_reconnect_after_restart),
        cmocka_unit_test(test_free_from_callback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
