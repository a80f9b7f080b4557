/* The exposition: every series family headed by HELP and TYPE, the state
 * gauges one-hot, both reload results from zero, histogram buckets
 * cumulative up to +Inf equal to _count, label values escaped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

static char *render(Metrics *m, State s) {
        MetricsFacts f = { .version = "1.2.3", .state = s, .state_since = 1700000000 * USEC_PER_SEC,
                           .cpu_window = NAN, .redis_up = -1, .budget_min_serving = 2, .budget_max_unavailable = 1,
                           .budget_serving = NAN, .budget_unavailable = 0 };
        char *text = NULL;
        size_t len = 0;

        assert_int_equal(metrics_render(m, &f, &text, &len), 0);
        assert_int_equal(strlen(text), len);
        return text;
}

static void test_basics(void **state) {
        (void) state;
        Metrics *m = NULL;
        char *t;

        assert_int_equal(metrics_new(&m), 0);
        t = render(m, STATE_SERVING);
        assert_non_null(strstr(t, "# TYPE monkeyd_build_info gauge\nmonkeyd_build_info{version=\"1.2.3\"} 1\n"));
        assert_non_null(strstr(t, "monkeyd_state{state=\"SERVING\"} 1\n"));
        assert_non_null(strstr(t, "monkeyd_state{state=\"DRAINING\"} 0\n"));
        assert_non_null(strstr(t, "monkeyd_state_since_seconds 1700000000\n"));
        assert_non_null(strstr(t, "monkeyd_reloads_total{result=\"failed\"} 0\n"));
        assert_null(strstr(t, "monkeyd_redis_up")); /* no pool: no series */
        assert_null(strstr(t, "monkeyd_cpu_window_ratio"));
        /* the budget's known parts only */
        assert_non_null(strstr(t, "monkeyd_pool_budget{kind=\"min_serving\"} 2\n"));
        assert_non_null(strstr(t, "monkeyd_pool_budget{kind=\"unavailable\"} 0\n"));
        assert_null(strstr(t, "monkeyd_pool_budget{kind=\"serving\"}"));
        free(t);

        metrics_transition(m, STATE_SERVING, STATE_OVERLOADED, EVENT_BREACH);
        metrics_breach(m);
        metrics_remediation(m, "restart-unit", "ok");
        metrics_remediation(m, "weird\"step\\", "failed");
        t = render(m, STATE_OVERLOADED);
        assert_non_null(strstr(t, "monkeyd_transitions_total{from=\"SERVING\",to=\"OVERLOADED\",event=\"breach\"} 1\n"));
        assert_non_null(strstr(t, "monkeyd_breaches_total 1\n"));
        assert_non_null(strstr(t, "monkeyd_remediations_total{step=\"restart-unit\",result=\"ok\"} 1\n"));
        assert_non_null(strstr(t, "monkeyd_remediations_total{step=\"weird\\\"step\\\\\",result=\"failed\"} 1\n"));
        free(t);
        metrics_free(m);
}

static void test_histogram(void **state) {
        (void) state;
        Metrics *m = NULL;
        char *t, *p;
        unsigned long long prev = 0, v;
        int buckets = 0;

        assert_int_equal(metrics_new(&m), 0);
        metrics_checks(m, "pass", "pass", "pass", 0.00005, 0.003, 0);
        metrics_checks(m, "fail", "pass", "skipped", 0.3, NAN, 0);
        metrics_checks(m, "pass", "pass", "pass", 100.0, 0.0001, 0);
        t = render(m, STATE_SERVING);
        assert_non_null(strstr(t, "# TYPE monkeyd_check_duration_seconds histogram\n"));
        assert_non_null(strstr(t, "monkeyd_checks_total{check=\"content\",result=\"fail\"} 1\n"));
        assert_non_null(strstr(t, "monkeyd_checks_total{check=\"binding\",result=\"skipped\"} 1\n"));
        /* cumulative, never decreasing, ending at +Inf = _count */
        for (p = t; (p = strstr(p, "monkeyd_check_duration_seconds_bucket{check=\"http\",le=\"")); p++) {
                char *sp = strchr(p, ' ');
                v = strtoull(sp + 1, NULL, 10);
                assert_true(v >= prev);
                prev = v;
                buckets++;
        }
        assert_int_equal(buckets, 21);
        assert_int_equal(prev, 3);
        assert_non_null(strstr(t, "monkeyd_check_duration_seconds_bucket{check=\"http\",le=\"0.0001\"} 1\n"));
        assert_non_null(strstr(t, "monkeyd_check_duration_seconds_bucket{check=\"http\",le=\"52.4288\"} 2\n"));
        assert_non_null(strstr(t, "monkeyd_check_duration_seconds_count{check=\"http\"} 3\n"));
        /* the binding that was not measured is not counted */
        assert_non_null(strstr(t, "monkeyd_check_duration_seconds_count{check=\"binding\"} 2\n"));
        free(t);
        metrics_free(m);
}

/* since start keeps everything; the last hour forgets what is older */
static void test_stats_window(void **state) {
        (void) state;
        Metrics *m = NULL;
        json_object *o, *v;

        assert_int_equal(metrics_new(&m), 0);
        metrics_checks(m, "pass", "pass", "pass", 0.002, 0.001, 10 * USEC_PER_SEC);
        metrics_checks(m, "pass", "pass", "pass", 0.004, 0.001, 40 * USEC_PER_MINUTE);

        o = metrics_stats_json(m, 50 * USEC_PER_MINUTE);
        assert_true(json_object_object_get_ex(o, "checks", &v) && json_object_object_get_ex(v, "http", &v));
        assert_int_equal(json_object_get_int(json_object_object_get(json_object_object_get(v, "since_start"), "count")), 2);
        assert_int_equal(json_object_get_int(json_object_object_get(json_object_object_get(v, "last_hour"), "count")), 2);
        json_object_put(o);

        o = metrics_stats_json(m, 90 * USEC_PER_MINUTE);
        v = json_object_object_get(json_object_object_get(o, "checks"), "http");
        assert_int_equal(json_object_get_int(json_object_object_get(json_object_object_get(v, "since_start"), "count")), 2);
        /* the one at minute 40 is still within the hour, the one at 0 is not */
        assert_int_equal(json_object_get_int(json_object_object_get(json_object_object_get(v, "last_hour"), "count")), 1);
        json_object_put(o);
        metrics_free(m);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_basics),
                cmocka_unit_test(test_histogram),
                cmocka_unit_test(test_stats_window),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
