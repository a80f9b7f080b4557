/* Slack's wire and payloads. What each of Slack's answers means is decided
 * here, once: transient (retry with backoff, honouring Retry-After), this
 * message is bad (set it aside), or our configuration is broken (pause
 * delivery, keep every message, say so loudly). */
#include "slack.h"

#include <ctype.h>
#include <stdarg.h>

#include "fileio.h"
#include "log.h"
#include "jsonutil.h"
#include "secret.h"
#include "utf8.h"

#define SLACK_JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)
#define SLACK_FALLBACK_MAX 3000
#define SLACK_RESPONSE_MAX (64 * 1024)
#define SLACK_RATELIMIT_DEFAULT (30 * USEC_PER_SEC)

static const char *const mode_table[_SLACK_MODE_MAX] = {
        [SLACK_WEBHOOK] = "webhook",
        [SLACK_BOT] = "bot-token",
};

const char *slack_mode_to_string(SlackMode m) {
        return m >= 0 && m < _SLACK_MODE_MAX ? mode_table[m] : NULL;
}

/* --- text ------------------------------------------------------------- */

static char *escape_text(const char *s, size_t max, bool entities) {
        static const char ellipsis[] = "\xe2\x80\xa6";
        const unsigned char *p = (const unsigned char *) (s ? s : "");
        size_t n = strlen((const char *) p), out_len = 0, keep = 0;
        char *out;

        /* worst case: each byte becomes "&amp;" (5) or U+FFFD (3) */
        out = malloc(MIN(n * 5, max) + sizeof ellipsis + 1);
        if (!out)
                return NULL;
        while (*p) {
                char piece[8];
                size_t plen, k;

                k = *p < 0x80 ? 1 : utf8_sequence_len(p, n - (size_t) (p - (const unsigned char *) s));
                if (k == 0) {
                        memcpy(piece, "\xef\xbf\xbd", 3);
                        plen = 3;
                        k = 1;
                } else if (entities && *p == '&') {
                        memcpy(piece, "&amp;", 5);
                        plen = 5;
                } else if (entities && *p == '<') {
                        memcpy(piece, "&lt;", 4);
                        plen = 4;
                } else if (entities && *p == '>') {
                        memcpy(piece, "&gt;", 4);
                        plen = 4;
                } else if (*p < 0x20 && *p != '\n' && *p != '\t') {
                        piece[0] = ' ';
                        plen = 1;
                } else if (*p == 0x7f) {
                        piece[0] = ' ';
                        plen = 1;
                } else {
                        memcpy(piece, p, k);
                        plen = k;
                }
                if (out_len + plen > max) {
                        /* "…" counts against max: cut back to the last piece
                         * that leaves room for it */
                        out_len = keep;
                        if (keep + sizeof ellipsis - 1 <= max) {
                                memcpy(out + out_len, ellipsis, sizeof ellipsis - 1);
                                out_len += sizeof ellipsis - 1;
                        }
                        break;
                }
                memcpy(out + out_len, piece, plen);
                out_len += plen;
                if (out_len + sizeof ellipsis - 1 <= max)
                        keep = out_len;
                p += k;
        }
        out[out_len] = '\0';
        return out;
}

char *slack_escape(const char *s, size_t max) {
        return escape_text(s, max, true);
}

/* --- payloads ---------------------------------------------------------- */

static json_object *text_object(const char *type, const char *text) {
        json_object *o = json_object_new_object();

        if (!o)
                return NULL;
        if (json_object_object_add(o, "type", json_object_new_string(type)) < 0 ||
            json_object_object_add(o, "text", json_object_new_string(text)) < 0) {
                json_object_put(o);
                return NULL;
        }
        if (streq(type, "plain_text"))
                (void) json_object_object_add(o, "emoji", json_object_new_boolean(true));
        return o;
}

static int add_block(json_object *blocks, const char *type, const char *key, json_object *value) {
        json_object *b = json_object_new_object();

        if (!b || !value) {
                json_object_put(b);
                json_object_put(value);
                return -ENOMEM;
        }
        if (json_object_object_add(b, "type", json_object_new_string(type)) < 0 ||
            json_object_object_add(b, key, value) < 0 || json_object_array_add(blocks, b) < 0) {
                json_object_put(b);
                return -ENOMEM;
        }
        return 0;
}

static json_object *mrkdwn(const char *raw, size_t max) {
        _cleanup_(freep) char *e = slack_escape(raw, max);
        return e ? text_object("mrkdwn", e) : NULL;
}

int slack_payload_build(const SlackMessage *m, char **ret) {
        _cleanup_(json_object_putp) json_object *root = NULL;
        _cleanup_(freep) char *title = NULL, *fallback_raw = NULL, *fallback = NULL, *code = NULL;
        json_object *blocks;
        const char *s;

        if (!m || isempty(m->title))
                return -EINVAL;
        root = json_object_new_object();
        blocks = json_object_new_array();
        if (!root || !blocks || json_object_object_add(root, "blocks", blocks) < 0) {
                json_object_put(blocks);
                return -ENOMEM;
        }

        /* plain_text needs no entities; it only has to be valid and short */
        {
                _cleanup_(freep) char *raw = NULL;
                if (asprintf(&raw, "%s%s%s", m->emoji ? m->emoji : "", m->emoji ? " " : "", m->title) < 0)
                        return -ENOMEM;
                /* header blocks are plain_text: no entities, shown as typed */
                title = escape_text(raw, SLACK_TITLE_MAX - 3, false);
                if (!title)
                        return -ENOMEM;
        }
        if (add_block(blocks, "header", "text", text_object("plain_text", title)) < 0)
                return -ENOMEM;
        if (!isempty(m->text) && add_block(blocks, "section", "text", mrkdwn(m->text, SLACK_SECTION_MAX - 8)) < 0)
                return -ENOMEM;
        if (m->n_fields > 0) {
                json_object *fields = json_object_new_array();
                for (size_t i = 0; fields && i < MIN(m->n_fields, (size_t) SLACK_FIELDS_MAX); i++) {
                        _cleanup_(freep) char *label = slack_escape(m->fields[i].label, 100);
                        _cleanup_(freep) char *value = slack_escape(m->fields[i].value, SLACK_FIELD_MAX - 200);
                        _cleanup_(freep) char *f = NULL;
                        json_object *t;
                        if (!label || !value || asprintf(&f, "*%s*\n%s", label, value) < 0 ||
                            !(t = text_object("mrkdwn", f)) || json_object_array_add(fields, t) < 0) {
                                json_object_put(fields);
                                return -ENOMEM;
                        }
                }
                if (add_block(blocks, "section", "fields", fields) < 0)
                        return -ENOMEM;
        }
        if (!isempty(m->detail)) {
                _cleanup_(freep) char *e = slack_escape(m->detail, SLACK_SECTION_MAX - 16);
                /* three backticks inside would end the code block early */
                for (char *b = e; b && (b = strstr(b, "```")); b += 3)
                        b[1] = '\'';
                if (!e || asprintf(&code, "```%s```", e) < 0 ||
                    add_block(blocks, "section", "text", text_object("mrkdwn", code)) < 0)
                        return -ENOMEM;
        }
        if (!isempty(m->context)) {
                json_object *elements = json_object_new_array();
                json_object *t = mrkdwn(m->context, SLACK_FIELD_MAX);
                if (!elements || !t || json_object_array_add(elements, t) < 0) {
                        json_object_put(elements);
                        json_object_put(t);
                        return -ENOMEM;
                }
                if (add_block(blocks, "context", "elements", elements) < 0)
                        return -ENOMEM;
        }

        /* The fallback: notifications, clients without blocks, and the
         * text-only retry after Slack refused the blocks, so it carries
         * every fact the blocks show. */
        {
                _cleanup_(fclosep) FILE *f = NULL;
                size_t size = 0;

                f = open_memstream(&fallback_raw, &size);
                if (!f)
                        return -ENOMEM;
                fprintf(f, "%s%s%s", m->emoji ? m->emoji : "", m->emoji ? " " : "", m->title);
                if (!isempty(m->text))
                        fprintf(f, "\n%s", m->text);
                for (size_t i = 0; i < MIN(m->n_fields, (size_t) SLACK_FIELDS_MAX); i++)
                        fprintf(f, "\n%s: %s", strempty(m->fields[i].label), strempty(m->fields[i].value));
                if (!isempty(m->detail))
                        fprintf(f, "\n%s", m->detail);
                if (!isempty(m->context))
                        fprintf(f, "\n%s", m->context);
                if (fflush(f) != 0 || ferror(f))
                        return -ENOMEM;
        }
        fallback = slack_escape(fallback_raw, SLACK_FALLBACK_MAX);
        if (!fallback || json_object_object_add(root, "text", json_object_new_string(fallback)) < 0)
                return -ENOMEM;

        s = json_object_to_json_string_ext(root, SLACK_JSON_FLAGS);
        if (!s || !(*ret = strdup(s)))
                return -ENOMEM;
        return 0;
}

int slack_request_body(SlackMode mode, const char *payload, const char *channel, const char *thread_ts,
                       bool text_only, char **ret) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        const char *s;

        o = json_tokener_parse(payload);
        if (!o || !json_object_is_type(o, json_type_object))
                return -EBADMSG;
        if (text_only)
                json_object_object_del(o, "blocks");
        if (mode == SLACK_BOT) {
                if (isempty(channel))
                        return -EINVAL;
                if (json_object_object_add(o, "channel", json_object_new_string(channel)) < 0)
                        return -ENOMEM;
                if (thread_ts && json_object_object_add(o, "thread_ts", json_object_new_string(thread_ts)) < 0)
                        return -ENOMEM;
                /* our texts quote process names: no @channel pings from them */
                if (json_object_object_add(o, "link_names", json_object_new_boolean(false)) < 0)
                        return -ENOMEM;
        }
        s = json_object_to_json_string_ext(o, SLACK_JSON_FLAGS);
        if (!s || !(*ret = strdup(s)))
                return -ENOMEM;
        return 0;
}

/* --- answers ----------------------------------------------------------- */

static bool in_list(const char *s, const char *const *list) {
        for (; *list; list++)
                if (streq(s, *list))
                        return true;
        return false;
}

/* Slack's own words for "try again later". */
static const char *const transient_errors[] = {
        "ratelimited", "rate_limited", "internal_error", "fatal_error", "service_unavailable",
        "request_timeout", "team_added_to_org", "rollup_error", NULL,
};

/* Our setup is wrong: every message would fail the same way. */
static const char *const config_errors[] = {
        "not_authed", "invalid_auth", "account_inactive", "token_revoked", "token_expired",
        "no_permission", "missing_scope", "not_allowed_token_type", "access_denied",
        "channel_not_found", "not_in_channel", "is_archived", "channel_is_archived", "restricted_action",
        "ekm_access_denied", "org_login_required", "team_access_not_granted", "invalid_token",
        "no_service", "no_service_id", "no_team", "team_disabled", "action_prohibited", "no_active_hooks",
        "posting_to_general_channel_denied", NULL,
};

static const char *const block_errors[] = {
        "invalid_blocks", "invalid_blocks_format", "msg_blocks_too_long", "invalid_attachments", NULL,
};

bool slack_error_is_blocks(const char *error) {
        return error && in_list(error, block_errors);
}

static void answer_set(SlackAnswer *a, OutboxVerdict v, const char *error, const char *format, ...) _printf_(4, 5);
static void answer_set(SlackAnswer *a, OutboxVerdict v, const char *error, const char *format, ...) {
        va_list ap;

        a->verdict = v;
        snprintf(a->error, sizeof a->error, "%s", strempty(error));
        va_start(ap, format);
        vsnprintf(a->detail, sizeof a->detail, format, ap);
        va_end(ap);
}

static void copy_word(char *dst, size_t size, const char *src) {
        size_t i = 0;

        /* Slack error codes are [a-z_]; anything else is not trusted into logs */
        for (; src && src[i] && i + 1 < size; i++)
                dst[i] = (isalnum((unsigned char) src[i]) || src[i] == '_' || src[i] == '.') ? src[i] : '?';
        dst[i] = '\0';
}

static void classify_error_word(SlackAnswer *a, const char *error, long status) {
        if (in_list(error, transient_errors))
                answer_set(a, OUTBOX_RETRY, error, "Slack: %s (HTTP %ld), will retry", error, status);
        else if (in_list(error, config_errors))
                answer_set(a, OUTBOX_BROKEN_CONFIG, error, "Slack: %s (HTTP %ld): check [slack] settings", error,
                           status);
        else
                answer_set(a, OUTBOX_REJECTED, error, "Slack rejected the message: %s (HTTP %ld)", error, status);
}

void slack_classify(SlackMode mode, const HttpResponse *r, SlackAnswer *a) {
        char why[96], word[64];

        *a = (SlackAnswer) { .retry_after = USEC_INFINITY };
        if (r->result != CURLE_OK) {
                answer_set(a, OUTBOX_RETRY, NULL, "Slack unreachable: %s", http_describe_failure(r, why, sizeof why));
                return;
        }
        if (r->status == 429) {
                a->retry_after = r->retry_after != USEC_INFINITY ? r->retry_after : SLACK_RATELIMIT_DEFAULT;
                answer_set(a, OUTBOX_RETRY, "ratelimited", "Slack: rate limited (HTTP 429, Retry-After %llus)",
                           (unsigned long long) (a->retry_after / USEC_PER_SEC));
                if (r->retry_after == USEC_INFINITY)
                        strncat(a->detail, "; no Retry-After given, waiting 30s", sizeof a->detail - strlen(a->detail) - 1);
                return;
        }
        if (r->status >= 500 || r->status < 200) {
                /* webhooks name the error ("rollup_error"); a proxy's error page is not worth quoting */
                size_t n = strspn(r->body, "abcdefghijklmnopqrstuvwxyz_");
                word[0] = '\0';
                if (n > 0 && n < sizeof word && strspn(r->body + n, " \r\n") == r->body_len - n) {
                        memcpy(word, r->body, n);
                        word[n] = '\0';
                }
                answer_set(a, OUTBOX_RETRY, word, "Slack: HTTP %ld%s%s, will retry", r->status, word[0] ? " " : "", word);
                return;
        }

        if (mode == SLACK_WEBHOOK) {
                /* Webhooks answer with a bare word: "ok", or the error code */
                size_t n = r->body_len;
                while (n > 0 && isspace((unsigned char) r->body[n - 1]))
                        n--;
                if (r->status == 200 && n == 2 && memcmp(r->body, "ok", 2) == 0) {
                        answer_set(a, OUTBOX_DELIVERED, NULL, "ok");
                        return;
                }
                if (n >= sizeof word || n == 0) {
                        if (r->status == 200)
                                answer_set(a, OUTBOX_RETRY, NULL, "Slack: unexpected webhook answer (HTTP 200), will retry");
                        else
                                answer_set(a, OUTBOX_BROKEN_CONFIG, NULL, "Slack: HTTP %ld from the webhook: check webhook_url",
                                           r->status);
                        return;
                }
                memcpy(word, r->body, n);
                word[n] = '\0';
                copy_word(word, sizeof word, word);
                if (r->status == 403 || r->status == 404 || r->status == 410) {
                        answer_set(a, OUTBOX_BROKEN_CONFIG, word, "Slack: %s (HTTP %ld): check webhook_url", word, r->status);
                        return;
                }
                classify_error_word(a, word, r->status);
                return;
        }

        /* Web API: HTTP 200 with {"ok": bool, "error": "..."} */
        {
                _cleanup_(json_object_putp) json_object *o = NULL;
                json_object *ok, *v;

                if (r->status != 200) {
                        answer_set(a, OUTBOX_BROKEN_CONFIG, NULL, "Slack: HTTP %ld from chat.postMessage: check api_url",
                                   r->status);
                        return;
                }
                o = r->truncated ? NULL : json_tokener_parse(r->body);
                if (!o || !json_object_is_type(o, json_type_object) || !json_object_object_get_ex(o, "ok", &ok) ||
                    !json_object_is_type(ok, json_type_boolean)) {
                        answer_set(a, OUTBOX_RETRY, NULL, "Slack: answer is not Web API JSON (HTTP 200), will retry");
                        return;
                }
                if (json_object_get_boolean(ok)) {
                        if (json_object_object_get_ex(o, "ts", &v) && json_object_is_type(v, json_type_string))
                                copy_word(a->ts, sizeof a->ts, json_object_get_string(v));
                        answer_set(a, OUTBOX_DELIVERED, NULL, "ok%s%s", a->ts[0] ? ", ts " : "", a->ts);
                        return;
                }
                if (!json_object_object_get_ex(o, "error", &v) || !json_object_is_type(v, json_type_string)) {
                        answer_set(a, OUTBOX_RETRY, NULL, "Slack: ok=false without an error code, will retry");
                        return;
                }
                copy_word(word, sizeof word, json_object_get_string(v));
                if (streq(word, "ratelimited"))
                        a->retry_after = r->retry_after != USEC_INFINITY ? r->retry_after : SLACK_RATELIMIT_DEFAULT;
                classify_error_word(a, word, r->status);
        }
}

/* --- the client ---------------------------------------------------------- */

struct Slack {
        Http *http;
        SlackMode mode;
        char *url;             /* webhook URL (secret) or api_url + "/chat.postMessage" */
        char *auth_header;     /* "Authorization: Bearer ..." (secret), bot mode */
        char *channel;
        char *api_url;         /* for status; not a secret */
        usec_t timeout;

        HttpCall *call;
        char *payload, *thread_ts;
        bool text_only_tried, thread_dropped;
        slack_answer_t cb;
        void *userdata;
};

static void wipe_free(char **p) {
        if (*p)
                free_wiped(*p, strlen(*p));
        *p = NULL;
}

int slack_new(Http *http, const Config *c, Slack **ret, char **ret_error) {
        _cleanup_(slack_freep) Slack *s = NULL;
        _cleanup_(freep) char *secret = NULL;
        int r;

        s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->http = http;
        s->timeout = c->slack.timeout > 0 ? c->slack.timeout : 10 * USEC_PER_SEC;
        if (c->slack.webhook_url || c->slack.webhook_url_file) {
                s->mode = SLACK_WEBHOOK;
                if (c->slack.webhook_url_file) {
                        r = secret_file_read(c->slack.webhook_url_file, &s->url, ret_error);
                        if (r < 0)
                                return r;
                        if (strncmp(s->url, "https://", 8) != 0 && strncmp(s->url, "http://", 7) != 0) {
                                if (ret_error && asprintf(ret_error, "%s: does not hold an http(s):// URL",
                                                          c->slack.webhook_url_file) < 0)
                                        *ret_error = NULL;
                                return -EINVAL;
                        }
                } else if (!(s->url = strdup(c->slack.webhook_url)))
                        return -ENOMEM;
        } else {
                s->mode = SLACK_BOT;
                if (c->slack.token_file) {
                        r = secret_file_read(c->slack.token_file, &secret, ret_error);
                        if (r < 0)
                                return r;
                } else if (!(secret = strdup(strempty(c->slack.token))))
                        return -ENOMEM;
                r = asprintf(&s->auth_header, "Authorization: Bearer %s", secret);
                free_wiped(secret, strlen(secret));
                secret = NULL;
                if (r < 0)
                        return -ENOMEM;
                s->channel = strdup(strempty(c->slack.channel));
                s->api_url = strdup(c->slack.api_url ? c->slack.api_url : "https://slack.com/api");
                if (!s->channel || !s->api_url)
                        return -ENOMEM;
                /* api_url may or may not end in '/' */
                if (asprintf(&s->url, "%s%schat.postMessage", s->api_url,
                             s->api_url[strlen(s->api_url) - 1] == '/' ? "" : "/") < 0)
                        return -ENOMEM;
        }
        {
                char how[512];
                if (http_env_proxy_describe(s->url, http_getenv, how, sizeof how))
                        log_info("slack: %s", how);
        }
        *ret = TAKE_PTR(s);
        return 0;
}

static void call_reset(Slack *s) {
        s->call = NULL;
        free(s->payload);
        free(s->thread_ts);
        s->payload = s->thread_ts = NULL;
        s->text_only_tried = s->thread_dropped = false;
        s->cb = NULL;
        s->userdata = NULL;
}

Slack *slack_free(Slack *s) {
        if (!s)
                return NULL;
        http_cancel(s->call);
        call_reset(s);
        if (s->mode == SLACK_WEBHOOK)
                wipe_free(&s->url);
        free(s->url);
        wipe_free(&s->auth_header);
        free(s->channel);
        free(s->api_url);
        free(s);
        return NULL;
}

SlackMode slack_mode(const Slack *s) {
        return s->mode;
}

static void on_http_done(const HttpResponse *resp, void *userdata);

static int start_call(Slack *s) {
        _cleanup_(freep) char *body = NULL;
        const char *headers[3] = { "Content-Type: application/json; charset=utf-8", NULL, NULL };
        HttpRequest req = {
                .method = "POST",
                .url = s->url,
                .timeout = s->timeout,
                .body_max = SLACK_RESPONSE_MAX,
                .use_env_proxy = true, /* outside the network: https_proxy/no_proxy */
        };
        int r;

        r = slack_request_body(s->mode, s->payload, s->channel, s->thread_dropped ? NULL : s->thread_ts,
                               s->text_only_tried, &body);
        if (r < 0)
                return r;
        if (s->mode == SLACK_BOT)
                headers[1] = s->auth_header;
        req.headers = headers;
        req.body = body;
        req.body_len = strlen(body);
        return http_submit(s->http, &req, on_http_done, s, &s->call);
}

static void on_http_done(const HttpResponse *resp, void *userdata) {
        Slack *s = userdata;
        SlackAnswer a;
        slack_answer_t cb = s->cb;
        void *cb_userdata = s->userdata;

        s->call = NULL;
        slack_classify(s->mode, resp, &a);
        if (a.verdict == OUTBOX_REJECTED && slack_error_is_blocks(a.error) && !s->text_only_tried) {
                log_warning("slack: %s; sending the plain-text fallback instead", a.detail);
                s->text_only_tried = true;
                if (start_call(s) >= 0)
                        return;
        }
        if (a.verdict == OUTBOX_REJECTED && streq(a.error, "thread_not_found") && s->thread_ts && !s->thread_dropped) {
                log_warning("slack: the incident's thread is gone; posting the reply standalone");
                s->thread_dropped = true;
                if (start_call(s) >= 0)
                        return;
        }
        call_reset(s);
        cb(&a, cb_userdata);
}

int slack_send(Slack *s, const char *payload, const char *thread_ts, slack_answer_t cb, void *userdata) {
        int r;

        if (s->call)
                return -EBUSY;
        call_reset(s);
        s->payload = strdup(payload);
        s->thread_ts = thread_ts ? strdup(thread_ts) : NULL;
        if (!s->payload || (thread_ts && !s->thread_ts)) {
                call_reset(s);
                return -ENOMEM;
        }
        s->cb = cb;
        s->userdata = userdata;
        r = start_call(s);
        if (r < 0)
                call_reset(s);
        return r;
}

json_object *slack_status_json(const Slack *s) {
        json_object *o = json_object_new_object();

        if (!o)
                return NULL;
        json_object_object_add(o, "mode", json_object_new_string(slack_mode_to_string(s->mode)));
        if (s->channel)
                json_object_object_add(o, "channel", json_object_new_string(s->channel));
        if (s->api_url)
                json_object_object_add(o, "api_url", json_object_new_string(s->api_url));
        return o;
}
