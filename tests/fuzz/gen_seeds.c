/* gen_seeds.c - writes the seed corpora under <out>/<target>/ using raftkv's
 * own encoders, so every seed is a valid input that reaches deep code.
 *   build-fuzz/tests/fuzz/fuzz-gen-seeds tests/fuzz/corpus
 * Deterministic: rerunning gives the same files (except segment/meta, which
 * go through the store and are the same bytes too). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/endian.h"
#include "kv/kv.h"
#include "net/framing.h"
#include "node/peer_codec.h"
#include "raftkv.pb-c.h"
#include "store/store.h"
#include "store_dir.h"

static const char *outdir;

static void put(const char *target, const char *name, const void *data, size_t len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", outdir, target);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/%s/%s", outdir, target, name);
    FILE *f = fopen(path, "wb");
    if (!f || (len && fwrite(data, 1, len, f) != len) || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

static void *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        exit(1);
    }
    static uint8_t buf[1 << 20];
    *len = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    return buf;
}

static size_t pack_req(Raftkv__Request *r, uint8_t *buf)
{
    return raftkv__request__pack(r, buf);
}

/* ---- request: Request protobufs and kv commands ---- */
static uint8_t reqs[4][256];
static size_t reqlens[4];

static void gen_request(void)
{
    Raftkv__Request r = RAFTKV__REQUEST__INIT;
    Raftkv__SetRequest set = RAFTKV__SET_REQUEST__INIT;
    Raftkv__GetRequest get = RAFTKV__GET_REQUEST__INIT;
    Raftkv__CasRequest cas = RAFTKV__CAS_REQUEST__INIT;
    Raftkv__DelRequest del = RAFTKV__DEL_REQUEST__INIT;
    r.has_id = 1; r.id = 7;
    r.has_client_id = 1; r.client_id = 42;
    r.has_sequence = 1; r.sequence = 3;
    set.has_key = set.has_value = 1;
    set.key.data = (uint8_t *)"key"; set.key.len = 3;
    set.value.data = (uint8_t *)"value"; set.value.len = 5;
    r.op_case = RAFTKV__REQUEST__OP_SET; r.set = &set;
    reqlens[0] = pack_req(&r, reqs[0]);
    get.has_key = 1; get.key = set.key;
    r.op_case = RAFTKV__REQUEST__OP_GET; r.get = &get;
    reqlens[1] = pack_req(&r, reqs[1]);
    cas.has_key = cas.has_value = cas.has_expected = 1;
    cas.key = set.key; cas.value = set.value; cas.expected = set.key;
    r.op_case = RAFTKV__REQUEST__OP_CAS; r.cas = &cas;
    reqlens[2] = pack_req(&r, reqs[2]);
    del.has_key = 1; del.key = set.key;
    r.op_case = RAFTKV__REQUEST__OP_DEL; r.del = &del;
    reqlens[3] = pack_req(&r, reqs[3]);
    const char *names[] = {"req-set", "req-get", "req-cas", "req-del"};
    for (int i = 0; i < 4; i++)
        put("request", names[i], reqs[i], reqlens[i]);

    struct kv_command cmds[] = {
        {.op = KV_OP_SET, .client_id = 42, .sequence = 1, .time_ms = 1000,
         .key = "k", .key_len = 1, .value = "v", .value_len = 1},
        {.op = KV_OP_DEL, .time_ms = 2000, .key = "key", .key_len = 3},
        {.op = KV_OP_CAS, .client_id = 1, .sequence = 9, .time_ms = 3000, .key = "k",
         .key_len = 1, .expected = "old", .expected_len = 3, .value = "new", .value_len = 3},
        {.op = KV_OP_CAS, .time_ms = 4000, .key = "k", .key_len = 1, .expect_absent = true,
         .value = "x", .value_len = 1},
        {.op = KV_OP_NOOP, .time_ms = 5000},
    };
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        uint8_t buf[256];
        size_t len;
        if (kv_command_encode(&cmds[i], buf, sizeof(buf), &len) != KV_OK)
            exit(1);
        char name[32];
        snprintf(name, sizeof(name), "cmd-%zu", i);
        put("request", name, buf, len);
    }
}

/* ---- pxframe: the proxy's router takes requests and responses ---- */
static void gen_pxframe(void)
{
    const char *names[] = {"req-set", "req-get", "req-cas", "req-del"};
    for (int i = 0; i < 4; i++)
        put("pxframe", names[i], reqs[i], reqlens[i]);
    Raftkv__Response r = RAFTKV__RESPONSE__INIT;
    Raftkv__GetResponse get = RAFTKV__GET_RESPONSE__INIT;
    uint8_t buf[256];
    r.has_id = 1; r.id = 300;
    r.has_status = 1; r.status = RAFTKV__STATUS__OK;
    get.has_value = 1; get.value.data = (uint8_t *)"value"; get.value.len = 5;
    get.has_applied_index = 1; get.applied_index = 12;
    r.result_case = RAFTKV__RESPONSE__RESULT_GET; r.get = &get;
    put("pxframe", "resp-get", buf, raftkv__response__pack(&r, buf));
    r.result_case = RAFTKV__RESPONSE__RESULT__NOT_SET;
    r.status = RAFTKV__STATUS__NOT_LEADER;
    r.message = "node 2 is not the leader; node 1 is";
    r.has_leader_id = 1; r.leader_id = 1;
    r.leader_address = "127.0.0.1:7001";
    put("pxframe", "resp-not-leader", buf, raftkv__response__pack(&r, buf));
}

/* ---- frame: byte 0 picks max_frame (see fuzz_frame.c) ---- */
static void gen_frame(void)
{
    uint8_t buf[2048];
    size_t off = 1;
    buf[0] = 6 | (3 << 3); /* max_frame 65536 */
    for (int i = 0; i < 4; i++) {
        int64_t n = net_frame_encode(buf + off, sizeof(buf) - off, reqs[i], reqlens[i], 65536);
        if (n < 0)
            exit(1);
        off += (size_t)n;
    }
    put("frame", "four-requests", buf, off);
    uint8_t one[8] = {4, 0, 0, 0, 2, 'h', 'i', 0};
    put("frame", "small", one, 7);
    uint8_t empty[5] = {5, 0, 0, 0, 0};
    put("frame", "empty-frame", empty, 5);
    uint8_t over[6] = {2, 0, 0, 0, 5, 'x'}; /* max_frame 4, frame of 5 */
    put("frame", "oversize", over, 6);
}

/* ---- peer ---- */
static void gen_peer(void)
{
    struct peer_encoder e;
    if (peer_encoder_init(&e) < 0)
        exit(1);
    static const uint8_t zero_id[PEER_CLUSTER_ID_LEN]; /* fuzz_peer.c's cluster */
    const struct peer_ident self = {.cluster = "fuzz", .cluster_id = zero_id, .incarnation = 7};
    struct raft_entry ents[3] = {
        {.term = 2, .index = 10, .data = (const uint8_t *)"abc", .len = 3, .type = RAFT_ENTRY_NORMAL},
        {.term = 2, .index = 11, .data = NULL, .len = 0, .type = RAFT_ENTRY_NORMAL},
        {.term = 3, .index = 12, .data = (const uint8_t *)"\1\2", .len = 2, .type = RAFT_ENTRY_NORMAL},
    };
    struct raft_msg msgs[] = {
        {.type = RAFT_MSG_VOTE, .from = 1, .to = 2, .term = 3, .index = 9, .log_term = 2},
        {.type = RAFT_MSG_VOTE_RESP, .from = 2, .to = 1, .term = 3, .reject = true},
        {.type = RAFT_MSG_PREVOTE, .from = 1, .to = 2, .term = 4, .index = 9, .log_term = 2},
        {.type = RAFT_MSG_APPEND, .from = 1, .to = 2, .term = 3, .index = 9, .log_term = 2,
         .commit = 8, .entries = ents, .n_entries = 3},
        {.type = RAFT_MSG_APPEND_RESP, .from = 2, .to = 1, .term = 3, .index = 5, .reject = true,
         .hint_index = 4, .hint_term = 1},
        {.type = RAFT_MSG_HEARTBEAT, .from = 1, .to = 2, .term = 3, .commit = 12, .ctx = 77},
        {.type = RAFT_MSG_READ_INDEX_RESP, .from = 1, .to = 2, .term = 3, .index = 12, .ctx = 5},
        {.type = RAFT_MSG_TIMEOUT_NOW, .from = 1, .to = 2, .term = 3},
        {.type = RAFT_MSG_SNAPSHOT, .from = 1, .to = 2, .term = 3, .index = 20, .log_term = 3,
         .snap = {.index = 20, .term = 3, .conf = {.n = 3, .m = {{1, RAFT_VOTER}, {2, RAFT_VOTER},
                                                               {3, RAFT_LEARNER}}}}},
    };
    for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
        struct peer_chunk c = {.offset = 0, .total = 4, .data = (const uint8_t *)"snap",
                               .len = 4, .last = true};
        const struct ProtobufCMessage *pm =
            peer_encode(&e, &self, &msgs[i], msgs[i].type == RAFT_MSG_SNAPSHOT ? &c : NULL);
        if (!pm)
            exit(1);
        uint8_t buf[1024];
        size_t n = protobuf_c_message_pack(pm, buf);
        char name[32];
        snprintf(name, sizeof(name), "msg-type-%u", msgs[i].type);
        put("peer", name, buf, n);
    }
    struct peer_probe_reply reply = {.state = PEER_PROBE_DATA, .term = 3, .commit = 9,
                                     .is_member = true, .role = RAFT_VOTER,
                                     .recorded_incarnation = 5};
    for (int k = 0; k < 2; k++) {
        const struct ProtobufCMessage *pm = peer_encode_probe(&e, &self, 2, k ? &reply : NULL);
        uint8_t buf[256];
        size_t n = protobuf_c_message_pack(pm, buf);
        put("peer", k ? "probe-reply" : "probe", buf, n);
    }
    peer_encoder_free(&e);
}

/* ---- config ---- */
static void gen_config(void)
{
    static const char full[] =
        "# comment\n"
        "[cluster]\n"
        "name = blue-1   # inline comment\n"
        "max_frame_bytes=6MiB\n"
        "max_value_bytes = 2m ; also a comment\n"
        "max_key_bytes = 1KiB\r\n"
        "log_level = \"debug\"\n"
        "data_dir_base = \"/srv/kv#1\"\n"
        "[proxy]\n"
        "unix =\n"
        "[node.2]\npeer = 127.0.0.1:7102\nclient = 127.0.0.1:7202\n"
        "[node.1]\npeer = 127.0.0.1:7101\nclient = 127.0.0.1:7201\n"
        "[node.3]\npeer = [::1]:7103\nclient = db3:7203\n";
    put("config", "full", full, sizeof(full) - 1);
    static const char one[] =
        "[cluster]\nname = one\ntick_ms = 10\n"
        "[node.1]\npeer = 127.0.0.1:7101\nclient = 127.0.0.1:7201\n";
    put("config", "one-node", one, sizeof(one) - 1);
    static const char bad[] = "[cluster]\nelecton_timeout_ms = 100\n";
    put("config", "typo", bad, sizeof(bad) - 1);
    /* issue 15's options: TLS, the CRL, the anonymous role, insecure */
    static const char tls[] =
        "[cluster]\nname = sec\ntls_ca = /etc/raftkv/tls/ca.crt\ntls_crl = /etc/raftkv/tls/crl.pem\n"
        "insecure = false\nanonymous_role = read\n"
        "[node.1]\npeer = 10.0.0.1:7101\nclient = 10.0.0.1:7201\ntls_cert = /etc/raftkv/tls/node-1.crt\n"
        "tls_key = /etc/raftkv/tls/node-1.key\n"
        "[proxy]\nlisten = 0.0.0.0:7000\ntls_cert = /etc/raftkv/tls/proxy.crt\ntls_key = /etc/raftkv/tls/proxy.key\n";
    put("config", "tls", tls, sizeof(tls) - 1);
}

/* ---- snapshot ---- */
struct membuf {
    uint8_t *p;
    size_t len;
};

static int mem_write(void *ctx, const void *buf, size_t len)
{
    struct membuf *m = ctx;
    uint8_t *np = realloc(m->p, m->len + len);
    if (!np)
        return -1;
    memcpy(np + m->len, buf, len);
    m->p = np;
    m->len += len;
    return 0;
}

/* A dictionary of nkeys keys "keyNN" (with client sessions if sessions). */
static struct kv *seed_kv(int nkeys, bool sessions)
{
    struct kv *kv = kv_new(NULL);
    if (!kv)
        exit(1);
    for (int i = 0; i < nkeys; i++) {
        char key[16], val[16];
        snprintf(key, sizeof(key), "key%02d", i);
        snprintf(val, sizeof(val), "v%d", i * 7);
        struct kv_command c = {.op = KV_OP_SET, .client_id = sessions ? (uint64_t)(i % 3 + 1) : 0,
                               .sequence = sessions ? (uint64_t)(i / 3 + 1) : 0,
                               .time_ms = 1000 + (uint64_t)i, .key = key, .key_len = strlen(key),
                               .value = val, .value_len = strlen(val)};
        uint8_t buf[128];
        size_t len;
        struct kv_result res;
        if (kv_command_encode(&c, buf, sizeof(buf), &len) != KV_OK ||
            kv_apply(kv, (uint64_t)i + 1, buf, len, &res) != KV_OK)
            exit(1);
    }
    return kv;
}

static void gen_snapshot(void)
{
    for (int variant = 0; variant < 3; variant++) {
        int nkeys = variant == 0 ? 0 : variant == 1 ? 3 : 12;
        struct kv *kv = seed_kv(nkeys, variant == 2);
        struct membuf m = {0};
        if (kv_snapshot_write(kv, mem_write, &m) != 0)
            exit(1);
        char name[32];
        snprintf(name, sizeof(name), "snap-%d-keys", nkeys);
        put("snapshot", name, m.p, m.len);
        free(m.p);
        kv_free(kv);
    }
}

/* ---- snaprx: chunk records (tests/fuzz/fuzz_snaprx.c) ---- */
static size_t snaprx_record(uint8_t *out, uint8_t flags, uint16_t off, uint16_t total,
                            const uint8_t *data, uint8_t len)
{
    out[0] = flags;
    out[1] = (uint8_t)off;
    out[2] = (uint8_t)(off >> 8);
    out[3] = (uint8_t)total;
    out[4] = (uint8_t)(total >> 8);
    out[5] = len;
    memcpy(out + 6, data, len);
    return 6u + len;
}

/* A whole small snapshot in chunks of 16 bytes with its CRC; the same cut
 * short and restarted; and two connections interleaved. */
static void gen_snaprx(void)
{
    struct kv *kv = seed_kv(4, false);
    struct membuf m = {0};
    if (kv_snapshot_write(kv, mem_write, &m) != 0 || m.len > 60000)
        exit(1);
    kv_free(kv);
    uint8_t *out = malloc(4 * (m.len + 64 * (m.len / 16 + 2)));
    if (!out)
        exit(1);
    /* flags: index 4 (bits 5-6), the right CRC */
    const uint8_t base = 0x60 | 0x0c;
    for (int variant = 0; variant < 3; variant++) {
        size_t n = 0;
        if (variant == 1) /* two chunks of a transfer cut short; it starts over */
            for (size_t off = 0; off < 32 && off < m.len; off += 16)
                n += snaprx_record(out + n, base, (uint16_t)off, (uint16_t)m.len, m.p + off,
                                   (uint8_t)(m.len - off < 16 ? m.len - off : 16));
        for (size_t off = 0; off < m.len; off += 16) {
            uint8_t k = (uint8_t)(m.len - off < 16 ? m.len - off : 16);
            uint8_t fl = (uint8_t)(base | (off + k == m.len ? 0x02 : 0));
            n += snaprx_record(out + n, fl, (uint16_t)off, (uint16_t)m.len, m.p + off, k);
            if (variant == 2) /* a stray chunk from the other connection */
                n += snaprx_record(out + n, 0x01 | 0x10, 0, 100, m.p, 8);
        }
        char name[32];
        snprintf(name, sizeof(name), "transfer-%d", variant);
        put("snaprx", name, out, n);
    }
    free(out);
    free(m.p);
}

/* ---- segment and meta, through the store itself ---- */
static void gen_store(void)
{
    char dir[] = "/tmp/raftkv-seeds-XXXXXX";
    if (!mkdtemp(dir))
        exit(1);
    struct store *st;
    if (store_open(dir, NULL, &st, NULL) != 0)
        exit(1);
    struct store_hard_state hs = {.term = 3, .vote = 2};
    struct store_record recs[4];
    const char *payloads[] = {"", "hello", "world!", "\x01\x02\x03"};
    for (int i = 0; i < 4; i++)
        recs[i] = (struct store_record){.index = (uint64_t)i + 1, .term = i < 2 ? 2 : 3,
                                        .data = (const uint8_t *)payloads[i],
                                        .len = (uint32_t)strlen(payloads[i]),
                                        .type = i == 0 ? 1 : 0};
    if (store_append_sync(st, &hs, recs, 4) != 0 || store_close(st) != 0)
        exit(1);
    char path[512];
    size_t len;
    snprintf(path, sizeof(path), "%s/meta", dir);
    void *b = slurp(path, &len);
    put("meta", "term3-vote2", b, len);
    snprintf(path, sizeof(path), "%s/log/%020d.seg", dir, 1);
    b = slurp(path, &len);
    put("segment", "four-records", b, len);
    /* the same segment with the last record torn in half */
    put("segment", "torn-tail", b, len - 3);
    put("segment", "header-only", b, 32);
    store_dir_remove(dir);

    uint8_t zero[40] = {0};
    memcpy(zero, "RAFTKVMT", 8);
    put("meta", "bad-crc", zero, sizeof(zero));
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
        return 2;
    }
    outdir = argv[1];
    mkdir(outdir, 0755);
    gen_request();
    gen_pxframe();
    gen_frame();
    gen_peer();
    gen_config();
    gen_snapshot();
    gen_snaprx();
    gen_store();
    return 0;
}
