/* The pool's connection to Redis: the main connection on sd-event
 * (respconn.c: TCP, Unix or TLS, host names looked up off the loop on
 * every connect), found through Sentinel when the URL says
 * so and followed across failovers; in a Redis Cluster, the node that
 * serves the pool's slot, followed through MOVED (the slot's new owner,
 * after a failover or a resharding), ASK (one command to the importing
 * node, after ASKING), TRYAGAIN and CLUSTERDOWN (the command waits a
 * little, then goes again); the handshake (AUTH, SELECT, ROLE,
 * SCRIPT LOAD of the pool's scripts); a timeout for every command and for
 * every connect; NOSCRIPT answered by sending the script's text; the
 * backoff between attempts; what went wrong last.
 *
 * It owns the connections, the commands in flight, the settings that
 * shape the connection (URL, password) and the connection's status. It
 * knows nothing of membership: its owner (pool.c) sends commands, and
 * hears their replies and the link's ups and downs through callbacks,
 * always from the event loop. */
#pragma once

#include <hiredis/hiredis.h>
#include <openssl/ssl.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "pool_scripts.h"
#include "redisurl.h"

typedef struct PoolLink PoolLink;

typedef enum PoolLinkState {
        POOL_LINK_IDLE,        /* pool_link_start not called yet */
        POOL_LINK_WAITING,     /* backing off before the next attempt */
        POOL_LINK_DISCOVERING, /* asking a sentinel for the master */
        POOL_LINK_CONNECTING,  /* connect and handshake */
        POOL_LINK_READY,
} PoolLinkState;

/* What shapes the connection, read in full (the password file too) before
 * it replaces anything: a reload that fails keeps the running link. */
typedef struct PoolLinkSettings {
        char *url_text, *url_shown, *password_file, *password;
        RedisUrl url;
        SSL_CTX *tls;          /* rediss://: the CA, client certificate and key, read */
        char *tls_files;       /* the files it was read from, to tell a change */
        char *tls_server_name; /* NULL: the URL's host */
} PoolLinkSettings;

/* [pool] redis, password_file and the tls_* keys (the key file under the
 * secret rules). ret_error: one line naming the key. */
int pool_link_settings_load(const Config *c, PoolLinkSettings *ret, char **ret_error);
void pool_link_settings_done(PoolLinkSettings *s);

typedef struct PoolLinkHandlers {
        /* The handshake is done: commands may go. */
        void (*ready)(PoolLink *l, void *userdata);
        /* The main connection is gone, or an attempt failed
         * (pool_link_error() says why); the link tries again after a
         * backoff. Never called while the link is freed. */
        void (*broken)(PoolLink *l, void *userdata);
        void *userdata;
} PoolLinkHandlers;

/* Takes the settings on success (s is emptied). label: how the "connected" log line
 * names the owner ("pool web, 127.0.0.9:80"), copied. */
int pool_link_new(sd_event *e, PoolLinkSettings *s, const char *label, const PoolLinkHandlers *h, PoolLink **ret);
/* The replies of commands still in flight are heard as failures first. */
PoolLink *pool_link_free(PoolLink *l);

/* Start connecting (async); a no-op unless idle. */
void pool_link_start(PoolLink *l);
/* New settings: swapped with s (s then holds the old ones). Returns
 * whether the connection changed (URL, password or TLS files). */
bool pool_link_swap_settings(PoolLink *l, PoolLinkSettings *s);
/* Drop the connection and connect again at once (new settings). */
void pool_link_reconnect(PoolLink *l);

/* The answer to one of the owner's commands, heard exactly once, from the
 * loop (or from inside the call that failed to send it): r NULL when no
 * reply will come, detail says why. current: the command went out on the
 * link's live connection (false: never sent, or on a connection given up
 * since, after which the owner heard "broken"). what: the command's name
 * for messages. */
typedef void (*pool_link_reply_t)(PoolLink *l, const char *what, const redisReply *r, const char *detail,
                                  bool current, void *userdata);

/* A reply that comes on a connection given up is still delivered (with
 * current false): a leave's answer is the truth. Any other late reply is
 * stale and heard as a failure. */
#define POOL_LINK_LATE_REPLY 1u

/* EVALSHA (EVAL while the script is not loaded) of script s; NULL keys
 * are skipped. Returns 0 when sent, or a negative errno after h heard the
 * failure. */
int pool_link_script(PoolLink *l, PoolScript s, size_t n_keys, const char *const *keys, size_t n_args,
                     const char *const *args, unsigned flags, pool_link_reply_t h, void *userdata);
/* Any other command: argv[0] is its name. The same contract. */
int pool_link_command(PoolLink *l, const char *what, size_t argc, const char *const *argv, pool_link_reply_t h,
                      void *userdata);
/* Through Sentinel, with each heartbeat: is the master still the master?
 * A demoted one sends the link back to the sentinels. No-op otherwise. */
void pool_link_check_role(PoolLink *l);

/* An error reply to one of the owner's commands: after an error that
 * makes the connection useless (READONLY, LOADING, NOAUTH...) the link
 * reconnects; after any other (an ACL without our scripts, OOM) it stays,
 * "degraded", with the refusal as its error, until pool_link_accepted(). */
void pool_link_refused(PoolLink *l, const char *what, const redisReply *r);
/* Redis ran one of our scripts: returns whether the link was degraded. */
bool pool_link_accepted(PoolLink *l);

PoolLinkState pool_link_state(const PoolLink *l);
/* For status: starting, unreachable, discovering, connecting,
 * reconnecting, degraded or connected. */
const char *pool_link_status(const PoolLink *l);
/* What went wrong last; fallback when nothing did. */
const char *pool_link_error(const PoolLink *l, const char *fallback);
/* The URL with any password hidden. */
const char *pool_link_url_shown(const PoolLink *l);
/* The master a sentinel named, as host:port: false when there is none. */
bool pool_link_master(const PoolLink *l, char *buf, size_t size);
/* Redis Cluster: the node that serves the pool's slot (host:port) and the
 * slot; false when no MOVED (or CLUSTER SLOTS) has named one. */
bool pool_link_cluster_node(const PoolLink *l, char *buf, size_t size, unsigned *ret_slot);

/* The loop's time on clock (e may be NULL: the clock's). */
