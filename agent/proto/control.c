/* The control protocol (see control.h): one table of commands, the
 * request decoder and encoder, the replies, the access rule. Pure: buffers
 * in, structs or lines out. */
#include "control.h"

#include <inttypes.h>
#include <stdarg.h>

#include "error.h"
#include "jsonutil.h"
#include "poolkeys.h"
#include "utf8.h"

#define CONTROL_JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

/* The commands. A member of the control group may drain, which the group
 * was granted for, not more: reload changes what the config file says
 * runs as root, so only root and whoever may SIGHUP the agent anyway may
 * ask for it. check is answered later like the tests, but anyone may ask. */
static const ControlCommandInfo command_table[_CONTROL_COMMAND_MAX] = {
#define ROW(c, n, ...) [c] = { .command = c, .name = n, __VA_ARGS__ }
        ROW(CONTROL_STATUS, "status", .reply = CONTROL_REPLY_OBJECT, .reply_key = "status"),
        ROW(CONTROL_HISTORY, "history", .args = CONTROL_ARG_LIMIT, .reply = CONTROL_REPLY_ARRAY,
            .reply_key = "history"),
        ROW(CONTROL_WATCH, "watch", .reply = CONTROL_REPLY_STREAM, .reply_key = "watching"),
        ROW(CONTROL_DRAIN, "drain", .mutating = true, .args = CONTROL_ARG_REASON, .reply = CONTROL_REPLY_MESSAGE,
            .reply_key = "message"),
        ROW(CONTROL_RESUME, "resume", .mutating = true, .reply = CONTROL_REPLY_MESSAGE, .reply_key = "message"),
        ROW(CONTROL_POOL, "pool", .reply = CONTROL_REPLY_OBJECT, .reply_key = "pool"),
        ROW(CONTROL_TEST_ALERT, "test-alert", .mutating = true, .deferred = true, .args = CONTROL_ARG_REASON,
            .reply = CONTROL_REPLY_RESULT, .reply_key = "result"),
        ROW(CONTROL_TEST_REBOOT, "test-reboot", .mutating = true, .deferred = true, .reply = CONTROL_REPLY_RESULT,
            .reply_key = "result"),
        ROW(CONTROL_CHECK, "check", .deferred = true, .reply = CONTROL_REPLY_RESULT, .reply_key = "result"),
        ROW(CONTROL_INCIDENTS, "incidents", .reply = CONTROL_REPLY_OBJECT, .reply_key = "incidents"),
        ROW(CONTROL_INCIDENT, "incident", .args = CONTROL_ARG_ID, .required = CONTROL_ARG_ID,
            .reply = CONTROL_REPLY_OBJECT, .reply_key = "incident"),
        ROW(CONTROL_RELOAD, "reload", .mutating = true, .root_only = true, .reply = CONTROL_REPLY_MESSAGE,
            .reply_key = "message"),
        /* Read from Redis when asked: another agent may have set it a moment ago. */
        ROW(CONTROL_POOL_BUDGET, "pool-budget", .deferred = true, .reply = CONTROL_REPLY_RESULT, .reply_key = "result"),
        /* The whole pool's budget: as privileged as drain (the audit names the peer) */
        ROW(CONTROL_POOL_BUDGET_SET, "pool-budget-set", .mutating = true, .deferred = true,
            .args = CONTROL_ARG_MIN_SERVING | CONTROL_ARG_MAX_UNAVAILABLE, .reply = CONTROL_REPLY_RESULT,
            .reply_key = "result"),
        ROW(CONTROL_STATS, "stats", .reply = CONTROL_REPLY_OBJECT, .reply_key = "stats"),
#undef ROW
};

const ControlCommandInfo *control_command_info(ControlCommand c) {
        if (c < 0 || c >= _CONTROL_COMMAND_MAX || !command_table[c].name)
                return NULL;
        return &command_table[c];
}

const char *control_command_to_string(ControlCommand c) {
        const ControlCommandInfo *i = control_command_info(c);
        return i ? i->name : NULL;
}

ControlCommand control_command_from_string(const char *s) {
        if (!s)
                return _CONTROL_COMMAND_INVALID;
        for (size_t i = 0; i < ELEMENTSOF(command_table); i++)
                if (streq_ptr(command_table[i].name, s))
                        return (ControlCommand) i;
        return _CONTROL_COMMAND_INVALID;
}

bool control_command_is_mutating(ControlCommand c) {
        const ControlCommandInfo *i = control_command_info(c);
        return i && i->mutating;
}

bool control_command_is_root_only(ControlCommand c) {
        const ControlCommandInfo *i = control_command_info(c);
        return i && i->mutating && i->root_only;
}

static const char *const grant_table[_CONTROL_GRANT_MAX] = {
        [CONTROL_GRANT_DENIED] = "denied",
        [CONTROL_GRANT_ROOT] = "root",
        [CONTROL_GRANT_OWNER] = "owner",
        [CONTROL_GRANT_GROUP] = "group",
};

const char *control_grant_to_string(ControlGrant g) {
        if (g < 0 || g >= _CONTROL_GRANT_MAX)
                return NULL;
        return grant_table[g];
}

ControlGrant control_access_check(uid_t uid, gid_t gid, const gid_t *groups, size_t n_groups,
                                  const ControlAccess *access) {
        if (uid == 0)
                return CONTROL_GRANT_ROOT;
        if (!access)
                return CONTROL_GRANT_DENIED;
        if (uid == access->owner)
                return CONTROL_GRANT_OWNER;
        if (!access->have_group)
                return CONTROL_GRANT_DENIED;
        if (gid == access->group)
                return CONTROL_GRANT_GROUP;
        for (size_t i = 0; groups && i < n_groups; i++)
                if (groups[i] == access->group)
                        return CONTROL_GRANT_GROUP;
        return CONTROL_GRANT_DENIED;
}

char *control_access_denied_message(const char *command, bool have_uid, uid_t uid, const ControlAccess *access) {
        char who[64], owner[64] = "", group[96] = "", peer[48];
        char *m = NULL;

        if (access && access->owner != 0)
                snprintf(owner, sizeof owner, ", uid %u (the agent's)", (unsigned) access->owner);
        if (access && access->have_group) {
                if (access->group_name && !isempty(access->group_name))
                        snprintf(group, sizeof group, "group '%s'", access->group_name);
                else
                        snprintf(group, sizeof group, "gid %u", (unsigned) access->group);
        }
        snprintf(who, sizeof who, "root%s%s%s", owner, *group ? " or members of " : "", group);
        if (have_uid)
                snprintf(peer, sizeof peer, "you are uid %u", (unsigned) uid);
        else
                snprintf(peer, sizeof peer, "your credentials are unknown");
        /* Say how to get in: the operator reading this is the one who needs to know. */
        if (*group) {
                if (asprintf(&m,
                             "permission denied: '%s' is for %s; %s. Run it with sudo, or ask an admin to add you "
                             "to %s (it counts from your next login)",
                             strna(command), who, peer, group) < 0)
                        return NULL;
        } else if (asprintf(&m,
                            "permission denied: '%s' is for %s; %s. Run it with sudo, or have the admin grant a "
                            "group with [agent] control_group in the agent's config",
                            strna(command), who, peer) < 0)
                return NULL;
        return m;
}

char *control_root_only_message(const char *command, bool have_uid, uid_t uid, const ControlAccess *access) {
        char owner[64] = "", peer[48];
        char *m = NULL;

        if (access && access->owner != 0)
                snprintf(owner, sizeof owner, " and uid %u (the agent's)", (unsigned) access->owner);
        if (have_uid)
                snprintf(peer, sizeof peer, "you are uid %u", (unsigned) uid);
        else
                snprintf(peer, sizeof peer, "your credentials are unknown");
        if (asprintf(&m, "permission denied: '%s' is for root%s only, not for [agent] control_group; %s. Run it "
                         "with sudo (systemctl reload monkeyd does)",
                     strna(command), owner, peer) < 0)
                return NULL;
        return m;
}

static const char *const verdict_table[_CONTROL_VERDICT_MAX] = {
        [CONTROL_VERDICT_ROUTED] = "routed",
        [CONTROL_VERDICT_NOT_ROUTED] = "not routed",
        [CONTROL_VERDICT_DEGRADED] = "degraded",
};

const char *control_verdict_to_string(ControlVerdict v) {
        if (v < 0 || v >= _CONTROL_VERDICT_MAX)
                return NULL;
        return verdict_table[v];
}

static json_object *verdict_field(json_object *o, const char *key, json_type type) {
        json_object *v = NULL;

        if (!o || !json_object_is_type(o, json_type_object) || !json_object_object_get_ex(o, key, &v) ||
            !json_object_is_type(v, type))
                return NULL;
        return v;
}

static const char *verdict_str(json_object *o, const char *key) {
        json_object *v = verdict_field(o, key, json_type_string);
        return v ? json_object_get_string(v) : NULL;
}

/* -1 unknown, 0 false, 1 true */
static int verdict_bool(json_object *o, const char *key) {
        json_object *v = verdict_field(o, key, json_type_boolean);
        return v ? json_object_get_boolean(v) : -1;
}

/* "what: detail (extra)" appended to the memstream, "; " between problems. */
static void verdict_note(FILE *f, bool *first, const char *what, const char *detail, const char *extra) {
        fprintf(f, "%s%s", *first ? "" : "; ", what);
        *first = false;
        if (!isempty(detail))
                fprintf(f, ": %s", detail);
        if (!isempty(extra))
                fprintf(f, " (%s)", extra);
}

ControlVerdict control_status_verdict(json_object *status, char **ret_why) {
        static const char *const routed_states[] = { "SERVING", "OVERLOADED", "HOLDING" };
        json_object *pool = verdict_field(status, "pool", json_type_object);
        json_object *slack = verdict_field(status, "slack", json_type_object);
        json_object *outbox = verdict_field(slack, "outbox", json_type_object);
        json_object *sf = verdict_field(status, "state_file", json_type_object);
        const char *state = verdict_str(status, "state");
        ControlVerdict v = CONTROL_VERDICT_NOT_ROUTED;
        _cleanup_(freep) char *raw = NULL;
        bool first = true, routable = false;
        size_t size = 0;
        FILE *f;

        f = open_memstream(&raw, &size);
        for (size_t i = 0; state && i < ELEMENTSOF(routed_states); i++)
                routable = routable || streq(state, routed_states[i]);
        if (!routable) {
                if (f)
                        fprintf(f, "state %s", state ? state : "unknown");
        } else if (verdict_bool(pool, "configured") == 1 && verdict_bool(pool, "serving") != 1) {
                if (f)
                        fprintf(f, "%s, but not in the pool", state);
        } else {
                v = CONTROL_VERDICT_ROUTED;
                if (verdict_bool(pool, "configured") == 1 && !streq_ptr(verdict_str(pool, "status"), "connected")) {
                        v = CONTROL_VERDICT_DEGRADED;
                        if (f)
                                verdict_note(f, &first, "Redis", strna(verdict_str(pool, "status")),
                                             verdict_str(pool, "last_error"));
                }
                if (verdict_bool(slack, "configured") == 1 &&
                    (verdict_bool(outbox, "paused") == 1 || verdict_str(outbox, "last_error") ||
                     verdict_str(outbox, "disk_error"))) {
                        const char *e = verdict_str(outbox, "last_error");
                        v = CONTROL_VERDICT_DEGRADED;
                        if (f)
                                verdict_note(f, &first, "Slack",
                                             verdict_bool(outbox, "paused") == 1 ? "paused" : "not delivering",
                                             e ? e : verdict_str(outbox, "disk_error"));
                }
                if (verdict_bool(sf, "ok") == 0) {
                        v = CONTROL_VERDICT_DEGRADED;
                        if (f)
                                verdict_note(f, &first, "state file", "cannot save", verdict_str(sf, "last_error"));
                }
                if (v == CONTROL_VERDICT_ROUTED && f)
                        fprintf(f, "%s%s", state, verdict_bool(pool, "configured") == 1 ? ", in the pool" : "");
        }
        if (!f || fclose(f) != 0) {
                free(TAKE_PTR(raw));
                size = 0;
        }
        if (ret_why) {
                char *why = NULL;

                /* one line, whatever the agent's texts hold */
                if (raw && (why = malloc(size + 4)))
                        error_excerpt(raw, size, why, size + 4);
                *ret_why = why;
        }
        return v;
}

void control_request_done(ControlRequest *r) {
        if (!r)
                return;
        free(r->reason);
        r->reason = NULL;
        free(r->id);
        r->id = NULL;
}

/* A string argument: its bytes, no NUL inside, valid UTF-8 ("\ud800"
 * alone decodes to a surrogate's bytes). */
static int arg_string(json_object *v, const char *key, size_t min, size_t max, bool check_utf8, char **ret,
                      char **ret_error) {
        const char *s;
        size_t n;

        if (!json_object_is_type(v, json_type_string))
                return error_set(ret_error, -EBADMSG, "\"%s\" is not a string", key);
        s = json_object_get_string(v);
        n = (size_t) json_object_get_string_len(v);
        if (min > 0 && (n < min || n > max))
                return error_set(ret_error, -EBADMSG, "\"%s\" must be %zu..%zu bytes", key, min, max);
        if (n > max)
                return error_set(ret_error, -EBADMSG, "\"%s\" too long (max %zu bytes)", key, max);
        if (memchr(s, '\0', n))
                return error_set(ret_error, -EBADMSG, "\"%s\" contains a NUL byte", key);
        if (check_utf8 && !utf8_is_valid(s, n))
                return error_set(ret_error, -EBADMSG, "\"%s\" is not valid UTF-8", key);
        if (n == 0)
                return 0; /* an empty reason is no reason */
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

static int arg_reason(json_object *v, ControlRequest *req, char **ret_error) {
        return arg_string(v, "reason", 0, CONTROL_REASON_MAX, true, &req->reason, ret_error);
}

static int arg_limit(json_object *v, ControlRequest *req, char **ret_error) {
        int64_t l;

        if (!json_object_is_type(v, json_type_int))
                return error_set(ret_error, -EBADMSG, "\"limit\" is not an integer");
        l = json_object_get_int64(v);
        /* get_int64 clamps huge unsigned values to INT64_MAX: still out of range */
        if (l < 0 || l > CONTROL_LIMIT_MAX)
                return error_set(ret_error, -EBADMSG, "\"limit\" out of range (0..%d)", CONTROL_LIMIT_MAX);
        req->limit = (unsigned) l;
        return 0;
}

/* no UTF-8 check of its own: what an id may hold is the incidents' to say */
static int arg_id(json_object *v, ControlRequest *req, char **ret_error) {
        return arg_string(v, "id", 1, CONTROL_ID_MAX, false, &req->id, ret_error);
}

/* The budget's numbers: integers in the bounds [pool] takes in the config. */
static int arg_count(json_object *v, const char *key, int64_t min, int64_t max, unsigned *ret, bool *ret_has,
                     char **ret_error) {
        int64_t n;

        if (!json_object_is_type(v, json_type_int))
                return error_set(ret_error, -EBADMSG, "\"%s\" is not an integer", key);
        n = json_object_get_int64(v);
        if (n < min || n > max)
                return error_set(ret_error, -EBADMSG, "\"%s\" out of range (%" PRId64 "..%" PRId64 ")%s", key, min,
                                 max, min > 0 && n == 0 ? ": no host could ever leave the pool" : "");
        *ret = (unsigned) n;
        *ret_has = true;
        return 0;
}

static int arg_min_serving(json_object *v, ControlRequest *req, char **ret_error) {
        return arg_count(v, "min_serving", 0, POOLKEYS_MIN_SERVING_MAX, &req->min_serving, &req->has_min_serving,
                         ret_error);
}

static int arg_max_unavailable(json_object *v, ControlRequest *req, char **ret_error) {
        return arg_count(v, "max_unavailable", POOLKEYS_MAX_UNAVAILABLE_MIN, POOLKEYS_MAX_UNAVAILABLE_MAX,
                         &req->max_unavailable, &req->has_max_unavailable, ret_error);
}

static bool has_min_serving(const ControlRequest *req) {
        return req->has_min_serving;
}

static bool has_max_unavailable(const ControlRequest *req) {
        return req->has_max_unavailable;
}

static bool has_reason(const ControlRequest *req) {
        return req->reason;
}

static bool has_limit(const ControlRequest *req) {
        return req->limit > 0;
}

static bool has_id(const ControlRequest *req) {
        return req->id;
}

/* In the order they are checked: the first bad one is the error. */
static const struct {
        ControlArg flag;
        const char *key;
        const char *needs; /* "\"incident\" needs ..." */
        int (*parse)(json_object *v, ControlRequest *req, char **ret_error);
        bool (*present)(const ControlRequest *req);
} arg_table[] = {
        { CONTROL_ARG_REASON, "reason", "a \"reason\"", arg_reason, has_reason },
        { CONTROL_ARG_LIMIT, "limit", "a \"limit\"", arg_limit, has_limit },
        { CONTROL_ARG_ID, "id", "an \"id\"", arg_id, has_id },
        { CONTROL_ARG_MIN_SERVING, "min_serving", "a \"min_serving\"", arg_min_serving, has_min_serving },
        { CONTROL_ARG_MAX_UNAVAILABLE, "max_unavailable", "a \"max_unavailable\"", arg_max_unavailable,
          has_max_unavailable },
};

int control_request_parse(const char *line, size_t len, ControlRequest *ret, char **ret_error) {
        _cleanup_(json_tokener_freep) json_tokener *tok = NULL;
        _cleanup_(json_object_putp) json_object *root = NULL;
        _cleanup_(freep) char *copy = NULL;
        _cleanup_(control_request_done) ControlRequest req = {};
        const ControlCommandInfo *info;
        json_object *v;
        enum json_tokener_error jerr;
        ControlCommand command;
        int64_t version;
        int r;

        if (!line || !ret)
                return -EINVAL;
        if (len > CONTROL_REQUEST_MAX)
                return error_set(ret_error, -EBADMSG, "%s", CONTROL_ERROR_TOO_LARGE);
        if (memchr(line, '\0', len))
                return error_set(ret_error, -EBADMSG, "request contains a NUL byte");
        /* json-c takes overlong forms and surrogates; what we accept comes
         * back in replies, events, logs and Slack, which must stay UTF-8. */
        if (!utf8_is_valid(line, len))
                return error_set(ret_error, -EBADMSG, "request is not valid UTF-8");

        tok = json_tokener_new();
        if (!tok)
                return -ENOMEM;
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
        /* The terminating NUL is what tells json-c that a top-level literal
         * ("null", "1") has ended; the line itself is not terminated. The
         * int length is safe: len <= CONTROL_REQUEST_MAX. */
        copy = strndup(line, len);
        if (!copy)
                return -ENOMEM;
        root = json_tokener_parse_ex(tok, copy, (int) len + 1);
        jerr = json_tokener_get_error(tok);
        if (jerr == json_tokener_success && !root)
                return error_set(ret_error, -EBADMSG, "request is not a JSON object");
        if (!root || jerr != json_tokener_success) {
                if (jerr == json_tokener_continue)
                        return error_set(ret_error, -EBADMSG, "not JSON (incomplete)");
                return error_set(ret_error, -EBADMSG, "not JSON (%s)", json_tokener_error_desc(jerr));
        }
        for (size_t i = json_tokener_get_parse_end(tok); i < len; i++)
                if (!strchr(" \t\r\n", line[i]))
                        return error_set(ret_error, -EBADMSG, "trailing garbage after the JSON object");

        if (!json_object_is_type(root, json_type_object))
                return error_set(ret_error, -EBADMSG, "request is not a JSON object");

        if (!json_object_object_get_ex(root, "version", &v))
                return error_set(ret_error, -EBADMSG, "missing \"version\"");
        if (!json_object_is_type(v, json_type_int))
                return error_set(ret_error, -EBADMSG, "\"version\" is not an integer");
        version = json_object_get_int64(v);
        /* json-c clamps what does not fit: do not quote a number nobody sent */
        if (version == INT64_MAX || version == INT64_MIN)
                return error_set(ret_error, -EBADMSG, "unsupported version (out of range; this agent speaks %d)",
                                  CONTROL_PROTOCOL_VERSION);
        if (version != CONTROL_PROTOCOL_VERSION)
                return error_set(ret_error, -EBADMSG, "unsupported version %" PRId64 " (this agent speaks %d)",
                                  version, CONTROL_PROTOCOL_VERSION);

        if (!json_object_object_get_ex(root, "command", &v))
                return error_set(ret_error, -EBADMSG, "missing \"command\"");
        if (!json_object_is_type(v, json_type_string))
                return error_set(ret_error, -EBADMSG, "\"command\" is not a string");
        {
                const char *s = json_object_get_string(v);
                size_t n = (size_t) json_object_get_string_len(v);
                char shown[68];

                /* a "\u0000" inside the string must not shorten it into a valid name */
                command = memchr(s, '\0', n) ? _CONTROL_COMMAND_INVALID : control_command_from_string(s);
                if (command < 0) {
                        error_excerpt(s, n, shown, sizeof shown);
                        return error_set(ret_error, -EBADMSG, "unknown command \"%s\"", shown);
                }
        }

        for (size_t i = 0; i < ELEMENTSOF(arg_table); i++) {
                r = 0;
                if (json_object_object_get_ex(root, arg_table[i].key, &v) && !json_object_is_type(v, json_type_null))
                        r = arg_table[i].parse(v, &req, ret_error);
                if (r < 0)
                        return r;
        }
        info = control_command_info(command);
        for (size_t i = 0; i < ELEMENTSOF(arg_table); i++)
                if ((info->required & arg_table[i].flag) && !arg_table[i].present(&req))
                        return error_set(ret_error, -EBADMSG, "\"%s\" needs %s", info->name, arg_table[i].needs);

        req.version = (int) version;
        req.command = command;
        *ret = req;
        req = (ControlRequest) {};
        return 0;
}
static int json_to_line(json_object *o, char **ret) {
        const char *s = json_object_to_json_string_ext(o, CONTROL_JSON_FLAGS);
        char *c;

        if (!s)
                return -ENOMEM;
        c = strdup(s);
        if (!c)
                return -ENOMEM;
        *ret = c;
        return 0;
}

/* json_object_object_add takes the value even when it fails; the caller
 * keeps nothing. NULL values (allocation failures) are reported too. */
static int object_add(json_object *o, const char *key, json_object *value) {
        if (!value)
                return -ENOMEM;
        if (json_object_object_add(o, key, value) < 0) {
                json_object_put(value);
                return -ENOMEM;
        }
        return 0;
}

int control_request_format(const ControlRequest *r, char **ret) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        const char *name;

        if (!r || !ret)
                return -EINVAL;
        name = control_command_to_string(r->command);
        if (!name)
                return -EINVAL;
        if (r->limit > CONTROL_LIMIT_MAX)
                return -ERANGE;
        if (r->reason && (strlen(r->reason) > CONTROL_REASON_MAX))
                return -E2BIG;

        o = json_object_new_object();
        if (!o)
                return -ENOMEM;
        if (object_add(o, "version", json_object_new_int(r->version > 0 ? r->version : CONTROL_PROTOCOL_VERSION)) < 0 ||
            object_add(o, "command", json_object_new_string(name)) < 0)
                return -ENOMEM;
        if (r->limit > 0 && object_add(o, "limit", json_object_new_int((int) r->limit)) < 0)
                return -ENOMEM;
        if (r->reason && object_add(o, "reason", json_object_new_string(r->reason)) < 0)
                return -ENOMEM;
        if (r->id && (strlen(r->id) == 0 || strlen(r->id) > CONTROL_ID_MAX))
                return -E2BIG;
        if (r->id && object_add(o, "id", json_object_new_string(r->id)) < 0)
                return -ENOMEM;
        if (r->has_min_serving && object_add(o, "min_serving", json_object_new_int64(r->min_serving)) < 0)
                return -ENOMEM;
        if (r->has_max_unavailable && object_add(o, "max_unavailable", json_object_new_int64(r->max_unavailable)) < 0)
                return -ENOMEM;
        return json_to_line(o, ret);
}

/* {"version":1,"ok":OK,KEY:VALUE}; VALUE is consumed. NULL on OOM. */
static char *reply_build(bool ok, const char *key, json_object *value) {
        _cleanup_(json_object_putp) json_object *o = json_object_new_object();
        char *line = NULL;

        if (!o) {
                json_object_put(value);
                return NULL;
        }
        if (object_add(o, "version", json_object_new_int(CONTROL_PROTOCOL_VERSION)) < 0 ||
            object_add(o, "ok", json_object_new_boolean(ok)) < 0) {
                json_object_put(value);
                return NULL;
        }
        /* json-c stores a NULL value as JSON null, which is what a caller asking for null means */
        if (json_object_object_add(o, key, value) < 0) {
                json_object_put(value);
                return NULL;
        }
        if (json_to_line(o, &line) < 0)
                return NULL;
        return line;
}

char *control_reply_error(const char *message) {
        json_object *m = json_object_new_string(message ? message : "unknown error");
        return m ? reply_build(false, "error", m) : NULL;
}

char *control_reply_message(const char *message) {
        json_object *m = json_object_new_string(message ? message : "");
        return m ? reply_build(true, "message", m) : NULL;
}

char *control_reply_object(const char *key, json_object *value) {
        if (!key)
                return NULL;
        return reply_build(true, key, json_object_get(value));
}

char *control_reply_result(bool ok, const char *message, json_object *extra) {
        _cleanup_(json_object_putp) json_object *o = json_object_new_object();
        char *line = NULL;

        if (o && object_add(o, "version", json_object_new_int(CONTROL_PROTOCOL_VERSION)) >= 0 &&
            object_add(o, "ok", json_object_new_boolean(ok)) >= 0 &&
            object_add(o, ok ? "message" : "error", json_object_new_string(strna(message))) >= 0 &&
            (!extra || object_add(o, "result", json_object_get(extra)) >= 0))
                (void) json_to_line(o, &line);
        return line;
}

char *control_event_line(json_object *event) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        char *line = NULL;

        if (!event)
                return NULL;
        o = json_object_new_object();
        if (!o || object_add(o, "version", json_object_new_int(CONTROL_PROTOCOL_VERSION)) < 0 ||
            object_add(o, "event", json_object_get(event)) < 0 || json_to_line(o, &line) < 0)
                return NULL;
        return line;
}
