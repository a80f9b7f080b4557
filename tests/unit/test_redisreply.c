/* The Redis replies both clients read (agent/base/redisreply.c), fed
 * hand-built hiredis replies: Sentinel's get-master-addr-by-name and ROLE,
 * well-formed and not (nil, no reply, wrong types, wrong element counts,
 * ports out of range or not digits, roles we do not know), an error
 * reply's text and the typed reads. What a client does with the verdict
 * is tests/integration/test_pool.py's and test_proxysync.py's. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "redisreply.h"
#include "replyfix.h"

#define MASTER "mymaster"

/* Decodes r as Sentinel's answer and checks the verdict: on failure the
 * outputs stay as they were and the message holds `why`. */
static void sentinel_is(redisReply *r, int expected, const char *why) {
        char *host = NULL, *error = NULL;
        uint16_t port = 4242;

        assert_int_equal(redisreply_sentinel_master(r, MASTER, &host, &port, &error), expected);
        assert_null(host);
        assert_int_equal(port, 4242);
        assert_non_null(error);
        if (!strstr(error, why))
                fail_msg("message '%s' does not say '%s'", error, why);
        free(error);
        /* the message is optional */
        assert_int_equal(redisreply_sentinel_master(r, MASTER, &host, &port, NULL), expected);
        assert_null(host);
        rep_free(r);
}

static void sentinel_bad_port(redisReply *port, const char *why) {
        sentinel_is(rep_arr(rep_str("127.0.0.1"), port, NULL), -EBADMSG, why);
}

static void test_sentinel_master(void **state) {
        char *host = NULL, *error = NULL;
        uint16_t port = 0;
        redisReply *r;

        r = rep_arr(rep_str("127.0.0.1"), rep_str("6390"), NULL);
        assert_int_equal(redisreply_sentinel_master(r, MASTER, &host, &port, &error), 0);
        assert_string_equal(host, "127.0.0.1");
        assert_int_equal(port, 6390);
        assert_null(error);
        free(host);
        rep_free(r);

        /* the ends of the range, and a port sent as an integer */
        r = rep_arr(rep_str("::1"), rep_str("65535"), NULL);
        assert_int_equal(redisreply_sentinel_master(r, MASTER, &host, &port, NULL), 0);
        assert_string_equal(host, "::1");
        assert_int_equal(port, 65535);
        free(host);
        rep_free(r);
        r = rep_arr(rep_str("redis-1"), rep_int(1), NULL);
        assert_int_equal(redisreply_sentinel_master(r, MASTER, &host, &port, NULL), 0);
        assert_string_equal(host, "redis-1");
        assert_int_equal(port, 1);
        free(host);
        rep_free(r);
}

static void test_sentinel_master_malformed(void **state) {
        redisReply *r;

        /* nil: the sentinel does not know the master; no reply at all */
        sentinel_is(rep_nil(), -ENOENT, "does not know master '" MASTER "'");
        sentinel_is(NULL, -EBADMSG, "unexpected reply to SENTINEL get-master-addr-by-name");

        /* not an array: the error's text is passed on */
        sentinel_is(rep_err("ERR unknown command 'SENTINEL'"), -EBADMSG,
                    "get-master-addr-by-name: ERR unknown command 'SENTINEL'");
        sentinel_is(rep_str("127.0.0.1:6390"), -EBADMSG, "unexpected reply");
        sentinel_is(rep_int(6390), -EBADMSG, "unexpected reply");

        /* {host, port} and nothing else */
        sentinel_is(rep_arr(NULL), -EBADMSG, "unexpected reply");
        sentinel_is(rep_arr(rep_str("127.0.0.1"), NULL), -EBADMSG, "unexpected reply");
        sentinel_is(rep_arr(rep_str("127.0.0.1"), rep_str("6390"), rep_str("6391"), NULL), -EBADMSG,
                    "unexpected reply");

        /* the host: a non-empty string */
        sentinel_is(rep_arr(rep_int(127), rep_str("6390"), NULL), -EBADMSG, "no host");
        sentinel_is(rep_arr(rep_nil(), rep_str("6390"), NULL), -EBADMSG, "no host");
        sentinel_is(rep_arr(rep_str(""), rep_str("6390"), NULL), -EBADMSG, "no host");
        sentinel_is(rep_arr(rep_arr(rep_str("127.0.0.1"), NULL), rep_str("6390"), NULL), -EBADMSG, "no host");
        sentinel_is(rep_arr(rep_err("ERR 127.0.0.1"), rep_str("6390"), NULL), -EBADMSG, "no host");
        r = rep_str("127.0.0.1xevil"); /* "127.0.0.1\0evil": it would be cut short */
        r->str[9] = '\0';
        sentinel_is(rep_arr(r, rep_str("6390"), NULL), -EBADMSG, "no host");

        /* the port: out of range */
        sentinel_bad_port(rep_str("0"), "bad port '0'");
        sentinel_bad_port(rep_str("65536"), "bad port '65536'");
        sentinel_bad_port(rep_str("99999999999999999999999"), "bad port '99999999999999999999999'");
        sentinel_bad_port(rep_int(0), "bad port");
        sentinel_bad_port(rep_int(65536), "bad port");
        sentinel_bad_port(rep_int(-6390), "bad port");
        /* ... not digits alone (strtol would take the sign, blanks, 0x) */
        sentinel_bad_port(rep_str(""), "bad port ''");
        sentinel_bad_port(rep_str("63a0"), "bad port '63a0'");
        sentinel_bad_port(rep_str("-1"), "bad port '-1'");
        sentinel_bad_port(rep_str("+6390"), "bad port '+6390'");
        sentinel_bad_port(rep_str(" 6390"), "bad port ' 6390'");
        sentinel_bad_port(rep_str("6390 "), "bad port '6390 '");
        sentinel_bad_port(rep_str("0x18f6"), "bad port '0x18f6'");
        /* ... not a string or an integer */
        sentinel_bad_port(rep_nil(), "bad port");
        sentinel_bad_port(rep_err("ERR"), "bad port");
        sentinel_bad_port(rep_arr(rep_str("6390"), NULL), "bad port");
}

static void role_is(redisReply *r, int expected, const char *role) {
        const char *got = NULL;

        assert_int_equal(redisreply_role(r, &got), expected);
        if (role)
                assert_string_equal(got, role);
        else
                assert_null(got);
        assert_int_equal(redisreply_role(r, NULL), expected);
        rep_free(r);
}

static void test_role(void **state) {
        redisReply *r;

        role_is(rep_arr(rep_str("master"), rep_int(123), rep_arr(NULL), NULL), 1, "master");
        role_is(rep_arr(rep_str("slave"), rep_str("127.0.0.1"), rep_int(6379), rep_str("connected"), rep_int(1),
                        NULL),
                0, "slave");
        role_is(rep_arr(rep_str("sentinel"), rep_arr(rep_str(MASTER), NULL), NULL), 0, "sentinel");

        /* a role we do not know is not "master": only a master takes writes */
        role_is(rep_arr(rep_str("replica"), NULL), 0, "replica");
        role_is(rep_arr(rep_str("MASTER"), NULL), 0, "MASTER");
        role_is(rep_arr(rep_str("masters"), NULL), 0, "masters");
        role_is(rep_arr(rep_str("maste"), NULL), 0, "maste");
        role_is(rep_arr(rep_str(""), NULL), 0, "");
        r = rep_str("master!");
        r->str[6] = '\0'; /* "master\0", 7 bytes */
        role_is(rep_arr(r, NULL), 0, "master");

        /* not {role, ...} */
        role_is(NULL, -EBADMSG, NULL);
        role_is(rep_nil(), -EBADMSG, NULL);
        role_is(rep_str("master"), -EBADMSG, NULL);
        role_is(rep_int(1), -EBADMSG, NULL);
        role_is(rep_err("NOAUTH Authentication required."), -EBADMSG, NULL);
        role_is(rep_arr(NULL), -EBADMSG, NULL);
        role_is(rep_arr(rep_int(1), NULL), -EBADMSG, NULL);
        role_is(rep_arr(rep_nil(), NULL), -EBADMSG, NULL);
        role_is(rep_arr(rep_arr(rep_str("master"), NULL), NULL), -EBADMSG, NULL);
}

static void test_error_and_reads(void **state) {
        long long v = 7;
        redisReply *r;
        char *s;

        r = rep_err("NOPERM this user has no permissions");
        assert_string_equal(redisreply_error(r), "NOPERM this user has no permissions");
        assert_false(redisreply_is_string(r));
        free(r->str); /* an error without text still is one */
        r->str = NULL;
        r->len = 0;
        assert_string_equal(redisreply_error(r), "");
        rep_free(r);
        assert_null(redisreply_error(NULL));
        r = rep_str("ERR but a string");
        assert_null(redisreply_error(r));
        rep_free(r);
        r = rep_nil();
        assert_null(redisreply_error(r));
        rep_free(r);

        /* a status is a string too */
        r = rep_str("OK");
        r->type = REDIS_REPLY_STATUS;
        assert_true(redisreply_is_string(r));
        assert_true(redisreply_streq(r, "OK"));
        assert_false(redisreply_streq(r, "O"));
        assert_false(redisreply_streq(r, "OK!"));
        s = redisreply_strdup(r);
        assert_string_equal(s, "OK");
        free(s);
        rep_free(r);
        assert_false(redisreply_is_string(NULL));
        assert_null(redisreply_strdup(NULL));

        r = rep_int(-3);
        assert_int_equal(redisreply_integer(r, &v), 0);
        assert_int_equal(v, -3);
        assert_null(redisreply_strdup(r));
        rep_free(r);
        r = rep_str("42");
        assert_int_equal(redisreply_integer(r, &v), 0);
        assert_int_equal(v, 42);
        rep_free(r);
        v = 7;
        redisReply *bad[] = { rep_str(""), rep_str("4x"), rep_str("99999999999999999999"), rep_nil(),
                              rep_err("ERR 1"), rep_arr(rep_int(1), NULL) };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                assert_int_equal(redisreply_integer(bad[i], &v), -EBADMSG);
                rep_free(bad[i]);
        }
        assert_int_equal(redisreply_integer(NULL, &v), -EBADMSG);
        assert_int_equal(v, 7);
}

/* The reader every connection uses: an array of a million and more
 * elements is an error, never an allocation of gigabytes. */
static void test_reader_caps_arrays(void **state) {
        redisReader *r = redisreply_reader_new();
        void *reply = NULL;

        assert_non_null(r);
        assert_int_equal(redisReaderFeed(r, "*3\r\n:1\r\n$1\r\nx\r\n*0\r\n", strlen("*3\r\n:1\r\n$1\r\nx\r\n*0\r\n")), REDIS_OK);
        assert_int_equal(redisReaderGetReply(r, &reply), REDIS_OK);
        assert_non_null(reply);
        assert_int_equal(((redisReply *) reply)->elements, 3);
        freeReplyObject(reply);
        reply = NULL;
        assert_int_equal(redisReaderFeed(r, "*777777777\r\n", strlen("*777777777\r\n")), REDIS_OK);
        assert_int_equal(redisReaderGetReply(r, &reply), REDIS_ERR);
        assert_null(reply);
        redisReaderFree(r);

        r = redisreply_reader_new();
        assert_non_null(r);
        assert_int_equal(redisReaderFeed(r, "*1048577\r\n", strlen("*1048577\r\n")), REDIS_OK);
        assert_int_equal(redisReaderGetReply(r, &reply), REDIS_ERR);
        redisReaderFree(r);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_sentinel_master),
                cmocka_unit_test(test_sentinel_master_malformed),
                cmocka_unit_test(test_role),
                cmocka_unit_test(test_error_and_reads),
                cmocka_unit_test(test_reader_caps_arrays),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
