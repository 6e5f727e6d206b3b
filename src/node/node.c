/* node.c - the raftkv-node daemon's lifecycle: open the replica, bind the
 * sockets, run the event loop (ticks, store completions, one ready round per
 * loop iteration), report to systemd, and on SIGTERM hand leadership over
 * before leaving.
 */
#include "node/node_int.h"

#include "common/log.h"
#include "net/watchdog.h"
#include "node/hugepages.h"
#include "node/storage_store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <systemd/sd-daemon.h>

const struct config_node *node_member(const struct node *n, raft_id id)
{
    const struct config_node *cn = id ? config_node_find(n->cfg, (uint32_t)id) : NULL;
    return cn || !id ? cn : api_member_addr(n, id);
}

/* Inputs only mark the node dirty; the ev_prepare watcher runs one ready
 * round just before the loop would block, so everything that arrived in one
 * loop iteration -- many clients' writes -- goes into one batch, one
 * AppendEntries per follower and one disk write. */
void node_mark_dirty(struct node *n)
{
    n->dirty = true;
}

/* Wall time an iteration's ready round may keep taking further slices of
 * committed entries to apply (replica_turn); the iteration's total stays
 * well under the 20 ms that delays heartbeats. */
#define APPLY_S 0.005
/* Snapshot leftovers freed per loop iteration: a free is 20-100 ns, so at
 * most ~0.2 ms; what one snapshot at 10 M keys under 64 writers leaves (up
 * to 58 MB of nodes and entries measured) takes a few hundred iterations. */
#define GARBAGE_PER_TURN 2048

/* Only there to keep the next poll from blocking (see on_prepare). */
static void on_more(struct ev_loop *loop, ev_idle *w, int revents)
{
    (void)revents;
    ev_idle_stop(loop, w);
}

static void on_prepare(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)revents;
    struct node *n = w->data;
    if (n->dirty) {
        n->dirty = false;
        api_reads_ask(n);
        /* What is left of this iteration's slice, then more slices while
         * they took little time: a catch-up goes as fast as the loop
         * allows when its iterations are short, and no iteration applies
         * for much longer than APPLY_S.  With one slice per iteration
         * alone, a member added at 10 M keys replayed 2 M entries at ~16 k
         * a second (its iterations were long for other reasons: blocked in
         * the kernel, waiting for a CPU): 156 s to a caught-up voter. */
        double t0 = ev_time();
        replica_process(n->rp);
        while (replica_has_ready(n->rp) && ev_time() - t0 < APPLY_S) {
            replica_turn(n->rp);
            replica_process(n->rp);
        }
        node_metrics_committed(n);
        api_serve_ready_reads(n);
        /* A long catch-up is applied in slices: poll the sockets (peers'
         * heartbeats, clients) without blocking, then take the next one. */
        if (replica_has_ready(n->rp)) {
            n->dirty = true;
            ev_idle_start(loop, &n->more);
        }
    }
    if (n->garbage && kv_garbage_free_some(n->garbage, GARBAGE_PER_TURN))
        n->garbage = NULL;
    /* This iteration's slice of applying is spent; the next one has its own. */
    replica_turn(n->rp);
    double lag = looplag_iteration(&n->lag, ev_now(n->loop), ev_time());
    if (lag >= 0 && n->m)
        metrics_hist_observe(n->m->loop_lag, lag);
}

static void on_snapshot_written(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct node *n = w->data;
    double secs = 0;
    int rv = storage_store_bg_reap(n->storage, &secs);
    if (rv == -EAGAIN)
        return;
    ev_io_stop(loop, w);
    if (rv == 0) {
        n->snap_seconds = secs;
        if (n->m) {
            metrics_counter_inc(n->m->snapshots_taken);
            metrics_hist_observe(n->m->snapshot_seconds, secs);
        }
    }
    replica_snapshot_written(n->rp, rv);
    node_mark_dirty(n);
}

static void on_snapshot_started(void *arg, int fd)
{
    struct node *n = arg;
    ev_io_init(&n->snap_io, on_snapshot_written, fd, EV_READ);
    n->snap_io.data = n;
    ev_io_start(n->loop, &n->snap_io);
}

void node_background_thread(void)
{
    /* On Linux a tid names one thread; failing is harmless. */
    setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10);
}

static void on_retire(void *arg, struct kv *kv)
{
    struct node *n = arg;
    reaper_free_later(&n->reaper, kv, NULL);
}

/* A snapshot's leftovers are freed here, on the loop that allocated them,
 * GARBAGE_PER_TURN per iteration (kv.h says why not on the reaper). */
static void on_dispose(void *arg, struct kv_garbage *g)
{
    struct node *n = arg;
    if (!n->garbage)
        n->garbage = g;
    else if (kv_garbage_merge(n->garbage, g) < 0)
        reaper_free_later(&n->reaper, NULL, g);
}

static uint64_t boottime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* With lease reads the leader must never count fewer ticks than have
 * passed, or it would serve reads on a lease that has run out (raft.h).
 * A libev timer fires once after a stall however long it was, so ticks are
 * counted from CLOCK_BOOTTIME (it runs on through a suspend) and made up
 * here: from the tick timer, and before every read-index request.  Past
 * two election timeouts more ticks change nothing (every lease is over),
 * so a long stall costs no burst of heartbeats. */
void node_lease_clock(struct node *n)
{
    uint64_t due = (boottime_ns() - n->lease_clock.t0) / n->lease_clock.tick_ns;
    uint64_t cap = 2ull * config_election_ticks(n->cfg) + 1;
    if (due - n->lease_clock.fed > cap)
        n->lease_clock.fed = due - cap;
    bool ticked = false;
    for (; n->lease_clock.fed < due; n->lease_clock.fed++)
        ticked |= replica_tick(n->rp) == 0;
    if (ticked)
        node_mark_dirty(n);
}

/* The loop-lag reading of each tick is taken here, before any other
 * callback of the iteration the tick timer fired in: taken in on_tick, it
 * came after whatever ran first, and the split of a long iteration
 * counted that work (the reading's time being the iteration's start) as
 * time asleep outside the poll, with the thread running 0-2 ms. */
static void on_iteration_start(struct ev_loop *loop, ev_check *w, int revents)
{
    (void)revents;
    struct node *n = w->data;
    if (ev_is_pending(&n->tick))
        looplag_tick(&n->lag, ev_now(loop));
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)revents;
    struct node *n = w->data;
    if (n->cfg->cluster.lease_reads)
        node_lease_clock(n);
    else if (replica_tick(n->rp) == 0)
        node_mark_dirty(n);
    snapxfer_pump_all(n);
    /* Once a tick, not once an iteration: a scrape reads seconds apart,
     * and /healthz allows seconds between heartbeats. */
    node_metrics_publish(n);
}

/* A lost proposal (leader change) is tried again after this long. */
#define QUOTA_RETRY_S 1.0

/* The leader writes its cluster.max_data_bytes into the log when the log
 * says otherwise, so every replica refuses the same writes (kv.h,
 * KV_OP_SET_QUOTA).  A new leader with another value writes its own. */
static void sync_quota(struct node *n, double now)
{
    uint64_t want = n->cfg->cluster.max_data_bytes;
    if (n->role != RAFT_LEADER || replica_error(n->rp) || kv_quota(replica_kv(n->rp)) == want ||
        now - n->quota_proposed_at < QUOTA_RETRY_S)
        return;
    struct kv_command cmd = {.op = KV_OP_SET_QUOTA, .quota_bytes = want};
    if (node_propose_bookkeeping(n, &cmd) == 0) {
        n->quota_proposed_at = now;
        log_info("quota: writing cluster.max_data_bytes = %llu into the log (was %llu)",
                 (unsigned long long)want, (unsigned long long)kv_quota(replica_kv(n->rp)));
    }
}

static void on_sweep(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct node *n = w->data;
    api_sweep(n, ev_now(loop));
    sync_quota(n, ev_now(loop));
}

static void on_store(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop, (void)revents;
    struct node *n = w->data;
    struct replica_durable d;
    int rv = storage_store_poll(n->storage, &d);
    if (rv < 0)
        replica_storage_failed(n->rp, rv);
    else {
        node_metrics_durable(n, d.index);
        replica_durable(n->rp, &d);
        node_metrics_committed(n);
    }
    api_serve_ready_reads(n);
    node_mark_dirty(n);
}

static void notify_status(struct node *n)
{
    char buf[sizeof(n->status)];
    const char *err = replica_errmsg(n->rp);
    if (replica_error(n->rp))
        snprintf(buf, sizeof(buf), "STATUS=failed: %s", err);
    else if (bootstrap_deciding(n))
        snprintf(buf, sizeof(buf), "STATUS=empty data directory: waiting for peers to decide "
                 "whether to bootstrap");
    else if (n->role == RAFT_LEADER)
        snprintf(buf, sizeof(buf), "STATUS=leader, term %llu, commit %llu",
                 (unsigned long long)n->term,
                 (unsigned long long)replica_commit_index(n->rp));
    else if (n->leader)
        snprintf(buf, sizeof(buf), "STATUS=follower of %llu, term %llu",
                 (unsigned long long)n->leader, (unsigned long long)n->term);
    else
        snprintf(buf, sizeof(buf), "STATUS=%s, term %llu, no leader", raft_role_name(n->role),
                 (unsigned long long)n->term);
    if (n->cfg->cluster.lease_reads) /* a clock assumption: say it is made */
        snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), " (lease reads)");
    if (n->sec.insecure) /* said everywhere, so nobody runs it by mistake */
        snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), " (INSECURE)");
    if (strcmp(buf, n->status) == 0)
        return;
    memcpy(n->status, buf, sizeof(buf));
    sd_notify(0, buf);
}

static void on_status_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)revents;
    notify_status(w->data);
    node_metrics_publish_slow(w->data);
}

/* Start-up is still recovering.  systemd's start timeout stays short for
 * the common case; every step of a long replay pushes it out again, and
 * `systemctl status` says what the node is busy with. */
#define RECOVER_EXTEND_USEC 30000000ull

static void on_recovering(void *arg, const char *what)
{
    struct node *n = arg;
    double now = ev_time(); /* the loop does not run yet: no ev_now() */
    /* At most one message a second: a log of thousands of segments must
     * not turn into thousands of datagrams. */
    if (n->recover_notified != 0 && now - n->recover_notified < 1.0)
        return;
    n->recover_notified = now;
    sd_notifyf(0, "EXTEND_TIMEOUT_USEC=%llu\nSTATUS=recovering: %s", RECOVER_EXTEND_USEC, what);
    log_debug("recovering: %s", what);
}

static void on_soft_state(void *arg, raft_id leader, enum raft_role role, raft_term term)
{
    struct node *n = arg;
    bool leader_changed = leader != n->leader;
    bool role_changed = role != n->role;
    n->leader = leader;
    n->role = role;
    n->term = term;
    log_set_term(term);
    log_set_role(raft_role_name(role));
    if (leader_changed) {
        char b[24];
        log_event(LOG_NOTICE, "leader_change", LOG_FIELDS({"RAFTKV_LEADER", log_u64(b, leader)}),
                  "leader is now %llu (term %llu)", (unsigned long long)leader,
                  (unsigned long long)term);
    }
    node_metrics_soft_state(n, leader_changed, role_changed && role == RAFT_CANDIDATE);
    if (role_changed && role == RAFT_CANDIDATE)
        log_event(LOG_INFO, "election", NULL, "campaigning in term %llu", (unsigned long long)term);
    notify_status(n);
    api_leader_changed(n);
    /* Leave once someone else leads: by then our vote for it has gone out
     * and nobody has to wait out an election timeout for us. */
    if (n->stopping && leader != RAFT_NONE && leader != n->id)
        ev_break(n->loop, EVBREAK_ALL);
}

static void on_stop_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)w, (void)revents;
    log_warn("leadership hand-off did not finish in time; stopping anyway");
    ev_break(loop, EVBREAK_ALL);
}

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)revents;
    struct node *n = w->data;
    if (n->stopping) {
        ev_break(loop, EVBREAK_ALL); /* second signal: do not wait */
        return;
    }
    n->stopping = true;
    sd_notify(0, "STOPPING=1");
    if (replica_role(n->rp) == RAFT_LEADER && n->cfg->n_nodes > 1 &&
        replica_transfer(n->rp, RAFT_NONE) == 0) {
        /* A planned restart should cost clients no election timeout:
         * let the most caught-up follower take over before we go. */
        log_notice("stopping: handing leadership to the most caught-up follower");
        node_mark_dirty(n);
        ev_timer_init(&n->stop_timer, on_stop_timer,
                      2.0 * (double)n->cfg->cluster.election_timeout_ms / 1000.0, 0);
        ev_timer_start(loop, &n->stop_timer);
        return;
    }
    log_notice("stopping");
    ev_break(loop, EVBREAK_ALL);
}

/* systemctl reload: certificates again (security.c); the cluster stays up. */
static void on_hup(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop, (void)revents;
    struct node *n = w->data;
    sd_notify(0, "RELOADING=1");
    node_security_reload(n);
    sd_notify(0, "READY=1");
}

static int mkdir_p(const char *path)
{
    char buf[4096];
    if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
        return -ENAMETOOLONG;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(buf, 0750) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(buf, 0750) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

int node_new(struct node **out, const struct config *cfg, uint32_t id, bool join, char *err,
             size_t errlen)
{
    const struct config_node *me = config_node_find(cfg, id);
    if (!me) {
        snprintf(err, errlen, "%s: no [node.%u] section: this node is not a cluster member",
                 cfg->path ? cfg->path : "config", id);
        return -ENOENT;
    }
    struct node *n = calloc(1, sizeof(*n));
    if (!n)
        return -ENOMEM;
    n->cfg = cfg;
    n->id = id;
    /* Not ev_default_loop(): the default loop takes over SIGCHLD, which is
     * the embedding program's business. */
    n->loop = ev_loop_new(EVFLAG_AUTO);
    if (!n->loop) {
        free(n);
        return -ENOMEM;
    }
    reaper_init(&n->reaper);
    snapread_init(&n->snapread, n->loop, snapxfer_read_done, n);
    snapxfer_recv_init(n);
    n->start = ev_time();
    n->lag.fd = -1;
    n->exit_code = 0;
    n->role = RAFT_FOLLOWER;
    if (peer_encoder_init(&n->enc) != 0) {
        ev_loop_destroy(n->loop);
        free(n);
        return -ENOMEM;
    }
    int rv = mkdir_p(me->data_dir);
    if (rv < 0) {
        snprintf(err, errlen, "cannot create data directory %s: %s", me->data_dir, strerror(-rv));
        node_free(n);
        return rv;
    }
    if ((rv = guard_new(n)) < 0 || (rv = bootstrap_identity(n, me->data_dir, err, errlen)) < 0) {
        node_free(n);
        return rv;
    }

    struct replica_config rc;
    replica_config_defaults(&rc, id);
    rc.raft.election_ticks = config_election_ticks(cfg);
    rc.raft.heartbeat_ticks = config_heartbeat_ticks(cfg);
    rc.raft.lease_reads = cfg->cluster.lease_reads != 0;
    rc.raft.lease_drift_ticks = config_lease_drift_ticks(cfg);
    if (cfg->cluster.max_frame_bytes / 2)
        rc.raft.max_msg_bytes = (uint32_t)(cfg->cluster.max_frame_bytes / 2);
    rc.raft.snapshot_trailing = cfg->cluster.snapshot_entries / 10;
    rc.snapshot_entries = cfg->cluster.snapshot_entries;
    rc.snapshot_bytes = cfg->cluster.snapshot_bytes;
    rc.snapshot_min_log_pct = (uint32_t)cfg->cluster.snapshot_min_log_percent;
    rc.session_ttl_ms = cfg->cluster.session_ttl_ms;
    rc.max_sessions = cfg->cluster.max_sessions;
    for (size_t i = 0; i < cfg->n_nodes && i < RAFT_MAX_MEMBERS; i++) {
        rc.initial.m[rc.initial.n].id = cfg->nodes[i].id;
        rc.initial.m[rc.initial.n].role = RAFT_VOTER;
        rc.initial.n++;
    }
    if (cfg->n_nodes > RAFT_MAX_MEMBERS) {
        snprintf(err, errlen, "%s: %zu members; at most %d are supported", cfg->path, cfg->n_nodes,
                 RAFT_MAX_MEMBERS);
        node_free(n);
        return -EINVAL;
    }
    struct replica_hooks hooks = {
        .arg = n,
        .send = peer_send,
        .applied = api_applied,
        .read_state = api_read_state,
        .soft_state = on_soft_state,
        .recovering = on_recovering,
        .retire = on_retire,
        .dispose = on_dispose,
    };
    struct replica_storage io;
    struct storage_store_hooks sh = {.arg = n,
                                     .recovering = on_recovering,
                                     .bg_started = on_snapshot_started,
                                     .synced = node_metrics_synced};
    /* The store's writer thread counts into the registry from its start. */
    if ((rv = node_metrics_start(n, err, errlen)) < 0) {
        node_free(n);
        return rv;
    }
    rv = storage_store_open(&n->storage, &io, me->data_dir, 0, &sh, err, errlen);
    if (rv < 0) {
        node_free(n);
        return rv;
    }
    rv = replica_open(&n->rp, &rc, &hooks, &io, err, errlen);
    if (rv < 0) {
        node_free(n);
        return rv;
    }
    /* The first STATUS= goes out before the first ready round: show the
     * recovered term rather than 0. */
    n->term = replica_term(n->rp);
    n->client_limits.max_frame = cfg->cluster.max_frame_bytes;
    n->client_limits.max_pending_output = cfg->cluster.max_pending_output_bytes;
    n->client_limits.frame_timeout_ms = n->peer_limits.frame_timeout_ms =
        (uint32_t)cfg->cluster.frame_timeout_ms;
    n->client_limits.max_in_flight = NET_CLIENT_MAX_IN_FLIGHT;
    /* A proxy link carries many clients' requests: a batch of large answers
     * must stop the reading of more requests, never cut the link (issue 17). */
    n->client_limits.output_backpressure = true;
    /* Peer links carry whole snapshots in a burst of chunks. */
    n->peer_limits.max_frame = cfg->cluster.max_frame_bytes;
    n->peer_limits.max_pending_output = cfg->cluster.max_pending_output_bytes < (1u << 30)
                                            ? (1u << 30)
                                            : cfg->cluster.max_pending_output_bytes;
    if ((rv = node_security_start(n, err, errlen)) < 0 || (rv = peer_start(n, err, errlen)) < 0 ||
        (rv = api_start(n, err, errlen)) < 0 ||
        (rv = bootstrap_start(n, join, err, errlen)) < 0 ||
        (rv = node_metrics_serve(n, err, errlen)) < 0) {
        node_free(n);
        return rv;
    }

    double tick = (double)cfg->cluster.tick_ms / 1000.0;
    n->lease_clock.tick_ns = cfg->cluster.tick_ms * 1000000u;
    n->lease_clock.t0 = boottime_ns();
    if (cfg->cluster.lease_reads)
        log_info("lease reads on: a leader answers linearizable reads without a heartbeat round "
                 "for %llu ms after a majority acknowledged it (election_timeout_ms %llu - tick_ms "
                 "%llu - lease_clock_margin_ms %llu, rounded to ticks); this assumes bounded clock "
                 "drift and no frozen leader (raftkv.conf(5))",
                 (unsigned long long)((config_election_ticks(cfg) - 1 - config_lease_drift_ticks(cfg)) *
                                      cfg->cluster.tick_ms),
                 (unsigned long long)cfg->cluster.election_timeout_ms,
                 (unsigned long long)cfg->cluster.tick_ms,
                 (unsigned long long)cfg->cluster.lease_clock_margin_ms);
    ev_timer_init(&n->tick, on_tick, tick, tick);
    n->tick.data = n;
    ev_timer_start(n->loop, &n->tick);
    ev_timer_init(&n->sweep, on_sweep, 0.05, 0.05);
    n->sweep.data = n;
    ev_timer_start(n->loop, &n->sweep);
    ev_io_init(&n->store_io, on_store, storage_store_fd(n->storage), EV_READ);
    n->store_io.data = n;
    ev_io_start(n->loop, &n->store_io);
    ev_prepare_init(&n->flush, on_prepare);
    ev_idle_init(&n->more, on_more);
    n->more.data = n;
    n->flush.data = n;
    ev_prepare_start(n->loop, &n->flush);
    /* Check watchers run right after the poll, the highest priority first. */
    ev_check_init(&n->lag_start, on_iteration_start);
    ev_set_priority(&n->lag_start, EV_MAXPRI);
    n->lag_start.data = n;
    ev_check_start(n->loop, &n->lag_start);
    looplag_init(&n->lag, (double)cfg->cluster.loop_lag_warn_ms / 1e3);
    ev_signal_init(&n->sig_term, on_signal, SIGTERM);
    n->sig_term.data = n;
    ev_signal_start(n->loop, &n->sig_term);
    ev_signal_init(&n->sig_int, on_signal, SIGINT);
    n->sig_int.data = n;
    ev_signal_start(n->loop, &n->sig_int);
    ev_signal_init(&n->sig_hup, on_hup, SIGHUP);
    n->sig_hup.data = n;
    ev_signal_start(n->loop, &n->sig_hup);
    n->stop_timer.data = n;
    net_watchdog_start(n->loop, &n->watchdog);
    ev_timer_init(&n->status_timer, on_status_timer, 1.0, 1.0);
    n->status_timer.data = n;
    ev_timer_start(n->loop, &n->status_timer);
    node_mark_dirty(n);
    *out = n;
    return 0;
}

int node_run(struct node *n)
{
    sd_notify(0, "READY=1");
    notify_status(n);
    log_notice("node %u serving (raftkv %s)", n->id, RAFTKV_VERSION_STRING);
    log_info("memory: %s", node_hugepages_state());
    /* One write per connection per loop iteration: a batch of reads
     * answered by one ready round leaves together. */
    if (net_coalesce_start(n->loop) < 0)
        log_warn("no output coalescing: out of memory");
    ev_run(n->loop, 0);
    net_coalesce_stop(n->loop); /* what stopping still sends leaves at once */
    if (replica_error(n->rp))
        n->exit_code = 1;
    return n->exit_code;
}

void node_free(struct node *n)
{
    if (!n)
        return;
    api_fail_all(n);
    api_stop(n);
    snapread_stop(&n->snapread); /* its reads done, peer_stop closes their files */
    peer_stop(n);
    node_security_stop(n);
    snapxfer_recv_abort(n, "the node is stopping");
    reaper_stop(&n->reaper);
    kv_garbage_free(n->garbage);
    bootstrap_free(n);
    guard_free(n);
    /* flush the last ready round (e.g. the TimeoutNow of a hand-off) */
    if (n->rp) {
        ev_io_stop(n->loop, &n->store_io);
        ev_io_stop(n->loop, &n->snap_io);
        replica_close(n->rp);
    }
    peer_encoder_free(&n->enc);
    looplag_close(&n->lag);
    node_metrics_stop(n);
    api_waiters_free(n);
    ev_loop_destroy(n->loop);
    free(n);
}
