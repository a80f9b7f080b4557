#include "backoff.h"

usec_t backoff_delay(usec_t min, usec_t max, unsigned doublings, uint64_t random) {
        usec_t d = MIN(min, max);

        for (unsigned i = 0; i < doublings && d < max; i++)
                d = d > max / 2 ? max : d * 2;
        return d / 2 + random % (d / 2 + 1);
}

usec_t jitter_spread(usec_t d, unsigned percent, uint64_t random) {
        unsigned p = MIN(percent, 100u);
        /* d * p / 100 without overflowing for any d */
        usec_t spread = d / 100 * p + d % 100 * p / 100, up;

        if (spread == 0)
                return d;
        spread = MIN(spread, (USEC_INFINITY - 1) / 2);
        up = random % (2 * spread + 1);
        /* saturate: a wrap would turn "much later" into "now" */
        return d - spread > USEC_INFINITY - 1 - up ? USEC_INFINITY - 1 : d - spread + up;
}
