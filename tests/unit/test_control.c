/* Control protocol: the pure request parser/encoder and reply builders, then
 * the real server on a temporary socket, driven in-process by stepping the
 * sd-event loop while non-blocking clients talk to it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>

#include "config.h"
#include "control_server.h"

static void json_putp(json_object **o) {
        if (*o)
                json_object_put(*o);
}

/* --- pure protocol ----------------------------------------------------- */

static void test_command_table(void **state) {
        for (ControlCommand c = 0; c < _CONTROL_COMMAND_MAX; c++) {
                const char *s = control_command_to_string(c);
                assert_non_null(s);
                assert_int_equal(control_command_from_string(s), c);
        }
        assert_string_equal(control_command_to_string(CONTROL_DRAIN), "drain");
        assert_null(control_command_to_string(_CONTROL_COMMAND_MAX));
        assert_null(control_command_to_string(_CONTROL_COMMAND_INVALID));
        assert_int_equal(control_command_from_string("STATUS"), _CONTROL_COMMAND_INVALID);
        assert_int_equal(control_command_from_string(""), _CONTROL_COMMAND_INVALID);
        assert_int_equal(control_command_from_string(NULL), _CONTROL_COMMAND_INVALID);

        assert_true(control_command_is_mutating(CONTROL_DRAIN));
        assert_true(control_command_is_mutating(CONTROL_RESUME));
        assert_false(control_command_is_mutating(CONTROL_STATUS));
        assert_false(control_command_is_mutating(CONTROL_HISTORY));
        assert_false(control_command_is_mutating(CONTROL_WATCH));
        assert_false(control_command_is_mutating(CONTROL_POOL));
        assert_string_equal(control_command_to_string(CONTROL_POOL), "pool");

        /* reload: mutating, and beyond what the control group may do */
        assert_int_equal(control_command_from_string("reload"), CONTROL_RELOAD);
        assert_true(control_command_is_mutating(CONTROL_RELOAD));
        assert_true(control_command_is_root_only(CONTROL_RELOAD));
        for (ControlCommand c = 0; c < _CONTROL_COMMAND_MAX; c++)
                if (c != CONTROL_RELOAD)
                        assert_false(control_command_is_root_only(c));
}

/* The table's rows, as the protocol had them before there was a table:
 * who may run what, what is answered later, which argument each reads. */
static void test_command_rows(void **state) {
        static const struct {
                ControlCommand c;
                bool mutating, root_only, deferred;
                unsigned args, required;
                ControlReplyShape reply;
                const char *key;
        } want[] = {
                { CONTROL_STATUS, false, false, false, 0, 0, CONTROL_REPLY_OBJECT, "status" },
                { CONTROL_HISTORY, false, false, false, CONTROL_ARG_LIMIT, 0, CONTROL_REPLY_ARRAY, "history" },
                { CONTROL_WATCH, false, false, false, 0, 0, CONTROL_REPLY_STREAM, "watching" },
                { CONTROL_DRAIN, true, false, false, CONTROL_ARG_REASON, 0, CONTROL_REPLY_MESSAGE, "message" },
                { CONTROL_RESUME, true, false, false, 0, 0, CONTROL_REPLY_MESSAGE, "message" },
                { CONTROL_POOL, false, false, false, 0, 0, CONTROL_REPLY_OBJECT, "pool" },
                { CONTROL_TEST_ALERT, true, false, true, CONTROL_ARG_REASON, 0, CONTROL_REPLY_RESULT, "result" },
                { CONTROL_TEST_REBOOT, true, false, true, 0, 0, CONTROL_REPLY_RESULT, "result" },
                { CONTROL_CHECK, false, false, true, 0, 0, CONTROL_REPLY_RESULT, "result" },
                { CONTROL_INCIDENTS, false, false, false, 0, 0, CONTROL_REPLY_OBJECT, "incidents" },
                { CONTROL_INCIDENT, false, false, false, CONTROL_ARG_ID, CONTROL_ARG_ID, CONTROL_REPLY_OBJECT,
                  "incident" },
                { CONTROL_RELOAD, true, true, false, 0, 0, CONTROL_REPLY_MESSAGE, "message" },
                { CONTROL_POOL_BUDGET, false, false, true, 0, 0, CONTROL_REPLY_RESULT, "result" },
                /* the whole pool's budget: privileged like drain, not root-only */
                { CONTROL_POOL_BUDGET_SET, true, false, true, CONTROL_ARG_MIN_SERVING | CONTROL_ARG_MAX_UNAVAILABLE, 0,
                  CONTROL_REPLY_RESULT, "result" },
                { CONTROL_STATS, false, false, false, 0, 0, CONTROL_REPLY_OBJECT, "stats" },
        };

        assert_int_equal(ELEMENTSOF(want), _CONTROL_COMMAND_MAX);
        for (size_t i = 0; i < ELEMENTSOF(want); i++) {
                const ControlCommandInfo *info = control_command_info(want[i].c);

                assert_non_null(info);
                assert_int_equal(info->command, want[i].c);
                assert_string_equal(info->name, control_command_to_string(want[i].c));
                if (info->mutating != want[i].mutating || info->root_only != want[i].root_only ||
                    info->deferred != want[i].deferred)
                        fail_msg("%s: mutating %d root-only %d deferred %d", info->name, info->mutating,
                                 info->root_only, info->deferred);
                assert_int_equal(control_command_is_mutating(want[i].c), want[i].mutating);
                assert_int_equal(control_command_is_root_only(want[i].c), want[i].root_only);
                assert_int_equal(info->args, want[i].args);
                assert_int_equal(info->required, want[i].required);
                assert_int_equal(info->reply, want[i].reply);
                assert_string_equal(info->reply_key, want[i].key);
                /* what only comes later is a result; what it needs it reads */
                assert_int_equal(info->deferred, info->reply == CONTROL_REPLY_RESULT);
                assert_int_equal(info->required & ~info->args, 0);
        }
        assert_null(control_command_info(_CONTROL_COMMAND_MAX));
        assert_null(control_command_info(_CONTROL_COMMAND_INVALID));
        assert_false(control_command_is_mutating(_CONTROL_COMMAND_INVALID));
}

static void expect_bad(const char *s, const char *error);

/* Every row parses: what monkeyctl sends for it comes back as the same
 * request, and one missing what it requires is refused by name. */
static void test_every_command_parses(void **state) {
        for (ControlCommand c = 0; c < _CONTROL_COMMAND_MAX; c++) {
                const ControlCommandInfo *info = control_command_info(c);
                ControlRequest req = { .version = CONTROL_PROTOCOL_VERSION, .command = c }, back = {};
                _cleanup_(freep) char *line = NULL, *err = NULL, *bare = NULL, *want = NULL;

                if (info->args & CONTROL_ARG_REASON)
                        req.reason = (char *) "why";
                if (info->args & CONTROL_ARG_LIMIT)
                        req.limit = 7;
                if (info->args & CONTROL_ARG_ID)
                        req.id = (char *) "20261122T170012Z-web-1";
                if (info->args & CONTROL_ARG_MIN_SERVING)
                        req.has_min_serving = true, req.min_serving = 0;
                if (info->args & CONTROL_ARG_MAX_UNAVAILABLE)
                        req.has_max_unavailable = true, req.max_unavailable = 3;
                assert_int_equal(control_request_format(&req, &line), 0);
                if (control_request_parse(line, strlen(line), &back, &err) < 0)
                        fail_msg("%s: %s refused: %s", info->name, line, strna(err));
                assert_int_equal(back.command, c);
                assert_int_equal(back.limit, req.limit);
                assert_true(streq_ptr(back.reason, req.reason));
                assert_true(streq_ptr(back.id, req.id));
                /* 0 is a min_serving, not "not given" */
                assert_int_equal(back.has_min_serving, req.has_min_serving);
                assert_int_equal(back.min_serving, req.min_serving);
                assert_int_equal(back.has_max_unavailable, req.has_max_unavailable);
                assert_int_equal(back.max_unavailable, req.max_unavailable);
                control_request_done(&back);

                assert_true(asprintf(&bare, "{\"version\":1,\"command\":\"%s\"}", info->name) > 0);
                if (!info->required) {
                        assert_int_equal(control_request_parse(bare, strlen(bare), &back, &err), 0);
                        control_request_done(&back);
                        continue;
                }
                assert_true(asprintf(&want, "\"%s\" needs an \"id\"", info->name) > 0);
                expect_bad(bare, want);
        }

        /* no row, the same words as ever, whole */
        {
                static const char bad[] = "{\"version\":1,\"command\":\"frobnicate\"}";
                ControlRequest req = {};
                _cleanup_(freep) char *err = NULL;

                assert_int_equal(control_request_parse(bad, strlen(bad), &req, &err), -EBADMSG);
                assert_string_equal(err, "unknown command \"frobnicate\"");
        }
}

/* The exit code of `monkeyctl status`, from the status JSON alone. */
static ControlVerdict verdict_of(const char *status_json, char **ret_why) {
        _cleanup_(json_putp) json_object *o = status_json ? json_tokener_parse(status_json) : NULL;

        if (status_json && !o)
                fail_msg("test JSON does not parse: %s", status_json);
        return control_status_verdict(o, ret_why);
}

static void assert_verdict(const char *status_json, ControlVerdict want, const char *why_has) {
        _cleanup_(freep) char *why = NULL;
        ControlVerdict v = verdict_of(status_json, &why);

        if (v != want)
                fail_msg("verdict %s, want %s, for %s (why: %s)", control_verdict_to_string(v),
                         control_verdict_to_string(want), status_json, strna(why));
        assert_non_null(why);
        if (!strstr(why, why_has))
                fail_msg("why \"%s\" lacks \"%s\" for %s", why, why_has, status_json);
}

#define NO_POOL "\"pool\":{\"configured\":false,\"serving\":true}"
#define IN_POOL "\"pool\":{\"configured\":true,\"serving\":true,\"status\":\"connected\"}"

static void test_status_verdict(void **state) {
        /* the states that take traffic, without a pool: routed */
        assert_verdict("{\"state\":\"SERVING\"," NO_POOL "}", CONTROL_VERDICT_ROUTED, "SERVING");
        /* observe-only overload and a held host stay in: routed (exit 1 before) */
        assert_verdict("{\"state\":\"OVERLOADED\"," NO_POOL "}", CONTROL_VERDICT_ROUTED, "OVERLOADED");
        assert_verdict("{\"state\":\"HOLDING\"," IN_POOL "}", CONTROL_VERDICT_ROUTED, "in the pool");
        /* the others do not */
        for (const char *const *st = (const char *const[]) { "BOOT", "CHECKING", "DRAINING", "REMEDIATING",
                                                            "QUARANTINED", "MAINTENANCE", NULL };
             *st; st++) {
                char j[160], want[64];
                snprintf(j, sizeof j, "{\"state\":\"%s\"," IN_POOL "}", *st);
                snprintf(want, sizeof want, "state %s", *st);
                assert_verdict(j, CONTROL_VERDICT_NOT_ROUTED, want);
        }
        /* with a pool, out of it is not routed whatever the state says */
        assert_verdict("{\"state\":\"SERVING\",\"pool\":{\"configured\":true,\"serving\":false,"
                       "\"status\":\"connected\"}}",
                       CONTROL_VERDICT_NOT_ROUTED, "not in the pool");

        /* routed, but Redis down (exit 0 before): degraded, with the error */
        assert_verdict("{\"state\":\"SERVING\",\"pool\":{\"configured\":true,\"serving\":true,"
                       "\"status\":\"unreachable\",\"last_error\":\"Connection refused\"}}",
                       CONTROL_VERDICT_DEGRADED, "Redis: unreachable (Connection refused)");
        assert_verdict("{\"state\":\"SERVING\",\"pool\":{\"configured\":true,\"serving\":true,"
                       "\"status\":\"reconnecting\"}}",
                       CONTROL_VERDICT_DEGRADED, "Redis: reconnecting");
        /* Slack: paused, or its last try failed; a slack that works is fine */
        assert_verdict("{\"state\":\"SERVING\"," NO_POOL ",\"slack\":{\"configured\":true,\"outbox\":"
                       "{\"paused\":false,\"last_error\":\"HTTP 503\"}}}",
                       CONTROL_VERDICT_DEGRADED, "Slack: not delivering (HTTP 503)");
        assert_verdict("{\"state\":\"SERVING\"," NO_POOL ",\"slack\":{\"configured\":true,\"outbox\":"
                       "{\"paused\":true,\"last_error\":\"invalid_auth\"}}}",
                       CONTROL_VERDICT_DEGRADED, "Slack: paused (invalid_auth)");
        assert_verdict("{\"state\":\"SERVING\"," NO_POOL ",\"slack\":{\"configured\":true,\"outbox\":"
                       "{\"paused\":false,\"pending\":0}}}",
                       CONTROL_VERDICT_ROUTED, "SERVING");
        assert_verdict("{\"state\":\"SERVING\"," NO_POOL ",\"slack\":{\"configured\":false}}",
                       CONTROL_VERDICT_ROUTED, "SERVING");
        /* state.json failing */
        assert_verdict("{\"state\":\"SERVING\"," NO_POOL ",\"state_file\":{\"ok\":false,\"last_error\":"
                       "\"No space left on device\"}}",
                       CONTROL_VERDICT_DEGRADED, "state file: cannot save (No space left on device)");
        /* all at once, one line, the agent's control characters made harmless */
        assert_verdict("{\"state\":\"OVERLOADED\",\"pool\":{\"configured\":true,\"serving\":true,"
                       "\"status\":\"unreachable\"},\"slack\":{\"configured\":true,\"outbox\":{\"paused\":true}},"
                       "\"state_file\":{\"ok\":false,\"last_error\":\"bad\\nline\"}}",
                       CONTROL_VERDICT_DEGRADED, "Redis: unreachable; Slack: paused; state file: cannot save (bad?line)");
        /* degraded never hides "not routed" */
        assert_verdict("{\"state\":\"MAINTENANCE\",\"pool\":{\"configured\":true,\"serving\":false,"
                       "\"status\":\"unreachable\"}}",
                       CONTROL_VERDICT_NOT_ROUTED, "state MAINTENANCE");

        /* what an odd or older agent sends: never a crash, unknown state is not routed */
        assert_verdict("{}", CONTROL_VERDICT_NOT_ROUTED, "state unknown");
        assert_verdict("{\"state\":7,\"pool\":[]}", CONTROL_VERDICT_NOT_ROUTED, "state unknown");
        assert_verdict("[1]", CONTROL_VERDICT_NOT_ROUTED, "state unknown");
        assert_verdict("{\"state\":\"SERVING\"}", CONTROL_VERDICT_ROUTED, "SERVING");
        assert_verdict("{\"state\":\"SERVING\",\"pool\":{\"configured\":true,\"serving\":\"yes\"}}",
                       CONTROL_VERDICT_NOT_ROUTED, "not in the pool");
        assert_int_equal(verdict_of(NULL, NULL), CONTROL_VERDICT_NOT_ROUTED);
        assert_string_equal(control_verdict_to_string(CONTROL_VERDICT_DEGRADED), "degraded");
        assert_null(control_verdict_to_string(_CONTROL_VERDICT_MAX));
}

static int parse_str(const char *s, ControlRequest *req, char **err) {
        return control_request_parse(s, strlen(s), req, err);
}

static void test_parse_good(void **state) {
        ControlRequest req = {};
        char *err = NULL;

        assert_int_equal(parse_str("{\"version\":1,\"command\":\"status\"}", &req, &err), 0);
        assert_null(err);
        assert_int_equal(req.version, 1);
        assert_int_equal(req.command, CONTROL_STATUS);
        assert_null(req.reason);
        assert_int_equal(req.limit, 0);
        control_request_done(&req);

        assert_int_equal(parse_str("  {\"command\":\"history\", \"limit\": 1000, \"version\":1}  \r\n", &req, &err), 0);
        assert_int_equal(req.command, CONTROL_HISTORY);
        assert_int_equal(req.limit, 1000);
        control_request_done(&req);

        assert_int_equal(parse_str("{\"version\":1,\"command\":\"incident\",\"id\":\"20261122T170012Z-web-1\"}",
                                   &req, &err), 0);
        assert_int_equal(req.command, CONTROL_INCIDENT);
        assert_string_equal(req.id, "20261122T170012Z-web-1");
        control_request_done(&req);
        assert_null(req.id);

        assert_int_equal(parse_str("{\"version\":1,\"command\":\"history\",\"limit\":0}", &req, &err), 0);
        assert_int_equal(req.limit, 0);
        control_request_done(&req);

        assert_int_equal(parse_str("{\"version\":1,\"command\":\"drain\",\"reason\":\"kernel upgrade \\u00e9\"}",
                                   &req, &err), 0);
        assert_int_equal(req.command, CONTROL_DRAIN);
        assert_string_equal(req.reason, "kernel upgrade \xc3\xa9");
        control_request_done(&req);
        assert_null(req.reason);

        /* null and empty reasons are "no reason"; unknown keys are tolerated */
        assert_int_equal(parse_str("{\"version\":1,\"command\":\"drain\",\"reason\":null,\"x\":[1]}", &req, &err), 0);
        assert_null(req.reason);
        control_request_done(&req);
        assert_int_equal(parse_str("{\"version\":1,\"command\":\"drain\",\"reason\":\"\"}", &req, &err), 0);
        assert_null(req.reason);
        control_request_done(&req);

        assert_int_equal(parse_str("{\"version\":1,\"command\":\"resume\"}", &req, &err), 0);
        assert_int_equal(req.command, CONTROL_RESUME);
        control_request_done(&req);
        assert_int_equal(parse_str("{\"version\":1,\"command\":\"watch\"}", &req, &err), 0);
        assert_int_equal(req.command, CONTROL_WATCH);
        control_request_done(&req);

        /* only len bytes count: what follows is not part of the request */
        const char *s = "{\"version\":1,\"command\":\"status\"}GARBAGE";
        assert_int_equal(control_request_parse(s, strlen(s) - 7, &req, &err), 0);
        control_request_done(&req);

        /* exactly 200 bytes of reason is fine */
        char line[512], reason[201];
        memset(reason, 'r', 200);
        reason[200] = '\0';
        snprintf(line, sizeof line, "{\"version\":1,\"command\":\"drain\",\"reason\":\"%s\"}", reason);
        assert_int_equal(parse_str(line, &req, &err), 0);
        assert_int_equal(strlen(req.reason), 200);
        control_request_done(&req);
}

static void expect_bad_len(const char *s, size_t len, const char *error) {
        ControlRequest req = { .version = 77, .command = CONTROL_RESUME, .reason = NULL, .limit = 99 };
        char *err = NULL;

        assert_int_equal(control_request_parse(s, len, &req, &err), -EBADMSG);
        assert_non_null(err);
        if (!strstr(err, error))
                fail_msg("input %s: error \"%s\" does not contain \"%s\"", s, err, error);
        /* ret untouched on failure */
        assert_int_equal(req.version, 77);
        assert_int_equal(req.command, CONTROL_RESUME);
        assert_int_equal(req.limit, 99);
        assert_null(req.reason);
        free(err);
}

static void expect_bad(const char *s, const char *error) {
        expect_bad_len(s, strlen(s), error);
}

static void test_parse_bad(void **state) {
        char line[512], reason[202];

        expect_bad("", "not JSON");
        expect_bad("hello", "not JSON");
        expect_bad("{\"version\":1,\"command\":\"incident\"}", "\"incident\" needs an \"id\"");
        expect_bad("{\"version\":1,\"command\":\"incident\",\"id\":7}", "\"id\" is not a string");
        expect_bad("{\"version\":1,\"command\":\"incident\",\"id\":\"\"}", "\"id\" must be 1..128 bytes");
        expect_bad("{\"version\":1,\"command\":\"incident\",\"id\":\"a\\u0000b\"}", "\"id\" contains a NUL byte");
        expect_bad("{\"version\":1,\"command\":\"status\"", "not JSON");
        expect_bad("{'version':1,'command':'status'}", "not JSON");
        expect_bad("{\"version\":1,\"command\":\"status\",}", "not JSON");
        expect_bad("[1,2]", "not a JSON object");
        expect_bad("\"status\"", "not a JSON object");
        expect_bad("null", "not a JSON object");
        /* json-c's strict mode itself refuses anything after the object */
        expect_bad("{\"version\":1,\"command\":\"status\"} {}", "not JSON");
        expect_bad("{\"version\":1,\"command\":\"status\"}x", "not JSON");
        expect_bad("{\"version\":1,\"command\":\"status\"}\n{\"version\":1,\"command\":\"status\"}", "not JSON");
        expect_bad("1", "not a JSON object");
        expect_bad("true", "not a JSON object");
        expect_bad("{\"version\":1}", "missing \"command\"");
        expect_bad("{\"version\":1,\"command\":7}", "\"command\" is not a string");
        expect_bad("{\"version\":1,\"command\":null}", "\"command\" is not a string");
        expect_bad("{\"version\":1,\"command\":[\"status\"]}", "\"command\" is not a string");
        expect_bad("{\"version\":1,\"command\":\"reboot\"}", "unknown command \"reboot\"");
        expect_bad("{\"version\":1,\"command\":\"Status\"}", "unknown command \"Status\"");
        expect_bad("{\"version\":1,\"command\":\"status\\u0000x\"}", "unknown command");
        expect_bad("{\"version\":1,\"command\":\"a\\nb\"}", "unknown command \"a?b\"");
        expect_bad("{\"command\":\"status\"}", "missing \"version\"");
        expect_bad("{\"version\":0,\"command\":\"status\"}", "unsupported version 0");
        expect_bad("{\"version\":2,\"command\":\"status\"}", "unsupported version 2");
        expect_bad("{\"version\":-1,\"command\":\"status\"}", "unsupported version -1");
        /* json-c clamps these to INT64_MAX/MIN: no number nobody sent in the answer */
        expect_bad("{\"version\":99999999999999999999999999,\"command\":\"status\"}",
                   "unsupported version (out of range; this agent speaks 1)");
        expect_bad("{\"version\":18446744073709551617,\"command\":\"status\"}", "unsupported version (out of range");
        expect_bad("{\"version\":-99999999999999999999999999,\"command\":\"status\"}",
                   "unsupported version (out of range");
        expect_bad("{\"version\":1e0,\"command\":\"status\"}", "\"version\" is not an integer");
        expect_bad("{\"version\":{},\"command\":\"status\"}", "\"version\" is not an integer");
        expect_bad("{\"version\":\"1\",\"command\":\"status\"}", "\"version\" is not an integer");
        expect_bad("{\"version\":1.0,\"command\":\"status\"}", "\"version\" is not an integer");
        expect_bad("{\"version\":true,\"command\":\"status\"}", "\"version\" is not an integer");
        expect_bad("{\"version\":null,\"command\":\"status\"}", "\"version\" is not an integer");
        expect_bad("{\"version\":1,\"command\":\"drain\",\"reason\":5}", "\"reason\" is not a string");
        expect_bad("{\"version\":1,\"command\":\"drain\",\"reason\":[\"a\"]}", "\"reason\" is not a string");
        expect_bad("{\"version\":1,\"command\":\"drain\",\"reason\":\"a\\u0000b\"}", "NUL");
        expect_bad("{\"version\":1,\"command\":\"history\",\"limit\":-1}", "\"limit\" out of range");
        expect_bad("{\"version\":1,\"command\":\"history\",\"limit\":1001}", "\"limit\" out of range");
        /* the pool's budget: the bounds [pool] takes in the config */
        expect_bad("{\"version\":1,\"command\":\"pool-budget-set\",\"max_unavailable\":0}",
                   "\"max_unavailable\" out of range (1..100000): no host could ever leave the pool");
        expect_bad("{\"version\":1,\"command\":\"pool-budget-set\",\"min_serving\":-1}",
                   "\"min_serving\" out of range (0..100000)");
        expect_bad("{\"version\":1,\"command\":\"pool-budget-set\",\"min_serving\":100001}",
                   "\"min_serving\" out of range (0..100000)");
        expect_bad("{\"version\":1,\"command\":\"pool-budget-set\",\"max_unavailable\":\"3\"}",
                   "\"max_unavailable\" is not an integer");
        expect_bad("{\"version\":1,\"command\":\"history\",\"limit\":18446744073709551615}", "\"limit\" out of range");
        expect_bad("{\"version\":1,\"command\":\"history\",\"limit\":\"5\"}", "\"limit\" is not an integer");
        expect_bad("{\"version\":1,\"command\":\"history\",\"limit\":2.5}", "\"limit\" is not an integer");

        memset(reason, 'r', 201);
        reason[201] = '\0';
        snprintf(line, sizeof line, "{\"version\":1,\"command\":\"drain\",\"reason\":\"%s\"}", reason);
        expect_bad(line, "\"reason\" too long (max 200 bytes)");

        /* a NUL byte in the raw line, before or inside the JSON */
        static const char nul_after[] = "{\"version\":1,\"command\":\"status\"}\0junk";
        expect_bad_len(nul_after, sizeof nul_after - 1, "NUL");
        static const char nul_inside[] = "{\"version\":1,\"com\0mand\":\"status\"}";
        expect_bad_len(nul_inside, sizeof nul_inside - 1, "NUL");

        /* invalid UTF-8, including what json-c's own check lets through
         * (overlong forms, surrogates, above U+10FFFF): replies, events and
         * Slack messages must stay UTF-8 */
        expect_bad("{\"version\":1,\"command\":\"drain\",\"reason\":\"\xff\xfe\"}", "not valid UTF-8");
        expect_bad("{\"version\":1,\"command\":\"drain\",\"reason\":\"\xc0\xaf\"}", "not valid UTF-8");
        expect_bad("{\"version\":1,\"command\":\"drain\",\"reason\":\"\xed\xa0\x80\"}", "not valid UTF-8");
        expect_bad("{\"version\":1,\"command\":\"drain\",\"reason\":\"\xf4\x90\x80\x80\"}", "not valid UTF-8");
        expect_bad("{\"version\":1,\"command\":\"drain\",\"reason\":\"\xe2\x82\"}", "not valid UTF-8");
        expect_bad("{\"version\":1,\"command\":\"st\xc3\x28" "atus\"}", "not valid UTF-8");
        expect_bad("{\"version\":1,\"\xc0\xaf" "command\":\"status\"}", "not valid UTF-8");

        /* longer than the protocol allows, even if it were valid */
        char *big = malloc(CONTROL_REQUEST_MAX + 2);
        assert_non_null(big);
        memset(big, ' ', CONTROL_REQUEST_MAX + 1);
        memcpy(big, "{\"version\":1,\"command\":\"status\"}", 33);
        expect_bad_len(big, CONTROL_REQUEST_MAX + 1, "request too large (max 4096 bytes)"); /* as the server says it */
        free(big);

        /* without ret_error the code still says what happened */
        ControlRequest req = {};
        assert_int_equal(parse_str("nope", &req, NULL), -EBADMSG);
}

static void test_format_round_trip(void **state) {
        static const char *const reasons[] = {
                NULL, "kernel upgrade", "quote \" backslash \\ slash / newline \n tab \t", "\xc3\xa9t\xc3\xa9",
        };

        for (ControlCommand c = 0; c < _CONTROL_COMMAND_MAX; c++)
                for (size_t i = 0; i < ELEMENTSOF(reasons); i++)
                        for (unsigned limit = 0; limit <= 1000; limit += 500) {
                                ControlRequest in = { .version = 1, .command = c, .reason = (char *) reasons[i],
                                                      .limit = limit,
                                                      .id = c == CONTROL_INCIDENT ? (char *) "20261122T170012Z-web-1"
                                                                                  : NULL }, out = {};
                                char *line = NULL, *err = NULL;

                                assert_int_equal(control_request_format(&in, &line), 0);
                                assert_null(strchr(line, '\n'));
                                assert_int_equal(control_request_parse(line, strlen(line), &out, &err), 0);
                                assert_int_equal(out.version, 1);
                                assert_int_equal(out.command, c);
                                assert_int_equal(out.limit, limit);
                                if (reasons[i])
                                        assert_string_equal(out.reason, reasons[i]);
                                else
                                        assert_null(out.reason);
                                if (in.id)
                                        assert_string_equal(out.id, in.id);
                                else
                                        assert_null(out.id);
                                control_request_done(&out);
                                free(line);
                        }

        /* the exact wire form monkeyctl sends */
        ControlRequest st = { .version = 1, .command = CONTROL_STATUS };
        char *line = NULL;
        assert_int_equal(control_request_format(&st, &line), 0);
        assert_string_equal(line, "{\"version\":1,\"command\":\"status\"}");
        free(line);
        line = NULL;

        /* version 0 means "ours" */
        ControlRequest v0 = { .command = CONTROL_WATCH };
        assert_int_equal(control_request_format(&v0, &line), 0);
        assert_string_equal(line, "{\"version\":1,\"command\":\"watch\"}");
        free(line);
        line = NULL;

        char reason[202];
        memset(reason, 'x', 201);
        reason[201] = '\0';
        ControlRequest too_long = { .version = 1, .command = CONTROL_DRAIN, .reason = reason };
        assert_int_equal(control_request_format(&too_long, &line), -E2BIG);
        ControlRequest bad_cmd = { .version = 1, .command = _CONTROL_COMMAND_MAX };
        assert_int_equal(control_request_format(&bad_cmd, &line), -EINVAL);
        ControlRequest bad_limit = { .version = 1, .command = CONTROL_HISTORY, .limit = 1001 };
        assert_int_equal(control_request_format(&bad_limit, &line), -ERANGE);
        assert_null(line);
}

static json_object *parse_json(const char *s) {
        json_object *o = json_tokener_parse(s);
        assert_non_null(o);
        return o;
}

static void test_reply_builders(void **state) {
        _cleanup_(json_putp) json_object *e = NULL, *m = NULL, *r = NULL, *n = NULL;
        json_object *v, *value;
        char *s;

        s = control_reply_error("permission denied: \"x\"\nsecond");
        assert_non_null(s);
        assert_null(strchr(s, '\n'));
        e = parse_json(s);
        free(s);
        assert_true(json_object_object_get_ex(e, "version", &v));
        assert_int_equal(json_object_get_int(v), 1);
        assert_true(json_object_object_get_ex(e, "ok", &v));
        assert_false(json_object_get_boolean(v));
        assert_true(json_object_object_get_ex(e, "error", &v));
        assert_string_equal(json_object_get_string(v), "permission denied: \"x\"\nsecond");

        s = control_reply_message("draining /now/");
        assert_string_equal(s, "{\"version\":1,\"ok\":true,\"message\":\"draining /now/\"}");
        m = parse_json(s);
        free(s);

        value = parse_json("{\"state\":\"SERVING\",\"cpu\":{\"busy_pct\":1.5}}");
        s = control_reply_object("status", value);
        assert_non_null(s);
        /* borrowed: our reference is still ours to drop (ASan sees a double free otherwise) */
        json_object_put(value);
        r = parse_json(s);
        free(s);
        assert_true(json_object_object_get_ex(r, "ok", &v));
        assert_true(json_object_get_boolean(v));
        assert_true(json_object_object_get_ex(r, "status", &v));
        assert_true(json_object_object_get_ex(v, "state", &v));
        assert_string_equal(json_object_get_string(v), "SERVING");

        s = control_reply_object("history", NULL);
        assert_string_equal(s, "{\"version\":1,\"ok\":true,\"history\":null}");
        n = parse_json(s);
        free(s);
}

/* --- the server -------------------------------------------------------- */

typedef struct Fake {
        ControlServer *server;
        unsigned status_calls, history_calls, drain_calls, resume_calls, reload_calls;
        bool reload_refuses;
        unsigned history_limit;
        char *drain_reason;
        bool broadcast_on_drain;
} Fake;

static json_object *fake_status(void *userdata) {
        Fake *f = userdata;
        f->status_calls++;
        return json_tokener_parse("{\"host\":\"test-1\",\"state\":\"SERVING\"}");
}

static json_object *fake_history(void *userdata, unsigned limit) {
        Fake *f = userdata;
        json_object *a = json_object_new_array();

        f->history_calls++;
        f->history_limit = limit;
        for (unsigned i = 0; i < MIN(limit, 5u); i++)
                json_object_array_add(a, json_tokener_parse("{\"from\":\"BOOT\",\"to\":\"CHECKING\"}"));
        return a;
}

static int fake_drain(void *userdata, const char *reason, char **ret_message) {
        Fake *f = userdata;

        f->drain_calls++;
        free(f->drain_reason);
        f->drain_reason = reason ? strdup(reason) : NULL;
        if (f->broadcast_on_drain) {
                json_object *ev = json_tokener_parse("{\"from\":\"SERVING\",\"to\":\"MAINTENANCE\"}");
                control_server_broadcast(f->server, ev);
                json_object_put(ev);
        }
        return asprintf(ret_message, "draining: %s", reason ? reason : "(no reason)") < 0 ? -ENOMEM : 0;
}

static int fake_resume(void *userdata, char **ret_message) {
        Fake *f = userdata;

        f->resume_calls++;
        *ret_message = strdup("not in maintenance");
        return -EBUSY;
}

static int fake_reload(void *userdata, char **ret_message) {
        Fake *f = userdata;

        f->reload_calls++;
        *ret_message = strdup(f->reload_refuses ? "t.conf:3: [cpu] threshold: invalid percentage 'x'" : "reloaded t.conf");
        return f->reload_refuses ? -EINVAL : 0;
}

static const ControlHandlers fake_handlers = {
        .status = fake_status,
        .history = fake_history,
        .drain = fake_drain,
        .resume = fake_resume,
        .reload = fake_reload,
};

typedef struct Env {
        char dir[64];
        char path[100];
        sd_event *e;
        Fake fake;
        ControlServer *s;
} Env;

static int env_setup(void **state) {
        Env *env = calloc(1, sizeof *env);

        assert_non_null(env);
        snprintf(env->dir, sizeof env->dir, "/tmp/test-control-XXXXXX");
        assert_non_null(mkdtemp(env->dir));
        /* unprivileged test peers must reach the socket */
        assert_int_equal(chmod(env->dir, 0755), 0);
        snprintf(env->path, sizeof env->path, "%s/control.sock", env->dir);
        assert_int_equal(sd_event_new(&env->e), 0);
        *state = env;
        return 0;
}

static int env_teardown(void **state) {
        Env *env = *state;

        control_server_free(env->s);
        free(env->fake.drain_reason);
        sd_event_unref(env->e);
        (void) unlink(env->path);
        (void) rmdir(env->dir);
        free(env);
        return 0;
}

static void env_start(Env *env) {
        assert_int_equal(control_server_new(env->e, env->path, &fake_handlers, &env->fake, &env->s), 0);
        env->fake.server = env->s;
}

typedef struct Client {
        int fd;
        char buf[1 << 18];
        size_t len;
} Client;

static Client *client_connect(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        Client *c = calloc(1, sizeof *c);

        assert_non_null(c);
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
        c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        assert_true(c->fd >= 0);
        assert_int_equal(connect(c->fd, (struct sockaddr *) &sa, sizeof sa), 0);
        return c;
}

static void client_close(Client *c) {
        if (!c)
                return;
        if (c->fd >= 0)
                close(c->fd);
        free(c);
}

static void client_send(Client *c, const char *s) {
        size_t len = strlen(s);
        assert_int_equal(send(c->fd, s, len, MSG_NOSIGNAL), (ssize_t) len);
}

static uint64_t mono_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

/* Steps the loop and reads until a whole line arrives. Returns the line,
 * or NULL on EOF / reset / 3 s without one. */
static char *pump_line(Env *env, Client *c) {
        uint64_t end = mono_usec() + 3 * USEC_PER_SEC;

        while (mono_usec() < end) {
                char *nl = memchr(c->buf, '\n', c->len);
                ssize_t n;

                if (nl) {
                        size_t l = (size_t) (nl - c->buf);
                        char *line = strndup(c->buf, l);
                        memmove(c->buf, nl + 1, c->len - l - 1);
                        c->len -= l + 1;
                        return line;
                }
                assert_true(sd_event_run(env->e, 10 * USEC_PER_MSEC) >= 0);
                n = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, MSG_DONTWAIT);
                if (n == 0 || (n < 0 && errno != EAGAIN))
                        return NULL;
                if (n > 0)
                        c->len += (size_t) n;
        }
        return NULL;
}

/* True when the server closed the connection (EOF or reset) within 3 s. */
static bool pump_closed(Env *env, Client *c) {
        uint64_t end = mono_usec() + 3 * USEC_PER_SEC;

        while (mono_usec() < end) {
                static char b[1 << 16];
                ssize_t n;

                assert_true(sd_event_run(env->e, 10 * USEC_PER_MSEC) >= 0);
                n = recv(c->fd, b, sizeof b, MSG_DONTWAIT);
                if (n == 0 || (n < 0 && errno == ECONNRESET))
                        return true;
        }
        return false;
}

/* Runs the loop ~`ms` and says whether nothing at all arrived. */
static bool pump_quiet(Env *env, Client *c, unsigned ms) {
        uint64_t end = mono_usec() + ms * USEC_PER_MSEC;
        char b;

        while (mono_usec() < end)
                assert_true(sd_event_run(env->e, 10 * USEC_PER_MSEC) >= 0);
        return c->len == 0 && recv(c->fd, &b, 1, MSG_DONTWAIT | MSG_PEEK) < 0 && errno == EAGAIN;
}

static bool pump_n_clients(Env *env, unsigned n) {
        uint64_t end = mono_usec() + 3 * USEC_PER_SEC;

        while (mono_usec() < end) {
                if (control_server_n_clients(env->s) == n)
                        return true;
                assert_true(sd_event_run(env->e, 10 * USEC_PER_MSEC) >= 0);
        }
        return control_server_n_clients(env->s) == n;
}

static json_object *reply_json(char *line) {
        json_object *o;

        assert_non_null(line);
        o = json_tokener_parse(line);
        if (!o)
                fail_msg("reply is not JSON: %s", line);
        free(line);
        return o;
}

static const char *jstr(json_object *o, const char *key) {
        json_object *v;
        assert_true(json_object_object_get_ex(o, key, &v));
        return json_object_get_string(v);
}

static bool jbool(json_object *o, const char *key) {
        json_object *v;
        assert_true(json_object_object_get_ex(o, key, &v));
        assert_true(json_object_is_type(v, json_type_boolean));
        return json_object_get_boolean(v);
}

static void assert_error_reply(char *line, const char *error) {
        _cleanup_(json_putp) json_object *o = reply_json(line);

        assert_false(jbool(o, "ok"));
        if (!strstr(jstr(o, "error"), error))
                fail_msg("error \"%s\" does not contain \"%s\"", jstr(o, "error"), error);
}

#define STATUS_REQ "{\"version\":1,\"command\":\"status\"}\n"

static void test_server_status(void **state) {
        Env *env = *state;
        _cleanup_(json_putp) json_object *o = NULL;
        struct stat st;
        json_object *status;
        Client *c;

        env_start(env);
        assert_int_equal(stat(env->path, &st), 0);
        assert_true(S_ISSOCK(st.st_mode));
        assert_int_equal(st.st_mode & 07777, 0666);

        c = client_connect(env->path);
        client_send(c, STATUS_REQ);
        o = reply_json(pump_line(env, c));
        assert_int_equal(json_object_get_int(json_object_object_get(o, "version")), 1);
        assert_true(jbool(o, "ok"));
        assert_true(json_object_object_get_ex(o, "status", &status));
        assert_string_equal(jstr(status, "state"), "SERVING");
        assert_string_equal(jstr(status, "host"), "test-1");
        assert_int_equal(env->fake.status_calls, 1);
        assert_int_equal(control_server_n_clients(env->s), 1);

        /* a client that goes away is forgotten */
        client_close(c);
        assert_true(pump_n_clients(env, 0));
}

static json_object *fake_status_with_pool(void *userdata) {
        Fake *f = userdata;
        f->status_calls++;
        return json_tokener_parse("{\"host\":\"test-1\",\"state\":\"SERVING\",\"pool\":{\"configured\":true,"
                                  "\"name\":\"web\",\"members\":[]}}");
}

static json_object *fake_status_no_pool(void *userdata) {
        return json_tokener_parse("{\"host\":\"test-1\",\"pool\":{\"configured\":false}}");
}

static json_object *fake_pool(void *userdata) {
        return json_tokener_parse("{\"configured\":true,\"name\":\"api\",\"budget\":{\"max_unavailable\":2}}");
}

static json_object *fake_pool_none(void *userdata) {
        return NULL;
}

/* One "pool" exchange against a server with these handlers; returns the reply. */
static json_object *pool_exchange(Env *env, const ControlHandlers *h) {
        json_object *o;
        Client *c;

        control_server_free(env->s);
        assert_int_equal(control_server_new(env->e, env->path, h, &env->fake, &env->s), 0);
        c = client_connect(env->path);
        client_send(c, "{\"version\":1,\"command\":\"pool\"}\n");
        o = reply_json(pump_line(env, c));
        client_close(c);
        return o;
}

static void test_server_pool(void **state) {
        Env *env = *state;
        json_object *o, *pool;

        /* read-only: not mutating, anyone may ask */
        assert_false(control_command_is_mutating(CONTROL_POOL));
        assert_int_equal(control_command_from_string("pool"), CONTROL_POOL);

        /* a pool handler answers */
        o = pool_exchange(env, &(ControlHandlers) { .status = fake_status, .pool = fake_pool });
        assert_true(jbool(o, "ok"));
        assert_true(json_object_object_get_ex(o, "pool", &pool));
        assert_string_equal(jstr(pool, "name"), "api");
        json_object_put(o);

        /* ... or says there is none */
        o = pool_exchange(env, &(ControlHandlers) { .status = fake_status, .pool = fake_pool_none });
        assert_false(jbool(o, "ok"));
        assert_string_equal(jstr(o, "error"), "no [pool] configured");
        json_object_put(o);

        /* without a pool handler, the status' pool object is the answer */
        o = pool_exchange(env, &(ControlHandlers) { .status = fake_status_with_pool });
        assert_true(jbool(o, "ok"));
        assert_true(json_object_object_get_ex(o, "pool", &pool));
        assert_string_equal(jstr(pool, "name"), "web");
        json_object_put(o);
        o = pool_exchange(env, &(ControlHandlers) { .status = fake_status_no_pool });
        assert_false(jbool(o, "ok"));
        assert_string_equal(jstr(o, "error"), "no [pool] configured");
        json_object_put(o);
        o = pool_exchange(env, &fake_handlers); /* a status without "pool" at all */
        assert_false(jbool(o, "ok"));
        assert_string_equal(jstr(o, "error"), "no [pool] configured");
        json_object_put(o);
}

static json_object *fake_incidents(void *userdata, char **ret_message) {
        return json_tokener_parse("{\"dir\":\"/x\",\"incidents\":[]}");
}

static json_object *fake_stats(void *userdata) {
        return json_tokener_parse("{\"checks\":{}}");
}

static json_object *fake_incident(void *userdata, const char *id, char **ret_message) {
        return json_tokener_parse("{\"id\":\"x\",\"dir\":\"/x/x\"}");
}

/* A deferred handler refusing at once: its words prove the row reached it. */
static int fake_deferred(void *userdata, uint64_t ticket, const char *text, char **ret_message) {
        *ret_message = strdup("fake: not now");
        return -EBUSY;
}

/* Every row of the protocol's table is served, and its reply has the
 * row's shape under the row's key. */
static int fake_budget(void *userdata, uint64_t ticket, const ControlRequest *req, const ControlPeer *peer,
                       char **ret_message) {
        return fake_deferred(userdata, ticket, NULL, ret_message);
}

static void test_server_every_command(void **state) {
        static const ControlHandlers all = {
                .pool_budget = fake_budget,
                .status = fake_status,
                .history = fake_history,
                .drain = fake_drain,
                .resume = fake_reload, /* answers with a message */
                .pool = fake_pool,
                .test_alert = fake_deferred,
                .test_reboot = fake_deferred,
                .check = fake_deferred,
                .incidents = fake_incidents,
                .incident = fake_incident,
                .reload = fake_reload,
                .stats = fake_stats,
        };
        Env *env = *state;

        assert_int_equal(control_server_new(env->e, env->path, &all, &env->fake, &env->s), 0);
        env->fake.server = env->s;
        for (ControlCommand cmd = 0; cmd < _CONTROL_COMMAND_MAX; cmd++) {
                const ControlCommandInfo *info = control_command_info(cmd);
                ControlRequest req = { .version = CONTROL_PROTOCOL_VERSION, .command = cmd,
                                       .id = (info->required & CONTROL_ARG_ID) ? (char *) "x" : NULL };
                _cleanup_(freep) char *line = NULL, *framed = NULL;
                _cleanup_(json_putp) json_object *o = NULL;
                json_object *v;
                Client *c;

                assert_int_equal(control_request_format(&req, &line), 0);
                assert_true(asprintf(&framed, "%s\n", line) > 0);
                c = client_connect(env->path);
                client_send(c, framed);
                o = reply_json(pump_line(env, c));
                if (info->reply == CONTROL_REPLY_RESULT) {
                        assert_false(jbool(o, "ok"));
                        assert_string_equal(jstr(o, "error"), "fake: not now");
                } else {
                        if (!jbool(o, "ok"))
                                fail_msg("%s: %s", info->name, jstr(o, "error"));
                        assert_true(json_object_object_get_ex(o, info->reply_key, &v));
                        assert_true(json_object_is_type(v, info->reply == CONTROL_REPLY_OBJECT  ? json_type_object
                                                           : info->reply == CONTROL_REPLY_ARRAY ? json_type_array
                                                           : info->reply == CONTROL_REPLY_STREAM
                                                                   ? json_type_boolean
                                                                   : json_type_string));
                }
                client_close(c);
        }
}

static void test_server_several_requests(void **state) {
        Env *env = *state;
        _cleanup_(json_putp) json_object *a = NULL, *b = NULL, *d = NULL, *h = NULL;
        json_object *history;
        Client *c;

        env_start(env);
        c = client_connect(env->path);
        /* two in one write, then one split over two writes with CRLF */
        client_send(c, STATUS_REQ "{\"version\":1,\"command\":\"history\",\"limit\":3}\n");
        a = reply_json(pump_line(env, c));
        assert_true(json_object_object_get_ex(a, "status", NULL));
        b = reply_json(pump_line(env, c));
        assert_true(json_object_object_get_ex(b, "history", &history));
        assert_int_equal(json_object_array_length(history), 3);
        assert_int_equal(env->fake.history_limit, 3);

        client_send(c, "{\"version\":1,\"comm");
        assert_true(pump_quiet(env, c, 50));
        client_send(c, "and\":\"history\"}\r\n");
        d = reply_json(pump_line(env, c));
        assert_true(jbool(d, "ok"));
        assert_int_equal(env->fake.history_limit, 20); /* the default */

        /* a bad line gets an error and the connection stays usable */
        client_send(c, "this is not json\n\n{\"version\":2,\"command\":\"status\"}\n");
        assert_error_reply(pump_line(env, c), "not JSON");
        assert_error_reply(pump_line(env, c), "unsupported version 2");
        client_send(c, "{\"version\":1,\"command\":\"nope\"}\n" STATUS_REQ);
        assert_error_reply(pump_line(env, c), "unknown command \"nope\"");
        h = reply_json(pump_line(env, c));
        assert_true(jbool(h, "ok"));
        assert_int_equal(env->fake.status_calls, 2);
        assert_int_equal(control_server_n_clients(env->s), 1);
        client_close(c);
}

static void test_server_half_close(void **state) {
        Env *env = *state;
        _cleanup_(json_putp) json_object *a = NULL, *b = NULL;
        Client *c;

        env_start(env);
        /* `printf REQ | nc -U`: last request without newline, then EOF */
        c = client_connect(env->path);
        client_send(c, STATUS_REQ "{\"version\":1,\"command\":\"history\"}");
        assert_int_equal(shutdown(c->fd, SHUT_WR), 0);
        a = reply_json(pump_line(env, c));
        assert_true(json_object_object_get_ex(a, "status", NULL));
        b = reply_json(pump_line(env, c));
        assert_true(json_object_object_get_ex(b, "history", NULL));
        assert_true(pump_closed(env, c));
        assert_true(pump_n_clients(env, 0));
        client_close(c);
}

static void test_server_oversize(void **state) {
        Env *env = *state;
        _cleanup_(json_putp) json_object *ok = NULL;
        char *big = malloc(CONTROL_REQUEST_MAX + 200);
        Client *c;

        assert_non_null(big);
        env_start(env);

        /* exactly CONTROL_REQUEST_MAX bytes before the newline: accepted */
        c = client_connect(env->path);
        memset(big, ' ', CONTROL_REQUEST_MAX);
        memcpy(big, STATUS_REQ, strlen(STATUS_REQ) - 1);
        big[CONTROL_REQUEST_MAX] = '\n';
        big[CONTROL_REQUEST_MAX + 1] = '\0';
        client_send(c, big);
        ok = reply_json(pump_line(env, c));
        assert_true(jbool(ok, "ok"));

        /* one byte more: an error, then the server hangs up */
        memset(big, 'a', CONTROL_REQUEST_MAX + 1);
        big[CONTROL_REQUEST_MAX + 1] = '\n';
        big[CONTROL_REQUEST_MAX + 2] = '\0';
        client_send(c, big);
        assert_error_reply(pump_line(env, c), "request too large (max 4096 bytes)");
        assert_true(pump_closed(env, c));
        assert_true(pump_n_clients(env, 0));
        assert_int_equal(env->fake.status_calls, 1);
        client_close(c);
        free(big);
}

static void test_server_too_many_clients(void **state) {
        Env *env = *state;
        _cleanup_(json_putp) json_object *o = NULL;
        Client *cs[CONTROL_CLIENTS_MAX], *extra, *later;

        env_start(env);
        for (unsigned i = 0; i < CONTROL_CLIENTS_MAX; i++)
                cs[i] = client_connect(env->path);
        assert_true(pump_n_clients(env, CONTROL_CLIENTS_MAX));

        extra = client_connect(env->path);
        assert_error_reply(pump_line(env, extra), "too many clients");
        assert_true(pump_closed(env, extra));
        assert_int_equal(control_server_n_clients(env->s), CONTROL_CLIENTS_MAX);
        client_close(extra);

        /* the ones inside still work */
        client_send(cs[CONTROL_CLIENTS_MAX - 1], STATUS_REQ);
        o = reply_json(pump_line(env, cs[CONTROL_CLIENTS_MAX - 1]));
        assert_true(jbool(o, "ok"));

        /* room again once one leaves */
        client_close(cs[0]);
        assert_true(pump_n_clients(env, CONTROL_CLIENTS_MAX - 1));
        later = client_connect(env->path);
        assert_true(pump_n_clients(env, CONTROL_CLIENTS_MAX));
        assert_true(pump_quiet(env, later, 50)); /* no "too many clients" for it */
        client_close(later);
        for (unsigned i = 1; i < CONTROL_CLIENTS_MAX; i++)
                client_close(cs[i]);
        assert_true(pump_n_clients(env, 0));
}

static void test_server_watch(void **state) {
        Env *env = *state;
        _cleanup_(json_putp) json_object *ack = NULL, *e1 = NULL, *e2 = NULL, *st = NULL, *ev = NULL;
        json_object *inner;
        Client *w, *other;

        env_start(env);
        w = client_connect(env->path);
        other = client_connect(env->path);

        client_send(w, "{\"version\":1,\"command\":\"watch\"}\n");
        ack = reply_json(pump_line(env, w));
        assert_true(jbool(ack, "ok"));
        assert_true(jbool(ack, "watching"));

        client_send(other, STATUS_REQ);
        st = reply_json(pump_line(env, other));

        ev = json_tokener_parse("{\"at\":\"2026-11-22T17:00:00Z\",\"from\":\"SERVING\",\"to\":\"OVERLOADED\","
                                "\"event\":\"breach\",\"reason\":\"cpu / 97%\"}");
        control_server_broadcast(env->s, ev);
        json_object_object_add(ev, "seq", json_object_new_int(2));
        control_server_broadcast(env->s, ev);

        e1 = reply_json(pump_line(env, w));
        assert_int_equal(json_object_get_int(json_object_object_get(e1, "version")), 1);
        assert_true(json_object_object_get_ex(e1, "event", &inner));
        assert_string_equal(jstr(inner, "to"), "OVERLOADED");
        assert_string_equal(jstr(inner, "reason"), "cpu / 97%");
        assert_false(json_object_object_get_ex(inner, "seq", NULL));
        e2 = reply_json(pump_line(env, w));
        assert_true(json_object_object_get_ex(e2, "event", &inner));
        assert_int_equal(json_object_get_int(json_object_object_get(inner, "seq")), 2);

        /* only watchers hear events */
        assert_true(pump_quiet(env, other, 50));

        /* a watcher may still ask questions on the same connection */
        client_send(w, STATUS_REQ);
        json_object_put(reply_json(pump_line(env, w)));

        /* a watcher that half-closes keeps receiving */
        assert_int_equal(shutdown(w->fd, SHUT_WR), 0);
        assert_true(pump_quiet(env, w, 50));
        control_server_broadcast(env->s, ev);
        json_object_put(reply_json(pump_line(env, w)));

        client_close(w);
        client_close(other);
        assert_true(pump_n_clients(env, 0));
        /* nobody left: broadcasting is a no-op */
        control_server_broadcast(env->s, ev);
}

static void test_server_slow_watcher_dropped(void **state) {
        Env *env = *state;
        _cleanup_(json_putp) json_object *ev = NULL;
        char *blob = malloc(32 * 1024);
        Client *slow, *fast;

        assert_non_null(blob);
        env_start(env);
        slow = client_connect(env->path);
        fast = client_connect(env->path);
        client_send(slow, "{\"version\":1,\"command\":\"watch\"}\n");
        json_object_put(reply_json(pump_line(env, slow)));
        client_send(fast, "{\"version\":1,\"command\":\"watch\"}\n");
        json_object_put(reply_json(pump_line(env, fast)));

        memset(blob, 'x', 32 * 1024 - 1);
        blob[32 * 1024 - 1] = '\0';
        ev = json_object_new_object();
        json_object_object_add(ev, "blob", json_object_new_string(blob));

        /* the slow one never reads: socket buffer, then ours, then it is gone */
        for (unsigned i = 0; i < 40 && control_server_n_clients(env->s) == 2; i++) {
                control_server_broadcast(env->s, ev);
                /* the fast one keeps up */
                json_object_put(reply_json(pump_line(env, fast)));
        }
        assert_true(pump_n_clients(env, 1));
        /* what the kernel already held arrives, then the end */
        assert_true(pump_closed(env, slow));

        /* the fast one survived and still gets events */
        control_server_broadcast(env->s, ev);
        json_object_put(reply_json(pump_line(env, fast)));

        client_close(slow);
        client_close(fast);
        free(blob);
}

static void test_server_drain_privileged(void **state) {
        Env *env = *state;
        _cleanup_(json_putp) json_object *d = NULL, *d2 = NULL, *ack = NULL, *ev = NULL, *dr = NULL;
        Client *c;

        env_start(env);
        c = client_connect(env->path);
        /* we are root or the server's own uid: privileged */
        client_send(c, "{\"version\":1,\"command\":\"drain\",\"reason\":\"kernel upgrade\"}\n");
        d = reply_json(pump_line(env, c));
        assert_true(jbool(d, "ok"));
        assert_string_equal(jstr(d, "message"), "draining: kernel upgrade");
        assert_int_equal(env->fake.drain_calls, 1);
        assert_string_equal(env->fake.drain_reason, "kernel upgrade");

        client_send(c, "{\"version\":1,\"command\":\"drain\"}\n");
        d2 = reply_json(pump_line(env, c));
        assert_string_equal(jstr(d2, "message"), "draining: (no reason)");
        assert_null(env->fake.drain_reason);

        /* the handler's failure message becomes the error */
        client_send(c, "{\"version\":1,\"command\":\"resume\"}\n");
        assert_error_reply(pump_line(env, c), "not in maintenance");
        assert_int_equal(env->fake.resume_calls, 1);

        /* a handler that broadcasts while answering its own watcher: no reentrancy trouble */
        env->fake.broadcast_on_drain = true;
        client_send(c, "{\"version\":1,\"command\":\"watch\"}\n{\"version\":1,\"command\":\"drain\"}\n");
        ack = reply_json(pump_line(env, c));
        assert_true(jbool(ack, "watching"));
        ev = reply_json(pump_line(env, c));
        assert_true(json_object_object_get_ex(ev, "event", NULL));
        dr = reply_json(pump_line(env, c));
        assert_true(jbool(dr, "ok"));
        client_close(c);
}

/* Credentials are taken at connect(): the child drops to nobody first. */
static int unprivileged_child(const char *path) {
        char buf[4096];
        size_t len = 0;
        const char *req = "{\"version\":1,\"command\":\"drain\",\"reason\":\"x\"}\n";
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd;

        if (setgroups(0, NULL) < 0 || setresgid(65534, 65534, 65534) < 0 || setresuid(65534, 65534, 65534) < 0)
                return 10;
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0)
                return 11;
        if (send(fd, req, strlen(req), MSG_NOSIGNAL) != (ssize_t) strlen(req))
                return 12;
        /* then a status, which anyone may ask for */
        if (send(fd, STATUS_REQ, strlen(STATUS_REQ), MSG_NOSIGNAL) != (ssize_t) strlen(STATUS_REQ))
                return 12;
        for (;;) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                char *nl;
                ssize_t n;

                if (poll(&p, 1, 5000) <= 0)
                        return 13;
                n = recv(fd, buf + len, sizeof buf - 1 - len, 0);
                if (n <= 0)
                        return 14;
                len += (size_t) n;
                buf[len] = '\0';
                nl = strchr(buf, '\n');
                if (nl && strchr(nl + 1, '\n'))
                        break;
        }
        if (!strstr(buf, "{\"version\":1,\"ok\":false,\"error\":"
                         "\"permission denied: 'drain' is for root; you are uid 65534. Run it with sudo, or have the "
                         "admin grant a group with [agent] control_group in the agent's config\"}\n"))
                return 15;
        if (!strstr(strchr(buf, '\n') + 1, "\"ok\":true,\"status\":"))
                return 16;
        return 0;
}

/* Runs the server's loop until the forked child exits (10 s at most);
 * returns its exit status, killing it if it hangs. */
static int pump_until_child_exits(Env *env, pid_t pid, const char *what) {
        uint64_t end = mono_usec() + 10 * USEC_PER_SEC;
        int status = -1;

        while (mono_usec() < end) {
                pid_t r = waitpid(pid, &status, WNOHANG);
                assert_true(r >= 0);
                if (r == pid)
                        break;
                assert_true(sd_event_run(env->e, 10 * USEC_PER_MSEC) >= 0);
        }
        if (!WIFEXITED(status)) {
                kill(pid, SIGKILL);
                (void) waitpid(pid, &status, 0);
                fail_msg("%s did not finish", what);
        }
        return WEXITSTATUS(status);
}

static void test_server_drain_refused(void **state) {
        Env *env = *state;
        pid_t pid;
        int status = -1;

        if (geteuid() != 0)
                skip();
        env_start(env);

        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
                _exit(unprivileged_child(env->path));

        status = pump_until_child_exits(env, pid, "unprivileged child");
        if (status != 0)
                fail_msg("unprivileged child failed at step %d", status);
        assert_int_equal(env->fake.drain_calls, 0);
        assert_int_equal(env->fake.status_calls, 1);
}

/* A peer with these credentials (taken at connect()) sends `req` and
 * the first reply line must contain `want`. Runs in a forked child: no
 * cmocka here, the exit status says which step failed. */
static int peer_child(const char *path, uid_t uid, gid_t gid, const gid_t *groups, size_t n_groups, const char *req,
                      const char *want) {
        char buf[4096];
        size_t len = 0;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd;

        if (setgroups(n_groups, groups) < 0 || setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0)
                return 10;
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0)
                return 11;
        /* A server that refuses us ("too many clients") may have written its
         * answer and hung up before we send: the answer is still there to
         * read, so a send that finds the peer gone is not the end. */
        if (send(fd, req, strlen(req), MSG_NOSIGNAL) != (ssize_t) strlen(req) && errno != EPIPE &&
            errno != ECONNRESET)
                return 12;
        while (!memchr(buf, '\n', len)) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                ssize_t n;

                if (poll(&p, 1, 5000) <= 0)
                        return 13;
                n = recv(fd, buf + len, sizeof buf - 1 - len, 0);
                if (n <= 0)
                        return 14;
                len += (size_t) n;
                buf[len] = '\0';
        }
        if (!strstr(buf, want)) {
                fprintf(stderr, "peer_child: reply %s does not contain %s\n", buf, want);
                return 15;
        }
        return 0;
}

/* Forks a peer_child and runs the loop until it is done. */
static void run_peer(Env *env, uid_t uid, gid_t gid, const gid_t *groups, size_t n_groups, const char *req,
                     const char *want) {
        pid_t pid;
        int status = -1;

        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
                _exit(peer_child(env->path, uid, gid, groups, n_groups, req, want));
        status = pump_until_child_exits(env, pid, "peer child");
        if (status != 0)
                fail_msg("peer child (uid %u gid %u, %zu groups) failed at step %d, wanted %s", (unsigned) uid,
                         (unsigned) gid, n_groups, status, want);
}

static void test_access_check(void **state) {
        const gid_t groups[] = { 100, 4242, 27 };
        ControlAccess none = { .owner = 1000 };
        ControlAccess grp = { .owner = 1000, .have_group = true, .group = 4242, .group_name = "monkeyops" };
        ControlAccess root_owner = { .owner = 0, .have_group = true, .group = 4242 };

        /* root always, the agent's own uid always */
        assert_int_equal(control_access_check(0, 0, NULL, 0, &none), CONTROL_GRANT_ROOT);
        assert_int_equal(control_access_check(0, 65534, NULL, 0, NULL), CONTROL_GRANT_ROOT);
        assert_int_equal(control_access_check(1000, 1000, NULL, 0, &none), CONTROL_GRANT_OWNER);
        /* no group configured: nobody else, whatever groups they have */
        assert_int_equal(control_access_check(65534, 4242, groups, 3, &none), CONTROL_GRANT_DENIED);
        assert_int_equal(control_access_check(65534, 65534, NULL, 0, NULL), CONTROL_GRANT_DENIED);
        /* the group: as primary gid, or among the supplementary groups */
        assert_int_equal(control_access_check(65534, 4242, NULL, 0, &grp), CONTROL_GRANT_GROUP);
        assert_int_equal(control_access_check(65534, 65534, groups, 3, &grp), CONTROL_GRANT_GROUP);
        assert_int_equal(control_access_check(65534, 65534, groups, 1, &grp), CONTROL_GRANT_DENIED);
        assert_int_equal(control_access_check(65534, 65534, NULL, 3, &grp), CONTROL_GRANT_DENIED);
        assert_int_equal(control_access_check(65534, 65534, NULL, 0, &grp), CONTROL_GRANT_DENIED);
        /* the owner's group alone is not the owner */
        assert_int_equal(control_access_check(1001, 1000, NULL, 0, &none), CONTROL_GRANT_DENIED);
        /* group 0 configured: members of root's group only, not "everyone with gid 0 unset" */
        assert_int_equal(control_access_check(65534, 65534, NULL, 0, &root_owner), CONTROL_GRANT_DENIED);
        assert_int_equal(control_access_check(1000, 1000, NULL, 0, &root_owner), CONTROL_GRANT_DENIED);

        assert_string_equal(control_grant_to_string(CONTROL_GRANT_GROUP), "group");
        assert_null(control_grant_to_string(_CONTROL_GRANT_MAX));
}

static void test_access_denied_message(void **state) {
        ControlAccess none = { .owner = 0 };
        ControlAccess own = { .owner = 998 };
        ControlAccess grp = { .owner = 998, .have_group = true, .group = 4242, .group_name = "monkeyops" };
        ControlAccess num = { .owner = 0, .have_group = true, .group = 4242 };
        char *m;

        m = control_access_denied_message("drain", true, 1001, &none);
        assert_string_equal(m, "permission denied: 'drain' is for root; you are uid 1001. Run it with sudo, or have "
                               "the admin grant a group with [agent] control_group in the agent's config");
        free(m);
        m = control_access_denied_message("resume", true, 1001, &own);
        assert_string_equal(m, "permission denied: 'resume' is for root, uid 998 (the agent's); you are uid 1001. Run it "
                               "with sudo, or have the admin grant a group with [agent] control_group in the agent's "
                               "config");
        free(m);
        m = control_access_denied_message("test-reboot", true, 1001, &grp);
        assert_string_equal(m, "permission denied: 'test-reboot' is for root, uid 998 (the agent's) or members of group "
                               "'monkeyops'; you are uid 1001. Run it with sudo, or ask an admin to add you to group "
                               "'monkeyops' (it counts from your next login)");
        free(m);
        m = control_access_denied_message("drain", false, 0, &num);
        assert_string_equal(m, "permission denied: 'drain' is for root or members of gid 4242; your credentials are "
                               "unknown. Run it with sudo, or ask an admin to add you to gid 4242 (it counts from your "
                               "next login)");
        free(m);
}

#define DRAIN_REQ "{\"version\":1,\"command\":\"drain\",\"reason\":\"x\"}\n"

static void test_server_group_access(void **state) {
        Env *env = *state;
        const gid_t with[] = { 100, 4242 }, without[] = { 100 };

        if (geteuid() != 0)
                skip();
        env_start(env);

        /* no group: the uid alone decides */
        run_peer(env, 65534, 4242, with, 2, DRAIN_REQ, "permission denied: 'drain' is for root; you are uid 65534");
        assert_int_equal(env->fake.drain_calls, 0);

        assert_int_equal(control_server_set_group(env->s, true, 4242, "monkeyops"), 0);
        run_peer(env, 65534, 65534, NULL, 0, DRAIN_REQ,
                 "permission denied: 'drain' is for root or members of group 'monkeyops'; you are uid 65534");
        run_peer(env, 65534, 65534, without, 1, DRAIN_REQ, "ask an admin to add you to group 'monkeyops'");
        assert_int_equal(env->fake.drain_calls, 0);
        /* primary gid (SO_PEERCRED) */
        run_peer(env, 65534, 4242, NULL, 0, DRAIN_REQ, "\"ok\":true,\"message\":\"draining: x\"");
        assert_int_equal(env->fake.drain_calls, 1);
        /* a supplementary group (SO_PEERGROUPS) */
        run_peer(env, 65534, 65534, with, 2, DRAIN_REQ, "\"ok\":true,\"message\":\"draining: x\"");
        assert_int_equal(env->fake.drain_calls, 2);
        /* reading stays open to all */
        run_peer(env, 65534, 65534, NULL, 0, STATUS_REQ, "\"ok\":true,\"status\":");

        /* numeric, no name; then the group taken away again */
        assert_int_equal(control_server_set_group(env->s, true, 4242, NULL), 0);
        run_peer(env, 65534, 65534, NULL, 0, DRAIN_REQ, "members of gid 4242");
        run_peer(env, 65534, 65534, with, 2, DRAIN_REQ, "\"ok\":true");
        assert_int_equal(control_server_set_group(env->s, false, 0, "ignored"), 0);
        run_peer(env, 65534, 65534, with, 2, DRAIN_REQ, "with [agent] control_group");
        assert_int_equal(env->fake.drain_calls, 3);
        assert_int_equal(control_server_set_group(NULL, true, 1, NULL), -EINVAL);

        /* from a config, as main() and a reload do */
        {
                Config *c = NULL;
                char *err = NULL;

                assert_int_equal(config_parse_string("[agent]\ncontrol_group = 4242\n", "t.conf", &c, &err), 0);
                assert_int_equal(control_server_apply_config(env->s, c), 0);
                run_peer(env, 65534, 4242, NULL, 0, DRAIN_REQ, "\"ok\":true");
                run_peer(env, 65534, 65534, NULL, 0, DRAIN_REQ, "members of gid 4242;");
                config_free(c);
                /* a name config_load() resolved */
                assert_int_equal(config_parse_string("[agent]\ncontrol_group = monkeyops\n", "t.conf", &c, &err), 0);
                c->agent.control_gid = 4242;
                c->agent.control_gid_set = true;
                assert_int_equal(control_server_apply_config(env->s, c), 0);
                run_peer(env, 65534, 65534, NULL, 0, DRAIN_REQ, "members of group 'monkeyops';");
                config_free(c);
                /* and taken away by a config without it */
                assert_int_equal(config_parse_string("[agent]\n", "t.conf", &c, &err), 0);
                assert_int_equal(control_server_apply_config(env->s, c), 0);
                run_peer(env, 65534, 4242, NULL, 0, DRAIN_REQ, "with [agent] control_group");
                config_free(c);
                assert_int_equal(control_server_apply_config(env->s, NULL), -EINVAL);
        }
        assert_int_equal(env->fake.drain_calls, 4);
}

#define RELOAD_REQ "{\"version\":1,\"command\":\"reload\"}\n"

/* reload: the verdict comes back as the reply (ok, or the file's
 * FILE:LINE as the error), and only root or the agent's uid may ask: the
 * control group may drain, not change what runs as root. */
static void test_server_reload(void **state) {
        Env *env = *state;
        const gid_t with[] = { 4242 };
        _cleanup_(json_putp) json_object *ok = NULL;
        Client *c;

        env_start(env);
        c = client_connect(env->path); /* root, or the server's own uid */
        client_send(c, RELOAD_REQ);
        ok = reply_json(pump_line(env, c));
        assert_true(jbool(ok, "ok"));
        assert_string_equal(jstr(ok, "message"), "reloaded t.conf");
        env->fake.reload_refuses = true;
        client_send(c, RELOAD_REQ);
        assert_error_reply(pump_line(env, c), "t.conf:3: [cpu] threshold: invalid percentage 'x'");
        assert_int_equal(env->fake.reload_calls, 2);
        client_close(c);

        if (geteuid() != 0)
                return; /* the rest needs to become someone else */
        assert_int_equal(control_server_set_group(env->s, true, 4242, "monkeyops"), 0);
        run_peer(env, 65534, 65534, NULL, 0, RELOAD_REQ,
                 "permission denied: 'reload' is for root only, not for [agent] control_group; you are uid 65534");
        /* a member of the group: may drain, may not reload */
        run_peer(env, 65534, 65534, with, 1, RELOAD_REQ, "'reload' is for root only");
        run_peer(env, 65534, 4242, NULL, 0, RELOAD_REQ, "'reload' is for root only");
        run_peer(env, 65534, 65534, with, 1, DRAIN_REQ, "\"ok\":true");
        assert_int_equal(env->fake.reload_calls, 2);
}

/* A child that drops to nobody, opens n connections and holds them until
 * its stdin (a pipe) closes. */
static pid_t hold_connections(const char *path, unsigned n, int *ret_release) {
        int p[2];
        pid_t pid;

        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                struct sockaddr_un sa = { .sun_family = AF_UNIX };
                char b;

                close(p[1]);
                if (setgroups(0, NULL) < 0 || setresgid(65534, 65534, 65534) < 0 || setresuid(65534, 65534, 65534) < 0)
                        _exit(10);
                snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
                for (unsigned i = 0; i < n; i++) {
                        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
                        if (fd < 0 || connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0)
                                _exit(11);
                }
                (void) read(p[0], &b, 1);
                _exit(0);
        }
        close(p[0]);
        *ret_release = p[1];
        return pid;
}

static void test_server_reserved_slots(void **state) {
        Env *env = *state;
        Client *root[CONTROL_CLIENTS_RESERVED], *extra;
        int release, status;
        pid_t pid;

        if (geteuid() != 0)
                skip();
        env_start(env);

        /* an unprivileged user takes every slot it may have */
        pid = hold_connections(env->path, CONTROL_CLIENTS_MAX - CONTROL_CLIENTS_RESERVED, &release);
        assert_true(pump_n_clients(env, CONTROL_CLIENTS_MAX - CONTROL_CLIENTS_RESERVED));
        /* it gets no more */
        run_peer(env, 65534, 65534, NULL, 0, STATUS_REQ, "too many clients");
        assert_int_equal(control_server_n_clients(env->s), CONTROL_CLIENTS_MAX - CONTROL_CLIENTS_RESERVED);
        /* while root still gets in, and may drain */
        for (unsigned i = 0; i < CONTROL_CLIENTS_RESERVED; i++)
                root[i] = client_connect(env->path);
        assert_true(pump_n_clients(env, CONTROL_CLIENTS_MAX));
        client_send(root[0], DRAIN_REQ);
        {
                _cleanup_(json_putp) json_object *o = reply_json(pump_line(env, root[0]));
                assert_true(jbool(o, "ok"));
        }
        /* and when all are taken, nobody gets in */
        extra = client_connect(env->path);
        assert_error_reply(pump_line(env, extra), "too many clients");
        client_close(extra);

        close(release);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        assert_true(pump_n_clients(env, CONTROL_CLIENTS_RESERVED));
        for (unsigned i = 0; i < CONTROL_CLIENTS_RESERVED; i++)
                client_close(root[i]);
        assert_true(pump_n_clients(env, 0));
}

static void test_server_stale_socket(void **state) {
        Env *env = *state;
        _cleanup_(json_putp) json_object *o = NULL;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd;
        Client *c;

        /* a dead agent's leftover: bound, never listening, closed */
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", env->path);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof sa), 0);
        close(fd);
        assert_int_equal(access(env->path, F_OK), 0);

        env_start(env);
        c = client_connect(env->path);
        client_send(c, STATUS_REQ);
        o = reply_json(pump_line(env, c));
        assert_true(jbool(o, "ok"));
        client_close(c);
}

static void test_server_live_socket(void **state) {
        Env *env = *state;
        _cleanup_(json_putp) json_object *o = NULL;
        ControlServer *second = NULL;
        Client *c;

        env_start(env);
        assert_int_equal(control_server_new(env->e, env->path, &fake_handlers, &env->fake, &second), -EADDRINUSE);
        assert_null(second);

        /* the first one is untouched and still reachable */
        c = client_connect(env->path);
        client_send(c, STATUS_REQ);
        o = reply_json(pump_line(env, c));
        assert_true(jbool(o, "ok"));
        client_close(c);
}

static void test_server_bad_paths(void **state) {
        Env *env = *state;
        ControlServer *s = NULL;
        char longpath[200];
        int fd;

        memset(longpath, 'a', sizeof longpath - 1);
        longpath[0] = '/';
        longpath[sizeof longpath - 1] = '\0';
        assert_int_equal(control_server_new(env->e, longpath, &fake_handlers, NULL, &s), -ENAMETOOLONG);
        assert_int_equal(control_server_new(env->e, "", &fake_handlers, NULL, &s), -EINVAL);

        /* a regular file is never unlinked as if it were a stale socket */
        fd = open(env->path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        close(fd);
        assert_int_equal(control_server_new(env->e, env->path, &fake_handlers, NULL, &s), -EEXIST);
        assert_int_equal(access(env->path, F_OK), 0);
        assert_null(s);

        char missing[160];
        snprintf(missing, sizeof missing, "%s/no/such/dir/sock", env->dir);
        assert_int_equal(control_server_new(env->e, missing, &fake_handlers, NULL, &s), -ENOENT);
}

static void test_server_free(void **state) {
        Env *env = *state;
        Client *a, *w;

        env_start(env);
        a = client_connect(env->path);
        w = client_connect(env->path);
        client_send(w, "{\"version\":1,\"command\":\"watch\"}\n");
        json_object_put(reply_json(pump_line(env, w)));
        assert_int_equal(control_server_n_clients(env->s), 2);

        env->s = control_server_free(env->s);
        assert_null(env->s);
        assert_int_equal(access(env->path, F_OK), -1);
        assert_int_equal(errno, ENOENT);
        assert_true(pump_closed(env, a));
        assert_true(pump_closed(env, w));
        client_close(a);
        client_close(w);
        assert_null(control_server_free(NULL));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_command_table),
                cmocka_unit_test(test_command_rows),
                cmocka_unit_test(test_every_command_parses),
                cmocka_unit_test_setup_teardown(test_server_every_command, env_setup, env_teardown),
                cmocka_unit_test(test_status_verdict),
                cmocka_unit_test_setup_teardown(test_server_reload, env_setup, env_teardown),
                cmocka_unit_test(test_parse_good),
                cmocka_unit_test(test_parse_bad),
                cmocka_unit_test(test_format_round_trip),
                cmocka_unit_test(test_reply_builders),
                cmocka_unit_test_setup_teardown(test_server_status, env_setup, env_teardown),
                cmocka_unit_test_setup_teardown(test_server_pool, env_setup, env_teardown),
                cmocka_unit_test_setup_teardown(test_server_several_requests, env_setup, env_teardown),
                cmocka_unit_test_setup_teardown(test_server_half_close, env_setup, env_teardown),
                cmocka_unit_test_setup_teardown(test_server_oversize, env_setup, env_teardown),
                cmocka_unit_test_setup_teardown(test_server_too_many_clients, env_setup, env_teardown),
                cmocka_unit_test_setup_teardown(test_server_watch, env_setup, env_teardown),
                cmocka_unit_test_setup_teardown(test_server_slow_watcher_dropped, env_setup, env_teardown),
                cmocka_unit_test_setup_teardown(test_server_drain_privileged, env_setup, env_teardown),
                cmocka_unit_test_setup_teardown(test_server_drain_refused, env_setup, env_teardown),
                cmocka_unit_test(test_access_check),
                cmocka_unit_test(test_access_denied_message),
                cmocka_unit_test_setup_teardown(test_server_group_access, env_setup, env_teardown),
                cmocka_unit_test_setup_teardown(test_server_reserved_slots, env_setup, env_teardown),
                cmocka_unit_test_setup_teardown(test_server_stale_socket, env_setup, env_teardown),
                cmocka_unit_test_setup_teardown(test_server_live_socket, env_setup, env_teardown),
                cmocka_unit_test_setup_teardown(test_server_bad_paths, env_setup, env_teardown),
                cmocka_unit_test_setup_teardown(test_server_free, env_setup, env_teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
