/* file.c - small file-system helpers shared by meta, snapshot and log code:
 * atomic replacement of a small file, whole-file reads, directories, and the
 * error/message plumbing. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/endian.h"
#include "store/internal.h"

int serr_set(struct serr *e, int code, const char *fmt, ...)
{
    /* Keep the first error: later ones are usually consequences of it. */
    if (e && !e->code) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
        va_end(ap);
        e->code = code;
    }
    return code;
}

void store_logf(const struct store_options *o, enum store_log_level lvl,
                const char *fmt, ...)
{
    if (!o || !o->log)
        return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    o->log(o->log_arg, lvl, buf);
}

char *path_join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p)
        return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

int file_replace_atomic(const char *dir, int dirfd, const char *name,
                        const struct iovec *iov, int iovcnt, struct serr *e)
{
    char tmpname[128];
    snprintf(tmpname, sizeof(tmpname), "%s.tmp", name);
    char *tmp = path_join(dir, tmpname), *dst = path_join(dir, name);
    int rc = 0, fd = -1;
    if (!tmp || !dst) {
        rc = serr_set(e, -ENOMEM, "out of memory");
        goto out;
    }
    fd = sys_open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        rc = serr_set(e, fd, "open %s: %s", tmp, strerror(-fd));
        goto out;
    }
    ssize_t w = sys_pwritev_all(fd, iov, iovcnt, 0);
    if (w < 0) {
        rc = serr_set(e, (int)w, "write %s: %s", tmp, strerror((int)-w));
        goto out;
    }
    /* Sync before rename: otherwise the rename can reach the disk before
     * the data and a crash leaves an empty or torn file under the real name. */
    if ((rc = sys_fsync(fd)) < 0) {
        serr_set(e, rc, "fsync %s: %s", tmp, strerror(-rc));
        goto out;
    }
    sys_close(fd);
    fd = -1;
    if ((rc = sys_rename(tmp, dst)) < 0) {
        serr_set(e, rc, "rename %s -> %s: %s", tmp, dst, strerror(-rc));
        goto out;
    }
    if ((rc = sys_fsync(dirfd)) < 0)
        serr_set(e, rc, "fsync directory %s: %s", dir, strerror(-rc));
out:
    sys_close(fd);
    free(tmp);
    free(dst);
    return rc;
}

int store_file_replace(const char *dir, const char *name, const void *buf, size_t len,
                       char *err, size_t errlen)
{
    struct serr e = {0};
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = dirfd < 0 ? serr_set(&e, -errno, "open directory %s: %s", dir, strerror(errno))
                       : file_replace_atomic(dir, dirfd, name,
                                             &(struct iovec){.iov_base = (void *)buf,
                                                             .iov_len = len},
                                             1, &e);
    if (dirfd >= 0)
        close(dirfd);
    if (rc < 0)
        snprintf(err, errlen, "%s", e.msg);
    return rc;
}

int file_open_ro(const char *path, uint64_t *size, struct serr *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return -ENOENT;
        return serr_set(e, -errno, "open %s: %s", path, strerror(errno));
    }
    struct stat sb;
    if (fstat(fd, &sb) < 0) {
        int rc = serr_set(e, -errno, "stat %s: %s", path, strerror(errno));
        close(fd);
        return rc;
    }
    *size = (uint64_t)sb.st_size;
    return fd;
}

int file_pread_full(int fd, void *buf, size_t len, uint64_t off)
{
    uint8_t *p = buf;
    while (len) {
        ssize_t r = pread(fd, p, len, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            return -ENODATA;
        p += r;
        off += (uint64_t)r;
        len -= (size_t)r;
    }
    return 0;
}

int format_check(const char *path, const uint8_t *b, uint64_t len, const char *magic,
                 const char *what, struct serr *e)
{
    if (len < 12 || memcmp(b, magic, 8) != 0)
        return serr_set(e, -EINVAL, "%s: offset 0: not a raftkv %s (bad magic)", path, what);
    uint32_t ver = get_le32(b + 8);
    if (ver != STORE_FORMAT_VERSION)
        return serr_set(e, -EPROTONOSUPPORT,
                        "%s: offset 8: format version %u is not supported (this build reads version %d)",
                        path, ver, STORE_FORMAT_VERSION);
    return 0;
}

int file_read_all(const char *path, uint8_t **buf, size_t *len, struct serr *e)
{
    uint64_t n;
    int fd = file_open_ro(path, &n, e);
    if (fd < 0)
        return fd;
    uint8_t *p = malloc(n ? (size_t)n : 1);
    if (!p) {
        close(fd);
        return serr_set(e, -ENOMEM, "out of memory reading %s", path);
    }
    int rc = file_pread_full(fd, p, (size_t)n, 0);
    close(fd);
    if (rc < 0) {
        free(p);
        return serr_set(e, rc, "read %s: %s", path, strerror(-rc));
    }
    *buf = p;
    *len = (size_t)n;
    return 0;
}

int dir_open_or_create(const char *path, struct serr *e)
{
    if (mkdir(path, 0755) < 0 && errno != EEXIST)
        return serr_set(e, -errno, "mkdir %s: %s", path, strerror(errno));
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return serr_set(e, -errno, "open directory %s: %s", path, strerror(errno));
    return fd;
}
