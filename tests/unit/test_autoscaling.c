/* The Auto Scaling client: the form bodies (EnterStandby with
 * ShouldDecrementDesiredCapacity=true), DescribeAutoScalingInstances with
 * no member, one, and ours among others, the Activities of EnterStandby /
 * ExitStandby, and whole calls against queryserver.c: SigV4 for
 * "autoscaling", a wrong lifecycle state (ValidationError) failed at once,
 * throttling retried. Fixtures: tests/unit/data/autoscaling/. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "autoscaling.h"
#include "http.h"
#include "queryserver.h"
#include "testutil.h"

#define FIXTURES SOURCE_ROOT "/tests/unit/data/autoscaling/"
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

/* --- pure ---------------------------------------------------------------- */

static void test_bodies(void **state) {
        char *b = NULL;

        assert_int_equal(autoscaling_describe_body(ID, &b), 0);
        assert_string_equal(b, "Action=DescribeAutoScalingInstances&Version=2011-01-01&InstanceIds.member.1=" ID);
        free(b);
        assert_int_equal(autoscaling_standby_body(true, "web-asg", ID, &b), 0);
        assert_string_equal(b, "Action=EnterStandby&Version=2011-01-01&AutoScalingGroupName=web-asg&InstanceIds.member.1=" ID
                               "&ShouldDecrementDesiredCapacity=true");
        free(b);
        /* a group name may hold anything printable: encoded */
        assert_int_equal(autoscaling_standby_body(false, "web asg & friends", ID, &b), 0);
        assert_string_equal(b, "Action=ExitStandby&Version=2011-01-01&AutoScalingGroupName=web%20asg%20%26%20friends"
                               "&InstanceIds.member.1=" ID);
        free(b);

        b = NULL;
        assert_int_equal(autoscaling_describe_body("i-XYZ", &b), -EINVAL);
        assert_int_equal(autoscaling_describe_body(NULL, &b), -EINVAL);
        assert_int_equal(autoscaling_standby_body(true, "", ID, &b), -EINVAL);
        assert_int_equal(autoscaling_standby_body(true, NULL, ID, &b), -EINVAL);
        assert_int_equal(autoscaling_standby_body(true, "a\nb", ID, &b), -EINVAL);
        assert_int_equal(autoscaling_standby_body(true, "web", "web", &b), -EINVAL);
        assert_null(b);
        {
                char name[300];
                memset(name, 'g', sizeof name - 1);
                name[sizeof name - 1] = '\0';
                assert_false(autoscaling_group_name_is_valid(name));
                name[255] = '\0';
                assert_true(autoscaling_group_name_is_valid(name));
        }
}

static int parse_instance(const char *name, const char *id, AsgInstance *ret, char **ret_error) {
        char *xml = fixture_text(name);
        int k = autoscaling_parse_instance(xml, strlen(xml), id, ret, ret_error);

        free(xml);
        return k;
}

static void test_parse_instance(void **state) {
        AsgInstance i, before;

        assert_int_equal(parse_instance("describe_instances_one.xml", ID, &i, NULL), 1);
        assert_string_equal(i.group, "web-asg");
        assert_string_equal(i.lifecycle_state, "InService");
        assert_string_equal(i.health_status, "HEALTHY");
        assert_true(i.protected_from_scale_in);

        /* ours is the second member; the group name unescaped */
        assert_int_equal(parse_instance("describe_instances_pending_wait.xml", ID, &i, NULL), 1);
        assert_string_equal(i.group, "web asg & friends");
        assert_string_equal(i.lifecycle_state, "Pending:Wait");
        assert_string_equal(i.health_status, "UNHEALTHY");
        assert_false(i.protected_from_scale_in);
        assert_int_equal(parse_instance("describe_instances_pending_wait.xml", "i-1234abcd", &i, NULL), 1);
        assert_string_equal(i.group, "other");

        /* in no group: 0, the output untouched */
        memset(&i, 0x5a, sizeof i);
        before = i;
        assert_int_equal(parse_instance("describe_instances_empty.xml", ID, &i, NULL), 0);
        assert_int_equal(parse_instance("describe_instances_one.xml", "i-1234abcd", &i, NULL), 0);
        assert_memory_equal(&i, &before, sizeof i);
}

static void test_parse_instance_refused(void **state) {
        static const char *const docs[] = {
                /* our member without its group or state */
                "<DescribeAutoScalingInstancesResponse><DescribeAutoScalingInstancesResult><AutoScalingInstances>"
                "<member><InstanceId>" ID "</InstanceId><LifecycleState>InService</LifecycleState></member>"
                "</AutoScalingInstances></DescribeAutoScalingInstancesResult><ResponseMetadata><RequestId>r"
                "</RequestId></ResponseMetadata></DescribeAutoScalingInstancesResponse>",
                "<DescribeAutoScalingInstancesResponse><DescribeAutoScalingInstancesResult><AutoScalingInstances>"
                "<member><InstanceId>" ID "</InstanceId><AutoScalingGroupName>g</AutoScalingGroupName></member>"
                "</AutoScalingInstances></DescribeAutoScalingInstancesResult><ResponseMetadata><RequestId>r"
                "</RequestId></ResponseMetadata></DescribeAutoScalingInstancesResponse>",
                /* another answer */
                "<EnterStandbyResponse><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata>"
                "</EnterStandbyResponse>",
                "<ErrorResponse><Error><Code>ValidationError</Code></Error></ErrorResponse>",
                "<DescribeAutoScalingInstancesResponse>",
        };
        AsgInstance i;

        for (size_t k = 0; k < ELEMENTSOF(docs); k++) {
                char *error = NULL;

                if (autoscaling_parse_instance(docs[k], strlen(docs[k]), ID, &i, &error) != -EBADMSG)
                        fail_msg("accepted: %s", docs[k]);
                assert_non_null(error);
                free(error);
        }
        assert_int_equal(autoscaling_parse_instance(docs[0], strlen(docs[0]), "", &i, NULL), -EINVAL);
}

static void test_parse_standby(void **state) {
        char *enter = fixture_text("enter_standby.xml"), *exit_ = fixture_text("exit_standby.xml"),
             *invalid = fixture_text("error_validation.xml"), *error = NULL;
        AwsQueryAnswer a;

        assert_int_equal(autoscaling_parse_standby(enter, strlen(enter), true, NULL), 1);
        assert_int_equal(autoscaling_parse_standby(exit_, strlen(exit_), false, NULL), 1);
        assert_int_equal(autoscaling_parse_standby(enter, strlen(enter), false, &error), -EBADMSG);
        assert_non_null(strstr(error, "ExitStandbyResponse"));
        free(error);
        error = NULL;
        assert_int_equal(autoscaling_parse_standby(invalid, strlen(invalid), true, &error), -EBADMSG);
        assert_non_null(strstr(error, "ValidationError"));
        free(error);
        {
                static const char none[] = "<ExitStandbyResponse><ExitStandbyResult><Activities/></ExitStandbyResult>"
                                           "<ResponseMetadata><RequestId>r</RequestId></ResponseMetadata>"
                                           "</ExitStandbyResponse>";
                assert_int_equal(autoscaling_parse_standby(none, strlen(none), false, NULL), 0);
        }

        /* a wrong lifecycle state: Sender's ValidationError, neither retried nor a denial */
        assert_int_equal(aws_query_parse(invalid, strlen(invalid), NULL, NULL, &a, NULL), 0);
        assert_string_equal(a.code, "ValidationError");
        assert_string_equal(a.type, "Sender");
        assert_string_equal(a.message, "The instance " ID " is not in InService.");
        assert_false(aws_query_error_is_retryable(a.code, 400));
        assert_false(aws_query_error_is_denied(a.code));
        free(enter);
        free(exit_);
        free(invalid);
}

/* --- the client against queryserver.c ----------------------------------- */

typedef struct Got {
        bool done;
        unsigned calls;
        AwsCallResult r;
        bool found;
        AsgInstance i;
} Got;

static void on_done(const AwsCallResult *r, void *userdata) {
        Got *g = userdata;

        g->done = true;
        g->calls++;
        g->r = *r;
}

static void on_instance(const AwsCallResult *r, const AsgInstance *i, void *userdata) {
        Got *g = userdata;

        g->done = true;
        g->calls++;
        g->r = *r;
        g->found = i;
        if (i)
                g->i = *i;
}

static const AwsCredentials creds = {
        .access_key = (char *) "AKIDEXAMPLE",
        .secret_key = (char *) "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
};

typedef struct Fixture {
        sd_event *e;
        Http *http;
        QueryServer *server;
        AutoScaling *c;
} Fixture;

static void fixture_up(Fixture *f, const QueryReply *script, size_t n) {
        unsetenv("http_proxy");
        unsetenv("HTTP_PROXY");
        unsetenv("all_proxy");
        unsetenv("ALL_PROXY");
        assert_int_equal(sd_event_new(&f->e), 0);
        assert_int_equal(http_new(f->e, &f->http), 0);
        assert_int_equal(query_server_new(f->e, script, n, &f->server), 0);
        assert_int_equal(autoscaling_new(f->e, f->http, query_server_url(f->server), "us-east-1", &f->c), 0);
        autoscaling_set_timing(f->c, USEC_PER_MSEC, 4 * USEC_PER_MSEC, 5 * USEC_PER_SEC);
}

static void fixture_down(Fixture *f) {
        f->c = autoscaling_free(f->c);
        f->server = query_server_free(f->server);
        f->http = http_free(f->http);
        f->e = sd_event_unref(f->e);
}

static void test_call_describe(void **state) {
        char *one = fixture_text("describe_instances_one.xml"), *none = fixture_text("describe_instances_empty.xml");
        const QueryReply script[] = { QUERY_REPLY(400, "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>"
                                             "<Message>Rate exceeded</Message></Error><RequestId>t</RequestId>"
                                             "</ErrorResponse>"),
                                      QUERY_REPLY(200, one),
                                      QUERY_REPLY(200, none) };
        Fixture f = {};
        Got g = {};
        const char *req;

        fixture_up(&f, script, ELEMENTSOF(script));
        assert_int_equal(autoscaling_describe_instance(f.c, &creds, ID, on_instance, &g), 0);
        assert_int_equal(autoscaling_enter_standby(f.c, &creds, "web-asg", ID, on_done, &g), -EBUSY);
        assert_true(query_server_run_until(f.e, &g.done, 10 * USEC_PER_SEC));
        assert_int_equal(g.r.outcome, AWS_CALL_OK);
        assert_int_equal(g.r.attempts, 2);
        assert_true(g.found);
        assert_string_equal(g.i.group, "web-asg");
        assert_string_equal(g.i.lifecycle_state, "InService");
        req = query_server_request(f.server, 0);
        assert_non_null(strstr(req, "/us-east-1/autoscaling/aws4_request, SignedHeaders="));
        /* long-term keys: no token header */
        assert_null(strcasestr(req, "X-Amz-Security-Token"));
        assert_string_equal(query_server_body(f.server, 1),
                            "Action=DescribeAutoScalingInstances&Version=2011-01-01&InstanceIds.member.1=" ID);

        /* in no group */
        g = (Got) {};
        assert_int_equal(autoscaling_describe_instance(f.c, &creds, ID, on_instance, &g), 0);
        assert_true(query_server_run_until(f.e, &g.done, 10 * USEC_PER_SEC));
        assert_int_equal(g.r.outcome, AWS_CALL_OK);
        assert_false(g.found);
        fixture_down(&f);
        free(one);
        free(none);
}

static void test_call_standby(void **state) {
        char *enter = fixture_text("enter_standby.xml"), *exit_ = fixture_text("exit_standby.xml"),
             *invalid = fixture_text("error_validation.xml");
        const QueryReply script[] = { QUERY_REPLY(200, enter), QUERY_REPLY(400, invalid), QUERY_REPLY(200, exit_) };
        Fixture f = {};
        Got g = {};

        fixture_up(&f, script, ELEMENTSOF(script));
        assert_int_equal(autoscaling_enter_standby(f.c, &creds, "web-asg", ID, on_done, &g), 0);
        assert_true(query_server_run_until(f.e, &g.done, 10 * USEC_PER_SEC));
        assert_int_equal(g.r.outcome, AWS_CALL_OK);
        assert_string_equal(g.r.request_id, "7c6b5a4d-1f36-11e6-b1c2-d3e4f5a6b7c8");
        assert_string_equal(query_server_body(f.server, 0),
                            "Action=EnterStandby&Version=2011-01-01&AutoScalingGroupName=web-asg&InstanceIds.member.1=" ID
                            "&ShouldDecrementDesiredCapacity=true");

        /* already in standby: ValidationError, at once */
        g = (Got) {};
        assert_int_equal(autoscaling_enter_standby(f.c, &creds, "web-asg", ID, on_done, &g), 0);
        assert_true(query_server_run_until(f.e, &g.done, 10 * USEC_PER_SEC));
        assert_int_equal(g.r.outcome, AWS_CALL_FAILED);
        assert_int_equal(g.r.attempts, 1);
        assert_false(g.r.uncertain);
        assert_string_equal(g.r.code, "ValidationError");
        assert_string_equal(g.r.detail, "autoscaling EnterStandby: ValidationError: The instance " ID
                                        " is not in InService. (HTTP 400, 1 attempt)");

        g = (Got) {};
        assert_int_equal(autoscaling_exit_standby(f.c, &creds, "web-asg", ID, on_done, &g), 0);
        assert_true(query_server_run_until(f.e, &g.done, 10 * USEC_PER_SEC));
        assert_int_equal(g.r.outcome, AWS_CALL_OK);
        assert_int_equal(g.calls, 1);
        assert_int_equal(query_server_n_requests(f.server), 3);
        fixture_down(&f);
        free(enter);
        free(exit_);
        free(invalid);
}

static void test_new_and_arguments(void **state) {
        sd_event *e = NULL;
        AutoScaling *c = NULL;
        Got g = {};

        assert_int_equal(sd_event_new(&e), 0);
        assert_int_equal(autoscaling_new(e, NULL, NULL, "ap-southeast-2", &c), 0);
        assert_string_equal(autoscaling_endpoint(c), "https://autoscaling.ap-southeast-2.amazonaws.com/");
        assert_false(autoscaling_busy(c));
        assert_null(autoscaling_last_detail(c));
        assert_int_equal(autoscaling_enter_standby(c, &creds, "", ID, on_done, &g), -EINVAL);
        assert_int_equal(autoscaling_exit_standby(c, &creds, "g", "i-1", on_done, &g), -EINVAL);
        assert_int_equal(autoscaling_describe_instance(c, &creds, ID, NULL, &g), -EINVAL);
        assert_int_equal(autoscaling_enter_standby(c, NULL, "g", ID, on_done, &g), -EINVAL);
        assert_false(autoscaling_busy(c));
        c = autoscaling_free(c);
        assert_int_equal(autoscaling_new(e, NULL, NULL, NULL, &c), -EINVAL);
        assert_null(c);
        assert_null(autoscaling_free(NULL));
        autoscaling_cancel(NULL);
        sd_event_unref(e);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_bodies),
                cmocka_unit_test(test_parse_instance),
                cmocka_unit_test(test_parse_instance_refused),
                cmocka_unit_test(test_parse_standby),
                cmocka_unit_test(test_call_describe),
                cmocka_unit_test(test_call_standby),
                cmocka_unit_test(test_new_and_arguments),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
