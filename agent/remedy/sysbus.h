/* The system bus, for the two local remediation steps: restart the app's
 * unit (org.freedesktop.systemd1 Manager.RestartUnit, then wait for the
 * job's JobRemoved signal) and reboot the machine (org.freedesktop.login1
 * Manager.Reboot). Asynchronous on sd-event, each with a deadline. The bus
 * is opened on first use (tests point DBUS_SYSTEM_BUS_ADDRESS at a private
 * dbus-daemon). */
#pragma once

#include <systemd/sd-event.h>

#include "macro.h"

typedef struct SysBus SysBus;

/* error 0: done; < 0 with detail ("job failed", the D-Bus error name and
 * message, "timeout after 90s"). */
typedef void (*sysbus_done_t)(int error, const char *detail, void *userdata);

int sysbus_new(sd_event *e, SysBus **ret);
SysBus *sysbus_free(SysBus *b);
static inline void sysbus_freep(SysBus **b) {
        sysbus_free(*b);
}

/* One operation at a time: -EBUSY otherwise. */
int sysbus_restart_unit(SysBus *b, const char *unit, usec_t timeout, sysbus_done_t cb, void *userdata);
int sysbus_reboot(SysBus *b, usec_t timeout, sysbus_done_t cb, void *userdata);
void sysbus_cancel(SysBus *b);
