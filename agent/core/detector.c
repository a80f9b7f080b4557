#include <math.h>

#include "detector.h"

#define RING_SIZE_MIN ((size_t) 4)
/* 6 MiB of samples: a day at one sample a second fits, a typo does not. */
#define RING_SIZE_MAX ((size_t) 1 << 18)

static const char *const verdict_table[] = {
        [DETECTOR_QUIET] = "quiet",
        [DETECTOR_BREACH] = "breach",
        [DETECTOR_OVER] = "over",
        [DETECTOR_CLEARED] = "cleared",
};

const char *detector_verdict_to_string(DetectorVerdict v) {
        if ((size_t) v >= ELEMENTSOF(verdict_table))
                return NULL;
        return verdict_table[v];
}

/* A tenth of the interval, at most 50 ms: jitter, never a whole sample. */
static usec_t window_slack(usec_t interval) {
        return MIN(interval / 10, 50 * USEC_PER_MSEC);
}

static int ring_size_for(double threshold, double clear_below, usec_t window, usec_t interval, size_t *ret) {
        usec_t n;

        if (!isfinite(threshold) || threshold <= 0.0 || threshold > 100.0)
                return -EINVAL;
        if (!isfinite(clear_below) || clear_below < 0.0 || clear_below > threshold)
                return -EINVAL;
        if (window == 0 || window == USEC_INFINITY || interval == 0 || interval == USEC_INFINITY)
                return -EINVAL;

        n = window / interval + 2;
        if (n > RING_SIZE_MAX)
                return -EINVAL;
        *ret = MAX((size_t) n, RING_SIZE_MIN);
        return 0;
}

int detector_init(Detector *d, double threshold, double clear_below, usec_t window, usec_t interval) {
        DetectorSample *ring;
        size_t size;
        int r;

        if (!d)
                return -EINVAL;
        r = ring_size_for(threshold, clear_below, window, interval, &size);
        if (r < 0)
                return r;

        ring = calloc(size, sizeof(*ring));
        if (!ring)
                return -ENOMEM;

        *d = (Detector) {
                .threshold = threshold,
                .clear_below = clear_below,
                .window = window,
                .slack = window_slack(interval),
                .run_start = USEC_INFINITY,
                .cool_start = USEC_INFINITY,
                .last_end = 0,
                .last_busy = NAN,
                .ring = ring,
                .ring_size = size,
        };
        return 0;
}

void detector_done(Detector *d) {
        if (!d)
                return;
        free(d->ring);
        d->ring = NULL;
        d->ring_size = d->ring_len = d->ring_head = 0;
}

void detector_reset(Detector *d) {
        if (!d)
                return;
        /* The samples stay: window_pct keeps describing the recent past,
         * only the verdict starts over and needs a whole new window. */
        d->breached = false;
        d->run_start = USEC_INFINITY;
}

static size_t ring_index(const Detector *d, size_t age);

int detector_reconfigure(Detector *d, double threshold, double clear_below, usec_t window, usec_t interval) {
        DetectorSample *ring;
        size_t size, n = 0;
        int r;

        if (!d)
                return -EINVAL;
        r = ring_size_for(threshold, clear_below, window, interval, &size);
        if (r < 0)
                return r;

        if (size > d->ring_size) {
                /* Move the history into the bigger ring, oldest first, so a
                 * reload never forgets an ongoing breach nor its run. */
                ring = calloc(size, sizeof(*ring));
                if (!ring)
                        return -ENOMEM;
                for (size_t age = d->ring_len; age > 0; age--)
                        ring[n++] = d->ring[ring_index(d, age - 1)];
                free(d->ring);
                d->ring = ring;
                d->ring_size = size;
                d->ring_len = n;
                d->ring_head = n % size;
        }
        /* The new rule applies from the next sample. */
        d->threshold = threshold;
        d->clear_below = clear_below;
        d->window = window;
        d->slack = window_slack(interval);
        return 0;
}

static size_t ring_index(const Detector *d, size_t age) {
        /* age 0 is the newest sample */
        return (d->ring_head + d->ring_size - 1 - age) % d->ring_size;
}

/* Samples shorter than `interval` (a late timer, a reload) would make a
 * full ring cover less than the window: grow rather than forget. */
static void ring_maybe_grow(Detector *d, usec_t new_end) {
        const DetectorSample *oldest;
        DetectorSample *ring;
        size_t size;

        if (d->ring_len < d->ring_size || d->ring_size >= RING_SIZE_MAX)
                return;
        oldest = &d->ring[d->ring_head];
        if (new_end > d->window && oldest->end <= new_end - d->window)
                return;

        size = MIN(d->ring_size * 2, RING_SIZE_MAX);
        ring = calloc(size, sizeof(*ring));
        if (!ring)
                return; /* overwrite the oldest: window_pct then covers less */
        for (size_t i = 0; i < d->ring_len; i++)
                ring[i] = d->ring[ring_index(d, d->ring_len - 1 - i)];
        free(d->ring);
        d->ring = ring;
        d->ring_head = d->ring_len % size;
        d->ring_size = size;
}

static void ring_push(Detector *d, usec_t start, usec_t end, double busy) {
        ring_maybe_grow(d, end);
        d->ring[d->ring_head] = (DetectorSample) { .start = start, .end = end, .busy = busy };
        d->ring_head = (d->ring_head + 1) % d->ring_size;
        if (d->ring_len < d->ring_size)
                d->ring_len++;
}

DetectorVerdict detector_feed(Detector *d, usec_t start, usec_t end, double busy) {
        bool hot, gap;

        if (!d || !d->ring)
                return DETECTOR_QUIET;
        /* An empty or inverted interval, or no number, tells nothing;
         * the next sample will see a gap. */
        if (end <= start || end == USEC_INFINITY || isnan(busy))
                return d->breached ? DETECTOR_OVER : DETECTOR_QUIET;

        busy = MIN(MAX(busy, 0.0), 100.0);
        hot = busy >= d->threshold;
        gap = d->last_end == 0 || start != d->last_end;

        /* Overlapping an earlier sample: the clock went back, the history
         * no longer lines up with the new samples. */
        if (d->last_end != 0 && start < d->last_end)
                d->ring_len = d->ring_head = 0;

        if (!hot)
                d->run_start = USEC_INFINITY;
        else if (gap || d->run_start == USEC_INFINITY)
                d->run_start = start;
        if (busy >= d->clear_below)
                d->cool_start = USEC_INFINITY;
        else if (gap || d->cool_start == USEC_INFINITY)
                d->cool_start = start;

        ring_push(d, start, end, busy);
        d->last_end = end;
        d->last_busy = busy;

        if (d->breached) {
                if (busy < d->clear_below) {
                        d->breached = false;
                        return DETECTOR_CLEARED;
                }
                return DETECTOR_OVER;
        }

        if (d->run_start != USEC_INFINITY && end - d->run_start + d->slack >= d->window) {
                d->breached = true;
                return DETECTOR_BREACH;
        }
        return DETECTOR_QUIET;
}

double detector_window_pct(const Detector *d) {
        usec_t lo;
        double sum = 0.0, weight = 0.0;

        if (!d || d->ring_len == 0)
                return NAN;

        lo = d->last_end > d->window ? d->last_end - d->window : 0;
        for (size_t age = 0; age < d->ring_len; age++) {
                const DetectorSample *s = &d->ring[ring_index(d, age)];
                usec_t from;

                if (s->end <= lo)
                        break;
                from = MAX(s->start, lo);
                sum += (double) (s->end - from) * s->busy;
                weight += (double) (s->end - from);
        }

        return weight > 0.0 ? sum / weight : NAN;
}

usec_t detector_run_length(const Detector *d) {
        if (!d || d->run_start == USEC_INFINITY || d->last_end < d->run_start)
                return 0;
        return d->last_end - d->run_start;
}

usec_t detector_cool_length(const Detector *d) {
        if (!d || d->cool_start == USEC_INFINITY || d->last_end < d->cool_start)
                return 0;
        return d->last_end - d->cool_start;
}

bool detector_cooled(const Detector *d) {
        return d && detector_cool_length(d) + d->slack >= d->window && detector_cool_length(d) > 0;
}
