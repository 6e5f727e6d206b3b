/* test_crc32c.c - CRC-32C known answers, and the hardware and table paths
 * agreeing on every length and alignment (so a file written on one machine
 * verifies on another). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/crc32c.h"

static void test_known_answers(void **state)
{
    (void)state;
    assert_int_equal(crc32c(0, "123456789", 9), 0xe3069283u);
    assert_int_equal(crc32c_sw(0, "123456789", 9), 0xe3069283u);
    assert_int_equal(crc32c(0, "", 0), 0);
    uint8_t zeros[32] = {0}, ones[32];
    memset(ones, 0xff, sizeof(ones));
    /* RFC 3720 B.4 test vectors */
    assert_int_equal(crc32c(0, zeros, 32), 0x8a9136aau);
    assert_int_equal(crc32c(0, ones, 32), 0x62a8ab43u);
}

static void test_paths_agree(void **state)
{
    (void)state;
    uint8_t buf[4096 + 16];
    uint64_t s = 42;
    for (size_t i = 0; i < sizeof(buf); i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        buf[i] = (uint8_t)(s >> 56);
    }
    for (size_t off = 0; off < 16; off++)
        for (size_t len = 0; len < 300; len++)
            assert_int_equal(crc32c(0, buf + off, len), crc32c_sw(0, buf + off, len));
    assert_int_equal(crc32c(0, buf, 4096), crc32c_sw(0, buf, 4096));
    /* Extending in pieces equals one pass. */
    uint32_t c = 0;
    for (size_t i = 0; i < 4096; i += 97)
        c = crc32c(c, buf + i, i + 97 <= 4096 ? 97 : 4096 - i);
    assert_int_equal(c, crc32c(0, buf, 4096));
    print_message("crc32c hardware path: %s\n", crc32c_hw_available() ? "yes" : "no");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answers),
        cmocka_unit_test(test_paths_agree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
