/* The write-ahead outbox: records on disk, delivered head first. One
 * message is in flight at a time, so Slack sees each incident's messages
 * in the order they were written and a parent's ts is known before its
 * first reply goes out. */
#include "outbox.h"

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sys/stat.h>

#include "backoff.h"
#include "clock.h"
#include "config.h"
#include "error.h"
#include "fileio.h"
#include "log.h"
#include "parse.h"
#include "jsonutil.h"
#include "random.h"

#define OUTBOX_DEAD_DIR "dead"
#define OUTBOX_DEAD_MAX 100
#define OUTBOX_THREADS_MAX 16
#define OUTBOX_PAUSE_REPROBE (1 * USEC_PER_HOUR)
#define OUTBOX_NAME_DIGITS 20
#define OUTBOX_DETAIL_MAX 300

static const char *const role_table[_OUTBOX_ROLE_MAX] = {
        [OUTBOX_STANDALONE] = "standalone",
        [OUTBOX_PARENT] = "parent",
        [OUTBOX_REPLY] = "reply",
};

static const char *const verdict_table[_OUTBOX_VERDICT_MAX] = {
        [OUTBOX_DELIVERED] = "delivered",
        [OUTBOX_RETRY] = "retry",
        [OUTBOX_REJECTED] = "rejected",
        [OUTBOX_BROKEN_CONFIG] = "broken-config",
};

const char *outbox_role_to_string(OutboxRole r) {
        return r >= 0 && r < _OUTBOX_ROLE_MAX ? role_table[r] : NULL;
}

OutboxRole outbox_role_from_string(const char *s) {
        for (size_t i = 0; s && i < ELEMENTSOF(role_table); i++)
                if (streq(role_table[i], s))
                        return (OutboxRole) i;
        return _OUTBOX_ROLE_INVALID;
}

const char *outbox_verdict_to_string(OutboxVerdict v) {
        return v >= 0 && v < _OUTBOX_VERDICT_MAX ? verdict_table[v] : NULL;
}

void outbox_record_done(OutboxRecord *r) {
        if (!r)
                return;
        free(r->kind);
        free(r->incident);
        free(r->payload);
        free(r->thread_key);
        *r = (OutboxRecord) {};
}

static void record_free(OutboxRecord *r) {
        outbox_record_done(r);
        free(r);
}

/* --- the record: pure ------------------------------------------------ */

int outbox_record_format(const OutboxRecord *r, char **ret) {
        _cleanup_(json_object_putp) json_object *o = NULL, *payload = NULL;
        const char *text;
        char *s;

        if (!r || !r->kind || !r->payload || !outbox_role_to_string(r->role))
                return -EINVAL;
        payload = json_tokener_parse(r->payload);
        if (!payload || !json_object_is_type(payload, json_type_object))
                return -EINVAL;
        o = json_object_new_object();
        if (!o)
                return -ENOMEM;
        if (json_object_object_add(o, "version", json_object_new_int(OUTBOX_RECORD_VERSION)) < 0 ||
            json_object_object_add(o, "seq", json_object_new_uint64(r->seq)) < 0 ||
            json_object_object_add(o, "created", json_object_new_uint64(r->created)) < 0 ||
            json_object_object_add(o, "kind", json_object_new_string(r->kind)) < 0 ||
            (r->incident && json_object_object_add(o, "incident", json_object_new_string(r->incident)) < 0) ||
            json_object_object_add(o, "role", json_object_new_string(outbox_role_to_string(r->role))) < 0 ||
            json_object_object_add(o, "test", json_object_new_boolean(r->test)) < 0 ||
            json_object_object_add(o, "payload", TAKE_PTR(payload)) < 0)
                return -ENOMEM;
        text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        if (!text || asprintf(&s, "%s\n", text) < 0)
                return -ENOMEM;
        *ret = s;
        return 0;
}

static bool get_typed(json_object *o, const char *key, json_type t, json_object **ret) {
        json_object *v;
        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, t))
                return false;
        *ret = v;
        return true;
}

/* The record holds C strings: a "\u0000" inside would cut one short
 * (a kind of "", an incident naming another thread). */
static bool has_nul(json_object *v) {
        return strlen(json_object_get_string(v)) != (size_t) json_object_get_string_len(v);
}

static bool get_u64(json_object *o, const char *key, uint64_t *ret) {
        json_object *v;
        int64_t i;

        if (!get_typed(o, key, json_type_int, &v))
                return false;
        /* json-c keeps big unsigned values as uint64; negatives are refused */
        i = json_object_get_int64(v);
        if (i < 0)
                return false;
        *ret = json_object_get_uint64(v);
        return true;
}

int outbox_record_parse(const char *buf, size_t len, OutboxRecord *ret, char **ret_error) {
        _cleanup_(json_tokener_freep) json_tokener *tok = NULL;
        _cleanup_(json_object_putp) json_object *o = NULL;
        json_object *v, *payload;
        OutboxRecord r = {};
        uint64_t version;
        const char *p;

        if (!buf || len == 0 || len > OUTBOX_RECORD_MAX)
                return error_set(ret_error, -EBADMSG, "%s", len == 0 ? "empty file" : "too large");
        if (memchr(buf, '\0', len))
                return error_set(ret_error, -EBADMSG, "NUL byte in record");
        tok = json_tokener_new();
        if (!tok)
                return -ENOMEM;
        o = json_tokener_parse_ex(tok, buf, (int) len);
        if (!o || json_tokener_get_error(tok) != json_tokener_success)
                return error_set(ret_error, -EBADMSG, "not JSON (truncated?)");
        for (p = buf + json_tokener_get_parse_end(tok); p < buf + len; p++)
                if (!strchr(" \t\r\n", *p))
                        return error_set(ret_error, -EBADMSG, "trailing data after the record");
        if (!json_object_is_type(o, json_type_object))
                return error_set(ret_error, -EBADMSG, "not a JSON object");
        if (!get_u64(o, "version", &version))
                return error_set(ret_error, -EBADMSG, "\"version\" missing or not a number");
        if (version != OUTBOX_RECORD_VERSION)
                return error_set(ret_error, -EBADMSG, "unsupported \"version\"");
        if (!get_u64(o, "seq", &r.seq))
                return error_set(ret_error, -EBADMSG, "\"seq\" missing or not a non-negative number");
        if (!get_u64(o, "created", &r.created))
                return error_set(ret_error, -EBADMSG, "\"created\" missing or not a non-negative number");
        if (!get_typed(o, "kind", json_type_string, &v) || json_object_get_string_len(v) == 0 || has_nul(v))
                return error_set(ret_error, -EBADMSG, "\"kind\" missing or not a string");
        if (!get_typed(o, "role", json_type_string, &v) ||
            (r.role = outbox_role_from_string(json_object_get_string(v))) < 0)
                return error_set(ret_error, -EBADMSG, "\"role\" missing or not parent/reply/standalone");
        if (json_object_object_get_ex(o, "incident", &v) && !json_object_is_type(v, json_type_null) &&
            (!json_object_is_type(v, json_type_string) || json_object_get_string_len(v) == 0 || has_nul(v)))
                return error_set(ret_error, -EBADMSG, "\"incident\" not a string");
        if (r.role != OUTBOX_STANDALONE && !get_typed(o, "incident", json_type_string, &v))
                return error_set(ret_error, -EBADMSG, "\"incident\" missing for a thread message");
        if (json_object_object_get_ex(o, "test", &v) && !json_object_is_type(v, json_type_boolean))
                return error_set(ret_error, -EBADMSG, "\"test\" not a boolean");
        if (!get_typed(o, "payload", json_type_object, &payload))
                return error_set(ret_error, -EBADMSG, "\"payload\" missing or not an object");

        r.test = json_object_object_get_ex(o, "test", &v) && json_object_get_boolean(v);
        r.kind = strdup(json_object_get_string(json_object_object_get(o, "kind")));
        if (get_typed(o, "incident", json_type_string, &v))
                r.incident = strdup(json_object_get_string(v));
        r.payload = strdup(json_object_to_json_string_ext(payload, JSON_C_TO_STRING_PLAIN |
                                                                           JSON_C_TO_STRING_NOSLASHESCAPE));
        if (!r.kind || !r.payload || (json_object_object_get_ex(o, "incident", &v) &&
                                      json_object_is_type(v, json_type_string) && !r.incident)) {
                outbox_record_done(&r);
                return -ENOMEM;
        }
        r.size = len;
        *ret = r;
        return 0;
}

/* --- decisions: pure ------------------------------------------------- */

ssize_t outbox_pick_victim(OutboxRecord *const *pending, size_t n, size_t total_bytes, size_t incoming,
                           const OutboxLimits *l, bool skip_first) {
        size_t first = skip_first ? 1 : 0;

        size_t count = n + (incoming > 0 ? 1 : 0);

        if ((l->max_count == 0 || count <= l->max_count) && (l->max_bytes == 0 || total_bytes + incoming <= l->max_bytes))
                return -1;
        /* Incident messages tell a story a reader needs whole; a
         * "still holding" reminder or a test can go first. */
        for (size_t i = first; i < n; i++)
                if (!pending[i]->incident)
                        return (ssize_t) i;
        return n > first ? (ssize_t) first : -1;
}

usec_t outbox_backoff(unsigned attempt, usec_t retry_after, uint64_t random) {
        usec_t d = backoff_delay(OUTBOX_BACKOFF_MIN, OUTBOX_BACKOFF_MAX, attempt > 0 ? attempt - 1 : 0, random);

        if (retry_after != USEC_INFINITY && d < retry_after) {
                usec_t j = random % (250 * USEC_PER_MSEC + 1);
                /* saturate: a wrap would turn "much later" into "now" */
                d = retry_after >= USEC_INFINITY - 1 - j ? USEC_INFINITY - 1 : retry_after + j;
        }
        return d;
}

/* --- the outbox on disk and on the loop ------------------------------ */

typedef struct OutboxThread {
        char *incident, *ts;
} OutboxThread;

struct Outbox {
        sd_event *event;
        Writer *writer;            /* writes and removes the files, off the loop; NULL: inline */
        int dfd, dead_dfd;
        char *path;
        OutboxLimits limits;
        OutboxTransport transport;
        void *userdata;

        OutboxRecord **pending; /* seq order, tests first */
        size_t n_pending, n_alloc, bytes;
        uint64_t next_seq;

        bool in_flight;
        unsigned attempt;          /* failures of the head in a row */
        sd_event_source *timer;
        usec_t next_at;            /* CLOCK_MONOTONIC, 0 = now */
        bool paused;               /* broken config: waiting for a fix */
        bool quiescing;            /* stopping: no new deliveries */
        void (*quiet_cb)(void *userdata);
        void *quiet_userdata;

        struct {
                char *kind, *incident;
        } *restored;               /* what the run before spooled for incidents */
        size_t n_restored;

        size_t n_in_memory;        /* pending records the disk refused */
        uint64_t *undeleted;       /* delivered, but the disk refused the deletion */
        size_t n_undeleted;
        char *disk_error;          /* why, while any is */

        char *last_error;
        usec_t last_error_at, last_ok_at; /* wall clock */
        uint64_t delivered, dropped, dropped_unreported;
        size_t n_dead;

        OutboxThread threads[OUTBOX_THREADS_MAX];
        size_t threads_next;

        char *deferred;            /* outbox_defer()'s incident, NULL: none */
        usec_t deferred_until;     /* CLOCK_MONOTONIC */
        bool deferred_wait;        /* the timer runs for the deferral, not a backoff */
        char *route_incident, *route_key; /* outbox_route() */
};

static void record_name(uint64_t seq, char buf[static OUTBOX_NAME_DIGITS + 6]) {
        snprintf(buf, OUTBOX_NAME_DIGITS + 6, "%020" PRIu64 ".json", seq);
}

static bool name_is_record(const char *name, uint64_t *ret_seq) {
        uint64_t seq = 0;

        for (size_t i = 0; i < OUTBOX_NAME_DIGITS; i++) {
                if (name[i] < '0' || name[i] > '9')
                        return false;
                if (seq > (UINT64_MAX - 9) / 10)
                        return false;
                seq = seq * 10 + (uint64_t) (name[i] - '0');
        }
        if (!streq(name + OUTBOX_NAME_DIGITS, ".json"))
                return false;
        *ret_seq = seq;
        return true;
}

static void set_error(Outbox *o, const char *detail) {
        free(o->last_error);
        o->last_error = strndup(strna(detail), OUTBOX_DETAIL_MAX);
        o->last_error_at = clock_now(CLOCK_REALTIME);
}

static int pending_insert(Outbox *o, OutboxRecord *r) {
        size_t at;

        if (o->n_pending == o->n_alloc) {
                size_t a = MAX(o->n_alloc * 2, (size_t) 16);
                OutboxRecord **p = reallocarray(o->pending, a, sizeof *p);
                if (!p)
                        return -ENOMEM;
                o->pending = p;
                o->n_alloc = a;
        }
        /* Tests go right behind the message in flight and other tests;
         * everything else keeps seq order. */
        for (at = o->n_pending; at > 0; at--) {
                OutboxRecord *prev = o->pending[at - 1];
                if (at - 1 == 0 && o->in_flight)
                        break;
                if (prev->test || prev->ahead || (!r->test && !r->ahead && prev->seq < r->seq))
                        break;
        }
        memmove(o->pending + at + 1, o->pending + at, (o->n_pending - at) * sizeof *o->pending);
        o->pending[at] = r;
        o->n_pending++;
        o->bytes += r->size;
        return 0;
}

static OutboxRecord *pending_remove(Outbox *o, size_t i) {
        OutboxRecord *r = o->pending[i];

        memmove(o->pending + i, o->pending + i + 1, (o->n_pending - i - 1) * sizeof *o->pending);
        o->n_pending--;
        o->bytes -= MIN(o->bytes, r->size);
        if (r->in_memory)
                o->n_in_memory -= MIN(o->n_in_memory, (size_t) 1);
        return r;
}

static OutboxRecord *pending_find(Outbox *o, uint64_t seq) {
        for (size_t i = 0; i < o->n_pending; i++)
                if (o->pending[i]->seq == seq)
                        return o->pending[i];
        return NULL;
}

static int dirs_open(Outbox *o);
static void schedule(Outbox *o, usec_t delay);

/* A record's write ended: the one outbox_add() queued, or a retry of one
 * the disk refused. Until then the record is not sent. */
static void on_record_written(void *userdata, uint64_t seq, int error) {
        Outbox *o = userdata;
        OutboxRecord *r = pending_find(o, seq);
        char name[OUTBOX_NAME_DIGITS + 6];
        bool held;

        if (!r)
                return; /* dropped or delivered meanwhile: its removal was queued behind this write */
        held = !r->in_memory; /* deliver_head() waited for this write */
        r->writing = false;
        record_name(seq, name);
        if (error < 0) {
                free(o->disk_error);
                o->disk_error = strdup(strerror(-error));
                if (!r->in_memory) {
                        /* Not durable, but not lost while we run: an alert
                         * about a full disk must not be the one that goes
                         * missing. */
                        log_error_errno(error, "outbox: cannot spool %s alert to %s/%s: %m; kept in memory until the "
                                               "disk takes it", r->kind, o->path, name);
                        r->in_memory = true;
                        o->n_in_memory++;
                }
        } else if (r->in_memory) {
                r->in_memory = false;
                o->n_in_memory--;
                if (o->n_in_memory == 0) {
                        log_notice("outbox: the disk takes alerts again: every alert kept in memory is written to %s",
                                   o->path);
                        free(o->disk_error);
                        o->disk_error = NULL;
                }
        }
        if (held && o->n_pending > 0 && o->pending[0] == r && !o->in_flight && o->next_at == 0)
                schedule(o, 0);
}

/* Queue the record's file on the Writer; on_record_written() learns how
 * it went. text: the record formatted, or NULL to format it here. */
static void record_write(Outbox *o, OutboxRecord *r, const char *text) {
        _cleanup_(freep) char *own = NULL;
        char name[OUTBOX_NAME_DIGITS + 6];
        int k = 0;

        if (o->dfd < 0)
                k = -ENOENT;
        else if (!text) {
                k = outbox_record_format(r, &own);
                text = own;
        }
        if (k >= 0) {
                record_name(r->seq, name);
                r->writing = true;
                k = writer_save_at(o->writer, o->dfd, name, text, strlen(text),
                                   &(WriterDone) { on_record_written, o, r->seq }, 1);
                if (k >= 0)
                        return;
                r->writing = false;
        }
        on_record_written(o, r->seq, k);
}

static void undeleted_add(Outbox *o, uint64_t seq) {
        uint64_t *u;

        for (size_t i = 0; i < o->n_undeleted; i++)
                if (o->undeleted[i] == seq)
                        return;
        u = reallocarray(o->undeleted, o->n_undeleted + 1, sizeof *u);
        if (!u)
                return;
        o->undeleted = u;
        u[o->n_undeleted++] = seq;
}

static void on_record_removed(void *userdata, uint64_t seq, int error) {
        Outbox *o = userdata;
        char name[OUTBOX_NAME_DIGITS + 6];

        if (error >= 0)
                return;
        record_name(seq, name);
        /* left there, the next start would send it again */
        log_warning_errno(error, "outbox: cannot delete delivered %s: %m; trying again later", name);
        undeleted_add(o, seq);
}

/* The record left the queue: its file goes too, behind its own write when
 * that is still queued (FIFO), so a late write cannot bring it back.
 * report: a failure is retried (a delivered message would go twice). */
static void record_remove(Outbox *o, const OutboxRecord *r, bool report) {
        WriterDone done = { on_record_removed, o, r->seq };
        char name[OUTBOX_NAME_DIGITS + 6];

        if ((r->in_memory && !r->writing) || o->dfd < 0)
                return;
        record_name(r->seq, name);
        if (writer_remove_at(o->writer, o->dfd, name, report ? &done : NULL) < 0 && report)
                undeleted_add(o, r->seq);
}

/* The disk refused records (full, read-only, the directory missing):
 * try again to write them, in seq order, and to remove the delivered ones
 * it kept. */
static void disk_retry(Outbox *o) {
        if (o->n_in_memory == 0 && o->n_undeleted == 0 && o->dfd >= 0 && o->dead_dfd >= 0)
                return;
        if (o->dfd < 0 || o->dead_dfd < 0)
                (void) dirs_open(o);
        if (o->dfd < 0)
                return;
        if (o->n_undeleted > 0) {
                /* detached: a failure (inline, without a Writer) adds it back */
                _cleanup_(freep) uint64_t *u = TAKE_PTR(o->undeleted);
                size_t n = o->n_undeleted;

                o->n_undeleted = 0;
                for (size_t i = 0; i < n; i++) {
                        char name[OUTBOX_NAME_DIGITS + 6];

                        record_name(u[i], name);
                        if (writer_remove_at(o->writer, o->dfd, name, &(WriterDone) { on_record_removed, o, u[i] }) < 0)
                                undeleted_add(o, u[i]);
                }
        }
        for (size_t i = 0; i < o->n_pending && o->n_in_memory > 0; i++)
                if (o->pending[i]->in_memory && !o->pending[i]->writing)
                        record_write(o, o->pending[i], NULL);
}

static int timer_handler(sd_event_source *s, uint64_t usec, void *userdata);

static const char *thread_lookup(Outbox *o, const char *incident) {
        for (size_t i = 0; incident && i < OUTBOX_THREADS_MAX; i++)
                if (o->threads[i].incident && streq(o->threads[i].incident, incident))
                        return o->threads[i].ts;
        return NULL;
}

int outbox_set_thread(Outbox *o, const char *incident, const char *ts) {
        OutboxThread *t;
        char *i, *s;

        if (isempty(incident) || isempty(ts))
                return -EINVAL;
        for (size_t k = 0; k < OUTBOX_THREADS_MAX; k++)
                if (o->threads[k].incident && streq(o->threads[k].incident, incident)) {
                        s = strdup(ts);
                        if (!s)
                                return -ENOMEM;
                        free(o->threads[k].ts);
                        o->threads[k].ts = s;
                        return 0;
                }
        i = strdup(incident);
        s = strdup(ts);
        if (!i || !s) {
                free(i);
                free(s);
                return -ENOMEM;
        }
        t = &o->threads[o->threads_next];
        o->threads_next = (o->threads_next + 1) % OUTBOX_THREADS_MAX;
        free(t->incident);
        free(t->ts);
        t->incident = i;
        t->ts = s;
        return 0;
}

static void dead_trim(Outbox *o) {
        _cleanup_(closep) int fd = -1;
        DIR *d;
        struct dirent *de;
        uint64_t oldest = UINT64_MAX, seq;
        char name[OUTBOX_NAME_DIGITS + 6];
        size_t n = 0;

        if (o->dead_dfd < 0)
                return;
        fd = openat(o->dead_dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 || !(d = fdopendir(fd)))
                return;
        TAKE_FD(fd);
        while ((de = readdir(d)))
                if (name_is_record(de->d_name, &seq)) {
                        n++;
                        oldest = MIN(oldest, seq);
                }
        closedir(d);
        o->n_dead = n;
        if (n > OUTBOX_DEAD_MAX && oldest != UINT64_MAX) {
                record_name(oldest, name);
                if (unlinkat(o->dead_dfd, name, 0) >= 0)
                        o->n_dead--;
        }
}

/* Read one record file into the queue; a bad one is renamed NAME.corrupt.
 * at_start: the run before spooled it (outbox_restored() remembers it). */
static void load_record(Outbox *o, const char *name, uint64_t seq, bool at_start) {
        _cleanup_(freep) char *buf = NULL, *error = NULL;
        _cleanup_(closep) int rfd = -1;
        OutboxRecord *r;
        char aside[NAME_MAX + 1];
        size_t len = 0;
        int k;

        rfd = openat(o->dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        k = rfd < 0 ? negative_errno() : read_full_fd(rfd, OUTBOX_RECORD_MAX, &buf, &len);
        r = calloc(1, sizeof *r);
        if (!r) {
                log_oom();
                return;
        }
        if (k >= 0)
                k = outbox_record_parse(buf, len, r, &error);
        if (k >= 0 && r->seq != seq) {
                outbox_record_done(r);
                k = -EBADMSG;
                error = strdup("seq differs from the file name");
        }
        if (k >= 0 && at_start && r->incident) {
                __typeof__(o->restored) p = reallocarray(o->restored, o->n_restored + 1, sizeof *p);
                if (p) {
                        o->restored = p;
                        p[o->n_restored].kind = strdup(r->kind);
                        p[o->n_restored].incident = strdup(r->incident);
                        if (p[o->n_restored].kind && p[o->n_restored].incident)
                                o->n_restored++;
                        else {
                                free(p[o->n_restored].kind);
                                free(p[o->n_restored].incident);
                        }
                }
        }
        if (k >= 0 && pending_insert(o, r) >= 0)
                return;
        record_free(r);
        snprintf(aside, sizeof aside, "%s.corrupt", name);
        if (renameat(o->dfd, name, o->dfd, aside) < 0)
                (void) unlinkat(o->dfd, name, 0);
        log_error("outbox: %s/%s is unreadable (%s): moved aside as %s", o->path, name,
                  error ? error : strerror(k < 0 ? -k : ENOMEM), aside);
        set_error(o, "a spooled alert was unreadable and set aside");
}

/* Records in `dfd`: loaded into the queue (the outbox itself) or only
 * counted (dead/). Either way the sequence continues past them. */
static void scan_dir(Outbox *o, int dfd, bool load) {
        _cleanup_(closep) int fd = -1;
        DIR *d;
        struct dirent *de;
        uint64_t seq;

        fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 || !(d = fdopendir(fd))) {
                log_warning_errno(errno, "outbox: cannot list %s: %m", o->path);
                return;
        }
        TAKE_FD(fd);
        while ((de = readdir(d))) {
                if (strstr(de->d_name, ".json.tmp-")) {
                        /* a write that never finished: it announced nothing */
                        (void) unlinkat(dfd, de->d_name, 0);
                        continue;
                }
                if (!name_is_record(de->d_name, &seq))
                        continue;
                o->next_seq = MAX(o->next_seq, seq + 1);
                if (load)
                        load_record(o, de->d_name, seq, true);
                else
                        o->n_dead++;
        }
        closedir(d);
}

static void drop_for_room(Outbox *o, size_t incoming) {
        ssize_t v;

        while ((v = outbox_pick_victim(o->pending, o->n_pending, o->bytes, incoming, &o->limits, o->in_flight)) >= 0) {
                OutboxRecord *r = pending_remove(o, (size_t) v);

                record_remove(o, r, false);
                o->dropped++;
                o->dropped_unreported++;
                log_error("outbox: full (%zu messages, %zu bytes): dropped the oldest %s message %s%s%s",
                          o->n_pending + 1, o->bytes + r->size, r->incident ? "incident" : "non-incident", r->kind,
                          r->incident ? " of " : "", r->incident ? r->incident : "");
                record_free(r);
        }
}

/* OUTBOX_DIR and its dead/, created when missing. */
static int dirs_open(Outbox *o) {
        if (o->dfd < 0) {
                if (mkdir(o->path, 0700) < 0 && errno != EEXIST)
                        return negative_errno();
                o->dfd = open(o->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
                if (o->dfd < 0)
                        return negative_errno();
        }
        if (o->dead_dfd < 0) {
                if (mkdirat(o->dfd, OUTBOX_DEAD_DIR, 0700) < 0 && errno != EEXIST)
                        return negative_errno();
                o->dead_dfd = openat(o->dfd, OUTBOX_DEAD_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
                if (o->dead_dfd < 0)
                        return negative_errno();
        }
        return 0;
}

int outbox_new(sd_event *e, Writer *w, const char *state_dir, const OutboxLimits *l, const OutboxTransport *t,
               void *userdata, Outbox **ret) {
        _cleanup_(outbox_freep) Outbox *o = NULL;
        int r;

        o = calloc(1, sizeof *o);
        if (!o)
                return -ENOMEM;
        o->dfd = o->dead_dfd = -1;
        o->event = sd_event_ref(e);
        o->writer = w;
        o->limits = *l;
        o->transport = *t;
        o->userdata = userdata;
        o->next_seq = 1;
        if (asprintf(&o->path, "%s/" OUTBOX_DIR, state_dir) < 0)
                return -ENOMEM;

        /* No state dir is a setup error; one that cannot be written (full,
         * read-only) does not stop the agent: alerts are then kept in
         * memory (outbox_add) until it can. */
        r = access(state_dir, X_OK) < 0 ? negative_errno() : 0;
        if (r < 0)
                return log_error_errno(r, "outbox: cannot open %s: %m", state_dir);
        r = dirs_open(o);
        if (r < 0) {
                free(o->disk_error);
                o->disk_error = strdup(strerror(-r));
                log_error_errno(r, "outbox: cannot open %s: %m; alerts are kept in memory until it can be written",
                                o->path);
        }
        if (o->dead_dfd >= 0)
                scan_dir(o, o->dead_dfd, false);
        if (o->dfd >= 0)
                scan_dir(o, o->dfd, true);
        drop_for_room(o, 0);
        if (o->n_pending > 0)
                log_notice("outbox: %zu alert(s) from before were waiting, delivering them first", o->n_pending);

        r = sd_event_add_time(e, &o->timer, CLOCK_MONOTONIC, USEC_INFINITY, USEC_PER_MSEC, timer_handler, o);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(o->timer, SD_EVENT_OFF);
        (void) sd_event_source_set_description(o->timer, "outbox");
        schedule(o, 0);
        *ret = TAKE_PTR(o);
        return 0;
}

Outbox *outbox_free(Outbox *o) {
        if (!o)
                return NULL;
        /* its writes still happen; their completions must not find it gone */
        writer_forget(o->writer, o);
        for (size_t i = 0; i < o->n_pending; i++)
                record_free(o->pending[i]);
        free(o->pending);
        for (size_t i = 0; i < o->n_restored; i++) {
                free(o->restored[i].kind);
                free(o->restored[i].incident);
        }
        free(o->restored);
        for (size_t i = 0; i < OUTBOX_THREADS_MAX; i++) {
                free(o->threads[i].incident);
                free(o->threads[i].ts);
        }
        free(o->deferred);
        free(o->route_incident);
        free(o->route_key);
        sd_event_source_disable_unref(o->timer);
        if (o->dfd >= 0)
                close(o->dfd);
        if (o->dead_dfd >= 0)
                close(o->dead_dfd);
        sd_event_unref(o->event);
        free(o->last_error);
        free(o->disk_error);
        free(o->undeleted);
        free(o->path);
        free(o);
        return NULL;
}

void outbox_set_limits(Outbox *o, const OutboxLimits *l) {
        o->limits = *l;
        drop_for_room(o, 0);
}

static void schedule(Outbox *o, usec_t delay) {
        uint64_t now = 0;

        if (o->quiescing) {
                void (*cb)(void *) = o->quiet_cb;

                (void) sd_event_source_set_enabled(o->timer, SD_EVENT_OFF);
                o->next_at = 0;
                if (!o->in_flight && cb) {
                        o->quiet_cb = NULL;
                        cb(o->quiet_userdata);
                }
                return;
        }
        if (o->in_flight || o->n_pending == 0) {
                (void) sd_event_source_set_enabled(o->timer, SD_EVENT_OFF);
                o->next_at = 0;
                return;
        }
        (void) sd_event_now(o->event, CLOCK_MONOTONIC, &now);
        /* saturate: a huge Retry-After must not wrap into "now" */
        o->next_at = delay >= USEC_INFINITY - 1 - now ? USEC_INFINITY - 1 : now + delay;
        (void) sd_event_source_set_time(o->timer, o->next_at);
        (void) sd_event_source_set_enabled(o->timer, SD_EVENT_ONESHOT);
}

static void deliver_head(Outbox *o) {
        OutboxRecord *r;
        const char *thread = NULL;
        int k;

        if (o->in_flight || o->n_pending == 0 || o->quiescing)
                return;
        r = o->pending[0];
        /* Sent once it is on disk, or once the disk refused it (then it
         * goes from memory, even while a retry of its write is queued). */
        if (r->writing && !r->in_memory)
                return; /* on_record_written() schedules it */
        if (o->deferred && streq_ptr(r->incident, o->deferred)) {
                uint64_t now = 0;

                (void) sd_event_now(o->event, CLOCK_MONOTONIC, &now);
                if (now < o->deferred_until) {
                        schedule(o, o->deferred_until - now);
                        o->deferred_wait = true;
                        return;
                }
                free(o->deferred); /* nobody routed it: as spooled */
                o->deferred = NULL;
        }
        if (r->role == OUTBOX_REPLY)
                thread = thread_lookup(o, r->thread_key ? r->thread_key : r->incident);
        o->in_flight = true;
        k = o->transport.send(o->userdata, r, thread);
        if (k < 0) {
                char detail[128];
                snprintf(detail, sizeof detail, "cannot start the request: %s", strerror(-k));
                outbox_answer(o, OUTBOX_RETRY, USEC_INFINITY, detail, NULL);
        }
}

static int timer_handler(sd_event_source *s, uint64_t usec, void *userdata) {
        Outbox *o = userdata;

        o->next_at = 0;
        o->deferred_wait = false;
        if (o->paused)
                o->paused = false; /* the slow re-probe of a broken config */
        disk_retry(o);
        deliver_head(o);
        return 0;
}

int outbox_payload_text(const char *text, char **ret) {
        _cleanup_(json_object_putp) json_object *o = json_object_new_object();
        const char *s;

        if (!o || json_object_object_add(o, "text", json_object_new_string(text)) < 0)
                return -ENOMEM;
        s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        *ret = s ? strdup(s) : NULL;
        return *ret ? 0 : -ENOMEM;
}

static void report_drops(Outbox *o) {
        _cleanup_(freep) char *text = NULL, *payload = NULL;
        uint64_t n = o->dropped_unreported;

        if (n == 0)
                return;
        if (asprintf(&text, ":warning: %" PRIu64 " alert(s) were dropped because the outbox was full "
                            "(max %zu messages, %zu bytes) while Slack could not be reached; see the journal.",
                     n, o->limits.max_count, o->limits.max_bytes) < 0 ||
            outbox_payload_text(text, &payload) < 0)
                return;
        o->dropped_unreported = 0;
        if (outbox_add(o, "dropped", NULL, OUTBOX_STANDALONE, false, payload, NULL) < 0)
                o->dropped_unreported = n;
}

static void move_to_dead(Outbox *o, OutboxRecord *r) {
        char name[OUTBOX_NAME_DIGITS + 6];

        record_name(r->seq, name);
        if (r->in_memory) {
                log_warning("outbox: %s was never written to disk (%s); dropping it instead of setting it aside",
                            name, strna(o->disk_error));
                record_remove(o, r, false); /* a retry of its write may still be queued */
                return;
        }
        if (renameat(o->dfd, name, o->dead_dfd, name) < 0) {
                log_warning_errno(errno, "outbox: cannot move %s to dead/: %m; deleting it", name);
                (void) unlinkat(o->dfd, name, 0);
                return;
        }
        o->n_dead++;
        dead_trim(o);
}

void outbox_answer(Outbox *o, OutboxVerdict v, usec_t retry_after, const char *detail, const char *ts) {
        OutboxRecord *r;
        char name[OUTBOX_NAME_DIGITS + 6];
        uint64_t seq;

        if (!o->in_flight || o->n_pending == 0)
                return;
        o->in_flight = false;
        r = o->pending[0];
        seq = r->seq;
        record_name(r->seq, name);

        switch (v) {
        case OUTBOX_DELIVERED:
                if (r->role == OUTBOX_PARENT && r->incident && !isempty(ts)) {
                        (void) outbox_set_thread(o, r->incident, ts);
                        if (o->transport.thread)
                                o->transport.thread(o->userdata, r->incident, ts);
                }
                /* Deleted only now: a crash before the removal is on disk
                 * re-sends it (at least once), never loses it. */
                record_remove(o, r, true);
                record_free(pending_remove(o, 0));
                o->delivered++;
                o->attempt = 0;
                o->paused = false;
                o->last_ok_at = clock_now(CLOCK_REALTIME);
                free(o->last_error);
                o->last_error = NULL;
                if (o->transport.answered)
                        o->transport.answered(o->userdata, seq, v, detail);
                report_drops(o);
                schedule(o, 0);
                return;

        case OUTBOX_REJECTED:
                log_error("outbox: Slack rejected %s message %s (%s): set aside in %s/" OUTBOX_DEAD_DIR "/", r->kind,
                          name, strna(detail), o->path);
                set_error(o, detail);
                move_to_dead(o, r);
                record_free(pending_remove(o, 0));
                o->attempt = 0;
                if (o->transport.answered)
                        o->transport.answered(o->userdata, seq, v, detail);
                schedule(o, 0);
                return;

        case OUTBOX_BROKEN_CONFIG:
                /* Every message would fail the same way: keep them all, stop
                 * knocking, and say so loudly until someone fixes it. */
                log_error("outbox: Slack refuses our messages: %s. Delivery paused with %zu alert(s) kept; fix "
                          "[slack] and reload (or run monkeyctl test-alert). Re-trying every hour.",
                          strna(detail), o->n_pending);
                set_error(o, detail);
                o->paused = true;
                if (o->transport.answered)
                        o->transport.answered(o->userdata, seq, v, detail);
                schedule(o, OUTBOX_PAUSE_REPROBE);
                return;

        case OUTBOX_RETRY:
        default:
                o->attempt++;
                set_error(o, detail);
                {
                        usec_t delay = outbox_backoff(o->attempt, retry_after, random_u64());
                        char d[32];
                        log_full(o->attempt == 1 ? LOG_WARNING : LOG_INFO,
                                 "outbox: %s message %s not delivered (%s), attempt %u; retrying in %s", r->kind, name,
                                 strna(detail), o->attempt, format_duration(d, sizeof d, delay));
                        if (o->transport.answered)
                                o->transport.answered(o->userdata, seq, OUTBOX_RETRY, detail);
                        schedule(o, delay);
                }
                return;
        }
}

static int add(Outbox *o, const char *kind, const char *incident, OutboxRole role, bool test, bool ahead,
               const char *payload, uint64_t *ret_seq) {
        _cleanup_(freep) char *text = NULL;
        OutboxRecord *r;
        int k;

        /* what outbox_record_parse() refuses would turn .corrupt at the next start */
        if (isempty(kind) || (incident && isempty(incident)) || !payload)
                return -EINVAL;
        r = calloc(1, sizeof *r);
        if (!r)
                return -ENOMEM;
        *r = (OutboxRecord) {
                .seq = o->next_seq,
                .created = clock_now(CLOCK_REALTIME),
                .kind = strdup(kind),
                .incident = incident ? strdup(incident) : NULL,
                .role = incident ? role : OUTBOX_STANDALONE,
                .test = test,
                .ahead = ahead,
                .payload = strdup(payload),
        };
        if (incident && o->route_incident && streq(incident, o->route_incident)) {
                r->thread_key = strdup(o->route_key);
                r->role = OUTBOX_REPLY;
                if (!r->thread_key) {
                        record_free(r);
                        return -ENOMEM;
                }
        }
        if (!r->kind || !r->payload || (incident && !r->incident)) {
                record_free(r);
                return -ENOMEM;
        }
        k = outbox_record_format(r, &text);
        if (k < 0) {
                record_free(r);
                return k;
        }
        r->size = strlen(text);
        if ((o->limits.max_bytes > 0 && r->size > o->limits.max_bytes) || r->size > OUTBOX_RECORD_MAX) {
                record_free(r);
                return -E2BIG;
        }
        drop_for_room(o, r->size);

        disk_retry(o); /* older ones the disk refused go first */
        k = pending_insert(o, r);
        if (k < 0) {
                record_free(r);
                return k;
        }
        o->next_seq++;
        /* in the queue first: without a Writer, on_record_written() runs
         * right inside this call and looks it up */
        record_write(o, r, text);
        if (ret_seq)
                *ret_seq = r->seq;
        /* A test wants an answer now, even from a paused outbox; while a
         * backoff runs it waits its turn (Slack's Retry-After holds). */
        if (test && o->paused) {
                o->paused = false;
                o->attempt = 0;
                schedule(o, 0);
        } else if (!o->in_flight && (o->next_at == 0 || o->deferred_wait)) {
                o->deferred_wait = false;
                schedule(o, 0);
        }
        return 0;
}

int outbox_add(Outbox *o, const char *kind, const char *incident, OutboxRole role, bool test, const char *payload,
               uint64_t *ret_seq) {
        return add(o, kind, incident, role, test, false, payload, ret_seq);
}

int outbox_add_ahead(Outbox *o, const char *kind, const char *incident, OutboxRole role, const char *payload) {
        return add(o, kind, incident, role, false, true, payload, NULL);
}

int outbox_defer(Outbox *o, const char *incident, usec_t until) {
        char *d;

        if (isempty(incident))
                return -EINVAL;
        d = strdup(incident);
        if (!d)
                return -ENOMEM;
        free(o->deferred);
        o->deferred = d;
        o->deferred_until = until;
        return 0;
}

int outbox_route(Outbox *o, const char *incident, const char *thread_key) {
        _cleanup_(freep) char *i = NULL, *k = NULL;

        if (isempty(incident))
                return -EINVAL;
        if (thread_key) {
                i = strdup(incident);
                k = strdup(thread_key);
                if (!i || !k)
                        return -ENOMEM;
                /* what is queued already: the record in flight has gone as it was */
                for (size_t n = o->in_flight ? 1 : 0; n < o->n_pending; n++) {
                        OutboxRecord *r = o->pending[n];
                        char *t;

                        if (!streq_ptr(r->incident, incident) || r->role == OUTBOX_STANDALONE)
                                continue;
                        t = strdup(thread_key);
                        if (!t)
                                return -ENOMEM;
                        free(r->thread_key);
                        r->thread_key = t;
                        r->role = OUTBOX_REPLY;
                }
        }
        free(o->route_incident);
        free(o->route_key);
        o->route_incident = TAKE_PTR(i);
        o->route_key = TAKE_PTR(k);
        if (o->deferred && streq(o->deferred, incident)) {
                free(o->deferred);
                o->deferred = NULL;
                if (!o->in_flight && o->deferred_wait) {
                        o->deferred_wait = false;
                        schedule(o, 0);
                }
        }
        return 0;
}

void outbox_resume(Outbox *o, bool requeue_dead) {
        if (requeue_dead && o->dead_dfd >= 0) {
                _cleanup_(closep) int fd = openat(o->dead_dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
                struct dirent *de;
                uint64_t seq;

                if (d) {
                        TAKE_FD(fd);
                        /* Back into the queue at their place in seq order. */
                        while ((de = readdir(d)))
                                if (name_is_record(de->d_name, &seq) &&
                                    renameat(o->dead_dfd, de->d_name, o->dfd, de->d_name) >= 0) {
                                        o->n_dead -= MIN(o->n_dead, (size_t) 1);
                                        load_record(o, de->d_name, seq, false);
                                }
                        closedir(d);
                        drop_for_room(o, 0);
                }
        }
        o->paused = false;
        o->attempt = 0;
        schedule(o, 0);
}

bool outbox_quiesce(Outbox *o, void (*cb)(void *userdata), void *userdata) {
        o->quiescing = true;
        o->quiet_cb = o->in_flight ? cb : NULL;
        o->quiet_userdata = userdata;
        (void) sd_event_source_set_enabled(o->timer, SD_EVENT_OFF);
        return o->in_flight;
}

void outbox_forget_in_flight(Outbox *o) {
        if (!o->in_flight)
                return;
        o->in_flight = false;
        schedule(o, 0);
}

size_t outbox_n_pending(const Outbox *o) {
        return o ? o->n_pending : 0;
}

bool outbox_restored(const Outbox *o, const char *kind, const char *incident) {
        if (!o || !kind || !incident)
                return false;
        for (size_t i = 0; i < o->n_restored; i++)
                if (streq(o->restored[i].kind, kind) && streq(o->restored[i].incident, incident))
                        return true;
        return false;
}

json_object *outbox_status_json(const Outbox *o, usec_t now) {
        json_object *j = json_object_new_object();
        uint64_t mono = 0;

        if (!j)
                return NULL;
        (void) sd_event_now(o->event, CLOCK_MONOTONIC, &mono);
        json_object_object_add(j, "pending", json_object_new_uint64(o->n_pending));
        json_object_object_add(j, "bytes", json_object_new_uint64(o->bytes));
        if (o->n_pending > 0 && now >= o->pending[0]->created)
                json_object_object_add(j, "oldest_age_s",
                                       json_object_new_uint64((now - o->pending[0]->created) / USEC_PER_SEC));
        json_object_object_add(j, "in_flight", json_object_new_boolean(o->in_flight));
        if (o->next_at > 0)
                json_object_object_add(j, "next_attempt_in_ms",
                                       json_object_new_uint64(o->next_at > mono ? (o->next_at - mono) / USEC_PER_MSEC : 0));
        json_object_object_add(j, "attempts", json_object_new_uint64(o->attempt));
        json_object_object_add(j, "paused", json_object_new_boolean(o->paused));
        json_object_object_add(j, "delivered", json_object_new_uint64(o->delivered));
        json_object_object_add(j, "dropped", json_object_new_uint64(o->dropped));
        json_object_object_add(j, "dead", json_object_new_uint64(o->n_dead));
        json_object_object_add(j, "in_memory", json_object_new_uint64(o->n_in_memory));
        if (o->disk_error)
                json_object_object_add(j, "disk_error", json_object_new_string(o->disk_error));
        if (o->last_error)
                json_object_object_add(j, "last_error", json_object_new_string(o->last_error));
        /* status's one time format: RFC 3339 UTC, and the Unix seconds beside it */
        if (o->last_error_at) {
                json_object_object_add(j, "last_error_at", json_new_rfc3339(o->last_error_at));
                json_object_object_add(j, "last_error_at_unix", json_object_new_uint64(o->last_error_at / USEC_PER_SEC));
        }
        if (o->last_ok_at) {
                json_object_object_add(j, "last_ok_at", json_new_rfc3339(o->last_ok_at));
                json_object_object_add(j, "last_ok_at_unix", json_object_new_uint64(o->last_ok_at / USEC_PER_SEC));
        }
        return j;
}
