/* test_auth.c - src/rpc/auth.c's rules, table-driven: the client
 * certificate name -> role rule, the role each operation needs, and the
 * loopback-only rule for plaintext. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "rpc/rpc.h"

static void test_cert_names(void **state)
{
    static const struct {
        const char *name;
        int rv;
        enum rpc_role role;
    } cases[] = {
        {"raftkv-client-read", 0, RPC_ROLE_READ},
        {"raftkv-client-write", 0, RPC_ROLE_WRITE},
        {"raftkv-client-admin", 0, RPC_ROLE_ADMIN},
        {"raftkv-client-write-billing", 0, RPC_ROLE_WRITE},
        {"raftkv-client-read-a.b_c-d", 0, RPC_ROLE_READ},
        {"raftkv-node-3", 0, RPC_ROLE_ADMIN},
        {"raftkv-proxy", 0, RPC_ROLE_ADMIN},
        {"raftkv-client-none", -EINVAL, 0},      /* vouches for nobody */
        {"raftkv-client-root", -EINVAL, 0},      /* no such role */
        {"raftkv-client-adminx", -EINVAL, 0},    /* a role is a whole word */
        {"raftkv-client-write-", -EINVAL, 0},    /* empty label */
        {"raftkv-client-write-a b", -EINVAL, 0}, /* label characters */
        {"raftkv-client-", -EINVAL, 0},
        {"raftkv-proxy2", -EINVAL, 0},
        {"raftkv-node-", -EINVAL, 0},
        {"Raftkv-client-admin", -EINVAL, 0},     /* exact, like the node rule */
        {"www.example.com", -EINVAL, 0},
        {"", -EINVAL, 0},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum rpc_role r = RPC_ROLE_NONE;
        int rv = rpc_role_from_cert_name(cases[i].name, strlen(cases[i].name), &r);
        if (rv != cases[i].rv || (rv == 0 && r != cases[i].role))
            fail_msg("%s: rv %d role %d, want %d %d", cases[i].name, rv, r, cases[i].rv, cases[i].role);
    }
}

static void test_op_roles(void **state)
{
    (void)state;
    assert_int_equal(rpc_op_role(RAFTKV__REQUEST__OP_GET), RPC_ROLE_READ);
    assert_int_equal(rpc_op_role(RAFTKV__REQUEST__OP_LIST), RPC_ROLE_READ);
    assert_int_equal(rpc_op_role(RAFTKV__REQUEST__OP_STATUS), RPC_ROLE_READ);
    assert_int_equal(rpc_op_role(RAFTKV__REQUEST__OP_WATCH_LEADER), RPC_ROLE_READ);
    assert_int_equal(rpc_op_role(RAFTKV__REQUEST__OP_SET), RPC_ROLE_WRITE);
    assert_int_equal(rpc_op_role(RAFTKV__REQUEST__OP_DEL), RPC_ROLE_WRITE);
    assert_int_equal(rpc_op_role(RAFTKV__REQUEST__OP_CAS), RPC_ROLE_WRITE);
    assert_int_equal(rpc_op_role(RAFTKV__REQUEST__OP_TRANSFER_LEADER), RPC_ROLE_ADMIN);
    assert_int_equal(rpc_op_role(RAFTKV__REQUEST__OP_MEMBER_CHANGE), RPC_ROLE_ADMIN);
    assert_int_equal(rpc_op_role(RAFTKV__REQUEST__OP_METRICS), RPC_ROLE_ADMIN);
    assert_string_equal(rpc_role_name(RPC_ROLE_WRITE), "write");
}

static void test_plaintext_rule(void **state)
{
    struct rpc_security plain = {.anonymous = RPC_ROLE_WRITE}, insecure = {.insecure = true};
    const char *local[] = {"127.0.0.1:7001", "127.1.2.3:7101", "[::1]:7000", "unix:/run/x.sock", ""};
    const char *wide[][1] = {{"10.0.0.1:7001"}, {"0.0.0.0:7000"}, {"[::]:7000"}, {"db1:7001"}};
    char err[512];
    (void)state;
    assert_int_equal(rpc_security_check(&plain, local, 5, err, sizeof(err)), 0);
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(rpc_security_check(&plain, wide[i], 1, err, sizeof(err)), -EPERM);
        assert_non_null(strstr(err, wide[i][0]));
        assert_int_equal(rpc_security_check(&insecure, wide[i], 1, err, sizeof(err)), 0);
    }
    assert_string_equal(rpc_security_mode(&plain), "plaintext on loopback");
    assert_non_null(strstr(rpc_security_mode(&insecure), "INSECURE"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cert_names),
        cmocka_unit_test(test_op_roles),
        cmocka_unit_test(test_plaintext_rule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
