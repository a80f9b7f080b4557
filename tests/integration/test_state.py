#!/usr/bin/env python3
"""state.json: written on transitions, a corrupt file moved aside, an
operator drain that survives a restart (and a reboot), and boot id
handling (new boot vs agent restart)."""

import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BOOT_A, BOOT_B, Agent, check, describe, main, sorted_history, wait_until  # noqa: E402


def read_state(a):
    with open(a.state_json_path()) as f:
        text = f.read()
    try:
        return text, json.loads(text)
    except ValueError:
        raise AssertionError("state.json is not JSON: %r" % text[:300])


def start_event(a):
    """This run's start: history keeps the runs before it (history.jsonl),
    one start entry each."""
    starts = [h for h in sorted_history(a.history(1000))
              if h.get("event") in ("start", "restore-maintenance") and h.get("from") == "BOOT"]
    check(len(starts) == a.runs, "want one start entry per run (%d), got %r" % (a.runs, starts))
    return starts[-1]


def s1_state_file_written():
    with Agent("state-file") as a:
        a.start()
        wait_until(lambda: os.path.exists(a.state_json_path()), 2, what="state.json")
        wait_until(lambda: "SERVING" in read_state(a)[0], 2, what="state.json saying SERVING")
        text, obj = read_state(a)
        check(isinstance(obj, dict), "state.json is not an object: %r" % obj)
        check(BOOT_A in text, "state.json does not record the boot id %s: %s" % (BOOT_A, text))
        st = os.stat(a.state_json_path())
        check(st.st_mode & 0o022 == 0, "state.json is group/world writable: %o" % st.st_mode)
        leftovers = [n for n in os.listdir(a.state_dir) if n not in ("state.json", "history.jsonl")]
        check(not leftovers, "temp files left in state_dir: %r" % leftovers)

        ino = st.st_ino
        r = a.request({"version": 1, "command": "drain", "reason": "state test"})
        check(r.get("ok") is True, "drain: %r" % r)
        wait_until(lambda: "MAINTENANCE" in read_state(a)[0], 1, what="state.json to say MAINTENANCE")
        text, _ = read_state(a)
        check("state test" in text, "drain reason not in state.json: %s" % text)
        check(os.stat(a.state_json_path()).st_ino != ino,
              "state.json rewritten in place (same inode): not an atomic rename")
        a.request({"version": 1, "command": "resume"})
        a.wait_state("SERVING", 3)
        def back_to_serving():
            text, obj = read_state(a)
            return obj.get("state") == "SERVING" if "state" in obj else "SERVING" in text
        wait_until(back_to_serving, 1, what="state.json back to SERVING")
        leftovers = [n for n in os.listdir(a.state_dir) if n not in ("state.json", "history.jsonl")]
        check(not leftovers, "temp files left in state_dir: %r" % leftovers)
        rc = a.stop()
        check(rc == 0, "exit status %s on SIGTERM" % rc)


def s2_corrupt_state_moved_aside():
    with Agent("state-corrupt") as a:
        garbage = '{"version": 1, "state": "SERV'  # truncated mid-write
        with open(a.state_json_path(), "w") as f:
            f.write(garbage)
        t0 = time.time()
        a.start()
        aside = [n for n in os.listdir(a.state_dir) if n.startswith("state.json.corrupt-")]
        check(len(aside) == 1, "want one state.json.corrupt-<secs>, state_dir has %r" % os.listdir(a.state_dir))
        m = re.fullmatch(r"state\.json\.corrupt-(\d+)", aside[0])
        check(m, "moved-aside name %r is not state.json.corrupt-<secs>" % aside[0])
        check(abs(int(m.group(1)) - t0) < 120, "corrupt-<secs> %s is not the current time %d" % (m.group(1), t0))
        with open(os.path.join(a.state_dir, aside[0])) as f:
            check(f.read() == garbage, "the moved-aside file does not hold the old content")
        warn = [ln for ln in a.log_text().splitlines() if ln.startswith("warning:") and "corrupt" in ln]
        check(warn, "no 'warning: ...corrupt...' line logged")
        print("   %s" % warn[0])
        wait_until(lambda: "SERVING" in read_state(a)[0], 2, what="a fresh state.json")
        check(a.status()["last_incident"] is None, "last_incident from a corrupt file")


def s3_maintenance_survives_restart():
    with Agent("state-maint") as a:
        a.start()
        cp = a.ctl("drain", "disk", "swap")
        check(cp.returncode == 0, "drain: " + describe(cp))
        a.wait_state("MAINTENANCE", 2)
        rc = a.stop()
        check(rc == 0, "exit status %s on SIGTERM" % rc)

        a.start(wait_serving=False)
        st, _ = a.wait_state("MAINTENANCE", 3)
        check(st["maintenance"] is True and st["maintenance_reason"] == "disk swap",
              "after restart: maintenance %r reason %r" % (st["maintenance"], st["maintenance_reason"]))
        ev = start_event(a)
        check(ev["to"] == "MAINTENANCE", "restart in maintenance went BOOT->%s: %r" % (ev["to"], ev))
        time.sleep(1.0)
        check(a.state() == "MAINTENANCE", "left MAINTENANCE by itself after restart: %s" % a.state())
        cp = a.ctl("status")
        check(cp.returncode == 1, "status in MAINTENANCE after restart: " + describe(cp))
        check(a.stop() == 0, "exit status on SIGTERM")

        # A reboot (new boot id) keeps an operator drain too: that is what a
        # drain for a kernel upgrade is for.
        a.set_boot_id(BOOT_B)
        a.start(wait_serving=False)
        st, _ = a.wait_state("MAINTENANCE", 3)
        check(st["maintenance_reason"] == "disk swap", "after reboot: reason %r" % st["maintenance_reason"])

        cp = a.ctl("resume")
        check(cp.returncode == 0, "resume: " + describe(cp))
        a.wait_state("SERVING", 3)
        check(a.stop() == 0, "exit status on SIGTERM")
        a.start()  # waits for SERVING: the resume was persisted
        check(a.status()["maintenance"] is False, "maintenance back after resume + restart")


def s4_boot_id_new_boot_vs_restart():
    with Agent("state-boot") as a:
        a.start()
        first = start_event(a)
        print("   first start: %r" % first["reason"])
        check(a.stop() == 0, "exit status on SIGTERM")

        a.start()
        again = start_event(a)
        print("   same boot id: %r" % again["reason"])
        check("new boot" not in again["reason"].lower(),
              "restart with the same boot id reported as a new boot: %r" % again["reason"])
        check("restart" in again["reason"].lower(),
              "restart with the same boot id does not say restart: %r" % again["reason"])
        check(a.stop() == 0, "exit status on SIGTERM")

        a.set_boot_id(BOOT_B)
        a.start()
        new = start_event(a)
        print("   new boot id: %r" % new["reason"])
        check("new boot" in new["reason"].lower(), "new boot id not reported as a new boot: %r" % new["reason"])
        # state.json is written off the loop: it catches up with status (the
        # CHECKING save still names the old id in its reason)
        wait_until(lambda: BOOT_B in read_state(a)[0] and BOOT_A not in read_state(a)[0], 2,
                   what="state.json to record the new boot id, and no longer the old one")
        check(a.stop() == 0, "exit status on SIGTERM")


if __name__ == "__main__":
    main([s1_state_file_written, s2_corrupt_state_moved_aside, s3_maintenance_survives_restart,
          s4_boot_id_new_boot_vs_restart])
