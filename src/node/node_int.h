/* node_int.h - the daemon's state shared by node.c (lifecycle, timers,
 * replica hooks), peer.c (Raft transport) and the client API (api.c and
 * its api_*.c parts, see api_int.h).
 */
#ifndef RAFTKV_NODE_NODE_INT_H
#define RAFTKV_NODE_NODE_INT_H

#include "common/config.h"
#include "net/conn.h"
#include "net/dial.h"
#include "net/listener.h"
#include "node/identity.h"
#include "node/looplag.h"
#include "node/node_metrics.h"
#include "node/node.h"
#include "node/peer_codec.h"
#include "node/reaper.h"
#include "node/snapread.h"
#include "node/replica.h"
#include "node/snapxfer.h"
#include "node/storage_store.h"
#include "rpc/rpc.h"

#include <ev.h>
#include <pthread.h>
#include <stdbool.h>

#define RAFTKV_VERSION_STRING "0.1.0"

enum wait_kind { WAIT_WRITE, WAIT_READ, WAIT_TRANSFER };

#define NODE_SLOW_KEY_MAX 48 /* key bytes a waiter keeps for the slow-request log */

/* A request parked until Raft decides it. */
struct waiter {
    enum wait_kind kind;
    struct rpc_client *client;
    uint64_t req_id;
    double deadline;     /* ev_now() based */
    raft_index index;    /* WRITE: proposal index; READ: read index once known */
    raft_term term;      /* WRITE: proposal term */
    uint64_t ctx;        /* READ: read-index ctx */
    bool index_known;    /* READ */
    uint8_t op;          /* enum metrics_op, for the request metrics */
    double arrived;      /* ev_now() when the request arrived */
    double known_at;     /* READ: when the read index was known */
    /* The key (or LIST prefix), truncated, for the slow-request log. */
    uint32_t key_len;
    uint8_t key[NODE_SLOW_KEY_MAX];
    void *req;           /* READ: the unpacked Raftkv__Request to answer */
    struct waiter *prev, *next; /* doubly linked: a waiter leaves its queue in O(1) */
};

struct waitq {
    struct waiter *head, *tail;
    size_t n;
};

/* Reads of one outgoing snapshot on the snapread thread at once: with one
 * at a time, each 1 MiB chunk waited a loop iteration for its turn. */
#define SNAP_READS 4

/* A snapshot being streamed to one follower (snapxfer.c). */

struct snap_tx {
    bool active;
    struct storage_snap_source src;
    struct raft_msg msg; /* the SNAPSHOT message every chunk rides on */
    uint64_t sent;       /* data bytes queued so far */
    double started;
    /* Chunks read ahead by the snapread thread, in order from `sent`: a
     * ring of `used` slots from `head`; read_off is where the next read
     * starts.  orphan: the transfer was closed while reads were on the
     * thread; orphan_fd is closed once they are all collected. */
    struct snap_slot {
        struct snapread_req rd;
        uint8_t *buf;
    } slot[SNAP_READS];
    unsigned head, used;
    uint64_t read_off;
    bool orphan;
    int orphan_fd;
    /* the last transfer that went out whole, on a link still up since */
    raft_index done_index;
    uint64_t done_len;
    double done_at;
};

struct peer_link {
    uint32_t id;
    struct net_dial *dial;
    struct node *node;
    struct snap_tx tx;
};

/* An inbound peer connection. */
struct peer_in {
    struct node *node;
};

struct node {
    const struct config *cfg;
    uint32_t id;
    struct ev_loop *loop;
    struct replica *rp;
    struct storage_store *storage; /* owned by rp once it is open */
    double start;

    struct peer_link peers[CONFIG_MAX_NODES];
    unsigned n_peers;
    struct peer_encoder enc;
    struct snap_rx rx;
    /* the received snapshot checked and loaded on a thread (snapxfer.c) */
    /* writes the received chunks off the loop (snapxfer.c) */
    struct workq rx_writer;
    ev_async rx_written;
    /* the connection not read while the writer catches up, and its peer_in */
    struct net_conn *rx_paused;
    const struct peer_in *rx_paused_in;
    struct {
        bool want; /* all chunks in: check and load once they are written */
        bool running, on_loop;
        pthread_t thread;
        ev_async done;
        struct kv_config kvc;
        struct kv *kv;
        int rv;
        double last_at, loaded_at;
    } rx_job;
    /* frees replaced dictionaries and snapshot leftovers off the loop */
    struct reaper reaper;
    /* snapshot leftovers not freed yet (node.c, on_dispose) */
    struct kv_garbage *garbage;
    /* reads outgoing snapshot chunks off the loop */
    struct snapread snapread;

    struct net_listener *peer_l, *client_l, *admin_l;
    struct net_conn_limits client_limits, peer_limits;
    /* security.c: [cluster] tls_ca set: mutual TLS on peer links, server
     * TLS on the client port; NULL: plaintext.  sec: rights of clients. */
    struct net_tls *tls;
    struct rpc_security sec;

    ev_timer tick;
    struct {
        uint64_t t0, tick_ns; /* CLOCK_BOOTTIME at start, one tick */
        uint64_t fed;         /* ticks given to the replica so far */
    } lease_clock;            /* node_lease_clock(), with cluster.lease_reads */
    ev_timer sweep;
    ev_io store_io;
    ev_io snap_io; /* the background snapshot writer's eventfd */
    ev_prepare flush;
    ev_check lag_start; /* the loop-lag reading, first in an iteration */
    ev_idle more; /* active while the replica has ready work left over */
    ev_signal sig_term, sig_int, sig_hup;
    ev_timer stop_timer;
    ev_timer watchdog;
    ev_timer status_timer;  /* keeps STATUS= current (the leader's commit moves) */
    char status[160];       /* last STATUS= sent, to send only changes */
    double recover_notified; /* monotonic time of the last EXTEND_TIMEOUT_USEC */
    struct looplag lag;
    /* The last background snapshot (STATUS). */
    double snap_seconds;
    double quota_proposed_at; /* ev_now() of the last KV_OP_SET_QUOTA */
    bool dirty;
    bool stopping;
    int exit_code;

    uint64_t next_ctx;
    uint64_t read_batch_ctx; /* the ctx this iteration's reads share; 0: none yet */
    struct waiter *free_waiters; /* api.c: ended waiters kept for reuse */
    size_t n_free_waiters;
    struct waitq writes;   /* in proposal (index) order */
    struct waitq reads;    /* waiting for a read index or for apply */
    struct waitq transfers;
    struct rpc_server rpc; /* client connections, WATCH_LEADER streams */
    struct api_member *member; /* api_member.c: membership requests, learned addresses */

    raft_id leader;
    enum raft_role role;
    raft_term term;

    struct identity ident;   /* this data directory's (node/identity.h) */
    struct peer_ident pident; /* what every outgoing message carries */
    struct guard *guard;     /* guard.c: who may talk to us */
    struct bootstrap *boot;  /* bootstrap.c: non-NULL while an empty node decides */
    struct node_metrics *m;  /* node_metrics.c: Prometheus series, /metrics */
    double cur_arrived;      /* ev_now() when the request being dispatched arrived */
};

/* node.c */
void node_mark_dirty(struct node *n);
/* cluster.lease_reads: give the replica every tick that has passed by
 * CLOCK_BOOTTIME, before anything that may answer a read on the lease. */
void node_lease_clock(struct node *n);
/* Called first on a thread that does bulk work for the loop (loading a
 * received snapshot, freeing a replaced dictionary): nice +10 for that
 * thread alone, so on a machine short of CPUs the loop, which sends the
 * heartbeats, is scheduled first. */
void node_background_thread(void);
const struct config_node *node_member(const struct node *n, raft_id id);

/* peer.c */
/* security.c: the TLS context and the rights policy from [cluster]
 * tls_ca, tls_crl, insecure and anonymous_role; -EPERM when plaintext
 * would be served beyond loopback.  reload: SIGHUP, the certificate and
 * CRL files again (connections the CRL now revokes are closed). */
int node_security_start(struct node *n, char *err, size_t errlen);
void node_security_reload(struct node *n);
void node_security_stop(struct node *n);

int peer_start(struct node *n, char *err, size_t errlen);
void peer_stop(struct node *n);
void peer_send(void *arg, const struct raft_msg *m);
/* Dial member id at address (replacing an older link to it). */
int peer_link_add(struct node *n, raft_id id, const char *address, char *err, size_t errlen);
bool peer_link_has(struct node *n, raft_id id);

/* snapxfer.c: InstallSnapshot streamed in chunks (see there). */
void snapxfer_send(struct node *n, struct peer_link *pl, const struct raft_msg *m);
void snapxfer_pump(struct node *n, struct peer_link *pl);
void snapxfer_pump_all(struct node *n); /* every tick: refill the windows */
/* The snapread thread read a chunk (its ev_async; data is the node). */
void snapxfer_read_done(struct ev_loop *loop, ev_async *w, int revents);
void snapxfer_send_abort(struct node *n, struct peer_link *pl, const char *why);
/* Drop a transfer without telling the core (the node is stopping). */
void snapxfer_send_close(struct snap_tx *tx);
/* The link broke: stop sending, and what went out whole may be lost too. */
void snapxfer_link_down(struct node *n, struct peer_link *pl);
void snapxfer_recv_init(struct node *n);
/* One chunk from connection c; *own as for snaprx_chunk. */
void snapxfer_recv(struct node *n, struct peer_in *in, struct net_conn *c,
                   const struct raft_msg *m, const struct peer_chunk *chunk, void **own);
void snapxfer_recv_abort(struct node *n, const char *why);
void snapxfer_conn_closed(struct node *n, const struct peer_in *in);

/* guard.c: the receive-side checks on every decoded peer message.  false:
 * dropped (and the connection closed when the sender is refused). */
int guard_new(struct node *n);
void guard_free(struct node *n);
bool guard_admit(struct node *n, struct net_conn *c, const struct peer_decoded *d);
/* Propose RECORD_INCARNATION(member, incarnation) (leader only; 0 forgets
 * it, which `raftkvctl member replace` needs before the wiped node returns).
 * 0, or -EAGAIN when not leader. */
int guard_propose_incarnation(struct node *n, raft_id member, uint64_t incarnation);
/* Propose a cluster-bookkeeping kv command (no session), stamped with the
 * leader's clock.  0, -EINVAL for a command that does not encode, or -EAGAIN
 * when not leader. */
int node_propose_bookkeeping(struct node *n, struct kv_command *cmd);

/* bootstrap.c: identity at start-up and the empty-data-directory decision. */
#define NODE_EXIT_CONFIG 78 /* EX_CONFIG: systemd must not restart (RestartPreventExitStatus) */
int bootstrap_identity(struct node *n, const char *data_dir, char *err, size_t errlen);
/* join (--join): never bootstrap, only join once a member with data lists
 * this node. */
int bootstrap_start(struct node *n, bool join, char *err, size_t errlen);
void bootstrap_free(struct node *n);
bool bootstrap_deciding(const struct node *n);
void bootstrap_on_probe(struct node *n, const struct peer_decoded *d);
void bootstrap_on_reply(struct node *n, const struct peer_decoded *d);
/* Send a Probe or ProbeReply to node `to` on its outbound link. */
void peer_send_probe(struct node *n, raft_id to, const struct peer_probe_reply *reply);

/* api.c */
int api_start(struct node *n, char *err, size_t errlen);
void api_stop(struct node *n);
void api_applied(void *arg, const struct raft_entry *e, const struct kv_result *res);
void api_read_state(void *arg, const struct raft_read_state *rs);
void api_leader_changed(struct node *n);
void api_serve_ready_reads(struct node *n);
/* The linearizable reads that arrived since the last call ask Raft for one
 * read index together (node.c's ev_prepare, before the ready round). */
void api_reads_ask(struct node *n);
void api_waiters_free(struct node *n); /* the reuse list, at exit */
void api_sweep(struct node *n, double now);
void api_fail_all(struct node *n);

/* api_member.c: addresses of a member the config file did not name at
 * start-up (the rest is in api_int.h). */
const struct config_node *api_member_addr(const struct node *n, raft_id id);

#endif
