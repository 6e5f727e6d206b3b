/* fuzz_pxframe.c - libFuzzer target: the proxy's frame router
 * (src/proxy/frame.c), which reads a client's Request and a node's
 * Response from their wire bytes and re-addresses them by copying.  The
 * input is taken as both.  What pxframe_valid passes, protobuf-c must
 * decode.  Whenever protobuf-c decodes it too, the router must have read
 * the same fields, and the re-addressed frame must decode to the same
 * message with only the id (and a request's session) replaced. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "proxy/frame.h"
#include "raftkv.pb-c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NEW_ID 0x8123456789abcdefull
#define NEW_CLIENT 77ull
#define NEW_SEQ 300ull

/* Two messages are the same when protobuf-c packs them to the same bytes. */
static void assert_same(const ProtobufCMessage *a, const ProtobufCMessage *b)
{
    size_t la = protobuf_c_message_get_packed_size(a), lb = protobuf_c_message_get_packed_size(b);
    assert(la == lb);
    uint8_t *pa = malloc(la + 1), *pb = malloc(lb + 1);
    if (pa && pb) {
        protobuf_c_message_pack(a, pa);
        protobuf_c_message_pack(b, pb);
        assert(memcmp(pa, pb, la) == 0);
    }
    free(pa);
    free(pb);
}

static size_t readdress(const uint8_t *data, size_t size, const struct pxframe_cuts *cuts, uint64_t client_id,
                        uint8_t *out)
{
    size_t n = pxframe_put_header(out, NEW_ID, client_id, NEW_SEQ);
    assert(n <= PXFRAME_HEADER_MAX);
    return n + pxframe_copy_uncut(data, size, cuts, out + n);
}

static void check_request(const uint8_t *data, size_t size, uint8_t *out)
{
    struct pxframe_request fr;
    int rv = pxframe_scan_request(data, size, &fr);
    Raftkv__Request *orig = raftkv__request__unpack(NULL, size, data);
    /* The proxy forwards what pxframe_valid passes without decoding it:
     * a node must be able to decode it. */
    if (pxframe_valid(&raftkv__request__descriptor, data, size))
        assert(orig);
    if (rv == 0 && orig && !fr.cuts.overflow) {
        assert(fr.id == orig->id && fr.client_id == orig->client_id && fr.sequence == orig->sequence);
        assert(fr.timeout_ms == orig->timeout_ms && (int)fr.op == (int)orig->op_case);
        uint64_t cid = size % 2 ? NEW_CLIENT : 0; /* with and without a session */
        size_t n = readdress(data, size, &fr.cuts, cid, out);
        Raftkv__Request *re = raftkv__request__unpack(NULL, n, out);
        assert(re && re->id == NEW_ID && re->client_id == cid && re->sequence == (cid ? NEW_SEQ : 0));
        orig->has_id = 1;
        orig->id = NEW_ID;
        orig->has_client_id = orig->has_sequence = cid != 0;
        orig->client_id = cid;
        orig->sequence = cid ? NEW_SEQ : 0;
        assert_same(&orig->base, &re->base);
        raftkv__request__free_unpacked(re, NULL);
    }
    if (orig)
        raftkv__request__free_unpacked(orig, NULL);
}

static void check_response(const uint8_t *data, size_t size, uint8_t *out)
{
    struct pxframe_response fr;
    int rv = pxframe_scan_response(data, size, &fr);
    Raftkv__Response *orig = raftkv__response__unpack(NULL, size, data);
    if (pxframe_valid(&raftkv__response__descriptor, data, size))
        assert(orig);
    if (rv == 0 && orig && !fr.cuts.overflow) {
        assert(fr.id == orig->id && fr.has_id == (bool)orig->has_id && fr.status == (int32_t)orig->status);
        assert(fr.has_leader_hint == (orig->has_leader_id || orig->leader_address));
        assert((int)fr.result == (int)orig->result_case);
        struct iovec iov[PXFRAME_MAX_CUTS + 2];
        uint8_t hdr[PXFRAME_HEADER_MAX];
        iov[0].iov_base = hdr;
        iov[0].iov_len = pxframe_put_header(hdr, NEW_ID, 0, 0);
        size_t k = 1 + pxframe_uncut_iov(data, size, &fr.cuts, iov + 1), n = 0;
        for (size_t i = 0; i < k; i++) {
            memcpy(out + n, iov[i].iov_base, iov[i].iov_len);
            n += iov[i].iov_len;
        }
        Raftkv__Response *re = raftkv__response__unpack(NULL, n, out);
        assert(re && re->id == NEW_ID);
        orig->has_id = 1;
        orig->id = NEW_ID;
        assert_same(&orig->base, &re->base);
        raftkv__response__free_unpacked(re, NULL);
    }
    if (orig)
        raftkv__response__free_unpacked(orig, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *out = malloc(size + PXFRAME_HEADER_MAX);
    if (!out)
        return 0;
    check_request(data, size, out);
    check_response(data, size, out);
    free(out);
    return 0;
}
