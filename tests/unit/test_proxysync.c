/* monkey-proxy-sync's pure core: endpoint parsing, the routable
 * set (lease rules), HAProxy 2.6 `show servers state` as captured from a
 * real haproxy, the slot plan for every join/leave/rejoin shape, and the
 * nginx upstream text. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "proxysync.h"

static void freestrp(char **p) {
        free(*p);
}

/* Durations and the Redis URL are monkeyd's (agent/base/parse.h,
 * redisurl.h), tested in tests/unit/test_parse.c and test_redisurl.c; the
 * options that take them, by h6 and h7 of tests/integration/test_haproxy.py. */
static void test_names(void **state) {
        assert_true(proxysync_name_is_valid("web"));
        assert_true(proxysync_name_is_valid("web-2.prod_eu"));
        assert_false(proxysync_name_is_valid(""));
        assert_false(proxysync_name_is_valid(NULL));
        assert_false(proxysync_name_is_valid("we b"));
        assert_false(proxysync_name_is_valid("{web}"));
        assert_false(proxysync_name_is_valid("a;b"));
        assert_false(proxysync_name_is_valid("x\n"));
        char big[80];
        memset(big, 'a', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        assert_false(proxysync_name_is_valid(big));
        big[64] = '\0';
        assert_true(proxysync_name_is_valid(big));
}

static void test_endpoints(void **state) {
        Endpoint a, b;
        char buf[ENDPOINT_STRLEN];

        assert_int_equal(proxysync_parse_endpoint("127.0.1.5:8080", &a), 0);
        assert_int_equal(a.family, AF_INET);
        assert_string_equal(a.ip, "127.0.1.5");
        assert_int_equal(a.port, 8080);
        assert_string_equal(proxysync_endpoint_format(&a, buf, sizeof(buf)), "127.0.1.5:8080");

        /* IPv6 is canonicalised, so two spellings are one member. */
        assert_int_equal(proxysync_parse_endpoint("[2001:DB8:0::5]:80", &a), 0);
        assert_int_equal(proxysync_parse_endpoint("[2001:db8::5]:80", &b), 0);
        assert_true(proxysync_endpoint_equal(&a, &b));
        assert_string_equal(proxysync_endpoint_format(&a, buf, sizeof(buf)), "[2001:db8::5]:80");

        static const char *const bad[] = {
                "", "127.0.1.5", "127.0.1.5:", "127.0.1.5:0", "127.0.1.5:65536", "127.0.1.5:80x", "host:80",
                "::1:80", "[::1]80", "[::1]:", "127.0.1.256:80", ":80", "[]:80", "127.0.1.5:-1",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                assert_true(proxysync_parse_endpoint(bad[i], &a) < 0);

        /* Numeric order. */
        assert_int_equal(proxysync_parse_endpoint("127.0.1.9:80", &a), 0);
        assert_int_equal(proxysync_parse_endpoint("127.0.1.10:80", &b), 0);
        assert_true(proxysync_endpoint_compare(&a, &b) < 0);
        assert_int_equal(proxysync_parse_endpoint("127.0.1.9:81", &b), 0);
        assert_true(proxysync_endpoint_compare(&a, &b) < 0);
        assert_true(proxysync_endpoint_compare(&b, &a) > 0);
}

static void test_routable(void **state) {
        char *members[] = { "127.0.1.3:80", "127.0.1.1:80", "127.0.1.2:80", "127.0.1.4:80", "bogus", "127.0.1.5:80", "127.0.1.1:80" };
        char *owners[] = { "web-3", "web-1", "web-2", NULL, "web-x", "web-5", "web-1b" };
        long long pttl[] = { 9000, -1, -2, 5000, 5000, 1200, 4000 };
        Endpoint *eps = NULL;
        size_t n = 99, skipped = 99;
        long long min = 0;
        char buf[ENDPOINT_STRLEN];

        assert_int_equal(proxysync_routable(members, owners, pttl, ELEMENTSOF(members), &eps, &n, &min, &skipped), 0);
        /* web-2: lease gone; 127.0.1.4: no owner; bogus: not ip:port; the
         * duplicate 127.0.1.1 counts once. Sorted. */
        assert_int_equal(n, 3);
        assert_string_equal(proxysync_endpoint_format(&eps[0], buf, sizeof(buf)), "127.0.1.1:80");
        assert_string_equal(proxysync_endpoint_format(&eps[1], buf, sizeof(buf)), "127.0.1.3:80");
        assert_string_equal(proxysync_endpoint_format(&eps[2], buf, sizeof(buf)), "127.0.1.5:80");
        assert_int_equal(skipped, 3);
        assert_int_equal(min, 1200);
        free(eps);

        /* Empty: a valid answer. No lease expires: -1. */
        assert_int_equal(proxysync_routable(NULL, NULL, NULL, 0, &eps, &n, &min, &skipped), 0);
        assert_int_equal(n, 0);
        assert_int_equal(min, -1);
        assert_int_equal(skipped, 0);
        free(eps);
        assert_int_equal(proxysync_routable(members, owners, pttl, 2, &eps, &n, &min, NULL), 0);
        assert_int_equal(min, 9000);
        free(eps);
}

/* Captured from haproxy 2.6.12: s1 ready (admin 4: CMAINT stays after
 * "state ready"), s2 drained 7 s ago, s3 fresh from "disabled" (5), a
 * static server and another backend's line that are not ours. */
static const char servers_state[] =
        "1\n"
        "# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight "
        "srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state "
        "srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl "
        "srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n"
        "3 be 3 s3 127.0.0.1 0 5 1 1 1 1 0 0 14 0 0 0 - 1 - 0 0 - - 0\n"
        "3 be 1 s1 127.0.0.2 2 4 1 1 3 6 3 4 6 0 0 0 - 8080 - 0 0 - - 0\n"
        "3 be 2 s2 127.0.0.3 2 12 1 1 7 6 3 4 6 0 0 0 - 8080 - 0 0 - - 0\n"
        "3 be 4 static 127.0.0.9 2 0 1 1 7 6 3 4 6 0 0 0 - 80 - 0 0 - - 0\n"
        "3 be 5 sX 127.0.0.9 2 0 1 1 7 6 3 4 6 0 0 0 - 80 - 0 0 - - 0\n"
        "4 other 1 s4 127.0.0.9 2 0 1 1 7 6 3 4 6 0 0 0 - 80 - 0 0 - - 0\n"
        "\n";

static void test_servers_state(void **state) {
        _cleanup_(freestrp) char *err = NULL;
        Slot *slots = NULL;
        size_t n = 0;

        assert_int_equal(proxysync_parse_servers_state(servers_state, "be", "s", &slots, &n, NULL), 0);
        assert_int_equal(n, 3);
        assert_string_equal(slots[0].name, "s1");
        assert_int_equal(slots[0].index, 1);
        assert_int_equal(slots[0].mode, SLOT_READY);
        assert_true(slots[0].has_endpoint);
        assert_string_equal(slots[0].endpoint.ip, "127.0.0.2");
        assert_int_equal(slots[0].endpoint.port, 8080);
        assert_string_equal(slots[1].name, "s2");
        assert_int_equal(slots[1].mode, SLOT_DRAIN);
        assert_int_equal(slots[1].since_change_sec, 7);
        assert_string_equal(slots[2].name, "s3");
        assert_int_equal(slots[2].mode, SLOT_MAINT);
        assert_int_equal(slots[2].endpoint.port, 1);
        free(slots);

        /* Another prefix: only "static" is not digits after "stat"... none match "srv". */
        assert_int_equal(proxysync_parse_servers_state(servers_state, "be", "srv", &slots, &n, NULL), 0);
        assert_int_equal(n, 0);
        free(slots);

        assert_int_equal(proxysync_parse_servers_state("No such backend.\n\n", "be", "s", &slots, &n, &err), -EBADMSG);
        assert_non_null(strstr(err, "No such backend."));
        assert_int_equal(proxysync_parse_servers_state("1\n3 be 1 s1 1.2.3.4 2 0\n", "be", "s", &slots, &n, NULL),
                         -EBADMSG);
        assert_int_equal(proxysync_parse_servers_state("1\n# be_id be_name srv_name\n", "be", "s", &slots, &n, NULL),
                         -EBADMSG);
        assert_int_equal(proxysync_parse_servers_state(
                                 "1\n# be_name srv_name srv_addr srv_admin_state srv_time_since_last_change srv_port\n"
                                 "be s1 1.2.3.4\n",
                                 "be", "s", &slots, &n, NULL),
                         -EBADMSG);

        assert_int_equal(proxysync_slot_mode_from_admin(0), SLOT_READY);
        assert_int_equal(proxysync_slot_mode_from_admin(4), SLOT_READY);
        assert_int_equal(proxysync_slot_mode_from_admin(5), SLOT_MAINT);
        assert_int_equal(proxysync_slot_mode_from_admin(0x20), SLOT_MAINT);
        assert_int_equal(proxysync_slot_mode_from_admin(12), SLOT_DRAIN);
        assert_int_equal(proxysync_slot_mode_from_admin(0x10), SLOT_DRAIN);
        assert_int_equal(proxysync_slot_mode_from_admin(0x09), SLOT_MAINT);
        assert_string_equal(proxysync_slot_mode_to_string(SLOT_DRAIN), "drain");
        assert_null(proxysync_slot_mode_to_string(_SLOT_MODE_MAX));
}

static Slot slot(const char *name, const char *ep, SlotMode mode, unsigned long since) {
        Slot s = { .mode = mode, .since_change_sec = since };
        strncpy(s.name, name, sizeof(s.name) - 1);
        assert_int_equal(proxysync_parse_endpoint(ep, &s.endpoint), 0);
        s.has_endpoint = true;
        return s;
}

static Endpoint ep(const char *s) {
        Endpoint e;
        assert_int_equal(proxysync_parse_endpoint(s, &e), 0);
        return e;
}

/* "s1:addr=127.0.1.2:80 s1:ready s2:drain" */
static char *plan_text(const Slot *slots, const SlotPlan *p) {
        char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);
        static const char *const kinds[] = { "addr", "ready", "drain", "maint" };
        char b[ENDPOINT_STRLEN];

        assert_non_null(f);
        for (size_t i = 0; i < p->n_ops; i++) {
                fprintf(f, "%s%s:%s", i ? " " : "", slots[p->ops[i].slot].name, kinds[p->ops[i].kind]);
                if (p->ops[i].kind == SLOT_OP_ADDR)
                        fprintf(f, "=%s", proxysync_endpoint_format(&p->ops[i].endpoint, b, sizeof(b)));
        }
        fclose(f);
        return buf;
}

static void check_plan(const Slot *slots, size_t n, const Endpoint *want, size_t nw, unsigned long grace,
                       const char *expect, size_t routed, size_t unplaced) {
        SlotPlan p = {};
        _cleanup_(freestrp) char *t = NULL;

        assert_int_equal(proxysync_plan(slots, n, want, nw, grace, &p), 0);
        t = plan_text(slots, &p);
        assert_string_equal(t, expect);
        assert_int_equal(p.routed, routed);
        assert_int_equal(p.unplaced, unplaced);
        proxysync_plan_done(&p);
}

static void test_plan(void **state) {
        const Endpoint a = ep("127.0.1.1:80"), b = ep("127.0.1.2:80"), c = ep("127.0.1.3:80");

        /* Fresh backend: every slot in maint at the template address. */
        Slot fresh[] = { slot("s1", "127.0.0.1:1", SLOT_MAINT, 0), slot("s2", "127.0.0.1:1", SLOT_MAINT, 0),
                         slot("s3", "127.0.0.1:1", SLOT_MAINT, 0) };
        check_plan(fresh, 3, (Endpoint[]) { a, b }, 2, 10,
                   "s1:addr=127.0.1.1:80 s1:ready s2:addr=127.0.1.2:80 s2:ready", 2, 0);

        /* In sync: nothing to do. */
        Slot synced[] = { slot("s1", "127.0.1.1:80", SLOT_READY, 50), slot("s2", "127.0.1.2:80", SLOT_READY, 50),
                          slot("s3", "127.0.0.1:1", SLOT_MAINT, 50) };
        check_plan(synced, 3, (Endpoint[]) { a, b }, 2, 10, "", 2, 0);

        /* b leaves: drained, not maint, and its slot is not reused. */
        check_plan(synced, 3, (Endpoint[]) { a }, 1, 10, "s2:drain", 1, 0);

        /* Drained for less than the grace: wait; then maint. */
        Slot draining[] = { slot("s1", "127.0.1.1:80", SLOT_READY, 50), slot("s2", "127.0.1.2:80", SLOT_DRAIN, 3),
                            slot("s3", "127.0.0.1:1", SLOT_MAINT, 50) };
        check_plan(draining, 3, (Endpoint[]) { a }, 1, 10, "", 1, 0);
        draining[1].since_change_sec = 10;
        check_plan(draining, 3, (Endpoint[]) { a }, 1, 10, "s2:maint", 1, 0);

        /* b rejoins while draining: the same slot, just ready. */
        draining[1].since_change_sec = 3;
        check_plan(draining, 3, (Endpoint[]) { a, b }, 2, 10, "s2:ready", 2, 0);

        /* A newcomer while a slot drains takes the free maint slot, not the
         * draining one. */
        check_plan(draining, 3, (Endpoint[]) { a, c }, 2, 10, "s3:addr=127.0.1.3:80 s3:ready", 2, 0);

        /* b rejoins after its slot went to maint: that slot again, no addr. */
        Slot parked[] = { slot("s1", "127.0.1.1:80", SLOT_READY, 50), slot("s2", "127.0.0.1:1", SLOT_MAINT, 50),
                          slot("s3", "127.0.1.2:80", SLOT_MAINT, 50) };
        check_plan(parked, 3, (Endpoint[]) { a, b }, 2, 10, "s3:ready", 2, 0);

        /* No free slot: counted, not forced onto a draining one. */
        check_plan(draining, 3, (Endpoint[]) { a, c, ep("127.0.1.4:80") }, 3, 10, "s3:addr=127.0.1.3:80 s3:ready", 2, 1);

        /* Duplicates (an operator's hand edit): one stays, the other drains. */
        Slot dup[] = { slot("s1", "127.0.1.1:80", SLOT_READY, 50), slot("s2", "127.0.1.1:80", SLOT_READY, 50) };
        check_plan(dup, 2, (Endpoint[]) { a }, 1, 10, "s2:drain", 1, 0);

        /* An operator's maint on a wanted server is undone; joins come first. */
        Slot mixed[] = { slot("s1", "127.0.1.1:80", SLOT_MAINT, 50), slot("s2", "127.0.1.2:80", SLOT_READY, 50) };
        check_plan(mixed, 2, (Endpoint[]) { a }, 1, 10, "s1:ready s2:drain", 1, 0);

        /* Empty want drains everything (the caller decides whether to apply it). */
        check_plan(synced, 3, NULL, 0, 10, "s1:drain s2:drain", 0, 0);

        /* Grace 0: a drained slot goes to maint at the next sync. */
        draining[1].since_change_sec = 0;
        check_plan(draining, 3, (Endpoint[]) { a }, 1, 0, "s2:maint", 1, 0);
}

static void test_op_command(void **state) {
        Slot slots[] = { slot("s1", "127.0.0.1:1", SLOT_MAINT, 0) };
        SlotOp op = { .slot = 0, .kind = SLOT_OP_ADDR, .endpoint = ep("[2001:db8::7]:8443") };
        _cleanup_(freestrp) char *a = NULL, *b = NULL, *c = NULL;

        assert_int_equal(proxysync_op_command("web", slots, 1, &op, &a), 0);
        assert_string_equal(a, "set server web/s1 addr 2001:db8::7 port 8443");
        op.kind = SLOT_OP_DRAIN;
        assert_int_equal(proxysync_op_command("web", slots, 1, &op, &b), 0);
        assert_string_equal(b, "set server web/s1 state drain");
        op.kind = SLOT_OP_READY;
        assert_int_equal(proxysync_op_command("web", slots, 1, &op, &c), 0);
        assert_string_equal(c, "set server web/s1 state ready");
        op.slot = 1;
        assert_int_equal(proxysync_op_command("web", slots, 1, &op, &c), -EINVAL);
}

static void test_nginx(void **state) {
        _cleanup_(freestrp) char *t1 = NULL, *t2 = NULL, *t3 = NULL;
        const Endpoint eps[] = { ep("127.0.1.1:80"), ep("[::1]:8080") };

        assert_int_equal(proxysync_render_nginx("web", "web_up", eps, 2, NULL, &t1), 0);
        assert_string_equal(t1, "# Written by monkey-proxy-sync from pool web: do not edit, it is rewritten.\n"
                                "upstream web_up {\n"
                                "    server 127.0.1.1:80;\n"
                                "    server [::1]:8080;\n"
                                "}\n");
        assert_true(proxysync_nginx_has_servers(t1));

        assert_int_equal(proxysync_render_nginx("web", "web", NULL, 0, NULL, &t2), 0);
        assert_non_null(strstr(t2, "upstream web {\n    server 127.0.0.1:1 down;"));
        assert_false(proxysync_nginx_has_servers(t2));

        assert_int_equal(proxysync_render_nginx("web", "web", eps, 1, "max_fails=1 fail_timeout=5s", &t3), 0);
        assert_non_null(strstr(t3, "    server 127.0.1.1:80 max_fails=1 fail_timeout=5s;\n"));

        char *t = NULL;
        assert_int_equal(proxysync_render_nginx("web", "web", eps, 1, "x; include /etc/passwd", &t), -EINVAL);
        assert_int_equal(proxysync_render_nginx("web", "web}", eps, 1, NULL, &t), -EINVAL);
        assert_null(t);

        assert_false(proxysync_nginx_has_servers(""));
        assert_false(proxysync_nginx_has_servers(NULL));
        assert_true(proxysync_nginx_has_servers("upstream x {\n\tserver 1.2.3.4:80 weight=2;\n}\n"));
        assert_false(proxysync_nginx_has_servers("upstream x {\n  server 1.2.3.4:80 down;\n}\n"));
        assert_true(proxysync_nginx_has_servers("upstream x {\n  server 1.2.3.4:80 down;\n  server download.x:80;\n}\n"));
        assert_false(proxysync_nginx_has_servers("# server 1.2.3.4:80;\n"));

        assert_true(proxysync_server_args_are_valid(NULL));
        assert_true(proxysync_server_args_are_valid("weight=5 max_fails=2"));
        assert_false(proxysync_server_args_are_valid("a{"));
        assert_false(proxysync_server_args_are_valid("$x"));
        assert_false(proxysync_server_args_are_valid("a\nb"));
}

static void *mfree(void *p) {
        free(p);
        return NULL;
}

static void test_nginx_servers_and_missing(void **state) {
        _cleanup_(freep) Endpoint *eps = NULL, *gone = NULL;
        _cleanup_(freep) char *t = NULL;
        Endpoint want[2];
        size_t n = 99, n_gone = 99;
        char buf[ENDPOINT_STRLEN];

        (void) state;
        assert_int_equal(proxysync_nginx_servers("", &eps, &n), 0);
        assert_int_equal(n, 0);
        eps = mfree(eps);
        /* what we render: our own lines back */
        assert_int_equal(proxysync_parse_endpoint("127.0.1.1:80", &want[0]), 0);
        assert_int_equal(proxysync_parse_endpoint("[::1]:8080", &want[1]), 0);
        assert_int_equal(proxysync_render_nginx("web", "web", want, 2, "max_fails=1", &t), 0);
        assert_int_equal(proxysync_nginx_servers(t, &eps, &n), 0);
        assert_int_equal(n, 2);
        assert_true(proxysync_endpoint_equal(&eps[0], &want[0]));
        assert_true(proxysync_endpoint_equal(&eps[1], &want[1]));
        eps = mfree(eps);
        /* the placeholder, down servers, host names and comments are not routed endpoints */
        assert_int_equal(proxysync_nginx_servers("upstream x {\n  server 127.0.0.1:1 down;\n"
                                                 "\tserver 127.0.0.3:81 weight=2;\n  server app.internal:80;\n"
                                                 "# server 127.0.0.4:80;\n}\n", &eps, &n), 0);
        assert_int_equal(n, 1);
        assert_string_equal(proxysync_endpoint_format(&eps[0], buf, sizeof buf), "127.0.0.3:81");

        /* routed now minus wanted: each once */
        Endpoint have[3] = { eps[0], want[0], eps[0] };
        assert_int_equal(proxysync_missing(have, 3, want, 2, &gone, &n_gone), 0);
        assert_int_equal(n_gone, 1);
        assert_string_equal(proxysync_endpoint_format(&gone[0], buf, sizeof buf), "127.0.0.3:81");
        gone = mfree(gone);
        assert_int_equal(proxysync_missing(have, 3, have, 3, &gone, &n_gone), 0);
        assert_int_equal(n_gone, 0);
        gone = mfree(gone);
        assert_int_equal(proxysync_missing(NULL, 0, want, 2, &gone, &n_gone), 0);
        assert_int_equal(n_gone, 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_names),
                cmocka_unit_test(test_endpoints),
                cmocka_unit_test(test_routable),
                cmocka_unit_test(test_servers_state),
                cmocka_unit_test(test_plan),
                cmocka_unit_test(test_op_command),
                cmocka_unit_test(test_nginx),
                cmocka_unit_test(test_nginx_servers_and_missing),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
