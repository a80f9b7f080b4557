#include "fileio.h"

#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/stat.h>

#include "random.h"

void free_wiped(char *p, size_t n) {
        if (!p)
                return;
        explicit_bzero(p, n);
        free(p);
}

int read_full_fd(int fd, size_t max, char **ret, size_t *ret_len) {
        char *buf = NULL;
        size_t size = 0, alloc = 0;
        int r;

        for (;;) {
                ssize_t n;

                if (size + 1 >= alloc) {
                        /* Never past max + 2: one byte over max tells "too big". */
                        size_t na = MIN(alloc ? alloc * 2 : 4096, max + 2);
                        char *p;

                        /* Not realloc(): it could leave a copy of a secret behind. */
                        p = malloc(na);
                        if (!p) {
                                r = -ENOMEM;
                                goto fail;
                        }
                        if (buf)
                                memcpy(p, buf, size);
                        free_wiped(buf, alloc);
                        buf = p;
                        alloc = na;
                }
                n = read(fd, buf + size, alloc - size - 1);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        r = negative_errno();
                        goto fail;
                }
                if (n == 0)
                        break;
                size += (size_t) n;
                if (size > max) {
                        r = -EFBIG;
                        goto fail;
                }
        }
        buf[size] = '\0';
        *ret = buf;
        *ret_len = size;
        return 0;

fail:
        free_wiped(buf, alloc);
        return r;
}

int read_full_file(const char *path, size_t max, char **ret, size_t *ret_len) {
        _cleanup_(closep) int fd = -1;
        size_t len;

        if (!path || !ret)
                return -EINVAL;
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return negative_errno();
        return read_full_fd(fd, max, ret, ret_len ? ret_len : &len);
}

int write_all(int fd, const char *p, size_t n) {
        while (n > 0) {
                ssize_t k = write(fd, p, n);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (k == 0)
                        return -EIO;
                p += k;
                n -= (size_t) k;
        }
        return 0;
}

bool write_file_atomic_is_temp(const char *name) {
        const char *t = name ? strstr(name, ".tmp-") : NULL;

        if (!t || t == name || strlen(t + 5) != 12)
                return false;
        for (const char *p = t + 5; *p; p++)
                if (!strchr("0123456789abcdef", *p))
                        return false;
        return true;
}

int write_file_atomic_full(int dir_fd, const char *name, const char *data, size_t len, mode_t mode,
                           WriteAtomicFlags flags) {
        char tmp[NAME_MAX + 1];
        _cleanup_(closep) int fd = -1;
        int r;

        if (dir_fd < 0 || isempty(name) || strchr(name, '/'))
                return -EINVAL;
        /* A random suffix, as mkostemp would make, but relative to dir_fd. */
        for (unsigned attempt = 0;; attempt++) {
                unsigned long long x = random_u64();
                if (snprintf(tmp, sizeof tmp, "%s.tmp-%012llx", name, x & 0xffffffffffffULL) >= (int) sizeof tmp)
                        return -ENAMETOOLONG;
                fd = openat(dir_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
                if (fd >= 0)
                        break;
                if (errno != EEXIST || attempt >= 16)
                        return negative_errno();
        }
        /* the mode asked for, whatever the umask */
        if (fchmod(fd, mode) < 0) {
                r = negative_errno();
                goto fail;
        }
        r = write_all(fd, data, len);
        if (r < 0)
                goto fail;
        if (!(flags & WRITE_ATOMIC_NO_SYNC) && fsync(fd) < 0) {
                r = negative_errno();
                goto fail;
        }
        /* close() can report a deferred write error (NFS); a lost error
         * here would mean renaming a short file over a good one. */
        if (close(TAKE_FD(fd)) < 0) {
                r = negative_errno();
                goto fail;
        }
        if (renameat(dir_fd, tmp, dir_fd, name) < 0) {
                r = negative_errno();
                goto fail;
        }
        /* The rename is durable only once the directory is. */
        if (!(flags & WRITE_ATOMIC_NO_SYNC) && fsync(dir_fd) < 0)
                return negative_errno();
        return 0;
fail:
        (void) unlinkat(dir_fd, tmp, 0);
        return r;
}

int write_file_atomic_path(const char *path, const char *data, size_t len, mode_t mode, WriteAtomicFlags flags) {
        _cleanup_(freep) char *dir = NULL;
        _cleanup_(closep) int dfd = -1;
        const char *slash;

        if (isempty(path))
                return -EINVAL;
        slash = strrchr(path, '/');
        if (slash && !slash[1])
                return -EISDIR;
        dir = slash ? strndup(path, slash == path ? 1 : (size_t) (slash - path)) : strdup(".");
        if (!dir)
                return -ENOMEM;
        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return negative_errno();
        return write_file_atomic_full(dfd, slash ? slash + 1 : path, data, len, mode, flags);
}
