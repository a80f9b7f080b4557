/* The argv of one EVALSHA as the benches send the agent's scripts:
 * EVALSHA sha nkeys keys... args... (pool_bench.c, fleet_bench.c). */
#pragma once

#include <errno.h>
#include <stdio.h>

/* Fills argv (room for max) pointing into sha, nk, keys and args; the
 * number of arguments, or -E2BIG. */
static inline int evalsha_argv(const char *sha, int nkeys, const char **keys, int nargs, const char **args,
                               char nk[static 16], const char **argv, int max) {
        int argc = 0;

        if (3 + nkeys + nargs > max)
                return -E2BIG;
        snprintf(nk, 16, "%d", nkeys);
        argv[argc++] = "EVALSHA";
        argv[argc++] = sha;
        argv[argc++] = nk;
        for (int i = 0; i < nkeys; i++)
                argv[argc++] = keys[i];
        for (int i = 0; i < nargs; i++)
                argv[argc++] = args[i];
        return argc;
}
