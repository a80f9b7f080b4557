/* Incident evidence, the agent's side: see capture.h. */
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>

#include "capture.h"
#include "fileio.h"
#include "incidents.h"
#include "jsonutil.h"
#include "log.h"
#include "parse.h"
#include "profile.h"

#define SUMMARY_VERSION 1
#define SUMMARY_MAX (1024 * 1024)

struct Capture {
        sd_event *event;
        Config *config;                 /* a reference: capture_set_config() */
        Writer *writer;
        char *self_exe;                 /* for the profile worker, NULL: no profiles */
        const CaptureSink *sink;
        void *userdata;

        CpuSample cpu_hot_start;        /* /proc/stat at the start of the hot run */
        bool cpu_hot_have;
        json_object *evidence_summary;  /* summary.json of evidence_incident */
        char *evidence_incident;
        int evidence_error;             /* the last write's, 0 when it worked */
        struct Profile *profile;        /* the profile worker, NULL when none runs */
        char *profile_incident;
        char *profile_last_state;       /* "done", "skipped", "failed" */
        bool drain_waiting;             /* the drain is over; the remediation waits for the profile */
};

int capture_new(sd_event *e, Config *c, Writer *w, const char *self_exe, const CaptureSink *sink, void *userdata,
                Capture **ret) {
        Capture *a = calloc(1, sizeof *a);

        if (!a)
                return -ENOMEM;
        a->event = sd_event_ref(e);
        a->config = config_ref(c);
        a->writer = w;
        a->sink = sink;
        a->userdata = userdata;
        if (self_exe && !(a->self_exe = strdup(self_exe))) {
                capture_free(a);
                return -ENOMEM;
        }
        *ret = a;
        return 0;
}

Capture *capture_free(Capture *a) {
        if (!a)
                return NULL;
        a->profile = profile_free(a->profile);
        json_object_put(a->evidence_summary);
        free(a->evidence_incident);
        free(a->profile_incident);
        free(a->profile_last_state);
        free(a->self_exe);
        config_free(a->config);
        sd_event_unref(a->event);
        free(a);
        return NULL;
}

void capture_set_config(Capture *a, Config *c) {
        config_replace(&a->config, c);
}

void capture_on_sample(Capture *a, bool hot, const CpuSample *interval_start) {
        if (hot && !a->cpu_hot_have) {
                a->cpu_hot_start = *interval_start;
                a->cpu_hot_have = true;
        } else if (!hot)
                a->cpu_hot_have = false;
}

/* Small /proc files (loadavg, PSI): a cap, never fatal. */
#define PROC_SMALL_MAX ((size_t) 64 * 1024)

static json_object *cpu_window_json(Capture *a, const CpuSample *counters, CpuUsage *ret_usage, bool *ret_have) {
        CpuInterval iv;
        CpuUsage u;
        json_object *o;

        *ret_have = false;
        if (!a->cpu_hot_have || cpu_interval_between(&a->cpu_hot_start, counters, 0, &iv) < 0)
                return NULL;
        cpu_interval_usage(&iv, &u);
        o = json_object_new_object();
        if (!o)
                return NULL;
        json_object_object_add(o, "busy_pct", json_new_rounded((u.busy), 1));
        json_object_object_add(o, "user_pct", json_new_rounded(u.user, 1));
        json_object_object_add(o, "system_pct", json_new_rounded(u.system, 1));
        json_object_object_add(o, "irq_pct", json_new_rounded(u.irq, 1));
        json_object_object_add(o, "iowait_pct", json_new_rounded(u.iowait, 1));
        json_object_object_add(o, "steal_pct", json_new_rounded(u.steal, 1));
        json_object_object_add(o, "idle_pct", json_new_rounded(u.idle, 1));
        *ret_usage = u;
        *ret_have = true;
        return o;
}

static json_object *psi_line_json(const PsiLine *l) {
        json_object *o = json_object_new_object();

        if (!o)
                return NULL;
        json_object_object_add(o, "avg10", json_new_rounded(l->avg10, 2));
        json_object_object_add(o, "avg60", json_new_rounded(l->avg60, 2));
        json_object_object_add(o, "avg300", json_new_rounded(l->avg300, 2));
        json_object_object_add(o, "total_usec", json_object_new_uint64(l->total_usec));
        return o;
}

static json_object *profile_state_json(Capture *a, const char *state, const char *reason) {
        json_object *o = json_object_new_object();

        if (!o)
                return NULL;
        json_object_object_add(o, "state", json_object_new_string(state));
        if (reason)
                json_object_object_add(o, "reason", json_object_new_string(reason));
        if (a->config->evidence.profile > 0) {
                json_object_object_add(o, "seconds",
                                       json_new_rounded((double) a->config->evidence.profile / USEC_PER_SEC, 3));
                json_object_object_add(o, "frequency", json_object_new_uint64(a->config->evidence.frequency));
        }
        return o;
}

/* The summary's write ended (the writer thread ran it). */
static void on_summary_written(void *userdata, uint64_t cookie, int error) {
        Capture *a = userdata;

        if (error < 0) {
                log_warning_errno(error, "evidence: cannot write %s/incidents/%s/" INCIDENT_SUMMARY ": %m",
                                  a->config->agent.state_dir, strna(a->evidence_incident));
                a->evidence_error = error;
                return;
        }
        log_info("evidence: %s/incidents/%s/" INCIDENT_SUMMARY " written", a->config->agent.state_dir,
                 strna(a->evidence_incident));
        a->evidence_error = 0;
}

/* Queued on the writer, off the loop: the alert spooled after it and the
 * remediation that waits for that alert both come after it on disk. */
static int summary_save(Capture *a) {
        const char *text;
        int r;

        if (!a->evidence_summary || !a->evidence_incident)
                return -EINVAL;
        text = json_object_to_json_string_ext(a->evidence_summary, JSON_C_TO_STRING_PRETTY |
                                                                           JSON_C_TO_STRING_NOSLASHESCAPE);
        if (!text)
                return -ENOMEM;
        r = incident_write_queued(a->writer, a->config->agent.state_dir, a->evidence_incident, INCIDENT_SUMMARY, text,
                                  strlen(text), &(WriterDone) { on_summary_written, a, 0 });
        if (r < 0)
                on_summary_written(a, 0, r);
        return r;
}

static void prune(Capture *a) {
        size_t removed = 0;
        int r;

        r = incidents_prune(a->config->agent.state_dir, a->config->evidence.keep, a->config->evidence.max_bytes,
                            a->evidence_incident, &removed);
        if (r < 0)
                log_warning_errno(r, "evidence: cannot remove old incidents from %s/incidents: %m, ignoring",
                                  a->config->agent.state_dir);
        if (removed > 0)
                log_info("evidence: removed %zu old incident(s) ([evidence] keep = %u, max_bytes = %zu)", removed,
                         a->config->evidence.keep, a->config->evidence.max_bytes);
}

/* The hottest stacks as lines for Slack: "41.2%  comm;...;leaf", the
 * middle of a long stack cut so root and leaf both show. */
static char *top_stacks_text(json_object *top) {
        _cleanup_(freep) char *s = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&s, &len);

        if (!f)
                return NULL;
        for (size_t i = 0; i < json_object_array_length(top); i++) {
                json_object *o = json_object_array_get_idx(top, i), *v;
                const char *stack = json_object_object_get_ex(o, "stack", &v) ? json_object_get_string(v) : "";
                double pct = json_object_object_get_ex(o, "pct", &v) ? json_object_get_double(v) : 0;
                size_t n = strlen(stack);

                if (n > 240) {
                        const char *root_end = memchr(stack, ';', 100), *leaf = stack + n - 130;
                        size_t root = root_end ? (size_t) (root_end - stack) : 100;
                        const char *semi = memchr(leaf, ';', (size_t) (stack + n - leaf));
                        if (semi)
                                leaf = semi + 1;
                        fprintf(f, "%5.1f%%  %.*s;…;%s\n", pct, (int) root, stack, leaf);
                } else
                        fprintf(f, "%5.1f%%  %s\n", pct, stack);
        }
        if (fclose(f) != 0)
                return NULL;
        if (len > 0 && s[len - 1] == '\n')
                s[len - 1] = '\0';
        return TAKE_PTR(s);
}

static void on_profile_done(Profile *p, json_object *result, const char *error, void *userdata) {
        Capture *a = userdata;
        _cleanup_(freep) char *text = NULL, *detail = NULL, *dir = NULL;
        const char *state = "failed", *reason = error;
        json_object *v, *prof;
        bool same = a->evidence_summary && streq_ptr(a->evidence_incident, a->profile_incident);

        if (result && json_object_object_get_ex(result, "state", &v) && json_object_is_type(v, json_type_string))
                state = json_object_get_string(v);
        if (result && json_object_object_get_ex(result, "reason", &v) && json_object_is_type(v, json_type_string))
                reason = json_object_get_string(v);
        (void) incident_dir_path(a->config->agent.state_dir, a->profile_incident, &dir);

        if (streq(state, "done")) {
                uint64_t samples = json_object_object_get_ex(result, "folded", &v) ? json_object_get_uint64(v) : 0;
                uint64_t idle = json_object_object_get_ex(result, "idle", &v) ? json_object_get_uint64(v) : 0;
                log_info("evidence: profile of incident %s: %" PRIu64 " samples (%" PRIu64 " idle left out), "
                         "flame graph in %s/" INCIDENT_FLAME,
                         a->profile_incident, samples, idle, strna(dir));
                if (asprintf(&text,
                             "CPU profile: %" PRIu64 " samples over %.0f s on every CPU (%" PRIu64
                             " idle left out). The five hottest stacks are below; the flame graph is %s/" INCIDENT_FLAME
                             " (`monkeyctl incident %s`).",
                             samples, (double) a->config->evidence.profile / USEC_PER_SEC, idle, strna(dir),
                             a->profile_incident) < 0)
                        text = NULL;
                if (json_object_object_get_ex(result, "top_stacks", &v) && json_object_is_type(v, json_type_array))
                        detail = top_stacks_text(v);
        } else {
                log_warning("evidence: no profile of incident %s (%s): %s", a->profile_incident, state, strna(reason));
                if (asprintf(&text, "No CPU profile (%s): %s", state, strna(reason)) < 0)
                        text = NULL;
        }
        if (same) {
                prof = result ? json_object_get(result) : profile_state_json(a, "failed", error);
                json_object_object_add(a->evidence_summary, "profile", prof);
                (void) summary_save(a);
        }
        if (text)
                a->sink->profile(a->userdata, a->profile_incident, text, detail);
        free(a->profile_last_state);
        a->profile_last_state = strdup(state);
        prune(a);
        a->profile = profile_free(a->profile);
        if (a->drain_waiting) {
                a->drain_waiting = false;
                a->sink->drain_released(a->userdata);
        }
        (void) p;
}

static void profile_begin(Capture *a, const char *dir) {
        _cleanup_(freep) char *title = NULL;
        ProfileRequest req = {
                .self_exe = a->self_exe,
                .dir = dir,
                .perf = a->config->evidence.perf,
                .duration = a->config->evidence.profile,
                .frequency = a->config->evidence.frequency,
        };
        const char *reason = NULL;
        char buf[200];
        int r;

        if (a->profile) {
                snprintf(buf, sizeof buf, "the profile of incident %s is still running", strna(a->profile_incident));
                reason = buf;
        } else if (!a->self_exe) {
                reason = "the agent's own binary is unknown (/proc/self/exe)";
        } else {
                if (asprintf(&title, "%s: CPU profile of incident %s", a->config->agent.host, a->evidence_incident) < 0)
                        title = NULL;
                req.title = title;
                r = profile_start(a->event, &req, on_profile_done, a, &a->profile);
                if (r < 0) {
                        snprintf(buf, sizeof buf, "cannot start the profile worker: %s", strerror(-r));
                        reason = buf;
                } else {
                        free(a->profile_incident);
                        a->profile_incident = strdup(a->evidence_incident);
                        log_info("evidence: profiling the whole system for %.1f s (perf record -F %u -a -g) into %s",
                                 (double) req.duration / USEC_PER_SEC, req.frequency, dir);
                }
        }
        json_object_object_add(a->evidence_summary, "profile",
                               profile_state_json(a, reason ? "skipped" : "running", reason));
        if (reason)
                log_warning("evidence: no profile: %s", reason);
}

void capture_breach(Capture *a, const CaptureBreach *i, char **ret_pressure) {
        const Config *c = a->config;
        _cleanup_(json_object_putp) json_object *s = NULL, *top = i->top;
        _cleanup_(freep) char *dir = NULL, *buf = NULL, *line = NULL;
        char loadtxt[96] = "", psitxt[64] = "", stealtxt[48] = "";
        json_object *cpu;
        CpuUsage u;
        bool have_u;
        size_t len;
        LoadAvg l;
        Psi psi;
        int r;

        *ret_pressure = NULL;
        if (!i->id || !incident_id_valid(i->id))
                return;
        if (streq_ptr(a->evidence_incident, i->id) && a->evidence_summary)
                return; /* one summary per incident, even across HOLDING re-asks */

        s = json_object_new_object();
        if (!s)
                return;
        json_object_object_add(s, "version", json_object_new_int(SUMMARY_VERSION));
        json_object_object_add(s, "id", json_object_new_string(i->id));
        json_object_object_add(s, "host", json_object_new_string(c->agent.host));
        json_object_object_add(s, "started", json_object_new_string(strna(i->started)));
        json_object_object_add(s, "reason", i->reason ? json_object_new_string(i->reason) : NULL);
        json_object_object_add(s, "threshold_pct", json_new_rounded(c->cpu.threshold, 1));
        json_object_object_add(s, "window_sec", json_new_rounded((double) c->cpu.window / USEC_PER_SEC, 3));
        json_object_object_add(s, "cpus", json_object_new_int64(sysconf(_SC_NPROCESSORS_ONLN)));
        cpu = cpu_window_json(a, i->counters, &u, &have_u);
        json_object_object_add(s, "cpu_window", cpu);
        if (have_u)
                snprintf(stealtxt, sizeof stealtxt, "steal %.1f%%, iowait %.1f%%", u.steal, u.iowait);

        if (read_full_file("/proc/loadavg", PROC_SMALL_MAX, &buf, &len) >= 0 && loadavg_parse(buf, len, &l) >= 0) {
                json_object *o = json_object_new_object();
                if (o) {
                        json_object_object_add(o, "1m", json_new_rounded(l.avg1, 2));
                        json_object_object_add(o, "5m", json_new_rounded(l.avg5, 2));
                        json_object_object_add(o, "15m", json_new_rounded(l.avg15, 2));
                        json_object_object_add(o, "runnable", json_object_new_uint64(l.running));
                        json_object_object_add(o, "tasks", json_object_new_uint64(l.total));
                }
                json_object_object_add(s, "loadavg", o);
                snprintf(loadtxt, sizeof loadtxt, "load %.2f %.2f %.2f (%" PRIu64 " runnable)", l.avg1, l.avg5,
                         l.avg15, l.running);
        } else
                json_object_object_add(s, "loadavg", NULL);
        free(buf);
        buf = NULL;

        r = read_full_file("/proc/pressure/cpu", PROC_SMALL_MAX, &buf, &len);
        if (r >= 0 && psi_parse(buf, len, &psi) >= 0) {
                json_object *o = json_object_new_object();
                if (o) {
                        json_object_object_add(o, "some", psi_line_json(&psi.some));
                        if (psi.has_full)
                                json_object_object_add(o, "full", psi_line_json(&psi.full));
                }
                json_object_object_add(s, "psi", o);
                snprintf(psitxt, sizeof psitxt, "CPU pressure %.1f%% (some, 10 s)", psi.some.avg10);
        } else {
                json_object *o = json_object_new_object();
                if (o)
                        json_object_object_add(o, "unavailable",
                                               json_object_new_string(r < 0 ? strerror(-r) : "unreadable"));
                json_object_object_add(s, "psi", o);
        }

        json_object_object_add(s, "top", TAKE_PTR(top));
        json_object_object_add(s, "top_since_start", json_object_new_boolean(i->top_since_start));

        json_object_put(a->evidence_summary);
        a->evidence_summary = TAKE_PTR(s);
        free(a->evidence_incident);
        a->evidence_incident = strdup(i->id);
        if (!a->evidence_incident)
                return;

        r = incident_dir_make(c->agent.state_dir, a->evidence_incident, &dir);
        if (r < 0) {
                log_warning_errno(r, "evidence: cannot create %s/incidents/%s: %m", c->agent.state_dir,
                                  a->evidence_incident);
                a->evidence_error = r;
                return;
        }
        if (c->evidence.profile > 0)
                profile_begin(a, dir);
        else
                json_object_object_add(a->evidence_summary, "profile", profile_state_json(a, "off", NULL));
        (void) summary_save(a);
        prune(a);

        if (asprintf(&line, "%s%s%s%s%s", loadtxt, *loadtxt && *psitxt ? " · " : "", psitxt,
                     (*loadtxt || *psitxt) && *stealtxt ? " · " : "", stealtxt) >= 0 && *line)
                *ret_pressure = TAKE_PTR(line);
}

char *capture_breach_line(Capture *a, const char *incident) {
        char *line = NULL;

        if (!a->evidence_incident || !streq_ptr(a->evidence_incident, incident))
                return NULL;
        if (asprintf(&line, "`monkeyctl incident %s`%s", incident,
                     profile_running(a->profile) ? "; a CPU profile is being taken, its hottest stacks follow in this thread"
                                                 : "") < 0)
                return NULL;
        return line;
}

bool capture_hold_drain(Capture *a) {
        if (!profile_running(a->profile))
                return false;
        if (!a->drain_waiting)
                log_info("evidence: the remediation waits for the profile of incident %s", a->profile_incident);
        a->drain_waiting = true;
        return true;
}

json_object *capture_status_json(Capture *a) {
        json_object *o = json_object_new_object();
        char d[32];

        if (!o)
                return NULL;
        json_object_object_add(o, "last_incident",
                               a->evidence_incident ? json_object_new_string(a->evidence_incident) : NULL);
        json_object_object_add(o, "profile", json_object_new_string(a->config->evidence.profile > 0
                                                                         ? format_duration(d, sizeof d, a->config->evidence.profile)
                                                                         : "off"));
        json_object_object_add(o, "profiling", json_object_new_boolean(profile_running(a->profile)));
        if (a->profile_last_state)
                json_object_object_add(o, "last_profile", json_object_new_string(a->profile_last_state));
        json_object_object_add(o, "keep", json_object_new_uint64(a->config->evidence.keep));
        json_object_object_add(o, "max_bytes", json_object_new_uint64(a->config->evidence.max_bytes));
        if (a->evidence_error < 0)
                json_object_object_add(o, "error", json_object_new_string(strerror(-a->evidence_error)));
        return o;
}

/* The summary as the disk has it, its profile state made current: a
 * profile this agent no longer runs ended with the agent or the boot. */
static json_object *summary_load(Capture *a, const char *id, char **ret_message) {
        _cleanup_(freep) char *s = NULL;
        json_object *o, *p, *v;
        size_t len;
        int r;

        r = incident_read(a->config->agent.state_dir, id, INCIDENT_SUMMARY, SUMMARY_MAX, &s, &len);
        if (r < 0) {
                if (asprintf(ret_message, "incident %s: %s", id,
                             r == -ENOENT ? "no such incident (see monkeyctl incidents)" : strerror(-r)) < 0)
                        *ret_message = NULL;
                return NULL;
        }
        o = json_tokener_parse(s);
        if (!o || !json_object_is_type(o, json_type_object)) {
                json_object_put(o);
                if (asprintf(ret_message, "incident %s: " INCIDENT_SUMMARY " is not a JSON object", id) < 0)
                        *ret_message = NULL;
                return NULL;
        }
        if (json_object_object_get_ex(o, "profile", &p) && json_object_object_get_ex(p, "state", &v) &&
            streq_ptr(json_object_get_string(v), "running") &&
            !(profile_running(a->profile) && streq_ptr(a->profile_incident, id))) {
                _cleanup_(freep) char *res = NULL;
                json_object *ro = NULL;

                if (incident_read(a->config->agent.state_dir, id, PROFILE_RESULT, SUMMARY_MAX, &res, &len) >= 0)
                        ro = json_tokener_parse(res);
                if (ro && json_object_is_type(ro, json_type_object))
                        json_object_object_add(o, "profile", ro);
                else {
                        json_object_put(ro);
                        json_object_object_add(p, "state", json_object_new_string("interrupted"));
                        json_object_object_add(p, "reason",
                                               json_object_new_string("the agent stopped before the profile ended"));
                }
        }
        return o;
}

json_object *capture_incidents_json(Capture *a, char **ret_message) {
        _cleanup_(freep) IncidentEntry *e = NULL;
        _cleanup_(json_object_putp) json_object *o = NULL;
        _cleanup_(freep) char *top = NULL;
        json_object *arr;
        uint64_t total = 0;
        size_t n;
        int r;

        r = incidents_list(a->config->agent.state_dir, &e, &n);
        if (r < 0) {
                if (asprintf(ret_message, "%s/incidents: %s", a->config->agent.state_dir, strerror(-r)) < 0)
                        *ret_message = NULL;
                return NULL;
        }
        o = json_object_new_object();
        arr = json_object_new_array();
        if (!o || !arr || asprintf(&top, "%s/incidents", a->config->agent.state_dir) < 0) {
                json_object_put(arr);
                return NULL;
        }
        json_object_object_add(o, "dir", json_object_new_string(top));
        json_object_object_add(o, "incidents", arr);
        /* newest first, as people read them */
        for (size_t k = n; k-- > 0;) {
                _cleanup_(json_object_putp) json_object *s = NULL;
                _cleanup_(freep) char *msg = NULL;
                json_object *row = json_object_new_object(), *v, *p;

                if (!row)
                        break;
                total += e[k].bytes;
                json_object_object_add(row, "id", json_object_new_string(e[k].id));
                json_object_object_add(row, "bytes", json_object_new_uint64(e[k].bytes));
                s = summary_load(a, e[k].id, &msg);
                if (s) {
                        static const char *const keys[] = { "started", "reason" };
                        for (size_t j = 0; j < ELEMENTSOF(keys); j++)
                                if (json_object_object_get_ex(s, keys[j], &v))
                                        json_object_object_add(row, keys[j], json_object_get(v));
                        if (json_object_object_get_ex(s, "top", &v) && json_object_array_length(v) > 0 &&
                            json_object_object_get_ex(json_object_array_get_idx(v, 0), "command", &p))
                                json_object_object_add(row, "top_command", json_object_get(p));
                        if (json_object_object_get_ex(s, "profile", &p) && json_object_object_get_ex(p, "state", &v))
                                json_object_object_add(row, "profile", json_object_get(v));
                } else
                        json_object_object_add(row, "error", json_object_new_string(strna(msg)));
                json_object_array_add(arr, row);
        }
        json_object_object_add(o, "bytes", json_object_new_uint64(total));
        return TAKE_PTR(o);
}

json_object *capture_incident_json(Capture *a, const char *id, char **ret_message) {
        _cleanup_(freep) char *dir = NULL;
        json_object *o, *files;
        static const char *const names[] = { INCIDENT_SUMMARY, INCIDENT_FOLDED, INCIDENT_FLAME, PROFILE_LOG };

        if (!incident_id_valid(id)) {
                if (asprintf(ret_message, "not an incident id: ids are letters, digits, '.', '_' and '-' "
                                          "(see monkeyctl incidents)") < 0)
                        *ret_message = NULL;
                return NULL;
        }
        o = summary_load(a, id, ret_message);
        if (!o)
                return NULL;
        if (incident_dir_path(a->config->agent.state_dir, id, &dir) >= 0) {
                json_object_object_add(o, "dir", json_object_new_string(dir));
                files = json_object_new_array();
                for (size_t k = 0; files && k < ELEMENTSOF(names); k++) {
                        _cleanup_(freep) char *path = NULL;
                        if (asprintf(&path, "%s/%s", dir, names[k]) >= 0 && access(path, F_OK) == 0)
                                json_object_array_add(files, json_object_new_string(names[k]));
                }
                json_object_object_add(o, "files", files);
        }
        return o;
}
