/* The scripted Query API server of queryserver.h. */
#include "queryserver.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define QUERY_SERVER_REQUESTS_MAX 32
#define QUERY_SERVER_REQUEST_MAX (64 * 1024)

typedef struct Conn {
        QueryServer *server;
        int fd;
        sd_event_source *io;
        char buf[QUERY_SERVER_REQUEST_MAX + 1];
        size_t len;
} Conn;

struct QueryServer {
        sd_event_source *listen_io;
        int listen_fd;
        char url[64];
        const QueryReply *script;
        size_t n_script;
        char *requests[QUERY_SERVER_REQUESTS_MAX];
        unsigned n_requests;
        Conn *conns[QUERY_SERVER_REQUESTS_MAX];
        unsigned n_conns;
};

static void conn_close(Conn *c) {
        c->io = sd_event_source_disable_unref(c->io);
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -1;
}

/* The request is whole: headers, then Content-Length bytes of body. */
static bool request_complete(const Conn *c) {
        const char *end = strstr(c->buf, "\r\n\r\n"), *cl;
        size_t want = 0;

        if (!end)
                return false;
        cl = strcasestr(c->buf, "\r\nContent-Length:");
        if (cl && cl < end)
                want = strtoul(cl + 17, NULL, 10);
        return c->len >= (size_t) (end + 4 - c->buf) + want;
}

static void answer(Conn *c) {
        QueryServer *s = c->server;
        unsigned i = s->n_requests;
        QueryReply r = i < s->n_script ? s->script[i] : (QueryReply) { .status = 500, .body = "" };
        char head[256];
        const char *body = r.body ? r.body : "";
        ssize_t k;
        int n;

        if (i < QUERY_SERVER_REQUESTS_MAX) {
                s->requests[i] = strndup(c->buf, c->len);
                s->n_requests++;
        }
        if (!r.drop) {
                n = snprintf(head, sizeof head,
                             "HTTP/1.1 %d X\r\nContent-Type: text/xml\r\nContent-Length: %zu\r\n"
                             "x-amzn-RequestId: header-%u\r\nConnection: close\r\n\r\n",
                             r.status, strlen(body), i + 1);
                /* small enough for the socket buffer: a test server may block */
                k = write(c->fd, head, (size_t) n);
                if (k == n && *body)
                        k = write(c->fd, body, strlen(body));
                (void) k;
        }
        conn_close(c);
}

static int on_conn(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        Conn *c = userdata;
        ssize_t k;

        k = read(fd, c->buf + c->len, QUERY_SERVER_REQUEST_MAX - c->len);
        if (k <= 0) {
                conn_close(c);
                return 0;
        }
        c->len += (size_t) k;
        c->buf[c->len] = '\0';
        if (request_complete(c) || c->len == QUERY_SERVER_REQUEST_MAX)
                answer(c);
        return 0;
}

static int on_accept(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        QueryServer *s = userdata;
        Conn *c;
        int cfd;

        cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0)
                return 0;
        if (s->n_conns >= QUERY_SERVER_REQUESTS_MAX || !(c = calloc(1, sizeof *c))) {
                close(cfd);
                return 0;
        }
        c->server = s;
        c->fd = cfd;
        s->conns[s->n_conns++] = c;
        if (sd_event_add_io(sd_event_source_get_event(src), &c->io, cfd, EPOLLIN, on_conn, c) < 0)
                conn_close(c);
        return 0;
}

int query_server_new(sd_event *e, const QueryReply *script, size_t n, QueryServer **ret) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t alen = sizeof a;
        QueryServer *s;
        int k;

        s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->script = script;
        s->n_script = n;
        s->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (s->listen_fd < 0 || bind(s->listen_fd, (struct sockaddr *) &a, sizeof a) < 0 ||
            listen(s->listen_fd, 16) < 0 || getsockname(s->listen_fd, (struct sockaddr *) &a, &alen) < 0) {
                k = -errno;
                query_server_free(s);
                return k;
        }
        snprintf(s->url, sizeof s->url, "http://127.0.0.1:%u/", ntohs(a.sin_port));
        k = sd_event_add_io(e, &s->listen_io, s->listen_fd, EPOLLIN, on_accept, s);
        if (k < 0) {
                query_server_free(s);
                return k;
        }
        *ret = s;
        return 0;
}

QueryServer *query_server_free(QueryServer *s) {
        if (!s)
                return NULL;
        for (unsigned i = 0; i < s->n_conns; i++) {
                conn_close(s->conns[i]);
                free(s->conns[i]);
        }
        for (unsigned i = 0; i < s->n_requests; i++)
                free(s->requests[i]);
        sd_event_source_disable_unref(s->listen_io);
        if (s->listen_fd >= 0)
                close(s->listen_fd);
        free(s);
        return NULL;
}

const char *query_server_url(const QueryServer *s) {
        return s->url;
}

unsigned query_server_n_requests(const QueryServer *s) {
        return s->n_requests;
}

const char *query_server_request(const QueryServer *s, unsigned i) {
        return i < s->n_requests ? s->requests[i] : NULL;
}

const char *query_server_body(const QueryServer *s, unsigned i) {
        const char *r = query_server_request(s, i), *b;

        b = r ? strstr(r, "\r\n\r\n") : NULL;
        return b ? b + 4 : NULL;
}

bool query_server_run_until(sd_event *e, const bool *done, usec_t timeout) {
        struct timespec ts;
        usec_t start, now;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        start = (usec_t) ts.tv_sec * USEC_PER_SEC + (usec_t) ts.tv_nsec / 1000;
        for (now = start; !*done && now - start < timeout;) {
                if (sd_event_run(e, 50 * USEC_PER_MSEC) < 0)
                        return false;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                now = (usec_t) ts.tv_sec * USEC_PER_SEC + (usec_t) ts.tv_nsec / 1000;
        }
        return *done;
}
