/* cpu.c: /proc/stat parsing, utilisation arithmetic, the reader. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <sys/stat.h>
#include <time.h>

#include "cpu.h"

#define DATA_DIR SOURCE_ROOT "/tests/unit/data/cpu/"

#define assert_double_eq(a, b)                                                          \
        do {                                                                            \
                double _a = (a), _b = (b);                                              \
                if (!(fabs(_a - _b) <= 1e-9)) {                                         \
                        print_error("%s = %.12g, expected %.12g\n", #a, _a, _b);        \
                        fail();                                                         \
                }                                                                       \
        } while (0)

static char *read_data(const char *name, size_t *ret_len) {
        char path[4096], *buf;
        FILE *f;
        long n;

        snprintf(path, sizeof(path), DATA_DIR "%s", name);
        f = fopen(path, "re");
        assert_non_null(f);
        assert_int_equal(fseek(f, 0, SEEK_END), 0);
        n = ftell(f);
        assert_true(n > 0);
        rewind(f);
        buf = malloc((size_t) n);
        assert_non_null(buf);
        assert_int_equal(fread(buf, 1, (size_t) n, f), (size_t) n);
        fclose(f);
        *ret_len = (size_t) n;
        return buf;
}

/* Parses a copy sized exactly `len`, so ASan catches any read past it. */
static int parse_n(const char *text, size_t len, CpuSample *ret, char **ret_error) {
        char *copy = malloc(len ?: 1);
        int r;

        assert_non_null(copy);
        memcpy(copy, text, len);
        r = cpu_parse_stat(copy, len, ret, ret_error);
        free(copy);
        return r;
}

static int parse(const char *text, CpuSample *ret, char **ret_error) {
        return parse_n(text, strlen(text), ret, ret_error);
}

/* Expects -EBADMSG and that the error says `want` (a substring). */
static void expect_bad(const char *text, size_t len, const char *want) {
        CpuSample s = { .total.user = 4242 };
        char *err = NULL;

        assert_int_equal(parse_n(text, len, &s, &err), -EBADMSG);
        assert_non_null(err);
        if (!strstr(err, want)) {
                print_error("error '%s' does not contain '%s'\n", err, want);
                fail();
        }
        free(err);

        /* The error out-parameter is optional. */
        assert_int_equal(parse_n(text, len, &s, NULL), -EBADMSG);
}

#define EXPECT_BAD(lit, want) expect_bad((lit), sizeof(lit) - 1, (want))

static void assert_times(const CpuTimes *t, uint64_t user, uint64_t nice, uint64_t system, uint64_t idle,
                         uint64_t iowait, uint64_t irq, uint64_t softirq, uint64_t steal, uint64_t guest,
                         uint64_t guest_nice) {
        assert_int_equal(t->user, user);
        assert_int_equal(t->nice, nice);
        assert_int_equal(t->system, system);
        assert_int_equal(t->idle, idle);
        assert_int_equal(t->iowait, iowait);
        assert_int_equal(t->irq, irq);
        assert_int_equal(t->softirq, softirq);
        assert_int_equal(t->steal, steal);
        assert_int_equal(t->guest, guest);
        assert_int_equal(t->guest_nice, guest_nice);
}

/* ---- parsing ---- */

static void test_parse_debian12(void **state) {
        _cleanup_(freep) char *buf = NULL;
        CpuSample s;
        size_t len;

        buf = read_data("debian12-2cpu.stat", &len);
        assert_int_equal(parse_n(buf, len, &s, NULL), 0);
        assert_times(&s.total, 2615, 0, 1148, 76400, 1156, 0, 65, 16, 0, 0);
}

static void test_parse_64cpu(void **state) {
        _cleanup_(freep) char *buf = NULL;
        CpuSample s;
        size_t len;

        buf = read_data("x86-64cpu.stat", &len);
        assert_true(len > 4096);
        assert_int_equal(parse_n(buf, len, &s, NULL), 0);
        assert_times(&s.total, 29685767, 149247, 6933379, 315719097, 803530, 0, 310641, 65477, 0, 0);
}

static void test_parse_old_kernels(void **state) {
        _cleanup_(freep) char *b4 = NULL, *b7 = NULL, *b8 = NULL;
        CpuSample s;
        size_t len;

        b4 = read_data("linux-2.4-4fields.stat", &len);
        assert_int_equal(parse_n(b4, len, &s, NULL), 0);
        assert_times(&s.total, 1250, 31, 740, 97979, 0, 0, 0, 0, 0, 0);

        b7 = read_data("linux-2.6.9-7fields.stat", &len);
        assert_int_equal(parse_n(b7, len, &s, NULL), 0);
        assert_times(&s.total, 8211, 97, 2861, 410233, 3145, 121, 30, 0, 0, 0);

        b8 = read_data("linux-2.6.18-8fields.stat", &len);
        assert_int_equal(parse_n(b8, len, &s, NULL), 0);
        assert_times(&s.total, 161209, 2241, 30377, 8845108, 25327, 1018, 4211, 512, 0, 0);

        assert_int_equal(parse("cpu  1 2 3 4 5 6 7 8 9\n", &s, NULL), 0);
        assert_times(&s.total, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0);
}

static void test_parse_layout(void **state) {
        CpuSample s;

        /* The aggregate line need not come first. */
        assert_int_equal(parse("intr 5 6 7\ncpu1 1 1 1 1\ncpu0 1 1 1 1\ncpu  2 2 2 2 0 0 0 0 0 0\nctxt 9\n", &s, NULL), 0);
        assert_times(&s.total, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0);

        /* A future kernel's 11th field is accepted and ignored. */
        assert_int_equal(parse("cpu  1 2 3 4 5 6 7 8 9 10 11\n", &s, NULL), 0);
        assert_times(&s.total, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10);

        /* Tabs and runs of blanks separate fields; trailing blanks are fine. */
        assert_int_equal(parse("cpu\t1  2\t 3 4 \n", &s, NULL), 0);
        assert_times(&s.total, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0);

        /* The last line may lack its newline when it is not the aggregate. */
        assert_int_equal(parse("cpu  1 2 3 4\ncpu0 1 2 3 4", &s, NULL), 0);

        /* The largest counter is taken as is. */
        assert_int_equal(parse("cpu  18446744073709551615 0 0 0\n", &s, NULL), 0);
        assert_int_equal(s.total.user, UINT64_MAX);
}

static void test_parse_garbage_lines(void **state) {
        static const char text[] =
                "\n"
                "garbage here\n"
                "cpufreq 1 2 3\n"     /* not cpuN */
                "cpu12x 1 2 3 4\n"    /* not cpuN either */
                "cpu 7 8 9 10\n"
                "cpu3 1 1 1 1\n"
                "\x01\x02\xff binary\n"
                "intr 1 x 3\n"        /* not ours to judge */
                "cpu4\n"
                "  leading blank line\n";
        CpuSample s;

        assert_int_equal(parse_n(text, sizeof(text) - 1, &s, NULL), 0);
        assert_times(&s.total, 7, 8, 9, 10, 0, 0, 0, 0, 0, 0);
}

static void test_parse_non_numeric(void **state) {
        EXPECT_BAD("cpu  1 2 x12 4\n", "line 1: field 3 'x12' is not a number");
        EXPECT_BAD("intr 1\ncpu  1 2 3 4 -5\n", "line 2: field 5 '-5' is not a number");
        EXPECT_BAD("cpu  +1 2 3 4\n", "field 1 '+1' is not a number");
        EXPECT_BAD("cpu  1 2 3 0x10\n", "field 4 '0x10' is not a number");
        EXPECT_BAD("cpu  1 2 3 4.5\n", "field 4 '4.5' is not a number");
        EXPECT_BAD("cpu  1 2 3 4 5 6 7 8 9 10 zz\n", "field 11 'zz' is not a number");
        /* A NUL inside the line is data, not the end of the string. */
        EXPECT_BAD("cpu  1 2\0003 4\n", "field 2 '2?3' is not a number");
        EXPECT_BAD("cpu  1 2 3\r\n", "field 3 '3?' is not a number");
        /* A long token is quoted shortened. */
        EXPECT_BAD("cpu  1 2 3 aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
                   "field 4 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...' is not a number");
}

static void test_parse_too_few(void **state) {
        EXPECT_BAD("cpu  1 2 3\n", "line 1: aggregate cpu line has 3 numbers, expected at least 4");
        EXPECT_BAD("cpu\n", "has 0 numbers");
        EXPECT_BAD("cpu0 1 2 3 4\ncpu  1\ncpu1 1 2 3 4\n", "line 2: aggregate cpu line has 1 number, expected");
}

static void test_parse_empty_and_missing(void **state) {
        CpuSample s;

        EXPECT_BAD("", "empty");
        assert_int_equal(cpu_parse_stat(NULL, 0, &s, NULL), -EBADMSG);
        EXPECT_BAD("\n", "no aggregate cpu line");
        EXPECT_BAD("cpu0 1 2 3 4\ncpu1 1 2 3 4\nintr 1\n", "no aggregate cpu line in 3 lines");
        EXPECT_BAD("cpuX 1 2 3 4\n", "no aggregate cpu line");
        /* "cpu" must be the whole first token. */
        EXPECT_BAD("xcpu 1 2 3 4\n", "no aggregate cpu line");
        /* Nothing after the aggregate line is read: not even a second one. */
        assert_int_equal(parse("cpu  1 2 3 4\ncpu  5 6 7 8\ngarbage\n", &s, NULL), 0);
        assert_times(&s.total, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0);
}

static void test_parse_overflow(void **state) {
        EXPECT_BAD("cpu  18446744073709551616 0 0 0\n", "line 1: field 1 '18446744073709551616' is out of range");
        EXPECT_BAD("cpu  1 2 99999999999999999999999 4\n", "field 3 '99999999999999999999999' is out of range");
}

static void test_parse_truncated_aggregate(void **state) {
        EXPECT_BAD("cpu  1 2 3 4", "line 1: aggregate cpu line is truncated (no newline)");
        EXPECT_BAD("cpu0 1 2 3 4\ncpu  100 200 300 4000", "line 2: aggregate cpu line is truncated");
        EXPECT_BAD("cpu", "truncated");
        /* `len` is the end even when the bytes after it would finish the line. */
        expect_bad("cpu  1 2 3 4\n", 12, "truncated");
}

/* Cut the real file at every length: a cut inside the aggregate line is
 * rejected, never read as fewer jiffies; after it, the totals are exact. */
static void test_parse_every_prefix(void **state) {
        _cleanup_(freep) char *buf = NULL;
        const char *nl;
        size_t len, line1;

        buf = read_data("debian12-2cpu.stat", &len);
        nl = memchr(buf, '\n', len);
        assert_non_null(nl);
        line1 = (size_t) (nl - buf) + 1;

        for (size_t n = 0; n <= len; n++) {
                CpuSample s;
                int r = parse_n(buf, n, &s, NULL);

                if (n < line1)
                        assert_int_equal(r, -EBADMSG);
                else {
                        assert_int_equal(r, 0);
                        assert_times(&s.total, 2615, 0, 1148, 76400, 1156, 0, 65, 16, 0, 0);
                }
        }
}

/* ---- utilisation ---- */

static CpuSample sample(uint64_t user, uint64_t nice, uint64_t system, uint64_t idle,
                        uint64_t iowait, uint64_t irq, uint64_t softirq, uint64_t steal, uint64_t guest) {
        return (CpuSample) {
                .total = { user, nice, system, idle, iowait, irq, softirq, steal, guest, 0 },
        };
}

static void test_usage_exact(void **state) {
        CpuSample a = sample(1000, 500, 700, 9000, 100, 10, 20, 5, 50);
        /* +300 user, +100 nice, +200 system, +300 idle, +50 iowait, +20 irq,
         * +30 softirq, +0 steal, +100 guest (inside user): total 1000. */
        CpuSample b = sample(1300, 600, 900, 9300, 150, 30, 50, 5, 150);
        CpuUsage u;

        assert_int_equal(cpu_usage_between(&a, &b, 0, &u), 0);
        assert_double_eq(u.busy, 65.0);
        assert_double_eq(u.user, 40.0);
        assert_double_eq(u.system, 20.0);
        assert_double_eq(u.irq, 5.0);
        assert_double_eq(u.iowait, 5.0);
        assert_double_eq(u.steal, 0.0);
        assert_double_eq(u.idle, 30.0);

        /* One third does not round to a tidy number but stays exact enough. */
        a = sample(0, 0, 0, 0, 0, 0, 0, 0, 0);
        b = sample(1, 0, 0, 2, 0, 0, 0, 0, 0);
        assert_int_equal(cpu_usage_between(&a, &b, 0, &u), 0);
        assert_double_eq(u.busy, 100.0 / 3.0);
        assert_double_eq(u.idle, 200.0 / 3.0);

        /* Fully busy is exactly 100. */
        b = sample(7, 0, 0, 0, 0, 0, 0, 0, 0);
        assert_int_equal(cpu_usage_between(&a, &b, 0, &u), 0);
        assert_true(u.busy == 100.0);
        assert_true(u.user == 100.0);
}

static void test_usage_iowait_steal_apart(void **state) {
        CpuSample a = sample(100, 0, 100, 100, 100, 0, 0, 100, 0);
        CpuSample b = sample(100, 0, 100, 100, 160, 0, 0, 140, 0);
        CpuUsage u;

        assert_int_equal(cpu_usage_between(&a, &b, 0, &u), 0);
        assert_double_eq(u.busy, 0.0);
        assert_double_eq(u.iowait, 60.0);
        assert_double_eq(u.steal, 40.0);
        assert_double_eq(u.idle, 0.0);

        /* Busy next to iowait and steal: only user+system count. */
        b = sample(150, 0, 150, 100, 160, 0, 0, 140, 0);
        assert_int_equal(cpu_usage_between(&a, &b, 0, &u), 0);
        assert_double_eq(u.busy, 50.0);
        assert_double_eq(u.iowait, 30.0);
        assert_double_eq(u.steal, 20.0);
}

static void test_usage_guest_not_twice(void **state) {
        /* A VM host: all user time is guest time. */
        CpuSample a = sample(0, 0, 0, 0, 0, 0, 0, 0, 0);
        CpuSample b = sample(500, 0, 0, 500, 0, 0, 0, 0, 500);
        CpuUsage u;

        assert_int_equal(cpu_usage_between(&a, &b, 0, &u), 0);
        assert_double_eq(u.busy, 50.0);
        assert_double_eq(u.user, 50.0);
        assert_double_eq(u.idle, 50.0);

        /* guest_nice is inside nice. */
        b.total.guest = 0;
        b.total.user = 0;
        b.total.nice = 500;
        b.total.guest_nice = 500;
        assert_int_equal(cpu_usage_between(&a, &b, 0, &u), 0);
        assert_double_eq(u.busy, 50.0);
        assert_double_eq(u.user, 50.0);
}

static void test_usage_errors(void **state) {
        CpuSample a = sample(100, 100, 100, 100, 100, 100, 100, 100, 100);
        CpuSample b;
        CpuUsage u = { .busy = -7 };

        /* Zero delta. */
        assert_int_equal(cpu_usage_between(&a, &a, 0, &u), -ENODATA);
        /* Only guest moved: no time passed that we count. */
        b = a;
        b.total.guest += 10;
        assert_int_equal(cpu_usage_between(&a, &b, 0, &u), -ENODATA);

        /* Each counter going backwards. */
        for (size_t i = 0; i < 10; i++) {
                uint64_t *f;

                b = sample(200, 200, 200, 200, 200, 200, 200, 200, 200);
                b.total.guest_nice = 200;
                a.total.guest_nice = 100;
                f = (uint64_t *) &b.total + i;
                *f = 50;
                /* idle or iowait alone may step back if the other covers
                 * it (see below): make their sum step back too */
                if (f == &b.total.idle || f == &b.total.iowait)
                        b.total.idle = b.total.iowait = 50;
                assert_int_equal(cpu_usage_between(&a, &b, 0, &u), -ERANGE);
        }

        /* Sums that overflow are out of range, not wrapped. */
        a = sample(0, 0, 0, 0, 0, 0, 0, 0, 0);
        b = sample(UINT64_MAX, UINT64_MAX, 0, 0, 0, 0, 0, 0, 0);
        assert_int_equal(cpu_usage_between(&a, &b, 0, &u), -ERANGE);

        assert_double_eq(u.busy, -7); /* never written on error */
}

static void test_ticks_bound(void **state) {
        /* 100 Hz, 4 CPUs: 1 s is 400 ticks; twice that plus one second. */
        assert_int_equal(cpu_ticks_bound(USEC_PER_SEC, 100, 4), 2 * 400 + 400);
        /* 100 ms: 40 ticks, doubled, plus 400. */
        assert_int_equal(cpu_ticks_bound(100 * USEC_PER_MSEC, 100, 4), 80 + 400);
        /* Sub-second parts are not lost to integer division. */
        assert_int_equal(cpu_ticks_bound(1500 * USEC_PER_MSEC, 100, 2), 2 * 300 + 200);
        assert_int_equal(cpu_ticks_bound(0, 100, 2), 200);
        /* Unknown rate or CPU count: no bound. */
        assert_int_equal(cpu_ticks_bound(USEC_PER_SEC, 0, 4), 0);
        assert_int_equal(cpu_ticks_bound(USEC_PER_SEC, 100, 0), 0);
        /* A stall of years saturates instead of wrapping. */
        assert_int_equal(cpu_ticks_bound(UINT64_MAX, 100000, 65536), UINT64_MAX);
        assert_true(cpu_ticks_bound(UINT64_MAX / 2, 100, 1) > 0);
}

/* A CPU coming online adds its idle time since boot to the aggregate at
 * once: the interval that holds it is skipped, not read as ~0% busy. */
static void test_usage_hotplug_jump(void **state) {
        /* 2 CPUs at 100 Hz, 100 ms apart: 20 ticks, 18 busy. */
        CpuSample a = sample(1000, 0, 500, 50000, 0, 0, 0, 0, 0);
        CpuSample b = sample(1012, 0, 506, 50002, 0, 0, 0, 0, 0);
        uint64_t bound = cpu_ticks_bound(100 * USEC_PER_MSEC, 100, 2);
        CpuUsage u;

        assert_int_equal(cpu_usage_between(&a, &b, bound, &u), 0);
        assert_double_eq(u.busy, 90.0);

        /* The same interval plus CPU 1's 3 hours of idle. */
        b.total.idle += 3 * 3600 * 100;
        u.busy = -7;
        assert_int_equal(cpu_usage_between(&a, &b, bound, &u), -ESTALE);
        assert_double_eq(u.busy, -7);
        /* Unchecked (a plain file a test writes): read as it is. */
        assert_int_equal(cpu_usage_between(&a, &b, 0, &u), 0);
        assert_true(u.busy < 1.0);

        /* Exactly at the bound is plausible; one tick more is not. */
        b = a;
        b.total.user += bound;
        assert_int_equal(cpu_usage_between(&a, &b, bound, &u), 0);
        b.total.user++;
        assert_int_equal(cpu_usage_between(&a, &b, bound, &u), -ESTALE);

        /* A CPU going offline takes its idle time away: backwards. */
        b = sample(1012, 0, 506, 20000, 0, 0, 0, 0, 0);
        assert_int_equal(cpu_usage_between(&a, &b, bound, &u), -ERANGE);
}

/* The kernel moves idle periods between idle and iowait after the fact:
 * iowait alone stepping back is not a counter reset. */
static void test_usage_iowait_moves_to_idle(void **state) {
        CpuSample a = sample(100, 0, 100, 1000, 500, 0, 0, 0, 0);
        CpuSample b = sample(150, 0, 150, 1200, 450, 0, 0, 0, 0);
        CpuUsage u;

        /* user+system +100, idle+iowait +150: total 250 */
        assert_int_equal(cpu_usage_between(&a, &b, 0, &u), 0);
        assert_double_eq(u.busy, 40.0);
        assert_double_eq(u.iowait, 0.0);
        assert_double_eq(u.idle, 60.0);

        /* And the other way round. */
        b = sample(150, 0, 150, 950, 700, 0, 0, 0, 0);
        assert_int_equal(cpu_usage_between(&a, &b, 0, &u), 0);
        assert_double_eq(u.busy, 40.0);
        assert_double_eq(u.iowait, 60.0);
        assert_double_eq(u.idle, 0.0);

        /* Both together stepping back is a reset. */
        b = sample(150, 0, 150, 1000, 499, 0, 0, 0, 0);
        assert_int_equal(cpu_usage_between(&a, &b, 0, &u), -ERANGE);
}

static uint64_t rnd(unsigned *seed, uint64_t max) {
        return (uint64_t) rand_r(seed) % (max + 1);
}

static void test_usage_ranges(void **state) {
        unsigned seed = 12345;

        for (unsigned i = 0; i < 20000; i++) {
                CpuSample a = sample(rnd(&seed, 1u << 30), rnd(&seed, 1000), rnd(&seed, 1u << 30),
                                     rnd(&seed, 1u << 30), rnd(&seed, 1000), rnd(&seed, 1000), rnd(&seed, 1000),
                                     rnd(&seed, 1000), 0);
                CpuSample b = a;
                CpuUsage u;
                int r;

                b.total.user += rnd(&seed, 3);
                b.total.nice += rnd(&seed, 3);
                b.total.system += rnd(&seed, 3);
                b.total.idle += rnd(&seed, 3);
                b.total.iowait += rnd(&seed, 3);
                b.total.irq += rnd(&seed, 1);
                b.total.softirq += rnd(&seed, 1);
                b.total.steal += rnd(&seed, 2);
                b.total.guest += rnd(&seed, 3);

                r = cpu_usage_between(&a, &b, 0, &u);
                if (r == -ENODATA)
                        continue;
                assert_int_equal(r, 0);
                for (const double *p = &u.busy; p <= &u.idle; p++)
                        assert_true(*p >= 0.0 && *p <= 100.0);
                assert_double_eq(u.user + u.system + u.irq + u.iowait + u.steal + u.idle, 100.0);
                assert_double_eq(u.busy, u.user + u.system + u.irq);
        }
}

static void test_usage_from_texts(void **state) {
        CpuSample a, b;
        CpuUsage u;

        assert_int_equal(parse("cpu  2281 0 1053 65229 1141 0 60 16 0 0\ncpu0 1\ncpu1 1\n", &a, NULL), 0);
        assert_int_equal(parse("cpu  2481 0 1153 65429 1141 0 60 16 0 0\ncpu0 1\ncpu1 1\n", &b, NULL), 0);
        assert_int_equal(cpu_usage_between(&a, &b, 0, &u), 0);
        assert_double_eq(u.busy, 60.0);
        assert_double_eq(u.user, 40.0);
        assert_double_eq(u.system, 20.0);
        assert_double_eq(u.idle, 40.0);

        /* cpu1 came online between the two reads, 1 s apart on 2 CPUs at
         * 100 Hz: its idle time since boot arrives at once. */
        assert_int_equal(parse("cpu  2481 0 1153 3665429 1141 0 60 16 0 0\ncpu0 1\ncpu1 1\n", &b, NULL), 0);
        assert_int_equal(cpu_usage_between(&a, &b, cpu_ticks_bound(USEC_PER_SEC, 100, 2), &u), -ESTALE);
}

/* ---- reader ---- */

static void write_file(const char *path, const char *text) {
        FILE *f = fopen(path, "we");

        assert_non_null(f);
        assert_int_equal(fputs(text, f) >= 0, 1);
        assert_int_equal(fclose(f), 0);
}

static void replace_file(const char *dir, const char *path, const char *text) {
        char tmp[4096];

        snprintf(tmp, sizeof(tmp), "%s/.stat.tmp", dir);
        write_file(tmp, text);
        assert_int_equal(rename(tmp, path), 0);
}

static char *make_tempdir(void) {
        char *d = strdup("/tmp/test-cpu-XXXXXX");

        assert_non_null(d);
        assert_non_null(mkdtemp(d));
        return d;
}

/* Text of a host with `n` CPUs, all counters `v`. */
static char *big_stat(unsigned n, uint64_t v) {
        size_t size = 64 + (size_t) n * 160 + 4 * 4096, len = 0;
        char *s = malloc(size);

        assert_non_null(s);
        len += (size_t) snprintf(s + len, size - len, "cpu  %" PRIu64 " 0 %" PRIu64 " %" PRIu64 " 0 0 0 0 0 0\n",
                                 v * n, v * n, v * n);
        for (unsigned i = 0; i < n; i++)
                len += (size_t) snprintf(s + len, size - len,
                                         "cpu%u %" PRIu64 " 0 %" PRIu64 " %" PRIu64 " 0 0 0 0 0 0 1234567 7654321\n",
                                         i, v, v, v);
        /* The intr line is long on real hosts, too. */
        len += (size_t) snprintf(s + len, size - len, "intr 123456789");
        for (unsigned i = 0; i < 4096 && len + 3 < size; i++)
                len += (size_t) snprintf(s + len, size - len, " 0");
        len += (size_t) snprintf(s + len, size - len, "\nctxt 987654321\n");
        assert_true(len < size);
        return s;
}

static bool fd_is_cloexec(const char *target) {
        DIR *d = opendir("/proc/self/fd");
        struct dirent *de;
        bool found = false;

        assert_non_null(d);
        while ((de = readdir(d))) {
                char link[4096], buf[4096];
                ssize_t n;

                if (de->d_name[0] == '.')
                        continue;
                snprintf(link, sizeof(link), "/proc/self/fd/%s", de->d_name);
                n = readlink(link, buf, sizeof(buf) - 1);
                if (n < 0)
                        continue;
                buf[n] = '\0';
                if (streq(buf, target)) {
                        char *end;
                        long fd = strtol(de->d_name, &end, 10);
                        int flags;

                        assert_true(*end == '\0' && fd >= 0 && fd <= INT_MAX);
                        flags = fcntl((int) fd, F_GETFD);
                        assert_true(flags >= 0);
                        assert_true(flags & FD_CLOEXEC);
                        found = true;
                }
        }
        closedir(d);
        return found;
}

static void test_reader_rename(void **state) {
        _cleanup_(freep) char *dir = make_tempdir(), *big = NULL;
        _cleanup_(cpu_reader_freep) CpuReader *r = NULL;
        char path[4096], *err = NULL;
        CpuSample s;

        snprintf(path, sizeof(path), "%s/stat", dir);
        write_file(path, "cpu  1 2 3 4 5 6 7 8 9 10\ncpu0 1 2 3 4\n");

        assert_int_equal(cpu_reader_new(path, &r), 0);
        assert_true(fd_is_cloexec(path));
        assert_int_equal(cpu_reader_read(r, &s, NULL), 0);
        assert_times(&s.total, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10);

        /* Replaced by rename: the reader must follow the path. */
        replace_file(dir, path, "cpu  11 12 13 14 15 16 17 18 19 20\ncpu0 1 2 3 4\ncpu1 1 2 3 4\n");
        assert_int_equal(cpu_reader_read(r, &s, NULL), 0);
        assert_times(&s.total, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20);

        /* Rewritten in place, shorter: read to the new end, no stale tail. */
        write_file(path, "cpu  21 0 0 4\n");
        assert_int_equal(cpu_reader_read(r, &s, NULL), 0);
        assert_times(&s.total, 21, 0, 0, 4, 0, 0, 0, 0, 0, 0);

        /* Garbage in the new file is reported, the next good one reads. */
        replace_file(dir, path, "cpu  1 2 nope 4\n");
        assert_int_equal(cpu_reader_read(r, &s, &err), -EBADMSG);
        assert_string_equal(err, "line 1: field 3 'nope' is not a number");
        free(err);

        /* 256 CPUs, ~30 KiB: the buffer grows past its first 4 KiB. */
        big = big_stat(256, 123456789);
        assert_true(strlen(big) > 4 * 4096);
        replace_file(dir, path, big);
        assert_int_equal(cpu_reader_read(r, &s, NULL), 0);
        assert_int_equal(s.total.user, UINT64_C(123456789) * 256);
        assert_int_equal(cpu_reader_read(r, &s, NULL), 0);

        /* Back to small after the buffer grew. */
        replace_file(dir, path, "cpu  5 6 7 8\n");
        assert_int_equal(cpu_reader_read(r, &s, NULL), 0);
        assert_times(&s.total, 5, 6, 7, 8, 0, 0, 0, 0, 0, 0);

        /* An empty file (a writer caught between truncate and write). */
        write_file(path, "");
        assert_int_equal(cpu_reader_read(r, &s, NULL), -EBADMSG);

        /* Gone. */
        assert_int_equal(unlink(path), 0);
        s.total.user = 99;
        assert_int_equal(cpu_reader_read(r, &s, NULL), -ENOENT);

        assert_int_equal(rmdir(dir), 0);
}

static void test_reader_open_errors(void **state) {
        _cleanup_(freep) char *dir = make_tempdir();
        CpuReader *r = NULL;
        char path[4096];

        snprintf(path, sizeof(path), "%s/missing", dir);
        assert_int_equal(cpu_reader_new(path, &r), -ENOENT);
        assert_null(r);
        assert_int_equal(cpu_reader_new(dir, &r), -EISDIR);
        assert_null(r);
        assert_int_equal(cpu_reader_new("", &r), -EINVAL);
        assert_null(cpu_reader_free(NULL));

        assert_int_equal(rmdir(dir), 0);
}

static usec_t boottime_usec(void) {
        struct timespec ts;

        assert_int_equal(clock_gettime(CLOCK_BOOTTIME, &ts), 0);
        return (usec_t) ts.tv_sec * USEC_PER_SEC + (usec_t) ts.tv_nsec / 1000;
}

static void test_reader_proc_stat(void **state) {
        _cleanup_(cpu_reader_freep) CpuReader *r = NULL;
        CpuSample a, b;
        CpuUsage u;
        usec_t t0;
        int k;

        assert_int_equal(cpu_reader_new("/proc/stat", &r), 0);
        assert_true(fd_is_cloexec("/proc/stat"));
        t0 = boottime_usec();
        assert_int_equal(cpu_reader_read(r, &a, NULL), 0);
        assert_true(a.total.idle + a.total.user + a.total.system > 0);

        /* Burn some CPU so at least one tick passes. */
        for (unsigned i = 0; i < 1000; i++) {
                volatile uint64_t x = 0;

                for (unsigned j = 0; j < 200000; j++)
                        x += j;
                assert_true(x > 0);
                assert_int_equal(cpu_reader_read(r, &b, NULL), 0);
                if (b.total.user + b.total.system + b.total.idle > a.total.user + a.total.system + a.total.idle)
                        break;
        }

        /* The real kernel stays inside the hotplug bound, which procfs gets. */
        assert_true(cpu_reader_max_ticks(r, 1) > 0);
        k = cpu_usage_between(&a, &b, cpu_reader_max_ticks(r, boottime_usec() - t0), &u);
        assert_int_equal(k, 0);
        assert_true(u.busy >= 0.0 && u.busy <= 100.0);
        assert_true(u.idle >= 0.0 && u.idle <= 100.0);
        assert_true(b.total.user >= a.total.user);
        assert_true(b.total.system >= a.total.system);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse_debian12),
                cmocka_unit_test(test_parse_64cpu),
                cmocka_unit_test(test_parse_old_kernels),
                cmocka_unit_test(test_parse_layout),
                cmocka_unit_test(test_parse_garbage_lines),
                cmocka_unit_test(test_parse_non_numeric),
                cmocka_unit_test(test_parse_too_few),
                cmocka_unit_test(test_parse_empty_and_missing),
                cmocka_unit_test(test_parse_overflow),
                cmocka_unit_test(test_parse_truncated_aggregate),
                cmocka_unit_test(test_parse_every_prefix),
                cmocka_unit_test(test_ticks_bound),
                cmocka_unit_test(test_usage_hotplug_jump),
                cmocka_unit_test(test_usage_exact),
                cmocka_unit_test(test_usage_iowait_steal_apart),
                cmocka_unit_test(test_usage_guest_not_twice),
                cmocka_unit_test(test_usage_errors),
                cmocka_unit_test(test_usage_iowait_moves_to_idle),
                cmocka_unit_test(test_usage_ranges),
                cmocka_unit_test(test_usage_from_texts),
                cmocka_unit_test(test_reader_rename),
                cmocka_unit_test(test_reader_open_errors),
                cmocka_unit_test(test_reader_proc_stat),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
