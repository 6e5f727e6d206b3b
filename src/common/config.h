/* config.h - /etc/raftkv/raftkv.conf, the one INI file every host shares:
 * [cluster] timing and limits, one [node.N] per member, [proxy].  A single
 * option table in config.c drives parsing, defaults, validation, command-line
 * overrides, config_dump() and the raftkv.conf(5) reference. */
#ifndef RAFTKV_COMMON_CONFIG_H
#define RAFTKV_COMMON_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CONFIG_DEFAULT_PATH "/etc/raftkv/raftkv.conf"
#define CONFIG_MAX_OPTIONS 56      /* rows of the table */
#define CONFIG_MAX_NODE_OPTIONS 8  /* [node.N] rows */
#define CONFIG_MAX_NODES 64
#define CONFIG_MAX_NODE_ID 65535

/* Where a value came from, for error messages: 0 = built-in default,
 * CONFIG_ORIGIN_CMDLINE = config_set(), else the 1-based line in the file. */
#define CONFIG_ORIGIN_CMDLINE UINT32_MAX

struct config_cluster {
    char *name;                       /* cluster name carried in peer messages */
    char *id;                         /* 32 hex digits; "" = derived (node/identity.h) */
    uint64_t tick_ms;
    uint64_t heartbeat_interval_ms;
    uint64_t election_timeout_ms;     /* minimum; raft randomizes in [e, 2e) */
    int lease_reads;                  /* leader-lease reads (thesis 6.4.1); off by default */
    uint64_t lease_clock_margin_ms;   /* what the lease leaves for clock drift */
    uint64_t max_frame_bytes;
    uint64_t max_key_bytes;
    uint64_t max_value_bytes;
    uint64_t max_connections;         /* per listening socket */
    uint64_t max_pending_output_bytes; /* per connection */
    uint64_t frame_timeout_ms;        /* partial frame deadline; 0 = none */
    uint64_t request_timeout_ms;
    uint64_t connect_timeout_ms;
    uint64_t reconnect_min_ms;
    uint64_t reconnect_max_ms;
    uint64_t snapshot_entries;
    uint64_t snapshot_bytes;
    uint64_t snapshot_send_rate;      /* bytes/s per follower; 0 = unlimited */
    uint64_t snapshot_min_log_percent; /* no snapshot while the log is smaller */
    uint64_t session_ttl_ms;          /* struct kv_config, same on every node */
    uint64_t max_sessions;
    uint64_t max_data_bytes;          /* quota, through the log (kv.h); 0 = none */
    uint64_t slow_request_ms;         /* log requests slower than this; 0 = off */
    uint64_t loop_lag_warn_ms;        /* log loop iterations longer than this */
    int log_level;                    /* syslog level, LOG_ERR..LOG_DEBUG */
    int log_target;                   /* enum log_target */
    char *data_dir_base;
    char *tls_ca;                     /* "" = plaintext (loopback only unless insecure) */
    char *tls_crl;                    /* "" = no revocation checks */
    int insecure;                     /* no authentication at all */
    int anonymous_role;               /* config_role_name(): a client without a certificate */
};

struct config_proxy {
    char *listen;                     /* "host:port" */
    char *unix_path;                  /* key "unix" */
    uint64_t queue_max;
    uint64_t queue_wait_ms;
    uint64_t max_lag_entries;
    uint64_t poll_interval_ms;
    uint64_t down_after_ms;
    uint64_t threads;                 /* event loops; 0 = number of CPUs, capped */
    char *metrics;                    /* "host:port" of /metrics; "" = off */
    char *tls_cert;                   /* used when cluster.tls_ca is set */
    char *tls_key;
};
#define CONFIG_PROXY_MAX_THREADS 64

struct config_node {
    uint32_t id;
    char *peer;                       /* "host:port", required */
    char *client;                     /* "host:port", required */
    char *admin;                      /* unix socket path */
    char *data_dir;                   /* filled from data_dir_base when unset */
    char *tls_cert;                   /* used when cluster.tls_ca is set */
    char *tls_key;
    char *metrics;                    /* "host:port" of /metrics; "" = off */
    uint32_t section_line;
    uint32_t origin[CONFIG_MAX_NODE_OPTIONS];
};

struct config {
    char *path;                       /* as given, used in messages */
    struct config_cluster cluster;
    struct config_proxy proxy;
    struct config_node *nodes;        /* sorted by id after config_validate */
    size_t n_nodes;
    uint32_t origin[CONFIG_MAX_OPTIONS];
};

/* Every config_* that can fail returns 0 or a negative errno and writes one
 * line into err (errlen bytes) naming the file and line, e.g.
 * "raftkv.conf:12: unknown key 'electon_timeout_ms' in [cluster]". */

/* Defaults only, no nodes.  -ENOMEM. */
int config_init(struct config *cfg);
void config_free(struct config *cfg);

/* Parse a file / a buffer (name used in messages) on top of cfg.  No
 * cross-option validation yet, so overrides can still fix things.
 * -ENOENT/-EACCES/... reading the file, -EINVAL on any syntax or value
 * error, -EFBIG over 1 MiB. */
int config_parse_file(struct config *cfg, const char *path, char *err, size_t errlen);
int config_parse_string(struct config *cfg, const char *name, const char *text,
                        size_t len, char *err, size_t errlen);

/* Command-line override: "cluster.election_timeout_ms", "proxy.listen",
 * "node.2.data_dir" (the node must exist).  Same parsing and range checks
 * as the file.  -ENOENT unknown option or node, -EINVAL bad value. */
int config_set(struct config *cfg, const char *option, const char *value, char *err, size_t errlen);

/* A --set argument, "KEY=VALUE": config_set(KEY, VALUE).  -EINVAL without
 * an '=', -ENOMEM, else what config_set returns. */
int config_set_arg(struct config *cfg, const char *arg, char *err, size_t errlen);

/* Cross-option checks and derived defaults (node data_dir, admin path):
 * at least one node, heartbeat < election timeout, timings multiples of
 * tick_ms, frames big enough for the largest key+value, no two nodes sharing
 * an address, a socket path or a data dir.  -EINVAL. */
int config_validate(struct config *cfg, char *err, size_t errlen);

/* config_init + config_parse_file + config_validate. */
int config_load(struct config *cfg, const char *path, char *err, size_t errlen);

const struct config_node *config_node_find(const struct config *cfg, uint32_t id);

/* Roles of [cluster] anonymous_role, lowest first: "none", "read", "write",
 * "admin" (src/rpc's enum rpc_role has the same order).  The index, or
 * -EINVAL; config_role_name(): "?" out of range. */
int config_role_parse(const char *s, size_t len);
const char *config_role_name(int role);

/* Milliseconds -> raft ticks (validation guarantees exact division). */
unsigned config_election_ticks(const struct config *cfg);
unsigned config_heartbeat_ticks(const struct config *cfg);
/* lease_clock_margin_ms in ticks, rounded up. */
unsigned config_lease_drift_ticks(const struct config *cfg);

/* The effective configuration as a valid raftkv.conf, every option listed;
 * options still at their default (or derived, like a node's data_dir) are
 * written commented out ("#tick_ms = 10"), so parsing a dump round-trips. */
void config_dump(const struct config *cfg, FILE *out);

/* Reference documentation of every option, from the table. */
struct config_option_info {
    const char *section;      /* "cluster", "node.N", "proxy" */
    const char *key;
    const char *type;         /* "integer", "size", "milliseconds", "string", ... */
    const char *def;          /* default as written in the file; NULL = required */
    uint64_t min, max;        /* for numeric types */
    const char *doc;
};
size_t config_option_count(void);
const struct config_option_info *config_option_get(size_t i); /* NULL past the end */
/* A commented sample raftkv.conf, or the raftkv.conf(5) OPTIONS section in
 * scdoc syntax. */
enum config_doc_format { CONFIG_DOC_SAMPLE, CONFIG_DOC_SCDOC };
void config_write_doc(FILE *out, enum config_doc_format fmt);

#endif
