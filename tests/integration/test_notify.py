#!/usr/bin/env python3
"""sd_notify against a datagram socket of our own: READY, STATUS on
transitions, WATCHDOG pings, RELOADING/READY around SIGHUP, STOPPING and a
clean exit on SIGTERM."""

import os
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Agent, check, fail, main  # noqa: E402

WATCHDOG_USEC = 2000000


class NotifyListener(threading.Thread):
    def __init__(self, address):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.2)
        self.lock = threading.Lock()
        self.msgs = []  # (monotonic time, "KEY=value")
        self.done = False

    def run(self):
        while not self.done:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            t = time.monotonic()
            with self.lock:
                for line in data.decode(errors="replace").split("\n"):
                    if line:
                        self.msgs.append((t, line))

    def close(self):
        self.done = True
        self.join(2)
        self.sock.close()

    def snapshot(self):
        with self.lock:
            return list(self.msgs)

    def index(self):
        with self.lock:
            return len(self.msgs)

    def wait_for(self, pred, timeout, what, since=0):
        deadline = time.monotonic() + timeout
        while True:
            msgs = self.snapshot()
            for i in range(since, len(msgs)):
                if pred(msgs[i][1]):
                    return i, msgs[i]
            if time.monotonic() >= deadline:
                fail("%s: not received within %.1fs; received since: %r"
                     % (what, timeout, [m for _, m in msgs[since:]][-20:]))
            time.sleep(0.02)


def n1_full_lifecycle():
    with Agent("notify") as a:
        path = os.path.join(a.dir, "notify.sock")
        nl = NotifyListener(path)
        nl.start()
        try:
            a.start(env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": str(WATCHDOG_USEC)})
            nl.wait_for(lambda m: m == "READY=1", 3, "READY=1")
            nl.wait_for(lambda m: m.startswith("STATUS="), 3, "a STATUS= line")
            # Once SERVING, the newest STATUS says so.
            def last_status():
                st = [m for _, m in nl.snapshot() if m.startswith("STATUS=")]
                return st[-1] if st else ""
            deadline = time.monotonic() + 3
            while not last_status().startswith("STATUS=SERVING"):
                if time.monotonic() > deadline:
                    fail("latest STATUS is %r while the agent is SERVING" % last_status())
                time.sleep(0.02)
            print("   %s" % last_status())

            # Watchdog: pings well inside the 2s period.
            t0 = time.monotonic()
            time.sleep(3.5)
            pings = [t for t, m in nl.snapshot() if m == "WATCHDOG=1" and t >= t0 - 2]
            pings_in = [t for t in pings if t >= t0]
            check(len(pings_in) >= 2, "%d WATCHDOG=1 in 3.5s with WATCHDOG_USEC=%d"
                  % (len(pings_in), WATCHDOG_USEC))
            gaps = [b - a_ for a_, b in zip(pings, pings[1:])]
            gaps.append(time.monotonic() - pings[-1])
            print("   WATCHDOG=1 gaps: %s s" % ", ".join("%.2f" % g for g in gaps))
            # The agent promises a ping at least every second (half of the
            # period here); 0.1s of slack for scheduling.
            check(max(gaps) <= 1.1,
                  "WATCHDOG=1 gap of %.2fs with a %.1fs watchdog period, want <= 1s"
                  % (max(gaps), WATCHDOG_USEC / 1e6))

            # A transition is announced in STATUS.
            mark = nl.index()
            r = a.request({"version": 1, "command": "drain", "reason": "notify test"})
            check(r.get("ok") is True, "drain: %r" % r)
            _, (_, m) = nl.wait_for(lambda m: m.startswith("STATUS=MAINTENANCE"), 2,
                                    "STATUS=MAINTENANCE after a drain", since=mark)
            print("   %s" % m)
            mark = nl.index()
            a.request({"version": 1, "command": "resume"})
            nl.wait_for(lambda m: m.startswith("STATUS=SERVING"), 3, "STATUS=SERVING after resume", since=mark)

            # Reload: RELOADING=1, then READY=1 again.
            mark = nl.index()
            a.signal(signal.SIGHUP)
            i_rel, _ = nl.wait_for(lambda m: m == "RELOADING=1", 3, "RELOADING=1 on SIGHUP", since=mark)
            nl.wait_for(lambda m: m == "READY=1", 3, "READY=1 after RELOADING=1", since=i_rel + 1)

            # Stop: STOPPING=1, exit 0, socket gone.
            mark = nl.index()
            rc = a.stop()
            check(rc == 0, "monkeyd exited with %s on SIGTERM, want 0" % rc)
            nl.wait_for(lambda m: m == "STOPPING=1", 1, "STOPPING=1 on SIGTERM", since=mark)
            check(not os.path.exists(a.socket), "control socket %s left behind after SIGTERM" % a.socket)
        finally:
            nl.close()


def n2_abstract_socket_no_watchdog():
    with Agent("notify-abstract") as a:
        name = "monkey-it-notify-%d" % os.getpid()
        nl = NotifyListener("\0" + name)
        nl.start()
        try:
            a.start(env={"NOTIFY_SOCKET": "@" + name})
            nl.wait_for(lambda m: m == "READY=1", 3, "READY=1 on an abstract NOTIFY_SOCKET")
            time.sleep(1.5)
            wd = [m for _, m in nl.snapshot() if m.startswith("WATCHDOG")]
            check(not wd, "WATCHDOG messages without WATCHDOG_USEC: %r" % wd)
            a.signal(signal.SIGINT)
            rc = a.proc.wait(10)
            check(rc == 0, "monkeyd exited with %s on SIGINT, want 0" % rc)
            check(not os.path.exists(a.socket), "control socket left behind after SIGINT")
        finally:
            nl.close()


if __name__ == "__main__":
    main([n1_full_lifecycle, n2_abstract_socket_no_watchdog])
