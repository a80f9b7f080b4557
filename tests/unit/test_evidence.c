/* evidence.c: /proc/PID/stat parsing, snapshots of fake and real proc
 * roots, the top-CPU table with its cmdline formatting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <fcntl.h>
#include <math.h>
#include <sys/stat.h>
#include <time.h>

#include "evidence.h"

#define DATA_DIR SOURCE_ROOT "/tests/unit/data/evidence/"
#define BEFORE DATA_DIR "before"
#define AFTER DATA_DIR "after"
#define AT_BEFORE (10 * USEC_PER_SEC)
#define AT_AFTER (12 * USEC_PER_SEC)

#define assert_double_eq(a, b)                                                          \
        do {                                                                            \
                double _a = (a), _b = (b);                                              \
                if (!(fabs(_a - _b) <= 1e-9)) {                                         \
                        print_error("%s = %.12g, expected %.12g\n", #a, _a, _b);        \
                        fail();                                                         \
                }                                                                       \
        } while (0)

/* A realistic line (the layout of a 6.x kernel, 52 fields). */
#define LINE_TAIL                                                                                     \
        " 1 4321 4321 0 -1 4194560 1234 0 7 0 150 25 0 0 20 0 1 0 98765 17000000 2048 "              \
        "18446744073709551615 1 1 0 0 0 0 0 4096 17663 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"

/* Parses a copy sized exactly `len`, so ASan catches any read past it. */
static int parse_n(const char *text, size_t len, ProcStat *ret) {
        char *copy = malloc(len ?: 1);
        int r;

        assert_non_null(copy);
        memcpy(copy, text, len);
        r = proc_stat_parse(copy, len, ret);
        free(copy);
        return r;
}

static int parse(const char *text, ProcStat *ret) {
        return parse_n(text, strlen(text), ret);
}

static void expect_bad(const char *text) {
        ProcStat st = { .pid = 4242 };

        if (parse(text, &st) != -EBADMSG) {
                print_error("accepted: '%s'\n", text);
                fail();
        }
        assert_int_equal(st.pid, 4242); /* ret untouched on error */
}

static void test_parse_real_line(void **state) {
        ProcStat st;

        (void) state;
        assert_int_equal(parse("4321 (php-fpm7.4) R" LINE_TAIL, &st), 0);
        assert_int_equal(st.pid, 4321);
        assert_string_equal(st.comm, "php-fpm7.4");
        assert_int_equal(st.state, 'R');
        assert_int_equal(st.utime, 150);
        assert_int_equal(st.stime, 25);
        assert_int_equal(st.starttime, 98765);
        assert_int_equal(st.rss_pages, 2048);

        /* A kernel thread: negative priority and nice, state I. */
        assert_int_equal(parse("42 (kworker/0:1H) I 2 0 0 0 -1 69238880 0 0 0 0 0 96 0 0 0 -20 1 0 20 0 0 "
                               "18446744073709551615 0 0 0 0 0 0 0 2147483647 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n",
                               &st),
                         0);
        assert_int_equal(st.pid, 42);
        assert_string_equal(st.comm, "kworker/0:1H");
        assert_int_equal(st.state, 'I');
        assert_int_equal(st.utime, 0);
        assert_int_equal(st.stime, 96);
        assert_int_equal(st.starttime, 20);
        assert_int_equal(st.rss_pages, 0);

        /* Exactly 24 fields (up to rss) is enough; a future kernel's extra fields are fine. */
        assert_int_equal(parse("9 (x) S 1 1 1 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 5 0 6\n", &st), 0);
        assert_int_equal(st.utime + st.stime, 7);
        assert_int_equal(st.rss_pages, 6);
        assert_int_equal(parse("9 (x) S 1 1 1 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 5 0 6" " 0 0 0 0 0 0 0 0 0 0 0 0 0"
                               " 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n",
                               &st),
                         0);
}

static void test_parse_tricky_comm(void **state) {
        ProcStat st;

        (void) state;
        assert_int_equal(parse("1234 ((sd-pam)) S" LINE_TAIL, &st), 0);
        assert_string_equal(st.comm, "(sd-pam)");
        assert_int_equal(st.state, 'S');
        assert_int_equal(st.utime, 150);

        /* Taking the first ')' would read "b" as the state. */
        assert_int_equal(parse("1234 (a) b (c) R" LINE_TAIL, &st), 0);
        assert_string_equal(st.comm, "a) b (c");
        assert_int_equal(st.state, 'R');
        assert_int_equal(st.starttime, 98765);

        assert_int_equal(parse("1234 (my worker 2) D" LINE_TAIL, &st), 0);
        assert_string_equal(st.comm, "my worker 2");
        assert_int_equal(st.state, 'D');

        /* A comm that looks like the rest of a line. */
        assert_int_equal(parse("1234 (x) R 1 2 3) Z" LINE_TAIL, &st), 0);
        assert_string_equal(st.comm, "x) R 1 2 3");
        assert_int_equal(st.state, 'Z');

        assert_int_equal(parse("1234 () S" LINE_TAIL, &st), 0);
        assert_string_equal(st.comm, "");

        /* prctl(PR_SET_NAME) takes a newline too. */
        assert_int_equal(parse("1234 (a\nb) S" LINE_TAIL, &st), 0);
        assert_string_equal(st.comm, "a\nb");

        /* Longer than we keep: cut, still parsed. */
        assert_int_equal(parse("1234 (0123456789012345678901234567890123456789012345678901234567890123456789) S" LINE_TAIL,
                               &st),
                         0);
        assert_int_equal(strlen(st.comm), EVIDENCE_COMM_MAX - 1);
        assert_memory_equal(st.comm, "0123456789", 10);
        assert_int_equal(st.rss_pages, 2048);
}

static void test_parse_truncated(void **state) {
        const char *line = "4321 (php-fpm7.4) R" LINE_TAIL;
        size_t len = strlen(line);
        ProcStat st = { .pid = 4242 };

        (void) state;
        /* Every proper prefix is refused: a cut read never passes as smaller numbers. */
        for (size_t i = 0; i < len; i++) {
                if (parse_n(line, i, &st) != -EBADMSG) {
                        print_error("prefix of %zu bytes accepted\n", i);
                        fail();
                }
        }
        assert_int_equal(st.pid, 4242);

        /* Complete lines that stop short of rss (field 24). */
        expect_bad("9 (x) S 1 1 1 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 5 0\n");
        expect_bad("9 (x) S 1 1 1 0 -1 0 0 0 0 0 3 4\n");
        expect_bad("9 (x) S\n");
        expect_bad("9 (x)\n");
        expect_bad("9 (x\n");
        expect_bad("9\n");
        expect_bad("\n");
        expect_bad("");
        assert_int_equal(proc_stat_parse(NULL, 0, &st), -EBADMSG);
}

static void test_parse_non_numeric(void **state) {
        (void) state;
        expect_bad("x (x) S 1 1 1 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 5 0 6\n");   /* pid */
        expect_bad("-9 (x) S 1 1 1 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 5 0 6\n");  /* pid */
        expect_bad("0 (x) S 1 1 1 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 5 0 6\n");   /* pid 0 */
        expect_bad("+9 (x) S 1 1 1 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 5 0 6\n");  /* pid */
        expect_bad("9 (x) S 1 1 1 0 -1 0 0 0 0 0 3a 4 0 0 20 0 1 0 5 0 6\n");  /* utime */
        expect_bad("9 (x) S 1 1 1 0 -1 0 0 0 0 0 3 -4 0 0 20 0 1 0 5 0 6\n");  /* stime < 0 */
        expect_bad("9 (x) S 1 1 1 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 x 0 6\n");   /* starttime */
        expect_bad("9 (x) S 1 1 1 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 5 0 0x6\n"); /* rss */
        expect_bad("9 (x) S 1 1 1 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 5 0 -6\n");  /* rss < 0 */
        expect_bad("9 (x) S 1 1 1 0 -1 zz 0 0 0 0 3 4 0 0 20 0 1 0 5 0 6\n");  /* a field we skip */
        expect_bad("9 (x) S 1 1 1 0 - 0 0 0 0 0 3 4 0 0 20 0 1 0 5 0 6\n");    /* a lone sign */
        expect_bad("9 (x) S 1 1 1 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 5 0 6 x\n"); /* after rss */
        expect_bad("9 (x) S 1 1 1 0 -1 0 0 0 0 0 3  4 0 0 20 0 1 0 5 0 6\n");  /* two blanks */
        expect_bad("9 (x) S 1 1 1 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 5 0 6 \n");  /* trailing blank */
        expect_bad("9 (x) 7 1 1 1 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 5 0 6\n");   /* state */
        expect_bad("9 (x) SS 1 1 1 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 5 0 6\n");  /* state */
        expect_bad("9 x S 1 1 1 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 5 0 6\n");     /* no parentheses */
        expect_bad("9  (x) S 1 1 1 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 5 0 6\n");
        expect_bad("9 (x)S 1 1 1 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 5 0 6\n");
        expect_bad("9 (x) S 1 1 1 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 5 0 6\n\n"); /* a second line */
        expect_bad("9 (x) S 1 1 1 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 5 0 6\r\n");
}

static void test_parse_overflow(void **state) {
        ProcStat st;

        (void) state;
        /* The largest values pass. */
        assert_int_equal(parse("2147483647 (x) S 1 1 1 0 -9223372036854775808 0 0 0 0 0 18446744073709551615 "
                               "18446744073709551615 0 0 20 0 1 0 18446744073709551615 0 18446744073709551615\n",
                               &st),
                         0);
        assert_int_equal(st.pid, 2147483647);
        assert_true(st.utime == UINT64_MAX && st.stime == UINT64_MAX);
        assert_true(st.starttime == UINT64_MAX && st.rss_pages == UINT64_MAX);

        expect_bad("2147483648 (x) S 1 1 1 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 5 0 6\n");
        expect_bad("9 (x) S 1 1 1 0 -1 0 0 0 0 0 18446744073709551616 4 0 0 20 0 1 0 5 0 6\n");
        expect_bad("9 (x) S 1 1 1 0 -1 0 0 0 0 0 3 99999999999999999999999 0 0 20 0 1 0 5 0 6\n");
        expect_bad("9 (x) S 1 1 1 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 18446744073709551616 0 6\n");
        expect_bad("9 (x) S 1 1 1 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 5 0 18446744073709551616\n");
        expect_bad("9 (x) S 1 1 1 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 5 184467440737095516160 6\n");
        expect_bad("9 (x) S 1 1 1 0 -9223372036854775809 0 0 0 0 0 3 4 0 0 20 0 1 0 5 0 6\n");
}

static void test_snapshot_fixture(void **state) {
        _cleanup_(proc_snapshot_freep) ProcSnapshot *b = NULL, *a = NULL;
        static const int before_pids[] = { 1, 42, 100, 200, 250, 300, 400, 500, 800, 900, 1000, 1100 };
        static const int after_pids[] = { 1, 42, 100, 200, 250, 300, 500, 700, 800, 900, 1000, 1100 };
        uint64_t ticks, start;

        (void) state;
        assert_int_equal(proc_snapshot_take(BEFORE, AT_BEFORE, &b), 0);
        assert_int_equal(proc_snapshot_take(AFTER, AT_AFTER, &a), 0);

        /* self/, 999 (a file), 12345 (no stat) are skipped silently; 600
         * (malformed) and after/1200 (names another pid) are counted. */
        assert_int_equal(proc_snapshot_size(b), ELEMENTSOF(before_pids));
        assert_int_equal(proc_snapshot_size(a), ELEMENTSOF(after_pids));
        assert_int_equal(proc_snapshot_malformed(b), 1);
        assert_int_equal(proc_snapshot_malformed(a), 2);
        for (size_t i = 0; i < ELEMENTSOF(before_pids); i++)
                assert_int_equal(proc_snapshot_lookup(b, before_pids[i], NULL, NULL), 0);
        for (size_t i = 0; i < ELEMENTSOF(after_pids); i++)
                assert_int_equal(proc_snapshot_lookup(a, after_pids[i], NULL, NULL), 0);
        assert_int_equal(proc_snapshot_lookup(a, 400, NULL, NULL), -ENOENT);
        assert_int_equal(proc_snapshot_lookup(a, 600, NULL, NULL), -ENOENT);
        assert_int_equal(proc_snapshot_lookup(a, 12345, NULL, NULL), -ENOENT);
        assert_int_equal(proc_snapshot_lookup(a, 1200, NULL, NULL), -ENOENT);
        assert_int_equal(proc_snapshot_lookup(a, 1201, NULL, NULL), -ENOENT);
        assert_int_equal(proc_snapshot_lookup(a, 999, NULL, NULL), -ENOENT);
        assert_int_equal(proc_snapshot_lookup(b, 700, NULL, NULL), -ENOENT);

        assert_int_equal(proc_snapshot_lookup(a, 100, &ticks, &start), 0);
        assert_int_equal(ticks, 1400);
        assert_int_equal(start, 5000);
        assert_int_equal(proc_snapshot_lookup(b, 500, &ticks, &start), 0);
        assert_int_equal(ticks, 9000);
        assert_int_equal(start, 6000);
        assert_int_equal(proc_snapshot_lookup(a, 500, &ticks, &start), 0);
        assert_int_equal(ticks, 30);
        assert_int_equal(start, 99950);
        /* Its stat is over 1 KiB: the heap path read all of it. */
        assert_int_equal(proc_snapshot_lookup(a, 1100, &ticks, NULL), 0);
        assert_int_equal(ticks, 12);

        ticks = 77;
        assert_int_equal(proc_snapshot_lookup(NULL, 1, &ticks, NULL), -ENOENT);
        assert_int_equal(ticks, 77);
        assert_int_equal(proc_snapshot_size(NULL), 0);
        assert_null(proc_snapshot_free(NULL));
}

static void test_snapshot_errors(void **state) {
        ProcSnapshot *s = (ProcSnapshot *) 0x1;

        (void) state;
        assert_int_equal(proc_snapshot_take(DATA_DIR "no-such-dir", 0, &s), -ENOENT);
        assert_int_equal(proc_snapshot_take(DATA_DIR "make-fixtures.py", 0, &s), -ENOTDIR);
        assert_ptr_equal(s, (ProcSnapshot *) 0x1);
}

static const ProcTop *find_top(const ProcTop *t, size_t n, int pid) {
        for (size_t i = 0; i < n; i++)
                if (t[i].pid == pid)
                        return &t[i];
        return NULL;
}

static void test_top_window(void **state) {
        _cleanup_(proc_snapshot_freep) ProcSnapshot *b = NULL, *a = NULL;
        static const struct {
                int pid;
                double pct;
                bool is_new;
                uint64_t rss_kb;
                const char *comm;
        } want[] = {
                { 100, 100.0, false, 100000, "php-fpm7.4" },
                { 700, 100.0, true, 400, "yes" }, /* 500 ticks clamped to the 200 of the window */
                { 250, 25.0, false, 4000, "my worker" },
                { 300, 25.0, false, 2048, "a) b (c" },
                { 500, 15.0, true, 2800, "bash" }, /* reused pid: 30 ticks, not 30 - 9000 */
                { 900, 10.0, false, 8000, "python3" },
                { 200, 5.0, false, 1600, "(sd-pam)" },
                { 1000, 3.0, false, 24000, "postgres" },
                { 42, 2.0, false, 0, "kworker/0:1" },
                { 1100, 1.0, false, 400, "bigstat" },
                { 1, 0.5, false, 12000, "systemd" },
        };
        ProcTop top[32];
        size_t n = 999;

        (void) state;
        assert_int_equal(proc_snapshot_take(BEFORE, AT_BEFORE, &b), 0);
        assert_int_equal(proc_snapshot_take(AFTER, AT_AFTER, &a), 0);

        assert_int_equal(proc_top(b, a, AFTER, 100, 4, top, ELEMENTSOF(top), &n), 0);
        /* 800 used nothing, 400 exited, 600 is malformed. */
        assert_int_equal(n, ELEMENTSOF(want));
        for (size_t i = 0; i < n; i++) {
                assert_int_equal(top[i].pid, want[i].pid);
                assert_double_eq(top[i].cpu_pct, want[i].pct);
                assert_int_equal(top[i].new_in_window, want[i].is_new);
                assert_int_equal(top[i].rss_kb, want[i].rss_kb);
                assert_string_equal(top[i].comm, want[i].comm);
        }

        assert_string_equal(find_top(top, n, 1)->cmdline, "/sbin/init splash");
        assert_string_equal(find_top(top, n, 100)->cmdline, "php-fpm: pool www");
        assert_string_equal(find_top(top, n, 200)->cmdline, "(sd-pam)");
        assert_string_equal(find_top(top, n, 250)->cmdline, "/usr/bin/worker --name my worker");
        assert_string_equal(find_top(top, n, 500)->cmdline, "bash -c while :; do :; done");
        assert_string_equal(find_top(top, n, 1000)->cmdline, "postgres:  writer");
        /* NULs fill the whole 1 KiB read and more follows: say it was cut. */
        assert_string_equal(find_top(top, n, 1100)->cmdline, "bigstat…");

        /* Same snapshots at 1000 Hz: the same ticks are a tenth of the time. */
        assert_int_equal(proc_top(b, a, AFTER, 1000, 4, top, ELEMENTSOF(top), &n), 0);
        assert_int_equal(top[0].pid, 700); /* now 500 ticks fit the 2000-tick window */
        assert_double_eq(top[0].cpu_pct, 25.0);
        assert_int_equal(top[1].pid, 100);
        assert_double_eq(top[1].cpu_pct, 10.0);
}

static void test_top_cmdline_escaping(void **state) {
        _cleanup_(proc_snapshot_freep) ProcSnapshot *b = NULL, *a = NULL;
        ProcTop top[32];
        const ProcTop *t;
        size_t n;

        (void) state;
        assert_int_equal(proc_snapshot_take(BEFORE, AT_BEFORE, &b), 0);
        assert_int_equal(proc_snapshot_take(AFTER, AT_AFTER, &a), 0);
        assert_int_equal(proc_top(b, a, AFTER, 100, 4, top, ELEMENTSOF(top), &n), 0);

        /* A control char, two invalid bytes, valid UTF-8 kept, a C1 control escaped. */
        t = find_top(top, n, 300);
        assert_non_null(t);
        assert_string_equal(t->cmdline, "./evil a\\x01b \\xff\\xfe caf\xc3\xa9 \\xc2\\x85");

        /* 159 bytes, then an "é" that would end at byte 161: cut before it, not inside. */
        t = find_top(top, n, 900);
        assert_non_null(t);
        assert_int_equal(strlen(t->cmdline), 159 + strlen("…"));
        assert_memory_equal(t->cmdline, "python3 -c xxxxxxxx", 19);
        assert_string_equal(t->cmdline + 159, "…");

        t = find_top(top, n, 42);
        assert_non_null(t);
        assert_string_equal(t->cmdline, "[kworker/0:1]");
}

static void test_top_n_smaller(void **state) {
        _cleanup_(proc_snapshot_freep) ProcSnapshot *b = NULL, *a = NULL;
        ProcTop top[4], sentinel;
        size_t n = 999;

        (void) state;
        assert_int_equal(proc_snapshot_take(BEFORE, AT_BEFORE, &b), 0);
        assert_int_equal(proc_snapshot_take(AFTER, AT_AFTER, &a), 0);

        memset(top, 0x5a, sizeof(top));
        memset(&sentinel, 0x5a, sizeof(sentinel));
        assert_int_equal(proc_top(b, a, AFTER, 100, 4, top, 3, &n), 0);
        assert_int_equal(n, 3);
        assert_int_equal(top[0].pid, 100);
        assert_int_equal(top[1].pid, 700);
        assert_int_equal(top[2].pid, 250); /* 300 has the same 25 %: the lower pid wins */
        assert_memory_equal(&top[3], &sentinel, sizeof(sentinel)); /* nothing past n */

        assert_int_equal(proc_top(b, a, AFTER, 100, 4, top, 1, &n), 0);
        assert_int_equal(n, 1);
        assert_int_equal(top[0].pid, 100);

        assert_int_equal(proc_top(b, a, AFTER, 100, 4, NULL, 0, &n), 0);
        assert_int_equal(n, 0);
}

static void test_top_lifetime(void **state) {
        _cleanup_(proc_snapshot_freep) ProcSnapshot *a = NULL;
        /* after/uptime says 999.99 s: 99999 ticks at 100 Hz. */
#define NOW 99999.0
        static const struct {
                int pid;
                double pct;
        } want[] = {
                { 700, 500.0 * 100 / (NOW - 99800) }, /* lifetime numbers are not clamped */
                { 500, 30.0 * 100 / (NOW - 99950) },
                { 100, 1400.0 * 100 / (NOW - 5000) },
                { 900, 1020.0 * 100 / (NOW - 9600) },
                { 250, 350.0 * 100 / (NOW - 7000) },
                { 300, 150.0 * 100 / (NOW - 8000) },
                { 1, 151.0 * 100 / (NOW - 10) },
                { 42, 100.0 * 100 / (NOW - 20) },
                { 1000, 46.0 * 100 / (NOW - 9700) },
                { 200, 20.0 * 100 / (NOW - 3000) },
                { 1100, 12.0 * 100 / (NOW - 9800) },
                { 800, 3.0 * 100 / (NOW - 9500) },
        };
#undef NOW
        ProcTop top[32];
        size_t n;

        (void) state;
        assert_int_equal(proc_snapshot_take(AFTER, AT_AFTER, &a), 0);
        assert_int_equal(proc_top(NULL, a, AFTER, 100, 4, top, ELEMENTSOF(top), &n), 1);
        assert_int_equal(n, ELEMENTSOF(want));
        for (size_t i = 0; i < n; i++) {
                assert_int_equal(top[i].pid, want[i].pid);
                assert_double_eq(top[i].cpu_pct, want[i].pct);
                assert_false(top[i].new_in_window);
        }
        assert_string_equal(top[0].cmdline, "yes");
}

static void test_top_errors(void **state) {
        _cleanup_(proc_snapshot_freep) ProcSnapshot *b = NULL, *a = NULL, *noup = NULL;
        ProcTop top[4];
        size_t n = 999;

        (void) state;
        assert_int_equal(proc_snapshot_take(BEFORE, AT_BEFORE, &b), 0);
        assert_int_equal(proc_snapshot_take(AFTER, AT_AFTER, &a), 0);
        assert_int_equal(proc_snapshot_take(DATA_DIR "noup", AT_AFTER, &noup), 0);
        assert_int_equal(proc_snapshot_size(noup), 1);

        /* No interval, or a backwards one. */
        assert_int_equal(proc_top(a, a, AFTER, 100, 4, top, 4, &n), -EINVAL);
        assert_int_equal(proc_top(a, b, AFTER, 100, 4, top, 4, &n), -EINVAL);
        assert_int_equal(proc_top(b, a, AFTER, 0, 4, top, 4, &n), -EINVAL);
        assert_int_equal(proc_top(b, NULL, AFTER, 100, 4, top, 4, &n), -EINVAL);
        assert_int_equal(proc_top(b, a, AFTER, 100, 4, NULL, 4, &n), -EINVAL);
        /* Since-start needs the uptime. */
        assert_int_equal(proc_top(NULL, noup, DATA_DIR "noup", 100, 4, top, 4, &n), -ENODATA);
        assert_int_equal(n, 999);

        /* A proc root that cannot be opened costs the cmdlines, not the numbers. */
        assert_int_equal(proc_top(b, a, DATA_DIR "no-such-dir", 100, 4, top, 2, &n), 0);
        assert_int_equal(n, 2);
        assert_string_equal(top[0].cmdline, "[php-fpm7.4]");
        assert_double_eq(top[0].cpu_pct, 100.0);
}

static void write_file(const char *dir, const char *name, const char *data, size_t len) {
        char path[4096];
        int fd;

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, data, len), (ssize_t) len);
        assert_int_equal(close(fd), 0);
}

/* The cmdline belongs to the process `after` saw: a pid reused between the
 * snapshot and the read shows [comm], not the newcomer's command line. */
static void test_top_cmdline_pid_reused_after_snapshot(void **state) {
        _cleanup_(proc_snapshot_freep) ProcSnapshot *a = NULL;
        char root[] = "/tmp/test-evidence-XXXXXX", dir[64], path[128];
        const char *stat_old = "77 (burner) R" LINE_TAIL;
        const char *stat_new = "77 (innocent) S 1 4321 4321 0 -1 4194560 1234 0 7 0 0 0 0 0 20 0 1 0 99999 0 1 0\n";
        ProcTop top[2];
        size_t n;

        (void) state;
        assert_non_null(mkdtemp(root));
        snprintf(dir, sizeof(dir), "%s/77", root);
        assert_int_equal(mkdir(dir, 0755), 0);
        write_file(dir, "stat", stat_old, strlen(stat_old));
        write_file(dir, "cmdline", "burner\0--hard\0", 14);
        write_file(root, "uptime", "1000.00 0.00\n", 13);

        assert_int_equal(proc_snapshot_take(root, AT_BEFORE, &a), 0);
        assert_int_equal(proc_top(NULL, a, root, 100, 4, top, 2, &n), 1);
        assert_int_equal(n, 1);
        assert_string_equal(top[0].cmdline, "burner --hard");

        write_file(dir, "stat", stat_new, strlen(stat_new));
        write_file(dir, "cmdline", "innocent\0", 9);
        assert_int_equal(proc_top(NULL, a, root, 100, 4, top, 2, &n), 1);
        assert_int_equal(n, 1);
        assert_string_equal(top[0].comm, "burner");
        assert_string_equal(top[0].cmdline, "[burner]");

        /* Gone altogether. */
        snprintf(path, sizeof(path), "%s/stat", dir);
        assert_int_equal(unlink(path), 0);
        snprintf(path, sizeof(path), "%s/cmdline", dir);
        assert_int_equal(unlink(path), 0);
        assert_int_equal(rmdir(dir), 0);
        assert_int_equal(proc_top(NULL, a, root, 100, 4, top, 2, &n), 1);
        assert_string_equal(top[0].cmdline, "[burner]");

        snprintf(path, sizeof(path), "%s/uptime", root);
        assert_int_equal(unlink(path), 0);
        assert_int_equal(rmdir(root), 0);
}

static void format(const char *in, size_t len, bool more, const char *comm, const char *want) {
        char out[EVIDENCE_CMDLINE_MAX + 4];
        char *copy = malloc(len ?: 1);

        assert_non_null(copy);
        memcpy(copy, in, len);
        memset(out, 'Z', sizeof(out));
        proc_cmdline_format(copy, len, more, comm, out);
        free(copy);
        assert_string_equal(out, want);
}

static char *repeat(char c, size_t n) {
        char *s = malloc(n + 1);

        assert_non_null(s);
        memset(s, c, n);
        s[n] = '\0';
        return s;
}

/* s and "…" in a fresh string. */
static char *cut(const char *s) {
        size_t n = strlen(s);
        char *r = malloc(n + strlen("…") + 1);

        assert_non_null(r);
        memcpy(r, s, n);
        memcpy(r + n, "…", strlen("…") + 1);
        return r;
}

static void test_cmdline_format(void **state) {
        _cleanup_(freep) char *a160 = repeat('a', 160), *a159 = repeat('a', 159), *a158 = repeat('a', 158),
                              *a161 = repeat('a', 161), *ctl = repeat('\x01', 63);
        _cleanup_(freep) char *a160_cut = cut(a160), *a159_cut = cut(a159), *a158_cut = cut(a158);
        char buf[200], out[EVIDENCE_CMDLINE_MAX + 4];

        (void) state;
        format("ls\0-l\0", 6, false, "ls", "ls -l");
        format("a\0\0b", 4, false, "x", "a  b");
        format("\0\0\0", 3, false, "kthreadd", "[kthreadd]");
        format("", 0, false, "kworker/0:1", "[kworker/0:1]");
        format("", 0, false, "tab\there", "[tab\\x09here]");
        format("x\x7f\x1b[31m", 7, false, "x", "x\\x7f\\x1b[31m");
        format("a\\x41", 6, false, "x", "a\\x41"); /* a backslash stays as it is */

        /* UTF-8: kept when valid, each bad byte escaped otherwise. */
        format("\xf0\x9f\x98\x80", 4, false, "x", "\xf0\x9f\x98\x80");     /* U+1F600 */
        format("\xc0\xaf", 2, false, "x", "\\xc0\\xaf");                    /* overlong '/' */
        format("\xe0\x80\xaf", 3, false, "x", "\\xe0\\x80\\xaf");           /* overlong */
        format("\xed\xa0\x80", 3, false, "x", "\\xed\\xa0\\x80");           /* surrogate */
        format("\xf4\x90\x80\x80", 4, false, "x", "\\xf4\\x90\\x80\\x80");  /* past U+10FFFF */
        format("\xf5", 1, false, "x", "\\xf5");
        format("ab\xe2\x82", 4, false, "x", "ab\\xe2\\x82");                /* cut sequence */
        format("\xe2\x82\xac", 3, false, "x", "\xe2\x82\xac");              /* euro sign */
        format("\xc2\xa0", 2, false, "x", "\xc2\xa0");                      /* NBSP is not C1 */
        format("\xc2\x9b", 2, false, "x", "\\xc2\\x9b");                    /* C1 CSI is */

        /* Exactly the limit fits; one more is cut with "…". */
        format(a160, 160, false, "x", a160);
        format(a160, 161, false, "x", a160); /* 160 and the argv NUL */
        format(a161, 161, false, "x", a160_cut);
        /* The read stopped early: "…" even though what was read fits. */
        format(a158, 158, true, "x", a158_cut);

        /* An escape is never split: 158 + "\x01" would end at byte 162. */
        memcpy(buf, a158, 158);
        memcpy(buf + 158, "\x01b", 2);
        format(buf, 160, false, "x", a158_cut);
        /* Nor a character: 159 + a 3-byte euro sign would end at byte 162. */
        memcpy(buf, a159, 159);
        memcpy(buf + 159, "\xe2\x82\xac", 3);
        format(buf, 162, false, "x", a159_cut);
        /* ... but one that ends at byte 160 stays. */
        memcpy(buf, a158, 158);
        memcpy(buf + 158, "\xc3\xa9", 2);
        buf[160] = '\0';
        format(buf, 160, false, "x", buf);

        /* A comm of control chars is cut inside the brackets, within the
         * limit: "[aa" and 38 escapes make 155, a 39th would end at 159. */
        memcpy(buf, "aa", 2);
        memset(buf + 2, '\x01', 61);
        buf[63] = '\0';
        proc_cmdline_format("", 0, false, buf, out);
        assert_int_equal(strlen(out), 3 + 38 * 4 + strlen("…]"));
        assert_memory_equal(out, "[aa\\x01\\x01", 11);
        assert_string_equal(out + 3 + 38 * 4, "…]");
        proc_cmdline_format("", 0, false, ctl, out);
        assert_int_equal(strlen(out), 1 + 39 * 4 + strlen("…]"));
        assert_string_equal(out + 1 + 39 * 4, "…]");
}

static int read_self_stat(ProcStat *ret) {
        char buf[1024];
        ssize_t k;
        int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);

        assert_true(fd >= 0);
        k = read(fd, buf, sizeof(buf));
        close(fd);
        assert_true(k > 0);
        return proc_stat_parse(buf, (size_t) k, ret);
}

static void test_real_proc(void **state) {
        _cleanup_(proc_snapshot_freep) ProcSnapshot *b = NULL, *a = NULL;
        long tps = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
        uint64_t ticks, start, t0;
        struct timespec ts;
        ProcStat self;
        _cleanup_(freep) ProcTop *top = calloc(1024, sizeof(ProcTop));
        const ProcTop *me;
        usec_t at0, at1;
        size_t n;

        (void) state;
        assert_non_null(top);
        assert_true(tps > 0 && page > 0);
        assert_int_equal(read_self_stat(&self), 0);
        assert_int_equal(self.pid, getpid());
        assert_int_equal(self.state, 'R');

        assert_int_equal(clock_gettime(CLOCK_BOOTTIME, &ts), 0);
        at0 = (usec_t) ts.tv_sec * USEC_PER_SEC + (usec_t) ts.tv_nsec / 1000;
        assert_int_equal(proc_snapshot_take("/proc", at0, &b), 0);
        assert_true(proc_snapshot_size(b) >= 1);
        assert_int_equal(proc_snapshot_malformed(b), 0);
        assert_int_equal(proc_snapshot_lookup(b, getpid(), &t0, &start), 0);
        assert_int_equal(start, self.starttime);

        /* Burn a few ticks of our own, bounded at 5 s. */
        for (;;) {
                volatile uint64_t x = 0;
                for (unsigned i = 0; i < 1000000; i++)
                        x += i;
                (void) x;
                assert_int_equal(read_self_stat(&self), 0);
                assert_int_equal(clock_gettime(CLOCK_BOOTTIME, &ts), 0);
                at1 = (usec_t) ts.tv_sec * USEC_PER_SEC + (usec_t) ts.tv_nsec / 1000;
                if (self.utime + self.stime >= t0 + 5 || at1 - at0 > 5 * USEC_PER_SEC)
                        break;
        }
        assert_int_equal(proc_snapshot_take("/proc", at1, &a), 0);
        assert_int_equal(proc_snapshot_lookup(a, getpid(), &ticks, NULL), 0);
        assert_true(ticks > t0);

        assert_int_equal(proc_top(b, a, "/proc", (unsigned) tps, (unsigned) (page / 1024), top, 1024, &n), 0);
        me = find_top(top, n, getpid());
        assert_non_null(me);
        assert_false(me->new_in_window);
        assert_true(me->cpu_pct > 0.0);
        assert_true(me->rss_kb > 0);
        assert_non_null(strstr(me->cmdline, "test_evidence"));
        assert_non_null(strstr(me->comm, "test_evidence"));

        /* The since-start path reads the real /proc/uptime. */
        assert_int_equal(proc_top(NULL, a, "/proc", (unsigned) tps, (unsigned) (page / 1024), top, 1024, &n), 1);
        me = find_top(top, n, getpid());
        assert_non_null(me);
        assert_true(me->cpu_pct > 0.0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse_real_line),
                cmocka_unit_test(test_parse_tricky_comm),
                cmocka_unit_test(test_parse_truncated),
                cmocka_unit_test(test_parse_non_numeric),
                cmocka_unit_test(test_parse_overflow),
                cmocka_unit_test(test_snapshot_fixture),
                cmocka_unit_test(test_snapshot_errors),
                cmocka_unit_test(test_top_window),
                cmocka_unit_test(test_top_cmdline_escaping),
                cmocka_unit_test(test_top_n_smaller),
                cmocka_unit_test(test_top_lifetime),
                cmocka_unit_test(test_top_errors),
                cmocka_unit_test(test_top_cmdline_pid_reused_after_snapshot),
                cmocka_unit_test(test_cmdline_format),
                cmocka_unit_test(test_real_proc),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
