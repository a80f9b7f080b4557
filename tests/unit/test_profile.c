/* profile.c: the reason given for a perf failure, and the worker's own
 * refusals (bad arguments, a perf that is not there) before it runs
 * anything. A real perf record runs in integration/evidence. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <fcntl.h>
#include <json-c/json.h>
#include <sys/stat.h>

#include "profile.h"

static const char *failure(const char *log, bool *permission) {
        static char buf[600];

        return profile_perf_failure(log, strlen(log), permission, buf, sizeof buf);
}

static void test_perf_failure(void **state) {
        bool permission = true;
        const char *r;

        r = failure("Error:\nAccess to performance monitoring and observability operations is limited.\n"
                    "Consider adjusting /proc/sys/kernel/perf_event_paranoid setting to open\n"
                    "access to performance monitoring and observability operations for processes\n"
                    "without CAP_PERFMON, CAP_SYS_PTRACE or CAP_SYS_ADMIN Linux capability.\n",
                    &permission);
        assert_true(permission);
        assert_non_null(strstr(r, "needs CAP_PERFMON"));
        assert_non_null(strstr(r, "perf said: without CAP_PERFMON, CAP_SYS_PTRACE or CAP_SYS_ADMIN"));

        r = failure("perf_event_open(..., PERF_FLAG_FD_CLOEXEC) failed with unexpected error 1 (Operation not "
                    "permitted)\n",
                    &permission);
        assert_true(permission);

        r = failure("  failed to mmap with 12 (Cannot allocate memory)\n\n   \n", &permission);
        assert_false(permission);
        assert_string_equal(r, "perf failed: failed to mmap with 12 (Cannot allocate memory)");

        r = failure("", &permission);
        assert_false(permission);
        assert_string_equal(r, "perf failed and said nothing");

        /* what perf echoes back must not steer a terminal or break a line */
        r = failure("bad \x1b[31mthing\r\x07\n", &permission);
        assert_string_equal(r, "perf failed: bad  [31mthing  ");
}

static void test_worker_refuses_bad_arguments(void **state) {
        char *bad[][6] = {
                { "w", "/tmp", "10", "99", "/usr/bin/perf", NULL },          /* too few */
                { "w", "relative", "10", "99", "/usr/bin/perf", "t" },       /* dir not absolute */
                { "w", "/tmp", "0", "99", "/usr/bin/perf", "t" },            /* no capture */
                { "w", "/tmp", "nan", "99", "/usr/bin/perf", "t" },
                { "w", "/tmp", "10", "0", "/usr/bin/perf", "t" },            /* no frequency */
                { "w", "/tmp", "10", "-5", "/usr/bin/perf", "t" },
                { "w", "/tmp", "10", "99", "perf", "t" },                    /* perf not absolute */
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                int argc = 0;
                while (argc < 6 && bad[i][argc])
                        argc++;
                assert_int_equal(profile_worker_main(argc, bad[i]), 2);
        }
}

static void test_worker_without_perf(void **state) {
        char dir[] = "/tmp/monkey-profile-XXXXXX", path[256], *text;
        char *argv[] = { "w", dir, "1", "99", "/nonexistent/perf", "title" };
        json_object *o, *v;
        struct stat st;
        FILE *f;
        long n;

        assert_non_null(mkdtemp(dir));
        assert_int_equal(profile_worker_main(6, argv), 0);
        snprintf(path, sizeof path, "%s/" PROFILE_RESULT, dir);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
        f = fopen(path, "re");
        assert_non_null(f);
        text = calloc(1, 4096);
        n = (long) fread(text, 1, 4095, f);
        fclose(f);
        assert_true(n > 0);
        o = json_tokener_parse(text);
        assert_non_null(o);
        assert_true(json_object_object_get_ex(o, "state", &v));
        assert_string_equal(json_object_get_string(v), "skipped");
        assert_true(json_object_object_get_ex(o, "reason", &v));
        assert_non_null(strstr(json_object_get_string(v), "/nonexistent/perf: No such file or directory"));
        assert_non_null(strstr(json_object_get_string(v), "linux-perf"));
        json_object_put(o);
        free(text);
        /* nothing else: no perf.data, no graph */
        snprintf(path, sizeof path, "%s/flame.svg", dir);
        assert_int_equal(access(path, F_OK), -1);
        snprintf(path, sizeof path, "rm -rf '%s'", dir);
        assert_int_equal(system(path), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_perf_failure),
                cmocka_unit_test(test_worker_refuses_bad_arguments),
                cmocka_unit_test(test_worker_without_perf),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
