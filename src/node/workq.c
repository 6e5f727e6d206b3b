/* workq.c - a job queue served by one thread (workq.h), at a lower
 * priority than the loop if asked (node_background_thread). */
#include "node/workq.h"

#include "node/node_int.h"

void workq_init(struct workq *q, bool background)
{
    *q = (struct workq){.background = background};
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
}

static void *workq_main(void *arg)
{
    struct workq *q = arg;
    if (q->background)
        node_background_thread();
    pthread_mutex_lock(&q->mu);
    for (;;) {
        struct workq_job *j = q->head;
        if (!j) {
            if (q->stopping)
                break;
            pthread_cond_wait(&q->cv, &q->mu);
            continue;
        }
        q->head = j->next;
        if (!q->head)
            q->tail = NULL;
        pthread_mutex_unlock(&q->mu);
        j->run(j);
        pthread_mutex_lock(&q->mu);
    }
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

bool workq_push(struct workq *q, struct workq_job *j)
{
    if (q->stopped)
        return false;
    if (!q->started && pthread_create(&q->thread, NULL, workq_main, q) == 0)
        q->started = true;
    if (!q->started)
        return false;
    j->next = NULL;
    pthread_mutex_lock(&q->mu);
    if (q->tail)
        q->tail->next = j;
    else
        q->head = j;
    q->tail = j;
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
    return true;
}

void workq_stop(struct workq *q)
{
    if (q->stopped)
        return;
    if (q->started) {
        pthread_mutex_lock(&q->mu);
        q->stopping = true;
        pthread_cond_signal(&q->cv);
        pthread_mutex_unlock(&q->mu);
        pthread_join(q->thread, NULL);
        q->started = false;
    }
    q->stopped = true;
    pthread_cond_destroy(&q->cv);
    pthread_mutex_destroy(&q->mu);
}
