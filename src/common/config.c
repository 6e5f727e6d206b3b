/* config.c - the option table and everything it drives: INI parsing with
 * file:line errors, defaults, typed values with ranges, command-line
 * overrides, cross-option validation, the effective-config dump and the
 * generated reference.  Adding an option = one row here + one struct field. */
#include "common/config.h"

#include "common/addr.h"
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define FILE_MAX (1u << 20)
#define KIB UINT64_C(1024)
#define MIB (1024ull * KIB)
#define GIB (1024ull * MIB)
#define TIB (1024ull * GIB)

enum otype {
    T_NAME,      /* [A-Za-z0-9._-]+ */
    T_UINT,
    T_MS,
    T_SIZE,      /* integer with optional K/KiB/M/MiB/G/GiB/T/TiB suffix */
    T_LEVEL,
    T_TARGET,
    T_HOSTPORT,  /* dialable host:port: no wildcard, port 1..65535 */
    T_LISTEN,    /* bindable host:port: wildcard allowed */
    T_SOCKPATH,  /* absolute path that fits in sun_path */
    T_PATH,
    T_HEXID,     /* 128-bit id as 32 hex digits */
    T_BOOL,      /* true/false, yes/no, on/off, 1/0; stored as int */
    T_ROLE,      /* none, read, write, admin; stored as int */
};

enum osect { S_CLUSTER, S_PROXY, S_NODE };

#define F_EMPTY_OK 1u /* "" is a valid value (means: disabled) */

struct opt {
    struct config_option_info info;
    enum osect sect;
    enum otype type;
    unsigned flags;
    size_t off; /* into struct config, or struct config_node for S_NODE */
};

static const char *const type_names[] = {
    [T_NAME] = "name", [T_UINT] = "integer", [T_MS] = "milliseconds",
    [T_SIZE] = "size", [T_LEVEL] = "level", [T_TARGET] = "target",
    [T_HOSTPORT] = "host:port", [T_LISTEN] = "host:port",
    [T_SOCKPATH] = "path", [T_PATH] = "path", [T_HEXID] = "hex id",
    [T_BOOL] = "boolean", [T_ROLE] = "role",
};

static const char *const role_names[] = {"none", "read", "write", "admin"};

int config_role_parse(const char *s, size_t len)
{
    for (size_t i = 0; i < sizeof(role_names) / sizeof(role_names[0]); i++)
        if (strlen(role_names[i]) == len && memcmp(s, role_names[i], len) == 0)
            return (int)i;
    return -EINVAL;
}

const char *config_role_name(int role)
{
    return role >= 0 && role < (int)(sizeof(role_names) / sizeof(role_names[0])) ? role_names[role] : "?";
}

/* 1, 0 or -EINVAL. */
static int parse_bool(const char *s)
{
    static const char *const yes[] = {"true", "yes", "on", "1"}, *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (!strcasecmp(s, yes[i]))
            return 1;
        if (!strcasecmp(s, no[i]))
            return 0;
    }
    return -EINVAL;
}

/* Types whose value is an int in struct config rather than a string. */
static bool int_type(enum otype t)
{
    return t == T_LEVEL || t == T_TARGET || t == T_BOOL || t == T_ROLE;
}

#define ROW(sect_, secname, key, type, flags, off, def, min, max, doc) \
    { { secname, key, NULL, def, min, max, doc }, sect_, type, flags, off }
#define C(key, type, field, def, min, max, doc) \
    ROW(S_CLUSTER, "cluster", key, type, 0, offsetof(struct config, cluster.field), def, min, max, doc)
#define P(key, type, flags, field, def, min, max, doc) \
    ROW(S_PROXY, "proxy", key, type, flags, offsetof(struct config, proxy.field), def, min, max, doc)
#define N(key, type, field, def, doc) \
    ROW(S_NODE, "node.N", key, type, 0, offsetof(struct config_node, field), def, 0, 0, doc)

static const struct opt options[] = {
    C("name", T_NAME, name, "raftkv", 0, 0,
      "Cluster id, carried in every peer message: a node refuses messages from "
      "another cluster, so two clusters on one network never mix."),
    ROW(S_CLUSTER, "cluster", "id", T_HEXID, F_EMPTY_OK, offsetof(struct config, cluster.id), "", 0, 0,
        "The cluster's identity: 32 hex digits (128 random bits), carried in every peer "
        "message and kept in every node's data directory; a message with another id is "
        "refused even when the names match. 'raftkvctl config generate' writes a random "
        "one. Empty: derived from name and the [node.N] peer addresses, which two "
        "hand-written files with equal names and addresses share, and which changes when "
        "the [node.N] list does (a node then keeps the id its data directory recorded, "
        "but a new node derives another): set it before adding a node. A node whose data "
        "directory belongs to another id refuses to start."),
    C("tick_ms", T_MS, tick_ms, "10", 1, 1000,
      "The Raft clock. Heartbeat and election timeouts are counted in ticks "
      "and must be multiples of it."),
    C("heartbeat_interval_ms", T_MS, heartbeat_interval_ms, "20", 1, 10000,
      "How often a leader contacts idle followers. Must be below "
      "election_timeout_ms; a third of it or less survives a lost heartbeat."),
    C("election_timeout_ms", T_MS, election_timeout_ms, "150", 10, 60000,
      "Silence from the leader after which a follower starts an election; each "
      "node draws its timeout at random from [t, 2t). Sets the failover time: "
      "with the defaults a dead leader is replaced in about 150-300 ms on a LAN."),
    ROW(S_CLUSTER, "cluster", "lease_reads", T_BOOL, 0, offsetof(struct config, cluster.lease_reads), "false", 0, 0,
        "Leader-lease reads (Raft thesis 6.4.1): a leader that a majority "
        "acknowledged within election_timeout_ms - tick_ms - lease_clock_margin_ms, "
        "counted from when it sent those heartbeats, answers linearizable reads "
        "(its own clients' and those its followers forward) without a heartbeat "
        "round. Off by default, because it trades a network round for a clock "
        "assumption: no node's clock runs faster than the leader's by more than "
        "lease_clock_margin_ms over one election timeout, and the leader's host "
        "is never frozen (a paused VM, a stopped process, a swap or suspend stall) "
        "between reading its clock and answering. The node counts its ticks from "
        "CLOCK_BOOTTIME, so a stall it can see is made up before a read, but one "
        "it cannot see is not. Not used while a leadership transfer is under way, "
        "nor for the rest of a term in which the leader told a transfer target to "
        "campaign. Set it the same on "
        "every node: a node with it on also refuses votes for one election "
        "timeout after it starts."),
    C("lease_clock_margin_ms", T_MS, lease_clock_margin_ms, "30", 0, 60000,
      "With lease_reads: the part of the election timeout the lease leaves for "
      "clock drift between nodes (rounded up to whole ticks). The lease lasts "
      "election_timeout_ms - tick_ms - this, and must last longer than "
      "heartbeat_interval_ms."),
    C("max_frame_bytes", T_SIZE, max_frame_bytes, "4MiB", KIB, GIB,
      "Largest message (one frame) accepted or sent on any socket. A longer "
      "length prefix is a protocol error that closes only that connection. "
      "Must hold the largest key plus the largest value."),
    C("max_key_bytes", T_SIZE, max_key_bytes, "4KiB", 1, MIB,
      "Longest key a write may carry; longer ones are refused with TOO_LARGE."),
    C("max_value_bytes", T_SIZE, max_value_bytes, "1MiB", 1, 256 * MIB,
      "Longest value a write may carry; longer ones are refused with TOO_LARGE."),
    C("max_connections", T_UINT, max_connections, "1024", 1, 1000000,
      "Connections open at once on each listening socket. At the limit, or when "
      "the process is out of file descriptors, the connection idle longest (for "
      "over a second, nothing buffered) is closed to admit a new one; only when "
      "none is idle is the new one accepted and closed at once."),
    C("max_pending_output_bytes", T_SIZE, max_pending_output_bytes, "8MiB", 64 * KIB, 4 * GIB,
      "Output queued on one connection that the other side has not read yet. "
      "On a node's client and admin sockets (where the proxy's shared links "
      "arrive) it is a high-water mark: the node reads no more requests from "
      "that connection until half of it has drained, and answers to requests "
      "already read still queue, so a batch of large answers never costs the "
      "link; a reader that takes no byte for 5 s while over the mark is "
      "disconnected. Elsewhere (peer links, the "
      "proxy's sockets) a reader that falls this far behind is disconnected "
      "at once instead of growing the daemon's memory. Must be at least "
      "max_frame_bytes."),
    C("frame_timeout_ms", T_MS, frame_timeout_ms, "10000", 0, 3600000,
      "A message whose first bytes arrived must be complete within this long "
      "(the clock restarts whenever a message completes), else the connection "
      "is closed: a client that sends half a request and then nothing, or a "
      "byte at a time, cannot hold a buffer and a connection slot forever. "
      "Applies to every socket of nodes and proxy. 0 = no limit."),
    C("request_timeout_ms", T_MS, request_timeout_ms, "5000", 10, 3600000,
      "How long a node or the proxy works on one client request before "
      "answering TIMEOUT."),
    C("connect_timeout_ms", T_MS, connect_timeout_ms, "1000", 10, 600000,
      "Outgoing connections (node to node, proxy to node) still not "
      "established after this long are abandoned and retried."),
    C("reconnect_min_ms", T_MS, reconnect_min_ms, "10", 1, 60000,
      "First retry delay after an outgoing connection fails or drops; it "
      "doubles, with random jitter, on each further failure."),
    C("reconnect_max_ms", T_MS, reconnect_max_ms, "1000", 1, 600000,
      "Ceiling of the retry delay."),
    C("snapshot_entries", T_UINT, snapshot_entries, "100000", 0, UINT32_MAX,
      "Take a snapshot once this many entries were applied since the last "
      "one; 0 = never by count.  Node N scales this and the two settings "
      "below by 1, 1.25, 1.5 or 1.75 ((N-1) mod 4 quarters over 1), so the "
      "replicas of one log do not all snapshot at the same entry."),
    C("snapshot_bytes", T_SIZE, snapshot_bytes, "64MiB", 0, TIB,
      "Take a snapshot once the log since the last one holds this many bytes; "
      "0 = never by size."),
    C("snapshot_min_log_percent", T_UINT, snapshot_min_log_percent, "25", 0, 1000,
      "But no snapshot before the log since the last one holds this percentage "
      "of the dataset's bytes: a snapshot rewrites the whole dataset, so at "
      "10 M keys (1.1 GB) one every snapshot_entries entries would write a "
      "gigabyte every few seconds under load.  Like Redis's "
      "auto-aof-rewrite-percentage.  0 = no such floor."),
    C("snapshot_send_rate", T_SIZE, snapshot_send_rate, "0", 0, TIB,
      "Bytes per second a leader sends to each follower that needs a "
      "snapshot (one that fell behind the log, or a new member), so a large "
      "transfer leaves the disk and link room for the writes beside it.  "
      "Snapshots always travel in 1 MiB chunks with at most 4 queued per "
      "follower, never whole in memory.  0 = as fast as the link takes them."),
    C("session_ttl_ms", T_MS, session_ttl_ms, "600000", 1000, 30ull * 86400 * 1000,
      "A client session (the record that makes a retried write apply once) "
      "idle this long in log time is dropped, at the same point on every node."),
    C("max_sessions", T_UINT, max_sessions, "100000", 1, 100000000,
      "Client sessions kept; a new one beyond this evicts the least recently "
      "used."),
    C("max_data_bytes", T_SIZE, max_data_bytes, "2GiB", 0, 64 * TIB,
      "The dataset's quota: bytes of keys plus values.  A SET or CAS that "
      "would grow the dataset past it is refused with NO_SPACE (and "
      "raftkvctl exits 7); deletes and writes that shrink or keep the size "
      "still work, so space can always be freed.  The leader writes the value "
      "into the log, so every node enforces the same limit at the same point "
      "(give every node the same value: a new leader writes its own).  The "
      "default, like etcd's, keeps a node's memory (about 2-3 times the "
      "dataset, more while a snapshot is written under heavy writes) within "
      "a small machine.  0 = no limit."),
    C("slow_request_ms", T_MS, slow_request_ms, "1000", 0, 3600000,
      "A client request a node works on longer than this is logged once (journal "
      "event slow_request, with its op, key, how long each stage took and the "
      "node's state), at most one line a second; raftkv_slow_requests_total "
      "counts them all.  0 = never."),
    C("loop_lag_warn_ms", T_MS, loop_lag_warn_ms, "50", 1, 60000,
      "One event-loop iteration of a node longer than this is logged (journal "
      "event loop_lag: how long the loop thread ran, waited for a CPU and "
      "slept in the kernel meanwhile), at most one line a minute unless it is "
      "1.25 times the last one logged.  Past the heartbeat interval an iteration "
      "delays heartbeats; past the election timeout it can cost the leader "
      "its leadership.  Lower it to see what shorter stalls are made of.  "
      "Like etcd's --warning-apply-duration."),
    C("log_level", T_LEVEL, log_level, "info", 0, 0,
      "error, warn, notice, info or debug."),
    C("log_target", T_TARGET, log_target, "auto", 0, 0,
      "auto (journald when stderr is connected to the journal, else stderr), "
      "stderr, or journal."),
    C("data_dir_base", T_PATH, data_dir_base, "/var/lib/raftkv", 0, 0,
      "Parent of the per-node data directories that are not set explicitly."),
    ROW(S_CLUSTER, "cluster", "tls_ca", T_PATH, F_EMPTY_OK, offsetof(struct config, cluster.tls_ca), "", 0, 0,
        "PEM file of the certificate authority that issues every raftkv certificate. "
        "Set: every TCP socket runs TLS 1.3. Peer links (node to node) are mutual: each "
        "node presents its [node.N] tls_cert, which must name it \"raftkv-node-N\" "
        "(subjectAltName DNS, or the CN when there is none), and a message whose sender "
        "differs from the node its link's certificate names is dropped. Client ports of "
        "nodes and proxy present the node's (the proxy's) certificate; a client "
        "certificate is optional and gives its role (\"raftkv-client-ROLE[-LABEL]\", "
        "ROLE = read, write or admin); the proxy dials the nodes with [proxy] tls_cert. "
        "Files are read again on SIGHUP (systemctl reload): new connections use them, "
        "established ones stay. 'raftkvctl config generate --tls' makes the CA and the "
        "certificates. Empty: plaintext, allowed only on loopback addresses unless "
        "insecure is set."),
    ROW(S_CLUSTER, "cluster", "tls_crl", T_PATH, F_EMPTY_OK, offsetof(struct config, cluster.tls_crl), "", 0, 0,
        "PEM file of certificate revocation lists (CRLs) of the CA(s) in tls_ca, e.g. "
        "the crl.pem that 'raftkvctl certs revoke NAME' writes. Set: nodes and proxy "
        "refuse, at the TLS handshake, a peer, proxy or client whose certificate its "
        "issuer's CRL lists; a CA with no CRL in the file revokes nothing. Every CRL "
        "must be signed by a CA of tls_ca and not past its nextUpdate, or the file is "
        "refused (at start: the daemon exits; on reload: the old one stays). Read "
        "again on SIGHUP with the certificates, and then established connections "
        "whose certificate it now revokes are closed (a peer link too: the node "
        "cannot dial back in). Needs tls_ca. Empty (the default): no revocation "
        "checks."),
    ROW(S_CLUSTER, "cluster", "insecure", T_BOOL, 0, offsetof(struct config, cluster.insecure), "false", 0, 0,
        "true: no authentication at all. Nodes and proxy accept plaintext on any "
        "address, every client has every right (admin included), and anyone who can "
        "reach a peer port can speak for any member (only terms near 2^64 and "
        "non-members are still refused). For networks where every host and user is "
        "trusted, and for tests. The start-up log, systemd's STATUS= and raftkvctl "
        "status say INSECURE. false (the default): without tls_ca, nodes and proxy "
        "refuse to serve a non-loopback TCP address."),
    ROW(S_CLUSTER, "cluster", "anonymous_role", T_ROLE, 0, offsetof(struct config, cluster.anonymous_role),
        "write", 0, 0,
        "Role of a client that shows no certificate: a TLS client without one, a "
        "plaintext TCP client on loopback, or a user outside the daemon's group on a "
        "unix socket. none, read (GET, LIST, STATUS, WATCH_LEADER), write (also SET, "
        "DEL, CAS) or admin (also TRANSFER_LEADER, MEMBER_CHANGE, METRICS). Root, the "
        "daemon's user and its group are admin on the unix sockets (SO_PEERCRED). "
        "The default keeps reads and writes open as before TLS; 'raftkvctl config "
        "generate --tls' writes read, so that writing takes a certificate."),

    P("listen", T_LISTEN, F_EMPTY_OK, listen, "127.0.0.1:7000", 0, 0,
      "TCP address the proxy serves clients on; empty = no TCP."),
    P("unix", T_SOCKPATH, F_EMPTY_OK, unix_path, "/run/raftkv/proxy.sock", 0, 0,
      "Unix socket the proxy serves clients on; empty = none."),
    P("queue_max", T_UINT, 0, queue_max, "10000", 0, 1000000,
      "Writes held while no leader is known; beyond it a write gets "
      "UNAVAILABLE at once."),
    P("queue_wait_ms", T_MS, 0, queue_wait_ms, "3000", 10, 600000,
      "Longest a held write waits for a leader before UNAVAILABLE. At least "
      "twice election_timeout_ms, so one election fits."),
    P("max_lag_entries", T_UINT, 0, max_lag_entries, "1000", 0, UINT32_MAX,
      "A follower this many entries behind the leader gets no reads."),
    P("poll_interval_ms", T_MS, 0, poll_interval_ms, "1000", 10, 600000,
      "STATUS poll of every node, the safety net behind pushed leader changes."),
    P("down_after_ms", T_MS, 0, down_after_ms, "500", 10, 600000,
      "A node that leaves a request unanswered this long is marked down and "
      "gets no requests until it answers again."),
    P("threads", T_UINT, 0, threads, "0", 0, CONFIG_PROXY_MAX_THREADS,
      "Event-loop threads of the proxy, each serving its share of the "
      "clients over its own links to the nodes. 0 (the default) = the number "
      "of CPUs, at most 8."),
    P("tls_cert", T_PATH, 0, tls_cert, "/etc/raftkv/tls/proxy.crt", 0, 0,
      "PEM certificate (chain) of the proxy when [cluster] tls_ca is set: presented to "
      "clients on its TCP port and to the nodes it dials. Issued by that CA for "
      "\"raftkv-proxy\", which the nodes grant admin: the proxy checks its own "
      "clients' rights and is the authority for them."),
    P("tls_key", T_PATH, 0, tls_key, "/etc/raftkv/tls/proxy.key", 0, 0,
      "PEM private key of tls_cert."),
    P("metrics", T_LISTEN, F_EMPTY_OK, metrics, "", 0, 0,
      "HTTP address (host:port) of the proxy's Prometheus metrics and health checks "
      "(/metrics, /healthz, /readyz).  Empty (the default) = off; see [node.N] metrics."),

    N("peer", T_HOSTPORT, peer, NULL,
      "Address of this node's Raft traffic: other nodes connect to it, and the "
      "node listens on it unless systemd passes a socket named \"peer\"."),
    N("client", T_HOSTPORT, client, NULL,
      "Address for clients and the proxy (socket name \"client\")."),
    N("admin", T_SOCKPATH, admin, "/run/raftkv/node-{id}.sock",
      "Unix socket for raftkvctl on the same host (socket name \"admin\")."),
    N("data_dir", T_PATH, data_dir, "{data_dir_base}/{id}",
      "Where the node keeps its log, term/vote and snapshots."),
    N("tls_cert", T_PATH, tls_cert, "/etc/raftkv/tls/node-{id}.crt",
      "PEM certificate (chain) this node presents on peer links when "
      "[cluster] tls_ca is set; issued by that CA for \"raftkv-node-{id}\"."),
    N("tls_key", T_PATH, tls_key, "/etc/raftkv/tls/node-{id}.key",
      "PEM private key of tls_cert. Keep it readable by the raftkv user only."),
    ROW(S_NODE, "node.N", "metrics", T_LISTEN, F_EMPTY_OK, offsetof(struct config_node, metrics), "",
        0, 0,
        "HTTP address (host:port) of the node's Prometheus metrics (/metrics) and health "
        "checks (/healthz, /readyz), served by a thread of its own.  Empty (the default) = "
        "off: the endpoint is unauthenticated, so it is only opened where it is asked for; "
        "use a loopback address such as 127.0.0.1:9101 unless the network is trusted."),
};

#define N_OPTIONS (sizeof(options) / sizeof(options[0]))

_Static_assert(N_OPTIONS <= CONFIG_MAX_OPTIONS, "grow CONFIG_MAX_OPTIONS");
/* [node.N] rows come last: a node's origin[] is indexed from the first. */

static const char *const sect_names[] = { "cluster", "proxy", "node" };

/* ---- errors ------------------------------------------------------------- */

struct errctx {
    const struct config *cfg;
    const char *name; /* file name for line numbers */
    char *buf;
    size_t len;
};

static int fail(const struct errctx *e, uint32_t line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(const struct errctx *e, uint32_t line, const char *fmt, ...)
{
    va_list ap;
    int n = 0;

    if (!e->buf || e->len == 0)
        return -EINVAL;
    if (line == CONFIG_ORIGIN_CMDLINE)
        n = snprintf(e->buf, e->len, "command line: ");
    else if (line)
        n = snprintf(e->buf, e->len, "%s:%" PRIu32 ": ", e->name, line);
    else
        n = snprintf(e->buf, e->len, "%s: ", e->name);
    if (n < 0 || (size_t)n >= e->len)
        return -EINVAL;
    va_start(ap, fmt);
    vsnprintf(e->buf + n, e->len - (size_t)n, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

/* ---- rows and fields ---------------------------------------------------- */

static size_t first_node_row(void)
{
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (options[i].sect == S_NODE)
            return i;
    return N_OPTIONS;
}

/* Like strchr, these hand back non-const pointers into const arguments so
 * that the setters and config_dump() share them. */
static void *field_of(const struct config *cfg, const struct config_node *node, const struct opt *o)
{
    return (char *)(o->sect == S_NODE ? (const void *)node : (const void *)cfg) + o->off;
}

static uint32_t *origin_of(const struct config *cfg, const struct config_node *node, size_t row)
{
    return (uint32_t *)(options[row].sect == S_NODE ? &node->origin[row - first_node_row()]
                                                    : &cfg->origin[row]);
}

static const struct opt *find_row(enum osect sect, const char *key, size_t *row)
{
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (options[i].sect == sect && strcmp(options[i].info.key, key) == 0) {
            *row = i;
            return &options[i];
        }
    return NULL;
}

/* Levenshtein distance capped by the short strings we compare. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), prev[64], cur[64];

    if (la >= 64 || lb >= 64)
        return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, (lb + 1) * sizeof(size_t));
    }
    return prev[lb];
}

static const char *suggest(enum osect sect, const char *key)
{
    const char *best = NULL;
    size_t bestd = 3; /* only near misses: a typo, not a different word */

    for (size_t i = 0; i < N_OPTIONS; i++) {
        if (options[i].sect != sect)
            continue;
        size_t d = edit_distance(key, options[i].info.key);
        if (d < bestd) {
            bestd = d;
            best = options[i].info.key;
        }
    }
    return best;
}

/* ---- value parsing ------------------------------------------------------ */

static int parse_u64(const char *s, uint64_t *v, const char **end)
{
    uint64_t x = 0;

    if (*s < '0' || *s > '9')
        return -EINVAL;
    for (; *s >= '0' && *s <= '9'; s++) {
        if (x > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
            return -ERANGE;
        x = x * 10 + (uint64_t)(*s - '0');
    }
    *v = x;
    *end = s;
    return 0;
}

static int parse_size(const char *s, uint64_t *v)
{
    static const struct { const char *suffix; uint64_t mult; } units[] = {
        { "", 1 }, { "k", KIB }, { "kib", KIB }, { "m", MIB }, { "mib", MIB },
        { "g", GIB }, { "gib", GIB }, { "t", TIB }, { "tib", TIB },
    };
    const char *end;
    int r = parse_u64(s, v, &end);

    if (r < 0)
        return r;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (strcasecmp(end, units[i].suffix) == 0) {
            if (*v > UINT64_MAX / units[i].mult)
                return -ERANGE;
            *v *= units[i].mult;
            return 0;
        }
    return -EINVAL;
}

static void format_size(uint64_t v, char *buf, size_t len)
{
    static const struct { const char *suffix; uint64_t mult; } units[] = {
        { "TiB", TIB }, { "GiB", GIB }, { "MiB", MIB }, { "KiB", KIB },
    };
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (v && v % units[i].mult == 0) {
            snprintf(buf, len, "%" PRIu64 "%s", v / units[i].mult, units[i].suffix);
            return;
        }
    snprintf(buf, len, "%" PRIu64, v);
}

static bool is_wildcard(const char *s)
{
    static const struct in6_addr any6 = IN6ADDR_ANY_INIT;
    struct addr a;

    if (addr_parse(s, &a) < 0)
        return false;
    if (addr_family(&a) == AF_INET)
        return ((const struct sockaddr_in *)&a.ss)->sin_addr.s_addr == htonl(INADDR_ANY);
    return memcmp(&((const struct sockaddr_in6 *)&a.ss)->sin6_addr, &any6, sizeof(any6)) == 0;
}

/* Checks the text of a value; on error writes why (without the location). */
static int check_value(const struct opt *o, const char *val, char *why, size_t whylen)
{
    char host[256];
    uint16_t port;
    uint64_t n;
    int r;

    if (*val == '\0') {
        if (o->flags & F_EMPTY_OK)
            return 0;
        snprintf(why, whylen, "empty value");
        return -EINVAL;
    }
    switch (o->type) {
    case T_NAME:
        if (strspn(val, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") != strlen(val) ||
            strlen(val) > 64) {
            snprintf(why, whylen, "'%s' is not a name (letters, digits, '.', '_', '-'; at most 64)", val);
            return -EINVAL;
        }
        return 0;
    case T_UINT:
    case T_MS:
    case T_SIZE: {
        const char *end = "";
        r = o->type == T_SIZE ? parse_size(val, &n) : parse_u64(val, &n, &end);
        if (r == 0 && *end != '\0')
            r = -EINVAL;
        if (r == -ERANGE || (r == 0 && (n < o->info.min || n > o->info.max))) {
            snprintf(why, whylen, "%s is out of range %" PRIu64 "..%" PRIu64, val, o->info.min, o->info.max);
            return -EINVAL;
        }
        if (r < 0) {
            snprintf(why, whylen, "'%s' is not %s", val,
                     o->type == T_SIZE ? "a size (e.g. 4096, 64KiB, 4MiB)" : "a non-negative integer");
            return -EINVAL;
        }
        return 0;
    }
    case T_LEVEL:
        if (log_level_parse(val) < 0) {
            snprintf(why, whylen, "'%s' is not a log level (error, warn, notice, info, debug)", val);
            return -EINVAL;
        }
        return 0;
    case T_TARGET:
        if (log_target_parse(val) < 0) {
            snprintf(why, whylen, "'%s' is not a log target (auto, stderr, journal)", val);
            return -EINVAL;
        }
        return 0;
    case T_HOSTPORT:
    case T_LISTEN:
        r = addr_split(val, host, sizeof(host), &port);
        if (r < 0 || port == 0 || (o->type == T_HOSTPORT && (host[0] == '\0' || !strcmp(host, "*")))) {
            snprintf(why, whylen, "'%s' is not host:port (e.g. 10.0.0.1:7100, [::1]:7100, db1:7100)", val);
            return -EINVAL;
        }
        if (o->type == T_HOSTPORT && is_wildcard(val)) {
            snprintf(why, whylen, "'%s' is a wildcard; others need an address to connect to", val);
            return -EINVAL;
        }
        return 0;
    case T_SOCKPATH:
        if (val[0] != '/' || strlen(val) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
            snprintf(why, whylen, "'%s' is not an absolute path shorter than %zu bytes", val,
                     sizeof(((struct sockaddr_un *)0)->sun_path));
            return -EINVAL;
        }
        return 0;
    case T_PATH:
        return 0;
    case T_HEXID:
        if (strlen(val) != 32 || strspn(val, "0123456789abcdefABCDEF") != 32) {
            snprintf(why, whylen, "'%s' is not 32 hex digits", val);
            return -EINVAL;
        }
        return 0;
    case T_BOOL:
        if (parse_bool(val) < 0) {
            snprintf(why, whylen, "'%s' is not true or false", val);
            return -EINVAL;
        }
        return 0;
    case T_ROLE:
        if (config_role_parse(val, strlen(val)) < 0) {
            snprintf(why, whylen, "'%s' is not a role (none, read, write, admin)", val);
            return -EINVAL;
        }
        return 0;
    }
    return -EINVAL;
}

/* Stores an already checked value. */
static int store_value(const struct opt *o, void *field, const char *val)
{
    const char *end;

    switch (o->type) {
    case T_UINT:
    case T_MS:
        return parse_u64(val, field, &end);
    case T_SIZE:
        return parse_size(val, field);
    case T_LEVEL:
        *(int *)field = log_level_parse(val);
        return 0;
    case T_TARGET:
        *(int *)field = log_target_parse(val);
        return 0;
    case T_BOOL:
        *(int *)field = parse_bool(val);
        return 0;
    case T_ROLE:
        *(int *)field = config_role_parse(val, strlen(val));
        return 0;
    default: {
        char *copy = strdup(val);
        if (!copy)
            return -ENOMEM;
        free(*(char **)field);
        *(char **)field = copy;
        return 0;
    }
    }
}

static void format_value(const struct opt *o, const void *field, char *buf, size_t len)
{
    switch (o->type) {
    case T_UINT:
    case T_MS:
        snprintf(buf, len, "%" PRIu64, *(const uint64_t *)field);
        break;
    case T_SIZE:
        format_size(*(const uint64_t *)field, buf, len);
        break;
    case T_LEVEL:
        snprintf(buf, len, "%s", log_level_name(*(const int *)field));
        break;
    case T_TARGET:
        snprintf(buf, len, "%s", log_target_name(*(const int *)field));
        break;
    case T_BOOL:
        snprintf(buf, len, "%s", *(const int *)field ? "true" : "false");
        break;
    case T_ROLE:
        snprintf(buf, len, "%s", config_role_name(*(const int *)field));
        break;
    default: {
        const char *s = *(char *const *)field;
        snprintf(buf, len, "%s", s ? s : "");
    }
    }
}

/* Check, store and record where the value came from. */
static int set_row(const struct errctx *e, struct config *cfg, struct config_node *node,
                   size_t row, const char *val, uint32_t origin)
{
    const struct opt *o = &options[row];
    char why[512];
    int r;

    if (check_value(o, val, why, sizeof(why)) < 0)
        return fail(e, origin, "%s: %s", o->info.key, why);
    r = store_value(o, field_of(cfg, node, o), val);
    if (r < 0)
        return r == -ENOMEM ? -ENOMEM : fail(e, origin, "%s: bad value '%s'", o->info.key, val);
    *origin_of(cfg, node, row) = origin;
    return 0;
}

/* ---- nodes -------------------------------------------------------------- */

static struct config_node *add_node(struct config *cfg, uint32_t id)
{
    struct config_node *n = realloc(cfg->nodes, (cfg->n_nodes + 1) * sizeof(*n));

    if (!n)
        return NULL;
    cfg->nodes = n;
    n = &cfg->nodes[cfg->n_nodes++];
    memset(n, 0, sizeof(*n));
    n->id = id;
    return n;
}

const struct config_node *config_node_find(const struct config *cfg, uint32_t id)
{
    for (size_t i = 0; i < cfg->n_nodes; i++)
        if (cfg->nodes[i].id == id)
            return &cfg->nodes[i];
    return NULL;
}

/* "12" -> 12 for node ids: decimal, no sign, no leading zero, in range. */
static int parse_node_id(const char *s, size_t len, uint32_t *id)
{
    uint64_t v = 0;

    if (len == 0 || len > 5 || s[0] == '0')
        return -EINVAL;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v < 1 || v > CONFIG_MAX_NODE_ID)
        return -EINVAL;
    *id = (uint32_t)v;
    return 0;
}

/* ---- init / free -------------------------------------------------------- */

int config_init(struct config *cfg)
{
    struct errctx e = { cfg, "defaults", NULL, 0 };

    memset(cfg, 0, sizeof(*cfg));
    if (N_OPTIONS - first_node_row() > CONFIG_MAX_NODE_OPTIONS)
        return -E2BIG; /* grow CONFIG_MAX_NODE_OPTIONS */
    for (size_t i = 0; i < N_OPTIONS; i++) {
        if (options[i].sect == S_NODE)
            continue;
        int r = set_row(&e, cfg, NULL, i, options[i].info.def, 0);
        if (r < 0) {
            config_free(cfg);
            return r;
        }
    }
    return 0;
}

static void free_strings(void *base, enum osect sect)
{
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const struct opt *o = &options[i];
        if (o->sect != sect || o->type == T_UINT || o->type == T_MS || o->type == T_SIZE ||
            int_type(o->type))
            continue;
        char **p = (char **)((char *)base + o->off);
        free(*p);
        *p = NULL;
    }
}

void config_free(struct config *cfg)
{
    free_strings(cfg, S_CLUSTER);
    free_strings(cfg, S_PROXY);
    for (size_t i = 0; i < cfg->n_nodes; i++)
        free_strings(&cfg->nodes[i], S_NODE);
    free(cfg->nodes);
    free(cfg->path);
    memset(cfg, 0, sizeof(*cfg));
}

/* ---- the INI parser ----------------------------------------------------- */

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
    return s;
}

/* value text after '=': drops an inline "# ..." / "; ..." comment (preceded
 * by whitespace) and one pair of surrounding double quotes. */
static int clean_value(char *v, char **out)
{
    v = trim(v);
    if (*v == '"') {
        char *close = strchr(v + 1, '"');
        if (!close)
            return -EINVAL;
        char *rest = trim(close + 1);
        if (*rest && *rest != '#' && *rest != ';')
            return -EINVAL;
        *close = '\0';
        *out = v + 1;
        return 0;
    }
    for (char *p = v; *p; p++)
        if ((*p == '#' || *p == ';') && p > v && (p[-1] == ' ' || p[-1] == '\t')) {
            *p = '\0';
            break;
        }
    *out = trim(v);
    return 0;
}

struct section {
    enum osect sect;
    struct config_node *node; /* S_NODE */
    bool set;
};

static int parse_header(const struct errctx *e, struct config *cfg, char *line,
                        uint32_t lineno, struct section *cur)
{
    size_t len = strlen(line);
    char *name;

    if (line[len - 1] != ']')
        return fail(e, lineno, "section header without closing ']'");
    line[len - 1] = '\0';
    name = trim(line + 1);
    if (strcmp(name, "cluster") == 0 || strcmp(name, "proxy") == 0) {
        *cur = (struct section){ name[0] == 'c' ? S_CLUSTER : S_PROXY, NULL, true };
        return 0;
    }
    if (strncmp(name, "node.", 5) == 0) {
        uint32_t id;
        if (parse_node_id(name + 5, strlen(name + 5), &id) < 0)
            return fail(e, lineno, "bad node id in [%s] (1..%u, no leading zeros)", name,
                        CONFIG_MAX_NODE_ID);
        const struct config_node *old = config_node_find(cfg, id);
        if (old)
            return fail(e, lineno, "duplicate section [node.%" PRIu32 "] (first at line %" PRIu32 ")",
                        id, old->section_line);
        if (cfg->n_nodes >= CONFIG_MAX_NODES)
            return fail(e, lineno, "more than %d nodes", CONFIG_MAX_NODES);
        struct config_node *n = add_node(cfg, id);
        if (!n)
            return -ENOMEM;
        n->section_line = lineno;
        *cur = (struct section){ S_NODE, n, true };
        return 0;
    }
    return fail(e, lineno, "unknown section [%s] (expected [cluster], [proxy] or [node.N])", name);
}

static void section_label(const struct section *cur, char *buf, size_t len)
{
    if (cur->sect == S_NODE)
        snprintf(buf, len, "node.%" PRIu32, cur->node->id);
    else
        snprintf(buf, len, "%s", sect_names[cur->sect]);
}

static int parse_assignment(const struct errctx *e, struct config *cfg, char *line,
                            uint32_t lineno, const struct section *cur)
{
    char *eq = strchr(line, '='), *key, *val, label[32];
    const struct opt *o;
    size_t row;

    if (!eq)
        return fail(e, lineno, "expected 'key = value', '[section]' or a comment");
    *eq = '\0';
    key = trim(line);
    if (*key == '\0')
        return fail(e, lineno, "missing key before '='");
    if (!cur->set)
        return fail(e, lineno, "key '%s' outside of any section", key);
    if (clean_value(eq + 1, &val) < 0)
        return fail(e, lineno, "%s: unterminated or trailing text after quoted value", key);
    section_label(cur, label, sizeof(label));
    o = find_row(cur->sect, key, &row);
    if (!o) {
        const char *hint = suggest(cur->sect, key);
        if (hint)
            return fail(e, lineno, "unknown key '%s' in [%s] (did you mean '%s'?)", key, label, hint);
        return fail(e, lineno, "unknown key '%s' in [%s]", key, label);
    }
    uint32_t prev = *origin_of(cfg, cur->node, row);
    if (prev && prev != CONFIG_ORIGIN_CMDLINE)
        return fail(e, lineno, "duplicate key '%s' in [%s] (first set at line %" PRIu32 ")", key,
                    label, prev);
    return set_row(e, cfg, cur->node, row, val, lineno);
}

int config_parse_string(struct config *cfg, const char *name, const char *text, size_t len,
                        char *err, size_t errlen)
{
    struct errctx e = { cfg, name, err, errlen };
    struct section cur = { S_CLUSTER, NULL, false };
    char *copy, *p, *end;
    uint32_t lineno = 0;
    int r = 0;

    if (err && errlen)
        err[0] = '\0';
    if (!cfg->path && !(cfg->path = strdup(name)))
        return -ENOMEM;
    copy = malloc(len + 1);
    if (!copy)
        return -ENOMEM;
    memcpy(copy, text, len);
    copy[len] = '\0';

    for (p = copy; r == 0 && p < copy + len; p = end + 1) {
        end = memchr(p, '\n', (size_t)(copy + len - p));
        if (!end)
            end = copy + len;
        *end = '\0';
        lineno++;
        if ((size_t)(end - p) != strlen(p)) {
            r = fail(&e, lineno, "NUL byte in line");
            break;
        }
        if (end > p && end[-1] == '\r')
            end[-1] = '\0';
        char *line = trim(p);
        if (*line == '\0' || *line == '#' || *line == ';')
            continue;
        if (*line == '[')
            r = parse_header(&e, cfg, line, lineno, &cur);
        else
            r = parse_assignment(&e, cfg, line, lineno, &cur);
    }
    free(copy);
    return r;
}

int config_parse_file(struct config *cfg, const char *path, char *err, size_t errlen)
{
    struct errctx e = { cfg, path, err, errlen };
    struct stat st;
    char *buf;
    size_t have = 0;
    int fd, r;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        r = -errno;
        fail(&e, 0, "cannot open: %s", strerror(-r));
        return r;
    }
    r = fstat(fd, &st) < 0 ? -errno : !S_ISREG(st.st_mode) ? -EINVAL : st.st_size > FILE_MAX ? -EFBIG : 0;
    if (r < 0) {
        fail(&e, 0, "%s", r == -EFBIG ? "larger than 1 MiB" : r == -EINVAL ? "not a regular file" : strerror(-r));
        close(fd);
        return r;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        close(fd);
        return -ENOMEM;
    }
    /* Read to EOF rather than trusting st_size: the file may be changing. */
    for (;;) {
        ssize_t n = read(fd, buf + have, (size_t)st.st_size + 1 - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = -errno;
            fail(&e, 0, "read error: %s", strerror(-r));
            free(buf);
            close(fd);
            return r;
        }
        if (n == 0 || (have += (size_t)n) > (size_t)st.st_size)
            break;
    }
    close(fd);
    if (have > (size_t)st.st_size) {
        free(buf);
        fail(&e, 0, "changed while being read");
        return -EAGAIN;
    }
    free(cfg->path);
    cfg->path = strdup(path);
    r = cfg->path ? config_parse_string(cfg, path, buf, have, err, errlen) : -ENOMEM;
    free(buf);
    return r;
}

/* ---- overrides ---------------------------------------------------------- */

int config_set(struct config *cfg, const char *option, const char *value, char *err, size_t errlen)
{
    struct errctx e = { cfg, cfg->path ? cfg->path : "config", err, errlen };
    const char *dot = strchr(option, '.'), *key;
    struct config_node *node = NULL;
    enum osect sect;
    size_t row;

    if (err && errlen)
        err[0] = '\0';
    if (!dot)
        return fail(&e, CONFIG_ORIGIN_CMDLINE, "'%s': expected section.key", option), -ENOENT;
    key = dot + 1;
    if ((size_t)(dot - option) == 7 && strncmp(option, "cluster", 7) == 0) {
        sect = S_CLUSTER;
    } else if ((size_t)(dot - option) == 5 && strncmp(option, "proxy", 5) == 0) {
        sect = S_PROXY;
    } else if ((size_t)(dot - option) == 4 && strncmp(option, "node", 4) == 0) {
        const char *kdot = strchr(key, '.');
        uint32_t id;
        if (!kdot || parse_node_id(key, (size_t)(kdot - key), &id) < 0)
            return fail(&e, CONFIG_ORIGIN_CMDLINE, "'%s': expected node.N.key", option), -ENOENT;
        for (size_t i = 0; i < cfg->n_nodes; i++)
            if (cfg->nodes[i].id == id)
                node = &cfg->nodes[i];
        if (!node)
            return fail(&e, CONFIG_ORIGIN_CMDLINE, "'%s': no [node.%" PRIu32 "] in %s", option, id,
                        e.name), -ENOENT;
        sect = S_NODE;
        key = kdot + 1;
    } else {
        return fail(&e, CONFIG_ORIGIN_CMDLINE, "'%s': unknown section", option), -ENOENT;
    }
    if (!find_row(sect, key, &row))
        return fail(&e, CONFIG_ORIGIN_CMDLINE, "unknown option '%s'", option), -ENOENT;
    return set_row(&e, cfg, node, row, value, CONFIG_ORIGIN_CMDLINE);
}

int config_set_arg(struct config *cfg, const char *arg, char *err, size_t errlen)
{
    const char *eq = strchr(arg, '=');
    if (!eq) {
        snprintf(err, errlen, "--set %s: expected KEY=VALUE", arg);
        return -EINVAL;
    }
    char *option = strndup(arg, (size_t)(eq - arg));
    if (!option) {
        snprintf(err, errlen, "--set %s: out of memory", arg);
        return -ENOMEM;
    }
    int rv = config_set(cfg, option, eq + 1, err, errlen);
    free(option);
    return rv;
}

/* ---- validation --------------------------------------------------------- */

static uint32_t origin_max(uint32_t a, uint32_t b)
{
    return a > b ? a : b;
}

/* Origin of a [cluster] or [proxy] option, or of a node's option. */
static uint32_t origin_by_key(const struct config *cfg, const struct config_node *node, const char *key)
{
    size_t row;
    if (node ? !find_row(S_NODE, key, &row) : !find_row(S_CLUSTER, key, &row) && !find_row(S_PROXY, key, &row))
        return 0;
    return *origin_of(cfg, node, row);
}

/* Copy of tmpl with {id} and {data_dir_base} expanded. */
static char *expand(const struct config *cfg, const char *tmpl, uint32_t id)
{
    char *out = NULL;
    size_t sz = 0;
    FILE *f = open_memstream(&out, &sz);

    if (!f)
        return NULL;
    for (const char *p = tmpl; *p;) {
        if (strncmp(p, "{id}", 4) == 0) {
            fprintf(f, "%" PRIu32, id);
            p += 4;
        } else if (strncmp(p, "{data_dir_base}", 15) == 0) {
            fputs(cfg->cluster.data_dir_base, f);
            p += 15;
        } else {
            fputc(*p++, f);
        }
    }
    if (fclose(f) != 0) {
        free(out);
        return NULL;
    }
    return out;
}

static int cmp_node(const void *a, const void *b)
{
    uint32_t x = ((const struct config_node *)a)->id, y = ((const struct config_node *)b)->id;
    return x < y ? -1 : x > y;
}

/* Whether two dialable addresses name the same endpoint, as far as can be
 * told without DNS. */
static bool same_endpoint(const char *a, const char *b)
{
    struct addr x, y;

    if (addr_parse(a, &x) == 0 && addr_parse(b, &y) == 0)
        return addr_equal(&x, &y);
    return strcasecmp(a, b) == 0;
}

/* Nodes sharing a peer host run on one machine and must not share files. */
static bool same_host(const struct config_node *a, const struct config_node *b)
{
    char ha[256], hb[256];
    uint16_t p;

    return addr_split(a->peer, ha, sizeof(ha), &p) == 0 &&
           addr_split(b->peer, hb, sizeof(hb), &p) == 0 && strcasecmp(ha, hb) == 0;
}

static int check_node_pair(const struct errctx *e, const struct config *cfg,
                           const struct config_node *a, const struct config_node *b)
{
    const char *as[2] = { a->peer, a->client }, *bs[2] = { b->peer, b->client };
    static const char *const what[2] = { "peer", "client" };

    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++)
            if ((a != b || i < j) && same_endpoint(as[i], bs[j]))
                return fail(e, origin_max(origin_by_key(cfg, b, what[j]), b->section_line),
                            "[node.%" PRIu32 "] %s address %s is already the %s address of node %" PRIu32,
                            b->id, what[j], bs[j], what[i], a->id);
    if (a != b && same_host(a, b)) {
        if (strcmp(a->admin, b->admin) == 0)
            return fail(e, b->section_line, "[node.%" PRIu32 "] admin socket %s is also node %" PRIu32 "'s",
                        b->id, b->admin, a->id);
        if (strcmp(a->data_dir, b->data_dir) == 0)
            return fail(e, b->section_line, "[node.%" PRIu32 "] data_dir %s is also node %" PRIu32 "'s",
                        b->id, b->data_dir, a->id);
    }
    return 0;
}

static int validate_nodes(const struct errctx *e, struct config *cfg)
{
    size_t first = first_node_row();

    if (cfg->n_nodes == 0)
        return fail(e, 0, "no [node.N] section: the cluster needs at least one member");
    qsort(cfg->nodes, cfg->n_nodes, sizeof(cfg->nodes[0]), cmp_node);
    for (size_t i = 0; i < cfg->n_nodes; i++) {
        struct config_node *n = &cfg->nodes[i];
        for (size_t row = first; row < N_OPTIONS; row++) {
            const struct opt *o = &options[row];
            char **field = field_of(cfg, n, o);
            if (o->sect != S_NODE || *origin_of(cfg, n, row))
                continue;
            if (!o->info.def)
                return fail(e, n->section_line, "[node.%" PRIu32 "] has no '%s' (required)", n->id,
                            o->info.key);
            /* Re-derived each time so a later data_dir_base override counts. */
            char *v = expand(cfg, o->info.def, n->id);
            if (!v)
                return -ENOMEM;
            free(*field);
            *field = v;
        }
    }
    for (size_t i = 0; i < cfg->n_nodes; i++)
        for (size_t j = 0; j <= i; j++) {
            int r = check_node_pair(e, cfg, &cfg->nodes[j], &cfg->nodes[i]);
            if (r < 0)
                return r;
        }
    return 0;
}

int config_validate(struct config *cfg, char *err, size_t errlen)
{
    struct errctx e = { cfg, cfg->path ? cfg->path : "config", err, errlen };
    const struct config_cluster *c = &cfg->cluster;
    uint32_t o_tick = origin_by_key(cfg, NULL, "tick_ms"), o_hb = origin_by_key(cfg, NULL, "heartbeat_interval_ms"),
             o_el = origin_by_key(cfg, NULL, "election_timeout_ms");

    if (err && errlen)
        err[0] = '\0';
    if (c->heartbeat_interval_ms % c->tick_ms)
        return fail(&e, origin_max(o_hb, o_tick),
                    "heartbeat_interval_ms (%" PRIu64 ") must be a multiple of tick_ms (%" PRIu64 ")",
                    c->heartbeat_interval_ms, c->tick_ms);
    if (c->election_timeout_ms % c->tick_ms)
        return fail(&e, origin_max(o_el, o_tick),
                    "election_timeout_ms (%" PRIu64 ") must be a multiple of tick_ms (%" PRIu64 ")",
                    c->election_timeout_ms, c->tick_ms);
    if (c->heartbeat_interval_ms >= c->election_timeout_ms)
        return fail(&e, origin_max(o_hb, o_el),
                    "heartbeat_interval_ms (%" PRIu64 ") must be less than election_timeout_ms (%" PRIu64 ")",
                    c->heartbeat_interval_ms, c->election_timeout_ms);
    /* 1 KiB covers the request envelope, ids and field tags around the data. */
    if (c->max_frame_bytes < c->max_key_bytes + c->max_value_bytes + KIB)
        return fail(&e, origin_max(origin_by_key(cfg, NULL, "max_frame_bytes"),
                                   origin_max(origin_by_key(cfg, NULL, "max_key_bytes"),
                                              origin_by_key(cfg, NULL, "max_value_bytes"))),
                    "max_frame_bytes (%" PRIu64 ") must be at least max_key_bytes + max_value_bytes + 1KiB (%" PRIu64 ")",
                    c->max_frame_bytes, c->max_key_bytes + c->max_value_bytes + KIB);
    if (c->max_pending_output_bytes < c->max_frame_bytes + 4)
        return fail(&e, origin_max(origin_by_key(cfg, NULL, "max_pending_output_bytes"),
                                   origin_by_key(cfg, NULL, "max_frame_bytes")),
                    "max_pending_output_bytes (%" PRIu64 ") must hold one largest frame (max_frame_bytes + 4)",
                    c->max_pending_output_bytes);
    if (c->reconnect_min_ms > c->reconnect_max_ms)
        return fail(&e, origin_max(origin_by_key(cfg, NULL, "reconnect_min_ms"), origin_by_key(cfg, NULL, "reconnect_max_ms")),
                    "reconnect_min_ms (%" PRIu64 ") must not exceed reconnect_max_ms (%" PRIu64 ")",
                    c->reconnect_min_ms, c->reconnect_max_ms);
    if (c->lease_reads && c->election_timeout_ms <= c->tick_ms + config_lease_drift_ticks(cfg) * c->tick_ms +
                                                      c->heartbeat_interval_ms)
        return fail(&e, origin_max(origin_by_key(cfg, NULL, "lease_clock_margin_ms"), o_el),
                    "lease_reads: the lease (election_timeout_ms - tick_ms - lease_clock_margin_ms) must "
                    "last longer than heartbeat_interval_ms (%" PRIu64 ")",
                    c->heartbeat_interval_ms);
    if (cfg->proxy.queue_wait_ms < 2 * c->election_timeout_ms)
        return fail(&e, origin_max(origin_by_key(cfg, NULL, "queue_wait_ms"), o_el),
                    "proxy queue_wait_ms (%" PRIu64 ") must be at least twice election_timeout_ms (%" PRIu64 ")",
                    cfg->proxy.queue_wait_ms, c->election_timeout_ms);
    if (*c->tls_crl && !*c->tls_ca)
        return fail(&e, origin_by_key(cfg, NULL, "tls_crl"), "tls_crl is set but tls_ca is not: a CRL "
                    "needs the TLS of tls_ca");
    if (!*cfg->proxy.listen && !*cfg->proxy.unix_path)
        return fail(&e, origin_max(origin_by_key(cfg, NULL, "listen"), origin_by_key(cfg, NULL, "unix")),
                    "[proxy] needs 'listen' or 'unix'");
    return validate_nodes(&e, cfg);
}

int config_load(struct config *cfg, const char *path, char *err, size_t errlen)
{
    int r = config_init(cfg);

    if (r == 0)
        r = config_parse_file(cfg, path, err, errlen);
    if (r == 0)
        r = config_validate(cfg, err, errlen);
    return r;
}

unsigned config_election_ticks(const struct config *cfg)
{
    return (unsigned)(cfg->cluster.election_timeout_ms / cfg->cluster.tick_ms);
}

unsigned config_heartbeat_ticks(const struct config *cfg)
{
    return (unsigned)(cfg->cluster.heartbeat_interval_ms / cfg->cluster.tick_ms);
}

unsigned config_lease_drift_ticks(const struct config *cfg)
{
    const struct config_cluster *c = &cfg->cluster;
    return (unsigned)((c->lease_clock_margin_ms + c->tick_ms - 1) / c->tick_ms);
}

/* ---- output ------------------------------------------------------------- */

/* Defaults are written commented out, so that parsing a dump gives back
 * not only the same values but the same idea of what was set explicitly.
 * Quotes keep values the parser would otherwise cut at a comment or trim. */
static void put_kv(FILE *out, const char *key, const char *val, bool is_default)
{
    bool quote = strpbrk(val, "#;\"") || val[0] == ' ' || (*val && val[strlen(val) - 1] == ' ');
    fprintf(out, quote ? "%s%s = \"%s\"\n" : "%s%s = %s\n", is_default ? "#" : "", key, val);
}

static void dump_rows(const struct config *cfg, const struct config_node *node, enum osect sect, FILE *out)
{
    char val[4096];

    for (size_t i = 0; i < N_OPTIONS; i++) {
        if (options[i].sect != sect)
            continue;
        format_value(&options[i], field_of(cfg, node, &options[i]), val, sizeof(val));
        put_kv(out, options[i].info.key, val, *origin_of(cfg, node, i) == 0);
    }
}

void config_dump(const struct config *cfg, FILE *out)
{
    fprintf(out, "# effective raftkv configuration%s%s\n", cfg->path ? " from " : "",
            cfg->path ? cfg->path : "");
    fprintf(out, "\n[cluster]\n");
    dump_rows(cfg, NULL, S_CLUSTER, out);
    fprintf(out, "\n[proxy]\n");
    dump_rows(cfg, NULL, S_PROXY, out);
    for (size_t i = 0; i < cfg->n_nodes; i++) {
        fprintf(out, "\n[node.%" PRIu32 "]\n", cfg->nodes[i].id);
        dump_rows(cfg, &cfg->nodes[i], S_NODE, out);
    }
}

size_t config_option_count(void)
{
    return N_OPTIONS;
}

const struct config_option_info *config_option_get(size_t i)
{
    static struct config_option_info infos[N_OPTIONS];

    if (i >= N_OPTIONS)
        return NULL;
    /* The type name is derived, so the table cannot disagree with it. */
    infos[i] = options[i].info;
    infos[i].type = type_names[options[i].type];
    return &infos[i];
}

static void write_doc_row(FILE *out, const struct opt *o, enum config_doc_format fmt)
{
    char range[96] = "";
    const char *t = type_names[o->type];

    if (o->type == T_UINT || o->type == T_MS)
        snprintf(range, sizeof(range), ", %" PRIu64 "..%" PRIu64, o->info.min, o->info.max);
    else if (o->type == T_SIZE) {
        char lo[32], hi[32];
        format_size(o->info.min, lo, sizeof(lo));
        format_size(o->info.max, hi, sizeof(hi));
        snprintf(range, sizeof(range), ", %s..%s", lo, hi);
    }
    if (fmt == CONFIG_DOC_SCDOC) {
        fprintf(out, "*%s* = _%s_ (default: %s%s)\n\t%s\n\n", o->info.key, t,
                o->info.def ? (*o->info.def ? o->info.def : "empty") : "required", range,
                o->info.doc);
        return;
    }
    fprintf(out, "# %s\n# (%s%s)\n", o->info.doc, t, range);
    if (o->info.def)
        fprintf(out, "#%s = %s\n\n", o->info.key, o->info.def);
    else
        fprintf(out, "%s = \n\n", o->info.key);
}

void config_write_doc(FILE *out, enum config_doc_format fmt)
{
    static const struct { enum osect sect; const char *header; } order[] = {
        { S_CLUSTER, "cluster" }, { S_NODE, "node.1" }, { S_PROXY, "proxy" },
    };

    for (size_t s = 0; s < sizeof(order) / sizeof(order[0]); s++) {
        if (fmt == CONFIG_DOC_SCDOC)
            fprintf(out, "## [%s]\n\n", order[s].sect == S_NODE ? "node.N" : order[s].header);
        else
            fprintf(out, "%s[%s]\n\n", s ? "\n" : "", order[s].header);
        for (size_t i = 0; i < N_OPTIONS; i++)
            if (options[i].sect == order[s].sect)
                write_doc_row(out, &options[i], fmt);
    }
}
