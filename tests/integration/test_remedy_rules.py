#!/usr/bin/env python3
"""Two rules of the remediation, with a real redis-server as the pool and
the Slack double:

- `[remedy] dry_run = yes` has no traffic impact: the host never leaves
  Redis's serving set (sampled every 20 ms), no budget slot or queue place
  is taken, the reboot-loop guard does not count it; Slack is told what the
  budget says ("would leave" or "would hold") and, where a real run would
  get that far, each ladder step; then the host is back to SERVING, and the
  same overload is not told twice.
- A host whose ladder failed does not rerun it while the load is still
  there: it stays QUARANTINED until its CPU has stayed below clear_below
  for a whole window (no [checks] section, as in the report)."""

import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "doubles"))
from harness import Agent, check, main, wait_until  # noqa: E402
from proxyfleet import Redis, free_port  # noqa: E402
from slack_double import SlackDouble  # noqa: E402

ADDR_PORT = None


class MembershipSampler(threading.Thread):
    """SISMEMBER serving every 20 ms through one redis-cli pipe; remembers
    whether the address was ever missing."""

    def __init__(self, redis, key, member):
        super().__init__(daemon=True)
        self.redis, self.key, self.member = redis, key, member
        self.samples = 0
        self.missing = 0
        self.stop_at = None
        self.done = threading.Event()

    def run(self):
        import socket
        with socket.create_connection(("127.0.0.1", self.redis.port), timeout=5) as s:
            cmd = ("*3\r\n$9\r\nSISMEMBER\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
                len(self.key), self.key, len(self.member), self.member)).encode()
            deadline = time.monotonic() + 60    # bounded, whatever happens
            while not self.done.is_set() and time.monotonic() < deadline:
                s.sendall(cmd)
                reply = s.recv(64)
                self.samples += 1
                if reply.strip() != b":1":
                    self.missing += 1
                time.sleep(0.02)

    def stop(self):
        self.done.set()
        self.join(5)


def texts(sl):
    return [m["body"].get("text", "") for m in sl.messages()]


def setup_agent(a, redis, sl, remedy, min_serving=0, max_unavailable=1):
    tok = os.path.join(a.dir, "tok")
    with open(tok, "w") as f:
        f.write("xoxb-rules\n")
    os.chmod(tok, 0o600)
    a.write_config(extra="[pool]\nredis = %s\nname = rules\naddress = 127.0.0.2:%d\nmin_serving = %d\n"
                         "max_unavailable = %d\nheartbeat = 300ms\nlease = 3s\n\n"
                         "[slack]\ntoken_file = %s\nchannel = #incidents\napi_url = %s\n\n"
                         "[remedy]\n%s\n" % (redis.url(), ADDR_PORT, min_serving, max_unavailable, tok, sl.api_url,
                                             remedy))
    # restart-unit over a system bus that is not there: fails at once
    a.env_extra = {"DBUS_SYSTEM_BUS_ADDRESS": "unix:path=%s/no-bus" % a.dir}


def d1_dry_run_would_leave():
    global ADDR_PORT
    ADDR_PORT = free_port()
    redis = Redis().start()
    member = "127.0.0.2:%d" % ADDR_PORT
    try:
        with SlackDouble(token="xoxb-rules") as sl, Agent("dry-leave", window="1s", interval="100ms") as a:
            setup_agent(a, redis, sl, "dry_run = yes\nladder = restart-unit:app.service, reboot-local\n")
            a.start()
            wait_until(lambda: redis.cmd("SISMEMBER", "monkey:{rules}:serving", member) == "1", 5,
                       what="the join")
            sampler = MembershipSampler(redis, "monkey:{rules}:serving", member)
            sampler.start()
            a.feeder.set_busy(95)
            wait_until(lambda: any(h.get("event") == "dry-run-done" for h in a.history(50)), 10,
                       what="the dry run to be told")
            st, _ = a.wait_state("SERVING", 5)
            # still hot for three more windows: not told again, never out
            time.sleep(3.0)
            sampler.stop()
            check(a.state() == "SERVING", "state %s while a dry run's overload lasts" % a.state())
            check(sampler.samples > 50 and sampler.missing == 0,
                  "left Redis's serving set in a dry run: %d of %d samples missing" %
                  (sampler.missing, sampler.samples))
            check(redis.cmd("ZCARD", "monkey:{rules}:out") == "0", "a dry run took a budget slot")
            check(redis.cmd("ZCARD", "monkey:{rules}:waiting") == "0", "a dry run took a place in the queue")
            st = a.status()
            check(st["remedy"]["count_in_window"] == 0,
                  "the reboot-loop guard counted a dry run: %r" % st["remedy"]["count_in_window"])
            hist = [(h.get("from"), h.get("to"), h.get("event")) for h in a.history(50)]
            check(not any(t in ("DRAINING", "REMEDIATING", "QUARANTINED") for _, t, _ in hist),
                  "a dry run went through %r" % hist)
            msgs = sl.wait_for(lambda ms: sum("DRY RUN: would" in m["body"].get("text", "") for m in ms) >= 3, 10)
            t = texts(sl)
            check(any("DRY RUN: would leave the pool: the budget allows it" in x for x in t),
                  "no budget verdict in Slack: %r" % t)
            check(any("DRY RUN: would restart-unit:app.service" in x for x in t) and
                  any("DRY RUN: would reboot-local" in x for x in t), "the ladder was not told: %r" % t)
            check(sum("is overloaded" in x for x in t) == 1, "the same overload was told twice: %r\n%s" % (
                [x[:60] for x in t], "\n".join(ln for ln in a.log_text().splitlines() if "->" in ln or "stays" in ln)))
            parent = msgs[0]["ts"]
            check(all(m.get("thread_ts") == parent for m in msgs[1:]), "dry-run messages outside the thread: %r" % [
                (m.get("ts"), m.get("thread_ts"), m["body"].get("text", "")[:50]) for m in msgs])

            # the load ends, a new overload: told again, still in
            a.feeder.set_busy(10)
            time.sleep(0.5)
            a.feeder.set_busy(95)
            sl.wait_for(lambda ms: sum("is overloaded" in m["body"].get("text", "") for m in ms) >= 2, 10)
            a.wait_state("SERVING", 10)
            check(a.status()["remedy"]["count_in_window"] == 0, "the guard counted the second dry run")
    finally:
        redis.stop()


def d2_dry_run_would_hold():
    """min_serving = 1 and only us serving: a real run would hold; the
    dry run says so and tells no ladder step."""
    global ADDR_PORT
    ADDR_PORT = free_port()
    redis = Redis().start()
    try:
        with SlackDouble(token="xoxb-rules") as sl, Agent("dry-hold", window="1s", interval="100ms") as a:
            setup_agent(a, redis, sl, "dry_run = yes\nladder = reboot-local\n", min_serving=1)
            a.start()
            a.feeder.set_busy(95)
            wait_until(lambda: any(h.get("event") == "dry-run-done" for h in a.history(50)), 10,
                       what="the dry run to be told")
            a.wait_state("SERVING", 5)
            sl.wait_for(lambda ms: any("DRY RUN: would hold" in m["body"].get("text", "") for m in ms), 10)
            t = texts(sl)
            check(any("min_serving 1" in x for x in t), "the hold does not name the rule: %r" % t)
            time.sleep(0.5)
            check(not any("DRY RUN: would reboot-local" in x for x in texts(sl)),
                  "a ladder step told although the budget would hold: %r" % texts(sl))
            check(redis.cmd("SISMEMBER", "monkey:{rules}:serving", "127.0.0.2:%d" % ADDR_PORT) == "1",
                  "out of the serving set")
    finally:
        redis.stop()


def f1_failed_ladder_waits_for_cool():
    """The ladder fails (restart-unit, no system bus). With the CPU still at
    95 % the host stays QUARANTINED and the ladder is not run again; once
    the CPU has stayed under clear_below for a whole window, it rejoins."""
    global ADDR_PORT
    ADDR_PORT = free_port()
    redis = Redis().start()
    try:
        with SlackDouble(token="xoxb-rules") as sl, Agent("ladder-cool", window="1s", interval="100ms",
                                                          clear_below=50) as a:
            setup_agent(a, redis, sl, "ladder = restart-unit:app.service\nmax_per_window = 5\n")
            a.start()
            a.feeder.set_busy(95)
            st, _ = a.wait_state("QUARANTINED", 15)
            check("ladder" in (st.get("reason") or ""), "quarantine reason: %r" % st.get("reason"))
            # eight windows, still hot (the report: the ladder twice in 8 s)
            deadline = time.monotonic() + 8.0
            while time.monotonic() < deadline:
                check(a.state() == "QUARANTINED", "left QUARANTINED while still hot: %s" % a.state())
                time.sleep(0.1)
            hist = a.history(100)
            runs = sum(1 for h in hist if h.get("to") == "REMEDIATING")
            check(runs == 1, "the ladder ran %d times while the load stayed" % runs)
            check(a.status()["remedy"]["count_in_window"] == 1, "guard count")
            t_cool = time.monotonic()
            a.feeder.set_busy(10)
            a.wait_state("SERVING", 15)
            waited = time.monotonic() - t_cool
            check(waited >= 0.9, "rejoined %.2fs after the CPU fell, before a whole window (1s)" % waited)
            check(sum(1 for h in a.history(100) if h.get("to") == "REMEDIATING") == 1, "a second ladder run")
    finally:
        redis.stop()


if __name__ == "__main__":
    main([d1_dry_run_would_leave, d2_dry_run_would_hold, f1_failed_ladder_waits_for_cool])
