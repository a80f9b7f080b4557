/* monkey-proxy-sync's query connection: see redisconn.h. */
#include <time.h>

#include "fileio.h"
#include "log.h"
#include "redisconn.h"
#include "redisreply.h"

struct RedisConn {
        const RedisUrl *url;
        usec_t timeout;
        redisContext *c;
        char *master_host; /* sentinel:// only: what the sentinels said last */
        uint16_t master_port;
        size_t sentinel_first; /* the one that answered last is asked first */
        bool sentinel_answered; /* ... and it did answer */
};

void redis_reply_freep(redisReply **r) {
        if (*r)
                freeReplyObject(*r);
}

static struct timeval redisconn_timeval(usec_t u) {
        return (struct timeval) { .tv_sec = (time_t) (u / USEC_PER_SEC), .tv_usec = (suseconds_t) (u % USEC_PER_SEC) };
}

int redisconn_new(const RedisUrl *url, usec_t timeout, RedisConn **ret) {
        RedisConn *c = calloc(1, sizeof(RedisConn));

        if (!c)
                return -ENOMEM;
        c->url = url;
        c->timeout = timeout;
        *ret = c;
        return 0;
}

void redisconn_drop(RedisConn *c) {
        if (c->c) {
                redisFree(c->c);
                c->c = NULL;
        }
}

RedisConn *redisconn_free(RedisConn *c) {
        if (!c)
                return NULL;
        redisconn_drop(c);
        free(c->master_host);
        free(c);
        return NULL;
}

redisContext *redisconn_current(const RedisConn *c) {
        return c->c;
}

/* A TCP or unix connection with the timeout on connect and on each reply;
 * `what` names it in the error. */
static int redisconn_open(const RedisConn *c, const char *what, const char *host, uint16_t port, const char *path,
                          redisContext **ret, char **ret_error) {
        struct timeval tv = redisconn_timeval(c->timeout);
        redisContext *k;

        k = path ? redisConnectUnixWithTimeout(path, tv) : redisConnectWithTimeout(host, port, tv);
        if (!k)
                return -ENOMEM;
        if (k->err) {
                int r = error_set(ret_error, -ECONNREFUSED, "Cannot connect to %s: %s", what, k->errstr);
                redisFree(k);
                return r;
        }
        if (redisSetTimeout(k, tv) != REDIS_OK) {
                redisFree(k);
                return -EIO;
        }
        if (!path)
                (void) redisEnableKeepAlive(k);
        *ret = k;
        return 0;
}

/* Asks one sentinel where the master is: "HOST PORT", or nil when the
 * sentinel does not know the name. */
static int redisconn_ask_sentinel(RedisConn *c, const RedisEndpoint *s, char **ret_error) {
        _cleanup_(redis_reply_freep) redisReply *rep = NULL;
        _cleanup_(freep) char *host = NULL, *why = NULL;
        redisContext *k = NULL;
        uint16_t port;
        char what[300];
        int r;

        snprintf(what, sizeof what, "sentinel %s:%u", s->host, (unsigned) s->port);
        r = redisconn_open(c, what, s->host, s->port, NULL, &k, ret_error);
        if (r < 0)
                return r;
        rep = redisCommand(k, "SENTINEL get-master-addr-by-name %s", c->url->master);
        if (!rep) {
                r = error_set(ret_error, -EIO, "%s: %s", what, k->errstr);
                redisFree(k);
                return r;
        }
        redisFree(k);
        r = redisreply_sentinel_master(rep, c->url->master, &host, &port, &why);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return error_set(ret_error, r, "%s: %s", what, strna(why));
        if (!streq_ptr(c->master_host, host) || c->master_port != port)
                log_info("Sentinel %s:%u: master '%s' is at %s:%u", s->host, (unsigned) s->port, c->url->master,
                         host, (unsigned) port);
        free(c->master_host);
        c->master_host = TAKE_PTR(host);
        c->master_port = port;
        return 0;
}

/* Each sentinel in turn, the one that answered last first; the first
 * answer wins. */
static int redisconn_discover(RedisConn *c, char **ret_error) {
        size_t n = c->url->n_sentinels;
        int r = -EHOSTUNREACH;

        for (size_t k = 0; k < n; k++) {
                size_t i = (c->sentinel_first + k) % n;
                _cleanup_(freep) char *why = NULL;

                r = redisconn_ask_sentinel(c, &c->url->sentinels[i], &why);
                if (r == -ENOMEM)
                        return r;
                if (r >= 0) {
                        c->sentinel_first = i;
                        c->sentinel_answered = true;
                        return 0;
                }
                log_debug("%s", strna(why));
                if (k + 1 == n)
                        return error_set(ret_error, r, "No sentinel gave the address of master '%s' (last: %s)",
                                          c->url->master, strna(why));
        }
        return r;
}

/* ROLE on the master the sentinels named: a demoted one says "slave". */
static int redisconn_check_role(RedisConn *c, redisContext *k, char **ret_error) {
        _cleanup_(redis_reply_freep) redisReply *rep = redisCommand(k, "ROLE");
        const char *role = NULL;
        int r;

        if (!rep)
                return error_set(ret_error, -EIO, "Redis ROLE failed: %s", k->errstr);
        r = redisreply_role(rep, &role);
        if (r < 0)
                return error_set(ret_error, -EBADMSG, "Redis %s:%u: unexpected reply to ROLE%s%s",
                                  c->master_host, (unsigned) c->master_port, redisreply_error(rep) ? ": " : "",
                                  strempty(redisreply_error(rep)));
        if (r == 0)
                return error_set(ret_error, -EAGAIN, "Redis %s:%u is not the master (role %s); asking the "
                                  "sentinels again", c->master_host, (unsigned) c->master_port, role);
        return 0;
}

static int redisconn_handshake(RedisConn *c, redisContext *k, char **ret_error) {
        const RedisUrl *u = c->url;

        if (u->password) {
                _cleanup_(redis_reply_freep) redisReply *rep = u->user
                        ? redisCommand(k, "AUTH %s %s", u->user, u->password)
                        : redisCommand(k, "AUTH %s", u->password);
                if (!rep || redisreply_error(rep))
                        return error_set(ret_error, -EACCES, "Redis AUTH failed: %s",
                                          rep ? redisreply_error(rep) : k->errstr);
        }
        if (u->kind == REDIS_URL_SENTINEL) {
                int r = redisconn_check_role(c, k, ret_error);
                if (r < 0)
                        return r;
        }
        if (u->db > 0) {
                _cleanup_(redis_reply_freep) redisReply *rep = redisCommand(k, "SELECT %u", u->db);
                if (!rep || redisreply_error(rep))
                        return error_set(ret_error, -EIO, "Redis SELECT %u failed: %s", u->db,
                                          rep ? redisreply_error(rep) : k->errstr);
        }
        return 0;
}

/* discovered: the sentinels were just asked. */
static int redisconn_connect(RedisConn *c, bool discovered, char **ret_error) {
        const RedisUrl *u = c->url;
        redisContext *k = NULL;
        char what[300];
        int r;

        if (u->kind == REDIS_URL_SENTINEL) {
                if (!discovered) {
                        r = redisconn_discover(c, ret_error);
                        if (r < 0)
                                return r;
                }
                snprintf(what, sizeof what, "the Redis master %s:%u", c->master_host, (unsigned) c->master_port);
                r = redisconn_open(c, what, c->master_host, c->master_port, NULL, &k, ret_error);
        } else
                r = redisconn_open(c, "Redis", u->server.host, u->server.port, u->path, &k, ret_error);
        if (r < 0)
                return r;
        r = redisconn_handshake(c, k, ret_error);
        if (r < 0) {
                redisFree(k);
                return r;
        }
        c->c = k;
        return 0;
}

/* Whether the kept connection is still to the master. A failover
 * promotes another server at once, while the old master may say "master"
 * for seconds more, until the sentinels reconfigure it: so the sentinels
 * are asked first, then ROLE. Sentinels that do not answer keep the
 * master we have, while it says it is one. *ret_discovered: the kept
 * connection was dropped after the sentinels named another master. */
static int redisconn_recheck(RedisConn *c, bool *ret_discovered) {
        _cleanup_(freep) char *why = NULL, *host = strdup(c->master_host);
        uint16_t port = c->master_port;
        int r;

        if (!host)
                return -ENOMEM;
        r = redisconn_discover(c, &why);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                log_debug("%s; keeping master %s:%u while it says so", strna(why), host, (unsigned) port);
        else if (!streq(host, c->master_host) || port != c->master_port) {
                redisconn_drop(c);
                *ret_discovered = true;
                return 0;
        }
        free(why);
        why = NULL;
        r = redisconn_check_role(c, c->c, &why);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                log_debug("%s", strna(why));
                redisconn_drop(c);
        }
        return 0;
}

int redisconn_get(RedisConn *c, redisContext **ret, char **ret_error) {
        bool discovered = false;
        int r;

        if (c->c && c->url->kind == REDIS_URL_SENTINEL) {
                r = redisconn_recheck(c, &discovered);
                if (r < 0)
                        return r;
        }
        if (!c->c) {
                r = redisconn_connect(c, discovered, ret_error);
                if (r < 0)
                        return r;
        }
        *ret = c->c;
        return 0;
}

int redisconn_reply(RedisConn *c, redisReply **ret, char **ret_error) {
        void *v = NULL;

        if (!c->c)
                return error_set(ret_error, -EIO, "Redis query failed: not connected");
        if (redisGetReply(c->c, &v) != REDIS_OK || !v) {
                int r = error_set(ret_error, -EIO, "Redis query failed: %s",
                                   c->c->errstr[0] ? c->c->errstr : "no reply");
                /* After a timeout a hiredis sync context is unusable. */
                redisconn_drop(c);
                return r;
        }
        *ret = v;
        return 0;
}

int redisconn_master(const RedisConn *c, const char **ret_host, uint16_t *ret_port, const char **ret_path) {
        const RedisUrl *u = c->url;

        *ret_host = NULL;
        *ret_path = NULL;
        *ret_port = 0;
        switch (u->kind) {
        case REDIS_URL_UNIX:
                *ret_path = u->path;
                return 0;
        case REDIS_URL_TCP:
                *ret_host = u->server.host;
                *ret_port = u->server.port;
                return 0;
        case REDIS_URL_SENTINEL:
                if (!c->master_host)
                        return -ENOENT;
                *ret_host = c->master_host;
                *ret_port = c->master_port;
                return 0;
        }
        return -EINVAL;
}

int redisconn_sentinel(const RedisConn *c, const char **ret_host, uint16_t *ret_port) {
        const RedisEndpoint *e;

        if (c->url->kind != REDIS_URL_SENTINEL || !c->sentinel_answered)
                return -ENOENT;
        e = &c->url->sentinels[c->sentinel_first];
        *ret_host = e->host;
        *ret_port = e->port;
        return 0;
}
