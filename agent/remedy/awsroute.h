/* The host's place behind an AWS load balancer: its targets in [aws]
 * target_groups and, with [aws] autoscaling = standby, its Auto Scaling
 * group's lifecycle. Detaching takes the instance out of both and
 * returns only once AWS shows no request can reach it any more (Standby,
 * every target unused or gone): the group's deregistration delay, bounded
 * by [aws] deregistration_timeout. Attaching puts it back (ExitStandby
 * until InService, RegisterTargets until the load balancer's own health
 * check says healthy), bounded by [aws] registration_timeout.
 *
 * Anything that cannot be confirmed fails the whole step with AWS's own
 * error code: the caller never reboots a host that may still be routed.
 * An instance that is not InService when detaching (in standby by an
 * operator, in a lifecycle hook, terminating) is never acted on.
 *
 * The identity and credentials come from the Aws (borrowed); the standby
 * we entered is written down by the owner before EnterStandby goes out,
 * so a restart or the new boot ends it, and never one an operator began. */
#pragma once

#include <json-c/json.h>
#include <systemd/sd-event.h>

#include "aws.h"
#include "config.h"
#include "http.h"

typedef struct AwsRoute AwsRoute;

typedef struct AwsRouteSink {
        /* Write down, durably, that we put the instance in standby in
         * `group` (NULL: no longer), then call awsroute_recorded() from
         * the loop with the save's result. < 0: cannot; the step fails. */
        int (*record_standby)(void *userdata, const char *group);
        /* What is written down (NULL: none). */
        const char *(*standby_group)(void *userdata);
        /* One step of the way, for the log and the incident's timeline:
         * "EnterStandby", "Standby", "deregistered", "drained",
         * "ExitStandby", "InService", "registered", "healthy". */
        void (*step)(void *userdata, const char *step, const char *detail);
} AwsRouteSink;

/* error: 0, or < 0 with `detail` (one line naming the call, the target
 * group or group, and AWS's code) and `code` (AWS's code, or a word of
 * ours: "Timeout", "LifecycleState", "Identity"). */
typedef void (*awsroute_done_t)(int error, const char *code, const char *detail, void *userdata);

/* NULL in *ret when the config has neither target groups nor standby. */
int awsroute_new(sd_event *e, Http *http, Aws *aws, const Config *c, const AwsRouteSink *sink, void *userdata,
                 AwsRoute **ret);
AwsRoute *awsroute_free(AwsRoute *r);
static inline void awsroute_freep(AwsRoute **r) {
        awsroute_free(*r);
}

/* One at a time: a new one replaces (cancels) the one under way. cb runs
 * once, from the loop, unless cancelled. */
int awsroute_detach(AwsRoute *r, awsroute_done_t cb, void *userdata);
int awsroute_attach(AwsRoute *r, awsroute_done_t cb, void *userdata);
/* Deregister and EnterStandby without waiting for the drain, nobody told
 * (quarantine, operator drain): best effort, errors logged. */
int awsroute_detach_quietly(AwsRoute *r);
/* RegisterTargets (ExitStandby when ours) without waiting, nobody told:
 * a reload that names new target groups for a host in the pool. */
int awsroute_attach_quietly(AwsRoute *r);
void awsroute_cancel(AwsRoute *r);
bool awsroute_busy(const AwsRoute *r);
/* A detach in standby mode that has not yet taken the instance out of
 * InService: the load balancer's health check must keep passing until
 * EnterStandby is accepted, or the group's ELB health check may replace
 * the instance (a throttled EnterStandby takes seconds). */
bool awsroute_still_in_service(const AwsRoute *r);
/* From the owner's record_standby: the save's result. */
void awsroute_recorded(AwsRoute *r, int error);

/* Pure: the wait's verdict over each target's state. */
typedef enum RouteWait {
        ROUTE_WAIT_MORE,
        ROUTE_WAIT_DONE,
} RouteWait;
RouteWait awsroute_drained_verdict(const int *states, size_t n);   /* TargetHealthState each */
RouteWait awsroute_healthy_verdict(const int *states, size_t n);

/* {"target_groups":[{"arn","port","state","reason"}],"autoscaling":
 *  {"mode","group","lifecycle","ours"},"doing","since","last_error"} */
json_object *awsroute_status_json(const AwsRoute *r);
