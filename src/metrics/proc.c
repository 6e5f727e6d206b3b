/* proc.c - process metrics read from /proc by the scraping thread, so the
 * loops being measured do no work for them. */
#include "metrics/metrics.h"
#include "metrics/build_info.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

int metrics_resident_bytes(uint64_t *out)
{
    FILE *f = fopen("/proc/self/statm", "re");
    if (!f)
        return -errno;
    unsigned long long size, resident;
    int n = fscanf(f, "%llu %llu", &size, &resident);
    fclose(f);
    if (n != 2)
        return -EINVAL;
    *out = (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
    return 0;
}

static double rss(void *arg)
{
    (void)arg;
    uint64_t b;
    return metrics_resident_bytes(&b) == 0 ? (double)b : 0.0 / 0.0;
}

static double open_fds(void *arg)
{
    (void)arg;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return 0.0 / 0.0;
    double n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory stream's own descriptor */
}

static double max_fds(void *arg)
{
    (void)arg;
    long m = sysconf(_SC_OPEN_MAX);
    return m > 0 ? (double)m : 0.0 / 0.0;
}

int metrics_add_process(struct metrics_registry *r, const char *version)
{
    char labels[256];
    snprintf(labels, sizeof(labels), "version=\"%s\",commit=\"%s\"", version, RAFTKV_GIT_COMMIT);
    struct metrics_gauge *start = metrics_gauge_new(
        r, "raftkv_process_start_time_seconds",
        "Start time of the process since the Unix epoch in seconds.", NULL);
    struct metrics_gauge *info = metrics_gauge_new(
        r, "raftkv_build_info", "Always 1; the labels name the raftkv version and git commit.",
        labels);
    if (!start || !info)
        return -ENOMEM;
    metrics_gauge_set(start, (double)time(NULL));
    metrics_gauge_set(info, 1);
    if (metrics_gauge_fn_new(r, "raftkv_process_resident_memory_bytes",
                             "Resident memory size in bytes.", NULL, rss, NULL) < 0 ||
        metrics_gauge_fn_new(r, "raftkv_process_open_fds", "Number of open file descriptors.",
                             NULL, open_fds, NULL) < 0 ||
        metrics_gauge_fn_new(r, "raftkv_process_max_fds",
                             "Maximum number of open file descriptors.", NULL, max_fds, NULL) < 0)
        return -ENOMEM;
    return 0;
}
