/* The pool client. One main connection to Redis (through Sentinel when the
 * URL says so), driven by sd-event through redis_event.c. hiredis 0.14
 * owns the context and frees it by itself when a connection fails, so:
 *   - a Link forgets its context (ac = NULL) before anyone frees it, and
 *     every hiredis callback checks that its context is still the Link's;
 *   - a context we give up on is "doomed" and freed by a defer source, on
 *     a clean stack: never from inside hiredis (0.14 calls the connect
 *     callback outside its in-callback guard); the connect and disconnect
 *     callbacks tell us when hiredis freed one itself;
 *   - every command is a Cmd with its own timeout timer, freed by its reply
 *     callback, which hiredis calls with NULL while a context is freed;
 *   - leave answers go through a defer source, never re-entrantly. */
#include "pool.h"

#include <assert.h>
#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <sys/random.h>
#include <time.h>

#include "log.h"
#include "pool_scripts.h"
#include "poolkeys.h"
#include "redis_event.h"
#include "redisurl.h"
#include "secret.h"

#define POOL_COMMAND_TIMEOUT_USEC (2 * USEC_PER_SEC)
#define POOL_CONNECT_TIMEOUT_USEC (2 * USEC_PER_SEC)
/* Up to this many members every heartbeat refreshes the full member list;
 * above, only the O(log N) summary, and the list when someone asks
 * (monkeyctl pool): thousands of agents each walking thousands of members
 * every heartbeat would be O(N^2) work for one Redis. */
#define POOL_VIEW_BIG 256
#define POOL_DETAIL_MAX 320

/* ---- the scripts ---- */

#define LUA_NOW                                                                                                \
        "local t = redis.call('TIME')\n"                                                                       \
        "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"

/* The alive index: monkey:{P}:alive, a ZSET of serving addresses scored by
 * their lease's expiry (ms). Join adds, leave removes, each heartbeat
 * pushes the score on. Expired entries are trimmed when counted, so the
 * budget's "serving and alive" is O(log N), not a walk over every member:
 * in a whole-fleet overload every held host re-asks each heartbeat. The
 * key is derived from KEYS[serving] ("...serving" -> "...alive"), in the
 * same {P} hash slot. */
#define LUA_ALIVE_KEY(serving) "local alive_key = string.sub(" serving ", 1, -8) .. '" POOLKEYS_ALIVE "'\n"
/* -8: the prefix is what precedes "serving" */
static_assert(sizeof(POOLKEYS_SERVING) == 8, "LUA_ALIVE_KEY cuts 'serving' off the serving key");

static const char script_join[] =
        "if redis.replicate_commands then redis.replicate_commands() end\n" LUA_NOW LUA_ALIVE_KEY("KEYS[1]")
        "local addr, host = ARGV[1], ARGV[2]\n"
        "local added = redis.call('SADD', KEYS[1], addr)\n"
        "if redis.call('HGET', KEYS[4], addr) ~= host then redis.call('HSET', KEYS[4], addr, host) end\n"
        "redis.call('ZREM', KEYS[2], host)\n"
        "local ttl = redis.call('PTTL', string.sub(KEYS[1], 1, -8) .. '" POOLKEYS_LEASE "' .. host)\n"
        "if ttl > 0 then redis.call('ZADD', alive_key, now + ttl, addr) end\n"
        "if KEYS[6] then\n"
        "  redis.call('LREM', KEYS[6], 0, addr)\n"
        "  redis.call('RPUSH', KEYS[6], addr)\n"
        "end\n"
        "redis.call('HSET', KEYS[3], 'addr', addr)\n"
        "if added == 1 then redis.call('PUBLISH', KEYS[5], ARGV[3]) end\n"
        "return {added, redis.call('SCARD', KEYS[1])}\n";

static const char script_leave[] =
        "if redis.replicate_commands then redis.replicate_commands() end\n" LUA_NOW LUA_ALIVE_KEY("KEYS[1]")
        "local addr, host, mode = ARGV[1], ARGV[2], ARGV[6]\n"
        "local min_serving, max_unavailable = tonumber(ARGV[3]), tonumber(ARGV[4])\n"
        "local expires = now + tonumber(ARGV[5])\n"
        "redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)\n"
        "local function alive_count()\n"
        "  redis.call('ZREMRANGEBYSCORE', alive_key, '-inf', now)\n"
        "  local alive = redis.call('ZCARD', alive_key)\n"
        "  -- we are alive by definition while we ask\n"
        "  if redis.call('SISMEMBER', KEYS[1], addr) == 1 and not redis.call('ZSCORE', alive_key, addr) then\n"
        "    alive = alive + 1\n"
        "  end\n"
        "  return alive\n"
        "end\n"
        "if redis.call('SISMEMBER', KEYS[1], addr) == 0 then\n"
        "  if mode == 'peek' then\n"
        "    return {'already_out', redis.call('SCARD', KEYS[1]), alive_count(), redis.call('ZCARD', KEYS[2]),\n"
        "            addr .. ' is not in serving'}\n"
        "  end\n"
        "  if mode == 'budget' and not redis.call('ZSCORE', KEYS[2], host) then\n"
        "    -- neither serving nor counted out: the pool lost our membership (FLUSHALL,\n"
        "    -- eviction, a restore). Not a free pass: the budget cannot see us.\n"
        "    return {'denied', redis.call('SCARD', KEYS[1]), alive_count(), redis.call('ZCARD', KEYS[2]),\n"
        "            addr .. ' is neither serving nor out: the pool lost our membership'}\n"
        "  end\n"
        "  if mode == 'release' then\n"
        "    -- out and staying out, but no longer counted against max_unavailable\n"
        "    redis.call('ZREM', KEYS[2], host)\n"
        "  elseif mode ~= 'reconcile' then\n"
        "    redis.call('ZADD', KEYS[2], expires, host)\n"
        "  elseif tonumber(ARGV[11] or '') and tonumber(ARGV[11]) >= 0 and tonumber(ARGV[11]) < tonumber(ARGV[5]) then\n"
        "    -- we have been out for ARGV[11] ms (the agent's CLOCK_BOOTTIME: no wall\n"
        "    -- clock of ours is compared with TIME): a Redis that lost the pool\n"
        "    -- (restart, FLUSHALL) counts us again until out_max after we left, so the\n"
        "    -- budget never lets more than max_unavailable go; NX keeps a known expiry\n"
        "    redis.call('ZADD', KEYS[2], 'NX', now - tonumber(ARGV[11]) + tonumber(ARGV[5]), host)\n"
        "  end\n"
        "  redis.call('ZREM', alive_key, addr)\n"
        "  if KEYS[6] then redis.call('LREM', KEYS[6], 0, addr) end\n"
        "  return {'already_out', redis.call('SCARD', KEYS[1]), alive_count(), redis.call('ZCARD', KEYS[2]),\n"
        "          addr .. ' was not in serving'}\n"
        "end\n"
        "local alive = alive_count()\n"
        "local others = redis.call('ZCARD', KEYS[2])\n"
        "if redis.call('ZSCORE', KEYS[2], host) then others = others - 1 end\n"
        "local wait_key = ARGV[8] .. '" POOLKEYS_WAITING "'\n"
        "if mode == 'budget' and ARGV[10] then\n"
        "  -- first come, first served: remember when we first asked, and that we still ask\n"
        "  redis.call('ZADD', wait_key, 'NX', now, host)\n"
        "  redis.call('SET', ARGV[8] .. '" POOLKEYS_ASKING "' .. host, '1', 'PX', ARGV[10])\n"
        "end\n"
        "if mode == 'budget' or mode == 'peek' then\n"
        "  if alive - 1 < min_serving then\n"
        "    return {'denied', redis.call('SCARD', KEYS[1]), alive, others,\n"
        "            'min_serving ' .. min_serving .. ': only ' .. alive .. ' serving'}\n"
        "  end\n"
        "  if others >= max_unavailable then\n"
        "    local names = {}\n"
        "    for _, h in ipairs(redis.call('ZRANGE', KEYS[2], 0, 5)) do\n"
        "      if h ~= host and #names < 5 then table.insert(names, h) end\n"
        "    end\n"
        "    local d = 'max_unavailable ' .. max_unavailable .. ': ' .. table.concat(names, ', ')\n"
        "    if others > #names then d = d .. ' and ' .. (others - #names) .. ' more' end\n"
        "    if others == 1 then d = d .. ' is out' else d = d .. ' are out' end\n"
        "    return {'denied', redis.call('SCARD', KEYS[1]), alive, others, d}\n"
        "  end\n"
        "  if ARGV[10] then\n"
        "    -- the free slots go to the hosts that have waited longest and still ask;\n"
        "    -- a host that stopped asking (cleared, died) is dropped on the way\n"
        "    -- read the queue's head in small batches: O(slots + stale), not O(waiters)\n"
        "    local slots, ahead, stale, i, done = max_unavailable - others, {}, {}, 0, false\n"
        "    while not done do\n"
        "      local batch = redis.call('ZRANGE', wait_key, i, i + 15)\n"
        "      if #batch == 0 then break end\n"
        "      for _, h in ipairs(batch) do\n"
        "        if h == host then done = true break end\n"
        "        if redis.call('EXISTS', ARGV[8] .. '" POOLKEYS_ASKING "' .. h) == 1 then\n"
        "          table.insert(ahead, h)\n"
        "          if #ahead >= slots then done = true break end\n"
        "        else\n"
        "          table.insert(stale, h)\n"
        "        end\n"
        "      end\n"
        "      i = i + 16\n"
        "    end\n"
        "    for _, h in ipairs(stale) do redis.call('ZREM', wait_key, h) end\n"
        "    if #ahead >= slots then\n"
        "      return {'denied', redis.call('SCARD', KEYS[1]), alive, others,\n"
        "              'queued behind ' .. table.concat(ahead, ', ') .. ' (first come, first served)'}\n"
        "    end\n"
        "  end\n"
        "end\n"
        "if mode == 'peek' then\n"
        "  -- a dry run: the same rules, nothing taken\n"
        "  return {'would_leave', redis.call('SCARD', KEYS[1]), alive, others,\n"
        "          (alive - 1) .. ' would still serve, ' .. (others + 1) .. ' would be out (max_unavailable ' ..\n"
        "          max_unavailable .. ')'}\n"
        "end\n"
        "redis.call('ZREM', wait_key, host)\n"
        "redis.call('DEL', ARGV[8] .. '" POOLKEYS_ASKING "' .. host)\n"
        "redis.call('SREM', KEYS[1], addr)\n"
        "redis.call('ZREM', alive_key, addr)\n"
        "if redis.call('HGET', KEYS[4], addr) == host then redis.call('HDEL', KEYS[4], addr) end\n"
        "local counted = 1\n"
        "if mode == 'release' then\n"
        "  redis.call('ZREM', KEYS[2], host)\n"
        "  counted = 0\n"
        "else\n"
        "  redis.call('ZADD', KEYS[2], expires, host)\n"
        "end\n"
        "if KEYS[6] then redis.call('LREM', KEYS[6], 0, addr) end\n"
        "redis.call('HSET', KEYS[3], 'left', now, 'left_reason', ARGV[9])\n"
        "redis.call('PUBLISH', KEYS[5], ARGV[7])\n"
        "local n = redis.call('SCARD', KEYS[1])\n"
        "return {'left', n, alive - 1, others + counted,\n"
        "        n .. ' still serving, ' .. (others + counted) .. ' out (max_unavailable ' .. max_unavailable .. ')'}\n";

static const char script_heartbeat[] =
        "if redis.replicate_commands then redis.replicate_commands() end\n" LUA_NOW LUA_ALIVE_KEY("KEYS[3]")
        "redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[1])\n"
        "redis.call('HSET', KEYS[2], 'heartbeat', now)\n"
        "local member = redis.call('SISMEMBER', KEYS[3], ARGV[2])\n"
        "if member == 1 then redis.call('ZADD', alive_key, now + tonumber(ARGV[1]), ARGV[2]) end\n"
        "return member\n";

/* ARGV[2] "full": every serving member with its state and lease, O(N);
 * "summary": only the counts and the out list, O(log N + out). Replies
 * {now, serving[5n], out[6n], serving_count, serving_alive}. */
static const char script_view[] =
        "if redis.replicate_commands then redis.replicate_commands() end\n" LUA_NOW LUA_ALIVE_KEY("KEYS[1]")
        "local p = ARGV[1]\n"
        "local function info(host)\n"
        "  if not host or host == '' then return '', '', -2, -1 end\n"
        "  local h = redis.call('HMGET', p .. '" POOLKEYS_HOST "' .. host, 'addr', 'state', 'heartbeat')\n"
        "  local hb, age = tonumber(h[3]), -1\n"
        "  if hb then age = now - hb end\n"
        "  return h[1] or '', h[2] or '', redis.call('PTTL', p .. '" POOLKEYS_LEASE "' .. host), age\n"
        "end\n"
        "local serving, out = {}, {}\n"
        "if ARGV[2] == 'full' then\n"
        "  for _, a in ipairs(redis.call('SMEMBERS', KEYS[1])) do\n"
        "    local owner = redis.call('HGET', KEYS[3], a) or ''\n"
        "    local _, state, ttl, age = info(owner)\n"
        "    for _, v in ipairs({a, owner, state, ttl, age}) do table.insert(serving, v) end\n"
        "  end\n"
        "end\n"
        "local o = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. now, '+inf', 'WITHSCORES')\n"
        "for i = 1, #o, 2 do\n"
        "  local addr, state, ttl, age = info(o[i])\n"
        "  for _, v in ipairs({o[i], addr, state, ttl, age, tonumber(o[i + 1]) - now}) do\n"
        "    table.insert(out, v)\n"
        "  end\n"
        "end\n"
        "redis.call('ZREMRANGEBYSCORE', alive_key, '-inf', now)\n"
        "return {now, serving, out, redis.call('SCARD', KEYS[1]), redis.call('ZCARD', alive_key)}\n";

static const char script_state[] =
        "local old = redis.call('HGET', KEYS[1], 'state')\n"
        "redis.call('HSET', KEYS[1], 'addr', ARGV[1], 'state', ARGV[2], 'since', ARGV[3], 'reason', ARGV[4],\n"
        "           'version', ARGV[5])\n"
        "if old ~= ARGV[2] then\n"
        "  redis.call('PUBLISH', KEYS[2], ARGV[6])\n"
        "  return 1\n"
        "end\n"
        "return 0\n";

const char *const pool_script_text[_POOL_SCRIPT_MAX] = {
        [POOL_SCRIPT_JOIN] = script_join,           [POOL_SCRIPT_LEAVE] = script_leave,
        [POOL_SCRIPT_HEARTBEAT] = script_heartbeat, [POOL_SCRIPT_VIEW] = script_view,
        [POOL_SCRIPT_STATE] = script_state,
};

static const char *const script_names[_POOL_SCRIPT_MAX] = {
        [POOL_SCRIPT_JOIN] = "join",   [POOL_SCRIPT_LEAVE] = "leave", [POOL_SCRIPT_HEARTBEAT] = "heartbeat",
        [POOL_SCRIPT_VIEW] = "view",   [POOL_SCRIPT_STATE] = "state",
};

const char *pool_script_to_string(PoolScript s) {
        return s >= 0 && s < _POOL_SCRIPT_MAX ? script_names[s] : NULL;
}

static const char *const leave_result_table[_POOL_LEAVE_RESULT_MAX] = {
        [POOL_LEAVE_LEFT] = "left",
        [POOL_LEAVE_ALREADY_OUT] = "already-out",
        [POOL_LEAVE_DENIED] = "denied",
        [POOL_LEAVE_UNREACHABLE] = "unreachable",
        [POOL_LEAVE_WOULD_LEAVE] = "would-leave",
};

const char *pool_leave_result_to_string(PoolLeaveResult r) {
        return r >= 0 && r < _POOL_LEAVE_RESULT_MAX ? leave_result_table[r] : NULL;
}

/* ---- pure parts ---- */

static bool reply_is_string(const redisReply *r) {
        return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS);
}

static bool reply_streq(const redisReply *r, const char *s) {
        return reply_is_string(r) && r->len == strlen(s) && memcmp(r->str, s, r->len) == 0;
}

/* A string reply as a new C string; NULL for other types (or OOM). */
static char *reply_strdup(const redisReply *r) {
        if (!reply_is_string(r))
                return NULL;
        return strndup(r->str, r->len);
}

/* An integer reply, or a string holding one (Lua numbers come back as
 * integers, but be lenient). */
static int reply_integer(const redisReply *r, long long *ret) {
        char buf[32], *end = NULL;
        long long v;

        if (!r)
                return -EBADMSG;
        if (r->type == REDIS_REPLY_INTEGER) {
                *ret = r->integer;
                return 0;
        }
        if (!reply_is_string(r) || r->len == 0 || r->len >= sizeof buf)
                return -EBADMSG;
        memcpy(buf, r->str, r->len);
        buf[r->len] = '\0';
        errno = 0;
        v = strtoll(buf, &end, 10);
        if (errno != 0 || !end || *end != '\0')
                return -EBADMSG;
        *ret = v;
        return 0;
}

void pool_leave_reply_done(PoolLeaveReply *r) {
        if (!r)
                return;
        free(r->detail);
        r->detail = NULL;
}

int pool_leave_reply_decode(const redisReply *r, PoolLeaveReply *ret) {
        static const struct {
                const char *word;
                PoolLeaveResult result;
        } words[] = {
                { "left", POOL_LEAVE_LEFT },
                { "already_out", POOL_LEAVE_ALREADY_OUT },
                { "denied", POOL_LEAVE_DENIED },
                { "would_leave", POOL_LEAVE_WOULD_LEAVE },
        };
        PoolLeaveReply v = { .result = _POOL_LEAVE_RESULT_INVALID };

        if (!r)
                return -EBADMSG;
        if (r->type == REDIS_REPLY_ERROR) {
                v.result = POOL_LEAVE_UNREACHABLE;
                v.detail = strndup(r->str ? r->str : "", r->len);
                if (!v.detail)
                        return -ENOMEM;
                *ret = v;
                return -EIO;
        }
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 5)
                return -EBADMSG;
        for (size_t i = 0; i < ELEMENTSOF(words); i++)
                if (reply_streq(r->element[0], words[i].word))
                        v.result = words[i].result;
        if (v.result < 0)
                return -EBADMSG;
        if (reply_integer(r->element[1], &v.serving) < 0 || reply_integer(r->element[2], &v.serving_alive) < 0 ||
            reply_integer(r->element[3], &v.out) < 0 || !reply_is_string(r->element[4]))
                return -EBADMSG;
        v.detail = reply_strdup(r->element[4]);
        if (!v.detail)
                return -ENOMEM;
        *ret = v;
        return 0;
}

static json_object *json_string_or_null(const char *s) {
        return isempty(s) ? NULL : json_object_new_string(s);
}

static json_object *json_reply_string_or_null(const redisReply *r) {
        if (!reply_is_string(r) || r->len == 0)
                return NULL;
        return json_object_new_string_len(r->str, (int) MIN(r->len, (size_t) INT32_MAX));
}

static void json_object_unrefp(json_object **o) {
        if (*o)
                json_object_put(*o);
}

/* ttl as PTTL gives it: -2 no key, -1 no expiry. */
static json_object *json_ttl(long long ttl) {
        return ttl == -2 ? NULL : json_object_new_int64(ttl);
}

int pool_view_decode(const redisReply *r, const char *self_addr, json_object **ret) {
        _cleanup_(json_object_unrefp) json_object *o = NULL;
        json_object *members, *out;
        const redisReply *serving, *outs;
        long long alive = 0, now;

        long long scard = -1, alive_idx = -1;

        /* 3 elements: an agent before the alive index (full view only). */
        if (!r || r->type != REDIS_REPLY_ARRAY || (r->elements != 3 && r->elements != 5) ||
            reply_integer(r->element[0], &now) < 0)
                return -EBADMSG;
        if (r->elements == 5 &&
            (reply_integer(r->element[3], &scard) < 0 || reply_integer(r->element[4], &alive_idx) < 0))
                return -EBADMSG;
        serving = r->element[1];
        outs = r->element[2];
        if (!serving || serving->type != REDIS_REPLY_ARRAY || serving->elements % 5 != 0 || !outs ||
            outs->type != REDIS_REPLY_ARRAY || outs->elements % 6 != 0)
                return -EBADMSG;

        o = json_object_new_object();
        members = json_object_new_array();
        out = json_object_new_array();
        if (!o || !members || !out) {
                json_object_put(members);
                json_object_put(out);
                return -ENOMEM;
        }
        json_object_object_add(o, "members", members);
        json_object_object_add(o, "out", out);

        for (size_t i = 0; i < serving->elements; i += 5) {
                redisReply *const *e = serving->element + i;
                json_object *m;
                long long ttl, age;

                if (!reply_is_string(e[0]) || !reply_is_string(e[1]) || !reply_is_string(e[2]) ||
                    reply_integer(e[3], &ttl) < 0 || reply_integer(e[4], &age) < 0)
                        return -EBADMSG;
                if ((self_addr && reply_streq(e[0], self_addr)) || (e[1]->len > 0 && ttl != -2))
                        alive++;
                m = json_object_new_object();
                if (!m)
                        return -ENOMEM;
                json_object_object_add(m, "host", json_reply_string_or_null(e[1]));
                json_object_object_add(m, "addr", json_reply_string_or_null(e[0]));
                json_object_object_add(m, "state", json_reply_string_or_null(e[2]));
                json_object_object_add(m, "lease_ttl_ms", json_ttl(ttl));
                json_object_object_add(m, "heartbeat_age_ms", age >= 0 ? json_object_new_int64(age) : NULL);
                json_object_object_add(m, "serving", json_object_new_boolean(true));
                json_object_object_add(m, "out_expires_in_ms", NULL);
                json_object_array_add(members, m);
        }
        for (size_t i = 0; i < outs->elements; i += 6) {
                redisReply *const *e = outs->element + i;
                json_object *m;
                long long ttl, age, expires;

                if (!reply_is_string(e[0]) || !reply_is_string(e[1]) || !reply_is_string(e[2]) ||
                    reply_integer(e[3], &ttl) < 0 || reply_integer(e[4], &age) < 0 ||
                    reply_integer(e[5], &expires) < 0)
                        return -EBADMSG;
                m = json_object_new_object();
                if (!m)
                        return -ENOMEM;
                json_object_object_add(m, "host", json_reply_string_or_null(e[0]));
                json_object_object_add(m, "addr", json_reply_string_or_null(e[1]));
                json_object_object_add(m, "state", json_reply_string_or_null(e[2]));
                json_object_object_add(m, "lease_ttl_ms", json_ttl(ttl));
                json_object_object_add(m, "heartbeat_age_ms", age >= 0 ? json_object_new_int64(age) : NULL);
                json_object_object_add(m, "serving", json_object_new_boolean(false));
                json_object_object_add(m, "out_expires_in_ms", json_object_new_int64(expires));
                json_object_array_add(members, m);
                json_object_array_add(out, json_reply_string_or_null(e[0]));
        }
        json_object_object_add(o, "serving_count",
                               json_object_new_int64(scard >= 0 ? scard : (int64_t) (serving->elements / 5)));
        json_object_object_add(o, "serving_alive", json_object_new_int64(alive_idx >= 0 ? alive_idx : alive));
        *ret = TAKE_PTR(o);
        return 0;
}

int pool_sentinel_reply_decode(const redisReply *r, char **ret_host, uint16_t *ret_port) {
        long long port;
        char *host;

        if (!r)
                return -EBADMSG;
        if (r->type == REDIS_REPLY_NIL)
                return -ENOENT;
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || !reply_is_string(r->element[0]) ||
            r->element[0]->len == 0 || reply_integer(r->element[1], &port) < 0 || port < 1 || port > 65535)
                return -EBADMSG;
        host = reply_strdup(r->element[0]);
        if (!host)
                return -ENOMEM;
        *ret_host = host;
        *ret_port = (uint16_t) port;
        return 0;
}

int pool_role_reply_decode(const redisReply *r, const char **ret_role) {
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 1 || !reply_is_string(r->element[0]))
                return -EBADMSG;
        if (ret_role)
                *ret_role = r->element[0]->str;
        return reply_streq(r->element[0], "master") ? 1 : 0;
}

char *pool_url_redact(const char *s) {
        const char *scheme_end, *rest, *end, *at;
        char *out = NULL;

        if (!s)
                return NULL;
        scheme_end = strstr(s, "://");
        if (!scheme_end)
                return strdup(s);
        rest = scheme_end + 3;
        end = strchrnul(rest, '/');
        at = memrchr(rest, '@', (size_t) (end - rest));
        if (!at)
                return strdup(s);
        if (asprintf(&out, "%.*s***@%s", (int) (rest - s), s, at + 1) < 0)
                return NULL;
        return out;
}

static void iso8601(char *buf, size_t size, usec_t wall) {
        time_t t = (time_t) (wall / USEC_PER_SEC);
        struct tm tm;

        if (!gmtime_r(&t, &tm) || strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
                snprintf(buf, size, "?");
}

char *pool_event_json(const PoolEvent *e) {
        _cleanup_(json_object_unrefp) json_object *o = NULL;
        const char *text;
        char at[32];

        if (!e || !e->type)
                return NULL;
        o = json_object_new_object();
        if (!o)
                return NULL;
        iso8601(at, sizeof at, e->at);
        json_object_object_add(o, "type", json_object_new_string(e->type));
        json_object_object_add(o, "pool", json_string_or_null(e->pool));
        json_object_object_add(o, "host", json_string_or_null(e->host));
        json_object_object_add(o, "addr", json_string_or_null(e->addr));
        if (e->state)
                json_object_object_add(o, "state", json_object_new_string(e->state));
        json_object_object_add(o, "reason", e->reason ? json_object_new_string(e->reason) : NULL);
        if (e->forced >= 0)
                json_object_object_add(o, "forced", json_object_new_boolean(e->forced));
        json_object_object_add(o, "at", json_object_new_string(at));
        json_object_object_add(o, "at_ms", json_object_new_int64((int64_t) (e->at / USEC_PER_MSEC)));
        text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        return text ? strdup(text) : NULL;
}

usec_t pool_backoff_delay(unsigned attempt, uint64_t random) {
        usec_t d = POOL_BACKOFF_MIN_USEC;

        for (unsigned i = 0; i < attempt && d < POOL_BACKOFF_MAX_USEC; i++)
                d *= 2;
        d = MIN(d, POOL_BACKOFF_MAX_USEC);
        return d / 2 + random % (d / 2 + 1);
}

/* ---- the client ---- */

typedef enum LinkKind {
        LINK_MAIN,
        LINK_SENTINEL,
} LinkKind;

typedef enum PoolConn {
        POOL_CONN_IDLE,        /* pool_start not called yet */
        POOL_CONN_WAITING,     /* backing off before the next attempt */
        POOL_CONN_DISCOVERING, /* asking a sentinel for the master */
        POOL_CONN_CONNECTING,  /* connect and handshake */
        POOL_CONN_READY,
} PoolConn;

typedef struct Link {
        Pool *pool;
        LinkKind kind;
        redisAsyncContext *ac; /* NULL once given up or freed by hiredis */
        sd_event_source *connect_timer;
        char *peer; /* for messages */
} Link;

typedef enum CmdKind {
        CMD_AUTH,
        CMD_SELECT,
        CMD_ROLE,        /* handshake through Sentinel: is this the master? */
        CMD_ROLE_CHECK,  /* the same, with each heartbeat: follows failover */
        CMD_SCRIPT_LOAD,
        CMD_SENTINEL_MASTER,
        CMD_SCRIPT, /* EVALSHA (EVAL after NOSCRIPT) of cmd->script */
        CMD_CHECKS,
} CmdKind;

typedef struct LeaveReq LeaveReq;
struct LeaveReq {
        bool force;
        bool peek;      /* a dry run: the budget's answer, nothing taken */
        char *reason;
        pool_leave_handler_t handler;
        void *userdata;
        PoolLeaveResult result;
        char *detail;
        LeaveReq *next;
};

static const char *leave_req_mode(const LeaveReq *r) {
        return r->peek ? POOL_LEAVE_MODE_PEEK : r->force ? POOL_LEAVE_MODE_FORCE : POOL_LEAVE_MODE_BUDGET;
}

typedef struct LeaveQueue {
        LeaveReq *head, *tail;
} LeaveQueue;

typedef struct Cmd Cmd;
struct Cmd {
        Pool *pool;
        Link *link;
        redisAsyncContext *ac; /* the context it went out on */
        CmdKind kind;
        PoolScript script;
        const char *mode;  /* leave: POOL_LEAVE_MODE_* */
        bool evaled;       /* NOSCRIPT fallback already used */
        unsigned index;    /* SCRIPT LOAD: which script */
        LeaveReq *leave;   /* a caller waits for this leave */
        char **argv;
        size_t *argvlen;
        int argc;
        sd_event_source *timer;
        Cmd *prev, *next;
};

#define DOOMED_MAX 16

struct Pool {
        sd_event *event;

        /* Copies: the Config is freed on reload. */
        char *url_text, *url_shown, *password_file, *password;
        RedisUrl url;
        char *name, *host, *address, *list_key;
        unsigned min_serving, max_unavailable;
        usec_t lease, heartbeat, out_max;
        char *key_prefix, *key_serving, *key_out, *key_addrs, *key_events, *key_host, *key_lease;

        /* Our own view of this host. */
        char *state, *reason, *last_checks;
        usec_t since_wall;
        bool desired_serving;
        usec_t left_boottime; /* CLOCK_BOOTTIME when desired_serving last went false; 0: not counted out */
        bool release_wanted;  /* out, and not counted against max_unavailable (pool_release) */
        int member; /* what Redis said last: 1, 0, -1 unknown */

        /* The connection. */
        PoolConn conn;
        Link main, sentinel;
        size_t sentinel_next, sentinel_tried;
        char *master_host;
        uint16_t master_port;
        unsigned attempt, handshake_pending, membership_in_flight;
        bool heartbeat_in_flight, view_in_flight, ever_ready, freeing;
        bool degraded; /* connected, but Redis refuses our scripts (NOPERM, OOM...): last_error says why */
        char *refused; /* the refusal last logged while degraded */
        char sha[_POOL_SCRIPT_MAX][41];
        char *last_error, *logged_error;
        usec_t lost_at; /* CLOCK_MONOTONIC, 0 while fine */
        bool view_full_pending, members_wanted;
        json_object *members;   /* from the last full view */
        sd_event_source *retry_timer, *heartbeat_timer, *answer_defer, *reaper;
        redisAsyncContext *doomed[DOOMED_MAX]; /* given up, freed by the reaper */
        size_t n_doomed;

        Cmd *cmds;
        LeaveQueue waiting, answered;

        /* The cache status reads. */
        json_object *view;
        usec_t view_at; /* CLOCK_MONOTONIC */
        usec_t members_at;
        size_t view_members;

        pool_connection_handler_t on_connection;
        void *on_connection_userdata;
};

static usec_t now_usec(Pool *p, clockid_t clock) {
        uint64_t t;
        struct timespec ts;

        if (p && p->event && sd_event_now(p->event, clock, &t) >= 0)
                return t;
        clock_gettime(clock, &ts);
        return (usec_t) ts.tv_sec * USEC_PER_SEC + (usec_t) ts.tv_nsec / 1000;
}

static uint64_t random_u64(void) {
        uint64_t v = 0;

        if (getrandom(&v, sizeof v, GRND_NONBLOCK) != sizeof v)
                v = now_usec(NULL, CLOCK_MONOTONIC) * 6364136223846793005ULL;
        return v;
}

static void set_error_v(Pool *p, const char *format, va_list ap) _printf_(2, 0);
static void set_error_v(Pool *p, const char *format, va_list ap) {
        char *m = NULL;

        if (vasprintf(&m, format, ap) < 0 || !m)
                return; /* out of memory: keep the previous error */
        free(p->last_error);
        p->last_error = m;
}

static void set_error(Pool *p, const char *format, ...) _printf_(2, 3);
static void set_error(Pool *p, const char *format, ...) {
        va_list ap;

        va_start(ap, format);
        set_error_v(p, format, ap);
        va_end(ap);
}

static const char *error_or(Pool *p, const char *fallback) {
        return p->last_error ? p->last_error : fallback;
}

static void free_wiped(char *s) {
        if (s)
                explicit_bzero(s, strlen(s));
        free(s);
}

/* ---- leave requests and their answers ---- */

static void queue_push(LeaveQueue *q, LeaveReq *r) {
        r->next = NULL;
        if (q->tail)
                q->tail->next = r;
        else
                q->head = r;
        q->tail = r;
}

static LeaveReq *queue_pop(LeaveQueue *q) {
        LeaveReq *r = q->head;

        if (!r)
                return NULL;
        q->head = r->next;
        if (!q->head)
                q->tail = NULL;
        r->next = NULL;
        return r;
}

static void leave_req_free(LeaveReq *r) {
        if (!r)
                return;
        free(r->reason);
        free(r->detail);
        free(r);
}

/* The handler runs later, from the answer defer source. */
static void leave_answer(Pool *p, LeaveReq *r, PoolLeaveResult result, const char *detail) {
        int k;

        if (p->freeing) {
                leave_req_free(r);
                return;
        }
        r->result = result;
        free(r->detail);
        r->detail = detail ? strdup(detail) : NULL;
        queue_push(&p->answered, r);
        k = sd_event_source_set_enabled(p->answer_defer, SD_EVENT_ONESHOT);
        if (k < 0)
                log_error_errno(k, "pool: cannot schedule the leave answer: %m");
}

static int on_answer(sd_event_source *s, void *userdata) {
        Pool *p = userdata;
        LeaveReq *r;

        /* Handlers may call back into the pool, even pool_leave: each
         * request is off the queue before its handler runs. */
        while ((r = queue_pop(&p->answered))) {
                if (r->handler)
                        r->handler(p, r->result, r->detail, r->userdata);
                leave_req_free(r);
        }
        return 0;
}

static void fail_waiting(Pool *p) {
        LeaveReq *r;

        while ((r = queue_pop(&p->waiting)))
                leave_answer(p, r, POOL_LEAVE_UNREACHABLE, error_or(p, "connection failed"));
}

/* ---- contexts we gave up on ---- */

static int on_reap(sd_event_source *s, void *userdata) {
        Pool *p = userdata;

        /* Out of every hiredis callback here: freeing runs the pending
         * callbacks with NULL replies, which only fail their commands. */
        while (p->n_doomed > 0)
                redisAsyncFree(p->doomed[--p->n_doomed]);
        return 0;
}

static void doomed_forget(Pool *p, const redisAsyncContext *ac) {
        for (size_t i = 0; i < p->n_doomed; i++)
                if (p->doomed[i] == ac) {
                        p->doomed[i] = p->doomed[--p->n_doomed];
                        return;
                }
}

static void doom(Pool *p, redisAsyncContext *ac) {
        int r;

        if (p->n_doomed == DOOMED_MAX) /* cannot happen: one per reconnect, reaped each loop */
                on_reap(NULL, p);
        p->doomed[p->n_doomed++] = ac;
        r = sd_event_source_set_enabled(p->reaper, SD_EVENT_ONESHOT);
        /* ESTALE: the loop is exiting (SIGTERM); pool_free reaps it. */
        if (r < 0 && r != -ESTALE)
                log_error_errno(r, "pool: cannot schedule closing a Redis connection: %m");
}

/* ---- commands ---- */

static void cmd_unlink(Cmd *c) {
        Pool *p = c->pool;

        if (!p)
                return;
        if (c->prev)
                c->prev->next = c->next;
        else if (p->cmds == c)
                p->cmds = c->next;
        if (c->next)
                c->next->prev = c->prev;
        c->prev = c->next = NULL;
}

static Cmd *cmd_free(Cmd *c) {
        if (!c)
                return NULL;
        c->timer = sd_event_source_disable_unref(c->timer);
        cmd_unlink(c);
        for (int i = 0; i < c->argc; i++) {
                if (c->kind == CMD_AUTH && c->argv[i])
                        explicit_bzero(c->argv[i], c->argvlen[i]);
                free(c->argv[i]);
        }
        free(c->argv);
        free(c->argvlen);
        leave_req_free(c->leave);
        free(c);
        return NULL;
}

static Cmd *cmd_new(Pool *p, Link *l, CmdKind kind, int argc) {
        Cmd *c = calloc(1, sizeof *c);

        if (!c)
                return NULL;
        c->pool = p;
        c->link = l;
        c->kind = kind;
        c->script = _POOL_SCRIPT_INVALID;
        c->argc = argc;
        c->argv = calloc((size_t) argc, sizeof *c->argv);
        c->argvlen = calloc((size_t) argc, sizeof *c->argvlen);
        if (!c->argv || !c->argvlen) {
                c->pool = NULL;
                return cmd_free(c);
        }
        return c;
}

static int cmd_set(Cmd *c, int i, const char *s) {
        char *d;

        if (!s)
                s = "";
        d = strdup(s);
        if (!d)
                return -ENOMEM;
        free(c->argv[i]);
        c->argv[i] = d;
        c->argvlen[i] = strlen(d);
        return 0;
}

static int cmd_setf(Cmd *c, int i, const char *format, ...) _printf_(3, 4);
static int cmd_setf(Cmd *c, int i, const char *format, ...) {
        va_list ap;
        char *d = NULL;
        int r;

        va_start(ap, format);
        r = vasprintf(&d, format, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        free(c->argv[i]);
        c->argv[i] = d;
        c->argvlen[i] = (size_t) r;
        return 0;
}

static const char *cmd_name(const Cmd *c) {
        switch (c->kind) {
        case CMD_AUTH:
                return "AUTH";
        case CMD_SELECT:
                return "SELECT";
        case CMD_ROLE:
        case CMD_ROLE_CHECK:
                return "ROLE";
        case CMD_SCRIPT_LOAD:
                return "SCRIPT LOAD";
        case CMD_SENTINEL_MASTER:
                return "SENTINEL get-master-addr-by-name";
        case CMD_SCRIPT:
                return pool_script_to_string(c->script);
        case CMD_CHECKS:
                return "HSET last_checks";
        }
        return "?";
}

static void link_close(Link *l);
static void link_lost(Link *l, const redisAsyncContext *ac, const char *why);
static int link_connect(Link *l, const char *host, uint16_t port, const char *path);
static void conn_broken(Pool *p);
static void connect_start(Pool *p);
static void sentinel_query(Pool *p);
static void sentinel_watch(Pool *p);
static void handshake_start(Pool *p);
static void conn_fail(Pool *p, const char *format, ...) _printf_(2, 3);
static void sentinel_failed(Pool *p, const char *format, ...) _printf_(2, 3);
static void on_reply(redisAsyncContext *ac, void *reply, void *privdata);

/* A command that will get no reply: its caller hears "unreachable". */
static void cmd_fail(Cmd *c, const char *detail) {
        Pool *p = c->pool;

        if (c->leave)
                leave_answer(p, TAKE_PTR(c->leave), POOL_LEAVE_UNREACHABLE, detail);
        if (c->kind == CMD_SCRIPT && (c->script == POOL_SCRIPT_JOIN || c->script == POOL_SCRIPT_LEAVE) &&
            p->membership_in_flight > 0 && c->ac && c->link->ac == c->ac)
                p->membership_in_flight--;
        cmd_free(c);
}

static int on_cmd_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        Cmd *c = userdata;
        Pool *p = c->pool;
        char why[160];

        c->timer = sd_event_source_disable_unref(c->timer);
        snprintf(why, sizeof why, "no reply to %s from %s within %llums", cmd_name(c), strna(c->link->peer),
                 (unsigned long long) (POOL_COMMAND_TIMEOUT_USEC / USEC_PER_MSEC));
        /* A connection that let one command time out is presumed dead:
         * the rest of its replies would come late or never. */
        if (c->link->ac != c->ac)
                return 0;
        if (c->link->kind == LINK_MAIN)
                conn_fail(p, "%s", why);
        else
                sentinel_failed(p, "%s", why);
        return 0;
}

/* Takes c in all cases. Returns 0, or a negative errno after failing c. */
static int cmd_send(Cmd *c) {
        Pool *p = c->pool;
        Link *l = c->link;
        int r;

        if (!l->ac) {
                cmd_fail(c, error_or(p, "not connected"));
                return -ENOTCONN;
        }
        r = sd_event_add_time_relative(p->event, &c->timer, CLOCK_MONOTONIC, POOL_COMMAND_TIMEOUT_USEC,
                                       USEC_PER_MSEC, on_cmd_timeout, c);
        if (r < 0) {
                cmd_fail(c, "cannot arm the command timer");
                return r;
        }
        if (redisAsyncCommandArgv(l->ac, on_reply, c, c->argc, (const char **) c->argv, c->argvlen) != REDIS_OK) {
                cmd_fail(c, "cannot queue the command");
                return -EIO;
        }
        c->ac = l->ac;
        c->prev = NULL;
        c->next = p->cmds;
        if (p->cmds)
                p->cmds->prev = c;
        p->cmds = c;
        if (c->kind == CMD_SCRIPT && (c->script == POOL_SCRIPT_JOIN || c->script == POOL_SCRIPT_LEAVE))
                p->membership_in_flight++;
        return 0;
}

/* EVALSHA sha numkeys keys... args... (NULL keys are skipped). */
static Cmd *script_cmd(Pool *p, PoolScript s, size_t n_keys, const char *const *keys, size_t n_args,
                       const char *const *args) {
        size_t real_keys = 0;
        Cmd *c;
        int i = 0;

        for (size_t k = 0; k < n_keys; k++)
                if (keys[k])
                        real_keys++;
        c = cmd_new(p, &p->main, CMD_SCRIPT, (int) (3 + real_keys + n_args));
        if (!c)
                return NULL;
        c->script = s;
        if (cmd_set(c, i++, p->sha[s][0] ? "EVALSHA" : "EVAL") < 0 ||
            cmd_set(c, i++, p->sha[s][0] ? p->sha[s] : pool_script_text[s]) < 0 ||
            cmd_setf(c, i++, "%zu", real_keys) < 0)
                goto fail;
        c->evaled = !p->sha[s][0];
        for (size_t k = 0; k < n_keys; k++)
                if (keys[k] && cmd_set(c, i++, keys[k]) < 0)
                        goto fail;
        for (size_t k = 0; k < n_args; k++)
                if (cmd_set(c, i++, args[k]) < 0)
                        goto fail;
        return c;
fail:
        c->pool = NULL;
        return cmd_free(c);
}

/* ---- what we send ---- */

static const char *nonnull(const char *s) {
        return s ? s : "";
}

static void send_or_log(Cmd *c, const char *what) {
        if (!c) {
                log_oom();
                return;
        }
        if (cmd_send(c) < 0)
                log_debug("pool: cannot send %s, ignoring", what);
}

static void send_state(Pool *p) {
        _cleanup_(freep) char *ev = NULL;
        char since[32];
        PoolEvent e = {
                .type = "state", .pool = p->name, .host = p->host, .addr = p->address,
                .state = p->state ? p->state : "unknown", .reason = p->reason, .forced = -1,
                .at = now_usec(p, CLOCK_REALTIME),
        };

        ev = pool_event_json(&e);
        iso8601(since, sizeof since, p->since_wall ? p->since_wall : e.at);
        const char *keys[] = { p->key_host, p->key_events };
        const char *args[] = { p->address, e.state, since, nonnull(p->reason), MONKEY_VERSION, ev ? ev : "{}" };
        send_or_log(script_cmd(p, POOL_SCRIPT_STATE, ELEMENTSOF(keys), keys, ELEMENTSOF(args), args), "the state");
}

static void send_checks(Pool *p) {
        Cmd *c = cmd_new(p, &p->main, CMD_CHECKS, 4);

        if (c && (cmd_set(c, 0, "HSET") < 0 || cmd_set(c, 1, p->key_host) < 0 || cmd_set(c, 2, "last_checks") < 0 ||
                  cmd_set(c, 3, p->last_checks) < 0)) {
                c->pool = NULL;
                c = cmd_free(c);
        }
        send_or_log(c, "the last checks");
}

static void send_view(Pool *p) {
        bool full = p->view_members <= POOL_VIEW_BIG || p->members_wanted;
        const char *keys[] = { p->key_serving, p->key_out, p->key_addrs };
        const char *args[] = { p->key_prefix, full ? "full" : "summary" };
        Cmd *c = script_cmd(p, POOL_SCRIPT_VIEW, ELEMENTSOF(keys), keys, ELEMENTSOF(args), args);

        if (!c) {
                log_oom();
                return;
        }
        if (cmd_send(c) >= 0) {
                p->view_in_flight = true;
                p->view_full_pending = full;
                if (full)
                        p->members_wanted = false;
        }
}

static void send_join(Pool *p) {
        _cleanup_(freep) char *ev = NULL;
        PoolEvent e = {
                .type = "join", .pool = p->name, .host = p->host, .addr = p->address, .reason = p->reason,
                .forced = -1, .at = now_usec(p, CLOCK_REALTIME),
        };

        ev = pool_event_json(&e);
        const char *keys[] = { p->key_serving, p->key_out, p->key_host, p->key_addrs, p->key_events, p->list_key };
        const char *args[] = { p->address, p->host, ev ? ev : "{}" };
        send_or_log(script_cmd(p, POOL_SCRIPT_JOIN, ELEMENTSOF(keys), keys, ELEMENTSOF(args), args), "the join");
}

/* Takes req (may be NULL: a reconcile nobody waits for). */
static void send_leave(Pool *p, const char *mode, LeaveReq *req) {
        _cleanup_(freep) char *ev = NULL;
        char min_serving[16], max_unavailable[16], ttl[32], asking[32], out_for[32];
        const char *reason = req && req->reason ? req->reason : p->reason;
        usec_t now_boot = now_usec(p, CLOCK_BOOTTIME);
        PoolEvent e = {
                .type = "leave", .pool = p->name, .host = p->host, .addr = p->address, .reason = reason,
                .forced = !streq(mode, POOL_LEAVE_MODE_BUDGET), .at = now_usec(p, CLOCK_REALTIME),
        };
        Cmd *c;

        ev = pool_event_json(&e);
        snprintf(min_serving, sizeof min_serving, "%u", p->min_serving);
        snprintf(max_unavailable, sizeof max_unavailable, "%u", p->max_unavailable);
        snprintf(ttl, sizeof ttl, "%llu", (unsigned long long) (p->out_max / USEC_PER_MSEC));
        /* A held host re-asks about every heartbeat: three missed asks and
         * it no longer holds a place in the queue. */
        snprintf(asking, sizeof asking, "%llu", (unsigned long long) (3 * p->heartbeat / USEC_PER_MSEC));
        /* How long we have been out, not when we left: Redis compares it
         * with its own TIME, and an agent whose wall clock is off must not
         * shorten or stretch its count in the budget. -1: not counted. */
        if (p->desired_serving || p->left_boottime == 0)
                snprintf(out_for, sizeof out_for, "-1");
        else
                snprintf(out_for, sizeof out_for, "%llu",
                         (unsigned long long) ((now_boot - MIN(p->left_boottime, now_boot)) / USEC_PER_MSEC));
        const char *keys[] = { p->key_serving, p->key_out, p->key_host, p->key_addrs, p->key_events, p->list_key };
        const char *args[] = { p->address, p->host, min_serving, max_unavailable, ttl, mode, ev ? ev : "{}",
                               p->key_prefix, nonnull(reason), asking, out_for };
        c = script_cmd(p, POOL_SCRIPT_LEAVE, ELEMENTSOF(keys), keys, ELEMENTSOF(args), args);
        if (!c) {
                log_oom();
                if (req)
                        leave_answer(p, req, POOL_LEAVE_UNREACHABLE, "out of memory");
                return;
        }
        c->mode = mode;
        c->leave = req;
        (void) cmd_send(c); /* on failure the request is answered "unreachable" */
}

static void send_heartbeat(Pool *p) {
        char lease[32];
        const char *keys[] = { p->key_lease, p->key_host, p->key_serving };
        const char *args[] = { lease, p->address };
        Cmd *c;

        if (p->conn != POOL_CONN_READY)
                return;
        if (!p->heartbeat_in_flight) {
                snprintf(lease, sizeof lease, "%llu", (unsigned long long) (p->lease / USEC_PER_MSEC));
                c = script_cmd(p, POOL_SCRIPT_HEARTBEAT, ELEMENTSOF(keys), keys, ELEMENTSOF(args), args);
                if (!c)
                        log_oom();
                else if (cmd_send(c) >= 0)
                        p->heartbeat_in_flight = true;
        }
        if (!p->view_in_flight)
                send_view(p);
        if (p->url.kind == REDIS_URL_SENTINEL) {
                c = cmd_new(p, &p->main, CMD_ROLE_CHECK, 1);
                if (c && cmd_set(c, 0, "ROLE") < 0) {
                        c->pool = NULL;
                        c = cmd_free(c);
                }
                send_or_log(c, "ROLE");
        }
}

/* Redis to our own view of our membership. Every step is idempotent, so a
 * duplicate (say, a heartbeat that crossed a join) costs one round trip. */
static void pool_reconcile(Pool *p) {
        if (p->conn != POOL_CONN_READY)
                return;
        if (p->desired_serving && p->member != 1)
                send_join(p);
        else if (!p->desired_serving && p->release_wanted)
                /* each reconnect: whatever counted us again in between is undone */
                send_leave(p, POOL_LEAVE_MODE_RELEASE, NULL);
        else if (!p->desired_serving && p->member != 0)
                send_leave(p, POOL_LEAVE_MODE_RECONCILE, NULL);
}

/* ---- what comes back ---- */

/* Errors after which this connection is no use: a demoted master, a
 * restarted server that lost our AUTH, one still loading its data. */
static bool error_needs_reconnect(const redisReply *r) {
        static const char *const words[] = { "READONLY", "MASTERDOWN", "LOADING", "NOAUTH", "WRONGPASS" };

        if (!r || r->type != REDIS_REPLY_ERROR || !r->str)
                return false;
        for (size_t i = 0; i < ELEMENTSOF(words); i++)
                if (strncmp(r->str, words[i], strlen(words[i])) == 0)
                        return true;
        return false;
}

static void runtime_error(Pool *p, const Cmd *c, const redisReply *r) {
        if (error_needs_reconnect(r)) {
                conn_fail(p, "%s: %s: %s", strna(c->link->peer), cmd_name(c), r->str);
                return;
        }
        /* Connected, yet refused (an ACL without our scripts, OOM): our lease
         * is not renewed, the budget cannot answer. Status must say so, not
         * "connected"; the next heartbeat that works clears it. */
        if (!p->degraded || !streq_ptr(p->refused, r->str))
                log_warning("pool: %s failed: %s", cmd_name(c), strna(r->str));
        else
                log_debug("pool: %s failed: %s", cmd_name(c), strna(r->str));
        set_error(p, "%s: %s failed: %s", strna(c->link->peer), cmd_name(c), strna(r->str));
        free(p->refused);
        p->refused = r->str ? strdup(r->str) : NULL;
        p->degraded = true;
}

static void conn_ready(Pool *p);

static void handshake_reply(Pool *p, Cmd *c, const redisReply *r) {
        const char *role = NULL;
        int k;

        if (r->type == REDIS_REPLY_ERROR) {
                conn_fail(p, "%s: %s failed: %s", strna(c->link->peer), cmd_name(c), strna(r->str));
                return;
        }
        if (c->kind == CMD_ROLE) {
                k = pool_role_reply_decode(r, &role);
                if (k < 0) {
                        conn_fail(p, "%s: unexpected reply to ROLE", strna(c->link->peer));
                        return;
                }
                if (k == 0) {
                        conn_fail(p, "%s is not the master (role %s); asking the sentinels again",
                                  strna(c->link->peer), strna(role));
                        return;
                }
        }
        if (c->kind == CMD_SCRIPT_LOAD) {
                if (!reply_is_string(r) || r->len != 40 || c->index >= _POOL_SCRIPT_MAX) {
                        conn_fail(p, "%s: unexpected reply to SCRIPT LOAD", strna(c->link->peer));
                        return;
                }
                memcpy(p->sha[c->index], r->str, 40);
                p->sha[c->index][40] = '\0';
        }
        if (p->handshake_pending > 0 && --p->handshake_pending == 0)
                conn_ready(p);
}

static void membership_done(Pool *p, const Cmd *c) {
        if (c->ac == c->link->ac && p->membership_in_flight > 0)
                p->membership_in_flight--;
}

static void join_reply(Pool *p, Cmd *c, const redisReply *r) {
        long long added, n;

        membership_done(p, c);
        if (r->type == REDIS_REPLY_ERROR) {
                runtime_error(p, c, r);
                return;
        }
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || reply_integer(r->element[0], &added) < 0 ||
            reply_integer(r->element[1], &n) < 0) {
                log_warning("pool: unexpected reply to join, ignoring");
                return;
        }
        p->member = 1;
        if (added)
                log_info("pool: joined %s as %s (%lld serving)", p->name, p->address, n);
        else
                log_debug("pool: already in %s as %s (%lld serving)", p->name, p->address, n);
        if (!p->view_in_flight && p->conn == POOL_CONN_READY)
                send_view(p);
}

static void leave_reply(Pool *p, Cmd *c, const redisReply *r) {
        _cleanup_(pool_leave_reply_done) PoolLeaveReply v = {};
        char detail[POOL_DETAIL_MAX];
        int k;

        membership_done(p, c);
        k = pool_leave_reply_decode(r, &v);
        if (k >= 0 && streq_ptr(c->mode, POOL_LEAVE_MODE_PEEK)) {
                /* a dry run changes nothing here either */
                if (c->leave)
                        leave_answer(p, TAKE_PTR(c->leave), v.result, v.detail);
                return;
        }
        if (k < 0) {
                if (k == -EIO)
                        snprintf(detail, sizeof detail, "redis error: %s", strna(v.detail));
                else
                        snprintf(detail, sizeof detail, "unexpected reply from Redis");
                log_warning("pool: leave (%s): %s", strna(c->mode), detail);
                if (c->leave)
                        leave_answer(p, TAKE_PTR(c->leave), POOL_LEAVE_UNREACHABLE, detail);
                if (k == -EIO)
                        runtime_error(p, c, r);
                return;
        }

        switch (v.result) {
        case POOL_LEAVE_LEFT:
                log_notice("pool: left %s (%s): %s", p->name, strna(c->mode), strna(v.detail));
                __attribute__((fallthrough));
        case POOL_LEAVE_ALREADY_OUT:
                p->member = 0;
                if (c->leave && p->desired_serving) {
                        p->desired_serving = false;
                        p->left_boottime = now_usec(p, CLOCK_BOOTTIME);
                        p->release_wanted = false;
                }
                break;
        case POOL_LEAVE_DENIED:
                p->member = 1;
                log_info("pool: leaving %s denied: %s", p->name, strna(v.detail));
                break;
        default:
                break;
        }
        if (c->leave)
                leave_answer(p, TAKE_PTR(c->leave), v.result, v.detail);
        if (!p->view_in_flight && p->conn == POOL_CONN_READY)
                send_view(p);
}

static void heartbeat_reply(Pool *p, Cmd *c, const redisReply *r) {
        long long member;

        if (c->ac == c->link->ac)
                p->heartbeat_in_flight = false;
        if (r->type == REDIS_REPLY_ERROR) {
                runtime_error(p, c, r);
                return;
        }
        if (reply_integer(r, &member) < 0) {
                log_warning("pool: unexpected reply to the heartbeat, ignoring");
                return;
        }
        if (p->degraded) {
                log_info("pool: Redis runs our scripts again");
                p->degraded = false;
        }
        p->member = member ? 1 : 0;
        if (p->membership_in_flight == 0 && p->member != (int) p->desired_serving) {
                log_notice("pool: Redis has %s %s serving, our own view says %s; reconciling", p->address,
                           p->member ? "in" : "not in", p->desired_serving ? "serving" : "out");
                /* whatever lost our membership (FLUSHALL, a restore) lost our host hash too */
                send_state(p);
                if (p->last_checks)
                        send_checks(p);
                pool_reconcile(p);
        }
}

static void view_reply(Pool *p, Cmd *c, const redisReply *r) {
        json_object *v = NULL, *members;

        if (c->ac == c->link->ac)
                p->view_in_flight = false;
        if (r->type == REDIS_REPLY_ERROR) {
                runtime_error(p, c, r);
                return;
        }
        if (pool_view_decode(r, p->address, &v) < 0) {
                log_warning("pool: unexpected reply to the view, ignoring");
                return;
        }
        json_object_put(p->view);
        p->view = v;
        p->view_at = now_usec(p, CLOCK_MONOTONIC);
        if (p->view_full_pending && json_object_object_get_ex(v, "members", &members)) {
                json_object_put(p->members);
                p->members = json_object_get(members);
                p->members_at = p->view_at;
        }
        /* The count decides the next view's kind, whichever this was. */
        json_object *count = NULL;
        p->view_members = json_object_object_get_ex(v, "serving_count", &count)
                                  ? (size_t) MAX(json_object_get_int64(count), (int64_t) 0)
                                  : 0;
}

/* "+switch-master" payload: "NAME OLDIP OLDPORT NEWIP NEWPORT". */
static void on_switch_master(redisAsyncContext *ac, void *reply, void *privdata) {
        Link *l = privdata;
        Pool *p = l->pool;
        redisReply *r = reply;
        const redisReply *payload;
        char name[256], old_ip[64], new_ip[64];
        unsigned old_port, new_port;
        _cleanup_(freep) char *text = NULL;

        if (!r || p->freeing || l->ac != ac)
                return; /* the watch is going away with its context */
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 || !reply_streq(r->element[0], "message"))
                return; /* the subscribe confirmation */
        payload = r->element[2];
        text = reply_strdup(payload);
        if (!text || sscanf(text, "%255s %63s %u %63s %u", name, old_ip, &old_port, new_ip, &new_port) != 5 ||
            !streq(name, p->url.master))
                return;
        log_notice("pool: sentinel %s: master '%s' switched from %s:%u to %s:%u", strna(l->peer), name, old_ip,
                   old_port, new_ip, new_port);
        p->attempt = 0;
        conn_fail(p, "sentinel %s: master '%s' moved to %s:%u", strna(l->peer), name, new_ip, new_port);
}

/* Keep the sentinel connection that answered, subscribed to
 * +switch-master, so a failover is followed as soon as it is decided.
 * A lost watch only costs that speed: the ROLE check of each heartbeat
 * and any error on the old master still send us back to the sentinels. */
static void sentinel_watch(Pool *p) {
        Link *l = &p->sentinel;

        if (!l->ac)
                return;
        if (redisAsyncCommand(l->ac, on_switch_master, l, "SUBSCRIBE %s", "+switch-master") != REDIS_OK) {
                log_debug("pool: cannot watch sentinel %s for failovers, ignoring", strna(l->peer));
                link_close(l);
        }
}

static void sentinel_reply(Pool *p, Cmd *c, const redisReply *r) {
        _cleanup_(freep) char *host = NULL;
        uint16_t port = 0;
        int k;

        k = pool_sentinel_reply_decode(r, &host, &port);
        if (k == -ENOENT) {
                sentinel_failed(p, "does not know master '%s'", p->url.master);
                return;
        }
        if (k < 0) {
                sentinel_failed(p, "unexpected reply to SENTINEL get-master-addr-by-name%s%s",
                                r->type == REDIS_REPLY_ERROR ? ": " : "",
                                r->type == REDIS_REPLY_ERROR ? strna(r->str) : "");
                return;
        }
        if (!streq_ptr(p->master_host, host) || p->master_port != port)
                log_info("pool: sentinel %s: master '%s' is at %s:%u", strna(p->sentinel.peer), p->url.master, host,
                         (unsigned) port);
        sentinel_watch(p);
        free(p->master_host);
        p->master_host = TAKE_PTR(host);
        p->master_port = port;
        p->conn = POOL_CONN_CONNECTING;
        if (link_connect(&p->main, p->master_host, p->master_port, NULL) < 0)
                conn_broken(p);
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata) {
        Cmd *c = privdata;
        Pool *p = c->pool;
        Link *l = c->link;
        redisReply *r = reply;

        c->timer = sd_event_source_disable_unref(c->timer);
        cmd_unlink(c);

        if (!r) {
                /* The context is being freed: by our reaper, or by hiredis
                 * after an error, in which case we hear it first here. */
                if (!p->freeing && l->ac == ac)
                        link_lost(l, ac, ac->errstr ? ac->errstr : "connection closed");
                cmd_fail(c, error_or(p, "connection lost"));
                return;
        }
        if (l->ac != ac && !(c->kind == CMD_SCRIPT && c->script == POOL_SCRIPT_LEAVE)) {
                /* A late reply on a connection we gave up on; a leave's
                 * answer is still the truth, anything else is stale. */
                cmd_fail(c, error_or(p, "connection given up"));
                return;
        }

        if (c->kind == CMD_SCRIPT && !c->evaled && r->type == REDIS_REPLY_ERROR && r->str &&
            strncmp(r->str, "NOSCRIPT", 8) == 0) {
                /* The script cache was flushed: send the text; EVAL caches it again. */
                membership_done(p, c);
                c->evaled = true;
                if (cmd_set(c, 0, "EVAL") < 0 || cmd_set(c, 1, pool_script_text[c->script]) < 0) {
                        cmd_fail(c, "out of memory");
                        return;
                }
                if (c->script == POOL_SCRIPT_HEARTBEAT)
                        p->heartbeat_in_flight = false;
                else if (c->script == POOL_SCRIPT_VIEW)
                        p->view_in_flight = false;
                if (cmd_send(c) >= 0) {
                        if (c->script == POOL_SCRIPT_HEARTBEAT)
                                p->heartbeat_in_flight = true;
                        else if (c->script == POOL_SCRIPT_VIEW)
                                p->view_in_flight = true;
                }
                return;
        }

        switch (c->kind) {
        case CMD_AUTH:
        case CMD_SELECT:
        case CMD_ROLE:
        case CMD_SCRIPT_LOAD:
                handshake_reply(p, c, r);
                break;
        case CMD_ROLE_CHECK: {
                const char *role = NULL;
                if (pool_role_reply_decode(r, &role) == 0)
                        conn_fail(p, "%s is no longer the master (role %s); asking the sentinels again",
                                  strna(l->peer), strna(role));
                break;
        }
        case CMD_SENTINEL_MASTER:
                sentinel_reply(p, c, r);
                break;
        case CMD_CHECKS:
                if (r->type == REDIS_REPLY_ERROR)
                        runtime_error(p, c, r);
                break;
        case CMD_SCRIPT:
                switch (c->script) {
                case POOL_SCRIPT_JOIN:
                        join_reply(p, c, r);
                        break;
                case POOL_SCRIPT_LEAVE:
                        leave_reply(p, c, r);
                        break;
                case POOL_SCRIPT_HEARTBEAT:
                        heartbeat_reply(p, c, r);
                        break;
                case POOL_SCRIPT_VIEW:
                        view_reply(p, c, r);
                        break;
                case POOL_SCRIPT_STATE:
                        if (r->type == REDIS_REPLY_ERROR)
                                runtime_error(p, c, r);
                        break;
                default:
                        break;
                }
                break;
        }
        cmd_free(c);
}

/* ---- connections ---- */

static void link_close(Link *l) {
        redisAsyncContext *ac = TAKE_PTR(l->ac);

        l->connect_timer = sd_event_source_disable_unref(l->connect_timer);
        if (ac)
                doom(l->pool, ac);
}

/* hiredis is freeing `ac` by itself (connect failed, server closed). */
static void link_lost(Link *l, const redisAsyncContext *ac, const char *why) {
        Pool *p = l->pool;

        doomed_forget(p, ac);
        if (p->freeing || l->ac != ac)
                return;
        l->ac = NULL;
        l->connect_timer = sd_event_source_disable_unref(l->connect_timer);
        if (l->kind == LINK_MAIN) {
                set_error(p, "%s: %s", strna(l->peer), why);
                conn_broken(p);
        } else
                sentinel_failed(p, "%s", why);
}

static void on_connect(const redisAsyncContext *ac, int status) {
        Link *l = ac->data;

        if (!l)
                return;
        if (status != REDIS_OK) {
                /* hiredis frees this context when we return. */
                link_lost(l, ac, ac->errstr ? ac->errstr : "cannot connect");
                return;
        }
        if (l->ac != ac)
                return;
        l->connect_timer = sd_event_source_disable_unref(l->connect_timer);
        if (l->kind == LINK_SENTINEL)
                sentinel_query(l->pool);
        else
                handshake_start(l->pool);
}

static void on_disconnect(const redisAsyncContext *ac, int status) {
        Link *l = ac->data;

        if (l)
                link_lost(l, ac, status == REDIS_OK ? "connection closed" : ac->errstr ? ac->errstr : "connection lost");
}

static int on_connect_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        Link *l = userdata;
        Pool *p = l->pool;

        l->connect_timer = sd_event_source_disable_unref(l->connect_timer);
        if (l->kind == LINK_MAIN)
                conn_fail(p, "%s: no connection within %llums", strna(l->peer),
                          (unsigned long long) (POOL_CONNECT_TIMEOUT_USEC / USEC_PER_MSEC));
        else
                sentinel_failed(p, "no connection within %llums",
                                (unsigned long long) (POOL_CONNECT_TIMEOUT_USEC / USEC_PER_MSEC));
        return 0;
}

/* host names go through getaddrinfo() in hiredis, which blocks: use IP
 * addresses (or /etc/hosts) in [pool] redis. */
static int link_connect(Link *l, const char *host, uint16_t port, const char *path) {
        Pool *p = l->pool;
        redisAsyncContext *ac;
        int r;

        link_close(l);
        free(l->peer);
        l->peer = NULL;
        if (path)
                l->peer = strdup(path);
        else if (asprintf(&l->peer, strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, (unsigned) port) < 0)
                l->peer = NULL;
        if (!l->peer)
                return -ENOMEM;

        ac = path ? redisAsyncConnectUnix(path) : redisAsyncConnect(host, port);
        if (!ac) {
                set_error(p, "%s: cannot allocate a connection", l->peer);
                return -ENOMEM;
        }
        if (ac->err) {
                set_error(p, "%s: %s", l->peer, ac->errstr ? ac->errstr : "cannot connect");
                redisAsyncFree(ac);
                return -ECONNREFUSED;
        }
        r = redis_event_attach(ac, p->event);
        if (r < 0) {
                set_error(p, "%s: cannot watch the connection: %s", l->peer, strerror(-r));
                redisAsyncFree(ac);
                return r;
        }
        ac->data = l;
        l->ac = ac;
        (void) redisAsyncSetDisconnectCallback(ac, on_disconnect);
        (void) redisAsyncSetConnectCallback(ac, on_connect);
        r = sd_event_add_time_relative(p->event, &l->connect_timer, CLOCK_MONOTONIC, POOL_CONNECT_TIMEOUT_USEC,
                                       USEC_PER_MSEC, on_connect_timeout, l);
        if (r < 0) {
                set_error(p, "%s: cannot arm the connect timer: %s", l->peer, strerror(-r));
                link_close(l);
                return r;
        }
        return 0;
}

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        Pool *p = userdata;

        p->retry_timer = sd_event_source_disable_unref(p->retry_timer);
        connect_start(p);
        return 0;
}

static void retry_schedule(Pool *p) {
        usec_t d = pool_backoff_delay(p->attempt, random_u64());
        int r;

        if (p->attempt < 64)
                p->attempt++;
        p->retry_timer = sd_event_source_disable_unref(p->retry_timer);
        r = sd_event_add_time_relative(p->event, &p->retry_timer, CLOCK_MONOTONIC, d, USEC_PER_MSEC, on_retry, p);
        if (r < 0)
                log_error_errno(r, "pool: cannot schedule a reconnect: %m");
}

/* The main link is gone (given up or lost): say so once, fail whoever
 * waits, try again later. Commands still on the old context fail when it
 * is freed. */
static void conn_broken(Pool *p) {
        bool was_ready = p->conn == POOL_CONN_READY;

        link_close(&p->sentinel); /* a watch of the master we just lost */
        p->conn = POOL_CONN_WAITING;
        if (p->on_connection && !p->freeing)
                p->on_connection(p, false, error_or(p, "connection lost"), p->on_connection_userdata);
        p->handshake_pending = 0;
        p->degraded = false;
        p->heartbeat_in_flight = p->view_in_flight = false;
        p->membership_in_flight = 0;
        p->member = -1;
        if (was_ready) {
                p->lost_at = now_usec(p, CLOCK_MONOTONIC);
                log_warning("pool: lost Redis: %s; reconnecting", error_or(p, "?"));
        } else if (!streq_ptr(p->logged_error, p->last_error))
                log_warning("pool: cannot reach Redis: %s; retrying with backoff", error_or(p, "?"));
        else
                log_debug("pool: cannot reach Redis: %s; retrying", error_or(p, "?"));
        free(p->logged_error);
        p->logged_error = p->last_error ? strdup(p->last_error) : NULL;
        fail_waiting(p);
        retry_schedule(p);
}

static void conn_fail(Pool *p, const char *format, ...) {
        va_list ap;

        va_start(ap, format);
        set_error_v(p, format, ap);
        va_end(ap);
        link_close(&p->sentinel);
        link_close(&p->main);
        conn_broken(p);
}

static void sentinel_ask(Pool *p) {
        size_t n = p->url.n_sentinels;

        while (p->sentinel_tried < n) {
                const RedisEndpoint *ep = &p->url.sentinels[p->sentinel_next % n];

                p->sentinel_next = (p->sentinel_next + 1) % n;
                p->sentinel_tried++;
                p->conn = POOL_CONN_DISCOVERING;
                if (link_connect(&p->sentinel, ep->host, ep->port, NULL) >= 0)
                        return;
        }
        set_error(p, "no sentinel gave the address of master '%s' (last: %s)", p->url.master, error_or(p, "?"));
        conn_broken(p);
}

static void sentinel_failed(Pool *p, const char *format, ...) {
        va_list ap;
        char *m = NULL;

        va_start(ap, format);
        if (vasprintf(&m, format, ap) < 0)
                m = NULL;
        va_end(ap);
        if (p->conn != POOL_CONN_DISCOVERING) {
                /* the failover watch, not the discovery */
                log_debug("pool: sentinel %s: %s; no longer watching for failovers", strna(p->sentinel.peer),
                          strna(m));
                free(m);
                link_close(&p->sentinel);
                return;
        }
        set_error(p, "sentinel %s: %s", strna(p->sentinel.peer), strna(m));
        free(m);
        log_debug("pool: %s", error_or(p, "?"));
        link_close(&p->sentinel);
        sentinel_ask(p);
}

static void sentinel_query(Pool *p) {
        Cmd *c = cmd_new(p, &p->sentinel, CMD_SENTINEL_MASTER, 3);

        if (!c || cmd_set(c, 0, "SENTINEL") < 0 || cmd_set(c, 1, "get-master-addr-by-name") < 0 ||
            cmd_set(c, 2, p->url.master) < 0) {
                if (c)
                        c->pool = NULL;
                cmd_free(c);
                sentinel_failed(p, "out of memory");
                return;
        }
        if (cmd_send(c) < 0)
                sentinel_failed(p, "cannot send the query");
}

static void connect_start(Pool *p) {
        int r;

        if (p->url.kind == REDIS_URL_SENTINEL) {
                p->sentinel_tried = 0;
                sentinel_ask(p);
                return;
        }
        p->conn = POOL_CONN_CONNECTING;
        if (p->url.kind == REDIS_URL_UNIX)
                r = link_connect(&p->main, NULL, 0, p->url.path);
        else
                r = link_connect(&p->main, p->url.server.host, p->url.server.port, NULL);
        if (r < 0)
                conn_broken(p);
}

static bool handshake_send(Pool *p, Cmd *c) {
        if (!c) {
                conn_fail(p, "out of memory");
                return false;
        }
        if (cmd_send(c) < 0) {
                conn_fail(p, "%s: cannot send the handshake", strna(p->main.peer));
                return false;
        }
        p->handshake_pending++;
        return true;
}

static Cmd *simple_cmd(Pool *p, CmdKind kind, const char *a0, const char *a1, const char *a2) {
        int argc = a2 ? 3 : a1 ? 2 : 1;
        Cmd *c = cmd_new(p, &p->main, kind, argc);

        if (!c)
                return NULL;
        if (cmd_set(c, 0, a0) < 0 || (a1 && cmd_set(c, 1, a1) < 0) || (a2 && cmd_set(c, 2, a2) < 0)) {
                c->pool = NULL;
                return cmd_free(c);
        }
        return c;
}

/* Pipelined: AUTH, SELECT, ROLE (Sentinel), SCRIPT LOAD each script. */
static void handshake_start(Pool *p) {
        char db[16];

        p->handshake_pending = 0;
        if (p->password) {
                Cmd *c = p->url.user ? simple_cmd(p, CMD_AUTH, "AUTH", p->url.user, p->password)
                                     : simple_cmd(p, CMD_AUTH, "AUTH", p->password, NULL);
                if (!handshake_send(p, c))
                        return;
        }
        if (p->url.db > 0) {
                snprintf(db, sizeof db, "%u", p->url.db);
                if (!handshake_send(p, simple_cmd(p, CMD_SELECT, "SELECT", db, NULL)))
                        return;
        }
        if (p->url.kind == REDIS_URL_SENTINEL && !handshake_send(p, simple_cmd(p, CMD_ROLE, "ROLE", NULL, NULL)))
                return;
        for (unsigned i = 0; i < _POOL_SCRIPT_MAX; i++) {
                Cmd *c = simple_cmd(p, CMD_SCRIPT_LOAD, "SCRIPT", "LOAD", pool_script_text[i]);
                if (c)
                        c->index = i;
                if (!handshake_send(p, c))
                        return;
        }
}

static void conn_ready(Pool *p) {
        LeaveReq *r;
        char took[64] = "";

        p->conn = POOL_CONN_READY;
        p->attempt = 0;
        p->member = -1;
        p->degraded = false;
        if (p->lost_at)
                snprintf(took, sizeof took, " after %.1fs",
                         (double) (now_usec(p, CLOCK_MONOTONIC) - p->lost_at) / USEC_PER_SEC);
        log_info("pool: connected to Redis %s%s (pool %s, %s)%s", strna(p->main.peer),
                 p->url.kind == REDIS_URL_SENTINEL ? " via sentinel" : "", p->name, p->address, took);
        p->lost_at = 0;
        p->ever_ready = true;
        if (p->on_connection)
                p->on_connection(p, true, NULL, p->on_connection_userdata);
        free(p->logged_error);
        p->logged_error = NULL;

        /* Our own view first, then the lease, then membership. */
        send_state(p);
        if (p->last_checks)
                send_checks(p);
        send_heartbeat(p);
        pool_reconcile(p);
        while (p->conn == POOL_CONN_READY && (r = queue_pop(&p->waiting)))
                send_leave(p, leave_req_mode(r), r);
}

/* ---- heartbeat ---- */

static int on_heartbeat(sd_event_source *s, uint64_t usec, void *userdata);

static void heartbeat_arm(Pool *p) {
        usec_t spread = p->heartbeat / 10, d;
        int r;

        /* ±10%: a fleet restarted together does not renew in lockstep. */
        d = p->heartbeat - spread + (spread ? random_u64() % (2 * spread + 1) : 0);
        if (!p->heartbeat_timer) {
                r = sd_event_add_time_relative(p->event, &p->heartbeat_timer, CLOCK_BOOTTIME, d, USEC_PER_MSEC,
                                               on_heartbeat, p);
        } else {
                r = sd_event_source_set_time_relative(p->heartbeat_timer, d);
                if (r >= 0)
                        r = sd_event_source_set_enabled(p->heartbeat_timer, SD_EVENT_ONESHOT);
        }
        if (r < 0)
                log_error_errno(r, "pool: cannot arm the heartbeat: %m");
}

static int on_heartbeat(sd_event_source *s, uint64_t usec, void *userdata) {
        Pool *p = userdata;

        send_heartbeat(p);
        heartbeat_arm(p);
        return 0;
}

/* ---- life cycle ---- */

typedef struct PoolSettings {
        char *url_text, *url_shown, *password_file, *password, *list_key;
        RedisUrl url;
} PoolSettings;

static void pool_settings_done(PoolSettings *s) {
        free_wiped(s->url_text);
        free(s->url_shown);
        free(s->password_file);
        free_wiped(s->password);
        free(s->list_key);
        redis_url_done(&s->url);
        *s = (PoolSettings) {};
}

/* What may change the connection: URL, password, list key. */
static int pool_settings_load(const Config *c, PoolSettings *ret, char **ret_error) {
        _cleanup_(pool_settings_done) PoolSettings s = {};
        _cleanup_(freep) char *err = NULL;
        int r;

        if (!c->pool.redis || !c->pool.name || !c->pool.address) {
                if (ret_error)
                        *ret_error = strdup("[pool] needs redis, name and address");
                return -EINVAL;
        }
        r = redis_url_parse(c->pool.redis, &s.url, &err);
        if (r < 0) {
                if (ret_error && err && asprintf(ret_error, "%s: [pool] redis: %s", strna(c->path), err) < 0)
                        *ret_error = NULL;
                return r;
        }
        s.url_text = strdup(c->pool.redis);
        s.url_shown = pool_url_redact(c->pool.redis);
        if (!s.url_text || !s.url_shown)
                return -ENOMEM;
        if (c->pool.password_file) {
                s.password_file = strdup(c->pool.password_file);
                if (!s.password_file)
                        return -ENOMEM;
                r = secret_file_read(c->pool.password_file, &s.password, &err);
                if (r < 0) {
                        if (ret_error &&
                            asprintf(ret_error, "[pool] password_file: %s", err ? err : strerror(-r)) < 0)
                                *ret_error = NULL;
                        return r;
                }
                /* redis://monkey@host with a password file: the ACL user */
                if (s.url.bare_userinfo && !s.url.user) {
                        s.url.user = TAKE_PTR(s.url.password);
                        s.url.bare_userinfo = false;
                }
        } else if (s.url.password) {
                s.password = strdup(s.url.password);
                if (!s.password)
                        return -ENOMEM;
        }
        if (c->pool.list_key) {
                s.list_key = strdup(c->pool.list_key);
                if (!s.list_key)
                        return -ENOMEM;
        }
        *ret = s;
        s = (PoolSettings) {};
        return 0;
}

static void pool_settings_swap(Pool *p, PoolSettings *s) {
        PoolSettings old = {
                .url_text = p->url_text, .url_shown = p->url_shown, .password_file = p->password_file,
                .password = p->password, .list_key = p->list_key, .url = p->url,
        };

        p->url_text = s->url_text;
        p->url_shown = s->url_shown;
        p->password_file = s->password_file;
        p->password = s->password;
        p->list_key = s->list_key;
        p->url = s->url;
        *s = old;
}

static void pool_numbers_load(Pool *p, const Config *c) {
        p->min_serving = c->pool.min_serving;
        p->max_unavailable = c->pool.max_unavailable;
        p->lease = c->pool.lease;
        p->heartbeat = c->pool.heartbeat;
        p->out_max = c->pool.out_max > 0 ? c->pool.out_max : 30 * USEC_PER_MINUTE;
}

int pool_new(sd_event *e, const Config *c, Pool **ret, char **ret_error) {
        _cleanup_(pool_freep) Pool *p = NULL;
        PoolSettings s = {};
        int r;

        if (!e || !c || !ret)
                return -EINVAL;
        p = calloc(1, sizeof *p);
        if (!p)
                return -ENOMEM;
        p->event = sd_event_ref(e);
        p->member = -1;
        p->main = (Link) { .pool = p, .kind = LINK_MAIN };
        p->sentinel = (Link) { .pool = p, .kind = LINK_SENTINEL };

        r = pool_settings_load(c, &s, ret_error);
        if (r < 0)
                return r;
        pool_settings_swap(p, &s);
        pool_numbers_load(p, c);

        p->name = strdup(c->pool.name);
        p->address = strdup(c->pool.address);
        p->host = strdup(c->agent.host ? c->agent.host : "unknown");
        if (!p->name || !p->address || !p->host)
                return -ENOMEM;
        if ((r = poolkeys_key(p->name, POOL_KEY_PREFIX, NULL, &p->key_prefix)) < 0 ||
            (r = poolkeys_key(p->name, POOL_KEY_SERVING, NULL, &p->key_serving)) < 0 ||
            (r = poolkeys_key(p->name, POOL_KEY_OUT, NULL, &p->key_out)) < 0 ||
            (r = poolkeys_key(p->name, POOL_KEY_ADDRS, NULL, &p->key_addrs)) < 0 ||
            (r = poolkeys_key(p->name, POOL_KEY_EVENTS, NULL, &p->key_events)) < 0 ||
            (r = poolkeys_key(p->name, POOL_KEY_HOST, p->host, &p->key_host)) < 0 ||
            (r = poolkeys_key(p->name, POOL_KEY_LEASE, p->host, &p->key_lease)) < 0)
                return r;

        r = sd_event_add_defer(e, &p->answer_defer, on_answer, p);
        if (r >= 0)
                r = sd_event_source_set_enabled(p->answer_defer, SD_EVENT_OFF);
        if (r >= 0)
                r = sd_event_add_defer(e, &p->reaper, on_reap, p);
        if (r >= 0)
                r = sd_event_source_set_enabled(p->reaper, SD_EVENT_OFF);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(p);
        return 0;
}

Pool *pool_free(Pool *p) {
        LeaveReq *r;

        if (!p)
                return NULL;
        /* From here on callbacks neither answer nor reconnect. */
        p->freeing = true;
        link_close(&p->sentinel);
        link_close(&p->main);
        on_reap(NULL, p);
        while (p->cmds) /* only ever unsent ones: sent ones died with their context */
                cmd_free(p->cmds);
        while ((r = queue_pop(&p->waiting)))
                leave_req_free(r);
        while ((r = queue_pop(&p->answered)))
                leave_req_free(r);

        sd_event_source_disable_unref(p->retry_timer);
        sd_event_source_disable_unref(p->heartbeat_timer);
        sd_event_source_disable_unref(p->answer_defer);
        sd_event_source_disable_unref(p->reaper);
        free(p->main.peer);
        free(p->sentinel.peer);
        json_object_put(p->view);
        json_object_put(p->members);

        PoolSettings s = {};
        pool_settings_swap(p, &s);
        pool_settings_done(&s);
        free(p->name);
        free(p->host);
        free(p->address);
        free(p->key_prefix);
        free(p->key_serving);
        free(p->key_out);
        free(p->key_addrs);
        free(p->key_events);
        free(p->key_host);
        free(p->key_lease);
        free(p->state);
        free(p->reason);
        free(p->last_checks);
        free(p->master_host);
        free(p->last_error);
        free(p->logged_error);
        free(p->refused);
        sd_event_unref(p->event);
        free(p);
        return NULL;
}

int pool_start(Pool *p) {
        if (!p)
                return -EINVAL;
        if (p->conn != POOL_CONN_IDLE)
                return 0;
        log_info("pool: joining pool %s as %s (%s) through %s", p->name, p->address, p->host, p->url_shown);
        heartbeat_arm(p);
        connect_start(p);
        return 0;
}

static int replace_string(char **dst, const char *src) {
        char *d = NULL;

        if (streq_ptr(*dst, src))
                return 0;
        if (src) {
                d = strdup(src);
                if (!d)
                        return -ENOMEM;
        }
        free(*dst);
        *dst = d;
        return 1;
}

void pool_set_state(Pool *p, const char *state, const char *reason, bool serving) {
        bool state_changed = false, desired_changed;
        int r;

        if (!p)
                return;
        if (!streq_ptr(p->state, state)) {
                p->since_wall = now_usec(p, CLOCK_REALTIME);
                state_changed = true;
        }
        r = replace_string(&p->state, state);
        if (r < 0)
                log_oom();
        r = replace_string(&p->reason, reason);
        if (r < 0)
                log_oom();
        else if (r > 0)
                state_changed = true;
        desired_changed = p->desired_serving != serving;
        if (desired_changed) {
                p->left_boottime = serving ? 0 : now_usec(p, CLOCK_BOOTTIME);
                p->release_wanted = false;
        }
        p->desired_serving = serving;

        if (p->conn != POOL_CONN_READY)
                return; /* sent on (re)connect */
        if (state_changed)
                send_state(p);
        if (desired_changed)
                pool_reconcile(p);
}

static int leave_request(Pool *p, bool force, bool peek, const char *reason, pool_leave_handler_t h,
                         void *userdata) {
        LeaveReq *r;

        if (!p)
                return -EINVAL;
        r = calloc(1, sizeof *r);
        if (!r)
                return -ENOMEM;
        r->force = force;
        r->peek = peek;
        r->handler = h;
        r->userdata = userdata;
        r->reason = reason ? strdup(reason) : NULL;
        if (reason && !r->reason) {
                free(r);
                return -ENOMEM;
        }

        switch (p->conn) {
        case POOL_CONN_READY:
                send_leave(p, leave_req_mode(r), r);
                break;
        case POOL_CONN_CONNECTING:
        case POOL_CONN_DISCOVERING:
                /* Answered when the handshake ends, one way or the other:
                 * every step of it has a timeout. */
                queue_push(&p->waiting, r);
                break;
        case POOL_CONN_IDLE:
                leave_answer(p, r, POOL_LEAVE_UNREACHABLE, "the pool client is not started");
                break;
        case POOL_CONN_WAITING:
        default:
                leave_answer(p, r, POOL_LEAVE_UNREACHABLE, error_or(p, "not connected"));
                break;
        }
        return 0;
}

void pool_release(Pool *p) {
        if (!p || p->desired_serving)
                return;
        if (!p->release_wanted)
                log_notice("pool: %s stays out of %s but no longer counts against max_unavailable", p->host, p->name);
        p->release_wanted = true;
        p->left_boottime = 0; /* a Redis that lost the pool must not count us again either */
        if (p->conn == POOL_CONN_READY)
                send_leave(p, POOL_LEAVE_MODE_RELEASE, NULL);
}

int pool_leave(Pool *p, bool force, const char *reason, pool_leave_handler_t h, void *userdata) {
        return leave_request(p, force, false, reason, h, userdata);
}

int pool_leave_peek(Pool *p, const char *reason, pool_leave_handler_t h, void *userdata) {
        return leave_request(p, false, true, reason, h, userdata);
}

void pool_set_last_checks(Pool *p, const char *json) {
        int r;

        if (!p)
                return;
        r = replace_string(&p->last_checks, json);
        if (r < 0)
                log_oom();
        if (r > 0 && p->last_checks && p->conn == POOL_CONN_READY)
                send_checks(p);
}

int pool_reconfigure(Pool *p, const Config *c) {
        PoolSettings s = {};
        _cleanup_(freep) char *err = NULL;
        bool reconnect;
        usec_t old_heartbeat = p->heartbeat;
        int r;

        if (!p || !c || !c->pool.enabled)
                return -EINVAL;
        r = pool_settings_load(c, &s, &err);
        if (r < 0) {
                log_warning("pool: new settings refused: %s", err ? err : strerror(-r));
                return r;
        }
        if (!streq_ptr(c->pool.name, p->name) || !streq_ptr(c->pool.address, p->address) ||
            !streq_ptr(c->agent.host, p->host))
                log_warning("pool: a new pool name, address or host takes effect at the next restart, ignoring "
                            "(still %s as %s, host %s)",
                            p->name, p->address, p->host);

        reconnect = !streq_ptr(s.url_text, p->url_text) || !streq_ptr(s.password, p->password) ||
                    !streq_ptr(s.list_key, p->list_key);
        pool_settings_swap(p, &s);
        pool_settings_done(&s);
        pool_numbers_load(p, c);
        if (p->heartbeat != old_heartbeat && p->heartbeat_timer)
                heartbeat_arm(p);

        if (reconnect && p->conn != POOL_CONN_IDLE) {
                log_info("pool: Redis settings changed, reconnecting to %s", p->url_shown);
                p->attempt = 0;
                free(p->master_host);
                p->master_host = NULL;
                conn_fail(p, "reconnecting with new settings");
        }
        return 0;
}

void pool_set_connection_handler(Pool *p, pool_connection_handler_t h, void *userdata) {
        p->on_connection = h;
        p->on_connection_userdata = userdata;
}

/* ---- status ---- */

static const char *conn_status(const Pool *p) {
        switch (p->conn) {
        case POOL_CONN_IDLE:
                return "starting";
        case POOL_CONN_WAITING:
                return "unreachable";
        case POOL_CONN_DISCOVERING:
                return "discovering";
        case POOL_CONN_CONNECTING:
                return p->ever_ready ? "reconnecting" : "connecting";
        case POOL_CONN_READY:
                return p->degraded ? "degraded" : "connected";
        }
        return "?";
}

static json_object *view_get(const Pool *p, const char *key) {
        json_object *v = NULL;

        if (!p->view || !json_object_object_get_ex(p->view, key, &v))
                return NULL;
        return json_object_get(v);
}

void pool_request_members(Pool *p) {
        usec_t now;

        if (!p || p->view_members <= POOL_VIEW_BIG)
                return; /* small pools refresh the list every heartbeat */
        now = now_usec(p, CLOCK_MONOTONIC);
        if (p->members && now - p->members_at < USEC_PER_SEC)
                return;
        p->members_wanted = true;
        if (!p->view_in_flight && p->conn == POOL_CONN_READY)
                send_view(p);
}

json_object *pool_status_json(Pool *p) {
        json_object *o, *budget;
        char master[300];
        usec_t now = now_usec(p, CLOCK_MONOTONIC);

        if (!p)
                return NULL;
        o = json_object_new_object();
        budget = json_object_new_object();
        if (!o || !budget) {
                json_object_put(o);
                json_object_put(budget);
                return NULL;
        }
        json_object_object_add(o, "configured", json_object_new_boolean(true));
        json_object_object_add(o, "name", json_object_new_string(p->name));
        json_object_object_add(o, "address", json_object_new_string(p->address));
        json_object_object_add(o, "host", json_object_new_string(p->host));
        json_object_object_add(o, "redis", json_object_new_string(p->url_shown));
        if (p->url.kind == REDIS_URL_SENTINEL && p->master_host) {
                snprintf(master, sizeof master, strchr(p->master_host, ':') ? "[%s]:%u" : "%s:%u", p->master_host,
                         (unsigned) p->master_port);
                json_object_object_add(o, "master", json_object_new_string(master));
        } else
                json_object_object_add(o, "master", NULL);
        json_object_object_add(o, "connected", json_object_new_boolean(p->conn == POOL_CONN_READY));
        json_object_object_add(o, "status", json_object_new_string(conn_status(p)));
        json_object_object_add(o, "serving", json_object_new_boolean(p->desired_serving));
        json_object_object_add(o, "member", p->member < 0 ? NULL : json_object_new_boolean(p->member));
        json_object_object_add(o, "serving_count", view_get(p, "serving_count"));
        json_object_object_add(o, "last_error", p->last_error ? json_object_new_string(p->last_error) : NULL);

        json_object_object_add(budget, "min_serving", json_object_new_int64(p->min_serving));
        json_object_object_add(budget, "max_unavailable", json_object_new_int64(p->max_unavailable));
        json_object_object_add(budget, "serving_alive", view_get(p, "serving_alive"));
        json_object_object_add(budget, "out", p->view ? view_get(p, "out") : json_object_new_array());
        json_object_object_add(budget, "out_max_sec", json_object_new_double((double) p->out_max / USEC_PER_SEC));
        json_object_object_add(o, "budget", budget);

        json_object_object_add(o, "members", p->members ? json_object_get(p->members) : json_object_new_array());
        json_object_object_add(o, "members_age_sec", p->members ? json_object_new_double(
                                                                       (double) (now - p->members_at) / USEC_PER_SEC)
                                                                 : NULL);
        json_object_object_add(o, "view_age_sec",
                               p->view ? json_object_new_double((double) (now - p->view_at) / USEC_PER_SEC) : NULL);
        json_object_object_add(o, "lease_sec", json_object_new_double((double) p->lease / USEC_PER_SEC));
        json_object_object_add(o, "heartbeat_sec", json_object_new_double((double) p->heartbeat / USEC_PER_SEC));
        return o;
}
