#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <strings.h>

#include "parse.h"

/* Plain decimal digits only: strtoul() would take signs, blanks and "0x". */
int parse_u64_digits(const char *s, uint64_t *ret) {
        size_t n;
        int r;

        if (!s)
                return -EINVAL;
        n = strlen(s);
        r = parse_u64_decimal(s, n, ret);
        /* Still tell garbage from a too large number. */
        if (r == -ERANGE && strspn(s, "0123456789") != n)
                return -EINVAL;
        return r;
}

static const struct {
        const char *suffix;
        usec_t usec;
} duration_units[] = {
        { "us", 1 },
        { "ms", USEC_PER_MSEC },
        { "s", USEC_PER_SEC },
        { "sec", USEC_PER_SEC },
        { "m", USEC_PER_MINUTE },
        { "min", USEC_PER_MINUTE },
        { "h", USEC_PER_HOUR },
        { "d", USEC_PER_DAY },
};

static int duration_unit(const char *u, size_t n, usec_t *ret) {
        for (size_t i = 0; i < ELEMENTSOF(duration_units); i++)
                if (strlen(duration_units[i].suffix) == n && strncmp(duration_units[i].suffix, u, n) == 0) {
                        *ret = duration_units[i].usec;
                        return 0;
                }
        return -EINVAL;
}

int parse_duration(const char *s, usec_t *ret) {
        usec_t total = 0;
        size_t parts = 0;
        bool overflow = false;
        const char *p;

        if (!s)
                return -EINVAL;
        p = skip_blank(s);
        if (!*p)
                return -EINVAL;

        while (*p) {
                uint64_t whole = 0, frac = 0, frac_div = 1;
                usec_t unit, part;
                const char *u;

                if (!is_digit(*p))
                        return -EINVAL;
                for (; is_digit(*p); p++)
                        if (__builtin_mul_overflow(whole, (uint64_t) 10, &whole) ||
                            __builtin_add_overflow(whole, (uint64_t) (*p - '0'), &whole))
                                overflow = true;
                if (*p == '.') {
                        p++;
                        if (!is_digit(*p))
                                return -EINVAL;
                        /* Microseconds are the resolution: digits past the
                         * sixth cannot matter, and skipping them keeps
                         * frac * unit far from overflowing. */
                        for (; is_digit(*p); p++)
                                if (frac_div < 1000000) {
                                        frac = frac * 10 + (uint64_t) (*p - '0');
                                        frac_div *= 10;
                                }
                }

                p = skip_blank(p);
                u = p;
                while (isalpha((unsigned char) *p))
                        p++;
                if (p == u) {
                        /* A bare number means seconds, but only on its own:
                         * "1m 30" is more likely a mistake than 1m30s. */
                        if (parts > 0 || *p)
                                return -EINVAL;
                        unit = USEC_PER_SEC;
                } else if (duration_unit(u, (size_t) (p - u), &unit) < 0)
                        return -EINVAL;

                if (__builtin_mul_overflow(whole, unit, &part) ||
                    __builtin_add_overflow(part, frac * unit / frac_div, &part) ||
                    __builtin_add_overflow(total, part, &total))
                        overflow = true;
                parts++;
                p = skip_blank(p);
        }

        if (overflow || total == USEC_INFINITY)
                return -ERANGE;
        *ret = total;
        return 0;
}

char *format_duration(char *buf, size_t size, usec_t u) {
        static const struct {
                const char *suffix;
                usec_t usec;
        } units[] = {
                { "d", USEC_PER_DAY }, { "h", USEC_PER_HOUR }, { "m", USEC_PER_MINUTE },
                { "s", USEC_PER_SEC }, { "ms", USEC_PER_MSEC }, { "us", 1 },
        };
        size_t off = 0;

        if (!buf || size == 0)
                return buf;
        if (u == USEC_INFINITY) {
                snprintf(buf, size, "infinity");
                return buf;
        }
        if (u == 0) {
                snprintf(buf, size, "0");
                return buf;
        }
        buf[0] = '\0';
        for (size_t i = 0; i < ELEMENTSOF(units) && u > 0; i++) {
                int n;

                if (u < units[i].usec)
                        continue;
                n = snprintf(buf + off, size - off, "%" PRIu64 "%s", u / units[i].usec, units[i].suffix);
                if (n < 0 || (size_t) n >= size - off) {
                        /* Cut at a unit: "1d1" would read as 1d1s. */
                        buf[off] = '\0';
                        break;
                }
                off += (size_t) n;
                u %= units[i].usec;
        }
        return buf;
}

int parse_percent(const char *s, double *ret) {
        const char *p = s;
        char *end;
        double v;

        if (!s || !is_digit(*p))
                return -EINVAL;
        /* Own grammar first: strtod() takes signs, hex, exponents, "nan". */
        while (is_digit(*p))
                p++;
        if (*p == '.') {
                p++;
                if (!is_digit(*p))
                        return -EINVAL;
                while (is_digit(*p))
                        p++;
        }
        if (*p == '%')
                p++;
        if (*p)
                return -EINVAL;

        errno = 0;
        v = strtod(s, &end);
        if (errno != 0 && errno != ERANGE)
                return -EINVAL;
        if (errno == ERANGE || v > 100.0)
                return -ERANGE;
        *ret = v;
        return 0;
}

int parse_bool(const char *s, bool *ret) {
        static const char *const yes[] = { "yes", "true", "on", "1", "y" };
        static const char *const no[] = { "no", "false", "off", "0", "n" };

        if (!s)
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(yes); i++)
                if (strcasecmp(s, yes[i]) == 0) {
                        *ret = true;
                        return 0;
                }
        for (size_t i = 0; i < ELEMENTSOF(no); i++)
                if (strcasecmp(s, no[i]) == 0) {
                        *ret = false;
                        return 0;
                }
        return -EINVAL;
}

/* A byte count: 512, 64K, 8M, 1G (powers of 1024). */
int parse_size(const char *s, uint64_t *ret) {
        static const struct { char suffix; unsigned shift; } units[] = {
                { 'K', 10 }, { 'M', 20 }, { 'G', 30 },
        };
        _cleanup_(freep) char *digits = NULL;
        size_t len;
        unsigned shift = 0;
        uint64_t v;
        int r;

        if (isempty(s))
                return -EINVAL;
        len = strlen(s);
        for (size_t i = 0; i < ELEMENTSOF(units); i++)
                if (s[len - 1] == units[i].suffix || s[len - 1] == units[i].suffix + ('a' - 'A')) {
                        shift = units[i].shift;
                        len--;
                        break;
                }
        if (len > 0 && (s[len - 1] == 'B' || s[len - 1] == 'b') && shift == 0)
                len--;
        digits = strndup(s, len);
        if (!digits)
                return -ENOMEM;
        r = parse_u64_digits(digits, &v);
        if (r < 0)
                return r;
        if (v > (UINT64_MAX >> shift))
                return -ERANGE;
        *ret = v << shift;
        return 0;
}
