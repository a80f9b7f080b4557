/* The incident's CPU profile: the worker process and its supervisor. See
 * profile.h. */
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "clock.h"
#include "fileio.h"
#include "flamegraph.h"
#include "folded.h"
#include "incidents.h"
#include "jsonutil.h"
#include "numparse.h"
#include "profile.h"
#include "stackfold.h"

/* Children get only this: monkeyd's environment may hold AWS keys. */
static char *const child_env[] = { (char *) "PATH=/usr/sbin:/usr/bin:/sbin:/bin", (char *) "LC_ALL=C", NULL };

#define CAP_SYS_ADMIN_BIT 21
#define CAP_PERFMON_BIT 38

static void sleep_usec(usec_t u) {
        struct timespec ts = { .tv_sec = (time_t) (u / USEC_PER_SEC), .tv_nsec = (long) (u % USEC_PER_SEC) * 1000 };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/* ---- the worker ------------------------------------------------------- */

const char *profile_perf_failure(const char *log, size_t len, bool *ret_permission, char *buf, size_t size) {
        static const char *const refusals[] = {
                "perf_event_paranoid", "Permission denied", "Operation not permitted", "No permission",
                "Access to performance monitoring and observability operations is limited",
        };
        const char *last = NULL, *p = log, *end = log + len;
        size_t last_len = 0;

        *ret_permission = false;
        for (size_t i = 0; i < ELEMENTSOF(refusals); i++)
                if (memmem(log, len, refusals[i], strlen(refusals[i]))) {
                        *ret_permission = true;
                        break;
                }
        /* The last line that says something: perf ends with its verdict. */
        while (p < end) {
                const char *eol = memchr(p, '\n', (size_t) (end - p)), *e = eol ? eol : end, *s = p;
                while (s < e && (*s == ' ' || *s == '\t'))
                        s++;
                if (e > s && !(e - s == 1 && *s == '\r')) {
                        last = s;
                        last_len = (size_t) (e - s);
                }
                p = eol ? eol + 1 : end;
        }
        if (*ret_permission)
                snprintf(buf, size,
                         "perf may not profile the whole system here: it needs CAP_PERFMON (or "
                         "kernel.perf_event_paranoid <= 0), and perf_event_open allowed by the unit's "
                         "SystemCallFilter (see the README)%s%.*s",
                         last ? "; perf said: " : "", (int) MIN(last_len, (size_t) 200), last ? last : "");
        else if (last)
                snprintf(buf, size, "perf failed: %.*s", (int) MIN(last_len, (size_t) 300), last);
        else
                snprintf(buf, size, "perf failed and said nothing");
        /* perf prints what it was handed: keep the reason printable */
        for (char *q = buf; *q; q++)
                if ((unsigned char) *q < 0x20)
                        *q = ' ';
        return buf;
}

static bool have_capability(unsigned bit) {
        _cleanup_(freep) char *s = NULL;
        const char *p;
        uint64_t caps = 0;

        if (read_full_file("/proc/self/status", 64 * 1024, &s, NULL) < 0)
                return false;
        p = strstr(s, "\nCapEff:");
        if (!p)
                return false;
        p += strlen("\nCapEff:");
        while (*p == '\t' || *p == ' ')
                p++;
        for (; *p && *p != '\n'; p++) {
                int v = is_digit(*p) ? *p - '0' : (*p >= 'a' && *p <= 'f') ? *p - 'a' + 10 : -1;
                if (v < 0 || caps >> 60)
                        return false;
                caps = caps << 4 | (uint64_t) v;
        }
        return (caps >> bit) & 1;
}

static int read_paranoid(int *ret) {
        _cleanup_(closep) int fd = open("/proc/sys/kernel/perf_event_paranoid", O_RDONLY | O_CLOEXEC);
        _cleanup_(freep) char *s = NULL;
        size_t len;
        char *end;
        long v;

        if (fd < 0 || read_full_fd(fd, 64, &s, &len) < 0)
                return -ENOENT;
        errno = 0;
        v = strtol(s, &end, 10);
        if (errno != 0 || end == s || v < -1 || v > 4)
                return -EBADMSG;
        *ret = (int) v;
        return 0;
}

typedef struct Worker {
        const char *dir, *perf, *title;
        usec_t duration;
        unsigned frequency;
        int dir_fd, log_fd;
        json_object *result;
} Worker;

static int spawn(Worker *w, char *const argv[], int stdout_fd, pid_t *ret) {
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t attr;
        sigset_t none;
        int r;

        sigemptyset(&none);
        posix_spawn_file_actions_init(&fa);
        posix_spawnattr_init(&attr);
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_adddup2(&fa, stdout_fd, 1);
        posix_spawn_file_actions_adddup2(&fa, w->log_fd, 2);
        posix_spawnattr_setsigmask(&attr, &none);
        /* In the worker's process group, which the agent kills whole when
         * its own deadline passes: nothing of the profile outlives it. */
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
        r = posix_spawn(ret, argv[0], &fa, &attr, argv, child_env);
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&attr);
        return -r;
}

/* Wait for pid until `deadline` (CLOCK_MONOTONIC); then SIGINT (perf
 * record writes what it has, and ends its workload), and SIGKILL 5 s
 * later. -ETIME when it had to be stopped; *ret_status is waitpid's. */
static int wait_until(pid_t pid, usec_t deadline, int *ret_status) {
        bool interrupted = false;

        for (;;) {
                pid_t r = waitpid(pid, ret_status, WNOHANG);
                usec_t now;

                if (r == pid)
                        return interrupted ? -ETIME : 0;
                if (r < 0 && errno != EINTR)
                        return -errno;
                now = clock_now(CLOCK_MONOTONIC);
                if (now >= deadline) {
                        if (!interrupted) {
                                (void) kill(pid, SIGINT);
                                interrupted = true;
                                deadline = now + 5 * USEC_PER_SEC;
                        } else {
                                (void) kill(pid, SIGKILL);
                                deadline = now + 60 * USEC_PER_SEC;
                        }
                }
                sleep_usec(20 * USEC_PER_MSEC);
        }
}

static void result_set(Worker *w, const char *state, const char *reason) {
        json_object_object_add(w->result, "state", json_object_new_string(state));
        if (reason)
                json_object_object_add(w->result, "reason", json_object_new_string(reason));
}

static char *log_text(Worker *w, size_t *ret_len) {
        _cleanup_(closep) int fd = openat(w->dir_fd, PROFILE_LOG, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        char *s = NULL;
        off_t size;

        *ret_len = 0;
        if (fd < 0)
                return NULL;
        /* its end says why perf stopped */
        size = lseek(fd, 0, SEEK_END);
        if (size > 16 * 1024)
                (void) lseek(fd, size - 16 * 1024, SEEK_SET);
        else
                (void) lseek(fd, 0, SEEK_SET);
        if (read_full_fd(fd, 16 * 1024, &s, ret_len) < 0)
                return NULL;
        return s;
}

static int record(Worker *w) {
        char freq[16], secs[32], reason[600];
        _cleanup_(freep) char *log = NULL;
        char *argv[] = { (char *) w->perf, (char *) "record", (char *) "-F", freq, (char *) "-a", (char *) "-g",
                         /* no build-id cache in $HOME: there is none, and it grows forever */
                         (char *) "--no-buildid-cache", (char *) "-q", (char *) "-o", (char *) "perf.data",
                         (char *) "--", (char *) "sleep", secs, NULL };
        usec_t start = clock_now(CLOCK_MONOTONIC);
        size_t len;
        bool permission;
        int r, status = 0;
        pid_t pid;

        snprintf(freq, sizeof freq, "%u", w->frequency);
        snprintf(secs, sizeof secs, "%.3f", (double) w->duration / USEC_PER_SEC);
        r = spawn(w, argv, w->log_fd, &pid);
        if (r < 0) {
                snprintf(reason, sizeof reason, "cannot run %s: %s", w->perf, strerror(-r));
                result_set(w, "failed", reason);
                return r;
        }
        r = wait_until(pid, start + w->duration + PROFILE_RECORD_GRACE, &status);
        json_object_object_add(w->result, "record_sec", json_new_rounded((double) (clock_now(CLOCK_MONOTONIC) - start) / USEC_PER_SEC, 2));
        if (r < 0 && r != -ETIME) {
                result_set(w, "failed", "lost track of perf record");
                return r;
        }
        if (r == -ETIME) {
                json_object_object_add(w->result, "record_timed_out", json_object_new_boolean(true));
                /* Past SIGINT too: what it wrote, if anything, is cut. */
                if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) {
                        snprintf(reason, sizeof reason,
                                 "perf record did not end %.0f s after the capture, nor on SIGINT: killed",
                                 (double) PROFILE_RECORD_GRACE / USEC_PER_SEC);
                        result_set(w, "failed", reason);
                        return -ETIME;
                }
        }
        /* Stopped by our SIGINT, perf still writes a usable file. */
        if (r == 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
                log = log_text(w, &len);
                profile_perf_failure(log ? log : "", log ? len : 0, &permission, reason, sizeof reason);
                if (WIFSIGNALED(status))
                        snprintf(reason, sizeof reason, "perf record was killed by signal %d", WTERMSIG(status));
                result_set(w, permission ? "skipped" : "failed", reason);
                return -EPERM;
        }
        return 0;
}

static int fold(Worker *w, Folded *ret, StackFoldStats *ret_stats) {
        _cleanup_(stackfold_freep) StackFolder *f = NULL;
        _cleanup_(closep) int rfd = -1, wfd = -1;
        char *argv[] = { (char *) w->perf, (char *) "script", (char *) "-i", (char *) "perf.data",
                         /* inline resolution runs addr2line per frame: minutes, not seconds */
                         (char *) "--no-inline", NULL };
        usec_t start = clock_now(CLOCK_MONOTONIC), deadline = start + PROFILE_FOLD_TIMEOUT;
        char buf[64 * 1024], reason[300];
        bool partial = false;
        int fds[2], r, status = 0;
        pid_t pid;

        r = stackfold_new(NULL, &f);
        if (r < 0)
                return r;
        if (pipe2(fds, O_CLOEXEC) < 0)
                return -errno;
        rfd = fds[0];
        wfd = fds[1];
        r = spawn(w, argv, wfd, &pid);
        if (r < 0) {
                snprintf(reason, sizeof reason, "cannot run %s script: %s", w->perf, strerror(-r));
                result_set(w, "failed", reason);
                return r;
        }
        close(TAKE_FD(wfd));
        for (;;) {
                struct pollfd p = { .fd = rfd, .events = POLLIN };
                usec_t now = clock_now(CLOCK_MONOTONIC);
                ssize_t n;

                if (now >= deadline) {
                        partial = true;
                        (void) kill(pid, SIGKILL);
                        break;
                }
                r = poll(&p, 1, (int) MIN((deadline - now) / USEC_PER_MSEC + 1, (usec_t) 1000));
                if (r < 0 && errno != EINTR)
                        break;
                if (r <= 0)
                        continue;
                n = read(rfd, buf, sizeof buf);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                r = stackfold_feed(f, buf, (size_t) n);
                if (r < 0) {
                        partial = true;
                        (void) kill(pid, SIGKILL);
                        break;
                }
        }
        (void) wait_until(pid, clock_now(CLOCK_MONOTONIC) + 10 * USEC_PER_SEC, &status);
        if (!partial && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
                _cleanup_(freep) char *log = NULL;
                size_t len;
                bool permission;
                log = log_text(w, &len);
                profile_perf_failure(log ? log : "", log ? len : 0, &permission, reason, sizeof reason);
                json_object_object_add(w->result, "script_error", json_object_new_string(reason));
                partial = true;
        }
        json_object_object_add(w->result, "fold_sec", json_new_rounded((double) (clock_now(CLOCK_MONOTONIC) - start) / USEC_PER_SEC, 2));
        json_object_object_add(w->result, "partial", json_object_new_boolean(partial));
        return stackfold_finish(f, ret, ret_stats);
}

static int write_text_at(int dir_fd, const char *name, int (*render)(const void *, FILE *), const void *data) {
        _cleanup_(freep) char *s = NULL;
        size_t len = 0;
        FILE *f;
        int r;

        f = open_memstream(&s, &len);
        if (!f)
                return -ENOMEM;
        r = render(data, f);
        if (fclose(f) != 0 && r >= 0)
                r = -ENOMEM;
        if (r < 0)
                return r;
        return write_file_atomic_at(dir_fd, name, s, len);
}

static int render_folded(const void *data, FILE *out) {
        return folded_write(data, out);
}

typedef struct FlameJob {
        const Folded *profile;
        const FlameOptions *options;
} FlameJob;

static int render_flame(const void *data, FILE *out) {
        const FlameJob *j = data;
        return flamegraph_render(j->profile, j->options, out);
}

static json_object *top_stacks_json(const Folded *f) {
        const FoldedStack *top[PROFILE_TOP_STACKS];
        json_object *arr = json_object_new_array();
        size_t n = 0;

        if (!arr || folded_top(f, PROFILE_TOP_STACKS, top, &n) < 0)
                return arr;
        for (size_t i = 0; i < n; i++) {
                json_object *o = json_object_new_object();
                if (!o)
                        break;
                json_object_object_add(o, "stack", json_object_new_string(top[i]->stack));
                json_object_object_add(o, "samples", json_object_new_uint64(top[i]->count));
                json_object_object_add(o, "pct", json_new_rounded(100.0 * (double) top[i]->count / (double) f->total, 1));
                json_object_array_add(arr, o);
        }
        return arr;
}

static int worker_run(Worker *w) {
        _cleanup_(folded_done) Folded profile = FOLDED_INIT;
        StackFoldStats st = {};
        char subtitle[200];
        FlameOptions o = {};
        FlameJob job;
        int paranoid = 2, r;

        if (access(w->perf, X_OK) < 0) {
                char reason[PATH_MAX + 100];
                snprintf(reason, sizeof reason, "%s: %s (Debian: apt-get install linux-perf; or set [evidence] perf)",
                         w->perf, strerror(errno));
                result_set(w, "skipped", reason);
                return 0;
        }
        /* Say why before perf does, in our words: a system-wide profile
         * needs CAP_PERFMON (or CAP_SYS_ADMIN) unless paranoid <= 0. */
        if (read_paranoid(&paranoid) >= 0 && paranoid > 0 && !have_capability(CAP_PERFMON_BIT) &&
            !have_capability(CAP_SYS_ADMIN_BIT)) {
                char reason[300];
                snprintf(reason, sizeof reason,
                         "perf may not profile the whole system here: kernel.perf_event_paranoid = %d and no "
                         "CAP_PERFMON (see the README: the unit's drop-in for profiles)",
                         paranoid);
                result_set(w, "skipped", reason);
                return 0;
        }
        r = record(w);
        if (r < 0)
                return 0; /* the result says why */
        r = fold(w, &profile, &st);
        (void) unlinkat(w->dir_fd, "perf.data", 0); /* large, and useless without this boot's binaries */
        (void) unlinkat(w->dir_fd, "perf.data.old", 0);
        if (r < 0) {
                result_set(w, "failed", "cannot fold the stacks");
                return 0;
        }
        json_object_object_add(w->result, "samples", json_object_new_uint64(st.samples));
        json_object_object_add(w->result, "folded", json_object_new_uint64(st.folded));
        json_object_object_add(w->result, "idle", json_object_new_uint64(st.idle));
        json_object_object_add(w->result, "malformed", json_object_new_uint64(st.malformed));
        json_object_object_add(w->result, "truncated", json_object_new_uint64(st.truncated));
        json_object_object_add(w->result, "stacks", json_object_new_uint64(profile.n));
        json_object_object_add(w->result, "top_stacks", top_stacks_json(&profile));

        r = write_text_at(w->dir_fd, INCIDENT_FOLDED, render_folded, &profile);
        if (r < 0) {
                result_set(w, "failed", "cannot write " INCIDENT_FOLDED);
                return 0;
        }
        snprintf(subtitle, sizeof subtitle, "%" PRIu64 " samples at %u Hz over %.1f s on every CPU; %" PRIu64
                 " idle samples left out",
                 st.folded, w->frequency, (double) w->duration / USEC_PER_SEC, st.idle);
        o.title = w->title;
        o.subtitle = subtitle;
        job = (FlameJob) { .profile = &profile, .options = &o };
        r = write_text_at(w->dir_fd, INCIDENT_FLAME, render_flame, &job);
        if (r < 0) {
                result_set(w, "failed", "cannot write " INCIDENT_FLAME);
                return 0;
        }
        result_set(w, "done", NULL);
        return 0;
}

static int parse_worker_args(int argc, char **argv, Worker *w) {
        double secs;
        uint64_t freq;
        char *end;

        if (argc != 6)
                return -EINVAL;
        w->dir = argv[1];
        errno = 0;
        secs = strtod(argv[2], &end);
        if (errno != 0 || *end || !(secs > 0 && secs <= 3600))
                return -EINVAL;
        w->duration = (usec_t) (secs * USEC_PER_SEC);
        if (parse_u64_decimal(argv[3], strlen(argv[3]), &freq) < 0 || freq == 0 || freq > 100000)
                return -EINVAL;
        w->frequency = (unsigned) freq;
        w->perf = argv[4];
        w->title = argv[5];
        if (w->dir[0] != '/' || w->perf[0] != '/')
                return -EINVAL;
        return 0;
}

int profile_worker_main(int argc, char **argv) {
        _cleanup_(json_object_putp) json_object *result = NULL;
        Worker w = { .dir_fd = -1, .log_fd = -1 };
        const char *text;
        int r;

        if (parse_worker_args(argc, argv, &w) < 0) {
                fprintf(stderr, "usage: monkeyd --profile-worker DIR SECONDS FREQUENCY PERF TITLE\n");
                return 2;
        }
        w.dir_fd = open(w.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (w.dir_fd < 0 || fchdir(w.dir_fd) < 0) {
                fprintf(stderr, "%s: %s\n", w.dir, strerror(errno));
                return 1;
        }
        w.log_fd = openat(w.dir_fd, PROFILE_LOG, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (w.log_fd < 0) {
                fprintf(stderr, "%s/" PROFILE_LOG ": %s\n", w.dir, strerror(errno));
                return 1;
        }
        result = w.result = json_object_new_object();
        if (!result)
                return 1;
        json_object_object_add(result, "seconds", json_new_rounded((double) w.duration / USEC_PER_SEC, 3));
        json_object_object_add(result, "frequency", json_object_new_uint64(w.frequency));
        (void) worker_run(&w);
        text = json_object_to_json_string_ext(result, JSON_C_TO_STRING_PLAIN);
        r = write_file_atomic_at(w.dir_fd, PROFILE_RESULT, text, strlen(text));
        close(w.log_fd);
        close(w.dir_fd);
        if (r < 0) {
                fprintf(stderr, "%s/" PROFILE_RESULT ": %s\n", w.dir, strerror(-r));
                return 1;
        }
        return 0;
}

/* ---- the supervisor, in the agent ------------------------------------ */

struct Profile {
        sd_event *event;
        sd_event_source *child, *deadline;
        pid_t pid;
        char *dir;
        usec_t deadline_at;
        profile_done_t done;
        void *userdata;
        bool finished;
};

static void profile_finish(Profile *p, json_object *result, const char *error) {
        if (p->finished)
                return;
        p->finished = true;
        p->child = sd_event_source_disable_unref(p->child);
        p->deadline = sd_event_source_disable_unref(p->deadline);
        p->pid = 0;
        if (p->done)
                p->done(p, result, error, p->userdata);
}

static json_object *read_result(const char *dir, char *error, size_t size) {
        _cleanup_(closep) int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW), fd = -1;
        _cleanup_(freep) char *s = NULL;
        json_object *o;
        size_t len;
        int r;

        if (dfd < 0) {
                snprintf(error, size, "%s: %s", dir, strerror(errno));
                return NULL;
        }
        fd = openat(dfd, PROFILE_RESULT, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        if (fd < 0) {
                snprintf(error, size, "the profile worker wrote no " PROFILE_RESULT ": %s", strerror(errno));
                return NULL;
        }
        r = read_full_fd(fd, 1024 * 1024, &s, &len);
        if (r < 0) {
                snprintf(error, size, PROFILE_RESULT ": %s", strerror(-r));
                return NULL;
        }
        o = json_tokener_parse(s);
        if (!o || !json_object_is_type(o, json_type_object)) {
                json_object_put(o);
                snprintf(error, size, PROFILE_RESULT " is not a JSON object");
                return NULL;
        }
        return o;
}

static int on_child(sd_event_source *s, const siginfo_t *si, void *userdata) {
        Profile *p = userdata;
        _cleanup_(json_object_putp) json_object *result = NULL;
        char error[400] = "";

        p->child = sd_event_source_disable_unref(p->child);
        if (si->si_code == CLD_EXITED && si->si_status == 0)
                result = read_result(p->dir, error, sizeof error);
        else if (si->si_code == CLD_EXITED)
                snprintf(error, sizeof error, "the profile worker failed (exit status %d; see %s/" PROFILE_LOG ")",
                         si->si_status, p->dir);
        else
                snprintf(error, sizeof error, "the profile worker was killed by signal %d", si->si_status);
        profile_finish(p, result, result ? NULL : error);
        return 0;
}

static int on_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        Profile *p = userdata;

        /* the whole group: perf and perf script too */
        if (p->pid > 0)
                (void) kill(-p->pid, SIGKILL);
        /* The child source reaps it; say now why it ends. */
        profile_finish(p, NULL, "the profile took too long and was stopped");
        return 0;
}

int profile_start(sd_event *e, const ProfileRequest *req, profile_done_t done, void *userdata, Profile **ret) {
        _cleanup_(profile_freep) Profile *p = NULL;
        _cleanup_(closep) int log_fd = -1, dir_fd = -1;
        char secs[32], freq[16];
        char *argv[] = { (char *) "monkeyd", (char *) "--profile-worker", NULL, secs, freq, NULL, NULL, NULL };
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t attr;
        sigset_t none;
        int r;

        if (!req->self_exe || !req->dir || !req->perf || req->duration == 0 || req->frequency == 0)
                return -EINVAL;
        p = calloc(1, sizeof *p);
        if (!p)
                return -ENOMEM;
        p->event = sd_event_ref(e);
        p->dir = strdup(req->dir);
        if (!p->dir)
                return -ENOMEM;
        dir_fd = open(req->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (dir_fd < 0)
                return -errno;
        log_fd = openat(dir_fd, PROFILE_LOG, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (log_fd < 0)
                return -errno;
        snprintf(secs, sizeof secs, "%.3f", (double) req->duration / USEC_PER_SEC);
        snprintf(freq, sizeof freq, "%u", req->frequency);
        argv[2] = (char *) req->dir;
        argv[5] = (char *) req->perf;
        argv[6] = (char *) (req->title ? req->title : "CPU profile");

        sigemptyset(&none);
        posix_spawn_file_actions_init(&fa);
        posix_spawnattr_init(&attr);
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_adddup2(&fa, log_fd, 1);
        posix_spawn_file_actions_adddup2(&fa, log_fd, 2);
        /* Its own process group, so the deadline kills perf with it; the
         * agent's blocked signals must not stay blocked in perf. */
        posix_spawnattr_setpgroup(&attr, 0);
        posix_spawnattr_setsigmask(&attr, &none);
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK);
        r = -posix_spawn(&p->pid, req->self_exe, &fa, &attr, argv, child_env);
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&attr);
        if (r < 0) {
                p->pid = 0;
                return r;
        }
        r = sd_event_add_child(e, &p->child, p->pid, WEXITED, on_child, p);
        if (r < 0) {
                (void) kill(-p->pid, SIGKILL);
                (void) waitpid(p->pid, NULL, 0);
                p->pid = 0;
                return r;
        }
        /* Reaping is ours: sd-event must not leave a zombie behind if the
         * source goes first. */
        (void) sd_event_source_set_child_process_own(p->child, true);
        p->deadline_at = clock_now(CLOCK_MONOTONIC) + req->duration + PROFILE_RECORD_GRACE + PROFILE_FOLD_TIMEOUT +
                         30 * USEC_PER_SEC;
        r = sd_event_add_time(e, &p->deadline, CLOCK_MONOTONIC, p->deadline_at, USEC_PER_SEC, on_deadline, p);
        if (r < 0)
                return r;
        p->done = done;
        p->userdata = userdata;
        *ret = TAKE_PTR(p);
        return 0;
}

bool profile_running(const Profile *p) {
        return p && !p->finished;
}

usec_t profile_deadline(const Profile *p) {
        return p ? p->deadline_at : 0;
}

Profile *profile_free(Profile *p) {
        if (!p)
                return NULL;
        if (p->pid > 0 && !p->finished)
                (void) kill(-p->pid, SIGKILL);
        p->finished = true; /* no callback from here on */
        /* child_process_own: unref kills and reaps what still runs */
        p->child = sd_event_source_disable_unref(p->child);
        p->deadline = sd_event_source_disable_unref(p->deadline);
        sd_event_unref(p->event);
        free(p->dir);
        free(p);
        return NULL;
}
