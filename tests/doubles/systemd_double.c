/* Test double of systemd's and logind's D-Bus managers: owns
 * org.freedesktop.systemd1 and org.freedesktop.login1 on the bus named by
 * DBUS_SYSTEM_BUS_ADDRESS, answers RestartUnit/Subscribe/Unsubscribe and
 * Reboot/RebootWithFlags as the real services do (same signatures, error
 * names and messages, JobRemoved after the job "runs"), scripted from the
 * command line, and appends one JSON line per call to --log. For tests
 * only: a private dbus-daemon (tests/doubles/dbus_bus.py) stands in for the
 * system bus, since PID 1 is not systemd where the tests run. */

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "../../agent/base/macro.h"

#define SYSTEMD_NAME "org.freedesktop.systemd1"
#define SYSTEMD_PATH "/org/freedesktop/systemd1"
#define SYSTEMD_MANAGER SYSTEMD_NAME ".Manager"
#define LOGIN_NAME "org.freedesktop.login1"
#define LOGIN_PATH "/org/freedesktop/login1"
#define LOGIN_MANAGER LOGIN_NAME ".Manager"

#define ERROR_NO_SUCH_UNIT SYSTEMD_NAME ".NoSuchUnit"
#define ERROR_ALREADY_SUBSCRIBED SYSTEMD_NAME ".AlreadySubscribed"
#define ERROR_NOT_SUBSCRIBED SYSTEMD_NAME ".NotSubscribed"

/* logind 252 accepts these RebootWithFlags bits (SD_LOGIND_ROOT_CHECK_INHIBITORS,
 * SD_LOGIND_KEXEC_REBOOT); anything else is InvalidArgs there too. */
#define LOGIND_FLAGS_PUBLIC UINT64_C(3)

#define JOB_DELAY_DEFAULT (200 * USEC_PER_MSEC)

typedef struct Context Context;

typedef struct Job {
        Context *ctx;
        uint32_t id;
        char *path;
        char *unit;
        char *result;
        sd_event_source *timer;
        struct Job *prev, *next;
} Job;

struct Context {
        sd_event *event;
        sd_bus *bus;
        sd_bus_slot *systemd_slot;
        sd_bus_slot *login_slot;
        sd_bus_track *subscribed;

        char **units;
        char **job_results; /* consumed in order, then job_result */
        size_t n_job_results_used;
        const char *job_result;
        const char *fail_restart;
        const char *fail_reboot;
        usec_t job_delay;
        bool strict_subscribe;

        FILE *log;
        uint32_t last_job_id;
        unsigned n_reboots;
        Job *jobs;
};

static const char *const job_modes[] = {
        "replace", "fail", "isolate", "ignore-dependencies", "ignore-requirements", "replace-irreversibly",
};

/* systemd's JobResult strings: a scripted result outside this set would be
 * something no real client ever sees. */
static const char *const job_result_names[] = {
        "done", "canceled", "timeout", "failed", "dependency", "skipped",
        "invalid", "assert", "unsupported", "collected", "once",
};

static const char *const unit_suffixes[] = {
        "service", "socket", "target", "device", "mount", "automount",
        "swap", "timer", "path", "slice", "scope",
};

static bool in_list(const char *s, const char *const *list, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (streq(s, list[i]))
                        return true;
        return false;
}

static bool strv_contains(char *const *l, const char *s) {
        for (size_t i = 0; l && l[i]; i++)
                if (streq(l[i], s))
                        return true;
        return false;
}

static int strv_push_dup(char ***l, const char *s) {
        size_t n = strv_length(*l);
        _cleanup_(freep) char *d = strdup(s);
        char **nl;

        if (!d)
                return -ENOMEM;
        nl = realloc(*l, (n + 2) * sizeof(char *));
        if (!nl)
                return -ENOMEM;
        nl[n] = TAKE_PTR(d);
        nl[n + 1] = NULL;
        *l = nl;
        return 0;
}

/* A rough unit_name_is_valid(): "prefix.suffix" with a known suffix, the
 * check systemd makes before it even looks for the unit. */
static bool unit_name_valid(const char *name) {
        const char *dot = strrchr(name, '.');

        if (!dot || dot == name || strlen(name) > 255)
                return false;
        return in_list(dot + 1, unit_suffixes, ELEMENTSOF(unit_suffixes));
}

/* D-Bus error names follow interface-name rules; checking at start-up means
 * a typo in a test fails loudly instead of producing a garbled reply. */
static bool error_name_valid(const char *s) {
        size_t elements = 0;
        bool at_start = true;

        if (isempty(s) || strlen(s) > 255)
                return false;
        for (const char *p = s; *p; p++) {
                if (*p == '.') {
                        if (at_start)
                                return false;
                        at_start = true;
                        continue;
                }
                if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || *p == '_' ||
                      (!at_start && *p >= '0' && *p <= '9')))
                        return false;
                if (at_start)
                        elements++;
                at_start = false;
        }
        return !at_start && elements >= 2;
}

static void log_json_string(FILE *f, const char *s) {
        if (!s) {
                fputs("null", f);
                return;
        }
        fputc('"', f);
        for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
                if (*p == '"' || *p == '\\')
                        fprintf(f, "\\%c", *p);
                else if (*p < 0x20)
                        fprintf(f, "\\u%04x", *p);
                else
                        fputc(*p, f);
        }
        fputc('"', f);
}

/* One line per call, keys in pairs (const char *key, int kind, value),
 * ended by NULL. Flushed at once: tests read the file while we run. */
enum { V_STR, V_BOOL, V_U64 };

static void call_log(Context *ctx, const char *method, sd_bus_message *m, ...) {
        va_list ap;
        const char *key;

        if (!ctx->log)
                return;
        fputs("{\"method\":", ctx->log);
        log_json_string(ctx->log, method);
        va_start(ap, m);
        while ((key = va_arg(ap, const char *))) {
                int kind = va_arg(ap, int);

                fputc(',', ctx->log);
                log_json_string(ctx->log, key);
                fputc(':', ctx->log);
                switch (kind) {
                case V_STR:
                        log_json_string(ctx->log, va_arg(ap, const char *));
                        break;
                case V_BOOL:
                        fputs(va_arg(ap, int) ? "true" : "false", ctx->log);
                        break;
                default:
                        fprintf(ctx->log, "%" PRIu64, va_arg(ap, uint64_t));
                        break;
                }
        }
        va_end(ap);
        fputs(",\"sender\":", ctx->log);
        log_json_string(ctx->log, sd_bus_message_get_sender(m));
        fputs("}\n", ctx->log);
        if (fflush(ctx->log) != 0)
                fprintf(stderr, "systemd_double: writing the call log failed: %m, ignoring\n");
}

static Job *job_free(Job *j) {
        if (!j)
                return NULL;
        if (j->ctx) {
                if (j->prev)
                        j->prev->next = j->next;
                else
                        j->ctx->jobs = j->next;
                if (j->next)
                        j->next->prev = j->prev;
        }
        sd_event_source_disable_unref(j->timer);
        free(j->path);
        free(j->unit);
        free(j->result);
        free(j);
        return NULL;
}

static const char *next_job_result(Context *ctx) {
        if (ctx->job_results && ctx->job_results[ctx->n_job_results_used])
                return ctx->job_results[ctx->n_job_results_used++];
        return ctx->job_result;
}

static int on_job_timer(sd_event_source *s _unused_, uint64_t usec _unused_, void *userdata) {
        Job *j = userdata;
        int r;

        /* As systemd: the reply carrying the job path went out first, the
         * signal follows on the Manager interface, to everyone. */
        if (!j->ctx->strict_subscribe || sd_bus_track_count(j->ctx->subscribed) > 0) {
                r = sd_bus_emit_signal(j->ctx->bus, SYSTEMD_PATH, SYSTEMD_MANAGER, "JobRemoved", "uoss", j->id,
                                       j->path, j->unit, j->result);
                if (r < 0)
                        fprintf(stderr, "systemd_double: emitting JobRemoved for %s failed: %s, ignoring\n",
                                j->path, strerror(-r));
        }
        job_free(j);
        return 0;
}

static int job_start(Context *ctx, const char *unit, Job **ret) {
        Job *j;
        int r;

        j = calloc(1, sizeof(*j));
        if (!j)
                return -ENOMEM;
        j->id = ++ctx->last_job_id;
        j->unit = strdup(unit);
        j->result = strdup(next_job_result(ctx));
        if (!j->unit || !j->result || asprintf(&j->path, SYSTEMD_PATH "/job/%" PRIu32, j->id) < 0) {
                j->path = NULL;
                r = -ENOMEM;
                goto fail;
        }
        /* accuracy 1 µs: the default would add up to 250 ms of slack to a
         * delay tests set on purpose */
        r = sd_event_add_time_relative(ctx->event, &j->timer, CLOCK_MONOTONIC, ctx->job_delay, 1, on_job_timer, j);
        if (r < 0)
                goto fail;

        j->ctx = ctx;
        j->next = ctx->jobs;
        if (ctx->jobs)
                ctx->jobs->prev = j;
        ctx->jobs = j;
        *ret = j;
        return 0;
fail:
        job_free(j);
        return r;
}

static int method_restart_unit(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Context *ctx = userdata;
        const char *name, *mode;
        Job *j;
        int r;

        /* systemd's order: name syntax, job mode, then whether the unit exists */
        r = sd_bus_message_read(m, "ss", &name, &mode);
        if (r < 0)
                return r;

        if (ctx->fail_restart)
                r = sd_bus_error_setf(error, ctx->fail_restart, "Scripted failure of RestartUnit %s.", name);
        else if (!unit_name_valid(name))
                r = sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Unit name %s is not valid.", name);
        else if (!in_list(mode, job_modes, ELEMENTSOF(job_modes)))
                r = sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Job mode %s invalid", mode);
        else if (!strv_contains(ctx->units, name))
                r = sd_bus_error_setf(error, ERROR_NO_SUCH_UNIT, "Unit %s not found.", name);
        if (r < 0) {
                call_log(ctx, "RestartUnit", m, "unit", V_STR, name, "mode", V_STR, mode, "job", V_STR, NULL,
                         "result", V_STR, NULL, "error", V_STR, error->name, NULL);
                return r;
        }

        r = job_start(ctx, name, &j);
        if (r < 0)
                return r;
        call_log(ctx, "RestartUnit", m, "unit", V_STR, name, "mode", V_STR, mode, "job", V_STR, j->path,
                 "result", V_STR, j->result, "error", V_STR, NULL, NULL);
        return sd_bus_reply_method_return(m, "o", j->path);
}

static int method_subscribe(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Context *ctx = userdata;
        int r = 0;

        if (ctx->strict_subscribe) {
                r = sd_bus_track_add_sender(ctx->subscribed, m);
                if (r < 0)
                        return r;
                if (r == 0)
                        r = sd_bus_error_setf(error, ERROR_ALREADY_SUBSCRIBED, "Client is already subscribed.");
        }
        call_log(ctx, "Subscribe", m, "error", V_STR, r < 0 ? error->name : NULL, NULL);
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(m, NULL);
}

static int method_unsubscribe(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Context *ctx = userdata;
        int r = 0;

        if (ctx->strict_subscribe) {
                r = sd_bus_track_remove_sender(ctx->subscribed, m);
                if (r < 0)
                        return r;
                if (r == 0)
                        r = sd_bus_error_setf(error, ERROR_NOT_SUBSCRIBED, "Client is not subscribed.");
        }
        call_log(ctx, "Unsubscribe", m, "error", V_STR, r < 0 ? error->name : NULL, NULL);
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(m, NULL);
}

static int reboot_common(Context *ctx, sd_bus_message *m, const char *method, bool interactive, uint64_t flags,
                         sd_bus_error *error) {
        int r = 0;

        if (streq(method, "RebootWithFlags") && (flags & ~LOGIND_FLAGS_PUBLIC) != 0)
                r = sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Invalid flags parameter");
        else if (ctx->fail_reboot)
                r = sd_bus_error_setf(error, ctx->fail_reboot, "Scripted failure of %s.", method);

        if (streq(method, "Reboot"))
                call_log(ctx, method, m, "interactive", V_BOOL, (int) interactive, "error", V_STR,
                         r < 0 ? error->name : NULL, NULL);
        else
                call_log(ctx, method, m, "flags", V_U64, flags, "error", V_STR, r < 0 ? error->name : NULL,
                         NULL);
        if (r < 0)
                return r;

        ctx->n_reboots++;
        /* logind announces the shutdown before it starts it; inhibitors and
         * clients that watch for it see the same here */
        r = sd_bus_emit_signal(ctx->bus, LOGIN_PATH, LOGIN_MANAGER, "PrepareForShutdown", "b", 1);
        if (r < 0)
                fprintf(stderr, "systemd_double: emitting PrepareForShutdown failed: %s, ignoring\n", strerror(-r));
        return sd_bus_reply_method_return(m, NULL);
}

static int method_reboot(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        int interactive, r;

        r = sd_bus_message_read(m, "b", &interactive);
        if (r < 0)
                return r;
        return reboot_common(userdata, m, "Reboot", interactive, 0, error);
}

static int method_reboot_with_flags(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        uint64_t flags;
        int r;

        r = sd_bus_message_read(m, "t", &flags);
        if (r < 0)
                return r;
        return reboot_common(userdata, m, "RebootWithFlags", false, flags, error);
}

static const sd_bus_vtable systemd_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD_WITH_NAMES("RestartUnit", "ss", SD_BUS_PARAM(name) SD_BUS_PARAM(mode), "o", SD_BUS_PARAM(job),
                                 method_restart_unit, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("Subscribe", NULL, NULL, method_subscribe, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("Unsubscribe", NULL, NULL, method_unsubscribe, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_SIGNAL_WITH_NAMES("JobRemoved", "uoss",
                                 SD_BUS_PARAM(id) SD_BUS_PARAM(job) SD_BUS_PARAM(unit) SD_BUS_PARAM(result), 0),
        SD_BUS_VTABLE_END,
};

static const sd_bus_vtable login_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD_WITH_NAMES("Reboot", "b", SD_BUS_PARAM(interactive), NULL, , method_reboot,
                                 SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("RebootWithFlags", "t", SD_BUS_PARAM(flags), NULL, , method_reboot_with_flags,
                                 SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_SIGNAL_WITH_NAMES("PrepareForShutdown", "b", SD_BUS_PARAM(start), 0),
        SD_BUS_VTABLE_END,
};

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si _unused_, void *userdata _unused_) {
        return sd_event_exit(sd_event_source_get_event(s), EXIT_SUCCESS);
}

static Context *context_free(Context *ctx) {
        if (!ctx)
                return NULL;
        while (ctx->jobs)
                job_free(ctx->jobs);
        sd_bus_track_unref(ctx->subscribed);
        sd_bus_slot_unref(ctx->systemd_slot);
        sd_bus_slot_unref(ctx->login_slot);
        sd_bus_flush_close_unref(ctx->bus);
        sd_event_unref(ctx->event);
        if (ctx->log)
                fclose(ctx->log);
        strv_free(ctx->units);
        strv_free(ctx->job_results);
        free(ctx);
        return NULL;
}

static void context_freep(Context **ctx) {
        context_free(*ctx);
}

static int parse_job_results(Context *ctx, const char *arg) {
        _cleanup_(freep) char *copy = strdup(arg);
        char *save = NULL;
        int r;

        if (!copy)
                return -ENOMEM;
        for (char *w = strtok_r(copy, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
                if (!in_list(w, job_result_names, ELEMENTSOF(job_result_names))) {
                        fprintf(stderr, "systemd_double: unknown job result '%s'\n", w);
                        return -EINVAL;
                }
                r = strv_push_dup(&ctx->job_results, w);
                if (r < 0)
                        return r;
        }
        if (!ctx->job_results) {
                fprintf(stderr, "systemd_double: --job-results needs at least one result\n");
                return -EINVAL;
        }
        return 0;
}

static int parse_delay_ms(const char *arg, usec_t *ret) {
        unsigned long long v;
        char *end = NULL;

        if (isempty(arg) || arg[0] == '-')
                return -EINVAL;
        errno = 0;
        v = strtoull(arg, &end, 10);
        if (errno != 0 || !end || *end != '\0')
                return -EINVAL;
        if (v > UINT64_MAX / USEC_PER_MSEC)
                return -ERANGE;
        *ret = (usec_t) v * USEC_PER_MSEC;
        return 0;
}

static void help(void) {
        printf("systemd_double [OPTIONS]\n\n"
               "Serves org.freedesktop.systemd1 (RestartUnit, Subscribe, Unsubscribe, signal JobRemoved)\n"
               "and org.freedesktop.login1 (Reboot, RebootWithFlags, signal PrepareForShutdown) on the\n"
               "bus in DBUS_SYSTEM_BUS_ADDRESS. Prints \"ready\" once both names are owned.\n\n"
               "  --unit NAME            a unit that exists (repeatable); others are NoSuchUnit\n"
               "  --job-delay-ms N       JobRemoved N ms after RestartUnit (default 200)\n"
               "  --job-result RESULT    result of every job (default done)\n"
               "  --job-results A,B,...  results of the first jobs in order, then --job-result\n"
               "  --fail-restart ERROR   RestartUnit fails with this D-Bus error name\n"
               "  --fail-reboot ERROR    Reboot/RebootWithFlags fail with this D-Bus error name\n"
               "  --strict-subscribe     as real systemd: JobRemoved only while a subscriber is\n"
               "                         connected; Subscribe twice is AlreadySubscribed\n"
               "  --log FILE             append one JSON line per call\n"
               "  -h --help              this text\n");
}

static int parse_argv(Context *ctx, int argc, char *argv[]) {
        enum {
                ARG_UNIT = 0x100,
                ARG_JOB_DELAY_MS,
                ARG_JOB_RESULT,
                ARG_JOB_RESULTS,
                ARG_FAIL_RESTART,
                ARG_FAIL_REBOOT,
                ARG_STRICT_SUBSCRIBE,
                ARG_LOG,
        };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "unit", required_argument, NULL, ARG_UNIT },
                { "job-delay-ms", required_argument, NULL, ARG_JOB_DELAY_MS },
                { "job-result", required_argument, NULL, ARG_JOB_RESULT },
                { "job-results", required_argument, NULL, ARG_JOB_RESULTS },
                { "fail-restart", required_argument, NULL, ARG_FAIL_RESTART },
                { "fail-reboot", required_argument, NULL, ARG_FAIL_REBOOT },
                { "strict-subscribe", no_argument, NULL, ARG_STRICT_SUBSCRIBE },
                { "log", required_argument, NULL, ARG_LOG },
                {},
        };
        int c, r;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_UNIT:
                        r = strv_push_dup(&ctx->units, optarg);
                        if (r < 0)
                                return r;
                        break;
                case ARG_JOB_DELAY_MS:
                        r = parse_delay_ms(optarg, &ctx->job_delay);
                        if (r < 0) {
                                fprintf(stderr, "systemd_double: bad --job-delay-ms '%s'\n", optarg);
                                return r;
                        }
                        break;
                case ARG_JOB_RESULT:
                        if (!in_list(optarg, job_result_names, ELEMENTSOF(job_result_names))) {
                                fprintf(stderr, "systemd_double: unknown job result '%s'\n", optarg);
                                return -EINVAL;
                        }
                        ctx->job_result = optarg;
                        break;
                case ARG_JOB_RESULTS:
                        ctx->job_results = strv_free(ctx->job_results);
                        r = parse_job_results(ctx, optarg);
                        if (r < 0)
                                return r;
                        break;
                case ARG_FAIL_RESTART:
                case ARG_FAIL_REBOOT:
                        if (!error_name_valid(optarg)) {
                                fprintf(stderr, "systemd_double: '%s' is not a D-Bus error name\n", optarg);
                                return -EINVAL;
                        }
                        if (c == ARG_FAIL_RESTART)
                                ctx->fail_restart = optarg;
                        else
                                ctx->fail_reboot = optarg;
                        break;
                case ARG_STRICT_SUBSCRIBE:
                        ctx->strict_subscribe = true;
                        break;
                case ARG_LOG:
                        if (ctx->log)
                                fclose(ctx->log);
                        ctx->log = fopen(optarg, "ae");
                        if (!ctx->log) {
                                r = negative_errno();
                                fprintf(stderr, "systemd_double: cannot open %s: %s\n", optarg, strerror(-r));
                                return r;
                        }
                        break;
                default:
                        return -EINVAL;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "systemd_double: unexpected argument '%s'\n", argv[optind]);
                return -EINVAL;
        }
        return 1;
}

static int context_setup(Context *ctx) {
        sigset_t mask;
        int r;

        /* sd-event refuses signal sources for unblocked signals (-EBUSY) */
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return negative_errno();

        r = sd_event_default(&ctx->event);
        if (r < 0)
                return r;
        r = sd_event_add_signal(ctx->event, NULL, SIGTERM, on_signal, ctx);
        if (r < 0)
                return r;
        r = sd_event_add_signal(ctx->event, NULL, SIGINT, on_signal, ctx);
        if (r < 0)
                return r;

        r = sd_bus_open_system(&ctx->bus);
        if (r < 0) {
                fprintf(stderr, "systemd_double: cannot connect to the system bus: %s\n", strerror(-r));
                return r;
        }
        r = sd_bus_track_new(ctx->bus, &ctx->subscribed, NULL, NULL);
        if (r < 0)
                return r;
        r = sd_bus_add_object_vtable(ctx->bus, &ctx->systemd_slot, SYSTEMD_PATH, SYSTEMD_MANAGER, systemd_vtable,
                                     ctx);
        if (r < 0)
                return r;
        r = sd_bus_add_object_vtable(ctx->bus, &ctx->login_slot, LOGIN_PATH, LOGIN_MANAGER, login_vtable, ctx);
        if (r < 0)
                return r;

        /* a dead dbus-daemon must not leave a double spinning forever */
        r = sd_bus_set_exit_on_disconnect(ctx->bus, true);
        if (r < 0)
                return r;
        r = sd_bus_attach_event(ctx->bus, ctx->event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                return r;

        r = sd_bus_request_name(ctx->bus, SYSTEMD_NAME, 0);
        if (r < 0) {
                fprintf(stderr, "systemd_double: cannot own %s: %s\n", SYSTEMD_NAME, strerror(-r));
                return r;
        }
        r = sd_bus_request_name(ctx->bus, LOGIN_NAME, 0);
        if (r < 0) {
                fprintf(stderr, "systemd_double: cannot own %s: %s\n", LOGIN_NAME, strerror(-r));
                return r;
        }
        return 0;
}

int main(int argc, char *argv[]) {
        _cleanup_(context_freep) Context *ctx = NULL;
        int r;

        ctx = calloc(1, sizeof(*ctx));
        if (!ctx)
                return EXIT_FAILURE;
        ctx->job_delay = JOB_DELAY_DEFAULT;
        ctx->job_result = "done";

        r = parse_argv(ctx, argc, argv);
        if (r <= 0)
                return r < 0 ? 2 : EXIT_SUCCESS;

        r = context_setup(ctx);
        if (r < 0) {
                fprintf(stderr, "systemd_double: setup failed: %s\n", strerror(-r));
                return EXIT_FAILURE;
        }

        if (puts("ready") < 0 || fflush(stdout) != 0)
                return EXIT_FAILURE;

        r = sd_event_loop(ctx->event);
        if (r < 0) {
                fprintf(stderr, "systemd_double: event loop failed: %s\n", strerror(-r));
                return EXIT_FAILURE;
        }
        return r;
}
