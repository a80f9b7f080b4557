/* One random source for everything that needs spread, not secrecy: retry
 * jitter, heartbeat spread, temporary file names. Owns no state. */
#pragma once

#include <stdint.h>

/* 64 bits from getrandom(2) without blocking; before the kernel's pool is
 * ready (early boot) a mix of the monotonic clock, the pid and a stack
 * address instead, so two hosts booted together still differ. */
uint64_t random_u64(void);
