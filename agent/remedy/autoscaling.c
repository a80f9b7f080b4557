/* This instance in its Auto Scaling group: the form bodies, the answers,
 * and the client on awsquery.c's engine. */
#include "autoscaling.h"

#include "awsid.h"
#include "error.h"

/* --- the form bodies ---------------------------------------------------- */

bool autoscaling_group_name_is_valid(const char *s) {
        size_t n;

        if (!s)
                return false;
        n = strlen(s);
        if (n == 0 || n > 255)
                return false;
        for (const char *p = s; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7f)
                        return false;
        return true;
}

int autoscaling_describe_body(const char *instance_id, char **ret) {
        _cleanup_(freep) char *body = NULL;
        int k;

        if (!aws_instance_id_is_valid(instance_id))
                return -EINVAL;
        k = aws_query_body_new("DescribeAutoScalingInstances", AUTOSCALING_API_VERSION, &body);
        if (k >= 0)
                k = aws_query_body_add(&body, "InstanceIds.member.1", instance_id);
        if (k < 0)
                return k;
        *ret = TAKE_PTR(body);
        return 0;
}

int autoscaling_standby_body(bool enter, const char *group, const char *instance_id, char **ret) {
        _cleanup_(freep) char *body = NULL;
        int k;

        if (!autoscaling_group_name_is_valid(group) || !aws_instance_id_is_valid(instance_id))
                return -EINVAL;
        k = aws_query_body_new(enter ? "EnterStandby" : "ExitStandby", AUTOSCALING_API_VERSION, &body);
        if (k >= 0)
                k = aws_query_body_add(&body, "AutoScalingGroupName", group);
        if (k >= 0)
                k = aws_query_body_add(&body, "InstanceIds.member.1", instance_id);
        /* the group must neither replace the instance nor launch another
         * in its place while it reboots */
        if (k >= 0 && enter)
                k = aws_query_body_add(&body, "ShouldDecrementDesiredCapacity", "true");
        if (k < 0)
                return k;
        *ret = TAKE_PTR(body);
        return 0;
}

/* --- the answers -------------------------------------------------------- */

#define MEMBER "DescribeAutoScalingInstancesResult/AutoScalingInstances/member"

typedef struct InstanceWalk {
        const char *instance_id;
        char id[32];
        AsgInstance cur;      /* the member being read */
        bool have_group, have_state;
        bool found, found_complete;
        AsgInstance found_instance;
} InstanceWalk;

static void walk_instance(AwsXmlEvent ev, const char *path, unsigned depth, const char *text, void *userdata) {
        InstanceWalk *w = userdata;
        const char *sub = aws_query_subpath(path);

        if (depth < 4 || strncmp(sub, MEMBER, strlen(MEMBER)) != 0)
                return;
        sub += strlen(MEMBER);
        if (ev == AWS_XML_OPEN && streq(sub, "")) {
                w->id[0] = '\0';
                w->cur = (AsgInstance) {};
                w->have_group = w->have_state = false;
                return;
        }
        if (ev != AWS_XML_CLOSE)
                return;
        if (streq(sub, "/InstanceId"))
                aws_query_copy_text(w->id, sizeof w->id, text);
        else if (streq(sub, "/AutoScalingGroupName")) {
                aws_query_copy_text(w->cur.group, sizeof w->cur.group, text);
                w->have_group = w->cur.group[0] != '\0';
        } else if (streq(sub, "/LifecycleState")) {
                aws_query_copy_text(w->cur.lifecycle_state, sizeof w->cur.lifecycle_state, text);
                w->have_state = w->cur.lifecycle_state[0] != '\0';
        } else if (streq(sub, "/HealthStatus"))
                aws_query_copy_text(w->cur.health_status, sizeof w->cur.health_status, text);
        else if (streq(sub, "/ProtectedFromScaleIn"))
                w->cur.protected_from_scale_in = streq(text, "true");
        else if (streq(sub, "") && !w->found && streq(w->id, w->instance_id)) {
                w->found = true;
                w->found_complete = w->have_group && w->have_state;
                w->found_instance = w->cur;
        }
}

int autoscaling_parse_instance(const char *xml, size_t len, const char *instance_id, AsgInstance *ret,
                               char **ret_error) {
        InstanceWalk w = { .instance_id = instance_id };
        AwsQueryAnswer a;
        int k;

        if (isempty(instance_id))
                return -EINVAL;
        k = aws_query_parse(xml, len, walk_instance, &w, &a, ret_error);
        if (k < 0)
                return k;
        k = aws_query_check_root(&a, "DescribeAutoScalingInstances", ret_error);
        if (k < 0)
                return k;
        if (!w.found)
                return 0;
        if (!w.found_complete)
                return error_set(ret_error, -EBADMSG, "the member of %s lacks AutoScalingGroupName or LifecycleState",
                                 instance_id);
        *ret = w.found_instance;
        return 1;
}

typedef struct ActivitiesWalk {
        const char *member; /* "EnterStandbyResult/Activities/member" */
        int n;
} ActivitiesWalk;

static void walk_activities(AwsXmlEvent ev, const char *path, unsigned depth, const char *text, void *userdata) {
        ActivitiesWalk *w = userdata;

        if (ev == AWS_XML_OPEN && streq(aws_query_subpath(path), w->member) && w->n < INT_MAX)
                w->n++;
}

int autoscaling_parse_standby(const char *xml, size_t len, bool enter, char **ret_error) {
        const char *action = enter ? "EnterStandby" : "ExitStandby";
        ActivitiesWalk w = { .member = enter ? "EnterStandbyResult/Activities/member"
                                             : "ExitStandbyResult/Activities/member" };
        AwsQueryAnswer a;
        int k;

        k = aws_query_parse(xml, len, walk_activities, &w, &a, ret_error);
        if (k < 0)
                return k;
        k = aws_query_check_root(&a, action, ret_error);
        if (k < 0)
                return k;
        return w.n;
}

/* --- the client --------------------------------------------------------- */

struct AutoScaling {
        AwsQuery *query;

        /* the call in progress */
        char instance_id[32];
        bool enter;
        bool found;
        AsgInstance instance;
        autoscaling_done_t done_cb;
        autoscaling_instance_t instance_cb;
        void *userdata;
};

int autoscaling_new(sd_event *e, Http *http, const char *endpoint, const char *region, AutoScaling **ret) {
        _cleanup_(autoscaling_freep) AutoScaling *c = NULL;
        int k;

        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        k = aws_query_new(e, http, endpoint, region, "autoscaling", "autoscaling", &c->query);
        if (k < 0)
                return k;
        *ret = TAKE_PTR(c);
        return 0;
}

AutoScaling *autoscaling_free(AutoScaling *c) {
        if (!c)
                return NULL;
        aws_query_free(c->query);
        free(c);
        return NULL;
}

void autoscaling_cancel(AutoScaling *c) {
        if (c)
                aws_query_cancel(c->query);
}

bool autoscaling_busy(const AutoScaling *c) {
        return c && aws_query_busy(c->query);
}

const char *autoscaling_endpoint(const AutoScaling *c) {
        return aws_query_endpoint(c->query);
}

const char *autoscaling_last_detail(const AutoScaling *c) {
        return c ? aws_query_last_detail(c->query) : NULL;
}

void autoscaling_set_timing(AutoScaling *c, usec_t backoff_min, usec_t backoff_max, usec_t timeout) {
        aws_query_set_timing(c->query, backoff_min, backoff_max, timeout);
}

static int read_answer(const char *xml, size_t len, void *userdata, char **ret_error) {
        AutoScaling *c = userdata;
        int k;

        if (!c->instance_cb) {
                k = autoscaling_parse_standby(xml, len, c->enter, ret_error);
                return k < 0 ? k : 0;
        }
        k = autoscaling_parse_instance(xml, len, c->instance_id, &c->instance, ret_error);
        if (k < 0)
                return k;
        c->found = k > 0;
        return 0;
}

static void on_done(const AwsCallResult *r, const AwsQueryInfo *info, void *userdata) {
        AutoScaling *c = userdata;
        autoscaling_done_t done_cb = c->done_cb;
        autoscaling_instance_t instance_cb = c->instance_cb;
        void *cb_userdata = c->userdata;
        AsgInstance i = c->instance;
        bool found = r->outcome == AWS_CALL_OK && c->found;

        c->done_cb = NULL;
        c->instance_cb = NULL;
        c->userdata = NULL;
        if (instance_cb)
                instance_cb(r, found ? &i : NULL, cb_userdata);
        else
                done_cb(r, cb_userdata);
}

static int call(AutoScaling *c, const AwsCredentials *cred, const char *action, char *body, bool changes,
                autoscaling_done_t done_cb, autoscaling_instance_t instance_cb, void *userdata) {
        int k;

        c->found = false;
        c->instance = (AsgInstance) {};
        c->done_cb = done_cb;
        c->instance_cb = instance_cb;
        c->userdata = userdata;
        k = aws_query_start(c->query, cred,
                            &(AwsQueryRequest) {
                                    .action = action,
                                    .body = body,
                                    .changes = changes,
                                    .read = read_answer,
                                    .done = on_done,
                                    .userdata = c,
                            });
        free(body);
        if (k < 0) {
                c->done_cb = NULL;
                c->instance_cb = NULL;
                c->userdata = NULL;
        }
        return k;
}

int autoscaling_describe_instance(AutoScaling *c, const AwsCredentials *cred, const char *instance_id,
                                  autoscaling_instance_t cb, void *userdata) {
        char *body = NULL;
        int k;

        if (aws_query_busy(c->query))
                return -EBUSY;
        if (!cb)
                return -EINVAL;
        k = autoscaling_describe_body(instance_id, &body);
        if (k < 0)
                return k;
        snprintf(c->instance_id, sizeof c->instance_id, "%s", instance_id);
        return call(c, cred, "DescribeAutoScalingInstances", body, false, NULL, cb, userdata);
}

static int standby(AutoScaling *c, const AwsCredentials *cred, bool enter, const char *group, const char *instance_id,
                   autoscaling_done_t cb, void *userdata) {
        char *body = NULL;
        int k;

        if (aws_query_busy(c->query))
                return -EBUSY;
        if (!cb)
                return -EINVAL;
        k = autoscaling_standby_body(enter, group, instance_id, &body);
        if (k < 0)
                return k;
        snprintf(c->instance_id, sizeof c->instance_id, "%s", instance_id);
        c->enter = enter;
        /* A lost answer may have moved the instance: the caller's wait on
         * DescribeAutoScalingInstances settles it. */
        return call(c, cred, enter ? "EnterStandby" : "ExitStandby", body, true, cb, NULL, userdata);
}

int autoscaling_enter_standby(AutoScaling *c, const AwsCredentials *cred, const char *group, const char *instance_id,
                              autoscaling_done_t cb, void *userdata) {
        return standby(c, cred, true, group, instance_id, cb, userdata);
}

int autoscaling_exit_standby(AutoScaling *c, const AwsCredentials *cred, const char *group, const char *instance_id,
                             autoscaling_done_t cb, void *userdata) {
        return standby(c, cred, false, group, instance_id, cb, userdata);
}
