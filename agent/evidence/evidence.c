#include <dirent.h>
#include <fcntl.h>
#include <limits.h>

#include "evidence.h"
#include "utf8.h"
#include "numparse.h"

/* The common case: a stat line is ~300 bytes; the fields we need end before
 * byte ~500 even with every number at its widest. Longer lines (a future
 * kernel appending many fields) take the heap path, capped. */
#define STAT_READ_STACK 1024
#define STAT_READ_MAX ((size_t) 64 * 1024)

/* Enough to hold more than EVIDENCE_CMDLINE_MAX output bytes: every input
 * byte yields at least one output byte (trailing NULs aside). */
#define CMDLINE_READ 1024

/* 1-based field numbers of proc_pid_stat(5). */
#define FIELD_UTIME 14
#define FIELD_STIME 15
#define FIELD_STARTTIME 22
#define FIELD_RSS 24

#define ELLIPSIS "\xe2\x80\xa6" /* "…", 3 bytes */

typedef struct ProcEntry {
        int pid;
        uint64_t starttime, ticks, rss_pages;
        char comm[EVIDENCE_COMM_MAX];
} ProcEntry;

struct ProcSnapshot {
        usec_t at;
        usec_t uptime; /* proc_root/uptime at the end of the walk, USEC_INFINITY if unknown */
        size_t n, n_allocated, n_malformed;
        ProcEntry *entries;
};

static inline void closedirp(DIR **d) {
        if (*d)
                closedir(*d);
}


/* Fields we do not use are still checked: a line that is not all numbers
 * past the state is not a stat line, and its numbers are not to be trusted. */
static bool is_int_token(const char *s, size_t n) {
        uint64_t v;

        if (n > 0 && s[0] == '-') {
                if (parse_u64_decimal(s + 1, n - 1, &v) < 0)
                        return false;
                return v <= (uint64_t) INT64_MAX + 1;
        }
        return parse_u64_decimal(s, n, &v) >= 0;
}

static bool is_alpha(char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

int proc_stat_parse(const char *buf, size_t len, ProcStat *ret) {
        const char *p, *end, *sp, *comm, *close_paren;
        uint64_t pid, utime = 0, stime = 0, starttime = 0, rss = 0;
        unsigned field;
        size_t comm_len;
        ProcStat st = {};

        if (!buf && len > 0)
                return -EINVAL;
        /* Only a complete line is trusted: a cut read ends in a shorter number. */
        if (len == 0 || buf[len - 1] != '\n')
                return -EBADMSG;
        end = buf + len - 1;

        sp = memchr(buf, ' ', (size_t) (end - buf));
        if (!sp || parse_u64_decimal(buf, (size_t) (sp - buf), &pid) < 0 || pid == 0 || pid > INT_MAX)
                return -EBADMSG;

        p = sp + 1;
        if (p >= end || *p != '(')
                return -EBADMSG;
        comm = p + 1;
        /* comm is whatever the process named itself, ')' and spaces included;
         * the kernel never puts a ')' after it, so the last one closes it. */
        close_paren = memrchr(comm, ')', (size_t) (end - comm));
        if (!close_paren)
                return -EBADMSG;
        comm_len = (size_t) (close_paren - comm);

        p = close_paren + 1;
        if (end - p < 3 || p[0] != ' ' || !is_alpha(p[1]) || p[2] != ' ')
                return -EBADMSG;
        st.state = p[1];
        p += 3;

        for (field = 4;; field++) {
                const char *tok = p;
                size_t n;

                while (p < end && *p != ' ')
                        p++;
                n = (size_t) (p - tok);

                switch (field) {
                case FIELD_UTIME:
                        if (parse_u64_decimal(tok, n, &utime) < 0)
                                return -EBADMSG;
                        break;
                case FIELD_STIME:
                        if (parse_u64_decimal(tok, n, &stime) < 0)
                                return -EBADMSG;
                        break;
                case FIELD_STARTTIME:
                        if (parse_u64_decimal(tok, n, &starttime) < 0)
                                return -EBADMSG;
                        break;
                case FIELD_RSS:
                        if (parse_u64_decimal(tok, n, &rss) < 0)
                                return -EBADMSG;
                        break;
                default:
                        /* Empty tokens (two blanks, a trailing blank) fail here too. */
                        if (!is_int_token(tok, n))
                                return -EBADMSG;
                }

                if (p >= end)
                        break;
                p++;
        }
        if (field < FIELD_RSS)
                return -EBADMSG;

        st.pid = (int) pid;
        comm_len = MIN(comm_len, sizeof(st.comm) - 1);
        memcpy(st.comm, comm, comm_len);
        st.comm[comm_len] = '\0';
        st.utime = utime;
        st.stime = stime;
        st.starttime = starttime;
        st.rss_pages = rss;
        *ret = st;
        return 0;
}


/* Append in[0..len) to out at *out_len, NUL as a blank, escaping what a
 * terminal or Slack should not get raw, never a unit cut in half and never
 * past `max` bytes. Returns true when something did not fit. A backslash
 * stays as it is: these lines are for people, not for parsing back. */
static bool escape_append(const char *in, size_t len, char *out, size_t *out_len, size_t max) {
        static const char hex[] = "0123456789abcdef";
        const unsigned char *s = (const unsigned char *) in;

        for (size_t i = 0; i < len;) {
                unsigned char c = s[i];
                char esc[4];
                const char *unit;
                size_t u, step;

                if (c == 0) {
                        unit = " ";
                        u = step = 1;
                } else if (c >= 0x20 && c < 0x7f) {
                        unit = (const char *) s + i;
                        u = step = 1;
                } else if (c >= 0x80 && (u = utf8_printable_len(s + i, len - i)) > 0) {
                        unit = (const char *) s + i;
                        step = u;
                } else {
                        esc[0] = '\\';
                        esc[1] = 'x';
                        esc[2] = hex[c >> 4];
                        esc[3] = hex[c & 0xf];
                        unit = esc;
                        u = 4;
                        step = 1;
                }

                if (*out_len + u > max)
                        return true;
                memcpy(out + *out_len, unit, u);
                *out_len += u;
                i += step;
        }
        return false;
}

/* out must hold max + strlen(ELLIPSIS) + 1 bytes. */
static void escape_cut(const char *in, size_t len, char *out, size_t max) {
        size_t k = 0;

        if (escape_append(in, len, out, &k, max)) {
                memcpy(out + k, ELLIPSIS, strlen(ELLIPSIS));
                k += strlen(ELLIPSIS);
        }
        out[k] = '\0';
}

void proc_cmdline_format(const char *buf, size_t len, bool more, const char *comm,
                         char ret[static EVIDENCE_CMDLINE_MAX + 4]) {
        size_t k = 0;

        /* argv is NUL-terminated, and processes that rewrite their title
         * often pad it with NULs: none of that is content. */
        while (len > 0 && buf[len - 1] == '\0')
                len--;

        if (len == 0) {
                /* As ps does: no command line (kernel thread, zombie, gone). */
                ret[k++] = '[';
                if (escape_append(comm, strlen(comm), ret, &k, EVIDENCE_CMDLINE_MAX - 2)) {
                        memcpy(ret + k, ELLIPSIS, strlen(ELLIPSIS));
                        k += strlen(ELLIPSIS);
                }
                ret[k++] = ']';
                ret[k] = '\0';
                return;
        }

        if (escape_append(buf, len, ret, &k, EVIDENCE_CMDLINE_MAX) || more) {
                memcpy(ret + k, ELLIPSIS, strlen(ELLIPSIS));
                k += strlen(ELLIPSIS);
        }
        ret[k] = '\0';
}

/* Directory names that are pids: canonical decimals only ("self",
 * "thread-self", "sys" and a "0123" that no kernel prints are not). */
static bool parse_pid_name(const char *name, int *ret) {
        uint64_t v;
        size_t n = strlen(name);

        if (n == 0 || n > 10 || name[0] == '0')
                return false;
        if (parse_u64_decimal(name, n, &v) < 0 || v > INT_MAX)
                return false;
        *ret = (int) v;
        return true;
}

static ssize_t read_retry(int fd, void *buf, size_t n) {
        for (;;) {
                ssize_t k = read(fd, buf, n);
                if (k >= 0 || errno != EINTR)
                        return k;
        }
}

/* The rest of a stat line longer than the stack buffer. */
static int read_stat_long(int fd, const char *head, size_t head_len, ProcStat *ret) {
        _cleanup_(freep) char *buf = NULL;
        size_t size = head_len, alloc = head_len * 2;

        buf = malloc(alloc);
        if (!buf)
                return -ENOMEM;
        memcpy(buf, head, head_len);

        for (;;) {
                ssize_t k;

                if (size == alloc) {
                        char *p;

                        if (alloc >= STAT_READ_MAX)
                                return -EBADMSG;
                        alloc = MIN(alloc * 2, STAT_READ_MAX);
                        p = realloc(buf, alloc);
                        if (!p)
                                return -ENOMEM;
                        buf = p;
                }
                k = read_retry(fd, buf + size, alloc - size);
                if (k < 0)
                        return negative_errno();
                if (k == 0)
                        break;
                size += (size_t) k;
        }
        return proc_stat_parse(buf, size, ret);
}

/* dfd/name/stat. -ENOENT for an empty read (the process was reaped while
 * we read), -EBADMSG for a line that does not parse, else the errno. */
static int read_stat_at(int dfd, const char *name, ProcStat *ret) {
        char path[32], buf[STAT_READ_STACK];
        _cleanup_(closep) int fd = -1;
        size_t name_len = strlen(name), n = 0;

        if (name_len + sizeof("/stat") > sizeof(path))
                return -ENAMETOOLONG;
        memcpy(path, name, name_len);
        memcpy(path + name_len, "/stat", sizeof("/stat"));

        fd = openat(dfd, path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return negative_errno();

        /* One read() in the common case; more only if a read comes back
         * short of the newline. */
        for (;;) {
                ssize_t k = read_retry(fd, buf + n, sizeof(buf) - n);

                if (k < 0)
                        return negative_errno();
                if (k == 0)
                        break;
                n += (size_t) k;
                if (buf[n - 1] == '\n' || n == sizeof(buf))
                        break;
        }
        if (n == 0)
                return -ENOENT;
        if (n == sizeof(buf) && buf[n - 1] != '\n')
                return read_stat_long(fd, buf, n, ret);
        return proc_stat_parse(buf, n, ret);
}

/* The process went away, or is not ours to read (hidepid=, a fixture
 * file where a directory should be): not an error of the snapshot. */
static bool errno_is_gone(int r) {
        return r == -ENOENT || r == -ESRCH || r == -EACCES || r == -EPERM || r == -ENOTDIR;
}

/* "12345.67 ..." → usec. */
static int parse_uptime(const char *s, size_t n, usec_t *ret) {
        uint64_t sec = 0, frac = 0, scale = USEC_PER_SEC;
        size_t i = 0, j;

        while (i < n && is_digit(s[i]))
                i++;
        if (parse_u64_decimal(s, i, &sec) < 0)
                return -EBADMSG;
        if (i < n && s[i] == '.') {
                j = ++i;
                /* Past the sixth digit scale is 0: finer than a usec is dropped. */
                while (i < n && is_digit(s[i])) {
                        scale /= 10;
                        frac += (uint64_t) (s[i] - '0') * scale;
                        i++;
                }
                if (i == j)
                        return -EBADMSG;
        }
        if (i >= n || (s[i] != ' ' && s[i] != '\n'))
                return -EBADMSG;
        if (sec > (USEC_INFINITY - 1 - frac) / USEC_PER_SEC)
                return -EBADMSG;
        *ret = sec * USEC_PER_SEC + frac;
        return 0;
}

static int read_uptime_at(int dfd, usec_t *ret) {
        _cleanup_(closep) int fd = -1;
        char buf[128];
        ssize_t k;

        fd = openat(dfd, "uptime", O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return negative_errno();
        k = read_retry(fd, buf, sizeof(buf));
        if (k < 0)
                return negative_errno();
        return parse_uptime(buf, (size_t) k, ret);
}

static int entry_compare_pid(const void *a, const void *b) {
        const ProcEntry *x = a, *y = b;
        return (x->pid > y->pid) - (x->pid < y->pid);
}

static const ProcEntry *snapshot_find(const ProcSnapshot *s, int pid) {
        ProcEntry key = { .pid = pid };

        if (!s || s->n == 0)
                return NULL;
        return bsearch(&key, s->entries, s->n, sizeof(ProcEntry), entry_compare_pid);
}

static int snapshot_add(ProcSnapshot *s, const ProcStat *st, uint64_t ticks) {
        ProcEntry *e;

        if (s->n == s->n_allocated) {
                size_t na = s->n_allocated ? s->n_allocated * 2 : 512;
                ProcEntry *p;

                if (na > SIZE_MAX / sizeof(ProcEntry))
                        return -ENOMEM;
                p = realloc(s->entries, na * sizeof(ProcEntry));
                if (!p)
                        return -ENOMEM;
                s->entries = p;
                s->n_allocated = na;
        }
        e = &s->entries[s->n++];
        e->pid = st->pid;
        e->starttime = st->starttime;
        e->ticks = ticks;
        e->rss_pages = st->rss_pages;
        memcpy(e->comm, st->comm, sizeof(e->comm));
        return 0;
}

int proc_snapshot_take(const char *proc_root, usec_t at, ProcSnapshot **ret) {
        _cleanup_(proc_snapshot_freep) ProcSnapshot *s = NULL;
        _cleanup_(closedirp) DIR *d = NULL;
        int dfd, r;

        if (!proc_root || !ret)
                return -EINVAL;

        s = calloc(1, sizeof(ProcSnapshot));
        if (!s)
                return -ENOMEM;
        s->at = at;
        s->uptime = USEC_INFINITY;

        d = opendir(proc_root);
        if (!d)
                return negative_errno();
        dfd = dirfd(d);

        for (;;) {
                struct dirent *de;
                ProcStat st;
                uint64_t ticks;
                int pid;

                errno = 0;
                de = readdir(d);
                if (!de) {
                        if (errno != 0)
                                return negative_errno();
                        break;
                }
                if (de->d_type != DT_DIR && de->d_type != DT_UNKNOWN)
                        continue;
                if (!parse_pid_name(de->d_name, &pid))
                        continue;

                r = read_stat_at(dfd, de->d_name, &st);
                if (r == -EBADMSG) {
                        s->n_malformed++;
                        continue;
                }
                if (r < 0) {
                        if (errno_is_gone(r))
                                continue;
                        return r;
                }
                /* A stat that names another pid, or whose ticks wrap, is no
                 * more trustworthy than one that does not parse. */
                if (st.pid != pid || __builtin_add_overflow(st.utime, st.stime, &ticks)) {
                        s->n_malformed++;
                        continue;
                }
                r = snapshot_add(s, &st, ticks);
                if (r < 0)
                        return r;
        }

        /* After the walk, so every process seen started before this moment
         * and none gets a negative lifetime. */
        if (read_uptime_at(dfd, &s->uptime) < 0)
                s->uptime = USEC_INFINITY;

        if (s->n > 1)
                qsort(s->entries, s->n, sizeof(ProcEntry), entry_compare_pid);

        *ret = TAKE_PTR(s);
        return 0;
}

ProcSnapshot *proc_snapshot_free(ProcSnapshot *s) {
        if (!s)
                return NULL;
        free(s->entries);
        free(s);
        return NULL;
}

size_t proc_snapshot_size(const ProcSnapshot *s) {
        return s ? s->n : 0;
}

size_t proc_snapshot_malformed(const ProcSnapshot *s) {
        return s ? s->n_malformed : 0;
}

int proc_snapshot_lookup(const ProcSnapshot *s, int pid, uint64_t *ret_ticks, uint64_t *ret_starttime) {
        const ProcEntry *e = snapshot_find(s, pid);

        if (!e)
                return -ENOENT;
        if (ret_ticks)
                *ret_ticks = e->ticks;
        if (ret_starttime)
                *ret_starttime = e->starttime;
        return 0;
}

/* CPU used as the fraction num/den of the interval or lifetime, kept as
 * integers so that ordering and ties are exact. */
typedef struct Candidate {
        const ProcEntry *e;
        uint64_t num, den;
        bool is_new;
} Candidate;

static int candidate_compare(const void *a, const void *b) {
        const Candidate *x = a, *y = b;
        unsigned __int128 l = (unsigned __int128) x->num * y->den, r = (unsigned __int128) y->num * x->den;

        if (l != r)
                return l > r ? -1 : 1;
        return (x->e->pid > y->e->pid) - (x->e->pid < y->e->pid);
}

/* The cmdline of the process `after` saw, not of whoever holds the pid
 * now: the pid directory, once open, stays bound to one process (reads
 * fail with ESRCH after it exits), so check its starttime through it. */
static void read_cmdline(int root_fd, const ProcEntry *e, char ret[static EVIDENCE_CMDLINE_MAX + 4]) {
        _cleanup_(closep) int pid_fd = -1, fd = -1;
        char name[16], buf[CMDLINE_READ];
        size_t n = 0;
        ProcStat st;

        if (root_fd < 0)
                goto fallback;
        (void) snprintf(name, sizeof(name), "%d", e->pid);
        pid_fd = openat(root_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (pid_fd < 0)
                goto fallback;
        if (read_stat_at(pid_fd, ".", &st) < 0 || st.starttime != e->starttime)
                goto fallback;
        fd = openat(pid_fd, "cmdline", O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                goto fallback;
        while (n < sizeof(buf)) {
                ssize_t k = read_retry(fd, buf + n, sizeof(buf) - n);
                if (k < 0)
                        goto fallback;
                if (k == 0)
                        break;
                n += (size_t) k;
        }
        proc_cmdline_format(buf, n, n == sizeof(buf), e->comm, ret);
        return;

fallback:
        proc_cmdline_format(NULL, 0, false, e->comm, ret);
}

int proc_top(const ProcSnapshot *before, const ProcSnapshot *after, const char *proc_root, unsigned ticks_per_sec,
             unsigned page_kb, ProcTop *ret, size_t n, size_t *ret_n) {
        _cleanup_(freep) Candidate *c = NULL;
        _cleanup_(closep) int root_fd = -1;
        uint64_t interval_ticks = 0, now_ticks = 0;
        double interval = 0;
        size_t nc = 0, k;
        bool lifetime = !before;

        if (!after || !proc_root || ticks_per_sec == 0 || (n > 0 && !ret) || !ret_n)
                return -EINVAL;

        if (lifetime) {
                if (after->uptime == USEC_INFINITY)
                        return -ENODATA;
                now_ticks = (uint64_t) ((unsigned __int128) after->uptime * ticks_per_sec / USEC_PER_SEC);
        } else {
                usec_t d;

                if (after->at <= before->at)
                        return -EINVAL;
                d = after->at - before->at;
                interval_ticks = (uint64_t) ((unsigned __int128) d * ticks_per_sec / USEC_PER_SEC);
                interval = (double) d * ticks_per_sec / (double) USEC_PER_SEC;
        }

        if (after->n > 0) {
                c = calloc(after->n, sizeof(Candidate));
                if (!c)
                        return -ENOMEM;
        }

        for (size_t i = 0; i < after->n; i++) {
                const ProcEntry *e = &after->entries[i];
                Candidate x = { .e = e, .den = 1 };

                if (lifetime) {
                        x.num = e->ticks;
                        /* Started within the last tick: one tick, not a division by zero. */
                        x.den = now_ticks > e->starttime ? now_ticks - e->starttime : 1;
                } else {
                        const ProcEntry *b = snapshot_find(before, e->pid);

                        if (b && b->starttime == e->starttime)
                                x.num = e->ticks >= b->ticks ? e->ticks - b->ticks : 0;
                        else {
                                /* Started in the window (or was not readable
                                 * before): its lifetime ticks may reach back
                                 * past the window, so no more than the window.
                                 * This caps a new multi-threaded burner at one
                                 * core, an understatement rather than a lie. */
                                x.num = MIN(e->ticks, interval_ticks);
                                x.is_new = true;
                        }
                }
                if (x.num == 0)
                        continue;
                c[nc++] = x;
        }

        if (nc > 1)
                qsort(c, nc, sizeof(Candidate), candidate_compare);

        k = MIN(n, nc);
        if (k > 0) {
                root_fd = open(proc_root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                /* Without it every cmdline falls back to [comm]: the numbers
                 * are already in hand and worth more than nothing. */
        }

        for (size_t i = 0; i < k; i++) {
                const ProcEntry *e = c[i].e;
                ProcTop *t = &ret[i];
                uint64_t rss_kb;

                *t = (ProcTop) {
                        .pid = e->pid,
                        .new_in_window = c[i].is_new,
                };
                escape_cut(e->comm, strlen(e->comm), t->comm, EVIDENCE_COMM_MAX - 1 - strlen(ELLIPSIS));
                if (lifetime)
                        t->cpu_pct = (double) c[i].num * 100.0 / (double) c[i].den;
                else
                        t->cpu_pct = (double) c[i].num * 100.0 / interval;
                if (__builtin_mul_overflow(e->rss_pages, (uint64_t) page_kb, &rss_kb))
                        rss_kb = UINT64_MAX;
                t->rss_kb = rss_kb;
                read_cmdline(root_fd, e, t->cmdline);
        }

        *ret_n = k;
        return lifetime ? 1 : 0;
}
