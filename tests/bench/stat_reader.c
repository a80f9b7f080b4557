/* stat_reader: the physical floor for one CPU sample, to compare monkeyd
 * against (tests/bench/sample-cost). It does the agent's job minimally: one
 * kept-open fd on /proc/stat, one pread from offset 0 per sample, parse the
 * aggregate "cpu " line into its 10 counters, busy % against the previous
 * sample. Nothing else: no allocation, no second read to EOF, no per-CPU
 * line count, no detector.
 *
 *   stat_reader --samples N [--path P]
 *       N samples back to back, then print the last busy %. For
 *       valgrind --tool=callgrind --toggle-collect=stat_sample.
 *   stat_reader --interval MS --seconds S [--path P]
 *       one sample every MS ms for S seconds (clock_nanosleep on an absolute
 *       CLOCK_MONOTONIC deadline), for a footprint comparison with monkeyd.
 *
 * Both modes end with one JSON line on stdout: samples, last busy, and the
 * process's own VmHWM/VmRSS/RssAnon (kB) read from /proc/self/status. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NFIELDS 10
#define SAMPLES_MAX 100000000UL
#define SECONDS_MAX 3600UL
#define INTERVAL_MS_MAX 3600000UL

typedef struct Reader {
        int fd;
        bool have_prev;
        uint64_t prev_busy, prev_total;
        double busy; /* last busy %, -1 before the second sample */
        /* The aggregate line is the first one and is < 200 bytes; 4 KiB
         * also holds all of /proc/stat on small machines, as the agent's
         * starting buffer does, so the kernel's copy is comparable. */
        char buf[4096];
} Reader;

/* One sample: the unit callgrind measures. noinline and noclone so
 * --toggle-collect finds it under this exact name (GCC would otherwise emit
 * stat_sample.constprop.0 for the one static Reader). Returns 0 or a
 * negative errno. */
__attribute__((noinline, noclone)) static int stat_sample(Reader *r) {
        uint64_t v[NFIELDS] = { 0 };
        uint64_t busy, total;
        const char *p;
        unsigned k;
        ssize_t n;

        /* One byte kept for a NUL sentinel: neither blank nor digit, it
         * stops every scan below without end-of-buffer tests. */
        n = pread(r->fd, r->buf, sizeof r->buf - 1, 0);
        if (n < 0)
                return -errno;
        r->buf[n] = '\0';
        if (n < 5 || memcmp(r->buf, "cpu ", 4) != 0)
                return -EBADMSG;
        p = r->buf + 4;

        for (k = 0; k < NFIELDS; k++) {
                const char *start;
                uint64_t x = 0;
                unsigned d;

                while (*p == ' ')
                        p++;
                start = p;
                while ((d = (unsigned) (unsigned char) *p - '0') <= 9) {
                        x = x * 10 + d;
                        p++;
                }
                if (p == start)
                        break;
                if (p - start > 19) /* 19 digits always fit in 64 bits */
                        return -ERANGE;
                v[k] = x;
        }
        /* A line cut by the read is not trusted: after the last number
         * comes '\n' (or, on a kernel with more fields, a blank). */
        if (k < 4 || (*p != '\n' && !(k == NFIELDS && *p == ' ')))
                return -EBADMSG;

        /* As the agent counts: busy = user+nice+system+irq+softirq; total
         * adds idle, iowait and steal (guest is inside user/nice). */
        busy = v[0] + v[1] + v[2] + v[5] + v[6];
        total = busy + v[3] + v[4] + v[7];
        if (r->have_prev && total > r->prev_total && busy >= r->prev_busy)
                r->busy = (double) (busy - r->prev_busy) * 100.0 / (double) (total - r->prev_total);
        r->prev_busy = busy;
        r->prev_total = total;
        r->have_prev = true;
        return 0;
}

static int parse_ulong(const char *s, unsigned long max, unsigned long *ret) {
        char *e = NULL;
        unsigned long v;

        errno = 0;
        v = strtoul(s, &e, 10);
        if (errno != 0 || !e || e == s || *e != '\0' || s[0] == '-' || v == 0 || v > max)
                return -EINVAL;
        *ret = v;
        return 0;
}

/* VmHWM, VmRSS, RssAnon of this process in kB, 0 when absent. */
static void self_memory(unsigned long *hwm, unsigned long *rss, unsigned long *anon) {
        char line[256];
        FILE *f = fopen("/proc/self/status", "re");

        *hwm = *rss = *anon = 0;
        if (!f)
                return;
        while (fgets(line, sizeof line, f)) {
                unsigned long *dst = NULL;
                size_t skip = 0;

                if (strncmp(line, "VmHWM:", 6) == 0)
                        dst = hwm, skip = 6;
                else if (strncmp(line, "VmRSS:", 6) == 0)
                        dst = rss, skip = 6;
                else if (strncmp(line, "RssAnon:", 8) == 0)
                        dst = anon, skip = 8;
                if (dst)
                        *dst = strtoul(line + skip, NULL, 10);
        }
        fclose(f);
}

static void timespec_add_ms(struct timespec *t, unsigned long ms) {
        t->tv_sec += (time_t) (ms / 1000);
        t->tv_nsec += (long) (ms % 1000) * 1000000L;
        if (t->tv_nsec >= 1000000000L) {
                t->tv_sec++;
                t->tv_nsec -= 1000000000L;
        }
}

static void usage(FILE *f) {
        fprintf(f, "Usage: stat_reader --samples N [--path P]\n"
                   "       stat_reader --interval MS --seconds S [--path P]\n");
}

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "samples", required_argument, NULL, 'n' },
                { "interval", required_argument, NULL, 'i' },
                { "seconds", required_argument, NULL, 's' },
                { "path", required_argument, NULL, 'p' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        unsigned long samples = 0, interval_ms = 0, seconds = 0, done = 0, errors = 0;
        unsigned long hwm, rss, anon;
        const char *path = "/proc/stat";
        static Reader r; /* static: the 4 KiB buffer is not on the stack */
        int c, k = 0;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'n': k = parse_ulong(optarg, SAMPLES_MAX, &samples); break;
                case 'i': k = parse_ulong(optarg, INTERVAL_MS_MAX, &interval_ms); break;
                case 's': k = parse_ulong(optarg, SECONDS_MAX, &seconds); break;
                case 'p': path = optarg; break;
                case 'h': usage(stdout); return 0;
                default: usage(stderr); return 2;
                }
        if (k < 0 || optind < argc || (samples > 0) == (interval_ms > 0 || seconds > 0) ||
            (interval_ms > 0) != (seconds > 0)) {
                usage(stderr);
                return 2;
        }

        r.busy = -1.0;
        r.fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (r.fd < 0) {
                fprintf(stderr, "stat_reader: %s: %s\n", path, strerror(errno));
                return 1;
        }

        if (samples > 0) {
                for (; done < samples; done++)
                        if (stat_sample(&r) < 0)
                                errors++;
        } else {
                struct timespec next, stop;
                clock_gettime(CLOCK_MONOTONIC, &next);
                stop = next;
                stop.tv_sec += (time_t) seconds;
                for (;;) {
                        if (stat_sample(&r) < 0)
                                errors++;
                        done++;
                        timespec_add_ms(&next, interval_ms);
                        if (next.tv_sec > stop.tv_sec || (next.tv_sec == stop.tv_sec && next.tv_nsec > stop.tv_nsec))
                                break;
                        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR)
                                ;
                }
        }
        close(r.fd);

        self_memory(&hwm, &rss, &anon);
        printf("{\"samples\": %lu, \"errors\": %lu, \"busy_pct\": %.2f, \"vmhwm_kb\": %lu, \"vmrss_kb\": %lu, "
               "\"rssanon_kb\": %lu}\n",
               done, errors, r.busy, hwm, rss, anon);
        return errors == done ? 1 : 0;
}
