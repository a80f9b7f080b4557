#include <ctype.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "error.h"
#include "parse.h"
#include "redisurl.h"

#define SUN_PATH_MAX (sizeof(((struct sockaddr_un *) NULL)->sun_path) - 1)

static int hexval(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        c = (char) tolower((unsigned char) c);
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        return -1;
}

/* Percent-decoding of n bytes; NULL on a bad escape, a NUL, or OOM. */
static char *percent_decode(const char *s, size_t n) {
        char *d = malloc(n + 1);
        size_t k = 0;

        if (!d)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                if (s[i] == '%') {
                        int hi, lo;
                        if (i + 2 >= n) {
                                free(d);
                                return NULL;
                        }
                        hi = hexval(s[i + 1]);
                        lo = hexval(s[i + 2]);
                        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                                free(d);
                                return NULL;
                        }
                        d[k++] = (char) (hi * 16 + lo);
                        i += 2;
                } else
                        d[k++] = s[i];
        }
        d[k] = '\0';
        return d;
}

/* "host", "host:port", "[v6]", "[v6]:port" in n bytes. */
static int parse_endpoint(const char *s, size_t n, uint16_t default_port, RedisEndpoint *ret) {
        const char *host = s, *colon = NULL;
        size_t hostlen;
        uint16_t port = default_port;
        char *h;

        if (n == 0)
                return -EINVAL;
        if (s[0] == '[') {
                const char *close = memchr(s, ']', n);
                if (!close || close == s + 1)
                        return -EINVAL;
                host = s + 1;
                hostlen = (size_t) (close - s - 1);
                if (close + 1 < s + n) {
                        if (close[1] != ':')
                                return -EINVAL;
                        colon = close + 1;
                }
        } else {
                colon = memchr(s, ':', n);
                hostlen = colon ? (size_t) (colon - s) : n;
                if (colon && memchr(colon + 1, ':', (size_t) (s + n - colon - 1)))
                        return -EINVAL; /* a bare IPv6 address needs brackets */
        }
        if (hostlen == 0)
                return -EINVAL;
        for (size_t i = 0; i < hostlen; i++)
                if (!isalnum((unsigned char) host[i]) && !strchr(".-_:%", host[i]))
                        return -EINVAL;
        if (colon && parse_port_decimal(colon + 1, (size_t) (s + n - colon - 1), &port) < 0)
                return -EINVAL;
        h = strndup(host, hostlen);
        if (!h)
                return -ENOMEM;
        *ret = (RedisEndpoint) { .host = h, .port = port };
        return 0;
}

/* The DB number after "/" or "?db=": empty is 0. */
static int parse_db(const char *s, unsigned *ret) {
        uint64_t v = 0;

        if (*s != '\0' && (parse_u64_digits(s, &v) < 0 || v > 1000))
                return -EINVAL;
        *ret = (unsigned) v;
        return 0;
}

void redis_url_done(RedisUrl *u) {
        if (!u)
                return;
        free(u->user);
        if (u->password)
                explicit_bzero(u->password, strlen(u->password));
        free(u->password);
        free(u->server.host);
        free(u->path);
        for (size_t i = 0; i < u->n_sentinels; i++)
                free(u->sentinels[i].host);
        for (size_t i = 0; i < u->n_seeds; i++)
                free(u->seeds[i].host);
        free(u->master);
        *u = (RedisUrl) {};
}

int redis_url_parse(const char *s, RedisUrl *ret, char **ret_error) {
        _cleanup_(redis_url_done) RedisUrl u = {};
        const char *rest, *end, *at;
        int r;

        if (!s)
                return error_set(ret_error, -EINVAL, "invalid Redis URL: empty");
        for (const char *p = s; *p; p++)
                if ((unsigned char) *p <= ' ' || *p == 0x7f)
                        return error_set(ret_error, -EINVAL, "invalid Redis URL: blanks or control characters");

        if (strncmp(s, "unix://", 7) == 0) {
                /* The path ends at '?': "unix:///run/redis.sock?db=2" is
                 * the socket /run/redis.sock and DB 2, for every reader. */
                const char *path = s + 7, *q = strchrnul(path, '?');
                size_t len = (size_t) (q - path);

                if (path[0] != '/' || len < 2)
                        return error_set(ret_error, -EINVAL, "invalid Redis URL: unix:// needs an absolute path (unix:///run/redis.sock)");
                if (len > SUN_PATH_MAX)
                        return error_set(ret_error, -EINVAL, "invalid Redis URL: the socket path is too long");
                if (*q && (strncmp(q, "?db=", 4) != 0 || parse_db(q + 4, &u.db) < 0 || q[4] == '\0'))
                        return error_set(ret_error, -EINVAL, "invalid Redis URL: only ?db=N (0-1000) may follow the socket path");
                u.kind = REDIS_URL_UNIX;
                u.path = strndup(path, len);
                if (!u.path)
                        return -ENOMEM;
                *ret = u;
                u = (RedisUrl) {};
                return 0;
        }
        if (strncmp(s, "redis://", 8) == 0) {
                u.kind = REDIS_URL_TCP;
                rest = s + 8;
        } else if (strncmp(s, "rediss://", 9) == 0) {
                u.kind = REDIS_URL_TCP;
                u.tls = true;
                rest = s + 9;
        } else if (strncmp(s, "sentinel://", 11) == 0) {
                u.kind = REDIS_URL_SENTINEL;
                rest = s + 11;
        } else if (strncmp(s, "rediss-sentinel://", 18) == 0) {
                u.kind = REDIS_URL_SENTINEL;
                u.tls = true;
                rest = s + 18;
        } else
                return error_set(ret_error, -EINVAL, "invalid Redis URL: use redis://, rediss:// (TLS), unix://, sentinel:// or rediss-sentinel:// (TLS)");

        end = strchrnul(rest, '/');
        at = memrchr(rest, '@', (size_t) (end - rest));
        if (at) {
                const char *colon = memchr(rest, ':', (size_t) (at - rest));
                if (colon) {
                        if (colon > rest) {
                                u.user = percent_decode(rest, (size_t) (colon - rest));
                                if (!u.user)
                                        return error_set(ret_error, -EINVAL, "invalid Redis URL: bad %%-escape in the user name");
                        }
                        u.password = percent_decode(colon + 1, (size_t) (at - colon - 1));
                } else {
                        u.password = percent_decode(rest, (size_t) (at - rest));
                        u.bare_userinfo = true;
                }
                if (!u.password)
                        return error_set(ret_error, -EINVAL, "invalid Redis URL: bad %%-escape in the password");
                if (u.password[0] == '\0') {
                        free(u.password);
                        u.password = NULL;
                }
                rest = at + 1;
        }

        if (u.kind == REDIS_URL_TCP) {
                const char *p = rest;

                /* Several HOST[:PORT]: a Redis Cluster's seed nodes, any
                 * of which can tell where the pool's slot is. */
                do {
                        const char *comma = memchr(p, ',', (size_t) (end - p));
                        const char *stop = comma ? comma : end;

                        if (u.n_seeds >= REDIS_SENTINELS_MAX)
                                return error_set(ret_error, -EINVAL, "invalid Redis URL: too many cluster seeds (at most 16)");
                        r = parse_endpoint(p, (size_t) (stop - p), 6379, &u.seeds[u.n_seeds]);
                        if (r == -ENOMEM)
                                return r;
                        if (r < 0)
                                return error_set(ret_error, -EINVAL, "invalid Redis URL: bad HOST[:PORT]");
                        u.n_seeds++;
                        p = comma ? comma + 1 : end;
                        if (comma && p == end)
                                return error_set(ret_error, -EINVAL, "invalid Redis URL: empty cluster seed address");
                } while (p < end);
                u.server = (RedisEndpoint) { .host = strdup(u.seeds[0].host), .port = u.seeds[0].port };
                if (!u.server.host)
                        return -ENOMEM;
                if (*end == '/' && parse_db(end + 1, &u.db) < 0)
                        return error_set(ret_error, -EINVAL, "invalid Redis URL: bad DB number (0-1000)");
                if (u.n_seeds > 1 && u.db != 0)
                        return error_set(ret_error, -EINVAL, "invalid Redis URL: several hosts are a Redis Cluster's seeds, and a cluster has only DB 0");
        } else {
                const char *p = rest, *name, *name_end;

                while (p < end) {
                        const char *comma = memchr(p, ',', (size_t) (end - p));
                        const char *stop = comma ? comma : end;

                        if (u.n_sentinels >= REDIS_SENTINELS_MAX)
                                return error_set(ret_error, -EINVAL, "invalid Redis URL: too many sentinels (at most 16)");
                        r = parse_endpoint(p, (size_t) (stop - p), 26379, &u.sentinels[u.n_sentinels]);
                        if (r == -ENOMEM)
                                return r;
                        if (r < 0)
                                return error_set(ret_error, -EINVAL, "invalid Redis URL: bad sentinel HOST[:PORT]");
                        u.n_sentinels++;
                        p = comma ? comma + 1 : end;
                        if (comma && p == end)
                                return error_set(ret_error, -EINVAL, "invalid Redis URL: empty sentinel address");
                }
                if (u.n_sentinels == 0)
                        return error_set(ret_error, -EINVAL, "invalid Redis URL: no sentinel address");
                if (*end != '/')
                        return error_set(ret_error, -EINVAL, "invalid Redis URL: no master name (sentinel://HOST:PORT/MASTER)");
                name = end + 1;
                name_end = strchrnul(name, '/');
                if (name_end == name)
                        return error_set(ret_error, -EINVAL, "invalid Redis URL: no master name (sentinel://HOST:PORT/MASTER)");
                for (const char *q = name; q < name_end; q++)
                        if (!isalnum((unsigned char) *q) && !strchr("._-", *q))
                                return error_set(ret_error, -EINVAL, "invalid Redis URL: bad master name");
                u.master = strndup(name, (size_t) (name_end - name));
                if (!u.master)
                        return -ENOMEM;
                if (*name_end == '/' && parse_db(name_end + 1, &u.db) < 0)
                        return error_set(ret_error, -EINVAL, "invalid Redis URL: bad DB number (0-1000)");
        }
        *ret = u;
        u = (RedisUrl) {};
        return 0;
}

char *redis_url_redact(const char *url) {
        const char *rest, *at, *colon;
        char *out = NULL;

        if (!url)
                return NULL;
        rest = strstr(url, "://");
        rest = rest ? rest + 3 : url;
        /* The last '@' anywhere: a password may hold '/' or '@', and a
         * malformed URL is exactly the one we are quoting. Redacting too
         * much is the safe side. */
        at = strrchr(rest, '@');
        if (!at)
                return strdup(url);
        colon = memchr(rest, ':', (size_t) (at - rest));
        if (asprintf(&out, "%.*s<redacted>%s", (int) (colon ? colon + 1 - url : rest - url), url, at) < 0)
                return NULL;
        return out;
}
