/* What the HTTP listener parses: the input is what a client sends on one
 * connection (request line, headers, maybe a body and more requests),
 * handed to libmicrohttpd through a socketpair with MHD_add_connection()
 * (the server built with no listening socket), with the health
 * endpoint's real route on "/" and on "/health?"-less "/healthz". The
 * server is run until it closes the connection, bounded. */
#include "fuzz.h"
#include "healthendpoint.h"
#include "httpserver.h"
#include "../unit/httpfeed.h"

static State fuzz_state_of(void *userdata, const char **ret_reason) {
        const size_t *size = userdata;

        *ret_reason = "fuzz \x01 reason";
        return (State) (*size % (_STATE_MAX + 1)); /* one past the end: an unknown state too */
}

static void check_answer(const char *out, ssize_t n) {
        const char *end;

        if (n <= 0)
                return; /* closed without an answer */
        /* every answer is a status line first, and says no-store when it is ours */
        FUZZ_CHECK(strncmp(out, "HTTP/1.", 7) == 0);
        end = strstr(out, "\r\n\r\n");
        if (end && (strstr(out, " 200 OK\r\n") == out + 8 || strstr(out, " 503 ") == out + 8))
                FUZZ_CHECK(strstr(out, "\r\nCache-Control: no-store\r\n") != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        sd_event *e = NULL;
        HttpServer *s = NULL;
        HealthEndpoint *h = NULL;
        static char out[16384];
        ssize_t n;

        if (sd_event_new(&e) < 0)
                abort();
        if (httpserver_new(e, NULL, 0, NULL, &s) < 0)
                abort();
        if (healthendpoint_new(s, "/", fuzz_state_of, &size, &h) < 0)
                abort();
        n = httpfeed(s, data, size, out, sizeof out);
        FUZZ_CHECK(n >= 0);
        check_answer(out, n);

        HttpServerStats st;
        httpserver_stats(s, &st);
        FUZZ_CHECK(st.connections == 0);
        healthendpoint_free(h);
        sd_event_unref(e);
        return 0;
}
