/* What the unit tests that touch files share: a temporary directory, a
 * file written with an exact mode, and removing the directory. Include
 * after cmocka.h. Header-only. */
#pragma once

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static inline char *tmp_dir(void) {
        char *d = strdup("/tmp/test-monkey-XXXXXX");
        assert_non_null(d);
        assert_non_null(mkdtemp(d));
        return d;
}

static inline char *write_file(const char *dir, const char *name, const char *text, mode_t mode) {
        char *path = NULL;
        int fd;

        assert_true(asprintf(&path, "%s/%s", dir, name) > 0);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, text, strlen(text)), (ssize_t) strlen(text));
        assert_int_equal(fchmod(fd, mode), 0); /* exact mode, whatever the umask */
        close(fd);
        return path;
}

static inline void rm_rf(const char *dir) {
        char *cmd = NULL;
        assert_true(asprintf(&cmd, "rm -rf '%s'", dir) > 0);
        assert_int_equal(system(cmd), 0);
        free(cmd);
}

/* A fixture file in a buffer of exactly its size, with no NUL after it:
 * a parser must stay within `len` (ASan says so if it does not). */
static inline char *read_fixture(const char *path, size_t *ret_len) {
        FILE *f = fopen(path, "re");
        char *buf = NULL;
        long n;

        if (!f)
                return NULL;
        if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) > 0 && fseek(f, 0, SEEK_SET) == 0 &&
            (buf = malloc((size_t) n)) && fread(buf, 1, (size_t) n, f) == (size_t) n)
                *ret_len = (size_t) n;
        else {
                free(buf);
                buf = NULL;
        }
        fclose(f);
        return buf;
}
