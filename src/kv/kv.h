/* kv.h - the key-value state machine that committed Raft entries are applied
 * to: an ordered dictionary, the command codec stored in log entries, client
 * sessions for exactly-once writes, and the snapshot codec.
 *
 * Pure C: no I/O, no clock, no threads.  Everything that changes state is a
 * function of the applied entries alone, so every replica that applies the
 * same entries holds the same state and writes byte-identical snapshots.
 *
 * Errors are small negative numbers (enum kv_err); kv_strerror() names them.
 * Outcomes of applying a command (NOT_FOUND, CAS_FAILED, ...) are not errors:
 * they are deterministic results reported in struct kv_result.
 *
 * Lifetimes: pointers handed out into the dictionary (values from get, keys
 * and values from iterators and listings, CAS current values in results) stay
 * valid until the next change to that dictionary or state machine.
 */
#ifndef RAFTKV_KV_H
#define RAFTKV_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum kv_err {
    KV_OK = 0,
    KV_ENOMEM = -1,    /* allocation failed; nothing was changed */
    KV_EINVAL = -2,    /* bad argument */
    KV_EBADMSG = -3,   /* bytes do not decode: truncated, corrupt, trailing data */
    KV_EVERSION = -4,  /* well-formed header of an unknown format version */
    KV_ENOSPC = -5,    /* output buffer too small */
    KV_ENOTFOUND = -6, /* no such key */
    KV_EINDEX = -7,    /* log index not after the applied index */
    KV_EBUSY = -8,     /* state changed under a snapshot writer */
};
const char *kv_strerror(int err);

/* ---- ordered dictionary ------------------------------------------------ */

/* A B+tree of binary keys (any bytes, NUL included, compared as unsigned
 * bytes with the shorter key first on a common prefix) to binary values.
 * Size limits are the caller's policy; lengths here only need to fit u32. */
struct kv_dict;

struct kv_dict *kv_dict_new(void);
void kv_dict_free(struct kv_dict *d);

/* KV_OK with *val and *vlen pointing into the dictionary, or KV_ENOTFOUND. */
int kv_dict_get(const struct kv_dict *d, const void *key, size_t klen,
                const void **val, size_t *vlen);
/* Insert or replace.  KV_OK, KV_EINVAL (length over UINT32_MAX) or KV_ENOMEM;
 * on any error the dictionary is unchanged. */
int kv_dict_set(struct kv_dict *d, const void *key, size_t klen,
                const void *val, size_t vlen);
/* KV_OK or KV_ENOTFOUND.  Allocates only while frozen (copies of the
 * nodes a view reads): then KV_ENOMEM, with the dictionary unchanged. */
int kv_dict_del(struct kv_dict *d, const void *key, size_t klen);

/* A read-only view of the dictionary as it is now, for one other thread to
 * read (get, seek, iterate) while d goes on changing on its own thread;
 * NULL when out of memory or a view is already out.  Until kv_dict_thaw,
 * a change copies the nodes on its path the first time (about one node per
 * tree level per first write to a region) and keeps what the view reads. */
struct kv_dict *kv_dict_freeze(struct kv_dict *d);
/* The view's reader is done: frees the view and returns what was kept for
 * it (NULL if nothing), to be freed with kv_garbage_free() -- after a long
 * snapshot many small frees, which kv_garbage_free_some() slices.  Best
 * freed on the thread that changed d: from another thread every free takes
 * the malloc arena lock of d's thread, which d's thread then waits for in
 * its own malloc and free (seen with perf at 10 M keys), the longer when
 * the freeing thread runs at a low priority and is preempted holding it. */
struct kv_garbage;
struct kv_garbage *kv_dict_thaw(struct kv_dict *d, struct kv_dict *view);
void kv_garbage_free(struct kv_garbage *g);
/* Frees at most max of g's nodes and entries: true once none are left and
 * g is freed with them. */
bool kv_garbage_free_some(struct kv_garbage *g, size_t max);
/* Moves what src holds into dst, and frees src: 0, or -ENOMEM with both
 * unchanged. */
int kv_garbage_merge(struct kv_garbage *dst, struct kv_garbage *src);

size_t kv_dict_count(const struct kv_dict *d);
/* Sum of key and value lengths. */
uint64_t kv_dict_data_bytes(const struct kv_dict *d);
/* Bytes requested from malloc for entries and tree nodes (data plus
 * overhead); what the dictionary costs in memory, short of allocator slack. */
uint64_t kv_dict_mem_bytes(const struct kv_dict *d);
/* Of those, the bytes kept only for a frozen view: the nodes and entries
 * changed since kv_dict_freeze.  A snapshot's extra memory. */
uint64_t kv_dict_frozen_bytes(const struct kv_dict *d);

/* A position in key order: the path from the root down to a leaf.
 * Invalidated by any change to the dictionary it was taken on (a view's
 * iterator is not affected by changes to the live tree). */
#define KV_ITER_MAX_DEPTH 16 /* every node holds >= 32 children: 2^64 keys fit */
struct kv_iter {
    const struct kv_dict *d;
    const void *path[KV_ITER_MAX_DEPTH]; /* inner nodes, root first */
    uint8_t pos[KV_ITER_MAX_DEPTH];      /* the child taken in each */
    unsigned depth;
    const void *leaf;
    unsigned idx;
};
/* Position at the first key >= key (after == false) or > key (after == true);
 * key == NULL with klen 0 means the very first key. */
void kv_dict_seek(const struct kv_dict *d, struct kv_iter *it,
                  const void *key, size_t klen, bool after);
/* Yields the current pair and moves on; false at the end. */
bool kv_iter_next(struct kv_iter *it, const void **key, size_t *klen,
                  const void **val, size_t *vlen);

/* Called once per listed pair in key order; a non-zero return stops the
 * listing early (kv_dict_list then returns that value). */
typedef int (*kv_list_fn)(void *ctx, const void *key, size_t klen,
                          const void *val, size_t vlen);

/* Keys that start with prefix (plen 0: all keys) and, when start_after is
 * non-NULL, sort strictly after start_after, in order, at most limit of them
 * (0: no limit).  *more (may be NULL) says whether further matching keys
 * exist, i.e. whether the caller should ask again with start_after set to the
 * last key it got.  Returns KV_OK or the callback's non-zero value. */
int kv_dict_list(const struct kv_dict *d, const void *prefix, size_t plen,
                 const void *start_after, size_t salen, size_t limit,
                 kv_list_fn fn, void *ctx, bool *more);

/* ---- commands (the bytes of a Raft log entry for a client write) -------- */

enum kv_op {
    KV_OP_NOOP = 0, /* no change; carries log time so idle sessions expire */
    KV_OP_SET = 1,
    KV_OP_DEL = 2,
    KV_OP_CAS = 3,  /* set value if key holds expected (or is absent) */
    /* Cluster bookkeeping, proposed by the leader's node only (clients
     * cannot express it): member_id's data directory has this incarnation;
     * 0 forgets it (node/identity.h, node/guard.c). */
    KV_OP_RECORD_INCARNATION = 4,
    /* Cluster bookkeeping, proposed by the leader's node only: learner
     * member_id stays a learner (keep 1: `member add --learner`) or may be
     * promoted automatically once caught up (keep 0: `member add`, `member
     * promote`).  Every leader reads it (node/api_member.c). */
    KV_OP_KEEP_LEARNER = 5,
    /* Cluster bookkeeping, proposed by the leader's node only: the dataset's
     * quota in bytes of keys plus values (0 = none), so every replica
     * refuses the same writes (cluster.max_data_bytes). */
    KV_OP_SET_QUOTA = 6,
};

/* Decoded commands point into the decoded buffer: no copies. */
struct kv_command {
    enum kv_op op;
    uint64_t client_id;  /* 0: no session (then sequence must be 0) */
    uint64_t sequence;   /* >= 1 with a session, increasing per client_id */
    uint64_t time_ms;    /* leader's clock when proposed: log time */
    const void *key;
    size_t key_len;
    const void *value;   /* SET, CAS */
    size_t value_len;
    const void *expected; /* CAS unless expect_absent */
    size_t expected_len;
    bool expect_absent;   /* CAS: succeed only if the key does not exist */
    uint64_t member_id;   /* RECORD_INCARNATION, KEEP_LEARNER (non-zero) */
    uint64_t incarnation; /* RECORD_INCARNATION */
    bool keep;            /* KEEP_LEARNER */
    uint64_t quota_bytes; /* SET_QUOTA */
};

/* Format v1: u8 version, u8 op, uvarint client_id, sequence, time_ms, then
 * per op: SET key value | DEL key | CAS key u8 has_expected [expected] value
 * | RECORD_INCARNATION uvarint member_id, uvarint incarnation (no session)
 * | KEEP_LEARNER uvarint member_id, u8 keep (0 or 1) (no session)
 * | SET_QUOTA uvarint bytes (no session)
 * (each byte string as uvarint length + bytes), then u32 LE CRC32C of all the
 * preceding bytes.  Varints must be minimal; anything else is rejected. */
#define KV_COMMAND_VERSION 1

/* Exact encoded size, or 0 if cmd is invalid (see kv_command_encode). */
size_t kv_command_size(const struct kv_command *cmd);
/* Writes the encoding into buf.  KV_OK with *len set, KV_EINVAL for an
 * invalid command (unknown op, session fields inconsistent, a length over
 * UINT32_MAX, NOOP with a key) or KV_ENOSPC if cap is too small. */
int kv_command_encode(const struct kv_command *cmd, void *buf, size_t cap,
                      size_t *len);
/* KV_OK, KV_EVERSION or KV_EBADMSG.  Never reads outside buf[0..len). */
int kv_command_decode(const void *buf, size_t len, struct kv_command *cmd);

/* ---- the state machine -------------------------------------------------- */

#define KV_SESSION_TTL_DEFAULT_MS (10u * 60u * 1000u)
#define KV_MAX_SESSIONS_DEFAULT 100000u

/* Must be the same on every replica: both decide what apply does. */
struct kv_config {
    uint64_t session_ttl_ms; /* 0: KV_SESSION_TTL_DEFAULT_MS */
    size_t max_sessions;     /* 0: KV_MAX_SESSIONS_DEFAULT */
};

struct kv;

/* cfg may be NULL for the defaults.  NULL on allocation failure. */
struct kv *kv_new(const struct kv_config *cfg);
void kv_free(struct kv *kv);

/* The state machine as it is now, read only, for a snapshot written by
 * another thread while kv goes on applying (kv_dict_freeze): the small
 * tables are copied, the dictionary is shared.  NULL: out of memory, or a
 * view is already out.  kv_thaw() ends it once the reader is done and
 * returns what to free (kv_garbage_free, on any thread).  kv must not be
 * freed while its view is out. */
struct kv *kv_freeze(struct kv *kv);
struct kv_garbage *kv_thaw(struct kv *kv, struct kv *view);

enum kv_status {
    KV_STATUS_OK = 0,
    KV_STATUS_NOT_FOUND,       /* DEL of a missing key (applied, no change) */
    KV_STATUS_CAS_FAILED,      /* see current / current_absent */
    KV_STATUS_INVALID,         /* entry does not decode; nothing changed */
    KV_STATUS_STALE,           /* sequence below the session's last: ignored */
    KV_STATUS_SESSION_EXPIRED, /* unknown client_id with sequence > 1: its
                                * session expired or was evicted, so this
                                * may be a retry of an applied write; not
                                * applied; the client must start over with a
                                * new client_id at sequence 1 */
    KV_STATUS_NO_SPACE,        /* SET/CAS that would grow the dataset past
                                * the quota: nothing changed */
};
const char *kv_status_name(enum kv_status s);

struct kv_result {
    enum kv_status status;
    /* Log index at which the write took effect: the entry's own index, or for
     * a retried write the index of the original. */
    uint64_t index;
    bool duplicate;         /* a retry: original result returned, not applied */
    bool current_absent;    /* CAS_FAILED: the key did not exist */
    const void *current;    /* CAS_FAILED: the value found (current_absent false) */
    size_t current_len;
};

/* Applies one committed log entry at index (must be > the applied index;
 * gaps are fine, e.g. for configuration entries the node handles itself).
 * Session rules, with the command's client_id != 0:
 *  - sequence below the session's last applied one: STALE, nothing applied;
 *  - equal to it: the cached original result, duplicate = true;
 *  - above it: applied, result cached;
 *  - unknown client_id: a new session if sequence == 1, else SESSION_EXPIRED.
 * Log time is the largest time_ms applied so far; before each command,
 * sessions idle for more than session_ttl_ms of log time are dropped; a new
 * session beyond max_sessions evicts the least recently used one.
 * Returns KV_OK (see res->status), KV_EINDEX (index <= applied; nothing
 * changed) or KV_ENOMEM (nothing changed, applied index included: the node
 * may retry the entry but must not go on to later entries before it). */
int kv_apply(struct kv *kv, uint64_t index, const void *entry, size_t len,
             struct kv_result *res);
/* Marks index applied for an entry that is not a kv command (KV_EINDEX if
 * index <= applied). */
int kv_skip(struct kv *kv, uint64_t index);

uint64_t kv_applied_index(const struct kv *kv);
uint64_t kv_log_time_ms(const struct kv *kv);
size_t kv_session_count(const struct kv *kv);
/* The incarnation recorded for a member's data directory; 0 = none. */
uint64_t kv_incarnation(const struct kv *kv, uint64_t member_id);
#define KV_MAX_INCARNATIONS 64
/* Every recorded (member, incarnation), in member order: up to max of them
 * into ids[] and incs[]; returns how many. */
size_t kv_incarnation_list(const struct kv *kv, uint64_t *ids, uint64_t *incs, size_t max);
/* Changes whenever a record is set or forgotten: a caller that keeps a copy
 * of the table compares it before and after kv_apply(). */
uint64_t kv_incarnation_gen(const struct kv *kv);
/* Whether learner member_id was added with --learner and not promoted since
 * (KV_OP_KEEP_LEARNER): automatic promotion leaves it alone. */
bool kv_keep_learner(const struct kv *kv, uint64_t member_id);
/* The quota the log set (KV_OP_SET_QUOTA): bytes of keys plus values that a
 * SET or CAS may not grow the dictionary past; 0 = none. */
uint64_t kv_quota(const struct kv *kv);
#define KV_MAX_KEEP_LEARNERS 64
/* The dictionary, for reads (GET, LIST) and statistics. */
const struct kv_dict *kv_dict(const struct kv *kv);

/* ---- snapshots ----------------------------------------------------------- */

/* Stream v4 (integers little-endian, byte strings as uvarint length + bytes):
 *   "RKVS" u32 version, u64 applied index, u64 log time, u64 session count,
 *   u64 key count;
 *   sessions, least recently used first: uvarint client_id, last sequence,
 *     last active time, result index; u8 status; u8 flags (bit 0: cached CAS
 *     value present); [value];
 *   pairs in key order: key, value;
 *   v2 and later: uvarint count, then per recorded incarnation in member
 *     order: uvarint member id, uvarint incarnation (non-zero);
 *   v3 and later: uvarint count, then the members kept learners
 *     (KV_OP_KEEP_LEARNER) in increasing order: uvarint member id;
 *   v4 and later: uvarint quota (KV_OP_SET_QUOTA, 0 = none);
 *   u32 CRC32C of everything before it.
 * v1 (no incarnations), v2 (no kept learners) and v3 (no quota) still load. */
#define KV_SNAPSHOT_VERSION 4

/* A cursor that yields the snapshot in chunks of any size, so a large state
 * can be streamed.  The state must not change while a writer is open: a
 * change makes the next call fail with KV_EBUSY. */
struct kv_snapshot_writer;

/* NULL on allocation failure. */
struct kv_snapshot_writer *kv_snapshot_writer_new(const struct kv *kv);
/* Fills up to cap bytes of buf: returns how many (cap > 0: only 0 at the
 * end of the stream), or KV_EBUSY. */
ssize_t kv_snapshot_writer_next(struct kv_snapshot_writer *w, void *buf,
                                size_t cap);
void kv_snapshot_writer_free(struct kv_snapshot_writer *w);

/* Whole snapshot through a callback (chunks up to 64 KiB); the callback's
 * non-zero return stops writing and is returned. */
typedef int (*kv_write_fn)(void *ctx, const void *buf, size_t len);
int kv_snapshot_write(const struct kv *kv, kv_write_fn fn, void *ctx);
/* The whole snapshot in one malloc'd buffer (free() it): KV_OK or
 * KV_ENOMEM / the writer's error. */
int kv_snapshot_to_buffer(const struct kv *kv, void **buf, size_t *len);

/* Builds a new state machine from a snapshot, validating everything (magic,
 * version, checksum, lengths, key order, session table, counts, no trailing
 * bytes).  KV_OK with *out set, or KV_EBADMSG / KV_EVERSION / KV_ENOMEM with
 * *out untouched and nothing leaked.  cfg as for kv_new. */
int kv_snapshot_load(const void *buf, size_t len, const struct kv_config *cfg,
                     struct kv **out);

#endif
