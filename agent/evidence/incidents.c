/* Incident evidence on disk: see incidents.h. */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <sys/stat.h>

#include "fileio.h"
#include "incidents.h"
#include "numparse.h"

#define INCIDENTS_DIR "incidents"

/* A decimal as the kernel prints these files: digits, an optional '.'
 * and digits; no sign, no exponent, no blanks. */
static int parse_decimal(const char *s, size_t n, double *ret) {
        char buf[64];
        char *end;
        bool dot = false, digit = false;

        if (n == 0 || n >= sizeof buf)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                if (s[i] == '.' && !dot)
                        dot = true;
                else if (is_digit(s[i]))
                        digit = true;
                else
                        return -EINVAL;
        }
        if (!digit)
                return -EINVAL;
        memcpy(buf, s, n);
        buf[n] = '\0';
        errno = 0;
        *ret = strtod(buf, &end);
        if (errno != 0 || end != buf + n || !isfinite(*ret))
                return -EINVAL;
        return 0;
}

/* The next blank-separated token of [*p, end) */
static bool next_token(const char **p, const char *end, const char **ret, size_t *ret_len) {
        const char *s = *p;

        while (s < end && *s == ' ')
                s++;
        if (s >= end)
                return false;
        *ret = s;
        while (s < end && *s != ' ')
                s++;
        *ret_len = (size_t) (s - *ret);
        *p = s;
        return true;
}

int loadavg_parse(const char *buf, size_t len, LoadAvg *ret) {
        const char *p = buf, *end, *t, *slash;
        size_t n;
        double avg[3];
        LoadAvg l = {};

        end = memchr(buf, '\n', len);
        if (!end)
                return -EBADMSG;
        for (size_t i = 0; i < 3; i++)
                if (!next_token(&p, end, &t, &n) || parse_decimal(t, n, &avg[i]) < 0)
                        return -EBADMSG;
        if (!next_token(&p, end, &t, &n))
                return -EBADMSG;
        slash = memchr(t, '/', n);
        if (!slash || parse_u64_decimal(t, (size_t) (slash - t), &l.running) < 0 ||
            parse_u64_decimal(slash + 1, n - (size_t) (slash - t) - 1, &l.total) < 0)
                return -EBADMSG;
        l.avg1 = avg[0];
        l.avg5 = avg[1];
        l.avg15 = avg[2];
        *ret = l;
        return 0;
}

static int psi_line_parse(const char *p, const char *end, PsiLine *ret) {
        static const char *const keys[] = { "avg10=", "avg60=", "avg300=", "total=" };
        PsiLine l = {};
        double *avgs[] = { &l.avg10, &l.avg60, &l.avg300 };
        const char *t;
        size_t n;

        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                size_t k = strlen(keys[i]);
                if (!next_token(&p, end, &t, &n) || n <= k || memcmp(t, keys[i], k) != 0)
                        return -EBADMSG;
                if (i < 3 ? parse_decimal(t + k, n - k, avgs[i]) < 0 : parse_u64_decimal(t + k, n - k, &l.total_usec) < 0)
                        return -EBADMSG;
        }
        if (next_token(&p, end, &t, &n))
                return -EBADMSG;
        *ret = l;
        return 0;
}

int psi_parse(const char *buf, size_t len, Psi *ret) {
        const char *p = buf, *end = buf + len;
        bool some = false;
        Psi s = {};

        while (p < end) {
                const char *eol = memchr(p, '\n', (size_t) (end - p));
                PsiLine *l;

                if (!eol)
                        return -EBADMSG; /* cut */
                if ((size_t) (eol - p) > 5 && memcmp(p, "some ", 5) == 0 && !some) {
                        l = &s.some;
                        some = true;
                } else if ((size_t) (eol - p) > 5 && memcmp(p, "full ", 5) == 0 && !s.has_full) {
                        l = &s.full;
                        s.has_full = true;
                } else
                        return -EBADMSG;
                if (psi_line_parse(p + 5, eol, l) < 0)
                        return -EBADMSG;
                p = eol + 1;
        }
        if (!some)
                return -EBADMSG;
        *ret = s;
        return 0;
}

bool incident_id_valid(const char *id) {
        size_t n;

        if (isempty(id) || id[0] == '.')
                return false;
        n = strlen(id);
        if (n > INCIDENT_ID_MAX)
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = id[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '.' || c == '_' ||
                      c == '-'))
                        return false;
        }
        return true;
}

int incident_dir_path(const char *state_dir, const char *id, char **ret) {
        char *p;

        if (!incident_id_valid(id))
                return -EINVAL;
        if (asprintf(&p, "%s/" INCIDENTS_DIR "/%s", state_dir, id) < 0)
                return -ENOMEM;
        *ret = p;
        return 0;
}

static int mkdir_if_missing(const char *path) {
        if (mkdir(path, 0700) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

int incident_dir_make(const char *state_dir, const char *id, char **ret) {
        _cleanup_(freep) char *top = NULL, *dir = NULL;
        int r;

        r = incident_dir_path(state_dir, id, &dir);
        if (r < 0)
                return r;
        if (asprintf(&top, "%s/" INCIDENTS_DIR, state_dir) < 0)
                return -ENOMEM;
        r = mkdir_if_missing(top);
        if (r < 0)
                return r;
        r = mkdir_if_missing(dir);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(dir);
        return 0;
}

int incident_write(const char *state_dir, const char *id, const char *name, const char *data, size_t len) {
        _cleanup_(freep) char *dir = NULL;
        _cleanup_(closep) int fd = -1;
        int r;

        r = incident_dir_make(state_dir, id, &dir);
        if (r < 0)
                return r;
        fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return -errno;
        return write_file_atomic_at(fd, name, data, len);
}

int incident_write_queued(Writer *w, const char *state_dir, const char *id, const char *name, const char *data,
                          size_t len, const WriterDone *done) {
        _cleanup_(freep) char *dir = NULL;
        int r;

        r = incident_dir_make(state_dir, id, &dir);
        if (r < 0)
                return r;
        return writer_save(w, dir, name, data, len, done, done ? 1 : 0);
}

int incident_read(const char *state_dir, const char *id, const char *name, size_t max, char **ret, size_t *ret_len) {
        _cleanup_(freep) char *dir = NULL, *path = NULL;
        _cleanup_(closep) int fd = -1;
        int r;

        if (isempty(name) || strchr(name, '/'))
                return -EINVAL;
        r = incident_dir_path(state_dir, id, &dir);
        if (r < 0)
                return r;
        if (asprintf(&path, "%s/%s", dir, name) < 0)
                return -ENOMEM;
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        return read_full_fd(fd, max, ret, ret_len);
}

/* Bytes of the regular files directly in dir (an incident has no
 * subdirectories). */
static uint64_t dir_bytes(int dir_fd) {
        _cleanup_(closep) int fd = dup(dir_fd);
        uint64_t sum = 0;
        struct dirent *de;
        DIR *d;

        if (fd < 0)
                return 0;
        d = fdopendir(fd);
        if (!d)
                return 0;
        fd = -1; /* the DIR owns it */
        while ((de = readdir(d))) {
                struct stat st;
                if (de->d_name[0] == '.' && (de->d_name[1] == '\0' || (de->d_name[1] == '.' && de->d_name[2] == '\0')))
                        continue;
                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
                        sum += (uint64_t) st.st_size;
        }
        closedir(d);
        return sum;
}

static int entry_cmp(const void *x, const void *y) {
        return strcmp(((const IncidentEntry *) x)->id, ((const IncidentEntry *) y)->id);
}

int incidents_list(const char *state_dir, IncidentEntry **ret, size_t *ret_n) {
        _cleanup_(freep) char *top = NULL;
        _cleanup_(freep) IncidentEntry *e = NULL;
        size_t n = 0, allocated = 0;
        struct dirent *de;
        DIR *d;

        if (asprintf(&top, "%s/" INCIDENTS_DIR, state_dir) < 0)
                return -ENOMEM;
        d = opendir(top);
        if (!d) {
                if (errno != ENOENT)
                        return -errno;
                *ret = NULL;
                *ret_n = 0;
                return 0;
        }
        while ((de = readdir(d))) {
                _cleanup_(closep) int fd = -1;
                struct stat st;

                if (!incident_id_valid(de->d_name))
                        continue;
                fd = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
                if (fd < 0 || fstat(fd, &st) < 0 || !S_ISDIR(st.st_mode))
                        continue;
                if (n == allocated) {
                        size_t na = allocated ? allocated * 2 : 16;
                        IncidentEntry *ne = realloc(e, na * sizeof *ne);
                        if (!ne) {
                                closedir(d);
                                return -ENOMEM;
                        }
                        e = ne;
                        allocated = na;
                }
                /* valid ids are at most INCIDENT_ID_MAX bytes */
                memcpy(e[n].id, de->d_name, strlen(de->d_name) + 1);
                e[n].bytes = dir_bytes(fd);
                n++;
        }
        closedir(d);
        if (n > 1)
                qsort(e, n, sizeof *e, entry_cmp);
        *ret = TAKE_PTR(e);
        *ret_n = n;
        return 0;
}

size_t incidents_retention(const IncidentEntry *e, size_t n, unsigned keep, uint64_t max_bytes, const char *current,
                           bool *ret_remove) {
        uint64_t bytes = 0;
        size_t left = n, marked = 0;

        for (size_t i = 0; i < n; i++) {
                ret_remove[i] = false;
                bytes += e[i].bytes;
        }
        for (size_t i = 0; i + 1 < n && (left > keep || bytes > max_bytes); i++) {
                if (streq_ptr(e[i].id, current))
                        continue;
                ret_remove[i] = true;
                marked++;
                left--;
                bytes -= e[i].bytes;
        }
        return marked;
}

/* Remove an incident directory: its files, then itself. */
static int incident_remove(const char *top, const char *id) {
        _cleanup_(closep) int fd = -1, top_fd = -1;
        struct dirent *de;
        DIR *d;
        int r = 0;

        top_fd = open(top, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (top_fd < 0)
                return -errno;
        fd = openat(top_fd, id, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return -errno;
        d = fdopendir(fd);
        if (!d)
                return -errno;
        fd = -1;
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.' && (de->d_name[1] == '\0' || (de->d_name[1] == '.' && de->d_name[2] == '\0')))
                        continue;
                if (unlinkat(dirfd(d), de->d_name, 0) < 0 && errno != ENOENT && r == 0)
                        r = -errno;
        }
        closedir(d);
        if (unlinkat(top_fd, id, AT_REMOVEDIR) < 0 && errno != ENOENT && r == 0)
                r = -errno;
        return r;
}

int incidents_prune(const char *state_dir, unsigned keep, uint64_t max_bytes, const char *current, size_t *ret_removed) {
        _cleanup_(freep) IncidentEntry *e = NULL;
        _cleanup_(freep) bool *remove = NULL;
        _cleanup_(freep) char *top = NULL;
        size_t n, removed = 0;
        int r, first = 0;

        r = incidents_list(state_dir, &e, &n);
        if (r < 0)
                return r;
        if (ret_removed)
                *ret_removed = 0;
        if (n == 0)
                return 0;
        remove = calloc(n, sizeof *remove);
        if (!remove || asprintf(&top, "%s/" INCIDENTS_DIR, state_dir) < 0)
                return -ENOMEM;
        if (incidents_retention(e, n, keep, max_bytes, current, remove) == 0)
                return 0;
        for (size_t i = 0; i < n; i++) {
                if (!remove[i])
                        continue;
                r = incident_remove(top, e[i].id);
                if (r < 0 && first == 0)
                        first = r;
                else if (r >= 0)
                        removed++;
        }
        if (ret_removed)
                *ret_removed = removed;
        return first;
}
