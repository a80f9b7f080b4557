/* Reading whole small files (config, secrets, state.json) with a size cap,
 * wiping every buffer it lets go of, since some of them hold secrets. */
#pragma once

#include "error.h"
#include "macro.h"

/* Read fd to EOF. The result is NUL-terminated (the NUL is not counted in
 * *ret_len); more than `max` bytes is -EFBIG, found without reading the
 * whole of an oversized file. ret_* are only written on success. */
int read_full_fd(int fd, size_t max, char **ret, size_t *ret_len);

/* explicit_bzero then free; takes NULL. */
void free_wiped(char *p, size_t n);

/* A file's bytes, which may hold a secret: _cleanup_(buffer_wipe) wipes
 * them before freeing. */
typedef struct Buffer {
        char *data;
        size_t size;
} Buffer;

static inline void buffer_wipe(Buffer *b) {
        free_wiped(b->data, b->size);
        *b = (Buffer) {};
}

/* write(2) until all of p is written (EINTR retried); 0 or a negative errno. */
int write_all(int fd, const char *p, size_t n);

/* Write `dir_fd`/`name` atomically and durably: NAME.tmp-XXXXXX (mode
 * 0600), write, fsync, close, rename over NAME, fsync the directory. On
 * failure the old file is untouched and the temp file removed. Logs
 * nothing: callers know what the file is. */
int write_file_atomic_at(int dir_fd, const char *name, const char *data, size_t len);
