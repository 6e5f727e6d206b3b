/* workq.h - one background thread that runs queued jobs in order, started
 * on the first job.  The reaper (frees) and snapread (reads snapshot
 * chunks) are two of them: each keeps its work off the event loop without
 * a thread per job, and a new job never waits for the one before to be
 * handed over. */
#ifndef RAFTKV_NODE_WORKQ_H
#define RAFTKV_NODE_WORKQ_H

#include <pthread.h>
#include <stdbool.h>

struct workq_job {
    struct workq_job *next;
    void (*run)(struct workq_job *j); /* on the thread; may free j */
};

struct workq {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    bool background; /* the thread runs at a lower priority than the loop */
    bool started, stopping, stopped;
    struct workq_job *head, *tail;
};

/* background: a lower priority (node_background_thread), for work that
 * must not take CPU from the loop; not for work the loop waits for. */
void workq_init(struct workq *q, bool background);
/* Queues j.  false when no thread could be started (or the queue is
 * stopped): j was not queued, and the caller runs it itself. */
bool workq_push(struct workq *q, struct workq_job *j);
/* Runs every job still queued, then stops the thread.  Idempotent. */
void workq_stop(struct workq *q);

#endif
