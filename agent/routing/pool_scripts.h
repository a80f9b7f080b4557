/* The pool's pure parts: its Lua scripts (each one atomic step in Redis),
 * the decoders of their replies, the connection URL, the event JSON and the
 * reconnect backoff. Defined in pool.c; exported for its unit tests and for
 * the benchmark, which replays the same scripts against one redis-server.
 * Nothing here does I/O. */
#pragma once

#include <hiredis/hiredis.h>
#include <json-c/json.h>

#include "pool.h"

typedef enum PoolScript {
        POOL_SCRIPT_JOIN,      /* KEYS serving out host:H addrs events [list]; ARGV addr host event_json */
        POOL_SCRIPT_LEAVE,     /* KEYS serving out host:H addrs events [list]; ARGV addr host min_serving
                                * max_unavailable out_ttl_ms mode event_json key_prefix reason
                                * [asking_ttl_ms: budget mode queues askers first come, first served]
                                * [out_for_ms: reconcile mode counts us out again for the rest of
                                * out_ttl_ms; -1 not counted; elapsed, never a wall-clock time] */
        POOL_SCRIPT_HEARTBEAT, /* KEYS lease:H host:H serving; ARGV lease_ms addr -> member 0/1 */
        POOL_SCRIPT_VIEW,      /* KEYS serving out addrs; ARGV key_prefix -> {now, serving[5n], out[6n]} */
        POOL_SCRIPT_STATE,     /* KEYS host:H events; ARGV addr state since reason version event_json */
        _POOL_SCRIPT_MAX,
        _POOL_SCRIPT_INVALID = -EINVAL,
} PoolScript;

extern const char *const pool_script_text[_POOL_SCRIPT_MAX];
const char *pool_script_to_string(PoolScript s);

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
} PoolLeaveReply;

/* Decodes the leave script's reply {status, serving, alive, out, detail}.
 * An error reply is -EIO with the error text as detail; any other shape is
 * -EBADMSG. ret is written on success and for -EIO. */
int pool_leave_reply_decode(const redisReply *r, PoolLeaveReply *ret);
void pool_leave_reply_done(PoolLeaveReply *r);

/* The view script's reply as the status object's pieces:
 * {"serving_count","serving_alive","out":[host...],"members":[{"host","addr",
 * "state","lease_ttl_ms","heartbeat_age_ms","serving","out_expires_in_ms"}]}.
 * self_addr counts as alive whatever its lease says. -EBADMSG on a bad shape. */
int pool_view_decode(const redisReply *r, const char *self_addr, json_object **ret);

/* SENTINEL get-master-addr-by-name: {ip, port}. -ENOENT for a nil reply
 * (unknown master), -EBADMSG otherwise. */
int pool_sentinel_reply_decode(const redisReply *r, char **ret_host, uint16_t *ret_port);
/* ROLE: 1 master, 0 anything else, -EBADMSG. ret_role: "master", "slave", ... (borrowed). */
int pool_role_reply_decode(const redisReply *r, const char **ret_role);

/* The URL with any userinfo replaced by "***@", for logs and status. */
char *pool_url_redact(const char *s);

typedef struct PoolEvent {
        const char *type;   /* "join", "leave", "state" */
        const char *pool, *host, *addr;
        const char *state;  /* NULL: omitted */
        const char *reason; /* NULL: null */
        int forced;         /* leave: 0/1; -1: omitted */
        usec_t at;          /* CLOCK_REALTIME */
} PoolEvent;

/* {"type","pool","host","addr",["state"],"reason",["forced"],"at","at_ms"}. */
char *pool_event_json(const PoolEvent *e);

#define POOL_BACKOFF_MIN_USEC (200 * USEC_PER_MSEC)
#define POOL_BACKOFF_MAX_USEC (10 * USEC_PER_SEC)

/* Capped doubling with jitter: in [d/2, d], d = min(MIN << attempt, MAX). */
usec_t pool_backoff_delay(unsigned attempt, uint64_t random);
