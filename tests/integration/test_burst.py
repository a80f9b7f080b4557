#!/usr/bin/env python3
"""No event is ever dropped: a burst of control requests pipelined on one
connection posts one machine event each within a single loop iteration,
far past the old fixed queue of 32. Every one of them must reach the
state machine (at debug level the agent logs each event that means
nothing in the state it meets), none may be refused, and the agent must
end where the last event leaves it."""

import os
import socket
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from harness import Agent, LineReader, check, main, wait_until  # noqa: E402

N = 100


def b1_pipelined_drains():
    with Agent("burst", extra="") as a:
        a.write_config(raw=a.config_text().replace("[agent]\n", "[agent]\nlog_level = debug\n", 1))
        a.start()
        line = b'{"version":1,"command":"drain"}\n'
        check(len(line) * N < 4096, "the burst must fit one request buffer")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(a.socket)
            s.sendall(line * N)        # one write: read and run in one dispatch
            rd = LineReader(s)
            replies = [rd.readjson(10) for _ in range(N)]
        refused = [r for r in replies if r.get("ok") is not True]
        check(not refused, "%d of %d drains refused: %r" % (len(refused), N, refused[:3]))
        a.wait_state("MAINTENANCE", 5)
        # the first drain leaves; each of the other N-1 means nothing in MAINTENANCE
        want = N - 1
        wait_until(lambda: a.log_text().count("Event maintenance means nothing in state MAINTENANCE") >= want, 5,
                   what="%d ignored maintenance events in the log" % want)
        log = a.log_text()
        check("queue full" not in log.lower(), "events were dropped: %s" %
              [ln for ln in log.splitlines() if "queue full" in ln.lower()][:2])
        check(log.count("Event maintenance means nothing in state MAINTENANCE") == want,
              "%d events stepped, want %d" % (log.count("Event maintenance means nothing in state MAINTENANCE"), want))
        time.sleep(0.3)
        check(a.state() == "MAINTENANCE", "state %s after the burst" % a.state())
        check(a.stop() == 0, "exit status after SIGTERM")


if __name__ == "__main__":
    main([b1_pipelined_drains])
