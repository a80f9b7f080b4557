#include <sys/timerfd.h>

#include "ticker.h"

struct Ticker {
        sd_event *event;
        sd_event_source *source;
        int fd;
        clockid_t clock;
        usec_t due, period;     /* the tick the next expiration stands for */
        ticker_handler_t handler;
        void *userdata;
};

static struct timespec timespec_from_usec(usec_t u) {
        return (struct timespec) {
                .tv_sec = (time_t) (u / USEC_PER_SEC),
                .tv_nsec = (long) (u % USEC_PER_SEC) * 1000L,
        };
}

static int ticker_arm(Ticker *t, usec_t first, usec_t period) {
        struct itimerspec its = {
                .it_value = timespec_from_usec(first),
                .it_interval = timespec_from_usec(period),
        };

        /* A zero it_value would disarm it: "now" is the earliest there is. */
        if (first == 0)
                its.it_value.tv_nsec = 1;
        if (timerfd_settime(t->fd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
                return negative_errno();
        t->due = first;
        t->period = period;
        return 0;
}

static int on_ticker_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Ticker *t = userdata;
        uint64_t expirations;
        usec_t at;
        ssize_t n;

        n = read(fd, &expirations, sizeof expirations);
        if (n < 0) {
                /* EAGAIN: re-armed between the wake-up and the read */
                if (errno == EAGAIN || errno == EINTR)
                        return 0;
                return negative_errno();
        }
        if (n != (ssize_t) sizeof expirations || expirations == 0)
                return 0;
        /* The kernel keeps the grid: the latest expiration's time is
         * known without reading a clock. */
        at = t->due + (expirations - 1) * t->period;
        t->due = at + t->period;
        t->handler(t, at, expirations - 1, t->userdata);
        return 0;
}

int ticker_new(sd_event *e, clockid_t clock, usec_t first, usec_t period, ticker_handler_t handler,
               void *userdata, Ticker **ret) {
        _cleanup_(ticker_freep) Ticker *t = NULL;
        int r;

        if (!e || !handler || !ret || period == 0)
                return -EINVAL;

        t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        t->fd = -1;
        t->event = sd_event_ref(e);
        t->clock = clock;
        t->handler = handler;
        t->userdata = userdata;

        t->fd = timerfd_create(clock, TFD_NONBLOCK | TFD_CLOEXEC);
        if (t->fd < 0)
                return negative_errno();
        r = ticker_arm(t, first, period);
        if (r < 0)
                return r;
        r = sd_event_add_io(e, &t->source, t->fd, EPOLLIN, on_ticker_io, t);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(t->source, "ticker");

        *ret = TAKE_PTR(t);
        return 0;
}

Ticker *ticker_free(Ticker *t) {
        if (!t)
                return NULL;
        sd_event_source_disable_unref(t->source);
        if (t->fd >= 0)
                close(t->fd);
        sd_event_unref(t->event);
        free(t);
        return NULL;
}

int ticker_set(Ticker *t, usec_t first, usec_t period) {
        if (!t || period == 0)
                return -EINVAL;
        return ticker_arm(t, first, period);
}

int ticker_stop(Ticker *t) {
        struct itimerspec off = {};

        if (!t)
                return 0;
        if (timerfd_settime(t->fd, 0, &off, NULL) < 0)
                return negative_errno();
        return sd_event_source_set_enabled(t->source, SD_EVENT_OFF);
}
