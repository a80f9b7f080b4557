#!/usr/bin/env python3
"""The control socket and monkeyctl: status exit codes and JSON, usage
errors, history, the watch stream, drain/resume with peer credentials, and
protocol errors on the raw socket."""

import json
import os
import queue
import signal
import shutil
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (MONKEYCTL, Agent, LineReader, check, control_exchange, control_send,  # noqa: E402
                     describe, fail, main, make_tmpdir, run_ctl, sorted_history, spawn, wait_until)

REQUIRED = {
    "": ["host", "state", "since", "cpu", "pool", "last_checks", "last_incident"],
    "cpu": ["busy_pct", "window_pct", "threshold_pct"],
    "pool": ["name", "serving", "serving_count"],
    "last_checks": ["content", "status", "binding", "ok", "at"],
}


def parse_json_output(cp, what):
    try:
        return json.loads(cp.stdout)
    except ValueError:
        fail("%s did not print JSON: %s" % (what, describe(cp)))


def check_status_object(st, where):
    for section, keys in REQUIRED.items():
        obj = st if not section else st.get(section)
        check(isinstance(obj, dict), "%s: %r is not an object: %r" % (where, section, obj))
        for k in keys:
            check(k in obj, "%s: missing %s%s" % (where, section + "." if section else "", k))


def c1_status_exit_codes_and_json():
    with Agent("status") as a:
        a.start()
        cp = a.ctl("status")
        check(cp.returncode == 0, "status while SERVING: " + describe(cp))
        check("SERVING" in cp.stdout, "human status does not say SERVING: %r" % cp.stdout)

        for args in (("--json", "status"), ("status", "--json")):
            cp = a.ctl(*args)
            check(cp.returncode == 0, "monkeyctl %s while SERVING: %s" % (" ".join(args), describe(cp)))
            st = parse_json_output(cp, "monkeyctl " + " ".join(args))
            check_status_object(st, "monkeyctl " + " ".join(args))
            check(st["host"] == "test-1", "host %r, want test-1" % st["host"])
            check(st["state"] == "SERVING", "state %r" % st["state"])
            check(st["cpu"]["threshold_pct"] == 80, "threshold_pct %r" % st["cpu"]["threshold_pct"])
            check(st["pool"]["configured"] is False, "pool.configured %r without [pool]" % st["pool"].get("configured"))
            check(st["last_incident"] is None, "last_incident %r on a fresh agent" % st["last_incident"])
            check(st.get("pid") == a.proc.pid, "pid %r, want %d" % (st.get("pid"), a.proc.pid))

        # Raw socket: same object.
        st = a.status()
        check_status_object(st, "raw status")

        # Unreachable: no such socket, and a socket file nobody listens on.
        d = make_tmpdir("monkey-it-unreach-")
        cp = run_ctl([MONKEYCTL, "--socket", os.path.join(d, "nope.sock"), "status"])
        check(cp.returncode == 3, "status with a missing socket: " + describe(cp))
        stale = os.path.join(d, "stale.sock")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(stale)
        s.close()
        cp = run_ctl([MONKEYCTL, "--socket", stale, "status"])
        check(cp.returncode == 3, "status with a stale socket: " + describe(cp))
        cp = run_ctl([MONKEYCTL, "--socket", stale, "--json", "status"])
        check(cp.returncode == 3, "--json status with a stale socket: " + describe(cp))


def c2_usage_errors():
    with Agent("usage") as a:
        a.start()
        for args in (["frobnicate"], ["history", "-n", "abc"], ["--no-such-option", "status"],
                     ["history", "-n"]):
            cp = a.ctl(*args)
            check(cp.returncode == 2, "monkeyctl %s: want exit 2 (usage), %s" % (" ".join(args), describe(cp)))
            check(cp.stderr.strip(), "monkeyctl %s: exit 2 with nothing on stderr" % " ".join(args))
        check(a.state() == "SERVING", "usage errors changed the state")


def c3_history():
    with Agent("history") as a:
        a.start()
        hist = sorted_history(a.history())
        check(len(hist) >= 2, "want at least 2 history entries after start, got %r" % hist)
        for h in hist:
            for k in ("at", "at_unix", "from", "to", "event", "action", "reason"):
                check(k in h, "history entry lacks %r: %r" % (k, h))
        steps = [(h["from"], h["to"], h["event"]) for h in hist]
        check(("BOOT", "CHECKING", "start") in steps, "no BOOT->CHECKING start entry: %r" % steps)
        check(("CHECKING", "SERVING", "checks-passed") in steps, "no CHECKING->SERVING entry: %r" % steps)
        one = a.history(limit=1)
        check(len(one) == 1, "history limit 1 gave %d entries" % len(one))

        cp = a.ctl("history")
        check(cp.returncode == 0, "monkeyctl history: " + describe(cp))
        check("SERVING" in cp.stdout and "CHECKING" in cp.stdout, "history output: %r" % cp.stdout)
        cp = a.ctl("history", "-n", "1")
        check(cp.returncode == 0, "monkeyctl history -n 1: " + describe(cp))
        check(len([ln for ln in cp.stdout.splitlines() if "SERVING" in ln]) <= 1,
              "history -n 1 printed more than one transition: %r" % cp.stdout)
        cp = a.ctl("--json", "history", "-n", "5")
        check(cp.returncode == 0, "monkeyctl --json history: " + describe(cp))
        parsed = parse_json_output(cp, "monkeyctl --json history")
        entries = parsed if isinstance(parsed, list) else parsed.get("history")
        check(isinstance(entries, list) and entries, "--json history: no list of entries: %r" % parsed)


class StreamReader(threading.Thread):
    """Collects a subprocess's stdout lines into a queue."""

    def __init__(self, stream):
        super().__init__(daemon=True)
        self.stream = stream
        self.lines = queue.Queue()

    def run(self):
        for line in self.stream:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, pred, timeout, what):
        deadline = time.monotonic() + timeout
        got = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                fail("%s: not seen within %.1fs; got %r" % (what, timeout, got))
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                fail("%s: stream ended; got %r" % (what, got))
            got.append(line)
            if pred(line):
                return line


def c4_watch_stream():
    with Agent("watch") as a:
        a.start()
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        raw.connect(a.socket)
        rd = LineReader(raw)
        control_send(raw, {"version": 1, "command": "watch"})
        first = rd.readjson()
        check(first.get("ok") is True and first.get("watching") is True, "watch reply %r" % first)

        human = spawn([MONKEYCTL, "--socket", a.socket, "watch"], stdout=subprocess.PIPE,
                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, bufsize=1)
        hr = StreamReader(human.stdout)
        hr.start()
        time.sleep(0.3)  # let monkeyctl subscribe before the transition
        check(human.poll() is None, "monkeyctl watch exited early with %s" % human.returncode)

        # An idle watcher must not be dropped by the 10s idle limit meant for
        # request/reply clients: the drain happens after a quiet second.
        time.sleep(1.0)
        cp = a.ctl("drain", "watch", "test")
        check(cp.returncode == 0, "drain as root: " + describe(cp))

        ev = rd.readjson(3.0)
        check(ev.get("version") == 1 and isinstance(ev.get("event"), dict), "watch event %r" % ev)
        e = ev["event"]
        check(e.get("to") == "MAINTENANCE" and e.get("event") == "maintenance",
              "first watched event %r, want ->MAINTENANCE (maintenance)" % e)
        check("watch test" in (e.get("reason") or ""), "drain reason not in the event: %r" % e)
        hr.wait_for(lambda ln: "MAINTENANCE" in ln, 3.0, "monkeyctl watch printing the MAINTENANCE transition")

        cp = a.ctl("resume")
        check(cp.returncode == 0, "resume as root: " + describe(cp))
        seen = []
        while "SERVING" not in seen:
            ev = rd.readjson(5.0)
            seen.append(ev["event"]["to"])
        check(seen[0] == "CHECKING", "after resume the watcher saw %r, want CHECKING then SERVING" % seen)
        hr.wait_for(lambda ln: "SERVING" in ln, 3.0, "monkeyctl watch printing SERVING after resume")
        raw.close()
        human.terminate()
        human.wait(5)
        a.assert_alive()


def c5_drain_permissions():
    with Agent("drain") as a:
        a.start()
        cp = a.ctl("status", user="nobody")
        check(cp.returncode == 0, "status as nobody (reading is open to all): " + describe(cp))
        cp = a.ctl("drain", "not", "allowed", user="nobody")
        check(cp.returncode == 1, "drain as nobody: want exit 1, " + describe(cp))
        check("permission denied" in (cp.stdout + cp.stderr).lower(),
              "drain as nobody: no 'permission denied' message: " + describe(cp))
        cp = a.ctl("resume", user="nobody")
        check(cp.returncode == 1, "resume as nobody: want exit 1, " + describe(cp))
        check(a.state() == "SERVING", "a refused drain changed the state to %s" % a.state())

        cp = a.ctl("drain", "kernel", "upgrade")
        check(cp.returncode == 0, "drain as root: " + describe(cp))
        st, _ = a.wait_state("MAINTENANCE", 2.0)
        check(st["maintenance"] is True, "maintenance %r after drain" % st["maintenance"])
        check(st["maintenance_reason"] == "kernel upgrade",
              "maintenance_reason %r, want 'kernel upgrade'" % st["maintenance_reason"])
        cp = a.ctl("status")
        check(cp.returncode == 1, "status in MAINTENANCE: want exit 1, " + describe(cp))
        cp = a.ctl("--json", "status")
        check(cp.returncode == 1, "--json status in MAINTENANCE: want exit 1, " + describe(cp))
        check(parse_json_output(cp, "--json status")["maintenance"] is True, "--json status maintenance")
        hist = a.history()
        check(any(h["event"] == "maintenance" and h["to"] == "MAINTENANCE" for h in hist),
              "no maintenance entry in history: %r" % hist)

        # An overload while in maintenance must not pull us anywhere.
        a.feeder.set_busy(95)
        time.sleep(2.8)
        st = a.status()
        check(st["state"] == "MAINTENANCE", "an overload moved the agent out of MAINTENANCE to %s" % st["state"])
        a.feeder.set_busy(10)
        time.sleep(0.5)

        cp = a.ctl("resume")
        check(cp.returncode == 0, "resume as root: " + describe(cp))
        st, _ = a.wait_state("SERVING", 3.0)
        check(st["maintenance"] is False, "maintenance still true after resume")
        check(st["maintenance_reason"] is None, "maintenance_reason %r after resume" % st["maintenance_reason"])
        steps = [(h["from"], h["to"]) for h in sorted_history(a.history())]
        check(("MAINTENANCE", "CHECKING") in steps and steps[-1] == ("CHECKING", "SERVING"),
              "resume path %r, want MAINTENANCE->CHECKING->SERVING" % steps)
        cp = a.ctl("status")
        check(cp.returncode == 0, "status after resume: " + describe(cp))

        # Raw protocol: drain over the socket as root, with a reason.
        r = a.request({"version": 1, "command": "drain", "reason": "raw"})
        check(r.get("ok") is True, "raw drain as root: %r" % r)
        check(a.wait_state("MAINTENANCE", 2.0)[0]["maintenance_reason"] == "raw", "raw drain reason")
        r = a.request({"version": 1, "command": "resume"})
        check(r.get("ok") is True, "raw resume as root: %r" % r)
        a.wait_state("SERVING", 3.0)


def c6_protocol_errors():
    with Agent("protocol") as a:
        a.start()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(a.socket)
        rd = LineReader(s)

        def exchange(req):
            control_send(s, req)
            return rd.readjson()

        for label, req in (("bad JSON", "this is not json"),
                           ("JSON that is not an object", "[1,2,3]"),
                           ("missing command", {"version": 1}),
                           ("unknown command", {"version": 1, "command": "reboot-everything"}),
                           ("unsupported version", {"version": 2, "command": "status"})):
            r = exchange(req)
            check(r.get("ok") is False and isinstance(r.get("error"), str) and r["error"],
                  "%s: want an error reply, got %r" % (label, r))
            check(r.get("version") == 1, "%s: reply without version 1: %r" % (label, r))
            print("   %s -> %r" % (label, r["error"]))
            r = exchange({"version": 1, "command": "status"})
            check(r.get("ok") is True and r["status"]["state"] == "SERVING",
                  "connection unusable after %s: %r" % (label, r))

        # Two requests in one write: two replies, in order.
        s.sendall(b'{"version":1,"command":"status"}\n{"version":1,"command":"history","limit":1}\n')
        r1, r2 = rd.readjson(), rd.readjson()
        check("status" in r1 and "history" in r2, "pipelined replies out of order: %r / %r" % (r1, r2))
        s.close()

        # Oversize request, with and without a newline: an error reply, not a hang.
        for label, payload in (("oversize line", b'{"version":1,"command":"status","pad":"' + b"x" * 5000 + b'"}\n'),
                               ("oversize without newline", b"y" * 9000)):
            o = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            o.connect(a.socket)
            try:
                o.sendall(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server may stop reading once it has replied
            r = LineReader(o).readjson(3.0)
            check(r.get("ok") is False and r.get("error"), "%s: want an error reply, got %r" % (label, r))
            print("   %s -> %r" % (label, r["error"]))
            o.close()
        a.assert_alive()

        # More clients than CONTROL_CLIENTS_MAX (32): the agent survives and
        # serves again once they go.
        many = []
        for _ in range(40):
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.settimeout(2)
            try:
                c.connect(a.socket)
            except OSError:
                c.close()
                continue
            many.append(c)
        time.sleep(0.2)
        a.assert_alive()
        for c in many:
            c.close()

        def answers():
            return a.status()["state"] == "SERVING"
        deadline = time.monotonic() + 3
        while True:
            try:
                if answers():
                    break
            except Exception:  # noqa: BLE001 - retried until the deadline
                pass
            if time.monotonic() > deadline:
                fail("status does not answer after 40 clients connected and left")
            time.sleep(0.05)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.connect(a.socket)
            r = control_exchange(c, {"version": 1, "command": "history", "limit": 2})
            check(r.get("ok") is True and len(r["history"]) <= 2, "history limit 2: %r" % r)


_ctl_copy = []


def ctl_as(a, setpriv_args, *args):
    """monkeyctl as the user setpriv_args make (from a copy anyone can run:
    the build tree may be closed to other users)."""
    if not _ctl_copy:
        d = make_tmpdir("monkey-it-bin-")
        _ctl_copy.append(os.path.join(d, "monkeyctl"))
        shutil.copy(MONKEYCTL, _ctl_copy[0])
        os.chmod(_ctl_copy[0], 0o755)
    return run_ctl(["setpriv"] + list(setpriv_args) + [_ctl_copy[0], "--socket", a.socket] + list(args))


NOBODY_ONLY = ["--reuid=65534", "--regid=65534", "--clear-groups"]
NOBODY_IN_STAFF = ["--reuid=65534", "--regid=65534", "--groups=50"]       # supplementary
NOBODY_STAFF_PRIMARY = ["--reuid=65534", "--regid=50", "--clear-groups"]  # primary gid


def c8_control_group():
    """[agent] control_group: members may drain and resume (as a
    supplementary group, SO_PEERGROUPS, or as their primary gid,
    SO_PEERCRED); others are told which command, which uid and how to get
    in; root always may; reading stays open to all. By name and by gid."""
    for group in ("staff", "50"):
        with Agent("group-%s" % group, extra="") as a:
            a.write_config(raw=a.config_text().replace("[cpu]", "control_group = %s\n\n[cpu]" % group, 1))
            a.start()
            cp = ctl_as(a, NOBODY_ONLY, "status")
            check(cp.returncode == 0, "status as nobody: " + describe(cp))
            cp = ctl_as(a, NOBODY_ONLY, "drain", "not", "a", "member")
            check(cp.returncode == 1, "drain by a non-member: want exit 1, " + describe(cp))
            shown = "group 'staff'" if group == "staff" else "gid 50"
            for needle in ("permission denied", "'drain'", "uid 65534", shown, "add you to " + shown):
                check(needle in cp.stderr, "the refusal lacks %r: %r" % (needle, cp.stderr))
            print("   %s" % cp.stderr.strip())
            check(a.state() == "SERVING", "a refused drain changed the state")

            for label, who in (("supplementary", NOBODY_IN_STAFF), ("primary", NOBODY_STAFF_PRIMARY)):
                cp = ctl_as(a, who, "drain", "by", "a", label, "member")
                check(cp.returncode == 0, "drain by a %s member of %s: %s" % (label, group, describe(cp)))
                st, _ = a.wait_state("MAINTENANCE", 3)
                check(st["maintenance_reason"] == "by a %s member" % label, "reason %r" % st["maintenance_reason"])
                cp = ctl_as(a, who, "resume")
                check(cp.returncode == 0, "resume by a %s member: %s" % (label, describe(cp)))
                a.wait_state("SERVING", 3)
            a.wait_log(r"allowed as a member of", 2, "the group's access logged")

            cp = a.ctl("drain", "root")
            check(cp.returncode == 0, "drain as root: " + describe(cp))
            a.wait_state("MAINTENANCE", 3)
            cp = ctl_as(a, NOBODY_ONLY, "resume")
            check(cp.returncode == 1 and "permission denied" in cp.stderr, "resume by a non-member: " + describe(cp))
            cp = a.ctl("resume")
            check(cp.returncode == 0, "resume as root: " + describe(cp))
            a.wait_state("SERVING", 3)


def c9_control_group_reload():
    """A reload grants and revokes control_group at once (SIGHUP)."""
    with Agent("group-reload") as a:
        a.start()
        cp = ctl_as(a, NOBODY_IN_STAFF, "drain", "before")
        check(cp.returncode == 1 and "permission denied" in cp.stderr, "drain before the grant: " + describe(cp))
        a.write_config(raw=a.config_text().replace("[cpu]", "control_group = staff\n\n[cpu]", 1))
        a.signal(signal.SIGHUP)
        a.wait_log(r"Reloaded ", 3)
        cp = ctl_as(a, NOBODY_IN_STAFF, "drain", "granted")
        check(cp.returncode == 0, "drain after the grant: " + describe(cp))
        a.wait_state("MAINTENANCE", 3)
        a.write_config()
        a.signal(signal.SIGHUP)
        wait_until(lambda: a.log_text().count("Reloaded ") >= 2, 3, what="the second reload")
        cp = ctl_as(a, NOBODY_IN_STAFF, "resume")
        check(cp.returncode == 1 and "permission denied" in cp.stderr, "resume after the revoke: " + describe(cp))


def c7_malformed_replies():
    """An agent (here a fake on the socket) whose reply lacks the answer:
    monkeyctl says what is missing and exits 3, for each command."""
    d = make_tmpdir("monkey-it-fake-")
    path = os.path.join(d, "fake.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(8)
    stop = threading.Event()
    replies = {"status": {"version": 1, "ok": True},
               "history": {"version": 1, "ok": True, "history": {"not": "an array"}},
               "pool": {"version": 1, "ok": True, "pool": [1, 2]}}

    def serve():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except socket.timeout:
                continue
            with conn:
                line = LineReader(conn).readline(3.0)
                cmd = json.loads(line)["command"]
                conn.sendall((json.dumps(replies[cmd]) + "\n").encode())
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        for cmd, what in (("status", 'no "status" object'), ("history", 'no "history" array'),
                          ("pool", 'no "pool" object')):
            r = run_ctl([MONKEYCTL, "--socket", path, cmd])
            check(r.returncode == 3 and "malformed reply" in r.stderr and what in r.stderr,
                  "%s with a malformed reply: %s" % (cmd, describe(r)))
    finally:
        stop.set()
        t.join(2)
        srv.close()


if __name__ == "__main__":
    main([c1_status_exit_codes_and_json, c2_usage_errors, c3_history, c4_watch_stream,
          c5_drain_permissions, c6_protocol_errors, c7_malformed_replies, c8_control_group, c9_control_group_reload])
