/* The pool's pure parts: its Lua scripts (each one atomic step in Redis),
 * the decoders of the replies the pool client reads (the scripts', SCRIPT
 * LOAD's and the failover channel's; Sentinel's and ROLE's are
 * redisreply.h's, shared with monkey-proxy-sync), the connection URL
 * as shown, the event JSON and the reconnect backoff. Used by pool_link.c
 * and pool.c, by their unit tests, and by the benchmark, which replays the
 * same scripts against one redis-server. Nothing here does I/O. */
#pragma once

#include <hiredis/hiredis.h>
#include <json-c/json.h>

#include "macro.h"
#include "poolkeys.h"

/* What asking to leave came to: the leave script's verdict (decoded here)
 * or the client's own (no answer in time). */
typedef enum PoolLeaveResult {
        POOL_LEAVE_LEFT,             /* removed from serving, now counted out */
        POOL_LEAVE_ALREADY_OUT,      /* was not in serving: nothing to do */
        POOL_LEAVE_DENIED,           /* budget says no; detail says which rule */
        POOL_LEAVE_UNREACHABLE,      /* no answer from Redis in time */
        POOL_LEAVE_WOULD_LEAVE,      /* pool_leave_peek(): the budget would let us go */
        _POOL_LEAVE_RESULT_MAX,
        _POOL_LEAVE_RESULT_INVALID = -EINVAL,
} PoolLeaveResult;

const char *pool_leave_result_to_string(PoolLeaveResult r);

/* KEYS: pool_script_keys() builds them, in the order each script reads
 * them (KEYS[1], ...); a script touches no other key of the pool but, in
 * the view, other members' host:H and lease:H, only to show them. */
typedef enum PoolScript {
        POOL_SCRIPT_JOIN,      /* KEYS serving out host:H addrs events alive lease:H [list];
                                * ARGV addr host event_json */
        POOL_SCRIPT_LEAVE,     /* KEYS serving out host:H addrs events alive budget waiting asking asking:H
                                * [list]; ARGV addr host seed_min_serving
                                * seed_max_unavailable out_ttl_ms mode event_json key_prefix (unused since
                                * the KEYS carry every key; kept so the rest keep their places) reason
                                * [asking_ttl_ms: budget mode queues askers first come, first served]
                                * [out_for_ms: reconcile mode counts us out again for the rest of
                                * out_ttl_ms; -1 not counted; elapsed, never a wall-clock time] */
        POOL_SCRIPT_HEARTBEAT, /* KEYS lease:H host:H serving alive leases; ARGV lease_ms addr host
                                * -> member 0/1 */
        POOL_SCRIPT_VIEW,      /* KEYS serving out addrs alive budget events; ARGV key_prefix full|summary
                                * seed_min seed_max host
                                * -> {now, serving[5n], out[6n], count, alive, min, max, seeded} */
        POOL_SCRIPT_STATE,     /* KEYS host:H events; ARGV addr state since reason version event_json */
        POOL_SCRIPT_BUDGET,    /* KEYS budget events; ARGV: pool_budget_args() */
        _POOL_SCRIPT_MAX,
        _POOL_SCRIPT_INVALID = -EINVAL,
} PoolScript;

extern const char *const pool_script_text[_POOL_SCRIPT_MAX];
const char *pool_script_to_string(PoolScript s);

/* The most KEYS a script takes: the leave's ten and the list key. */
#define POOL_SCRIPT_KEYS_MAX 11

/* Script s's KEYS for the host keys were built for, in ret (pointing into
 * keys and list_key): the one place that orders them, for monkeyd, the
 * benchmark and the tests alike. list_key: [pool] list_key, appended for
 * join and leave; NULL for none. Returns how many, or -EINVAL. */
int pool_script_keys(PoolScript s, const PoolKeys *keys, const char *list_key,
                     const char *ret[static POOL_SCRIPT_KEYS_MAX]);

/* ARGV[6] of the leave script. */
#define POOL_LEAVE_MODE_BUDGET "budget"       /* check min_serving and max_unavailable */
#define POOL_LEAVE_MODE_FORCE "force"         /* maintenance, quarantine: no budget */
#define POOL_LEAVE_MODE_RECONCILE "reconcile" /* our own view says out: no budget, no new out entry */
#define POOL_LEAVE_MODE_RELEASE "release"     /* out of serving, and our out entry removed: the slot is free */
#define POOL_LEAVE_MODE_PEEK "peek"           /* a dry run: the budget's verdict, nothing changed */

typedef struct PoolLeaveReply {
        PoolLeaveResult result;
        long long serving;       /* SCARD serving after the step */
        long long serving_alive; /* serving members with a live lease (we count as alive) */
        long long out;           /* out entries, ourselves included */
        char *detail;            /* one human line */
        long long min_serving, max_unavailable; /* the pool's budget the verdict used; -1: not said */
} PoolLeaveReply;

/* Decodes the leave script's reply {status, serving, alive, out, detail,
 * [min_serving, max_unavailable]}.
 * An error reply is -EIO with the error text as detail; any other shape is
 * -EBADMSG. ret is written on success and for -EIO. */
int pool_leave_reply_decode(const redisReply *r, PoolLeaveReply *ret);
void pool_leave_reply_done(PoolLeaveReply *r);

/* The view script's reply as the status object's pieces:
 * {"serving_count","serving_alive","out":[host...],"members":[{"host","addr",
 * "state","lease_ttl_ms","heartbeat_age_ms","serving","out_expires_in_ms"}],
 * "pool_budget":{"min_serving","max_unavailable"}|null,"budget_seeded":B}.
 * self_addr counts as alive whatever its lease says. -EBADMSG on a bad shape. */
int pool_view_decode(const redisReply *r, const char *self_addr, json_object **ret);

/* The pool's budget as the budget script answers it. */
typedef struct PoolBudget {
        long long min_serving, max_unavailable; /* -1: the pool has no budget yet */
        char *how;                              /* "seeded", "set"; "" unknown */
        char *by;                               /* who wrote it: a host (seeded), a peer on a host (set) */
        long long at_ms;                        /* Redis TIME when written; -1 unknown */
        bool set;                               /* the answer to a set (else a get) */
        bool changed;                           /* set: old != new */
        long long old_min_serving, old_max_unavailable; /* set: before; -1 none */
} PoolBudget;

/* {min, max, how, by, at_ms, changed, old_min, old_max}; an error reply is
 * -EIO with its text in *ret_error (may be NULL); any other shape -EBADMSG. */
int pool_budget_reply_decode(const redisReply *r, PoolBudget *ret, char **ret_error);
void pool_budget_done(PoolBudget *b);
/* {"min_serving","max_unavailable","how","by","at","at_ms"}, nulls for the
 * unknown. New reference, NULL on OOM. */
json_object *pool_budget_json(const PoolBudget *b);

#define POOL_BUDGET_MODE_GET "get"
#define POOL_BUDGET_MODE_SET "set"
#define POOL_BUDGET_ARGC 11

/* What a set asks for (-1: keep the pool's value) and who asks: the
 * control peer's uid (from SO_PEERCRED, trusted) and its user name. */
typedef struct PoolBudgetChange {
        long long min_serving, max_unavailable;
        bool have_uid;
        unsigned uid;
        const char *user; /* NULL: not known */
} PoolBudgetChange;

/* The budget script's ARGV, built in ret (buffers and the argv pointing
 * into them and into the borrowed strings). change NULL: a get. seed: this
 * agent's config, kept by a set that leaves a value out of a pool without
 * a budget. -ERANGE (with *ret_error) for a change out of bounds. */
typedef struct PoolBudgetArgs {
        char seed_min[24], seed_max[24], new_min[24], new_max[24], uid[24];
        char by[256]; /* "root (uid 0) on web-1": cut, not refused, when longer */
        const char *argv[POOL_BUDGET_ARGC];
} PoolBudgetArgs;
int pool_budget_args(const PoolBudgetChange *change, unsigned seed_min, unsigned seed_max, const char *pool,
                     const char *host, const char *at, PoolBudgetArgs *ret, char **ret_error);

/* Which of this agent's config values differ from the pool's budget:
 * "", "min_serving", "max_unavailable" or "min_serving, max_unavailable".
 * A pool without a budget (-1) differs in nothing. */
const char *pool_budget_differs(long long pool_min, long long pool_max, unsigned config_min, unsigned config_max);

/* The join script's reply {added 0/1, SCARD serving}; -EBADMSG. */
int pool_join_reply_decode(const redisReply *r, long long *ret_added, long long *ret_serving);
/* The heartbeat script's reply: 1 we are in serving, 0 not, -EBADMSG. */
int pool_heartbeat_reply_decode(const redisReply *r);
/* SCRIPT LOAD: the 40 hex digits of the SHA1, NUL-terminated; -EBADMSG. */
int pool_script_load_reply_decode(const redisReply *r, char ret_sha[static 41]);
/* Redis no longer has the script: send its text (EVAL caches it again). */
bool pool_reply_is_noscript(const redisReply *r);
/* Errors after which a connection is no use: a demoted master, a restarted
 * server that lost our AUTH, one still loading its data. */
bool pool_reply_needs_reconnect(const redisReply *r);

typedef struct PoolSwitchMaster {
        char old_ip[64], new_ip[64];
        unsigned old_port, new_port;
} PoolSwitchMaster;

/* A message on a sentinel's +switch-master channel, payload "NAME OLDIP
 * OLDPORT NEWIP NEWPORT": 1 when it moves master, 0 for anything else
 * (the subscribe confirmation, another master), -EBADMSG for a payload of
 * another shape. ret is written only on 1. */
int pool_switch_master_decode(const redisReply *r, const char *master, PoolSwitchMaster *ret);


typedef struct PoolEvent {
        const char *type;   /* "join", "leave", "state" */
        const char *pool, *host, *addr;
        const char *state;  /* NULL: omitted */
        const char *reason; /* NULL: null */
        int forced;         /* leave: 0/1; -1: omitted */
        usec_t at;          /* CLOCK_REALTIME */
} PoolEvent;

/* wall (CLOCK_REALTIME) as 2023-11-14T22:13:20Z; "?" when it cannot be shown. */

/* {"type","pool","host","addr",["state"],"reason",["forced"],"at","at_ms"}. */
char *pool_event_json(const PoolEvent *e);

#define POOL_BACKOFF_MIN_USEC (200 * USEC_PER_MSEC)
#define POOL_BACKOFF_MAX_USEC (10 * USEC_PER_SEC)

/* Capped doubling with jitter: in [d/2, d], d = min(MIN << attempt, MAX). */
usec_t pool_backoff_delay(unsigned attempt, uint64_t random);
