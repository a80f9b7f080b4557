/* The Elastic Load Balancing v2 client: the form bodies (ARN and instance
 * id checked), DescribeTargetHealth answers with several members, Reason
 * and Description, the empty Register/Deregister results, the
 * ErrorResponse shapes AWS documents (TargetGroupNotFound, InvalidTarget,
 * Throttling, AccessDenied), and whole calls against queryserver.c:
 * SigV4 for "elasticloadbalancing", throttling retried then answered, a
 * denial and a missing group never retried, a lost answer "uncertain".
 * Fixtures: tests/unit/data/elbv2/. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "elbv2.h"
#include "http.h"
#include "queryserver.h"
#include "testutil.h"

#define FIXTURES SOURCE_ROOT "/tests/unit/data/elbv2/"
#define ARN "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef"
#define ARN_ENCODED                                                                                                   \
        "arn%3Aaws%3Aelasticloadbalancing%3Aus-east-1%3A123456789012%3Atargetgroup%2Fweb%2F0123456789abcdef"
#define ID "i-0123456789abcdef0"

static char *fixture_text(const char *name) {
        char path[512], *buf, *s;
        size_t len = 0;

        snprintf(path, sizeof path, FIXTURES "%s", name);
        buf = read_fixture(path, &len);
        assert_non_null(buf);
        s = strndup(buf, len);
        free(buf);
        assert_non_null(s);
        return s;
}

/* A fixture's state for (id, port), or the error's code. */
static int health(const char *name, const char *id, unsigned port, TargetHealthState *ret_state, char *reason,
                  size_t size, char **ret_error) {
        char path[512], *xml;
        size_t len = 0;
        int k;

        snprintf(path, sizeof path, FIXTURES "%s", name);
        xml = read_fixture(path, &len);
        assert_non_null(xml);
        k = elbv2_parse_target_health(xml, len, id, port, ret_state, reason, size, ret_error);
        free(xml);
        return k;
}

/* --- pure ---------------------------------------------------------------- */

static void test_state_names(void **state) {
        static const char *const aws[] = { "initial", "healthy", "unhealthy", "unused", "draining", "unavailable",
                                           "unhealthy.draining" };

        for (size_t i = 0; i < ELEMENTSOF(aws); i++) {
                TargetHealthState s = target_health_state_from_string(aws[i]);
                assert_true(s >= 0);
                assert_string_equal(target_health_state_to_string(s), aws[i]);
        }
        assert_string_equal(target_health_state_to_string(TARGET_HEALTH_ABSENT), "absent");
        assert_string_equal(target_health_state_to_string(TARGET_HEALTH_UNHEALTHY_DRAINING), "unhealthy.draining");
        assert_int_equal(target_health_state_from_string("absent"), _TARGET_HEALTH_INVALID);
        assert_int_equal(target_health_state_from_string("Healthy"), _TARGET_HEALTH_INVALID);
        assert_int_equal(target_health_state_from_string(NULL), _TARGET_HEALTH_INVALID);
        assert_null(target_health_state_to_string(_TARGET_HEALTH_MAX));
        assert_null(target_health_state_to_string(_TARGET_HEALTH_INVALID));
}

static void test_body(void **state) {
        char *b = NULL;

        assert_int_equal(elbv2_targets_body("DeregisterTargets", ARN, ID, 0, &b), 0);
        assert_string_equal(b, "Action=DeregisterTargets&Version=2015-12-01&TargetGroupArn=" ARN_ENCODED
                               "&Targets.member.1.Id=" ID);
        free(b);
        assert_int_equal(elbv2_targets_body("RegisterTargets", ARN, ID, 8080, &b), 0);
        assert_string_equal(b, "Action=RegisterTargets&Version=2015-12-01&TargetGroupArn=" ARN_ENCODED
                               "&Targets.member.1.Id=" ID "&Targets.member.1.Port=8080");
        free(b);
        assert_int_equal(elbv2_targets_body("DescribeTargetHealth", ARN, "i-1234abcd", 65535, &b), 0);
        assert_non_null(strstr(b, "Action=DescribeTargetHealth&"));
        assert_non_null(strstr(b, "&Targets.member.1.Port=65535"));
        free(b);

        b = NULL;
        assert_int_equal(elbv2_targets_body("DeleteTargetGroup", ARN, ID, 0, &b), -EINVAL);
        assert_int_equal(elbv2_targets_body(NULL, ARN, ID, 0, &b), -EINVAL);
        assert_int_equal(elbv2_targets_body("RegisterTargets", ARN, ID, 65536, &b), -EINVAL);
        assert_int_equal(elbv2_targets_body("RegisterTargets", ARN, "i-0123456789ABCDEF0", 0, &b), -EINVAL);
        assert_int_equal(elbv2_targets_body("RegisterTargets", ARN, "127.0.0.3", 0, &b), -EINVAL);
        assert_int_equal(elbv2_targets_body("RegisterTargets", ARN, NULL, 0, &b), -EINVAL);
        {
                static const char *const bad_arns[] = {
                        "",
                        "web",
                        /* a load balancer, not a target group */
                        "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/web/0123456789abcdef",
                        "arn:aws:ec2:us-east-1:123456789012:targetgroup/web/0123456789abcdef",
                        "arn:aws:elasticloadbalancing:us-east1:123456789012:targetgroup/web/0123456789abcdef",
                        "arn:aws:elasticloadbalancing:us-east-1:12345678901:targetgroup/web/0123456789abcdef",
                        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789ABCDEF",
                        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcde",
                        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/-web/0123456789abcdef",
                        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/we_b/0123456789abcdef",
                        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup//0123456789abcdef",
                        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef&x=1",
                        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef:80",
                        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/"
                        "a23456789012345678901234567890123/0123456789abcdef",
                };
                for (size_t i = 0; i < ELEMENTSOF(bad_arns); i++)
                        if (elbv2_targets_body("DeregisterTargets", bad_arns[i], ID, 0, &b) != -EINVAL)
                                fail_msg("accepted %s", bad_arns[i]);
        }
        assert_null(b);
}

static void test_parse_several_members(void **state) {
        TargetHealthState s;
        char reason[64];

        /* the instance on port 80 drains, on 8080 it was never registered */
        assert_int_equal(health("target_health_several.xml", ID, 80, &s, reason, sizeof reason, NULL), 0);
        assert_int_equal(s, TARGET_HEALTH_DRAINING);
        assert_string_equal(reason, "Target.DeregistrationInProgress");
        assert_int_equal(health("target_health_several.xml", ID, 8080, &s, reason, sizeof reason, NULL), 0);
        assert_int_equal(s, TARGET_HEALTH_UNUSED);
        assert_string_equal(reason, "Target.NotRegistered");
        /* port 0: the first member with the id */
        assert_int_equal(health("target_health_several.xml", ID, 0, &s, reason, sizeof reason, NULL), 0);
        assert_int_equal(s, TARGET_HEALTH_DRAINING);
        /* healthy: no Reason */
        assert_int_equal(health("target_health_several.xml", "i-0f76fade435676abd", 80, &s, reason, sizeof reason,
                                NULL),
                         0);
        assert_int_equal(s, TARGET_HEALTH_HEALTHY);
        assert_string_equal(reason, "");
        assert_int_equal(health("target_health_several.xml", "i-1234abcd", 80, &s, reason, sizeof reason, NULL), 0);
        assert_int_equal(s, TARGET_HEALTH_UNHEALTHY);
        assert_string_equal(reason, "Target.ResponseCodeMismatch");
        /* not in the answer: another port, another instance */
        assert_int_equal(health("target_health_several.xml", ID, 81, &s, reason, sizeof reason, NULL), 0);
        assert_int_equal(s, TARGET_HEALTH_ABSENT);
        assert_string_equal(reason, "");
        assert_int_equal(health("target_health_several.xml", "i-0123456789abcdef1", 0, &s, NULL, 0, NULL), 0);
        assert_int_equal(s, TARGET_HEALTH_ABSENT);
        /* a short reason buffer: cut, terminated */
        assert_int_equal(health("target_health_several.xml", ID, 80, &s, reason, 7, NULL), 0);
        assert_string_equal(reason, "Target");
}

static void test_parse_initial_and_empty(void **state) {
        TargetHealthState s = TARGET_HEALTH_HEALTHY;
        char reason[64];

        assert_int_equal(health("target_health_initial.xml", ID, 80, &s, reason, sizeof reason, NULL), 0);
        assert_int_equal(s, TARGET_HEALTH_INITIAL);
        assert_string_equal(reason, "Elb.InitialHealthChecking");
        assert_int_equal(health("target_health_empty.xml", ID, 80, &s, reason, sizeof reason, NULL), 0);
        assert_int_equal(s, TARGET_HEALTH_ABSENT);
}

static void test_parse_refused(void **state) {
        static const char *const names[] = {
                "target_health_unknown_state.xml", "target_health_no_state.xml", "error_target_group_not_found.xml",
                "error_throttling.xml", "deregister_targets.xml",
        };
        static const char *const why[] = { "resting", "State", "TargetGroupNotFound", "Throttling",
                                           "DescribeTargetHealthResponse" };

        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                TargetHealthState s = TARGET_HEALTH_INITIAL;
                char reason[16] = "untouched", *error = NULL;

                assert_int_equal(health(names[i], ID, 80, &s, reason, sizeof reason, &error), -EBADMSG);
                assert_non_null(error);
                if (!strstr(error, why[i]))
                        fail_msg("%s: \"%s\" does not say %s", names[i], error, why[i]);
                free(error);
                /* outputs untouched */
                assert_int_equal(s, TARGET_HEALTH_INITIAL);
                assert_string_equal(reason, "untouched");
        }
}

static void test_parse_empty_results(void **state) {
        char *xml, *error = NULL;

        xml = fixture_text("deregister_targets.xml");
        assert_int_equal(elbv2_parse_empty_result(xml, strlen(xml), "DeregisterTargets", NULL), 0);
        assert_int_equal(elbv2_parse_empty_result(xml, strlen(xml), "RegisterTargets", &error), -EBADMSG);
        assert_non_null(strstr(error, "RegisterTargetsResponse"));
        free(error);
        free(xml);
        xml = fixture_text("register_targets.xml");
        assert_int_equal(elbv2_parse_empty_result(xml, strlen(xml), "RegisterTargets", NULL), 0);
        free(xml);
        xml = fixture_text("error_invalid_target.xml");
        assert_int_equal(elbv2_parse_empty_result(xml, strlen(xml), "RegisterTargets", NULL), -EBADMSG);
        free(xml);
}

static void test_parse_errors(void **state) {
        static const struct {
                const char *name, *code, *message_start;
                bool retry, denied;
        } cases[] = {
                { "error_target_group_not_found.xml", "TargetGroupNotFound", "Target groups 'arn:aws:", false, false },
                { "error_invalid_target.xml", "InvalidTarget", "The following targets", false, false },
                { "error_throttling.xml", "Throttling", "Rate exceeded", true, false },
                { "error_access_denied.xml", "AccessDenied", "User: arn:aws:sts::", false, true },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char *xml = fixture_text(cases[i].name);
                AwsQueryAnswer a;

                assert_int_equal(aws_query_parse(xml, strlen(xml), NULL, NULL, &a, NULL), 0);
                assert_true(a.is_error);
                assert_string_equal(a.type, "Sender");
                assert_string_equal(a.code, cases[i].code);
                assert_true(strncmp(a.message, cases[i].message_start, strlen(cases[i].message_start)) == 0);
                assert_true(strlen(a.request_id) > 0);
                /* the status ELB sends them with: 400, and 403 for AccessDenied */
                assert_int_equal(aws_query_error_is_retryable(a.code, cases[i].denied ? 403 : 400), cases[i].retry);
                assert_int_equal(aws_query_error_is_denied(a.code), cases[i].denied);
                free(xml);
        }
}

/* --- the client against queryserver.c ----------------------------------- */

typedef struct Got {
        bool done;
        unsigned calls;
        AwsCallResult r;
        TargetHealthState state;
        char reason[64];
        bool reason_null;
} Got;

static void on_done(const AwsCallResult *r, void *userdata) {
        Got *g = userdata;

        g->done = true;
        g->calls++;
        g->r = *r;
}

static void on_health(const AwsCallResult *r, TargetHealthState state, const char *reason, void *userdata) {
        Got *g = userdata;

        g->done = true;
        g->calls++;
        g->r = *r;
        g->state = state;
        g->reason_null = !reason;
        snprintf(g->reason, sizeof g->reason, "%s", reason ? reason : "");
}

static const AwsCredentials creds = {
        .access_key = (char *) "AKIDEXAMPLE",
        .secret_key = (char *) "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        .session_token = (char *) "session-token-1",
};

typedef struct Fixture {
        sd_event *e;
        Http *http;
        QueryServer *server;
        Elbv2 *c;
} Fixture;

static void fixture_up(Fixture *f, const QueryReply *script, size_t n) {
        /* loopback only, whatever the environment says */
        unsetenv("http_proxy");
        unsetenv("HTTP_PROXY");
        unsetenv("all_proxy");
        unsetenv("ALL_PROXY");
        assert_int_equal(sd_event_new(&f->e), 0);
        assert_int_equal(http_new(f->e, &f->http), 0);
        assert_int_equal(query_server_new(f->e, script, n, &f->server), 0);
        assert_int_equal(elbv2_new(f->e, f->http, query_server_url(f->server), "us-east-1", &f->c), 0);
        elbv2_set_timing(f->c, USEC_PER_MSEC, 4 * USEC_PER_MSEC, 5 * USEC_PER_SEC);
}

static void fixture_down(Fixture *f) {
        f->c = elbv2_free(f->c);
        f->server = query_server_free(f->server);
        f->http = http_free(f->http);
        f->e = sd_event_unref(f->e);
}

static void test_call_signed_and_throttled_then_answered(void **state) {
        char *throttled = fixture_text("error_throttling.xml"), *ok = fixture_text("target_health_several.xml");
        const QueryReply script[] = { QUERY_REPLY(400, throttled), QUERY_REPLY(400, throttled), QUERY_REPLY(200, ok) };
        Fixture f = {};
        Got g = {};
        const char *req;

        fixture_up(&f, script, ELEMENTSOF(script));
        assert_int_equal(elbv2_target_health(f.c, &creds, ARN, ID, 80, on_health, &g), 0);
        assert_true(elbv2_busy(f.c));
        /* one call at a time */
        assert_int_equal(elbv2_deregister_target(f.c, &creds, ARN, ID, 80, on_done, &g), -EBUSY);
        assert_true(query_server_run_until(f.e, &g.done, 10 * USEC_PER_SEC));
        assert_int_equal(g.calls, 1);
        assert_false(elbv2_busy(f.c));
        assert_int_equal(g.r.outcome, AWS_CALL_OK);
        assert_int_equal(g.r.attempts, 3);
        assert_int_equal(g.r.status, 200);
        assert_string_equal(g.r.code, "");
        assert_string_equal(g.r.request_id, "c534f810-f389-11e5-9192-3fff33344cfa");
        assert_int_equal(g.state, TARGET_HEALTH_DRAINING);
        assert_string_equal(g.reason, "Target.DeregistrationInProgress");
        assert_string_equal(g.r.detail, "elasticloadbalancing DescribeTargetHealth: done, request "
                                        "c534f810-f389-11e5-9192-3fff33344cfa (HTTP 200, 3 attempts)");

        /* what went out: a signed form POST, the session token with it */
        assert_int_equal(query_server_n_requests(f.server), 3);
        req = query_server_request(f.server, 0);
        assert_true(strncmp(req, "POST / HTTP/1.1\r\n", 17) == 0);
        assert_non_null(strcasestr(req, "\r\nContent-Type: application/x-www-form-urlencoded; charset=utf-8\r\n"));
        assert_non_null(strcasestr(req, "\r\nX-Amz-Security-Token: session-token-1\r\n"));
        assert_non_null(strstr(req, "Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"));
        assert_non_null(strstr(req, "/us-east-1/elasticloadbalancing/aws4_request, SignedHeaders="));
        assert_null(strstr(req, "wJalrXUtnFEMI"));
        assert_string_equal(query_server_body(f.server, 2), "Action=DescribeTargetHealth&Version=2015-12-01&TargetGroupArn="
                                                             ARN_ENCODED "&Targets.member.1.Id=" ID
                                                             "&Targets.member.1.Port=80");
        fixture_down(&f);
        free(throttled);
        free(ok);
}

static void test_call_denied_not_retried(void **state) {
        char *denied = fixture_text("error_access_denied.xml");
        const QueryReply script[] = { QUERY_REPLY(403, denied) };
        Fixture f = {};
        Got g = {};

        fixture_up(&f, script, ELEMENTSOF(script));
        assert_int_equal(elbv2_deregister_target(f.c, &creds, ARN, ID, 0, on_done, &g), 0);
        assert_true(query_server_run_until(f.e, &g.done, 10 * USEC_PER_SEC));
        assert_int_equal(g.r.outcome, AWS_CALL_DENIED);
        assert_int_equal(g.r.attempts, 1);
        assert_false(g.r.uncertain);
        assert_string_equal(g.r.code, "AccessDenied");
        assert_string_equal(g.r.request_id, "6b5a4c3d-1f36-11e6-d1e2-f3a4b5c6d7e8");
        assert_true(strncmp(g.r.detail, "elasticloadbalancing DeregisterTargets: AccessDenied: User: arn:aws:sts::", 72) ==
                    0);
        assert_non_null(strstr(g.r.detail, "(HTTP 403, 1 attempt); grant elasticloadbalancing:DeregisterTargets"));
        assert_null(strstr(g.r.detail, "AKIDEXAMPLE"));
        assert_int_equal(query_server_n_requests(f.server), 1);
        fixture_down(&f);
        free(denied);
}

static void test_call_group_not_found(void **state) {
        char *missing = fixture_text("error_target_group_not_found.xml");
        const QueryReply script[] = { QUERY_REPLY(400, missing) };
        Fixture f = {};
        Got g = {};

        fixture_up(&f, script, ELEMENTSOF(script));
        assert_int_equal(elbv2_target_health(f.c, &creds, ARN, ID, 0, on_health, &g), 0);
        assert_true(query_server_run_until(f.e, &g.done, 10 * USEC_PER_SEC));
        assert_int_equal(g.r.outcome, AWS_CALL_FAILED);
        assert_int_equal(g.r.attempts, 1);
        assert_string_equal(g.r.code, "TargetGroupNotFound");
        assert_int_equal(g.state, TARGET_HEALTH_ABSENT);
        assert_true(g.reason_null);
        assert_true(strncmp(g.r.detail, "elasticloadbalancing DescribeTargetHealth: TargetGroupNotFound: Target groups",
                            77) == 0);
        assert_non_null(strstr(g.r.detail, "(HTTP 400, 1 attempt)"));
        fixture_down(&f);
        free(missing);
}

static void test_call_5xx_until_given_up(void **state) {
        const QueryReply script[] = { QUERY_REPLY(503, ""), QUERY_REPLY(502, "<html>bad gateway</html>"), QUERY_REPLY(500, ""), QUERY_REPLY(503, ""),
                                      QUERY_REPLY(503, ""), QUERY_REPLY(200, "never asked for") };
        Fixture f = {};
        Got g = {};

        fixture_up(&f, script, ELEMENTSOF(script));
        assert_int_equal(elbv2_target_health(f.c, &creds, ARN, ID, 0, on_health, &g), 0);
        assert_true(query_server_run_until(f.e, &g.done, 10 * USEC_PER_SEC));
        assert_int_equal(g.r.outcome, AWS_CALL_FAILED);
        assert_int_equal(g.r.attempts, AWS_QUERY_ATTEMPTS);
        assert_int_equal(query_server_n_requests(f.server), AWS_QUERY_ATTEMPTS);
        assert_false(g.r.uncertain); /* a describe changes nothing */
        assert_int_equal(g.r.status, 503);
        assert_non_null(strstr(g.r.detail, "giving up after retries (HTTP 503, 5 attempts)"));
        fixture_down(&f);
}

static void test_call_lost_answers_uncertain(void **state) {
        /* a deregistration that went out and was never answered may have
         * been done: the caller must hear so */
        const QueryReply script[] = { QUERY_DROP, QUERY_DROP, QUERY_DROP, QUERY_DROP,
                                      QUERY_DROP };
        char *ok = fixture_text("register_targets.xml");
        const QueryReply answered[] = { QUERY_DROP, QUERY_REPLY(200, ok) };
        Fixture f = {};
        Got g = {};

        fixture_up(&f, script, ELEMENTSOF(script));
        assert_int_equal(elbv2_deregister_target(f.c, &creds, ARN, ID, 0, on_done, &g), 0);
        assert_true(query_server_run_until(f.e, &g.done, 10 * USEC_PER_SEC));
        assert_int_equal(g.r.outcome, AWS_CALL_FAILED);
        assert_true(g.r.uncertain);
        assert_int_equal(g.r.attempts, AWS_QUERY_ATTEMPTS);
        assert_non_null(strstr(g.r.detail, "attempt 1 was sent and never answered"));
        fixture_down(&f);

        /* answered in the end: done, not uncertain */
        g = (Got) {};
        fixture_up(&f, answered, ELEMENTSOF(answered));
        assert_int_equal(elbv2_register_target(f.c, &creds, ARN, ID, 0, on_done, &g), 0);
        assert_true(query_server_run_until(f.e, &g.done, 10 * USEC_PER_SEC));
        assert_int_equal(g.r.outcome, AWS_CALL_OK);
        assert_false(g.r.uncertain);
        assert_int_equal(g.r.attempts, 2);
        fixture_down(&f);
        free(ok);
}

static void test_call_unreadable_200_retried(void **state) {
        /* a 200 that is not the answer asked for is read as a failed attempt */
        char *wrong = fixture_text("deregister_targets.xml"), *ok = fixture_text("target_health_initial.xml");
        const QueryReply script[] = { QUERY_REPLY(200, wrong), QUERY_REPLY(200, "<DescribeTargetHealthResponse>"), QUERY_REPLY(200, ok) };
        Fixture f = {};
        Got g = {};

        fixture_up(&f, script, ELEMENTSOF(script));
        assert_int_equal(elbv2_target_health(f.c, &creds, ARN, ID, 80, on_health, &g), 0);
        assert_true(query_server_run_until(f.e, &g.done, 10 * USEC_PER_SEC));
        assert_int_equal(g.r.outcome, AWS_CALL_OK);
        assert_int_equal(g.r.attempts, 3);
        assert_int_equal(g.state, TARGET_HEALTH_INITIAL);
        assert_string_equal(g.reason, "Elb.InitialHealthChecking");
        fixture_down(&f);
        free(wrong);
        free(ok);
}

static void test_call_cancel_and_bad_arguments(void **state) {
        const QueryReply script[] = { QUERY_DROP };
        Fixture f = {};
        Got g = {};

        fixture_up(&f, script, ELEMENTSOF(script));
        assert_string_equal(elbv2_endpoint(f.c), query_server_url(f.server));
        assert_int_equal(elbv2_register_target(f.c, &creds, "arn:nope", ID, 0, on_done, &g), -EINVAL);
        assert_int_equal(elbv2_register_target(f.c, &creds, ARN, "i-nope", 0, on_done, &g), -EINVAL);
        assert_int_equal(elbv2_register_target(f.c, &creds, ARN, ID, 0, NULL, &g), -EINVAL);
        assert_int_equal(elbv2_target_health(f.c, &creds, ARN, ID, 0, NULL, &g), -EINVAL);
        assert_int_equal(elbv2_register_target(f.c, &(AwsCredentials) {}, ARN, ID, 0, on_done, &g), -EINVAL);
        assert_false(elbv2_busy(f.c));
        assert_int_equal(elbv2_register_target(f.c, &creds, ARN, ID, 0, on_done, &g), 0);
        elbv2_cancel(f.c);
        assert_false(elbv2_busy(f.c));
        /* a cancelled call never answers */
        for (int i = 0; i < 20; i++)
                assert_true(sd_event_run(f.e, 10 * USEC_PER_MSEC) >= 0);
        assert_int_equal(g.calls, 0);
        fixture_down(&f);

        assert_int_equal(elbv2_new(NULL, NULL, NULL, "", &f.c), -EINVAL);
        assert_int_equal(sd_event_new(&f.e), 0);
        assert_int_equal(elbv2_new(f.e, NULL, NULL, "eu-west-3", &f.c), 0);
        assert_string_equal(elbv2_endpoint(f.c), "https://elasticloadbalancing.eu-west-3.amazonaws.com/");
        f.c = elbv2_free(f.c);
        f.e = sd_event_unref(f.e);
        assert_null(elbv2_free(NULL));
        assert_false(elbv2_busy(NULL));
        elbv2_cancel(NULL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_state_names),
                cmocka_unit_test(test_body),
                cmocka_unit_test(test_parse_several_members),
                cmocka_unit_test(test_parse_initial_and_empty),
                cmocka_unit_test(test_parse_refused),
                cmocka_unit_test(test_parse_empty_results),
                cmocka_unit_test(test_parse_errors),
                cmocka_unit_test(test_call_signed_and_throttled_then_answered),
                cmocka_unit_test(test_call_denied_not_retried),
                cmocka_unit_test(test_call_group_not_found),
                cmocka_unit_test(test_call_5xx_until_given_up),
                cmocka_unit_test(test_call_lost_answers_uncertain),
                cmocka_unit_test(test_call_unreadable_200_retried),
                cmocka_unit_test(test_call_cancel_and_bad_arguments),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
