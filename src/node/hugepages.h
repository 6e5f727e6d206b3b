/* hugepages.h - how the node sets up malloc.  With
 * RAFTKV_MALLOC_HUGEPAGES=1, raftkv-node asks glibc's malloc for
 * transparent huge pages (GLIBC_TUNABLES=glibc.malloc.hugetlb=1): fewer TLB
 * entries cover a large dictionary.  See hugepages.c for the history and
 * why it is off by default, and for the heap's growth steps. */
#ifndef RAFTKV_NODE_HUGEPAGES_H
#define RAFTKV_NODE_HUGEPAGES_H

/* First thing in main(): when RAFTKV_MALLOC_HUGEPAGES=1, unless
 * GLIBC_TUNABLES already names glibc.malloc.hugetlb or the kernel has
 * transparent huge pages off, sets the tunable and execs
 * this program again with the same arguments (malloc reads tunables only at
 * start).  Returns only when it did not exec. */
void node_hugepages_reexec(char **argv);

/* Early in main(): the heap grows and shrinks in 64 MiB steps instead of
 * glibc's 128 KiB (hugepages.c says why); RAFTKV_MALLOC_DEFAULT=1 keeps
 * glibc's defaults, for comparison. */
void node_malloc_setup(void);

/* One line for the start-up log: whether malloc uses huge pages and why. */
const char *node_hugepages_state(void);

#endif
