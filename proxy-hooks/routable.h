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

/* routable_read's answer: r 0 or a negative errno with error saying why.
 * On success eps (sorted, the caller's to free) is the routable set,
 * min_pttl the soonest lease expiry among them in ms (-1: none expires),
 * skipped the members without a live lease. */
typedef void (*routable_read_t)(Routable *s, int r, Endpoint *eps, size_t n, long long min_pttl, size_t skipped,
                                const char *error, void *userdata);
/* Reads the routable set over the ready query connection: SMEMBERS, one
 * HMGET, the PTTLs pipelined. done is heard once, from the loop (not if
 * the connection is freed first). Forgets what routable_fetch learnt.
 * -EBUSY while one is under way; -ENOTCONN. */
int routable_read(Routable *s, routable_read_t done, void *userdata);

/* routable_fetch's answer: 0 or a negative errno, error saying why. */
typedef void (*routable_fetched_t)(Routable *s, int r, const char *error, void *userdata);
/* Whether routable_keep_forgotten asked (-EAGAIN) for what Redis knows
 * of servers the proxy routes and the pool does not. */
bool routable_wants_fetch(const Routable *s);
/* Asks Redis that (HMGET addrs, EXISTS on the leases of owners we
 * remember), so that the next routable_keep_forgotten can answer. */
int routable_fetch(Routable *s, routable_fetched_t done, void *userdata);

/* Redis restarted empty (or was flushed): the agents register again one
 * by one, a heartbeat apart. Draining everyone not back yet would pile the
 * whole site on the first few. So of `routed` (what the proxy routes to
 * now), a server that Redis does not know at all (no owner in addrs) is
 * added to *want until --settle has passed since such servers were first
 * seen (*ret_due lowered to that moment); a server Redis knows and that is
 * not routable left on purpose (or lost its lease) and goes at once. *want
 * is replaced by a new array when servers are kept. `userdata` is the
 * Routable, so that this is a ProxysyncKeepFn. It does no I/O: the first
 * time it needs Redis's word on servers it returns -EAGAIN (the proxy
 * writer then changes nothing); routable_fetch asks, and the writer is
 * called again. */
int routable_keep_forgotten(void *userdata, const Endpoint *routed, size_t n_routed, Endpoint **want,
                            size_t *n_want, usec_t *ret_due, char **ret_error);
