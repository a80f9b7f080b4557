#include "fileio.h"

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
