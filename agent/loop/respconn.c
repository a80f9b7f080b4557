/* RESP on sd-event with a socket of our own.
 *
 * Host names: libsystemd 252 does not export sd-resolve (no header, no
 * symbols), so a lookup is what sd-resolve does inside: getaddrinfo() on
 * a detached worker thread that posts to an eventfd the loop watches. The
 * loop never waits for it: after resolve_timeout it gives up, and the
 * worker, which shares only a reference-counted Lookup, finishes on its
 * own and frees it. Literal addresses and Unix sockets never start one.
 *
 * TLS: the socket goes through a BIO of our own that sends with
 * MSG_NOSIGNAL, so a peer that hangs up never raises SIGPIPE in a daemon
 * that does not ignore it.
 *
 * Re-entrancy: every callback may free the connection. Each entry from
 * the loop holds a reference for its whole run and stops as soon as the
 * connection is closed. */
#include "respconn.h"
#include "redisreply.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "error.h"
#include "fileio.h"
#include "secret.h"

#define RESPCONN_DEFAULT_TIMEOUT_USEC (5 * USEC_PER_SEC)
#define RESPCONN_KEY_MAX (64 * 1024)

/* Lookup threads still running, given up or not: a DNS server that never
 * answers keeps each one in getaddrinfo for glibc's full timeout, and a
 * client reconnecting meanwhile must not pile up threads without bound.
 * Past the cap a connect fails at once, saying why, and is retried at its
 * owner's pace. */
static atomic_uint lookups_running;

typedef enum RespConnState {
        RESPCONN_STARTING, /* the first loop iteration starts it: no callback from respconn_new() */
        RESPCONN_RESOLVING,
        RESPCONN_CONNECTING,
        RESPCONN_HANDSHAKING,
        RESPCONN_CONNECTED,
        RESPCONN_CLOSED,
} RespConnState;

/* One getaddrinfo() on its worker thread; shared by the loop and the
 * worker, freed by whichever lets go last. */
typedef struct Lookup {
        atomic_int n_ref;
        atomic_bool done;
        int efd;
        char *host;
        char port[8];
        int gai_error, sys_error;
        struct addrinfo *result;
} Lookup;

/* A (P)SUBSCRIBE or (P)UNSUBSCRIBE: Redis answers once per channel. */
typedef enum PendingKind {
        PENDING_PLAIN,
        PENDING_SUBSCRIBE,
} PendingKind;

typedef struct Pending {
        struct Pending *next;
        respconn_reply_t cb;
        void *userdata;
        PendingKind kind;
        int confirmations_left; /* -1: until the subscription count is 0 */
        usec_t queued_at;
} Pending;

struct RespConn {
        unsigned n_ref;
        sd_event *event;
        RespConnState state;
        RespConnHandlers h;

        char *host, *path, *server_name, *peer, *error;
        uint16_t port;
        char address[INET6_ADDRSTRLEN + 8];
        usec_t resolve_timeout, connect_timeout, reply_timeout, connected_at;

        Lookup *lookup;
        sd_event_source *lookup_source;
        struct addrinfo *addrs, *next_addr;
        char *addr_error; /* why the last address failed */

        int fd;
        sd_event_source *io, *timer;
        uint32_t events;

        SSL_CTX *ctx;
        SSL *ssl;
        BIO_METHOD *bio_method;
        bool read_wants_write, write_wants_read;

        char *out;
        size_t out_len, out_sent, out_size;
        redisReader *reader;
        Pending *head, *tail;
};

static void conn_close(RespConn *c, bool tell, const char *format, ...) _printf_(3, 4);

static RespConn *conn_ref(RespConn *c) {
        c->n_ref++;
        return c;
}

static void lookup_unref(Lookup *j) {
        if (!j || atomic_fetch_sub(&j->n_ref, 1) != 1)
                return;
        if (j->result)
                freeaddrinfo(j->result);
        if (j->efd >= 0)
                close(j->efd);
        free(j->host);
        free(j);
}

static void conn_release(RespConn *c) {
        c->lookup_source = sd_event_source_disable_unref(c->lookup_source);
        lookup_unref(TAKE_PTR(c->lookup));
        c->timer = sd_event_source_disable_unref(c->timer);
        c->io = sd_event_source_disable_unref(c->io);
        if (c->ssl) {
                SSL_free(TAKE_PTR(c->ssl)); /* frees its BIO too */
        }
        if (c->bio_method) {
                BIO_meth_free(TAKE_PTR(c->bio_method));
        }
        if (c->fd >= 0)
                close(TAKE_FD(c->fd));
        c->events = 0;
}

static void conn_unref(RespConn *c) {
        if (!c || --c->n_ref > 0)
                return;
        conn_release(c);
        if (c->addrs)
                freeaddrinfo(c->addrs);
        if (c->reader)
                redisReaderFree(c->reader);
        SSL_CTX_free(c->ctx);
        free(c->out);
        free(c->host);
        free(c->path);
        free(c->server_name);
        free(c->peer);
        free(c->error);
        free(c->addr_error);
        free(c);
}

static void set_error_v(RespConn *c, const char *format, va_list ap) _printf_(2, 0);
static void set_error_v(RespConn *c, const char *format, va_list ap) {
        char *msg = NULL, *line = NULL;

        if (vasprintf(&msg, format, ap) < 0)
                msg = NULL;
        if (msg && asprintf(&line, "%s: %s", c->peer, msg) < 0)
                line = NULL;
        free(msg);
        free(c->error);
        c->error = line ? line : strdup("out of memory");
}

/* Closes for good: the socket and every source released, each pending
 * reply heard as a failure, then (tell) the owner's closed handler. */
static void conn_close(RespConn *c, bool tell, const char *format, ...) {
        va_list ap;

        if (c->state == RESPCONN_CLOSED)
                return;
        c->state = RESPCONN_CLOSED;
        va_start(ap, format);
        set_error_v(c, format, ap);
        va_end(ap);
        conn_release(c);

        conn_ref(c);
        while (c->head) {
                Pending *p = c->head;
                c->head = p->next;
                if (!c->head)
                        c->tail = NULL;
                if (p->cb)
                        p->cb(c, NULL, c->error, p->userdata);
                free(p);
        }
        if (tell && c->h.closed)
                c->h.closed(c, c->error, c->h.userdata);
        conn_unref(c);
}

/* ---- the socket's IO mask and the one timer ---- */

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata);
static int on_timer(sd_event_source *s, uint64_t usec, void *userdata);

static int io_want(RespConn *c, uint32_t events) {
        int r;

        if (!c->io) {
                r = sd_event_add_io(c->event, &c->io, c->fd, events, on_io, c);
                if (r < 0)
                        return r;
                (void) sd_event_source_set_description(c->io, "respconn-io");
                c->events = events;
                return 0;
        }
        if (c->events == events)
                return 0;
        c->events = events;
        return sd_event_source_set_io_events(c->io, events);
}

/* The mask once connected: always readable; writable while output waits
 * (unless TLS must read first) or while a TLS read must write. */
static int io_update(RespConn *c) {
        uint32_t events = EPOLLIN;

        if ((c->out_sent < c->out_len && !c->write_wants_read) || c->read_wants_write)
                events |= EPOLLOUT;
        return io_want(c, events);
}

static usec_t loop_now(RespConn *c) {
        uint64_t now = 0;

        if (sd_event_now(c->event, CLOCK_MONOTONIC, &now) < 0)
                return 0;
        return now;
}

static int timer_at(RespConn *c, usec_t when) {
        int r;

        if (!c->timer) {
                r = sd_event_add_time(c->event, &c->timer, CLOCK_MONOTONIC, when, 1, on_timer, c);
                if (r >= 0)
                        (void) sd_event_source_set_description(c->timer, "respconn-timer");
                return r;
        }
        r = sd_event_source_set_time(c->timer, when);
        if (r >= 0)
                r = sd_event_source_set_enabled(c->timer, SD_EVENT_ONESHOT);
        return r;
}

static void timer_stop(RespConn *c) {
        if (c->timer)
                (void) sd_event_source_set_enabled(c->timer, SD_EVENT_OFF);
}

/* Connected: the reply timer follows the oldest command. */
static void reply_timer_update(RespConn *c) {
        if (c->state != RESPCONN_CONNECTED || c->reply_timeout == 0)
                return;
        if (!c->head) {
                timer_stop(c);
                return;
        }
        if (timer_at(c, MAX(c->head->queued_at, c->connected_at) + c->reply_timeout) < 0)
                conn_close(c, true, "cannot arm the reply timer");
}

/* ---- the TLS socket BIO (MSG_NOSIGNAL) ---- */

static int bio_write(BIO *b, const char *data, int len) {
        RespConn *c = BIO_get_data(b);
        ssize_t n;

        BIO_clear_retry_flags(b);
        n = send(c->fd, data, (size_t) len, MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                BIO_set_retry_write(b);
        return (int) n;
}

static int bio_read(BIO *b, char *data, int len) {
        RespConn *c = BIO_get_data(b);
        ssize_t n;

        BIO_clear_retry_flags(b);
        n = recv(c->fd, data, (size_t) len, 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                BIO_set_retry_read(b);
        return (int) n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr) {
        return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_create(BIO *b) {
        BIO_set_init(b, 1);
        return 1;
}

/* ---- TLS ---- */

static const char *tls_verify_reason(RespConn *c, long v, char *buf, size_t size) {
        const char *name = c->server_name ? c->server_name : c->host;

        switch (v) {
        case X509_V_ERR_CERT_HAS_EXPIRED:
                return "server certificate has expired";
        case X509_V_ERR_CERT_NOT_YET_VALID:
                return "server certificate is not valid yet";
        case X509_V_ERR_HOSTNAME_MISMATCH:
        case X509_V_ERR_IP_ADDRESS_MISMATCH:
                snprintf(buf, size, "server certificate does not match the name %s (set tls_server_name?)", name);
                return buf;
        case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
        case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
        case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
        case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
        case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
                snprintf(buf, size, "server certificate not signed by a trusted CA (unknown CA: %s)",
                         X509_verify_cert_error_string(v));
                return buf;
        default:
                snprintf(buf, size, "server certificate refused: %s", X509_verify_cert_error_string(v));
                return buf;
        }
}

/* What an SSL call that failed with SSL_ERROR_SSL or _SYSCALL means. */
static void tls_fail(RespConn *c, int ssl_error, int saved_errno, const char *during) {
        char buf[256], why[320];
        unsigned long e = ERR_peek_last_error();
        long v = c->ssl ? SSL_get_verify_result(c->ssl) : X509_V_OK;

        if (ssl_error == SSL_ERROR_SSL && v != X509_V_OK) {
                ERR_clear_error();
                conn_close(c, true, "TLS: %s", tls_verify_reason(c, v, why, sizeof why));
                return;
        }
        if (e != 0)
                ERR_error_string_n(e, buf, sizeof buf);
        else if (ssl_error == SSL_ERROR_SYSCALL && saved_errno != 0)
                snprintf(buf, sizeof buf, "%s", strerror(saved_errno));
        else
                snprintf(buf, sizeof buf, "connection closed by the peer");
        ERR_clear_error();
        conn_close(c, true, "TLS %s: %s", during, buf);
}

static void conn_established(RespConn *c);

static void tls_handshake(RespConn *c) {
        int r, e;

        ERR_clear_error();
        r = SSL_connect(c->ssl);
        if (r == 1) {
                conn_established(c);
                return;
        }
        e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                if (io_want(c, e == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT) < 0)
                        conn_close(c, true, "cannot watch the socket");
                return;
        }
        tls_fail(c, e, errno, "handshake");
}

static bool is_ip_literal(const char *s) {
        unsigned char buf[sizeof(struct in6_addr)];
        return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

static int tls_start(RespConn *c) {
        const char *name = c->server_name ? c->server_name : c->host;
        BIO *bio;

        c->bio_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "respconn socket");
        if (!c->bio_method || !BIO_meth_set_write(c->bio_method, bio_write) ||
            !BIO_meth_set_read(c->bio_method, bio_read) || !BIO_meth_set_ctrl(c->bio_method, bio_ctrl) ||
            !BIO_meth_set_create(c->bio_method, bio_create))
                return -ENOMEM;
        c->ssl = SSL_new(c->ctx);
        if (!c->ssl)
                return -ENOMEM;
        bio = BIO_new(c->bio_method);
        if (!bio)
                return -ENOMEM;
        BIO_set_data(bio, c);
        SSL_set_bio(c->ssl, bio, bio);
        SSL_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        SSL_set_verify(c->ssl, SSL_VERIFY_PEER, NULL);
        if (is_ip_literal(name)) {
                if (!X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), name))
                        return -EINVAL;
        } else {
                /* SNI and the name the certificate must carry. */
                if (!SSL_set_tlsext_host_name(c->ssl, name) || !SSL_set1_host(c->ssl, name))
                        return -ENOMEM;
                SSL_set_hostflags(c->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        }
        c->state = RESPCONN_HANDSHAKING;
        tls_handshake(c);
        return 0;
}

/* ---- connecting ---- */

static void format_address(const struct sockaddr *sa, char *buf, size_t size) {
        char ip[INET6_ADDRSTRLEN] = "?";

        if (sa->sa_family == AF_INET6) {
                const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *) sa;
                inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof ip);
                snprintf(buf, size, "[%s]:%u", ip, (unsigned) ntohs(s6->sin6_port));
        } else {
                const struct sockaddr_in *s4 = (const struct sockaddr_in *) sa;
                inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof ip);
                snprintf(buf, size, "%s:%u", ip, (unsigned) ntohs(s4->sin_port));
        }
}

/* Why the address being tried failed: kept for the error once none is left. */
static void addr_failed(RespConn *c, const char *why) {
        free(c->addr_error);
        if (asprintf(&c->addr_error, "%s: %s", c->address, why) < 0)
                c->addr_error = NULL;
}

static void connect_next(RespConn *c);

static void conn_established(RespConn *c) {
        c->state = RESPCONN_CONNECTED;
        c->connected_at = loop_now(c);
        timer_stop(c);
        if (io_update(c) < 0) {
                conn_close(c, true, "cannot watch the socket");
                return;
        }
        if (c->h.connected) {
                c->h.connected(c, c->h.userdata);
                if (c->state != RESPCONN_CONNECTED)
                        return;
        }
        reply_timer_update(c);
}

/* The socket is connected (or the connect failed): SO_ERROR says which. */
static void connect_done(RespConn *c) {
        int err = 0, r;
        socklen_t len = sizeof err;

        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                err = errno;
        if (err != 0) {
                addr_failed(c, strerror(err));
                connect_next(c);
                return;
        }
        if (!c->ctx) {
                conn_established(c);
                return;
        }
        r = tls_start(c);
        if (r < 0)
                conn_close(c, true, "TLS: cannot start: %s", strerror(-r));
}

static int connect_socket(RespConn *c, const struct sockaddr *sa, socklen_t len) {
        int one = 1;

        c->fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->fd < 0)
                return negative_errno();
        if (sa->sa_family != AF_UNIX) {
                (void) setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                (void) setsockopt(c->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
        }
        if (connect(c->fd, sa, len) < 0 && errno != EINPROGRESS)
                return negative_errno();
        return 0;
}

/* The next address, in the resolver's order; the last failure names the
 * address and why when none is left. */
static bool startswith_peer(const char *s, const char *peer) {
        size_t n = strlen(peer);
        return strncmp(s, peer, n) == 0 && s[n] == ':' && s[n + 1] == ' ';
}

static void connect_next(RespConn *c) {
        const char *why;
        int r;

        c->io = sd_event_source_disable_unref(c->io);
        if (c->fd >= 0)
                close(TAKE_FD(c->fd));
        while (c->next_addr) {
                struct addrinfo *a = c->next_addr;
                c->next_addr = a->ai_next;
                format_address(a->ai_addr, c->address, sizeof c->address);
                r = connect_socket(c, a->ai_addr, a->ai_addrlen);
                if (r < 0) {
                        addr_failed(c, strerror(-r));
                        if (c->fd >= 0)
                                close(TAKE_FD(c->fd));
                        continue;
                }
                c->state = RESPCONN_CONNECTING;
                if (io_want(c, EPOLLOUT) < 0 || timer_at(c, loop_now(c) + c->connect_timeout) < 0) {
                        conn_close(c, true, "cannot watch the socket");
                        return;
                }
                return;
        }
        /* "127.0.0.1:1: cannot connect: Connection refused", and with a
         * name the address too: "db:1: cannot connect: [::1]:1: ...". */
        why = strna(c->addr_error);
        if (c->addr_error && startswith_peer(c->addr_error, c->peer))
                why += strlen(c->peer) + 2;
        conn_close(c, true, "cannot connect%s: %s", c->addrs && c->addrs->ai_next ? " (each address tried, the last)" : "", why);
}

static void connect_unix(RespConn *c) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int r;

        if (strlen(c->path) >= sizeof sa.sun_path) {
                conn_close(c, true, "socket path too long");
                return;
        }
        memcpy(sa.sun_path, c->path, strlen(c->path) + 1);
        snprintf(c->address, sizeof c->address, "unix");
        r = connect_socket(c, (struct sockaddr *) &sa, sizeof sa);
        if (r < 0) {
                conn_close(c, true, "cannot connect: %s", strerror(-r));
                return;
        }
        c->state = RESPCONN_CONNECTING;
        if (io_want(c, EPOLLOUT) < 0 || timer_at(c, loop_now(c) + c->connect_timeout) < 0)
                conn_close(c, true, "cannot watch the socket");
}

/* ---- resolving ---- */

static const struct addrinfo lookup_hints = {
        .ai_family = AF_UNSPEC,
        .ai_socktype = SOCK_STREAM,
        .ai_protocol = IPPROTO_TCP,
};

static void *lookup_run(void *userdata) {
        Lookup *j = userdata;

        j->gai_error = getaddrinfo(j->host, j->port, &lookup_hints, &j->result);
        if (j->gai_error == EAI_SYSTEM)
                j->sys_error = errno;
        atomic_store(&j->done, true);
        (void) eventfd_write(j->efd, 1);
        lookup_unref(j);
        atomic_fetch_sub(&lookups_running, 1);
        return NULL;
}

static int on_lookup(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        RespConn *c = userdata;
        Lookup *j = c->lookup;

        if (!atomic_load(&j->done))
                return 0;
        c->lookup_source = sd_event_source_disable_unref(c->lookup_source);
        timer_stop(c);
        conn_ref(c);
        if (j->gai_error != 0)
                conn_close(c, true, "cannot resolve %s: %s", c->host,
                           j->gai_error == EAI_SYSTEM ? strerror(j->sys_error) : gai_strerror(j->gai_error));
        else {
                c->addrs = TAKE_PTR(j->result);
                c->next_addr = c->addrs;
                lookup_unref(TAKE_PTR(c->lookup));
                connect_next(c);
        }
        conn_unref(c);
        return 0;
}

static int lookup_start(RespConn *c) {
        Lookup *j;
        pthread_attr_t attr;
        pthread_t thread;
        sigset_t all, saved;
        int r;

        if (atomic_load(&lookups_running) >= RESPCONN_LOOKUPS_MAX)
                return -EBUSY;
        j = calloc(1, sizeof *j);
        if (!j)
                return -ENOMEM;
        atomic_init(&j->n_ref, 1);
        j->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        j->host = strdup(c->host);
        snprintf(j->port, sizeof j->port, "%u", (unsigned) c->port);
        if (j->efd < 0 || !j->host) {
                r = j->efd < 0 ? negative_errno() : -ENOMEM;
                lookup_unref(j);
                return r;
        }
        c->lookup = j;
        r = sd_event_add_io(c->event, &c->lookup_source, j->efd, EPOLLIN, on_lookup, c);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(c->lookup_source, "respconn-lookup");
        r = timer_at(c, loop_now(c) + c->resolve_timeout);
        if (r < 0)
                return r;

        /* The worker takes its own reference, and no signal: the loop's
         * signal sources expect them blocked everywhere. */
        atomic_fetch_add(&j->n_ref, 1);
        atomic_fetch_add(&lookups_running, 1);
        r = -pthread_attr_init(&attr);
        if (r < 0) {
                lookup_unref(j);
                atomic_fetch_sub(&lookups_running, 1);
                return r;
        }
        (void) pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        sigfillset(&all);
        (void) pthread_sigmask(SIG_SETMASK, &all, &saved);
        r = -pthread_create(&thread, &attr, lookup_run, j);
        (void) pthread_sigmask(SIG_SETMASK, &saved, NULL);
        pthread_attr_destroy(&attr);
        if (r < 0) {
                lookup_unref(j);
                atomic_fetch_sub(&lookups_running, 1);
        }
        return r;
}

static int conn_start(RespConn *c);

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        RespConn *c = userdata;
        unsigned long long ms;
        char why[64];
        int r;

        conn_ref(c);
        switch (c->state) {
        case RESPCONN_STARTING:
                r = conn_start(c);
                if (r == -EBUSY)
                        conn_close(c, true, "cannot resolve %s: %u earlier lookups still wait for the DNS server",
                                   c->host, (unsigned) RESPCONN_LOOKUPS_MAX);
                else if (r < 0)
                        conn_close(c, true, "cannot start connecting: %s", strerror(-r));
                break;
        case RESPCONN_RESOLVING:
                ms = c->resolve_timeout / USEC_PER_MSEC;
                conn_close(c, true, "cannot resolve %s: no answer within %llums", c->host, ms);
                break;
        case RESPCONN_CONNECTING:
                snprintf(why, sizeof why, "no connection within %llums",
                         (unsigned long long) (c->connect_timeout / USEC_PER_MSEC));
                addr_failed(c, why);
                if (c->path)
                        conn_close(c, true, "cannot connect: no connection within %llums",
                                   (unsigned long long) (c->connect_timeout / USEC_PER_MSEC));
                else
                        connect_next(c);
                break;
        case RESPCONN_HANDSHAKING:
                conn_close(c, true, "TLS handshake with %s: no answer within %llums", c->address,
                           (unsigned long long) (c->connect_timeout / USEC_PER_MSEC));
                break;
        case RESPCONN_CONNECTED:
                conn_close(c, true, "no reply within %llums",
                           (unsigned long long) (c->reply_timeout / USEC_PER_MSEC));
                break;
        case RESPCONN_CLOSED:
                break;
        }
        conn_unref(c);
        return 0;
}

/* ---- connected: out and in ---- */

static void out_flush(RespConn *c) {
        c->write_wants_read = false;
        while (c->state == RESPCONN_CONNECTED && c->out_sent < c->out_len) {
                size_t left = c->out_len - c->out_sent;
                ssize_t n;

                if (c->ssl) {
                        int r, e;

                        ERR_clear_error();
                        r = SSL_write(c->ssl, c->out + c->out_sent, (int) MIN(left, (size_t) INT_MAX));
                        if (r <= 0) {
                                e = SSL_get_error(c->ssl, r);
                                if (e == SSL_ERROR_WANT_WRITE)
                                        return;
                                if (e == SSL_ERROR_WANT_READ) {
                                        c->write_wants_read = true;
                                        return;
                                }
                                tls_fail(c, e, errno, "write");
                                return;
                        }
                        n = r;
                } else {
                        n = send(c->fd, c->out + c->out_sent, left, MSG_NOSIGNAL);
                        if (n < 0) {
                                if (errno == EAGAIN || errno == EINTR)
                                        return;
                                conn_close(c, true, "write: %s", strerror(errno));
                                return;
                        }
                }
                c->out_sent += (size_t) n;
        }
        if (c->out_sent == c->out_len)
                c->out_sent = c->out_len = 0;
}

static bool reply_is(const redisReply *r, const char *const *names) {
        const redisReply *kind;

        if (r->type != REDIS_REPLY_ARRAY || r->elements < 1)
                return false;
        kind = r->element[0];
        if (kind->type != REDIS_REPLY_STRING && kind->type != REDIS_REPLY_STATUS)
                return false;
        for (; *names; names++)
                if (strcasecmp(kind->str, *names) == 0)
                        return true;
        return false;
}

static const char *const push_kinds[] = {"message", "pmessage", NULL};
static const char *const subscribe_kinds[] = {"subscribe", "psubscribe", "unsubscribe", "punsubscribe", NULL};

/* One reply: a pub/sub message goes to the push handler; a subscription
 * confirmation to the (P)(UN)SUBSCRIBE that asked for it, the command
 * done with its last channel; anything else to the oldest command. */
static void reply_dispatch(RespConn *c, redisReply *r) {
        Pending *p = c->head;
        respconn_reply_t cb;
        void *userdata;
        bool done = true;

        if (reply_is(r, push_kinds) || (reply_is(r, subscribe_kinds) && (!p || p->kind != PENDING_SUBSCRIBE))) {
                if (c->h.push)
                        c->h.push(c, r, c->h.userdata);
                return;
        }
        if (!p) {
                conn_close(c, true, "a reply nobody asked for");
                return;
        }
        if (p->kind == PENDING_SUBSCRIBE) {
                if (p->confirmations_left > 0)
                        done = --p->confirmations_left == 0;
                else
                        done = r->elements >= 3 && r->element[2]->type == REDIS_REPLY_INTEGER &&
                               r->element[2]->integer == 0;
        }
        /* Off the queue before its callback runs: the callback may close
         * the connection, which must not hear this command again. */
        cb = TAKE_PTR(p->cb);
        userdata = p->userdata;
        if (done) {
                c->head = p->next;
                if (!c->head)
                        c->tail = NULL;
                free(p);
        }
        if (cb)
                cb(c, r, NULL, userdata);
        if (done && c->state == RESPCONN_CONNECTED)
                reply_timer_update(c);
}

static void in_feed(RespConn *c, const char *buf, size_t n) {
        void *reply;

        if (redisReaderFeed(c->reader, buf, n) != REDIS_OK) {
                conn_close(c, true, "cannot take a reply: %s", c->reader->errstr);
                return;
        }
        while (c->state == RESPCONN_CONNECTED) {
                reply = NULL;
                if (redisReaderGetReply(c->reader, &reply) != REDIS_OK) {
                        conn_close(c, true, "protocol error: %s", c->reader->errstr);
                        return;
                }
                if (!reply)
                        return;
                reply_dispatch(c, reply);
                freeReplyObject(reply);
        }
}

static void in_read(RespConn *c) {
        char buf[16384];

        c->read_wants_write = false;
        while (c->state == RESPCONN_CONNECTED) {
                ssize_t n;

                if (c->ssl) {
                        int r, e;

                        ERR_clear_error();
                        r = SSL_read(c->ssl, buf, sizeof buf);
                        if (r <= 0) {
                                e = SSL_get_error(c->ssl, r);
                                if (e == SSL_ERROR_WANT_READ)
                                        return;
                                if (e == SSL_ERROR_WANT_WRITE) {
                                        c->read_wants_write = true;
                                        return;
                                }
                                if (e == SSL_ERROR_ZERO_RETURN)
                                        conn_close(c, true, "connection closed by the server");
                                else
                                        tls_fail(c, e, errno, "read");
                                return;
                        }
                        n = r;
                } else {
                        n = recv(c->fd, buf, sizeof buf, 0);
                        if (n < 0) {
                                if (errno == EAGAIN || errno == EINTR)
                                        return;
                                conn_close(c, true, "read: %s", strerror(errno));
                                return;
                        }
                        if (n == 0) {
                                conn_close(c, true, "connection closed by the server");
                                return;
                        }
                }
                in_feed(c, buf, (size_t) n);
        }
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        RespConn *c = userdata;

        conn_ref(c);
        switch (c->state) {
        case RESPCONN_CONNECTING:
                connect_done(c);
                break;
        case RESPCONN_HANDSHAKING:
                tls_handshake(c);
                break;
        case RESPCONN_CONNECTED:
                /* Read first: what the server said before it hung up counts. */
                in_read(c);
                out_flush(c);
                if (c->state == RESPCONN_CONNECTED && io_update(c) < 0)
                        conn_close(c, true, "cannot watch the socket");
                break;
        default:
                break;
        }
        conn_unref(c);
        return 0;
}

/* ---- the public side ---- */

int respconn_tls_new(const char *ca_file, const char *cert_file, const char *key_file, SSL_CTX **ret,
                     char **ret_error) {
        SSL_CTX *ctx = NULL;
        char *key = NULL, buf[256];
        BIO *bio = NULL;
        EVP_PKEY *pkey = NULL;
        int r;

        if (!cert_file != !key_file)
                return error_set(ret_error, -EINVAL, "a client certificate needs its key, and a key its certificate");
        ERR_clear_error();
        ctx = SSL_CTX_new(TLS_client_method());
        if (!ctx)
                return error_set(ret_error, -ENOMEM, "cannot make a TLS context");
        (void) SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        if (ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1
                    : SSL_CTX_set_default_verify_paths(ctx) != 1) {
                ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
                r = error_set(ret_error, -EINVAL, "%s: cannot load the CA certificates: %s",
                              ca_file ? ca_file : "the system store", buf);
                goto fail;
        }
        if (cert_file) {
                if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
                        ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
                        r = error_set(ret_error, -EINVAL, "%s: cannot load the client certificate: %s", cert_file,
                                      buf);
                        goto fail;
                }
                r = secret_file_read_all(key_file, RESPCONN_KEY_MAX, &key, ret_error);
                if (r < 0)
                        goto fail;
                bio = BIO_new_mem_buf(key, -1);
                pkey = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
                if (!pkey || SSL_CTX_use_PrivateKey(ctx, pkey) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
                        ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
                        r = error_set(ret_error, -EINVAL, "%s: not the client certificate's key: %s", key_file,
                                      buf);
                        goto fail;
                }
        }
        EVP_PKEY_free(pkey);
        BIO_free(bio);
        if (key)
                free_wiped(key, strlen(key));
        ERR_clear_error();
        *ret = ctx;
        return 0;
fail:
        EVP_PKEY_free(pkey);
        BIO_free(bio);
        if (key)
                free_wiped(key, strlen(key));
        SSL_CTX_free(ctx);
        ERR_clear_error();
        return r;
}

static int conn_start(RespConn *c) {
        struct addrinfo hints = lookup_hints;

        if (c->path) {
                connect_unix(c);
                return 0;
        }
        /* A literal address is parsed here and now: no lookup, no thread. */
        hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
        char port[8];
        snprintf(port, sizeof port, "%u", (unsigned) c->port);
        if (getaddrinfo(c->host, port, &hints, &c->addrs) == 0) {
                c->next_addr = c->addrs;
                connect_next(c);
                return 0;
        }
        c->addrs = NULL;
        c->state = RESPCONN_RESOLVING;
        return lookup_start(c);
}

int respconn_new(sd_event *e, const RespConnOptions *o, const RespConnHandlers *h, RespConn **ret,
                 char **ret_error) {
        RespConn *c;
        int r;

        if (!e || !o || !ret || (!o->path == !o->host))
                return error_set(ret_error, -EINVAL, "a Redis connection needs a host or a socket path");
        c = calloc(1, sizeof *c);
        if (!c)
                return error_set(ret_error, -ENOMEM, "out of memory");
        c->n_ref = 1;
        c->fd = -1;
        c->event = e;
        c->h = h ? *h : (RespConnHandlers) {};
        c->port = o->port;
        c->resolve_timeout = o->resolve_timeout ? o->resolve_timeout : RESPCONN_DEFAULT_TIMEOUT_USEC;
        c->connect_timeout = o->connect_timeout ? o->connect_timeout : RESPCONN_DEFAULT_TIMEOUT_USEC;
        c->reply_timeout = o->reply_timeout;
        c->reader = redisreply_reader_new();
        if (o->path) {
                c->path = strdup(o->path);
                c->peer = strdup(o->path);
        } else {
                c->host = strdup(o->host);
                if (asprintf(&c->peer, strchr(o->host, ':') ? "[%s]:%u" : "%s:%u", o->host, (unsigned) o->port) < 0)
                        c->peer = NULL;
        }
        if (o->tls_server_name)
                c->server_name = strdup(o->tls_server_name);
        if (!c->reader || !c->peer || (o->path ? !c->path : !c->host) || (o->tls_server_name && !c->server_name)) {
                conn_unref(c);
                return error_set(ret_error, -ENOMEM, "out of memory");
        }
        if (o->tls) {
                if (o->path) {
                        conn_unref(c);
                        return error_set(ret_error, -EINVAL, "TLS over a Unix socket is not supported");
                }
                SSL_CTX_up_ref(o->tls);
                c->ctx = o->tls;
        }
        /* Started from the loop, so that even a failure at once is heard
         * through closed, never from inside this call. */
        c->state = RESPCONN_STARTING;
        r = timer_at(c, 0);
        if (r < 0) {
                conn_unref(c);
                return error_set(ret_error, r, "%s: cannot start connecting: %s", o->path ? o->path : o->host,
                                 strerror(-r));
        }
        *ret = c;
        return 0;
}

RespConn *respconn_free(RespConn *c) {
        if (!c)
                return NULL;
        conn_close(c, false, "connection closed");
        c->h = (RespConnHandlers) {};
        conn_unref(c);
        return NULL;
}

int respconn_command(RespConn *c, int argc, const char *const *argv, const size_t *argvlen, respconn_reply_t cb,
                     void *userdata) {
        char *cmd = NULL;
        Pending *p;
        int len;

        if (!c || argc < 1 || !argv)
                return -EINVAL;
        if (c->state == RESPCONN_CLOSED)
                return -ENOTCONN;
        p = calloc(1, sizeof *p);
        if (!p)
                return -ENOMEM;
        len = redisFormatCommandArgv(&cmd, argc, (const char **) argv, argvlen);
        if (len < 0) {
                free(p);
                return -ENOMEM;
        }
        if (c->out_len + (size_t) len > c->out_size) {
                size_t size = MAX(c->out_size * 2, c->out_len + (size_t) len);
                char *out = realloc(c->out, size);
                if (!out) {
                        redisFreeCommand(cmd);
                        free(p);
                        return -ENOMEM;
                }
                c->out = out;
                c->out_size = size;
        }
        memcpy(c->out + c->out_len, cmd, (size_t) len);
        c->out_len += (size_t) len;
        redisFreeCommand(cmd);

        p->cb = cb;
        p->userdata = userdata;
        p->queued_at = loop_now(c);
        if (strcasecmp(argv[0], "subscribe") == 0 || strcasecmp(argv[0], "psubscribe") == 0 ||
            strcasecmp(argv[0], "unsubscribe") == 0 || strcasecmp(argv[0], "punsubscribe") == 0) {
                p->kind = PENDING_SUBSCRIBE;
                p->confirmations_left = argc > 1 ? argc - 1 : -1;
        }
        if (c->tail)
                c->tail->next = p;
        else
                c->head = p;
        c->tail = p;

        if (c->state == RESPCONN_CONNECTED) {
                if (c->head == p)
                        reply_timer_update(c);
                if (io_update(c) < 0) {
                        conn_close(c, true, "cannot watch the socket");
                        return 0; /* cb heard the failure */
                }
        }
        return 0;
}

bool respconn_is_connected(const RespConn *c) {
        return c && c->state == RESPCONN_CONNECTED;
}

const char *respconn_peer(const RespConn *c) {
        return c->peer;
}

const char *respconn_address(const RespConn *c) {
        return c->address;
}

const char *respconn_error(const RespConn *c) {
        return c->error;
}
