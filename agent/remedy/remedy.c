/* The ladder, one step at a time, on the loop. */
#include "remedy.h"

#include <math.h>

#include "agent.h"
#include "alerts.h"
#include "aws.h"
#include "log.h"
#include "parse.h"
#include "sysbus.h"

#define RESTART_TIMEOUT (90 * USEC_PER_SEC)   /* systemd's default stop+start timeouts fit */
#define LOCAL_REBOOT_TIMEOUT (30 * USEC_PER_SEC)
#define TEST_REBOOT_DEADLINE (60 * USEC_PER_SEC)

static usec_t now_boottime(const Agent *a) {
        uint64_t t = 0;
        struct timespec ts;

        if (a->event && sd_event_now(a->event, CLOCK_BOOTTIME, &t) >= 0)
                return t;
        clock_gettime(CLOCK_BOOTTIME, &ts);
        return (usec_t) ts.tv_sec * USEC_PER_SEC + (usec_t) ts.tv_nsec / 1000;
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
        Agent *a = userdata;
        char text[512];

        if (p != AWS_PERMISSION_DENIED)
                return;
        /* found at start, not at the moment of need */
        snprintf(text, sizeof text, "%s cannot reboot itself through EC2: %s", a->config->agent.host, strna(detail));
        alerts_notify(a->alerts, NOTICE_PERMISSION, text, detail);
}

static bool ladder_has(const Config *c, RemedyStep s) {
        for (size_t i = 0; i < c->remedy.ladder_len; i++)
                if (c->remedy.ladder[i] == s)
                        return true;
        return false;
}

int remedy_setup(Agent *a, char **ret_error) {
        const Config *c = a->config;
        int r;

        if (!c->remedy.enabled)
                return 0;
        if (c->aws.enabled && ladder_has(c, REMEDY_REBOOT_INSTANCE)) {
                r = aws_new(a->event, a->http, c, &a->aws, ret_error);
                if (r < 0)
                        return r;
                aws_set_permission_handler(a->aws, aws_permission_changed, a);
        } else if (ladder_has(c, REMEDY_REBOOT_INSTANCE))
                log_warning("remedy: the ladder has reboot-instance but there is no [aws] section; that step will fail");
        if (ladder_has(c, REMEDY_RESTART_UNIT) || ladder_has(c, REMEDY_LOCAL_REBOOT)) {
                r = sysbus_new(a->event, &a->sysbus);
                if (r < 0)
                        return r;
        }
        return 0;
}

void remedy_start(Agent *a) {
        if (a->aws)
                (void) aws_start(a->aws);
}

static bool aws_config_equal(const Config *x, const Config *y) {
        return x->aws.enabled == y->aws.enabled && streq_ptr(x->aws.region, y->aws.region) &&
               streq_ptr(x->aws.instance_id, y->aws.instance_id) &&
               streq_ptr(x->aws.endpoint_url, y->aws.endpoint_url) && streq_ptr(x->aws.imds_url, y->aws.imds_url) &&
               streq_ptr(x->aws.profile, y->aws.profile) &&
               streq_ptr(x->aws.credentials_file, y->aws.credentials_file);
}

int remedy_reconfigure(Agent *a, const Config *nc) {
        bool need_aws = nc->remedy.enabled && nc->aws.enabled && ladder_has(nc, REMEDY_REBOOT_INSTANCE);
        bool need_bus = nc->remedy.enabled && (ladder_has(nc, REMEDY_RESTART_UNIT) || ladder_has(nc, REMEDY_LOCAL_REBOOT));
        _cleanup_(freep) char *err = NULL;
        Aws *fresh = NULL;
        int r;

        if (!nc->remedy.enabled && a->config->remedy.enabled && (a->remedy_running || a->reboot_awaited))
                log_warning("reload: [remedy] is gone; the remediation under way still ends as it began");
        /* The AWS client holds a call, credentials and a token of its own:
         * replaced between remediations only, never under one. */
        if (a->remedy_running || a->reboot_awaited) {
                if (need_aws != !!a->aws || (a->aws && !aws_config_equal(a->config, nc)))
                        log_warning("reload: new [aws] settings take effect once the remediation under way ends "
                                    "and the config is reloaded again, ignoring them for now");
        } else if (need_aws && (!a->aws || !aws_config_equal(a->config, nc))) {
                r = aws_new(a->event, a->http, nc, &fresh, &err);
                if (r < 0) {
                        log_warning("reload: [aws]: %s, keeping the previous settings", err ? err : strerror(-r));
                        return r;
                }
                aws_free(a->aws);
                a->aws = fresh;
                aws_set_permission_handler(a->aws, aws_permission_changed, a);
                (void) aws_start(a->aws);
                log_info("reload: new [aws] settings in use");
        } else if (!need_aws && a->aws)
                a->aws = aws_free(a->aws);
        if (need_bus && !a->sysbus) {
                r = sysbus_new(a->event, &a->sysbus);
                if (r < 0)
                        return r;
        }
        return 0;
}

void remedy_cancel(Agent *a) {
        a->remedy_timer = sd_event_source_disable_unref(a->remedy_timer);
        a->remedy_deadline = sd_event_source_disable_unref(a->remedy_deadline);
        a->remedy_gen++; /* a write still in flight for the old run no longer acts */
        a->reboot_awaited = false;
        if (a->sysbus)
                sysbus_cancel(a->sysbus);
        if (a->aws && a->remedy_running)
                aws_cancel(a->aws);
        a->remedy_running = false;
}

void remedy_free(Agent *a) {
        remedy_cancel(a);
        a->reboot_test_deadline = sd_event_source_disable_unref(a->reboot_test_deadline);
        a->aws = aws_free(a->aws);
        a->sysbus = sysbus_free(a->sysbus);
}

static void step_start(Agent *a);
static void step_recorded(void *userdata, uint64_t gen, int error);
static void step_take(void *userdata, uint64_t gen, int error);

static void step_result(Agent *a, const char *result) {
        (void) incident_step_result(&a->persist.incident, result);
        agent_persist_save(a);
}

static void step_failed(Agent *a, const char *why) {
        _cleanup_(freep) char *step = remedy_step_describe(a->config, a->ladder_pos);

        log_warning("remedy: %s failed: %s", strna(step), why);
        step_result(a, why);
        free(a->remedy_last_failure);
        a->remedy_last_failure = strdup(why);
        a->remedy_timer = sd_event_source_disable_unref(a->remedy_timer);
        a->remedy_deadline = sd_event_source_disable_unref(a->remedy_deadline);
        a->ladder_pos++;
        step_start(a);
}

static int on_reboot_overdue(sd_event_source *s, uint64_t usec, void *userdata) {
        Agent *a = userdata;
        char why[160], d[32];

        a->remedy_timer = sd_event_source_disable_unref(a->remedy_timer);
        snprintf(why, sizeof why, "still running %s after the reboot was accepted",
                 format_duration(d, sizeof d, a->config->remedy.reboot_timeout));
        step_failed(a, why);
        return 0;
}

static void reboot_timer_arm(Agent *a, usec_t left) {
        int r;

        a->remedy_timer = sd_event_source_disable_unref(a->remedy_timer);
        r = sd_event_add_time_relative(a->event, &a->remedy_timer, CLOCK_BOOTTIME, left, USEC_PER_SEC,
                                       on_reboot_overdue, a);
        if (r < 0)
                log_warning_errno(r, "remedy: cannot time the reboot: %m");
}

static void wait_for_reboot(Agent *a, const char *accepted) {
        Incident *i = &a->persist.incident;

        a->remedy_deadline = sd_event_source_disable_unref(a->remedy_deadline);
        (void) incident_step_result(i, accepted);
        /* A restart before the machine goes down must know that a reboot
         * is due (remedy_await_reboot), not ask for another. */
        if (i->n_steps > 0)
                i->steps[i->n_steps - 1].awaiting_reboot = true;
        agent_persist_save(a);
        log_notice("remedy: %s; waiting for the machine to go down", accepted);
        reboot_timer_arm(a, a->config->remedy.reboot_timeout);
}

/* A RebootInstances that EC2 may act on went out in this boot. */
static bool reboot_requested_here(const Agent *a) {
        return a->persist.reboot_requested.at != 0 && streq(a->persist.reboot_requested.boot_id, a->boot_id);
}

static void reboot_requested_clear(Agent *a) {
        a->persist.reboot_requested.at = 0;
        a->persist.reboot_requested.boottime = 0;
        a->persist.reboot_requested.boot_id[0] = '\0';
}

bool remedy_reboot_due(Agent *a, char *ret_why, size_t size) {
        PersistentState *p = &a->persist;
        Incident *i = &p->incident;
        IncidentStep *last = i->n_steps > 0 ? &i->steps[i->n_steps - 1] : NULL;
        usec_t now = now_boottime(a);

        /* The reboot a step waited for has happened, or another boot did:
         * what was asked in an earlier boot is done with. */
        if (a->new_boot)
                for (size_t k = 0; k < i->n_steps; k++)
                        i->steps[k].awaiting_reboot = false;
        if (p->reboot_requested.at != 0 && !reboot_requested_here(a)) {
                log_info("remedy: the reboot asked for in boot %s is behind us", p->reboot_requested.boot_id);
                reboot_requested_clear(a);
        }
        if (a->new_boot || !a->config->remedy.enabled || !i->id || i->ended != 0 || !last)
                return false;
        /* Killed (SIGKILL, OOM) while RebootInstances was in flight: EC2
         * may have taken it; as good as accepted, until reboot_timeout
         * after it went out. */
        if (reboot_requested_here(a) && !last->result && !last->awaiting_reboot &&
            (p->state == STATE_REMEDIATING || p->state == STATE_CHECKING) &&
            now >= p->reboot_requested.boottime && now - p->reboot_requested.boottime < a->config->remedy.reboot_timeout) {
                last->awaiting_reboot = true;
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

static int on_awaited_reboot_overdue(sd_event_source *s, uint64_t usec, void *userdata) {
        Agent *a = userdata;
        const IncidentStep *st = incident_reboot_awaited(&a->persist.incident);
        char why[200], d[32];

        a->remedy_timer = sd_event_source_disable_unref(a->remedy_timer);
        a->reboot_awaited = false;
        snprintf(why, sizeof why, "%s was %s but the machine was still running %s later",
                 st ? st->step : "the reboot", st && st->result ? "accepted" : "sent",
                 format_duration(d, sizeof d, a->config->remedy.reboot_timeout));
        log_warning("remedy: %s", why);
        step_result(a, why);
        agent_post_event(a, EVENT_CHECKS_FAILED, why);
        return 0;
}

int remedy_await_reboot(Agent *a) {
        const IncidentStep *st = incident_reboot_awaited(&a->persist.incident);
        usec_t timeout = a->config->remedy.reboot_timeout, now = agent_now_guard(a), left = timeout;
        char d[32];
        int r;

        if (!a->reboot_awaited || !st) {
                a->reboot_awaited = false;
                return -ENOENT;
        }
        /* Counted from the call on CLOCK_BOOTTIME when it was written down
         * in this boot; else from the step, on the guard's clock: a wall
         * clock stepped back cannot make the wait longer than
         * reboot_timeout, nor one stepped ahead shorter than nothing. */
        if (reboot_requested_here(a)) {
                usec_t boot = now_boottime(a), at = a->persist.reboot_requested.boottime;
                if (boot >= at)
                        left = boot - at >= timeout ? 0 : timeout - (boot - at);
        } else if (now >= st->at)
                left = now - st->at >= timeout ? 0 : timeout - (now - st->at);
        log_notice("remedy: %s was %s before this restart; waiting %s more for the machine to go down, "
                   "out of the pool, and not asking again", st->step, st->result ? "accepted" : "sent",
                   format_duration(d, sizeof d, left));
        a->remedy_timer = sd_event_source_disable_unref(a->remedy_timer);
        r = sd_event_add_time_relative(a->event, &a->remedy_timer, CLOCK_BOOTTIME, MAX(left, USEC_PER_MSEC),
                                       USEC_PER_SEC, on_awaited_reboot_overdue, a);
        if (r < 0) {
                log_warning_errno(r, "remedy: cannot time the reboot: %m; checking now");
                a->reboot_awaited = false;
                return r;
        }
        return 0;
}

static void on_ec2_reboot(const Ec2Result *res, void *userdata) {
        Agent *a = userdata;
        char text[600];

        if (!a->remedy_running)
                return;
        a->remedy_deadline = sd_event_source_disable_unref(a->remedy_deadline);
        if (res->outcome == EC2_REBOOTING) {
                if (res->uncertain)
                        /* no "accepted": EC2 never said so, but it may reboot us any moment */
                        snprintf(text, sizeof text,
                                 "%s: EC2 never answered the reboot of %s, so it may have taken it: staying out of the "
                                 "pool and waiting for the reboot (%s)",
                                 a->config->agent.host, strna(aws_instance_id(a->aws)), res->detail);
                else
                        snprintf(text, sizeof text, "%s: EC2 accepted the reboot of %s (request id %s)",
                                 a->config->agent.host, strna(aws_instance_id(a->aws)), res->request_id);
                /* spooled now, delivered after the boot if the reboot is quick */
                alerts_step_result(a->alerts, text, res->request_id);
                wait_for_reboot(a, res->detail);
                return;
        }
        /* EC2 answered no: it will not reboot us, a later step may ask again */
        reboot_requested_clear(a);
        step_failed(a, res->detail);
}

/* The reboot is on disk (or the disk refused it): now it may go out. */
static void on_reboot_recorded(void *userdata, uint64_t gen, int error) {
        Agent *a = userdata;
        char why[200];
        int r;

        if (!a->remedy_running || gen != a->remedy_gen || !a->aws || a->stopping)
                return; /* cancelled meanwhile (drain, the step's deadline, a stop): nothing goes out */
        if (error < 0) {
                reboot_requested_clear(a);
                snprintf(why, sizeof why, "cannot record the reboot in state.json (%s): not sending it",
                         strerror(-error));
                step_failed(a, why);
                return;
        }
        r = aws_reboot(a->aws, false, on_ec2_reboot, a);
        if (r < 0) {
                reboot_requested_clear(a);
                snprintf(why, sizeof why, "cannot call EC2: %s", strerror(-r));
                step_failed(a, why);
        }
}

/* Identity and credentials are there: write the reboot down, then send it. */
static void on_aws_ready(Aws *aws, void *userdata) {
        Agent *a = userdata;
        char why[200];
        int r;

        if (!a->remedy_running)
                return;
        /* Before it goes out: an agent killed while the call is in flight
         * (SIGKILL, OOM) and restarted in this boot must know that a
         * reboot may be due, and never send a second one. */
        a->persist.reboot_requested.at = agent_now_wall(a);
        a->persist.reboot_requested.boottime = now_boottime(a);
        memcpy(a->persist.reboot_requested.boot_id, a->boot_id, sizeof a->persist.reboot_requested.boot_id);
        r = agent_persist_save_then(a, on_reboot_recorded, a->remedy_gen);
        if (r < 0) {
                reboot_requested_clear(a);
                snprintf(why, sizeof why, "cannot record the reboot in state.json (%s): not sending it", strerror(-r));
                step_failed(a, why);
        }
}

/* [remedy] step_timeout: the step's call never answered (IMDS down, EC2
 * or D-Bus hanging). It fails and the ladder moves on; the budget slot it
 * held is given back if the ladder runs out (step_start). */
static int on_step_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        Agent *a = userdata;
        const Config *c = a->config;
        const char *who = "the step", *last = NULL;
        char why[520], text[700];

        a->remedy_deadline = sd_event_source_disable_unref(a->remedy_deadline);
        if (!a->remedy_running || a->ladder_pos >= c->remedy.ladder_len)
                return 0;
        a->remedy_gen++; /* a reboot still waiting for the disk does not go out */
        switch (c->remedy.ladder[a->ladder_pos]) {
        case REMEDY_REBOOT_INSTANCE:
                if (a->aws) {
                        const char *w = aws_waiting_for(a->aws, &last);
                        who = w ? w : "EC2";
                        aws_cancel(a->aws);
                }
                if (reboot_requested_here(a)) {
                        /* it went out and no answer came: EC2 may still act on it */
                        snprintf(why, sizeof why,
                                 "EC2 did not answer RebootInstances within %llu s%s%.200s%s; it may have taken it: "
                                 "waiting for the reboot",
                                 (unsigned long long) (c->remedy.step_timeout / USEC_PER_SEC), last ? " (last: " : "",
                                 strempty(last), last ? ")" : "");
                        snprintf(text, sizeof text, "%s: %s", c->agent.host, why);
                        alerts_step_result(a->alerts, text, NULL);
                        wait_for_reboot(a, why);
                        return 0;
                }
                break;
        case REMEDY_RESTART_UNIT:
                who = "systemd";
                if (a->sysbus)
                        sysbus_cancel(a->sysbus);
                break;
        case REMEDY_LOCAL_REBOOT:
                who = "logind";
                if (a->sysbus)
                        sysbus_cancel(a->sysbus);
                break;
        default:
                break;
        }
        snprintf(why, sizeof why, "%s did not answer within %llu s%s%.300s%s", who,
                 (unsigned long long) (c->remedy.step_timeout / USEC_PER_SEC), last ? " (last error: " : "",
                 strempty(last), last ? ")" : "");
        a->remedy_timed_out = true;
        step_failed(a, why);
        return 0;
}

static void on_local_reboot(int error, const char *detail, void *userdata) {
        Agent *a = userdata;

        if (!a->remedy_running)
                return;
        a->remedy_deadline = sd_event_source_disable_unref(a->remedy_deadline);
        if (error < 0) {
                step_failed(a, detail);
                return;
        }
        wait_for_reboot(a, detail);
}

static int on_settled(sd_event_source *s, uint64_t usec, void *userdata) {
        Agent *a = userdata;
        _cleanup_(freep) char *step = remedy_step_describe(a->config, a->ladder_pos);
        double busy = a->cpu_have_usage ? a->cpu_last_busy : NAN;
        char why[200];

        a->remedy_timer = sd_event_source_disable_unref(a->remedy_timer);
        if (!isnan(busy) && busy < a->config->cpu.clear_below) {
                snprintf(why, sizeof why, "%s: CPU fell to %.1f%% (< %.0f%%)", strna(step), busy,
                         a->config->cpu.clear_below);
                step_result(a, why);
                a->remedy_running = false;
                agent_post_event(a, EVENT_REMEDY_DONE, why);
                return 0;
        }
        snprintf(why, sizeof why, "CPU still %.1f%% after the restart (clear below %.0f%%)", busy,
                 a->config->cpu.clear_below);
        step_failed(a, why);
        return 0;
}

static void on_unit_restarted(int error, const char *detail, void *userdata) {
        Agent *a = userdata;
        char d[32], text[300];
        int r;

        if (!a->remedy_running)
                return;
        a->remedy_deadline = sd_event_source_disable_unref(a->remedy_deadline);
        if (error < 0) {
                step_failed(a, detail);
                return;
        }
        snprintf(text, sizeof text, "%s; giving the load %s to settle", detail,
                 format_duration(d, sizeof d, a->config->remedy.settle));
        step_result(a, text);
        log_notice("remedy: %s", text);
        r = sd_event_add_time_relative(a->event, &a->remedy_timer, CLOCK_BOOTTIME, a->config->remedy.settle,
                                       USEC_PER_MSEC, on_settled, a);
        if (r < 0)
                step_failed(a, "cannot time the settle period");
}

static void step_start(Agent *a) {
        const Config *c = a->config;
        _cleanup_(freep) char *step = NULL, *why = NULL;
        int r;

        if (a->ladder_pos >= c->remedy.ladder_len) {
                bool release = a->remedy_timed_out && a->pool;

                a->remedy_running = false;
                a->remedy_deadline = sd_event_source_disable_unref(a->remedy_deadline);
                /* A remediation that got no answer must not hold the budget
                 * until out_max: out of serving it stays (QUARANTINED), but
                 * the slot goes to the rest of the fleet. */
                if (release)
                        pool_release(a->pool);
                if (asprintf(&why, "every step of the ladder failed; the last: %s%s", strna(a->remedy_last_failure),
                             release ? "; staying out of the pool, no longer counted against max_unavailable" : "") < 0)
                        why = NULL;
                agent_post_event(a, EVENT_REMEDY_FAILED, why ? why : "every step of the ladder failed");
                return;
        }
        step = remedy_step_describe(c, a->ladder_pos);
        if (!step) {
                step_failed(a, "out of memory");
                return;
        }

        /* written down and announced before it is taken; not taken if
         * it cannot be written down. The disk answers off the loop:
         * step_recorded() announces, step_take() takes. */
        (void) incident_step_add(&a->persist.incident, step, agent_now_wall(a));
        r = agent_persist_save_then(a, step_recorded, ++a->remedy_gen);
        if (r < 0)
                step_recorded(a, a->remedy_gen, r);
}

/* This step's callbacks, unless the ladder was cancelled (or restarted)
 * meanwhile or the agent is stopping. */
static bool step_current(Agent *a, uint64_t gen) {
        if (a->stopping || !a->remedy_running || gen != a->remedy_gen)
                return false;
        if (a->ladder_pos < a->config->remedy.ladder_len)
                return true;
        step_start(a); /* a reload shortened the ladder: it ends here */
        return false;
}

/* The current step and its description for a completion of generation
 * gen; NULL when that completion is stale (or out of memory: then the
 * step has failed). */
static char *step_resume(Agent *a, uint64_t gen, RemedyStep *ret_step) {
        char *step;

        if (!step_current(a, gen))
                return NULL;
        *ret_step = a->config->remedy.ladder[a->ladder_pos];
        step = remedy_step_describe(a->config, a->ladder_pos);
        if (!step)
                step_failed(a, "out of memory");
        return step;
}

/* The step is in state.json, or the disk refused it (error). */
static void step_recorded(void *userdata, uint64_t gen, int error) {
        Agent *a = userdata;
        const Config *c = a->config;
        _cleanup_(freep) char *step = NULL, *text = NULL, *why = NULL;
        RemedyStep st;
        int r = error;

        step = step_resume(a, gen, &st);
        if (!step)
                return;
        if (r < 0) {
                a->remedy_running = false;
                if (asprintf(&why, "cannot record the step %s in state.json (%s): not taking it", step,
                             strerror(-r)) < 0)
                        why = NULL;
                (void) incident_step_result(&a->persist.incident, why ? why : "not recorded, not taken");
                agent_post_event(a, EVENT_REMEDY_FAILED, why ? why : "cannot record the step");
                return;
        }
        /* A dry run never gets here (machine.c: it is told on the breach
         * and never leaves); a reload that turns dry_run on under way does
         * not stop a remediation that began for real. */
        if (asprintf(&text, "%s: %s%s%s", c->agent.host, step, a->ladder_pos > 0 ? ", after " : "",
                     a->ladder_pos > 0 ? strna(a->remedy_last_failure) : "") < 0)
                text = NULL;
        alerts_remediating(a->alerts, step, text ? text : step, a->ladder_pos > 0 ? a->remedy_last_failure : NULL);

        /* taken once the alert that announces it is on disk */
        if (agent_after_writes(a, step_take, gen) < 0)
                step_take(a, gen, 0);
}

static void step_take(void *userdata, uint64_t gen, int error) {
        Agent *a = userdata;
        const Config *c = a->config;
        _cleanup_(freep) char *step = NULL;
        RemedyStep st;
        int r;

        step = step_resume(a, gen, &st);
        if (!step)
                return;
        /* a call that never answers (IMDS down, a hung bus) must not keep
         * the host in REMEDIATING, holding a slot of the budget, forever */
        a->remedy_deadline = sd_event_source_disable_unref(a->remedy_deadline);
        r = sd_event_add_time_relative(a->event, &a->remedy_deadline, CLOCK_BOOTTIME, c->remedy.step_timeout,
                                       USEC_PER_MSEC, on_step_deadline, a);
        if (r < 0)
                log_warning_errno(r, "remedy: cannot time the step, it runs without a deadline: %m");

        switch (st) {
        case REMEDY_RESTART_UNIT:
                r = a->sysbus ? sysbus_restart_unit(a->sysbus, step + strlen("restart-unit:"), RESTART_TIMEOUT,
                                                    on_unit_restarted, a)
                              : -ENOTCONN;
                break;
        case REMEDY_REBOOT_INSTANCE:
                if (!a->aws) {
                        step_failed(a, "no [aws] section: cannot reboot through EC2");
                        return;
                }
                if (reboot_requested_here(a)) {
                        char when[32], d[200];
                        snprintf(d, sizeof d,
                                 "RebootInstances was already sent in this boot (%s) and the machine did not go "
                                 "down: not sending a second one",
                                 format_iso8601(when, sizeof when, a->persist.reboot_requested.at));
                        step_failed(a, d);
                        return;
                }
                r = aws_when_ready(a->aws, on_aws_ready, a);
                break;
        case REMEDY_LOCAL_REBOOT:
                r = a->sysbus ? sysbus_reboot(a->sysbus, LOCAL_REBOOT_TIMEOUT, on_local_reboot, a) : -ENOTCONN;
                break;
        case REMEDY_NONE:
                /* A rehearsal of the routing path: out, drained, nothing
                 * done to the host, then the checks decide the rejoin. */
                step_result(a, "none: nothing done to the host; checking, then rejoining");
                a->remedy_running = false;
                agent_post_event(a, EVENT_REMEDY_DONE, "ladder step none: nothing done to the host");
                return;
        default:
                r = -EINVAL;
        }
        if (r < 0) {
                char d[160];
                snprintf(d, sizeof d, "cannot start %s: %s", step, strerror(-r));
                step_failed(a, d);
        }
}

int remedy_run(Agent *a) {
        remedy_cancel(a);
        a->ladder_pos = 0;
        a->remedy_timed_out = false;
        free(a->remedy_last_failure);
        a->remedy_last_failure = NULL;
        a->remedy_running = true;
        step_start(a);
        return 0;
}

/* --- monkeyctl test-reboot --- */

static void test_reboot_answer(Agent *a, bool ok, const char *message) {
        if (a->reboot_test_ticket == 0)
                return;
        control_server_answer(a->control, a->reboot_test_ticket, ok, message, NULL);
        a->reboot_test_ticket = 0;
        a->reboot_test_deadline = sd_event_source_disable_unref(a->reboot_test_deadline);
}

static void on_test_reboot(const Ec2Result *res, void *userdata) {
        Agent *a = userdata;
        char m[600];

        snprintf(m, sizeof m, "%s: %s", ec2_outcome_to_string(res->outcome), res->detail);
        test_reboot_answer(a, res->outcome == EC2_PERMITTED, m);
}

static int on_test_reboot_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        Agent *a = userdata;
        _cleanup_(json_object_putp) json_object *st = a->aws ? aws_status_json(a->aws) : NULL;
        json_object *v;
        char m[400];

        snprintf(m, sizeof m, "no verdict within %llus (AWS identity: %s)",
                 (unsigned long long) (TEST_REBOOT_DEADLINE / USEC_PER_SEC),
                 st && json_object_object_get_ex(st, "last_error", &v) ? json_object_get_string(v) : "still fetching");
        test_reboot_answer(a, false, m);
        return 0;
}

int remedy_test_reboot(Agent *a, uint64_t ticket, char **ret_message) {
        int r;

        if (!a->aws) {
                *ret_message = strdup("no EC2 step to test: the ladder has no reboot-instance, or there is no [aws]");
                return -ENOTCONN;
        }
        if (a->reboot_test_ticket != 0) {
                *ret_message = strdup("a test is already running");
                return -EBUSY;
        }
        r = aws_self_test(a->aws, on_test_reboot, a);
        if (r < 0) {
                *ret_message = strdup(r == -EBUSY ? "EC2 is busy (a remediation runs); try again" : "cannot call EC2");
                return r;
        }
        a->reboot_test_ticket = ticket;
        r = sd_event_add_time_relative(a->event, &a->reboot_test_deadline, CLOCK_MONOTONIC, TEST_REBOOT_DEADLINE,
                                       USEC_PER_SEC, on_test_reboot_deadline, a);
        if (r < 0)
                log_warning_errno(r, "remedy: cannot time the test: %m");
        return 0;
}

json_object *remedy_status_json(Agent *a) {
        json_object *o = json_object_new_object(), *ladder = json_object_new_array();

        if (!o || !ladder) {
                json_object_put(o);
                json_object_put(ladder);
                return NULL;
        }
        for (size_t i = 0; i < a->config->remedy.ladder_len; i++) {
                _cleanup_(freep) char *s = remedy_step_describe(a->config, i);
                json_object_array_add(ladder, json_object_new_string(strna(s)));
        }
        json_object_object_add(o, "ladder", ladder);
        json_object_object_add(o, "running", json_object_new_boolean(a->remedy_running));
        json_object_object_add(o, "awaiting_reboot", json_object_new_boolean(a->reboot_awaited));
        /* RebootInstances went out in this boot: no second one until a new boot */
        if (reboot_requested_here(a)) {
                char when[32];
                json_object_object_add(o, "reboot_requested_at",
                                       json_object_new_string(format_iso8601(when, sizeof when,
                                                                             a->persist.reboot_requested.at)));
        }
        json_object_object_add(o, "step", a->remedy_running ? json_object_new_int((int) a->ladder_pos) : NULL);
        json_object_object_add(o, "aws", a->aws ? aws_status_json(a->aws) : NULL);
        return o;
}
