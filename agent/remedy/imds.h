/* IMDSv2, the instance metadata service: a session token from
 * PUT /latest/api/token (TTL 6 h, refreshed 5 min before it ends, fetched
 * again on a 401), then GETs with X-aws-ec2-metadata-token. IMDSv1 (GET
 * without a token) is never used. Short timeouts, never through a proxy;
 * a token PUT that times out is explained (a container behind a NAT hop
 * needs HttpPutResponseHopLimit 2). */
#pragma once

#include <json-c/json.h>
#include <systemd/sd-event.h>

#include "http.h"

#define IMDS_TOKEN_TTL_SEC 21600
#define IMDS_TOKEN_MARGIN (5 * USEC_PER_MINUTE)
#define IMDS_TIMEOUT (2 * USEC_PER_SEC)

typedef struct Imds Imds;

typedef struct ImdsAnswer {
        int error;              /* 0: an HTTP answer (see status); < 0: no answer (detail says why) */
        long status;            /* 200, 404, ... */
        const char *body;       /* the body, NUL-terminated ("" when none) */
        size_t body_len;
        const char *detail;     /* one line for logs and status */
} ImdsAnswer;

typedef void (*imds_done_t)(const ImdsAnswer *a, void *userdata);

int imds_new(sd_event *e, Http *http, const char *base_url, Imds **ret);
/* Drops every request in flight (their callbacks do not run). */
Imds *imds_free(Imds *m);
static inline void imds_freep(Imds **m) {
        imds_free(*m);
}

/* GET /latest/PATH ("meta-data/instance-id"). Answers once, from the loop. */
int imds_get(Imds *m, const char *path, imds_done_t cb, void *userdata);

/* {"token":"valid"|"none", "token_expires_in_sec", "last_error"}: never the token. */
json_object *imds_status_json(const Imds *m);
