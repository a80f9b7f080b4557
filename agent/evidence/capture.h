/* The agent's side of incident evidence: at breach it writes the incident's
 * summary (top processes over the window, CPU split, load, pressure) to
 * state_dir/incidents/ID/ before anything is done to the host, starts the
 * optional profile, and holds the remediation until the profile is in (or
 * its deadline passed); then it records the profile's result, posts its
 * hottest stacks in the incident's Slack thread and applies retention.
 * It also answers `monkeyctl incidents` and `monkeyctl incident ID`. */
#pragma once

#include <json-c/json.h>

#include "cpu.h"
#include "macro.h"

typedef struct Agent Agent;

/* Every good sample: keeps the CPU counters from the start of a hot run,
 * so the summary can split the window's CPU time (user, system, steal). */
void capture_on_sample(Agent *a, const CpuSample *interval_start);

/* At breach, after the top processes were ranked: write summary.json,
 * start the profile when configured, prune old incidents. *ret_pressure
 * (malloc'ed, may be NULL on OOM) is one line for the alert: load,
 * pressure, steal. Never fails the breach: errors are logged and shown
 * in status. */
void capture_breach(Agent *a, char **ret_pressure);

/* After capture_breach(): the breach alert's line naming the incident's
 * evidence (and the profile under way), malloc'ed; NULL when this
 * incident has none. */
char *capture_breach_line(Agent *a);

/* The drain grace is over: true when the remediation must wait for the
 * profile, which then posts EVENT_DRAINED itself. */
bool capture_hold_drain(Agent *a);

/* Agent teardown: stop a running profile. */
void capture_done(Agent *a);

json_object *capture_status_json(Agent *a);
json_object *capture_incidents_json(Agent *a, char **ret_message);
json_object *capture_incident_json(Agent *a, const char *id, char **ret_message);
