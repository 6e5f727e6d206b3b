/* test_membership.c - one-server-at-a-time membership changes (thesis
 * §4.1): learners that receive the log without voting, promotion once caught
 * up, removal (a removed member is replicated to until its removal commits),
 * a configuration taking effect when appended (and reverting when its entry
 * is truncated), and the configuration's wire form. */
#include "harness.h"

#include <string.h>

static struct h_node *leader3(const struct raft_config *cfg)
{
    struct h_node *l = h_restore(1, 3, 1, 0, T(1), 1, cfg);
    h_make_leader(l);
    h_ack_all(l);
    return l;
}

/* Voters 2 and 3 acknowledge the leader's last index, which it persists. */
static void ack_voters(struct h_node *l)
{
    h_persist(l);
    h_ack(l, 2, raft_last_index(l->r));
    h_ack(l, 3, raft_last_index(l->r));
}

static const struct raft_member *member(const struct h_node *n, raft_id id)
{
    static struct raft_status st;
    st = h_status(n);
    return raft_conf_find(&st.conf, id);
}

static unsigned voters_of(const struct h_node *n)
{
    struct raft_status st = h_status(n);
    return raft_conf_voters(&st.conf);
}

static void test_add_learner(void **state)
{
    (void)state;
    struct h_node *l = leader3(NULL);
    struct raft_conf_change cc = {.op = RAFT_CONF_ADD_LEARNER, .id = 4};
    raft_index ci = 0;
    assert_int_equal(raft_propose_conf(l->r, &cc, &ci), RAFT_OK);
    assert_int_equal(ci, raft_last_index(l->r));
    /* in force the moment it is appended, before it commits */
    assert_int_equal(h_status(l).conf_index, ci);
    assert_non_null(member(l, 4));
    assert_int_equal(member(l, 4)->role, RAFT_LEARNER);
    assert_int_equal(h_progress(l, 4).role, RAFT_LEARNER);
    assert_int_equal(voters_of(l), 3);
    /* one change at a time */
    struct raft_conf_change cc2 = {.op = RAFT_CONF_ADD_LEARNER, .id = 5};
    assert_int_equal(raft_propose_conf(l->r, &cc2, NULL), RAFT_ECONFPENDING);
    assert_int_equal(raft_propose(l->r, "x", 1, NULL, NULL), RAFT_OK);
    h_drain(l);
    assert_non_null(h_find(l, H_NOW, RAFT_MSG_APPEND, 4));
    assert_int_equal(l->out.n_ents, 2);
    assert_int_equal(l->out.ents[0].type, RAFT_ENTRY_CONF);

    /* the learner's acknowledgement does not commit anything */
    h_persist(l);
    h_ack(l, 4, raft_last_index(l->r));
    assert_int_equal(raft_commit_index(l->r), ci - 1);
    assert_int_equal(raft_propose_conf(l->r, &cc2, NULL), RAFT_ECONFPENDING);
    h_ack(l, 2, ci);
    assert_int_equal(raft_commit_index(l->r), ci);
    /* committed: the next change may go */
    assert_int_equal(raft_propose_conf(l->r, &cc2, NULL), RAFT_OK);
    h_free(l);
}

struct promote_case {
    const char *name;
    raft_index lag_limit;
    unsigned proposals_after_ack; /* entries appended after the learner's ack */
    bool learner_acked;
    int rv;
};

static const struct promote_case promote_cases[] = {
    {"never answered", 2, 0, false, RAFT_ELAGGING},
    {"fully caught up", 2, 0, true, RAFT_OK},
    {"behind by the limit", 2, 2, true, RAFT_OK},
    {"behind by more than the limit", 2, 3, true, RAFT_ELAGGING},
    {"limit 0, one behind", 0, 1, true, RAFT_ELAGGING},
};

static void test_promote_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(promote_cases) / sizeof(promote_cases[0]); i++) {
        const struct promote_case *c = &promote_cases[i];
        h_case = c->name;
        struct raft_config cfg = h_config(1);
        cfg.learner_max_lag = c->lag_limit;
        struct h_node *l = leader3(&cfg);
        struct raft_conf_change add = {.op = RAFT_CONF_ADD_LEARNER, .id = 4};
        CHECK_RV(raft_propose_conf(l->r, &add, NULL), RAFT_OK);
        h_propose(l, 5, 8);
        h_drain(l);
        ack_voters(l);
        if (c->learner_acked)
            h_ack(l, 4, raft_last_index(l->r));
        if (c->proposals_after_ack) {
            h_propose(l, c->proposals_after_ack, 8);
            h_drain(l);
            ack_voters(l);
        }
        CHECK_EQ(raft_commit_index(l->r), raft_last_index(l->r));
        struct raft_conf_change pr = {.op = RAFT_CONF_PROMOTE, .id = 4};
        CHECK_RV(raft_propose_conf(l->r, &pr, NULL), c->rv);
        CHECK_EQ(member(l, 4)->role, c->rv == RAFT_OK ? RAFT_VOTER : RAFT_LEARNER);
        CHECK_EQ(voters_of(l), c->rv == RAFT_OK ? 4 : 3);
        if (c->rv == RAFT_OK) {
            /* now a voter of four: quorum 3 */
            h_drain(l);
            raft_index last = raft_last_index(l->r);
            h_persist(l);
            h_ack(l, 2, last);
            CHECK(raft_commit_index(l->r) < last);
            h_ack(l, 4, last);
            CHECK_EQ(raft_commit_index(l->r), last);
        }
        h_free(l);
    }
    h_case = NULL;
}

struct bad_change_case {
    const char *name;
    uint8_t op;
    raft_id id;
    int rv;
};

/* Leader 1 of voters {1,2,3} + learner 4. */
static const struct bad_change_case bad_cases[] = {
    {"add an existing voter", RAFT_CONF_ADD_LEARNER, 2, RAFT_EINVAL},
    {"add an existing learner as voter", RAFT_CONF_ADD_VOTER, 4, RAFT_EINVAL},
    {"promote a voter", RAFT_CONF_PROMOTE, 3, RAFT_EINVAL},
    {"promote a stranger", RAFT_CONF_PROMOTE, 9, RAFT_EINVAL},
    {"remove a stranger", RAFT_CONF_REMOVE, 9, RAFT_EINVAL},
    {"id 0", RAFT_CONF_ADD_LEARNER, 0, RAFT_EINVAL},
    {"unknown op", 99, 5, RAFT_EINVAL},
    {"add a voter directly", RAFT_CONF_ADD_VOTER, 5, RAFT_OK},
    {"remove a learner", RAFT_CONF_REMOVE, 4, RAFT_OK},
};

static void test_bad_changes_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        const struct bad_change_case *c = &bad_cases[i];
        h_case = c->name;
        struct raft_conf conf = h_conf(3, 1);
        struct h_node *l = h_restore_conf(1, &conf, 1, 0, T(1), 1, NULL);
        h_make_leader(l);
        h_ack_all(l);
        raft_index last = raft_last_index(l->r);
        struct raft_conf_change cc = {.op = c->op, .id = c->id};
        CHECK_RV(raft_propose_conf(l->r, &cc, NULL), c->rv);
        CHECK_EQ(raft_last_index(l->r), last + (c->rv == RAFT_OK));
        if (c->rv != RAFT_OK)
            CHECK_EQ(h_status(l).conf.n, 4);
        h_free(l);
    }
    h_case = NULL;
}

static void test_changes_need_leader(void **state)
{
    (void)state;
    struct h_node *f = h_restore(2, 3, 1, 0, T(1), 1, NULL);
    struct raft_conf_change cc = {.op = RAFT_CONF_ADD_LEARNER, .id = 4};
    assert_int_equal(raft_propose_conf(f->r, &cc, NULL), RAFT_ENOTLEADER);
    h_free(f);
    /* the last voter cannot leave */
    struct h_node *l = h_boot(1, 1, NULL);
    h_make_leader(l);
    cc = (struct raft_conf_change){.op = RAFT_CONF_REMOVE, .id = 1};
    assert_int_equal(raft_propose_conf(l->r, &cc, NULL), RAFT_EINVAL);
    h_free(l);
}

/* A new leader accepts no change until its no-op commits. */
static void test_change_waits_for_noop(void **state)
{
    (void)state;
    struct h_node *l = h_restore(1, 3, 1, 0, T(1), 1, NULL);
    h_make_leader(l);
    struct raft_conf_change cc = {.op = RAFT_CONF_ADD_LEARNER, .id = 4};
    assert_int_equal(raft_propose_conf(l->r, &cc, NULL), RAFT_ECONFPENDING);
    h_ack(l, 2, raft_last_index(l->r));
    assert_int_equal(raft_propose_conf(l->r, &cc, NULL), RAFT_OK);
    h_free(l);
}

static void test_remove_follower(void **state)
{
    (void)state;
    struct h_node *l = leader3(NULL);
    struct raft_conf_change cc = {.op = RAFT_CONF_REMOVE, .id = 3};
    raft_index ci;
    assert_int_equal(raft_propose_conf(l->r, &cc, &ci), RAFT_OK);
    struct raft_status st = h_status(l);
    assert_int_equal(st.conf.n, 2);
    assert_null(raft_conf_find(&st.conf, 3));
    assert_int_equal(st.n_progress, 2); /* the members only */
    h_drain(l);
    /* Until the removal commits, node 3 still gets the log, the entry that
     * removes it included (FINDINGS 9). */
    const struct raft_msg *m = h_find(l, H_NOW, RAFT_MSG_APPEND, 3);
    assert_non_null(m);
    assert_int_equal(m->n_entries, 1);
    assert_int_equal(m->entries[0].index, ci);
    assert_int_equal(m->entries[0].type, RAFT_ENTRY_CONF);
    /* two voters: the leader needs node 2 */
    h_persist(l);
    h_drain(l);
    assert_int_equal(raft_commit_index(l->r), ci - 1);
    h_ack(l, 3, ci); /* a removed node's answer counts for nothing */
    assert_int_equal(raft_commit_index(l->r), ci - 1);
    h_ack(l, 2, ci);
    assert_int_equal(raft_commit_index(l->r), ci);
    /* committed: node 3 hears nothing more */
    h_tick(l, 3);
    h_drain(l);
    assert_non_null(h_find(l, H_NOW, RAFT_MSG_HEARTBEAT, 2));
    assert_int_equal(h_count(l, H_ANY, RAFT_MSG_HEARTBEAT, 3) + h_count(l, H_ANY, RAFT_MSG_APPEND, 3), 0);
    h_free(l);
}

/* FINDINGS 9: a voter whose removal the leader has appended but not
 * committed is still a member of the committed configuration.  Left without
 * heartbeats it times out, and (pre-vote and check-quorum off) its
 * RequestVotes of ever higher terms depose every leader.  The leader keeps
 * replicating to it until the removal commits: it stays quiet, learns its
 * removal, and hears nothing more once the removal commits. */
struct pending_removal_case {
    const char *name;
    unsigned voters;
    raft_id removed;
    raft_id cut[2]; /* voters cut off (and frozen) until the heal */
    bool pre_vote;
};

static const struct pending_removal_case pending_removal_cases[] = {
    {"3 voters, remove 3, 2 cut off", 3, 3, {2, 0}, false},
    {"4 voters, remove 4, 2 and 3 cut off", 4, 4, {2, 3}, false},
    {"4 voters, remove 2, 3 and 4 cut off", 4, 2, {3, 4}, false},
    {"5 voters, remove 5, 2 and 3 cut off", 5, 5, {2, 3}, false},
    {"3 voters, remove 3, 2 cut off, pre-vote", 3, 3, {2, 0}, true},
};

/* Tick every node present once, then deliver among them. */
static void run_ticks(struct h_node **nodes, size_t count, unsigned ticks)
{
    for (unsigned t = 0; t < ticks; t++) {
        for (size_t i = 0; i < count; i++)
            if (nodes[i])
                h_tick(nodes[i], 1);
        h_net_run(nodes, count, 20);
    }
}

static void test_pending_removal_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(pending_removal_cases) / sizeof(pending_removal_cases[0]); i++) {
        const struct pending_removal_case *c = &pending_removal_cases[i];
        h_case = c->name;
        struct h_node *all[5] = {NULL}, *reach[5] = {NULL};
        for (raft_id id = 1; id <= c->voters; id++) {
            struct raft_config cfg = h_config(id);
            cfg.pre_vote = c->pre_vote;
            cfg.check_quorum = false;
            all[id - 1] = reach[id - 1] = h_boot(id, c->voters, &cfg);
        }
        reach[c->cut[0] - 1] = NULL;
        if (c->cut[1])
            reach[c->cut[1] - 1] = NULL;
        struct h_node *l = all[0], *gone = all[c->removed - 1];
        CHECK_RV(raft_campaign(l->r), RAFT_OK);
        h_net_run(all, c->voters, 50);
        CHECK_EQ(raft_role(l->r), RAFT_LEADER);
        raft_term term = raft_current_term(l->r);

        struct raft_conf_change cc = {.op = RAFT_CONF_REMOVE, .id = c->removed};
        raft_index ci;
        CHECK_RV(raft_propose_conf(l->r, &cc, &ci), RAFT_OK);
        run_ticks(reach, c->voters, 10 * h_config(1).election_ticks);
        CHECK_EQ(raft_role(l->r), RAFT_LEADER);
        CHECK_EQ(raft_current_term(l->r), term);
        CHECK_EQ(raft_current_term(gone->r), term);
        CHECK(raft_commit_index(l->r) < ci);
        CHECK_EQ(h_status(l).n_progress, c->voters - 1);
        CHECK_RV(raft_transfer_leader(l->r, c->removed), RAFT_EINVAL);
        /* it holds the entry that removes it, so it no longer campaigns */
        struct raft_status gs = h_status(gone);
        CHECK_EQ(gs.conf_index, ci);
        CHECK(raft_conf_find(&gs.conf, c->removed) == NULL);
        CHECK_RV(raft_campaign(gone->r), RAFT_ESTATE);

        run_ticks(all, c->voters, 3 * h_config(1).election_ticks);
        CHECK_EQ(raft_role(l->r), RAFT_LEADER);
        CHECK_EQ(raft_current_term(l->r), term);
        CHECK(raft_commit_index(l->r) >= ci);
        h_tick(l, 3);
        h_drain(l);
        CHECK_EQ(h_count(l, H_ANY, RAFT_MSG_HEARTBEAT, c->removed), 0);
        CHECK_EQ(h_count(l, H_ANY, RAFT_MSG_APPEND, c->removed), 0);
        h_free_all(all, c->voters);
    }
    h_case = NULL;
}

/* A leader that removes itself keeps leading until the change commits,
 * without counting itself, and then steps down. */
static void test_remove_leader(void **state)
{
    (void)state;
    struct h_node *l = leader3(NULL);
    struct raft_conf_change cc = {.op = RAFT_CONF_REMOVE, .id = 1};
    raft_index ci;
    assert_int_equal(raft_propose_conf(l->r, &cc, &ci), RAFT_OK);
    h_sync(l);
    assert_int_equal(raft_role(l->r), RAFT_LEADER);
    h_ack(l, 2, ci);
    assert_int_equal(raft_role(l->r), RAFT_LEADER); /* quorum of {2,3} is 2 */
    assert_int_equal(raft_commit_index(l->r), ci - 1);
    h_ack(l, 3, ci);
    assert_int_equal(raft_commit_index(l->r), ci);
    assert_int_equal(raft_role(l->r), RAFT_FOLLOWER);
    assert_int_equal(raft_campaign(l->r), RAFT_ESTATE);
    h_free(l);
}

/* A learner never campaigns, whatever happens. */
static void test_learner_never_campaigns(void **state)
{
    (void)state;
    struct raft_conf conf = h_conf(3, 1);
    struct h_node *n = h_restore_conf(4, &conf, 1, 0, T(1), 1, NULL);
    assert_int_equal(raft_campaign(n->r), RAFT_ESTATE);
    h_tick(n, 100);
    h_drain(n);
    assert_int_equal(raft_role(n->r), RAFT_FOLLOWER);
    assert_int_equal(raft_current_term(n->r), 1);
    assert_int_equal(n->out.n_msgs + n->out.n_ap, 0);
    h_free(n);
}

/* End to end: a brand-new node added as a learner receives the whole log
 * from the leader and learns its own role from it. */
static void test_learner_gets_the_log(void **state)
{
    (void)state;
    struct h_node *nodes[4];
    for (raft_id id = 1; id <= 3; id++)
        nodes[id - 1] = h_boot(id, 3, NULL);
    nodes[3] = h_new(4, NULL); /* joins: no bootstrap */
    assert_int_equal(raft_campaign(nodes[0]->r), RAFT_OK);
    h_net_run(nodes, 4, 50);
    assert_int_equal(raft_role(nodes[0]->r), RAFT_LEADER);
    h_propose(nodes[0], 3, 10);
    struct raft_conf_change cc = {.op = RAFT_CONF_ADD_LEARNER, .id = 4};
    h_net_run(nodes, 4, 50);
    assert_int_equal(raft_propose_conf(nodes[0]->r, &cc, NULL), RAFT_OK);
    h_propose(nodes[0], 2, 10);
    h_net_run(nodes, 4, 50);
    h_tick(nodes[0], 1);
    h_net_run(nodes, 4, 50);
    struct raft_status ls = h_status(nodes[0]);
    struct raft_status st = h_status(nodes[3]);
    assert_int_equal(st.last_index, ls.last_index);
    assert_int_equal(st.commit, ls.commit);
    for (raft_index i = 1; i <= ls.last_index; i++)
        assert_int_equal(h_term_at(nodes[3], i), h_term_at(nodes[0], i));
    assert_int_equal(st.conf.n, 4);
    assert_int_equal(raft_conf_find(&st.conf, 4)->role, RAFT_LEARNER);
    assert_int_equal(h_progress(nodes[0], 4).match, ls.last_index);
    assert_int_equal(raft_campaign(nodes[3]->r), RAFT_ESTATE);
    h_free_all(nodes, 4);
}

/* On a follower a configuration entry takes effect when appended and is
 * undone when a new leader truncates it away. */
static void test_conf_reverts_when_truncated(void **state)
{
    (void)state;
    struct h_node *f = h_restore(2, 3, 2, 0, T(1, 1), 2, NULL);
    uint8_t buf[RAFT_CONF_ENCODED_MAX];
    struct raft_conf four = h_conf(3, 1);
    struct raft_entry ce = {.index = 3, .term = 2, .type = RAFT_ENTRY_CONF, .data = buf,
                            .len = (uint32_t)raft_conf_encode(&four, buf)};
    h_step(f, (struct raft_msg){.type = RAFT_MSG_APPEND, .from = 1, .term = 2, .index = 2,
                                .log_term = 1, .entries = &ce, .n_entries = 1});
    assert_int_equal(raft_commit_index(f->r), 0);
    assert_int_equal(h_status(f).conf.n, 4);
    assert_int_equal(h_status(f).conf_index, 3);
    /* raft_conf_at (a snapshot's membership): the entry's from its index */
    struct raft_conf at;
    assert_int_equal(raft_conf_at(f->r, 2, &at), RAFT_OK);
    assert_int_equal(at.n, 3);
    assert_int_equal(raft_conf_at(f->r, 3, &at), RAFT_OK);
    assert_int_equal(at.n, 4);
    static const uint8_t b = 1;
    struct raft_entry ne = {.index = 3, .term = 3, .data = &b, .len = 1};
    h_step(f, (struct raft_msg){.type = RAFT_MSG_APPEND, .from = 3, .term = 3, .index = 2,
                                .log_term = 1, .entries = &ne, .n_entries = 1});
    struct raft_status st = h_status(f);
    assert_int_equal(st.last_index, 3);
    assert_int_equal(st.last_term, 3);
    assert_int_equal(st.conf.n, 3);
    assert_true(st.conf_index < 3);
    assert_null(raft_conf_find(&st.conf, 4));
    assert_int_equal(raft_conf_at(f->r, 3, &at), RAFT_OK);
    assert_int_equal(at.n, 3);
    h_free(f);
}

/* The same on a deposed leader whose uncommitted change is overwritten. */
static void test_leader_conf_reverts_when_truncated(void **state)
{
    (void)state;
    struct h_node *l = leader3(NULL);
    raft_index ci;
    struct raft_conf_change cc = {.op = RAFT_CONF_REMOVE, .id = 3};
    assert_int_equal(raft_propose_conf(l->r, &cc, &ci), RAFT_OK);
    h_sync(l);
    assert_int_equal(h_status(l).conf.n, 2);
    raft_term term = raft_current_term(l->r);
    static const uint8_t b = 1;
    struct raft_entry ne = {.index = ci, .term = term + 1, .data = &b, .len = 1};
    h_step(l, (struct raft_msg){.type = RAFT_MSG_APPEND, .from = 3, .term = term + 1,
                                .index = ci - 1, .log_term = term, .entries = &ne,
                                .n_entries = 1});
    struct raft_status st = h_status(l);
    assert_int_equal(st.role, RAFT_FOLLOWER);
    assert_int_equal(st.last_term, term + 1);
    assert_int_equal(st.conf.n, 3);
    h_free(l);
}

/* ---- wire form ------------------------------------------------------------ */

static void test_conf_round_trip(void **state)
{
    (void)state;
    static const unsigned shapes[][2] = {{0, 0}, {1, 0}, {3, 2}, {5, 0}, {8, 8}, {16, 0}};
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        struct raft_conf c = h_conf(shapes[i][0], shapes[i][1]);
        c.m[0].id = 0x0102030405060708ULL; /* all eight id bytes matter */
        uint8_t buf[RAFT_CONF_ENCODED_MAX];
        size_t len = raft_conf_encode(&c, buf);
        assert_int_equal(len, 4 + 9 * c.n);
        struct raft_conf d;
        memset(&d, 0xab, sizeof(d));
        assert_int_equal(raft_conf_decode(buf, len, &d), RAFT_OK);
        assert_int_equal(d.n, c.n);
        for (uint32_t k = 0; k < c.n; k++) {
            assert_int_equal(d.m[k].id, c.m[k].id);
            assert_int_equal(d.m[k].role, c.m[k].role);
        }
        assert_int_equal(raft_conf_voters(&d), shapes[i][0]);
    }
}

enum mutation { M_TRUNC_HEADER, M_SHORT, M_LONG, M_TOO_MANY, M_ID0, M_ROLE0, M_ROLE3, M_DUP, M_NULL };

struct malformed_case {
    const char *name;
    enum mutation mut;
};

static const struct malformed_case malformed_cases[] = {
    {"shorter than the count", M_TRUNC_HEADER},
    {"one byte short", M_SHORT},
    {"one byte too many", M_LONG},
    {"more members than allowed", M_TOO_MANY},
    {"id 0", M_ID0},
    {"role 0", M_ROLE0},
    {"role 3", M_ROLE3},
    {"duplicate id", M_DUP},
    {"no buffer", M_NULL},
};

static void test_conf_decode_rejects_malformed(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(malformed_cases) / sizeof(malformed_cases[0]); i++) {
        const struct malformed_case *c = &malformed_cases[i];
        h_case = c->name;
        struct raft_conf conf = h_conf(3, 1);
        uint8_t buf[RAFT_CONF_ENCODED_MAX + 16 * 9 + 16];
        memset(buf, 0, sizeof(buf));
        size_t len = raft_conf_encode(&conf, buf);
        const uint8_t *p = buf;
        switch (c->mut) {
        case M_TRUNC_HEADER: len = 3; break;
        case M_SHORT: len -= 1; break;
        case M_LONG: len += 1; break;
        case M_TOO_MANY: {
            struct raft_conf big = h_conf(16, 0);
            len = raft_conf_encode(&big, buf);
            memcpy(buf + len, buf + 4, 9);
            buf[len] = 17;
            len += 9;
            buf[0] = 17;
            break;
        }
        case M_ID0: memset(buf + 4 + 9, 0, 8); break;
        case M_ROLE0: buf[4 + 8] = 0; break;
        case M_ROLE3: buf[4 + 9 + 8] = 3; break;
        case M_DUP: buf[4 + 9 * 3] = 2; break; /* member 4 becomes a second 2 */
        case M_NULL: p = NULL; break;
        }
        struct raft_conf out;
        memset(&out, 0x5a, sizeof(out));
        struct raft_conf before = out;
        CHECK_RV(raft_conf_decode(p, len, &out), RAFT_EINVAL);
        CHECK(memcmp(&out, &before, sizeof(out)) == 0); /* untouched on error */
    }
    h_case = NULL;
}

static void test_conf_find_and_voters(void **state)
{
    (void)state;
    struct raft_conf c = h_conf(3, 2);
    assert_int_equal(raft_conf_voters(&c), 3);
    assert_non_null(raft_conf_find(&c, 5));
    assert_int_equal(raft_conf_find(&c, 5)->role, RAFT_LEARNER);
    assert_int_equal(raft_conf_find(&c, 2)->role, RAFT_VOTER);
    assert_null(raft_conf_find(&c, 6));
    assert_null(raft_conf_find(&c, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_learner),
        cmocka_unit_test(test_promote_table),
        cmocka_unit_test(test_bad_changes_table),
        cmocka_unit_test(test_changes_need_leader),
        cmocka_unit_test(test_change_waits_for_noop),
        cmocka_unit_test(test_remove_follower),
        cmocka_unit_test(test_pending_removal_table),
        cmocka_unit_test(test_remove_leader),
        cmocka_unit_test(test_learner_never_campaigns),
        cmocka_unit_test(test_learner_gets_the_log),
        cmocka_unit_test(test_conf_reverts_when_truncated),
        cmocka_unit_test(test_leader_conf_reverts_when_truncated),
        cmocka_unit_test(test_conf_round_trip),
        cmocka_unit_test(test_conf_decode_rejects_malformed),
        cmocka_unit_test(test_conf_find_and_voters),
    };
    return cmocka_run_group_tests_name("raft-membership", tests, NULL, NULL);
}
