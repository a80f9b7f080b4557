/* detector.c: the sustained-window rule, hysteresis, gaps, window_pct. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <math.h>

#include "detector.h"

#define S USEC_PER_SEC
/* Samples start well after 0: last_end == 0 means "none". */
#define T0 (1000 * S)

#define assert_double_eq(a, b)                                                          \
        do {                                                                            \
                double _a = (a), _b = (b);                                              \
                if (!(fabs(_a - _b) <= 1e-9)) {                                         \
                        print_error("%s = %.12g, expected %.12g\n", #a, _a, _b);        \
                        fail();                                                         \
                }                                                                       \
        } while (0)

#define assert_verdict(got, want)                                                               \
        do {                                                                                    \
                DetectorVerdict _g = (got), _w = (want);                                        \
                if (_g != _w) {                                                                 \
                        print_error("%s = %s, expected %s\n", #got, detector_verdict_to_string(_g), \
                                    detector_verdict_to_string(_w));                            \
                        fail();                                                                 \
                }                                                                               \
        } while (0)

/* Threshold 90, clear below 70, window 60 s, interval 5 s. */
static int setup(void **state) {
        Detector *d = malloc(sizeof(*d));

        if (!d || detector_init(d, 90.0, 70.0, 60 * S, 5 * S) < 0) {
                free(d);
                return -1;
        }
        *state = d;
        return 0;
}

static int teardown(void **state) {
        Detector *d = *state;

        detector_done(d);
        free(d);
        return 0;
}

/* Feeds back-to-back samples of `len` each from the last end (or T0). */
typedef struct Feeder {
        Detector *d;
        usec_t t;
} Feeder;

static Feeder feeder(Detector *d) {
        return (Feeder) { .d = d, .t = d->last_end ?: T0 };
}

static DetectorVerdict feed(Feeder *f, usec_t len, double busy) {
        DetectorVerdict v = detector_feed(f->d, f->t, f->t + len, busy);
        f->t += len;
        return v;
}

static void test_init(void **state) {
        Detector d = { .threshold = -1 }, x;

        assert_int_equal(detector_init(&d, 90.0, 70.0, 60 * S, 5 * S), 0);
        assert_int_equal(d.ring_size, 14);
        assert_int_equal(d.ring_len, 0);
        assert_false(d.breached);
        assert_true(d.run_start == USEC_INFINITY);
        assert_true(d.last_end == 0);
        assert_true(isnan(detector_window_pct(&d)));
        assert_true(detector_run_length(&d) == 0);
        detector_done(&d);
        assert_null(d.ring);
        detector_done(&d); /* twice is fine */

        /* Never fewer than 4 entries. */
        assert_int_equal(detector_init(&d, 90.0, 70.0, 5 * S, 5 * S), 0);
        assert_int_equal(d.ring_size, 4);
        detector_done(&d);
        assert_int_equal(detector_init(&d, 90.0, 70.0, 7 * S, 2 * S), 0);
        assert_int_equal(d.ring_size, 5);
        detector_done(&d);

        /* Bad parameters leave the struct as it was. */
        memset(&d, 0x5a, sizeof(d));
        memcpy(&x, &d, sizeof(x));
        assert_int_equal(detector_init(&d, 0.0, 0.0, 60 * S, 5 * S), -EINVAL);
        assert_int_equal(detector_init(&d, 101.0, 70.0, 60 * S, 5 * S), -EINVAL);
        assert_int_equal(detector_init(&d, NAN, 70.0, 60 * S, 5 * S), -EINVAL);
        assert_int_equal(detector_init(&d, 90.0, 95.0, 60 * S, 5 * S), -EINVAL);
        assert_int_equal(detector_init(&d, 90.0, -1.0, 60 * S, 5 * S), -EINVAL);
        assert_int_equal(detector_init(&d, 90.0, NAN, 60 * S, 5 * S), -EINVAL);
        assert_int_equal(detector_init(&d, 90.0, 70.0, 0, 5 * S), -EINVAL);
        assert_int_equal(detector_init(&d, 90.0, 70.0, 60 * S, 0), -EINVAL);
        assert_int_equal(detector_init(&d, 90.0, 70.0, USEC_PER_DAY * 365, 1), -EINVAL);
        assert_memory_equal(&d, &x, sizeof(d));

        /* clear_below == threshold: no hysteresis, still valid. */
        assert_int_equal(detector_init(&d, 90.0, 90.0, 60 * S, 5 * S), 0);
        detector_done(&d);

        assert_string_equal(detector_verdict_to_string(DETECTOR_QUIET), "quiet");
        assert_string_equal(detector_verdict_to_string(DETECTOR_BREACH), "breach");
        assert_string_equal(detector_verdict_to_string(DETECTOR_OVER), "over");
        assert_string_equal(detector_verdict_to_string(DETECTOR_CLEARED), "cleared");
        assert_null(detector_verdict_to_string((DetectorVerdict) 4));
        assert_null(detector_verdict_to_string((DetectorVerdict) -1));
}

static void test_spikes_never_fire(void **state) {
        Detector *d = *state;
        Feeder f = feeder(d);

        /* 55 s of 100 %, then quiet: one sample short of the window. */
        for (unsigned i = 0; i < 11; i++)
                assert_verdict(feed(&f, 5 * S, 100.0), DETECTOR_QUIET);
        assert_true(detector_run_length(d) == 55 * S);
        assert_verdict(feed(&f, 5 * S, 10.0), DETECTOR_QUIET);
        assert_true(detector_run_length(d) == 0);

        /* Two 55 s plateaus split by one sample just under the threshold. */
        for (unsigned i = 0; i < 11; i++)
                assert_verdict(feed(&f, 5 * S, 99.0), DETECTOR_QUIET);
        assert_verdict(feed(&f, 5 * S, 89.99), DETECTOR_QUIET);
        for (unsigned i = 0; i < 11; i++)
                assert_verdict(feed(&f, 5 * S, 99.0), DETECTOR_QUIET);
        assert_verdict(feed(&f, 5 * S, 0.0), DETECTOR_QUIET);

        /* A saw tooth for a long time: 11 hot, 1 cool, again and again,
         * with a window average well above the threshold. */
        for (unsigned i = 0; i < 1200; i++)
                assert_verdict(feed(&f, 5 * S, i % 12 == 11 ? 50.0 : 100.0), DETECTOR_QUIET);
        assert_true(detector_window_pct(d) > 90.0);

        /* Lone 100 % samples. */
        for (unsigned i = 0; i < 100; i++)
                assert_verdict(feed(&f, 5 * S, i % 2 ? 0.0 : 100.0), DETECTOR_QUIET);

        /* One long interval shorter than the window. */
        assert_verdict(feed(&f, 59 * S, 100.0), DETECTOR_QUIET);
        assert_verdict(feed(&f, 1 * S, 10.0), DETECTOR_QUIET);
        assert_false(d->breached);
}

static void test_sustained_breach_at_window(void **state) {
        Detector *d = *state;
        Feeder f = feeder(d);

        assert_verdict(feed(&f, 5 * S, 20.0), DETECTOR_QUIET);
        /* 11 samples = 55 s: not yet. */
        for (unsigned i = 1; i <= 11; i++) {
                assert_verdict(feed(&f, 5 * S, 95.0), DETECTOR_QUIET);
                assert_true(detector_run_length(d) == i * 5 * S);
        }
        /* The 12th ends exactly 60 s after the run began. */
        assert_verdict(feed(&f, 5 * S, 95.0), DETECTOR_BREACH);
        assert_true(detector_run_length(d) == 60 * S);
        assert_true(d->breached);
        assert_verdict(feed(&f, 5 * S, 95.0), DETECTOR_OVER);
        assert_verdict(feed(&f, 5 * S, 100.0), DETECTOR_OVER);
        assert_double_eq(detector_window_pct(d), (55.0 * 95.0 + 5.0 * 100.0) / 60.0);
}

/* Exactly at the threshold is hot; intervals need not divide the window. */
static void test_breach_uneven_intervals(void **state) {
        Detector *d = *state;
        Feeder f = feeder(d);

        /* 7 s samples: 8 of them = 56 s, the 9th reaches 63 s. */
        for (unsigned i = 0; i < 8; i++)
                assert_verdict(feed(&f, 7 * S, 90.0), DETECTOR_QUIET);
        assert_verdict(feed(&f, 7 * S, 90.0), DETECTOR_BREACH);

        /* Short by more than the timer slack (50 ms here): not yet; by
         * the slack: the window. */
        detector_reset(d);
        f = feeder(d);
        f.t = 5000 * S;
        assert_verdict(feed(&f, 30 * S, 100.0), DETECTOR_QUIET);
        assert_verdict(feed(&f, 30 * S - 50 * USEC_PER_MSEC - 1, 100.0), DETECTOR_QUIET);
        assert_verdict(feed(&f, 1, 100.0), DETECTOR_BREACH);

        /* A single interval as long as the window. */
        detector_reset(d);
        f.t = 9000 * S;
        assert_verdict(feed(&f, 60 * S, 91.0), DETECTOR_BREACH);
}

/* Samples 1 s apart by the timer, read a little early or late: three hot
 * intervals that add up to 2.999 s are a 3 s window, not a reason to wait
 * one more second; a slack of a tenth of the interval, never a sample. */
static void test_timer_jitter(void **state) {
        Detector j;
        Feeder f;

        (void) state;
        assert_int_equal(detector_init(&j, 85.0, 60.0, 3 * S, 1 * S), 0);
        f = feeder(&j);
        assert_verdict(feed(&f, 1 * S + 2000, 99.0), DETECTOR_QUIET);
        assert_verdict(feed(&f, 1 * S - 1500, 99.0), DETECTOR_QUIET);
        assert_verdict(feed(&f, 1 * S - 1500, 99.0), DETECTOR_BREACH);
        detector_done(&j);

        /* 2.9 s is not 3 s: the slack is 50 ms at most */
        assert_int_equal(detector_init(&j, 85.0, 60.0, 3 * S, 1 * S), 0);
        f = feeder(&j);
        for (unsigned i = 0; i < 2; i++)
                assert_verdict(feed(&f, 1 * S, 99.0), DETECTOR_QUIET);
        assert_verdict(feed(&f, 900 * USEC_PER_MSEC, 99.0), DETECTOR_QUIET);
        assert_verdict(feed(&f, 1 * S, 99.0), DETECTOR_BREACH);
        detector_done(&j);

        /* 100 ms samples: 10 ms of slack */
        assert_int_equal(detector_init(&j, 85.0, 60.0, 1 * S, 100 * USEC_PER_MSEC), 0);
        f = feeder(&j);
        for (unsigned i = 0; i < 9; i++)
                assert_verdict(feed(&f, 100 * USEC_PER_MSEC, 99.0), DETECTOR_QUIET);
        assert_verdict(feed(&f, 89 * USEC_PER_MSEC, 99.0), DETECTOR_QUIET);
        assert_verdict(feed(&f, 1 * USEC_PER_MSEC, 99.0), DETECTOR_BREACH);
        detector_done(&j);
}

static void breach(Feeder *f) {
        for (unsigned i = 0; i < 11; i++)
                assert_verdict(feed(f, 5 * S, 100.0), DETECTOR_QUIET);
        assert_verdict(feed(f, 5 * S, 100.0), DETECTOR_BREACH);
}

static void test_hysteresis(void **state) {
        Detector *d = *state;
        Feeder f = feeder(d);

        /* Wobbling around the threshold before a breach never fires. */
        for (unsigned i = 0; i < 10000; i++)
                assert_verdict(feed(&f, 5 * S, i % 2 ? 90.5 : 89.5), DETECTOR_QUIET);
        assert_double_eq(detector_window_pct(d), 90.0);
        assert_verdict(feed(&f, 5 * S, 89.5), DETECTOR_QUIET);

        breach(&f);
        /* Between clear_below and threshold: still over, whatever the wobble. */
        for (unsigned i = 0; i < 1000; i++)
                assert_verdict(feed(&f, 5 * S, 70.0 + (double) (i % 40)), DETECTOR_OVER);
        assert_verdict(feed(&f, 5 * S, 70.0), DETECTOR_OVER);
        assert_true(d->breached);

        /* Below clear_below: cleared once, then quiet. */
        assert_verdict(feed(&f, 5 * S, 69.99), DETECTOR_CLEARED);
        assert_false(d->breached);
        assert_verdict(feed(&f, 5 * S, 69.99), DETECTOR_QUIET);
        assert_verdict(feed(&f, 5 * S, 80.0), DETECTOR_QUIET);

        /* A new breach takes a whole window again. */
        for (unsigned i = 0; i < 11; i++)
                assert_verdict(feed(&f, 5 * S, 100.0), DETECTOR_QUIET);
        assert_verdict(feed(&f, 5 * S, 100.0), DETECTOR_BREACH);
        assert_verdict(feed(&f, 5 * S, 0.0), DETECTOR_CLEARED);
}

/* After a failed remediation the host rejoins only after a whole window
 * below clear_below: a sample at or above clear_below (even under the
 * threshold) or a gap starts the cool run over. */
static void test_cool_window(void **state) {
        Detector *d = *state;
        Feeder f = feeder(d);

        assert_int_equal(detector_cool_length(d), 0);
        assert_false(detector_cooled(d));
        breach(&f);
        assert_false(detector_cooled(d));
        /* 55 s below clear_below: not yet a window of 60 s */
        for (unsigned i = 0; i < 11; i++)
                (void) feed(&f, 5 * S, 10.0);
        assert_true(detector_cool_length(d) == 55 * S);
        assert_false(detector_cooled(d));
        /* 80 %: under the threshold, over clear_below: not cool, start over */
        (void) feed(&f, 5 * S, 80.0);
        assert_int_equal(detector_cool_length(d), 0);
        assert_false(detector_cooled(d));
        for (unsigned i = 0; i < 11; i++)
                (void) feed(&f, 5 * S, 10.0);
        assert_false(detector_cooled(d));
        /* a hole (a missed sample) starts the cool run over too */
        f.t += 1 * S;
        (void) feed(&f, 5 * S, 10.0);
        assert_true(detector_cool_length(d) == 5 * S);
        for (unsigned i = 0; i < 11; i++)
                (void) feed(&f, 5 * S, 10.0);
        assert_true(detector_cool_length(d) == 60 * S);
        assert_true(detector_cooled(d));
        /* a reset (a rejoin) keeps the samples, so the cool run too */
        detector_reset(d);
        assert_true(detector_cooled(d));
}

static void test_no_hysteresis(void **state) {
        Detector d;
        Feeder f;

        assert_int_equal(detector_init(&d, 90.0, 90.0, 60 * S, 5 * S), 0);
        f = feeder(&d);
        breach(&f);
        assert_verdict(feed(&f, 5 * S, 90.0), DETECTOR_OVER);
        assert_verdict(feed(&f, 5 * S, 89.9), DETECTOR_CLEARED);
        detector_done(&d);
}

static void test_gap_restarts_run(void **state) {
        Detector *d = *state;
        Feeder f = feeder(d);

        /* 55 s hot, a 1 s hole (a skipped sample), then hot again: the
         * run starts over after the hole. */
        for (unsigned i = 0; i < 11; i++)
                assert_verdict(feed(&f, 5 * S, 100.0), DETECTOR_QUIET);
        f.t += 1 * S;
        assert_verdict(feed(&f, 5 * S, 100.0), DETECTOR_QUIET);
        assert_true(detector_run_length(d) == 5 * S);
        assert_true(d->run_start == f.t - 5 * S);
        for (unsigned i = 0; i < 10; i++)
                assert_verdict(feed(&f, 5 * S, 100.0), DETECTOR_QUIET);
        assert_verdict(feed(&f, 5 * S, 100.0), DETECTOR_BREACH);

        /* While breached, a gap does not clear; the run restarts. */
        f.t += 30 * S;
        assert_verdict(feed(&f, 5 * S, 100.0), DETECTOR_OVER);
        assert_true(detector_run_length(d) == 5 * S);
        /* A cool sample after the gap ends the run but not the breach. */
        f.t += 5 * S;
        assert_verdict(feed(&f, 5 * S, 75.0), DETECTOR_OVER);
        assert_true(detector_run_length(d) == 0);
        f.t += 5 * S;
        assert_verdict(feed(&f, 5 * S, 5.0), DETECTOR_CLEARED);

        /* A skipped sample: garbage is not fed, the next one sees the gap. */
        for (unsigned i = 0; i < 6; i++)
                assert_verdict(feed(&f, 5 * S, 100.0), DETECTOR_QUIET);
        assert_verdict(detector_feed(d, f.t, f.t, 100.0), DETECTOR_QUIET);           /* empty */
        assert_verdict(detector_feed(d, f.t, f.t - 1, 100.0), DETECTOR_QUIET);       /* inverted */
        assert_verdict(detector_feed(d, f.t, f.t + 5 * S, NAN), DETECTOR_QUIET);     /* no number */
        assert_true(d->last_end == f.t);
        assert_true(detector_run_length(d) == 30 * S);
        f.t += 5 * S;
        for (unsigned i = 0; i < 11; i++)
                assert_verdict(feed(&f, 5 * S, 100.0), DETECTOR_QUIET);
        assert_verdict(feed(&f, 5 * S, 100.0), DETECTOR_BREACH);
        /* Ignored samples keep an existing breach. */
        assert_verdict(detector_feed(d, f.t, f.t, 0.0), DETECTOR_OVER);

        /* The clock going back overlaps history: forget it. */
        detector_reset(d);
        f = feeder(d);
        f.t = 20000 * S;
        for (unsigned i = 0; i < 11; i++)
                assert_verdict(feed(&f, 5 * S, 100.0), DETECTOR_QUIET);
        f.t -= 30 * S;
        assert_verdict(feed(&f, 5 * S, 100.0), DETECTOR_QUIET);
        assert_true(detector_run_length(d) == 5 * S);
        assert_int_equal(d->ring_len, 1);
        assert_double_eq(detector_window_pct(d), 100.0);
}

static void test_window_pct(void **state) {
        Detector *d = *state;

        /* Unequal intervals: 10 s at 100 %, 5 s at 40 %, 30 s at 10 %. */
        assert_verdict(detector_feed(d, T0, T0 + 10 * S, 100.0), DETECTOR_QUIET);
        assert_double_eq(detector_window_pct(d), 100.0);
        assert_verdict(detector_feed(d, T0 + 10 * S, T0 + 15 * S, 40.0), DETECTOR_QUIET);
        assert_double_eq(detector_window_pct(d), (1000.0 + 200.0) / 15.0);
        assert_verdict(detector_feed(d, T0 + 15 * S, T0 + 45 * S, 10.0), DETECTOR_QUIET);
        assert_double_eq(detector_window_pct(d), (1000.0 + 200.0 + 300.0) / 45.0);

        /* 25 s at 0 %: the window is [T0+10, T0+70], the first sample drops out. */
        assert_verdict(detector_feed(d, T0 + 45 * S, T0 + 70 * S, 0.0), DETECTOR_QUIET);
        assert_double_eq(detector_window_pct(d), (200.0 + 300.0) / 60.0);

        /* 3 s at 100 %: [T0+13, T0+73] keeps 2 s of the 40 % sample. */
        assert_verdict(detector_feed(d, T0 + 70 * S, T0 + 73 * S, 100.0), DETECTOR_QUIET);
        assert_double_eq(detector_window_pct(d), (2.0 * 40.0 + 300.0 + 0.0 + 300.0) / 60.0);

        /* Time in a gap is unknown, not idle: it weighs nothing. */
        detector_done(d);
        assert_int_equal(detector_init(d, 90.0, 70.0, 60 * S, 5 * S), 0);
        assert_true(isnan(detector_window_pct(d)));
        assert_verdict(detector_feed(d, T0, T0 + 10 * S, 100.0), DETECTOR_QUIET);
        assert_verdict(detector_feed(d, T0 + 20 * S, T0 + 30 * S, 0.0), DETECTOR_QUIET);
        assert_double_eq(detector_window_pct(d), 50.0);

        /* Values out of range are clamped. */
        assert_verdict(detector_feed(d, T0 + 30 * S, T0 + 40 * S, 150.0), DETECTOR_QUIET);
        assert_verdict(detector_feed(d, T0 + 40 * S, T0 + 50 * S, -5.0), DETECTOR_QUIET);
        assert_double_eq(detector_window_pct(d), 50.0);
        assert_double_eq(d->last_busy, 0.0);
}

static void test_reset(void **state) {
        Detector *d = *state;
        Feeder f = feeder(d);

        breach(&f);
        detector_reset(d);
        assert_false(d->breached);
        assert_true(d->run_start == USEC_INFINITY);
        /* The samples stay: status keeps showing the recent average. */
        assert_double_eq(detector_window_pct(d), 100.0);
        assert_true(detector_run_length(d) == 0);
        assert_double_eq(d->threshold, 90.0);

        /* Still hot after a reset: a whole new window is needed, and no
         * "cleared" for a breach that was forgotten. */
        for (unsigned i = 0; i < 11; i++)
                assert_verdict(feed(&f, 5 * S, 100.0), DETECTOR_QUIET);
        assert_verdict(feed(&f, 5 * S, 100.0), DETECTOR_BREACH);
        detector_reset(d);
        assert_verdict(feed(&f, 5 * S, 0.0), DETECTOR_QUIET);
}

static void test_reconfigure(void **state) {
        Detector *d = *state;
        Feeder f = feeder(d);
        Detector before;

        /* 35 s hot at 85 %, under the threshold of 90: nothing. */
        for (unsigned i = 0; i < 7; i++)
                assert_verdict(feed(&f, 5 * S, 85.0), DETECTOR_QUIET);

        /* Bad values are refused and change nothing. */
        memcpy(&before, d, sizeof(before));
        assert_int_equal(detector_reconfigure(d, 80.0, 85.0, 30 * S, 5 * S), -EINVAL);
        assert_int_equal(detector_reconfigure(d, 80.0, 50.0, 0, 5 * S), -EINVAL);
        assert_memory_equal(d, &before, sizeof(before));

        /* A shorter window fits the ring: history is kept. */
        assert_int_equal(detector_reconfigure(d, 80.0, 50.0, 30 * S, 5 * S), 0);
        assert_int_equal(d->ring_size, 14);
        assert_int_equal(d->ring_len, 7);
        assert_double_eq(detector_window_pct(d), 85.0);
        /* The run so far was cool under the old threshold; under the new
         * one the next 30 s decide. */
        for (unsigned i = 0; i < 5; i++)
                assert_verdict(feed(&f, 5 * S, 85.0), DETECTOR_QUIET);
        assert_verdict(feed(&f, 5 * S, 85.0), DETECTOR_BREACH);

        /* Breached: a new clear_below applies to the next sample, the
         * breach is kept. */
        assert_int_equal(detector_reconfigure(d, 95.0, 60.0, 30 * S, 5 * S), 0);
        assert_true(d->breached);
        assert_verdict(feed(&f, 5 * S, 65.0), DETECTOR_OVER);
        assert_verdict(feed(&f, 5 * S, 59.0), DETECTOR_CLEARED);

        /* Same size ring, shorter interval: fits, kept. */
        assert_int_equal(detector_reconfigure(d, 95.0, 60.0, 24 * S, 2 * S), 0);
        assert_int_equal(d->ring_size, 14);
        assert_true(d->last_end != 0);

        /* A window the ring cannot hold: the ring grows and keeps the
         * history, the run and the breach (a reload forgets nothing). */
        for (unsigned i = 0; i < 3; i++)
                assert_verdict(feed(&f, 5 * S, 100.0), DETECTOR_QUIET);
        usec_t run = detector_run_length(d);
        size_t len = d->ring_len;
        assert_true(run == 15 * S);
        assert_int_equal(detector_reconfigure(d, 90.0, 70.0, 300 * S, 5 * S), 0);
        assert_int_equal(d->ring_size, 62);
        assert_int_equal(d->ring_len, len);
        assert_true(detector_run_length(d) == run);
        /* The run goes on under the new, longer window: 15 s done, 285 s to go. */
        for (unsigned i = 0; i < 56; i++)
                assert_verdict(feed(&f, 5 * S, 100.0), DETECTOR_QUIET);
        assert_verdict(feed(&f, 5 * S, 100.0), DETECTOR_BREACH);
        assert_double_eq(detector_window_pct(d), 100.0);

        /* A breach survives a reload that grows the ring. */
        assert_int_equal(detector_reconfigure(d, 90.0, 70.0, 900 * S, 5 * S), 0);
        assert_true(d->breached);
        assert_verdict(feed(&f, 5 * S, 100.0), DETECTOR_OVER);
        assert_verdict(feed(&f, 5 * S, 10.0), DETECTOR_CLEARED);
}

/* Brute force over the whole history, to check the ring against. */
static double reference_pct(const DetectorSample *h, size_t n, usec_t window) {
        usec_t last = h[n - 1].end, lo = last > window ? last - window : 0;
        double sum = 0, w = 0;

        for (size_t i = 0; i < n; i++) {
                usec_t from;

                if (h[i].end <= lo)
                        continue;
                from = MAX(h[i].start, lo);
                sum += (double) (h[i].end - from) * h[i].busy;
                w += (double) (h[i].end - from);
        }
        return sum / w;
}

static void run_long(Detector *d, size_t n, bool irregular, unsigned seed) {
        DetectorSample *h = calloc(n, sizeof(*h));
        usec_t t = T0, run_start = USEC_INFINITY;
        size_t breaches = 0, clears = 0;
        bool breached = false;

        assert_non_null(h);
        for (size_t i = 0; i < n; i++) {
                usec_t len = irregular ? (usec_t) (1 + rand_r(&seed) % 9) * S : 5 * S;
                /* Long hot and cool stretches, so breaches do happen. */
                double busy = (i / 20) % 3 == 0 ? 60.0 + (double) (rand_r(&seed) % 20)
                                                : 88.0 + (double) (rand_r(&seed) % 13);
                DetectorVerdict v, want;

                if (irregular && rand_r(&seed) % 50 == 0)
                        t += 3 * S; /* a gap now and then */
                bool gap = i == 0 || t != h[i - 1].end;
                bool hot = busy >= 90.0;

                h[i] = (DetectorSample) { .start = t, .end = t + len, .busy = busy };
                v = detector_feed(d, t, t + len, busy);

                if (!hot)
                        run_start = USEC_INFINITY;
                else if (gap || run_start == USEC_INFINITY)
                        run_start = t;
                if (breached)
                        want = busy < 70.0 ? DETECTOR_CLEARED : DETECTOR_OVER;
                else
                        want = run_start != USEC_INFINITY && t + len - run_start >= 60 * S ? DETECTOR_BREACH
                                                                                         : DETECTOR_QUIET;
                breached = want == DETECTOR_BREACH || want == DETECTOR_OVER;
                breaches += want == DETECTOR_BREACH;
                clears += want == DETECTOR_CLEARED;

                assert_verdict(v, want);
                assert_double_eq(detector_window_pct(d), reference_pct(h, i + 1, 60 * S));
                t += len;
        }
        assert_true(breaches > 10);
        assert_true(clears > 10);
        free(h);
}

static void test_ring_wraps(void **state) {
        Detector *d = *state;

        run_long(d, 10000, false, 1);
        /* Regular intervals never need more than window / interval + 2. */
        assert_int_equal(d->ring_size, 14);
        assert_int_equal(d->ring_len, 14);
}

static void test_ring_irregular(void **state) {
        Detector *d = *state;

        /* Intervals of 1..9 s against a ring sized for 5 s: it grows
         * rather than lose part of the window. */
        run_long(d, 10000, true, 7);
        assert_true(d->ring_size > 14);
        assert_true(d->ring_size <= 128);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_init),
                cmocka_unit_test_setup_teardown(test_spikes_never_fire, setup, teardown),
                cmocka_unit_test_setup_teardown(test_sustained_breach_at_window, setup, teardown),
                cmocka_unit_test_setup_teardown(test_breach_uneven_intervals, setup, teardown),
                cmocka_unit_test(test_timer_jitter),
                cmocka_unit_test_setup_teardown(test_hysteresis, setup, teardown),
                cmocka_unit_test(test_no_hysteresis),
                cmocka_unit_test_setup_teardown(test_gap_restarts_run, setup, teardown),
                cmocka_unit_test_setup_teardown(test_window_pct, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reset, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reconfigure, setup, teardown),
                cmocka_unit_test_setup_teardown(test_ring_wraps, setup, teardown),
                cmocka_unit_test_setup_teardown(test_cool_window, setup, teardown),
                cmocka_unit_test_setup_teardown(test_ring_irregular, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
