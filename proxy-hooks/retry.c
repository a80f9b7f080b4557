/* monkey-proxy-sync's clock and backoff: see retry.h. */
#include <time.h>
#include <unistd.h>

#include "retry.h"

usec_t retry_now(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (usec_t) ts.tv_sec * USEC_PER_SEC + (usec_t) ts.tv_nsec / 1000;
}

void retry_seed(void) {
        srandom((unsigned) (retry_now() ^ (usec_t) getpid()));
}

/* Capped exponential backoff with +-25% jitter, so a fleet of syncers does
 * not reconnect in lockstep after a Redis restart. */
usec_t retry_backoff(unsigned failures, usec_t cap) {
        usec_t d = RETRY_BACKOFF_MIN_USEC;
        for (unsigned i = 1; i < failures && d < cap; i++)
                d *= 2;
        d = MIN(d, cap);
        usec_t j = d / 4;
        if (j > 0)
                d = d - j + (usec_t) random() % (2 * j + 1);
        return d;
}
