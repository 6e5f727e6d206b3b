/* identity.h - who a data directory belongs to: the cluster id (from
 * raftkv.conf or derived from it), and the `identity` file in the data
 * directory holding cluster id, node id and the directory's incarnation, a
 * random number drawn when the directory is first initialised, so a wiped
 * and re-initialised directory is told apart from the one it replaced, and
 * whether it joined (bootstrap.c decides).
 */
#ifndef RAFTKV_NODE_IDENTITY_H
#define RAFTKV_NODE_IDENTITY_H

#include "common/config.h"
#include "node/peer_codec.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IDENTITY_FILE "identity"

struct identity {
    uint8_t cluster_id[PEER_CLUSTER_ID_LEN];
    uint32_t node_id;
    uint64_t incarnation; /* never 0 */
    /* The directory started empty and joined a running cluster instead of
     * bootstrapping one: it grants no vote until the log records it
     * (replica_set_identity).  false in files older than this flag. */
    bool joined;
};

/* [cluster] id, or when it is empty a hash of the name and the sorted
 * (node id, peer address) pairs (*derived set). */
void identity_config_cluster_id(const struct config *cfg, uint8_t out[PEER_CLUSTER_ID_LEN],
                                bool *derived);
/* A fresh random incarnation (never 0); -errno if no randomness. */
int identity_new_incarnation(uint64_t *out);
/* len random bytes; -errno. */
int identity_random(void *buf, size_t len);

/* 0, -ENOENT when the file does not exist, -EBADMSG when it is damaged
 * (err says how), other -errno on I/O errors. */
int identity_load(const char *data_dir, struct identity *out, char *err, size_t errlen);
/* Atomically and durably (store_file_replace): blocks for two fsyncs, so
 * never on the event loop (bootstrap.c writes it on a thread). */
int identity_save(const char *data_dir, const struct identity *id, char *err, size_t errlen);

#endif
