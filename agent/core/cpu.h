/* CPU source: reading and parsing /proc/stat (path configurable) and turning
 * two samples into utilisation for the interval between them, with user,
 * system, iowait and steal reported apart. Parsing and the arithmetic are
 * pure; CpuReader is the thin I/O shell (one kept-open fd, pread). */
#pragma once

#include "macro.h"

/* Jiffies from the aggregate "cpu" line, in /proc/stat's field order.
 * Kernels older than 2.6.33 print fewer fields; missing ones read 0. */
typedef struct CpuTimes {
        uint64_t user, nice, system, idle, iowait, irq, softirq, steal, guest, guest_nice;
} CpuTimes;

typedef struct CpuSample {
        CpuTimes total;  /* the aggregate "cpu" line */
} CpuSample;

/* Percent of the interval, each in [0,100]. busy = user + nice + system +
 * irq + softirq. iowait and steal are not counted as busy (the CPU was
 * idle for us, or taken by the hypervisor) but are reported apart.
 * Guest time is already inside user/nice and is not counted twice. */
typedef struct CpuUsage {
        double busy, user, system, iowait, steal, irq, idle;
} CpuUsage;

/* Parse the text of /proc/stat: the first aggregate "cpu" line, which the
 * kernel prints first; nothing after it is read. Returns 0, or -EBADMSG
 * when that line is missing, truncated (no newline; fewer than 4 numbers),
 * or holds something that is not a number; *ret_error (may be NULL) then
 * says what, with the line number. ret is only written on success. */
int cpu_parse_stat(const char *buf, size_t len, CpuSample *ret, char **ret_error);

/* The most jiffies the aggregate line can plausibly advance in `elapsed`
 * on `cpus` CPUs (the possible ones, online or not) ticking at `hz`
 * (USER_HZ): twice the real figure plus one second of every CPU. 0 when
 * hz or cpus is 0 (no bound). CPU hotplug breaks it: the kernel sums the
 * idle time of every possible CPU, taken from the tick for an offline one
 * and from the NO_HZ idle clock for an online one, so onlining a CPU adds
 * its whole idle time since boot at once (and offlining takes it away,
 * which the counters going backwards already show). */
uint64_t cpu_ticks_bound(usec_t elapsed, unsigned hz, unsigned cpus);

/* Jiffies of one interval, summed as CpuUsage reports them (user holds
 * nice, irq holds softirq); total is what the percentages divide by. */
typedef struct CpuInterval {
        uint64_t busy, user, system, iowait, steal, irq, idle, total;
} CpuInterval;

/* The interval between two samples. Returns 0; -ERANGE when any counter
 * went backwards (counter reset, CPU hot-unplug), idle and iowait counted
 * as one (the kernel moves idle time into and out of iowait after the
 * fact, so either alone may step back); -ENODATA when no time
 * passed (zero total delta); -ESTALE when the total advanced by more than
 * max_ticks (0: unchecked), the jump a CPU coming online makes. On error
 * the caller keeps `cur` as the new baseline and skips this interval. */
int cpu_interval_between(const CpuSample *prev, const CpuSample *cur, uint64_t max_ticks, CpuInterval *ret);
/* busy as a percentage: all the detector needs per sample. */
double cpu_interval_busy(const CpuInterval *i);
/* Every percentage, for status: computed when asked, not per sample. */
void cpu_interval_usage(const CpuInterval *i, CpuUsage *ret);
/* cpu_interval_between() then cpu_interval_usage(). */
int cpu_usage_between(const CpuSample *prev, const CpuSample *cur, uint64_t max_ticks, CpuUsage *ret);

typedef struct CpuReader CpuReader;

/* Opens the path and keeps the fd; /proc/stat is re-read with pread(0). */
int cpu_reader_new(const char *path, CpuReader **ret);
CpuReader *cpu_reader_free(CpuReader *r);
static inline void cpu_reader_freep(CpuReader **r) {
        cpu_reader_free(*r);
}
/* Read and parse one sample. A plain file that a test rewrites by rename
 * is reopened when the path now names another inode. Returns 0, -EBADMSG
 * (with *ret_error) for garbage, or a negative errno from the read. */
int cpu_reader_read(CpuReader *r, CpuSample *ret, char **ret_error);

/* cpu_ticks_bound() for this machine when the reader reads procfs; 0 (no
 * bound) for a plain file, whose counters a test or snapshot sets freely.
 * r must not be NULL. */
uint64_t cpu_reader_max_ticks(const CpuReader *r, usec_t elapsed);
