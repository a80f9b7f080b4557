/* The checks that gate a rejoin: the service is back only when all three
 * pass.
 *   content  GET [checks] url: a non-empty body containing expect_content
 *            (a substring, or "re:" + a POSIX extended regex, ^ and $
 *            matching at line ends: health pages end in a newline);
 *   status   the HTTP status is in expect_status;
 *   binding  the service accepts a TCP connection on the advertised
 *            address (public_address, default the pool address), and the
 *            host's own private address (local_address, or IMDS
 *            local-ipv4) is configured on an interface (getifaddrs).
 * One attempt runs everything on the loop with [checks] timeout; bodies
 * are read up to a cap. The evaluation is pure, for the tests. */
#pragma once

#include <json-c/json.h>
#include <regex.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "excerpt.h"
#include "http.h"

#define CHECKS_BODY_MAX (256 * 1024)
#define CHECKS_EXCERPT 200

typedef enum CheckVerdict {
        CHECK_PASS,
        CHECK_FAIL,
        CHECK_SKIPPED,       /* nothing to check (no expect_content) */
        _CHECK_VERDICT_MAX,
        _CHECK_VERDICT_INVALID = -EINVAL,
} CheckVerdict;

const char *check_verdict_to_string(CheckVerdict v);

typedef struct CheckResult {
        CheckVerdict verdict;
        char detail[320];    /* "200 bytes, contains \"ok\"", "got 500, want 200-299", ... */
} CheckResult;

typedef struct CheckReport {
        CheckResult content, status, binding;
        bool ok;             /* nothing failed */
        usec_t at;           /* wall clock */
        long http_status;    /* 0: no answer */
        char excerpt[CHECKS_EXCERPT * 4 + 8]; /* the body's first 200 bytes as text (checks_excerpt_text) */
        unsigned attempt;    /* set by the caller: which try of a series */
        /* How long the GET (content and status judge it) and the binding's
         * connect took, seconds; NAN when it did not end (timed out,
         * cancelled) or was not tried. */
        double http_seconds, binding_seconds;
} CheckReport;

/* Pure: the content and status verdicts of one HTTP answer (result is
 * curl's; status 0 when none). `re` is NULL unless expect is "re:...". */
void checks_evaluate_http(const Config *c, const regex_t *re, CURLcode result, long status, const char *body,
                          size_t len, bool truncated, const char *error, CheckReport *r);

/* Pure: is `addr` (an IPv4/IPv6 literal) configured on one of these
 * interfaces (getifaddrs' list): one of their addresses, or inside the
 * prefix of a loopback interface? */
struct ifaddrs;
bool checks_address_configured(const char *addr, const struct ifaddrs *list);

/* {"content":"pass","status":"pass","binding":"fail","ok":false,"at":"...",
 *  "detail":{"content":"...","status":"...","binding":"..."},"http_status":500,
 *  "body_excerpt":"..."}: the status schema's last_checks. */
json_object *check_report_json(const CheckReport *r);

typedef struct Checks Checks;
typedef void (*checks_done_t)(const CheckReport *r, void *userdata);

/* -EINVAL with *ret_error for a config the checks cannot use. Takes a
 * reference to c (config_ref) for as long as it lives. */
int checks_new(sd_event *e, Http *http, Config *c, Checks **ret, char **ret_error);
/* A reload: use c from now on (a new reference; the old one is dropped).
 * All or nothing: on failure the running settings stay. */
int checks_reconfigure(Checks *k, Config *c, char **ret_error);
Checks *checks_free(Checks *k);
static inline void checks_freep(Checks **k) {
        checks_free(*k);
}

/* The host's private address from IMDS, when [checks] names none. */
int checks_set_local_address(Checks *k, const char *addr);

/* One attempt of the three checks; answers once, from the loop. -EBUSY
 * while one runs. */
int checks_run(Checks *k, checks_done_t cb, void *userdata);
void checks_cancel(Checks *k);
