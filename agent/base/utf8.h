/* The length of one UTF-8 sequence, strictly: what the formatters that
 * escape text for a terminal, Slack or XML share. Header-only. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* A valid multibyte sequence at p (p[0] >= 0x80): its length (2..4), or
 * 0 when it is overlong, a surrogate, past U+10FFFF or cut by `left`. */
static inline size_t utf8_sequence_len(const unsigned char *p, size_t left) {
        unsigned char c = p[0], lo = 0x80, hi = 0xbf;
        size_t n;

        if (c >= 0xc2 && c <= 0xdf)
                n = 2;
        else if (c >= 0xe0 && c <= 0xef) {
                n = 3;
                lo = c == 0xe0 ? 0xa0 : 0x80;
                hi = c == 0xed ? 0x9f : 0xbf;
        } else if (c >= 0xf0 && c <= 0xf4) {
                n = 4;
                lo = c == 0xf0 ? 0x90 : 0x80;
                hi = c == 0xf4 ? 0x8f : 0xbf;
        } else
                return 0;
        if (left < n || p[1] < lo || p[1] > hi)
                return 0;
        for (size_t i = 2; i < n; i++)
                if ((p[i] & 0xc0) != 0x80)
                        return 0;
        return n;
}

/* The same, also 0 for a C1 control (U+0080..U+009F): valid UTF-8, but it
 * steers a terminal as the C0 ones do. */
static inline size_t utf8_printable_len(const unsigned char *p, size_t left) {
        size_t n = utf8_sequence_len(p, left);

        return n == 2 && p[0] == 0xc2 && p[1] <= 0x9f ? 0 : n;
}

/* Strict UTF-8 (no overlong forms, surrogates or code points above
 * U+10FFFF), for text that ends up in JSON, Slack and Redis: json-c's own
 * check lets those through, and a stray Latin-1 byte makes the whole
 * message invalid far from its cause. */
static inline bool utf8_is_valid(const char *s, size_t n) {
        const unsigned char *p = (const unsigned char *) s, *end = p + n;

        while (p < end) {
                size_t len = *p < 0x80 ? 1 : utf8_sequence_len(p, (size_t) (end - p));

                if (len == 0)
                        return false;
                p += len;
        }
        return true;
}
