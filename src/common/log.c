/* log.c - record formatting and the two sinks (journald, stderr).  A record
 * is built on the stack and handed over in one sd_journal_sendv() or one
 * write(), so lines from several threads never interleave. */
#include "common/log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define SD_JOURNAL_SUPPRESS_LOCATION /* we pass the caller's location */
#include <systemd/sd-journal.h>

#define MSG_MAX 2048
#define FIELD_MAX 16    /* extra fields per record; more are dropped */
#define FIELD_BYTES 4096
#define JOURNAL_SOCKET "/run/systemd/journal/socket"

int log_level_current = LOG_INFO;

static char log_ident[64] = "raftkv";
static enum log_target log_target_resolved = LOG_TARGET_STDERR;
static uint64_t log_node, log_term;
static const char *log_role;

static const char *const level_names[] = {
    [LOG_ERR] = "error", [LOG_WARNING] = "warn", [LOG_NOTICE] = "notice",
    [LOG_INFO] = "info", [LOG_DEBUG] = "debug",
};
static const char *const target_names[] = {
    [LOG_TARGET_AUTO] = "auto", [LOG_TARGET_STDERR] = "stderr",
    [LOG_TARGET_JOURNAL] = "journal",
};

int log_level_parse(const char *s)
{
    for (int l = LOG_ERR; l <= LOG_DEBUG; l++)
        if (strcmp(s, level_names[l]) == 0)
            return l;
    if (strcmp(s, "warning") == 0)
        return LOG_WARNING;
    if (strcmp(s, "err") == 0)
        return LOG_ERR;
    return -EINVAL;
}

const char *log_level_name(int level)
{
    return level >= LOG_ERR && level <= LOG_DEBUG ? level_names[level] : "?";
}

int log_target_parse(const char *s)
{
    for (int t = LOG_TARGET_AUTO; t <= LOG_TARGET_JOURNAL; t++)
        if (strcmp(s, target_names[t]) == 0)
            return t;
    return -EINVAL;
}

const char *log_target_name(enum log_target t)
{
    return t <= LOG_TARGET_JOURNAL ? target_names[t] : "?";
}

bool log_stderr_is_journal(void)
{
    const char *e = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    int end = 0;

    if (!e || sscanf(e, "%llu:%llu%n", &dev, &ino, &end) != 2 || e[end] != '\0')
        return false;
    if (fstat(STDERR_FILENO, &st) < 0)
        return false;
    return st.st_dev == dev && st.st_ino == ino;
}

void log_init(const char *ident, enum log_target target)
{
    if (ident)
        snprintf(log_ident, sizeof(log_ident), "%s", ident);
    if (target == LOG_TARGET_AUTO)
        target = log_stderr_is_journal() ? LOG_TARGET_JOURNAL : LOG_TARGET_STDERR;
    /* sd_journal_send reports success when journald is absent, dropping the
     * record: only a socket that exists counts as a journal. */
    if (target == LOG_TARGET_JOURNAL && access(JOURNAL_SOCKET, W_OK) != 0)
        target = LOG_TARGET_STDERR;
    log_target_resolved = target;
}

enum log_target log_get_target(void)
{
    return log_target_resolved;
}

void log_set_level(int level)
{
    if (level < LOG_ERR)
        level = LOG_ERR;
    if (level > LOG_DEBUG)
        level = LOG_DEBUG;
    __atomic_store_n(&log_level_current, level, __ATOMIC_RELAXED);
}

int log_get_level(void)
{
    return __atomic_load_n(&log_level_current, __ATOMIC_RELAXED);
}

void log_set_node(uint64_t node) { __atomic_store_n(&log_node, node, __ATOMIC_RELAXED); }
void log_set_term(uint64_t term) { __atomic_store_n(&log_term, term, __ATOMIC_RELAXED); }
void log_set_role(const char *role) { __atomic_store_n(&log_role, role, __ATOMIC_RELAXED); }

const char *log_u64(char buf[24], uint64_t v)
{
    snprintf(buf, 24, "%" PRIu64, v);
    return buf;
}

/* Appends to a fixed buffer, silently truncating: a long log line must never
 * fail or allocate. */
struct sbuf {
    char *p;
    size_t len, cap;
};

static void sb_vprintf(struct sbuf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static void sb_vprintf(struct sbuf *b, const char *fmt, va_list ap)
{
    if (b->len + 1 >= b->cap)
        return;
    int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    if (n > 0)
        b->len += (size_t)n < b->cap - b->len ? (size_t)n : b->cap - b->len - 1;
}

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sb_vprintf(b, fmt, ap);
    va_end(ap);
}

/* Returns the start of the appended text, which stays NUL-terminated. */
static char *sb_field(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *sb_field(struct sbuf *b, const char *fmt, ...)
{
    char *start = b->p + b->len;
    va_list ap;
    va_start(ap, fmt);
    sb_vprintf(b, fmt, ap);
    va_end(ap);
    if (b->len + 1 < b->cap)
        b->len++; /* keep the NUL */
    return start;
}

static int emit_journal(int level, const char *file, int line, const char *func,
                        const char *event, const struct log_field *fields, const char *msg)
{
    char space[FIELD_BYTES], cf[512], cl[32];
    struct sbuf b = { space, 0, sizeof(space) };
    struct iovec iov[8 + FIELD_MAX];
    int n = 0;
    uint64_t node = __atomic_load_n(&log_node, __ATOMIC_RELAXED);
    uint64_t term = __atomic_load_n(&log_term, __ATOMIC_RELAXED);
    const char *role = __atomic_load_n(&log_role, __ATOMIC_RELAXED);

#define ADD(s) (iov[n].iov_base = (s), iov[n].iov_len = strlen(iov[n].iov_base), n++)
    ADD(sb_field(&b, "MESSAGE=%s", msg));
    ADD(sb_field(&b, "PRIORITY=%d", level));
    ADD(sb_field(&b, "SYSLOG_IDENTIFIER=%s", log_ident));
    if (node)
        ADD(sb_field(&b, "RAFTKV_NODE=%" PRIu64, node));
    if (term)
        ADD(sb_field(&b, "RAFTKV_TERM=%" PRIu64, term));
    if (role)
        ADD(sb_field(&b, "RAFTKV_ROLE=%s", role));
    if (event)
        ADD(sb_field(&b, "RAFTKV_EVENT=%s", event));
    for (int i = 0; fields && fields[i].key && i < FIELD_MAX; i++)
        if (fields[i].value)
            ADD(sb_field(&b, "%s=%s", fields[i].key, fields[i].value));
#undef ADD
    snprintf(cf, sizeof(cf), "CODE_FILE=%s", file);
    snprintf(cl, sizeof(cl), "CODE_LINE=%d", line);
    return sd_journal_sendv_with_location(cf, cl, func, iov, n);
}

static void emit_stderr(int level, const char *event, const struct log_field *fields, const char *msg)
{
    char line[MSG_MAX + FIELD_BYTES];
    struct sbuf b = { line, 0, sizeof(line) - 1 }; /* room for the newline */
    struct timespec ts;
    struct tm tm;
    uint64_t node = __atomic_load_n(&log_node, __ATOMIC_RELAXED);

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    sb_printf(&b, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s", tm.tm_year + 1900,
              tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
              ts.tv_nsec / 1000000, log_ident);
    if (node)
        sb_printf(&b, "[%" PRIu64 "]", node);
    sb_printf(&b, " %s", log_level_name(level));
    if (event)
        sb_printf(&b, " %s:", event);
    sb_printf(&b, " %s", msg);
    for (int i = 0; fields && fields[i].key && i < FIELD_MAX; i++)
        if (fields[i].value)
            sb_printf(&b, " %s=%s", fields[i].key, fields[i].value);
    /* Messages may quote peer-supplied bytes: one record stays one line. */
    for (size_t i = 0; i < b.len; i++)
        if ((unsigned char)line[i] < 0x20)
            line[i] = '?';
    line[b.len++] = '\n';

    for (size_t off = 0; off < b.len;) {
        ssize_t w = write(STDERR_FILENO, line + off, b.len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
}

void log_emit(int level, const char *file, int line, const char *func,
              const char *event, const struct log_field *fields, const char *fmt, ...)
{
    char msg[MSG_MAX];
    struct sbuf b = { msg, 0, sizeof(msg) };
    va_list ap;
    int saved_errno = errno; /* callers log between a failure and reading errno */

    if (!log_enabled(level))
        return;
    va_start(ap, fmt);
    sb_vprintf(&b, fmt, ap);
    va_end(ap);

    if (log_target_resolved != LOG_TARGET_JOURNAL ||
        emit_journal(level, file, line, func, event, fields, msg) < 0)
        emit_stderr(level, event, fields, msg);
    errno = saved_errno;
}

const char *log_escape_byte(unsigned char ch, char buf[5])
{
    switch (ch) {
    case '\\': return "\\\\";
    case '\n': return "\\n";
    case '\t': return "\\t";
    case '\r': return "\\r";
    }
    if (ch < 0x20 || ch >= 0x7f) {
        snprintf(buf, 5, "\\x%02x", ch);
        return buf;
    }
    buf[0] = (char)ch;
    buf[1] = '\0';
    return buf;
}

const char *log_escape(const void *p, size_t n, size_t max, char *out, size_t outlen)
{
    const unsigned char *s = p;
    size_t k = 0, i = 0;
    char b[5];
    if (!outlen)
        return out;
    /* Keep room for "..." and the terminator. */
    for (; i < n && i < max; i++) {
        const char *e = log_escape_byte(s[i], b);
        size_t l = strlen(e);
        if (k + l + 4 > outlen)
            break;
        memcpy(out + k, e, l);
        k += l;
    }
    out[k] = 0;
    if (i < n && k + 4 <= outlen)
        memcpy(out + k, "...", 4);
    return out;
}
