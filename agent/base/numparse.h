/* Plain decimal numbers as the kernel prints them. Header-only. */
#pragma once

#include "macro.h"

static inline bool is_digit(char c) {
        return c >= '0' && c <= '9';
}

/* The n bytes at s as an unsigned decimal: strtoull() would take signs,
 * blanks and "0x", which /proc files never hold. -EINVAL for anything
 * but digits (or n == 0), -ERANGE on overflow. */
static inline int parse_u64_decimal(const char *s, size_t n, uint64_t *ret) {
        uint64_t v = 0;

        if (n == 0)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                if (!is_digit(s[i]))
                        return -EINVAL;
                if (__builtin_mul_overflow(v, (uint64_t) 10, &v) ||
                    __builtin_add_overflow(v, (uint64_t) (s[i] - '0'), &v))
                        return -ERANGE;
        }
        *ret = v;
        return 0;
}

/* A TCP port in the n bytes at s, as every URL, address and reply we read
 * spells one: digits alone, 1-65535. -EINVAL for anything but digits (or
 * n == 0), -ERANGE for 0 or a larger number. */
static inline int parse_port_decimal(const char *s, size_t n, uint16_t *ret) {
        uint64_t v;
        int r;

        r = parse_u64_decimal(s, n, &v);
        if (r < 0)
                return r;
        if (v < 1 || v > UINT16_MAX)
                return -ERANGE;
        *ret = (uint16_t) v;
        return 0;
}
