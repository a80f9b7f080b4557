/* history.c: parsing history.jsonl (the last N, torn and garbage lines
 * skipped, a cut first line), and the file kept across "restarts" and
 * bounded by the rewrite. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <fcntl.h>
#include <sys/stat.h>

#include "fileio.h"
#include "history.h"
#include "jsonutil.h"

static json_object *entry(int i) {
        json_object *o = json_object_new_object();

        json_object_object_add(o, "n", json_object_new_int(i));
        json_object_object_add(o, "reason", json_object_new_string("line\nbreak \"quoted\""));
        return o;
}

static int n_of(json_object *o) {
        json_object *v;

        assert_true(json_object_object_get_ex(o, "n", &v));
        return json_object_get_int(v);
}

static void put_all(json_object **a, size_t n) {
        for (size_t i = 0; i < n; i++)
                json_object_put(a[i]);
}

static void test_parse_keeps_the_last_n_oldest_first(void **state) {
        json_object *got[4];
        size_t n = 99, skipped = 99;
        char text[512] = "";

        for (int i = 0; i < 7; i++) {
                _cleanup_(json_object_putp) json_object *o = entry(i);
                _cleanup_(freep) char *line = NULL;
                size_t len;

                assert_int_equal(history_format_line(o, &line, &len), 0);
                assert_int_equal(line[len - 1], '\n');
                assert_null(memchr(line, '\n', len - 1)); /* one line, whatever the reason holds */
                strcat(text, line);
        }
        assert_int_equal(history_parse(text, strlen(text), false, 4, got, &n, &skipped), 0);
        assert_int_equal(n, 4);
        assert_int_equal(skipped, 0);
        for (size_t i = 0; i < n; i++)
                assert_int_equal(n_of(got[i]), 3 + (int) i);
        put_all(got, n);

        /* fewer than max: all of them, in order */
        assert_int_equal(history_parse("{\"n\":1}\n{\"n\":2}\n", 16, false, 4, got, &n, &skipped), 0);
        assert_int_equal(n, 2);
        assert_int_equal(n_of(got[0]), 1);
        assert_int_equal(n_of(got[1]), 2);
        put_all(got, n);
}

static void test_parse_skips_what_is_not_an_entry(void **state) {
        static const char text[] = "{\"n\":1}\n"
                                   "not json\n"
                                   "\n"
                                   "[1,2]\n"
                                   "{\"n\":2} trailing\n"
                                   "{\"n\":3}\n"
                                   "{\"n\":4,\"reason\":\"torn by a cr"; /* no newline: the crash */
        json_object *got[8];
        size_t n, skipped;

        assert_int_equal(history_parse(text, strlen(text), false, 8, got, &n, &skipped), 0);
        assert_int_equal(n, 2);
        assert_int_equal(skipped, 4);
        assert_int_equal(n_of(got[0]), 1);
        assert_int_equal(n_of(got[1]), 3);
        put_all(got, n);

        /* the tail of a big file starts mid-line: that line is not counted */
        assert_int_equal(history_parse("\"n\":0}\n{\"n\":5}\n", 15, true, 8, got, &n, &skipped), 0);
        assert_int_equal(n, 1);
        assert_int_equal(skipped, 0);
        assert_int_equal(n_of(got[0]), 5);
        put_all(got, n);

        assert_int_equal(history_parse("", 0, false, 8, got, &n, &skipped), 0);
        assert_int_equal(n, 0);
}

static size_t count_lines(const char *dir) {
        char path[512];
        _cleanup_(closep) int fd = -1;
        _cleanup_(freep) char *text = NULL;
        size_t len, lines = 0;

        snprintf(path, sizeof path, "%s/%s", dir, HISTORY_FILE);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(read_full_fd(fd, 1 << 20, &text, &len), 0);
        for (size_t i = 0; i < len; i++)
                lines += text[i] == '\n';
        return lines;
}

static void test_file_survives_restarts_and_stays_bounded(void **state) {
        char dir[] = "/tmp/test-history-XXXXXX", path[512];
        json_object *ring[5];
        HistoryFile *f;
        size_t n;
        struct stat st;
        int r, appended = 0;

        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof path, "%s/%s", dir, HISTORY_FILE);

        /* first start: nothing yet */
        assert_int_equal(history_file_open(dir, 5, ring, &n, &f), 0);
        assert_int_equal(n, 0);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
        for (int i = 0; i < 3; i++) {
                _cleanup_(json_object_putp) json_object *o = entry(appended++);
                assert_int_equal(history_file_append(f, o), 0);
        }
        history_file_free(f);

        /* a restart reads them back */
        assert_int_equal(history_file_open(dir, 5, ring, &n, &f), 0);
        assert_int_equal(n, 3);
        assert_int_equal(n_of(ring[2]), 2);
        put_all(ring, n);

        /* appends until the file holds twice the ring: the caller is told to rewrite */
        for (;;) {
                _cleanup_(json_object_putp) json_object *o = entry(appended++);
                r = history_file_append(f, o);
                assert_true(r >= 0);
                if (r == 1)
                        break;
                assert_true(appended < 20);
        }
        assert_int_equal(count_lines(dir), 10);
        {
                json_object *keep[5];
                for (int i = 0; i < 5; i++)
                        keep[i] = entry(appended - 5 + i);
                assert_int_equal(history_file_rewrite(f, keep, 5), 0);
                put_all(keep, 5);
        }
        assert_int_equal(count_lines(dir), 5);
        {
                _cleanup_(json_object_putp) json_object *o = entry(appended++);
                assert_int_equal(history_file_append(f, o), 0);
        }
        history_file_free(f);

        /* a crash mid-line, then a start: the torn line is dropped, the
         * file rewritten, and the next append is a line of its own */
        {
                int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
                assert_true(fd >= 0);
                assert_int_equal(write(fd, "{\"n\":99,\"rea", 12), 12);
                close(fd);
        }
        assert_int_equal(history_file_open(dir, 5, ring, &n, &f), 0);
        assert_int_equal(n, 5);
        assert_int_equal(n_of(ring[4]), appended - 1);
        put_all(ring, n);
        {
                _cleanup_(json_object_putp) json_object *o = entry(appended++);
                assert_int_equal(history_file_append(f, o), 0);
        }
        history_file_free(f);
        assert_int_equal(history_file_open(dir, 5, ring, &n, &f), 0);
        assert_int_equal(n, 5);
        assert_int_equal(n_of(ring[4]), appended - 1);
        put_all(ring, n);
        history_file_free(f);

        assert_int_equal(unlink(path), 0);
        assert_int_equal(rmdir(dir), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse_keeps_the_last_n_oldest_first),
                cmocka_unit_test(test_parse_skips_what_is_not_an_entry),
                cmocka_unit_test(test_file_survives_restarts_and_stays_bounded),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
