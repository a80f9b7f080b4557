/* One retry schedule for every client that retries (Slack, EC2, IMDS, the
 * pool, monkey-proxy-sync): capped exponential backoff with the upper half
 * of each step random, so a fleet that failed together does not retry
 * together. Pure: the random bits are an argument, so tests pin them. */
#pragma once

#include "macro.h"

/* The delay before retry number `doublings` + 1: `min` doubled that many
 * times, capped at `max`, then d/2 + random % (d/2 + 1). */
usec_t backoff_delay(usec_t min, usec_t max, unsigned doublings, uint64_t random);

/* d ± percent %, uniformly: periodic work (heartbeats, reminders) spread
 * so a fleet does not fire in lockstep. percent above 100 counts as 100. */
usec_t jitter_spread(usec_t d, unsigned percent, uint64_t random);
