/* One fleet thread per pool: the decisions and the texts, pure. See fleetthread.h. */
#include "fleetthread.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "parse.h"

static const char *const role_table[_FLEET_ROLE_MAX] = {
        [FLEET_OPEN] = "open",
        [FLEET_JOIN] = "join",
        [FLEET_WAIT] = "wait",
        [FLEET_OWN] = "own",
};

const char *fleet_role_to_string(FleetRole r) {
        return r >= 0 && r < _FLEET_ROLE_MAX ? role_table[r] : NULL;
}

bool fleet_thread_is_ts(const char *value) {
        const char *dot;

        if (isempty(value) || strlen(value) > 32)
                return false;
        dot = strchr(value, '.');
        if (!dot || dot == value || dot[1] == '\0')
                return false;
        for (const char *p = value; *p; p++)
                if (p != dot && (*p < '0' || *p > '9'))
                        return false;
        return true;
}

int fleet_thread_claim(const char *host, usec_t now_wall, char *buf, size_t size) {
        int n;

        if (isempty(host))
                return -EINVAL;
        n = snprintf(buf, size, "claim:%s:%" PRIu64, host, (uint64_t) now_wall);
        return n < 0 || (size_t) n >= size ? -ENOBUFS : 0;
}

FleetRole fleet_thread_decide(const char *value, const char *claim, usec_t asked_since, usec_t now) {
        /* Redis did not answer: no other host can learn a ts from us either */
        if (!value)
                return FLEET_OWN;
        if (claim && streq(value, claim))
                return FLEET_OPEN;
        if (fleet_thread_is_ts(value))
                return FLEET_JOIN;
        /* another host claimed it and posts its parent now; a claim whose
         * opener died expires (FLEET_THREAD_CLAIM_TTL) and is ours to take
         * at the next ask, but our messages wait no longer than this */
        if (now < asked_since || now - asked_since < FLEET_THREAD_PATIENCE)
                return FLEET_WAIT;
        return FLEET_OWN;
}

FleetEnd fleet_thread_end_decide(const char *removed) {
        /* a claim removed: its opener's store is refused, and that opener
         * follows its own parent up */
        return fleet_thread_is_ts(removed) ? FLEET_END_FOLLOW_UP : FLEET_END_NONE;
}

int fleet_thread_parent_text(const char *pool, const FleetHold *h, const char *why, char **ret) {
        char since[32], ago[32];
        int n;

        if (isempty(pool) || !h)
                return -EINVAL;
        format_iso8601(since, sizeof since, h->oldest);
        if (h->now >= h->oldest + USEC_PER_SEC) {
                char d[24];
                snprintf(ago, sizeof ago, "%s ago", format_duration(d, sizeof d, h->now - h->oldest));
        } else
                snprintf(ago, sizeof ago, "just now");
        n = asprintf(ret,
                     ":rotating_light: pool %s: budget spent, %" PRId64 " of %" PRId64
                     " holding, oldest since %s (%s)%s%s. Each holding host replies in this thread; a host that "
                     "gets its turn opens its own thread.",
                     pool, h->holding, h->total, since, ago, why ? ": " : "", strempty(why));
        return n < 0 ? -ENOMEM : 0;
}

int fleet_thread_end_text(const char *pool, const char *host, char **ret) {
        if (isempty(pool) || isempty(host))
                return -EINVAL;
        if (asprintf(ret, ":white_check_mark: pool %s: no host holding any more (%s was the last); the budget "
                          "lets hosts out again.", pool, host) < 0)
                return -ENOMEM;
        return 0;
}

/* Every script touches only its KEYS (a resharding of the pool's slot
 * protects nothing else): whether a holder is alive is its score in the
 * pool's leases ZSET (the heartbeat keeps it), not its lease:H string.
 * Stale holders (an agent that died while holding: its lease expired) are
 * pruned a few at a time, the oldest first, so a call stays O(log N)
 * however large the herd. */
#define FLEET_LUA_PRUNE(host_arg, leases_key)                                                                \
        "for _, h in ipairs(redis.call('ZRANGE', KEYS[2], 0, 9)) do\n"                                      \
        "  local expiry = tonumber(redis.call('ZSCORE', " leases_key ", h))\n"                               \
        "  if h ~= " host_arg " and (not expiry or expiry <= now) then\n"                                     \
        "    redis.call('ZREM', KEYS[2], h)\n"                                                              \
        "  end\n"                                                                                           \
        "end\n"

#define FLEET_LUA_NOW                                                                                        \
        "local t = redis.call('TIME')\n"                                                                     \
        "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"

const char fleet_thread_script_hold[] =
        FLEET_LUA_NOW
        "redis.call('ZADD', KEYS[2], 'NX', now, ARGV[1])\n"
        FLEET_LUA_PRUNE("ARGV[1]", "KEYS[5]")
        "redis.call('PEXPIRE', KEYS[2], ARGV[4])\n"
        "local v = ARGV[2]\n"
        "if not redis.call('SET', KEYS[1], ARGV[2], 'NX', 'PX', ARGV[3]) then\n"
        "  v = redis.call('GET', KEYS[1])\n"
        "  if string.sub(v, 1, 6) ~= 'claim:' then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end\n"
        "end\n"
        "local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')\n"
        "return {v, redis.call('ZCARD', KEYS[2]), redis.call('SCARD', KEYS[3]) + redis.call('ZCARD', KEYS[4]),\n"
        "        tonumber(oldest[2]), now}\n";

const char fleet_thread_script_store[] =
        "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end\n"
        "if redis.call('ZCARD', KEYS[2]) == 0 then redis.call('DEL', KEYS[1]) return 0 end\n"
        "redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])\n"
        "return 1\n";

const char fleet_thread_script_end[] =
        FLEET_LUA_NOW
        "redis.call('ZREM', KEYS[2], ARGV[1])\n"
        FLEET_LUA_PRUNE("ARGV[1]", "KEYS[3]")
        "if redis.call('ZCARD', KEYS[2]) > 0 then return false end\n"
        "local v = redis.call('GET', KEYS[1])\n"
        "if v then redis.call('DEL', KEYS[1]) end\n"
        "return v\n";

const char *const fleet_thread_script_text[_FLEET_SCRIPT_MAX] = {
        [FLEET_SCRIPT_HOLD] = fleet_thread_script_hold,
        [FLEET_SCRIPT_STORE] = fleet_thread_script_store,
        [FLEET_SCRIPT_END] = fleet_thread_script_end,
};

/* Each script's name (as alerts.c logs it) and KEYS, in its order. */
static const struct {
        const char *name;
        size_t n;
        PoolKey key[FLEET_SCRIPT_KEYS_MAX];
} fleet_scripts[_FLEET_SCRIPT_MAX] = {
        [FLEET_SCRIPT_HOLD] = { "fleet-hold", 5, { POOL_KEY_FLEET_THREAD, POOL_KEY_FLEET_HOLDING, POOL_KEY_SERVING,
                                                   POOL_KEY_OUT, POOL_KEY_LEASES } },
        [FLEET_SCRIPT_STORE] = { "fleet-store", 2, { POOL_KEY_FLEET_THREAD, POOL_KEY_FLEET_HOLDING } },
        [FLEET_SCRIPT_END] = { "fleet-end", 3, { POOL_KEY_FLEET_THREAD, POOL_KEY_FLEET_HOLDING, POOL_KEY_LEASES } },
};

const char *fleet_thread_script_to_string(FleetScript s) {
        return s >= 0 && s < _FLEET_SCRIPT_MAX ? fleet_scripts[s].name : NULL;
}

int fleet_thread_script_keys(FleetScript s, const PoolKeys *keys, const char *ret[static FLEET_SCRIPT_KEYS_MAX]) {
        if (s < 0 || s >= _FLEET_SCRIPT_MAX || !keys)
                return -EINVAL;
        for (size_t i = 0; i < fleet_scripts[s].n; i++) {
                if (!keys->key[fleet_scripts[s].key[i]])
                        return -EINVAL;
                ret[i] = keys->key[fleet_scripts[s].key[i]];
        }
        return (int) fleet_scripts[s].n;
}
