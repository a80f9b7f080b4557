/* RebootInstances on the Query-API engine (awsquery.c): the form body, the
 * <return> of the answer, and the outcome in EC2's words. */
#include "ec2.h"

#include <ctype.h>

#include "awsquery.h"

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

/* <RebootInstancesResponse><requestId/><return>true</return></...>: the
 * root's own <return>, not one nested deeper. */
static void walk_return(AwsXmlEvent ev, const char *path, unsigned depth, const char *text, void *userdata) {
        bool *returned_true = userdata;

        if (ev == AWS_XML_CLOSE && depth == 2 && streq(aws_query_subpath(path), "return"))
                *returned_true = streq(text, "true");
}

int ec2_parse_response(const char *xml, size_t len, Ec2Response *ret, char **ret_error) {
        AwsQueryAnswer a;
        bool returned_true = false;
        int k;

        k = aws_query_parse(xml, len, walk_return, &returned_true, &a, ret_error);
        if (k < 0)
                return k;
        *ret = (Ec2Response) { .is_error = a.is_error, .returned_true = !a.is_error && returned_true };
        snprintf(ret->code, sizeof ret->code, "%s", a.code);
        snprintf(ret->message, sizeof ret->message, "%s", a.message);
        snprintf(ret->request_id, sizeof ret->request_id, "%s", a.request_id);
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

bool ec2_error_is_retryable(const char *code, long http_status) {
        return aws_query_error_is_retryable(code, http_status);
}

bool ec2_error_is_denied(const char *code) {
        return aws_query_error_is_denied(code);
}

/* --- the client --------------------------------------------------------- */

struct Ec2 {
        AwsQuery *query;

        /* the call in progress */
        bool dry_run;
        bool returned_true;
        ec2_done_t cb;
        void *userdata;
};

int ec2_new(sd_event *e, Http *http, const char *endpoint, const char *region, Ec2 **ret) {
        _cleanup_(ec2_freep) Ec2 *c = NULL;
        int k;

        if (isempty(region))
                return -EINVAL;
        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        k = aws_query_new(e, http, endpoint, region, "ec2", "ec2", &c->query);
        if (k < 0)
                return k;
        *ret = TAKE_PTR(c);
        return 0;
}

Ec2 *ec2_free(Ec2 *c) {
        if (!c)
                return NULL;
        aws_query_free(c->query);
        free(c);
        return NULL;
}

void ec2_cancel(Ec2 *c) {
        if (c)
                aws_query_cancel(c->query);
}

bool ec2_busy(const Ec2 *c) {
        return c && aws_query_busy(c->query);
}

const char *ec2_endpoint(const Ec2 *c) {
        return aws_query_endpoint(c->query);
}

const char *ec2_last_detail(const Ec2 *c) {
        return c ? aws_query_last_detail(c->query) : NULL;
}

static int read_return(const char *xml, size_t len, void *userdata, char **ret_error) {
        Ec2 *c = userdata;
        Ec2Response r;
        int k;

        k = ec2_parse_response(xml, len, &r, ret_error);
        if (k < 0)
                return k;
        c->returned_true = r.returned_true;
        return 0;
}

/* The engine's outcome in EC2's words, which status, Slack and the tests
 * have read since before the engine. */
static void on_done(const AwsCallResult *ar, const AwsQueryInfo *info, void *userdata) {
        Ec2 *c = userdata;
        ec2_done_t cb = c->cb;
        void *cb_userdata = c->userdata;
        Ec2Result r = {
                .status = ar->status,
                .attempts = ar->attempts,
        };
        Ec2Outcome o = EC2_FAILED;

        snprintf(r.code, sizeof r.code, "%s", ar->code);
        snprintf(r.request_id, sizeof r.request_id, "%s", ar->request_id);
        snprintf(r.detail, sizeof r.detail, "%s", info->attempt_detail);
        if (ar->outcome == AWS_CALL_OK && c->returned_true && !c->dry_run) {
                snprintf(r.detail, sizeof r.detail, "RebootInstances accepted (request %s)", r.request_id);
                o = EC2_REBOOTING;
        } else if (ar->outcome == AWS_CALL_OK)
                snprintf(r.detail, sizeof r.detail, "EC2 answered HTTP %ld without <return>true", ar->status);
        else if (ar->outcome == AWS_CALL_DENIED) {
                /* An expired request is this host's clock (or expired keys),
                 * not a missing permission. */
                snprintf(r.detail, sizeof r.detail, "reboot denied: %s (HTTP %ld): %.*s; %s", r.code, r.status,
                         http_text_prefix(info->message, 160), info->message,
                         streq(r.code, "RequestExpired")
                                 ? "check this host's clock (NTP): AWS refuses a signature dated more than "
                                   "15 minutes off, or keys past their expiry"
                                 : "grant ec2:RebootInstances on this instance");
                o = EC2_DENIED;
        } else if (c->dry_run && streq(r.code, "DryRunOperation")) {
                snprintf(r.detail, sizeof r.detail, "reboot permitted (DryRun: DryRunOperation, request %s)",
                         r.request_id);
                o = EC2_PERMITTED;
        } else if (ar->uncertain) {
                /* Failing here would let the host rejoin the pool while EC2
                 * may still reboot it: expect the reboot instead. */
                snprintf(r.detail, sizeof r.detail,
                         "EC2 never answered attempt %u of %u (%.*s), then: %.*s; the reboot may have been "
                         "accepted, waiting for it",
                         info->unanswered, EC2_ATTEMPTS, http_text_prefix(info->unanswered_why, 100),
                         info->unanswered_why, http_text_prefix(info->attempt_detail, 180), info->attempt_detail);
                o = EC2_REBOOTING;
                r.uncertain = true;
                /* the last answer's id names a failed attempt, not a reboot */
                r.request_id[0] = '\0';
                r.code[0] = '\0';
        }
        r.outcome = o;
        c->cb = NULL;
        c->userdata = NULL;
        cb(&r, cb_userdata);
}

int ec2_reboot(Ec2 *c, const AwsCredentials *cred, const char *instance_id, bool dry_run, ec2_done_t cb,
               void *userdata) {
        _cleanup_(freep) char *body = NULL;
        int k;

        if (aws_query_busy(c->query))
                return -EBUSY;
        if (!cred || isempty(cred->access_key) || isempty(cred->secret_key) || !cb)
                return -EINVAL;
        k = ec2_reboot_body(instance_id, dry_run, &body);
        if (k < 0)
                return k;
        c->dry_run = dry_run;
        c->returned_true = false;
        c->cb = cb;
        c->userdata = userdata;
        return aws_query_start(c->query, cred,
                               &(AwsQueryRequest) {
                                       .action = "RebootInstances",
                                       .body = body,
                                       .label = "EC2",
                                       .grant = "ec2:RebootInstances",
                                       .changes = !dry_run,
                                       .read = read_return,
                                       .done = on_done,
                                       .userdata = c,
                               });
}
