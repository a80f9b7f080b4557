/* Auto Scaling answers: autoscaling_parse_instance() and
 * autoscaling_parse_standby() on the body of a Query API call, and the
 * form body built from a group name. */
#include "autoscaling.h"
#include "fuzz.h"

#define ID "i-0123456789abcdef0"

static void check_error(int k, char *error) {
        FUZZ_CHECK(k == -EBADMSG || k == -ENOMEM);
        FUZZ_CHECK(k != -EBADMSG || (error && !strchr(error, '\n')));
        free(error);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const char *xml = (const char *) data;
        AsgInstance i, before;
        char *error = NULL;
        int k;

        if (size > AWS_QUERY_BODY_MAX) /* awsquery.c keeps this much of an answer */
                return 0;
        memset(&i, 0x5a, sizeof i);
        before = i;
        k = autoscaling_parse_instance(xml, size, ID, &i, &error);
        if (k < 0)
                check_error(k, error);
        else {
                FUZZ_CHECK(!error && (k == 0 || k == 1));
                if (k == 0)
                        FUZZ_CHECK(memcmp(&i, &before, sizeof i) == 0);
                else {
                        /* a group and a state, as AWS wrote them, one line each */
                        FUZZ_CHECK(i.group[0] && i.lifecycle_state[0]);
                        FUZZ_CHECK(fuzz_field_text_ok(i.group, sizeof i.group));
                        FUZZ_CHECK(fuzz_field_text_ok(i.lifecycle_state, sizeof i.lifecycle_state));
                        FUZZ_CHECK(fuzz_field_text_ok(i.health_status, sizeof i.health_status));
                }
        }
        for (int enter = 0; enter < 2; enter++) {
                error = NULL;
                k = autoscaling_parse_standby(xml, size, enter, &error);
                if (k < 0)
                        check_error(k, error);
                else
                        FUZZ_CHECK(!error);
        }
        /* the same bytes as a group name: sent encoded, or refused */
        if (size < 300) {
                _cleanup_(freep) char *group = fuzz_strndup(data, size), *body = NULL;

                k = autoscaling_standby_body(true, group, ID, &body);
                FUZZ_CHECK(k == 0 || k == -EINVAL || k == -ENOMEM);
                FUZZ_CHECK((k == 0) == autoscaling_group_name_is_valid(group)); /* to the first NUL */
                if (k == 0)
                        FUZZ_CHECK(fuzz_form_body_ok(body) && strstr(body, "&ShouldDecrementDesiredCapacity=true"));
        }
        return 0;
}
