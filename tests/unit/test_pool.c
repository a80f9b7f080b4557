/* The pool client without Redis: the URL as shown, the decoders of every
 * reply it reads (fed hand-built hiredis replies; Sentinel's and ROLE's
 * are test_redisreply.c's), the event JSON, the backoff bounds, and the
 * client itself against servers that refuse or never answer, stepped on a
 * real sd-event loop. The Redis side of the
 * scripts is exercised by tests/integration/test_pool.py. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#include "config.h"
#include "pool.h"
#include "pool_scripts.h"
#include "replyfix.h"

static void json_putp(json_object **o) {
        if (*o)
                json_object_put(*o);
}

/* --- URLs (the grammar is tests/unit/test_redisurl.c's) ---------------------- */

/* --- script replies ----------------------------------------------------- */

static void test_leave_reply(void **state) {
        PoolLeaveReply v = {};
        redisReply *r;

        r = rep_arr(rep_str("left"), rep_int(3), rep_int(3), rep_int(1),
                    rep_str("3 still serving, 1 out (max_unavailable 1)"), NULL);
        assert_int_equal(pool_leave_reply_decode(r, &v), 0);
        assert_int_equal(v.result, POOL_LEAVE_LEFT);
        assert_int_equal(v.serving, 3);
        assert_int_equal(v.serving_alive, 3);
        assert_int_equal(v.out, 1);
        assert_string_equal(v.detail, "3 still serving, 1 out (max_unavailable 1)");
        pool_leave_reply_done(&v);
        assert_null(v.detail);
        rep_free(r);

        r = rep_arr(rep_str("denied"), rep_int(4), rep_int(4), rep_int(1), rep_str("max_unavailable 1: web-2 is out"),
                    NULL);
        assert_int_equal(pool_leave_reply_decode(r, &v), 0);
        assert_int_equal(v.result, POOL_LEAVE_DENIED);
        assert_string_equal(v.detail, "max_unavailable 1: web-2 is out");
        pool_leave_reply_done(&v);
        rep_free(r);

        /* Lua numbers may come back as strings from other clients: accepted */
        r = rep_arr(rep_str("already_out"), rep_str("2"), rep_int(2), rep_int(0), rep_str("x"), NULL);
        assert_int_equal(pool_leave_reply_decode(r, &v), 0);
        assert_int_equal(v.result, POOL_LEAVE_ALREADY_OUT);
        assert_int_equal(v.serving, 2);
        pool_leave_reply_done(&v);
        rep_free(r);

        /* an error reply: -EIO, the text as detail */
        r = rep_err("WRONGTYPE Operation against a key holding the wrong kind of value");
        assert_int_equal(pool_leave_reply_decode(r, &v), -EIO);
        assert_int_equal(v.result, POOL_LEAVE_UNREACHABLE);
        assert_non_null(strstr(v.detail, "WRONGTYPE"));
        pool_leave_reply_done(&v);
        rep_free(r);

        /* shapes that are not ours */
        redisReply *bad[] = {
                rep_arr(rep_str("left"), rep_int(1), rep_int(1), rep_int(1), NULL),
                rep_arr(rep_str("gone"), rep_int(1), rep_int(1), rep_int(1), rep_str("x"), NULL),
                rep_arr(rep_str("left"), rep_str("x1"), rep_int(1), rep_int(1), rep_str("x"), NULL),
                rep_arr(rep_str("left"), rep_int(1), rep_int(1), rep_int(1), rep_int(5), NULL),
                rep_int(1),
                rep_nil(),
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                v = (PoolLeaveReply) { .detail = NULL };
                assert_int_equal(pool_leave_reply_decode(bad[i], &v), -EBADMSG);
                assert_null(v.detail);
                rep_free(bad[i]);
        }
        assert_int_equal(pool_leave_reply_decode(NULL, &v), -EBADMSG);

        assert_string_equal(pool_leave_result_to_string(POOL_LEAVE_DENIED), "denied");
        assert_string_equal(pool_leave_result_to_string(POOL_LEAVE_UNREACHABLE), "unreachable");
        assert_null(pool_leave_result_to_string(_POOL_LEAVE_RESULT_MAX));
}

static json_object *member_at(json_object *view, size_t i) {
        json_object *members;
        assert_true(json_object_object_get_ex(view, "members", &members));
        return json_object_array_get_idx(members, i);
}

static const char *jstr(json_object *o, const char *key) {
        json_object *v;
        if (!json_object_object_get_ex(o, key, &v) || !v)
                return NULL;
        return json_object_get_string(v);
}

static int64_t jint(json_object *o, const char *key) {
        json_object *v;
        assert_true(json_object_object_get_ex(o, key, &v));
        assert_non_null(v);
        return json_object_get_int64(v);
}

static bool jnull(json_object *o, const char *key) {
        json_object *v = NULL;
        return json_object_object_get_ex(o, key, &v) && !v;
}

static void test_view_decode(void **state) {
        _cleanup_(json_putp) json_object *v = NULL;
        json_object *out, *m;
        redisReply *r;

        /* web-1 alive, web-2 dead (no lease), ourselves (no lease yet: counts),
         * an orphan address nobody owns; web-4 out for 60s more */
        r = rep_arr(rep_int(1700000000000),
                    rep_arr(rep_str("127.0.0.2:80"), rep_str("web-1"), rep_str("SERVING"), rep_int(2500), rep_int(500),
                            rep_str("127.0.0.3:80"), rep_str("web-2"), rep_str("SERVING"), rep_int(-2), rep_int(9000),
                            rep_str("127.0.0.9:80"), rep_str("me"), rep_str("SERVING"), rep_int(-2), rep_int(-1),
                            rep_str("127.0.0.7:80"), rep_str(""), rep_str(""), rep_int(-2), rep_int(-1), NULL),
                    rep_arr(rep_str("web-4"), rep_str("127.0.0.5:80"), rep_str("DRAINING"), rep_int(-1), rep_int(100),
                            rep_int(60000), NULL),
                    NULL);
        assert_int_equal(pool_view_decode(r, "127.0.0.9:80", &v), 0);
        assert_int_equal(jint(v, "serving_count"), 4);
        assert_int_equal(jint(v, "serving_alive"), 2);
        assert_true(json_object_object_get_ex(v, "out", &out));
        assert_int_equal(json_object_array_length(out), 1);
        assert_string_equal(json_object_get_string(json_object_array_get_idx(out, 0)), "web-4");

        m = member_at(v, 0);
        assert_string_equal(jstr(m, "host"), "web-1");
        assert_string_equal(jstr(m, "addr"), "127.0.0.2:80");
        assert_string_equal(jstr(m, "state"), "SERVING");
        assert_int_equal(jint(m, "lease_ttl_ms"), 2500);
        assert_int_equal(jint(m, "heartbeat_age_ms"), 500);
        assert_true(json_object_get_boolean(json_object_object_get(m, "serving")));
        m = member_at(v, 1);
        assert_true(jnull(m, "lease_ttl_ms")); /* -2: no lease */
        m = member_at(v, 3);
        assert_true(jnull(m, "host"));
        assert_true(jnull(m, "heartbeat_age_ms"));
        m = member_at(v, 4);
        assert_string_equal(jstr(m, "host"), "web-4");
        assert_false(json_object_get_boolean(json_object_object_get(m, "serving")));
        assert_int_equal(jint(m, "out_expires_in_ms"), 60000);
        assert_int_equal(jint(m, "lease_ttl_ms"), -1); /* a lease without expiry is shown as is */
        rep_free(r);

        /* without self, the lease-less self does not count */
        json_object_put(TAKE_PTR(v));
        r = rep_arr(rep_int(1), rep_arr(rep_str("a:1"), rep_str("me"), rep_str("S"), rep_int(-2), rep_int(-1), NULL),
                    rep_arr(NULL), NULL);
        assert_int_equal(pool_view_decode(r, NULL, &v), 0);
        assert_int_equal(jint(v, "serving_alive"), 0);
        rep_free(r);

        /* bad shapes */
        redisReply *bad[] = {
                rep_arr(rep_int(1), rep_arr(rep_str("a"), NULL), rep_arr(NULL), NULL),
                rep_arr(rep_int(1), rep_arr(NULL), rep_arr(rep_str("a"), NULL), NULL),
                rep_arr(rep_int(1), rep_arr(NULL), NULL),
                rep_arr(rep_str("x"), rep_arr(NULL), rep_arr(NULL), NULL),
                rep_arr(rep_int(1), rep_arr(rep_str("a:1"), rep_str("h"), rep_str("S"), rep_str("n"), rep_int(1), NULL),
                        rep_arr(NULL), NULL),
                rep_err("ERR boom"),
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                json_object *x = NULL;
                assert_int_equal(pool_view_decode(bad[i], "a:1", &x), -EBADMSG);
                assert_null(x);
                rep_free(bad[i]);
        }
}

/* The replies the link and the membership read besides the leave's and
 * the view's: the join, the heartbeat, SCRIPT LOAD, the errors that decide
 * between EVAL, reconnecting and "degraded", and Sentinel's failover news. */
static void test_more_replies(void **state) {
        long long added = -1, serving = -1;
        char sha[41];
        PoolSwitchMaster m = {};
        redisReply *r;

        r = rep_arr(rep_int(1), rep_int(7), NULL);
        assert_int_equal(pool_join_reply_decode(r, &added, &serving), 0);
        assert_int_equal(added, 1);
        assert_int_equal(serving, 7);
        rep_free(r);
        r = rep_arr(rep_int(0), rep_str("3"), NULL); /* lenient as every decoder */
        assert_int_equal(pool_join_reply_decode(r, &added, &serving), 0);
        assert_int_equal(added, 0);
        assert_int_equal(serving, 3);
        rep_free(r);
        redisReply *bad_join[] = {
                rep_arr(rep_int(1), NULL), rep_arr(rep_int(1), rep_int(2), rep_int(3), NULL),
                rep_arr(rep_str("x"), rep_int(2), NULL), rep_int(1), rep_err("NOPERM no"), rep_nil(),
        };
        for (size_t i = 0; i < ELEMENTSOF(bad_join); i++) {
                added = serving = -1;
                assert_int_equal(pool_join_reply_decode(bad_join[i], &added, &serving), -EBADMSG);
                assert_int_equal(added, -1); /* not written on failure */
                assert_int_equal(serving, -1);
                rep_free(bad_join[i]);
        }
        assert_int_equal(pool_join_reply_decode(NULL, &added, &serving), -EBADMSG);

        r = rep_int(1);
        assert_int_equal(pool_heartbeat_reply_decode(r), 1);
        rep_free(r);
        r = rep_int(0);
        assert_int_equal(pool_heartbeat_reply_decode(r), 0);
        rep_free(r);
        r = rep_str("1");
        assert_int_equal(pool_heartbeat_reply_decode(r), 1);
        rep_free(r);
        r = rep_err("ERR x");
        assert_int_equal(pool_heartbeat_reply_decode(r), -EBADMSG);
        rep_free(r);
        r = rep_arr(rep_int(1), NULL);
        assert_int_equal(pool_heartbeat_reply_decode(r), -EBADMSG);
        rep_free(r);
        assert_int_equal(pool_heartbeat_reply_decode(NULL), -EBADMSG);

        r = rep_str("e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
        assert_int_equal(pool_script_load_reply_decode(r, sha), 0);
        assert_string_equal(sha, "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
        rep_free(r);
        r = rep_str("e0e1f9fabfc9d4800c877a703b823ac0578ff8d"); /* 39 */
        assert_int_equal(pool_script_load_reply_decode(r, sha), -EBADMSG);
        rep_free(r);
        r = rep_err("NOPERM this user has no permissions to run the 'script' command");
        assert_int_equal(pool_script_load_reply_decode(r, sha), -EBADMSG);
        rep_free(r);

        r = rep_err("NOSCRIPT No matching script. Please use EVAL.");
        assert_true(pool_reply_is_noscript(r));
        assert_false(pool_reply_needs_reconnect(r));
        rep_free(r);
        r = rep_str("NOSCRIPT"); /* a string that says so is no error */
        assert_false(pool_reply_is_noscript(r));
        rep_free(r);
        assert_false(pool_reply_is_noscript(NULL));

        static const char *const reconnect[] = {
                "READONLY You can't write against a read only replica.",
                "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
                "LOADING Redis is loading the dataset in memory",
                "NOAUTH Authentication required.",
                "WRONGPASS invalid username-password pair or user is disabled.",
        };
        for (size_t i = 0; i < ELEMENTSOF(reconnect); i++) {
                r = rep_err(reconnect[i]);
                assert_true(pool_reply_needs_reconnect(r));
                rep_free(r);
        }
        static const char *const stay[] = {
                "NOPERM this user has no permissions to run the 'evalsha' command",
                "OOM command not allowed when used memory > 'maxmemory'.",
                "ERR Error running script",
        };
        for (size_t i = 0; i < ELEMENTSOF(stay); i++) {
                r = rep_err(stay[i]);
                assert_false(pool_reply_needs_reconnect(r));
                rep_free(r);
        }
        r = rep_str("READONLY");
        assert_false(pool_reply_needs_reconnect(r));
        rep_free(r);
        assert_false(pool_reply_needs_reconnect(NULL));

        r = rep_arr(rep_str("message"), rep_str("+switch-master"), rep_str("pool 127.0.0.1 6390 127.0.0.1 6391"),
                    NULL);
        assert_int_equal(pool_switch_master_decode(r, "pool", &m), 1);
        assert_string_equal(m.old_ip, "127.0.0.1");
        assert_int_equal(m.old_port, 6390);
        assert_string_equal(m.new_ip, "127.0.0.1");
        assert_int_equal(m.new_port, 6391);
        m = (PoolSwitchMaster) {};
        /* another master's failover is not ours */
        assert_int_equal(pool_switch_master_decode(r, "other", &m), 0);
        assert_int_equal(m.new_port, 0);
        rep_free(r);
        /* the subscribe confirmation */
        r = rep_arr(rep_str("subscribe"), rep_str("+switch-master"), rep_int(1), NULL);
        assert_int_equal(pool_switch_master_decode(r, "pool", &m), 0);
        rep_free(r);
        r = rep_arr(rep_str("message"), rep_str("+switch-master"), rep_str("pool 127.0.0.1 6390"), NULL);
        assert_int_equal(pool_switch_master_decode(r, "pool", &m), -EBADMSG);
        rep_free(r);
        r = rep_arr(rep_str("message"), rep_str("+switch-master"), rep_int(3), NULL);
        assert_int_equal(pool_switch_master_decode(r, "pool", &m), -EBADMSG);
        rep_free(r);
        assert_int_equal(m.new_port, 0);
        assert_int_equal(pool_switch_master_decode(NULL, "pool", &m), 0);
}

/* --- events, scripts, backoff ------------------------------------------ */

static void test_event_json(void **state) {
        PoolEvent e = {
                .type = "leave", .pool = "web", .host = "web-1", .addr = "127.0.1.1:80",
                .reason = "cpu 97% \"hot\"\n", .forced = 0, .at = 1700000000123456ULL,
        };
        _cleanup_(json_putp) json_object *o = NULL;
        char *s = pool_event_json(&e);

        assert_non_null(s);
        assert_null(strchr(s, '\n')); /* one line per event on the channel */
        o = json_tokener_parse(s);
        assert_non_null(o);
        assert_string_equal(jstr(o, "type"), "leave");
        assert_string_equal(jstr(o, "pool"), "web");
        assert_string_equal(jstr(o, "host"), "web-1");
        assert_string_equal(jstr(o, "addr"), "127.0.1.1:80");
        assert_string_equal(jstr(o, "reason"), "cpu 97% \"hot\"\n");
        assert_false(json_object_get_boolean(json_object_object_get(o, "forced")));
        assert_false(json_object_object_get_ex(o, "state", NULL));
        assert_string_equal(jstr(o, "at"), "2023-11-14T22:13:20Z");
        assert_int_equal(jint(o, "at_ms"), 1700000000123LL);
        free(s);
        json_object_put(TAKE_PTR(o));

        e = (PoolEvent) { .type = "state", .pool = "web", .host = "h", .addr = "a:1", .state = "DRAINING",
                          .reason = NULL, .forced = -1, .at = 0 };
        s = pool_event_json(&e);
        o = json_tokener_parse(s);
        assert_non_null(o);
        assert_string_equal(jstr(o, "state"), "DRAINING");
        assert_true(jnull(o, "reason"));
        assert_false(json_object_object_get_ex(o, "forced", NULL));
        assert_string_equal(jstr(o, "at"), "1970-01-01T00:00:00Z");
        free(s);

        assert_null(pool_event_json(NULL));
}

static void test_scripts(void **state) {
        for (PoolScript s = 0; s < _POOL_SCRIPT_MAX; s++) {
                assert_non_null(pool_script_to_string(s));
                assert_non_null(pool_script_text[s]);
                assert_true(strlen(pool_script_text[s]) > 50);
                /* every script ends by returning its answer */
                assert_non_null(strstr(pool_script_text[s], "return"));
        }
        assert_null(pool_script_to_string(_POOL_SCRIPT_MAX));
        /* the budget check and the removal are one script; time is Redis' own */
        assert_non_null(strstr(pool_script_text[POOL_SCRIPT_LEAVE], "redis.call('TIME')"));
        assert_non_null(strstr(pool_script_text[POOL_SCRIPT_LEAVE], "SREM"));
        assert_non_null(strstr(pool_script_text[POOL_SCRIPT_LEAVE], "min_serving"));
        /* the list mirror never gets duplicates: LREM before RPUSH */
        const char *j = pool_script_text[POOL_SCRIPT_JOIN];
        assert_true(strstr(j, "LREM") && strstr(j, "RPUSH") && strstr(j, "LREM") < strstr(j, "RPUSH"));
}


/* --- the pool's budget ------------------------------------------------- */

/* The leave script says which budget its verdict used; a script from
 * before the budget key (5 elements) still decodes, as "not said". */
static void test_leave_reply_budget(void **state) {
        PoolLeaveReply v = {};
        redisReply *r;

        r = rep_arr(rep_str("denied"), rep_int(4), rep_int(4), rep_int(3), rep_str("max_unavailable 3: a, b, c are out"),
                    rep_int(1), rep_int(3), NULL);
        assert_int_equal(pool_leave_reply_decode(r, &v), 0);
        assert_int_equal(v.result, POOL_LEAVE_DENIED);
        assert_int_equal(v.min_serving, 1);
        assert_int_equal(v.max_unavailable, 3);
        pool_leave_reply_done(&v);
        rep_free(r);

        r = rep_arr(rep_str("left"), rep_int(3), rep_int(3), rep_int(1), rep_str("x"), NULL);
        assert_int_equal(pool_leave_reply_decode(r, &v), 0);
        assert_int_equal(v.min_serving, -1);
        assert_int_equal(v.max_unavailable, -1);
        pool_leave_reply_done(&v);
        rep_free(r);

        /* 6 elements: half a budget is a bad shape */
        r = rep_arr(rep_str("left"), rep_int(3), rep_int(3), rep_int(1), rep_str("x"), rep_int(1), NULL);
        assert_int_equal(pool_leave_reply_decode(r, &v), -EBADMSG);
        rep_free(r);
        r = rep_arr(rep_str("left"), rep_int(3), rep_int(3), rep_int(1), rep_str("x"), rep_str("one"), rep_int(1),
                    NULL);
        assert_int_equal(pool_leave_reply_decode(r, &v), -EBADMSG);
        rep_free(r);
}

static long long jint_at(json_object *o, const char *a, const char *b) {
        json_object *x = NULL, *y = NULL;

        assert_true(json_object_object_get_ex(o, a, &x));
        assert_true(json_object_object_get_ex(x, b, &y));
        return json_object_get_int64(y);
}

/* The view carries the pool's budget and whether this view seeded it. */
static void test_view_budget(void **state) {
        _cleanup_(json_putp) json_object *v = NULL, *none = NULL;
        json_object *x = NULL;
        redisReply *r;

        r = rep_arr(rep_int(1700000000000), rep_arr(NULL), rep_arr(NULL), rep_int(0), rep_int(0), rep_int(2), rep_int(3),
                    rep_int(1), NULL);
        assert_int_equal(pool_view_decode(r, NULL, &v), 0);
        assert_int_equal(jint_at(v, "pool_budget", "min_serving"), 2);
        assert_int_equal(jint_at(v, "pool_budget", "max_unavailable"), 3);
        assert_true(json_object_object_get_ex(v, "budget_seeded", &x) && json_object_get_boolean(x));
        rep_free(r);

        /* no budget (a seedless view): null, not zeros a status would show as a budget */
        r = rep_arr(rep_int(1700000000000), rep_arr(NULL), rep_arr(NULL), rep_int(0), rep_int(0), rep_int(-1),
                    rep_int(-1), rep_int(0), NULL);
        assert_int_equal(pool_view_decode(r, NULL, &none), 0);
        assert_true(json_object_object_get_ex(none, "pool_budget", &x));
        assert_null(x);
        rep_free(r);

        /* 6 or 7 elements: no such script */
        r = rep_arr(rep_int(1), rep_arr(NULL), rep_arr(NULL), rep_int(0), rep_int(0), rep_int(2), NULL);
        assert_int_equal(pool_view_decode(r, NULL, &x), -EBADMSG);
        rep_free(r);
        r = rep_arr(rep_int(1), rep_arr(NULL), rep_arr(NULL), rep_int(0), rep_int(0), rep_str("2"), rep_int(3),
                    rep_str("yes"), NULL);
        assert_int_equal(pool_view_decode(r, NULL, &x), -EBADMSG);
        rep_free(r);
}

static void test_budget_reply(void **state) {
        _cleanup_(freep) char *err = NULL;
        _cleanup_(json_putp) json_object *o = NULL;
        PoolBudget b = {};
        json_object *x = NULL;
        redisReply *r;

        /* a set: 1/1 -> 1/3 */
        r = rep_arr(rep_int(1), rep_int(3), rep_str("set"), rep_str("root (uid 0) on web-3"), rep_int(1700000000000),
                    rep_int(1), rep_int(1), rep_int(1), NULL);
        assert_int_equal(pool_budget_reply_decode(r, &b, &err), 0);
        assert_int_equal(b.min_serving, 1);
        assert_int_equal(b.max_unavailable, 3);
        assert_string_equal(b.how, "set");
        assert_string_equal(b.by, "root (uid 0) on web-3");
        assert_true(b.set);
        assert_true(b.changed);
        assert_int_equal(b.old_min_serving, 1);
        assert_int_equal(b.old_max_unavailable, 1);
        o = pool_budget_json(&b);
        assert_int_equal(json_object_get_int64(json_object_object_get(o, "max_unavailable")), 3);
        assert_string_equal(json_object_get_string(json_object_object_get(o, "at")), "2023-11-14T22:13:20Z");
        pool_budget_done(&b);
        assert_null(b.by);
        rep_free(r);

        /* a get of a pool without a budget: -1s, shown as nulls */
        r = rep_arr(rep_int(-1), rep_int(-1), rep_str(""), rep_str(""), rep_int(-1), rep_int(-1), rep_int(-1),
                    rep_int(-1), NULL);
        assert_int_equal(pool_budget_reply_decode(r, &b, &err), 0);
        assert_false(b.set);
        json_object_put(o);
        o = pool_budget_json(&b);
        assert_true(json_object_object_get_ex(o, "min_serving", &x));
        assert_null(x);
        assert_true(json_object_object_get_ex(o, "at", &x));
        assert_null(x);
        pool_budget_done(&b);
        rep_free(r);

        /* the script's refusal: its words */
        r = rep_err("ERR invalid budget: min_serving 1, max_unavailable 0");
        assert_int_equal(pool_budget_reply_decode(r, &b, &err), -EIO);
        assert_string_equal(err, "ERR invalid budget: min_serving 1, max_unavailable 0");
        rep_free(r);

        /* half a budget, a short array, a word for a number */
        r = rep_arr(rep_int(1), rep_int(-1), rep_str(""), rep_str(""), rep_int(-1), rep_int(-1), rep_int(-1),
                    rep_int(-1), NULL);
        assert_int_equal(pool_budget_reply_decode(r, &b, NULL), -EBADMSG);
        rep_free(r);
        r = rep_arr(rep_int(1), rep_int(3), rep_str("set"), NULL);
        assert_int_equal(pool_budget_reply_decode(r, &b, NULL), -EBADMSG);
        rep_free(r);
        r = rep_arr(rep_int(1), rep_int(3), rep_int(7), rep_str(""), rep_int(-1), rep_int(-1), rep_int(-1),
                    rep_int(-1), NULL);
        assert_int_equal(pool_budget_reply_decode(r, &b, NULL), -EBADMSG);
        rep_free(r);
}

/* Every one of the budget script's ARGV, as pool_budget_args() built it. */
static void assert_argv(const PoolBudgetArgs *a, const char *const want[static POOL_BUDGET_ARGC]) {
        for (size_t i = 0; i < POOL_BUDGET_ARGC; i++) {
                assert_non_null(a->argv[i]);
                if (!streq(a->argv[i], want[i]))
                        fail_msg("ARGV[%zu]: \"%s\", want \"%s\"", i + 1, a->argv[i], want[i]);
        }
}

static void test_budget_args(void **state) {
        _cleanup_(freep) char *err = NULL;
        PoolBudgetArgs a;
        PoolBudgetChange c = { .min_serving = -1, .max_unavailable = 3, .have_uid = true, .uid = 0, .user = "root" };
        const char *at = "2026-12-07T05:00:00Z";

        /* a get: the mode and the seed, nothing to set, no one named */
        assert_int_equal(pool_budget_args(NULL, 1, 2, "web", "web-1", at, &a, NULL), 0);
        assert_argv(&a, (const char *const[]) { "get", "1", "2", "", "", "", "", "", "web-1", "web", at });

        /* a set of max_unavailable alone: min_serving "" (kept), who from the peer */
        assert_int_equal(pool_budget_args(&c, 1, 1, "web", "web-3", at, &a, NULL), 0);
        assert_argv(&a, (const char *const[]) { "set", "1", "1", "", "3", "root (uid 0) on web-3", "0", "root", "web-3",
                                               "web", at });
        /* the argv points into the copy, not the builder's stack */
        assert_ptr_equal(a.argv[4], a.new_max);
        assert_ptr_equal(a.argv[5], a.by);

        /* 0 is a min_serving, not "kept"; no user name, no peer at all */
        c.user = NULL;
        c.min_serving = 0;
        assert_int_equal(pool_budget_args(&c, 1, 1, "web", "web-3", NULL, &a, NULL), 0);
        assert_argv(&a, (const char *const[]) { "set", "1", "1", "0", "3", "uid 0 on web-3", "0", "", "web-3", "web",
                                               "" });
        c.have_uid = false;
        assert_int_equal(pool_budget_args(&c, 1, 1, "web", "web-3", NULL, &a, NULL), 0);
        assert_string_equal(a.argv[5], "an unknown peer on web-3");
        assert_string_equal(a.argv[6], "");

        /* the config's bounds: max_unavailable 0 would let no host leave */
        c.max_unavailable = 0;
        assert_int_equal(pool_budget_args(&c, 1, 1, "web", "web-3", NULL, &a, &err), -ERANGE);
        assert_non_null(strstr(err, "no host could ever leave"));
        c.max_unavailable = 100001;
        assert_int_equal(pool_budget_args(&c, 1, 1, "web", "web-3", NULL, &a, NULL), -ERANGE);
        c.max_unavailable = 2;
        c.min_serving = 100001;
        assert_int_equal(pool_budget_args(&c, 1, 1, "web", "web-3", NULL, &a, NULL), -ERANGE);
        c.min_serving = c.max_unavailable = -1;
        assert_int_equal(pool_budget_args(&c, 1, 1, "web", "web-3", NULL, &a, NULL), -EINVAL);
}

static void test_budget_differs(void **state) {
        assert_string_equal(pool_budget_differs(1, 2, 1, 2), "");
        assert_string_equal(pool_budget_differs(0, 2, 1, 2), "min_serving");
        assert_string_equal(pool_budget_differs(1, 3, 1, 2), "max_unavailable");
        assert_string_equal(pool_budget_differs(1, 5, 0, 2), "min_serving, max_unavailable");
        /* not read yet: nothing to differ from */
        assert_string_equal(pool_budget_differs(-1, -1, 0, 9), "");
}

static void test_budget_scripts(void **state) {
        static const struct {
                PoolScript script;
                const char *text;
                bool present;
        } want[] = {
                /* the leave's numbers are the pool's key's, the agent's only the seed */
                { POOL_SCRIPT_LEAVE, "budget_read(ARGV[3], ARGV[4], host)", true },
                { POOL_SCRIPT_LEAVE, "tonumber(ARGV[3])", false },
                { POOL_SCRIPT_VIEW, "budget_read(ARGV[3], ARGV[4], ARGV[5])", true },
                /* the seed is written only where there is no valid budget */
                { POOL_SCRIPT_LEAVE, "if m and x and m >= 0 and x >= 1 then return m, x, 0 end", true },
                /* a set is audited on the events channel, and bounded as the config is */
                { POOL_SCRIPT_BUDGET, "redis.call('PUBLISH', KEYS[2]", true },
                { POOL_SCRIPT_BUDGET, "nx < 1 or", true },
        };

        for (size_t i = 0; i < ELEMENTSOF(want); i++)
                if (!!strstr(pool_script_text[want[i].script], want[i].text) != want[i].present)
                        fail_msg("the %s script %s \"%s\"", pool_script_to_string(want[i].script),
                                 want[i].present ? "lacks" : "has", want[i].text);
}

static void test_backoff(void **state) {
        static const uint64_t randoms[] = { 0, 1, 12345, UINT64_MAX / 3, UINT64_MAX };
        usec_t prev_max = 0;

        for (unsigned attempt = 0; attempt < 40; attempt++) {
                usec_t d = POOL_BACKOFF_MIN_USEC;
                for (unsigned i = 0; i < attempt && d < POOL_BACKOFF_MAX_USEC; i++)
                        d *= 2;
                if (d > POOL_BACKOFF_MAX_USEC)
                        d = POOL_BACKOFF_MAX_USEC;
                assert_true(d >= prev_max);
                prev_max = d;
                for (size_t k = 0; k < ELEMENTSOF(randoms); k++) {
                        usec_t v = pool_backoff_delay(attempt, randoms[k]);
                        assert_true(v >= d / 2);
                        assert_true(v <= d);
                        assert_true(v <= POOL_BACKOFF_MAX_USEC);
                        assert_true(v >= POOL_BACKOFF_MIN_USEC / 2);
                }
        }
        assert_int_equal(pool_backoff_delay(0, 0), POOL_BACKOFF_MIN_USEC / 2);
        assert_int_equal(pool_backoff_delay(1000, UINT64_MAX - (UINT64_MAX % (POOL_BACKOFF_MAX_USEC / 2 + 1))),
                         POOL_BACKOFF_MAX_USEC / 2);
        /* jitter spreads: not every random lands on the same delay */
        assert_true(pool_backoff_delay(5, 1) != pool_backoff_delay(5, 2));
}

/* --- the client without a Redis --------------------------------------- */

typedef struct Answer {
        int calls;
        PoolLeaveResult result;
        char detail[512];
        bool inside_call; /* set while pool_leave runs: a re-entrant answer would see it */
        bool reentrant;
} Answer;

static void on_answer(Pool *p, PoolLeaveResult r, const char *detail, void *userdata) {
        Answer *a = userdata;
        a->calls++;
        a->result = r;
        a->reentrant = a->inside_call;
        snprintf(a->detail, sizeof a->detail, "%s", detail ? detail : "");
}

static Config *pool_config(const char *redis, const char *extra) {
        Config *c = NULL;
        char *err = NULL, *text = NULL;

        assert_true(asprintf(&text,
                             "[agent]\nhost = unit-1\n[pool]\nredis = %s\nname = web\naddress = 127.0.0.9:80\n"
                             "lease = 3s\nheartbeat = 1s\n%s",
                             redis, extra ? extra : "") > 0);
        if (config_parse_string(text, "test.conf", &c, &err) < 0)
                print_error("%s\n", err);
        assert_non_null(c);
        free(text);
        return c;
}

static void run_loop_for(sd_event *e, usec_t usec) {
        struct timespec ts;
        usec_t end, now;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        end = (usec_t) ts.tv_sec * USEC_PER_SEC + (usec_t) ts.tv_nsec / 1000 + usec;
        for (;;) {
                clock_gettime(CLOCK_MONOTONIC, &ts);
                now = (usec_t) ts.tv_sec * USEC_PER_SEC + (usec_t) ts.tv_nsec / 1000;
                if (now >= end)
                        break;
                assert_true(sd_event_run(e, MIN(end - now, 50 * USEC_PER_MSEC)) >= 0);
        }
}

static const char *status_str(Pool *p, const char *key, char *buf, size_t size) {
        _cleanup_(json_putp) json_object *o = pool_status_json(p);
        const char *s = jstr(o, key);
        snprintf(buf, size, "%s", s ? s : "(null)");
        return buf;
}

static void test_client_not_started(void **state) {
        Config *c = pool_config("redis://127.0.0.1:1/0", NULL);
        _cleanup_(json_putp) json_object *st = NULL;
        sd_event *e = NULL;
        Pool *p = NULL;
        char *err = NULL;
        Answer a = {};
        json_object *budget, *members;

        assert_int_equal(sd_event_new(&e), 0);
        assert_int_equal(pool_new(e, c, &p, &err), 0);
        config_free(c); /* nothing of it may be kept */

        st = pool_status_json(p);
        assert_true(json_object_get_boolean(json_object_object_get(st, "configured")));
        assert_string_equal(jstr(st, "name"), "web");
        assert_string_equal(jstr(st, "address"), "127.0.0.9:80");
        assert_string_equal(jstr(st, "host"), "unit-1");
        assert_string_equal(jstr(st, "status"), "starting");
        assert_false(json_object_get_boolean(json_object_object_get(st, "connected")));
        assert_true(jnull(st, "serving_count"));
        assert_true(json_object_object_get_ex(st, "budget", &budget));
        assert_int_equal(jint(budget, "min_serving"), 1);
        assert_int_equal(jint(budget, "max_unavailable"), 1);
        assert_true(json_object_object_get_ex(st, "members", &members));
        assert_int_equal(json_object_array_length(members), 0);

        /* answered from the loop, never from inside the call */
        a.inside_call = true;
        assert_int_equal(pool_leave(p, false, "cpu", on_answer, &a), 0);
        a.inside_call = false;
        assert_int_equal(a.calls, 0);
        assert_true(sd_event_run(e, 0) >= 0);
        assert_int_equal(a.calls, 1);
        assert_false(a.reentrant);
        assert_int_equal(a.result, POOL_LEAVE_UNREACHABLE);

        /* a pending answer is dropped (not called) when the pool goes */
        assert_int_equal(pool_leave(p, true, "x", on_answer, &a), 0);
        pool_free(p);
        assert_int_equal(a.calls, 1);
        sd_event_unref(e);
}

static void test_client_refused(void **state) {
        Config *c = pool_config("redis://127.0.0.1:1/0", NULL);
        sd_event *e = NULL;
        Pool *p = NULL;
        char *err = NULL, buf[512];
        Answer a = {};

        assert_int_equal(sd_event_new(&e), 0);
        assert_int_equal(pool_new(e, c, &p, &err), 0);
        config_free(c);
        pool_set_state(p, "BOOT", "starting", false);
        assert_int_equal(pool_start(p), 0);
        run_loop_for(e, 300 * USEC_PER_MSEC);

        /* between attempts, or in one: never "connected" */
        status_str(p, "status", buf, sizeof buf);
        assert_true(streq(buf, "unreachable") || streq(buf, "connecting"));
        assert_non_null(strstr(status_str(p, "last_error", buf, sizeof buf), "127.0.0.1:1"));

        assert_int_equal(pool_leave(p, false, "cpu", on_answer, &a), 0);
        for (int i = 0; i < 100 && a.calls == 0; i++)
                run_loop_for(e, 20 * USEC_PER_MSEC);
        assert_int_equal(a.calls, 1);
        assert_int_equal(a.result, POOL_LEAVE_UNREACHABLE);
        assert_non_null(strstr(a.detail, "127.0.0.1:1"));

        /* keeps retrying without growing anything: a second after, still fine */
        pool_set_state(p, "SERVING", "checks passed", true);
        pool_set_last_checks(p, "{\"ok\":true}");
        run_loop_for(e, 1200 * USEC_PER_MSEC);
        status_str(p, "status", buf, sizeof buf);
        assert_true(streq(buf, "unreachable") || streq(buf, "connecting"));
        {
                _cleanup_(json_putp) json_object *st = pool_status_json(p);
                assert_true(json_object_get_boolean(json_object_object_get(st, "serving")));
        }
        pool_free(p);
        sd_event_unref(e);
}

/* A server that accepts connections (the kernel does, from the backlog) but
 * never answers: the command timer must break the connection. */
static void test_client_silent_server(void **state) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof sa;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        char url[64], buf[512], *err = NULL;
        sd_event *e = NULL;
        Pool *p = NULL;
        Config *c;
        Answer a = {};
        struct timespec t0, t1;

        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof sa), 0);
        assert_int_equal(listen(fd, 16), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *) &sa, &len), 0);
        snprintf(url, sizeof url, "redis://127.0.0.1:%u/0", (unsigned) ntohs(sa.sin_port));

        c = pool_config(url, NULL);
        assert_int_equal(sd_event_new(&e), 0);
        assert_int_equal(pool_new(e, c, &p, &err), 0);
        config_free(c);
        assert_int_equal(pool_start(p), 0);
        run_loop_for(e, 200 * USEC_PER_MSEC);
        /* connected at TCP level, handshake unanswered */
        assert_string_equal(status_str(p, "status", buf, sizeof buf), "connecting");

        /* a leave now waits for the handshake, then fails with it */
        clock_gettime(CLOCK_MONOTONIC, &t0);
        assert_int_equal(pool_leave(p, false, "cpu", on_answer, &a), 0);
        for (int i = 0; i < 100 && a.calls == 0; i++)
                run_loop_for(e, 50 * USEC_PER_MSEC);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        assert_int_equal(a.calls, 1);
        assert_int_equal(a.result, POOL_LEAVE_UNREACHABLE);
        assert_non_null(strstr(a.detail, "no reply to"));
        /* bounded by the 2s command timeout, not by the server */
        assert_true((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000 < 2500);
        assert_non_null(strstr(status_str(p, "last_error", buf, sizeof buf), "within 2000ms"));

        pool_free(p);
        sd_event_unref(e);
        close(fd);
}

static void test_client_bad_settings(void **state) {
        Config *c = pool_config("redis://127.0.0.1:6379/0", "password_file = /nonexistent/redis-password\n");
        sd_event *e = NULL;
        Pool *p = NULL;
        char *err = NULL;

        assert_int_equal(sd_event_new(&e), 0);
        assert_true(pool_new(e, c, &p, &err) < 0);
        assert_null(p);
        assert_non_null(err);
        assert_non_null(strstr(err, "password_file"));
        free(err);
        config_free(c);
        sd_event_unref(e);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_leave_reply),
                cmocka_unit_test(test_view_decode),
                cmocka_unit_test(test_more_replies),
                cmocka_unit_test(test_event_json),
                cmocka_unit_test(test_scripts),
                cmocka_unit_test(test_leave_reply_budget),
                cmocka_unit_test(test_view_budget),
                cmocka_unit_test(test_budget_reply),
                cmocka_unit_test(test_budget_args),
                cmocka_unit_test(test_budget_differs),
                cmocka_unit_test(test_budget_scripts),
                cmocka_unit_test(test_backoff),
                cmocka_unit_test(test_client_not_started),
                cmocka_unit_test(test_client_refused),
                cmocka_unit_test(test_client_silent_server),
                cmocka_unit_test(test_client_bad_settings),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
