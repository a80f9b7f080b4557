/* When monkey-proxy-sync tries again: its clock (CLOCK_MONOTONIC, the
 * clock of its sd-event timers) and the capped, jittered backoff of its
 * sync and subscriber retries. */
#pragma once

#include "macro.h"

#define RETRY_BACKOFF_MIN_USEC (100 * USEC_PER_MSEC)
#define RETRY_BACKOFF_MAX_USEC (5 * USEC_PER_SEC)
/* Run just after a lease or a grace has expired, not just before. */
#define RETRY_SLACK_USEC (50 * USEC_PER_MSEC)

usec_t retry_now(void);
/* Seeds the jitter, once at start. */
void retry_seed(void);
/* The delay before attempt `failures` + 1: from RETRY_BACKOFF_MIN_USEC,
 * doubled per failure up to cap, +-25% jitter. */
usec_t retry_backoff(unsigned failures, usec_t cap);
