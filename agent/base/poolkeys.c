/* The pool's key schema: see poolkeys.h. */
#include "poolkeys.h"

#include <stdio.h>
#include <stdlib.h>

#include "error.h"
#include "macro.h"

static const char *const suffix_table[_POOL_KEY_MAX] = {
        [POOL_KEY_PREFIX] = "",
        [POOL_KEY_SERVING] = POOLKEYS_SERVING,
        [POOL_KEY_OUT] = POOLKEYS_OUT,
        [POOL_KEY_ADDRS] = POOLKEYS_ADDRS,
        [POOL_KEY_ALIVE] = POOLKEYS_ALIVE,
        [POOL_KEY_WAITING] = POOLKEYS_WAITING,
        [POOL_KEY_EVENTS] = POOLKEYS_EVENTS,
        [POOL_KEY_BUDGET] = POOLKEYS_BUDGET,
        [POOL_KEY_FLEET_THREAD] = POOLKEYS_FLEET_THREAD,
        [POOL_KEY_FLEET_HOLDING] = POOLKEYS_FLEET_HOLDING,
        [POOL_KEY_HOST] = POOLKEYS_HOST,
        [POOL_KEY_LEASE] = POOLKEYS_LEASE,
        [POOL_KEY_ASKING] = POOLKEYS_ASKING,
        [POOL_KEY_LEASES] = POOLKEYS_LEASES,
        [POOL_KEY_ASKING_HOST] = POOLKEYS_ASKING_HOST,
};

const char *poolkeys_suffix(PoolKey k) {
        return k >= 0 && k < _POOL_KEY_MAX ? suffix_table[k] : NULL;
}

int poolkeys_per_host(PoolKey k) {
        if (k < 0 || k >= _POOL_KEY_MAX)
                return -EINVAL;
        return k == POOL_KEY_HOST || k == POOL_KEY_LEASE || k == POOL_KEY_ASKING_HOST;
}

int poolkeys_key(const char *pool, PoolKey k, const char *host, char **ret) {
        int per_host = poolkeys_per_host(k);
        char *s = NULL;

        if (!pool || !ret || per_host < 0 || per_host != !!host)
                return -EINVAL;
        if (asprintf(&s, POOLKEYS_NAMESPACE ":{%s}:%s%s", pool, suffix_table[k], strempty(host)) < 0)
                return -ENOMEM;
        *ret = s;
        return 0;
}

void poolkeys_done(PoolKeys *k) {
        if (!k)
                return;
        for (PoolKey i = 0; i < _POOL_KEY_MAX; i++) {
                free(k->key[i]);
                k->key[i] = NULL;
        }
}

int poolkeys_new(const char *pool, const char *host, PoolKeys *ret) {
        _cleanup_(poolkeys_done) PoolKeys v = {};
        int r;

        if (!pool || !host || !ret)
                return -EINVAL;
        for (PoolKey i = 0; i < _POOL_KEY_MAX; i++) {
                r = poolkeys_key(pool, i, poolkeys_per_host(i) ? host : NULL, &v.key[i]);
                if (r < 0)
                        return r;
        }
        *ret = v;
        v = (PoolKeys) {};
        return 0;
}

int poolkeys_budget_check(long long min_serving, long long max_unavailable, char **ret_error) {
        if (min_serving > POOLKEYS_MIN_SERVING_MAX)
                return error_set(ret_error, -ERANGE, "min_serving %lld is out of range (0-%d)", min_serving,
                                 POOLKEYS_MIN_SERVING_MAX);
        if (max_unavailable == 0)
                return error_set(ret_error, -ERANGE,
                                 "max_unavailable 0 is out of range (%d-%d): no host could ever leave the pool",
                                 POOLKEYS_MAX_UNAVAILABLE_MIN, POOLKEYS_MAX_UNAVAILABLE_MAX);
        if (max_unavailable > POOLKEYS_MAX_UNAVAILABLE_MAX)
                return error_set(ret_error, -ERANGE, "max_unavailable %lld is out of range (%d-%d)", max_unavailable,
                                 POOLKEYS_MAX_UNAVAILABLE_MIN, POOLKEYS_MAX_UNAVAILABLE_MAX);
        return 0;
}
