/* test_log.c - the in-memory log's payload chunks (src/raft/log.c): across
 * many chunks, compaction, conflict truncation and a reset, every entry
 * held reads back exactly what was appended, and memory is given back once
 * compacted chunks are released at the next append; headers sit in fixed
 * blocks that never move. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "raft/raft_int.h"

/* Entry i's payload: length from i (some empty, one larger than a chunk),
 * bytes from i and the generation (2 after a truncation rewrote it). */
static uint32_t len_of(raft_index i)
{
    return i == 777 ? (2u << 20) + 3 : i % 7 == 0 ? 0 : (uint32_t)(i * 37 % 3000);
}

static void fill(uint8_t *b, raft_index i, unsigned gen)
{
    for (uint32_t k = 0; k < len_of(i); k++)
        b[k] = (uint8_t)(i * 31 + k * 7 + gen);
}

static uint8_t buf[(2u << 20) + 3];

static void append(struct raft_log *l, raft_index i, unsigned gen)
{
    fill(buf, i, gen);
    assert_int_equal(raftlog_append(l, gen, 1, buf, len_of(i)), 0);
    assert_int_equal(raftlog_last_index(l), i);
}

static void check(const struct raft_log *l, raft_index from, raft_index to, unsigned gen)
{
    for (raft_index i = from; i <= to; i++) {
        const struct raft_entry *e = raftlog_get(l, i);
        assert_non_null(e);
        assert_non_null(e->data);
        assert_int_equal(e->len, len_of(i));
        fill(buf, i, gen);
        if (e->len)
            assert_memory_equal(e->data, buf, e->len);
    }
}

static size_t chunk_count(const struct raft_log *l)
{
    size_t k = 0;
    for (const struct raftlog_chunk *c = l->chunks; c; c = c->next)
        k++;
    for (const struct raftlog_chunk *c = l->dead; c; c = c->next)
        k++;
    return k;
}

static void test_chunks(void **state)
{
    (void)state;
    struct raft_log l;
    raftlog_init(&l);
    for (raft_index i = 1; i <= 6000; i++)
        append(&l, i, 1);
    check(&l, 1, 6000, 1);
    size_t full = raftlog_memory(&l);

    raftlog_compact_to(&l, 5000);
    /* compacted chunks go over the next appends, a few at a time */
    size_t before = chunk_count(&l);
    append(&l, 6001, 1);
    assert_true(before - chunk_count(&l) <= 4);
    raft_index next = 6002;
    while (raftlog_memory(&l) >= full / 2 && next < 6100)
        append(&l, next++, 1);
    assert_true(raftlog_memory(&l) < full / 2);
    check(&l, 5001, next - 1, 1);

    /* a conflicting leader: everything from 5500 is replaced */
    raftlog_truncate_from(&l, 5500);
    assert_int_equal(raftlog_last_index(&l), 5499);
    for (raft_index i = 5500; i <= 7000; i++)
        append(&l, i, 2);
    check(&l, 5001, 5499, 1);
    check(&l, 5500, 7000, 2);

    /* truncation inside the newest chunk, and of empty payloads only */
    raftlog_truncate_from(&l, 6999);
    append(&l, 6999, 2);
    check(&l, 5500, 6999, 2);
    raftlog_truncate_from(&l, 6999); /* 6999 % 7 == 0: an empty payload */
    append(&l, 6999, 2);
    append(&l, 7000, 2);
    check(&l, 5001, 5499, 1);
    check(&l, 5500, 7000, 2);

    /* a snapshot replaces everything */
    raftlog_reset(&l, 10000, 3);
    append(&l, 10001, 3);
    check(&l, 10001, 10001, 3);
    assert_true(raftlog_memory(&l) < full / 4);
    raftlog_free(&l);
}

static size_t dead_count(const struct raft_log *l)
{
    size_t k = 0;
    for (const struct raftlog_chunk *c = l->dead; c; c = c->next)
        k++;
    return k;
}

/* Headers live in fixed blocks: no append moves one (the address of every
 * header held stays the same across appends that add blocks), a run
 * handed out as an array ends at its block's end, and a compaction gives
 * whole blocks back, a few per append. */
static void test_blocks(void **state)
{
    (void)state;
    struct raft_log l;
    raftlog_init(&l);
    static const uint8_t none[1];
    const raft_index total = 5 * RAFTLOG_BLOCK + 123;
    for (raft_index i = 1; i <= RAFTLOG_BLOCK; i++)
        assert_int_equal(raftlog_append(&l, 1, 1, none, 0), 0);
    const struct raft_entry *first = raftlog_get(&l, 1), *last0 = raftlog_get(&l, RAFTLOG_BLOCK);
    for (raft_index i = RAFTLOG_BLOCK + 1; i <= total; i++)
        assert_int_equal(raftlog_append(&l, 1, 1, none, 0), 0);
    assert_ptr_equal(raftlog_get(&l, 1), first);
    assert_ptr_equal(raftlog_get(&l, RAFTLOG_BLOCK), last0);
    assert_int_equal(l.n_blocks, 6);
    assert_int_equal(raftlog_memory(&l), 6 * RAFTLOG_BLOCK * sizeof(struct raft_entry));

    /* runs: each one array of consecutive entries, never past a block */
    for (raft_index i = 1; i <= total;) {
        size_t run = raftlog_run(&l, i, total);
        assert_true(run >= 1 && run <= RAFTLOG_BLOCK);
        const struct raft_entry *e = raftlog_get(&l, i);
        for (size_t k = 0; k < run; k++)
            assert_int_equal(e[k].index, i + k);
        i += run;
        assert_true(i > total || (i - 1) % RAFTLOG_BLOCK == 0);
    }
    assert_int_equal(raftlog_run(&l, 10, 20), 11);
    assert_int_equal(raftlog_run(&l, total, total + 100), 1);
    assert_int_equal(raftlog_run(&l, total + 1, total + 100), 0);
    uint64_t wire;
    assert_int_equal(raftlog_batch(&l, RAFTLOG_BLOCK - 9, 4096, 1u << 20, &wire), 10);

    /* a compaction into the third block: two blocks go, over the next appends */
    raftlog_compact_to(&l, 2 * RAFTLOG_BLOCK + 7);
    assert_int_equal(l.n_blocks, 4);
    assert_int_equal(l.head, 7);
    assert_int_equal(dead_count(&l), 2);
    assert_int_equal(raftlog_get(&l, 2 * RAFTLOG_BLOCK + 8)->index, 2 * RAFTLOG_BLOCK + 8);
    assert_int_equal(raftlog_append(&l, 1, 1, none, 0), 0);
    assert_int_equal(dead_count(&l), 0);
    assert_int_equal(raftlog_get(&l, total + 1)->index, total + 1);

    /* everything compacted: the next append starts a block of its own */
    raftlog_compact_to(&l, total + 1);
    assert_int_equal(l.n, 0);
    assert_int_equal(raftlog_append(&l, 1, 1, none, 0), 0);
    assert_int_equal(raftlog_get(&l, total + 2)->index, total + 2);
    assert_null(raftlog_get(&l, total + 1));
    raftlog_free(&l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chunks),
        cmocka_unit_test(test_blocks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
