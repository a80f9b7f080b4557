/* One Redis URL grammar, for monkeyd's config check, its pool connection
 * and monkey-proxy-sync: redis://, rediss:// (the same over TLS), unix://
 * (with ?db=N), sentinel:// and rediss-sentinel:// (the same over TLS).
 * Pure: no I/O. */
#pragma once

#include "macro.h"

typedef enum RedisUrlKind {
        REDIS_URL_TCP,
        REDIS_URL_UNIX,
        REDIS_URL_SENTINEL,
} RedisUrlKind;

#define REDIS_SENTINELS_MAX 16

typedef struct RedisEndpoint {
        char *host; /* without brackets for IPv6 */
        uint16_t port;
} RedisEndpoint;

typedef struct RedisUrl {
        RedisUrlKind kind;
        bool tls; /* rediss://, rediss-sentinel:// (the sentinels and the master) */
        char *user, *password; /* percent-decoded, NULL when absent */
        bool bare_userinfo;    /* "x@host": x is the password, or with a password file the user */
        RedisEndpoint server;  /* TCP: the first of seeds */
        /* TCP: every HOST[:PORT] given. More than one: a Redis Cluster's
         * seed nodes (one is enough too: a MOVED says it is a cluster). */
        RedisEndpoint seeds[REDIS_SENTINELS_MAX];
        size_t n_seeds;
        char *path;            /* UNIX */
        RedisEndpoint sentinels[REDIS_SENTINELS_MAX];
        size_t n_sentinels;
        char *master; /* SENTINEL */
        unsigned db;
} RedisUrl;

/* redis://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]...][/DB] (userinfo
 * without ':' is a password; several hosts: a cluster's seeds, DB 0),
 * rediss://… the same with TLS, unix:///PATH[?db=DB],
 * sentinel://[userinfo@]H[:P][,H[:P]...]/MASTER[/DB] and
 * rediss-sentinel://… the same with TLS.
 * Default ports 6379 and 26379, DB 0..1000. On failure -EINVAL (-ENOMEM)
 * and *ret_error (if given) says why, never holding the password; ret is
 * only written on success. */
int redis_url_parse(const char *s, RedisUrl *ret, char **ret_error);
/* Frees the strings (the password wiped) and zeroes *u; takes NULL. */
void redis_url_done(RedisUrl *u);

/* A Redis URL for messages, logs and status: the password (or a bare user
 * info, which some clients read as one) replaced by "<redacted>", the rest
 * as written. The last '@' anywhere counts, even after a '/': a password
 * may hold either, and too much hidden is the safe side. Works on
 * malformed URLs too (the config error quotes one). */
char *redis_url_redact(const char *url);
