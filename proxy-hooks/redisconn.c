/* monkey-proxy-sync's query connection: see redisconn.h. */
#include <time.h>

#include "fileio.h"
#include "log.h"
#include "redisconn.h"

struct RedisConn {
        const RedisUrl *url;
        usec_t timeout;
        redisContext *c;
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
                int r = file_error(ret_error, -ECONNREFUSED, "Cannot connect to %s: %s", what, k->errstr);
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

static int redisconn_handshake(RedisConn *c, redisContext *k, char **ret_error) {
        const RedisUrl *u = c->url;

        if (u->password) {
                _cleanup_(redis_reply_freep) redisReply *rep = u->user
                        ? redisCommand(k, "AUTH %s %s", u->user, u->password)
                        : redisCommand(k, "AUTH %s", u->password);
                if (!rep || rep->type == REDIS_REPLY_ERROR)
                        return file_error(ret_error, -EACCES, "Redis AUTH failed: %s", rep ? rep->str : k->errstr);
        }
        if (u->db > 0) {
                _cleanup_(redis_reply_freep) redisReply *rep = redisCommand(k, "SELECT %u", u->db);
                if (!rep || rep->type == REDIS_REPLY_ERROR)
                        return file_error(ret_error, -EIO, "Redis SELECT %u failed: %s", u->db,
                                          rep ? rep->str : k->errstr);
        }
        return 0;
}

static int redisconn_connect(RedisConn *c, char **ret_error) {
        const RedisUrl *u = c->url;
        redisContext *k = NULL;
        int r;

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

int redisconn_get(RedisConn *c, redisContext **ret, char **ret_error) {
        int r;

        if (!c->c) {
                r = redisconn_connect(c, ret_error);
                if (r < 0)
                        return r;
        }
        *ret = c->c;
        return 0;
}

int redisconn_reply(RedisConn *c, redisReply **ret, char **ret_error) {
        void *v = NULL;

        if (!c->c)
                return file_error(ret_error, -EIO, "Redis query failed: not connected");
        if (redisGetReply(c->c, &v) != REDIS_OK || !v) {
                int r = file_error(ret_error, -EIO, "Redis query failed: %s",
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
                return -EOPNOTSUPP;
        }
        return -EINVAL;
}

