/* What the fuzz targets share: libFuzzer's entry point, a NUL-terminated
 * copy for the parsers that take C strings, and property checks that
 * abort (a crash libFuzzer keeps and minimises) instead of asserting, so
 * they hold in every build type. */
#pragma once

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                                             \
        do {                                                                                         \
                if (!(cond)) {                                                                       \
                        fprintf(stderr, "%s:%d: property does not hold: %s\n", __FILE__, __LINE__, #cond); \
                        abort();                                                                     \
                }                                                                                    \
        } while (0)

/* Exactly size + 1 bytes, so ASan sees a read past the terminator. */
static inline char *fuzz_strndup(const uint8_t *data, size_t size) {
        char *s = malloc(size + 1);

        if (!s)
                abort();
        if (size > 0)
                memcpy(s, data, size);
        s[size] = '\0';
        return s;
}

/* Valid UTF-8 (no overlong forms, surrogates or code points past U+10FFFF). */
static inline bool fuzz_utf8_valid(const char *s, size_t n) {
        const unsigned char *p = (const unsigned char *) s;

        for (size_t i = 0; i < n;) {
                unsigned char c = p[i];
                size_t len;
                uint32_t cp;

                if (c < 0x80) {
                        i++;
                        continue;
                }
                if (c >= 0xc2 && c <= 0xdf)
                        len = 2, cp = c & 0x1f;
                else if (c >= 0xe0 && c <= 0xef)
                        len = 3, cp = c & 0x0f;
                else if (c >= 0xf0 && c <= 0xf4)
                        len = 4, cp = c & 0x07;
                else
                        return false;
                if (n - i < len)
                        return false;
                for (size_t k = 1; k < len; k++) {
                        if ((p[i + k] & 0xc0) != 0x80)
                                return false;
                        cp = (cp << 6) | (p[i + k] & 0x3f);
                }
                if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || (cp >= 0xd800 && cp <= 0xdfff) ||
                    cp > 0x10ffff)
                        return false;
                i += len;
        }
        return true;
}

/* Text an answer's parser hands on to logs, Slack and status: NUL-terminated
 * within its field of `size` bytes, one line without control characters,
 * valid UTF-8. */
static inline bool fuzz_field_text_ok(const char *s, size_t size) {
        size_t n = strnlen(s, size);

        if (n >= size)
                return false;
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) s[i] < 0x20 || s[i] == 0x7f)
                        return false;
        return fuzz_utf8_valid(s, n);
}

/* A form body as awsquery.c builds it: NAME=VALUE pairs joined by '&',
 * each value of unreserved characters and %XX escapes only. */
static inline bool fuzz_form_body_ok(const char *b) {
        for (const char *p = b; *p; p++) {
                if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                    strchr("-_.~&=", *p))
                        continue;
                if (*p != '%' || !strchr("0123456789ABCDEF", p[1]) || !p[1] || !strchr("0123456789ABCDEF", p[2]) ||
                    !p[2])
                        return false;
                p += 2;
        }
        return true;
}
