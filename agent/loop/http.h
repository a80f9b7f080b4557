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
        /* false (the zero value): always direct, whatever http_proxy says:
         * the local app's checks and IMDS (link-local) must never meet a
         * proxy. true: through the proxy the environment names for this URL
         * (http_env_proxy()), as curl and the AWS SDKs do: Slack and the AWS
         * APIs, which a host behind an egress proxy reaches only through it. */
        bool use_env_proxy;
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
        long proxy_status;         /* the proxy's answer to CONNECT (https through a proxy), 0 when none */
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

/* The proxy a use_env_proxy call takes, read from the environment the way
 * curl and the AWS SDKs read it: for an https:// URL https_proxy, else
 * HTTPS_PROXY; for http:// http_proxy, else HTTP_PROXY (curl alone ignores
 * HTTP_PROXY, a CGI concern that a daemon does not have); then all_proxy,
 * ALL_PROXY. The first variable that is set wins, and set to "" it means
 * direct (so `https_proxy=` overrides an inherited HTTPS_PROXY). no_proxy,
 * else NO_PROXY, lists the hosts that stay direct (http_no_proxy_match()).
 * The decision is ours, not curl's, so the log says what the call does. */
typedef struct HttpEnvProxy {
        const char *proxy;         /* what the variable says; may hold a password: never logged as is */
        const char *proxy_var;     /* the variable it came from, NULL when none */
        const char *no_proxy;      /* NULL when neither variable is set */
        const char *no_proxy_var;
        bool exempt;               /* no_proxy names the URL's host */
        const char *use;           /* what the call takes: the proxy, or "" for direct */
} HttpEnvProxy;

typedef const char *(*http_getenv_t)(const char *name);

/* Pure but for `lookup` (http_getenv in the daemon). */
void http_env_proxy(const char *url, http_getenv_t lookup, HttpEnvProxy *ret);
const char *http_getenv(const char *name);

/* Pure: whether `no_proxy` keeps `host` direct, by curl's rules (plus Go's
 * "*.corp"): entries separated by commas or blanks; "*" is every host; a
 * name matches itself and its subdomains (a leading "." or "*." and a
 * trailing dot are ignored, case too); an IP address matches itself;
 * "ADDR/BITS" a CIDR range (IPv4 or IPv6). `host` as in a URL: an IPv6
 * address may be in brackets. */
bool http_no_proxy_match(const char *no_proxy, const char *host);

/* A proxy URL for logs: scheme, host and port, never the user or password
 * ("http://proxy.corp:3128"); "(unparsable)" when curl cannot parse it. */
const char *http_proxy_display(const char *proxy, char *buf, size_t size);

/* For a start-up log line about calls to `url` that opt in to the
 * environment's proxy: "through the proxy http://proxy.corp:3128
 * (https_proxy)", "direct (no_proxy names slack.corp)", or NULL when the
 * environment names no proxy. No credentials. */
const char *http_env_proxy_describe(const char *url, http_getenv_t lookup, char *buf, size_t size);
