#!/usr/bin/env python3
"""monkeyd SIGKILLed at every persist of the cycle, right before and right
after the rename onto state.json, then started again as systemd would:
state.json and the Redis pool stay consistent, no Slack alert is lost (and
none doubled, but for the one in flight at the kill: at-least-once), and
an incident never reboots the host twice.

The kill is deterministic: faultshim.c raises SIGKILL inside rename() when
the new state.json's content matches (the Nth time). The cycle is the real
one: pool leave, drain, a signed RebootInstances to the EC2 double, whose
hook reboots the simulated host (SIGTERM, new boot id, start), post-boot
checks, rejoin."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faults  # noqa: E402
from faults import Cells, Host, assert_responsive, check, fail, kind_of, leftovers, read_json, shim_env  # noqa: E402

# (point, the run it is in, what the new state.json contains, nth match, the state it shows)
POINTS = [
    ("start-CHECKING", "first", '"state": "CHECKING"', 1, "CHECKING"),
    ("start-SERVING", "first", '"state": "SERVING"', 1, "SERVING"),
    ("OVERLOADED", "first", '"state": "OVERLOADED"', 1, "OVERLOADED"),
    ("DRAINING", "first", '"state": "DRAINING"', 1, "DRAINING"),
    ("slack-thread", "first", '"slack_thread": "', 1, None),
    ("REMEDIATING", "first", '"state": "REMEDIATING"', 1, "REMEDIATING"),
    ("step-recorded", "first", '"step": "reboot-instance"', 1, "REMEDIATING"),
    ("reboot-accepted", "first", "RebootInstances accepted", 1, "REMEDIATING"),
    # the same, and the instance takes 4 s to go down: the agent is back
    # before the reboot it asked for
    ("reboot-accepted-slow", "first", "RebootInstances accepted", 1, "REMEDIATING"),
    ("boot-CHECKING", "after-reboot", '"state": "CHECKING"', 1, "CHECKING"),
    ("boot-SERVING", "after-reboot", '"state": "SERVING"', 1, "SERVING"),
]

CELL_TIMEOUT = 30.0


def kill_cell(point, run, match, nth, shows, when):
    with Host("kill") as h:
        if point.startswith("reboot-accepted"):
            # the machine goes down a moment after EC2's yes, as a real one
            # does: time for the agent to read it (and be killed there)
            h.reboot_delay = 4.0 if point.endswith("-slow") else 0.5
        trace = os.path.join(h.a.dir, "shim-trace")
        env = shim_env(kill_match=match, kill_nth=nth, kill_when=when, trace=trace)
        if run == "first":
            h.start(env=env, wait_serving=False)
        else:
            h.next_env = env
            h.start()
        overloaded = False
        waited = False
        killed = []          # (state.json state at the kill, texts spooled then, wall clock)

        def on_killed(rc):
            check(rc == -9, "monkeyd exited %s, not by the shim's SIGKILL" % rc)
            if os.path.exists(h.a.state_json_path()):
                _, st = read_json(h.a.state_json_path())
            else:
                check(point == "start-CHECKING" and when == "before", "state.json is gone")
                st = {"state": None}
            with open(trace) as f:
                tr = f.read()
            check("KILL %s" % when in tr, "monkeyd died but the shim did not kill it: %r" % tr[-300:])
            if shows and when == "after":
                check(st["state"] == shows, "killed after the %s persist, state.json says %s" % (point, st["state"]))
            if when == "before" and match.startswith('"state"'):
                check(st["state"] != shows, "killed before the %s persist, state.json already says it" % point)
            if point.startswith("reboot-accepted"):
                steps = (st.get("incident") or {}).get("steps") or []
                res = (steps[-1].get("result") or "") if steps else ""
                check(("accepted" in res) == (when == "after"),
                      "killed %s the step result persist, state.json has result %r" % (when, res))
            spooled = [faults.payload_text(b) for b in faults.outbox_snapshot(h.a).values()]
            killed.append((st["state"], spooled, time.time()))

        h.on_killed = on_killed
        deadline = time.monotonic() + CELL_TIMEOUT
        while True:
            if time.monotonic() > deadline:
                fail("the cycle did not finish within %.0fs: state %s, reboots %d, kills %d, alerts %r"
                     % (CELL_TIMEOUT, h.a.state() if h.a.alive() else "down", len(h.reboots()), len(killed),
                        faults.kinds(h.slack.messages())))
            check(not h.reboot_errors, "; ".join(h.reboot_errors))
            h.restart()
            if not h.a.alive():
                time.sleep(0.05)
                continue
            try:
                st = h.a.status()
            except Exception:  # noqa: BLE001 - it may be going down for the reboot
                time.sleep(0.05)
                continue
            if point.endswith("-slow") and killed and len(h.boot_ids) == 1 and h.a.runs == 2:
                # restarted, the accepted reboot still due: out, waiting, no second ask
                check(st["state"] == "CHECKING" and st["remedy"].get("awaiting_reboot") is True,
                      "restarted before the accepted reboot came: %s, awaiting_reboot %r"
                      % (st["state"], st["remedy"].get("awaiting_reboot")))
                check(h.addr() not in h.serving_set(), "back in the pool while the reboot is due")
                waited = True
            if not overloaded and st["state"] == "SERVING" and not h.reboots():
                perm = (st["remedy"].get("aws") or {}).get("permission")
                if perm == "permitted":
                    h.a.feeder.set_busy(95)
                    overloaded = True
            # status answers from memory while state.json is written off the
            # loop: the cycle is over once the disk has caught up too
            if h.reboots() and st["state"] == "SERVING" and (st.get("last_incident") or {}).get("outcome") == "rejoined" \
                    and (st.get("disk_writes") or {}).get("pending", 0) == 0:
                break
            time.sleep(0.05)
        h.wait_reboots_done()
        check(waited or not point.endswith("-slow"), "never saw the restarted agent wait for the reboot")
        check(killed, "the shim never killed monkeyd at %s %s" % (when, point))
        check(len(killed) == 1, "killed %d times" % len(killed))

        # the outcome
        check(len(h.reboot_calls()) == 1, "RebootInstances called %d times for one incident" % len(h.reboot_calls()))
        # "accepted" may never be spooled: the reboot can stop monkeyd before
        # it reads EC2's answer, as a real one can
        allowed = len(h.in_flight_at(killed[0][1], killed[0][2]))
        msgs = h.assert_alerts(["breach", "step", "back"], allowed_dups=allowed)
        _, sj = read_json(h.a.state_json_path())
        check(sj["state"] == "SERVING" and (sj.get("incident") or {}).get("outcome") == "rejoined",
              "state.json after the cycle: %s, incident %r" % (sj["state"], sj.get("incident")))
        n_rem = len(sj.get("remediations") or [])
        check(1 <= n_rem <= 2, "state.json counts %d remediations for 1 reboot" % n_rem)
        h.assert_pool_consistent()
        check(not leftovers(h.a.state_dir), "temp files left in state_dir: %r" % leftovers(h.a.state_dir))
        check(not leftovers(os.path.join(h.a.state_dir, "outbox")), "temp files left in the outbox")
        check(not faults.outbox_files(h.a), "undelivered alerts left: %r" % faults.outbox_files(h.a))
        ms = assert_responsive(h.a)
        return ("killed %s, state.json said %s; restarted: 1 reboot, %d remediation(s) counted, alerts %s%s, "
                "pool ok, SERVING, status %.0f ms"
                % (when, killed[0][0], n_rem, "+".join(kind_of(m) for m in msgs),
                   " (%d in flight at the kill, re-sent)" % allowed if allowed else "",
                   ms * 1000))


def main():
    faults.preflight()
    cells = Cells()
    for point, run, match, nth, shows in POINTS:
        for when in ("before", "after"):
            if point.endswith("-slow") and when == "before":
                continue  # before: the step result is not written, the same as a kill mid-call
            name = "sigkill-%s-%s" % (when, point)
            cells.run("killpoints", name, kill_cell, point, run, match, nth, shows, when)
    cells.finish()


if __name__ == "__main__":
    main()
