#!/usr/bin/env python3
"""Behind an AWS load balancer, end to end: the real monkeyd against the
AWS double's ELBv2 and Auto Scaling Query APIs (SigV4 checked per service,
the target state machine with real HTTP health checks against the agent's
own health endpoint, the Auto Scaling lifecycle and its ELB health check
that terminates unhealthy InService instances) and its EC2, which records
a violation for a reboot of an instance that is still routed.

    r1  the whole cycle through a target group: deregistered, drained
        (the group's deregistration delay), only then the reboot; after
        the boot registered, healthy (the ALB's check on /health), back
    r2  the whole cycle through Auto Scaling standby: EnterStandby, the
        group drains it, Standby, reboot, ExitStandby, InService,
        registered, healthy; nothing terminated, desired capacity back
    r3  each failure to leave means no reboot, the host quarantined and
        AWS's code in the alert: AccessDenied, TargetGroupNotFound,
        Throttling past the retries, the API down, a drain past
        deregistration_timeout
    r4  Throttling twice, then the call goes through: the cycle completes
    r5  an instance already in Standby (an operator's) or in a lifecycle
        hook is never acted on: no EnterStandby, no ExitStandby, no reboot
    r6  the attach fails (the target never healthy): the host does not
        rejoin, it is quarantined with the reason, and its target taken out
    r7  an operator's `monkeyctl drain` takes the host out of the group
        too (EnterStandby, deregistered) and `resume` brings it back
        (ExitStandby, healthy) before it says SERVING
    r8  EnterStandby throttled for seconds: the health endpoint keeps
        answering 200 until the instance has left InService, so the
        group's ELB health check does not replace it meanwhile
    r9  a reload that names a second target group (as config management
        pushes one) registers the serving host there at once; the next
        cycle drains both before the reboot
"""

import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "doubles"))
from harness import free_port, BOOT_A, BOOT_B, Agent, check, main, wait_until  # noqa: E402
from aws_double import AwsDouble  # noqa: E402
from slack_double import SlackDouble  # noqa: E402

AK = "AKIAMONKEYROUTE00001"
SECRET = "monkeyRouteSecret/0123456789abcdefXYZ"
IID = "i-0123456789abcdef0"
TOKEN = "xoxb-route-test"


class RouteHost:
    """One agent behind target groups (and maybe a group), its health
    endpoint being what the target group's health check asks."""

    def __init__(self, d, name, tgs=(), standby=False, slack=None, dereg_timeout="20s", reg_timeout="20s",
                 ladder="reboot-instance", health_port=None):
        self.d = d
        self.health_port = health_port or free_port()
        self.agent = Agent(name, window="1s", interval="100ms")
        self.settings = dict(standby=standby, slack=slack, dereg_timeout=dereg_timeout, reg_timeout=reg_timeout,
                             ladder=ladder)
        self.configure(tgs)
        self.agent.env_extra = {"AWS_ACCESS_KEY_ID": AK, "AWS_SECRET_ACCESS_KEY": SECRET, "HOME": self.agent.dir}

    def configure(self, tgs):
        """Write the config (as config management would push it)."""
        a, d, o = self.agent, self.d, self.settings
        aws = ["[aws]", "region = us-east-1", "instance_id = %s" % IID, "endpoint_url = %s" % d.endpoint_url,
               "imds_url = %s" % d.url, "elb_endpoint_url = %s" % d.elb_url,
               "autoscaling_endpoint_url = %s" % d.autoscaling_url,
               "deregistration_timeout = %s" % o["dereg_timeout"], "registration_timeout = %s" % o["reg_timeout"]]
        aws += ["target_groups = %s" % tg for tg in tgs]  # one a line: the key adds up
        if o["standby"]:
            aws.append("autoscaling = standby")
        extra = "\n".join(aws) + "\n\n"
        extra += ("[remedy]\nladder = %s\nmax_per_window = 3\nreboot_timeout = 30s\nbudget = none\n\n" % o["ladder"])
        extra += "[proxy]\nhealth_port = %d\nhealth_address = 127.0.0.1\n\n" % self.health_port
        if o["slack"]:
            tok = os.path.join(a.dir, "slack-token")
            with open(tok, "w") as f:
                f.write(TOKEN + "\n")
            os.chmod(tok, 0o600)
            extra += "[slack]\ntoken_file = %s\nchannel = #incidents\napi_url = %s\n" % (tok, o["slack"].api_url)
        a.write_config(extra=extra)

    def route(self):
        return (self.agent.status().get("remedy") or {}).get("route") or {}

    def reboot(self, boot_id):
        """What the instance's reboot does: the agent stopped (SIGTERM),
        the instance down for the load balancer's checks, a new boot id."""
        a = self.agent
        self.d.set_instance_down(IID, True)
        rc = a.stop()
        check(rc == 0, "monkeyd exited %s on SIGTERM" % rc)
        a.feeder.set_busy(5)
        a.set_boot_id(boot_id)
        time.sleep(0.5)
        self.d.set_instance_down(IID, False)
        a.start(wait_serving=False)


def health_url(port):
    return "http://127.0.0.1:%d/" % port


def new_double():
    return AwsDouble(credentials={AK: (SECRET, None)})


def api_calls(d, action=None):
    return [e for e in d.timeline if e.get("kind") == "api" and (action is None or e.get("action") == action)]


def first_t(d, pred, what):
    for e in d.timeline:
        if pred(e):
            return e["t"]
    check(False, "never in the double's timeline: %s" % what)


def reboots(d):
    return [r for r in d.ec2_requests() if r.get("action") == "RebootInstances" and not r.get("dry_run")]


def r1_target_group_cycle():
    """Deregistered and drained before the reboot; registered and healthy
    (the target group's check on the agent's endpoint) before 'back'."""
    with new_double() as d, SlackDouble(token=TOKEN) as sl:
        port = free_port()
        # longer than the drain grace for routers ([pool] drain, 10 s): what
        # holds the reboot back is the target group's own drain
        tg = d.add_target_group("web", port=80, deregistration_delay=12.0, health_check_url=health_url(port),
                                interval=0.3, healthy_threshold=2, unhealthy_threshold=2)
        h = RouteHost(d, "tg", tgs=[tg], slack=sl, health_port=port)
        a = h.agent
        with a:
            a.start(wait_serving=False)
            st, _ = a.wait_state("SERVING", 20)
            check(d.target_health(tg, IID)[0] == "healthy",
                  "SERVING before the target group said healthy: %r" % (d.target_health(tg, IID),))
            check([e["action"] for e in api_calls(d) if e.get("service") == "elasticloadbalancing"][:1] ==
                  ["RegisterTargets"], "the start did not register the target: %r" % api_calls(d)[:3])
            a.feeder.set_busy(95)
            wait_until(lambda: reboots(d), 40, what="the reboot")
            d.assert_no_violations()
            t_dereg = first_t(d, lambda e: e.get("kind") == "api" and e.get("action") == "DeregisterTargets",
                              "DeregisterTargets")
            t_gone = first_t(d, lambda e: e.get("kind") == "target" and e.get("state") in ("unused", "gone") and
                             e["t"] > t_dereg, "the target drained")
            t_boot = first_t(d, lambda e: e.get("kind") == "reboot", "the reboot")
            check(t_dereg < t_gone <= t_boot, "order: deregister %.2f, drained %.2f, reboot %.2f" %
                  (t_dereg, t_gone, t_boot))
            check(t_gone - t_dereg >= 11.9, "drained %.2f s after DeregisterTargets: the delay is 12 s" %
                  (t_gone - t_dereg))
            h.reboot(BOOT_B)
            st, _ = a.wait_state("SERVING", 30)
            check(d.target_health(tg, IID)[0] == "healthy", "back before healthy: %r" % (d.target_health(tg, IID),))
            regs = api_calls(d, "RegisterTargets")
            check(len(regs) == 2, "RegisterTargets at start and after the boot: %r" % regs)
            msgs = sl.wait_for(lambda ms: any("is back" in m["body"]["text"] for m in ms), 10)
            d.assert_no_violations()
            check(len(reboots(d)) == 1, "rebooted %d times" % len(reboots(d)))
            r = h.route()
            check(r["target_groups"][0]["state"] == "healthy" and r.get("last_error") is None, "route: %r" % r)
            # a new process after the boot: what it has called so far
            check(r["permission"] == {"DeregisterTargets": "not called yet", "DescribeTargetHealth": "ok",
                                      "RegisterTargets": "ok"}, "permission: %r" % r.get("permission"))
            reqs = d.elb_requests()
            check(reqs and all(q.get("auth_ok") for q in reqs), "an ELB request not signed for "
                  "elasticloadbalancing: %r" % [q for q in reqs if not q.get("auth_ok")][:1])
            check(msgs, "no Slack")


def r2_autoscaling_standby_cycle():
    """EnterStandby (the group drains the target), Standby, reboot,
    ExitStandby, InService, healthy: nothing terminated or launched."""
    with new_double() as d:
        port = free_port()
        tg = d.add_target_group("web", port=80, deregistration_delay=1.5, health_check_url=health_url(port),
                                interval=0.3)
        d.add_autoscaling_group("web-asg", instances=[IID], target_groups=[tg], health_check_type="ELB",
                                health_check_grace=0.0, desired=1, launch_delay=0.5)
        h = RouteHost(d, "asg", tgs=[tg], standby=True, health_port=port)
        a = h.agent
        with a:
            a.start(wait_serving=False)
            a.wait_state("SERVING", 20)
            check(d.lifecycle_state(IID)[1] == "InService", "lifecycle: %r" % (d.lifecycle_state(IID),))
            a.feeder.set_busy(95)
            wait_until(lambda: reboots(d), 30, what="the reboot")
            check(d.lifecycle_state(IID)[1] == "Standby", "rebooted while %r" % (d.lifecycle_state(IID),))
            h.reboot(BOOT_B)
            a.wait_state("SERVING", 30)
            check(d.lifecycle_state(IID)[1] == "InService", "back while %r" % (d.lifecycle_state(IID),))
            check(d.target_health(tg, IID)[0] == "healthy", "back before healthy")
            acts = [e["action"] for e in api_calls(d) if e.get("action") in
                    ("EnterStandby", "ExitStandby", "DeregisterTargets", "RegisterTargets", )]
            check("EnterStandby" in acts and "ExitStandby" in acts and acts.index("EnterStandby") <
                  acts.index("ExitStandby"), "calls: %r" % acts)
            d.assert_no_violations()
            check(not d.asg_terminated and not d.asg_launched, "the group replaced the host: %r %r" %
                  (d.asg_terminated, d.asg_launched))
            with open(a.state_json_path()) as f:
                check('"standby_group":null' in f.read().replace(" ", ""), "state.json still has the standby")


def failure_case(name, setup, want_code, dereg_timeout="20s", delay=1.0):
    with new_double() as d, SlackDouble(token=TOKEN) as sl:
        port = free_port()
        tg = d.add_target_group("web", port=80, deregistration_delay=delay, health_check_url=health_url(port),
                                interval=0.3)
        h = RouteHost(d, name, tgs=[tg], slack=sl, dereg_timeout=dereg_timeout, health_port=port)
        a = h.agent
        with a:
            a.start(wait_serving=False)
            a.wait_state("SERVING", 20)
            setup(d, tg)
            a.feeder.set_busy(95)
            st, _ = a.wait_state("QUARANTINED", 60)
            check(want_code in (st.get("state_reason") or st.get("reason") or str(st)),
                  "%s: the reason lacks %s: %r" % (name, want_code, st.get("state_reason") or st.get("reason")))
            time.sleep(1.0)
            check(not reboots(d), "%s: rebooted after a failed detach" % name)
            d.assert_no_violations()
            msgs = sl.wait_for(lambda ms: any(want_code in m["body"]["text"] for m in ms), 10)
            check(msgs, "%s: no alert with %s" % (name, want_code))
            hist = [x.get("to") for x in a.history()]
            check("REMEDIATING" not in hist, "%s: remediated: %r" % (name, hist))


def r3_failures_mean_no_reboot():
    """AccessDenied, TargetGroupNotFound, throttled past the retries, the
    API down, a drain past deregistration_timeout: no reboot, the code."""
    failure_case("denied", lambda d, tg: d.deny("elasticloadbalancing:DeregisterTargets"), "AccessDenied")
    failure_case("notfound", lambda d, tg: d.script_elb("not_found", action="DeregisterTargets"),
                 "TargetGroupNotFound")
    failure_case("throttled", lambda d, tg: d.script_elb(*["throttle"] * 8, action="DeregisterTargets"),
                 "Throttling")
    failure_case("down", lambda d, tg: d.script_elb(*["unavailable"] * 8, action="DeregisterTargets"),
                 "ServiceUnavailable")
    # a deregistration delay longer than the agent will wait
    failure_case("slowdrain", lambda d, tg: None, "Timeout", dereg_timeout="3s", delay=30.0)


def r4_throttled_then_through():
    """Throttling twice: the jittered retries carry the call through."""
    with new_double() as d:
        port = free_port()
        tg = d.add_target_group("web", port=80, deregistration_delay=1.0, health_check_url=health_url(port),
                                interval=0.3)
        h = RouteHost(d, "retry", tgs=[tg], health_port=port)
        a = h.agent
        with a:
            a.start(wait_serving=False)
            a.wait_state("SERVING", 20)
            d.script_elb("throttle", "throttle", action="DeregisterTargets")
            a.feeder.set_busy(95)
            wait_until(lambda: reboots(d), 40, what="the reboot after the throttling")
            calls = api_calls(d, "DeregisterTargets")
            check(len(calls) == 3 and [c.get("code") for c in calls][:2] == ["Throttling"] * 2,
                  "DeregisterTargets attempts: %r" % calls)
            d.assert_no_violations()


def r5_not_in_service_untouched():
    """Standby by an operator, or Pending:Wait in a lifecycle hook: the
    agent never calls EnterStandby/ExitStandby and never reboots."""
    for state in ("Standby", "Pending:Wait"):
        with new_double() as d, SlackDouble(token=TOKEN) as sl:
            h = RouteHost(d, "hold", standby=True, slack=sl)
            d.add_autoscaling_group("web-asg", instances=[IID], health_check_type="EC2", desired=1)
            a = h.agent
            with a:
                a.start(wait_serving=False)
                a.wait_state("SERVING", 20)
                d.set_lifecycle_state(IID, state)
                a.feeder.set_busy(95)
                st, _ = a.wait_state("QUARANTINED", 30)
                time.sleep(1.0)
                calls = [e["action"] for e in api_calls(d) if e.get("action") in ("EnterStandby", "ExitStandby")]
                check(not calls, "%s: the agent acted on it: %r" % (state, calls))
                check(not reboots(d), "%s: rebooted" % state)
                check(d.lifecycle_state(IID)[1] == state, "%s: now %r" % (state, d.lifecycle_state(IID)))
                sl.wait_for(lambda ms: any("LifecycleState" in m["body"]["text"] or state in m["body"]["text"]
                                           for m in ms), 10)


def r6_attach_never_healthy():
    """After the boot the target group never sees the host healthy (its
    health check gets 503 from an app port that is down): no 'back', the
    host quarantined with the reason, the target deregistered again."""
    with new_double() as d:
        dead = health_url(free_port())  # nothing listens there: every check fails
        tg = d.add_target_group("web", port=80, deregistration_delay=0.5, health_check_url=dead, interval=0.3)
        h = RouteHost(d, "sick", tgs=[tg], reg_timeout="3s")
        a = h.agent
        with a:
            a.start(wait_serving=False)
            st, _ = a.wait_state("QUARANTINED", 20)
            why = st.get("state_reason") or st.get("reason") or ""
            check("Timeout" in why and "unhealthy" in why, "the reason: %r" % why)
            wait_until(lambda: d.target_health(tg, IID)[0] in ("draining", "unused"), 10,
                       what="the target taken out again")


def r7_operator_drain_and_resume():
    """monkeyctl drain: out of the load balancer as well; resume: back in,
    healthy before SERVING; the standby ended is the agent's own."""
    with new_double() as d:
        port = free_port()
        tg = d.add_target_group("web", port=80, deregistration_delay=1.0, health_check_url=health_url(port),
                                interval=0.3)
        d.add_autoscaling_group("web-asg", instances=[IID], target_groups=[tg], health_check_type="ELB",
                                health_check_grace=0.0, desired=1, launch_delay=0.5)
        h = RouteHost(d, "maint", tgs=[tg], standby=True, health_port=port)
        a = h.agent
        with a:
            a.start(wait_serving=False)
            a.wait_state("SERVING", 20)
            cp = a.ctl("drain", "kernel", "upgrade")
            check(cp.returncode == 0, "monkeyctl drain: %s" % cp.stderr)
            a.wait_state("MAINTENANCE", 5)
            d.wait_lifecycle(IID, "Standby", 15)
            check(d.target_health(tg, IID)[0] in ("unused", "draining"), "still routed in maintenance: %r" %
                  (d.target_health(tg, IID),))
            cp = a.ctl("resume")
            check(cp.returncode == 0, "monkeyctl resume: %s" % cp.stderr)
            a.wait_state("SERVING", 20)
            check(d.lifecycle_state(IID)[1] == "InService" and d.target_health(tg, IID)[0] == "healthy",
                  "SERVING while %r / %r" % (d.lifecycle_state(IID), d.target_health(tg, IID)))
            check(not d.asg_terminated and not d.asg_launched, "the group replaced the host")


def r8_slow_enter_standby_not_replaced():
    """The group's ELB health check sees the target unhealthy after two
    0.3 s checks; EnterStandby is throttled twice (seconds of backoff).
    Answering 503 from the leave on would get the instance terminated."""
    with new_double() as d:
        port = free_port()
        tg = d.add_target_group("web", port=80, deregistration_delay=1.0, health_check_url=health_url(port),
                                interval=0.3, unhealthy_threshold=2)
        d.add_autoscaling_group("web-asg", instances=[IID], target_groups=[tg], health_check_type="ELB",
                                health_check_grace=0.0, desired=1, launch_delay=0.5, health_check_period=0.3)
        h = RouteHost(d, "slowstandby", tgs=[tg], standby=True, health_port=port)
        a = h.agent
        with a:
            a.start(wait_serving=False)
            a.wait_state("SERVING", 20)
            d.script_autoscaling("throttle", "throttle", action="EnterStandby")
            a.feeder.set_busy(95)
            wait_until(lambda: reboots(d) or d.asg_terminated, 40, what="the reboot")
            check(not d.asg_terminated, "the group replaced the instance while EnterStandby was retried: %r" %
                  d.asg_terminated)
            calls = api_calls(d, "EnterStandby")
            check(len(calls) == 3, "EnterStandby attempts: %r" % [c.get("code") for c in calls])
            d.assert_no_violations()


def r9_reload_adds_target_group():
    """systemctl reload with a new target group: registered there while
    serving; the next remediation deregisters and drains both first."""
    with new_double() as d:
        port = free_port()
        tg1 = d.add_target_group("web", port=80, deregistration_delay=1.0, health_check_url=health_url(port),
                                 interval=0.3)
        tg2 = d.add_target_group("api", port=8080, deregistration_delay=1.5, health_check_url=health_url(port),
                                 interval=0.3)
        h = RouteHost(d, "reload", tgs=[tg1], health_port=port)
        a = h.agent
        with a:
            a.start(wait_serving=False)
            a.wait_state("SERVING", 20)
            check(d.target_health(tg2, IID)[0] == "unused", "registered in a group not configured yet")
            h.configure([tg1, tg2])
            cp = a.ctl("reload")
            check(cp.returncode == 0, "monkeyctl reload: %s %s" % (cp.stdout, cp.stderr))
            d.wait_target_state(tg2, IID, "healthy", 10)
            check(a.state() == "SERVING", "the reload moved the host: %s" % a.state())
            a.feeder.set_busy(95)
            wait_until(lambda: reboots(d), 40, what="the reboot")
            d.assert_no_violations()
            for tg in (tg1, tg2):
                check(d.target_health(tg, IID)[0] == "unused", "rebooted while %r" % (d.target_health(tg, IID),))


if __name__ == "__main__":
    main([r1_target_group_cycle, r2_autoscaling_standby_cycle, r3_failures_mean_no_reboot,
          r4_throttled_then_through, r5_not_in_service_untouched, r6_attach_never_healthy,
          r7_operator_drain_and_resume, r8_slow_enter_standby_not_replaced, r9_reload_adds_target_group])
