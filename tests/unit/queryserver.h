/* A scripted HTTP server on 127.0.0.1 inside the test's sd-event loop,
 * standing in for an AWS Query API: each request gets the next scripted
 * answer (or its connection dropped unanswered), and the test reads back
 * what the client sent. Tests of awsquery.c's clients share it. */
#pragma once

#include <systemd/sd-event.h>

#include "macro.h"

typedef struct QueryReply {
        int status;         /* 0 with drop */
        const char *body;   /* XML; NULL for none */
        bool drop;          /* read the request, close without a word */
} QueryReply;

#define QUERY_REPLY(s, b) { .status = (s), .body = (b) }
#define QUERY_DROP { .drop = true }

typedef struct QueryServer QueryServer;

/* Listens on 127.0.0.1 on a free port; replies past the script answer 500. */
int query_server_new(sd_event *e, const QueryReply *script, size_t n, QueryServer **ret);
QueryServer *query_server_free(QueryServer *s);
const char *query_server_url(const QueryServer *s);
unsigned query_server_n_requests(const QueryServer *s);
/* The whole request as received (request line, headers, body), and its body. */
const char *query_server_request(const QueryServer *s, unsigned i);
const char *query_server_body(const QueryServer *s, unsigned i);

/* Runs the loop until *done or `timeout` has passed: false on the timeout. */
bool query_server_run_until(sd_event *e, const bool *done, usec_t timeout);
