/* log.c - the in-memory Raft log: entries after the last compaction point.
 *
 * Headers sit in fixed blocks, payloads in never-moving chunks (see struct
 * raft_log).  Appends copy the payload once and never move a header;
 * compaction and truncation only move cursors, and blocks and chunks
 * nobody needs are freed a few per append, never in between, so a pointer
 * into the log stays valid until the next append, as before.
 */
#include "raft/raft_int.h"

#include <string.h>

void raftlog_init(struct raft_log *l)
{
    memset(l, 0, sizeof(*l));
}

#define CHUNK_MIN 4096u
#define CHUNK_SIZE (1u << 20)
#define BLOCK_BYTES (RAFTLOG_BLOCK * sizeof(struct raft_entry))

static void free_chunks(struct raftlog_chunk *c)
{
    while (c) {
        struct raftlog_chunk *next = c->next;
        free(c);
        c = next;
    }
}

void raftlog_free(struct raft_log *l)
{
    for (size_t b = 0; b < l->n_blocks; b++)
        free(l->blocks[b]);
    free(l->blocks);
    free_chunks(l->chunks);
    free_chunks(l->dead);
    memset(l, 0, sizeof(*l));
}

static struct raft_entry *at(const struct raft_log *l, size_t pos)
{
    return (struct raft_entry *)l->blocks[pos / RAFTLOG_BLOCK]->data + pos % RAFTLOG_BLOCK;
}

raft_term raftlog_last_term(const struct raft_log *l)
{
    return l->n ? at(l, l->head + l->n - 1)->term : l->prev_term;
}

const struct raft_entry *raftlog_get(const struct raft_log *l, raft_index i)
{
    if (i <= l->prev_index || i > raftlog_last_index(l))
        return NULL;
    return at(l, l->head + (i - l->prev_index - 1));
}

size_t raftlog_run(const struct raft_log *l, raft_index i, raft_index last)
{
    if (last > raftlog_last_index(l))
        last = raftlog_last_index(l);
    if (i <= l->prev_index || i > last)
        return 0;
    size_t pos = l->head + (i - l->prev_index - 1);
    size_t to_block_end = RAFTLOG_BLOCK - pos % RAFTLOG_BLOCK;
    return last - i + 1 < to_block_end ? (size_t)(last - i + 1) : to_block_end;
}

int raftlog_term(const struct raft_log *l, raft_index i, raft_term *term)
{
    if (i == l->prev_index) {
        *term = l->prev_term;
        return 0;
    }
    if (i < l->prev_index)
        return RAFT_ECOMPACTED;
    const struct raft_entry *e = raftlog_get(l, i);
    if (!e)
        return RAFT_EUNAVAIL;
    *term = e->term;
    return 0;
}

raft_term raftlog_term_or0(const struct raft_log *l, raft_index i)
{
    raft_term t;
    return raftlog_term(l, i, &t) == 0 ? t : 0;
}

/* Chunks freed per append, at most.  A compaction after 2 M entries of
 * 130 B leaves ~270 chunks of 1 MiB behind; freeing them all in one append
 * (one munmap each) took 12 ms of the loop, a few per append cost nothing
 * and still return the memory within a few hundred appends. */
#define CHUNKS_FREED_PER_APPEND 4

/* Frees some of the oldest chunks once no entry we hold has its payload
 * there, and some of those cut off by truncation; the newest is kept (and
 * emptied) for the next payloads. */
static void release_chunks(struct raft_log *l)
{
    unsigned budget = CHUNKS_FREED_PER_APPEND;
    while (l->dead && budget) {
        struct raftlog_chunk *c = l->dead;
        l->dead = c->next;
        free(c);
        budget--;
    }
    while (l->chunks && l->chunks->last <= l->prev_index) {
        struct raftlog_chunk *c = l->chunks;
        if (c == l->chunk_tail) {
            c->used = 0;
            c->last = 0;
            return;
        }
        if (!budget)
            return;
        l->chunks = c->next;
        l->chunk_bytes -= c->cap;
        free(c);
        budget--;
    }
}

/* Room for len payload bytes at the tail; RAFT_ENOMEM leaves the log as
 * it was. */
static int reserve_bytes(struct raft_log *l, size_t len)
{
    release_chunks(l);
    struct raftlog_chunk *t = l->chunk_tail;
    if (len == 0 || (t && t->cap - t->used >= len))
        return 0;
    /* 4 KiB first, then doubling up to CHUNK_SIZE: a small log stays small. */
    size_t cap = t ? (t->cap < CHUNK_SIZE / 2 ? 2 * t->cap : CHUNK_SIZE) : CHUNK_MIN;
    if (cap < len)
        cap = len;
    struct raftlog_chunk *c = raft_realloc(NULL, sizeof(*c) + cap);
    if (!c)
        return RAFT_ENOMEM;
    *c = (struct raftlog_chunk){.cap = cap};
    if (t)
        t->next = c;
    else
        l->chunks = c;
    l->chunk_tail = c;
    l->chunk_bytes += cap;
    return 0;
}

/* Room for one more header at the tail: a block that was emptied by a
 * truncation or a reset, or a new one.  Only the small array of block
 * pointers ever grows by copying. */
static int reserve_ent(struct raft_log *l)
{
    if (l->head + l->n < l->n_blocks * RAFTLOG_BLOCK)
        return 0;
    if (l->n_blocks == l->cap_blocks) {
        size_t cap = l->cap_blocks ? l->cap_blocks * 2 : 4;
        struct raftlog_chunk **nb = raft_realloc(l->blocks, cap * sizeof(*nb));
        if (!nb)
            return RAFT_ENOMEM;
        l->blocks = nb;
        l->cap_blocks = cap;
    }
    struct raftlog_chunk *b = raft_realloc(NULL, sizeof(*b) + BLOCK_BYTES);
    if (!b)
        return RAFT_ENOMEM;
    *b = (struct raftlog_chunk){.cap = BLOCK_BYTES};
    l->blocks[l->n_blocks++] = b;
    return 0;
}

int raftlog_append(struct raft_log *l, raft_term term, uint8_t type, const void *data, uint32_t len)
{
    RAFT_ASSERT(term >= raftlog_last_term(l));
    int rv = reserve_bytes(l, len);
    if (rv == 0)
        rv = reserve_ent(l);
    if (rv)
        return rv;
    struct raft_entry *e = at(l, l->head + l->n);
    e->term = term;
    e->index = raftlog_last_index(l) + 1;
    e->type = type;
    e->len = len;
    if (len) {
        struct raftlog_chunk *c = l->chunk_tail;
        e->data = c->data + c->used;
        memcpy(c->data + c->used, data, len);
        c->used += len;
        c->last = e->index;
    } else {
        static const uint8_t empty[1];
        e->data = empty; /* never NULL: memcpy(dst, data, 0) must stay defined */
    }
    l->n++;
    return 0;
}

void raftlog_truncate_from(struct raft_log *l, raft_index i)
{
    RAFT_ASSERT(i > l->prev_index);
    if (i > raftlog_last_index(l))
        return;
    /* The first dropped entry with a payload marks where the chunks end. */
    for (raft_index j = i; j <= raftlog_last_index(l); j++) {
        const struct raft_entry *e = raftlog_get(l, j);
        if (!e->len)
            continue;
        struct raftlog_chunk *c = l->chunks;
        while (c && !(e->data >= c->data && e->data < c->data + c->used))
            c = c->next;
        RAFT_ASSERT(c); /* every held payload is in a chunk */
        c->used = (size_t)(e->data - c->data);
        c->last = j - 1; /* an upper bound is enough (struct raftlog_chunk) */
        l->chunk_tail = c;
        /* Freed by later appends, like compacted ones. */
        for (struct raftlog_chunk *d = c->next; d; d = d->next) {
            l->chunk_bytes -= d->cap;
            if (!d->next) {
                d->next = l->dead;
                l->dead = c->next;
                break;
            }
        }
        c->next = NULL;
        break;
    }
    l->n = i - l->prev_index - 1;
}

void raftlog_compact_to(struct raft_log *l, raft_index i)
{
    if (i <= l->prev_index)
        return;
    RAFT_ASSERT(i <= raftlog_last_index(l));
    const struct raft_entry *e = raftlog_get(l, i);
    l->prev_term = e->term;
    size_t drop = i - l->prev_index;
    l->head += drop;
    l->n -= drop;
    l->prev_index = i;
    /* Blocks wholly before head go to the dead list, freed a few per
     * append like chunks (a compaction after 4 M entries drops 256). */
    size_t whole = l->head / RAFTLOG_BLOCK;
    if (whole) {
        for (size_t b = 0; b < whole; b++) {
            l->blocks[b]->next = l->dead;
            l->dead = l->blocks[b];
        }
        memmove(l->blocks, l->blocks + whole, (l->n_blocks - whole) * sizeof(*l->blocks));
        l->n_blocks -= whole;
        l->head -= whole * RAFTLOG_BLOCK;
    }
}

void raftlog_reset(struct raft_log *l, raft_index prev_index, raft_term prev_term)
{
    l->head = l->n = 0;
    /* No entry is left: every chunk goes over the next appends, even if
     * prev_index moved back. */
    for (struct raftlog_chunk *c = l->chunks; c; c = c->next)
        c->last = 0;
    l->prev_index = prev_index;
    l->prev_term = prev_term;
}

size_t raftlog_memory(const struct raft_log *l)
{
    return l->n_blocks * BLOCK_BYTES + l->chunk_bytes;
}

size_t raftlog_batch(const struct raft_log *l, raft_index from, uint32_t max_entries, uint32_t max_bytes,
                     uint64_t *wire_bytes)
{
    *wire_bytes = 0;
    raft_index last = raftlog_last_index(l);
    if (from > last || from <= l->prev_index)
        return 0;
    size_t avail = last - from + 1;
    if (avail > max_entries)
        avail = max_entries;
    size_t run = raftlog_run(l, from, last);
    if (avail > run)
        avail = run;
    const struct raft_entry *e = raftlog_get(l, from);
    size_t k = 0, bytes = 0;
    while (k < avail) {
        bytes += e[k].len;
        if (k > 0 && bytes > max_bytes)
            break;
        *wire_bytes += e[k].len + RAFT_ENTRY_WIRE_BYTES;
        k++;
    }
    return k;
}
