#!/usr/bin/env python3
"""An AWS test double on 127.0.0.1: the EC2 Query API (RebootInstances,
SigV4-verified) and IMDSv2 on one server, speaking AWS's wire formats.

EC2, POST / (GET / with a query string also works, as on AWS):
  Every request's SigV4 signature is verified independently from the raw
  request (canonical request, string to sign, HMAC key chain, constant-time
  compare). Rejections carry EC2's error XML, status and x-amzn-RequestId:

    no Authorization header                     403 MissingAuthenticationToken
    Authorization not parseable / no X-Amz-Date 400 IncompleteSignature
    unknown access key                          401 AuthFailure
    scope region or service wrong               401 AuthFailure
    scope date != X-Amz-Date's date             403 SignatureDoesNotMatch
    signature wrong                             403 SignatureDoesNotMatch
    credential has a session token, request
      lacks X-Amz-Security-Token, does not
      sign it, or carries another token;
      or a token sent for long-term keys        401 AuthFailure
    role credentials past their Expiration      400 RequestExpired
    X-Amz-Date more than max_skew (default 900 s
      = AWS's documented 15 minutes) off the
      real wall clock                           400 RequestExpired

  Then the Query API: Action (400 MissingAction / InvalidAction), Version
  2016-11-15 (400 NoSuchVersion), InstanceId.N (400 MissingParameter,
  InvalidInstanceID.Malformed, InvalidInstanceID.NotFound), DryRun
  (400 InvalidParameterValue unless true/false). DryRun=true answers 412
  DryRunOperation when allowed, 403 UnauthorizedOperation when not; a real
  reboot answers 200 RebootInstancesResponse and calls on_reboot(instance_id)
  after the response has been sent (EC2 answers, then the instance reboots).

  Behaviours, one consumed per EC2 request AFTER authentication passed (a
  scripted error never hides a bad signature):
    ok                     answer as EC2 does (what an empty queue gives)
    throttle               503 RequestLimitExceeded
    unavailable            503 Unavailable
    internal               500 InternalError
    http:CODE              CODE with a plain-text body (a proxy in the way)
    error:CODE:STATUS      EC2 error XML with that Code and HTTP status
    hang:SECONDS           read the request, answer nothing, close
    close                  read the request, close without an answer
    garbage                200 with a body that is not XML

IMDSv2 under /latest/ (IMDSv1 never served):
  PUT /latest/api/token with X-aws-ec2-metadata-token-ttl-seconds: 1..21600
  answers a token (text/plain) and echoes the TTL header; missing or bad
  TTL 400; X-Forwarded-For on the PUT 403. GETs need
  X-aws-ec2-metadata-token with a live token, else 401. Tokens and role
  credentials expire on the double's clock (clock + advance()).
  meta-data/{instance-id, instance-type, ami-id, hostname, local-hostname,
  local-ipv4, public-ipv4 (404 if none), mac, placement/{region,
  availability-zone}, iam/info, iam/security-credentials/[ROLE]} (404 if
  no role) and dynamic/instance-identity/document. Directories list their
  entries. Behaviours, one per IMDS request: ok, down (close, no answer),
  http:CODE, hang:SECONDS.

  Role credentials: issued at start (role_ttl, default 6 h) and by
  rotate_role_credentials(ttl); each is accepted by EC2 until its own
  Expiration. With auto_rotate (default), IMDS issues fresh ones when the
  current ones have less than 5 minutes left, as the real IMDS does.

  A fleet on one machine: serve_imds(instance_id, "127.0.0.N") starts a
  metadata listener for that instance only (its IMDS paths, nothing else);
  the main URL answers for imds_instance. A token is good only at the
  listener that issued it, as each instance has its own metadata service.

Clocks: advance() moves the double's monotonic clock (IMDS tokens, role
credential expiry, the displayed Expiration/LastUpdated, which are real wall
time + remaining virtual time). The SigV4 X-Amz-Date window is checked
against the real wall clock (wall_clock), never the advanced one: a client
signing with the real time keeps passing after advance().

Python:  d = AwsDouble(credentials={"AKID...": ("secret", None)}).start()
         d.url; d.script_ec2("throttle"); d.set_allowed(False); d.advance(60)
         d.ec2_requests(); d.imds_requests(); d.reboots(); d.wait_for(pred, 5)
         d.on_reboot = lambda iid: ...; d.stop()
ELBv2 and Auto Scaling (aws_elb_asg.py, whose docstring is the reference):
  d.elb_url, d.autoscaling_url: their own listeners, SigV4 verified by the
  verifier below with service "elasticloadbalancing" / "autoscaling" in the
  scope. d.add_target_group(name, ...) -> ARN; d.add_autoscaling_group(name,
  instances=[..], target_groups=[arns], ...); target states initial ->
  healthy/unhealthy (real HTTP health checks) -> draining -> unused;
  lifecycle InService -> EnteringStandby -> Standby -> Pending -> InService;
  the group's ELB health check terminates unhealthy InService instances
  (d.asg_terminated). A RebootInstances of an instance that is a registered
  or draining target, or InService in a group, appends to d.violations
  (d.assert_no_violations()). d.timeline, d.timeline_lines();
  d.script_elb(..., action=), d.script_autoscaling(...), d.deny("svc:Action").

HTTP:    POST /_double/script {"ec2":[..], "ec2_default":b, "imds":[..],
         "imds_default":b, "allowed":bool, "advance":secs,
         "rotate_role_credentials":ttl}; POST /_double/reset;
         GET /_double/ec2, /_double/imds, /_double/reboots, /_double/state
         (elb_url, autoscaling_url among the state); POST /_double/elb-asg,
         GET /_double/elb-asg, /_double/timeline, /_double/violations,
         /_double/elb, /_double/autoscaling (see aws_elb_asg.py)
CLI:     aws_double.py --port N --access-key AK --secret-file F
         [--session-token-file F] --instance i-... [--role NAME]
         [--reboot-command 'CMD {instance}'] [--elb-port N]
         [--autoscaling-port N] [--elb-asg-json FILE] ...; prints
         "listening http://127.0.0.1:PORT", runs until SIGTERM/SIGINT.

Secrets (secret keys, session tokens, IMDS tokens) are never recorded,
logged or printed: records carry only whether they matched.

Python 3 standard library only. Every wait is bounded.
"""

import argparse
import base64
import datetime
import hashlib
import hmac
import http
import http.server
import json
import os
import re
import secrets
import shlex
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from served import ServedDouble, read_body  # noqa: E402
from aws_elb_asg import ElbAsgMixin, QueryHandlerMixin  # noqa: E402
import uuid
from xml.sax.saxutils import escape as xml_escape

EC2_VERSION = "2016-11-15"
EC2_XMLNS = "http://ec2.amazonaws.com/doc/%s/" % EC2_VERSION
DEFAULT_REGION = "us-east-1"
DEFAULT_INSTANCE = "i-0123456789abcdef0"
DEFAULT_ACCESS_KEY = "AKIADOUBLE0000000001"
DEFAULT_SECRET = "doubleSecretKey/0000000000000000000000000"
DEFAULT_ROLE_TTL = 21600
# AWS: "The request reached the service more than 15 minutes after the date
# stamp on the request ... or the date stamp is more than 15 minutes in the
# future" -> RequestExpired.
DEFAULT_MAX_SKEW = 900.0
# The real IMDS hands out new role credentials at least 5 minutes before
# the old ones expire.
AUTO_ROTATE_MARGIN = 300.0
IMDS_TTL_MIN, IMDS_TTL_MAX = 1, 21600

MAX_BODY = 1024 * 1024
MAX_HANG = 600.0
SOCKET_TIMEOUT = 5.0
MAX_IMDS_TOKENS = 10000

INSTANCE_ID_RE = re.compile(r"^i-[0-9a-f]{8}(?:[0-9a-f]{9})?$")
AMZ_DATE_FMT = "%Y%m%dT%H%M%SZ"

# EC2's own wording where known.
MSG_AUTH_FAILURE = "AWS was not able to validate the provided access credentials"
MSG_SIG_MISMATCH = ("The request signature we calculated does not match the signature you "
                    "provided. Check your AWS Secret Access Key and signing method. Consult "
                    "the service documentation for details.")
MSG_REQUEST_EXPIRED = "Request has expired."
MSG_MISSING_AUTH = ("The request must contain either a valid (registered) AWS access key ID "
                    "or X.509 certificate.")
MSG_DRY_RUN = "Request would have succeeded, but DryRun flag is set."
MSG_UNAUTHORIZED = "You are not authorized to perform this operation. Encoded authorization failure message: "

SCRIPTED_ERRORS = {
    "throttle": (503, "RequestLimitExceeded", "Request limit exceeded."),
    "unavailable": (503, "Unavailable", "The server is overloaded and can't handle the request."),
    "internal": (500, "InternalError", "An internal error has occurred."),
}

GARBAGE_BODY = (b"<html><head><title>502 Bad Gateway</title></head>"
                b"<body>upstream glitch: this is not EC2 XML\n")

_EC2_BEHAVIOUR_RE = re.compile(
    r"^(ok|throttle|unavailable|internal|close|garbage|"
    r"http:[1-5][0-9][0-9]|"
    r"error:[A-Za-z][A-Za-z0-9.]*:[1-5][0-9][0-9]|"
    r"hang:[0-9]+(\.[0-9]+)?)$")
_IMDS_BEHAVIOUR_RE = re.compile(r"^(ok|down|http:[1-5][0-9][0-9]|hang:[0-9]+(\.[0-9]+)?)$")

# Query parameters that could carry a secret: never recorded.
_SECRET_PARAMS = {"x-amz-security-token", "x-amz-signature", "securitytoken", "awssecretkey",
                  "signature", "x-amz-credential"}


def parse_ec2_behaviour(b):
    """(kind, arg) for an EC2 behaviour string, or ValueError."""
    if not isinstance(b, str) or not _EC2_BEHAVIOUR_RE.match(b):
        raise ValueError("bad EC2 behaviour %r" % (b,))
    kind, _, arg = b.partition(":")
    if kind == "http":
        code = int(arg)
        if code < 200:
            raise ValueError("bad behaviour %r: 1xx is not a final status" % b)
        return kind, code
    if kind == "error":
        code, _, status = arg.rpartition(":")
        if int(status) < 200:
            raise ValueError("bad behaviour %r: 1xx is not a final status" % b)
        return kind, (code, int(status))
    if kind == "hang":
        secs = float(arg)
        if secs > MAX_HANG:
            raise ValueError("bad behaviour %r: hang is capped at %gs" % (b, MAX_HANG))
        return kind, secs
    return kind, None


def parse_imds_behaviour(b):
    """(kind, arg) for an IMDS behaviour string, or ValueError."""
    if not isinstance(b, str) or not _IMDS_BEHAVIOUR_RE.match(b):
        raise ValueError("bad IMDS behaviour %r" % (b,))
    kind, _, arg = b.partition(":")
    if kind == "http":
        code = int(arg)
        if code < 200:
            raise ValueError("bad behaviour %r: 1xx is not a final status" % b)
        return kind, code
    if kind == "hang":
        secs = float(arg)
        if secs > MAX_HANG:
            raise ValueError("bad behaviour %r: hang is capped at %gs" % (b, MAX_HANG))
        return kind, secs
    return kind, None


def _fmt(b):
    kind, arg = b
    if arg is None:
        return kind
    if kind == "error":
        return "error:%s:%d" % arg
    return "%s:%s" % (kind, arg)


# ---------------------------------------------------------------- SigV4

def _hmac(key, msg):
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def sigv4_signing_key(secret, date, region, service):
    k = _hmac(("AWS4" + secret).encode("utf-8"), date)
    k = _hmac(k, region)
    k = _hmac(k, service)
    return _hmac(k, "aws4_request")


def _uri_encode(s, safe="-_.~"):
    return urllib.parse.quote(s, safe=safe)


def canonical_uri(path):
    # The agent only ever posts to "/". Other paths are normalised to one
    # level of RFC 3986 encoding, which is what curl 7.88 signs.
    if not path:
        return "/"
    return _uri_encode(urllib.parse.unquote(path), safe="/-_.~")


def canonical_query(query):
    if not query:
        return ""
    pairs = []
    for part in query.split("&"):
        if not part:
            continue
        k, _, v = part.partition("=")
        pairs.append((_uri_encode(urllib.parse.unquote_plus(k)),
                      _uri_encode(urllib.parse.unquote_plus(v))))
    pairs.sort()
    return "&".join("%s=%s" % kv for kv in pairs)


def _trimall(v):
    return " ".join(v.strip().split())


def parse_authorization(value):
    """Authorization: AWS4-HMAC-SHA256 Credential=AK/D/R/S/aws4_request,
    SignedHeaders=a;b, Signature=hex -> dict, or None when malformed."""
    if not value:
        return None
    algo, _, rest = value.strip().partition(" ")
    if algo != "AWS4-HMAC-SHA256":
        return None
    fields = {}
    for item in rest.split(","):
        item = item.strip()
        if not item:
            continue
        k, eq, v = item.partition("=")
        if not eq or k in fields:
            return None
        fields[k.strip()] = v.strip()
    if set(fields) != {"Credential", "SignedHeaders", "Signature"}:
        return None
    cred = fields["Credential"].split("/")
    if len(cred) != 5 or not all(cred):
        return None
    signed = fields["SignedHeaders"].split(";")
    if not all(signed) or signed != sorted(signed) or any(h != h.lower() for h in signed):
        return None
    if not re.match(r"^[0-9a-f]{64}$", fields["Signature"]):
        return None
    return {"access_key": cred[0], "date": cred[1], "region": cred[2], "service": cred[3],
            "terminator": cred[4], "signed_headers": signed, "signature": fields["Signature"]}


# ---------------------------------------------------------------- server

class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, addr, handler, double, imds_instance=None):
        self.double = double
        # Set on a per-instance metadata listener: it answers IMDS for that
        # instance only, as each instance's own 169.254.169.254 does.
        self.imds_instance = imds_instance
        super().__init__(addr, handler)


class _Reject(Exception):
    def __init__(self, status, code, message, reason):
        super().__init__(reason)
        self.status, self.code, self.message, self.reason = status, code, message, reason


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = SOCKET_TIMEOUT

    def version_string(self):
        return "AmazonEC2"

    def setup(self):
        super().setup()
        self.server.double._track(self.connection, True)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.double._track(self.connection, False)

    def log_message(self, fmt, *args):
        if self.server.double.verbose:
            sys.stderr.write("aws-double: %s\n" % (fmt % args))

    # -- plumbing ---------------------------------------------------------

    def _send(self, status, body, ctype, extra=None, server=None):
        if isinstance(body, str):
            body = body.encode("utf-8")
        # The Server header follows what answers: EC2 or the metadata service.
        self._server_name = server
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        try:
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            self.wfile.flush()
            return True
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            return False

    def send_response(self, code, message=None):
        self.log_request(code)
        self.send_response_only(code, message)
        self.send_header("Server", getattr(self, "_server_name", None) or self.version_string())
        self.send_header("Date", self.date_time_string())

    def _send_json(self, status, obj):
        self._send(status, json.dumps(obj, separators=(",", ":")), "application/json")

    def _read_body(self):
        """Body bytes, or None if it could not be read (the connection is closed)."""
        return read_body(self.rfile, self.headers, MAX_BODY)

    def _split(self):
        parts = urllib.parse.urlsplit(self.path)
        return parts.path, parts.query

    # -- dispatch ---------------------------------------------------------

    def do_GET(self):
        path, query = self._split()
        self._route_get(path, query)

    do_HEAD = do_GET

    def do_POST(self):
        path, query = self._split()
        body = self._body_or_close()
        if body is not None:
            self._route_post(path, query, body)

    def _body_or_close(self):
        """The request body, or None after answering 400 and closing."""
        body = self._read_body()
        if body is None:
            self.close_connection = True
            self._send(400, "bad request body\n", "text/plain", {"Connection": "close"})
        return body

    def _route_get(self, path, query):
        if self.server.imds_instance and not path.startswith("/latest"):
            self._send(404, "not found\n", "text/plain")
        elif path.startswith("/_double/"):
            self._control_get(path)
        elif path.startswith("/latest/") or path == "/latest":
            self._imds(path, None)
        elif path == "/" and query:
            self._ec2(path, query, b"")
        else:
            self._send(404, "not found\n", "text/plain")

    def _route_post(self, path, query, body):
        if self.server.imds_instance and not path.startswith("/latest/"):
            self._send(404, "not found\n", "text/plain")
        elif path.startswith("/_double/"):
            self._control_post(path, body)
        elif path == "/":
            self._ec2(path, query, body)
        elif path.startswith("/latest/"):
            self._imds(path, body)
        else:
            self._send(404, "not found\n", "text/plain")

    def do_PUT(self):
        path, _ = self._split()
        body = self._body_or_close()
        if body is None:
            return
        if path.startswith("/latest/"):
            self._imds(path, body)
        else:
            self._send(405, "method not allowed\n", "text/plain")

    def do_DELETE(self):
        self._send(405, "method not allowed\n", "text/plain")

    # -- control ----------------------------------------------------------

    def _control_get(self, path):
        d = self.server.double
        if path == "/_double/ec2":
            self._send_json(200, d.ec2_requests())
        elif path == "/_double/imds":
            self._send_json(200, d.imds_requests())
        elif path == "/_double/reboots":
            self._send_json(200, d.reboots())
        elif path == "/_double/state":
            self._send_json(200, d.state())
        elif path == "/_double/elb-asg":
            self._send_json(200, d.elb_asg_state())
        elif path == "/_double/timeline":
            self._send_json(200, d.events())
        elif path == "/_double/violations":
            with d._lock:
                self._send_json(200, list(d.violations))
        elif path == "/_double/elb":
            self._send_json(200, d.elb_requests())
        elif path == "/_double/autoscaling":
            self._send_json(200, d.autoscaling_requests())
        else:
            self._send(404, "not found\n", "text/plain")

    def _control_post(self, path, body):
        d = self.server.double
        if path == "/_double/reset":
            d.reset()
            self._send_json(200, {"ok": True})
            return
        if path == "/_double/elb-asg":
            try:
                created = d._elb_asg_control(json.loads(body.decode("utf-8") or "{}"))
            except (ValueError, KeyError, UnicodeDecodeError) as e:
                self._send_json(400, {"ok": False, "error": "bad_script", "detail": str(e)})
                return
            self._send_json(200, {"ok": True, **created, "state": d.elb_asg_state()})
            return
        if path != "/_double/script":
            self._send(404, "not found\n", "text/plain")
            return
        try:
            req = json.loads(body.decode("utf-8") or "{}")
            if not isinstance(req, dict):
                raise ValueError("not an object")
            unknown = set(req) - {"ec2", "ec2_default", "imds", "imds_default", "allowed",
                                  "advance", "rotate_role_credentials"}
            if unknown:
                raise ValueError("unknown keys %s" % sorted(unknown))
            ec2 = req.get("ec2", [])
            imds = req.get("imds", [])
            if not isinstance(ec2, list) or not isinstance(imds, list):
                raise ValueError("ec2 and imds must be lists")
            for b in ec2:
                parse_ec2_behaviour(b)
            for b in imds:
                parse_imds_behaviour(b)
            if req.get("ec2_default") is not None:
                parse_ec2_behaviour(req["ec2_default"])
            if req.get("imds_default") is not None:
                parse_imds_behaviour(req["imds_default"])
            if "allowed" in req and not isinstance(req["allowed"], bool):
                raise ValueError("allowed must be a boolean")
            adv = req.get("advance", 0)
            if isinstance(adv, bool) or not isinstance(adv, (int, float)) or adv < 0:
                raise ValueError("advance must be a number >= 0")
            rot = req.get("rotate_role_credentials")
            if rot is not None:
                if isinstance(rot, bool) or not isinstance(rot, (int, float)) or rot <= 0:
                    raise ValueError("rotate_role_credentials must be a TTL > 0")
                if d.role is None:
                    raise ValueError("no role configured")
        except (ValueError, UnicodeDecodeError) as e:
            self._send_json(400, {"ok": False, "error": "bad_script", "detail": str(e)})
            return
        d.script_ec2(*ec2)
        d.script_imds(*imds)
        if req.get("ec2_default") is not None:
            d.set_ec2_default(req["ec2_default"])
        if req.get("imds_default") is not None:
            d.set_imds_default(req["imds_default"])
        if "allowed" in req:
            d.set_allowed(req["allowed"])
        if adv:
            d.advance(adv)
        if rot is not None:
            d.rotate_role_credentials(rot)
        self._send_json(200, {"ok": True, **d.state()})

    # -- EC2 --------------------------------------------------------------

    def _ec2_send(self, rec, status, body, ctype="text/xml;charset=UTF-8"):
        d = self.server.double
        rec["status"] = status
        rec["answered"] = True
        d._finish_ec2(rec)
        return self._send(status, body, ctype, {"x-amzn-RequestId": rec["request_id"]},
                          server="AmazonEC2")

    def _ec2_error(self, rec, status, code, message):
        rec["code"] = code
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>%s</Code>'
                '<Message>%s</Message></Error></Errors><RequestID>%s</RequestID></Response>'
                % (xml_escape(code), xml_escape(message), rec["request_id"]))
        return self._ec2_send(rec, status, body)

    def _ec2(self, path, query, body):
        d = self.server.double
        rec = d._new_ec2_record(self.command, path)
        params = self._ec2_params(query, body)
        # Recorded for rejected requests too: what the client meant to do.
        rec["params"] = {k: v for k, v in params.items() if k.lower() not in _SECRET_PARAMS}
        rec["action"] = params.get("Action")
        rec["instance"] = params.get("InstanceId.1")
        dry = params.get("DryRun")
        rec["dry_run"] = dry.lower() == "true" if dry is not None else False
        try:
            self._authenticate(rec, path, query, body)
        except _Reject as r:
            rec["reject_reason"] = r.reason
            self._ec2_error(rec, r.status, r.code, r.message)
            return

        kind, arg = d._next_ec2_behaviour()
        rec["behaviour"] = _fmt((kind, arg))
        if kind != "ok":
            self._ec2_misbehave(rec, kind, arg)
            return
        self._ec2_api(rec, params)

    def _ec2_params(self, query, body):
        params = {}
        for k, v in urllib.parse.parse_qsl(query, keep_blank_values=True):
            params[k] = v
        ctype = (self.headers.get("Content-Type") or "").lower()
        if body and ctype.startswith("application/x-www-form-urlencoded"):
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                text = ""
            for k, v in urllib.parse.parse_qsl(text, keep_blank_values=True):
                params[k] = v
        return params

    def _authenticate(self, rec, path, query, body, service="ec2"):
        """Verify the request's SigV4 for service (the credential scope's
        service name); raises _Reject with EC2's error and a reason the
        other services map to their own errors."""
        d = self.server.double
        h = self.headers
        auth_value = h.get("Authorization")
        if auth_value is None:
            raise _Reject(403, "MissingAuthenticationToken", MSG_MISSING_AUTH, "no_auth")
        auth = parse_authorization(auth_value)
        if auth is None:
            raise _Reject(400, "IncompleteSignature",
                          "The request signature does not conform to AWS standards.", "malformed_auth")
        rec["access_key"] = auth["access_key"]
        rec["signed_headers"] = auth["signed_headers"]
        token_hdr = h.get("X-Amz-Security-Token")
        rec["had_token"] = token_hdr is not None
        rec["token_signed"] = "x-amz-security-token" in auth["signed_headers"]

        amz_date = h.get("X-Amz-Date")
        if amz_date is None:
            raise _Reject(400, "IncompleteSignature",
                          "Authorization header requires existence of either a 'X-Amz-Date' or a "
                          "'Date' header.", "no_date")
        try:
            when = datetime.datetime.strptime(amz_date.strip(), AMZ_DATE_FMT).replace(
                tzinfo=datetime.timezone.utc)
        except ValueError:
            raise _Reject(400, "IncompleteSignature",
                          "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"",
                          "bad_date")
        if "host" not in auth["signed_headers"]:
            raise _Reject(400, "IncompleteSignature",
                          "'Host' must be a 'SignedHeader' in the AWS Authorization.", "host_unsigned")

        cred = d._credential(auth["access_key"])
        if cred is None:
            raise _Reject(401, "AuthFailure", MSG_AUTH_FAILURE, "unknown_key")
        if auth["terminator"] != "aws4_request":
            raise _Reject(400, "IncompleteSignature",
                          "Credential should be scoped with a valid terminator: 'aws4_request'.",
                          "scope_terminator")
        if auth["region"] != d.region:
            raise _Reject(401, "AuthFailure", MSG_AUTH_FAILURE, "scope_region")
        if auth["service"] != service:
            raise _Reject(401, "AuthFailure", MSG_AUTH_FAILURE, "scope_service")
        if auth["date"] != amz_date.strip()[:8]:
            raise _Reject(403, "SignatureDoesNotMatch",
                          "Date in Credential scope does not match YYYYMMDD from ISO-8601 version "
                          "of date from HTTP.", "scope_date")

        # The canonical request, rebuilt from what arrived on the wire.
        canon_headers = []
        for name in auth["signed_headers"]:
            values = h.get_all(name)
            if values is None:
                raise _Reject(403, "SignatureDoesNotMatch", MSG_SIG_MISMATCH,
                              "signed_header_missing:%s" % name)
            canon_headers.append("%s:%s\n" % (name, ",".join(_trimall(v) for v in values)))
        canonical = "\n".join([
            self.command,
            canonical_uri(path),
            canonical_query(query),
            "".join(canon_headers),
            ";".join(auth["signed_headers"]),
            hashlib.sha256(body).hexdigest(),
        ])
        scope = "/".join([auth["date"], auth["region"], auth["service"], "aws4_request"])
        string_to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date.strip(), scope,
                                    hashlib.sha256(canonical.encode("utf-8")).hexdigest()])
        key = sigv4_signing_key(cred["secret"], auth["date"], auth["region"], auth["service"])
        expected = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
        rec["signature_ok"] = hmac.compare_digest(expected, auth["signature"])
        if not rec["signature_ok"]:
            raise _Reject(403, "SignatureDoesNotMatch", MSG_SIG_MISMATCH, "bad_signature")

        want = cred["token"]
        if want is None:
            if token_hdr is not None:
                rec["token_ok"] = False
                raise _Reject(401, "AuthFailure", MSG_AUTH_FAILURE, "token_unexpected")
        else:
            if token_hdr is None:
                rec["token_ok"] = False
                raise _Reject(401, "AuthFailure", MSG_AUTH_FAILURE, "token_missing")
            if not rec["token_signed"]:
                rec["token_ok"] = False
                raise _Reject(401, "AuthFailure", MSG_AUTH_FAILURE, "token_unsigned")
            if not hmac.compare_digest(token_hdr.strip().encode(), want.encode()):
                rec["token_ok"] = False
                raise _Reject(401, "AuthFailure", MSG_AUTH_FAILURE, "token_mismatch")
            rec["token_ok"] = True
        if cred["expires_at"] is not None and d.now() >= cred["expires_at"]:
            raise _Reject(400, "RequestExpired", MSG_REQUEST_EXPIRED, "credentials_expired")
        skew = abs(d._wall_clock() - when.timestamp())
        if skew > d.max_skew:
            raise _Reject(400, "RequestExpired", MSG_REQUEST_EXPIRED, "stale_date")
        rec["auth_ok"] = True
        rec["credential_kind"] = "role" if cred["role"] else "static"

    def _ec2_api(self, rec, params):
        d = self.server.double
        action = params.get("Action")
        if not action:
            return self._ec2_error(rec, 400, "MissingAction",
                                   "The request must contain the parameter Action")
        if action != "RebootInstances":
            return self._ec2_error(rec, 400, "InvalidAction",
                                   "The action %s is not valid for this web service." % action)
        version = params.get("Version")
        if not version:
            return self._ec2_error(rec, 400, "MissingParameter",
                                   "The request must contain the parameter Version")
        if version != EC2_VERSION:
            return self._ec2_error(rec, 400, "NoSuchVersion",
                                   "The requested version (%s) of service AmazonEC2 does not exist"
                                   % version)
        ids = []
        n = 1
        while "InstanceId.%d" % n in params:
            ids.append(params["InstanceId.%d" % n])
            n += 1
        stray = [k for k in params
                 if k.startswith("InstanceId") and not re.match(r"^InstanceId\.[1-9][0-9]*$", k)]
        extra = [k for k in params if re.match(r"^InstanceId\.[0-9]+$", k) and k not in
                 ["InstanceId.%d" % i for i in range(1, n)]]
        if stray or extra:
            return self._ec2_error(rec, 400, "UnknownParameter",
                                   "The parameter %s is not recognized" % (stray + extra)[0])
        rec["instances"] = ids
        rec["instance"] = ids[0] if ids else None
        dry = params.get("DryRun", "false")
        if dry.lower() not in ("true", "false"):
            return self._ec2_error(rec, 400, "InvalidParameterValue",
                                   "Value (%s) for parameter DryRun is invalid. Expected: 'true' "
                                   "or 'false'." % dry)
        rec["dry_run"] = dry.lower() == "true"
        if not ids:
            return self._ec2_error(rec, 400, "MissingParameter",
                                   "The request must contain the parameter InstanceId")
        for iid in ids:
            if not INSTANCE_ID_RE.match(iid):
                return self._ec2_error(rec, 400, "InvalidInstanceID.Malformed",
                                       'Invalid id: "%s" (expecting "i-...")' % iid)
        missing = [iid for iid in ids if iid not in d.instances]
        if missing:
            if len(missing) == 1:
                msg = "The instance ID '%s' does not exist" % missing[0]
            else:
                msg = "The instance IDs '%s' do not exist" % ", ".join(missing)
            return self._ec2_error(rec, 400, "InvalidInstanceID.NotFound", msg)
        if not d.allowed:
            blob = base64.urlsafe_b64encode(secrets.token_bytes(96)).decode().rstrip("=")
            return self._ec2_error(rec, 403, "UnauthorizedOperation", MSG_UNAUTHORIZED + blob)
        if rec["dry_run"]:
            return self._ec2_error(rec, 412, "DryRunOperation", MSG_DRY_RUN)
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n<RebootInstancesResponse xmlns="%s">\n'
                '    <requestId>%s</requestId>\n    <return>true</return>\n'
                '</RebootInstancesResponse>' % (EC2_XMLNS, rec["request_id"]))
        rec["code"] = None
        rec["rebooted"] = list(ids)
        d._elb_asg_reboot(ids)
        d._record_reboots(ids)
        self._ec2_send(rec, 200, body)
        d._after_reboot(ids)

    def _ec2_misbehave(self, rec, kind, arg):
        d = self.server.double
        if kind in SCRIPTED_ERRORS:
            status, code, msg = SCRIPTED_ERRORS[kind]
            self._ec2_error(rec, status, code, msg)
        elif kind == "error":
            code, status = arg
            self._ec2_error(rec, status, code, "Scripted error %s." % code)
        elif kind == "http":
            rec["code"] = None
            self._ec2_send(rec, arg, "%d %s\n" % (arg, _phrase(arg)), "text/plain")
        elif kind == "garbage":
            rec["code"] = None
            self._ec2_send(rec, 200, GARBAGE_BODY, "text/html")
        elif kind == "close":
            rec["answered"] = False
            d._finish_ec2(rec)
            self.close_connection = True
        elif kind == "hang":
            rec["answered"] = False
            d._finish_ec2(rec)
            d._stopping.wait(arg)
            self.close_connection = True
        else:
            raise AssertionError(kind)

    # -- IMDS -------------------------------------------------------------

    def _imds_send(self, rec, status, body, ctype="text/plain", extra=None):
        rec["status"] = status
        rec["answered"] = True
        self.server.double._finish_imds(rec)
        return self._send(status, body, ctype, extra, server="EC2ws")

    def _imds_error(self, rec, status):
        phrase = _phrase(status)
        body = ('<?xml version="1.0" encoding="iso-8859-1"?>\n'
                '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN"\n'
                '\t"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">\n'
                '<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">\n'
                ' <head>\n  <title>%d - %s</title>\n </head>\n <body>\n  <h1>%d - %s</h1>\n'
                ' </body>\n</html>\n' % (status, phrase, status, phrase))
        return self._imds_send(rec, status, body, "text/html")

    def _imds(self, path, body):
        d = self.server.double
        rec = d._new_imds_record(self.command, path)
        iid = self.server.imds_instance or d.imds_instance
        rec["instance"] = iid
        kind, arg = d._next_imds_behaviour()
        rec["behaviour"] = _fmt((kind, arg))
        if kind == "down":
            rec["answered"] = False
            d._finish_imds(rec)
            self.close_connection = True
            return
        if kind == "hang":
            rec["answered"] = False
            d._finish_imds(rec)
            d._stopping.wait(arg)
            self.close_connection = True
            return
        if kind == "http":
            return self._imds_error(rec, arg)

        if path == "/latest/api/token":
            if self.command != "PUT":
                return self._imds_error(rec, 405)
            if self.headers.get("X-Forwarded-For") is not None:
                rec["reject_reason"] = "x_forwarded_for"
                return self._imds_error(rec, 403)
            ttl_s = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
            try:
                ttl = int(ttl_s.strip()) if ttl_s is not None and ttl_s.strip().isdigit() else None
            except ValueError:
                ttl = None
            if ttl is None or not IMDS_TTL_MIN <= ttl <= IMDS_TTL_MAX:
                rec["reject_reason"] = "missing_ttl" if ttl_s is None else "bad_ttl"
                return self._imds_error(rec, 400)
            token = d._issue_imds_token(ttl, iid)
            rec["ttl"] = ttl
            rec["token_issued"] = True
            return self._imds_send(rec, 200, token, "text/plain",
                                   {"X-aws-ec2-metadata-token-ttl-seconds": str(ttl)})
        if self.command == "PUT":
            return self._imds_error(rec, 405)
        if self.command not in ("GET", "HEAD"):
            return self._imds_error(rec, 405)

        token = self.headers.get("X-aws-ec2-metadata-token")
        rec["had_token"] = token is not None
        rec["token_ok"] = token is not None and d._imds_token_valid(token.strip(), iid)
        if not rec["token_ok"]:
            rec["reject_reason"] = "no_token" if token is None else "bad_or_expired_token"
            return self._imds_error(rec, 401)
        answer = d._imds_lookup(path, iid)
        if answer is None:
            return self._imds_error(rec, 404)
        text, ctype = answer
        return self._imds_send(rec, 200, text, ctype)


class _QueryHandler(QueryHandlerMixin, _Handler):
    """The ELBv2 and Auto Scaling listeners (server.service says which):
    the Query API at /, the control API under /_double/, nothing else."""

    def version_string(self):
        return "Server"

    def _route_get(self, path, query):
        if path.startswith("/_double/"):
            self._control_get(path)
        elif path == "/" and query:
            self._query(path, query, b"")
        else:
            self._send(404, "not found\n", "text/plain")

    def _route_post(self, path, query, body):
        if path.startswith("/_double/"):
            self._control_post(path, body)
        elif path == "/":
            self._query(path, query, body)
        else:
            self._send(404, "not found\n", "text/plain")

    def do_PUT(self):
        self._send(405, "method not allowed\n", "text/plain")

    def _query_authenticate(self, rec, path, query, body, service):
        """None when the SigV4 verifies for service, else the reason."""
        scratch = self.server.double._new_ec2_record(self.command, path)
        try:
            self._authenticate(scratch, path, query, body, service)
            return None
        except _Reject as r:
            return r.reason
        finally:
            rec["access_key"] = scratch["access_key"]
            rec["credential_kind"] = scratch["credential_kind"]


def _phrase(code):
    try:
        return http.HTTPStatus(code).phrase
    except ValueError:
        return "Status"


def _iso(ts):
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _default_role_factory(serial):
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    ak = "ASIA" + "".join(secrets.choice(alphabet) for _ in range(16))
    secret = base64.b64encode(secrets.token_bytes(30)).decode()
    token = base64.b64encode(b"double-role-token/%d/" % serial + secrets.token_bytes(150)).decode()
    return ak, secret, token


class AwsDouble(ElbAsgMixin, ServedDouble):
    """The double. Thread-safe; every public method may be called from any
    thread while the server runs."""

    _server_class = _Server
    _handler_class = _Handler
    _thread_name = "aws-double"

    def __init__(self, region=DEFAULT_REGION, credentials=None, instances=None, allowed=True,
                 port=0, role=None, role_ttl=DEFAULT_ROLE_TTL, role_factory=None,
                 auto_rotate=True, imds_instance=None, max_skew=DEFAULT_MAX_SKEW,
                 clock=time.monotonic, wall_clock=time.time, verbose=False,
                 ec2_log=None, on_reboot=None, elb_port=0, autoscaling_port=0):
        if credentials is None:
            credentials = {DEFAULT_ACCESS_KEY: (DEFAULT_SECRET, None)}
        if instances is None:
            instances = {DEFAULT_INSTANCE: {}}
        if not instances:
            raise ValueError("at least one instance is needed")
        self.region = region
        self.allowed = bool(allowed)
        self.role = role
        self.role_ttl = role_ttl
        self.auto_rotate = auto_rotate
        self.max_skew = float(max_skew)
        self.verbose = verbose
        self.ec2_log = ec2_log
        self.on_reboot = on_reboot
        self._port = port
        self._clock = clock
        self._wall_clock = wall_clock
        self._offset = 0.0
        self._role_factory = role_factory or _default_role_factory
        self._role_serial = 0

        self.instances = {}
        for n, (iid, info) in enumerate(instances.items()):
            if not INSTANCE_ID_RE.match(iid):
                raise ValueError("malformed instance id %r" % iid)
            info = dict(info or {})
            info.setdefault("availability_zone", region + "a")
            info.setdefault("local_ipv4", "127.0.0.1")
            info.setdefault("public_ipv4", None)
            info.setdefault("instance_type", "t3.micro")
            info.setdefault("ami_id", "ami-0abcdef1234567890")
            info.setdefault("mac", "0e:00:00:00:00:%02x" % (n + 1))
            self.instances[iid] = info
        self.imds_instance = imds_instance or next(iter(self.instances))
        if self.imds_instance not in self.instances:
            raise ValueError("imds_instance %r is not among the instances" % self.imds_instance)

        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._creds = {}
        for ak, (secret, token) in credentials.items():
            if not ak or not secret:
                raise ValueError("access key and secret must not be empty")
            self._creds[ak] = {"secret": secret, "token": token, "expires_at": None,
                               "issued_at": None, "role": False}
        self._role_current = None
        self._ec2_queue, self._ec2_default = [], ("ok", None)
        self._imds_queue, self._imds_default = [], ("ok", None)
        self._ec2_records, self._imds_records, self._reboots = [], [], []
        self._imds_tokens = {}
        self._conns = set()
        self._imds_listeners = []
        self._stopping = threading.Event()
        self._server = None
        self._thread = None
        self.url = None
        self.port = None
        if role is not None:
            self.rotate_role_credentials(role_ttl)
        self._init_elb_asg(elb_port, autoscaling_port)

    def __repr__(self):
        # Never a secret.
        return "<AwsDouble %s>" % (self.url or "not started")

    # -- life cycle -------------------------------------------------------


    @property
    def endpoint_url(self):
        """What `[aws] endpoint_url` should be."""
        return self.url + "/" if self.url else None

    @property
    def imds_url(self):
        """What `[aws] imds_url` should be (the real one is http://169.254.169.254)."""
        return self.url

    def serve_imds(self, instance_id, addr="127.0.0.1", port=0):
        """Start a metadata listener on addr:port that answers IMDS for
        instance_id only (tokens included): a fleet on one machine, each
        host with its own metadata service. Returns its URL, what that
        host's `[aws] imds_url` should be. Stopped with the double."""
        if instance_id not in self.instances:
            raise ValueError("unknown instance %r" % instance_id)
        if not addr.startswith("127."):
            raise ValueError("loopback addresses only")
        srv = _Server((addr, port), _Handler, self, imds_instance=instance_id)
        t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1},
                             name="aws-double-imds", daemon=True)
        t.start()
        with self._lock:
            self._imds_listeners.append((srv, t))
        return "http://%s:%d" % (addr, srv.server_address[1])

    def start(self):
        """Serve EC2 + IMDS on url, ELBv2 on elb_url, Auto Scaling on
        autoscaling_url; start the target/group poller."""
        super().start()
        self._start_elb_asg(_Server, _QueryHandler)
        return self

    def stop(self):
        with self._lock:
            listeners, self._imds_listeners = self._imds_listeners, []
        self._stopping.set()
        self._stop_elb_asg()
        for srv, t in listeners:
            srv.shutdown()
            srv.server_close()
            t.join(timeout=2.0)
        super().stop()

    # -- clocks -----------------------------------------------------------

    def now(self):
        """The double's monotonic clock: clock() + everything advance()d."""
        with self._lock:
            return self._clock() + self._offset

    def advance(self, seconds):
        if seconds < 0:
            raise ValueError("cannot go back in time")
        with self._cond:
            self._offset += float(seconds)
            self._cond.notify_all()

    def _display(self, virtual_ts):
        # Real wall time + how far the virtual event is from the virtual now.
        return self._wall_clock() + (virtual_ts - self.now())

    # -- scripting --------------------------------------------------------

    def script_ec2(self, *behaviours):
        parsed = [parse_ec2_behaviour(b) for b in behaviours]
        with self._lock:
            self._ec2_queue.extend(parsed)

    def set_ec2_default(self, behaviour):
        parsed = parse_ec2_behaviour(behaviour)
        with self._lock:
            self._ec2_default = parsed

    def script_imds(self, *behaviours):
        parsed = [parse_imds_behaviour(b) for b in behaviours]
        with self._lock:
            self._imds_queue.extend(parsed)

    def set_imds_default(self, behaviour):
        parsed = parse_imds_behaviour(behaviour)
        with self._lock:
            self._imds_default = parsed

    def set_allowed(self, allowed):
        with self._lock:
            self.allowed = bool(allowed)

    def add_credentials(self, access_key, secret, token=None):
        with self._lock:
            self._creds[access_key] = {"secret": secret, "token": token, "expires_at": None,
                                       "issued_at": None, "role": False}

    def rotate_role_credentials(self, ttl_seconds=DEFAULT_ROLE_TTL):
        """Issue new role credentials valid for ttl_seconds of the double's
        clock; the previous ones stay valid until their own Expiration.
        Returns the new access key id."""
        if self.role is None:
            raise RuntimeError("no role configured")
        if ttl_seconds <= 0:
            raise ValueError("ttl must be > 0")
        with self._lock:
            self._role_serial += 1
            serial = self._role_serial
        ak, secret, token = self._role_factory(serial)
        now = self.now()
        with self._cond:
            self._creds[ak] = {"secret": secret, "token": token, "expires_at": now + ttl_seconds,
                               "issued_at": now, "role": True}
            self._role_current = ak
            self._cond.notify_all()
        return ak

    def role_credentials(self):
        """(access_key, secret, token, expires_at_wall) of the current role
        credentials, for tests that sign by themselves; None without a role."""
        with self._lock:
            ak = self._role_current
            c = self._creds.get(ak) if ak else None
        if c is None:
            return None
        return ak, c["secret"], c["token"], self._display(c["expires_at"])

    def reset(self):
        with self._cond:
            self._ec2_queue.clear()
            self._imds_queue.clear()
            self._ec2_default = ("ok", None)
            self._imds_default = ("ok", None)
            self._ec2_records.clear()
            self._imds_records.clear()
            self._reboots.clear()
            self._elb_asg_reset()
            self._cond.notify_all()

    def state(self):
        with self._lock:
            role_ak = self._role_current
            return {"region": self.region, "allowed": self.allowed,
                    "ec2_queue": [_fmt(b) for b in self._ec2_queue],
                    "ec2_default": _fmt(self._ec2_default),
                    "imds_queue": [_fmt(b) for b in self._imds_queue],
                    "imds_default": _fmt(self._imds_default),
                    "ec2_requests": len(self._ec2_records),
                    "imds_requests": len(self._imds_records),
                    "reboots": list(self._reboots),
                    "advanced": self._offset,
                    "instances": sorted(self.instances),
                    "imds_instance": self.imds_instance,
                    "role": self.role, "role_access_key": role_ak,
                    "elb_url": self.elb_url, "autoscaling_url": self.autoscaling_url}

    # -- what was received ------------------------------------------------

    def ec2_requests(self):
        with self._lock:
            return json.loads(json.dumps(self._ec2_records))

    def imds_requests(self):
        with self._lock:
            return json.loads(json.dumps(self._imds_records))

    def reboots(self):
        with self._lock:
            return list(self._reboots)

    def wait_for(self, predicate, timeout=5.0, source="ec2"):
        """Block until predicate(list) is true for ec2_requests() (source
        "ec2"), imds_requests() ("imds") or reboots() ("reboots"); return
        that list. TimeoutError after timeout seconds (real time)."""
        getters = {"ec2": lambda: self._ec2_records, "imds": lambda: self._imds_records,
                   "reboots": lambda: self._reboots}
        if source not in getters:
            raise ValueError("source must be ec2, imds or reboots")
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                snap = json.loads(json.dumps(getters[source]()))
                if predicate(snap):
                    return snap
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("aws double: condition not met within %.1fs (%d %s)"
                                       % (timeout, len(snap), source))
                self._cond.wait(min(left, 0.5))

    # -- internals used by the handler ------------------------------------


    def _next_ec2_behaviour(self):
        with self._lock:
            return self._ec2_queue.pop(0) if self._ec2_queue else self._ec2_default

    def _next_imds_behaviour(self):
        with self._lock:
            return self._imds_queue.pop(0) if self._imds_queue else self._imds_default

    def _credential(self, ak):
        with self._lock:
            c = self._creds.get(ak)
            return dict(c) if c else None

    def _new_ec2_record(self, method, path):
        return {"at": time.monotonic(), "wall": time.time(), "method": method, "path": path,
                "action": None, "params": {}, "dry_run": None, "instance": None,
                "instances": [], "signature_ok": False, "auth_ok": False, "reject_reason": None,
                "access_key": None, "credential_kind": None, "had_token": False,
                "token_signed": False, "token_ok": None, "signed_headers": [],
                "behaviour": None, "status": None, "code": None,
                "request_id": str(uuid.uuid4()), "answered": False, "rebooted": []}

    def _finish_ec2(self, rec):
        line = json.dumps(rec, separators=(",", ":")) + "\n"
        with self._cond:
            self._ec2_records.append(rec)
            if self.ec2_log:
                _append(self.ec2_log, line)
            self._cond.notify_all()

    def _record_reboots(self, ids):
        with self._cond:
            self._reboots.extend(ids)
            self._cond.notify_all()

    def _after_reboot(self, ids):
        hook = self.on_reboot
        if hook is None:
            return
        for iid in ids:
            try:
                hook(iid)
            except Exception as e:  # a broken hook must not kill the server
                sys.stderr.write("aws-double: on_reboot(%s) raised %r\n" % (iid, e))

    def _new_imds_record(self, method, path):
        return {"at": time.monotonic(), "wall": time.time(), "method": method, "path": path,
                "had_token": False, "token_ok": None, "token_issued": False, "ttl": None,
                "behaviour": None, "status": None, "reject_reason": None, "answered": False}

    def _finish_imds(self, rec):
        with self._cond:
            self._imds_records.append(rec)
            self._cond.notify_all()

    def _issue_imds_token(self, ttl, iid):
        token = base64.b64encode(secrets.token_bytes(42)).decode()
        now = self.now()
        with self._lock:
            if len(self._imds_tokens) >= MAX_IMDS_TOKENS:
                self._imds_tokens = {t: e for t, e in self._imds_tokens.items() if e[0] > now}
            self._imds_tokens[token] = (now + ttl, iid)
        return token

    def _imds_token_valid(self, token, iid):
        """A token is good only at the metadata service that issued it."""
        now = self.now()
        with self._lock:
            exp = self._imds_tokens.get(token)
        return exp is not None and now < exp[0] and exp[1] == iid

    def _role_json(self):
        with self._lock:
            ak = self._role_current
            c = dict(self._creds[ak])
        if self.auto_rotate and c["expires_at"] - self.now() < AUTO_ROTATE_MARGIN:
            ak = self.rotate_role_credentials(self.role_ttl)
            with self._lock:
                c = dict(self._creds[ak])
        doc = {"Code": "Success",
               "LastUpdated": _iso(self._display(c["issued_at"])),
               "Type": "AWS-HMAC",
               "AccessKeyId": ak,
               "SecretAccessKey": c["secret"],
               "Token": c["token"],
               "Expiration": _iso(self._display(c["expires_at"]))}
        # The real IMDS pretty-prints this document.
        return json.dumps(doc, indent=2)

    def _imds_lookup(self, path, iid):
        """(text, content type) for a metadata path of instance iid, None for 404."""
        inst = self.instances[iid]
        az = inst["availability_zone"]
        md = {
            "ami-id": inst["ami_id"],
            "hostname": "ip-%s.ec2.internal" % inst["local_ipv4"].replace(".", "-"),
            "instance-id": iid,
            "instance-type": inst["instance_type"],
            "local-hostname": "ip-%s.ec2.internal" % inst["local_ipv4"].replace(".", "-"),
            "local-ipv4": inst["local_ipv4"],
            "mac": inst["mac"],
            "placement/availability-zone": az,
            "placement/region": self.region,
        }
        if inst["public_ipv4"]:
            md["public-ipv4"] = inst["public_ipv4"]
        if self.role is not None:
            md["iam/info"] = None
            md["iam/security-credentials/" + self.role] = None

        rel = path[len("/latest/"):] if path.startswith("/latest/") else ""
        if rel in ("", "/"):
            return "dynamic\nmeta-data\nuser-data", "text/plain"
        if rel == "dynamic/instance-identity/document":
            doc = {"accountId": "123456789012", "architecture": "x86_64",
                   "availabilityZone": az, "imageId": inst["ami_id"], "instanceId": iid,
                   "instanceType": inst["instance_type"], "pendingTime": _iso(self._wall_clock() - 3600),
                   "privateIp": inst["local_ipv4"], "region": self.region, "version": "2017-09-30"}
            return json.dumps(doc, indent=2), "text/plain"
        if rel in ("dynamic", "dynamic/"):
            return "instance-identity/", "text/plain"
        if rel in ("dynamic/instance-identity", "dynamic/instance-identity/"):
            return "document", "text/plain"
        if not rel.startswith("meta-data"):
            return None
        key = rel[len("meta-data"):].lstrip("/")
        if key.endswith("/"):
            key_dir = key
        else:
            key_dir = key + "/" if key else ""
        if key and key.rstrip("/") in md:
            key = key.rstrip("/")
            if key == "iam/info":
                arn = "arn:aws:iam::123456789012:instance-profile/%s" % self.role
                return json.dumps({"Code": "Success", "LastUpdated": _iso(self._wall_clock()),
                                   "InstanceProfileArn": arn,
                                   "InstanceProfileId": "AIPADOUBLE000000000001"},
                                  indent=2), "text/plain"
            if key.startswith("iam/security-credentials/"):
                return self._role_json(), "text/plain"
            return md[key], "text/plain"
        # A directory: list the next level.
        entries = []
        for k in md:
            if k.startswith(key_dir):
                rest = k[len(key_dir):]
                head, slash, _ = rest.partition("/")
                entry = head + ("/" if slash else "")
                if entry and entry not in entries:
                    entries.append(entry)
        if not entries:
            return None
        return "\n".join(sorted(entries)), "text/plain"


def _append(path, line):
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)


def _read_secret(path):
    with open(path, encoding="utf-8") as f:
        return f.read().strip()


class RebootCommand:
    """Runs `CMD {instance}` asynchronously per rebooted instance (the fleet
    demo "reboots" a simulated host with it)."""

    def __init__(self, template):
        self.template = template

    def __call__(self, instance_id):
        cmd = self.template.replace("{instance}", shlex.quote(instance_id))
        try:
            p = subprocess.Popen(["/bin/sh", "-c", cmd], stdin=subprocess.DEVNULL,
                                 start_new_session=True)
        except OSError as e:
            sys.stderr.write("aws-double: reboot command failed to start: %s\n" % e)
            return
        threading.Thread(target=p.wait, name="reboot-reaper", daemon=True).start()


def main(argv=None):
    p = argparse.ArgumentParser(description="EC2 + IMDSv2 test double (loopback only)")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--region", default=DEFAULT_REGION)
    p.add_argument("--access-key", default=None, help="a static access key id EC2 accepts")
    p.add_argument("--secret-file", default=None, help="its secret key, read from this file")
    p.add_argument("--session-token-file", default=None,
                   help="its session token (then requests must carry and sign it)")
    p.add_argument("--instance", action="append", default=None,
                   help="an instance id that exists (repeatable); the first is the one IMDS describes")
    p.add_argument("--az", default=None, help="availability zone of the first instance")
    p.add_argument("--local-ipv4", default=None)
    p.add_argument("--public-ipv4", default=None)
    p.add_argument("--role", default=None, help="instance role: IMDS serves its credentials")
    p.add_argument("--role-ttl", type=int, default=DEFAULT_ROLE_TTL)
    p.add_argument("--deny", action="store_true", help="answer UnauthorizedOperation")
    p.add_argument("--max-skew", type=float, default=DEFAULT_MAX_SKEW)
    p.add_argument("--reboot-command", default=None,
                   help="run asynchronously per successful reboot; {instance} is replaced")
    p.add_argument("--ec2-log", default=None, help="append every EC2 request record as a JSON line")
    p.add_argument("--script-ec2", action="append", default=[])
    p.add_argument("--script-imds", action="append", default=[])
    p.add_argument("--elb-port", type=int, default=0)
    p.add_argument("--autoscaling-port", type=int, default=0)
    p.add_argument("--elb-asg-json", default=None,
                   help="a POST /_double/elb-asg document applied at start (target groups, "
                        "groups, scripts)")
    p.add_argument("--verbose", action="store_true")
    a = p.parse_args(argv)

    creds = {}
    if a.access_key:
        if not a.secret_file:
            p.error("--access-key needs --secret-file")
        token = _read_secret(a.session_token_file) if a.session_token_file else None
        creds[a.access_key] = (_read_secret(a.secret_file), token or None)
    elif a.secret_file or a.session_token_file:
        p.error("--secret-file/--session-token-file need --access-key")
    instances = {}
    for n, iid in enumerate(a.instance or [DEFAULT_INSTANCE]):
        info = {}
        if n == 0:
            if a.az:
                info["availability_zone"] = a.az
            if a.local_ipv4:
                info["local_ipv4"] = a.local_ipv4
            if a.public_ipv4:
                info["public_ipv4"] = a.public_ipv4
        instances[iid] = info
    try:
        d = AwsDouble(region=a.region, credentials=creds, instances=instances,
                      allowed=not a.deny, port=a.port, role=a.role, role_ttl=a.role_ttl,
                      max_skew=a.max_skew, verbose=a.verbose, ec2_log=a.ec2_log,
                      elb_port=a.elb_port, autoscaling_port=a.autoscaling_port,
                      on_reboot=RebootCommand(a.reboot_command) if a.reboot_command else None)
        d.script_ec2(*a.script_ec2)
        d.script_imds(*a.script_imds)
        if a.elb_asg_json:
            with open(a.elb_asg_json, encoding="utf-8") as f:
                d._elb_asg_control(json.load(f))
    except (ValueError, KeyError, OSError) as e:
        p.error(str(e))

    return d.serve_until_signal()


if __name__ == "__main__":
    sys.exit(main())
