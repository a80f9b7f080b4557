/* Redis replies both clients read: see redisreply.h. */
#include "redisreply.h"

#include <stdio.h>

#include "error.h"
#include "numparse.h"

bool redisreply_is_string(const redisReply *r) {
        return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS);
}

bool redisreply_streq(const redisReply *r, const char *s) {
        return redisreply_is_string(r) && r->len == strlen(s) && memcmp(r->str, s, r->len) == 0;
}

char *redisreply_strdup(const redisReply *r) {
        if (!redisreply_is_string(r))
                return NULL;
        return strndup(r->str, r->len);
}

int redisreply_integer(const redisReply *r, long long *ret) {
        char buf[32], *end = NULL;
        long long v;

        if (!r)
                return -EBADMSG;
        if (r->type == REDIS_REPLY_INTEGER) {
                *ret = r->integer;
                return 0;
        }
        if (!redisreply_is_string(r) || r->len == 0 || r->len >= sizeof buf)
                return -EBADMSG;
        memcpy(buf, r->str, r->len);
        buf[r->len] = '\0';
        errno = 0;
        v = strtoll(buf, &end, 10);
        if (errno != 0 || !end || *end != '\0')
                return -EBADMSG;
        *ret = v;
        return 0;
}

const char *redisreply_error(const redisReply *r) {
        return r && r->type == REDIS_REPLY_ERROR ? strempty(r->str) : NULL;
}

/* A port as Sentinel sends it, a bulk string of digits (no sign, blank or
 * "0x": strtol would take them), or an integer; 1-65535. */
static int redisreply_port(const redisReply *r, uint16_t *ret) {
        if (r->type == REDIS_REPLY_INTEGER) {
                if (r->integer < 1 || r->integer > UINT16_MAX)
                        return -EBADMSG;
                *ret = (uint16_t) r->integer;
                return 0;
        }
        if (!redisreply_is_string(r) || parse_port_decimal(r->str, r->len, ret) < 0)
                return -EBADMSG;
        return 0;
}

int redisreply_sentinel_master(const redisReply *r, const char *master, char **ret_host, uint16_t *ret_port,
                               char **ret_error) {
        const redisReply *host, *port;
        uint16_t p;
        char *h;

        if (r && r->type == REDIS_REPLY_NIL)
                return error_set(ret_error, -ENOENT, "does not know master '%s'", strna(master));
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2)
                return error_set(ret_error, -EBADMSG, "unexpected reply to SENTINEL get-master-addr-by-name%s%s",
                                 redisreply_error(r) ? ": " : "", strempty(redisreply_error(r)));
        host = r->element[0];
        port = r->element[1];
        /* A NUL inside would cut the host short where we copy it. */
        if (!redisreply_is_string(host) || host->len == 0 || memchr(host->str, '\0', host->len))
                return error_set(ret_error, -EBADMSG, "no host for master '%s' in the reply to SENTINEL "
                                 "get-master-addr-by-name", strna(master));
        if (redisreply_port(port, &p) < 0) {
                if (redisreply_is_string(port))
                        return error_set(ret_error, -EBADMSG, "bad port '%.*s' for master '%s'",
                                         (int) MIN(port->len, (size_t) 32), port->str, strna(master));
                return error_set(ret_error, -EBADMSG, "bad port for master '%s'", strna(master));
        }
        h = strndup(host->str, host->len);
        if (!h)
                return -ENOMEM;
        *ret_host = h;
        *ret_port = p;
        return 0;
}

int redisreply_role(const redisReply *r, const char **ret_role) {
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 1 || !redisreply_is_string(r->element[0]))
                return -EBADMSG;
        if (ret_role)
                *ret_role = r->element[0]->str;
        return redisreply_streq(r->element[0], "master") ? 1 : 0;
}

/* hiredis's own functions, but for the array's size. */
static redisReplyObjectFunctions capped_functions;
static void *(*default_create_array)(const redisReadTask *, int);

static void *create_array_capped(const redisReadTask *task, int elements) {
        if (elements < 0 || elements > REDISREPLY_ELEMENTS_MAX)
                return NULL; /* the reader says "out of memory" and stops */
        return default_create_array(task, elements);
}

redisReader *redisreply_reader_new(void) {
        redisReader *r = redisReaderCreate();

        if (!r)
                return NULL;
        /* The defaults are hiredis's statics, reachable only through a
         * reader; every reader gets the same ones. */
        if (!default_create_array) {
                capped_functions = *r->fn;
                default_create_array = r->fn->createArray;
                capped_functions.createArray = create_array_capped;
        }
        r->fn = &capped_functions;
        return r;
}
