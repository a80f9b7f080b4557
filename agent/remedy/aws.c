/* Identity, credentials and the permission self-test, each fetched or
 * refreshed on the loop; a reboot asked for while they are still coming
 * waits for them. */
#include "aws.h"

#include <inttypes.h>

#include "awscreds.h"
#include "awsid.h"
#include "backoff.h"
#include "clock.h"
#include "imds.h"
#include "jsonutil.h"
#include "log.h"
#include "random.h"

#define AWS_RETRY_MIN (2 * USEC_PER_SEC)
#define AWS_RETRY_MAX (5 * USEC_PER_MINUTE)
#define AWS_ROLE_REFRESH_MARGIN (5 * USEC_PER_MINUTE) /* the SDKs refresh 5-15 min ahead */
#define AWS_ROLE_REFRESH_MIN (30 * USEC_PER_SEC)

static const char *const permission_table[_AWS_PERMISSION_MAX] = {
        [AWS_PERMISSION_UNKNOWN] = "unknown",
        [AWS_PERMISSION_CHECKING] = "checking",
        [AWS_PERMISSION_PERMITTED] = "permitted",
        [AWS_PERMISSION_DENIED] = "denied",
        [AWS_PERMISSION_ERROR] = "error",
};

const char *aws_permission_to_string(AwsPermission p) {
        return p >= 0 && p < _AWS_PERMISSION_MAX ? permission_table[p] : NULL;
}

typedef struct AwsWant {
        bool pending;
        bool dry_run;
        bool self_test;          /* our own start-up check: updates the permission */
        bool refreshed;          /* already retried once with fresh role credentials */
        bool hold;               /* aws_when_ready(): send nothing, tell ready_cb, keep the place for aws_reboot() */
        ec2_done_t cb;
        aws_ready_t ready_cb;    /* NULL once told */
        void *userdata;
} AwsWant;

struct Aws {
        sd_event *event;
        Http *http;
        Imds *imds;
        Ec2 *ec2;

        char *instance_id, *region, *endpoint, *profile, *credentials_file, *imds_url;
        AwsCredentials cred;     /* source NONE until found */
        char *role;              /* instance role name, from IMDS */
        char *local_ipv4;        /* from IMDS, for the binding check; NULL when none */
        bool local_ipv4_asked;
        bool use_role;
        bool reboots;            /* the ladder has reboot-instance: the DryRun self-test is ours to run */
        bool fetching;           /* an IMDS step in flight */
        unsigned attempt;
        char *identity_error;
        sd_event_source *retry_timer, *refresh_timer;

        AwsWant want, self_test_after; /* the call in progress or waiting; a self-test queued behind it */
        AwsPermission permission;
        AwsPermission reported;  /* the last verdict told to the handler */
        char *permission_detail;
        usec_t checked_at;       /* wall clock */
        aws_permission_changed_t on_permission;
        void *on_permission_userdata;
        /* aws_need_identity(): the routing calls wait for the same
         * identity and credentials, beside the EC2 call (never in its slot) */
        aws_identity_t identity_cb;
        void *identity_userdata;
};

static usec_t now_clock(Aws *a, clockid_t clock) {
        return clock_loop_now(a->event, clock);
}

static void set_string(char **dst, const char *s) {
        char *n = s ? strdup(s) : NULL;
        free(*dst);
        *dst = n;
}

int aws_new(sd_event *e, Http *http, const Config *c, Aws **ret, char **ret_error) {
        _cleanup_(aws_freep) Aws *a = NULL;
        int r;

        a = calloc(1, sizeof *a);
        if (!a)
                return -ENOMEM;
        a->event = sd_event_ref(e);
        a->http = http;
        for (size_t i = 0; c->remedy.enabled && i < c->remedy.ladder_len; i++)
                if (c->remedy.ladder[i] == REMEDY_REBOOT_INSTANCE)
                        a->reboots = true;
        set_string(&a->instance_id, c->aws.instance_id);
        set_string(&a->region, c->aws.region);
        set_string(&a->endpoint, c->aws.endpoint_url);
        set_string(&a->profile, c->aws.profile);
        set_string(&a->credentials_file, c->aws.credentials_file);
        set_string(&a->imds_url, c->aws.imds_url ? c->aws.imds_url : "http://169.254.169.254");
        if (!a->imds_url)
                return -ENOMEM;

        r = aws_credentials_find_local(a->credentials_file, a->profile, &a->cred, ret_error);
        if (r == -ENOENT)
                a->use_role = true; /* the last link of the chain */
        else if (r < 0)
                return r;
        else
                log_info("aws: credentials from %s (%s)", aws_cred_source_to_string(a->cred.source), a->cred.origin);

        if (a->use_role || !a->instance_id || !a->region) {
                r = imds_new(e, http, a->imds_url, &a->imds);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(a);
        return 0;
}

Aws *aws_free(Aws *a) {
        if (!a)
                return NULL;
        a->ec2 = ec2_free(a->ec2);
        a->imds = imds_free(a->imds);
        sd_event_source_disable_unref(a->retry_timer);
        sd_event_source_disable_unref(a->refresh_timer);
        aws_credentials_done(&a->cred);
        free(a->instance_id);
        free(a->region);
        free(a->endpoint);
        free(a->profile);
        free(a->credentials_file);
        free(a->imds_url);
        free(a->role);
        free(a->local_ipv4);
        free(a->identity_error);
        free(a->permission_detail);
        sd_event_unref(a->event);
        free(a);
        return NULL;
}

void aws_set_permission_handler(Aws *a, aws_permission_changed_t h, void *userdata) {
        a->on_permission = h;
        a->on_permission_userdata = userdata;
}

const char *aws_local_ipv4(const Aws *a) {
        return a ? a->local_ipv4 : NULL;
}

const char *aws_instance_id(const Aws *a) {
        return a ? a->instance_id : NULL;
}

AwsPermission aws_permission(const Aws *a) {
        return a ? a->permission : AWS_PERMISSION_UNKNOWN;
}

static bool cred_fresh(Aws *a) {
        if (a->cred.source == AWS_CRED_NONE)
                return false;
        return a->cred.expiration == 0 || a->cred.expiration > now_clock(a, CLOCK_REALTIME) + USEC_PER_MINUTE;
}

static bool ready(Aws *a) {
        return a->instance_id && a->region && a->ec2 && cred_fresh(a);
}

static void permission_set(Aws *a, AwsPermission p, const char *detail) {
        a->permission = p;
        set_string(&a->permission_detail, detail);
        a->checked_at = now_clock(a, CLOCK_REALTIME);
        /* a verdict is news once: the same denial found again by
         * monkeyctl test-reboot is not a second alert */
        if (p == AWS_PERMISSION_CHECKING || p == a->reported)
                return;
        a->reported = p;
        if (a->on_permission)
                a->on_permission(a, p, detail, a->on_permission_userdata);
}

static void identity_step(Aws *a);
static void want_run(Aws *a);

static int on_retry_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Aws *a = userdata;

        a->retry_timer = sd_event_source_disable_unref(a->retry_timer);
        identity_step(a);
        return 0;
}

static void identity_failed(Aws *a, const char *detail) {
        /* jittered like every retry: a fleet whose IMDS or STS failed
         * together does not ask again together */
        usec_t d = backoff_delay(AWS_RETRY_MIN, AWS_RETRY_MAX, a->attempt, random_u64());

        a->fetching = false;
        a->attempt++;
        if (!streq_ptr(a->identity_error, detail))
                log_warning("aws: %s; retrying in %llus", detail, (unsigned long long) (d / USEC_PER_SEC));
        set_string(&a->identity_error, detail);
        if (sd_event_add_time_relative(a->event, &a->retry_timer, CLOCK_MONOTONIC, d, USEC_PER_SEC, on_retry_timer,
                                       a) < 0)
                log_warning("aws: cannot schedule the retry");
}

/* The value of a metadata answer: one line, [A-Za-z0-9.:_-]. */
static char *metadata_value(const ImdsAnswer *ans) {
        size_t n = strcspn(ans->body, "\r\n");

        if (n == 0 || n > 255)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                char ch = ans->body[i];
                if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                      strchr(".:_-+=,@", ch)))
                        return NULL;
        }
        return strndup(ans->body, n);
}

static void on_metadata(const ImdsAnswer *ans, void *userdata);

static int refresh_schedule(Aws *a);

static void on_role_credentials(const ImdsAnswer *ans, void *userdata) {
        Aws *a = userdata;
        _cleanup_(freep) char *error = NULL;
        AwsCredentials c = {};
        char d[300];
        int r;

        a->fetching = false;
        if (ans->error < 0 || ans->status != 200) {
                snprintf(d, sizeof d, "instance role %s credentials: %s", strna(a->role), ans->detail);
                identity_failed(a, d);
                return;
        }
        r = aws_credentials_parse_role(ans->body, ans->body_len, a->role, &c, &error);
        if (r < 0) {
                identity_failed(a, error ? error : "instance role credentials: cannot parse");
                return;
        }
        aws_credentials_done(&a->cred);
        a->cred = c;
        log_info("aws: credentials from the instance role %s, valid until %" PRIu64, a->role,
                 (uint64_t) (c.expiration / USEC_PER_SEC));
        (void) refresh_schedule(a);
        identity_step(a);
}

static int on_refresh_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Aws *a = userdata;

        a->refresh_timer = sd_event_source_disable_unref(a->refresh_timer);
        if (a->fetching || !a->role)
                return 0;
        a->fetching = true;
        if (imds_get(a->imds, "meta-data/iam/security-credentials/", on_metadata, a) < 0)
                identity_failed(a, "cannot ask IMDS for the role");
        return 0;
}

static int refresh_schedule(Aws *a) {
        usec_t now = now_clock(a, CLOCK_REALTIME), at, delay;

        if (a->cred.expiration == 0)
                return 0;
        at = a->cred.expiration > AWS_ROLE_REFRESH_MARGIN ? a->cred.expiration - AWS_ROLE_REFRESH_MARGIN : 0;
        delay = at > now ? at - now : 0;
        delay = MAX(delay, AWS_ROLE_REFRESH_MIN);
        a->refresh_timer = sd_event_source_disable_unref(a->refresh_timer);
        return sd_event_add_time_relative(a->event, &a->refresh_timer, CLOCK_MONOTONIC, delay, USEC_PER_SEC,
                                          on_refresh_timer, a);
}

/* One answer of the identity walk; which one is told by what is missing. */
static void on_metadata(const ImdsAnswer *ans, void *userdata) {
        Aws *a = userdata;
        _cleanup_(freep) char *value = NULL;
        _cleanup_(freep) char *path = NULL;
        char d[300];

        a->fetching = false;
        if (a->instance_id && a->region && !a->local_ipv4_asked) {
                /* optional: an instance without it (IPv6-only) is fine */
                a->local_ipv4_asked = true;
                if (ans->error >= 0 && ans->status == 200)
                        a->local_ipv4 = metadata_value(ans);
                identity_step(a);
                return;
        }
        if (ans->error < 0 || ans->status != 200) {
                snprintf(d, sizeof d, "%s%s", ans->detail,
                         ans->status == 404 && !a->role && a->use_role && a->instance_id && a->region
                                 ? " (no instance role attached: attach one, or give credentials)"
                                 : "");
                identity_failed(a, d);
                return;
        }
        value = metadata_value(ans);
        if (!value) {
                snprintf(d, sizeof d, "%s: an unexpected value", ans->detail);
                identity_failed(a, d);
                return;
        }
        if (!a->instance_id)
                a->instance_id = TAKE_PTR(value);
        else if (!a->region)
                a->region = TAKE_PTR(value);
        else if (a->use_role) {
                /* the role name; then its credentials */
                set_string(&a->role, value);
                if (asprintf(&path, "meta-data/iam/security-credentials/%s", a->role) < 0)
                        return;
                a->fetching = true;
                if (imds_get(a->imds, path, on_role_credentials, a) < 0)
                        identity_failed(a, "cannot ask IMDS for the role's credentials");
                return;
        }
        identity_step(a);
}

static void identity_step(Aws *a) {
        const char *path = NULL;
        int r;

        if (a->fetching)
                return;
        if (!a->instance_id)
                path = "meta-data/instance-id";
        else if (!a->region)
                path = "meta-data/placement/region";
        else if (a->imds && !a->local_ipv4_asked)
                path = "meta-data/local-ipv4";
        else if (a->use_role && !cred_fresh(a))
                path = "meta-data/iam/security-credentials/";
        if (path) {
                a->fetching = true;
                r = imds_get(a->imds, path, on_metadata, a);
                if (r < 0)
                        identity_failed(a, "cannot ask IMDS");
                return;
        }
        a->attempt = 0;
        set_string(&a->identity_error, NULL);
        if (a->identity_cb) {
                aws_identity_t cb = a->identity_cb;

                a->identity_cb = NULL;
                cb(a, a->identity_userdata);
        }
        if (!a->ec2) {
                r = ec2_new(a->event, a->http, a->endpoint, a->region, &a->ec2);
                if (r < 0) {
                        identity_failed(a, "cannot set up the EC2 client");
                        return;
                }
                char how[512];
                const char *proxy = http_env_proxy_describe(ec2_endpoint(a->ec2), http_getenv, how, sizeof how);
                log_info("aws: instance %s in %s, EC2 endpoint %s%s%s", a->instance_id, a->region,
                         ec2_endpoint(a->ec2), proxy ? " " : "", strempty(proxy));
        }
        want_run(a);
}

int aws_start(Aws *a) {
        /* Only target groups or standby: no RebootInstances to prove (the
         * role may well not have it), just the identity for their calls. */
        if (a->reboots)
                a->self_test_after = (AwsWant) { .pending = true, .dry_run = true, .self_test = true };
        identity_step(a);
        return 0;
}

static void on_ec2(const Ec2Result *res, void *userdata);

static void want_run(Aws *a) {
        int r;

        if (!a->want.pending && a->self_test_after.pending) {
                a->want = a->self_test_after;
                a->self_test_after = (AwsWant) {};
        }
        if (!a->want.pending || !a->ec2 || ec2_busy(a->ec2))
                return;
        if (!ready(a)) {
                identity_step(a); /* comes back here when ready */
                return;
        }
        if (a->want.hold) {
                aws_ready_t cb = a->want.ready_cb;

                /* told once; the place stays taken (no self-test slips in)
                 * until aws_reboot() or aws_cancel() */
                a->want.ready_cb = NULL;
                if (cb)
                        cb(a, a->want.userdata);
                return;
        }
        if (a->want.self_test)
                permission_set(a, AWS_PERMISSION_CHECKING, "DryRun RebootInstances in flight");
        r = ec2_reboot(a->ec2, &a->cred, a->instance_id, a->want.dry_run, on_ec2, a);
        if (r < 0) {
                Ec2Result res = { .outcome = EC2_FAILED };
                /* "Invalid argument" alone sends the operator hunting: say
                 * which value and what it should look like. The id may come
                 * from the config or from IMDS. */
                if (r == -EINVAL && !aws_instance_id_is_valid(a->instance_id))
                        snprintf(res.detail, sizeof res.detail,
                                 "cannot call EC2: instance id '%.40s' is not valid (" AWS_INSTANCE_ID_FORM ")",
                                 strna(a->instance_id));
                else
                        snprintf(res.detail, sizeof res.detail, "cannot call EC2: %s", strerror(-r));
                on_ec2(&res, a);
        }
}

static void on_ec2(const Ec2Result *res, void *userdata) {
        Aws *a = userdata;
        AwsWant w = a->want;

        /* Role credentials that expired early: once more with fresh ones. */
        if (res->outcome == EC2_DENIED && a->use_role && !w.refreshed &&
            (streq(res->code, "ExpiredToken") || streq(res->code, "RequestExpired"))) {
                log_info("aws: %s; refreshing the role credentials and trying again", res->code);
                a->want.refreshed = true;
                aws_credentials_done(&a->cred);
                identity_step(a);
                return;
        }
        a->want = (AwsWant) {};
        if (w.dry_run) {
                AwsPermission p = res->outcome == EC2_PERMITTED ? AWS_PERMISSION_PERMITTED
                                  : res->outcome == EC2_DENIED  ? AWS_PERMISSION_DENIED
                                                                : AWS_PERMISSION_ERROR;
                permission_set(a, p, res->detail);
                log_full(p == AWS_PERMISSION_PERMITTED ? LOG_INFO : LOG_WARNING, "aws: self-test: %s", res->detail);
        } else if (res->outcome == EC2_DENIED)
                /* The grant went away after the self-test: status must not
                 * keep saying "permitted", and this is news worth one alert. */
                permission_set(a, AWS_PERMISSION_DENIED, res->detail);
        if (w.cb)
                w.cb(res, w.userdata);
        want_run(a);
}

int aws_reboot(Aws *a, bool dry_run, ec2_done_t cb, void *userdata) {
        if (a->want.pending && !a->want.hold)
                return -EBUSY;
        a->want = (AwsWant) { .pending = true, .dry_run = dry_run, .cb = cb, .userdata = userdata };
        want_run(a);
        return 0;
}

int aws_when_ready(Aws *a, aws_ready_t cb, void *userdata) {
        if (a->want.pending)
                return -EBUSY;
        a->want = (AwsWant) { .pending = true, .hold = true, .ready_cb = cb, .userdata = userdata };
        want_run(a);
        return 0;
}

const char *aws_waiting_for(Aws *a, const char **ret_last_error) {
        const char *last = NULL, *what = NULL;

        if (a->want.pending && a->ec2 && ec2_busy(a->ec2)) {
                what = "EC2";
                last = ec2_last_detail(a->ec2);
        } else if (a->want.pending && !ready(a)) {
                /* the identity walk and the role credentials: IMDS */
                what = "IMDS";
                last = a->identity_error;
        } else if (a->want.pending)
                what = "EC2";
        if (ret_last_error)
                *ret_last_error = isempty(last) ? NULL : last;
        return what;
}

int aws_self_test(Aws *a, ec2_done_t cb, void *userdata) {
        if (a->want.pending)
                return -EBUSY;
        a->want = (AwsWant) { .pending = true, .dry_run = true, .self_test = true, .cb = cb, .userdata = userdata };
        want_run(a);
        return 0;
}

int aws_need_identity(Aws *a, aws_identity_t cb, void *userdata) {
        if (a->identity_cb && a->identity_userdata != userdata)
                return -EBUSY;
        a->identity_cb = cb;
        a->identity_userdata = userdata;
        identity_step(a); /* tells at once when everything is known */
        return 0;
}

void aws_forget_identity_waiter(Aws *a, void *userdata) {
        if (a && a->identity_userdata == userdata) {
                a->identity_cb = NULL;
                a->identity_userdata = NULL;
        }
}

const AwsCredentials *aws_credentials(const Aws *a) {
        return a && a->cred.source != AWS_CRED_NONE ? &a->cred : NULL;
}

const char *aws_region(const Aws *a) {
        return a ? a->region : NULL;
}

void aws_credentials_expired(Aws *a) {
        /* only role credentials can be fetched again; local keys stay */
        if (a->use_role)
                aws_credentials_done(&a->cred);
}

void aws_cancel(Aws *a) {
        if (!a)
                return;
        if (a->ec2)
                ec2_cancel(a->ec2);
        a->want = (AwsWant) {};
}

json_object *aws_status_json(const Aws *a) {
        json_object *o = json_object_new_object(), *c = json_object_new_object();
        char buf[32];

        if (!o || !c) {
                json_object_put(o);
                json_object_put(c);
                return NULL;
        }
        json_object_object_add(o, "instance_id", a->instance_id ? json_object_new_string(a->instance_id) : NULL);
        json_object_object_add(o, "region", a->region ? json_object_new_string(a->region) : NULL);
        json_object_object_add(o, "endpoint", a->ec2 ? json_object_new_string(ec2_endpoint(a->ec2)) : NULL);
        json_object_object_add(o, "identity", json_object_new_string(a->instance_id && a->region && a->ec2 ? "ready"
                                                                     : a->identity_error                 ? "retrying"
                                                                                                         : "fetching"));
        if (a->identity_error)
                json_object_object_add(o, "last_error", json_object_new_string(a->identity_error));
        json_object_object_add(c, "source", json_object_new_string(a->cred.source != AWS_CRED_NONE
                                                                           ? aws_cred_source_to_string(a->cred.source)
                                                                   : a->use_role ? "instance-role (fetching)"
                                                                                 : "none"));
        json_object_object_add(c, "origin", a->cred.origin ? json_object_new_string(a->cred.origin) : NULL);
        if (a->cred.expiration)
                json_object_object_add(c, "expires",
                                       json_object_new_string(format_iso8601(buf, sizeof buf, a->cred.expiration)));
        json_object_object_add(o, "credentials", c);
        json_object_object_add(o, "permission", json_object_new_string(aws_permission_to_string(a->permission)));
        json_object_object_add(o, "permission_detail",
                               a->permission_detail ? json_object_new_string(a->permission_detail) : NULL);
        if (a->checked_at) {
                /* status's one time format: RFC 3339 UTC, and the Unix seconds beside it */
                json_object_object_add(o, "checked_at", json_new_rfc3339(a->checked_at));
                json_object_object_add(o, "checked_at_unix", json_object_new_uint64(a->checked_at / USEC_PER_SEC));
        }
        if (a->imds)
                json_object_object_add(o, "imds", imds_status_json(a->imds));
        return o;
}
