/* log.c - the in-memory Raft log: entries after the last compaction point.
 *
 * Headers and payloads sit in two sliding buffers.  Appends copy the payload
 * once; compaction and truncation only move cursors; a buffer is slid down or
 * doubled only when its tail runs out of room, so the cost per entry stays
 * constant and nothing is allocated per entry.
 */
#include "raft/raft_int.h"

#include <string.h>

void raftlog_init(struct raft_log *l)
{
    memset(l, 0, sizeof(*l));
}

void raftlog_free(struct raft_log *l)
{
    free(l->entries);
    free(l->bytes);
    memset(l, 0, sizeof(*l));
}

raft_term raftlog_last_term(const struct raft_log *l)
{
    return l->n ? l->entries[l->head + l->n - 1].term : l->prev_term;
}

const struct raft_entry *raftlog_get(const struct raft_log *l, raft_index i)
{
    if (i <= l->prev_index || i > raftlog_last_index(l))
        return NULL;
    return &l->entries[l->head + (i - l->prev_index - 1)];
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

/* Payload pointers are absolute, so after the byte buffer moves every live
 * header is re-pointed.  That happens only when the buffer is slid or
 * doubled, i.e. after at least as many bytes were appended as are live. */
static void rebase_payloads(struct raft_log *l, const uint8_t *old_base, size_t old_bhead)
{
    for (size_t k = 0; k < l->n; k++) {
        struct raft_entry *e = &l->entries[l->head + k];
        size_t off = (size_t)(e->data - old_base) - old_bhead;
        e->data = l->bytes + off;
    }
}

static int reserve_bytes(struct raft_log *l, size_t len)
{
    if (l->bytes_tail + len <= l->bytes_cap)
        return 0;
    size_t live = l->bytes_tail - l->bytes_head;
    uint8_t *old = l->bytes;
    size_t old_bhead = l->bytes_head;
    if (live + len <= l->bytes_cap / 2) {
        memmove(l->bytes, l->bytes + l->bytes_head, live);
    } else {
        size_t cap = l->bytes_cap ? l->bytes_cap : 4096;
        /* grow by doubling: amortized O(1) per byte appended */
        while (cap < live + len + live / 4)
            cap *= 2;
        uint8_t *nb = raft_realloc(NULL, cap);
        if (!nb)
            return RAFT_ENOMEM;
        if (live)
            memcpy(nb, l->bytes + l->bytes_head, live);
        l->bytes = nb;
        l->bytes_cap = cap;
    }
    l->bytes_head = 0;
    l->bytes_tail = live;
    rebase_payloads(l, old, old_bhead);
    if (old != l->bytes)
        free(old);
    return 0;
}

static int reserve_ent(struct raft_log *l)
{
    if (l->head + l->n < l->cap)
        return 0;
    if (l->n + 1 <= l->cap / 2) {
        memmove(l->entries, l->entries + l->head, l->n * sizeof(*l->entries));
    } else {
        size_t cap = l->cap ? l->cap * 2 : 256;
        struct raft_entry *ne = raft_realloc(NULL, cap * sizeof(*ne));
        if (!ne)
            return RAFT_ENOMEM;
        if (l->n)
            memcpy(ne, l->entries + l->head, l->n * sizeof(*ne));
        free(l->entries);
        l->entries = ne;
        l->cap = cap;
    }
    l->head = 0;
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
    struct raft_entry *e = &l->entries[l->head + l->n];
    e->term = term;
    e->index = raftlog_last_index(l) + 1;
    e->type = type;
    e->len = len;
    e->data = l->bytes + l->bytes_tail;
    if (len)
        memcpy(l->bytes + l->bytes_tail, data, len);
    l->bytes_tail += len;
    l->n++;
    return 0;
}

void raftlog_truncate_from(struct raft_log *l, raft_index i)
{
    RAFT_ASSERT(i > l->prev_index);
    if (i > raftlog_last_index(l))
        return;
    const struct raft_entry *e = raftlog_get(l, i);
    l->bytes_tail = (size_t)(e->data - l->bytes);
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
    l->bytes_head = l->n ? (size_t)(l->entries[l->head].data - l->bytes) : l->bytes_tail;
    if (l->n == 0) {
        l->head = 0;
        l->bytes_head = l->bytes_tail = 0;
    }
}

void raftlog_reset(struct raft_log *l, raft_index prev_index, raft_term prev_term)
{
    l->head = l->n = 0;
    l->bytes_head = l->bytes_tail = 0;
    l->prev_index = prev_index;
    l->prev_term = prev_term;
}

size_t raftlog_memory(const struct raft_log *l)
{
    return l->cap * sizeof(*l->entries) + l->bytes_cap;
}

size_t raftlog_batch(const struct raft_log *l, raft_index from, uint32_t max_entries, uint32_t max_bytes)
{
    raft_index last = raftlog_last_index(l);
    if (from > last || from <= l->prev_index)
        return 0;
    size_t avail = last - from + 1;
    if (avail > max_entries)
        avail = max_entries;
    const struct raft_entry *e = raftlog_get(l, from);
    size_t k = 0, bytes = 0;
    while (k < avail) {
        bytes += e[k].len;
        if (k > 0 && bytes > max_bytes)
            break;
        k++;
    }
    return k;
}
