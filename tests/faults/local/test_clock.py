#!/usr/bin/env python3
"""The wall clock jumps (1 h forward, 1 h back, in the middle of a window
and after a reboot) under the real monkeyd, with libfaketime re-reading a
timestamp file (FAKETIME_TIMESTAMP_FILE, FAKETIME_NO_CACHE=1) and
FAKETIME_DONT_FAKE_MONOTONIC=1: only CLOCK_REALTIME moves. The detector,
the timers, the pool lease and the reboot-loop guard must not be fooled
(no spurious breach, no missed one, no stuck timer, no second reboot);
where the wall clock does matter (SigV4's X-Amz-Date against EC2) the
failure must be clear and bounded.

faultshim.c comes first in LD_PRELOAD: libfaketime 0.9.10 shifts the
absolute timerfd deadlines of CLOCK_MONOTONIC/BOOTTIME timers by its offset
in a process started with one (no real clock step does that); the shim
hands those to the kernel unchanged."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faults  # noqa: E402
from faults import AK, SECRET, AwsDouble, Cells, Host, assert_responsive, check, fail, faketime_env, wait_until  # noqa: E402

HOUR = 3600


class Stopping:
    def __init__(self, double):
        self.double = double

    def __enter__(self):
        return self.double

    def __exit__(self, *exc):
        self.double.stop()
        return False


class Clock:
    """The faked wall clock of one monkeyd: an offset in a file."""

    def __init__(self, dirpath):
        self.path = os.path.join(dirpath, "faketime.rc")
        self.set(0)

    def set(self, offset):
        faults.harness.atomic_write(self.path, "%+d\n" % offset)
        self.offset = offset

    def env(self):
        return faketime_env(self.path)


def new_host(name, **kw):
    h = Host(name, **kw)
    c = Clock(h.a.dir)
    h.start_env = c.env()
    return h, c


def check_faked(h, c, poke=False):
    """The agent's wall clock has the offset: its last transition's time
    (poke: make one, an operator drain and resume) is offset from ours."""
    if poke:
        check(h.a.ctl("drain", "clock", "probe").returncode == 0, "drain")
        h.a.wait_state("MAINTENANCE", 5)
        check(h.a.ctl("resume").returncode == 0, "resume")
        h.a.wait_state("SERVING", 5)
    last = h.a.history(200)[-1]   # the agent sends them oldest first (sorting by time would not do here)
    skew = last["at_unix"] - time.time()
    check(abs(skew - c.offset) < 60, "libfaketime did not take hold: the agent's last transition is %+.0fs off, "
          "want %+ds" % (skew, c.offset))
    return skew


def samples(h):
    return h.a.status()["cpu"]["samples"]


def cpu_seconds(pid):
    """utime + stime of a process, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle_jump(offset):
    """A jump while nothing happens: no transition, sampling goes on at
    its pace, the lease stays alive, status answers."""
    h, c = new_host("clk-idle")
    with h:
        h.start()
        n0, hist0 = samples(h), len(h.a.history(100))
        cpu0 = cpu_seconds(h.a.proc.pid)
        c.set(offset)
        t = time.monotonic()
        time.sleep(2.0)
        n1 = samples(h)
        rate = (n1 - n0) / (time.monotonic() - t)
        # a timer that fires at once, again and again, spins the loop
        busy = (cpu_seconds(h.a.proc.pid) - cpu0) / (time.monotonic() - t) * 100
        check(busy < 40, "monkeyd used %.0f%% CPU after the jump: a timer fires in a loop" % busy)
        check(7 <= rate <= 13, "sampling at %.1f/s after the jump (interval 100 ms): a timer is off" % rate)
        st = h.a.status()
        check(st["state"] == "SERVING" and len(h.a.history(100)) == hist0,
              "a transition without load: %r" % h.a.history(5))
        check(not st["cpu"]["breached"], "spurious breach")
        h.assert_pool_consistent()
        ttl = int(faults.redis().cmd("PTTL", "monkey:{%s}:lease:fault-clk-idle" % h.pool))
        check(ttl > 1000, "the lease is not renewed after the jump: PTTL %d ms" % ttl)
        ms = assert_responsive(h.a)
        skew = check_faked(h, c, poke=True)
        return ("agent clock %+.0fs: no transition, %.1f samples/s, %.0f%% CPU, lease PTTL %d ms, SERVING, "
                "status %.0f ms" % (skew, rate, busy, ttl, ms * 1000))


def mid_window(offset):
    """The clock jumps half way through a hot window: the breach comes
    when the window is full, no sooner, no later; the drain timer and
    the rest of the cycle run; one reboot."""
    aws = AwsDouble(credentials={AK: (SECRET, None)}, max_skew=3 * HOUR).start()
    h, c = new_host("clk-window", aws=aws)
    with h, Stopping(aws):
        h.start()
        h.wait_permission()
        t0 = h.a.feeder.set_busy(95)
        time.sleep(0.65)
        c.set(offset)
        # OVERLOADED lasts as long as the budget's answer (ms): any state
        # after it will do, DRAINING lasts the drain (300 ms)
        h.a.wait_state({"OVERLOADED", "DRAINING", "REMEDIATING"}, 5, interval=0.01)
        dt = time.monotonic() - t0
        # due at 1.0-1.1 s; a detector on the wall clock breaches at the
        # jump (0.65 s) going forward, at 1.7 s or later going back
        check(0.85 <= dt <= 1.45, "breach %.2fs after the load began (window 1 s, interval 100 ms)" % dt)
        check_faked(h, c)
        wait_until(lambda: len(h.reboots()) == 1, 10, what="the reboot")
        h.wait_reboots_done()
        h.a.wait_state("SERVING", 10)
        check(len(h.reboot_calls()) == 1, "RebootInstances %d times" % len(h.reboot_calls()))
        ms = assert_responsive(h.a)
        return ("breach %.2fs after the load began (window 1 s), drain and reboot as usual, 1 reboot, "
                "SERVING, status %.0f ms" % (dt, ms * 1000))


def guard_after_reboot(offset):
    """max_per_window = 1 per hour. One reboot; after the boot the clock
    jumps and the host overloads again: the guard holds it (QUARANTINED,
    held, "remediation limit"), no second RebootInstances. The EC2 double
    accepts any X-Amz-Date here, so only the guard stands in the way."""
    aws = AwsDouble(credentials={AK: (SECRET, None)}, max_skew=3 * HOUR).start()
    h, c = new_host("clk-guard", max_per_window=1, aws=aws)
    try:
        with h:
            h.start()
            h.wait_permission()
            h.a.feeder.set_busy(95)
            wait_until(lambda: len(h.reboots()) == 1, 10, what="the first reboot")
            h.wait_reboots_done()
            h.a.wait_state("SERVING", 10)
            c.set(offset)
            h.a.feeder.set_busy(95)

            try:
                h.wait_state_unless_rebooted("QUARANTINED", 10, calls_allowed=1)
            except faults.TestFailure:
                fail("RebootInstances %d times: the guard was fooled by the clock" % len(h.reboot_calls()))
            st = h.a.status()
            skew = check_faked(h, c)
            check(st["held"] and "remediation limit" in (st["reason"] or ""),
                  "not held by the guard: %r" % st["reason"])
            check(len(h.reboot_calls()) == 1, "RebootInstances %d times: the guard was fooled by the clock"
                  % len(h.reboot_calls()))
            check(st["remedy"]["count_in_window"] == 1, "count_in_window %r" % st["remedy"]["count_in_window"])
            ms = assert_responsive(h.a)
            return ("agent clock %+.0fs after the boot: held by the guard (1 in the last 1h), no second "
                    "RebootInstances, status %.0f ms" % (skew, ms * 1000))
    finally:
        aws.stop()


def sigv4_skew():
    """The wall clock 1 h ahead when the reboot is needed: EC2 refuses
    the signature's date (RequestExpired, AWS's 15-minute window). Clear:
    the reason names it; bounded: not retried in a loop, QUARANTINED in
    seconds, alerts still delivered (Slack does not check the time)."""
    h, c = new_host("clk-sigv4")
    with h:
        h.start()
        h.wait_permission()
        c.set(HOUR)
        t = time.monotonic()
        h.a.feeder.set_busy(95)
        st, _ = h.a.wait_state("QUARANTINED", 20)
        dt = time.monotonic() - t
        check_faked(h, c)
        calls = h.reboot_calls()
        check(1 <= len(calls) <= 5, "%d RebootInstances attempts" % len(calls))
        check(all(x.get("code") == "RequestExpired" for x in calls), "EC2 answers: %r" % [x.get("code") for x in calls])
        check(not h.reboots(), "rebooted with a stale signature")
        check("RequestExpired" in (st["reason"] or ""), "the reason does not say why: %r" % st["reason"])
        h.a.feeder.set_busy(5)
        msgs = h.slack.wait_for(lambda ms: "quarantined" in faults.kinds(ms), 10)
        q = [m for m in msgs if faults.kind_of(m) == "quarantined"][0]["body"]["text"]
        check("RequestExpired" in q, "the alert does not say why: %r" % q[:200])
        ms = assert_responsive(h.a)
        return ("EC2 said RequestExpired to %d attempt(s); QUARANTINED %.1fs after the overload began, reason %r; "
                "alerts delivered; status %.0f ms" % (len(calls), dt, st["reason"], ms * 1000))


def reconcile_skew(offset):
    """The agent's wall clock is off by `offset` while it is out of the
    pool (an operator drain: counted against max_unavailable, as a
    remediation is), then Redis loses the pool (its keys go, the connection
    drops). The agent writes its membership back and counts itself out
    again until out_max after it left, on Redis's clock: it sends how long
    it has been out (CLOCK_BOOTTIME), never a wall-clock time for Redis to
    compare with TIME (a clock behind would drop the count and free the
    slot for one host too many; one ahead would stretch it)."""
    h, c = new_host("clk-reconcile")
    r = faults.redis()
    out_key = "monkey:{%s}:out" % h.pool
    host = "fault-clk-reconcile"

    def score():
        v = r.cmd("ZSCORE", out_key, host)
        return float(v) if v else None
    with h:
        h.start()
        c.set(offset)
        check(h.a.ctl("drain", "clock", "reconcile").returncode == 0, "drain")
        h.a.wait_state("MAINTENANCE", 5)
        skew = check_faked(h, c)
        first = wait_until(score, 5, 0.05, what="the drained host counted out")
        time.sleep(1.0)
        keys = [k for k in r.cmd("KEYS", "monkey:{%s}:*" % h.pool).split("\n") if k]
        check(keys, "no keys of pool %s in Redis" % h.pool)
        r.cmd("DEL", *keys)
        r.cmd("CLIENT", "KILL", "TYPE", "normal")
        try:
            again = wait_until(score, 10, 0.05, what="counted out again")
        except faults.TestFailure:
            fail("agent clock %+.0fs: after Redis lost the pool the drained host is no longer counted out "
                 "(its slot in max_unavailable is free): the reconcile compared the agent's wall clock with "
                 "Redis's" % skew)
        check(abs(again - first) < 3000, "agent clock %+.0fs: counted out until %+.1fs from the first count "
              "(want the same expiry, out_max after it left)" % (skew, (again - first) / 1000))
        check(h.addr() not in h.serving_set(), "back in serving while drained")
        ms = assert_responsive(h.a)
        return ("agent clock %+.0fs, Redis lost the pool: counted out again, expiry %+.0f ms from the first "
                "count (out_max after it left), not serving, status %.0f ms" % (skew, again - first, ms * 1000))


def main():
    faults.preflight()
    if not os.path.exists(faults.LIBFAKETIME):
        print("FAIL: %s is missing (tests/setup-deps installs libfaketime)" % faults.LIBFAKETIME)
        sys.exit(1)
    cells = Cells()
    cells.run("clock", "forward-1h-idle", idle_jump, HOUR)
    cells.run("clock", "backward-1h-idle", idle_jump, -HOUR)
    cells.run("clock", "forward-1h-mid-window", mid_window, HOUR)
    cells.run("clock", "backward-1h-mid-window", mid_window, -HOUR)
    cells.run("clock", "forward-1h-after-reboot-guard", guard_after_reboot, HOUR)
    cells.run("clock", "backward-1h-after-reboot-guard", guard_after_reboot, -HOUR)
    cells.run("clock", "forward-1h-sigv4", sigv4_skew)
    cells.run("clock", "backward-1h-pool-reconcile", reconcile_skew, -HOUR)
    cells.run("clock", "forward-1h-pool-reconcile", reconcile_skew, HOUR)
    cells.finish()


if __name__ == "__main__":
    main()
