/* Human text for the control protocol's JSON: the status summary an SRE
 * reads at a glance and one line per transition (history, watch). Pure:
 * takes json, returns text; any field may be missing or of the wrong type
 * (printed as "?"), no JSON input makes it crash. */
#pragma once

#include <json-c/json.h>

#include "macro.h"

/* Aligned "label  value" lines, each ending in '\n'. Returns 0 or -ENOMEM;
 * -EINVAL only for ret == NULL (a NULL or non-object status prints "?"s). */
int status_text_format(json_object *status, char **ret);

/* `monkeyctl pool`: the pool object of the status (or of the "pool"
 * command): connection, this host, the budget, then one line per member
 * with state, address, lease left and lease age. Same tolerance as above. */
int status_text_format_pool(json_object *pool, char **ret);

/* `monkeyctl pool budget`: the pool's budget as Redis holds it (who wrote
 * it, when), this host's config beside it and which rules differ; after a
 * set, old -> new. Same tolerance as above. */
int status_text_format_budget(json_object *budget, char **ret);

/* "2026-11-22 17:00:00 UTC  SERVING -> OVERLOADED  breach  cpu 97.0% >= 90% for 1m"
 * without a trailing newline. */
int status_text_format_event(json_object *event, char **ret);

/* `monkeyctl history`: one event line each, oldest first, as the agent
 * sent them; "no transitions recorded" for none. Not an array: none. */
int status_text_format_history(json_object *history, char **ret);

/* Seconds as "12m3s", "1h", "0s", "250ms"; "?" for negative, NaN or absurd
 * values. Always NUL-terminates buf (size >= 1). Returns buf. */
const char *status_text_duration(double sec, char *buf, size_t size);

/* "2026-11-22T17:00:00Z" (fractions allowed) -> "2026-11-22 17:00:00 UTC";
 * anything else is copied as is, control characters replaced by '?'. */
const char *status_text_time(const char *iso, char *buf, size_t size);

/* `monkeyctl incidents`: one line per incident kept, newest first, then
 * how many and how much. Same tolerance as above. */
int status_text_format_incidents(json_object *incidents, char **ret);
/* monkeyctl stats: one line per series and window. */
int status_text_format_stats(json_object *stats, char **ret);

/* `monkeyctl incident ID`: the summary (CPU split, load, pressure, top
 * processes) and the profile's result with its hottest stacks. */
int status_text_format_incident(json_object *incident, char **ret);
