/* secret.c: the one secret-file reader (monkeyd's token, password and
 * credentials files, monkey-proxy-sync's --password-file) and its rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "secret.h"
#include "testutil.h"

static void test_secret_files(void **state) {
        char *dir = tmp_dir(), *p, *err = NULL, *s = NULL, *want = NULL, *link = NULL;

        p = write_file(dir, "ok", "  xoxb-123 \r\nsecond line\n", 0600);
        assert_int_equal(secret_file_check(p, &err), 0);
        assert_null(err);
        assert_int_equal(secret_file_read(p, &s, &err), 0);
        assert_string_equal(s, "xoxb-123");
        free(s), s = NULL;

        /* systemd credentials are 0400 */
        assert_int_equal(chmod(p, 0400), 0);
        assert_int_equal(secret_file_check(p, &err), 0);
        assert_int_equal(secret_file_read(p, &s, &err), 0);
        assert_string_equal(s, "xoxb-123");
        free(s), s = NULL;

        /* group/others: refused, and the secret is not read */
        assert_int_equal(chmod(p, 0644), 0);
        assert_int_equal(secret_file_check(p, &err), -EPERM);
        assert_true(asprintf(&want, "%s: holds a secret but is accessible by group/others (mode 0644); chmod 600 it", p) >
                    0);
        assert_string_equal(err, want);
        free(err), free(want);
        assert_int_equal(secret_file_read(p, &s, &err), -EPERM);
        assert_null(s);
        assert_null(strstr(err, "xoxb"));
        free(err);
        assert_int_equal(chmod(p, 0640), 0);
        assert_int_equal(secret_file_check(p, &err), -EPERM);
        free(err);
        assert_int_equal(chmod(p, 0602), 0);
        assert_int_equal(secret_file_check(p, &err), -EPERM);
        free(err);
        assert_int_equal(chmod(p, 0600), 0);

        /* a symlink, even to a good file */
        assert_true(asprintf(&link, "%s/link", dir) > 0);
        assert_int_equal(symlink(p, link), 0);
        assert_int_equal(secret_file_check(link, &err), -EPERM);
        assert_true(asprintf(&want, "%s: is a symlink, refusing; name the file itself", link) > 0);
        assert_string_equal(err, want);
        free(err), free(want), free(link);

        /* missing, a directory, relative */
        assert_true(asprintf(&link, "%s/missing", dir) > 0);
        assert_int_equal(secret_file_check(link, &err), -ENOENT);
        assert_true(asprintf(&want, "%s: cannot open: No such file or directory", link) > 0);
        assert_string_equal(err, want);
        free(err), free(want), free(link);
        assert_int_equal(chmod(dir, 0700), 0);
        assert_int_equal(secret_file_check(dir, &err), -EPERM);
        assert_true(asprintf(&want, "%s: not a regular file", dir) > 0);
        assert_string_equal(err, want);
        free(err), free(want);
        assert_int_equal(secret_file_check("token", &err), -EINVAL);
        assert_string_equal(err, "token: not an absolute path");
        free(err);
        assert_int_equal(secret_file_check(p, NULL), 0);

        /* empty, blank */
        free(p);
        p = write_file(dir, "empty", " \n\n", 0600);
        assert_int_equal(secret_file_read(p, &s, &err), -EINVAL);
        assert_null(s);
        assert_true(asprintf(&want, "%s: is empty", p) > 0);
        assert_string_equal(err, want);
        free(err), free(want), free(p);

        /* leading blank lines are skipped; no newline at the end is fine */
        p = write_file(dir, "lead", "\n\nsecret", 0600);
        assert_int_equal(secret_file_read(p, &s, &err), 0);
        assert_string_equal(s, "secret");
        free(s), free(p);

        rm_rf(dir);
        free(dir);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_secret_files),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
