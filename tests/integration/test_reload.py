#!/usr/bin/env python3
"""SIGHUP reload: a valid file is swapped in (and the detector uses it), an
invalid one is refused with FILE:LINE and the running config is kept.
`monkeyctl reload` (the unit's ExecReload=) waits for that verdict: exit 0
and "reloaded FILE", or non-zero with FILE:LINE; status shows the running
config's sha256 and the last reload's time and result; root only."""

import hashlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import MONKEYCTL, SOURCE_ROOT, Agent, check, describe, main, run_ctl, wait_until  # noqa: E402


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


def sha256_of(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def r4_monkeyctl_reload_verdict():
    with Agent("reload-ctl") as a:
        a.start()
        st = a.status()
        check(st["config"] == a.config and st["config_sha256"] == sha256_of(a.config),
              "status config %r sha256 %r, want %s's %s" % (st["config"], st.get("config_sha256"), a.config,
                                                             sha256_of(a.config)))
        check(st["last_reload"] is None, "last_reload %r before any reload" % st["last_reload"])

        # A good file: exit 0, "reloaded FILE", and status shows it.
        a.write_config(threshold=85)
        good = sha256_of(a.config)
        t0 = time.time()
        cp = a.ctl("reload")
        check(cp.returncode == 0 and cp.stdout.startswith("reloaded %s" % a.config) and good in cp.stdout,
              "reload of a good file: " + describe(cp))
        st = a.status()
        lr = st["last_reload"]
        check(st["cpu"]["threshold_pct"] == 85, "threshold_pct %r after reload" % st["cpu"]["threshold_pct"])
        check(st["config_sha256"] == good, "config_sha256 %r, want the new file's %s" % (st["config_sha256"], good))
        check(lr["ok"] is True and lr["result"] == "ok" and lr["via"] == "monkeyctl" and RFC3339.match(lr["at"])
              and t0 - 1 <= lr["at_unix"] <= time.time() + 1, "last_reload after a good reload: %r" % lr)
        cp = a.ctl("status")
        check("reload      " in cp.stdout and "(monkeyctl): ok" in cp.stdout and good in cp.stdout,
              "text status after a good reload: %r" % cp.stdout)

        # A broken file: non-zero, FILE:LINE: message first on stderr, the
        # old config runs on and status says so.
        text = a.config_text(threshold="banana")
        a.write_config(raw=text)
        lineno = line_of(text, "threshold = banana")
        cp = a.ctl("reload")
        first = cp.stderr.splitlines()[0] if cp.stderr else ""
        check(cp.returncode == 1 and re.match(r"^%s:%d: .*banana" % (re.escape(a.config), lineno), first),
              "reload of a broken file: want exit 1 and %s:%d: first, %s" % (a.config, lineno, describe(cp)))
        print("   refused: %s" % first)
        st = a.status()
        lr = st["last_reload"]
        check(st["config_sha256"] == good, "config_sha256 %r after a refused reload, want the running %s"
              % (st["config_sha256"], good))
        check(st["cpu"]["threshold_pct"] == 85 and st["state"] == "SERVING", "the running config changed: %r" % st)
        check(lr["ok"] is False and lr["result"] == first and lr["via"] == "monkeyctl",
              "last_reload after a refusal: %r" % lr)
        cp = a.ctl("status")
        check("REFUSED, still running the config above: %s" % first in cp.stdout,
              "text status after a refusal: %r" % cp.stdout)
        cp = a.ctl("--json", "reload")
        doc = json.loads(cp.stdout)
        check(cp.returncode == 1 and doc["schema"] == 1 and doc["error"]["kind"] == "refused"
              and doc["error"]["message"] == first, "--json reload of a broken file: " + describe(cp))

        # SIGHUP is recorded too.
        a.write_config(threshold=86)
        a.signal(signal.SIGHUP)
        wait_until(lambda: (a.status()["last_reload"] or {}).get("via") == "SIGHUP", 3, what="the SIGHUP reload")
        st = a.status()
        check(st["last_reload"]["ok"] is True and st["config_sha256"] == sha256_of(a.config),
              "after SIGHUP: %r" % st["last_reload"])
        a.assert_alive()


def r5_reload_is_root_only():
    with Agent("reload-perm", extra="") as a:
        a.write_config(raw=a.config_text().replace("[cpu]", "control_group = staff\n\n[cpu]", 1))
        a.start()
        before = a.status()["last_reload"]
        cp = a.ctl("reload", user="nobody")
        check(cp.returncode == 1 and "permission denied" in cp.stderr and "'reload' is for root" in cp.stderr,
              "reload as nobody: " + describe(cp))
        # a member of the control group may drain, not reload
        member = ["setpriv", "--reuid=65534", "--regid=65534", "--groups=50"]
        cp = run_ctl(member + [ctl_copy(), "--socket", a.socket, "reload"])
        check(cp.returncode == 1 and "not for [agent] control_group" in cp.stderr,
              "reload by a control_group member: " + describe(cp))
        cp = run_ctl(member + [ctl_copy(), "--socket", a.socket, "drain", "member"])
        check(cp.returncode == 0, "drain by a control_group member: " + describe(cp))
        check(a.status()["last_reload"] == before, "a refused peer's reload was recorded")
        cp = a.ctl("reload")
        check(cp.returncode == 0, "reload as root: " + describe(cp))


_copy = []


def ctl_copy():
    if not _copy:
        from harness import _ctl_for_nobody
        _copy.append(_ctl_for_nobody())
    return _copy[0]


def unit_exec_reload():
    """ExecReload= of units/monkeyd.service, with the monkeyctl just built."""
    with open(os.path.join(SOURCE_ROOT, "units", "monkeyd.service")) as f:
        lines = [ln.split("=", 1)[1].strip() for ln in f if ln.startswith("ExecReload=")]
    check(len(lines) == 1, "units/monkeyd.service has %d ExecReload= lines" % len(lines))
    argv = shlex.split(lines[0])
    check(argv[0] == "/usr/bin/monkeyctl", "ExecReload= runs %r, not monkeyctl" % argv[0])
    return [MONKEYCTL] + argv[1:]


def r6_unit_exec_reload_fails_on_a_broken_file():
    """What `systemctl reload monkeyd` runs: its exit status is the verdict
    (the old ExecReload=/bin/kill -HUP was 0 for a file the agent refused)."""
    argv = unit_exec_reload()
    with Agent("reload-unit") as a:
        a.start()
        env = dict(os.environ, MONKEY_CONTROL_SOCKET=a.socket)
        a.write_config(threshold=75)
        cp = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=40)
        check(cp.returncode == 0, "ExecReload= on a good file: " + describe(cp))
        text = a.config_text().replace("interval = 200ms", "interval = 200ms\nthreshhold = 90")
        a.write_config(raw=text)
        cp = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=40)
        check(cp.returncode != 0 and ("%s:%d:" % (a.config, line_of(text, "threshhold"))) in cp.stderr,
              "ExecReload= on a broken file: want non-zero with FILE:LINE, " + describe(cp))
        check(a.status()["cpu"]["threshold_pct"] == 75, "the running config changed")


if __name__ == "__main__":
    main([r1_good_reload_applies, r2_bad_reload_keeps_running_config, r3_reload_keeps_runtime_state,
          r4_monkeyctl_reload_verdict, r5_reload_is_root_only, r6_unit_exec_reload_fails_on_a_broken_file])
