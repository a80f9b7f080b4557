/* stackdiff.c: shares normalised by each profile's own total, vanished
 * stacks and frames at exactly -100%, new ones at +inf and flagged,
 * inclusive counted once per stack, the order of the summary, empty
 * profiles without a division by zero. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <math.h>

#include "stackdiff.h"

static void add(Folded *f, const char *stack, uint64_t count) {
        assert_int_equal(folded_add(f, stack, strlen(stack), count), 0);
}

static const StackDiffEntry *frame(const StackDiff *d, const char *name) {
        const StackDiffEntry *e = stackdiff_find_frame(d, name);

        if (!e) {
                print_error("no frame '%s'\n", name);
                fail();
        }
        return e;
}

static const StackDiffEntry *stack(const StackDiff *d, const char *s) {
        const StackDiffEntry *e = stackdiff_find_stack(d, s);

        if (!e) {
                print_error("no stack '%s'\n", s);
                fail();
        }
        return e;
}

/* noinline: gcc -O3 takes the memstream's buffer for a dangling local once inlined */
__attribute__((noinline)) static char *summary(const StackDiff *d, size_t top) {
        char *buf = NULL;
        size_t len = 0;
        FILE *m = open_memstream(&buf, &len);

        assert_non_null(m);
        assert_int_equal(stackdiff_summary(d, top, m), 0);
        fclose(m);
        return buf;
}

static const char *relative(const StackDiffShare *s) {
        static char buf[32];

        stackdiff_format_relative(s, buf, sizeof(buf));
        return buf;
}

static void test_normalised_by_totals(void **state) {
        Folded a = FOLDED_INIT, b = FOLDED_INIT;
        StackDiff *d;
        const StackDiffEntry *e;

        (void) state;
        /* A: 100 samples, B: 1000. 10 of 100 and 100 of 1000 are the same
         * 10%: unchanged, not "ten times more". */
        add(&a, "main;steady", 10);
        add(&a, "main;busy", 90);
        add(&b, "main;steady", 100);
        add(&b, "main;busy", 450);
        add(&b, "main;other", 450);
        assert_int_equal(stackdiff_compute(&a, &b, &d), 0);
        assert_int_equal(stackdiff_total_a(d), 100);
        assert_int_equal(stackdiff_total_b(d), 1000);

        e = stack(d, "main;steady");
        assert_int_equal(e->incl.count_a, 10);
        assert_int_equal(e->incl.count_b, 100);
        assert_true(e->incl.share_a == 10.0);
        assert_true(e->incl.share_b == 10.0);
        assert_true(e->incl.delta == 0.0);
        assert_true(e->incl.relative == 0.0);
        assert_false(e->incl.is_new);
        assert_false(e->incl.vanished);
        assert_string_equal(relative(&e->incl), "0%");
        e = frame(d, "steady");
        assert_true(e->incl.delta == 0.0);

        e = stack(d, "main;busy"); /* 90% -> 45% */
        assert_true(fabs(e->incl.delta - -45.0) < 1e-9);
        assert_true(fabs(e->incl.relative - -50.0) < 1e-9);
        assert_string_equal(relative(&e->incl), "-50%");
        e = frame(d, "main"); /* 100% in both */
        assert_true(e->incl.delta == 0.0);
        assert_int_equal(e->self.count_a, 0);

        /* The same counts in a profile ten times larger: every share the same. */
        stackdiff_free(d);
        folded_done(&b);
        add(&b, "main;steady", 100);
        add(&b, "main;busy", 900);
        assert_int_equal(stackdiff_compute(&a, &b, &d), 0);
        size_t n;
        const StackDiffEntry *all = stackdiff_frames(d, &n);
        assert_int_equal(n, 3);
        for (size_t i = 0; i < n; i++)
                assert_true(all[i].incl.delta == 0.0 && all[i].incl.relative == 0.0);
        d = stackdiff_free(d);
        assert_null(d);
        folded_done(&a);
        folded_done(&b);
}

static void test_vanished_and_new(void **state) {
        Folded a = FOLDED_INIT, b = FOLDED_INIT;
        const StackDiffEntry *e, *list;
        StackDiff *d;
        size_t n;
        bool seen = false;

        (void) state;
        add(&a, "main;gone;deep", 30);
        add(&a, "main;kept", 70);
        add(&b, "main;kept", 70);
        add(&b, "main;fresh", 30);
        assert_int_equal(stackdiff_compute(&a, &b, &d), 0);

        /* A vanished stack is listed, at exactly -100%, not dropped or 0%. */
        list = stackdiff_stacks(d, &n);
        assert_int_equal(n, 3);
        for (size_t i = 0; i < n; i++)
                if (streq(list[i].name, "main;gone;deep")) {
                        seen = true;
                        assert_true(list[i].incl.relative == -100.0);
                        assert_true(list[i].incl.vanished);
                        assert_true(list[i].incl.share_b == 0.0);
                        assert_true(fabs(list[i].incl.delta - -30.0) < 1e-9);
                        assert_string_equal(relative(&list[i].incl), "-100%");
                }
        assert_true(seen);
        e = frame(d, "gone");
        assert_true(e->incl.relative == -100.0);
        assert_true(e->incl.vanished);
        e = frame(d, "deep");
        assert_true(e->self.relative == -100.0);
        assert_int_equal(e->self.count_a, 30);

        e = stack(d, "main;fresh");
        assert_true(e->incl.is_new);
        assert_true(isinf(e->incl.relative) && e->incl.relative > 0);
        assert_true(fabs(e->incl.delta - 30.0) < 1e-9);
        assert_string_equal(relative(&e->incl), "new");
        e = frame(d, "fresh");
        assert_true(e->incl.is_new && e->self.is_new);

        e = stack(d, "main;kept");
        assert_true(e->incl.delta == 0.0);
        assert_null(stackdiff_find_stack(d, "main"));
        assert_null(stackdiff_find_frame(d, "nope"));
        stackdiff_free(d);
        folded_done(&a);
        folded_done(&b);
}

static void test_recursion_counts_once(void **state) {
        Folded a = FOLDED_INIT, b = FOLDED_INIT;
        const StackDiffEntry *e;
        StackDiff *d;

        (void) state;
        add(&a, "main;f;f;f;g", 10);
        add(&a, "main;f", 10);
        add(&a, "main;h;f", 5);
        add(&b, "main;f;f", 20);
        assert_int_equal(stackdiff_compute(&a, &b, &d), 0);
        e = frame(d, "f");
        assert_int_equal(e->incl.count_a, 25); /* not 10 * 3 + 10 + 5 */
        assert_int_equal(e->incl.count_b, 20);
        assert_int_equal(e->self.count_a, 15);
        assert_int_equal(e->self.count_b, 20);
        assert_true(fabs(e->incl.share_a - 100.0) < 1e-9);
        e = frame(d, "main");
        assert_int_equal(e->incl.count_a, 25);
        assert_int_equal(e->self.count_a, 0);
        assert_int_equal(frame(d, "g")->self.count_a, 10);
        stackdiff_free(d);
        folded_done(&a);
        folded_done(&b);
}

static void test_order(void **state) {
        Folded a = FOLDED_INIT, b = FOLDED_INIT;
        const StackDiffEntry *list;
        StackDiff *d;
        size_t n;
        char *text;
        const char *p1, *p2, *p3;

        (void) state;
        /* Shares A -> B: big 40 -> 10 (-30), up 10 -> 30 (+20), zz and aa
         * 25 -> 30 (+5 each: a tie, by name), flat 0 -> 0. */
        add(&a, "big", 40);
        add(&a, "up", 10);
        add(&a, "zz", 25);
        add(&a, "aa", 25);
        add(&b, "big", 10);
        add(&b, "up", 30);
        add(&b, "zz", 30);
        add(&b, "aa", 30);
        assert_int_equal(stackdiff_compute(&a, &b, &d), 0);

        list = stackdiff_frames(d, &n);
        assert_int_equal(n, 4);
        assert_string_equal(list[0].name, "big");
        assert_string_equal(list[1].name, "up");
        assert_string_equal(list[2].name, "aa");
        assert_string_equal(list[3].name, "zz");
        list = stackdiff_stacks(d, &n);
        assert_int_equal(n, 4);
        assert_string_equal(list[0].name, "big");
        assert_string_equal(list[3].name, "zz");

        text = summary(d, 3);
        assert_non_null(strstr(text, "Profile A: 100 samples in 4 stacks; profile B: 100 samples in 4 stacks."));
        assert_non_null(strstr(text, "(3 of 4)"));
        assert_non_null(strstr(text, "share A"));
        assert_non_null(strstr(text, "delta pts"));
        p1 = strstr(text, "  big\n");
        p2 = strstr(text, "  up\n");
        p3 = strstr(text, "  aa\n");
        assert_non_null(p1);
        assert_non_null(p2);
        assert_non_null(p3);
        assert_true(p1 < p2 && p2 < p3);
        assert_null(strstr(text, "  zz\n")); /* only the top 3 */
        assert_non_null(strstr(text, "   40.00%    10.00%     -30.00     -75%"));
        assert_non_null(strstr(text, "   10.00%    30.00%     +20.00    +200%"));
        free(text);
        stackdiff_free(d);
        folded_done(&a);
        folded_done(&b);
}

static void test_empty(void **state) {
        Folded a = FOLDED_INIT, b = FOLDED_INIT, e = FOLDED_INIT;
        const StackDiffEntry *list;
        StackDiff *d;
        size_t n;
        char *text;

        (void) state;
        assert_int_equal(stackdiff_compute(&e, &e, &d), 0);
        stackdiff_frames(d, &n);
        assert_int_equal(n, 0);
        stackdiff_stacks(d, &n);
        assert_int_equal(n, 0);
        text = summary(d, 10);
        assert_non_null(strstr(text, "Both profiles are empty"));
        free(text);
        stackdiff_free(d);

        add(&a, "main;x", 3);
        add(&a, "main;y", 1);
        /* An empty A: everything new, nothing divided by zero. */
        assert_int_equal(stackdiff_compute(&e, &a, &d), 0);
        list = stackdiff_frames(d, &n);
        assert_int_equal(n, 3);
        for (size_t i = 0; i < n; i++) {
                assert_true(list[i].incl.is_new);
                assert_true(list[i].incl.share_a == 0.0);
                assert_false(isnan(list[i].incl.delta));
        }
        assert_string_equal(list[0].name, "main");
        assert_true(list[0].incl.delta == 100.0);
        text = summary(d, 10);
        assert_non_null(strstr(text, "Profile A is empty"));
        assert_null(strstr(text, "nan"));
        assert_null(strstr(text, "inf"));
        free(text);
        stackdiff_free(d);

        /* An empty B: everything vanished. */
        assert_int_equal(stackdiff_compute(&a, &e, &d), 0);
        list = stackdiff_stacks(d, &n);
        assert_int_equal(n, 2);
        for (size_t i = 0; i < n; i++)
                assert_true(list[i].incl.vanished && list[i].incl.relative == -100.0);
        text = summary(d, 10);
        assert_non_null(strstr(text, "Profile B is empty"));
        assert_non_null(strstr(text, "-100%"));
        assert_null(strstr(text, "nan"));
        free(text);
        stackdiff_free(d);

        assert_int_equal(stackdiff_compute(NULL, &a, &d), -EINVAL);
        folded_done(&a);
        folded_done(&b);
}

static void test_share_and_format(void **state) {
        StackDiffShare s;

        (void) state;
        stackdiff_share(0, 0, 0, 0, &s);
        assert_true(s.share_a == 0.0 && s.share_b == 0.0 && s.delta == 0.0 && s.relative == 0.0);
        assert_false(s.is_new || s.vanished);
        assert_string_equal(relative(&s), "0%");

        stackdiff_share(20, 100, 29, 100, &s);
        assert_true(fabs(s.relative - 45.0) < 1e-9);
        assert_string_equal(relative(&s), "+45%");
        stackdiff_share(1000, 10000, 965, 10000, &s);
        assert_string_equal(relative(&s), "-3.5%");
        stackdiff_share(1, 3, 0, 7, &s);
        assert_true(s.relative == -100.0 && s.vanished);
        stackdiff_share(0, 3, 1, 7, &s);
        assert_true(isinf(s.relative) && s.is_new);
        /* Exactly equal ratios of different totals are exactly unchanged. */
        stackdiff_share(7, 1000003, 70, 10000030, &s);
        assert_true(s.delta == 0.0);
}

static void test_summary_escapes_and_shortens(void **state) {
        Folded a = FOLDED_INIT, b = FOLDED_INIT;
        StackDiff *d;
        char *text, *line, *end, longstack[2048];
        size_t k = 0;
        FILE *full;

        (void) state;
        k += (size_t) snprintf(longstack + k, sizeof(longstack) - k, "rootproc");
        for (int i = 0; i < 60; i++)
                k += (size_t) snprintf(longstack + k, sizeof(longstack) - k, ";frame_number_%02d", i);
        snprintf(longstack + k, sizeof(longstack) - k, ";the_leaf");
        add(&a, longstack, 10);
        add(&a, "evil\x01\x1b[2J;bad\xff", 10);
        add(&b, "other", 1);
        assert_int_equal(stackdiff_compute(&a, &b, &d), 0);
        text = summary(d, 10);

        assert_null(strchr(text, '\x1b'));
        assert_null(strchr(text, '\x01'));
        assert_null(strchr(text, '\xff'));
        assert_non_null(strstr(text, "evil\\x01\\x1b[2J;bad\\xff"));
        assert_non_null(strstr(text, "  bad\\xff\n"));

        /* The long stack: its root, "…", whole frames up to its leaf, short. */
        line = strstr(text, "  rootproc;\xe2\x80\xa6;");
        assert_non_null(line);
        end = strchr(line, '\n');
        assert_non_null(end);
        assert_true(end - line < 200);
        assert_true(end - line > 100);
        assert_memory_equal(end - strlen(";the_leaf"), ";the_leaf", strlen(";the_leaf"));
        assert_non_null(strstr(line, ";frame_number_59;the_leaf"));
        free(text);
        stackdiff_free(d);

        /* A long root frame is cut too, on a character boundary: 24 of its
         * 40 two-byte characters fit the 48 bytes kept. */
        k = 0;
        for (int i = 0; i < 40; i++)
                k += (size_t) snprintf(longstack + k, sizeof(longstack) - k, "\xc3\xa9");
        for (int i = 0; i < 20; i++)
                k += (size_t) snprintf(longstack + k, sizeof(longstack) - k, ";frame_number_%02d", i);
        folded_done(&a);
        add(&a, longstack, 10);
        assert_int_equal(stackdiff_compute(&a, &b, &d), 0);
        text = summary(d, 10);
        line = strstr(text, "  \xc3\xa9");
        assert_non_null(line);
        line += 2;
        for (int i = 0; i < 24; i++, line += 2)
                assert_memory_equal(line, "\xc3\xa9", 2);
        assert_memory_equal(line, "\xe2\x80\xa6;frame_number_", strlen("\xe2\x80\xa6;frame_number_"));
        free(text);

        full = fopen("/dev/full", "we");
        if (full) {
                assert_int_equal(stackdiff_summary(d, 10, full), -EIO);
                fclose(full);
        }
        stackdiff_free(d);
        folded_done(&a);
        folded_done(&b);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_normalised_by_totals),
                cmocka_unit_test(test_vanished_and_new),
                cmocka_unit_test(test_recursion_counts_once),
                cmocka_unit_test(test_order),
                cmocka_unit_test(test_empty),
                cmocka_unit_test(test_share_and_format),
                cmocka_unit_test(test_summary_escapes_and_shortens),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
