/* Whole small files: reading them with a size cap, wiping every buffer it
 * lets go of (some hold secrets), and the one atomic writer. */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include "error.h"
#include "macro.h"

/* Read fd to EOF. The result is NUL-terminated (the NUL is not counted in
 * *ret_len); more than `max` bytes is -EFBIG, found without reading the
 * whole of an oversized file. ret_* are only written on success. */
int read_full_fd(int fd, size_t max, char **ret, size_t *ret_len);

/* The same for a small file by path (/proc files, a boot id, a config
 * we wrote): opened non-blocking and without becoming our terminal, so a
 * FIFO or a tty put in its place cannot hang the caller. ret_len may be
 * NULL. */
int read_full_file(const char *path, size_t max, char **ret, size_t *ret_len);

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

/* The one atomic writer. `dir_fd`/`name` becomes `data` whole or not at
 * all: NAME.tmp-XXXXXXXXXXXX (12 hex digits) with `mode` whatever the
 * umask, write, fsync, close, rename over NAME, fsync the directory. On
 * failure the old file is untouched and the temp file removed. Logs
 * nothing: callers know what the file is. WRITE_ATOMIC_NO_SYNC skips both
 * fsyncs, for files where losing the newest version in a crash is fine
 * (ext4 and xfs still never show a half file after such a rename). */
typedef enum WriteAtomicFlags {
        WRITE_ATOMIC_NO_SYNC = 1 << 0,
} WriteAtomicFlags;
int write_file_atomic_full(int dir_fd, const char *name, const char *data, size_t len, mode_t mode,
                           WriteAtomicFlags flags);
/* Durable, 0600: the agent's own files (state, outbox, evidence). */
static inline int write_file_atomic_at(int dir_fd, const char *name, const char *data, size_t len) {
        return write_file_atomic_full(dir_fd, name, data, len, 0600, 0);
}
/* The same for a path (its directory is opened for the rename). */
int write_file_atomic_path(const char *path, const char *data, size_t len, mode_t mode, WriteAtomicFlags flags);
/* Whether a directory entry is one of the writer's temp files, which a
 * crash between create and rename leaves behind. */
bool write_file_atomic_is_temp(const char *name);
