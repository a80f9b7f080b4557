/* The fixtures' user program: burns CPU in a short call chain for about
 * a second. Built two ways (tests/unit/data/perf/README): -O2 -g with
 * frame pointers for `perf script --inline` (hot_add is inlined into
 * hot_loop), and -O2 -fomit-frame-pointer stripped for [unknown] frames.
 * With an argument, the process renames itself (prctl), for a comm with
 * spaces. */
#include <stdint.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <time.h>

static volatile uint64_t sink;

static inline __attribute__((always_inline)) uint64_t hot_add(uint64_t x, uint64_t i) {
        /* a chain of dependent steps: most samples land in here */
        for (int k = 0; k < 64; k++) {
                x ^= x >> 13;
                x *= 2862933555777941757ULL;
        }
        return x + i;
}

__attribute__((noinline)) static uint64_t hot_loop(uint64_t n) {
        uint64_t x = 1;

        for (uint64_t i = 0; i < n; i++) {
                x = hot_add(x, i);
                sink = x;
        }
        return x;
}

__attribute__((noinline)) static void work(void) {
        struct timespec start, now;

        clock_gettime(CLOCK_MONOTONIC, &start);
        do {
                hot_loop(100000);
                clock_gettime(CLOCK_MONOTONIC, &now);
        } while (now.tv_sec - start.tv_sec < 1);
}

int main(int argc, char **argv) {
        if (argc > 1)
                prctl(PR_SET_NAME, argv[1], 0, 0, 0);
        work();
        printf("%llu\n", (unsigned long long) sink);
        return 0;
}
