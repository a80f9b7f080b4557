/* The machine's event queue: owns the events posted by actions, timers and
 * the control socket until the agent steps the machine with them, in the
 * order they were posted. Pushing cannot fail: a lost DRAINED or
 * REMEDY_DONE would leave the machine stuck in a state nothing else ends,
 * so the queue grows instead of refusing, and a process that cannot
 * allocate a few bytes aborts (systemd restarts it; state.json holds the
 * last transition) rather than run on with a machine that missed one. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "machine.h"

typedef struct QueuedEvent {
        Event event;
        char *reason;   /* owned, NULL when none */
} QueuedEvent;

typedef struct EventQueue {
        QueuedEvent *items;
        size_t head;    /* the next to pop */
        size_t len;     /* items[head..len) are queued */
        size_t alloc;
} EventQueue;

/* Append; `reason` is copied. Never fails (aborts on out-of-memory). */
void eventq_push(EventQueue *q, Event e, const char *reason);
/* Take the oldest; the caller owns *ret_reason. False when empty. */
bool eventq_pop(EventQueue *q, Event *ret_event, char **ret_reason);
size_t eventq_size(const EventQueue *q);
/* Drop what is queued and free the storage; the queue can be used again. */
void eventq_clear(EventQueue *q);
