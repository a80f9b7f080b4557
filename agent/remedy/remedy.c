/* The ladder, one step at a time, on the loop. */
#include "remedy.h"

#include <math.h>

#include "aws.h"
#include "awsroute.h"
#include "clock.h"
#include "jsonutil.h"
#include "log.h"
#include "parse.h"
#include "sysbus.h"

#define RESTART_TIMEOUT (90 * USEC_PER_SEC)   /* systemd's default stop+start timeouts fit */
#define LOCAL_REBOOT_TIMEOUT (30 * USEC_PER_SEC)
#define TEST_REBOOT_DEADLINE (60 * USEC_PER_SEC)

struct Remedy {
        sd_event *event;
        Http *http;
        Config *config;
        const PersistentState *persist; /* the owner's, read only: changed through the sink's record_* */
        char boot_id[BOOT_ID_LEN + 1];
        const RemedySink *sink;
        void *userdata;

        struct Aws *aws;                /* NULL without [aws], or neither reboot-instance nor a route */
        AwsRoute *route;                /* NULL without target groups or Auto Scaling standby */
        struct SysBus *sysbus;          /* NULL without local steps */
        size_t ladder_pos;
        uint64_t gen;                   /* tells a step's write completion from a cancelled ladder's */
        bool running;
        bool reboot_awaited;            /* restarted in CHECKING while an accepted reboot is due */
        sd_event_source *timer;         /* settle after a restart, or the reboot that must come */
        sd_event_source *deadline;      /* [remedy] step_timeout: the step's call has not answered */
        bool timed_out;                 /* a step of this ladder run never answered: give the slot back */
        char *last_failure;
        uint64_t test_ticket;           /* monkeyctl test-reboot waiting, 0 = none */
        sd_event_source *test_deadline;
};

static void remedy_post(Remedy *rm, Event e, const char *reason) {
        rm->sink->post(rm->userdata, e, reason);
}

char *remedy_step_describe(const Config *c, size_t i) {
        char *s = NULL;
        RemedyStep st = c->remedy.ladder[i];

        if (st == REMEDY_RESTART_UNIT) {
                const char *unit = c->remedy.ladder_unit[i] ? c->remedy.ladder_unit[i] : c->remedy.unit;
                if (asprintf(&s, "restart-unit:%s", strna(unit)) < 0)
                        return NULL;
                return s;
        }
        if (st == REMEDY_NONE)
                return strdup("none (nothing done to the host)");
        return strdup(remedy_step_to_string(st));
}

static void aws_permission_changed(Aws *aws, AwsPermission p, const char *detail, void *userdata) {
        Remedy *rm = userdata;
        char text[512];

        if (p != AWS_PERMISSION_DENIED)
                return;
        /* found at start, not at the moment of need */
        snprintf(text, sizeof text, "%s cannot reboot itself through EC2: %s", rm->config->agent.host, strna(detail));
        rm->sink->permission(rm->userdata, text, detail);
}

static bool ladder_has(const Config *c, RemedyStep s) {
        for (size_t i = 0; i < c->remedy.ladder_len; i++)
                if (c->remedy.ladder[i] == s)
                        return true;
        return false;
}

/* ---- what the route asks of the ladder's owner ---- */

static void on_standby_saved(void *userdata, uint64_t cookie, int error) {
        Remedy *rm = userdata;

        if (rm->route)
                awsroute_recorded(rm->route, error);
}

static int route_record_standby(void *userdata, const char *group) {
        Remedy *rm = userdata;

        rm->sink->record_standby(rm->userdata, group);
        return rm->sink->save(rm->userdata, on_standby_saved, rm, 0);
}

static const char *route_standby_group(void *userdata) {
        Remedy *rm = userdata;

        return rm->persist->standby_group;
}

static void route_step(void *userdata, const char *step, const char *detail) {
        Remedy *rm = userdata;

        if (rm->sink->route_step)
                rm->sink->route_step(rm->userdata, step, detail);
}

static const AwsRouteSink route_sink = {
        .record_standby = route_record_standby,
        .standby_group = route_standby_group,
        .step = route_step,
};

static int remedy_setup(Remedy *rm, char **ret_error) {
        const Config *c = rm->config;
        int r;

        if (config_aws_needs_identity(c)) {
                r = aws_new(rm->event, rm->http, c, &rm->aws, ret_error);
                if (r < 0)
                        return r;
                aws_set_permission_handler(rm->aws, aws_permission_changed, rm);
                r = awsroute_new(rm->event, rm->http, rm->aws, c, &route_sink, rm, &rm->route);
                if (r < 0)
                        return r;
        }
        if (!c->remedy.enabled)
                return 0;
        if (!c->aws.enabled && ladder_has(c, REMEDY_REBOOT_INSTANCE))
                log_warning("remedy: the ladder has reboot-instance but there is no [aws] section; that step will fail");
        if (ladder_has(c, REMEDY_RESTART_UNIT) || ladder_has(c, REMEDY_LOCAL_REBOOT)) {
                r = sysbus_new(rm->event, &rm->sysbus);
                if (r < 0)
                        return r;
        }
        return 0;
}

int remedy_new(sd_event *e, Http *http, Config *c, const PersistentState *persist, const char *boot_id,
               const RemedySink *sink, void *userdata, Remedy **ret, char **ret_error) {
        Remedy *rm;
        int r;

        rm = calloc(1, sizeof *rm);
        if (!rm)
                return -ENOMEM;
        *rm = (Remedy) {
                .event = e,
                .http = http,
                .config = config_ref(c),
                .persist = persist,
                .sink = sink,
                .userdata = userdata,
        };
        snprintf(rm->boot_id, sizeof rm->boot_id, "%s", boot_id);
        r = remedy_setup(rm, ret_error);
        if (r < 0) {
                remedy_free(rm);
                return r;
        }
        *ret = rm;
        return 0;
}

void remedy_set_config(Remedy *rm, Config *c) {
        config_replace(&rm->config, c);
}

bool remedy_is_running(Remedy *rm) {
        return rm->running;
}

bool remedy_reboot_awaited(Remedy *rm) {
        return rm->reboot_awaited;
}

const char *remedy_instance_id(Remedy *rm) {
        return rm->aws ? aws_instance_id(rm->aws) : NULL;
}

const char *remedy_local_ipv4(Remedy *rm) {
        return rm->aws ? aws_local_ipv4(rm->aws) : NULL;
}

void remedy_start(Remedy *rm) {
        if (rm->aws)
                (void) aws_start(rm->aws);
}

int remedy_reconfigure(Remedy *rm, const Config *nc) {
        bool need_aws = config_aws_needs_identity(nc);
        bool need_bus = nc->remedy.enabled && (ladder_has(nc, REMEDY_RESTART_UNIT) || ladder_has(nc, REMEDY_LOCAL_REBOOT));
        _cleanup_(freep) char *err = NULL;
        Aws *fresh = NULL;
        int r;

        if (!nc->remedy.enabled && rm->config->remedy.enabled && (rm->running || rm->reboot_awaited))
                log_warning("reload: [remedy] is gone; the remediation under way still ends as it began");
        /* The AWS client holds a call, credentials and a token of its own:
         * replaced between remediations only, never under one. */
        if (rm->running || rm->reboot_awaited || awsroute_busy(rm->route)) {
                if (need_aws != !!rm->aws || (rm->aws && !config_aws_equal(rm->config, nc)))
                        log_warning("reload: new [aws] settings take effect once the remediation under way ends "
                                    "and the config is reloaded again, ignoring them for now");
        } else if (need_aws && (!rm->aws || !config_aws_equal(rm->config, nc))) {
                r = aws_new(rm->event, rm->http, nc, &fresh, &err);
                if (r < 0) {
                        log_warning("reload: [aws]: %s, keeping the previous settings", err ? err : strerror(-r));
                        return r;
                }
                AwsRoute *route = NULL;

                r = awsroute_new(rm->event, rm->http, fresh, nc, &route_sink, rm, &route);
                if (r < 0) {
                        aws_free(fresh);
                        return r;
                }
                rm->route = awsroute_free(rm->route);
                aws_free(rm->aws);
                rm->aws = fresh;
                rm->route = route;
                aws_set_permission_handler(rm->aws, aws_permission_changed, rm);
                (void) aws_start(rm->aws);
                log_info("reload: new [aws] settings in use");
        } else if (!need_aws && rm->aws) {
                rm->route = awsroute_free(rm->route);
                rm->aws = aws_free(rm->aws);
        }
        if (need_bus && !rm->sysbus) {
                r = sysbus_new(rm->event, &rm->sysbus);
                if (r < 0)
                        return r;
        }
        return 0;
}

void remedy_cancel(Remedy *rm) {
        rm->timer = sd_event_source_disable_unref(rm->timer);
        rm->deadline = sd_event_source_disable_unref(rm->deadline);
        rm->gen++; /* a write still in flight for the old run no longer acts */
        rm->reboot_awaited = false;
        if (rm->sysbus)
                sysbus_cancel(rm->sysbus);
        if (rm->aws && rm->running)
                aws_cancel(rm->aws);
        rm->running = false;
}

Remedy *remedy_free(Remedy *rm) {
        if (!rm)
                return NULL;
        remedy_cancel(rm);
        sd_event_source_disable_unref(rm->test_deadline);
        awsroute_free(rm->route);
        aws_free(rm->aws);
        sysbus_free(rm->sysbus);
        free(rm->last_failure);
        config_free(rm->config);
        free(rm);
        return NULL;
}

static void step_start(Remedy *rm);
static void step_recorded(void *userdata, uint64_t gen, int error);
static void step_take(void *userdata, uint64_t gen, int error);

static void step_result(Remedy *rm, const char *result) {
        rm->sink->record_step_result(rm->userdata, result);
        (void) rm->sink->save(rm->userdata, NULL, NULL, 0);
}

static void step_failed(Remedy *rm, const char *why) {
        _cleanup_(freep) char *step = remedy_step_describe(rm->config, rm->ladder_pos);

        log_warning("remedy: %s failed: %s", strna(step), why);
        step_result(rm, why);
        free(rm->last_failure);
        rm->last_failure = strdup(why);
        rm->timer = sd_event_source_disable_unref(rm->timer);
        rm->deadline = sd_event_source_disable_unref(rm->deadline);
        rm->ladder_pos++;
        step_start(rm);
}

static int on_reboot_overdue(sd_event_source *s, uint64_t usec, void *userdata) {
        Remedy *rm = userdata;
        char why[160], d[32];

        rm->timer = sd_event_source_disable_unref(rm->timer);
        snprintf(why, sizeof why, "still running %s after the reboot was accepted",
                 format_duration(d, sizeof d, rm->config->remedy.reboot_timeout));
        step_failed(rm, why);
        return 0;
}

static void reboot_timer_arm(Remedy *rm, usec_t left) {
        int r;

        rm->timer = sd_event_source_disable_unref(rm->timer);
        r = sd_event_add_time_relative(rm->event, &rm->timer, CLOCK_BOOTTIME, left, USEC_PER_SEC,
                                       on_reboot_overdue, rm);
        if (r < 0)
                log_warning_errno(r, "remedy: cannot time the reboot: %m");
}

static void wait_for_reboot(Remedy *rm, const char *accepted) {
        rm->deadline = sd_event_source_disable_unref(rm->deadline);
        rm->sink->record_step_result(rm->userdata, accepted);
        /* A restart before the machine goes down must know that a reboot
         * is due (remedy_await_reboot), not ask for another. */
        rm->sink->record_reboot_awaited(rm->userdata, true);
        (void) rm->sink->save(rm->userdata, NULL, NULL, 0);
        log_notice("remedy: %s; waiting for the machine to go down", accepted);
        reboot_timer_arm(rm, rm->config->remedy.reboot_timeout);
}

/* A RebootInstances that EC2 may act on went out in this boot. */
static bool reboot_requested_here(const Remedy *rm) {
        return rm->persist->reboot_requested.at != 0 && streq(rm->persist->reboot_requested.boot_id, rm->boot_id);
}

static void reboot_requested_clear(Remedy *rm) {
        rm->sink->clear_reboot_requested(rm->userdata);
}

static bool reboot_due(Remedy *rm, bool new_boot, char *ret_why, size_t size) {
        const PersistentState *p = rm->persist;
        const Incident *i = &p->incident;
        const IncidentStep *last = i->n_steps > 0 ? &i->steps[i->n_steps - 1] : NULL;
        usec_t now = clock_loop_now(rm->event, CLOCK_BOOTTIME);

        /* The reboot a step waited for has happened, or another boot did:
         * what was asked in an earlier boot is done with. */
        if (new_boot)
                rm->sink->record_reboot_awaited(rm->userdata, false);
        if (p->reboot_requested.at != 0 && !reboot_requested_here(rm)) {
                log_info("remedy: the reboot asked for in boot %s is behind us", p->reboot_requested.boot_id);
                reboot_requested_clear(rm);
        }
        if (new_boot || !rm->config->remedy.enabled || !i->id || i->ended != 0 || !last)
                return false;
        /* Killed (SIGKILL, OOM) while RebootInstances was in flight: EC2
         * may have taken it; as good as accepted, until reboot_timeout
         * after it went out. */
        if (reboot_requested_here(rm) && !last->result && !last->awaiting_reboot &&
            (p->state == STATE_REMEDIATING || p->state == STATE_CHECKING) &&
            now >= p->reboot_requested.boottime && now - p->reboot_requested.boottime < rm->config->remedy.reboot_timeout) {
                rm->sink->record_reboot_awaited(rm->userdata, true);
                snprintf(ret_why, size, "%s was sent to EC2 before this restart and never answered", last->step);
                return true;
        }
        /* Killed between EC2's yes (or logind's) and the shutdown; or
         * restarted again while waiting for it. */
        if (last->awaiting_reboot && (p->state == STATE_REMEDIATING || p->state == STATE_CHECKING)) {
                snprintf(ret_why, size, "%s was accepted", last->step);
                return true;
        }
        return false;
}

bool remedy_reboot_due(Remedy *rm, bool new_boot, char *ret_why, size_t size) {
        rm->reboot_awaited = reboot_due(rm, new_boot, ret_why, size);
        return rm->reboot_awaited;
}

static int on_awaited_reboot_overdue(sd_event_source *s, uint64_t usec, void *userdata) {
        Remedy *rm = userdata;
        const IncidentStep *st = incident_reboot_awaited(&rm->persist->incident);
        char why[200], d[32];

        rm->timer = sd_event_source_disable_unref(rm->timer);
        rm->reboot_awaited = false;
        snprintf(why, sizeof why, "%s was %s but the machine was still running %s later",
                 st ? st->step : "the reboot", st && st->result ? "accepted" : "sent",
                 format_duration(d, sizeof d, rm->config->remedy.reboot_timeout));
        log_warning("remedy: %s", why);
        step_result(rm, why);
        remedy_post(rm, EVENT_CHECKS_FAILED, why);
        return 0;
}

int remedy_await_reboot(Remedy *rm) {
        const IncidentStep *st = incident_reboot_awaited(&rm->persist->incident);
        usec_t timeout = rm->config->remedy.reboot_timeout, now = rm->sink->now_guard(rm->userdata), left = timeout;
        char d[32];
        int r;

        if (!rm->reboot_awaited || !st) {
                rm->reboot_awaited = false;
                return -ENOENT;
        }
        /* Counted from the call on CLOCK_BOOTTIME when it was written down
         * in this boot; else from the step, on the guard's clock: a wall
         * clock stepped back cannot make the wait longer than
         * reboot_timeout, nor one stepped ahead shorter than nothing. */
        if (reboot_requested_here(rm)) {
                usec_t boot = clock_loop_now(rm->event, CLOCK_BOOTTIME), at = rm->persist->reboot_requested.boottime;
                if (boot >= at)
                        left = boot - at >= timeout ? 0 : timeout - (boot - at);
        } else if (now >= st->at)
                left = now - st->at >= timeout ? 0 : timeout - (now - st->at);
        log_notice("remedy: %s was %s before this restart; waiting %s more for the machine to go down, "
                   "out of the pool, and not asking again", st->step, st->result ? "accepted" : "sent",
                   format_duration(d, sizeof d, left));
        rm->timer = sd_event_source_disable_unref(rm->timer);
        r = sd_event_add_time_relative(rm->event, &rm->timer, CLOCK_BOOTTIME, MAX(left, USEC_PER_MSEC),
                                       USEC_PER_SEC, on_awaited_reboot_overdue, rm);
        if (r < 0) {
                log_warning_errno(r, "remedy: cannot time the reboot: %m; checking now");
                rm->reboot_awaited = false;
                return r;
        }
        return 0;
}

static void on_ec2_reboot(const Ec2Result *res, void *userdata) {
        Remedy *rm = userdata;
        char text[600];

        if (!rm->running)
                return;
        rm->deadline = sd_event_source_disable_unref(rm->deadline);
        if (res->outcome == EC2_REBOOTING) {
                if (res->uncertain)
                        /* no "accepted": EC2 never said so, but it may reboot us any moment */
                        snprintf(text, sizeof text,
                                 "%s: EC2 never answered the reboot of %s, so it may have taken it: staying out of the "
                                 "pool and waiting for the reboot (%s)",
                                 rm->config->agent.host, strna(aws_instance_id(rm->aws)), res->detail);
                else
                        snprintf(text, sizeof text, "%s: EC2 accepted the reboot of %s (request id %s)",
                                 rm->config->agent.host, strna(aws_instance_id(rm->aws)), res->request_id);
                /* spooled now, delivered after the boot if the reboot is quick */
                rm->sink->step_result(rm->userdata, text, res->request_id);
                wait_for_reboot(rm, res->detail);
                return;
        }
        /* EC2 answered no: it will not reboot us, a later step may ask again */
        reboot_requested_clear(rm);
        step_failed(rm, res->detail);
}

/* The reboot is on disk (or the disk refused it): now it may go out. */
static void on_reboot_recorded(void *userdata, uint64_t gen, int error) {
        Remedy *rm = userdata;
        char why[200];
        int r;

        if (!rm->running || gen != rm->gen || !rm->aws || rm->sink->stopping(rm->userdata))
                return; /* cancelled meanwhile (drain, the step's deadline, a stop): nothing goes out */
        if (error < 0) {
                reboot_requested_clear(rm);
                snprintf(why, sizeof why, "cannot record the reboot in state.json (%s): not sending it",
                         strerror(-error));
                step_failed(rm, why);
                return;
        }
        r = aws_reboot(rm->aws, false, on_ec2_reboot, rm);
        if (r < 0) {
                reboot_requested_clear(rm);
                snprintf(why, sizeof why, "cannot call EC2: %s", strerror(-r));
                step_failed(rm, why);
        }
}

/* Identity and credentials are there: write the reboot down, then send it. */
static void on_aws_ready(Aws *aws, void *userdata) {
        Remedy *rm = userdata;
        char why[200];
        int r;

        if (!rm->running)
                return;
        /* Before it goes out: an agent killed while the call is in flight
         * (SIGKILL, OOM) and restarted in this boot must know that a
         * reboot may be due, and never send a second one. */
        rm->sink->record_reboot_requested(rm->userdata, rm->sink->now_wall(rm->userdata),
                                          clock_loop_now(rm->event, CLOCK_BOOTTIME));
        r = rm->sink->save(rm->userdata, on_reboot_recorded, rm, rm->gen);
        if (r < 0) {
                reboot_requested_clear(rm);
                snprintf(why, sizeof why, "cannot record the reboot in state.json (%s): not sending it", strerror(-r));
                step_failed(rm, why);
        }
}

/* [remedy] step_timeout: the step's call never answered (IMDS down, EC2
 * or D-Bus hanging). It fails and the ladder moves on; the budget slot it
 * held is given back if the ladder runs out (step_start). */
static int on_step_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        Remedy *rm = userdata;
        const Config *c = rm->config;
        const char *who = "the step", *last = NULL;
        char why[520], text[700];

        rm->deadline = sd_event_source_disable_unref(rm->deadline);
        if (!rm->running || rm->ladder_pos >= c->remedy.ladder_len)
                return 0;
        rm->gen++; /* a reboot still waiting for the disk does not go out */
        switch (c->remedy.ladder[rm->ladder_pos]) {
        case REMEDY_REBOOT_INSTANCE:
                if (rm->aws) {
                        const char *w = aws_waiting_for(rm->aws, &last);
                        who = w ? w : "EC2";
                        aws_cancel(rm->aws);
                }
                if (reboot_requested_here(rm)) {
                        /* it went out and no answer came: EC2 may still act on it */
                        snprintf(why, sizeof why,
                                 "EC2 did not answer RebootInstances within %llu s%s%.200s%s; it may have taken it: "
                                 "waiting for the reboot",
                                 (unsigned long long) (c->remedy.step_timeout / USEC_PER_SEC), last ? " (last: " : "",
                                 strempty(last), last ? ")" : "");
                        snprintf(text, sizeof text, "%s: %s", c->agent.host, why);
                        rm->sink->step_result(rm->userdata, text, NULL);
                        wait_for_reboot(rm, why);
                        return 0;
                }
                break;
        case REMEDY_RESTART_UNIT:
                who = "systemd";
                if (rm->sysbus)
                        sysbus_cancel(rm->sysbus);
                break;
        case REMEDY_LOCAL_REBOOT:
                who = "logind";
                if (rm->sysbus)
                        sysbus_cancel(rm->sysbus);
                break;
        default:
                break;
        }
        snprintf(why, sizeof why, "%s did not answer within %llu s%s%.300s%s", who,
                 (unsigned long long) (c->remedy.step_timeout / USEC_PER_SEC), last ? " (last error: " : "",
                 strempty(last), last ? ")" : "");
        rm->timed_out = true;
        step_failed(rm, why);
        return 0;
}

static void on_local_reboot(int error, const char *detail, void *userdata) {
        Remedy *rm = userdata;

        if (!rm->running)
                return;
        rm->deadline = sd_event_source_disable_unref(rm->deadline);
        if (error < 0) {
                step_failed(rm, detail);
                return;
        }
        wait_for_reboot(rm, detail);
}

static int on_settled(sd_event_source *s, uint64_t usec, void *userdata) {
        Remedy *rm = userdata;
        _cleanup_(freep) char *step = remedy_step_describe(rm->config, rm->ladder_pos);
        double busy = rm->sink->cpu_busy(rm->userdata);
        char why[200];

        rm->timer = sd_event_source_disable_unref(rm->timer);
        if (!isnan(busy) && busy < rm->config->cpu.clear_below) {
                snprintf(why, sizeof why, "%s: CPU fell to %.1f%% (< %.0f%%)", strna(step), busy,
                         rm->config->cpu.clear_below);
                step_result(rm, why);
                rm->running = false;
                remedy_post(rm, EVENT_REMEDY_DONE, why);
                return 0;
        }
        snprintf(why, sizeof why, "CPU still %.1f%% after the restart (clear below %.0f%%)", busy,
                 rm->config->cpu.clear_below);
        step_failed(rm, why);
        return 0;
}

static void on_unit_restarted(int error, const char *detail, void *userdata) {
        Remedy *rm = userdata;
        char d[32], text[300];
        int r;

        if (!rm->running)
                return;
        rm->deadline = sd_event_source_disable_unref(rm->deadline);
        if (error < 0) {
                step_failed(rm, detail);
                return;
        }
        snprintf(text, sizeof text, "%s; giving the load %s to settle", detail,
                 format_duration(d, sizeof d, rm->config->remedy.settle));
        step_result(rm, text);
        log_notice("remedy: %s", text);
        r = sd_event_add_time_relative(rm->event, &rm->timer, CLOCK_BOOTTIME, rm->config->remedy.settle,
                                       USEC_PER_MSEC, on_settled, rm);
        if (r < 0)
                step_failed(rm, "cannot time the settle period");
}

static void step_start(Remedy *rm) {
        const Config *c = rm->config;
        _cleanup_(freep) char *step = NULL, *why = NULL;
        int r;

        if (rm->ladder_pos >= c->remedy.ladder_len) {
                bool release = rm->timed_out;

                rm->running = false;
                rm->deadline = sd_event_source_disable_unref(rm->deadline);
                /* A remediation that got no answer must not hold the budget
                 * until out_max: out of serving it stays (QUARANTINED), but
                 * the slot goes to the rest of the fleet. */
                if (release)
                        release = rm->sink->release_slot(rm->userdata);
                if (asprintf(&why, "every step of the ladder failed; the last: %s%s", strna(rm->last_failure),
                             release ? "; staying out of the pool, no longer counted against max_unavailable" : "") < 0)
                        why = NULL;
                remedy_post(rm, EVENT_REMEDY_FAILED, why ? why : "every step of the ladder failed");
                return;
        }
        step = remedy_step_describe(c, rm->ladder_pos);
        if (!step) {
                step_failed(rm, "out of memory");
                return;
        }

        /* written down and announced before it is taken; not taken if
         * it cannot be written down. The disk answers off the loop:
         * step_recorded() announces, step_take() takes. */
        rm->sink->record_step(rm->userdata, step, rm->sink->now_wall(rm->userdata));
        r = rm->sink->save(rm->userdata, step_recorded, rm, ++rm->gen);
        if (r < 0)
                step_recorded(rm, rm->gen, r);
}

/* This step's callbacks, unless the ladder was cancelled (or restarted)
 * meanwhile or the agent is stopping. */
static bool step_current(Remedy *rm, uint64_t gen) {
        if (rm->sink->stopping(rm->userdata) || !rm->running || gen != rm->gen)
                return false;
        if (rm->ladder_pos < rm->config->remedy.ladder_len)
                return true;
        step_start(rm); /* a reload shortened the ladder: it ends here */
        return false;
}

/* The current step and its description for a completion of generation
 * gen; NULL when that completion is stale (or out of memory: then the
 * step has failed). */
static char *step_resume(Remedy *rm, uint64_t gen, RemedyStep *ret_step) {
        char *step;

        if (!step_current(rm, gen))
                return NULL;
        *ret_step = rm->config->remedy.ladder[rm->ladder_pos];
        step = remedy_step_describe(rm->config, rm->ladder_pos);
        if (!step)
                step_failed(rm, "out of memory");
        return step;
}

/* The step is in state.json, or the disk refused it (error). */
static void step_recorded(void *userdata, uint64_t gen, int error) {
        Remedy *rm = userdata;
        const Config *c = rm->config;
        _cleanup_(freep) char *step = NULL, *text = NULL, *why = NULL;
        RemedyStep st;
        int r = error;

        step = step_resume(rm, gen, &st);
        if (!step)
                return;
        if (r < 0) {
                rm->running = false;
                if (asprintf(&why, "cannot record the step %s in state.json (%s): not taking it", step,
                             strerror(-r)) < 0)
                        why = NULL;
                rm->sink->record_step_result(rm->userdata, why ? why : "not recorded, not taken");
                remedy_post(rm, EVENT_REMEDY_FAILED, why ? why : "cannot record the step");
                return;
        }
        /* A dry run never gets here (machine.c: it is told on the breach
         * and never leaves); a reload that turns dry_run on under way does
         * not stop a remediation that began for real. */
        if (asprintf(&text, "%s: %s%s%s", c->agent.host, step, rm->ladder_pos > 0 ? ", after " : "",
                     rm->ladder_pos > 0 ? strna(rm->last_failure) : "") < 0)
                text = NULL;
        rm->sink->remediating(rm->userdata, step, text ? text : step, rm->ladder_pos > 0 ? rm->last_failure : NULL);

        /* taken once the alert that announces it is on disk */
        if (rm->sink->after_writes(rm->userdata, step_take, rm, gen) < 0)
                step_take(rm, gen, 0);
}

static void step_take(void *userdata, uint64_t gen, int error) {
        Remedy *rm = userdata;
        const Config *c = rm->config;
        _cleanup_(freep) char *step = NULL;
        RemedyStep st;
        int r;

        step = step_resume(rm, gen, &st);
        if (!step)
                return;
        /* a call that never answers (IMDS down, a hung bus) must not keep
         * the host in REMEDIATING, holding a slot of the budget, forever */
        rm->deadline = sd_event_source_disable_unref(rm->deadline);
        r = sd_event_add_time_relative(rm->event, &rm->deadline, CLOCK_BOOTTIME, c->remedy.step_timeout,
                                       USEC_PER_MSEC, on_step_deadline, rm);
        if (r < 0)
                log_warning_errno(r, "remedy: cannot time the step, it runs without a deadline: %m");

        switch (st) {
        case REMEDY_RESTART_UNIT:
                r = rm->sysbus ? sysbus_restart_unit(rm->sysbus, step + strlen("restart-unit:"), RESTART_TIMEOUT,
                                                    on_unit_restarted, rm)
                              : -ENOTCONN;
                break;
        case REMEDY_REBOOT_INSTANCE:
                if (!rm->aws) {
                        step_failed(rm, "no [aws] section: cannot reboot through EC2");
                        return;
                }
                if (reboot_requested_here(rm)) {
                        char when[32], d[200];
                        snprintf(d, sizeof d,
                                 "RebootInstances was already sent in this boot (%s) and the machine did not go "
                                 "down: not sending a second one",
                                 format_iso8601(when, sizeof when, rm->persist->reboot_requested.at));
                        step_failed(rm, d);
                        return;
                }
                r = aws_when_ready(rm->aws, on_aws_ready, rm);
                break;
        case REMEDY_LOCAL_REBOOT:
                r = rm->sysbus ? sysbus_reboot(rm->sysbus, LOCAL_REBOOT_TIMEOUT, on_local_reboot, rm) : -ENOTCONN;
                break;
        case REMEDY_NONE:
                /* A rehearsal of the routing path: out, drained, nothing
                 * done to the host, then the checks decide the rejoin. */
                step_result(rm, "none: nothing done to the host; checking, then rejoining");
                rm->running = false;
                remedy_post(rm, EVENT_REMEDY_DONE, "ladder step none: nothing done to the host");
                return;
        default:
                r = -EINVAL;
        }
        if (r < 0) {
                char d[160];
                snprintf(d, sizeof d, "cannot start %s: %s", step, strerror(-r));
                step_failed(rm, d);
        }
}

int remedy_run(Remedy *rm) {
        remedy_cancel(rm);
        rm->ladder_pos = 0;
        rm->timed_out = false;
        free(rm->last_failure);
        rm->last_failure = NULL;
        rm->running = true;
        step_start(rm);
        return 0;
}

/* --- monkeyctl test-reboot --- */

static void test_reboot_answer(Remedy *rm, bool ok, const char *message) {
        if (rm->test_ticket == 0)
                return;
        rm->sink->test_answer(rm->userdata, rm->test_ticket, ok, message);
        rm->test_ticket = 0;
        rm->test_deadline = sd_event_source_disable_unref(rm->test_deadline);
}

static void on_test_reboot(const Ec2Result *res, void *userdata) {
        Remedy *rm = userdata;
        char m[600];

        snprintf(m, sizeof m, "%s: %s", ec2_outcome_to_string(res->outcome), res->detail);
        test_reboot_answer(rm, res->outcome == EC2_PERMITTED, m);
}

static int on_test_reboot_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        Remedy *rm = userdata;
        _cleanup_(json_object_putp) json_object *st = rm->aws ? aws_status_json(rm->aws) : NULL;
        json_object *v;
        char m[400];

        snprintf(m, sizeof m, "no verdict within %llus (AWS identity: %s)",
                 (unsigned long long) (TEST_REBOOT_DEADLINE / USEC_PER_SEC),
                 st && json_object_object_get_ex(st, "last_error", &v) ? json_object_get_string(v) : "still fetching");
        test_reboot_answer(rm, false, m);
        return 0;
}

bool remedy_routes(Remedy *rm) {
        return rm && rm->route;
}

int remedy_detach(Remedy *rm, awsroute_done_t cb, void *userdata) {
        return rm->route ? awsroute_detach(rm->route, cb, userdata) : -ENOENT;
}

int remedy_attach(Remedy *rm, awsroute_done_t cb, void *userdata) {
        return rm->route ? awsroute_attach(rm->route, cb, userdata) : -ENOENT;
}

void remedy_detach_quietly(Remedy *rm) {
        if (rm->route)
                (void) awsroute_detach_quietly(rm->route);
}

bool remedy_route_still_in_service(Remedy *rm) {
        return rm && awsroute_still_in_service(rm->route);
}

void remedy_attach_quietly(Remedy *rm) {
        if (rm->route)
                (void) awsroute_attach_quietly(rm->route);
}

void remedy_route_cancel(Remedy *rm) {
        awsroute_cancel(rm->route);
}

int remedy_test_reboot(Remedy *rm, uint64_t ticket, char **ret_message) {
        int r;

        if (!rm->aws) {
                *ret_message = strdup("no EC2 step to test: the ladder has no reboot-instance, or there is no [aws]");
                return -ENOTCONN;
        }
        if (rm->test_ticket != 0) {
                *ret_message = strdup("a test is already running");
                return -EBUSY;
        }
        r = aws_self_test(rm->aws, on_test_reboot, rm);
        if (r < 0) {
                *ret_message = strdup(r == -EBUSY ? "EC2 is busy (a remediation runs); try again" : "cannot call EC2");
                return r;
        }
        rm->test_ticket = ticket;
        r = sd_event_add_time_relative(rm->event, &rm->test_deadline, CLOCK_MONOTONIC, TEST_REBOOT_DEADLINE,
                                       USEC_PER_SEC, on_test_reboot_deadline, rm);
        if (r < 0)
                log_warning_errno(r, "remedy: cannot time the test: %m");
        return 0;
}

json_object *remedy_status_json(Remedy *rm) {
        json_object *o = json_object_new_object(), *ladder = json_object_new_array();

        if (!o || !ladder) {
                json_object_put(o);
                json_object_put(ladder);
                return NULL;
        }
        for (size_t i = 0; i < rm->config->remedy.ladder_len; i++) {
                _cleanup_(freep) char *s = remedy_step_describe(rm->config, i);
                json_object_array_add(ladder, json_object_new_string(strna(s)));
        }
        json_object_object_add(o, "ladder", ladder);
        json_object_object_add(o, "running", json_object_new_boolean(rm->running));
        json_object_object_add(o, "awaiting_reboot", json_object_new_boolean(rm->reboot_awaited));
        /* RebootInstances went out in this boot: no second one until a new boot */
        if (reboot_requested_here(rm)) {
                char when[32];
                json_object_object_add(o, "reboot_requested_at",
                                       json_object_new_string(format_iso8601(when, sizeof when,
                                                                             rm->persist->reboot_requested.at)));
        }
        json_object_object_add(o, "step", rm->running ? json_object_new_int((int) rm->ladder_pos) : NULL);
        json_object_object_add(o, "aws", rm->aws ? aws_status_json(rm->aws) : NULL);
        json_object_object_add(o, "route", rm->route ? awsroute_status_json(rm->route) : NULL);
        return o;
}
