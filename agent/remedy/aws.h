/* AWS for the agent: who we are (instance id and region, from [aws] or
 * IMDSv2), which credentials (the chain in awscreds.h, the instance role
 * refreshed before it expires), and the EC2 client. At start, and on
 * monkeyctl test-reboot, a DryRun RebootInstances proves the permission,
 * so a missing IAM grant is found (and alerted) at start, not at the
 * moment of need. */
#pragma once

#include <json-c/json.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "ec2.h"
#include "http.h"

typedef struct Aws Aws;

typedef enum AwsPermission {
        AWS_PERMISSION_UNKNOWN,
        AWS_PERMISSION_CHECKING,
        AWS_PERMISSION_PERMITTED,
        AWS_PERMISSION_DENIED,
        AWS_PERMISSION_ERROR,      /* the self-test could not tell (EC2 unreachable, ...) */
        _AWS_PERMISSION_MAX,
        _AWS_PERMISSION_INVALID = -EINVAL,
} AwsPermission;

const char *aws_permission_to_string(AwsPermission p);

/* The self-test's verdict, each time it changes (for the alert). */
typedef void (*aws_permission_changed_t)(Aws *a, AwsPermission p, const char *detail, void *userdata);

/* Local credentials are looked up now: a credentials file that exists
 * but is unreadable, too open or malformed fails the start
 * (*ret_error says which and why). */
int aws_new(sd_event *e, Http *http, const Config *c, Aws **ret, char **ret_error);
Aws *aws_free(Aws *a);
static inline void aws_freep(Aws **a) {
        aws_free(*a);
}

void aws_set_permission_handler(Aws *a, aws_permission_changed_t h, void *userdata);

/* Identity and role credentials from IMDS as needed, then the self-test. */
int aws_start(Aws *a);

/* RebootInstances (dry_run: the self-test). Answers once, from the loop;
 * waits for the identity and credentials when they are still coming.
 * -EBUSY while another call runs. */
int aws_reboot(Aws *a, bool dry_run, ec2_done_t cb, void *userdata);
void aws_cancel(Aws *a);

/* The identity and fresh credentials, fetched as needed, then cb once
 * (it may run before this returns) and nothing is sent: the caller writes
 * down the reboot it is about to ask for, then calls aws_reboot(), which
 * goes out at once. The place is kept for that aws_reboot() (no self-test
 * in between) until aws_reboot() or aws_cancel(). -EBUSY while another
 * call runs. */
typedef void (*aws_ready_t)(Aws *a, void *userdata);
int aws_when_ready(Aws *a, aws_ready_t cb, void *userdata);

/* For the routing calls (target groups, Auto Scaling, awsroute.h):
 * cb once the instance id, region and fresh credentials are known, at
 * once when they are (before this returns), else from the loop. One
 * waiter; -EBUSY when another userdata waits. Not bounded here: the
 * caller's own deadline is. */
typedef void (*aws_identity_t)(Aws *a, void *userdata);
int aws_need_identity(Aws *a, aws_identity_t cb, void *userdata);
void aws_forget_identity_waiter(Aws *a, void *userdata);
/* NULL until found; borrowed (copy for a call). */
const AwsCredentials *aws_credentials(const Aws *a);
const char *aws_region(const Aws *a);
/* A call was told ExpiredToken: role credentials are fetched again at
 * the next aws_need_identity(). */
void aws_credentials_expired(Aws *a);

/* What the call in progress waits for: "IMDS" (instance identity or role
 * credentials) or "EC2", NULL when none runs; *ret_last_error the last
 * failure seen there (borrowed, NULL when none yet). */
const char *aws_waiting_for(Aws *a, const char **ret_last_error);

/* Run the self-test now; the answer also goes to cb (may be NULL). */
int aws_self_test(Aws *a, ec2_done_t cb, void *userdata);

const char *aws_instance_id(const Aws *a); /* NULL until known */
const char *aws_local_ipv4(const Aws *a);  /* from IMDS; NULL until known or when none */
AwsPermission aws_permission(const Aws *a);

/* {"instance_id","region","endpoint","identity","credentials":{"source",
 *  "origin","expires"},"permission","permission_detail","checked_at" (RFC
 *  3339 UTC),"checked_at_unix","imds":{...}}: never a key. */
json_object *aws_status_json(const Aws *a);
