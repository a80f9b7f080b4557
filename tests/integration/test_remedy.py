#!/usr/bin/env python3
"""Remediation end to end: the real monkeyd against the EC2/IMDS double
(SigV4 recomputed from the raw request, IMDSv2 token semantics) and the
systemd/logind D-Bus double on a private dbus-daemon. Credentials from
each source, role credentials refreshed after they expire, throttling,
UnauthorizedOperation, the DryRun self-test, the escalation ladder, the
reboot-loop guard across a simulated reboot, the post-boot grace, and the
secret key kept out of everything."""

import json
import os
import shutil
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "doubles"))
from harness import BOOT_A, BOOT_B, BUILD_ROOT, Agent, check, describe, main, wait_until  # noqa: E402
from aws_double import AwsDouble  # noqa: E402
from dbus_bus import PrivateBus, SystemdDouble  # noqa: E402
from slack_double import SlackDouble  # noqa: E402

AK = "AKIAMONKEYTEST000001"
SECRET = "monkeyPlantedSecretKey/0123456789abcdefXYZ"
IID = "i-0123456789abcdef0"
BOOT_C = "5b4a3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d"
SYSTEMD_DOUBLE = os.path.join(BUILD_ROOT, "tests", "systemd_double")


def aws_section(d, with_identity=True, extra=""):
    ident = "region = us-east-1\ninstance_id = %s\n" % IID if with_identity else ""
    return "[aws]\n%sendpoint_url = %s\nimds_url = %s\n%s\n" % (ident, d.endpoint_url, d.url, extra)


def remedy_section(ladder="reboot-instance", extra=""):
    # no [pool] in these tests: running without a fleet budget must be written down
    return "[remedy]\nladder = %s\nmax_per_window = 2\nreboot_timeout = 30s\nbudget = none\n%s\n" % (ladder, extra)


def new_agent(name, d, ladder="reboot-instance", remedy_extra="", aws_extra="", with_identity=True, slack=None,
              env=None):
    a = Agent(name, window="1s", interval="100ms")
    extra = aws_section(d, with_identity, aws_extra) + remedy_section(ladder, remedy_extra)
    if slack:
        tok = os.path.join(a.dir, "slack-token")
        with open(tok, "w") as f:
            f.write("xoxb-remedy-test\n")
        os.chmod(tok, 0o600)
        extra += "[slack]\ntoken_file = %s\nchannel = #incidents\napi_url = %s\n" % (tok, slack.api_url)
    a.write_config(extra=extra)
    a.env_extra = {"AWS_ACCESS_KEY_ID": AK, "AWS_SECRET_ACCESS_KEY": SECRET, "HOME": a.dir}
    if env is not None:
        a.env_extra = env
    return a


def aws_status(a):
    return a.status()["remedy"].get("aws") or {}


def wait_permission(a, want, timeout=10):
    return wait_until(lambda: aws_status(a).get("permission") == want and aws_status(a), timeout,
                      what="aws permission %s (now %r)" % (want, aws_status(a).get("permission")))


def overload_until(a, pred, timeout=15, what="remediation"):
    a.feeder.set_busy(95)
    return wait_until(pred, timeout, what=what)


def reboot_calls(d):
    return [r for r in d.ec2_requests() if r.get("action") == "RebootInstances" and not r.get("dry_run")]


def simulate_reboot(a, boot_id):
    """What an instance reboot does to the agent: stopped (SIGTERM, as
    systemd stops services at shutdown), new boot id, back. A SIGKILL here
    could cut a Slack delivery between Slack's ok and the spool file's
    removal and send that message twice (the outbox is at-least-once; its
    own tests cover SIGKILL)."""
    rc = a.stop()
    check(rc == 0, "monkeyd exited %s on SIGTERM" % rc)
    a.feeder.set_busy(5)
    a.set_boot_id(boot_id)
    a.start(wait_serving=False)


def s1_reboot_through_ec2():
    """Overload -> signed RebootInstances -> the host goes down -> after the
    boot: checks, rejoin, 'back' in the same Slack thread; steps in state.json."""
    with AwsDouble(credentials={AK: (SECRET, None)}) as d, SlackDouble(token="xoxb-remedy-test") as sl, \
            new_agent("ec2", d, slack=sl) as a:
        a.start()
        st = wait_permission(a, "permitted")
        check(st["credentials"]["source"] == "environment", "credentials: %r" % st["credentials"])
        check("DryRunOperation" in st["permission_detail"], "self-test detail: %r" % st["permission_detail"])
        dry = [r for r in d.ec2_requests() if r.get("dry_run")]
        check(len(dry) == 1 and dry[0]["signature_ok"], "one signed DryRun at start: %r" % dry)
        overload_until(a, lambda: d.reboots() == [IID], what="EC2 to reboot %s" % IID)
        call = reboot_calls(d)[0]
        check(call["signature_ok"] and call["status"] == 200, "reboot call: %r" % call)
        st, _ = a.wait_state("REMEDIATING", 5)
        check(st["remedy"]["running"], "not waiting for the reboot: %r" % st["remedy"])

        def steps():
            with open(a.state_json_path()) as f:
                return json.load(f)["incident"].get("steps", [])
        # EC2 answered; the agent writes the step's result when it reads the answer
        wait_until(lambda: steps() and "accepted" in (steps()[0].get("result") or ""), 5,
                   what="the step's result in state.json")
        check(steps()[0]["step"] == "reboot-instance", "steps: %r" % steps())
        simulate_reboot(a, BOOT_B)
        st, _ = a.wait_state("SERVING", 10)
        check(st["last_incident"]["outcome"] == "rejoined", "incident: %r" % st["last_incident"])
        msgs = sl.wait_for(lambda ms: any("is back in the pool" in m["body"]["text"] for m in ms), 10)
        parent = msgs[0]
        check("is overloaded" in parent["body"]["text"], "first message: %r" % parent["body"]["text"][:80])
        texts = [m["body"]["text"] for m in msgs]
        check(any(call["request_id"] in t for t in texts), "the AWS request id is not in Slack: %r" % texts)
        for m in msgs[1:]:
            check(m["thread_ts"] == parent["ts"], "not in the incident's thread: %r" % m["body"]["text"][:80])
        check(len(reboot_calls(d)) == 1, "rebooted more than once")


def s2_credential_sources():
    """Each link of the chain signs requests EC2 accepts, and status names it."""
    d = AwsDouble(credentials={AK: (SECRET, None), "AKIASESSIONKEY000002": ("sessSecret/abc", "sessTokenXYZ")},
                  role="monkey-role")
    with d:
        cases = []
        # 1. environment, with a session token
        cases.append(("environment", {"AWS_ACCESS_KEY_ID": "AKIASESSIONKEY000002",
                                      "AWS_SECRET_ACCESS_KEY": "sessSecret/abc",
                                      "AWS_SESSION_TOKEN": "sessTokenXYZ"}, ""))
        # 2. systemd credentials
        cases.append(("systemd-credentials", None, ""))
        # 3. shared credentials file, named profile
        cases.append(("shared-credentials-file", None, "profile = prod\n"))
        # 4. instance role through IMDSv2
        cases.append(("instance-role", {"HOME": "/nonexistent"}, ""))
        for source, env, aws_extra in cases:
            a = new_agent("creds-%s" % source.split("-")[0], d, aws_extra=aws_extra, with_identity=False)
            with a:
                if source == "systemd-credentials":
                    cred_dir = os.path.join(a.dir, "creds")
                    os.makedirs(cred_dir)
                    p = os.path.join(cred_dir, "aws-credentials")
                    with open(p, "w") as f:
                        f.write("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n" % (AK, SECRET))
                    os.chmod(p, 0o400)
                    env = {"CREDENTIALS_DIRECTORY": cred_dir, "HOME": "/nonexistent"}
                if source == "shared-credentials-file":
                    p = os.path.join(a.dir, "aws-credentials")
                    with open(p, "w") as f:
                        f.write("[default]\naws_access_key_id = AKIAWRONGKEY00000000\naws_secret_access_key = x\n\n"
                                "[prod]\naws_access_key_id = %s\naws_secret_access_key = %s\n" % (AK, SECRET))
                    os.chmod(p, 0o600)
                    a.write_config(extra=aws_section(d, False, "profile = prod\ncredentials_file = %s\n" % p) +
                                   remedy_section())
                    env = {"HOME": "/nonexistent"}
                a.env_extra = env
                a.start()
                st = wait_permission(a, "permitted")
                check(st["credentials"]["source"] == source, "%s: status says %r" % (source, st["credentials"]))
                check(st["instance_id"] == IID and st["region"] == "us-east-1", "identity from IMDS: %r" % st)
                if source == "instance-role":
                    check(st["credentials"]["origin"] == "role monkey-role" and st["credentials"].get("expires"),
                          "role credentials: %r" % st["credentials"])
                imds = [r for r in d.imds_requests() if r.get("path", "").startswith("/latest/meta-data")]
                check(imds and all(r.get("token_ok") for r in imds), "IMDS used without a token: %r" % imds[:3])
        # a too-open credentials file stops the start, naming it
        a = new_agent("creds-open", d, with_identity=False)
        with a:
            p = os.path.join(a.dir, "aws-credentials")
            with open(p, "w") as f:
                f.write("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n" % (AK, SECRET))
            os.chmod(p, 0o644)
            a.write_config(extra=aws_section(d, False, "credentials_file = %s\n" % p) + remedy_section())
            import subprocess
            from harness import MONKEYD
            cp = subprocess.run([MONKEYD, "--config", a.config], capture_output=True, text=True, timeout=10,
                                env={"PATH": os.environ.get("PATH", ""), "HOME": "/nonexistent"})
            check(cp.returncode != 0 and p in cp.stderr and "group/others" in cp.stderr,
                  "a world-readable credentials file was accepted: %s" % describe(cp))


def s3_role_credentials_refreshed():
    """Role credentials expire: EC2 says RequestExpired, the agent fetches
    new ones from IMDS and the call goes through."""
    with AwsDouble(credentials={}, role="monkey-role", role_ttl=3600, auto_rotate=False) as d, \
            new_agent("role", d, env={"HOME": "/nonexistent"}) as a:
        a.start()
        wait_permission(a, "permitted")
        first = aws_status(a)["credentials"]["expires"]
        fetches = lambda: [r for r in d.imds_requests() if r.get("path", "").endswith("/monkey-role")]  # noqa: E731
        n = len(fetches())
        d.advance(3700)  # the first keys are now expired at the double
        d.rotate_role_credentials(3600)
        r = a.ctl("test-reboot", timeout=30)
        check(r.returncode == 0 and "permitted" in r.stdout, "test-reboot after expiry: %s" % describe(r))
        check(len(fetches()) > n, "the role credentials were not fetched again")
        codes = [x.get("code") for x in d.ec2_requests()]
        check("RequestExpired" in codes, "the expired keys were never refused: %r" % codes)
        keys = [x.get("access_key") for x in d.ec2_requests()]
        check(len(set(keys)) == 2 and keys[-1] != keys[0] and d.ec2_requests()[-1]["status"] == 412,
              "the last call was not signed with the new role keys: %r" % keys)
        del first


def s4_throttled_then_ok():
    """RequestLimitExceeded twice, then the reboot: retried with backoff."""
    with AwsDouble(credentials={AK: (SECRET, None)}) as d, new_agent("throttle", d) as a:
        a.start()
        wait_permission(a, "permitted")
        d.script_ec2("throttle", "throttle")
        overload_until(a, lambda: d.reboots() == [IID], timeout=20, what="the reboot after throttling")
        calls = reboot_calls(d)
        check([c["code"] for c in calls] == ["RequestLimitExceeded", "RequestLimitExceeded", None],
              "calls: %r" % [(c["status"], c["code"]) for c in calls])
        gaps = [calls[i + 1]["at"] - calls[i]["at"] for i in range(2)]
        check(gaps[0] >= 0.5 and gaps[1] >= 1.0, "no backoff between attempts: %r" % gaps)


def s5_unauthorized():
    """No permission: the start-up self-test alerts once; at the moment of
    need UnauthorizedOperation is not retried, the host is quarantined with
    AWS's own code."""
    with AwsDouble(credentials={AK: (SECRET, None)}, allowed=False) as d, \
            SlackDouble(token="xoxb-remedy-test") as sl, new_agent("denied", d, slack=sl) as a:
        a.start()
        st = wait_permission(a, "denied")
        check("UnauthorizedOperation" in st["permission_detail"] and "ec2:RebootInstances" in st["permission_detail"],
              "denied detail: %r" % st["permission_detail"])
        sl.wait_for(lambda ms: any("cannot reboot itself" in m["body"]["text"] for m in ms), 5)
        r = a.ctl("test-reboot", timeout=30)
        check(r.returncode == 1 and "denied" in r.stderr, "test-reboot denied: %s" % describe(r))
        a.feeder.set_busy(95)
        st, _ = a.wait_state("QUARANTINED", 15)
        check("UnauthorizedOperation" in st["reason"], "quarantine reason: %r" % st["reason"])
        check(len(reboot_calls(d)) == 1, "UnauthorizedOperation was retried: %d calls" % len(reboot_calls(d)))
        permission_alerts = [m for m in sl.messages() if "cannot reboot itself" in m["body"]["text"]]
        check(len(permission_alerts) == 1, "the denial was alerted %d times" % len(permission_alerts))


def s6_guard_across_reboot():
    """max_per_window = 1: one reboot, then after the boot the next overload
    gives up instead of rebooting again; the hold survives another boot."""
    with AwsDouble(credentials={AK: (SECRET, None)}) as d, \
            new_agent("guard", d, remedy_extra="grace = 0\n") as a:
        a.write_config(extra=aws_section(d) + "[remedy]\nladder = reboot-instance\nmax_per_window = 1\n"
                                             "reboot_timeout = 30s\ngrace = 0\nbudget = none\n")
        a.start()
        wait_permission(a, "permitted")
        overload_until(a, lambda: d.reboots() == [IID], what="the first reboot")
        simulate_reboot(a, BOOT_B)
        a.wait_state("SERVING", 10)
        a.feeder.set_busy(95)
        st, _ = a.wait_state("QUARANTINED", 15)
        check(st["held"] and "remediation limit" in st["reason"], "not held by the guard: %r" % st["reason"])
        check(len(reboot_calls(d)) == 1, "rebooted again: %d calls" % len(reboot_calls(d)))
        simulate_reboot(a, BOOT_C)
        st, _ = a.wait_state("QUARANTINED", 10)
        check(st["held"], "the hold did not survive the boot")
        check(len(reboot_calls(d)) == 1, "rebooted after the boot")


def s7_post_boot_grace():
    """Overloaded again right after its own reboot: alert, do not act."""
    with AwsDouble(credentials={AK: (SECRET, None)}) as d, SlackDouble(token="xoxb-remedy-test") as sl, \
            new_agent("grace", d, remedy_extra="grace = 1m\n", slack=sl) as a:
        a.start()
        wait_permission(a, "permitted")
        overload_until(a, lambda: d.reboots() == [IID], what="the reboot")
        simulate_reboot(a, BOOT_B)
        st, _ = a.wait_state("SERVING", 10)
        check(st["remedy"]["grace_left_sec"] and st["remedy"]["grace_left_sec"] > 50, "no grace: %r" % st["remedy"])
        a.feeder.set_busy(95)
        sl.wait_for(lambda ms: any("right after its reboot" in m["body"]["text"] for m in ms), 10)
        time.sleep(2.5)
        check(a.state() == "SERVING", "acted during the grace: %s" % a.state())
        check(len(reboot_calls(d)) == 1, "rebooted during the grace")


def s8_restart_unit_then_escalate():
    """restart-unit over D-Bus (a systemd double on a private bus): once the
    load falls, the host rejoins without a reboot; when it does not, the
    ladder escalates to EC2."""
    if not os.access(SYSTEMD_DOUBLE, os.X_OK):
        check(False, "%s is missing (meson builds it)" % SYSTEMD_DOUBLE)
    with PrivateBus() as bus, SystemdDouble(SYSTEMD_DOUBLE, bus, ["--unit", "app.service", "--strict-subscribe"]) as sd, \
            AwsDouble(credentials={AK: (SECRET, None)}) as d:
        env = {"AWS_ACCESS_KEY_ID": AK, "AWS_SECRET_ACCESS_KEY": SECRET, "HOME": "/nonexistent"}
        env.update(bus.env())
        with new_agent("restart", d, ladder="restart-unit:app.service, reboot-instance",
                       remedy_extra="settle = 1s\n", env=env) as a:
            a.start()
            wait_permission(a, "permitted")
            a.feeder.set_busy(95)
            wait_until(lambda: [c for c in sd.calls("RestartUnit") if c.get("result")], 10, what="RestartUnit")
            a.feeder.set_busy(5)  # the restart fixed it
            st, _ = a.wait_state("SERVING", 10)
            check(d.reboots() == [], "rebooted although the restart helped")

            def last_result():
                with open(a.state_json_path()) as f:
                    return (json.load(f)["incident"]["steps"][-1].get("result") or "")
            # state.json is written off the loop: it catches up with status
            wait_until(lambda: "CPU fell" in last_result(), 5, what="the step's result in state.json")
            with open(a.state_json_path()) as f:
                steps = json.load(f)["incident"]["steps"]
            check([s["step"] for s in steps] == ["restart-unit:app.service"] and "CPU fell" in steps[0]["result"],
                  "steps: %r" % steps)
            # now the restart does not help
            time.sleep(1.2)
            a.feeder.set_busy(95)
            wait_until(lambda: d.reboots() == [IID], 15, what="the escalation to EC2")
            with open(a.state_json_path()) as f:
                steps = json.load(f)["incident"]["steps"]
            check([s["step"] for s in steps] == ["restart-unit:app.service", "reboot-instance"],
                  "steps: %r" % steps)
            check("CPU still" in steps[0]["result"], "why it escalated: %r" % steps[0])
            check(len(sd.calls("Subscribe")) >= 1, "never subscribed to job signals")


def s9_ec2_down_then_local_reboot():
    """EC2 keeps failing (503 on every attempt): the ladder falls back to a
    logind reboot over D-Bus."""
    with PrivateBus() as bus, SystemdDouble(SYSTEMD_DOUBLE, bus, ["--unit", "app.service"]) as sd, \
            AwsDouble(credentials={AK: (SECRET, None)}) as d:
        env = {"AWS_ACCESS_KEY_ID": AK, "AWS_SECRET_ACCESS_KEY": SECRET, "HOME": "/nonexistent"}
        env.update(bus.env())
        with new_agent("fallback", d, ladder="reboot-instance, reboot-local", env=env) as a:
            a.start()
            wait_permission(a, "permitted")
            d.set_ec2_default("unavailable")
            a.feeder.set_busy(95)
            wait_until(lambda: sd.calls("Reboot"), 40, what="the logind reboot")
            check(len(reboot_calls(d)) == 5, "EC2 attempts: %d (want 5)" % len(reboot_calls(d)))
            check(sd.calls("Reboot")[0].get("interactive") is False, "interactive reboot asked")


def s10_secret_never_leaks():
    """The secret key is in no log, status, argv, state or outbox file."""
    with AwsDouble(credentials={AK: (SECRET, None)}) as d, new_agent("secret", d) as a:
        a.start()
        wait_permission(a, "permitted")
        overload_until(a, lambda: d.reboots() == [IID], what="the reboot")
        r = a.ctl("status", "--json")
        with open("/proc/%d/cmdline" % a.proc.pid, "rb") as f:
            cmdline = f.read().decode(errors="replace")
        files = ""
        for root, _, names in os.walk(a.state_dir):
            for n in names:
                with open(os.path.join(root, n), "rb") as f:
                    files += f.read().decode(errors="replace")
        blob = a.all_logs() + r.stdout + r.stderr + cmdline + files + json.dumps(d.ec2_requests())
        check(SECRET not in blob and "monkeyPlantedSecretKey" not in blob, "the AWS secret key leaked")


if __name__ == "__main__":
    # tests/setup-deps installs it: a missing one is a failure, not a skip
    missing = [t for t in ("dbus-daemon",) if not shutil.which(t)]
    if missing:
        print("FAIL: %s not installed (run tests/setup-deps)" % ", ".join(missing))
        sys.exit(1)
    main([s1_reboot_through_ec2, s2_credential_sources, s3_role_credentials_refreshed, s4_throttled_then_ok,
          s5_unauthorized, s6_guard_across_reboot, s7_post_boot_grace, s8_restart_unit_then_escalate,
          s9_ec2_down_then_local_reboot, s10_secret_never_leaks])
