/* One fleet thread per pool: when hosts of a pool hold because the budget
 * is spent, the first of them opens one Slack message for the whole pool
 * ("pool web: budget spent, 3 of 10 holding, oldest since …") and every
 * other holding host replies in that thread instead of opening a thread
 * of its own. The thread's ts lives in Redis (monkey:{P}:fleet-thread,
 * taken with SET NX), the holding hosts in monkey:{P}:fleet-holding; the
 * last host to stop holding follows the thread up.
 *
 * This module owns the decisions, as pure functions of what Redis
 * answered and an injected clock, the scripts' text and the messages'
 * text. The I/O (sending the scripts, spooling the messages) is alerts.c's. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"
#include "poolkeys.h"

/* A host that cannot learn the thread's ts within this long (the opener
 * died, or its Slack backlog is long) opens its own thread: late, never lost. */
#define FLEET_THREAD_PATIENCE (60 * USEC_PER_SEC)
/* How often a waiting host asks again for the ts. */
#define FLEET_THREAD_POLL (1 * USEC_PER_SEC)
/* A claim whose opener never stored a ts expires after this long. */
#define FLEET_THREAD_CLAIM_TTL (30 * USEC_PER_SEC)

typedef enum FleetRole {
        FLEET_OPEN,     /* we claimed the thread: post the fleet parent, then store its ts */
        FLEET_JOIN,     /* the thread exists: reply in it */
        FLEET_WAIT,     /* another host claimed it and has not posted yet: ask again */
        FLEET_OWN,      /* no fleet thread to be had: our own thread, as without one */
        _FLEET_ROLE_MAX,
        _FLEET_ROLE_INVALID = -EINVAL,
} FleetRole;

const char *fleet_role_to_string(FleetRole r);

typedef enum FleetEnd {
        FLEET_END_NONE,        /* others still hold, or the opener follows up (its store is refused) */
        FLEET_END_FOLLOW_UP,   /* we took the last hold away: follow the thread up */
        _FLEET_END_MAX,
        _FLEET_END_INVALID = -EINVAL,
} FleetEnd;

/* The hold script's answer. */
typedef struct FleetHold {
        char value[80];        /* the key's value: a claim or a Slack ts */
        int64_t holding;       /* hosts holding, us included */
        int64_t total;         /* members of the pool (serving + out) */
        usec_t oldest;         /* wall clock (Redis TIME) of the oldest hold */
        usec_t now;            /* Redis TIME */
} FleetHold;

/* A Slack ts: digits '.' digits. A claim is anything else ("claim:H:N"). */
bool fleet_thread_is_ts(const char *value);

/* Pure: a claim that names this host and this attempt (wall clock). */
int fleet_thread_claim(const char *host, usec_t now_wall, char *buf, size_t size);

/* Pure: what a holding host does with the hold script's answer. value:
 * the key's value, NULL when the script could not run (Redis
 * unreachable); claim: ours; asked_since: when we first asked
 * (CLOCK_MONOTONIC, like now). */
FleetRole fleet_thread_decide(const char *value, const char *claim, usec_t asked_since, usec_t now);

/* Pure: what a host that stopped holding does with the end script's
 * answer: removed is the key's value it deleted because no host holds any
 * more (NULL: others still hold). */
FleetEnd fleet_thread_end_decide(const char *removed);

/* Pure: the fleet parent's text. "pool web: budget spent, 3 of 10
 * holding, oldest since 2026-12-07T05:12:03Z (4m ago); each holding
 * host replies in this thread". */
int fleet_thread_parent_text(const char *pool, const FleetHold *h, const char *why, char **ret);
/* Pure: the follow-up when no host holds any more. */
int fleet_thread_end_text(const char *pool, const char *host, char **ret);

/* The scripts (EVAL: they are sent only when a host starts or stops
 * holding, so the pool's script cache stays the pool's). Each touches only
 * its KEYS (Redis Cluster: see pool_scripts.c), which
 * fleet_thread_script_keys() builds in this order:
 * hold: KEYS thread holding serving out leases; ARGV host claim claim_ttl_ms ttl_ms
 *   -> {value, holding, total, oldest_ms, now_ms}
 * store: KEYS thread holding; ARGV claim ts ttl_ms -> 1 stored, 0 ended or taken over
 * end: KEYS thread holding leases; ARGV host -> the value deleted, or nil */
typedef enum FleetScript {
        FLEET_SCRIPT_HOLD,
        FLEET_SCRIPT_STORE,
        FLEET_SCRIPT_END,
        _FLEET_SCRIPT_MAX,
        _FLEET_SCRIPT_INVALID = -EINVAL,
} FleetScript;

extern const char fleet_thread_script_hold[];
extern const char fleet_thread_script_store[];
extern const char fleet_thread_script_end[];
extern const char *const fleet_thread_script_text[_FLEET_SCRIPT_MAX];
/* "fleet-hold", "fleet-store", "fleet-end"; NULL when out of range. */
const char *fleet_thread_script_to_string(FleetScript s);

#define FLEET_SCRIPT_KEYS_MAX 5
/* Script s's KEYS in ret, pointing into keys (poolkeys_new()). Returns how
 * many, or -EINVAL. */
int fleet_thread_script_keys(FleetScript s, const PoolKeys *keys, const char *ret[static FLEET_SCRIPT_KEYS_MAX]);
