/* ticker.c: a periodic timerfd as an sd-event IO source. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <time.h>

#include "ticker.h"

#define MAX_TICKS 64

typedef struct Run {
        sd_event *event;
        usec_t at[MAX_TICKS];   /* what the ticker says */
        usec_t woke[MAX_TICKS]; /* the clock at the call */
        uint64_t missed[MAX_TICKS];
        unsigned n, stop_after;
        usec_t stall; /* the first handler call sleeps this long */
} Run;

static usec_t clock_now(void) {
        struct timespec ts;

        assert_int_equal(clock_gettime(CLOCK_BOOTTIME, &ts), 0);
        return (usec_t) ts.tv_sec * USEC_PER_SEC + (usec_t) ts.tv_nsec / 1000;
}

static void on_tick(Ticker *t, usec_t at, uint64_t missed, void *userdata) {
        Run *run = userdata;

        assert_true(run->n < MAX_TICKS);
        run->at[run->n] = at;
        run->woke[run->n] = clock_now();
        run->missed[run->n] = missed;
        run->n++;
        if (run->n == 1 && run->stall > 0) {
                struct timespec ts = { .tv_sec = 0, .tv_nsec = (long) run->stall * 1000L };
                nanosleep(&ts, NULL);
        }
        if (run->n >= run->stop_after)
                sd_event_exit(run->event, 0);
}

static usec_t now_boottime(sd_event *e) {
        usec_t now;

        assert_true(sd_event_now(e, CLOCK_BOOTTIME, &now) >= 0);
        return now;
}

/* Runs the loop with a safety timeout so a broken ticker fails, not hangs. */
static int on_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        fail_msg("the ticker did not tick in time");
        return 0;
}

static void run_loop(sd_event *e, usec_t limit) {
        sd_event_source *guard = NULL;

        assert_int_equal(sd_event_add_time_relative(e, &guard, CLOCK_MONOTONIC, limit, 0, on_timeout, NULL), 0);
        assert_int_equal(sd_event_loop(e), 0);
        sd_event_source_disable_unref(guard);
}

/* A new loop and a ticker starting one period from now, run until the
 * handler stops it; returns "now" at the start. */
static usec_t run_ticker(Run *run, usec_t period, sd_event **ret_event, Ticker **ret_ticker) {
        usec_t start;

        assert_int_equal(sd_event_new(ret_event), 0);
        run->event = *ret_event;
        start = now_boottime(*ret_event);
        assert_int_equal(ticker_new(*ret_event, CLOCK_BOOTTIME, start + period, period, on_tick, run, ret_ticker), 0);
        run_loop(*ret_event, 5 * USEC_PER_SEC);
        return start;
}

static void test_ticker_period(void **state) {
        sd_event *e = NULL;
        Ticker *t = NULL;
        Run run = { .stop_after = 10 };
        usec_t start, period = 20 * USEC_PER_MSEC;

        start = run_ticker(&run, period, &e, &t);

        assert_int_equal(run.n, 10);
        /* Tick k stands for start + (k+1) * period exactly, and the call
         * comes after it, late by scheduling only. */
        for (unsigned k = 0; k < run.n; k++) {
                usec_t due = start + (k + 1) * period;
                assert_int_equal(run.at[k], due);
                assert_true(run.woke[k] >= due);
                assert_true(run.woke[k] - due < 15 * USEC_PER_MSEC);
                assert_int_equal(run.missed[k], 0);
        }

        ticker_free(t);
        sd_event_unref(e);
}

/* A stall longer than two periods: one call reports the missed ticks,
 * no burst of calls follows, and the phase is kept. */
static void test_ticker_missed(void **state) {
        sd_event *e = NULL;
        Ticker *t = NULL;
        Run run = { .stop_after = 3, .stall = 75 * USEC_PER_MSEC };
        usec_t start, period = 20 * USEC_PER_MSEC;

        start = run_ticker(&run, period, &e, &t);
        assert_int_equal(run.at[0], start + period);

        assert_int_equal(run.n, 3);
        assert_int_equal(run.missed[0], 0);
        /* 75 ms of stall after the tick at 20 ms: ticks at 40, 60, 80 ms
         * fell in it; the call right after reports 2 missed (3 expired). */
        assert_true(run.missed[1] >= 2 && run.missed[1] <= 3);
        assert_int_equal(run.at[1], run.at[0] + (run.missed[1] + 1) * period);
        assert_true(run.woke[1] - run.woke[0] >= 75 * USEC_PER_MSEC);
        /* Then back on the original grid, not a burst. */
        assert_int_equal(run.missed[2], 0);
        assert_int_equal(run.at[2], run.at[1] + period);
        assert_true(run.woke[2] >= run.at[2]);
        assert_true(run.woke[2] - run.woke[1] <= period + 15 * USEC_PER_MSEC);

        ticker_free(t);
        sd_event_unref(e);
}

static void test_ticker_set_and_stop(void **state) {
        sd_event *e = NULL;
        Ticker *t = NULL;
        Run run = { .stop_after = 2 };
        usec_t start;

        assert_int_equal(sd_event_new(&e), 0);
        run.event = e;
        start = now_boottime(e);
        /* Armed an hour ahead, then moved: only the new setting counts. */
        assert_int_equal(ticker_new(e, CLOCK_BOOTTIME, start + USEC_PER_HOUR, USEC_PER_HOUR, on_tick, &run, &t), 0);
        assert_int_equal(ticker_set(t, start + 10 * USEC_PER_MSEC, 10 * USEC_PER_MSEC), 0);
        run_loop(e, 5 * USEC_PER_SEC);
        assert_int_equal(run.n, 2);
        assert_int_equal(run.at[0], start + 10 * USEC_PER_MSEC);
        assert_int_equal(run.at[1], start + 20 * USEC_PER_MSEC);

        ticker_free(t);
        sd_event_unref(e);

        /* Stopped before its first tick: 100 ms of loop see none. */
        assert_int_equal(sd_event_new(&e), 0);
        run = (Run) { .event = e, .stop_after = 1 };
        start = now_boottime(e);
        assert_int_equal(ticker_new(e, CLOCK_BOOTTIME, start + 10 * USEC_PER_MSEC, 10 * USEC_PER_MSEC, on_tick, &run,
                                    &t), 0);
        assert_int_equal(ticker_stop(t), 0);
        for (unsigned i = 0; i < 10; i++)
                assert_true(sd_event_run(e, 10 * USEC_PER_MSEC) >= 0);
        assert_int_equal(run.n, 0);

        /* Bad arguments. */
        assert_int_equal(ticker_set(t, start, 0), -EINVAL);
        assert_int_equal(ticker_new(e, CLOCK_BOOTTIME, start, 0, on_tick, &run, &t), -EINVAL);
        assert_int_equal(ticker_new(NULL, CLOCK_BOOTTIME, start, 1, on_tick, &run, &t), -EINVAL);
        assert_int_equal(ticker_stop(NULL), 0);
        assert_null(ticker_free(NULL));

        ticker_free(t);
        sd_event_unref(e);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_ticker_period),
                cmocka_unit_test(test_ticker_missed),
                cmocka_unit_test(test_ticker_set_and_stop),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
