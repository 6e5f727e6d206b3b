/* alloc.c - every allocation the core makes, and the out-of-memory policy's
 * plumbing: a failed allocation is remembered on the node and reported by
 * the input that hit it (see "Out of memory" in raft.h), and tests can make
 * allocations fail on purpose.
 */
#include "raft/raft_int.h"

#include <string.h>

static bool (*fail_hook)(void *arg);
static void *fail_arg;

void raft_set_alloc_fail(bool (*fail)(void *arg), void *arg)
{
    fail_hook = fail;
    fail_arg = arg;
}

void *raft_realloc(void *p, size_t size)
{
    if (fail_hook && fail_hook(fail_arg))
        return NULL;
    return realloc(p, size);
}

void *raft_vec_push(struct raft_vec *v, size_t item_size)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 16;
        void *p = raft_realloc(v->items, cap * item_size);
        if (!p)
            return NULL;
        v->items = p;
        v->cap = cap;
    }
    void *item = (char *)v->items + v->n * item_size;
    v->n++;
    memset(item, 0, item_size);
    return item;
}

void *raft_vec_push_or_discard(struct raft *r, struct raft_vec *v, size_t item_size)
{
    void *item = raft_vec_push(v, item_size);
    if (item)
        return item;
    /* The caller fills in something nobody will read: an output we could not
     * queue behaves exactly like one lost on the network. */
    r->out_of_memory = true;
    memset(&r->discard, 0, sizeof(r->discard));
    return &r->discard;
}

int raft_input_result(struct raft *r, int rv)
{
    if (!r->out_of_memory)
        return rv;
    r->out_of_memory = false;
    return rv ? rv : RAFT_ENOMEM;
}
