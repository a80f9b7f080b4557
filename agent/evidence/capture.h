/* The agent's side of incident evidence: at breach it writes the incident's
 * summary (top processes over the window, CPU split, load, pressure) to
 * state_dir/incidents/ID/ before anything is done to the host, starts the
 * optional profile, and holds the remediation until the profile is in (or
 * its deadline passed); then it records the profile's result, posts its
 * hottest stacks in the incident's Slack thread and applies retention.
 * It also answers `monkeyctl incidents` and `monkeyctl incident ID`.
 *
 * It owns the hot run's CPU counters, the last incident's summary, the
 * profile worker and the drain it holds; it tells its owner (the agent)
 * through a CaptureSink, and never sees the agent. */
#pragma once

#include <json-c/json.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "cpu.h"
#include "macro.h"
#include "writer.h"

typedef struct Capture Capture;

typedef struct CaptureSink {
        /* The profile's result, as a reply in that incident's thread. */
        void (*profile)(void *userdata, const char *incident, const char *text, const char *detail);
        /* The profile that held the drain is in (or gave up): the drain
         * may end now. Called only after capture_hold_drain() said true. */
        void (*drain_released)(void *userdata);
} CaptureSink;

/* `c` is referenced (capture_set_config() follows a reload); `w` and
 * `sink` must outlive the Capture; self_exe NULL: no profiles. */
int capture_new(sd_event *e, Config *c, Writer *w, const char *self_exe, const CaptureSink *sink, void *userdata,
                Capture **ret);
/* Stops a running profile. */
Capture *capture_free(Capture *cap);
static inline void capture_freep(Capture **cap) {
        capture_free(*cap);
}
void capture_set_config(Capture *cap, Config *c);

/* Every good sample: keeps the CPU counters from the start of a hot run
 * (hot: a run over the threshold has started, or the detector breached),
 * so the summary can split the window's CPU time (user, system, steal). */
void capture_on_sample(Capture *cap, bool hot, const CpuSample *interval_start);

/* What the breach is, as the agent knows it. */
typedef struct CaptureBreach {
        const char *id;                 /* the incident */
        const char *reason;
        const char *started;            /* ISO 8601 */
        json_object *top;               /* the top processes (taken), NULL: none */
        bool top_since_start;
        const CpuSample *counters;      /* /proc/stat now: the hot run's end */
} CaptureBreach;

/* At breach, after the top processes were ranked: write summary.json,
 * start the profile when configured, prune old incidents. *ret_pressure
 * (malloc'ed, may be NULL on OOM) is one line for the alert: load,
 * pressure, steal. Never fails the breach: errors are logged and shown
 * in status. */
void capture_breach(Capture *cap, const CaptureBreach *b, char **ret_pressure);
/* After capture_breach(): the breach alert's line naming the incident's
 * evidence (and the profile under way), malloc'ed; NULL when this
 * incident has none. */
char *capture_breach_line(Capture *cap, const char *incident);

/* The drain grace is over: true when the remediation must wait for the
 * profile; the sink's drain_released() then says when it may go on. */
bool capture_hold_drain(Capture *cap);

json_object *capture_status_json(Capture *cap);
json_object *capture_incidents_json(Capture *cap, char **ret_message);
json_object *capture_incident_json(Capture *cap, const char *id, char **ret_message);
