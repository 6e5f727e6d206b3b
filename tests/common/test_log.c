/* test_log.c - level filtering, the stderr line format with event and
 * fields, journald detection from $JOURNAL_STREAM, and level/target names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"

static char tmp[] = "/tmp/raftkv-test-log-XXXXXX";
static int saved_stderr = -1;

/* Points fd 2 at a fresh temp file for the test. */
static int redirect(void **state)
{
    int fd = mkstemp(tmp);
    assert_true(fd >= 0);
    saved_stderr = dup(2);
    dup2(fd, 2);
    close(fd);
    return 0;
}

static int restore(void **state)
{
    dup2(saved_stderr, 2);
    close(saved_stderr);
    unlink(tmp);
    strcpy(tmp, "/tmp/raftkv-test-log-XXXXXX");
    return 0;
}

static char *captured(void)
{
    static char buf[8192];
    FILE *f = fopen(tmp, "r");
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

static bool journald_running(void)
{
    return access("/run/systemd/journal/socket", W_OK) == 0;
}

static void test_names(void **state)
{
    assert_int_equal(log_level_parse("error"), LOG_ERR);
    assert_int_equal(log_level_parse("warn"), LOG_WARNING);
    assert_int_equal(log_level_parse("warning"), LOG_WARNING);
    assert_int_equal(log_level_parse("notice"), LOG_NOTICE);
    assert_int_equal(log_level_parse("info"), LOG_INFO);
    assert_int_equal(log_level_parse("debug"), LOG_DEBUG);
    assert_int_equal(log_level_parse("trace"), -EINVAL);
    assert_string_equal(log_level_name(LOG_NOTICE), "notice");
    assert_string_equal(log_level_name(99), "?");
    assert_int_equal(log_target_parse("journal"), LOG_TARGET_JOURNAL);
    assert_int_equal(log_target_parse("syslog"), -EINVAL);
    assert_string_equal(log_target_name(LOG_TARGET_STDERR), "stderr");
}

static void test_stderr_format(void **state)
{
    char buf[24];

    log_init("raftkv-test", LOG_TARGET_STDERR);
    log_set_level(LOG_INFO);
    log_set_node(3);
    log_info("hello %d", 42);
    log_debug("not shown");
    log_event(LOG_NOTICE, "leader_change", LOG_FIELDS({ "RAFTKV_LEADER", log_u64(buf, 2) }, { "SKIPPED", NULL }),
              "leader is %s", "node 2\nwith newline");
    log_set_level(LOG_ERR);
    log_warn("filtered");
    log_set_node(0);

    const char *out = captured();
    const char *l1 = strstr(out, "raftkv-test[3] info hello 42\n");
    assert_non_null(l1);
    /* ISO 8601 UTC timestamp with milliseconds first on the line. */
    assert_true(l1 - out == 25 && out[4] == '-' && out[10] == 'T' && out[23] == 'Z');
    assert_non_null(strstr(out, "raftkv-test[3] notice leader_change: leader is node 2?with newline RAFTKV_LEADER=2\n"));
    assert_null(strstr(out, "not shown"));
    assert_null(strstr(out, "filtered"));
    assert_null(strstr(out, "SKIPPED"));
}

static void test_journal_detection(void **state)
{
    struct stat st;
    char env[64];

    assert_int_equal(fstat(2, &st), 0);
    snprintf(env, sizeof(env), "%llu:%llu", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
    setenv("JOURNAL_STREAM", env, 1);
    assert_true(log_stderr_is_journal());
    log_init(NULL, LOG_TARGET_AUTO);
    assert_int_equal(log_get_target(), journald_running() ? LOG_TARGET_JOURNAL : LOG_TARGET_STDERR);

    snprintf(env, sizeof(env), "%llu:%llu", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino + 1);
    setenv("JOURNAL_STREAM", env, 1);
    assert_false(log_stderr_is_journal());
    setenv("JOURNAL_STREAM", "garbage", 1);
    assert_false(log_stderr_is_journal());
    unsetenv("JOURNAL_STREAM");
    assert_false(log_stderr_is_journal());
    log_init(NULL, LOG_TARGET_AUTO);
    assert_int_equal(log_get_target(), LOG_TARGET_STDERR);
}

static void test_journal_fallback(void **state)
{
    /* With the journal target but no journald to take the record (as in
     * a test sandbox), the record must still come out on stderr, never be
     * lost.  Where journald runs, it takes it and stderr stays empty. */
    int errno_before;

    log_init("raftkv-test", LOG_TARGET_JOURNAL);
    assert_int_equal(log_get_target(), journald_running() ? LOG_TARGET_JOURNAL : LOG_TARGET_STDERR);
    log_set_level(LOG_INFO);
    log_set_term(7);
    log_set_role("leader");
    errno = EAGAIN;
    errno_before = errno;
    log_event(LOG_INFO, "election", LOG_FIELDS({ "RAFTKV_VOTES", "3" }), "won");
    assert_int_equal(errno, errno_before); /* logging keeps errno */
    log_set_term(0);
    log_set_role(NULL);
    if (!journald_running())
        assert_non_null(strstr(captured(), "election: won RAFTKV_VOTES=3\n"));
    log_init("raftkv-test", LOG_TARGET_STDERR);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test_setup_teardown(test_stderr_format, redirect, restore),
        cmocka_unit_test_setup_teardown(test_journal_detection, redirect, restore),
        cmocka_unit_test_setup_teardown(test_journal_fallback, redirect, restore),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
