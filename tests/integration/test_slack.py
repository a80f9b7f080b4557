#!/usr/bin/env python3
"""Slack alerts end to end against the Slack double (tests/doubles), which
speaks Slack's real answers: the thread of an incident, retries on 500 and
on 429 with Retry-After, a hanging Slack, invalid_auth, webhooks, the
write-ahead outbox across SIGKILL and across a reboot, its bounds, the
Redis-down alert, test-alert, and the token kept out of everything."""

import json
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "doubles"))
import harness  # noqa: E402
from harness import BOOT_B, MONKEYD, Agent, check, describe, main, wait_until  # noqa: E402
from proxyfleet import Redis, free_port  # noqa: E402
from slack_double import SlackDouble  # noqa: E402

TOKEN = "xoxb-1111111111-2222222222222-plantedSECRETtoken42"
WEBHOOK_PATH = "/services/T0TEST/B0TEST/plantedWEBHOOKsecret77"
OUTPUT = []  # everything this test printed or read from tools, for the secret grep


def token_file(a, token=TOKEN, name="slack-token"):
    path = os.path.join(a.dir, name)
    with open(path, "w") as f:
        f.write(token + "\n")
    os.chmod(path, 0o600)
    return path


def bot_config(a, double, remedy="ladder = none\nbudget = none", slack_extra=""):
    return """[slack]
token_file = %s
channel = #incidents
api_url = %s
timeout = 2s
%s

[remedy]
%s
""" % (token_file(a), double.api_url, slack_extra, remedy)


def new_agent(name, double, remedy=None, slack_extra="", pool=""):
    if remedy is None:  # a rehearsal of the cycle; without a pool, no fleet budget must be written down
        remedy = "ladder = none" if pool else "ladder = none\nbudget = none"
    a = Agent(name, window="1s", interval="100ms")
    a.write_config(extra=bot_config(a, double, remedy, slack_extra) + pool)
    return a


def kinds(msgs):
    out = []
    for m in msgs:
        t = (m["body"] or {}).get("text", "")
        for k, word in (("breach", "is overloaded"), ("remediating", "reboot-instance"),
                        ("remediating", "nothing done to the host"),
                        ("back", "is back in the pool"), ("quarantined", "is quarantined"),
                        ("maintenance", "is in maintenance"), ("test", "Test alert"),
                        ("dropped", "were dropped"), ("pool-down", "cannot reach Redis"),
                        ("pool-up", "reaches Redis again")):
            if word in t:
                out.append(k)
                break
        else:
            out.append("?" + t[:40])
    return out


def outbox_files(a):
    d = os.path.join(a.state_dir, "outbox")
    try:
        return sorted(n for n in os.listdir(d) if n.endswith(".json"))
    except FileNotFoundError:
        return []


def outbox_kinds(a):
    out = []
    for n in outbox_files(a):
        with open(os.path.join(a.state_dir, "outbox", n)) as f:
            out.append(json.loads(f.read())["kind"])
    return out


def remediated(a):
    return any(h.get("to") == "REMEDIATING" for h in a.history(200))


def overload_cycle(a, double, n_messages=3, timeout=15):
    """One overload, remediated once (dry run): the load drops as soon as
    the agent has acted, whatever Slack does meanwhile."""
    a.feeder.set_busy(95)
    wait_until(lambda: remediated(a), 10, what="a remediation")
    a.feeder.set_busy(5)
    a.wait_state("SERVING", 10)
    return double.wait_for(lambda ms: len(ms) >= n_messages, timeout)


def s1_incident_thread():
    """Breach, remediation and the 'back' report: one thread; ts in state.json."""
    with SlackDouble(token=TOKEN) as d, new_agent("thread", d) as a:
        a.start()
        msgs = overload_cycle(a, d)
        check(kinds(msgs) == ["breach", "remediating", "back"], "messages: %r" % kinds(msgs))
        parent = msgs[0]
        check(parent["thread_ts"] is None and parent["ts"], "the breach is the thread's parent: %r" % parent)
        for m in msgs[1:]:
            check(m["thread_ts"] == parent["ts"], "reply not in the thread: %r vs %r" % (m["thread_ts"], parent["ts"]))
        body = parent["body"]
        check(isinstance(body.get("blocks"), list) and body["blocks"][0]["type"] == "header",
              "breach has no Block Kit header: %r" % body)
        blocks = json.dumps(body["blocks"])
        for needle in ("CPU now", "CPU over the window", "threshold 80%", "PID", "%CPU", "Next:", "Instance"):
            check(needle in blocks, "breach blocks lack %r: %s" % (needle, blocks[:600]))
        check("is overloaded" in body["text"], "no plain-text fallback: %r" % body["text"])
        inc = a.status()["last_incident"]["id"]
        check(inc in body["text"], "fallback does not name incident %s" % inc)
        with open(a.state_json_path()) as f:
            st = json.load(f)
        check(st["incident"].get("slack_thread") == parent["ts"],
              "state.json does not keep the thread ts: %r" % st.get("incident"))
        wait_until(lambda: outbox_files(a) == [], 2, what="the outbox to empty after delivery")
        sl = a.status()["slack"]
        check(sl["mode"] == "bot-token" and sl["outbox"]["delivered"] == 3, "status slack: %r" % sl)


def s2_500_then_ok():
    """A 500 is retried; nothing is lost or doubled; order holds."""
    with SlackDouble(token=TOKEN) as d, new_agent("retry500", d) as a:
        a.start()
        d.script("http:500", "http:503")
        msgs = overload_cycle(a, d, timeout=20)
        check(kinds(msgs) == ["breach", "remediating", "back"], "messages: %r" % kinds(msgs))
        reqs = d.requests()
        check([r["status"] for r in reqs[:3]] == [500, 503, 200], "first answers: %r" % [r["status"] for r in reqs])
        check(len(reqs) == 5, "want 5 requests (2 failed + 3), got %d" % len(reqs))
        wait_until(lambda: a.status()["slack"]["outbox"]["pending"] == 0, 2, what="the outbox to empty")


def s3_429_retry_after():
    """A 429 with Retry-After: 3 is retried no sooner than 3 s later."""
    with SlackDouble(token=TOKEN) as d, new_agent("ratelimit", d) as a:
        a.start()
        d.script("ratelimit:3")
        t0 = time.monotonic()
        r = a.ctl("test-alert", "rate", "limit", timeout=40)
        OUTPUT.append(r.stdout + r.stderr)
        check(r.returncode == 1 and "429" in r.stderr and "retried" in r.stderr,
              "test-alert under 429 should report it: %s" % describe(r))
        msgs = d.wait_for(lambda ms: len(ms) >= 1, 10)
        reqs = d.requests()
        check(reqs[0]["status"] == 429 and reqs[1]["status"] == 200, "answers: %r" % [x["status"] for x in reqs])
        gap = reqs[1]["at"] - reqs[0]["at"]
        check(gap >= 3.0, "retried after %.2fs, before Retry-After (3 s)" % gap)
        check(gap < 5.0, "retried only after %.2fs (Retry-After 3 s)" % gap)
        check(kinds(msgs) == ["test"], "messages: %r" % kinds(msgs))
        check(time.monotonic() - t0 < 10, "took too long")


def s4_hanging_slack():
    """Slack accepts and never answers: the loop stays responsive, the
    call times out, and the message goes once Slack answers again."""
    with SlackDouble(token=TOKEN) as d, new_agent("hang", d) as a:
        a.start()
        d.set_default("hang:30")
        a.feeder.set_busy(95)
        d.wait_for(lambda rs: len(rs) >= 1, 10, source="requests")
        wait_until(lambda: remediated(a), 10, what="a remediation")
        a.feeder.set_busy(5)
        a.wait_state("SERVING", 10)
        # the cycle is over; Slack still hangs (each call times out, then retries)
        times = []
        for _ in range(30):
            t = time.monotonic()
            a.status()
            times.append(time.monotonic() - t)
            time.sleep(0.05)
        harness.check_answer_times(times, "while Slack hangs")
        sl = a.status()["slack"]["outbox"]
        check(sl["pending"] >= 1, "nothing pending while Slack hangs: %r" % sl)
        d.set_default("ok")
        msgs = d.wait_for(lambda ms: len(ms) >= 3, 20)
        check(kinds(msgs) == ["breach", "remediating", "back"], "messages: %r" % kinds(msgs))
        check("timeout" in a.all_logs(), "the timed-out call is not logged")


def s4b_reload_during_hang():
    """A reload while a post hangs: the new client sends that message again
    at once instead of waiting out the old call's timeout."""
    with SlackDouble(token=TOKEN) as d, new_agent("hangreload", d, slack_extra="") as a:
        a.write_config(extra=bot_config(a, d).replace("timeout = 2s", "timeout = 30s"))
        a.start()
        d.script("hang:30")
        r = a.request({"version": 1, "command": "status"})
        check(r["ok"], "status")
        t0 = time.monotonic()
        a.ctl("test-alert", "--timeout", "0.5")
        d.wait_for(lambda rs: len(rs) >= 1, 5, source="requests")
        a.signal(signal.SIGHUP)
        msgs = d.wait_for(lambda ms: len(ms) >= 1, 5)
        check(time.monotonic() - t0 < 5, "not re-sent promptly after the reload")
        check(kinds(msgs) == ["test"], "messages: %r" % kinds(msgs))


def s5_invalid_auth_then_fixed():
    """invalid_auth pauses delivery (shown in status, logged loudly), keeps
    every message; a fixed token and a reload deliver them in order."""
    with SlackDouble(token=TOKEN) as d, new_agent("auth", d) as a:
        token_file(a, "xoxb-wrong-token")
        a.start()
        msgs_before = len(d.requests())
        overload = a.feeder.set_busy(95)
        wait_until(lambda: a.status()["slack"]["outbox"].get("paused"), 10, what="delivery paused")
        a.feeder.set_busy(5)
        a.wait_state("SERVING", 10)
        sl = a.status()["slack"]["outbox"]
        check("invalid_auth" in sl.get("last_error", ""), "status does not show invalid_auth: %r" % sl)
        check(sl["pending"] == 3, "want 3 kept messages, got %r" % sl)
        n = len(d.requests())
        time.sleep(1.5)
        check(len(d.requests()) == n, "still knocking after invalid_auth")
        check(n - msgs_before == 1, "want a single refused request, got %d" % (n - msgs_before))
        check("invalid_auth" in a.log_text() and "paused" in a.log_text(), "not logged loudly")
        token_file(a)
        a.signal(signal.SIGHUP)
        msgs = d.wait_for(lambda ms: len(ms) >= 3, 10)
        check(kinds(msgs) == ["breach", "remediating", "back"], "messages: %r" % kinds(msgs))
        check(msgs[1]["thread_ts"] == msgs[0]["ts"], "replies not threaded after the fix")
        del overload


def s6_sigkill_while_slack_down():
    """monkeyd SIGKILLed with alerts spooled and Slack down; restarted after
    Slack is back: each spooled message arrives exactly once, in order."""
    with SlackDouble(token=TOKEN) as d, new_agent("sigkill", d) as a:
        a.start()
        d.set_default("http:503")
        a.feeder.set_busy(95)
        wait_until(lambda: outbox_kinds(a)[:3] == ["breach", "remediating", "back"], 15,
                   what="three alerts spooled")
        a.feeder.set_busy(5)
        a.wait_state("SERVING", 10)
        spooled = outbox_kinds(a)
        a.kill()
        check(outbox_kinds(a) == spooled, "outbox changed by the kill")
        d.set_default("ok")
        a.start()
        msgs = d.wait_for(lambda ms: len(ms) >= len(spooled), 15)
        time.sleep(1.0)  # anything doubled would show now
        msgs = d.messages()
        check(kinds(msgs) == spooled, "delivered %r, spooled %r" % (kinds(msgs), spooled))
        check(msgs[1]["thread_ts"] == msgs[0]["ts"] and msgs[2]["thread_ts"] == msgs[0]["ts"],
              "replies not in the parent's thread after the restart")
        check(outbox_files(a) == [], "outbox not empty: %r" % outbox_files(a))


def s7_reboot_with_unsent_alert():
    """The 'rebooting' alert is spooled and Slack is down when the host
    goes away; after the boot it is delivered, then the 'back' report, in
    the incident's thread."""
    with SlackDouble(token=TOKEN) as d, new_agent("reboot", d, remedy="ladder = reboot-instance\nbudget = none") as a:
        a.start()
        d.set_default("http:503")
        a.feeder.set_busy(95)
        # the instance goes down right after the reboot call: as soon as
        # the alert announcing it is on disk
        wait_until(lambda: "remediating" in outbox_kinds(a), 15, 0.002, what="the remediating alert spooled")
        a.kill()
        spooled = outbox_kinds(a)
        check(spooled[:2] == ["breach", "remediating"], "spooled before the reboot: %r" % spooled)
        a.feeder.set_busy(5)
        a.set_boot_id(BOOT_B)
        d.set_default("ok")
        t_boot = time.time()
        a.start()
        msgs = d.wait_for(lambda ms: "back" in kinds(ms), 20)
        k = kinds(msgs)
        check(k[0] == "breach" and k[1] == "remediating" and k[-1] == "back", "order after the boot: %r" % k)
        check(all(m["wall"] >= t_boot for m in msgs), "something was delivered before the boot")
        for m in msgs[1:]:
            check(m["thread_ts"] == msgs[0]["ts"], "%s not in the incident's thread" % kinds([m]))
        st = a.status()
        check(st["last_incident"]["outcome"] == "rejoined", "incident: %r" % st["last_incident"])


def s8_webhook_mode():
    """Webhook: standalone messages naming the incident; 404 pauses."""
    with SlackDouble(token=TOKEN, webhook_path=WEBHOOK_PATH) as d:
        a = Agent("webhook", window="1s", interval="100ms")
        with a:
            url_file = os.path.join(a.dir, "webhook")
            with open(url_file, "w") as f:
                f.write(d.url + WEBHOOK_PATH + "\n")
            os.chmod(url_file, 0o600)
            a.write_config(extra="[slack]\nwebhook_url_file = %s\n\n[remedy]\nladder = none\nbudget = none\n" % url_file)
            a.start()
            msgs = overload_cycle(a, d)
            check(kinds(msgs) == ["breach", "remediating", "back"], "messages: %r" % kinds(msgs))
            inc = a.status()["last_incident"]["id"]
            for m in msgs:
                check(m["kind"] == "webhook" and "thread_ts" not in m["body"], "not a plain webhook post: %r" % m)
                check(inc in m["body"]["text"], "webhook message does not name incident %s" % inc)
            check(a.status()["slack"]["mode"] == "webhook", "mode: %r" % a.status()["slack"])
            # the webhook was revoked: Slack answers 404 no_service
            d.set_default("error:no_service")
            r = a.ctl("test-alert", timeout=40)
            OUTPUT.append(r.stdout + r.stderr)
            check(r.returncode == 1 and "no_service" in r.stderr, "revoked webhook: %s" % describe(r))
            check(a.status()["slack"]["outbox"]["paused"], "not paused after 404")
            blob = a.all_logs() + json.dumps(a.status())
            check("plantedWEBHOOKsecret77" not in blob, "the webhook URL leaked into logs or status")


def s9_test_alert():
    """monkeyctl test-alert: prints Slack's answer; refused without root and
    without [slack]."""
    with SlackDouble(token=TOKEN) as d, new_agent("testalert", d) as a:
        a.start()
        r = a.ctl("test-alert", "hello", "from", "the", "test")
        OUTPUT.append(r.stdout + r.stderr)
        check(r.returncode == 0 and "ok, ts " in r.stdout, "test-alert: %s" % describe(r))
        m = d.wait_for(lambda ms: len(ms) >= 1, 5)[0]
        check("hello from the test" in m["body"]["text"], "text not posted: %r" % m["body"]["text"])
        r = a.ctl("test-alert", user="nobody")
        check(r.returncode == 1 and "permission denied" in r.stderr, "nobody may not post: %s" % describe(r))
        d.set_default("error:channel_not_found")
        r = a.ctl("test-alert")
        check(r.returncode == 1 and "channel_not_found" in r.stderr, "refusal not shown: %s" % describe(r))
    with Agent("noslack") as a:
        a.start()
        r = a.ctl("test-alert")
        check(r.returncode == 1 and "not configured" in r.stderr, "without [slack]: %s" % describe(r))


def s10_outbox_bounded():
    """Slack down, more alerts than outbox_max: the oldest non-incident ones
    go, the files stay bounded, and the drop is reported later."""
    with SlackDouble(token=TOKEN) as d, new_agent("bounded", d, slack_extra="outbox_max = 10") as a:
        a.start()
        d.set_default("http:503")
        for i in range(14):
            r = a.ctl("drain", "maintenance %d" % i)
            check(r.returncode == 0, "drain: %s" % describe(r))
            a.wait_state("MAINTENANCE", 5)
            r = a.ctl("resume")
            check(r.returncode == 0, "resume: %s" % describe(r))
            a.wait_state("SERVING", 5)
        wait_until(lambda: len(outbox_files(a)) == 10, 5, what="10 files in the outbox")
        st = a.status()["slack"]["outbox"]
        check(st["pending"] == 10 and st["dropped"] == 4, "bounds: %r" % st)
        d.set_default("ok")
        a.request({"version": 1, "command": "status"})
        a.signal(signal.SIGHUP)  # retry now instead of after the backoff
        msgs = d.wait_for(lambda ms: len(ms) >= 11, 20)
        texts = [m["body"]["text"] for m in msgs]
        check(any("4 alert(s) were dropped" in t for t in texts), "the drop is not reported: %r" % texts[-2:])
        check("maintenance 13" in texts[9] and "maintenance 4" in texts[0],
              "not the oldest dropped: first %r, last %r" % (texts[0][:80], texts[9][:80]))


def s11_redis_down_alert():
    """Redis unreachable longer than the lease: one alert, then one recovery."""
    redis = Redis()
    redis.start()
    try:
        with SlackDouble(token=TOKEN) as d:
            pool = """
[pool]
redis = %s
name = slacktest
address = 127.0.0.2:%d
lease = 2s
heartbeat = 500ms
""" % (redis.url(), free_port())
            with new_agent("redisdown", d, pool=pool) as a:
                a.start()
                redis.stop()
                msgs = d.wait_for(lambda ms: "pool-down" in kinds(ms), 15)
                time.sleep(3)
                check(kinds(d.messages()).count("pool-down") == 1, "more than one alert: %r" % kinds(d.messages()))
                redis.start()
                msgs = d.wait_for(lambda ms: "pool-up" in kinds(ms), 15)
                check(kinds(msgs) == ["pool-down", "pool-up"], "messages: %r" % kinds(msgs))
    finally:
        if redis.proc:
            redis.stop()


def s12_no_secret_anywhere():
    """The token is in no log, status, argv, state file or test output."""
    with SlackDouble(token=TOKEN) as d, new_agent("secret", d) as a:
        a.start()
        overload_cycle(a, d)
        r = a.ctl("status", "--json")
        OUTPUT.append(r.stdout + r.stderr)
        with open("/proc/%d/cmdline" % a.proc.pid, "rb") as f:
            cmdline = f.read().decode(errors="replace")
        with open("/proc/%d/environ" % a.proc.pid, "rb") as f:
            environ = f.read().decode(errors="replace")
        files = ""
        for root, _, names in os.walk(a.state_dir):
            for n in names:
                with open(os.path.join(root, n), "rb") as f:
                    files += f.read().decode(errors="replace")
        blob = a.all_logs() + json.dumps(a.status()) + cmdline + environ + files + "".join(OUTPUT)
        blob += json.dumps(d.requests())
        for needle in (TOKEN, "plantedSECRETtoken42"):
            check(needle not in blob, "the Slack token leaked")
        check(os.path.exists(a.state_json_path()), "nothing was searched")


def s13_group_readable_token_refused():
    """A token file readable by group/others is refused at start."""
    with SlackDouble(token=TOKEN) as d, new_agent("perm", d) as a:
        os.chmod(os.path.join(a.dir, "slack-token"), 0o640)
        cp = subprocess.run([MONKEYD, "--config", a.config], capture_output=True, text=True, timeout=10)
        OUTPUT.append(cp.stdout + cp.stderr)
        check(cp.returncode != 0 and "slack-token" in cp.stderr and "group/others" in cp.stderr,
              "group-readable token file accepted: %s" % describe(cp))


if __name__ == "__main__":
    main([s1_incident_thread, s2_500_then_ok, s3_429_retry_after, s4_hanging_slack, s4b_reload_during_hang,
          s5_invalid_auth_then_fixed,
          s6_sigkill_while_slack_down, s7_reboot_with_unsent_alert, s8_webhook_mode, s9_test_alert,
          s10_outbox_bounded, s11_redis_down_alert, s12_no_secret_anywhere, s13_group_readable_token_refused])
