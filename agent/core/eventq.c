/* The machine's event queue: a growing array, popped from the front. */
#include "eventq.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

static _Noreturn void eventq_oom(Event e) {
        /* Not log_oom(): the caller cannot handle a failure, by design. */
        log_full(LOG_CRIT, "Out of memory queueing event %s: aborting so the service restarts",
                      strna(event_to_string(e)));
        abort();
}

void eventq_push(EventQueue *q, Event e, const char *reason) {
        char *copy = NULL;

        if (reason && !(copy = strdup(reason)))
                eventq_oom(e);
        if (q->head > 0 && q->head == q->len)
                q->head = q->len = 0;   /* drained: reuse from the start */
        if (q->len == q->alloc) {
                size_t n = q->alloc ? q->alloc * 2 : 16;
                QueuedEvent *items;

                if (q->head > 0) {      /* room at the front: slide down first */
                        memmove(q->items, q->items + q->head, (q->len - q->head) * sizeof *q->items);
                        q->len -= q->head;
                        q->head = 0;
                } else {
                        items = n > q->alloc ? reallocarray(q->items, n, sizeof *items) : NULL;
                        if (!items)
                                eventq_oom(e);
                        q->items = items;
                        q->alloc = n;
                }
        }
        q->items[q->len++] = (QueuedEvent) { e, copy };
}

bool eventq_pop(EventQueue *q, Event *ret_event, char **ret_reason) {
        QueuedEvent *it;

        if (q->head >= q->len)
                return false;
        it = &q->items[q->head++];
        *ret_event = it->event;
        *ret_reason = it->reason;
        it->reason = NULL;
        return true;
}

size_t eventq_size(const EventQueue *q) {
        return q->len - q->head;
}

void eventq_clear(EventQueue *q) {
        for (size_t i = q->head; i < q->len; i++)
                free(q->items[i].reason);
        free(q->items);
        *q = (EventQueue) {};
}
