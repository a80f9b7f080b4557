/* One AWS Query-API call, shared by the EC2, Elastic Load Balancing v2 and
 * Auto Scaling clients: the form body (Action=...&Version=...&params, each
 * value URL-encoded), SigV4 by libcurl for a service name
 * (CURLOPT_AWS_SIGV4 "aws:amz:REGION:SERVICE", the session token in
 * X-Amz-Security-Token, which curl signs), timeouts, and the SDKs' capped
 * jittered exponential backoff for throttling, 5xx and transport errors (at
 * most AWS_QUERY_ATTEMPTS attempts); auth, permission and validation errors
 * are not retried. Answers are XML, parsed with expat under depth and size
 * limits, in either error shape: EC2's <Response><Errors><Error><Code> and
 * ELB's / Auto Scaling's <ErrorResponse><Error><Type/><Code/><Message/>
 * </Error><RequestId/></ErrorResponse>. Each client reads its own fields
 * through a small walker (element path + text callbacks). */
#pragma once

#include <systemd/sd-event.h>

#include "awscreds.h"
#include "http.h"

#define AWS_QUERY_ATTEMPTS 5
#define AWS_QUERY_BODY_MAX (64 * 1024)
#define AWS_QUERY_DEPTH_MAX 16
#define AWS_QUERY_TEXT_MAX 4096
#define AWS_QUERY_NAME_MAX 64 /* an element name, with its NUL */

typedef enum AwsCallOutcome {
        AWS_CALL_OK,
        AWS_CALL_DENIED, /* AccessDenied, UnauthorizedOperation, AuthFailure, InvalidClientTokenId,
                          * SignatureDoesNotMatch...: a human must act */
        AWS_CALL_FAILED, /* retries spent or an error retrying will not fix */
        _AWS_CALL_OUTCOME_MAX,
        _AWS_CALL_OUTCOME_INVALID = -EINVAL,
} AwsCallOutcome;

const char *aws_call_outcome_to_string(AwsCallOutcome o);

typedef struct AwsCallResult {
        AwsCallOutcome outcome;
        /* With AWS_CALL_FAILED of a call that changes something: an attempt
         * went out and was never answered (a timeout, a dropped connection,
         * a 200 we could not read). AWS may have acted on it. */
        bool uncertain;
        long status;             /* of the last attempt */
        unsigned attempts;
        char code[64];           /* AWS's code, "" on success */
        char request_id[80];
        /* one line: "elasticloadbalancing DeregisterTargets: TargetGroupNotFound: ... (HTTP 400, 1 attempt)";
         * never a key */
        char detail[400];
} AwsCallResult;

/* --- pure: the answer --------------------------------------------------- */

typedef enum AwsXmlEvent {
        AWS_XML_OPEN,  /* an element starts: text is NULL */
        AWS_XML_CLOSE, /* it ends: text is its own character data, trimmed, control characters as spaces,
                        * at most AWS_QUERY_TEXT_MAX bytes ("" for an element with children) */
} AwsXmlEvent;

/* path: the element names from the root without namespace prefixes, joined
 * by '/' ("DescribeTargetHealthResponse/DescribeTargetHealthResult/..."),
 * depth the number of names (the root is 1). */
typedef void (*aws_query_walk_t)(AwsXmlEvent ev, const char *path, unsigned depth, const char *text, void *userdata);

typedef struct AwsQueryAnswer {
        bool is_error;           /* <Response><Errors>... or <ErrorResponse>... */
        char root[AWS_QUERY_NAME_MAX];
        char code[64];
        char type[16];           /* ErrorResponse/Error/Type: "Sender" or "Receiver"; "" otherwise */
        char message[512];
        char request_id[80];
} AwsQueryAnswer;

/* Pure (expat). Walks the document (walk may be NULL), then checks it is
 * one of the Query API's documents: a success root (NAMEResponse) with a
 * request id (EC2's requestId, or ResponseMetadata/RequestId), or an error
 * in either shape with its Code. -EBADMSG with *ret_error on anything else
 * (not XML, a DOCTYPE, nesting deeper than AWS_QUERY_DEPTH_MAX); *ret only
 * written on success. The walk has run even when the document is refused. */
int aws_query_parse(const char *xml, size_t len, aws_query_walk_t walk, void *userdata, AwsQueryAnswer *ret,
                    char **ret_error);

/* Pure: a parsed answer is ACTIONResponse, not an error. -EBADMSG with
 * *ret_error otherwise. */
int aws_query_check_root(const AwsQueryAnswer *a, const char *action, char **ret_error);

/* The path below the root ("" for the root itself). */
const char *aws_query_subpath(const char *path);

/* src into dst of `size` bytes, cut short at a UTF-8 character boundary. */
void aws_query_copy_text(char *dst, size_t size, const char *src);

/* --- pure: the request -------------------------------------------------- */

/* Starts *body as "Action=ACTION&Version=VERSION"; aws_query_body_add()
 * appends "&NAME=VALUE" with the value URL-encoded (RFC 3986 unreserved
 * characters as they are, everything else %XX, as SigV4 wants it). Both
 * leave *body unchanged on failure. */
int aws_query_body_new(const char *action, const char *version, char **body);
int aws_query_body_add(char **body, const char *name, const char *value);
int aws_query_body_addf(char **body, const char *name, const char *fmt, ...) _printf_(3, 4);

/* --- pure: what an error code means for us ------------------------------ */

bool aws_query_error_is_retryable(const char *code, long http_status);
bool aws_query_error_is_denied(const char *code);

/* --- the call ----------------------------------------------------------- */

typedef struct AwsQuery AwsQuery;

/* What the last attempt said, for a client that words its own detail
 * (EC2's texts predate this engine and are relied on). */
typedef struct AwsQueryInfo {
        const char *message;        /* AWS's Message of an error answer, "" otherwise */
        const char *attempt_detail; /* the last attempt: "LABEL error CODE (HTTP 400): MESSAGE", "LABEL
                                     * unreachable: timeout after 15s", "LABEL answered HTTP 502 with ..." */
        bool retries_spent;         /* the last error was retryable */
        unsigned unanswered;        /* a changing attempt that may have gone through: its number, 0 none */
        const char *unanswered_why;
} AwsQueryInfo;

/* Called on a success document (HTTP 2xx): reads the client's fields from
 * it. Negative (-EBADMSG with *ret_error) makes it an unreadable answer,
 * retried as a 5xx is. */
typedef int (*aws_query_read_t)(const char *xml, size_t len, void *userdata, char **ret_error);
/* Once per call, from the loop. */
typedef void (*aws_query_done_t)(const AwsCallResult *r, const AwsQueryInfo *info, void *userdata);

typedef struct AwsQueryRequest {
        const char *action;   /* "DeregisterTargets": for details and logs */
        const char *body;     /* the form body (aws_query_body_new()), copied */
        const char *label;    /* what attempt details start with; NULL: "SERVICE ACTION" */
        const char *grant;    /* the permission a denial names; NULL: "SERVICE:ACTION" */
        bool changes;         /* an unanswered attempt may have acted: AwsCallResult.uncertain */
        aws_query_read_t read; /* NULL: any success document will do */
        aws_query_done_t done;
        void *userdata;
} AwsQueryRequest;

/* endpoint: https://HOST_PREFIX.REGION.amazonaws.com/ when NULL. service
 * signs ("ec2", "elasticloadbalancing", "autoscaling"). */
int aws_query_new(sd_event *e, Http *http, const char *endpoint, const char *region, const char *service,
                  const char *host_prefix, AwsQuery **ret);
AwsQuery *aws_query_free(AwsQuery *q);
static inline void aws_query_freep(AwsQuery **q) {
        aws_query_free(*q);
}

/* One call (with its retries) at a time: -EBUSY otherwise. The
 * credentials are copied. Answers once, from the loop. */
int aws_query_start(AwsQuery *q, const AwsCredentials *cred, const AwsQueryRequest *req);
void aws_query_cancel(AwsQuery *q);
bool aws_query_busy(const AwsQuery *q);
const char *aws_query_endpoint(const AwsQuery *q);
const char *aws_query_service(const AwsQuery *q);
/* While a call runs: what its last failed attempt said; NULL otherwise. */
const char *aws_query_last_detail(const AwsQuery *q);
/* Tests: the backoff between attempts (default 1 s doubling to 20 s) and
 * the per-attempt timeout (default 15 s). */
void aws_query_set_timing(AwsQuery *q, usec_t backoff_min, usec_t backoff_max, usec_t timeout);
