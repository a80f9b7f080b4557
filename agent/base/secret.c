#include <ctype.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "fileio.h"
#include "secret.h"

/* A secret is a token or a password, a credentials file a few lines:
 * anything far larger is the wrong file. */
#define SECRET_SIZE_MAX ((size_t) 64 * 1024)

/* The rule for a secret file, on its metadata: one place for the reader
 * and for the config check. */
int secret_file_verdict(const char *path, const struct stat *st, char **ret_error) {
        if (S_ISLNK(st->st_mode))
                return error_set(ret_error, -EPERM, "%s: is a symlink, refusing; name the file itself", path);
        if (!S_ISREG(st->st_mode))
                return error_set(ret_error, -EPERM, "%s: not a regular file", path);
        if (st->st_mode & (S_IRWXG | S_IRWXO))
                return error_set(ret_error, -EPERM,
                                  "%s: holds a secret but is accessible by group/others (mode %04o); chmod 600 it", path,
                                  (unsigned) (st->st_mode & 07777));
        if (st->st_uid != 0 && st->st_uid != geteuid())
                return error_set(ret_error, -EPERM, "%s: owned by uid %u, expected root or uid %u", path,
                                  (unsigned) st->st_uid, (unsigned) geteuid());
        return 0;
}

static int secret_file_open(const char *path, int *ret_fd, char **ret_error) {
        _cleanup_(closep) int fd = -1;
        struct stat st;
        int r;

        if (isempty(path) || path[0] != '/')
                return error_set(ret_error, -EINVAL, "%s: not an absolute path", strna(path));

        /* O_NOFOLLOW: the mode we check must be the file's own, not that of
         * whatever a link points to later. O_NONBLOCK: never hang on a FIFO. */
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK);
        if (fd < 0) {
                if (errno == ELOOP)
                        return error_set(ret_error, -EPERM, "%s: is a symlink, refusing; name the file itself", path);
                return error_set(ret_error, negative_errno(), "%s: cannot open: %m", path);
        }
        if (fstat(fd, &st) < 0)
                return error_set(ret_error, negative_errno(), "%s: cannot stat: %m", path);
        r = secret_file_verdict(path, &st, ret_error);
        if (r < 0)
                return r;
        if (ret_fd)
                *ret_fd = TAKE_FD(fd);
        return 0;
}

/* Open, check and read: the one path both readers take. too_big ends the
 * message for a file over max. */
static int secret_file_load(const char *path, size_t max, const char *too_big, Buffer *ret, char **ret_error) {
        _cleanup_(closep) int fd = -1;
        int r;

        r = secret_file_open(path, &fd, ret_error);
        if (r < 0)
                return r;
        r = read_full_fd(fd, max, &ret->data, &ret->size);
        if (r == -EFBIG)
                return error_set(ret_error, r, "%s: larger than %zu bytes%s", path, max, too_big);
        if (r < 0) {
                errno = -r;
                return error_set(ret_error, r, "%s: cannot read: %m", path);
        }
        return 0;
}

int secret_file_read_all(const char *path, size_t max, char **ret, char **ret_error) {
        _cleanup_(buffer_wipe) Buffer b = {};
        int r;

        r = secret_file_load(path, max, "", &b, ret_error);
        if (r < 0)
                return r;
        if (strlen(b.data) != b.size)
                return error_set(ret_error, -EBADMSG, "%s: holds a NUL byte, not a text file", path);
        *ret = TAKE_PTR(b.data);
        b.size = 0;
        return 0;
}

int secret_file_check(const char *path, char **ret_error) {
        return secret_file_open(path, NULL, ret_error);
}

int secret_file_read(const char *path, char **ret_secret, char **ret_error) {
        _cleanup_(buffer_wipe) Buffer b = {};
        char *start, *end, *s;
        int r;

        r = secret_file_load(path, SECRET_SIZE_MAX, ", not a secret", &b, ret_error);
        if (r < 0)
                return r;

        start = b.data;
        while (*start && isspace((unsigned char) *start))
                start++;
        end = strchrnul(start, '\n');
        while (end > start && isspace((unsigned char) end[-1]))
                end--;
        if (end == start)
                return error_set(ret_error, -EINVAL, "%s: is empty", path);

        s = strndup(start, (size_t) (end - start));
        if (!s)
                return -ENOMEM;
        *ret_secret = s;
        return 0;
}
