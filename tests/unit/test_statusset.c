/* The HTTP status set: every grammar error with its errno, bounds, and
 * what the set then contains. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "statusset.h"
#include "testutil.h"

static void test_status_set_parse(void **state) {
        static const struct {
                const char *in;
                int r;
        } bad[] = {
                { "", -EINVAL },        { "abc", -EINVAL },     { "200-", -EINVAL },    { "200,", -EINVAL },
                { ",200", -EINVAL },    { "300-200", -EINVAL }, { "200;301", -EINVAL }, { "2xx", -EINVAL },
                { "-200", -EINVAL },    { "99", -ERANGE },      { "600", -ERANGE },     { "200-700", -ERANGE },
                { "0", -ERANGE },       { "99999999999", -ERANGE },
                { "200,201,202,203,204,205,206,207,208,209,210,211,212,213,214,215,216", -E2BIG },
        };
        StatusSet s;

        assert_int_equal(status_set_parse("200", &s), 0);
        assert_int_equal(s.n, 1);
        assert_int_equal(s.ranges[0].lo, 200);
        assert_int_equal(s.ranges[0].hi, 200);
        assert_true(status_set_contains(&s, 200));
        assert_false(status_set_contains(&s, 201));

        assert_int_equal(status_set_parse("200-299,301", &s), 0);
        assert_int_equal(s.n, 2);
        assert_true(status_set_contains(&s, 200));
        assert_true(status_set_contains(&s, 250));
        assert_true(status_set_contains(&s, 299));
        assert_false(status_set_contains(&s, 300));
        assert_true(status_set_contains(&s, 301));
        assert_false(status_set_contains(&s, 302));
        assert_false(status_set_contains(&s, 199));
        assert_false(status_set_contains(NULL, 200));

        assert_int_equal(status_set_parse(" 100 - 199 , 599 ", &s), 0);
        assert_int_equal(s.n, 2);
        assert_true(status_set_contains(&s, 150));
        assert_true(status_set_contains(&s, 599));

        assert_int_equal(status_set_parse("200,201,202,203,204,205,206,207,208,209,210,211,212,213,214,215", &s), 0);
        assert_int_equal(s.n, STATUS_SET_MAX);

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                s.n = 99;
                if (status_set_parse(bad[i].in, &s) != bad[i].r)
                        print_error("'%s'\n", bad[i].in);
                assert_int_equal(status_set_parse(bad[i].in, &s), bad[i].r);
                assert_int_equal(s.n, 99);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_status_set_parse),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
