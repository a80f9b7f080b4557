#include <fcntl.h>
#include <linux/magic.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include "cpu.h"
#include "numparse.h"

/* /proc/stat prints 4 numbers since 2.4, 10 since 2.6.33; a newer kernel
 * may append more, which we accept and ignore. */
#define CPU_FIELDS_MIN 4
#define CPU_FIELDS_MAX 10

#define READ_SIZE_START ((size_t) 4096)
#define READ_SIZE_MAX ((size_t) 1024 * 1024)

/* How much of a bad token an error message quotes. */
#define TOKEN_QUOTE_MAX 32

struct CpuReader {
        char *path;
        int fd;
        bool is_proc;
        dev_t dev;
        ino_t ino;
        char *buf;
        size_t buf_size;
};

static bool is_blank(char c) {
        return c == ' ' || c == '\t';
}


/* A token as it may be quoted in a message: bounded, printable. */
static void quote_token(const char *s, size_t n, char out[static TOKEN_QUOTE_MAX + 4]) {
        size_t k = MIN(n, (size_t) TOKEN_QUOTE_MAX);

        for (size_t i = 0; i < k; i++) {
                unsigned char c = (unsigned char) s[i];
                out[i] = (c >= 0x20 && c < 0x7f) ? (char) c : '?';
        }
        if (n > k) {
                memcpy(out + k, "...", 3);
                k += 3;
        }
        out[k] = '\0';
}

static int parse_error(char **ret_error, const char *fmt, ...) _printf_(2, 3);
static int parse_error(char **ret_error, const char *fmt, ...) {
        va_list ap;
        int r;

        if (!ret_error)
                return -EBADMSG;

        va_start(ap, fmt);
        r = vasprintf(ret_error, fmt, ap);
        va_end(ap);
        if (r < 0) {
                *ret_error = NULL;
                return -ENOMEM;
        }
        return -EBADMSG;
}

/* The numbers of the aggregate line, after the "cpu" token. One pass:
 * each number is accumulated while it is scanned; the token is only
 * delimited again for the error message. */
static int parse_aggregate(const char *p, const char *end, unsigned lineno, CpuTimes *ret, char **ret_error) {
        uint64_t v[CPU_FIELDS_MAX] = {};
        unsigned n = 0;

        for (;;) {
                const char *tok;
                char quoted[TOKEN_QUOTE_MAX + 4];
                uint64_t x = 0;
                int r = 0;

                while (p < end && is_blank(*p))
                        p++;
                if (p >= end)
                        break;
                tok = p;
                /* Digits only in the loop; what stopped it must be a blank
                 * or the end. 19 digits always fit in 64 bits, so only a
                 * longer number needs the checked parse. */
                for (unsigned d; p < end && (d = (unsigned) (unsigned char) *p - '0') <= 9; p++)
                        x = x * 10 + d;
                if ((p < end && !is_blank(*p)) || p == tok)
                        r = -EINVAL;
                else if (p - tok > 19)
                        r = parse_u64_decimal(tok, (size_t) (p - tok), &x);
                if (r < 0) {
                        while (p < end && !is_blank(*p))
                                p++;
                        /* parse_u64_decimal's verdict: a non-digit anywhere wins over overflow */
                        r = parse_u64_decimal(tok, (size_t) (p - tok), &x);
                        quote_token(tok, (size_t) (p - tok), quoted);
                        return parse_error(ret_error, "line %u: field %u '%s' %s", lineno, n + 1, quoted,
                                           r == -ERANGE ? "is out of range" : "is not a number");
                }
                if (n < CPU_FIELDS_MAX)
                        v[n] = x;
                n++;
        }

        if (n < CPU_FIELDS_MIN)
                return parse_error(ret_error, "line %u: aggregate cpu line has %u number%s, expected at least %u",
                                   lineno, n, n == 1 ? "" : "s", (unsigned) CPU_FIELDS_MIN);

        *ret = (CpuTimes) {
                .user = v[0],
                .nice = v[1],
                .system = v[2],
                .idle = v[3],
                .iowait = v[4],
                .irq = v[5],
                .softirq = v[6],
                .steal = v[7],
                .guest = v[8],
                .guest_nice = v[9],
        };
        return 0;
}

int cpu_parse_stat(const char *buf, size_t len, CpuSample *ret, char **ret_error) {
        CpuTimes times = {};
        unsigned ncpus = 0, lineno = 0, aggregate_line = 0;
        const char *p = buf, *end = buf + len;
        bool block = true; /* every line so far was "cpu" or "cpuN" */

        if (!buf && len > 0)
                return -EINVAL;
        if (len == 0)
                return parse_error(ret_error, "empty input, no aggregate cpu line");

        while (p < end) {
                const char *eol = memchr(p, '\n', (size_t) (end - p));
                const char *line_end = eol ?: end, *tok = p, *tok_end;
                size_t tok_len;

                lineno++;

                /* Most lines (intr, ctxt, softirq...) are not ours: one
                 * compare rejects them without delimiting a token. */
                if ((size_t) (line_end - p) < 3 || memcmp(p, "cpu", 3) != 0) {
                        /* The kernel prints "cpu", then one "cpuN" per CPU,
                         * then the rest: once that block is over, nothing
                         * after it is ours. Other layouts are scanned whole. */
                        if (aggregate_line == 1 && block)
                                break;
                        block = false;
                        p = eol ? eol + 1 : end;
                        continue;
                }
                tok_end = tok + 3;
                while (tok_end < line_end && !is_blank(*tok_end))
                        tok_end++;
                tok_len = (size_t) (tok_end - tok);

                if (tok_len == 3 && memcmp(tok, "cpu", 3) == 0) {
                        int r;

                        /* A read cut inside this line would yield too few or
                         * too small numbers: only a complete line is trusted. */
                        if (!eol)
                                return parse_error(ret_error, "line %u: aggregate cpu line is truncated (no newline)",
                                                   lineno);
                        if (aggregate_line > 0)
                                return parse_error(ret_error, "line %u: second aggregate cpu line (first on line %u)",
                                                   lineno, aggregate_line);
                        r = parse_aggregate(tok_end, line_end, lineno, &times, ret_error);
                        if (r < 0)
                                return r;
                        aggregate_line = lineno;
                } else if (tok_len > 3 && memcmp(tok, "cpu", 3) == 0) {
                        bool digits = true;

                        for (const char *c = tok + 3; c < tok_end; c++)
                                if (!is_digit(*c)) {
                                        digits = false;
                                        break;
                                }
                        if (digits)
                                ncpus++;
                        else
                                block = false;
                }
                /* Every other line (intr, ctxt, lines a newer kernel adds)
                 * is not ours to judge. */

                p = eol ? eol + 1 : end;
        }

        if (aggregate_line == 0)
                return parse_error(ret_error, "no aggregate cpu line in %u lines", lineno);

        *ret = (CpuSample) {
                .total = times,
                .ncpus = ncpus,
        };
        return 0;
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

int cpu_usage_between(const CpuSample *prev, const CpuSample *cur, CpuUsage *ret) {
        const CpuTimes *a, *b;
        uint64_t user, nice, system, idle, iowait, irq, softirq, steal, guest, guest_nice, idle_all;
        uint64_t busy, total;

        if (!prev || !cur || !ret)
                return -EINVAL;
        if (prev->ncpus != cur->ncpus)
                return -ESTALE;

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

        *ret = (CpuUsage) {
                .busy = pct(busy, total),
                .user = pct(user + nice, total),
                .system = pct(system, total),
                .iowait = pct(iowait, total),
                .steal = pct(steal, total),
                .irq = pct(irq + softirq, total),
                .idle = pct(idle, total),
        };
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
 * grows and keeps its size, so later reads take one pread. */
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
