/* The pool's routable set as Redis holds it (members of serving whose
 * owner, per the addrs hash, holds a live lease; proxysync_routable()
 * decides), read over the query connection; and what is known of the
 * servers a proxy still routes to that Redis has forgotten (restarted
 * empty or flushed): who owned each endpoint when Redis last said so, and
 * since when the forgotten ones wait out --settle. Owns that memory; the
 * key names and the connection are the caller's. */
#pragma once

#include "proxysync.h"
#include "redisconn.h"

typedef struct Routable Routable;

typedef struct RoutableKeys {
        const char *serving, *lease_prefix, *addrs;
} RoutableKeys;

/* settle: --settle (0: a forgotten server goes at once). */
int routable_new(RedisConn *conn, const RoutableKeys *keys, const char *pool, usec_t settle, Routable **ret);
Routable *routable_free(Routable *r);
static inline void routable_freep(Routable **r) {
        routable_free(*r);
}

/* The routable set, sorted; ret_min_pttl: the soonest lease expiry among
 * them in ms (-1: none expires); ret_skipped: members without a live lease. */
int routable_read(Routable *r, Endpoint **ret, size_t *ret_n, long long *ret_min_pttl, size_t *ret_skipped,
                  char **ret_error);

/* Redis restarted empty (or was flushed): the agents register again one
 * by one, a heartbeat apart. Draining everyone not back yet would pile the
 * whole site on the first few. So of `routed` (what the proxy routes to
 * now), a server that Redis does not know at all (no owner in addrs) is
 * added to *want until --settle has passed since such servers were first
 * seen (*ret_due lowered to that moment); a server Redis knows and that is
 * not routable left on purpose (or lost its lease) and goes at once. *want
 * is replaced by a new array when servers are kept. `userdata` is the
 * Routable, so that this is a ProxysyncKeepFn. */
int routable_keep_forgotten(void *userdata, const Endpoint *routed, size_t n_routed, Endpoint **want,
                            size_t *n_want, usec_t *ret_due, char **ret_error);
