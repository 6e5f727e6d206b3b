/* store_dir.h - shared by the store fuzz targets: a fresh data directory per
 * input (on /dev/shm when present, so no disk syncs), one file written into
 * it, store_open() + store_close(), then the directory removed.  Nothing is
 * carried between inputs. */
#ifndef RAFTKV_FUZZ_STORE_DIR_H
#define RAFTKV_FUZZ_STORE_DIR_H

#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store.h"

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static inline void write_file(const char *path, const uint8_t *data, size_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        abort();
    while (size) {
        ssize_t w = write(fd, data, size);
        if (w <= 0)
            abort();
        data += w;
        size -= (size_t)w;
    }
    close(fd);
}

static inline void quiet_log(void *arg, enum store_log_level level, const char *msg)
{
    (void)arg;
    (void)level;
    (void)msg;
}

/* Remove a data directory and everything in it. */
static inline void store_dir_remove(const char *dir)
{
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Make a temp data dir with subdir (may be NULL) holding file name = data,
 * open and recover it, read back everything recovered, close, remove. */
static inline void store_dir_run(const char *subdir, const char *name, const uint8_t *data, size_t size)
{
    char dir[64];
    snprintf(dir, sizeof(dir), "%s/raftkv-fuzz-XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    if (!mkdtemp(dir))
        abort();
    char path[256];
    if (subdir) {
        snprintf(path, sizeof(path), "%s/%s", dir, subdir);
        if (mkdir(path, 0755) < 0)
            abort();
        snprintf(path, sizeof(path), "%s/%s/%s", dir, subdir, name);
    } else {
        snprintf(path, sizeof(path), "%s/%s", dir, name);
    }
    write_file(path, data, size);

    struct store_options o;
    store_options_default(&o);
    o.log = quiet_log;
    struct store *st = NULL;
    struct store_open_info info;
    if (store_open(dir, &o, &st, &info) == 0) {
        struct store_hard_state hs;
        store_hard_state(st, &hs);
        uint64_t lo = store_first_index(st), hi = store_last_index(st);
        if (hi >= lo && lo > 0) {
            struct store_record *recs = NULL;
            size_t n = 0;
            if (store_read(st, lo, hi, &recs, &n) == 0)
                free(recs);
        }
        if (store_close(st) != 0)
            abort();
    }
    store_dir_remove(dir);
}

#endif
