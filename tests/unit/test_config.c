/* Config: every typed parser with good and bad input, every error kind with
 * its exact "path:line:" message, suggestions, defaults, enabled flags,
 * cross-field rules, secret file permissions, and the reference config. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <syslog.h>

#include "awsid.h"
#include "config.h"
#include "redisurl.h"
#include "parse.h"
#include "secret.h"
#include "testutil.h"

#define P "t.conf"

/* ---- helpers ---- */

static Config *parse_ok(const char *text) {
        Config *c = NULL;
        char *err = NULL;
        int r = config_parse_string(text, P, &c, &err);

        if (r < 0)
                print_error("unexpected error: %s\n", strna(err));
        assert_int_equal(r, 0);
        assert_null(err);
        assert_non_null(c);
        return c;
}

static void parse_fails(const char *text, const char *expected) {
        Config *c = NULL;
        char *err = NULL;
        int r = config_parse_string(text, P, &c, &err);

        assert_int_equal(r, -EINVAL);
        assert_null(c);
        assert_non_null(err);
        if (!streq(err, expected))
                print_error("input:\n%s\nexpected: %s\n     got: %s\n", text, expected, err);
        assert_string_equal(err, expected);
        assert_null(strchr(err, '\n')); /* one line */
        free(err);
}

#define POOL_OK "[pool]\nredis = redis://127.0.0.1:6379/0\nname = web\naddress = 127.0.0.2:8080\n"

/* ---- typed parsers ---- */

static void test_ladder_units(void **state) {
        Config *c = NULL;
        char *err = NULL;

        assert_int_equal(config_parse_string("[remedy]\nladder = restart-unit:app.service, restart-unit:worker@2.service,"
                                             " reboot-instance, local-reboot\nsettle = 30s\ngrace = 0\nbudget = none\n",
                                             "t.conf", &c, &err),
                         0);
        assert_null(err);
        assert_int_equal(c->remedy.ladder_len, 4);
        assert_int_equal(c->remedy.ladder[0], REMEDY_RESTART_UNIT);
        assert_string_equal(c->remedy.ladder_unit[0], "app.service");
        assert_int_equal(c->remedy.ladder[1], REMEDY_RESTART_UNIT);
        assert_string_equal(c->remedy.ladder_unit[1], "worker@2.service");
        assert_int_equal(c->remedy.ladder[2], REMEDY_REBOOT_INSTANCE);
        assert_null(c->remedy.ladder_unit[2]);
        assert_int_equal(c->remedy.ladder[3], REMEDY_LOCAL_REBOOT);
        assert_int_equal(c->remedy.settle, 30 * USEC_PER_SEC);
        assert_int_equal(c->remedy.grace, 0);
        assert_int_equal(c->remedy.reboot_timeout, 10 * USEC_PER_MINUTE);
        assert_int_equal(c->remedy.step_timeout, 120 * USEC_PER_SEC);
        config_free(c);
}

static void test_enum_strings(void **state) {
        for (RemedyStep s = 0; s < _REMEDY_STEP_MAX; s++)
                assert_int_equal(remedy_step_from_string(remedy_step_to_string(s)), s);
        assert_string_equal(remedy_step_to_string(REMEDY_RESTART_UNIT), "restart-unit");
        assert_string_equal(remedy_step_to_string(REMEDY_REBOOT_INSTANCE), "reboot-instance");
        assert_string_equal(remedy_step_to_string(REMEDY_LOCAL_REBOOT), "reboot-local");
        /* the old name still reads */
        assert_int_equal(remedy_step_from_string("local-reboot"), REMEDY_LOCAL_REBOOT);
        assert_null(remedy_step_to_string(_REMEDY_STEP_MAX));
        assert_null(remedy_step_to_string(_REMEDY_STEP_INVALID));
        assert_int_equal(remedy_step_from_string("reboot"), _REMEDY_STEP_INVALID);
        assert_int_equal(remedy_step_from_string(NULL), _REMEDY_STEP_INVALID);

        assert_string_equal(pool_on_unreachable_to_string(POOL_ON_UNREACHABLE_HOLD), "hold");
        assert_string_equal(pool_on_unreachable_to_string(POOL_ON_UNREACHABLE_REMEDIATE), "remediate");
        assert_null(pool_on_unreachable_to_string(_POOL_ON_UNREACHABLE_MAX));
        assert_int_equal(pool_on_unreachable_from_string("remediate"), POOL_ON_UNREACHABLE_REMEDIATE);
        assert_int_equal(pool_on_unreachable_from_string("reboot"), _POOL_ON_UNREACHABLE_INVALID);
}

/* ---- whole configs ---- */

static void test_defaults(void **state) {
        Config *c = parse_ok("");
        char host[256] = "";

        assert_int_equal(gethostname(host, sizeof host - 1), 0);
        assert_string_equal(c->path, P);
        assert_string_equal(c->agent.host, host);
        assert_string_equal(c->agent.state_dir, "/var/lib/monkeyd");
        assert_string_equal(c->agent.control_socket, "/run/monkeyd/control.sock");
        assert_string_equal(c->agent.proc_stat, "/proc/stat");
        assert_string_equal(c->agent.boot_id, "/proc/sys/kernel/random/boot_id");
        assert_int_equal(c->agent.log_level, LOG_INFO);
        assert_null(c->agent.control_group);
        assert_false(c->agent.control_gid_set);

        assert_true(c->cpu.threshold == 90.0);
        assert_int_equal(c->cpu.window, 60 * USEC_PER_SEC);
        assert_int_equal(c->cpu.interval, USEC_PER_SEC);
        assert_true(c->cpu.clear_below == 70.0);
        assert_int_equal(c->cpu.jitter, 0);

        assert_false(c->pool.enabled);
        assert_null(c->pool.redis);
        assert_null(c->pool.name);
        assert_int_equal(c->pool.min_serving, 1);
        assert_int_equal(c->pool.max_unavailable, 1);
        assert_int_equal(c->pool.drain, 10 * USEC_PER_SEC);
        assert_int_equal(c->pool.lease, 15 * USEC_PER_SEC);
        assert_int_equal(c->pool.heartbeat, 5 * USEC_PER_SEC);
        assert_int_equal(c->pool.on_unreachable, POOL_ON_UNREACHABLE_HOLD);
        assert_int_equal(c->pool.out_max, 30 * USEC_PER_MINUTE);

        assert_false(c->slack.enabled);
        assert_string_equal(c->slack.api_url, "https://slack.com/api");
        assert_null(c->slack.token);

        assert_false(c->aws.enabled);
        assert_string_equal(c->aws.imds_url, "http://169.254.169.254");
        assert_null(c->aws.region);

        assert_false(c->checks.enabled);
        assert_int_equal(c->checks.expect_status.n, 1);
        assert_true(status_set_contains(&c->checks.expect_status, 200));
        assert_true(status_set_contains(&c->checks.expect_status, 299));
        assert_false(status_set_contains(&c->checks.expect_status, 300));
        assert_int_equal(c->checks.attempts, 30);
        assert_int_equal(c->checks.timeout, 2 * USEC_PER_SEC);
        assert_int_equal(c->checks.every, 0);
        assert_int_equal(c->checks.rise, 2);
        assert_int_equal(c->checks.fall, 3);
        assert_null(c->checks.public_address);

        assert_false(c->remedy.enabled);
        assert_int_equal(c->remedy.ladder_len, 1);
        assert_int_equal(c->remedy.ladder[0], REMEDY_REBOOT_INSTANCE);
        assert_int_equal(c->remedy.max_per_window, 2);
        assert_int_equal(c->remedy.window, USEC_PER_HOUR);
        assert_false(c->remedy.dry_run);
        assert_null(c->remedy.unit);
        assert_int_equal(c->remedy.budget, REMEDY_BUDGET_POOL);

        /* nothing says where proxies connect: the wildcard, and no address to check it against */
        assert_false(c->proxy.enabled);
        assert_string_equal(c->proxy.agent_check_address, "0.0.0.0");
        assert_int_equal(c->proxy.agent_check_from, AGENT_CHECK_FROM_WILDCARD);
        assert_null(c->proxy.proxy_address);
        assert_int_equal(c->proxy.health_port, 0);
        assert_string_equal(c->proxy.health_address, "0.0.0.0");
        assert_int_equal(c->proxy.health_from, AGENT_CHECK_FROM_WILDCARD);
        assert_string_equal(c->proxy.health_path, "/");

        /* the summary is always written; the profile is opt-in */
        assert_int_equal(c->evidence.profile, 0);
        assert_int_equal(c->evidence.frequency, 99);
        assert_string_equal(c->evidence.perf, "/usr/bin/perf");
        assert_int_equal(c->evidence.keep, 20);
        assert_int_equal(c->evidence.max_bytes, 256 * 1024 * 1024);

        assert_null(config_free(c));
        assert_null(config_free(NULL));
}

static void test_full_and_enabled(void **state) {
        Config *c = parse_ok("; every section, most keys\n"
                             "[agent]\n"
                             "host = web-7\n"
                             "state_dir = /tmp/monkey\n"
                             "log_level = debug\n"
                             "[cpu]\n"
                             "threshold = 87.5%\n"
                             "window = 1m30s\n"
                             "interval = 500ms\n"
                             "clear_below = 60\n"
                             "jitter = 100ms\n"
                             POOL_OK
                             "min_serving = 2\n"
                             "max_unavailable = 3\n"
                             "list_key = monkey:{web}:list\n"
                             "lease = 3s\n"
                             "heartbeat = 1s\n"
                             "on_unreachable = remediate\n"
                             "out_max = 2h\n"
                             "[slack]\n"
                             "channel = #ops\n"
                             "token_file = /etc/monkeyd/slack-token\n"
                             "api_url = http://127.0.0.1:9999/api\n"
                             "[aws]\n"
                             "region = us-east-1\n"
                             "instance_id = i-0123456789abcdef0\n"
                             "endpoint_url = http://127.0.0.1:9998\n"
                             "[checks]\n"
                             "url = http://127.0.0.2:8080/health\n"
                             "expect_status = 200,204\n"
                             "expect_content = re:^ok$\n"
                             "every = 10s\n"
                             "[remedy]\n"
                             "ladder = restart-unit, local-reboot ,reboot-instance\n"
                             "unit = app.service\n"
                             "dry_run = yes\n"
                             "window = 2h\n"
                             "[proxy]\n"
                             "agent_check_port = 5555\n"
                             "agent_check_address = ::1\n");

        assert_string_equal(c->agent.host, "web-7");
        assert_string_equal(c->agent.state_dir, "/tmp/monkey");
        assert_int_equal(c->agent.log_level, LOG_DEBUG);
        assert_true(c->cpu.threshold == 87.5);
        assert_int_equal(c->cpu.window, 90 * USEC_PER_SEC);
        assert_int_equal(c->cpu.interval, 500 * USEC_PER_MSEC);
        assert_true(c->cpu.clear_below == 60.0);
        assert_int_equal(c->cpu.jitter, 100 * USEC_PER_MSEC);

        assert_true(c->pool.enabled);
        assert_string_equal(c->pool.redis, "redis://127.0.0.1:6379/0");
        assert_string_equal(c->pool.name, "web");
        assert_string_equal(c->pool.address, "127.0.0.2:8080");
        assert_int_equal(c->pool.min_serving, 2);
        assert_int_equal(c->pool.max_unavailable, 3);
        assert_string_equal(c->pool.list_key, "monkey:{web}:list");
        assert_int_equal(c->pool.lease, 3 * USEC_PER_SEC);
        assert_int_equal(c->pool.heartbeat, USEC_PER_SEC);
        assert_int_equal(c->pool.on_unreachable, POOL_ON_UNREACHABLE_REMEDIATE);
        assert_int_equal(c->pool.out_max, 2 * USEC_PER_HOUR);

        assert_true(c->slack.enabled);
        assert_string_equal(c->slack.channel, "#ops");
        assert_string_equal(c->slack.token_file, "/etc/monkeyd/slack-token");
        assert_string_equal(c->slack.api_url, "http://127.0.0.1:9999/api");

        assert_true(c->aws.enabled);
        assert_string_equal(c->aws.region, "us-east-1");
        assert_string_equal(c->aws.instance_id, "i-0123456789abcdef0");
        assert_string_equal(c->aws.endpoint_url, "http://127.0.0.1:9998");

        assert_true(c->checks.enabled);
        assert_string_equal(c->checks.url, "http://127.0.0.2:8080/health");
        assert_true(status_set_contains(&c->checks.expect_status, 204));
        assert_false(status_set_contains(&c->checks.expect_status, 201));
        assert_string_equal(c->checks.expect_content, "re:^ok$");
        assert_int_equal(c->checks.every, 10 * USEC_PER_SEC);
        /* Defaults to the pool address. */
        assert_string_equal(c->checks.public_address, "127.0.0.2:8080");

        assert_true(c->remedy.enabled);
        assert_int_equal(c->remedy.ladder_len, 3);
        assert_int_equal(c->remedy.ladder[0], REMEDY_RESTART_UNIT);
        assert_int_equal(c->remedy.ladder[1], REMEDY_LOCAL_REBOOT);
        assert_int_equal(c->remedy.ladder[2], REMEDY_REBOOT_INSTANCE);
        assert_string_equal(c->remedy.unit, "app.service");
        assert_null(c->remedy.ladder_unit[0]); /* a bare restart-unit: [remedy] unit */
        assert_true(c->remedy.dry_run);
        assert_int_equal(c->remedy.window, 2 * USEC_PER_HOUR);

        assert_true(c->proxy.enabled);
        assert_int_equal(c->proxy.agent_check_port, 5555);
        assert_string_equal(c->proxy.agent_check_address, "::1");
        assert_int_equal(c->proxy.agent_check_from, AGENT_CHECK_FROM_CONFIG);
        assert_string_equal(c->proxy.proxy_address, "127.0.0.2");
        /* no health_port: off, but its address derives as the agent-check's default would */
        assert_int_equal(c->proxy.health_port, 0);
        assert_string_equal(c->proxy.health_address, "127.0.0.2");
        assert_int_equal(c->proxy.health_from, AGENT_CHECK_FROM_POOL);
        config_free(c);

        /* A section with no keys still turns its integration on ([remedy]
         * without [pool] only with budget = none, see test_budget). */
        c = parse_ok("[aws]\n[remedy]\nbudget = none\n");
        assert_true(c->aws.enabled);
        assert_true(c->remedy.enabled);
        assert_false(c->pool.enabled);
        assert_false(c->slack.enabled);
        assert_false(c->checks.enabled);
        assert_false(c->proxy.enabled);
        config_free(c);

        c = parse_ok("[slack]\nwebhook_url = https://hooks.slack.com/services/T/B/X\n");
        assert_true(c->slack.enabled);
        assert_string_equal(c->slack.webhook_url, "https://hooks.slack.com/services/T/B/X");
        config_free(c);

        c = parse_ok("[slack]\nchannel = C0123\ntoken = xoxb-1-2\n");
        assert_string_equal(c->slack.token, "xoxb-1-2");
        config_free(c);

        c = parse_ok("[checks]\nurl = https://127.0.0.1/\npublic_address = [::1]:443\n");
        assert_string_equal(c->checks.public_address, "[::1]:443");
        config_free(c);

        c = parse_ok("[pool]\nredis = unix:///run/redis/redis.sock\nname = a.b_c-1\naddress = app.internal:80\n");
        assert_string_equal(c->pool.redis, "unix:///run/redis/redis.sock");
        config_free(c);
        /* "?db=N" after the socket path: checked by the grammar the pool
         * connects with (redisurl.h), not just "unix:// and something". */
        c = parse_ok("[pool]\nredis = unix:///run/redis.sock?db=2\nname = web\naddress = 127.0.0.2:8080\n");
        assert_string_equal(c->pool.redis, "unix:///run/redis.sock?db=2");
        config_free(c);

        /* Sentinel: one or more sentinels (port optional), a master name, a DB. */
        static const char *const sentinel_ok[] = {
                "sentinel://127.0.0.1:26379/mymaster",
                "sentinel://127.0.1.1:26379,127.0.1.2,[::1]:26380/my-master.1/3",
                "sentinel://monkey:pw@s1:26379,s2:26379/web",
        };
        for (size_t i = 0; i < ELEMENTSOF(sentinel_ok); i++) {
                char *text = NULL;
                assert_true(asprintf(&text, "[pool]\nredis = %s\nname = web\naddress = 127.0.0.2:80\n",
                                     sentinel_ok[i]) > 0);
                c = parse_ok(text);
                assert_string_equal(c->pool.redis, sentinel_ok[i]);
                config_free(c);
                free(text);
        }
}

static void test_syntax_variants(void **state) {
        /* Indented keys are keys (inih alone would take them for a
         * continuation of the previous value), CRLF, a BOM, ';' inline
         * comments, ':' as separator, blanks around '='. */
        Config *c = parse_ok("\xEF\xBB\xBF[cpu]\r\n"
                             "  threshold = 80 ; percent\r\n"
                             "\twindow=30s\r\n"
                             "interval: 2s\r\n"
                             "; comment\r\n"
                             "# comment\r\n"
                             "   # indented comment\r\n"
                             "\r\n"
                             "[remedy] ; trailing comment\n"
                             "dry_run = on");
        assert_true(c->cpu.threshold == 80.0);
        assert_int_equal(c->cpu.window, 30 * USEC_PER_SEC);
        assert_int_equal(c->cpu.interval, 2 * USEC_PER_SEC);
        assert_true(c->remedy.enabled);
        assert_true(c->remedy.dry_run);
        config_free(c);

        /* Exactly at the line limit is fine. */
        {
                char text[512];
                char path[200];
                Config *d;

                memset(path, 'a', sizeof path);
                path[0] = '/';
                path[198 - strlen("state_dir = ")] = '\0';
                snprintf(text, sizeof text, "[agent]\nstate_dir = %s\n", path);
                d = parse_ok(text);
                assert_string_equal(d->agent.state_dir, path);
                config_free(d);
        }
}

static void test_errors(void **state) {
        static const struct {
                const char *in;
                const char *err;
        } t[] = {
                /* unknown keys and sections, with and without a suggestion */
                { "[cpu]\ntreshold = 95\n", P ":2: unknown key 'treshold' in [cpu], did you mean 'threshold'?" },
                { "# x\n\n[pool]\nadress = 127.0.0.2:80\n",
                  P ":4: unknown key 'adress' in [pool], did you mean 'address'?" },
                { "[cpu]\nbananas = 1\n", P ":2: unknown key 'bananas' in [cpu]" },
                { "[pool]\nregion = x\n", P ":2: unknown key 'region' in [pool], it belongs in [aws]" },
                { "[agent]\n\n[cpuu]\n", P ":3: unknown section [cpuu], did you mean [cpu]?" },
                { "[agent]\n[database]\n", P ":2: unknown section [database]" },
                { "[ cpu ]\n", P ":1: unknown section [ cpu ], did you mean [cpu]?" },
                /* structure */
                { "[cpu]\nthreshold = 80\nthreshold = 85\n",
                  P ":3: duplicate key 'threshold' in [cpu] (first set at line 2)" },
                { "[cpu]\n[agent]\n[cpu]\n", P ":3: duplicate section [cpu] (first at line 1)" },
                { "\nthreshold = 80\n", P ":2: key 'threshold' outside of any section, put it under [cpu]" },
                { "foo = 1\n", P ":1: key 'foo' outside of any section" },
                { "window = 1s\n[cpu]\n", P ":1: key 'window' outside of any section" },
                { "[cpu]\nthreshold\n", P ":2: syntax error, expected [section], key = value or a comment" },
                { "[cpu\n", P ":1: missing ']' in section header" },
                { "[cpu] x\n", P ":1: unexpected text after [cpu]" },
                { "[cpu]\nthreshold =\n", P ":2: [cpu] threshold: empty value" },
                { "[cpu]\n= 5\n", P ":2: missing key name before '='" },
                { "[]\n", P ":1: unknown section []" },
                /* the first error in the file wins, whatever its kind */
                { "[cpu]\nbad line\nthreshold = 500\n", P ":2: syntax error, expected [section], key = value or a comment" },
                { "[cpu]\nthreshold = 500\nbad line\n", P ":2: [cpu] threshold: 500 is out of range (1-100)" },
                { "[cpu]\nthreshold = 500\n[nope]\n", P ":2: [cpu] threshold: 500 is out of range (1-100)" },
                /* values */
                { "# c\n\n[cpu]\nthreshold = 95\nwindow = abc\n",
                  P ":5: [cpu] window: invalid duration 'abc' (use e.g. 500ms, 30s, 5m)" },
                { "[cpu]\n\n\n\nthreshold = 150\n", P ":5: [cpu] threshold: 150 is out of range (1-100)" },
                { "[cpu]\nthreshold = 0\n", P ":2: [cpu] threshold: 0 is out of range (1-100)" },
                { "[cpu]\nthreshold = ninety\n",
                  P ":2: [cpu] threshold: invalid percentage 'ninety' (use e.g. 90, 90% or 87.5%)" },
                { "[cpu]\nthreshold = 90 # percent\n",
                  P ":2: [cpu] threshold: invalid percentage '90 # percent' (use e.g. 90, 90% or 87.5%) "
                    "('#' starts a comment only at the start of a line)" },
                { "[cpu]\nwindow = 2d\n", P ":2: [cpu] window: 2d is out of range (10ms-1d)" },
                { "[cpu]\ninterval = 1ms\n", P ":2: [cpu] interval: 1ms is out of range (10ms-1h)" },
                { "[cpu]\nwindow = -5s\n", P ":2: [cpu] window: invalid duration '-5s' (use e.g. 500ms, 30s, 5m)" },
                { "[cpu]\nwindow = 99999999999999999999s\n",
                  P ":2: [cpu] window: 99999999999999999999s is out of range (10ms-1d)" },
                { "[pool]\nmax_unavailable = 0\n", P ":2: [pool] max_unavailable: 0 is out of range (1-100000)" },
                { "[checks]\nattempts = -1\n", P ":2: [checks] attempts: invalid number '-1'" },
                { "[checks]\nattempts = 99999999999999999999999\n",
                  P ":2: [checks] attempts: 99999999999999999999999 is out of range (1-100000)" },
                { "[checks]\nrise = 1x\n", P ":2: [checks] rise: invalid number '1x'" },
                { "[remedy]\ndry_run = maybe\n", P ":2: [remedy] dry_run: invalid boolean 'maybe' (use yes or no)" },
                { "[checks]\nurl = ftp://x\n",
                  P ":2: [checks] url: invalid URL 'ftp://x' (use http://HOST/... or https://HOST/...)" },
                { "[checks]\nurl = http://\n",
                  P ":2: [checks] url: invalid URL 'http://' (use http://HOST/... or https://HOST/...)" },
                { "[slack]\napi_url = slack.com/api\n",
                  P ":2: [slack] api_url: invalid URL 'slack.com/api' (use http://HOST/... or https://HOST/...)" },
                { "[pool]\nredis = redis+tls://127.0.0.1\n",
                  P ":2: [pool] redis: invalid URL 'redis+tls://127.0.0.1' (use redis[s]://[USER:PASSWORD@]HOST[:PORT][/DB], "
                    "unix:///PATH or sentinel://HOST:PORT[,HOST:PORT...]/MASTER[/DB])" },
                { "[pool]\nredis = redis://127.0.0.1:0/0\n",
                  P ":2: [pool] redis: invalid URL 'redis://127.0.0.1:0/0' (use redis[s]://[USER:PASSWORD@]HOST[:PORT][/DB], "
                    "unix:///PATH or sentinel://HOST:PORT[,HOST:PORT...]/MASTER[/DB])" },
                { "[pool]\nredis = unix:///run/redis.sock?db=1001\n",
                  P ":2: [pool] redis: invalid URL 'unix:///run/redis.sock?db=1001' (use redis[s]://[USER:PASSWORD@]HOST[:PORT][/DB], "
                    "unix:///PATH or sentinel://HOST:PORT[,HOST:PORT...]/MASTER[/DB])" },
                { "[pool]\nredis = unix:///run/redis.sock?timeout=1\n",
                  P ":2: [pool] redis: invalid URL 'unix:///run/redis.sock?timeout=1' (use redis[s]://[USER:PASSWORD@]HOST[:PORT][/DB], "
                    "unix:///PATH or sentinel://HOST:PORT[,HOST:PORT...]/MASTER[/DB])" },
                { "[pool]\nredis = unix://run/redis.sock\n",
                  P ":2: [pool] redis: invalid URL 'unix://run/redis.sock' (use redis[s]://[USER:PASSWORD@]HOST[:PORT][/DB], "
                    "unix:///PATH or sentinel://HOST:PORT[,HOST:PORT...]/MASTER[/DB])" },
                { "[pool]\nredis = sentinel://127.0.0.1:26379\n",
                  P ":2: [pool] redis: invalid URL 'sentinel://127.0.0.1:26379' (use redis[s]://[USER:PASSWORD@]HOST[:PORT][/DB], "
                    "unix:///PATH or sentinel://HOST:PORT[,HOST:PORT...]/MASTER[/DB])" },
                { "[pool]\nredis = sentinel://127.0.0.1:26379,/m\n",
                  P ":2: [pool] redis: invalid URL 'sentinel://127.0.0.1:26379,/m' (use redis[s]://[USER:PASSWORD@]HOST[:PORT][/DB], "
                    "unix:///PATH or sentinel://HOST:PORT[,HOST:PORT...]/MASTER[/DB])" },
                { "[pool]\nredis = sentinel://h:1/m{x}\n",
                  P ":2: [pool] redis: invalid URL 'sentinel://h:1/m{x}' (use redis[s]://[USER:PASSWORD@]HOST[:PORT][/DB], "
                    "unix:///PATH or sentinel://HOST:PORT[,HOST:PORT...]/MASTER[/DB])" },
                { "[pool]\nredis = sentinel://h:1/m/x\n",
                  P ":2: [pool] redis: invalid URL 'sentinel://h:1/m/x' (use redis[s]://[USER:PASSWORD@]HOST[:PORT][/DB], "
                    "unix:///PATH or sentinel://HOST:PORT[,HOST:PORT...]/MASTER[/DB])" },
                { "[pool]\nout_max = 0\n", P ":2: [pool] out_max: 0 is out of range (1s-7d)" },
                { "[agent]\nstate_dir = var/lib\n", P ":2: [agent] state_dir: 'var/lib' is not an absolute path" },
                { "[agent]\ncontrol_socket = /run/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sock\n",
                  P ":2: [agent] control_socket: path is too long (135 characters, at most 107)" },
                { "[agent]\nlog_level = verbose\n",
                  P ":2: [agent] log_level: invalid log level 'verbose' (use error, warning, notice, info or debug)" },
                { "[agent]\nhost = web 1\n", P ":2: [agent] host: 'web 1' must not contain blanks" },
                { "[proxy]\nagent_check_port = 70000\n",
                  P ":2: [proxy] agent_check_port: 70000 is out of range (1-65535)" },
                { "[proxy]\nagent_check_port = 0\n", P ":2: [proxy] agent_check_port: 0 is out of range (1-65535)" },
                { "[proxy]\nagent_check_port = http\n", P ":2: [proxy] agent_check_port: invalid port 'http'" },
                { "[proxy]\nagent_check_port = 1\nagent_check_address = localhost\n",
                  P ":3: [proxy] agent_check_address: invalid IP address 'localhost'" },
                { "[pool]\naddress = 127.0.0.2\n",
                  P ":2: [pool] address: invalid address '127.0.0.2' (use HOST:PORT, e.g. 127.0.1.5:8080 or [::1]:8080)" },
                { "[pool]\naddress = ::1:80\n",
                  P ":2: [pool] address: invalid address '::1:80' (use HOST:PORT, e.g. 127.0.1.5:8080 or [::1]:8080)" },
                { "[pool]\nname = web{1}\n",
                  P ":2: [pool] name: invalid name 'web{1}' (use letters, digits, '.', '_' and '-')" },
                { "[pool]\non_unreachable = reboot\n",
                  P ":2: [pool] on_unreachable: invalid value 'reboot' (use hold or remediate)" },
                { "[checks]\nexpect_status = 200-700\n",
                  P ":2: [checks] expect_status: status code out of range in '200-700' (100-599)" },
                { "[checks]\nexpect_status = 2xx\n",
                  P ":2: [checks] expect_status: invalid status set '2xx' (use e.g. 200 or 200-299,301)" },
                { "[checks]\nexpect_status = 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17\n",
                  P ":2: [checks] expect_status: status code out of range in '1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17' "
                    "(100-599)" },
                { "[checks]\nexpect_status = 200,201,202,203,204,205,206,207,208,209,210,211,212,213,214,215,216\n",
                  P ":2: [checks] expect_status: too many ranges in "
                    "'200,201,202,203,204,205,206,207,208,209,210,211,212,213,214,215,216' (at most 16)" },
                { "[remedy]\nladder = reboot-instance, reboot\n",
                  P ":2: [remedy] ladder: unknown step 'reboot' (use restart-unit:UNIT, reboot-instance, reboot-local or none)" },
                { "[remedy]\nladder = reboot-instance:x.service\n",
                  P ":2: [remedy] ladder: step 'reboot-instance' takes no argument" },
                { "[remedy]\nladder = restart-unit:app service\n",
                  P ":2: [remedy] ladder: 'app service' is not a unit name (e.g. app.service)" },
                { "[remedy]\nladder = restart-unit:app\n",
                  P ":2: [remedy] ladder: 'app' is not a unit name (e.g. app.service)" },
                { "[remedy]\nladder = restart-unit:a.service,restart-unit:a.service\n",
                  P ":2: [remedy] ladder: step 'restart-unit:a.service' is listed twice" },
                { "[remedy]\nsettle = 0\n", P ":2: [remedy] settle: 0 is out of range (1s-1h)" },
                { "[remedy]\nladder = local-reboot,local-reboot\n",
                  P ":2: [remedy] ladder: step 'local-reboot' is listed twice" },
                { "[remedy]\nladder = local-reboot,,reboot-instance\n",
                  P ":2: [remedy] ladder: empty step in 'local-reboot,,reboot-instance'" },
                { "[remedy]\nladder = ,\n", P ":2: [remedy] ladder: empty step in ','" },
                /* required keys: reported at the section header */
                { "[agent]\n\n[pool]\nname = web\n", P ":3: [pool] missing required keys 'redis', 'address'" },
                { "[pool]\nredis = redis://127.0.0.1\nname = web\n", P ":1: [pool] missing required key 'address'" },
                { "[cpu]\n[checks]\nattempts = 3\n", P ":2: [checks] missing required key 'url'" },
                { "[proxy]\n", P ":1: [proxy] needs agent_check_port (HAProxy's agent-check), health_port (an HTTP "
                                  "health check, e.g. an AWS load balancer's), or both" },
                { "[proxy]\nagent_check_address = ::1\n", P ":1: [proxy] needs agent_check_port (HAProxy's "
                                  "agent-check), health_port (an HTTP health check, e.g. an AWS load balancer's), or both" },
                { "[proxy]\nhealth_port = 8080\nagent_check_port = 8080\n",
                  P ":3: [proxy] agent_check_port and health_port must differ (8080 is both)" },
                { "[proxy]\nhealth_port = 0\n", P ":2: [proxy] health_port: 0 is out of range (1-65535)" },
                { "[proxy]\nhealth_port = 80\nhealth_address = lb.local\n",
                  P ":3: [proxy] health_address: invalid IP address 'lb.local'" },
                { "[proxy]\nhealth_port = 80\nhealth_path = health\n",
                  P ":3: [proxy] health_path: 'health' must start with '/' (e.g. /health)" },
                { "[proxy]\nhealth_port = 80\nhealth_path = /health?x=1\n",
                  P ":3: [proxy] health_path: '/health?x=1' must be a plain URL path: printable ASCII without blanks, "
                    "'?', '#' or '%'" },
                { "[proxy]\nhealth_port = 80\nhealth_path = /h%20\n",
                  P ":3: [proxy] health_path: '/h%20' must be a plain URL path: printable ASCII without blanks, "
                    "'?', '#' or '%'" },
                /* slack: one way to post */
                { "[slack]\n", P ":1: [slack] needs webhook_url (or webhook_url_file), or channel with token or token_file" },
                { "[slack]\nchannel = #ops\n", P ":1: [slack] needs webhook_url (or webhook_url_file), or channel with token or token_file" },
                { "[slack]\nchannel = #ops\ntoken = xoxb-1\ntoken_file = /etc/t\n",
                  P ":4: [slack] use either token or token_file, not both" },
                { "[slack]\ntoken_file = /etc/t\nchannel = #ops\ntoken = xoxb-1\n",
                  P ":4: [slack] use either token or token_file, not both" },
                { "[slack]\nwebhook_url = https://hooks.example/x\ntoken = xoxb-1\n",
                  P ":3: [slack] use either webhook_url or token, not both" },
                { "[slack]\ntoken_file = /etc/t\n\nwebhook_url = https://hooks.example/x\n",
                  P ":4: [slack] use either webhook_url or token_file, not both" },
                { "[slack]\ntoken_file = /etc/t\n", P ":1: [slack] missing required key 'channel' (needed with token_file)" },
                { "[slack]\ntoken = xoxb-1\n", P ":1: [slack] missing required key 'channel' (needed with token)" },
                /* cross-field rules: reported at the later of the two keys */
                { "[cpu]\nthreshold = 80\nclear_below = 85\n",
                  P ":3: [cpu] clear_below (85) must be below threshold (80)" },
                { "[cpu]\nclear_below = 60\n\nthreshold = 50\n",
                  P ":4: [cpu] clear_below (60) must be below threshold (50)" },
                { "[cpu]\nthreshold = 70\n", P ":2: [cpu] clear_below (70) must be below threshold (70)" },
                { "[cpu]\nwindow = 5s\ninterval = 10s\n",
                  P ":3: [cpu] interval (10s) must not be longer than window (5s)" },
                { "[cpu]\ninterval = 10s\nwindow = 5s\n",
                  P ":3: [cpu] interval (10s) must not be longer than window (5s)" },
                { "[cpu]\njitter = 1s\n", P ":2: [cpu] jitter (1s) must be shorter than interval (1s)" },
                { POOL_OK "heartbeat = 2s\nlease = 2s\n", P ":6: [pool] heartbeat (2s) must be shorter than lease (2s)" },
                { POOL_OK "lease = 5s\n", P ":5: [pool] heartbeat (5s) must be shorter than lease (5s)" },
                { "[remedy]\nladder = restart-unit\n",
                  P ":2: [remedy] ladder has restart-unit but no unit is set (write restart-unit:NAME, or set unit)" },
                /* references checked offline: AWS identifiers and URLs */
                { "[aws]\nregion = us-east1\n",
                  P ":2: [aws] region: invalid region 'us-east1' (the AWS form, e.g. us-east-1, eu-central-1 or "
                    "us-gov-west-1)" },
                { "[aws]\ninstance_id = 0123456789\n",
                  P ":2: [aws] instance_id: invalid instance id '0123456789' (i- followed by 8 or 17 lowercase hex "
                    "digits, e.g. i-0123456789abcdef0)" },
                { "[aws]\nendpoint_url = https://:443/\n",
                  P ":2: [aws] endpoint_url: invalid URL 'https://:443/' (use http://HOST/... or https://HOST/...)" },
                { "[checks]\nurl = http://127.0.0.2:0/health\n",
                  P ":2: [checks] url: invalid URL 'http://127.0.0.2:0/health' (use http://HOST/... or https://HOST/...)" },
                { "[remedy]\nbudget = maybe\n", P ":2: [remedy] budget: invalid value 'maybe' (use pool or none)" },
        };

        for (size_t i = 0; i < ELEMENTSOF(t); i++)
                parse_fails(t[i].in, t[i].err);
}

static void test_error_regex_and_long_line(void **state) {
        char text[600], *err = NULL;
        Config *c = NULL;

        assert_int_equal(config_parse_string("[checks]\nurl = http://a/\nexpect_content = re:(\n", P, &c, &err), -EINVAL);
        assert_null(c);
        assert_non_null(err);
        {
                const char *prefix = P ":3: [checks] expect_content: invalid regular expression '(': ";
                assert_true(strncmp(err, prefix, strlen(prefix)) == 0);
                assert_true(strlen(err) > strlen(prefix)); /* regerror()'s reason follows */
        }
        free(err);

        /* inih would split a long line silently: we refuse it. */
        {
                char xs[251];

                memset(xs, 'x', 250);
                xs[250] = '\0';
                snprintf(text, sizeof text, "[cpu]\n# %s\nthreshold = 80\n", xs);
        }
        parse_fails(text, P ":2: line is too long (at most 198 characters)");
}

static void test_secrets_not_shown(void **state) {
        static const char *const inputs[] = {
                "[pool]\nredis = redis://monkey:hunter2@127.0.0.1:notaport/0\n",
                "[slack]\nchannel = c\ntoken = hunter2 x\n",
                "[slack]\nwebhook_url = htps://hooks.slack.com/services/hunter2\n",
        };

        for (size_t i = 0; i < ELEMENTSOF(inputs); i++) {
                Config *c = NULL;
                char *err = NULL;

                assert_int_equal(config_parse_string(inputs[i], P, &c, &err), -EINVAL);
                assert_non_null(err);
                assert_true(strncmp(err, P ":", 7) == 0);
                assert_null(strstr(err, "hunter2"));
                assert_non_null(strstr(err, "<redacted>"));
                free(err);
        }
}

static void test_parse_args(void **state) {
        Config *c = NULL;
        char *err = NULL;

        /* ret_error may be NULL; no path still names something. */
        assert_int_equal(config_parse_string("[cpu]\nx = 1\n", P, &c, NULL), -EINVAL);
        assert_null(c);
        assert_int_equal(config_parse_string("[cpu]\nx = 1\n", NULL, &c, &err), -EINVAL);
        assert_string_equal(err, "(config):2: unknown key 'x' in [cpu]");
        free(err);
        assert_int_equal(config_parse_string(NULL, P, &c, &err), -EINVAL);
}

/* ---- files ---- */

static void test_config_load(void **state) {
        char *dir = tmp_dir(), *p, *err = NULL, *want = NULL;
        Config *c = NULL;

        /* missing file */
        assert_true(asprintf(&p, "%s/none.conf", dir) > 0);
        assert_int_equal(config_load(p, &c, &err), -ENOENT);
        assert_true(asprintf(&want, "%s: cannot read: No such file or directory", p) > 0);
        assert_string_equal(err, want);
        free(err), free(want), free(p);

        /* a directory */
        assert_int_equal(config_load(dir, &c, &err), -EINVAL);
        assert_true(asprintf(&want, "%s: cannot read: not a regular file", dir) > 0);
        assert_string_equal(err, want);
        free(err), free(want);

        /* a plain config may be world readable; errors name the file */
        p = write_file(dir, "plain.conf", "[cpu]\nthreshold = 80\n", 0644);
        assert_int_equal(config_load(p, &c, &err), 0);
        assert_true(c->cpu.threshold == 80.0);
        assert_string_equal(c->path, p);
        /* status's fingerprint: what `sha256sum plain.conf` prints */
        assert_string_equal(c->sha256, "c916c891b284311efd4ac2f83254c2eeb57fc94c38aa06108027cdcac56aa4aa");
        c = config_free(c);
        free(p);
        p = write_file(dir, "bad.conf", "[cpu]\n\nthreshold = 101\n", 0600);
        assert_int_equal(config_load(p, &c, &err), -EINVAL);
        assert_true(asprintf(&want, "%s:3: [cpu] threshold: 101 is out of range (1-100)", p) > 0);
        assert_string_equal(err, want);
        assert_null(c);
        free(err), free(want), free(p);

        /* inline token: refused while group/others can read */
        p = write_file(dir, "token.conf", "[slack]\nchannel = #ops\ntoken = xoxb-secret\n", 0644);
        assert_int_equal(config_load(p, &c, &err), -EPERM);
        assert_true(asprintf(&want,
                             "%s:3: file holds a secret ([slack] token) but is readable by group/others (mode 0644); "
                             "chmod 600 it or use token_file",
                             p) > 0);
        assert_string_equal(err, want);
        assert_null(strstr(err, "xoxb-secret"));
        assert_null(c);
        free(err), free(want);
        assert_int_equal(chmod(p, 0640), 0);
        assert_int_equal(config_load(p, &c, &err), -EPERM);
        assert_non_null(strstr(err, "(mode 0640)"));
        free(err);
        assert_int_equal(chmod(p, 0600), 0);
        assert_int_equal(config_load(p, &c, &err), 0);
        assert_string_equal(c->slack.token, "xoxb-secret");
        /* no fingerprint of a secret for every local user to read in status */
        assert_string_equal(c->sha256, "");
        c = config_free(c);
        free(p);

        /* password in the Redis URL: the same */
        p = write_file(dir, "redis.conf",
                       "[pool]\nredis = redis://monkey:hunter2@127.0.0.1:6379/0\nname = web\naddress = 127.0.0.2:80\n",
                       0604);
        assert_int_equal(config_load(p, &c, &err), -EPERM);
        assert_true(asprintf(&want,
                             "%s:2: file holds a secret ([pool] redis password) but is readable by group/others "
                             "(mode 0604); chmod 600 it or use password_file",
                             p) > 0);
        assert_string_equal(err, want);
        free(err), free(want);
        assert_int_equal(chmod(p, 0600), 0);
        assert_int_equal(config_load(p, &c, &err), 0);
        c = config_free(c);
        free(p);

        /* a password in a sentinel URL is a secret too */
        p = write_file(dir, "sentinel.conf",
                       "[pool]\nredis = sentinel://:hunter2@127.0.0.1:26379/m\nname = web\naddress = 127.0.0.2:80\n",
                       0644);
        assert_int_equal(config_load(p, &c, &err), -EPERM);
        assert_non_null(strstr(err, "([pool] redis password)"));
        assert_null(strstr(err, "hunter2"));
        free(err);
        free(p);

        /* no secret, no password: readable is fine */
        p = write_file(dir, "nopass.conf", "[pool]\nredis = redis://127.0.0.1:6379/0\nname = web\naddress = 127.0.0.2:80\n",
                       0644);
        assert_int_equal(config_load(p, &c, &err), 0);
        c = config_free(c);
        free(p);

        /* anyone may rewrite it: refused even without secrets */
        p = write_file(dir, "open.conf", "[cpu]\n", 0666);
        assert_int_equal(config_load(p, &c, &err), -EPERM);
        assert_true(asprintf(&want, "%s: is writable by others (mode 0666); chmod go-w it", p) > 0);
        assert_string_equal(err, want);
        free(err), free(want);
        /* so may its group: whoever writes it decides who may drain */
        assert_int_equal(chmod(p, 0660), 0);
        assert_int_equal(config_load(p, &c, &err), -EPERM);
        assert_true(asprintf(&want, "%s: is writable by its group (mode 0660); chmod go-w it", p) > 0);
        assert_string_equal(err, want);
        free(err), free(want);
        assert_int_equal(chmod(p, 0640), 0);
        assert_int_equal(config_load(p, &c, &err), 0);
        c = config_free(c);
        /* owned by another user (not root, not us) */
        if (geteuid() == 0) {
                assert_int_equal(chown(p, 65534, 65534), 0);
                assert_int_equal(config_load(p, &c, &err), -EPERM);
                assert_true(asprintf(&want, "%s: owned by uid 65534, expected root or uid 0 (the agent's)", p) > 0);
                assert_string_equal(err, want);
                free(err), free(want);
        }
        free(p);

        /* binary */
        p = write_file(dir, "nul.conf", "", 0600);
        {
                int fd = open(p, O_WRONLY | O_APPEND | O_CLOEXEC);
                assert_true(fd >= 0);
                assert_int_equal(write(fd, "[cpu]\n\0x", 8), 8);
                close(fd);
        }
        assert_int_equal(config_load(p, &c, &err), -EINVAL);
        assert_true(asprintf(&want, "%s:2: holds a NUL byte, not a text file", p) > 0);
        assert_string_equal(err, want);
        free(err), free(want), free(p);

        /* control_group: a name is looked up at load, naming the line when unknown */
        p = write_file(dir, "group.conf", "[agent]\n\ncontrol_group = root\n", 0600);
        assert_int_equal(config_load(p, &c, &err), 0);
        assert_string_equal(c->agent.control_group, "root");
        assert_true(c->agent.control_gid_set);
        assert_int_equal(c->agent.control_gid, 0);
        c = config_free(c);
        free(p);
        p = write_file(dir, "group.conf", "[agent]\ncontrol_group = nogroup\n", 0600);
        assert_int_equal(config_load(p, &c, &err), 0);
        assert_int_equal(c->agent.control_gid, 65534);
        c = config_free(c);
        free(p);
        p = write_file(dir, "group.conf", "[agent]\nhost = x\ncontrol_group = no-such-group-monkey\n", 0600);
        assert_int_equal(config_load(p, &c, &err), -EINVAL);
        assert_null(c);
        assert_true(asprintf(&want,
                             "%s:3: [agent] control_group: no such group 'no-such-group-monkey' (create it with "
                             "groupadd, or give a numeric gid)",
                             p) > 0);
        assert_string_equal(err, want);
        free(err), free(want), free(p);
        /* a numeric gid needs no name: LDAP, containers */
        p = write_file(dir, "group.conf", "[agent]\ncontrol_group = 424242\n", 0600);
        assert_int_equal(config_load(p, &c, &err), 0);
        assert_int_equal(c->agent.control_gid, 424242);
        c = config_free(c);
        free(p);

        rm_rf(dir);
        free(dir);
}

static void test_control_group(void **state) {
        Config *c;

        /* a number is a gid at once; a name waits for config_load() */
        c = parse_ok("[agent]\ncontrol_group = 50\n");
        assert_string_equal(c->agent.control_group, "50");
        assert_true(c->agent.control_gid_set);
        assert_int_equal(c->agent.control_gid, 50);
        config_free(c);
        c = parse_ok("[agent]\ncontrol_group = 0\n");
        assert_int_equal(c->agent.control_gid, 0);
        config_free(c);
        c = parse_ok("[agent]\ncontrol_group = 4294967294\n");
        assert_int_equal(c->agent.control_gid, 4294967294u);
        config_free(c);
        c = parse_ok("[agent]\ncontrol_group = monkey-ops_2.x\n");
        assert_string_equal(c->agent.control_group, "monkey-ops_2.x");
        assert_false(c->agent.control_gid_set);
        config_free(c);
        c = parse_ok("[agent]\ncontrol_group = ops@example.com\n");
        config_free(c);
        c = parse_ok("[agent]\ncontrol_group = machines$\n");
        config_free(c);

        parse_fails("[agent]\ncontrol_group = 4294967295\n",
                    P ":2: [agent] control_group: gid 4294967295 is out of range (0-4294967294)");
        parse_fails("[agent]\ncontrol_group = 99999999999999999999999\n",
                    P ":2: [agent] control_group: gid 99999999999999999999999 is out of range (0-4294967294)");
        parse_fails("[agent]\ncontrol_group = 12ab\n",
                    P ":2: [agent] control_group: invalid group '12ab' (a group name or a numeric gid)");
        parse_fails("[agent]\ncontrol_group = monkey ops\n",
                    P ":2: [agent] control_group: invalid group name 'monkey ops' (letters, digits, '.', '_', '-', "
                      "'@'; or a numeric gid)");
        parse_fails("[agent]\ncontrol_group = a:b\n",
                    P ":2: [agent] control_group: invalid group name 'a:b' (letters, digits, '.', '_', '-', '@'; or a "
                      "numeric gid)");
        parse_fails("[agent]\ncontrol_group = a$b\n",
                    P ":2: [agent] control_group: invalid group name 'a$b' (letters, digits, '.', '_', '-', '@'; or a "
                      "numeric gid)");
        parse_fails("[agent]\ncontrol_group = -ops\n",
                    P ":2: [agent] control_group: invalid group name '-ops' (must not start with '-')");
        parse_fails("[agent]\ncontrol_group = "
                    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
                    P ":2: [agent] control_group: group name is too long (65 characters, at most 64)");
        parse_fails("[agent]\ncontrol_group = root\ncontrol_group = root\n",
                    P ":3: duplicate key 'control_group' in [agent] (first set at line 2)");
}

static void test_bad_bytes(void **state) {
        Config *c;

        /* UTF-8 is fine in values; in comments anything goes */
        c = parse_ok("# caf\xe9 (Latin-1 in a comment)\n; \xff\n[checks]\nurl = http://a/\n"
                     "expect_content = caf\xc3\xa9 \xf0\x9f\x90\x92\n");
        assert_string_equal(c->checks.expect_content, "caf\xc3\xa9 \xf0\x9f\x90\x92");
        config_free(c);

        parse_fails("[agent]\nhost = h\xff" "1\n", P ":2: [agent] host: invalid UTF-8 (the file must be UTF-8 text)");
        parse_fails("[checks]\nurl = http://a/\nexpect_content = caf\xe9\n",
                    P ":3: [checks] expect_content: invalid UTF-8 (the file must be UTF-8 text)");
        /* overlong '/', a UTF-16 surrogate, above U+10FFFF, a cut sequence */
        parse_fails("[agent]\nhost = a\xc0\xaf" "b\n", P ":2: [agent] host: invalid UTF-8 (the file must be UTF-8 text)");
        parse_fails("[agent]\nhost = a\xed\xa0\x80\n", P ":2: [agent] host: invalid UTF-8 (the file must be UTF-8 text)");
        parse_fails("[agent]\nhost = a\xf4\x90\x80\x80\n",
                    P ":2: [agent] host: invalid UTF-8 (the file must be UTF-8 text)");
        parse_fails("[agent]\nhost = a\xe2\x82\n", P ":2: [agent] host: invalid UTF-8 (the file must be UTF-8 text)");
        /* in a key or a section name: no key to name */
        parse_fails("[agent]\nho\xffst = a\n", P ":2: invalid UTF-8 (the file must be UTF-8 text)");
        parse_fails("[ag\xff" "ent]\n", P ":1: invalid UTF-8 (the file must be UTF-8 text)");

        /* an over-long line names its key, so the reader knows what to fix */
        {
                char text[1200];
                char v[1001];

                memset(v, 'x', 1000);
                v[1000] = '\0';
                snprintf(text, sizeof text, "[cpu]\nthreshold = 80\n[remedy]\nunit = %s.service\n", v);
                parse_fails(text, P ":4: [remedy] unit: line is too long (at most 198 characters)");
                snprintf(text, sizeof text, "[cpu]\nthreshold: %s\n", v);
                parse_fails(text, P ":2: [cpu] threshold: line is too long (at most 198 characters)");
                snprintf(text, sizeof text, "[cpu]\n%s = 1\n", v); /* not one of ours */
                parse_fails(text, P ":2: line is too long (at most 198 characters)");
        }

        /* [remedy] unit is a unit name, as in restart-unit:NAME */
        c = parse_ok("[remedy]\nladder = restart-unit\nunit = app@1.service\nbudget = none\n");
        assert_string_equal(c->remedy.unit, "app@1.service");
        config_free(c);
        parse_fails("[remedy]\nunit = app\n", P ":2: [remedy] unit: 'app' is not a unit name (e.g. app.service)");
        parse_fails("[remedy]\nunit = a/b.service\n",
                    P ":2: [remedy] unit: 'a/b.service' is not a unit name (e.g. app.service)");
}

/* ---- the reference config ---- */

#define REF SOURCE_ROOT "/conf/monkeyd.conf"

static const char *const all_keys[] = {
        "agent.host", "agent.state_dir", "agent.control_socket", "agent.proc_stat", "agent.boot_id",
        "agent.log_level", "agent.control_group", "cpu.threshold", "cpu.window", "cpu.interval", "cpu.clear_below", "cpu.jitter",
        "pool.redis", "pool.password_file", "pool.tls_ca_file", "pool.tls_cert_file",
        "pool.tls_key_file", "pool.tls_server_name", "pool.name", "pool.address", "pool.min_serving", "pool.max_unavailable",
        "pool.list_key", "pool.drain", "pool.lease", "pool.heartbeat", "pool.on_unreachable", "pool.out_max", "slack.webhook_url",
        "slack.token", "slack.token_file", "slack.channel", "slack.api_url", "slack.webhook_url_file",
        "slack.timeout", "slack.remind", "slack.outbox_max", "slack.outbox_max_bytes", "aws.region", "aws.instance_id",
        "aws.endpoint_url", "aws.imds_url", "aws.profile", "aws.credentials_file", "aws.target_groups",
        "aws.deregistration_timeout", "aws.registration_timeout", "aws.autoscaling", "aws.elb_endpoint_url",
        "aws.autoscaling_endpoint_url", "checks.url",
        "checks.expect_status", "checks.expect_content", "checks.public_address", "checks.attempts",
        "checks.timeout", "checks.local_address", "checks.every", "checks.rise", "checks.fall", "remedy.ladder", "remedy.settle", "remedy.reboot_timeout", "remedy.step_timeout", "remedy.grace", "remedy.max_per_window",
        "remedy.window", "remedy.dry_run", "remedy.unit", "remedy.budget", "proxy.agent_check_port", "proxy.agent_check_address",
        "proxy.health_port", "proxy.health_address", "proxy.health_path",
        "evidence.profile", "evidence.frequency", "evidence.perf", "evidence.keep", "evidence.max_bytes",
        "metrics.listen", "metrics.textfile", "metrics.interval",
};

static char *read_text(const char *path) {
        FILE *f = fopen(path, "re");
        char *text = NULL;
        size_t n = 0;

        assert_non_null(f);
        assert_true(getdelim(&text, &n, '\0', f) > 0);
        fclose(f);
        return text;
}

static void test_reference_config(void **state) {
        Config *c = NULL, *u = NULL;
        char *err = NULL, *text, *uncommented, *line, *save = NULL, section[32] = "";
        bool seen[ELEMENTSOF(all_keys)] = {};
        size_t off = 0, size;

        /* As installed it observes only: no integration is on, so it starts
         * on any host, with no Redis, Slack or AWS (test_shipped_config.py
         * starts it). */
        assert_int_equal(config_load(REF, &c, &err), 0);
        assert_null(err);
        assert_false(c->pool.enabled || c->slack.enabled || c->aws.enabled || c->checks.enabled || c->remedy.enabled ||
                     c->proxy.enabled);
        assert_null(config_no_fleet_budget(c));

        /* Every key is in it, set or commented out, in its section (every
         * section but [agent], [cpu] and [evidence] is itself commented
         * out); and with the comments removed it still parses: the
         * documented defaults and examples are valid values. */
        text = read_text(REF);
        size = strlen(text) + 1;
        uncommented = calloc(1, size);
        assert_non_null(uncommented);
        for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                const char *k = line;
                char name[64];
                bool commented = false;

                if (line[0] == ';') {
                        k++;
                        commented = true;
                }
                if (k[0] == '[') {
                        assert_int_equal(sscanf(k, "[%31[^]]]", section), 1);
                        /* an integration is off as installed */
                        assert_true(commented == !(streq(section, "agent") || streq(section, "cpu") ||
                                                   streq(section, "evidence")));
                }
                if (k[0] != '#' && k[0] != '[' && sscanf(k, "%63[a-z_] =", name) == 1 && strstr(k, " = ")) {
                        char full[128];
                        bool known = false;

                        snprintf(full, sizeof full, "%s.%s", section, name);
                        for (size_t i = 0; i < ELEMENTSOF(all_keys); i++)
                                if (streq(all_keys[i], full)) {
                                        assert_false(seen[i]);
                                        seen[i] = known = true;
                                }
                        if (!known)
                                print_error("unexpected key %s\n", full);
                        assert_true(known);
                        /* One way to post to Slack: keep the alternatives commented. */
                        /* The tls_* keys go with rediss://; the example's URL is redis://. */
                        if (commented && (streq(full, "slack.webhook_url") || streq(full, "slack.webhook_url_file") ||
                                          streq(full, "slack.token") || strncmp(full, "pool.tls_", 9) == 0))
                                k = NULL;
                }
                if (k) {
                        if (!commented)
                                k = line;
                        off += (size_t) snprintf(uncommented + off, size - off, "%s\n", k);
                }
        }
        for (size_t i = 0; i < ELEMENTSOF(all_keys); i++) {
                if (!seen[i])
                        print_error("%s is not in the reference config\n", all_keys[i]);
                assert_true(seen[i]);
        }

        if (config_parse_string(uncommented, "uncommented", &u, &err) < 0)
                print_error("%s\n", err);
        assert_non_null(u);
        assert_true(u->pool.enabled && u->slack.enabled && u->aws.enabled && u->checks.enabled && u->remedy.enabled &&
                    u->proxy.enabled);
        assert_null(u->slack.token); /* the example uses a token file, not an inline secret */
        assert_non_null(u->slack.token_file);
        assert_false(u->remedy.dry_run); /* shown at its default */
        /* the commented example of agent_check_address is the default it documents */
        assert_int_equal(u->proxy.agent_check_from, AGENT_CHECK_FROM_CONFIG);
        {
                Config *d = NULL;
                char *no_addr = strdup(uncommented), *q = strstr(no_addr, "\nagent_check_address = ");

                assert_non_null(q);
                q[1] = '#';
                assert_int_equal(config_parse_string(no_addr, "defaulted", &d, &err), 0);
                assert_int_equal(d->proxy.agent_check_from, AGENT_CHECK_FROM_POOL);
                assert_string_equal(d->proxy.agent_check_address, u->proxy.agent_check_address);
                config_free(d);
                free(no_addr);
        }

        /* What the comments call the default is the default. */
        assert_string_equal(u->agent.state_dir, c->agent.state_dir);
        assert_string_equal(u->agent.control_socket, c->agent.control_socket);
        assert_string_equal(u->agent.proc_stat, c->agent.proc_stat);
        assert_string_equal(u->agent.boot_id, c->agent.boot_id);
        assert_int_equal(u->cpu.jitter, c->cpu.jitter);
        assert_int_equal(u->pool.min_serving, c->pool.min_serving);
        assert_int_equal(u->pool.max_unavailable, c->pool.max_unavailable);
        assert_int_equal(u->pool.drain, c->pool.drain);
        assert_int_equal(u->pool.lease, c->pool.lease);
        assert_int_equal(u->pool.heartbeat, c->pool.heartbeat);
        assert_int_equal(u->pool.on_unreachable, c->pool.on_unreachable);
        assert_int_equal(u->pool.out_max, c->pool.out_max);
        assert_string_equal(u->slack.api_url, c->slack.api_url);
        assert_int_equal(u->slack.timeout, c->slack.timeout);
        assert_int_equal(u->slack.remind, c->slack.remind);
        assert_int_equal(u->slack.outbox_max, c->slack.outbox_max);
        assert_int_equal(u->slack.outbox_max_bytes, c->slack.outbox_max_bytes);
        assert_string_equal(u->aws.imds_url, c->aws.imds_url);
        assert_memory_equal(&u->checks.expect_status, &c->checks.expect_status, sizeof(StatusSet));
        assert_string_equal(u->checks.public_address, u->pool.address); /* "Default: [pool] address" */
        assert_int_equal(u->checks.attempts, c->checks.attempts);
        assert_int_equal(u->checks.timeout, c->checks.timeout);
        assert_int_equal(u->checks.every, c->checks.every);
        assert_int_equal(u->checks.rise, c->checks.rise);
        assert_int_equal(u->checks.fall, c->checks.fall);
        assert_int_equal(u->remedy.max_per_window, c->remedy.max_per_window);
        assert_int_equal(u->remedy.window, c->remedy.window);
        assert_int_equal(u->remedy.dry_run, c->remedy.dry_run);
        assert_int_equal(u->remedy.budget, c->remedy.budget);

        config_free(u);
        config_free(c);
        free(text);
        free(uncommented);
}

/* ---- [remedy] budget ---- */

#define NO_POOL_ERR                                                                                                \
        "[remedy] without [pool]: no fleet budget limits how many hosts remediate at once, so an overload of the " \
        "whole fleet would reboot every host; add a [pool] section, or write budget = none in [remedy] to accept that"

static void test_budget(void **state) {
        Config *c;

        /* remediation without a pool: refused, naming both sections, at the
         * [remedy] header (or the budget line when written) */
        parse_fails("[remedy]\nladder = reboot-instance\n", P ":1: " NO_POOL_ERR);
        parse_fails("[cpu]\nthreshold = 80\n\n[remedy]\nmax_per_window = 3\n", P ":4: " NO_POOL_ERR);
        parse_fails("[remedy]\nladder = reboot-instance\nbudget = pool\n", P ":3: " NO_POOL_ERR);
        parse_fails("[remedy]\ndry_run = no\n", P ":1: " NO_POOL_ERR);

        /* ... unless the file says so */
        c = parse_ok("[remedy]\nladder = reboot-instance\nbudget = none\n");
        assert_int_equal(c->remedy.budget, REMEDY_BUDGET_NONE);
        assert_string_equal(config_no_fleet_budget(c), "no fleet budget ([remedy] budget = none)");
        config_free(c);

        /* ladder = none: a rehearsal (out, drained, checked, back) still
         * takes hosts out, so it needs the budget like any other step */
        parse_fails("[remedy]\nladder = none\n", P ":1: " NO_POOL_ERR);
        c = parse_ok("[remedy]\nladder = none\nbudget = none\n");
        assert_int_equal(c->remedy.ladder_len, 1);
        assert_int_equal(c->remedy.ladder[0], REMEDY_NONE);
        assert_string_equal(remedy_step_to_string(REMEDY_NONE), "none");
        config_free(c);
        parse_fails("[remedy]\nladder = none:app.service\nbudget = none\n",
                    P ":2: [remedy] ladder: step 'none' takes no argument");

        /* a dry run takes no slot and changes nothing: no pool needed */
        c = parse_ok("[remedy]\ndry_run = yes\n");
        assert_int_equal(c->remedy.budget, REMEDY_BUDGET_POOL);
        assert_string_equal(config_no_fleet_budget(c), "no fleet budget (a dry run without [pool])");
        config_free(c);
        c = parse_ok("[remedy]\ndry_run = yes\nbudget = none\n");
        config_free(c);

        /* with a pool: its budget applies, none contradicts it */
        c = parse_ok(POOL_OK "[remedy]\n");
        assert_null(config_no_fleet_budget(c));
        config_free(c);
        c = parse_ok(POOL_OK "[remedy]\nbudget = pool\n");
        config_free(c);
        parse_fails(POOL_OK "\n[remedy]\nbudget = none\n",
                    P ":7: [remedy] budget = none contradicts [pool] (line 1): with a pool every leave is checked "
                      "against min_serving and max_unavailable; remove budget = none (raise max_unavailable to let "
                      "more hosts out at once)");

        /* observe only: nothing to limit */
        c = parse_ok("[cpu]\n");
        assert_null(config_no_fleet_budget(c));
        config_free(c);

        assert_string_equal(remedy_budget_to_string(REMEDY_BUDGET_NONE), "none");
        assert_int_equal(remedy_budget_from_string("pool"), REMEDY_BUDGET_POOL);
        assert_int_equal(remedy_budget_from_string("None"), _REMEDY_BUDGET_INVALID);
        assert_null(remedy_budget_to_string(_REMEDY_BUDGET_MAX));
}

/* ---- references checked offline ---- */

static void test_aws_identifiers(void **state) {
        /* The form itself is awsid.c's (test_awsid.c); the config keeps what
         * it accepts as written. */
        static const char *const regions_ok[] = { "us-east-1", "us-gov-west-1", "eu-south-12" };
        static const char *const ids_ok[] = { "i-0123456789abcdef0", "i-1234abcd" };
        Config *c;

        for (size_t i = 0; i < ELEMENTSOF(regions_ok); i++) {
                char text[128];
                snprintf(text, sizeof text, "[aws]\nregion = %s\n", regions_ok[i]);
                c = parse_ok(text);
                assert_string_equal(c->aws.region, regions_ok[i]);
                config_free(c);
        }
        for (size_t i = 0; i < ELEMENTSOF(ids_ok); i++) {
                char text[128];
                snprintf(text, sizeof text, "[aws]\ninstance_id = %s\n", ids_ok[i]);
                c = parse_ok(text);
                assert_string_equal(c->aws.instance_id, ids_ok[i]);
                config_free(c);
        }
}

#define TG_A "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef"
#define TG_B "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/api-2/fedcba9876543210"
#define TG_EU "arn:aws:elasticloadbalancing:eu-west-3:123456789012:targetgroup/web/0123456789abcdef"

static void test_aws_routing_keys(void **state) {
        Config *c, *d;

        /* the defaults: no group, standby off, the documented timeouts */
        c = parse_ok("[aws]\n");
        assert_int_equal(c->aws.n_target_groups, 0);
        assert_null(c->aws.target_groups);
        assert_int_equal(c->aws.deregistration_timeout, 330 * USEC_PER_SEC);
        assert_int_equal(c->aws.registration_timeout, 300 * USEC_PER_SEC);
        assert_int_equal(c->aws.autoscaling, AWS_AUTOSCALING_OFF);
        assert_null(c->aws.elb_endpoint_url);
        assert_null(c->aws.autoscaling_endpoint_url);
        assert_false(config_aws_needs_identity(c));
        config_free(c);

        /* commas, blanks or both; a port after the ARN */
        c = parse_ok("[aws]\nregion = us-east-1\ntarget_groups = " TG_A ", " TG_B ":8080\ntarget_groups =  " TG_A ":81\n"
                     "deregistration_timeout = 45s\nregistration_timeout = 2m\nautoscaling = standby\n"
                     "elb_endpoint_url = http://127.0.0.1:9001/\nautoscaling_endpoint_url = http://127.0.0.1:9002/\n");
        assert_int_equal(c->aws.n_target_groups, 3);
        assert_string_equal(c->aws.target_groups[0].arn, TG_A);
        assert_int_equal(c->aws.target_groups[0].port, 0);
        assert_string_equal(c->aws.target_groups[1].arn, TG_B);
        assert_int_equal(c->aws.target_groups[1].port, 8080);
        assert_string_equal(c->aws.target_groups[2].arn, TG_A);
        assert_int_equal(c->aws.target_groups[2].port, 81);
        assert_int_equal(c->aws.deregistration_timeout, 45 * USEC_PER_SEC);
        assert_int_equal(c->aws.registration_timeout, 120 * USEC_PER_SEC);
        assert_int_equal(c->aws.autoscaling, AWS_AUTOSCALING_STANDBY);
        assert_string_equal(c->aws.elb_endpoint_url, "http://127.0.0.1:9001/");
        assert_string_equal(c->aws.autoscaling_endpoint_url, "http://127.0.0.1:9002/");
        /* the instance's identity is needed for either, as for reboot-instance */
        assert_true(config_aws_needs_identity(c));

        /* a reload compares every key */
        d = parse_ok("[aws]\nregion = us-east-1\ntarget_groups = " TG_A ", " TG_B ":8080\ntarget_groups =  " TG_A ":81\n"
                     "deregistration_timeout = 45s\nregistration_timeout = 2m\nautoscaling = standby\n"
                     "elb_endpoint_url = http://127.0.0.1:9001/\nautoscaling_endpoint_url = http://127.0.0.1:9002/\n");
        assert_true(config_aws_equal(c, d));
        config_free(d);
        {
                static const char *const other[] = {
                        "target_groups = " TG_A ", " TG_B ":8080\n", /* one fewer */
                        "target_groups = " TG_A ", " TG_B ":8081\ntarget_groups = " TG_A ":81\n", /* a port */
                        "target_groups = " TG_B ":8080, " TG_A "\ntarget_groups = " TG_A ":81\n", /* the order */
                        "deregistration_timeout = 46s\n",
                        "registration_timeout = 3m\n",
                        "autoscaling = off\n",
                        "elb_endpoint_url = http://127.0.0.1:9003/\n",
                        "autoscaling_endpoint_url = http://127.0.0.1:9003/\n",
                };
                static const char *const keys[] = {
                        "target_groups = " TG_A ", " TG_B ":8080\ntarget_groups = " TG_A ":81\n",
                        "deregistration_timeout = 45s\n",
                        "registration_timeout = 2m\n",
                        "autoscaling = standby\n",
                        "elb_endpoint_url = http://127.0.0.1:9001/\n",
                        "autoscaling_endpoint_url = http://127.0.0.1:9002/\n",
                };
                for (size_t i = 0; i < ELEMENTSOF(other); i++) {
                        char text[2048];
                        size_t off = (size_t) snprintf(text, sizeof text, "[aws]\nregion = us-east-1\n%s", other[i]);

                        /* the same config but for that one key */
                        for (size_t k = 0; k < ELEMENTSOF(keys); k++)
                                if (strncmp(keys[k], other[i], strcspn(keys[k], "=")) != 0)
                                        off += (size_t) snprintf(text + off, sizeof text - off, "%s", keys[k]);
                        d = parse_ok(text);
                        if (config_aws_equal(c, d))
                                fail_msg("equal despite %s", other[i]);
                        config_free(d);
                }
        }
        config_free(c);

        c = parse_ok("[aws]\nautoscaling = standby\n");
        assert_true(config_aws_needs_identity(c));
        config_free(c);
        c = parse_ok("[aws]\n[remedy]\nladder = reboot-instance\nbudget = none\n");
        assert_true(config_aws_needs_identity(c));
        config_free(c);
        c = parse_ok("[aws]\n[remedy]\nladder = reboot-local\nbudget = none\n");
        assert_false(config_aws_needs_identity(c));
        config_free(c);
        /* no [aws], nothing to identify with */
        c = parse_ok("[remedy]\nladder = reboot-instance\nbudget = none\n");
        assert_false(config_aws_needs_identity(c));
        config_free(c);

        /* a region of the ARN's, without [aws] region: IMDS will say */
        c = parse_ok("[aws]\ntarget_groups = " TG_EU "\n");
        assert_int_equal(c->aws.n_target_groups, 1);
        config_free(c);
        /* a partition of its own */
        c = parse_ok("[aws]\ntarget_groups = arn:aws-us-gov:elasticloadbalancing:us-gov-west-1:123456789012:"
                     "targetgroup/a/0123456789abcdef\n");
        config_free(c);

        parse_fails("[aws]\ntarget_groups = " TG_A ", arn:aws:elasticloadbalancing:us-east-1:123:targetgroup/web/0123\n",
                    P ":2: [aws] target_groups: invalid target group "
                      "'arn:aws:elasticloadbalancing:us-east-1:123:targetgroup/web/0123' (" AWS_TARGET_GROUP_ARN_FORM
                      ", then :PORT if the instance is registered on a port of its own)");
        parse_fails("[aws]\ntarget_groups = web\n",
                    P ":2: [aws] target_groups: invalid target group 'web' (" AWS_TARGET_GROUP_ARN_FORM
                      ", then :PORT if the instance is registered on a port of its own)");
        parse_fails("[aws]\ntarget_groups = " TG_A ":0\n",
                    P ":2: [aws] target_groups: invalid port in '" TG_A ":0' (1-65535)");
        parse_fails("[aws]\ntarget_groups = " TG_A ":65536\n",
                    P ":2: [aws] target_groups: invalid port in '" TG_A ":65536' (1-65535)");
        parse_fails("[aws]\ntarget_groups = " TG_B ":80, " TG_B ":80\n",
                    P ":2: [aws] target_groups: target group '" TG_B ":80' is listed twice");
        /* a second line adds to the first: a line holds two ARNs at most */
        parse_fails("[aws]\ntarget_groups = " TG_B ":80, " TG_A "\ntarget_groups = " TG_A "\n",
                    P ":3: [aws] target_groups: target group '" TG_A "' is listed twice");
        parse_fails("[aws]\ntarget_groups = ,\n", P ":2: [aws] target_groups: no target group in ',' (write ARN[:PORT], ...)");
        parse_fails("[aws]\nregion = us-east-1\ntarget_groups = " TG_EU "\n",
                    P ":3: [aws] target_groups: '" TG_EU "' is in region eu-west-3, but [aws] region is us-east-1 "
                      "(an instance can only be a target of a group in its own region)");
        parse_fails("[aws]\ntarget_groups = " TG_A " " TG_EU "\n",
                    P ":2: [aws] target_groups: '" TG_A "' is in region us-east-1, '" TG_EU "' in eu-west-3 "
                      "(an instance can only be a target of groups in its own region)");
        parse_fails("[aws]\nautoscaling = on\n", P ":2: [aws] autoscaling: invalid value 'on' (use standby or off)");
        parse_fails("[aws]\nelb_endpoint_url = elb.local\n",
                    P ":2: [aws] elb_endpoint_url: invalid URL 'elb.local' (use http://HOST/... or https://HOST/...)");
        parse_fails("[aws]\nautoscaling_endpoint_url = ftp://x/\n",
                    P ":2: [aws] autoscaling_endpoint_url: invalid URL 'ftp://x/' (use http://HOST/... or https://HOST/...)");
        {
                char text[4096], want[128];
                size_t off = (size_t) snprintf(text, sizeof text, "[aws]\n");

                for (unsigned i = 0; i <= CONFIG_TARGET_GROUPS_MAX; i++)
                        off += (size_t) snprintf(text + off, sizeof text - off, "target_groups = " TG_A ":%u\n", 1000 + i);
                snprintf(want, sizeof want, P ":%d: [aws] target_groups: more than 16 target groups",
                         CONFIG_TARGET_GROUPS_MAX + 2);
                parse_fails(text, want);
        }
        assert_string_equal(aws_autoscaling_to_string(AWS_AUTOSCALING_STANDBY), "standby");
        assert_int_equal(aws_autoscaling_from_string("off"), AWS_AUTOSCALING_OFF);
        assert_null(aws_autoscaling_to_string(_AWS_AUTOSCALING_MAX));
        assert_int_equal(aws_autoscaling_from_string(NULL), _AWS_AUTOSCALING_INVALID);
}

static void test_urls(void **state) {
        static const char *const ok[] = {
                "http://127.0.0.1:9999/api", "https://slack.com/api", "https://hooks.slack.com/services/T/B/X",
                "http://[::1]:8080/health", "http://user:pw@127.0.0.1/x", "https://ec2.us-east-1.amazonaws.com",
                "http://host?x=1", "http://host#top", "https://vpce-1.ec2.us-east-1.vpce.amazonaws.com/",
                "http://169.254.169.254",
        };
        static const char *const bad[] = {
                "http://:8080/", "http://host:/", "http://host:99999/", "http://[::1/", "http:///x", "http://h@/",
                "https://exa$mple.com/", "http://host:80:80/", "http//host/", "ftp://host/", "http://", "https://",
                "http://?x", "http://host:http/",
        };

        for (size_t i = 0; i < ELEMENTSOF(ok); i++) {
                char text[256];
                Config *c;

                snprintf(text, sizeof text, "[aws]\nendpoint_url = %s\n", ok[i]);
                c = parse_ok(text);
                assert_string_equal(c->aws.endpoint_url, ok[i]);
                config_free(c);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                char text[256], want[512];

                snprintf(text, sizeof text, "[checks]\nurl = %s\n", bad[i]);
                snprintf(want, sizeof want, P ":2: [checks] url: invalid URL '%s' (use http://HOST/... or https://HOST/...)",
                         bad[i]);
                parse_fails(text, want);
        }
        /* the webhook URL is itself a secret: never quoted */
        parse_fails("[slack]\nwebhook_url = https://:1/services/T/B/hunter2\n",
                    P ":2: [slack] webhook_url: invalid URL '<redacted>' (use http://HOST/... or https://HOST/...)");
}

static void test_redis_url_redact(void **state) {
        static const struct {
                const char *in, *out;
        } t[] = {
                { "redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0" },
                { "redis://:hunter2@127.0.0.1:6379/0", "redis://:<redacted>@127.0.0.1:6379/0" },
                { "redis://monkey:hunter2@127.0.0.1:6379/0", "redis://monkey:<redacted>@127.0.0.1:6379/0" },
                /* a bare user info may be read as a password */
                { "redis://hunter2@127.0.0.1", "redis://<redacted>@127.0.0.1" },
                /* '/' and '@' in a password */
                { "redis://:hun/ter@2@127.0.0.1:6379/0", "redis://:<redacted>@127.0.0.1:6379/0" },
                { "sentinel://:hunter2@s1:26379,s2:26379/m", "sentinel://:<redacted>@s1:26379,s2:26379/m" },
                { "unix:///run/redis.sock", "unix:///run/redis.sock" },
                { "rediss://127.0.0.1", "rediss://127.0.0.1" },
                { "redis//:hunter2@host", "redis//:<redacted>@host" },
                /* the pool's status once showed these its own way ("***@"),
                 * keeping a password that followed a '/' */
                { "redis://u:hunter2@h:1/0", "redis://u:<redacted>@h:1/0" },
                { "redis://h/a@b", "redis://<redacted>@b" },
                { "sentinel://:pw@a,b/m", "sentinel://:<redacted>@a,b/m" },
        };

        for (size_t i = 0; i < ELEMENTSOF(t); i++) {
                char *r = redis_url_redact(t[i].in);
                assert_non_null(r);
                if (!streq(r, t[i].out))
                        fail_msg("%s -> %s, want %s", t[i].in, r, t[i].out);
                free(r);
        }
        assert_null(redis_url_redact(NULL));

        /* the config error shows the URL, with only the password hidden */
        parse_fails("[pool]\nredis = redis://:hunter2@127.0.0.1:notaport/0\n",
                    P ":2: [pool] redis: invalid URL 'redis://:<redacted>@127.0.0.1:notaport/0' (use "
                      "redis[s]://[USER:PASSWORD@]HOST[:PORT][/DB], unix:///PATH or "
                      "sentinel://HOST:PORT[,HOST:PORT...]/MASTER[/DB])");
}

/* ---- [proxy] agent_check_address ---- */

/* rediss:// and the keys that shape TLS: only together, and a client
 * certificate only with its key. */
static void test_pool_tls_keys(void **state) {
        Config *c;

        c = parse_ok("[pool]\nredis = rediss://redis.example:6380/0\nname = web\naddress = 127.0.0.2:8080\n"
                     "tls_ca_file = /etc/monkeyd/ca.pem\ntls_server_name = redis.internal\n");
        assert_string_equal(c->pool.tls_ca_file, "/etc/monkeyd/ca.pem");
        assert_string_equal(c->pool.tls_server_name, "redis.internal");
        assert_null(c->pool.tls_cert_file);
        config_free(c);
        parse_fails(POOL_OK "tls_ca_file = /etc/monkeyd/ca.pem\n",
                    P ":5: [pool] tls_* keys need a rediss:// or rediss-sentinel:// URL in redis");
        parse_fails("[pool]\nredis = rediss://h\nname = web\naddress = 127.0.0.2:8080\n"
                    "tls_cert_file = /etc/monkeyd/client.pem\n",
                    P ":5: [pool] tls_cert_file and tls_key_file go together (a client certificate and its key)");
        parse_fails(POOL_OK "tls_ca_file = ca.pem\n", P ":5: [pool] tls_ca_file: 'ca.pem' is not an absolute path");
}

static void test_agent_check_default(void **state) {
        Config *c;

        /* HAProxy connects to the server's own address: the pool's IP */
        c = parse_ok(POOL_OK "[proxy]\nagent_check_port = 5555\n");
        assert_string_equal(c->proxy.agent_check_address, "127.0.0.2");
        assert_int_equal(c->proxy.agent_check_from, AGENT_CHECK_FROM_POOL);
        assert_string_equal(c->proxy.proxy_address, "127.0.0.2");
        assert_int_equal(c->proxy.proxy_address_from, AGENT_CHECK_FROM_POOL);
        assert_string_equal(agent_check_from_to_string(c->proxy.agent_check_from), "[pool] address");
        config_free(c);

        c = parse_ok("[pool]\nredis = redis://127.0.0.1\nname = w\naddress = [::1]:8080\n[proxy]\nagent_check_port = 1\n");
        assert_string_equal(c->proxy.agent_check_address, "::1");
        config_free(c);

        /* a name cannot be bound without DNS: the checks' public address */
        c = parse_ok("[pool]\nredis = redis://127.0.0.1\nname = w\naddress = web-1.internal:8080\n"
                     "[checks]\nurl = http://127.0.0.3/\npublic_address = 127.0.0.3:8080\n[proxy]\nagent_check_port = 1\n");
        assert_string_equal(c->proxy.agent_check_address, "127.0.0.3");
        assert_int_equal(c->proxy.agent_check_from, AGENT_CHECK_FROM_PUBLIC_ADDRESS);
        assert_string_equal(c->proxy.proxy_address, "127.0.0.3");
        config_free(c);
        c = parse_ok("[checks]\nurl = http://127.0.0.5/\npublic_address = 127.0.0.5:80\n[proxy]\nagent_check_port = 1\n");
        assert_string_equal(c->proxy.agent_check_address, "127.0.0.5");
        config_free(c);

        /* neither: the wildcard, and the address proxies use is unknown */
        c = parse_ok("[pool]\nredis = redis://127.0.0.1\nname = w\naddress = web-1.internal:8080\n[proxy]\nagent_check_port = 1\n");
        assert_string_equal(c->proxy.agent_check_address, "0.0.0.0");
        assert_int_equal(c->proxy.agent_check_from, AGENT_CHECK_FROM_WILDCARD);
        assert_null(c->proxy.proxy_address);
        config_free(c);

        /* written: as written, and the proxies' address is still known for the start-up check */
        c = parse_ok(POOL_OK "[proxy]\nagent_check_port = 1\nagent_check_address = 127.0.0.1\n");
        assert_string_equal(c->proxy.agent_check_address, "127.0.0.1");
        assert_int_equal(c->proxy.agent_check_from, AGENT_CHECK_FROM_CONFIG);
        assert_string_equal(c->proxy.proxy_address, "127.0.0.2");
        config_free(c);
}

/* Behind an ALB there is no HAProxy: health_port alone makes [proxy]
 * valid, and its address defaults as the agent-check's does. */
static void test_health_keys(void **state) {
        Config *c;

        c = parse_ok(POOL_OK "[proxy]\nhealth_port = 8081\n");
        assert_true(c->proxy.enabled);
        assert_int_equal(c->proxy.agent_check_port, 0);
        assert_int_equal(c->proxy.health_port, 8081);
        assert_string_equal(c->proxy.health_address, "127.0.0.2");
        assert_int_equal(c->proxy.health_from, AGENT_CHECK_FROM_POOL);
        assert_string_equal(c->proxy.health_path, "/");
        config_free(c);

        c = parse_ok("[checks]\nurl = http://127.0.0.5/\npublic_address = [::1]:80\n"
                     "[proxy]\nhealth_port = 1\nhealth_path = /healthz\nagent_check_port = 2\n");
        assert_string_equal(c->proxy.health_address, "::1");
        assert_int_equal(c->proxy.health_from, AGENT_CHECK_FROM_PUBLIC_ADDRESS);
        assert_string_equal(c->proxy.health_path, "/healthz");
        assert_int_equal(c->proxy.agent_check_port, 2);
        config_free(c);

        /* written: as written; the agent-check keeps its own default */
        c = parse_ok(POOL_OK "[proxy]\nhealth_port = 1\nhealth_address = 0.0.0.0\nagent_check_port = 2\n");
        assert_string_equal(c->proxy.health_address, "0.0.0.0");
        assert_int_equal(c->proxy.health_from, AGENT_CHECK_FROM_CONFIG);
        assert_string_equal(c->proxy.agent_check_address, "127.0.0.2");
        config_free(c);

        c = parse_ok("[proxy]\nhealth_port = 1\n");
        assert_string_equal(c->proxy.health_address, "0.0.0.0");
        assert_int_equal(c->proxy.health_from, AGENT_CHECK_FROM_WILDCARD);
        config_free(c);
}

/* ---- secret files named by the config ---- */

static void load_fails(const char *path, int code, const char *want) {
        Config *c = NULL;
        char *err = NULL;

        assert_int_equal(config_load(path, &c, &err), code);
        assert_null(c);
        assert_non_null(err);
        if (!streq(err, want))
                print_error("expected: %s\n     got: %s\n", want, err);
        assert_string_equal(err, want);
        free(err);
}

static void load_ok(const char *path) {
        Config *c = NULL;
        char *err = NULL;

        if (config_load(path, &c, &err) < 0)
                print_error("unexpected: %s\n", strna(err));
        assert_non_null(c);
        config_free(c);
}

/* In a child as uid/gid 65534: config_load() of `path` must return `code`. */
static void load_as_nobody(const char *path, int code) {
        pid_t pid = fork();
        int status = 0;

        assert_true(pid >= 0);
        if (pid == 0) {
                Config *c = NULL;
                char *err = NULL;
                int r;

                if (setresgid(65534, 65534, 65534) < 0 || setresuid(65534, 65534, 65534) < 0)
                        _exit(100);
                r = config_load(path, &c, &err);
                if (r != code)
                        fprintf(stderr, "as nobody: got %d (%s), want %d\n", r, strna(err), code);
                _exit(r == code ? 0 : 1);
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_secret_file_references(void **state) {
        char *dir = tmp_dir(), *p, *tok, *want = NULL, *text = NULL, *link = NULL, *missing = NULL, *closed = NULL;

        assert_int_equal(chmod(dir, 0755), 0);
        tok = write_file(dir, "slack-token", "xoxb-1\n", 0600);
        assert_true(asprintf(&missing, "%s/no-such-token", dir) > 0);

        /* a token file that is not there: refused at load, naming the key's line */
        assert_true(asprintf(&text, "[slack]\nchannel = #ops\n\ntoken_file = %s\n", missing) > 0);
        p = write_file(dir, "t.conf", text, 0600);
        assert_true(asprintf(&want, "%s:4: [slack] token_file: %s: cannot open: No such file or directory", p, missing) > 0);
        load_fails(p, -ENOENT, want);
        free(want), free(text), free(p);

        /* there, 0600: fine */
        assert_true(asprintf(&text, "[slack]\nchannel = #ops\ntoken_file = %s\n", tok) > 0);
        p = write_file(dir, "t.conf", text, 0600);
        load_ok(p);
        /* readable by others: the same rule as at start */
        assert_int_equal(chmod(tok, 0644), 0);
        assert_true(asprintf(&want,
                             "%s:3: [slack] token_file: %s: holds a secret but is accessible by group/others (mode 0644); "
                             "chmod 600 it",
                             strna(p), strna(tok)) > 0); /* strna(): gcc's -Wformat-overflow under ASan */
        load_fails(p, -EPERM, want);
        free(want);
        assert_int_equal(chmod(tok, 0600), 0);
        free(text), free(p);

        /* a symlink to it */
        assert_true(asprintf(&link, "%s/token-link", dir) > 0);
        assert_int_equal(symlink(tok, link), 0);
        assert_true(asprintf(&text, "[slack]\nchannel = #ops\ntoken_file = %s\n", link) > 0);
        p = write_file(dir, "t.conf", text, 0600);
        assert_true(asprintf(&want, "%s:3: [slack] token_file: %s: is a symlink, refusing; name the file itself", p, link) >
                    0);
        load_fails(p, -EPERM, want);
        free(want), free(text), free(p);

        /* every *_file that holds a secret */
        assert_true(asprintf(&text, "[slack]\nwebhook_url_file = %s\n", missing) > 0);
        p = write_file(dir, "t.conf", text, 0600);
        assert_true(asprintf(&want, "%s:2: [slack] webhook_url_file: %s: cannot open: No such file or directory", p,
                             missing) > 0);
        load_fails(p, -ENOENT, want);
        free(want), free(text), free(p);
        assert_true(asprintf(&text, POOL_OK "password_file = %s\n", missing) > 0);
        p = write_file(dir, "t.conf", text, 0600);
        assert_true(asprintf(&want, "%s:5: [pool] password_file: %s: cannot open: No such file or directory", p, missing) >
                    0);
        load_fails(p, -ENOENT, want);
        free(want), free(text), free(p);
        assert_true(asprintf(&text, "[aws]\nregion = us-east-1\ncredentials_file = %s\n", missing) > 0);
        p = write_file(dir, "t.conf", text, 0600);
        assert_true(asprintf(&want, "%s:3: [aws] credentials_file: %s: cannot open: No such file or directory", p,
                             missing) > 0);
        load_fails(p, -ENOENT, want);
        free(want), free(text), free(p);

        /* a systemd credential exists only while the service runs: left to
         * the start when checked from a shell, checked inside the service */
        p = write_file(dir, "t.conf",
                       "[slack]\nchannel = #ops\ntoken_file = /run/credentials/monkeyd.service/no-such-token\n", 0600);
        assert_int_equal(unsetenv("CREDENTIALS_DIRECTORY"), 0);
        load_ok(p);
        assert_int_equal(setenv("CREDENTIALS_DIRECTORY", "/run/credentials/monkeyd.service", 1), 0);
        assert_true(asprintf(&want,
                             "%s:3: [slack] token_file: /run/credentials/monkeyd.service/no-such-token: cannot open: No "
                             "such file or directory",
                             p) > 0);
        load_fails(p, -ENOENT, want);
        assert_int_equal(unsetenv("CREDENTIALS_DIRECTORY"), 0);
        free(want), free(p);

        /* --check-config as an unprivileged user on root's files: the rule
         * on what lstat() shows, and what cannot be seen is left to the start */
        if (geteuid() == 0) {
                assert_true(asprintf(&text, "[slack]\nchannel = #ops\ntoken_file = %s\n", tok) > 0);
                p = write_file(dir, "nobody.conf", text, 0644); /* no inline secret: others may read it */
                free(text);
                load_as_nobody(p, 0);              /* root's 0600 file: fine */
                assert_int_equal(chmod(tok, 0640), 0);
                load_as_nobody(p, -EPERM);         /* too open, seen without reading it */
                assert_int_equal(chmod(tok, 0600), 0);
                free(p);
                assert_true(asprintf(&text, "[slack]\nchannel = #ops\ntoken_file = %s\n", missing) > 0);
                p = write_file(dir, "nobody.conf", text, 0644);
                free(text);
                load_as_nobody(p, -ENOENT);        /* missing is missing for everyone */
                free(p);
                assert_true(asprintf(&closed, "%s/closed", dir) > 0);
                assert_int_equal(mkdir(closed, 0700), 0);
                free(write_file(closed, "token", "xoxb-1\n", 0600));
                assert_true(asprintf(&text, "[slack]\nchannel = #ops\ntoken_file = %s/token\n", closed) > 0);
                p = write_file(dir, "nobody.conf", text, 0644);
                free(text);
                load_as_nobody(p, 0);              /* cannot be seen: a warning, not a refusal */
                free(p);
        }

        free(tok), free(link), free(missing), free(closed);
        rm_rf(dir);
        free(dir);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_enum_strings),
                cmocka_unit_test(test_defaults),
                cmocka_unit_test(test_full_and_enabled),
                cmocka_unit_test(test_syntax_variants),
                cmocka_unit_test(test_errors),
                cmocka_unit_test(test_error_regex_and_long_line),
                cmocka_unit_test(test_secrets_not_shown),
                cmocka_unit_test(test_parse_args),
                cmocka_unit_test(test_config_load),
                cmocka_unit_test(test_reference_config),
                cmocka_unit_test(test_ladder_units),
                cmocka_unit_test(test_control_group),
                cmocka_unit_test(test_bad_bytes),
                cmocka_unit_test(test_budget),
                cmocka_unit_test(test_aws_identifiers),
                cmocka_unit_test(test_aws_routing_keys),
                cmocka_unit_test(test_urls),
                cmocka_unit_test(test_redis_url_redact),
                cmocka_unit_test(test_pool_tls_keys),
                cmocka_unit_test(test_agent_check_default),
                cmocka_unit_test(test_health_keys),
                cmocka_unit_test(test_secret_file_references),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
