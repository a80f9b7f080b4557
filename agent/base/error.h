/* One way to hand an error message back: a function that can fail for a
 * reason a human must read takes `char **ret_error` and returns a negative
 * errno; error_set() does both in one return line. Owns no state. */
#pragma once

#include "macro.h"

/* Formats into *ret_error (if ret_error is given) and returns r; when the
 * message cannot be made, *ret_error is NULL and the result -ENOMEM, so a
 * caller never reports an error without its text by mistake. */
_printf_(3, 4) int error_set(char **ret_error, int r, const char *fmt, ...);
