/* An LD_PRELOAD shim for the local fault matrix (tests/faults/local). It
 * needs no hook in the product: every fault is injected at the libc
 * boundary, each feature off unless its environment variable is set.
 *
 * 1. SIGKILL at a persist (FAULTSHIM_KILL_MATCH): the agent persists each
 *    transition by renaming a fsynced temp file onto state.json
 *    (agent/base/fileio.c). At the NTH rename onto FAULTSHIM_KILL_TARGET
 *    (default "state.json") whose new content contains the MATCH
 *    substring, raise SIGKILL right before the rename (FAULTSHIM_KILL_WHEN
 *    = before: the old file stays, the temp file is left behind) or right
 *    after it (after: the new file is in place, nothing after it ran).
 *    FAULTSHIM_TRACE names a file that gets one line per rename onto the
 *    target ("N STATE" and "KILL before|after N" when it fires), so a test
 *    can tell that the kill landed where it meant.
 *
 * 2. A full or read-only state dir without mount(2) (FAULTSHIM_DISK_DIR +
 *    FAULTSHIM_DISK_CTL): the fallback when the test may not mount a
 *    tmpfs. The control file holds "ok", "full" or "ro" and is re-read on
 *    every call that touches the directory. full: write() to a file
 *    created under DIR fails with ENOSPC; ro: creating, renaming, removing
 *    or making anything under DIR fails with EROFS.
 *
 * 3. libfaketime's timerfd bug (FAULTSHIM_TIMERFD_REAL=1): libfaketime
 *    0.9.10, in a process started with an offset, shifts absolute timerfd
 *    deadlines by that offset even for CLOCK_MONOTONIC and CLOCK_BOOTTIME
 *    with FAKETIME_DONT_FAKE_MONOTONIC set (a timer 100 ms ahead fires at
 *    once at +1 h and never at -1 h; a five-line program shows it), which
 *    no real clock step does. Listed before libfaketime in LD_PRELOAD,
 *    this hands timerfd_settime/gettime of non-realtime timers straight
 *    to the kernel and leaves realtime ones to libfaketime, so a monkeyd
 *    started after a jump (the simulated reboot) has real timers.
 *
 * 4. A slow disk (FAULTSHIM_FSYNC_DELAY_MS): every fsync and fdatasync
 *    sleeps that long first, as on a loaded disk (issue 17 measured
 *    260-413 ms per fsync), whichever thread calls it. FAULTSHIM_IO_LOG
 *    names a file that gets one line per fsync/fdatasync and per rename
 *    once it returned: "<CLOCK_REALTIME seconds> fsync|rename <path>"
 *    (a rename logs its new path), so a test can tell when a file was
 *    durable and compare that with when another process saw what it
 *    announced. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_TRACKED_FD 4096
#define PEEK_MAX 65536

#define REAL(name) ((__typeof__(&name)) real_fn(#name))

static void *real_fn(const char *name) {
        void *p = dlsym(RTLD_NEXT, name);
        if (!p) {
                static const char msg[] = "faultshim: a libc symbol is missing\n";
                (void) !write(2, msg, sizeof msg - 1);
                abort();
        }
        return p;
}

/* ---- plain helpers that never go through our own wrappers ---- */

static int raw_openat(int dfd, const char *path, int flags, mode_t mode) {
        return (int) syscall(SYS_openat, dfd, path, flags, mode);
}

static ssize_t raw_write(int fd, const void *p, size_t n) {
        return syscall(SYS_write, fd, p, n);
}

static void trace(const char *fmt, ...) {
        const char *path = getenv("FAULTSHIM_TRACE");
        char line[512];
        va_list ap;
        int fd, n;

        if (!path || !*path)
                return;
        va_start(ap, fmt);
        n = vsnprintf(line, sizeof line, fmt, ap);
        va_end(ap);
        if (n < 0)
                return;
        if ((size_t) n >= sizeof line)
                n = sizeof line - 1;
        fd = raw_openat(AT_FDCWD, path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fd < 0)
                return;
        (void) !raw_write(fd, line, (size_t) n);
        (void) syscall(SYS_close, fd);
}

/* The file that (dfd, path) names, as an absolute path when it can be
 * told: relative paths are resolved against dfd or the cwd through
 * /proc/self/fd. Returns false when it cannot. */
static bool full_path(int dfd, const char *path, char *buf, size_t size) {
        char link[64], base[PATH_MAX];
        ssize_t n;

        if (!path)
                return false;
        if (path[0] == '/') {
                if (strlen(path) >= size)
                        return false;
                memcpy(buf, path, strlen(path) + 1);
                return true;
        }
        if (dfd == AT_FDCWD)
                snprintf(link, sizeof link, "/proc/self/cwd");
        else
                snprintf(link, sizeof link, "/proc/self/fd/%d", dfd);
        n = readlink(link, base, sizeof base - 1);
        if (n < 0)
                return false;
        base[n] = '\0';
        return snprintf(buf, size, "%s/%s", base, path) < (int) size;
}

static const char *base_name(const char *p) {
        const char *s = strrchr(p, '/');
        return s ? s + 1 : p;
}

/* ---- 1. SIGKILL at the Nth matching rename onto the target ---- */

static unsigned kill_seen;   /* renames onto the target whose content matched */
static unsigned renames;     /* every rename onto the target */

/* The "state" field of a state.json text, for the trace. */
static void state_of(const char *text, char *out, size_t size) {
        const char *p = strstr(text, "\"state\"");
        size_t k = 0;

        snprintf(out, size, "-");
        if (!p || !(p = strchr(p + 7, '"')))
                return;
        p++;
        while (p[k] && p[k] != '"' && k + 1 < size)
                k++;
        memcpy(out, p, k);
        out[k] = '\0';
}

/* Decide, before a rename of (odfd, old) onto (ndfd, new): returns 0 for
 * no kill, 1 to kill before, 2 to kill after. */
static int kill_decision(int odfd, const char *old, const char *new) {
        const char *match = getenv("FAULTSHIM_KILL_MATCH");
        const char *target = getenv("FAULTSHIM_KILL_TARGET");
        const char *when = getenv("FAULTSHIM_KILL_WHEN");
        const char *nth_s = getenv("FAULTSHIM_KILL_NTH");
        static char text[PEEK_MAX + 1];
        char st[64];
        unsigned nth = nth_s && *nth_s ? (unsigned) strtoul(nth_s, NULL, 10) : 1;
        ssize_t n = 0, k;
        int fd;

        if (!target || !*target)
                target = "state.json";
        if (!new || strcmp(base_name(new), target) != 0)
                return 0;
        if (!getenv("FAULTSHIM_TRACE") && (!match || !*match))
                return 0;
        fd = raw_openat(odfd, old, O_RDONLY | O_CLOEXEC, 0);
        if (fd >= 0) {
                while (n < PEEK_MAX && (k = syscall(SYS_read, fd, text + n, (size_t) (PEEK_MAX - n))) > 0)
                        n += k;
                (void) syscall(SYS_close, fd);
        }
        text[n < 0 ? 0 : n] = '\0';
        renames++;
        state_of(text, st, sizeof st);
        trace("%u %s\n", renames, st);
        if (!match || !*match || !strstr(text, match))
                return 0;
        if (++kill_seen != nth)
                return 0;
        return when && strcmp(when, "after") == 0 ? 2 : 1;
}

static void kill_now(const char *when) {
        trace("KILL %s %u\n", when, renames);
        (void) raise(SIGKILL);
        _exit(137); /* not reached */
}

/* ---- 2. the disk fallback: full or read-only under DISK_DIR ---- */

static unsigned char tracked[MAX_TRACKED_FD]; /* fds of files created under DISK_DIR */
static signed char timer_clock[MAX_TRACKED_FD]; /* timerfds: clock id + 1; 0 = unknown */

typedef enum DiskMode { DISK_OK, DISK_FULL, DISK_RO } DiskMode;

static DiskMode disk_mode(void) {
        const char *ctl = getenv("FAULTSHIM_DISK_CTL");
        char buf[16] = "";
        ssize_t n;
        int fd;

        if (!ctl || !*ctl)
                return DISK_OK;
        fd = raw_openat(AT_FDCWD, ctl, O_RDONLY | O_CLOEXEC, 0);
        if (fd < 0)
                return DISK_OK;
        n = syscall(SYS_read, fd, buf, sizeof buf - 1);
        (void) syscall(SYS_close, fd);
        buf[n > 0 ? n : 0] = '\0';
        if (strncmp(buf, "full", 4) == 0)
                return DISK_FULL;
        if (strncmp(buf, "ro", 2) == 0)
                return DISK_RO;
        return DISK_OK;
}

static bool under_disk_dir(int dfd, const char *path) {
        const char *dir = getenv("FAULTSHIM_DISK_DIR");
        char p[PATH_MAX];
        size_t n;

        if (!dir || !*dir || !full_path(dfd, path, p, sizeof p))
                return false;
        n = strlen(dir);
        return strncmp(p, dir, n) == 0 && (p[n] == '/' || p[n] == '\0');
}

/* Shared by every mutating call: EROFS when the dir is "read-only". */
static bool refuse_ro(int dfd, const char *path) {
        if (!getenv("FAULTSHIM_DISK_DIR"))
                return false;
        if (!under_disk_dir(dfd, path) || disk_mode() != DISK_RO)
                return false;
        errno = EROFS;
        return true;
}

static int open_common(int dfd, const char *path, int flags, mode_t mode, bool at) {
        bool watch = getenv("FAULTSHIM_DISK_DIR") && under_disk_dir(dfd, path);
        int fd;

        if (watch && disk_mode() == DISK_RO && (flags & (O_CREAT | O_WRONLY | O_RDWR | O_TRUNC))) {
                errno = EROFS;
                return -1;
        }
        if (at)
                fd = REAL(openat)(dfd, path, flags, mode);
        else
                fd = REAL(open)(path, flags, mode);
        if (fd >= 0 && fd < MAX_TRACKED_FD)
                tracked[fd] = watch && (flags & (O_WRONLY | O_RDWR));
        return fd;
}

int open(const char *path, int flags, ...) {
        mode_t mode = 0;

        if (flags & (O_CREAT | __O_TMPFILE)) {
                va_list ap;
                va_start(ap, flags);
                mode = va_arg(ap, mode_t);
                va_end(ap);
        }
        return open_common(AT_FDCWD, path, flags, mode, false);
}

int openat(int dfd, const char *path, int flags, ...) {
        mode_t mode = 0;

        if (flags & (O_CREAT | __O_TMPFILE)) {
                va_list ap;
                va_start(ap, flags);
                mode = va_arg(ap, mode_t);
                va_end(ap);
        }
        return open_common(dfd, path, flags, mode, true);
}

ssize_t write(int fd, const void *buf, size_t n) {
        if (fd >= 0 && fd < MAX_TRACKED_FD && tracked[fd] && n > 0) {
                DiskMode m = disk_mode();
                struct stat st;

                /* a number closed behind our back (fclose) may be a socket now */
                if (m != DISK_OK && fstat(fd, &st) >= 0 && S_ISREG(st.st_mode)) {
                        errno = m == DISK_FULL ? ENOSPC : EROFS;
                        return -1;
                }
        }
        return REAL(write)(fd, buf, n);
}

int close(int fd) {
        if (fd >= 0 && fd < MAX_TRACKED_FD) {
                tracked[fd] = 0;
                timer_clock[fd] = 0;
        }
        return REAL(close)(fd);
}

int unlinkat(int dfd, const char *path, int flags) {
        if (refuse_ro(dfd, path))
                return -1;
        return REAL(unlinkat)(dfd, path, flags);
}

int unlink(const char *path) {
        if (refuse_ro(AT_FDCWD, path))
                return -1;
        return REAL(unlink)(path);
}

/* As the kernel does: an existing name is EEXIST even on a read-only
 * file system. */
static bool exists(int dfd, const char *path) {
        return syscall(SYS_faccessat, dfd, path, F_OK, 0) == 0;
}

int mkdirat(int dfd, const char *path, mode_t mode) {
        if (!exists(dfd, path) && refuse_ro(dfd, path))
                return -1;
        return REAL(mkdirat)(dfd, path, mode);
}

int mkdir(const char *path, mode_t mode) {
        if (!exists(AT_FDCWD, path) && refuse_ro(AT_FDCWD, path))
                return -1;
        return REAL(mkdir)(path, mode);
}

/* ---- 4. the slow disk, and its timeline ---- */

static void io_log(const char *what, int dfd, const char *path) {
        const char *log = getenv("FAULTSHIM_IO_LOG");
        char p[PATH_MAX], line[PATH_MAX + 64];
        struct timespec ts;
        int fd, n;

        if (!log || !*log)
                return;
        if (!full_path(dfd, path, p, sizeof p))
                snprintf(p, sizeof p, "?");
        clock_gettime(CLOCK_REALTIME, &ts);
        n = snprintf(line, sizeof line, "%lld.%09ld %s %s\n", (long long) ts.tv_sec, ts.tv_nsec, what, p);
        if (n < 0)
                return;
        if ((size_t) n >= sizeof line)
                n = sizeof line - 1;
        /* O_APPEND and one write a line: lines of two threads never mix */
        fd = raw_openat(AT_FDCWD, log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fd < 0)
                return;
        (void) !raw_write(fd, line, (size_t) n);
        (void) syscall(SYS_close, fd);
}

static void slow_disk(void) {
        const char *e = getenv("FAULTSHIM_FSYNC_DELAY_MS");
        unsigned long ms = e && *e ? strtoul(e, NULL, 10) : 0;
        struct timespec ts = { .tv_sec = (time_t) (ms / 1000), .tv_nsec = (long) (ms % 1000) * 1000000L };

        while (ms > 0 && nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

static int sync_common(int fd, bool data_only) {
        char link[64], p[PATH_MAX];
        ssize_t n;
        int r, saved;

        slow_disk();
        r = data_only ? REAL(fdatasync)(fd) : REAL(fsync)(fd);
        saved = errno;
        if (r == 0 && getenv("FAULTSHIM_IO_LOG")) {
                snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
                n = readlink(link, p, sizeof p - 1);
                p[n > 0 ? n : 0] = '\0';
                io_log(data_only ? "fdatasync" : "fsync", AT_FDCWD, n > 0 ? p : "?");
        }
        errno = saved;
        return r;
}

int fsync(int fd) {
        return sync_common(fd, false);
}

int fdatasync(int fd) {
        return sync_common(fd, true);
}

/* ---- renames: both features meet here ---- */

static int rename_common(int odfd, const char *old, int ndfd, const char *new, unsigned flags, int which) {
        int d, r;

        if (refuse_ro(odfd, old) || refuse_ro(ndfd, new))
                return -1;
        d = kill_decision(odfd, old, new);
        if (d == 1)
                kill_now("before");
        if (which == 0)
                r = REAL(rename)(old, new);
        else if (which == 1)
                r = REAL(renameat)(odfd, old, ndfd, new);
        else
                r = REAL(renameat2)(odfd, old, ndfd, new, flags);
        if (r == 0)
                io_log("rename", ndfd, new);
        if (d == 2 && r == 0)
                kill_now("after");
        return r;
}

int rename(const char *old, const char *new) {
        return rename_common(AT_FDCWD, old, AT_FDCWD, new, 0, 0);
}

int renameat(int odfd, const char *old, int ndfd, const char *new) {
        return rename_common(odfd, old, ndfd, new, 0, 1);
}

int renameat2(int odfd, const char *old, int ndfd, const char *new, unsigned flags) {
        return rename_common(odfd, old, ndfd, new, flags, 2);
}

/* ---- 3. timerfd past libfaketime ---- */

static bool timerfd_real(int fd) {
        const char *e = getenv("FAULTSHIM_TIMERFD_REAL");
        int c;

        if (!e || strcmp(e, "1") != 0 || fd < 0 || fd >= MAX_TRACKED_FD || timer_clock[fd] == 0)
                return false;
        c = timer_clock[fd] - 1;
        return c != CLOCK_REALTIME && c != CLOCK_REALTIME_ALARM;
}

int timerfd_create(int clockid, int flags) {
        int fd = REAL(timerfd_create)(clockid, flags);

        if (fd >= 0 && fd < MAX_TRACKED_FD)
                timer_clock[fd] = (signed char) (clockid + 1);
        return fd;
}

int timerfd_settime(int fd, int flags, const struct itimerspec *new, struct itimerspec *old) {
        if (timerfd_real(fd))
                return (int) syscall(SYS_timerfd_settime, fd, flags, new, old);
        return REAL(timerfd_settime)(fd, flags, new, old);
}

int timerfd_gettime(int fd, struct itimerspec *cur) {
        if (timerfd_real(fd))
                return (int) syscall(SYS_timerfd_gettime, fd, cur);
        return REAL(timerfd_gettime)(fd, cur);
}
