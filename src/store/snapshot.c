/* snapshot.c - the newest snapshot in snap/snapshot: header with the last
 * included index/term, the opaque membership blob and a CRC of everything.
 * Written as snapshot.tmp and renamed, so an older complete snapshot or the
 * new complete one is there after a crash, never a half one.
 *   header (48 bytes): magic[8] "RAFTKVSN", u32 version, u32 conf_len,
 *     u64 index, u64 term, u64 data_len, u32 crc32c(data),
 *     u32 crc32c(bytes 0..44 + conf); then conf, then data */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
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

int snap_save(const char *snapdir, int dirfd, const struct store_snap_meta *meta,
              const void *data, size_t len, struct snap_file *sf, struct serr *e)
{
    uint8_t h[SNAP_HDR] = {0};
    memcpy(h, SNAP_MAGIC, 8);
    put_le32(h + 8, STORE_FORMAT_VERSION);
    put_le32(h + 12, meta->conf_len);
    put_le64(h + 16, meta->index);
    put_le64(h + 24, meta->term);
    put_le64(h + 32, len);
    put_le32(h + 40, crc32c(0, data, len));
    put_le32(h + 44, crc32c(crc32c(0, h, 44), meta->conf, meta->conf_len));
    struct iovec v[3] = {
        {.iov_base = h, .iov_len = SNAP_HDR},
        {.iov_base = (void *)meta->conf, .iov_len = meta->conf_len},
        {.iov_base = (void *)data, .iov_len = len},
    };
    int rc = file_replace_atomic(snapdir, dirfd, "snapshot", v, 3, e);
    if (rc < 0)
        return rc;
    char *path = path_join(snapdir, "snapshot");
    if (!path)
        return serr_set(e, -ENOMEM, "out of memory");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        rc = serr_set(e, -errno, "open %s: %s", path, strerror(errno));
    free(path);
    if (rc < 0)
        return rc;
    memset(sf, 0, sizeof(*sf));
    sf->present = true;
    sf->meta = *meta;
    sf->data_off = SNAP_HDR + meta->conf_len;
    sf->data_len = len;
    sf->fd = fd;
    return 0;
}

void snap_close(struct snap_file *sf)
{
    if (sf->fd >= 0)
        close(sf->fd);
    sf->fd = -1;
    sf->present = false;
}
