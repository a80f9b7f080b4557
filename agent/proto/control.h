/* The control protocol, pure: the one table of commands (name, who may
 * run it, whether the answer comes later, the arguments it reads, the
 * shape of its reply), the request decoder and encoder, the reply
 * builders, the access rule and the refusal texts, and the verdict a
 * status object gives. Shared by the server (core/control_server.c),
 * monkeyctl and the fuzzer; no I/O here.
 *
 * Version 1 carries requests and replies as newline-delimited JSON: one
 * request line each, at most CONTROL_REQUEST_MAX bytes, always with
 * "version" and "command"; the arguments a command reads go beside them.
 * Mutating commands need a privileged peer: uid 0, the agent's own euid,
 * or a member of the configured control group; root-only ones (reload)
 * are not for the control group.
 *
 *   request:  {"version":1,"command":"status"}
 *             {"version":1,"command":"history","limit":20}
 *             {"version":1,"command":"drain","reason":"kernel upgrade"}
 *             {"version":1,"command":"pool"}
 *             {"version":1,"command":"pool-budget"}
 *             {"version":1,"command":"pool-budget-set","min_serving":2,"max_unavailable":3}
 *             {"version":1,"command":"test-alert","reason":"optional text"}
 *             {"version":1,"command":"test-reboot"}
 *             {"version":1,"command":"check"}
 *             {"version":1,"command":"incidents"}
 *             {"version":1,"command":"incident","id":"20261122T170012Z-web-1"}
 *             {"version":1,"command":"reload"}
 *   reply:    {"version":1,"ok":true,"status":{...}}
 *             {"version":1,"ok":true,"pool":{...}}   (the status' "pool" object)
 *             {"version":1,"ok":true,"history":[...]}
 *             {"version":1,"ok":true,"incidents":{"dir":...,"incidents":[...]}}
 *             {"version":1,"ok":true,"incident":{...summary.json...,"dir":...,"files":[...]}}
 *             {"version":1,"ok":true,"message":"..."}
 *             {"version":1,"ok":false,"error":"..."}
 *             reload: {"version":1,"ok":true,"message":"reloaded FILE (sha256 ...)"}, or
 *             {"version":1,"ok":false,"error":"FILE:LINE: message"} (the running config stays)
 *             deferred (test-alert, test-reboot, check, pool-budget, pool-budget-set): {"version":1,"ok":B,
 *             "message"|"error":"...","result":{...}}
 *   watch:    {"version":1,"ok":true,"watching":true} then one
 *             {"version":1,"event":{...}} per transition. */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "macro.h"

#define CONTROL_PROTOCOL_VERSION 1
/* The version of the JSON that status and monkeyctl --json print (the
 * objects' shapes and meanings), apart from the protocol's framing:
 * "schema":N at the top of each. */
#define CONTROL_JSON_SCHEMA 1
#define CONTROL_REQUEST_MAX 4096 /* a plain number: CONTROL_ERROR_TOO_LARGE spells it */
#define CONTROL_ID_MAX 128
#define CONTROL_REASON_MAX 200 /* drain's reason, test-alert's text */
#define CONTROL_LIMIT_DEFAULT 20
#define CONTROL_LIMIT_MAX 1000 /* history */
/* The error a client gets instead of a session when the table is full; the
 * server closes right after it, maybe before the client's request is in. */
#define CONTROL_ERROR_TOO_MANY "too many clients, try again later"
/* The error for a request line over CONTROL_REQUEST_MAX bytes, whether the
 * decoder sees it or the server's line buffer fills without a newline. */
#define CONTROL_ERROR_TOO_LARGE "request too large (max " STRINGIFY(CONTROL_REQUEST_MAX) " bytes)"

typedef enum ControlCommand {
        CONTROL_STATUS,
        CONTROL_HISTORY,
        CONTROL_WATCH,
        CONTROL_DRAIN,
        CONTROL_RESUME,
        CONTROL_POOL,
        CONTROL_TEST_ALERT,
        CONTROL_TEST_REBOOT,
        CONTROL_CHECK,
        CONTROL_INCIDENTS,
        CONTROL_INCIDENT,
        CONTROL_RELOAD,
        CONTROL_POOL_BUDGET,     /* the pool's budget as Redis holds it */
        CONTROL_POOL_BUDGET_SET, /* set it for the whole pool: privileged, audited */
        CONTROL_STATS,           /* latency statistics: checks (Redis, Slack, AWS to come) */
        _CONTROL_COMMAND_MAX,
        _CONTROL_COMMAND_INVALID = -EINVAL,
} ControlCommand;

/* The arguments a request may carry beside "version" and "command". Every
 * request's are checked, in this order, whatever its command; a command
 * reads those in its row's `args` and refuses to go without its
 * `required` ones. */
typedef enum ControlArg {
        CONTROL_ARG_REASON = 1u << 0, /* "reason": free text, at most CONTROL_REASON_MAX bytes */
        CONTROL_ARG_LIMIT = 1u << 1,  /* "limit": 0..CONTROL_LIMIT_MAX, 0 the default */
        CONTROL_ARG_ID = 1u << 2,     /* "id": 1..CONTROL_ID_MAX bytes */
        CONTROL_ARG_MIN_SERVING = 1u << 3,     /* "min_serving": 0..POOLKEYS_MIN_SERVING_MAX */
        CONTROL_ARG_MAX_UNAVAILABLE = 1u << 4, /* "max_unavailable": 1..POOLKEYS_MAX_UNAVAILABLE_MAX */
} ControlArg;

/* What comes back. */
typedef enum ControlReplyShape {
        CONTROL_REPLY_OBJECT,  /* {"ok":true,KEY:{...}} */
        CONTROL_REPLY_ARRAY,   /* {"ok":true,KEY:[...]} */
        CONTROL_REPLY_MESSAGE, /* {"ok":true,"message":"..."} */
        CONTROL_REPLY_RESULT,  /* later: {"ok":B,"message"|"error":"...","result":{...}} */
        CONTROL_REPLY_STREAM,  /* {"ok":true,"watching":true}, then {"event":{...}} lines */
} ControlReplyShape;

/* One row per command: everything the server, monkeyctl and the fuzzer
 * need to know about it. */
typedef struct ControlCommandInfo {
        ControlCommand command;
        const char *name;
        bool mutating;  /* privileged peers only */
        bool root_only; /* mutating and beyond the control group: root and the agent's own euid */
        bool deferred;  /* the server answers later (control_server_answer()) */
        unsigned args;     /* ControlArg: what it reads */
        unsigned required; /* ControlArg: what it cannot go without */
        ControlReplyShape reply;
        const char *reply_key; /* where the answer is in an ok reply */
} ControlCommandInfo;

/* The row of `c`, NULL when there is none. */
const ControlCommandInfo *control_command_info(ControlCommand c);
const char *control_command_to_string(ControlCommand c);
ControlCommand control_command_from_string(const char *s);
bool control_command_is_mutating(ControlCommand c);
bool control_command_is_root_only(ControlCommand c);

/* Who may run the mutating commands. */
typedef struct ControlAccess {
        uid_t owner;            /* the agent's euid */
        bool have_group;
        gid_t group;            /* [agent] control_group, resolved */
        const char *group_name; /* for messages; NULL: shown as the gid */
} ControlAccess;

typedef enum ControlGrant {
        CONTROL_GRANT_DENIED,
        CONTROL_GRANT_ROOT,
        CONTROL_GRANT_OWNER,
        CONTROL_GRANT_GROUP,
        _CONTROL_GRANT_MAX,
} ControlGrant;

const char *control_grant_to_string(ControlGrant g);

/* The decision, pure: a peer with this uid, primary gid and supplementary
 * groups (groups may be NULL when n_groups is 0). */
ControlGrant control_access_check(uid_t uid, gid_t gid, const gid_t *groups, size_t n_groups,
                                  const ControlAccess *access);

/* The refusal for a peer (uid, or unknown when !have_uid) asking for a
 * mutating command: names the command and the uid and says how to get
 * access. Returns NULL on OOM. */
char *control_access_denied_message(const char *command, bool have_uid, uid_t uid, const ControlAccess *access);
/* The same for a root-only command (the control group does not help). */
char *control_root_only_message(const char *command, bool have_uid, uid_t uid, const ControlAccess *access);

/* What a status object says about routing, for scripts and health checks
 * (monkeyctl status's exit code). Routed: in a state that takes traffic
 * (SERVING, or OVERLOADED/HOLDING, which stay in the pool) and, with a
 * [pool], in it. Degraded: routed, but the pool's Redis is not connected,
 * Slack is not taking messages, or state.json cannot be saved. */
typedef enum ControlVerdict {
        CONTROL_VERDICT_ROUTED,
        CONTROL_VERDICT_NOT_ROUTED,
        CONTROL_VERDICT_DEGRADED,
        _CONTROL_VERDICT_MAX,
        _CONTROL_VERDICT_INVALID = -EINVAL,
} ControlVerdict;

const char *control_verdict_to_string(ControlVerdict v); /* "routed", "not routed", "degraded" */
/* Pure. Any field may be missing or of the wrong type: an unknown state is
 * not routed, unknown health is not degraded. *ret_why (may be NULL; NULL
 * on OOM) says why, one line without control characters: "state
 * MAINTENANCE", "Redis: unreachable (connection refused); Slack: ...". */
ControlVerdict control_status_verdict(json_object *status, char **ret_why);

typedef struct ControlRequest {
        int version;
        ControlCommand command;
        char *reason;     /* drain, test-alert: optional, free text, at most CONTROL_REASON_MAX bytes */
        unsigned limit;   /* history: 0 = default (CONTROL_LIMIT_DEFAULT), at most CONTROL_LIMIT_MAX */
        char *id;         /* incident: required, at most CONTROL_ID_MAX bytes */
        /* pool-budget-set: at least one of the two */
        bool has_min_serving, has_max_unavailable;
        unsigned min_serving, max_unavailable;
} ControlRequest;

void control_request_done(ControlRequest *r);

/* Pure decoder of one request line (without the newline). Returns 0, or
 * -EBADMSG with *ret_error saying what is wrong ("not JSON", "missing
 * \"command\"", "unknown command \"x\"", "unsupported version 2", ...).
 * ret is only written on success. */
int control_request_parse(const char *line, size_t len, ControlRequest *ret, char **ret_error);
/* Pure encoder, for monkeyctl: one line without the newline. */
int control_request_format(const ControlRequest *r, char **ret);

/* Replies, as lines without the newline. */
char *control_reply_error(const char *message);
char *control_reply_message(const char *message);
char *control_reply_object(const char *key, json_object *value); /* takes a ref of nothing: value is borrowed */
/* A deferred answer: {"ok":ok,"message"|"error":message} plus `extra`
 * (borrowed, may be NULL) under "result". NULL on OOM. */
char *control_reply_result(bool ok, const char *message, json_object *extra);
/* One line of a watch stream: {"version":1,"event":EVENT}; event is
 * borrowed. NULL on OOM. */
char *control_event_line(json_object *event);
