#include "agent.h"

#include <inttypes.h>
#include <math.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "alerts.h"
#include "backoff.h"
#include "capture.h"
#include "checkrun.h"
#include "checks.h"
#include "clock.h"
#include "random.h"
#include "remedy.h"
#include "history.h"
#include "httpserver.h"
#include "log.h"
#include "metrics.h"
#include "netaddr.h"
#include "outbox.h"
#include "parse.h"

/* A fixed id so journalctl MESSAGE_ID=… finds every transition. */
#define MESSAGE_ID_TRANSITION "MESSAGE_ID=6d6f6e6b6579640a8c1e3f0b2a7d4e51"

#define RETRY_BASE_USEC (5 * USEC_PER_SEC)
#define RETRY_MAX_USEC (5 * USEC_PER_MINUTE)

static usec_t agent_now_wall(Agent *a) {
        return clock_loop_now(a ? a->event : NULL, CLOCK_REALTIME);
}

static usec_t agent_now_guard(Agent *a) {
        usec_t wall = agent_now_wall(a), boot = clock_loop_now(a->event, CLOCK_BOOTTIME), steady;

        if (a->persist.anchor_wall == 0 || boot < a->persist.anchor_boottime)
                return wall;
        steady = a->persist.anchor_wall + (boot - a->persist.anchor_boottime);
        return MIN(wall, steady);
}

/* The agent's own retries (pool join/leave, readiness): base/backoff.h's
 * schedule between RETRY_BASE_USEC and RETRY_MAX_USEC. */
static usec_t retry_delay(unsigned attempt) {
        return backoff_delay(RETRY_BASE_USEC, RETRY_MAX_USEC, attempt, random_u64());
}

static json_object *json_iso_or_null(usec_t wall) {
        char buf[32];
        return wall ? json_object_new_string(format_iso8601(buf, sizeof buf, wall)) : NULL;
}

static json_object *json_pct_or_null(bool have, double v) {
        if (!have || isnan(v))
                return NULL;
        return json_object_new_double(round(v * 10.0) / 10.0);
}

static void sd_notify_status(Agent *a) {
        char buf[256];
        snprintf(buf, sizeof buf, "STATUS=%s: %s", state_to_string(a->state), strna(a->state_reason));
        sd_notify(0, buf);
}

/* ---- history and transitions ---- */

static json_object *transition_json(Agent *a, const Transition *t, const char *reason) {
        char buf[32];
        usec_t wall = agent_now_wall(a);
        json_object *o = json_object_new_object();
        json_object_object_add(o, "at", json_object_new_string(format_iso8601(buf, sizeof buf, wall)));
        json_object_object_add(o, "at_unix", json_object_new_double((double) wall / USEC_PER_SEC));
        json_object_object_add(o, "from", json_object_new_string(state_to_string(t->from)));
        json_object_object_add(o, "to", json_object_new_string(state_to_string(t->to)));
        json_object_object_add(o, "event", json_object_new_string(event_to_string(t->event)));
        json_object_object_add(o, "action", json_object_new_string(action_to_string(t->action)));
        json_object_object_add(o, "reason", reason ? json_object_new_string(reason) : NULL);
        return o;
}

/* The line for o in state_dir/history.jsonl (history.h: why no fsync),
 * and the file cut back to the ring once it holds twice as much. */
static void history_persist(Agent *a, json_object *o) {
        json_object *ordered[AGENT_HISTORY_MAX];

        if (!a->history_file || history_file_append(a->history_file, o) <= 0)
                return;
        for (size_t k = 0; k < a->history_len; k++)
                ordered[k] = a->history[(a->history_head + k) % AGENT_HISTORY_MAX];
        (void) history_file_rewrite(a->history_file, ordered, a->history_len);
}

static void history_add(Agent *a, json_object *o) {
        size_t slot = (a->history_head + a->history_len) % AGENT_HISTORY_MAX;
        if (a->history_len == AGENT_HISTORY_MAX) {
                json_object_put(a->history[a->history_head]);
                slot = a->history_head;
                a->history_head = (a->history_head + 1) % AGENT_HISTORY_MAX;
        } else
                a->history_len++;
        a->history[slot] = json_object_get(o);
        history_persist(a, o);
}

/* A save's outcome, once the disk answered (the writer thread ran it). */
static void on_persisted(void *userdata, uint64_t cookie, int error) {
        Agent *a = userdata;

        if (error < 0) {
                /* the old file is intact */
                if (a->persist_failures++ == 0)
                        a->persist_failing_since = agent_now_wall(a);
                a->persist_error = error;
                log_warning_errno(error, "Cannot save %s/state.json: %m; running on, what it must remember is kept in "
                                         "memory and written with the next save that works",
                                  a->config->agent.state_dir);
                return;
        }
        if (a->persist_failures > 0)
                log_notice("%s/state.json saved again after %" PRIu64 " failed save(s)", a->config->agent.state_dir,
                           a->persist_failures);
        a->persist_failures = 0;
        a->persist_failing_since = 0;
        a->persist_error = 0;
}

/* This moment's state, queued on the writer: saves land in the order they
 * were made, behind every alert spooled before. */
static int persist_save_to(Agent *a, void (*done)(void *userdata, uint64_t cookie, int error), void *done_userdata,
                           uint64_t cookie) {
        WriterDone d[] = { { on_persisted, a, 0 }, { done, done_userdata, cookie } };
        int r;

        memcpy(a->persist.boot_id, a->boot_id, sizeof a->persist.boot_id);
        a->persist.state = a->state;
        a->persist.since = a->state_since_wall;
        free(a->persist.reason);
        a->persist.reason = a->state_reason ? strdup(a->state_reason) : NULL;
        r = state_save_queued(a->writer, a->config->agent.state_dir, &a->persist, d, done ? 2 : 1);
        if (r < 0)
                on_persisted(a, 0, r);
        return r;
}

static int persist_save_then(Agent *a, void (*done)(void *a, uint64_t cookie, int error), uint64_t cookie) {
        return persist_save_to(a, done, a, cookie);
}

static int persist_save(Agent *a) {
        return persist_save_then(a, NULL, 0);
}

static int agent_after_writes(Agent *a, void (*done)(void *a, uint64_t cookie, int error), uint64_t cookie) {
        return writer_barrier(a->writer, &(WriterDone) { done, a, cookie });
}

/* The remediation counted at `at` is on disk (or the disk refused it). */
static void on_remediation_recorded(void *userdata, uint64_t at, int error) {
        Agent *a = userdata;
        _cleanup_(freep) char *text = NULL;
        size_t n = a->persist.n_remediations;

        /* stopping, an operator stepped in meanwhile, or not this one's */
        if (a->stopping || a->state != STATE_REMEDIATING || remedy_is_running(a->remedy) || n == 0 ||
            a->persist.remediations[n - 1] != at)
                return;
        if (error < 0) {
                /* It did not happen: not counted. (An oldest entry dropped
                 * to make room for it stays dropped: past any window.) */
                a->persist.n_remediations--;
                if (asprintf(&text, "cannot record the remediation in %s/state.json (%s): not remediating "
                                    "what the reboot-loop guard could not count",
                             a->config->agent.state_dir, strerror(-error)) < 0)
                        text = NULL;
                agent_post_event(a, EVENT_REMEDY_FAILED, text ? text : "cannot record the remediation");
                return;
        }
        /* each ladder step is recorded and announced by remedy.c */
        (void) remedy_run(a->remedy);
}

static void incident_open(Agent *a, const char *reason) {
        Incident *i = &a->persist.incident;
        char stamp[32];
        time_t t;
        struct tm tm;

        if (i->id && i->ended == 0)
                return; /* one incident per overload, even across HOLDING re-asks */
        incident_clear(i);

        i->started = agent_now_wall(a);
        t = (time_t) (i->started / USEC_PER_SEC);
        if (!gmtime_r(&t, &tm) || strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm) == 0)
                snprintf(stamp, sizeof stamp, "%llu", (unsigned long long) t);
        if (asprintf(&i->id, "%s-%s", stamp, a->config->agent.host) < 0)
                i->id = NULL;
        i->reason = reason ? strdup(reason) : NULL;
}

static void incident_close(Agent *a, const char *outcome) {
        Incident *i = &a->persist.incident;
        if (!i->id || i->ended != 0)
                return;
        i->ended = agent_now_wall(a);
        free(i->outcome);
        i->outcome = strdup(outcome);
}

/* ---- what Alerts asks of its owner ---- */

static void alerts_facts(void *userdata, bool serving, AlertsFacts *ret) {
        Agent *a = userdata;

        *ret = (AlertsFacts) {
                .cpu_now = a->cpu_have_usage ? a->cpu_last_busy : -1,
                .cpu_window = detector_window_pct(&a->detector),
                .instance_id = remedy_instance_id(a->remedy),
                .pool = !!a->pool,
                .serving = -1,
        };
        if (a->pool)
                pool_budget_effective(a->pool, &ret->min_serving, &ret->max_unavailable);
        if (serving && a->pool) {
                _cleanup_(json_object_putp) json_object *st = pool_status_json(a->pool);
                json_object *v;

                if (st && json_object_object_get_ex(st, "serving_count", &v) && json_object_is_type(v, json_type_int))
                        ret->serving = json_object_get_int64(v);
        }
}

static json_object *alerts_last_checks(void *userdata) {
        Agent *a = userdata;

        return a->last_checks;
}

static void alerts_thread(void *userdata, const char *incident, const char *ts) {
        Agent *a = userdata;
        Incident *i = &a->persist.incident;

        if (!i->id || !streq(i->id, incident) || streq_ptr(i->slack_thread, ts))
                return;
        free(i->slack_thread);
        i->slack_thread = strdup(ts);
        /* the thread must outlive the reboot that comes next */
        persist_save(a);
}

static void alerts_test_answer(void *userdata, uint64_t ticket, bool ok, const char *message, json_object *extra) {
        Agent *a = userdata;

        control_server_answer(a->control, ticket, ok, message, extra);
}

static void on_fleet_reply(PoolLink *l, const char *what, const redisReply *r, const char *detail, bool current,
                           void *userdata) {
        Agent *a = userdata;

        /* Alerts goes before the pool at the end: late answers find it gone */
        if (a->alerts)
                alerts_fleet_reply(a->alerts, what, r, detail);
}

static int alerts_redis(void *userdata, const char *what, size_t argc, const char *const *argv) {
        Agent *a = userdata;

        if (!a->pool)
                return -ENOTCONN;
        return pool_command(a->pool, what, argc, argv, on_fleet_reply, a);
}

static const AlertsSink alerts_sink = {
        .facts = alerts_facts,
        .last_checks = alerts_last_checks,
        .thread = alerts_thread,
        .test_answer = alerts_test_answer,
        .redis = alerts_redis,
};

static void on_pool_connection(Pool *p, bool connected, const char *detail, void *userdata) {
        Agent *a = userdata;

        a->redis_connected = connected;
        alerts_pool_connection(a->alerts, connected, detail);
}

/* The breach flow: the evidence on disk (the incident's summary, queued
 * on the writer, and the profile started) before the alert that points at
 * it is spooled, and both before anything is done to the host. */
static void breach_announce(Agent *a, const char *text, const char *reason) {
        _cleanup_(freep) char *pressure = NULL, *evidence = NULL;

        const Incident *i = &a->persist.incident;
        char started[32];

        alerts_rank_top(a->alerts);
        if (i->id) {
                CaptureBreach b = {
                        .id = i->id,
                        .reason = i->reason,
                        .started = format_iso8601(started, sizeof started, i->started),
                        .top = alerts_evidence_json(a->alerts),
                        .top_since_start = alerts_top_since_start(a->alerts),
                        .counters = &a->cpu_prev,
                };
                capture_breach(a->capture, &b, &pressure);
                evidence = capture_breach_line(a->capture, i->id);
        }
        alerts_breach(a->alerts, text, reason, pressure, evidence);
}

/* ---- what Capture tells its owner ---- */

static void capture_profile(void *userdata, const char *incident, const char *text, const char *detail) {
        Agent *a = userdata;

        alerts_profile(a->alerts, incident, text, detail);
}

static void drain_maybe_over(Agent *a, const char *reason);

static void capture_drain_released(void *userdata) {
        drain_maybe_over(userdata, "drain grace over, evidence captured");
}

static const CaptureSink capture_sink = {
        .profile = capture_profile,
        .drain_released = capture_drain_released,
};

/* ---- what the ladder asks of its owner ---- */

static void remedy_post(void *userdata, Event e, const char *reason) {
        agent_post_event(userdata, e, reason);
}

/* The ladder's part of state.json, written here only: the incident's
 * steps and the reboot it asked for. */
static void remedy_record_step(void *userdata, const char *step, usec_t at) {
        Agent *a = userdata;

        (void) incident_step_add(&a->persist.incident, step, at);
}

static void remedy_record_step_result(void *userdata, const char *result) {
        Agent *a = userdata;
        const Incident *i = &a->persist.incident;
        char kind[48] = "unknown";

        (void) incident_step_result(&a->persist.incident, result);
        /* the step's kind ("restart-unit", not the unit) and a word for
         * the result: labels stay few */
        if (i->n_steps > 0 && i->steps[i->n_steps - 1].step)
                snprintf(kind, sizeof kind, "%.*s", (int) strcspn(i->steps[i->n_steps - 1].step, ": "),
                         i->steps[i->n_steps - 1].step);
        metrics_remediation(a->metrics, kind,
                            !result                         ? "failed"
                            : strstr(result, "accepted")    ? "accepted"
                            : strstr(result, "fail") || strstr(result, "not ") || strstr(result, "still ") ? "failed"
                                                                                                         : "ok");
}

static void remedy_record_reboot_awaited(void *userdata, bool awaited) {
        Agent *a = userdata;
        Incident *i = &a->persist.incident;

        if (awaited) {
                if (i->n_steps > 0)
                        i->steps[i->n_steps - 1].awaiting_reboot = true;
                return;
        }
        for (size_t k = 0; k < i->n_steps; k++)
                i->steps[k].awaiting_reboot = false;
}

static void remedy_record_reboot_requested(void *userdata, usec_t at, usec_t boottime) {
        Agent *a = userdata;

        a->persist.reboot_requested.at = at;
        a->persist.reboot_requested.boottime = boottime;
        memcpy(a->persist.reboot_requested.boot_id, a->boot_id, sizeof a->persist.reboot_requested.boot_id);
}

static void remedy_clear_reboot_requested(void *userdata) {
        Agent *a = userdata;

        a->persist.reboot_requested.at = 0;
        a->persist.reboot_requested.boottime = 0;
        a->persist.reboot_requested.boot_id[0] = '\0';
}

static int remedy_save(void *userdata, remedy_done_t done, void *done_userdata, uint64_t cookie) {
        return persist_save_to(userdata, done, done_userdata, cookie);
}

static int remedy_after_writes(void *userdata, remedy_done_t done, void *done_userdata, uint64_t cookie) {
        Agent *a = userdata;

        return writer_barrier(a->writer, &(WriterDone) { done, done_userdata, cookie });
}

static usec_t remedy_now_wall(void *userdata) {
        return agent_now_wall(userdata);
}

static usec_t remedy_now_guard(void *userdata) {
        return agent_now_guard(userdata);
}

static double remedy_cpu_busy(void *userdata) {
        Agent *a = userdata;

        return a->cpu_have_usage ? a->cpu_last_busy : NAN;
}

static bool remedy_stopping(void *userdata) {
        Agent *a = userdata;

        return a->stopping;
}

static bool remedy_release_slot(void *userdata) {
        Agent *a = userdata;

        if (!a->pool)
                return false;
        pool_release(a->pool);
        return true;
}

static void remedy_remediating(void *userdata, const char *step, const char *text, const char *after) {
        Agent *a = userdata;

        alerts_remediating(a->alerts, step, text, after);
}

static void remedy_step_result(void *userdata, const char *text, const char *request_id) {
        Agent *a = userdata;

        alerts_step_result(a->alerts, text, request_id);
}

static void remedy_permission(void *userdata, const char *text, const char *detail) {
        Agent *a = userdata;

        alerts_notify(a->alerts, NOTICE_PERMISSION, text, detail);
}

static void remedy_record_standby(void *userdata, const char *group) {
        Agent *a = userdata;

        free(a->persist.standby_group);
        a->persist.standby_group = group ? strdup(group) : NULL;
}

static void remedy_test_answer(void *userdata, uint64_t ticket, bool ok, const char *message) {
        Agent *a = userdata;

        control_server_answer(a->control, ticket, ok, message, NULL);
}

static const RemedySink remedy_sink = {
        .post = remedy_post,
        .record_step = remedy_record_step,
        .record_step_result = remedy_record_step_result,
        .record_reboot_awaited = remedy_record_reboot_awaited,
        .record_reboot_requested = remedy_record_reboot_requested,
        .clear_reboot_requested = remedy_clear_reboot_requested,
        .save = remedy_save,
        .after_writes = remedy_after_writes,
        .now_wall = remedy_now_wall,
        .now_guard = remedy_now_guard,
        .cpu_busy = remedy_cpu_busy,
        .stopping = remedy_stopping,
        .release_slot = remedy_release_slot,
        .remediating = remedy_remediating,
        .step_result = remedy_step_result,
        .permission = remedy_permission,
        .test_answer = remedy_test_answer,
        .record_standby = remedy_record_standby,
};

static void retry_schedule(Agent *a, usec_t delay);
static void drain_schedule(Agent *a, usec_t delay);
static void route_detach_start(Agent *a);
static void route_detach_quietly(Agent *a);
static bool route_join_held(Agent *a, Event ev, const char *reason);

static void timers_cancel(Agent *a) {
        a->retry_timer = sd_event_source_disable_unref(a->retry_timer);
        a->drain_timer = sd_event_source_disable_unref(a->drain_timer);
}

/* ---- the pool, for the machine's actions ---- */

static int action_pool_join(Agent *a) {
        a->pool_serving = true;
        if (!a->pool) {
                log_info("pool: not configured, joining is a no-op");
                return 0;
        }
        /* Joining is never budget-checked; the pool reconciles until Redis
         * has it, whatever outages come in between. */
        pool_set_state(a->pool, state_to_string(a->state), a->state_reason, true);
        return 0;
}

static void on_budget_answer(Pool *p, PoolLeaveResult r, const char *detail, void *userdata) {
        Agent *a = userdata;
        char reason[320];

        /* the breach waits for this: the fleet thread, or a thread of its own */
        alerts_verdict(a->alerts, r == POOL_LEAVE_DENIED);
        switch (r) {
        case POOL_LEAVE_LEFT:
        case POOL_LEAVE_ALREADY_OUT:
                if (a->state != STATE_OVERLOADED && a->state != STATE_HOLDING) {
                        /* The overload cleared (or an operator stepped in)
                         * while the leave was in flight: our view wins. */
                        if (state_is_in_pool(a->state))
                                (void) action_pool_join(a);
                        break;
                }
                a->pool_serving = false;
                snprintf(reason, sizeof reason, "left the pool: %s", strna(detail));
                agent_post_event(a, EVENT_BUDGET_GRANTED, reason);
                break;
        case POOL_LEAVE_DENIED:
                snprintf(reason, sizeof reason, "disruption budget: %s", strna(detail));
                agent_post_event(a, EVENT_BUDGET_DENIED, reason);
                break;
        case POOL_LEAVE_UNREACHABLE:
        default:
                if (a->config->pool.on_unreachable == POOL_ON_UNREACHABLE_REMEDIATE) {
                        snprintf(reason, sizeof reason,
                                 "pool unreachable (%s); on_unreachable = remediate, proceeding", strna(detail));
                        a->pool_serving = false;
                        /* Still out in our own view: reconciled when Redis returns. */
                        pool_set_state(p, state_to_string(a->state), reason, false);
                        agent_post_event(a, EVENT_BUDGET_GRANTED, reason);
                } else {
                        snprintf(reason, sizeof reason,
                                 "pool unreachable (%s): not leaving while possibly still routed", strna(detail));
                        agent_post_event(a, EVENT_BUDGET_DENIED, reason);
                }
                break;
        }
}

static int request_leave_now(Agent *a) {
        int r;

        if (!a->pool) {
                /* only with [remedy] budget = none: the config refuses a
                 * remediation without a pool otherwise */
                log_notice("no fleet budget ([remedy] budget = none): leaving without asking the other hosts");
                agent_post_event(a, EVENT_BUDGET_GRANTED, "no fleet budget ([remedy] budget = none)");
                return 0;
        }
        r = pool_leave(a->pool, false, a->state_reason, on_budget_answer, a);
        if (r < 0) {
                log_warning_errno(r, "pool: cannot ask the budget: %m");
                on_budget_answer(a->pool, POOL_LEAVE_UNREACHABLE, "cannot send the request", a);
        }
        return 0;
}

/* [remedy] dry_run: the budget's verdict, the ladder told step by step,
 * and back to serving. Nothing here changes routing, the budget or the
 * reboot-loop guard. */
static void dry_run_tell(Agent *a, PoolLeaveResult r, const char *detail) {
        const Config *c = a->config;
        _cleanup_(freep) char *ladder = NULL, *done = NULL;
        const char *verdict;
        size_t len = 0;
        FILE *f;

        if (a->state != STATE_OVERLOADED) {
                /* cleared, or an operator stepped in, while the budget answered */
                log_info("dry run: the budget answered (%s) after the host left OVERLOADED, not telling the ladder",
                         strna(detail));
                return;
        }
        switch (r) {
        case POOL_LEAVE_WOULD_LEAVE:
                verdict = "would leave the pool: the budget allows it";
                break;
        case POOL_LEAVE_DENIED:
                verdict = "would hold in the pool: the budget says no";
                break;
        case POOL_LEAVE_ALREADY_OUT:
                verdict = "not in the pool's serving set: nothing to leave";
                break;
        case POOL_LEAVE_LEFT: /* a peek never takes a slot; were it to, say so */
                verdict = "left the pool (unexpected for a dry run)";
                break;
        case POOL_LEAVE_UNREACHABLE:
        default:
                verdict = c->pool.on_unreachable == POOL_ON_UNREACHABLE_REMEDIATE
                                  ? "cannot ask the budget: the pool is unreachable; on_unreachable = remediate would go on"
                                  : "would hold: the pool is unreachable, so the budget cannot be asked";
                break;
        }

        f = open_memstream(&ladder, &len);
        if (!f) {
                log_oom();
        } else {
                for (size_t i = 0; i < c->remedy.ladder_len; i++) {
                        _cleanup_(freep) char *step = remedy_step_describe(c, i);
                        const char *id = c->remedy.ladder[i] == REMEDY_REBOOT_INSTANCE ? remedy_instance_id(a->remedy) : NULL;
                        fprintf(f, "%s%zu. %s%s%s", i ? ", " : "", i + 1, strna(step), id ? " " : "", strempty(id));
                }
                fclose(f);
        }
        alerts_dry_run(a->alerts, verdict, a->pool ? detail : "no [pool]: no fleet budget to ask", ladder);
        /* The ladder as messages, as a real run would announce each step,
         * but only where a real run would get that far. */
        if (r == POOL_LEAVE_WOULD_LEAVE || !a->pool ||
            (r == POOL_LEAVE_UNREACHABLE && c->pool.on_unreachable == POOL_ON_UNREACHABLE_REMEDIATE))
                for (size_t i = 0; i < c->remedy.ladder_len; i++) {
                        _cleanup_(freep) char *step = remedy_step_describe(c, i), *text = NULL;
                        const char *id = c->remedy.ladder[i] == REMEDY_REBOOT_INSTANCE ? remedy_instance_id(a->remedy) : NULL;

                        if (asprintf(&text, "%s: DRY RUN: would %s%s%s%s", c->agent.host, strna(step), id ? " " : "",
                                     strempty(id), i > 0 ? " if the step before failed" : "") < 0)
                                text = NULL;
                        alerts_remediating(a->alerts, step, text ? text : "DRY RUN", NULL);
                }
        if (asprintf(&done, "DRY RUN: %s; nothing was done", verdict) < 0)
                done = NULL;
        agent_post_event(a, EVENT_DRY_RUN_DONE, done ? done : "DRY RUN: nothing was done");
}

static void on_dry_run_budget(Pool *p, PoolLeaveResult r, const char *detail, void *userdata) {
        dry_run_tell(userdata, r, detail);
}

static int action_dry_run(Agent *a) {
        int r;

        if (!a->pool) {
                dry_run_tell(a, POOL_LEAVE_WOULD_LEAVE, NULL);
                return 0;
        }
        r = pool_leave_peek(a->pool, a->state_reason, on_dry_run_budget, a);
        if (r < 0) {
                log_warning_errno(r, "pool: cannot ask the budget for the dry run: %m");
                dry_run_tell(a, POOL_LEAVE_UNREACHABLE, "cannot send the request");
        }
        return 0;
}

/* What announces the leave (the breach alert, the incident's summary)
 * is on disk: now ask, unless the overload went meanwhile or a newer ask
 * took over. */
static void on_leave_announced(void *userdata, uint64_t gen, int error) {
        Agent *a = userdata;

        if (a->stopping || gen != a->leave_gen || (a->state != STATE_OVERLOADED && a->state != STATE_HOLDING))
                return;
        (void) request_leave_now(a);
}

static int action_pool_request_leave(Agent *a) {
        /* write-ahead: the alert spooled for this leave is durable first */
        if (agent_after_writes(a, on_leave_announced, ++a->leave_gen) < 0)
                return request_leave_now(a);
        return 0;
}

static void on_forced_leave(Pool *p, PoolLeaveResult r, const char *detail, void *userdata) {
        if (r == POOL_LEAVE_UNREACHABLE)
                log_warning("pool: leave not confirmed (%s); will be reconciled when Redis answers", strna(detail));
        else
                log_info("pool: %s (%s)", pool_leave_result_to_string(r), strna(detail));
}

static int action_pool_leave(Agent *a, const char *why) {
        int r;

        a->pool_serving = false;
        if (!a->pool) {
                log_info("pool: not configured, leaving (%s) is a no-op", why);
                return 0;
        }
        /* Maintenance and quarantine leave whatever the budget says: a host
         * that must not serve is worse in the pool than out of it. */
        r = pool_leave(a->pool, true, why, on_forced_leave, a);
        if (r < 0)
                pool_set_state(a->pool, state_to_string(a->state), why, false);
        return 0;
}

/* ---- the checks runner's sink ---- */

static State runner_state(void *userdata) {
        Agent *a = userdata;

        return a->state;
}

static void runner_post(void *userdata, Event e, const char *reason) {
        agent_post_event(userdata, e, reason);
}

/* The report in status, Redis (the host's hash) and state.json. */
static void runner_report(void *userdata, const CheckReport *r) {
        Agent *a = userdata;
        const char *text;

        metrics_checks(a->metrics, check_verdict_to_string(r->content.verdict),
                       check_verdict_to_string(r->status.verdict), check_verdict_to_string(r->binding.verdict),
                       r->http_seconds, r->binding_seconds, clock_loop_now(a->event, CLOCK_MONOTONIC));
        json_object_put(a->last_checks);
        a->last_checks = check_report_json(r);
        if (!a->last_checks)
                return;
        text = json_object_to_json_string_ext(a->last_checks, JSON_C_TO_STRING_PLAIN);
        if (a->pool)
                pool_set_last_checks(a->pool, text);
        free(a->persist.last_checks);
        a->persist.last_checks = strdup(text); /* saved with the next transition */
}

static void on_readiness_leave(Pool *p, PoolLeaveResult r, const char *detail, void *userdata) {
        Agent *a = userdata;
        char reason[600];

        if (a->state != STATE_SERVING)
                return;
        if (r == POOL_LEAVE_LEFT || r == POOL_LEAVE_ALREADY_OUT) {
                a->pool_serving = false;
                snprintf(reason, sizeof reason, "%s", strna(a->readiness_reason));
                agent_post_event(a, EVENT_CHECKS_FAILED, reason);
                return;
        }
        /* a whole fleet failing its checks at once (a shared dependency
         * down) must not drain the whole fleet */
        snprintf(reason, sizeof reason, "%s; but the disruption budget keeps it in the pool (%s)",
                 strna(a->readiness_reason), strna(detail));
        alerts_quarantined(a->alerts, reason);
        if (a->checkrun)
                checkrun_readiness_rearm(a->checkrun);
}

static void runner_readiness_failed(void *userdata, const char *reason) {
        Agent *a = userdata;
        int k;

        free(a->readiness_reason);
        a->readiness_reason = strdup(reason);
        if (!a->pool) {
                agent_post_event(a, EVENT_CHECKS_FAILED, reason);
                return;
        }
        k = pool_leave(a->pool, false, reason, on_readiness_leave, a);
        if (k < 0)
                on_readiness_leave(a->pool, POOL_LEAVE_UNREACHABLE, "cannot ask the budget", a);
}

static void runner_manual_done(void *userdata, uint64_t ticket, const CheckReport *r) {
        Agent *a = userdata;
        _cleanup_(json_object_putp) json_object *o = check_report_json(r);

        control_server_answer(a->control, ticket, r->ok, r->ok ? "all checks pass" : "a check failed", o);
}

static const char *runner_local_address(void *userdata) {
        Agent *a = userdata;

        return remedy_local_ipv4(a->remedy);
}

static const CheckRunSink checkrun_sink = {
        .state = runner_state,
        .post = runner_post,
        .report = runner_report,
        .readiness_failed = runner_readiness_failed,
        .manual_done = runner_manual_done,
        .local_address = runner_local_address,
};

/* Checks: posts CHECKS_PASSED or CHECKS_FAILED; without [checks] they pass. */
static void action_checks_run(Agent *a, bool patient) {
        if (!a->checkrun) {
                log_info("checks: not configured, passing");
                agent_post_event(a, EVENT_CHECKS_PASSED, "no checks configured");
                return;
        }
        checkrun_series(a->checkrun, patient);
}

static void readiness_stop(Agent *a) {
        if (a->checkrun)
                checkrun_readiness_stop(a->checkrun);
        free(a->readiness_reason);
        a->readiness_reason = NULL;
}

static void action_run(Agent *a, const Transition *t, const char *reason) {
        _cleanup_(freep) char *text = NULL;
        usec_t at;
        int r;
        switch (t->action) {
        case ACTION_NONE:
                break;

        case ACTION_RUN_CHECKS:
                a->retry_timer = sd_event_source_disable_unref(a->retry_timer);
                /* Restarted while the reboot we asked for is still due:
                 * out of the pool until it comes, and no second ask. */
                if (t->from == STATE_BOOT && remedy_reboot_awaited(a->remedy) && remedy_await_reboot(a->remedy) >= 0)
                        break;
                action_checks_run(a, t->from != STATE_QUARANTINED);
                break;

        case ACTION_POOL_JOIN:
                timers_cancel(a);
                a->retry_attempt = 0;
                /* A fresh start in the pool: an overload that outlived the
                 * remediation must be sustained for a whole new window. */
                detector_reset(&a->detector);
                {
                        bool was_quarantined = alerts_quarantine_over(a->alerts);

                        if (a->persist.incident.id && a->persist.incident.ended == 0) {
                                incident_close(a, "rejoined");
                                /* Killed between spooling the report and saving the
                                 * closed incident, the last run left it in the
                                 * outbox: once is enough. */
                                if (alerts_restored(a->alerts, NOTICE_BACK, a->persist.incident.id))
                                        log_info("The report of incident %s is already in the outbox, not again",
                                                 a->persist.incident.id);
                                else if (asprintf(&text, "%s is back: checks passed, rejoined the pool (incident %s)",
                                                  a->config->agent.host, a->persist.incident.id) >= 0)
                                        alerts_notify(a->alerts, NOTICE_BACK, text, reason);
                        } else if (was_quarantined &&
                                   asprintf(&text, "%s is back: checks passed after the quarantine, rejoined the pool",
                                            a->config->agent.host) >= 0)
                                /* the recovery that closes the quarantine alerts */
                                alerts_notify(a->alerts, NOTICE_BACK, text, reason);
                }
                (void) action_pool_join(a);
                break;

        case ACTION_REQUEST_LEAVE:
                incident_open(a, reason);
                if (t->from == STATE_SERVING && asprintf(&text, "%s overloaded: %s; asking to leave the pool",
                                                         a->config->agent.host, strna(reason)) >= 0) {
                        breach_announce(a, text, reason);
                        alerts_await_verdict(a->alerts);
                }
                (void) action_pool_request_leave(a);
                break;

        case ACTION_ALERT_BREACH:
                incident_open(a, reason);
                if (asprintf(&text, "%s overloaded: %s; observe only ([remedy] not configured), staying in the pool",
                             a->config->agent.host, strna(reason)) >= 0)
                        breach_announce(a, text, reason);
                break;

        case ACTION_DRY_RUN:
                incident_open(a, reason);
                if (asprintf(&text, "%s overloaded: %s; DRY RUN: nothing will be done", a->config->agent.host,
                             strna(reason)) >= 0)
                        breach_announce(a, text, reason);
                (void) action_dry_run(a);
                break;

        case ACTION_NOTE_DRY_RUN:
                /* Still hot, maybe: the detector stays breached until the
                 * load clears, and the same overload is not told twice. */
                a->dry_run_told = a->detector.breached;
                incident_close(a, "dry run");
                break;

        case ACTION_WAIT_COOL:
                /* Re-check at least every window: the first check after the
                 * CPU cooled for a whole window lets the host rejoin. */
                retry_schedule(a, MIN(retry_delay(a->retry_attempt++), a->config->cpu.window));
                break;

        case ACTION_HOLD:
                alerts_holding(a->alerts, reason);
                /* Re-ask at the heartbeat pace: the budget frees up as soon
                 * as another host rejoins, and each ask is one cheap script. */
                retry_schedule(a, a->config->pool.enabled ? jitter_spread(a->config->pool.heartbeat, 20, random_u64())
                                                          : retry_delay(MIN(a->retry_attempt++, 3u)));
                break;

        case ACTION_NOTE_CLEARED:
                timers_cancel(a);
                a->retry_attempt = 0;
                alerts_holding_reset(a->alerts); /* the "cleared" message closes the hold too */
                incident_close(a, "cleared");
                if (asprintf(&text, "%s: overload cleared (%s)", a->config->agent.host, strna(reason)) >= 0)
                        alerts_notify(a->alerts, NOTICE_CLEARED, text, reason);
                break;

        case ACTION_START_DRAIN:
                a->retry_timer = sd_event_source_disable_unref(a->retry_timer);
                a->retry_attempt = 0;
                alerts_holding_over(a->alerts, reason);
                a->pool_serving = false;
                a->persist.incident.left_pool = agent_now_wall(a);
                /* Any router that follows us (the pool, or HAProxy's agent-check)
                 * needs the grace to stop sending new requests. */
                /* Behind AWS load balancers the drain is theirs too: their
                 * deregistration delay, confirmed before anything is done. */
                if (remedy_routes(a->remedy))
                        route_detach_start(a);
                drain_schedule(a, a->config->pool.enabled || a->config->proxy.enabled ? a->config->pool.drain : 0);
                break;

        case ACTION_REMEDIATE:
                /* Counted and saved before acting: a reboot must find it.
                 * One the disk will not record could repeat after the boot,
                 * past max_per_window: not acting beats a reboot loop. The
                 * save runs off the loop; on_remediation_recorded acts. */
                at = agent_now_wall(a);
                persistent_state_add_remediation(&a->persist, at);
                r = persist_save_then(a, on_remediation_recorded, at);
                if (r < 0)
                        on_remediation_recorded(a, at, r);
                break;

        case ACTION_QUARANTINE:
                route_detach_quietly(a);
                if (a->pool_serving)
                        (void) action_pool_leave(a, "quarantined");
                a->pool_serving = false;
                alerts_quarantined(a->alerts, reason);
                retry_schedule(a, retry_delay(a->retry_attempt++));
                break;

        case ACTION_GIVE_UP:
                timers_cancel(a);
                incident_close(a, "gave up");
                if (!a->persist.held) { /* a restored hold keeps its first reason */
                        a->persist.held = true;
                        free(a->persist.held_reason);
                        a->persist.held_reason = reason ? strdup(reason) : NULL;
                }
                if (asprintf(&text, "%s: %s; staying out of the pool until `monkeyctl resume`",
                             a->config->agent.host, strna(reason)) >= 0)
                        alerts_notify(a->alerts, NOTICE_GAVE_UP, text, reason);
                break;

        case ACTION_ENTER_MAINTENANCE:
                timers_cancel(a);
                a->persist.maintenance = true;
                route_detach_quietly(a);
                (void) action_pool_leave(a, "maintenance");
                a->pool_serving = false;
                if (asprintf(&text, "%s in maintenance: %s", a->config->agent.host, strna(reason)) >= 0)
                        alerts_notify(a->alerts, NOTICE_MAINTENANCE, text, reason);
                break;

        default:
                log_warning("Unknown action %d, ignoring", (int) t->action);
        }
}

static void agent_step(Agent *a, Event ev, const char *reason) {
        Transition t;
        FsmInputs in = {
                .remedy_enabled = a->config->remedy.enabled,
                .dry_run = a->config->remedy.dry_run,
                .rejoin_allowed = !a->rejoin_needs_cool || detector_cooled(&a->detector),
                .remedy_allowed = remedy_count_in_window(a->persist.remediations, a->persist.n_remediations,
                                                         agent_now_guard(a), a->config->remedy.window) <
                                  a->config->remedy.max_per_window,
        };
        _cleanup_(freep) char *limit_reason = NULL, *hot_reason = NULL;
        int r;

        r = fsm_step(a->state, ev, &in, &t);
        if (r < 0) {
                log_debug("Event %s means nothing in state %s, ignoring", event_to_string(ev),
                          state_to_string(a->state));
                return;
        }
        if (t.action == ACTION_POOL_JOIN && route_join_held(a, ev, reason))
                return; /* on_route_attached() posts it again */
        if (t.action == ACTION_GIVE_UP && ev == EVENT_DRAINED &&
            asprintf(&limit_reason, "remediation limit reached: %u in the last %s", a->config->remedy.max_per_window,
                     format_duration((char[32]) {}, 32, a->config->remedy.window)) >= 0)
                reason = limit_reason;

        if (t.guard == GUARD_REJOIN_HOT &&
            asprintf(&hot_reason, "checks pass, but after the failed remediation the CPU must stay below %.0f%% for "
                                  "a whole window (%s) before the host rejoins: below it for %s so far",
                     a->config->cpu.clear_below, format_duration((char[32]) {}, 32, a->config->cpu.window),
                     format_duration((char[32]) {}, 32, detector_cool_length(&a->detector))) >= 0)
                reason = hot_reason;
        /* A host whose remediation failed is still sick: it rejoins when
         * cool, or when an operator says so. */
        if (t.from == STATE_REMEDIATING && t.to == STATE_QUARANTINED)
                a->rejoin_needs_cool = true;
        else if (t.to == STATE_SERVING || ev == EVENT_RESUME)
                a->rejoin_needs_cool = false;

        if (t.to == STATE_CHECKING && t.from == STATE_MAINTENANCE)
                a->persist.maintenance = false;
        if (ev == EVENT_RESUME) {
                a->persist.maintenance = false;
                free(a->persist.maintenance_reason);
                a->persist.maintenance_reason = NULL;
                a->persist.held = false;
                free(a->persist.held_reason);
                a->persist.held_reason = NULL;
        }

        if (t.to != t.from || t.action != ACTION_NONE) {
                _cleanup_(json_object_putp) json_object *o = transition_json(a, &t, reason);
                char state_field[64], event_field[64], from_field[64];

                snprintf(state_field, sizeof state_field, "MONKEY_STATE=%s", state_to_string(t.to));
                snprintf(from_field, sizeof from_field, "MONKEY_FROM=%s", state_to_string(t.from));
                snprintf(event_field, sizeof event_field, "MONKEY_EVENT=%s", event_to_string(ev));
                const char *fields[] = { MESSAGE_ID_TRANSITION, state_field, from_field, event_field, NULL };
                if (t.to != t.from)
                        log_struct_internal(LOG_NOTICE, fields, "%s -> %s on %s: %s", state_to_string(t.from),
                                            state_to_string(t.to), event_to_string(ev), strna(reason));
                else
                        log_struct_internal(LOG_INFO, fields, "%s stays on %s: %s", state_to_string(t.from),
                                            event_to_string(ev), strna(reason));

                metrics_transition(a->metrics, t.from, t.to, ev);
                if (ev == EVENT_BREACH && t.from == STATE_SERVING)
                        metrics_breach(a->metrics);
                if (t.to != t.from) {
                        a->state = t.to;
                        a->state_since_mono = clock_loop_now(a->event, CLOCK_MONOTONIC);
                        a->state_since_wall = agent_now_wall(a);
                        free(a->state_reason);
                        a->state_reason = reason ? strdup(reason) : NULL;
                        history_add(a, o);
                        control_server_broadcast(a->control, o);
                        sd_notify_status(a);
                }
        }

        if (t.to != t.from && (a->route_attaching || a->route_detaching)) {
                /* an operator stepped in meanwhile: the new action decides */
                remedy_route_cancel(a->remedy);
                a->route_attaching = a->route_detaching = false;
        }
        if (t.from == STATE_REMEDIATING && t.to != STATE_REMEDIATING && remedy_is_running(a->remedy))
                remedy_cancel(a->remedy); /* an operator drained us meanwhile */
        if (t.from == STATE_CHECKING && t.to != STATE_CHECKING && remedy_reboot_awaited(a->remedy))
                remedy_cancel(a->remedy); /* the same, while a reboot was due */
        if ((t.from == STATE_CHECKING || t.from == STATE_QUARANTINED) && t.to != t.from && a->checkrun)
                checkrun_cancel(a->checkrun);
        if (t.from == STATE_SERVING && t.to != STATE_SERVING && a->checkrun)
                checkrun_cancel_in_flight(a->checkrun); /* a readiness check in flight */
        action_run(a, &t, reason);
        if (t.to == STATE_SERVING && t.from != STATE_SERVING && a->checkrun)
                checkrun_readiness_start(a->checkrun);
        if (a->pool && t.to != t.from)
                pool_set_state(a->pool, state_to_string(a->state), a->state_reason, a->pool_serving);
        persist_save(a);
}

static int queue_dispatch(sd_event_source *s, void *userdata) {
        Agent *a = userdata;
        Event e;
        char *reason;

        /* Events posted by actions land at the end and run in this same
         * dispatch, in order. Stopping: nothing more is decided (the state
         * is what state.json holds), as if we had exited at once. */
        while (eventq_pop(&a->queue, &e, &reason)) {
                if (!a->stopping)
                        agent_step(a, e, reason);
                free(reason);
        }
        return sd_event_source_set_enabled(s, SD_EVENT_OFF);
}

void agent_post_event(Agent *a, Event e, const char *reason) {
        int r;

        eventq_push(&a->queue, e, reason);
        /* Cannot fail on a defer source we own; were it to, the event is
         * still queued and runs with the next one posted. */
        r = sd_event_source_set_enabled(a->queue_defer, SD_EVENT_ONESHOT);
        if (r < 0)
                log_error_errno(r, "Cannot schedule the event queue for %s: %m", event_to_string(e));
}

/* ---- timers owned by actions ---- */

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        Agent *a = userdata;
        a->retry_timer = sd_event_source_disable_unref(a->retry_timer);
        agent_post_event(a, EVENT_RETRY, a->state == STATE_HOLDING ? "asking the budget again" : "re-checking");
        return 0;
}

static void retry_schedule(Agent *a, usec_t delay) {
        int r;
        a->retry_timer = sd_event_source_disable_unref(a->retry_timer);
        r = sd_event_add_time_relative(a->event, &a->retry_timer, CLOCK_BOOTTIME, delay, USEC_PER_MSEC, on_retry, a);
        if (r < 0)
                log_warning_errno(r, "Cannot schedule a retry: %m, ignoring");
}

/* The drain is over when all of it is: the grace for routers that
 * follow the pool, the load balancer's own deregistration, and the
 * profile (a reboot would take it with it). Each calls this as it ends. */
static void drain_maybe_over(Agent *a, const char *reason) {
        if (a->state != STATE_DRAINING || !a->drain_grace_over || a->route_detaching)
                return;
        if (capture_hold_drain(a->capture))
                return; /* capture_drain_released() comes back here */
        agent_post_event(a, EVENT_DRAINED, reason);
}

static int on_drained(sd_event_source *s, uint64_t usec, void *userdata) {
        Agent *a = userdata;
        a->drain_timer = sd_event_source_disable_unref(a->drain_timer);
        a->drain_grace_over = true;
        drain_maybe_over(a, "drain grace over");
        return 0;
}

static void drain_schedule(Agent *a, usec_t delay) {
        int r;
        a->drain_timer = sd_event_source_disable_unref(a->drain_timer);
        a->drain_grace_over = false;
        r = sd_event_add_time_relative(a->event, &a->drain_timer, CLOCK_BOOTTIME, delay, USEC_PER_MSEC, on_drained, a);
        if (r < 0) {
                log_warning_errno(r, "Cannot schedule the drain timer: %m; proceeding now");
                a->drain_grace_over = true;
                drain_maybe_over(a, "drain timer unavailable");
        }
}

/* ---- behind AWS load balancers ---- */

static void on_route_detached(int error, const char *code, const char *detail, void *userdata) {
        Agent *a = userdata;
        _cleanup_(freep) char *reason = NULL;

        a->route_detaching = false;
        if (a->state != STATE_DRAINING)
                return;
        if (error < 0) {
                /* never reboot a host that may still be routed */
                if (asprintf(&reason, "cannot confirm the host is out of the load balancer (%s): %s; no remediation",
                             strna(code), strna(detail)) < 0)
                        reason = NULL;
                agent_post_event(a, EVENT_DETACH_FAILED, reason ? reason : "cannot confirm the host is out of "
                                                                          "the load balancer; no remediation");
                return;
        }
        drain_maybe_over(a, "drained from the load balancer, drain grace over");
}

static void route_detach_start(Agent *a) {
        int r;

        a->route_attached = false;
        a->route_detaching = true;
        r = remedy_detach(a->remedy, on_route_detached, a);
        if (r < 0) {
                a->route_detaching = false;
                agent_post_event(a, EVENT_DETACH_FAILED, "cannot start leaving the load balancer; no remediation");
        }
}

/* Out of the pool without a remediation to follow (quarantine, operator
 * drain): out of the load balancer too, nothing waits for it. */
static void route_detach_quietly(Agent *a) {
        if (!remedy_routes(a->remedy) || a->route_detaching)
                return;
        a->route_attached = false;
        remedy_detach_quietly(a->remedy);
}

static void on_route_attached(int error, const char *code, const char *detail, void *userdata) {
        Agent *a = userdata;
        _cleanup_(freep) char *reason = TAKE_PTR(a->route_join_reason);

        a->route_attaching = false;
        if (error < 0) {
                _cleanup_(freep) char *why = NULL;

                if (asprintf(&why, "checks passed, but the load balancer does not take the host back (%s): %s",
                             strna(code), strna(detail)) < 0)
                        why = NULL;
                agent_post_event(a, EVENT_CHECKS_FAILED, why ? why : "the load balancer does not take the host back");
                return;
        }
        a->route_attached = true;
        agent_post_event(a, a->route_join_event, reason);
}

/* The join waits for the load balancer: registered and healthy (the
 * ALB's own check), out of standby. true: the event is held. */
static bool route_join_held(Agent *a, Event ev, const char *reason) {
        int r;

        if (!remedy_routes(a->remedy) || a->route_attached)
                return false;
        if (a->route_attaching)
                return true;
        a->route_join_event = ev;
        free(a->route_join_reason);
        a->route_join_reason = reason ? strdup(reason) : NULL;
        a->route_attaching = true;
        r = remedy_attach(a->remedy, on_route_attached, a);
        if (r < 0) {
                a->route_attaching = false;
                log_warning_errno(r, "aws: cannot start attaching: %m; joining without the load balancer");
                return false;
        }
        return true;
}

/* ---- CPU sampling ---- */

static void cpu_sample_failed(Agent *a, const char *what) {
        a->cpu_skipped++;
        if (!streq_ptr(a->cpu_last_error, what)) {
                free(a->cpu_last_error);
                a->cpu_last_error = strdup(what);
                a->cpu_error_logged = false;
        }
        if (!a->cpu_error_logged) {
                log_warning("%s: %s; skipping the sample, ignoring", a->config->agent.proc_stat, what);
                a->cpu_error_logged = true;
        }
}

static void format_breach_reason(Agent *a, char *buf, size_t size) {
        char w[32];
        snprintf(buf, size, "cpu %.1f%% >= %.0f%% for %s (window average %.1f%%)", a->detector.last_busy,
                 a->config->cpu.threshold, format_duration(w, sizeof w, a->config->cpu.window),
                 detector_window_pct(&a->detector));
}

static void cpu_sample(Agent *a, usec_t now) {
        _cleanup_(freep) char *err = NULL;
        CpuSample cur;
        CpuInterval iv;
        double busy;
        int r;

        if (!a->cpu) {
                r = cpu_reader_new(a->config->agent.proc_stat, &a->cpu);
                if (r < 0) {
                        char msg[128];
                        snprintf(msg, sizeof msg, "cannot open: %s", strerror(-r));
                        cpu_sample_failed(a, msg);
                        return;
                }
        }

        r = cpu_reader_read(a->cpu, &cur, &err);
        if (r < 0) {
                char msg[256];
                if (r == -EBADMSG)
                        snprintf(msg, sizeof msg, "garbage: %s", strna(err));
                else
                        snprintf(msg, sizeof msg, "cannot read: %s", strerror(-r));
                cpu_sample_failed(a, msg);
                return;
        }

        if (a->cpu_prev_at == 0) {
                a->cpu_prev = cur;
                a->cpu_prev_at = now;
                return;
        }

        r = cpu_interval_between(&a->cpu_prev, &cur, cpu_reader_max_ticks(a->cpu, now - a->cpu_prev_at), &iv);
        usec_t start = a->cpu_prev_at;
        CpuSample interval_start = a->cpu_prev;
        a->cpu_prev = cur;
        a->cpu_prev_at = now;
        if (r < 0) {
                cpu_sample_failed(a, r == -ERANGE   ? "counters went backwards; new baseline"
                                     : r == -ESTALE ? "counters jumped ahead (a CPU came online?); new baseline"
                                                    : "no time passed between samples");
                return;
        }

        if (a->cpu_error_logged)
                log_info("%s: samples are good again", a->config->agent.proc_stat);
        a->cpu_error_logged = false;
        free(a->cpu_last_error);
        a->cpu_last_error = NULL;

        busy = cpu_interval_busy(&iv);
        a->cpu_last = iv;
        a->cpu_last_busy = busy;
        a->cpu_have_usage = true;
        a->cpu_samples++;

        DetectorVerdict v = detector_feed(&a->detector, start, now, busy);
        alerts_on_sample(a->alerts, a->detector.run_start != USEC_INFINITY || a->detector.breached);
        capture_on_sample(a->capture, a->detector.run_start != USEC_INFINITY || a->detector.breached,
                          &interval_start);
        if (v == DETECTOR_BREACH || v == DETECTOR_CLEARED)
                log_debug("Detector: %s at %.1f%%", detector_verdict_to_string(v), busy);

        /* Level-triggered: the machine hears the detector's current view
         * each sample in the states where it matters. A dry run told once
         * per overload: back in SERVING it waits for the load to clear. */
        if (!a->detector.breached)
                a->dry_run_told = false;
        if (a->detector.breached && a->state == STATE_SERVING && !a->dry_run_told) {
                char reason[160];
                usec_t mono = clock_loop_now(a->event, CLOCK_MONOTONIC);
                format_breach_reason(a, reason, sizeof reason);
                if (mono < a->grace_until) {
                        /* the app may still be warming up after the reboot we caused */
                        if (!a->grace_alerted) {
                                a->grace_alerted = true;
                                alerts_grace(a->alerts, reason, a->grace_until - mono);
                        }
                        return;
                }
                agent_post_event(a, EVENT_BREACH, reason);
        } else if (!a->detector.breached && (a->state == STATE_OVERLOADED || a->state == STATE_HOLDING)) {
                char reason[96];
                snprintf(reason, sizeof reason, "cpu %.1f%% < %.0f%%", busy, a->config->cpu.clear_below);
                agent_post_event(a, EVENT_CLEARED, reason);
        }
}

static void on_sample(Ticker *t, usec_t now, uint64_t missed, void *userdata) {
        /* Missed ticks (suspend, SIGSTOP) are not made up: the next
         * interval simply spans the stall, and the ticker keeps its phase. */
        cpu_sample(userdata, now);
}

static int sampling_start(Agent *a) {
        usec_t now = clock_loop_now(a->event, CLOCK_BOOTTIME);
        usec_t phase = a->config->cpu.jitter ? random_u64() % (a->config->cpu.jitter + 1) : 0;
        int r;

        /* A baseline now, so the first interval ends one interval later. */
        cpu_sample(a, now);
        r = ticker_new(a->event, CLOCK_BOOTTIME, now + a->config->cpu.interval + phase, a->config->cpu.interval,
                       on_sample, a, &a->sampler);
        if (r < 0)
                return log_error_errno(r, "Cannot add the sampling timer: %m");
        return 0;
}

/* ---- status ---- */

json_object *agent_status_json(Agent *a) {
        const Config *c = a->config;
        json_object *o = json_object_new_object();
        json_object *cpu = json_object_new_object();
        json_object *pool = json_object_new_object();
        json_object *remedy = json_object_new_object();
        json_object *integ = json_object_new_object();
        usec_t now_mono = clock_loop_now(a->event, CLOCK_MONOTONIC);
        bool have = a->cpu_have_usage;
        double window_pct = detector_window_pct(&a->detector);
        CpuUsage u = {};

        if (have)
                cpu_interval_usage(&a->cpu_last, &u);

        json_object_object_add(o, "schema", json_object_new_int(CONTROL_JSON_SCHEMA));
        json_object_object_add(o, "host", json_object_new_string(c->agent.host));
        json_object_object_add(o, "version", json_object_new_string(MONKEY_VERSION));
        json_object_object_add(o, "pid", json_object_new_int((int) getpid()));
        json_object_object_add(o, "config", json_object_new_string(a->config_path));
        /* what runs: compare with `sha256sum` of the file, and what the last reload said */
        json_object_object_add(o, "config_sha256", c->sha256[0] ? json_object_new_string(c->sha256) : NULL);
        if (a->reload_at) {
                json_object *rl = json_object_new_object();
                json_object_object_add(rl, "at", json_iso_or_null(a->reload_at));
                json_object_object_add(rl, "at_unix", json_object_new_double((double) a->reload_at / USEC_PER_SEC));
                json_object_object_add(rl, "ok", json_object_new_boolean(a->reload_result >= 0));
                json_object_object_add(rl, "result", json_object_new_string(a->reload_result >= 0 ? "ok"
                                                                             : strna(a->reload_error)));
                json_object_object_add(rl, "via", json_object_new_string(strna(a->reload_via)));
                json_object_object_add(o, "last_reload", rl);
        } else
                json_object_object_add(o, "last_reload", NULL);
        json_object_object_add(o, "state", json_object_new_string(state_to_string(a->state)));
        json_object_object_add(o, "since", json_iso_or_null(a->state_since_wall));
        json_object_object_add(o, "since_unix", json_object_new_double((double) a->state_since_wall / USEC_PER_SEC));
        json_object_object_add(o, "for_sec",
                               json_object_new_double((double) (now_mono - a->state_since_mono) / USEC_PER_SEC));
        json_object_object_add(o, "reason", a->state_reason ? json_object_new_string(a->state_reason) : NULL);
        json_object_object_add(o, "maintenance", json_object_new_boolean(a->persist.maintenance));
        json_object_object_add(o, "maintenance_reason", a->persist.maintenance_reason
                                                                ? json_object_new_string(a->persist.maintenance_reason)
                                                                : NULL);
        json_object_object_add(o, "held", json_object_new_boolean(a->persist.held));
        json_object_object_add(o, "held_reason",
                               a->persist.held_reason ? json_object_new_string(a->persist.held_reason) : NULL);
        json_object_object_add(o, "boot_id", json_object_new_string(a->boot_id));
        {
                json_object *sf = json_object_new_object();
                json_object_object_add(sf, "ok", json_object_new_boolean(a->persist_error == 0));
                json_object_object_add(sf, "last_error",
                                       a->persist_error ? json_object_new_string(strerror(-a->persist_error)) : NULL);
                json_object_object_add(sf, "failing_since", json_iso_or_null(a->persist_failing_since));
                json_object_object_add(sf, "failed_saves", json_object_new_uint64(a->persist_failures));
                json_object_object_add(o, "state_file", sf);
        }
        json_object_object_add(o, "disk_writes", writer_status_json(a->writer));

        json_object_object_add(cpu, "busy_pct", json_pct_or_null(have, a->cpu_last_busy));
        json_object_object_add(cpu, "window_pct", json_pct_or_null(true, window_pct));
        json_object_object_add(cpu, "threshold_pct", json_object_new_double(c->cpu.threshold));
        json_object_object_add(cpu, "clear_below_pct", json_object_new_double(c->cpu.clear_below));
        json_object_object_add(cpu, "window_sec", json_object_new_double((double) c->cpu.window / USEC_PER_SEC));
        json_object_object_add(cpu, "interval_sec", json_object_new_double((double) c->cpu.interval / USEC_PER_SEC));
        json_object_object_add(cpu, "user_pct", json_pct_or_null(have, u.user));
        json_object_object_add(cpu, "system_pct", json_pct_or_null(have, u.system));
        json_object_object_add(cpu, "iowait_pct", json_pct_or_null(have, u.iowait));
        json_object_object_add(cpu, "steal_pct", json_pct_or_null(have, u.steal));
        json_object_object_add(cpu, "run_sec",
                               json_object_new_double((double) detector_run_length(&a->detector) / USEC_PER_SEC));
        json_object_object_add(cpu, "breached", json_object_new_boolean(a->detector.breached));
        json_object_object_add(cpu, "samples", json_object_new_int64((int64_t) a->cpu_samples));
        json_object_object_add(cpu, "skipped", json_object_new_int64((int64_t) a->cpu_skipped));
        json_object_object_add(cpu, "source", json_object_new_string(c->agent.proc_stat));
        json_object_object_add(cpu, "last_error", a->cpu_last_error ? json_object_new_string(a->cpu_last_error) : NULL);
        json_object_object_add(o, "cpu", cpu);

        if (a->pool) {
                json_object_put(pool);
                pool = pool_status_json(a->pool);
        } else {
                json_object_object_add(pool, "configured", json_object_new_boolean(false));
                json_object_object_add(pool, "name", NULL);
                json_object_object_add(pool, "address", NULL);
                json_object_object_add(pool, "serving", json_object_new_boolean(a->pool_serving));
                json_object_object_add(pool, "serving_count", NULL);
                json_object_object_add(pool, "status", json_object_new_string("not configured"));
        }
        json_object_object_add(o, "pool", pool);

        if (a->last_checks)
                json_object_object_add(o, "last_checks", json_object_get(a->last_checks));
        else {
                json_object *lc = json_object_new_object();
                json_object_object_add(lc, "content", json_object_new_string("not run"));
                json_object_object_add(lc, "status", json_object_new_string("not run"));
                json_object_object_add(lc, "binding", json_object_new_string("not run"));
                json_object_object_add(lc, "ok", NULL);
                json_object_object_add(lc, "at", NULL);
                json_object_object_add(lc, "detail", NULL);
                json_object_object_add(o, "last_checks", lc);
        }

        const Incident *i = &a->persist.incident;
        if (i->id) {
                json_object *inc = json_object_new_object();
                json_object_object_add(inc, "id", json_object_new_string(i->id));
                json_object_object_add(inc, "started", json_iso_or_null(i->started));
                json_object_object_add(inc, "reason", i->reason ? json_object_new_string(i->reason) : NULL);
                json_object_object_add(inc, "outcome", i->outcome ? json_object_new_string(i->outcome) : NULL);
                json_object_object_add(inc, "left_pool", json_iso_or_null(i->left_pool));
                json_object_object_add(inc, "ended", json_iso_or_null(i->ended));
                json_object_object_add(o, "last_incident", inc);
        } else
                json_object_object_add(o, "last_incident", NULL);

        json_object_object_add(remedy, "mode", json_object_new_string(!c->remedy.enabled ? "observe only"
                                                                      : c->remedy.dry_run ? "dry run"
                                                                                          : "enabled"));
        /* "none": [remedy] without [pool] (budget = none, or a dry run) */
        json_object_object_add(remedy, "budget",
                               c->remedy.enabled ? json_object_new_string(c->pool.enabled ? "pool" : "none") : NULL);
        json_object_object_add(remedy, "budget_note",
                               config_no_fleet_budget(c) ? json_object_new_string(config_no_fleet_budget(c)) : NULL);
        json_object_object_add(remedy, "count_in_window",
                               json_object_new_int((int) remedy_count_in_window(a->persist.remediations,
                                                                                a->persist.n_remediations,
                                                                                agent_now_guard(a), c->remedy.window)));
        json_object_object_add(remedy, "max_per_window", json_object_new_int((int) c->remedy.max_per_window));
        json_object_object_add(remedy, "window_sec", json_object_new_double((double) c->remedy.window / USEC_PER_SEC));
        if (c->remedy.enabled) {
                _cleanup_(json_object_putp) json_object *rs = remedy_status_json(a->remedy);
                json_object_object_foreach(rs, k, v) json_object_object_add(remedy, k, json_object_get(v));
        }
        {
                usec_t mono = clock_loop_now(a->event, CLOCK_MONOTONIC);
                json_object_object_add(remedy, "grace_left_sec", mono < a->grace_until
                                                                         ? json_object_new_double((double) (a->grace_until - mono) / USEC_PER_SEC)
                                                                         : NULL);
        }
        json_object_object_add(o, "remedy", remedy);

#define INTEG(name, on) json_object_object_add(integ, name, json_object_new_string((on) ? "configured" : "not configured"))
        INTEG("pool", c->pool.enabled);
        INTEG("slack", c->slack.enabled);
        INTEG("aws", c->aws.enabled);
        INTEG("checks", c->checks.enabled);
        INTEG("remedy", c->remedy.enabled);
        INTEG("proxy", c->proxy.enabled);
#undef INTEG
        json_object_object_add(o, "integrations", integ);
        json_object_object_add(o, "agent_check", agentcheck_status_json(a->agent_check));
        json_object_object_add(o, "health", healthendpoint_status_json(a->health));
        json_object_object_add(o, "slack", alerts_status_json(a->alerts));
        {
                json_object *ev = capture_status_json(a->capture);
                json_object_object_add(ev, "top", alerts_evidence_json(a->alerts));
                json_object_object_add(o, "evidence", ev);
        }
        {
                /* the same judgement monkeyctl status's exit code makes */
                _cleanup_(freep) char *why = NULL;
                ControlVerdict v = control_status_verdict(o, &why);
                json_object *rt = json_object_new_object();

                json_object_object_add(rt, "verdict", json_object_new_string(control_verdict_to_string(v)));
                json_object_object_add(rt, "routed", json_object_new_boolean(v != CONTROL_VERDICT_NOT_ROUTED));
                json_object_object_add(rt, "degraded", json_object_new_boolean(v == CONTROL_VERDICT_DEGRADED));
                json_object_object_add(rt, "why", why ? json_object_new_string(why) : NULL);
                json_object_object_add(o, "routing", rt);
        }
        return o;
}

/* ---- control handlers ---- */

static json_object *control_status(void *userdata) {
        return agent_status_json(userdata);
}

static json_object *control_history(void *userdata, unsigned limit) {
        Agent *a = userdata;
        json_object *arr = json_object_new_array();
        size_t n = MIN((size_t) (limit ? limit : 20), a->history_len);

        for (size_t k = a->history_len - n; k < a->history_len; k++)
                json_object_array_add(arr, json_object_get(a->history[(a->history_head + k) % AGENT_HISTORY_MAX]));
        return arr;
}

static int control_drain(void *userdata, const char *reason, char **ret_message) {
        Agent *a = userdata;
        char *m = NULL;

        /* Idempotent, so config management may drain again: the first
         * reason stays, the answer says so. */
        if (a->state == STATE_MAINTENANCE) {
                const char *why = a->persist.maintenance_reason ? a->persist.maintenance_reason : a->state_reason;

                if (asprintf(&m, "already drained: %s is in maintenance (%s) until `monkeyctl resume`",
                             a->config->agent.host, strna(why)) < 0)
                        return -ENOMEM;
                *ret_message = m;
                return 0;
        }
        if (a->state == STATE_BOOT) {
                *ret_message = strdup("the agent is still starting; try again");
                return -EBUSY;
        }
        free(a->persist.maintenance_reason);
        a->persist.maintenance_reason = strdup(isempty(reason) ? "operator drain" : reason);
        agent_post_event(a, EVENT_MAINTENANCE, a->persist.maintenance_reason);
        if (asprintf(&m, "draining %s: leaving the pool and staying out until `monkeyctl resume`",
                     a->config->agent.host) < 0)
                return -ENOMEM;
        *ret_message = m;
        return 0;
}

static int control_resume(void *userdata, char **ret_message) {
        Agent *a = userdata;
        char *m = NULL;

        /* Idempotent as drain is: no drain or give-up in force means the
         * resume is done, whatever the state is otherwise. */
        if (a->state == STATE_BOOT) {
                *ret_message = strdup("the agent is still starting; try again");
                return -EBUSY;
        }
        if (a->state != STATE_MAINTENANCE && a->state != STATE_QUARANTINED) {
                int k = a->state == STATE_CHECKING
                                ? asprintf(&m, "already resumed: %s is checking, then rejoins the pool",
                                           a->config->agent.host)
                        : a->state == STATE_SERVING
                                ? asprintf(&m, "already serving: %s has no drain in force", a->config->agent.host)
                                : asprintf(&m, "already resumed: %s has no drain in force; it is %s (%s)",
                                           a->config->agent.host, state_to_string(a->state), strna(a->state_reason));
                if (k < 0)
                        return -ENOMEM;
                *ret_message = m;
                return 0;
        }
        agent_post_event(a, EVENT_RESUME, "operator resume");
        if (asprintf(&m, "resuming %s: checking, then rejoining the pool", a->config->agent.host) < 0)
                return -ENOMEM;
        *ret_message = m;
        return 0;
}

/* agent_reload(), and its outcome kept for status: the lead's reload does
 * the work, this only records it. */
static int agent_reload_recorded(Agent *a, const char *via, char **ret_error) {
        _cleanup_(freep) char *err = NULL;
        int r;

        r = agent_reload(a, &err);
        a->reload_at = agent_now_wall(a);
        a->reload_result = MIN(r, 0);
        a->reload_via = via;
        free(a->reload_error);
        a->reload_error = r < 0 ? strdup(err ? err : strerror(-r)) : NULL;
        if (ret_error)
                *ret_error = TAKE_PTR(err);
        return r;
}

static int control_reload(void *userdata, char **ret_message) {
        Agent *a = userdata;
        _cleanup_(freep) char *err = NULL;
        char *m = NULL;
        int r;

        if (a->stopping) {
                *ret_message = strdup("the agent is stopping; the file is read at the next start");
                return -ESHUTDOWN;
        }
        r = agent_reload_recorded(a, "monkeyctl", &err);
        if (r < 0) {
                *ret_message = TAKE_PTR(err);
                return r;
        }
        /* reloaded whatever happens to this text: NULL says "ok" */
        if ((a->config->sha256[0] ? asprintf(&m, "reloaded %s (sha256 %s)", a->config_path, a->config->sha256)
                                  : asprintf(&m, "reloaded %s", a->config_path)) >= 0)
                *ret_message = m;
        return 0;
}

static State agent_state_of(void *userdata) {
        Agent *a = userdata;
        /* What routers are told. Registered again and waiting for the load
         * balancer's health check to pass: that check asks us, so "up". */
        return a->route_attaching ? STATE_SERVING : a->state;
}

static State agent_health_of(void *userdata, const char **ret_reason) {
        Agent *a = userdata;

        if (a->route_attaching) {
                *ret_reason = "checks passed, waiting for the load balancer's health check";
                return STATE_SERVING;
        }
        /* Still InService until EnterStandby is accepted: a failing check
         * now would have the group replace the instance. The target is
         * still registered anyway; Standby takes it out properly. */
        if (a->route_detaching && remedy_route_still_in_service(a->remedy)) {
                *ret_reason = "leaving: EnterStandby not accepted yet";
                return STATE_SERVING;
        }
        *ret_reason = a->state_reason;
        return a->state;
}

static json_object *control_pool(void *userdata) {
        Agent *a = userdata;

        if (!a->pool)
                return NULL;
        pool_request_members(a->pool);
        return pool_status_json(a->pool);
}

static int control_test_alert(void *userdata, uint64_t ticket, const char *text, char **ret_message) {
        Agent *a = userdata;

        return alerts_test(a->alerts, ticket, text, ret_message);
}

static int control_test_reboot(void *userdata, uint64_t ticket, const char *text, char **ret_message) {
        Agent *a = userdata;

        return remedy_test_reboot(a->remedy, ticket, ret_message);
}

static int control_check(void *userdata, uint64_t ticket, const char *text, char **ret_message) {
        Agent *a = userdata;

        if (!a->config->checks.enabled) {
                *ret_message = strdup("no [checks] configured");
                return -ENOTCONN;
        }
        if (!a->checkrun) {
                *ret_message = strdup("[checks] was added by a reload: it takes effect at the next restart");
                return -ENOTCONN;
        }
        return checkrun_manual(a->checkrun, ticket, ret_message);
}

static json_object *control_stats(void *userdata) {
        Agent *a = userdata;

        return metrics_stats_json(a->metrics, clock_loop_now(a->event, CLOCK_MONOTONIC));
}

static json_object *control_incidents(void *userdata, char **ret_message) {
        Agent *a = userdata;

        return capture_incidents_json(a->capture, ret_message);
}

static json_object *control_incident(void *userdata, const char *id, char **ret_message) {
        Agent *a = userdata;

        return capture_incident_json(a->capture, id, ret_message);
}

/* The peer's user name for the budget's audit, from /etc/passwd alone:
 * an NSS lookup (LDAP, sssd) could hang the loop, and the uid, which the
 * kernel vouches for, is in the audit anyway. NULL when not listed. */
static char *peer_user_name(uid_t uid) {
        _cleanup_(fclosep) FILE *f = fopen("/etc/passwd", "re");
        struct passwd pw, *found = NULL;
        char buf[1024];

        if (!f)
                return NULL;
        while (fgetpwent_r(f, &pw, buf, sizeof buf, &found) == 0 && found)
                if (found->pw_uid == uid)
                        return strdup(found->pw_name);
        return NULL;
}

static void on_pool_budget(Pool *p, int r, const PoolBudget *b, const char *error, uint64_t ticket,
                           void *userdata) {
        Agent *a = userdata;
        bool set = b && b->set;
        _cleanup_(json_object_putp) json_object *o = NULL;
        _cleanup_(freep) char *message = NULL;
        const char *name = a->config->pool.name;
        json_object *st, *budget = NULL, *v;

        if (r < 0) {
                control_server_answer(a->control, ticket, false, error ? error : strerror(-r), NULL);
                return;
        }
        o = pool_budget_json(b);
        if (!o) {
                control_server_answer(a->control, ticket, false, "out of memory", NULL);
                return;
        }
        json_object_object_add(o, "pool", json_object_new_string(strna(name)));
        /* this host's view beside it: its config, and which rules differ */
        st = pool_status_json(p);
        if (st && json_object_object_get_ex(st, "budget", &budget)) {
                if (json_object_object_get_ex(budget, "config", &v))
                        json_object_object_add(o, "config", json_object_get(v));
                if (json_object_object_get_ex(budget, "config_differs", &v))
                        json_object_object_add(o, "config_differs", json_object_get(v));
        }
        json_object_put(st);
        if (set) {
                json_object *old = NULL;

                if (b->old_min_serving >= 0 && (old = json_object_new_object())) {
                        json_object_object_add(old, "min_serving", json_object_new_int64(b->old_min_serving));
                        json_object_object_add(old, "max_unavailable", json_object_new_int64(b->old_max_unavailable));
                }
                json_object_object_add(o, "old", old);
                json_object_object_add(o, "changed", json_object_new_boolean(b->changed));
        }
        if (set && b->old_min_serving >= 0)
                r = asprintf(&message, "pool %s: min_serving %lld -> %lld, max_unavailable %lld -> %lld%s (set by %s)",
                             strna(name), b->old_min_serving, b->min_serving, b->old_max_unavailable,
                             b->max_unavailable, b->changed ? "" : ", unchanged", strna(b->by));
        else if (b->min_serving < 0)
                r = asprintf(&message, "pool %s has no budget yet (the first agent to connect seeds it from its config)",
                             strna(name));
        else
                r = asprintf(&message, "pool %s: min_serving %lld, max_unavailable %lld (%s by %s)", strna(name),
                             b->min_serving, b->max_unavailable, isempty(b->how) ? "written" : b->how, strna(b->by));
        if (r < 0)
                message = NULL;
        control_server_answer(a->control, ticket, true, message, o);
}

static int control_pool_budget(void *userdata, uint64_t ticket, const ControlRequest *req, const ControlPeer *peer,
                               char **ret_message) {
        Agent *a = userdata;
        _cleanup_(freep) char *user = NULL;
        PoolBudgetChange change = { .min_serving = -1, .max_unavailable = -1 };

        if (!a->pool) {
                *ret_message = strdup("no [pool] configured");
                return -ENOTCONN;
        }
        if (req->command != CONTROL_POOL_BUDGET_SET)
                return pool_budget(a->pool, NULL, on_pool_budget, ticket, a, ret_message);
        if (req->has_min_serving)
                change.min_serving = req->min_serving;
        if (req->has_max_unavailable)
                change.max_unavailable = req->max_unavailable;
        if (peer && peer->known) {
                change.have_uid = true;
                change.uid = (unsigned) peer->uid;
                user = peer_user_name(peer->uid);
                change.user = user;
        }
        return pool_budget(a->pool, &change, on_pool_budget, ticket, a, ret_message);
}

static const ControlHandlers control_handlers = {
        .incidents = control_incidents,
        .incident = control_incident,
        .check = control_check,
        .test_alert = control_test_alert,
        .test_reboot = control_test_reboot,
        .status = control_status,
        .pool = control_pool,
        .history = control_history,
        .drain = control_drain,
        .resume = control_resume,
        .reload = control_reload,
        .pool_budget = control_pool_budget,
        .stats = control_stats,
};

/* ---- signals and reload ---- */

/* HAProxy's agent-check listener follows [proxy] on a reload (and the
 * addresses its default comes from): a new address or port gets a new
 * socket; if it cannot be had, the old one stays, so a proxy asking there
 * keeps getting answers. */
static void agent_check_reconfigure(Agent *a, const Config *nc) {
        const Config *oc = a->config;
        AgentCheck *fresh = NULL;
        int r;

        if (nc->proxy.enabled == oc->proxy.enabled && nc->proxy.agent_check_port == oc->proxy.agent_check_port &&
            streq_ptr(nc->proxy.agent_check_address, oc->proxy.agent_check_address) &&
            streq_ptr(nc->pool.address, oc->pool.address) &&
            streq_ptr(nc->checks.public_address, oc->checks.public_address))
                return;
        if (!nc->proxy.enabled || nc->proxy.agent_check_port == 0) {
                a->agent_check = agentcheck_free(a->agent_check);
                log_info("reload: no [proxy] agent_check_port, agent-check listener closed");
                return;
        }
        r = agentcheck_new_from_config(a->event, nc, agent_state_of, a, &fresh);
        if (r == -EADDRINUSE && a->agent_check) {
                /* the same port on an overlapping address: hand it over */
                a->agent_check = agentcheck_free(a->agent_check);
                r = agentcheck_new_from_config(a->event, nc, agent_state_of, a, &fresh);
                if (r < 0 && oc->proxy.enabled)
                        (void) agentcheck_new_from_config(a->event, oc, agent_state_of, a, &a->agent_check);
        }
        if (r < 0) {
                log_warning_errno(r, "reload: cannot listen for HAProxy's agent-check on port %u: %m, %s",
                                  (unsigned) nc->proxy.agent_check_port,
                                  a->agent_check ? "keeping the previous listener" : "no listener now");
                return;
        }
        agentcheck_free(a->agent_check);
        a->agent_check = fresh;
        log_info("reload: agent-check listener on port %u from the new [proxy] settings",
                 (unsigned) nc->proxy.agent_check_port);
}

/* The HTTP health endpoint follows [proxy] health_* as the agent-check
 * does: a new socket for a new address, port or path, the old one kept
 * when the new one cannot be had (a load balancer asking there keeps its
 * answers; the error names the address). */
static void health_reconfigure(Agent *a, const Config *nc) {
        const Config *oc = a->config;
        HealthEndpoint *fresh = NULL;
        int r;

        if (nc->proxy.health_port == oc->proxy.health_port &&
            streq_ptr(nc->proxy.health_address, oc->proxy.health_address) &&
            streq_ptr(nc->proxy.health_path, oc->proxy.health_path) && !!a->health == (nc->proxy.health_port > 0))
                return;
        /* /metrics goes with the old listener; metrics_reconfigure() adds
         * it to whichever is there after the reload */
        if (a->health && a->metrics_on == healthendpoint_server(a->health))
                a->metrics_on = NULL;
        if (nc->proxy.health_port == 0) {
                if (a->health)
                        log_info("reload: no [proxy] health_port, HTTP health endpoint closed");
                a->health = healthendpoint_free(a->health);
                return;
        }
        r = healthendpoint_new_from_config(a->event, nc, agent_health_of, a, &fresh);
        if (r == -EADDRINUSE && a->health && oc->proxy.health_port == nc->proxy.health_port) {
                /* the same port on an overlapping address or a new path: hand it over */
                a->health = healthendpoint_free(a->health);
                r = healthendpoint_new_from_config(a->event, nc, agent_health_of, a, &fresh);
                if (r < 0)
                        (void) healthendpoint_new_from_config(a->event, oc, agent_health_of, a, &a->health);
        }
        if (r < 0) {
                log_warning_errno(r, "reload: cannot listen for HTTP health checks on %s port %u: %m, %s",
                                  nc->proxy.health_address, (unsigned) nc->proxy.health_port,
                                  a->health ? "keeping the previous listener" : "no listener now");
                return;
        }
        healthendpoint_free(a->health);
        a->health = fresh;
}

/* ---- Prometheus metrics ---- */

static void metrics_facts(Agent *a, MetricsFacts *f) {
        _cleanup_(json_object_putp) json_object *sl = alerts_status_json(a->alerts);
        json_object *ob = NULL, *v;
        double w = detector_window_pct(&a->detector);

        *f = (MetricsFacts) {
                .version = MONKEY_VERSION,
                .state = a->state,
                .state_since = a->state_since_wall,
                .cpu_known = a->cpu_have_usage && a->cpu_last.total > 0,
                .cpu_window = isnan(w) ? NAN : w / 100.0,
                .redis_up = a->pool ? a->redis_connected : -1,
        };
        if (f->cpu_known) {
                double t = (double) a->cpu_last.total;

                f->cpu_busy = (double) a->cpu_last.busy / t;
                f->cpu_user = (double) a->cpu_last.user / t;
                f->cpu_system = (double) a->cpu_last.system / t;
                f->cpu_iowait = (double) a->cpu_last.iowait / t;
                f->cpu_steal = (double) a->cpu_last.steal / t;
        }
        f->budget_min_serving = f->budget_max_unavailable = f->budget_serving = f->budget_unavailable = NAN;
        if (a->pool) {
                _cleanup_(json_object_putp) json_object *ps = pool_status_json(a->pool);
                json_object *b = NULL;

                if (ps && json_object_object_get_ex(ps, "budget", &b) && b) {
                        if (json_object_object_get_ex(b, "min_serving", &v) && json_object_is_type(v, json_type_int))
                                f->budget_min_serving = (double) json_object_get_int64(v);
                        if (json_object_object_get_ex(b, "max_unavailable", &v) && json_object_is_type(v, json_type_int))
                                f->budget_max_unavailable = (double) json_object_get_int64(v);
                        if (json_object_object_get_ex(b, "serving_alive", &v) && json_object_is_type(v, json_type_int))
                                f->budget_serving = (double) json_object_get_int64(v);
                        if (json_object_object_get_ex(b, "out", &v) && json_object_is_type(v, json_type_array))
                                f->budget_unavailable = (double) json_object_array_length(v);
                }
        }
        if (sl && json_object_object_get_ex(sl, "outbox", &ob) && ob &&
            json_object_object_get_ex(ob, "pending", &v) && json_object_is_type(v, json_type_int)) {
                f->outbox_known = true;
                f->outbox_messages = json_object_get_uint64(v);
                if (json_object_object_get_ex(ob, "dropped", &v) && json_object_is_type(v, json_type_int))
                        f->slack_dropped = json_object_get_uint64(v);
        }
}

static int on_metrics_request(const HttpRequest *req, void *userdata, HttpReply *reply) {
        Agent *a = userdata;
        MetricsFacts f;
        int r;

        metrics_facts(a, &f);
        r = metrics_render(a->metrics, &f, &reply->body, &reply->body_len);
        if (r < 0)
                return r;
        reply->status = 200;
        reply->content_type = METRICS_CONTENT_TYPE;
        return 0;
}

static int on_metrics_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Agent *a = userdata;
        _cleanup_(freep) char *text = NULL, *dir = NULL;
        const char *path = a->config->metrics.textfile, *slash;
        MetricsFacts f;
        size_t len;
        int r;

        (void) sd_event_source_set_time_relative(s, a->config->metrics.interval);
        if (!path)
                return 0;
        metrics_facts(a, &f);
        if (metrics_render(a->metrics, &f, &text, &len) < 0)
                return 0;
        /* node_exporter reads *.prom: written whole and renamed into place
         * by the writer, off the loop */
        slash = strrchr(path, '/');
        dir = strndup(path, slash && slash != path ? (size_t) (slash - path) : 1);
        if (!dir)
                return 0;
        r = writer_save(a->writer, dir, slash ? slash + 1 : path, text, len, NULL, 0);
        if (r < 0)
                log_warning_errno(r, "metrics: cannot write %s: %m", path);
        return 0;
}

/* [metrics] at start and after a reload: the listener (its own, or the
 * health endpoint's) and the textfile's timer. */
static void metrics_reconfigure(Agent *a) {
        const Config *c = a->config;
        HttpServer *on = NULL;
        int r;

        a->metrics_timer = sd_event_source_disable_unref(a->metrics_timer);
        if (!c->metrics.enabled) {
                a->metrics_server = httpserver_free(a->metrics_server);
                a->metrics_on = NULL;
                return;
        }
        if (c->metrics.listen) {
                _cleanup_(freep) char *host = NULL;
                const char *colon = strrchr(c->metrics.listen, ':');
                uint16_t port = colon ? (uint16_t) strtoul(colon + 1, NULL, 10) : 0;
                HttpServer *fresh = NULL;

                /* [v6]:port or v4:port, checked by the config */
                host = colon ? strndup(c->metrics.listen, (size_t) (colon - c->metrics.listen)) : NULL;
                if (host && host[0] == '[') {
                        memmove(host, host + 1, strlen(host));
                        host[strcspn(host, "]")] = 0;
                }
                if (a->metrics_server && httpserver_port(a->metrics_server) == port && a->metrics_on == a->metrics_server)
                        on = a->metrics_server; /* unchanged enough: keep its connections */
                else {
                        a->metrics_server = httpserver_free(a->metrics_server);
                        r = host ? httpserver_new(a->event, host, port, NULL, &fresh) : -EINVAL;
                        if (r < 0)
                                log_warning_errno(r, "metrics: cannot listen on %s: %m; /metrics is not served",
                                                  c->metrics.listen);
                        else {
                                a->metrics_server = fresh;
                                on = fresh;
                                a->metrics_on = NULL;
                        }
                }
        } else {
                a->metrics_server = httpserver_free(a->metrics_server);
                on = a->health ? healthendpoint_server(a->health) : NULL;
        }
        if (on && on != a->metrics_on) {
                r = httpserver_add_route(on, "/metrics", on_metrics_request, a);
                if (r < 0)
                        log_warning_errno(r, "metrics: cannot serve /metrics: %m");
        }
        a->metrics_on = on;
        if (c->metrics.textfile) {
                r = sd_event_add_time_relative(a->event, &a->metrics_timer, CLOCK_MONOTONIC, 0, USEC_PER_SEC,
                                               on_metrics_timer, a);
                if (r >= 0)
                        r = sd_event_source_set_enabled(a->metrics_timer, SD_EVENT_ON);
                if (r < 0)
                        log_warning_errno(r, "metrics: cannot schedule the textfile: %m");
        }
}

/* The reload's verdict, for the log, sd_notify and the caller: "SECTION:
 * DETAIL" when a part refused the new config, or the loader's own
 * "FILE:LINE: message" (section NULL). Takes detail. */
static int reload_refused(Agent *a, char **ret_error, int r, const char *section, char *detail) {
        char *why = NULL;

        if (section) {
                if (asprintf(&why, "%s: %s", section, detail ? detail : strerror(-r)) < 0)
                        why = NULL;
                free(detail);
        } else
                why = detail;
        log_warning("reload failed, keeping the running config: %s", why ? why : strerror(-r));
        metrics_reload(a->metrics, false);
        if (ret_error)
                *ret_error = why ? why : strdup(strerror(-r));
        else
                free(why);
        sd_notify(0, "READY=1");
        sd_notify_status(a);
        return r < 0 ? r : -EINVAL;
}

int agent_reload(Agent *a, char **ret_error) {
        _cleanup_(config_freep) Config *nc = NULL;
        char *err = NULL;
        Config *oc = a->config;
        int r;

        sd_notifyf(0, "RELOADING=1\nSTATUS=Reloading %s\nMONOTONIC_USEC=%llu", a->config_path,
                   (unsigned long long) clock_loop_now(NULL, CLOCK_MONOTONIC));
        r = config_load(a->config_path, &nc, &err);
        if (r < 0)
                return reload_refused(a, ret_error, r, NULL, err);

        /* These are bound at start; changing them live would orphan the
         * socket or split the state between two directories. */
        if (!streq(nc->agent.state_dir, oc->agent.state_dir) ||
            !streq(nc->agent.control_socket, oc->agent.control_socket) || !streq(nc->agent.boot_id, oc->agent.boot_id))
                log_warning("reload: state_dir, control_socket and boot_id take effect at the next restart, ignoring "
                            "their new values");
        free(nc->agent.state_dir);
        nc->agent.state_dir = strdup(oc->agent.state_dir);
        free(nc->agent.control_socket);
        nc->agent.control_socket = strdup(oc->agent.control_socket);
        free(nc->agent.boot_id);
        nc->agent.boot_id = strdup(oc->agent.boot_id);
        if (!nc->agent.state_dir || !nc->agent.control_socket || !nc->agent.boot_id)
                return reload_refused(a, ret_error, -ENOMEM, NULL, NULL);

        /* What can still refuse the file comes first, each all or nothing,
         * before anything else is applied. */
        if (a->checkrun && nc->checks.enabled) {
                r = checkrun_reconfigure(a->checkrun, nc, &err);
                if (r < 0)
                        return reload_refused(a, ret_error, r, "[checks]", err);
        } else if (!!a->checkrun != nc->checks.enabled)
                log_warning("reload: adding or removing [checks] takes effect at the next restart, ignoring");

        r = alerts_reload(a->alerts, nc, &err);
        if (r < 0)
                return reload_refused(a, ret_error, r, "[slack]", err);
        r = detector_reconfigure(&a->detector, nc->cpu.threshold, nc->cpu.clear_below, nc->cpu.window,
                                 nc->cpu.interval);
        if (r < 0)
                return reload_refused(a, ret_error, r, "[cpu]", NULL);
        if (!streq(nc->agent.proc_stat, oc->agent.proc_stat)) {
                a->cpu = cpu_reader_free(a->cpu);
                a->cpu_prev_at = 0;
        }
        if (nc->cpu.interval != oc->cpu.interval) {
                r = ticker_set(a->sampler, clock_loop_now(a->event, CLOCK_BOOTTIME) + nc->cpu.interval, nc->cpu.interval);
                if (r < 0)
                        log_error_errno(r, "Cannot re-arm the sampling timer: %m");
        }
        if (a->pool && nc->pool.enabled) {
                r = pool_reconfigure(a->pool, nc);
                if (r < 0)
                        return reload_refused(a, ret_error, r, "[pool]", NULL);
        } else if (!!a->pool != nc->pool.enabled)
                log_warning("reload: adding or removing [pool] takes effect at the next restart, ignoring");
        agent_check_reconfigure(a, nc);
        health_reconfigure(a, nc);
        bool route_changed = !config_aws_equal(oc, nc);
        (void) remedy_reconfigure(a->remedy, nc);
        /* Config management named new target groups: a host in the pool
         * registers there now, not at its next remediation. One dropped
         * from the list is left as it is: deregistering is an operator's
         * call (the group may be managed elsewhere from now on). */
        if (route_changed && remedy_routes(a->remedy) && state_is_in_pool(a->state) && !a->route_attaching &&
            !a->route_detaching)
                remedy_attach_quietly(a->remedy);
        log_max_level = nc->agent.log_level;
        /* A reload may grant or revoke [agent] control_group at once. */
        r = control_server_apply_config(a->control, nc);
        if (r < 0)
                log_warning_errno(r, "reload: cannot apply [agent] control_group, keeping the previous one: %m");
        a->config = TAKE_PTR(nc);
        config_free(oc);
        capture_set_config(a->capture, a->config);
        alerts_set_config(a->alerts, a->config);
        if (a->checkrun)
                checkrun_set_config(a->checkrun, a->config);
        remedy_set_config(a->remedy, a->config);

        metrics_reconfigure(a);
        metrics_reload(a->metrics, true);
        log_info("Reloaded %s", a->config_path);
        sd_notify(0, "READY=1");
        sd_notify_status(a);
        return 0;
}

static void on_outbox_quiet(void *userdata) {
        Agent *a = userdata;

        (void) sd_event_exit(a->event, 0);
}

static int on_stop_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        Agent *a = userdata;

        log_notice("Stopping without Slack's answer to the message in flight: it is sent again after the restart");
        return sd_event_exit(a->event, 0);
}

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Agent *a = userdata;
        int r;

        if (si->ssi_signo == SIGHUP)
                return agent_reload_recorded(a, "SIGHUP", NULL), 0;

        if (a->stopping) /* a second signal: now */
                return sd_event_exit(a->event, 0);
        log_info("Received %s, stopping", strsignal((int) si->ssi_signo));
        a->stopping = true;
        sd_notify(0, "STOPPING=1\nSTATUS=Stopping");
        (void) ticker_stop(a->sampler);
        readiness_stop(a);
        /* A message Slack is answering right now would be sent twice if we
         * exited before reading the answer (a reboot stops us exactly when
         * the "reboot accepted" reply goes out): wait for it, briefly. */
        if (alerts_quiesce(a->alerts, on_outbox_quiet, a)) {
                r = sd_event_add_time_relative(a->event, &a->stop_deadline, CLOCK_MONOTONIC, AGENT_STOP_GRACE_USEC,
                                               0, on_stop_deadline, a);
                if (r >= 0)
                        return 0;
                log_warning_errno(r, "Cannot wait for Slack's answer, stopping now: %m");
        }
        return sd_event_exit(a->event, 0);
}

/* ---- life cycle ---- */

static int state_dir_prepare(const char *dir) {
        if (mkdir(dir, 0700) < 0 && errno != EEXIST)
                return log_error_errno(errno, "Cannot create state directory %s: %m", dir);
        return 0;
}

static void agent_start_machine(Agent *a) {
        char reason[192], due[160] = "";
        const char *prev = a->persist.boot_id;
        usec_t last;

        if (isempty(prev))
                snprintf(reason, sizeof reason, "first start (boot id %s)", a->boot_id);
        else if (a->new_boot)
                snprintf(reason, sizeof reason, "new boot (boot id %s, was %s)", a->boot_id, prev);
        else
                snprintf(reason, sizeof reason, "agent restart in the same boot (was %s)",
                         state_to_string(a->persist.state));

        log_info("Starting: %s", reason);
        last = a->persist.n_remediations > 0 ? a->persist.remediations[a->persist.n_remediations - 1] : 0;
        /* The reboot a step asked for has happened; or it is still due:
         * killed (OOM, SIGKILL) with RebootInstances in flight, or between
         * EC2's yes and the shutdown (remedy.c). */
        (void) remedy_reboot_due(a->remedy, a->new_boot, due, sizeof due);
        /* A boot that follows our own remediation: give the app time. */
        if (a->new_boot && !isempty(prev) && a->config->remedy.enabled && a->config->remedy.grace > 0 &&
            remedy_count_in_window(&last, a->persist.n_remediations > 0, agent_now_guard(a),
                                   a->config->remedy.window) > 0) {
                a->grace_until = clock_loop_now(a->event, CLOCK_MONOTONIC) + a->config->remedy.grace;
                log_info("Post-boot grace: a new overload only alerts for the next %s",
                         format_duration((char[32]) {}, 32, a->config->remedy.grace));
        }
        a->state = STATE_BOOT;
        a->state_since_mono = clock_loop_now(a->event, CLOCK_MONOTONIC);
        a->state_since_wall = agent_now_wall(a);
        a->state_reason = strdup(reason);

        if (a->persist.maintenance) {
                char m[256];
                snprintf(m, sizeof m, "%s; operator drain still in force: %s", reason,
                         strna(a->persist.maintenance_reason));
                agent_post_event(a, EVENT_RESTORE_MAINTENANCE, m);
        } else if (a->persist.held) {
                char m[320];
                snprintf(m, sizeof m, "%s; still held out of the pool: %s", reason, strna(a->persist.held_reason));
                agent_post_event(a, EVENT_RESTORE_HOLD, m);
        } else if (remedy_reboot_awaited(a->remedy)) {
                char m[320];
                snprintf(m, sizeof m, "%s; %s and the machine has not gone down yet: waiting for it", reason, due);
                agent_post_event(a, EVENT_START, m);
        } else
                agent_post_event(a, EVENT_START, reason);
}

int agent_new(const char *config_path, Agent **ret, char **ret_error) {
        _cleanup_(agent_freep) Agent *a = NULL;
        _cleanup_(freep) char *moved = NULL, *why = NULL;
        sigset_t mask;
        int r;

        a = calloc(1, sizeof *a);
        if (!a)
                return -ENOMEM;
        persistent_state_init(&a->persist);
        a->state = STATE_BOOT;

        a->config_path = strdup(config_path);
        if (!a->config_path)
                return -ENOMEM;
        r = config_load(config_path, &a->config, ret_error);
        if (r < 0)
                return r;
        log_max_level = a->config->agent.log_level;

        r = detector_init(&a->detector, a->config->cpu.threshold, a->config->cpu.clear_below, a->config->cpu.window,
                          a->config->cpu.interval);
        if (r < 0)
                return log_error_errno(r, "Cannot set up the detector: %m");

        r = state_dir_prepare(a->config->agent.state_dir);
        if (r < 0)
                return r;
        r = state_remove_stale_temps(a->config->agent.state_dir);
        if (r > 0)
                log_info("%s: removed %d unfinished write%s of state.json", a->config->agent.state_dir, r,
                         r == 1 ? "" : "s");
        r = state_load(a->config->agent.state_dir, &a->persist, &moved, &why);
        if (r < 0)
                return log_error_errno(r, "Cannot read %s/state.json%s%s%s: %m", a->config->agent.state_dir,
                                       why ? " (" : "", strempty(why), why ? ")" : "");
        if (moved)
                log_warning("%s/state.json was corrupt (%s); moved aside to %s, starting fresh",
                            a->config->agent.state_dir, strna(why), moved);
        /* The transitions before this start (a restart, a reboot). */
        r = history_file_open(a->config->agent.state_dir, AGENT_HISTORY_MAX, a->history, &a->history_len,
                              &a->history_file);
        if (r < 0)
                log_warning_errno(r, "Cannot open %s/history.jsonl: %m; history is kept in memory only, ignoring",
                                  a->config->agent.state_dir);

        if (a->persist.last_checks)
                a->last_checks = json_tokener_parse(a->persist.last_checks); /* NULL if garbage: "not run" */
        r = boot_id_read(a->config->agent.boot_id, a->boot_id);
        if (r < 0)
                return log_error_errno(r, "Cannot read the boot id from %s: %m", a->config->agent.boot_id);
        a->new_boot = !streq(a->persist.boot_id, a->boot_id);
        /* The guard's clock (agent_now_guard): anchored once per boot, kept
         * across agent restarts in it. */
        if (a->new_boot || a->persist.anchor_wall == 0 ||
            clock_loop_now(NULL, CLOCK_BOOTTIME) < a->persist.anchor_boottime) {
                a->persist.anchor_wall = clock_loop_now(NULL, CLOCK_REALTIME);
                a->persist.anchor_boottime = clock_loop_now(NULL, CLOCK_BOOTTIME);
        }

        r = sd_event_new(&a->event);
        if (r < 0)
                return log_error_errno(r, "Cannot create the event loop: %m");
        r = writer_new(a->event, &a->writer);
        if (r < 0)
                return log_error_errno(r, "Cannot start the writer thread: %m");
        {
                /* The profile worker is this binary again; NULL: no profiles. */
                _cleanup_(freep) char *self_exe = realpath("/proc/self/exe", NULL);

                r = capture_new(a->event, a->config, a->writer, self_exe, &capture_sink, a, &a->capture);
                if (r < 0)
                        return log_error_errno(r, "Cannot set up incident evidence: %m");
        }

        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        sigaddset(&mask, SIGCHLD); /* sd-event's child sources: the profile worker */
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return log_error_errno(errno, "Cannot block signals: %m");
        r = sd_event_add_signal(a->event, &a->sig_term, SIGTERM, on_signal, a);
        if (r >= 0)
                r = sd_event_add_signal(a->event, &a->sig_int, SIGINT, on_signal, a);
        if (r >= 0)
                r = sd_event_add_signal(a->event, &a->sig_hup, SIGHUP, on_signal, a);
        if (r < 0)
                return log_error_errno(r, "Cannot watch signals: %m");

        r = sd_event_add_defer(a->event, &a->queue_defer, queue_dispatch, a);
        if (r >= 0)
                r = sd_event_source_set_enabled(a->queue_defer, SD_EVENT_OFF);
        if (r < 0)
                return log_error_errno(r, "Cannot add the event queue: %m");

        /* Sends WATCHDOG=1 by itself when WATCHDOG_USEC is set. */
        r = sd_event_set_watchdog(a->event, true);
        if (r < 0)
                log_warning_errno(r, "Cannot enable the watchdog: %m, ignoring");

        /* One HTTP client for Slack, AWS and the checks, whichever are
         * configured now or after a reload: freed after all of them. */
        r = http_new(a->event, &a->http);
        if (r < 0)
                return log_error_errno(r, "Cannot set up HTTP: %m");

        r = control_server_new(a->event, a->config->agent.control_socket, &control_handlers, a, &a->control);
        if (r < 0)
                return log_error_errno(r, "Cannot listen on %s: %m", a->config->agent.control_socket);
        /* Who may drain besides root and our own uid. */
        r = control_server_apply_config(a->control, a->config);
        if (r < 0)
                return log_error_errno(r, "Cannot set the control group: %m");

        if (a->config->pool.enabled) {
                r = pool_new(a->event, a->config, &a->pool, ret_error);
                if (r < 0)
                        return r;
        }
        r = alerts_new(a->event, a->config, a->http, a->writer, &a->persist.incident, &alerts_sink, a, &a->alerts,
                       ret_error);
        if (r < 0)
                return r;
        if (a->pool)
                pool_set_connection_handler(a->pool, on_pool_connection, a);
        r = remedy_new(a->event, a->http, a->config, &a->persist, a->boot_id, &remedy_sink, a, &a->remedy,
                       ret_error);
        if (r < 0)
                return r;
        if (a->config->checks.enabled) {
                r = checkrun_new(a->event, a->http, a->config, &checkrun_sink, a, &a->checkrun, ret_error);
                if (r < 0)
                        return r;
        }
        if (a->config->proxy.health_port > 0) {
                r = healthendpoint_new_from_config(a->event, a->config, agent_health_of, a, &a->health);
                if (r < 0)
                        return r; /* logged with the address */
        }
        r = metrics_new(&a->metrics);
        if (r < 0)
                return r;
        metrics_reconfigure(a);
        if (a->config->proxy.agent_check_port > 0) {
                r = agentcheck_new_from_config(a->event, a->config, agent_state_of, a, &a->agent_check);
                if (r < 0)
                        return log_error_errno(r, "Cannot listen for HAProxy's agent-check on %s port %u: %m",
                                               a->config->proxy.agent_check_address,
                                               (unsigned) a->config->proxy.agent_check_port);
        }

        *ret = TAKE_PTR(a);
        return 0;
}

int agent_start(Agent *a) {
        int r;

        r = sampling_start(a);
        if (r < 0)
                return r;
        if (a->pool) {
                /* Out until checks pass: a rebooted host must not be routed
                 * on the strength of a membership from before the boot. */
                pool_set_state(a->pool, state_to_string(STATE_BOOT), "starting", false);
                r = pool_start(a->pool);
                if (r < 0)
                        return log_error_errno(r, "Cannot start the pool client: %m");
        }
        agent_start_machine(a);
        remedy_start(a->remedy);

        sd_notifyf(0, "READY=1\nSTATUS=%s: %s", state_to_string(a->state), strna(a->state_reason));
        log_info("monkeyd %s running as %s, control socket %s", MONKEY_VERSION, a->config->agent.host,
                 a->config->agent.control_socket);
        return 0;
}

int agent_run(Agent *a) {
        int r;

        r = agent_start(a);
        if (r < 0)
                return r;
        r = sd_event_loop(a->event);
        if (r < 0)
                return log_error_errno(r, "Event loop failed: %m");
        return 0;
}

Agent *agent_free(Agent *a) {
        if (!a)
                return NULL;
        /* Stopping: what was saved or spooled reaches the disk first. */
        writer_stop(a->writer);
        readiness_stop(a);
        a->checkrun = checkrun_free(a->checkrun);
        a->remedy = remedy_free(a->remedy);
        free(a->route_join_reason);
        a->route_join_reason = NULL;
        a->capture = capture_free(a->capture);
        a->alerts = alerts_free(a->alerts);
        a->control = control_server_free(a->control);
        a->agent_check = agentcheck_free(a->agent_check);
        a->metrics_timer = sd_event_source_disable_unref(a->metrics_timer);
        a->metrics_server = httpserver_free(a->metrics_server);
        a->metrics_on = NULL;
        a->health = healthendpoint_free(a->health);
        a->metrics = metrics_free(a->metrics);
        a->pool = pool_free(a->pool);
        /* its last users (Slack, AWS, the checks) are gone */
        a->http = http_free(a->http);
        timers_cancel(a);
        ticker_free(a->sampler);
        sd_event_source_disable_unref(a->queue_defer);
        sd_event_source_disable_unref(a->stop_deadline);
        sd_event_source_disable_unref(a->sig_term);
        sd_event_source_disable_unref(a->sig_int);
        sd_event_source_disable_unref(a->sig_hup);
        eventq_clear(&a->queue);
        for (size_t k = 0; k < a->history_len; k++)
                json_object_put(a->history[(a->history_head + k) % AGENT_HISTORY_MAX]);
        history_file_free(a->history_file);
        free(a->reload_error);
        json_object_put(a->last_checks);
        cpu_reader_free(a->cpu);
        detector_done(&a->detector);
        persistent_state_done(&a->persist);
        free(a->cpu_last_error);
        free(a->state_reason);
        config_free(a->config);
        free(a->config_path);
        a->writer = writer_free(a->writer);
        sd_event_unref(a->event);
        free(a);
        return NULL;
}
