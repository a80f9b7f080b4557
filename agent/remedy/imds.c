/* IMDSv2 client: one token shared by every request, requests that wait
 * for it in a list, one retry with a fresh token after a 401. */
#include "imds.h"

#include <inttypes.h>

#include "clock.h"
#include "fileio.h"
#include "log.h"

#define IMDS_BODY_MAX (64 * 1024)
#define IMDS_TOKEN_MAX 4096 /* real tokens are about 56 bytes */

typedef struct ImdsRequest ImdsRequest;

struct ImdsRequest {
        Imds *imds;
        ImdsRequest *next;
        char *path;
        imds_done_t cb;
        void *userdata;
        HttpCall *call;      /* NULL while waiting for the token */
        bool retried;        /* already re-sent once after a 401 */
};

struct Imds {
        sd_event *event;
        Http *http;
        char *base;
        char *token;
        usec_t token_expires;   /* CLOCK_MONOTONIC */
        HttpCall *token_call;
        ImdsRequest *requests;
        char *last_error;
};

static usec_t now_mono(Imds *m) {
        return clock_loop_now(m->event, CLOCK_MONOTONIC);
}

static void token_drop(Imds *m) {
        if (m->token)
                free_wiped(m->token, strlen(m->token));
        m->token = NULL;
        m->token_expires = 0;
}

static void set_error(Imds *m, const char *detail) {
        free(m->last_error);
        m->last_error = detail ? strdup(detail) : NULL;
}

int imds_new(sd_event *e, Http *http, const char *base_url, Imds **ret) {
        Imds *m;
        size_t n;

        if (isempty(base_url))
                return -EINVAL;
        m = calloc(1, sizeof *m);
        if (!m)
                return -ENOMEM;
        m->event = sd_event_ref(e);
        m->http = http;
        /* no trailing slash: paths are joined with "/latest/" */
        n = strlen(base_url);
        while (n > 0 && base_url[n - 1] == '/')
                n--;
        m->base = strndup(base_url, n);
        if (!m->base) {
                imds_free(m);
                return -ENOMEM;
        }
        *ret = m;
        return 0;
}

static void request_free(ImdsRequest *r) {
        http_cancel(r->call);
        free(r->path);
        free(r);
}

static void request_unlink(Imds *m, ImdsRequest *r) {
        for (ImdsRequest **p = &m->requests; *p; p = &(*p)->next)
                if (*p == r) {
                        *p = r->next;
                        return;
                }
}

Imds *imds_free(Imds *m) {
        if (!m)
                return NULL;
        while (m->requests) {
                ImdsRequest *r = m->requests;
                m->requests = r->next;
                request_free(r);
        }
        http_cancel(m->token_call);
        token_drop(m);
        free(m->base);
        free(m->last_error);
        sd_event_unref(m->event);
        free(m);
        return NULL;
}

static void request_finish(ImdsRequest *r, int error, long status, const char *body, size_t len, const char *detail) {
        Imds *m = r->imds;
        ImdsAnswer a = { .error = error, .status = status, .body = body ? body : "", .body_len = len,
                         .detail = detail };

        request_unlink(m, r);
        r->call = NULL;
        r->cb(&a, r->userdata);
        request_free(r);
}

static bool token_valid(Imds *m) {
        return m->token && now_mono(m) + IMDS_TOKEN_MARGIN < m->token_expires;
}

static void token_fetch(Imds *m);

static void on_get(const HttpResponse *resp, void *userdata) {
        ImdsRequest *r = userdata;
        Imds *m = r->imds;
        char why[128], detail[256];

        r->call = NULL;
        if (resp->result != CURLE_OK) {
                snprintf(detail, sizeof detail, "IMDS %s: %s", r->path, http_describe_failure(resp, why, sizeof why));
                set_error(m, detail);
                request_finish(r, -EHOSTUNREACH, 0, NULL, 0, detail);
                return;
        }
        if (resp->status == 401 && !r->retried) {
                /* the token expired early or the service restarted: one more try */
                r->retried = true;
                token_drop(m);
                token_fetch(m);
                return;
        }
        if (resp->truncated) {
                /* metadata values are a few bytes, role credentials about 1.5 KiB:
                 * this is not a metadata service (a captive proxy?), and half a
                 * value would be worse than none */
                snprintf(detail, sizeof detail, "IMDS %s: answer too large (HTTP %ld, over %u KiB)", r->path,
                         resp->status, (unsigned) (IMDS_BODY_MAX / 1024));
                set_error(m, detail);
                request_finish(r, -EMSGSIZE, resp->status, NULL, 0, detail);
                return;
        }
        snprintf(detail, sizeof detail, "IMDS %s: HTTP %ld", r->path, resp->status);
        if (resp->status != 200 && resp->status != 404)
                set_error(m, detail);
        request_finish(r, 0, resp->status, resp->body, resp->body_len, detail);
}

static void request_send(ImdsRequest *r) {
        Imds *m = r->imds;
        _cleanup_(freep) char *url = NULL, *header = NULL;
        const char *headers[2] = {};
        HttpRequest req = {
                .method = "GET",
                .timeout = IMDS_TIMEOUT,
                .body_max = IMDS_BODY_MAX,
                .use_env_proxy = false, /* link-local: never through a proxy */
        };
        int k;

        if (asprintf(&url, "%s/latest/%s", m->base, r->path) < 0 ||
            asprintf(&header, "X-aws-ec2-metadata-token: %s", m->token) < 0) {
                request_finish(r, -ENOMEM, 0, NULL, 0, "out of memory");
                return;
        }
        headers[0] = header;
        req.url = url;
        req.headers = headers;
        k = http_submit(m->http, &req, on_get, r, &r->call);
        free_wiped(TAKE_PTR(header), strlen(headers[0]));
        if (k < 0)
                request_finish(r, k, 0, NULL, 0, "IMDS: cannot start the request");
}

static void on_token(const HttpResponse *resp, void *userdata) {
        Imds *m = userdata;
        char why[128], detail[320];
        ImdsRequest *r, *next;

        m->token_call = NULL;
        if (resp->result == CURLE_OK && resp->status == 200 && resp->body_len > 0 && resp->body_len < IMDS_TOKEN_MAX &&
            !resp->truncated) {
                token_drop(m);
                m->token = strndup(resp->body, resp->body_len);
                m->token_expires = now_mono(m) + (usec_t) IMDS_TOKEN_TTL_SEC * USEC_PER_SEC;
                if (m->token) {
                        set_error(m, NULL);
                        for (r = m->requests; r; r = next) {
                                next = r->next;
                                if (!r->call)
                                        request_send(r);
                        }
                        return;
                }
                snprintf(detail, sizeof detail, "IMDS token: out of memory");
        } else if (resp->result == CURLE_OPERATION_TIMEDOUT)
                snprintf(detail, sizeof detail,
                         "IMDS token: no answer within %.0fs (in a container? the instance's "
                         "HttpPutResponseHopLimit must be 2 or more)",
                         (double) IMDS_TIMEOUT / USEC_PER_SEC);
        else if (resp->result != CURLE_OK)
                snprintf(detail, sizeof detail, "IMDS token: %s", http_describe_failure(resp, why, sizeof why));
        else if (resp->status == 403)
                snprintf(detail, sizeof detail, "IMDS token: HTTP 403 (IMDS disabled for this instance?)");
        else if (resp->status == 200 && (resp->truncated || resp->body_len >= IMDS_TOKEN_MAX))
                snprintf(detail, sizeof detail, "IMDS token: answer too large (%u bytes or more): not a metadata service?",
                         (unsigned) IMDS_TOKEN_MAX);
        else if (resp->status == 200)
                snprintf(detail, sizeof detail, "IMDS token: HTTP 200 with an empty token");
        else
                snprintf(detail, sizeof detail, "IMDS token: HTTP %ld", resp->status);
        set_error(m, detail);
        for (r = m->requests; r; r = next) {
                next = r->next;
                if (!r->call)
                        request_finish(r, -EHOSTUNREACH, 0, NULL, 0, detail);
        }
}

static void token_fetch(Imds *m) {
        _cleanup_(freep) char *url = NULL;
        const char *headers[] = { "X-aws-ec2-metadata-token-ttl-seconds: 21600", NULL };
        HttpRequest req = {
                .method = "PUT",
                .body = "",
                .body_len = 0,
                .headers = headers,
                .timeout = IMDS_TIMEOUT,
                .body_max = IMDS_TOKEN_MAX,
                .use_env_proxy = false, /* link-local: never through a proxy */
        };
        int k;

        if (m->token_call)
                return;
        if (asprintf(&url, "%s/latest/api/token", m->base) < 0)
                return;
        req.url = url;
        k = http_submit(m->http, &req, on_token, m, &m->token_call);
        if (k < 0)
                log_warning_errno(k, "IMDS: cannot ask for a token: %m");
}

int imds_get(Imds *m, const char *path, imds_done_t cb, void *userdata) {
        ImdsRequest *r;

        if (isempty(path) || !cb)
                return -EINVAL;
        r = calloc(1, sizeof *r);
        if (!r)
                return -ENOMEM;
        r->imds = m;
        r->cb = cb;
        r->userdata = userdata;
        r->path = strdup(path);
        if (!r->path) {
                free(r);
                return -ENOMEM;
        }
        r->next = m->requests;
        m->requests = r;
        if (token_valid(m))
                request_send(r);
        else {
                token_drop(m);
                token_fetch(m);
        }
        return 0;
}

json_object *imds_status_json(const Imds *m) {
        json_object *o = json_object_new_object();
        uint64_t now = 0;

        if (!o)
                return NULL;
        (void) sd_event_now(m->event, CLOCK_MONOTONIC, &now);
        json_object_object_add(o, "url", json_object_new_string(m->base));
        json_object_object_add(o, "token", json_object_new_string(m->token ? "valid" : "none"));
        if (m->token && m->token_expires > now)
                json_object_object_add(o, "token_expires_in_sec",
                                       json_object_new_uint64((m->token_expires - now) / USEC_PER_SEC));
        if (m->last_error)
                json_object_object_add(o, "last_error", json_object_new_string(m->last_error));
        return o;
}
