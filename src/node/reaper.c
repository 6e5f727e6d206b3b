/* reaper.c - the background freeing thread (reaper.h).  Started on first
 * use: most nodes never replace their dictionary, but every node that
 * writes snapshots hands their leftovers here. */
#include "node/reaper.h"

#include "kv/kv.h"
#include "node/node_int.h"

#include <stdlib.h>

struct reap_job {
    struct reap_job *next;
    struct kv *kv;
    struct kv_garbage *g;
};

void reaper_init(struct reaper *r)
{
    *r = (struct reaper){0};
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
}

static void *reaper_main(void *arg)
{
    struct reaper *r = arg;
    node_background_thread();
    pthread_mutex_lock(&r->mu);
    for (;;) {
        struct reap_job *j = r->head;
        if (!j) {
            if (r->stopping)
                break;
            pthread_cond_wait(&r->cv, &r->mu);
            continue;
        }
        r->head = j->next;
        if (!r->head)
            r->tail = NULL;
        pthread_mutex_unlock(&r->mu);
        kv_free(j->kv);
        kv_garbage_free(j->g);
        free(j);
        pthread_mutex_lock(&r->mu);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

void reaper_free_later(struct reaper *r, struct kv *kv, struct kv_garbage *g)
{
    if (!kv && !g)
        return;
    struct reap_job *j = malloc(sizeof(*j));
    if (!r->started && j && pthread_create(&r->thread, NULL, reaper_main, r) == 0)
        r->started = true;
    if (!j || !r->started) {
        free(j);
        kv_free(kv);
        kv_garbage_free(g);
        return;
    }
    *j = (struct reap_job){.kv = kv, .g = g};
    pthread_mutex_lock(&r->mu);
    if (r->tail)
        r->tail->next = j;
    else
        r->head = j;
    r->tail = j;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

void reaper_stop(struct reaper *r)
{
    if (r->started) {
        pthread_mutex_lock(&r->mu);
        r->stopping = true;
        pthread_cond_signal(&r->cv);
        pthread_mutex_unlock(&r->mu);
        pthread_join(r->thread, NULL);
        r->started = false;
    }
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
}
