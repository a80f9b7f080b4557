/* folded.c: the folded-profile table (merging, sorting, the top stacks),
 * the text format both ways with its errors, and frame kinds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "folded.h"

/* Parse a copy sized exactly `len`, so ASan catches any read past it. */
static int parse_n(const char *text, size_t len, Folded *ret, char **ret_error) {
        char *copy = malloc(len ?: 1);
        int r;

        assert_non_null(copy);
        memcpy(copy, text, len);
        r = folded_parse(copy, len, ret, ret_error);
        free(copy);
        return r;
}

static int parse(const char *text, Folded *ret, char **ret_error) {
        return parse_n(text, strlen(text), ret, ret_error);
}

/* Refused with -EBADMSG and exactly this message; ret untouched. */
static void expect_bad_n(const char *text, size_t len, const char *message) {
        Folded f = { .n = 4242 };
        char *error = NULL;

        if (parse_n(text, len, &f, &error) != -EBADMSG) {
                print_error("accepted: '%s'\n", text);
                fail();
        }
        assert_non_null(error);
        assert_string_equal(error, message);
        assert_int_equal(f.n, 4242);
        assert_null(f.stacks);
        free(error);
        /* and without a place for the message */
        assert_int_equal(parse_n(text, len, &f, NULL), -EBADMSG);
}

static void expect_bad(const char *text, const char *message) {
        expect_bad_n(text, strlen(text), message);
}

static char *write_text(const Folded *f) {
        char *buf = NULL;
        size_t size = 0;
        FILE *m = open_memstream(&buf, &size);

        assert_non_null(m);
        assert_int_equal(folded_write(f, m), 0);
        assert_int_equal(fclose(m), 0);
        return buf;
}

static void test_add_merge(void **state) {
        _cleanup_(folded_done) Folded f = FOLDED_INIT;

        (void) state;
        assert_int_equal(folded_add(&f, "a;b;c", 5, 3), 0);
        assert_int_equal(folded_add(&f, "a;b", 3, 1), 0);
        /* not NUL-terminated, and equal to the first */
        assert_int_equal(folded_add(&f, "a;b;cXXXX", 5, 2), 0);
        assert_int_equal(f.n, 2);
        assert_int_equal(f.total, 6);
        assert_string_equal(f.stacks[0].stack, "a;b;c");
        assert_int_equal(f.stacks[0].count, 5);
        assert_string_equal(f.stacks[1].stack, "a;b");
        assert_int_equal(f.stacks[1].count, 1);
        /* a prefix is another stack */
        assert_int_equal(folded_add(&f, "a", 1, 1), 0);
        assert_int_equal(f.n, 3);
        /* spaces and the annotations are part of the text */
        assert_int_equal(folded_add(&f, "a;b c_[k]", 9, 1), 0);
        assert_int_equal(folded_add(&f, "a;b c", 5, 1), 0);
        assert_int_equal(f.n, 5);
}

static void test_add_errors(void **state) {
        _cleanup_(folded_done) Folded f = FOLDED_INIT;
        _cleanup_(freep) char *big = malloc(FOLDED_STACK_MAX + 1);

        (void) state;
        assert_non_null(big);
        assert_int_equal(folded_add(&f, "", 0, 1), -EINVAL);
        assert_int_equal(folded_add(&f, "a\nb", 3, 1), -EINVAL);
        assert_int_equal(folded_add(&f, "a\0b", 3, 1), -EINVAL);
        memset(big, 'x', FOLDED_STACK_MAX + 1);
        assert_int_equal(folded_add(&f, big, FOLDED_STACK_MAX + 1, 1), -EINVAL);
        assert_int_equal(f.n, 0);
        /* exactly the bound is fine */
        assert_int_equal(folded_add(&f, big, FOLDED_STACK_MAX, 1), 0);
        assert_int_equal(strlen(f.stacks[0].stack), FOLDED_STACK_MAX);

        /* counts: the total must not wrap, and nothing changes when it would */
        assert_int_equal(folded_add(&f, "a", 1, UINT64_MAX - 1), 0);
        assert_int_equal(folded_add(&f, "a", 1, 1), -EOVERFLOW);
        assert_int_equal(folded_add(&f, "b", 1, 1), -EOVERFLOW);
        assert_int_equal(f.n, 2);
        assert_true(f.total == UINT64_MAX);
        assert_true(f.stacks[1].count == UINT64_MAX - 1);
}

/* Enough stacks to grow the index several times; each still found. */
static void test_add_many(void **state) {
        _cleanup_(folded_done) Folded f = FOLDED_INIT;
        char s[32];

        (void) state;
        for (int round = 0; round < 2; round++)
                for (int i = 0; i < 5000; i++) {
                        int n = snprintf(s, sizeof s, "main;f%d", i);
                        assert_int_equal(folded_add(&f, s, (size_t) n, (uint64_t) i + 1), 0);
                }
        assert_int_equal(f.n, 5000);
        for (int i = 0; i < 5000; i++) {
                snprintf(s, sizeof s, "main;f%d", i);
                assert_string_equal(f.stacks[i].stack, s);
                assert_int_equal(f.stacks[i].count, 2 * ((uint64_t) i + 1));
        }
        assert_int_equal(f.total, 5000ULL * 5001ULL);
}

static void test_sort(void **state) {
        _cleanup_(folded_done) Folded f = FOLDED_INIT;
        static const char *const in[] = { "b;a", "a;b;c", "B", "a;b", "a b", "a;b;c;d" };
        static const char *const sorted[] = { "B", "a b", "a;b", "a;b;c", "a;b;c;d", "b;a" };

        (void) state;
        folded_sort(&f); /* empty: nothing to do */
        for (size_t i = 0; i < ELEMENTSOF(in); i++)
                assert_int_equal(folded_add(&f, in[i], strlen(in[i]), i + 1), 0);
        folded_sort(&f);
        for (size_t i = 0; i < ELEMENTSOF(sorted); i++)
                assert_string_equal(f.stacks[i].stack, sorted[i]);
        /* the index follows the new order: merging still finds each */
        assert_int_equal(folded_add(&f, "b;a", 3, 10), 0);
        assert_int_equal(folded_add(&f, "B", 1, 10), 0);
        assert_int_equal(f.n, ELEMENTSOF(in));
        assert_int_equal(f.stacks[5].count, 11);
        assert_int_equal(f.stacks[0].count, 13);
        /* bytewise: a UTF-8 byte sorts after ASCII */
        assert_int_equal(folded_add(&f, "\xc3\xa9", 2, 1), 0);
        folded_sort(&f);
        assert_string_equal(f.stacks[f.n - 1].stack, "\xc3\xa9");
}

static void test_top(void **state) {
        _cleanup_(folded_done) Folded f = FOLDED_INIT;
        const FoldedStack *top[4];
        size_t n = 99;

        (void) state;
        assert_int_equal(folded_top(&f, 4, top, &n), 0);
        assert_int_equal(n, 0);
        assert_int_equal(folded_add(&f, "c", 1, 5), 0);
        assert_int_equal(folded_add(&f, "a", 1, 1), 0);
        assert_int_equal(folded_add(&f, "d", 1, 5), 0);
        assert_int_equal(folded_add(&f, "b", 1, 9), 0);
        assert_int_equal(folded_add(&f, "e", 1, 5), 0);

        assert_int_equal(folded_top(&f, 3, top, &n), 0);
        assert_int_equal(n, 3);
        assert_string_equal(top[0]->stack, "b");
        /* ties by text */
        assert_string_equal(top[1]->stack, "c");
        assert_string_equal(top[2]->stack, "d");
        /* pointers into the table */
        assert_ptr_equal(top[0], &f.stacks[3]);

        assert_int_equal(folded_top(&f, 0, top, &n), 0);
        assert_int_equal(n, 0);
        assert_int_equal(folded_add(&f, "z", 1, 1), 0);
        assert_int_equal(folded_top(&f, 4, top, &n), 0);
        assert_int_equal(n, 4);
        assert_string_equal(top[3]->stack, "e");
        /* the table's own order is left alone */
        assert_string_equal(f.stacks[0].stack, "c");
}

static void test_parse(void **state) {
        _cleanup_(freep) char *error = NULL, *out = NULL;
        Folded f = FOLDED_INIT;

        (void) state;
        /* the count after the LAST space; blank lines, CRLF, a last line without '\n' */
        assert_int_equal(parse("main;thread 42;work 7\n\nmain;idle 3\r\n\r\nmain;thread 42;work 2\nx y z 0", &f,
                               &error),
                         0);
        assert_null(error);
        assert_int_equal(f.n, 3);
        assert_string_equal(f.stacks[0].stack, "main;thread 42;work");
        assert_int_equal(f.stacks[0].count, 9);
        assert_string_equal(f.stacks[1].stack, "main;idle");
        assert_int_equal(f.stacks[1].count, 3);
        assert_string_equal(f.stacks[2].stack, "x y z");
        assert_int_equal(f.stacks[2].count, 0);
        assert_int_equal(f.total, 12);

        /* written back: one line each, in the table's order */
        out = write_text(&f);
        assert_string_equal(out, "main;thread 42;work 9\nmain;idle 3\nx y z 0\n");
        folded_done(&f);

        /* empty input: an empty table */
        assert_int_equal(parse("", &f, NULL), 0);
        assert_int_equal(f.n, 0);
        assert_int_equal(parse("\n\n\r\n", &f, NULL), 0);
        assert_int_equal(f.n, 0);
        folded_done(&f);

        /* the largest count */
        assert_int_equal(parse("a 18446744073709551615\n", &f, NULL), 0);
        assert_true(f.stacks[0].count == UINT64_MAX);
        folded_done(&f);
}

static void test_parse_errors(void **state) {
        (void) state;
        expect_bad("a;b\n", "line 1: expected \"stack count\"");
        expect_bad("ok 1\n\n 5\n", "line 3: expected \"stack count\"");
        expect_bad("ok 1\na;b \n", "line 2: missing count after the stack");
        expect_bad("a;b 1x\n", "line 1: count is not a whole number");
        expect_bad("a;b -1\n", "line 1: count is not a whole number");
        expect_bad("a;b 1.5\n", "line 1: count is not a whole number");
        expect_bad("a;b 18446744073709551616\n", "line 1: count too large");
        expect_bad("a 1\nb 18446744073709551615\n", "line 2: total samples too large");
        expect_bad("a 1\nb 18446744073709551615", "line 2: total samples too large");
        expect_bad_n("ok 1\na\0b 1\n", 11, "line 2: NUL byte");
        {
                /* one byte over FOLDED_STACK_MAX */
                size_t n = FOLDED_STACK_MAX + 1;
                _cleanup_(freep) char *text = malloc(n + 8);
                char *error = NULL;
                Folded f = FOLDED_INIT;

                assert_non_null(text);
                memcpy(text, "x 1\n", 4);
                memset(text + 4, 'y', n);
                memcpy(text + 4 + n, " 1\n", 3);
                assert_int_equal(parse_n(text, 4 + n + 3, &f, &error), -EBADMSG);
                assert_string_equal(error, "line 2: stack longer than 64 KiB");
                free(error);
                /* and at the bound it is fine */
                assert_int_equal(parse_n(text + 1 + 4, n - 1 + 3, &f, NULL), 0);
                assert_int_equal(f.n, 1);
                folded_done(&f);
        }
}

/* What is written parses back to the same table. */
static void test_round_trip(void **state) {
        _cleanup_(folded_done) Folded f = FOLDED_INIT, back = FOLDED_INIT;
        _cleanup_(freep) char *out = NULL;
        static const char *const stacks[] = {
                "bash;main;[unknown]", "swapper;do_idle_[k];default_idle_[k]", "java;Interpreter_[j]",
                "app;std::vector<int, std::allocator<int> >::push_back", "app;thread 12", "a;hot_add_[i]",
        };

        (void) state;
        for (size_t i = 0; i < ELEMENTSOF(stacks); i++)
                assert_int_equal(folded_add(&f, stacks[i], strlen(stacks[i]), 10 * i + 1), 0);
        folded_sort(&f);
        out = write_text(&f);
        assert_int_equal(parse(out, &back, NULL), 0);
        assert_int_equal(back.n, f.n);
        assert_int_equal(back.total, f.total);
        for (size_t i = 0; i < f.n; i++) {
                assert_string_equal(back.stacks[i].stack, f.stacks[i].stack);
                assert_int_equal(back.stacks[i].count, f.stacks[i].count);
        }
}

static void test_write_error(void **state) {
        _cleanup_(folded_done) Folded f = FOLDED_INIT;
        FILE *full = fopen("/dev/full", "we");

        (void) state;
        if (!full)
                skip();
        /* unbuffered, so the write itself fails */
        setvbuf(full, NULL, _IONBF, 0);
        assert_int_equal(folded_add(&f, "a", 1, 1), 0);
        assert_int_equal(folded_write(&f, full), -EIO);
        fclose(full);
}

static void expect_kind(const char *frame, FrameKind kind, size_t name_len) {
        size_t n = 4242;

        assert_int_equal(frame_kind(frame, strlen(frame), &n), kind);
        assert_int_equal(n, name_len);
        assert_int_equal(frame_kind(frame, strlen(frame), NULL), kind);
}

static void test_frame_kind(void **state) {
        (void) state;
        expect_kind("main", FRAME_USER, 4);
        expect_kind("do_idle_[k]", FRAME_KERNEL, 7);
        expect_kind("Interpreter::spin_[j]", FRAME_JIT, 17);
        expect_kind("hot_add_[i]", FRAME_INLINED, 7);
        expect_kind("[unknown]", FRAME_UNKNOWN, 9);
        expect_kind("[libc.so.6]", FRAME_UNKNOWN, 11);
        expect_kind("", FRAME_UNKNOWN, 0);
        expect_kind("_[k]", FRAME_KERNEL, 0);
        /* only a whole suffix counts */
        expect_kind("a_[x]", FRAME_USER, 5);
        expect_kind("a[k]", FRAME_USER, 4);
        expect_kind("[", FRAME_USER, 1);
        expect_kind("a]", FRAME_USER, 2);
        /* a frame inside a stack: len, not the NUL, ends it */
        assert_int_equal(frame_kind("f_[k];g", 5, NULL), FRAME_KERNEL);

        assert_string_equal(frame_kind_to_string(FRAME_USER), "user");
        assert_string_equal(frame_kind_to_string(FRAME_KERNEL), "kernel");
        assert_string_equal(frame_kind_to_string(FRAME_JIT), "jit");
        assert_string_equal(frame_kind_to_string(FRAME_INLINED), "inlined");
        assert_string_equal(frame_kind_to_string(FRAME_UNKNOWN), "unknown");
        assert_null(frame_kind_to_string(_FRAME_KIND_MAX));
        assert_null(frame_kind_to_string((FrameKind) -1));
}

static void test_done(void **state) {
        Folded f = FOLDED_INIT;

        (void) state;
        folded_done(&f); /* on an empty table */
        assert_int_equal(folded_add(&f, "a", 1, 1), 0);
        folded_done(&f);
        assert_null(f.stacks);
        assert_null(f.index);
        assert_int_equal(f.n, 0);
        assert_int_equal(f.total, 0);
        /* usable again */
        assert_int_equal(folded_add(&f, "a", 1, 1), 0);
        folded_done(&f);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_add_merge),
                cmocka_unit_test(test_add_errors),
                cmocka_unit_test(test_add_many),
                cmocka_unit_test(test_sort),
                cmocka_unit_test(test_top),
                cmocka_unit_test(test_parse),
                cmocka_unit_test(test_parse_errors),
                cmocka_unit_test(test_round_trip),
                cmocka_unit_test(test_write_error),
                cmocka_unit_test(test_frame_kind),
                cmocka_unit_test(test_done),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
