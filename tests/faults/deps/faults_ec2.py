#!/usr/bin/env python3
"""Fault matrix, EC2 at the moment of need (the start-up DryRun passed):
5xx, throttling, 403 UnauthorizedOperation, and a hang after EC2 took the
reboot. In every cell: no reboot while EC2 fails, retries bounded and
spaced, a Slack alert with AWS's own words, and never a reboot of a host
that is (or may soon be) back in the pool: every RebootInstances EC2
accepted arrived while the agent was out of the pool (REMEDIATING), and a
reboot EC2 may have taken keeps the host out. Then EC2 recovers and the
agent does what the README promises (quarantine, checks, rejoin; the next
overload reboots)."""

import os
import time

import faultlib
from faultlib import cell, check, state_at, states

import aws_double  # noqa: E402
from aws_double import AwsDouble  # noqa: E402
from harness import BOOT_B, Agent  # noqa: E402
from slack_double import SlackDouble  # noqa: E402

AK = "AKIAFAULTMATRIX00001"
SECRET = "faultsMatrixSecretKey/0123456789abcdefXYZ"
IID = "i-0123456789abcdef0"
SLACK_TOKEN = "xoxb-ec2-fault-matrix"


class _Handler(aws_double._Handler):
    def _ec2_send(self, rec, status, body, ctype="text/xml;charset=UTF-8"):
        d = self.server.double
        if status == 200 and rec.get("rebooted") and d.take_hang_accept():
            # EC2 took the reboot, and its answer never comes
            rec["answered"] = False
            rec["status"] = None
            rec["hung_after_accept"] = True
            d._finish_ec2(rec)
            d._stopping.wait(60)
            self.close_connection = True
            return False
        return super()._ec2_send(rec, status, body, ctype)


class Ec2Double(AwsDouble):
    """The AWS double, plus: the next `hang_accepts` reboots it accepts are
    never answered (the instance reboots, the caller hears nothing)."""

    _handler_class = _Handler

    def __init__(self, **kw):
        super().__init__(**kw)
        self.hang_accepts = 0

    def take_hang_accept(self):
        with self._lock:
            if self.hang_accepts > 0:
                self.hang_accepts -= 1
                return True
            return False


def ec2_agent(c, d, sl, remedy_extra=""):
    a = Agent(name="ec2", window="1s", interval="100ms")
    tok = os.path.join(a.dir, "slack-token")
    with open(tok, "w") as f:
        f.write(SLACK_TOKEN + "\n")
    os.chmod(tok, 0o600)
    a.write_config(extra="[aws]\nregion = us-east-1\ninstance_id = %s\nendpoint_url = %s\nimds_url = %s\n\n"
                         "[remedy]\nladder = reboot-instance\nmax_per_window = 3\nreboot_timeout = 30s\nbudget = none\n%s\n"
                         "[slack]\ntoken_file = %s\nchannel = #incidents\napi_url = %s\ntimeout = 2s\n"
                   % (IID, d.endpoint_url, d.url, remedy_extra, tok, sl.api_url))
    a.env_extra = {"AWS_ACCESS_KEY_ID": AK, "AWS_SECRET_ACCESS_KEY": SECRET, "HOME": a.dir}
    return c.track(a)


def setup(c):
    d = Ec2Double(credentials={AK: (SECRET, None)}).start()
    sl = SlackDouble(token=SLACK_TOKEN).start()
    a = ec2_agent(c, d, sl)
    a.start()
    c.wait(a, lambda: (a.status()["remedy"]["aws"] or {}).get("permission") == "permitted", 10,
           "the start-up self-test to pass")
    return d, sl, a


def reboot_calls(d):
    return [r for r in d.ec2_requests() if r.get("action") == "RebootInstances" and not r.get("dry_run")]


def accepted(d):
    return [r for r in reboot_calls(d) if r.get("rebooted")]


def only_out_of_pool(a, d):
    """Every reboot EC2 took came while the agent was out of the pool."""
    for r in accepted(d):
        s = state_at(a, r["wall"])
        check(s == "REMEDIATING", "EC2 took a reboot while the agent was %s" % s)


def slack_texts(sl):
    return [m["body"]["text"] for m in sl.messages()]


def gaps(calls):
    return [round(calls[i + 1]["at"] - calls[i]["at"], 2) for i in range(len(calls) - 1)]


@cell("ec2", "5xx")
def ec2_5xx(c):
    d, sl, a = setup(c)
    try:
        d.set_ec2_default("internal")
        a.feeder.set_busy(95)
        c.wait(a, lambda: a.state() == "REMEDIATING", 10, "REMEDIATING")
        c.wait(a, lambda: a.state() == "QUARANTINED", 25, "QUARANTINED after EC2's retries")
        calls = reboot_calls(d)
        g = gaps(calls)
        check(len(calls) == 5, "%d attempts, want 5" % len(calls))
        check([x["code"] for x in calls] == ["InternalError"] * 5, "codes %r" % [x["code"] for x in calls])
        check(all(x >= 0.45 for x in g) and g[-1] >= 2 * g[0] and g[-1] >= 1.9,
              "no growing backoff between attempts: %r" % g)
        check(d.reboots() == [], "rebooted while EC2 failed")
        reason = a.status()["reason"] or ""
        check("InternalError" in reason and "giving up" in reason, "quarantine reason %r" % reason)
        alert = c.wait(a, lambda: [t for t in slack_texts(sl) if "quarantined" in t and "InternalError" in t], 5,
                       "a quarantine alert naming InternalError")
        # EC2 recovers; the load is still there: the ladder failed, so the
        # host stays out until its CPU has been cool for a whole window
        d.set_ec2_default("ok")
        t_ok = time.time()
        c.probe_for(a, 3.0)
        check(a.state() == "QUARANTINED" and not d.reboots(), "rejoined or rebooted while still hot: %s"
              % a.state())
        a.feeder.set_busy(5)
        c.wait(a, lambda: a.state() == "SERVING", 15, "the rejoin once cool for a window")
        a.feeder.set_busy(95)
        c.wait(a, lambda: d.reboots() == [IID], 15, "the next overload to reboot through EC2")
        only_out_of_pool(a, d)
        a.feeder.set_busy(5)
        after = [h["to"] for h in faultlib.history(a) if (h.get("at_unix") or 0) >= t_ok]
        check("SERVING" in after and after.index("SERVING") < after.index("REMEDIATING"),
              "after EC2 recovered: %s" % after)
        c.result("5 attempts, InternalError each, backoff %s s, no reboot; QUARANTINED, alert '%s'; EC2 back: "
                 "stayed out while hot, rejoined once cool for a window, the next overload rebooted once, out of "
                 "the pool"
                 % ("/".join("%.1f" % x for x in g),
                    next(ln for ln in alert[0].splitlines() if "InternalError" in ln)[:100]))
    finally:
        d.stop()
        sl.stop()


@cell("ec2", "throttling")
def throttling(c):
    d, sl, a = setup(c)
    try:
        d.script_ec2("throttle", "error:Throttling:400", "throttle")
        a.feeder.set_busy(95)
        c.wait(a, lambda: d.reboots() == [IID], 15, "the reboot once EC2 stops throttling")
        calls = reboot_calls(d)
        codes = [x["code"] for x in calls]
        seen = states(a)
        check(seen.count("REMEDIATING") == 1 and "QUARANTINED" not in seen,
              "throttling was not retried within the step: %s" % seen)
        check(codes == ["RequestLimitExceeded", "Throttling", "RequestLimitExceeded", None], "calls %r" % codes)
        g = gaps(calls)
        check(g[0] >= 0.45 and g[1] >= 0.95 and g[2] >= 1.9, "backoff %r" % g)
        only_out_of_pool(a, d)
        c.probe(a, 3)
        a.feeder.set_busy(5)
        c.result("RequestLimitExceeded (503), Throttling (400), RequestLimitExceeded retried after %s s, then one "
                 "reboot, out of the pool" % "/".join("%.1f" % x for x in g))
    finally:
        d.stop()
        sl.stop()


@cell("ec2", "403")
def unauthorized(c):
    d, sl, a = setup(c)
    try:
        d.set_allowed(False)  # the grant went away after the start-up self-test
        a.feeder.set_busy(95)
        c.wait(a, lambda: a.state() == "QUARANTINED", 10, "QUARANTINED on UnauthorizedOperation")
        calls = reboot_calls(d)
        check([x["code"] for x in calls] == ["UnauthorizedOperation"], "retried a 403: %r"
              % [x["code"] for x in calls])
        reason = a.status()["reason"] or ""
        check("UnauthorizedOperation" in reason, "quarantine reason %r" % reason)
        c.wait(a, lambda: [t for t in slack_texts(sl) if "quarantined" in t and "UnauthorizedOperation" in t], 5,
               "a quarantine alert naming UnauthorizedOperation")
        perm = a.status()["remedy"]["aws"]["permission"]
        check(perm == "denied", "status still says permission %r after EC2 denied the reboot" % perm)
        c.wait(a, lambda: [t for t in slack_texts(sl) if "cannot reboot itself" in t], 5,
               "the permission alert")
        c.probe_for(a, 0.5)
        check(d.reboots() == [], "rebooted")
        # the grant is back: the self-test says so; still hot after the
        # failed ladder, the host stays out; cool for a window, it rejoins;
        # the next overload reboots
        d.set_allowed(True)
        r = a.ctl("test-reboot", timeout=30)
        check(r.returncode == 0 and "permitted" in r.stdout, "test-reboot after the fix: %r" % r.stdout)
        check(a.state() == "QUARANTINED", "rejoined while still hot: %s" % a.state())
        a.feeder.set_busy(5)
        c.wait(a, lambda: a.state() == "SERVING", 15, "the rejoin once cool for a window")
        a.feeder.set_busy(95)
        c.wait(a, lambda: d.reboots() == [IID], 20, "a reboot once permitted again")
        only_out_of_pool(a, d)
        a.feeder.set_busy(5)
        c.result("one call, not retried; QUARANTINED with AWS's code, alert in Slack, permission 'denied' in "
                 "status; granted again: test-reboot permitted, out while hot, rejoined once cool, the next "
                 "overload rebooted once, out of the pool")
    finally:
        d.stop()
        sl.stop()


@cell("ec2", "hang")
def hang(c):
    """EC2 takes the reboot and never answers (15 s timeout), then is
    unavailable: the reboot may be on its way, so the host stays out of
    the pool waiting for it; the reboot comes; after the boot it rejoins."""
    d, sl, a = setup(c)
    try:
        d.hang_accepts = 1
        d.script_ec2("ok", "unavailable", "unavailable", "unavailable", "unavailable")
        a.feeder.set_busy(95)
        c.wait(a, lambda: a.state() == "REMEDIATING", 10, "REMEDIATING")
        t_hang = time.monotonic()
        c.wait(a, lambda: len(reboot_calls(d)) >= 2, 25, "the hung attempt to time out")
        t_out = reboot_calls(d)[1]["at"] - reboot_calls(d)[0]["at"]
        check(14 <= t_out < 18, "the hung call was given up after %.1fs (EC2 timeout 15 s)" % t_out)
        c.wait(a, lambda: len(reboot_calls(d)) == 5, 25, "the other four attempts")
        time.sleep(0.5)
        # EC2 may reboot us any moment now: out of the pool, waiting
        c.probe_for(a, 4.0)
        check(a.state() == "REMEDIATING", "state %s after a reboot EC2 may have taken: the host must stay out"
              % a.state())
        check(len(reboot_calls(d)) == 5, "%d attempts, want 5" % len(reboot_calls(d)))
        only_out_of_pool(a, d)
        with open(a.state_json_path()) as f:
            import json
            steps = json.load(f)["incident"].get("steps", [])
        check(steps and "may have been accepted" in (steps[-1].get("result") or ""), "step result %r" % steps)
        said = c.wait(a, lambda: [t for t in slack_texts(sl) if "never answered, may have been accepted" in t], 5,
                      "the thread to say EC2 never answered")
        # the reboot EC2 took happens
        rc = a.stop()
        check(rc == 0, "monkeyd exited %s on SIGTERM" % rc)
        a.feeder.set_busy(5)
        a.set_boot_id(BOOT_B)
        a.start(wait_serving=False)
        c.wait(a, lambda: a.state() == "SERVING", 15, "SERVING after the boot")
        check(a.status()["last_incident"]["outcome"] == "rejoined", "incident %r" % a.status()["last_incident"])
        c.result("the reboot EC2 took was never answered (timeout after %.1fs), then 4 x Unavailable: the host "
                 "stayed out waiting for the reboot (%.0fs and counting; Slack: '%s'); after the boot: checks, "
                 "rejoined" % (t_out, time.monotonic() - t_hang, said[0].splitlines()[0][:90]))
    finally:
        d.stop()
        sl.stop()


if __name__ == "__main__":
    faultlib.main()
