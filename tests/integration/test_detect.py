#!/usr/bin/env python3
"""Detection against a synthetic /proc/stat: the sustained-window rule with
measured timing, a spike that must not fire, hysteresis, garbage input,
status latency, and the dry-run remediation cycle up to the give-up."""

import os
import re
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BOOT_B, Agent, check, describe, fail, main, sorted_history, wait_until  # noqa: E402

WINDOW = 2.0       # seconds, as configured below (window = 2s)
INTERVAL = 0.2     # interval = 200ms
EARLY = 0.2        # the first hot interval may start just before the switch
SLACK = 0.6        # one interval + timer slack + polling


def t1_window_timing():
    with Agent("window") as a:
        a.start()
        st = a.status()
        check(st["cpu"]["threshold_pct"] == 80, "threshold_pct %r, want 80" % st["cpu"]["threshold_pct"])
        # Let a few quiet samples in so the baseline is known.
        wait_until(lambda: a.status()["cpu"]["busy_pct"] is not None, 3, what="a first busy_pct")
        busy = a.status()["cpu"]["busy_pct"]
        check(abs(busy - 10.0) < 3.0, "busy_pct %.1f at a 10%% load, want ~10" % busy)

        t_hot = a.feeder.set_busy(95)
        st, _ = a.wait_state("OVERLOADED", WINDOW + SLACK + 3.0, interval=0.01)
        took = time.monotonic() - t_hot
        print("   breach: OVERLOADED %.3fs after the load went to 95%% (window %.1fs, allowed %.1f..%.1f)"
              % (took, WINDOW, WINDOW - EARLY, WINDOW + SLACK))
        check(took >= WINDOW - EARLY, "OVERLOADED after %.3fs, before the %.1fs window could be covered"
              % (took, WINDOW))
        check(took <= WINDOW + SLACK, "OVERLOADED only after %.3fs, window is %.1fs (slack %.1fs)"
              % (took, WINDOW, SLACK))
        check(abs(st["cpu"]["busy_pct"] - 95.0) < 3.0, "busy_pct %r at 95%% load" % st["cpu"]["busy_pct"])
        check(st["cpu"]["breached"] is True, "cpu.breached %r while OVERLOADED" % st["cpu"]["breached"])
        check(st["cpu"]["window_pct"] is not None and st["cpu"]["window_pct"] > 80,
              "window_pct %r after a 2s run at 95%%" % st["cpu"]["window_pct"])
        check(st["remedy"]["mode"] == "observe only", "remedy.mode %r without [remedy]" % st["remedy"]["mode"])

        hist = a.history()
        breaches = [h for h in hist if h.get("event") == "breach"]
        check(len(breaches) == 1, "want one breach in history, got %r" % hist)
        b = breaches[0]
        check(b["from"] == "SERVING" and b["to"] == "OVERLOADED", "breach entry %r" % b)
        check("at" in b and "reason" in b and b["reason"], "breach entry lacks at/reason: %r" % b)

        t_cold = a.feeder.set_busy(10)
        _, _ = a.wait_state("SERVING", 3.0, interval=0.01)
        print("   clear: SERVING %.3fs after the load went to 10%%" % (time.monotonic() - t_cold))
        hist = a.history()
        check(any(h.get("event") == "cleared" and h.get("to") == "SERVING" for h in hist),
              "no 'cleared' entry in history: %r" % hist)


def t2_spike_does_not_fire():
    with Agent("spike") as a:
        a.start()
        wait_until(lambda: a.status()["cpu"]["samples"] >= 3, 3, what="3 samples")
        a.feeder.set_busy(95)
        time.sleep(1.0)
        a.feeder.set_busy(10)
        deadline = time.monotonic() + 2.5
        max_run = 0.0
        while time.monotonic() < deadline:
            st = a.status()
            max_run = max(max_run, st["cpu"]["run_sec"] or 0.0)
            check(st["state"] == "SERVING", "a 1s spike moved the agent to %s (reason %r)"
                  % (st["state"], st.get("reason")))
            time.sleep(0.05)
        print("   longest hot run seen: %.2fs (window %.1fs)" % (max_run, WINDOW))
        check(max_run > 0.5, "run_sec never rose during a 1s spike at 95%% (max %.2f)" % max_run)
        check(not any(h.get("event") == "breach" for h in a.history()), "breach in history after a spike")


def t3_hysteresis():
    with Agent("hysteresis") as a:
        a.start()
        a.feeder.set_busy(95)
        a.wait_state("OVERLOADED", WINDOW + SLACK + 3.0)
        a.feeder.set_busy(65)  # below threshold 80, above clear_below 50
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            st = a.status()
            check(st["state"] == "OVERLOADED",
                  "at 65%% (between clear_below 50 and threshold 80) the state went to %s" % st["state"])
            time.sleep(0.05)
        busy = a.status()["cpu"]["busy_pct"]
        check(abs(busy - 65.0) < 3.0, "busy_pct %.1f at a 65%% load" % busy)
        t = a.feeder.set_busy(30)
        a.wait_state("SERVING", 2.0)
        print("   SERVING %.3fs after the load fell to 30%%" % (time.monotonic() - t))
        check(a.status()["cpu"]["breached"] is False, "cpu.breached still true after clearing")


def t4_garbage_input():
    with Agent("garbage") as a:
        a.start()
        wait_until(lambda: a.status()["cpu"]["samples"] >= 2, 3, what="2 samples")
        skipped0 = a.status()["cpu"]["skipped"]
        check(skipped0 == 0, "skipped %r before any garbage" % skipped0)
        check(a.status()["cpu"]["last_error"] is None, "last_error set before any garbage")
        for label, text in (("letters", "cpu  x y z\n"),
                            ("empty", ""),
                            ("truncated", "cpu  12 3\n"),
                            ("no cpu line", "intr 1 2 3\nctxt 5\n")):
            before = a.status()["cpu"]["skipped"]
            a.feeder.set_garbage(text)
            wait_until(lambda: a.status()["cpu"]["skipped"] > before, 3,
                       what="cpu.skipped to grow after %s garbage" % label)
            st = a.status()
            check(st["cpu"]["last_error"], "cpu.last_error empty after %s garbage: %r" % (label, st["cpu"]))
            print("   %s: skipped %d -> %d, last_error %r" % (label, before, st["cpu"]["skipped"],
                                                            st["cpu"]["last_error"]))
            a.feeder.set_busy(10)
            time.sleep(0.5)
            a.assert_alive()
        st = a.status()
        check(st["state"] == "SERVING", "state %s after garbage input" % st["state"])
        warnings = [ln for ln in a.log_text().splitlines() if ln.startswith("warning:")]
        check(warnings, "no 'warning:' line logged for garbage input")
        check(len(warnings) <= st["cpu"]["skipped"] + 2,
              "%d warnings for %d skipped samples: not one per sample" % (len(warnings), st["cpu"]["skipped"]))
        # Good data again: samples flow and the detector still works.
        n = st["cpu"]["samples"]
        wait_until(lambda: a.status()["cpu"]["samples"] >= n + 3, 3, what="samples to resume")
        a.feeder.set_busy(95)
        a.wait_state("OVERLOADED", WINDOW + SLACK + 3.0)


def t5_status_latency():
    with Agent("latency") as a:
        a.start()
        # The agent's own answer: the control socket's round trip, what
        # the 100 ms budget is about (a loop that blocked shows here).
        times = []
        for _ in range(20):
            t0 = time.monotonic()
            a.status()
            times.append((time.monotonic() - t0) * 1000.0)
        print("   status over the control socket, 20 requests: median %.1f ms, max %.1f ms"
              % (statistics.median(times), max(times)))
        check(statistics.median(times) < 100.0,
              "status took %.1f ms (median), want < 100 ms" % statistics.median(times))
        check(max(times) < 1000.0, "status took %.1f ms (max): something blocks the loop" % max(times))
        # monkeyctl itself, as operators run it: its own start-up (an ASan
        # binary, on a 2-CPU machine running memcheck and two other tests)
        # is the scheduler's, so it is held to "never waits on anything".
        # The figure is a benchmark (tests/bench, the README's table).
        ctl = []
        for _ in range(10):
            t0 = time.monotonic()
            cp = a.ctl("status")
            ctl.append((time.monotonic() - t0) * 1000.0)
            check(cp.returncode == 0, "monkeyctl status while SERVING: " + describe(cp))
        print("   monkeyctl status wall time over 10 runs: median %.1f ms, max %.1f ms"
              % (statistics.median(ctl), max(ctl)))
        check(max(ctl) < 1000.0, "monkeyctl status took %.1f ms (max): something blocks the loop" % max(ctl))


def t6_rehearsal_cycle_to_give_up():
    # ladder = none: the whole cycle with nothing done to the host (a dry
    # run no longer leaves the pool: see test_remedy_rules)
    extra = "[remedy]\nladder = none\nbudget = none\nmax_per_window = 1\nwindow = 1h\n"
    with Agent("rehearsal", extra=extra) as a:
        a.start()
        st = a.status()
        check(st["remedy"]["mode"] == "enabled", "remedy.mode %r with ladder = none" % st["remedy"]["mode"])
        check(st["remedy"]["max_per_window"] == 1, "remedy.max_per_window %r" % st["remedy"]["max_per_window"])
        a.feeder.set_busy(95)
        # First breach: the whole cycle with no-op effects, back to serving
        # (drain grace, if any, included). The load stays high; after the
        # remediation the detector restarts its window, so a second breach
        # comes about WINDOW later and finds the limit reached.
        t0 = time.monotonic()
        seen = []
        while True:
            st = a.status()
            if not seen or seen[-1] != st["state"]:
                seen.append(st["state"])
            if st["state"] == "QUARANTINED":
                break
            if time.monotonic() - t0 > 40:
                fail("no QUARANTINED within 40s; states: %s" % " -> ".join(seen))
            a.assert_alive()
            time.sleep(0.02)
        print("   states: %s" % " -> ".join(seen))
        hist = sorted_history(a.history(100))
        path = []
        for h in hist:
            path.append("%s->%s(%s)" % (h.get("from"), h.get("to"), h.get("event")))
        print("   history: %s" % " ".join(path))
        tos = [h.get("to") for h in hist]
        for s in ("OVERLOADED", "DRAINING", "REMEDIATING", "CHECKING", "SERVING", "QUARANTINED"):
            check(s in tos, "no transition to %s in history: %s" % (s, " ".join(path)))
        check(sum(1 for h in hist if h.get("to") == "REMEDIATING") == 1,
              "want exactly one remediation with max_per_window = 1: %s" % " ".join(path))
        check(st["remedy"]["count_in_window"] == 1, "remedy.count_in_window %r" % st["remedy"]["count_in_window"])
        reason = st.get("reason") or ""
        check(re.search(r"limit|max_per_window|per window|remediations? in", reason, re.I),
              "QUARANTINED reason does not mention the remediation limit: %r" % reason)
        give_up = [h for h in hist if h.get("to") == "QUARANTINED"]
        check(give_up and give_up[-1].get("from") == "DRAINING",
              "QUARANTINED should come from DRAINING (give-up): %r" % give_up)
        # A give-up is final: it must not retry by itself.
        time.sleep(1.5)
        check(a.state() == "QUARANTINED", "left QUARANTINED after a give-up without an operator")
        check(st["maintenance"] is False, "maintenance set by a give-up")
        check(st["held"] is True, "status.held %r after a give-up" % st["held"])

        # The hold outlives the agent (a crash must not put a reboot-looping
        # host back in the pool) and a reboot; only an operator ends it.
        a.feeder.set_busy(10)
        check(a.stop() == 0, "exit status on SIGTERM")
        for boot in (None, BOOT_B):
            if boot:
                a.set_boot_id(boot)
            a.start(wait_serving=False)
            st, _ = a.wait_state("QUARANTINED", 3)
            time.sleep(1.0)
            st = a.status()
            check(st["state"] == "QUARANTINED" and st["held"] is True,
                  "after %s: state %s held %r" % ("a reboot" if boot else "a restart", st["state"], st["held"]))
            check("limit" in (st.get("held_reason") or ""), "held_reason %r" % st.get("held_reason"))
            check(a.stop() == 0, "exit status on SIGTERM")
        a.start(wait_serving=False)
        a.wait_state("QUARANTINED", 3)
        cp = a.ctl("resume")
        check(cp.returncode == 0, "resume: " + describe(cp))
        st, _ = a.wait_state("SERVING", 3)
        check(st["held"] is False, "held still set after resume")


if __name__ == "__main__":
    main([t1_window_timing, t2_spike_does_not_fire, t3_hysteresis, t4_garbage_input,
          t5_status_latency, t6_rehearsal_cycle_to_give_up])
