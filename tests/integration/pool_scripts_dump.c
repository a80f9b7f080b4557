/* For test_cluster_scripts.py: every Lua script of the pool (the pool's
 * and the fleet thread's) and the KEYS each one declares for each host
 * named, as JSON on stdout. The KEYS come from the builders the agent
 * uses (pool_script_keys(), fleet_thread_script_keys()), so the test
 * drives Redis with exactly what monkeyd sends.
 * Usage: pool_scripts_dump POOL HOST... */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>

#include "fleetthread.h"
#include "macro.h"
#include "pool_scripts.h"
#include "poolkeys.h"

/* {script: [KEYS...]} for host, from the builders monkeyd uses. */
static json_object *host_keys(const char *pool, const char *host) {
        _cleanup_(poolkeys_done) PoolKeys keys = {};
        json_object *o = json_object_new_object();

        if (!o || poolkeys_new(pool, host, &keys) < 0)
                return NULL;
        for (PoolScript s = 0; s < _POOL_SCRIPT_MAX; s++) {
                const char *k[POOL_SCRIPT_KEYS_MAX];
                int n = pool_script_keys(s, &keys, NULL, k);
                json_object *a = json_object_new_array();

                for (int i = 0; i < n; i++)
                        json_object_array_add(a, json_object_new_string(k[i]));
                json_object_object_add(o, pool_script_to_string(s), a);
        }
        for (FleetScript s = 0; s < _FLEET_SCRIPT_MAX; s++) {
                const char *k[FLEET_SCRIPT_KEYS_MAX];
                int n = fleet_thread_script_keys(s, &keys, k);
                json_object *a = json_object_new_array();

                for (int i = 0; i < n; i++)
                        json_object_array_add(a, json_object_new_string(k[i]));
                json_object_object_add(o, fleet_thread_script_to_string(s), a);
        }
        return o;
}

int main(int argc, char **argv) {
        json_object *out = json_object_new_object(), *scripts = json_object_new_object(),
                    *keys = json_object_new_object();

        if (argc < 3) {
                fprintf(stderr, "usage: %s POOL HOST...\n", argv[0]);
                return 2;
        }
        for (PoolScript s = 0; s < _POOL_SCRIPT_MAX; s++)
                json_object_object_add(scripts, pool_script_to_string(s), json_object_new_string(pool_script_text[s]));
        for (FleetScript s = 0; s < _FLEET_SCRIPT_MAX; s++)
                json_object_object_add(scripts, fleet_thread_script_to_string(s),
                                       json_object_new_string(fleet_thread_script_text[s]));
        for (int i = 2; i < argc; i++) {
                json_object *k = host_keys(argv[1], argv[i]);
                if (!k)
                        return 1;
                json_object_object_add(keys, argv[i], k);
        }
        json_object_object_add(out, "scripts", scripts);
        json_object_object_add(out, "keys", keys);
        puts(json_object_to_json_string_ext(out, JSON_C_TO_STRING_PLAIN));
        json_object_put(out);
        return 0;
}
