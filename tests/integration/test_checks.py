#!/usr/bin/env python3
"""The checks that gate the rejoin, against real nginx apps on 127.0.0.x:
all pass -> SERVING with the report in status; wrong content, a 500, the
app bound to another address -> QUARANTINED naming the check and its
evidence; an app slow to start passes after retries without an early
rejoin."""

import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "doubles"))
from harness import Agent, check, describe, main, wait_until  # noqa: E402
from proxyfleet import Nginx, Redis, free_port, nginx_app  # noqa: E402
from slack_double import SlackDouble  # noqa: E402


def nginx_status(name, addr, port, code, text):
    body = """\
    server {{
        listen {addr}:{port};
        location / {{
            default_type text/plain;
            return {code} "{text}";
        }}
    }}""".format(addr=addr, port=port, code=code, text=text)
    return Nginx(name, body, addr, port)


def checks_config(url, public, content="host=app1", extra=""):
    return "[checks]\nurl = %s\nexpect_content = %s\npublic_address = %s\nattempts = 3\ntimeout = 1s\n%s" % (
        url, content, public, extra)


def s1_all_pass():
    port = free_port()
    app = nginx_app("app1", "127.0.0.2", port).start()
    try:
        with Agent("checks-ok") as a:
            a.write_config(extra=checks_config("http://127.0.0.2:%d/" % port, "127.0.0.2:%d" % port,
                                               extra="local_address = 127.0.0.1\n"))
            a.start()
            lc = a.status()["last_checks"]
            check(lc["ok"] is True and lc["content"] == "pass" and lc["status"] == "pass" and lc["binding"] == "pass",
                  "last_checks: %r" % lc)
            check("contain \"host=app1\"" in lc["detail"]["content"], "content detail: %r" % lc["detail"])
            check(lc["http_status"] == 200 and "127.0.0.1 is on an interface" in lc["detail"]["binding"],
                  "detail: %r" % lc)
            r = a.ctl("status")
            check("content \u2713" in r.stdout, "status text: %r" % r.stdout)
    finally:
        app.stop()


def s2_wrong_content():
    port = free_port()
    app = nginx_app("other", "127.0.0.2", port).start()
    try:
        with Agent("checks-content") as a:
            a.write_config(extra=checks_config("http://127.0.0.2:%d/" % port, "127.0.0.2:%d" % port))
            a.start(wait_serving=False)
            st, _ = a.wait_state("QUARANTINED", 15)
            check("content check failed" in st["reason"] and "host=app1" in st["reason"], "reason: %r" % st["reason"])
            lc = st["last_checks"]
            check(lc["content"] == "fail" and lc["status"] == "pass" and lc["body_excerpt"].startswith("host=other"),
                  "last_checks: %r" % lc)
            check(not st["pool"]["serving"], "serving while quarantined")
    finally:
        app.stop()


def s3_status_500():
    port = free_port()
    app = nginx_status("err", "127.0.0.2", port, 500, "host=app1 but broken").start()
    try:
        with Agent("checks-500") as a:
            a.write_config(extra=checks_config("http://127.0.0.2:%d/" % port, "127.0.0.2:%d" % port))
            a.start(wait_serving=False)
            st, _ = a.wait_state("QUARANTINED", 15)
            check("status check failed" in st["reason"] and "got 500, want 200-299" in st["reason"],
                  "reason: %r" % st["reason"])
            check(st["last_checks"]["http_status"] == 500, "http_status: %r" % st["last_checks"])
    finally:
        app.stop()


def s4_binding():
    """The app answers on 127.0.0.3, but proxies route to 127.0.0.2."""
    port = free_port()
    app = nginx_app("app1", "127.0.0.3", port).start()
    try:
        with Agent("checks-binding") as a:
            a.write_config(extra=checks_config("http://127.0.0.3:%d/" % port, "127.0.0.2:%d" % port))
            a.start(wait_serving=False)
            st, _ = a.wait_state("QUARANTINED", 15)
            check("binding check failed" in st["reason"] and "Connection refused" in st["reason"],
                  "reason: %r" % st["reason"])
            check(st["last_checks"]["content"] == "pass", "content should pass: %r" % st["last_checks"])
    finally:
        app.stop()


def s5_slow_start():
    """The app comes up 2.5 s after the agent: CHECKING until then, then SERVING."""
    port = free_port()
    app = nginx_app("app1", "127.0.0.2", port)
    with Agent("checks-slow") as a:
        a.write_config(extra=checks_config("http://127.0.0.2:%d/" % port, "127.0.0.2:%d" % port).replace(
            "attempts = 3", "attempts = 10"))
        a.start(wait_serving=False)
        t0 = time.monotonic()
        time.sleep(2.5)
        check(a.state() == "CHECKING", "rejoined before the app was up: %s" % a.state())
        app.start()
        try:
            st, _ = a.wait_state("SERVING", 15)
            check(time.monotonic() - t0 >= 2.5, "too early")
            check(st["last_checks"]["attempt"] >= 2, "passed on the first attempt? %r" % st["last_checks"])
        finally:
            app.stop()


def s6_monkeyctl_check():
    """monkeyctl check runs the three now: exit 0 and each detail; exit 1
    and the evidence when the app breaks; anyone may ask."""
    port = free_port()
    app = nginx_app("app1", "127.0.0.2", port).start()
    try:
        with Agent("checks-ctl") as a:
            a.write_config(extra=checks_config("http://127.0.0.2:%d/" % port, "127.0.0.2:%d" % port))
            a.start()
            r = a.ctl("check", user="nobody")
            check(r.returncode == 0, "check: %s" % describe(r))
            lines = r.stdout.splitlines()
            check(lines[0].split()[:2] == ["content", "pass"] and lines[1].split()[:3] == ["status", "pass", "200"]
                  and lines[2].split()[:2] == ["binding", "pass"], "output: %r" % r.stdout)
            app.stop()
            r = a.ctl("check")
            check(r.returncode == 1 and "Connection refused" in r.stdout, "check with the app down: %s" % describe(r))
            check(a.state() == "SERVING", "a manual check changed the state: %s" % a.state())
    finally:
        if app.proc:
            app.stop()


def s7_report_in_slack():
    """The after-boot report lists each check; a quarantine alert carries the evidence."""
    port = free_port()
    app = nginx_app("app1", "127.0.0.2", port).start()
    try:
        with SlackDouble(token="xoxb-checks") as sl, Agent("checks-slack", window="1s", interval="100ms") as a:
            tok = os.path.join(a.dir, "tok")
            with open(tok, "w") as f:
                f.write("xoxb-checks\n")
            os.chmod(tok, 0o600)
            a.write_config(extra=checks_config("http://127.0.0.2:%d/" % port, "127.0.0.2:%d" % port) +
                           "\n[slack]\ntoken_file = %s\nchannel = #incidents\napi_url = %s\n\n"
                           "[remedy]\nladder = none\nbudget = none\n" % (tok, sl.api_url))
            a.start()
            a.feeder.set_busy(95)
            wait_until(lambda: any(h.get("to") == "REMEDIATING" for h in a.history(100)), 10, what="remediation")
            a.feeder.set_busy(5)
            msgs = sl.wait_for(lambda ms: any("is back in the pool" in m["body"]["text"] for m in ms), 15)
            back = [m for m in msgs if "is back in the pool" in m["body"]["text"]][0]
            text = back["body"]["text"]
            for needle in ("\u2713 content: ", "contain &quot;host=app1&quot;" if "&quot;" in text else "host=app1",
                           "\u2713 status: 200", "\u2713 binding: 127.0.0.2:%d accepts connections" % port):
                check(needle in text, "the report lacks %r: %r" % (needle, text))
            check(back["thread_ts"] == msgs[0]["ts"], "the report is not in the incident's thread")
            a.wait_state("SERVING", 10)
            app.stop()
            a.ctl("drain")
            a.wait_state("MAINTENANCE", 5)
            a.ctl("resume")
            a.wait_state("QUARANTINED", 15)
            msgs = sl.wait_for(lambda ms: any("is quarantined" in m["body"]["text"] for m in ms), 10)
            q = [m for m in msgs if "is quarantined" in m["body"]["text"]][0]["body"]["text"]
            check("\u2717 binding" in q and "Connection refused" in q, "quarantine alert lacks the evidence: %r" % q)
    finally:
        if app.proc:
            app.stop()


def s8_readiness_fall_and_rise():
    """[checks] every: fall = 2 failures in a row while serving take the host
    out (QUARANTINED); once the app is back, rise = 2 passes in a row bring
    it back."""
    port = free_port()
    app = nginx_app("app1", "127.0.0.2", port).start()
    try:
        with Agent("checks-ready") as a:
            a.write_config(extra=checks_config("http://127.0.0.2:%d/" % port, "127.0.0.2:%d" % port,
                                               extra="every = 300ms\nfall = 2\nrise = 2\n"))
            a.start()
            time.sleep(1.0)
            check(a.state() == "SERVING", "a healthy app was taken out: %s" % a.state())
            app.stop()
            t0 = time.monotonic()
            st, _ = a.wait_state("QUARANTINED", 10)
            check("2 times in a row while serving" in st["reason"], "reason: %r" % st["reason"])
            check(time.monotonic() - t0 >= 0.5, "left after fewer than 2 checks")
            app.start()
            st, _ = a.wait_state("SERVING", 40)
            passes = [h for h in a.history(200) if h.get("to") == "SERVING"]
            check(passes and "checks passed" in passes[-1]["reason"], "rejoin reason: %r" % passes[-1:])
            check("pass 1 of 2 in a row" in a.log_text(), "rejoined without rise = 2 passes")
    finally:
        if app.proc:
            app.stop()


def s9_report_in_redis_and_state():
    """The report is in the host's Redis hash and in state.json, and status
    shows it again after a restart."""
    port = free_port()
    app = nginx_app("app1", "127.0.0.2", port).start()
    redis = Redis().start()
    try:
        with Agent("checks-redis") as a:
            a.write_config(extra=checks_config("http://127.0.0.2:%d/" % port, "127.0.0.2:%d" % port) +
                           "\n[pool]\nredis = %s\nname = chk\naddress = 127.0.0.2:%d\n" % (redis.url(), port))
            a.start()
            raw = wait_until(lambda: redis.cmd("HGET", "monkey:{chk}:host:test-1", "last_checks"), 5,
                             what="last_checks in Redis")
            check('"content":"pass"' in raw and '"ok":true' in raw, "Redis last_checks: %r" % raw)
            def saved():
                with open(a.state_json_path()) as f:
                    return "last_checks" in json.load(f)
            # saved with the transition, off the loop: a moment after status shows it
            wait_until(saved, 2, what="last_checks in state.json")
            a.stop()
            app.stop()
            a.start(wait_serving=False)
            lc = a.status()["last_checks"]
            check(lc.get("content") in ("pass", "fail") and lc.get("at"), "status after a restart: %r" % lc)
    finally:
        if app.proc:
            app.stop()
        redis.stop()


def s10_private_address_from_imds():
    """Without local_address, the binding check takes the instance's
    local-ipv4 from IMDSv2 and looks for it on the interfaces: 127.0.0.3
    is inside lo's 127.0.0.1/8, so local; 198.51.100.77 (a documentation
    address, never sent anything) is on no interface here."""
    from aws_double import AwsDouble
    port = free_port()
    app = nginx_app("app1", "127.0.0.2", port).start()
    try:
        for local, want in (("127.0.0.1", "pass"), ("127.0.0.3", "pass"), ("198.51.100.77", "fail")):
            iid = "i-0123456789abcdef0"
            with AwsDouble(credentials={"AKIACHECKS0000000001": ("checksSecret", None)},
                           instances={iid: {"local_ipv4": local}}) as d, Agent("checks-imds") as a:
                a.write_config(extra=checks_config("http://127.0.0.2:%d/" % port, "127.0.0.2:%d" % port) +
                               "\n[aws]\nendpoint_url = %s\nimds_url = %s\n\n[remedy]\ndry_run = yes\n"
                               % (d.endpoint_url, d.url))
                a.env_extra = {"AWS_ACCESS_KEY_ID": "AKIACHECKS0000000001", "AWS_SECRET_ACCESS_KEY": "checksSecret",
                               "HOME": "/nonexistent"}
                a.start(wait_serving=False)
                wait_until(lambda: (a.status()["remedy"].get("aws") or {}).get("identity") == "ready", 10,
                           what="the identity from IMDS")
                r = a.ctl("check")
                check(("%s is on an interface" % local if want == "pass" else "%s is NOT on an interface" % local)
                      in r.stdout, "binding with local-ipv4 %s: %s" % (local, describe(r)))
                check((r.returncode == 0) == (want == "pass"), "exit: %s" % describe(r))
    finally:
        app.stop()


if __name__ == "__main__":
    main([s1_all_pass, s2_wrong_content, s3_status_500, s4_binding, s5_slow_start, s6_monkeyctl_check,
          s7_report_in_slack, s8_readiness_fall_and_rise, s9_report_in_redis_and_state,
          s10_private_address_from_imds])
