"""Elastic Load Balancing v2 (2015-12-01) and Auto Scaling (2011-01-01) for
the AWS double (aws_double.py mixes these classes into AwsDouble and its
HTTP handler; use AwsDouble, not this module, directly).

Endpoints: d.elb_url and d.autoscaling_url (each "http://127.0.0.1:PORT/",
its own listener, started and stopped with the double). POST / with a
form body, or GET /?query, as the AWS Query API. Every request's SigV4 is
verified by the EC2 verifier of aws_double.py with this endpoint's service
in the scope ("elasticloadbalancing", "autoscaling") and the double's
region; rejections answer as these services do (ErrorResponse XML):

    no Authorization                           403 MissingAuthenticationToken
    malformed Authorization / X-Amz-Date       400 IncompleteSignature
    unknown access key, bad/missing token      403 InvalidClientTokenId
    scope for another service or region,
      wrong signature, date outside 15 min     403 SignatureDoesNotMatch
    role credentials past their Expiration     403 ExpiredToken

Then: behaviours scripted for the action (below); Action (400 MissingAction;
unknown action or Version other than the service's -> 400 InvalidAction
"Could not find operation X for version V"); d.deny("service:Action") ->
403 AccessDenied "User: ARN is not authorized to perform: service:Action on
resource: ARN because no identity-based policy allows the service:Action
action"; then the action with its parameter checks (400 ValidationError).

Success: <ActionResponse xmlns=NS><ActionResult>...</ActionResult>
<ResponseMetadata><RequestId>UUID</RequestId></ResponseMetadata>. Errors:
<ErrorResponse xmlns=NS><Error><Type>Sender|Receiver</Type><Code/><Message/>
</Error><RequestId>UUID</RequestId></ErrorResponse>; x-amzn-RequestId on both.

ELBv2 actions: RegisterTargets, DeregisterTargets (TargetGroupArn,
Targets.member.N.Id [.Port]), DescribeTargetHealth (TargetGroupArn
[, Targets.member.N.Id/.Port]), DescribeTargetGroups ([TargetGroupArns.member.N
| Names.member.N]), DescribeTargetGroupAttributes (TargetGroupArn:
deregistration_delay.timeout_seconds). Errors: TargetGroupNotFound (a
well-formed ARN the double does not have), InvalidTarget (malformed or
unknown instance id), ValidationError (missing/malformed parameters).

  Target groups: d.add_target_group(name, port=80, deregistration_delay=2.0,
  health_check_url=None, healthy_threshold=2, unhealthy_threshold=2,
  interval=0.5, timeout=None, matcher=200, targets=()) -> ARN
  "arn:aws:elasticloadbalancing:REGION:123456789012:targetgroup/NAME/16HEX".
  Target state machine (times on the double's clock, d.now(), so advance()
  moves it):
    RegisterTargets -> initial (Elb.RegistrationInProgress until the first
      check, then Elb.InitialHealthChecking) -> healthy after
      healthy_threshold consecutive good checks, unhealthy after
      unhealthy_threshold bad ones (Target.ResponseCodeMismatch "Health
      checks failed with these codes: [503]", Target.Timeout, or
      Target.FailedHealthChecks for refused connections / a down instance);
      healthy <-> unhealthy by the same thresholds. One check per interval.
      With health_check_url ("http://127.0.0.1:P/path", "{id}" and "{port}"
      replaced per target) a real GET is made (timeout default
      min(1, interval)); a code other than matcher fails. Without one every
      check passes: healthy after interval*healthy_threshold.
    DeregisterTargets -> draining (Target.DeregistrationInProgress) for
      deregistration_delay, no health checks -> gone. A target that is not
      registered answers unused / Target.NotRegistered "Target is not
      registered to the target group" when named in DescribeTargetHealth.
      Registering a registered target, or deregistering one that is not,
      changes nothing (as AWS).
  d.set_instance_down(iid, True/False): the instance is "rebooting"; its
  checks fail (Target.FailedHealthChecks), URL or not. d.reboot_downtime =
  seconds (default None) marks every rebooted instance down that long.

Auto Scaling actions: DescribeAutoScalingInstances ([InstanceIds.member.N];
ids in no group are left out, as AWS), DescribeAutoScalingGroups
([AutoScalingGroupNames.member.N]), EnterStandby / ExitStandby
(AutoScalingGroupName, InstanceIds.member.N, and for EnterStandby
ShouldDecrementDesiredCapacity, required) answering Activities (ActivityId,
AutoScalingGroupName, Description, Cause, StartTime, StatusCode InProgress,
Progress, Details). ValidationError "The instance ID is not in InService."
/ "... is not in Standby.", unknown group "AutoScalingGroup name not found -
AutoScalingGroup 'NAME' not found", a size that would leave min/max.

  Groups: d.add_autoscaling_group(name, instances=[iids], target_groups=[arns],
  health_check_type="ELB", health_check_grace=0.0, desired=None (len),
  min_size=0, max_size=None (desired+2), launch_delay=1.0,
  health_check_period=0.3, register=True) -> group ARN. The instances are
  InService (and, with register=True, registered with the target groups).
  Lifecycle (as AWS documents it):
    EnterStandby: InService -> EnteringStandby; the group deregisters the
      instance from its target groups; Standby once none has it any more
      (drained). ShouldDecrementDesiredCapacity=true lowers desired; false
      keeps it and the group launches a replacement (d.asg_launched).
    ExitStandby: Standby -> Pending (desired + 1; registered with the
      target groups) -> InService after launch_delay once registered.
    ELB health check (health_check_type "ELB"): an InService instance past
      health_check_grace (counted from when it became InService) whose
      target in an attached group is unhealthy, draining or not registered,
      or that is down, for health_check_period -> HealthStatus Unhealthy,
      Terminating (deregistered), then removed; recorded in d.asg_terminated
      and replaced (d.asg_launched). The disaster the agent must avoid.
  d.set_lifecycle_state(iid, state, health=None): put an instance in any
  state (Standby by someone else, "Pending:Wait" in a lifecycle hook,
  "Terminating"...); states other than InService and Standby are frozen
  (no automatic transition) until set again.

Records (lists; read them with the methods for a consistent copy):
  d.timeline    [{"t": d.now(), "wall": time.time(), "kind": ..., ...}]:
                kind "api" (service, action, status, code, instances,
                request_id), "target" (target_group, arn, target, port,
                state, reason), "lifecycle" (group, instance, state, health),
                "reboot" (instance), "down" (instance, down), "violation".
                d.timeline_lines() renders it, one "+SS.SSSs what" a line.
  d.violations  strings: a RebootInstances for an instance that was a
                registered target (initial/healthy/unhealthy) or draining in
                any target group, or InService in a group.
                d.assert_no_violations() raises AssertionError with them.
  d.asg_terminated, d.asg_launched   [{"group","instance","cause","t"}]
  d.elb_requests(), d.autoscaling_requests()   per-request records.
  d.target_health(arn, iid, port=None) -> (state, reason);
  d.lifecycle_state(iid) -> (group, state, health) or None;
  d.wait_target_state(arn, iid, state, timeout), d.wait_lifecycle(iid,
  state, timeout), d.wait_until(pred, timeout).

Scripting, one behaviour consumed per authenticated request of that
service (a queue per action first, then the service's queue, then "ok"):
  d.script_elb(*behaviours, action=None), d.script_autoscaling(...):
    ok | throttle (400 Throttling "Rate exceeded") | internal (500
    InternalFailure) | unavailable (503 ServiceUnavailable) | access_denied
    (403 AccessDenied) | not_found (ELB: 400 TargetGroupNotFound; Auto
    Scaling: 400 ValidationError group not found) | error:CODE:STATUS |
    http:CODE (plain text) | close | hang:SECONDS
  d.deny("elasticloadbalancing:DeregisterTargets"), d.allow(...) (no
  argument: everything allowed again).

HTTP control (on d.url): POST /_double/elb-asg {"add_target_group": {kw} or
[..], "add_autoscaling_group": {kw} or [..], "script": [{"service":
"elasticloadbalancing"|"autoscaling", "action": A|null, "behaviours": [..]}],
"deny": [..], "allow": [..] ([] = all), "instance_down": {iid: bool},
"lifecycle": {iid: state}, "reboot_downtime": s|null} -> {"ok": true,
"target_groups": {name: arn}, "groups": {name: arn}, ...state};
GET /_double/elb-asg (state), /_double/timeline, /_double/violations,
/_double/elb, /_double/autoscaling.

Python 3 standard library only; all state under the double's lock; the
poller thread and health-check threads are bounded and stop with it.
"""

import http.client
import json
import math
import re
import secrets
import sys
import threading
import time
import urllib.parse
import uuid
from xml.sax.saxutils import escape as xml_escape

ELB_SERVICE = "elasticloadbalancing"
ASG_SERVICE = "autoscaling"
VERSIONS = {ELB_SERVICE: "2015-12-01", ASG_SERVICE: "2011-01-01"}
XMLNS = {ELB_SERVICE: "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/",
         ASG_SERVICE: "http://autoscaling.amazonaws.com/doc/2011-01-01/"}
ACCOUNT = "123456789012"
TICK = 0.05
MAX_CHECK_THREADS = 64
MAX_RECORDS = 100000

ELB_ACTIONS = ("RegisterTargets", "DeregisterTargets", "DescribeTargetHealth",
               "DescribeTargetGroups", "DescribeTargetGroupAttributes")
ASG_ACTIONS = ("DescribeAutoScalingInstances", "DescribeAutoScalingGroups", "EnterStandby",
               "ExitStandby")

# DescribeTargetHealth's Description per Reason, as the ELB API words them.
REASON_TEXT = {
    "Elb.RegistrationInProgress": "Target registration is in progress",
    "Elb.InitialHealthChecking": "Initial health checks in progress",
    "Target.FailedHealthChecks": "Health checks failed",
    "Target.Timeout": "Request timed out",
    "Target.ResponseCodeMismatch": "Health checks failed with these codes: [%s]",
    "Target.DeregistrationInProgress": "Target deregistration is in progress",
    "Target.NotRegistered": "Target is not registered to the target group",
}
REGISTERED = ("initial", "healthy", "unhealthy")
LIFECYCLE_STATES = ("Pending", "Pending:Wait", "Pending:Proceed", "InService", "EnteringStandby",
                    "Standby", "Terminating", "Terminating:Wait", "Terminating:Proceed",
                    "Terminated", "Detaching", "Detached", "Quarantined")

# SigV4 rejection reasons of aws_double's verifier -> what ELB and Auto
# Scaling answer (they are not EC2: no AuthFailure, 403 throughout).
MSG_INVALID_TOKEN = "The security token included in the request is invalid."
MSG_SIG = ("The request signature we calculated does not match the signature you provided. "
           "Check your AWS Secret Access Key and signing method. Consult the service "
           "documentation for details.")


def auth_error(reason, service, region, amz_date=None):
    """(status, code, message) for a SigV4 rejection reason."""
    if reason == "no_auth":
        return 403, "MissingAuthenticationToken", "Request is missing Authentication Token"
    if reason in ("malformed_auth", "no_date", "bad_date", "host_unsigned", "scope_terminator"):
        return 400, "IncompleteSignature", "The request signature does not conform to AWS standards."
    if reason == "unknown_key" or reason.startswith("token_"):
        return 403, "InvalidClientTokenId", MSG_INVALID_TOKEN
    if reason == "scope_region":
        return 403, "SignatureDoesNotMatch", ("Credential should be scoped to a valid region, "
                                              "not the one in this request; expected '%s'." % region)
    if reason == "scope_service":
        return 403, "SignatureDoesNotMatch", ("Credential should be scoped to correct service: "
                                              "'%s'. " % service)
    if reason == "credentials_expired":
        return 403, "ExpiredToken", "The security token included in the request is expired"
    if reason == "stale_date":
        return 403, "SignatureDoesNotMatch", ("Signature expired: %s is now earlier or later "
                                              "than the allowed 15 min window." % (amz_date or "?"))
    return 403, "SignatureDoesNotMatch", MSG_SIG


_PLAIN_BEHAVIOURS = ("ok", "throttle", "internal", "unavailable", "access_denied", "not_found",
                     "close")
_ARG_BEHAVIOURS = {"http": r"[2-5][0-9][0-9]", "error": r"[A-Za-z][A-Za-z0-9.]*:[2-5][0-9][0-9]",
                   "hang": r"(?:[0-5]?[0-9]{1,2}|600)(?:\.[0-9]+)?"}


def parse_query_behaviour(b):
    """b itself when it is a behaviour this module knows, else ValueError."""
    if isinstance(b, str):
        kind, colon, arg = b.partition(":")
        if (not colon and kind in _PLAIN_BEHAVIOURS) or \
                (colon and kind in _ARG_BEHAVIOURS and re.fullmatch(_ARG_BEHAVIOURS[kind], arg)):
            return b
    raise ValueError("bad ELB/Auto Scaling behaviour %r (hang at most 600 s)" % (b,))


def _members(params, prefix):
    """[(n, value)] of prefix.N in index order."""
    out = []
    for k, v in params.items():
        m = re.match(r"^%s\.([0-9]+)$" % re.escape(prefix), k)
        if m:
            out.append((int(m.group(1)), v))
    return [v for _, v in sorted(out)]


class QueryError(Exception):
    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _validation(msg):
    return QueryError(400, "ValidationError", msg)


def _size_error(g, what):
    return _validation("AutoScalingGroup %s has min-size=%d, max-size=%d, and desired-size=%d. "
                       "%s, please update the AutoScalingGroup sizes appropriately."
                       % (g["name"], g["min"], g["max"], g["desired"], what))


def _iso_ms(ts):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + ".%03dZ" % int((ts % 1) * 1000)


class ElbAsgMixin:
    """State, state machines, scripting and records; mixed into AwsDouble
    (which provides _lock/_cond, _clock/_offset, instances, region, role)."""

    def _init_elb_asg(self, elb_port=0, autoscaling_port=0):
        self._elb_port, self._asg_port = elb_port, autoscaling_port
        self.elb_url = self.autoscaling_url = None
        self._tgs = {}          # arn -> target group
        self._asgs = {}         # name -> group
        self._down = {}         # iid -> virtual time it comes back (inf: until set)
        self._denied = set()
        self._qscripts = {}     # (service, action or None) -> [behaviour]
        self._qrecords = {ELB_SERVICE: [], ASG_SERVICE: []}
        self.timeline, self.violations = [], []
        self.asg_terminated, self.asg_launched = [], []
        self.reboot_downtime = None
        self._query_servers = []
        self._poller = None
        self._checks_in_flight = 0

    # -- clocks and records (callers hold the lock) -------------------------

    def _vnow(self):
        return self._clock() + self._offset

    def _event(self, kind, **kw):
        ev = {"t": round(self._vnow(), 4), "wall": time.time(), "kind": kind}
        ev.update(kw)
        if len(self.timeline) < MAX_RECORDS:
            self.timeline.append(ev)
        self._cond.notify_all()

    # -- life cycle -------------------------------------------------------

    def _start_elb_asg(self, server_class, handler_class):
        for service, port in ((ELB_SERVICE, self._elb_port), (ASG_SERVICE, self._asg_port)):
            srv = server_class((self.bind_address, port), handler_class, self)
            srv.service = service
            t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1},
                                 name="aws-double-" + service, daemon=True)
            t.start()
            url = "http://%s:%d/" % (self.bind_address, srv.server_address[1])
            if service == ELB_SERVICE:
                self.elb_url = url
            else:
                self.autoscaling_url = url
            self._query_servers.append((srv, t))
        self._poller = threading.Thread(target=self._poll_loop, name="aws-double-poller",
                                        daemon=True)
        self._poller.start()

    def _stop_elb_asg(self):
        servers, self._query_servers = self._query_servers, []
        for srv, t in servers:
            srv.shutdown()
            srv.server_close()
            t.join(timeout=2.0)
        if self._poller is not None:
            self._poller.join(timeout=2.0)
            self._poller = None

    def _poll_loop(self):
        while not self._stopping.wait(TICK):
            try:
                jobs = self._tick()
            except Exception as e:  # a bug here must show, not silently stop the poller
                sys.stderr.write("aws-double: poller: %r\n" % (e,))
                continue
            for job in jobs:
                threading.Thread(target=self._run_check, args=job, name="aws-double-hc",
                                 daemon=True).start()

    # -- test API: target groups -----------------------------------------

    def add_target_group(self, name, port=80, deregistration_delay=2.0, health_check_url=None,
                         healthy_threshold=2, unhealthy_threshold=2, interval=0.5, timeout=None,
                         matcher=200, targets=()):
        if not re.match(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,30}[A-Za-z0-9])?$", name):
            raise ValueError("bad target group name %r" % name)
        if health_check_url is not None:
            host = urllib.parse.urlsplit(health_check_url.replace("{id}", "x").replace(
                "{port}", "1")).hostname or ""
            if not (host.startswith("127.") or host == "localhost"):
                raise ValueError("health checks go to loopback addresses only")
        if not (2 <= healthy_threshold <= 10 and 2 <= unhealthy_threshold <= 10):
            raise ValueError("thresholds are 2..10, as on AWS")
        if interval <= 0 or deregistration_delay < 0:
            raise ValueError("interval > 0 and deregistration_delay >= 0")
        arn = "arn:aws:elasticloadbalancing:%s:%s:targetgroup/%s/%s" % (
            self.region, ACCOUNT, name, secrets.token_hex(8))
        tg = {"name": name, "arn": arn, "port": int(port),
              "deregistration_delay": float(deregistration_delay),
              "health_check_url": health_check_url, "healthy_threshold": int(healthy_threshold),
              "unhealthy_threshold": int(unhealthy_threshold), "interval": float(interval),
              # Bounded: a check thread must end soon after stop().
              "timeout": min(5.0, float(timeout)) if timeout else min(1.0, float(interval)),
              "matcher": int(matcher), "targets": {}}
        with self._cond:
            if any(t["name"] == name for t in self._tgs.values()):
                raise ValueError("target group %r exists" % name)
            self._tgs[arn] = tg
            for iid in targets:
                self._register(tg, iid, tg["port"])
        return arn

    def target_group_arn(self, name):
        with self._lock:
            for arn, tg in self._tgs.items():
                if tg["name"] == name:
                    return arn
        raise KeyError(name)

    def target_health(self, arn, iid, port=None):
        """(state, reason) of a target now; ("unused", "Target.NotRegistered") if absent."""
        with self._lock:
            tg = self._tgs[arn]
            t = tg["targets"].get((iid, port or tg["port"]))
            return (t["state"], t["reason"]) if t else ("unused", "Target.NotRegistered")

    def register_target(self, arn, iid, port=None):
        """What RegisterTargets does, for a test's set-up."""
        with self._cond:
            tg = self._tgs[arn]
            self._register(tg, iid, port or tg["port"])

    def deregister_target(self, arn, iid, port=None):
        with self._cond:
            tg = self._tgs[arn]
            self._deregister(tg, iid, port or tg["port"])

    def set_instance_down(self, iid, down=True):
        with self._cond:
            if iid not in self.instances:
                raise ValueError("unknown instance %r" % iid)
            if down:
                self._down[iid] = math.inf
            else:
                self._down.pop(iid, None)
            self._event("down", instance=iid, down=bool(down))

    # -- test API: groups -------------------------------------------------

    def add_autoscaling_group(self, name, instances=(), target_groups=(), health_check_type="ELB",
                              health_check_grace=0.0, desired=None, min_size=0, max_size=None,
                              launch_delay=1.0, health_check_period=0.3, register=True):
        if health_check_type not in ("ELB", "EC2"):
            raise ValueError("health_check_type is ELB or EC2")
        instances = list(instances)
        desired = len(instances) if desired is None else int(desired)
        max_size = desired + 2 if max_size is None else int(max_size)
        if not min_size <= desired <= max_size:
            raise ValueError("need min_size <= desired <= max_size")
        arn = "arn:aws:autoscaling:%s:%s:autoScalingGroup:%s:autoScalingGroupName/%s" % (
            self.region, ACCOUNT, uuid.uuid4(), name)
        with self._cond:
            if name in self._asgs:
                raise ValueError("group %r exists" % name)
            for tga in target_groups:
                if tga not in self._tgs:
                    raise ValueError("unknown target group %r" % tga)
            for iid in instances:
                if iid not in self.instances:
                    raise ValueError("unknown instance %r" % iid)
                if self._group_of(iid):
                    raise ValueError("%s is already in a group" % iid)
            g = {"name": name, "arn": arn, "target_groups": list(target_groups),
                 "health_check_type": health_check_type, "grace": float(health_check_grace),
                 "desired": desired, "min": int(min_size), "max": max_size,
                 "launch_delay": float(launch_delay), "period": float(health_check_period),
                 "instances": {}, "created": time.time()}
            self._asgs[name] = g
            for iid in instances:
                self._asg_add_instance(g, iid, "InService")
                if register:
                    self._each_group_target(g, iid, self._register)
        return arn

    def set_lifecycle_state(self, iid, state, health=None):
        if state not in LIFECYCLE_STATES:
            raise ValueError("unknown lifecycle state %r" % state)
        with self._cond:
            g = self._group_of(iid)
            if g is None:
                raise ValueError("%s is in no group" % iid)
            inst = g["instances"][iid]
            inst["frozen"] = state not in ("InService", "Standby")
            if health:
                inst["health"] = health
            self._set_lifecycle(g, inst, state)

    def lifecycle_state(self, iid):
        with self._lock:
            g = self._group_of(iid)
            if g is None:
                return None
            inst = g["instances"][iid]
            return g["name"], inst["state"], inst["health"]

    def group(self, name):
        with self._lock:
            g = self._asgs[name]
            return {"name": name, "arn": g["arn"], "desired": g["desired"], "min": g["min"],
                    "max": g["max"], "target_groups": list(g["target_groups"]),
                    "instances": {i: (v["state"], v["health"]) for i, v in g["instances"].items()}}

    # -- test API: scripting, permissions, records --------------------------

    def script_elb(self, *behaviours, action=None):
        self._script(ELB_SERVICE, action, behaviours)

    def script_autoscaling(self, *behaviours, action=None):
        self._script(ASG_SERVICE, action, behaviours)

    def _script(self, service, action, behaviours):
        if action is not None and action not in (ELB_ACTIONS if service == ELB_SERVICE
                                                 else ASG_ACTIONS):
            raise ValueError("unknown %s action %r" % (service, action))
        parsed = [parse_query_behaviour(b) for b in behaviours]
        with self._lock:
            self._qscripts.setdefault((service, action), []).extend(parsed)

    def deny(self, *actions):
        for a in actions:
            if not re.match(r"^(elasticloadbalancing|autoscaling):[A-Za-z]+$", a):
                raise ValueError("deny wants service:Action, not %r" % a)
        with self._lock:
            self._denied.update(actions)

    def allow(self, *actions):
        with self._lock:
            if actions:
                self._denied.difference_update(actions)
            else:
                self._denied.clear()

    def elb_requests(self):
        with self._lock:
            return json.loads(json.dumps(self._qrecords[ELB_SERVICE]))

    def autoscaling_requests(self):
        with self._lock:
            return json.loads(json.dumps(self._qrecords[ASG_SERVICE]))

    def events(self):
        with self._lock:
            return json.loads(json.dumps(self.timeline))

    def assert_no_violations(self):
        with self._lock:
            v = list(self.violations)
        if v:
            raise AssertionError("aws double: %d violation(s): %s" % (len(v), "; ".join(v)))

    def timeline_lines(self, t0=None):
        """The timeline as text, one "+SS.SSSs what" a line (t0: first event)."""
        evs = self.events()
        if not evs:
            return []
        t0 = evs[0]["t"] if t0 is None else t0
        out = []
        for e in evs:
            k = e["kind"]
            if k == "api":
                what = "%s %s -> %s" % (e["service"], e["action"], e["code"] or e["status"])
                if e.get("instances"):
                    what += " " + ",".join(e["instances"])
            elif k == "target":
                what = "target %s %s:%s %s%s" % (e["target_group"], e["target"], e["port"],
                                                 e["state"],
                                                 " (%s)" % e["reason"] if e["reason"] else "")
            elif k == "lifecycle":
                what = "group %s %s %s %s" % (e["group"], e["instance"], e["state"], e["health"])
            elif k == "reboot":
                what = "ec2 reboot %s" % e["instance"]
            elif k == "down":
                what = "instance %s %s" % (e["instance"], "down" if e["down"] else "up")
            else:
                what = "%s %s" % (k, e.get("message", ""))
            out.append("+%8.3fs %s" % (e["t"] - t0, what))
        return out

    def wait_until(self, predicate, timeout=5.0):
        """Block until predicate() (called under no lock) is true; bounded."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("aws double: condition not met within %.1fs" % timeout)
            with self._cond:
                self._cond.wait(min(left, 0.1))

    def wait_target_state(self, arn, iid, state, timeout=5.0, port=None):
        self.wait_until(lambda: self.target_health(arn, iid, port)[0] == state, timeout)

    def wait_lifecycle(self, iid, state, timeout=5.0):
        self.wait_until(lambda: (self.lifecycle_state(iid) or (None, None))[1] == state, timeout)

    def elb_asg_state(self):
        with self._lock:
            return {
                "elb_url": self.elb_url, "autoscaling_url": self.autoscaling_url,
                "target_groups": {tg["name"]: {
                    "arn": arn, "port": tg["port"], "deregistration_delay":
                    tg["deregistration_delay"], "targets": [
                        {"id": t["id"], "port": t["port"], "state": t["state"],
                         "reason": t["reason"]} for t in tg["targets"].values()]}
                    for arn, tg in self._tgs.items()},
                "groups": {n: {"arn": g["arn"], "desired": g["desired"], "min": g["min"],
                               "max": g["max"], "target_groups": g["target_groups"],
                               "instances": {i: {"state": v["state"], "health": v["health"]}
                                             for i, v in g["instances"].items()}}
                           for n, g in self._asgs.items()},
                "down": sorted(self._down), "denied": sorted(self._denied),
                "scripts": {"%s:%s" % (s, a or "*"): list(q)
                            for (s, a), q in self._qscripts.items() if q},
                "violations": list(self.violations),
                "asg_terminated": list(self.asg_terminated),
                "asg_launched": list(self.asg_launched),
                "reboot_downtime": self.reboot_downtime}

    def _elb_asg_reset(self):
        """Scripts, permissions and records (timeline, violations,
        asg_terminated/launched); not the target groups, groups and states."""
        self._qscripts.clear()
        self._denied.clear()
        for v in self._qrecords.values():
            v.clear()
        del self.timeline[:]
        del self.violations[:]
        del self.asg_terminated[:]
        del self.asg_launched[:]

    # -- the EC2 side: reboots -------------------------------------------

    def _elb_asg_reboot(self, ids):
        """Called by RebootInstances before it answers: a reboot of a routed
        instance is the thing the agent must never do."""
        with self._cond:
            for iid in ids:
                self._event("reboot", instance=iid)
                for tg in self._tgs.values():
                    for t in tg["targets"].values():
                        if t["id"] == iid and t["state"] in REGISTERED + ("draining",):
                            self._violation("reboot of %s while it is %s (%s) in target group %s"
                                            % (iid, t["state"], t["reason"] or "-", tg["name"]))
                g = self._group_of(iid)
                if g is not None and g["instances"][iid]["state"] == "InService":
                    self._violation("reboot of %s while InService in Auto Scaling group %s"
                                    % (iid, g["name"]))
                if self.reboot_downtime is not None:
                    self._down[iid] = self._vnow() + float(self.reboot_downtime)
                    self._event("down", instance=iid, down=True)

    def _violation(self, msg):
        self.violations.append(msg)
        self._event("violation", message=msg)

    # -- target state machine (lock held) ----------------------------------

    def _set_target(self, tg, t, state, reason, code=None):
        if t["state"] == state and t["reason"] == reason and t.get("code") == code:
            return
        t["state"], t["reason"], t["code"] = state, reason, code
        self._event("target", target_group=tg["name"], arn=tg["arn"], target=t["id"],
                    port=t["port"], state=state, reason=reason)

    def _register(self, tg, iid, port):
        key = (iid, port)
        t = tg["targets"].get(key)
        if t is not None and t["state"] in REGISTERED:
            return
        now = self._vnow()
        t = {"id": iid, "port": port, "state": None, "reason": None, "code": None, "ok": 0,
             "fail": 0, "checks": 0, "next_check": now + tg["interval"], "drain_until": None,
             "in_flight": False, "gen": secrets.token_hex(4)}
        tg["targets"][key] = t
        self._set_target(tg, t, "initial", "Elb.RegistrationInProgress")

    def _deregister(self, tg, iid, port):
        t = tg["targets"].get((iid, port))
        if t is None or t["state"] == "draining":
            return
        t["drain_until"] = self._vnow() + tg["deregistration_delay"]
        t["gen"] = None   # a check in flight no longer counts
        self._set_target(tg, t, "draining", "Target.DeregistrationInProgress")

    def _is_down(self, iid, now):
        until = self._down.get(iid)
        if until is None:
            return False
        if now >= until:
            del self._down[iid]
            self._event("down", instance=iid, down=False)
            return False
        return True

    def _apply_check(self, tg, t, ok, reason=None, code=None):
        t["checks"] += 1
        if ok:
            t["ok"], t["fail"] = t["ok"] + 1, 0
        else:
            t["fail"], t["ok"] = t["fail"] + 1, 0
        if t["state"] == "initial":
            if ok and t["ok"] >= tg["healthy_threshold"]:
                self._set_target(tg, t, "healthy", None)
            elif not ok and t["fail"] >= tg["unhealthy_threshold"]:
                self._set_target(tg, t, "unhealthy", reason, code)
            else:
                self._set_target(tg, t, "initial", "Elb.InitialHealthChecking")
        elif t["state"] == "healthy":
            if not ok and t["fail"] >= tg["unhealthy_threshold"]:
                self._set_target(tg, t, "unhealthy", reason, code)
        elif t["state"] == "unhealthy":
            if ok and t["ok"] >= tg["healthy_threshold"]:
                self._set_target(tg, t, "healthy", None)
            elif not ok:
                self._set_target(tg, t, "unhealthy", reason, code)

    def _tick(self):
        jobs = []
        with self._cond:
            now = self._vnow()
            for iid in list(self._down):
                self._is_down(iid, now)   # a reboot's downtime ends: say so
            for tg in self._tgs.values():
                for key, t in list(tg["targets"].items()):
                    if t["state"] == "draining":
                        if now >= t["drain_until"]:
                            del tg["targets"][key]
                            self._set_target(tg, t, "unused", "Target.NotRegistered")
                        continue
                    if now < t["next_check"] or t["in_flight"]:
                        continue
                    t["next_check"] = now + tg["interval"]
                    if self._is_down(t["id"], now):
                        self._apply_check(tg, t, False, "Target.FailedHealthChecks")
                    elif tg["health_check_url"] is None:
                        self._apply_check(tg, t, True)
                    elif self._checks_in_flight < MAX_CHECK_THREADS:
                        t["in_flight"] = True
                        self._checks_in_flight += 1
                        url = tg["health_check_url"].replace("{id}", t["id"]).replace(
                            "{port}", str(t["port"]))
                        jobs.append((tg["arn"], key, t["gen"], url, tg["timeout"], tg["matcher"]))
            for g in self._asgs.values():
                self._asg_tick(g, now)
        return jobs

    def _run_check(self, arn, key, gen, url, timeout, matcher):
        ok, reason, code = False, "Target.FailedHealthChecks", None
        parts = urllib.parse.urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
        try:
            conn.request("GET", (parts.path or "/") + ("?" + parts.query if parts.query else ""),
                         headers={"User-Agent": "ELB-HealthChecker/2.0"})
            status = conn.getresponse().status
            ok = status == matcher
            if not ok:
                reason, code = "Target.ResponseCodeMismatch", status
        except TimeoutError:
            reason = "Target.Timeout"
        except (OSError, http.client.HTTPException):
            pass
        finally:
            conn.close()
        with self._cond:
            self._checks_in_flight -= 1
            tg = self._tgs.get(arn)
            t = tg["targets"].get(key) if tg else None
            if t is None or t["gen"] != gen:
                if t is not None:
                    t["in_flight"] = False
                return
            t["in_flight"] = False
            # A host that went down while the check ran fails it.
            if self._is_down(t["id"], self._vnow()):
                ok, reason, code = False, "Target.FailedHealthChecks", None
            self._apply_check(tg, t, ok, reason, code)

    # -- Auto Scaling (lock held) -----------------------------------------

    def _group_of(self, iid):
        for g in self._asgs.values():
            if iid in g["instances"]:
                return g
        return None

    def _asg_add_instance(self, g, iid, state):
        inst = {"id": iid, "state": None, "health": "Healthy", "since": self._vnow(),
                "in_service_since": self._vnow(), "bad_since": None, "frozen": False}
        g["instances"][iid] = inst
        self._set_lifecycle(g, inst, state)
        return inst

    def _set_lifecycle(self, g, inst, state):
        inst["since"] = self._vnow()
        if state == "InService":
            inst["in_service_since"] = inst["since"]
            inst["bad_since"] = None
        if inst["state"] != state:
            inst["state"] = state
            self._event("lifecycle", group=g["name"], instance=inst["id"], state=state,
                        health=inst["health"])

    def _registered_anywhere(self, g, iid):
        for tga in g["target_groups"]:
            tg = self._tgs.get(tga)
            if tg and (iid, tg["port"]) in tg["targets"]:
                return True
        return False

    def _registered_everywhere(self, g, iid):
        for tga in g["target_groups"]:
            tg = self._tgs.get(tga)
            t = tg["targets"].get((iid, tg["port"])) if tg else None
            if t is None or t["state"] not in REGISTERED:
                return False
        return True

    def _elb_bad(self, g, iid, now):
        if self._is_down(iid, now):
            return "the instance is down"
        for tga in g["target_groups"]:
            tg = self._tgs.get(tga)
            if tg is None:
                continue
            t = tg["targets"].get((iid, tg["port"]))
            if t is None:
                return "not registered in target group %s" % tg["name"]
            if t["state"] in ("unhealthy", "draining"):
                return "%s in target group %s" % (t["state"], tg["name"])
        return None

    def _asg_tick(self, g, now):
        for inst in list(g["instances"].values()):
            iid = inst["id"]
            if inst["frozen"]:
                continue
            st = inst["state"]
            if st == "EnteringStandby" and not self._registered_anywhere(g, iid):
                self._set_lifecycle(g, inst, "Standby")
            elif st == "Pending" and now - inst["since"] >= g["launch_delay"] \
                    and self._registered_everywhere(g, iid):
                self._set_lifecycle(g, inst, "InService")
            elif st == "Terminating" and not self._registered_anywhere(g, iid):
                del g["instances"][iid]
                self._event("lifecycle", group=g["name"], instance=iid, state="Terminated",
                            health=inst["health"])
            elif st == "InService" and g["health_check_type"] == "ELB" \
                    and now - inst["in_service_since"] >= g["grace"]:
                bad = self._elb_bad(g, iid, now)
                if bad is None:
                    inst["bad_since"] = None
                elif inst["bad_since"] is None:
                    inst["bad_since"] = now
                elif now - inst["bad_since"] >= g["period"]:
                    self._asg_terminate(g, inst, bad)

    def _asg_terminate(self, g, inst, why):
        iid = inst["id"]
        inst["health"] = "Unhealthy"
        cause = ("an instance was taken out of service in response to an ELB system health "
                 "check failure (%s)" % why)
        self.asg_terminated.append({"group": g["name"], "instance": iid, "cause": cause,
                                    "t": self._vnow()})
        self._set_lifecycle(g, inst, "Terminating")
        self._each_group_target(g, iid, self._deregister)
        self._asg_launch(g, "replacing unhealthy instance %s" % iid)

    def _asg_launch(self, g, cause):
        iid = "i-" + secrets.token_hex(9)[:17]
        template = dict(next(iter(self.instances.values())))
        template["mac"] = "0e:00:00:00:%02x:%02x" % (len(self.instances) // 256 % 256,
                                                      len(self.instances) % 256)
        self.instances[iid] = template
        self.asg_launched.append({"group": g["name"], "instance": iid, "cause": cause,
                                  "t": self._vnow()})
        self._asg_add_instance(g, iid, "Pending")
        self._each_group_target(g, iid, self._register)

    def _each_group_target(self, g, iid, fn):
        """fn(target group, iid, its port) for each of g's target groups."""
        for tga in g["target_groups"]:
            tg = self._tgs[tga]
            fn(tg, iid, tg["port"])

    # -- the Query API: dispatch (called by the handler) --------------------

    def _next_query_behaviour(self, service, action):
        with self._lock:
            for key in ((service, action), (service, None)):
                q = self._qscripts.get(key)
                if q:
                    return q.pop(0)
        return "ok"

    def _finish_query(self, rec):
        with self._cond:
            recs = self._qrecords[rec["service"]]
            if len(recs) < MAX_RECORDS:
                recs.append(rec)
            self._event("api", service=rec["service"], action=rec["action"],
                        status=rec["status"], code=rec["code"], instances=rec["instances"],
                        request_id=rec["request_id"])
            # The call goes before the state changes it caused, at the time
            # it took effect: "EnterStandby -> EnteringStandby -> draining".
            at = rec.pop("_timeline_at", None)
            if at is not None and len(self.timeline) < MAX_RECORDS:
                ev = self.timeline.pop()
                ev["t"] = at[1]
                self.timeline.insert(at[0], ev)

    def _principal(self, rec):
        if rec.get("credential_kind") == "role" and self.role:
            return "arn:aws:sts::%s:assumed-role/%s/%s" % (ACCOUNT, self.role, self.imds_instance)
        return "arn:aws:iam::%s:user/monkeyd" % ACCOUNT

    def _query_api(self, service, rec, params):
        """(status, xml body) for an authenticated, unscripted request, or
        raises QueryError."""
        action = params.get("Action")
        rec["action"] = action
        if not action:
            raise QueryError(400, "MissingAction", "Missing Action")
        version = params.get("Version")
        actions = ELB_ACTIONS if service == ELB_SERVICE else ASG_ACTIONS
        if action not in actions or version != VERSIONS[service]:
            raise QueryError(400, "InvalidAction", "Could not find operation %s for version %s"
                             % (action, version or "NO_VERSION_SPECIFIED"))
        with self._cond:
            denied = "%s:%s" % (service, action) in self._denied
            if denied:
                res = params.get("TargetGroupArn") or "*"
                if service == ASG_SERVICE:
                    g = self._asgs.get(params.get("AutoScalingGroupName", ""))
                    res = g["arn"] if g else "*"
                a = "%s:%s" % (service, action)
                raise QueryError(403, "AccessDenied",
                                 "User: %s is not authorized to perform: %s on resource: %s "
                                 "because no identity-based policy allows the %s action"
                                 % (self._principal(rec), a, res, a))
            rec["_timeline_at"] = (len(self.timeline), round(self._vnow(), 4))
            result = getattr(self, "_q_" + action)(rec, params)
        return ("<?xml version=\"1.0\"?>\n<%sResponse xmlns=\"%s\">\n  <%sResult>%s</%sResult>\n"
                "  <ResponseMetadata>\n    <RequestId>%s</RequestId>\n  </ResponseMetadata>\n"
                "</%sResponse>\n" % (action, XMLNS[service], action, result, action,
                                     rec["request_id"], action))

    def _query_misbehaviour(self, service, rec, params, b):
        """QueryError for a scripted error behaviour (None: not an error)."""
        if b == "throttle":
            return QueryError(400, "Throttling", "Rate exceeded")
        if b == "internal":
            return QueryError(500, "InternalFailure", "An internal error has occurred")
        if b == "unavailable":
            return QueryError(503, "ServiceUnavailable", "Service is unavailable")
        if b == "access_denied":
            a = "%s:%s" % (service, params.get("Action"))
            return QueryError(403, "AccessDenied",
                              "User: %s is not authorized to perform: %s on resource: %s because "
                              "no identity-based policy allows the %s action"
                              % (self._principal(rec), a, params.get("TargetGroupArn") or "*", a))
        if b == "not_found":
            if service == ELB_SERVICE:
                return QueryError(400, "TargetGroupNotFound", "One or more target groups not found")
            return _validation("AutoScalingGroup name not found - AutoScalingGroup '%s' not found"
                               % params.get("AutoScalingGroupName", ""))
        if b.startswith("error:"):
            _, code, status = b.split(":")
            return QueryError(int(status), code, "Scripted error %s." % code)
        return None

    # -- ELBv2 actions (lock held) -----------------------------------------

    def _tg_param(self, params):
        arn = params.get("TargetGroupArn")
        if not arn:
            raise _validation("A target group ARN must be specified")
        if not re.match(r"^arn:aws:elasticloadbalancing:[a-z0-9-]+:[0-9]{12}:targetgroup/"
                        r"[A-Za-z0-9-]{1,32}/[0-9a-f]{16}$", arn):
            raise _validation("'%s' is not a valid target group ARN" % arn)
        tg = self._tgs.get(arn)
        if tg is None:
            raise QueryError(400, "TargetGroupNotFound",
                             "Target groups '%s' not found" % arn)
        return tg

    def _targets_param(self, rec, params, tg, required):
        ids = {}
        for k, v in params.items():
            m = re.match(r"^Targets\.member\.([0-9]+)\.(Id|Port|AvailabilityZone)$", k)
            if m:
                ids.setdefault(int(m.group(1)), {})[m.group(2)] = v
            elif k.startswith("Targets"):
                raise _validation("Unknown parameter %s" % k)
        if required and not ids:
            raise _validation("Targets must contain at least one target")
        out = []
        for n in sorted(ids):
            t = ids[n]
            if "Id" not in t:
                raise _validation("Target Id is required (Targets.member.%d.Id)" % n)
            port = tg["port"]
            if "Port" in t:
                if not re.match(r"^[0-9]{1,5}$", t["Port"]) or not 1 <= int(t["Port"]) <= 65535:
                    raise _validation("Port must be between 1 and 65535 (Targets.member.%d.Port)"
                                      % n)
                port = int(t["Port"])
            out.append((t["Id"], port))
        rec["instances"] = [i for i, _ in out]
        bad = [i for i, _ in out if i not in self.instances]
        if bad:
            raise QueryError(400, "InvalidTarget",
                             "The following targets are not valid instances: %s"
                             % ", ".join("'%s'" % i for i in bad))
        return out

    def _q_RegisterTargets(self, rec, params):
        tg = self._tg_param(params)
        for iid, port in self._targets_param(rec, params, tg, True):
            self._register(tg, iid, port)
        return ""

    def _q_DeregisterTargets(self, rec, params):
        tg = self._tg_param(params)
        for iid, port in self._targets_param(rec, params, tg, True):
            self._deregister(tg, iid, port)
        return ""

    def _q_DescribeTargetHealth(self, rec, params):
        tg = self._tg_param(params)
        named = self._targets_param(rec, params, tg, False)
        if named:
            rows = [(iid, port, tg["targets"].get((iid, port))) for iid, port in named]
        else:
            rows = [(t["id"], t["port"], t) for t in tg["targets"].values()]
        out = []
        for iid, port, t in rows:
            state, reason, code = (t["state"], t["reason"], t["code"]) if t else \
                ("unused", "Target.NotRegistered", None)
            health = "<State>%s</State>" % state
            if reason:
                text = REASON_TEXT.get(reason, reason)
                if code is not None:
                    text = text % code
                elif "%s" in text:
                    text = "Health checks failed"
                health += "<Reason>%s</Reason><Description>%s</Description>" % (
                    reason, xml_escape(text))
            out.append("<member><HealthCheckPort>%d</HealthCheckPort><TargetHealth>%s"
                       "</TargetHealth><Target><Port>%d</Port><Id>%s</Id></Target></member>"
                       % (port, health, port, xml_escape(iid)))
        return "<TargetHealthDescriptions>%s</TargetHealthDescriptions>" % "".join(out)

    def _q_DescribeTargetGroups(self, rec, params):
        arns = _members(params, "TargetGroupArns.member")
        names = _members(params, "Names.member")
        if arns and names:
            raise _validation("Target group names and target group ARNs cannot be specified "
                              "at the same time")
        if arns:
            tgs = [self._tg_param({"TargetGroupArn": a}) for a in arns]
        elif names:
            by_name = {tg["name"]: tg for tg in self._tgs.values()}
            missing = [n for n in names if n not in by_name]
            if missing:
                raise QueryError(400, "TargetGroupNotFound",
                                 "One or more target groups not found")
            tgs = [by_name[n] for n in names]
        else:
            tgs = list(self._tgs.values())
        out = []
        for tg in tgs:
            path = urllib.parse.urlsplit(tg["health_check_url"] or "/").path or "/"
            out.append(
                "<member><TargetGroupArn>%s</TargetGroupArn><TargetGroupName>%s</TargetGroupName>"
                "<Protocol>HTTP</Protocol><Port>%d</Port><VpcId>vpc-0double0000000001</VpcId>"
                "<HealthCheckProtocol>HTTP</HealthCheckProtocol><HealthCheckPort>traffic-port"
                "</HealthCheckPort><HealthCheckEnabled>true</HealthCheckEnabled>"
                "<HealthCheckIntervalSeconds>%d</HealthCheckIntervalSeconds>"
                "<HealthCheckTimeoutSeconds>%d</HealthCheckTimeoutSeconds>"
                "<HealthyThresholdCount>%d</HealthyThresholdCount>"
                "<UnhealthyThresholdCount>%d</UnhealthyThresholdCount>"
                "<HealthCheckPath>%s</HealthCheckPath><Matcher><HttpCode>%d</HttpCode></Matcher>"
                "<LoadBalancerArns><member>arn:aws:elasticloadbalancing:%s:%s:loadbalancer/app/"
                "double/0123456789abcdef</member></LoadBalancerArns><TargetType>instance"
                "</TargetType><ProtocolVersion>HTTP1</ProtocolVersion><IpAddressType>ipv4"
                "</IpAddressType></member>"
                % (tg["arn"], tg["name"], tg["port"], max(1, math.ceil(tg["interval"])),
                   max(1, math.ceil(tg["timeout"])), tg["healthy_threshold"],
                   tg["unhealthy_threshold"], xml_escape(path), tg["matcher"], self.region,
                   ACCOUNT))
        return "<TargetGroups>%s</TargetGroups>" % "".join(out)

    def _q_DescribeTargetGroupAttributes(self, rec, params):
        tg = self._tg_param(params)
        attrs = {"deregistration_delay.timeout_seconds": str(math.ceil(tg["deregistration_delay"])),
                 "stickiness.enabled": "false", "load_balancing.algorithm.type": "round_robin"}
        return "<Attributes>%s</Attributes>" % "".join(
            "<member><Key>%s</Key><Value>%s</Value></member>" % kv for kv in attrs.items())

    # -- Auto Scaling actions (lock held) ----------------------------------

    def _asg_instance_xml(self, g, inst, with_group):
        iid = inst["id"]
        az = self.instances.get(iid, {}).get("availability_zone", self.region + "a")
        itype = self.instances.get(iid, {}).get("instance_type", "t3.micro")
        return ("<member><InstanceId>%s</InstanceId>%s<InstanceType>%s</InstanceType>"
                "<AvailabilityZone>%s</AvailabilityZone><LifecycleState>%s</LifecycleState>"
                "<HealthStatus>%s</HealthStatus><LaunchTemplate><LaunchTemplateId>"
                "lt-0double000000001</LaunchTemplateId><LaunchTemplateName>double"
                "</LaunchTemplateName><Version>1</Version></LaunchTemplate>"
                "<ProtectedFromScaleIn>false</ProtectedFromScaleIn></member>"
                % (iid, "<AutoScalingGroupName>%s</AutoScalingGroupName>" % xml_escape(g["name"])
                   if with_group else "", itype, az, inst["state"],
                   inst["health"].upper() if with_group else inst["health"]))

    def _q_DescribeAutoScalingInstances(self, rec, params):
        ids = _members(params, "InstanceIds.member")
        rec["instances"] = ids
        if len(ids) > 50:
            raise _validation("The number of instance ids that may be passed in is 50.")
        out = []
        for g in self._asgs.values():
            for iid, inst in g["instances"].items():
                if not ids or iid in ids:
                    out.append(self._asg_instance_xml(g, inst, True))
        return "<AutoScalingInstances>%s</AutoScalingInstances>" % "".join(out)

    def _q_DescribeAutoScalingGroups(self, rec, params):
        names = _members(params, "AutoScalingGroupNames.member")
        out = []
        for g in self._asgs.values():
            if names and g["name"] not in names:
                continue
            out.append(
                "<member><AutoScalingGroupName>%s</AutoScalingGroupName><AutoScalingGroupARN>%s"
                "</AutoScalingGroupARN><MinSize>%d</MinSize><MaxSize>%d</MaxSize>"
                "<DesiredCapacity>%d</DesiredCapacity><DefaultCooldown>300</DefaultCooldown>"
                "<AvailabilityZones><member>%sa</member></AvailabilityZones><LoadBalancerNames/>"
                "<TargetGroupARNs>%s</TargetGroupARNs><HealthCheckType>%s</HealthCheckType>"
                "<HealthCheckGracePeriod>%d</HealthCheckGracePeriod><Instances>%s</Instances>"
                "<CreatedTime>%s</CreatedTime><SuspendedProcesses/><EnabledMetrics/>"
                "<Tags/><TerminationPolicies><member>Default</member></TerminationPolicies>"
                "<NewInstancesProtectedFromScaleIn>false</NewInstancesProtectedFromScaleIn>"
                "</member>"
                % (xml_escape(g["name"]), g["arn"], g["min"], g["max"], g["desired"], self.region,
                   "".join("<member>%s</member>" % a for a in g["target_groups"]),
                   g["health_check_type"], math.ceil(g["grace"]),
                   "".join(self._asg_instance_xml(g, i, False) for i in g["instances"].values()),
                   _iso_ms(g["created"])))
        return "<AutoScalingGroups>%s</AutoScalingGroups>" % "".join(out)

    def _standby_params(self, rec, params):
        name = params.get("AutoScalingGroupName")
        if not name:
            raise _validation("1 validation error detected: Value null at "
                              "'autoScalingGroupName' failed to satisfy constraint: Member must "
                              "not be null")
        ids = _members(params, "InstanceIds.member")
        rec["instances"] = ids
        if len(ids) > 20:
            raise _validation("The number of instance ids that may be passed in is 20.")
        g = self._asgs.get(name)
        if g is None:
            raise _validation("AutoScalingGroup name not found - AutoScalingGroup '%s' not found"
                              % name)
        for iid in ids:
            if iid not in g["instances"]:
                raise _validation("The instance %s is not part of Auto Scaling group %s."
                                  % (iid, name))
        return g, ids

    def _activities(self, g, ids, description, cause):
        now = time.time()
        out = []
        for iid in ids:
            az = self.instances.get(iid, {}).get("availability_zone", self.region + "a")
            out.append(
                "<member><ActivityId>%s</ActivityId><AutoScalingGroupName>%s</AutoScalingGroupName>"
                "<Description>%s</Description><Cause>%s</Cause><StartTime>%s</StartTime>"
                "<StatusCode>InProgress</StatusCode><Progress>50</Progress><Details>%s</Details>"
                "</member>" % (uuid.uuid4(), xml_escape(g["name"]), xml_escape(description % iid),
                               xml_escape(cause % {"at": _iso_ms(now)[:19] + "Z", "iid": iid}),
                               _iso_ms(now), xml_escape(json.dumps({"Availability Zone": az,
                                                                     "Subnet ID": "subnet-0double"}))))
        return "<Activities>%s</Activities>" % "".join(out)

    def _q_EnterStandby(self, rec, params):
        dec = params.get("ShouldDecrementDesiredCapacity")
        if dec is None:
            raise _validation("1 validation error detected: Value null at "
                              "'shouldDecrementDesiredCapacity' failed to satisfy constraint: "
                              "Member must not be null")
        if dec.lower() not in ("true", "false"):
            raise _validation("Invalid value for ShouldDecrementDesiredCapacity: %s" % dec)
        g, ids = self._standby_params(rec, params)
        for iid in ids:
            if g["instances"][iid]["state"] != "InService":
                raise _validation("The instance %s is not in InService." % iid)
        dec = dec.lower() == "true"
        before = g["desired"]
        if dec and g["desired"] - len(ids) < g["min"]:
            raise _size_error(g, "To place into standby %d instances" % len(ids))
        if dec:
            g["desired"] -= len(ids)
        for iid in ids:
            self._set_lifecycle(g, g["instances"][iid], "EnteringStandby")
            self._each_group_target(g, iid, self._deregister)
            if not dec:
                self._asg_launch(g, "replacing %s, moved to Standby without decrementing" % iid)
        cause = ("At %%(at)s instance %%(iid)s was moved to standby in response to a user "
                 "request, %s." % ("shrinking the capacity from %d to %d" % (before, g["desired"])
                                   if dec else "keeping the capacity at %d" % before))
        return self._activities(g, ids, "Moving EC2 instance to Standby: %s", cause)

    def _q_ExitStandby(self, rec, params):
        g, ids = self._standby_params(rec, params)
        for iid in ids:
            if g["instances"][iid]["state"] != "Standby":
                raise _validation("The instance %s is not in Standby." % iid)
        if g["desired"] + len(ids) > g["max"]:
            raise _size_error(g, "To move %d instances out of standby" % len(ids))
        before = g["desired"]
        g["desired"] += len(ids)
        for iid in ids:
            self._set_lifecycle(g, g["instances"][iid], "Pending")
            self._each_group_target(g, iid, self._register)
        cause = ("At %%(at)s instance %%(iid)s was moved out of standby in response to a user "
                 "request, increasing the capacity from %d to %d." % (before, g["desired"]))
        return self._activities(g, ids, "Moving EC2 instance out of Standby: %s", cause)

    # -- HTTP control ------------------------------------------------------

    def _elb_asg_control(self, req):
        """Apply a POST /_double/elb-asg document; ValueError when bad
        (validated before anything changes where it can be)."""
        if not isinstance(req, dict):
            raise ValueError("not an object")
        unknown = set(req) - {"add_target_group", "add_autoscaling_group", "script", "deny",
                              "allow", "instance_down", "lifecycle", "reboot_downtime"}
        if unknown:
            raise ValueError("unknown keys %s" % sorted(unknown))

        def listify(v):
            return v if isinstance(v, list) else [v]
        scripts = listify(req.get("script", []))
        for s in scripts:
            if not isinstance(s, dict) or s.get("service") not in (ELB_SERVICE, ASG_SERVICE) \
                    or not isinstance(s.get("behaviours"), list):
                raise ValueError("script entries are {service, action, behaviours}")
            for b in s["behaviours"]:
                parse_query_behaviour(b)
        for k in ("deny", "allow"):
            if k in req and not isinstance(req[k], list):
                raise ValueError("%s must be a list" % k)
        rd = req.get("reboot_downtime", 0)
        if rd is not None and (isinstance(rd, bool) or not isinstance(rd, (int, float)) or rd < 0):
            raise ValueError("reboot_downtime must be seconds >= 0 or null")
        created_tg, created_g = {}, {}
        for kw in listify(req.get("add_target_group", [])):
            if not isinstance(kw, dict) or "name" not in kw:
                raise ValueError("add_target_group wants {name, ...}")
            try:
                created_tg[kw["name"]] = self.add_target_group(**kw)
            except TypeError as e:
                raise ValueError(str(e))
        for kw in listify(req.get("add_autoscaling_group", [])):
            if not isinstance(kw, dict) or "name" not in kw:
                raise ValueError("add_autoscaling_group wants {name, ...}")
            # Target groups may be named instead of given by ARN.
            kw = dict(kw)
            kw["target_groups"] = [a if a.startswith("arn:") else self.target_group_arn(a)
                                   for a in kw.get("target_groups", [])]
            try:
                created_g[kw["name"]] = self.add_autoscaling_group(**kw)
            except TypeError as e:
                raise ValueError(str(e))
        for s in scripts:
            self._script(s["service"], s.get("action"), s["behaviours"])
        if "deny" in req:
            self.deny(*req["deny"])
        if "allow" in req:
            self.allow(*req["allow"])
        for iid, down in (req.get("instance_down") or {}).items():
            self.set_instance_down(iid, bool(down))
        for iid, state in (req.get("lifecycle") or {}).items():
            self.set_lifecycle_state(iid, state)
        if "reboot_downtime" in req:
            with self._lock:
                self.reboot_downtime = rd
        return {"target_groups": created_tg, "groups": created_g}


class QueryHandlerMixin:
    """The ELB / Auto Scaling listener's request path; mixed into the
    double's handler, which provides _send, _read_body, _split,
    _query_authenticate(rec, path, query, body, service) -> reason|None."""

    def _query(self, path, query, body):
        d = self.server.double
        service = self.server.service
        rec = {"at": time.monotonic(), "t": d.now(), "service": service, "method": self.command,
               "path": path, "action": None, "instances": [], "params": {}, "status": None,
               "code": None, "behaviour": None, "auth_ok": False, "reject_reason": None,
               "access_key": None, "credential_kind": None, "request_id": str(uuid.uuid4())}
        params = self._ec2_params(query, body)
        rec["params"] = {k: v for k, v in params.items()
                         if not k.lower().startswith(("x-amz-", "signature", "awssecret"))}
        rec["action"] = params.get("Action")
        reason = self._query_authenticate(rec, path, query, body, service)
        if reason is not None:
            rec["reject_reason"] = reason
            st, code, msg = auth_error(reason, service, d.region, self.headers.get("X-Amz-Date"))
            return self._query_error(rec, QueryError(st, code, msg))
        rec["auth_ok"] = True
        b = d._next_query_behaviour(service, params.get("Action"))
        rec["behaviour"] = b
        err = d._query_misbehaviour(service, rec, params, b)
        if err is not None:
            return self._query_error(rec, err)
        kind, _, arg = b.partition(":")
        if kind == "http":
            rec["status"] = int(arg)
            d._finish_query(rec)
            return self._send(int(arg), "%s scripted\n" % arg, "text/plain")
        if kind in ("close", "hang"):
            d._finish_query(rec)
            if kind == "hang":
                d._stopping.wait(float(arg))
            self.close_connection = True
            return None
        try:
            xml = d._query_api(service, rec, params)
        except QueryError as e:
            return self._query_error(rec, e)
        rec["status"] = 200
        d._finish_query(rec)
        return self._send(200, xml, "text/xml", {"x-amzn-RequestId": rec["request_id"]})

    def _query_error(self, rec, e):
        d = self.server.double
        rec["status"], rec["code"] = e.status, e.code
        d._finish_query(rec)
        body = ("<?xml version=\"1.0\"?>\n<ErrorResponse xmlns=\"%s\">\n  <Error>\n"
                "    <Type>%s</Type>\n    <Code>%s</Code>\n    <Message>%s</Message>\n"
                "  </Error>\n  <RequestId>%s</RequestId>\n</ErrorResponse>\n"
                % (XMLNS[rec["service"]], "Receiver" if e.status >= 500 else "Sender",
                   xml_escape(e.code), xml_escape(e.message), rec["request_id"]))
        return self._send(e.status, body, "text/xml", {"x-amzn-RequestId": rec["request_id"]})
