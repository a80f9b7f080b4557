/* Latency statistics that merge exactly: count, sum, sum of squares,
 * min, max and a fixed logarithmic distribution that every agent shares,
 * so a fleet's statistics are the sum of its hosts' (issue 21). The
 * buckets are Prometheus's too: upper bounds ("le") of 100 µs × 2^i for
 * i = 0 … LATSTATS_BUCKETS-1 (0.1 ms … 52.4 s), then +Inf. A quantile read
 * from them is within one bucket's width of the true one (a factor 2). */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LATSTATS_BUCKETS 20
#define LATSTATS_FIRST_BOUND 0.0001

typedef struct LatStats {
        uint64_t count;
        double sum, sum_sq;                      /* seconds, seconds² */
        double min, max;                         /* meaningless while count is 0 */
        uint64_t bucket[LATSTATS_BUCKETS + 1];   /* per bucket (not cumulative); the last is +Inf */
} LatStats;

/* The upper bound of bucket i in seconds; INFINITY for i = LATSTATS_BUCKETS. */
double latstats_bound(size_t i);
/* The bucket a value falls in (value <= bound, as Prometheus's "le"). */
size_t latstats_bucket_of(double seconds);

/* Negative, NaN and infinite values are refused (-EINVAL): a clock that
 * went backwards is not a latency. */
int latstats_add(LatStats *s, double seconds);
void latstats_merge(LatStats *into, const LatStats *from);

double latstats_mean(const LatStats *s);    /* NAN when empty */
double latstats_stddev(const LatStats *s);  /* population; NAN when empty */
/* q in [0, 1]; linear within the bucket that holds the rank, clamped to
 * [min, max]; NAN when empty or q out of range. */
double latstats_quantile(const LatStats *s, double q);

/* {"count","sum","sum_sq","min","max","buckets":[21 counts]} (min/max
 * null when empty). */
json_object *latstats_to_json(const LatStats *s);
/* The inverse, every field checked (the buckets must add up to count):
 * -EBADMSG with *ret_error naming the field. */
int latstats_from_json(json_object *o, LatStats *ret, char **ret_error);
