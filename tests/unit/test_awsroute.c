/* The route's waits end on the load balancer's own words: drained means
 * every target unused or gone (draining, initial, healthy, unhealthy may
 * still take requests); healthy means every target healthy. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "awsroute.h"
#include "elbv2.h"

static void test_drained(void **state) {
        (void) state;
        int gone[] = { TARGET_HEALTH_UNUSED, TARGET_HEALTH_ABSENT };
        int one_draining[] = { TARGET_HEALTH_UNUSED, TARGET_HEALTH_DRAINING };

        assert_int_equal(awsroute_drained_verdict(gone, 2), ROUTE_WAIT_DONE);
        assert_int_equal(awsroute_drained_verdict(one_draining, 2), ROUTE_WAIT_MORE);
        for (int s = 0; s < _TARGET_HEALTH_MAX; s++) {
                int one[] = { s };
                RouteWait want = s == TARGET_HEALTH_UNUSED || s == TARGET_HEALTH_ABSENT ? ROUTE_WAIT_DONE
                                                                                        : ROUTE_WAIT_MORE;
                assert_int_equal(awsroute_drained_verdict(one, 1), want);
        }
}

static void test_healthy(void **state) {
        (void) state;
        int both[] = { TARGET_HEALTH_HEALTHY, TARGET_HEALTH_HEALTHY };
        int one_initial[] = { TARGET_HEALTH_HEALTHY, TARGET_HEALTH_INITIAL };

        assert_int_equal(awsroute_healthy_verdict(both, 2), ROUTE_WAIT_DONE);
        assert_int_equal(awsroute_healthy_verdict(one_initial, 2), ROUTE_WAIT_MORE);
        for (int s = 0; s < _TARGET_HEALTH_MAX; s++) {
                int one[] = { s };
                assert_int_equal(awsroute_healthy_verdict(one, 1),
                                 s == TARGET_HEALTH_HEALTHY ? ROUTE_WAIT_DONE : ROUTE_WAIT_MORE);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_drained),
                cmocka_unit_test(test_healthy),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
