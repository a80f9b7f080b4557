/* utf8.h: the one strict UTF-8 check. The config, the control protocol
 * and Slack's escaping each had their own; this pins what all of them now
 * share, edge by edge. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "utf8.h"

static const struct {
        const char *what, *s;
        bool valid;
} cases[] = {
        { "empty", "", true },
        { "ASCII", "web-1 is back", true },
        { "2 bytes (é)", "caf\xc3\xa9", true },
        { "3 bytes (…)", "\xe2\x80\xa6", true },
        { "4 bytes (U+1F435 monkey)", "\xf0\x9f\x90\xb5", true },
        { "U+10FFFF, the last", "\xf4\x8f\xbf\xbf", true },
        { "U+D7FF, before the surrogates", "\xed\x9f\xbf", true },
        { "U+E000, after them", "\xee\x80\x80", true },
        { "C1 control U+0085 (valid, if not printable)", "\xc2\x85", true },
        { "a stray continuation byte", "\x80", false },
        { "Latin-1", "caf\xe9", false },
        { "overlong '/' (2 bytes)", "\xc0\xaf", false },
        { "overlong (3 bytes)", "\xe0\x80\xaf", false },
        { "overlong (4 bytes)", "\xf0\x80\x80\xaf", false },
        { "a UTF-16 surrogate", "\xed\xa0\x80", false },
        { "the last surrogate", "\xed\xbf\xbf", false },
        { "above U+10FFFF", "\xf4\x90\x80\x80", false },
        { "F5 lead", "\xf5\x80\x80\x80", false },
        { "FF", "\xff", false },
        { "a cut sequence", "\xe2\x82", false },
        { "cut at the end of good text", "ok \xf0\x9f\x90", false },
        { "a lead byte then ASCII", "\xc3\x28", false },
};

static void test_utf8_is_valid(void **state) {
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
                if (utf8_is_valid(cases[i].s, strlen(cases[i].s)) != cases[i].valid)
                        fail_msg("%s: expected %s", cases[i].what, cases[i].valid ? "valid" : "invalid");
}

static void test_utf8_length_is_what_counts(void **state) {
        /* a NUL inside is judged like any ASCII byte; the length decides */
        assert_true(utf8_is_valid("a\0b", 3));
        /* a sequence cut by the length, not by the string */
        assert_false(utf8_is_valid("\xe2\x80\xa6", 2));
        assert_true(utf8_is_valid("\xe2\x80\xa6 and more", 3));
}

static void test_utf8_sequence_and_printable(void **state) {
        assert_int_equal(utf8_sequence_len((const unsigned char *) "\xc3\xa9", 2), 2);
        assert_int_equal(utf8_sequence_len((const unsigned char *) "\xf0\x9f\x90\xb5", 4), 4);
        assert_int_equal(utf8_sequence_len((const unsigned char *) "\xf0\x9f\x90\xb5", 3), 0);
        assert_int_equal(utf8_printable_len((const unsigned char *) "\xc2\x85", 2), 0);
        assert_int_equal(utf8_printable_len((const unsigned char *) "\xc2\xa0", 2), 2);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_utf8_is_valid),
                cmocka_unit_test(test_utf8_length_is_what_counts),
                cmocka_unit_test(test_utf8_sequence_and_printable),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
