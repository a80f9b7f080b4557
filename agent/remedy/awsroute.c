/* Detach and attach, one call after another on the ELBv2 and Auto
 * Scaling clients, each wait a poll of DescribeTargetHealth or
 * DescribeAutoScalingInstances under one deadline. */
#include "awsroute.h"

#include <stdarg.h>

#include "autoscaling.h"
#include "awsid.h"
#include "clock.h"
#include "elbv2.h"
#include "jsonutil.h"
#include "log.h"
#include "macro.h"

/* The load balancer's own states move in seconds (a health check
 * interval is 5 s and more): a second between looks costs nothing, and a
 * fleet's worth of draining hosts stays far below the APIs' rate limits. */
#define ROUTE_POLL (1 * USEC_PER_SEC)

typedef enum RouteOp {
        OP_NONE,
        OP_DETACH,
        OP_ATTACH,
} RouteOp;

typedef enum RoutePhase {
        PH_IDLE,
        PH_DESCRIBE,          /* which group, which lifecycle state */
        PH_RECORD_STANDBY,    /* the owner writes the group down */
        PH_ENTER_STANDBY,
        PH_WAIT_STANDBY,
        PH_DEREGISTER,        /* target group i */
        PH_WAIT_DRAINED,      /* polling target group i */
        PH_EXIT_STANDBY,
        PH_WAIT_IN_SERVICE,
        PH_CLEAR_STANDBY,     /* the owner forgets the group */
        PH_REGISTER,          /* target group i */
        PH_WAIT_HEALTHY,      /* polling target group i */
        _PH_MAX,
} RoutePhase;

static const char *const phase_table[_PH_MAX] = {
        [PH_IDLE] = "idle",
        [PH_DESCRIBE] = "DescribeAutoScalingInstances",
        [PH_RECORD_STANDBY] = "writing down the standby",
        [PH_ENTER_STANDBY] = "EnterStandby",
        [PH_WAIT_STANDBY] = "waiting for Standby",
        [PH_DEREGISTER] = "DeregisterTargets",
        [PH_WAIT_DRAINED] = "waiting for the targets to drain",
        [PH_EXIT_STANDBY] = "ExitStandby",
        [PH_WAIT_IN_SERVICE] = "waiting for InService",
        [PH_CLEAR_STANDBY] = "writing down the end of the standby",
        [PH_REGISTER] = "RegisterTargets",
        [PH_WAIT_HEALTHY] = "waiting for the targets to be healthy",
};

typedef struct RouteTarget {
        char *arn;
        unsigned port;
        TargetHealthState state;
        char reason[80];
} RouteTarget;

struct AwsRoute {
        sd_event *event;
        Http *http;
        Aws *aws;
        Elbv2 *elb;
        AutoScaling *asg;
        char *elb_endpoint, *asg_endpoint;

        RouteTarget *targets;
        size_t n_targets;
        bool standby;
        usec_t deregistration_timeout, registration_timeout;

        const AwsRouteSink *sink;
        void *userdata;

        RouteOp op;
        RoutePhase phase;
        size_t i;                 /* the target group being asked */
        bool quiet;               /* detach without waiting, nobody told */
        bool waiting_identity;
        bool refreshed;           /* already asked again with fresh credentials */
        bool skip_targets;        /* attach: an operator's standby, left alone */
        awsroute_done_t cb;
        void *cb_userdata;
        usec_t started, deadline; /* CLOCK_MONOTONIC */
        sd_event_source *poll_timer, *deadline_timer;

        char group[256];          /* from DescribeAutoScalingInstances, "" none */
        char lifecycle[48];
        char *last_error;
        char *last_done;          /* "detached 12.3 s", "attached 20.1 s" */
        /* What each API call said last: ELBv2 and Auto Scaling have no
         * DryRun, so the permission shows when a call is made (the
         * start's attach makes most of them). */
        char calls[_PH_MAX][80];
};

static const char *const action_table[_PH_MAX] = {
        [PH_DESCRIBE] = "DescribeAutoScalingInstances",
        [PH_WAIT_STANDBY] = "DescribeAutoScalingInstances",
        [PH_WAIT_IN_SERVICE] = "DescribeAutoScalingInstances",
        [PH_ENTER_STANDBY] = "EnterStandby",
        [PH_EXIT_STANDBY] = "ExitStandby",
        [PH_DEREGISTER] = "DeregisterTargets",
        [PH_REGISTER] = "RegisterTargets",
        [PH_WAIT_DRAINED] = "DescribeTargetHealth",
        [PH_WAIT_HEALTHY] = "DescribeTargetHealth",
};

static bool phase_is_autoscaling(RoutePhase p) {
        return p == PH_DESCRIBE || p == PH_WAIT_STANDBY || p == PH_WAIT_IN_SERVICE || p == PH_ENTER_STANDBY ||
               p == PH_EXIT_STANDBY;
}

/* by action name: the three Describe phases share one line */
static void note_call(AwsRoute *r, const AwsCallResult *res) {
        const char *action = action_table[r->phase];

        if (!action)
                return;
        for (size_t p = 0; p < _PH_MAX; p++)
                if (action_table[p] && streq(action_table[p], action))
                        snprintf(r->calls[p], sizeof r->calls[p], "%s",
                                 res->outcome == AWS_CALL_OK ? "ok" : res->code[0] ? res->code : "failed");
}

static usec_t now_mono(AwsRoute *r) {
        return clock_loop_now(r->event, CLOCK_MONOTONIC);
}

static void set_string(char **dst, const char *s) {
        char *n = s ? strdup(s) : NULL;
        free(*dst);
        *dst = n;
}

/* "arn:...:targetgroup/web/0123abcd" → "web": what people call it. */
static const char *tg_name(const char *arn, char *buf, size_t size) {
        const char *s = strstr(arn, ":targetgroup/"), *e;

        if (!s)
                return arn;
        s += strlen(":targetgroup/");
        e = strchr(s, '/');
        snprintf(buf, size, "%.*s", (int) (e ? (size_t) (e - s) : strlen(s)), s);
        return buf;
}

RouteWait awsroute_drained_verdict(const int *states, size_t n) {
        for (size_t i = 0; i < n; i++)
                /* unused: deregistered and drained; absent: not in the
                 * group at all. Anything else may still take requests. */
                if (states[i] != TARGET_HEALTH_UNUSED && states[i] != TARGET_HEALTH_ABSENT)
                        return ROUTE_WAIT_MORE;
        return ROUTE_WAIT_DONE;
}

RouteWait awsroute_healthy_verdict(const int *states, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (states[i] != TARGET_HEALTH_HEALTHY)
                        return ROUTE_WAIT_MORE;
        return ROUTE_WAIT_DONE;
}

int awsroute_new(sd_event *e, Http *http, Aws *aws, const Config *c, const AwsRouteSink *sink, void *userdata,
                 AwsRoute **ret) {
        _cleanup_(awsroute_freep) AwsRoute *r = NULL;

        *ret = NULL;
        if (c->aws.n_target_groups == 0 && c->aws.autoscaling != AWS_AUTOSCALING_STANDBY)
                return 0;
        r = calloc(1, sizeof *r);
        if (!r)
                return -ENOMEM;
        r->event = sd_event_ref(e);
        r->http = http;
        r->aws = aws;
        r->sink = sink;
        r->userdata = userdata;
        r->standby = c->aws.autoscaling == AWS_AUTOSCALING_STANDBY;
        r->deregistration_timeout = c->aws.deregistration_timeout;
        r->registration_timeout = c->aws.registration_timeout;
        set_string(&r->elb_endpoint, c->aws.elb_endpoint_url);
        set_string(&r->asg_endpoint, c->aws.autoscaling_endpoint_url);
        if ((c->aws.elb_endpoint_url && !r->elb_endpoint) || (c->aws.autoscaling_endpoint_url && !r->asg_endpoint))
                return -ENOMEM;
        if (c->aws.n_target_groups > 0) {
                r->targets = calloc(c->aws.n_target_groups, sizeof *r->targets);
                if (!r->targets)
                        return -ENOMEM;
                for (size_t i = 0; i < c->aws.n_target_groups; i++) {
                        r->targets[i].arn = strdup(c->aws.target_groups[i].arn);
                        if (!r->targets[i].arn)
                                return -ENOMEM;
                        r->targets[i].port = c->aws.target_groups[i].port;
                        r->targets[i].state = TARGET_HEALTH_ABSENT;
                        r->n_targets++;
                }
        }
        *ret = TAKE_PTR(r);
        return 0;
}

static void call_stop(AwsRoute *r) {
        r->poll_timer = sd_event_source_disable_unref(r->poll_timer);
        r->deadline_timer = sd_event_source_disable_unref(r->deadline_timer);
        if (r->elb)
                elbv2_cancel(r->elb);
        if (r->asg)
                autoscaling_cancel(r->asg);
        if (r->waiting_identity)
                aws_forget_identity_waiter(r->aws, r);
        r->waiting_identity = false;
        r->op = OP_NONE;
        r->phase = PH_IDLE;
        r->cb = NULL;
}

AwsRoute *awsroute_free(AwsRoute *r) {
        if (!r)
                return NULL;
        call_stop(r);
        r->elb = elbv2_free(r->elb);
        r->asg = autoscaling_free(r->asg);
        for (size_t i = 0; i < r->n_targets; i++)
                free(r->targets[i].arn);
        free(r->targets);
        free(r->elb_endpoint);
        free(r->asg_endpoint);
        free(r->last_error);
        free(r->last_done);
        sd_event_unref(r->event);
        free(r);
        return NULL;
}

void awsroute_cancel(AwsRoute *r) {
        if (r && r->op != OP_NONE) {
                log_info("aws: %s cancelled (%s)", r->op == OP_DETACH ? "detaching" : "attaching",
                         phase_table[r->phase]);
                call_stop(r);
        }
}

bool awsroute_still_in_service(const AwsRoute *r) {
        return r && r->op == OP_DETACH && r->standby &&
               (r->phase == PH_DESCRIBE || r->phase == PH_RECORD_STANDBY || r->phase == PH_ENTER_STANDBY);
}

bool awsroute_busy(const AwsRoute *r) {
        return r && r->op != OP_NONE && !r->quiet;
}

static void step(AwsRoute *r, const char *what, const char *detail) {
        double secs = (double) (now_mono(r) - r->started) / USEC_PER_SEC;

        log_info("aws: %s: %s (%.1f s)", what, detail, secs);
        if (r->sink->step)
                r->sink->step(r->userdata, what, detail);
}

static void finish(AwsRoute *r, int error, const char *code, const char *detail) {
        awsroute_done_t cb = r->cb;
        void *ud = r->cb_userdata;
        bool quiet = r->quiet;
        RouteOp op = r->op;
        char done[64];

        if (error < 0) {
                log_warning("aws: %s failed: %s", op == OP_DETACH ? "detaching" : "attaching", detail);
                set_string(&r->last_error, detail);
        } else {
                snprintf(done, sizeof done, "%s in %.1f s", op == OP_DETACH ? "detached" : "attached",
                         (double) (now_mono(r) - r->started) / USEC_PER_SEC);
                log_info("aws: %s", done);
                set_string(&r->last_done, done);
                set_string(&r->last_error, NULL);
        }
        call_stop(r);
        if (cb && !quiet)
                cb(error, code, detail, ud);
}

static void failf(AwsRoute *r, int error, const char *code, const char *fmt, ...) _printf_(4, 5);
static void failf(AwsRoute *r, int error, const char *code, const char *fmt, ...) {
        char detail[512];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(detail, sizeof detail, fmt, ap);
        va_end(ap);
        finish(r, error, code, detail);
}

static void phase_run(AwsRoute *r);

static void on_identity(Aws *aws, void *userdata) {
        AwsRoute *r = userdata;

        r->waiting_identity = false;
        phase_run(r);
}

/* The clients need the region and the credentials: the Aws has both
 * once IMDS (or the config) said who we are. */
static bool need_identity(AwsRoute *r) {
        const char *region = aws_region(r->aws);
        int k;

        if (aws_instance_id(r->aws) && region && aws_credentials(r->aws)) {
                /* A region from IMDS is known only now: a target group
                 * elsewhere would answer TargetGroupNotFound at the worst
                 * moment, so say what is wrong instead. */
                for (size_t i = 0; i < r->n_targets; i++) {
                        char tg_region[64] = "", name[128];

                        if (aws_target_group_arn_parse(r->targets[i].arn, tg_region, sizeof tg_region) &&
                            !streq(tg_region, region)) {
                                failf(r, -EINVAL, "Config",
                                      "target group %s is in %s, this instance in %s: [aws] target_groups must "
                                      "name the instance's region",
                                      tg_name(r->targets[i].arn, name, sizeof name), tg_region, region);
                                return true;
                        }
                }
                if (r->n_targets > 0 && !r->elb &&
                    (k = elbv2_new(r->event, r->http, r->elb_endpoint, region, &r->elb)) < 0) {
                        failf(r, k, "Internal", "cannot set up the ELBv2 client: %s", strerror(-k));
                        return true;
                }
                if (r->standby && !r->asg &&
                    (k = autoscaling_new(r->event, r->http, r->asg_endpoint, region, &r->asg)) < 0) {
                        failf(r, k, "Internal", "cannot set up the Auto Scaling client: %s", strerror(-k));
                        return true;
                }
                return false;
        }
        if (r->waiting_identity)
                return true;
        r->waiting_identity = true;
        k = aws_need_identity(r->aws, on_identity, r);
        if (k < 0) {
                r->waiting_identity = false;
                failf(r, k, "Identity", "cannot wait for the instance identity: %s", strerror(-k));
        }
        /* on_identity may have run already, and gone on */
        return true;
}

static int on_poll_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        AwsRoute *r = userdata;

        r->poll_timer = sd_event_source_disable_unref(r->poll_timer);
        phase_run(r);
        return 0;
}

static void poll_later(AwsRoute *r) {
        int k;

        r->poll_timer = sd_event_source_disable_unref(r->poll_timer);
        k = sd_event_add_time_relative(r->event, &r->poll_timer, CLOCK_MONOTONIC, ROUTE_POLL, USEC_PER_MSEC / 10,
                                       on_poll_timer, r);
        if (k < 0)
                failf(r, k, "Internal", "cannot schedule the next look: %s", strerror(-k));
}

static int on_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        AwsRoute *r = userdata;
        char name[128];
        const char *what = r->op == OP_DETACH ? "[aws] deregistration_timeout" : "[aws] registration_timeout";
        usec_t limit = r->op == OP_DETACH ? r->deregistration_timeout : r->registration_timeout;

        r->deadline_timer = sd_event_source_disable_unref(r->deadline_timer);
        if (r->phase == PH_WAIT_DRAINED || r->phase == PH_WAIT_HEALTHY) {
                const RouteTarget *t = &r->targets[MIN(r->i, r->n_targets - 1)];

                failf(r, -ETIMEDOUT, "Timeout", "target group %s: still %s%s%s after %llus (%s)",
                      tg_name(t->arn, name, sizeof name), target_health_state_to_string(t->state),
                      t->reason[0] ? ": " : "", t->reason, (unsigned long long) (limit / USEC_PER_SEC), what);
        } else if (r->phase == PH_WAIT_STANDBY || r->phase == PH_WAIT_IN_SERVICE)
                failf(r, -ETIMEDOUT, "Timeout", "Auto Scaling group %s: still %s after %llus (%s)", r->group,
                      r->lifecycle[0] ? r->lifecycle : "unknown", (unsigned long long) (limit / USEC_PER_SEC), what);
        else
                failf(r, -ETIMEDOUT, "Timeout", "%s did not end within %llus (%s)", phase_table[r->phase],
                      (unsigned long long) (limit / USEC_PER_SEC), what);
        return 0;
}

/* ExpiredToken on role credentials: once more, with fresh ones. */
static bool retry_fresh_credentials(AwsRoute *r, const AwsCallResult *res) {
        if (res->outcome != AWS_CALL_DENIED || r->refreshed ||
            (!streq(res->code, "ExpiredToken") && !streq(res->code, "RequestExpired")))
                return false;
        log_info("aws: %s; fetching the credentials again", res->code);
        r->refreshed = true;
        aws_credentials_expired(r->aws);
        phase_run(r); /* waits for the identity first */
        return true;
}

static int error_of(const AwsCallResult *res) {
        return res->outcome == AWS_CALL_DENIED ? -EACCES : -EIO;
}

static const char *code_of(const AwsCallResult *res) {
        return res->code[0] ? res->code : "Unavailable";
}

/* ---- Auto Scaling ---- */

static void on_described(const AwsCallResult *res, const AsgInstance *in, void *userdata) {
        AwsRoute *r = userdata;

        note_call(r, res);
        const char *ours = r->sink->standby_group(r->userdata);
        const char *iid = aws_instance_id(r->aws);

        if (res->outcome != AWS_CALL_OK) {
                if (!retry_fresh_credentials(r, res))
                        failf(r, error_of(res), code_of(res), "%s", res->detail);
                return;
        }
        if (!in) {
                /* not in a group: nothing can replace it, nothing to do */
                r->group[0] = r->lifecycle[0] = 0;
                if (r->phase == PH_DESCRIBE)
                        log_info("aws: instance %s is in no Auto Scaling group; [aws] autoscaling = standby has "
                                 "nothing to do", strna(iid));
                r->phase = r->op == OP_DETACH ? PH_DEREGISTER : PH_REGISTER;
                r->i = 0;
                phase_run(r);
                return;
        }
        snprintf(r->group, sizeof r->group, "%s", in->group);
        snprintf(r->lifecycle, sizeof r->lifecycle, "%s", in->lifecycle_state);
        bool mine = ours && streq(ours, in->group);

        switch (r->phase) {
        case PH_DESCRIBE:
                if (r->op == OP_DETACH) {
                        if (streq(in->lifecycle_state, "InService"))
                                r->phase = PH_RECORD_STANDBY;
                        else if (mine && (streq(in->lifecycle_state, "Standby") ||
                                          streq(in->lifecycle_state, "EnteringStandby")))
                                r->phase = PH_WAIT_STANDBY; /* ours already (a restart while detaching) */
                        else {
                                failf(r, -EBUSY, "LifecycleState",
                                      "Auto Scaling group %s: instance %s is %s, not InService: not acting on it",
                                      in->group, strna(iid), in->lifecycle_state);
                                return;
                        }
                } else {
                        if (mine && streq(in->lifecycle_state, "Standby"))
                                r->phase = PH_EXIT_STANDBY;
                        else if (streq(in->lifecycle_state, "Pending") || streq(in->lifecycle_state, "InService"))
                                r->phase = PH_WAIT_IN_SERVICE;
                        else if (streq(in->lifecycle_state, "Standby")) {
                                /* An operator's standby is theirs to end:
                                 * registering the targets would route to a
                                 * host they took out. */
                                log_warning("aws: Auto Scaling group %s: instance %s is in Standby, not by us: leaving "
                                            "it and its targets as they are",
                                            in->group, strna(iid));
                                r->skip_targets = true;
                                finish(r, 0, NULL, NULL);
                                return;
                        } else {
                                failf(r, -EBUSY, "LifecycleState",
                                      "Auto Scaling group %s: instance %s is %s: not acting on it", in->group,
                                      strna(iid), in->lifecycle_state);
                                return;
                        }
                }
                break;
        case PH_WAIT_STANDBY:
                if (streq(in->lifecycle_state, "Standby")) {
                        step(r, "Standby", in->group);
                        r->phase = PH_DEREGISTER;
                        r->i = 0;
                        break;
                }
                if (!streq(in->lifecycle_state, "EnteringStandby")) {
                        failf(r, -EIO, "LifecycleState", "Auto Scaling group %s: instance went %s instead of Standby",
                              in->group, in->lifecycle_state);
                        return;
                }
                poll_later(r);
                return;
        case PH_WAIT_IN_SERVICE:
                if (streq(in->lifecycle_state, "InService")) {
                        step(r, "InService", in->group);
                        r->phase = ours ? PH_CLEAR_STANDBY : PH_REGISTER;
                        r->i = 0;
                        break;
                }
                if (!streq(in->lifecycle_state, "Pending") && !streq(in->lifecycle_state, "Pending:Wait") &&
                    !streq(in->lifecycle_state, "Pending:Proceed")) {
                        failf(r, -EIO, "LifecycleState", "Auto Scaling group %s: instance went %s instead of InService",
                              in->group, in->lifecycle_state);
                        return;
                }
                poll_later(r);
                return;
        default:
                return;
        }
        phase_run(r);
}

static void on_standby_call(const AwsCallResult *res, void *userdata) {
        AwsRoute *r = userdata;

        note_call(r, res);
        bool entering = r->phase == PH_ENTER_STANDBY;

        if (res->outcome != AWS_CALL_OK) {
                if (!retry_fresh_credentials(r, res))
                        failf(r, error_of(res), code_of(res), "%s", res->detail);
                return;
        }
        step(r, entering ? "EnterStandby" : "ExitStandby", r->group);
        if (r->quiet && entering) {
                r->phase = PH_DEREGISTER;
                r->i = 0;
        } else
                r->phase = entering ? PH_WAIT_STANDBY : PH_WAIT_IN_SERVICE;
        phase_run(r);
}

void awsroute_recorded(AwsRoute *r, int error) {
        if (!r || (r->phase != PH_RECORD_STANDBY && r->phase != PH_CLEAR_STANDBY))
                return;
        if (error < 0) {
                /* Unrecorded, a standby could outlive us with nobody to
                 * end it; so it is not begun. */
                if (r->phase == PH_RECORD_STANDBY) {
                        failf(r, error, "StateNotSaved",
                              "cannot write down the standby before EnterStandby (%s): not entering it",
                              strerror(-error));
                        return;
                }
                log_warning("aws: cannot write down the end of the standby: %s; it is over all the same",
                            strerror(-error));
        }
        r->phase = r->phase == PH_RECORD_STANDBY ? PH_ENTER_STANDBY : PH_REGISTER;
        r->i = 0;
        phase_run(r);
}

/* ---- target groups ---- */

static void on_target_call(const AwsCallResult *res, void *userdata) {
        AwsRoute *r = userdata;

        note_call(r, res);
        RouteTarget *t = &r->targets[r->i];
        char name[128];

        if (res->outcome != AWS_CALL_OK) {
                if (!retry_fresh_credentials(r, res))
                        failf(r, error_of(res), code_of(res), "%s", res->detail);
                return;
        }
        step(r, r->phase == PH_DEREGISTER ? "deregistered" : "registered", tg_name(t->arn, name, sizeof name));
        if (++r->i < r->n_targets) {
                phase_run(r);
                return;
        }
        r->i = 0;
        if (r->quiet) {
                finish(r, 0, NULL, NULL);
                return;
        }
        r->phase = r->phase == PH_DEREGISTER ? PH_WAIT_DRAINED : PH_WAIT_HEALTHY;
        phase_run(r);
}

static void on_target_health(const AwsCallResult *res, TargetHealthState state, const char *reason,
                             void *userdata) {
        AwsRoute *r = userdata;

        note_call(r, res);
        RouteTarget *t = &r->targets[r->i];
        _cleanup_(freep) int *states = NULL;
        char name[128];

        if (res->outcome != AWS_CALL_OK) {
                if (!retry_fresh_credentials(r, res))
                        failf(r, error_of(res), code_of(res), "%s", res->detail);
                return;
        }
        if (t->state != state)
                log_info("aws: target group %s: %s%s%s", tg_name(t->arn, name, sizeof name),
                         target_health_state_to_string(state), reason ? " (" : "", reason ? reason : "");
        t->state = state;
        snprintf(t->reason, sizeof t->reason, "%s", strempty(reason));
        if (++r->i < r->n_targets) {
                phase_run(r);
                return;
        }
        r->i = 0;
        states = calloc(r->n_targets, sizeof *states);
        if (!states) {
                failf(r, -ENOMEM, "Internal", "out of memory");
                return;
        }
        for (size_t i = 0; i < r->n_targets; i++)
                states[i] = r->targets[i].state;
        if (r->phase == PH_WAIT_DRAINED) {
                if (awsroute_drained_verdict(states, r->n_targets) == ROUTE_WAIT_DONE) {
                        step(r, "drained", "every target unused");
                        finish(r, 0, NULL, NULL);
                        return;
                }
        } else if (awsroute_healthy_verdict(states, r->n_targets) == ROUTE_WAIT_DONE) {
                step(r, "healthy", "every target healthy");
                finish(r, 0, NULL, NULL);
                return;
        }
        poll_later(r);
}

/* ---- the walk ---- */

static void phase_run(AwsRoute *r) {
        const char *iid;
        const AwsCredentials *cred;
        const RouteTarget *t;
        int k = 0;

        if (r->op == OP_NONE || r->poll_timer)
                return;
        if (need_identity(r))
                return;
        iid = aws_instance_id(r->aws);
        cred = aws_credentials(r->aws);
        t = r->i < r->n_targets ? &r->targets[r->i] : NULL;

        switch (r->phase) {
        case PH_DESCRIBE:
        case PH_WAIT_STANDBY:
        case PH_WAIT_IN_SERVICE:
                k = autoscaling_describe_instance(r->asg, cred, iid, on_described, r);
                break;
        case PH_RECORD_STANDBY:
        case PH_CLEAR_STANDBY:
                k = r->sink->record_standby(r->userdata, r->phase == PH_RECORD_STANDBY ? r->group : NULL);
                if (k < 0 && r->phase == PH_CLEAR_STANDBY) {
                        awsroute_recorded(r, k);
                        return;
                }
                break;
        case PH_ENTER_STANDBY:
                k = autoscaling_enter_standby(r->asg, cred, r->group, iid, on_standby_call, r);
                break;
        case PH_EXIT_STANDBY:
                k = autoscaling_exit_standby(r->asg, cred, r->group, iid, on_standby_call, r);
                break;
        case PH_DEREGISTER:
        case PH_REGISTER:
                if (!t) { /* no target groups: standby alone */
                        finish(r, 0, NULL, NULL);
                        return;
                }
                k = (r->phase == PH_DEREGISTER ? elbv2_deregister_target : elbv2_register_target)(
                        r->elb, cred, t->arn, iid, t->port, on_target_call, r);
                break;
        case PH_WAIT_DRAINED:
        case PH_WAIT_HEALTHY:
                k = elbv2_target_health(r->elb, cred, t->arn, iid, t->port, on_target_health, r);
                break;
        default:
                return;
        }
        if (k < 0)
                failf(r, k, "Internal", "cannot call %s: %s", phase_table[r->phase], strerror(-k));
}

static int start(AwsRoute *r, RouteOp op, bool quiet, awsroute_done_t cb, void *userdata) {
        usec_t limit = op == OP_DETACH ? r->deregistration_timeout : r->registration_timeout;
        int k;

        call_stop(r);
        r->op = op;
        r->quiet = quiet;
        r->refreshed = false;
        r->skip_targets = false;
        r->cb = cb;
        r->cb_userdata = userdata;
        r->i = 0;
        r->started = now_mono(r);
        r->deadline = r->started + limit;
        r->phase = r->standby ? PH_DESCRIBE : op == OP_DETACH ? PH_DEREGISTER : PH_REGISTER;
        for (size_t i = 0; i < r->n_targets; i++) {
                r->targets[i].state = TARGET_HEALTH_ABSENT;
                r->targets[i].reason[0] = 0;
        }
        k = sd_event_add_time(r->event, &r->deadline_timer, CLOCK_MONOTONIC, r->deadline, USEC_PER_MSEC,
                              on_deadline, r);
        if (k < 0) {
                call_stop(r);
                return k;
        }
        log_info("aws: %s%s (%s%s%zu target group%s)", op == OP_DETACH ? "detaching" : "attaching",
                 quiet ? ", not waiting" : "", r->standby ? "Auto Scaling standby, " : "", "", r->n_targets,
                 r->n_targets == 1 ? "" : "s");
        phase_run(r);
        return 0;
}

int awsroute_detach(AwsRoute *r, awsroute_done_t cb, void *userdata) {
        return start(r, OP_DETACH, false, cb, userdata);
}

int awsroute_attach(AwsRoute *r, awsroute_done_t cb, void *userdata) {
        return start(r, OP_ATTACH, false, cb, userdata);
}

int awsroute_detach_quietly(AwsRoute *r) {
        return start(r, OP_DETACH, true, NULL, NULL);
}

int awsroute_attach_quietly(AwsRoute *r) {
        return start(r, OP_ATTACH, true, NULL, NULL);
}

json_object *awsroute_status_json(const AwsRoute *r) {
        _cleanup_(json_object_putp) json_object *o = json_object_new_object();
        json_object *tgs = json_object_new_array(), *asg = json_object_new_object();

        if (!o || !tgs || !asg) {
                json_object_put(tgs);
                json_object_put(asg);
                return NULL;
        }
        json_object_object_add(o, "target_groups", tgs);
        for (size_t i = 0; i < r->n_targets; i++) {
                json_object *t = json_object_new_object();

                if (!t)
                        return NULL;
                json_object_array_add(tgs, t);
                json_object_object_add(t, "arn", json_object_new_string(r->targets[i].arn));
                json_object_object_add(t, "port", r->targets[i].port ? json_object_new_int(r->targets[i].port) : NULL);
                json_object_object_add(t, "state", json_object_new_string(
                                                           target_health_state_to_string(r->targets[i].state)));
                json_object_object_add(t, "reason", r->targets[i].reason[0]
                                                            ? json_object_new_string(r->targets[i].reason)
                                                            : NULL);
        }
        json_object_object_add(o, "autoscaling", asg);
        json_object_object_add(asg, "mode", json_object_new_string(r->standby ? "standby" : "off"));
        json_object_object_add(asg, "group", r->group[0] ? json_object_new_string(r->group) : NULL);
        json_object_object_add(asg, "lifecycle", r->lifecycle[0] ? json_object_new_string(r->lifecycle) : NULL);
        const char *ours = r->sink->standby_group(r->userdata);
        json_object_object_add(asg, "standby_ours", ours ? json_object_new_string(ours) : NULL);
        json_object_object_add(o, "doing", r->op == OP_NONE ? NULL
                                                              : json_object_new_string(phase_table[r->phase]));
        if (r->op != OP_NONE)
                json_object_object_add(o, "for_seconds",
                                       json_object_new_double((double) (clock_loop_now(r->event, CLOCK_MONOTONIC) -
                                                                        r->started) /
                                                              USEC_PER_SEC));
        json_object_object_add(o, "last", r->last_done ? json_object_new_string(r->last_done) : NULL);
        json_object *calls = json_object_new_object();
        if (!calls)
                return NULL;
        json_object_object_add(o, "permission", calls);
        for (size_t p = 0; p < _PH_MAX; p++)
                if (action_table[p] && !json_object_object_get_ex(calls, action_table[p], NULL) &&
                    (phase_is_autoscaling((RoutePhase) p) ? r->standby : r->n_targets > 0))
                        json_object_object_add(calls, action_table[p], json_object_new_string(
                                                                             r->calls[p][0] ? r->calls[p] : "not called yet"));
        json_object_object_add(o, "permission_note",
                               json_object_new_string("ELBv2 and Auto Scaling have no DryRun: each call's permission "
                                                      "shows when it is made; the attach at start makes "
                                                      "RegisterTargets and the Describe calls"));
        json_object_object_add(o, "last_error", r->last_error ? json_object_new_string(r->last_error) : NULL);
        return TAKE_PTR(o);
}
