/* What Slack answers: slack_classify() for both modes (incoming webhook
 * and chat.postMessage) on a response built from the input, the
 * Retry-After parser it relies on, the backoff that follows, and
 * slack_escape() on the body as raw text.
 *
 * Input layout (readable, so seeds are real answers):
 *   line 1: the HTTP status in decimal, then optional flags:
 *           't' the body was cut at body_max, 'x' curl failed (no answer),
 *           'o' curl timed out
 *   line 2: the Retry-After header's value, empty when absent
 *   rest:   the body */
#include <ctype.h>

#include <curl/curl.h>

#include "fuzz.h"
#include "http.h"
#include "outbox.h"
#include "slack.h"

/* A fixed "now" (2026-01-01T00:00:00Z): HTTP-dates resolve the same way
 * on every run. */
#define FUZZ_NOW ((time_t) 1767225600)

static const char *next_line(const char *p, const char *end, size_t *ret_len) {
        const char *nl = memchr(p, '\n', (size_t) (end - p));

        *ret_len = (size_t) ((nl ?: end) - p);
        return nl ? nl + 1 : end;
}

static bool word_ok(const char *s) {
        for (; *s; s++)
                if (!isalnum((unsigned char) *s) && *s != '_' && *s != '.' && *s != '?')
                        return false;
        return true;
}

static void check_answer(SlackMode mode, const HttpResponse *r, const SlackAnswer *a) {
        FUZZ_CHECK(outbox_verdict_to_string(a->verdict));
        FUZZ_CHECK(memchr(a->error, '\0', sizeof a->error) && word_ok(a->error));
        FUZZ_CHECK(memchr(a->ts, '\0', sizeof a->ts) && word_ok(a->ts));
        FUZZ_CHECK(memchr(a->detail, '\0', sizeof a->detail) && a->detail[0]);
        for (const char *p = a->detail; *p; p++)
                FUZZ_CHECK((unsigned char) *p >= 0x20);
        if (a->verdict == OUTBOX_DELIVERED)
                FUZZ_CHECK(r->result == CURLE_OK && r->status == 200 && !a->error[0]);
        if (r->result == CURLE_OK && r->status == 429)
                FUZZ_CHECK(a->verdict == OUTBOX_RETRY && a->retry_after != USEC_INFINITY);
        if (mode == SLACK_WEBHOOK && a->verdict == OUTBOX_DELIVERED)
                FUZZ_CHECK(r->body_len >= 2 && memcmp(r->body, "ok", 2) == 0);

        /* Slack's Retry-After is a floor for the next attempt. */
        for (unsigned attempt = 1; attempt <= 32; attempt *= 4) {
                usec_t d = outbox_backoff(attempt, a->retry_after, (uint64_t) r->body_len * 0x9e3779b97f4a7c15ULL);

                FUZZ_CHECK(d != USEC_INFINITY);
                if (a->retry_after != USEC_INFINITY)
                        FUZZ_CHECK(d >= MIN(a->retry_after, USEC_INFINITY - 1));
                else
                        FUZZ_CHECK(d >= OUTBOX_BACKOFF_MIN / 2 && d <= OUTBOX_BACKOFF_MAX);
        }
        (void) slack_error_is_blocks(a->error);
}

static void retry_after(const char *raw, size_t len, usec_t *ret) {
        _cleanup_(freep) char *value = NULL;
        usec_t u;
        size_t i;

        *ret = USEC_INFINITY;
        /* as http.c's header callback trims it */
        while (len > 0 && isspace((unsigned char) *raw))
                raw++, len--;
        while (len > 0 && isspace((unsigned char) raw[len - 1]))
                len--;
        value = fuzz_strndup((const uint8_t *) raw, len);
        if (http_parse_retry_after(value, FUZZ_NOW, &u) < 0)
                return;
        for (i = 0; i < len && isdigit((unsigned char) value[i]); i++)
                ;
        /* delta-seconds: whole seconds, never the "absent" marker */
        if (len > 0 && i == len)
                FUZZ_CHECK(u % USEC_PER_SEC == 0);
        FUZZ_CHECK(u != USEC_INFINITY);
        *ret = u;
}

static void escape(const char *body, size_t max) {
        _cleanup_(freep) char *e = slack_escape(body, max);
        size_t n;

        FUZZ_CHECK(e);
        n = strlen(e);
        FUZZ_CHECK(n <= max);
        FUZZ_CHECK(fuzz_utf8_valid(e, n));
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char) e[i];

                FUZZ_CHECK(c >= 0x20 || c == '\n' || c == '\t');
                FUZZ_CHECK(c != 0x7f && c != '<' && c != '>');
                if (c == '&')
                        FUZZ_CHECK(strncmp(e + i, "&amp;", 5) == 0 || strncmp(e + i, "&lt;", 4) == 0 ||
                                   strncmp(e + i, "&gt;", 4) == 0);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const char *p = (const char *) data, *end = p + size, *first, *header;
        _cleanup_(freep) char *body = NULL;
        size_t first_len, header_len, i;
        HttpResponse r = { .result = CURLE_OK, .elapsed = 1500 * USEC_PER_MSEC };
        SlackAnswer a;

        if (size > 128 * 1024) /* http.c keeps 64 KiB of a body */
                return 0;
        first = p;
        p = next_line(p, end, &first_len);
        header = p;
        p = next_line(p, end, &header_len);

        for (i = 0; i < first_len && i < 4 && isdigit((unsigned char) first[i]); i++)
                r.status = r.status * 10 + (first[i] - '0');
        for (; i < first_len; i++)
                if (first[i] == 't')
                        r.truncated = true;
                else if (first[i] == 'x')
                        r.result = CURLE_COULDNT_CONNECT;
                else if (first[i] == 'o')
                        r.result = CURLE_OPERATION_TIMEDOUT;
        if (r.result != CURLE_OK)
                r.status = 0;

        retry_after(header, header_len, &r.retry_after);
        /* http.c: NUL-terminated, never NULL, may hold NULs of its own */
        body = fuzz_strndup((const uint8_t *) p, (size_t) (end - p));
        r.body = body;
        r.body_len = (size_t) (end - p);

        slack_classify(SLACK_WEBHOOK, &r, &a);
        check_answer(SLACK_WEBHOOK, &r, &a);
        slack_classify(SLACK_BOT, &r, &a);
        check_answer(SLACK_BOT, &r, &a);

        escape(body, SLACK_SECTION_MAX);
        escape(body, 1 + size % 64);
        return 0;
}
