/* bench.c - "raftkvctl bench": many closed-loop clients from one thread,
 * each on its own non-blocking connection with up to P requests in flight,
 * driven by poll().  Writes carry sessions like any client's, so the
 * servers do the work real writes cost.  A connection answered NOT_LEADER
 * with the leader's address moves there, as a real client does, so a run
 * outlives a leader change (the redirected requests are counted apart).
 * A lost connection is reopened, a bounded number of times.  The prefill
 * retries a write whose outcome a leader change left unknown (UNAVAILABLE,
 * TIMEOUT, a lost connection): its keys must all be there before the
 * measured run, which counts every failure by status instead.  A separate
 * WATCH_LEADER stream counts the leader changes during the run. */
#include "ctl/ctl.h"
#include "ctl/hist.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#define PROGRESS_NS 1000000000ull
#define POLL_MS 100
#define KEY_FMT "bench:%" PRIu64
#define RETRY_FOR_NS 60000000000ull /* a prefill key is given up this long after its first try */
#define RETRY_PAUSE_NS 50000000ull  /* and not sent again sooner than this after a failure */
#define RECONNECT_TRIES 50      /* reopenings of one lost connection */
#define RECONNECT_NS 200000000ull

/* Failure kinds: a Raftkv__Status, or one of these past the last status. */
enum { FAIL_LOST = 16, FAIL_UNANSWERED, FAIL_KINDS };

struct bench_opts {
    uint64_t clients, requests, value_size, keys, set_w, get_w, pipeline;
    unsigned duration_ms;
    bool stale, no_prefill;
};

struct slot {
    uint64_t id, t0, key, first; /* first: when this key was first sent */
    bool set;
};

/* A prefill key to send again once due. */
struct pending {
    uint64_t key, first, due;
};

struct bconn {
    struct client_conn cc;
    uint64_t client_id, seq, next_id, rng;
    struct slot *slots;
    unsigned inflight, reconnects;
    uint64_t next_try;     /* a lost connection is not reopened before this */
    /* A NOT_LEADER named the leader, or the connection was lost: (re)connect
     * there once nothing is in flight on this connection. */
    char move_to[ADDR_STRLEN];
};

/* The WATCH_LEADER stream of the target: leader changes during a run. */
struct watch {
    struct client_conn cc;
    bool seen, broken;     /* an event arrived; the stream was lost */
    uint64_t leader, term, first_term, changes;
};

struct bench {
    const struct bench_opts *o;
    struct net_tls *tls;            /* TLS to TCP targets (ctl_tls), or NULL */
    struct bconn *conns;
    uint8_t *value;
    bool prefill;
    uint64_t limit;                 /* requests to issue; 0 with a duration */
    uint64_t start, stop_issue, last_progress, prev_done, prev_t;
    uint64_t issued, done, ok, errors, misses, sets, gets, redirected, retried, reconnected;
    uint64_t prefill_retried;       /* writes the prefill sent again */
    uint64_t failed[FAIL_KINDS];
    uint64_t last_done, max_gap;    /* longest time without a completion */
    struct pending *retry;          /* prefill keys to write again, by due time */
    size_t rhead, rtail, retry_cap;
    struct watch watch;
    unsigned live;
    unsigned timeout_ms;
    struct hist all, set_h, get_h;
    char first_err[CLIENT_ERRLEN];
};

static const struct option bench_long[] = {
    {"clients", required_argument, 0, 'C'},    {"requests", required_argument, 0, 'N'},
    {"duration", required_argument, 0, 'D'},   {"value-size", required_argument, 0, 'B'},
    {"keys", required_argument, 0, 'K'},       {"ratio", required_argument, 0, 'R'},
    {"stale", no_argument, 0, 'S'},            {"pipeline", required_argument, 0, 'P'},
    {"no-prefill", no_argument, 0, 'F'},       {0, 0, 0, 0},
};

static int bench_opt(struct ctl *ctl, int c, const char *arg, void *ud)
{
    (void)ctl;
    struct bench_opts *o = ud;
    uint64_t *num = c == 'C' ? &o->clients : c == 'N' ? &o->requests : c == 'B' ? &o->value_size
                    : c == 'K' ? &o->keys : c == 'P' ? &o->pipeline : NULL;
    if (num) {
        if (ctl_parse_u64(arg, num) < 0 || (*num == 0 && c != 'B') || *num > 100000000)
            return ctl_usage_error("bench", "'%s' is not a sensible count", arg);
        if (c == 'N')
            o->duration_ms = 0;
        return 0;
    }
    switch (c) {
    case 'D':
        if (ctl_parse_duration_ms(arg, &o->duration_ms) < 0 || o->duration_ms == 0)
            return ctl_usage_error("bench", "--duration %s: expected a duration like 10s", arg);
        return 0;
    case 'R': {
        char *end;
        o->set_w = strtoull(arg, &end, 10);
        if (*end != ':' || (o->get_w = strtoull(end + 1, &end, 10), *end) || o->set_w + o->get_w == 0)
            return ctl_usage_error("bench", "--ratio %s: expected SET:GET like 1:0 or 1:9", arg);
        return 0;
    }
    case 'S': o->stale = true; return 0;
    case 'F': o->no_prefill = true; return 0;
    }
    return EXIT_USAGE;
}

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545f4914f6cdd1dull;
}

/* Queues the next request on bc; false when the run issues no more. */
static bool issue(struct bench *b, struct bconn *bc, uint64_t now)
{
    const struct bench_opts *o = b->o;
    uint64_t k, first = now;
    bool again = b->rhead < b->rtail && b->retry[b->rhead].due <= now;
    if (!again && (b->limit ? b->issued >= b->limit : now >= b->stop_issue))
        return false;
    bool set = b->prefill || xorshift(&bc->rng) % (o->set_w + o->get_w) < o->set_w;
    if (again) {
        k = b->retry[b->rhead].key;
        first = b->retry[b->rhead].first;
    } else {
        k = b->prefill ? b->issued : xorshift(&bc->rng) % o->keys;
    }
    char key[40];
    int klen = snprintf(key, sizeof(key), KEY_FMT, k);

    Raftkv__Request req = RAFTKV__REQUEST__INIT;
    Raftkv__SetRequest sr = RAFTKV__SET_REQUEST__INIT;
    Raftkv__GetRequest gr = RAFTKV__GET_REQUEST__INIT;
    req.has_id = 1;
    req.id = ++bc->next_id;
    if (set) {
        sr.has_key = sr.has_value = 1;
        sr.key = (ProtobufCBinaryData){.len = (size_t)klen, .data = (uint8_t *)key};
        sr.value = (ProtobufCBinaryData){.len = o->value_size, .data = b->value};
        req.op_case = RAFTKV__REQUEST__OP_SET;
        req.set = &sr;
        req.has_client_id = req.has_sequence = 1;
        req.client_id = bc->client_id;
        req.sequence = ++bc->seq;
    } else {
        gr.has_key = 1;
        gr.key = (ProtobufCBinaryData){.len = (size_t)klen, .data = (uint8_t *)key};
        gr.has_consistency = o->stale;
        gr.consistency = o->stale ? RAFTKV__CONSISTENCY__STALE : RAFTKV__CONSISTENCY__LINEARIZABLE;
        req.op_case = RAFTKV__REQUEST__OP_GET;
        req.get = &gr;
    }
    if (client_conn_queue(&bc->cc, &req) < 0)
        return false;
    struct slot *s = &bc->slots[bc->inflight++];
    *s = (struct slot){.id = req.id, .t0 = now, .key = k, .first = first, .set = set};
    if (again)
        b->rhead++;
    else
        b->issued++;
    return true;
}

/* The first error of a run is the one worth showing; the rest are counted. */
static void note_error(struct bench *b, const char *what, const char *detail)
{
    if (!b->first_err[0])
        snprintf(b->first_err, sizeof(b->first_err), "%s%s%s", what, *detail ? ": " : "", detail);
}

static const char *fail_name(unsigned kind)
{
    return kind == FAIL_LOST         ? "connection lost"
           : kind == FAIL_UNANSWERED ? "unanswered at the end"
                                     : client_status_name((Raftkv__Status)kind);
}

/* Puts a prefill key back in the queue, due after pause_ns; false once it
 * has been retried for RETRY_FOR_NS (the cluster found no leader that long). */
static bool requeue(struct bench *b, const struct slot *s, uint64_t pause_ns)
{
    uint64_t now = client_now_ns();
    if (now - s->first > RETRY_FOR_NS)
        return false;
    if (b->rtail == b->retry_cap && b->rhead > 0) {
        memmove(b->retry, b->retry + b->rhead, (b->rtail - b->rhead) * sizeof(*b->retry));
        b->rtail -= b->rhead;
        b->rhead = 0;
    }
    if (b->rtail == b->retry_cap) {
        size_t cap = b->retry_cap ? 2 * b->retry_cap : 256;
        struct pending *r = realloc(b->retry, cap * sizeof(*r));
        if (!r)
            return false;
        b->retry = r;
        b->retry_cap = cap;
    }
    b->retry[b->rtail++] = (struct pending){.key = s->key, .first = s->first, .due = now + pause_ns};
    b->retried++;
    return true;
}

/* A request that did not succeed: a prefill write whose outcome is unknown
 * goes back in the queue (the session makes a repeat harmless, and the
 * prefill only needs the key written); anything else is counted. */
static void fail(struct bench *b, const struct slot *s, unsigned kind, const char *detail)
{
    bool unknown = kind == RAFTKV__STATUS__UNAVAILABLE || kind == RAFTKV__STATUS__TIMEOUT ||
                   kind == RAFTKV__STATUS__NOT_LEADER || kind == FAIL_LOST;
    if (b->prefill && unknown && requeue(b, s, RETRY_PAUSE_NS))
        return;
    b->done++;
    b->errors++;
    b->failed[kind < FAIL_KINDS ? kind : RAFTKV__STATUS__INTERNAL]++;
    note_error(b, fail_name(kind), detail);
}

/* The connection broke: what was in flight failed, and the connection is
 * reopened to the same endpoint after a pause, a bounded number of times. */
static void kill_conn(struct bench *b, struct bconn *bc, int err)
{
    for (unsigned i = 0; i < bc->inflight; i++)
        fail(b, &bc->slots[i], FAIL_LOST, strerror(-err));
    bc->inflight = 0;
    if (!bc->move_to[0])
        snprintf(bc->move_to, sizeof(bc->move_to), "%s", bc->cc.name);
    client_conn_close(&bc->cc);
    bc->next_try = client_now_ns() + RECONNECT_NS;
}

static void complete(struct bench *b, struct bconn *bc, const Raftkv__Response *resp, uint64_t now)
{
    for (unsigned i = 0; i < bc->inflight; i++) {
        struct slot s = bc->slots[i];
        if (s.id != resp->id)
            continue;
        bc->slots[i] = bc->slots[--bc->inflight];
        bool miss = !s.set && resp->status == RAFTKV__STATUS__NOT_FOUND;
        if (resp->status == RAFTKV__STATUS__NOT_LEADER && resp->leader_address &&
            *resp->leader_address) {
            /* Not done by the server; a real client would follow the hint
             * and send it again there. */
            b->redirected++;
            if (b->prefill && !requeue(b, &s, 0))
                fail(b, &s, RAFTKV__STATUS__NOT_LEADER, "redirected for too long");
            if (strcmp(resp->leader_address, bc->cc.name) != 0)
                snprintf(bc->move_to, sizeof(bc->move_to), "%s", resp->leader_address);
            return;
        }
        if (resp->status != RAFTKV__STATUS__OK && !miss) {
            fail(b, &s, (unsigned)resp->status, resp->message ? resp->message : "");
            return;
        }
        uint64_t lat = now - s.t0;
        b->done++;
        if (now - b->last_done > b->max_gap)
            b->max_gap = now - b->last_done;
        b->last_done = now;
        b->ok++;
        b->misses += miss;
        hist_add(&b->all, lat);
        hist_add(s.set ? &b->set_h : &b->get_h, lat);
        (s.set ? b->sets++ : b->gets++);
        return;
    }
}

/* Follows the leader, or reopens a lost connection: a new connection to
 * bc->move_to.  A connection that cannot be reopened RECONNECT_TRIES times
 * in a row is given up. */
static void move(struct bench *b, struct bconn *bc, uint64_t now)
{
    char err[256];
    if (now < bc->next_try)
        return;
    bool was_open = client_conn_is_open(&bc->cc);
    client_conn_close(&bc->cc);
    int r = client_conn_open(&bc->cc, bc->move_to, (int)b->timeout_ms, err, sizeof(err));
    if (r == 0) {
        bc->move_to[0] = '\0';
        bc->reconnects = 0;
        b->reconnected += !was_open;
        return;
    }
    bc->next_try = now + RECONNECT_NS;
    if (++bc->reconnects >= RECONNECT_TRIES) {
        note_error(b, "connecting", err);
        bc->move_to[0] = '\0';
        b->live--;
    }
}

/* Reads, completes and refills one connection. */
static void service(struct bench *b, struct bconn *bc, short revents)
{
    int r;
    uint64_t now = client_now_ns();
    if (revents & (POLLIN | POLLERR | POLLHUP)) {
        while ((r = client_conn_fill(&bc->cc)) == 0) {
            Raftkv__Response *resp;
            int n;
            now = client_now_ns();
            while ((n = client_conn_next(&bc->cc, &resp)) == 1) {
                complete(b, bc, resp, now);
                raftkv__response__free_unpacked(resp, NULL);
            }
            if (n < 0) {
                kill_conn(b, bc, n);
                return;
            }
        }
        if (r != -EAGAIN) {
            kill_conn(b, bc, r);
            return;
        }
    }
    if (bc->move_to[0]) {
        if (bc->inflight)
            return;
        move(b, bc, now);
        if (!client_conn_is_open(&bc->cc) || bc->move_to[0])
            return;
    }
    while (bc->inflight < b->o->pipeline && issue(b, bc, now))
        ;
    if ((r = client_conn_flush(&bc->cc)) < 0 && r != -EAGAIN)
        kill_conn(b, bc, r);
}

/* ---- leader watch ------------------------------------------------------ */

/* Subscribes to the target's leader changes (a node or the proxy answers
 * WATCH_LEADER alike).  The run goes on without it if that fails. */
static void watch_open(struct watch *w, const char *target, struct net_tls *tls, unsigned timeout_ms)
{
    char err[CLIENT_ERRLEN];
    Raftkv__Request req = RAFTKV__REQUEST__INIT;
    Raftkv__WatchLeaderRequest wl = RAFTKV__WATCH_LEADER_REQUEST__INIT;
    req.has_id = 1;
    req.id = 1;
    req.op_case = RAFTKV__REQUEST__OP_WATCH_LEADER;
    req.watch_leader = &wl;
    client_conn_init(&w->cc, 0);
    w->cc.tls = tls;
    if (client_conn_open(&w->cc, target, (int)timeout_ms, err, sizeof(err)) < 0 ||
        client_conn_queue(&w->cc, &req) < 0 || client_conn_flush(&w->cc) < 0) {
        client_conn_close(&w->cc);
        w->broken = true;
    }
}

/* A change is a new (leader, term) with a leader; "no leader" in between is
 * part of the same change. */
static void watch_read(struct watch *w)
{
    int r;
    while ((r = client_conn_fill(&w->cc)) == 0) {
        Raftkv__Response *resp;
        while (client_conn_next(&w->cc, &resp) == 1) {
            const Raftkv__LeaderEvent *ev = resp->leader_event;
            if (ev && ev->leader_id) {
                if (!w->seen) {
                    w->seen = true;
                    w->first_term = ev->term;
                } else if (ev->leader_id != w->leader || ev->term != w->term) {
                    w->changes++;
                }
                w->leader = ev->leader_id;
                w->term = ev->term;
            }
            raftkv__response__free_unpacked(resp, NULL);
        }
    }
    if (r != -EAGAIN) {
        client_conn_close(&w->cc);
        w->broken = true;
    }
}

static bool watch_valid(const struct watch *w)
{
    return w->seen && !w->broken;
}

static double ms(uint64_t ns)
{
    return (double)ns / 1e6;
}

static void progress(struct bench *b, uint64_t now)
{
    double secs = (double)(now - b->prev_t) / 1e9;
    fprintf(stderr, "\r\033[K%6.1fs  %10" PRIu64 " ops  %9.0f ops/s  p50 %.2f ms  p99 %.2f ms  errors %" PRIu64,
            (double)(now - b->start) / 1e9, b->done, secs > 0 ? (double)(b->done - b->prev_done) / secs : 0.0,
            ms(hist_quantile(&b->all, 0.5)), ms(hist_quantile(&b->all, 0.99)), b->errors);
    b->prev_done = b->done;
    b->prev_t = now;
}

/* One phase (prefill or the measured run) over the open connections. */
static void run(struct bench *b, uint64_t limit, unsigned duration_ms, uint64_t drain_ns, bool show)
{
    size_t n = b->o->clients;
    struct pollfd *pfd = calloc(n + 1, sizeof(*pfd)); /* and the leader watch */
    if (!pfd)
        return;
    b->limit = limit;
    b->start = b->prev_t = b->last_progress = b->last_done = client_now_ns();
    b->stop_issue = b->start + (uint64_t)duration_ms * 1000000ull;
    for (size_t i = 0; i < n; i++)
        if (client_conn_is_open(&b->conns[i].cc))
            service(b, &b->conns[i], 0);
    uint64_t drain_until = 0;
    for (;;) {
        uint64_t now = client_now_ns(), inflight = 0;
        for (size_t i = 0; i < n; i++)
            inflight += b->conns[i].inflight;
        bool issuing = b->rhead < b->rtail || (limit ? b->issued < limit : now < b->stop_issue);
        if (b->live == 0 || (!issuing && inflight == 0))
            break;
        if (issuing)
            drain_until = 0; /* a retried prefill key issues again */
        else if (!drain_until)
            drain_until = now + drain_ns;
        if (drain_until && now > drain_until) {
            for (size_t i = 0; i < n; i++)
                for (unsigned j = 0; j < b->conns[i].inflight; j++)
                    fail(b, &b->conns[i].slots[j], FAIL_UNANSWERED, "");
            break;
        }
        for (size_t i = 0; i < n; i++) {
            struct bconn *bc = &b->conns[i];
            pfd[i].fd = client_conn_is_open(&bc->cc) ? bc->cc.fd : -1;
            pfd[i].events = (short)(POLLIN | (client_conn_want_write(&bc->cc) ? POLLOUT : 0));
            pfd[i].revents = 0;
        }
        pfd[n].fd = client_conn_is_open(&b->watch.cc) ? b->watch.cc.fd : -1;
        pfd[n].events = POLLIN;
        pfd[n].revents = 0;
        if (poll(pfd, n + 1, POLL_MS) < 0 && errno != EINTR)
            break;
        for (size_t i = 0; i < n; i++) {
            struct bconn *bc = &b->conns[i];
            bool open = client_conn_is_open(&bc->cc);
            if (pfd[i].revents && open)
                service(b, bc, pfd[i].revents);
            else if (open ? bc->inflight < b->o->pipeline : bc->move_to[0] != '\0')
                service(b, bc, 0); /* a duration run may have stopped issuing; reconnects */
        }
        if (pfd[n].revents)
            watch_read(&b->watch);
        now = client_now_ns();
        if (show && now - b->last_progress >= PROGRESS_NS) {
            progress(b, now);
            b->last_progress = now;
        }
    }
    if (show)
        fputs("\r\033[K", stderr);
    free(pfd);
}

static void reset_counts(struct bench *b)
{
    b->issued = b->done = b->ok = b->errors = b->misses = b->sets = b->gets = b->prev_done = 0;
    b->redirected = b->retried = b->reconnected = b->max_gap = 0;
    b->rhead = b->rtail = 0;
    memset(b->failed, 0, sizeof(b->failed));
    b->watch.changes = 0;
    b->watch.first_term = b->watch.term;
    b->first_err[0] = '\0';
    hist_init(&b->all);
    hist_init(&b->set_h);
    hist_init(&b->get_h);
}

/* Where the run goes: wherever a write lands after redirects (the leader,
 * or the proxy), found with one real write of the first key. */
static int find_target(struct ctl *ctl, const struct bench *b, char *target, size_t len)
{
    char err[CLIENT_ERRLEN], key[40];
    struct client *c = ctl_client(ctl);
    Raftkv__Response *resp = NULL;
    if (!c)
        return EXIT_USAGE;
    int klen = snprintf(key, sizeof(key), KEY_FMT, (uint64_t)0);
    int r = client_set(c, key, (size_t)klen, b->value, b->o->value_size, &resp, err, sizeof(err));
    if (r < 0 || resp->status != RAFTKV__STATUS__OK) {
        int code = ctl_report(ctl, "bench: first write", r, resp, err);
        client_response_free(resp);
        return code ? code : EXIT_ERROR;
    }
    client_response_free(resp);
    snprintf(target, len, "%s", client_endpoint(c));
    return 0;
}

static void json_hist(const char *name, const struct hist *h, uint64_t count, double secs)
{
    printf("\"%s\":{\"count\":%" PRIu64 ",\"ops_per_sec\":%.1f,\"latency_us\":{\"min\":%.1f,\"mean\":%.1f,"
           "\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f}}",
           name, count, secs > 0 ? (double)count / secs : 0.0, h->n ? (double)h->min / 1e3 : 0.0,
           hist_mean(h) / 1e3, (double)hist_quantile(h, 0.5) / 1e3, (double)hist_quantile(h, 0.9) / 1e3,
           (double)hist_quantile(h, 0.99) / 1e3, (double)hist_quantile(h, 0.999) / 1e3, (double)h->max / 1e3);
}

static void line_hist(const char *name, const struct hist *h, uint64_t count, double secs)
{
    printf("%-10s %8.0f ops/s  min %.2f  p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f ms\n", name,
           secs > 0 ? (double)count / secs : 0.0, h->n ? ms(h->min) : 0.0, ms(hist_quantile(h, 0.5)),
           ms(hist_quantile(h, 0.9)), ms(hist_quantile(h, 0.99)), ms(hist_quantile(h, 0.999)), ms(h->max));
}

static void report(struct ctl *ctl, const struct bench *b, const char *target, double secs)
{
    const struct bench_opts *o = b->o;
    switch (ctl_format(ctl, FMT_TABLE)) {
    case FMT_JSON:
        printf("{\"target\":");
        json_string(stdout, target);
        printf(",\"clients\":%" PRIu64 ",\"pipeline\":%" PRIu64 ",\"value_size\":%" PRIu64 ",\"keys\":%" PRIu64
               ",\"ratio\":\"%" PRIu64 ":%" PRIu64 "\",\"stale\":%s,\"seconds\":%.3f,\"requests\":%" PRIu64
               ",\"ok\":%" PRIu64 ",\"errors\":%" PRIu64 ",\"misses\":%" PRIu64 ",\"redirected\":%" PRIu64 ",",
               o->clients, o->pipeline, o->value_size, o->keys, o->set_w, o->get_w, o->stale ? "true" : "false",
               secs, b->done, b->ok, b->errors, b->misses, b->redirected);
        json_hist("all", &b->all, b->ok, secs);
        fputc(',', stdout);
        json_hist("set", &b->set_h, b->sets, secs);
        fputc(',', stdout);
        json_hist("get", &b->get_h, b->gets, secs);
        printf(",\"max_gap_us\":%.1f,\"prefill_retried\":%" PRIu64 ",\"reconnected\":%" PRIu64
               ",\"leader_changes\":", (double)b->max_gap / 1e3, b->prefill_retried, b->reconnected);
        if (watch_valid(&b->watch))
            printf("%" PRIu64, b->watch.changes);
        else
            fputs("null", stdout);
        fputs(",\"errors_by_status\":{", stdout);
        for (unsigned k = 0, first = 1; k < FAIL_KINDS; k++)
            if (b->failed[k]) {
                printf("%s", first ? "" : ",");
                json_string(stdout, fail_name(k));
                printf(":%" PRIu64, b->failed[k]);
                first = 0;
            }
        fputs("},\"first_error\":", stdout);
        json_string(stdout, b->first_err[0] ? b->first_err : NULL);
        fputs("}\n", stdout);
        break;
    case FMT_PLAIN:
        printf("ops_per_sec\t%.1f\nok\t%" PRIu64 "\nerrors\t%" PRIu64 "\nredirected\t%" PRIu64
               "\np50_us\t%.1f\np90_us\t%.1f\n"
               "p99_us\t%.1f\np999_us\t%.1f\nmax_us\t%.1f\nmax_gap_us\t%.1f\nleader_changes\t%" PRId64 "\n",
               secs > 0 ? (double)b->ok / secs : 0.0, b->ok, b->errors, b->redirected,
               (double)hist_quantile(&b->all, 0.5) / 1e3,
               (double)hist_quantile(&b->all, 0.9) / 1e3, (double)hist_quantile(&b->all, 0.99) / 1e3,
               (double)hist_quantile(&b->all, 0.999) / 1e3, (double)b->all.max / 1e3, (double)b->max_gap / 1e3,
               watch_valid(&b->watch) ? (int64_t)b->watch.changes : (int64_t)-1);
        break;
    default:
        printf("bench: %" PRIu64 " clients x pipeline %" PRIu64 ", %" PRIu64 "-byte values, %" PRIu64
               " keys, set:get %" PRIu64 ":%" PRIu64 ", %s reads, target %s\n",
               o->clients, o->pipeline, o->value_size, o->keys, o->set_w, o->get_w,
               o->stale ? "stale" : "linearizable", target);
        printf("%" PRIu64 " requests in %.2f s: %" PRIu64 " ok, %" PRIu64 " errors", b->done, secs, b->ok, b->errors);
        if (b->misses)
            printf(" (%" PRIu64 " gets found no key)", b->misses);
        if (b->redirected)
            printf("; %" PRIu64 " answered NOT_LEADER and were followed to the new leader",
                   b->redirected);
        putchar('\n');
        if (b->errors) {
            fputs("errors by status:", stdout);
            for (unsigned k = 0, first = 1; k < FAIL_KINDS; k++)
                if (b->failed[k]) {
                    printf("%s %s %" PRIu64, first ? "" : ",", fail_name(k), b->failed[k]);
                    first = 0;
                }
            putchar('\n');
        }
        if (watch_valid(&b->watch))
            printf("leader changes seen: %" PRIu64 " (term %" PRIu64 " -> %" PRIu64 ")", b->watch.changes,
                   b->watch.first_term, b->watch.term);
        else
            fputs("leader changes seen: unknown (no WATCH_LEADER stream)", stdout);
        printf("; longest gap between completions %.1f ms", ms(b->max_gap));
        if (b->reconnected)
            printf("; %" PRIu64 " connections reopened", b->reconnected);
        putchar('\n');
        line_hist("all", &b->all, b->ok, secs);
        if (b->sets && b->gets) {
            line_hist("set", &b->set_h, b->sets, secs);
            line_hist("get", &b->get_h, b->gets, secs);
        }
        if (b->first_err[0])
            printf("first error: %s\n", b->first_err);
        break;
    }
}

static int open_conns(struct bench *b, const char *target, unsigned timeout_ms)
{
    char err[CLIENT_ERRLEN];
    uint64_t seed = client_now_ns();
    for (uint64_t i = 0; i < b->o->clients; i++) {
        struct bconn *bc = &b->conns[i];
        client_conn_init(&bc->cc, 0);
        bc->cc.tls = b->tls;
        if (!(bc->slots = calloc(b->o->pipeline, sizeof(*bc->slots))))
            return ctl_fail(EXIT_ERROR, "bench: out of memory");
        if (getrandom(&bc->client_id, sizeof(bc->client_id), 0) != sizeof(bc->client_id) || !bc->client_id)
            bc->client_id = seed + i + 1;
        bc->rng = (seed ^ (i + 1) * 0x9e3779b97f4a7c15ull) | 1;
        int r = client_conn_open(&bc->cc, target, (int)timeout_ms, err, sizeof(err));
        if (r < 0)
            return ctl_fail(EXIT_UNAVAILABLE, "bench: client %" PRIu64 ": %s", i + 1, err);
        b->live++;
    }
    return 0;
}

int cmd_bench(struct ctl *ctl, int argc, char **argv)
{
    struct bench_opts o = {.clients = 16, .requests = 10000, .value_size = 100, .keys = 1000,
                           .set_w = 1, .get_w = 1, .pipeline = 1};
    int r = ctl_getopt(ctl, ctl_find_command("bench"), argc, argv, bench_long, "", bench_opt, &o);
    if (r)
        return r < 0 ? 0 : r;
    if (optind != argc)
        return ctl_usage_error("bench", "unexpected argument '%s'", argv[optind]);
    struct bench b = {.o = &o, .timeout_ms = ctl->o.timeout_ms};
    char target[ADDR_STRLEN];
    bool tty = isatty(STDERR_FILENO);
    b.conns = calloc(o.clients, sizeof(*b.conns));
    b.value = malloc(o.value_size ? o.value_size : 1);
    if (!b.conns || !b.value) {
        free(b.conns);
        free(b.value);
        return ctl_fail(EXIT_ERROR, "bench: out of memory");
    }
    for (uint64_t i = 0; i < o.value_size; i++)
        b.value[i] = (uint8_t)('a' + i % 26);
    int code = find_target(ctl, &b, target, sizeof(target));
    b.tls = ctl->tls; /* loaded by find_target's client */
    if (!code)
        code = open_conns(&b, target, ctl->o.timeout_ms);
    if (!code)
        watch_open(&b.watch, target, b.tls, ctl->o.timeout_ms);
    uint64_t drain_ns = (uint64_t)ctl->o.timeout_ms * 1000000ull;
    if (!code && o.get_w && !o.no_prefill) {
        if (tty)
            fprintf(stderr, "prefilling %" PRIu64 " keys...", o.keys);
        b.prefill = true;
        reset_counts(&b);
        run(&b, o.keys, 0, drain_ns, false);
        b.prefill = false;
        if (tty)
            fputs("\r\033[K", stderr);
        if (b.errors || b.live == 0)
            code = ctl_fail(EXIT_ERROR, "bench: prefill failed (%" PRIu64 " keys not written, %" PRIu64
                            " writes retried): %s", b.errors + (o.keys - b.issued), b.retried, b.first_err);
        else if (b.retried)
            fprintf(stderr, "bench: prefill: %" PRIu64 " writes sent again after a leader change\n", b.retried);
        b.prefill_retried = b.retried;
    }
    if (!code) {
        reset_counts(&b);
        run(&b, o.duration_ms ? 0 : o.requests, o.duration_ms, drain_ns, tty);
        double secs = (double)(client_now_ns() - b.start) / 1e9;
        report(ctl, &b, target, secs);
        if (b.ok == 0)
            code = ctl_fail(EXIT_UNAVAILABLE, "bench: no request succeeded: %s", b.first_err);
        else if (b.errors)
            code = ctl_fail(EXIT_ERROR, "bench: %" PRIu64 " requests failed; first: %s", b.errors, b.first_err);
    }
    for (uint64_t i = 0; i < o.clients; i++) {
        client_conn_close(&b.conns[i].cc);
        free(b.conns[i].slots);
    }
    client_conn_close(&b.watch.cc);
    free(b.conns);
    free(b.value);
    free(b.retry);
    return code;
}
