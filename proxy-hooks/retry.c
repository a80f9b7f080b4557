/* monkey-proxy-sync's retry schedule: see retry.h. */
#include "retry.h"

#include "backoff.h"
#include "random.h"

usec_t retry_backoff(unsigned failures, usec_t cap) {
        return backoff_delay(RETRY_BACKOFF_MIN_USEC, cap, failures > 0 ? failures - 1 : 0, random_u64());
}
