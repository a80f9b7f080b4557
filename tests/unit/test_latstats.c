/* Statistics that merge exactly: A merged with B is the statistics of
 * A ∪ B (counts, buckets, min, max exactly; sums to rounding); a quantile
 * from the buckets is within one bucket's width of the sample's; the
 * layout is Prometheus's "le"; JSON round-trips and bad JSON is named. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "latstats.h"

/* a deterministic, long-tailed sample: what latencies look like */
static double sample(uint64_t *seed) {
        double u;

        *seed = *seed * 6364136223846793005ULL + 1442695040888963407ULL;
        u = (double) (*seed >> 11) / 9007199254740992.0;
        return 0.0002 * exp(8.0 * u * u);
}

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;
        return x < y ? -1 : x > y;
}

static void assert_close(double a, double b) {
        assert_true(fabs(a - b) <= 1e-9 * fmax(1.0, fmax(fabs(a), fabs(b))));
}

static void test_layout(void **state) {
        (void) state;
        assert_true(latstats_bound(0) == 0.0001);
        assert_true(latstats_bound(1) == 0.0002);
        assert_true(isinf(latstats_bound(LATSTATS_BUCKETS)));
        /* on a bound: that bucket ("le"); just above: the next */
        assert_int_equal(latstats_bucket_of(0.0001), 0);
        assert_int_equal(latstats_bucket_of(nextafter(0.0001, 1)), 1);
        assert_int_equal(latstats_bucket_of(0), 0);
        assert_int_equal(latstats_bucket_of(1e6), LATSTATS_BUCKETS);
        for (size_t i = 1; i < LATSTATS_BUCKETS; i++)
                assert_true(latstats_bound(i) == 2 * latstats_bound(i - 1));
}

static void test_merge_equals_union(void **state) {
        (void) state;
        LatStats a = {}, b = {}, u = {}, m = {};
        uint64_t seed = 42;

        for (int i = 0; i < 5000; i++) {
                double v = sample(&seed);
                assert_int_equal(latstats_add(i % 3 ? &a : &b, v), 0);
                assert_int_equal(latstats_add(&u, v), 0);
        }
        latstats_merge(&m, &a);
        latstats_merge(&m, &b);
        assert_int_equal(m.count, u.count);
        assert_true(m.min == u.min && m.max == u.max);
        assert_memory_equal(m.bucket, u.bucket, sizeof m.bucket);
        assert_close(m.sum, u.sum);
        assert_close(m.sum_sq, u.sum_sq);
        assert_close(latstats_mean(&m), latstats_mean(&u));
        assert_close(latstats_stddev(&m), latstats_stddev(&u));
        /* the other order, and an empty side, change nothing */
        LatStats m2 = {}, empty = {};
        latstats_merge(&m2, &b);
        latstats_merge(&m2, &empty);
        latstats_merge(&m2, &a);
        assert_memory_equal(m2.bucket, u.bucket, sizeof u.bucket);
        assert_true(m2.min == u.min && m2.max == u.max);
}

static void test_mean_stddev(void **state) {
        (void) state;
        LatStats s = {};

        assert_true(isnan(latstats_mean(&s)) && isnan(latstats_stddev(&s)) && isnan(latstats_quantile(&s, 0.5)));
        for (int i = 1; i <= 4; i++)
                latstats_add(&s, i * 0.01);
        assert_close(latstats_mean(&s), 0.025);
        assert_close(latstats_stddev(&s), 0.01 * sqrt(1.25)); /* population sd of 1..4 is sqrt(1.25) */
        assert_int_equal(latstats_add(&s, -0.001), -EINVAL);
        assert_int_equal(latstats_add(&s, NAN), -EINVAL);
        assert_int_equal(latstats_add(&s, INFINITY), -EINVAL);
        assert_int_equal(s.count, 4);
}

static void test_quantiles_within_a_bucket(void **state) {
        (void) state;
        enum { N = 20000 };
        static double v[N];
        LatStats s = {};
        uint64_t seed = 7;
        const double qs[] = { 0.01, 0.1, 0.5, 0.9, 0.99, 0.999 };

        for (int i = 0; i < N; i++) {
                v[i] = sample(&seed);
                latstats_add(&s, v[i]);
        }
        qsort(v, N, sizeof v[0], cmp_double);
        for (size_t k = 0; k < sizeof qs / sizeof qs[0]; k++) {
                double exact = v[(size_t) (qs[k] * N)], est = latstats_quantile(&s, qs[k]);
                size_t b = latstats_bucket_of(exact);
                double lo = b == 0 ? 0 : latstats_bound(b - 1), hi = latstats_bound(b);

                /* the estimate lies in the true quantile's bucket, or at its
                 * edge: within one bucket's width */
                assert_true(est >= lo - (hi - lo) && est <= hi + (hi - lo));
                assert_true(fabs(est - exact) <= hi - lo);
        }
        assert_true(latstats_quantile(&s, 0) == v[0]);
        assert_true(latstats_quantile(&s, 1) == v[N - 1]);
        assert_true(isnan(latstats_quantile(&s, 1.5)));
}

static void test_json(void **state) {
        (void) state;
        LatStats s = {}, back = {};
        json_object *o;
        char *err = NULL;

        for (int i = 0; i < 100; i++)
                latstats_add(&s, 0.001 * i);
        o = latstats_to_json(&s);
        assert_non_null(o);
        assert_int_equal(latstats_from_json(o, &back, &err), 0);
        assert_int_equal(back.count, s.count);
        assert_memory_equal(back.bucket, s.bucket, sizeof s.bucket);
        assert_close(back.sum, s.sum);
        json_object_put(o);

        const char *bad[] = {
                "[]",
                "{\"count\":-1}",
                "{\"count\":1,\"sum\":1,\"sum_sq\":1,\"min\":1,\"max\":1,\"buckets\":[1]}",
                "{\"count\":1,\"sum\":\"x\",\"sum_sq\":1,\"min\":1,\"max\":1,\"buckets\":[]}",
                "{\"count\":2,\"sum\":1,\"sum_sq\":1,\"min\":2,\"max\":1,"
                "\"buckets\":[2,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}",
                "{\"count\":1,\"sum\":1,\"sum_sq\":1,\"min\":1,\"max\":1,"
                "\"buckets\":[2,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}",
                "{\"count\":3,\"sum\":1,\"sum_sq\":1,\"min\":1,\"max\":1,"
                "\"buckets\":[1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}",
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                o = json_tokener_parse(bad[i]);
                free(err);
                err = NULL;
                assert_int_equal(latstats_from_json(o, &back, &err), -EBADMSG);
                assert_non_null(err);
                json_object_put(o);
        }
        free(err);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_layout),
                cmocka_unit_test(test_merge_equals_union),
                cmocka_unit_test(test_mean_stddev),
                cmocka_unit_test(test_quantiles_within_a_bucket),
                cmocka_unit_test(test_json),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
