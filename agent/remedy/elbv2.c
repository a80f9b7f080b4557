/* One instance target in one target group: the form bodies, the
 * DescribeTargetHealth answer, and the client on awsquery.c's engine. */
#include "elbv2.h"

#include "awsid.h"
#include "error.h"
#include "numparse.h"

static const char *const state_table[_TARGET_HEALTH_MAX] = {
        [TARGET_HEALTH_INITIAL] = "initial",
        [TARGET_HEALTH_HEALTHY] = "healthy",
        [TARGET_HEALTH_UNHEALTHY] = "unhealthy",
        [TARGET_HEALTH_UNUSED] = "unused",
        [TARGET_HEALTH_DRAINING] = "draining",
        [TARGET_HEALTH_UNAVAILABLE] = "unavailable",
        [TARGET_HEALTH_UNHEALTHY_DRAINING] = "unhealthy.draining",
        [TARGET_HEALTH_ABSENT] = "absent",
};

const char *target_health_state_to_string(TargetHealthState s) {
        return s >= 0 && s < _TARGET_HEALTH_MAX ? state_table[s] : NULL;
}

TargetHealthState target_health_state_from_string(const char *s) {
        for (int i = 0; s && i < _TARGET_HEALTH_MAX; i++)
                if (i != TARGET_HEALTH_ABSENT && streq(s, state_table[i]))
                        return (TargetHealthState) i;
        return _TARGET_HEALTH_INVALID;
}

/* --- the form bodies ---------------------------------------------------- */

static bool targets_action(const char *action) {
        return action && (streq(action, "RegisterTargets") || streq(action, "DeregisterTargets") ||
                          streq(action, "DescribeTargetHealth"));
}

int elbv2_targets_body(const char *action, const char *target_group_arn, const char *instance_id, unsigned port,
                       char **ret) {
        _cleanup_(freep) char *body = NULL;
        int k;

        if (!targets_action(action) || !aws_target_group_arn_parse(target_group_arn, NULL, 0) ||
            !aws_instance_id_is_valid(instance_id) || port > 65535)
                return -EINVAL;
        k = aws_query_body_new(action, ELBV2_API_VERSION, &body);
        if (k >= 0)
                k = aws_query_body_add(&body, "TargetGroupArn", target_group_arn);
        if (k >= 0)
                k = aws_query_body_add(&body, "Targets.member.1.Id", instance_id);
        if (k >= 0 && port > 0)
                k = aws_query_body_addf(&body, "Targets.member.1.Port", "%u", port);
        if (k < 0)
                return k;
        *ret = TAKE_PTR(body);
        return 0;
}

/* --- the answers -------------------------------------------------------- */

#define MEMBER "DescribeTargetHealthResult/TargetHealthDescriptions/member"

typedef struct HealthWalk {
        const char *instance_id;
        unsigned port;
        /* the member being read */
        char id[32], port_text[8], state[32], reason[128];
        /* the first member that is ours */
        bool found;
        char found_state[32], found_reason[128];
} HealthWalk;

static void walk_health(AwsXmlEvent ev, const char *path, unsigned depth, const char *text, void *userdata) {
        HealthWalk *w = userdata;
        const char *sub = aws_query_subpath(path);
        uint16_t p;

        if (depth < 4 || strncmp(sub, MEMBER, strlen(MEMBER)) != 0)
                return;
        sub += strlen(MEMBER);
        if (ev == AWS_XML_OPEN && streq(sub, "")) {
                w->id[0] = w->port_text[0] = w->state[0] = w->reason[0] = '\0';
                return;
        }
        if (ev != AWS_XML_CLOSE)
                return;
        if (streq(sub, "/Target/Id"))
                aws_query_copy_text(w->id, sizeof w->id, text);
        else if (streq(sub, "/Target/Port"))
                aws_query_copy_text(w->port_text, sizeof w->port_text, text);
        else if (streq(sub, "/TargetHealth/State"))
                aws_query_copy_text(w->state, sizeof w->state, text);
        else if (streq(sub, "/TargetHealth/Reason"))
                aws_query_copy_text(w->reason, sizeof w->reason, text);
        else if (streq(sub, "") && !w->found && streq(w->id, w->instance_id) &&
                 (w->port == 0 || (parse_port_decimal(w->port_text, strlen(w->port_text), &p) >= 0 && p == w->port))) {
                w->found = true;
                memcpy(w->found_state, w->state, sizeof w->state);
                memcpy(w->found_reason, w->reason, sizeof w->reason);
        }
}

int elbv2_parse_target_health(const char *xml, size_t len, const char *instance_id, unsigned port,
                              TargetHealthState *ret_state, char *reason, size_t reason_size, char **ret_error) {
        HealthWalk w = { .instance_id = instance_id, .port = port };
        AwsQueryAnswer a;
        TargetHealthState s = TARGET_HEALTH_ABSENT;
        int k;

        if (isempty(instance_id))
                return -EINVAL;
        k = aws_query_parse(xml, len, walk_health, &w, &a, ret_error);
        if (k < 0)
                return k;
        k = aws_query_check_root(&a, "DescribeTargetHealth", ret_error);
        if (k < 0)
                return k;
        if (w.found) {
                if (!w.found_state[0])
                        return error_set(ret_error, -EBADMSG, "the member of %s has no TargetHealth/State",
                                         instance_id);
                s = target_health_state_from_string(w.found_state);
                if (s < 0)
                        return error_set(ret_error, -EBADMSG, "unknown target state '%s' of %s", w.found_state,
                                         instance_id);
        }
        *ret_state = s;
        if (reason && reason_size > 0)
                aws_query_copy_text(reason, reason_size, w.found ? w.found_reason : "");
        return 0;
}

int elbv2_parse_empty_result(const char *xml, size_t len, const char *action, char **ret_error) {
        AwsQueryAnswer a;
        int k;

        if (!targets_action(action))
                return -EINVAL;
        k = aws_query_parse(xml, len, NULL, NULL, &a, ret_error);
        if (k < 0)
                return k;
        return aws_query_check_root(&a, action, ret_error);
}

/* --- the client --------------------------------------------------------- */

struct Elbv2 {
        AwsQuery *query;

        /* the call in progress */
        const char *action;
        char instance_id[32];
        unsigned port;
        TargetHealthState state;
        char reason[128];
        elbv2_done_t done_cb;
        elbv2_health_t health_cb;
        void *userdata;
};

int elbv2_new(sd_event *e, Http *http, const char *endpoint, const char *region, Elbv2 **ret) {
        _cleanup_(elbv2_freep) Elbv2 *c = NULL;
        int k;

        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        k = aws_query_new(e, http, endpoint, region, "elasticloadbalancing", "elasticloadbalancing", &c->query);
        if (k < 0)
                return k;
        *ret = TAKE_PTR(c);
        return 0;
}

Elbv2 *elbv2_free(Elbv2 *c) {
        if (!c)
                return NULL;
        aws_query_free(c->query);
        free(c);
        return NULL;
}

void elbv2_cancel(Elbv2 *c) {
        if (c)
                aws_query_cancel(c->query);
}

bool elbv2_busy(const Elbv2 *c) {
        return c && aws_query_busy(c->query);
}

const char *elbv2_endpoint(const Elbv2 *c) {
        return aws_query_endpoint(c->query);
}

const char *elbv2_last_detail(const Elbv2 *c) {
        return c ? aws_query_last_detail(c->query) : NULL;
}

void elbv2_set_timing(Elbv2 *c, usec_t backoff_min, usec_t backoff_max, usec_t timeout) {
        aws_query_set_timing(c->query, backoff_min, backoff_max, timeout);
}

static int read_answer(const char *xml, size_t len, void *userdata, char **ret_error) {
        Elbv2 *c = userdata;

        if (c->health_cb)
                return elbv2_parse_target_health(xml, len, c->instance_id, c->port, &c->state, c->reason,
                                                 sizeof c->reason, ret_error);
        return elbv2_parse_empty_result(xml, len, c->action, ret_error);
}

static void on_done(const AwsCallResult *r, const AwsQueryInfo *info, void *userdata) {
        Elbv2 *c = userdata;
        elbv2_done_t done_cb = c->done_cb;
        elbv2_health_t health_cb = c->health_cb;
        void *cb_userdata = c->userdata;
        TargetHealthState state = r->outcome == AWS_CALL_OK ? c->state : TARGET_HEALTH_ABSENT;
        char reason[sizeof c->reason];

        memcpy(reason, c->reason, sizeof reason);
        c->done_cb = NULL;
        c->health_cb = NULL;
        c->userdata = NULL;
        if (health_cb)
                health_cb(r, state, r->outcome == AWS_CALL_OK && reason[0] ? reason : NULL, cb_userdata);
        else
                done_cb(r, cb_userdata);
}

static int call(Elbv2 *c, const AwsCredentials *cred, const char *action, const char *target_group_arn,
                const char *instance_id, unsigned port, elbv2_done_t done_cb, elbv2_health_t health_cb,
                void *userdata) {
        _cleanup_(freep) char *body = NULL;
        int k;

        if (aws_query_busy(c->query))
                return -EBUSY;
        if (!done_cb && !health_cb)
                return -EINVAL;
        k = elbv2_targets_body(action, target_group_arn, instance_id, port, &body);
        if (k < 0)
                return k;
        c->action = action;
        snprintf(c->instance_id, sizeof c->instance_id, "%s", instance_id);
        c->port = port;
        c->state = TARGET_HEALTH_ABSENT;
        c->reason[0] = '\0';
        c->done_cb = done_cb;
        c->health_cb = health_cb;
        c->userdata = userdata;
        k = aws_query_start(c->query, cred,
                            &(AwsQueryRequest) {
                                    .action = action,
                                    .body = body,
                                    /* a lost answer may have (de)registered: the caller's wait
                                     * on DescribeTargetHealth settles it */
                                    .changes = !streq(action, "DescribeTargetHealth"),
                                    .read = read_answer,
                                    .done = on_done,
                                    .userdata = c,
                            });
        if (k < 0) {
                c->done_cb = NULL;
                c->health_cb = NULL;
                c->userdata = NULL;
        }
        return k;
}

int elbv2_register_target(Elbv2 *c, const AwsCredentials *cred, const char *target_group_arn,
                          const char *instance_id, unsigned port, elbv2_done_t cb, void *userdata) {
        return call(c, cred, "RegisterTargets", target_group_arn, instance_id, port, cb, NULL, userdata);
}

int elbv2_deregister_target(Elbv2 *c, const AwsCredentials *cred, const char *target_group_arn,
                            const char *instance_id, unsigned port, elbv2_done_t cb, void *userdata) {
        return call(c, cred, "DeregisterTargets", target_group_arn, instance_id, port, cb, NULL, userdata);
}

int elbv2_target_health(Elbv2 *c, const AwsCredentials *cred, const char *target_group_arn, const char *instance_id,
                        unsigned port, elbv2_health_t cb, void *userdata) {
        if (!cb)
                return -EINVAL;
        return call(c, cred, "DescribeTargetHealth", target_group_arn, instance_id, port, NULL, cb, userdata);
}
