/* test_addr.c - every accepted address form parses to the right sockaddr and
 * formats back; malformed input is refused with the documented errno. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "common/addr.h"

static void roundtrip(const char *in, int family, uint16_t port, const char *out)
{
    struct addr a;
    char buf[ADDR_STRLEN];

    assert_int_equal(addr_parse(in, &a), 0);
    assert_int_equal(addr_family(&a), family);
    assert_int_equal(addr_port(&a), port);
    assert_string_equal(addr_format(&a, buf, sizeof(buf)), out);
}

static void test_forms(void **state)
{
    roundtrip("127.0.0.1:7100", AF_INET, 7100, "127.0.0.1:7100");
    roundtrip("[::1]:80", AF_INET6, 80, "[::1]:80");
    roundtrip("[2001:db8::1]:65535", AF_INET6, 65535, "[2001:db8::1]:65535");
    roundtrip("*:7000", AF_INET, 7000, "0.0.0.0:7000");
    roundtrip(":0", AF_INET, 0, "0.0.0.0:0");
    roundtrip("unix:/run/raftkv/node-1.sock", AF_UNIX, 0, "unix:/run/raftkv/node-1.sock");
    roundtrip("/tmp/x.sock", AF_UNIX, 0, "unix:/tmp/x.sock");
}

static void test_errors(void **state)
{
    struct addr a;
    char longpath[200];

    assert_int_equal(addr_parse("127.0.0.1", &a), -EINVAL);      /* no port */
    assert_int_equal(addr_parse("127.0.0.1:", &a), -EINVAL);
    assert_int_equal(addr_parse("127.0.0.1:65536", &a), -EINVAL);
    assert_int_equal(addr_parse("127.0.0.1:-1", &a), -EINVAL);
    assert_int_equal(addr_parse("127.0.0.1:80x", &a), -EINVAL);
    assert_int_equal(addr_parse("::1:80", &a), -EINVAL);         /* v6 needs [] */
    assert_int_equal(addr_parse("[::1]80", &a), -EINVAL);
    assert_int_equal(addr_parse("[]:80", &a), -EINVAL);
    assert_int_equal(addr_parse("[::1:80", &a), -EINVAL);
    assert_int_equal(addr_parse("unix:relative.sock", &a), -EINVAL);
    assert_int_equal(addr_parse("localhost:80", &a), -EADDRNOTAVAIL);
    assert_int_equal(addr_parse("a b:80", &a), -EINVAL);
    memset(longpath, 'x', sizeof(longpath) - 1);
    longpath[0] = '/';
    longpath[sizeof(longpath) - 1] = '\0';
    assert_int_equal(addr_parse(longpath, &a), -ENAMETOOLONG);
}

static void test_split(void **state)
{
    char host[64];
    uint16_t port;

    assert_int_equal(addr_split("db1.example:7100", host, sizeof(host), &port), 0);
    assert_string_equal(host, "db1.example");
    assert_int_equal(port, 7100);
    assert_int_equal(addr_split("[fe80::1]:1", host, sizeof(host), &port), 0);
    assert_string_equal(host, "fe80::1");
    assert_int_equal(addr_split("averyveryverylonghostname:1", host, 8, &port), -ENAMETOOLONG);
    assert_int_equal(addr_split("/path", host, sizeof(host), &port), -EINVAL);
}

static void test_resolve_and_equal(void **state)
{
    struct addr a, b;

    /* Numeric input never touches the resolver. */
    assert_int_equal(addr_resolve("10.1.2.3:5", &a), 0);
    assert_int_equal(addr_parse("10.1.2.3:5", &b), 0);
    assert_true(addr_equal(&a, &b));
    assert_int_equal(addr_parse("10.1.2.3:6", &b), 0);
    assert_false(addr_equal(&a, &b));
    assert_int_equal(addr_parse("unix:/a", &a), 0);
    assert_int_equal(addr_parse("/a", &b), 0);
    assert_true(addr_equal(&a, &b));
    /* "localhost" is in /etc/hosts on every test machine. */
    assert_int_equal(addr_resolve("localhost:9", &a), 0);
    assert_int_equal(addr_port(&a), 9);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forms),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_resolve_and_equal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
