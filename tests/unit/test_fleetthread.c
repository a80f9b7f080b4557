/* fleetthread.c: who opens the pool's fleet thread, who replies in it,
 * who waits and for how long, and who follows it up when it ends. Pure
 * functions; the clock is an argument. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "fleetthread.h"

#define T0 (1000 * USEC_PER_SEC) /* CLOCK_MONOTONIC when we first asked */

static void test_ts_or_claim(void **state) {
        char claim[80];

        assert_true(fleet_thread_is_ts("1795374237.080814"));
        assert_false(fleet_thread_is_ts("claim:web-1:1795374237000000"));
        assert_false(fleet_thread_is_ts(NULL));
        assert_false(fleet_thread_is_ts(""));
        assert_false(fleet_thread_is_ts("1795374237"));
        assert_false(fleet_thread_is_ts(".5"));
        assert_false(fleet_thread_is_ts("1."));
        assert_false(fleet_thread_is_ts("1.2.3"));

        assert_int_equal(fleet_thread_claim("web-1", 1795374237000000ULL, claim, sizeof claim), 0);
        assert_string_equal(claim, "claim:web-1:1795374237000000");
        assert_false(fleet_thread_is_ts(claim));
        assert_int_equal(fleet_thread_claim("web-1", 1, claim, 8), -ENOBUFS);
        assert_int_equal(fleet_thread_claim("", 1, claim, sizeof claim), -EINVAL);
}

/* Who opens: the host whose claim the SET NX kept. */
static void test_first_opens(void **state) {
        const char *mine = "claim:web-1:5", *theirs = "claim:web-2:7";

        assert_int_equal(fleet_thread_decide(mine, mine, T0, T0), FLEET_OPEN);
        /* the same answer later (a re-ask after a lost reply) still opens */
        assert_int_equal(fleet_thread_decide(mine, mine, T0, T0 + 5 * USEC_PER_SEC), FLEET_OPEN);
        assert_int_equal(fleet_thread_decide(theirs, mine, T0, T0), FLEET_WAIT);
}

/* Who replies: everyone who finds a ts, at once, however long it asked. */
static void test_others_reply(void **state) {
        const char *mine = "claim:web-3:9";

        assert_int_equal(fleet_thread_decide("1795374237.080814", mine, T0, T0), FLEET_JOIN);
        assert_int_equal(fleet_thread_decide("1795374237.080814", mine, T0, T0 + FLEET_THREAD_PATIENCE * 2),
                         FLEET_JOIN);
}

/* Waiting on another host's claim is bounded: then a thread of our own,
 * late but never lost. Redis gone: our own at once. */
static void test_wait_bounded(void **state) {
        const char *mine = "claim:web-3:9", *theirs = "claim:web-1:5";

        assert_int_equal(fleet_thread_decide(theirs, mine, T0, T0 + FLEET_THREAD_PATIENCE - 1), FLEET_WAIT);
        assert_int_equal(fleet_thread_decide(theirs, mine, T0, T0 + FLEET_THREAD_PATIENCE), FLEET_OWN);
        /* a clock that stepped back is no reason to give up */
        assert_int_equal(fleet_thread_decide(theirs, mine, T0, T0 - USEC_PER_SEC), FLEET_WAIT);
        assert_int_equal(fleet_thread_decide(NULL, mine, T0, T0), FLEET_OWN);
        assert_int_equal(fleet_thread_decide(NULL, NULL, T0, T0), FLEET_OWN);
}

/* When it ends: the host that took the last hold away and removed a ts
 * follows up; a removed claim is its opener's to follow up; others
 * still holding: nothing. */
static void test_end(void **state) {
        assert_int_equal(fleet_thread_end_decide("1795374237.080814"), FLEET_END_FOLLOW_UP);
        assert_int_equal(fleet_thread_end_decide("claim:web-1:5"), FLEET_END_NONE);
        assert_int_equal(fleet_thread_end_decide(NULL), FLEET_END_NONE);
}

static void test_texts(void **state) {
        FleetHold h = {
                .holding = 3,
                .total = 10,
                .oldest = 1795374000ULL * USEC_PER_SEC,
                .now = (1795374000ULL + 240) * USEC_PER_SEC,
        };
        char *s = NULL;

        assert_int_equal(fleet_thread_parent_text("web", &h, NULL, &s), 0);
        assert_non_null(strstr(s, "pool web: budget spent, 3 of 10 holding, oldest since 2026-11-22T19:00:00Z (4m ago)"));
        free(s);
        h.now = h.oldest + 999 * USEC_PER_MSEC; /* the first host to hold opens at once */
        assert_int_equal(fleet_thread_parent_text("web", &h, NULL, &s), 0);
        assert_non_null(strstr(s, "2026-11-22T19:00:00Z (just now)"));
        free(s);
        assert_int_equal(fleet_thread_end_text("web", "web-7", &s), 0);
        assert_non_null(strstr(s, "pool web: no host holding any more (web-7 was the last)"));
        free(s);
        assert_int_equal(fleet_thread_parent_text("", &h, NULL, &s), -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_ts_or_claim),  cmocka_unit_test(test_first_opens),
                cmocka_unit_test(test_others_reply), cmocka_unit_test(test_wait_bounded),
                cmocka_unit_test(test_end),          cmocka_unit_test(test_texts),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
