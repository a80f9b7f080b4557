/* Making nginx follow the routable set: the upstream file rendered by
 * proxysync_render_nginx(), written atomically when it changed, and the
 * reload command run (bounded by --reload-timeout) until nginx has loaded
 * what is on disk; an empty pool does not empty a file with servers unless
 * --allow-empty. Owns the "reload pending" and "holding empty" state; the
 * options are the caller's. */
#pragma once

#include "options.h"
#include "proxysync.h"

typedef struct Nginx Nginx;

int nginx_new(const Options *o, Nginx **ret);
Nginx *nginx_free(Nginx *n);

/* The next nginx_apply reloads nginx even if the file did not change
 * (SIGHUP). */
void nginx_request_reload(Nginx *n);

/* One pass: reads the file, lets `keep` see what it routes, writes and
 * reloads. 0, or a negative errno with *ret_error. */
int nginx_apply(Nginx *n, Endpoint **want, size_t *n_want, ProxysyncKeepFn keep, void *keep_data, usec_t *ret_due,
                char **ret_error);
