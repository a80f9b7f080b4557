/* The Auto Scaling client: which group this instance is in and its
 * lifecycle state (DescribeAutoScalingInstances), EnterStandby (with
 * ShouldDecrementDesiredCapacity=true, so the group neither replaces the
 * instance nor launches another) and ExitStandby, through the Query API
 * (version 2011-01-01, SigV4 for service "autoscaling") on awsquery.c's
 * engine. A wrong lifecycle state comes back as AWS_CALL_FAILED with code
 * ValidationError ("The instance ... is not in InService"), not retried. */
#pragma once

#include <systemd/sd-event.h>

#include "awscreds.h"
#include "awsquery.h"
#include "http.h"

#define AUTOSCALING_API_VERSION "2011-01-01"

typedef struct AsgInstance {
        char group[256];
        char lifecycle_state[48]; /* "InService", "Standby", "EnteringStandby", "Pending", "Pending:Wait",
                                   * "Terminating", ... as AWS writes it */
        char health_status[16];
        bool protected_from_scale_in;
} AsgInstance;

/* --- pure --------------------------------------------------------------- */

/* A group name as AWS allows it: 1-255 characters, none of them a control
 * character. */
bool autoscaling_group_name_is_valid(const char *s);

/* DescribeAutoScalingInstances with InstanceIds.member.1. -EINVAL for an
 * instance id that is not i-.... */
int autoscaling_describe_body(const char *instance_id, char **ret);
/* EnterStandby (ShouldDecrementDesiredCapacity=true) or ExitStandby, with
 * AutoScalingGroupName and InstanceIds.member.1. -EINVAL for a bad group
 * name or instance id. */
int autoscaling_standby_body(bool enter, const char *group, const char *instance_id, char **ret);

/* A DescribeAutoScalingInstances answer: 1 with *ret filled from the
 * member whose InstanceId is instance_id, 0 when there is none (the
 * instance is in no group). -EBADMSG with *ret_error for an error or
 * another document, or our member without AutoScalingGroupName or
 * LifecycleState. */
int autoscaling_parse_instance(const char *xml, size_t len, const char *instance_id, AsgInstance *ret,
                               char **ret_error);

/* An EnterStandby / ExitStandby answer: the number of Activities members
 * (>= 0). -EBADMSG when the document is not ACTIONResponse. */
int autoscaling_parse_standby(const char *xml, size_t len, bool enter, char **ret_error);

/* --- the client --------------------------------------------------------- */

typedef struct AutoScaling AutoScaling;

/* endpoint: https://autoscaling.REGION.amazonaws.com/ when NULL. */
int autoscaling_new(sd_event *e, Http *http, const char *endpoint, const char *region, AutoScaling **ret);
AutoScaling *autoscaling_free(AutoScaling *c);
static inline void autoscaling_freep(AutoScaling **c) {
        autoscaling_free(*c);
}

typedef void (*autoscaling_done_t)(const AwsCallResult *r, void *userdata);
/* i: NULL when the instance is in no group (or the call failed). */
typedef void (*autoscaling_instance_t)(const AwsCallResult *r, const AsgInstance *i, void *userdata);

/* One call at a time per client: -EBUSY otherwise. Credentials copied.
 * Answers once, from the loop. */
int autoscaling_describe_instance(AutoScaling *c, const AwsCredentials *cred, const char *instance_id,
                                  autoscaling_instance_t cb, void *userdata);
int autoscaling_enter_standby(AutoScaling *c, const AwsCredentials *cred, const char *group, const char *instance_id,
                              autoscaling_done_t cb, void *userdata);
int autoscaling_exit_standby(AutoScaling *c, const AwsCredentials *cred, const char *group, const char *instance_id,
                             autoscaling_done_t cb, void *userdata);
void autoscaling_cancel(AutoScaling *c);
bool autoscaling_busy(const AutoScaling *c);
const char *autoscaling_endpoint(const AutoScaling *c);
/* While a call runs: what its last failed attempt said; NULL otherwise. */
const char *autoscaling_last_detail(const AutoScaling *c);
/* Tests: see aws_query_set_timing(). */
void autoscaling_set_timing(AutoScaling *c, usec_t backoff_min, usec_t backoff_max, usec_t timeout);
