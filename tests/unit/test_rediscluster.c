/* Redis Cluster's rules (agent/base/rediscluster.c): key slots checked
 * against what redis-server 7.0's CLUSTER KEYSLOT answered for the same
 * keys (hash tags included), the error replies that redirect a command
 * (MOVED, ASK, with IPv4, IPv6, a name, no host) or ask for patience
 * (TRYAGAIN, CLUSTERDOWN), malformed ones, and CLUSTER SLOTS read for a
 * slot's owner and for the nodes to ask next. Following them is
 * pool_link.c's, tested in tests/integration/test_cluster.py. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "rediscluster.h"
#include "replyfix.h"

static void test_keyslot(void **state) {
        static const struct {
                const char *key;
                unsigned slot;
        } cases[] = {
                /* CLUSTER KEYSLOT on redis-server 7.0.15 */
                { "foo", 12182 },
                { "bar", 5061 },
                { "hello", 866 },
                { "somekey", 11058 },
                { "123456789", 12739 },
                { "foo{}{bar}", 8363 },    /* an empty tag: the whole key */
                { "foo{{bar}}zap", 4015 }, /* the tag is "{bar" */
                { "foo{bar}{zap}", 5061 }, /* the first tag, "bar" */
                { "monkey:{web}:serving", 9635 },
                { "{", 4092 },
                { "a}b{", 6027 },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                if (redis_cluster_keyslot(cases[i].key, strlen(cases[i].key)) != cases[i].slot)
                        fail_msg("keyslot(%s) = %u, Redis says %u", cases[i].key,
                                 redis_cluster_keyslot(cases[i].key, strlen(cases[i].key)), cases[i].slot);
        /* every key of a pool in the pool's slot */
        assert_int_equal(redis_cluster_keyslot("monkey:{web}:lease:app1", 23), 9635);
        assert_int_equal(redis_cluster_keyslot("", 0), 0);
}

static void redirect_is(const char *error, RedisClusterVerdict verdict, unsigned slot, const char *host,
                        uint16_t port) {
        RedisClusterRedirect r;

        assert_int_equal(redis_cluster_redirect_parse(error, &r), 0);
        if (r.verdict != verdict)
                fail_msg("'%s': verdict %d, expected %d", error ? error : "(null)", r.verdict, verdict);
        assert_int_equal(r.slot, slot);
        if (host)
                assert_string_equal(r.host, host);
        else
                assert_null(r.host);
        assert_int_equal(r.port, port);
        redis_cluster_redirect_done(&r);
}

static void test_redirect(void **state) {
        RedisClusterRedirect r;

        redirect_is("MOVED 9635 127.0.0.1:7002", REDIS_CLUSTER_MOVED, 9635, "127.0.0.1", 7002);
        redirect_is("ASK 9635 127.0.0.1:7001", REDIS_CLUSTER_ASK, 9635, "127.0.0.1", 7001);
        redirect_is("MOVED 0 ::1:7000", REDIS_CLUSTER_MOVED, 0, "::1", 7000);
        redirect_is("MOVED 16383 [::1]:7000", REDIS_CLUSTER_MOVED, 16383, "::1", 7000);
        redirect_is("MOVED 12 redis-0.cache.test:6379", REDIS_CLUSTER_MOVED, 12, "redis-0.cache.test", 6379);
        /* no endpoint to give: the node asked */
        redirect_is("MOVED 12 :6380", REDIS_CLUSTER_MOVED, 12, NULL, 6380);
        redirect_is("TRYAGAIN Multiple keys request during rehashing of slot", REDIS_CLUSTER_TRYAGAIN, 0, NULL,
                    0);
        redirect_is("CLUSTERDOWN The cluster is down", REDIS_CLUSTER_DOWN, 0, NULL, 0);
        redirect_is("CLUSTERDOWN Hash slot not served", REDIS_CLUSTER_DOWN, 0, NULL, 0);
        /* not the cluster's: the command's own answer */
        redirect_is("ERR unknown command", REDIS_CLUSTER_NONE, 0, NULL, 0);
        redirect_is("MOVEDX 1 a:1", REDIS_CLUSTER_NONE, 0, NULL, 0);
        redirect_is("ASKING is not allowed", REDIS_CLUSTER_NONE, 0, NULL, 0);
        redirect_is(NULL, REDIS_CLUSTER_NONE, 0, NULL, 0);

        static const char *const bad[] = {
                "MOVED", "MOVED 1", "MOVED x 127.0.0.1:7000", "MOVED 16384 127.0.0.1:7000", "MOVED -1 a:1",
                "MOVED +1 a:1", "MOVED 1 127.0.0.1", "MOVED 1 127.0.0.1:0", "MOVED 1 127.0.0.1:65536",
                "MOVED 1 127.0.0.1:70a", "ASK 1 []:7000", "MOVED  1 a:1", "MOVED 1 a b:1",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                if (redis_cluster_redirect_parse(bad[i], &r) != -EBADMSG)
                        fail_msg("'%s' was read", bad[i]);
}

static redisReply *node(const char *host, long long port, const char *id) {
        return rep_arr(rep_str(host), rep_int(port), rep_str(id), NULL);
}

static void test_slots(void **state) {
        redisReply *slots = rep_arr(
                rep_arr(rep_int(0), rep_int(5460), node("127.0.0.1", 7000, "a"), node("127.0.0.1", 7003, "d"),
                        NULL),
                rep_arr(rep_int(5461), rep_int(10922), node("", 7001, "b"), node("127.0.0.1", 7004, "e"), NULL),
                rep_arr(rep_int(10923), rep_int(16383), node("::1", 7002, "c"), node("?", 7005, "f"),
                        node("127.0.0.1", 7003, "d"), NULL),
                NULL);
        RedisEndpoint *nodes = NULL;
        char *host = NULL;
        uint16_t port = 0;
        size_t n = 0;

        assert_int_equal(redis_cluster_slot_owner(slots, 0, &host, &port), 0);
        assert_string_equal(host, "127.0.0.1");
        assert_int_equal(port, 7000);
        free(host);
        assert_int_equal(redis_cluster_slot_owner(slots, 9635, &host, &port), 0);
        assert_null(host); /* "" : the node asked */
        assert_int_equal(port, 7001);
        assert_int_equal(redis_cluster_slot_owner(slots, 16383, &host, &port), 0);
        assert_string_equal(host, "::1");
        assert_int_equal(port, 7002);
        free(host);

        assert_int_equal(redis_cluster_slot_nodes(slots, &nodes, &n), 0);
        assert_int_equal(n, 4); /* no endpoint: skipped; 7003 once */
        assert_string_equal(nodes[0].host, "127.0.0.1");
        assert_int_equal(nodes[0].port, 7000);
        assert_int_equal(nodes[1].port, 7003);
        assert_int_equal(nodes[2].port, 7004);
        assert_string_equal(nodes[3].host, "::1");
        redis_cluster_nodes_free(nodes, n);
        rep_free(slots);

        /* a cluster that does not cover the slot */
        slots = rep_arr(rep_arr(rep_int(0), rep_int(99), node("127.0.0.1", 7000, "a"), NULL), NULL);
        assert_int_equal(redis_cluster_slot_owner(slots, 100, &host, &port), -ENOENT);
        rep_free(slots);

        /* shapes that are not CLUSTER SLOTS */
        redisReply *bad[] = {
                rep_err("ERR This instance has cluster support disabled"),
                rep_arr(rep_arr(rep_int(0), rep_int(99), NULL), NULL),
                rep_arr(rep_arr(rep_int(99), rep_int(0), node("a", 1, "x"), NULL), NULL),
                rep_arr(rep_arr(rep_int(0), rep_int(16384), node("a", 1, "x"), NULL), NULL),
                rep_arr(rep_arr(rep_int(0), rep_int(99), node("a", 0, "x"), NULL), NULL),
                rep_arr(rep_arr(rep_int(0), rep_int(99), rep_str("a:1"), NULL), NULL),
                rep_arr(rep_arr(rep_int(0), rep_int(99), node("bad host", 1, "x"), NULL), NULL),
                rep_arr(rep_int(7), NULL),
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                if (redis_cluster_slot_owner(bad[i], 5, &host, &port) != -EBADMSG)
                        fail_msg("shape %zu was read as CLUSTER SLOTS", i);
                if (redis_cluster_slot_nodes(bad[i], &nodes, &n) != -EBADMSG)
                        fail_msg("shape %zu gave nodes", i);
                rep_free(bad[i]);
        }
        assert_int_equal(redis_cluster_slot_owner(NULL, 5, &host, &port), -EBADMSG);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_keyslot),
                cmocka_unit_test(test_redirect),
                cmocka_unit_test(test_slots),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
