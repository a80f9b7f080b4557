/* Alerts, on its own (no agent): a recording sink, a fake clock (the
 * loop's now, -Wl,--wrap=sd_event_now) and the outbox's spool replaced by
 * a recorder (--wrap=outbox_add; see tests/meson.build), so no message
 * leaves the process. Rules: a condition alerts once, reminds at [slack]
 * remind, and its end is told once; a new quarantine reason is news at
 * once; a breach opens the incident's thread and what follows replies in
 * it until shortly after it closed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alerts.h"
#include "log.h"
#include "outbox.h"
#include "testutil.h"

#define INCIDENT "20261207T013621Z-test-1"
#define T0 (1000 * USEC_PER_SEC)
#define WALL0 ((usec_t) 1796000000 * USEC_PER_SEC)

/* ---- the fake clock ---- */

static usec_t fake_mono = T0;
static usec_t fake_wall = WALL0;

int __wrap_sd_event_now(sd_event *e, clockid_t clock, uint64_t *usec);
int __wrap_sd_event_now(sd_event *e, clockid_t clock, uint64_t *usec) {
        (void) e;
        *usec = clock == CLOCK_REALTIME ? fake_wall : fake_mono;
        return 0;
}

static void advance(usec_t d) {
        fake_mono += d;
        fake_wall += d;
}

/* ---- the spool recorder ---- */

#define SPOOLED_MAX 32

static struct {
        char kind[SPOOLED_MAX][32];
        char incident[SPOOLED_MAX][64];
        OutboxRole role[SPOOLED_MAX];
        size_t n;
        char last_payload[8192]; /* the last message, cut to fit */
} spooled;

int __wrap_outbox_add(Outbox *o, const char *kind, const char *incident, OutboxRole role, bool test,
                      const char *payload, uint64_t *ret_seq);
int __wrap_outbox_add(Outbox *o, const char *kind, const char *incident, OutboxRole role, bool test,
                      const char *payload, uint64_t *ret_seq) {
        (void) o, (void) test;
        assert_true(spooled.n < SPOOLED_MAX);
        snprintf(spooled.last_payload, sizeof spooled.last_payload, "%s", strempty(payload));
        snprintf(spooled.kind[spooled.n], sizeof spooled.kind[0], "%s", kind);
        snprintf(spooled.incident[spooled.n], sizeof spooled.incident[0], "%s", strempty(incident));
        spooled.role[spooled.n] = role;
        spooled.n++;
        if (ret_seq)
                *ret_seq = spooled.n;
        return 0;
}

/* ---- the recording sink ---- */

/* userdata, when given: the pool's budget the agent saw, {min, max} */
static void sink_facts(void *userdata, bool serving, AlertsFacts *ret) {
        const unsigned *budget = userdata;

        *ret = (AlertsFacts) { .cpu_now = 97.0, .cpu_window = 95.0, .serving = serving ? 3 : -1 };
        if (budget) {
                ret->pool = true;
                ret->min_serving = budget[0];
                ret->max_unavailable = budget[1];
        }
}

static json_object *sink_last_checks(void *userdata) {
        (void) userdata;
        return NULL;
}

static void sink_thread(void *userdata, const char *incident, const char *ts) {
        (void) userdata, (void) incident, (void) ts;
}

static void sink_test_answer(void *userdata, uint64_t ticket, bool ok, const char *message, json_object *extra) {
        (void) userdata, (void) ticket, (void) ok, (void) message, (void) extra;
}

static const AlertsSink recording_sink = {
        .facts = sink_facts,
        .last_checks = sink_last_checks,
        .thread = sink_thread,
        .test_answer = sink_test_answer,
};

/* ---- the fixture ---- */

typedef struct Fix {
        char *dir;
        sd_event *e;
        Writer *w;
        Http *http;
        Config *c;
        Incident incident;
        Alerts *al;
} Fix;

static int setup(void **state) {
        Fix *f = calloc(1, sizeof *f);
        _cleanup_(freep) char *text = NULL, *path = NULL, *err = NULL;

        assert_non_null(f);
        memset(&spooled, 0, sizeof spooled);
        fake_mono = T0;
        fake_wall = WALL0;
        f->dir = tmp_dir();
        assert_true(asprintf(&text,
                             "[agent]\nhost = test-1\nstate_dir = %s\ncontrol_socket = %s/control.sock\n\n"
                             "[slack]\nwebhook_url = http://127.0.0.1:9/hook\nremind = 1h\n",
                             f->dir, f->dir) >= 0);
        /* it holds a secret: readable by its owner only */
        path = write_file(f->dir, "monkeyd.conf", text, 0600);
        assert_int_equal(config_load(path, &f->c, &err), 0);
        assert_int_equal(sd_event_new(&f->e), 0);
        assert_int_equal(writer_new(f->e, &f->w), 0);
        assert_int_equal(http_new(f->e, &f->http), 0);
        assert_int_equal(alerts_new(f->e, f->c, f->http, f->w, &f->incident, &recording_sink, NULL, &f->al, &err), 0);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        Fix *f = *state;

        alerts_free(f->al);
        http_free(f->http);
        writer_stop(f->w);
        writer_free(f->w);
        config_free(f->c);
        incident_clear(&f->incident);
        sd_event_unref(f->e);
        rm_rf(f->dir);
        free(f->dir);
        free(f);
        return 0;
}

static void test_holding_gate_and_reminders(void **state) {
        Fix *f = *state;

        alerts_holding(f->al, "disruption budget: 1 of 3 out");
        alerts_holding(f->al, "disruption budget: 1 of 3 out");
        advance(30 * USEC_PER_MINUTE);
        alerts_holding(f->al, "disruption budget: 1 of 3 out");
        assert_int_equal(spooled.n, 1); /* one alert, no reminder before [slack] remind */
        advance(31 * USEC_PER_MINUTE);
        alerts_holding(f->al, "disruption budget: 1 of 3 out");
        assert_int_equal(spooled.n, 2); /* the reminder */
        alerts_holding_over(f->al, "left the pool");
        alerts_holding_over(f->al, "left the pool");
        assert_int_equal(spooled.n, 3); /* the end, once */
        for (size_t k = 0; k < spooled.n; k++)
                assert_string_equal(spooled.kind[k], "holding");
}

static void test_new_quarantine_reason_is_news(void **state) {
        Fix *f = *state;

        alerts_quarantined(f->al, "status check failed: 503");
        alerts_quarantined(f->al, "status check failed: 503");
        assert_int_equal(spooled.n, 1);
        advance(USEC_PER_MINUTE);
        alerts_quarantined(f->al, "content check failed: no \"ok\"");
        assert_int_equal(spooled.n, 2); /* a new failure: alerted now, not at the reminder */
        assert_true(alerts_quarantine_over(f->al));
        assert_false(alerts_quarantine_over(f->al));
}

static void test_breach_opens_the_thread(void **state) {
        Fix *f = *state;

        f->incident.id = strdup(INCIDENT);
        f->incident.started = fake_wall;
        alerts_breach(f->al, "test-1 overloaded", "cpu 99%", NULL, NULL);
        alerts_holding(f->al, "disruption budget: no");
        assert_int_equal(spooled.n, 2);
        assert_string_equal(spooled.kind[0], "breach");
        assert_int_equal(spooled.role[0], OUTBOX_PARENT);
        assert_string_equal(spooled.incident[0], INCIDENT);
        assert_int_equal(spooled.role[1], OUTBOX_REPLY);
        assert_string_equal(spooled.incident[1], INCIDENT);

        /* closed right before it is announced: still in the thread */
        f->incident.ended = fake_wall;
        advance(2 * USEC_PER_SEC);
        alerts_notify(f->al, NOTICE_CLEARED, "test-1: overload cleared", "cpu 10%");
        assert_int_equal(spooled.role[2], OUTBOX_REPLY);
        /* long after: a message of its own */
        advance(USEC_PER_MINUTE);
        alerts_notify(f->al, NOTICE_MAINTENANCE, "test-1 in maintenance", "operator");
        assert_int_equal(spooled.role[3], OUTBOX_STANDALONE);
        assert_string_equal(spooled.incident[3], "");
}

/* The breach alert's plan names the budget that applies: the pool's own
 * (kept in Redis), not this host's config, which is only its seed. */
static void test_breach_names_the_pools_budget(void **state) {
        Fix *f = *state;
        static const unsigned pools[2] = { 2, 3 };
        _cleanup_(freep) char *text = NULL, *path = NULL, *err = NULL;
        Config *c = NULL;
        Alerts *al = NULL;

        assert_true(asprintf(&text,
                             "[agent]\nhost = test-1\nstate_dir = %s\ncontrol_socket = %s/control.sock\n\n"
                             "[slack]\nwebhook_url = http://127.0.0.1:9/hook\n\n[pool]\nredis = redis://127.0.0.1:9/0\n"
                             "name = web\naddress = 127.0.0.2:8080\nmin_serving = 1\nmax_unavailable = 1\n\n"
                             "[remedy]\nladder = reboot-local\n",
                             f->dir, f->dir) >= 0);
        path = write_file(f->dir, "pool.conf", text, 0600);
        assert_int_equal(config_load(path, &c, &err), 0);
        assert_int_equal(alerts_new(f->e, c, f->http, f->w, &f->incident, &recording_sink, (void *) pools, &al, &err),
                         0);
        f->incident.id = strdup(INCIDENT);
        alerts_breach(al, "test-1 overloaded", "cpu 99%", NULL, NULL);
        assert_int_equal(spooled.n, 1);
        if (!strstr(spooled.last_payload, "min_serving 2, max_unavailable 3"))
                fail_msg("the breach does not name the pool's budget: %s", spooled.last_payload);
        alerts_free(al);
        config_free(c);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_holding_gate_and_reminders, setup, teardown),
                cmocka_unit_test_setup_teardown(test_breach_names_the_pools_budget, setup, teardown),
                cmocka_unit_test_setup_teardown(test_new_quarantine_reason_is_news, setup, teardown),
                cmocka_unit_test_setup_teardown(test_breach_opens_the_thread, setup, teardown),
        };

        log_max_level = LOG_WARNING;
        return cmocka_run_group_tests(tests, NULL, NULL);
}
