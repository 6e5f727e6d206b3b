/* test_snapshot_policy.c - when the replica writes a snapshot: after
 * snapshot_entries entries or snapshot_bytes bytes of log, but never while
 * that log is small next to the dataset (issue 14: at 10 M keys a snapshot
 * every 100 000 entries rewrote 1.1 GB every 5 s and the cluster elected
 * leader after leader). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "node/replica.h"

struct due_case {
    const char *name;
    uint64_t cfg_entries, cfg_bytes;
    uint32_t cfg_pct;
    uint64_t entries, log_bytes, data_bytes;
    bool due;
};

#define MB (1000ull * 1000)

static const struct due_case cases[] = {
    {"count reached, no floor", 100000, 0, 0, 100000, 1 * MB, 1000 * MB, true},
    {"count not reached", 100000, 0, 0, 99999, 1 * MB, 0, false},
    {"bytes reached", 100000, 64 * MB, 0, 10, 64 * MB, 0, true},
    {"bytes 0: by count only", 100000, 0, 0, 10, 500 * MB, 0, false},
    {"both 0: never", 0, 0, 0, 1000000000, 500 * MB, 0, false},
    /* 10 M keys of 100 B: 1.1 GB of data, 100 000 entries are 11 MB */
    {"count reached, log under the floor", 100000, 64 * MB, 25, 100000, 11 * MB, 1100 * MB, false},
    {"log at the floor", 100000, 64 * MB, 25, 2500000, 275 * MB, 1100 * MB, true},
    {"small dataset: the floor does not hold back", 100000, 64 * MB, 25, 100000, 11 * MB, 11 * MB,
     true},
    {"floor alone never triggers", 0, 0, 25, 1000000, 500 * MB, 1 * MB, false},
};

static void test_snapshot_due_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct due_case *c = &cases[i];
        struct replica_config cfg;
        replica_config_defaults(&cfg, 1);
        cfg.snapshot_entries = c->cfg_entries;
        cfg.snapshot_bytes = c->cfg_bytes;
        cfg.snapshot_min_log_pct = c->cfg_pct;
        bool due = replica_snapshot_due(&cfg, c->entries, c->log_bytes, c->data_bytes);
        if (due != c->due)
            fail_msg("case '%s': due %d, want %d", c->name, due, c->due);
    }
}

/* Replicas of one log must not all snapshot at the same entry: node ids
 * 1..4 wait 1, 1.25, 1.5, 1.75 times as long, by count, bytes and floor. */
static void test_snapshot_due_staggered(void **state)
{
    (void)state;
    static const uint64_t quarters[] = {4, 5, 6, 7, 4};
    for (raft_id id = 1; id <= 5; id++) {
        struct replica_config cfg;
        replica_config_defaults(&cfg, id);
        cfg.snapshot_entries = 100000;
        cfg.snapshot_bytes = 64 * MB;
        cfg.snapshot_min_log_pct = 25;
        uint64_t q = quarters[id - 1], n = 100000 * q / 4, b = 64 * MB * q / 4;
        assert_true(replica_snapshot_due(&cfg, n, 1 * MB, 0));
        assert_false(replica_snapshot_due(&cfg, n - 1, 1 * MB, 0));
        assert_true(replica_snapshot_due(&cfg, 1, b, 0));
        assert_false(replica_snapshot_due(&cfg, 1, b - 1, 0));
        /* the floor: a quarter of a 1100 MB dataset, scaled */
        uint64_t floor = 1100 * MB / 100 * 25 * q / 4;
        assert_true(replica_snapshot_due(&cfg, n, floor, 1100 * MB));
        assert_false(replica_snapshot_due(&cfg, n, floor - 1, 1100 * MB));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_snapshot_due_table),
        cmocka_unit_test(test_snapshot_due_staggered),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
