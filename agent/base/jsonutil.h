/* Cleanup helpers for json-c objects, for _cleanup_(). Header-only. */
#pragma once

#include <json-c/json.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

static inline void json_object_putp(json_object **o) {
        if (*o)
                json_object_put(*o);
}

static inline void json_tokener_freep(json_tokener **t) {
        if (*t)
                json_tokener_free(*t);
}

/* Wall-clock microseconds as RFC 3339 UTC, "2026-11-22T17:00:00Z": the one
 * time format of status and monkeyctl --json (CONTROL_JSON_SCHEMA), with a
 * "_unix" number beside it where scripts compute with it. */
static inline json_object *json_new_rfc3339(uint64_t wall_usec) {
        time_t t = (time_t) (wall_usec / 1000000);
        struct tm tm;
        char buf[32];

        if (!gmtime_r(&t, &tm) || strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
                return NULL;
        return json_object_new_string(buf);
}

/* A double written with `decimals` digits after the point ("39.7", not
 * json-c's "39.700000000000003"): figures people read. */
static inline json_object *json_new_rounded(double v, int decimals) {
        char buf[64];

        snprintf(buf, sizeof buf, "%.*f", decimals, v);
        return json_object_new_double_s(v, buf);
}
