/* A fixed-period tick on its own timerfd, for the CPU sampler. sd-event's
 * timer sources share one timerfd per clock and re-arm it with
 * timerfd_settime whenever the earliest deadline moves, which for a
 * sampler is every tick; a periodic timerfd (it_interval) is armed once
 * and the kernel keeps the phase, so a tick costs one read. Missed ticks
 * (suspend, SIGSTOP, a long callback) fire once, not as a burst. */
#pragma once

#include <systemd/sd-event.h>

#include "macro.h"

typedef struct Ticker Ticker;

/* Called once per wake-up; `missed` is how many ticks passed unseen
 * (0 normally). `at` is when the latest tick was due on the ticker's
 * clock: the kernel's periodic grid, so consecutive calls are exactly
 * (missed + 1) periods apart; the wake-up itself is later by scheduling
 * latency only. */
typedef void (*ticker_handler_t)(Ticker *t, usec_t at, uint64_t missed, void *userdata);

/* First tick at `first` (absolute, on `clock`), then every `period`. */
int ticker_new(sd_event *e, clockid_t clock, usec_t first, usec_t period, ticker_handler_t handler,
               void *userdata, Ticker **ret);
Ticker *ticker_free(Ticker *t);
static inline void ticker_freep(Ticker **t) {
        ticker_free(*t);
}

/* A new phase and period: the next tick at `first`. */
int ticker_set(Ticker *t, usec_t first, usec_t period);
/* Stops ticking; the source stays until ticker_free. */
int ticker_stop(Ticker *t);
