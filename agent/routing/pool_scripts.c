/* The pool's pure parts: see pool_scripts.h. The scripts are spelled with
 * the key schema's suffixes (poolkeys.h), so Redis derives per-host keys
 * exactly as every other reader and writer of the pool names them. */
#include "pool_scripts.h"

#include <stdio.h>
#include <time.h>

#include "backoff.h"
#include "clock.h"
#include "error.h"
#include "poolkeys.h"
#include "redisreply.h"

/* ---- the scripts ---- */

#define LUA_NOW                                                                                                \
        "local t = redis.call('TIME')\n"                                                                       \
        "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"

/* Redis Cluster: every key a script reads to decide, or writes, is one of
 * its KEYS, never a name it builds itself. During a live resharding of the
 * pool's slot Redis runs a script only where all its declared keys are (else
 * ASK or TRYAGAIN, and the client retries); an undeclared key that already
 * moved would abort the script half-way on the source ("non local key",
 * after its first writes) or read as missing on the target (a budget seeded
 * anew, a waiter dropped, and the later MIGRATE of the real key failing
 * with BUSYKEY). So the KEYS of each script are one table,
 * pool_script_keys(), which the scripts' KEYS[n] follow; only the view
 * reads other hosts' keys, to show them, after its last write.
 *
 * The alive index: monkey:{P}:alive, a ZSET of serving addresses scored by
 * their lease's expiry (ms). Join adds, leave removes, each heartbeat
 * pushes the score on. Expired entries are trimmed when counted, so the
 * budget's "serving and alive" is O(log N), not a walk over every member:
 * in a whole-fleet overload every held host re-asks each heartbeat. */

/* The pool's one budget: monkey:{P}:budget, a HASH the scripts read
 * min_serving and max_unavailable from, whatever the asking agent's config
 * says. The agent sends its config's values only as the seed: the first
 * script to find no (or no valid) budget writes them, atomically (one
 * script), says so on the events channel and reports seeded = 1. Defines
 * budget_key and budget_read(seed_min, seed_max, seeder) -> min, max,
 * seeded (-1, -1, 0 without a budget or a seed). budget, events: the KEYS
 * that name them. */
#define LUA_BUDGET(budget, events)                                                                             \
        "local budget_key = " budget "\n"                                                                      \
        "local function budget_read(seed_min, seed_max, seeder)\n"                                              \
        "  local b = redis.call('HMGET', budget_key, 'min_serving', 'max_unavailable')\n"                     \
        "  local m, x = tonumber(b[1]), tonumber(b[2])\n"                                                       \
        "  if m and x and m >= 0 and x >= 1 then return m, x, 0 end\n"                                         \
        "  m, x = tonumber(seed_min or ''), tonumber(seed_max or '')\n"                                         \
        "  if not m or not x or m < 0 or x < 1 then return -1, -1, 0 end\n"                                    \
        "  redis.call('HSET', budget_key, 'min_serving', m, 'max_unavailable', x, 'how', 'seeded',\n"          \
        "             'by', seeder, 'at', now)\n"                                                               \
        "  redis.call('PUBLISH', " events ", cjson.encode({type = 'budget',\n"                                  \
        "    action = 'seeded', pool = string.match(budget_key, '{(.*)}') or cjson.null, host = seeder,\n"      \
        "    by = seeder, old = cjson.null, new = {min_serving = m, max_unavailable = x}, at_ms = now}))\n"    \
        "  return m, x, 1\n"                                                                                    \
        "end\n"

static const char script_join[] =
        "if redis.replicate_commands then redis.replicate_commands() end\n" LUA_NOW
        "local alive_key = KEYS[6]\n"
        "local addr, host = ARGV[1], ARGV[2]\n"
        "local added = redis.call('SADD', KEYS[1], addr)\n"
        "if redis.call('HGET', KEYS[4], addr) ~= host then redis.call('HSET', KEYS[4], addr, host) end\n"
        "redis.call('ZREM', KEYS[2], host)\n"
        "local ttl = redis.call('PTTL', KEYS[7])\n"
        "if ttl > 0 then redis.call('ZADD', alive_key, now + ttl, addr) end\n"
        "if KEYS[8] then\n"
        "  redis.call('LREM', KEYS[8], 0, addr)\n"
        "  redis.call('RPUSH', KEYS[8], addr)\n"
        "end\n"
        "redis.call('HSET', KEYS[3], 'addr', addr)\n"
        "if added == 1 then redis.call('PUBLISH', KEYS[5], ARGV[3]) end\n"
        "return {added, redis.call('SCARD', KEYS[1])}\n";

/* The budget's two numbers come from the pool's key (seeded from ARGV[3]
 * and ARGV[4] when it has none) and follow the verdict in the reply. */
static const char script_leave[] =
        "if redis.replicate_commands then redis.replicate_commands() end\n" LUA_NOW
        "local alive_key, wait_key, asking_key, asking_own_key = KEYS[6], KEYS[8], KEYS[9], KEYS[10]\n"
        LUA_BUDGET("KEYS[7]", "KEYS[5]")
        "local addr, host, mode = ARGV[1], ARGV[2], ARGV[6]\n"
        "local min_serving, max_unavailable = budget_read(ARGV[3], ARGV[4], host)\n"
        "local function leave()\n"
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
        "  if KEYS[11] then redis.call('LREM', KEYS[11], 0, addr) end\n"
        "  return {'already_out', redis.call('SCARD', KEYS[1]), alive_count(), redis.call('ZCARD', KEYS[2]),\n"
        "          addr .. ' was not in serving'}\n"
        "end\n"
        "local alive = alive_count()\n"
        "local others = redis.call('ZCARD', KEYS[2])\n"
        "if redis.call('ZSCORE', KEYS[2], host) then others = others - 1 end\n"
        "if mode == 'budget' and ARGV[10] then\n"
        "  -- first come, first served: remember when we first asked, and until when we still ask\n"
        "  redis.call('ZADD', wait_key, 'NX', now, host)\n"
        "  redis.call('ZADD', asking_key, now + tonumber(ARGV[10]), host)\n"
        "  -- what agents from before the asking ZSET look for (a rolling upgrade)\n"
        "  redis.call('SET', asking_own_key, '1', 'PX', ARGV[10])\n"
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
        "    redis.call('ZREMRANGEBYSCORE', asking_key, '-inf', now)\n"
        "    local slots, ahead, stale, i, done = max_unavailable - others, {}, {}, 0, false\n"
        "    while not done do\n"
        "      local batch = redis.call('ZRANGE', wait_key, i, i + 15)\n"
        "      if #batch == 0 then break end\n"
        "      for _, h in ipairs(batch) do\n"
        "        if h == host then done = true break end\n"
        "        if redis.call('ZSCORE', asking_key, h) then\n"
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
        "redis.call('ZREM', asking_key, host)\n"
        "redis.call('DEL', asking_own_key)\n"
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
        "if KEYS[11] then redis.call('LREM', KEYS[11], 0, addr) end\n"
        "redis.call('HSET', KEYS[3], 'left', now, 'left_reason', ARGV[9])\n"
        "redis.call('PUBLISH', KEYS[5], ARGV[7])\n"
        "local n = redis.call('SCARD', KEYS[1])\n"
        "return {'left', n, alive - 1, others + counted,\n"
        "        n .. ' still serving, ' .. (others + counted) .. ' out (max_unavailable ' .. max_unavailable .. ')'}\n"
        "end\n"
        "local r = leave()\n"
        "table.insert(r, min_serving)\n"
        "table.insert(r, max_unavailable)\n"
        "return r\n";

/* The lease twice: lease:H (a TTL, read by monkey-proxy-sync and the view)
 * and H's score in leases (what the fleet thread's scripts decide on,
 * declared), expired entries trimmed on the way. */
static const char script_heartbeat[] =
        "if redis.replicate_commands then redis.replicate_commands() end\n" LUA_NOW
        "redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[1])\n"
        "redis.call('HSET', KEYS[2], 'heartbeat', now)\n"
        "if ARGV[3] then\n"
        "  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now)\n"
        "  redis.call('ZADD', KEYS[5], now + tonumber(ARGV[1]), ARGV[3])\n"
        "end\n"
        "local member = redis.call('SISMEMBER', KEYS[3], ARGV[2])\n"
        "if member == 1 then redis.call('ZADD', KEYS[4], now + tonumber(ARGV[1]), ARGV[2]) end\n"
        "return member\n";

/* ARGV[2] "full": every serving member with its state and lease, O(N);
 * "summary": only the counts and the out list, O(log N + out). ARGV[3..5]:
 * the budget's seed (the agent's config) and the seeder (its host); each
 * agent's first view after connecting seeds a new pool's budget. Replies
 * {now, serving[5n], out[6n], serving_count, serving_alive, min_serving,
 * max_unavailable, seeded}.
 * Its writes (trimming alive, seeding the budget) come first and touch only
 * KEYS; then it reads each member's host:H and lease:H, which it cannot
 * declare, with pcall. While the pool's slot migrates, the view is refused
 * (TRYAGAIN) like every script that names the events channel (never a key,
 * so never "all there"); were it to run, a member whose keys already moved
 * would show without state, address or lease (as if its lease had expired)
 * for that one view; the counts and the budget are the declared keys' and
 * exact either way. */
static const char script_view[] =
        "if redis.replicate_commands then redis.replicate_commands() end\n" LUA_NOW
        "local alive_key = KEYS[4]\n"
        "local p = ARGV[1]\n" LUA_BUDGET("KEYS[5]", "KEYS[6]")
        "redis.call('ZREMRANGEBYSCORE', alive_key, '-inf', now)\n"
        "local bmin, bmax, seeded = budget_read(ARGV[3], ARGV[4], ARGV[5])\n"
        "local function read(...)\n"
        "  local r = redis.pcall(...)\n"
        "  if type(r) == 'table' and r.err then return nil end\n"
        "  return r\n"
        "end\n"
        "local function info(host)\n"
        "  if not host or host == '' then return '', '', -2, -1 end\n"
        "  local h = read('HMGET', p .. '" POOLKEYS_HOST "' .. host, 'addr', 'state', 'heartbeat') or {}\n"
        "  local hb, age = tonumber(h[3]), -1\n"
        "  if hb then age = now - hb end\n"
        "  return h[1] or '', h[2] or '', read('PTTL', p .. '" POOLKEYS_LEASE "' .. host) or -2, age\n"
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
        "return {now, serving, out, redis.call('SCARD', KEYS[1]), redis.call('ZCARD', alive_key), bmin, bmax, seeded}\n";

/* Show or set the pool's budget. KEYS budget events; ARGV mode ("get",
 * "set"), seed min/max (for a pool without a budget: what a half-given set
 * keeps), new min/max ("" keeps the pool's), by, uid, user, host, pool,
 * at (the agent's wall clock, ISO 8601). A set is audited: the old and
 * the new budget, who and when go to the events channel. Replies {min,
 * max, how, by, at_ms, changed (1/0; -1 a get), old_min, old_max}; -1 for
 * none. */
static const char script_budget[] =
        "if redis.replicate_commands then redis.replicate_commands() end\n" LUA_NOW
        "local b = redis.call('HMGET', KEYS[1], 'min_serving', 'max_unavailable', 'how', 'by', 'at')\n"
        "local om, ox = tonumber(b[1]), tonumber(b[2])\n"
        "if not (om and ox and om >= 0 and ox >= 1) then om, ox = nil, nil end\n"
        "if ARGV[1] ~= 'set' then\n"
        "  if not om then return {-1, -1, '', '', -1, -1, -1, -1} end\n"
        "  return {om, ox, b[3] or '', b[4] or '', tonumber(b[5]) or -1, -1, -1, -1}\n"
        "end\n"
        "local nm = tonumber(ARGV[4]) or om or tonumber(ARGV[2])\n"
        "local nx = tonumber(ARGV[5]) or ox or tonumber(ARGV[3])\n"
        "if not nm or not nx or nm ~= math.floor(nm) or nx ~= math.floor(nx) or nm < 0 or nm > "
        STRINGIFY(POOLKEYS_MIN_SERVING_MAX) " or nx < " STRINGIFY(POOLKEYS_MAX_UNAVAILABLE_MIN) " or nx > "
        STRINGIFY(POOLKEYS_MAX_UNAVAILABLE_MAX) " then\n"
        "  return redis.error_reply('ERR invalid budget: min_serving ' .. tostring(nm) .. ', max_unavailable ' ..\n"
        "                           tostring(nx))\n"
        "end\n"
        "redis.call('HSET', KEYS[1], 'min_serving', nm, 'max_unavailable', nx, 'how', 'set', 'by', ARGV[6], 'at', now)\n"
        "local changed = (om ~= nm or ox ~= nx)\n"
        "local old = cjson.null\n"
        "if om then old = {min_serving = om, max_unavailable = ox} end\n"
        "redis.call('PUBLISH', KEYS[2], cjson.encode({type = 'budget', action = 'set', pool = ARGV[10],\n"
        "  host = ARGV[9], by = ARGV[6], uid = tonumber(ARGV[7]) or cjson.null,\n"
        "  user = (ARGV[8] ~= '' and ARGV[8]) or cjson.null, old = old,\n"
        "  new = {min_serving = nm, max_unavailable = nx}, changed = changed, at = ARGV[11], at_ms = now}))\n"
        "return {nm, nx, 'set', ARGV[6], now, changed and 1 or 0, om or -1, ox or -1}\n";

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
        [POOL_SCRIPT_STATE] = script_state,         [POOL_SCRIPT_BUDGET] = script_budget,
};

static const char *const script_names[_POOL_SCRIPT_MAX] = {
        [POOL_SCRIPT_JOIN] = "join",   [POOL_SCRIPT_LEAVE] = "leave", [POOL_SCRIPT_HEARTBEAT] = "heartbeat",
        [POOL_SCRIPT_VIEW] = "view",   [POOL_SCRIPT_STATE] = "state", [POOL_SCRIPT_BUDGET] = "budget",
};

/* KEYS[1], KEYS[2], ... of each script: the scripts' text follows this
 * table (test_pool.c checks that no script reads past its count). */
static const struct {
        size_t n;
        PoolKey key[POOL_SCRIPT_KEYS_MAX - 1];
        bool list; /* [pool] list_key follows, when there is one */
} script_keys[_POOL_SCRIPT_MAX] = {
        [POOL_SCRIPT_JOIN] = { 7, { POOL_KEY_SERVING, POOL_KEY_OUT, POOL_KEY_HOST, POOL_KEY_ADDRS, POOL_KEY_EVENTS,
                                    POOL_KEY_ALIVE, POOL_KEY_LEASE }, true },
        [POOL_SCRIPT_LEAVE] = { 10, { POOL_KEY_SERVING, POOL_KEY_OUT, POOL_KEY_HOST, POOL_KEY_ADDRS, POOL_KEY_EVENTS,
                                      POOL_KEY_ALIVE, POOL_KEY_BUDGET, POOL_KEY_WAITING, POOL_KEY_ASKING,
                                      POOL_KEY_ASKING_HOST }, true },
        [POOL_SCRIPT_HEARTBEAT] = { 5, { POOL_KEY_LEASE, POOL_KEY_HOST, POOL_KEY_SERVING, POOL_KEY_ALIVE,
                                         POOL_KEY_LEASES }, false },
        [POOL_SCRIPT_VIEW] = { 6, { POOL_KEY_SERVING, POOL_KEY_OUT, POOL_KEY_ADDRS, POOL_KEY_ALIVE, POOL_KEY_BUDGET,
                                    POOL_KEY_EVENTS }, false },
        [POOL_SCRIPT_STATE] = { 2, { POOL_KEY_HOST, POOL_KEY_EVENTS }, false },
        [POOL_SCRIPT_BUDGET] = { 2, { POOL_KEY_BUDGET, POOL_KEY_EVENTS }, false },
};

int pool_script_keys(PoolScript s, const PoolKeys *keys, const char *list_key,
                     const char *ret[static POOL_SCRIPT_KEYS_MAX]) {
        size_t n = 0;

        if (s < 0 || s >= _POOL_SCRIPT_MAX || !keys)
                return -EINVAL;
        for (size_t i = 0; i < script_keys[s].n; i++) {
                if (!keys->key[script_keys[s].key[i]])
                        return -EINVAL;
                ret[n++] = keys->key[script_keys[s].key[i]];
        }
        if (script_keys[s].list && !isempty(list_key))
                ret[n++] = list_key;
        return (int) n;
}

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
        /* 5 elements: a script from before the pool's budget key */
        if (r->type != REDIS_REPLY_ARRAY || (r->elements != 5 && r->elements != 7))
                return -EBADMSG;
        v.min_serving = v.max_unavailable = -1;
        if (r->elements == 7 && (redisreply_integer(r->element[5], &v.min_serving) < 0 ||
                                 redisreply_integer(r->element[6], &v.max_unavailable) < 0))
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

        long long scard = -1, alive_idx = -1, bmin = -1, bmax = -1, seeded = 0;

        /* 3 elements: an agent before the alive index (full view only);
         * 5: before the pool's budget key. */
        if (!r || r->type != REDIS_REPLY_ARRAY || (r->elements != 3 && r->elements != 5 && r->elements != 8) ||
            redisreply_integer(r->element[0], &now) < 0)
                return -EBADMSG;
        if (r->elements >= 5 &&
            (redisreply_integer(r->element[3], &scard) < 0 || redisreply_integer(r->element[4], &alive_idx) < 0))
                return -EBADMSG;
        if (r->elements == 8 &&
            (redisreply_integer(r->element[5], &bmin) < 0 || redisreply_integer(r->element[6], &bmax) < 0 ||
             redisreply_integer(r->element[7], &seeded) < 0))
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
        if (bmin >= 0 && bmax >= 1) {
                json_object *b = json_object_new_object();
                if (!b)
                        return -ENOMEM;
                json_object_object_add(b, "min_serving", json_object_new_int64(bmin));
                json_object_object_add(b, "max_unavailable", json_object_new_int64(bmax));
                json_object_object_add(o, "pool_budget", b);
        } else
                json_object_object_add(o, "pool_budget", NULL);
        json_object_object_add(o, "budget_seeded", json_object_new_boolean(seeded == 1));
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

/* ---- the pool's budget ---- */

void pool_budget_done(PoolBudget *b) {
        if (!b)
                return;
        free(b->how);
        free(b->by);
        b->how = b->by = NULL;
}

int pool_budget_reply_decode(const redisReply *r, PoolBudget *ret, char **ret_error) {
        _cleanup_(pool_budget_done) PoolBudget v = {};
        long long changed;

        if (!r || !ret)
                return -EBADMSG;
        if (r->type == REDIS_REPLY_ERROR)
                return error_set(ret_error, -EIO, "%.*s", (int) MIN(r->len, (size_t) 300), strempty(r->str));
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 8 || redisreply_integer(r->element[0], &v.min_serving) < 0 ||
            redisreply_integer(r->element[1], &v.max_unavailable) < 0 || !redisreply_is_string(r->element[2]) ||
            !redisreply_is_string(r->element[3]) || redisreply_integer(r->element[4], &v.at_ms) < 0 ||
            redisreply_integer(r->element[5], &changed) < 0 ||
            redisreply_integer(r->element[6], &v.old_min_serving) < 0 ||
            redisreply_integer(r->element[7], &v.old_max_unavailable) < 0)
                return -EBADMSG;
        /* both numbers or neither: half a budget is no budget */
        if ((v.min_serving < 0) != (v.max_unavailable < 1) || v.min_serving < -1 || v.max_unavailable < -1)
                return -EBADMSG;
        v.set = changed >= 0;
        v.changed = changed == 1;
        v.how = redisreply_strdup(r->element[2]);
        v.by = redisreply_strdup(r->element[3]);
        if (!v.how || !v.by)
                return -ENOMEM;
        *ret = v;
        v = (PoolBudget) {};
        return 0;
}

json_object *pool_budget_json(const PoolBudget *b) {
        json_object *o;
        char at[32];

        if (!b)
                return NULL;
        o = json_object_new_object();
        if (!o)
                return NULL;
        json_object_object_add(o, "min_serving", b->min_serving >= 0 ? json_object_new_int64(b->min_serving) : NULL);
        json_object_object_add(o, "max_unavailable",
                               b->max_unavailable >= 1 ? json_object_new_int64(b->max_unavailable) : NULL);
        json_object_object_add(o, "how", json_string_or_null(b->how));
        json_object_object_add(o, "by", json_string_or_null(b->by));
        format_iso8601(at, sizeof at, (usec_t) MAX(b->at_ms, 0LL) * USEC_PER_MSEC);
        json_object_object_add(o, "at", b->at_ms >= 0 ? json_object_new_string(at) : NULL);
        json_object_object_add(o, "at_ms", b->at_ms >= 0 ? json_object_new_int64(b->at_ms) : NULL);
        return o;
}

static void number_or_empty(char *buf, size_t size, long long v) {
        if (v < 0)
                buf[0] = '\0';
        else
                snprintf(buf, size, "%lld", v);
}

int pool_budget_args(const PoolBudgetChange *change, unsigned seed_min, unsigned seed_max, const char *pool,
                     const char *host, const char *at, PoolBudgetArgs *ret, char **ret_error) {
        PoolBudgetArgs a = {};
        int r;

        if (!pool || !host || !ret)
                return -EINVAL;
        if (change) {
                if (change->min_serving < 0 && change->max_unavailable < 0)
                        return error_set(ret_error, -EINVAL, "nothing to set: give min_serving, max_unavailable or both");
                r = poolkeys_budget_check(change->min_serving, change->max_unavailable, ret_error);
                if (r < 0)
                        return r;
                /* who, as the audit shows it: the name is the agent's lookup, the uid the kernel's word */
                if (!change->have_uid)
                        snprintf(a.by, sizeof a.by, "an unknown peer on %s", host);
                else if (change->user)
                        snprintf(a.by, sizeof a.by, "%s (uid %u) on %s", change->user, change->uid, host);
                else
                        snprintf(a.by, sizeof a.by, "uid %u on %s", change->uid, host);
                number_or_empty(a.new_min, sizeof a.new_min, change->min_serving);
                number_or_empty(a.new_max, sizeof a.new_max, change->max_unavailable);
                number_or_empty(a.uid, sizeof a.uid, change->have_uid ? (long long) change->uid : -1);
        }
        snprintf(a.seed_min, sizeof a.seed_min, "%u", seed_min);
        snprintf(a.seed_max, sizeof a.seed_max, "%u", seed_max);
        a.argv[0] = change ? POOL_BUDGET_MODE_SET : POOL_BUDGET_MODE_GET;
        a.argv[1] = a.seed_min;
        a.argv[2] = a.seed_max;
        a.argv[3] = a.new_min;
        a.argv[4] = a.new_max;
        a.argv[5] = a.by;
        a.argv[6] = a.uid;
        a.argv[7] = change ? strempty(change->user) : "";
        a.argv[8] = host;
        a.argv[9] = pool;
        a.argv[10] = strempty(at);
        *ret = a;
        /* argv points into a's own buffers: point it at ret's */
        ret->argv[1] = ret->seed_min;
        ret->argv[2] = ret->seed_max;
        ret->argv[3] = ret->new_min;
        ret->argv[4] = ret->new_max;
        ret->argv[5] = ret->by;
        ret->argv[6] = ret->uid;
        return 0;
}

const char *pool_budget_differs(long long pool_min, long long pool_max, unsigned config_min, unsigned config_max) {
        bool min_differs = pool_min >= 0 && pool_min != (long long) config_min;
        bool max_differs = pool_max >= 1 && pool_max != (long long) config_max;

        return min_differs && max_differs ? "min_serving, max_unavailable"
               : min_differs              ? "min_serving"
               : max_differs              ? "max_unavailable"
                                          : "";
}
