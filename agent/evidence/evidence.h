/* Evidence at breach: which processes burned the CPU during the overload
 * window, from two snapshots of /proc/PID/stat (or a fixture tree laid out
 * like /proc). Parsing and formatting are pure; snapshots are the thin I/O
 * shell, one openat()+read() per process so a breach on a busy host costs
 * milliseconds. */
#pragma once

#include "macro.h"

#define EVIDENCE_COMM_MAX 64      /* comm from stat, up to 16 chars in Linux but be generous */
#define EVIDENCE_CMDLINE_MAX 160  /* cut, with "…" appended when cut */

typedef struct ProcStat {
        int pid;
        char comm[EVIDENCE_COMM_MAX]; /* raw bytes as the kernel prints them, NUL-terminated; a longer comm is cut */
        char state;
        uint64_t utime, stime; /* clock ticks */
        uint64_t starttime;    /* ticks after boot */
        uint64_t rss_pages;
} ProcStat;

/* Pure: parse the contents of /proc/PID/stat. comm may contain spaces and
 * ')' (find the LAST ')'). -EBADMSG on anything malformed (short, missing
 * fields, non-numeric, overflow). The line must be complete (end in '\n'):
 * a cut read would otherwise pass as a smaller number. ret only written on
 * success. */
int proc_stat_parse(const char *buf, size_t len, ProcStat *ret);

typedef struct ProcSnapshot ProcSnapshot; /* opaque: pid-sorted array of {pid, starttime, ticks=utime+stime, comm, rss} */

/* Read every numeric dir of proc_root ("/proc" or a fixture dir) and its
 * stat. Processes that vanish or are unreadable between readdir and read
 * are skipped silently; a malformed stat is skipped and counted. `at` is
 * the caller's CLOCK_BOOTTIME/MONOTONIC usec, stored for the delta.
 * proc_root/uptime is read too (when present), for the since-start path
 * of proc_top(): it is on the same clock as starttime, even in a time
 * namespace or a fixture. */
int proc_snapshot_take(const char *proc_root, usec_t at, ProcSnapshot **ret);
ProcSnapshot *proc_snapshot_free(ProcSnapshot *s); /* takes NULL, returns NULL */
static inline void proc_snapshot_freep(ProcSnapshot **s) {
        proc_snapshot_free(*s);
}
size_t proc_snapshot_size(const ProcSnapshot *s);
/* How many stat files did not parse: worth a log line, never fatal. */
size_t proc_snapshot_malformed(const ProcSnapshot *s);
/* One pid's entry (ret_* may be NULL); -ENOENT when absent. */
int proc_snapshot_lookup(const ProcSnapshot *s, int pid, uint64_t *ret_ticks, uint64_t *ret_starttime);

typedef struct ProcTop {
        int pid;
        char comm[EVIDENCE_COMM_MAX]; /* escaped as cmdline is, cut with "…" */
        char cmdline[EVIDENCE_CMDLINE_MAX + 4];
        double cpu_pct; /* percent of ONE core over the interval, like top */
        uint64_t rss_kb;
        bool new_in_window;
} ProcTop;

/* Top n by CPU ticks between before and after (after->at - before->at is
 * the interval). A pid in `after` with a different starttime than in
 * `before` (pid reuse) or absent in `before` counts from 0 ticks (all its
 * ticks happened in the window, clamp to the interval) and is flagged
 * new_in_window. before == NULL: use lifetime ticks over the lifetime,
 * clearly flagged by returning 1 instead of 0 (caller says "since process
 * start"); that needs after's uptime (-ENODATA without it). Ties broken by
 * pid. Processes that used no CPU are left out. ticks_per_sec and page_kb
 * injected (pass sysconf values in production) so tests are deterministic.
 * cmdline read from proc_root/PID/cmdline (NUL → space, trailing NULs
 * dropped, control chars and non-UTF-8 bytes escaped as \xNN, cut to
 * EVIDENCE_CMDLINE_MAX bytes on a UTF-8 boundary + "…"); empty cmdline
 * (kernel threads), or a process gone or replaced since `after` → "[comm]".
 * *ret_n <= n. -EINVAL when after->at is not later than before->at. */
int proc_top(const ProcSnapshot *before, const ProcSnapshot *after, const char *proc_root, unsigned ticks_per_sec,
             unsigned page_kb, ProcTop *ret, size_t n, size_t *ret_n);

/* Pure: the cmdline rule above for `len` bytes of /proc/PID/cmdline.
 * `more` says the read stopped before EOF, so "…" follows even when what
 * was read fits. Empty (after trailing NULs) → "[comm]" with comm escaped. */
void proc_cmdline_format(const char *buf, size_t len, bool more, const char *comm,
                         char ret[static EVIDENCE_CMDLINE_MAX + 4]);
