/* The agent's Prometheus metrics (issue 21): the counters it keeps
 * (transitions, breaches, remediations, reloads) and the text exposition
 * format rendered from them and from the facts its owner passes in
 * (state, CPU, Redis, Slack). node_exporter's conventions: base units,
 * ratios 0-1, `_total` counters, `_info` for build info. Served on
 * GET /metrics (the health endpoint's listener, or [metrics] listen) and
 * written to [metrics] textfile for node_exporter's textfile collector.
 *
 * Rendering is pure: the same counters and facts give the same text. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "machine.h"
#include "macro.h"

typedef struct Metrics Metrics;

/* What the owner knows at the moment of a scrape. */
typedef struct MetricsFacts {
        const char *version;
        State state;
        usec_t state_since;      /* wall clock of the last transition; 0 = none yet */
        bool cpu_known;          /* the last interval's split below */
        double cpu_busy, cpu_user, cpu_system, cpu_iowait, cpu_steal; /* 0-1 */
        double cpu_window;       /* the detector's window average, 0-1; NAN = not yet */
        int redis_up;            /* 1, 0, or -1 without [pool] (no series) */
        /* the pool's budget as this agent last saw it (NAN: not known):
         * its rules, and the hosts serving (alive) and out */
        double budget_min_serving, budget_max_unavailable, budget_serving, budget_unavailable;
        bool outbox_known;
        uint64_t outbox_messages;
        uint64_t slack_dropped;
} MetricsFacts;

int metrics_new(Metrics **ret);
Metrics *metrics_free(Metrics *m);
static inline void metrics_freep(Metrics **m) {
        metrics_free(*m);
}

void metrics_transition(Metrics *m, State from, State to, Event ev);
void metrics_breach(Metrics *m);
/* One remediation step's end: step as in the ladder's words
 * ("reboot-instance", "restart-unit", ...), result "ok" or "failed". */
void metrics_remediation(Metrics *m, const char *step, const char *result);
void metrics_reload(Metrics *m, bool ok);
/* One check run: its verdicts ("pass", "fail", "skipped" per check) and
 * the durations (seconds; NAN: not measured) of the GET that content and
 * status judge and of the binding's connect. */
void metrics_checks(Metrics *m, const char *content, const char *status, const char *binding, double http_seconds,
                    double binding_seconds, usec_t now);

/* monkeyctl stats: per timed series, since start and over the last hour
 * (`now`: CLOCK_MONOTONIC), count, min, max, mean, standard deviation,
 * p50/p90/p99 and the distribution (latstats_to_json's). */
json_object *metrics_stats_json(const Metrics *m, usec_t now);

/* The exposition, "text/plain; version=0.0.4". */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
int metrics_render(const Metrics *m, const MetricsFacts *f, char **ret, size_t *ret_len);
