/* session.c - write sessions for clients that bring none.  A slot is one
 * (client_id, sequence) stream with at most one write outstanding, so any
 * retry is the slot's latest sequence, which is the one result a node caches
 * per client_id.  Slots are reused, so the nodes see few sessions; the pool
 * grows only as far as writes are concurrently outstanding. */
#include "proxy/proxy_int.h"

#include "common/log.h"

#include <stdlib.h>
#include <sys/random.h>

static uint64_t random_client_id(void)
{
    uint64_t v = 0;
    while (v == 0) {
        if (getrandom(&v, sizeof(v), 0) != (ssize_t)sizeof(v))
            v = ((uint64_t)random() << 33) ^ ((uint64_t)random() << 11) ^ (uint64_t)random();
    }
    return v;
}

void session_renew(struct slot *s)
{
    s->client_id = random_client_id();
    s->seq = 0;
}

struct slot *session_acquire(struct proxy *p)
{
    struct slot *s = p->free_slots;
    if (s) {
        p->free_slots = s->next_free;
    } else {
        s = calloc(1, sizeof(*s));
        if (!s)
            return NULL;
        session_renew(s);
        p->n_slots++;
        log_debug("session pool grows to %zu", p->n_slots);
    }
    s->next_free = NULL;
    s->seq++;
    return s;
}

void session_release(struct proxy *p, struct slot *s)
{
    s->next_free = p->free_slots;
    p->free_slots = s;
}

void sessions_free(struct proxy *p)
{
    struct slot *s;
    while ((s = p->free_slots)) {
        p->free_slots = s->next_free;
        free(s);
    }
    p->n_slots = 0;
}
