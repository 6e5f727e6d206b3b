/* segment.c - the segment file format: header and record framing, and the
 * start-up verifier that walks one segment, checks every CRC and decides
 * whether damage is a torn tail (cut it) or real corruption (refuse). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/crc32c.h"
#include "common/endian.h"
#include "store/internal.h"

#define SECTOR 512u

void seg_header_encode(uint8_t *h, uint64_t first)
{
    memset(h, 0, SEG_HDR);
    memcpy(h, SEG_MAGIC, 8);
    put_le32(h + 8, STORE_FORMAT_VERSION);
    put_le64(h + 16, first);
    put_le32(h + 28, crc32c(0, h, 28));
}

size_t rec_frame_size(uint32_t len)
{
    return REC_HDR + (size_t)len;
}

void rec_encode(uint8_t *out, const struct store_record *r)
{
    put_le32(out + 4, r->len);
    put_le64(out + 8, r->index);
    put_le64(out + 16, r->term);
    out[24] = r->type;
    out[25] = out[26] = out[27] = 0;
    put_le32(out + 28, crc32c(0, r->data, r->len));
    put_le32(out, crc32c(0, out + 4, REC_HDR - 4));
    if (r->len)
        memcpy(out + REC_HDR, r->data, r->len);
}

int rec_decode(const uint8_t *buf, size_t avail, struct store_record *r)
{
    if (avail < REC_HDR || crc32c(0, buf + 4, REC_HDR - 4) != get_le32(buf))
        return -EINVAL;
    uint32_t len = get_le32(buf + 4);
    if (len > avail - REC_HDR || crc32c(0, buf + REC_HDR, len) != get_le32(buf + 28))
        return -EINVAL;
    r->len = len;
    r->index = get_le64(buf + 8);
    r->term = get_le64(buf + 16);
    r->type = buf[24];
    r->data = buf + REC_HDR;
    return 0;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

/* The signature of a write the disk never got: a whole sector (or everything
 * up to the end of the file) of zeros starting on a sector boundary inside
 * [a, b).  Random damage does not look like that; a flipped bit never does. */
static bool zero_sector_in(const uint8_t *p, uint64_t size, uint64_t a, uint64_t b)
{
    for (uint64_t s = (a + SECTOR - 1) / SECTOR * SECTOR; s < b && s < size; s += SECTOR) {
        uint64_t end = s + SECTOR < size ? s + SECTOR : size;
        if (all_zero(p + s, (size_t)(end - s)))
            return true;
    }
    return false;
}

static int push_off(struct seg_scan *o, size_t *cap, uint32_t off, uint64_t index,
                    uint64_t term, size_t *caprun)
{
    if (o->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 1024;
        uint32_t *no = realloc(o->off, nc * sizeof(*no));
        if (!no)
            return -ENOMEM;
        o->off = no;
        *cap = nc;
    }
    o->off[o->n++] = off;
    if (o->nruns == 0 || o->runs[o->nruns - 1].term != term) {
        if (o->nruns == *caprun) {
            size_t nc = *caprun ? *caprun * 2 : 8;
            struct term_run *nr = realloc(o->runs, nc * sizeof(*nr));
            if (!nr)
                return -ENOMEM;
            o->runs = nr;
            *caprun = nc;
        }
        o->runs[o->nruns++] = (struct term_run){.first = index, .term = term};
    }
    return 0;
}

/* Header problems: 0 fine, 1 torn (only possible for the last segment), <0 error. */
static int check_header(const char *path, const uint8_t *p, uint64_t size, uint64_t first,
                        bool is_last, struct seg_scan *o, struct serr *e)
{
    const char *torn = NULL;
    if (size < SEG_HDR)
        torn = "file ends inside the segment header";
    else if (all_zero(p, SEG_HDR))
        torn = "segment header is all zeros (never written)";
    if (torn) {
        if (!is_last)
            return serr_set(e, -EINVAL, "%s: offset 0: %s, but it is not the last segment",
                            path, torn);
        if (size > STORE_MAX_UNSYNCED + SEG_HDR)
            return serr_set(e, -EINVAL, "%s: offset 0: %s, yet the file holds %llu bytes: "
                            "not a torn write", path, torn, (unsigned long long)size);
        snprintf(o->why, sizeof(o->why), "%s", torn);
        return 1;
    }
    int rc = format_check(path, p, size, SEG_MAGIC, "log segment", e);
    if (rc < 0)
        return rc;
    if (crc32c(0, p, 28) != get_le32(p + 28))
        return serr_set(e, -EINVAL, "%s: offset 0: segment header checksum mismatch", path);
    if (get_le64(p + 16) != first)
        return serr_set(e, -EINVAL, "%s: offset 16: header says first index %llu, name says %llu",
                        path, (unsigned long long)get_le64(p + 16), (unsigned long long)first);
    return 0;
}

int seg_scan(const char *path, uint64_t first, bool is_last, struct seg_scan *o,
             struct serr *e)
{
    memset(o, 0, sizeof(*o));
    uint64_t size;
    int fd = file_open_ro(path, &size, e);
    if (fd < 0)
        return fd == -ENOENT ? serr_set(e, fd, "open %s: vanished", path) : fd;
    o->file_size = size;
    const uint8_t *p = NULL;
    if (size) {
        void *m = mmap(NULL, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
        if (m == MAP_FAILED) {
            int rc = serr_set(e, -errno, "mmap %s: %s", path, strerror(errno));
            close(fd);
            return rc;
        }
        p = m;
        madvise(m, size, MADV_SEQUENTIAL);
    }
    close(fd);

    int rc = check_header(path, p, size, first, is_last, o, e);
    if (rc != 0) {
        if (rc == 1) {
            o->header_torn = o->torn = true;
            rc = 0;
        }
        goto out;
    }
    size_t cap = 0, caprun = 0;
    uint64_t off = SEG_HDR, expect = first, prev_term = 0;
    while (off < size) {
        const uint8_t *h = p + off;
        uint64_t avail = size - off, extent = REC_HDR;
        const char *torn = NULL, *bad = NULL;
        char why[160];
        if (avail < REC_HDR) {
            torn = "file ends inside a record header";
        } else if (all_zero(h, REC_HDR)) {
            torn = "zeros where a record header should be";
        } else if (crc32c(0, h + 4, REC_HDR - 4) != get_le32(h)) {
            if (zero_sector_in(p, size, off, off + REC_HDR))
                torn = "record header partly zeros (unwritten sector)";
            else
                bad = "record header checksum mismatch";
        } else {
            uint32_t len = get_le32(h + 4);
            uint64_t idx = get_le64(h + 8), term = get_le64(h + 16);
            extent = REC_HDR + (uint64_t)len;
            if (len > STORE_MAX_RECORD) {
                bad = "record length out of range";
            } else if (idx != expect) {
                snprintf(why, sizeof(why), "record has index %llu, expected %llu",
                         (unsigned long long)idx, (unsigned long long)expect);
                bad = why;
            } else if (term < prev_term) {
                snprintf(why, sizeof(why), "record %llu has term %llu, lower than %llu before it",
                         (unsigned long long)idx, (unsigned long long)term,
                         (unsigned long long)prev_term);
                bad = why;
            } else if (extent > avail) {
                snprintf(why, sizeof(why), "record %llu needs %llu bytes, file ends after %llu",
                         (unsigned long long)idx, (unsigned long long)extent,
                         (unsigned long long)avail);
                torn = why;
            } else if (crc32c(0, h + REC_HDR, len) != get_le32(h + 28)) {
                if (zero_sector_in(p, size, off, off + extent))
                    torn = "record data partly zeros (unwritten sector)";
                else
                    bad = "record data checksum mismatch";
            } else {
                if ((rc = push_off(o, &cap, (uint32_t)off, idx, term, &caprun)) < 0) {
                    serr_set(e, rc, "out of memory scanning %s", path);
                    goto out;
                }
                prev_term = term;
                expect++;
                off += extent;
                continue;
            }
        }
        if (bad || !is_last) {
            rc = serr_set(e, -EINVAL, "%s: offset %llu: %s%s", path, (unsigned long long)off,
                          bad ? bad : torn,
                          bad ? " (damage before the end of the log: refusing to start)"
                              : " (not the last segment: refusing to start)");
            goto out;
        }
        uint64_t bound = STORE_MAX_UNSYNCED > extent ? STORE_MAX_UNSYNCED : extent;
        if (size - off > bound) {
            rc = serr_set(e, -EINVAL, "%s: offset %llu: %s, but %llu bytes follow, more than "
                          "one unsynced write: not a torn write, refusing to start", path,
                          (unsigned long long)off, torn, (unsigned long long)(size - off));
            goto out;
        }
        o->torn = true;
        snprintf(o->why, sizeof(o->why), "offset %llu: %s", (unsigned long long)off, torn);
        break;
    }
    o->valid_size = off < size ? off : size;
out:
    if (p)
        munmap((void *)p, size);
    if (rc < 0)
        seg_scan_free(o);
    return rc;
}

void seg_scan_free(struct seg_scan *s)
{
    free(s->off);
    free(s->runs);
    s->off = NULL;
    s->runs = NULL;
}
