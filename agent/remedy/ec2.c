/* RebootInstances: the form body, curl's SigV4, expat for the answer, and
 * the retry schedule around them. */
#include "ec2.h"

#include <ctype.h>
#include <expat.h>

#include "backoff.h"
#include "error.h"
#include "fileio.h"
#include "log.h"
#include "random.h"

#define EC2_TIMEOUT (15 * USEC_PER_SEC)
#define EC2_BACKOFF_MIN (1 * USEC_PER_SEC)
#define EC2_BACKOFF_MAX (20 * USEC_PER_SEC)
#define EC2_BODY_MAX (64 * 1024)
#define EC2_XML_DEPTH_MAX 16
#define EC2_XML_TEXT_MAX 4096

static const char *const outcome_table[_EC2_OUTCOME_MAX] = {
        [EC2_REBOOTING] = "rebooting",
        [EC2_PERMITTED] = "permitted",
        [EC2_DENIED] = "denied",
        [EC2_FAILED] = "failed",
};

const char *ec2_outcome_to_string(Ec2Outcome o) {
        return o >= 0 && o < _EC2_OUTCOME_MAX ? outcome_table[o] : NULL;
}

/* --- the XML answer ------------------------------------------------------ */

typedef struct XmlParse {
        XML_Parser parser;
        Ec2Response *r;
        unsigned depth;
        char path[EC2_XML_DEPTH_MAX][48]; /* element names from the root */
        char *text;                       /* character data of the current leaf */
        size_t text_len;
        bool root_seen, too_deep, oom;
        bool success_root, error_root;
        bool have_request_id;
} XmlParse;

/* Element names without their namespace prefix (EC2 uses a default
 * namespace, but a prefix would be just as valid XML). */
static const char *local_name(const char *name) {
        const char *c = strrchr(name, ':');
        return c ? c + 1 : name;
}

static void xml_start(void *userdata, const XML_Char *name, const XML_Char **attrs) {
        XmlParse *x = userdata;
        const char *n = local_name(name);

        if (x->depth >= EC2_XML_DEPTH_MAX) {
                x->too_deep = true;
                XML_StopParser(x->parser, XML_FALSE);
                return;
        }
        if (x->depth == 0) {
                x->root_seen = true;
                x->error_root = streq(n, "Response");
                x->success_root = !x->error_root && strlen(n) > 8 && streq(n + strlen(n) - 8, "Response");
        }
        snprintf(x->path[x->depth], sizeof x->path[x->depth], "%s", n);
        x->depth++;
        x->text_len = 0;
}

static void copy_text(char *dst, size_t size, const char *src, size_t len) {
        size_t i, o = 0;

        /* trimmed, control characters as spaces: it goes into logs and Slack */
        while (len > 0 && isspace((unsigned char) *src)) {
                src++;
                len--;
        }
        while (len > 0 && isspace((unsigned char) src[len - 1]))
                len--;
        for (i = 0; i < len && o + 1 < size; i++)
                dst[o++] = (unsigned char) src[i] < 0x20 || src[i] == 0x7f ? ' ' : src[i];
        /* cut short: not inside a character (expat hands us UTF-8) */
        if (i < len)
                while (o > 0 && ((unsigned char) src[o] & 0xc0) == 0x80)
                        o--;
        dst[o] = '\0';
}

static void xml_end(void *userdata, const XML_Char *name) {
        XmlParse *x = userdata;
        const char *n = local_name(name);
        const char *t = x->text ? x->text : "";

        if (x->depth == 0)
                return;
        x->depth--;
        /* Success: <XResponse><requestId/><return/></XResponse>. Error:
         * <Response><Errors><Error><Code/><Message/></Error></Errors><RequestID/></Response>. */
        if (x->success_root && x->depth == 1 && streq(n, "requestId")) {
                copy_text(x->r->request_id, sizeof x->r->request_id, t, x->text_len);
                x->have_request_id = true;
        } else if (x->success_root && x->depth == 1 && streq(n, "return")) {
                char v[16];
                copy_text(v, sizeof v, t, x->text_len);
                x->r->returned_true = streq(v, "true");
        } else if (x->error_root && x->depth == 1 && (streq(n, "RequestID") || streq(n, "RequestId"))) {
                copy_text(x->r->request_id, sizeof x->r->request_id, t, x->text_len);
                x->have_request_id = true;
        } else if (x->error_root && x->depth == 3 && streq(x->path[1], "Errors") && streq(x->path[2], "Error")) {
                /* the first error is the one that counts */
                if (streq(n, "Code") && !x->r->code[0])
                        copy_text(x->r->code, sizeof x->r->code, t, x->text_len);
                else if (streq(n, "Message") && !x->r->message[0])
                        copy_text(x->r->message, sizeof x->r->message, t, x->text_len);
        }
        x->text_len = 0;
}

static void xml_text(void *userdata, const XML_Char *s, int len) {
        XmlParse *x = userdata;
        char *p;

        if (len <= 0 || x->text_len >= EC2_XML_TEXT_MAX)
                return;
        /* a leaf this long is not one of ours: keep its start, which expat
         * may hand over in one piece far longer than the cap */
        if ((size_t) len > EC2_XML_TEXT_MAX - x->text_len)
                len = (int) (EC2_XML_TEXT_MAX - x->text_len);
        p = realloc(x->text, x->text_len + (size_t) len + 1);
        if (!p) {
                x->oom = true;
                XML_StopParser(x->parser, XML_FALSE);
                return;
        }
        x->text = p;
        memcpy(x->text + x->text_len, s, (size_t) len);
        x->text_len += (size_t) len;
        x->text[x->text_len] = '\0';
}

/* DOCTYPE means entity games (billion laughs); EC2 never sends one. */
static void xml_doctype(void *userdata, const XML_Char *name, const XML_Char *sysid, const XML_Char *pubid,
                        int has_internal_subset) {
        XmlParse *x = userdata;
        x->too_deep = true;
        XML_StopParser(x->parser, XML_FALSE);
}

int ec2_parse_response(const char *xml, size_t len, Ec2Response *ret, char **ret_error) {
        Ec2Response r = {};
        XmlParse x = { .r = &r };
        enum XML_Status st;
        int k = 0;

        if (!xml || len == 0)
                return error_set(ret_error, -EBADMSG, "empty answer");
        if (len > INT32_MAX)
                return error_set(ret_error, -EBADMSG, "answer too large");
        x.parser = XML_ParserCreate(NULL);
        if (!x.parser)
                return -ENOMEM;
        XML_SetUserData(x.parser, &x);
        XML_SetElementHandler(x.parser, xml_start, xml_end);
        XML_SetCharacterDataHandler(x.parser, xml_text);
        XML_SetStartDoctypeDeclHandler(x.parser, xml_doctype);
        st = XML_Parse(x.parser, xml, (int) len, XML_TRUE);
        if (x.oom)
                k = -ENOMEM;
        else if (x.too_deep)
                k = error_set(ret_error, -EBADMSG, "not an EC2 answer (DOCTYPE or nesting too deep)");
        else if (st != XML_STATUS_OK) {
                if (ret_error && asprintf(ret_error, "not XML: %s at line %lu",
                                          XML_ErrorString(XML_GetErrorCode(x.parser)),
                                          (unsigned long) XML_GetCurrentLineNumber(x.parser)) < 0)
                        *ret_error = NULL;
                k = -EBADMSG;
        } else if (x.error_root && !r.code[0])
                k = error_set(ret_error, -EBADMSG, "an error answer without Errors/Error/Code");
        else if (!x.error_root && !x.success_root)
                k = error_set(ret_error, -EBADMSG, "not an EC2 answer (unexpected root element)");
        else if (x.success_root && !x.have_request_id)
                k = error_set(ret_error, -EBADMSG, "a success answer without requestId");
        XML_ParserFree(x.parser);
        free(x.text);
        if (k < 0)
                return k;
        r.is_error = x.error_root;
        *ret = r;
        return 0;
}

static bool instance_id_valid(const char *id) {
        size_t n;

        if (!id || strncmp(id, "i-", 2) != 0)
                return false;
        n = strlen(id + 2);
        if (n != 8 && n != 17) /* the two forms EC2 has issued */
                return false;
        for (const char *p = id + 2; *p; p++)
                if (!isxdigit((unsigned char) *p) || isupper((unsigned char) *p))
                        return false;
        return true;
}

int ec2_reboot_body(const char *instance_id, bool dry_run, char **ret) {
        if (!instance_id_valid(instance_id))
                return -EINVAL;
        /* nothing here needs URL-encoding: the id is [a-z0-9-] */
        if (asprintf(ret, "Action=RebootInstances&Version=" EC2_API_VERSION "&InstanceId.1=%s%s", instance_id,
                     dry_run ? "&DryRun=true" : "") < 0)
                return -ENOMEM;
        return 0;
}

static bool in_list(const char *s, const char *const *l) {
        for (; s && *l; l++)
                if (streq(s, *l))
                        return true;
        return false;
}

bool ec2_error_is_retryable(const char *code, long http_status) {
        static const char *const retry[] = {
                "RequestLimitExceeded", "Throttling", "ThrottlingException", "InternalError", "InternalFailure",
                "Unavailable", "ServiceUnavailable", "RequestTimeout", "RequestTimeoutException", NULL,
        };
        if (in_list(code, retry))
                return true;
        return http_status >= 500 && !ec2_error_is_denied(code);
}

bool ec2_error_is_denied(const char *code) {
        static const char *const denied[] = {
                "UnauthorizedOperation", "AuthFailure", "OptInRequired", "Blocked", "SignatureDoesNotMatch",
                "InvalidClientTokenId", "ExpiredToken", "RequestExpired", "MissingAuthenticationToken",
                "IncompleteSignature", "AccessDenied", "AccessDeniedException", NULL,
        };
        return in_list(code, denied);
}

/* --- the client --------------------------------------------------------- */

struct Ec2 {
        sd_event *event;
        Http *http;
        char *endpoint, *sigv4;

        /* the call in progress */
        bool busy;
        AwsCredentials cred;
        char *body;
        bool dry_run;
        unsigned attempt;
        HttpCall *call;
        sd_event_source *retry_timer;
        ec2_done_t cb;
        void *userdata;
        Ec2Result last;
        unsigned unanswered;       /* a reboot attempt that may have gone through: its number, 0 none */
        char unanswered_why[128];
};

int ec2_new(sd_event *e, Http *http, const char *endpoint, const char *region, Ec2 **ret) {
        _cleanup_(ec2_freep) Ec2 *c = NULL;

        if (isempty(region))
                return -EINVAL;
        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        c->event = sd_event_ref(e);
        c->http = http;
        if (endpoint ? !(c->endpoint = strdup(endpoint))
                     : asprintf(&c->endpoint, "https://ec2.%s.amazonaws.com/", region) < 0)
                return -ENOMEM;
        if (asprintf(&c->sigv4, "aws:amz:%s:ec2", region) < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(c);
        return 0;
}

static void call_clear(Ec2 *c) {
        http_cancel(c->call);
        c->call = NULL;
        c->retry_timer = sd_event_source_disable_unref(c->retry_timer);
        aws_credentials_done(&c->cred);
        free(c->body);
        c->body = NULL;
        c->busy = false;
        c->attempt = 0;
        c->unanswered = 0;
        c->unanswered_why[0] = '\0';
        c->cb = NULL;
        c->userdata = NULL;
}

Ec2 *ec2_free(Ec2 *c) {
        if (!c)
                return NULL;
        call_clear(c);
        free(c->endpoint);
        free(c->sigv4);
        sd_event_unref(c->event);
        free(c);
        return NULL;
}

void ec2_cancel(Ec2 *c) {
        if (c)
                call_clear(c);
}

bool ec2_busy(const Ec2 *c) {
        return c && c->busy;
}

const char *ec2_endpoint(const Ec2 *c) {
        return c->endpoint;
}

const char *ec2_last_detail(const Ec2 *c) {
        return c && c->busy && c->attempt > 0 && c->last.detail[0] ? c->last.detail : NULL;
}

static void finish(Ec2 *c, Ec2Outcome o) {
        ec2_done_t cb = c->cb;
        void *userdata = c->userdata;
        Ec2Result r = c->last;

        if (o == EC2_FAILED && c->unanswered > 0) {
                /* Failing here would let the host rejoin the pool while EC2
                 * may still reboot it: expect the reboot instead. */
                char last[sizeof r.detail];
                snprintf(last, sizeof last, "%s", r.detail);
                snprintf(r.detail, sizeof r.detail,
                         "EC2 never answered attempt %u of %u (%.*s), then: %.*s; the reboot may have been "
                         "accepted, waiting for it",
                         c->unanswered, EC2_ATTEMPTS, http_text_prefix(c->unanswered_why, 100), c->unanswered_why,
                         http_text_prefix(last, 180), last);
                o = EC2_REBOOTING;
                r.uncertain = true;
                /* the last answer's id names a failed attempt, not a reboot */
                r.request_id[0] = '\0';
                r.code[0] = '\0';
        }
        r.outcome = o;
        r.attempts = c->attempt;
        call_clear(c);
        cb(&r, userdata);
}

static int attempt_start(Ec2 *c);

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        Ec2 *c = userdata;
        int k;

        c->retry_timer = sd_event_source_disable_unref(c->retry_timer);
        k = attempt_start(c);
        if (k < 0) {
                snprintf(c->last.detail, sizeof c->last.detail, "cannot start the EC2 request: %s", strerror(-k));
                finish(c, EC2_FAILED);
        }
        return 0;
}

static usec_t backoff(unsigned attempt) {
        return backoff_delay(EC2_BACKOFF_MIN, EC2_BACKOFF_MAX, attempt > 0 ? attempt - 1 : 0, random_u64());
}

static void on_answer(const HttpResponse *resp, void *userdata) {
        Ec2 *c = userdata;
        _cleanup_(freep) char *error = NULL;
        Ec2Response r = {};
        char why[128];
        bool retry = false;
        int k;

        c->call = NULL;
        c->last = (Ec2Result) { .status = resp->status };
        if (resp->request_id)
                snprintf(c->last.request_id, sizeof c->last.request_id, "%s", resp->request_id);

        if (resp->result != CURLE_OK) {
                snprintf(c->last.detail, sizeof c->last.detail, "EC2 unreachable: %s",
                         http_describe_failure(resp, why, sizeof why));
                retry = true;
                /* sent, never answered: EC2 may have acted on it */
                if (!c->dry_run && resp->sent && c->unanswered == 0) {
                        c->unanswered = c->attempt;
                        snprintf(c->unanswered_why, sizeof c->unanswered_why, "%s", why);
                }
        } else if ((k = ec2_parse_response(resp->body, resp->body_len, &r, &error)) < 0) {
                snprintf(c->last.detail, sizeof c->last.detail, "EC2 answered HTTP %ld with %s", resp->status,
                         k == -EBADMSG ? strna(error) : strerror(-k));
                retry = resp->status >= 500 || resp->status == 200;
                /* a 200 we cannot read is most likely a reboot EC2 took */
                if (!c->dry_run && resp->status == 200 && c->unanswered == 0) {
                        c->unanswered = c->attempt;
                        snprintf(c->unanswered_why, sizeof c->unanswered_why, "HTTP 200 with %s",
                                 k == -EBADMSG ? strna(error) : strerror(-k));
                }
        } else {
                if (r.request_id[0])
                        snprintf(c->last.request_id, sizeof c->last.request_id, "%s", r.request_id);
                snprintf(c->last.code, sizeof c->last.code, "%s", r.code);
                if (!r.is_error && resp->status == 200 && r.returned_true && !c->dry_run) {
                        snprintf(c->last.detail, sizeof c->last.detail, "RebootInstances accepted (request %s)",
                                 c->last.request_id);
                        finish(c, EC2_REBOOTING);
                        return;
                }
                if (r.is_error && c->dry_run && streq(r.code, "DryRunOperation")) {
                        snprintf(c->last.detail, sizeof c->last.detail,
                                 "reboot permitted (DryRun: DryRunOperation, request %s)", c->last.request_id);
                        finish(c, EC2_PERMITTED);
                        return;
                }
                if (r.is_error && ec2_error_is_denied(r.code)) {
                        /* An expired request is this host's clock (or expired
                         * keys), not a missing permission. */
                        snprintf(c->last.detail, sizeof c->last.detail, "reboot denied: %s (HTTP %ld): %.*s; %s", r.code,
                                 resp->status, http_text_prefix(r.message, 160), r.message,
                                 streq(r.code, "RequestExpired")
                                         ? "check this host's clock (NTP): AWS refuses a signature dated more than "
                                           "15 minutes off, or keys past their expiry"
                                         : "grant ec2:RebootInstances on this instance");
                        finish(c, EC2_DENIED);
                        return;
                }
                if (r.is_error)
                        snprintf(c->last.detail, sizeof c->last.detail, "EC2 error %s (HTTP %ld): %.*s", r.code,
                                 resp->status, http_text_prefix(r.message, 200), r.message);
                else
                        snprintf(c->last.detail, sizeof c->last.detail, "EC2 answered HTTP %ld without <return>true",
                                 resp->status);
                retry = r.is_error && ec2_error_is_retryable(r.code, resp->status);
        }

        if (!retry || c->attempt >= EC2_ATTEMPTS) {
                if (retry)
                        strncat(c->last.detail, "; giving up after retries",
                                sizeof c->last.detail - strlen(c->last.detail) - 1);
                finish(c, EC2_FAILED);
                return;
        }
        log_warning("ec2: %s; attempt %u of %u", c->last.detail, c->attempt, EC2_ATTEMPTS);
        k = sd_event_add_time_relative(c->event, &c->retry_timer, CLOCK_MONOTONIC, backoff(c->attempt), USEC_PER_MSEC,
                                       on_retry, c);
        if (k < 0)
                finish(c, EC2_FAILED);
}

static int attempt_start(Ec2 *c) {
        _cleanup_(freep) char *userpwd = NULL, *token_header = NULL;
        const char *headers[3] = { "Content-Type: application/x-www-form-urlencoded; charset=utf-8", NULL, NULL };
        HttpRequest req = {
                .method = "POST",
                .url = c->endpoint,
                .body = c->body,
                .body_len = strlen(c->body),
                .timeout = EC2_TIMEOUT,
                .body_max = EC2_BODY_MAX,
                .aws_sigv4 = c->sigv4,
                .use_env_proxy = true, /* an AWS API: https_proxy/no_proxy, as the AWS SDKs */
        };
        int k;

        if (asprintf(&userpwd, "%s:%s", c->cred.access_key, c->cred.secret_key) < 0)
                return -ENOMEM;
        if (c->cred.session_token) {
                /* a custom header: curl signs it */
                if (asprintf(&token_header, "X-Amz-Security-Token: %s", c->cred.session_token) < 0) {
                        free_wiped(TAKE_PTR(userpwd), strlen(c->cred.access_key) + strlen(c->cred.secret_key) + 1);
                        return -ENOMEM;
                }
                headers[1] = token_header;
        }
        req.userpwd = userpwd;
        req.headers = headers;
        c->attempt++;
        k = http_submit(c->http, &req, on_answer, c, &c->call);
        free_wiped(TAKE_PTR(userpwd), strlen(c->cred.access_key) + strlen(c->cred.secret_key) + 1);
        if (token_header)
                free_wiped(TAKE_PTR(token_header), strlen(c->cred.session_token) + 22);
        return k;
}

int ec2_reboot(Ec2 *c, const AwsCredentials *cred, const char *instance_id, bool dry_run, ec2_done_t cb,
               void *userdata) {
        int k;

        if (c->busy)
                return -EBUSY;
        if (!cred || isempty(cred->access_key) || isempty(cred->secret_key) || !cb)
                return -EINVAL;
        k = ec2_reboot_body(instance_id, dry_run, &c->body);
        if (k < 0)
                return k;
        k = aws_credentials_copy(cred, &c->cred);
        if (k < 0) {
                free(TAKE_PTR(c->body));
                return k;
        }
        c->busy = true;
        c->dry_run = dry_run;
        c->cb = cb;
        c->userdata = userdata;
        c->attempt = 0;
        c->last = (Ec2Result) {};
        k = attempt_start(c);
        if (k < 0)
                call_clear(c);
        return k;
}
