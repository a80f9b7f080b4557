/* EC2's pure parts: the two XML documents the Query API answers with (and
 * everything else a proxy or an attacker could put in their place), the
 * RebootInstances form body, what each error code means for retrying, and
 * the outcome names. Fixtures: tests/unit/data/ec2/. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ec2.h"

#define FIXTURES SOURCE_ROOT "/tests/unit/data/ec2/"

/* --- helpers ------------------------------------------------------------ */

/* The fixture in a buffer of exactly its size, with no NUL after it: the
 * parser must stay within `len` (ASan says so if it does not). */
static char *fixture(const char *name, size_t *ret_len) {
        char path[512];
        struct stat st;
        char *buf;
        int fd;

        snprintf(path, sizeof path, FIXTURES "%s", name);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(fstat(fd, &st), 0);
        assert_true(st.st_size > 0);
        buf = malloc((size_t) st.st_size);
        assert_non_null(buf);
        assert_int_equal(read(fd, buf, (size_t) st.st_size), st.st_size);
        close(fd);
        *ret_len = (size_t) st.st_size;
        return buf;
}

/* Parse a fixture that must be accepted. */
static Ec2Response parse_ok(const char *name) {
        Ec2Response r;
        char *error = NULL, *xml;
        size_t len;

        int k;

        memset(&r, 0x5a, sizeof r);
        xml = fixture(name, &len);
        k = ec2_parse_response(xml, len, &r, &error);
        free(xml);
        if (k < 0)
                fail_msg("%s: %d %s", name, k, strna(error));
        assert_null(error);
        /* every string field comes back NUL-terminated */
        assert_true(memchr(r.code, '\0', sizeof r.code) != NULL);
        assert_true(memchr(r.message, '\0', sizeof r.message) != NULL);
        assert_true(memchr(r.request_id, '\0', sizeof r.request_id) != NULL);
        return r;
}

/* Parse a fixture that must be refused with -EBADMSG, a message, and the
 * output left alone. */
static void parse_refused(const char *name, const char *expect_in_error) {
        Ec2Response r, before;
        char *error = NULL, *xml;
        size_t len;

        memset(&r, 0x5a, sizeof r);
        before = r;
        xml = fixture(name, &len);
        assert_int_equal(ec2_parse_response(xml, len, &r, &error), -EBADMSG);
        assert_non_null(error);
        assert_true(strlen(error) > 0);
        if (expect_in_error && !strstr(error, expect_in_error))
                fail_msg("%s: error \"%s\" does not mention \"%s\"", name, error, expect_in_error);
        assert_memory_equal(&r, &before, sizeof r);
        free(error);

        /* ret_error is optional */
        assert_int_equal(ec2_parse_response(xml, len, &r, NULL), -EBADMSG);
        free(xml);
}

/* The text of the first <Message> of a fixture, as the parser should give
 * it: cut to fit the field (of `size` bytes with the NUL). */
static void first_message(const char *name, char *buf, size_t size) {
        char *xml, *s, *b, *e;
        size_t len;

        xml = fixture(name, &len);
        s = strndup(xml, len);
        free(xml);
        assert_non_null(s);
        b = strstr(s, "<Message>");
        assert_non_null(b);
        b += strlen("<Message>");
        e = strstr(b, "</Message>");
        assert_non_null(e);
        snprintf(buf, size, "%.*s", (int) (e - b), b);
        free(s);
}

/* --- ec2_parse_response: EC2's own answers ------------------------------ */

static void test_parse_success(void **state) {
        Ec2Response r = parse_ok("reboot_ok.xml");

        assert_false(r.is_error);
        assert_true(r.returned_true);
        assert_string_equal(r.request_id, "59dbff89-35bd-4eac-99ed-be587EXAMPLE");
        assert_string_equal(r.code, "");
        assert_string_equal(r.message, "");
}

static void test_parse_success_false(void **state) {
        Ec2Response r = parse_ok("reboot_false.xml");

        assert_false(r.is_error);
        assert_false(r.returned_true);
        assert_string_equal(r.request_id, "0f6c1f3e-0000-4000-8000-00000000b00f");
}

static void test_parse_success_inline(void **state) {
        /* no declaration, no whitespace, and a return value with blanks */
        static const char xml[] = "<RebootInstancesResponse><return> true </return>"
                                  "<requestId>r-1</requestId></RebootInstancesResponse>";
        Ec2Response r = {};
        char *error = NULL;

        assert_int_equal(ec2_parse_response(xml, strlen(xml), &r, &error), 0);
        assert_null(error);
        assert_true(r.returned_true);
        assert_false(r.is_error);
        assert_string_equal(r.request_id, "r-1");
}

static void test_parse_success_nested_return_ignored(void **state) {
        /* only the document's own <return> counts, not one deeper down */
        static const char xml[] = "<RebootInstancesResponse><requestId>r-2</requestId>"
                                  "<item><return>true</return></item></RebootInstancesResponse>";
        Ec2Response r = {};

        assert_int_equal(ec2_parse_response(xml, strlen(xml), &r, NULL), 0);
        assert_false(r.returned_true);
        assert_string_equal(r.request_id, "r-2");
}

static void test_parse_namespace_prefix(void **state) {
        Ec2Response r = parse_ok("namespace_prefix.xml");

        assert_false(r.is_error);
        assert_true(r.returned_true);
        assert_string_equal(r.request_id, "9e0d8c7b-6a5f-4e3d-8c2b-1a0f9e8d7c6b");
}

static void test_parse_dry_run(void **state) {
        Ec2Response r = parse_ok("dryrun_412.xml");

        assert_true(r.is_error);
        assert_false(r.returned_true);
        assert_string_equal(r.code, "DryRunOperation");
        assert_string_equal(r.message, "Request would have succeeded, but DryRun flag is set.");
        assert_string_equal(r.request_id, "a8f4e3f4-7a2d-4c5b-9a3e-2c1d0e9f8a7b");
}

static void test_parse_unauthorized_cut(void **state) {
        Ec2Response r = parse_ok("unauthorized_403.xml");
        char expect[sizeof r.message];

        first_message("unauthorized_403.xml", expect, sizeof expect);

        assert_true(r.is_error);
        assert_string_equal(r.code, "UnauthorizedOperation");
        assert_string_equal(r.request_id, "c5b1a2d3-1111-4222-8333-444455556666");
        /* cut to the field, from the start: the part a human reads first */
        assert_int_equal(strlen(r.message), sizeof r.message - 1);
        assert_string_equal(r.message, expect);
        assert_non_null(strstr(r.message, "ec2:RebootInstances"));
}

static void test_parse_throttled_trimmed(void **state) {
        Ec2Response r = parse_ok("throttled_503.xml");

        assert_true(r.is_error);
        assert_string_equal(r.code, "RequestLimitExceeded");
        assert_string_equal(r.message, "Request limit exceeded.");
        assert_string_equal(r.request_id, "d7e2b1c0-aaaa-4bbb-8ccc-ddddeeeeffff");
}

static void test_parse_auth_failure(void **state) {
        Ec2Response r = parse_ok("auth_failure_401.xml");

        assert_true(r.is_error);
        assert_string_equal(r.code, "AuthFailure");
        assert_string_equal(r.message, "AWS was not able to validate the provided access credentials");
        assert_string_equal(r.request_id, "11111111-2222-4333-8444-555555555555");
}

static void test_parse_request_expired(void **state) {
        Ec2Response r = parse_ok("request_expired_400.xml");

        assert_true(r.is_error);
        assert_string_equal(r.code, "RequestExpired");
        assert_string_equal(r.message, "Request has expired. Timestamp date is 20261122T194500Z");
}

static void test_parse_two_errors_first_wins(void **state) {
        Ec2Response r = parse_ok("two_errors.xml");

        assert_true(r.is_error);
        assert_string_equal(r.code, "InvalidInstanceID.NotFound");
        assert_string_equal(r.message, "The instance ID 'i-0123456789abcdef0' does not exist");
        assert_string_equal(r.request_id, "44444444-5555-4666-8777-888888888888");
}

static void test_parse_huge_message(void **state) {
        /* 20000 characters in one line: expat hands them over in one piece */
        Ec2Response r = parse_ok("huge_message.xml");
        char expect[sizeof r.message];

        first_message("huge_message.xml", expect, sizeof expect);

        assert_true(r.is_error);
        assert_string_equal(r.code, "InternalError");
        assert_string_equal(r.request_id, "55555555-6666-4777-8888-999999999999");
        assert_int_equal(strlen(r.message), sizeof r.message - 1);
        assert_string_equal(r.message, expect);
}

static void test_parse_huge_code_and_request_id(void **state) {
        /* fields longer than their arrays are cut, never overflow */
        char code[300], rid[300], *xml = NULL;
        Ec2Response r = {};

        memset(code, 'C', sizeof code - 1);
        code[sizeof code - 1] = '\0';
        memset(rid, 'r', sizeof rid - 1);
        rid[sizeof rid - 1] = '\0';
        assert_true(asprintf(&xml,
                             "<Response><Errors><Error><Code>%s</Code><Message>m</Message></Error></Errors>"
                             "<RequestID>%s</RequestID></Response>",
                             code, rid) > 0);
        assert_int_equal(ec2_parse_response(xml, strlen(xml), &r, NULL), 0);
        assert_int_equal(strlen(r.code), sizeof r.code - 1);
        assert_int_equal(strlen(r.request_id), sizeof r.request_id - 1);
        assert_true(strspn(r.code, "C") == sizeof r.code - 1);
        free(xml);
}

static void test_parse_entities_and_control_chars(void **state) {
        /* entities split the character data; newlines and tabs become
         * spaces, since the message ends up in one log line */
        Ec2Response r = parse_ok("entities.xml");

        assert_true(r.is_error);
        assert_string_equal(r.code, "InvalidParameterValue");
        assert_string_equal(r.message, "Value \"i-x\" for parameter InstanceId is invalid & unusable second line");
        for (const char *p = r.message; *p; p++)
                assert_true((unsigned char) *p >= 0x20 && *p != 0x7f);
}

static void test_parse_error_request_id_spelling(void **state) {
        /* EC2 spells it RequestID; accept RequestId as well */
        static const char xml[] = "<Response><Errors><Error><Code>Unavailable</Code></Error></Errors>"
                                  "<RequestId>rid-7</RequestId></Response>";
        Ec2Response r = {};

        assert_int_equal(ec2_parse_response(xml, strlen(xml), &r, NULL), 0);
        assert_true(r.is_error);
        assert_string_equal(r.code, "Unavailable");
        assert_string_equal(r.message, "");
        assert_string_equal(r.request_id, "rid-7");
}

/* --- ec2_parse_response: what must be refused --------------------------- */

static void test_parse_refuses_doctype(void **state) {
        parse_refused("billion_laughs.xml", NULL);
        /* even a harmless DOCTYPE: EC2 never sends one */
        parse_refused("doctype_plain.xml", NULL);
}

static void test_parse_refuses_garbage(void **state) {
        parse_refused("garbage.txt", NULL);
}

static void test_parse_refuses_proxy_html(void **state) {
        parse_refused("proxy_error.html", NULL);
        /* nginx's page is well-formed XML, but not one of EC2's documents */
        parse_refused("nginx_502.html", NULL);
}

static void test_parse_refuses_truncated(void **state) {
        char *xml;
        size_t len;

        parse_refused("truncated.xml", NULL);

        /* a complete document cut short by `len` is truncated as well */
        xml = fixture("reboot_ok.xml", &len);
        for (size_t cut = 1; cut < len - 30; cut += 7) {
                Ec2Response r = {};
                char *error = NULL;

                assert_int_equal(ec2_parse_response(xml, cut, &r, &error), -EBADMSG);
                assert_non_null(error);
                free(error);
        }
        free(xml);
}

static void test_parse_refuses_deep_nesting(void **state) {
        parse_refused("deep_nesting.xml", NULL);
}

static void test_parse_refuses_empty_code(void **state) {
        parse_refused("empty_code.xml", "Code");
}

static void test_parse_refuses_success_without_request_id(void **state) {
        parse_refused("reboot_no_request_id.xml", "requestId");
}

static void test_parse_refuses_error_without_errors(void **state) {
        static const char *const docs[] = {
                "<Response><RequestID>r</RequestID></Response>",
                "<Response><Errors/><RequestID>r</RequestID></Response>",
                /* a Code outside Errors/Error is not one */
                "<Response><Code>AuthFailure</Code><RequestID>r</RequestID></Response>",
                "<Response><Error><Code>AuthFailure</Code></Error><RequestID>r</RequestID></Response>",
        };

        for (size_t i = 0; i < ELEMENTSOF(docs); i++) {
                Ec2Response r = {};
                char *error = NULL;

                if (ec2_parse_response(docs[i], strlen(docs[i]), &r, &error) != -EBADMSG)
                        fail_msg("accepted: %s", docs[i]);
                assert_non_null(error);
                free(error);
        }
}

static void test_parse_refuses_other_roots(void **state) {
        static const char *const docs[] = {
                "<Error><Code>AccessDenied</Code></Error>",
                "<html><body>hi</body></html>",
                "<Response2><requestId>r</requestId></Response2>",
                "<x/>",
                "<?xml version=\"1.0\"?>",
                "<RebootInstancesResponse><requestId>r</requestId></RebootInstancesResponse>junk",
                "<RebootInstancesResponse><requestId>r</requestId></RebootInstancesResponse><x/>",
        };

        for (size_t i = 0; i < ELEMENTSOF(docs); i++) {
                Ec2Response r = {};
                char *error = NULL;

                if (ec2_parse_response(docs[i], strlen(docs[i]), &r, &error) != -EBADMSG)
                        fail_msg("accepted: %s", docs[i]);
                assert_non_null(error);
                free(error);
        }
}

static void test_parse_refuses_empty(void **state) {
        Ec2Response r = {};
        char *error = NULL;

        assert_int_equal(ec2_parse_response("", 0, &r, &error), -EBADMSG);
        assert_non_null(error);
        free(error);
        error = NULL;
        assert_int_equal(ec2_parse_response(NULL, 0, &r, &error), -EBADMSG);
        assert_non_null(error);
        free(error);
        error = NULL;
        /* whitespace only */
        assert_int_equal(ec2_parse_response(" \n", 2, &r, &error), -EBADMSG);
        assert_non_null(error);
        free(error);
}

/* --- ec2_reboot_body ---------------------------------------------------- */

static void test_body(void **state) {
        char *b = NULL;

        assert_int_equal(ec2_reboot_body("i-0123456789abcdef0", false, &b), 0);
        assert_string_equal(b, "Action=RebootInstances&Version=2016-11-15&InstanceId.1=i-0123456789abcdef0");
        free(b);
        b = NULL;

        assert_int_equal(ec2_reboot_body("i-0123456789abcdef0", true, &b), 0);
        assert_string_equal(b,
                            "Action=RebootInstances&Version=2016-11-15&InstanceId.1=i-0123456789abcdef0&DryRun=true");
        free(b);
        b = NULL;

        /* the old eight-digit form */
        assert_int_equal(ec2_reboot_body("i-1234abcd", false, &b), 0);
        assert_string_equal(b, "Action=RebootInstances&Version=2016-11-15&InstanceId.1=i-1234abcd");
        free(b);
}

static void test_body_bad_ids(void **state) {
        static const char *const bad[] = {
                "i-0123456789ABCDEF0",                   /* uppercase */
                "i-0123456789abcDef0",                   /* one uppercase */
                "i-1234567",                             /* too short */
                "i-",                                    /* nothing */
                "i-0123456789abcdef01",                  /* too long */
                "i-0123456789",                          /* between the two lengths EC2 issues */
                "0123456789abcdef0",                     /* no i- */
                "x-0123456789abcdef0",                   /* wrong prefix */
                "I-0123456789abcdef0",                   /* prefix case */
                "i-0123456789abcdeg0",                   /* not hex */
                "i-0123456789abcde 0",                   /* blank */
                "i-0123456789abcdef0\n",                 /* trailing newline */
                " i-0123456789abcdef0",                  /* leading blank */
                "i-0123456789abcdef0&DryRun=true",       /* a parameter smuggled in */
                "i-1234abcd&InstanceId.2=i-5678abcd",    /* another instance smuggled in */
                "i-12%34abcd",                           /* encoding */
                "",
        };
        char *b = (char *) "untouched";

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                if (ec2_reboot_body(bad[i], false, &b) != -EINVAL)
                        fail_msg("accepted instance id \"%s\"", bad[i]);
                assert_int_equal(ec2_reboot_body(bad[i], true, &b), -EINVAL);
                assert_string_equal(b, "untouched");
        }
        assert_int_equal(ec2_reboot_body(NULL, false, &b), -EINVAL);
        assert_string_equal(b, "untouched");
}

/* --- error classification ----------------------------------------------- */

static void test_retryable(void **state) {
        static const struct {
                const char *code;
                long status;
        } yes[] = {
                { "RequestLimitExceeded", 503 },
                { "RequestLimitExceeded", 400 }, /* the code is enough */
                { "Throttling", 400 },
                { "ThrottlingException", 400 },
                { "InternalError", 500 },
                { "InternalFailure", 500 },
                { "Unavailable", 503 },
                { "ServiceUnavailable", 503 },
                { "RequestTimeout", 400 },
                /* plain 5xx with a code we do not know, or none */
                { "SomethingNew", 500 },
                { "SomethingNew", 502 },
                { NULL, 503 },
                { "", 504 },
        },
          no[] = {
                  { "UnauthorizedOperation", 403 },
                  { "AuthFailure", 401 },
                  { "RequestExpired", 400 },
                  { "SignatureDoesNotMatch", 403 },
                  { "DryRunOperation", 412 },
                  { "InvalidInstanceID.NotFound", 400 },
                  { "InvalidInstanceID.Malformed", 400 },
                  { "IncorrectState", 400 },
                  { "SomethingNew", 400 },
                  { NULL, 400 },
                  { NULL, 0 },
                  { NULL, 200 },
                  /* a denial is a denial, whatever the status */
                  { "UnauthorizedOperation", 500 },
                  { "AuthFailure", 503 },
          };

        for (size_t i = 0; i < ELEMENTSOF(yes); i++)
                if (!ec2_error_is_retryable(yes[i].code, yes[i].status))
                        fail_msg("%s/%ld should be retried", strna(yes[i].code), yes[i].status);
        for (size_t i = 0; i < ELEMENTSOF(no); i++)
                if (ec2_error_is_retryable(no[i].code, no[i].status))
                        fail_msg("%s/%ld should not be retried", strna(no[i].code), no[i].status);
}

static void test_denied(void **state) {
        static const char *const yes[] = {
                "UnauthorizedOperation", "AuthFailure",  "OptInRequired",        "Blocked",
                "SignatureDoesNotMatch", "RequestExpired", "InvalidClientTokenId", "MissingAuthenticationToken",
        };
        static const char *const no[] = {
                "DryRunOperation",
                "RequestLimitExceeded",
                "InternalError",
                "Unavailable",
                "InvalidInstanceID.NotFound",
                "IncorrectState",
                "",
                "Unauthorized", /* whole codes only */
                "UnauthorizedOperationX",
        };

        for (size_t i = 0; i < ELEMENTSOF(yes); i++)
                if (!ec2_error_is_denied(yes[i]))
                        fail_msg("%s should be a denial", yes[i]);
        for (size_t i = 0; i < ELEMENTSOF(no); i++)
                if (ec2_error_is_denied(no[i]))
                        fail_msg("%s should not be a denial", no[i]);
        assert_false(ec2_error_is_denied(NULL));

        /* never both */
        for (size_t i = 0; i < ELEMENTSOF(yes); i++)
                for (long s = 400; s <= 599; s += 103)
                        assert_false(ec2_error_is_retryable(yes[i], s));
}

static void test_parsed_codes_classify(void **state) {
        /* end to end: what the parser reads is what the classifiers know */
        Ec2Response r;

        r = parse_ok("unauthorized_403.xml");
        assert_true(ec2_error_is_denied(r.code));
        assert_false(ec2_error_is_retryable(r.code, 403));
        r = parse_ok("auth_failure_401.xml");
        assert_true(ec2_error_is_denied(r.code));
        r = parse_ok("request_expired_400.xml");
        assert_true(ec2_error_is_denied(r.code));
        r = parse_ok("throttled_503.xml");
        assert_true(ec2_error_is_retryable(r.code, 503));
        assert_false(ec2_error_is_denied(r.code));
        r = parse_ok("dryrun_412.xml");
        assert_false(ec2_error_is_denied(r.code));
        assert_false(ec2_error_is_retryable(r.code, 412));
}

/* --- names and the client's constructor --------------------------------- */

static void test_outcome_to_string(void **state) {
        const char *seen[_EC2_OUTCOME_MAX];

        assert_string_equal(ec2_outcome_to_string(EC2_REBOOTING), "rebooting");
        assert_string_equal(ec2_outcome_to_string(EC2_PERMITTED), "permitted");
        assert_string_equal(ec2_outcome_to_string(EC2_DENIED), "denied");
        assert_string_equal(ec2_outcome_to_string(EC2_FAILED), "failed");
        assert_null(ec2_outcome_to_string(_EC2_OUTCOME_MAX));
        assert_null(ec2_outcome_to_string(_EC2_OUTCOME_INVALID));
        assert_null(ec2_outcome_to_string((Ec2Outcome) -1));

        for (int i = 0; i < _EC2_OUTCOME_MAX; i++) {
                seen[i] = ec2_outcome_to_string((Ec2Outcome) i);
                assert_non_null(seen[i]);
                for (int j = 0; j < i; j++)
                        assert_string_not_equal(seen[i], seen[j]);
        }
}

static void test_new_endpoint(void **state) {
        sd_event *e = NULL;
        Ec2 *c = NULL;

        assert_int_equal(sd_event_new(&e), 0);

        assert_int_equal(ec2_new(e, NULL, NULL, "eu-west-3", &c), 0);
        assert_string_equal(ec2_endpoint(c), "https://ec2.eu-west-3.amazonaws.com/");
        assert_false(ec2_busy(c));
        c = ec2_free(c);
        assert_null(c);

        assert_int_equal(ec2_new(e, NULL, "http://127.0.0.1:4566/", "us-east-1", &c), 0);
        assert_string_equal(ec2_endpoint(c), "http://127.0.0.1:4566/");
        ec2_cancel(c); /* nothing in progress: harmless */
        assert_false(ec2_busy(c));
        c = ec2_free(c);

        assert_int_equal(ec2_new(e, NULL, NULL, "", &c), -EINVAL);
        assert_int_equal(ec2_new(e, NULL, NULL, NULL, &c), -EINVAL);
        assert_null(c);

        assert_null(ec2_free(NULL));
        assert_false(ec2_busy(NULL));
        ec2_cancel(NULL);
        sd_event_unref(e);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse_success),
                cmocka_unit_test(test_parse_success_false),
                cmocka_unit_test(test_parse_success_inline),
                cmocka_unit_test(test_parse_success_nested_return_ignored),
                cmocka_unit_test(test_parse_namespace_prefix),
                cmocka_unit_test(test_parse_dry_run),
                cmocka_unit_test(test_parse_unauthorized_cut),
                cmocka_unit_test(test_parse_throttled_trimmed),
                cmocka_unit_test(test_parse_auth_failure),
                cmocka_unit_test(test_parse_request_expired),
                cmocka_unit_test(test_parse_two_errors_first_wins),
                cmocka_unit_test(test_parse_huge_message),
                cmocka_unit_test(test_parse_huge_code_and_request_id),
                cmocka_unit_test(test_parse_entities_and_control_chars),
                cmocka_unit_test(test_parse_error_request_id_spelling),
                cmocka_unit_test(test_parse_refuses_doctype),
                cmocka_unit_test(test_parse_refuses_garbage),
                cmocka_unit_test(test_parse_refuses_proxy_html),
                cmocka_unit_test(test_parse_refuses_truncated),
                cmocka_unit_test(test_parse_refuses_deep_nesting),
                cmocka_unit_test(test_parse_refuses_empty_code),
                cmocka_unit_test(test_parse_refuses_success_without_request_id),
                cmocka_unit_test(test_parse_refuses_error_without_errors),
                cmocka_unit_test(test_parse_refuses_other_roots),
                cmocka_unit_test(test_parse_refuses_empty),
                cmocka_unit_test(test_body),
                cmocka_unit_test(test_body_bad_ids),
                cmocka_unit_test(test_retryable),
                cmocka_unit_test(test_denied),
                cmocka_unit_test(test_parsed_codes_classify),
                cmocka_unit_test(test_outcome_to_string),
                cmocka_unit_test(test_new_endpoint),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
