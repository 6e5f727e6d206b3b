/* identity.c - the cluster id from raftkv.conf and the data directory's
 * `identity` file: "RKID", u32 version, 16-byte cluster id, u32 node id,
 * u64 incarnation, [version 2: u32 flags, bit 0 joined], u32 CRC32C of the
 * preceding bytes; little-endian.  A directory that did not join is
 * written as version 1, which every release reads; one that joined needs
 * version 2 (older releases refuse it as damaged rather than let it vote).
 */
#include "node/identity.h"

#include "common/crc32c.h"
#include "common/endian.h"
#include "store/store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#define ID_LEN_V1 (4 + 4 + PEER_CLUSTER_ID_LEN + 4 + 8 + 4)
#define ID_LEN_V2 (ID_LEN_V1 + 4)
#define ID_FLAG_JOINED 1u

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static int hexval(char c)
{
    return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

void identity_config_cluster_id(const struct config *cfg, uint8_t out[PEER_CLUSTER_ID_LEN],
                                bool *derived)
{
    const char *hex = cfg->cluster.id;
    if (hex && strlen(hex) == 2 * PEER_CLUSTER_ID_LEN) {
        for (size_t i = 0; i < PEER_CLUSTER_ID_LEN; i++)
            out[i] = (uint8_t)(hexval(hex[2 * i]) << 4 | hexval(hex[2 * i + 1]));
        *derived = false;
        return;
    }
    /* Two independent 64-bit halves; nodes are sorted by id after
     * config_validate, so every host derives the same bytes. */
    uint64_t h[2] = {0xcbf29ce484222325ull, 0x84222325cbf29ce4ull};
    for (int k = 0; k < 2; k++) {
        h[k] = fnv1a(h[k], cfg->cluster.name, strlen(cfg->cluster.name) + 1);
        for (size_t i = 0; i < cfg->n_nodes; i++) {
            uint8_t idb[4];
            put_le32(idb, cfg->nodes[i].id);
            h[k] = fnv1a(h[k], idb, sizeof(idb));
            h[k] = fnv1a(h[k], cfg->nodes[i].peer, strlen(cfg->nodes[i].peer) + 1);
        }
    }
    put_le64(out, h[0]);
    put_le64(out + 8, h[1]);
    *derived = true;
}

int identity_random(void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len) {
        ssize_t n = getrandom(p, len, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int identity_new_incarnation(uint64_t *out)
{
    uint64_t v = 0;
    while (v == 0) {
        int rv = identity_random(&v, sizeof(v));
        if (rv < 0)
            return rv;
    }
    *out = v;
    return 0;
}

int identity_load(const char *data_dir, struct identity *out, char *err, size_t errlen)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", data_dir, IDENTITY_FILE);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    uint8_t b[ID_LEN_V2 + 1];
    ssize_t n = read(fd, b, sizeof(b));
    int e = errno;
    close(fd);
    if (n < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    uint32_t version = n >= 8 ? get_le32(b + 4) : 0;
    ssize_t len = version == 1 ? ID_LEN_V1 : ID_LEN_V2;
    uint32_t flags = version == 2 && n == len ? get_le32(b + 36) : 0;
    if (n != len || memcmp(b, "RKID", 4) != 0 || (version != 1 && version != 2) ||
        crc32c(0, b, (size_t)len - 4) != get_le32(b + len - 4) || get_le64(b + 28) == 0 ||
        (flags & ~ID_FLAG_JOINED)) {
        snprintf(err, errlen, "%s is damaged (%zd bytes, bad header or checksum)", path, n);
        return -EBADMSG;
    }
    memcpy(out->cluster_id, b + 8, PEER_CLUSTER_ID_LEN);
    out->node_id = get_le32(b + 24);
    out->incarnation = get_le64(b + 28);
    out->joined = flags & ID_FLAG_JOINED;
    return 0;
}

int identity_save(const char *data_dir, const struct identity *id, char *err, size_t errlen)
{
    uint8_t b[ID_LEN_V2];
    size_t len = id->joined ? ID_LEN_V2 : ID_LEN_V1;
    memcpy(b, "RKID", 4);
    put_le32(b + 4, id->joined ? 2 : 1);
    memcpy(b + 8, id->cluster_id, PEER_CLUSTER_ID_LEN);
    put_le32(b + 24, id->node_id);
    put_le64(b + 28, id->incarnation);
    if (id->joined)
        put_le32(b + 36, ID_FLAG_JOINED);
    put_le32(b + len - 4, crc32c(0, b, len - 4));
    return store_file_replace(data_dir, IDENTITY_FILE, b, len, err, errlen);
}
