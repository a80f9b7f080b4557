/* Sums and a shared log layout: nothing here depends on the order of the
 * values or on which agent saw them, which is what makes a merge exact. */
#include "latstats.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#include "error.h"

double latstats_bound(size_t i) {
        if (i >= LATSTATS_BUCKETS)
                return INFINITY;
        return ldexp(LATSTATS_FIRST_BOUND, (int) i);
}

size_t latstats_bucket_of(double seconds) {
        /* a loop, not log2(): the bounds are the values ldexp() gives, and
         * a value equal to a bound belongs to it whatever log2 rounds to */
        for (size_t i = 0; i < LATSTATS_BUCKETS; i++)
                if (seconds <= latstats_bound(i))
                        return i;
        return LATSTATS_BUCKETS;
}

int latstats_add(LatStats *s, double seconds) {
        if (!isfinite(seconds) || seconds < 0)
                return -EINVAL;
        if (s->count == 0 || seconds < s->min)
                s->min = seconds;
        if (s->count == 0 || seconds > s->max)
                s->max = seconds;
        s->count++;
        s->sum += seconds;
        s->sum_sq += seconds * seconds;
        s->bucket[latstats_bucket_of(seconds)]++;
        return 0;
}

void latstats_merge(LatStats *into, const LatStats *from) {
        if (from->count == 0)
                return;
        if (into->count == 0 || from->min < into->min)
                into->min = from->min;
        if (into->count == 0 || from->max > into->max)
                into->max = from->max;
        into->count += from->count;
        into->sum += from->sum;
        into->sum_sq += from->sum_sq;
        for (size_t i = 0; i <= LATSTATS_BUCKETS; i++)
                into->bucket[i] += from->bucket[i];
}

double latstats_mean(const LatStats *s) {
        return s->count ? s->sum / (double) s->count : NAN;
}

double latstats_stddev(const LatStats *s) {
        double mean, var;

        if (s->count == 0)
                return NAN;
        mean = s->sum / (double) s->count;
        /* E[x²] - E[x]², which rounding can push a hair below zero */
        var = s->sum_sq / (double) s->count - mean * mean;
        return var > 0 ? sqrt(var) : 0.0;
}

double latstats_quantile(const LatStats *s, double q) {
        double rank, seen = 0, lo, hi, v;

        if (s->count == 0 || !(q >= 0 && q <= 1))
                return NAN;
        if (q == 0)
                return s->min;
        if (q == 1)
                return s->max;
        rank = q * (double) s->count;
        for (size_t i = 0; i <= LATSTATS_BUCKETS; i++) {
                if (s->bucket[i] == 0 || seen + (double) s->bucket[i] < rank) {
                        seen += (double) s->bucket[i];
                        continue;
                }
                /* the bucket's own range, narrowed to what was seen */
                lo = i == 0 ? 0 : latstats_bound(i - 1);
                hi = latstats_bound(i);
                if (lo < s->min)
                        lo = s->min;
                if (hi > s->max)
                        hi = s->max;
                v = lo + (hi - lo) * (rank - seen) / (double) s->bucket[i];
                return v < s->min ? s->min : v > s->max ? s->max : v;
        }
        return s->max;
}

json_object *latstats_to_json(const LatStats *s) {
        json_object *o = json_object_new_object(), *b = json_object_new_array();

        if (!o || !b) {
                json_object_put(o);
                json_object_put(b);
                return NULL;
        }
        json_object_object_add(o, "count", json_object_new_uint64(s->count));
        json_object_object_add(o, "sum", json_object_new_double(s->sum));
        json_object_object_add(o, "sum_sq", json_object_new_double(s->sum_sq));
        json_object_object_add(o, "min", s->count ? json_object_new_double(s->min) : NULL);
        json_object_object_add(o, "max", s->count ? json_object_new_double(s->max) : NULL);
        for (size_t i = 0; i <= LATSTATS_BUCKETS; i++)
                json_object_array_add(b, json_object_new_uint64(s->bucket[i]));
        json_object_object_add(o, "buckets", b);
        return o;
}

static int number_field(json_object *o, const char *key, bool nullable, double *ret, char **ret_error) {
        json_object *v;

        if (!json_object_object_get_ex(o, key, &v))
                return error_set(ret_error, -EBADMSG, "%s: missing", key);
        if (!v && nullable) {
                *ret = 0;
                return 0;
        }
        if (!json_object_is_type(v, json_type_double) && !json_object_is_type(v, json_type_int))
                return error_set(ret_error, -EBADMSG, "%s: expected a number", key);
        *ret = json_object_get_double(v);
        if (!isfinite(*ret) || *ret < 0)
                return error_set(ret_error, -EBADMSG, "%s: expected a finite number >= 0", key);
        return 0;
}

int latstats_from_json(json_object *o, LatStats *ret, char **ret_error) {
        LatStats s = {};
        json_object *v, *b;
        uint64_t total = 0;
        int r;

        if (!o || !json_object_is_type(o, json_type_object))
                return error_set(ret_error, -EBADMSG, "expected an object");
        if (!json_object_object_get_ex(o, "count", &v) || !json_object_is_type(v, json_type_int) ||
            json_object_get_int64(v) < 0)
                return error_set(ret_error, -EBADMSG, "count: expected an integer >= 0");
        s.count = json_object_get_uint64(v);
        if ((r = number_field(o, "sum", false, &s.sum, ret_error)) < 0 ||
            (r = number_field(o, "sum_sq", false, &s.sum_sq, ret_error)) < 0 ||
            (r = number_field(o, "min", s.count == 0, &s.min, ret_error)) < 0 ||
            (r = number_field(o, "max", s.count == 0, &s.max, ret_error)) < 0)
                return r;
        if (s.min > s.max)
                return error_set(ret_error, -EBADMSG, "min: greater than max");
        if (!json_object_object_get_ex(o, "buckets", &b) || !json_object_is_type(b, json_type_array) ||
            json_object_array_length(b) != LATSTATS_BUCKETS + 1)
                return error_set(ret_error, -EBADMSG, "buckets: expected an array of %d counts", LATSTATS_BUCKETS + 1);
        for (size_t i = 0; i <= LATSTATS_BUCKETS; i++) {
                v = json_object_array_get_idx(b, i);
                if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0)
                        return error_set(ret_error, -EBADMSG, "buckets[%zu]: expected an integer >= 0", i);
                s.bucket[i] = json_object_get_uint64(v);
                if (s.bucket[i] > s.count || total + s.bucket[i] > s.count)
                        return error_set(ret_error, -EBADMSG, "buckets: more values than count");
                total += s.bucket[i];
        }
        if (total != s.count)
                return error_set(ret_error, -EBADMSG, "buckets: %llu values, count says %llu",
                                 (unsigned long long) total, (unsigned long long) s.count);
        *ret = s;
        return 0;
}
