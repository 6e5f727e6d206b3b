/* client.h - a small blocking client for raftkv, for C programs, raftkvctl
 * and tests.  It talks to a proxy or to nodes directly:
 *
 *   - endpoints: "unix:/path", "/path" or "host:port", comma-separated; each
 *     is tried in turn until one connects;
 *   - a call has a deadline (client_opts.timeout_ms) that covers connecting,
 *     following NOT_LEADER hints to the leader (at most max_hops per call),
 *     and retrying UNAVAILABLE answers and broken connections with backoff;
 *   - writes carry a session (a random 64-bit client_id per client object and
 *     a sequence that grows by one per write); a retry reuses the sequence, so
 *     the node applies it at most once;
 *   - client_send/client_recv pipeline requests on the current connection
 *     without any of the above, matching responses by id.
 *
 * Every function that can fail returns a negative errno and writes one line
 * into err: -ECONNREFUSED/-EHOSTUNREACH/-ENOENT (no endpoint reachable),
 * -ETIMEDOUT (deadline passed without an answer), -ECONNRESET (connection
 * lost), -EPROTO (garbage from the server), -EINVAL (bad endpoint list),
 * -ENOMEM.  A call that got an answer returns 0 with the Response, whatever
 * its status (NOT_FOUND, CAS_FAILED ... and UNAVAILABLE once the deadline
 * has passed): the caller decides what a status means to it.
 */
#ifndef RAFTKV_CLIENT_CLIENT_H
#define RAFTKV_CLIENT_CLIENT_H

#include "client/conn.h"
#include "raftkv.pb-c.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CLIENT_ERRLEN 512
#define CLIENT_MAX_ENDPOINTS 32

struct client_opts {
    const char *endpoints;       /* required: comma-separated list */
    unsigned timeout_ms;         /* per call; 0 = 5000 */
    unsigned connect_timeout_ms; /* per connection attempt; 0 = min(1000, timeout) */
    unsigned max_hops;           /* NOT_LEADER redirects per call; 0 = 5 */
    size_t max_frame;            /* 0 = CLIENT_DEFAULT_MAX_FRAME */
    bool no_retry;               /* one attempt: no redirects, no retries */
    /* TLS on TCP endpoints (net_tls_new with the cluster CA and, to get a
     * role beyond [cluster] anonymous_role, a raftkv-client-ROLE
     * certificate); NULL = plaintext.  Not owned: it must outlive the
     * client. */
    struct net_tls *tls;
};

struct client;

int client_new(struct client **out, const struct client_opts *opts, char *err, size_t errlen);
void client_free(struct client *c);

void client_set_timeout(struct client *c, unsigned timeout_ms);
unsigned client_timeout(const struct client *c);

/* The endpoint of the open connection (a leader's address after a redirect),
 * or NULL when not connected. */
const char *client_endpoint(const struct client *c);

/* Connects now if not connected (calls do it themselves). */
int client_connect(struct client *c, char *err, size_t errlen);
void client_disconnect(struct client *c);

/* Pipelining: client_send assigns req->id when it is 0 and writes the
 * request; client_recv returns the response with that id (id 0: whichever
 * comes next), keeping others that arrive first for later calls.
 * timeout_ms < 0 waits forever.  No redirects, retries or sessions. */
int client_send(struct client *c, Raftkv__Request *req, char *err, size_t errlen);
int client_recv(struct client *c, uint64_t id, int timeout_ms, Raftkv__Response **resp,
                char *err, size_t errlen);

/* One request with deadline, redirects, retries and the write session.
 * SET, DEL and CAS get (client_id, sequence) unless req->client_id is set. */
int client_call(struct client *c, Raftkv__Request *req, Raftkv__Response **resp,
                char *err, size_t errlen);

void client_response_free(Raftkv__Response *resp);

/* Conveniences over client_call. */
int client_get(struct client *c, const void *key, size_t klen, bool stale,
               Raftkv__Response **resp, char *err, size_t errlen);
int client_set(struct client *c, const void *key, size_t klen, const void *val, size_t vlen,
               Raftkv__Response **resp, char *err, size_t errlen);
int client_del(struct client *c, const void *key, size_t klen,
               Raftkv__Response **resp, char *err, size_t errlen);
/* expected == NULL: expect the key to be absent. */
int client_cas(struct client *c, const void *key, size_t klen, const void *expected, size_t elen,
               const void *val, size_t vlen, Raftkv__Response **resp, char *err, size_t errlen);
/* One page of keys: start_after NULL for the first. */
int client_list(struct client *c, const void *prefix, size_t plen, const void *start_after,
                size_t salen, uint32_t limit, bool stale, Raftkv__Response **resp,
                char *err, size_t errlen);
int client_status(struct client *c, bool fanout, Raftkv__Response **resp, char *err, size_t errlen);
/* target 0: the most caught-up follower. */
/* METRICS (admin socket of a node): json or the Prometheus text. */
int client_metrics(struct client *c, bool json, Raftkv__Response **resp, char *err, size_t errlen);
int client_transfer_leader(struct client *c, uint64_t target, Raftkv__Response **resp,
                           char *err, size_t errlen);

/* Short name of a status ("NOT_FOUND"). */
const char *client_status_name(Raftkv__Status st);

#endif
