/* The JIT fixture's program: copies a spin loop into an anonymous
 * executable page, names it in /tmp/perf-PID.map (perf's convention for
 * JIT symbols: "START SIZE name" in hex) and runs it for about a second
 * under `perf record -g`. The loop is x86-64 machine code. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* push rbp; mov rbp,rsp; mov rcx,rdi; 1: dec rcx; jnz 1b; pop rbp; ret
 * (a frame so perf's frame-pointer unwinder walks through it). */
static const uint8_t spin_code[] = {
        0x55, 0x48, 0x89, 0xe5, 0x48, 0x89, 0xf9, 0x48, 0xff, 0xc9, 0x75, 0xfb, 0x5d, 0xc3,
};

__attribute__((noinline)) static void run_jitted(void (*fn)(uint64_t)) {
        for (int i = 0; i < 4; i++)
                fn(300000000ULL);
}

int main(void) {
        char path[64];
        FILE *map;
        void *page;

        page = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (page == MAP_FAILED)
                return 1;
        memcpy(page, spin_code, sizeof spin_code);

        snprintf(path, sizeof path, "/tmp/perf-%d.map", (int) getpid());
        map = fopen(path, "we");
        if (!map)
                return 1;
        fprintf(map, "%lx %zx Interpreter::spin;loop<int>\n", (unsigned long) (uintptr_t) page, sizeof spin_code);
        fclose(map);

        run_jitted((void (*)(uint64_t)) page);
        return 0;
}
