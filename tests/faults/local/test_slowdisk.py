#!/usr/bin/env python3
"""A slow disk (issue 17): every fsync of monkeyd takes 300 ms (faultshim.c
sleeps in fsync/fdatasync), as on the loaded disk where `monkeyctl status`
stalled 260-413 ms. While operator drains and a whole incident (breach,
budget-checked leave, drain, RebootInstances to the EC2 double, the
simulated reboot, checks, rejoin) make the real monkeyd write durably again
and again (state.json, the Slack outbox and its deletions, the incident
summary), status on the control socket answers within 100 ms at the 99th
percentile of 200 requests.

And write-ahead still holds, read off the shim's log of every fsync and
rename against what the other side saw: each Slack message's outbox
record was renamed into place and its directory fsynced before the Slack
double received it; the breach record and summary.json before the leave
script ran in Redis (MONITOR); the "reboot-instance" record before
RebootInstances reached the EC2 double. A SIGTERM while writes are
still queued writes them all before monkeyd exits."""

import math
import os
import re
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faults  # noqa: E402
from faults import Cells, Host, check, kind_of, kinds, shim_env, wait_until  # noqa: E402

harness = faults.harness

FSYNC_DELAY_MS = 300
SAMPLES = 200            # status requests that count
SAMPLE_GAP = 0.03        # between two requests
P99_BOUND = faults.STATUS_BOUND
DRAINS = 3               # operator drain + resume rounds before the incident
PROBE_DEADLINE = 120.0   # bound on the whole probe, whatever happens


class Prober(threading.Thread):
    """Asks status on the control socket until SAMPLES answers are in.
    The first answer of each monkeyd process is not counted (it waited for
    the process to start, not for its loop), nor a request that failed
    (the process stopping for the reboot)."""

    def __init__(self, a):
        super().__init__(daemon=True)
        self.a = a
        self.samples = []      # (monotonic start, seconds, state)
        self.skipped = 0
        self.errors = 0
        self.stopping = threading.Event()

    def run(self):
        deadline = time.monotonic() + PROBE_DEADLINE
        pid = None
        while len(self.samples) < SAMPLES and not self.stopping.is_set() and time.monotonic() < deadline:
            t = time.monotonic()
            try:
                r = harness.control_request(self.a.socket, {"version": 1, "command": "status"}, 3.0)
                st = r["status"]
            except Exception:  # noqa: BLE001 - down for the reboot
                self.errors += 1
                pid = None
                self.stopping.wait(SAMPLE_GAP)
                continue
            dt = time.monotonic() - t
            if st.get("pid") != pid:
                pid = st.get("pid")
                self.skipped += 1
            else:
                self.samples.append((t, dt, st.get("state")))
            self.stopping.wait(SAMPLE_GAP)

    def stop(self):
        self.stopping.set()
        self.join(10)


class Monitor:
    """redis-cli MONITOR into a file: every command with Redis's own
    wall-clock time, the ones Lua scripts run included."""

    def __init__(self, port, path):
        self.path = path
        self.out = open(path, "wb")
        self.proc = subprocess.Popen(["redis-cli", "-p", str(port), "monitor"], stdout=self.out,
                                     stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.out.close()

    def lua_srem(self, key, after):
        """Wall-clock times of SREMs on `key` run by a script after `after`."""
        pat = re.compile(r'^(\d+\.\d+) \[\d+ lua\] "SREM" "%s"' % re.escape(key))
        out = []
        with open(self.path, errors="replace") as f:
            for line in f:
                m = pat.match(line)
                if m and float(m.group(1)) > after:
                    out.append(float(m.group(1)))
        return out


def io_events(path):
    """(wall time, op, path) from the shim's FAULTSHIM_IO_LOG."""
    ev = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.rstrip("\n").split(" ", 2)
                if len(parts) == 3:
                    ev.append((float(parts[0]), parts[1], parts[2]))
    except FileNotFoundError:
        pass
    return ev


def durable(ev, directory, match):
    """Files renamed into `directory` whose name `match`es, in the order of
    their renames: (rename time, time the directory was next fsynced, i.e.
    the rename is durable; None if never, path)."""
    out, waiting = [], []
    for t, op, p in ev:
        if op == "rename" and os.path.dirname(p) == directory and match(os.path.basename(p)):
            waiting.append(len(out))
            out.append([t, None, p])
        elif op in ("fsync", "fdatasync") and p == directory:
            for i in waiting:
                out[i][1] = t
            waiting = []
    return out


def p99(values):
    """Nearest rank: the value below which 99 % of the samples lie."""
    s = sorted(values)
    return s[max(0, math.ceil(0.99 * len(s)) - 1)]


def slow_disk_cycle():
    with Host("slowdisk") as h:
        state_dir = os.path.realpath(h.a.state_dir)
        outbox_dir = os.path.join(state_dir, "outbox")
        io_log = os.path.join(h.a.dir, "io.log")
        # every start of this host, the one after the reboot too
        h.start_env = shim_env(fsync_delay_ms=FSYNC_DELAY_MS, io_log=io_log)
        h.start(timeout=30)
        h.wait_permission(20)
        monitor = Monitor(faults.redis().port, os.path.join(h.a.dir, "monitor.txt"))
        probe = Prober(h.a)
        probe.start()
        try:
            for i in range(DRAINS):
                check(h.a.ctl("drain", "round", str(i), timeout=20).returncode == 0, "drain %d" % i)
                h.a.wait_state("MAINTENANCE", 20)
                check(h.a.ctl("resume", timeout=20).returncode == 0, "resume %d" % i)
                h.a.wait_state("SERVING", 20)
            t_busy = time.time()
            h.a.feeder.set_busy(95)
            wait_until(lambda: len(h.reboots()) == 1, 40, what="the remediation (RebootInstances)")
            h.wait_reboots_done(40)

            def rejoined():
                try:
                    st = h.a.status()
                except Exception:  # noqa: BLE001 - still starting
                    return False
                return st["state"] == "SERVING" and (st.get("last_incident") or {}).get("outcome") == "rejoined"
            wait_until(rejoined, 40, 0.1, what="SERVING again, the incident closed")
            probe.join(PROBE_DEADLINE)
        finally:
            probe.stop()
        try:
            return check_cycle(h, probe, monitor, t_busy, io_log, state_dir, outbox_dir)
        finally:
            monitor.stop()


def check_cycle(h, probe, monitor, t_busy, io_log, state_dir, outbox_dir):
    """What the cycle showed: the latencies, then the order on disk."""
    # 1. status stays fast while the disk is slow
    lat = [dt for _, dt, _ in probe.samples]
    check(len(lat) >= SAMPLES, "only %d status answers counted (%d skipped, %d failed)"
          % (len(lat), probe.skipped, probe.errors))
    ev = io_events(io_log)
    n_sync = sum(1 for _, op, _ in ev if op in ("fsync", "fdatasync"))
    check(n_sync >= 20, "only %d fsyncs: the disk was hardly used" % n_sync)
    worst = max(lat)
    q = p99(lat)
    slow = sum(1 for x in lat if x > P99_BOUND)
    check(q < P99_BOUND, "status p99 %.0f ms (bound %.0f ms; worst %.0f ms, %d of %d over) with fsync taking "
          "%d ms (%d fsyncs)" % (q * 1000, P99_BOUND * 1000, worst * 1000, slow, len(lat), FSYNC_DELAY_MS,
                                 n_sync))

    msgs = h.assert_alerts(["maintenance", "breach", "step", "back"], timeout=40)
    # the last deletions reach the disk
    wait_until(lambda: not faults.outbox_files(h.a), 20, what="the delivered alerts deleted")
    ev = io_events(io_log)

    # 2. write-ahead: each Slack message's record was on disk first
    records = durable(ev, outbox_dir, lambda n: re.fullmatch(r"\d{20}\.json", n) is not None)
    # one at a time, in the order written: the k-th record renamed into
    # place is the k-th message delivered
    for k, m in enumerate(msgs):
        check(k < len(records) and records[k][1] is not None,
              "the %s message reached Slack; its record (#%d) was not durable even by the end of the test"
              % (kind_of(m), k + 1))
        t_ren, t_dur, path = records[k]
        check(t_dur < m["wall"], "the %s message reached Slack %.0f ms before its record %s was durable"
              % (kind_of(m), (t_dur - m["wall"]) * 1000, os.path.basename(path)))
    check(len(records) == len(msgs), "%d records renamed into the outbox, %d messages delivered: %r"
          % (len(records), len(msgs), kinds(msgs)))

    # 3. the breach record and the summary before the leave, the step
    #    record before RebootInstances
    ks = kinds(msgs)
    breach = records[ks.index("breach")][1]
    step = records[ks.index("step")][1]
    srem = monitor.lua_srem("monkey:{%s}:serving" % h.pool, t_busy)
    check(srem, "no leave script ran in Redis after the overload began")
    check(breach < srem[0], "the pool leave ran in Redis %.0f ms before the breach alert was durable"
          % ((breach - srem[0]) * 1000))
    inc_dir = os.path.join(state_dir, "incidents")
    summaries = [r for r in ev if r[1] == "rename" and r[2].startswith(inc_dir + "/")
                 and r[2].endswith("/summary.json") and r[0] > t_busy]
    check(summaries, "no summary.json written for the incident")
    sdir = os.path.dirname(summaries[0][2])
    s_dur = durable(ev, sdir, lambda n: n == "summary.json")[0][1]
    check(s_dur is not None and s_dur < srem[0], "the pool leave ran before summary.json was durable")
    calls = h.reboot_calls()
    check(len(calls) == 1, "RebootInstances called %d times" % len(calls))
    check(step < calls[0]["wall"], "RebootInstances reached EC2 %.0f ms before the step alert was durable"
          % ((step - calls[0]["wall"]) * 1000))

    st = h.a.status()
    dw = st.get("disk_writes") or {}
    check(dw.get("slowest_ms", 0) >= FSYNC_DELAY_MS, "status.disk_writes: %r" % dw)
    h.assert_pool_consistent()
    faults.assert_responsive(h.a, "slow disk")
    return ("fsync %d ms (%d fsyncs): status p50 %.1f ms, p99 %.1f ms, worst %.0f ms over %d requests "
            "(%d over %d ms); %d alerts each durable before Slack got it (closest %.0f ms), breach %.0f ms "
            "and summary %.0f ms before the leave, step %.0f ms before RebootInstances; slowest write %.0f ms"
            % (FSYNC_DELAY_MS, n_sync, sorted(lat)[len(lat) // 2] * 1000, q * 1000, worst * 1000, len(lat),
               slow, P99_BOUND * 1000, len(msgs),
               min(m["wall"] - r[1] for r, m in zip(records, msgs)) * 1000,
               (srem[0] - breach) * 1000, (srem[0] - s_dur) * 1000, (calls[0]["wall"] - step) * 1000,
               dw.get("slowest_ms", 0)))


def stop_flushes():
    """SIGTERM while the slow disk is still behind (an operator drain just
    queued its state.json save and its Slack record): monkeyd writes both
    before it exits, and the next start finds the drain and sends the alert."""
    with Host("slowstop") as h:
        h.start_env = shim_env(fsync_delay_ms=FSYNC_DELAY_MS)
        h.start(timeout=30)
        wait_until(lambda: h.a.status()["disk_writes"]["pending"] == 0, 20, what="the disk to catch up")
        h.slack.set_default("http:503")     # the alert stays in the outbox
        check(h.a.ctl("drain", "just", "before", "the", "stop", timeout=20).returncode == 0, "drain")
        st, _ = h.a.wait_state("MAINTENANCE", 10)
        pending = st["disk_writes"]["pending"]
        check(pending >= 1, "nothing queued for the disk right after the drain: %r" % st["disk_writes"])
        t = time.monotonic()
        rc = h.a.stop(timeout=20)
        took = time.monotonic() - t
        check(rc == 0, "exit status %s on SIGTERM" % rc)
        check("pending change" in h.a.log_text(), "the log does not say it wrote what was pending")
        _, sj = faults.read_json(h.a.state_json_path())
        check(sj["state"] == "MAINTENANCE" and "just before the stop" in (sj.get("maintenance_reason") or ""),
              "state.json after the stop: %s, %r" % (sj["state"], sj.get("maintenance_reason")))
        spooled = [faults.payload_text(b) or "" for b in faults.outbox_snapshot(h.a).values()]
        check(any("in maintenance" in x for x in spooled), "the drain's alert is not in the outbox: %r" % spooled)
        h.slack.set_default("ok")
        h.start(wait_serving=False, timeout=30)
        h.a.wait_state("MAINTENANCE", 10)
        h.slack.wait_for(lambda ms: any("in maintenance" in (m["body"].get("text") or "") for m in ms), 10)
        return ("SIGTERM with %d write(s) queued: exit 0 after %.1f s, state.json said MAINTENANCE and the "
                "alert was in the outbox; the next start restored the drain and sent the alert" % (pending, took))


def main():
    faults.preflight()
    cells = Cells()
    cells.run("disk", "slow-fsync-%dms" % FSYNC_DELAY_MS, slow_disk_cycle)
    cells.run("disk", "slow-fsync-stop-flushes", stop_flushes)
    cells.finish()


if __name__ == "__main__":
    main()
