/* Slack: the wire (incoming webhook, or chat.postMessage with a bot
 * token), what Slack's answers mean for delivery, and the Block Kit
 * payloads with their plain-text fallback. The token and the webhook URL
 * are secrets: they are read from files or the config, kept here only,
 * and never logged, shown in status or put on a command line. */
#pragma once

#include <json-c/json.h>

#include "config.h"
#include "http.h"
#include "outbox.h"

typedef enum SlackMode {
        SLACK_WEBHOOK,
        SLACK_BOT,
        _SLACK_MODE_MAX,
        _SLACK_MODE_INVALID = -EINVAL,
} SlackMode;

const char *slack_mode_to_string(SlackMode m);

/* --- payloads (pure) -------------------------------------------------- */

#define SLACK_FIELDS_MAX 10      /* Block Kit: at most 10 fields per section */
#define SLACK_TITLE_MAX 150      /* header block: plain_text up to 150 chars */
#define SLACK_SECTION_MAX 3000   /* section text */
#define SLACK_FIELD_MAX 2000

typedef struct SlackField {
        const char *label;
        const char *value;       /* raw text: escaped when built */
} SlackField;

typedef struct SlackMessage {
        const char *emoji;       /* ":rotating_light:", or NULL */
        const char *title;       /* raw text, the header */
        const char *text;        /* raw text, the first section */
        SlackField fields[SLACK_FIELDS_MAX];
        size_t n_fields;
        const char *detail;      /* raw text, shown preformatted (top processes, checks) */
        const char *context;     /* raw text, small print (incident id, agent) */
} SlackMessage;

/* Escape raw text for mrkdwn: & < > as entities, control characters as
 * spaces (newline and tab kept), invalid UTF-8 as U+FFFD; cut to at most
 * `max` bytes on a character boundary with "…" when cut. */
char *slack_escape(const char *s, size_t max);

/* {"text": fallback, "blocks": [...]}: what the outbox stores. */
int slack_payload_build(const SlackMessage *m, char **ret);

/* The request body for the wire: the payload plus channel and thread_ts
 * (bot mode); text_only drops the blocks (Slack refused them once). */
int slack_request_body(SlackMode mode, const char *payload, const char *channel, const char *thread_ts,
                       bool text_only, char **ret);

/* --- answers (pure) --------------------------------------------------- */

typedef struct SlackAnswer {
        OutboxVerdict verdict;
        usec_t retry_after;      /* USEC_INFINITY when Slack gave none */
        char error[64];          /* Slack's error code ("invalid_auth"), "" when none */
        char detail[200];        /* one line for logs and status; never a URL or token */
        char ts[40];             /* chat.postMessage's ts when delivered */
} SlackAnswer;

void slack_classify(SlackMode mode, const HttpResponse *r, SlackAnswer *ret);
/* The error means the blocks were refused: retry the text alone. */
bool slack_error_is_blocks(const char *error);

/* --- the client -------------------------------------------------------- */

typedef struct Slack Slack;
typedef void (*slack_answer_t)(const SlackAnswer *a, void *userdata);

/* Reads token_file / webhook_url_file (refused when group/world
 * readable: *ret_error says why). */
int slack_new(Http *http, const Config *c, Slack **ret, char **ret_error);
/* Cancels a message in flight (its callback does not run). */
Slack *slack_free(Slack *s);
static inline void slack_freep(Slack **s) {
        slack_free(*s);
}

SlackMode slack_mode(const Slack *s);
/* Posts one payload; answers once through `cb`. -EBUSY while another is in
 * flight (the outbox sends one at a time). */
int slack_send(Slack *s, const char *payload, const char *thread_ts, slack_answer_t cb, void *userdata);

/* {"mode","channel","api"}: nothing secret. */
json_object *slack_status_json(const Slack *s);
