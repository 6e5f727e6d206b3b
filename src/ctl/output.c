/* output.c - how raftkvctl prints bytes that may be anything: escaped for a
 * terminal, as JSON strings (UTF-8 only, else base64), and aligned tables. */
#include "ctl/ctl.h"

#include "common/log.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum ctl_format ctl_format(const struct ctl *ctl, enum ctl_format dflt)
{
    return ctl->o.format == FMT_DEFAULT ? dflt : ctl->o.format;
}

void out_escaped(FILE *f, const void *p, size_t n)
{
    const unsigned char *s = p;
    char buf[5];
    for (size_t i = 0; i < n; i++)
        fputs(log_escape_byte(s[i], buf), f);
}

char *out_escaped_dup(const void *p, size_t n)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    if (!m) {
        fputs("raftkvctl: out of memory\n", stderr);
        exit(EXIT_ERROR);
    }
    out_escaped(m, p, n);
    fclose(m);
    return buf;
}

/* Strict UTF-8: no overlongs, surrogates or code points past U+10FFFF. */
static bool valid_utf8(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t len;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            len = 2, cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3, cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4, cp = c & 0x07;
        } else {
            return false;
        }
        if (i + len > n)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += len;
    }
    return true;
}

static void json_raw_string(FILE *f, const unsigned char *s, size_t n)
{
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c == '\n')
            fputs("\\n", f);
        else if (c == '\t')
            fputs("\\t", f);
        else if (c < 0x20 || c == 0x7f)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

void json_string(FILE *f, const char *s)
{
    if (!s) {
        fputs("null", f);
        return;
    }
    size_t n = strlen(s);
    if (valid_utf8((const unsigned char *)s, n))
        json_raw_string(f, (const unsigned char *)s, n);
    else {
        fputc('"', f);
        out_escaped(f, s, n);
        fputc('"', f);
    }
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void out_base64(FILE *f, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)s[i + 1] << 8;
        if (i + 2 < n)
            v |= s[i + 2];
        fputc(b64[v >> 18 & 63], f);
        fputc(b64[v >> 12 & 63], f);
        fputc(i + 1 < n ? b64[v >> 6 & 63] : '=', f);
        fputc(i + 2 < n ? b64[v & 63] : '=', f);
    }
}

void json_bytes_member(FILE *f, const char *name, const void *p, size_t n, bool base64)
{
    if (!base64 && valid_utf8(p, n)) {
        fprintf(f, "\"%s\":", name);
        json_raw_string(f, p, n);
    } else {
        fprintf(f, "\"%s_base64\":\"", name);
        out_base64(f, p, n);
        fputc('"', f);
    }
}

/* ---- tables ---------------------------------------------------------- */

struct table {
    size_t ncols, nrows, cap;
    char **cells; /* row-major, nrows + 1 rows (the header first) */
    size_t *width;
};

static char *dup_cell(const char *s)
{
    char *d = strdup(s ? s : "");
    if (!d) {
        fputs("raftkvctl: out of memory\n", stderr);
        exit(EXIT_ERROR);
    }
    return d;
}

struct table *table_new(size_t ncols, const char *const *headers)
{
    struct table *t = calloc(1, sizeof(*t));
    if (!t || !(t->width = calloc(ncols, sizeof(size_t)))) {
        fputs("raftkvctl: out of memory\n", stderr);
        exit(EXIT_ERROR);
    }
    t->ncols = ncols;
    t->nrows = (size_t)-1; /* the header row is row -1 */
    table_add(t, headers);
    return t;
}

void table_add(struct table *t, const char *const *cells)
{
    size_t used = (t->nrows + 1) * t->ncols;
    if (used + t->ncols > t->cap) {
        size_t cap = t->cap ? t->cap * 2 : t->ncols * 16;
        char **p = realloc(t->cells, cap * sizeof(*p));
        if (!p) {
            fputs("raftkvctl: out of memory\n", stderr);
            exit(EXIT_ERROR);
        }
        t->cells = p;
        t->cap = cap;
    }
    for (size_t i = 0; i < t->ncols; i++) {
        t->cells[used + i] = dup_cell(cells[i]);
        size_t w = strlen(t->cells[used + i]);
        if (w > t->width[i])
            t->width[i] = w;
    }
    t->nrows++;
}

void table_print(const struct table *t, FILE *f, bool header)
{
    for (size_t r = header ? 0 : 1; r <= t->nrows; r++) {
        for (size_t c = 0; c < t->ncols; c++) {
            const char *s = t->cells[r * t->ncols + c];
            if (!header)
                fprintf(f, "%s%s", s, c + 1 < t->ncols ? "\t" : "\n");
            else if (c + 1 < t->ncols)
                fprintf(f, "%-*s  ", (int)t->width[c], s);
            else
                fprintf(f, "%s\n", s);
        }
    }
}

void table_free(struct table *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < (t->nrows + 1) * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    free(t->width);
    free(t);
}
