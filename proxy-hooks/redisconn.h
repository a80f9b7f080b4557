/* monkey-proxy-sync's query connection to the pool's Redis, on the
 * sd-event loop: a RespConn (agent/loop/respconn.c: its own socket, TLS,
 * host names looked up off the loop on every connect, IPv6), AUTH
 * (password or ACL user) and SELECT, every step bounded by the timeout.
 * Nothing here blocks.
 *   - sentinel:// and rediss-sentinel://: the master that the sentinels
 *     name (SENTINEL get-master-addr-by-name, each sentinel in turn, then
 *     ROLE must say "master"). Before each use of a kept connection the
 *     sentinels are asked again and ROLE too, so a failover is followed at
 *     the next sync even while the old master still says "master".
 *   - Redis Cluster (several seeds, or a MOVED from one): all of a pool's
 *     keys share one slot ({P}), so there is one query connection, to the
 *     slot's master. MOVED moves it (and the queries in flight) to the
 *     node named, whose CLUSTER SLOTS gives the fallbacks tried when that
 *     node goes; ASK sends ASKING and that one command to the node named;
 *     TRYAGAIN and CLUSTERDOWN retry the command shortly, a few times.
 * Every query may be resent (after MOVED): only read-only commands go
 * through here. Owns its connections and the addresses it follows; the
 * URL and the TLS context are the caller's and must outlive it. */
#pragma once

#include <hiredis/hiredis.h>
#include <openssl/ssl.h>
#include <systemd/sd-event.h>

#include "macro.h"
#include "redisurl.h"

typedef struct RedisConn RedisConn;

typedef struct RedisConnSettings {
        const RedisUrl *url;
        SSL_CTX *tls;                /* rediss://: NULL for plain */
        const char *tls_server_name; /* NULL: the host connected to */
        usec_t timeout;              /* connect, TLS handshake, each reply */
} RedisConnSettings;

/* The reply to one query, heard exactly once (never from inside
 * redisconn_query, never from redisconn_free): r NULL when none came
 * (error says why, one line naming the server). r is freed after. */
typedef void (*redisconn_reply_t)(RedisConn *c, const redisReply *r, const char *error, void *userdata);
/* redisconn_begin's answer: error NULL when queries may go. */
typedef void (*redisconn_ready_t)(RedisConn *c, const char *error, void *userdata);

int redisconn_new(sd_event *e, const RedisConnSettings *settings, RedisConn **ret);
/* Drops everything; pending callbacks are not called. Takes NULL. */
RedisConn *redisconn_free(RedisConn *c);
static inline void redisconn_freep(RedisConn **c) {
        redisconn_free(*c);
}

/* Makes the connection ready for queries: connects if there is none
 * (through the sentinels; in a cluster the node last heard of, then the
 * others known), or re-asks the sentinels and ROLE for a kept one. cb is
 * called once, from the loop. -EBUSY while one is under way. */
int redisconn_begin(RedisConn *c, redisconn_ready_t cb, void *userdata);
/* One read-only query on the ready connection (argvlen NULL: C strings);
 * -ENOTCONN before redisconn_begin said ready or after it was lost. */
int redisconn_query(RedisConn *c, int argc, const char *const *argv, const size_t *argvlen, redisconn_reply_t cb,
                    void *userdata);
/* Whether a connection is kept (it may still turn out stale). */
bool redisconn_is_kept(const RedisConn *c);
void redisconn_drop(RedisConn *c);

/* Where the queries go, for the events subscription: the socket, the
 * URL's server, the master the sentinels named last, or the cluster node
 * the slot is on (-ENOENT before any). *ret_host and *ret_path (one is
 * set) stay valid until the next call into c. *ret_cluster: any node
 * hears a cluster's PUBLISH, so the subscription need not move. */
int redisconn_master(const RedisConn *c, const char **ret_host, uint16_t *ret_port, const char **ret_path,
                     bool *ret_cluster);

/* The sentinel that named the master last, to watch for +switch-master
 * (-ENOENT: none has yet, or not sentinel://). */
int redisconn_sentinel(const RedisConn *c, const char **ret_host, uint16_t *ret_port);
