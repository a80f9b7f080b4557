#include "random.h"

#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* splitmix64's finaliser: neighbouring inputs give unrelated outputs. */
static uint64_t mix64(uint64_t x) {
        x ^= x >> 30;
        x *= 0xbf58476d1ce4e5b9ULL;
        x ^= x >> 27;
        x *= 0x94d049bb133111ebULL;
        x ^= x >> 31;
        return x;
}

uint64_t random_u64(void) {
        uint64_t v = 0;
        struct timespec ts = {};

        if (getrandom(&v, sizeof v, GRND_NONBLOCK) == (ssize_t) sizeof v)
                return v;
        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return mix64((uint64_t) ts.tv_sec * 1000000000ULL + (uint64_t) ts.tv_nsec) ^
               mix64(((uint64_t) getpid() << 32) ^ (uint64_t) (uintptr_t) &v);
}
