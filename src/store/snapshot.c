/* snapshot.c - the newest snapshot in snap/snapshot: header with the last
 * included index/term, the opaque membership blob and a CRC of everything.
 * Written as snapshot.tmp and renamed, so an older complete snapshot or the
 * new complete one is there after a crash, never a half one.  A snapshot
 * written in the background (a writer thread, store_snapshot_stream_*) goes
 * to snapshot.bg and is renamed by the writer thread, in order with the log
 * (store_snapshot_adopt).
 *   header (48 bytes): magic[8] "RAFTKVSN", u32 version, u32 conf_len,
 *     u64 index, u64 term, u64 data_len, u32 crc32c(data),
 *     u32 crc32c(bytes 0..44 + conf); then conf, then data */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/crc32c.h"
#include "common/endian.h"
#include "store/internal.h"

#define SNAP_MAGIC "RAFTKVSN"
#define SNAP_HDR 48

int snap_load(const char *snapdir, struct snap_file *sf, struct serr *e)
{
    memset(sf, 0, sizeof(*sf));
    sf->fd = -1;
    char *path = path_join(snapdir, "snapshot");
    if (!path)
        return serr_set(e, -ENOMEM, "out of memory");
    int rc = 0;
    uint64_t size;
    int fd = file_open_ro(path, &size, e);
    if (fd < 0) {
        free(path);
        return fd == -ENOENT ? 0 : fd;
    }
    uint8_t h[SNAP_HDR];
    uint8_t *chunk = NULL;
    if (file_pread_full(fd, h, size < 12 ? (size_t)size : 12, 0) < 0 ||
        (rc = format_check(path, h, size, SNAP_MAGIC, "snapshot", e)) < 0) {
        rc = rc ? rc : serr_set(e, -EIO, "%s: read error", path);
        goto fail;
    }
    if (size < SNAP_HDR || file_pread_full(fd, h, SNAP_HDR, 0) < 0) {
        rc = serr_set(e, -EINVAL, "%s: truncated header (file is %llu bytes)", path,
                      (unsigned long long)size);
        goto fail;
    }
    uint32_t conf_len = get_le32(h + 12);
    uint64_t data_len = get_le64(h + 32);
    if (conf_len > STORE_CONF_MAX || size != SNAP_HDR + conf_len + data_len) {
        rc = serr_set(e, -EINVAL,
                      "%s: header at offset 0 says %u+%llu bytes but file has %llu (damaged)",
                      path, conf_len, (unsigned long long)data_len, (unsigned long long)size);
        goto fail;
    }
    uint8_t conf[STORE_CONF_MAX];
    if (file_pread_full(fd, conf, conf_len, SNAP_HDR) < 0) {
        rc = serr_set(e, -EIO, "%s: read error", path);
        goto fail;
    }
    uint32_t hc = crc32c(crc32c(0, h, 44), conf, conf_len);
    if (hc != get_le32(h + 44)) {
        rc = serr_set(e, -EINVAL, "%s: header checksum mismatch (offset 0..%u, damaged)", path,
                      SNAP_HDR + conf_len);
        goto fail;
    }
    /* Verify the data now: a node must not start from a damaged snapshot. */
    size_t csz = 1u << 20;
    chunk = malloc(csz);
    if (!chunk) {
        rc = serr_set(e, -ENOMEM, "out of memory");
        goto fail;
    }
    uint32_t dc = 0;
    uint64_t off = SNAP_HDR + conf_len, left = data_len;
    while (left) {
        size_t l = left < csz ? (size_t)left : csz;
        if ((rc = file_pread_full(fd, chunk, l, off)) < 0) {
            serr_set(e, rc, "%s: read at offset %llu: %s", path, (unsigned long long)off,
                     strerror(-rc));
            goto fail;
        }
        dc = crc32c(dc, chunk, l);
        off += l;
        left -= l;
    }
    if (dc != get_le32(h + 40)) {
        rc = serr_set(e, -EINVAL, "%s: data checksum mismatch (data at offset %u, damaged)",
                      path, SNAP_HDR + conf_len);
        goto fail;
    }
    free(chunk);
    free(path);
    sf->present = true;
    sf->meta.index = get_le64(h + 16);
    sf->meta.term = get_le64(h + 24);
    sf->meta.conf_len = conf_len;
    memcpy(sf->meta.conf, conf, conf_len);
    sf->data_off = SNAP_HDR + conf_len;
    sf->data_len = data_len;
    sf->fd = fd;
    return 0;
fail:
    free(chunk);
    free(path);
    close(fd);
    return rc;
}

static void snap_header(uint8_t h[SNAP_HDR], const struct store_snap_meta *meta,
                        uint64_t data_len, uint32_t data_crc)
{
    memset(h, 0, SNAP_HDR);
    memcpy(h, SNAP_MAGIC, 8);
    put_le32(h + 8, STORE_FORMAT_VERSION);
    put_le32(h + 12, meta->conf_len);
    put_le64(h + 16, meta->index);
    put_le64(h + 24, meta->term);
    put_le64(h + 32, data_len);
    put_le32(h + SNAP_DATA_CRC_OFF, data_crc);
    put_le32(h + 44, crc32c(crc32c(0, h, 44), meta->conf, meta->conf_len));
}

/* sf describes snap/snapshot, which now holds meta and data_len bytes. */
static int snap_open_current(const char *snapdir, const struct store_snap_meta *meta,
                             uint64_t data_len, struct snap_file *sf, struct serr *e)
{
    char *path = path_join(snapdir, "snapshot");
    if (!path)
        return serr_set(e, -ENOMEM, "out of memory");
    int rc = 0, fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        rc = serr_set(e, -errno, "open %s: %s", path, strerror(errno));
    free(path);
    if (rc < 0)
        return rc;
    memset(sf, 0, sizeof(*sf));
    sf->present = true;
    sf->meta = *meta;
    sf->data_off = SNAP_HDR + meta->conf_len;
    sf->data_len = data_len;
    sf->fd = fd;
    return 0;
}

int snap_save(const char *snapdir, int dirfd, const struct store_snap_meta *meta,
              const void *data, size_t len, struct snap_file *sf, struct serr *e)
{
    uint8_t h[SNAP_HDR];
    snap_header(h, meta, len, crc32c(0, data, len));
    struct iovec v[3] = {
        {.iov_base = h, .iov_len = SNAP_HDR},
        {.iov_base = (void *)meta->conf, .iov_len = meta->conf_len},
        {.iov_base = (void *)data, .iov_len = len},
    };
    int rc = file_replace_atomic(snapdir, dirfd, "snapshot", v, 3, e);
    if (rc < 0)
        return rc;
    return snap_open_current(snapdir, meta, len, sf, e);
}

const char *snap_src_name(enum store_snap_src src)
{
    return src == STORE_SNAP_RX ? SNAP_RX_NAME : SNAP_BG_NAME;
}

int snap_adopt(const char *snapdir, int dirfd, const struct store_snap_meta *meta,
               enum store_snap_src src, struct snap_file *sf, struct serr *e)
{
    char *from = path_join(snapdir, snap_src_name(src)), *to = path_join(snapdir, "snapshot");
    int rc = 0;
    struct stat sb;
    if (!from || !to) {
        rc = serr_set(e, -ENOMEM, "out of memory");
    } else if (stat(from, &sb) < 0) {
        rc = serr_set(e, -errno, "stat %s: %s", from, strerror(errno));
    } else if ((uint64_t)sb.st_size < SNAP_HDR + meta->conf_len) {
        rc = serr_set(e, -EINVAL, "%s: %llu bytes, shorter than its header", from,
                      (unsigned long long)sb.st_size);
    } else if ((rc = sys_rename(from, to)) < 0) {
        serr_set(e, rc, "rename %s -> %s: %s", from, to, strerror(-rc));
    } else if ((rc = sys_fsync(dirfd)) < 0) {
        serr_set(e, rc, "fsync directory %s: %s", snapdir, strerror(-rc));
    }
    free(from);
    free(to);
    if (rc < 0)
        return rc;
    return snap_open_current(snapdir, meta, (uint64_t)sb.st_size - SNAP_HDR - meta->conf_len,
                             sf, e);
}

/* ---- a snapshot file written outside the writer thread ---------------- */

#define STREAM_BUF (1u << 20)

struct store_snap_stream {
    int fd;
    char *path;
    struct store_snap_meta meta;
    uint8_t *buf;
    size_t n;
    uint64_t off, data_len;
    uint32_t crc;
};

int store_snapshot_stream_open(const struct store *st, const struct store_snap_meta *meta,
                               enum store_snap_src src, struct store_snap_stream **out)
{
    if (meta->conf_len > STORE_CONF_MAX || meta->index == 0)
        return -EINVAL;
    struct store_snap_stream *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->fd = -1;
    s->meta = *meta;
    s->path = path_join(st->snapdir, snap_src_name(src));
    s->buf = malloc(STREAM_BUF);
    if (!s->path || !s->buf) {
        store_snapshot_stream_close(s, false);
        return -ENOMEM;
    }
    s->fd = sys_open(s->path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (s->fd < 0) {
        int rc = s->fd;
        store_snapshot_stream_close(s, false);
        return rc;
    }
    /* The header is written last, once length and CRC are known. */
    memcpy(s->buf + SNAP_HDR, meta->conf, meta->conf_len);
    s->n = SNAP_HDR + meta->conf_len;
    *out = s;
    return 0;
}

static int stream_flush(struct store_snap_stream *s)
{
    struct iovec v = {.iov_base = s->buf, .iov_len = s->n};
    ssize_t w = sys_pwritev_all(s->fd, &v, 1, (off_t)s->off);
    if (w < 0)
        return (int)w;
    /* Start writing back what is written so far: the fsync at close then
     * waits for the last piece only, not for the whole file (a long pause
     * on a node's loop when it receives a snapshot). */
    (void)sync_file_range(s->fd, (off_t)s->off, (off_t)s->n, SYNC_FILE_RANGE_WRITE);
    s->off += s->n;
    s->n = 0;
    return 0;
}

uint32_t store_snapshot_stream_crc(const struct store_snap_stream *s)
{
    return s->crc;
}

int store_snapshot_stream_write(struct store_snap_stream *s, const void *data, size_t len)
{
    const uint8_t *p = data;
    s->crc = crc32c(s->crc, p, len);
    s->data_len += len;
    while (len) {
        size_t l = STREAM_BUF - s->n < len ? STREAM_BUF - s->n : len;
        memcpy(s->buf + s->n, p, l);
        s->n += l;
        p += l;
        len -= l;
        int rc;
        if (s->n == STREAM_BUF && (rc = stream_flush(s)) < 0)
            return rc;
    }
    return 0;
}

int store_snapshot_stream_close(struct store_snap_stream *s, bool keep)
{
    int rc = 0;
    if (keep) {
        uint8_t h[SNAP_HDR];
        snap_header(h, &s->meta, s->data_len, s->crc);
        struct iovec v = {.iov_base = h, .iov_len = SNAP_HDR};
        if ((rc = stream_flush(s)) == 0 && (rc = (int)sys_pwritev_all(s->fd, &v, 1, 0)) >= 0)
            rc = sys_fsync(s->fd);
        rc = rc < 0 ? rc : 0;
    }
    if (s->fd >= 0)
        sys_close(s->fd);
    if ((!keep || rc < 0) && s->path)
        unlink(s->path);
    free(s->path);
    free(s->buf);
    free(s);
    return rc;
}

int store_snapshot_stream_map(const struct store *st, enum store_snap_src src,
                              struct store_snap_map *m)
{
    memset(m, 0, sizeof(*m));
    char *path = path_join(st->snapdir, snap_src_name(src));
    if (!path)
        return -ENOMEM;
    int fd = sys_open(path, O_RDONLY, 0);
    free(path);
    if (fd < 0)
        return fd;
    struct stat sb;
    uint8_t h[SNAP_HDR];
    int rc = 0;
    if (fstat(fd, &sb) < 0)
        rc = -errno;
    else if ((uint64_t)sb.st_size < SNAP_HDR || file_pread_full(fd, h, SNAP_HDR, 0) < 0)
        rc = -EINVAL;
    else if (SNAP_HDR + (uint64_t)get_le32(h + 12) + get_le64(h + 32) != (uint64_t)sb.st_size)
        rc = -EINVAL; /* not closed with keep=true */
    if (rc == 0) {
        /* mmap wants a page-aligned offset: map the whole file. */
        void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            rc = -errno;
        } else {
            m->base = p;
            m->base_len = (size_t)sb.st_size;
            m->data = (uint8_t *)p + SNAP_HDR + get_le32(h + 12);
            m->len = (size_t)get_le64(h + 32);
        }
    }
    sys_close(fd);
    return rc;
}

void store_snapshot_unmap(struct store_snap_map *m)
{
    if (m->base)
        munmap(m->base, m->base_len);
    memset(m, 0, sizeof(*m));
}

void snap_close(struct snap_file *sf)
{
    if (sf->fd >= 0)
        close(sf->fd);
    sf->fd = -1;
    sf->present = false;
}
