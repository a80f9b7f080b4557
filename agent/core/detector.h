/* The overload detector: the sustained-window rule with hysteresis. Pure:
 * it is fed (interval start, interval end, busy %) and keeps no clock.
 *
 * Rule: a breach is declared when every sample since the run started was
 * >= threshold and the run covers at least `window` (from the start of the
 * first hot interval to the end of the latest). Any sample below threshold
 * ends the run, so a spike shorter than the window never fires. Once
 * breached, the detector stays breached until a sample falls below
 * clear_below: values wobbling around the threshold do not flap.
 *
 * A gap (an interval whose start is not the previous interval's end, as
 * after a skipped garbage sample or a counter reset) restarts the run:
 * nothing is known about the gap.
 *
 * "Covers the window" allows the sampling timer's jitter (slack: a tenth
 * of the interval, at most 50 ms): with samples 1 s apart and a 3 s window,
 * three hot intervals that add up to 2.999 s are the window, not a reason
 * to wait one more interval. */
#pragma once

#include "macro.h"

typedef enum DetectorVerdict {
        DETECTOR_QUIET,    /* not breached, nothing changed */
        DETECTOR_BREACH,   /* just became breached */
        DETECTOR_OVER,     /* still breached */
        DETECTOR_CLEARED,  /* just cleared */
} DetectorVerdict;

typedef struct DetectorSample {
        usec_t start, end;
        double busy;
} DetectorSample;

typedef struct Detector {
        double threshold, clear_below;
        usec_t window;
        usec_t slack;       /* the timer jitter a window may fall short by */

        bool breached;
        usec_t run_start;   /* start of the current hot run, USEC_INFINITY when none */
        usec_t cool_start;  /* start of the current run below clear_below, USEC_INFINITY when none */
        usec_t last_end;    /* end of the last fed interval, 0 when none */
        double last_busy;

        /* Ring of recent samples covering at least `window`, for window_pct. */
        DetectorSample *ring;
        size_t ring_size, ring_len, ring_head;
} Detector;

/* `interval` sizes the ring (window / interval + 2 entries). */
int detector_init(Detector *d, double threshold, double clear_below, usec_t window, usec_t interval);
void detector_done(Detector *d);
/* New thresholds on reload: keeps the history, the run and the breach. */
int detector_reconfigure(Detector *d, double threshold, double clear_below, usec_t window, usec_t interval);

DetectorVerdict detector_feed(Detector *d, usec_t start, usec_t end, double busy);
/* Forget the run and the breach (after a remediation, on resume); the
 * samples stay for window_pct. */
void detector_reset(Detector *d);

/* Time-weighted mean busy % over the last `window` ending at the last
 * sample (or over what is known when less). NAN when no sample yet. */
double detector_window_pct(const Detector *d);
/* How long the current hot run has lasted, 0 when none. */
usec_t detector_run_length(const Detector *d);
/* How long the samples have stayed below clear_below without a gap, and
 * whether that covers a whole window (with the timer's slack): the rule
 * for a host whose remediation failed before it may rejoin. */
usec_t detector_cool_length(const Detector *d);
bool detector_cooled(const Detector *d);

const char *detector_verdict_to_string(DetectorVerdict v);
