/* Messages for humans: short title, what happened, the numbers that show
 * it, and what happens next. Everything quoted from the host (process
 * names, reasons) is raw here and escaped by slack.c. */
#include "notify.h"

#include <inttypes.h>
#include <stdarg.h>

#include "config.h"
#include "parse.h"
#include "slack.h"

static const char *const notice_table[_NOTICE_MAX] = {
        [NOTICE_BREACH] = "breach",           [NOTICE_HOLDING] = "holding",
        [NOTICE_CLEARED] = "cleared",         [NOTICE_REMEDIATING] = "remediating",
        [NOTICE_BACK] = "back",               [NOTICE_QUARANTINED] = "quarantined",
        [NOTICE_GAVE_UP] = "gave-up",         [NOTICE_MAINTENANCE] = "maintenance",
        [NOTICE_POOL_DOWN] = "pool-down",     [NOTICE_POOL_UP] = "pool-up",
        [NOTICE_TEST] = "test",
        [NOTICE_PERMISSION] = "permission",   [NOTICE_GRACE] = "grace",
        [NOTICE_PROFILE] = "profile",
        [NOTICE_DRY_RUN] = "dry-run",
};

const char *notice_to_string(Notice n) {
        return n >= 0 && n < _NOTICE_MAX ? notice_table[n] : NULL;
}

bool alert_gate_raise(AlertGate *g, usec_t now, usec_t remind) {
        if (!g->active) {
                *g = (AlertGate) { .active = true, .first_at = now, .last_at = now };
                return true;
        }
        if (remind > 0 && now >= g->last_at && now - g->last_at >= remind) {
                g->last_at = now;
                g->reminders++;
                return true;
        }
        return false;
}

bool alert_gate_clear(AlertGate *g) {
        bool was = g->active;
        *g = (AlertGate) {};
        return was;
}

static const char *human_duration(char *buf, size_t size, usec_t u) {
        /* whole seconds read better in a chat than "1m30s250ms" */
        if (u >= USEC_PER_SEC)
                u -= u % USEC_PER_SEC;
        return format_duration(buf, size, u);
}

int notice_top_table(const ProcTop *top, size_t n, bool since_start, char **ret) {
        _cleanup_(freep) char *s = NULL;
        size_t len = 0, size = 128 + n * (EVIDENCE_CMDLINE_MAX + 48);

        s = malloc(size);
        if (!s)
                return -ENOMEM;
        len += (size_t) snprintf(s + len, size - len, "%7s  %6s  %s%s\n", "PID", "%CPU", "COMMAND",
                                 since_start ? "   (share since process start)" : "");
        for (size_t i = 0; i < n && len < size; i++)
                len += (size_t) snprintf(s + len, size - len, "%7d  %6.1f  %s%s\n", top[i].pid, top[i].cpu_pct,
                                         top[i].cmdline, top[i].new_in_window ? "  (started in the window)" : "");
        if (len > 0 && len < size && s[len - 1] == '\n')
                s[len - 1] = '\0';
        *ret = TAKE_PTR(s);
        return 0;
}

typedef struct Composer {
        SlackMessage m;
        char title[200], text[1200], context[300];
        char values[SLACK_FIELDS_MAX][200];
        char *detail;
} Composer;

static void field(Composer *c, const char *label, const char *format, ...) _printf_(3, 4);
static void field(Composer *c, const char *label, const char *format, ...) {
        va_list ap;
        size_t i = c->m.n_fields;

        if (i >= SLACK_FIELDS_MAX)
                return;
        va_start(ap, format);
        vsnprintf(c->values[i], sizeof c->values[i], format, ap);
        va_end(ap);
        c->m.fields[i] = (SlackField) { .label = label, .value = c->values[i] };
        c->m.n_fields++;
}

/* "web-1 is holding in the pool", then "web-1 is still holding in the pool (1h)". */
static void condition_title(Composer *c, const NoticeFacts *f, const char *first, const char *still) {
        char o[32];

        if (f->reminder > 0)
                snprintf(c->title, sizeof c->title, "%s %s (%s)", strna(f->host), still,
                         human_duration(o, sizeof o, f->ongoing));
        else
                snprintf(c->title, sizeof c->title, "%s %s", strna(f->host), first);
}

static void cpu_fields(Composer *c, const NoticeFacts *f) {
        char w[32];

        if (f->cpu_now >= 0)
                field(c, "CPU now", "%.1f%%", f->cpu_now);
        if (f->cpu_window >= 0)
                field(c, "CPU over the window", "%.1f%% over %s (threshold %.0f%%)", f->cpu_window,
                      human_duration(w, sizeof w, f->window), f->threshold);
}

int notice_payload(const NoticeFacts *f, char **ret) {
        _cleanup_(freep) char *table = NULL;
        Composer c = {};
        char d[32], o[32];
        const char *host = strna(f->host);
        int r;

        c.m.title = c.title;
        c.m.text = c.text;
        c.m.context = c.context;

        switch (f->kind) {
        case NOTICE_BREACH:
                c.m.emoji = ":rotating_light:";
                snprintf(c.title, sizeof c.title, "%s is overloaded", host);
                snprintf(c.text, sizeof c.text, "%s.\n*Next:* %s", strna(f->reason), strna(f->next));
                cpu_fields(&c, f);
                field(&c, "Pool", "%s", f->pool ? f->pool : "not configured");
                field(&c, "Instance", "%s", f->instance_id ? f->instance_id : "unknown");
                if (f->pressure)
                        field(&c, "Load", "%s", f->pressure);
                if (f->evidence)
                        field(&c, "Evidence", "%s", f->evidence);
                if (f->n_top > 0) {
                        r = notice_top_table(f->top, f->n_top, f->top_since_start, &table);
                        if (r < 0)
                                return r;
                        c.m.detail = table;
                }
                break;
        case NOTICE_HOLDING:
                if (f->recovered) {
                        c.m.emoji = ":arrow_forward:";
                        snprintf(c.title, sizeof c.title, "%s stopped holding after %s", host,
                                 human_duration(o, sizeof o, f->ongoing));
                        snprintf(c.text, sizeof c.text, "%s.", strna(f->reason));
                        break;
                }
                c.m.emoji = ":pause_button:";
                condition_title(&c, f, "is holding in the pool", "is still holding in the pool");
                snprintf(c.text, sizeof c.text,
                         "Overloaded, but leaving would break the disruption budget: %s.\n"
                         "*Next:* staying in the pool and asking again as soon as another host rejoins.",
                         strna(f->reason));
                cpu_fields(&c, f);
                break;
        case NOTICE_CLEARED:
                c.m.emoji = ":white_check_mark:";
                snprintf(c.title, sizeof c.title, "%s: overload cleared", host);
                snprintf(c.text, sizeof c.text, "%s. Nothing was done to the host.", strna(f->reason));
                cpu_fields(&c, f);
                break;
        case NOTICE_REMEDIATING:
                c.m.emoji = ":arrows_counterclockwise:";
                if (f->request_id) {
                        /* the step's result, e.g. EC2 took the reboot (or never said whether) */
                        snprintf(c.title, sizeof c.title, "%s: %s %s", host, strna(f->step),
                                 f->unanswered ? "never answered, may have been accepted" : "accepted");
                        snprintf(c.text, sizeof c.text, "%s", strna(f->reason));
                } else {
                        snprintf(c.title, sizeof c.title, "%s: %s%s", host, f->dry_run ? "DRY RUN: would " : "",
                                 strna(f->step));
                        snprintf(c.text, sizeof c.text, "%s%s%s",
                                 f->next ? "Escalating after: " : "", f->next ? f->next : "",
                                 f->next            ? "."
                                 : f->dry_run       ? "DRY RUN: nothing is done; the host stays in the pool."
                                                    : "Out of the pool; remediating now. The result follows in this thread.");
                }
                field(&c, "Step", "%s", strna(f->step));
                if (f->request_id)
                        field(&c, "AWS request id", "%s", f->unanswered ? "none (no answer)" : f->request_id);
                field(&c, "Instance", "%s", f->instance_id ? f->instance_id : "unknown");
                break;
        case NOTICE_PERMISSION:
                c.m.emoji = ":lock:";
                snprintf(c.title, sizeof c.title, "%s cannot reboot itself through EC2", host);
                snprintf(c.text, sizeof c.text,
                         "%s.\nFound by the start-up self-test (DryRun). Grant `ec2:RebootInstances` on this "
                         "instance to its role; until then the ladder skips reboot-instance.",
                         strna(f->reason));
                field(&c, "Instance", "%s", f->instance_id ? f->instance_id : "unknown");
                break;
        case NOTICE_GRACE:
                c.m.emoji = ":hourglass_flowing_sand:";
                snprintf(c.title, sizeof c.title, "%s is overloaded again right after its reboot", host);
                snprintf(c.text, sizeof c.text,
                         "%s.\n*Next:* nothing for %s (post-boot grace): the app may still be warming up. If the "
                         "load stays, the next remediation counts against the reboot-loop guard.",
                         strna(f->reason), human_duration(o, sizeof o, f->ongoing));
                cpu_fields(&c, f);
                break;
        case NOTICE_BACK:
                c.m.emoji = ":large_green_circle:";
                snprintf(c.title, sizeof c.title, "%s is back in the pool", host);
                snprintf(c.text, sizeof c.text, "The checks passed; rejoined the pool.");
                field(&c, "Downtime", "%s",
                      f->downtime > 0 ? human_duration(d, sizeof d, f->downtime) : "not out of the pool");
                field(&c, "Outcome", "rejoined");
                c.m.detail = f->checks;
                break;
        case NOTICE_QUARANTINED:
                c.m.emoji = ":no_entry:";
                condition_title(&c, f, "is quarantined", "is still quarantined");
                snprintf(c.text, sizeof c.text, "%s.\n*Next:* staying out of the pool, re-checking with backoff.",
                         strna(f->reason));
                field(&c, "Outcome", "quarantined");
                c.m.detail = f->checks;
                break;
        case NOTICE_GAVE_UP:
                c.m.emoji = ":octagonal_sign:";
                snprintf(c.title, sizeof c.title, "%s: giving up, staying out of the pool", host);
                snprintf(c.text, sizeof c.text,
                         "%s.\n*Next:* nothing until an operator runs `monkeyctl resume` on the host.",
                         strna(f->reason));
                break;
        case NOTICE_MAINTENANCE:
                c.m.emoji = ":wrench:";
                snprintf(c.title, sizeof c.title, "%s is in maintenance", host);
                snprintf(c.text, sizeof c.text, "%s", strna(f->reason));
                break;
        case NOTICE_POOL_DOWN:
                c.m.emoji = ":electric_plug:";
                condition_title(&c, f, "cannot reach Redis", "still cannot reach Redis");
                snprintf(c.text, sizeof c.text,
                         "%s.\nPool membership cannot change while this lasts: an overloaded host holds instead of "
                         "leaving.",
                         strna(f->reason));
                field(&c, "Pool", "%s", strna(f->pool));
                break;
        case NOTICE_POOL_UP:
                c.m.emoji = ":white_check_mark:";
                snprintf(c.title, sizeof c.title, "%s reaches Redis again", host);
                snprintf(c.text, sizeof c.text, "The pool is reachable again after %s.",
                         human_duration(o, sizeof o, f->ongoing));
                field(&c, "Pool", "%s", strna(f->pool));
                break;
        case NOTICE_DRY_RUN:
                c.m.emoji = ":test_tube:";
                snprintf(c.title, sizeof c.title, "%s: DRY RUN: %s", host, strna(f->step));
                snprintf(c.text, sizeof c.text,
                         "Budget: %s.\n*Next:* nothing. No budget slot was taken, routing is unchanged and the "
                         "reboot-loop guard does not count it; the ladder follows as messages, then back to "
                         "serving.",
                         strna(f->reason));
                field(&c, "Ladder", "%s", strna(f->next));
                break;
        case NOTICE_PROFILE:
                c.m.emoji = ":fire:";
                snprintf(c.title, sizeof c.title, "%s: what burned the CPU", host);
                snprintf(c.text, sizeof c.text, "%s", strna(f->reason));
                c.m.detail = f->detail;
                break;
        case NOTICE_TEST:
                c.m.emoji = ":test_tube:";
                snprintf(c.title, sizeof c.title, "Test alert from %s", host);
                snprintf(c.text, sizeof c.text, "%s", f->reason ? f->reason : "Doctor Monkey can post here.");
                break;
        default:
                return -EINVAL;
        }
        /* Whoever reads a remediation alert (the breach that announces
         * it, each step and its result, the guard giving up, the grace
         * after a reboot, a dry run's verdict) must see that no fleet-wide
         * budget stood between this host and the reboot. Outcomes (back,
         * quarantined) are left out: a quarantine after failed checks at
         * boot is no remediation's. */
        if (f->no_fleet_budget && (f->kind == NOTICE_BREACH || f->kind == NOTICE_REMEDIATING ||
                                   f->kind == NOTICE_GRACE || f->kind == NOTICE_GAVE_UP ||
                                   f->kind == NOTICE_DRY_RUN))
                field(&c, "Budget", "%s", f->no_fleet_budget);

        snprintf(c.context, sizeof c.context, "%s%s%smonkeyd %s on %s", f->incident ? "incident " : "",
                 strempty(f->incident), f->incident ? " · " : "", MONKEY_VERSION, host);
        return slack_payload_build(&c.m, ret);
}
