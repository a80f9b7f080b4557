/* One writer thread, a FIFO of jobs, completions back on the loop through
 * an eventfd. The thread only does file I/O: it never logs and never
 * touches anything of the caller's but the job it was handed. */
#include "writer.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>

#include "clock.h"
#include "fileio.h"
#include "log.h"

typedef enum JobType {
        JOB_SAVE,
        JOB_REMOVE,
        JOB_BARRIER,
} JobType;

typedef struct Job {
        struct Job *next;
        JobType type;
        char *dir;          /* JOB_SAVE by path, opened by the thread */
        int dir_fd;         /* or a duplicate of the caller's, -1 */
        dev_t dev;          /* of dir_fd: tells "the same file" for a replacing save */
        ino_t ino;
        char *name;
        char *data;
        size_t len;
        bool started;       /* the thread took it: never replaced from then on */
        int error;
        usec_t queued_at;   /* CLOCK_MONOTONIC */
        WriterDone *done;
        size_t n_done;
} Job;

struct Writer {
        sd_event *event;
        sd_event_source *source;
        int efd;
        pthread_t thread;
        bool threaded;      /* the thread runs: jobs are queued, not run inline */

        /* Shared with the thread: everything below, under lock. */
        pthread_mutex_t lock;
        pthread_cond_t wake;
        Job *queue, *queue_tail;    /* waiting; the head may be running */
        Job *ended, *ended_tail;    /* ended, completions not run yet */
        bool stopping;
        size_t n_pending;
        usec_t last, slowest;
        uint64_t n_done, n_failed;

        Job *dispatching;   /* loop only: the job whose completions run now */
};

static Job *job_free(Job *j) {
        if (!j)
                return NULL;
        if (j->dir_fd >= 0)
                close(j->dir_fd);
        free(j->dir);
        free(j->name);
        free(j->data);
        free(j->done);
        free(j);
        return NULL;
}

static int job_add_done(Job *j, const WriterDone *done, size_t n_done) {
        WriterDone *d;

        if (n_done == 0)
                return 0;
        d = reallocarray(j->done, j->n_done + n_done, sizeof *d);
        if (!d)
                return -ENOMEM;
        memcpy(d + j->n_done, done, n_done * sizeof *d);
        j->done = d;
        j->n_done += n_done;
        return 0;
}

static int job_new(JobType type, const char *dir, int dir_fd, const char *name, const char *data, size_t len,
                   const WriterDone *done, size_t n_done, Job **ret) {
        Job *j = calloc(1, sizeof *j);
        struct stat st;

        if (!j)
                return -ENOMEM;
        *j = (Job) { .type = type, .dir_fd = -1, .queued_at = clock_now(CLOCK_MONOTONIC) };
        if (dir_fd >= 0) {
                j->dir_fd = fcntl(dir_fd, F_DUPFD_CLOEXEC, 3);
                if (j->dir_fd < 0 || fstat(j->dir_fd, &st) < 0) {
                        int r = negative_errno();
                        job_free(j);
                        return r;
                }
                j->dev = st.st_dev;
                j->ino = st.st_ino;
        }
        if ((dir && !(j->dir = strdup(dir))) || (name && !(j->name = strdup(name))) ||
            (type == JOB_SAVE && !(j->data = malloc(MAX(len, (size_t) 1)))) || job_add_done(j, done, n_done) < 0) {
                job_free(j);
                return -ENOMEM;
        }
        if (type == JOB_SAVE) {
                if (len > 0)
                        memcpy(j->data, data, len);
                j->len = len;
        }
        *ret = j;
        return 0;
}

/* Runs on the thread (or inline): file I/O only. */
static int job_run(Job *j) {
        int fd, r;

        switch (j->type) {
        case JOB_SAVE:
                if (j->dir_fd >= 0)
                        return write_file_atomic_at(j->dir_fd, j->name, j->data, j->len);
                fd = open(j->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (fd < 0)
                        return negative_errno();
                r = write_file_atomic_at(fd, j->name, j->data, j->len);
                close(fd);
                return r;
        case JOB_REMOVE:
                if (unlinkat(j->dir_fd, j->name, 0) < 0)
                        return errno == ENOENT ? 0 : negative_errno();
                /* the removal is durable only once the directory is */
                return fsync(j->dir_fd) < 0 ? negative_errno() : 0;
        case JOB_BARRIER:
        default:
                return 0;
        }
}

static void job_complete(Writer *w, Job *j) {
        if (w)
                w->dispatching = j;
        /* n_done may shrink meanwhile: writer_forget() clears entries */
        for (size_t i = 0; i < j->n_done; i++)
                if (j->done[i].fn)
                        j->done[i].fn(j->done[i].userdata, j->done[i].cookie, j->error);
        if (w)
                w->dispatching = NULL;
        job_free(j);
}

static void *writer_thread(void *userdata) {
        Writer *w = userdata;

        pthread_mutex_lock(&w->lock);
        for (;;) {
                Job *j = w->queue;
                usec_t t;

                if (!j) {
                        if (w->stopping)
                                break;
                        pthread_cond_wait(&w->wake, &w->lock);
                        continue;
                }
                j->started = true;
                pthread_mutex_unlock(&w->lock);

                t = clock_now(CLOCK_MONOTONIC);
                j->error = job_run(j);
                t = clock_now(CLOCK_MONOTONIC) - t;

                pthread_mutex_lock(&w->lock);
                w->queue = j->next;
                if (!w->queue)
                        w->queue_tail = NULL;
                j->next = NULL;
                if (w->ended_tail)
                        w->ended_tail->next = j;
                else
                        w->ended = j;
                w->ended_tail = j;
                if (j->type != JOB_BARRIER) {
                        w->last = t;
                        w->slowest = MAX(w->slowest, t);
                        w->n_done++;
                        if (j->error < 0)
                                w->n_failed++;
                }
                if (w->efd >= 0)
                        (void) eventfd_write(w->efd, 1);
        }
        pthread_mutex_unlock(&w->lock);
        return NULL;
}

static int on_ended(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Writer *w = userdata;
        eventfd_t v;

        (void) eventfd_read(w->efd, &v);
        /* One at a time: a completion may forget() the owner of the next. */
        for (;;) {
                Job *j;

                pthread_mutex_lock(&w->lock);
                j = w->ended;
                if (j) {
                        w->ended = j->next;
                        if (!w->ended)
                                w->ended_tail = NULL;
                        w->n_pending--;
                }
                pthread_mutex_unlock(&w->lock);
                if (!j)
                        return 0;
                j->next = NULL;
                job_complete(w, j);
        }
}

int writer_new(sd_event *e, Writer **ret) {
        _cleanup_(writer_freep) Writer *w = NULL;
        sigset_t all, old;
        int r;

        w = calloc(1, sizeof *w);
        if (!w)
                return -ENOMEM;
        w->efd = -1;
        pthread_mutex_init(&w->lock, NULL);
        pthread_cond_init(&w->wake, NULL);
        w->event = sd_event_ref(e);
        w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (w->efd < 0)
                return negative_errno();
        r = sd_event_add_io(e, &w->source, w->efd, EPOLLIN, on_ended, w);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(w->source, "writer");

        /* Signals stay with the loop's signalfd: the thread takes none. */
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        r = -pthread_create(&w->thread, NULL, writer_thread, w);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r < 0)
                return r;
        w->threaded = true;
        *ret = TAKE_PTR(w);
        return 0;
}

void writer_stop(Writer *w) {
        size_t n;

        if (!w || !w->threaded)
                return;
        pthread_mutex_lock(&w->lock);
        n = w->n_pending;
        w->stopping = true;
        pthread_cond_signal(&w->wake);
        pthread_mutex_unlock(&w->lock);
        if (n > 0)
                log_info("Writing %zu pending change%s to disk before stopping", n, n == 1 ? "" : "s");
        pthread_join(w->thread, NULL);
        w->threaded = false;
        /* The owners of these completions are being torn down. */
        while (w->ended) {
                Job *j = w->ended;
                w->ended = j->next;
                job_free(j);
        }
        w->ended_tail = NULL;
        w->n_pending = 0;
}

Writer *writer_free(Writer *w) {
        if (!w)
                return NULL;
        writer_stop(w);
        /* never started: nothing ran these */
        while (w->queue) {
                Job *j = w->queue;
                w->queue = j->next;
                job_free(j);
        }
        sd_event_source_disable_unref(w->source);
        if (w->efd >= 0)
                close(w->efd);
        sd_event_unref(w->event);
        pthread_cond_destroy(&w->wake);
        pthread_mutex_destroy(&w->lock);
        free(w);
        return NULL;
}

static bool same_file(const Job *a, const Job *b) {
        if (a->type != JOB_SAVE || b->type != JOB_SAVE || !streq(a->name, b->name))
                return false;
        if (a->dir && b->dir)
                return streq(a->dir, b->dir);
        return a->dir_fd >= 0 && b->dir_fd >= 0 && a->dev == b->dev && a->ino == b->ino;
}

static int submit(Writer *w, Job *j) {
        Job *tail;

        if (!w || !w->threaded) {
                j->error = job_run(j);
                job_complete(NULL, j);
                return 0;
        }
        pthread_mutex_lock(&w->lock);
        tail = w->queue_tail;
        if (tail && !tail->started && same_file(tail, j) && job_add_done(tail, j->done, j->n_done) >= 0) {
                /* the last one wins: its data, and every completion waits for it */
                free(tail->data);
                tail->data = TAKE_PTR(j->data);
                tail->len = j->len;
                pthread_mutex_unlock(&w->lock);
                job_free(j);
                return 0;
        }
        if (tail)
                tail->next = j;
        else
                w->queue = j;
        w->queue_tail = j;
        w->n_pending++;
        pthread_cond_signal(&w->wake);
        pthread_mutex_unlock(&w->lock);
        return 0;
}

int writer_save(Writer *w, const char *dir, const char *name, const char *data, size_t len, const WriterDone *done,
                size_t n_done) {
        Job *j;
        int r;

        if (isempty(dir) || isempty(name) || (!data && len > 0))
                return -EINVAL;
        r = job_new(JOB_SAVE, dir, -1, name, data, len, done, n_done, &j);
        return r < 0 ? r : submit(w, j);
}

int writer_save_at(Writer *w, int dir_fd, const char *name, const char *data, size_t len, const WriterDone *done,
                   size_t n_done) {
        Job *j;
        int r;

        if (dir_fd < 0 || isempty(name) || (!data && len > 0))
                return -EINVAL;
        r = job_new(JOB_SAVE, NULL, dir_fd, name, data, len, done, n_done, &j);
        return r < 0 ? r : submit(w, j);
}

int writer_remove_at(Writer *w, int dir_fd, const char *name, const WriterDone *done) {
        Job *j;
        int r;

        if (dir_fd < 0 || isempty(name))
                return -EINVAL;
        r = job_new(JOB_REMOVE, NULL, dir_fd, name, NULL, 0, done, done ? 1 : 0, &j);
        return r < 0 ? r : submit(w, j);
}

int writer_barrier(Writer *w, const WriterDone *done) {
        Job *j;
        int r;

        r = job_new(JOB_BARRIER, NULL, -1, NULL, NULL, 0, done, done ? 1 : 0, &j);
        return r < 0 ? r : submit(w, j);
}

static void forget_in(Job *j, const void *userdata) {
        for (; j; j = j->next)
                for (size_t i = 0; i < j->n_done; i++)
                        if (j->done[i].userdata == userdata)
                                j->done[i].fn = NULL;
}

void writer_forget(Writer *w, const void *userdata) {
        if (!w)
                return;
        /* the thread reads no completion: the lock only guards the lists */
        pthread_mutex_lock(&w->lock);
        forget_in(w->queue, userdata);
        forget_in(w->ended, userdata);
        pthread_mutex_unlock(&w->lock);
        if (w->dispatching)
                for (size_t i = 0; i < w->dispatching->n_done; i++)
                        if (w->dispatching->done[i].userdata == userdata)
                                w->dispatching->done[i].fn = NULL;
}

size_t writer_pending(Writer *w) {
        size_t n;

        if (!w)
                return 0;
        pthread_mutex_lock(&w->lock);
        n = w->n_pending;
        pthread_mutex_unlock(&w->lock);
        return n;
}

static json_object *ms(usec_t t) {
        return json_object_new_double((double) (t / 100) / 10.0);
}

json_object *writer_status_json(Writer *w) {
        json_object *o = json_object_new_object();
        usec_t oldest = 0, now = clock_now(CLOCK_MONOTONIC);

        if (!o || !w)
                return o;
        pthread_mutex_lock(&w->lock);
        if (w->ended)
                oldest = w->ended->queued_at;
        else if (w->queue)
                oldest = w->queue->queued_at;
        json_object_object_add(o, "pending", json_object_new_uint64(w->n_pending));
        json_object_object_add(o, "oldest_ms", oldest > 0 && now >= oldest ? ms(now - oldest) : NULL);
        json_object_object_add(o, "last_ms", ms(w->last));
        json_object_object_add(o, "slowest_ms", ms(w->slowest));
        json_object_object_add(o, "done", json_object_new_uint64(w->n_done));
        json_object_object_add(o, "failed", json_object_new_uint64(w->n_failed));
        pthread_mutex_unlock(&w->lock);
        json_object_object_add(o, "threaded", json_object_new_boolean(w->threaded));
        return o;
}
