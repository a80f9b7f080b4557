/* redisurl.c: the one Redis URL grammar that monkeyd's config check, its
 * pool connection and monkey-proxy-sync share. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "redisurl.h"

static void test_url_good(void **state) {
        RedisUrl u = {};
        char *err = NULL;

        assert_int_equal(redis_url_parse("redis://monkey:s%40cret@127.0.1.5:6380/3", &u, &err), 0);
        assert_null(err);
        assert_int_equal(u.kind, REDIS_URL_TCP);
        assert_string_equal(u.user, "monkey");
        assert_string_equal(u.password, "s@cret");
        assert_string_equal(u.server.host, "127.0.1.5");
        assert_int_equal(u.server.port, 6380);
        assert_int_equal(u.db, 3);
        redis_url_done(&u);
        assert_null(u.user);

        assert_int_equal(redis_url_parse("redis://127.0.0.1", &u, &err), 0);
        assert_null(u.user);
        assert_null(u.password);
        assert_int_equal(u.server.port, 6379);
        assert_int_equal(u.db, 0);
        redis_url_done(&u);

        /* ":pass@" and "pass@" are both a password without a user (AUTH pass) */
        assert_int_equal(redis_url_parse("redis://:pw@h/", &u, &err), 0);
        assert_null(u.user);
        assert_string_equal(u.password, "pw");
        assert_int_equal(u.db, 0);
        redis_url_done(&u);
        assert_int_equal(redis_url_parse("redis://pw@h:1/0", &u, &err), 0);
        assert_null(u.user);
        assert_string_equal(u.password, "pw");
        assert_true(u.bare_userinfo);
        assert_int_equal(u.server.port, 1);
        redis_url_done(&u);
        /* the last '@' ends the userinfo */
        assert_int_equal(redis_url_parse("redis://u:p@ss@h", &u, &err), 0);
        assert_string_equal(u.password, "p@ss");
        assert_string_equal(u.server.host, "h");
        redis_url_done(&u);

        /* rediss://: the same grammar, over TLS */
        assert_int_equal(redis_url_parse("rediss://monkey:pw@master.abc.cache.amazonaws.com:6380/3", &u, &err), 0);
        assert_int_equal(u.kind, REDIS_URL_TCP);
        assert_true(u.tls);
        assert_string_equal(u.user, "monkey");
        assert_string_equal(u.server.host, "master.abc.cache.amazonaws.com");
        assert_int_equal(u.server.port, 6380);
        assert_int_equal(u.db, 3);
        redis_url_done(&u);
        assert_int_equal(redis_url_parse("rediss://[::1]", &u, &err), 0);
        assert_true(u.tls);
        assert_int_equal(u.server.port, 6379);
        redis_url_done(&u);

        assert_int_equal(redis_url_parse("redis://[::1]:6390/2", &u, &err), 0);
        assert_false(u.tls);
        assert_string_equal(u.server.host, "::1");
        assert_int_equal(u.server.port, 6390);
        assert_int_equal(u.db, 2);
        redis_url_done(&u);

        assert_int_equal(redis_url_parse("unix:///run/redis/redis.sock", &u, &err), 0);
        assert_int_equal(u.kind, REDIS_URL_UNIX);
        assert_string_equal(u.path, "/run/redis/redis.sock");
        redis_url_done(&u);

        assert_int_equal(redis_url_parse("sentinel://127.0.1.1:26379,s2,[::1]:26380/my-master.1/4", &u, &err), 0);
        assert_int_equal(u.kind, REDIS_URL_SENTINEL);
        assert_int_equal(u.n_sentinels, 3);
        assert_string_equal(u.sentinels[0].host, "127.0.1.1");
        assert_int_equal(u.sentinels[0].port, 26379);
        assert_string_equal(u.sentinels[1].host, "s2");
        assert_int_equal(u.sentinels[1].port, 26379); /* the Sentinel default */
        assert_string_equal(u.sentinels[2].host, "::1");
        assert_int_equal(u.sentinels[2].port, 26380);
        assert_string_equal(u.master, "my-master.1");
        assert_int_equal(u.db, 4);
        redis_url_done(&u);

        assert_int_equal(redis_url_parse("sentinel://app:pw@127.0.0.1:5000/m", &u, &err), 0);
        assert_string_equal(u.user, "app");
        assert_string_equal(u.password, "pw");
        assert_int_equal(u.db, 0);
        assert_false(u.tls);
        redis_url_done(&u);

        /* Sentinel over TLS: the sentinels and the master */
        assert_int_equal(redis_url_parse("rediss-sentinel://app:pw@s1.cache.test,s2.cache.test:26380/m/2", &u, &err), 0);
        assert_int_equal(u.kind, REDIS_URL_SENTINEL);
        assert_true(u.tls);
        assert_int_equal(u.n_sentinels, 2);
        assert_int_equal(u.sentinels[1].port, 26380);
        assert_int_equal(u.db, 2);
        redis_url_done(&u);

        /* one host: one seed, the server */
        assert_int_equal(redis_url_parse("rediss://clustercfg.web.cache.test", &u, &err), 0);
        assert_int_equal(u.n_seeds, 1);
        assert_string_equal(u.seeds[0].host, "clustercfg.web.cache.test");
        assert_string_equal(u.server.host, "clustercfg.web.cache.test");
        assert_int_equal(u.server.port, 6379);
        redis_url_done(&u);

        /* several hosts: a cluster's seeds */
        assert_int_equal(redis_url_parse("redis://u:p@127.0.0.1:7000,[::1]:7001,node3/0", &u, &err), 0);
        assert_int_equal(u.kind, REDIS_URL_TCP);
        assert_int_equal(u.n_seeds, 3);
        assert_string_equal(u.server.host, "127.0.0.1");
        assert_int_equal(u.server.port, 7000);
        assert_string_equal(u.seeds[1].host, "::1");
        assert_int_equal(u.seeds[1].port, 7001);
        assert_string_equal(u.seeds[2].host, "node3");
        assert_int_equal(u.seeds[2].port, 6379);
        assert_string_equal(u.password, "p");
        redis_url_done(&u);
}

static void test_url_bad(void **state) {
        static const char *const bad[] = {
                "",
                "redisss://h",
                "rediss:/h",
                "rediss://",
                "http://h",
                "redis://",
                "redis://h:0",
                "redis://h:65536",
                "redis://h:port",
                "redis://h/x",
                "redis://h/1001",
                "redis://h/1/2",
                "redis://::1:6379",
                "redis://[::1",
                "redis://h x",
                "redis://u:%zz@h",
                "redis://u:%4@h",
                "redis://u:%00@h",
                "unix://relative.sock",
                "unix://",
                "sentinel://h:1",
                "sentinel://h:1/",
                "sentinel:///m",
                "sentinel://h:1,/m",
                "sentinel://h:1,,h2/m",
                "sentinel://h:1/m{x}",
                "sentinel://h:1/m/x",
                "sentinel://1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17/m",
                "redis://:6379",
                "redis://[::1]x",
                "redis://h;rm",
                "redis://a%zz@h",
                "redis://h1,h2/1",  /* a cluster has only DB 0 */
                "redis://h1,",
                "redis://h1,,h2",
                "redis://,h1",
                "redis://1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17",
                "rediss-sentinel://h:1",
                "redis-sentinel://h:1/m",
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                RedisUrl u = {};
                char *err = NULL;

                int r = redis_url_parse(bad[i], &u, &err);

                if (r != -EINVAL)
                        print_error("accepted: %s\n", bad[i]);
                assert_int_equal(r, -EINVAL);
                assert_non_null(err);
                assert_non_null(strstr(err, "invalid Redis URL"));
                free(err);
                assert_null(u.server.host);
        }

        /* errors never echo the password */
        {
                RedisUrl u = {};
                char *err = NULL;
                assert_int_equal(redis_url_parse("redis://u:hunter2@h:0", &u, &err), -EINVAL);
                assert_null(strstr(err, "hunter2"));
                free(err);
        }
}

/* The disagreement this module ended: the config check took
 * "unix:///run/redis.sock?db=2", the pool connected to a socket named
 * "/run/redis.sock?db=2", and proxy-sync used DB 2. Now it is the socket
 * /run/redis.sock and DB 2 for all of them, and a bad query is refused. */
static void test_unix_db(void **state) {
        static const char *const bad[] = {
                "unix:///run/redis.sock?db=",   "unix:///run/redis.sock?db=1001", "unix:///run/redis.sock?db=a",
                "unix:///run/redis.sock?db=-1", "unix:///run/redis.sock?x=1",     "unix:///run/redis.sock?",
                "unix://?db=2",                 "unix:///?db=2",
        };
        RedisUrl u = {};
        char *err = NULL, long_path[200];

        assert_int_equal(redis_url_parse("unix:///run/redis.sock?db=2", &u, &err), 0);
        assert_null(err);
        assert_int_equal(u.kind, REDIS_URL_UNIX);
        assert_string_equal(u.path, "/run/redis.sock");
        assert_int_equal(u.db, 2);
        redis_url_done(&u);
        assert_int_equal(redis_url_parse("unix:///run/redis.sock?db=1000", &u, &err), 0);
        assert_int_equal(u.db, 1000);
        redis_url_done(&u);
        assert_int_equal(redis_url_parse("unix:///run/redis.sock", &u, &err), 0);
        assert_int_equal(u.db, 0);
        redis_url_done(&u);

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                int r = redis_url_parse(bad[i], &u, &err);

                if (r != -EINVAL)
                        print_error("accepted: %s\n", bad[i]);
                assert_int_equal(r, -EINVAL);
                assert_non_null(strstr(err, "invalid Redis URL"));
                free(err), err = NULL;
                assert_null(u.path);
        }

        /* longer than sun_path: no socket could have that name */
        memcpy(long_path, "unix:///", 8);
        memset(long_path + 8, 'a', sizeof(long_path) - 9);
        long_path[sizeof(long_path) - 1] = '\0';
        assert_int_equal(redis_url_parse(long_path, &u, &err), -EINVAL);
        free(err);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_url_good),
                cmocka_unit_test(test_url_bad),
                cmocka_unit_test(test_unix_db),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
