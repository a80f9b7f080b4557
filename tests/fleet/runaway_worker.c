/* The fleet's culprit: the busy "app" a simulated host's overload starts,
 * so the agent's top-process evidence (read from the real /proc) names
 * something ("runaway-worker") and its CPU profile has a call tree worth
 * reading: serve_forever -> handle_request -> parse_headers,
 * checksum_body, render_template, and with --work both also
 * compress_response (the "regression" the demo's differential flame graph
 * shows as new). Built at -O0 with frame pointers (tests/meson.build) so perf's -g
 * walk sees every frame. Niced to 19 so the machine running the fleet
 * stays responsive, and bounded: it ends by itself after --seconds (at
 * most 120). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))

static volatile uint64_t sink;
static uint8_t body[4096];

NOINLINE static uint32_t mix_round(uint32_t a, uint32_t b) {
        for (int i = 0; i < 16; i++)
                a = (a << 5 | a >> 27) ^ (b + 0x9e3779b9u * (uint32_t) i);
        return a;
}

NOINLINE static void checksum_body(void) {
        uint32_t h = 0;

        for (size_t i = 0; i < sizeof body; i += 4)
                h = mix_round(h, body[i]);
        sink += h;
}

NOINLINE static size_t header_length(const uint8_t *p, size_t n) {
        size_t i = 0;

        while (i < n && p[i] != 0xff)
                i++;
        return i;
}

NOINLINE static void parse_headers(void) {
        for (int k = 0; k < 8; k++)
                sink += header_length(body + k * 64, 512);
}

NOINLINE static void escape_html(void) {
        for (size_t i = 0; i < sizeof body; i++)
                if (body[i] == '<' || body[i] == '&')
                        sink++;
}

NOINLINE static void render_template(void) {
        for (int k = 0; k < 4; k++)
                escape_html();
}

NOINLINE static void deflate_block(void) {
        uint32_t crc = ~0u;

        for (size_t i = 0; i < sizeof body; i++) {
                crc ^= body[i];
                for (int b = 0; b < 8; b++)
                        crc = crc >> 1 ^ (0xedb88320u & -(crc & 1));
        }
        sink += crc;
}

NOINLINE static void compress_response(void) {
        deflate_block();
}

NOINLINE static void handle_request(int both) {
        parse_headers();
        checksum_body();
        render_template();
        if (both)
                compress_response();
}

NOINLINE static void serve_forever(double seconds, int both) {
        struct timespec now, end;

        clock_gettime(CLOCK_MONOTONIC, &end);
        end.tv_sec += (time_t) seconds;
        do {
                for (int i = 0; i < 50; i++)
                        handle_request(both);
                clock_gettime(CLOCK_MONOTONIC, &now);
        } while (now.tv_sec < end.tv_sec || (now.tv_sec == end.tv_sec && now.tv_nsec < end.tv_nsec));
}

int main(int argc, char **argv) {
        double seconds = 30;
        int both = 0;

        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
                        seconds = strtod(argv[++i], NULL);
                else if (strcmp(argv[i], "--work") == 0 && i + 1 < argc) {
                        i++;
                        if (strcmp(argv[i], "both") == 0)
                                both = 1;
                        else if (strcmp(argv[i], "checksum") != 0) {
                                fprintf(stderr, "--work checksum|both\n");
                                return 2;
                        }
                } else if (strcmp(argv[i], "--host") == 0 && i + 1 < argc)
                        i++; /* which simulated host it burns on: for ps only */
                else {
                        fprintf(stderr, "usage: runaway_worker --host NAME [--seconds N] [--work checksum|both]\n");
                        return 2;
                }
        }
        if (!(seconds > 0) || seconds > 120)
                seconds = 120;
        for (size_t i = 0; i < sizeof body; i++)
                body[i] = (uint8_t) (i * 31 + 7);
        (void) prctl(PR_SET_NAME, "runaway-worker", 0, 0, 0); /* the name top and the evidence show */
        if (nice(19) < 0)
                perror("nice");
        serve_forever(seconds, both);
        return 0;
}
