/* Counters in fixed tables (states and events are few), remediations in
 * a short list, and the text format written with open_memstream. */
#include "metrics.h"

#include "latstats.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REMEDIATION_KINDS_MAX 16

static const char *const check_names[] = { "content", "status", "binding" };
static const char *const check_results[] = { "pass", "fail", "skipped" };
#define N_CHECKS 3
#define N_RESULTS 3
/* the two timed calls: the GET and the connect */
static const char *const timed_names[] = { "http", "binding" };
#define N_TIMED 2
/* the last hour, a minute at a time: merged when asked */
#define WINDOW_MINUTES 60

typedef struct TimedSeries {
        LatStats total;
        LatStats minute[WINDOW_MINUTES];
        uint64_t minute_of[WINDOW_MINUTES]; /* which minute (CLOCK_MONOTONIC / 60 s, + 1) each slot holds */
} TimedSeries;

typedef struct RemediationCount {
        char step[48];
        char result[16];
        uint64_t n;
} RemediationCount;

struct Metrics {
        uint64_t transitions[_STATE_MAX][_STATE_MAX][_EVENT_MAX];
        uint64_t breaches;
        uint64_t reloads_ok, reloads_failed;
        RemediationCount remediations[REMEDIATION_KINDS_MAX];
        size_t n_remediations;
        uint64_t checks[N_CHECKS][N_RESULTS];
        TimedSeries check_duration[N_TIMED];
};

int metrics_new(Metrics **ret) {
        Metrics *m = calloc(1, sizeof *m);

        if (!m)
                return -ENOMEM;
        *ret = m;
        return 0;
}

Metrics *metrics_free(Metrics *m) {
        free(m);
        return NULL;
}

void metrics_transition(Metrics *m, State from, State to, Event ev) {
        if (m && from >= 0 && from < _STATE_MAX && to >= 0 && to < _STATE_MAX && ev >= 0 && ev < _EVENT_MAX)
                m->transitions[from][to][ev]++;
}

void metrics_breach(Metrics *m) {
        if (m)
                m->breaches++;
}

void metrics_remediation(Metrics *m, const char *step, const char *result) {
        size_t i;

        if (!m || !step || !result)
                return;
        for (i = 0; i < m->n_remediations; i++)
                if (streq(m->remediations[i].step, step) && streq(m->remediations[i].result, result))
                        break;
        if (i == m->n_remediations) {
                /* the ladder has a handful of step kinds: a full table
                 * folds the rest into the last row rather than grow */
                if (i == REMEDIATION_KINDS_MAX)
                        i--;
                else {
                        snprintf(m->remediations[i].step, sizeof m->remediations[i].step, "%s", step);
                        snprintf(m->remediations[i].result, sizeof m->remediations[i].result, "%s", result);
                        m->n_remediations++;
                }
        }
        m->remediations[i].n++;
}

void metrics_reload(Metrics *m, bool ok) {
        if (m) {
                if (ok)
                        m->reloads_ok++;
                else
                        m->reloads_failed++;
        }
}

static void count_check(Metrics *m, size_t check, const char *result) {
        for (size_t r = 0; result && r < N_RESULTS; r++)
                if (streq(result, check_results[r]))
                        m->checks[check][r]++;
}

static void observe(TimedSeries *t, double seconds, usec_t now) {
        uint64_t minute = now / USEC_PER_MINUTE + 1;
        size_t slot = minute % WINDOW_MINUTES;

        /* NAN (not measured) is refused by latstats_add: nothing counted */
        if (latstats_add(&t->total, seconds) < 0)
                return;
        if (t->minute_of[slot] != minute) {
                t->minute[slot] = (LatStats) {};
                t->minute_of[slot] = minute;
        }
        (void) latstats_add(&t->minute[slot], seconds);
}

void metrics_checks(Metrics *m, const char *content, const char *status, const char *binding, double http_seconds,
                    double binding_seconds, usec_t now) {
        if (!m)
                return;
        count_check(m, 0, content);
        count_check(m, 1, status);
        count_check(m, 2, binding);
        observe(&m->check_duration[0], http_seconds, now);
        observe(&m->check_duration[1], binding_seconds, now);
}

static json_object *stats_json(const LatStats *s) {
        json_object *o = latstats_to_json(s);
        const struct {
                const char *key;
                double v;
        } derived[] = {
                { "mean", latstats_mean(s) },
                { "stddev", latstats_stddev(s) },
                { "p50", latstats_quantile(s, 0.5) },
                { "p90", latstats_quantile(s, 0.9) },
                { "p99", latstats_quantile(s, 0.99) },
        };

        for (size_t i = 0; o && i < sizeof derived / sizeof derived[0]; i++)
                json_object_object_add(o, derived[i].key,
                                       isnan(derived[i].v) ? NULL : json_object_new_double(derived[i].v));
        return o;
}

json_object *metrics_stats_json(const Metrics *m, usec_t now) {
        json_object *o = json_object_new_object(), *checks = json_object_new_object();
        uint64_t minute = now / USEC_PER_MINUTE + 1;

        if (!o || !checks) {
                json_object_put(o);
                json_object_put(checks);
                return NULL;
        }
        json_object_object_add(o, "checks", checks);
        for (size_t t = 0; t < N_TIMED; t++) {
                const TimedSeries *ts = &m->check_duration[t];
                json_object *series = json_object_new_object();
                LatStats hour = {};

                if (!series)
                        break;
                for (size_t i = 0; i < WINDOW_MINUTES; i++)
                        if (ts->minute_of[i] != 0 && ts->minute_of[i] + WINDOW_MINUTES > minute)
                                latstats_merge(&hour, &ts->minute[i]);
                json_object_object_add(series, "since_start", stats_json(&ts->total));
                json_object_object_add(series, "last_hour", stats_json(&hour));
                json_object_object_add(checks, timed_names[t], series);
        }
        return o;
}

/* A label value: backslash, double quote and newline escaped, as the
 * text format wants. */
static void put_label_value(FILE *f, const char *v) {
        for (; *v; v++) {
                if (*v == '\\' || *v == '"')
                        fputc('\\', f);
                if (*v == '\n') {
                        fputs("\\n", f);
                        continue;
                }
                fputc(*v, f);
        }
}

static void head(FILE *f, const char *name, const char *type, const char *help) {
        fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* %.17g, but integers as integers: what people and promtool read best */
static void put_value(FILE *f, double v) {
        if (isnan(v))
                fputs("NaN", f);
        else if (v == floor(v) && fabs(v) < 1e15)
                fprintf(f, "%.0f", v);
        else
                fprintf(f, "%.17g", v);
}

/* The shared layout's buckets, cumulative as "le" wants, then +Inf,
 * _sum and _count. */
static void put_histogram(FILE *f, const char *name, const char *label, const char *value, const LatStats *s) {
        uint64_t cumulative = 0;

        for (size_t i = 0; i <= LATSTATS_BUCKETS; i++) {
                cumulative += s->bucket[i];
                fprintf(f, "%s_bucket{%s=\"%s\",le=\"", name, label, value);
                if (i == LATSTATS_BUCKETS)
                        fputs("+Inf", f);
                else /* 0.0001 … 52.4288: six digits say each exactly */
                        fprintf(f, "%.6g", latstats_bound(i));
                fprintf(f, "\"} %llu\n", (unsigned long long) cumulative);
        }
        fprintf(f, "%s_sum{%s=\"%s\"} ", name, label, value);
        put_value(f, s->sum);
        fprintf(f, "\n%s_count{%s=\"%s\"} %llu\n", name, label, value, (unsigned long long) s->count);
}

int metrics_render(const Metrics *m, const MetricsFacts *fa, char **ret, size_t *ret_len) {
        char *buf = NULL;
        size_t len = 0;
        FILE *f;

        f = open_memstream(&buf, &len);
        if (!f)
                return -ENOMEM;

        head(f, "monkeyd_build_info", "gauge", "Doctor Monkey's version, as a label; always 1.");
        fputs("monkeyd_build_info{version=\"", f);
        put_label_value(f, fa->version ? fa->version : "unknown");
        fputs("\"} 1\n", f);

        head(f, "monkeyd_state", "gauge", "1 for the state the agent is in, 0 for the others.");
        for (State s = 0; s < _STATE_MAX; s++)
                fprintf(f, "monkeyd_state{state=\"%s\"} %d\n", state_to_string(s), s == fa->state);
        head(f, "monkeyd_state_since_seconds", "gauge", "Unix time of the last transition.");
        fputs("monkeyd_state_since_seconds ", f);
        put_value(f, (double) fa->state_since / USEC_PER_SEC);
        fputc('\n', f);

        head(f, "monkeyd_transitions_total", "counter", "State machine transitions since the agent started.");
        for (State a = 0; a < _STATE_MAX; a++)
                for (State b = 0; b < _STATE_MAX; b++)
                        for (Event e = 0; e < _EVENT_MAX; e++)
                                if (m->transitions[a][b][e])
                                        fprintf(f, "monkeyd_transitions_total{from=\"%s\",to=\"%s\",event=\"%s\"} %llu\n",
                                                state_to_string(a), state_to_string(b), event_to_string(e),
                                                (unsigned long long) m->transitions[a][b][e]);

        head(f, "monkeyd_breaches_total", "counter", "Sustained overloads detected since the agent started.");
        fprintf(f, "monkeyd_breaches_total %llu\n", (unsigned long long) m->breaches);

        head(f, "monkeyd_remediations_total", "counter", "Remediation steps ended, by step and result.");
        for (size_t i = 0; i < m->n_remediations; i++) {
                fputs("monkeyd_remediations_total{step=\"", f);
                put_label_value(f, m->remediations[i].step);
                fputs("\",result=\"", f);
                put_label_value(f, m->remediations[i].result);
                fprintf(f, "\"} %llu\n", (unsigned long long) m->remediations[i].n);
        }

        /* both results from the start: an alert on increase() must see a
         * failed reload go from 0 to 1 */
        head(f, "monkeyd_reloads_total", "counter", "Configuration reloads, by result.");
        fprintf(f, "monkeyd_reloads_total{result=\"ok\"} %llu\n", (unsigned long long) m->reloads_ok);
        fprintf(f, "monkeyd_reloads_total{result=\"failed\"} %llu\n", (unsigned long long) m->reloads_failed);

        if (fa->cpu_known) {
                const struct {
                        const char *mode;
                        double v;
                } split[] = {
                        { "busy", fa->cpu_busy },     { "user", fa->cpu_user },   { "system", fa->cpu_system },
                        { "iowait", fa->cpu_iowait }, { "steal", fa->cpu_steal },
                };

                head(f, "monkeyd_cpu_ratio", "gauge", "CPU time over the last sampling interval, by mode (0-1).");
                for (size_t i = 0; i < sizeof split / sizeof split[0]; i++) {
                        fprintf(f, "monkeyd_cpu_ratio{mode=\"%s\"} ", split[i].mode);
                        put_value(f, split[i].v);
                        fputc('\n', f);
                }
        }
        head(f, "monkeyd_checks_total", "counter", "Check verdicts, by check and result.");
        for (size_t c = 0; c < N_CHECKS; c++)
                for (size_t r = 0; r < N_RESULTS; r++)
                        fprintf(f, "monkeyd_checks_total{check=\"%s\",result=\"%s\"} %llu\n", check_names[c],
                                check_results[r], (unsigned long long) m->checks[c][r]);
        head(f, "monkeyd_check_duration_seconds", "histogram",
             "How long the checks' GET (content, status) and connect (binding) took.");
        for (size_t t = 0; t < N_TIMED; t++)
                put_histogram(f, "monkeyd_check_duration_seconds", "check", timed_names[t], &m->check_duration[t].total);

        if (!isnan(fa->cpu_window)) {
                head(f, "monkeyd_cpu_window_ratio", "gauge", "Busy CPU over the detector's window (0-1).");
                fputs("monkeyd_cpu_window_ratio ", f);
                put_value(f, fa->cpu_window);
                fputc('\n', f);
        }
        if (fa->redis_up >= 0) {
                head(f, "monkeyd_redis_up", "gauge", "1 while the pool's Redis link is up.");
                fprintf(f, "monkeyd_redis_up %d\n", fa->redis_up > 0);
        }
        {
                const struct {
                        const char *kind;
                        double v;
                } budget[] = {
                        { "min_serving", fa->budget_min_serving },
                        { "max_unavailable", fa->budget_max_unavailable },
                        { "serving", fa->budget_serving },
                        { "unavailable", fa->budget_unavailable },
                };
                bool any = false;

                for (size_t i = 0; i < sizeof budget / sizeof budget[0]; i++) {
                        if (isnan(budget[i].v))
                                continue;
                        if (!any)
                                head(f, "monkeyd_pool_budget", "gauge",
                                     "The pool's disruption budget as this agent last saw it: the rules "
                                     "(min_serving, max_unavailable) and the hosts serving and out.");
                        any = true;
                        fprintf(f, "monkeyd_pool_budget{kind=\"%s\"} ", budget[i].kind);
                        put_value(f, budget[i].v);
                        fputc('\n', f);
                }
        }
        if (fa->outbox_known) {
                head(f, "monkeyd_slack_outbox_messages", "gauge", "Alerts waiting in the Slack outbox.");
                fprintf(f, "monkeyd_slack_outbox_messages %llu\n", (unsigned long long) fa->outbox_messages);
                head(f, "monkeyd_slack_dropped_total", "counter", "Alerts the outbox gave up on.");
                fprintf(f, "monkeyd_slack_dropped_total %llu\n", (unsigned long long) fa->slack_dropped);
        }
        if (fclose(f) != 0) {
                free(buf);
                return -ENOMEM;
        }
        *ret = buf;
        *ret_len = len;
        return 0;
}
