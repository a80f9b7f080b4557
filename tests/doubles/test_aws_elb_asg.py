#!/usr/bin/env python3
"""Self-test of the AWS double's Elastic Load Balancing v2 and Auto Scaling
endpoints (aws_elb_asg.py): SigV4 per service (signed by the independent
signer of test_aws_double.py and by curl), the Query API's answers and
errors, the target state machine against real HTTP health checks, the
Auto Scaling lifecycle and its ELB health check, the reboot violation, the
timeline and the control API. One line per case; exit 1 if any fails.
Standard library only; every wait bounded."""

import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import traceback
import urllib.parse
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from aws_double import AwsDouble  # noqa: E402
from test_aws_double import sign_like_curl, reboot_body, request  # noqa: E402

REGION = "us-east-1"
IID, IID2, IID3 = "i-0123456789abcdef0", "i-0fedcba9876543210", "i-0aaaaaaaaaaaaaaa1"
AK = "AKIATESTSTATIC000001"
SECRET = "testSecret/StaticKey+0000000000000000000"
ELB = "elasticloadbalancing"
ASG = "autoscaling"
NS = {ELB: "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/",
      ASG: "http://autoscaling.amazonaws.com/doc/2011-01-01/"}
VERSION = {ELB: "2015-12-01", ASG: "2011-01-01"}
UUID_RE = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
CURL = shutil.which("curl")


class Fail(AssertionError):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def port_of(url):
    return urllib.parse.urlsplit(url).port


def call(d, service, action, params=None, sign_service=None, region=REGION, ak=AK,
         secret=SECRET, version=None, at=None):
    """(status, headers, body) of a signed Query API POST to service's listener
    (at=: another listener's URL)."""
    url = at or (d.elb_url if service == ELB else d.autoscaling_url)
    fields = [("Action", action), ("Version", version or VERSION[service])]
    fields += list((params or {}).items())
    body = urllib.parse.urlencode(fields)
    port = port_of(url)
    h = sign_like_curl("POST", "127.0.0.1:%d" % port, "/", body, ak, secret, region=region,
                       service=sign_service or service)

    class U:
        pass
    u = U()
    u.port = port
    return request(u, "POST", "/", body, h)


def ok_xml(resp, service, action):
    st, hdrs, body = resp
    check(st == 200, "%s: status %d %r" % (action, st, body[:400]))
    root = ET.fromstring(body)
    check(root.tag == "{%s}%sResponse" % (NS[service], action), root.tag)
    rid = root.find("{%s}ResponseMetadata/{%s}RequestId" % (NS[service], NS[service]))
    check(rid is not None and re.match(UUID_RE, rid.text), "RequestId")
    check(hdrs.get("x-amzn-requestid") == rid.text, "x-amzn-RequestId header")
    result = root.find("{%s}%sResult" % (NS[service], action))
    check(result is not None, "no %sResult" % action)
    return result


def err(resp, status, code, service=ELB):
    st, hdrs, body = resp
    check(st == status, "status %d, want %d (%r)" % (st, status, body[:400]))
    root = ET.fromstring(body)
    n = NS[service]
    check(root.tag == "{%s}ErrorResponse" % n, root.tag)
    got = root.find("{%s}Error/{%s}Code" % (n, n)).text
    typ = root.find("{%s}Error/{%s}Type" % (n, n)).text
    msg = root.find("{%s}Error/{%s}Message" % (n, n)).text
    rid = root.find("{%s}RequestId" % n).text
    check(got == code, "code %s, want %s (%s)" % (got, code, msg))
    check(typ == ("Receiver" if status >= 500 else "Sender"), typ)
    check(re.match(UUID_RE, rid) and hdrs.get("x-amzn-requestid") == rid, "request id")
    return msg


def find_all(elem, path, service=ELB):
    return elem.findall("/".join("{%s}%s" % (NS[service], p) for p in path.split("/")))


def text(elem, path, service=ELB):
    e = elem.find("/".join("{%s}%s" % (NS[service], p) for p in path.split("/")))
    return None if e is None else e.text


def health(d, arn, iid=None, port=None):
    """[(id, port, state, reason, description)] from DescribeTargetHealth."""
    p = {"TargetGroupArn": arn}
    if iid:
        p["Targets.member.1.Id"] = iid
        if port:
            p["Targets.member.1.Port"] = str(port)
    r = ok_xml(call(d, ELB, "DescribeTargetHealth", p), ELB, "DescribeTargetHealth")
    out = []
    for m in find_all(r, "TargetHealthDescriptions/member"):
        out.append((text(m, "Target/Id"), int(text(m, "Target/Port")),
                    text(m, "TargetHealth/State"), text(m, "TargetHealth/Reason"),
                    text(m, "TargetHealth/Description")))
    return out


def asg_instance(d, iid):
    r = ok_xml(call(d, ASG, "DescribeAutoScalingInstances", {"InstanceIds.member.1": iid}),
               ASG, "DescribeAutoScalingInstances")
    ms = find_all(r, "AutoScalingInstances/member", ASG)
    if not ms:
        return None
    return text(ms[0], "LifecycleState", ASG), text(ms[0], "HealthStatus", ASG)


def standby(d, group, iid, decrement="true", action="EnterStandby"):
    p = {"AutoScalingGroupName": group, "InstanceIds.member.1": iid}
    if decrement is not None and action == "EnterStandby":
        p["ShouldDecrementDesiredCapacity"] = decrement
    return call(d, ASG, action, p)


def new_double(**kw):
    return AwsDouble(region=REGION, credentials={AK: (SECRET, None)},
                     instances={IID: {}, IID2: {}, IID3: {}}, role="monkeyd-web", **kw).start()


class HealthServer:
    """A tiny host answering ALB health checks: 200, 503 or hanging."""

    def __init__(self):
        self.mode = "200"
        self.hits = []
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.hits.append(self.path)
                if outer.mode == "hang":
                    time.sleep(0.6)
                    return
                code = int(outer.mode)
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass
        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.srv.daemon_threads = True
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, kwargs={"poll_interval": 0.1},
                         daemon=True).start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


# --------------------------------------------------------------------- cases

def case_sigv4_per_service(d):
    arn = d.add_target_group("web")
    ok_xml(call(d, ELB, "DescribeTargetGroups"), ELB, "DescribeTargetGroups")
    ok_xml(call(d, ASG, "DescribeAutoScalingGroups"), ASG, "DescribeAutoScalingGroups")
    # Signed for EC2 (or Auto Scaling), sent to the ELB endpoint: refused.
    msg = err(call(d, ELB, "DescribeTargetGroups", sign_service="ec2"), 403,
              "SignatureDoesNotMatch")
    check("'elasticloadbalancing'" in msg, msg)
    err(call(d, ELB, "DescribeTargetGroups", sign_service=ASG), 403, "SignatureDoesNotMatch")
    err(call(d, ASG, "DescribeAutoScalingGroups", sign_service=ELB), 403,
        "SignatureDoesNotMatch", ASG)
    check(d.elb_requests()[-1]["reject_reason"] == "scope_service", d.elb_requests()[-1])
    err(call(d, ELB, "DescribeTargetGroups", region="eu-west-1"), 403, "SignatureDoesNotMatch")
    check(d.elb_requests()[-1]["reject_reason"] == "scope_region", d.elb_requests()[-1])
    err(call(d, ELB, "DescribeTargetGroups", secret="wrong" + SECRET), 403,
        "SignatureDoesNotMatch")
    err(call(d, ELB, "DescribeTargetGroups", ak="AKIAUNKNOWN000000000"), 403,
        "InvalidClientTokenId")
    # Signed for ELB, sent to EC2: EC2 refuses it as EC2 does.
    st, _, body = call(d, ELB, "DescribeTargetGroups", at=d.url + "/")
    check(st == 401 and b"<Code>AuthFailure</Code>" in body, (st, body))
    # Unsigned and malformed.
    p = port_of(d.elb_url)

    class U:
        port = p
    err(request(U, "POST", "/", "Action=DescribeTargetGroups&Version=2015-12-01",
                {"Content-Type": "application/x-www-form-urlencoded"}), 403,
        "MissingAuthenticationToken")
    h = sign_like_curl("POST", "127.0.0.1:%d" % p, "/", "Action=X", AK, SECRET, service=ELB)
    h["Authorization"] = h["Authorization"].replace("SignedHeaders=", "Signed=")
    err(request(U, "POST", "/", "Action=X", h), 400, "IncompleteSignature")
    # A scripted throttle is not consumed by a bad signature.
    d.script_elb("throttle")
    err(call(d, ELB, "DescribeTargetGroups", sign_service="ec2"), 403, "SignatureDoesNotMatch")
    err(call(d, ELB, "DescribeTargetGroups"), 400, "Throttling")
    detail = "ec2-signed at ELB 403; region 403; unknown key InvalidClientTokenId"
    if CURL:
        out = subprocess.run([CURL, "-sS", "--max-time", "3", "--aws-sigv4",
                              "aws:amz:us-east-1:elasticloadbalancing", "--user",
                              "%s:%s" % (AK, SECRET), "-d",
                              "Action=DescribeTargetHealth&Version=2015-12-01&TargetGroupArn="
                              + urllib.parse.quote(arn, safe=""), d.elb_url],
                             capture_output=True, timeout=8)
        check(b"<DescribeTargetHealthResponse" in out.stdout, out.stdout + out.stderr)
        detail += "; curl --aws-sigv4 ...:elasticloadbalancing 200"
    return detail


def case_query_errors(d):
    arn = d.add_target_group("web")
    err(call(d, ELB, "DescribeLoadBalancerz"), 400, "InvalidAction")
    msg = err(call(d, ELB, "DescribeTargetHealth", {"TargetGroupArn": arn},
                   version="2012-06-01"), 400, "InvalidAction")
    check(msg == "Could not find operation DescribeTargetHealth for version 2012-06-01", msg)
    err(call(d, ASG, "EnterStandby", version="2015-12-01"), 400, "InvalidAction", ASG)
    err(call(d, ELB, "DescribeTargetHealth"), 400, "ValidationError")
    err(call(d, ELB, "DescribeTargetHealth", {"TargetGroupArn": "arn:nonsense"}), 400,
        "ValidationError")
    gone = arn[:-16] + "0123456789abcdef"
    err(call(d, ELB, "RegisterTargets", {"TargetGroupArn": gone, "Targets.member.1.Id": IID}),
        400, "TargetGroupNotFound")
    err(call(d, ELB, "RegisterTargets", {"TargetGroupArn": arn}), 400, "ValidationError")
    msg = err(call(d, ELB, "RegisterTargets", {"TargetGroupArn": arn,
                                               "Targets.member.1.Id": "i-0bbbbbbbbbbbbbbbb"}),
              400, "InvalidTarget")
    check("i-0bbbbbbbbbbbbbbbb" in msg, msg)
    err(call(d, ELB, "DeregisterTargets", {"TargetGroupArn": arn, "Targets.member.1.Id": "web1"}),
        400, "InvalidTarget")
    err(call(d, ELB, "RegisterTargets", {"TargetGroupArn": arn, "Targets.member.1.Id": IID,
                                         "Targets.member.1.Port": "70000"}), 400,
        "ValidationError")
    # Permissions, with AWS's message shape.
    d.deny("elasticloadbalancing:DeregisterTargets")
    msg = err(call(d, ELB, "DeregisterTargets", {"TargetGroupArn": arn,
                                                 "Targets.member.1.Id": IID}), 403, "AccessDenied")
    check(re.match(r"^User: arn:aws:iam::123456789012:user/\S+ is not authorized to perform: "
                   r"elasticloadbalancing:DeregisterTargets on resource: %s because no "
                   r"identity-based policy allows the elasticloadbalancing:DeregisterTargets "
                   r"action$" % re.escape(arn), msg), msg)
    ok_xml(call(d, ELB, "RegisterTargets", {"TargetGroupArn": arn, "Targets.member.1.Id": IID}),
           ELB, "RegisterTargets")
    d.allow()
    ok_xml(call(d, ELB, "DeregisterTargets", {"TargetGroupArn": arn, "Targets.member.1.Id": IID}),
           ELB, "DeregisterTargets")
    # Scripted, per action first, then for the service.
    d.script_elb("internal", "unavailable", "access_denied", "not_found", "error:Busy:429",
                 "http:502")
    d.script_elb("throttle", action="DescribeTargetHealth")
    dth = {"TargetGroupArn": arn}
    err(call(d, ELB, "DescribeTargetHealth", dth), 400, "Throttling")
    err(call(d, ELB, "DescribeTargetHealth", dth), 500, "InternalFailure")
    err(call(d, ELB, "DescribeTargetHealth", dth), 503, "ServiceUnavailable")
    err(call(d, ELB, "DescribeTargetHealth", dth), 403, "AccessDenied")
    err(call(d, ELB, "DescribeTargetHealth", dth), 400, "TargetGroupNotFound")
    err(call(d, ELB, "DescribeTargetHealth", dth), 429, "Busy")
    st, _, body = call(d, ELB, "DescribeTargetHealth", dth)
    check(st == 502 and b"<" not in body, (st, body))
    ok_xml(call(d, ELB, "DescribeTargetHealth", dth), ELB, "DescribeTargetHealth")
    d.script_autoscaling("throttle", "not_found")
    err(call(d, ASG, "DescribeAutoScalingGroups"), 400, "Throttling", ASG)
    err(call(d, ASG, "DescribeAutoScalingGroups"), 400, "ValidationError", ASG)
    codes = [r["code"] for r in d.elb_requests()]
    check(codes.count("Throttling") == 1 and codes[-1] is None, codes)
    return "InvalidAction (action, version), ValidationError, TargetGroupNotFound, InvalidTarget, " \
        "AccessDenied, scripted 400/500/503/403/429/502"


def case_targets_no_url(d):
    arn = d.add_target_group("web", deregistration_delay=30, interval=0.3)
    check(health(d, arn, IID) == [(IID, 80, "unused", "Target.NotRegistered",
                                    "Target is not registered to the target group")],
          health(d, arn, IID))
    t0 = time.monotonic()
    ok_xml(call(d, ELB, "RegisterTargets", {"TargetGroupArn": arn, "Targets.member.1.Id": IID}),
           ELB, "RegisterTargets")
    check(health(d, arn)[0][2:4] == ("initial", "Elb.RegistrationInProgress"), health(d, arn))
    d.wait_target_state(arn, IID, "healthy", 3)
    took = time.monotonic() - t0
    check(0.5 <= took <= 1.5, "healthy after %.2fs, want ~0.6 (interval*threshold)" % took)
    check(health(d, arn) == [(IID, 80, "healthy", None, None)], health(d, arn))
    ok_xml(call(d, ELB, "DeregisterTargets", {"TargetGroupArn": arn, "Targets.member.1.Id": IID}),
           ELB, "DeregisterTargets")
    check(health(d, arn) == [(IID, 80, "draining", "Target.DeregistrationInProgress",
                              "Target deregistration is in progress")], health(d, arn))
    time.sleep(0.3)
    check(health(d, arn)[0][2] == "draining", "drained before the delay")
    d.advance(30)   # the deregistration delay passes on the double's clock
    d.wait_target_state(arn, IID, "unused", 2)
    check(health(d, arn) == [], health(d, arn))
    check(health(d, arn, IID)[0][2:4] == ("unused", "Target.NotRegistered"), "gone")
    states = [(e["state"], e["reason"]) for e in d.events() if e["kind"] == "target"]
    check(states == [("initial", "Elb.RegistrationInProgress"),
                     ("initial", "Elb.InitialHealthChecking"), ("healthy", None),
                     ("draining", "Target.DeregistrationInProgress"),
                     ("unused", "Target.NotRegistered")], states)
    # Two ports of one instance are two targets.
    call(d, ELB, "RegisterTargets", {"TargetGroupArn": arn, "Targets.member.1.Id": IID2,
                                     "Targets.member.1.Port": "8080", "Targets.member.2.Id": IID2})
    check(sorted(p for _, p, *_ in health(d, arn)) == [80, 8080], health(d, arn))
    return "unused -> initial(RegistrationInProgress, InitialHealthChecking) -> healthy in " \
        "%.2fs -> draining -> unused after advance(30)" % took


def case_health_checks(d):
    hs = HealthServer()
    try:
        arn = d.add_target_group("api", interval=0.2, deregistration_delay=0.5,
                                 health_check_url="http://127.0.0.1:%d/health/{id}" % hs.port)
        d.register_target(arn, IID)
        d.wait_target_state(arn, IID, "healthy", 3)
        check(hs.hits and hs.hits[0] == "/health/" + IID, hs.hits[:2])
        hs.mode = "503"
        d.wait_target_state(arn, IID, "unhealthy", 3)
        check(health(d, arn, IID)[0][3:] == ("Target.ResponseCodeMismatch",
                                             "Health checks failed with these codes: [503]"),
              health(d, arn, IID))
        hs.mode = "200"
        d.wait_target_state(arn, IID, "healthy", 3)
        hs.mode = "hang"
        d.wait_target_state(arn, IID, "unhealthy", 4)
        check(health(d, arn, IID)[0][3] == "Target.Timeout", health(d, arn, IID))
        hs.mode = "200"
        d.wait_target_state(arn, IID, "healthy", 4)
        # The host reboots: its checks fail although the server still answers.
        d.set_instance_down(IID, True)
        d.wait_target_state(arn, IID, "unhealthy", 3)
        check(health(d, arn, IID)[0][3] == "Target.FailedHealthChecks", health(d, arn, IID))
        d.set_instance_down(IID, False)
        d.wait_target_state(arn, IID, "healthy", 3)
        hs.close()
        hs = None
        d.wait_target_state(arn, IID, "unhealthy", 3)
        check(health(d, arn, IID)[0][3] == "Target.FailedHealthChecks", "refused")
        # Draining: no more checks; gone after the delay.
        d.deregister_target(arn, IID)
        d.wait_target_state(arn, IID, "unused", 3)
    finally:
        if hs:
            hs.close()
    return "200 healthy; 503 ResponseCodeMismatch [503]; hang Timeout; down and refused " \
        "FailedHealthChecks; back healthy each time"


def asg_setup(d, **kw):
    arn = d.add_target_group("web", interval=0.2, deregistration_delay=kw.pop("delay", 0.6))
    args = dict(instances=[IID, IID2], target_groups=[arn], health_check_grace=0.0,
                min_size=1, launch_delay=0.3)
    args.update(kw)
    d.add_autoscaling_group("fleet", **args)
    d.wait_target_state(arn, IID, "healthy", 3)
    d.wait_target_state(arn, IID2, "healthy", 3)
    return arn


def case_standby_cycle(d):
    arn = asg_setup(d)
    check(asg_instance(d, IID) == ("InService", "HEALTHY"), asg_instance(d, IID))
    check(asg_instance(d, "i-0cccccccccccccccc") is None, "unknown instance listed")
    err(standby(d, "fleet", IID, decrement=None), 400, "ValidationError", ASG)
    err(standby(d, "nope", IID), 400, "ValidationError", ASG)
    r = ok_xml(standby(d, "fleet", IID), ASG, "EnterStandby")
    acts = find_all(r, "Activities/member", ASG)
    check(len(acts) == 1, "activities")
    a = acts[0]
    check(re.match(UUID_RE, text(a, "ActivityId", ASG)) and
          text(a, "Description", ASG) == "Moving EC2 instance to Standby: " + IID and
          text(a, "StatusCode", ASG) == "InProgress" and
          "shrinking the capacity from 2 to 1" in text(a, "Cause", ASG), ET.tostring(a))
    check(asg_instance(d, IID)[0] == "EnteringStandby", asg_instance(d, IID))
    check(health(d, arn, IID)[0][2] == "draining", health(d, arn, IID))
    check(d.group("fleet")["desired"] == 1, d.group("fleet"))
    msg = err(standby(d, "fleet", IID), 400, "ValidationError", ASG)
    check(msg == "The instance %s is not in InService." % IID, msg)
    t0 = time.monotonic()
    d.wait_lifecycle(IID, "Standby", 3)
    check(time.monotonic() - t0 >= 0.4, "Standby before the drain ended")
    check(health(d, arn, IID)[0][2] == "unused", "still registered in Standby")
    # min_size 1 and desired 1: no more standby with decrement.
    err(standby(d, "fleet", IID2), 400, "ValidationError", ASG)
    msg = err(standby(d, "fleet", IID2, action="ExitStandby"), 400, "ValidationError", ASG)
    check(msg == "The instance %s is not in Standby." % IID2, msg)
    r = ok_xml(standby(d, "fleet", IID, action="ExitStandby"), ASG, "ExitStandby")
    check("Moving EC2 instance out of Standby: " + IID in ET.tostring(r).decode(), "exit act")
    check(asg_instance(d, IID)[0] == "Pending", asg_instance(d, IID))
    check(health(d, arn, IID)[0][2] == "initial", health(d, arn, IID))
    d.wait_lifecycle(IID, "InService", 3)
    d.wait_target_state(arn, IID, "healthy", 3)
    g = ok_xml(call(d, ASG, "DescribeAutoScalingGroups",
                    {"AutoScalingGroupNames.member.1": "fleet"}), ASG, "DescribeAutoScalingGroups")
    check(text(g, "AutoScalingGroups/member/DesiredCapacity", ASG) == "2", "desired back")
    check(text(g, "AutoScalingGroups/member/TargetGroupARNs/member", ASG) == arn, "tg arn")
    check(d.asg_terminated == [] and d.asg_launched == [], (d.asg_terminated, d.asg_launched))
    life = [e["state"] for e in d.events() if e["kind"] == "lifecycle" and e["instance"] == IID]
    check(life == ["InService", "EnteringStandby", "Standby", "Pending", "InService"], life)
    return "InService -> EnteringStandby (draining) -> Standby (drained) -> Pending -> " \
        "InService; wrong-state ValidationErrors; desired 2 -> 1 -> 2"


def case_standby_no_decrement(d):
    asg_setup(d)
    r = ok_xml(standby(d, "fleet", IID, decrement="false"), ASG, "EnterStandby")
    check("keeping the capacity at 2" in ET.tostring(r).decode(), ET.tostring(r))
    check(d.group("fleet")["desired"] == 2, d.group("fleet"))
    check(len(d.asg_launched) == 1, d.asg_launched)
    new = d.asg_launched[0]["instance"]
    check(re.match(r"^i-[0-9a-f]{17}$", new), new)
    d.wait_lifecycle(new, "InService", 3)
    d.wait_lifecycle(IID, "Standby", 3)
    check(d.asg_terminated == [], d.asg_terminated)
    return "desired stays 2; replacement %s launched -> InService" % new


def case_asg_terminates_unhealthy(d):
    arn = asg_setup(d, instances=[IID, IID2, IID3])
    # Someone else's standby, and a lifecycle hook: both left alone.
    ok_xml(standby(d, "fleet", IID2), ASG, "EnterStandby")
    d.wait_lifecycle(IID2, "Standby", 3)
    d.set_instance_down(IID2, True)
    d.set_lifecycle_state(IID3, "Pending:Wait")
    d.deregister_target(arn, IID3)
    # A rebooting InService instance: its checks fail, the group kills it.
    d.set_instance_down(IID, True)
    d.wait_until(lambda: d.asg_terminated, 4)
    check(d.events()[-1]["t"] - d.events()[0]["t"] < 5, "took too long")
    term = d.asg_terminated
    check([t["instance"] for t in term] == [IID], term)
    check("ELB system health check failure" in term[0]["cause"], term[0])
    check(len(d.asg_launched) == 1, d.asg_launched)
    d.wait_until(lambda: d.lifecycle_state(IID) is None, 3)
    check(d.lifecycle_state(IID2)[1] == "Standby" and d.lifecycle_state(IID3)[1] ==
          "Pending:Wait", (d.lifecycle_state(IID2), d.lifecycle_state(IID3)))
    life = [e["state"] for e in d.events() if e["kind"] == "lifecycle" and e["instance"] == IID]
    check(life == ["InService", "Terminating", "Terminated"], life)
    return "down InService -> unhealthy -> Terminating -> Terminated + replacement; Standby " \
        "and Pending:Wait untouched"


def case_reboot_violation(d):
    arn = asg_setup(d)

    def reboot(iid):
        body = reboot_body(iid)
        h = sign_like_curl("POST", "127.0.0.1:%d" % d.port, "/", body, AK, SECRET)
        return request(d, "POST", "/", body, h)
    d.assert_no_violations()
    check(reboot(IID)[0] == 200, "reboot")
    v = list(d.violations)
    check(len(v) == 2 and "healthy" in v[0] and "target group web" in v[0] and
          "InService in Auto Scaling group fleet" in v[1], v)
    try:
        d.assert_no_violations()
        raise Fail("assert_no_violations passed")
    except AssertionError as e:
        check("2 violation" in str(e), e)
    d.reset()
    # The right way: standby, drained, then the reboot is fine.
    ok_xml(standby(d, "fleet", IID2), ASG, "EnterStandby")
    check(reboot(IID2)[0] == 200, "reboot")
    check(len(d.violations) == 1 and "draining" in d.violations[0], d.violations)
    d.reset()
    d.wait_lifecycle(IID2, "Standby", 3)
    d.reboot_downtime = 0.5
    check(reboot(IID2)[0] == 200, "reboot")
    d.assert_no_violations()
    check(d.state()["reboots"] == [IID2], "reboot recorded")
    ev = [e["kind"] for e in d.events()]
    check("reboot" in ev and "down" in ev, ev)
    d.wait_until(lambda: any(e["kind"] == "down" and not e["down"] for e in d.events()), 3)
    check(d.asg_terminated == [], d.asg_terminated)
    return "reboot while healthy+InService -> 2 violations; while draining -> 1; in Standby " \
        "after the drain -> none"


def case_timeline_lines(d):
    asg_setup(d, delay=0.3)
    ok_xml(standby(d, "fleet", IID), ASG, "EnterStandby")
    d.wait_lifecycle(IID, "Standby", 3)
    ok_xml(standby(d, "fleet", IID, action="ExitStandby"), ASG, "ExitStandby")
    d.wait_lifecycle(IID, "InService", 3)
    arn = d.target_group_arn("web")
    d.wait_target_state(arn, IID, "healthy", 3)
    lines = d.timeline_lines()
    want = [r"autoscaling EnterStandby -> 200 " + IID, r"group fleet %s EnteringStandby" % IID,
            r"target web %s:80 draining" % IID, r"target web %s:80 unused" % IID,
            r"group fleet %s Standby" % IID, r"autoscaling ExitStandby -> 200",
            r"group fleet %s Pending" % IID, r"target web %s:80 initial" % IID,
            r"group fleet %s InService" % IID, r"target web %s:80 healthy" % IID]
    pos = 0
    for w in want:
        while pos < len(lines) and w not in lines[pos]:
            pos += 1
        check(pos < len(lines), "timeline lacks %r after its predecessors:\n%s"
              % (w, "\n".join(lines)))
    check(all(re.match(r"^\+ *[0-9]+\.[0-9]{3}s ", ln) for ln in lines), lines[:3])
    return "%d lines, standby cycle in order" % len(lines)


def case_control_http(d):
    doc = {"add_target_group": {"name": "web", "interval": 0.2, "deregistration_delay": 0.3},
           "add_autoscaling_group": {"name": "fleet", "instances": [IID],
                                     "target_groups": ["web"]},
           "script": [{"service": ELB, "action": "DeregisterTargets",
                       "behaviours": ["throttle"]}],
           "deny": ["autoscaling:EnterStandby"], "reboot_downtime": 1}
    st, _, body = request(d, "POST", "/_double/elb-asg", json.dumps(doc))
    r = json.loads(body)
    check(st == 200 and r["ok"] and r["target_groups"]["web"].startswith(
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/"), r)
    arn = r["target_groups"]["web"]
    check(r["state"]["groups"]["fleet"]["target_groups"] == [arn], r["state"])
    err(call(d, ELB, "DeregisterTargets", {"TargetGroupArn": arn, "Targets.member.1.Id": IID}),
        400, "Throttling")
    msg = err(standby(d, "fleet", IID), 403, "AccessDenied", ASG)
    check("autoscaling:EnterStandby on resource: arn:aws:autoscaling:us-east-1:123456789012:"
          "autoScalingGroup:" in msg and "autoScalingGroupName/fleet" in msg, msg)
    for bad in ({"nonsense": 1}, {"script": [{"service": "s3", "behaviours": []}]},
                {"add_target_group": {"name": "x", "colour": 1}},
                {"lifecycle": {IID: "Sleeping"}}, [1]):
        st, _, body = request(d, "POST", "/_double/elb-asg", json.dumps(bad))
        check(st == 400 and json.loads(body)["error"] == "bad_script", (bad, body))
    st, _, body = request(d, "POST", "/_double/elb-asg",
                          json.dumps({"allow": [], "lifecycle": {IID: "Standby"},
                                      "instance_down": {IID: True}}))
    check(st == 200, body)
    check(d.lifecycle_state(IID)[1] == "Standby", d.lifecycle_state(IID))
    tl = json.loads(request(d, "GET", "/_double/timeline")[2])
    check(any(e["kind"] == "down" for e in tl), tl)
    check(json.loads(request(d, "GET", "/_double/violations")[2]) == [], "violations")
    check(len(json.loads(request(d, "GET", "/_double/elb")[2])) == 1, "elb records")
    s = json.loads(request(d, "GET", "/_double/state")[2])
    check(s["elb_url"] == d.elb_url and s["autoscaling_url"] == d.autoscaling_url, s)
    # The control API answers on the ELB listener too.

    class U:
        port = port_of(d.elb_url)
    check(request(U, "GET", "/_double/elb-asg")[0] == 200, "control on elb listener")
    return "add tg+group, script, deny, lifecycle, down over HTTP; bad documents 400"


# --------------------------------------------------------------------- runner

CASES = [case_sigv4_per_service, case_query_errors, case_targets_no_url, case_health_checks,
         case_standby_cycle, case_standby_no_decrement, case_asg_terminates_unhealthy,
         case_reboot_violation, case_timeline_lines, case_control_http]


def main():
    only = sys.argv[1:]
    t_start = time.monotonic()
    failed = total = 0
    for case in CASES:
        if only and case.__name__[5:] not in only:
            continue
        total += 1
        d = new_double()
        t0 = time.monotonic()
        try:
            detail = case(d)
            print("ok   %-24s %s (%.2fs)" % (case.__name__[5:], detail, time.monotonic() - t0))
        except Exception as e:
            failed += 1
            print("FAIL %-24s %s" % (case.__name__[5:], e if isinstance(e, Fail) else repr(e)))
            if not isinstance(e, Fail):
                traceback.print_exc()
        finally:
            d.stop()
        sys.stdout.flush()
    print("%d passed, %d failed (%.1fs)" % (total - failed, failed, time.monotonic() - t_start))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
