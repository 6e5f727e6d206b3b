/* raft_bench.c - throughput of the consensus core alone: a 3-node cluster in
 * one process, messages handed straight from one node's ready batch to the
 * next node's raft_step(), storage "durable" at once.  What is left is the
 * core's own cost: appending, batching, replicating, committing, applying.
 *
 * Usage: raft-bench [--entries N] [--size BYTES] [--batch K] [--nodes 1..5] [--runs R]
 * Prints the median entries/s over R runs with the range, and the in-memory
 * log's bytes per entry.
 */
#include "raft/raft.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAXN 5

struct bench {
    struct raft *nodes[MAXN];
    unsigned n;
    uint64_t applied_bytes[MAXN];
    uint64_t applied_entries[MAXN];
    raft_index applied_index[MAXN];
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct raft *node_by_id(struct bench *b, raft_id id)
{
    return id >= 1 && id <= b->n ? b->nodes[id - 1] : NULL;
}

static void deliver(struct bench *b, const struct raft_msg *msgs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct raft *to = node_by_id(b, msgs[i].to);
        if (to && raft_step(to, &msgs[i]) != 0) {
            fprintf(stderr, "raft-bench: step failed\n");
            exit(1);
        }
    }
}

/* Run every node's ready loop until the whole cluster is quiet. */
static void pump(struct bench *b)
{
    for (int busy = 1; busy;) {
        busy = 0;
        for (unsigned i = 0; i < b->n; i++) {
            struct raft *r = b->nodes[i];
            while (raft_has_ready(r)) {
                busy = 1;
                struct raft_ready rd;
                raft_ready(r, &rd);
                raft_index pidx = 0;
                raft_term pterm = 0;
                if (rd.n_entries) {
                    pidx = rd.entries[rd.n_entries - 1].index;
                    pterm = rd.entries[rd.n_entries - 1].term;
                }
                deliver(b, rd.msgs, rd.n_msgs);
                /* storage is instant here, so "after persist" is now */
                deliver(b, rd.msgs_after_persist, rd.n_msgs_after_persist);
                for (size_t k = 0; k < rd.n_committed; k++) {
                    b->applied_bytes[i] += rd.committed[k].len;
                    b->applied_entries[i] += rd.committed[k].len ? 1 : 0;
                    b->applied_index[i] = rd.committed[k].index;
                }
                raft_advance(r, &rd);
                if (pidx)
                    raft_persisted(r, pidx, pterm);
            }
        }
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Propose `entries` payloads in batches and wait until every node applied
 * them all; the rate counts the leader's applies over wall time. */
static int throughput_run(struct bench *b, const uint8_t *payload, uint32_t size,
                          uint64_t entries, uint32_t batch, double *rate)
{
    struct raft *leader = b->nodes[0];
    uint64_t start_applied[MAXN];
    for (unsigned i = 0; i < b->n; i++)
        start_applied[i] = b->applied_entries[i];
    double t0 = now_s();
    uint64_t proposed = 0;
    while (proposed < entries) {
        for (uint32_t k = 0; k < batch && proposed < entries; k++, proposed++)
            if (raft_propose(leader, payload, size, NULL, NULL) != 0) {
                fprintf(stderr, "raft-bench: propose failed\n");
                return -1;
            }
        pump(b);
        if ((proposed / batch) % 256 == 0)
            for (unsigned i = 0; i < b->n; i++)
                raft_snapshot_taken(b->nodes[i], b->applied_index[i]);
    }
    pump(b);
    double dt = now_s() - t0;
    uint64_t done = b->applied_entries[0] - start_applied[0];
    /* Followers learn the final commit index from the next heartbeat. */
    raft_tick(leader);
    pump(b);
    for (unsigned i = 0; i < b->n; i++)
        if (b->applied_entries[i] - start_applied[i] != done || done != entries) {
            fprintf(stderr, "raft-bench: node %u applied %llu, leader %llu, proposed %llu\n",
                    i + 1, (unsigned long long)(b->applied_entries[i] - start_applied[i]),
                    (unsigned long long)done, (unsigned long long)entries);
            return -1;
        }
    *rate = (double)done / dt;
    return 0;
}

int main(int argc, char **argv)
{
    uint64_t entries = 2000000;
    uint32_t size = 100, batch = 1024;
    unsigned n = 3, runs = 5;
    static const struct option opts[] = {
        {"entries", required_argument, 0, 'e'}, {"size", required_argument, 0, 's'},
        {"batch", required_argument, 0, 'b'},   {"nodes", required_argument, 0, 'n'},
        {"runs", required_argument, 0, 'r'},    {"help", no_argument, 0, 'h'},          {0, 0, 0, 0},
    };
    for (int c; (c = getopt_long(argc, argv, "e:s:b:n:r:h", opts, NULL)) != -1;) {
        switch (c) {
        case 'e': entries = strtoull(optarg, NULL, 10); break;
        case 's': size = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'b': batch = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'n': n = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'r': runs = (unsigned)strtoul(optarg, NULL, 10); break;
        default:
            printf("usage: raft-bench [--entries N] [--size BYTES] [--batch K] [--nodes 1..5] [--runs R]\n");
            return c == 'h' ? 0 : 2;
        }
    }
    if (n < 1 || n > MAXN || batch == 0 || entries == 0 || runs == 0) {
        fprintf(stderr, "raft-bench: bad arguments\n");
        return 2;
    }

    struct bench b;
    memset(&b, 0, sizeof(b));
    b.n = n;
    struct raft_conf conf = {.n = n};
    for (unsigned i = 0; i < n; i++) {
        conf.m[i].id = i + 1;
        conf.m[i].role = RAFT_VOTER;
    }
    for (unsigned i = 0; i < n; i++) {
        struct raft_config cfg;
        raft_config_defaults(&cfg, i + 1);
        if (raft_new(&b.nodes[i], &cfg) != 0 || raft_bootstrap(b.nodes[i], &conf) != 0) {
            fprintf(stderr, "raft-bench: cannot create node\n");
            return 1;
        }
    }
    raft_campaign(b.nodes[0]);
    pump(&b);
    if (raft_role(b.nodes[0]) != RAFT_LEADER) {
        fprintf(stderr, "raft-bench: node 1 did not become leader\n");
        return 1;
    }
    struct raft *leader = b.nodes[0];
    uint8_t *payload = malloc(size ? size : 1);
    memset(payload, 'x', size);

    /* Phase 1: memory per entry held in the log (no compaction). */
    uint64_t hold = entries < 1000000 ? entries : 1000000;
    for (uint64_t i = 0; i < hold; i++)
        raft_propose(leader, payload, size, NULL, NULL);
    pump(&b);
    raft_tick(leader); /* carries the final commit index to the followers */
    pump(&b);
    size_t mem = raft_log_memory(leader);
    double per_entry = (double)mem / (double)raft_last_index(leader);
    for (unsigned i = 0; i < n; i++)
        raft_snapshot_taken(b.nodes[i], b.applied_index[i]);

    /* Phase 2: throughput, compacting as a real node would; repeated so the
     * summary can give a median and a range rather than one lucky run. */
    double rates[64];
    if (runs > 64)
        runs = 64;
    for (unsigned run = 0; run < runs; run++) {
        if (throughput_run(&b, payload, size, entries, batch, &rates[run]) != 0)
            return 1;
    }
    qsort(rates, runs, sizeof(rates[0]), cmp_double);
    double median = runs % 2 ? rates[runs / 2] : (rates[runs / 2 - 1] + rates[runs / 2]) / 2;
    printf("raft-bench: nodes=%u entries=%llu size=%u batch=%u runs=%u: median %.0f entries/s "
           "(min %.0f, max %.0f), %.1f MB/s; log memory %.1f bytes/entry (%llu entries held)\n",
           n, (unsigned long long)entries, size, batch, runs, median, rates[0], rates[runs - 1],
           median * size / 1e6, per_entry, (unsigned long long)hold);
    for (unsigned i = 0; i < n; i++)
        raft_free(b.nodes[i]);
    free(payload);
    return 0;
}
