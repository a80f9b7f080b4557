/* monkey-proxy-sync's query connection to the pool's Redis: blocking
 * hiredis with the timeout on every step (connect, each reply), AUTH and
 * SELECT, and for a sentinel:// URL the master that the sentinels name
 * (SENTINEL get-master-addr-by-name, each sentinel in turn, then ROLE must
 * say "master"). Before each use of a kept connection the sentinels are
 * asked again and ROLE too, so a failover is followed at the next sync
 * even while the old master still says "master". Owns the connection and
 * the master's address; the URL is the caller's and must outlive it. */
#pragma once

#include <hiredis/hiredis.h>

#include "macro.h"
#include "redisurl.h"

typedef struct RedisConn RedisConn;

int redisconn_new(const RedisUrl *url, usec_t timeout, RedisConn **ret);
RedisConn *redisconn_free(RedisConn *c);
static inline void redisconn_freep(RedisConn **c) {
        redisconn_free(*c);
}

/* The connection, made now if there is none (through the sentinels if the
 * URL says so). Failures: a negative errno and *ret_error (may stay NULL
 * when out of memory) saying why, never holding the password. */
int redisconn_get(RedisConn *c, redisContext **ret, char **ret_error);
/* The connection kept from an earlier redisconn_get, as it is (NULL: none). */
redisContext *redisconn_current(const RedisConn *c);
/* The next reply on the connection. On failure the connection is dropped
 * (after a timeout a hiredis context is unusable) and -EIO returned. */
int redisconn_reply(RedisConn *c, redisReply **ret, char **ret_error);
void redisconn_drop(RedisConn *c);

/* Where the master is, for the events subscription: the URL's server or
 * socket, or the master the sentinels named last (-ENOENT before they
 * named one). *ret_host and *ret_path (one of them is set) stay valid
 * until the next redisconn_get. */
int redisconn_master(const RedisConn *c, const char **ret_host, uint16_t *ret_port, const char **ret_path);

/* The sentinel that named the master last, to watch for +switch-master
 * (-ENOENT: none has yet, or not sentinel://). */
int redisconn_sentinel(const RedisConn *c, const char **ret_host, uint16_t *ret_port);

void redis_reply_freep(redisReply **r);
