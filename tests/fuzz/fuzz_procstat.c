/* /proc/stat (cpu_parse_stat, and the interval arithmetic on what it
 * returns), /proc/PID/stat (proc_stat_parse) and /proc/PID/cmdline
 * (proc_cmdline_format, what a breach alert shows), on the same bytes:
 * all three are written by the kernel, the last two with a process's own
 * choice of name and arguments. */
#include <math.h>

#include "cpu.h"
#include "evidence.h"
#include "fuzz.h"

static void check_usage(const CpuUsage *u) {
        const double v[] = { u->busy, u->user, u->system, u->iowait, u->steal, u->irq, u->idle };

        for (size_t i = 0; i < ELEMENTSOF(v); i++)
                FUZZ_CHECK(!isnan(v[i]) && v[i] >= 0.0 && v[i] <= 100.0);
        /* busy, iowait, steal and idle split the whole interval */
        FUZZ_CHECK(fabs(u->busy + u->iowait + u->steal + u->idle - 100.0) < 1e-6);
}

static void cpu(const char *buf, size_t size) {
        _cleanup_(freep) char *error = NULL;
        CpuSample s, zero = {};
        CpuUsage u;
        int r;

        r = cpu_parse_stat(buf, size, &s, &error);
        if (r < 0) {
                FUZZ_CHECK(r == -EBADMSG || r == -ENOMEM);
                FUZZ_CHECK(r != -EBADMSG || (error && !strchr(error, '\n')));
                return;
        }
        FUZZ_CHECK(!error);
        /* Since boot (a zero baseline), and from the sample to itself. */
        r = cpu_usage_between(&zero, &s, 0, &u);
        FUZZ_CHECK(r == 0 || r == -ENODATA || r == -ERANGE);
        if (r == 0)
                check_usage(&u);
        FUZZ_CHECK(cpu_usage_between(&s, &s, 0, &u) < 0);
        r = cpu_usage_between(&zero, &s, cpu_ticks_bound(USEC_PER_SEC, 100, 2), &u);
        if (r == 0)
                check_usage(&u);
}

/* What goes into Slack and the journal: bounded, valid UTF-8, and no
 * control character, C0 or C1, raw. */
static void check_shown(const char *s) {
        size_t n = strnlen(s, EVIDENCE_CMDLINE_MAX + 4);

        FUZZ_CHECK(n < EVIDENCE_CMDLINE_MAX + 4);
        FUZZ_CHECK(fuzz_utf8_valid(s, n));
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char) s[i];

                FUZZ_CHECK(c >= 0x20 && c != 0x7f);
                FUZZ_CHECK(!(c == 0xc2 && i + 1 < n && (unsigned char) s[i + 1] <= 0x9f));
        }
}

static void pid_stat(const char *buf, size_t size) {
        char shown[EVIDENCE_CMDLINE_MAX + 4], comm[EVIDENCE_COMM_MAX];
        ProcStat st;

        if (proc_stat_parse(buf, size, &st) >= 0) {
                FUZZ_CHECK(st.pid > 0);
                FUZZ_CHECK(strnlen(st.comm, sizeof st.comm) < sizeof st.comm);
                FUZZ_CHECK((st.state >= 'A' && st.state <= 'Z') || (st.state >= 'a' && st.state <= 'z'));
                /* a kernel thread: no cmdline, the comm in brackets */
                proc_cmdline_format("", 0, false, st.comm, shown);
                check_shown(shown);
        }

        /* the bytes as a cmdline, whole and as a read cut short */
        proc_cmdline_format(buf, size, false, "x", shown);
        check_shown(shown);
        proc_cmdline_format(buf, size, true, "x", shown);
        check_shown(shown);
        /* ... and as a comm, which a process sets freely (prctl) */
        memcpy(comm, buf, MIN(size, sizeof comm - 1));
        comm[MIN(size, sizeof comm - 1)] = '\0';
        proc_cmdline_format("", 0, false, comm, shown);
        check_shown(shown);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        /* Not NUL-terminated: both parsers take a length, as read() gives it. */
        cpu((const char *) data, size);
        pid_stat((const char *) data, size);
        return 0;
}
