/* parse.c: the one number/duration grammar that monkeyd's config and
 * monkey-proxy-sync's options share, with good and bad input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "parse.h"

static void test_parse_u64_digits(void **state) {
        uint64_t v = 7;

        assert_int_equal(parse_u64_digits("0", &v), 0);
        assert_int_equal(v, 0);
        assert_int_equal(parse_u64_digits("18446744073709551615", &v), 0);
        assert_int_equal(v, UINT64_MAX);
        v = 7;
        assert_int_equal(parse_u64_digits("18446744073709551616", &v), -ERANGE);
        /* garbage is garbage, even after too many digits */
        assert_int_equal(parse_u64_digits("99999999999999999999x", &v), -EINVAL);
        assert_int_equal(parse_u64_digits("", &v), -EINVAL);
        assert_int_equal(parse_u64_digits(" 1", &v), -EINVAL);
        assert_int_equal(parse_u64_digits("+1", &v), -EINVAL);
        assert_int_equal(parse_u64_digits("0x1", &v), -EINVAL);
        assert_int_equal(parse_u64_digits(NULL, &v), -EINVAL);
        assert_int_equal(v, 7); /* untouched on failure */
}

/* numparse.h's port: every URL, address and Redis reply that names one. */
static void test_parse_port_decimal(void **state) {
        static const struct {
                const char *text;
                int r;
        } bad[] = {
                { "0", -ERANGE }, { "65536", -ERANGE }, { "99999999999999999999", -ERANGE },
                { "", -EINVAL }, { "+1", -EINVAL }, { " 1", -EINVAL }, { "1 ", -EINVAL },
                { "-1", -EINVAL }, { "0x50", -EINVAL }, { "8o", -EINVAL },
        };
        uint16_t port = 7;

        assert_int_equal(parse_port_decimal("1", 1, &port), 0);
        assert_int_equal(port, 1);
        assert_int_equal(parse_port_decimal("65535", 5, &port), 0);
        assert_int_equal(port, 65535);
        assert_int_equal(parse_port_decimal("00080", 5, &port), 0);
        assert_int_equal(port, 80);
        assert_int_equal(parse_port_decimal("6379/0", 4, &port), 0); /* n bytes, not to the NUL */
        assert_int_equal(port, 6379);
        port = 7;
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                if (parse_port_decimal(bad[i].text, strlen(bad[i].text), &port) != bad[i].r)
                        fail_msg("'%s' is not refused with %d", bad[i].text, bad[i].r);
        }
        assert_int_equal(port, 7); /* untouched on failure */
}

static void test_parse_duration(void **state) {
        static const struct {
                const char *in;
                usec_t out;
        } good[] = {
                { "500ms", 500 * USEC_PER_MSEC },
                { "30s", 30 * USEC_PER_SEC },
                { "5m", 5 * USEC_PER_MINUTE },
                { "1h", USEC_PER_HOUR },
                { "1d", USEC_PER_DAY },
                { "1m30s", 90 * USEC_PER_SEC },
                { "1m 30s", 90 * USEC_PER_SEC },
                { "1h30m15s", USEC_PER_HOUR + 30 * USEC_PER_MINUTE + 15 * USEC_PER_SEC },
                { "90", 90 * USEC_PER_SEC },
                { "0", 0 },
                { "1.5s", 1500 * USEC_PER_MSEC },
                { "0.25", 250 * USEC_PER_MSEC },
                { "30 s", 30 * USEC_PER_SEC },
                { "2min", 2 * USEC_PER_MINUTE },
                { "100us", 100 },
                { "1s500ms", 1500 * USEC_PER_MSEC },
        };
        static const struct {
                const char *in;
                int r;
        } bad[] = {
                { "", -EINVAL },        { "abc", -EINVAL },   { "-5s", -EINVAL },   { "5x", -EINVAL },
                { "1m 30", -EINVAL },   { "s", -EINVAL },     { "1.s", -EINVAL },   { ".5s", -EINVAL },
                { "5 5s", -EINVAL },    { "1h-", -EINVAL },   { "1e3s", -EINVAL },  { "5mm", -EINVAL },
                { "+5s", -EINVAL },     { "0x10", -EINVAL },
                { "99999999999999999999", -ERANGE },
                { "300000000d", -ERANGE },
                { "213503982d 1d", -ERANGE },
        };

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                usec_t u = 12345;
                if (parse_duration(good[i].in, &u) != 0)
                        print_error("'%s' should parse\n", good[i].in);
                assert_int_equal(parse_duration(good[i].in, &u), 0);
                assert_int_equal(u, good[i].out);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                usec_t u = 12345;
                if (parse_duration(bad[i].in, &u) != bad[i].r)
                        print_error("'%s' should fail with %d\n", bad[i].in, bad[i].r);
                assert_int_equal(parse_duration(bad[i].in, &u), bad[i].r);
                assert_int_equal(u, 12345); /* untouched on failure */
        }
        assert_int_equal(parse_duration(NULL, &(usec_t) { 0 }), -EINVAL);
}

static void test_format_duration(void **state) {
        static const struct {
                usec_t in;
                const char *out;
        } t[] = {
                { 0, "0" },
                { 500 * USEC_PER_MSEC, "500ms" },
                { 90 * USEC_PER_SEC, "1m30s" },
                { USEC_PER_HOUR, "1h" },
                { USEC_PER_DAY + USEC_PER_HOUR, "1d1h" },
                { 1500 * USEC_PER_MSEC, "1s500ms" },
                { 1, "1us" },
                { USEC_INFINITY, "infinity" },
        };
        char buf[64], small[4];

        for (size_t i = 0; i < ELEMENTSOF(t); i++) {
                usec_t back;

                assert_ptr_equal(format_duration(buf, sizeof buf, t[i].in), buf);
                assert_string_equal(buf, t[i].out);
                /* What we print, the parser reads back. */
                if (t[i].in != USEC_INFINITY) {
                        assert_int_equal(parse_duration(buf, &back), 0);
                        assert_int_equal(back, t[i].in);
                }
        }
        /* Truncates at a unit, never mid-number ("1d1" would read as 1d1s). */
        format_duration(small, sizeof small, USEC_PER_DAY + USEC_PER_HOUR + 1);
        assert_string_equal(small, "1d");
        format_duration(small, sizeof small, 1234 * USEC_PER_DAY);
        assert_string_equal(small, "");
}

static void test_parse_percent(void **state) {
        static const struct {
                const char *in;
                double out;
        } good[] = {
                { "90", 90.0 }, { "90%", 90.0 }, { "87.5%", 87.5 }, { "0", 0.0 }, { "100", 100.0 }, { "100%", 100.0 },
                { "0.5", 0.5 },
        };
        static const struct {
                const char *in;
                int r;
        } bad[] = {
                { "", -EINVAL },    { "abc", -EINVAL }, { "-5", -EINVAL },  { "90%%", -EINVAL }, { "1e2", -EINVAL },
                { "0x10", -EINVAL }, { " 90", -EINVAL }, { "nan", -EINVAL }, { "90.", -EINVAL },  { ".5", -EINVAL },
                { "90 %", -EINVAL }, { "100.5", -ERANGE }, { "150%", -ERANGE },
                { "99999999999999999999999999999", -ERANGE },
        };

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                double v = -1;
                assert_int_equal(parse_percent(good[i].in, &v), 0);
                assert_true(v == good[i].out);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                double v = -1;
                if (parse_percent(bad[i].in, &v) != bad[i].r)
                        print_error("'%s'\n", bad[i].in);
                assert_int_equal(parse_percent(bad[i].in, &v), bad[i].r);
                assert_true(v == -1);
        }
}

static void test_parse_bool(void **state) {
        static const char *const yes[] = { "yes", "YES", "true", "True", "on", "1", "y" };
        static const char *const no[] = { "no", "NO", "false", "off", "0", "n" };
        static const char *const bad[] = { "", "maybe", "2", "yess", "tru", "o" };

        for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
                bool b = false;
                assert_int_equal(parse_bool(yes[i], &b), 0);
                assert_true(b);
        }
        for (size_t i = 0; i < ELEMENTSOF(no); i++) {
                bool b = true;
                assert_int_equal(parse_bool(no[i], &b), 0);
                assert_false(b);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                bool b = true;
                assert_int_equal(parse_bool(bad[i], &b), -EINVAL);
                assert_true(b);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse_u64_digits),
                cmocka_unit_test(test_parse_port_decimal),
                cmocka_unit_test(test_parse_duration),
                cmocka_unit_test(test_format_duration),
                cmocka_unit_test(test_parse_percent),
                cmocka_unit_test(test_parse_bool),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
