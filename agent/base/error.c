#include "error.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

#include "utf8.h"

int error_set(char **ret_error, int r, const char *fmt, ...) {
        va_list ap;

        if (ret_error) {
                va_start(ap, fmt);
                if (vasprintf(ret_error, fmt, ap) < 0) {
                        *ret_error = NULL;
                        r = -ENOMEM;
                }
                va_end(ap);
        }
        return r;
}

char *error_excerpt(const char *s, size_t len, char *buf, size_t size) {
        const unsigned char *p = (const unsigned char *) s;
        size_t room, n = 0, i = 0;

        assert(size >= 4);
        room = size - 4;
        while (i < len && n < room) {
                size_t k = p[i] >= 0x80 ? utf8_printable_len(p + i, len - i) : 0;

                if (k > 0) {
                        if (k > room - n)
                                break; /* the whole character or none of it */
                        memcpy(buf + n, s + i, k);
                        n += k;
                        i += k;
                        continue;
                }
                buf[n++] = p[i] < 0x20 || p[i] >= 0x7f ? '?' : (char) p[i];
                i++;
        }
        if (i < len) {
                memcpy(buf + n, "...", 3);
                n += 3;
        }
        buf[n] = '\0';
        return buf;
}
