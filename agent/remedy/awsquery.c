/* One Query-API call: the form body, curl's SigV4, expat for the answer,
 * and the retry schedule around them. */
#include "awsquery.h"

#include <ctype.h>
#include <expat.h>
#include <stdarg.h>

#include "backoff.h"
#include "error.h"
#include "fileio.h"
#include "log.h"
#include "random.h"

#define AWS_QUERY_TIMEOUT (15 * USEC_PER_SEC)
#define AWS_QUERY_BACKOFF_MIN (1 * USEC_PER_SEC)
#define AWS_QUERY_BACKOFF_MAX (20 * USEC_PER_SEC)
#define AWS_QUERY_PATH_MAX (AWS_QUERY_DEPTH_MAX * AWS_QUERY_NAME_MAX)

static const char *const outcome_table[_AWS_CALL_OUTCOME_MAX] = {
        [AWS_CALL_OK] = "ok",
        [AWS_CALL_DENIED] = "denied",
        [AWS_CALL_FAILED] = "failed",
};

const char *aws_call_outcome_to_string(AwsCallOutcome o) {
        return o >= 0 && o < _AWS_CALL_OUTCOME_MAX ? outcome_table[o] : NULL;
}

/* --- the XML answer ------------------------------------------------------ */

typedef enum RootKind {
        ROOT_NONE,
        ROOT_SUCCESS,      /* NAMEResponse */
        ROOT_EC2_ERROR,    /* Response/Errors/Error */
        ROOT_QUERY_ERROR,  /* ErrorResponse/Error */
} RootKind;

typedef struct XmlParse {
        XML_Parser parser;
        aws_query_walk_t walk;
        void *userdata;
        AwsQueryAnswer *a;
        unsigned depth;
        char path[AWS_QUERY_PATH_MAX];      /* "Root/A/B" */
        size_t path_end[AWS_QUERY_DEPTH_MAX]; /* where each level's name ends in path */
        char *text;                         /* character data of the current element */
        size_t text_len;
        char clean[AWS_QUERY_TEXT_MAX + 1];
        RootKind root;
        bool refused, oom, have_request_id;
        const char *refused_why;
} XmlParse;

/* Element names without their namespace prefix (AWS uses a default
 * namespace, but a prefix would be just as valid XML). */
static const char *local_name(const char *name) {
        const char *c = strrchr(name, ':');
        return c ? c + 1 : name;
}

static void refuse(XmlParse *x, const char *why) {
        x->refused = true;
        x->refused_why = why;
        XML_StopParser(x->parser, XML_FALSE);
}

static bool ends_with(const char *s, const char *suffix) {
        size_t n = strlen(s), m = strlen(suffix);
        return n > m && streq(s + n - m, suffix);
}

static void xml_start(void *userdata, const XML_Char *name, const XML_Char **attrs) {
        XmlParse *x = userdata;
        const char *n = local_name(name);
        size_t at = x->depth > 0 ? x->path_end[x->depth - 1] : 0, len = strlen(n);

        if (x->refused || x->oom)
                return;
        if (x->depth >= AWS_QUERY_DEPTH_MAX)
                return refuse(x, "nesting too deep");
        if (len == 0 || len >= AWS_QUERY_NAME_MAX)
                return refuse(x, "element name too long");
        if (x->depth == 0) {
                snprintf(x->a->root, sizeof x->a->root, "%s", n);
                x->root = streq(n, "Response")        ? ROOT_EC2_ERROR
                          : streq(n, "ErrorResponse") ? ROOT_QUERY_ERROR
                          : ends_with(n, "Response")  ? ROOT_SUCCESS
                                                      : ROOT_NONE;
        } else
                x->path[at++] = '/';
        memcpy(x->path + at, n, len + 1);
        x->path_end[x->depth++] = at + len;
        x->text_len = 0;
        if (x->walk)
                x->walk(AWS_XML_OPEN, x->path, x->depth, NULL, x->userdata);
}

static void copy_clean(char *dst, size_t size, const char *src, size_t len) {
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

void aws_query_copy_text(char *dst, size_t size, const char *src) {
        if (size == 0)
                return;
        copy_clean(dst, size, src, strlen(src));
}

/* The fields every Query answer has, by the shape of its root. */
static void answer_field(XmlParse *x, const char *sub, const char *t) {
        AwsQueryAnswer *a = x->a;

        switch (x->root) {
        case ROOT_SUCCESS:
                if (streq(sub, "requestId") || streq(sub, "ResponseMetadata/RequestId")) {
                        aws_query_copy_text(a->request_id, sizeof a->request_id, t);
                        x->have_request_id = true;
                }
                break;
        case ROOT_EC2_ERROR:
                if (streq(sub, "RequestID") || streq(sub, "RequestId")) {
                        aws_query_copy_text(a->request_id, sizeof a->request_id, t);
                        x->have_request_id = true;
                } else if (streq(sub, "Errors/Error/Code") && !a->code[0]) /* the first error counts */
                        aws_query_copy_text(a->code, sizeof a->code, t);
                else if (streq(sub, "Errors/Error/Message") && !a->message[0])
                        aws_query_copy_text(a->message, sizeof a->message, t);
                break;
        case ROOT_QUERY_ERROR:
                if (streq(sub, "RequestId")) {
                        aws_query_copy_text(a->request_id, sizeof a->request_id, t);
                        x->have_request_id = true;
                } else if (streq(sub, "Error/Code") && !a->code[0])
                        aws_query_copy_text(a->code, sizeof a->code, t);
                else if (streq(sub, "Error/Message") && !a->message[0])
                        aws_query_copy_text(a->message, sizeof a->message, t);
                else if (streq(sub, "Error/Type") && !a->type[0])
                        aws_query_copy_text(a->type, sizeof a->type, t);
                break;
        case ROOT_NONE:
                break;
        }
}

static void xml_end(void *userdata, const XML_Char *name) {
        XmlParse *x = userdata;

        if (x->refused || x->oom || x->depth == 0)
                return;
        copy_clean(x->clean, sizeof x->clean, x->text ? x->text : "", x->text_len);
        answer_field(x, aws_query_subpath(x->path), x->clean);
        if (x->walk)
                x->walk(AWS_XML_CLOSE, x->path, x->depth, x->clean, x->userdata);
        x->depth--;
        x->path[x->depth > 0 ? x->path_end[x->depth - 1] : 0] = '\0';
        x->text_len = 0;
}

static void xml_text(void *userdata, const XML_Char *s, int len) {
        XmlParse *x = userdata;
        char *p;

        if (len <= 0 || x->text_len >= AWS_QUERY_TEXT_MAX || x->refused || x->oom)
                return;
        /* a leaf this long is not one of ours: keep its start, which expat
         * may hand over in one piece far longer than the cap, whole
         * characters only */
        if ((size_t) len > AWS_QUERY_TEXT_MAX - x->text_len) {
                len = (int) (AWS_QUERY_TEXT_MAX - x->text_len);
                while (len > 0 && ((unsigned char) s[len] & 0xc0) == 0x80)
                        len--;
        }
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

/* DOCTYPE means entity games (billion laughs); AWS never sends one. */
static void xml_doctype(void *userdata, const XML_Char *name, const XML_Char *sysid, const XML_Char *pubid,
                        int has_internal_subset) {
        refuse(userdata, "DOCTYPE");
}

const char *aws_query_subpath(const char *path) {
        const char *s = strchr(path, '/');
        return s ? s + 1 : "";
}

int aws_query_parse(const char *xml, size_t len, aws_query_walk_t walk, void *userdata, AwsQueryAnswer *ret,
                    char **ret_error) {
        AwsQueryAnswer a = {};
        XmlParse x = { .walk = walk, .userdata = userdata, .a = &a };
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
        else if (x.refused)
                k = error_set(ret_error, -EBADMSG, "not an AWS answer (%s)", x.refused_why);
        else if (st != XML_STATUS_OK) {
                if (ret_error && asprintf(ret_error, "not XML: %s at line %lu",
                                          XML_ErrorString(XML_GetErrorCode(x.parser)),
                                          (unsigned long) XML_GetCurrentLineNumber(x.parser)) < 0)
                        *ret_error = NULL;
                k = -EBADMSG;
        } else if (x.root == ROOT_EC2_ERROR && !a.code[0])
                k = error_set(ret_error, -EBADMSG, "an error answer without Errors/Error/Code");
        else if (x.root == ROOT_QUERY_ERROR && !a.code[0])
                k = error_set(ret_error, -EBADMSG, "an error answer without Error/Code");
        else if (x.root == ROOT_NONE)
                k = error_set(ret_error, -EBADMSG, "not an AWS answer (unexpected root element <%s>)", a.root);
        else if (x.root == ROOT_SUCCESS && !x.have_request_id)
                k = error_set(ret_error, -EBADMSG,
                              "a success answer without requestId or ResponseMetadata/RequestId");
        XML_ParserFree(x.parser);
        free(x.text);
        if (k < 0)
                return k;
        a.is_error = x.root != ROOT_SUCCESS;
        *ret = a;
        return 0;
}

int aws_query_check_root(const AwsQueryAnswer *a, const char *action, char **ret_error) {
        size_t n = strlen(action);

        if (a->is_error)
                return error_set(ret_error, -EBADMSG, "an error answer (%s) where %sResponse was expected", a->code,
                                 action);
        if (strncmp(a->root, action, n) != 0 || !streq(a->root + n, "Response"))
                return error_set(ret_error, -EBADMSG, "<%s> where %sResponse was expected", a->root, action);
        return 0;
}

/* --- the form body ------------------------------------------------------- */

static bool unreserved(unsigned char c) {
        return isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~';
}

static int body_append(char **body, const char *name, const char *value) {
        static const char hex[] = "0123456789ABCDEF";
        size_t have = strlen(*body), n = strlen(name), need = have + 1 + n + 1 + 3 * strlen(value) + 1, o;
        char *b;

        b = malloc(need);
        if (!b)
                return -ENOMEM;
        memcpy(b, *body, have);
        o = have;
        b[o++] = '&';
        memcpy(b + o, name, n);
        o += n;
        b[o++] = '=';
        for (const unsigned char *p = (const unsigned char *) value; *p; p++)
                if (unreserved(*p))
                        b[o++] = (char) *p;
                else {
                        b[o++] = '%';
                        b[o++] = hex[*p >> 4];
                        b[o++] = hex[*p & 15];
                }
        b[o] = '\0';
        free(*body);
        *body = b;
        return 0;
}

static bool param_name_valid(const char *s) {
        if (isempty(s))
                return false;
        for (; *s; s++)
                if (!isalnum((unsigned char) *s) && *s != '.')
                        return false;
        return true;
}

/* "2015-12-01" */
static bool version_valid(const char *s) {
        return !isempty(s) && strspn(s, "0123456789-") == strlen(s);
}

int aws_query_body_new(const char *action, const char *version, char **body) {
        if (!param_name_valid(action) || !version_valid(version))
                return -EINVAL;
        if (asprintf(body, "Action=%s&Version=%s", action, version) < 0)
                return -ENOMEM;
        return 0;
}

int aws_query_body_add(char **body, const char *name, const char *value) {
        if (!body || !*body || !param_name_valid(name) || !value)
                return -EINVAL;
        return body_append(body, name, value);
}

int aws_query_body_addf(char **body, const char *name, const char *fmt, ...) {
        _cleanup_(freep) char *value = NULL;
        va_list ap;
        int k;

        va_start(ap, fmt);
        k = vasprintf(&value, fmt, ap);
        va_end(ap);
        if (k < 0) {
                value = NULL;
                return -ENOMEM;
        }
        return aws_query_body_add(body, name, value);
}

/* --- error codes --------------------------------------------------------- */

static bool in_list(const char *s, const char *const *l) {
        for (; s && *l; l++)
                if (streq(s, *l))
                        return true;
        return false;
}

bool aws_query_error_is_retryable(const char *code, long http_status) {
        static const char *const retry[] = {
                "RequestLimitExceeded", "Throttling", "ThrottlingException", "ThrottledException",
                "TooManyRequestsException", "RequestThrottled", "RequestThrottledException", "InternalError",
                "InternalFailure", "ServiceUnavailable", "Unavailable", "RequestTimeout", "RequestTimeoutException",
                NULL,
        };
        if (in_list(code, retry))
                return true;
        return http_status >= 500 && !aws_query_error_is_denied(code);
}

bool aws_query_error_is_denied(const char *code) {
        static const char *const denied[] = {
                "UnauthorizedOperation", "AuthFailure", "OptInRequired", "Blocked", "SignatureDoesNotMatch",
                "InvalidClientTokenId", "ExpiredToken", "RequestExpired", "MissingAuthenticationToken",
                "IncompleteSignature", "AccessDenied", "AccessDeniedException", "UnrecognizedClientException",
                "InvalidAccessKeyId", "ExpiredTokenException", NULL,
        };
        return in_list(code, denied);
}

/* --- the client --------------------------------------------------------- */

struct AwsQuery {
        sd_event *event;
        Http *http;
        char *endpoint, *sigv4, *service;
        usec_t backoff_min, backoff_max, timeout;

        /* the call in progress */
        bool busy;
        AwsCredentials cred;
        char *body;
        char action[64], label[128], grant[128];
        bool changes;
        aws_query_read_t read;
        aws_query_done_t done;
        void *userdata;
        unsigned attempt;
        HttpCall *call;
        sd_event_source *retry_timer;
        AwsCallResult last;        /* of the last attempt; detail: the attempt's text */
        char message[512];
        bool retryable;
        unsigned unanswered;       /* a changing attempt that may have gone through: its number, 0 none */
        char unanswered_why[128];
};

int aws_query_new(sd_event *e, Http *http, const char *endpoint, const char *region, const char *service,
                  const char *host_prefix, AwsQuery **ret) {
        _cleanup_(aws_query_freep) AwsQuery *q = NULL;

        if (isempty(region) || isempty(service) || isempty(host_prefix))
                return -EINVAL;
        q = calloc(1, sizeof *q);
        if (!q)
                return -ENOMEM;
        q->event = sd_event_ref(e);
        q->http = http;
        q->backoff_min = AWS_QUERY_BACKOFF_MIN;
        q->backoff_max = AWS_QUERY_BACKOFF_MAX;
        q->timeout = AWS_QUERY_TIMEOUT;
        if (endpoint ? !(q->endpoint = strdup(endpoint))
                     : asprintf(&q->endpoint, "https://%s.%s.amazonaws.com/", host_prefix, region) < 0)
                return -ENOMEM;
        if (asprintf(&q->sigv4, "aws:amz:%s:%s", region, service) < 0)
                return -ENOMEM;
        q->service = strdup(service);
        if (!q->service)
                return -ENOMEM;
        *ret = TAKE_PTR(q);
        return 0;
}

static void call_clear(AwsQuery *q) {
        http_cancel(q->call);
        q->call = NULL;
        q->retry_timer = sd_event_source_disable_unref(q->retry_timer);
        aws_credentials_done(&q->cred);
        free(q->body);
        q->body = NULL;
        q->busy = false;
        q->attempt = 0;
        q->unanswered = 0;
        q->unanswered_why[0] = '\0';
        q->done = NULL;
        q->read = NULL;
        q->userdata = NULL;
}

AwsQuery *aws_query_free(AwsQuery *q) {
        if (!q)
                return NULL;
        call_clear(q);
        free(q->endpoint);
        free(q->sigv4);
        free(q->service);
        sd_event_unref(q->event);
        free(q);
        return NULL;
}

void aws_query_cancel(AwsQuery *q) {
        if (q)
                call_clear(q);
}

bool aws_query_busy(const AwsQuery *q) {
        return q && q->busy;
}

const char *aws_query_endpoint(const AwsQuery *q) {
        return q->endpoint;
}

const char *aws_query_service(const AwsQuery *q) {
        return q->service;
}

const char *aws_query_last_detail(const AwsQuery *q) {
        return q && q->busy && q->attempt > 0 && q->last.detail[0] ? q->last.detail : NULL;
}

void aws_query_set_timing(AwsQuery *q, usec_t backoff_min, usec_t backoff_max, usec_t timeout) {
        q->backoff_min = backoff_min;
        q->backoff_max = MAX(backoff_min, backoff_max);
        q->timeout = timeout;
}

/* The call's one line: "SERVICE ACTION: CODE: MESSAGE (HTTP 400, 1 attempt)". */
static void final_detail(AwsQuery *q, AwsCallOutcome o, AwsCallResult *r) {
        char what[sizeof r->detail] = "", tail[64], status[32] = "";
        int n;

        if (r->status > 0)
                snprintf(status, sizeof status, "HTTP %ld, ", r->status);
        snprintf(tail, sizeof tail, "%s%u attempt%s", status, q->attempt, q->attempt == 1 ? "" : "s");
        if (o == AWS_CALL_OK)
                snprintf(what, sizeof what, "done, request %s", r->request_id[0] ? r->request_id : "(none)");
        else if (r->code[0])
                snprintf(what, sizeof what, "%s: %.*s", r->code, http_text_prefix(q->message, 200), q->message);
        else
                /* the attempt's text after its label */
                snprintf(what, sizeof what, "%s",
                         strncmp(r->detail, q->label, strlen(q->label)) == 0 && r->detail[strlen(q->label)] == ' '
                                 ? r->detail + strlen(q->label) + 1
                                 : r->detail);
        n = snprintf(r->detail, sizeof r->detail, "%s %s: %.*s (%s)", q->service, q->action, http_text_prefix(what, 260),
                     what, tail);
        if (o == AWS_CALL_DENIED && n > 0 && (size_t) n < sizeof r->detail)
                snprintf(r->detail + n, sizeof r->detail - (size_t) n, "; %s%s",
                         streq(r->code, "RequestExpired") ? "check this host's clock (NTP): AWS refuses a signature "
                                                            "dated more than 15 minutes off, or keys past their expiry"
                                                          : "grant ",
                         streq(r->code, "RequestExpired") ? "" : q->grant);
        else if (o == AWS_CALL_FAILED && r->uncertain && n > 0 && (size_t) n < sizeof r->detail)
                snprintf(r->detail + n, sizeof r->detail - (size_t) n,
                         "; attempt %u was sent and never answered (%.*s): AWS may have acted on it", q->unanswered,
                         http_text_prefix(q->unanswered_why, 60), q->unanswered_why);
}

static void finish(AwsQuery *q, AwsCallOutcome o) {
        aws_query_done_t done = q->done;
        void *userdata = q->userdata;
        AwsCallResult r = q->last;
        char attempt_detail[sizeof r.detail], message[sizeof q->message], why[sizeof q->unanswered_why];
        AwsQueryInfo info = {
                .message = message,
                .attempt_detail = attempt_detail,
                .retries_spent = o == AWS_CALL_FAILED && q->retryable,
                .unanswered = q->changes ? q->unanswered : 0,
                .unanswered_why = why,
        };

        snprintf(attempt_detail, sizeof attempt_detail, "%s", r.detail);
        snprintf(message, sizeof message, "%s", q->message);
        snprintf(why, sizeof why, "%s", q->unanswered_why);
        r.outcome = o;
        r.attempts = q->attempt;
        r.uncertain = o == AWS_CALL_FAILED && info.unanswered > 0;
        if (o == AWS_CALL_OK)
                r.code[0] = '\0';
        final_detail(q, o, &r);
        call_clear(q);
        done(&r, &info, userdata);
}

static int attempt_start(AwsQuery *q);

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        AwsQuery *q = userdata;
        int k;

        q->retry_timer = sd_event_source_disable_unref(q->retry_timer);
        k = attempt_start(q);
        if (k < 0) {
                snprintf(q->last.detail, sizeof q->last.detail, "%s cannot start the request: %s", q->label,
                         strerror(-k));
                q->retryable = false;
                finish(q, AWS_CALL_FAILED);
        }
        return 0;
}

static void note_unanswered(AwsQuery *q, const char *why) {
        if (q->changes && q->unanswered == 0) {
                q->unanswered = q->attempt;
                snprintf(q->unanswered_why, sizeof q->unanswered_why, "%s", why);
        }
}

static void on_answer(const HttpResponse *resp, void *userdata) {
        AwsQuery *q = userdata;
        _cleanup_(freep) char *error = NULL;
        AwsQueryAnswer a = {};
        char why[128];
        int k;

        q->call = NULL;
        q->last = (AwsCallResult) { .status = resp->status };
        q->message[0] = '\0';
        q->retryable = false;
        if (resp->request_id)
                snprintf(q->last.request_id, sizeof q->last.request_id, "%s", resp->request_id);

        if (resp->result != CURLE_OK) {
                snprintf(q->last.detail, sizeof q->last.detail, "%s unreachable: %s", q->label,
                         http_describe_failure(resp, why, sizeof why));
                q->retryable = true;
                /* sent, never answered: AWS may have acted on it */
                if (resp->sent)
                        note_unanswered(q, why);
        } else if ((k = aws_query_parse(resp->body, resp->body_len, NULL, NULL, &a, &error)) < 0 ||
                   (!a.is_error && resp->status / 100 == 2 && q->read &&
                    (k = q->read(resp->body, resp->body_len, q->userdata, &error)) < 0)) {
                snprintf(q->last.detail, sizeof q->last.detail, "%s answered HTTP %ld with %s", q->label, resp->status,
                         k == -EBADMSG ? strna(error) : strerror(-k));
                q->retryable = resp->status >= 500 || resp->status / 100 == 2;
                if (a.request_id[0])
                        snprintf(q->last.request_id, sizeof q->last.request_id, "%s", a.request_id);
                /* a 200 we cannot read is most likely a change AWS made */
                if (resp->status / 100 == 2) {
                        snprintf(why, sizeof why, "HTTP %ld with %s", resp->status,
                                 k == -EBADMSG ? strna(error) : strerror(-k));
                        note_unanswered(q, why);
                }
        } else {
                if (a.request_id[0])
                        snprintf(q->last.request_id, sizeof q->last.request_id, "%s", a.request_id);
                if (!a.is_error && resp->status / 100 == 2) {
                        snprintf(q->last.detail, sizeof q->last.detail, "%s done (request %s)", q->label,
                                 q->last.request_id);
                        finish(q, AWS_CALL_OK);
                        return;
                }
                snprintf(q->last.code, sizeof q->last.code, "%s", a.code);
                snprintf(q->message, sizeof q->message, "%s", a.message);
                if (a.is_error && aws_query_error_is_denied(a.code)) {
                        snprintf(q->last.detail, sizeof q->last.detail, "%s denied: %s (HTTP %ld): %.*s", q->label,
                                 a.code, resp->status, http_text_prefix(a.message, 200), a.message);
                        finish(q, AWS_CALL_DENIED);
                        return;
                }
                if (a.is_error)
                        snprintf(q->last.detail, sizeof q->last.detail, "%s error %s (HTTP %ld): %.*s", q->label, a.code,
                                 resp->status, http_text_prefix(a.message, 200), a.message);
                else
                        snprintf(q->last.detail, sizeof q->last.detail, "%s answered HTTP %ld with a success document",
                                 q->label, resp->status);
                q->retryable = a.is_error && aws_query_error_is_retryable(a.code, resp->status);
        }

        if (!q->retryable || q->attempt >= AWS_QUERY_ATTEMPTS) {
                if (q->retryable)
                        strncat(q->last.detail, "; giving up after retries",
                                sizeof q->last.detail - strlen(q->last.detail) - 1);
                finish(q, AWS_CALL_FAILED);
                return;
        }
        log_warning("%s; attempt %u of %u", q->last.detail, q->attempt, AWS_QUERY_ATTEMPTS);
        k = sd_event_add_time_relative(q->event, &q->retry_timer, CLOCK_MONOTONIC,
                                       backoff_delay(q->backoff_min, q->backoff_max, q->attempt - 1, random_u64()),
                                       USEC_PER_MSEC, on_retry, q);
        if (k < 0)
                finish(q, AWS_CALL_FAILED);
}

static int attempt_start(AwsQuery *q) {
        _cleanup_(freep) char *userpwd = NULL, *token_header = NULL;
        const char *headers[3] = { "Content-Type: application/x-www-form-urlencoded; charset=utf-8", NULL, NULL };
        HttpRequest req = {
                .method = "POST",
                .url = q->endpoint,
                .body = q->body,
                .body_len = strlen(q->body),
                .timeout = q->timeout,
                .body_max = AWS_QUERY_BODY_MAX,
                .aws_sigv4 = q->sigv4,
                .use_env_proxy = true, /* an AWS API: https_proxy/no_proxy, as the AWS SDKs */
        };
        int k;

        if (asprintf(&userpwd, "%s:%s", q->cred.access_key, q->cred.secret_key) < 0)
                return -ENOMEM;
        if (q->cred.session_token) {
                /* a custom header: curl signs it */
                if (asprintf(&token_header, "X-Amz-Security-Token: %s", q->cred.session_token) < 0) {
                        free_wiped(TAKE_PTR(userpwd), strlen(q->cred.access_key) + strlen(q->cred.secret_key) + 1);
                        return -ENOMEM;
                }
                headers[1] = token_header;
        }
        req.userpwd = userpwd;
        req.headers = headers;
        q->attempt++;
        k = http_submit(q->http, &req, on_answer, q, &q->call);
        free_wiped(TAKE_PTR(userpwd), strlen(q->cred.access_key) + strlen(q->cred.secret_key) + 1);
        if (token_header)
                free_wiped(TAKE_PTR(token_header), strlen(q->cred.session_token) + 22);
        return k;
}

int aws_query_start(AwsQuery *q, const AwsCredentials *cred, const AwsQueryRequest *req) {
        int k;

        if (q->busy)
                return -EBUSY;
        if (!cred || isempty(cred->access_key) || isempty(cred->secret_key) || !req || !req->done ||
            isempty(req->body) || isempty(req->action) || strlen(req->action) >= sizeof q->action)
                return -EINVAL;
        q->body = strdup(req->body);
        if (!q->body)
                return -ENOMEM;
        k = aws_credentials_copy(cred, &q->cred);
        if (k < 0) {
                free(TAKE_PTR(q->body));
                return k;
        }
        snprintf(q->action, sizeof q->action, "%s", req->action);
        if (req->label)
                snprintf(q->label, sizeof q->label, "%s", req->label);
        else
                snprintf(q->label, sizeof q->label, "%s %s", q->service, req->action);
        if (req->grant)
                snprintf(q->grant, sizeof q->grant, "%s", req->grant);
        else
                snprintf(q->grant, sizeof q->grant, "%s:%s", q->service, req->action);
        q->busy = true;
        q->changes = req->changes;
        q->read = req->read;
        q->done = req->done;
        q->userdata = req->userdata;
        q->attempt = 0;
        q->last = (AwsCallResult) {};
        q->message[0] = '\0';
        k = attempt_start(q);
        if (k < 0)
                call_clear(q);
        return k;
}
