/* A CPU burner with a call chain a profile can name: main -> burn_outer
 * -> burn_inner. Built by the evidence test
 * with frame pointers and no inlining so perf's -g walk sees each frame.
 * It stops by itself after the seconds given (default 60). */
#include <stdlib.h>
#include <time.h>

static volatile unsigned long sink;

__attribute__((noinline)) static void burn_inner(void) {
        for (unsigned long i = 0; i < 100000; i++)
                sink += i * i;
}

__attribute__((noinline)) static void burn_outer(void) {
        burn_inner();
}

int main(int argc, char **argv) {
        double seconds = argc > 1 ? strtod(argv[1], NULL) : 60;
        time_t end = time(NULL) + (time_t) (seconds > 0 && seconds < 3600 ? seconds : 60);

        while (time(NULL) < end)
                burn_outer();
        return 0;
}
