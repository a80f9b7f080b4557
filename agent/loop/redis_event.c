/* hiredis on sd-event. hiredis may free the context (and through the
 * cleanup hook, our RedisEvent) from inside redisAsyncHandleRead/Write, so
 * the IO callback marks itself as dispatching and the cleanup hook only
 * detaches then; the callback frees what is left once hiredis is done. */
#include "redis_event.h"

#include <sys/epoll.h>

#include "log.h"

typedef struct RedisEvent {
        redisAsyncContext *ac;
        sd_event_source *io;
        uint32_t events;
        bool dispatching;
        bool dead; /* hiredis has called cleanup: ac is gone */
} RedisEvent;

static void redis_event_set(RedisEvent *re, uint32_t events) {
        int r;

        if (re->dead || !re->io || re->events == events)
                return;
        re->events = events;
        if (events == 0)
                r = sd_event_source_set_enabled(re->io, SD_EVENT_OFF);
        else {
                r = sd_event_source_set_io_events(re->io, events);
                if (r >= 0)
                        r = sd_event_source_set_enabled(re->io, SD_EVENT_ON);
        }
        if (r < 0)
                log_warning_errno(r, "redis: cannot update the IO watch: %m, ignoring");
}

static void on_add_read(void *privdata) {
        RedisEvent *re = privdata;
        redis_event_set(re, re->events | EPOLLIN);
}

static void on_del_read(void *privdata) {
        RedisEvent *re = privdata;
        redis_event_set(re, re->events & ~(uint32_t) EPOLLIN);
}

static void on_add_write(void *privdata) {
        RedisEvent *re = privdata;
        redis_event_set(re, re->events | EPOLLOUT);
}

static void on_del_write(void *privdata) {
        RedisEvent *re = privdata;
        redis_event_set(re, re->events & ~(uint32_t) EPOLLOUT);
}

static void on_cleanup(void *privdata) {
        RedisEvent *re = privdata;

        if (!re)
                return;
        /* No hook may reach us after this, even if hiredis calls cleanup
         * twice or touches the mask on its way out. */
        if (re->ac)
                re->ac->ev = (__typeof__(re->ac->ev)) {};
        re->io = sd_event_source_disable_unref(re->io);
        re->ac = NULL;
        re->dead = true;
        if (!re->dispatching)
                free(re);
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        RedisEvent *re = userdata;
        bool failed = revents & (EPOLLERR | EPOLLHUP);
        bool handled = false;

        re->dispatching = true;
        /* Write first: the first writable event is how hiredis learns that
         * connect() finished (or failed: EPOLLERR|EPOLLHUP). */
        if ((re->events & EPOLLOUT) && (revents & EPOLLOUT || failed)) {
                redisAsyncHandleWrite(re->ac);
                handled = true;
        }
        if (!re->dead && (revents & EPOLLIN || (failed && !handled))) {
                redisAsyncHandleRead(re->ac);
                handled = true;
        }
        re->dispatching = false;
        if (re->dead)
                free(re);
        return 0;
}

int redis_event_attach(redisAsyncContext *ac, sd_event *e) {
        RedisEvent *re;
        int r;

        if (!ac || !e)
                return -EINVAL;
        if (ac->ev.data)
                return -EBUSY;
        if (ac->c.fd < 0)
                return -EBADF;

        re = calloc(1, sizeof *re);
        if (!re)
                return -ENOMEM;
        re->ac = ac;
        r = sd_event_add_io(e, &re->io, ac->c.fd, EPOLLIN, on_io, re);
        if (r < 0) {
                free(re);
                return r;
        }
        r = sd_event_source_set_enabled(re->io, SD_EVENT_OFF);
        if (r < 0) {
                sd_event_source_disable_unref(re->io);
                free(re);
                return r;
        }
        (void) sd_event_source_set_description(re->io, "redis-io");

        ac->ev.addRead = on_add_read;
        ac->ev.delRead = on_del_read;
        ac->ev.addWrite = on_add_write;
        ac->ev.delWrite = on_del_write;
        ac->ev.cleanup = on_cleanup;
        ac->ev.data = re;
        return 0;
}
