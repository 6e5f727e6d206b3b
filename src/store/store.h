/* store.h - durable flat-file storage of one node: the Raft log (segment
 * files under log/), the hard state (term, vote in `meta`), the newest
 * snapshot (snap/snapshot) and the incarnation file (`incarnations`).  No
 * dependency on src/raft: the node layer maps raft entries to store_record,
 * raft_conf to the opaque conf blob, and fills the incarnation file.
 *
 * Threading.  One thread owns a struct store (the node's event loop) and makes
 * every call except store_read(), store_snapshot_read() and store_wait(), which
 * may be called from any thread.  Writes are queued and done by a private
 * writer thread that group-commits: everything queued while an fdatasync is
 * in flight is written and synced together by the next one.  Completion is
 * signalled on an eventfd (store_eventfd()); the owner reads progress with
 * store_poll().
 *
 * Errors are negative errno values.  After a failed write or sync the store is
 * "failed": it says why (store_errmsg()), refuses every further change with the
 * same error, never retries, and the files reopen cleanly with store_open().
 */
#ifndef RAFTKV_STORE_H
#define RAFTKV_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_CONF_MAX 512 /* bytes of opaque membership kept with a snapshot */
#define STORE_MAX_RECORD (64u << 20) /* largest record payload accepted */

struct store;

struct store_record {
    uint64_t index;
    uint64_t term;
    const uint8_t *data;
    uint32_t len;
    uint8_t type;
};

struct store_hard_state {
    uint64_t term;
    uint64_t vote;
};

struct store_snap_meta {
    uint64_t index; /* last index the snapshot covers */
    uint64_t term;  /* term of that entry */
    uint32_t conf_len;
    uint8_t conf[STORE_CONF_MAX]; /* filled and read by the node layer */
};

enum store_log_level { STORE_LOG_INFO = 0, STORE_LOG_WARN = 1, STORE_LOG_ERROR = 2 };
typedef void (*store_log_fn)(void *arg, enum store_log_level level, const char *msg);

struct store_options {
    uint64_t segment_size; /* roll to a new segment beyond this; default 64 MiB */
    /* Group commit: after a sync, wait at most this long for the queue to
     * hold as many records as the batch just synced (0 = never wait).
     * Helps many closed-loop producers share one sync; costs nothing when
     * there is one producer.  Default 0. */
    unsigned batch_wait_us;
    store_log_fn log; /* start-up recovery and failures are reported here */
    void *log_arg;
    /* Called (with log_arg) after each log segment store_open() verified:
     * lets a service manager hear that a long recovery is still moving. */
    void (*recover_progress)(void *arg, size_t segs_done, size_t segs_total);
    /* Optional, called by the writer thread after each successful group
     * commit: records and bytes it wrote, seconds its fdatasync took.  For
     * metrics; must be quick and must not call back into the store. */
    void (*synced)(void *arg, uint64_t records, uint64_t bytes, double sync_seconds);
    void *synced_arg;
};
void store_options_default(struct store_options *o);

/* What store_open() found and repaired; and why it refused, if it did. */
struct store_open_info {
    uint64_t cut_bytes;   /* torn tail cut from the last segment */
    char cut_reason[256]; /* "" when nothing was cut */
    uint64_t dropped_records; /* log discarded because it did not continue the snapshot */
    char error[512];      /* on failure: what, which file, which offset */
};

/* Open (creating if needed) the data directory and recover it: flock the
 * directory, verify every CRC, cut a torn tail, refuse (with info->error
 * naming file and offset) on any other damage or an unknown format version.
 * Afterwards the recovered state is available from store_hard_state(),
 * store_snapshot_meta() and store_read(store_first_index() .. store_last_index()).
 * info may be NULL. */
int store_open(const char *dir, const struct store_options *opts,
               struct store **out, struct store_open_info *info);

/* Finish all queued work (write and sync it), stop the writer, release the
 * lock.  Returns the store's error if it had failed, else 0. */
int store_close(struct store *st);

/* --- state as the owner sees it: includes queued, not yet durable work --- */
void store_hard_state(const struct store *st, struct store_hard_state *hs);
uint64_t store_first_index(struct store *st);
uint64_t store_last_index(const struct store *st); /* snapshot index if the log is empty */
uint64_t store_last_term(const struct store *st);
/* Term of index (or of the snapshot's index); -ERANGE if not known. */
int store_term(const struct store *st, uint64_t index, uint64_t *term);
/* false, or the latest snapshot's meta (queued ones included). */
bool store_snapshot_meta(const struct store *st, struct store_snap_meta *meta);

/* --- changes: queued, done in order by the writer thread --- */

/* Persist hs (may be NULL) and records recs[0..n) (n may be 0).  Records must
 * have consecutive indexes and non-decreasing terms; the first index must be
 * in (snapshot index, last index + 1].  If it is <= the last index, the log
 * from there on is replaced (Raft conflict repair).  Data is copied; *seq (may
 * be NULL) identifies the operation for store_poll()/store_wait(). */
int store_append(struct store *st, const struct store_hard_state *hs,
                 const struct store_record *recs, size_t n, uint64_t *seq);

/* Save a snapshot (data copied) atomically; only the newest one is kept.  If
 * the log holds meta->index with meta->term the log is kept (compact it later
 * with store_compact()); otherwise the whole log is discarded and the next
 * append must start at meta->index + 1.  meta->index must be greater than the
 * current snapshot's. */
int store_snapshot_save(struct store *st, const struct store_snap_meta *meta,
                        const void *data, size_t len, uint64_t *seq);

/* A snapshot written without blocking the caller's loop: another thread
 * (or a forked child) streams it into snap/snapshot.bg with the
 * stream_* calls (open, write any number of times, close with keep=true to
 * fill in the header and fsync; keep=false removes it).  Only the store's
 * snapdir is read, so another thread or a forked copy of st may use it.  Then, on the owner's
 * thread, store_snapshot_adopt() queues making it the current snapshot, in
 * order with the other writes, with store_snapshot_save()'s log rules;
 * -ESTALE (and the file removed) if the store already has a snapshot at or
 * past meta->index, e.g. one installed from the leader meanwhile. */
struct store_snap_stream;
/* Where a streamed snapshot is written before it is adopted: one file each
 * for the node's own background writer and for a snapshot received from
 * the leader, so that neither truncates the other. */
enum store_snap_src { STORE_SNAP_BG, STORE_SNAP_RX };
int store_snapshot_stream_open(const struct store *st, const struct store_snap_meta *meta,
                               enum store_snap_src src, struct store_snap_stream **out);
int store_snapshot_stream_write(struct store_snap_stream *s, const void *data, size_t len);
/* crc32c of the data written so far (the header's data CRC once closed). */
uint32_t store_snapshot_stream_crc(const struct store_snap_stream *s);
int store_snapshot_stream_close(struct store_snap_stream *s, bool keep);
int store_snapshot_adopt(struct store *st, const struct store_snap_meta *meta,
                         enum store_snap_src src, uint64_t *seq);
/* Remove what a stream to src left (a transfer the core did not take). */
void store_snapshot_discard(const struct store *st, enum store_snap_src src);
/* The data of a closed (keep=true), not yet adopted stream file, mapped
 * read-only: page cache, not heap, however large.  Unmap with
 * store_snapshot_unmap(). */
struct store_snap_map {
    const uint8_t *data;
    size_t len;
    void *base;
    size_t base_len;
};
int store_snapshot_stream_map(const struct store *st, enum store_snap_src src,
                              struct store_snap_map *m);
void store_snapshot_unmap(struct store_snap_map *m);

/* The current snapshot opened for reading in pieces: fd stays valid (and
 * keeps its bytes) when a newer snapshot replaces it; store_snapshot_reader_close
 * when done. */
struct store_snap_reader {
    int fd;
    struct store_snap_meta meta;
    uint64_t data_off, data_len;
    uint32_t data_crc;
};
int store_snapshot_reader_open(struct store *st, struct store_snap_reader *r);
/* Closes a reader's fd (-1: nothing) without blocking the caller: the last
 * close of a replaced snapshot frees its blocks, which can take long. */
void store_snapshot_reader_close(int fd);

/* Delete whole segments whose records are all <= upto; upto must be covered
 * by the snapshot.  Records up to upto may remain (segment granularity). */
int store_compact(struct store *st, uint64_t upto, uint64_t *seq);

/* --- the incarnation file: opaque bytes of the node layer (the data-
 * directory incarnations its state machine applied), in the file
 * `incarnations`, replaced atomically in order with the other writes --- */
#define STORE_INC_MAX 4096
int store_incarnations_save(struct store *st, const void *data, size_t len, uint64_t *seq);
/* What the newest durable save wrote, into a malloc'd *data (free() it).
 * -ENOENT if there is none, -EBADMSG if it is damaged (logged).  Call at
 * start-up, before any save. */
int store_incarnations_load(struct store *st, void **data, size_t *len);

/* --- completion --- */

struct store_progress {
    uint64_t done_seq;       /* every operation with seq <= this is durable */
    uint64_t durable_index;  /* last durable log index (snapshot index if empty) */
    uint64_t durable_term;
    int err;                 /* 0, or the error the store failed with */
};

/* Readable (EPOLLIN) when progress was made or the store failed. */
int store_eventfd(const struct store *st);
/* Clear the eventfd and report progress; returns p->err. */
int store_poll(struct store *st, struct store_progress *p);
/* Block until operation seq is durable or the store fails. */
int store_wait(struct store *st, uint64_t seq);
/* store_append() then store_wait(): the synchronous path for tests and tools. */
int store_append_sync(struct store *st, const struct store_hard_state *hs,
                      const struct store_record *recs, size_t n);

bool store_failed(const struct store *st);
/* Human-readable reason of the last failure ("" if none). */
const char *store_errmsg(const struct store *st);

/* --- reading --- */

/* Records lo..hi (inclusive) that are durable and not about to be replaced by
 * queued work; -ERANGE outside that.  *out is one malloc'd block (free() it)
 * holding the array and the data it points to. */
int store_read(struct store *st, uint64_t lo, uint64_t hi,
               struct store_record **out, size_t *n);

/* Bytes of the current durable snapshot (-ENOENT if none), and reading them. */
int store_snapshot_size(struct store *st, uint64_t *size);
int store_snapshot_read(struct store *st, uint64_t off, void *buf, size_t len);
/* Log segment files and the bytes of records they hold (for monitoring). */
void store_log_files(struct store *st, uint64_t *segments, uint64_t *bytes);
/* Convenience: whole snapshot into a malloc'd buffer. */
int store_snapshot_load(struct store *st, struct store_snap_meta *meta,
                        void **data, size_t *len);

/* Replaces dir/name with len bytes of buf, atomically and durably: a temp
 * file, fsync, rename over name, fsync of dir.  For the node's own small
 * files beside the store's (the identity file): one implementation, and
 * the same fault seam as the store's files, so tests can slow or fail it.
 * 0 or -errno; err says which step failed. */
int store_file_replace(const char *dir, const char *name, const void *buf, size_t len,
                       char *err, size_t errlen);

/* --- test hooks --------------------------------------------------------
 * Every write, pwrite, fdatasync, fsync, rename, open, ftruncate and unlink
 * the store makes goes through one seam (fault.c).  Tests (and a node test
 * option) arm it to fail the Nth call of one kind with EIO or ENOSPC.  The
 * hook is process-global on purpose: it sits below every store instance. */
enum store_fault_op {
    STORE_FAULT_OPEN = 0,
    STORE_FAULT_WRITE,     /* write/pwrite/pwritev; a failing call writes half first */
    STORE_FAULT_FDATASYNC,
    STORE_FAULT_FSYNC,
    STORE_FAULT_RENAME,
    STORE_FAULT_FTRUNCATE,
    STORE_FAULT_UNLINK,
    STORE_FAULT_NOPS
};
const char *store_fault_op_name(enum store_fault_op op);
/* Fail the nth (1-based, counted from now) call of op with -err, once. */
void store_fault_arm(enum store_fault_op op, unsigned long nth, int err);
/* Make every call of op take usec longer (0: back to normal), a slow disk. */
void store_fault_delay(enum store_fault_op op, unsigned usec);
/* Disarm everything, zero the counters, stop and forget power-cut tracking. */
void store_fault_reset(void);
/* Calls of op since the last reset. */
unsigned long store_fault_count(enum store_fault_op op);
/* Power-cut simulation: while tracking, the seam remembers how many bytes of
 * each file were last synced; store_fault_power_cut() then cuts every file
 * back to a random length between that and its current size, sometimes
 * zeroing a page of the unsynced part first (what a real crash leaves). */
void store_fault_track(bool on);
/* Make fdatasync/fsync return at once without syncing (tracking still counts
 * them as synced): lets seeded crash tests run thousands of sequences fast.
 * Never for anything but tests; store_fault_reset() turns it off. */
void store_fault_fake_sync(bool on);
void store_fault_power_cut(uint64_t seed);
/* Drop a store as a crash would: no further writes or syncs of queued work
 * (a batch already being written finishes), no clean shutdown. */
void store_crash(struct store *st);

#endif
