/* Durable writes off the event loop. The Writer owns one thread, the FIFO
 * queue of jobs it works through, and the eventfd that brings each job's
 * completion back to the sd-event loop; the files stay their callers'
 * (state.c: state.json, outbox.c: the spool, capture.c: incident
 * summaries). An fsync on a loaded disk takes hundreds of milliseconds:
 * here it stalls only this thread, never `monkeyctl status`.
 *
 * Order is the contract. A job starts only once every job queued before
 * it has ended, and completions run on the loop in the same order. So a
 * later save of a file never lands before an earlier one (the last one
 * wins), and write-ahead is "queue the record, then act in the completion
 * of a writer_barrier()". A save queued right behind a save of the same
 * file that has not started yet replaces it: the same as writing both
 * with no crash in between; both completions run once it is on disk.
 *
 * Without a thread (w NULL, or after writer_stop) a job runs at once on
 * the caller's thread and its completions before the call returns: unit
 * tests, and whatever is written while the daemon tears down. */
#pragma once

#include <json-c/json.h>
#include <systemd/sd-event.h>

#include "macro.h"

typedef struct Writer Writer;

/* fn(userdata, cookie, error) on the loop once the job ended; error is 0
 * or the job's negative errno. */
typedef struct WriterDone {
        void (*fn)(void *userdata, uint64_t cookie, int error);
        void *userdata;
        uint64_t cookie;
} WriterDone;

int writer_new(sd_event *e, Writer **ret);
/* Stopping: runs every job still queued (this blocks until the disk took
 * them all), drops their completions and joins the thread. Later jobs
 * run inline. Takes NULL. */
void writer_stop(Writer *w);
/* writer_stop, then frees. Takes NULL, returns NULL. */
Writer *writer_free(Writer *w);
static inline void writer_freep(Writer **w) {
        writer_free(*w);
}

/* write_file_atomic_at() of `name` in the directory `dir` (a path the
 * thread opens) or `dir_fd` (duplicated now: the caller may close its
 * own), data copied. done: n_done completions, in that order. */
int writer_save(Writer *w, const char *dir, const char *name, const char *data, size_t len, const WriterDone *done,
                size_t n_done);
int writer_save_at(Writer *w, int dir_fd, const char *name, const char *data, size_t len, const WriterDone *done,
                   size_t n_done);
/* unlinkat(dir_fd, name), then fsync the directory. A file that is not
 * there is no error. done may be NULL. */
int writer_remove_at(Writer *w, int dir_fd, const char *name, const WriterDone *done);
/* done (error 0) once every job queued before it has ended. */
int writer_barrier(Writer *w, const WriterDone *done);

/* `userdata` is going away: its completions will not run (the jobs do). */
void writer_forget(Writer *w, const void *userdata);

/* Jobs queued or running whose completion has not run yet. */
size_t writer_pending(Writer *w);
/* {"pending","oldest_ms","last_ms","slowest_ms","done","failed","threaded"} */
json_object *writer_status_json(Writer *w);
