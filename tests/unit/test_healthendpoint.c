/* The health endpoint: the one traffic decision (shared with HAProxy's
 * agent-check) for every state, the answer's body, then the real
 * HttpServer fed through socketpairs (routes, methods, HEAD, limits) and
 * on a loopback port (errors that name what went wrong). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>

#include "agentcheck.h"
#include "healthendpoint.h"
#include "httpfeed.h"
#include "httpserver.h"
#include "netaddr.h"

typedef struct Fake {
        State state;
        const char *reason;
} Fake;

static State fake_state_of(void *userdata, const char **ret_reason) {
        Fake *f = userdata;

        *ret_reason = f->reason;
        return f->state;
}

static void event_unrefp(sd_event **e) {
        if (*e)
                sd_event_unref(*e);
}

/* --- pure -------------------------------------------------------------- */

static void test_traffic_every_state(void **state) {
        static const struct {
                State s;
                Traffic t;
                unsigned status;
                const char *word;
        } table[] = {
                { STATE_BOOT, TRAFFIC_STOP, 503, "maint\n" },
                { STATE_CHECKING, TRAFFIC_STOP, 503, "maint\n" },
                { STATE_SERVING, TRAFFIC_SEND, 200, "up ready\n" },
                { STATE_OVERLOADED, TRAFFIC_SEND, 200, "up ready\n" },
                { STATE_HOLDING, TRAFFIC_SEND, 200, "up ready\n" },
                { STATE_DRAINING, TRAFFIC_DRAIN, 503, "drain\n" },
                { STATE_REMEDIATING, TRAFFIC_STOP, 503, "maint\n" },
                { STATE_QUARANTINED, TRAFFIC_STOP, 503, "maint\n" },
                { STATE_MAINTENANCE, TRAFFIC_STOP, 503, "maint\n" },
        };

        assert_int_equal(ELEMENTSOF(table), _STATE_MAX);
        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                assert_int_equal(state_traffic(table[i].s), table[i].t);
                assert_int_equal(healthendpoint_status(table[i].s), table[i].status);
                /* both answers come from the one decision */
                assert_string_equal(agentcheck_word(table[i].s), table[i].word);
                assert_int_equal(state_traffic(table[i].s) == TRAFFIC_SEND, state_is_in_pool(table[i].s));
        }
        /* an unknown state is never routable */
        assert_int_equal(state_traffic(_STATE_MAX), TRAFFIC_STOP);
        assert_int_equal(state_traffic(_STATE_INVALID), TRAFFIC_STOP);
        assert_int_equal(state_traffic((State) 1000), TRAFFIC_STOP);
        assert_int_equal(healthendpoint_status((State) 1000), 503);
}

static void test_body(void **state) {
        char *b = NULL, long_reason[400];
        size_t n;

        assert_int_equal(healthendpoint_body(STATE_SERVING, NULL, false, &b, &n), 0);
        assert_string_equal(b, "serving\n");
        assert_int_equal(n, strlen(b));
        free(b);
        assert_int_equal(healthendpoint_body(STATE_DRAINING, "cpu 97% for 60s", false, &b, &n), 0);
        assert_string_equal(b, "draining: cpu 97% for 60s\n");
        free(b);
        /* one line, whatever an operator typed */
        assert_int_equal(healthendpoint_body(STATE_MAINTENANCE, "a\nb\r\x01\xc3\xa9", false, &b, &n), 0);
        assert_string_equal(b, "maintenance: a?b????\n");
        free(b);
        memset(long_reason, 'x', sizeof long_reason - 1);
        long_reason[sizeof long_reason - 1] = '\0';
        assert_int_equal(healthendpoint_body(STATE_QUARANTINED, long_reason, false, &b, &n), 0);
        assert_int_equal(n, strlen("quarantined: ") + 120 + 1);
        free(b);

        assert_int_equal(healthendpoint_body(STATE_DRAINING, "say \"hi\"", true, &b, &n), 0);
        assert_string_equal(b, "{\"state\":\"DRAINING\",\"reason\":\"say \\\"hi\\\"\",\"traffic\":\"drain\"}\n");
        free(b);
        assert_int_equal(healthendpoint_body(STATE_SERVING, "", true, &b, &n), 0);
        assert_string_equal(b, "{\"state\":\"SERVING\",\"reason\":null,\"traffic\":\"send\"}\n");
        free(b);
        assert_int_equal(healthendpoint_body((State) 99, NULL, false, &b, &n), 0);
        assert_string_equal(b, "unknown\n");
        free(b);
}

/* --- the server, fed through socketpairs ------------------------------- */

static void feed(HttpServer *s, const char *req, char *out, size_t size) {
        assert_true(httpfeed(s, req, strlen(req), out, size) > 0);
}

static void test_server_answers(void **state) {
        _cleanup_(event_unrefp) sd_event *e = NULL;
        _cleanup_(healthendpoint_freep) HealthEndpoint *h = NULL;
        HttpServer *s = NULL;
        Fake f = { .state = STATE_SERVING };
        HttpServerStats st;
        char out[4096];

        assert_int_equal(sd_event_new(&e), 0);
        assert_int_equal(httpserver_new(e, NULL, 0, NULL, &s), 0);
        assert_int_equal(healthendpoint_new(s, "/health", fake_state_of, &f, &h), 0);
        assert_int_equal(httpserver_add_route(s, "/health", NULL, NULL), -EINVAL);

        feed(s, "GET /health HTTP/1.1\r\nHost: t\r\n\r\n", out, sizeof out);
        assert_true(strncmp(out, "HTTP/1.1 200 OK\r\n", 17) == 0);
        assert_non_null(strstr(out, "\r\nCache-Control: no-store\r\n"));
        assert_non_null(strstr(out, "\r\nContent-Length: 8\r\n"));
        assert_non_null(strstr(out, "\r\n\r\nserving\n"));

        f = (Fake) { .state = STATE_DRAINING, .reason = "operator" };
        feed(s, "GET /health HTTP/1.0\r\n\r\n", out, sizeof out);
        assert_true(strncmp(out, "HTTP/1.0 503", 12) == 0 || strncmp(out, "HTTP/1.1 503", 12) == 0);
        assert_non_null(strstr(out, "\r\n\r\ndraining: operator\n"));

        /* HEAD: the same length said, no body sent */
        feed(s, "HEAD /health HTTP/1.1\r\nHost: t\r\n\r\n", out, sizeof out);
        assert_non_null(strstr(out, " 503 "));
        assert_non_null(strstr(out, "\r\nContent-Length: 19\r\n"));
        assert_true(strlen(strstr(out, "\r\n\r\n")) == 4);

        feed(s, "GET /health?format=json HTTP/1.1\r\nHost: t\r\n\r\n", out, sizeof out);
        assert_non_null(strstr(out, "\r\nContent-Type: application/json\r\n"));
        assert_non_null(strstr(out, "{\"state\":\"DRAINING\",\"reason\":\"operator\",\"traffic\":\"drain\"}"));

        feed(s, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", out, sizeof out);
        assert_true(strncmp(out, "HTTP/1.1 404", 12) == 0);
        feed(s, "DELETE /health HTTP/1.1\r\nHost: t\r\n\r\n", out, sizeof out);
        assert_true(strncmp(out, "HTTP/1.1 405", 12) == 0);
        assert_non_null(strstr(out, "\r\nAllow: GET, HEAD\r\n"));
        feed(s, "GET /health HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello", out, sizeof out);
        assert_true(strncmp(out, "HTTP/1.1 413", 12) == 0);
        feed(s, "GET /health HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", out,
             sizeof out);
        assert_true(strncmp(out, "HTTP/1.1 413", 12) == 0);
        /* not HTTP: MHD's own 400, or a close */
        assert_true(httpfeed(s, "\x16\x03\x01\x02\x00", 5, out, sizeof out) >= 0);

        httpserver_stats(s, &st);
        assert_int_equal(st.connections, 0);
        assert_int_equal(st.requests, 8);
        assert_int_equal(st.refused, 0);
}

static void test_server_limits(void **state) {
        _cleanup_(event_unrefp) sd_event *e = NULL;
        _cleanup_(httpserver_freep) HttpServer *s = NULL;
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        struct sockaddr_in b = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK + 1) };
        HttpServerLimits lim = { .connections = 3, .per_address = 2 };
        HttpServerStats st;
        int fds[5][2];

        assert_int_equal(sd_event_new(&e), 0);
        assert_int_equal(httpserver_new(e, NULL, 0, &lim, &s), 0);
        for (size_t i = 0; i < 5; i++)
                assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds[i]), 0);
        assert_int_equal(httpserver_add_connection(s, fds[0][0], (struct sockaddr *) &a, sizeof a), 0);
        assert_int_equal(httpserver_add_connection(s, fds[1][0], (struct sockaddr *) &a, sizeof a), 0);
        /* a third from the same address: over per_address */
        assert_int_equal(httpserver_add_connection(s, fds[2][0], (struct sockaddr *) &a, sizeof a), -ECONNREFUSED);
        assert_int_equal(httpserver_add_connection(s, fds[3][0], (struct sockaddr *) &b, sizeof b), 0);
        /* a fourth in all: over connections */
        assert_int_equal(httpserver_add_connection(s, fds[4][0], (struct sockaddr *) &b, sizeof b), -ECONNREFUSED);
        httpserver_stats(s, &st);
        assert_int_equal(st.connections, 3);
        assert_int_equal(st.refused, 2);

        /* one closes: room again */
        close(fds[0][1]);
        for (int i = 0; i < 50 && st.connections == 3; i++) {
                (void) httpserver_dispatch(s);
                httpserver_stats(s, &st);
        }
        assert_int_equal(st.connections, 2);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds[0]), 0);
        assert_int_equal(httpserver_add_connection(s, fds[0][0], (struct sockaddr *) &a, sizeof a), 0);
        for (size_t i = 0; i < 5; i++)
                if (i != 2 && i != 4)
                        close(fds[i][1]);
        close(fds[2][1]);
        close(fds[4][1]);
}

/* --- on a real port ---------------------------------------------------- */

static void test_listen_errors(void **state) {
        _cleanup_(event_unrefp) sd_event *e = NULL;
        _cleanup_(httpserver_freep) HttpServer *s = NULL;
        HttpServer *t = NULL;

        assert_int_equal(sd_event_new(&e), 0);
        assert_int_equal(httpserver_new(e, "127.0.0.1", 0, NULL, &s), 0);
        assert_true(httpserver_port(s) > 0);
        assert_int_equal(httpserver_new(e, "127.0.0.1", httpserver_port(s), NULL, &t), -EADDRINUSE);
        assert_null(t);
        assert_int_equal(httpserver_new(e, "localhost", 0, NULL, &t), -EINVAL);
        assert_int_equal(httpserver_new(e, "0.0.0.1", 0, NULL, &t), -EADDRNOTAVAIL);
        assert_null(t);
        assert_int_equal(httpserver_new(e, "[::1]", 0, NULL, &t), 0);
        t = httpserver_free(t);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_traffic_every_state),
                cmocka_unit_test(test_body),
                cmocka_unit_test(test_server_answers),
                cmocka_unit_test(test_server_limits),
                cmocka_unit_test(test_listen_errors),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
