/* The writer: jobs end in the order they were queued and their
 * completions run on the loop in that order; a save replacing an unstarted
 * one of the same file keeps both completions and the last data; errors
 * reach the completion and stop nothing behind; forget; the flush at stop;
 * the inline mode without a thread. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "writer.h"

#define DONE_MAX 64

typedef struct Fix {
        char dir[64];
        sd_event *e;
        Writer *w;
        uint64_t cookies[DONE_MAX];
        int errors[DONE_MAX];
        size_t n;
} Fix;

static void on_done(void *userdata, uint64_t cookie, int error) {
        Fix *f = userdata;

        assert_true(f->n < DONE_MAX);
        f->cookies[f->n] = cookie;
        f->errors[f->n] = error;
        f->n++;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path);
}

static int setup(void **state) {
        Fix *f = calloc(1, sizeof *f);

        assert_non_null(f);
        snprintf(f->dir, sizeof f->dir, "/tmp/test-writer-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        assert_int_equal(sd_event_new(&f->e), 0);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        Fix *f = *state;

        f->w = writer_free(f->w);
        sd_event_unref(f->e);
        (void) nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
        free(f);
        return 0;
}

static usec_t mono_now(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (usec_t) ts.tv_sec * USEC_PER_SEC + (usec_t) ts.tv_nsec / 1000;
}

static void run_until(Fix *f, size_t n) {
        usec_t end = mono_now() + 5 * USEC_PER_SEC;

        while (f->n < n && mono_now() < end)
                assert_true(sd_event_run(f->e, 20 * USEC_PER_MSEC) >= 0);
        assert_int_equal(f->n, n);
}

static char *slurp(Fix *f, const char *name) {
        char path[128], *buf = calloc(1, 256);
        int fd;
        ssize_t k;

        assert_non_null(buf);
        snprintf(path, sizeof path, "%s/%s", f->dir, name);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                free(buf);
                return NULL;
        }
        k = read(fd, buf, 255);
        close(fd);
        assert_true(k >= 0);
        return buf;
}

static void assert_content(Fix *f, const char *name, const char *want) {
        char *got = slurp(f, name);

        assert_non_null(got);
        assert_string_equal(got, want);
        free(got);
}

static WriterDone done(Fix *f, uint64_t cookie) {
        return (WriterDone) { on_done, f, cookie };
}

static void save(Fix *f, const char *name, const char *text, uint64_t cookie) {
        WriterDone d = done(f, cookie);
        assert_int_equal(writer_save(f->w, f->dir, name, text, strlen(text), &d, 1), 0);
}

static void test_order(void **state) {
        Fix *f = *state;
        WriterDone b = done(f, 99);

        assert_int_equal(writer_new(f->e, &f->w), 0);
        save(f, "a", "a1", 1);
        save(f, "b", "b1", 2);
        save(f, "a", "a2", 3);
        save(f, "b", "b2", 4);
        save(f, "a", "a3", 5);
        assert_int_equal(writer_barrier(f->w, &b), 0);
        /* completions only ever run on the loop */
        assert_int_equal(f->n, 0);
        run_until(f, 6);
        for (size_t i = 0; i < 5; i++) {
                assert_int_equal(f->cookies[i], i + 1);
                assert_int_equal(f->errors[i], 0);
        }
        assert_int_equal(f->cookies[5], 99);
        /* the last save of each file wins */
        assert_content(f, "a", "a3");
        assert_content(f, "b", "b2");
        assert_int_equal(writer_pending(f->w), 0);
}

static void test_same_file_in_a_row(void **state) {
        Fix *f = *state;

        /* whether the thread took each one or a later one replaced it,
         * every completion runs, in order, and the disk has the last */
        assert_int_equal(writer_new(f->e, &f->w), 0);
        for (uint64_t i = 1; i <= 40; i++) {
                char text[16];
                snprintf(text, sizeof text, "v%" PRIu64, i);
                save(f, "state.json", text, i);
        }
        run_until(f, 40);
        for (size_t i = 0; i < 40; i++) {
                assert_int_equal(f->cookies[i], i + 1);
                assert_int_equal(f->errors[i], 0);
        }
        assert_content(f, "state.json", "v40");
}

static void test_error_and_on(void **state) {
        Fix *f = *state;
        char missing[96];
        WriterDone d = done(f, 2);

        assert_int_equal(writer_new(f->e, &f->w), 0);
        save(f, "x", "x1", 1);
        snprintf(missing, sizeof missing, "%s/no-such-dir", f->dir);
        assert_int_equal(writer_save(f->w, missing, "y", "y", 1, &d, 1), 0);
        save(f, "z", "z1", 3);
        run_until(f, 3);
        assert_int_equal(f->errors[0], 0);
        assert_int_equal(f->errors[1], -ENOENT);
        assert_int_equal(f->errors[2], 0);
        assert_content(f, "z", "z1");
}

static void test_remove_at(void **state) {
        Fix *f = *state;
        WriterDone d1 = done(f, 2), d2 = done(f, 3);
        int dfd;
        char *gone;

        assert_int_equal(writer_new(f->e, &f->w), 0);
        dfd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(dfd >= 0);
        save(f, "r", "r1", 1);
        /* queued behind its own write: the file never comes back */
        assert_int_equal(writer_remove_at(f->w, dfd, "r", &d1), 0);
        assert_int_equal(writer_remove_at(f->w, dfd, "never-there", &d2), 0);
        close(dfd); /* duplicated: the jobs do not need ours */
        run_until(f, 3);
        assert_int_equal(f->errors[1], 0);
        assert_int_equal(f->errors[2], 0);
        gone = slurp(f, "r");
        assert_null(gone);
}

static void test_forget(void **state) {
        Fix *f = *state;
        Fix other = {};
        WriterDone o = { on_done, &other, 7 }, b = done(f, 2);

        assert_int_equal(writer_new(f->e, &f->w), 0);
        assert_int_equal(writer_save(f->w, f->dir, "f", "f1", 2, &o, 1), 0);
        writer_forget(f->w, &other);
        assert_int_equal(writer_barrier(f->w, &b), 0);
        run_until(f, 1);
        assert_int_equal(f->cookies[0], 2);
        assert_int_equal(other.n, 0);
        /* the job itself still ran */
        assert_content(f, "f", "f1");
}

static void test_stop_flushes(void **state) {
        Fix *f = *state;

        assert_int_equal(writer_new(f->e, &f->w), 0);
        for (uint64_t i = 1; i <= 10; i++) {
                char name[16], text[16];
                snprintf(name, sizeof name, "n%" PRIu64, i);
                snprintf(text, sizeof text, "t%" PRIu64, i);
                save(f, name, text, i);
        }
        /* no loop ran: every file is on disk once stop returns, and the
         * completions (their owners are going) never run */
        writer_stop(f->w);
        assert_int_equal(f->n, 0);
        assert_int_equal(writer_pending(f->w), 0);
        for (unsigned i = 1; i <= 10; i++) {
                char name[16], text[16];
                snprintf(name, sizeof name, "n%u", i);
                snprintf(text, sizeof text, "t%u", i);
                assert_content(f, name, text);
        }
        /* after the stop, inline */
        save(f, "late", "l", 11);
        assert_int_equal(f->n, 1);
        assert_content(f, "late", "l");
}

static void test_inline_without_writer(void **state) {
        Fix *f = *state;
        WriterDone b = done(f, 3);

        save(f, "i", "i1", 1);
        assert_int_equal(f->n, 1);
        assert_int_equal(f->errors[0], 0);
        assert_content(f, "i", "i1");
        assert_int_equal(writer_save(NULL, "/nonexistent/dir", "i", "x", 1, &(WriterDone) { on_done, f, 2 }, 1), 0);
        assert_int_equal(f->n, 2);
        assert_int_equal(f->errors[1], -ENOENT);
        assert_int_equal(writer_barrier(NULL, &b), 0);
        assert_int_equal(f->n, 3);
        assert_int_equal(writer_pending(NULL), 0);
        writer_forget(NULL, f);
        assert_null(writer_free(NULL));
}

static void test_invalid_and_status(void **state) {
        Fix *f = *state;
        json_object *j, *v;

        assert_int_equal(writer_new(f->e, &f->w), 0);
        assert_int_equal(writer_save(f->w, NULL, "x", "x", 1, NULL, 0), -EINVAL);
        assert_int_equal(writer_save(f->w, f->dir, "", "x", 1, NULL, 0), -EINVAL);
        assert_int_equal(writer_save_at(f->w, -1, "x", "x", 1, NULL, 0), -EINVAL);
        assert_int_equal(writer_remove_at(f->w, -1, "x", NULL), -EINVAL);
        save(f, "s", "s1", 1);
        run_until(f, 1);
        j = writer_status_json(f->w);
        assert_non_null(j);
        assert_true(json_object_object_get_ex(j, "pending", &v) && json_object_get_int(v) == 0);
        assert_true(json_object_object_get_ex(j, "done", &v) && json_object_get_int(v) == 1);
        assert_true(json_object_object_get_ex(j, "failed", &v) && json_object_get_int(v) == 0);
        assert_true(json_object_object_get_ex(j, "threaded", &v) && json_object_get_boolean(v));
        assert_true(json_object_object_get_ex(j, "slowest_ms", &v));
        json_object_put(j);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_order, setup, teardown),
                cmocka_unit_test_setup_teardown(test_same_file_in_a_row, setup, teardown),
                cmocka_unit_test_setup_teardown(test_error_and_on, setup, teardown),
                cmocka_unit_test_setup_teardown(test_remove_at, setup, teardown),
                cmocka_unit_test_setup_teardown(test_forget, setup, teardown),
                cmocka_unit_test_setup_teardown(test_stop_flushes, setup, teardown),
                cmocka_unit_test_setup_teardown(test_inline_without_writer, setup, teardown),
                cmocka_unit_test_setup_teardown(test_invalid_and_status, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
