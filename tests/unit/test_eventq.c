/* eventq.c: the machine's event queue never drops an event, keeps the
 * order and the reasons, and takes events pushed while it is drained. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>

#include "eventq.h"

/* A burst far past the old fixed queue of 32: every event comes out, in order. */
static void test_eventq_burst_keeps_everything(void **state) {
        EventQueue q = {};
        Event e;
        char *reason, want[32];
        const size_t n = 10000;

        for (size_t i = 0; i < n; i++) {
                snprintf(want, sizeof want, "event %zu", i);
                eventq_push(&q, (Event) (i % _EVENT_MAX), want);
        }
        assert_int_equal(eventq_size(&q), n);
        for (size_t i = 0; i < n; i++) {
                assert_true(eventq_pop(&q, &e, &reason));
                snprintf(want, sizeof want, "event %zu", i);
                assert_int_equal(e, (Event) (i % _EVENT_MAX));
                assert_string_equal(reason, want);
                free(reason);
        }
        assert_false(eventq_pop(&q, &e, &reason));
        assert_int_equal(eventq_size(&q), 0);
        eventq_clear(&q);
}

/* As in the agent's dispatch: an action posts while the queue drains; the
 * new events come after the ones already queued, the queue never
 * reorders, whatever its storage does (slide or grow) in between. */
static void test_eventq_push_while_popping(void **state) {
        EventQueue q = {};
        Event e;
        char *reason;
        unsigned next_in = 0, next_out = 0;
        char buf[32];

        for (; next_in < 20; next_in++) {
                snprintf(buf, sizeof buf, "%u", next_in);
                eventq_push(&q, EVENT_RETRY, buf);
        }
        while (eventq_pop(&q, &e, &reason)) {
                snprintf(buf, sizeof buf, "%u", next_out++);
                assert_string_equal(reason, buf);
                free(reason);
                /* each of the first 500 pops posts two more */
                for (int k = 0; k < 2 && next_in < 1020; k++, next_in++) {
                        snprintf(buf, sizeof buf, "%u", next_in);
                        eventq_push(&q, EVENT_DRAINED, buf);
                }
        }
        assert_int_equal(next_out, next_in);
        assert_int_equal(next_in, 1020);
        eventq_clear(&q);
}

static void test_eventq_null_reason_and_clear(void **state) {
        EventQueue q = {};
        Event e;
        char *reason = (char *) "untouched";

        eventq_push(&q, EVENT_REMEDY_DONE, NULL);
        assert_true(eventq_pop(&q, &e, &reason));
        assert_int_equal(e, EVENT_REMEDY_DONE);
        assert_null(reason);

        /* Clear frees the reasons still queued (LeakSanitizer watches). */
        eventq_push(&q, EVENT_START, "a");
        eventq_push(&q, EVENT_START, "b");
        eventq_clear(&q);
        assert_int_equal(eventq_size(&q), 0);
        eventq_push(&q, EVENT_START, "again");
        assert_true(eventq_pop(&q, &e, &reason));
        assert_string_equal(reason, "again");
        free(reason);
        eventq_clear(&q);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_eventq_burst_keeps_everything),
                cmocka_unit_test(test_eventq_push_while_popping),
                cmocka_unit_test(test_eventq_null_reason_and_clear),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
