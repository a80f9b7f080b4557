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
