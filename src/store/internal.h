/* internal.h - what the store's files share and nobody outside src/store may
 * use: on-disk formats, the system-call seam, the segment view and the
 * struct store itself. */
#ifndef RAFTKV_STORE_INTERNAL_H
#define RAFTKV_STORE_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "store/store.h"

#define STORE_FORMAT_VERSION 1

/* The writer never leaves more than this many bytes written but unsynced
 * (except one record larger than it, written alone).  Recovery relies on it:
 * damage further than this from the end of the log cannot be a torn write. */
#define STORE_MAX_UNSYNCED (8u << 20)

/* Segment file: 32-byte header, then records back to back.
 *   header: magic[8] "RAFTKVLG", u32 version, u32 flags (0), u64 first index,
 *           u32 reserved (0), u32 crc32c of the preceding 28 bytes
 *   record: u32 crc32c of bytes 4..32 of this header, u32 len, u64 index,
 *           u64 term, u8 type, u8 pad[3] (0), u32 crc32c of the data,
 *           then len bytes of data
 * The header CRC lets recovery tell a damaged length field from a record that
 * is simply cut short by the end of the file. */
#define SEG_MAGIC "RAFTKVLG"
#define SEG_HDR 32
#define REC_HDR 32

/* ---- errors and messages ---- */
struct serr {
    int code;
    char msg[512];
};
/* Record the first error and return its code (negative errno). */
__attribute__((format(printf, 3, 4)))
int serr_set(struct serr *e, int code, const char *fmt, ...);
void store_logf(const struct store_options *o, enum store_log_level lvl,
                const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- the seam (fault.c): returns -errno on failure, never sets errno ---- */
int sys_open(const char *path, int flags, mode_t mode);
ssize_t sys_pwritev_all(int fd, const struct iovec *iov, int iovcnt, off_t off);
ssize_t sys_write_all(int fd, const void *buf, size_t len);
int sys_fdatasync(int fd);
int sys_fsync(int fd);
int sys_rename(const char *from, const char *to);
int sys_ftruncate(int fd, off_t len);
int sys_unlink(const char *path);
void sys_close(int fd);
/* Closes fds (-1 entries skipped) on a short-lived thread: for files whose
 * last close frees their blocks.  Synchronously if no thread can start. */
void sys_close_detached(const int *fds, size_t n);

/* ---- small file helpers (file.c) ---- */
char *path_join(const char *dir, const char *name); /* malloc'd */
/* tmp file, write, fsync, rename over name, fsync the directory */
int file_replace_atomic(const char *dir, int dirfd, const char *name,
                        const struct iovec *iov, int iovcnt, struct serr *e);
/* Open for reading and learn the size; -ENOENT (no message) if absent. */
int file_open_ro(const char *path, uint64_t *size, struct serr *e);
/* pread exactly len bytes; -ENODATA if the file ends first. */
int file_pread_full(int fd, void *buf, size_t len, uint64_t off);
/* Check magic and format version at the start of a file's header. */
int format_check(const char *path, const uint8_t *b, uint64_t len, const char *magic,
                 const char *what, struct serr *e);
/* Read a whole small file; -ENOENT if absent. */
int file_read_all(const char *path, uint8_t **buf, size_t *len, struct serr *e);
int dir_open_or_create(const char *path, struct serr *e);

/* ---- record framing (segment.c) ---- */
void seg_header_encode(uint8_t *h, uint64_t first);
size_t rec_frame_size(uint32_t len);
/* Write the frame of r into out (rec_frame_size(r->len) bytes). */
void rec_encode(uint8_t *out, const struct store_record *r);

struct term_run {
    uint64_t first; /* first index having this term */
    uint64_t term;
};

/* One segment as recovery found it. */
struct seg_scan {
    uint64_t n;          /* valid records */
    uint32_t *off;       /* their offsets (malloc'd) */
    struct term_run *runs; /* their terms, run-length (malloc'd) */
    size_t nruns;
    uint64_t valid_size; /* bytes up to the end of the last valid record */
    uint64_t file_size;
    bool torn;           /* the rest after valid_size is a torn tail */
    bool header_torn;    /* even the segment header is torn: whole file is tail */
    char why[200];
};
/* Verify segment path (expected first index `first`) record by record.
 * is_last: damage may be classified as a torn tail; otherwise any damage is
 * an error.  Returns 0 or a negative errno with e->msg naming file/offset. */
int seg_scan(const char *path, uint64_t first, bool is_last,
             struct seg_scan *out, struct serr *e);
void seg_scan_free(struct seg_scan *s);
/* Parse one record frame at buf (avail bytes); 0 if valid. */
int rec_decode(const uint8_t *buf, size_t avail, struct store_record *r);

/* ---- the segment log (seglog.c), mutated by the writer thread only;
 *      readers take *mu ---- */
struct seg {
    uint64_t first;
    uint64_t n;
    uint32_t *off;
    size_t cap;
    uint64_t size; /* bytes in the file that belong to it */
    uint64_t last_term;
    int fd;
};

struct seglog {
    char *dir;
    int dirfd;
    pthread_mutex_t *mu;
    const struct store_options *opts;
    struct seg *segs;
    size_t nsegs, capsegs;
    uint64_t next_index; /* index of the next record when there are no records */
    uint64_t empty_term; /* term reported for an empty log (snapshot's) */
    /* writes gathered for the active segment, not yet written */
    struct iovec *iov;
    int niov, capiov;
    uint64_t pend_bytes;
    uint64_t unsynced; /* bytes put since the last sync */
    uint64_t seg_size;
    bool dirty; /* written but not synced */
    uint8_t seg_hdr[SEG_HDR];
};

/* runs: terms of the recovered records, appended to runs and nruns. */
int seglog_recover(struct seglog *lg, const char *dir, pthread_mutex_t *mu,
                   const struct store_options *opts, struct store_open_info *info,
                   struct serr *e, struct term_run **runs, size_t *nruns);
void seglog_close(struct seglog *lg);
uint64_t seglog_first(const struct seglog *lg);
uint64_t seglog_last(const struct seglog *lg);
uint64_t seglog_last_term(const struct seglog *lg);
/* Term of a record by reading its header; -ERANGE if absent. */
int seglog_term_at(struct seglog *lg, uint64_t index, uint64_t *term, struct serr *e);
/* Queue one encoded frame (buffer must live until seglog_flush). */
int seglog_put(struct seglog *lg, const uint8_t *frame, size_t len, uint64_t index,
               uint64_t term, struct serr *e);
int seglog_flush(struct seglog *lg, struct serr *e);
int seglog_sync(struct seglog *lg, struct serr *e);
int seglog_truncate(struct seglog *lg, uint64_t from, struct serr *e);
int seglog_reset(struct seglog *lg, uint64_t next_index, uint64_t term, struct serr *e);
int seglog_compact(struct seglog *lg, uint64_t upto, struct serr *e);
/* Caller holds *mu. */
int seglog_read_locked(struct seglog *lg, uint64_t lo, uint64_t hi,
                       struct store_record **out, size_t *n);

/* ---- meta (meta.c) ---- */
int meta_load(const char *dir, struct store_hard_state *hs, struct serr *e);
int meta_save(const char *dir, int dirfd, const struct store_hard_state *hs,
              struct serr *e);

/* ---- snapshot (snapshot.c) ---- */
struct snap_file {
    bool present;
    struct store_snap_meta meta;
    uint64_t data_off, data_len;
    int fd;
};
int snap_load(const char *snapdir, struct snap_file *sf, struct serr *e);
int snap_save(const char *snapdir, int dirfd, const struct store_snap_meta *meta,
              const void *data, size_t len, struct snap_file *sf, struct serr *e);
/* A streamed file (SNAP_BG_NAME from the background writer, SNAP_RX_NAME
 * from the leader) becomes snap/snapshot. */
#define SNAP_BG_NAME "snapshot.bg"
#define SNAP_RX_NAME "snapshot.rx"
/* Offset of the data CRC in a snapshot file's header. */
#define SNAP_DATA_CRC_OFF 40
const char *snap_src_name(enum store_snap_src src);
int snap_adopt(const char *snapdir, int dirfd, const struct store_snap_meta *meta,
               enum store_snap_src src, struct snap_file *sf, struct serr *e);
void snap_close(struct snap_file *sf);

/* ---- the incarnation file (incfile.c) ---- */
#define INC_NAME "incarnations"
/* -ENOENT (no message) if absent; *data malloc'd. */
int inc_load(const char *dir, void **data, size_t *len, struct serr *e);
int inc_save(const char *dir, int dirfd, const void *data, size_t len, struct serr *e);

/* ---- lock (lock.c) ---- */
int dir_lock(const char *dir, int *dirfd, struct serr *e);

/* ---- the store (store.c, writer.c) ---- */
enum op_kind { OP_APPEND, OP_SNAP, OP_ADOPT, OP_COMPACT, OP_INC };

struct op {
    struct op *next;
    enum op_kind kind;
    uint64_t seq;
    bool has_hs;
    struct store_hard_state hs;
    /* OP_APPEND: n frames back to back in buf */
    uint64_t first;
    size_t n;
    /* OP_SNAP, OP_ADOPT (the data is in snap_src_name(src)) */
    struct store_snap_meta meta;
    enum store_snap_src src;
    bool reset; /* log does not contain meta.index/term: discard it */
    /* OP_COMPACT */
    uint64_t upto;
    /* OP_APPEND: the frames; OP_INC: the incarnation file's data */
    size_t len;
    uint8_t *buf;
};

struct store {
    char *dir, *snapdir;
    int dirfd, snapdirfd, efd;
    struct store_options opts;

    pthread_mutex_t mu; /* guards everything below marked (mu) */
    pthread_cond_t work, done;
    pthread_t writer;
    bool writer_started;

    /* (mu) queue and progress */
    struct op *qhead, *qtail;
    /* Ops the writer is done with, freed by the owner's thread in
     * store_poll: the owner allocated them, and a free() from the writer
     * takes the owner's malloc arena lock, which the event loop then waits
     * for (seen in perf traces, lock holder preempted on a busy machine). */
    struct op *spent;
    uint64_t q_min_first; /* lowest first index of queued/in-flight appends */
    bool stop, crash;
    uint64_t done_seq;
    uint64_t durable_index, durable_term;
    int failed;
    struct serr err;
    uint64_t q_records; /* records in the queue */
    uint64_t last_batch_records;
    bool batch_waiting; /* writer is in batch_wait() */

    /* (mu) durable files */
    struct seglog seglog;
    struct snap_file snap;
    struct store_hard_state durable_hs;

    /* owner thread's view, including queued work */
    uint64_t next_seq;
    struct store_hard_state hs;
    bool has_snap;
    struct store_snap_meta snap_meta;
    uint64_t first, last; /* first > last when no records */
    struct term_run *runs;
    size_t nruns, capruns;
};

int writer_start(struct store *st);
void op_free_list(struct op *op);
void writer_stop(struct store *st, bool crash);

#endif
