/* RestartUnit and Reboot over sd-bus, asynchronously. RestartUnit answers
 * with a job path at once; the job's end comes later as the JobRemoved
 * signal, which may even overtake the reply: finished jobs are remembered
 * until the reply says which one is ours. */
#include "sysbus.h"

#include <systemd/sd-bus.h>

#include "log.h"

#define SYSTEMD_DEST "org.freedesktop.systemd1"
#define SYSTEMD_PATH "/org/freedesktop/systemd1"
#define SYSTEMD_MANAGER "org.freedesktop.systemd1.Manager"
#define LOGIND_DEST "org.freedesktop.login1"
#define LOGIND_PATH "/org/freedesktop/login1"
#define LOGIND_MANAGER "org.freedesktop.login1.Manager"
#define SEEN_MAX 8

struct SysBus {
        sd_event *event;
        sd_bus *bus;
        sd_bus_slot *match, *call;
        sd_event_source *deadline, *done_defer;
        int done_error;
        char *done_detail;              /* set when the operation ended; reported from a defer */
        bool busy;
        char *unit, *job;               /* the job we wait for */
        struct {
                char *job, *result;
        } seen[SEEN_MAX];               /* JobRemoved before we knew our job */
        size_t seen_next;
        sysbus_done_t cb;
        void *userdata;
};

int sysbus_new(sd_event *e, SysBus **ret) {
        SysBus *b = calloc(1, sizeof *b);

        if (!b)
                return -ENOMEM;
        b->event = sd_event_ref(e);
        *ret = b;
        return 0;
}

static void seen_clear(SysBus *b) {
        for (size_t i = 0; i < SEEN_MAX; i++) {
                free(b->seen[i].job);
                free(b->seen[i].result);
                b->seen[i].job = b->seen[i].result = NULL;
        }
}

static void op_clear(SysBus *b) {
        b->done_defer = sd_event_source_disable_unref(b->done_defer);
        free(b->done_detail);
        b->done_detail = NULL;
        b->call = sd_bus_slot_unref(b->call);
        b->match = sd_bus_slot_unref(b->match);
        b->deadline = sd_event_source_disable_unref(b->deadline);
        free(b->unit);
        free(b->job);
        b->unit = b->job = NULL;
        seen_clear(b);
        b->busy = false;
        b->cb = NULL;
        b->userdata = NULL;
}

SysBus *sysbus_free(SysBus *b) {
        if (!b)
                return NULL;
        op_clear(b);
        if (b->bus) {
                sd_bus_flush(b->bus);
                b->bus = sd_bus_close_unref(b->bus);
        }
        sd_event_unref(b->event);
        free(b);
        return NULL;
}

void sysbus_cancel(SysBus *b) {
        if (b)
                op_clear(b);
}

static int on_done_defer(sd_event_source *s, void *userdata) {
        SysBus *b = userdata;
        sysbus_done_t cb = b->cb;
        void *cb_userdata = b->userdata;
        int error = b->done_error;
        _cleanup_(freep) char *detail = TAKE_PTR(b->done_detail);

        op_clear(b);
        if (cb)
                cb(error, detail, cb_userdata);
        return 0;
}

/* Reported from a defer source: the slots whose callbacks got us here are
 * released outside those callbacks, and the caller is never re-entered. */
static void finish(SysBus *b, int error, const char *detail) {
        if (b->done_defer)
                return; /* the first end wins */
        b->done_error = error;
        b->done_detail = strdup(strna(detail));
        if (sd_event_add_defer(b->event, &b->done_defer, on_done_defer, b) < 0) {
                log_error("sysbus: cannot report the end of the operation");
                b->done_defer = NULL;
        }
}

static int on_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        SysBus *b = userdata;
        char d[160];

        snprintf(d, sizeof d, "no answer from the system bus in time%s%s", b->unit ? " for " : "", strempty(b->unit));
        finish(b, -ETIMEDOUT, d);
        return 0;
}

static int bus_open(SysBus *b) {
        int r;

        if (b->bus && sd_bus_is_open(b->bus) > 0)
                return 0;
        b->bus = sd_bus_close_unref(b->bus);
        r = sd_bus_open_system(&b->bus);
        if (r < 0)
                return r;
        r = sd_bus_attach_event(b->bus, b->event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                b->bus = sd_bus_close_unref(b->bus);
        return r;
}

static int op_begin(SysBus *b, usec_t timeout, sysbus_done_t cb, void *userdata) {
        int r;

        if (b->busy)
                return -EBUSY;
        r = bus_open(b);
        if (r < 0)
                return r;
        r = sd_event_add_time_relative(b->event, &b->deadline, CLOCK_MONOTONIC, timeout, USEC_PER_MSEC, on_deadline, b);
        if (r < 0)
                return r;
        b->busy = true;
        b->cb = cb;
        b->userdata = userdata;
        return 0;
}

static void job_done(SysBus *b, const char *result) {
        char d[200];

        if (streq(result, "done")) {
                snprintf(d, sizeof d, "%s restarted", strna(b->unit));
                finish(b, 0, d);
                return;
        }
        snprintf(d, sizeof d, "restart job for %s ended with \"%s\"", strna(b->unit), result);
        finish(b, -EIO, d);
}

static int on_job_removed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        SysBus *b = userdata;
        const char *job = NULL, *unit = NULL, *result = NULL;
        uint32_t id;

        if (sd_bus_message_read(m, "uoss", &id, &job, &unit, &result) < 0)
                return 0;
        if (b->job) {
                if (streq(job, b->job))
                        job_done(b, result);
                return 0;
        }
        /* the reply with our job path has not been read yet */
        free(b->seen[b->seen_next].job);
        free(b->seen[b->seen_next].result);
        b->seen[b->seen_next].job = strdup(job);
        b->seen[b->seen_next].result = strdup(result);
        b->seen_next = (b->seen_next + 1) % SEEN_MAX;
        return 0;
}

static const char *bus_error_detail(sd_bus_message *m, char *buf, size_t size) {
        const sd_bus_error *e = sd_bus_message_get_error(m);

        snprintf(buf, size, "%s: %s", e && e->name ? e->name : "error", e && e->message ? e->message : "");
        return buf;
}

static int on_restart_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        SysBus *b = userdata;
        const char *job = NULL;
        char d[300];

        b->call = sd_bus_slot_unref(b->call);
        if (sd_bus_message_is_method_error(m, NULL)) {
                finish(b, -EIO, bus_error_detail(m, d, sizeof d));
                return 0;
        }
        if (sd_bus_message_read(m, "o", &job) < 0 || !(b->job = strdup(job))) {
                finish(b, -EBADMSG, "RestartUnit answered without a job path");
                return 0;
        }
        for (size_t i = 0; i < SEEN_MAX; i++)
                if (b->seen[i].job && streq(b->seen[i].job, b->job)) {
                        _cleanup_(freep) char *result = strdup(b->seen[i].result ? b->seen[i].result : "unknown");
                        job_done(b, result ? result : "unknown");
                        return 0;
                }
        return 0;
}

int sysbus_restart_unit(SysBus *b, const char *unit, usec_t timeout, sysbus_done_t cb, void *userdata) {
        int r;

        if (isempty(unit) || !cb)
                return -EINVAL;
        r = op_begin(b, timeout, cb, userdata);
        if (r < 0)
                return r;
        b->unit = strdup(unit);
        if (!b->unit) {
                op_clear(b);
                return -ENOMEM;
        }
        /* the signal match first, so the job's end cannot slip past us */
        r = sd_bus_match_signal_async(b->bus, &b->match, SYSTEMD_DEST, SYSTEMD_PATH, SYSTEMD_MANAGER, "JobRemoved",
                                      on_job_removed, NULL, b);
        if (r >= 0)
                /* systemd sends JobRemoved only to subscribers (or everyone, once any client subscribed) */
                r = sd_bus_call_method_async(b->bus, NULL, SYSTEMD_DEST, SYSTEMD_PATH, SYSTEMD_MANAGER, "Subscribe", NULL,
                                             NULL, NULL);
        if (r >= 0)
                r = sd_bus_call_method_async(b->bus, &b->call, SYSTEMD_DEST, SYSTEMD_PATH, SYSTEMD_MANAGER,
                                             "RestartUnit", on_restart_reply, b, "ss", unit, "replace");
        if (r < 0)
                op_clear(b);
        return r;
}

static int on_reboot_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        SysBus *b = userdata;
        char d[300];

        b->call = sd_bus_slot_unref(b->call);
        if (sd_bus_message_is_method_error(m, NULL)) {
                finish(b, -EIO, bus_error_detail(m, d, sizeof d));
                return 0;
        }
        finish(b, 0, "logind accepted the reboot");
        return 0;
}

int sysbus_reboot(SysBus *b, usec_t timeout, sysbus_done_t cb, void *userdata) {
        int r;

        if (!cb)
                return -EINVAL;
        r = op_begin(b, timeout, cb, userdata);
        if (r < 0)
                return r;
        /* interactive = false: no polkit prompt, we are a daemon */
        r = sd_bus_call_method_async(b->bus, &b->call, LOGIND_DEST, LOGIND_PATH, LOGIND_MANAGER, "Reboot",
                                     on_reboot_reply, b, "b", 0);
        if (r < 0)
                op_clear(b);
        return r;
}
