/* client.c - the blocking raftkv client: endpoint fail-over, leader
 * redirects, retries within a deadline, and write sessions that make those
 * retries safe. */
#include "client/client.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define DEFAULT_TIMEOUT_MS 5000u
#define DEFAULT_CONNECT_MS 1000u
#define DEFAULT_HOPS 5u
#define BACKOFF_MIN_MS 10u
#define BACKOFF_MAX_MS 200u
/* The kv layer answers a write of a forgotten session with this message
 * (INVALID_ARGUMENT); the write was not applied, so a fresh session may
 * carry it. */
#define SESSION_EXPIRED_MSG "client session expired"

struct client {
    char *eps[CLIENT_MAX_ENDPOINTS];
    size_t n_eps, next_ep;
    char *hint;                 /* leader address from NOT_LEADER, tried first */
    struct client_conn cc;
    struct client_opts o;
    uint64_t client_id, seq, next_id;
    Raftkv__Response **held;    /* arrived before anyone asked for their id */
    size_t n_held, cap_held;
};

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (!err || !errlen)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static uint64_t random_id(void)
{
    uint64_t v = 0;
    while (v == 0) {
        if (getrandom(&v, sizeof(v), 0) != (ssize_t)sizeof(v))
            v = client_now_ns() ^ ((uint64_t)(uintptr_t)&v << 17);
    }
    return v;
}

int client_new(struct client **out, const struct client_opts *opts, char *err, size_t errlen)
{
    struct client *c = calloc(1, sizeof(*c));
    if (!c) {
        set_err(err, errlen, "out of memory");
        return -ENOMEM;
    }
    c->o = *opts;
    c->o.endpoints = NULL;
    if (!c->o.timeout_ms)
        c->o.timeout_ms = DEFAULT_TIMEOUT_MS;
    if (!c->o.connect_timeout_ms)
        c->o.connect_timeout_ms = DEFAULT_CONNECT_MS;
    if (!c->o.max_hops)
        c->o.max_hops = DEFAULT_HOPS;
    client_conn_init(&c->cc, c->o.max_frame);
    c->cc.tls = opts->tls;
    c->next_id = 1;

    const char *s = opts->endpoints ? opts->endpoints : "";
    while (*s) {
        size_t n = strcspn(s, ",");
        while (n && (*s == ' ' || *s == '\t'))
            s++, n--;
        size_t m = n;
        while (m && (s[m - 1] == ' ' || s[m - 1] == '\t'))
            m--;
        if (m) {
            if (c->n_eps == CLIENT_MAX_ENDPOINTS) {
                set_err(err, errlen, "more than %d endpoints", CLIENT_MAX_ENDPOINTS);
                client_free(c);
                return -EINVAL;
            }
            if (!(c->eps[c->n_eps++] = strndup(s, m))) {
                client_free(c);
                set_err(err, errlen, "out of memory");
                return -ENOMEM;
            }
        }
        s += n;
        if (*s == ',')
            s++;
    }
    if (!c->n_eps) {
        set_err(err, errlen, "no endpoint given");
        client_free(c);
        return -EINVAL;
    }
    *out = c;
    return 0;
}

static void drop_held(struct client *c)
{
    for (size_t i = 0; i < c->n_held; i++)
        raftkv__response__free_unpacked(c->held[i], NULL);
    c->n_held = 0;
}

void client_disconnect(struct client *c)
{
    client_conn_close(&c->cc);
    drop_held(c);
}

void client_free(struct client *c)
{
    if (!c)
        return;
    client_disconnect(c);
    for (size_t i = 0; i < c->n_eps; i++)
        free(c->eps[i]);
    free(c->hint);
    free(c->held);
    free(c);
}

void client_set_timeout(struct client *c, unsigned timeout_ms)
{
    c->o.timeout_ms = timeout_ms ? timeout_ms : DEFAULT_TIMEOUT_MS;
}

unsigned client_timeout(const struct client *c)
{
    return c->o.timeout_ms;
}

const char *client_endpoint(const struct client *c)
{
    return client_conn_is_open(&c->cc) ? c->cc.name : NULL;
}

void client_response_free(Raftkv__Response *resp)
{
    if (resp)
        raftkv__response__free_unpacked(resp, NULL);
}

static int ms_until(uint64_t deadline)
{
    uint64_t now = client_now_ns();
    if (now >= deadline)
        return 0;
    uint64_t ms = (deadline - now + 999999) / 1000000;
    return ms > INT32_MAX ? INT32_MAX : (int)ms;
}

static uint64_t deadline_in(int timeout_ms)
{
    return timeout_ms < 0 ? UINT64_MAX : client_now_ns() + (uint64_t)timeout_ms * 1000000ull;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* Appends s to the string in dst, truncating to fit. */
static void append(char *dst, size_t cap, const char *s)
{
    size_t l = strlen(dst), n = strlen(s);
    if (l + n >= cap)
        n = cap - l - 1;
    memcpy(dst + l, s, n);
    dst[l + n] = '\0';
}

static int connect_until(struct client *c, uint64_t deadline, char *err, size_t errlen)
{
    char one[CLIENT_ERRLEN], all[CLIENT_ERRLEN] = "";
    int r = -ETIMEDOUT;
    if (client_conn_is_open(&c->cc))
        return 0;
    drop_held(c);
    if (c->hint) {
        int t = ms_until(deadline);
        r = client_conn_open(&c->cc, c->hint, t < (int)c->o.connect_timeout_ms ? t : (int)c->o.connect_timeout_ms,
                             one, sizeof(one));
        if (r == 0)
            return 0;
        append(all, sizeof(all), "leader ");
        append(all, sizeof(all), one);
        free(c->hint);
        c->hint = NULL; /* a dead leader: the endpoints will know the next one */
    }
    for (size_t i = 0; i < c->n_eps; i++) {
        const char *ep = c->eps[(c->next_ep + i) % c->n_eps];
        int t = ms_until(deadline);
        if (t == 0)
            break;
        r = client_conn_open(&c->cc, ep, t < (int)c->o.connect_timeout_ms ? t : (int)c->o.connect_timeout_ms,
                             one, sizeof(one));
        if (r == 0) {
            c->next_ep = (c->next_ep + i) % c->n_eps;
            return 0;
        }
        if (all[0])
            append(all, sizeof(all), "; ");
        append(all, sizeof(all), one);
    }
    set_err(err, errlen, "%s", all[0] ? all : "no time left to connect");
    return r;
}

int client_connect(struct client *c, char *err, size_t errlen)
{
    return connect_until(c, deadline_in((int)c->o.timeout_ms), err, errlen);
}

/* Polls the connection for input (and output while some is queued). */
static int wait_io(struct client *c, uint64_t deadline)
{
    struct pollfd p = {.fd = c->cc.fd, .events = POLLIN};
    if (client_conn_want_write(&c->cc))
        p.events |= POLLOUT;
    int t = deadline == UINT64_MAX ? -1 : ms_until(deadline);
    if (t == 0)
        return -ETIMEDOUT;
    int r = poll(&p, 1, t);
    if (r < 0)
        return errno == EINTR ? 0 : -errno;
    return r == 0 ? -ETIMEDOUT : 0;
}

static int conn_failed(struct client *c, int r, const char *what, char *err, size_t errlen)
{
    set_err(err, errlen, "%s %s: %s", what, c->cc.name,
            r == -ECONNRESET ? "connection closed by the server"
            : r == -EPROTO ? "the server sent something that is not a raftkv Response"
            : r == -EMSGSIZE ? "response larger than the client's frame limit"
            : strerror(-r));
    client_disconnect(c);
    return r;
}

static int send_until(struct client *c, Raftkv__Request *req, uint64_t deadline, char *err, size_t errlen)
{
    int r = connect_until(c, deadline, err, errlen);
    if (r < 0)
        return r;
    if (!req->has_id || req->id == 0) {
        req->has_id = 1;
        req->id = c->next_id++;
    }
    r = client_conn_queue(&c->cc, req);
    if (r < 0) {
        set_err(err, errlen, "request too large to send (%zu bytes)", raftkv__request__get_packed_size(req));
        return r;
    }
    while ((r = client_conn_flush(&c->cc)) == -EAGAIN) {
        struct pollfd p = {.fd = c->cc.fd, .events = POLLOUT};
        int t = ms_until(deadline);
        if (t == 0 || poll(&p, 1, t) == 0) {
            set_err(err, errlen, "%s did not take the request in time", c->cc.name);
            client_disconnect(c);
            return -ETIMEDOUT;
        }
    }
    return r < 0 ? conn_failed(c, r, "sending to", err, errlen) : 0;
}

int client_send(struct client *c, Raftkv__Request *req, char *err, size_t errlen)
{
    return send_until(c, req, deadline_in((int)c->o.timeout_ms), err, errlen);
}

static int hold(struct client *c, Raftkv__Response *resp)
{
    if (c->n_held == c->cap_held) {
        size_t cap = c->cap_held ? c->cap_held * 2 : 16;
        Raftkv__Response **p = realloc(c->held, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        c->held = p;
        c->cap_held = cap;
    }
    c->held[c->n_held++] = resp;
    return 0;
}

static int recv_until(struct client *c, uint64_t id, uint64_t deadline, Raftkv__Response **resp,
                      char *err, size_t errlen)
{
    for (size_t i = 0; i < c->n_held; i++) {
        if (id == 0 || c->held[i]->id == id) {
            *resp = c->held[i];
            memmove(&c->held[i], &c->held[i + 1], (c->n_held - i - 1) * sizeof(*c->held));
            c->n_held--;
            return 0;
        }
    }
    if (!client_conn_is_open(&c->cc)) {
        set_err(err, errlen, "not connected");
        return -ENOTCONN;
    }
    for (;;) {
        Raftkv__Response *r1;
        int r = client_conn_next(&c->cc, &r1);
        if (r < 0)
            return conn_failed(c, r, "reading from", err, errlen);
        if (r == 1) {
            if (id == 0 || r1->id == id) {
                *resp = r1;
                return 0;
            }
            if (hold(c, r1) < 0) {
                raftkv__response__free_unpacked(r1, NULL);
                set_err(err, errlen, "out of memory");
                return -ENOMEM;
            }
            continue;
        }
        if (client_conn_want_write(&c->cc) && (r = client_conn_flush(&c->cc)) < 0 && r != -EAGAIN)
            return conn_failed(c, r, "sending to", err, errlen);
        r = client_conn_fill(&c->cc);
        if (r == -EAGAIN) {
            r = wait_io(c, deadline);
            if (r == -ETIMEDOUT) {
                set_err(err, errlen, "no answer from %s in time", c->cc.name);
                return r;
            }
        }
        if (r < 0)
            return conn_failed(c, r, "reading from", err, errlen);
    }
}

int client_recv(struct client *c, uint64_t id, int timeout_ms, Raftkv__Response **resp,
                char *err, size_t errlen)
{
    return recv_until(c, id, deadline_in(timeout_ms), resp, err, errlen);
}

static bool is_write(const Raftkv__Request *req)
{
    return req->op_case == RAFTKV__REQUEST__OP_SET || req->op_case == RAFTKV__REQUEST__OP_DEL ||
           req->op_case == RAFTKV__REQUEST__OP_CAS;
}

static void new_session(struct client *c)
{
    c->client_id = random_id();
    c->seq = 0;
}

static void start_write(struct client *c, Raftkv__Request *req)
{
    if (!c->client_id)
        new_session(c);
    req->has_client_id = req->has_sequence = 1;
    req->client_id = c->client_id;
    req->sequence = ++c->seq;
}

static bool session_expired(const Raftkv__Response *resp)
{
    return resp->status == RAFTKV__STATUS__INVALID_ARGUMENT && resp->message &&
           strncmp(resp->message, SESSION_EXPIRED_MSG, strlen(SESSION_EXPIRED_MSG)) == 0;
}

int client_call(struct client *c, Raftkv__Request *req, Raftkv__Response **out,
                char *err, size_t errlen)
{
    uint64_t deadline = deadline_in((int)c->o.timeout_ms);
    bool session = is_write(req) && !req->client_id;
    unsigned hops = 0, backoff = BACKOFF_MIN_MS;
    Raftkv__Response *last = NULL;
    char lasterr[CLIENT_ERRLEN] = "";
    int rc = -ETIMEDOUT;

    if (session)
        start_write(c, req);
    *out = NULL;
    while (ms_until(deadline) > 0) {
        Raftkv__Response *resp = NULL;
        int left = ms_until(deadline);
        /* The server gives up a little before us, so a slow request comes
         * back as TIMEOUT with the server's reason rather than silence. */
        req->has_timeout_ms = 1;
        req->timeout_ms = (uint32_t)(left > 20 ? left - left / 10 : left);
        req->id = 0;
        int r = send_until(c, req, deadline, lasterr, sizeof(lasterr));
        if (r == 0) {
            r = recv_until(c, req->id, deadline, &resp, lasterr, sizeof(lasterr));
            if (r == -ETIMEDOUT) {
                rc = r;
                break;
            }
        }
        if (r < 0) {
            rc = r;
            if (r == -EMSGSIZE || r == -ENOMEM || r == -EINVAL || c->o.no_retry)
                break;
            goto backoff; /* sessions make resending a write safe */
        }
        if (resp->status == RAFTKV__STATUS__NOT_LEADER && resp->leader_address &&
            resp->leader_address[0] && hops < c->o.max_hops && !c->o.no_retry) {
            hops++;
            client_response_free(last);
            last = resp;
            free(c->hint);
            c->hint = strdup(resp->leader_address);
            client_disconnect(c);
            continue;
        }
        if ((resp->status == RAFTKV__STATUS__NOT_LEADER || resp->status == RAFTKV__STATUS__UNAVAILABLE) &&
            !c->o.no_retry) {
            client_response_free(last);
            last = resp;
            /* Another endpoint may see a leader this one cannot. */
            if (c->hint || c->n_eps > 1) {
                free(c->hint);
                c->hint = NULL;
                client_disconnect(c);
                c->next_ep = (c->next_ep + 1) % c->n_eps;
            }
            goto backoff;
        }
        if (session && session_expired(resp)) {
            client_response_free(resp);
            new_session(c);
            start_write(c, req);
            continue;
        }
        client_response_free(last);
        *out = resp;
        return 0;
    backoff:;
        int t = ms_until(deadline);
        sleep_ms(backoff < (unsigned)t ? backoff : (unsigned)t);
        backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
        hops = 0;
    }
    if (last) {
        *out = last;
        return 0;
    }
    if (rc == -ETIMEDOUT && !lasterr[0])
        snprintf(lasterr, sizeof(lasterr), "no answer within %u ms", c->o.timeout_ms);
    set_err(err, errlen, "%s", lasterr);
    return rc;
}

/* ---- conveniences ---------------------------------------------------- */

static ProtobufCBinaryData bytes(const void *p, size_t n)
{
    return (ProtobufCBinaryData){.len = n, .data = (uint8_t *)(uintptr_t)p};
}

int client_get(struct client *c, const void *key, size_t klen, bool stale,
               Raftkv__Response **resp, char *err, size_t errlen)
{
    Raftkv__Request req = RAFTKV__REQUEST__INIT;
    Raftkv__GetRequest g = RAFTKV__GET_REQUEST__INIT;
    g.has_key = 1;
    g.key = bytes(key, klen);
    g.has_consistency = stale;
    g.consistency = stale ? RAFTKV__CONSISTENCY__STALE : RAFTKV__CONSISTENCY__LINEARIZABLE;
    req.op_case = RAFTKV__REQUEST__OP_GET;
    req.get = &g;
    return client_call(c, &req, resp, err, errlen);
}

int client_set(struct client *c, const void *key, size_t klen, const void *val, size_t vlen,
               Raftkv__Response **resp, char *err, size_t errlen)
{
    Raftkv__Request req = RAFTKV__REQUEST__INIT;
    Raftkv__SetRequest s = RAFTKV__SET_REQUEST__INIT;
    s.has_key = s.has_value = 1;
    s.key = bytes(key, klen);
    s.value = bytes(val, vlen);
    req.op_case = RAFTKV__REQUEST__OP_SET;
    req.set = &s;
    return client_call(c, &req, resp, err, errlen);
}

int client_del(struct client *c, const void *key, size_t klen,
               Raftkv__Response **resp, char *err, size_t errlen)
{
    Raftkv__Request req = RAFTKV__REQUEST__INIT;
    Raftkv__DelRequest d = RAFTKV__DEL_REQUEST__INIT;
    d.has_key = 1;
    d.key = bytes(key, klen);
    req.op_case = RAFTKV__REQUEST__OP_DEL;
    req.del = &d;
    return client_call(c, &req, resp, err, errlen);
}

int client_cas(struct client *c, const void *key, size_t klen, const void *expected, size_t elen,
               const void *val, size_t vlen, Raftkv__Response **resp, char *err, size_t errlen)
{
    Raftkv__Request req = RAFTKV__REQUEST__INIT;
    Raftkv__CasRequest cas = RAFTKV__CAS_REQUEST__INIT;
    cas.has_key = cas.has_value = 1;
    cas.key = bytes(key, klen);
    cas.value = bytes(val, vlen);
    if (expected) {
        cas.has_expected = 1;
        cas.expected = bytes(expected, elen);
    } else {
        cas.has_expect_absent = 1;
        cas.expect_absent = 1;
    }
    req.op_case = RAFTKV__REQUEST__OP_CAS;
    req.cas = &cas;
    return client_call(c, &req, resp, err, errlen);
}

int client_list(struct client *c, const void *prefix, size_t plen, const void *start_after,
                size_t salen, uint32_t limit, bool stale, Raftkv__Response **resp,
                char *err, size_t errlen)
{
    Raftkv__Request req = RAFTKV__REQUEST__INIT;
    Raftkv__ListRequest l = RAFTKV__LIST_REQUEST__INIT;
    l.has_prefix = 1;
    l.prefix = bytes(prefix, plen);
    if (start_after) {
        l.has_start_after = 1;
        l.start_after = bytes(start_after, salen);
    }
    l.has_limit = limit != 0;
    l.limit = limit;
    l.has_consistency = stale;
    l.consistency = stale ? RAFTKV__CONSISTENCY__STALE : RAFTKV__CONSISTENCY__LINEARIZABLE;
    req.op_case = RAFTKV__REQUEST__OP_LIST;
    req.list = &l;
    return client_call(c, &req, resp, err, errlen);
}

int client_status(struct client *c, bool fanout, Raftkv__Response **resp, char *err, size_t errlen)
{
    Raftkv__Request req = RAFTKV__REQUEST__INIT;
    Raftkv__StatusRequest s = RAFTKV__STATUS_REQUEST__INIT;
    s.has_fanout = fanout;
    s.fanout = fanout;
    req.op_case = RAFTKV__REQUEST__OP_STATUS;
    req.status = &s;
    return client_call(c, &req, resp, err, errlen);
}

int client_metrics(struct client *c, bool json, Raftkv__Response **resp, char *err, size_t errlen)
{
    Raftkv__Request req = RAFTKV__REQUEST__INIT;
    Raftkv__MetricsRequest m = RAFTKV__METRICS_REQUEST__INIT;
    m.has_format = 1;
    m.format = json ? RAFTKV__METRICS_FORMAT__METRICS_JSON : RAFTKV__METRICS_FORMAT__METRICS_PROMETHEUS;
    req.op_case = RAFTKV__REQUEST__OP_METRICS;
    req.metrics = &m;
    return client_call(c, &req, resp, err, errlen);
}

int client_transfer_leader(struct client *c, uint64_t target, Raftkv__Response **resp,
                           char *err, size_t errlen)
{
    Raftkv__Request req = RAFTKV__REQUEST__INIT;
    Raftkv__TransferLeaderRequest t = RAFTKV__TRANSFER_LEADER_REQUEST__INIT;
    t.has_target_id = 1;
    t.target_id = target;
    req.op_case = RAFTKV__REQUEST__OP_TRANSFER_LEADER;
    req.transfer_leader = &t;
    return client_call(c, &req, resp, err, errlen);
}

const char *client_status_name(Raftkv__Status st)
{
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(&raftkv__status__descriptor, (int)st);
    return v ? v->name : "UNKNOWN";
}
