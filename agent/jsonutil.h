/* Cleanup helpers for json-c objects, for _cleanup_(). Header-only. */
#pragma once

#include <json-c/json.h>
#include <stdio.h>

static inline void json_object_putp(json_object **o) {
        if (*o)
                json_object_put(*o);
}

static inline void json_tokener_freep(json_tokener **t) {
        if (*t)
                json_tokener_free(*t);
}

/* A double written with `decimals` digits after the point ("39.7", not
 * json-c's "39.700000000000003"): figures people read. */
static inline json_object *json_new_rounded(double v, int decimals) {
        char buf[64];

        snprintf(buf, sizeof buf, "%.*f", decimals, v);
        return json_object_new_double_s(v, buf);
}
