/* The control socket: the versioned line protocol (pure) and its server on
 * sd-event. Clients are never freed from inside a callback that might be
 * running on their behalf: a dead client is disconnected at once (fd closed,
 * sources dropped) and its struct reaped later from a defer source, so a
 * handler that broadcasts while we are still processing a request cannot pull
 * the client out from under us. */
#include "control.h"

#include <inttypes.h>
#include <stdarg.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "config.h"
#include "log.h"
#include "jsonutil.h"
#include "utf8.h"

#define CONTROL_REASON_MAX 200
#define CONTROL_LIMIT_DEFAULT 20
#define CONTROL_LIMIT_MAX 1000
#define CONTROL_JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

static const char *const command_table[_CONTROL_COMMAND_MAX] = {
        [CONTROL_STATUS] = "status",
        [CONTROL_HISTORY] = "history",
        [CONTROL_WATCH] = "watch",
        [CONTROL_DRAIN] = "drain",
        [CONTROL_RESUME] = "resume",
        [CONTROL_POOL] = "pool",
        [CONTROL_TEST_ALERT] = "test-alert",
        [CONTROL_TEST_REBOOT] = "test-reboot",
        [CONTROL_CHECK] = "check",
        [CONTROL_INCIDENTS] = "incidents",
        [CONTROL_INCIDENT] = "incident",
        [CONTROL_RELOAD] = "reload",
};

const char *control_command_to_string(ControlCommand c) {
        if (c < 0 || c >= _CONTROL_COMMAND_MAX)
                return NULL;
        return command_table[c];
}

ControlCommand control_command_from_string(const char *s) {
        if (!s)
                return _CONTROL_COMMAND_INVALID;
        for (size_t i = 0; i < ELEMENTSOF(command_table); i++)
                if (streq(command_table[i], s))
                        return (ControlCommand) i;
        return _CONTROL_COMMAND_INVALID;
}

bool control_command_is_mutating(ControlCommand c) {
        return c == CONTROL_DRAIN || c == CONTROL_RESUME || c == CONTROL_TEST_ALERT || c == CONTROL_TEST_REBOOT ||
               c == CONTROL_RELOAD;
}

/* What the config file says runs as root: whoever may change that is root
 * already, and whoever may SIGHUP the agent may reload it. A member of the
 * control group may drain, which the group was granted for, not more. */
bool control_command_is_root_only(ControlCommand c) {
        return c == CONTROL_RELOAD;
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

static void sanitize_for_message(const char *s, size_t len, char *buf, size_t size);

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
                        sanitize_for_message(raw, size, why, size + 4);
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

/* Error text for the request parser; only -ENOMEM if even that fails. */
static int parse_fail(char **ret_error, const char *format, ...) _printf_(2, 3);
static int parse_fail(char **ret_error, const char *format, ...) {
        va_list ap;
        char *m = NULL;
        int r;

        if (!ret_error)
                return -EBADMSG;
        va_start(ap, format);
        r = vasprintf(&m, format, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        *ret_error = m;
        return -EBADMSG;
}

/* Shown inside error texts: short, and no control characters, so a hostile
 * command name cannot forge extra lines in a log. */
static void sanitize_for_message(const char *s, size_t len, char *buf, size_t size) {
        size_t keep = MIN(len, size - 4), n = 0;

        for (size_t i = 0; i < keep; i++) {
                unsigned char c = (unsigned char) s[i];
                buf[n++] = (c < 0x20 || c == 0x7f) ? '?' : (char) c;
        }
        if (keep < len) {
                memcpy(buf + n, "...", 3);
                n += 3;
        }
        buf[n] = '\0';
}

int control_request_parse(const char *line, size_t len, ControlRequest *ret, char **ret_error) {
        _cleanup_(json_tokener_freep) json_tokener *tok = NULL;
        _cleanup_(json_object_putp) json_object *root = NULL;
        _cleanup_(freep) char *reason = NULL, *copy = NULL, *id = NULL;
        json_object *v;
        enum json_tokener_error jerr;
        unsigned limit = 0;
        ControlCommand command;
        int64_t version;

        if (!line || !ret)
                return -EINVAL;
        if (len > CONTROL_REQUEST_MAX)
                return parse_fail(ret_error, "request too large (max %d bytes)", CONTROL_REQUEST_MAX);
        if (memchr(line, '\0', len))
                return parse_fail(ret_error, "request contains a NUL byte");
        /* json-c takes overlong forms and surrogates; what we accept comes
         * back in replies, events, logs and Slack, which must stay UTF-8. */
        if (!utf8_is_valid(line, len))
                return parse_fail(ret_error, "request is not valid UTF-8");

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
                return parse_fail(ret_error, "request is not a JSON object");
        if (!root || jerr != json_tokener_success) {
                if (jerr == json_tokener_continue)
                        return parse_fail(ret_error, "not JSON (incomplete)");
                return parse_fail(ret_error, "not JSON (%s)", json_tokener_error_desc(jerr));
        }
        for (size_t i = json_tokener_get_parse_end(tok); i < len; i++)
                if (!strchr(" \t\r\n", line[i]))
                        return parse_fail(ret_error, "trailing garbage after the JSON object");

        if (!json_object_is_type(root, json_type_object))
                return parse_fail(ret_error, "request is not a JSON object");

        if (!json_object_object_get_ex(root, "version", &v))
                return parse_fail(ret_error, "missing \"version\"");
        if (!json_object_is_type(v, json_type_int))
                return parse_fail(ret_error, "\"version\" is not an integer");
        version = json_object_get_int64(v);
        /* json-c clamps what does not fit: do not quote a number nobody sent */
        if (version == INT64_MAX || version == INT64_MIN)
                return parse_fail(ret_error, "unsupported version (out of range; this agent speaks %d)",
                                  CONTROL_PROTOCOL_VERSION);
        if (version != CONTROL_PROTOCOL_VERSION)
                return parse_fail(ret_error, "unsupported version %" PRId64 " (this agent speaks %d)",
                                  version, CONTROL_PROTOCOL_VERSION);

        if (!json_object_object_get_ex(root, "command", &v))
                return parse_fail(ret_error, "missing \"command\"");
        if (!json_object_is_type(v, json_type_string))
                return parse_fail(ret_error, "\"command\" is not a string");
        {
                const char *s = json_object_get_string(v);
                size_t n = (size_t) json_object_get_string_len(v);
                char shown[68];

                /* a "\u0000" inside the string must not shorten it into a valid name */
                command = memchr(s, '\0', n) ? _CONTROL_COMMAND_INVALID : control_command_from_string(s);
                if (command < 0) {
                        sanitize_for_message(s, n, shown, sizeof shown);
                        return parse_fail(ret_error, "unknown command \"%s\"", shown);
                }
        }

        if (json_object_object_get_ex(root, "reason", &v) && !json_object_is_type(v, json_type_null)) {
                size_t n;

                if (!json_object_is_type(v, json_type_string))
                        return parse_fail(ret_error, "\"reason\" is not a string");
                n = (size_t) json_object_get_string_len(v);
                if (n > CONTROL_REASON_MAX)
                        return parse_fail(ret_error, "\"reason\" too long (max %d bytes)", CONTROL_REASON_MAX);
                if (memchr(json_object_get_string(v), '\0', n))
                        return parse_fail(ret_error, "\"reason\" contains a NUL byte");
                /* "\ud800" alone decodes to a surrogate's bytes */
                if (!utf8_is_valid(json_object_get_string(v), n))
                        return parse_fail(ret_error, "\"reason\" is not valid UTF-8");
                if (n > 0) {
                        reason = strdup(json_object_get_string(v));
                        if (!reason)
                                return -ENOMEM;
                }
        }

        if (json_object_object_get_ex(root, "limit", &v) && !json_object_is_type(v, json_type_null)) {
                int64_t l;

                if (!json_object_is_type(v, json_type_int))
                        return parse_fail(ret_error, "\"limit\" is not an integer");
                l = json_object_get_int64(v);
                /* get_int64 clamps huge unsigned values to INT64_MAX: still out of range */
                if (l < 0 || l > CONTROL_LIMIT_MAX)
                        return parse_fail(ret_error, "\"limit\" out of range (0..%d)", CONTROL_LIMIT_MAX);
                limit = (unsigned) l;
        }

        if (json_object_object_get_ex(root, "id", &v) && !json_object_is_type(v, json_type_null)) {
                size_t n;

                if (!json_object_is_type(v, json_type_string))
                        return parse_fail(ret_error, "\"id\" is not a string");
                n = (size_t) json_object_get_string_len(v);
                if (n == 0 || n > CONTROL_ID_MAX)
                        return parse_fail(ret_error, "\"id\" must be 1..%d bytes", CONTROL_ID_MAX);
                if (memchr(json_object_get_string(v), '\0', n))
                        return parse_fail(ret_error, "\"id\" contains a NUL byte");
                id = strdup(json_object_get_string(v));
                if (!id)
                        return -ENOMEM;
        }
        if (command == CONTROL_INCIDENT && !id)
                return parse_fail(ret_error, "\"incident\" needs an \"id\"");

        *ret = (ControlRequest) {
                .version = (int) version,
                .command = command,
                .reason = TAKE_PTR(reason),
                .limit = limit,
                .id = TAKE_PTR(id),
        };
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

/* --- the server ------------------------------------------------------- */

typedef struct ControlClient ControlClient;

/* At most `burst` messages per interval; the rest are counted, and the
 * count goes with the next message let through. */
typedef struct RateLimit {
        uint64_t begin; /* CLOCK_MONOTONIC start of the interval, 0: none yet */
        unsigned n, suppressed;
} RateLimit;

#define CONTROL_LOG_INTERVAL_USEC (10 * USEC_PER_SEC)

static bool ratelimit_pass(RateLimit *rl, uint64_t now, unsigned burst, unsigned *ret_suppressed) {
        if (rl->begin == 0 || now >= rl->begin + CONTROL_LOG_INTERVAL_USEC) {
                rl->begin = MAX(now, (uint64_t) 1);
                rl->n = 0;
        }
        if (rl->n >= burst) {
                rl->suppressed++;
                return false;
        }
        rl->n++;
        *ret_suppressed = rl->suppressed;
        rl->suppressed = 0;
        return true;
}

struct ControlClient {
        ControlServer *server;
        ControlClient *prev, *next;

        int fd;
        sd_event_source *io;
        sd_event_source *idle;

        bool have_cred;
        struct ucred cred;
        gid_t *groups;       /* supplementary groups at connect(), fetched when first needed */
        size_t n_groups;
        bool groups_fetched;

        char in[CONTROL_REQUEST_MAX + 1]; /* a full line plus its newline */
        size_t in_len;
        bool read_eof;

        char *out;
        size_t out_start, out_end, out_alloc;

        bool watching;
        uint64_t id;             /* ticket for a deferred answer */
        bool awaiting;           /* a deferred answer is due: read no more meanwhile */
        bool close_when_flushed; /* after an oversize request, or the peer's EOF */
        bool dead;               /* disconnected, waiting for the reaper */
};

struct ControlServer {
        sd_event *event;
        int fd;
        char *path;
        sd_event_source *accept_source;
        sd_event_source *reaper;
        sd_event_source *accept_retry; /* out of fds with no client to free one */
        ControlHandlers handlers;
        void *userdata;
        ControlAccess access;
        char *group_name; /* owned; access.group_name points here */
        /* What any local user can trigger at will is logged sparingly. */
        RateLimit refused_log; /* "too many clients" */
        RateLimit denied_log;  /* "permission denied" */

        ControlClient *clients;
        unsigned n_clients; /* live ones; dead ones wait for the reaper */
        uint64_t next_id;
        bool accept_paused; /* out of fds: resume when a client goes */
};

static size_t client_pending(const ControlClient *c) {
        return c->out_end - c->out_start;
}

static void client_disconnect(ControlClient *c) {
        ControlServer *s = c->server;

        if (c->dead)
                return;
        c->dead = true;
        c->io = sd_event_source_disable_unref(c->io);
        c->idle = sd_event_source_disable_unref(c->idle);
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -1;
        free(c->out);
        c->out = NULL;
        c->out_start = c->out_end = c->out_alloc = 0;

        s->n_clients--;
        if (s->accept_paused) {
                s->accept_paused = false;
                (void) sd_event_source_set_enabled(s->accept_source, SD_EVENT_ON);
        }
        if (s->reaper)
                (void) sd_event_source_set_enabled(s->reaper, SD_EVENT_ONESHOT);
}

static void client_free(ControlClient *c) {
        if (!c)
                return;
        if (!c->dead)
                client_disconnect(c);
        if (c->prev)
                c->prev->next = c->next;
        else
                c->server->clients = c->next;
        if (c->next)
                c->next->prev = c->prev;
        free(c->groups);
        free(c);
}

static int reaper_handler(sd_event_source *src, void *userdata) {
        ControlServer *s = userdata;
        ControlClient *next;

        for (ControlClient *c = s->clients; c; c = next) {
                next = c->next;
                if (c->dead)
                        client_free(c);
        }
        return 0;
}

/* What we want to hear about now: input only while we could act on it
 * (backpressure when a client does not read its replies), output only
 * while some is queued. */
static void client_update_events(ControlClient *c) {
        uint32_t events = 0;

        if (c->dead)
                return;
        if (!c->read_eof && !c->awaiting && !c->close_when_flushed && client_pending(c) <= CONTROL_CLIENT_OUTPUT_MAX &&
            c->in_len < sizeof c->in)
                events |= EPOLLIN;
        if (client_pending(c) > 0)
                events |= EPOLLOUT;
        (void) sd_event_source_set_io_events(c->io, events);
}

/* Writes what the socket takes now. Returns -errno when the peer is gone. */
static int client_flush(ControlClient *c) {
        while (client_pending(c) > 0) {
                ssize_t n = send(c->fd, c->out + c->out_start, client_pending(c), MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN || errno == EWOULDBLOCK)
                                break;
                        return -errno;
                }
                c->out_start += (size_t) n;
        }
        if (c->out_start == c->out_end)
                c->out_start = c->out_end = 0;
        return 0;
}

static int client_queue(ControlClient *c, const char *line) {
        size_t len, need;

        if (c->dead)
                return -ENOTCONN;
        if (!line)
                return -ENOMEM;
        len = strlen(line);
        if (c->out_start > 0 && c->out_end + len + 1 > c->out_alloc) {
                memmove(c->out, c->out + c->out_start, client_pending(c));
                c->out_end -= c->out_start;
                c->out_start = 0;
        }
        need = c->out_end + len + 1;
        if (need > c->out_alloc) {
                size_t a = MAX(need, MAX(c->out_alloc * 2, (size_t) 4096));
                char *p = realloc(c->out, a);
                if (!p)
                        return -ENOMEM;
                c->out = p;
                c->out_alloc = a;
        }
        memcpy(c->out + c->out_end, line, len);
        c->out[c->out_end + len] = '\n';
        c->out_end += len + 1;
        return 0;
}

/* Queue, try to send, and decide the client's fate. Never frees. */
static void client_reply(ControlClient *c, char *line) {
        int r;

        r = client_queue(c, line);
        free(line);
        if (r < 0) {
                log_warning_errno(r, "Control client: cannot queue reply, disconnecting: %m");
                client_disconnect(c);
                return;
        }
        r = client_flush(c);
        if (r < 0) {
                log_debug_errno(r, "Control client: write failed, disconnecting: %m");
                client_disconnect(c);
                return;
        }
        if (c->watching && client_pending(c) > CONTROL_CLIENT_OUTPUT_MAX) {
                log_warning("Control client (uid %u) is %zu bytes behind on watch events, dropping it.",
                            c->have_cred ? (unsigned) c->cred.uid : 0u, client_pending(c));
                client_disconnect(c);
                return;
        }
        client_update_events(c);
}

#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59 /* Linux 4.13 */
#endif

/* The peer's supplementary groups as they were at connect(). The kernel
 * says how much room it needs (ERANGE): two rounds suffice, a third only
 * if something odd happens. */
static int peer_groups(int fd, gid_t **ret, size_t *ret_n) {
        socklen_t len = 32 * sizeof(gid_t);

        for (unsigned attempt = 0; attempt < 3; attempt++) {
                _cleanup_(freep) gid_t *g = NULL;
                socklen_t want = len;

                /* NGROUPS_MAX is 65536 on Linux */
                if (len > 65536 * sizeof(gid_t))
                        return -E2BIG;
                g = malloc(MAX(len, (socklen_t) sizeof(gid_t)));
                if (!g)
                        return -ENOMEM;
                if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, g, &want) == 0) {
                        *ret_n = want / sizeof(gid_t);
                        *ret = TAKE_PTR(g);
                        return 0;
                }
                if (errno != ERANGE || want <= len)
                        return -errno;
                len = want;
        }
        return -ERANGE;
}

static ControlGrant client_grant(ControlClient *c) {
        const ControlAccess *a = &c->server->access;
        ControlGrant g;

        if (!c->have_cred)
                return CONTROL_GRANT_DENIED;
        g = control_access_check(c->cred.uid, c->cred.gid, NULL, 0, a);
        if (g != CONTROL_GRANT_DENIED || !a->have_group)
                return g;
        /* Only now are the supplementary groups worth a look. */
        if (!c->groups_fetched && c->fd >= 0) {
                int r = peer_groups(c->fd, &c->groups, &c->n_groups);
                if (r < 0) {
                        log_debug_errno(r, "Control client (uid %u): no supplementary groups (SO_PEERGROUPS), "
                                        "treating as not a member: %m", (unsigned) c->cred.uid);
                        c->groups = NULL;
                        c->n_groups = 0;
                }
                c->groups_fetched = true;
        }
        return control_access_check(c->cred.uid, c->cred.gid, c->groups, c->n_groups, a);
}

static void client_rearm_idle(ControlClient *c) {
        uint64_t now;

        if (c->dead || !c->idle)
                return;
        if (c->watching || c->awaiting) {
                /* a deferred answer has its own deadline, in the agent */
                (void) sd_event_source_set_enabled(c->idle, SD_EVENT_OFF);
                return;
        }
        if (sd_event_now(c->server->event, CLOCK_MONOTONIC, &now) < 0)
                return;
        (void) sd_event_source_set_time(c->idle, now + CONTROL_CLIENT_IDLE_USEC);
        (void) sd_event_source_set_enabled(c->idle, SD_EVENT_ONESHOT);
}

static char *handle_mutating(ControlClient *c, const ControlRequest *req) {
        const ControlHandlers *h = &c->server->handlers;
        _cleanup_(freep) char *message = NULL;
        const char *name = control_command_to_string(req->command);
        char buf[160];
        int r;

        if (control_command_is_mutating(req->command)) {
                ControlGrant g = client_grant(c);
                bool root_only = control_command_is_root_only(req->command);

                if (g == CONTROL_GRANT_DENIED || (root_only && g == CONTROL_GRANT_GROUP)) {
                        const ControlAccess *acc = &c->server->access;
                        _cleanup_(freep) char *denied =
                                root_only ? control_root_only_message(name, c->have_cred, c->cred.uid, acc)
                                          : control_access_denied_message(name, c->have_cred, c->cred.uid, acc);
                        uint64_t now = 0;
                        unsigned more;

                        (void) sd_event_now(c->server->event, CLOCK_MONOTONIC, &now);
                        if (!ratelimit_pass(&c->server->denied_log, now, 5, &more))
                                ;
                        else if (more == 0)
                                log_notice("Control: refused '%s' from unprivileged peer (uid %ld, pid %ld).", name,
                                           c->have_cred ? (long) c->cred.uid : -1L,
                                           c->have_cred ? (long) c->cred.pid : -1L);
                        else
                                log_notice("Control: refused '%s' from unprivileged peer (uid %ld, pid %ld); %u "
                                           "refusals before it not logged.",
                                           name, c->have_cred ? (long) c->cred.uid : -1L,
                                           c->have_cred ? (long) c->cred.pid : -1L, more);
                        return control_reply_error(denied ? denied : "permission denied");
                }
                if (g == CONTROL_GRANT_GROUP)
                        /* worth a line: access that only the group grants */
                        log_info("Control: '%s' from uid %u (pid %ld), allowed as a member of %s%s (gid %u).", name,
                                 (unsigned) c->cred.uid, (long) c->cred.pid,
                                 c->server->access.group_name ? "group " : "the control group",
                                 strempty(c->server->access.group_name), (unsigned) c->server->access.group);
        }

        if (req->command == CONTROL_DRAIN) {
                if (!h->drain)
                        return control_reply_error("'drain' is not supported by this agent");
                r = h->drain(c->server->userdata, req->reason, &message);
        } else if (req->command == CONTROL_RELOAD) {
                if (!h->reload)
                        return control_reply_error("'reload' is not supported by this agent");
                r = h->reload(c->server->userdata, &message);
        } else if (req->command == CONTROL_TEST_ALERT || req->command == CONTROL_TEST_REBOOT ||
                   req->command == CONTROL_CHECK) {
                int (*handler)(void *, uint64_t, const char *, char **) =
                        req->command == CONTROL_TEST_ALERT    ? h->test_alert
                        : req->command == CONTROL_TEST_REBOOT ? h->test_reboot
                                                              : h->check;
                if (!handler) {
                        snprintf(buf, sizeof buf, "'%s' is not supported by this agent", name);
                        return control_reply_error(buf);
                }
                r = handler(c->server->userdata, c->id, req->reason, &message);
                if (r >= 0) {
                        c->awaiting = true;
                        client_rearm_idle(c);
                        return NULL; /* answered by control_server_answer() */
                }
        } else {
                if (!h->resume)
                        return control_reply_error("'resume' is not supported by this agent");
                r = h->resume(c->server->userdata, &message);
        }
        if (r < 0) {
                if (message)
                        return control_reply_error(message);
                snprintf(buf, sizeof buf, "%s failed: %s", name, strerror(-r));
                return control_reply_error(buf);
        }
        return control_reply_message(message ? message : "ok");
}

#define CONTROL_NO_POOL "no [pool] configured"

static char *handle_pool(ControlClient *c) {
        const ControlHandlers *h = &c->server->handlers;
        _cleanup_(json_object_putp) json_object *st = NULL;
        json_object *pool = NULL, *configured = NULL;

        if (h->pool) {
                _cleanup_(json_object_putp) json_object *o = h->pool(c->server->userdata);
                if (!o)
                        return control_reply_error(CONTROL_NO_POOL);
                return control_reply_object("pool", o);
        }
        /* Older wiring: the same object, from the status. */
        if (!h->status)
                return control_reply_error("'pool' is not supported by this agent");
        st = h->status(c->server->userdata);
        if (!st || !json_object_object_get_ex(st, "pool", &pool) || !json_object_is_type(pool, json_type_object))
                return control_reply_error(CONTROL_NO_POOL);
        if (!json_object_object_get_ex(pool, "configured", &configured) || !json_object_get_boolean(configured))
                return control_reply_error(CONTROL_NO_POOL);
        return control_reply_object("pool", pool);
}

static char *handle_request(ControlClient *c, const ControlRequest *req) {
        const ControlHandlers *h = &c->server->handlers;
        _cleanup_(json_object_putp) json_object *o = NULL;

        switch (req->command) {
        case CONTROL_STATUS:
                if (!h->status)
                        return control_reply_error("'status' is not supported by this agent");
                o = h->status(c->server->userdata);
                if (!o)
                        return control_reply_error("status unavailable");
                return control_reply_object("status", o);

        case CONTROL_HISTORY:
                if (!h->history)
                        return control_reply_error("'history' is not supported by this agent");
                o = h->history(c->server->userdata, req->limit > 0 ? req->limit : CONTROL_LIMIT_DEFAULT);
                if (!o)
                        return control_reply_error("history unavailable");
                return control_reply_object("history", o);

        case CONTROL_POOL:
                return handle_pool(c);

        case CONTROL_INCIDENTS:
        case CONTROL_INCIDENT: {
                _cleanup_(freep) char *message = NULL;

                if (!h->incidents || !h->incident)
                        return control_reply_error("'incidents' is not supported by this agent");
                o = req->command == CONTROL_INCIDENTS ? h->incidents(c->server->userdata, &message)
                                                      : h->incident(c->server->userdata, req->id, &message);
                if (!o)
                        return control_reply_error(message ? message : "incidents unavailable");
                return control_reply_object(control_command_to_string(req->command), o);
        }

        case CONTROL_WATCH:
                c->watching = true;
                client_rearm_idle(c);
                o = json_object_new_boolean(true);
                if (!o)
                        return NULL;
                return control_reply_object("watching", o);

        case CONTROL_DRAIN:
        case CONTROL_RESUME:
        case CONTROL_TEST_ALERT:
        case CONTROL_TEST_REBOOT:
        case CONTROL_RELOAD:
        case CONTROL_CHECK: /* answered later, like the tests; anyone may ask */
                return handle_mutating(c, req);

        default:
                return control_reply_error("unknown command");
        }
}

static void client_handle_line(ControlClient *c, const char *line, size_t len) {
        ControlRequest req = {};
        _cleanup_(freep) char *error = NULL;
        int r;

        if (len > 0 && line[len - 1] == '\r') /* tolerate CRLF from socat/nc users */
                len--;
        if (len == 0)
                return;

        r = control_request_parse(line, len, &req, &error);
        if (r < 0) {
                log_debug("Control: bad request: %s", error ? error : strerror(-r));
                client_reply(c, control_reply_error(error ? error : "cannot parse request"));
                return;
        }
        {
                char *reply = handle_request(c, &req);
                if (reply || !c->awaiting)
                        client_reply(c, reply);
        }
        control_request_done(&req);
}

/* Runs every complete line in the buffer, in order, while the client keeps
 * up with its replies. */
static void client_process_input(ControlClient *c) {
        size_t start = 0;

        while (!c->dead && !c->awaiting && !c->close_when_flushed && client_pending(c) <= CONTROL_CLIENT_OUTPUT_MAX) {
                char *nl = memchr(c->in + start, '\n', c->in_len - start);
                size_t len;

                if (!nl)
                        break;
                len = (size_t) (nl - (c->in + start));
                client_handle_line(c, c->in + start, len);
                start += len + 1;
        }
        if (c->dead)
                return;
        if (start > 0) {
                memmove(c->in, c->in + start, c->in_len - start);
                c->in_len -= start;
        }

        if (c->awaiting || c->close_when_flushed || client_pending(c) > CONTROL_CLIENT_OUTPUT_MAX)
                return;
        if (c->in_len == sizeof c->in && !memchr(c->in, '\n', c->in_len)) {
                c->in_len = 0;
                c->close_when_flushed = true;
                client_reply(c, control_reply_error("request too large (max 4096 bytes)"));
                return;
        }
        if (c->read_eof && c->in_len > 0 && !memchr(c->in, '\n', c->in_len)) {
                /* `printf '{...}' | nc -U`: the last request may lack its newline */
                size_t len = c->in_len;
                c->in_len = 0;
                client_handle_line(c, c->in, len);
        }
}

static void client_finish_if_done(ControlClient *c) {
        if (c->dead)
                return;
        if (client_pending(c) > 0)
                return;
        if (c->close_when_flushed) {
                client_disconnect(c);
                return;
        }
        /* The peer will send nothing more: close once it has everything,
         * unless it watches (a watcher may half-close its sending side). */
        if (c->read_eof && !c->watching && !c->awaiting && c->in_len == 0)
                client_disconnect(c);
}

static void client_read(ControlClient *c) {
        while (!c->dead && !c->read_eof && !c->close_when_flushed && c->in_len < sizeof c->in) {
                ssize_t n = recv(c->fd, c->in + c->in_len, sizeof c->in - c->in_len, MSG_DONTWAIT);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN || errno == EWOULDBLOCK)
                                break;
                        log_debug_errno(errno, "Control client: read failed, disconnecting: %m");
                        client_disconnect(c);
                        return;
                }
                if (n == 0) {
                        c->read_eof = true;
                        break;
                }
                c->in_len += (size_t) n;
                client_rearm_idle(c);
                /* handle lines as they complete so an oversize one is judged alone */
                client_process_input(c);
        }
        if (!c->dead)
                client_process_input(c);
}

static int client_io_handler(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        ControlClient *c = userdata;

        if (c->dead)
                return 0;

        if (revents & EPOLLOUT) {
                int r = client_flush(c);
                if (r < 0) {
                        log_debug_errno(r, "Control client: write failed, disconnecting: %m");
                        client_disconnect(c);
                        return 0;
                }
                /* Room again: lines held back for backpressure may run now. */
                client_process_input(c);
        }
        if (!c->dead && (revents & EPOLLIN))
                client_read(c);
        if (!c->dead && (revents & (EPOLLHUP | EPOLLERR))) {
                /* both directions are gone: nobody will read what is queued */
                if (!(revents & EPOLLIN) || c->read_eof) {
                        client_disconnect(c);
                        return 0;
                }
        }
        if (c->dead)
                return 0;
        client_finish_if_done(c);
        client_update_events(c);
        return 0;
}

static int client_idle_handler(sd_event_source *src, uint64_t usec, void *userdata) {
        ControlClient *c = userdata;

        if (c->dead || c->watching)
                return 0;
        log_debug("Control client idle for %llus, closing.",
                  (unsigned long long) (CONTROL_CLIENT_IDLE_USEC / USEC_PER_SEC));
        client_disconnect(c);
        return 0;
}

/* A flood of connections from any local user must not flood the log too:
 * one line, then at most one every 10 s saying how many more. */
static void refuse_log(ControlServer *s) {
        uint64_t now = 0;
        unsigned more;

        (void) sd_event_now(s->event, CLOCK_MONOTONIC, &now);
        if (!ratelimit_pass(&s->refused_log, now, 1, &more))
                return;
        if (more > 0)
                log_warning("Control: %u clients connected, refusing new ones (%u more refused since the last "
                            "message).", s->n_clients, more);
        else
                log_warning("Control: %u clients connected, refusing new ones.", s->n_clients);
}

/* Best effort: the socket is fresh, its buffer empty, so one small line fits. */
static void reject_client(int fd, const char *message) {
        _cleanup_(freep) char *line = control_reply_error(message);
        _cleanup_(freep) char *framed = NULL;

        if (line && asprintf(&framed, "%s\n", line) >= 0)
                (void) send(fd, framed, strlen(framed), MSG_NOSIGNAL | MSG_DONTWAIT);
        close(fd);
}

static int client_new(ControlServer *s, int fd) {
        ControlClient *c;
        socklen_t sl = sizeof(struct ucred);
        uint64_t now;
        int r;

        c = calloc(1, sizeof *c);
        if (!c) {
                close(fd);
                return -ENOMEM;
        }
        c->server = s;
        c->fd = fd;
        c->id = ++s->next_id;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c->cred, &sl) == 0 && sl == sizeof(struct ucred))
                c->have_cred = true;
        else
                log_debug_errno(errno, "Control client: no peer credentials, treating as unprivileged: %m");

        /* linked first so every failure below goes through client_free */
        c->next = s->clients;
        if (s->clients)
                s->clients->prev = c;
        s->clients = c;
        s->n_clients++;

        r = sd_event_add_io(s->event, &c->io, fd, EPOLLIN, client_io_handler, c);
        if (r < 0)
                goto fail;
        r = sd_event_now(s->event, CLOCK_MONOTONIC, &now);
        if (r < 0)
                goto fail;
        r = sd_event_add_time(s->event, &c->idle, CLOCK_MONOTONIC, now + CONTROL_CLIENT_IDLE_USEC,
                              USEC_PER_SEC / 10, client_idle_handler, c);
        if (r < 0)
                goto fail;
        (void) sd_event_source_set_description(c->io, "control-client");
        return 0;

fail:
        client_free(c);
        return r;
}

static int accept_retry_handler(sd_event_source *src, uint64_t usec, void *userdata) {
        ControlServer *s = userdata;

        s->accept_paused = false;
        (void) sd_event_source_set_enabled(s->accept_source, SD_EVENT_ON);
        return 0;
}

/* accept is level-triggered: out of fds, it would spin. Resume when a
 * client leaves or after a second, whichever comes first. */
static void accept_pause(ControlServer *s) {
        uint64_t now;
        int r;

        s->accept_paused = true;
        (void) sd_event_source_set_enabled(s->accept_source, SD_EVENT_OFF);
        if (sd_event_now(s->event, CLOCK_MONOTONIC, &now) < 0)
                return;
        if (!s->accept_retry) {
                r = sd_event_add_time(s->event, &s->accept_retry, CLOCK_MONOTONIC, now + USEC_PER_SEC,
                                      USEC_PER_SEC / 10, accept_retry_handler, s);
                if (r < 0) {
                        /* better a busy loop than a deaf socket */
                        accept_retry_handler(NULL, 0, s);
                        return;
                }
        } else {
                (void) sd_event_source_set_time(s->accept_retry, now + USEC_PER_SEC);
                (void) sd_event_source_set_enabled(s->accept_retry, SD_EVENT_ONESHOT);
        }
}

/* At the limit, some of the clients counted may have hung up already: a
 * burst that connects, writes and closes fills the table before the loop
 * gets to their EOF, which waits behind this accept. Do for them now what
 * the loop would do next (read, answer, see EOF or EPIPE), then count
 * again. Returns how many slots that freed. */
static unsigned collect_hangups(ControlServer *s) {
        unsigned before = s->n_clients;

        for (ControlClient *c = s->clients; c; c = c->next) {
                if (c->dead || c->awaiting || client_pending(c) > CONTROL_CLIENT_OUTPUT_MAX)
                        continue;
                if (!c->read_eof && !c->close_when_flushed)
                        client_read(c);
                /* an answer queued for a peer that is gone fails here, not later */
                if (!c->dead && client_pending(c) > 0 && client_flush(c) < 0)
                        client_disconnect(c);
                if (c->dead)
                        continue;
                client_finish_if_done(c);
                client_update_events(c);
        }
        return before - s->n_clients;
}

static int accept_handler(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        ControlServer *s = userdata;
        bool may_collect = true;

        /* bounded, so a flood of connections cannot starve the rest of the loop */
        for (unsigned i = 0; i < 2 * CONTROL_CLIENTS_MAX; i++) {
                int cfd = accept4(s->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                int r;

                if (cfd < 0) {
                        switch (errno) {
                        case EAGAIN:
#if EWOULDBLOCK != EAGAIN
                        case EWOULDBLOCK:
#endif
                                return 0;
                        case EINTR:
                        case ECONNABORTED:
                        case EPROTO:
                        case EPERM:
                                continue;
                        case EMFILE:
                        case ENFILE:
                        case ENOBUFS:
                        case ENOMEM:
                                /* level-triggered: without a pause we would spin */
                                log_warning_errno(errno, "Control: cannot accept, pausing: %m");
                                accept_pause(s);
                                return 0;
                        default:
                                log_warning_errno(errno, "Control: accept failed, ignoring: %m");
                                return 0;
                        }
                }

                /* again after every pass that freed a slot: a burst of hang-ups
                 * longer than the table still waits in the backlog */
                if (s->n_clients >= CONTROL_CLIENTS_MAX - CONTROL_CLIENTS_RESERVED && may_collect)
                        may_collect = collect_hangups(s) > 0;
                if (s->n_clients >= CONTROL_CLIENTS_MAX - CONTROL_CLIENTS_RESERVED) {
                        struct ucred cred;
                        socklen_t sl = sizeof cred;
                        bool privileged = false;

                        /* The last few slots are kept for whoever may drain:
                         * anyone else holding connections open must not lock
                         * the operator out. Supplementary groups are not
                         * fetched for this: uid and primary gid only. */
                        if (s->n_clients < CONTROL_CLIENTS_MAX &&
                            getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &sl) == 0 && sl == sizeof cred)
                                privileged = control_access_check(cred.uid, cred.gid, NULL, 0, &s->access) !=
                                             CONTROL_GRANT_DENIED;
                        if (!privileged) {
                                refuse_log(s);
                                reject_client(cfd, CONTROL_ERROR_TOO_MANY);
                                continue;
                        }
                }
                r = client_new(s, cfd);
                if (r < 0)
                        log_warning_errno(r, "Control: cannot set up client, ignoring: %m");
        }
        return 0;
}

/* A leftover socket file from a dead agent answers ECONNREFUSED; a live
 * agent accepts (or its backlog is full: EAGAIN). */
static int socket_path_is_stale(const struct sockaddr_un *sa, socklen_t salen) {
        _cleanup_(closep) int fd = -1;
        struct stat st;

        if (lstat(sa->sun_path, &st) < 0)
                return errno == ENOENT ? 1 : -errno;
        if (!S_ISSOCK(st.st_mode))
                return -EEXIST;

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (const struct sockaddr *) sa, salen) == 0)
                return 0;
        if (errno == ECONNREFUSED || errno == ENOENT)
                return 1;
        if (errno == EAGAIN || errno == EINPROGRESS)
                return 0;
        return -errno;
}

static int bind_socket(int fd, const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        size_t len = strlen(path);
        socklen_t salen;
        int r;

        if (len >= sizeof sa.sun_path)
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, len + 1);
        salen = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + len + 1);

        for (unsigned attempt = 0;; attempt++) {
                if (bind(fd, (struct sockaddr *) &sa, salen) == 0)
                        return 0;
                if (errno != EADDRINUSE || attempt > 0)
                        return -errno;

                r = socket_path_is_stale(&sa, salen);
                if (r < 0)
                        return r == -EEXIST ? log_error_errno(r, "Control socket %s exists and is not a socket.", path) : r;
                if (r == 0)
                        return log_error_errno(EADDRINUSE, "Control socket %s is in use by a live process.", path);
                log_info("Control socket %s is stale, replacing it.", path);
                if (unlink(path) < 0 && errno != ENOENT)
                        return -errno;
        }
}

int control_server_new(sd_event *e, const char *path, const ControlHandlers *h, void *userdata,
                       ControlServer **ret) {
        ControlServer *s;
        int r;

        if (!e || isempty(path) || !h || !ret)
                return -EINVAL;
        if (strlen(path) >= sizeof(((struct sockaddr_un *) NULL)->sun_path))
                return -ENAMETOOLONG;

        s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->fd = -1;
        s->event = sd_event_ref(e);
        s->handlers = *h;
        s->userdata = userdata;
        s->access.owner = geteuid();
        s->access.group = (gid_t) -1;

        s->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (s->fd < 0) {
                r = -errno;
                goto fail;
        }
        r = bind_socket(s->fd, path);
        if (r < 0)
                goto fail;
        /* from here on, free() unlinks the path: it is ours */
        s->path = strdup(path);
        if (!s->path) {
                (void) unlink(path);
                r = -ENOMEM;
                goto fail;
        }
        /* the umask must not narrow it: status is for everyone, SO_PEERCRED guards the rest */
        if (chmod(path, 0666) < 0) {
                r = -errno;
                goto fail;
        }
        if (listen(s->fd, SOMAXCONN) < 0) {
                r = -errno;
                goto fail;
        }
        r = sd_event_add_io(e, &s->accept_source, s->fd, EPOLLIN, accept_handler, s);
        if (r < 0)
                goto fail;
        (void) sd_event_source_set_description(s->accept_source, "control-accept");
        r = sd_event_add_defer(e, &s->reaper, reaper_handler, s);
        if (r < 0)
                goto fail;
        (void) sd_event_source_set_enabled(s->reaper, SD_EVENT_OFF);
        (void) sd_event_source_set_description(s->reaper, "control-reaper");

        *ret = s;
        return 0;

fail:
        control_server_free(s);
        return r;
}

ControlServer *control_server_free(ControlServer *s) {
        if (!s)
                return NULL;
        while (s->clients)
                client_free(s->clients);
        s->accept_source = sd_event_source_disable_unref(s->accept_source);
        s->reaper = sd_event_source_disable_unref(s->reaper);
        s->accept_retry = sd_event_source_disable_unref(s->accept_retry);
        if (s->fd >= 0)
                close(s->fd);
        if (s->path) {
                (void) unlink(s->path);
                free(s->path);
        }
        free(s->group_name);
        sd_event_unref(s->event);
        free(s);
        return NULL;
}

void control_server_answer(ControlServer *s, uint64_t ticket, bool ok, const char *message, json_object *extra) {
        ControlClient *c;
        json_object *o;
        char *line = NULL;

        for (c = s ? s->clients : NULL; c; c = c->next)
                if (c->id == ticket && !c->dead && c->awaiting)
                        break;
        if (!c)
                return; /* gone meanwhile */
        c->awaiting = false;
        o = json_object_new_object();
        if (o && json_object_object_add(o, "version", json_object_new_int(CONTROL_PROTOCOL_VERSION)) >= 0 &&
            json_object_object_add(o, "ok", json_object_new_boolean(ok)) >= 0 &&
            json_object_object_add(o, ok ? "message" : "error", json_object_new_string(strna(message))) >= 0 &&
            (!extra || json_object_object_add(o, "result", json_object_get(extra)) >= 0))
                (void) json_to_line(o, &line);
        json_object_put(o);
        client_reply(c, line);
        client_rearm_idle(c);
        client_process_input(c);
        client_finish_if_done(c);
}

int control_server_set_group(ControlServer *s, bool have_group, gid_t group, const char *name) {
        char *copy = NULL;

        if (!s)
                return -EINVAL;
        if (have_group && name) {
                copy = strdup(name);
                if (!copy)
                        return -ENOMEM;
        }
        free(s->group_name);
        s->group_name = copy;
        s->access.have_group = have_group;
        s->access.group = have_group ? group : (gid_t) -1;
        s->access.group_name = copy;
        return 0;
}

int control_server_apply_config(ControlServer *s, const Config *c) {
        const char *name;

        if (!s || !c)
                return -EINVAL;
        if (!c->agent.control_group || !c->agent.control_gid_set)
                return control_server_set_group(s, false, 0, NULL);
        /* a number is a gid as written: no name to show */
        name = c->agent.control_group;
        if (strspn(name, "0123456789") == strlen(name))
                name = NULL;
        return control_server_set_group(s, true, c->agent.control_gid, name);
}

void control_server_broadcast(ControlServer *s, json_object *event) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        _cleanup_(freep) char *line = NULL;

        if (!s || !event)
                return;
        o = json_object_new_object();
        if (!o || object_add(o, "version", json_object_new_int(CONTROL_PROTOCOL_VERSION)) < 0 ||
            object_add(o, "event", json_object_get(event)) < 0 || json_to_line(o, &line) < 0) {
                log_oom();
                return;
        }
        for (ControlClient *c = s->clients; c; c = c->next)
                if (c->watching && !c->dead)
                        client_reply(c, strdup(line));
}

unsigned control_server_n_clients(const ControlServer *s) {
        return s ? s->n_clients : 0;
}
