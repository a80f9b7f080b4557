/* The control socket: a Unix stream socket speaking newline-delimited JSON
 * with a version field. Requests are one line each, at most
 * CONTROL_REQUEST_MAX bytes; at most CONTROL_CLIENTS_MAX clients at once,
 * the last CONTROL_CLIENTS_RESERVED of them for privileged peers only, so a
 * local user holding connections open cannot lock the operator out.
 * Mutating commands (drain, resume, test-alert, test-reboot) need a
 * privileged peer: uid 0, the agent's own euid, or a member of the
 * configured control group (the peer's gid from SO_PEERCRED or one of its
 * supplementary groups from SO_PEERGROUPS, as they were at connect()).
 * `reload` is for uid 0 and the agent's own euid only: those who could
 * send it SIGHUP anyway. Everything else is open to every local user.
 * `watch` turns the connection into a stream of transition events.
 *
 * Wire format (version 1):
 *   request:  {"version":1,"command":"status"}
 *             {"version":1,"command":"history","limit":20}
 *             {"version":1,"command":"drain","reason":"kernel upgrade"}
 *             {"version":1,"command":"pool"}
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
 *   watch:    {"version":1,"ok":true,"watching":true} then one
 *             {"version":1,"event":{...}} per transition. */
#pragma once

#include <json-c/json.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "macro.h"

#define CONTROL_PROTOCOL_VERSION 1
/* The version of the JSON that status and monkeyctl --json print (the
 * objects' shapes and meanings), apart from the protocol's framing:
 * "schema":N at the top of each. */
#define CONTROL_JSON_SCHEMA 1
#define CONTROL_REQUEST_MAX 4096
#define CONTROL_ID_MAX 128
#define CONTROL_CLIENTS_MAX 32
#define CONTROL_CLIENTS_RESERVED 4 /* of CONTROL_CLIENTS_MAX, for privileged peers */
/* The error a client gets instead of a session when the table is full; the
 * server closes right after it, maybe before the client's request is in. */
#define CONTROL_ERROR_TOO_MANY "too many clients, try again later"
#define CONTROL_CLIENT_OUTPUT_MAX (256 * 1024) /* a watcher this far behind is dropped */
#define CONTROL_CLIENT_IDLE_USEC (10 * USEC_PER_SEC) /* non-watch clients */

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
        _CONTROL_COMMAND_MAX,
        _CONTROL_COMMAND_INVALID = -EINVAL,
} ControlCommand;

const char *control_command_to_string(ControlCommand c);
ControlCommand control_command_from_string(const char *s);
bool control_command_is_mutating(ControlCommand c);
/* Mutating and beyond the control group: root and the agent's own euid. */
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
        char *reason;     /* drain: optional, free text, at most 200 bytes */
        unsigned limit;   /* history: 0 = default (20), at most 1000 */
        char *id;         /* incident: required, at most CONTROL_ID_MAX bytes */
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

/* What the agent answers with. Each returns a new json_object reference,
 * or, for mutating calls, 0 / negative errno and a message for the reply. */
typedef struct ControlHandlers {
        json_object *(*status)(void *userdata);
        json_object *(*history)(void *userdata, unsigned limit);
        int (*drain)(void *userdata, const char *reason, char **ret_message);
        int (*resume)(void *userdata, char **ret_message);
        /* The pool's members and budget; NULL when no [pool] is configured.
         * Optional: without it, "pool" answers with the status' "pool". */
        json_object *(*pool)(void *userdata);
        /* Answered later: return 0 and call control_server_answer(ticket)
         * once (the client reads nothing else meanwhile), or < 0 with
         * *ret_message to answer now with an error. */
        int (*test_alert)(void *userdata, uint64_t ticket, const char *text, char **ret_message);
        /* The same for the EC2 DryRun self-test. */
        int (*test_reboot)(void *userdata, uint64_t ticket, const char *text, char **ret_message);
        /* The three checks, now; the report goes in the answer's "result". */
        int (*check)(void *userdata, uint64_t ticket, const char *text, char **ret_message);
        /* The incidents kept on disk, and one incident's summary. */
        json_object *(*incidents)(void *userdata, char **ret_message);
        json_object *(*incident)(void *userdata, const char *id, char **ret_message);
        /* Parse the config file again and swap it in if valid: 0 with
         * "reloaded FILE", or < 0 with the reason ("FILE:LINE: message"). */
        int (*reload)(void *userdata, char **ret_message);
} ControlHandlers;

typedef struct ControlServer ControlServer;

/* Binds `path` (an existing stale socket is replaced, a live one is
 * -EADDRINUSE), mode 0666: anyone may read status, only privileged peers
 * may change anything. Starts with no control group. */
int control_server_new(sd_event *e, const char *path, const ControlHandlers *h, void *userdata,
                       ControlServer **ret);
/* Closes every client and unlinks the socket. Takes NULL, returns NULL. */
ControlServer *control_server_free(ControlServer *s);
static inline void control_server_freep(ControlServer **s) {
        control_server_free(*s);
}
/* Members of `group` (named `name`, may be NULL) may run the mutating
 * commands too; have_group false: only root and the agent's euid. Applies
 * to requests from now on, on connections old and new. */
int control_server_set_group(ControlServer *s, bool have_group, gid_t group, const char *name);
/* The same from a loaded config ([agent] control_group, resolved by
 * config_load()): at start, and again on reload to grant or revoke. */
struct Config;
int control_server_apply_config(ControlServer *s, const struct Config *c);
/* Send {"version":1,"event":EVENT} to every watcher; event is borrowed. */
void control_server_broadcast(ControlServer *s, json_object *event);
unsigned control_server_n_clients(const ControlServer *s);
/* The deferred answer for `ticket`: a reply object {"ok":ok,"message":...}
 * plus `extra` (borrowed, may be NULL) under "result". A client that has
 * gone meanwhile is skipped. */
void control_server_answer(ControlServer *s, uint64_t ticket, bool ok, const char *message, json_object *extra);
