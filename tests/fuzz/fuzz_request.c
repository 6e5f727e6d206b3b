/* fuzz_request.c - libFuzzer target: what a client sends.  The input is
 * unpacked as a Raftkv__Request (raftkv__request__unpack, as src/node/api.c
 * and src/proxy/proxy.c do on every client frame) and, separately, decoded
 * as a replicated kv command (kv_command_decode, as kv_apply does on every
 * committed entry).  The node's own Request validation is in static
 * functions of src/node/api.c and is not reached from here.  A command that
 * decodes must re-encode to the same bytes (varints are minimal, CRC'd).
 * The command is decoded twice: as given, and with its trailing CRC32C
 * recomputed, so mutations get past the checksum into the field parsing. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crc_fix.h"
#include "kv/kv.h"
#include "raftkv.pb-c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_command(const uint8_t *data, size_t size)
{
    struct kv_command c;
    if (kv_command_decode(data, size, &c) != KV_OK)
        return;
    size_t n = kv_command_size(&c);
    assert(n == size);
    uint8_t *buf = malloc(n);
    if (buf) {
        size_t len = 0;
        int rc = kv_command_encode(&c, buf, n, &len);
        assert(rc == KV_OK && len == size && memcmp(buf, data, size) == 0);
        free(buf);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Raftkv__Request *req = raftkv__request__unpack(NULL, size, data);
    if (req) {
        /* touch what api.c reads */
        volatile size_t sink = 0;
        switch (req->op_case) {
        case RAFTKV__REQUEST__OP_SET:
            sink += req->set->key.len + req->set->value.len;
            break;
        case RAFTKV__REQUEST__OP_CAS:
            sink += req->cas->key.len + req->cas->expected.len + req->cas->value.len;
            break;
        case RAFTKV__REQUEST__OP_GET:
            sink += req->get->key.len;
            break;
        case RAFTKV__REQUEST__OP_DEL:
            sink += req->del->key.len;
            break;
        default:
            break;
        }
        (void)sink;
        raftkv__request__free_unpacked(req, NULL);
    }

    fuzz_with_trailing_crc(data, size, check_command);
    return 0;
}
