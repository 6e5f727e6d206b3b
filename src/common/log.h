/* log.h - leveled logging for the daemons: structured journald records when
 * stderr is the journal (or when asked), plain timestamped stderr lines
 * otherwise.  Levels are the syslog ones (LOG_ERR .. LOG_DEBUG), which is
 * what journald's PRIORITY= field uses.  Safe to call from any thread. */
#ifndef RAFTKV_COMMON_LOG_H
#define RAFTKV_COMMON_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <syslog.h> /* LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO, LOG_DEBUG */

enum log_target {
    LOG_TARGET_AUTO,    /* journal if stderr is connected to it, else stderr */
    LOG_TARGET_STDERR,
    LOG_TARGET_JOURNAL,
};

/* One extra structured field.  key: journald field name (A-Z, 0-9, _; not
 * starting with _), e.g. "RAFTKV_LEADER".  NULL value = field left out. */
struct log_field {
    const char *key;
    const char *value;
};

/* A NULL-terminated field list in place:
 *   log_event(LOG_NOTICE, "leader_change",
 *             LOG_FIELDS({"RAFTKV_LEADER", log_u64(buf, id)}),
 *             "leader is now node %u", id); */
#define LOG_FIELDS(...) ((const struct log_field[]){ __VA_ARGS__, { NULL, NULL } })

/* ident: program name (SYSLOG_IDENTIFIER, and the stderr prefix).
 * LOG_TARGET_AUTO resolves now via log_stderr_is_journal(); JOURNAL (asked
 * or detected) falls back to STDERR when journald's socket is missing, so
 * records are never silently dropped.  May be called
 * again (e.g. after the config is read); not concurrently with logging. */
void log_init(const char *ident, enum log_target target);
enum log_target log_get_target(void); /* resolved: never AUTO after log_init */

void log_set_level(int level);        /* records above level are dropped */
int log_get_level(void);
static inline bool log_enabled(int level);

/* Context attached to every record from now on: RAFTKV_NODE, RAFTKV_TERM,
 * RAFTKV_ROLE.  node 0 / role NULL = not set.  role must be a string that
 * lives forever (a literal), because other threads may read it at any time. */
void log_set_node(uint64_t node);
void log_set_term(uint64_t term);
void log_set_role(const char *role);

/* "error" "warn" "notice" "info" "debug" (also "warning", "err") -> level,
 * or -EINVAL.  log_level_name: the canonical name, "?" if out of range. */
int log_level_parse(const char *s);
const char *log_level_name(int level);
/* "auto" "stderr" "journal" -> enum log_target, or -EINVAL. */
int log_target_parse(const char *s);
const char *log_target_name(enum log_target t);

/* Whether fd 2 is the stream systemd set up to journald: $JOURNAL_STREAM
 * ("dev:ino") names the same file as fstat(2). */
bool log_stderr_is_journal(void);

/* One byte as terminal-safe text: itself when printable ASCII, else \n,
 * \t, \r, \\ or \xNN (into buf).  Keys and values in logs and raftkvctl. */
const char *log_escape_byte(unsigned char ch, char buf[5]);
/* Up to max bytes of p escaped into out (outlen bytes, always terminated),
 * with "..." when p was longer.  Returns out. */
const char *log_escape(const void *p, size_t n, size_t max, char *out, size_t outlen);

/* Decimal rendering of v into buf, for field values; returns buf. */
const char *log_u64(char buf[24], uint64_t v);

/* event: RAFTKV_EVENT value ("election", "leader_change", "snapshot", ...)
 * or NULL; fields: LOG_FIELDS(...) or NULL.  Use the macros below, which
 * skip formatting when the level is disabled and add the code location. */
void log_emit(int level, const char *file, int line, const char *func,
              const char *event, const struct log_field *fields,
              const char *fmt, ...) __attribute__((format(printf, 7, 8)));

#define log_event(level, event, fields, ...)                                   \
    do {                                                                       \
        if (log_enabled(level))                                                \
            log_emit((level), __FILE__, __LINE__, __func__, (event), (fields), \
                     __VA_ARGS__);                                             \
    } while (0)

#define log_error(...)  log_event(LOG_ERR, NULL, NULL, __VA_ARGS__)
#define log_warn(...)   log_event(LOG_WARNING, NULL, NULL, __VA_ARGS__)
#define log_notice(...) log_event(LOG_NOTICE, NULL, NULL, __VA_ARGS__)
#define log_info(...)   log_event(LOG_INFO, NULL, NULL, __VA_ARGS__)
#define log_debug(...)  log_event(LOG_DEBUG, NULL, NULL, __VA_ARGS__)

/* Internal; read through log_enabled() so the check inlines. */
extern int log_level_current;

static inline bool log_enabled(int level)
{
    return level <= __atomic_load_n(&log_level_current, __ATOMIC_RELAXED);
}

#endif
