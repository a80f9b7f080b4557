/* The pool's pure parts: see pool_scripts.h. The scripts are spelled with
 * the key schema's suffixes (poolkeys.h), so Redis derives per-host keys
 * exactly as every other reader and writer of the pool names them. */
#include "pool_scripts.h"

#include <assert.h>
#include <stdio.h>
#include <time.h>

#include "backoff.h"
#include "clock.h"
#include "poolkeys.h"
#include "redisreply.h"

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

/* ---- the replies (built of redisreply.h's typed reads) ---- */

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
                if (redisreply_streq(r->element[0], words[i].word))
                        v.result = words[i].result;
        if (v.result < 0)
                return -EBADMSG;
        if (redisreply_integer(r->element[1], &v.serving) < 0 ||
            redisreply_integer(r->element[2], &v.serving_alive) < 0 || redisreply_integer(r->element[3], &v.out) < 0 ||
            !redisreply_is_string(r->element[4]))
                return -EBADMSG;
        v.detail = redisreply_strdup(r->element[4]);
        if (!v.detail)
                return -ENOMEM;
        *ret = v;
        return 0;
}

static json_object *json_string_or_null(const char *s) {
        return isempty(s) ? NULL : json_object_new_string(s);
}

static json_object *json_reply_string_or_null(const redisReply *r) {
        if (!redisreply_is_string(r) || r->len == 0)
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
            redisreply_integer(r->element[0], &now) < 0)
                return -EBADMSG;
        if (r->elements == 5 &&
            (redisreply_integer(r->element[3], &scard) < 0 || redisreply_integer(r->element[4], &alive_idx) < 0))
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

                if (!redisreply_is_string(e[0]) || !redisreply_is_string(e[1]) || !redisreply_is_string(e[2]) ||
                    redisreply_integer(e[3], &ttl) < 0 || redisreply_integer(e[4], &age) < 0)
                        return -EBADMSG;
                if ((self_addr && redisreply_streq(e[0], self_addr)) || (e[1]->len > 0 && ttl != -2))
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

                if (!redisreply_is_string(e[0]) || !redisreply_is_string(e[1]) || !redisreply_is_string(e[2]) ||
                    redisreply_integer(e[3], &ttl) < 0 || redisreply_integer(e[4], &age) < 0 ||
                    redisreply_integer(e[5], &expires) < 0)
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

char *pool_event_json(const PoolEvent *e) {
        _cleanup_(json_object_unrefp) json_object *o = NULL;
        const char *text;
        char at[32];

        if (!e || !e->type)
                return NULL;
        o = json_object_new_object();
        if (!o)
                return NULL;
        format_iso8601(at, sizeof at, e->at);
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
        return backoff_delay(POOL_BACKOFF_MIN_USEC, POOL_BACKOFF_MAX_USEC, attempt, random);
}


int pool_join_reply_decode(const redisReply *r, long long *ret_added, long long *ret_serving) {
        long long added, n;

        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 || redisreply_integer(r->element[0], &added) < 0 ||
            redisreply_integer(r->element[1], &n) < 0)
                return -EBADMSG;
        *ret_added = added;
        *ret_serving = n;
        return 0;
}

int pool_heartbeat_reply_decode(const redisReply *r) {
        long long member;

        if (redisreply_integer(r, &member) < 0)
                return -EBADMSG;
        return member ? 1 : 0;
}

int pool_script_load_reply_decode(const redisReply *r, char ret_sha[static 41]) {
        if (!redisreply_is_string(r) || r->len != 40)
                return -EBADMSG;
        memcpy(ret_sha, r->str, 40);
        ret_sha[40] = '\0';
        return 0;
}

bool pool_reply_is_noscript(const redisReply *r) {
        return r && r->type == REDIS_REPLY_ERROR && r->str && strncmp(r->str, "NOSCRIPT", 8) == 0;
}

bool pool_reply_needs_reconnect(const redisReply *r) {
        static const char *const words[] = { "READONLY", "MASTERDOWN", "LOADING", "NOAUTH", "WRONGPASS" };

        if (!r || r->type != REDIS_REPLY_ERROR || !r->str)
                return false;
        for (size_t i = 0; i < ELEMENTSOF(words); i++)
                if (strncmp(r->str, words[i], strlen(words[i])) == 0)
                        return true;
        return false;
}

int pool_switch_master_decode(const redisReply *r, const char *master, PoolSwitchMaster *ret) {
        _cleanup_(freep) char *text = NULL;
        PoolSwitchMaster v = {};
        char name[256];

        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3 || !redisreply_streq(r->element[0], "message"))
                return 0; /* the subscribe confirmation */
        text = redisreply_strdup(r->element[2]);
        if (!text)
                return redisreply_is_string(r->element[2]) ? -ENOMEM : -EBADMSG;
        if (sscanf(text, "%255s %63s %u %63s %u", name, v.old_ip, &v.old_port, v.new_ip, &v.new_port) != 5)
                return -EBADMSG;
        if (!streq_ptr(name, master))
                return 0;
        *ret = v;
        return 1;
}
