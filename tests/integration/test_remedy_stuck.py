#!/usr/bin/env python3
"""A remediation that cannot finish, as an operator meets it, with the real
monkeyd, a real redis-server, the EC2/IMDS double, the Slack double and the
logind double on a private D-Bus:

1. IMDS down during an overload: the reboot-instance step waits for the
   instance's identity; [remedy] step_timeout ends the wait, the host goes
   QUARANTINED (out of serving), gives its slot in the budget back (the
   next overloaded host may leave) and says why in the incident's thread.
2. The same with a next step: the timed-out step counts as failed and the
   ladder moves on to reboot-local.
3. monkeyd SIGKILLed while RebootInstances is in flight (EC2 hangs): the
   intent is in state.json before the call went out, so the agent started
   again in the same boot waits for the reboot out of the pool and never
   sends a second RebootInstances in that boot, not even for the next
   overload; after a new boot it comes back as usual.
"""

import json
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "doubles"))
from harness import BOOT_A, BOOT_B, BUILD_ROOT, Agent, check, main, sorted_history, wait_until  # noqa: E402
from proxyfleet import Redis  # noqa: E402
from aws_double import AwsDouble  # noqa: E402
from dbus_bus import PrivateBus, SystemdDouble  # noqa: E402
from slack_double import SlackDouble  # noqa: E402

AK = "AKIAMONKEYSTUCK00001"
SECRET = "monkeyStuckSecretKey/0123456789abcdefXYZ"
IID = "i-0123456789abcdef0"
TOKEN = "xoxb-remedy-stuck"
SYSTEMD_DOUBLE = os.path.join(BUILD_ROOT, "tests", "systemd_double")
POOL = "stuck"
P = "monkey:{%s}:" % POOL
ENV = {"AWS_ACCESS_KEY_ID": AK, "AWS_SECRET_ACCESS_KEY": SECRET, "HOME": "/nonexistent"}


def slack_section(a, sl):
    tok = os.path.join(a.dir, "slack-token")
    with open(tok, "w") as f:
        f.write(TOKEN + "\n")
    os.chmod(tok, 0o600)
    return "[slack]\ntoken_file = %s\nchannel = #incidents\napi_url = %s\n" % (tok, sl.api_url)


def states_seen(a):
    return [h["to"] for h in sorted_history(a.history(200))]


def reboot_calls(d):
    return [r for r in d.ec2_requests() if r.get("action") == "RebootInstances" and not r.get("dry_run")]


def state_json(a):
    with open(a.state_json_path()) as f:
        return json.load(f)


def s1_imds_down_quarantine_releases_slot():
    """IMDS never answers: web-1 leaves the pool (the budget's one slot),
    its reboot-instance step waits for the identity; 3 s later (step_timeout)
    it is QUARANTINED, out of serving, no longer counted out, and web-2,
    held behind it, may leave. The alert in the incident's thread says
    "IMDS did not answer within 3 s"."""
    redis = Redis().start()
    d = AwsDouble(credentials={AK: (SECRET, None)}).start()
    sl = SlackDouble(token=TOKEN).start()
    d.set_imds_default("down")
    agents = []
    try:
        for i in range(2):
            a = Agent(name="imds%d" % i, host="web-%d" % (i + 1), window="1s", interval="100ms")
            extra = ("[pool]\nredis = %s\nname = %s\naddress = 127.0.0.%d:8080\nmin_serving = 0\n"
                     "max_unavailable = 1\ndrain = 300ms\nlease = 3s\nheartbeat = 500ms\n\n"
                     "[aws]\nendpoint_url = %s\nimds_url = %s\n\n"
                     "[remedy]\nladder = reboot-instance\nmax_per_window = 2\nreboot_timeout = 30s\n"
                     "step_timeout = 3s\n\n%s"
                     % (redis.url(), POOL, 2 + i, d.endpoint_url, d.url, slack_section(a, sl)))
            a.write_config(extra=extra)
            a.env_extra = dict(ENV)
            agents.append(a)
        for a in agents:
            a.start(wait_serving=False)
        for a in agents:
            a.wait_state("SERVING", 15)
        w1, w2 = agents
        wait_until(lambda: len(redis.cmd("SMEMBERS", P + "serving").split()) == 2, 10, 0.05, "both serving")

        w1.feeder.set_busy(95)
        st, _ = w1.wait_state("REMEDIATING", 10)
        t0 = time.monotonic()
        check(redis.cmd("ZSCORE", P + "out", "web-1") != "", "web-1 left without being counted out")
        # web-2 overloads too: the budget holds it behind web-1
        w2.feeder.set_busy(95)
        st2, _ = w2.wait_state("HOLDING", 10)
        print("   web-1 REMEDIATING (IMDS down), web-2 HOLDING: %s" % st2["reason"])
        check("web-1" in (st2["reason"] or ""), "web-2 held for another reason: %r" % st2["reason"])

        st, _ = w1.wait_state("QUARANTINED", 10)
        dt = time.monotonic() - t0
        print("   web-1 QUARANTINED %.1fs after REMEDIATING: %s" % (dt, st["reason"]))
        check(2.5 <= dt <= 6, "the step ended %.1fs after it began (step_timeout 3 s)" % dt)
        check("IMDS did not answer within 3 s" in (st["reason"] or ""), "reason %r" % st["reason"])
        check(not st["remedy"]["running"], "the ladder still runs: %r" % st["remedy"])
        # out of serving, but its slot is free
        check("127.0.0.2:8080" not in redis.cmd("SMEMBERS", P + "serving").split(), "web-1 back in serving")
        wait_until(lambda: redis.cmd("ZSCORE", P + "out", "web-1") == "", 5, 0.05,
                   "web-1 no longer counted against max_unavailable")
        wait_until(lambda: "DRAINING" in states_seen(w2), 10, 0.1, "web-2 to leave on the freed slot")
        print("   web-2 left on the slot web-1 gave back")
        steps = state_json(w1)["incident"]["steps"]
        check([s["step"] for s in steps] == ["reboot-instance"] and "IMDS did not answer" in (steps[0]["result"] or ""),
              "steps: %r" % steps)
        check(not reboot_calls(d), "RebootInstances sent without an identity: %r" % reboot_calls(d))

        # the quarantine alert, in the incident's thread, says why
        def quarantined(ms):
            return [m for m in ms if "IMDS did not answer within 3 s" in m["body"]["text"]
                    and "web-1" in m["body"]["text"]]
        msgs = sl.wait_for(lambda ms: quarantined(ms), 10)
        parent = [m for m in msgs if "web-1" in m["body"]["text"] and "overloaded" in m["body"]["text"]
                  and not m.get("thread_ts")]
        check(parent, "no breach alert for web-1: %r" % [m["body"]["text"][:60] for m in msgs])
        q = quarantined(msgs)[0]
        check(q.get("thread_ts") == parent[0]["ts"], "the alert is not in the incident's thread: %r" % q)
        print("   alert: %s" % q["body"]["text"][:160])
        for a in agents:
            a.feeder.set_busy(5)
    except Exception:
        for a in agents:
            a.dump_log()
        raise
    finally:
        for a in agents:
            a.close()
        sl.stop()
        d.stop()
        redis.stop()


def s2_imds_down_ladder_moves_on():
    """reboot-instance, reboot-local: the EC2 step times out waiting for
    IMDS, counts as failed, and logind is asked to reboot."""
    if not os.access(SYSTEMD_DOUBLE, os.X_OK):
        check(False, "%s is missing (meson builds it)" % SYSTEMD_DOUBLE)
    with PrivateBus() as bus, SystemdDouble(SYSTEMD_DOUBLE, bus, ["--unit", "app.service"]) as sd, \
            AwsDouble(credentials={AK: (SECRET, None)}) as d:
        d.set_imds_default("down")
        a = Agent("ladder", window="1s", interval="100ms")
        a.write_config(extra="[aws]\nendpoint_url = %s\nimds_url = %s\n\n"
                             "[remedy]\nladder = reboot-instance, reboot-local\nmax_per_window = 2\n"
                             "reboot_timeout = 30s\nstep_timeout = 2s\nbudget = none\n" % (d.endpoint_url, d.url))
        a.env_extra = dict(ENV)
        a.env_extra.update(bus.env())
        with a:
            a.start()
            a.feeder.set_busy(95)
            a.wait_state("REMEDIATING", 10)
            t0 = time.monotonic()
            wait_until(lambda: sd.calls("Reboot"), 10, 0.05, "the logind reboot")
            dt = time.monotonic() - t0
            steps = state_json(a)["incident"]["steps"]
            print("   logind asked %.1fs after REMEDIATING; steps %r" % (dt, [(s["step"], s.get("result")) for s in steps]))
            check(1.5 <= dt <= 5, "reboot-local %.1fs after the start (step_timeout 2 s)" % dt)
            check([s["step"] for s in steps] == ["reboot-instance", "reboot-local"], "steps: %r" % steps)
            check("IMDS did not answer within 2 s" in (steps[0]["result"] or ""), "step 1: %r" % steps[0])
            check(a.state() == "REMEDIATING", "state %s while the local reboot is due" % a.state())
            check(not reboot_calls(d), "RebootInstances sent: %r" % reboot_calls(d))
            a.feeder.set_busy(5)


def s3_sigkill_while_reboot_in_flight():
    """EC2 holds RebootInstances unanswered; monkeyd is SIGKILLed meanwhile
    and started again in the same boot: it waits for the reboot, out of the
    pool, and never asks again in this boot; after a new boot it is back."""
    with AwsDouble(credentials={AK: (SECRET, None)}) as d:
        a = Agent("inflight", window="1s", interval="100ms")
        a.write_config(extra="[aws]\nregion = us-east-1\ninstance_id = %s\nendpoint_url = %s\nimds_url = %s\n\n"
                             "[remedy]\nladder = reboot-instance\nmax_per_window = 5\nreboot_timeout = 30s\n"
                             "grace = 0\nbudget = none\n" % (IID, d.endpoint_url, d.url))
        a.env_extra = dict(ENV)
        with a:
            a.start()
            wait_until(lambda: (a.status()["remedy"].get("aws") or {}).get("permission") == "permitted", 10,
                       0.05, "the DryRun self-test")
            d.script_ec2("hang:120")
            a.feeder.set_busy(95)
            wait_until(lambda: any(r.get("action") == "RebootInstances" and not r.get("dry_run")
                                   for r in d.ec2_requests()), 10, 0.02, "RebootInstances at EC2")
            sj = state_json(a)
            check(sj.get("reboot_requested", {}).get("boot_id") == BOOT_A,
                  "RebootInstances went out before state.json said so: %r" % sj.get("reboot_requested"))
            a.kill()   # SIGKILL, the call still hanging
            print("   SIGKILLed with RebootInstances in flight; state.json: %r" % sj["reboot_requested"])

            a.start(wait_serving=False)
            st, _ = a.wait_state("CHECKING", 5)
            check(st["remedy"]["awaiting_reboot"] is True, "restarted, not waiting for the reboot: %r" % st["remedy"])
            check("never answered" in (st["reason"] or ""), "reason %r" % st["reason"])
            check(a.ctl("status").returncode != 0, "monkeyctl status says routed while a reboot may come")
            time.sleep(4)   # longer than EC2's first retries would take
            check(a.state() == "CHECKING", "left the wait: %s" % a.state())
            check(len(reboot_calls(d)) == 1, "RebootInstances %d times in one boot" % len(reboot_calls(d)))
            print("   restarted in the same boot: CHECKING, awaiting the reboot, 1 RebootInstances")

            # no reboot comes: after reboot_timeout (from the call) the step
            # failed; once the host is back and overloads again, the ladder
            # does not send a second one in this boot
            st, _ = a.wait_state("QUARANTINED", 40)
            print("   %s" % st["reason"])
            a.feeder.set_busy(5)
            a.wait_state("SERVING", 30)
            time.sleep(0.5)
            a.feeder.set_busy(95)
            wait_until(lambda: len(reboot_calls(d)) > 1 or
                       (states_seen(a).count("REMEDIATING") >= 2 and a.state() == "QUARANTINED"), 15, 0.1,
                       "the next remediation in the same boot to end")
            check(len(reboot_calls(d)) == 1, "RebootInstances %d times in one boot" % len(reboot_calls(d)))
            st = a.status()
            check("already sent in this boot" in (st["reason"] or ""), "reason %r" % st["reason"])
            print("   next overload in the same boot: %s" % st["reason"])

            # a new boot: the intent is gone, the agent is back, and may reboot again
            a.stop()
            a.feeder.set_busy(5)
            a.set_boot_id(BOOT_B)
            a.start(wait_serving=False)
            a.wait_state("SERVING", 30)
            # state.json is written off the loop: SERVING in status may come
            # a moment before the save that forgot the intent is on disk
            try:
                wait_until(lambda: "reboot_requested" not in state_json(a), 5, 0.05, "the intent forgotten")
            except AssertionError:
                check(False, "the intent survived the boot: %r" % state_json(a).get("reboot_requested"))
            a.feeder.set_busy(95)
            wait_until(lambda: d.reboots() == [IID], 15, 0.05, "a reboot in the new boot")
            check(len(reboot_calls(d)) == 2, "RebootInstances %d times over two boots" % len(reboot_calls(d)))
            print("   new boot: back SERVING, the next overload rebooted through EC2")
            a.feeder.set_busy(5)


if __name__ == "__main__":
    missing = [t for t in ("dbus-daemon", "redis-server") if not shutil.which(t)]
    if missing:
        print("FAIL: %s not installed (run tests/setup-deps)" % ", ".join(missing))
        sys.exit(1)
    main([s1_imds_down_quarantine_releases_slot, s2_imds_down_ladder_moves_on, s3_sigkill_while_reboot_in_flight])
