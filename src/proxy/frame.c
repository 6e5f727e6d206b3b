/* frame.c - the proxy's frame router over protobuf wire bytes (frame.h):
 * one pass over the top-level fields, reading the few the proxy routes on
 * and noting where the ones it replaces lie.  Wire format: each field is a
 * varint tag (number << 3 | wire type) and a value; varint, 64-bit,
 * length-delimited and 32-bit values only (groups are refused). */
#include "proxy/frame.h"

#include <errno.h>
#include <protobuf-c/protobuf-c.h>
#include <string.h>
#include <sys/uio.h>

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

struct field {
    uint32_t num;
    unsigned wt;
    uint64_t v; /* a varint's value */
    size_t start, end;
    size_t value; /* a length-delimited field's bytes: [value, end) */
};

static int get_varint(const uint8_t *b, size_t len, size_t *pos, uint64_t *v)
{
    uint64_t r = 0;
    for (unsigned shift = 0; shift < 70; shift += 7) {
        if (*pos >= len)
            return -EPROTO;
        uint8_t c = b[(*pos)++];
        if (shift < 64)
            r |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *v = r;
            return 0;
        }
    }
    return -EPROTO; /* more than 10 bytes */
}

static int next_field(const uint8_t *b, size_t len, size_t *pos, struct field *f)
{
    uint64_t tag, n;
    f->start = *pos;
    /* As protobuf-c reads a tag: at most 5 bytes, and a first byte whose
     * field-number bits are all 0 is refused even if later bytes are not. */
    if (get_varint(b, len, pos, &tag) < 0 || *pos - f->start > 5 || tag > UINT32_MAX ||
        (b[f->start] & 0xf8) == 0)
        return -EPROTO;
    f->num = (uint32_t)(tag >> 3);
    f->wt = (unsigned)(tag & 7);
    f->v = 0;
    switch (f->wt) {
    case WT_VARINT:
        if (get_varint(b, len, pos, &f->v) < 0)
            return -EPROTO;
        break;
    case WT_I64:
    case WT_I32:
        n = f->wt == WT_I64 ? 8 : 4;
        if (len - *pos < n)
            return -EPROTO;
        *pos += n;
        break;
    case WT_LEN:
        /* protobuf-c reads a length in at most 5 bytes too: a longer one
         * (an overlong zero, say) passed here and failed on the node. */
        f->value = *pos;
        if (get_varint(b, len, pos, &n) < 0 || *pos - f->value > 5 || n > len - *pos)
            return -EPROTO;
        f->value = *pos;
        *pos += n;
        break;
    default:
        return -EPROTO;
    }
    f->end = *pos;
    return 0;
}

static void cut(struct pxframe_cuts *c, const struct field *f)
{
    if (c->n == PXFRAME_MAX_CUTS) {
        c->overflow = true;
        return;
    }
    c->start[c->n] = f->start;
    c->end[c->n] = f->end;
    c->n++;
}

/* Fields 1..9 are the envelope's scalars, 10..19 the oneof's messages. */
static bool is_oneof(uint32_t num)
{
    return num >= 10 && num <= 19;
}

int pxframe_scan_request(const uint8_t *b, size_t len, struct pxframe_request *r)
{
    memset(r, 0, sizeof(*r));
    for (size_t pos = 0; pos < len;) {
        struct field f;
        if (next_field(b, len, &pos, &f) < 0)
            return -EPROTO;
        if (f.num <= 4 && f.wt != WT_VARINT)
            return -EPROTO;
        if (is_oneof(f.num) && f.wt != WT_LEN)
            return -EPROTO;
        switch (f.num) {
        case 1: r->id = f.v; break;
        case 2: r->client_id = f.v; break;
        case 3: r->sequence = f.v; break;
        case 4: r->timeout_ms = (uint32_t)f.v; break;
        default:
            if (is_oneof(f.num))
                r->op = f.num;
            break;
        }
        if (f.num >= 1 && f.num <= 3)
            cut(&r->cuts, &f);
    }
    return 0;
}

int pxframe_scan_response(const uint8_t *b, size_t len, struct pxframe_response *r)
{
    memset(r, 0, sizeof(*r));
    for (size_t pos = 0; pos < len;) {
        struct field f;
        if (next_field(b, len, &pos, &f) < 0)
            return -EPROTO;
        bool scalar = f.num == 1 || f.num == 2 || f.num == 4;
        if ((scalar && f.wt != WT_VARINT) || ((f.num == 3 || f.num == 5 || is_oneof(f.num)) && f.wt != WT_LEN))
            return -EPROTO;
        switch (f.num) {
        case 1:
            r->id = f.v;
            r->has_id = true;
            cut(&r->cuts, &f);
            break;
        case 2: r->status = (int32_t)(uint32_t)f.v; break;
        case 4:
        case 5: r->has_leader_hint = true; break;
        default:
            if (is_oneof(f.num))
                r->result = f.num;
            break;
        }
    }
    return 0;
}

/* The wire type protobuf-c wants for a field of type t; -1: no scalar. */
static int wire_type_of(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_BOOL:
    case PROTOBUF_C_TYPE_ENUM: return WT_VARINT;
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_FLOAT: return WT_I32;
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE: return WT_I64;
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_BYTES:
    case PROTOBUF_C_TYPE_MESSAGE: return WT_LEN;
    }
    return -1;
}

static bool valid_msg(const ProtobufCMessageDescriptor *d, const uint8_t *b, size_t len, unsigned depth)
{
    if (depth > 32)
        return false;
    for (unsigned i = 0; i < d->n_fields; i++)
        if (d->fields[i].label == PROTOBUF_C_LABEL_REQUIRED)
            return false;
    for (size_t pos = 0; pos < len;) {
        struct field f;
        if (next_field(b, len, &pos, &f) < 0)
            return false;
        const ProtobufCFieldDescriptor *fd = protobuf_c_message_descriptor_get_field(d, f.num);
        if (!fd)
            continue; /* unknown: kept as bytes */
        if ((int)f.wt != wire_type_of(fd->type))
            return false; /* includes packed repeated scalars: not used here */
        if (fd->type == PROTOBUF_C_TYPE_MESSAGE &&
            !valid_msg(fd->descriptor, b + f.value, f.end - f.value, depth + 1))
            return false;
    }
    return true;
}

bool pxframe_valid(const ProtobufCMessageDescriptor *d, const uint8_t *b, size_t len)
{
    return valid_msg(d, b, len, 0);
}

size_t pxframe_uncut_iov(const uint8_t *b, size_t len, const struct pxframe_cuts *c, struct iovec *iov)
{
    size_t n = 0, at = 0;
    for (size_t i = 0; i <= c->n; i++) {
        size_t upto = i < c->n ? c->start[i] : len;
        if (upto > at) {
            iov[n].iov_base = (void *)(b + at);
            iov[n].iov_len = upto - at;
            n++;
        }
        if (i < c->n)
            at = c->end[i];
    }
    return n;
}

size_t pxframe_copy_uncut(const uint8_t *b, size_t len, const struct pxframe_cuts *c, uint8_t *out)
{
    struct iovec iov[PXFRAME_MAX_CUTS + 1];
    size_t n = pxframe_uncut_iov(b, len, c, iov), total = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(out + total, iov[i].iov_base, iov[i].iov_len);
        total += iov[i].iov_len;
    }
    return total;
}

static size_t put_varint(uint8_t *out, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        out[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    out[n++] = (uint8_t)v;
    return n;
}

size_t pxframe_put_header(uint8_t out[PXFRAME_HEADER_MAX], uint64_t id, uint64_t client_id, uint64_t sequence)
{
    size_t n = 0;
    out[n++] = 1 << 3 | WT_VARINT;
    n += put_varint(out + n, id);
    if (client_id) {
        out[n++] = 2 << 3 | WT_VARINT;
        n += put_varint(out + n, client_id);
        out[n++] = 3 << 3 | WT_VARINT;
        n += put_varint(out + n, sequence);
    }
    return n;
}
