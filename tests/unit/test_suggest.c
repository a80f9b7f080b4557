/* "Did you mean": the edit distance, and when a near word is offered. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "suggest.h"

static void test_suggest_distance(void **state) {
        assert_int_equal(suggest_distance("kitten", "sitting"), 3);
        assert_int_equal(suggest_distance("", "abc"), 3);
        assert_int_equal(suggest_distance("abc", ""), 3);
        assert_int_equal(suggest_distance("threshold", "threshold"), 0);
        assert_int_equal(suggest_distance("treshold", "threshold"), 1);
        assert_int_equal(suggest_distance("windwo", "window"), 2);
        assert_int_equal(suggest_distance("Threshold", "threshold"), 0); /* case does not count */
}

static void test_suggest_nearest(void **state) {
        static const char *const keys[] = { "threshold", "window", "interval", "jitter" };

        assert_string_equal(suggest_nearest("treshold", keys, ELEMENTSOF(keys)), "threshold");
        assert_string_equal(suggest_nearest("WINDWO", keys, ELEMENTSOF(keys)), "window");
        assert_string_equal(suggest_nearest("intrevall", keys, ELEMENTSOF(keys)), "interval"); /* 3 edits */
        assert_null(suggest_nearest("intrevalls", keys, ELEMENTSOF(keys)));                  /* 4 edits */
        assert_string_equal(suggest_nearest("bitter", keys, ELEMENTSOF(keys)), "jitter");
        assert_null(suggest_nearest("ab", (const char *const[]) { "cd" }, 1)); /* as far as the word is long */
        assert_null(suggest_nearest("window", keys, 0));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_suggest_distance),
                cmocka_unit_test(test_suggest_nearest),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
