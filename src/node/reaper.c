/* reaper.c - the background freeing thread (reaper.h), a workq: started on
 * first use, since most nodes never replace their dictionary, but every
 * node that writes snapshots hands their leftovers here. */
#include "node/reaper.h"

#include "kv/kv.h"

#include <stdlib.h>

struct reap_job {
    struct workq_job job; /* first: run() gets this */
    struct kv *kv;
    struct kv_garbage *g;
};

static void reap(struct workq_job *wj)
{
    struct reap_job *j = (struct reap_job *)wj;
    kv_free(j->kv);
    kv_garbage_free(j->g);
    free(j);
}

void reaper_init(struct reaper *r)
{
    workq_init(&r->q, true);
}

void reaper_free_later(struct reaper *r, struct kv *kv, struct kv_garbage *g)
{
    if (!kv && !g)
        return;
    struct reap_job *j = malloc(sizeof(*j));
    if (!j) {
        kv_free(kv);
        kv_garbage_free(g);
        return;
    }
    *j = (struct reap_job){.job.run = reap, .kv = kv, .g = g};
    if (!workq_push(&r->q, &j->job))
        reap(&j->job); /* no thread to be had: free on the spot */
}

void reaper_stop(struct reaper *r)
{
    workq_stop(&r->q);
}
