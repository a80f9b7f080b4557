/* stackfold.c: perf script text to folded stacks, on real perf output
 * (tests/unit/data/perf/README.md says how each was captured) and on
 * made-up lines for every rule: headers, frame names and kinds, idle,
 * chunking, bounds, malformed input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <fcntl.h>
#include <sys/stat.h>

#include "stackfold.h"

#define DATA_DIR SOURCE_ROOT "/tests/unit/data/perf/"

/* The file in a buffer of exactly its size (ASan catches a read past it). */
static char *read_data(const char *name, size_t *ret_len) {
        char path[512];
        struct stat st;
        char *buf;
        int fd;

        snprintf(path, sizeof path, DATA_DIR "%s", name);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                print_error("cannot open %s\n", path);
                fail();
        }
        assert_int_equal(fstat(fd, &st), 0);
        buf = malloc((size_t) st.st_size + 1);
        assert_non_null(buf);
        assert_int_equal(read(fd, buf, (size_t) st.st_size), st.st_size);
        close(fd);
        *ret_len = (size_t) st.st_size;
        return buf;
}

/* Fold text fed in chunks of `chunk` bytes (0: all at once), each chunk in
 * a buffer of its exact size. */
static void fold_chunked(const char *text, size_t len, const StackFoldOptions *o, size_t chunk, Folded *ret,
                         StackFoldStats *ret_stats) {
        _cleanup_(stackfold_freep) StackFolder *f = NULL;

        assert_int_equal(stackfold_new(o, &f), 0);
        if (chunk == 0)
                chunk = len;
        for (size_t at = 0; at < len; at += chunk) {
                size_t n = MIN(chunk, len - at);
                char *copy = malloc(n);

                assert_non_null(copy);
                memcpy(copy, text + at, n);
                assert_int_equal(stackfold_feed(f, copy, n), 0);
                free(copy);
        }
        *ret = FOLDED_INIT;
        assert_int_equal(stackfold_finish(f, ret, ret_stats), 0);
}

static void fold(const char *text, const StackFoldOptions *o, Folded *ret, StackFoldStats *ret_stats) {
        fold_chunked(text, strlen(text), o, 0, ret, ret_stats);
}

/* The table as folded text. */
static char *folded_text(const Folded *t) {
        char *buf = NULL;
        size_t size = 0;
        FILE *m = open_memstream(&buf, &size);

        assert_non_null(m);
        assert_int_equal(folded_write(t, m), 0);
        assert_int_equal(fclose(m), 0);
        return buf;
}

/* Fold text with default options and compare with the expected folded text. */
static void expect_folded(const char *text, const char *expected) {
        Folded t;
        StackFoldStats st;
        char *got;

        fold(text, NULL, &t, &st);
        got = folded_text(&t);
        if (!streq(got, expected)) {
                print_error("input:\n%s\ngot:\n%s\nexpected:\n%s\n", text, got, expected);
                fail();
        }
        free(got);
        folded_done(&t);
}

static void expect_fixture(const char *name, const StackFoldOptions *o, const char *expected_name,
                           StackFoldStats expected_stats) {
        _cleanup_(freep) char *text = NULL, *expected = NULL, *got = NULL;
        size_t len, expected_len;
        StackFoldStats st;
        Folded t;

        text = read_data(name, &len);
        expected = read_data(expected_name, &expected_len);
        expected[expected_len] = '\0';

        fold_chunked(text, len, o, 0, &t, &st);
        got = folded_text(&t);
        if (!streq(got, expected)) {
                print_error("%s: got\n%s\nexpected (%s)\n%s\n", name, got, expected_name, expected);
                fail();
        }
        assert_int_equal(st.samples, expected_stats.samples);
        assert_int_equal(st.folded, expected_stats.folded);
        assert_int_equal(st.idle, expected_stats.idle);
        assert_int_equal(st.other_event, 0);
        assert_int_equal(st.malformed, 0);
        assert_int_equal(st.truncated, 0);
        assert_int_equal(t.total, st.folded);
        folded_done(&t);
}

static void test_fixtures(void **state) {
        (void) state;
        expect_fixture("system-wide.txt", NULL, "system-wide.folded",
                       (StackFoldStats) { .samples = 11, .folded = 8, .idle = 3 });
        expect_fixture("system-wide.txt", &(StackFoldOptions) { .include_idle = true }, "system-wide.idle.folded",
                       (StackFoldStats) { .samples = 11, .folded = 11 });
        expect_fixture("stripped-unknown.txt", NULL, "stripped-unknown.folded",
                       (StackFoldStats) { .samples = 6, .folded = 6 });
        expect_fixture("jit-map.txt", NULL, "jit-map.folded", (StackFoldStats) { .samples = 3, .folded = 3 });
        expect_fixture("inline.txt", NULL, "inline.folded", (StackFoldStats) { .samples = 4, .folded = 4 });
        expect_fixture("comm-spaces.txt", NULL, "comm-spaces.folded", (StackFoldStats) { .samples = 4, .folded = 4 });
        expect_fixture("comm-spaces.txt", &(StackFoldOptions) { .include_pid = true }, "comm-spaces.pid.folded",
                       (StackFoldStats) { .samples = 4, .folded = 4 });
        expect_fixture("no-callchain.txt", NULL, "no-callchain.folded",
                       (StackFoldStats) { .samples = 7, .folded = 4, .idle = 3 });
}

/* What the fixtures' .folded files say, spelled out for the rules they show. */
static void test_fixture_rules(void **state) {
        _cleanup_(freep) char *text = NULL;
        size_t len;
        Folded t;
        StackFoldStats st;

        (void) state;
        text = read_data("system-wide.txt", &len);
        fold_chunked(text, len, NULL, 0, &t, &st);
        /* kernel frames annotated, user frames not, leaf last, offsets gone */
        assert_int_equal(t.n, 8);
        assert_string_equal(t.stacks[3].stack,
                            "head;[unknown];__GI___fstatat64;entry_SYSCALL_64_after_hwframe_[k];do_syscall_64_[k];"
                            "__do_sys_newfstatat_[k];vfs_fstat_[k];vfs_getattr_nosec_[k];ext4_file_getattr_[k];"
                            "ext4_getattr_[k];generic_fillattr_[k]");
        /* a deleted memfd: its basename, bracketed, without " (deleted)" */
        assert_true(strncmp(t.stacks[4].stack, "memfd:sealed-91;[memfd:sealed-91173221a7ea];", 44) == 0);
        /* the idle task's interrupt work stays: CPU time spent */
        assert_string_equal(t.stacks[5].stack, "rm;_dl_fixup");
        assert_non_null(strstr(t.stacks[6].stack, "pv_native_safe_halt_[k];asm_sysvec_apic_timer_interrupt_[k]"));
        assert_non_null(strstr(t.stacks[7].stack, "schedule_idle_[k];__schedule_[k]"));
        folded_done(&t);
        free(TAKE_PTR(text));

        text = read_data("jit-map.txt", &len);
        fold_chunked(text, len, NULL, 0, &t, &st);
        assert_int_equal(t.n, 1);
        assert_string_equal(t.stacks[0].stack, "jit;__libc_start_call_main;main;run_jitted;Interpreter::spin:loop<int>_[j]");
        assert_int_equal(t.stacks[0].count, 3);
        folded_done(&t);
        free(TAKE_PTR(text));

        text = read_data("inline.txt", &len);
        fold_chunked(text, len, NULL, 0, &t, &st);
        assert_int_equal(t.n, 1);
        assert_string_equal(t.stacks[0].stack,
                            "spin-g;_start;__libc_start_main_impl_[i];__libc_start_call_main;main;work;hot_loop_[i];"
                            "hot_add_[i]");
        folded_done(&t);
}

/* Every split of the input gives the same table: perf's pipe is read in
 * whatever pieces read() returns. */
static void test_chunking(void **state) {
        static const char *const names[] = {
                "system-wide.txt", "stripped-unknown.txt", "jit-map.txt", "inline.txt", "comm-spaces.txt",
                "no-callchain.txt",
        };
        static const size_t chunks[] = { 1, 2, 3, 7, 64, 4095 };

        (void) state;
        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                _cleanup_(freep) char *text = NULL, *whole = NULL;
                StackFoldStats st_whole, st;
                size_t len;
                Folded t;

                text = read_data(names[i], &len);
                fold_chunked(text, len, NULL, 0, &t, &st_whole);
                whole = folded_text(&t);
                folded_done(&t);
                for (size_t k = 0; k < ELEMENTSOF(chunks); k++) {
                        _cleanup_(freep) char *got = NULL;

                        fold_chunked(text, len, NULL, chunks[k], &t, &st);
                        got = folded_text(&t);
                        if (!streq(got, whole)) {
                                print_error("%s in chunks of %zu:\n%s\nwhole:\n%s\n", names[i], chunks[k], got, whole);
                                fail();
                        }
                        assert_memory_equal(&st, &st_whole, sizeof st);
                        folded_done(&t);
                }
        }
}

static void test_headers(void **state) {
        (void) state;
        /* default layout: comm TID [CPU] TIME: PERIOD EVENT: */
        expect_folded("kworker/0:1H-kb    93 [001] 12.000001:   10101010 cpu-clock:pppH: \n"
                      "\tffffffff81000001 worker_thread+0x1 ([kernel.kallsyms])\n\n",
                      "kworker/0:1H-kb;worker_thread_[k] 1\n");
        /* spaces and digits in the comm: the pid is the number before the cpu */
        expect_folded("Chrome 2 thing 4242 [000] 1.5: cycles:\n\t 400123 f (/usr/bin/chrome)\n\n",
                      "Chrome 2 thing;f 1\n");
        expect_folded("tmux: server 777/778 [1] 2.0: cycles:\n\t 400123 f (/usr/bin/tmux)\n\n", "tmux: server;f 1\n");
        /* no cpu, no period; no time; pid/tid without anything after it */
        expect_folded("java 25607 4794564.109216: cycles:\n\t 400123 g (/x)\n\n", "java;g 1\n");
        expect_folded("java 25607 cycles:\n\t 400123 g (/x)\n\n", "java;g 1\n");
        expect_folded("java 24636/25607\n\t 400123 g (/x)\n\n", "java;g 1\n");
        /* column 0: a pid anywhere will do, as in stackcollapse-perf */
        expect_folded("V8 WorkerThread 25607 whatever else\n\t 400123 g (/x)\n\n", "V8 WorkerThread;g 1\n");
        /* an indented line with a number in it is a frame, not a header */
        expect_folded("a 1 [000] 1.0: cycles:\n    400123 Worker 12 run (/x)\n    400124 main 0 (/x)\n\n",
                      "a;main 0;Worker 12 run 1\n");
        /* samples end at the next header as well as at a blank line */
        expect_folded("a 1 [000] 1.0: cycles:\n\t 10 f (/x)\nb 2 [000] 1.0: cycles:\n\t 10 g (/x)\n",
                      "a;f 1\nb;g 1\n");
        /* CRLF, trailing spaces, the header's own comment lines */
        expect_folded("# ========\n# captured on: x\na 1 [000] 1.0: cycles: \r\n\t 10 f (/x)  \r\n\r\n", "a;f 1\n");
        /* no -g: the sample's one frame on the header line, comm right-aligned */
        expect_folded("          spin-g 26924 [000] 34241.940372:   10101010 cpu-clock:pppH:      56504e8851ca "
                      "hot_loop+0x2a (/tmp/spin-g)\n",
                      "spin-g;hot_loop 1\n");
        /* no frames at all: the comm alone */
        expect_folded("a 1 [000] 1.0: cycles:\n\nb 2 [000] 1.0: cycles:\n", "a 1\nb 1\n");
        /* a tracepoint's payload after the event is no frame */
        expect_folded("bash 1 [000] 1.0: sched:sched_switch: prev_comm=bash prev_pid=1 (x)\n\t 10 f (/x)\n\n",
                      "bash;f 1\n");
        /* a last line without its newline */
        expect_folded("a 1 [000] 1.0: cycles:\n\t 10 f (/x)", "a;f 1\n");
}

static void test_frames(void **state) {
        (void) state;
#define H "c 1 [000] 1.0: cycles:\n"
        /* offsets stripped, only as a suffix of hex digits */
        expect_folded(H "\t 10 f+0x1f (/x)\n\t 20 g+0x (/x)\n\t 30 h+0xzz (/x)\n\t 40 i0x12 (/x)\n",
                      "c;i0x12;h+0xzz;g+0x;f 1\n");
        /* [unknown]: alone, or the object's basename in brackets */
        expect_folded(H "\t 10 [unknown] ([unknown])\n\t 20 [unknown] (/usr/lib/libfoo.so.1)\n"
                        "\t 30 [unknown] ([vdso])\n\t 40 [unknown] (/memfd:x (deleted))\n\t 50 [unknown]\n",
                      "c;[unknown];[memfd:x];[vdso];[libfoo.so.1];[unknown] 1\n");
        /* a run of [unknown] (a frame-pointer walk through code without them) is one box */
        expect_folded(H "\t 10 leaf (/x)\n\t 20 [unknown] ([unknown])\n\t 30 [unknown] ([unknown])\n"
                        "\t 40 [unknown] ([unknown])\n\t 50 mid (/x)\n\t 60 [unknown] ([unknown])\n"
                        "\t 70 [unknown] (/usr/lib/libfoo.so.1)\n\t 80 [unknown] (/usr/lib/libfoo.so.1)\n",
                      "c;[libfoo.so.1];[libfoo.so.1];[unknown];mid;[unknown];leaf 1\n");
        /* kernel: kallsyms, modules, vmlinux, .ko, a kernel address without an object */
        expect_folded(H "\t ffffffff81000001 a+0x1 ([kernel.kallsyms])\n\t ffffffffc0000001 b ([ext4])\n"
                        "\t ffffffffc0000002 c ([nf_tables])\n\t ffffffff81000002 d (/boot/vmlinux-6.1.0)\n"
                        "\t ffffffffc0000003 e (/lib/modules/6.1.0/kernel/fs/xfs/xfs.ko)\n"
                        "\t ffffffff81000003 f ([unknown])\n\t ffffffff81000004 g\n"
                        "\t ffffffff81000005 h ([kernel.kallsyms].init.text)\n",
                      "c;h_[k];g_[k];f_[k];e_[k];d_[k];c_[k];b_[k];a_[k] 1\n");
        /* ... but not the process's own bracketed mappings */
        expect_folded(H "\t 7fff0001 __vdso_clock_gettime ([vdso])\n\t 7fff0002 a ([heap])\n\t 7fff0003 b ([stack])\n"
                        "\t 7fff0004 c ([anon:v8])\n\t 7fff0005 d ([vsyscall])\n",
                      "c;d;c;b;a;__vdso_clock_gettime 1\n");
        /* JIT: perf-PID.map, jitdump's jitted-PID-N.so, perf's "[JIT] tid N" */
        expect_folded(H "\t 7f0001 LazyCompile:~run (/tmp/perf-1234.map)\n\t 7f0002 b (/root/.debug/jit/jitted-1234-7.so)\n"
                        "\t 7f0003 c ([JIT] tid 1234)\n\t 7f0004 d (/tmp/perf-x.map)\n",
                      "c;d;c_[j];b_[j];LazyCompile:~run_[j] 1\n");
        /* inlined */
        expect_folded(H "\t 11ca hot_add+0x2a (inlined)\n\t 11ca hot_loop+0x2a (inlined)\n\t 1214 work (/x)\n",
                      "c;work;hot_loop_[i];hot_add_[i] 1\n");
        /* names the folded format cannot carry as they are */
        expect_folded(H "\t 10 a;b<c;d> (/x)\n\t 20 x\001y\177z (/x)\n", "c;x?y?z;a:b<c:d> 1\n");
        /* C++ and Go names stay whole, spaces and parentheses included */
        expect_folded(H "\t 10 std::vector<int, std::allocator<int> >::push_back+0x4 (/usr/bin/app)\n"
                        "\t 20 net/http.(*Client).Do (/usr/bin/app)\n\t 30 (anonymous namespace)::run() (/x)\n"
                        "\t 40 operator new(unsigned long) (/x)\n",
                      "c;operator new(unsigned long);(anonymous namespace)::run();net/http.(*Client).Do;"
                      "std::vector<int, std::allocator<int> >::push_back 1\n");
        /* a symbol's parentheses without a dso after them */
        expect_folded(H "\t 10 foo(int)\n", "c;foo(int) 1\n");
        /* a frame ending in " NUMBER": the count still comes after the last space */
        expect_folded(H "\t 10 thread 42 (/x)\n", "c;thread 42 1\n");
#undef H
}

/* What is folded parses back as the same table: the names never break the format. */
static void test_round_trip(void **state) {
        const char *text = "c 1 [000] 1.0: cycles:\n\t 10 thread 42 (/x)\n\t 20 a;b (/x)\n\t 30 [unknown] (/y z)\n\n"
                           "c 1 [000] 1.0: cycles:\n\t 10 x 7 (/x)\n\nd 9 7:\n\n";
        _cleanup_(freep) char *out = NULL, *error = NULL;
        Folded t, back = FOLDED_INIT;
        StackFoldStats st;

        (void) state;
        fold(text, NULL, &t, &st);
        out = folded_text(&t);
        assert_int_equal(folded_parse(out, strlen(out), &back, &error), 0);
        assert_null(error);
        assert_int_equal(back.n, t.n);
        for (size_t i = 0; i < t.n; i++) {
                assert_string_equal(back.stacks[i].stack, t.stacks[i].stack);
                assert_int_equal(back.stacks[i].count, t.stacks[i].count);
        }
        folded_done(&t);
        folded_done(&back);
}

static void test_idle(void **state) {
        const char *text = "swapper     0 [000] 1.0: cycles:\n\tffffffff81000001 intel_idle+0x1 ([kernel.kallsyms])\n"
                           "\tffffffff81000002 cpuidle_enter_state ([kernel.kallsyms])\n\n"
                           "swapper     0 [001] 1.0: cycles:\n\tffffffff81000003 native_safe_halt ([kernel.kallsyms])\n\n"
                           "swapper     0 [001] 1.0: cycles:\n\n"
                           /* work in an interrupt on the idle task's stack: kept */
                           "swapper     0 [001] 1.0: cycles:\n\tffffffff81000004 rcu_do_batch ([kernel.kallsyms])\n"
                           "\tffffffff81000003 native_safe_halt ([kernel.kallsyms])\n\n"
                           /* an idle-looking leaf in another task: kept */
                           "poller 12 [001] 1.0: cycles:\n\t 10 wait_idle (/x)\n\n";
        StackFoldStats st;
        Folded t;
        char *got;

        (void) state;
        fold(text, NULL, &t, &st);
        got = folded_text(&t);
        assert_string_equal(got, "poller;wait_idle 1\nswapper;native_safe_halt_[k];rcu_do_batch_[k] 1\n");
        assert_int_equal(st.samples, 5);
        assert_int_equal(st.folded, 2);
        assert_int_equal(st.idle, 3);
        free(got);
        folded_done(&t);

        fold(text, &(StackFoldOptions) { .include_idle = true }, &t, &st);
        got = folded_text(&t);
        assert_string_equal(got, "poller;wait_idle 1\n"
                                 "swapper 1\n"
                                 "swapper;cpuidle_enter_state_[k];intel_idle_[k] 1\n"
                                 "swapper;native_safe_halt_[k] 1\n"
                                 "swapper;native_safe_halt_[k];rcu_do_batch_[k] 1\n");
        assert_int_equal(st.folded, 5);
        assert_int_equal(st.idle, 0);
        free(got);
        folded_done(&t);
}

static void test_include_pid(void **state) {
        Folded t;
        StackFoldStats st;
        char *got;

        (void) state;
        /* pid/tid: the pid; a lone number (perf's default, the TID): that */
        fold("Web Content 26438/26440 [000] 1.0: cycles:\n\t 10 f (/x)\n\nbash 77 [000] 1.0: cycles:\n\n",
             &(StackFoldOptions) { .include_pid = true }, &t, &st);
        got = folded_text(&t);
        assert_string_equal(got, "Web Content-26438;f 1\nbash-77 1\n");
        free(got);
        folded_done(&t);
}

/* Samples of another event than the first would mix two profiles. */
static void test_other_event(void **state) {
        Folded t;
        StackFoldStats st;
        char *got;

        (void) state;
        fold("a 1 [000] 1.0: 100 cycles:\n\t 10 f (/x)\n\na 1 [000] 1.1: 100 instructions:\n\t 10 f (/x)\n\n"
             "a 1 [000] 1.2: 100 cycles:\n\t 10 g (/x)\n\n",
             NULL, &t, &st);
        got = folded_text(&t);
        assert_string_equal(got, "a;f 1\na;g 1\n");
        assert_int_equal(st.samples, 3);
        assert_int_equal(st.folded, 2);
        assert_int_equal(st.other_event, 1);
        assert_int_equal(st.malformed, 0);
        free(got);
        folded_done(&t);
}

static void test_malformed(void **state) {
        Folded t;
        StackFoldStats st;
        char *got;

        (void) state;
        fold("\t 10 orphan (/x)\n"         /* a frame before any header */
             "no pid here\n"               /* neither header nor frame */
             "a 1 [000] 1.0: cycles:\n"
             "\t 10 f (/x)\n"
             "\t zz notanaddress (/x)\n"   /* a frame line without an address */
             "\t 12345678901234567 g (/x)\n" /* 17 hex digits */
             "  a.c:12\n"                  /* -F +srcline's lines */
             "\t 20 main (/x)\n\n",
             NULL, &t, &st);
        got = folded_text(&t);
        assert_string_equal(got, "a;main;f 1\n");
        assert_int_equal(st.samples, 1);
        assert_int_equal(st.malformed, 5);
        free(got);
        folded_done(&t);
}

/* A line longer than STACKFOLD_LINE_MAX is skipped and counted once, fed
 * whole or in pieces; one of exactly that length is kept. */
static void test_long_line(void **state) {
        const char *head = "a 1 [000] 1.0: cycles:\n\t 10 f (/x)\n\t 20 ";
        const char *tail = "\n\t 30 main (/x)\n\n";
        size_t hl = strlen(head), tl = strlen(tail);

        (void) state;
        for (size_t extra = 0; extra <= 1; extra++) {
                /* the frame line "\t 20 XXXX..." is STACKFOLD_LINE_MAX + extra bytes */
                size_t line = STACKFOLD_LINE_MAX + extra, len = hl + (line - 5) + tl;
                _cleanup_(freep) char *text = malloc(len);

                assert_non_null(text);
                memcpy(text, head, hl);
                memset(text + hl, 'x', line - 5); /* after "\t 20 " */
                memcpy(text + hl + line - 5, tail, tl);
                for (size_t chunk = 0; chunk <= 1000; chunk += 1000) {
                        StackFoldStats st;
                        Folded t;

                        fold_chunked(text, len, NULL, chunk, &t, &st);
                        assert_int_equal(t.n, 1);
                        assert_int_equal(st.malformed, extra);
                        if (extra) {
                                assert_string_equal(t.stacks[0].stack, "a;main;f");
                                assert_int_equal(st.truncated, 0);
                        } else {
                                /* kept, its name cut at STACKFOLD_FRAME_NAME_MAX */
                                assert_int_equal(strlen(t.stacks[0].stack),
                                                 strlen("a;main;") + STACKFOLD_FRAME_NAME_MAX + strlen(";f"));
                                assert_int_equal(st.truncated, 1);
                        }
                        folded_done(&t);
                }
        }

        /* A long line never ended: dropped at finish, nothing buffered. */
        {
                _cleanup_(stackfold_freep) StackFolder *f = NULL;
                _cleanup_(freep) char *big = malloc(STACKFOLD_LINE_MAX);
                StackFoldStats st;
                Folded t = FOLDED_INIT;

                assert_non_null(big);
                memset(big, 'y', STACKFOLD_LINE_MAX);
                assert_int_equal(stackfold_new(NULL, &f), 0);
                assert_int_equal(stackfold_feed(f, "a 1 [000] 1.0: cycles:\n", 23), 0);
                for (int i = 0; i < 4; i++)
                        assert_int_equal(stackfold_feed(f, big, STACKFOLD_LINE_MAX), 0);
                assert_int_equal(stackfold_finish(f, &t, &st), 0);
                assert_int_equal(st.malformed, 1);
                assert_int_equal(t.n, 1);
                assert_string_equal(t.stacks[0].stack, "a");
                folded_done(&t);
        }
}

/* Deeper than FOLDED_DEPTH_MAX: the root-most frames stay. */
static void test_deep_stack(void **state) {
        _cleanup_(freep) char *text = NULL;
        char *p;
        size_t depth = 3000;
        StackFoldStats st;
        Folded t;
        const char *s;
        size_t frames = 1;

        (void) state;
        text = malloc(64 + depth * 32);
        assert_non_null(text);
        p = text + snprintf(text, 64, "deep 1 [000] 1.0: cycles:\n");
        /* leaf first: f2999 ... f0 (the root) */
        for (size_t i = depth; i > 0; i--)
                p += snprintf(p, 32, "\t %zx f%zu (/x)\n", i, i - 1);
        fold(text, NULL, &t, &st);
        assert_int_equal(st.truncated, 1);
        assert_int_equal(t.n, 1);
        for (s = t.stacks[0].stack; (s = strchr(s, ';')); s++)
                frames++;
        assert_int_equal(frames, FOLDED_DEPTH_MAX);
        assert_true(strncmp(t.stacks[0].stack, "deep;f0;f1;f2;", 14) == 0);
        assert_non_null(strstr(t.stacks[0].stack, ";f1022"));
        assert_null(strstr(t.stacks[0].stack, ";f1023"));
        folded_done(&t);

        /* 1000 frames of 200 bytes: the bytes bound (FOLDED_STACK_MAX) cuts first */
        free(text);
        text = malloc(64 + 1000 * 256);
        assert_non_null(text);
        p = text + snprintf(text, 64, "wide 1 [000] 1.0: cycles:\n");
        for (size_t i = 1000; i > 0; i--)
                p += snprintf(p, 256, "\t %zx %0200zu (/x)\n", i, i - 1);
        fold(text, NULL, &t, &st);
        assert_int_equal(st.truncated, 1);
        assert_int_equal(t.n, 1);
        assert_true(strlen(t.stacks[0].stack) <= FOLDED_STACK_MAX);
        assert_true(strlen(t.stacks[0].stack) > FOLDED_STACK_MAX - 202);
        assert_true(strncmp(t.stacks[0].stack, "wide;00000", 10) == 0);
        folded_done(&t);
}

static void test_sorted(void **state) {
        Folded t;
        StackFoldStats st;

        (void) state;
        fold("b 1 1.0: c:\n\t 1 z (/x)\n\na 1 1.0: c:\n\t 1 z (/x)\n\nb 1 1.0: c:\n\t 1 a (/x)\n\n"
             "B 1 1.0: c:\n\nb 1 1.0: c:\n\t 1 z (/x)\n\n",
             NULL, &t, &st);
        assert_int_equal(t.n, 4);
        assert_int_equal(t.total, 5);
        assert_string_equal(t.stacks[0].stack, "B");
        assert_string_equal(t.stacks[1].stack, "a;z");
        assert_string_equal(t.stacks[2].stack, "b;a");
        assert_string_equal(t.stacks[3].stack, "b;z");
        assert_int_equal(t.stacks[3].count, 2);
        folded_done(&t);
}

static void test_api(void **state) {
        _cleanup_(stackfold_freep) StackFolder *f = NULL;
        Folded t = FOLDED_INIT, untouched = { .n = 42 };
        StackFoldStats st = {};

        (void) state;
        assert_int_equal(stackfold_new(NULL, NULL), -EINVAL);
        assert_int_equal(stackfold_new(NULL, &f), 0);
        assert_int_equal(stackfold_feed(NULL, "x", 1), -EINVAL);
        assert_int_equal(stackfold_feed(f, NULL, 1), -EINVAL);
        assert_int_equal(stackfold_feed(f, NULL, 0), 0);
        assert_int_equal(stackfold_feed(f, "", 0), 0);
        assert_int_equal(stackfold_finish(f, NULL, &st), -EINVAL);
        /* empty input: an empty table */
        assert_int_equal(stackfold_finish(f, &t, NULL), 0);
        assert_int_equal(t.n, 0);
        assert_int_equal(t.total, 0);
        /* once only */
        assert_int_equal(stackfold_feed(f, "a 1\n", 4), -ESTALE);
        assert_int_equal(stackfold_finish(f, &untouched, &st), -ESTALE);
        assert_int_equal(untouched.n, 42);
        folded_done(&t);
        assert_null(stackfold_free(NULL));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_fixtures),
                cmocka_unit_test(test_fixture_rules),
                cmocka_unit_test(test_chunking),
                cmocka_unit_test(test_headers),
                cmocka_unit_test(test_frames),
                cmocka_unit_test(test_round_trip),
                cmocka_unit_test(test_idle),
                cmocka_unit_test(test_include_pid),
                cmocka_unit_test(test_other_event),
                cmocka_unit_test(test_malformed),
                cmocka_unit_test(test_long_line),
                cmocka_unit_test(test_deep_stack),
                cmocka_unit_test(test_sorted),
                cmocka_unit_test(test_api),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
