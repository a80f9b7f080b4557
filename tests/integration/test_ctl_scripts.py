#!/usr/bin/env python3
"""monkeyctl as scripts use it (a health check, an Ansible run), with the
real binaries: the status exit codes (0 routed, 1 not routed, 3 agent
unreachable, 4 degraded), drain and resume that may be run twice, a
history that survives an agent restart and a reboot and stays bounded,
`watch` that ends non-zero when the agent goes away, and JSON that carries
its schema, one time format, the body text escaped once, errors as JSON
on stdout, and --help's access marks as the protocol's table has them."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "doubles"))
from harness import (BOOT_B, MONKEYCTL, Agent, LineReader, check, control_send, describe,  # noqa: E402
                     fail, main, run_ctl, spawn, wait_until)
from proxyfleet import Redis, free_port, nginx_app  # noqa: E402
from slack_double import SlackDouble  # noqa: E402

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
SCHEMA = 1


def status_json(a, want_rc=None):
    cp = a.ctl("--json", "status")
    try:
        st = json.loads(cp.stdout)
    except ValueError:
        fail("monkeyctl --json status did not print JSON: " + describe(cp))
    if want_rc is not None:
        check(cp.returncode == want_rc, "monkeyctl status: want exit %d (%s), %s; routing %r"
              % (want_rc, {0: "routed", 1: "not routed", 4: "degraded"}[want_rc], describe(cp), st.get("routing")))
    return cp.returncode, st


def wait_exit(a, rc, timeout, what):
    """Until `monkeyctl status` exits rc; returns the status JSON."""
    seen = []

    def ok():
        got, st = status_json(a)
        seen.append(got)
        return st if got == rc else None
    try:
        return wait_until(ok, timeout, 0.1, what)
    except AssertionError:
        fail("%s: status exit codes seen %r" % (what, sorted(set(seen))))


def e1_exit_codes_routed_and_not():
    """Observe only (no [remedy]): an overloaded host stays in the pool, so
    it is routed (exit 0; it was 1). A drain is not routed (1); an agent
    that is gone is unreachable (3)."""
    with Agent("exit-routed") as a:
        a.start()
        status_json(a, 0)
        a.feeder.set_busy(95)
        a.wait_state("OVERLOADED", 5)
        time.sleep(0.5)
        _, st = status_json(a, 0)
        check(st["routing"]["verdict"] == "routed" and st["routing"]["routed"] is True,
              "routing while OVERLOADED observe-only: %r" % st["routing"])
        cp = a.ctl("status")
        check(cp.returncode == 0 and "routing     routed: OVERLOADED" in cp.stdout,
              "text status while OVERLOADED: " + describe(cp))
        a.feeder.set_busy(10)
        a.wait_state("SERVING", 5)

        check(a.ctl("drain", "exit", "codes").returncode == 0, "drain")
        a.wait_state("MAINTENANCE", 3)
        _, st = status_json(a, 1)
        check(st["routing"] == {"verdict": "not routed", "routed": False, "degraded": False,
                                "why": "state MAINTENANCE"}, "routing in MAINTENANCE: %r" % st["routing"])
        check(a.ctl("resume").returncode == 0, "resume")
        a.wait_state("SERVING", 3)
        status_json(a, 0)
        a.stop()
        cp = a.ctl("status")
        check(cp.returncode == 3, "status with the agent stopped: " + describe(cp))


def e2_degraded_when_redis_is_down():
    """Routed, but the pool's Redis is gone: exit 4 (it was 0), back to 0
    once Redis is."""
    redis = Redis().start()
    try:
        with Agent("exit-redis") as a:
            a.write_config(extra="[pool]\nredis = %s\nname = web\naddress = 127.0.0.2:8080\nmin_serving = 1\n"
                                 "max_unavailable = 1\ndrain = 1s\nlease = 3s\nheartbeat = 1s\n" % redis.url())
            a.start()
            wait_exit(a, 0, 5, "routed with Redis up")
            redis.stop()
            st = wait_exit(a, 4, 10, "degraded with Redis down")
            check(st["state"] == "SERVING" and st["routing"]["routed"] is True and st["routing"]["degraded"] is True
                  and st["routing"]["why"].startswith("Redis: "), "routing with Redis down: %r" % st["routing"])
            print("   Redis down: exit 4, %s" % st["routing"]["why"])
            cp = a.ctl("status")
            check(cp.returncode == 4 and "routing     DEGRADED: Redis: " in cp.stdout, "text status: " + describe(cp))
            redis.start()
            wait_exit(a, 0, 15, "routed again with Redis back")
    finally:
        if redis.proc:
            redis.stop()


def e3_degraded_when_slack_fails():
    """Routed, but Slack answers 503: exit 4 until a message goes through."""
    with SlackDouble(token="xoxb-1-2-scripts") as d, Agent("exit-slack") as a:
        tok = os.path.join(a.dir, "slack-token")
        with open(tok, "w") as f:
            f.write("xoxb-1-2-scripts\n")
        os.chmod(tok, 0o600)
        a.write_config(extra="[slack]\ntoken_file = %s\nchannel = #incidents\napi_url = %s\ntimeout = 2s\n"
                             % (tok, d.api_url))
        a.start()
        status_json(a, 0)
        d.set_default("http:503")
        alert = spawn([MONKEYCTL, "--socket", a.socket, "--timeout", "25", "test-alert", "scripts"],
                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        st = wait_exit(a, 4, 10, "degraded with Slack failing")
        check("Slack: " in st["routing"]["why"], "routing with Slack failing: %r" % st["routing"])
        print("   Slack 503: exit 4, %s" % st["routing"]["why"])
        d.set_default("ok")
        wait_exit(a, 0, 40, "routed again once Slack takes the message")
        alert.wait(30)


def e4_drain_and_resume_twice():
    """Config management runs drain and resume without knowing the state:
    the second of each exits 0 and says "already"."""
    with Agent("idempotent") as a:
        a.start()
        for label, args in (("resume while serving", ("resume",)),):
            cp = a.ctl(*args)
            check(cp.returncode == 0 and cp.stdout.startswith("already "), "%s: %s" % (label, describe(cp)))
        cp = a.ctl("drain", "patching")
        check(cp.returncode == 0 and "already" not in cp.stdout, "first drain: " + describe(cp))
        a.wait_state("MAINTENANCE", 3)
        cp = a.ctl("drain", "patching", "again")
        check(cp.returncode == 0 and cp.stdout.startswith("already drained") and "(patching)" in cp.stdout,
              "second drain: " + describe(cp))
        check(a.status()["maintenance_reason"] == "patching", "the second drain replaced the first reason")
        cp = a.ctl("--json", "drain")
        r = json.loads(cp.stdout)
        check(cp.returncode == 0 and r.get("schema") == SCHEMA and r.get("ok") is True
              and r["message"].startswith("already drained"), "--json drain again: " + describe(cp))
        cp = a.ctl("resume")
        check(cp.returncode == 0 and "already" not in cp.stdout, "first resume: " + describe(cp))
        cp = a.ctl("resume")
        check(cp.returncode == 0 and cp.stdout.startswith("already "), "second resume: " + describe(cp))
        a.wait_state("SERVING", 3)
        cp = a.ctl("resume")
        check(cp.returncode == 0 and cp.stdout.startswith("already serving"), "resume when serving: " + describe(cp))
        # still refused to those who may not: idempotent is not open
        cp = a.ctl("resume", user="nobody")
        check(cp.returncode == 1 and "permission denied" in cp.stderr, "resume as nobody: " + describe(cp))


def history_of(a, n=1000):
    cp = a.ctl("--json", "history", "-n", str(n))
    check(cp.returncode == 0, "history: " + describe(cp))
    out = json.loads(cp.stdout)
    check(isinstance(out, dict) and out.get("schema") == SCHEMA and isinstance(out.get("history"), list),
          "--json history is not {\"schema\":%d,\"history\":[...]}: %r" % (SCHEMA, cp.stdout[:200]))
    return out["history"]


def e5_history_survives_restart_and_reboot():
    with Agent("history-disk") as a:
        a.start()
        check(a.ctl("drain", "before", "restart").returncode == 0, "drain")
        a.wait_state("MAINTENANCE", 3)
        check(a.ctl("resume").returncode == 0, "resume")
        a.wait_state("SERVING", 3)
        before = history_of(a)
        check(any(h["reason"] == "before restart" for h in before), "drain not in history: %r" % before)
        check(a.stop() == 0, "SIGTERM")

        a.start()
        after = history_of(a)
        check(after[:len(before)] == before, "history after a restart lost or changed entries:\n%r\nvs\n%r"
              % (before, after[:len(before)]))
        check(after[-1]["to"] == "SERVING" and "agent restart" in after[-2]["reason"],
              "the restart's own transitions: %r" % after[-2:])

        # A reboot: the state directory stays, the boot id changes.
        a.kill()
        a.set_boot_id(BOOT_B)
        a.start()
        rebooted = history_of(a)
        check(rebooted[:len(after)] == after, "history after a reboot lost entries")
        check("new boot" in rebooted[-2]["reason"], "the reboot's start: %r" % rebooted[-2])
        cp = a.ctl("history", "-n", "1000")
        check(cp.returncode == 0 and "before restart" in cp.stdout and "new boot" in cp.stdout,
              "text history after the reboot: " + describe(cp))

        # Bounded: 450 more transitions, the file never holds more than 400
        # lines, the last 200 come back after a restart.
        path = os.path.join(a.state_dir, "history.jsonl")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(a.socket)
        rd = LineReader(s)
        longest = 0
        for i in range(150):
            control_send(s, {"version": 1, "command": "drain", "reason": "round %d" % i})
            check(rd.readjson().get("ok") is True, "drain %d" % i)
            wait_until(lambda: a.state() == "MAINTENANCE", 3, 0.005, "MAINTENANCE %d" % i)
            control_send(s, {"version": 1, "command": "resume"})
            check(rd.readjson().get("ok") is True, "resume %d" % i)
            wait_until(lambda: a.state() == "SERVING", 3, 0.005, "SERVING %d" % i)
            with open(path) as f:
                longest = max(longest, sum(1 for _ in f))
        s.close()
        check(longest <= 400, "history.jsonl grew to %d lines (bound 400)" % longest)
        last = history_of(a)
        check(len(last) == 200 and last[-1]["to"] == "SERVING", "history holds %d entries" % len(last))
        a.stop()
        a.start()
        kept = history_of(a)
        # the restart's own two transitions pushed the two oldest out
        check(len(kept) == 200 and kept[:198] == last[2:] and "agent restart" in kept[-2]["reason"],
              "the bounded history was not what came back after a restart")
        print("   history.jsonl at most %d lines over 450 transitions; 200 kept across restarts" % longest)


def e6_watch_ends_when_the_agent_goes():
    """A supervisor's `monkeyctl watch` must notice the agent is gone:
    exit 3 when it stops or dies, 0 when the watcher is interrupted."""
    for how in ("SIGTERM", "SIGKILL"):
        with Agent("watch-%s" % how.lower()) as a:
            a.start()
            w = spawn([MONKEYCTL, "--socket", a.socket, "--json", "watch"], stdin=subprocess.DEVNULL,
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            time.sleep(0.5)
            check(w.poll() is None, "watch exited early")
            if how == "SIGTERM":
                a.stop()
            else:
                a.kill()
            try:
                out, err = w.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                w.kill()
                fail("monkeyctl watch still running 5 s after the agent got %s" % how)
            check(w.returncode == 3 and "went away" in err, "watch after %s: exit %s, %r" % (how, w.returncode, err))
            doc = json.loads(out.strip().splitlines()[-1])
            check(doc.get("schema") == SCHEMA and doc["error"]["exit"] == 3 and doc["error"]["kind"] == "unreachable",
                  "--json watch's last line: %r" % doc)
            print("   agent %s: watch exit 3, %s" % (how, err.strip()))
    with Agent("watch-int") as a:
        a.start()
        w = spawn([MONKEYCTL, "--socket", a.socket, "watch"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                  stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)
        w.send_signal(signal.SIGINT)
        w.communicate(timeout=5)
        check(w.returncode == 0, "watch interrupted: exit %s" % w.returncode)


def e7_json_contract():
    """Schema version everywhere, RFC 3339 UTC plus Unix numbers, the body
    excerpt escaped once, errors as JSON on stdout with a non-zero exit."""
    port = free_port()
    app = nginx_app("other", "127.0.0.2", port).start()
    try:
        with Agent("json") as a:
            a.write_config(extra="[checks]\nurl = http://127.0.0.2:%d/\nexpect_content = host=app1\n"
                                 "public_address = 127.0.0.2:%d\nattempts = 1\ntimeout = 1s\n" % (port, port))
            a.start(wait_serving=False)
            a.wait_state("QUARANTINED", 15)
            rc, st = status_json(a, 1)
            check(list(st)[0] == "schema" and st["schema"] == SCHEMA, "status JSON does not lead with the schema")
            body = st["last_checks"]["body_excerpt"]
            check(body == "host=other\n", "body_excerpt %r, want the body's text 'host=other\\n'" % body)
            cp = a.ctl("--json", "status")
            check('"host=other\\n"' in cp.stdout and "\\\\x0a" not in cp.stdout,
                  "body_excerpt escaped twice in the JSON text: %r" % cp.stdout[cp.stdout.find("body_excerpt"):][:60])
            cp = a.ctl("check")
            check("host=other\\x0a" in cp.stdout, "monkeyctl check shows the body escaped once: " + describe(cp))

            # one time format: RFC 3339 UTC strings, Unix numbers beside them
            check(RFC3339.match(st["since"]) and isinstance(st["since_unix"], (int, float)), "since: %r" % st)
            check(RFC3339.match(st["last_checks"]["at"]), "last_checks.at %r" % st["last_checks"]["at"])
            for h in history_of(a):
                check(RFC3339.match(h["at"]) and abs(h["at_unix"] - time.time()) < 120, "history time %r" % h)

            for args in (("--json", "pool"), ("--json", "incident", "nope")):
                cp = a.ctl(*args)
                check(cp.returncode == 1, "%s: %s" % (" ".join(args), describe(cp)))
                e = json.loads(cp.stdout)
                check(e.get("schema") == SCHEMA and e["error"]["exit"] == 1 and e["error"]["kind"] == "refused"
                      and e["error"]["message"], "%s: error JSON %r" % (" ".join(args), e))
            cp = a.ctl("--json", "drain", user="nobody")
            e = json.loads(cp.stdout)
            check(cp.returncode == 1 and e["error"]["kind"] == "permission", "drain as nobody: " + describe(cp))
            cp = a.ctl("--json", "frobnicate")
            e = json.loads(cp.stdout)
            check(cp.returncode == 2 and e["error"] == {"exit": 2, "kind": "usage",
                                                        "message": "unknown command 'frobnicate'"},
                  "usage error: " + describe(cp))
            cp = a.ctl("status", "--json", "--no-such-flag")
            check(cp.returncode == 2 and json.loads(cp.stdout)["error"]["kind"] == "usage", "bad flag: " + describe(cp))
    finally:
        app.stop()
    cp = run_ctl([MONKEYCTL, "--socket", "/nonexistent/monkey.sock", "status", "--json"])
    e = json.loads(cp.stdout)
    check(cp.returncode == 3 and e["error"]["exit"] == 3 and e["error"]["kind"] == "unreachable"
          and "/nonexistent/monkey.sock" in e["error"]["message"], "unreachable under --json: " + describe(cp))
    cp = run_ctl([MONKEYCTL, "--help"])
    for needle in ("0  status: routed", "1  status: not routed", "3  agent unreachable", "4  status: degraded"):
        check(needle in cp.stdout, "--help lacks the exit code line %r" % needle)


# Who may run what, as agent/proto/control.c's table says (mutating, root_only).
PRIVILEGED = {"drain", "resume", "test-alert", "test-reboot", "pool budget --min-serving"}
ROOT_ONLY = {"reload"}


def e8_help_marks_access_from_the_table():
    """--help marks each command that needs privilege (*) or root (**) from
    the protocol's table, once, at the end of its text; the rest carry no
    mark."""
    cp = run_ctl([MONKEYCTL, "--help"])
    check(cp.returncode == 0, "--help: " + describe(cp))
    section = cp.stdout.split("Commands (", 1)[1].split("\nOptions", 1)[0]
    blocks = {}
    name = None
    for line in section.splitlines()[1:]:
        if line.startswith("  ") and not line.startswith("   "):
            words = line.split()
            # help rows of a verb's sub-commands: "incident diff", "pool budget --min-serving"
            name = " ".join(words[:3]) if words[:3] == ["pool", "budget", "--min-serving"] \
                else " ".join(words[:2]) if words[0] in ("incident", "pool") and len(words) > 1 \
                and words[1] in ("diff", "flame", "budget") else words[0]
            blocks[name] = line
        elif name:
            blocks[name] += "\n" + line
    check(set(blocks) >= PRIVILEGED | ROOT_ONLY | {"status", "check", "help"}, "--help commands: %r" % sorted(blocks))
    for name, text in blocks.items():
        want = "root only**" if name in ROOT_ONLY else "needs privilege*" if name in PRIVILEGED else None
        marks = text.count("privilege*") + text.count("root only**")
        if want:
            check(marks == 1 and text.endswith("; " + want), "--help %s should end with %r:\n%s" % (name, want, text))
        else:
            check(marks == 0, "--help %s should carry no access mark:\n%s" % (name, text))


if __name__ == "__main__":
    main([e1_exit_codes_routed_and_not, e2_degraded_when_redis_is_down, e3_degraded_when_slack_fails,
          e4_drain_and_resume_twice, e5_history_survives_restart_and_reboot, e6_watch_ends_when_the_agent_goes,
          e7_json_contract, e8_help_marks_access_from_the_table])
