/* Notices: every kind of message composed from plain facts, checked as
 * Slack would show it (the blocks) and as a notification or a text-only
 * retry would (the fallback "text"); the top-processes table; the
 * AlertGate that turns a lasting condition into one alert, reminders and
 * one recovery. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <json-c/json.h>
#include <stdio.h>

#include "notify.h"

#define INCIDENT "20261122T170012Z-web-1"

/* --- helpers ------------------------------------------------------------ */

typedef struct Rendered {
        json_object *root;
        char *fallback;   /* "text" */
        char *blocks;     /* every text of every block, one per line */
        char *mrkdwn;     /* only the mrkdwn texts (where entities matter) */
        char *header;     /* the header's plain_text */
        char *context;
        size_t n_fields;
} Rendered;

static void rendered_done(Rendered *r) {
        if (r->root)
                json_object_put(r->root);
        free(r->fallback);
        free(r->blocks);
        free(r->mrkdwn);
        free(r->header);
        free(r->context);
        *r = (Rendered) {};
}

static void append(char **buf, const char *s) {
        char *n;

        assert_true(asprintf(&n, "%s%s\n", *buf ? *buf : "", s) > 0);
        free(*buf);
        *buf = n;
}

static void text_object(Rendered *r, json_object *t, char **extra) {
        json_object *v;
        const char *type, *text;

        assert_true(json_object_object_get_ex(t, "type", &v));
        type = json_object_get_string(v);
        assert_true(json_object_object_get_ex(t, "text", &v));
        assert_true(json_object_is_type(v, json_type_string));
        text = json_object_get_string(v);
        append(&r->blocks, text);
        if (strcmp(type, "mrkdwn") == 0)
                append(&r->mrkdwn, text);
        else
                assert_string_equal(type, "plain_text");
        if (extra)
                append(extra, text);
}

/* Parse a payload and take it apart; fails the test if it is not the
 * shape Slack accepts. */
static void render(const char *payload, Rendered *ret) {
        Rendered r = {};
        json_object *v, *blocks;

        assert_non_null(payload);
        r.root = json_tokener_parse(payload);
        assert_non_null(r.root);
        assert_true(json_object_is_type(r.root, json_type_object));
        assert_true(json_object_object_get_ex(r.root, "text", &v));
        assert_true(json_object_is_type(v, json_type_string));
        r.fallback = strdup(json_object_get_string(v));
        assert_true(json_object_object_get_ex(r.root, "blocks", &blocks));
        assert_true(json_object_is_type(blocks, json_type_array));
        assert_true(json_object_array_length(blocks) >= 1);
        for (size_t i = 0; i < json_object_array_length(blocks); i++) {
                json_object *b = json_object_array_get_idx(blocks, i), *t;
                const char *type;

                assert_true(json_object_object_get_ex(b, "type", &v));
                type = json_object_get_string(v);
                if (strcmp(type, "header") == 0) {
                        assert_int_equal(i, 0);
                        assert_true(json_object_object_get_ex(b, "text", &t));
                        text_object(&r, t, &r.header);
                } else if (strcmp(type, "section") == 0) {
                        if (json_object_object_get_ex(b, "text", &t))
                                text_object(&r, t, NULL);
                        if (json_object_object_get_ex(b, "fields", &t)) {
                                r.n_fields += json_object_array_length(t);
                                assert_true(json_object_array_length(t) <= 10);
                                for (size_t k = 0; k < json_object_array_length(t); k++)
                                        text_object(&r, json_object_array_get_idx(t, k), NULL);
                        }
                } else if (strcmp(type, "context") == 0) {
                        assert_true(json_object_object_get_ex(b, "elements", &t));
                        for (size_t k = 0; k < json_object_array_length(t); k++)
                                text_object(&r, json_object_array_get_idx(t, k), &r.context);
                } else
                        fail_msg("unexpected block type %s", type);
        }
        assert_non_null(r.header);
        *ret = r;
}

static void must_contain(const char *where, const char *haystack, const char *needle) {
        if (!haystack || !strstr(haystack, needle))
                fail_msg("%s lacks \"%s\":\n%s", where, needle, haystack ? haystack : "(null)");
}

static void compose(const NoticeFacts *f, Rendered *ret) {
        _cleanup_(freep) char *p = NULL;

        assert_int_equal(notice_payload(f, &p), 0);
        render(p, ret);
}

static const ProcTop top3[] = {
        { .pid = 4242, .comm = "stress", .cmdline = "/usr/bin/stress --cpu 4", .cpu_pct = 99.04, .rss_kb = 2048 },
        { .pid = 17, .comm = "nginx", .cmdline = "nginx: worker process", .cpu_pct = 12.5, .rss_kb = 4096 },
        { .pid = 31337, .comm = "sh", .cmdline = "sh -c <script>&", .cpu_pct = 3.0, .new_in_window = true },
};

static NoticeFacts breach_facts(void) {
        return (NoticeFacts) {
                .kind = NOTICE_BREACH,
                .host = "web-1",
                .pool = "web",
                .incident = INCIDENT,
                .instance_id = "i-0123456789abcdef0",
                .reason = "cpu 97.2% over 1m >= 90%",
                .next = "leaving the pool, then restart-unit",
                .cpu_now = 97.24,
                .cpu_window = 95.55,
                .threshold = 90,
                .window = 60 * USEC_PER_SEC,
                .top = top3,
                .n_top = ELEMENTSOF(top3),
        };
}

/* The facts a reader needs, per kind: in the blocks and in the fallback. */
typedef struct Case {
        const char *name;
        NoticeFacts facts;
        const char *needles[8];
} Case;

static const char back_checks[] = "\xe2\x9c\x93 content: 200 bytes match\n\xe2\x9c\x93 status: 200\n"
                                  "\xe2\x9c\x93 binding: 127.0.0.5:8080";

static void cases(Case **ret, size_t *ret_n) {
        static Case c[16];
        size_t n = 0;

        c[n++] = (Case) {
                "breach",
                breach_facts(),
                { "web-1", "97.2%", "95.5%", "90%", "/usr/bin/stress --cpu 4", "99.0", "Next:", "i-0123456789abcdef0" },
        };
        c[n++] = (Case) {
                "remediating",
                { .kind = NOTICE_REMEDIATING, .host = "web-1", .incident = INCIDENT, .step = "reboot-instance",
                  .request_id = "59dbff89-35bd-4eac-99ed-be587EXAMPLE", .instance_id = "i-0abc",
                  .cpu_now = -1, .cpu_window = -1, .threshold = -1 },
                { "web-1", "reboot-instance", "59dbff89-35bd-4eac-99ed-be587EXAMPLE" },
        };
        c[n++] = (Case) {
                "back",
                { .kind = NOTICE_BACK, .host = "web-1", .incident = INCIDENT, .downtime = 150 * USEC_PER_SEC,
                  .checks = back_checks, .cpu_now = -1, .cpu_window = -1, .threshold = -1 },
                { "web-1", "2m30s", "content: 200 bytes match", "status: 200", "binding: 127.0.0.5:8080" },
        };
        c[n++] = (Case) {
                "quarantined",
                { .kind = NOTICE_QUARANTINED, .host = "web-1", .incident = INCIDENT,
                  .reason = "content check failed", .checks = "\xe2\x9c\x97 content: got 502",
                  .cpu_now = -1, .cpu_window = -1, .threshold = -1 },
                { "web-1", "quarantined", "content check failed", "content: got 502" },
        };
        c[n++] = (Case) {
                "holding",
                { .kind = NOTICE_HOLDING, .host = "web-1", .pool = "web", .reason = "2 of 3 hosts would stay",
                  .cpu_now = 97.2, .cpu_window = 95.5, .threshold = 90, .window = 60 * USEC_PER_SEC },
                { "web-1", "holding", "2 of 3 hosts would stay", "97.2%" },
        };
        c[n++] = (Case) {
                "holding reminder",
                { .kind = NOTICE_HOLDING, .host = "web-1", .reason = "budget", .reminder = 2,
                  .ongoing = 20 * USEC_PER_MINUTE, .cpu_now = -1, .cpu_window = -1, .threshold = -1 },
                { "web-1", "still holding", "20m" },
        };
        c[n++] = (Case) {
                "holding recovered",
                { .kind = NOTICE_HOLDING, .host = "web-1", .reason = "load dropped", .recovered = true,
                  .ongoing = 5 * USEC_PER_MINUTE, .cpu_now = -1, .cpu_window = -1, .threshold = -1 },
                { "web-1", "stopped holding", "5m" },
        };
        c[n++] = (Case) {
                "pool-down",
                { .kind = NOTICE_POOL_DOWN, .host = "web-1", .pool = "web", .reason = "connection refused",
                  .cpu_now = -1, .cpu_window = -1, .threshold = -1 },
                { "web-1", "Redis", "connection refused", "web" },
        };
        c[n++] = (Case) {
                "pool-up",
                { .kind = NOTICE_POOL_UP, .host = "web-1", .pool = "web", .recovered = true,
                  .ongoing = 90 * USEC_PER_SEC, .cpu_now = -1, .cpu_window = -1, .threshold = -1 },
                { "web-1", "Redis", "1m30s" },
        };
        c[n++] = (Case) {
                "test",
                { .kind = NOTICE_TEST, .host = "web-1", .cpu_now = -1, .cpu_window = -1, .threshold = -1 },
                { "web-1", "Test" },
        };
        c[n++] = (Case) {
                "cleared",
                { .kind = NOTICE_CLEARED, .host = "web-1", .reason = "cpu 40% below 80%", .cpu_now = 40,
                  .cpu_window = -1, .threshold = 90 },
                { "web-1", "cleared", "cpu 40% below 80%" },
        };
        c[n++] = (Case) {
                "gave-up",
                { .kind = NOTICE_GAVE_UP, .host = "web-1", .incident = INCIDENT, .reason = "3 remediations in 1h",
                  .cpu_now = -1, .cpu_window = -1, .threshold = -1 },
                { "web-1", "3 remediations in 1h", "monkeyctl resume" },
        };
        c[n++] = (Case) {
                "profile",
                { .kind = NOTICE_PROFILE, .host = "web-1", .incident = INCIDENT,
                  .reason = "CPU profile: 593 samples over 10 s", .detail = " 32.2%  burner;main;burn_inner",
                  .cpu_now = -1, .cpu_window = -1, .threshold = -1 },
                { "web-1", "what burned the CPU", "593 samples", "burner;main;burn_inner" },
        };
        c[n++] = (Case) {
                "maintenance",
                { .kind = NOTICE_MAINTENANCE, .host = "web-1", .reason = "drained by alice",
                  .cpu_now = -1, .cpu_window = -1, .threshold = -1 },
                { "web-1", "maintenance", "drained by alice" },
        };
        *ret = c;
        *ret_n = n;
}

/* --- every kind --------------------------------------------------------- */

static void test_every_kind_valid(void **state) {
        /* each kind composes into a valid payload naming the host */
        for (Notice k = 0; k < _NOTICE_MAX; k++) {
                NoticeFacts f = breach_facts();
                Rendered r;

                f.kind = k;
                compose(&f, &r);
                must_contain(notice_to_string(k), r.fallback, "web-1");
                must_contain(notice_to_string(k), r.header, "web-1");
                assert_non_null(r.context);
                rendered_done(&r);
        }
}

static void test_blocks_carry_facts(void **state) {
        Case *c;
        size_t n;

        cases(&c, &n);
        for (size_t i = 0; i < n; i++) {
                Rendered r;

                compose(&c[i].facts, &r);
                for (size_t k = 0; k < ELEMENTSOF(c[i].needles) && c[i].needles[k]; k++)
                        must_contain(c[i].name, r.blocks, c[i].needles[k]);
                rendered_done(&r);
        }
}

static void test_fallback_carries_facts(void **state) {
        /* The fallback is what a phone notification shows and all that is
         * left when Slack refuses the blocks (text_only retry). */
        Case *c;
        size_t n;

        cases(&c, &n);
        for (size_t i = 0; i < n; i++) {
                Rendered r;

                compose(&c[i].facts, &r);
                for (size_t k = 0; k < ELEMENTSOF(c[i].needles) && c[i].needles[k]; k++)
                        must_contain(c[i].name, r.fallback, c[i].needles[k]);
                rendered_done(&r);
        }
}

static void test_breach(void **state) {
        NoticeFacts f = breach_facts();
        Rendered r;

        compose(&f, &r);
        must_contain("header", r.header, "web-1");
        must_contain("header", r.header, "overloaded");
        must_contain("blocks", r.blocks, "CPU now");
        must_contain("blocks", r.blocks, "97.2%");
        must_contain("blocks", r.blocks, "95.5%");
        must_contain("blocks", r.blocks, "1m");
        must_contain("blocks", r.blocks, "threshold 90%");
        must_contain("blocks", r.blocks, "i-0123456789abcdef0");
        must_contain("blocks", r.blocks, "web");
        must_contain("blocks", r.blocks, "```");
        must_contain("blocks", r.blocks, "   4242    99.0  /usr/bin/stress --cpu 4");
        must_contain("blocks", r.blocks, "nginx: worker process");
        must_contain("blocks", r.blocks, "(started in the window)");
        must_contain("text", r.mrkdwn, "*Next:* leaving the pool, then restart-unit");
        must_contain("context", r.context, INCIDENT);
        must_contain("context", r.context, "monkeyd");
        must_contain("fallback", r.fallback, "Next:");
        assert_true(r.n_fields >= 3);
        rendered_done(&r);
}

static void test_breach_unknowns(void **state) {
        NoticeFacts f = breach_facts();
        Rendered r;

        f.cpu_now = f.cpu_window = -1;
        f.instance_id = NULL;
        f.pool = NULL;
        f.n_top = 0;
        f.top = NULL;
        compose(&f, &r);
        assert_null(strstr(r.blocks, "CPU now"));
        assert_null(strstr(r.blocks, "-1.0"));
        assert_null(strstr(r.blocks, "```")); /* no empty table */
        assert_null(strstr(r.blocks, "(null)"));
        must_contain("blocks", r.blocks, "unknown");
        rendered_done(&r);
}

static void test_breach_since_start(void **state) {
        NoticeFacts f = breach_facts();
        Rendered r;

        f.top_since_start = true;
        compose(&f, &r);
        must_contain("blocks", r.blocks, "since process start");
        rendered_done(&r);
}

static void test_hostile_text_escaped(void **state) {
        NoticeFacts f = breach_facts();
        Rendered r;

        f.reason = "cpu <!channel> & <script>";
        compose(&f, &r);
        /* raw in no mrkdwn text: not in the table, the reason, anywhere */
        assert_null(strstr(r.mrkdwn, "<script>"));
        assert_null(strstr(r.mrkdwn, "<!channel>"));
        must_contain("table", r.mrkdwn, "sh -c &lt;script&gt;&amp;");
        must_contain("reason", r.mrkdwn, "cpu &lt;!channel&gt; &amp; &lt;script&gt;");
        assert_null(strstr(r.fallback, "<!channel>"));
        rendered_done(&r);
}

static void test_hostile_host(void **state) {
        NoticeFacts f = breach_facts();
        Rendered r;

        f.host = "web<1>&";
        compose(&f, &r);
        /* the header is plain_text: shown as typed, no entities */
        must_contain("header", r.header, "web<1>&");
        assert_null(strstr(r.header, "&lt;"));
        /* the context is mrkdwn */
        must_contain("context", r.context, "web&lt;1&gt;&amp;");
        assert_null(strstr(r.mrkdwn, "web<1>"));
        rendered_done(&r);
}

static void test_remediating(void **state) {
        NoticeFacts f = {
                .kind = NOTICE_REMEDIATING, .host = "web-1", .incident = INCIDENT, .step = "restart-unit",
                .request_id = "req-123", .cpu_now = -1, .cpu_window = -1, .threshold = -1,
        };
        Rendered r;

        /* a step's result: EC2 took the reboot, with its request id */
        compose(&f, &r);
        must_contain("header", r.header, "restart-unit accepted");
        assert_null(strstr(r.header, "DRY RUN"));
        must_contain("blocks", r.blocks, "req-123");
        must_contain("context", r.context, INCIDENT);
        rendered_done(&r);

        /* a step about to be taken, dry run */
        f.dry_run = true;
        f.request_id = NULL;
        compose(&f, &r);
        must_contain("header", r.header, "DRY RUN: would restart-unit");
        assert_null(strstr(r.blocks, "AWS request id"));
        rendered_done(&r);

        /* an escalation names what failed before */
        f.dry_run = false;
        f.next = "CPU still 97% after the restart";
        compose(&f, &r);
        must_contain("text", r.mrkdwn, "Escalating after: CPU still 97% after the restart");
        rendered_done(&r);
}

static void test_back(void **state) {
        NoticeFacts f = {
                .kind = NOTICE_BACK, .host = "web-1", .incident = INCIDENT, .downtime = 150 * USEC_PER_SEC + 400 * USEC_PER_MSEC,
                .checks = back_checks, .cpu_now = -1, .cpu_window = -1, .threshold = -1,
        };
        Rendered r;

        compose(&f, &r);
        must_contain("header", r.header, "back");
        /* whole seconds in a chat */
        must_contain("blocks", r.blocks, "2m30s");
        assert_null(strstr(r.blocks, "400ms"));
        must_contain("blocks", r.blocks, "\xe2\x9c\x93 content: 200 bytes match\n\xe2\x9c\x93 status: 200");
        must_contain("blocks", r.blocks, "binding: 127.0.0.5:8080");
        rendered_done(&r);

        f.downtime = 0;
        compose(&f, &r);
        assert_null(strstr(r.blocks, "2m30s"));
        assert_null(strstr(r.blocks, "Downtime*\n0\n"));
        rendered_done(&r);
}

static void test_quarantined_reminder(void **state) {
        NoticeFacts f = {
                .kind = NOTICE_QUARANTINED, .host = "web-1", .reason = "status 502",
                .cpu_now = -1, .cpu_window = -1, .threshold = -1,
        };
        Rendered first, again;

        compose(&f, &first);
        f.reminder = 1;
        f.ongoing = USEC_PER_HOUR;
        compose(&f, &again);
        must_contain("header", first.header, "quarantined");
        assert_null(strstr(first.header, "still"));
        must_contain("header", again.header, "still quarantined");
        must_contain("header", again.header, "1h");
        rendered_done(&first);
        rendered_done(&again);
}

static void test_holding_first_reminder_recovered(void **state) {
        NoticeFacts f = {
                .kind = NOTICE_HOLDING, .host = "web-1", .reason = "budget: min_serving 2",
                .cpu_now = 97, .cpu_window = 96, .threshold = 90, .window = 60 * USEC_PER_SEC,
                .ongoing = 10 * USEC_PER_MINUTE,
        };
        Rendered first, reminder, recovered;

        compose(&f, &first);
        f.reminder = 1;
        compose(&f, &reminder);
        f.reminder = 0;
        f.recovered = true;
        f.reason = "overload cleared";
        compose(&f, &recovered);

        must_contain("first", first.header, "holding");
        assert_null(strstr(first.header, "still"));
        must_contain("first", first.blocks, "budget: min_serving 2");
        must_contain("reminder", reminder.header, "still holding");
        must_contain("reminder", reminder.header, "10m");
        assert_null(strstr(recovered.header, "still"));
        must_contain("recovered", recovered.header, "stopped holding");
        must_contain("recovered", recovered.header, "10m");
        must_contain("recovered", recovered.blocks, "overload cleared");
        /* three different messages */
        assert_string_not_equal(first.header, reminder.header);
        assert_string_not_equal(first.header, recovered.header);
        rendered_done(&first);
        rendered_done(&reminder);
        rendered_done(&recovered);
}

static void test_pool_down_up(void **state) {
        NoticeFacts down = {
                .kind = NOTICE_POOL_DOWN, .host = "web-1", .pool = "{web}", .reason = "timeout",
                .cpu_now = -1, .cpu_window = -1, .threshold = -1,
        };
        NoticeFacts up = down;
        Rendered d, d2, u;

        compose(&down, &d);
        down.reminder = 3;
        down.ongoing = 30 * USEC_PER_MINUTE;
        compose(&down, &d2);
        up.kind = NOTICE_POOL_UP;
        up.recovered = true;
        up.ongoing = 31 * USEC_PER_MINUTE;
        compose(&up, &u);

        must_contain("down", d.header, "cannot reach Redis");
        assert_null(strstr(d.header, "still"));
        must_contain("down", d.blocks, "{web}");
        must_contain("down", d.blocks, "timeout");
        must_contain("down again", d2.header, "still cannot reach Redis");
        must_contain("down again", d2.header, "30m");
        must_contain("up", u.header, "Redis again");
        must_contain("up", u.blocks, "31m");
        assert_string_not_equal(d.header, u.header);
        rendered_done(&d);
        rendered_done(&d2);
        rendered_done(&u);
}

static void test_breach_evidence(void **state) {
        NoticeFacts f = breach_facts();
        Rendered r;

        f.pressure = "load 2.31 1.10 0.52 (3 runnable) \u00b7 CPU pressure 63.2% (some, 10 s)";
        f.evidence = "`monkeyctl incident " INCIDENT "`";
        compose(&f, &r);
        must_contain("blocks", r.blocks, "Load");
        must_contain("blocks", r.blocks, "load 2.31 1.10 0.52 (3 runnable)");
        must_contain("blocks", r.blocks, "CPU pressure 63.2%");
        must_contain("blocks", r.blocks, "monkeyctl incident " INCIDENT);
        rendered_done(&r);
}

static void test_profile_notice(void **state) {
        NoticeFacts f = { .kind = NOTICE_PROFILE, .host = "web-1", .incident = INCIDENT, .cpu_now = -1,
                          .cpu_window = -1, .threshold = -1,
                          .reason = "No CPU profile (skipped): perf may not profile the whole system here" };
        Rendered r;

        compose(&f, &r);
        must_contain("header", r.header, "what burned the CPU");
        must_contain("text", r.blocks, "perf may not profile the whole system here");
        assert_null(strstr(r.blocks, "```")); /* no stacks, no empty code block */
        rendered_done(&r);
        f.detail = " 41.0%  burner;main;burn_outer;burn_inner\n 12.5%  swapper;[unknown]";
        compose(&f, &r);
        must_contain("blocks", r.blocks, "```");
        must_contain("blocks", r.blocks, "burner;main;burn_outer;burn_inner");
        must_contain("context", r.context, INCIDENT);
        rendered_done(&r);
}

static void test_test_notice(void **state) {
        NoticeFacts f = { .kind = NOTICE_TEST, .host = "web-1", .cpu_now = -1, .cpu_window = -1, .threshold = -1 };
        Rendered r;

        compose(&f, &r);
        must_contain("header", r.header, "Test");
        must_contain("header", r.header, "web-1");
        assert_null(strstr(r.context, "incident"));
        rendered_done(&r);

        f.reason = "from alice";
        compose(&f, &r);
        must_contain("text", r.blocks, "from alice");
        rendered_done(&r);
}

static void test_context_incident(void **state) {
        NoticeFacts f = breach_facts();
        Rendered with, without;

        compose(&f, &with);
        f.incident = NULL;
        compose(&f, &without);
        must_contain("context", with.context, "incident " INCIDENT);
        must_contain("fallback", with.fallback, INCIDENT);
        assert_null(strstr(without.context, "incident"));
        must_contain("context", without.context, "web-1");
        rendered_done(&with);
        rendered_done(&without);
}

static void test_invalid_kind(void **state) {
        NoticeFacts f = breach_facts();
        char *p = (char *) 0x1;

        f.kind = _NOTICE_MAX;
        assert_int_equal(notice_payload(&f, &p), -EINVAL);
        f.kind = _NOTICE_INVALID;
        assert_int_equal(notice_payload(&f, &p), -EINVAL);
        assert_ptr_equal(p, (char *) 0x1);
}

static void test_notice_strings(void **state) {
        for (Notice k = 0; k < _NOTICE_MAX; k++) {
                assert_non_null(notice_to_string(k));
                for (Notice j = 0; j < k; j++)
                        assert_string_not_equal(notice_to_string(k), notice_to_string(j));
        }
        assert_string_equal(notice_to_string(NOTICE_BREACH), "breach");
        assert_string_equal(notice_to_string(NOTICE_POOL_DOWN), "pool-down");
        assert_null(notice_to_string(_NOTICE_MAX));
        assert_null(notice_to_string(_NOTICE_INVALID));
}

/* --- the top table -------------------------------------------------------- */

static void test_top_table(void **state) {
        _cleanup_(freep) char *t = NULL;

        assert_int_equal(notice_top_table(top3, 2, false, &t), 0);
        assert_string_equal(t, "    PID    %CPU  COMMAND\n"
                               "   4242    99.0  /usr/bin/stress --cpu 4\n"
                               "     17    12.5  nginx: worker process");
}

static void test_top_table_flags(void **state) {
        _cleanup_(freep) char *t = NULL, *e = NULL;
        char *last;

        assert_int_equal(notice_top_table(top3, 3, true, &t), 0);
        must_contain("table", t, "since process start");
        last = strrchr(t, '\n');
        assert_non_null(last);
        assert_string_equal(last + 1, "  31337     3.0  sh -c <script>&  (started in the window)");
        /* raw here: escaping is slack.c's, once */
        assert_int_equal(t[strlen(t) - 1], ')');

        assert_int_equal(notice_top_table(NULL, 0, false, &e), 0);
        assert_string_equal(e, "    PID    %CPU  COMMAND");
}

static void test_top_table_long_cmdline(void **state) {
        ProcTop p[NOTICE_TOP_MAX];
        _cleanup_(freep) char *t = NULL;
        size_t lines = 0;

        for (size_t i = 0; i < ELEMENTSOF(p); i++) {
                p[i] = (ProcTop) { .pid = 2147483647, .cpu_pct = 123456.7, .new_in_window = true };
                memset(p[i].cmdline, 'x', EVIDENCE_CMDLINE_MAX);
                memcpy(p[i].cmdline + EVIDENCE_CMDLINE_MAX, "\xe2\x80\xa6", 4);
        }
        assert_int_equal(notice_top_table(p, ELEMENTSOF(p), true, &t), 0);
        for (char *c = t; *c; c++)
                lines += *c == '\n';
        /* every row complete, none cut */
        assert_int_equal(lines, ELEMENTSOF(p));
        assert_string_equal(t + strlen(t) - strlen("(started in the window)"), "(started in the window)");
}

/* --- AlertGate ----------------------------------------------------------- */

/* [remedy] budget = none: every remediation alert says so; alerts that are
 * no remediation's (Redis, tests) and alerts under a pool do not. */
static void test_no_fleet_budget(void **state) {
        static const Notice said[] = { NOTICE_BREACH, NOTICE_REMEDIATING, NOTICE_GRACE, NOTICE_GAVE_UP };
        /* outcomes and alerts that are no remediation's (a quarantine after
         * failed checks at boot, Redis, tests) */
        static const Notice unsaid[] = {
                NOTICE_BACK, NOTICE_QUARANTINED, NOTICE_POOL_DOWN, NOTICE_TEST, NOTICE_MAINTENANCE, NOTICE_PROFILE,
        };
        const char *note = "no fleet budget ([remedy] budget = none)";

        for (size_t i = 0; i < ELEMENTSOF(said); i++) {
                NoticeFacts f = breach_facts();
                Rendered r;

                f.kind = said[i];
                f.pool = NULL;
                f.step = "reboot-instance";
                f.no_fleet_budget = note;
                compose(&f, &r);
                must_contain(notice_to_string(said[i]), r.blocks, "no fleet budget");
                must_contain(notice_to_string(said[i]), r.fallback, "Budget: no fleet budget");
                rendered_done(&r);

                f.no_fleet_budget = NULL; /* under a pool: nothing to say */
                compose(&f, &r);
                assert_null(strstr(r.fallback, "fleet budget"));
                rendered_done(&r);
        }
        for (size_t i = 0; i < ELEMENTSOF(unsaid); i++) {
                NoticeFacts f = breach_facts();
                Rendered r;

                f.kind = unsaid[i];
                f.no_fleet_budget = note;
                compose(&f, &r);
                assert_null(strstr(r.fallback, "fleet budget"));
                rendered_done(&r);
        }
}

static void test_gate(void **state) {
        AlertGate g = {};
        usec_t remind = 10 * USEC_PER_MINUTE, t0 = 1000 * USEC_PER_SEC;

        assert_true(alert_gate_raise(&g, t0, remind));
        assert_true(g.active);
        assert_int_equal(g.first_at, t0);
        assert_int_equal(g.reminders, 0);
        assert_false(alert_gate_raise(&g, t0 + USEC_PER_SEC, remind));
        assert_false(alert_gate_raise(&g, t0 + remind - 1, remind));
        assert_int_equal(g.reminders, 0);
        assert_true(alert_gate_raise(&g, t0 + remind, remind));
        assert_int_equal(g.reminders, 1);
        /* the next reminder counts from the last one */
        assert_false(alert_gate_raise(&g, t0 + remind + remind / 2, remind));
        assert_true(alert_gate_raise(&g, t0 + 2 * remind, remind));
        assert_int_equal(g.reminders, 2);
        assert_int_equal(g.first_at, t0);
        assert_int_equal(g.last_at, t0 + 2 * remind);

        assert_true(alert_gate_clear(&g));
        assert_false(g.active);
        assert_false(alert_gate_clear(&g));

        /* a new episode starts over */
        assert_true(alert_gate_raise(&g, t0 + 3 * remind, remind));
        assert_int_equal(g.reminders, 0);
        assert_int_equal(g.first_at, t0 + 3 * remind);
}

static void test_gate_no_reminders(void **state) {
        AlertGate g = {};

        assert_false(alert_gate_clear(&g));
        assert_true(alert_gate_raise(&g, 5, 0));
        assert_false(alert_gate_raise(&g, 5 + USEC_PER_DAY, 0));
        assert_int_equal(g.reminders, 0);
        assert_true(alert_gate_clear(&g));
}

static void test_gate_clock_backwards(void **state) {
        AlertGate g = {};

        /* a "now" before last_at must not look like a huge elapsed time */
        assert_true(alert_gate_raise(&g, 10 * USEC_PER_MINUTE, USEC_PER_MINUTE));
        assert_false(alert_gate_raise(&g, 1, USEC_PER_MINUTE));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_every_kind_valid),
                cmocka_unit_test(test_blocks_carry_facts),
                cmocka_unit_test(test_fallback_carries_facts),
                cmocka_unit_test(test_breach),
                cmocka_unit_test(test_breach_unknowns),
                cmocka_unit_test(test_breach_since_start),
                cmocka_unit_test(test_hostile_text_escaped),
                cmocka_unit_test(test_hostile_host),
                cmocka_unit_test(test_remediating),
                cmocka_unit_test(test_back),
                cmocka_unit_test(test_quarantined_reminder),
                cmocka_unit_test(test_holding_first_reminder_recovered),
                cmocka_unit_test(test_pool_down_up),
                cmocka_unit_test(test_test_notice),
                cmocka_unit_test(test_breach_evidence),
                cmocka_unit_test(test_no_fleet_budget),
                cmocka_unit_test(test_profile_notice),
                cmocka_unit_test(test_context_incident),
                cmocka_unit_test(test_invalid_kind),
                cmocka_unit_test(test_notice_strings),
                cmocka_unit_test(test_top_table),
                cmocka_unit_test(test_top_table_flags),
                cmocka_unit_test(test_top_table_long_cmdline),
                cmocka_unit_test(test_gate),
                cmocka_unit_test(test_gate_no_reminders),
                cmocka_unit_test(test_gate_clock_backwards),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
