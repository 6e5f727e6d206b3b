/* hugepages.c - transparent huge pages for the node's heap.
 *
 * Chosen when background snapshots forked the node: fork() copied the page
 * tables on the event loop's thread, 50-60 ms for 2 GB of dictionary in
 * 4 KiB pages here (2 vCPUs, kernel 6.18), 2 ms in 2 MiB pages.  Snapshots
 * now read a frozen version of the dictionary from a thread (kv_freeze) and
 * nothing forks, and huge pages are now opt-in (RAFTKV_MALLOC_HUGEPAGES=1):
 * on this VM the first touch of each new 2 MiB page stalled its thread
 * 4.5-6 ms (a log append every ~16 k entries of 130 B), and 10 M keys with
 * 4 KiB pages had the same peak RSS and the lowest p99.9 of any run
 * (BENCHMARKS.md, issue 14 without fork).  Also with huge pages, a fault
 * in a fragmented memory may compact first (transparent_hugepage/defrag).
 *
 * Also the heap's growth steps (node_malloc_setup).
 */
#include "node/hugepages.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TUNABLE "glibc.malloc.hugetlb"
#define THP_ENABLED "/sys/kernel/mm/transparent_hugepage/enabled"

/* "always [madvise] never": the bracketed word is the mode. */
static int thp_mode(char *out, size_t len)
{
    char buf[128];
    FILE *f = fopen(THP_ENABLED, "re");
    if (!f)
        return -1;
    char *ok = fgets(buf, sizeof(buf), f);
    fclose(f);
    char *a = ok ? strchr(buf, '[') : NULL, *b = a ? strchr(a, ']') : NULL;
    if (!b)
        return -1;
    snprintf(out, len, "%.*s", (int)(b - a - 1), a + 1);
    return 0;
}

static const char *why_not(void)
{
    static char mode[32];
    const char *opt = getenv("RAFTKV_MALLOC_HUGEPAGES");
    const char *t = getenv("GLIBC_TUNABLES");
    if (!opt || strcmp(opt, "1") != 0)
        return "the default; RAFTKV_MALLOC_HUGEPAGES=1 asks for huge pages";
    if (thp_mode(mode, sizeof(mode)) < 0)
        return "the kernel has no transparent huge pages";
    if (strcmp(mode, "never") == 0)
        return "transparent_hugepage/enabled is never";
    if (t && strstr(t, TUNABLE "=0"))
        return "GLIBC_TUNABLES sets " TUNABLE "=0";
    return NULL;
}

void node_hugepages_reexec(char **argv)
{
    const char *t = getenv("GLIBC_TUNABLES");
    if ((t && strstr(t, TUNABLE)) || why_not())
        return;
    char *v = malloc((t ? strlen(t) + 1 : 0) + sizeof(TUNABLE "=1"));
    if (!v)
        return;
    sprintf(v, "%s%s" TUNABLE "=1", t ? t : "", t ? ":" : "");
    if (setenv("GLIBC_TUNABLES", v, 1) == 0)
        execv("/proc/self/exe", argv);
    /* No exec (no /proc?): carry on with small pages, and say so. */
    free(v);
    unsetenv("GLIBC_TUNABLES");
    if (t)
        setenv("GLIBC_TUNABLES", t, 1);
}

const char *node_hugepages_state(void)
{
    static char line[160];
    const char *t = getenv("GLIBC_TUNABLES"), *no = why_not();
    if (no)
        snprintf(line, sizeof(line), "malloc uses 4 KiB pages (%s)", no);
    else if (t && (strstr(t, TUNABLE "=1") || strstr(t, TUNABLE "=2")))
        snprintf(line, sizeof(line), "malloc uses transparent huge pages (GLIBC_TUNABLES=%s)", t);
    else
        snprintf(line, sizeof(line), "malloc uses 4 KiB pages (could not re-exec with " TUNABLE "=1)");
    return line;
}

/* The event loop is the main thread: its allocations grow the main arena
 * with brk, by 128 KiB past the request by default, so loading 1 GB of
 * dictionary makes thousands of brk calls on the loop, and each waits for
 * the heap's mapping locks while another thread faults pages of it in or
 * out (once 849 ms at 10 M keys).  Growing by 64 MiB makes that a few
 * dozen calls; memory is only touched (counted in RSS) when used.  Setting
 * the pad turns off glibc's sliding mmap threshold, so the two thresholds
 * are set to where it would slide to (its maximum, and twice that for
 * trimming): buffers up to 32 MiB stay out of mmap/munmap, and the heap is
 * given back past 64 MiB free at its top. */
#define HEAP_TOP_PAD (64u << 20)
#define HEAP_MMAP_THRESHOLD (32u << 20)
#define HEAP_TRIM_THRESHOLD (64u << 20)

void node_malloc_setup(void)
{
    if (getenv("RAFTKV_MALLOC_DEFAULT"))
        return;
    (void)mallopt(M_TOP_PAD, HEAP_TOP_PAD);
    (void)mallopt(M_MMAP_THRESHOLD, HEAP_MMAP_THRESHOLD);
    (void)mallopt(M_TRIM_THRESHOLD, HEAP_TRIM_THRESHOLD);
}
