/* The checks' pure parts: what one HTTP answer means for the content and
 * status checks, the body excerpt quoted into alerts, the interface
 * address lookup, and the report's JSON. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>

#include "checks.h"
#include "jsonutil.h"

static Config *config_with(const char *checks) {
        Config *c = NULL;
        char *err = NULL;
        char *text = NULL;

        assert_true(asprintf(&text, "[checks]\nurl = http://127.0.0.2:8080/health\n%s", checks) > 0);
        if (config_parse_string(text, "t.conf", &c, &err) < 0)
                fail_msg("config: %s", err);
        free(text);
        return c;
}

static void evaluate(const Config *c, const regex_t *re, CURLcode res, long status, const char *body, CheckReport *r) {
        *r = (CheckReport) {};
        checks_evaluate_http(c, re, res, status, body, body ? strlen(body) : 0, false, "connection refused", r);
}

static void test_substring(void **state) {
        Config *c = config_with("expect_content = host=app1\n");
        CheckReport r;

        evaluate(c, NULL, CURLE_OK, 200, "host=app1\n", &r);
        assert_int_equal(r.content.verdict, CHECK_PASS);
        assert_int_equal(r.status.verdict, CHECK_PASS);
        assert_string_equal(r.status.detail, "200");
        assert_non_null(strstr(r.content.detail, "10 bytes, contain \"host=app1\""));

        evaluate(c, NULL, CURLE_OK, 200, "host=app2\n", &r);
        assert_int_equal(r.content.verdict, CHECK_FAIL);
        assert_non_null(strstr(r.content.detail, "do not contain"));
        /* the body's text: JSON escapes it, not us too */
        assert_string_equal(r.excerpt, "host=app2\n");

        /* an empty body never passes, whatever is expected */
        evaluate(c, NULL, CURLE_OK, 200, "", &r);
        assert_int_equal(r.content.verdict, CHECK_FAIL);
        assert_string_equal(r.content.detail, "empty body");
        config_free(c);
}

static void test_regex(void **state) {
        Config *c = config_with("expect_content = re:^status: (ok|ready)$\n");
        regex_t re;
        CheckReport r;

        assert_int_equal(regcomp(&re, "^status: (ok|ready)$", REG_EXTENDED | REG_NOSUB | REG_NEWLINE), 0);
        evaluate(c, &re, CURLE_OK, 200, "status: ready", &r);
        assert_int_equal(r.content.verdict, CHECK_PASS);
        assert_non_null(strstr(r.content.detail, "match"));
        evaluate(c, &re, CURLE_OK, 200, "status: broken", &r);
        assert_int_equal(r.content.verdict, CHECK_FAIL);
        assert_non_null(strstr(r.content.detail, "do not match"));
        /* a NUL inside the body cannot sneak a match past regexec */
        r = (CheckReport) {};
        checks_evaluate_http(c, &re, CURLE_OK, 200, "status: ok\0junk", 15, false, NULL, &r);
        assert_int_equal(r.content.verdict, CHECK_FAIL);
        regfree(&re);
        config_free(c);
}

static void test_status_sets(void **state) {
        Config *c = config_with("expect_status = 200-299,301\n");
        CheckReport r;

        evaluate(c, NULL, CURLE_OK, 301, "moved", &r);
        assert_int_equal(r.status.verdict, CHECK_PASS);
        evaluate(c, NULL, CURLE_OK, 500, "oops", &r);
        assert_int_equal(r.status.verdict, CHECK_FAIL);
        assert_string_equal(r.status.detail, "got 500, want 200-299,301");
        assert_int_equal(r.http_status, 500);
        /* no expect_content: any non-empty body passes the content check */
        assert_int_equal(r.content.verdict, CHECK_PASS);
        config_free(c);
}

static void test_no_answer(void **state) {
        Config *c = config_with("");
        CheckReport r;

        evaluate(c, NULL, CURLE_COULDNT_CONNECT, 0, NULL, &r);
        assert_int_equal(r.status.verdict, CHECK_FAIL);
        assert_int_equal(r.content.verdict, CHECK_FAIL);
        assert_int_equal(r.http_status, 0);
        assert_non_null(strstr(r.status.detail, "no answer from http://127.0.0.2:8080/health: connection refused"));
        config_free(c);
}

static void test_excerpt(void **state) {
        char buf[CHECKS_EXCERPT * 4 + 8], big[300];

        checks_excerpt("ok\r\n\x01\xff\\", 7, CHECKS_EXCERPT, buf, sizeof buf);
        assert_string_equal(buf, "ok\\x0d\\x0a\\x01\\xff\\x5c");
        memset(big, 'a', sizeof big);
        checks_excerpt(big, sizeof big, CHECKS_EXCERPT, buf, sizeof buf);
        assert_int_equal(strlen(buf), CHECKS_EXCERPT + 3);
        assert_string_equal(buf + CHECKS_EXCERPT, "...");
        /* a small buffer is never overrun */
        checks_excerpt("\x01\x02\x03\x04", 4, CHECKS_EXCERPT, buf, 10);
        assert_true(strlen(buf) < 10);
}

/* What status's last_checks.body_excerpt holds: the text itself, so that
 * JSON escapes it once ("\n", not "\\x0a"); only what is not text is
 * replaced. */
#define FFFD "\xef\xbf\xbd"

static void test_excerpt_text(void **state) {
        char buf[CHECKS_EXCERPT * 4 + 8], big[300];
        _cleanup_(json_object_putp) json_object *o = NULL;
        CheckReport r = {};

        checks_excerpt_text("ok\r\n\tdone", 9, CHECKS_EXCERPT, buf, sizeof buf);
        assert_string_equal(buf, "ok\r\n\tdone");
        /* NUL, other controls, DEL, C1, a lone continuation byte, a bad lead: U+FFFD each */
        checks_excerpt_text("a\0b\x01\x7f\xc2\x85\x80\xff", 9, CHECKS_EXCERPT, buf, sizeof buf);
        assert_string_equal(buf, "a" FFFD "b" FFFD FFFD FFFD FFFD FFFD FFFD);
        /* valid UTF-8 stays, and a character cut by the limit is left out whole */
        checks_excerpt_text("h\xc3\xa9llo", 6, CHECKS_EXCERPT, buf, sizeof buf);
        assert_string_equal(buf, "h\xc3\xa9llo");
        memset(big, 'a', sizeof big);
        big[CHECKS_EXCERPT - 1] = (char) 0xc3;
        big[CHECKS_EXCERPT] = (char) 0xa9;
        checks_excerpt_text(big, sizeof big, CHECKS_EXCERPT, buf, sizeof buf);
        assert_int_equal(strlen(buf), CHECKS_EXCERPT - 1 + 3);
        assert_string_equal(buf + CHECKS_EXCERPT - 1, "...");
        /* the worst body fits the report's buffer */
        memset(big, 0xff, sizeof big);
        checks_excerpt_text(big, sizeof big, CHECKS_EXCERPT, r.excerpt, sizeof r.excerpt);
        assert_int_equal(strlen(r.excerpt), CHECKS_EXCERPT * 3 + 3);
        /* a small buffer is never overrun */
        checks_excerpt_text("\x01\x02\x03\x04", 4, CHECKS_EXCERPT, buf, 10);
        assert_true(strlen(buf) < 10);

        /* and in the report's JSON, escaped once */
        snprintf(r.excerpt, sizeof r.excerpt, "host=app2\n");
        o = check_report_json(&r);
        assert_non_null(o);
        assert_non_null(strstr(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN),
                               "\"body_excerpt\":\"host=app2\\n\""));
}

static void test_address_configured(void **state) {
        struct sockaddr_in eth4 = { .sin_family = AF_INET }, eth4m = { .sin_family = AF_INET };
        struct sockaddr_in lo4 = { .sin_family = AF_INET }, lo4m = { .sin_family = AF_INET };
        struct sockaddr_in6 lo6 = { .sin6_family = AF_INET6 }, lo6m = { .sin6_family = AF_INET6 };
        struct ifaddrs eth = { .ifa_name = (char *) "eth0", .ifa_flags = IFF_UP,
                               .ifa_addr = (struct sockaddr *) &eth4, .ifa_netmask = (struct sockaddr *) &eth4m };
        struct ifaddrs lo6e = { .ifa_next = &eth, .ifa_name = (char *) "lo", .ifa_flags = IFF_UP | IFF_LOOPBACK,
                                .ifa_addr = (struct sockaddr *) &lo6, .ifa_netmask = (struct sockaddr *) &lo6m };
        struct ifaddrs nulladdr = { .ifa_next = &lo6e, .ifa_name = (char *) "tun0" };
        struct ifaddrs lo = { .ifa_next = &nulladdr, .ifa_name = (char *) "lo", .ifa_flags = IFF_UP | IFF_LOOPBACK,
                              .ifa_addr = (struct sockaddr *) &lo4, .ifa_netmask = (struct sockaddr *) &lo4m };

        (void) state;
        /* eth0 198.51.100.7/24 (documentation range: never a target), lo 127.0.0.1/8 and ::1/128 */
        inet_pton(AF_INET, "198.51.100.7", &eth4.sin_addr);
        inet_pton(AF_INET, "255.255.255.0", &eth4m.sin_addr);
        inet_pton(AF_INET, "127.0.0.1", &lo4.sin_addr);
        inet_pton(AF_INET, "255.0.0.0", &lo4m.sin_addr);
        inet_pton(AF_INET6, "::1", &lo6.sin6_addr);
        memset(&lo6m.sin6_addr, 0xff, sizeof lo6m.sin6_addr);

        assert_true(checks_address_configured("198.51.100.7", &lo));
        /* the same subnet is not enough on a real interface: only its address is local */
        assert_false(checks_address_configured("198.51.100.8", &lo));
        /* loopback: the whole prefix is local */
        assert_true(checks_address_configured("127.0.0.1", &lo));
        assert_true(checks_address_configured("127.0.0.3", &lo));
        assert_true(checks_address_configured("127.255.255.254", &lo));
        assert_false(checks_address_configured("128.0.0.1", &lo));
        assert_true(checks_address_configured("::1", &lo));
        assert_false(checks_address_configured("::2", &lo));
        assert_false(checks_address_configured("not-an-address", &lo));
        assert_false(checks_address_configured("127.0.0.2", NULL));
        /* without its loopback flag, lo would only have its own address */
        lo.ifa_flags = IFF_UP;
        assert_false(checks_address_configured("127.0.0.3", &lo));
        assert_true(checks_address_configured("127.0.0.1", &lo));
}

static void test_report_json(void **state) {
        CheckReport r = {
                .content = { CHECK_PASS, "10 bytes" }, .status = { CHECK_FAIL, "got 500, want 200-299" },
                .binding = { CHECK_SKIPPED, "no public address" }, .ok = false, .at = 1795366800ULL * USEC_PER_SEC,
                .http_status = 500, .excerpt = "oops", .attempt = 3,
        };
        json_object *o = check_report_json(&r), *v, *d;

        assert_non_null(o);
        assert_true(json_object_object_get_ex(o, "status", &v));
        assert_string_equal(json_object_get_string(v), "fail");
        assert_true(json_object_object_get_ex(o, "binding", &v));
        assert_string_equal(json_object_get_string(v), "skipped");
        assert_true(json_object_object_get_ex(o, "ok", &v));
        assert_false(json_object_get_boolean(v));
        assert_true(json_object_object_get_ex(o, "at", &v));
        assert_string_equal(json_object_get_string(v), "2026-11-22T17:00:00Z");
        assert_true(json_object_object_get_ex(o, "detail", &d));
        assert_true(json_object_object_get_ex(d, "status", &v));
        assert_string_equal(json_object_get_string(v), "got 500, want 200-299");
        assert_true(json_object_object_get_ex(o, "http_status", &v));
        assert_int_equal(json_object_get_int(v), 500);
        assert_true(json_object_object_get_ex(o, "attempt", &v));
        assert_int_equal(json_object_get_int(v), 3);
        json_object_put(o);
        assert_string_equal(check_verdict_to_string(CHECK_PASS), "pass");
        assert_null(check_verdict_to_string(_CHECK_VERDICT_MAX));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_substring),       cmocka_unit_test(test_regex),
                cmocka_unit_test(test_status_sets),     cmocka_unit_test(test_no_answer),
                cmocka_unit_test(test_excerpt),         cmocka_unit_test(test_address_configured),
                cmocka_unit_test(test_report_json),     cmocka_unit_test(test_excerpt_text),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
