#!/usr/bin/env python3
"""Reload as config management does it, with every periodic job running:
readiness checks every 300 ms against a real nginx app, the pool's
heartbeat on a real redis-server, Slack answering 429 and 503 so the outbox
retries, incident evidence and a CPU profile from a dry-run breach, and
HAProxy's agent-check listener. Five reloads (unchanged, changed, broken,
unchanged while drained, changed after resume), then a restart and a
reboot, must leave a healthy host SERVING with every check passing, show
the new values in status, and give AddressSanitizer nothing to report (CI
runs this under ASan+UBSan).

This is the reload that freed the Config the checks still read: the
checks then compared the app's answer with freed memory and a healthy
host quarantined itself."""

import os
import signal
import socket
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "doubles"))
from harness import BOOT_B, Agent, check, main, wait_until  # noqa: E402
from proxyfleet import Redis, free_port, nginx_app  # noqa: E402
from slack_double import SlackDouble  # noqa: E402

SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "heap-use-after-free")


def agent_check_word(port, timeout=2.0):
    """What HAProxy's agent-check reads on 127.0.0.2:port (one line)."""
    with socket.create_connection(("127.0.0.2", port), timeout=timeout) as s:
        s.settimeout(timeout)
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(256)
            if not chunk:
                break
            data += chunk
    return data.decode().strip()


def live_config(redis, app_port, slack_url, tok, agent_port, expect="host=app1", heartbeat="300ms"):
    return ("[checks]\nurl = http://127.0.0.2:%d/\nexpect_content = %s\npublic_address = 127.0.0.2:%d\n"
            "attempts = 3\ntimeout = 1s\nevery = 300ms\nfall = 1\nrise = 1\n\n"
            "[pool]\nredis = %s\nname = live\naddress = 127.0.0.2:%d\nmin_serving = 0\nmax_unavailable = 1\n"
            "heartbeat = %s\nlease = 3s\n\n"
            "[slack]\ntoken_file = %s\nchannel = #incidents\napi_url = %s\n\n"
            "[remedy]\ndry_run = yes\n\n"
            "[evidence]\nprofile = 2s\n\n"
            "[proxy]\nagent_check_address = 127.0.0.2\nagent_check_port = %d\n"
            % (app_port, expect, app_port, redis.url(), app_port, heartbeat, tok, slack_url, agent_port))


def assert_serving_for(a, seconds, what):
    """SERVING the whole time, every readiness check passing."""
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        st = a.status()
        check(st["state"] == "SERVING", "%s: state %s (%r)" % (what, st["state"], st.get("reason")))
        lc = st.get("last_checks") or {}
        check(lc.get("ok") is True, "%s: a check failed on a healthy app: %r" % (what, lc))
        n += 1
        time.sleep(0.1)
    check(n >= 5, "%s: too few status polls (%d)" % (what, n))


def sighup_and_wait(a, want_log, what):
    before = a.log_text().count(want_log)
    a.signal(signal.SIGHUP)
    wait_until(lambda: a.log_text().count(want_log) > before, 5, what=what)


def l1_five_reloads_under_load():
    app_port = free_port()
    agent_port, agent_port2 = free_port(), free_port()
    app = nginx_app("app1", "127.0.0.2", app_port).start()
    redis = Redis().start()
    try:
        with SlackDouble(token="xoxb-live") as sl, Agent("reload-live", window="1s", interval="100ms",
                                                         clear_below=50) as a:
            tok = os.path.join(a.dir, "tok")
            with open(tok, "w") as f:
                f.write("xoxb-live\n")
            os.chmod(tok, 0o600)
            cfg = lambda **kw: live_config(redis, app_port, sl.api_url, tok, **kw)  # noqa: E731
            a.write_config(extra=cfg(agent_port=agent_port))
            a.start(timeout=15)
            check(agent_check_word(agent_port).endswith("ready"), "agent-check before any reload")

            # Slack is throttling and failing: the outbox retries all along.
            sl.script("ratelimit:1", "http:503", "ratelimit:1", "http:503", "ratelimit:1")

            # A breach: the dry run tells Slack and the evidence (and a
            # profile, where perf may run) is being taken while we reload.
            a.feeder.set_busy(95)
            wait_until(lambda: any(h.get("to") == "OVERLOADED" for h in a.history(50)), 10, what="the breach")

            # 1: unchanged
            sighup_and_wait(a, "Reloaded ", "reload 1 (unchanged)")
            a.feeder.set_busy(10)
            a.wait_state("SERVING", 10)
            assert_serving_for(a, 1.5, "after reload 1 (unchanged)")

            # 2: changed: checks, CPU rule, pool heartbeat, agent-check port
            a.write_config(extra=cfg(agent_port=agent_port2, expect="host=app", heartbeat="200ms"),
                           threshold=85, clear_below=40)
            sighup_and_wait(a, "Reloaded ", "reload 2 (changed)")
            st = a.status()
            check(st["cpu"]["threshold_pct"] == 85 and st["cpu"]["clear_below_pct"] == 40,
                  "status after a changed reload: %r" % st["cpu"])
            assert_serving_for(a, 1.5, "after reload 2 (changed)")
            wait_until(lambda: agent_check_word(agent_port2).endswith("ready"), 3,
                       what="the agent-check on its new port")

            # 3: broken: refused, the running config stays
            broken = a.config_text(extra=cfg(agent_port=agent_port2, expect="host=app", heartbeat="200ms"),
                                   threshold=85, clear_below=40)
            check("threshold = 85" in broken, "the broken file's base")
            a.write_config(raw=broken.replace("threshold = 85", "threshold = lots"))
            sighup_and_wait(a, "reload failed", "reload 3 (broken) refused")
            check(a.status()["cpu"]["threshold_pct"] == 85, "a refused reload changed the threshold")
            assert_serving_for(a, 1.0, "after reload 3 (broken)")

            # drain; 4: unchanged while drained; resume
            a.write_config(extra=cfg(agent_port=agent_port2, expect="host=app", heartbeat="200ms"),
                           threshold=85, clear_below=40)
            r = a.ctl("drain")
            check(r.returncode == 0, "drain: %s" % r.stderr)
            a.wait_state("MAINTENANCE", 5)
            sighup_and_wait(a, "Reloaded ", "reload 4 (unchanged, drained)")
            time.sleep(0.7)
            check(a.state() == "MAINTENANCE", "a reload ended the drain")
            r = a.ctl("resume")
            check(r.returncode == 0, "resume: %s" % r.stderr)
            a.wait_state("SERVING", 10)
            assert_serving_for(a, 1.5, "after drain, reload, resume")

            # 5: changed again, after the resume
            a.write_config(extra=cfg(agent_port=agent_port2, expect="host=app1"), threshold=90, clear_below=45)
            sighup_and_wait(a, "Reloaded ", "reload 5 (changed)")
            check(a.status()["cpu"]["threshold_pct"] == 90, "threshold after reload 5")
            assert_serving_for(a, 2.0, "after reload 5 (changed)")

            # Everything still worked: the pool has us, Slack got its messages.
            check(redis.cmd("SISMEMBER", "monkey:{live}:serving", "127.0.0.2:%d" % app_port) == "1",
                  "not in the pool's serving set at the end")
            sl.wait_for(lambda ms: any("DRY RUN" in m["body"].get("text", "") for m in ms), 15)
            hist = [h.get("to") for h in a.history(200)]
            check("QUARANTINED" not in hist, "the host quarantined itself during the reloads: %r" % hist)

            # restart (same boot), then a reboot (new boot id): the same
            # periodic jobs, SERVING again, the history kept across both
            before = len(a.history(200))
            rc = a.stop()
            check(rc == 0, "monkeyd exited %r after SIGTERM" % rc)
            a.start(timeout=15)
            assert_serving_for(a, 1.0, "after a restart")
            check(len(a.history(200)) > before, "the history did not survive the restart")
            check(a.stop() == 0, "exit status after the second SIGTERM")
            a.set_boot_id(BOOT_B)
            a.start(timeout=15)
            assert_serving_for(a, 1.0, "after a reboot")
            check(redis.cmd("SISMEMBER", "monkey:{live}:serving", "127.0.0.2:%d" % app_port) == "1",
                  "not back in the pool's serving set after the reboot")

            rc = a.stop()
            check(rc == 0, "monkeyd exited %r after SIGTERM" % rc)
            log = a.all_logs()
            for mark in SANITIZER_MARKS:
                check(mark not in log, "sanitizer report in the log (%s)" % mark)
    finally:
        app.stop()
        redis.stop()


if __name__ == "__main__":
    main([l1_five_reloads_under_load])
