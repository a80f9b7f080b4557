/* http.c: which proxy the environment names for a call that opts in, the
 * proxy as logs show it (never its credentials), and failures through a
 * proxy described as the proxy's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "http.h"

/* A fake environment: NAME=VALUE strings, NULL-terminated. */
static const char *const *fake_env;

static const char *fake_getenv(const char *name) {
        size_t n = strlen(name);

        for (const char *const *e = fake_env; e && *e; e++)
                if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
                        return *e + n + 1;
        return NULL;
}

static HttpEnvProxy env_proxy(const char *url, const char *const *env) {
        HttpEnvProxy ep;

        fake_env = env;
        http_env_proxy(url, fake_getenv, &ep);
        return ep;
}

static void test_env_proxy_by_scheme(void **state) {
        const char *const env[] = { "http_proxy=http://plain:3128", "https_proxy=http://tls:3128", NULL };
        HttpEnvProxy ep;

        ep = env_proxy("https://ec2.us-east-1.amazonaws.com/", env);
        assert_string_equal(ep.proxy, "http://tls:3128");
        assert_string_equal(ep.proxy_var, "https_proxy");
        assert_null(ep.no_proxy);
        ep = env_proxy("HTTPS://slack.com/api/chat.postMessage", env);
        assert_string_equal(ep.proxy_var, "https_proxy");
        ep = env_proxy("http://127.0.0.1:8080/api/chat.postMessage", env);
        assert_string_equal(ep.proxy, "http://plain:3128");
        assert_string_equal(ep.proxy_var, "http_proxy");
}

static void test_env_proxy_upper_case(void **state) {
        /* HTTP_PROXY counts (curl alone ignores it; the AWS SDKs read it) */
        const char *const upper[] = { "HTTP_PROXY=http://up:1", "HTTPS_PROXY=http://UP:2", "NO_PROXY=.corp", NULL };
        const char *const both[] = { "HTTPS_PROXY=http://up:2", "https_proxy=http://low:2", "NO_PROXY=.up",
                                     "no_proxy=.low", NULL };
        HttpEnvProxy ep;

        ep = env_proxy("http://a/", upper);
        assert_string_equal(ep.proxy, "http://up:1");
        assert_string_equal(ep.proxy_var, "HTTP_PROXY");
        assert_string_equal(ep.no_proxy, ".corp");
        ep = env_proxy("https://a/", upper);
        assert_string_equal(ep.proxy_var, "HTTPS_PROXY");
        /* the lower-case form wins */
        ep = env_proxy("https://a/", both);
        assert_string_equal(ep.proxy, "http://low:2");
        assert_string_equal(ep.no_proxy, ".low");
}

static void test_env_proxy_all_and_none(void **state) {
        const char *const all[] = { "ALL_PROXY=socks5h://s:1080", "https_proxy=http://tls:3128", NULL };
        const char *const empty[] = { "https_proxy=", "HTTPS_PROXY=http://inherited:3128", "all_proxy=http://all:1",
                                      NULL };
        const char *const none[] = { "PATH=/usr/bin", "no_proxy=*", NULL };
        HttpEnvProxy ep;

        ep = env_proxy("http://a/", all);
        assert_string_equal(ep.proxy, "socks5h://s:1080");
        assert_string_equal(ep.proxy_var, "ALL_PROXY");
        ep = env_proxy("https://a/", all);
        assert_string_equal(ep.proxy_var, "https_proxy");
        /* set but empty: direct, over the upper-case form and all_proxy */
        ep = env_proxy("https://a/", empty);
        assert_string_equal(ep.proxy, "");
        assert_string_equal(ep.proxy_var, "https_proxy");
        assert_string_equal(ep.use, "");
        ep = env_proxy("https://a/", none);
        assert_null(ep.proxy);
        assert_null(ep.proxy_var);
        assert_string_equal(ep.use, "");
        assert_false(ep.exempt);
        assert_string_equal(ep.no_proxy, "*");
        ep = env_proxy(NULL, none);
        assert_null(ep.proxy);
}

static void test_proxy_display_hides_credentials(void **state) {
        char buf[256];

        assert_string_equal(http_proxy_display("http://user:s3cr3t@proxy.corp:3128", buf, sizeof buf),
                            "http://proxy.corp:3128");
        assert_string_equal(http_proxy_display("http://proxy.corp:3128/", buf, sizeof buf), "http://proxy.corp:3128");
        assert_string_equal(http_proxy_display("proxy.corp:3128", buf, sizeof buf), "http://proxy.corp:3128");
        assert_string_equal(http_proxy_display("https://u:p@[::1]:8443/x?token=s3cr3t", buf, sizeof buf),
                            "https://[::1]:8443");
        assert_string_equal(http_proxy_display("socks5h://only-user@s", buf, sizeof buf), "socks5h://s");
        /* what curl cannot parse is not shown at all: it may hold a password */
        assert_string_equal(http_proxy_display("http://us er:s3cr3t@ bad", buf, sizeof buf), "(unparsable)");
        assert_null(strstr(http_proxy_display("http://a:s3cr3t@p:1", buf, sizeof buf), "s3cr3t"));
}

static void test_no_proxy_match(void **state) {
        /* names: itself and subdomains, dots and case ignored */
        assert_true(http_no_proxy_match("example.com", "example.com"));
        assert_true(http_no_proxy_match("example.com", "www.Example.COM"));
        assert_true(http_no_proxy_match(".example.com", "example.com"));
        assert_true(http_no_proxy_match(".example.com", "a.b.example.com"));
        assert_true(http_no_proxy_match("example.com.", "example.com."));
        assert_false(http_no_proxy_match("example.com", "badexample.com"));
        assert_false(http_no_proxy_match("www.example.com", "example.com"));
        assert_false(http_no_proxy_match("example.com", "example.com.evil"));
        /* lists: commas and blanks */
        assert_true(http_no_proxy_match("localhost, .corp  ,169.254.169.254", "slack.corp"));
        assert_true(http_no_proxy_match("a b\tc.io", "x.c.io"));
        assert_true(http_no_proxy_match("nothing,*", "anything"));
        assert_true(http_no_proxy_match("*.corp", "a.corp")); /* as Go and Java write it */
        assert_false(http_no_proxy_match("*.corp", "acorp"));
        assert_false(http_no_proxy_match("a*.corp", "ab.corp")); /* no other globs */
        assert_false(http_no_proxy_match("", "a"));
        assert_false(http_no_proxy_match(",, ,", "a"));
        /* addresses and CIDR ranges */
        assert_true(http_no_proxy_match("127.0.0.1", "127.0.0.1"));
        assert_false(http_no_proxy_match("127.0.0.1", "127.0.0.2"));
        assert_true(http_no_proxy_match("127.0.0.0/8", "127.200.3.4"));
        assert_false(http_no_proxy_match("127.0.0.0/8", "128.0.0.1"));
        assert_true(http_no_proxy_match("127.168.4.0/22", "127.168.7.255"));
        assert_false(http_no_proxy_match("127.168.4.0/22", "127.168.8.0"));
        assert_true(http_no_proxy_match("0.0.0.0/0", "127.0.0.9"));
        assert_false(http_no_proxy_match("127.0.0.0/33", "127.0.0.1"));
        assert_false(http_no_proxy_match("127.0.0.0/", "127.0.0.1"));
        assert_false(http_no_proxy_match("127.0.0.0/8x", "127.0.0.1"));
        assert_true(http_no_proxy_match("::1", "[::1]"));
        assert_true(http_no_proxy_match("[::]/64", "[::1]"));
        assert_false(http_no_proxy_match("::2/128", "[::1]"));
        assert_false(http_no_proxy_match("127.0.0.0/8", "[::ffff:127.0.0.1]")); /* other family */
        /* a name never matches an address by suffix */
        assert_false(http_no_proxy_match("0.1", "127.0.0.1"));
}

static void test_env_proxy_exempt(void **state) {
        const char *const env[] = { "https_proxy=http://p:3128", "http_proxy=http://p:3128",
                                    "NO_PROXY=.internal,127.10.0.0/16,127.0.0.1", NULL };
        HttpEnvProxy ep;

        ep = env_proxy("https://slack.com/api/chat.postMessage", env);
        assert_false(ep.exempt);
        assert_string_equal(ep.use, "http://p:3128");
        ep = env_proxy("https://ec2.us-east-1.vpce.internal/", env);
        assert_true(ep.exempt);
        assert_string_equal(ep.use, "");
        assert_string_equal(ep.no_proxy_var, "NO_PROXY");
        ep = env_proxy("http://127.10.2.3:8080/", env);
        assert_true(ep.exempt);
        ep = env_proxy("http://127.0.0.1:4444/api/", env);
        assert_true(ep.exempt);
        ep = env_proxy("http://127.0.0.2:4444/api/", env);
        assert_false(ep.exempt);
        ep = env_proxy("not a url", env);
        assert_false(ep.exempt);
        assert_string_equal(ep.use, "http://p:3128");
}

static void test_env_proxy_describe(void **state) {
        const char *const env[] = { "https_proxy=http://ops:s3cr3t@proxy.corp:3128", "no_proxy=.internal,127.10.0.0/16",
                                    NULL };
        const char *const off[] = { "https_proxy=", NULL };
        char buf[512];

        fake_env = env;
        assert_string_equal(http_env_proxy_describe("https://slack.com/api/chat.postMessage", fake_getenv, buf,
                                                    sizeof buf),
                            "through the proxy http://proxy.corp:3128 (https_proxy)");
        assert_string_equal(http_env_proxy_describe("https://slack.internal/api/", fake_getenv, buf, sizeof buf),
                            "direct (no_proxy names slack.internal)");
        assert_string_equal(http_env_proxy_describe("https://127.10.0.7/", fake_getenv, buf, sizeof buf),
                            "direct (no_proxy names 127.10.0.7)");
        /* no http_proxy for an http:// URL */
        assert_null(http_env_proxy_describe("http://slack.com/", fake_getenv, buf, sizeof buf));
        fake_env = off;
        assert_null(http_env_proxy_describe("https://slack.com/", fake_getenv, buf, sizeof buf));
}

static void test_describe_proxy_failures(void **state) {
        HttpResponse r = { .result = CURLE_RECV_ERROR, .proxy_status = 407 };
        char buf[128];

        assert_string_equal(http_describe_failure(&r, buf, sizeof buf), "the proxy answered CONNECT with HTTP 407");
        r = (HttpResponse) { .result = CURLE_COULDNT_RESOLVE_PROXY };
        assert_string_equal(http_describe_failure(&r, buf, sizeof buf), "cannot resolve the proxy");
        /* a plain forwarded request: the proxy's status is the answer's */
        r = (HttpResponse) { .result = CURLE_OK, .status = 502 };
        assert_string_equal(http_describe_failure(&r, buf, sizeof buf), "HTTP 502");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_env_proxy_by_scheme),
                cmocka_unit_test(test_env_proxy_upper_case),
                cmocka_unit_test(test_env_proxy_all_and_none),
                cmocka_unit_test(test_proxy_display_hides_credentials),
                cmocka_unit_test(test_no_proxy_match),
                cmocka_unit_test(test_env_proxy_exempt),
                cmocka_unit_test(test_env_proxy_describe),
                cmocka_unit_test(test_describe_proxy_failures),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
