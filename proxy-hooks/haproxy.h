/* Making HAProxy follow the routable set over its runtime API: one
 * command per connection with a deadline, `show servers state` read into
 * slots, proxysync_plan() applied op by op, and the fail-static rule that
 * an empty pool does not empty a backend with ready servers unless
 * --allow-empty. Owns that "holding empty" state; the options are the
 * caller's. */
#pragma once

#include "options.h"
#include "proxysync.h"

typedef struct Haproxy Haproxy;

int haproxy_new(const Options *o, Haproxy **ret);
Haproxy *haproxy_free(Haproxy *h);

/* One pass: reads the backend, lets `keep` see what it routes, applies the
 * plan. Returns 0, or the first failure with *ret_error (the rest of the
 * plan waits for the next sync: HAProxy is read again each time).
 * *ret_due: when to come back (a drain due for maint, --interval). */
int haproxy_apply(Haproxy *h, Endpoint **want, size_t *n_want, ProxysyncKeepFn keep, void *keep_data,
                  usec_t *ret_due, char **ret_error);
