#!/usr/bin/env python3
"""SIGHUP reload: a valid file is swapped in (and the detector uses it), an
invalid one is refused with FILE:LINE and the running config is kept."""

import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Agent, check, main, wait_until  # noqa: E402


def line_of(text, needle):
    for n, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return n
    raise AssertionError("%r not in config text" % needle)


def r1_good_reload_applies():
    with Agent("reload-good") as a:
        a.start()
        check(a.status()["cpu"]["threshold_pct"] == 80, "threshold_pct before reload")
        a.write_config(threshold=85, clear_below=40)
        a.signal(signal.SIGHUP)
        wait_until(lambda: a.status()["cpu"]["threshold_pct"] == 85, 3,
                   what="threshold_pct 85 after SIGHUP")
        st = a.status()
        check(st["cpu"]["clear_below_pct"] == 40, "clear_below_pct %r, want 40" % st["cpu"]["clear_below_pct"])
        check(st["state"] == "SERVING", "state %s after a reload" % st["state"])
        check(st.get("pid") == a.proc.pid, "pid changed across reload")

        # The detector runs on the new numbers: 82% would breach the old
        # threshold of 80 but not the new 85.
        a.feeder.set_busy(82)
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            st = a.status()
            check(st["state"] == "SERVING", "82%% load went %s with threshold 85 after reload" % st["state"])
            time.sleep(0.05)
        a.feeder.set_busy(95)
        a.wait_state("OVERLOADED", 4.0)
        # clear_below is now 40: 45% must keep it OVERLOADED.
        a.feeder.set_busy(45)
        time.sleep(1.0)
        check(a.state() == "OVERLOADED", "45%% cleared the breach with clear_below 40 after reload")
        a.feeder.set_busy(10)
        a.wait_state("SERVING", 3.0)


def r2_bad_reload_keeps_running_config():
    with Agent("reload-bad") as a:
        a.start()
        a.write_config(threshold=70)
        a.signal(signal.SIGHUP)
        wait_until(lambda: a.status()["cpu"]["threshold_pct"] == 70, 3, what="threshold_pct 70")

        bad_variants = [
            ("bad value", lambda: a.config_text(threshold="banana"), "threshold = banana"),
            ("unknown key", lambda: a.config_text().replace("interval = 200ms", "interval = 200ms\nthreshhold = 90"),
             "threshhold"),
            ("out of range", lambda: a.config_text(threshold=150), "threshold = 150"),
        ]
        for label, make, needle in bad_variants:
            text = make()
            a.write_config(raw=text)
            lineno = line_of(text, needle)
            offset = len(a.log_text())
            a.signal(signal.SIGHUP)
            pattern = (r"^warning: reload failed, keeping the running config: %s:%d: .+$"
                       % (re.escape(a.config), lineno))
            m = wait_until(lambda: re.search(pattern, a.log_text()[offset:], re.M), 3,
                           what="%s: a new log line matching %r" % (label, pattern))
            print("   %s: %s" % (label, m.group(0)))
            st = a.status()
            check(st["cpu"]["threshold_pct"] == 70,
                  "%s: threshold_pct %r, want the running 70" % (label, st["cpu"]["threshold_pct"]))
            check(st["state"] == "SERVING", "%s: state %s" % (label, st["state"]))
            a.assert_alive()

        # The kept config still drives the detector (70 < 75 busy).
        a.feeder.set_busy(75)
        a.wait_state("OVERLOADED", 4.0)
        a.feeder.set_busy(10)
        a.wait_state("SERVING", 3.0)

        # And a fixed file is taken on the next SIGHUP.
        a.write_config(threshold=90)
        a.signal(signal.SIGHUP)
        wait_until(lambda: a.status()["cpu"]["threshold_pct"] == 90, 3, what="threshold_pct 90")


def r3_reload_keeps_runtime_state():
    with Agent("reload-state") as a:
        a.start()
        a.feeder.set_busy(95)
        a.wait_state("OVERLOADED", 4.0)
        n_hist = len(a.history(1000))
        a.signal(signal.SIGHUP)  # same file
        time.sleep(1.0)
        st = a.status()
        check(st["state"] == "OVERLOADED", "a reload of the same file moved OVERLOADED to %s" % st["state"])
        check(len(a.history(1000)) == n_hist, "a reload added transitions: %r" % a.history(1000)[-3:])
        a.feeder.set_busy(10)
        a.wait_state("SERVING", 3.0)


if __name__ == "__main__":
    main([r1_good_reload_applies, r2_bad_reload_keeps_running_config, r3_reload_keeps_runtime_state])
