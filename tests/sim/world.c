/* world.c - one seed's run: draw the seed's knobs, bootstrap the cluster,
 * step simulated time (clocks, deliveries, disk completions) under a fault
 * schedule (partitions, crashes, clock drift, client writes and reads,
 * leadership transfers, membership changes), then heal and check liveness. */
#include <stdlib.h>
#include <string.h>

#include "sim.h"

/* A tick lasts this many time units on a node's clock at the slowest. */
#define TICK_MAX 15
#define TICK_MIN 5
/* With lease reads the clocks stay within 20% of each other: no node's
 * ticks run more than 12/10 as fast as another's. */
#define LEASE_TICK_MAX 12
#define LEASE_TICK_MIN 10

static uint32_t pick_u32(struct prng *g, const uint32_t *v, size_t n)
{
    return v[prng_below(g, n)];
}

static void draw_params(struct sim *s)
{
    struct params *p = &s->p;
    struct prng *g = &s->rng;
    /* One entry per message and one message in flight are weighted up: they
     * split a new leader's old-term entries from its own, which is where
     * commit rules break (Figure 8 of the Raft paper). */
    static const uint32_t entries[] = {1, 1, 1, 2, 4, 16, 64};
    static const uint32_t bytes[] = {48, 256, 4096, 1u << 20};
    static const uint32_t apply[] = {1, 3, 64, 1024};
    static const uint32_t disk[] = {700000, 300000, 80000};

    p->loss_ppm = prng_chance(g, 200000) ? 0 : (uint32_t)prng_range(g, 0, 300000);
    p->dup_ppm = prng_chance(g, 300000) ? 0 : (uint32_t)prng_range(g, 0, 100000);
    p->delay_max = (unsigned)prng_range(g, 2, 30);
    p->long_delay_ppm = (uint32_t)prng_range(g, 0, 30000);
    p->partition_ppm = (uint32_t)prng_range(g, 200, 2500);
    p->crash_ppm = (uint32_t)prng_range(g, 100, 2000);
    p->prop_ppm = (uint32_t)prng_range(g, 30000, 250000);
    p->read_ppm = (uint32_t)prng_range(g, 5000, 60000);
    p->transfer_ppm = (uint32_t)prng_range(g, 0, 1500);
    p->conf_ppm = (uint32_t)prng_range(g, 300, 4000);
    p->disk_ppm = pick_u32(g, disk, 3);
    p->snap_ppm = (uint32_t)prng_range(g, 50000, 500000);
    p->snap_every = (unsigned)prng_range(g, 3, 60);
    p->clock_change_ppm = 300;
    p->churn_ppm = prng_chance(g, 400000) ? (uint32_t)prng_range(g, 300000, 900000) : 0;
    p->strike_ppm = prng_chance(g, 500000) ? (uint32_t)prng_range(g, 20000, 200000) : 0;
    p->election_ticks = (unsigned)prng_range(g, 8, 16);
    p->heartbeat_ticks = (unsigned)prng_range(g, 1, 3);
    p->max_msg_entries = pick_u32(g, entries, 7);
    p->max_msg_bytes = pick_u32(g, bytes, 4);
    p->max_inflight = prng_chance(g, 400000) ? 1 : (uint32_t)prng_range(g, 2, 8);
    p->max_apply = pick_u32(g, apply, 4);
    p->snapshot_trailing = (unsigned)prng_range(g, 0, 16);
    p->learner_max_lag = (unsigned)prng_range(g, 1, 20);
    p->pre_vote = prng_chance(g, 750000);
    p->check_quorum = prng_chance(g, 750000);
    p->wipe_ppm = prng_chance(g, 500000) ? (uint32_t)prng_range(g, 2000, 30000) : 0;
    /* From the seed, not the stream: adding this knob changed no other draw. */
    p->bg_snapshots = mix64(s->seed ^ 0x62675f736e6170ULL) & 1;
    p->tick_min = TICK_MIN;
    p->tick_max = TICK_MAX;
    if (s->lease_mode != LEASE_OFF) {
        /* The lease holds while a quorum's election timers cannot have run
         * out: lease * fastest period <= (election - 1) * slowest period,
         * i.e. (E - 1 - drift) * 12 <= (E - 1) * 10 (readindex.c). */
        p->lease = true;
        p->check_quorum = true; /* the lease rests on leader stickiness */
        p->lease_drift = (p->election_ticks - 1 + 5) / 6;
        if (s->lease_mode == LEASE_BOUNDED) {
            p->tick_min = LEASE_TICK_MIN;
            p->tick_max = LEASE_TICK_MAX;
        }
        /* From the seed, not the stream, as bg_snapshots. */
        p->handover_ppm = mix64(s->seed ^ 0x68616e646f766572ULL) % 4 ? 700000 : 0;
    }
}

static bool is_member(const struct raft_conf *c, raft_id id)
{
    return raft_conf_find(c, id) != NULL;
}

static struct node *pick_up(struct sim *s)
{
    unsigned up = 0;
    for (unsigned i = 1; i <= s->n_nodes; i++)
        up += s->nodes[i].up;
    if (!up)
        return NULL;
    unsigned k = (unsigned)prng_below(&s->rng, up);
    for (unsigned i = 1; i <= s->n_nodes; i++)
        if (s->nodes[i].up && k-- == 0)
            return &s->nodes[i];
    return NULL;
}

/* The live leader of the highest term, as a client would end up finding. */
raft_id world_leader(struct sim *s)
{
    raft_id best = RAFT_NONE;
    raft_term best_term = 0;
    for (unsigned i = 1; i <= s->n_nodes; i++) {
        struct node *n = &s->nodes[i];
        if (n->up && replica_role(n->rp) == RAFT_LEADER && replica_term(n->rp) >= best_term) {
            best = n->id;
            best_term = replica_term(n->rp);
        }
    }
    return best;
}

/* The leader (or RAFT_NONE) and, if there is one, its status in *st. */
static raft_id leader_status(struct sim *s, struct raft_status *st)
{
    raft_id l = world_leader(s);
    if (l)
        replica_status(s->nodes[l].rp, st);
    return l;
}

/* A member whose data directory is not the one the history records: it
 * was wiped, its votes are dropped, and only a member add (forget, then
 * record the new directory) lets it take part again, which is the
 * operator's `raftkvctl member replace`.  Until then it may well stay a
 * candidate of ever higher terms that nobody hears of (pre-vote off): the
 * liveness phase does not wait for it. */
static bool blocked(struct sim *s, raft_id id)
{
    uint64_t r = s->ck.rec[id];
    return r && r != s->nodes[id].dir_inc;
}

/* A member of c that is blocked, or RAFT_NONE. */
static raft_id wiped_member(struct sim *s, const struct raft_conf *c)
{
    for (uint32_t i = 0; i < c->n; i++)
        if (blocked(s, c->m[i].id))
            return c->m[i].id;
    return RAFT_NONE;
}

/* ---- clients ------------------------------------------------------------- */

static void client_propose(struct sim *s)
{
    struct node *n = pick_up(s);
    if (!n)
        return;
    /* Like a client library: follow the leader hint when there is one. */
    struct raft_status st;
    replica_status(n->rp, &st);
    raft_id hint = st.leader;
    if (hint != RAFT_NONE && hint != n->id && hint <= s->n_nodes && s->nodes[hint].up) {
        n = &s->nodes[hint];
        replica_status(n->rp, &st);
    }
    /* Flow control, as a node would apply it: refuse new writes while the
     * leader already holds a long uncommitted tail.  Without it a slow
     * configuration (1 entry per message, 1 in flight) builds a backlog that
     * no bounded liveness check could wait out. */
    if (st.last_index > st.commit + 64) {
        TRACE(s, "n%llu propose: backpressure (%llu uncommitted)", U(n->id),
              U(st.last_index - st.commit));
        return;
    }
    /* A real key-value write: the key is the proposal id, the value noise. */
    uint64_t id = s->next_prop_id;
    uint8_t value[24];
    struct kv_command cmd = {.op = KV_OP_SET, .time_ms = s->now, .key = &id, .key_len = sizeof id,
                             .value = value, .value_len = (size_t)prng_below(&s->rng, 25)};
    for (size_t i = 0; i < cmd.value_len; i++)
        value[i] = (uint8_t)prng_next(&s->rng);
    uint8_t data[SIM_DATA_MAX];
    size_t len = 0;
    if (kv_command_encode(&cmd, data, sizeof data, &len) != KV_OK) {
        sim_fail(s, FAIL_CONTRACT, "cannot encode proposal %llu", U(id));
        return;
    }
    raft_index index = 0;
    raft_term term = 0;
    int rc = replica_propose(n->rp, data, (uint32_t)len, &index, &term);
    n->dirty = true;
    if (rc == RAFT_OK) {
        s->next_prop_id++;
        s->st.proposals++;
        grow(&n->props, &n->props_cap, n->n_props + 1, sizeof *n->props);
        n->props[n->n_props++] = (struct proposal){index, term, id};
        TRACE(s, "n%llu propose %llu -> (%llu, term %llu)", U(n->id), U(id), U(index), U(term));
    } else {
        TRACE(s, "n%llu propose: %s", U(n->id), raft_strerror(rc));
    }
    node_drive(s, n);
}

static void client_read(struct sim *s)
{
    struct node *n = pick_up(s);
    if (!n)
        return;
    uint64_t ctx = s->next_read_ctx++;
    grow(&s->ck.read_told, &s->ck.read_cap, ctx + 1, sizeof *s->ck.read_told);
    s->ck.read_told[ctx] = s->ck.told;
    int rc = replica_read_index(n->rp, ctx);
    n->dirty = true;
    TRACE(s, "n%llu read %llu requested (client knows %llu): %s", U(n->id), U(ctx),
          U(s->ck.told), raft_strerror(rc));
    node_drive(s, n);
}

/* ---- operator actions ------------------------------------------------------ */

static void do_transfer(struct sim *s)
{
    struct raft_status st;
    raft_id l = leader_status(s, &st);
    if (!l)
        return;
    struct node *n = &s->nodes[l];
    raft_id target = RAFT_NONE;
    if (prng_chance(&s->rng, 750000) && st.conf.n > 1) {
        const struct raft_member *m = &st.conf.m[prng_below(&s->rng, st.conf.n)];
        if (m->id != l && m->role == RAFT_VOTER)
            target = m->id;
    }
    int rc = replica_transfer(n->rp, target);
    n->dirty = true;
    TRACE(s, "n%llu transfer leadership to n%llu: %s", U(l), U(target), raft_strerror(rc));
    if (rc == RAFT_OK)
        s->st.transfers++;
    node_drive(s, n);
}

/* Cycle the cluster between n_init and n_init + 1 voters: add the node that
 * is out as a learner (sometimes straight as a voter), promote it, then
 * remove some voter (now and then the leader itself), which becomes the next
 * node out.  The voters never drop below the initial cluster size. */
static void do_conf_change(struct sim *s)
{
    struct raft_status st;
    raft_id l = leader_status(s, &st);
    if (!l)
        return;
    struct node *ln = &s->nodes[l];
    struct raft_conf_change cc = {0, RAFT_NONE};
    /* A learner is promoted once the leader applied the record of its data
     * directory and the learner holds every entry the leader applied, that
     * record among them, as api_member.c's automatic promotion: a directory
     * that joined votes only once its log records it (replica.h), and
     * promoted before that it is a failed voter, for good if the leader
     * dies first (3-node seed 17446: with a wiped voter as well, two of
     * four voters were out). */
    bool learner = false;
    for (uint32_t i = 0; i < st.conf.n; i++)
        if (st.conf.m[i].role == RAFT_LEARNER) {
            raft_id id = st.conf.m[i].id;
            raft_index match = 0;
            for (uint32_t k = 0; k < st.n_progress; k++)
                if (st.progress[k].id == id)
                    match = st.progress[k].match;
            learner = true;
            if (replica_incarnation(ln->rp, id) && match >= replica_applied(ln->rp))
                cc = (struct raft_conf_change){RAFT_CONF_PROMOTE, id};
        }
    if (learner && !cc.op)
        return; /* one change at a time: the learner first */
    for (unsigned i = 1; i <= s->n_nodes && !cc.op; i++) {
        struct node *x = &s->nodes[i];
        if (is_member(&st.conf, x->id))
            continue;
        if (!x->up) {
            TRACE(s, "n%llu started to join", U(x->id));
            node_start(s, x);
            if (s->fail)
                return;
        }
        /* Straight as a voter now and then (the core allows it), but not
         * while a wiped member's votes are dropped: a voter whose log does
         * not reach the record of that member's old directory would take
         * them.  raftkvctl member add always adds a learner, promoted once
         * caught up, and so past the record (FINDINGS.md 3).  Nor a node
         * that joined (the spare, a wiped node): it votes only once
         * recorded, and straight in it is a failed voter until then. */
        cc.op = prng_chance(&s->rng, 800000) || wiped_member(s, &st.conf) || x->joined
                    ? RAFT_CONF_ADD_LEARNER
                    : RAFT_CONF_ADD_VOTER;
        cc.id = x->id;
        /* As api_member.c: an add first forgets the data directory recorded
         * for an earlier membership (the node may have been wiped since). */
        if (replica_incarnation(ln->rp, x->id)) {
            int rf = replica_propose_incarnation(ln->rp, x->id, 0, s->now);
            TRACE(s, "n%llu forget n%llu's data directory: %s", U(l), U(x->id),
                  raft_strerror(rf));
        }
    }
    if (!cc.op && st.conf.n > 1) {
        raft_id victim = l;
        /* A wiped member is replaced first, as an operator would (remove,
         * then the add forgets its old directory).  Never the leader itself
         * meanwhile: its own removal, uncommitted, stops it campaigning and
         * it refuses votes to shorter logs, and with the wiped member's
         * votes dropped too nobody may be able to win (FINDINGS.md 2). */
        raft_id wiped = wiped_member(s, &st.conf);
        if (wiped) {
            victim = wiped;
        } else if (!prng_chance(&s->rng, 200000)) {
            uint64_t k = prng_below(&s->rng, st.conf.n - 1); /* k-th member other than l */
            for (uint32_t i = 0; i < st.conf.n; i++)
                if (st.conf.m[i].id != l && k-- == 0)
                    victim = st.conf.m[i].id;
        }
        cc = (struct raft_conf_change){RAFT_CONF_REMOVE, victim};
    }
    if (!cc.op)
        return;
    raft_index index = 0;
    int rc = replica_propose_conf(ln->rp, &cc, &index);
    ln->dirty = true;
    static const char *const ops[] = {"?", "add learner", "promote", "remove", "add voter"};
    TRACE(s, "n%llu conf change: %s n%llu -> %s (index %llu)", U(l), ops[cc.op < 5 ? cc.op : 0],
          U(cc.id), raft_strerror(rc), U(index));
    if (rc == RAFT_OK)
        s->st.conf_changes++;
    node_drive(s, ln);
}

/* Membership decides who runs: a node out of both the leader's configuration
 * and the newest committed one is stopped after a while (its disk kept); one
 * back in either is started again.  The leader alone is not enough: a stale
 * leader's configuration may lack a node the cluster still needs. */
static void janitor(struct sim *s)
{
    struct raft_status st;
    bool leader = leader_status(s, &st) != RAFT_NONE;
    /* A stop is decided only on the word of a current leader: not one that
     * a running node has already left behind in a higher term.  Cut off
     * (check-quorum off), it may lack a member that the newer terms'
     * configuration has, whose add is not committed yet; an operator stops
     * a node once its removal is confirmed.  3-node seed 69272: with n3
     * (leader of term 8, which had just added n4) down, the isolated
     * leader of term 6 had n4 stopped; n1 and n3 count n4 as a voter, and
     * with n2 wiped nobody could win after the heal.  Any leader's
     * configuration still keeps a node running (or starts it again). */
    bool current = leader;
    for (unsigned i = 1; i <= s->n_nodes && current; i++) {
        const struct node *x = &s->nodes[i];
        if (x->up && replica_term(x->rp) > st.term)
            current = false;
    }
    for (unsigned i = 1; i <= s->n_nodes && !s->fail; i++) {
        struct node *x = &s->nodes[i];
        bool member = (leader && is_member(&st.conf, x->id)) || is_member(&s->ck.conf, x->id);
        if (member && !x->up && x->decommissioned) {
            TRACE(s, "n%llu is a member again: restarting", U(x->id));
            node_start(s, x);
        } else if (!member && current && x->up && x->stop_at == SIM_NEVER) {
            x->stop_at = s->now + (s->faults ? prng_range(&s->rng, 0, 400) : 0);
        } else if (member && x->stop_at != SIM_NEVER) {
            x->stop_at = SIM_NEVER;
        }
    }
}

/* A node that is down may have its disk wiped before it restarts, but only
 * where the real guards make that safe: every other running member has
 * applied the record of its data directory (else the wipe is a member that
 * never held data: raftkv-node(8), "Not protected"), and no other member is
 * still known only by a lost directory (its votes dropped: two of them
 * leave a 3-node cluster without an electorate until a member add).  A
 * member removed and stopped need not hold the record: back in with its
 * stale log, it may be a candidate that knows nothing of the wipe, and the
 * wiped node, joined and unrecorded, grants it no vote (FINDINGS.md 6).
 * Liveness, not safety, asks for more: every other member is a voter in
 * its own log and holds a log at least as up to date as the lost one, and
 * none withholds its vote (joined, not recorded yet: a failed voter until
 * a leader records it).  A wiped voter is a failed one until it is
 * replaced, which takes a leader; were the lost log the newest, or the
 * newest on a node that does not campaign (a learner in its own log, a
 * leader whose own removal is pending), no voter might win (FINDINGS.md
 * 2).  Members that restart from a snapshot older than a member replace
 * know the replace from the incarnation file (FINDINGS.md 8). */
static bool wipe_safe(struct sim *s, const struct node *n)
{
    const struct disk *d = &n->disk;
    raft_index last = disk_last_index(d);
    raft_term last_term = d->n ? d->log[d->n - 1].term : d->has_snap ? d->snap.term : 0;
    for (unsigned i = 1; i <= s->n_nodes; i++) {
        const struct node *x = &s->nodes[i];
        if (x == n || !x->started)
            continue;
        if (x->decommissioned) {
            /* Stopped, it is a failed voter wherever a log still counts
             * it (an add not committed when the janitor stopped it, which
             * may win yet): the wipe would be a second failure, and 3 of
             * 4 voters are then out of reach (3-node seeds 24549, 64116
             * once the schedule moved; 69272 is the janitor's side). */
            for (unsigned k = 1; k <= s->n_nodes; k++) {
                const struct node *y = &s->nodes[k];
                struct raft_status yst;
                if (y == n || !y->up)
                    continue;
                replica_status(y->rp, &yst);
                if (is_member(&yst.conf, x->id))
                    return false;
            }
            continue;
        }
        if (!x->up || replica_incarnation(x->rp, n->id) != n->dir_inc ||
            replica_withholding(x->rp))
            return false;
        struct raft_status st;
        replica_status(x->rp, &st);
        const struct raft_member *me = raft_conf_find(&st.conf, x->id);
        if (!me || me->role != RAFT_VOTER || st.last_term < last_term ||
            (st.last_term == last_term && st.last_index < last))
            return false;
    }
    for (unsigned j = 1; j <= s->n_nodes; j++)
        if (j != n->id && blocked(s, j))
            return false;
    return true;
}

static void do_crash(struct sim *s)
{
    struct node *n = NULL;
    raft_id l = world_leader(s);
    if (l && prng_chance(&s->rng, 300000))
        n = &s->nodes[l];
    else
        n = pick_up(s);
    if (!n)
        return;
    node_crash(s, n, "crash");
    n->restart_at = s->now + prng_range(&s->rng, 5, 600);
    s->st.crashes++;
}

/* Leader churn: some seeds knock out new leaders soon after they win, before
 * their own entries reach a majority.  That is the shape of Figure 8 in the
 * Raft paper, which random faults alone reach too rarely. */
static void churn(struct sim *s)
{
    raft_id l = world_leader(s);
    if (l && replica_term(s->nodes[l].rp) > s->churn_seen) {
        s->churn_seen = replica_term(s->nodes[l].rp);
        if (prng_chance(&s->rng, s->p.churn_ppm)) {
            s->churn_target = l;
            /* Often before its first AppendEntries lands (a partition drops
             * messages in flight): its no-op then exists in its log alone. */
            s->churn_at = s->now + (prng_chance(&s->rng, 500000)
                                        ? prng_range(&s->rng, 0, 2)
                                        : prng_range(&s->rng, 1, 4ULL * s->nodes[l].tick_period));
        }
    }
    if (s->just_committed && prng_chance(&s->rng, s->p.strike_ppm)) {
        /* Strike right after a commit: followers have not heard of it yet. */
        s->churn_target = s->just_committed;
        s->churn_at = s->now;
    }
    s->just_committed = RAFT_NONE;
    if (!s->churn_target || s->now < s->churn_at)
        return;
    struct node *n = &s->nodes[s->churn_target];
    s->churn_target = RAFT_NONE;
    if (!n->up || replica_role(n->rp) != RAFT_LEADER)
        return;
    if (!s->net.partitioned && prng_chance(&s->rng, 600000)) {
        net_partition(s, n->id, PART_ISOLATE_LEADER);
        return;
    }
    node_crash(s, n, "leader churn");
    n->restart_at = s->now + prng_range(&s->rng, 5, 300);
    s->st.crashes++;
}

/* Lease reads: a leader that sent TimeoutNow may be deposed at once, its
 * target's vote requests waiving the voters' stickiness, so it must answer
 * no more reads on its lease (readindex.c).  Some seeds make it deaf right
 * then: it cannot hear of the new term while clients go on reading from it,
 * which random partitions alone almost never arrange. */
static void handover_strike(struct sim *s)
{
    raft_id l = s->handed_over;
    s->handed_over = RAFT_NONE;
    if (l && !s->net.partitioned && prng_chance(&s->rng, s->p.handover_ppm))
        net_partition(s, l, PART_DEAF_LEADER);
}

static void faults_step(struct sim *s)
{
    struct prng *g = &s->rng;
    if (s->p.handover_ppm)
        handover_strike(s);
    if (s->p.churn_ppm || s->p.strike_ppm)
        churn(s);
    if (!s->net.partitioned && prng_chance(g, s->p.partition_ppm))
        net_partition(s, world_leader(s), PART_RANDOM);
    else if (s->net.partitioned && s->now >= s->net.heal_at)
        net_heal(s);
    if (prng_chance(g, s->p.crash_ppm))
        do_crash(s);
    if (prng_chance(g, s->p.clock_change_ppm)) {
        struct node *n = &s->nodes[prng_range(g, 1, s->n_nodes)];
        n->tick_period = (unsigned)prng_range(g, s->p.tick_min, s->p.tick_max);
        TRACE(s, "n%llu clock now ticks every %u units", U(n->id), n->tick_period);
    }
    if (prng_chance(g, s->p.prop_ppm)) {
        unsigned burst = prng_chance(g, 100000) ? (unsigned)prng_range(g, 2, 8) : 1;
        for (unsigned i = 0; i < burst && !s->fail; i++)
            client_propose(s);
    }
    if (prng_chance(g, s->p.read_ppm))
        client_read(s);
    if (prng_chance(g, s->p.transfer_ppm))
        do_transfer(s);
    if (prng_chance(g, s->p.conf_ppm))
        do_conf_change(s);
}

/* ---- time ---------------------------------------------------------------- */

static void step(struct sim *s)
{
    s->now++;
    s->st.steps++;
    if (s->faults)
        faults_step(s);

    for (unsigned i = 1; i <= s->n_nodes && !s->fail; i++) {
        struct node *n = &s->nodes[i];
        if (!n->up && s->now >= n->restart_at) {
            node_start(s, n);
        } else if (!n->up && n->started && !n->decommissioned && !n->wiped_down && s->faults &&
                   prng_chance(&s->rng, s->p.wipe_ppm) && wipe_safe(s, n)) {
            node_wipe(s, n);
        } else if (n->up && s->now >= n->stop_at) {
            node_crash(s, n, "stopped: no longer a member");
            n->decommissioned = true;
            n->restart_at = SIM_NEVER;
            n->stop_at = SIM_NEVER;
        }
    }
    /* Clocks: each node ticks at its own rate. */
    for (unsigned i = 1; i <= s->n_nodes && !s->fail; i++) {
        struct node *n = &s->nodes[i];
        for (int k = 0; n->up && n->next_tick <= s->now && k < 4 && !s->fail; k++) {
            replica_tick(n->rp);
            n->dirty = true;
            n->next_tick += n->tick_period;
            node_drive(s, n);
        }
    }
    net_deliver_due(s);
    /* Disks: the oldest pending write of a node lands now and then. */
    for (unsigned i = 1; i <= s->n_nodes && !s->fail; i++) {
        struct node *n = &s->nodes[i];
        if (n->up && n->pend && prng_chance(&s->rng, s->p.disk_ppm)) {
            /* Usually an fsync covers the whole queue (group commit). */
            size_t k = prng_chance(&s->rng, 600000) ? n->n_pend
                                                    : (size_t)prng_range(&s->rng, 1, n->n_pend);
            disk_complete(s, n, k);
            node_drive(s, n);
        }
        if (n->up && n->bg_on && !s->fail && prng_chance(&s->rng, s->p.disk_ppm)) {
            disk_bg_done(s, n);
            node_drive(s, n);
        }
    }
    if (!s->faults || s->now % 16 == 0)
        janitor(s);
    for (unsigned i = 1; i <= s->n_nodes; i++) {
        struct node *n = &s->nodes[i];
        if (n->dirty && !s->fail)
            check_node(s, n);
        n->dirty = false;
    }
}

/* A leader that every live voter of its configuration follows. */
static raft_id stable_leader(struct sim *s)
{
    struct raft_status st;
    raft_id l = leader_status(s, &st);
    if (!l)
        return RAFT_NONE;
    for (uint32_t i = 0; i < st.conf.n; i++) {
        struct node *m = &s->nodes[st.conf.m[i].id];
        if (st.conf.m[i].role != RAFT_VOTER || blocked(s, m->id))
            continue;
        if (!m->up || replica_leader(m->rp) != l)
            return RAFT_NONE;
    }
    return l;
}

/* Members of the leader's configuration that lack an acknowledged write. */
static bool converged(struct sim *s, raft_id *lagging, uint64_t *missing)
{
    raft_id l = stable_leader(s);
    *lagging = RAFT_NONE;
    *missing = 0;
    if (!l)
        return false;
    struct raft_status st;
    replica_status(s->nodes[l].rp, &st);
    for (uint32_t i = 0; i < st.conf.n; i++) {
        struct node *m = &s->nodes[st.conf.m[i].id];
        if (blocked(s, m->id))
            continue;
        if (!m->up || !check_acked_applied(s, m, missing)) {
            *lagging = m->id;
            return false;
        }
    }
    return true;
}

static void liveness(struct sim *s)
{
    s->faults = false;
    net_heal(s);
    for (unsigned i = 1; i <= s->n_nodes; i++) {
        struct node *n = &s->nodes[i];
        if (!n->up && n->started && !n->decommissioned)
            n->restart_at = s->now + 1;
    }
    TRACE(s, "=== schedule over: healed, no more loss, crashed nodes restart ===");
    uint64_t bound = 40ULL * s->p.election_ticks * TICK_MAX;
    uint64_t t0 = s->now;
    while (!s->fail && s->now - t0 < bound && !stable_leader(s))
        step(s);
    if (s->fail)
        return;
    if (!stable_leader(s)) {
        sim_fail(s, FAIL_LIVENESS, "liveness: no stable leader %llu ticks after the heal",
                 U(bound / TICK_MAX));
        return;
    }
    TRACE(s, "=== leader n%llu after %llu units; waiting for every member to catch up ===",
          U(stable_leader(s)), U(s->now - t0));
    raft_id lagging = RAFT_NONE;
    uint64_t missing = 0;
    t0 = s->now;
    while (!s->fail && s->now - t0 < bound && !converged(s, &lagging, &missing))
        step(s);
    if (!s->fail && !converged(s, &lagging, &missing)) {
        if (lagging == RAFT_NONE)
            sim_fail(s, FAIL_LIVENESS, "liveness: lost the stable leader while catching up");
        else
            sim_fail(s, FAIL_LIVENESS,
                     "liveness: proposal %llu was acknowledged as committed but n%llu has not "
                     "applied it %llu ticks after the heal",
                     U(missing), U(lagging), U(bound / TICK_MAX));
    }
}

void world_run(struct sim *s, uint64_t seed, unsigned nodes, uint64_t steps, int trace_mode,
               enum lease_mode lease)
{
    s->seed = seed;
    s->lease_mode = lease;
    s->n_init = nodes;
    s->n_nodes = nodes + 1;
    s->steps = steps;
    s->trace_mode = trace_mode;
    s->next_read_ctx = 1;
    s->net.heal_at = SIM_NEVER;
    prng_seed(&s->rng, seed);
    draw_params(s);
    const struct params *p = &s->p;
    TRACE(s,
          "seed %llu: %u nodes + 1 spare, loss %u ppm, dup %u ppm, delay 1..%u (+%u ppm long), "
          "election %u hb %u ticks, batch %u entries/%u bytes, inflight %u, apply %u, "
          "pre-vote %d, check-quorum %d, snapshot every %u (trailing %u), disk %u ppm, "
          "wipe %u ppm, background snapshots %d, lease %d (drift %u, ticks %u..%u units)",
          U(seed), nodes, p->loss_ppm, p->dup_ppm, p->delay_max, p->long_delay_ppm,
          p->election_ticks, p->heartbeat_ticks, p->max_msg_entries, p->max_msg_bytes,
          p->max_inflight, p->max_apply, p->pre_vote, p->check_quorum, p->snap_every,
          p->snapshot_trailing, p->disk_ppm, p->wipe_ppm, p->bg_snapshots, p->lease,
          p->lease_drift, p->tick_min, p->tick_max);

    struct raft_conf conf = {0};
    for (unsigned i = 1; i <= s->n_nodes; i++) {
        struct node *n = &s->nodes[i];
        n->id = i;
        n->tick_period = (unsigned)prng_range(&s->rng, s->p.tick_min, s->p.tick_max);
        n->restart_at = SIM_NEVER;
        n->stop_at = SIM_NEVER;
        if (i <= nodes)
            conf.m[conf.n++] = (struct raft_member){i, RAFT_VOTER};
    }
    s->ck.conf = conf; /* bootstrap writes it as entry 1 everywhere */
    s->ck.conf_index = 1;
    s->ck.initial = conf;
    for (unsigned i = 1; i <= nodes && !s->fail; i++)
        node_start(s, &s->nodes[i]);
    s->faults = true;
    while (!s->fail && s->now < steps)
        step(s);
    if (!s->fail)
        liveness(s);
}

void world_free(struct sim *s)
{
    for (unsigned i = 1; i <= s->n_nodes; i++)
        node_free(&s->nodes[i]);
    net_free(s);
    while (s->blobs) {
        struct blob *next = s->blobs->next;
        free(s->blobs);
        s->blobs = next;
    }
    check_free(&s->ck);
}
