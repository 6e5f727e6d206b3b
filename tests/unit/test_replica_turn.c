/* test_replica_turn.c - the replica applies at most apply_per_turn entries
 * between two replica_turn() calls, however often replica_process() and
 * replica_durable() run in between (the node calls replica_turn() once per
 * loop iteration), and the rest in the turns after.  With the slice counted
 * per call instead, one iteration at 10 M keys applied three slices (27 ms). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "replica_fix.h"

#define SLICE 4
#define ENTRIES 21

static void test_apply_slice_per_turn(void **state)
{
    (void)state;
    struct fix *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->apply_per_turn = SLICE;
    fix_open(f, 2, true);
    struct raft_entry e[ENTRIES];
    e[0] = conf_entry(1, 1);
    for (raft_index i = 1; i < ENTRIES; i++)
        e[i] = noop_entry(i + 1, 2);
    /* one turn: two replica_process and two replica_durable calls */
    fix_append(f, 1, 2, 0, 0, e, ENTRIES, ENTRIES);
    assert_in_range(f->n_applied, 1, SLICE);
    assert_true(replica_has_ready(f->rp));

    unsigned turns = 1;
    while (f->n_applied < ENTRIES && turns < 50) {
        size_t before = f->n_applied;
        replica_turn(f->rp);
        replica_process(f->rp);
        replica_process(f->rp); /* a second call in the same turn adds nothing past the slice */
        assert_in_range(f->n_applied - before, 1, SLICE);
        turns++;
    }
    assert_int_equal(f->n_applied, ENTRIES);
    assert_int_equal(replica_applied(f->rp), ENTRIES);
    assert_true(turns >= (ENTRIES + SLICE - 1) / SLICE);
    replica_turn(f->rp);
    replica_process(f->rp);
    assert_int_equal(f->n_applied, ENTRIES);
    fix_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_apply_slice_per_turn),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
