/* ctl.h - what raftkvctl's commands share: the options every command takes,
 * the lazily opened client, exit codes, and the output helpers. */
#ifndef RAFTKV_CTL_CTL_H
#define RAFTKV_CTL_CTL_H

/* config generate --tls: where the CA and node certificates go. */
#define CTL_TLS_DIR_DEFAULT "/etc/raftkv/tls"

#include "client/client.h"

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Exit codes, documented in raftkvctl(1). */
enum {
    EXIT_OK = 0,
    EXIT_ERROR = 1,       /* anything not below */
    EXIT_USAGE = 2,       /* bad command line */
    EXIT_NOT_FOUND = 3,   /* get/del of a missing key */
    EXIT_CAS_FAILED = 4,  /* cas found another value */
    EXIT_UNAVAILABLE = 5, /* nothing reachable, no leader, or timed out */
    EXIT_REFUSED = 6,     /* membership change refused: another in flight, lagging, quorum */
    EXIT_NO_SPACE = 7,    /* the cluster's data quota is full */
    EXIT_PERMISSION = 8,  /* PERMISSION_DENIED: the connection's role does not allow it */
};

enum ctl_format { FMT_DEFAULT, FMT_TABLE, FMT_JSON, FMT_PLAIN, FMT_PROMETHEUS };

/* Options that every command accepts; a command line in the shell may set
 * them for that one command. */
struct ctl_opts {
    const char *endpoints;  /* NULL: RAFTKV_ENDPOINT, then the config's proxy */
    const char *config;     /* NULL: /etc/raftkv/raftkv.conf */
    enum ctl_format format;
    unsigned timeout_ms;
    bool base64;            /* JSON: every key and value as base64 */
    /* TLS on TCP endpoints: NULL = $RAFTKV_TLS_CA/_CERT/_KEY, then the
     * CA of the config's [cluster] tls_ca (no certificate: the cluster's
     * anonymous_role) */
    const char *tls_ca, *tls_cert, *tls_key;
};

struct net_tls;

struct ctl {
    struct ctl_opts o;
    struct client *cli;       /* opened on first use, kept by the shell */
    char cli_endpoints[1024]; /* what cli was opened with */
    bool in_shell;
    /* ctl_tls(): loaded from tls_files ("ca\ncert\nkey"); borrowed by the
     * copies of ctl that diagnose() makes, freed by main's. */
    struct net_tls *tls;
    char tls_files[3 * 4096];
};

struct ctl_command {
    const char *name;
    int (*run)(struct ctl *ctl, int argc, char **argv);
    const char *args;         /* synopsis after the name */
    const char *summary;
    const char *help;         /* command-specific options, one per line */
};

extern const struct ctl_command ctl_commands[];
const struct ctl_command *ctl_find_command(const char *name);
int ctl_run_command(struct ctl *ctl, int argc, char **argv);
void ctl_usage(FILE *out);

/* Parses a command's arguments: the shared options plus the command's own
 * (long options in extra, short ones in extra_short, handled by on_opt which
 * returns 0 or an exit code).  Leaves optind at the first operand.  Returns
 * 0, -1 after --help was printed (or on_opt returned -1), or an exit code.
 * cmd NULL: the options before the command, stopping at its name. */
int ctl_getopt(struct ctl *ctl, const struct ctl_command *cmd, int argc, char **argv,
               const struct option *extra, const char *extra_short,
               int (*on_opt)(struct ctl *ctl, int c, const char *arg, void *ud), void *ud);

/* The client for ctl->o, opened now if needed; NULL after reporting why. */
struct client *ctl_client(struct ctl *ctl);
/* The TLS context for ctl->o (loaded now if needed, NULL when no CA is
 * known: plaintext): 0, or an exit code after reporting why. */
int ctl_tls(struct ctl *ctl, struct net_tls **out);
/* Frees ctl's client and TLS context. */
void ctl_free(struct ctl *ctl);
/* What the default endpoint list is (for messages and the man page). */
void ctl_default_endpoints(const char *config, char *buf, size_t len);

/* Reporting: one line on stderr, and the exit code that goes with it. */
int ctl_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int ctl_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A client call that returned an error (rc < 0) or a non-OK response:
 * prints what failed and what to try; returns the exit code. */
int ctl_report(struct ctl *ctl, const char *what, int rc, const Raftkv__Response *resp, const char *err);

/* Parsers for option values; 0 or -EINVAL. */
int ctl_parse_u64(const char *s, uint64_t *out);
int ctl_parse_duration_ms(const char *s, unsigned *ms);

/* Cluster view behind status, members and error diagnosis (cmd_status.c). */
struct node_row {
    uint64_t id;
    char address[ADDR_STRLEN];
    Raftkv__NodeStatus *ns;   /* NULL when it did not answer */
    const Raftkv__ProxyNodeView *pv; /* through the proxy */
    char error[CLIENT_ERRLEN];
};
struct cluster_view {
    Raftkv__Response *first;       /* the endpoint's own answer */
    Raftkv__Response **extra;      /* answers of nodes asked directly */
    size_t n_extra;
    const Raftkv__ProxyStatus *proxy;
    struct node_row *rows;
    size_t n_rows;
    uint64_t leader;
};
int cluster_view_gather(struct ctl *ctl, struct cluster_view *v, char *err, size_t errlen);
void cluster_view_free(struct cluster_view *v);
size_t cluster_view_reachable(const struct cluster_view *v);

/* Output (output.c). */
enum ctl_format ctl_format(const struct ctl *ctl, enum ctl_format dflt);
/* Bytes as a terminal-safe C-style string (\n, \xNN, \\) without quotes. */
void out_escaped(FILE *f, const void *p, size_t n);
char *out_escaped_dup(const void *p, size_t n); /* malloc'd */
/* JSON member "name": string when the bytes are UTF-8 (and base64 is off),
 * else "name_base64": "...". */
void json_bytes_member(FILE *f, const char *name, const void *p, size_t n, bool base64);
void json_string(FILE *f, const char *s);
void out_base64(FILE *f, const void *p, size_t n);

/* A text table: cells are copied; table mode aligns columns under a
 * header, plain mode prints tab-separated rows without one. */
struct table;
struct table *table_new(size_t ncols, const char *const *headers);
void table_add(struct table *t, const char *const *cells);
void table_print(const struct table *t, FILE *f, bool header);
void table_free(struct table *t);

/* Commands. */
int cmd_get(struct ctl *ctl, int argc, char **argv);
int cmd_set(struct ctl *ctl, int argc, char **argv);
int cmd_del(struct ctl *ctl, int argc, char **argv);
int cmd_cas(struct ctl *ctl, int argc, char **argv);
int cmd_list(struct ctl *ctl, int argc, char **argv);
int cmd_status(struct ctl *ctl, int argc, char **argv);
int cmd_members(struct ctl *ctl, int argc, char **argv);
int cmd_transfer_leader(struct ctl *ctl, int argc, char **argv);
int cmd_metrics(struct ctl *ctl, int argc, char **argv);
int cmd_member(struct ctl *ctl, int argc, char **argv);
/* The members table (or JSON) of `members` and `member ...` (cmd_member.c). */
void ctl_print_members(struct ctl *ctl, const Raftkv__Member *const *ms, size_t n, uint64_t leader);
int cmd_config(struct ctl *ctl, int argc, char **argv);
int cmd_bench(struct ctl *ctl, int argc, char **argv);
int cmd_certs(struct ctl *ctl, int argc, char **argv);
int ctl_shell(struct ctl *ctl);

#endif
