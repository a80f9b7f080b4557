/* What a Redis Cluster client needs to know, decoded once for both of
 * Doctor Monkey's Redis clients (monkeyd's pool link and
 * monkey-proxy-sync): the slot of a key (CRC16 with hash tags, as Redis
 * computes it), what an error reply asks of the client (MOVED: the slot
 * lives elsewhere now; ASK: this one command goes elsewhere after ASKING;
 * TRYAGAIN / CLUSTERDOWN: the slot is between nodes or the cluster is
 * down, try again shortly) and which node serves a slot according to
 * CLUSTER SLOTS. Pure: only hiredis's reply type, no I/O. */
#pragma once

#include <hiredis/hiredis.h>

#include "macro.h"
#include "redisurl.h"

#define REDIS_CLUSTER_SLOTS 16384u

/* The slot of key (len bytes): CRC16-XMODEM modulo 16384 of the hash tag
 * (what is between the first '{' and the next '}', if not empty) or of
 * the whole key. */
unsigned redis_cluster_keyslot(const char *key, size_t len);

typedef enum RedisClusterVerdict {
        REDIS_CLUSTER_NONE,     /* not a cluster error: the command's own answer */
        REDIS_CLUSTER_MOVED,    /* the slot's owner is host:port: ask the map again */
        REDIS_CLUSTER_ASK,      /* this once: ASKING, then the command, on host:port */
        REDIS_CLUSTER_TRYAGAIN, /* the slot is being moved: the same command again, shortly */
        REDIS_CLUSTER_DOWN,     /* CLUSTERDOWN: the cluster cannot serve the slot now */
} RedisClusterVerdict;

typedef struct RedisClusterRedirect {
        RedisClusterVerdict verdict;
        unsigned slot;  /* MOVED, ASK */
        char *host;     /* MOVED, ASK: NULL when Redis names no host ("MOVED 1 :7000"):
                         * the one the command was sent to */
        uint16_t port;  /* MOVED, ASK */
} RedisClusterRedirect;

/* Reads an error reply's text (redisreply_error()). NULL or any other
 * error: REDIS_CLUSTER_NONE. A MOVED/ASK that cannot be read (no slot, a
 * bad port) is -EBADMSG; -ENOMEM. ret is written on success; free the
 * host with redis_cluster_redirect_done(). */
int redis_cluster_redirect_parse(const char *error, RedisClusterRedirect *ret);
void redis_cluster_redirect_done(RedisClusterRedirect *r);

/* CLUSTER SLOTS: the master that serves slot, as {start, end, {host,
 * port, id, ...}, replicas...} says. host is NULL when the node has no
 * endpoint to give ("" or "?"): the node asked. -ENOENT when no range
 * holds slot (the cluster is not fully covered), -EBADMSG for another
 * shape, -ENOMEM. */
int redis_cluster_slot_owner(const redisReply *slots, unsigned slot, char **ret_host, uint16_t *ret_port);

/* Every node CLUSTER SLOTS names (masters and replicas, each once, in
 * order), to ask the map again when the node asked last is gone. Nodes
 * without an endpoint are skipped. Free with redis_cluster_nodes_free().
 * -EBADMSG, -ENOMEM. */
int redis_cluster_slot_nodes(const redisReply *slots, RedisEndpoint **ret, size_t *ret_n);
void redis_cluster_nodes_free(RedisEndpoint *nodes, size_t n);
