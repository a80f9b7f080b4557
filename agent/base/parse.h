/* One number/duration parser: the grammar of every number, duration,
 * percentage, size and boolean that monkeyd's config and the other
 * programs' options (monkey-proxy-sync's --interval …) accept, so "1m30s"
 * means the same everywhere. Pure: no I/O. */
#pragma once

#include "macro.h"
#include "numparse.h"

static inline bool is_blank(char c) {
        return c == ' ' || c == '\t';
}

static inline const char *skip_blank(const char *p) {
        while (is_blank(*p))
                p++;
        return p;
}

/* A NUL-terminated unsigned decimal; -ERANGE on overflow, -EINVAL for
 * anything but digits. */
int parse_u64_digits(const char *s, uint64_t *ret);
int parse_duration(const char *s, usec_t *ret);        /* "500ms", "30s", "5m", "1h", "1m30s"; bare number = seconds */
int parse_percent(const char *s, double *ret);         /* "90", "90%", "87.5%" in [0,100] */
int parse_bool(const char *s, bool *ret);              /* yes/no, true/false, on/off, 1/0 */
int parse_size(const char *s, uint64_t *ret);          /* "512", "64K", "8M", "1G" (1024-based) */
/* Formats a duration the way it would be written in the config: "1m30s", "500ms". */
char *format_duration(char *buf, size_t size, usec_t u);
