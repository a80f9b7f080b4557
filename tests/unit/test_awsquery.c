/* The Query-API engine's pure parts: both error shapes (EC2's and ELB's /
 * Auto Scaling's), the success documents' request ids, the walker's paths
 * and texts, the limits, the form body's encoding, and what each error
 * code means for retrying. The calls themselves: test_elbv2.c and
 * test_autoscaling.c, against queryserver.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "awsquery.h"
#include "testutil.h"

static AwsQueryAnswer parse_ok(const char *xml) {
        AwsQueryAnswer a;
        char *error = NULL;
        int k;

        memset(&a, 0x5a, sizeof a);
        k = aws_query_parse(xml, strlen(xml), NULL, NULL, &a, &error);
        if (k < 0)
                fail_msg("%d %s: %s", k, strna(error), xml);
        assert_null(error);
        return a;
}

static void parse_refused(const char *xml, const char *expect_in_error) {
        AwsQueryAnswer a, before;
        char *error = NULL;

        memset(&a, 0x5a, sizeof a);
        before = a;
        if (aws_query_parse(xml, strlen(xml), NULL, NULL, &a, &error) != -EBADMSG)
                fail_msg("accepted: %s", xml);
        assert_non_null(error);
        if (expect_in_error && !strstr(error, expect_in_error))
                fail_msg("error \"%s\" does not mention \"%s\"", error, expect_in_error);
        assert_memory_equal(&a, &before, sizeof a);
        free(error);
        assert_int_equal(aws_query_parse(xml, strlen(xml), NULL, NULL, &a, NULL), -EBADMSG);
}

static void test_parse_query_error(void **state) {
        AwsQueryAnswer a = parse_ok("<ErrorResponse xmlns=\"http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/\">"
                                    "<Error><Type>Sender</Type><Code>TargetGroupNotFound</Code>"
                                    "<Message>Target groups 'x' not found</Message></Error>"
                                    "<RequestId>abc-1</RequestId></ErrorResponse>");

        assert_true(a.is_error);
        assert_string_equal(a.root, "ErrorResponse");
        assert_string_equal(a.type, "Sender");
        assert_string_equal(a.code, "TargetGroupNotFound");
        assert_string_equal(a.message, "Target groups 'x' not found");
        assert_string_equal(a.request_id, "abc-1");

        /* the first Error counts; a Code elsewhere does not */
        a = parse_ok("<ErrorResponse><Code>Decoy</Code><Error><Code>Throttling</Code><Message>Rate exceeded</Message>"
                     "</Error><Error><Code>Second</Code></Error><RequestId>r</RequestId></ErrorResponse>");
        assert_string_equal(a.code, "Throttling");
        assert_string_equal(a.message, "Rate exceeded");
        assert_string_equal(a.type, "");

        parse_refused("<ErrorResponse><RequestId>r</RequestId></ErrorResponse>", "Error/Code");
        parse_refused("<ErrorResponse><Error><Code> </Code></Error></ErrorResponse>", "Error/Code");
        parse_refused("<ErrorResponse><Errors><Error><Code>X</Code></Error></Errors></ErrorResponse>", "Error/Code");
}

static void test_parse_ec2_error(void **state) {
        AwsQueryAnswer a = parse_ok("<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>no</Message>"
                                    "</Error></Errors><RequestID>r-9</RequestID></Response>");

        assert_true(a.is_error);
        assert_string_equal(a.code, "UnauthorizedOperation");
        assert_string_equal(a.message, "no");
        assert_string_equal(a.request_id, "r-9");
        parse_refused("<Response><Error><Code>AuthFailure</Code></Error></Response>", "Errors/Error/Code");
}

static void test_parse_success(void **state) {
        AwsQueryAnswer a;

        /* ELB and Auto Scaling: ResponseMetadata/RequestId */
        a = parse_ok("<DeregisterTargetsResponse xmlns=\"http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/\">"
                     "<DeregisterTargetsResult/><ResponseMetadata><RequestId> 3e9d </RequestId></ResponseMetadata>"
                     "</DeregisterTargetsResponse>");
        assert_false(a.is_error);
        assert_string_equal(a.root, "DeregisterTargetsResponse");
        assert_string_equal(a.request_id, "3e9d");
        assert_string_equal(a.code, "");
        assert_int_equal(aws_query_check_root(&a, "DeregisterTargets", NULL), 0);
        assert_int_equal(aws_query_check_root(&a, "RegisterTargets", NULL), -EBADMSG);
        assert_int_equal(aws_query_check_root(&a, "Deregister", NULL), -EBADMSG);
        /* EC2: requestId */
        a = parse_ok("<RebootInstancesResponse><requestId>59dbff89</requestId><return>true</return>"
                     "</RebootInstancesResponse>");
        assert_string_equal(a.request_id, "59dbff89");
        /* a prefix is as good as the default namespace */
        a = parse_ok("<a:EnterStandbyResponse xmlns:a=\"urn:x\"><a:ResponseMetadata><a:RequestId>q</a:RequestId>"
                     "</a:ResponseMetadata></a:EnterStandbyResponse>");
        assert_string_equal(a.root, "EnterStandbyResponse");
        assert_string_equal(a.request_id, "q");

        /* a request id elsewhere is not the answer's */
        parse_refused("<DeregisterTargetsResponse><DeregisterTargetsResult><RequestId>x</RequestId>"
                      "</DeregisterTargetsResult></DeregisterTargetsResponse>",
                      "RequestId");
        parse_refused("<Response2><requestId>r</requestId></Response2>", "root");
        parse_refused("<Error><Code>AccessDenied</Code></Error>", "root");
        parse_refused("<html><body>502 Bad Gateway</body></html>", "root");
}

static void test_parse_check_root_error(void **state) {
        AwsQueryAnswer a = parse_ok("<ErrorResponse><Error><Code>Throttling</Code></Error></ErrorResponse>");
        char *error = NULL;

        assert_int_equal(aws_query_check_root(&a, "DescribeTargetHealth", &error), -EBADMSG);
        assert_non_null(strstr(error, "Throttling"));
        free(error);
}

static void test_parse_limits(void **state) {
        char deep[1024] = "", name[200];
        size_t off = 0;

        parse_refused("<!DOCTYPE x [<!ENTITY a \"aaaa\">]><XResponse><requestId>&a;</requestId></XResponse>",
                      "DOCTYPE");
        for (int i = 0; i < AWS_QUERY_DEPTH_MAX + 1; i++)
                off += (size_t) snprintf(deep + off, sizeof deep - off, "<%s>", i == 0 ? "XResponse" : "a");
        parse_refused(deep, "deep");
        memset(name, 'n', sizeof name - 1);
        name[sizeof name - 1] = '\0';
        {
                char doc[600];
                snprintf(doc, sizeof doc, "<XResponse><%s/><requestId>r</requestId></XResponse>", name);
                parse_refused(doc, "name");
        }
        parse_refused("<XResponse><requestId>r</requestId>", "not XML");
        parse_refused("<XResponse><requestId>r</requestId></XResponse><x/>", "not XML");
        parse_refused("", "empty");
        {
                AwsQueryAnswer a;
                char *error = NULL;

                assert_int_equal(aws_query_parse(NULL, 0, NULL, NULL, &a, &error), -EBADMSG);
                assert_non_null(error);
                free(error);
        }
}

/* The walker: every element opens and closes with its path and depth,
 * and closes with its own text, trimmed and cleaned. */
typedef struct Seen {
        char log[2048];
        size_t off;
} Seen;

static void record(AwsXmlEvent ev, const char *path, unsigned depth, const char *text, void *userdata) {
        Seen *s = userdata;

        s->off += (size_t) snprintf(s->log + s->off, sizeof s->log - s->off, "%s %u %s%s%s|",
                                    ev == AWS_XML_OPEN ? "open" : "close", depth, path, text ? "=" : "",
                                    text ? text : "");
}

static void test_walk(void **state) {
        static const char doc[] = "<R:XResponse xmlns:R=\"urn:x\"><XResult><List><member><Id>\n  i-1\t</Id>"
                                  "<Note>a\x01" "b&amp;c</Note></member></List></XResult>"
                                  "<ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></R:XResponse>";
        Seen s = {};
        AwsQueryAnswer a;

        assert_int_equal(aws_query_parse(doc, strlen(doc), record, &s, &a, NULL), -EBADMSG); /* \x01 is not XML */
        s = (Seen) {};
        {
                static const char ok[] = "<R:XResponse xmlns:R=\"urn:x\"><XResult><List><member><Id>\n  i-1\t</Id>"
                                         "<Note>a&#9;b&amp;c</Note></member></List></XResult>"
                                         "<ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></R:XResponse>";
                assert_int_equal(aws_query_parse(ok, strlen(ok), record, &s, &a, NULL), 0);
        }
        assert_string_equal(s.log, "open 1 XResponse|open 2 XResponse/XResult|open 3 XResponse/XResult/List|"
                                   "open 4 XResponse/XResult/List/member|open 5 XResponse/XResult/List/member/Id|"
                                   "close 5 XResponse/XResult/List/member/Id=i-1|"
                                   "open 5 XResponse/XResult/List/member/Note|"
                                   "close 5 XResponse/XResult/List/member/Note=a b&c|"
                                   "close 4 XResponse/XResult/List/member=|close 3 XResponse/XResult/List=|"
                                   "close 2 XResponse/XResult=|open 2 XResponse/ResponseMetadata|"
                                   "open 3 XResponse/ResponseMetadata/RequestId|"
                                   "close 3 XResponse/ResponseMetadata/RequestId=r|close 2 XResponse/ResponseMetadata=|"
                                   "close 1 XResponse=|");
        assert_string_equal(aws_query_subpath("XResponse/XResult/List"), "XResult/List");
        assert_string_equal(aws_query_subpath("XResponse"), "");
}

static void test_copy_text(void **state) {
        char b[6];

        aws_query_copy_text(b, sizeof b, "  abc  ");
        assert_string_equal(b, "abc");
        /* "ab" then a 4-byte character: cut before it, not inside */
        aws_query_copy_text(b, sizeof b, "ab\xf0\x9f\x90\x92");
        assert_string_equal(b, "ab");
        aws_query_copy_text(b, sizeof b, "a\nb\x7f");
        assert_string_equal(b, "a b ");
}

static void message_length(AwsXmlEvent ev, const char *path, unsigned depth, const char *text, void *userdata) {
        if (ev == AWS_XML_CLOSE && streq(path, "ErrorResponse/Error/Message"))
                *(size_t *) userdata = strlen(text);
}

static void test_long_text_kept_whole_characters(void **state) {
        /* a text past the cap is cut, never inside a character: what the
         * walker hands on, and what the answer keeps */
        size_t n = AWS_QUERY_TEXT_MAX + 100, off, walked = 0;
        char *doc = malloc(n + 200);
        AwsQueryAnswer a;

        assert_non_null(doc);
        off = (size_t) snprintf(doc, 200, "<ErrorResponse><Error><Code>X</Code><Message>a");
        for (size_t i = 0; i < n / 2; i++) {
                doc[off++] = '\xc3';
                doc[off++] = '\xa9';
        }
        off += (size_t) snprintf(doc + off, 200, "</Message></Error></ErrorResponse>");
        assert_int_equal(aws_query_parse(doc, off, message_length, &walked, &a, NULL), 0);
        /* 'a' then whole "é"s: an odd length */
        assert_int_equal(strlen(a.message) % 2, 1);
        assert_int_equal(walked % 2, 1);
        assert_true(walked <= AWS_QUERY_TEXT_MAX && walked > AWS_QUERY_TEXT_MAX - 4);
        assert_true(strlen(a.message) < sizeof a.message);
        free(doc);
}

static void test_body(void **state) {
        char *b = NULL;

        assert_int_equal(aws_query_body_new("DeregisterTargets", "2015-12-01", &b), 0);
        assert_int_equal(aws_query_body_add(&b, "TargetGroupArn",
                                            "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef"),
                         0);
        assert_int_equal(aws_query_body_add(&b, "Targets.member.1.Id", "i-0123456789abcdef0"), 0);
        assert_int_equal(aws_query_body_addf(&b, "Targets.member.1.Port", "%u", 8080u), 0);
        assert_string_equal(b, "Action=DeregisterTargets&Version=2015-12-01&TargetGroupArn=arn%3Aaws%3Aelasticloadbalancing"
                               "%3Aus-east-1%3A123456789012%3Atargetgroup%2Fweb%2F0123456789abcdef&Targets.member.1.Id="
                               "i-0123456789abcdef0&Targets.member.1.Port=8080");
        /* RFC 3986: unreserved as is, all else %XX, a space too (not '+') */
        assert_int_equal(aws_query_body_add(&b, "AutoScalingGroupName", "a b+c~d_e.f-g&h=i\xc3\xa9"), 0);
        assert_non_null(strstr(b, "&AutoScalingGroupName=a%20b%2Bc~d_e.f-g%26h%3Di%C3%A9"));
        /* names are ours: letters, digits and dots */
        assert_int_equal(aws_query_body_add(&b, "Bad&Name", "x"), -EINVAL);
        assert_int_equal(aws_query_body_add(&b, "", "x"), -EINVAL);
        assert_int_equal(aws_query_body_add(&b, "X", NULL), -EINVAL);
        assert_null(strstr(b, "Bad"));
        free(b);
        b = NULL;
        assert_int_equal(aws_query_body_new("Do&Evil", "1", &b), -EINVAL);
        assert_null(b);
        assert_int_equal(aws_query_body_add(&b, "X", "y"), -EINVAL);
}

static void test_retryable(void **state) {
        static const struct {
                const char *code;
                long status;
                bool retry, denied;
        } cases[] = {
                { "Throttling", 400, true, false },              /* ELB, Auto Scaling */
                { "ThrottlingException", 400, true, false },
                { "RequestLimitExceeded", 503, true, false },    /* EC2 */
                { "InternalFailure", 500, true, false },
                { "ServiceUnavailable", 503, true, false },
                { NULL, 502, true, false },                      /* a 5xx without a code */
                { "SomethingNew", 500, true, false },
                { "TargetGroupNotFound", 400, false, false },
                { "InvalidTarget", 400, false, false },
                { "ValidationError", 400, false, false },        /* a wrong lifecycle state */
                { "SomethingNew", 400, false, false },
                { "AccessDenied", 403, false, true },
                { "AccessDenied", 503, false, true },            /* a denial, whatever the status */
                { "InvalidClientTokenId", 403, false, true },
                { "SignatureDoesNotMatch", 403, false, true },
                { "UnauthorizedOperation", 403, false, true },
                { "AuthFailure", 401, false, true },
                { "ExpiredToken", 400, false, true },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                if (aws_query_error_is_retryable(cases[i].code, cases[i].status) != cases[i].retry)
                        fail_msg("%s/%ld: retry should be %d", strna(cases[i].code), cases[i].status, cases[i].retry);
                if (aws_query_error_is_denied(cases[i].code) != cases[i].denied)
                        fail_msg("%s: denied should be %d", strna(cases[i].code), cases[i].denied);
        }
}

static void test_outcome_to_string(void **state) {
        assert_string_equal(aws_call_outcome_to_string(AWS_CALL_OK), "ok");
        assert_string_equal(aws_call_outcome_to_string(AWS_CALL_DENIED), "denied");
        assert_string_equal(aws_call_outcome_to_string(AWS_CALL_FAILED), "failed");
        assert_null(aws_call_outcome_to_string(_AWS_CALL_OUTCOME_MAX));
        assert_null(aws_call_outcome_to_string(_AWS_CALL_OUTCOME_INVALID));
}

static void test_new(void **state) {
        sd_event *e = NULL;
        AwsQuery *q = NULL;
        AwsCredentials cred = { .access_key = (char *) "AKIDEXAMPLE", .secret_key = (char *) "s" };

        assert_int_equal(sd_event_new(&e), 0);
        assert_int_equal(aws_query_new(e, NULL, NULL, "eu-west-3", "elasticloadbalancing", "elasticloadbalancing", &q),
                         0);
        assert_string_equal(aws_query_endpoint(q), "https://elasticloadbalancing.eu-west-3.amazonaws.com/");
        assert_string_equal(aws_query_service(q), "elasticloadbalancing");
        assert_false(aws_query_busy(q));
        assert_null(aws_query_last_detail(q));
        /* a request without its parts never starts */
        assert_int_equal(aws_query_start(q, &cred, &(AwsQueryRequest) { .action = "X" }), -EINVAL);
        assert_int_equal(aws_query_start(q, NULL, &(AwsQueryRequest) { .action = "X", .body = "Action=X" }), -EINVAL);
        assert_false(aws_query_busy(q));
        q = aws_query_free(q);
        assert_int_equal(aws_query_new(e, NULL, NULL, "", "ec2", "ec2", &q), -EINVAL);
        assert_int_equal(aws_query_new(e, NULL, NULL, "us-east-1", NULL, "ec2", &q), -EINVAL);
        assert_null(q);
        assert_null(aws_query_free(NULL));
        aws_query_cancel(NULL);
        assert_false(aws_query_busy(NULL));
        sd_event_unref(e);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse_query_error),
                cmocka_unit_test(test_parse_ec2_error),
                cmocka_unit_test(test_parse_success),
                cmocka_unit_test(test_parse_check_root_error),
                cmocka_unit_test(test_parse_limits),
                cmocka_unit_test(test_walk),
                cmocka_unit_test(test_copy_text),
                cmocka_unit_test(test_long_text_kept_whole_characters),
                cmocka_unit_test(test_body),
                cmocka_unit_test(test_retryable),
                cmocka_unit_test(test_outcome_to_string),
                cmocka_unit_test(test_new),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
