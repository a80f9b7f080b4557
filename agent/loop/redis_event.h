/* The hiredis async adapter for sd-event: one IO source per connection
 * whose epoll mask follows hiredis' addRead/delRead/addWrite/delWrite
 * hooks, released by its cleanup hook. hiredis 0.14 has no timeouts of its
 * own: whoever sends commands owns the timers. */
#pragma once

#include <hiredis/async.h>
#include <systemd/sd-event.h>

/* Attach `ac` (fresh from redisAsyncConnect*, without error) to `e`.
 * Returns 0, -EBUSY if something is already attached, or a negative errno;
 * on failure nothing is attached and the caller still owns `ac`. */
int redis_event_attach(redisAsyncContext *ac, sd_event *e);
