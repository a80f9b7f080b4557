/* The pool's key schema in Redis: the one place that spells a key name.
 * monkeyd's pool client (and its Lua scripts, spelled with the suffixes
 * below), monkey-proxy-sync and the pool benchmark all build their keys
 * here, so a reader and a writer of the pool cannot drift apart.
 *
 * Pool P is written "{P}", braces included: a Redis Cluster hash tag, so
 * every key of a pool lives in one slot and its scripts stay legal when
 * pools are sharded over a cluster. For pool P and host H:
 *   monkey:{P}:           the prefix (the scripts append per-host suffixes)
 *   monkey:{P}:serving    SET of advertised ip:port that proxies route to
 *   monkey:{P}:out        ZSET H -> expiry (ms): counted against max_unavailable
 *   monkey:{P}:addrs      HASH ip:port -> H
 *   monkey:{P}:alive      ZSET ip:port -> lease expiry (ms), serving members only
 *   monkey:{P}:waiting    ZSET H -> first ask (ms): the budget's queue
 *   monkey:{P}:events     PUBLISH channel, one JSON object per change
 *   monkey:{P}:budget     HASH min_serving max_unavailable how by at: the pool's
 *                         one disruption budget, seeded by the first agent
 *                         from its config, set with `monkeyctl pool budget`
 *   monkey:{P}:fleet-thread  STRING with a TTL: the Slack ts of the pool's
 *                         fleet thread, or "claim:H:N" while H posts it
 *   monkey:{P}:fleet-holding ZSET H -> first hold (ms): hosts in the fleet thread
 *   monkey:{P}:asking     ZSET H -> until (ms): H still asks to leave (the queue's
 *                         live members; pruned by score like alive)
 *   monkey:{P}:leases     ZSET H -> lease expiry (ms), kept by the heartbeat
 *                         beside lease:H: "is H alive" for the fleet thread
 *   monkey:{P}:host:H     HASH addr state since reason version heartbeat last_checks
 *   monkey:{P}:lease:H    STRING with a TTL, renewed by each heartbeat (read by
 *                         monkey-proxy-sync and the view, decided on by none)
 *   monkey:{P}:asking:H   STRING with a TTL: what agents before the asking ZSET
 *                         read; a new agent still sets its own (a declared key)
 *                         so old agents keep it queued during a rolling upgrade
 *
 * Redis Cluster: a script may touch only the keys it declares in KEYS (a
 * migrating slot protects nothing else), so the per-host keys of other
 * hosts are never part of a decision: the ZSETs above carry what the
 * scripts need. A pool with old and new agents during an upgrade: an old
 * agent's wait (asking:H only) is invisible to new scripts, which drop it
 * from waiting, and it re-queues at its next ask; an old agent's lease is
 * not in leases, so a new agent prunes it from fleet-holding (one message
 * outside the fleet thread, nothing in the budget); new agents' waits and
 * leases stay visible to old agents (asking:H and lease:H are still written).
 * Pure: no I/O. */
#pragma once

#include <errno.h>

#define POOLKEYS_NAMESPACE "monkey"

/* What follows "monkey:{P}:", as literals: the Lua scripts are spelled with
 * them. The per-host ones end in ':' and are followed by the host name. */
#define POOLKEYS_SERVING "serving"
#define POOLKEYS_OUT "out"
#define POOLKEYS_ADDRS "addrs"
#define POOLKEYS_ALIVE "alive"
#define POOLKEYS_WAITING "waiting"
#define POOLKEYS_EVENTS "events"
#define POOLKEYS_BUDGET "budget"
#define POOLKEYS_FLEET_THREAD "fleet-thread"
#define POOLKEYS_FLEET_HOLDING "fleet-holding"
#define POOLKEYS_HOST "host:"
#define POOLKEYS_LEASE "lease:"
#define POOLKEYS_ASKING "asking"
#define POOLKEYS_LEASES "leases"
#define POOLKEYS_ASKING_HOST "asking:"

typedef enum PoolKey {
        POOL_KEY_PREFIX,
        POOL_KEY_SERVING,
        POOL_KEY_OUT,
        POOL_KEY_ADDRS,
        POOL_KEY_ALIVE,
        POOL_KEY_WAITING,
        POOL_KEY_EVENTS,
        POOL_KEY_BUDGET,
        POOL_KEY_FLEET_THREAD,
        POOL_KEY_FLEET_HOLDING,
        POOL_KEY_HOST,   /* per host */
        POOL_KEY_LEASE,  /* per host */
        POOL_KEY_ASKING,
        POOL_KEY_LEASES,
        POOL_KEY_ASKING_HOST, /* per host */
        _POOL_KEY_MAX,
        _POOL_KEY_INVALID = -EINVAL,
} PoolKey;

/* "serving", "lease:", ...; "" for the prefix; NULL when out of range. */
const char *poolkeys_suffix(PoolKey k);
/* Whether a host name follows the key's suffix. */
int poolkeys_per_host(PoolKey k);

/* The key k of pool in a new string. host: the host for the per-host keys
 * ("" gives what every host's key starts with, as monkey-proxy-sync looks
 * up leases), NULL for the others. -EINVAL on a mismatch, -ENOMEM. */
int poolkeys_key(const char *pool, PoolKey k, const char *host, char **ret);

/* Every key of pool as host sees it (the per-host ones are host's), built
 * once: what the scripts' KEYS builders (pool_script_keys(),
 * fleet_thread_script_keys()) pick from. */
typedef struct PoolKeys {
        char *key[_POOL_KEY_MAX];
} PoolKeys;
/* -EINVAL, -ENOMEM; ret is written only on success. */
int poolkeys_new(const char *pool, const char *host, PoolKeys *ret);
void poolkeys_done(PoolKeys *k);

/* The budget's bounds, as [pool] min_serving and max_unavailable take them
 * in the config: max_unavailable 0 would let no host ever leave. */
#define POOLKEYS_MIN_SERVING_MAX 100000
#define POOLKEYS_MAX_UNAVAILABLE_MIN 1
#define POOLKEYS_MAX_UNAVAILABLE_MAX 100000

/* Whether a budget may be set: 0, or -ERANGE with *ret_error (may be NULL)
 * naming the rule broken. A negative value is "not given" and passes. */
int poolkeys_budget_check(long long min_serving, long long max_unavailable, char **ret_error);
