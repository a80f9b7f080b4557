/* The write-ahead outbox: every alert is a file in state_dir/outbox/,
 * written and fsynced (by the Writer, off the loop) before the action it
 * announces (the caller waits for a writer_barrier() after outbox_add)
 * and before it is sent, delivered one at a time in the order it was
 * written, and deleted only once Slack said ok. An alert spooled just
 * before a reboot is delivered after the boot.
 *
 * The outbox owns the files, the order, the retry schedule and the bounds;
 * the transport (slack.c) owns the wire. The transport is started with
 * one record at a time and answers with outbox_answer().
 *
 * Threads: the first message of an incident is its PARENT; once it is
 * delivered its Slack ts is handed to the owner (kept in state.json) and
 * REPLY records of the same incident go into that thread. A reply whose
 * parent was never delivered goes out standalone (its text names the
 * incident). */
#pragma once

#include <json-c/json.h>
#include <systemd/sd-event.h>

#include "macro.h"
#include "writer.h"

#define OUTBOX_RECORD_VERSION 1
#define OUTBOX_RECORD_MAX (256 * 1024) /* bigger files are refused as corrupt */
#define OUTBOX_DIR "outbox"
#define OUTBOX_BACKOFF_MIN (1 * USEC_PER_SEC)
#define OUTBOX_BACKOFF_MAX (5 * USEC_PER_MINUTE)

typedef enum OutboxRole {
        OUTBOX_STANDALONE,
        OUTBOX_PARENT,
        OUTBOX_REPLY,
        _OUTBOX_ROLE_MAX,
        _OUTBOX_ROLE_INVALID = -EINVAL,
} OutboxRole;

const char *outbox_role_to_string(OutboxRole r);
OutboxRole outbox_role_from_string(const char *s);

typedef struct OutboxRecord {
        uint64_t seq;        /* order of writing; the file is %020llu.json */
        usec_t created;      /* wall clock */
        char *kind;          /* "breach", "remediating", ... for status and logs */
        char *incident;      /* NULL for messages outside any incident */
        OutboxRole role;
        bool test;           /* monkeyctl test-alert: goes ahead of the queue */
        char *payload;       /* Slack JSON object text: {"text":...,"blocks":[...]} */
        size_t size;         /* bytes on disk */
        bool in_memory;      /* the disk refused it (full, read-only): not durable */
        bool writing;        /* its file is queued on the Writer: not sent before that ended */
        /* In memory only (a restart sends the record as it was spooled): */
        char *thread_key;    /* a REPLY goes into this key's thread rather than its incident's */
        bool ahead;          /* outbox_add_ahead(): goes ahead of the queue, as a test does */
} OutboxRecord;

void outbox_record_done(OutboxRecord *r);

/* Pure. The file's text, newline-terminated. */
int outbox_record_format(const OutboxRecord *r, char **ret);
/* Pure. -EBADMSG with *ret_error naming the field on anything malformed
 * (not JSON, wrong types, unknown role, a payload that is not an object,
 * a newer version). ret is written only on success. */
int outbox_record_parse(const char *buf, size_t len, OutboxRecord *ret, char **ret_error);

typedef struct OutboxLimits {
        size_t max_count;
        size_t max_bytes;
} OutboxLimits;

/* Pure: which pending record to drop so that one more record of `incoming`
 * bytes fits: the oldest non-incident one first, then the oldest incident
 * one. `skip_first` protects the record in flight. -1 when it fits.
 * incoming == 0 checks the queue alone (after the limits shrank). */
ssize_t outbox_pick_victim(OutboxRecord *const *pending, size_t n, size_t total_bytes, size_t incoming,
                           const OutboxLimits *l, bool skip_first);

/* Pure: delay before attempt `attempt` (1 = the first retry): capped
 * exponential from OUTBOX_BACKOFF_MIN, with jitter from `random` in
 * [d/2, d]; never less than retry_after (Slack's Retry-After), to which a
 * little jitter is added so a fleet does not return in lockstep. */
usec_t outbox_backoff(unsigned attempt, usec_t retry_after, uint64_t random);

typedef enum OutboxVerdict {
        OUTBOX_DELIVERED,
        OUTBOX_RETRY,             /* 5xx, 429, timeout, connection: try again later */
        OUTBOX_REJECTED,          /* this message is bad (invalid_blocks, no_text): set aside in outbox/dead/ */
        OUTBOX_BROKEN_CONFIG,     /* invalid_auth, channel_not_found, 404 webhook: pause until fixed */
        _OUTBOX_VERDICT_MAX,
        _OUTBOX_VERDICT_INVALID = -EINVAL,
} OutboxVerdict;

const char *outbox_verdict_to_string(OutboxVerdict v);

typedef struct Outbox Outbox;

typedef struct OutboxTransport {
        /* Start sending. thread_ts is the parent's ts for a REPLY whose
         * thread is known, NULL otherwise. Return < 0 if it cannot start
         * (counts as a retryable failure). */
        int (*send)(void *userdata, const OutboxRecord *r, const char *thread_ts);
        /* A PARENT was delivered: keep its ts (state.json). */
        void (*thread)(void *userdata, const char *incident, const char *ts);
        /* Every answer, for monkeyctl test-alert. */
        void (*answered)(void *userdata, uint64_t seq, OutboxVerdict v, const char *detail);
} OutboxTransport;

/* Opens (creates) DIR, loads the records found there in seq order (a
 * corrupt one is renamed NAME.corrupt and reported; stale temp files are
 * removed) and schedules delivery. Files are written and removed through
 * `w` (NULL: at once, on the loop); it must outlive the outbox. */
int outbox_new(sd_event *e, Writer *w, const char *state_dir, const OutboxLimits *l, const OutboxTransport *t,
               void *userdata, Outbox **ret);
Outbox *outbox_free(Outbox *o);
static inline void outbox_freep(Outbox **o) {
        outbox_free(*o);
}

void outbox_set_limits(Outbox *o, const OutboxLimits *l);
/* Remember a thread for REPLY records of `incident` (from state.json). */
int outbox_set_thread(Outbox *o, const char *incident, const char *ts);

/* Spool one message: its file is queued on the Writer when this returns
 * 0 (durable once a writer_barrier() queued after it completes; with no
 * Writer, at once), and the message is not sent before the write ended.
 * When the disk refuses it (state dir full or read-only) the message is
 * kept in memory and delivered all the same (lost only if monkeyd stops
 * first), the error is logged and shown in status (in_memory,
 * disk_error), and the file is written as soon as the disk takes it.
 * Records are dropped to make room as outbox_pick_victim() says; the drop
 * is logged and reported in Slack once delivery works again. */
int outbox_add(Outbox *o, const char *kind, const char *incident, OutboxRole role, bool test, const char *payload,
               uint64_t *ret_seq);

/* The fleet thread's parent: ahead of the queue (behind the message in
 * flight and tests), so that the replies routed into its thread, already
 * queued, find its ts. Otherwise outbox_add(). */
int outbox_add_ahead(Outbox *o, const char *kind, const char *incident, OutboxRole role, const char *payload);

/* Hold back `incident`'s messages, and the queue behind them, until
 * outbox_route() or until `until` (CLOCK_MONOTONIC), when they go as
 * spooled: a holding host's breach waits to learn whether it opens its
 * own thread or replies in the pool's fleet thread. One incident at a
 * time; not kept across a restart (then each goes as spooled). */
int outbox_defer(Outbox *o, const char *incident, usec_t until);
/* Release `incident`'s messages: with thread_key, its PARENT and REPLY
 * messages, queued and to come, go as replies into the thread of
 * thread_key (outbox_set_thread(), or a PARENT spooled for thread_key);
 * NULL ends that and sends what comes as spooled. */
int outbox_route(Outbox *o, const char *incident, const char *thread_key);

/* Pure: a plain-text payload {"text": text}. */
int outbox_payload_text(const char *text, char **ret);

/* The transport's answer for the record it was given. ts: for a
 * delivered message. retry_after: USEC_INFINITY when Slack gave none. */
void outbox_answer(Outbox *o, OutboxVerdict v, usec_t retry_after, const char *detail, const char *ts);

/* Try now: after a config change or an operator's test. Leaves a pause
 * for broken config, puts dead letters (outbox/dead/) back in the queue
 * when `requeue_dead`. */
void outbox_resume(Outbox *o, bool requeue_dead);

/* Stopping: start no further delivery. Returns true when a message is in
 * flight; `cb` runs once its answer is in (delivered: its file is gone, so
 * a restart does not send it twice). False: nothing in flight, no cb. */
bool outbox_quiesce(Outbox *o, void (*cb)(void *userdata), void *userdata);

/* The transport dropped the call in flight without an answer (a new
 * client on reload): that record goes again, first. */
void outbox_forget_in_flight(Outbox *o);

size_t outbox_n_pending(const Outbox *o);
/* The run before this one spooled a record of this kind for this incident
 * (found at start; delivered since or not). */
bool outbox_restored(const Outbox *o, const char *kind, const char *incident);
/* {"pending","bytes","oldest_age_s","in_flight","next_attempt_in_ms",
 *  "attempts","paused","last_error","last_error_at","last_error_at_unix",
 *  "last_ok_at","last_ok_at_unix","delivered","dropped","dead","in_memory",
 *  "disk_error"}; the *_at are RFC 3339 UTC, the *_at_unix seconds */
json_object *outbox_status_json(const Outbox *o, usec_t now_wall);
