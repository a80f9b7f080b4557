/* The EC2 client: RebootInstances through the Query API (a POST of
 * Action=RebootInstances&Version=2016-11-15&InstanceId.1=...), signed by
 * libcurl (CURLOPT_AWS_SIGV4 "aws:amz:REGION:ec2"; the session token goes
 * in X-Amz-Security-Token, which curl signs). Answers are XML, parsed with
 * expat: the request id, and Code/Message of an error. Throttling and 5xx
 * are retried with capped jittered backoff; auth and permission errors are
 * not, and carry AWS's own code. */
#pragma once

#include <systemd/sd-event.h>

#include "awscreds.h"
#include "awsquery.h"
#include "http.h"

#define EC2_API_VERSION "2016-11-15"
#define EC2_ATTEMPTS AWS_QUERY_ATTEMPTS

typedef enum Ec2Outcome {
        EC2_REBOOTING,          /* 200, <return>true</return> */
        EC2_PERMITTED,          /* DryRun: DryRunOperation */
        EC2_DENIED,             /* UnauthorizedOperation, AuthFailure, ...: a human must act */
        EC2_FAILED,             /* retries spent, or an error retrying will not fix */
        _EC2_OUTCOME_MAX,
        _EC2_OUTCOME_INVALID = -EINVAL,
} Ec2Outcome;

const char *ec2_outcome_to_string(Ec2Outcome o);

/* Pure: one parsed answer. */
typedef struct Ec2Response {
        bool is_error;           /* <Response><Errors>... */
        bool returned_true;      /* <return>true</return> */
        char code[64];
        char message[512];
        char request_id[80];
} Ec2Response;

/* Pure (expat). -EBADMSG with *ret_error on anything that is not one of
 * EC2's two documents (a success element with requestId, or Response/
 * Errors/Error with Code). */
int ec2_parse_response(const char *xml, size_t len, Ec2Response *ret, char **ret_error);

/* Pure: the form body. -EINVAL for an instance id that is not i-[0-9a-f]+. */
int ec2_reboot_body(const char *instance_id, bool dry_run, char **ret);

/* Pure: what an error code means for us. */
bool ec2_error_is_retryable(const char *code, long http_status);
bool ec2_error_is_denied(const char *code);

typedef struct Ec2Result {
        Ec2Outcome outcome;
        /* With EC2_REBOOTING: no attempt was answered "accepted", but one went
         * out and was never answered (a timeout, a dropped connection, a 200
         * we could not read) and the others failed. EC2 may have taken it:
         * the caller must expect a reboot as after an accepted one, never
         * put the host back in the pool at once. */
        bool uncertain;
        long status;             /* of the last attempt */
        unsigned attempts;
        char code[64];           /* AWS's code, "" on success */
        char request_id[80];
        char detail[400];        /* one line for logs, Slack and status; never a key */
} Ec2Result;

typedef struct Ec2 Ec2;
typedef void (*ec2_done_t)(const Ec2Result *r, void *userdata);

/* endpoint: https://ec2.REGION.amazonaws.com/ when NULL. */
int ec2_new(sd_event *e, Http *http, const char *endpoint, const char *region, Ec2 **ret);
Ec2 *ec2_free(Ec2 *c);
static inline void ec2_freep(Ec2 **c) {
        ec2_free(*c);
}

/* One RebootInstances (with its retries) at a time: -EBUSY otherwise.
 * The credentials are copied. Answers once, from the loop. */
int ec2_reboot(Ec2 *c, const AwsCredentials *cred, const char *instance_id, bool dry_run, ec2_done_t cb,
               void *userdata);
void ec2_cancel(Ec2 *c);
bool ec2_busy(const Ec2 *c);
const char *ec2_endpoint(const Ec2 *c);
/* While a call runs: what its last failed attempt said; NULL otherwise. */
const char *ec2_last_detail(const Ec2 *c);
