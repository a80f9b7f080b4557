/* Redis replies that both of its clients read, decoded once: monkeyd's
 * pool link (agent/routing/pool_link.c, async) and monkey-proxy-sync's
 * query connection (proxy-hooks/redisconn.c, blocking) ask the sentinels
 * where the master is and ask that master its ROLE, and say what an error
 * reply said. Also the typed reads every decoder of a reply is made of
 * (pool_scripts.c's too). Pure: only hiredis's redisReply type, no
 * connection, no I/O, so monkey-proxy-sync links it without the daemon. */
#pragma once

#include <hiredis/hiredis.h>

#include "macro.h"

/* A bulk string or a status reply (never NULL). */
bool redisreply_is_string(const redisReply *r);
/* A string reply equal to s, to the byte. */
bool redisreply_streq(const redisReply *r, const char *s);
/* A string reply as a new C string; NULL for other types (or out of memory). */
char *redisreply_strdup(const redisReply *r);
/* An integer reply, or a string holding one (Lua numbers come back as
 * integers, but be lenient); -EBADMSG for anything else. */
int redisreply_integer(const redisReply *r, long long *ret);
/* The text of an error reply ("ERR unknown command ..."); NULL for a
 * reply of any other type and for no reply. */
const char *redisreply_error(const redisReply *r);

/* SENTINEL get-master-addr-by-name MASTER: {host, port}, port 1-65535 as
 * digits (or an integer). -ENOENT for nil (the sentinel does not know
 * MASTER), -EBADMSG for any other reply (an error, another shape, a bad
 * port), -ENOMEM; *ret_error (if given) says which, without the
 * sentinel's name: the caller knows whom it asked. ret_host and ret_port
 * are written only on success. */
int redisreply_sentinel_master(const redisReply *r, const char *master, char **ret_host, uint16_t *ret_port,
                               char **ret_error);

/* ROLE: 1 for "master", 0 for any other role ("slave", "sentinel", one we
 * do not know: only a master takes our writes), -EBADMSG for a reply that
 * is not {role, ...}. *ret_role (if given) is borrowed from r, set for 1
 * and 0. */
int redisreply_role(const redisReply *r, const char **ret_role);

/* Aggregates a reply may hold (elements of one array): far above any
 * reply we ask for (CLUSTER SLOTS, a pool's members), far below what
 * would make hiredis 0.14 allocate gigabytes for one "*N" line. */
#define REDISREPLY_ELEMENTS_MAX (1 << 20)

/* A hiredis reader that refuses an array of more than
 * REDISREPLY_ELEMENTS_MAX elements (a reader error, so the connection
 * is closed) instead of allocating it: what every connection of ours
 * reads replies with. NULL when out of memory. */
redisReader *redisreply_reader_new(void);
