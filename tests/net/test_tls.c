/* test_tls.c - TLS on framed connections (net/tls.h) over TCP 127.0.0.1,
 * with a CA and node certificates made by src/ctl/certgen.c in a temp dir:
 * the name-to-id rule (table), an echo through a mutual-TLS listener and
 * dialer with the authenticated id, and what must fail: the wrong server
 * name, a client certificate from another CA, plaintext, and a handshake
 * that stalls (cut off at frame_timeout_ms while the loop serves others);
 * revocation: a CRL reloaded closes the revoked peer's established link and
 * refuses its next handshake, and CRL files that must not load. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ctl/certgen.h"
#include "evtest.h"
#include "net/dial.h"
#include "net/listener.h"
#include "net/tls.h"

static const struct net_conn_limits limits = {
    .max_frame = 1u << 20, .max_pending_output = 8u << 20, .frame_timeout_ms = 1000};

static char dir[64], other[128];

static void test_name_to_id(void **state)
{
    static const struct {
        const char *name;
        int rv;
        uint32_t id;
    } cases[] = {
        {"raftkv-node-1", 0, 1},
        {"raftkv-node-65535", 0, 65535},
        {"raftkv-node-4294967295", 0, 4294967295u},
        {"raftkv-node-4294967296", -EINVAL, 0}, /* past 32 bits */
        {"raftkv-node-99999999999", -EINVAL, 0},
        {"raftkv-node-0", -EINVAL, 0},
        {"raftkv-node-01", -EINVAL, 0},         /* one spelling per id */
        {"raftkv-node-", -EINVAL, 0},
        {"raftkv-node-1x", -EINVAL, 0},
        {"raftkv-node--1", -EINVAL, 0},
        {"raftkv-node-+1", -EINVAL, 0},
        {"raftkv-node- 1", -EINVAL, 0},
        {"Raftkv-node-1", -EINVAL, 0},
        {"raftkv-proxy", -EINVAL, 0},
        {"", -EINVAL, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint32_t id = 0;
        int rv = net_tls_name_node_id(cases[i].name, strlen(cases[i].name), &id);
        if (rv != cases[i].rv || (rv == 0 && id != cases[i].id))
            fail_msg("'%s': rv %d id %u, want rv %d id %u", cases[i].name, rv, id, cases[i].rv, cases[i].id);
    }
    /* An embedded NUL ends nothing: "raftkv-node-1\0" with its length is not a name. */
    uint32_t id;
    assert_int_equal(net_tls_name_node_id("raftkv-node-1\0", 14, &id), -EINVAL);
    char buf[NET_TLS_NAME_MAX];
    net_tls_node_name(4294967295u, buf, sizeof(buf));
    assert_string_equal(buf, "raftkv-node-4294967295");
}

static struct net_tls_files files_for(const char *d, int node, const char *crl)
{
    static char ca[160], crt[160], key[160];
    snprintf(ca, sizeof(ca), "%s/ca.crt", d);
    snprintf(crt, sizeof(crt), "%s/node-%d.crt", d, node);
    snprintf(key, sizeof(key), "%s/node-%d.key", d, node);
    struct net_tls_files f = {.ca = ca, .cert = crt, .key = key, .crl = crl};
    return f;
}

static struct net_tls *tls_for(const char *d, int node)
{
    char err[256];
    struct net_tls_files f = files_for(d, node, NULL);
    struct net_tls *t = NULL;
    if (net_tls_new(&f, &t, err, sizeof(err)) < 0)
        fail_msg("net_tls_new: %s", err);
    return t;
}

static void test_bad_files(void **state)
{
    char ca[160], crt[160], key[160], err[256];
    struct net_tls *t = NULL;
    snprintf(ca, sizeof(ca), "%s/ca.crt", dir);
    snprintf(crt, sizeof(crt), "%s/node-1.crt", dir);
    snprintf(key, sizeof(key), "%s/node-2.key", dir);
    struct net_tls_files f = {.ca = ca, .cert = crt, .key = key};
    assert_int_equal(net_tls_new(&f, &t, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "node-2.key")); /* OpenSSL: key values mismatch */
    f.key = "/nonexistent/key";
    assert_int_equal(net_tls_new(&f, &t, err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "/nonexistent/key"));
    assert_null(t);
    /* certgen never replaces a CA */
    assert_int_equal(certgen_cluster(dir, 1, err, sizeof(err)), -EEXIST);
}

/* ---- a TLS echo server ----------------------------------------------------- */

struct server {
    struct net_listener *l;
    int accepted, closed, frames, tls_closes;
    uint32_t peer_node;
    int peer_rc;
};

static void srv_frame(struct net_conn *c, const uint8_t *p, size_t len, void *ud)
{
    struct server *s = net_conn_userdata(c);
    s->frames++;
    s->peer_rc = net_conn_tls_peer_node(c, &s->peer_node);
    assert_int_equal(net_conn_send(c, p, len), 0);
}

static void srv_close(struct net_conn *c, enum net_close_reason reason, int err, void *ud)
{
    struct server *s = ud;
    s->closed++;
    if (reason == NET_CLOSE_TLS)
        s->tls_closes++;
}

static const struct net_conn_ops srv_conn_ops = {.on_frame = srv_frame, .on_close = srv_close};

static void srv_accept(struct net_listener *l, struct net_conn *c, void *ud)
{
    net_conn_set_userdata(c, ud);
    ((struct server *)ud)->accepted++;
}

static const struct net_listener_ops srv_ops = {srv_accept, NULL};

static void server_start(struct server *s, struct ev_loop *loop, struct net_tls *t, struct addr *a)
{
    struct net_listener_opts o = {.max_conns = 64, .limits = limits, .conn_ops = &srv_conn_ops, .tls = t};
    assert_int_equal(addr_parse("127.0.0.1:0", a), 0);
    memset(s, 0, sizeof(*s));
    s->l = net_listener_new(loop, net_listen_bind(a, 64, 0), &o, &srv_ops, s);
    assert_non_null(s->l);
    assert_int_equal(net_listener_addr(s->l, a), 0);
}

struct client {
    int ups, downs, fails, frames;
    size_t bytes;
    enum net_close_reason reason;
    int err;
};

static char big[300000];

static void cl_up(struct net_dial *d, void *ud)
{
    ((struct client *)ud)->ups++;
    /* up only once the handshake is done; a frame larger than a TLS
     * record and the socket buffer, so partial writes happen */
    assert_non_null(net_dial_conn(d));
    assert_true(net_conn_is_tls(net_dial_conn(d)));
    assert_int_equal(net_dial_send(d, "ping", 4), 0);
    assert_int_equal(net_dial_send(d, big, sizeof(big)), 0);
}

static void cl_frame(struct net_dial *d, const uint8_t *p, size_t len, void *ud)
{
    struct client *c = ud;
    c->frames++;
    c->bytes += len;
}

static void cl_down(struct net_dial *d, enum net_close_reason reason, int err, void *ud)
{
    struct client *c = ud;
    c->downs++;
    c->reason = reason;
    c->err = err;
}

static void cl_fail(struct net_dial *d, int err, uint32_t retry_ms, void *ud)
{
    struct client *c = ud;
    c->fails++;
    c->err = err;
}

static const struct net_dial_ops cl_ops = {cl_up, cl_frame, cl_down, cl_fail};

static struct net_dial *dial(struct ev_loop *loop, const struct addr *a, struct net_tls *t, uint32_t expect,
                             struct client *c)
{
    struct net_dial_opts o = {.limits = limits, .connect_timeout_ms = 1000, .backoff_min_ms = 2000,
                              .backoff_max_ms = 2000, .tls = t};
    if (expect)
        net_tls_node_name(expect, o.tls_expect_name, sizeof(o.tls_expect_name));
    memset(c, 0, sizeof(*c));
    struct net_dial *d = net_dial_new(loop, a, &o, &cl_ops, c);
    assert_non_null(d);
    return d;
}

/* A loop, node 1 serving TLS on it, node 2's context to dial with. */
struct rig {
    struct ev_loop *loop;
    struct net_tls *t1, *t2;
    struct server s;
    struct addr a;
};

static void rig_start(struct rig *r)
{
    r->loop = ev_loop_new(EVFLAG_AUTO);
    r->t1 = tls_for(dir, 1);
    r->t2 = tls_for(dir, 2);
    server_start(&r->s, r->loop, r->t1, &r->a);
}

static void rig_stop(struct rig *r)
{
    net_listener_close_conns(r->s.l);
    net_listener_free(r->s.l);
    net_tls_free(r->t1);
    net_tls_free(r->t2);
    ev_loop_destroy(r->loop);
}

static void test_mutual_echo(void **state)
{
    struct rig r;
    struct client c;
    rig_start(&r);
    struct net_dial *d = dial(r.loop, &r.a, r.t2, 1, &c);
    assert_true(EVTEST_UNTIL(r.loop, 5, c.frames == 2));
    assert_int_equal(c.bytes, 4 + sizeof(big));
    assert_int_equal(r.s.peer_rc, 0);
    assert_int_equal(r.s.peer_node, 2);
    assert_int_equal(c.downs, 0);
    net_dial_free(d);
    rig_stop(&r);
}

/* What must not get a frame through: each fails inside the handshake. */
static void test_refused(void **state)
{
    struct rig r;
    struct client c;
    rig_start(&r);
    struct net_tls *stranger = tls_for(other, 2);
    struct ev_loop *loop = r.loop;
    struct server *sv = &r.s;
    struct addr a = r.a;

    /* we dial node 3, but the server proves it is node 1: a failed
     * attempt (on_fail), never up */
    struct net_dial *d = dial(loop, &a, r.t2, 3, &c);
    assert_true(EVTEST_UNTIL(loop, 5, c.fails == 1 && sv->closed == 1));
    assert_int_equal(c.err, -EACCES);
    assert_int_equal(c.ups, 0);
    assert_int_equal(c.downs, 0);
    assert_int_equal(c.frames, 0);
    assert_int_equal(sv->frames, 0);
    net_dial_free(d);

    /* node 2's name, but from another CA */
    d = dial(loop, &a, stranger, 0, &c);
    assert_true(EVTEST_UNTIL(loop, 5, sv->closed == 2));
    assert_int_equal(sv->tls_closes, 2);
    assert_int_equal(sv->frames, 0);
    net_dial_free(d);

    /* plaintext: a frame where a ClientHello belongs */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&a.ss, a.len), 0);
    assert_int_equal(write(fd, "\0\0\0\4ping", 8), 8);
    assert_true(EVTEST_UNTIL(loop, 5, sv->closed == 3));
    assert_int_equal(sv->tls_closes, 3);
    assert_int_equal(sv->frames, 0);
    close(fd);
    net_tls_free(stranger);
    rig_stop(&r);
}

/* A handshake that starts and stalls is cut off at frame_timeout_ms (1000
 * ms here); meanwhile a real one completes on the same loop. */
static void test_stalled_handshake(void **state)
{
    struct rig r;
    struct client c;
    int fds[8];
    rig_start(&r);
    struct ev_loop *loop = r.loop;
    struct server *sv = &r.s;
    struct addr a = r.a;
    for (int i = 0; i < 8; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        assert_int_equal(connect(fds[i], (struct sockaddr *)&a.ss, a.len), 0);
        assert_int_equal(write(fds[i], "\x16\x03\x01\x02\x00\x01", 6), 6); /* a record header, no more */
    }
    ev_tstamp t0 = ev_time();
    struct net_dial *d = dial(loop, &a, r.t2, 1, &c);
    assert_true(EVTEST_UNTIL(loop, 5, c.frames == 2));
    assert_true(ev_time() - t0 < 0.9); /* did not wait behind the stalled ones */
    assert_int_equal(sv->closed, 0);
    assert_true(EVTEST_UNTIL(loop, 5, sv->closed == 8));
    assert_int_equal(sv->tls_closes, 8);
    assert_true(ev_time() - t0 >= 0.9);
    for (int i = 0; i < 8; i++)
        close(fds[i]);
    net_dial_free(d);
    rig_stop(&r);
}

/* Node 2 revoked while linked to node 1: node 1's reload closes the link,
 * and the redial fails in the handshake. */
static void test_crl_revokes(void **state)
{
    struct rig r;
    struct client c;
    char crl[160], err[256], crt2[160], bogus[160];
    const char *revoke[] = {crt2};
    rig_start(&r);
    snprintf(crl, sizeof(crl), "%s/crl.pem", dir);
    snprintf(crt2, sizeof(crt2), "%s/node-2.crt", dir);
    /* the empty CRL config generate writes: loads, revokes nothing */
    struct net_tls_files f = files_for(dir, 1, crl);
    assert_int_equal(net_tls_reload(r.t1, &f, err, sizeof(err)), 0);
    struct net_dial *d = dial(r.loop, &r.a, r.t2, 1, &c);
    assert_true(EVTEST_UNTIL(r.loop, 5, c.frames == 2));
    assert_int_equal(r.s.closed, 0);

    size_t listed = 0;
    assert_int_equal(certgen_crl(dir, revoke, 1, &listed, err, sizeof(err)), 0);
    assert_int_equal(listed, 1);
    f = files_for(dir, 1, crl);
    assert_int_equal(net_tls_reload(r.t1, &f, err, sizeof(err)), 1); /* one link closed */
    assert_true(EVTEST_UNTIL(r.loop, 5, c.downs == 1 && r.s.closed == 1));
    assert_int_equal(r.s.tls_closes, 1);
    /* the dialer tries again: refused in the handshake */
    net_dial_retry_now(d);
    assert_true(EVTEST_UNTIL(r.loop, 5, r.s.closed >= 2));
    assert_int_equal(r.s.tls_closes, r.s.closed);
    assert_int_equal(r.s.accepted, 2);
    assert_int_equal(r.s.frames, 2); /* TLS 1.3: the client may think itself up, nothing gets through */
    net_dial_free(d);
    /* once more: nothing left to close; revoking twice lists it once */
    assert_int_equal(net_tls_reload(r.t1, &f, err, sizeof(err)), 0);
    assert_int_equal(certgen_crl(dir, revoke, 1, &listed, err, sizeof(err)), 0);
    assert_int_equal(listed, 1);

    /* files that must not load: another CA's CRL, no CRL, the CA itself */
    snprintf(bogus, sizeof(bogus), "%s/crl.pem", other);
    f = files_for(dir, 1, bogus);
    assert_int_equal(net_tls_reload(r.t1, &f, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "not signed by a CA"));
    f = files_for(dir, 1, f.ca); /* a certificate, no CRL in it */
    assert_int_equal(net_tls_reload(r.t1, &f, err, sizeof(err)), -EINVAL);
    f = files_for(dir, 1, "/nonexistent/crl.pem");
    assert_int_equal(net_tls_reload(r.t1, &f, err, sizeof(err)), -ENOENT);
    snprintf(bogus, sizeof(bogus), "%s/ca.crt", dir);
    revoke[0] = bogus;
    assert_int_equal(certgen_crl(dir, revoke, 1, &listed, err, sizeof(err)), -EINVAL);
    snprintf(bogus, sizeof(bogus), "%s/node-1.crt", other);
    assert_int_equal(certgen_crl(dir, revoke, 1, &listed, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "not issued by this CA"));
    rig_stop(&r);
}

static int setup(void **state)
{
    char err[256];
    snprintf(dir, sizeof(dir), "/tmp/raftkv-tls-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(other, sizeof(other), "%s/other", dir);
    if (certgen_cluster(dir, 3, err, sizeof(err)) < 0 || certgen_cluster(other, 2, err, sizeof(err)) < 0) {
        fprintf(stderr, "certgen: %s\n", err);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_name_to_id),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_mutual_echo),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_stalled_handshake),
        cmocka_unit_test(test_crl_revokes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
