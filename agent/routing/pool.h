/* The pool client: this host's membership in the load balancer's pool in
 * Redis (hiredis async on sd-event). It keeps the agent's own view of its
 * membership (desired: serving or out) and reconciles Redis to it on every
 * (re)connect and heartbeat, so an outage never loses a join or a leave.
 * Each membership step is one Lua script (pool_scripts.h); the
 * budget-checked leave checks and removes atomically. The connection,
 * Sentinel and the timeouts are pool_link.h's.
 *
 * Redis data model for pool P (written "{P}", a cluster hash tag) and host H
 * (the names are base/poolkeys.h's):
 *   monkey:{P}:serving   SET of advertised ip:port that proxies route to
 *   monkey:{P}:host:H    HASH addr state since reason version heartbeat last_checks
 *   monkey:{P}:lease:H   STRING with PX TTL = [pool] lease, renewed each heartbeat
 *   monkey:{P}:addrs     HASH ip:port -> H (who owns an address in serving)
 *   monkey:{P}:alive     ZSET ip:port -> lease expiry (ms), serving members only:
 *                        the budget counts "serving and alive" in O(log N)
 *   monkey:{P}:out       ZSET H -> expiry (ms): hosts that left and count
 *                        against max_unavailable until they rejoin or expire
 *   monkey:{P}:waiting   ZSET H -> first ask (ms): held hosts, served first come first served
 *   monkey:{P}:asking:H  STRING with PX TTL: H still asks (renewed by each ask)
 *   monkey:{P}:events    PUBLISH channel, one JSON object per change
 *   monkey:{P}:budget    HASH min_serving max_unavailable how by at: the pool's one
 *                        budget, which the leave script reads; seeded from the first
 *                        agent's config, set by `monkeyctl pool budget`
 *   [pool] list_key      optional LIST mirror of serving, no duplicates
 * Nothing here blocks: every call answers through a callback or the cached
 * view, and every command has its own timeout timer. */
#pragma once

#include <json-c/json.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "pool_link.h"
#include "pool_scripts.h"

typedef struct Pool Pool;

/* detail: one human line ("min_serving 2: only 2 serving", "max_unavailable 1:
 * web-2 is out"), borrowed for the call. */
typedef void (*pool_leave_handler_t)(Pool *p, PoolLeaveResult r, const char *detail, void *userdata);

/* Called on every lost connection or failed attempt (connected false,
 * detail says why) and on every (re)connect, from the loop. The agent
 * turns a long outage into one alert. */
typedef void (*pool_connection_handler_t)(Pool *p, bool connected, const char *detail, void *userdata);
void pool_set_connection_handler(Pool *p, pool_connection_handler_t h, void *userdata);

/* Parses [pool] (URL, password file) and prepares; connects in pool_start. */
int pool_new(sd_event *e, const Config *c, Pool **ret, char **ret_error);
Pool *pool_free(Pool *p);
static inline void pool_freep(Pool **p) {
        pool_free(*p);
}

/* Start connecting (async) and the heartbeat timer. */
int pool_start(Pool *p);

/* Our own view of this host: state name and reason for the host hash, and
 * whether we should be in serving. Reconciled now if connected, else on
 * reconnect. Joining is never budget-checked. */
void pool_set_state(Pool *p, const char *state, const char *reason, bool serving);

/* Budget-checked leave (force: skip the budget, for maintenance and
 * quarantine). The handler is called exactly once, from the event loop,
 * never from inside this call. On LEFT/ALREADY_OUT the desired view
 * becomes "out". Returns 0, or a negative errno if it cannot even try. */
int pool_leave(Pool *p, bool force, const char *reason, pool_leave_handler_t h, void *userdata);
/* A dry run of a budget-checked leave: the same rules, evaluated
 * atomically in Redis, but nothing is taken (no slot, no queue place, no
 * change to serving). Answers WOULD_LEAVE, DENIED (detail says which rule),
 * ALREADY_OUT or UNREACHABLE. */
int pool_leave_peek(Pool *p, const char *reason, pool_leave_handler_t h, void *userdata);

/* Out of serving and staying out, but no longer counted against
 * max_unavailable: the remediation that held the slot ended without an
 * answer (remedy.c) and the rest of the fleet may use the slot. Kept
 * across reconnects and a Redis that lost the pool, until the host is in
 * serving again or leaves anew. No-op while serving is desired. */
void pool_release(Pool *p);

/* The last check report (JSON text), stored in the host hash as last_checks. */
void pool_set_last_checks(Pool *p, const char *json);

/* A new config on SIGHUP: thresholds, lease and heartbeat apply at once;
 * a new URL reconnects. */
int pool_reconfigure(Pool *p, const Config *c);

/* The full member list is O(members) in Redis: pools above a few hundred
 * members refresh it only when asked (monkeyctl pool), at most once a
 * second. The answer lands in the cache; the caller shows what is cached. */
void pool_request_members(Pool *p);

/* The pool's budget in Redis (monkeyctl pool budget): change NULL reads
 * it, else sets it (audited on the events channel: who, when, old -> new;
 * and in this agent's journal). The handler is called once, from the
 * loop, never from inside this call: r 0 with the budget, or < 0 with
 * error. Returns 0, or < 0 with *ret_error when it cannot even ask (not
 * connected, a change out of bounds: -ERANGE). */
typedef void (*pool_budget_handler_t)(Pool *p, int r, const PoolBudget *b, const char *error, uint64_t ticket,
                                      void *userdata);
/* ticket: the caller's own, handed back to h. */
int pool_budget(Pool *p, const PoolBudgetChange *change, pool_budget_handler_t h, uint64_t ticket, void *userdata,
                char **ret_error);

/* The budget the scripts enforce as this agent last saw it: the pool's
 * own, or this host's config until Redis has answered. */
void pool_budget_effective(const Pool *p, unsigned *ret_min_serving, unsigned *ret_max_unavailable);

/* One command for another module's keys in the pool's Redis (the fleet
 * thread's scripts): argv[0] is its name; the pool_link_command()
 * contract (h hears the answer exactly once). */
int pool_command(Pool *p, const char *what, size_t argc, const char *const *argv, pool_link_reply_t h,
                 void *userdata);

/* For status: {"configured":true,"name","address","connected","serving",
 * "serving_count","status","last_error","budget":{...},"members":[...],
 * "view_age_sec"}. Built from the cache refreshed each heartbeat: never
 * waits for Redis. New reference. */
json_object *pool_status_json(Pool *p);
