/* One way to hand an error message back: a function that can fail for a
 * reason a human must read takes `char **ret_error` and returns a negative
 * errno; error_set() does both in one return line. And one way to quote
 * text that came from outside inside such a message (error_excerpt).
 * Owns no state. */
#pragma once

#include "macro.h"

/* Formats into *ret_error (if ret_error is given) and returns r; when the
 * message cannot be made, *ret_error is NULL and the result -ENOMEM, so a
 * caller never reports an error without its text by mistake. */
_printf_(3, 4) int error_set(char **ret_error, int r, const char *fmt, ...);

/* s[0..len) as a message may quote it: control characters, DEL and bytes
 * that are not printable UTF-8 as '?', so a hostile text can neither
 * forge log lines nor make the JSON it is sent in invalid; at most
 * size - 4 bytes of it, then "..." where it is cut (never inside a
 * character). size must be at least 4. Returns buf. */
char *error_excerpt(const char *s, size_t len, char *buf, size_t size);
