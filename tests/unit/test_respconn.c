/* respconn.c against real redis-server processes this test starts on
 * 127.0.0.1 (plain TCP, a Unix socket, TLS with certificates it makes
 * with the openssl CLI): commands and pipelined replies in order, IPv6,
 * host names looked up off the loop (and again on each connect), each
 * failure said in one clear line (refused, NXDOMAIN, resolver timeout,
 * unknown CA, expired, name mismatch, a peer that never answers), a TLS
 * restart followed. Throughout, a 5 ms ticker measures the loop: no step
 * may hold it.
 *
 * getaddrinfo is wrapped (-Wl,--wrap): names under .test are answered
 * here (a hang, NXDOMAIN, an address the test moves, local.test for
 * 127.0.0.1), so no lookup ever leaves the machine and none depends on the
 * machine's /etc/hosts (a minimal Debian root has no "local.test" in it);
 * every other name goes to the real one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>

#include "respconn.h"
#include "testutil.h"

/* ---- the wrapped resolver ---- */

int __real_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                       struct addrinfo **res);
int __wrap_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                       struct addrinfo **res);

/* "moving.test" resolves to these, in order (written only while no
 * lookup runs). */
static const char *moving_addresses = "127.0.0.1";

int __wrap_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                       struct addrinfo **res) {
        struct addrinfo numeric;

        if (!node || !strstr(node, ".test"))
                return __real_getaddrinfo(node, service, hints, res);
        if (hints && (hints->ai_flags & AI_NUMERICHOST))
                return EAI_NONAME;
        if (streq(node, "hang.test")) {
                usleep(800 * 1000);
                return EAI_AGAIN;
        }
        if (streq(node, "local.test")) {
                numeric = *hints;
                numeric.ai_flags |= AI_NUMERICHOST | AI_NUMERICSERV;
                return __real_getaddrinfo("127.0.0.1", service, &numeric, res);
        }
        if (streq(node, "moving.test")) {
                /* Each address parsed numerically, chained in order. */
                char list[128], *save = NULL;
                struct addrinfo *head = NULL, **tail = &head;

                snprintf(list, sizeof list, "%s", moving_addresses);
                numeric = *hints;
                numeric.ai_flags |= AI_NUMERICHOST | AI_NUMERICSERV;
                for (char *a = strtok_r(list, ",", &save); a; a = strtok_r(NULL, ",", &save)) {
                        struct addrinfo *one = NULL;
                        assert_int_equal(__real_getaddrinfo(a, service, &numeric, &one), 0);
                        *tail = one;
                        while (*tail)
                                tail = &(*tail)->ai_next;
                }
                *res = head;
                return 0;
        }
        return EAI_NONAME; /* nx.test and anything else under .test */
}

/* ---- the loop, watched ---- */

typedef struct Watch {
        sd_event *event;
        sd_event_source *ticker;
        usec_t last_tick, max_gap;
} Watch;

static usec_t now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (usec_t) ts.tv_sec * USEC_PER_SEC + (usec_t) ts.tv_nsec / 1000;
}

static int on_tick(sd_event_source *s, uint64_t usec, void *userdata) {
        Watch *w = userdata;
        usec_t now = now_usec();

        if (w->last_tick && now - w->last_tick > w->max_gap)
                w->max_gap = now - w->last_tick;
        w->last_tick = now;
        assert_int_equal(sd_event_source_set_time_relative(s, 5 * USEC_PER_MSEC), 0);
        assert_int_equal(sd_event_source_set_enabled(s, SD_EVENT_ONESHOT), 0);
        return 0;
}

/* Run until *flag or timeout; fails on timeout. */
static void run_until(Watch *w, const bool *flag, usec_t timeout) {
        usec_t end = now_usec() + timeout;

        while (!*flag) {
                assert_true(now_usec() < end);
                assert_true(sd_event_run(w->event, 50 * USEC_PER_MSEC) >= 0);
        }
}

/* ---- redis-server and certificates ---- */

typedef struct Fixture {
        char *dir;
        Watch w;
        pid_t plain, tls, tls_clients, v6;
        uint16_t plain_port, tls_port, tls_clients_port, v6_port;
        char *socket_path;
} Fixture;

static uint16_t free_port(const char *ip) {
        struct sockaddr_in sa = {.sin_family = AF_INET};
        socklen_t len = sizeof sa;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        assert_true(fd >= 0);
        assert_int_equal(inet_pton(AF_INET, ip, &sa.sin_addr), 1);
        assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof sa), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *) &sa, &len), 0);
        close(fd);
        return ntohs(sa.sin_port);
}

static void sh(const char *dir, const char *cmd) {
        char *full = NULL;
        assert_true(asprintf(&full, "cd '%s' && { %s; } >/dev/null 2>&1", dir, cmd) > 0);
        if (system(full) != 0)
                fail_msg("command failed: %s", cmd);
        free(full);
}

/* A CA, and certificates it signs: name.crt/name.key for CN and SANs. */
static void make_ca(const char *dir, const char *ca) {
        char cmd[512];
        snprintf(cmd, sizeof cmd,
                 "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout %s.key "
                 "-out %s.crt -subj /CN=%s -days 2",
                 ca, ca, ca);
        sh(dir, cmd);
}

static void make_cert(const char *dir, const char *ca, const char *name, const char *san, int days) {
        char cmd[1024];
        snprintf(cmd, sizeof cmd,
                 "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout %s.key -out %s.csr "
                 "-subj /CN=%s && printf 'subjectAltName=%s\\n' > %s.ext && "
                 "openssl x509 -req -in %s.csr -CA %s.crt -CAkey %s.key -CAcreateserial -days %d -out %s.crt "
                 "-extfile %s.ext && chmod 600 %s.key",
                 name, name, name, san, name, name, ca, ca, days, name, name, name);
        sh(dir, cmd);
}

/* Wait for a TCP port (or a Unix socket) to accept. */
static void wait_ready(uint16_t port, const char *path) {
        for (int i = 0; i < 500; i++) {
                int fd, r;
                if (path) {
                        struct sockaddr_un sa = {.sun_family = AF_UNIX};
                        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
                        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                        r = connect(fd, (struct sockaddr *) &sa, sizeof sa);
                } else {
                        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
                        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
                        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                        r = connect(fd, (struct sockaddr *) &sa, sizeof sa);
                }
                close(fd);
                if (r == 0)
                        return;
                usleep(10 * 1000);
        }
        fail_msg("redis-server did not come up");
}

static void wait_ready_v6(uint16_t port) {
        for (int i = 0; i < 500; i++) {
                struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
                int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0), r;

                sa.sin6_addr = in6addr_loopback;
                r = connect(fd, (struct sockaddr *) &sa, sizeof sa);
                close(fd);
                if (r == 0)
                        return;
                usleep(10 * 1000);
        }
        fail_msg("redis-server on ::1 did not come up");
}

/* redis-server with these extra arguments (NULL-terminated). */
static pid_t redis_start(const char *dir, const char *const *args) {
        const char *argv[40] = {"redis-server", "--save", "", "--appendonly", "no", "--dir", dir, "--logfile",
                                "redis.log"};
        size_t n = 9;
        pid_t pid;

        for (; *args; args++) {
                assert_true(n < ELEMENTSOF(argv) - 1);
                argv[n++] = *args;
        }
        argv[n] = NULL;
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                /* Never outlive the test, never hold its output open. */
                int null = open("/dev/null", O_RDWR | O_CLOEXEC);
                (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
                dup2(null, STDOUT_FILENO);
                dup2(null, STDERR_FILENO);
                execvp("redis-server", (char **) argv);
                _exit(127);
        }
        return pid;
}

static void redis_stop(pid_t *pid) {
        if (*pid <= 0)
                return;
        kill(*pid, SIGTERM);
        waitpid(*pid, NULL, 0);
        *pid = 0;
}

static char *path_in(const Fixture *f, const char *name) {
        char *p = NULL;
        assert_true(asprintf(&p, "%s/%s", f->dir, name) > 0);
        return p;
}

static pid_t tls_redis(Fixture *f, uint16_t port, const char *cert, bool auth_clients) {
        char ports[8], crt[256], key[256], ca[256];
        snprintf(ports, sizeof ports, "%u", port);
        snprintf(crt, sizeof crt, "%s/%s.crt", f->dir, cert);
        snprintf(key, sizeof key, "%s/%s.key", f->dir, cert);
        snprintf(ca, sizeof ca, "%s/ca.crt", f->dir);
        const char *args[] = {"--port", "0", "--bind", "127.0.0.1", "--tls-port", ports, "--tls-cert-file", crt,
                              "--tls-key-file", key, "--tls-ca-cert-file", ca, "--tls-auth-clients",
                              auth_clients ? "yes" : "no", NULL};
        pid_t pid;

        pid = redis_start(f->dir, args);
        wait_ready(port, NULL);
        return pid;
}

static int setup(void **state) {
        Fixture *f = calloc(1, sizeof *f);
        char ports[8], v6ports[8];

        assert_non_null(f);
        signal(SIGPIPE, SIG_IGN);
        f->dir = tmp_dir();
        make_ca(f->dir, "ca");
        make_ca(f->dir, "otherca");
        make_cert(f->dir, "ca", "server", "DNS:local.test,IP:127.0.0.1", 2);
        make_cert(f->dir, "ca", "expired", "DNS:local.test,IP:127.0.0.1", -1);
        make_cert(f->dir, "ca", "client", "DNS:client", 2);
        make_cert(f->dir, "otherca", "stranger", "DNS:local.test,IP:127.0.0.1", 2);

        f->plain_port = free_port("127.0.0.1");
        f->socket_path = path_in(f, "redis.sock");
        snprintf(ports, sizeof ports, "%u", f->plain_port);
        const char *plain[] = {"--port", ports, "--bind", "127.0.0.1", "--unixsocket", f->socket_path, NULL};
        f->plain = redis_start(f->dir, plain);
        wait_ready(f->plain_port, NULL);
        wait_ready(0, f->socket_path);

        f->v6_port = free_port("127.0.0.1");
        snprintf(v6ports, sizeof v6ports, "%u", f->v6_port);
        const char *v6[] = {"--port", v6ports, "--bind", "::1", "--logfile", "redis-v6.log", NULL};
        f->v6 = redis_start(f->dir, v6);

        f->tls_port = free_port("127.0.0.1");
        f->tls = tls_redis(f, f->tls_port, "server", false);
        f->tls_clients_port = free_port("127.0.0.1");
        f->tls_clients = tls_redis(f, f->tls_clients_port, "server", true);

        assert_int_equal(sd_event_new(&f->w.event), 0);
        assert_int_equal(sd_event_add_time_relative(f->w.event, &f->w.ticker, CLOCK_MONOTONIC, 5 * USEC_PER_MSEC,
                                                    1, on_tick, &f->w),
                         0);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        Fixture *f = *state;

        redis_stop(&f->plain);
        redis_stop(&f->v6);
        redis_stop(&f->tls);
        redis_stop(&f->tls_clients);
        sd_event_source_unref(f->w.ticker);
        sd_event_unref(f->w.event);
        rm_rf(f->dir);
        free(f->dir);
        free(f->socket_path);
        free(f);
        return 0;
}

/* ---- a connection's story, recorded ---- */

#define REPLIES_MAX 256

typedef struct Story {
        RespConn *conn;
        bool connected, closed, all_replied;
        char *closed_error;
        size_t n_replies, expected;
        char *replies[REPLIES_MAX]; /* each as text: "+OK", "$v", ":1", "-ERR..", "!error" */
        size_t n_pushes;
        char *last_push;
} Story;

/* Handlers run from the loop only, never inside respconn_new(): the
 * owner has its pointer by then. */
static void on_connected(RespConn *c, void *userdata) {
        Story *s = userdata;
        assert_ptr_equal(s->conn, c);
        s->connected = true;
}

static void on_closed(RespConn *c, const char *error, void *userdata) {
        Story *s = userdata;
        assert_ptr_equal(s->conn, c);
        assert_false(s->closed);
        s->closed = true;
        s->closed_error = strdup(error);
}

static void on_push(RespConn *c, const redisReply *r, void *userdata) {
        Story *s = userdata;
        s->n_pushes++;
        free(s->last_push);
        s->last_push = r->elements >= 3 && r->element[2]->str ? strdup(r->element[2]->str) : strdup("?");
}

static void on_reply(RespConn *c, const redisReply *r, const char *error, void *userdata) {
        Story *s = userdata;
        char *text = NULL;

        assert_true(s->n_replies < REPLIES_MAX);
        if (!r)
                assert_true(asprintf(&text, "!%s", error) > 0);
        else if (r->type == REDIS_REPLY_STATUS)
                assert_true(asprintf(&text, "+%s", r->str) > 0);
        else if (r->type == REDIS_REPLY_ERROR)
                assert_true(asprintf(&text, "-%s", r->str) > 0);
        else if (r->type == REDIS_REPLY_STRING)
                assert_true(asprintf(&text, "$%s", r->str) > 0);
        else if (r->type == REDIS_REPLY_INTEGER)
                assert_true(asprintf(&text, ":%lld", r->integer) > 0);
        else if (r->type == REDIS_REPLY_NIL)
                text = strdup("nil");
        else
                assert_true(asprintf(&text, "*%zu", r->elements) > 0);
        s->replies[s->n_replies++] = text;
        if (s->n_replies == s->expected)
                s->all_replied = true;
}

static void story_done(Story *s) {
        respconn_free(s->conn);
        for (size_t i = 0; i < s->n_replies; i++)
                free(s->replies[i]);
        free(s->closed_error);
        free(s->last_push);
        *s = (Story) {};
}

static void story_open(Fixture *f, Story *s, const RespConnOptions *o) {
        const RespConnHandlers h = {on_connected, on_closed, on_push, s};
        char *error = NULL;

        usec_t start = now_usec();

        *s = (Story) {};
        assert_int_equal(respconn_new(f->w.event, o, &h, &s->conn, &error), 0);
        assert_null(error);
        /* An owner calls it from the loop: it must not wait for anything. */
        if (now_usec() - start > 50 * USEC_PER_MSEC)
                fail_msg("respconn_new() took %llums", (unsigned long long) ((now_usec() - start) / USEC_PER_MSEC));
}

static void cmd(Story *s, const char *a0, const char *a1, const char *a2) {
        const char *argv[] = {a0, a1, a2};
        int argc = a2 ? 3 : a1 ? 2 : 1;
        s->expected++;
        s->all_replied = false;
        assert_int_equal(respconn_command(s->conn, argc, argv, NULL, on_reply, s), 0);
}

/* Connect, PING, expect PONG. */
static void expect_ping(Fixture *f, const RespConnOptions *o) {
        Story s;

        story_open(f, &s, o);
        cmd(&s, "PING", NULL, NULL);
        run_until(&f->w, &s.all_replied, 5 * USEC_PER_SEC);
        assert_true(s.connected);
        assert_string_equal(s.replies[0], "+PONG");
        story_done(&s);
}

/* Connect and expect the closed handler, its error holding want. */
static void expect_closed(Fixture *f, const RespConnOptions *o, const char *want) {
        Story s;

        story_open(f, &s, o);
        cmd(&s, "PING", NULL, NULL);
        run_until(&f->w, &s.closed, 5 * USEC_PER_SEC);
        assert_false(s.connected);
        assert_int_equal(s.n_replies, 1);
        assert_true(s.replies[0][0] == '!'); /* the pending command heard the failure first */
        if (!strstr(s.closed_error, want))
                fail_msg("error \"%s\" does not say \"%s\"", s.closed_error, want);
        assert_string_equal(respconn_error(s.conn), s.closed_error);
        story_done(&s);
}

/* From now on: what the test itself does between runs is no gap. */
static void watch_reset(Fixture *f) {
        f->w.last_tick = 0;
        f->w.max_gap = 0;
}

static void assert_loop_free(Fixture *f) {
        if (f->w.max_gap > 100 * USEC_PER_MSEC)
                fail_msg("the loop was held for %llums", (unsigned long long) (f->w.max_gap / USEC_PER_MSEC));
}

static SSL_CTX *tls_ctx(Fixture *f, const char *ca, const char *cert, const char *key) {
        char *ca_path = ca ? path_in(f, ca) : NULL, *cert_path = cert ? path_in(f, cert) : NULL;
        char *key_path = key ? path_in(f, key) : NULL, *error = NULL;
        SSL_CTX *ctx = NULL;

        if (respconn_tls_new(ca_path, cert_path, key_path, &ctx, &error) < 0)
                fail_msg("%s", error);
        free(ca_path);
        free(cert_path);
        free(key_path);
        return ctx;
}

/* ---- the tests ---- */

static void test_pipelined_replies_in_order(void **state) {
        Fixture *f = *state;
        RespConnOptions o = {.host = "127.0.0.1", .port = f->plain_port};
        char key[32], value[32];
        Story s;

        watch_reset(f);
        story_open(f, &s, &o);
        /* Queued before the connection is up, answered in order. */
        for (int i = 0; i < 60; i++) {
                snprintf(key, sizeof key, "k%d", i);
                snprintf(value, sizeof value, "v%d", i);
                cmd(&s, "SET", key, value);
                cmd(&s, "GET", key, NULL);
        }
        cmd(&s, "INCR", "counter", NULL);
        cmd(&s, "NOSUCHCOMMAND", NULL, NULL);
        run_until(&f->w, &s.all_replied, 5 * USEC_PER_SEC);
        assert_true(s.connected);
        for (int i = 0; i < 60; i++) {
                snprintf(value, sizeof value, "$v%d", i);
                assert_string_equal(s.replies[2 * i], "+OK");
                assert_string_equal(s.replies[2 * i + 1], value);
        }
        assert_string_equal(s.replies[120], ":1");
        assert_true(strncmp(s.replies[121], "-ERR unknown command", 20) == 0);
        assert_string_equal(respconn_address(s.conn), respconn_peer(s.conn));
        story_done(&s);
        assert_loop_free(f);
}

static void test_binary_and_pubsub(void **state) {
        Fixture *f = *state;
        RespConnOptions o = {.host = "127.0.0.1", .port = f->plain_port};
        Story sub, pub;
        const char *argv[] = {"SET", "bin", "a\0b\r\n"};
        const size_t len[] = {3, 3, 5};

        story_open(f, &sub, &o);
        cmd(&sub, "SUBSCRIBE", "ch1", "ch2");
        run_until(&f->w, &sub.all_replied, 5 * USEC_PER_SEC);
        assert_string_equal(sub.replies[0], "*3"); /* the first confirmation */

        story_open(f, &pub, &o);
        pub.expected = 1;
        assert_int_equal(respconn_command(pub.conn, 3, argv, len, on_reply, &pub), 0);
        cmd(&pub, "STRLEN", "bin", NULL);
        cmd(&pub, "PUBLISH", "ch2", "hello");
        run_until(&f->w, &pub.all_replied, 5 * USEC_PER_SEC);
        assert_string_equal(pub.replies[1], ":5");
        assert_string_equal(pub.replies[2], ":1");
        while (sub.n_pushes == 0)
                assert_true(sd_event_run(f->w.event, 50 * USEC_PER_MSEC) >= 0);
        assert_string_equal(sub.last_push, "hello");
        /* After both confirmations, a command's reply is its own. */
        cmd(&sub, "UNSUBSCRIBE", NULL, NULL);
        run_until(&f->w, &sub.all_replied, 5 * USEC_PER_SEC);
        assert_string_equal(sub.replies[1], "*3");
        cmd(&sub, "PING", NULL, NULL);
        run_until(&f->w, &sub.all_replied, 5 * USEC_PER_SEC);
        assert_string_equal(sub.replies[2], "+PONG");
        story_done(&pub);
        story_done(&sub);
}

static void test_unix_socket(void **state) {
        Fixture *f = *state;
        RespConnOptions o = {.path = f->socket_path};

        expect_ping(f, &o);
}

static void test_ipv6_literal(void **state) {
        Fixture *f = *state;
        RespConnOptions o = {.host = "::1", .port = f->v6_port};
        char peer[32];
        Story s;

        wait_ready_v6(f->v6_port);
        snprintf(peer, sizeof peer, "[::1]:%u", f->v6_port);
        story_open(f, &s, &o);
        assert_string_equal(respconn_peer(s.conn), peer);
        story_done(&s);
        expect_ping(f, &o);
}

static void test_host_name_resolved_off_the_loop(void **state) {
        Fixture *f = *state;
        RespConnOptions o = {.host = "local.test", .port = f->plain_port};

        watch_reset(f);
        expect_ping(f, &o);
        assert_loop_free(f);
}

static void test_connect_refused(void **state) {
        Fixture *f = *state;
        RespConnOptions o = {.host = "127.0.0.1", .port = free_port("127.0.0.1")};
        char want[64];

        snprintf(want, sizeof want, "127.0.0.1:%u: cannot connect: Connection refused", o.port);
        expect_closed(f, &o, want);
}

static void test_unix_socket_missing(void **state) {
        Fixture *f = *state;
        char *path = path_in(f, "nobody-here.sock");
        RespConnOptions o = {.path = path};

        /* connect() fails at once: still heard from the loop */
        expect_closed(f, &o, "nobody-here.sock: cannot connect: No such file or directory");
        free(path);
}

static void test_nxdomain(void **state) {
        Fixture *f = *state;
        RespConnOptions o = {.host = "nx.test", .port = 6379};

        expect_closed(f, &o, "nx.test:6379: cannot resolve nx.test: Name or service not known");
}

static void test_resolver_hangs(void **state) {
        Fixture *f = *state;
        RespConnOptions o = {.host = "hang.test", .port = 6379, .resolve_timeout = 200 * USEC_PER_MSEC};

        watch_reset(f);
        expect_closed(f, &o, "hang.test:6379: cannot resolve hang.test: no answer within 200ms");
        assert_loop_free(f);
        usleep(900 * 1000); /* the abandoned lookup ends and frees itself */
}

/* A DNS server that never answers: each given-up lookup keeps its thread
 * until glibc gives up too. Past RESPCONN_LOOKUPS_MAX of them a connect
 * fails at once, saying why; once they end, lookups start again. */
static void test_lookup_threads_capped(void **state) {
        Fixture *f = *state;
        RespConnOptions o = {.host = "hang.test", .port = 6379, .resolve_timeout = 100 * USEC_PER_MSEC};
        Story s[RESPCONN_LOOKUPS_MAX];

        watch_reset(f);
        for (unsigned i = 0; i < RESPCONN_LOOKUPS_MAX; i++)
                story_open(f, &s[i], &o);
        for (unsigned i = 0; i < RESPCONN_LOOKUPS_MAX; i++) {
                run_until(&f->w, &s[i].closed, 5 * USEC_PER_SEC);
                if (!strstr(s[i].closed_error, "no answer within 100ms"))
                        fail_msg("lookup %u: %s", i, s[i].closed_error);
                story_done(&s[i]);
        }
        /* all 8 threads still sleep in the resolver (800 ms each) */
        expect_closed(f, &o, "hang.test:6379: cannot resolve hang.test: 8 earlier lookups still wait for the DNS server");
        assert_loop_free(f);
        usleep(900 * 1000); /* the abandoned lookups end and free themselves */
        expect_ping(f, &(RespConnOptions) {.host = "local.test", .port = f->plain_port});
}

static void test_dns_change_followed(void **state) {
        Fixture *f = *state;
        RespConnOptions o = {.host = "moving.test", .port = f->plain_port};
        char want[96];

        /* Only 127.0.0.1 listens: 127.0.0.2 refuses. */
        moving_addresses = "127.0.0.2";
        snprintf(want, sizeof want, "cannot connect: 127.0.0.2:%u: Connection refused", f->plain_port);
        expect_closed(f, &o, want);
        /* Failover moved the name: the next connection looks it up again. */
        moving_addresses = "127.0.0.1";
        expect_ping(f, &o);
        /* Several addresses: each in order until one answers. */
        moving_addresses = "127.0.0.2,127.0.0.3,127.0.0.1";
        expect_ping(f, &o);
        moving_addresses = "127.0.0.2,127.0.0.3";
        snprintf(want, sizeof want, "each address tried, the last): 127.0.0.3:%u: Connection refused",
                 f->plain_port);
        expect_closed(f, &o, want);
        moving_addresses = "127.0.0.1";
}

static void test_tls_commands(void **state) {
        Fixture *f = *state;
        SSL_CTX *ctx = tls_ctx(f, "ca.crt", NULL, NULL);
        RespConnOptions by_name = {.host = "local.test", .port = f->tls_port, .tls = ctx};
        RespConnOptions by_ip = {.host = "127.0.0.1", .port = f->tls_port, .tls = ctx};
        RespConnOptions other_name = {
                .host = "127.0.0.1", .port = f->tls_port, .tls = ctx, .tls_server_name = "local.test"};
        Story s;

        watch_reset(f);
        story_open(f, &s, &by_name);
        for (int i = 0; i < 100; i++)
                cmd(&s, "INCR", "tls-counter", NULL);
        run_until(&f->w, &s.all_replied, 5 * USEC_PER_SEC);
        assert_string_equal(s.replies[99], ":100");
        story_done(&s);
        expect_ping(f, &by_ip);
        expect_ping(f, &other_name);
        SSL_CTX_free(ctx);
        assert_loop_free(f);
}

static void test_tls_unknown_ca(void **state) {
        Fixture *f = *state;
        SSL_CTX *ctx = tls_ctx(f, "otherca.crt", NULL, NULL);
        RespConnOptions o = {.host = "local.test", .port = f->tls_port, .tls = ctx};

        expect_closed(f, &o, "TLS: server certificate not signed by a trusted CA (unknown CA");
        SSL_CTX_free(ctx);
}

static void test_tls_name_mismatch(void **state) {
        Fixture *f = *state;
        SSL_CTX *ctx = tls_ctx(f, "ca.crt", NULL, NULL);
        RespConnOptions o = {.host = "127.0.0.1", .port = f->tls_port, .tls = ctx, .tls_server_name = "redis.test"};

        expect_closed(f, &o, "TLS: server certificate does not match the name redis.test");
        SSL_CTX_free(ctx);
}

static void test_tls_expired(void **state) {
        Fixture *f = *state;
        SSL_CTX *ctx = tls_ctx(f, "ca.crt", NULL, NULL);
        uint16_t port = free_port("127.0.0.1");
        pid_t pid = tls_redis(f, port, "expired", false);
        RespConnOptions o = {.host = "local.test", .port = port, .tls = ctx};

        expect_closed(f, &o, "TLS: server certificate has expired");
        redis_stop(&pid);
        SSL_CTX_free(ctx);
}

static void test_tls_client_certificate(void **state) {
        Fixture *f = *state;
        SSL_CTX *with = tls_ctx(f, "ca.crt", "client.crt", "client.key");
        SSL_CTX *without = tls_ctx(f, "ca.crt", NULL, NULL), *ctx = NULL;
        RespConnOptions o = {.host = "local.test", .port = f->tls_clients_port, .tls = with};
        char *key = path_in(f, "client.key"), *cert = path_in(f, "client.crt"), *error = NULL;
        Story s;

        expect_ping(f, &o);
        /* Without one, the server hangs up (TLS 1.3: after the handshake). */
        o.tls = without;
        story_open(f, &s, &o);
        cmd(&s, "PING", NULL, NULL);
        run_until(&f->w, &s.closed, 5 * USEC_PER_SEC);
        assert_true(s.replies[0][0] == '!');
        story_done(&s);
        /* A key others may read is refused, and says so. */
        assert_int_equal(chmod(key, 0644), 0);
        assert_true(respconn_tls_new(NULL, cert, key, &ctx, &error) < 0);
        assert_null(ctx);
        assert_non_null(strstr(error, "client.key"));
        free(error);
        error = NULL;
        assert_int_equal(respconn_tls_new(NULL, cert, NULL, &ctx, &error), -EINVAL);
        free(error);
        assert_int_equal(chmod(key, 0600), 0);
        free(key);
        free(cert);
        SSL_CTX_free(with);
        SSL_CTX_free(without);
}

static void test_tls_restart_followed(void **state) {
        Fixture *f = *state;
        SSL_CTX *ctx = tls_ctx(f, "ca.crt", NULL, NULL);
        RespConnOptions o = {.host = "local.test", .port = f->tls_port, .tls = ctx};
        Story s;

        story_open(f, &s, &o);
        cmd(&s, "PING", NULL, NULL);
        run_until(&f->w, &s.all_replied, 5 * USEC_PER_SEC);
        redis_stop(&f->tls);
        run_until(&f->w, &s.closed, 5 * USEC_PER_SEC);
        assert_non_null(strstr(s.closed_error, "local.test:"));
        story_done(&s);
        expect_closed(f, &o, "Connection refused");
        /* Back on the same port: the next connection works. */
        f->tls = tls_redis(f, f->tls_port, "server", false);
        expect_ping(f, &o);
        SSL_CTX_free(ctx);
}

/* A listener that never accepts: the kernel completes the TCP handshake,
 * then nothing is ever said. */
static int silent_listener(uint16_t *ret_port) {
        struct sockaddr_in sa = {.sin_family = AF_INET};
        socklen_t len = sizeof sa;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof sa), 0);
        assert_int_equal(listen(fd, 16), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *) &sa, &len), 0);
        *ret_port = ntohs(sa.sin_port);
        return fd;
}

static void test_silent_peer(void **state) {
        Fixture *f = *state;
        SSL_CTX *ctx = tls_ctx(f, "ca.crt", NULL, NULL);
        uint16_t port;
        int fd = silent_listener(&port);
        RespConnOptions tls = {.host = "127.0.0.1", .port = port, .tls = ctx, .connect_timeout = 200 * USEC_PER_MSEC};
        RespConnOptions plain = {.host = "127.0.0.1", .port = port, .reply_timeout = 200 * USEC_PER_MSEC};
        char want[96];
        Story s;

        watch_reset(f);
        snprintf(want, sizeof want, "TLS handshake with 127.0.0.1:%u: no answer within 200ms", port);
        expect_closed(f, &tls, want);
        /* Plain TCP connects (the kernel accepted), then no reply comes. */
        story_open(f, &s, &plain);
        cmd(&s, "PING", NULL, NULL);
        run_until(&f->w, &s.closed, 5 * USEC_PER_SEC);
        assert_true(s.connected);
        snprintf(want, sizeof want, "!127.0.0.1:%u: no reply within 200ms", port);
        assert_string_equal(s.replies[0], want);
        story_done(&s);
        assert_loop_free(f);
        close(fd);
        SSL_CTX_free(ctx);
}

/* Freeing from inside a reply callback: the rest hear "closed" once. */
static void on_reply_then_free(RespConn *c, const redisReply *r, const char *error, void *userdata) {
        Story *s = userdata;
        on_reply(c, r, error, userdata);
        if (s->n_replies == 1)
                s->conn = respconn_free(s->conn);
}

static void test_free_from_callback(void **state) {
        Fixture *f = *state;
        RespConnOptions o = {.host = "127.0.0.1", .port = f->plain_port};
        const char *ping[] = {"PING"};
        char closed[64];
        Story s;

        story_open(f, &s, &o);
        s.expected = 3;
        for (int i = 0; i < 3; i++)
                assert_int_equal(respconn_command(s.conn, 1, ping, NULL, on_reply_then_free, &s), 0);
        run_until(&f->w, &s.all_replied, 5 * USEC_PER_SEC);
        assert_string_equal(s.replies[0], "+PONG");
        snprintf(closed, sizeof closed, "!127.0.0.1:%u: connection closed", f->plain_port);
        assert_string_equal(s.replies[1], closed);
        assert_string_equal(s.replies[2], closed);
        story_done(&s);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_pipelined_replies_in_order),
                cmocka_unit_test(test_binary_and_pubsub),
                cmocka_unit_test(test_unix_socket),
                cmocka_unit_test(test_ipv6_literal),
                cmocka_unit_test(test_host_name_resolved_off_the_loop),
                cmocka_unit_test(test_connect_refused),
                cmocka_unit_test(test_unix_socket_missing),
                cmocka_unit_test(test_nxdomain),
                cmocka_unit_test(test_resolver_hangs),
                cmocka_unit_test(test_lookup_threads_capped),
                cmocka_unit_test(test_dns_change_followed),
                cmocka_unit_test(test_tls_commands),
                cmocka_unit_test(test_tls_unknown_ca),
                cmocka_unit_test(test_tls_name_mismatch),
                cmocka_unit_test(test_tls_expired),
                cmocka_unit_test(test_tls_client_certificate),
                cmocka_unit_test(test_tls_restart_followed),
                cmocka_unit_test(test_silent_peer),
                cmocka_unit_test(test_free_from_callback),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
