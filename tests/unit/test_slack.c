/* Slack: escaping for mrkdwn, Block Kit payloads and their fallback, the
 * request body per mode, what each of Slack's answers means for delivery
 * (both the Web API and incoming webhooks), and Retry-After parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <time.h>

#include "http.h"
#include "slack.h"

#define ELLIPSIS "\xe2\x80\xa6"
#define FFFD "\xef\xbf\xbd"

/* --- helpers ------------------------------------------------------------ */

/* Strict UTF-8: no overlong forms, no surrogates, nothing past U+10FFFF. */
static bool utf8_valid(const char *s) {
        const unsigned char *p = (const unsigned char *) s;

        while (*p) {
                size_t len;
                uint32_t cp;

                if (p[0] < 0x80) {
                        p++;
                        continue;
                } else if ((p[0] & 0xe0) == 0xc0) {
                        len = 2;
                        cp = p[0] & 0x1f;
                } else if ((p[0] & 0xf0) == 0xe0) {
                        len = 3;
                        cp = p[0] & 0x0f;
                } else if ((p[0] & 0xf8) == 0xf0) {
                        len = 4;
                        cp = p[0] & 0x07;
                } else
                        return false;
                for (size_t i = 1; i < len; i++) {
                        if ((p[i] & 0xc0) != 0x80)
                                return false;
                        cp = (cp << 6) | (p[i] & 0x3f);
                }
                if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
                    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
                        return false;
                p += len;
        }
        return true;
}

static size_t utf8_chars(const char *s) {
        size_t n = 0;
        for (const unsigned char *p = (const unsigned char *) s; *p; p++)
                if ((*p & 0xc0) != 0x80)
                        n++;
        return n;
}

static json_object *parse_object(const char *s) {
        json_object *o;

        assert_non_null(s);
        o = json_tokener_parse(s);
        assert_non_null(o);
        assert_true(json_object_is_type(o, json_type_object));
        return o;
}

static const char *get_string(json_object *o, const char *key) {
        json_object *v;

        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
                return NULL;
        return json_object_get_string(v);
}

/* The first block of `type` at or after index `from`, or NULL. */
static json_object *find_block(json_object *root, const char *type, size_t from, size_t *ret_index) {
        json_object *blocks;

        if (!json_object_object_get_ex(root, "blocks", &blocks) || !json_object_is_type(blocks, json_type_array))
                return NULL;
        for (size_t i = from; i < json_object_array_length(blocks); i++) {
                json_object *b = json_object_array_get_idx(blocks, i);
                const char *t = get_string(b, "type");
                if (t && streq(t, type)) {
                        if (ret_index)
                                *ret_index = i;
                        return b;
                }
        }
        return NULL;
}

/* A response as http.c would hand it over. */
static HttpResponse response(long status, const char *body) {
        return (HttpResponse) {
                .result = CURLE_OK,
                .status = status,
                .body = (char *) body,
                .body_len = strlen(body),
                .retry_after = USEC_INFINITY,
        };
}

/* --- slack_escape ------------------------------------------------------- */

static void test_escape_entities(void **state) {
        _cleanup_(freep) char *e = slack_escape("a & b < c > d <!channel>", 1000);

        assert_string_equal(e, "a &amp; b &lt; c &gt; d &lt;!channel&gt;");
}

static void test_escape_null_and_empty(void **state) {
        _cleanup_(freep) char *a = slack_escape(NULL, 100);
        _cleanup_(freep) char *b = slack_escape("", 100);

        assert_non_null(a);
        assert_string_equal(a, "");
        assert_string_equal(b, "");
}

static void test_escape_control_chars(void **state) {
        _cleanup_(freep) char *e = slack_escape("a\x01" "b\x1b[31mc\rd\x7f" "e\nf\tg", 1000);

        /* control characters become spaces; newline and tab stay */
        assert_string_equal(e, "a b [31mc d e\nf\tg");
}

static void test_escape_valid_utf8_kept(void **state) {
        const char *s = "caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x90\x92 \xe2\x80\xa6";
        _cleanup_(freep) char *e = slack_escape(s, 1000);

        assert_string_equal(e, s);
}

static void test_escape_invalid_utf8(void **state) {
        _cleanup_(freep) char *lone = slack_escape("a\xff" "b\x80" "c", 1000);
        _cleanup_(freep) char *overlong = slack_escape("x\xc0\xaf" "y", 1000);
        _cleanup_(freep) char *overlong3 = slack_escape("x\xe0\x80\xaf" "y", 1000);
        _cleanup_(freep) char *surrogate = slack_escape("x\xed\xa0\x80" "y", 1000);
        _cleanup_(freep) char *beyond = slack_escape("x\xf4\x90\x80\x80" "y", 1000);
        _cleanup_(freep) char *cut = slack_escape("x\xe2\x9c", 1000);

        assert_string_equal(lone, "a" FFFD "b" FFFD "c");
        /* overlong "/" must not come out as "/" nor as the raw bytes */
        assert_null(strchr(overlong, '/'));
        assert_non_null(strstr(overlong, FFFD));
        assert_true(utf8_valid(overlong));
        assert_int_equal(overlong[0], 'x');
        assert_int_equal(overlong[strlen(overlong) - 1], 'y');
        assert_null(strchr(overlong3, '/'));
        assert_true(utf8_valid(overlong3));
        assert_non_null(strstr(overlong3, FFFD));
        assert_null(strstr(surrogate, "\xed\xa0\x80"));
        assert_non_null(strstr(surrogate, FFFD));
        assert_true(utf8_valid(surrogate));
        assert_non_null(strstr(beyond, FFFD));
        assert_true(utf8_valid(beyond));
        /* a sequence cut by the end of the string */
        assert_true(utf8_valid(cut));
        assert_non_null(strstr(cut, FFFD));
        assert_int_equal(cut[0], 'x');
}

static void test_escape_cut_ascii(void **state) {
        _cleanup_(freep) char *fits = slack_escape("0123456789", 10);
        _cleanup_(freep) char *cut = slack_escape("0123456789abcdef", 10);

        assert_string_equal(fits, "0123456789");
        /* cut: ends with the ellipsis, keeps a prefix, and stays within max */
        assert_non_null(cut);
        assert_true(strlen(cut) > strlen(ELLIPSIS));
        assert_string_equal(cut + strlen(cut) - strlen(ELLIPSIS), ELLIPSIS);
        assert_memory_equal(cut, "0123456789", strlen(cut) - strlen(ELLIPSIS));
        assert_true(strlen(cut) <= 10);
}

static void test_escape_cut_multibyte_boundary(void **state) {
        /* "é" is 2 bytes, "🐒" 4: a cut must never split one */
        const char *s = "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xf0\x9f\x90\x92\xf0\x9f\x90\x92";

        for (size_t max = 4; max < strlen(s); max++) {
                _cleanup_(freep) char *e = slack_escape(s, max);
                assert_non_null(e);
                assert_true(utf8_valid(e));
                assert_string_equal(e + strlen(e) - strlen(ELLIPSIS), ELLIPSIS);
                assert_true(strlen(e) <= max);
        }
}

static void test_escape_cut_entity_whole(void **state) {
        /* an entity is never cut in half ("&am…") */
        for (size_t max = 4; max < 30; max++) {
                _cleanup_(freep) char *e = slack_escape("&&&&&&&&&&", max);
                char *p;
                assert_non_null(e);
                p = strstr(e, ELLIPSIS);
                assert_non_null(p);
                *p = '\0';
                for (char *q = e; *q; q += 5)
                        assert_memory_equal(q, "&amp;", 5);
                assert_true(strlen(e) + strlen(ELLIPSIS) <= max);
        }
}

/* --- payloads ----------------------------------------------------------- */

static const SlackMessage full_message = {
        .emoji = ":rotating_light:",
        .title = "web-1 <is> overloaded & slow",
        .text = "cpu 97% over 60s >= 90%.\n*Next:* leave the pool",
        .fields = {
                { "CPU now", "97.2%" },
                { "Pool", "web" },
                { "Instance", "i-0abc" },
        },
        .n_fields = 3,
        .detail = "    PID   %CPU  COMMAND\n   4242   99.0  /usr/bin/<script>&",
        .context = "incident 20261122T170012Z-web-1 · monkeyd 0.1.0 on web-1",
};

static void test_payload_structure(void **state) {
        _cleanup_(freep) char *s = NULL;
        json_object *root, *header, *t, *section, *fields, *context, *el;
        const char *text, *h;
        size_t i_header = 0, i_section = 0, i_fields = 0, i_code = 0, i_context = 0;
        bool saw_code = false;

        assert_int_equal(slack_payload_build(&full_message, &s), 0);
        root = parse_object(s);

        text = get_string(root, "text");
        assert_non_null(text);
        assert_non_null(strstr(text, "web-1"));
        assert_non_null(strstr(text, "overloaded"));
        assert_non_null(strstr(text, "Next:"));
        assert_non_null(strstr(text, "20261122T170012Z-web-1"));
        assert_null(strstr(text, "<is>")); /* raw < > in mrkdwn fallback are escaped */

        header = find_block(root, "header", 0, &i_header);
        assert_non_null(header);
        assert_int_equal(i_header, 0);
        assert_true(json_object_object_get_ex(header, "text", &t));
        assert_string_equal(get_string(t, "type"), "plain_text");
        h = get_string(t, "text");
        assert_string_equal(h, ":rotating_light: web-1 <is> overloaded & slow");
        assert_null(strstr(h, "&lt;"));
        assert_null(strstr(h, "&amp;"));

        section = find_block(root, "section", 0, &i_section);
        assert_non_null(section);
        assert_true(json_object_object_get_ex(section, "text", &t));
        assert_string_equal(get_string(t, "type"), "mrkdwn");
        assert_string_equal(get_string(t, "text"), "cpu 97% over 60s &gt;= 90%.\n*Next:* leave the pool");

        /* the fields section */
        for (size_t from = 0; (section = find_block(root, "section", from, &i_fields)); from = i_fields + 1)
                if (json_object_object_get_ex(section, "fields", &fields))
                        break;
        assert_non_null(section);
        assert_true(json_object_is_type(fields, json_type_array));
        assert_int_equal(json_object_array_length(fields), 3);
        assert_string_equal(get_string(json_object_array_get_idx(fields, 0), "type"), "mrkdwn");
        assert_non_null(strstr(get_string(json_object_array_get_idx(fields, 0), "text"), "CPU now"));
        assert_non_null(strstr(get_string(json_object_array_get_idx(fields, 0), "text"), "97.2%"));
        assert_non_null(strstr(get_string(json_object_array_get_idx(fields, 2), "text"), "i-0abc"));

        /* the detail: preformatted, escaped */
        for (size_t from = 0; (section = find_block(root, "section", from, &i_code)); from = i_code + 1) {
                const char *c;
                if (!json_object_object_get_ex(section, "text", &t))
                        continue;
                c = get_string(t, "text");
                if (c && strncmp(c, "```", 3) == 0) {
                        assert_string_equal(c + strlen(c) - 3, "```");
                        assert_non_null(strstr(c, "/usr/bin/&lt;script&gt;&amp;"));
                        assert_non_null(strstr(c, "\n   4242   99.0"));
                        saw_code = true;
                        break;
                }
        }
        assert_true(saw_code);

        context = find_block(root, "context", 0, &i_context);
        assert_non_null(context);
        assert_true(json_object_object_get_ex(context, "elements", &el));
        assert_int_equal(json_object_array_length(el), 1);
        assert_string_equal(get_string(json_object_array_get_idx(el, 0), "type"), "mrkdwn");
        assert_non_null(strstr(get_string(json_object_array_get_idx(el, 0), "text"), "20261122T170012Z-web-1"));

        /* reading order: header, text, fields, detail, context */
        assert_true(i_header < i_section);
        assert_true(i_section < i_fields);
        assert_true(i_fields < i_code);
        assert_true(i_code < i_context);
        json_object_put(root);
}

static void test_payload_minimal(void **state) {
        SlackMessage m = { .title = "hello" };
        _cleanup_(freep) char *s = NULL;
        json_object *root, *blocks;

        assert_int_equal(slack_payload_build(&m, &s), 0);
        root = parse_object(s);
        assert_string_equal(get_string(root, "text"), "hello");
        assert_true(json_object_object_get_ex(root, "blocks", &blocks));
        /* no empty sections, fields or context */
        assert_int_equal(json_object_array_length(blocks), 1);
        assert_non_null(find_block(root, "header", 0, NULL));
        json_object_put(root);
}

static void test_payload_no_title(void **state) {
        SlackMessage m = { .text = "no title" };
        char *s = (char *) 0x1;

        assert_int_equal(slack_payload_build(&m, &s), -EINVAL);
        assert_ptr_equal(s, (char *) 0x1);
        m.title = "";
        assert_int_equal(slack_payload_build(&m, &s), -EINVAL);
}

static void test_payload_long_title(void **state) {
        char title[601];
        _cleanup_(freep) char *s = NULL, *s2 = NULL;
        json_object *root, *t;
        const char *h;
        SlackMessage m = { .emoji = ":x:", .title = title };

        /* 300 × "é" (2 bytes each): a cut by bytes must still be valid */
        for (size_t i = 0; i < 300; i++)
                memcpy(title + 2 * i, "\xc3\xa9", 2);
        title[600] = '\0';
        assert_int_equal(slack_payload_build(&m, &s), 0);
        root = parse_object(s);
        assert_true(json_object_object_get_ex(find_block(root, "header", 0, NULL), "text", &t));
        h = get_string(t, "text");
        assert_true(utf8_valid(h));
        assert_true(utf8_chars(h) <= SLACK_TITLE_MAX);
        assert_true(strlen(h) <= SLACK_TITLE_MAX); /* stricter: bytes */
        assert_string_equal(h + strlen(h) - strlen(ELLIPSIS), ELLIPSIS);
        json_object_put(root);

        memset(title, '<', 400);
        title[400] = '\0';
        assert_int_equal(slack_payload_build(&m, &s2), 0);
        root = parse_object(s2);
        assert_true(json_object_object_get_ex(find_block(root, "header", 0, NULL), "text", &t));
        h = get_string(t, "text");
        assert_null(strstr(h, "&lt;"));
        assert_true(utf8_chars(h) <= SLACK_TITLE_MAX);
        json_object_put(root);
}

static void test_payload_fields_capped(void **state) {
        SlackMessage m = { .title = "t", .n_fields = SLACK_FIELDS_MAX };
        _cleanup_(freep) char *s = NULL;
        json_object *root, *section = NULL, *fields = NULL;
        size_t at = 0;

        for (size_t i = 0; i < SLACK_FIELDS_MAX; i++)
                m.fields[i] = (SlackField) { "label", "value" };
        assert_int_equal(slack_payload_build(&m, &s), 0);
        root = parse_object(s);
        for (size_t from = 0; (section = find_block(root, "section", from, &at)); from = at + 1)
                if (json_object_object_get_ex(section, "fields", &fields))
                        break;
        assert_non_null(section);
        assert_int_equal(json_object_array_length(fields), SLACK_FIELDS_MAX);
        json_object_put(root);
}

static void test_payload_field_value_long(void **state) {
        _cleanup_(freep) char *big = malloc(5001), *s = NULL;
        SlackMessage m = { .title = "t", .n_fields = 1 };
        json_object *root, *section, *fields = NULL;
        size_t at = 0;
        bool saw_fields = false;

        memset(big, '&', 5000);
        big[5000] = '\0';
        m.fields[0] = (SlackField) { "L", big };
        m.text = big;
        m.detail = big;
        m.context = big;
        assert_int_equal(slack_payload_build(&m, &s), 0);
        root = parse_object(s);
        for (size_t from = 0; (section = find_block(root, "section", from, &at)); from = at + 1) {
                json_object *t;
                if (json_object_object_get_ex(section, "fields", &fields)) {
                        const char *f = get_string(json_object_array_get_idx(fields, 0), "text");
                        saw_fields = true;
                        assert_int_equal(json_object_array_length(fields), 1);
                        assert_true(utf8_chars(f) <= SLACK_FIELD_MAX);
                } else if (json_object_object_get_ex(section, "text", &t))
                        assert_true(utf8_chars(get_string(t, "text")) <= SLACK_SECTION_MAX);
        }
        assert_true(saw_fields); /* a single field is shown too */
        assert_true(strlen(get_string(root, "text")) <= 4000);
        json_object_put(root);
}

static void test_payload_detail_backticks(void **state) {
        SlackMessage m = { .title = "t", .detail = "a ``` b" };
        _cleanup_(freep) char *s = NULL;
        json_object *root, *section, *t;
        const char *c;

        assert_int_equal(slack_payload_build(&m, &s), 0);
        root = parse_object(s);
        section = find_block(root, "section", 0, NULL);
        assert_non_null(section);
        assert_true(json_object_object_get_ex(section, "text", &t));
        c = get_string(t, "text");
        /* only the opening and closing fences */
        size_t len = strlen(c);
        assert_true(len >= 6);
        assert_memory_equal(c, "```", 3);
        /* the first fence after the opening one is the closing one, at the very end */
        const char *inner = memmem(c + 3, len - 3, "```", 3);
        assert_non_null(inner);
        assert_int_equal((size_t) (inner - c), len - 3);
        assert_non_null(strstr(c, "a "));
        assert_non_null(strstr(c, " b"));
        json_object_put(root);
}

/* --- request bodies ------------------------------------------------------- */

static const char payload[] = "{\"text\":\"hi\",\"blocks\":[{\"type\":\"header\"}]}";

static void test_body_bot(void **state) {
        _cleanup_(freep) char *b = NULL;
        json_object *o, *v;

        assert_int_equal(slack_request_body(SLACK_BOT, payload, "C0123", "111.222", false, &b), 0);
        o = parse_object(b);
        assert_string_equal(get_string(o, "channel"), "C0123");
        assert_string_equal(get_string(o, "thread_ts"), "111.222");
        assert_string_equal(get_string(o, "text"), "hi");
        assert_true(json_object_object_get_ex(o, "blocks", &v));
        assert_true(json_object_object_get_ex(o, "link_names", &v));
        assert_true(json_object_is_type(v, json_type_boolean));
        assert_false(json_object_get_boolean(v));
        json_object_put(o);
}

static void test_body_bot_no_thread(void **state) {
        _cleanup_(freep) char *b = NULL;
        json_object *o, *v;

        assert_int_equal(slack_request_body(SLACK_BOT, payload, "C0123", NULL, false, &b), 0);
        o = parse_object(b);
        assert_false(json_object_object_get_ex(o, "thread_ts", &v));
        assert_string_equal(get_string(o, "channel"), "C0123");
        json_object_put(o);
}

static void test_body_webhook(void **state) {
        _cleanup_(freep) char *b = NULL;
        json_object *o, *v;

        assert_int_equal(slack_request_body(SLACK_WEBHOOK, payload, "C0123", "111.222", false, &b), 0);
        o = parse_object(b);
        assert_false(json_object_object_get_ex(o, "channel", &v));
        assert_false(json_object_object_get_ex(o, "thread_ts", &v));
        assert_true(json_object_object_get_ex(o, "blocks", &v));
        assert_string_equal(get_string(o, "text"), "hi");
        json_object_put(o);
}

static void test_body_text_only(void **state) {
        _cleanup_(freep) char *b = NULL, *w = NULL;
        json_object *o, *v;

        assert_int_equal(slack_request_body(SLACK_BOT, payload, "C0123", "1.2", true, &b), 0);
        o = parse_object(b);
        assert_false(json_object_object_get_ex(o, "blocks", &v));
        assert_string_equal(get_string(o, "text"), "hi");
        assert_string_equal(get_string(o, "thread_ts"), "1.2");
        json_object_put(o);

        assert_int_equal(slack_request_body(SLACK_WEBHOOK, payload, NULL, NULL, true, &w), 0);
        o = parse_object(w);
        assert_false(json_object_object_get_ex(o, "blocks", &v));
        assert_string_equal(get_string(o, "text"), "hi");
        json_object_put(o);
}

static void test_body_bad_payload(void **state) {
        char *b = (char *) 0x1;

        assert_int_equal(slack_request_body(SLACK_WEBHOOK, "not json", NULL, NULL, false, &b), -EBADMSG);
        assert_int_equal(slack_request_body(SLACK_BOT, "[1,2]", "C1", NULL, false, &b), -EBADMSG);
        assert_int_equal(slack_request_body(SLACK_BOT, "{\"text\":", "C1", NULL, false, &b), -EBADMSG);
        assert_int_equal(slack_request_body(SLACK_WEBHOOK, "\"text\"", NULL, NULL, false, &b), -EBADMSG);
        assert_ptr_equal(b, (char *) 0x1);
}

static void test_body_bot_needs_channel(void **state) {
        char *b = (char *) 0x1;

        assert_true(slack_request_body(SLACK_BOT, payload, NULL, NULL, false, &b) < 0);
        assert_true(slack_request_body(SLACK_BOT, payload, "", NULL, false, &b) < 0);
        assert_ptr_equal(b, (char *) 0x1);
}

/* --- classification: Web API (chat.postMessage) ------------------------- */

static void test_classify_bot_ok(void **state) {
        HttpResponse r = response(200, "{\"ok\":true,\"channel\":\"C1\",\"ts\":\"1763830812.000100\"}");
        SlackAnswer a;

        slack_classify(SLACK_BOT, &r, &a);
        assert_int_equal(a.verdict, OUTBOX_DELIVERED);
        assert_string_equal(a.ts, "1763830812.000100");
        assert_string_equal(a.error, "");
        assert_true(a.retry_after == USEC_INFINITY);
}

static void test_classify_bot_config_errors(void **state) {
        static const char *const errors[] = { "invalid_auth", "channel_not_found", "not_in_channel", "token_revoked",
                                              "not_authed" };

        for (size_t i = 0; i < ELEMENTSOF(errors); i++) {
                _cleanup_(freep) char *body = NULL;
                HttpResponse r;
                SlackAnswer a;

                assert_true(asprintf(&body, "{\"ok\":false,\"error\":\"%s\"}", errors[i]) > 0);
                r = response(200, body);
                slack_classify(SLACK_BOT, &r, &a);
                assert_int_equal(a.verdict, OUTBOX_BROKEN_CONFIG);
                assert_string_equal(a.error, errors[i]);
                assert_non_null(strstr(a.detail, errors[i]));
                assert_string_equal(a.ts, "");
        }
}

static void test_classify_bot_ratelimited(void **state) {
        HttpResponse r = response(200, "{\"ok\":false,\"error\":\"ratelimited\"}");
        SlackAnswer a;

        slack_classify(SLACK_BOT, &r, &a);
        assert_int_equal(a.verdict, OUTBOX_RETRY);
        assert_string_equal(a.error, "ratelimited");
        /* no Retry-After: a default wait, never "retry at once" */
        assert_true(a.retry_after != USEC_INFINITY);
        assert_true(a.retry_after >= USEC_PER_SEC);

        r.retry_after = 12 * USEC_PER_SEC;
        slack_classify(SLACK_BOT, &r, &a);
        assert_int_equal(a.verdict, OUTBOX_RETRY);
        assert_int_equal(a.retry_after, 12 * USEC_PER_SEC);
}

static void test_classify_429(void **state) {
        HttpResponse r = response(429, "{\"ok\":false,\"error\":\"ratelimited\"}");
        SlackAnswer a;

        r.retry_after = 7 * USEC_PER_SEC;
        for (SlackMode m = 0; m < _SLACK_MODE_MAX; m++) {
                slack_classify(m, &r, &a);
                assert_int_equal(a.verdict, OUTBOX_RETRY);
                assert_int_equal(a.retry_after, 7 * USEC_PER_SEC);
        }

        r = response(429, "rate_limited");
        for (SlackMode m = 0; m < _SLACK_MODE_MAX; m++) {
                slack_classify(m, &r, &a);
                assert_int_equal(a.verdict, OUTBOX_RETRY);
                assert_true(a.retry_after != USEC_INFINITY);
                assert_true(a.retry_after >= USEC_PER_SEC);
        }
}

static void test_classify_5xx(void **state) {
        static const long codes[] = { 500, 502, 503, 504 };

        for (SlackMode m = 0; m < _SLACK_MODE_MAX; m++)
                for (size_t i = 0; i < ELEMENTSOF(codes); i++) {
                        HttpResponse r = response(codes[i], "<html>Service Unavailable</html>");
                        SlackAnswer a;

                        slack_classify(m, &r, &a);
                        assert_int_equal(a.verdict, OUTBOX_RETRY);
                        assert_true(a.retry_after == USEC_INFINITY);
                        assert_non_null(strstr(a.detail, "HTTP"));
                }
}

static void test_classify_curl_failure(void **state) {
        HttpResponse r = response(0, "");
        SlackAnswer a;

        r.result = CURLE_OPERATION_TIMEDOUT;
        snprintf(r.error, sizeof r.error, "Operation timed out after 10000 milliseconds");
        r.elapsed = 10 * USEC_PER_SEC;
        for (SlackMode m = 0; m < _SLACK_MODE_MAX; m++) {
                slack_classify(m, &r, &a);
                assert_int_equal(a.verdict, OUTBOX_RETRY);
                assert_string_equal(a.ts, "");
        }
        r.result = CURLE_COULDNT_CONNECT;
        slack_classify(SLACK_WEBHOOK, &r, &a);
        assert_int_equal(a.verdict, OUTBOX_RETRY);
}

static void test_classify_bot_transient_errors(void **state) {
        static const char *const errors[] = { "internal_error", "fatal_error", "service_unavailable",
                                              "request_timeout" };

        for (size_t i = 0; i < ELEMENTSOF(errors); i++) {
                _cleanup_(freep) char *body = NULL;
                HttpResponse r;
                SlackAnswer a;

                assert_true(asprintf(&body, "{\"ok\":false,\"error\":\"%s\"}", errors[i]) > 0);
                r = response(200, body);
                slack_classify(SLACK_BOT, &r, &a);
                assert_int_equal(a.verdict, OUTBOX_RETRY);
                assert_string_equal(a.error, errors[i]);
        }
}

static void test_classify_no_status(void **state) {
        /* curl says OK but there is no HTTP status: not an answer */
        HttpResponse r = response(0, "");
        SlackAnswer a;

        for (SlackMode m = 0; m < _SLACK_MODE_MAX; m++) {
                slack_classify(m, &r, &a);
                assert_int_equal(a.verdict, OUTBOX_RETRY);
        }
}

static void test_classify_bot_garbage(void **state) {
        static const char *const bodies[] = { "garbage", "", "{\"ok\":\"yes\"}", "[true]", "{\"ok\":true",
                                              "<html>ok</html>" };

        for (size_t i = 0; i < ELEMENTSOF(bodies); i++) {
                HttpResponse r = response(200, bodies[i]);
                SlackAnswer a;

                slack_classify(SLACK_BOT, &r, &a);
                assert_int_equal(a.verdict, OUTBOX_RETRY);
        }
}

static void test_classify_bot_truncated(void **state) {
        HttpResponse r = response(200, "{\"ok\":true,\"ts\":\"1.2\"}");
        SlackAnswer a;

        /* a cut answer proves nothing */
        r.truncated = true;
        slack_classify(SLACK_BOT, &r, &a);
        assert_int_equal(a.verdict, OUTBOX_RETRY);
}

static void test_classify_bot_blocks(void **state) {
        HttpResponse r = response(200, "{\"ok\":false,\"error\":\"invalid_blocks\"}");
        SlackAnswer a;

        slack_classify(SLACK_BOT, &r, &a);
        assert_int_equal(a.verdict, OUTBOX_REJECTED);
        assert_string_equal(a.error, "invalid_blocks");
        assert_true(slack_error_is_blocks(a.error));
        assert_true(slack_error_is_blocks("invalid_blocks_format"));
        assert_false(slack_error_is_blocks("invalid_auth"));
        assert_false(slack_error_is_blocks(""));
        assert_false(slack_error_is_blocks(NULL));
}

static void test_classify_bot_unknown_error(void **state) {
        HttpResponse r = response(200, "{\"ok\":false,\"error\":\"something_new\"}");
        SlackAnswer a;

        slack_classify(SLACK_BOT, &r, &a);
        assert_int_equal(a.verdict, OUTBOX_REJECTED);
        assert_string_equal(a.error, "something_new");
        assert_false(slack_error_is_blocks(a.error));
}

static void test_classify_bot_hostile_error(void **state) {
        /* an error code is copied into logs: nothing but a word gets through */
        HttpResponse r = response(200, "{\"ok\":false,\"error\":\"bad\\nline https://x/y?token=z\"}");
        SlackAnswer a;

        slack_classify(SLACK_BOT, &r, &a);
        assert_int_equal(a.verdict, OUTBOX_REJECTED);
        assert_null(strchr(a.error, '\n'));
        assert_null(strchr(a.detail, '\n'));
        assert_null(strstr(a.detail, "https://"));
}

/* --- classification: incoming webhooks ---------------------------------- */

static void test_classify_webhook_ok(void **state) {
        HttpResponse r = response(200, "ok");
        HttpResponse r2 = response(200, "ok\n");
        SlackAnswer a;

        slack_classify(SLACK_WEBHOOK, &r, &a);
        assert_int_equal(a.verdict, OUTBOX_DELIVERED);
        assert_string_equal(a.ts, "");
        slack_classify(SLACK_WEBHOOK, &r2, &a);
        assert_int_equal(a.verdict, OUTBOX_DELIVERED);
}

static void test_classify_webhook_config(void **state) {
        static const struct {
                long status;
                const char *body;
        } cases[] = {
                { 404, "no_service" },
                { 403, "action_prohibited" },
                { 410, "channel_is_archived" },
                { 404, "no_team" },
                { 403, "invalid_token" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                HttpResponse r = response(cases[i].status, cases[i].body);
                SlackAnswer a;

                slack_classify(SLACK_WEBHOOK, &r, &a);
                assert_int_equal(a.verdict, OUTBOX_BROKEN_CONFIG);
                assert_string_equal(a.error, cases[i].body);
        }
}

static void test_classify_webhook_rejected(void **state) {
        HttpResponse r = response(400, "invalid_payload");
        HttpResponse b = response(400, "invalid_blocks");
        SlackAnswer a;

        slack_classify(SLACK_WEBHOOK, &r, &a);
        assert_int_equal(a.verdict, OUTBOX_REJECTED);
        assert_string_equal(a.error, "invalid_payload");
        assert_false(slack_error_is_blocks(a.error));

        slack_classify(SLACK_WEBHOOK, &b, &a);
        assert_int_equal(a.verdict, OUTBOX_REJECTED);
        assert_true(slack_error_is_blocks(a.error));
}

static void test_classify_webhook_5xx(void **state) {
        HttpResponse r = response(500, "rollup_error");
        SlackAnswer a;

        slack_classify(SLACK_WEBHOOK, &r, &a);
        assert_int_equal(a.verdict, OUTBOX_RETRY);
}

static void test_classify_webhook_garbage_200(void **state) {
        /* a 200 that is not "ok" (a captive portal, a proxy page) is no proof */
        HttpResponse r = response(200, "<html>hello from the proxy, long enough to not be a Slack error word</html>");
        HttpResponse e = response(200, "");
        SlackAnswer a;

        HttpResponse html404 = response(404, "<html><body>Not Found: this hook does not exist any more</body></html>");
        HttpResponse ok400 = response(400, "ok");

        slack_classify(SLACK_WEBHOOK, &r, &a);
        assert_int_equal(a.verdict, OUTBOX_RETRY);
        slack_classify(SLACK_WEBHOOK, &e, &a);
        assert_int_equal(a.verdict, OUTBOX_RETRY);
        /* a 404 page instead of Slack's word: the URL is wrong */
        slack_classify(SLACK_WEBHOOK, &html404, &a);
        assert_int_equal(a.verdict, OUTBOX_BROKEN_CONFIG);
        /* "ok" counts only with a 200 */
        slack_classify(SLACK_WEBHOOK, &ok400, &a);
        assert_int_not_equal(a.verdict, OUTBOX_DELIVERED);
}

static void test_mode_strings(void **state) {
        assert_non_null(slack_mode_to_string(SLACK_WEBHOOK));
        assert_non_null(slack_mode_to_string(SLACK_BOT));
        assert_string_not_equal(slack_mode_to_string(SLACK_WEBHOOK), slack_mode_to_string(SLACK_BOT));
        assert_null(slack_mode_to_string(_SLACK_MODE_MAX));
        assert_null(slack_mode_to_string(_SLACK_MODE_INVALID));
}

/* --- Retry-After -------------------------------------------------------- */

static void test_retry_after_seconds(void **state) {
        usec_t u = 1;

        assert_int_equal(http_parse_retry_after("120", 1000, &u), 0);
        assert_int_equal(u, 120 * USEC_PER_SEC);
        assert_int_equal(http_parse_retry_after("0", 1000, &u), 0);
        assert_int_equal(u, 0);
        assert_int_equal(http_parse_retry_after("7", 1000, &u), 0);
        assert_int_equal(u, 7 * USEC_PER_SEC);
}

static void test_retry_after_date(void **state) {
        time_t now = 1763830812; /* 2025-11-22T16:00:12Z */
        char future[64], past[64];
        struct tm tm;
        time_t t;
        usec_t u = 1;

        t = now + 90;
        gmtime_r(&t, &tm);
        strftime(future, sizeof future, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        t = now - 3600;
        gmtime_r(&t, &tm);
        strftime(past, sizeof past, "%a, %d %b %Y %H:%M:%S GMT", &tm);

        assert_int_equal(http_parse_retry_after(future, now, &u), 0);
        assert_int_equal(u, 90 * USEC_PER_SEC);
        assert_int_equal(http_parse_retry_after(past, now, &u), 0);
        assert_int_equal(u, 0);
}

static void test_retry_after_garbage(void **state) {
        static const char *const bad[] = { "", "soon", "12abc", "1.5", "-5", "0x10", "99999999999999999999999999" };
        usec_t u = 4242;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                assert_int_equal(http_parse_retry_after(bad[i], 1000, &u), -EINVAL);
        assert_int_equal(http_parse_retry_after(NULL, 1000, &u), -EINVAL);
        assert_int_equal(u, 4242);
}

static void test_retry_after_large(void **state) {
        usec_t u = 0;

        /* as large as fits must not wrap into a small delay */
        if (http_parse_retry_after("18446744073709", 0, &u) == 0)
                assert_true(u >= 18446744073709ULL * USEC_PER_SEC / 2);
        assert_int_equal(http_parse_retry_after("184467440737095516", 0, &u), -EINVAL);
        assert_int_equal(http_parse_retry_after("86400", 0, &u), 0);
        assert_int_equal(u, 86400 * USEC_PER_SEC);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_escape_entities),
                cmocka_unit_test(test_escape_null_and_empty),
                cmocka_unit_test(test_escape_control_chars),
                cmocka_unit_test(test_escape_valid_utf8_kept),
                cmocka_unit_test(test_escape_invalid_utf8),
                cmocka_unit_test(test_escape_cut_ascii),
                cmocka_unit_test(test_escape_cut_multibyte_boundary),
                cmocka_unit_test(test_escape_cut_entity_whole),
                cmocka_unit_test(test_payload_structure),
                cmocka_unit_test(test_payload_minimal),
                cmocka_unit_test(test_payload_no_title),
                cmocka_unit_test(test_payload_long_title),
                cmocka_unit_test(test_payload_fields_capped),
                cmocka_unit_test(test_payload_field_value_long),
                cmocka_unit_test(test_payload_detail_backticks),
                cmocka_unit_test(test_body_bot),
                cmocka_unit_test(test_body_bot_no_thread),
                cmocka_unit_test(test_body_webhook),
                cmocka_unit_test(test_body_text_only),
                cmocka_unit_test(test_body_bad_payload),
                cmocka_unit_test(test_body_bot_needs_channel),
                cmocka_unit_test(test_classify_bot_ok),
                cmocka_unit_test(test_classify_bot_config_errors),
                cmocka_unit_test(test_classify_bot_ratelimited),
                cmocka_unit_test(test_classify_429),
                cmocka_unit_test(test_classify_5xx),
                cmocka_unit_test(test_classify_curl_failure),
                cmocka_unit_test(test_classify_bot_transient_errors),
                cmocka_unit_test(test_classify_no_status),
                cmocka_unit_test(test_classify_bot_garbage),
                cmocka_unit_test(test_classify_bot_truncated),
                cmocka_unit_test(test_classify_bot_blocks),
                cmocka_unit_test(test_classify_bot_unknown_error),
                cmocka_unit_test(test_classify_bot_hostile_error),
                cmocka_unit_test(test_classify_webhook_ok),
                cmocka_unit_test(test_classify_webhook_config),
                cmocka_unit_test(test_classify_webhook_rejected),
                cmocka_unit_test(test_classify_webhook_5xx),
                cmocka_unit_test(test_classify_webhook_garbage_200),
                cmocka_unit_test(test_mode_strings),
                cmocka_unit_test(test_retry_after_seconds),
                cmocka_unit_test(test_retry_after_date),
                cmocka_unit_test(test_retry_after_garbage),
                cmocka_unit_test(test_retry_after_large),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
