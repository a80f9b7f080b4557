/* monkey-proxy-sync's command line (proxy-hooks/options.c): the --redis
 * grammar is monkeyd's (sentinel:// and unix://?db= taken), exactly one
 * target with only its own options, durations in monkeyd's grammar and
 * bounds, and --password-file by monkeyd's secret rules (group or world
 * access refused, not both a URL password and a file), and the TLS
 * options with rediss:// only. */
#include <getopt.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "options.h"
#include "testutil.h"

static int parse(char **argv, Options *o) {
        int argc = 0;

        while (argv[argc])
                argc++;
        optind = 0; /* getopt_long starts over for each argv */
        *o = (Options) {};
        return options_parse(argc, argv, o);
}

static void test_sentinel_url(void **state) {
        char *argv[] = { "x", "--pool", "web", "--redis", "sentinel://127.0.0.1:26379,127.0.0.1:26380/mymaster/2",
                         "--nginx-upstream", "/tmp/up.conf", NULL };
        Options o;

        assert_int_equal(parse(argv, &o), 0);
        assert_int_equal(o.redis.kind, REDIS_URL_SENTINEL);
        assert_int_equal(o.redis.n_sentinels, 2);
        assert_int_equal(o.redis.sentinels[1].port, 26380);
        assert_string_equal(o.redis.master, "mymaster");
        assert_int_equal(o.redis.db, 2);
        assert_int_equal(o.target, TARGET_NGINX);
        options_done(&o);
}

static void test_unix_db_and_defaults(void **state) {
        char *argv[] = { "x", "--pool", "web", "--redis", "unix:///run/redis/redis.sock?db=2",
                         "--nginx-upstream", "/tmp/up.conf", NULL };
        Options o;

        assert_int_equal(parse(argv, &o), 0);
        assert_int_equal(o.redis.kind, REDIS_URL_UNIX);
        assert_string_equal(o.redis.path, "/run/redis/redis.sock");
        assert_int_equal(o.redis.db, 2);
        assert_string_equal(o.upstream, "web");
        assert_string_equal(o.prefix, "s");
        assert_int_equal(o.interval, 5 * USEC_PER_SEC);
        assert_int_equal(o.settle, 15 * USEC_PER_SEC);
        assert_int_equal(o.log_level, -1);
        options_done(&o);

        char *argv2[] = { "x", "--pool", "web", "--haproxy-socket", "/run/h.sock", "--backend", "be",
                          "--interval", "1m30s", "--drain-grace", "2s", NULL };
        assert_int_equal(parse(argv2, &o), 0);
        assert_int_equal(o.target, TARGET_HAPROXY);
        assert_int_equal(o.redis.kind, REDIS_URL_TCP);
        assert_string_equal(o.redis.server.host, "127.0.0.1");
        assert_int_equal(o.redis.server.port, 6379);
        assert_int_equal(o.interval, 90 * USEC_PER_SEC);
        assert_int_equal(o.drain_grace, 2 * USEC_PER_SEC);
        options_done(&o);
}

static void test_usage_errors(void **state) {
        char *no_pool[] = { "x", "--nginx-upstream", "/tmp/u", NULL };
        char *bad_pool[] = { "x", "--pool", "{web}", "--nginx-upstream", "/tmp/u", NULL };
        char *no_target[] = { "x", "--pool", "web", NULL };
        char *both[] = { "x", "--pool", "web", "--nginx-upstream", "/tmp/u", "--haproxy-socket", "/h", "--backend", "b",
                         NULL };
        char *no_backend[] = { "x", "--pool", "web", "--haproxy-socket", "/h", NULL };
        char *mixed[] = { "x", "--pool", "web", "--haproxy-socket", "/h", "--backend", "b", "--upstream", "u", NULL };
        char *long_dur[] = { "x", "--pool", "web", "--nginx-upstream", "/tmp/u", "--interval", "25h", NULL };
        char *short_dur[] = { "x", "--pool", "web", "--nginx-upstream", "/tmp/u", "--interval", "50ms", NULL };
        char *bad_url[] = { "x", "--pool", "web", "--nginx-upstream", "/tmp/u", "--redis", "http://h", NULL };
        char *bad_args[] = { "x", "--pool", "web", "--nginx-upstream", "/tmp/u", "--server-args", "a;b", NULL };
        char *extra[] = { "x", "--pool", "web", "--nginx-upstream", "/tmp/u", "more", NULL };
        char **cases[] = { no_pool, bad_pool, no_target, both, no_backend, mixed, long_dur, short_dur, bad_url,
                           bad_args, extra };
        Options o;

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                assert_int_equal(parse(cases[i], &o), -EINVAL);
                assert_null(o.redis.password); /* nothing left to free */
        }
        char *help[] = { "x", "--help", NULL };
        assert_int_equal(parse(help, &o), -ECANCELED);
}

static void test_password_file(void **state) {
        _cleanup_(freep) char *dir = tmp_dir();
        _cleanup_(freep) char *group = write_file(dir, "group", "pw-group\n", 0640);
        _cleanup_(freep) char *world = write_file(dir, "world", "pw-world\n", 0604);
        _cleanup_(freep) char *good = write_file(dir, "good", "pw-good\n", 0600);
        Options o;

        char *g[] = { "x", "--pool", "web", "--nginx-upstream", "/tmp/u", "--password-file", group, NULL };
        assert_int_equal(parse(g, &o), -EINVAL);
        char *w[] = { "x", "--pool", "web", "--nginx-upstream", "/tmp/u", "--password-file", world, NULL };
        assert_int_equal(parse(w, &o), -EINVAL);

        char *ok[] = { "x", "--pool", "web", "--nginx-upstream", "/tmp/u", "--password-file", good, NULL };
        assert_int_equal(parse(ok, &o), 0);
        assert_string_equal(o.redis.password, "pw-good");
        assert_null(o.redis.user);
        options_done(&o);

        /* "syncer@" with a file names the ACL user. */
        char *user[] = { "x", "--pool", "web", "--nginx-upstream", "/tmp/u", "--redis", "redis://syncer@127.0.0.1",
                         "--password-file", good, NULL };
        assert_int_equal(parse(user, &o), 0);
        assert_string_equal(o.redis.user, "syncer");
        assert_string_equal(o.redis.password, "pw-good");
        options_done(&o);

        char *both[] = { "x", "--pool", "web", "--nginx-upstream", "/tmp/u", "--redis", "redis://u:pw@127.0.0.1",
                         "--password-file", good, NULL };
        assert_int_equal(parse(both, &o), -EINVAL);
        rm_rf(dir);
}

/* rediss:// with monkeyd's [pool] tls_* as options: read at start (a CA
 * file that cannot be read is a usage error, not a reconnect failure),
 * and only with a TLS URL. */
static void test_tls_options(void **state) {
        Options o;

        char *plain[] = { "x", "--pool", "web", "--nginx-upstream", "/tmp/u", "--tls-server-name", "redis.test", NULL };
        assert_int_equal(parse(plain, &o), -EINVAL);

        char *sys[] = { "x", "--pool", "web", "--nginx-upstream", "/tmp/u", "--redis", "rediss://redis.test:6380",
                        "--tls-server-name", "other.test", NULL };
        assert_int_equal(parse(sys, &o), 0);
        assert_true(o.redis.tls);
        assert_non_null(o.tls); /* the system's store */
        assert_string_equal(o.tls_server_name, "other.test");
        options_done(&o);
        assert_null(o.tls);

        char *sentinel[] = { "x", "--pool", "web", "--nginx-upstream", "/tmp/u", "--redis",
                             "rediss-sentinel://127.0.0.1:26380/mymaster", NULL };
        assert_int_equal(parse(sentinel, &o), 0);
        assert_int_equal(o.redis.kind, REDIS_URL_SENTINEL);
        assert_non_null(o.tls);
        options_done(&o);

        char *no_ca[] = { "x", "--pool", "web", "--nginx-upstream", "/tmp/u", "--redis", "rediss://127.0.0.1",
                          "--tls-ca-file", "/nonexistent/ca.crt", NULL };
        assert_int_equal(parse(no_ca, &o), -EINVAL);
        char *half[] = { "x", "--pool", "web", "--nginx-upstream", "/tmp/u", "--redis", "rediss://127.0.0.1",
                         "--tls-cert-file", "/nonexistent/c.crt", NULL };
        assert_int_equal(parse(half, &o), -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_sentinel_url),
                cmocka_unit_test(test_unix_db_and_defaults),
                cmocka_unit_test(test_usage_errors),
                cmocka_unit_test(test_password_file),
                cmocka_unit_test(test_tls_options),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
