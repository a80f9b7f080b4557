#include <assert.h>
#include <stddef.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include "cpu.h"
#include "error.h"
#include "numparse.h"

/* /proc/stat prints 4 numbers since 2.4, 10 since 2.6.33; a newer kernel
 * may append more, which we accept and ignore. */
#define CPU_FIELDS_MIN 4
#define CPU_FIELDS_MAX 10
/* parse_aggregate fills CpuTimes as an array, in the kernel's order. */
static_assert(sizeof(CpuTimes) == CPU_FIELDS_MAX * sizeof(uint64_t), "CpuTimes is the 10 counters");
static_assert(offsetof(CpuTimes, guest_nice) == 9 * sizeof(uint64_t), "CpuTimes is in /proc/stat's order");

#define READ_SIZE_START ((size_t) 4096)
#define READ_SIZE_MAX ((size_t) 1024 * 1024)

/* How much of a bad token an error message quotes. */
#define TOKEN_QUOTE_MAX 32

struct CpuReader {
        char *path;
        int fd;
        bool is_proc;
        unsigned hz, cpus;      /* for the plausibility bound, procfs only */
        dev_t dev;
        ino_t ino;
        char *buf;
        size_t buf_size;
};

static bool is_blank(char c) {
        return c == ' ' || c == '\t';
}

/* The numbers of the aggregate line, after the "cpu" token, into v in
 * /proc/stat's order (CpuTimes' field order); fields it lacks stay 0.
 * `eol` is the line's newline: neither blank nor digit, it stops every
 * scan below, so the loops need no end checks. One pass: each number is
 * accumulated while it is scanned; the token is only delimited again for
 * the error message. */
static int parse_aggregate(const char *p, const char *eol, unsigned lineno, uint64_t v[static CPU_FIELDS_MAX],
                           char **ret_error) {
        unsigned n = 0;

        assert(*eol == '\n');
        for (;;) {
                const char *tok;
                uint64_t x = 0;
                unsigned d;
                int r = 0;

                while (is_blank(*p))
                        p++;
                if (*p == '\n') /* the only newline from here on is eol */
                        break;
                tok = p;
                while ((d = (unsigned) (unsigned char) *p - '0') <= 9) {
                        x = x * 10 + d;
                        p++;
                }
                if (*p != '\n' && !is_blank(*p))
                        r = -EINVAL;
                /* One compare for the rare cases: no digit at all (the
                 * length wraps), or more than 19, which may not fit. */
                else if ((size_t) (p - tok) - 1 >= 19)
                        r = p == tok ? -EINVAL : parse_u64_decimal(tok, (size_t) (p - tok), &x);
                if (r < 0) {
                        char quoted[TOKEN_QUOTE_MAX + 4];

                        while (p != eol && !is_blank(*p))
                                p++;
                        /* parse_u64_decimal's verdict: a non-digit anywhere wins over overflow */
                        r = parse_u64_decimal(tok, (size_t) (p - tok), &x);
                        error_excerpt(tok, (size_t) (p - tok), quoted, sizeof quoted);
                        return error_set(ret_error, -EBADMSG, "line %u: field %u '%s' %s", lineno, n + 1, quoted,
                                           r == -ERANGE ? "is out of range" : "is not a number");
                }
                if (n < CPU_FIELDS_MAX)
                        v[n] = x;
                n++;
        }

        if (n < CPU_FIELDS_MIN)
                return error_set(ret_error, -EBADMSG, "line %u: aggregate cpu line has %u number%s, expected at least %u",
                                   lineno, n, n == 1 ? "" : "s", (unsigned) CPU_FIELDS_MIN);
        return 0;
}

/* The kernel prints the aggregate line first; nothing after it is read,
 * so the cost does not grow with the number of CPUs. Other layouts (a
 * snapshot, a future kernel) are searched line by line for it. */
int cpu_parse_stat(const char *buf, size_t len, CpuSample *ret, char **ret_error) {
        const char *p = buf, *end = buf + len;
        unsigned lineno = 0;

        if (!buf && len > 0)
                return -EINVAL;
        if (len == 0)
                return error_set(ret_error, -EBADMSG, "empty input, no aggregate cpu line");

        while (p < end) {
                const char *eol = memchr(p, '\n', (size_t) (end - p));
                const char *line_end = eol ?: end;

                lineno++;
                /* "cpu" as the whole first token: "cpu0", "cpufreq" are not it. */
                if (line_end - p >= 3 && memcmp(p, "cpu", 3) == 0 &&
                    (line_end - p == 3 || is_blank(p[3]))) {
                        uint64_t v[CPU_FIELDS_MAX] = {};
                        int r;

                        /* A read cut inside this line would yield too few
                         * or too small numbers: only a whole line counts. */
                        if (!eol)
                                return error_set(ret_error, -EBADMSG, "line %u: aggregate cpu line is truncated (no newline)",
                                                   lineno);
                        r = parse_aggregate(p + 3, eol, lineno, v, ret_error);
                        if (r < 0)
                                return r;
                        memcpy(&ret->total, v, sizeof v);
                        return 0;
                }
                p = eol ? eol + 1 : end;
        }

        return error_set(ret_error, -EBADMSG, "no aggregate cpu line in %u lines", lineno);
}

static int delta(uint64_t prev, uint64_t cur, uint64_t *ret) {
        if (cur < prev)
                return -ERANGE;
        *ret = cur - prev;
        return 0;
}

static double pct(uint64_t part, uint64_t total) {
        double v = (double) part * 100.0 / (double) total;
        return MIN(MAX(v, 0.0), 100.0);
}

uint64_t cpu_ticks_bound(usec_t elapsed, unsigned hz, unsigned cpus) {
        uint64_t per_second = (uint64_t) hz * cpus, ticks;

        if (per_second == 0)
                return 0;
        /* Twice the time every CPU could have counted, plus one second of
         * every CPU: timer lateness and tick rounding stay far inside it,
         * a CPU's idle time since boot arriving at once does not. A stall
         * too long to compute (centuries) has no bound worth having. */
        if (__builtin_mul_overflow(elapsed, per_second, &ticks))
                return UINT64_MAX;
        ticks /= USEC_PER_SEC;
        if (ticks > (UINT64_MAX - per_second) / 2)
                return UINT64_MAX;
        return 2 * ticks + per_second;
}

int cpu_interval_between(const CpuSample *prev, const CpuSample *cur, uint64_t max_ticks, CpuInterval *ret) {
        const CpuTimes *a, *b;
        uint64_t user, nice, system, idle, iowait, irq, softirq, steal, guest, guest_nice, idle_all;
        uint64_t busy, total;

        if (!prev || !cur || !ret)
                return -EINVAL;
        a = &prev->total;
        b = &cur->total;

        if (delta(a->user, b->user, &user) < 0 ||
            delta(a->nice, b->nice, &nice) < 0 ||
            delta(a->system, b->system, &system) < 0 ||
            delta(a->irq, b->irq, &irq) < 0 ||
            delta(a->softirq, b->softirq, &softirq) < 0 ||
            delta(a->steal, b->steal, &steal) < 0 ||
            delta(a->guest, b->guest, &guest) < 0 ||
            delta(a->guest_nice, b->guest_nice, &guest_nice) < 0)
                return -ERANGE;

        /* The kernel may move an idle period between idle and iowait after
         * the fact (NO_HZ; see Documentation/filesystems/proc.rst, "iowait
         * ... will decrease in certain conditions"), so either one alone may
         * step back. Only their sum must not. Rejecting those intervals would
         * leave gaps that keep restarting the detector's run. */
        if (a->idle > UINT64_MAX - a->iowait || b->idle > UINT64_MAX - b->iowait)
                return -ERANGE;
        if (delta(a->idle + a->iowait, b->idle + b->iowait, &idle_all) < 0)
                return -ERANGE;
        if (b->iowait >= a->iowait) {
                iowait = MIN(b->iowait - a->iowait, idle_all);
                idle = idle_all - iowait;
        } else {
                iowait = 0;
                idle = idle_all;
        }

        if (__builtin_add_overflow(user, nice, &busy) ||
            __builtin_add_overflow(busy, system, &busy) ||
            __builtin_add_overflow(busy, irq, &busy) ||
            __builtin_add_overflow(busy, softirq, &busy))
                return -ERANGE;
        /* Guest time is already inside user and nice. */
        if (__builtin_add_overflow(busy, idle_all, &total) ||
            __builtin_add_overflow(total, steal, &total))
                return -ERANGE;
        if (total == 0)
                return -ENODATA;
        if (max_ticks > 0 && total > max_ticks)
                return -ESTALE;

        *ret = (CpuInterval) {
                .busy = busy,
                .user = user + nice,
                .system = system,
                .iowait = iowait,
                .steal = steal,
                .irq = irq + softirq,
                .idle = idle,
                .total = total,
        };
        return 0;
}

double cpu_interval_busy(const CpuInterval *i) {
        return pct(i->busy, i->total);
}

void cpu_interval_usage(const CpuInterval *i, CpuUsage *ret) {
        *ret = (CpuUsage) {
                .busy = pct(i->busy, i->total),
                .user = pct(i->user, i->total),
                .system = pct(i->system, i->total),
                .iowait = pct(i->iowait, i->total),
                .steal = pct(i->steal, i->total),
                .irq = pct(i->irq, i->total),
                .idle = pct(i->idle, i->total),
        };
}

int cpu_usage_between(const CpuSample *prev, const CpuSample *cur, uint64_t max_ticks, CpuUsage *ret) {
        CpuInterval i;
        int r;

        if (!ret)
                return -EINVAL;
        r = cpu_interval_between(prev, cur, max_ticks, &i);
        if (r < 0)
                return r;
        cpu_interval_usage(&i, ret);
        return 0;
}

static int reader_open(const char *path, int *ret_fd, struct stat *ret_st) {
        _cleanup_(closep) int fd = -1;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return negative_errno();
        if (fstat(fd, ret_st) < 0)
                return negative_errno();
        if (S_ISDIR(ret_st->st_mode))
                return -EISDIR;

        *ret_fd = TAKE_FD(fd);
        return 0;
}

int cpu_reader_new(const char *path, CpuReader **ret) {
        _cleanup_(cpu_reader_freep) CpuReader *r = NULL;
        struct statfs sfs;
        struct stat st;
        int k;

        if (isempty(path) || !ret)
                return -EINVAL;

        r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        r->fd = -1;

        r->path = strdup(path);
        if (!r->path)
                return -ENOMEM;

        k = reader_open(path, &r->fd, &st);
        if (k < 0)
                return k;
        r->dev = st.st_dev;
        r->ino = st.st_ino;

        /* procfs regenerates the text on every read from offset 0; a plain
         * file (tests, a snapshot) may be replaced under the path. */
        if (fstatfs(r->fd, &sfs) < 0)
                return negative_errno();
        r->is_proc = sfs.f_type == PROC_SUPER_MAGIC;
        if (r->is_proc) {
                long hz = sysconf(_SC_CLK_TCK), cpus = sysconf(_SC_NPROCESSORS_CONF);
                if (hz > 0 && hz <= 100000 && cpus > 0 && cpus <= 65536) {
                        r->hz = (unsigned) hz;
                        r->cpus = (unsigned) cpus;
                }
        }

        r->buf_size = READ_SIZE_START;
        r->buf = malloc(r->buf_size);
        if (!r->buf)
                return -ENOMEM;

        *ret = TAKE_PTR(r);
        return 0;
}

CpuReader *cpu_reader_free(CpuReader *r) {
        if (!r)
                return NULL;
        if (r->fd >= 0)
                close(r->fd);
        free(r->path);
        free(r->buf);
        free(r);
        return NULL;
}

static int reader_refresh(CpuReader *r) {
        struct stat st;
        int fd, k;

        if (r->is_proc)
                return 0;
        if (stat(r->path, &st) < 0)
                return negative_errno();
        if (st.st_dev == r->dev && st.st_ino == r->ino)
                return 0;

        k = reader_open(r->path, &fd, &st);
        if (k < 0)
                return k;
        close(r->fd);
        r->fd = fd;
        r->dev = st.st_dev;
        r->ino = st.st_ino;
        return 0;
}

/* Reads the whole file. procfs reports size 0, so read to EOF; the buffer
 * grows and keeps its size, so later reads take one pread.
 *
 * Not read_full_file()/read_full_fd() (fileio.h), on purpose: this runs on
 * every sample, and those open the file, read from its offset into a
 * fresh buffer and wipe it on free (they are made for secrets). Here the
 * fd stays open and the buffer is kept, so a sample is one pread at
 * offset 0, which also makes procfs generate the text anew (a read at the
 * old offset would only see EOF); tests/bench counts its instructions. */
static int reader_slurp(CpuReader *r, size_t *ret_len) {
        size_t n = 0;

        for (;;) {
                ssize_t k;

                if (n == r->buf_size) {
                        size_t size;
                        char *b;

                        if (r->buf_size >= READ_SIZE_MAX)
                                return -EFBIG;
                        size = MIN(r->buf_size * 2, READ_SIZE_MAX);
                        b = realloc(r->buf, size);
                        if (!b)
                                return -ENOMEM;
                        r->buf = b;
                        r->buf_size = size;
                }

                k = pread(r->fd, r->buf + n, r->buf_size - n, (off_t) n);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (k == 0)
                        break;
                n += (size_t) k;
                /* procfs hands the whole text to a read that has room for
                 * it: a short read is the end, no second pread to see 0. */
                if (r->is_proc && n < r->buf_size)
                        break;
        }

        *ret_len = n;
        return 0;
}

uint64_t cpu_reader_max_ticks(const CpuReader *r, usec_t elapsed) {
        return r->hz > 0 ? cpu_ticks_bound(elapsed, r->hz, r->cpus) : 0;
}

int cpu_reader_read(CpuReader *r, CpuSample *ret, char **ret_error) {
        size_t len;
        int k;

        if (!r || !ret)
                return -EINVAL;

        k = reader_refresh(r);
        if (k < 0)
                return k;
        k = reader_slurp(r, &len);
        if (k < 0)
                return k;

        return cpu_parse_stat(r->buf, len, ret, ret_error);
}
