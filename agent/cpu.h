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
        unsigned ncpus;  /* number of "cpuN" lines: changes on hotplug */
} CpuSample;

/* Percent of the interval, each in [0,100]. busy = user + nice + system +
 * irq + softirq. iowait and steal are not counted as busy (the CPU was
 * idle for us, or taken by the hypervisor) but are reported apart.
 * Guest time is already inside user/nice and is not counted twice. */
typedef struct CpuUsage {
        double busy, user, system, iowait, steal, irq, idle;
} CpuUsage;

/* Parse the text of /proc/stat. Returns 0, or -EBADMSG when the aggregate
 * "cpu" line is missing, truncated (fewer than 4 numbers), or holds
 * something that is not a number; *ret_error (may be NULL) then says what,
 * with the line number. ret is only written on success. */
int cpu_parse_stat(const char *buf, size_t len, CpuSample *ret, char **ret_error);

/* Utilisation between two samples. Returns 0; -ERANGE when any counter
 * went backwards (counter reset, CPU hot-unplug), idle and iowait counted
 * as one (the kernel moves idle time into and out of iowait after the
 * fact, so either alone may step back); -ENODATA when no time
 * passed (zero total delta); -ESTALE when ncpus changed between samples
 * (hotplug: the aggregate jumps, re-baseline). On error the caller keeps
 * `cur` as the new baseline and skips this interval. */
int cpu_usage_between(const CpuSample *prev, const CpuSample *cur, CpuUsage *ret);

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
