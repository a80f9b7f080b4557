#include "clock.h"

#include <stdio.h>

usec_t clock_now(clockid_t clock) {
        struct timespec ts = {};

        /* Only an invalid clock id fails: a programming error, not a
         * condition to report; 0 is the honest answer then. */
        if (clock_gettime(clock, &ts) < 0)
                return 0;
        return (usec_t) ts.tv_sec * USEC_PER_SEC + (usec_t) ts.tv_nsec / 1000;
}

const char *format_iso8601(char *buf, size_t size, usec_t wall) {
        time_t t = (time_t) (wall / USEC_PER_SEC);
        struct tm tm;

        if (!gmtime_r(&t, &tm) || strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
                snprintf(buf, size, "?");
        return buf;
}
