/* HAProxy agent-check: the word for every state (pure), then the real
 * listener on a loopback port inside an sd-event loop that the test steps
 * while plain sockets connect and read the reply, as HAProxy does. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>

#include "agentcheck.h"
#include "config.h"

typedef struct Fake {
        State state;
        unsigned asked;
} Fake;

static State fake_state_of(void *userdata) {
        Fake *f = userdata;
        f->asked++;
        return f->state;
}

static void event_unrefp(sd_event **e) {
        if (*e)
                sd_event_unref(*e);
}

/* --- pure -------------------------------------------------------------- */

static void test_words(void **state) {
        static const struct {
                State s;
                const char *word;
        } table[] = {
                { STATE_BOOT, "maint\n" },
                { STATE_CHECKING, "maint\n" },
                { STATE_SERVING, "up ready\n" },
                { STATE_OVERLOADED, "up ready\n" },
                { STATE_HOLDING, "up ready\n" },
                { STATE_DRAINING, "drain\n" },
                { STATE_REMEDIATING, "maint\n" },
                { STATE_QUARANTINED, "maint\n" },
                { STATE_MAINTENANCE, "maint\n" },
        };

        /* Every state has a word, and the table above covers them all. */
        assert_int_equal(ELEMENTSOF(table), _STATE_MAX);
        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                assert_string_equal(agentcheck_word(table[i].s), table[i].word);
        /* Unknown states are never routable. */
        assert_string_equal(agentcheck_word(_STATE_MAX), "maint\n");
        assert_string_equal(agentcheck_word(_STATE_INVALID), "maint\n");
        assert_string_equal(agentcheck_word((State) 1000), "maint\n");
}

/* --- listener ---------------------------------------------------------- */

static int connect_to(int family, const char *ip, uint16_t port) {
        struct sockaddr_storage ss = {};
        socklen_t sl;
        int fd;

        if (family == AF_INET) {
                struct sockaddr_in *in4 = (struct sockaddr_in *) &ss;
                in4->sin_family = AF_INET;
                in4->sin_port = htons(port);
                assert_int_equal(inet_pton(AF_INET, ip, &in4->sin_addr), 1);
                sl = sizeof(*in4);
        } else {
                struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) &ss;
                in6->sin6_family = AF_INET6;
                in6->sin6_port = htons(port);
                assert_int_equal(inet_pton(AF_INET6, ip, &in6->sin6_addr), 1);
                sl = sizeof(*in6);
        }
        fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        /* The kernel completes the handshake from the backlog: connect
         * returns before the agent has accepted. */
        assert_int_equal(connect(fd, (struct sockaddr *) &ss, sl), 0);
        return fd;
}

/* Steps the loop until fd has seen EOF; returns what was read. Bounded:
 * fails after 3 s. */
static void read_reply(sd_event *e, int fd, char *buf, size_t size) {
        size_t n = 0;
        struct timespec t0, t;

        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (;;) {
                assert_true(sd_event_run(e, 10 * USEC_PER_MSEC) >= 0);
                struct pollfd p = { .fd = fd, .events = POLLIN };
                if (poll(&p, 1, 0) > 0) {
                        ssize_t k = recv(fd, buf + n, size - 1 - n, MSG_DONTWAIT);
                        assert_true(k >= 0);
                        if (k == 0)
                                break;
                        n += (size_t) k;
                        assert_true(n < size - 1);
                }
                clock_gettime(CLOCK_MONOTONIC, &t);
                assert_true(t.tv_sec - t0.tv_sec < 3);
        }
        buf[n] = '\0';
}

static void ask(sd_event *e, int family, const char *ip, uint16_t port, char *buf, size_t size) {
        int fd = connect_to(family, ip, port);
        read_reply(e, fd, buf, size);
        close(fd);
}

static void test_listener_states(void **state) {
        _cleanup_(event_unrefp) sd_event *e = NULL;
        _cleanup_(agentcheck_freep) AgentCheck *a = NULL;
        Fake f = { .state = STATE_SERVING };
        char buf[64];
        static const State walk[] = {
                STATE_BOOT, STATE_CHECKING, STATE_SERVING, STATE_OVERLOADED, STATE_HOLDING,
                STATE_DRAINING, STATE_REMEDIATING, STATE_QUARANTINED, STATE_MAINTENANCE, STATE_SERVING,
        };

        assert_int_equal(sd_event_new(&e), 0);
        assert_int_equal(agentcheck_new(e, "127.0.0.1", 0, fake_state_of, &f, &a), 0);
        assert_non_null(a);
        assert_true(agentcheck_port(a) > 0);

        /* The state is asked afresh on every connection. */
        for (size_t i = 0; i < ELEMENTSOF(walk); i++) {
                f.state = walk[i];
                ask(e, AF_INET, "127.0.0.1", agentcheck_port(a), buf, sizeof(buf));
                assert_string_equal(buf, agentcheck_word(walk[i]));
        }
        assert_int_equal(f.asked, ELEMENTSOF(walk));
}

/* HAProxy's agent-send writes a string first: the reply must still arrive
 * (unread input at close would turn the FIN into a RST). */
static void test_listener_agent_send(void **state) {
        _cleanup_(event_unrefp) sd_event *e = NULL;
        _cleanup_(agentcheck_freep) AgentCheck *a = NULL;
        Fake f = { .state = STATE_DRAINING };
        char buf[64];
        int fd;

        assert_int_equal(sd_event_new(&e), 0);
        assert_int_equal(agentcheck_new(e, "127.0.0.1", 0, fake_state_of, &f, &a), 0);
        fd = connect_to(AF_INET, "127.0.0.1", agentcheck_port(a));
        assert_int_equal(send(fd, "hello haproxy\n", 14, MSG_NOSIGNAL), 14);
        read_reply(e, fd, buf, sizeof(buf));
        close(fd);
        assert_string_equal(buf, "drain\n");
}

/* More pending connections than one wakeup accepts: all are answered,
 * over several wakeups. */
static void test_listener_burst(void **state) {
        _cleanup_(event_unrefp) sd_event *e = NULL;
        _cleanup_(agentcheck_freep) AgentCheck *a = NULL;
        Fake f = { .state = STATE_SERVING };
        enum { N = 100 };
        int fds[N];
        char buf[64];

        assert_int_equal(sd_event_new(&e), 0);
        assert_int_equal(agentcheck_new(e, "127.0.0.1", 0, fake_state_of, &f, &a), 0);
        for (size_t i = 0; i < N; i++)
                fds[i] = connect_to(AF_INET, "127.0.0.1", agentcheck_port(a));
        /* One wakeup answers a bounded number, not all of them. */
        assert_true(sd_event_run(e, 100 * USEC_PER_MSEC) > 0);
        assert_true(f.asked > 0 && f.asked < N);
        for (size_t i = 0; i < N; i++) {
                read_reply(e, fds[i], buf, sizeof(buf));
                assert_string_equal(buf, "up ready\n");
                close(fds[i]);
        }
        assert_int_equal(f.asked, N);
}

static void test_listener_ipv6(void **state) {
        _cleanup_(event_unrefp) sd_event *e = NULL;
        _cleanup_(agentcheck_freep) AgentCheck *a = NULL;
        Fake f = { .state = STATE_MAINTENANCE };
        char buf[64];
        int r, probe;

        /* Containers without IPv6 on lo: nothing to test. */
        probe = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe < 0) {
                print_message("no IPv6 sockets here: IPv6 case not run\n");
                return;
        }
        struct sockaddr_in6 lo = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
        r = bind(probe, (struct sockaddr *) &lo, sizeof(lo));
        close(probe);
        if (r < 0) {
                print_message("::1 not available here: IPv6 case not run\n");
                return;
        }

        assert_int_equal(sd_event_new(&e), 0);
        assert_int_equal(agentcheck_new(e, "::1", 0, fake_state_of, &f, &a), 0);
        ask(e, AF_INET6, "::1", agentcheck_port(a), buf, sizeof(buf));
        assert_string_equal(buf, "maint\n");
        a = agentcheck_free(a);

        /* The bracketed form of the same literal. */
        f.state = STATE_SERVING;
        assert_int_equal(agentcheck_new(e, "[::1]", 0, fake_state_of, &f, &a), 0);
        ask(e, AF_INET6, "::1", agentcheck_port(a), buf, sizeof(buf));
        assert_string_equal(buf, "up ready\n");
}

static void test_listener_errors(void **state) {
        _cleanup_(event_unrefp) sd_event *e = NULL;
        _cleanup_(agentcheck_freep) AgentCheck *a = NULL;
        AgentCheck *b = NULL;
        Fake f = { .state = STATE_SERVING };

        assert_int_equal(sd_event_new(&e), 0);
        assert_int_equal(agentcheck_new(e, "localhost", 0, fake_state_of, &f, &b), -EINVAL);
        assert_int_equal(agentcheck_new(e, "127.0.0.256", 0, fake_state_of, &f, &b), -EINVAL);
        assert_int_equal(agentcheck_new(e, "[127.0.0.1", 0, fake_state_of, &f, &b), -EINVAL);
        assert_int_equal(agentcheck_new(e, "127.0.0.1", 0, NULL, &f, &b), -EINVAL);
        assert_int_equal(agentcheck_new(NULL, "127.0.0.1", 0, fake_state_of, &f, &b), -EINVAL);
        assert_null(b);

        /* The port is taken: the second listener fails and leaves ret alone. */
        assert_int_equal(agentcheck_new(e, "127.0.0.1", 0, fake_state_of, &f, &a), 0);
        assert_int_equal(agentcheck_new(e, "127.0.0.1", agentcheck_port(a), fake_state_of, &f, &b), -EADDRINUSE);
        assert_null(b);

        assert_null(agentcheck_free(NULL));
        assert_int_equal(agentcheck_port(NULL), 0);
}

/* Freed while connections wait in the backlog: they are closed, not
 * answered, and nothing leaks. */
static void test_free_with_pending(void **state) {
        _cleanup_(event_unrefp) sd_event *e = NULL;
        AgentCheck *a = NULL;
        Fake f = { .state = STATE_SERVING };
        char buf[16];
        int fd;

        assert_int_equal(sd_event_new(&e), 0);
        assert_int_equal(agentcheck_new(e, "127.0.0.1", 0, fake_state_of, &f, &a), 0);
        fd = connect_to(AF_INET, "127.0.0.1", agentcheck_port(a));
        a = agentcheck_free(a);
        assert_null(a);
        struct pollfd p = { .fd = fd, .events = POLLIN };
        assert_int_equal(poll(&p, 1, 2000), 1);
        assert_true(recv(fd, buf, sizeof(buf), MSG_DONTWAIT) <= 0);
        close(fd);
        assert_int_equal(f.asked, 0);
}

/* --- the address proxies reach ------------------------------------------ */

static void test_reachable(void **state) {
        static const struct {
                const char *listen, *proxy;
                AgentCheckReach want;
        } t[] = {
                { "127.0.0.3", "127.0.0.3", AGENTCHECK_REACH_YES },
                { "0.0.0.0", "127.0.0.3", AGENTCHECK_REACH_YES },
                { "127.0.0.1", "127.0.0.3", AGENTCHECK_REACH_NO }, /* the old default */
                { "::1", "::1", AGENTCHECK_REACH_YES },
                { "[::1]", "::1", AGENTCHECK_REACH_YES },
                { "::", "::1", AGENTCHECK_REACH_YES },
                { "::", "127.0.0.3", AGENTCHECK_REACH_NO },       /* V6ONLY */
                { "0.0.0.0", "::1", AGENTCHECK_REACH_NO },
                { "127.0.0.1", NULL, AGENTCHECK_REACH_UNKNOWN },
                { "0.0.0.0", "", AGENTCHECK_REACH_UNKNOWN },
                { NULL, "127.0.0.3", AGENTCHECK_REACH_NO },
        };

        for (size_t i = 0; i < ELEMENTSOF(t); i++)
                if (agentcheck_reachable(t[i].listen, t[i].proxy) != t[i].want)
                        fail_msg("listen %s, proxy %s: got %d, want %d", strna(t[i].listen), strna(t[i].proxy),
                                 agentcheck_reachable(t[i].listen, t[i].proxy), t[i].want);
}

static Config *config_of(const char *text) {
        Config *c = NULL;
        char *err = NULL;

        if (config_parse_string(text, "t.conf", &c, &err) < 0)
                fail_msg("%s", strna(err));
        c->proxy.agent_check_port = 0; /* any free port */
        return c;
}

static const char *json_str(json_object *o, const char *key) {
        json_object *v;

        return json_object_object_get_ex(o, key, &v) && v ? json_object_get_string(v) : NULL;
}

static void test_from_config(void **state) {
        _cleanup_(event_unrefp) sd_event *e = NULL;
        AgentCheck *a = NULL;
        Fake f = { .state = STATE_DRAINING };
        char buf[64];
        json_object *st, *v;
        Config *c;

        assert_int_equal(sd_event_new(&e), 0);

        /* Not written: the pool's address, where HAProxy connects. */
        c = config_of("[pool]\nredis = redis://127.0.0.1\nname = w\naddress = 127.0.0.3:8080\n"
                      "[proxy]\nagent_check_port = 1\n");
        assert_int_equal(agentcheck_new_from_config(e, c, fake_state_of, &f, &a), 0);
        config_free(c); /* nothing of it is kept */
        assert_null(agentcheck_warning(a));
        ask(e, AF_INET, "127.0.0.3", agentcheck_port(a), buf, sizeof(buf));
        assert_string_equal(buf, "drain\n");
        st = agentcheck_status_json(a);
        assert_string_equal(json_str(st, "address"), "127.0.0.3");
        assert_string_equal(json_str(st, "from"), "[pool] address");
        assert_string_equal(json_str(st, "proxies_connect_to"), "127.0.0.3");
        assert_true(json_object_object_get_ex(st, "reachable", &v) && json_object_get_boolean(v));
        assert_true(json_object_object_get_ex(st, "warning", &v) && v == NULL);
        json_object_put(st);
        a = agentcheck_free(a);

        /* Written elsewhere than where HAProxy connects: a warning, in status too. */
        c = config_of("[pool]\nredis = redis://127.0.0.1\nname = w\naddress = 127.0.0.3:8080\n"
                      "[proxy]\nagent_check_port = 1\nagent_check_address = 127.0.0.1\n");
        assert_int_equal(agentcheck_new_from_config(e, c, fake_state_of, &f, &a), 0);
        config_free(c);
        assert_non_null(agentcheck_warning(a));
        assert_non_null(strstr(agentcheck_warning(a), "server's own address 127.0.0.3 (from [pool] address)"));
        assert_non_null(strstr(agentcheck_warning(a), "agent-addr 127.0.0.1"));
        st = agentcheck_status_json(a);
        assert_true(json_object_object_get_ex(st, "reachable", &v) && !json_object_get_boolean(v));
        assert_string_equal(json_str(st, "warning"), agentcheck_warning(a));
        json_object_put(st);
        a = agentcheck_free(a);

        /* Nothing tells where proxies connect: the wildcard, with a note. */
        c = config_of("[proxy]\nagent_check_port = 1\n");
        assert_int_equal(agentcheck_new_from_config(e, c, fake_state_of, &f, &a), 0);
        config_free(c);
        assert_null(agentcheck_warning(a));
        ask(e, AF_INET, "127.0.0.4", agentcheck_port(a), buf, sizeof(buf));
        assert_string_equal(buf, "drain\n");
        st = agentcheck_status_json(a);
        assert_string_equal(json_str(st, "address"), "0.0.0.0");
        assert_true(json_object_object_get_ex(st, "reachable", &v) && v == NULL);
        assert_non_null(json_str(st, "note"));
        json_object_put(st);
        a = agentcheck_free(a);

        /* A derived address that is not on this host (NAT): the wildcard. */
        c = config_of("[pool]\nredis = redis://127.0.0.1\nname = w\naddress = 0.0.0.1:8080\n"
                      "[proxy]\nagent_check_port = 1\n");
        assert_int_equal(agentcheck_new_from_config(e, c, fake_state_of, &f, &a), 0);
        st = agentcheck_status_json(a);
        assert_string_equal(json_str(st, "address"), "0.0.0.0");
        assert_non_null(strstr(json_str(st, "from"), "not on this host"));
        json_object_put(st);
        a = agentcheck_free(a);
        /* ... but a written one that cannot be bound stops the start */
        free(c->proxy.agent_check_address);
        c->proxy.agent_check_address = strdup("0.0.0.1");
        c->proxy.agent_check_from = AGENT_CHECK_FROM_CONFIG;
        assert_int_equal(agentcheck_new_from_config(e, c, fake_state_of, &f, &a), -EADDRNOTAVAIL);
        assert_null(a);
        config_free(c);

        assert_null(agentcheck_status_json(NULL));
        assert_null(agentcheck_warning(NULL));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_words),
                cmocka_unit_test(test_listener_states),
                cmocka_unit_test(test_listener_agent_send),
                cmocka_unit_test(test_listener_burst),
                cmocka_unit_test(test_listener_ipv6),
                cmocka_unit_test(test_listener_errors),
                cmocka_unit_test(test_free_with_pending),
                cmocka_unit_test(test_reachable),
                cmocka_unit_test(test_from_config),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
