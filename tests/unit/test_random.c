/* random.c: the one random source. Not a statistics test: it checks that
 * the values move and spread over all the bits, which is what jitter,
 * heartbeat spread and temporary file names need. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "random.h"

static void test_random_moves_and_spreads(void **state) {
        uint64_t ored = 0, anded = UINT64_MAX, prev = random_u64();
        unsigned same = 0;

        for (unsigned i = 0; i < 256; i++) {
                uint64_t v = random_u64();
                same += v == prev;
                ored |= v;
                anded &= v;
                prev = v;
        }
        assert_int_equal(same, 0);
        /* every bit seen both set and clear: not a counter, not 32 bits wide */
        assert_true(ored == UINT64_MAX);
        assert_true(anded == 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_random_moves_and_spreads),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
