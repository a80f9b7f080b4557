/* monkey-proxy-sync's pure core: the routable set computed
 * from the pool's keys, HAProxy's `show servers state` read into slots, the
 * slot plan (which runtime-API commands make HAProxy match the pool), and
 * the nginx upstream text. No I/O here, so every rule has a unit test; the
 * daemon in monkey-proxy-sync.c only moves bytes. */
#pragma once

#include <arpa/inet.h>

#include "macro.h"

/* Letters, digits, '.', '_' and '-', 1..64 characters: what [pool] name
 * accepts, and safe inside a Redis key, a HAProxy command and nginx text. */
bool proxysync_name_is_valid(const char *s);

#define ENDPOINT_STRLEN (INET6_ADDRSTRLEN + 9)

typedef struct Endpoint {
        int family;                  /* AF_INET or AF_INET6 */
        char ip[INET6_ADDRSTRLEN];   /* canonical text form, no brackets */
        uint16_t port;
} Endpoint;

/* "127.0.1.5:8080" or "[2001:db8::5]:8080"; port 1..65535. */
int proxysync_parse_endpoint(const char *s, Endpoint *ret);
/* The same forms back, into buf (ENDPOINT_STRLEN is always enough). */
const char *proxysync_endpoint_format(const Endpoint *e, char *buf, size_t size);
int proxysync_endpoint_compare(const Endpoint *a, const Endpoint *b);
bool proxysync_endpoint_equal(const Endpoint *a, const Endpoint *b);

/* The routable set: members of serving whose owner (addrs hash) holds a
 * live lease. owners[i] is HGET addrs members[i] (NULL: none); pttl_ms[i]
 * is PTTL of that owner's lease key (-2 missing, -1 no expiry). Sorted,
 * without duplicates. ret_min_pttl_ms: the soonest lease expiry among the
 * routable (-1 if none expires), so the caller can resync right after it.
 * ret_skipped counts members that are not routable. */
int proxysync_routable(char *const *members, char *const *owners, const long long *pttl_ms, size_t n,
                       Endpoint **ret, size_t *ret_n, long long *ret_min_pttl_ms, size_t *ret_skipped);

typedef enum SlotMode {
        SLOT_READY,
        SLOT_DRAIN,
        SLOT_MAINT,
        _SLOT_MODE_MAX,
        _SLOT_MODE_INVALID = -EINVAL,
} SlotMode;

/* "ready", "drain", "maint": HAProxy's own words for `set server … state`. */
const char *proxysync_slot_mode_to_string(SlotMode m);

/* HAProxy 2.6 srv_admin_state bits (src/server-t.h). CMAINT ("disabled" in
 * the config) stays set after `state ready`, so it does not mean maint. */
#define HAPROXY_ADMF_FMAINT 0x01
#define HAPROXY_ADMF_IMAINT 0x02
#define HAPROXY_ADMF_FDRAIN 0x08
#define HAPROXY_ADMF_IDRAIN 0x10
#define HAPROXY_ADMF_RMAINT 0x20
#define HAPROXY_ADMF_MAINT (HAPROXY_ADMF_FMAINT | HAPROXY_ADMF_IMAINT | HAPROXY_ADMF_RMAINT)
#define HAPROXY_ADMF_DRAIN (HAPROXY_ADMF_FDRAIN | HAPROXY_ADMF_IDRAIN)

SlotMode proxysync_slot_mode_from_admin(unsigned long admin_state);

typedef struct Slot {
        char name[65];
        unsigned long index;            /* the digits after the prefix */
        bool has_endpoint;
        Endpoint endpoint;
        SlotMode mode;
        unsigned long since_change_sec; /* srv_time_since_last_change */
} Slot;

/* Reads `show servers state BACKEND` (format 1): the servers named PREFIX
 * followed by digits only, sorted by that number. Other servers of the
 * backend are not ours and are left out. An answer that is not the table
 * ("No such backend.") is -EBADMSG with its first line in *ret_error. */
int proxysync_parse_servers_state(const char *text, const char *backend, const char *prefix, Slot **ret,
                                  size_t *ret_n, char **ret_error);

typedef enum SlotOpKind {
        SLOT_OP_ADDR,  /* set server BE/S addr IP port P */
        SLOT_OP_READY,
        SLOT_OP_DRAIN,
        SLOT_OP_MAINT,
        _SLOT_OP_KIND_MAX,
        _SLOT_OP_KIND_INVALID = -EINVAL,
} SlotOpKind;

typedef struct SlotOp {
        size_t slot; /* index into the slots array */
        SlotOpKind kind;
        Endpoint endpoint; /* SLOT_OP_ADDR only */
} SlotOp;

typedef struct SlotPlan {
        SlotOp *ops;     /* joins first (addr, ready), then leaves (drain, maint) */
        size_t n_ops;
        size_t routed;   /* slots that will be ready */
        size_t unplaced; /* wanted endpoints with no free slot */
} SlotPlan;

/* Makes the slots match `want`: a wanted endpoint keeps the slot that has
 * it (ready; a drained or maint one is made ready again), else takes the
 * lowest free maint slot (addr, then ready). A ready slot nobody wants is
 * drained; a drained one goes to maint once it has been drained for
 * drain_grace_sec, and only then is it free. Duplicates are drained. */
int proxysync_plan(const Slot *slots, size_t n_slots, const Endpoint *want, size_t n_want,
                   unsigned long drain_grace_sec, SlotPlan *ret);
void proxysync_plan_done(SlotPlan *p);

/* The runtime-API line for one op, without "\n". */
int proxysync_op_command(const char *backend, const Slot *slots, size_t n_slots, const SlotOp *op, char **ret);

/* `upstream NAME { server ip:port ARGS; … }` with a header naming the pool.
 * Empty: one `server 127.0.0.1:1 down;` so the file stays valid nginx.
 * server_args (may be NULL) is appended to each server line. */
int proxysync_render_nginx(const char *pool, const char *upstream, const Endpoint *eps, size_t n,
                           const char *server_args, char **ret);
/* Whether text holds at least one server line that is not `down`. */
bool proxysync_nginx_has_servers(const char *text);
/* The endpoints of the `server IP:PORT ...;` lines that are not `down`
 * (what nginx routes to now; other lines are skipped). */
int proxysync_nginx_servers(const char *text, Endpoint **ret, size_t *ret_n);
/* The endpoints of `have` that are not in `want`, each once. */
int proxysync_missing(const Endpoint *have, size_t n_have, const Endpoint *want, size_t n_want, Endpoint **ret,
                      size_t *ret_n);

/* Safe to put after "server ip:port " in nginx text: no ';', braces, '#',
 * quotes, '$' or control characters. */
bool proxysync_server_args_are_valid(const char *s);

/* How a proxy writer lets the routable set see what the proxy routes now
 * before it applies `*want`: it may add servers to keep routed (a new
 * array in *want) and lower *ret_due (routable_keep_forgotten). */
typedef int (*ProxysyncKeepFn)(void *userdata, const Endpoint *routed, size_t n_routed, Endpoint **want,
                               size_t *n_want, usec_t *ret_due, char **ret_error);
