/* state.json: what survives a reboot. Parsing and formatting are pure
 * json-c; load/save are the only I/O, and a bad file is moved aside so
 * the agent always starts. */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>

#include <json-c/json.h>

#include "state.h"
#include "error.h"
#include "fileio.h"
#include "jsonutil.h"

#define STATE_FILE_NAME "state.json"
/* A state file is a few KiB; anything this big is not ours. */
#define STATE_FILE_MAX (1024U * 1024U)
/* Tries at "state.json.corrupt-<sec>-N" before giving up on a free name. */
#define STATE_CORRUPT_NAME_TRIES 100

static void incident_steps_done(Incident *i) {
        for (size_t k = 0; k < i->n_steps; k++) {
                free(i->steps[k].step);
                free(i->steps[k].result);
        }
        i->n_steps = 0;
}

int incident_step_add(Incident *i, const char *step, usec_t at) {
        char *s = strdup(strempty(step));

        if (!s)
                return -ENOMEM;
        if (i->n_steps == INCIDENT_STEPS_MAX) {
                free(i->steps[0].step);
                free(i->steps[0].result);
                memmove(i->steps, i->steps + 1, (INCIDENT_STEPS_MAX - 1) * sizeof i->steps[0]);
                i->n_steps--;
        }
        i->steps[i->n_steps++] = (IncidentStep) { .step = s, .at = at };
        return 0;
}

int incident_step_result(Incident *i, const char *result) {
        char *r;

        if (i->n_steps == 0)
                return -ENOENT;
        r = strdup(strempty(result));
        if (!r)
                return -ENOMEM;
        free(i->steps[i->n_steps - 1].result);
        i->steps[i->n_steps - 1].result = r;
        i->steps[i->n_steps - 1].awaiting_reboot = false;
        return 0;
}

const IncidentStep *incident_reboot_awaited(const Incident *i) {
        if (!i || !i->id || i->ended != 0 || i->n_steps == 0 || !i->steps[i->n_steps - 1].awaiting_reboot)
                return NULL;
        return &i->steps[i->n_steps - 1];
}

void incident_clear(Incident *i) {
        incident_steps_done(i);
        free(i->id);
        free(i->reason);
        free(i->slack_thread);
        free(i->outcome);
        *i = (Incident) {};
}

void persistent_state_init(PersistentState *s) {
        if (!s)
                return;
        *s = (PersistentState) { .state = STATE_BOOT };
}

void persistent_state_done(PersistentState *s) {
        if (!s)
                return;
        free(s->reason);
        free(s->maintenance_reason);
        free(s->last_checks);
        free(s->held_reason);
        free(s->standby_group);
        incident_clear(&s->incident);
        persistent_state_init(s);
}

void persistent_state_add_remediation(PersistentState *s, usec_t now) {
        if (!s)
                return;
        if (s->n_remediations >= STATE_REMEDIATIONS_MAX) {
                memmove(s->remediations, s->remediations + 1,
                        (STATE_REMEDIATIONS_MAX - 1) * sizeof(s->remediations[0]));
                s->n_remediations = STATE_REMEDIATIONS_MAX - 1;
        }
        s->remediations[s->n_remediations++] = now;
}

/* Keep the STATE_REMEDIATIONS_MAX newest times, sorted oldest first, no
 * matter the order or count in the file: a hand-edited or future file must
 * not be able to weaken the remediation guard by dropping recent entries. */
static void remediations_insert(usec_t *a, size_t *n, usec_t t) {
        size_t i;

        if (*n >= STATE_REMEDIATIONS_MAX) {
                if (t <= a[0])
                        return;
                memmove(a, a + 1, (STATE_REMEDIATIONS_MAX - 1) * sizeof(a[0]));
                (*n)--;
        }

        for (i = *n; i > 0 && a[i - 1] > t; i--)
                a[i] = a[i - 1];
        a[i] = t;
        (*n)++;
}

static bool boot_id_valid(const char *s, size_t len) {
        if (len != BOOT_ID_LEN)
                return false;
        for (size_t i = 0; i < len; i++) {
                bool dash_pos = i == 8 || i == 13 || i == 18 || i == 23;
                char c = s[i];

                if (dash_pos) {
                        if (c != '-')
                                return false;
                } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
                        return false;
        }
        return true;
}

/* Parse errors (error_set()) carry the field's dotted name, "PREFIXFIELD:
 * what", so a human can fix the file; the first error ends the parse. */

/* NULL when absent or null; fields default then. */
static json_object *get_field(json_object *obj, const char *key) {
        json_object *v = NULL;

        if (!json_object_object_get_ex(obj, key, &v))
                return NULL;
        return v;
}

static int parse_usec(json_object *v, usec_t *ret) {
        if (!json_object_is_type(v, json_type_int))
                return -EBADMSG;
        /* get_int64 clamps values stored as uint64 to INT64_MAX, so only a
         * true negative is < 0; get_uint64 then gives the exact value. */
        if (json_object_get_int64(v) < 0)
                return -EBADMSG;
        *ret = json_object_get_uint64(v);
        return 0;
}

/* Optional string: absent or null leaves *ret NULL. Embedded NULs are
 * refused: the struct holds C strings. */
static int parse_opt_string(json_object *obj, const char *key, char **ret, const char *prefix, char **ret_error) {
        json_object *v = get_field(obj, key);
        const char *s;

        if (!v)
                return 0;
        if (!json_object_is_type(v, json_type_string))
                return error_set(ret_error, -EBADMSG, "%s%s: %s", prefix, key, "expected string or null");

        s = json_object_get_string(v);
        if ((size_t) json_object_get_string_len(v) != strlen(s))
                return error_set(ret_error, -EBADMSG, "%s%s: %s", prefix, key, "embedded NUL");

        char *copy = strdup(s);
        if (!copy)
                return -ENOMEM;
        free(*ret);
        *ret = copy;
        return 0;
}

static int parse_opt_usec(json_object *obj, const char *key, usec_t *ret, const char *prefix, char **ret_error) {
        json_object *v = get_field(obj, key);

        if (!v)
                return 0;
        if (parse_usec(v, ret) < 0)
                return error_set(ret_error, -EBADMSG, "%s%s: %s", prefix, key, "expected non-negative integer (usec)");
        return 0;
}

static int parse_opt_bool(json_object *root, const char *key, bool *ret, char **ret_error) {
        json_object *v = get_field(root, key);

        if (!v)
                return 0;
        if (!json_object_is_type(v, json_type_boolean))
                return error_set(ret_error, -EBADMSG, "%s%s: %s", "", key, "expected boolean");
        *ret = json_object_get_boolean(v);
        return 0;
}

static int parse_steps(json_object *obj, Incident *inc, char **ret_error);

static int parse_incident(json_object *obj, Incident *inc, char **ret_error) {
        static const char prefix[] = "incident.";
        int r;

        r = parse_opt_string(obj, "id", &inc->id, prefix, ret_error);
        if (r < 0)
                return r;
        r = parse_opt_usec(obj, "started", &inc->started, prefix, ret_error);
        if (r < 0)
                return r;
        r = parse_opt_usec(obj, "left_pool", &inc->left_pool, prefix, ret_error);
        if (r < 0)
                return r;
        r = parse_opt_usec(obj, "ended", &inc->ended, prefix, ret_error);
        if (r < 0)
                return r;
        r = parse_opt_string(obj, "reason", &inc->reason, prefix, ret_error);
        if (r < 0)
                return r;
        r = parse_opt_string(obj, "slack_thread", &inc->slack_thread, prefix, ret_error);
        if (r < 0)
                return r;
        r = parse_opt_string(obj, "outcome", &inc->outcome, prefix, ret_error);
        if (r < 0)
                return r;
        return parse_steps(obj, inc, ret_error);
}

static int parse_steps(json_object *obj, Incident *inc, char **ret_error) {
        json_object *arr = get_field(obj, "steps");
        size_t n;
        int r;

        if (!arr)
                return 0;
        if (!json_object_is_type(arr, json_type_array))
                return error_set(ret_error, -EBADMSG, "%s%s: %s", "incident.", "steps", "expected array");
        n = json_object_array_length(arr);
        /* keep the last ones, as incident_step_add() would have */
        for (size_t k = n > INCIDENT_STEPS_MAX ? n - INCIDENT_STEPS_MAX : 0; k < n; k++) {
                json_object *e = json_object_array_get_idx(arr, k);
                IncidentStep st = {};

                if (!json_object_is_type(e, json_type_object))
                        return error_set(ret_error, -EBADMSG, "%s%s: %s", "incident.steps.", "(item)", "expected object");
                r = parse_opt_string(e, "step", &st.step, "incident.steps.", ret_error);
                if (r >= 0)
                        r = parse_opt_usec(e, "at", &st.at, "incident.steps.", ret_error);
                if (r >= 0)
                        r = parse_opt_string(e, "result", &st.result, "incident.steps.", ret_error);
                if (r >= 0) {
                        json_object *w = get_field(e, "awaiting_reboot");
                        if (w && !json_object_is_type(w, json_type_boolean))
                                r = error_set(ret_error, -EBADMSG, "%s%s: %s", "incident.steps.", "awaiting_reboot", "expected boolean");
                        else if (w)
                                st.awaiting_reboot = json_object_get_boolean(w);
                }
                if (r >= 0 && !st.step)
                        r = error_set(ret_error, -EBADMSG, "%s%s: %s", "incident.steps.", "step", "missing");
                if (r < 0) {
                        free(st.step);
                        free(st.result);
                        return r;
                }
                inc->steps[inc->n_steps++] = st;
        }
        return 0;
}

static int parse_object(json_object *root, PersistentState *s, char **ret_error) {
        json_object *v;
        int r;

        if (!json_object_is_type(root, json_type_object))
                return error_set(ret_error, -EBADMSG, "%s%s: %s", "", "(root)", "expected object");

        /* Version first: a newer file is refused as a whole, before any of
         * its fields can be misread. */
        v = get_field(root, "version");
        if (!v)
                return error_set(ret_error, -EBADMSG, "%s%s: %s", "", "version", "missing");
        if (!json_object_is_type(v, json_type_int))
                return error_set(ret_error, -EBADMSG, "%s%s: %s", "", "version", "expected integer");
        int64_t version = json_object_get_int64(v);
        if (version < 1)
                return error_set(ret_error, -EBADMSG, "%s%s: %s", "", "version", "must be >= 1");
        if (version > STATE_FILE_VERSION)
                return error_set(ret_error, -EBADMSG, "%s%s: %s", "", "version", "newer than supported (1)");

        v = get_field(root, "boot_id");
        if (v) {
                if (!json_object_is_type(v, json_type_string))
                        return error_set(ret_error, -EBADMSG, "%s%s: %s", "", "boot_id", "expected string or null");
                const char *b = json_object_get_string(v);
                size_t blen = (size_t) json_object_get_string_len(v);
                if (blen != 0 && !boot_id_valid(b, blen))
                        return error_set(ret_error, -EBADMSG, "%s%s: %s", "", "boot_id", "expected 36 characters of hex and dashes, or \"\"");
                memcpy(s->boot_id, b, blen);
                s->boot_id[blen] = '\0';
        }

        v = get_field(root, "state");
        if (!v)
                return error_set(ret_error, -EBADMSG, "%s%s: %s", "", "state", "missing");
        if (!json_object_is_type(v, json_type_string))
                return error_set(ret_error, -EBADMSG, "%s%s: %s", "", "state", "expected string");
        State st = state_from_string(json_object_get_string(v));
        if (st < 0 || (size_t) json_object_get_string_len(v) != strlen(json_object_get_string(v)))
                return error_set(ret_error, -EBADMSG, "%s%s: %s", "", "state", "unknown state name");
        s->state = st;

        r = parse_opt_usec(root, "since", &s->since, "", ret_error);
        if (r < 0)
                return r;

        r = parse_opt_string(root, "reason", &s->reason, "", ret_error);
        if (r < 0)
                return r;

        r = parse_opt_bool(root, "maintenance", &s->maintenance, ret_error);
        if (r < 0)
                return r;
        r = parse_opt_string(root, "maintenance_reason", &s->maintenance_reason, "", ret_error);
        if (r < 0)
                return r;
        r = parse_opt_bool(root, "held", &s->held, ret_error);
        if (r < 0)
                return r;
        r = parse_opt_string(root, "last_checks", &s->last_checks, "", ret_error);
        if (r < 0)
                return r;
        r = parse_opt_string(root, "held_reason", &s->held_reason, "", ret_error);
        if (r < 0)
                return r;
        r = parse_opt_string(root, "standby_group", &s->standby_group, "", ret_error);
        if (r < 0)
                return r;

        v = get_field(root, "clock_anchor");
        if (v) {
                if (!json_object_is_type(v, json_type_object))
                        return error_set(ret_error, -EBADMSG, "%s%s: %s", "", "clock_anchor", "expected object or null");
                r = parse_opt_usec(v, "wall", &s->anchor_wall, "clock_anchor.", ret_error);
                if (r < 0)
                        return r;
                r = parse_opt_usec(v, "boottime", &s->anchor_boottime, "clock_anchor.", ret_error);
                if (r < 0)
                        return r;
        }

        v = get_field(root, "reboot_requested");
        if (v) {
                json_object *b;

                if (!json_object_is_type(v, json_type_object))
                        return error_set(ret_error, -EBADMSG, "%s%s: %s", "", "reboot_requested", "expected object or null");
                r = parse_opt_usec(v, "at", &s->reboot_requested.at, "reboot_requested.", ret_error);
                if (r < 0)
                        return r;
                r = parse_opt_usec(v, "boottime", &s->reboot_requested.boottime, "reboot_requested.", ret_error);
                if (r < 0)
                        return r;
                b = get_field(v, "boot_id");
                if (!b || !json_object_is_type(b, json_type_string) ||
                    !boot_id_valid(json_object_get_string(b), (size_t) json_object_get_string_len(b)))
                        return error_set(ret_error, -EBADMSG, "%s%s: %s", "reboot_requested.", "boot_id",
                                           "expected 36 characters of hex and dashes");
                memcpy(s->reboot_requested.boot_id, json_object_get_string(b), BOOT_ID_LEN + 1);
        }

        v = get_field(root, "remediations");
        if (v) {
                if (!json_object_is_type(v, json_type_array))
                        return error_set(ret_error, -EBADMSG, "%s%s: %s", "", "remediations", "expected array");
                size_t n = json_object_array_length(v);
                for (size_t i = 0; i < n; i++) {
                        usec_t t;

                        if (parse_usec(json_object_array_get_idx(v, i), &t) < 0)
                                return error_set(ret_error, -EBADMSG, "%s%s: %s", "", "remediations",
                                                   "expected array of non-negative integers (usec)");
                        remediations_insert(s->remediations, &s->n_remediations, t);
                }
        }

        v = get_field(root, "incident");
        if (v) {
                if (!json_object_is_type(v, json_type_object))
                        return error_set(ret_error, -EBADMSG, "%s%s: %s", "", "incident", "expected object or null");
                r = parse_incident(v, &s->incident, ret_error);
                if (r < 0)
                        return r;
        }

        return 0;
}

static bool is_json_space(char c) {
        return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

int state_parse(const char *buf, size_t len, PersistentState *ret, char **ret_error) {
        _cleanup_(json_tokener_freep) json_tokener *tok = NULL;
        _cleanup_(json_object_putp) json_object *root = NULL;
        PersistentState s;
        int r;

        if ((!buf && len > 0) || !ret)
                return -EINVAL;
        if (len > INT_MAX)
                return error_set(ret_error, -EBADMSG, "%s%s: %s", "", "(document)", "too large");
        if (len == 0)
                return error_set(ret_error, -EBADMSG, "%s%s: %s", "", "(document)", "empty");

        tok = json_tokener_new();
        if (!tok)
                return -ENOMEM;
        /* Strict: no comments, single quotes, or trailing text after the value. */
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT);

        root = json_tokener_parse_ex(tok, buf, (int) len);
        enum json_tokener_error jerr = json_tokener_get_error(tok);
        if (!root) {
                if (jerr == json_tokener_continue)
                        return error_set(ret_error, -EBADMSG, "%s%s: %s", "", "(document)", "truncated JSON");
                return error_set(ret_error, -EBADMSG, "%s%s: %s", "", "(document)", json_tokener_error_desc(jerr));
        }
        if (jerr != json_tokener_success)
                return error_set(ret_error, -EBADMSG, "%s%s: %s", "", "(document)", json_tokener_error_desc(jerr));

        /* A NUL inside the buffer can end the parse early; what remains
         * must be whitespace, or the file is not one JSON value. */
        for (size_t i = json_tokener_get_parse_end(tok); i < len; i++)
                if (!is_json_space(buf[i]))
                        return error_set(ret_error, -EBADMSG, "%s%s: %s", "", "(document)", "trailing garbage after JSON");

        persistent_state_init(&s);
        r = parse_object(root, &s, ret_error);
        if (r < 0) {
                persistent_state_done(&s);
                return r;
        }

        *ret = s;
        return 0;
}

static int json_add(json_object *obj, const char *key, json_object *v) {
        if (!v)
                return -ENOMEM;
        if (json_object_object_add(obj, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

/* json-c's new_string(NULL) is not null: map NULL to a JSON null here. */
static int json_add_string(json_object *obj, const char *key, const char *s) {
        if (!s)
                return json_object_object_add(obj, key, NULL) < 0 ? -ENOMEM : 0;
        return json_add(obj, key, json_object_new_string(s));
}

static bool incident_is_empty(const Incident *i) {
        return !i->id && i->started == 0 && i->left_pool == 0 && i->ended == 0 &&
               !i->reason && !i->slack_thread && !i->outcome;
}

static int format_incident(const Incident *i, json_object **ret) {
        _cleanup_(json_object_putp) json_object *o = json_object_new_object();
        int r;

        if (!o)
                return -ENOMEM;
        if ((r = json_add_string(o, "id", i->id)) < 0 ||
            (r = json_add(o, "started", json_object_new_uint64(i->started))) < 0 ||
            (r = json_add(o, "left_pool", json_object_new_uint64(i->left_pool))) < 0 ||
            (r = json_add(o, "ended", json_object_new_uint64(i->ended))) < 0 ||
            (r = json_add_string(o, "reason", i->reason)) < 0 ||
            (r = json_add_string(o, "slack_thread", i->slack_thread)) < 0 ||
            (r = json_add_string(o, "outcome", i->outcome)) < 0)
                return r;
        if (i->n_steps > 0) {
                json_object *arr = json_object_new_array();
                if ((r = json_add(o, "steps", arr)) < 0)
                        return r;
                for (size_t k = 0; k < i->n_steps; k++) {
                        json_object *e = json_object_new_object();
                        if (!e || json_object_array_add(arr, e) < 0) {
                                json_object_put(e);
                                return -ENOMEM;
                        }
                        if ((r = json_add_string(e, "step", i->steps[k].step)) < 0 ||
                            (r = json_add(e, "at", json_object_new_uint64(i->steps[k].at))) < 0 ||
                            (r = json_add_string(e, "result", i->steps[k].result)) < 0)
                                return r;
                        /* only while true: files without it read as false */
                        if (i->steps[k].awaiting_reboot &&
                            (r = json_add(e, "awaiting_reboot", json_object_new_boolean(true))) < 0)
                                return r;
                }
        }

        *ret = TAKE_PTR(o);
        return 0;
}

int state_format(const PersistentState *s, char **ret) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        json_object *rem, *inc = NULL;
        const char *text;
        char *out;
        int r;

        if (!s || !ret)
                return -EINVAL;
        /* Refuse to write what state_parse would refuse to read back. */
        if (!state_to_string(s->state) || s->n_remediations > STATE_REMEDIATIONS_MAX)
                return -EINVAL;
        size_t blen = strnlen(s->boot_id, sizeof(s->boot_id));
        if (blen == sizeof(s->boot_id) || (blen != 0 && !boot_id_valid(s->boot_id, blen)))
                return -EINVAL;

        o = json_object_new_object();
        if (!o)
                return -ENOMEM;

        if ((r = json_add(o, "version", json_object_new_int(STATE_FILE_VERSION))) < 0 ||
            (r = json_add_string(o, "boot_id", s->boot_id)) < 0 ||
            (r = json_add_string(o, "state", state_to_string(s->state))) < 0 ||
            (r = json_add(o, "since", json_object_new_uint64(s->since))) < 0 ||
            (r = json_add_string(o, "reason", s->reason)) < 0 ||
            (r = json_add(o, "maintenance", json_object_new_boolean(s->maintenance))) < 0 ||
            (r = json_add_string(o, "maintenance_reason", s->maintenance_reason)) < 0 ||
            (r = json_add(o, "held", json_object_new_boolean(s->held))) < 0 ||
            (r = json_add_string(o, "held_reason", s->held_reason)) < 0 ||
            (r = json_add_string(o, "last_checks", s->last_checks)) < 0 ||
            (r = json_add_string(o, "standby_group", s->standby_group)) < 0)
                return r;

        if (s->anchor_wall != 0) {
                json_object *a = json_object_new_object();
                if ((r = json_add(o, "clock_anchor", a)) < 0 ||
                    (r = json_add(a, "wall", json_object_new_uint64(s->anchor_wall))) < 0 ||
                    (r = json_add(a, "boottime", json_object_new_uint64(s->anchor_boottime))) < 0)
                        return r;
        }

        if (s->reboot_requested.at != 0) {
                json_object *q = json_object_new_object();
                if (!boot_id_valid(s->reboot_requested.boot_id, strnlen(s->reboot_requested.boot_id,
                                                                        sizeof s->reboot_requested.boot_id)))
                        return -EINVAL;
                if ((r = json_add(o, "reboot_requested", q)) < 0 ||
                    (r = json_add(q, "at", json_object_new_uint64(s->reboot_requested.at))) < 0 ||
                    (r = json_add(q, "boottime", json_object_new_uint64(s->reboot_requested.boottime))) < 0 ||
                    (r = json_add_string(q, "boot_id", s->reboot_requested.boot_id)) < 0)
                        return r;
        }

        rem = json_object_new_array_ext((int) s->n_remediations);
        r = json_add(o, "remediations", rem);
        if (r < 0)
                return r;
        for (size_t i = 0; i < s->n_remediations; i++) {
                json_object *t = json_object_new_uint64(s->remediations[i]);

                if (!t)
                        return -ENOMEM;
                if (json_object_array_add(rem, t) < 0) {
                        json_object_put(t);
                        return -ENOMEM;
                }
        }

        if (!incident_is_empty(&s->incident)) {
                r = format_incident(&s->incident, &inc);
                if (r < 0)
                        return r;
                r = json_add(o, "incident", inc);
        } else
                r = json_object_object_add(o, "incident", NULL) < 0 ? -ENOMEM : 0;
        if (r < 0)
                return r;

        text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
                                                 JSON_C_TO_STRING_NOSLASHESCAPE);
        if (!text)
                return -ENOMEM;
        if (asprintf(&out, "%s\n", text) < 0)
                return -ENOMEM;

        *ret = out;
        return 0;
}

/* Rename without replacing: two corrupt files in one second both survive. */
static int rename_noreplace(const char *from, const char *to) {
        if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) >= 0)
                return 0;
        if (errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
                return negative_errno();

        /* Filesystems without RENAME_NOREPLACE: check, then rename. The
         * state dir is ours alone, so the race does not matter. */
        if (access(to, F_OK) >= 0)
                return -EEXIST;
        if (errno != ENOENT)
                return negative_errno();
        if (rename(from, to) < 0)
                return negative_errno();
        return 0;
}

static int move_aside(const char *path, char **ret) {
        long long now = (long long) time(NULL);

        for (unsigned n = 0; n < STATE_CORRUPT_NAME_TRIES; n++) {
                _cleanup_(freep) char *target = NULL;
                int r;

                if (n == 0)
                        r = asprintf(&target, "%s.corrupt-%lld", path, now);
                else
                        r = asprintf(&target, "%s.corrupt-%lld-%u", path, now, n);
                if (r < 0)
                        return -ENOMEM;

                r = rename_noreplace(path, target);
                if (r == -EEXIST)
                        continue;
                if (r < 0)
                        return r;

                *ret = TAKE_PTR(target);
                return 0;
        }

        return -EEXIST;
}

/* A write cut short (SIGKILL, power loss between the temp file and the
 * rename) leaves a temp file of the atomic writer behind (state.json's,
 * history.jsonl's: write_file_atomic_is_temp() knows their names); nothing
 * else will ever remove it, and each crash would add one. The state dir is
 * ours alone, so at load no write of ours is in progress. */
int state_remove_stale_temps(const char *state_dir) {
        _cleanup_(closep) int fd = -1;
        struct dirent *de;
        int n = 0;
        DIR *d;

        fd = open(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 || !(d = fdopendir(fd)))
                return 0;
        TAKE_FD(fd);
        while ((de = readdir(d)))
                if (write_file_atomic_is_temp(de->d_name) && unlinkat(dirfd(d), de->d_name, 0) >= 0)
                        n++;
        closedir(d);
        return n;
}

/* why: what was wrong with the file, for the caller's one message. */
static void set_why(char **ret_why, const char *why) {
        if (ret_why)
                *ret_why = why ? strdup(why) : NULL;
}

int state_load(const char *state_dir, PersistentState *ret, char **ret_moved_aside, char **ret_why) {
        _cleanup_(freep) char *path = NULL, *buf = NULL, *error = NULL, *moved = NULL;
        _cleanup_(closep) int fd = -1;
        PersistentState s;
        struct stat st;
        size_t len = 0;
        int r;

        if (!state_dir || !ret)
                return -EINVAL;

        if (asprintf(&path, "%s/" STATE_FILE_NAME, state_dir) < 0)
                return -ENOMEM;

        /* O_NONBLOCK: a FIFO planted here must not hang the start-up. */
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0) {
                if (errno != ENOENT)
                        return negative_errno();
                persistent_state_init(ret);
                if (ret_moved_aside)
                        *ret_moved_aside = NULL;
                return 0;
        }

        if (fstat(fd, &st) < 0)
                return negative_errno();
        if (!S_ISREG(st.st_mode)) {
                set_why(ret_why, "not a regular file");
                return S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
        }

        r = read_full_fd(fd, STATE_FILE_MAX, &buf, &len);
        if (r == -EFBIG)
                len = STATE_FILE_MAX + 1; /* for the message below */
        else if (r < 0)
                return r;
        else
                r = state_parse(buf, len, &s, &error);
        if (r >= 0) {
                *ret = s;
                if (ret_moved_aside)
                        *ret_moved_aside = NULL;
                return 0;
        }
        if (r != -EBADMSG && r != -EFBIG)
                return r;

        set_why(ret_why, len > STATE_FILE_MAX ? "larger than 1 MiB" : strna(error));
        r = move_aside(path, &moved);
        if (r < 0)
                return r;

        persistent_state_init(ret);
        if (ret_moved_aside)
                *ret_moved_aside = TAKE_PTR(moved);
        return 0;
}

int state_save(const char *state_dir, const PersistentState *s) {
        _cleanup_(freep) char *text = NULL;
        _cleanup_(closep) int dfd = -1;
        int r;

        if (!state_dir || !s)
                return -EINVAL;

        /* Format before touching the disk: nothing to undo if it fails. */
        r = state_format(s, &text);
        if (r < 0)
                return r;

        dfd = open(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return negative_errno();
        return write_file_atomic_at(dfd, STATE_FILE_NAME, text, strlen(text));
}

int state_save_queued(Writer *w, const char *state_dir, const PersistentState *s, const WriterDone *done,
                      size_t n_done) {
        _cleanup_(freep) char *text = NULL;
        int r;

        if (!state_dir || !s)
                return -EINVAL;
        /* formatted now: the thread writes this moment's state, not a later one */
        r = state_format(s, &text);
        if (r < 0)
                return r;
        return writer_save(w, state_dir, STATE_FILE_NAME, text, strlen(text), done, n_done);
}

int boot_id_read(const char *path, char ret[BOOT_ID_LEN + 1]) {
        _cleanup_(freep) char *buf = NULL;
        size_t len;
        int r;

        if (!path || !ret)
                return -EINVAL;

        /* "<id>\n" at most: a longer file is not a boot id. */
        r = read_full_file(path, BOOT_ID_LEN + 1, &buf, &len);
        if (r == -EFBIG)
                return -EBADMSG;
        if (r < 0)
                return r;

        if (len == BOOT_ID_LEN + 1) {
                if (buf[BOOT_ID_LEN] != '\n')
                        return -EBADMSG;
                len--;
        }
        if (!boot_id_valid(buf, len))
                return -EBADMSG;

        memcpy(ret, buf, BOOT_ID_LEN);
        ret[BOOT_ID_LEN] = '\0';
        return 0;
}
