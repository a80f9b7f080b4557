/* backoff.c: the one retry schedule (Slack, EC2, IMDS, the pool,
 * monkey-proxy-sync) and the one spread for periodic work. The copies it
 * replaced disagreed: proxy-sync jittered ±25 % around the step, the
 * others drew from its upper half; the outbox and EC2 counted attempts from
 * 1, the pool from 0. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "backoff.h"

#define S USEC_PER_SEC

static void test_backoff_doubles_then_caps(void **state) {
        /* random = 0 is the lower edge: half the step */
        assert_int_equal(backoff_delay(1 * S, 60 * S, 0, 0), S / 2);
        assert_int_equal(backoff_delay(1 * S, 60 * S, 1, 0), 1 * S);
        assert_int_equal(backoff_delay(1 * S, 60 * S, 2, 0), 2 * S);
        assert_int_equal(backoff_delay(1 * S, 60 * S, 5, 0), 16 * S);
        assert_int_equal(backoff_delay(1 * S, 60 * S, 6, 0), 30 * S); /* 64 s capped at 60 */
        assert_int_equal(backoff_delay(1 * S, 60 * S, 1000, 0), 30 * S);
        /* no overflow however many doublings, whatever the cap */
        assert_int_equal(backoff_delay(1, USEC_INFINITY, 200, 0), USEC_INFINITY / 2);
        /* min above max: max wins */
        assert_int_equal(backoff_delay(10 * S, 4 * S, 0, 0), 2 * S);
}

static void test_backoff_upper_half_random(void **state) {
        /* the whole upper half of the step, edges included, never beyond */
        for (unsigned doublings = 0; doublings < 10; doublings++) {
                usec_t step = MIN((usec_t) 1 * S << doublings, 60 * S);
                uint64_t rnd[] = { 0, 1, step / 2, step / 2 + 1, UINT64_MAX, 0x9e3779b97f4a7c15ULL };

                for (size_t i = 0; i < sizeof rnd / sizeof rnd[0]; i++) {
                        usec_t d = backoff_delay(1 * S, 60 * S, doublings, rnd[i]);
                        assert_true(d >= step / 2);
                        assert_true(d <= step);
                }
                assert_int_equal(backoff_delay(1 * S, 60 * S, doublings, step / 2), step);
        }
        /* a zero step stays zero: nothing to divide */
        assert_int_equal(backoff_delay(0, 60 * S, 3, 12345), 0);
}

static void test_jitter_spread(void **state) {
        assert_int_equal(jitter_spread(10 * S, 20, 0), 8 * S);           /* lower edge */
        assert_int_equal(jitter_spread(10 * S, 20, 4 * S), 12 * S);      /* upper edge */
        assert_int_equal(jitter_spread(10 * S, 20, 4 * S + 1), 8 * S);   /* wraps, stays inside */
        assert_int_equal(jitter_spread(10 * S, 0, 12345), 10 * S);       /* no spread asked */
        assert_int_equal(jitter_spread(99, 1, 12345), 99);               /* 1 % of 99 µs rounds to 0 */
        assert_int_equal(jitter_spread(10 * S, 500, 0), 0);              /* above 100 % is 100 % */
        for (uint64_t r = 0; r < 1000; r += 7) {
                usec_t d = jitter_spread(60 * S, 25, r * 104729);
                assert_true(d >= 45 * S && d <= 75 * S);
        }
        /* near the top of the range: saturates, never wraps to "now" */
        assert_int_equal(jitter_spread(USEC_INFINITY - 1, 10, UINT64_MAX - 1), USEC_INFINITY - 1);
        assert_true(jitter_spread(USEC_INFINITY - 1, 10, 0) < USEC_INFINITY - 1);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_backoff_doubles_then_caps),
                cmocka_unit_test(test_backoff_upper_half_random),
                cmocka_unit_test(test_jitter_spread),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
