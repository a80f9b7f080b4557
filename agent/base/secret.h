/* One secret-file reader, with one set of rules, for monkeyd (Slack token,
 * pool password, AWS credentials) and monkey-proxy-sync (--password-file):
 * an absolute path to a regular file, not a symlink, no group/other access,
 * owned by root or by us; every buffer that held the secret is wiped. */
#pragma once

#include <sys/stat.h>

#include "macro.h"

/* The rule on a file's metadata (lstat() or fstat()): 0, or -EPERM with
 * *ret_error saying why, naming the path. */
int secret_file_verdict(const char *path, const struct stat *st, char **ret_error);
/* Open and check a secret file without reading it: 0, or a negative errno
 * with *ret_error ("PATH: why"). */
int secret_file_check(const char *path, char **ret_error);
/* The whole secret file (checked as above), NUL-terminated, at most max bytes. */
int secret_file_read_all(const char *path, size_t max, char **ret, char **ret_error);
/* Read the first line of a secret file, stripped. Checks it first. */
int secret_file_read(const char *path, char **ret_secret, char **ret_error);
