/* When monkey-proxy-sync tries again: the schedule of its sync and
 * subscriber retries, base/backoff.h's with its own bounds. Its clock is
 * base/clock.h's CLOCK_MONOTONIC, the clock of its sd-event timers. */
#pragma once

#include "macro.h"

#define RETRY_BACKOFF_MIN_USEC (100 * USEC_PER_MSEC)
#define RETRY_BACKOFF_MAX_USEC (5 * USEC_PER_SEC)
/* Run just after a lease or a grace has expired, not just before. */
#define RETRY_SLACK_USEC (50 * USEC_PER_MSEC)

/* The delay before attempt `failures` + 1: from RETRY_BACKOFF_MIN_USEC,
 * doubled per failure after the first up to cap, the upper half random. */
usec_t retry_backoff(unsigned failures, usec_t cap);
