/* state_dir/history.jsonl: see history.h for why the lines are not fsynced. */
#include "history.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "fileio.h"
#include "jsonutil.h"
#include "log.h"

struct HistoryFile {
        int dir_fd;
        int fd;         /* O_APPEND */
        char *dir;      /* for messages */
        size_t max;     /* the ring's size */
        size_t lines;   /* lines in the file now */
        bool failing;   /* the last write failed: logged already */
};

static json_object *parse_one(const char *s, size_t n) {
        _cleanup_(json_tokener_freep) json_tokener *tok = NULL;
        json_object *o;

        if (n == 0 || n > HISTORY_LINE_MAX)
                return NULL;
        tok = json_tokener_new();
        if (!tok)
                return NULL;
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
        o = json_tokener_parse_ex(tok, s, (int) n);
        if (!o)
                return NULL;
        /* one whole object, nothing after it */
        if (json_tokener_get_error(tok) != json_tokener_success || json_tokener_get_parse_end(tok) != n ||
            !json_object_is_type(o, json_type_object)) {
                json_object_put(o);
                return NULL;
        }
        return o;
}

static void reverse(json_object **a, size_t from, size_t to) {
        while (from + 1 < to) {
                json_object *t = a[from];
                a[from++] = a[--to];
                a[to] = t;
        }
}

int history_parse(const char *text, size_t len, bool partial, size_t max, json_object **ret, size_t *ret_n,
                  size_t *ret_skipped) {
        size_t n = 0, head = 0, skipped = 0, pos = 0;

        if ((!text && len > 0) || !ret || !ret_n)
                return -EINVAL;
        if (partial) {
                const char *nl = memchr(text, '\n', len);
                pos = nl ? (size_t) (nl - text) + 1 : len;
        }
        while (pos < len) {
                const char *nl = memchr(text + pos, '\n', len - pos);
                size_t end = nl ? (size_t) (nl - text) : len;
                json_object *o = parse_one(text + pos, end - pos);

                if (!o) {
                        /* blank lines are no loss worth counting */
                        if (end > pos)
                                skipped++;
                } else if (max == 0)
                        json_object_put(o);
                else if (n < max)
                        ret[n++] = o;
                else {
                        /* full: the oldest goes, as in the agent's ring */
                        json_object_put(ret[head]);
                        ret[head] = o;
                        head = (head + 1) % max;
                }
                pos = end + 1;
        }
        /* oldest first: rotate left by head, as three reversals */
        if (head > 0) {
                reverse(ret, 0, head);
                reverse(ret, head, n);
                reverse(ret, 0, n);
        }
        *ret_n = n;
        if (ret_skipped)
                *ret_skipped = skipped;
        return 0;
}

int history_format_line(json_object *o, char **ret, size_t *ret_len) {
        const char *s;
        char *line;
        size_t n;

        if (!o || !ret || !ret_len)
                return -EINVAL;
        s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        if (!s)
                return -ENOMEM;
        n = strlen(s);
        /* what history_parse would skip is not worth writing */
        if (n > HISTORY_LINE_MAX)
                return -E2BIG;
        line = malloc(n + 2);
        if (!line)
                return -ENOMEM;
        memcpy(line, s, n);
        line[n] = '\n';
        line[n + 1] = '\0';
        *ret = line;
        *ret_len = n + 1;
        return 0;
}

/* The file's last HISTORY_FILE_READ_MAX bytes; *ret_partial when that cut
 * the file. */
static int read_tail(int fd, char **ret, size_t *ret_len, bool *ret_partial) {
        struct stat st;
        off_t from = 0;

        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EBADF;
        if (st.st_size > (off_t) HISTORY_FILE_READ_MAX)
                from = st.st_size - (off_t) HISTORY_FILE_READ_MAX;
        if (lseek(fd, from, SEEK_SET) < 0)
                return -errno;
        *ret_partial = from > 0;
        /* the file may grow meanwhile only if someone else writes it: a
         * little room, then -EFBIG */
        return read_full_fd(fd, HISTORY_FILE_READ_MAX + HISTORY_LINE_MAX, ret, ret_len);
}

static void log_write_failure(HistoryFile *f, int r, const char *what) {
        if (f->failing)
                return;
        f->failing = true;
        log_warning_errno(r, "Cannot %s %s/%s: %m; the history is kept in memory, ignoring", what, f->dir,
                          HISTORY_FILE);
}

static int open_append(HistoryFile *f) {
        if (f->fd >= 0)
                close(f->fd);
        f->fd = openat(f->dir_fd, HISTORY_FILE, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY,
                       0600);
        return f->fd < 0 ? -errno : 0;
}

int history_file_rewrite(HistoryFile *f, json_object *const *entries, size_t n) {
        _cleanup_(freep) char *buf = NULL;
        size_t size = 0;
        FILE *m;
        int r;

        if (!f)
                return -EINVAL;
        m = open_memstream(&buf, &size);
        if (!m)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                _cleanup_(freep) char *line = NULL;
                size_t len;

                if (history_format_line(entries[i], &line, &len) >= 0)
                        fwrite(line, 1, len, m);
        }
        if (fclose(m) != 0)
                return -ENOMEM;

        /* No fsync (history.h): ext4 and xfs flush a file renamed over
         * another before the rename itself is committed, so a crash leaves
         * the old file or the new one. */
        r = write_file_atomic_full(f->dir_fd, HISTORY_FILE, strempty(buf), size, 0600, WRITE_ATOMIC_NO_SYNC);
        if (r < 0) {
                log_write_failure(f, r, "rewrite");
                return r;
        }
        f->lines = n;
        if (f->failing)
                log_info("%s/%s is written again", f->dir, HISTORY_FILE);
        f->failing = false;
        return 0;
}

int history_file_append(HistoryFile *f, json_object *o) {
        _cleanup_(freep) char *line = NULL;
        size_t len;
        int r;

        if (!f || !o)
                return -EINVAL;
        r = history_format_line(o, &line, &len);
        if (r < 0)
                return r;
        if (f->fd < 0) {
                r = open_append(f);
                if (r < 0) {
                        log_write_failure(f, r, "open");
                        return r;
                }
        }
        r = write_all(f->fd, line, len);
        if (r < 0)
                /* a short write leaves a torn line: start the next on its own */
                (void) write_all(f->fd, "\n", 1);
        /* Not kept open between transitions (they are rare): a file open
         * for writing keeps an operator from remounting the state dir
         * read-only, and a rotated or removed file is simply made again. */
        close(TAKE_FD(f->fd));
        if (r < 0) {
                log_write_failure(f, r, "append to");
                return r;
        }
        if (f->failing)
                log_info("%s/%s is written again", f->dir, HISTORY_FILE);
        f->failing = false;
        f->lines++;
        return f->lines >= HISTORY_FILE_SLACK * f->max ? 1 : 0;
}

int history_file_open(const char *dir, size_t max, json_object **ret, size_t *ret_n, HistoryFile **ret_file) {
        HistoryFile *f;
        _cleanup_(closep) int fd = -1;
        _cleanup_(freep) char *text = NULL;
        size_t len = 0, n = 0, skipped = 0;
        bool partial = false;
        int r;

        if (!dir || !ret || !ret_n || !ret_file || max == 0)
                return -EINVAL;
        f = calloc(1, sizeof *f);
        if (!f)
                return -ENOMEM;
        f->fd = f->dir_fd = -1;
        f->max = max;
        f->dir = strdup(dir);
        f->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (!f->dir || f->dir_fd < 0) {
                r = f->dir ? -errno : -ENOMEM;
                history_file_free(f);
                return r;
        }

        fd = openat(f->dir_fd, HISTORY_FILE, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK);
        if (fd < 0 && errno != ENOENT)
                log_warning_errno(errno, "Cannot read %s/%s: %m; starting a new history", dir, HISTORY_FILE);
        else if (fd >= 0) {
                r = read_tail(fd, &text, &len, &partial);
                if (r < 0)
                        log_warning_errno(r, "Cannot read %s/%s: %m; starting a new history", dir, HISTORY_FILE);
                else if (history_parse(text, len, partial, max, ret, &n, &skipped) < 0)
                        n = 0;
                else if (skipped > 0)
                        log_notice("%s/%s: %zu unreadable line(s) skipped (a write cut short by a crash?)", dir,
                                   HISTORY_FILE, skipped);
        }
        /* Once per start: bounded, and no torn line left to glue to. */
        (void) history_file_rewrite(f, ret, n);
        *ret_n = n;
        *ret_file = f;
        return 0;
}

HistoryFile *history_file_free(HistoryFile *f) {
        if (!f)
                return NULL;
        if (f->fd >= 0)
                close(f->fd);
        if (f->dir_fd >= 0)
                close(f->dir_fd);
        free(f->dir);
        free(f);
        return NULL;
}
