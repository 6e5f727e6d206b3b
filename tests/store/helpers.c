/* helpers.c - test plumbing for the store tests (see helpers.h). */
#include "helpers.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

char *th_tmpdir(const char *tag)
{
    const char *base = getenv("TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    char *p = NULL;
    if (asprintf(&p, "%s/raftkv-store-%s-XXXXXX", base, tag) < 0)
        abort();
    if (!mkdtemp(p))
        abort();
    return p;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *f)
{
    (void)sb;
    (void)flag;
    (void)f;
    remove(path);
    return 0;
}

void th_rmrf(const char *path)
{
    nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

void th_copytree(const char *src, const char *dst)
{
    mkdir(dst, 0755);
    DIR *d = opendir(src);
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char *s = NULL, *t = NULL;
        if (asprintf(&s, "%s/%s", src, de->d_name) < 0 ||
            asprintf(&t, "%s/%s", dst, de->d_name) < 0)
            abort();
        struct stat sb;
        assert_int_equal(lstat(s, &sb), 0);
        if (S_ISDIR(sb.st_mode)) {
            th_copytree(s, t);
        } else {
            size_t n;
            uint8_t *b = th_slurp(s, &n);
            th_spit(t, b, n);
            free(b);
        }
        free(s);
        free(t);
    }
    closedir(d);
}

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

uint64_t th_rng(uint64_t *s)
{
    *s += 0x9e3779b97f4a7c15ull;
    return mix(*s);
}

uint32_t th_len(uint64_t index, uint64_t term, uint32_t salt, uint32_t maxlen)
{
    return maxlen ? (uint32_t)(mix(index * 31 + term * 7 + salt) % (maxlen + 1)) : 0;
}

void th_fill(uint8_t *buf, uint32_t len, uint64_t index, uint64_t term, uint32_t salt)
{
    uint64_t s = mix(index ^ (term << 40) ^ ((uint64_t)salt << 20));
    for (uint32_t i = 0; i < len; i++) {
        if ((i & 7) == 0)
            s = mix(s + i);
        buf[i] = (uint8_t)(s >> ((i & 7) * 8));
    }
}

struct store_record *th_recs(uint64_t first, size_t n, uint64_t term, uint32_t salt,
                             uint32_t maxlen)
{
    struct store_record *r = calloc(n ? n : 1, sizeof(*r));
    assert_non_null(r);
    for (size_t i = 0; i < n; i++) {
        uint64_t idx = first + i;
        uint32_t len = th_len(idx, term, salt, maxlen);
        uint8_t *d = malloc(len ? len : 1);
        assert_non_null(d);
        th_fill(d, len, idx, term, salt);
        r[i] = (struct store_record){.index = idx, .term = term, .data = d, .len = len,
                                     .type = (uint8_t)(idx % 2)};
    }
    return r;
}

void th_recs_free(struct store_record *r, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free((void *)r[i].data);
    free(r);
}

int th_rec_ok(const struct store_record *r, uint64_t term, uint32_t salt, uint32_t maxlen)
{
    if (r->term != term || r->len != th_len(r->index, term, salt, maxlen) ||
        r->type != (uint8_t)(r->index % 2))
        return 0;
    uint8_t *d = malloc(r->len ? r->len : 1);
    th_fill(d, r->len, r->index, term, salt);
    int ok = memcmp(d, r->data, r->len) == 0;
    free(d);
    return ok;
}

uint8_t *th_slurp(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    struct stat sb;
    assert_int_equal(fstat(fd, &sb), 0);
    uint8_t *b = malloc((size_t)sb.st_size + 1);
    assert_non_null(b);
    size_t got = 0;
    while (got < (size_t)sb.st_size) {
        ssize_t r = read(fd, b + got, (size_t)sb.st_size - got);
        assert_true(r > 0);
        got += (size_t)r;
    }
    close(fd);
    *len = got;
    return b;
}

void th_spit(const char *path, const uint8_t *buf, size_t len)
{
    /* No O_TRUNC: ext4 flushes a file truncated to zero when it is closed
     * (auto_da_alloc), which would make the damage loops wait on the disk. */
    int fd = open(path, O_WRONLY | O_CREAT, 0644);
    assert_true(fd >= 0);
    size_t put = 0;
    while (put < len) {
        ssize_t w = pwrite(fd, buf + put, len - put, (off_t)put);
        assert_true(w > 0);
        put += (size_t)w;
    }
    assert_int_equal(ftruncate(fd, (off_t)len), 0);
    close(fd);
}

static int seg_filter(const struct dirent *de)
{
    size_t l = strlen(de->d_name);
    return l > 4 && strcmp(de->d_name + l - 4, ".seg") == 0;
}

int th_nsegments(const char *dir)
{
    char *ld = NULL;
    if (asprintf(&ld, "%s/log", dir) < 0)
        abort();
    struct dirent **list;
    int n = scandir(ld, &list, seg_filter, alphasort);
    for (int i = 0; i < n; i++)
        free(list[i]);
    if (n >= 0)
        free(list);
    free(ld);
    return n < 0 ? 0 : n;
}

char *th_segment(const char *dir, int k)
{
    char *ld = NULL, *p = NULL;
    if (asprintf(&ld, "%s/log", dir) < 0)
        abort();
    struct dirent **list;
    int n = scandir(ld, &list, seg_filter, alphasort);
    assert_true(k < n);
    if (asprintf(&p, "%s/%s", ld, list[k]->d_name) < 0)
        abort();
    for (int i = 0; i < n; i++)
        free(list[i]);
    free(list);
    free(ld);
    return p;
}

void th_check_snapshot(struct store *st, const struct store_snap_meta *want, const void *data,
                       size_t len)
{
    struct store_snap_meta got;
    void *buf;
    size_t n;
    assert_int_equal(store_snapshot_load(st, &got, &buf, &n), 0);
    assert_int_equal(got.index, want->index);
    assert_int_equal(got.term, want->term);
    assert_int_equal(got.conf_len, want->conf_len);
    assert_memory_equal(got.conf, want->conf, want->conf_len);
    assert_int_equal(n, len);
    assert_memory_equal(buf, data, len);
    free(buf);
}

struct store *th_open(const char *dir, const struct store_options *o)
{
    struct store *st = NULL;
    struct store_open_info info;
    int rc = store_open(dir, o, &st, &info);
    if (rc != 0)
        fail_msg("store_open(%s): %d: %s", dir, rc, info.error);
    return st;
}
