/* incfile.c - the file `incarnations`: bytes the node layer fills (the
 * data-directory incarnations its state machine applied, src/node), kept
 * apart from the log and the snapshot and replaced atomically like meta.
 *   layout: magic[8] "RAFTKVIN", u32 version, u32 length, length bytes of
 *           data, u32 crc32c of everything before it */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/crc32c.h"
#include "common/endian.h"
#include "store/internal.h"

#define INC_MAGIC "RAFTKVIN"
#define INC_HDR 16

int inc_load(const char *dir, void **data, size_t *len, struct serr *e)
{
    char *path = path_join(dir, INC_NAME);
    if (!path)
        return serr_set(e, -ENOMEM, "out of memory");
    uint8_t *b = NULL;
    size_t n = 0;
    int rc = file_read_all(path, &b, &n, e);
    if (rc < 0)
        goto out;
    if ((rc = format_check(path, b, n, INC_MAGIC, "incarnation file", e)) < 0)
        goto out;
    uint32_t dlen = n >= INC_HDR ? get_le32(b + 12) : 0;
    if (n < INC_HDR + 4 || dlen > STORE_INC_MAX || n != INC_HDR + (size_t)dlen + 4) {
        rc = serr_set(e, -EBADMSG, "%s: size %zu does not match its length field (damaged)",
                      path, n);
        goto out;
    }
    if (crc32c(0, b, n - 4) != get_le32(b + n - 4)) {
        rc = serr_set(e, -EBADMSG, "%s: checksum mismatch at offset %zu (damaged)", path, n - 4);
        goto out;
    }
    void *d = malloc(dlen ? dlen : 1);
    if (!d) {
        rc = serr_set(e, -ENOMEM, "out of memory");
        goto out;
    }
    memcpy(d, b + INC_HDR, dlen);
    *data = d;
    *len = dlen;
out:
    free(b);
    free(path);
    return rc;
}

int inc_save(const char *dir, int dirfd, const void *data, size_t len, struct serr *e)
{
    uint8_t h[INC_HDR], t[4];
    memcpy(h, INC_MAGIC, 8);
    put_le32(h + 8, STORE_FORMAT_VERSION);
    put_le32(h + 12, (uint32_t)len);
    uint32_t crc = crc32c(crc32c(0, h, sizeof(h)), data, len);
    put_le32(t, crc);
    struct iovec v[3] = {{.iov_base = h, .iov_len = sizeof(h)},
                         {.iov_base = (void *)data, .iov_len = len},
                         {.iov_base = t, .iov_len = sizeof(t)}};
    return file_replace_atomic(dir, dirfd, INC_NAME, v, 3, e);
}
