/* One way to read the time. clock_now() for code off the loop (the
 * writer thread, the profile worker, monkeyctl, monkey-proxy-sync's
 * blocking parts); clock_loop_now() for code on an sd-event loop, which
 * sees the one time cached for the whole dispatch (chrony's "one now per
 * dispatch") and falls back to the kernel's before the loop first runs.
 * Owns no state. */
#pragma once

#include <time.h>

#include <systemd/sd-event.h>

#include "macro.h"

/* clockid_t's time in µs: CLOCK_MONOTONIC or CLOCK_BOOTTIME for timers,
 * CLOCK_REALTIME only for what humans and AWS read. */
usec_t clock_now(clockid_t clock);

static inline usec_t clock_loop_now(sd_event *e, clockid_t clock) {
        uint64_t t;

        if (e && sd_event_now(e, clock, &t) >= 0)
                return t;
        return clock_now(clock);
}

/* A wall-clock time in µs as "2026-12-07T01:02:03Z" (UTC, whole seconds),
 * the form status, Slack and the evidence files show; "?" when it cannot
 * be formatted. Returns buf. */
const char *format_iso8601(char *buf, size_t size, usec_t wall);
