/* meta.c - the hard state (current term and vote) in the file `meta`,
 * replaced atomically.  A torn meta.tmp never wins because the rename happens
 * only after it is synced; a damaged `meta` itself is refused, not guessed.
 *   layout (40 bytes): magic[8] "RAFTKVMT", u32 version, u32 reserved,
 *                      u64 term, u64 vote, u32 reserved, u32 crc32c of 0..36 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/crc32c.h"
#include "common/endian.h"
#include "store/internal.h"

#define META_MAGIC "RAFTKVMT"
#define META_SIZE 40

int meta_load(const char *dir, struct store_hard_state *hs, struct serr *e)
{
    char *path = path_join(dir, "meta");
    if (!path)
        return serr_set(e, -ENOMEM, "out of memory");
    uint8_t *b = NULL;
    size_t n = 0;
    int rc = file_read_all(path, &b, &n, e);
    if (rc == -ENOENT) {
        memset(hs, 0, sizeof(*hs));
        rc = 0;
        goto out;
    }
    if (rc < 0)
        goto out;
    if ((rc = format_check(path, b, n, META_MAGIC, "meta file", e)) < 0)
        goto out;
    if (n != META_SIZE) {
        rc = serr_set(e, -EINVAL, "%s: size %zu, expected %d (damaged)", path, n, META_SIZE);
        goto out;
    }
    if (crc32c(0, b, 36) != get_le32(b + 36)) {
        rc = serr_set(e, -EINVAL, "%s: checksum mismatch at offset 36 (damaged)", path);
        goto out;
    }
    hs->term = get_le64(b + 16);
    hs->vote = get_le64(b + 24);
out:
    free(b);
    free(path);
    return rc;
}

int meta_save(const char *dir, int dirfd, const struct store_hard_state *hs,
              struct serr *e)
{
    uint8_t b[META_SIZE] = {0};
    memcpy(b, META_MAGIC, 8);
    put_le32(b + 8, STORE_FORMAT_VERSION);
    put_le64(b + 16, hs->term);
    put_le64(b + 24, hs->vote);
    put_le32(b + 36, crc32c(0, b, 36));
    struct iovec v = {.iov_base = b, .iov_len = sizeof(b)};
    return file_replace_atomic(dir, dirfd, "meta", &v, 1, e);
}
