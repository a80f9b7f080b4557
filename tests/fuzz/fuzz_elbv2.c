/* Elastic Load Balancing v2 answers: elbv2_parse_target_health() and
 * elbv2_parse_empty_result() on the body of a Query API call (awsquery.c's
 * walker under them), and the form body built from a target group ARN. */
#include "elbv2.h"
#include "fuzz.h"

#include "awsid.h"

#define ID "i-0123456789abcdef0"

/* Every path the walker hands on is names joined by '/', as deep as it says. */
static void check_walk(AwsXmlEvent ev, const char *path, unsigned depth, const char *text, void *userdata) {
        unsigned slashes = 0;

        for (const char *p = path; *p; p++)
                slashes += *p == '/';
        FUZZ_CHECK(depth >= 1 && depth <= AWS_QUERY_DEPTH_MAX && slashes + 1 == depth);
        FUZZ_CHECK(path[0] && path[strlen(path) - 1] != '/' && !strstr(path, "//"));
        FUZZ_CHECK((ev == AWS_XML_OPEN) == !text);
        if (text)
                FUZZ_CHECK(fuzz_field_text_ok(text, AWS_QUERY_TEXT_MAX + 1));
}

static void check_error(int k, char *error) {
        FUZZ_CHECK(k == -EBADMSG || k == -ENOMEM);
        FUZZ_CHECK(k != -EBADMSG || (error && !strchr(error, '\n')));
        free(error);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const unsigned ports[] = { 0, 80 };
        const char *xml = (const char *) data;
        AwsQueryAnswer a;
        int k;

        if (size > AWS_QUERY_BODY_MAX) /* awsquery.c keeps this much of an answer */
                return 0;
        for (size_t i = 0; i < ELEMENTSOF(ports); i++) {
                TargetHealthState s = _TARGET_HEALTH_INVALID;
                char reason[32], *error = NULL;

                memset(reason, 'x', sizeof reason);
                k = elbv2_parse_target_health(xml, size, ID, ports[i], &s, reason, sizeof reason, &error);
                if (k < 0) {
                        check_error(k, error);
                        FUZZ_CHECK(s == _TARGET_HEALTH_INVALID);
                        continue;
                }
                FUZZ_CHECK(!error);
                FUZZ_CHECK(s >= 0 && s < _TARGET_HEALTH_MAX && target_health_state_to_string(s));
                FUZZ_CHECK(fuzz_field_text_ok(reason, sizeof reason));
                FUZZ_CHECK(s != TARGET_HEALTH_ABSENT || !reason[0]);
        }
        for (int i = 0; i < 2; i++) {
                char *error = NULL;

                k = elbv2_parse_empty_result(xml, size, i ? "RegisterTargets" : "DeregisterTargets", &error);
                if (k < 0)
                        check_error(k, error);
                else
                        FUZZ_CHECK(!error);
        }
        {
                char *error = NULL;

                k = aws_query_parse(xml, size, check_walk, NULL, &a, &error);
                if (k < 0)
                        check_error(k, error);
                else {
                        FUZZ_CHECK(fuzz_field_text_ok(a.code, sizeof a.code));
                        FUZZ_CHECK(fuzz_field_text_ok(a.message, sizeof a.message));
                        FUZZ_CHECK(fuzz_field_text_ok(a.request_id, sizeof a.request_id));
                        FUZZ_CHECK(fuzz_field_text_ok(a.type, sizeof a.type));
                        FUZZ_CHECK(!a.is_error || a.code[0]);
                        FUZZ_CHECK(a.is_error || !a.code[0]);
                }
        }
        /* the same bytes as a target group ARN: accepted only in its form,
         * and then sent encoded */
        if (size < 300) {
                _cleanup_(freep) char *arn = fuzz_strndup(data, size), *body = NULL;

                k = elbv2_targets_body("DeregisterTargets", arn, ID, 80, &body);
                FUZZ_CHECK(k == 0 || k == -EINVAL || k == -ENOMEM);
                FUZZ_CHECK((k == 0) == aws_target_group_arn_parse(arn, NULL, 0)); /* to the first NUL */
                if (k == 0)
                        FUZZ_CHECK(fuzz_form_body_ok(body) && !strchr(body, ':') && !strchr(body, '/'));
        }
        return 0;
}
