/* Redis Cluster's rules, read the way Redis applies them: see
 * rediscluster.h. */
#include "rediscluster.h"

#include "numparse.h"
#include "redisreply.h"

/* CRC16-CCITT (XMODEM: polynomial 0x1021, initial 0), bit by bit: a key
 * is hashed once per command, a table would buy nothing. */
static uint16_t crc16_xmodem(const char *buf, size_t len) {
        uint16_t crc = 0;

        for (size_t i = 0; i < len; i++) {
                crc ^= (uint16_t) ((uint8_t) buf[i] << 8);
                for (int b = 0; b < 8; b++)
                        crc = (uint16_t) (crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1);
        }
        return crc;
}

unsigned redis_cluster_keyslot(const char *key, size_t len) {
        const char *open = memchr(key, '{', len);

        if (open) {
                size_t rest = len - (size_t) (open - key) - 1;
                const char *close = memchr(open + 1, '}', rest);

                /* "{}" hashes the whole key, as Redis does */
                if (close && close > open + 1)
                        return crc16_xmodem(open + 1, (size_t) (close - open - 1)) % REDIS_CLUSTER_SLOTS;
        }
        return crc16_xmodem(key, len) % REDIS_CLUSTER_SLOTS;
}

void redis_cluster_redirect_done(RedisClusterRedirect *r) {
        free(r->host);
        *r = (RedisClusterRedirect) {};
}

static bool starts_word(const char *s, const char *word) {
        size_t n = strlen(word);
        return strncmp(s, word, n) == 0 && (s[n] == ' ' || s[n] == '\0');
}

/* "SLOT HOST:PORT": the host is everything before the last ':' (an IPv6
 * address keeps its colons, Redis sends it without brackets), empty when
 * the node has no endpoint to give. */
static int redirect_target(const char *s, RedisClusterRedirect *ret) {
        const char *space = strchr(s, ' '), *colon;
        uint16_t port;
        long long slot;
        char *end = NULL;

        if (!space || space == s)
                return -EBADMSG;
        errno = 0;
        slot = strtoll(s, &end, 10);
        if (errno != 0 || end != space || slot < 0 || slot >= (long long) REDIS_CLUSTER_SLOTS || s[0] == '-' ||
            s[0] == '+')
                return -EBADMSG;
        s = space + 1;
        colon = strrchr(s, ':');
        if (!colon || parse_port_decimal(colon + 1, strlen(colon + 1), &port) < 0)
                return -EBADMSG;
        if (colon > s) {
                const char *h = s, *e = colon;

                if (*h == '[' && e[-1] == ']') {
                        h++;
                        e--;
                }
                if (e <= h || memchr(h, ' ', (size_t) (e - h)))
                        return -EBADMSG;
                ret->host = strndup(h, (size_t) (e - h));
                if (!ret->host)
                        return -ENOMEM;
        }
        ret->slot = (unsigned) slot;
        ret->port = port;
        return 0;
}

int redis_cluster_redirect_parse(const char *error, RedisClusterRedirect *ret) {
        RedisClusterRedirect r = {};
        int k;

        if (!error)
                goto done;
        if (starts_word(error, "TRYAGAIN"))
                r.verdict = REDIS_CLUSTER_TRYAGAIN;
        else if (starts_word(error, "CLUSTERDOWN"))
                r.verdict = REDIS_CLUSTER_DOWN;
        else if (starts_word(error, "MOVED") || starts_word(error, "ASK")) {
                bool moved = error[0] == 'M';
                const char *rest = error + (moved ? 5 : 3); /* at the ' ' or the end */

                k = redirect_target(*rest ? rest + 1 : rest, &r);
                if (k < 0)
                        return k;
                r.verdict = moved ? REDIS_CLUSTER_MOVED : REDIS_CLUSTER_ASK;
        }
done:
        *ret = r;
        return 0;
}

/* One node of a CLUSTER SLOTS range: {host, port, id, [metadata]}. host
 * "" or "?" (no endpoint known, Redis 7's preferred-endpoint rules) gives
 * NULL: the node asked. */
static int slot_node(const redisReply *n, char **ret_host, uint16_t *ret_port) {
        long long port;
        char *host = NULL;

        if (!n || n->type != REDIS_REPLY_ARRAY || n->elements < 2 || !redisreply_is_string(n->element[0]) ||
            redisreply_integer(n->element[1], &port) < 0 || port < 1 || port > UINT16_MAX)
                return -EBADMSG;
        /* a host name or address: printable, no blanks (nor a NUL that
         * would cut it short) */
        for (size_t i = 0; i < n->element[0]->len; i++)
                if ((unsigned char) n->element[0]->str[i] <= ' ' || (unsigned char) n->element[0]->str[i] >= 0x7f)
                        return -EBADMSG;
        if (n->element[0]->len > 0 && !redisreply_streq(n->element[0], "?")) {
                host = redisreply_strdup(n->element[0]);
                if (!host)
                        return -ENOMEM;
        }
        *ret_host = host;
        *ret_port = (uint16_t) port;
        return 0;
}

/* A range {start, end, master, replicas...}; -EBADMSG for another shape. */
static int slot_range(const redisReply *e, long long *ret_start, long long *ret_end) {
        if (!e || e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            redisreply_integer(e->element[0], ret_start) < 0 || redisreply_integer(e->element[1], ret_end) < 0 ||
            *ret_start < 0 || *ret_end < *ret_start || *ret_end >= (long long) REDIS_CLUSTER_SLOTS)
                return -EBADMSG;
        return 0;
}

int redis_cluster_slot_owner(const redisReply *slots, unsigned slot, char **ret_host, uint16_t *ret_port) {
        if (!slots || slots->type != REDIS_REPLY_ARRAY)
                return -EBADMSG;
        for (size_t i = 0; i < slots->elements; i++) {
                const redisReply *e = slots->element[i];
                long long start, end;
                int r;

                r = slot_range(e, &start, &end);
                if (r < 0)
                        return r;
                if ((long long) slot < start || (long long) slot > end)
                        continue;
                return slot_node(e->element[2], ret_host, ret_port);
        }
        return -ENOENT;
}

void redis_cluster_nodes_free(RedisEndpoint *nodes, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(nodes[i].host);
        free(nodes);
}

static bool nodes_have(const RedisEndpoint *nodes, size_t n, const char *host, uint16_t port) {
        for (size_t i = 0; i < n; i++)
                if (nodes[i].port == port && streq(nodes[i].host, host))
                        return true;
        return false;
}

int redis_cluster_slot_nodes(const redisReply *slots, RedisEndpoint **ret, size_t *ret_n) {
        RedisEndpoint *nodes = NULL;
        size_t n = 0;
        int r;

        if (!slots || slots->type != REDIS_REPLY_ARRAY)
                return -EBADMSG;
        for (size_t i = 0; i < slots->elements; i++) {
                const redisReply *e = slots->element[i];
                long long start, end;

                r = slot_range(e, &start, &end);
                if (r < 0)
                        goto fail;
                for (size_t j = 2; j < e->elements; j++) {
                        char *host = NULL;
                        uint16_t port;
                        RedisEndpoint *grown;

                        r = slot_node(e->element[j], &host, &port);
                        if (r < 0)
                                goto fail;
                        if (!host || nodes_have(nodes, n, host, port)) {
                                free(host);
                                continue;
                        }
                        grown = reallocarray(nodes, n + 1, sizeof *nodes);
                        if (!grown) {
                                free(host);
                                r = -ENOMEM;
                                goto fail;
                        }
                        nodes = grown;
                        nodes[n++] = (RedisEndpoint) { .host = host, .port = port };
                }
        }
        *ret = nodes;
        *ret_n = n;
        return 0;
fail:
        redis_cluster_nodes_free(nodes, n);
        return r;
}
