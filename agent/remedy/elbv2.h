/* The Elastic Load Balancing v2 client (ALB, NLB): RegisterTargets,
 * DeregisterTargets and DescribeTargetHealth for this instance in one
 * target group, through the Query API (version 2015-12-01, SigV4 for
 * service "elasticloadbalancing") on awsquery.c's engine: its retries,
 * limits and error shapes. The pure parts (form bodies, answers) are
 * apart from the client so tests and fuzzers reach them. */
#pragma once

#include <systemd/sd-event.h>

#include "awscreds.h"
#include "awsquery.h"
#include "http.h"

#define ELBV2_API_VERSION "2015-12-01"

typedef enum TargetHealthState {
        TARGET_HEALTH_INITIAL,
        TARGET_HEALTH_HEALTHY,
        TARGET_HEALTH_UNHEALTHY,
        TARGET_HEALTH_UNUSED,
        TARGET_HEALTH_DRAINING,
        TARGET_HEALTH_UNAVAILABLE,
        TARGET_HEALTH_UNHEALTHY_DRAINING,
        TARGET_HEALTH_ABSENT, /* not in the answer */
        _TARGET_HEALTH_MAX,
        _TARGET_HEALTH_INVALID = -EINVAL,
} TargetHealthState;

/* AWS's words: "initial", "healthy", ..., "unhealthy.draining"; "absent". */
const char *target_health_state_to_string(TargetHealthState s);
/* The inverse; "absent" is ours, not AWS's, and not accepted. */
TargetHealthState target_health_state_from_string(const char *s);

/* --- pure --------------------------------------------------------------- */

/* The form body of RegisterTargets, DeregisterTargets or
 * DescribeTargetHealth for one instance target (Targets.member.1.Id, and
 * .Port unless port is 0). -EINVAL for another action, an ARN that is not a
 * target group's, an instance id that is not i-..., a port above 65535. */
int elbv2_targets_body(const char *action, const char *target_group_arn, const char *instance_id, unsigned port,
                       char **ret);

/* A DescribeTargetHealth answer: the state of the member whose Target/Id
 * is instance_id (and Target/Port is port, unless port is 0: the first
 * member with that Id), TARGET_HEALTH_ABSENT when there is none; reason
 * gets TargetHealth/Reason ("" when none). -EBADMSG with *ret_error for an
 * error or another document, a member without State or with a state AWS
 * does not document. Outputs only written on success. */
int elbv2_parse_target_health(const char *xml, size_t len, const char *instance_id, unsigned port,
                              TargetHealthState *ret_state, char *reason, size_t reason_size, char **ret_error);

/* RegisterTargets / DeregisterTargets answer with an empty result: the
 * document must be ACTIONResponse. -EBADMSG otherwise. */
int elbv2_parse_empty_result(const char *xml, size_t len, const char *action, char **ret_error);

/* --- the client --------------------------------------------------------- */

typedef struct Elbv2 Elbv2;

/* endpoint: https://elasticloadbalancing.REGION.amazonaws.com/ when NULL. */
int elbv2_new(sd_event *e, Http *http, const char *endpoint, const char *region, Elbv2 **ret);
Elbv2 *elbv2_free(Elbv2 *c);
static inline void elbv2_freep(Elbv2 **c) {
        elbv2_free(*c);
}

typedef void (*elbv2_done_t)(const AwsCallResult *r, void *userdata);
/* reason: TargetHealth/Reason, e.g. "Target.DeregistrationInProgress";
 * NULL when none (and when the call failed: state is then ABSENT). */
typedef void (*elbv2_health_t)(const AwsCallResult *r, TargetHealthState state, const char *reason,
                               void *userdata);

/* port 0: no Port parameter (the group's port). One call at a time per
 * client: -EBUSY otherwise. Credentials copied. Answers once, from the
 * loop. */
int elbv2_register_target(Elbv2 *c, const AwsCredentials *cred, const char *target_group_arn,
                          const char *instance_id, unsigned port, elbv2_done_t cb, void *userdata);
int elbv2_deregister_target(Elbv2 *c, const AwsCredentials *cred, const char *target_group_arn,
                            const char *instance_id, unsigned port, elbv2_done_t cb, void *userdata);
/* DescribeTargetHealth with Targets.member.1.Id (and .Port). */
int elbv2_target_health(Elbv2 *c, const AwsCredentials *cred, const char *target_group_arn, const char *instance_id,
                        unsigned port, elbv2_health_t cb, void *userdata);
void elbv2_cancel(Elbv2 *c);
bool elbv2_busy(const Elbv2 *c);
const char *elbv2_endpoint(const Elbv2 *c);
/* While a call runs: what its last failed attempt said; NULL otherwise. */
const char *elbv2_last_detail(const Elbv2 *c);
/* Tests: see aws_query_set_timing(). */
void elbv2_set_timing(Elbv2 *c, usec_t backoff_min, usec_t backoff_max, usec_t timeout);
