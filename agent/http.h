/* HTTP on the event loop: one curl multi handle driven by sd-event (socket
 * and timer callbacks), shared by Slack, AWS and the checks, so its
 * connection cache is reused across calls and nothing ever blocks the loop
 * (curl resolves names on its own thread: AsynchDNS).
 *
 * A call answers exactly once through its callback, always from the loop
 * and never from inside http_submit(); a cancelled call never answers. */
#pragma once

#include <curl/curl.h>
#include <systemd/sd-event.h>
#include <time.h>

#include "macro.h"

typedef struct Http Http;
typedef struct HttpCall HttpCall;

#define HTTP_BODY_MAX_DEFAULT (64 * 1024)

typedef struct HttpRequest {
        const char *method;        /* "GET" (default), "POST", "PUT" */
        const char *url;
        const char *body;          /* sent as is; NULL for none */
        size_t body_len;
        const char *const *headers; /* "Name: value", NULL-terminated; may hold secrets: never logged */
        usec_t timeout;            /* whole call; 0 = 10 s */
        usec_t connect_timeout;    /* 0 = min(timeout, 5 s) */
        size_t body_max;           /* bytes of response kept; more is cut (truncated = true); 0 = default */
        const char *aws_sigv4;     /* CURLOPT_AWS_SIGV4 provider string, e.g. "aws:amz:us-east-1:ec2" */
        const char *userpwd;       /* with aws_sigv4: "ACCESS_KEY:SECRET" */
        bool no_proxy;             /* never through a proxy (IMDS is link-local) */
} HttpRequest;

typedef struct HttpResponse {
        CURLcode result;           /* CURLE_OK when an HTTP answer arrived */
        long status;               /* HTTP status, 0 when none */
        char *body;                /* NUL-terminated, at most body_max bytes; never NULL */
        size_t body_len;
        bool truncated;
        char *content_type;        /* NULL when absent */
        usec_t retry_after;        /* from Retry-After; USEC_INFINITY when absent or unparsable */
        char *request_id;          /* x-amzn-requestid / x-amz-request-id / x-slack-req-id, NULL when absent */
        usec_t elapsed;            /* total time of the call */
        bool sent;                 /* the request went out (or began to): without an answer, the
                                    * server may still have acted on it */
        char error[CURL_ERROR_SIZE]; /* curl's message when result != CURLE_OK */
} HttpResponse;

/* `response` is only valid during the call. */
typedef void (*http_done_t)(const HttpResponse *response, void *userdata);

int http_new(sd_event *e, Http **ret);
/* Cancels every call in flight (their callbacks are not run). */
Http *http_free(Http *h);
static inline void http_freep(Http **h) {
        http_free(*h);
}

/* Starts a call. On success *ret_call (optional) identifies it until its
 * callback has run or it is cancelled. */
int http_submit(Http *h, const HttpRequest *req, http_done_t done, void *userdata, HttpCall **ret_call);
/* Takes NULL. The callback will not run. */
void http_cancel(HttpCall *c);
unsigned http_n_calls(const Http *h);

/* Pure: the value of a Retry-After header, delta-seconds or an HTTP-date,
 * as a delay from `now`. A date in the past is 0. -EINVAL when neither. */
int http_parse_retry_after(const char *value, time_t now, usec_t *ret);

/* Pure: the length of the longest prefix of s, at most max bytes, that does
 * not end inside a UTF-8 character: "%.*s" of text a server sent (an EC2
 * error message, say) must not leave half a character in status JSON,
 * state.json or a log line. */
static inline int http_text_prefix(const char *s, int max) {
        size_t n = strnlen(s, max > 0 ? (size_t) max : 0);

        if (n == (size_t) max)
                while (n > 0 && ((unsigned char) s[n] & 0xc0) == 0x80)
                        n--;
        return (int) n;
}

/* A one-line description of a failed call for logs and status, e.g.
 * "HTTP 503", "timeout after 10s", "connection refused". No URL (it may
 * hold a secret, as a webhook URL does). */
const char *http_describe_failure(const HttpResponse *r, char *buf, size_t size);
