/* The write-ahead outbox: records (format, parse, every way a file can be
 * malformed), the pure decisions (which record to drop, how long to back
 * off), and the Outbox itself on a real sd-event loop with a fake
 * transport that answers from the loop, as slack.c does: order, one at a
 * time, retry timing, dead letters, pause, threads, restart, corrupt
 * files, limits, tests ahead of the queue, status. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <ftw.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "http.h"
#include "outbox.h"

#define PAYLOAD "{\"text\":\"hello\",\"blocks\":[{\"type\":\"header\",\"text\":{\"type\":\"plain_text\",\"text\":\"hi\"}}]}"
#define NAME(seq) "000000000000000000" #seq ".json"

/* --- helpers ------------------------------------------------------------ */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path);
}

static void rm_rf(const char *path) {
        (void) nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static char *read_text(const char *path, size_t *ret_len) {
        FILE *f = fopen(path, "re");
        char *buf;
        long n;

        if (!f)
                return NULL;
        assert_int_equal(fseek(f, 0, SEEK_END), 0);
        n = ftell(f);
        assert_true(n >= 0);
        rewind(f);
        buf = calloc(1, (size_t) n + 1);
        assert_non_null(buf);
        assert_int_equal(fread(buf, 1, (size_t) n, f), (size_t) n);
        fclose(f);
        if (ret_len)
                *ret_len = (size_t) n;
        return buf;
}

static void write_text(const char *path, const char *text, size_t len) {
        FILE *f = fopen(path, "we");

        assert_non_null(f);
        assert_int_equal(fwrite(text, 1, len, f), len);
        assert_int_equal(fclose(f), 0);
}

static bool exists(const char *dir, const char *name) {
        char p[PATH_MAX];

        snprintf(p, sizeof p, "%s/%s", dir, name);
        return access(p, F_OK) == 0;
}

static size_t count_entries(const char *dir) {
        DIR *d = opendir(dir);
        struct dirent *de;
        size_t n = 0;

        assert_non_null(d);
        while ((de = readdir(d)))
                if (de->d_type != DT_DIR)
                        n++;
        closedir(d);
        return n;
}

static bool json_equal_text(const char *a, const char *b) {
        json_object *x = json_tokener_parse(a), *y = json_tokener_parse(b);
        bool eq = x && y && json_object_equal(x, y);

        json_object_put(x);
        json_object_put(y);
        return eq;
}

/* --- records: pure -------------------------------------------------------- */

static char *format_record(uint64_t seq, const char *kind, const char *incident, OutboxRole role, bool test,
                           const char *payload) {
        OutboxRecord r = {
                .seq = seq,
                .created = 1763830812000000ULL,
                .kind = (char *) kind,
                .incident = (char *) incident,
                .role = role,
                .test = test,
                .payload = (char *) payload,
        };
        char *s = NULL;

        assert_int_equal(outbox_record_format(&r, &s), 0);
        return s;
}

static void test_record_roundtrip(void **state) {
        OutboxRecord in = {
                .seq = (1ULL << 63) + 5, /* past INT64_MAX: json-c keeps it as uint64 */
                .created = 1763830812123456ULL,
                .kind = (char *) "breach",
                .incident = (char *) "20261122T170012Z-web-1",
                .role = OUTBOX_PARENT,
                .test = true,
                .payload = (char *) PAYLOAD,
        };
        _cleanup_(freep) char *s = NULL, *error = NULL;
        OutboxRecord out = {};

        assert_int_equal(outbox_record_format(&in, &s), 0);
        assert_int_equal(s[strlen(s) - 1], '\n');
        assert_ptr_equal(strchr(s, '\n'), s + strlen(s) - 1); /* one line */
        assert_int_equal(outbox_record_parse(s, strlen(s), &out, &error), 0);
        assert_null(error);
        assert_true(out.seq == in.seq);
        assert_true(out.created == in.created);
        assert_string_equal(out.kind, "breach");
        assert_string_equal(out.incident, "20261122T170012Z-web-1");
        assert_int_equal(out.role, OUTBOX_PARENT);
        assert_true(out.test);
        assert_true(json_equal_text(out.payload, PAYLOAD));
        assert_int_equal(out.size, strlen(s));
        outbox_record_done(&out);
        assert_null(out.kind);
        outbox_record_done(&out); /* twice is harmless */
        outbox_record_done(NULL);
}

static void test_record_roundtrip_standalone(void **state) {
        static const OutboxRole roles[] = { OUTBOX_STANDALONE, OUTBOX_PARENT, OUTBOX_REPLY };

        for (size_t i = 0; i < ELEMENTSOF(roles); i++)
                for (int with_incident = 0; with_incident < 2; with_incident++) {
                        _cleanup_(freep) char *s = NULL;
                        OutboxRecord out = {};
                        OutboxRecord in = {
                                .seq = 7,
                                .created = 0,
                                .kind = (char *) "holding",
                                .incident = with_incident ? (char *) "inc-1" : NULL,
                                .role = roles[i],
                                .payload = (char *) "{\"text\":\"a \\\"quoted\\\" caf\xc3\xa9 / \\n\"}",
                        };

                        if (!with_incident && roles[i] != OUTBOX_STANDALONE)
                                continue;
                        assert_int_equal(outbox_record_format(&in, &s), 0);
                        assert_int_equal(outbox_record_parse(s, strlen(s), &out, NULL), 0);
                        assert_int_equal(out.seq, 7);
                        assert_int_equal(out.role, roles[i]);
                        assert_false(out.test);
                        if (with_incident)
                                assert_string_equal(out.incident, "inc-1");
                        else
                                assert_null(out.incident);
                        assert_true(json_equal_text(out.payload, in.payload));
                        outbox_record_done(&out);
                }
}

static void test_record_format_invalid(void **state) {
        OutboxRecord r = { .seq = 1, .kind = (char *) "k", .role = OUTBOX_STANDALONE, .payload = (char *) "{}" };
        char *s = (char *) 0x1;

        r.kind = NULL;
        assert_int_equal(outbox_record_format(&r, &s), -EINVAL);
        r.kind = (char *) "k";
        r.payload = (char *) "not json";
        assert_int_equal(outbox_record_format(&r, &s), -EINVAL);
        r.payload = (char *) "[1]";
        assert_int_equal(outbox_record_format(&r, &s), -EINVAL);
        r.payload = NULL;
        assert_int_equal(outbox_record_format(&r, &s), -EINVAL);
        r.payload = (char *) "{}";
        r.role = _OUTBOX_ROLE_MAX;
        assert_int_equal(outbox_record_format(&r, &s), -EINVAL);
        assert_ptr_equal(s, (char *) 0x1);
}

static void expect_bad(const char *buf, size_t len, const char *why) {
        OutboxRecord r = { .seq = 4242 };
        char *error = NULL;
        int k;

        k = outbox_record_parse(buf, len, &r, &error);
        if (k != -EBADMSG)
                fail_msg("%s: expected -EBADMSG, got %d", why, k);
        if (!error || !*error)
                fail_msg("%s: no error text", why);
        /* ret is written only on success */
        assert_int_equal(r.seq, 4242);
        assert_null(r.kind);
        assert_null(r.payload);
        free(error);
        /* ret_error is optional */
        assert_int_equal(outbox_record_parse(buf, len, &r, NULL), -EBADMSG);
}

static void expect_bad_str(const char *buf, const char *why) {
        expect_bad(buf, strlen(buf), why);
}

#define GOOD_HEAD "{\"version\":1,\"seq\":3,\"created\":5,"

static void test_record_parse_errors(void **state) {
        _cleanup_(freep) char *good = format_record(3, "breach", "inc", OUTBOX_PARENT, false, PAYLOAD);
        _cleanup_(freep) char *garbage = NULL, *nul = NULL, *big = NULL;
        size_t len = strlen(good);

        expect_bad("", 0, "empty");
        expect_bad_str("hello", "not JSON");
        expect_bad_str("\n", "only a newline");
        expect_bad_str("[1,2,3]", "array");
        expect_bad_str("\"text\"", "string");

        /* truncated anywhere before the closing brace */
        for (size_t n = 1; n < len - 1; n++)
                expect_bad(good, n, "truncated");

        /* trailing garbage */
        assert_true(asprintf(&garbage, "%sx", good) > 0);
        expect_bad_str(garbage, "trailing garbage");
        free(garbage);
        assert_true(asprintf(&garbage, "%s%s", good, good) > 0);
        expect_bad_str(garbage, "two records");

        /* a NUL byte (a torn write on some filesystems) */
        nul = strdup(good);
        nul[len - 1] = '\0';
        expect_bad(nul, len, "NUL byte at the end");
        memcpy(nul, good, len);
        nul[10] = '\0';
        expect_bad(nul, len, "NUL byte inside");

        expect_bad_str("{\"version\":2,\"seq\":3,\"created\":5,\"kind\":\"k\",\"role\":\"standalone\",\"payload\":{}}",
                       "newer version");
        expect_bad_str("{\"version\":0,\"seq\":3,\"created\":5,\"kind\":\"k\",\"role\":\"standalone\",\"payload\":{}}",
                       "version 0");
        expect_bad_str("{\"version\":\"1\",\"seq\":3,\"created\":5,\"kind\":\"k\",\"role\":\"standalone\",\"payload\":{}}",
                       "version as a string");
        expect_bad_str("{\"seq\":3,\"created\":5,\"kind\":\"k\",\"role\":\"standalone\",\"payload\":{}}", "version missing");
        expect_bad_str("{\"version\":1,\"seq\":-1,\"created\":5,\"kind\":\"k\",\"role\":\"standalone\",\"payload\":{}}",
                       "negative seq");
        expect_bad_str("{\"version\":1,\"seq\":1.5,\"created\":5,\"kind\":\"k\",\"role\":\"standalone\",\"payload\":{}}",
                       "fractional seq");
        expect_bad_str("{\"version\":1,\"created\":5,\"kind\":\"k\",\"role\":\"standalone\",\"payload\":{}}", "seq missing");
        expect_bad_str("{\"version\":1,\"seq\":3,\"created\":-5,\"kind\":\"k\",\"role\":\"standalone\",\"payload\":{}}",
                       "negative created");
        expect_bad_str(GOOD_HEAD "\"role\":\"standalone\",\"payload\":{}}", "kind missing");
        expect_bad_str(GOOD_HEAD "\"kind\":\"\",\"role\":\"standalone\",\"payload\":{}}", "kind empty");
        expect_bad_str(GOOD_HEAD "\"kind\":7,\"role\":\"standalone\",\"payload\":{}}", "kind a number");
        expect_bad_str(GOOD_HEAD "\"kind\":\"k\",\"role\":\"boss\",\"payload\":{}}", "unknown role");
        expect_bad_str(GOOD_HEAD "\"kind\":\"k\",\"payload\":{}}", "role missing");
        expect_bad_str(GOOD_HEAD "\"kind\":\"k\",\"role\":\"reply\",\"payload\":{}}", "reply without incident");
        expect_bad_str(GOOD_HEAD "\"kind\":\"k\",\"role\":\"parent\",\"incident\":null,\"payload\":{}}",
                       "parent with a null incident");
        expect_bad_str(GOOD_HEAD "\"kind\":\"k\",\"role\":\"reply\",\"incident\":5,\"payload\":{}}", "incident a number");
        expect_bad_str(GOOD_HEAD "\"kind\":\"k\",\"role\":\"standalone\",\"test\":1,\"payload\":{}}", "test not bool");
        expect_bad_str(GOOD_HEAD "\"kind\":\"k\",\"role\":\"standalone\",\"payload\":\"text\"}", "payload a string");
        expect_bad_str(GOOD_HEAD "\"kind\":\"k\",\"role\":\"standalone\",\"payload\":[]}", "payload an array");
        expect_bad_str(GOOD_HEAD "\"kind\":\"k\",\"role\":\"standalone\"}", "payload missing");

        /* oversize, even if it is valid JSON padded with spaces */
        big = malloc(OUTBOX_RECORD_MAX + 2);
        assert_non_null(big);
        memset(big, ' ', OUTBOX_RECORD_MAX + 1);
        memcpy(big, good, len);
        big[OUTBOX_RECORD_MAX + 1] = '\0';
        expect_bad(big, OUTBOX_RECORD_MAX + 1, "oversize");
        {
                /* the same text just within the limit parses */
                OutboxRecord r = {};
                assert_int_equal(outbox_record_parse(big, OUTBOX_RECORD_MAX, &r, NULL), 0);
                assert_int_equal(r.seq, 3);
                outbox_record_done(&r);
        }
}

static void test_record_parse_lenient(void **state) {
        OutboxRecord r = {};

        /* whitespace around, incident null for a standalone, no "test" */
        assert_int_equal(outbox_record_parse(
                                 "\n  " GOOD_HEAD "\"kind\":\"k\",\"incident\":null,\"role\":\"standalone\",\"payload\":{}}\r\n",
                                 strlen("\n  " GOOD_HEAD "\"kind\":\"k\",\"incident\":null,\"role\":\"standalone\",\"payload\":{}}\r\n"),
                                 &r, NULL),
                         0);
        assert_null(r.incident);
        assert_false(r.test);
        assert_int_equal(r.role, OUTBOX_STANDALONE);
        outbox_record_done(&r);
}

static void test_role_verdict_strings(void **state) {
        for (OutboxRole r = 0; r < _OUTBOX_ROLE_MAX; r++)
                assert_int_equal(outbox_role_from_string(outbox_role_to_string(r)), r);
        assert_string_equal(outbox_role_to_string(OUTBOX_PARENT), "parent");
        assert_int_equal(outbox_role_from_string("boss"), _OUTBOX_ROLE_INVALID);
        assert_int_equal(outbox_role_from_string(NULL), _OUTBOX_ROLE_INVALID);
        assert_null(outbox_role_to_string(_OUTBOX_ROLE_MAX));
        for (OutboxVerdict v = 0; v < _OUTBOX_VERDICT_MAX; v++)
                assert_non_null(outbox_verdict_to_string(v));
        assert_null(outbox_verdict_to_string(_OUTBOX_VERDICT_MAX));
        assert_null(outbox_verdict_to_string(_OUTBOX_VERDICT_INVALID));
}

/* --- pick_victim ---------------------------------------------------------- */

static void test_pick_victim(void **state) {
        OutboxRecord rec[5] = {
                { .seq = 1, .incident = (char *) "i1", .size = 100 },
                { .seq = 2, .incident = NULL, .size = 100 },
                { .seq = 3, .incident = (char *) "i1", .size = 100 },
                { .seq = 4, .incident = NULL, .size = 100 },
                { .seq = 5, .incident = (char *) "i2", .size = 100 },
        };
        OutboxRecord *p[5] = { &rec[0], &rec[1], &rec[2], &rec[3], &rec[4] };
        OutboxLimits l = { .max_count = 6, .max_bytes = 0 };

        /* fits */
        assert_int_equal(outbox_pick_victim(p, 5, 500, 100, &l, false), -1);
        l.max_count = 0; /* unlimited */
        assert_int_equal(outbox_pick_victim(p, 5, 500, 100, &l, false), -1);
        assert_int_equal(outbox_pick_victim(p, 0, 0, 100, &l, false), -1);

        /* count: the oldest non-incident message goes first */
        l.max_count = 5;
        assert_int_equal(outbox_pick_victim(p, 5, 500, 100, &l, false), 1);
        assert_int_equal(outbox_pick_victim(p, 5, 500, 100, &l, true), 1);
        l.max_count = 3;
        assert_int_equal(outbox_pick_victim(p, 5, 500, 100, &l, false), 1);

        /* no non-incident message left: the oldest incident one */
        assert_int_equal(outbox_pick_victim((OutboxRecord *const[]) { &rec[0], &rec[2], &rec[4] }, 3, 300, 100, &l,
                                            false),
                         0);
        /* ... but never the one in flight */
        assert_int_equal(outbox_pick_victim((OutboxRecord *const[]) { &rec[0], &rec[2], &rec[4] }, 3, 300, 100, &l,
                                            true),
                         1);
        /* skip_first protects a non-incident head too */
        assert_int_equal(outbox_pick_victim((OutboxRecord *const[]) { &rec[1], &rec[0], &rec[3] }, 3, 300, 100, &l,
                                            true),
                         2);
        assert_int_equal(outbox_pick_victim((OutboxRecord *const[]) { &rec[1], &rec[0], &rec[3] }, 3, 300, 100, &l,
                                            false),
                         0);
        /* only the one in flight: nothing to drop */
        l.max_count = 1;
        assert_int_equal(outbox_pick_victim(p, 1, 100, 100, &l, true), -1);

        /* bytes */
        l = (OutboxLimits) { .max_count = 0, .max_bytes = 550 };
        assert_int_equal(outbox_pick_victim(p, 5, 500, 50, &l, false), -1);
        assert_int_equal(outbox_pick_victim(p, 5, 500, 51, &l, false), 1);
        assert_int_equal(outbox_pick_victim((OutboxRecord *const[]) { &rec[0], &rec[2] }, 2, 200, 400, &l, false),
                         0);
        assert_int_equal(outbox_pick_victim((OutboxRecord *const[]) { &rec[0], &rec[2] }, 2, 200, 400, &l, true),
                         1);
}

/* --- backoff -------------------------------------------------------------- */

static usec_t nominal(unsigned attempt) {
        usec_t d = OUTBOX_BACKOFF_MIN;

        for (unsigned i = 1; i < attempt && d < OUTBOX_BACKOFF_MAX; i++)
                d *= 2;
        return MIN(d, OUTBOX_BACKOFF_MAX);
}

static void test_backoff_growth(void **state) {
        static const uint64_t randoms[] = { 0, 1, 7, 499999, 500000, 123456789, UINT64_MAX / 3, UINT64_MAX };

        /* the top of the jitter range: exactly ×2 from 1 s, capped */
        assert_int_equal(nominal(1), 1 * USEC_PER_SEC);
        assert_int_equal(nominal(2), 2 * USEC_PER_SEC);
        assert_int_equal(nominal(9), 256 * USEC_PER_SEC);
        assert_int_equal(nominal(10), 300 * USEC_PER_SEC);
        assert_int_equal(outbox_backoff(1, USEC_INFINITY, 500 * USEC_PER_MSEC), 1 * USEC_PER_SEC);
        assert_int_equal(outbox_backoff(2, USEC_INFINITY, 1 * USEC_PER_SEC), 2 * USEC_PER_SEC);
        assert_int_equal(outbox_backoff(3, USEC_INFINITY, 2 * USEC_PER_SEC), 4 * USEC_PER_SEC);
        assert_int_equal(outbox_backoff(9, USEC_INFINITY, 128 * USEC_PER_SEC), 256 * USEC_PER_SEC);
        assert_int_equal(outbox_backoff(10, USEC_INFINITY, 150 * USEC_PER_SEC), OUTBOX_BACKOFF_MAX);
        assert_int_equal(outbox_backoff(1000, USEC_INFINITY, 150 * USEC_PER_SEC), OUTBOX_BACKOFF_MAX);
        assert_int_equal(outbox_backoff(UINT32_MAX, USEC_INFINITY, 150 * USEC_PER_SEC), OUTBOX_BACKOFF_MAX);
        /* the bottom */
        assert_int_equal(outbox_backoff(1, USEC_INFINITY, 0), 500 * USEC_PER_MSEC);
        assert_int_equal(outbox_backoff(20, USEC_INFINITY, 0), OUTBOX_BACKOFF_MAX / 2);

        for (unsigned a = 1; a <= 14; a++)
                for (size_t i = 0; i < ELEMENTSOF(randoms); i++) {
                        usec_t d = outbox_backoff(a, USEC_INFINITY, randoms[i]);
                        assert_true(d >= nominal(a) / 2);
                        assert_true(d <= nominal(a));
                }
}

static void test_backoff_spreads(void **state) {
        /* jitter: a fleet does not come back in lockstep */
        usec_t first = outbox_backoff(5, USEC_INFINITY, 0);
        bool differ = false;

        for (uint64_t r = 1; r < 1000; r++)
                differ |= outbox_backoff(5, USEC_INFINITY, r * 7919) != first;
        assert_true(differ);
}

static void test_backoff_retry_after(void **state) {
        static const uint64_t randoms[] = { 0, 1, 250000, 250001, 999999, UINT64_MAX };

        for (size_t i = 0; i < ELEMENTSOF(randoms); i++) {
                usec_t d;

                /* Slack says 7 s: never sooner, and only a little later */
                d = outbox_backoff(1, 7 * USEC_PER_SEC, randoms[i]);
                assert_true(d >= 7 * USEC_PER_SEC);
                assert_true(d <= 7 * USEC_PER_SEC + 250 * USEC_PER_MSEC);
                d = outbox_backoff(3, 2 * USEC_PER_SEC, randoms[i]);
                assert_true(d >= 2 * USEC_PER_SEC);
                assert_true(d <= 4 * USEC_PER_SEC);
                /* a long Retry-After beats the cap */
                d = outbox_backoff(20, 600 * USEC_PER_SEC, randoms[i]);
                assert_true(d >= 600 * USEC_PER_SEC);
                assert_true(d <= 600 * USEC_PER_SEC + 250 * USEC_PER_MSEC);
                /* a short one does not shorten our own backoff */
                d = outbox_backoff(9, 1 * USEC_PER_SEC, randoms[i]);
                assert_true(d >= 128 * USEC_PER_SEC);
                d = outbox_backoff(1, 0, randoms[i]);
                assert_true(d >= 500 * USEC_PER_MSEC && d <= USEC_PER_SEC);
        }
        /* a fleet told "7 s" does not come back in the same millisecond */
        {
                usec_t first = outbox_backoff(1, 7 * USEC_PER_SEC, 0);
                bool differ = false;
                for (uint64_t r = 1; r < 1000; r++)
                        differ |= outbox_backoff(1, 7 * USEC_PER_SEC, r * 7919) != first;
                assert_true(differ);
        }
}

static void test_backoff_retry_after_huge(void **state) {
        static const uint64_t randoms[] = { 0, 1, 249999, 250000, UINT64_MAX };

        /* the floor holds at the top of the range too: no wrap to "now" */
        for (size_t i = 0; i < ELEMENTSOF(randoms); i++) {
                assert_true(outbox_backoff(1, USEC_INFINITY - 1, randoms[i]) >= USEC_INFINITY - 1);
                assert_true(outbox_backoff(1, USEC_INFINITY - 100, randoms[i]) >= USEC_INFINITY - 100);
        }
}

/* --- the outbox on a loop: fake transport -------------------------------- */

#define SENT_MAX 64

typedef struct Sent {
        uint64_t seq;
        char kind[32];
        char incident[64]; /* "" for none */
        char thread[64];   /* "" for NULL */
        bool has_thread;
        OutboxRole role;
        bool test;
        char payload[512];
        usec_t at;         /* CLOCK_MONOTONIC, the loop's now */
} Sent;

typedef struct Step {
        OutboxVerdict v;
        usec_t retry_after;
        const char *ts;
        const char *detail;
} Step;

typedef struct Fake {
        char dir[64], outbox[80], dead[96];
        sd_event *e;
        Writer *w;             /* NULL: files written inline; set by the tests of the writer thread */
        Outbox *o;
        OutboxLimits limits;

        Sent sent[SENT_MAX];
        size_t n_sent;
        unsigned in_send;      /* > 0 while inside send() */
        int fail_sends;        /* next sends that fail to start */

        Step script[SENT_MAX]; /* answers to the next sends, in order; when used up, hold */
        size_t n_script, next_step;
        usec_t answered_at[SENT_MAX];
        uint64_t answered_seq[SENT_MAX];
        OutboxVerdict answered_v[SENT_MAX];
        size_t n_answered;

        char thread_incident[64], thread_ts[64];
        unsigned n_thread;
} Fake;

typedef struct Answer {
        Fake *fake;
        Step step;
} Answer;

static int answer_handler(sd_event_source *s, void *userdata) {
        Answer *a = userdata;
        Fake *f = a->fake;

        assert_true(f->n_answered < SENT_MAX);
        assert_int_equal(sd_event_now(f->e, CLOCK_MONOTONIC, &f->answered_at[f->n_answered]), 0);
        outbox_answer(f->o, a->step.v, a->step.retry_after,
                      a->step.detail ? a->step.detail : outbox_verdict_to_string(a->step.v), a->step.ts);
        return 0;
}

static void arm_answer(Fake *f, const Step *st) {
        sd_event_source *s = NULL;
        Answer *a = malloc(sizeof *a);

        /* from the loop, never inside send(): as slack.c answers */
        assert_non_null(a);
        *a = (Answer) { .fake = f, .step = *st };
        assert_int_equal(sd_event_add_defer(f->e, &s, answer_handler, a), 0);
        assert_int_equal(sd_event_source_set_destroy_callback(s, free), 0);
        assert_true(sd_event_source_set_floating(s, true) >= 0);
        sd_event_source_unref(s);
}

static int fake_send(void *userdata, const OutboxRecord *r, const char *thread_ts) {
        Fake *f = userdata;
        char name[32];
        Sent *s;

        assert_true(f->n_sent < SENT_MAX);
        /* write-ahead: nothing goes out before its file is on disk */
        snprintf(name, sizeof name, "%020" PRIu64 ".json", r->seq);
        if (!r->in_memory) {
                assert_false(r->writing);
                assert_true(exists(f->outbox, name));
        }
        if (f->fail_sends > 0) {
                f->fail_sends--;
                s = &f->sent[f->n_sent++];
                *s = (Sent) { .seq = r->seq };
                assert_int_equal(sd_event_now(f->e, CLOCK_MONOTONIC, &s->at), 0);
                return -ECONNREFUSED;
        }
        s = &f->sent[f->n_sent++];
        *s = (Sent) { .seq = r->seq, .role = r->role, .test = r->test, .has_thread = thread_ts != NULL };
        snprintf(s->kind, sizeof s->kind, "%s", r->kind);
        snprintf(s->incident, sizeof s->incident, "%s", strempty(r->incident));
        snprintf(s->thread, sizeof s->thread, "%s", strempty(thread_ts));
        snprintf(s->payload, sizeof s->payload, "%s", r->payload);
        assert_int_equal(sd_event_now(f->e, CLOCK_MONOTONIC, &s->at), 0);
        /* the next scripted answer, if any; else held until answer_now() */
        if (f->next_step < f->n_script)
                arm_answer(f, &f->script[f->next_step++]);
        return 0;
}

static void fake_thread(void *userdata, const char *incident, const char *ts) {
        Fake *f = userdata;

        f->n_thread++;
        snprintf(f->thread_incident, sizeof f->thread_incident, "%s", incident);
        snprintf(f->thread_ts, sizeof f->thread_ts, "%s", ts);
}

static void fake_answered(void *userdata, uint64_t seq, OutboxVerdict v, const char *detail) {
        Fake *f = userdata;

        assert_true(f->n_answered < SENT_MAX);
        f->answered_seq[f->n_answered] = seq;
        f->answered_v[f->n_answered] = v;
        f->n_answered++;
}

static const OutboxTransport fake_transport = {
        .send = fake_send,
        .thread = fake_thread,
        .answered = fake_answered,
};

static void script(Fake *f, OutboxVerdict v, usec_t retry_after, const char *ts) {
        assert_true(f->n_script < SENT_MAX);
        f->script[f->n_script++] = (Step) { .v = v, .retry_after = retry_after, .ts = ts };
}

/* Answer the record in flight now (it was held: no script step left). */
static void answer_now(Fake *f, OutboxVerdict v, usec_t retry_after, const char *ts) {
        arm_answer(f, &(Step) { .v = v, .retry_after = retry_after, .ts = ts });
}

static usec_t mono_now(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (usec_t) ts.tv_sec * USEC_PER_SEC + (usec_t) ts.tv_nsec / 1000;
}

/* Run the loop until `n_sent` sends happened, at most `timeout`. */
static bool run_until_sent(Fake *f, size_t n_sent, usec_t timeout) {
        usec_t end = mono_now() + timeout;

        while (f->n_sent < n_sent && mono_now() < end)
                assert_true(sd_event_run(f->e, 20 * USEC_PER_MSEC) >= 0);
        return f->n_sent >= n_sent;
}

static bool run_until_answered(Fake *f, size_t n, usec_t timeout) {
        usec_t end = mono_now() + timeout;

        while (f->n_answered < n && mono_now() < end)
                assert_true(sd_event_run(f->e, 20 * USEC_PER_MSEC) >= 0);
        return f->n_answered >= n;
}

static void run_for(Fake *f, usec_t duration) {
        usec_t end = mono_now() + duration;

        while (mono_now() < end)
                assert_true(sd_event_run(f->e, 20 * USEC_PER_MSEC) >= 0);
}

static void fake_open(Fake *f) {
        assert_null(f->o);
        assert_int_equal(outbox_new(f->e, f->w, f->dir, &f->limits, &fake_transport, f, &f->o), 0);
        assert_non_null(f->o);
}

static void fake_close(Fake *f) {
        /* let queued defers run first: they point at this outbox */
        while (sd_event_run(f->e, 0) > 0)
                ;
        f->o = outbox_free(f->o);
}

static int setup(void **state) {
        Fake *f = calloc(1, sizeof *f);

        assert_non_null(f);
        snprintf(f->dir, sizeof f->dir, "/tmp/test-outbox-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->outbox, sizeof f->outbox, "%s/" OUTBOX_DIR, f->dir);
        snprintf(f->dead, sizeof f->dead, "%s/dead", f->outbox);
        assert_int_equal(sd_event_new(&f->e), 0);
        f->limits = (OutboxLimits) { .max_count = 100, .max_bytes = 1024 * 1024 };
        *state = f;
        return 0;
}

static int teardown(void **state) {
        Fake *f = *state;

        f->o = outbox_free(f->o);
        f->w = writer_free(f->w);
        sd_event_unref(f->e);
        rm_rf(f->dir);
        free(f);
        return 0;
}

static uint64_t add(Fake *f, const char *kind, const char *incident, OutboxRole role, bool test) {
        _cleanup_(freep) char *payload = NULL;
        uint64_t seq = 0;

        assert_true(asprintf(&payload, "{\"text\":\"%s %s\"}", kind, strempty(incident)) > 0);
        assert_int_equal(outbox_add(f->o, kind, incident, role, test, payload, &seq), 0);
        assert_true(seq > 0);
        return seq;
}

static usec_t wall_now(void) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (usec_t) ts.tv_sec * USEC_PER_SEC + (usec_t) ts.tv_nsec / 1000;
}

static json_object *status(Fake *f) {
        json_object *j = outbox_status_json(f->o, wall_now());

        assert_non_null(j);
        return j;
}

static int64_t status_int(json_object *j, const char *key) {
        json_object *v;

        if (!json_object_object_get_ex(j, key, &v))
                fail_msg("status lacks \"%s\": %s", key, json_object_to_json_string(j));
        return json_object_get_int64(v);
}

static bool status_bool(json_object *j, const char *key) {
        json_object *v;

        if (!json_object_object_get_ex(j, key, &v) || !json_object_is_type(v, json_type_boolean))
                fail_msg("status lacks boolean \"%s\": %s", key, json_object_to_json_string(j));
        return json_object_get_boolean(v);
}

/* --- delivery --------------------------------------------------------------- */

static void test_add_spools_files(void **state) {
        Fake *f = *state;
        _cleanup_(freep) char *text = NULL;
        OutboxRecord r = {};
        size_t len = 0;
        char path[PATH_MAX];

        fake_open(f);
        assert_true(exists(f->dir, OUTBOX_DIR));
        assert_true(exists(f->outbox, "dead"));
        assert_int_equal(add(f, "breach", "inc-1", OUTBOX_PARENT, false), 1);
        assert_int_equal(add(f, "remediating", "inc-1", OUTBOX_REPLY, false), 2);
        assert_int_equal(add(f, "pool-down", NULL, OUTBOX_STANDALONE, false), 3);
        /* durable as soon as outbox_add returns, before the loop ran once */
        assert_int_equal(f->n_sent, 0);
        assert_true(exists(f->outbox, NAME(01)));
        assert_true(exists(f->outbox, NAME(02)));
        assert_true(exists(f->outbox, NAME(03)));
        assert_int_equal(outbox_n_pending(f->o), 3);

        snprintf(path, sizeof path, "%s/" NAME(02), f->outbox);
        text = read_text(path, &len);
        assert_non_null(text);
        assert_int_equal(outbox_record_parse(text, len, &r, NULL), 0);
        assert_int_equal(r.seq, 2);
        assert_string_equal(r.kind, "remediating");
        assert_string_equal(r.incident, "inc-1");
        assert_int_equal(r.role, OUTBOX_REPLY);
        assert_false(r.test);
        assert_true(json_equal_text(r.payload, "{\"text\":\"remediating inc-1\"}"));
        outbox_record_done(&r);
}

static void test_delivery_in_order_one_at_a_time(void **state) {
        Fake *f = *state;

        fake_open(f);
        add(f, "a", NULL, OUTBOX_STANDALONE, false);
        add(f, "b", "inc-1", OUTBOX_PARENT, false);
        add(f, "c", "inc-1", OUTBOX_REPLY, false);

        for (size_t i = 0; i < 3; i++) {
                char name[32];

                assert_true(run_until_sent(f, i + 1, 2 * USEC_PER_SEC));
                /* nothing else goes while this one is in flight */
                run_for(f, 150 * USEC_PER_MSEC);
                assert_int_equal(f->n_sent, i + 1);
                assert_int_equal(f->sent[i].seq, i + 1);
                snprintf(name, sizeof name, "%020zu.json", i + 1);
                /* deleted only once delivered */
                assert_true(exists(f->outbox, name));
                assert_int_equal(outbox_n_pending(f->o), 3 - i);
                answer_now(f, OUTBOX_DELIVERED, USEC_INFINITY, NULL);
                assert_true(run_until_answered(f, i + 1, 2 * USEC_PER_SEC));
                assert_false(exists(f->outbox, name));
                assert_int_equal(f->answered_seq[i], i + 1);
                assert_int_equal(f->answered_v[i], OUTBOX_DELIVERED);
        }
        assert_string_equal(f->sent[0].kind, "a");
        assert_string_equal(f->sent[1].kind, "b");
        assert_string_equal(f->sent[2].kind, "c");
        assert_true(json_equal_text(f->sent[1].payload, "{\"text\":\"b inc-1\"}"));
        assert_int_equal(outbox_n_pending(f->o), 0);
        run_for(f, 100 * USEC_PER_MSEC);
        assert_int_equal(f->n_sent, 3);
        /* nothing left but dead/ */
        assert_int_equal(count_entries(f->outbox), 0);
}

static void on_quiet(void *userdata) {
        unsigned *n = userdata;

        (*n)++;
}

/* SIGTERM: the message in flight gets its answer (its file goes once
 * delivered), nothing further is sent, and the callback runs once. */
static void test_quiesce(void **state) {
        Fake *f = *state;
        unsigned quiet = 0;

        fake_open(f);
        assert_false(outbox_quiesce(f->o, on_quiet, &quiet)); /* nothing in flight: no callback */
        assert_int_equal(quiet, 0);
        f->o = outbox_free(f->o);

        fake_open(f);
        add(f, "a", NULL, OUTBOX_STANDALONE, false);
        add(f, "b", NULL, OUTBOX_STANDALONE, false);
        assert_true(run_until_sent(f, 1, 2 * USEC_PER_SEC));
        assert_true(outbox_quiesce(f->o, on_quiet, &quiet));
        assert_int_equal(quiet, 0);
        answer_now(f, OUTBOX_DELIVERED, USEC_INFINITY, NULL);
        assert_true(run_until_answered(f, 1, 2 * USEC_PER_SEC));
        assert_int_equal(quiet, 1);
        assert_false(exists(f->outbox, "00000000000000000001.json"));
        /* "b" stays on disk for the next start; a new message is spooled, not sent */
        add(f, "c", NULL, OUTBOX_STANDALONE, false);
        run_for(f, 200 * USEC_PER_MSEC);
        assert_int_equal(f->n_sent, 1);
        assert_int_equal(quiet, 1);
        assert_true(exists(f->outbox, "00000000000000000002.json"));
        assert_true(exists(f->outbox, "00000000000000000003.json"));
}

static void test_retry_after_backoff(void **state) {
        Fake *f = *state;
        json_object *j;
        usec_t gap;

        fake_open(f);
        script(f, OUTBOX_RETRY, USEC_INFINITY, NULL);
        script(f, OUTBOX_RETRY, 2 * USEC_PER_SEC, NULL);
        script(f, OUTBOX_DELIVERED, USEC_INFINITY, NULL);
        add(f, "breach", "inc-1", OUTBOX_PARENT, false);

        assert_true(run_until_answered(f, 1, 2 * USEC_PER_SEC));
        assert_int_equal(f->answered_v[0], OUTBOX_RETRY);
        /* still spooled, and a retry is scheduled within the first step */
        assert_true(exists(f->outbox, NAME(01)));
        j = status(f);
        assert_false(status_bool(j, "in_flight"));
        assert_true(status_int(j, "next_attempt_in_ms") > 0);
        assert_true(status_int(j, "next_attempt_in_ms") <= 1000);
        assert_int_equal(status_int(j, "pending"), 1);
        json_object_put(j);

        assert_true(run_until_sent(f, 2, 3 * USEC_PER_SEC));
        assert_int_equal(f->sent[1].seq, 1);
        gap = f->sent[1].at - f->answered_at[0];
        /* first retry: 1 s with jitter in [0.5 s, 1 s] (+ slack for a busy CI host) */
        assert_true(gap >= 500 * USEC_PER_MSEC);
        assert_true(gap <= 1500 * USEC_PER_MSEC);

        /* Retry-After 2 s: never sooner */
        assert_true(run_until_sent(f, 3, 4 * USEC_PER_SEC));
        assert_int_equal(f->sent[2].seq, 1);
        gap = f->sent[2].at - f->answered_at[1];
        assert_true(gap >= 2 * USEC_PER_SEC);
        assert_true(gap <= 2 * USEC_PER_SEC + 750 * USEC_PER_MSEC);

        assert_true(run_until_answered(f, 3, 2 * USEC_PER_SEC));
        assert_int_equal(f->answered_v[2], OUTBOX_DELIVERED);
        assert_false(exists(f->outbox, NAME(01)));
        j = status(f);
        assert_int_equal(status_int(j, "delivered"), 1);
        assert_int_equal(status_int(j, "pending"), 0);
        json_object_put(j);
}

static void test_retry_after_absurd(void **state) {
        Fake *f = *state;
        usec_t huge = 0;

        /* the largest Retry-After http.c accepts (a broken proxy's answer)
         * must mean "much later", never "now" in a tight loop */
        assert_int_equal(http_parse_retry_after("18446744073709", 0, &huge), 0);
        fake_open(f);
        script(f, OUTBOX_RETRY, huge, NULL);
        add(f, "a", NULL, OUTBOX_STANDALONE, false);
        assert_true(run_until_answered(f, 1, 2 * USEC_PER_SEC));
        run_for(f, 300 * USEC_PER_MSEC);
        assert_int_equal(f->n_sent, 1);
        assert_true(exists(f->outbox, NAME(01)));
        /* an operator's resume still tries at once */
        script(f, OUTBOX_DELIVERED, USEC_INFINITY, NULL);
        outbox_resume(f->o, false);
        assert_true(run_until_answered(f, 2, 2 * USEC_PER_SEC));
        assert_int_equal(f->n_sent, 2);
}

static void test_retry_resets_after_success(void **state) {
        Fake *f = *state;
        usec_t gap;
        json_object *j;

        fake_open(f);
        script(f, OUTBOX_RETRY, USEC_INFINITY, NULL);
        script(f, OUTBOX_DELIVERED, USEC_INFINITY, NULL);
        script(f, OUTBOX_RETRY, USEC_INFINITY, NULL);
        script(f, OUTBOX_DELIVERED, USEC_INFINITY, NULL);
        add(f, "a", NULL, OUTBOX_STANDALONE, false);
        add(f, "b", NULL, OUTBOX_STANDALONE, false);
        assert_true(run_until_answered(f, 3, 4 * USEC_PER_SEC));
        assert_int_equal(f->answered_seq[2], 2);
        j = status(f);
        /* the first step's range [0.5 s, 1 s], not the second's [1 s, 2 s] */
        assert_true(status_int(j, "next_attempt_in_ms") < 1000);
        json_object_put(j);
        assert_true(run_until_answered(f, 4, 3 * USEC_PER_SEC));
        assert_int_equal(f->sent[3].seq, 2);
        /* b's first failure is a first retry again, not a second one (1-2 s) */
        gap = f->sent[3].at - f->answered_at[2];
        assert_true(gap >= 500 * USEC_PER_MSEC);
        assert_true(gap <= 1500 * USEC_PER_MSEC);
}

static void test_send_cannot_start(void **state) {
        Fake *f = *state;
        json_object *j, *v;

        fake_open(f);
        f->fail_sends = 1;
        script(f, OUTBOX_DELIVERED, USEC_INFINITY, NULL);
        add(f, "a", NULL, OUTBOX_STANDALONE, false);
        assert_true(run_until_sent(f, 1, 2 * USEC_PER_SEC));
        run_for(f, 100 * USEC_PER_MSEC);
        /* a failure to start is a retry, with backoff, not a loop */
        assert_int_equal(f->n_sent, 1);
        j = status(f);
        assert_true(json_object_object_get_ex(j, "last_error", &v));
        assert_true(strlen(json_object_get_string(v)) > 0);
        json_object_put(j);
        assert_true(run_until_answered(f, 2, 3 * USEC_PER_SEC));
        assert_int_equal(f->n_sent, 2);
        assert_true(f->sent[1].at - f->sent[0].at >= 500 * USEC_PER_MSEC);
        assert_int_equal(outbox_n_pending(f->o), 0);
}

static void test_rejected_goes_dead(void **state) {
        Fake *f = *state;
        json_object *j, *v;

        fake_open(f);
        script(f, OUTBOX_REJECTED, USEC_INFINITY, NULL);
        script(f, OUTBOX_DELIVERED, USEC_INFINITY, NULL);
        add(f, "bad", NULL, OUTBOX_STANDALONE, false);
        add(f, "good", NULL, OUTBOX_STANDALONE, false);
        assert_true(run_until_answered(f, 2, 2 * USEC_PER_SEC));
        assert_int_equal(f->sent[0].seq, 1);
        assert_int_equal(f->sent[1].seq, 2);
        assert_int_equal(f->answered_v[0], OUTBOX_REJECTED);
        assert_false(exists(f->outbox, NAME(01)));
        assert_true(exists(f->dead, NAME(01)));
        assert_false(exists(f->outbox, NAME(02)));
        assert_false(exists(f->dead, NAME(02)));
        j = status(f);
        assert_int_equal(status_int(j, "dead"), 1);
        assert_int_equal(status_int(j, "delivered"), 1);
        assert_int_equal(status_int(j, "pending"), 0);
        assert_true(json_object_object_get_ex(j, "last_error_at", &v));
        json_object_put(j);
        /* a dead letter is not retried */
        run_for(f, 200 * USEC_PER_MSEC);
        assert_int_equal(f->n_sent, 2);
}

static void test_requeue_dead(void **state) {
        Fake *f = *state;
        json_object *j;

        fake_open(f);
        script(f, OUTBOX_REJECTED, USEC_INFINITY, NULL);
        add(f, "bad", NULL, OUTBOX_STANDALONE, false);
        assert_true(run_until_answered(f, 1, 2 * USEC_PER_SEC));
        assert_true(exists(f->dead, NAME(01)));
        script(f, OUTBOX_DELIVERED, USEC_INFINITY, NULL);
        outbox_resume(f->o, true);
        assert_true(run_until_answered(f, 2, 2 * USEC_PER_SEC));
        assert_int_equal(f->sent[1].seq, 1);
        assert_string_equal(f->sent[1].kind, "bad");
        assert_false(exists(f->dead, NAME(01)));
        assert_false(exists(f->outbox, NAME(01)));
        j = status(f);
        assert_int_equal(status_int(j, "dead"), 0);
        json_object_put(j);
}

static void test_broken_config_pauses(void **state) {
        Fake *f = *state;
        json_object *j, *v;

        fake_open(f);
        script(f, OUTBOX_BROKEN_CONFIG, USEC_INFINITY, NULL);
        add(f, "a", NULL, OUTBOX_STANDALONE, false);
        assert_true(run_until_answered(f, 1, 2 * USEC_PER_SEC));
        assert_int_equal(f->answered_v[0], OUTBOX_BROKEN_CONFIG);
        add(f, "b", NULL, OUTBOX_STANDALONE, false);
        run_for(f, 1500 * USEC_PER_MSEC);
        /* paused: nothing knocks, every message kept */
        assert_int_equal(f->n_sent, 1);
        assert_true(exists(f->outbox, NAME(01)));
        assert_true(exists(f->outbox, NAME(02)));
        j = status(f);
        assert_true(status_bool(j, "paused"));
        assert_int_equal(status_int(j, "pending"), 2);
        assert_true(json_object_object_get_ex(j, "last_error", &v));
        assert_string_equal(json_object_get_string(v), "broken-config");
        json_object_put(j);

        script(f, OUTBOX_DELIVERED, USEC_INFINITY, NULL);
        script(f, OUTBOX_DELIVERED, USEC_INFINITY, NULL);
        outbox_resume(f->o, false);
        assert_true(run_until_answered(f, 3, 2 * USEC_PER_SEC));
        assert_int_equal(f->sent[1].seq, 1);
        assert_int_equal(f->sent[2].seq, 2);
        j = status(f);
        assert_false(status_bool(j, "paused"));
        assert_int_equal(status_int(j, "pending"), 0);
        assert_false(json_object_object_get_ex(j, "last_error", &v));
        json_object_put(j);
}

static void test_test_alert_while_paused(void **state) {
        Fake *f = *state;

        fake_open(f);
        script(f, OUTBOX_BROKEN_CONFIG, USEC_INFINITY, NULL);
        add(f, "a", NULL, OUTBOX_STANDALONE, false);
        assert_true(run_until_answered(f, 1, 2 * USEC_PER_SEC));
        /* an operator's test wants an answer now, and goes first */
        script(f, OUTBOX_DELIVERED, USEC_INFINITY, NULL);
        add(f, "test", NULL, OUTBOX_STANDALONE, true);
        assert_true(run_until_sent(f, 2, 1 * USEC_PER_SEC));
        assert_string_equal(f->sent[1].kind, "test");
        assert_true(f->sent[1].test);
}

static void test_threads(void **state) {
        Fake *f = *state;

        fake_open(f);
        script(f, OUTBOX_DELIVERED, USEC_INFINITY, "111.222");
        for (size_t i = 0; i < 4; i++)
                script(f, OUTBOX_DELIVERED, USEC_INFINITY, NULL);
        add(f, "breach", "inc-1", OUTBOX_PARENT, false);
        add(f, "remediating", "inc-1", OUTBOX_REPLY, false);
        add(f, "remediating", "inc-2", OUTBOX_REPLY, false);
        add(f, "pool-down", NULL, OUTBOX_STANDALONE, false);
        add(f, "back", "inc-1", OUTBOX_REPLY, false);
        assert_true(run_until_answered(f, 5, 3 * USEC_PER_SEC));

        assert_int_equal(f->n_thread, 1);
        assert_string_equal(f->thread_incident, "inc-1");
        assert_string_equal(f->thread_ts, "111.222");
        assert_false(f->sent[0].has_thread);          /* the parent itself */
        assert_true(f->sent[1].has_thread);
        assert_string_equal(f->sent[1].thread, "111.222");
        assert_int_equal(f->sent[1].role, OUTBOX_REPLY);
        assert_false(f->sent[2].has_thread);          /* another incident */
        assert_false(f->sent[3].has_thread);          /* standalone */
        assert_true(f->sent[4].has_thread);
        assert_string_equal(f->sent[4].thread, "111.222");
}

static void test_thread_from_state(void **state) {
        Fake *f = *state;

        fake_open(f);
        /* a thread known from state.json (the parent went out before a reboot) */
        assert_int_equal(outbox_set_thread(f->o, "inc-9", "999.000"), 0);
        assert_int_equal(outbox_set_thread(f->o, "inc-9", "999.001"), 0); /* updated, not duplicated */
        assert_true(outbox_set_thread(f->o, "", "1.2") < 0);
        assert_true(outbox_set_thread(f->o, "inc-1", NULL) < 0);
        for (size_t i = 0; i < 4; i++)
                script(f, OUTBOX_DELIVERED, USEC_INFINITY, NULL);
        add(f, "back", "inc-9", OUTBOX_REPLY, false);
        add(f, "back", "inc-8", OUTBOX_REPLY, false);
        /* only replies go into the thread: not a new parent, not a standalone */
        add(f, "breach", "inc-9", OUTBOX_PARENT, false);
        add(f, "note", "inc-9", OUTBOX_STANDALONE, false);
        assert_true(run_until_answered(f, 4, 2 * USEC_PER_SEC));
        assert_true(f->sent[0].has_thread);
        assert_string_equal(f->sent[0].thread, "999.001");
        assert_false(f->sent[1].has_thread);
        assert_int_equal(f->sent[2].role, OUTBOX_PARENT);
        assert_false(f->sent[2].has_thread);
        assert_int_equal(f->sent[3].role, OUTBOX_STANDALONE);
        assert_string_equal(f->sent[3].incident, "inc-9");
        assert_false(f->sent[3].has_thread);
        assert_int_equal(f->n_thread, 0);
}

static void test_parent_without_ts(void **state) {
        Fake *f = *state;

        fake_open(f);
        /* webhooks give no ts: replies go out standalone */
        script(f, OUTBOX_DELIVERED, USEC_INFINITY, NULL);
        script(f, OUTBOX_DELIVERED, USEC_INFINITY, NULL);
        add(f, "breach", "inc-1", OUTBOX_PARENT, false);
        add(f, "back", "inc-1", OUTBOX_REPLY, false);
        assert_true(run_until_answered(f, 2, 2 * USEC_PER_SEC));
        assert_int_equal(f->n_thread, 0);
        assert_false(f->sent[1].has_thread);
}

/* --- the fleet thread: defer and route ------------------------------------ */

/* A held host's breach waits for the verdict, then goes with its holding
 * notices as replies into the fleet thread, whose parent goes ahead of
 * them; once the host gets its turn, its incident opens its own thread. */
static void test_defer_then_fleet_thread(void **state) {
        Fake *f = *state;

        fake_open(f);
        assert_int_equal(outbox_defer(f->o, "inc-1", mono_now() + 10 * USEC_PER_SEC), 0);
        add(f, "breach", "inc-1", OUTBOX_PARENT, false);
        add(f, "holding", "inc-1", OUTBOX_REPLY, false);
        run_for(f, 200 * USEC_PER_MSEC);
        assert_int_equal(f->n_sent, 0); /* waiting for the verdict */

        script(f, OUTBOX_DELIVERED, USEC_INFINITY, "555.100");
        for (size_t i = 0; i < 5; i++)
                script(f, OUTBOX_DELIVERED, USEC_INFINITY, i == 3 ? "777.000" : NULL);
        assert_int_equal(outbox_add_ahead(f->o, "fleet", "fleet:claim:h:1", OUTBOX_PARENT, "{\"text\":\"pool\"}"), 0);
        assert_int_equal(outbox_route(f->o, "inc-1", "fleet:claim:h:1"), 0);
        add(f, "holding", "inc-1", OUTBOX_REPLY, false); /* a reminder, routed too */
        assert_true(run_until_answered(f, 4, 3 * USEC_PER_SEC));
        assert_string_equal(f->sent[0].kind, "fleet");
        assert_int_equal(f->sent[0].role, OUTBOX_PARENT);
        assert_false(f->sent[0].has_thread);
        for (size_t i = 1; i < 4; i++) {
                assert_string_equal(f->sent[i].incident, "inc-1");
                assert_int_equal(f->sent[i].role, OUTBOX_REPLY);
                assert_true(f->sent[i].has_thread);
                assert_string_equal(f->sent[i].thread, "555.100");
        }
        assert_string_equal(f->sent[1].kind, "breach");
        assert_int_equal(f->n_thread, 1);
        assert_string_equal(f->thread_incident, "fleet:claim:h:1");

        /* our turn: the route ends, "stopped holding" opens our own thread */
        assert_int_equal(outbox_route(f->o, "inc-1", NULL), 0);
        add(f, "holding", "inc-1", OUTBOX_PARENT, false);
        add(f, "remediating", "inc-1", OUTBOX_REPLY, false);
        assert_true(run_until_answered(f, 6, 3 * USEC_PER_SEC));
        assert_int_equal(f->sent[4].role, OUTBOX_PARENT);
        assert_false(f->sent[4].has_thread);
        assert_true(f->sent[5].has_thread);
        assert_string_equal(f->sent[5].thread, "777.000");
        assert_string_equal(f->thread_incident, "inc-1");
}

/* A verdict that never comes, or one that says "own thread": the breach
 * goes as it was spooled, never lost. */
static void test_defer_bounded(void **state) {
        Fake *f = *state;
        usec_t t0;

        fake_open(f);
        for (size_t i = 0; i < 3; i++)
                script(f, OUTBOX_DELIVERED, USEC_INFINITY, NULL);
        t0 = mono_now();
        assert_int_equal(outbox_defer(f->o, "inc-1", t0 + 300 * USEC_PER_MSEC), 0);
        add(f, "breach", "inc-1", OUTBOX_PARENT, false);
        assert_true(run_until_sent(f, 1, 3 * USEC_PER_SEC));
        assert_true(f->sent[0].at >= t0 + 250 * USEC_PER_MSEC);
        assert_int_equal(f->sent[0].role, OUTBOX_PARENT);

        assert_int_equal(outbox_defer(f->o, "inc-2", mono_now() + 10 * USEC_PER_SEC), 0);
        add(f, "breach", "inc-2", OUTBOX_PARENT, false);
        run_for(f, 100 * USEC_PER_MSEC);
        assert_int_equal(f->n_sent, 1);
        t0 = mono_now();
        assert_int_equal(outbox_route(f->o, "inc-2", NULL), 0); /* left, or Redis unreachable */
        assert_true(run_until_sent(f, 2, 3 * USEC_PER_SEC));
        assert_true(f->sent[1].at < t0 + 1 * USEC_PER_SEC);
        assert_int_equal(f->sent[1].role, OUTBOX_PARENT);
        assert_false(f->sent[1].has_thread);
        assert_true(outbox_defer(f->o, "", 1) < 0);
        assert_true(outbox_route(f->o, NULL, NULL) < 0);
}

static void test_restart_reloads(void **state) {
        Fake *f = *state;

        fake_open(f);
        add(f, "a", NULL, OUTBOX_STANDALONE, false);
        add(f, "b", "inc-1", OUTBOX_PARENT, false);
        add(f, "c", "inc-1", OUTBOX_REPLY, false);
        /* the first is in flight when the agent stops: nothing answered */
        assert_true(run_until_sent(f, 1, 2 * USEC_PER_SEC));
        fake_close(f);
        assert_true(exists(f->outbox, NAME(01)));

        f->n_sent = 0;
        fake_open(f);
        assert_int_equal(outbox_n_pending(f->o), 3);
        for (size_t i = 0; i < 4; i++)
                script(f, OUTBOX_DELIVERED, USEC_INFINITY, NULL);
        /* the sequence continues after the highest on disk */
        assert_int_equal(add(f, "d", NULL, OUTBOX_STANDALONE, false), 4);
        assert_true(run_until_answered(f, 4, 3 * USEC_PER_SEC));
        /* at least once: the one in flight goes again, then the rest in order */
        assert_int_equal(f->sent[0].seq, 1);
        assert_int_equal(f->sent[1].seq, 2);
        assert_int_equal(f->sent[2].seq, 3);
        assert_int_equal(f->sent[3].seq, 4);
        assert_string_equal(f->sent[2].kind, "c");
        assert_string_equal(f->sent[2].incident, "inc-1");
        assert_int_equal(f->sent[2].role, OUTBOX_REPLY);
}

static void test_restart_seq_counts_dead(void **state) {
        Fake *f = *state;
        _cleanup_(freep) char *rec = format_record(42, "bad", NULL, OUTBOX_STANDALONE, false, "{}");
        char path[PATH_MAX];
        json_object *j;

        assert_int_equal(mkdir(f->outbox, 0700), 0);
        assert_int_equal(mkdir(f->dead, 0700), 0);
        snprintf(path, sizeof path, "%s/" NAME(42), f->dead);
        write_text(path, rec, strlen(rec));
        fake_open(f);
        assert_int_equal(outbox_n_pending(f->o), 0);
        /* a dead letter is not sent again by itself... */
        run_for(f, 100 * USEC_PER_MSEC);
        assert_int_equal(f->n_sent, 0);
        j = status(f);
        assert_int_equal(status_int(j, "dead"), 1);
        json_object_put(j);
        /* ... but its seq is never reused (a requeue would collide) */
        assert_int_equal(add(f, "new", NULL, OUTBOX_STANDALONE, false), 43);
}

static void test_restart_order_from_disk(void **state) {
        Fake *f = *state;
        static const uint64_t seqs[] = { 9, 3, 12, 5 };

        /* files written by an earlier run, listed in any order */
        assert_int_equal(mkdir(f->outbox, 0700), 0);
        for (size_t i = 0; i < ELEMENTSOF(seqs); i++) {
                _cleanup_(freep) char *rec = format_record(seqs[i], "k", NULL, OUTBOX_STANDALONE, false, "{}");
                char path[PATH_MAX];

                snprintf(path, sizeof path, "%s/%020" PRIu64 ".json", f->outbox, seqs[i]);
                write_text(path, rec, strlen(rec));
        }
        for (size_t i = 0; i < 5; i++)
                script(f, OUTBOX_DELIVERED, USEC_INFINITY, NULL);
        fake_open(f);
        assert_int_equal(outbox_n_pending(f->o), 4);
        assert_int_equal(add(f, "k", NULL, OUTBOX_STANDALONE, false), 13);
        assert_true(run_until_answered(f, 5, 3 * USEC_PER_SEC));
        assert_int_equal(f->sent[0].seq, 3);
        assert_int_equal(f->sent[1].seq, 5);
        assert_int_equal(f->sent[2].seq, 9);
        assert_int_equal(f->sent[3].seq, 12);
        assert_int_equal(f->sent[4].seq, 13);
}

static void test_corrupt_and_stale_files(void **state) {
        Fake *f = *state;
        _cleanup_(freep) char *r1 = format_record(1, "one", NULL, OUTBOX_STANDALONE, false, "{}");
        _cleanup_(freep) char *r3 = format_record(3, "three", NULL, OUTBOX_STANDALONE, false, "{}");
        _cleanup_(freep) char *r9 = format_record(9, "nine", NULL, OUTBOX_STANDALONE, false, "{}");
        char path[PATH_MAX];

        assert_int_equal(mkdir(f->outbox, 0700), 0);
        snprintf(path, sizeof path, "%s/" NAME(01), f->outbox);
        write_text(path, r1, strlen(r1));
        snprintf(path, sizeof path, "%s/" NAME(02), f->outbox);
        write_text(path, "{\"version\":1,\"seq\":2,\"cre", 25); /* torn */
        snprintf(path, sizeof path, "%s/" NAME(03), f->outbox);
        write_text(path, r3, strlen(r3));
        snprintf(path, sizeof path, "%s/" NAME(04), f->outbox);
        write_text(path, r9, strlen(r9)); /* valid, but not the record its name says */
        snprintf(path, sizeof path, "%s/" NAME(05) ".tmp-0123456789ab", f->outbox);
        write_text(path, r1, strlen(r1) / 2);
        snprintf(path, sizeof path, "%s/notes.txt", f->outbox);
        write_text(path, "x", 1);

        fake_open(f);
        assert_int_equal(outbox_n_pending(f->o), 2);
        assert_false(exists(f->outbox, NAME(02)));
        assert_true(exists(f->outbox, NAME(02) ".corrupt"));
        assert_false(exists(f->outbox, NAME(04)));
        assert_true(exists(f->outbox, NAME(04) ".corrupt"));
        assert_false(exists(f->outbox, NAME(05) ".tmp-0123456789ab"));
        assert_true(exists(f->outbox, "notes.txt")); /* not ours: left alone */
        {
                json_object *j = status(f), *v;
                assert_true(json_object_object_get_ex(j, "last_error", &v));
                json_object_put(j);
        }

        script(f, OUTBOX_DELIVERED, USEC_INFINITY, NULL);
        script(f, OUTBOX_DELIVERED, USEC_INFINITY, NULL);
        script(f, OUTBOX_DELIVERED, USEC_INFINITY, NULL);
        /* the corrupt names are never reused */
        assert_int_equal(add(f, "new", NULL, OUTBOX_STANDALONE, false), 5);
        assert_true(run_until_answered(f, 3, 2 * USEC_PER_SEC));
        assert_int_equal(f->sent[0].seq, 1);
        assert_string_equal(f->sent[0].kind, "one");
        assert_int_equal(f->sent[1].seq, 3);
        assert_int_equal(f->sent[2].seq, 5);
        /* the corrupt files stay for a human */
        assert_true(exists(f->outbox, NAME(02) ".corrupt"));
}

static void test_limits_drop_and_report(void **state) {
        Fake *f = *state;
        json_object *j;

        f->limits = (OutboxLimits) { .max_count = 3, .max_bytes = 0 };
        fake_open(f);
        add(f, "a", NULL, OUTBOX_STANDALONE, false);
        assert_true(run_until_sent(f, 1, 2 * USEC_PER_SEC)); /* a in flight, held */
        add(f, "b", "inc-1", OUTBOX_PARENT, false);
        add(f, "c", NULL, OUTBOX_STANDALONE, false);
        assert_int_equal(outbox_n_pending(f->o), 3);
        add(f, "d", "inc-1", OUTBOX_REPLY, false);
        /* c: the oldest non-incident one that is not in flight */
        assert_int_equal(outbox_n_pending(f->o), 3);
        assert_true(exists(f->outbox, NAME(01)));
        assert_true(exists(f->outbox, NAME(02)));
        assert_false(exists(f->outbox, NAME(03)));
        assert_true(exists(f->outbox, NAME(04)));
        j = status(f);
        assert_int_equal(status_int(j, "dropped"), 1);
        json_object_put(j);

        /* once delivery works again, the loss is reported */
        for (size_t i = 0; i < 3; i++)
                script(f, OUTBOX_DELIVERED, USEC_INFINITY, NULL);
        answer_now(f, OUTBOX_DELIVERED, USEC_INFINITY, NULL);
        assert_true(run_until_answered(f, 4, 3 * USEC_PER_SEC));
        assert_int_equal(f->n_sent, 4);
        assert_string_equal(f->sent[1].kind, "b");
        assert_string_equal(f->sent[2].kind, "d");
        assert_string_equal(f->sent[3].kind, "dropped");
        assert_int_equal(f->sent[3].seq, 5);
        assert_int_equal(f->sent[3].role, OUTBOX_STANDALONE);
        assert_string_equal(f->sent[3].incident, "");
        assert_non_null(strstr(f->sent[3].payload, "1 alert"));
        assert_true(json_equal_text(f->sent[3].payload, f->sent[3].payload)); /* valid JSON */
        run_for(f, 100 * USEC_PER_MSEC);
        assert_int_equal(f->n_sent, 4); /* reported once */
}

static void test_limits_incident_last(void **state) {
        Fake *f = *state;

        f->limits = (OutboxLimits) { .max_count = 2, .max_bytes = 0 };
        fake_open(f);
        add(f, "a", "inc-1", OUTBOX_PARENT, false);
        assert_true(run_until_sent(f, 1, 2 * USEC_PER_SEC));
        add(f, "b", "inc-1", OUTBOX_REPLY, false);
        add(f, "c", "inc-1", OUTBOX_REPLY, false);
        /* all incident messages: the oldest that is not in flight goes */
        assert_int_equal(outbox_n_pending(f->o), 2);
        assert_true(exists(f->outbox, NAME(01)));
        assert_false(exists(f->outbox, NAME(02)));
        assert_true(exists(f->outbox, NAME(03)));
}

static void test_limits_bytes(void **state) {
        Fake *f = *state;
        _cleanup_(freep) char *big = NULL;

        f->limits = (OutboxLimits) { .max_count = 0, .max_bytes = 600 };
        fake_open(f);
        add(f, "a", NULL, OUTBOX_STANDALONE, false);
        assert_true(run_until_sent(f, 1, 2 * USEC_PER_SEC));
        add(f, "b", NULL, OUTBOX_STANDALONE, false);
        add(f, "c", "inc", OUTBOX_PARENT, false);
        add(f, "d", "inc", OUTBOX_REPLY, false);
        add(f, "e", "inc", OUTBOX_REPLY, false);
        /* each record is ~150 bytes: b went to make room */
        assert_false(exists(f->outbox, NAME(02)));
        assert_true(exists(f->outbox, NAME(01)));
        assert_true(exists(f->outbox, NAME(05)));

        /* a record that can never fit is refused, and drops nothing */
        big = calloc(1, 1000);
        assert_non_null(big);
        memcpy(big, "{\"text\":\"", 9);
        memset(big + 9, 'x', 700);
        memcpy(big + 709, "\"}", 3);
        assert_int_equal(outbox_add(f->o, "big", NULL, OUTBOX_STANDALONE, false, big, NULL), -E2BIG);
        assert_true(exists(f->outbox, NAME(05)));
        assert_false(exists(f->outbox, NAME(06)));
}

static void test_add_rejects_bad_payload(void **state) {
        Fake *f = *state;
        uint64_t seq = 77;

        fake_open(f);
        assert_true(outbox_add(f->o, "k", NULL, OUTBOX_STANDALONE, false, "not json", &seq) < 0);
        assert_int_equal(seq, 77);
        assert_int_equal(outbox_n_pending(f->o), 0);
        assert_int_equal(count_entries(f->outbox), 0);
        /* the seq was not used up */
        assert_int_equal(add(f, "k", NULL, OUTBOX_STANDALONE, false), 1);
}

static void test_add_only_what_reloads(void **state) {
        Fake *f = *state;
        uint64_t seq;
        int k1, k2;

        /* whatever outbox_add accepts must load again after a restart;
         * otherwise a spooled alert turns into a .corrupt file at boot */
        fake_open(f);
        script(f, OUTBOX_BROKEN_CONFIG, USEC_INFINITY, NULL); /* keep them queued */
        k1 = outbox_add(f->o, "", NULL, OUTBOX_STANDALONE, false, "{}", &seq);
        k2 = outbox_add(f->o, "k", "", OUTBOX_REPLY, false, "{}", &seq);
        assert_true(run_until_answered(f, 1, 2 * USEC_PER_SEC) || (k1 < 0 && k2 < 0));
        fake_close(f);
        fake_open(f);
        assert_int_equal(outbox_n_pending(f->o), (k1 >= 0) + (k2 >= 0));
        assert_false(exists(f->outbox, NAME(01) ".corrupt"));
        assert_false(exists(f->outbox, NAME(02) ".corrupt"));
}

static void test_test_goes_ahead(void **state) {
        Fake *f = *state;

        fake_open(f);
        add(f, "a", NULL, OUTBOX_STANDALONE, false);
        assert_true(run_until_sent(f, 1, 2 * USEC_PER_SEC)); /* a in flight */
        add(f, "b", "inc", OUTBOX_PARENT, false);
        add(f, "c", NULL, OUTBOX_STANDALONE, false);
        add(f, "t1", NULL, OUTBOX_STANDALONE, true);
        add(f, "t2", NULL, OUTBOX_STANDALONE, true);
        add(f, "d", NULL, OUTBOX_STANDALONE, false);
        run_for(f, 100 * USEC_PER_MSEC);
        assert_int_equal(f->n_sent, 1); /* the one in flight is not interrupted */
        for (size_t i = 0; i < 5; i++)
                script(f, OUTBOX_DELIVERED, USEC_INFINITY, NULL);
        answer_now(f, OUTBOX_DELIVERED, USEC_INFINITY, NULL);
        assert_true(run_until_answered(f, 6, 3 * USEC_PER_SEC));
        assert_string_equal(f->sent[0].kind, "a");
        assert_string_equal(f->sent[1].kind, "t1");
        assert_string_equal(f->sent[2].kind, "t2");
        assert_string_equal(f->sent[3].kind, "b");
        assert_string_equal(f->sent[4].kind, "c");
        assert_string_equal(f->sent[5].kind, "d");
        assert_true(f->sent[1].test);
        assert_false(f->sent[3].test);
}

static void test_answer_without_flight(void **state) {
        Fake *f = *state;

        fake_open(f);
        /* a stray answer changes nothing */
        outbox_answer(f->o, OUTBOX_DELIVERED, USEC_INFINITY, "ok", "1.2");
        add(f, "a", NULL, OUTBOX_STANDALONE, false);
        outbox_answer(f->o, OUTBOX_DELIVERED, USEC_INFINITY, "ok", "1.2");
        assert_int_equal(outbox_n_pending(f->o), 1);
        assert_true(exists(f->outbox, NAME(01)));
        assert_int_equal(f->n_answered, 0);
}

static void test_status_json(void **state) {
        Fake *f = *state;
        json_object *j, *v;
        usec_t now_s = (usec_t) time(NULL);
        struct stat st1, st2;
        char path[PATH_MAX];

        fake_open(f);
        j = status(f);
        assert_int_equal(status_int(j, "pending"), 0);
        assert_int_equal(status_int(j, "bytes"), 0);
        assert_false(status_bool(j, "in_flight"));
        assert_false(status_bool(j, "paused"));
        assert_int_equal(status_int(j, "delivered"), 0);
        assert_int_equal(status_int(j, "dropped"), 0);
        assert_int_equal(status_int(j, "dead"), 0);
        assert_false(json_object_object_get_ex(j, "last_error", &v));
        assert_false(json_object_object_get_ex(j, "last_ok_at", &v));
        json_object_put(j);

        add(f, "a", NULL, OUTBOX_STANDALONE, false);
        add(f, "b", NULL, OUTBOX_STANDALONE, false);
        assert_true(run_until_sent(f, 1, 2 * USEC_PER_SEC));
        snprintf(path, sizeof path, "%s/" NAME(01), f->outbox);
        assert_int_equal(stat(path, &st1), 0);
        snprintf(path, sizeof path, "%s/" NAME(02), f->outbox);
        assert_int_equal(stat(path, &st2), 0);
        j = status(f);
        assert_int_equal(status_int(j, "pending"), 2);
        assert_int_equal(status_int(j, "bytes"), st1.st_size + st2.st_size);
        assert_true(status_bool(j, "in_flight"));
        json_object_put(j);

        answer_now(f, OUTBOX_DELIVERED, USEC_INFINITY, NULL);
        assert_true(run_until_answered(f, 1, 2 * USEC_PER_SEC));
        assert_true(run_until_sent(f, 2, 2 * USEC_PER_SEC));
        j = status(f);
        assert_int_equal(status_int(j, "delivered"), 1);
        assert_int_equal(status_int(j, "pending"), 1);
        assert_int_equal(status_int(j, "bytes"), st2.st_size);
        assert_true((usec_t) status_int(j, "last_ok_at_unix") >= now_s - 1);
        assert_true((usec_t) status_int(j, "last_ok_at_unix") <= now_s + 5);
        json_object_put(j);

        answer_now(f, OUTBOX_RETRY, USEC_INFINITY, NULL);
        assert_true(run_until_answered(f, 2, 2 * USEC_PER_SEC));
        j = status(f);
        assert_false(status_bool(j, "in_flight"));
        assert_true(json_object_object_get_ex(j, "last_error", &v));
        assert_string_equal(json_object_get_string(v), "retry");
        assert_true((usec_t) status_int(j, "last_error_at_unix") >= now_s - 1);
        assert_true(status_int(j, "next_attempt_in_ms") <= 1000);
        json_object_put(j);
}

static void test_status_json_contract_keys(void **state) {
        Fake *f = *state;
        json_object *j;

        /* every key outbox.h promises, when there is something to show */
        fake_open(f);
        script(f, OUTBOX_DELIVERED, USEC_INFINITY, NULL);
        script(f, OUTBOX_RETRY, USEC_INFINITY, NULL);
        add(f, "a", NULL, OUTBOX_STANDALONE, false);
        add(f, "b", NULL, OUTBOX_STANDALONE, false);
        assert_true(run_until_answered(f, 2, 2 * USEC_PER_SEC));
        j = status(f);
        static const char *const keys[] = { "pending", "bytes", "oldest_age_s", "in_flight", "next_attempt_in_ms",
                                            "paused", "last_error", "last_error_at", "last_error_at_unix", "last_ok_at", "last_ok_at_unix", "delivered",
                                            "dropped", "dead" };
        for (size_t i = 0; i < ELEMENTSOF(keys); i++)
                (void) status_int(j, keys[i]);
        json_object_put(j);
}

/* --- with the writer thread ------------------------------------------------ */

static void run_until_written(Fake *f, usec_t timeout) {
        usec_t end = mono_now() + timeout;

        while (writer_pending(f->w) > 0 && mono_now() < end)
                assert_true(sd_event_run(f->e, 20 * USEC_PER_MSEC) >= 0);
        assert_int_equal(writer_pending(f->w), 0);
}

static void test_writer_thread_sends_once_on_disk(void **state) {
        Fake *f = *state;

        assert_int_equal(writer_new(f->e, &f->w), 0);
        fake_open(f);
        for (size_t i = 0; i < 3; i++)
                script(f, OUTBOX_DELIVERED, USEC_INFINITY, NULL);
        add(f, "a", NULL, OUTBOX_STANDALONE, false);
        add(f, "b", "inc-1", OUTBOX_PARENT, false);
        add(f, "c", "inc-1", OUTBOX_REPLY, false);
        /* queued, not sent: fake_send checks each file is there first */
        assert_int_equal(f->n_sent, 0);
        assert_true(run_until_answered(f, 3, 3 * USEC_PER_SEC));
        assert_string_equal(f->sent[0].kind, "a");
        assert_string_equal(f->sent[1].kind, "b");
        assert_string_equal(f->sent[2].kind, "c");
        /* the removals of the delivered ones are durable too */
        run_until_written(f, 3 * USEC_PER_SEC);
        assert_int_equal(count_entries(f->outbox), 0);
}

static void test_writer_thread_drop_while_writing(void **state) {
        Fake *f = *state;

        /* a is dropped for b while its write may still be queued: the
         * removal queued behind that write keeps it from coming back */
        assert_int_equal(writer_new(f->e, &f->w), 0);
        f->limits = (OutboxLimits) { .max_count = 1, .max_bytes = 0 };
        fake_open(f);
        add(f, "a", NULL, OUTBOX_STANDALONE, false);
        add(f, "b", NULL, OUTBOX_STANDALONE, false);
        assert_int_equal(outbox_n_pending(f->o), 1);
        run_until_written(f, 3 * USEC_PER_SEC);
        assert_false(exists(f->outbox, NAME(01)));
        assert_true(exists(f->outbox, NAME(02)));
}

static void test_writer_thread_refused(void **state) {
        Fake *f = *state;
        json_object *j;

        /* the directory gone (as a disk that refuses the write): kept in
         * memory, sent all the same, the error in status */
        assert_int_equal(writer_new(f->e, &f->w), 0);
        fake_open(f);
        rm_rf(f->outbox);
        script(f, OUTBOX_DELIVERED, USEC_INFINITY, NULL);
        add(f, "a", NULL, OUTBOX_STANDALONE, false);
        run_until_written(f, 3 * USEC_PER_SEC);
        j = status(f);
        assert_int_equal(status_int(j, "in_memory"), 1);
        json_object_put(j);
        assert_true(run_until_answered(f, 1, 3 * USEC_PER_SEC));
        assert_string_equal(f->sent[0].kind, "a");
}

static void test_new_bad_dir(void **state) {
        Fake *f = *state;
        Outbox *o = (Outbox *) 0x1;

        assert_true(outbox_new(f->e, f->w, "/nonexistent/monkey-test", &f->limits, &fake_transport, f, &o) < 0);
        assert_ptr_equal(o, (Outbox *) 0x1);
        assert_null(outbox_free(NULL));
        assert_int_equal(outbox_n_pending(NULL), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_record_roundtrip),
                cmocka_unit_test(test_record_roundtrip_standalone),
                cmocka_unit_test(test_record_format_invalid),
                cmocka_unit_test(test_record_parse_errors),
                cmocka_unit_test(test_record_parse_lenient),
                cmocka_unit_test(test_role_verdict_strings),
                cmocka_unit_test(test_pick_victim),
                cmocka_unit_test(test_backoff_growth),
                cmocka_unit_test(test_backoff_spreads),
                cmocka_unit_test(test_backoff_retry_after),
                cmocka_unit_test(test_backoff_retry_after_huge),
                cmocka_unit_test_setup_teardown(test_add_spools_files, setup, teardown),
                cmocka_unit_test_setup_teardown(test_delivery_in_order_one_at_a_time, setup, teardown),
                cmocka_unit_test_setup_teardown(test_quiesce, setup, teardown),
                cmocka_unit_test_setup_teardown(test_retry_after_backoff, setup, teardown),
                cmocka_unit_test_setup_teardown(test_retry_after_absurd, setup, teardown),
                cmocka_unit_test_setup_teardown(test_retry_resets_after_success, setup, teardown),
                cmocka_unit_test_setup_teardown(test_send_cannot_start, setup, teardown),
                cmocka_unit_test_setup_teardown(test_rejected_goes_dead, setup, teardown),
                cmocka_unit_test_setup_teardown(test_requeue_dead, setup, teardown),
                cmocka_unit_test_setup_teardown(test_broken_config_pauses, setup, teardown),
                cmocka_unit_test_setup_teardown(test_test_alert_while_paused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
                cmocka_unit_test_setup_teardown(test_thread_from_state, setup, teardown),
                cmocka_unit_test_setup_teardown(test_parent_without_ts, setup, teardown),
                cmocka_unit_test_setup_teardown(test_defer_then_fleet_thread, setup, teardown),
                cmocka_unit_test_setup_teardown(test_defer_bounded, setup, teardown),
                cmocka_unit_test_setup_teardown(test_restart_reloads, setup, teardown),
                cmocka_unit_test_setup_teardown(test_restart_seq_counts_dead, setup, teardown),
                cmocka_unit_test_setup_teardown(test_restart_order_from_disk, setup, teardown),
                cmocka_unit_test_setup_teardown(test_corrupt_and_stale_files, setup, teardown),
                cmocka_unit_test_setup_teardown(test_limits_drop_and_report, setup, teardown),
                cmocka_unit_test_setup_teardown(test_limits_incident_last, setup, teardown),
                cmocka_unit_test_setup_teardown(test_limits_bytes, setup, teardown),
                cmocka_unit_test_setup_teardown(test_add_rejects_bad_payload, setup, teardown),
                cmocka_unit_test_setup_teardown(test_add_only_what_reloads, setup, teardown),
                cmocka_unit_test_setup_teardown(test_test_goes_ahead, setup, teardown),
                cmocka_unit_test_setup_teardown(test_answer_without_flight, setup, teardown),
                cmocka_unit_test_setup_teardown(test_status_json, setup, teardown),
                cmocka_unit_test_setup_teardown(test_status_json_contract_keys, setup, teardown),
                cmocka_unit_test_setup_teardown(test_writer_thread_sends_once_on_disk, setup, teardown),
                cmocka_unit_test_setup_teardown(test_writer_thread_drop_while_writing, setup, teardown),
                cmocka_unit_test_setup_teardown(test_writer_thread_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_new_bad_dir, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
