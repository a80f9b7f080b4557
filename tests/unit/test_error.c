/* error.c: error_set()'s message and result, and error_excerpt(), the one
 * way a message quotes text from outside (a control request, /proc/stat,
 * HAProxy's answers): bounded, cut with "...", never inside a character,
 * and nothing that could forge a log line or break UTF-8. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "error.h"

static void test_error_set(void **state) {
        char *m = NULL;

        assert_int_equal(error_set(&m, -EBADMSG, "bad %s %d", "port", 7), -EBADMSG);
        assert_string_equal(m, "bad port 7");
        free(m);
        assert_int_equal(error_set(NULL, -EIO, "nobody reads %s", "this"), -EIO);
}

static void excerpt_is(const char *s, size_t len, size_t size, const char *expected) {
        char buf[64];

        assert_true(size <= sizeof buf);
        memset(buf, 'Z', sizeof buf);
        assert_ptr_equal(error_excerpt(s, len, buf, size), buf);
        assert_string_equal(buf, expected);
        assert_true(strlen(buf) < size);
}

static void test_error_excerpt(void **state) {
        /* short text: as it is */
        excerpt_is("frobnicate", 10, 64, "frobnicate");
        excerpt_is("", 0, 4, "");
        /* len, not the NUL, ends it */
        excerpt_is("status\0x", 8, 64, "status?x");
        excerpt_is("cpu  1 2", 5, 64, "cpu  ");
        /* control characters and DEL: no second log line, no escape sequences */
        excerpt_is("a\nb\rc\td\x1b[2Je\x7f", 13, 64, "a?b?c?d?[2Je?");
        /* printable UTF-8 stays, anything else that is not ASCII does not */
        excerpt_is("\xc3\xa9t\xc3\xa9", 5, 64, "\xc3\xa9t\xc3\xa9");
        excerpt_is("\xe2\x82\xac", 3, 64, "\xe2\x82\xac");
        excerpt_is("a\xff" "b\xc0\xaf" "c", 6, 64, "a?b??c");  /* stray and overlong */
        excerpt_is("\xed\xa0\x80", 3, 64, "???");                /* a surrogate */
        excerpt_is("x\xc2\x9by", 4, 64, "x??y");                  /* C1 CSI */
        excerpt_is("\xe2\x82", 2, 64, "??");                      /* cut short */

        /* size - 4 bytes, then "..." */
        excerpt_is("abcdefgh", 8, 12, "abcdefgh");
        excerpt_is("abcdefghi", 9, 12, "abcdefgh...");
        excerpt_is("abcdefghijklmnop", 16, 4, "...");
        /* never inside a character: "é" does not fit after 7 bytes */
        excerpt_is("abcdefg\xc3\xa9", 9, 12, "abcdefg...");
        excerpt_is("abcdef\xc3\xa9", 8, 12, "abcdef\xc3\xa9");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_error_set),
                cmocka_unit_test(test_error_excerpt),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
