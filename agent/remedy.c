/* The ladder, one step at a time, on the loop. */
#include "remedy.h"

#include <math.h>

#include "agent.h"
#include "alerts.h"
#include "aws.h"
#include "log.h"
#include "sysbus.h"

#define RESTART_TIMEOUT (90 * USEC_PER_SEC)   /* systemd's default stop+start timeouts fit */
#define LOCAL_REBOOT_TIMEOUT (30 * USEC_PER_SEC)
#define TEST_REBOOT_DEADLINE (60 * USEC_PER_SEC)

char *remedy_step_describe(const Config *c, size_t i) {
        char *s = NULL;
        RemedyStep st = c->remedy.ladder[i];

        if (st == REMEDY_RESTART_UNIT) {
                const char *unit = c->remedy.ladder_unit[i] ? c->remedy.ladder_unit[i] : c->remedy.unit;
                if (asprintf(&s, "restart-unit:%s", strna(unit)) < 0)
                        return NULL;
                return s;
        }
        return strdup(remedy_step_to_string(st));
}

static void aws_permission_changed(Aws *aws, AwsPermission p, const char *detail, void *userdata) {
        Agent *a = userdata;
        char text[512];

        if (p != AWS_PERMISSION_DENIED)
                return;
        /* found at start, not at the moment of need */
        snprintf(text, sizeof text, "%s cannot reboot itself through EC2: %s", a->config->agent.host, strna(detail));
        alerts_notify(a, NOTICE_PERMISSION, text, detail);
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
                if (!a->http) {
                        r = http_new(a->event, &a->http);
                        if (r < 0)
                                return r;
                }
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

void remedy_cancel(Agent *a) {
        a->remedy_timer = sd_event_source_disable_unref(a->remedy_timer);
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

        (void) incident_step_result(i, accepted);
        /* A restart before the machine goes down must know that a reboot
         * is due (remedy_await_reboot), not ask for another. */
        if (i->n_steps > 0)
                i->steps[i->n_steps - 1].awaiting_reboot = true;
        agent_persist_save(a);
        log_notice("remedy: %s; waiting for the machine to go down", accepted);
        reboot_timer_arm(a, a->config->remedy.reboot_timeout);
}

static int on_awaited_reboot_overdue(sd_event_source *s, uint64_t usec, void *userdata) {
        Agent *a = userdata;
        const IncidentStep *st = incident_reboot_awaited(&a->persist.incident);
        char why[200], d[32];

        a->remedy_timer = sd_event_source_disable_unref(a->remedy_timer);
        a->reboot_awaited = false;
        snprintf(why, sizeof why, "%s was accepted but the machine was still running %s later",
                 st ? st->step : "the reboot", format_duration(d, sizeof d, a->config->remedy.reboot_timeout));
        log_warning("remedy: %s", why);
        step_result(a, why);
        (void) agent_post_event(a, EVENT_CHECKS_FAILED, why);
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
        /* Counted from the step. A wall clock stepped back cannot make the
         * wait longer than reboot_timeout, nor one stepped ahead shorter
         * than nothing. */
        if (now >= st->at)
                left = now - st->at >= timeout ? 0 : timeout - (now - st->at);
        log_notice("remedy: %s was accepted before this restart; waiting %s more for the machine to go down, "
                   "out of the pool", st->step, format_duration(d, sizeof d, left));
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
                alerts_step_result(a, text, res->request_id);
                wait_for_reboot(a, res->detail);
                return;
        }
        step_failed(a, res->detail);
}

static void on_local_reboot(int error, const char *detail, void *userdata) {
        Agent *a = userdata;

        if (!a->remedy_running)
                return;
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
                (void) agent_post_event(a, EVENT_REMEDY_DONE, why);
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
        _cleanup_(freep) char *step = NULL, *text = NULL, *why = NULL;
        RemedyStep st;
        int r;

        if (a->ladder_pos >= c->remedy.ladder_len) {
                a->remedy_running = false;
                if (asprintf(&why, "every step of the ladder failed; the last: %s", strna(a->remedy_last_failure)) < 0)
                        why = NULL;
                (void) agent_post_event(a, EVENT_REMEDY_FAILED, why ? why : "every step of the ladder failed");
                return;
        }
        st = c->remedy.ladder[a->ladder_pos];
        step = remedy_step_describe(c, a->ladder_pos);
        if (!step) {
                step_failed(a, "out of memory");
                return;
        }

        /* written down and announced before it is taken; not taken if
         * it cannot be written down */
        (void) incident_step_add(&a->persist.incident, step, agent_now_wall(a));
        r = agent_persist_save(a);
        if (r < 0) {
                a->remedy_running = false;
                if (asprintf(&why, "cannot record the step %s in state.json (%s): not taking it", step,
                             strerror(-r)) < 0)
                        why = NULL;
                (void) incident_step_result(&a->persist.incident, why ? why : "not recorded, not taken");
                (void) agent_post_event(a, EVENT_REMEDY_FAILED, why ? why : "cannot record the step");
                return;
        }
        if (asprintf(&text, "%s: %s%s%s%s", c->agent.host, c->remedy.dry_run ? "DRY RUN: would " : "", step,
                     a->ladder_pos > 0 ? ", after " : "", a->ladder_pos > 0 ? strna(a->remedy_last_failure) : "") < 0)
                text = NULL;
        alerts_remediating(a, step, text ? text : step, a->ladder_pos > 0 ? a->remedy_last_failure : NULL);

        if (c->remedy.dry_run) {
                if (asprintf(&why, "DRY RUN: would %s%s%s", step, st == REMEDY_REBOOT_INSTANCE ? " " : "",
                             st == REMEDY_REBOOT_INSTANCE ? strempty(aws_instance_id(a->aws)) : "") < 0)
                        why = NULL;
                step_result(a, why ? why : "DRY RUN");
                a->remedy_running = false;
                (void) agent_post_event(a, EVENT_REMEDY_DONE, why ? why : "DRY RUN");
                return;
        }

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
                r = aws_reboot(a->aws, false, on_ec2_reboot, a);
                break;
        case REMEDY_LOCAL_REBOOT:
                r = a->sysbus ? sysbus_reboot(a->sysbus, LOCAL_REBOOT_TIMEOUT, on_local_reboot, a) : -ENOTCONN;
                break;
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
        json_object_object_add(o, "step", a->remedy_running ? json_object_new_int((int) a->ladder_pos) : NULL);
        json_object_object_add(o, "aws", a->aws ? aws_status_json(a->aws) : NULL);
        return o;
}
