/* test_config.c - raftkv.conf parsing: defaults, every syntax and value error
 * naming file:line, cross-option validation, command-line overrides, and
 * that config_dump output parses back to the same configuration. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/config.h"
#include "common/log.h"

#define NODES3                                                           \
    "[node.2]\npeer = 127.0.0.1:7102\nclient = 127.0.0.1:7202\n"         \
    "[node.1]\npeer = 127.0.0.1:7101\nclient = 127.0.0.1:7201\n"         \
    "[node.3]\npeer = 127.0.0.1:7103\nclient = 127.0.0.1:7203\n"

static char err[512];

/* Parse + validate, as a daemon does without overrides. */
static int load(struct config *cfg, const char *text)
{
    int r;

    err[0] = '\0';
    assert_int_equal(config_init(cfg), 0);
    r = config_parse_string(cfg, "test.conf", text, strlen(text), err, sizeof(err));
    return r ? r : config_validate(cfg, err, sizeof(err));
}

static void expect_error(const char *text, const char *message)
{
    struct config cfg;

    assert_int_equal(load(&cfg, text), -EINVAL);
    if (strcmp(err, message) != 0)
        fail_msg("input:\n%s\nexpected: %s\n     got: %s", text, message, err);
    config_free(&cfg);
}

static void test_defaults(void **state)
{
    struct config cfg;

    assert_int_equal(load(&cfg, NODES3), 0);
    assert_string_equal(cfg.cluster.name, "raftkv");
    assert_int_equal(cfg.cluster.tick_ms, 10);
    assert_int_equal(cfg.cluster.heartbeat_interval_ms, 20);
    assert_int_equal(cfg.cluster.election_timeout_ms, 150);
    assert_int_equal(config_election_ticks(&cfg), 15);
    assert_int_equal(config_heartbeat_ticks(&cfg), 2);
    assert_int_equal(cfg.cluster.max_frame_bytes, 4 << 20);
    assert_int_equal(cfg.cluster.max_key_bytes, 4096);
    assert_int_equal(cfg.cluster.max_value_bytes, 1 << 20);
    assert_int_equal(cfg.cluster.max_pending_output_bytes, 8 << 20);
    assert_int_equal(cfg.cluster.session_ttl_ms, 600000);
    assert_int_equal(cfg.cluster.log_level, LOG_INFO);
    assert_int_equal(cfg.cluster.log_target, LOG_TARGET_AUTO);
    assert_string_equal(cfg.cluster.data_dir_base, "/var/lib/raftkv");
    assert_string_equal(cfg.proxy.listen, "127.0.0.1:7000");
    assert_string_equal(cfg.proxy.unix_path, "/run/raftkv/proxy.sock");

    /* Nodes come out sorted, with derived defaults. */
    assert_int_equal(cfg.n_nodes, 3);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(cfg.nodes[i].id, i + 1);
    const struct config_node *n2 = config_node_find(&cfg, 2);
    assert_non_null(n2);
    assert_string_equal(n2->peer, "127.0.0.1:7102");
    assert_string_equal(n2->admin, "/run/raftkv/node-2.sock");
    assert_string_equal(n2->data_dir, "/var/lib/raftkv/2");
    assert_int_equal(n2->section_line, 1);
    assert_null(config_node_find(&cfg, 4));
    config_free(&cfg);
}

static void test_syntax(void **state)
{
    struct config cfg;
    const char *text =
        "# comment\r\n"
        "  ; another comment\n"
        "\n"
        "[ cluster ]\n"
        "  name = blue-1   # inline comment\n"
        "max_frame_bytes=6MiB\n"
        "max_value_bytes = 2m ; also a comment\n"
        "max_key_bytes = 1KiB\r\n"
        "log_level = \"debug\"  # quoted\n"
        "data_dir_base = \"/srv/kv#1\"\n"
        "[proxy]\n"
        "unix =\n"
        NODES3;

    assert_int_equal(load(&cfg, text), 0);
    assert_string_equal(cfg.cluster.name, "blue-1");
    assert_int_equal(cfg.cluster.max_frame_bytes, 6 << 20);
    assert_int_equal(cfg.cluster.max_value_bytes, 2 << 20);
    assert_int_equal(cfg.cluster.max_key_bytes, 1024);
    assert_int_equal(cfg.cluster.log_level, LOG_DEBUG);
    assert_string_equal(cfg.cluster.data_dir_base, "/srv/kv#1");
    assert_string_equal(cfg.proxy.unix_path, "");
    assert_string_equal(config_node_find(&cfg, 3)->data_dir, "/srv/kv#1/3");
    config_free(&cfg);
}

static void test_parse_errors(void **state)
{
    static const struct { const char *text, *message; } cases[] = {
        { "[cluster]\nelecton_timeout_ms = 100\n",
          "test.conf:2: unknown key 'electon_timeout_ms' in [cluster] (did you mean 'election_timeout_ms'?)" },
        { "[cluster]\n\nfrobnicate = 1\n", "test.conf:3: unknown key 'frobnicate' in [cluster]" },
        { "[node.4]\npeers = a:1\n", "test.conf:2: unknown key 'peers' in [node.4] (did you mean 'peer'?)" },
        { "[clusters]\n", "test.conf:1: unknown section [clusters] (expected [cluster], [proxy] or [node.N])" },
        { "name = x\n", "test.conf:1: key 'name' outside of any section" },
        { "[cluster]\njust words\n", "test.conf:2: expected 'key = value', '[section]' or a comment" },
        { "[cluster]\n = 5\n", "test.conf:2: missing key before '='" },
        { "[cluster\n", "test.conf:1: section header without closing ']'" },
        { "[node.0]\n", "test.conf:1: bad node id in [node.0] (1..65535, no leading zeros)" },
        { "[node.01]\n", "test.conf:1: bad node id in [node.01] (1..65535, no leading zeros)" },
        { "[node.x]\n", "test.conf:1: bad node id in [node.x] (1..65535, no leading zeros)" },
        { "[node.65536]\n", "test.conf:1: bad node id in [node.65536] (1..65535, no leading zeros)" },
        { "[node.1]\n[cluster]\n[node.1]\n", "test.conf:3: duplicate section [node.1] (first at line 1)" },
        { "[cluster]\ntick_ms = 5\n[proxy]\n[cluster]\ntick_ms = 5\n",
          "test.conf:5: duplicate key 'tick_ms' in [cluster] (first set at line 2)" },
        { "[cluster]\ntick_ms = abc\n", "test.conf:2: tick_ms: 'abc' is not a non-negative integer" },
        { "[cluster]\ntick_ms = -1\n", "test.conf:2: tick_ms: '-1' is not a non-negative integer" },
        { "[cluster]\ntick_ms = 10ms\n", "test.conf:2: tick_ms: '10ms' is not a non-negative integer" },
        { "[cluster]\ntick_ms = 0\n", "test.conf:2: tick_ms: 0 is out of range 1..1000" },
        { "[cluster]\nsnapshot_entries = 99999999999999999999999\n",
          "test.conf:2: snapshot_entries: 99999999999999999999999 is out of range 0..4294967295" },
        { "[cluster]\nmax_frame_bytes = 4XB\n",
          "test.conf:2: max_frame_bytes: '4XB' is not a size (e.g. 4096, 64KiB, 4MiB)" },
        { "[cluster]\nmax_frame_bytes = 2GiB\n", "test.conf:2: max_frame_bytes: 2GiB is out of range 1024..1073741824" },
        { "[cluster]\nname =\n", "test.conf:2: name: empty value" },
        { "[cluster]\nname = two words\n",
          "test.conf:2: name: 'two words' is not a name (letters, digits, '.', '_', '-'; at most 64)" },
        { "[cluster]\nlog_level = loud\n",
          "test.conf:2: log_level: 'loud' is not a log level (error, warn, notice, info, debug)" },
        { "[cluster]\nlog_target = syslog\n",
          "test.conf:2: log_target: 'syslog' is not a log target (auto, stderr, journal)" },
        { "[node.1]\npeer = 127.0.0.1\n",
          "test.conf:2: peer: '127.0.0.1' is not host:port (e.g. 10.0.0.1:7100, [::1]:7100, db1:7100)" },
        { "[node.1]\npeer = 127.0.0.1:0\n",
          "test.conf:2: peer: '127.0.0.1:0' is not host:port (e.g. 10.0.0.1:7100, [::1]:7100, db1:7100)" },
        { "[node.1]\nclient = 0.0.0.0:7000\n",
          "test.conf:2: client: '0.0.0.0:7000' is a wildcard; others need an address to connect to" },
        { "[node.1]\nclient = *:7000\n",
          "test.conf:2: client: '*:7000' is not host:port (e.g. 10.0.0.1:7100, [::1]:7100, db1:7100)" },
        { "[node.1]\nadmin = node.sock\n",
          "test.conf:2: admin: 'node.sock' is not an absolute path shorter than 108 bytes" },
        { "[cluster]\nname = \"abc\n", "test.conf:2: name: unterminated or trailing text after quoted value" },
        { "[cluster]\nname = \"abc\" def\n", "test.conf:2: name: unterminated or trailing text after quoted value" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect_error(cases[i].text, cases[i].message);
}

static void test_nul_byte(void **state)
{
    struct config cfg;
    static const char text[] = "[cluster]\nname = a\0b\n";

    assert_int_equal(config_init(&cfg), 0);
    assert_int_equal(config_parse_string(&cfg, "test.conf", text, sizeof(text) - 1, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "test.conf:2: NUL byte in line");
    config_free(&cfg);
}

static void test_validation_errors(void **state)
{
    static const struct { const char *text, *message; } cases[] = {
        { "", "test.conf: no [node.N] section: the cluster needs at least one member" },
        { "[cluster]\nheartbeat_interval_ms = 150\n" NODES3,
          "test.conf:2: heartbeat_interval_ms (150) must be less than election_timeout_ms (150)" },
        { "[cluster]\nelection_timeout_ms = 400\n\nheartbeat_interval_ms = 500\n" NODES3,
          "test.conf:4: heartbeat_interval_ms (500) must be less than election_timeout_ms (400)" },
        { "[cluster]\nelection_timeout_ms = 155\n" NODES3,
          "test.conf:2: election_timeout_ms (155) must be a multiple of tick_ms (10)" },
        { "[cluster]\nheartbeat_interval_ms = 25\n" NODES3,
          "test.conf:2: heartbeat_interval_ms (25) must be a multiple of tick_ms (10)" },
        { "[cluster]\nmax_frame_bytes = 1MiB\n" NODES3,
          "test.conf:2: max_frame_bytes (1048576) must be at least max_key_bytes + max_value_bytes + 1KiB (1053696)" },
        { "[cluster]\nmax_pending_output_bytes = 1MiB\n" NODES3,
          "test.conf:2: max_pending_output_bytes (1048576) must hold one largest frame (max_frame_bytes + 4)" },
        { "[cluster]\nreconnect_min_ms = 2000\n" NODES3,
          "test.conf:2: reconnect_min_ms (2000) must not exceed reconnect_max_ms (1000)" },
        { "[proxy]\nqueue_wait_ms = 200\n" NODES3,
          "test.conf:2: proxy queue_wait_ms (200) must be at least twice election_timeout_ms (150)" },
        { "[proxy]\nlisten =\nunix = \n" NODES3, "test.conf:3: [proxy] needs 'listen' or 'unix'" },
        { "[cluster]\ntls_crl = /etc/raftkv/tls/crl.pem\n" NODES3,
          "test.conf:2: tls_crl is set but tls_ca is not: a CRL needs the TLS of tls_ca" },
        { "[node.1]\nclient = 127.0.0.1:7201\n", "test.conf:1: [node.1] has no 'peer' (required)" },
        { "[node.1]\npeer = 127.0.0.1:7201\nclient = 127.0.0.1:7201\n",
          "test.conf:3: [node.1] client address 127.0.0.1:7201 is already the peer address of node 1" },
        { NODES3 "[node.4]\npeer = 127.0.0.1:7104\nclient = 127.0.0.1:7102\n",
          "test.conf:12: [node.4] client address 127.0.0.1:7102 is already the peer address of node 2" },
        { NODES3 "[node.4]\npeer = LocalHost:7104\nclient = a:1\n[node.5]\npeer = localhost:7104\nclient = b:1\n",
          "test.conf:14: [node.5] peer address localhost:7104 is already the peer address of node 4" },
        { NODES3 "[node.4]\npeer = 127.0.0.1:7104\nclient = 127.0.0.1:7204\ndata_dir = /var/lib/raftkv/1\n",
          "test.conf:10: [node.4] data_dir /var/lib/raftkv/1 is also node 1's" },
        { NODES3 "[node.4]\npeer = 127.0.0.1:7104\nclient = 127.0.0.1:7204\nadmin = /run/raftkv/node-3.sock\n",
          "test.conf:10: [node.4] admin socket /run/raftkv/node-3.sock is also node 3's" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect_error(cases[i].text, cases[i].message);

    /* Same explicit paths are fine on different hosts (same file everywhere). */
    struct config cfg;
    assert_int_equal(load(&cfg, "[node.1]\npeer = 10.0.0.1:1\nclient = 10.0.0.1:2\nadmin = /run/a.sock\n"
                                "[node.2]\npeer = 10.0.0.2:1\nclient = 10.0.0.2:2\nadmin = /run/a.sock\n"), 0);
    config_free(&cfg);
}

static void test_overrides(void **state)
{
    struct config cfg;

    assert_int_equal(config_init(&cfg), 0);
    const char *text = "[cluster]\nheartbeat_interval_ms = 200\n" NODES3;
    assert_int_equal(config_parse_string(&cfg, "test.conf", text, strlen(text), err, sizeof(err)), 0);
    /* An override may repair what the file alone gets wrong. */
    assert_int_equal(config_set(&cfg, "cluster.election_timeout_ms", "500", err, sizeof(err)), 0);
    assert_int_equal(config_set(&cfg, "cluster.data_dir_base", "/data", err, sizeof(err)), 0);
    assert_int_equal(config_set(&cfg, "node.2.data_dir", "/fast/two", err, sizeof(err)), 0);
    assert_int_equal(config_set(&cfg, "proxy.queue_max", "5", err, sizeof(err)), 0);
    assert_int_equal(config_validate(&cfg, err, sizeof(err)), 0);
    assert_int_equal(cfg.cluster.election_timeout_ms, 500);
    assert_int_equal(cfg.proxy.queue_max, 5);
    assert_string_equal(config_node_find(&cfg, 1)->data_dir, "/data/1");
    assert_string_equal(config_node_find(&cfg, 2)->data_dir, "/fast/two");

    /* Same checks as the file, errors say "command line". */
    assert_int_equal(config_set(&cfg, "cluster.tick_ms", "0", err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "command line: tick_ms: 0 is out of range 1..1000");
    assert_int_equal(config_set(&cfg, "cluster.tikc_ms", "10", err, sizeof(err)), -ENOENT);
    assert_string_equal(err, "command line: unknown option 'cluster.tikc_ms'");
    assert_int_equal(config_set(&cfg, "node.9.data_dir", "/x", err, sizeof(err)), -ENOENT);
    assert_string_equal(err, "command line: 'node.9.data_dir': no [node.9] in test.conf");
    assert_int_equal(config_set(&cfg, "tick_ms", "10", err, sizeof(err)), -ENOENT);
    assert_int_equal(config_set(&cfg, "bogus.tick_ms", "10", err, sizeof(err)), -ENOENT);
    assert_int_equal(config_set(&cfg, "node.x.peer", "a:1", err, sizeof(err)), -ENOENT);

    /* A cross-option error caused by an override is blamed on it. */
    assert_int_equal(config_set(&cfg, "cluster.heartbeat_interval_ms", "600", err, sizeof(err)), 0);
    assert_int_equal(config_validate(&cfg, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "command line: heartbeat_interval_ms (600) must be less than election_timeout_ms (500)");
    config_free(&cfg);
}

static void test_file(void **state)
{
    char path[] = "/tmp/raftkv-test-conf-XXXXXX";
    int fd = mkstemp(path);
    struct config cfg;
    const char *text = "[cluster]\nname = filed\n" NODES3 "[node.4]\nbogus = 1\n";

    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    assert_int_equal(config_load(&cfg, path, err, sizeof(err)), -EINVAL);
    char want[256];
    snprintf(want, sizeof(want), "%s:13: unknown key 'bogus' in [node.4]", path);
    assert_string_equal(err, want);
    config_free(&cfg);

    fd = open(path, O_WRONLY | O_TRUNC);
    assert_int_equal(write(fd, text, strlen(text) - strlen("[node.4]\nbogus = 1\n")),
                     (ssize_t)(strlen(text) - strlen("[node.4]\nbogus = 1\n")));
    close(fd);
    assert_int_equal(config_load(&cfg, path, err, sizeof(err)), 0);
    assert_string_equal(cfg.cluster.name, "filed");
    assert_string_equal(cfg.path, path);
    config_free(&cfg);
    unlink(path);

    assert_int_equal(config_load(&cfg, "/nonexistent/raftkv.conf", err, sizeof(err)), -ENOENT);
    assert_string_equal(err, "/nonexistent/raftkv.conf: cannot open: No such file or directory");
    config_free(&cfg);
    assert_int_equal(config_load(&cfg, "/tmp", err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "/tmp: not a regular file");
    config_free(&cfg);
}

static char *dump(const struct config *cfg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    config_dump(cfg, f);
    fclose(f);
    return buf;
}

static void test_dump_roundtrip(void **state)
{
    struct config a, b;
    const char *t2 = "[cluster]\nname = rt\nmax_frame_bytes = 5MiB\nsnapshot_bytes = 12345\n"
                     "log_level = warn\n[proxy]\nlisten = [::1]:7000\n" NODES3;

    assert_int_equal(load(&a, t2), 0);
    char *d1 = dump(&a);
    assert_non_null(strstr(d1, "max_frame_bytes = 5MiB\n"));
    assert_non_null(strstr(d1, "snapshot_bytes = 12345\n"));
    assert_non_null(strstr(d1, "\n#tick_ms = 10\n"));
    assert_non_null(strstr(d1, "\n#data_dir = /var/lib/raftkv/2\n"));
    assert_int_equal(load(&b, d1), 0);
    char *d2 = dump(&b);
    /* Only the header line (which names the source) may differ. */
    assert_string_equal(strchr(d1, '\n'), strchr(d2, '\n'));
    free(d1);
    free(d2);
    config_free(&a);
    config_free(&b);
}

static void test_doc(void **state)
{
    char *sample = NULL, *scdoc = NULL;
    size_t len;
    FILE *f = open_memstream(&sample, &len);

    config_write_doc(f, CONFIG_DOC_SAMPLE);
    fclose(f);
    f = open_memstream(&scdoc, &len);
    config_write_doc(f, CONFIG_DOC_SCDOC);
    fclose(f);
    assert_true(config_option_count() > 20);
    for (size_t i = 0; i < config_option_count(); i++) {
        const struct config_option_info *o = config_option_get(i);
        char key[128];
        assert_non_null(o->doc);
        assert_non_null(o->type);
        snprintf(key, sizeof(key), "*%s*", o->key);
        assert_non_null(strstr(scdoc, key));
        assert_non_null(strstr(sample, o->key));
    }
    assert_null(config_option_get(config_option_count()));
    /* The sample documents defaults as comments; with nodes added it loads. */
    assert_non_null(strstr(sample, "#election_timeout_ms = 150\n"));
    free(sample);
    free(scdoc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_syntax),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_nul_byte),
        cmocka_unit_test(test_validation_errors),
        cmocka_unit_test(test_overrides),
        cmocka_unit_test(test_file),
        cmocka_unit_test(test_dump_roundtrip),
        cmocka_unit_test(test_doc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
