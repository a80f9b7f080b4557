/* The alert pipeline inside the agent. Composition is pure (notify.c), the
 * spool and the retries are the outbox's, the wire is slack.c's: this file
 * gathers the facts from the agent and wires the three together. */
#include "alerts.h"

#include <inttypes.h>
#include <math.h>
#include <time.h>

#include "checks.h"
#include "clock.h"
#include "evidence.h"
#include "fleetthread.h"
#include "jsonutil.h"
#include "log.h"
#include "outbox.h"
#include "parse.h"
#include "poolkeys.h"
#include "slack.h"

/* A Redis failover is not an incident; an outage longer than our lease
 * is: proxies that follow leases stop routing to us then. */
#define POOL_DOWN_GRACE(c) MAX((c)->pool.lease, 2 * USEC_PER_SEC)
#define TEST_ALERT_DEADLINE (20 * USEC_PER_SEC)
#define JUST_CLOSED (5 * USEC_PER_SEC)       /* BACK, CLEARED close the incident right before they announce it */
#define PROC_ROOT "/proc"
/* The verdict comes within the pool's command timeout (2 s) after the
 * writer's barrier; past this the breach goes as spooled. */
#define VERDICT_WAIT (10 * USEC_PER_SEC)
/* The fleet thread's key outlives any reminder interval: a fleet that
 * holds for hours keeps one thread. */
#define FLEET_TTL(c) MAX(2 * (c)->slack.remind, USEC_PER_HOUR)

struct Alerts {
        sd_event *event;
        Config *config;                 /* a reference: alerts_set_config() */
        Http *http;
        Writer *writer;
        const Incident *incident;       /* the agent's, read only */
        const AlertsSink *sink;
        void *userdata;

        Slack *slack;                   /* NULL without [slack] */
        Outbox *outbox;
        AlertGate gate_hold, gate_quarantine, gate_pool;
        char *quarantine_reason;        /* the failure last alerted */
        sd_event_source *pool_down_timer;
        char *pool_down_detail;
        usec_t pool_down_since;         /* CLOCK_MONOTONIC, 0 while connected */
        ProcSnapshot *top_before;       /* /proc at the start of the hot run */
        ProcTop top[NOTICE_TOP_MAX];    /* the last breach's top processes */
        size_t n_top;
        bool top_since_start;
        struct {
                uint64_t ticket;        /* control client waiting, 0 = free slot */
                uint64_t seq;           /* its outbox record */
                sd_event_source *deadline;
        } tests[4];
        struct {
                char *incident;         /* held with the budget spent: our incident; NULL: not in the fleet */
                char claim[80];         /* ours, for this hold */
                usec_t asked_since;     /* CLOCK_MONOTONIC */
                bool routed;            /* our incident's messages go into the fleet thread */
                sd_event_source *poll;
                char *open_key;         /* the fleet parent we spooled, until its ts is stored */
                char open_claim[80];
        } fleet;
};

/* --- outbox transport ----------------------------------------------------- */

static void on_slack_answer(const SlackAnswer *ans, void *userdata) {
        Alerts *a = userdata;

        if (a->outbox)
                outbox_answer(a->outbox, ans->verdict, ans->retry_after, ans->detail, ans->ts);
}

static int transport_send(void *userdata, const OutboxRecord *r, const char *thread_ts) {
        Alerts *a = userdata;

        if (!a->slack)
                return -ENOTCONN;
        return slack_send(a->slack, r->payload, thread_ts, on_slack_answer, a);
}

static void fleet_store(Alerts *a, const char *ts);

static void transport_thread(void *userdata, const char *incident, const char *ts) {
        Alerts *a = userdata;
        const Incident *i = a->incident;

        if (a->fleet.open_key && streq(incident, a->fleet.open_key)) {
                fleet_store(a, ts);
                return;
        }

        if (!i->id || !streq(i->id, incident) || streq_ptr(i->slack_thread, ts))
                return;
        /* the thread must outlive the reboot that comes next: the owner of
         * the incident keeps it and saves it */
        a->sink->thread(a->userdata, incident, ts);
}

static void test_done(Alerts *a, size_t k, bool ok, const char *message, OutboxVerdict v) {
        _cleanup_(json_object_putp) json_object *extra = json_object_new_object();

        if (extra) {
                json_object_object_add(extra, "verdict", json_object_new_string(strna(outbox_verdict_to_string(v))));
                json_object_object_add(extra, "seq", json_object_new_uint64(a->tests[k].seq));
        }
        a->sink->test_answer(a->userdata, a->tests[k].ticket, ok, message, extra);
        a->tests[k].deadline = sd_event_source_disable_unref(a->tests[k].deadline);
        a->tests[k].ticket = 0;
}

static void transport_answered(void *userdata, uint64_t seq, OutboxVerdict v, const char *detail) {
        Alerts *a = userdata;
        char m[320];

        for (size_t k = 0; k < ELEMENTSOF(a->tests); k++) {
                if (a->tests[k].ticket == 0 || a->tests[k].seq != seq)
                        continue;
                switch (v) {
                case OUTBOX_DELIVERED:
                        snprintf(m, sizeof m, "Slack answered: %s", strna(detail));
                        test_done(a, k, true, m, v);
                        break;
                case OUTBOX_RETRY:
                        snprintf(m, sizeof m, "not delivered yet: %s; the message stays in the outbox and is retried",
                                 strna(detail));
                        test_done(a, k, false, m, v);
                        break;
                default:
                        snprintf(m, sizeof m, "Slack refused it: %s", strna(detail));
                        test_done(a, k, false, m, v);
                        break;
                }
        }
}

static const OutboxTransport transport = {
        .send = transport_send,
        .thread = transport_thread,
        .answered = transport_answered,
};

static OutboxLimits limits_of(const Config *c) {
        return (OutboxLimits) { .max_count = c->slack.outbox_max, .max_bytes = c->slack.outbox_max_bytes };
}

/* --- set-up -------------------------------------------------------------- */

int alerts_new(sd_event *e, Config *c, Http *http, Writer *w, const Incident *incident, const AlertsSink *sink,
               void *userdata, Alerts **ret, char **ret_error) {
        _cleanup_(alerts_freep) Alerts *a = NULL;
        OutboxLimits l = limits_of(c);
        int r;

        a = calloc(1, sizeof *a);
        if (!a)
                return -ENOMEM;
        a->event = sd_event_ref(e);
        a->config = config_ref(c);
        a->http = http;
        a->writer = w;
        a->incident = incident;
        a->sink = sink;
        a->userdata = userdata;
        if (!c->slack.enabled) {
                *ret = TAKE_PTR(a);
                return 0;
        }

        r = slack_new(a->http, c, &a->slack, ret_error);
        if (r < 0)
                return r;
        r = outbox_new(a->event, a->writer, c->agent.state_dir, &l, &transport, a, &a->outbox);
        if (r < 0)
                return log_error_errno(r, "Cannot open the Slack outbox in %s: %m", c->agent.state_dir);
        if (incident->id && incident->slack_thread)
                (void) outbox_set_thread(a->outbox, incident->id, incident->slack_thread);
        log_info("slack: %s mode, outbox %s/" OUTBOX_DIR " (%zu waiting)", slack_mode_to_string(slack_mode(a->slack)),
                 c->agent.state_dir, outbox_n_pending(a->outbox));
        *ret = TAKE_PTR(a);
        return 0;
}

Alerts *alerts_free(Alerts *a) {
        if (!a)
                return NULL;
        for (size_t k = 0; k < ELEMENTSOF(a->tests); k++)
                a->tests[k].deadline = sd_event_source_disable_unref(a->tests[k].deadline);
        a->pool_down_timer = sd_event_source_disable_unref(a->pool_down_timer);
        a->fleet.poll = sd_event_source_disable_unref(a->fleet.poll);
        free(a->fleet.incident);
        free(a->fleet.open_key);
        /* the client first: it may hold a call the outbox waits on */
        a->slack = slack_free(a->slack);
        a->outbox = outbox_free(a->outbox);
        a->top_before = proc_snapshot_free(a->top_before);
        free(a->pool_down_detail);
        a->pool_down_detail = NULL;
        free(a->quarantine_reason);
        a->quarantine_reason = NULL;
        config_free(a->config);
        sd_event_unref(a->event);
        free(a);
        return NULL;
}

void alerts_set_config(Alerts *a, Config *c) {
        config_replace(&a->config, c);
}

bool alerts_restored(Alerts *a, Notice n, const char *incident) {
        return a->outbox && outbox_restored(a->outbox, notice_to_string(n), incident);
}

bool alerts_quiesce(Alerts *a, void (*done)(void *userdata), void *userdata) {
        return a->outbox && outbox_quiesce(a->outbox, done, userdata);
}

static void fleet_leave(Alerts *a, bool keep_route);
static int fleet_send_hold(Alerts *a);

void alerts_holding_reset(Alerts *a) {
        /* the "cleared" message that follows goes where the hold went */
        fleet_leave(a, true);
        (void) alert_gate_clear(&a->gate_hold);
}

static bool slack_config_equal(const Config *x, const Config *y) {
        return x->slack.enabled == y->slack.enabled && streq_ptr(x->slack.webhook_url, y->slack.webhook_url) &&
               streq_ptr(x->slack.webhook_url_file, y->slack.webhook_url_file) &&
               streq_ptr(x->slack.token, y->slack.token) && streq_ptr(x->slack.token_file, y->slack.token_file) &&
               streq_ptr(x->slack.channel, y->slack.channel) && streq_ptr(x->slack.api_url, y->slack.api_url) &&
               x->slack.timeout == y->slack.timeout;
}

int alerts_reload(Alerts *a, const Config *nc, char **ret_error) {
        _cleanup_(slack_freep) Slack *s = NULL;
        OutboxLimits l = limits_of(nc);
        int r;

        if (!nc->slack.enabled || !a->outbox) {
                if (nc->slack.enabled != !!a->outbox)
                        log_warning("reload: adding or removing [slack] takes effect at the next restart, ignoring");
                return 0;
        }
        /* Files are re-read on every reload: a rotated token is picked up
         * even when the config text did not change. */
        r = slack_new(a->http, nc, &s, ret_error);
        if (r < 0)
                return r;
        if (!slack_config_equal(a->config, nc))
                log_info("reload: new [slack] settings");
        /* The old client may have a message in flight: its answer is lost
         * with it, so the outbox sends that message again. */
        slack_free(a->slack);
        a->slack = TAKE_PTR(s);
        outbox_forget_in_flight(a->outbox);
        outbox_set_limits(a->outbox, &l);
        outbox_resume(a->outbox, true);
        return 0;
}

/* --- facts ---------------------------------------------------------------- */

void alerts_rank_top(Alerts *a) {
        _cleanup_(proc_snapshot_freep) ProcSnapshot *after = NULL;
        long tck = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
        int r;

        r = proc_snapshot_take(PROC_ROOT, clock_loop_now(a->event, CLOCK_BOOTTIME), &after);
        if (r < 0) {
                log_warning_errno(r, "evidence: cannot read processes: %m");
                a->n_top = 0;
                return;
        }
        r = proc_top(a->top_before, after, PROC_ROOT, tck > 0 ? (unsigned) tck : 100,
                     page > 0 ? (unsigned) (page / 1024) : 4, a->top, NOTICE_TOP_MAX, &a->n_top);
        if (r < 0) {
                log_warning_errno(r, "evidence: cannot rank processes: %m");
                a->n_top = 0;
                return;
        }
        a->top_since_start = r > 0;
}

void alerts_on_sample(Alerts *a, bool hot) {
        int r;

        if (hot && !a->top_before) {
                r = proc_snapshot_take(PROC_ROOT, clock_loop_now(a->event, CLOCK_BOOTTIME), &a->top_before);
                if (r < 0)
                        log_debug_errno(r, "evidence: no baseline of processes: %m");
        } else if (!hot && a->top_before)
                a->top_before = proc_snapshot_free(a->top_before);
}

static const char *pool_next(Alerts *a, char *buf, size_t size) {
        const Config *c = a->config;
        AlertsFacts now = {};
        int64_t serving;
        char d[32];

        a->sink->facts(a->userdata, false, &now);

        if (!c->remedy.enabled) {
                snprintf(buf, size, "observe only ([remedy] not configured): staying in the pool");
                return buf;
        }
        if (now.max_unavailable == 0) {
                now.min_serving = c->pool.min_serving;
                now.max_unavailable = c->pool.max_unavailable;
        }
        if (c->remedy.dry_run) {
                if (now.pool)
                        snprintf(buf, size,
                                 "DRY RUN: asking pool %s's budget without taking a slot (min_serving %u, "
                                 "max_unavailable %u), then the ladder as messages; staying in the pool",
                                 c->pool.name, now.min_serving, now.max_unavailable);
                else
                        snprintf(buf, size, "DRY RUN: the ladder as messages; staying in the pool");
                return buf;
        }
        if (!now.pool) {
                snprintf(buf, size, "%s%s%s", c->remedy.budget == REMEDY_BUDGET_NONE ? "no fleet budget: " : "",
                         c->remedy.dry_run ? "dry run: would " : "", remedy_step_to_string(c->remedy.ladder[0]));
                return buf;
        }
        a->sink->facts(a->userdata, true, &now);
        if (now.max_unavailable == 0) {
                now.min_serving = c->pool.min_serving;
                now.max_unavailable = c->pool.max_unavailable;
        }
        serving = now.serving;
        if (serving > 0)
                snprintf(buf, size,
                         "leaving pool %s if the budget allows (%" PRId64 " serving now, %" PRId64
                         " would stay; min_serving %u, max_unavailable %u), drain %s, then %s%s",
                         c->pool.name, serving, serving - 1, now.min_serving, now.max_unavailable,
                         format_duration(d, sizeof d, c->pool.drain), c->remedy.dry_run ? "dry run: would " : "",
                         remedy_step_to_string(c->remedy.ladder[0]));
        else
                snprintf(buf, size, "leaving pool %s if the budget allows (min_serving %u, max_unavailable %u), then %s%s",
                         c->pool.name, now.min_serving, now.max_unavailable,
                         c->remedy.dry_run ? "dry run: would " : "", remedy_step_to_string(c->remedy.ladder[0]));
        return buf;
}

/* One line per check, "✓ content: 9 bytes, contain \"ok\"", and what the
 * app answered when something failed. */
static char *checks_lines(Alerts *a) {
        static const char *const names[] = { "content", "status", "binding" };
        json_object *lc = a->sink->last_checks(a->userdata), *detail = NULL, *v;
        bool failed = false;
        char *s = NULL;
        size_t len = 0;
        FILE *f;

        if (!a->config->checks.enabled)
                return strdup("checks: not configured");
        if (!lc)
                return strdup("checks: not run yet");
        f = open_memstream(&s, &len);
        if (!f)
                return NULL;
        json_object_object_get_ex(lc, "detail", &detail);
        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                const char *verdict = json_object_object_get_ex(lc, names[i], &v) ? json_object_get_string(v) : "?";
                const char *d = detail && json_object_object_get_ex(detail, names[i], &v) ? json_object_get_string(v)
                                                                                          : "";
                bool pass = streq_ptr(verdict, "pass");
                failed = failed || streq_ptr(verdict, "fail");
                fprintf(f, "%s %s: %s%s%s\n", pass ? "\u2713" : streq_ptr(verdict, "fail") ? "\u2717" : "-", names[i],
                        strempty(d), pass || isempty(d) ? "" : " ", pass || !isempty(d) ? "" : strna(verdict));
        }
        if (failed && json_object_object_get_ex(lc, "body_excerpt", &v) && json_object_get_string_len(v) > 0) {
                /* the JSON holds the body's text: escaped here, once, to stay one line */
                char body[(CHECKS_EXCERPT * 3 + 4) * 4 + 8];
                checks_excerpt(json_object_get_string(v), (size_t) json_object_get_string_len(v), sizeof body,
                               body, sizeof body);
                fprintf(f, "body: %s\n", body);
        }
        fclose(f);
        if (s && len > 0 && s[len - 1] == '\n')
                s[len - 1] = '\0';
        return s;
}

static void facts_base(Alerts *a, Notice n, const char *reason, NoticeFacts *f) {
        const Config *c = a->config;
        AlertsFacts now = {};

        a->sink->facts(a->userdata, false, &now);
        *f = (NoticeFacts) {
                .kind = n,
                .host = c->agent.host,
                .pool = c->pool.enabled ? c->pool.name : NULL,
                .instance_id = now.instance_id ? now.instance_id : c->aws.instance_id,
                .reason = reason,
                .cpu_now = now.cpu_now,
                .cpu_window = now.cpu_window,
                .threshold = c->cpu.threshold,
                .window = c->cpu.window,
                .dry_run = c->remedy.dry_run,
                .no_fleet_budget = config_no_fleet_budget(c),
        };
        if (isnan(f->cpu_window))
                f->cpu_window = -1;
}

static bool in_thread(Notice n) {
        return n == NOTICE_HOLDING || n == NOTICE_CLEARED || n == NOTICE_REMEDIATING || n == NOTICE_BACK ||
               n == NOTICE_QUARANTINED || n == NOTICE_GAVE_UP || n == NOTICE_GRACE || n == NOTICE_DRY_RUN;
}

/* open_thread: the message opens the incident's thread (its breach went
 * into the fleet thread). */
static void spool_as(Alerts *a, const NoticeFacts *f, bool open_thread) {
        const Incident *i = a->incident;
        _cleanup_(freep) char *payload = NULL;
        const char *incident = NULL;
        OutboxRole role = OUTBOX_STANDALONE;
        NoticeFacts g = *f;
        usec_t now = clock_loop_now(a->event, CLOCK_REALTIME);
        int r;

        if (!a->outbox)
                return;
        if (i->id && f->kind == NOTICE_BREACH) {
                incident = i->id;
                role = OUTBOX_PARENT;
        } else if (i->id && in_thread(f->kind) && (i->ended == 0 || (now >= i->ended && now - i->ended < JUST_CLOSED))) {
                incident = i->id;
                role = open_thread ? OUTBOX_PARENT : OUTBOX_REPLY;
        }
        g.incident = incident;
        r = notice_payload(&g, &payload);
        if (r >= 0)
                r = outbox_add(a->outbox, notice_to_string(f->kind), incident, role, false, payload, NULL);
        if (r < 0)
                log_error_errno(r, "slack: cannot spool the %s alert: %m; it is in the journal only",
                                notice_to_string(f->kind));
}

static void spool(Alerts *a, const NoticeFacts *f) {
        spool_as(a, f, false);
}

/* The facts of one notice, then the spool: `breach` carries what only a
 * breach has (the ranking and the capture were done by the caller). */
static void notify(Alerts *a, Notice n, const char *text, const char *reason, const char *pressure,
                   const char *evidence) {
        _cleanup_(freep) char *checks = NULL;
        char next[400];
        NoticeFacts f;
        const Incident *i = a->incident;
        usec_t now = clock_loop_now(a->event, CLOCK_REALTIME);

        log_notice("alert (%s)%s: %s", notice_to_string(n), a->outbox ? "" : " [slack not configured]", text);
        facts_base(a, n, reason, &f);
        switch (n) {
        case NOTICE_BREACH:
                f.top = a->top;
                f.n_top = a->n_top;
                f.top_since_start = a->top_since_start;
                f.next = pool_next(a, next, sizeof next);
                f.pressure = pressure;
                f.evidence = evidence;
                break;
        case NOTICE_BACK:
                checks = checks_lines(a);
                f.checks = checks;
                if (i->left_pool && now > i->left_pool)
                        f.downtime = now - i->left_pool;
                break;
        case NOTICE_QUARANTINED:
                checks = checks_lines(a);
                f.checks = checks;
                break;
        default:
                break;
        }
        spool(a, &f);
}

void alerts_notify(Alerts *a, Notice n, const char *text, const char *reason) {
        notify(a, n, text, reason, NULL, NULL);
}

void alerts_breach(Alerts *a, const char *text, const char *reason, const char *pressure, const char *evidence) {
        notify(a, NOTICE_BREACH, text, reason, pressure, evidence);
}

void alerts_profile(Alerts *a, const char *incident, const char *text, const char *detail) {
        _cleanup_(freep) char *payload = NULL;
        NoticeFacts f;
        int r;

        log_notice("alert (profile): %s", text);
        if (!a->outbox)
                return;
        facts_base(a, NOTICE_PROFILE, text, &f);
        f.detail = detail;
        /* the thread of the incident profiled, which may have closed since */
        f.incident = incident;
        r = notice_payload(&f, &payload);
        if (r >= 0)
                r = outbox_add(a->outbox, notice_to_string(NOTICE_PROFILE), incident,
                               incident ? OUTBOX_REPLY : OUTBOX_STANDALONE, false, payload, NULL);
        if (r < 0)
                log_error_errno(r, "slack: cannot spool the profile alert: %m; it is in the journal only");
}

void alerts_remediating(Alerts *a, const char *step, const char *text, const char *after) {
        NoticeFacts f;

        log_notice("alert (remediating): %s", text);
        facts_base(a, NOTICE_REMEDIATING, text, &f);
        f.step = step;
        f.next = after;
        spool(a, &f);
}

void alerts_dry_run(Alerts *a, const char *verdict, const char *budget, const char *ladder) {
        NoticeFacts f;

        log_notice("alert (dry run): %s: DRY RUN: %s; budget: %s; ladder: %s", a->config->agent.host, verdict,
                   strna(budget), strna(ladder));
        facts_base(a, NOTICE_DRY_RUN, budget, &f);
        f.step = verdict;
        f.next = ladder;
        f.dry_run = true;
        spool(a, &f);
}

void alerts_step_result(Alerts *a, const char *text, const char *request_id) {
        _cleanup_(freep) char *step = NULL;
        NoticeFacts f;

        log_notice("alert (remediating): %s", text);
        step = a->incident->n_steps > 0 ? strdup(a->incident->steps[a->incident->n_steps - 1].step) : NULL;
        facts_base(a, NOTICE_REMEDIATING, text, &f);
        f.step = step;
        f.request_id = isempty(request_id) ? "unknown" : request_id;
        /* EC2 always names the request it accepted: none means no answer came */
        f.unanswered = isempty(request_id);
        spool(a, &f);
}

void alerts_grace(Alerts *a, const char *reason, usec_t left) {
        NoticeFacts f;

        log_notice("alert (grace): %s overloaded during the post-boot grace: %s", a->config->agent.host, strna(reason));
        facts_base(a, NOTICE_GRACE, reason, &f);
        f.ongoing = left;
        spool(a, &f);
}

/* --- conditions ----------------------------------------------------------- */

void alerts_holding(Alerts *a, const char *reason) {
        NoticeFacts f;

        if (!alert_gate_raise(&a->gate_hold, clock_loop_now(a->event, CLOCK_MONOTONIC), a->config->slack.remind))
                return;
        facts_base(a, NOTICE_HOLDING, reason, &f);
        f.reminder = a->gate_hold.reminders;
        f.ongoing = clock_loop_now(a->event, CLOCK_MONOTONIC) - a->gate_hold.first_at;
        log_notice("alert (holding)%s: %s holding in the pool: %s", f.reminder ? " reminder" : "",
                   a->config->agent.host, strna(reason));
        spool(a, &f);
        /* a hold that outlasts the fleet thread's expiry keeps its one
         * thread: each reminder renews it (its answer changes nothing) */
        if (f.reminder > 0 && a->fleet.routed && fleet_send_hold(a) < 0)
                log_warning("slack: cannot renew the fleet thread in Redis, ignoring");
}

void alerts_holding_over(Alerts *a, const char *how) {
        usec_t since = a->gate_hold.first_at;
        bool own = a->fleet.routed;
        NoticeFacts f;

        /* our turn: from here the incident has a thread of its own */
        fleet_leave(a, false);
        if (!alert_gate_clear(&a->gate_hold))
                return;
        facts_base(a, NOTICE_HOLDING, how, &f);
        f.recovered = true;
        f.ongoing = clock_loop_now(a->event, CLOCK_MONOTONIC) - since;
        log_notice("alert (holding over): %s: %s", a->config->agent.host, strna(how));
        spool_as(a, &f, own);
}

void alerts_quarantined(Alerts *a, const char *reason) {
        NoticeFacts f;
        _cleanup_(freep) char *checks = NULL;
        bool changed = !streq_ptr(a->quarantine_reason, reason);

        if (changed) {
                free(a->quarantine_reason);
                a->quarantine_reason = reason ? strdup(reason) : NULL;
                /* a new failure is news: alert now, remind from here */
                if (a->gate_quarantine.active)
                        a->gate_quarantine.last_at = 0;
        }
        if (!alert_gate_raise(&a->gate_quarantine, clock_loop_now(a->event, CLOCK_MONOTONIC), changed ? 1 : a->config->slack.remind))
                return;
        facts_base(a, NOTICE_QUARANTINED, reason, &f);
        f.reminder = a->gate_quarantine.reminders;
        f.ongoing = clock_loop_now(a->event, CLOCK_MONOTONIC) - a->gate_quarantine.first_at;
        checks = checks_lines(a);
        f.checks = checks;
        log_notice("alert (quarantined)%s: %s quarantined: %s", f.reminder ? " reminder" : "", a->config->agent.host,
                   strna(reason));
        spool(a, &f);
}

bool alerts_quarantine_over(Alerts *a) {
        free(a->quarantine_reason);
        a->quarantine_reason = NULL;
        return alert_gate_clear(&a->gate_quarantine);
}

static int on_pool_down_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Alerts *a = userdata;
        NoticeFacts f;
        int r;

        if (alert_gate_raise(&a->gate_pool, clock_loop_now(a->event, CLOCK_MONOTONIC), a->config->slack.remind)) {
                facts_base(a, NOTICE_POOL_DOWN, a->pool_down_detail, &f);
                f.reminder = a->gate_pool.reminders;
                f.ongoing = clock_loop_now(a->event, CLOCK_MONOTONIC) - a->pool_down_since;
                log_notice("alert (pool-down)%s: %s cannot reach Redis: %s", f.reminder ? " reminder" : "",
                           a->config->agent.host, strna(a->pool_down_detail));
                spool(a, &f);
        }
        r = sd_event_source_set_time_relative(s, a->config->slack.remind);
        if (r >= 0)
                r = sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        if (r < 0)
                log_warning_errno(r, "Cannot re-arm the Redis reminder: %m");
        return 0;
}

void alerts_pool_connection(Alerts *a, bool connected, const char *detail) {
        int r;

        if (connected) {
                a->pool_down_timer = sd_event_source_disable_unref(a->pool_down_timer);
                if (alert_gate_clear(&a->gate_pool)) {
                        NoticeFacts f;
                        facts_base(a, NOTICE_POOL_UP, NULL, &f);
                        f.recovered = true;
                        f.ongoing = clock_loop_now(a->event, CLOCK_MONOTONIC) - a->pool_down_since;
                        log_notice("alert (pool-up): %s reaches Redis again", a->config->agent.host);
                        spool(a, &f);
                }
                a->pool_down_since = 0;
                return;
        }
        free(a->pool_down_detail);
        a->pool_down_detail = detail ? strdup(detail) : NULL;
        if (a->pool_down_timer)
                return;
        if (a->pool_down_since == 0)
                a->pool_down_since = clock_loop_now(a->event, CLOCK_MONOTONIC);
        r = sd_event_add_time_relative(a->event, &a->pool_down_timer, CLOCK_MONOTONIC, POOL_DOWN_GRACE(a->config), USEC_PER_MSEC * 100,
                                       on_pool_down_timer, a);
        if (r < 0)
                log_warning_errno(r, "Cannot time the Redis outage: %m");
}

/* --- test alert ------------------------------------------------------------ */

static int on_test_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        Alerts *a = userdata;
        char m[400];

        for (size_t k = 0; k < ELEMENTSOF(a->tests); k++) {
                if (a->tests[k].deadline != s)
                        continue;
                snprintf(m, sizeof m,
                         "no answer from Slack within %llus (%zu message(s) in the outbox%s%s); the test message "
                         "stays queued",
                         (unsigned long long) (TEST_ALERT_DEADLINE / USEC_PER_SEC), outbox_n_pending(a->outbox),
                         a->outbox ? ", see monkeyctl status" : "", "");
                test_done(a, k, false, m, OUTBOX_RETRY);
        }
        return 0;
}

int alerts_test(Alerts *a, uint64_t ticket, const char *text, char **ret_message) {
        _cleanup_(freep) char *payload = NULL;
        NoticeFacts f;
        size_t k;
        uint64_t seq;
        int r;

        if (!a->outbox) {
                *ret_message = strdup("Slack is not configured: add a [slack] section");
                return -ENOTCONN;
        }
        for (k = 0; k < ELEMENTSOF(a->tests) && a->tests[k].ticket != 0; k++)
                ;
        if (k == ELEMENTSOF(a->tests)) {
                *ret_message = strdup("too many test alerts in flight; try again shortly");
                return -EBUSY;
        }
        facts_base(a, NOTICE_TEST, text, &f);
        r = notice_payload(&f, &payload);
        if (r >= 0)
                r = outbox_add(a->outbox, "test", NULL, OUTBOX_STANDALONE, true, payload, &seq);
        if (r < 0) {
                if (asprintf(ret_message, "cannot spool the test message: %s", strerror(-r)) < 0)
                        *ret_message = NULL;
                return r;
        }
        r = sd_event_add_time_relative(a->event, &a->tests[k].deadline, CLOCK_MONOTONIC, TEST_ALERT_DEADLINE,
                                       USEC_PER_MSEC * 100, on_test_deadline, a);
        if (r < 0) {
                *ret_message = strdup("spooled, but cannot wait for the answer");
                return r;
        }
        a->tests[k].ticket = ticket;
        a->tests[k].seq = seq;
        log_info("slack: test alert spooled (outbox #%" PRIu64 ")", seq);
        return 0;
}

/* --- status ---------------------------------------------------------------- */

json_object *alerts_status_json(Alerts *a) {
        json_object *o;

        if (!a->slack || !a->outbox) {
                o = json_object_new_object();
                if (o)
                        json_object_object_add(o, "configured", json_object_new_boolean(false));
                return o;
        }
        o = slack_status_json(a->slack);
        if (!o)
                return NULL;
        json_object_object_add(o, "configured", json_object_new_boolean(true));
        json_object_object_add(o, "outbox", outbox_status_json(a->outbox, clock_loop_now(a->event, CLOCK_REALTIME)));
        json_object_object_add(o, "reminder_sec", json_object_new_double((double) a->config->slack.remind / USEC_PER_SEC));
        return o;
}

json_object *alerts_evidence_json(Alerts *a) {
        json_object *arr = json_object_new_array();

        for (size_t k = 0; arr && k < a->n_top; k++) {
                json_object *p = json_object_new_object();
                if (!p)
                        break;
                json_object_object_add(p, "pid", json_object_new_int(a->top[k].pid));
                json_object_object_add(p, "command", json_object_new_string(a->top[k].cmdline));
                json_object_object_add(p, "cpu_pct", json_new_rounded(a->top[k].cpu_pct, 1));
                json_object_object_add(p, "rss_kb", json_object_new_uint64(a->top[k].rss_kb));
                json_object_object_add(p, "new_in_window", json_object_new_boolean(a->top[k].new_in_window));
                json_object_array_add(arr, p);
        }
        return arr;
}

bool alerts_top_since_start(Alerts *a) {
        return a->top_since_start;
}

/* --- the fleet thread (fleetthread.h) ------------------------------------- */

static bool fleet_possible(Alerts *a) {
        return a->outbox && a->config->pool.enabled && a->sink->redis && slack_mode(a->slack) == SLACK_BOT;
}

/* EVAL script's text, its KEYS (fleet_thread_script_keys()), args. */
static int fleet_eval(Alerts *a, FleetScript script, size_t n_args, const char *const *args) {
        _cleanup_(poolkeys_done) PoolKeys keys = {};
        const char *argv[3 + FLEET_SCRIPT_KEYS_MAX + 8]; /* EVAL, the script, numkeys, the keys, at most 8 args */
        const char *k[FLEET_SCRIPT_KEYS_MAX];
        char numkeys[16];
        size_t n = 0;
        int r, n_keys;

        if (n_args > 8)
                return -E2BIG;
        r = poolkeys_new(a->config->pool.name, a->config->agent.host, &keys);
        if (r < 0)
                return r;
        n_keys = fleet_thread_script_keys(script, &keys, k);
        if (n_keys < 0)
                return n_keys;
        snprintf(numkeys, sizeof numkeys, "%d", n_keys);
        argv[n++] = "EVAL";
        argv[n++] = fleet_thread_script_text[script];
        argv[n++] = numkeys;
        for (int i = 0; i < n_keys; i++)
                argv[n++] = k[i];
        for (size_t i = 0; i < n_args; i++)
                argv[n++] = args[i];
        return a->sink->redis(a->userdata, fleet_thread_script_to_string(script), n, argv);
}

static int fleet_send_hold(Alerts *a) {
        char claim_ttl[32], ttl[32];

        snprintf(claim_ttl, sizeof claim_ttl, "%llu", (unsigned long long) (FLEET_THREAD_CLAIM_TTL / USEC_PER_MSEC));
        snprintf(ttl, sizeof ttl, "%llu", (unsigned long long) (FLEET_TTL(a->config) / USEC_PER_MSEC));
        return fleet_eval(a, FLEET_SCRIPT_HOLD, 4,
                          (const char *const[]) { a->config->agent.host, a->fleet.claim, claim_ttl, ttl });
}

static void fleet_spool(Alerts *a, const char *key, OutboxRole role, bool ahead, const char *text) {
        _cleanup_(freep) char *payload = NULL;
        int r;

        log_notice("alert (fleet): %s", text);
        r = outbox_payload_text(text, &payload);
        if (r >= 0)
                r = ahead ? outbox_add_ahead(a->outbox, "fleet", key, role, payload)
                          : outbox_add(a->outbox, "fleet", key, role, false, payload, NULL);
        if (r < 0)
                log_error_errno(r, "slack: cannot spool the fleet message: %m; it is in the journal only");
}

/* Our messages go as spooled (our own thread): no fleet thread to be had. */
static void fleet_own(Alerts *a) {
        a->fleet.poll = sd_event_source_disable_unref(a->fleet.poll);
        a->fleet.routed = false;
        if (a->fleet.incident)
                (void) outbox_route(a->outbox, a->fleet.incident, NULL);
}

void alerts_await_verdict(Alerts *a) {
        const Incident *i = a->incident;

        if (!fleet_possible(a) || !i->id)
                return;
        (void) outbox_defer(a->outbox, i->id, clock_loop_now(a->event, CLOCK_MONOTONIC) + VERDICT_WAIT);
}

void alerts_verdict(Alerts *a, bool budget_spent) {
        const Incident *i = a->incident;
        usec_t now = clock_loop_now(a->event, CLOCK_MONOTONIC);

        if (!fleet_possible(a) || !i->id)
                return;
        if (!budget_spent) {
                /* left (alerts_holding_over() ends the fleet part) or Redis
                 * unreachable: no ts to share, our own thread as ever */
                if (!a->fleet.incident)
                        (void) outbox_route(a->outbox, i->id, NULL);
                return;
        }
        if (a->fleet.incident)
                return; /* a re-ask of the same hold */
        a->fleet.incident = strdup(i->id);
        if (!a->fleet.incident ||
            fleet_thread_claim(a->config->agent.host, clock_loop_now(a->event, CLOCK_REALTIME), a->fleet.claim,
                               sizeof a->fleet.claim) < 0) {
                (void) outbox_route(a->outbox, i->id, NULL);
                return;
        }
        a->fleet.asked_since = now;
        /* the wait for a ts is bounded: past it, our own thread */
        (void) outbox_defer(a->outbox, i->id, now + FLEET_THREAD_PATIENCE + VERDICT_WAIT);
        if (fleet_send_hold(a) < 0)
                fleet_own(a);
}

static int on_fleet_poll(sd_event_source *s, uint64_t usec, void *userdata) {
        Alerts *a = userdata;

        a->fleet.poll = sd_event_source_disable_unref(a->fleet.poll);
        if (a->fleet.incident && fleet_send_hold(a) < 0)
                fleet_own(a);
        return 0;
}

static bool fleet_hold_parse(const redisReply *r, FleetHold *ret) {
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 5 || r->element[0]->type != REDIS_REPLY_STRING)
                return false;
        for (size_t k = 1; k < 5; k++)
                if (r->element[k]->type != REDIS_REPLY_INTEGER || r->element[k]->integer < 0)
                        return false;
        *ret = (FleetHold) {
                .holding = r->element[1]->integer,
                .total = r->element[2]->integer,
                .oldest = (usec_t) r->element[3]->integer * USEC_PER_MSEC,
                .now = (usec_t) r->element[4]->integer * USEC_PER_MSEC,
        };
        snprintf(ret->value, sizeof ret->value, "%s", r->element[0]->str);
        return true;
}

static void fleet_on_hold(Alerts *a, const redisReply *r, const char *detail) {
        _cleanup_(freep) char *key = NULL, *text = NULL;
        FleetHold h = {};
        bool ok = fleet_hold_parse(r, &h);
        FleetRole role;
        int k;

        if (!a->fleet.incident || a->fleet.routed)
                return; /* we stopped holding meanwhile: the end script ran after this one */
        role = fleet_thread_decide(ok ? h.value : NULL, a->fleet.claim, a->fleet.asked_since,
                                   clock_loop_now(a->event, CLOCK_MONOTONIC));
        log_info("slack: fleet thread of pool %s: %s (%s)", a->config->pool.name, fleet_role_to_string(role),
                 ok ? h.value : strna(detail));
        switch (role) {
        case FLEET_OPEN:
                if (asprintf(&key, "fleet:%s", a->fleet.claim) < 0 ||
                    fleet_thread_parent_text(a->config->pool.name, &h, NULL, &text) < 0)
                        break;
                fleet_spool(a, key, OUTBOX_PARENT, true, text);
                free(a->fleet.open_key);
                a->fleet.open_key = strdup(key);
                snprintf(a->fleet.open_claim, sizeof a->fleet.open_claim, "%s", a->fleet.claim);
                if (outbox_route(a->outbox, a->fleet.incident, key) >= 0)
                        a->fleet.routed = true;
                return;
        case FLEET_JOIN:
                if (asprintf(&key, "fleet:%s", h.value) < 0 || outbox_set_thread(a->outbox, key, h.value) < 0)
                        break;
                if (outbox_route(a->outbox, a->fleet.incident, key) >= 0)
                        a->fleet.routed = true;
                return;
        case FLEET_WAIT:
                k = sd_event_add_time_relative(a->event, &a->fleet.poll, CLOCK_MONOTONIC, FLEET_THREAD_POLL,
                                               USEC_PER_MSEC * 50, on_fleet_poll, a);
                if (k >= 0)
                        return;
                break;
        default:
                break;
        }
        fleet_own(a);
}

static void fleet_store(Alerts *a, const char *ts) {
        char ttl[32];

        snprintf(ttl, sizeof ttl, "%llu", (unsigned long long) (FLEET_TTL(a->config) / USEC_PER_MSEC));
        if (fleet_eval(a, FLEET_SCRIPT_STORE, 3, (const char *const[]) { a->fleet.open_claim, ts, ttl }) < 0)
                log_warning("slack: cannot keep the fleet thread's ts in Redis; the other hosts open their own, "
                            "ignoring");
}

static void fleet_on_store(Alerts *a, const redisReply *r) {
        _cleanup_(freep) char *key = TAKE_PTR(a->fleet.open_key), *text = NULL;

        if (!key || !r || r->type != REDIS_REPLY_INTEGER || r->integer != 0)
                return;
        /* no host held any more by the time our parent went out */
        if (fleet_thread_end_text(a->config->pool.name, a->config->agent.host, &text) >= 0)
                fleet_spool(a, key, OUTBOX_REPLY, false, text);
}

static void fleet_leave(Alerts *a, bool keep_route) {
        if (!a->fleet.incident)
                return;
        a->fleet.poll = sd_event_source_disable_unref(a->fleet.poll);
        if (!a->fleet.routed || !keep_route)
                (void) outbox_route(a->outbox, a->fleet.incident, NULL);
        a->fleet.routed = false;
        free(a->fleet.incident);
        a->fleet.incident = NULL;
        if (fleet_eval(a, FLEET_SCRIPT_END, 1, (const char *const[]) { a->config->agent.host }) < 0)
                log_warning("slack: cannot tell Redis this host stopped holding; the fleet thread's follow-up "
                            "waits for its expiry, ignoring");
}

static void fleet_on_end(Alerts *a, const redisReply *r) {
        _cleanup_(freep) char *key = NULL, *text = NULL;
        const char *removed = r && r->type == REDIS_REPLY_STRING ? r->str : NULL;

        if (fleet_thread_end_decide(removed) != FLEET_END_FOLLOW_UP)
                return;
        if (asprintf(&key, "fleet:%s", removed) < 0 || outbox_set_thread(a->outbox, key, removed) < 0 ||
            fleet_thread_end_text(a->config->pool.name, a->config->agent.host, &text) < 0)
                return;
        fleet_spool(a, key, OUTBOX_REPLY, false, text);
}

void alerts_fleet_reply(Alerts *a, const char *what, const redisReply *r, const char *detail) {
        if (!a->outbox)
                return;
        if (streq(what, "fleet-hold"))
                fleet_on_hold(a, r, detail);
        else if (streq(what, "fleet-store"))
                fleet_on_store(a, r);
        else if (streq(what, "fleet-end"))
                fleet_on_end(a, r);
}
