/* Human status and event text: the exact layout for a full status, "?" for
 * whatever is missing or mistyped, and no crash on any JSON shape. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>

#include "status_text.h"

#define FULL_STATUS                                                                                           \
        "{\"host\":\"web-1\",\"version\":\"0.1.0\",\"pid\":1234,\"config\":\"/etc/monkeyd/monkeyd.conf\","    \
        "\"state\":\"SERVING\",\"since\":\"2026-11-22T17:00:00Z\",\"since_unix\":1795366800.123,"             \
        "\"for_sec\":723.5,\"reason\":\"checks passed\",\"maintenance\":false,\"maintenance_reason\":null,"   \
        "\"cpu\":{\"busy_pct\":12.3,\"window_pct\":10.1,\"threshold_pct\":90,\"clear_below_pct\":70,"         \
        "\"window_sec\":60,\"interval_sec\":1,\"user_pct\":8.2,\"system_pct\":3.1,\"iowait_pct\":0.0,"        \
        "\"steal_pct\":0,\"run_sec\":0.0,\"breached\":false,\"samples\":120,\"skipped\":0,"                   \
        "\"source\":\"/proc/stat\",\"last_error\":null},"                                                     \
        "\"pool\":{\"configured\":true,\"name\":\"web\",\"address\":\"127.0.0.2:8080\",\"serving\":true,"     \
        "\"serving_count\":3,\"status\":\"connected\"},"                                                      \
        "\"last_checks\":{\"content\":\"pass\",\"status\":\"pass\",\"binding\":\"pass\",\"ok\":true,"         \
        "\"at\":\"2026-11-22T17:00:01.250Z\",\"detail\":null},"                                               \
        "\"last_incident\":null,"                                                                             \
        "\"remedy\":{\"mode\":\"enabled\",\"count_in_window\":0,\"max_per_window\":2,\"window_sec\":3600},"   \
        "\"integrations\":{\"pool\":\"configured\",\"slack\":\"not configured\"}}"

#define FULL_TEXT                                                                                              \
        "host        web-1 (pid 1234)\n"                                                                       \
        "state       SERVING for 12m3s (since 2026-11-22 17:00:00 UTC)  -- checks passed\n"                    \
        "cpu         12.3% now, 10.1% over 1m, threshold 90% (clear below 70%)  user 8% sys 3% iowait 0% "     \
        "steal 0%\n"                                                                                           \
        "pool        web: serving (3 serving)\n"                                                               \
        "checks      content \u2713  status \u2713  binding \u2713  at 2026-11-22 17:00:01 UTC\n"              \
        "incident    none\n"                                                                                   \
        "remedy      enabled (0 of 2 in 1h)\n"

static json_object *parse(const char *s) {
        json_object *o = json_tokener_parse(s);
        assert_non_null(o);
        return o;
}

static char *format_str(const char *json) {
        json_object *o = json_tokener_parse(json); /* may be NULL: "null" */
        char *text = NULL;

        assert_int_equal(status_text_format(o, &text), 0);
        assert_non_null(text);
        json_object_put(o);
        return text;
}

static char *event_str(const char *json) {
        json_object *o = json_tokener_parse(json);
        char *text = NULL;

        assert_int_equal(status_text_format_event(o, &text), 0);
        assert_non_null(text);
        json_object_put(o);
        return text;
}

/* The line that starts with `label`, without the label column. */
static const char *line_of(const char *text, const char *label, char *buf, size_t size) {
        const char *p = text;

        while (p && *p) {
                const char *nl = strchr(p, '\n');
                size_t n = nl ? (size_t) (nl - p) : strlen(p);

                if (n >= 12 && strncmp(p, label, strlen(label)) == 0 && p[strlen(label)] == ' ') {
                        snprintf(buf, size, "%.*s", (int) (n - 12), p + 12);
                        return buf;
                }
                p = nl ? nl + 1 : NULL;
        }
        fail_msg("no line \"%s\" in:\n%s", label, text);
        return NULL;
}

static void test_full_status(void **state) {
        char *text = format_str(FULL_STATUS);

        assert_string_equal(text, FULL_TEXT);
        free(text);
}

static void test_status_variants(void **state) {
        char buf[512];
        char *t;

        t = format_str("{\"host\":\"db-2\",\"pid\":7,\"state\":\"MAINTENANCE\",\"for_sec\":3605,"
                       "\"since_unix\":1795366800.9,\"reason\":\"operator: kernel upgrade\",\"maintenance\":true,"
                       "\"cpu\":{\"busy_pct\":97.06,\"window_pct\":95.5,\"threshold_pct\":92.5,"
                       "\"clear_below_pct\":70,\"window_sec\":90,\"user_pct\":90.6,\"system_pct\":6,"
                       "\"iowait_pct\":0.4,\"steal_pct\":0.5,\"run_sec\":75,\"breached\":true,"
                       "\"last_error\":\"line 3: short read\"},"
                       "\"pool\":{\"configured\":false,\"name\":null,\"serving\":false,\"serving_count\":null},"
                       "\"last_checks\":{\"content\":\"not run\",\"status\":\"not run\",\"binding\":\"not run\","
                       "\"ok\":null,\"at\":null},"
                       "\"last_incident\":{\"id\":\"inc-42\",\"started\":\"2026-11-22T16:00:00Z\","
                       "\"reason\":\"cpu 97.0% >= 90% for 1m\",\"outcome\":null},"
                       "\"remedy\":{\"mode\":\"observe only\",\"count_in_window\":0,\"max_per_window\":2}}");
        assert_string_equal(line_of(t, "host", buf, sizeof buf), "db-2 (pid 7)");
        /* since_unix stands in for a missing "since"; no [maintenance] tag when the state says it */
        assert_string_equal(line_of(t, "state", buf, sizeof buf),
                            "MAINTENANCE for 1h0m5s (since 2026-11-22 17:00:00 UTC)  -- operator: kernel upgrade");
        assert_string_equal(line_of(t, "cpu", buf, sizeof buf),
                            "97.1% now, 95.5% over 1m30s, threshold 92.5% (clear below 70%)  user 91% sys 6% "
                            "iowait 0% steal 0%  BREACHED for 1m15s  (last error: line 3: short read)");
        assert_string_equal(line_of(t, "pool", buf, sizeof buf), "not configured");
        assert_string_equal(line_of(t, "checks", buf, sizeof buf), "not run");
        assert_string_equal(line_of(t, "incident", buf, sizeof buf),
                            "inc-42 cpu 97.0% >= 90% for 1m -> in progress  (started 2026-11-22 16:00:00 UTC)");
        assert_string_equal(line_of(t, "remedy", buf, sizeof buf), "observe only");
        free(t);

        t = format_str("{\"state\":\"DRAINING\",\"maintenance\":true,\"maintenance_reason\":\"disk swap\","
                       "\"pool\":{\"configured\":true,\"name\":\"web\",\"serving\":false,\"serving_count\":2,"
                       "\"status\":\"redis unreachable\"},"
                       "\"last_checks\":{\"content\":\"pass\",\"status\":\"fail\",\"binding\":\"weird\","
                       "\"ok\":false,\"at\":\"2026-11-22T17:05:00Z\",\"detail\":\"status 503 != 200\"},"
                       "\"last_incident\":{\"id\":\"inc-1\",\"reason\":\"breach\",\"outcome\":\"recovered\"},"
                       "\"remedy\":{\"mode\":\"dry run\",\"count_in_window\":1}}");
        assert_string_equal(line_of(t, "state", buf, sizeof buf),
                            "DRAINING for ? (since ?)  [maintenance: disk swap]");
        assert_string_equal(line_of(t, "pool", buf, sizeof buf), "web: not serving (2 serving)  [redis unreachable]");
        assert_string_equal(line_of(t, "checks", buf, sizeof buf),
                            "content \u2713  status \u2717  binding ?  at 2026-11-22 17:05:00 UTC  (status 503 != 200)");
        assert_string_equal(line_of(t, "incident", buf, sizeof buf), "inc-1 breach -> recovered");
        assert_string_equal(line_of(t, "remedy", buf, sizeof buf), "dry run");
        free(t);

        /* never more than the counts we know */
        t = format_str("{\"remedy\":{\"mode\":\"enabled\",\"max_per_window\":3}}");
        assert_string_equal(line_of(t, "remedy", buf, sizeof buf), "enabled (? of 3 in ?)");
        free(t);
}

static void test_minimal_and_garbage(void **state) {
        static const char *const inputs[] = {
                "{}", "null", "[]", "[1,2,3]", "\"SERVING\"", "42", "true",
                "{\"host\":5,\"pid\":\"x\",\"state\":[],\"since\":{},\"for_sec\":\"long\",\"reason\":7,"
                "\"cpu\":[],\"pool\":\"yes\",\"last_checks\":5,\"last_incident\":\"none\",\"remedy\":null}",
                "{\"cpu\":{\"busy_pct\":\"high\",\"window_sec\":-5,\"breached\":\"yes\",\"last_error\":[]},"
                "\"pool\":{\"configured\":1},\"last_checks\":{},\"last_incident\":{},\"remedy\":{\"mode\":1}}",
                "{\"for_sec\":1e300,\"pid\":-1,\"since_unix\":-5,\"cpu\":{\"window_sec\":1e200,\"busy_pct\":1e308}}",
        };
        const char *empty_text =
                "host        ? (pid ?)\n"
                "state       ? for ? (since ?)\n"
                "cpu         ?\n"
                "pool        ?\n"
                "checks      ?\n"
                "incident    ?\n"
                "remedy      ?\n";
        char *t;

        t = format_str("{}");
        assert_string_equal(t, empty_text);
        free(t);
        t = format_str("null");
        assert_string_equal(t, empty_text);
        free(t);
        t = format_str("[1,2]");
        assert_string_equal(t, empty_text);
        free(t);

        for (size_t i = 0; i < ELEMENTSOF(inputs); i++) {
                size_t lines = 0;

                t = format_str(inputs[i]);
                for (const char *p = t; *p; p++)
                        lines += *p == '\n';
                assert_int_equal(lines, 7);
                assert_non_null(strstr(t, "?"));
                free(t);
        }

        char buf[512];
        t = format_str("{\"for_sec\":1e300,\"pid\":-1,\"since_unix\":-5}");
        assert_string_equal(line_of(t, "host", buf, sizeof buf), "? (pid ?)");
        assert_string_equal(line_of(t, "state", buf, sizeof buf), "? for ? (since ?)");
        free(t);

        t = format_str("{\"pool\":{\"configured\":true},\"last_incident\":{},\"last_checks\":{}}");
        assert_string_equal(line_of(t, "pool", buf, sizeof buf), "?: ? (? serving)");
        assert_string_equal(line_of(t, "incident", buf, sizeof buf), "? ? -> ?");
        assert_string_equal(line_of(t, "checks", buf, sizeof buf), "content ?  status ?  binding ?  at ?");
        free(t);

        assert_int_equal(status_text_format(NULL, NULL), -EINVAL);
        assert_int_equal(status_text_format_event(NULL, NULL), -EINVAL);
}

/* monkeyctl history: the event lines, each ended, oldest first; a word
 * for none; anything but an array is none. */
static void test_history(void **state) {
        const char *ev = "{\"at_unix\":1763830812,\"from\":\"SERVING\",\"to\":\"OVERLOADED\",\"event\":\"breach\"}";
        _cleanup_(freep) char *one = event_str(ev), *expect = NULL, *text = NULL, *none = NULL, *junk = NULL;
        _cleanup_(freep) char *list_json = NULL;
        json_object *o;

        assert_true(asprintf(&list_json, "[%s,%s]", ev, ev) > 0);
        assert_true(asprintf(&expect, "%s\n%s\n", one, one) > 0);
        o = json_tokener_parse(list_json);
        assert_int_equal(status_text_format_history(o, &text), 0);
        assert_string_equal(text, expect);
        json_object_put(o);

        o = json_object_new_array();
        assert_int_equal(status_text_format_history(o, &none), 0);
        assert_string_equal(none, "no transitions recorded\n");
        json_object_put(o);

        o = json_object_new_object();
        assert_int_equal(status_text_format_history(o, &junk), 0);
        assert_string_equal(junk, "no transitions recorded\n");
        json_object_put(o);

        assert_int_equal(status_text_format_history(NULL, NULL), -EINVAL);
}

/* Every field of a real status replaced by every kind of junk, one at a
 * time, at the top level and inside each sub-object. */
static void format_variant(json_object *full, const char *key, const char *subkey, const char *junk,
                           unsigned *runs) {
        json_object *copy = NULL, *target;
        char *text = NULL;

        assert_int_equal(json_object_deep_copy(full, &copy, NULL), 0);
        target = copy;
        if (subkey)
                assert_true(json_object_object_get_ex(copy, key, &target));
        json_object_object_add(target, subkey ? subkey : key, json_tokener_parse(junk)); /* "null": NULL */
        assert_int_equal(status_text_format(copy, &text), 0);
        assert_non_null(text);
        free(text);
        json_object_put(copy);
        (*runs)++;
}

/* Every field of a real status replaced by every kind of junk, one at a
 * time, at the top level and inside each sub-object. */
static void test_field_substitution(void **state) {
        static const char *const junk[] = { "null", "1", "-1.5", "1e308", "\"x\"", "[]", "{}", "true", "[{\"a\":1}]" };
        json_object *full = parse(FULL_STATUS);
        unsigned runs = 0;

        json_object_object_foreach(full, key, val) {
                for (size_t j = 0; j < ELEMENTSOF(junk); j++) {
                        format_variant(full, key, NULL, junk[j], &runs);
                        if (!json_object_is_type(val, json_type_object))
                                continue;
                        json_object_object_foreach(val, subkey, subval) {
                                (void) subval;
                                format_variant(full, key, subkey, junk[j], &runs);
                        }
                }
        }
        assert_true(runs > 300);
        json_object_put(full);
}

static void test_control_characters(void **state) {
        char buf[512];
        char *t;

        t = format_str("{\"host\":\"evil\\n\\u001b[31mred\",\"reason\":\"a\\r\\nb\"}");
        assert_string_equal(line_of(t, "host", buf, sizeof buf), "evil??[31mred (pid ?)");
        assert_non_null(strstr(t, "-- a??b\n"));
        /* still exactly seven lines */
        size_t lines = 0;
        for (const char *p = t; *p; p++)
                lines += *p == '\n';
        assert_int_equal(lines, 7);
        free(t);

        t = event_str("{\"at\":\"x\\ny\",\"from\":\"A\\tB\",\"to\":\"C\",\"event\":\"e\",\"reason\":\"r\\n\"}");
        assert_string_equal(t, "x?y  A?B -> C  e  r?");
        free(t);
}

static void test_event_lines(void **state) {
        char *t;

        t = event_str("{\"at\":\"2026-11-22T17:00:00Z\",\"at_unix\":1795366800.0,\"from\":\"SERVING\","
                      "\"to\":\"OVERLOADED\",\"event\":\"breach\",\"action\":\"request-leave\","
                      "\"reason\":\"cpu 97.0% >= 90% for 1m\"}");
        assert_string_equal(t, "2026-11-22 17:00:00 UTC  SERVING -> OVERLOADED  breach  cpu 97.0% >= 90% for 1m");
        free(t);

        /* at_unix when "at" is missing; no reason, no trailing blanks */
        t = event_str("{\"at_unix\":1795366801.75,\"from\":\"BOOT\",\"to\":\"CHECKING\",\"event\":\"start\"}");
        assert_string_equal(t, "2026-11-22 17:00:01 UTC  BOOT -> CHECKING  start");
        free(t);

        t = event_str("{\"at\":\"2026-11-22T17:00:00.123456Z\",\"from\":\"A\",\"to\":\"B\",\"event\":\"x\","
                      "\"reason\":null}");
        assert_string_equal(t, "2026-11-22 17:00:00 UTC  A -> B  x");
        free(t);

        static const char *const garbage[] = { "{}", "null", "[]", "\"x\"", "0",
                                               "{\"at\":5,\"from\":[],\"to\":{},\"event\":null,\"reason\":1}" };
        for (size_t i = 0; i < ELEMENTSOF(garbage); i++) {
                t = event_str(garbage[i]);
                assert_string_equal(t, "?  ? -> ?  ?");
                free(t);
        }

        /* a time we do not understand is shown, not dropped */
        t = event_str("{\"at\":\"yesterday\",\"from\":\"A\",\"to\":\"B\",\"event\":\"x\"}");
        assert_string_equal(t, "yesterday  A -> B  x");
        free(t);
}

#define POOL_JSON                                                                                             \
        "{\"configured\":true,\"name\":\"web\",\"address\":\"127.0.0.2:8080\",\"host\":\"web-1\","          \
        "\"redis\":\"redis://:<redacted>@127.0.0.1:6379/0\",\"master\":null,\"connected\":true,"                      \
        "\"status\":\"connected\",\"serving\":true,\"member\":true,\"serving_count\":3,\"last_error\":null,"  \
        "\"budget\":{\"min_serving\":2,\"max_unavailable\":1,\"serving_alive\":3,\"out\":[\"web-4\"],"        \
        "\"out_max_sec\":1800},"                                                                              \
        "\"members\":["                                                                                       \
        "{\"host\":\"web-1\",\"addr\":\"127.0.0.2:8080\",\"state\":\"SERVING\",\"lease_ttl_ms\":2500,"        \
        "\"heartbeat_age_ms\":500,\"serving\":true,\"out_expires_in_ms\":null},"                              \
        "{\"host\":\"web-2\",\"addr\":\"127.0.0.3:8080\",\"state\":\"HOLDING\",\"lease_ttl_ms\":900,"         \
        "\"heartbeat_age_ms\":2100,\"serving\":true,\"out_expires_in_ms\":null},"                             \
        "{\"host\":\"web-3\",\"addr\":\"127.0.0.4:8080\",\"state\":\"SERVING\",\"lease_ttl_ms\":null,"        \
        "\"heartbeat_age_ms\":95000,\"serving\":true,\"out_expires_in_ms\":null},"                            \
        "{\"host\":\"web-4\",\"addr\":\"127.0.0.5:8080\",\"state\":\"DRAINING\",\"lease_ttl_ms\":2900,"       \
        "\"heartbeat_age_ms\":100,\"serving\":false,\"out_expires_in_ms\":1790000}],"                         \
        "\"view_age_sec\":0.4,\"lease_sec\":3,\"heartbeat_sec\":1}"

static void test_pool_line(void **state) {
        char buf[512], *t, *json = NULL;

        assert_true(asprintf(&json, "{\"pool\":%s}", POOL_JSON) > 0);
        t = format_str(json);
        assert_string_equal(line_of(t, "pool", buf, sizeof buf), "web: serving (3 of 4 serving, budget: 1 out of max 1)");
        free(t);
        free(json);

        t = format_str("{\"pool\":{\"configured\":true,\"name\":\"web\",\"serving\":true,\"serving_count\":null,"
                       "\"status\":\"connecting\",\"budget\":{\"max_unavailable\":2,\"out\":[]},\"members\":[]}}");
        assert_string_equal(line_of(t, "pool", buf, sizeof buf),
                            "web: serving (? of 0 serving, budget: 0 out of max 2)  [connecting]");
        free(t);

        t = format_str("{\"pool\":{\"configured\":true,\"name\":\"web\",\"serving\":true,\"status\":\"unreachable\","
                       "\"last_error\":\"127.0.0.1:6379: Connection refused\"}}");
        assert_string_equal(line_of(t, "pool", buf, sizeof buf),
                            "web: unreachable (last error: 127.0.0.1:6379: Connection refused)");
        free(t);
        t = format_str("{\"pool\":{\"configured\":true,\"name\":\"web\",\"status\":\"unreachable\"}}");
        assert_string_equal(line_of(t, "pool", buf, sizeof buf), "web: unreachable");
        free(t);
}

static void test_pool_listing(void **state) {
        json_object *o = parse(POOL_JSON);
        char *t = NULL;

        assert_int_equal(status_text_format_pool(o, &t), 0);
        assert_string_equal(t,
                            "pool        web (connected, redis://:<redacted>@127.0.0.1:6379/0)\n"
                            "this host   web-1 127.0.0.2:8080: serving\n"
                            "budget      min_serving 2, max_unavailable 1: 3 serving alive, 1 out (web-4)\n"
                            "members     4 (as seen 400ms ago)\n"
                            "  HOST                  ADDRESS                 STATE         SERVING  LEASE LEFT  "
                            "LEASE AGE\n"
                            "  web-1                 127.0.0.2:8080          SERVING       yes      2.5s        "
                            "500ms\n"
                            "  web-2                 127.0.0.3:8080          HOLDING       yes      900ms       "
                            "2.1s\n"
                            "  web-3                 127.0.0.4:8080          SERVING       yes      expired     "
                            "1m35s\n"
                            "  web-4                 127.0.0.5:8080          DRAINING      out      2.9s        "
                            "100ms\n");
        free(t);
        json_object_put(o);

        /* garbage in: "?" out, never a crash */
        static const char *const junk[] = {
                "null", "{}", "[]", "{\"members\":{},\"budget\":[]}",
                "{\"members\":[null,1,{\"host\":[],\"lease_ttl_ms\":\"x\",\"serving\":\"yes\"}],"
                "\"budget\":{\"out\":[1,null]},\"last_error\":\"a\\nb\",\"master\":\"m\"}",
        };
        for (size_t i = 0; i < ELEMENTSOF(junk); i++) {
                o = json_tokener_parse(junk[i]);
                assert_int_equal(status_text_format_pool(o, &t), 0);
                assert_non_null(strstr(t, "pool"));
                assert_null(strstr(t, "a\nb"));
                free(t);
                json_object_put(o);
        }
        assert_int_equal(status_text_format_pool(NULL, NULL), -EINVAL);
}

/* The pool's budget beside this host's config: the status line, the pool
 * listing and `monkeyctl pool budget` say which rules differ. */
static void test_pool_budget_text(void **state) {
        char buf[512], *t = NULL;
        const char *line;
        json_object *o;

        t = format_str("{\"pool\":{\"configured\":true,\"name\":\"web\",\"serving\":true,\"serving_count\":2,"
                       "\"status\":\"connected\",\"budget\":{\"min_serving\":1,\"max_unavailable\":2,\"out\":[],"
                       "\"source\":\"pool\",\"config\":{\"min_serving\":0,\"max_unavailable\":5},"
                       "\"config_differs\":[\"min_serving\",\"max_unavailable\"]},\"members\":[{},{}]}}");
        line = line_of(t, "pool", buf, sizeof buf);
        free(t);
        assert_string_equal(line, "web: serving (2 of 2 serving, budget: 0 out of max 2); the pool's budget, this "
                                  "host's config differs: min_serving, max_unavailable");

        o = parse("{\"pool\":\"web\",\"min_serving\":1,\"max_unavailable\":3,\"how\":\"set\","
                  "\"by\":\"root (uid 0) on web-3\",\"at\":\"2026-12-07T05:02:53Z\",\"old\":{\"min_serving\":1,"
                  "\"max_unavailable\":1},\"config\":{\"min_serving\":1,\"max_unavailable\":1},"
                  "\"config_differs\":[\"max_unavailable\"]}");
        assert_int_equal(status_text_format_budget(o, &t), 0);
        assert_string_equal(t, "pool        web\n"
                               "budget      min_serving 1 -> 1, max_unavailable 1 -> 3\n"
                               "written     set by root (uid 0) on web-3 at 2026-12-07 05:02:53 UTC\n"
                               "            the pool's budget applies; this host's config says min_serving 1, "
                               "max_unavailable 1 (differs: max_unavailable)\n");
        free(t);
        json_object_put(o);

        /* a pool without a budget yet; garbage: "?" and never a crash */
        o = parse("{\"pool\":\"web\",\"min_serving\":null,\"max_unavailable\":null,\"config_differs\":[]}");
        assert_int_equal(status_text_format_budget(o, &t), 0);
        assert_non_null(strstr(t, "none yet"));
        free(t);
        json_object_put(o);
        o = parse("{\"min_serving\":\"x\",\"by\":\"a\\nb\",\"old\":[],\"config_differs\":{}}");
        assert_int_equal(status_text_format_budget(o, &t), 0);
        assert_null(strstr(t, "a\nb"));
        free(t);
        json_object_put(o);
        assert_int_equal(status_text_format_budget(NULL, NULL), -EINVAL);
}

#define SLACK_STATUS(slack) "{\"state\":\"SERVING\",\"slack\":" slack "}"

static void test_slack_line(void **state) {
        char buf[256], *t;

        t = format_str(SLACK_STATUS("{\"configured\":false}"));
        assert_string_equal(line_of(t, "slack", buf, sizeof buf), "not configured");
        free(t);

        t = format_str(SLACK_STATUS("{\"configured\":true,\"mode\":\"bot-token\",\"channel\":\"#incidents\","
                                    "\"outbox\":{\"pending\":2,\"next_attempt_in_ms\":4000,\"delivered\":17,"
                                    "\"dropped\":0,\"dead\":1,\"paused\":false,"
                                    "\"last_error\":\"Slack: HTTP 503, will retry\"}}"));
        assert_string_equal(line_of(t, "slack", buf, sizeof buf),
                            "bot-token #incidents: 2 waiting (next try in 4s), 17 delivered, 1 rejected (outbox/dead/)");
        assert_non_null(strstr(t, "\n            last error: Slack: HTTP 503, will retry\n"));
        free(t);

        t = format_str(SLACK_STATUS("{\"configured\":true,\"mode\":\"webhook\",\"outbox\":{\"pending\":3,"
                                    "\"delivered\":0,\"dropped\":4,\"paused\":true,"
                                    "\"last_error\":\"Slack: no_service (HTTP 404): check webhook_url\"}}"));
        assert_string_equal(line_of(t, "slack", buf, sizeof buf), "webhook: 3 waiting, 0 delivered, 4 dropped");
        assert_non_null(strstr(t, "PAUSED: Slack: no_service (HTTP 404): check webhook_url\n"));
        free(t);

        /* an agent without the field: no line at all */
        t = format_str("{\"state\":\"SERVING\"}");
        assert_null(strstr(t, "slack"));
        free(t);
}

static void test_remedy_lines(void **state) {
        char buf[256], *t;

        t = format_str("{\"state\":\"SERVING\",\"remedy\":{\"mode\":\"enabled\",\"count_in_window\":1,"
                       "\"max_per_window\":2,\"window_sec\":3600,\"ladder\":[\"restart-unit:app.service\","
                       "\"reboot-instance\"],\"grace_left_sec\":300,\"aws\":{\"instance_id\":\"i-0123456789abcdef0\","
                       "\"region\":\"us-east-1\",\"credentials\":{\"source\":\"instance-role\",\"origin\":"
                       "\"role web\"},\"permission\":\"denied\",\"permission_detail\":\"reboot denied: "
                       "UnauthorizedOperation\"}}}");
        assert_string_equal(line_of(t, "remedy", buf, sizeof buf),
                            "enabled (1 of 2 in 1h)  ladder restart-unit:app.service -> reboot-instance  post-boot grace "
                            "5m left");
        assert_string_equal(line_of(t, "aws", buf, sizeof buf),
                            "i-0123456789abcdef0 in us-east-1, credentials instance-role (role web): reboot denied");
        assert_non_null(strstr(t, "\n            reboot denied: UnauthorizedOperation\n"));
        free(t);
}

/* behind AWS load balancers: the targets' states, the group, what it waits for */
static void test_route_lines(void **state) {
        char buf[256], *t;

        t = format_str("{\"state\":\"DRAINING\",\"remedy\":{\"mode\":\"enabled\",\"route\":{\"target_groups\":"
                       "[{\"arn\":\"arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef\","
                       "\"port\":null,\"state\":\"draining\"}],\"autoscaling\":{\"mode\":\"standby\",\"group\":"
                       "\"web-asg\",\"lifecycle\":\"Standby\"},\"doing\":\"waiting for the targets to drain\","
                       "\"for_seconds\":12,\"last_error\":\"elasticloadbalancing DescribeTargetHealth: Throttling\"}}}");
        assert_string_equal(line_of(t, "lb", buf, sizeof buf),
                            "target group web draining; Auto Scaling standby (web-asg Standby)");
        assert_non_null(strstr(t, "\n            doing: waiting for the targets to drain (12s)\n"));
        assert_non_null(strstr(t, "\n            last error: elasticloadbalancing DescribeTargetHealth: Throttling\n"));
        free(t);
        /* no route: no line */
        t = format_str("{\"state\":\"SERVING\",\"remedy\":{\"mode\":\"enabled\",\"route\":null}}");
        assert_null(strstr(t, "target group"));
        free(t);
}

/* [remedy] budget = none, and the agent-check listener with its warning */
static void test_budget_and_agent_check_lines(void **state) {
        char buf[256], *t;

        t = format_str("{\"state\":\"SERVING\",\"remedy\":{\"mode\":\"enabled\",\"count_in_window\":0,"
                       "\"max_per_window\":2,\"window_sec\":3600,\"budget\":\"none\",\"budget_note\":"
                       "\"no fleet budget ([remedy] budget = none)\"}}");
        assert_string_equal(line_of(t, "remedy", buf, sizeof buf), "enabled (0 of 2 in 1h)");
        assert_non_null(strstr(t, "\n            no fleet budget ([remedy] budget = none)\n"));
        free(t);
        t = format_str("{\"state\":\"SERVING\",\"remedy\":{\"mode\":\"enabled\",\"budget\":\"pool\","
                       "\"budget_note\":null}}");
        assert_null(strstr(t, "fleet budget"));
        free(t);

        t = format_str("{\"state\":\"SERVING\",\"agent_check\":{\"address\":\"127.0.0.3\",\"port\":5555,"
                       "\"from\":\"[pool] address\",\"proxies_connect_to\":\"127.0.0.3\",\"reachable\":true,"
                       "\"warning\":null,\"note\":null}}");
        assert_string_equal(line_of(t, "proxy", buf, sizeof buf), "agent-check on 127.0.0.3 port 5555 (from [pool] address)");
        assert_null(strstr(t, "WARNING"));
        free(t);
        t = format_str("{\"state\":\"SERVING\",\"agent_check\":{\"address\":\"127.0.0.1\",\"port\":5555,"
                       "\"from\":\"[proxy] agent_check_address\",\"reachable\":false,\"warning\":\"HAProxy connects "
                       "agent-check to the server's own address 127.0.0.3\"}}");
        assert_non_null(strstr(t, "\n            WARNING: HAProxy connects agent-check to the server's own address "
                                  "127.0.0.3\n"));
        free(t);
        /* no [proxy]: no line */
        t = format_str("{\"state\":\"SERVING\",\"agent_check\":null}");
        assert_null(strstr(t, "agent-check"));
        free(t);

        /* the HTTP health endpoint, with its counters */
        t = format_str("{\"state\":\"SERVING\",\"health\":{\"address\":\"127.0.0.3\",\"port\":8081,\"path\":\"/\","
                       "\"from\":\"[pool] address\",\"connections\":2,\"requests\":310,\"refused\":1}}");
        assert_string_equal(line_of(t, "health", buf, sizeof buf),
                            "HTTP on 127.0.0.3 port 8081 path / (from [pool] address): 2 connections, 310 requests, 1 refused");
        free(t);
        t = format_str("{\"state\":\"SERVING\",\"health\":null}");
        assert_null(strstr(t, "HTTP on"));
        free(t);
}

/* The verdict behind the exit code, the config that runs and the last reload. */
static void test_routing_config_reload_lines(void **state) {
        char buf[512], *t;

        t = format_str("{\"state\":\"SERVING\",\"routing\":{\"verdict\":\"degraded\",\"routed\":true,"
                       "\"degraded\":true,\"why\":\"Redis: unreachable (Connection refused)\"},"
                       "\"config\":\"/etc/monkeyd/monkeyd.conf\",\"config_sha256\":"
                       "\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\",\"last_reload\":null}");
        assert_string_equal(line_of(t, "routing", buf, sizeof buf), "DEGRADED: Redis: unreachable (Connection refused)");
        assert_string_equal(line_of(t, "config", buf, sizeof buf),
                            "/etc/monkeyd/monkeyd.conf sha256 "
                            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_string_equal(line_of(t, "reload", buf, sizeof buf), "none since the agent started");
        free(t);

        t = format_str("{\"state\":\"MAINTENANCE\",\"routing\":{\"verdict\":\"not routed\",\"why\":"
                       "\"state MAINTENANCE\"},\"config\":\"/etc/m.conf\",\"config_sha256\":\"ab\","
                       "\"last_reload\":{\"at\":\"2026-11-22T17:00:00Z\",\"at_unix\":1795366800,\"ok\":true,"
                       "\"result\":\"ok\",\"via\":\"monkeyctl\"}}");
        assert_string_equal(line_of(t, "routing", buf, sizeof buf), "not routed: state MAINTENANCE");
        assert_string_equal(line_of(t, "reload", buf, sizeof buf), "2026-11-22 17:00:00 UTC (monkeyctl): ok");
        free(t);

        /* a refusal: what the agent said, on one line */
        t = format_str("{\"state\":\"SERVING\",\"config\":\"/etc/m.conf\",\"config_sha256\":\"ab\","
                       "\"last_reload\":{\"at_unix\":1795366800,\"ok\":false,\"via\":\"SIGHUP\",\"result\":"
                       "\"/etc/m.conf:7: [cpu] threshold: invalid\\npercentage\"}}");
        assert_string_equal(line_of(t, "reload", buf, sizeof buf),
                            "2026-11-22 17:00:00 UTC (SIGHUP): REFUSED, still running the config above: "
                            "/etc/m.conf:7: [cpu] threshold: invalid?percentage");
        free(t);

        /* a config with a secret inline: no hash for every local user to read */
        t = format_str("{\"state\":\"SERVING\",\"config\":\"/etc/m.conf\",\"config_sha256\":null,"
                       "\"last_reload\":null}");
        assert_string_equal(line_of(t, "config", buf, sizeof buf),
                            "/etc/m.conf (no sha256 shown: the file holds a secret inline)");
        free(t);

        /* an older agent: no such lines */
        t = format_str("{\"state\":\"SERVING\"}");
        assert_null(strstr(t, "routing"));
        assert_null(strstr(t, "reload"));
        free(t);
}

static void test_duration(void **state) {
        static const struct {
                double sec;
                const char *text;
        } cases[] = {
                { 0, "0s" },          { 0.25, "250ms" },   { 0.9999, "999ms" },  { 1, "1s" },
                { 59.9, "59s" },      { 60, "1m" },        { 723, "12m3s" },     { 723.5, "12m3s" },
                { 3600, "1h" },       { 3605, "1h0m5s" },  { 7260, "2h1m" },     { 86400, "1d" },
                { 90061, "1d1h1m1s" }, { 172800 + 5, "2d0h0m5s" },
                { -1, "?" },          { NAN, "?" },        { INFINITY, "?" },    { 1e300, "?" },
        };
        char buf[64], tiny[4];

        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                assert_string_equal(status_text_duration(cases[i].sec, buf, sizeof buf), cases[i].text);

        /* truncates, never overflows */
        assert_string_equal(status_text_duration(90061, tiny, sizeof tiny), "1d1");
}

static void test_time(void **state) {
        char buf[64], small[8];

        assert_string_equal(status_text_time("2026-11-22T17:00:00Z", buf, sizeof buf), "2026-11-22 17:00:00 UTC");
        assert_string_equal(status_text_time("2026-11-22T17:00:00.5Z", buf, sizeof buf), "2026-11-22 17:00:00 UTC");
        assert_string_equal(status_text_time("2026-11-22T17:00:00+00:00", buf, sizeof buf), "2026-11-22 17:00:00 UTC");
        /* other offsets are not UTC: shown as given */
        assert_string_equal(status_text_time("2026-11-22T17:00:00+01:00", buf, sizeof buf), "2026-11-22T17:00:00+01:00");
        assert_string_equal(status_text_time("2026-11-22T17:00", buf, sizeof buf), "2026-11-22T17:00");
        assert_string_equal(status_text_time("", buf, sizeof buf), "");
        assert_string_equal(status_text_time(NULL, buf, sizeof buf), "?");
        assert_string_equal(status_text_time("2026-11-22T17:00:00Z", small, sizeof small), "2026-11");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_full_status),
                cmocka_unit_test(test_status_variants),
                cmocka_unit_test(test_minimal_and_garbage),
                cmocka_unit_test(test_field_substitution),
                cmocka_unit_test(test_control_characters),
                cmocka_unit_test(test_event_lines),
                cmocka_unit_test(test_pool_line),
                cmocka_unit_test(test_pool_listing),
                cmocka_unit_test(test_pool_budget_text),
                cmocka_unit_test(test_slack_line),
                cmocka_unit_test(test_remedy_lines),
                cmocka_unit_test(test_route_lines),
                cmocka_unit_test(test_budget_and_agent_check_lines),
                cmocka_unit_test(test_routing_config_reload_lines),
                cmocka_unit_test(test_duration),
                cmocka_unit_test(test_time),
                cmocka_unit_test(test_history),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
