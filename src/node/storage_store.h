/* storage_store.h - the replica's storage table (node/storage.h) over the
 * flat-file store (src/store): its writer thread signals an eventfd, and the
 * node turns each wake-up into replica_durable().  Snapshots are written by a
 * thread from a frozen view of the state machine (kv_freeze), so the node's
 * loop never serialises the dictionary. */
#ifndef RAFTKV_NODE_STORAGE_STORE_H
#define RAFTKV_NODE_STORAGE_STORE_H

#include "node/storage.h"

struct storage_store;

struct storage_store_hooks {
    void *arg;
    /* May be NULL: hears how a long recovery is going. */
    void (*recovering)(void *arg, const char *what);
    /* A background snapshot writer started: fd becomes readable when it
     * is done; then call storage_store_bg_reap(). */
    void (*bg_started)(void *arg, int fd);
    /* May be NULL: called by the store's writer thread after each group
     * commit (store_options.synced). */
    void (*synced)(void *arg, uint64_t records, uint64_t bytes, double sync_seconds);
};

/* Open and recover dir.  *ops is then the table over it; its close() frees
 * *out (and kills a background writer still running). */
int storage_store_open(struct storage_store **out, struct replica_storage *ops, const char *dir,
                       uint64_t segment_size, const struct storage_store_hooks *hooks,
                       char *err, size_t errlen);
/* Readable when writes became durable or the store failed. */
int storage_store_fd(const struct storage_store *ss);
/* After the fd woke up: 0 and the progress in *d, or the store's error. */
int storage_store_poll(struct storage_store *ss, struct replica_durable *d);
/* After the background writer's fd woke up: its result for
 * replica_snapshot_written() (0, or -errno), and how long it took. */
int storage_store_bg_reap(struct storage_store *ss, double *seconds);
/* Tests only (raftkv-node --test-disk-fault snapshot:DELAY=MS): from now on
 * each background writer waits up to ms before writing; 0 releases one that
 * waits. */
void storage_store_test_stall(unsigned ms);
/* Snapshot transfer (snapxfer.c).  The sender reads the current snapshot
 * in pieces from fd: its bytes stay there even when a newer snapshot
 * replaces it; close(fd) when done. */
struct storage_snap_source {
    int fd;
    struct raft_snapshot_meta meta;
    uint64_t off, len; /* the data's place in fd */
    uint32_t crc;      /* crc32c of the data */
};
int storage_store_snapshot_source(struct storage_store *ss, struct storage_snap_source *src);
/* The receiver streams the leader's snapshot into the store's receive file
 * (store_snapshot_stream_write / _close(s, false) to abandon it), then
 * finishes: the data's CRC checked against *crc (if not NULL), the file
 * fsynced and loaded into *kv from a read-only mapping.  The file stays for
 * replica_snapshot_received(); -EBADMSG: corrupt, the file is gone. */
struct store_snap_stream;
struct kv_config;
struct kv;
int storage_store_rx_open(struct storage_store *ss, const struct raft_snapshot_meta *meta,
                          struct store_snap_stream **out);
int storage_store_rx_finish(struct storage_store *ss, struct store_snap_stream *s,
                            const uint32_t *crc, const struct kv_config *kvc, struct kv **kv);
/* Bytes of the current snapshot's data; -ENOENT if there is none. */
int storage_store_snapshot_bytes(struct storage_store *ss, uint64_t *bytes);
/* Log segment files on disk and the record bytes they hold. */
void storage_store_log_files(struct storage_store *ss, uint64_t *segments, uint64_t *bytes);

#endif
