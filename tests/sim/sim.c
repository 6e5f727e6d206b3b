/* sim.c - the simulator's command line: run a range of seeds and print one
 * summary line, or replay one seed with its full trace.  On a failure it
 * replays the seed to show the events that led there (normal runs keep no
 * trace at all, so they stay fast), and prints how to rerun it. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "sim.h"

#define DEFAULT_STEPS 5000

void *xrealloc(void *p, size_t size)
{
    void *q = realloc(p, size ? size : 1);
    if (!q) {
        fprintf(stderr, "sim: out of memory\n");
        exit(3);
    }
    return q;
}

void grow(void *arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return;
    size_t nc = *cap ? *cap : 16;
    while (nc < need)
        nc *= 2;
    void **p = arr;
    *p = xrealloc(*p, nc * elem);
    memset((char *)*p + *cap * elem, 0, (nc - *cap) * elem);
    *cap = nc;
}

void tracef(struct sim *s, const char *fmt, ...)
{
    char line[TRACE_LINE];
    int k = snprintf(line, sizeof line, "t=%-6llu ", U(s->now));
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + k, sizeof line - (size_t)k, fmt, ap);
    va_end(ap);
    if (s->trace_mode == 2)
        printf("%s\n", line);
    else
        memcpy(s->ring[s->ring_n++ % TRACE_RING], line, sizeof line);
}

const char *fail_kind_name(enum fail_kind k)
{
    switch (k) {
    case FAIL_SAFETY:
        return "SAFETY";
    case FAIL_CONTRACT:
        return "CONTRACT";
    case FAIL_LIVENESS:
        return "LIVENESS";
    default:
        return "none";
    }
}

void sim_fail(struct sim *s, enum fail_kind kind, const char *fmt, ...)
{
    if (s->fail)
        return; /* the first violation is the one that matters */
    s->fail = kind;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->fail_msg, sizeof s->fail_msg, fmt, ap);
    va_end(ap);
    TRACE(s, "*** %s VIOLATION: %s", fail_kind_name(kind), s->fail_msg);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sim --seeds N [--nodes 3|5] [--first-seed S] [--steps K] [--expect-violation]\n"
            "                   [--keep-going] [--lease | --lease-wild-clocks]\n"
            "       sim --seed S [--nodes 3|5] [--steps K] [--lease | --lease-wild-clocks] [--trace]\n"
            "Runs the Raft core in simulated clusters under seeded faults, checking safety\n"
            "after every step and liveness after the final heal.\n"
            "  --seeds N            run seeds first..first+N-1 and print one summary line\n"
            "  --seed S             run only seed S\n"
            "  --first-seed S       first seed of a --seeds run (default 1)\n"
            "  --nodes 3|5          initial cluster size (default 3; one spare node cycles in)\n"
            "  --steps K            time units of faults per seed (default %d)\n"
            "  --trace              print every event of the run\n"
            "  --expect-violation   exit 0 iff some seed breaks a SAFETY invariant\n"
            "  --keep-going         report every failing seed in one line, do not stop\n"
            "  --lease              leader-lease reads on, clocks within 20%% of each other\n"
            "                       (the drift margin the lease is given)\n"
            "  --lease-wild-clocks  the same lease and margin, clocks 3x apart: beyond the\n"
            "                       assumption (a lease may then be stale)\n"
            "exit: 0 ok, 1 violation (or none found with --expect-violation), 2 usage\n",
            DEFAULT_STEPS);
}

static bool parse_u64(const char *s, uint64_t *out)
{
    if (!s || !*s)
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || *s == '-')
        return false;
    *out = v;
    return true;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void add_stats(struct stats *a, const struct stats *b)
{
    a->proposals += b->proposals;
    a->committed += b->committed;
    a->reads += b->reads;
    a->reads_failed += b->reads_failed;
    a->elections += b->elections;
    a->snaps_taken += b->snaps_taken;
    a->snaps_installed += b->snaps_installed;
    a->snaps_sent += b->snaps_sent;
    a->conf_changes += b->conf_changes;
    a->transfers += b->transfers;
    a->crashes += b->crashes;
    a->partitions += b->partitions;
    a->delivered += b->delivered;
    a->dropped += b->dropped;
    a->steps += b->steps;
    a->wipes += b->wipes;
    a->stale += b->stale;
    a->withheld += b->withheld;
    a->lease_reads += b->lease_reads;
}

/* Replay a failed seed keeping the last TRACE_RING lines, and show them. */
static void report_failure(const struct sim *failed, unsigned nodes, uint64_t steps)
{
    printf("sim: %s VIOLATION at seed %llu (nodes=%u): %s\n", fail_kind_name(failed->fail),
           U(failed->seed), nodes, failed->fail_msg);
    struct sim *r = calloc(1, sizeof *r);
    if (!r)
        return;
    world_run(r, failed->seed, nodes, steps, 1, failed->lease_mode);
    printf("--- last %d events of seed %llu ---\n", TRACE_RING, U(failed->seed));
    unsigned n = r->ring_n < TRACE_RING ? r->ring_n : TRACE_RING;
    for (unsigned i = r->ring_n - n; i < r->ring_n; i++)
        printf("%s\n", r->ring[i % TRACE_RING]);
    if (r->fail != failed->fail || strcmp(r->fail_msg, failed->fail_msg) != 0)
        printf("sim: WARNING: the replay ended differently (%s: %s): the run is not "
               "deterministic, which is a bug in itself\n",
               fail_kind_name(r->fail), r->fail_msg);
    const char *lease = failed->lease_mode == LEASE_BOUNDED ? " --lease"
                        : failed->lease_mode == LEASE_WILD  ? " --lease-wild-clocks"
                                                            : "";
    if (steps == DEFAULT_STEPS)
        printf("rerun: sim --nodes %u --seed %llu%s --trace\n", nodes, U(failed->seed), lease);
    else
        printf("rerun: sim --nodes %u --seed %llu --steps %llu%s --trace\n", nodes,
               U(failed->seed), U(steps), lease);
    world_free(r);
    free(r);
}

int main(int argc, char **argv)
{
    uint64_t seeds = 0, first = 1, steps = DEFAULT_STEPS, nodes = 3;
    bool have_seeds = false, have_seed = false, trace = false, expect = false, keep = false;
    enum lease_mode lease = LEASE_OFF;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true;
        if (!strcmp(a, "--seeds")) {
            ok = parse_u64(v, &seeds) && seeds > 0;
            have_seeds = true;
            i++;
        } else if (!strcmp(a, "--seed")) {
            ok = parse_u64(v, &first);
            have_seed = true;
            i++;
        } else if (!strcmp(a, "--first-seed")) {
            ok = parse_u64(v, &first);
            i++;
        } else if (!strcmp(a, "--nodes")) {
            ok = parse_u64(v, &nodes) && (nodes == 3 || nodes == 5);
            i++;
        } else if (!strcmp(a, "--steps")) {
            ok = parse_u64(v, &steps) && steps > 0 && steps <= 100000000;
            i++;
        } else if (!strcmp(a, "--trace")) {
            trace = true;
        } else if (!strcmp(a, "--expect-violation")) {
            expect = true;
        } else if (!strcmp(a, "--keep-going")) {
            keep = true;
        } else if (!strcmp(a, "--lease")) {
            lease = LEASE_BOUNDED;
        } else if (!strcmp(a, "--lease-wild-clocks")) {
            lease = LEASE_WILD;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else {
            ok = false;
        }
        if (!ok) {
            fprintf(stderr, "sim: bad argument: %s%s%s\n", a, v ? " " : "", v ? v : "");
            usage(stderr);
            return 2;
        }
    }
    if (have_seed == have_seeds || (trace && !have_seed)) {
        usage(stderr);
        return 2;
    }
    if (have_seed)
        seeds = 1;

    /* The replica logs as raftkv-node does; the trace says it all here. */
    log_set_level(LOG_EMERG);
    struct stats total = {0};
    uint64_t other_failures = 0;
    double t0 = now_seconds();
    struct sim *s = calloc(1, sizeof *s);
    if (!s)
        return 3;
    for (uint64_t k = 0; k < seeds; k++) {
        memset(s, 0, sizeof *s);
        uint64_t seed = first + k;
        world_run(s, seed, (unsigned)nodes, steps, trace ? 2 : 0, lease);
        add_stats(&total, &s->st);
        if (s->fail && expect) {
            if (s->fail == FAIL_SAFETY) {
                printf("sim: found the expected SAFETY violation at seed %llu after %llu seeds "
                       "(nodes=%llu): %s\n",
                       U(seed), U(k + 1), U(nodes), s->fail_msg);
                world_free(s);
                free(s);
                return 0;
            }
            other_failures++; /* e.g. liveness in a broken build: keep looking */
        } else if (s->fail && keep) {
            printf("sim: %s VIOLATION at seed %llu: %s\n", fail_kind_name(s->fail), U(seed),
                   s->fail_msg);
            other_failures++;
        } else if (s->fail) {
            if (!trace)
                report_failure(s, (unsigned)nodes, steps);
            else
                printf("sim: %s VIOLATION at seed %llu: %s\n", fail_kind_name(s->fail),
                       U(seed), s->fail_msg);
            world_free(s);
            free(s);
            return 1;
        }
        world_free(s);
    }
    free(s);
    double dt = now_seconds() - t0;

    if (keep && other_failures) {
        printf("sim: %llu of %llu seeds failed (nodes=%llu)\n", U(other_failures), U(seeds),
               U(nodes));
        return 1;
    }
    if (expect) {
        printf("sim: NO safety violation found in %llu seeds (nodes=%llu, %llu other failures): "
               "the checker did not catch the broken rule\n",
               U(seeds), U(nodes), U(other_failures));
        return 1;
    }
    printf("sim: %llu seed%s, nodes=%llu, 0 violations | %llu proposals committed (of %llu), "
           "%llu reads (%llu refused, %llu on a lease), %llu elections, %llu snapshots taken, %llu installed, "
           "%llu conf changes, %llu transfers, %llu crashes (%llu wiped, %llu stale msgs "
           "dropped, %llu votes withheld), %llu partitions, "
           "%llu msgs delivered, %llu dropped | %llu steps/seed, %.1f s (%.0f seeds/s)\n",
           U(seeds), seeds == 1 ? "" : "s", U(nodes), U(total.committed), U(total.proposals),
           U(total.reads), U(total.reads_failed), U(total.lease_reads), U(total.elections), U(total.snaps_taken),
           U(total.snaps_installed), U(total.conf_changes), U(total.transfers),
           U(total.crashes), U(total.wipes), U(total.stale), U(total.withheld),
           U(total.partitions),
           U(total.delivered), U(total.dropped),
           U(steps), dt, dt > 0 ? (double)seeds / dt : 0.0);
    return 0;
}
