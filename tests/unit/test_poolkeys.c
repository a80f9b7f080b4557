/* poolkeys.c: the one pool key schema. The names are pinned as the README
 * documents them, and the other spellings of the schema are held to it:
 * the pool's Lua scripts (which derive per-host keys in Redis) and every
 * source that reads or writes the pool (monkeyd, monkey-proxy-sync, the
 * benchmark) builds its keys here, never by hand. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include "fileio.h"
#include "fleetthread.h"
#include "pool_scripts.h"
#include "poolkeys.h"

static char *key(const char *pool, PoolKey k, const char *host) {
        char *s = NULL;

        assert_int_equal(poolkeys_key(pool, k, host, &s), 0);
        assert_non_null(s);
        return s;
}

static void assert_key(const char *pool, PoolKey k, const char *host, const char *want) {
        _cleanup_(freep) char *s = key(pool, k, host);

        assert_string_equal(s, want);
}

static void test_names(void **state) {
        assert_key("web", POOL_KEY_PREFIX, NULL, "monkey:{web}:");
        assert_key("web", POOL_KEY_SERVING, NULL, "monkey:{web}:serving");
        assert_key("web", POOL_KEY_OUT, NULL, "monkey:{web}:out");
        assert_key("web", POOL_KEY_ADDRS, NULL, "monkey:{web}:addrs");
        assert_key("web", POOL_KEY_ALIVE, NULL, "monkey:{web}:alive");
        assert_key("web", POOL_KEY_WAITING, NULL, "monkey:{web}:waiting");
        assert_key("web", POOL_KEY_EVENTS, NULL, "monkey:{web}:events");
        assert_key("web", POOL_KEY_BUDGET, NULL, "monkey:{web}:budget");
        assert_key("web", POOL_KEY_FLEET_THREAD, NULL, "monkey:{web}:fleet-thread");
        assert_key("web", POOL_KEY_FLEET_HOLDING, NULL, "monkey:{web}:fleet-holding");
        assert_key("web", POOL_KEY_HOST, "web-1", "monkey:{web}:host:web-1");
        assert_key("web", POOL_KEY_LEASE, "web-1", "monkey:{web}:lease:web-1");
        assert_key("web", POOL_KEY_ASKING, NULL, "monkey:{web}:asking");
        assert_key("web", POOL_KEY_LEASES, NULL, "monkey:{web}:leases");
        assert_key("web", POOL_KEY_ASKING_HOST, "web-1", "monkey:{web}:asking:web-1");
        /* the whole name is the hash tag, whatever it holds */
        assert_key("a:b", POOL_KEY_SERVING, NULL, "monkey:{a:b}:serving");
}

static void test_misuse(void **state) {
        char *s = NULL;

        for (PoolKey k = 0; k < _POOL_KEY_MAX; k++) {
                int per_host = poolkeys_per_host(k);

                assert_true(per_host == 0 || per_host == 1);
                assert_non_null(poolkeys_suffix(k));
                /* a host where none belongs, none where one does */
                assert_int_equal(poolkeys_key("web", k, per_host ? NULL : "h", &s), -EINVAL);
                assert_int_equal(poolkeys_key(NULL, k, per_host ? "h" : NULL, &s), -EINVAL);
        }
        assert_int_equal(poolkeys_per_host(_POOL_KEY_MAX), -EINVAL);
        assert_int_equal(poolkeys_per_host(_POOL_KEY_INVALID), -EINVAL);
        assert_null(poolkeys_suffix(_POOL_KEY_MAX));
        assert_int_equal(poolkeys_key("web", _POOL_KEY_MAX, NULL, &s), -EINVAL);
        assert_int_equal(poolkeys_key("web", POOL_KEY_SERVING, NULL, NULL), -EINVAL);
        assert_null(s); /* never written on failure */
}

/* monkey-proxy-sync looks a lease up as the prefix "" gives plus the host
 * name: that must be the key the agent renews. */
static void test_per_host_prefix(void **state) {
        static const PoolKey per_host[] = { POOL_KEY_HOST, POOL_KEY_LEASE, POOL_KEY_ASKING_HOST };

        for (size_t i = 0; i < ELEMENTSOF(per_host); i++) {
                _cleanup_(freep) char *prefix = key("web", per_host[i], ""), *full = key("web", per_host[i], "web-7"),
                                      *joined = NULL;

                assert_true(asprintf(&joined, "%s%s", prefix, "web-7") > 0);
                assert_string_equal(joined, full);
        }
}

/* poolkeys_new(): every key once, the per-host ones the host's. */
static void test_key_set(void **state) {
        _cleanup_(poolkeys_done) PoolKeys k = {};

        assert_int_equal(poolkeys_new("web", "web-2", &k), 0);
        for (PoolKey i = 0; i < _POOL_KEY_MAX; i++) {
                _cleanup_(freep) char *want = key("web", i, poolkeys_per_host(i) ? "web-2" : NULL);
                assert_string_equal(k.key[i], want);
        }
        poolkeys_done(&k);
        assert_null(k.key[POOL_KEY_SERVING]);
        assert_int_equal(poolkeys_new(NULL, "web-2", &k), -EINVAL);
        assert_int_equal(poolkeys_new("web", NULL, &k), -EINVAL);
}

/* Redis Cluster: a script touches only the keys it declares (a resharding
 * protects nothing else). So no script reads a KEYS[n] past what its
 * builder gives, each reads the last one it is given (the builder and the
 * text agree on the count), and none builds a key of the pool from a
 * suffix itself, but the view, which only shows other members' host:H
 * and lease:H after its last write. */
static void assert_declares_all(const char *name, const char *text, int n, bool view) {
        char want[32], past[32];

        snprintf(want, sizeof want, "KEYS[%d]", n);
        snprintf(past, sizeof past, "KEYS[%d]", n + 1);
        if (!strstr(text, want))
                fail_msg("the %s script never reads %s, the last of its KEYS", name, want);
        if (strstr(text, past))
                fail_msg("the %s script reads %s, past its KEYS", name, past);
        if (strstr(text, "string.sub(KEYS"))
                fail_msg("the %s script derives a key from another", name);
        for (PoolKey k = POOL_KEY_SERVING; k < _POOL_KEY_MAX; k++) {
                _cleanup_(freep) char *quoted = NULL;
                bool shown = view && (k == POOL_KEY_HOST || k == POOL_KEY_LEASE);

                assert_true(asprintf(&quoted, ".. '%s'", poolkeys_suffix(k)) > 0);
                if (!!strstr(text, quoted) != shown)
                        fail_msg("the %s script %s the key suffix %s", name, shown ? "lacks" : "builds", quoted);
        }
}

static void test_scripts_declare_their_keys(void **state) {
        _cleanup_(poolkeys_done) PoolKeys k = {};
        const char *keys[POOL_SCRIPT_KEYS_MAX];

        assert_int_equal(poolkeys_new("web", "web-1", &k), 0);
        for (PoolScript s = 0; s < _POOL_SCRIPT_MAX; s++) {
                int n = pool_script_keys(s, &k, "mirror{web}", keys);

                assert_true(n > 0 && n <= POOL_SCRIPT_KEYS_MAX);
                for (int i = 0; i < n; i++)
                        assert_non_null(keys[i]);
                assert_declares_all(pool_script_to_string(s), pool_script_text[s], n, s == POOL_SCRIPT_VIEW);
                /* the list key only where a script mirrors serving, and last */
                assert_int_equal(pool_script_keys(s, &k, NULL, keys),
                                 s == POOL_SCRIPT_JOIN || s == POOL_SCRIPT_LEAVE ? n - 1 : n);
        }
        for (FleetScript s = 0; s < _FLEET_SCRIPT_MAX; s++) {
                const char *fk[FLEET_SCRIPT_KEYS_MAX];
                int n = fleet_thread_script_keys(s, &k, fk);

                assert_true(n > 0 && n <= FLEET_SCRIPT_KEYS_MAX);
                assert_declares_all(fleet_thread_script_to_string(s), fleet_thread_script_text[s], n, false);
        }
        /* what each decides on is declared: the budget, the queue, who still asks, the leases */
        assert_int_equal(pool_script_keys(POOL_SCRIPT_LEAVE, &k, NULL, keys), 10);
        assert_string_equal(keys[6], "monkey:{web}:budget");
        assert_string_equal(keys[7], "monkey:{web}:waiting");
        assert_string_equal(keys[8], "monkey:{web}:asking");
        assert_string_equal(keys[9], "monkey:{web}:asking:web-1");
        assert_int_equal(pool_script_keys(POOL_SCRIPT_JOIN, &k, NULL, keys), 7);
        assert_string_equal(keys[6], "monkey:{web}:lease:web-1");
        assert_int_equal(pool_script_keys(_POOL_SCRIPT_MAX, &k, NULL, keys), -EINVAL);
        assert_int_equal(pool_script_keys(POOL_SCRIPT_JOIN, NULL, NULL, keys), -EINVAL);
}

/* The bounds of a budget someone sets are the config's: max_unavailable 0
 * would let no host ever leave the pool. -1 is "not given". */
static void test_budget_bounds(void **state) {
        _cleanup_(freep) char *err = NULL;

        assert_int_equal(poolkeys_budget_check(0, 1, NULL), 0);
        assert_int_equal(poolkeys_budget_check(POOLKEYS_MIN_SERVING_MAX, POOLKEYS_MAX_UNAVAILABLE_MAX, NULL), 0);
        assert_int_equal(poolkeys_budget_check(-1, 3, NULL), 0);
        assert_int_equal(poolkeys_budget_check(2, -1, NULL), 0);
        assert_int_equal(poolkeys_budget_check(1, 0, &err), -ERANGE);
        assert_string_equal(err, "max_unavailable 0 is out of range (1-100000): no host could ever leave the pool");
        assert_int_equal(poolkeys_budget_check(100001, 1, NULL), -ERANGE);
        assert_int_equal(poolkeys_budget_check(1, 100001, NULL), -ERANGE);
}

static char *source(const char *path) {
        _cleanup_(closep) int fd = open(path, O_RDONLY | O_CLOEXEC);
        char *text = NULL;
        size_t len = 0;

        if (fd < 0)
                fail_msg("cannot open %s: %s", path, strerror(errno));
        assert_int_equal(read_full_fd(fd, 4 << 20, &text, &len), 0);
        return text;
}

/* Each .c file under dir (one level): calls f(path, text). */
static size_t each_source(const char *dir, void (*f)(const char *path, const char *text)) {
        DIR *d = opendir(dir);
        struct dirent *de;
        size_t n = 0;

        assert_non_null(d);
        while ((de = readdir(d))) {
                size_t len = strlen(de->d_name);
                _cleanup_(freep) char *path = NULL, *text = NULL;

                if (len < 3 || !streq(de->d_name + len - 2, ".c") || streq(de->d_name, "poolkeys.c"))
                        continue;
                assert_true(asprintf(&path, "%s/%s", dir, de->d_name) > 0);
                text = source(path);
                f(path, text);
                n++;
        }
        closedir(d);
        return n;
}

static void no_hand_built_key(const char *path, const char *text) {
        static const char *const spellings[] = { "monkey:{%", ":{%s}:", "\"host:%s", "\"lease:%s", "\"asking:%s" };

        for (size_t i = 0; i < ELEMENTSOF(spellings); i++)
                if (strstr(text, spellings[i]))
                        fail_msg("%s builds a pool key by hand (%s): use poolkeys_key()", path, spellings[i]);
}

static bool proxy_sync_keys[_POOL_KEY_MAX];

static void note_proxy_sync_keys(const char *path, const char *text) {
        static const struct {
                const char *call;
                PoolKey key;
        } calls[] = {
                { "POOL_KEY_SERVING, NULL,", POOL_KEY_SERVING },
                { "POOL_KEY_LEASE, \"\",", POOL_KEY_LEASE },
                { "POOL_KEY_ADDRS, NULL,", POOL_KEY_ADDRS },
                { "POOL_KEY_EVENTS, NULL,", POOL_KEY_EVENTS },
        };

        for (size_t i = 0; i < ELEMENTSOF(calls); i++)
                for (const char *p = text; (p = strstr(p, "poolkeys_key(")); p++) {
                        const char *end = strchr(p, ')');
                        const char *hit = strstr(p, calls[i].call);
                        if (end && hit && hit < end)
                                proxy_sync_keys[calls[i].key] = true;
                }
}

/* The regression of the schema written twice: monkey-proxy-sync read the
 * keys the agent writes only as long as two copies of the names agreed. */
static void test_one_spelling(void **state) {
        static const char *const dirs[] = {
                "agent/base", "agent/loop", "agent/core", "agent/routing", "agent/alerts", "agent/remedy",
                "agent/checks", "agent/evidence", "agent/render", "agent/ctl", "proxy-hooks", "tests/bench",
        };
        size_t n = 0;

        for (size_t i = 0; i < ELEMENTSOF(dirs); i++) {
                _cleanup_(freep) char *dir = NULL;

                assert_true(asprintf(&dir, "%s/%s", SOURCE_ROOT, dirs[i]) > 0);
                n += each_source(dir, no_hand_built_key);
        }
        assert_true(n > 20);

        /* proxy-sync reads serving, the addresses, the leases and the events */
        _cleanup_(freep) char *dir = NULL;
        assert_true(asprintf(&dir, "%s/proxy-hooks", SOURCE_ROOT) > 0);
        (void) each_source(dir, note_proxy_sync_keys);
        assert_true(proxy_sync_keys[POOL_KEY_SERVING]);
        assert_true(proxy_sync_keys[POOL_KEY_LEASE]);
        assert_true(proxy_sync_keys[POOL_KEY_ADDRS]);
        assert_true(proxy_sync_keys[POOL_KEY_EVENTS]);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_names),
                cmocka_unit_test(test_misuse),
                cmocka_unit_test(test_per_host_prefix),
                cmocka_unit_test(test_key_set),
                cmocka_unit_test(test_scripts_declare_their_keys),
                cmocka_unit_test(test_budget_bounds),
                cmocka_unit_test(test_one_spelling),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
