#!/usr/bin/env python3
"""Self-test of aws_double.py: SigV4 verification against the real curl
binary (--aws-sigv4, what libcurl's CURLOPT_AWS_SIGV4 does) and against an
independent minimal signer written here the way curl signs; the Query API
answers; scripted failures; IMDSv2 token semantics; role credentials and
their rotation; the HTTP control API; the CLI with --reboot-command.
One line per case; exit 1 if any case fails. Standard library only; every
wait bounded."""

import datetime
import hashlib
import hmac
import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from aws_double import AwsDouble  # noqa: E402

REGION = "us-east-1"
IID = "i-0123456789abcdef0"
IID2 = "i-0fedcba9876543210"
AK = "AKIATESTSTATIC000001"
SECRET = "testSecret/StaticKey+0000000000000000000"
TMP_AK = "ASIATESTSESSION00001"
TMP_SECRET = "testSecret/SessionKey+000000000000000000"
TMP_TOKEN = "IQoJb3JpZ2luX2VjEDoaCXVzLWVhc3QtMSJHMEUCIQD/selftest/sessiontoken=="
ROLE = "monkeyd-web"
CURL = shutil.which("curl")

UUID_RE = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
ISO_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


class Fail(AssertionError):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def reboot_body(iid=IID, dry=False, action="RebootInstances", version="2016-11-15"):
    body = "Action=%s&Version=%s&InstanceId.1=%s" % (action, version, iid)
    if dry:
        body += "&DryRun=true"
    return body


# ------------------------------------------------------ the independent signer

def sign_like_curl(method, host, path, body, access_key, secret, region="us-east-1",
                   service="ec2", when=None, token=None, sign_token=True, query=""):
    """Headers for a SigV4 request signed as curl 7.88 does: host;x-amz-date
    plus x-amz-security-token when sent and signed. Deliberately written
    apart from the double's verifier."""
    when = when or datetime.datetime.now(datetime.timezone.utc)
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    hdrs = {"host": host, "x-amz-date": amz_date}
    if token is not None and sign_token:
        hdrs["x-amz-security-token"] = token
    names = sorted(hdrs)
    # Query pairs sorted (what AWS wants; curl 7.88 does not sort them).
    cq = "&".join(sorted(query.split("&"))) if query else ""
    creq = "%s\n%s\n%s\n%s\n%s\n%s" % (
        method, path, cq, "".join("%s:%s\n" % (n, hdrs[n]) for n in names), ";".join(names),
        hashlib.sha256(body.encode()).hexdigest())
    scope = "%s/%s/%s/aws4_request" % (day, region, service)
    sts = "AWS4-HMAC-SHA256\n%s\n%s\n%s" % (amz_date, scope, hashlib.sha256(creq.encode()).hexdigest())
    k = ("AWS4" + secret).encode()
    for part in (day, region, service, "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
    out = {"X-Amz-Date": amz_date,
           "Authorization": "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s"
                            % (access_key, scope, ";".join(names), sig),
           "Content-Type": "application/x-www-form-urlencoded"}
    if token is not None:
        out["X-Amz-Security-Token"] = token
    return out


def request(d, method, path, body=b"", headers=None, timeout=3.0):
    """(status, {lower header: value}, body bytes)."""
    c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=timeout)
    try:
        if isinstance(body, str):
            body = body.encode()
        c.request(method, path, body=body if body or method in ("POST", "PUT") else None,
                  headers=headers or {})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def ec2_py(d, body, access_key=AK, secret=SECRET, send_body=None, **kw):
    h = sign_like_curl("POST", "127.0.0.1:%d" % d.port, "/", body, access_key, secret, **kw)
    return request(d, "POST", "/", send_body if send_body is not None else body, h)


def ec2_curl(d, body, user="%s:%s" % (AK, SECRET), provider="aws:amz:us-east-1:ec2",
             extra=(), timeout=3):
    """curl's own SigV4. (status, headers, body, curl exit code)."""
    out = subprocess.run([CURL, "-sS", "-i", "--max-time", str(timeout), "--aws-sigv4", provider,
                          "--user", user, *extra, "-d", body, d.url + "/"],
                         capture_output=True, timeout=timeout + 5)
    if out.returncode != 0:
        return None, {}, b"", out.returncode
    raw = out.stdout
    head, _, payload = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return status, hdrs, payload, 0


def xml_code(body):
    m = re.search(rb"<Code>([^<]*)</Code>", body)
    return m.group(1).decode() if m else None


def error_shape(status, hdrs, body):
    """Checks the EC2 error document and the request id header; returns Code."""
    text = body.decode()
    m = re.match(r'^<\?xml version="1\.0" encoding="UTF-8"\?>\s*<Response><Errors><Error>'
                 r'<Code>([^<]+)</Code><Message>([^<]*)</Message></Error></Errors>'
                 r'<RequestID>(%s)</RequestID></Response>$' % UUID_RE, text)
    check(m, "not an EC2 error document: %r" % text)
    check(hdrs.get("x-amzn-requestid") == m.group(3), "x-amzn-RequestId %r != body %r"
          % (hdrs.get("x-amzn-requestid"), m.group(3)))
    check(hdrs.get("content-type", "").startswith("text/xml"), hdrs.get("content-type"))
    return m.group(1)


def expect_error(resp, status, code):
    st, hdrs, body = resp[:3]
    check(st == status, "status %r, want %d (%r)" % (st, status, body[:300]))
    got = error_shape(st, hdrs, body)
    check(got == code, "code %s, want %s" % (got, code))
    return body.decode()


def last(d):
    recs = d.ec2_requests()
    check(recs, "no EC2 record")
    return recs[-1]


def no_secrets(d):
    dump = json.dumps([d.ec2_requests(), d.imds_requests(), d.state(), repr(d)])
    for s in (SECRET, TMP_SECRET, TMP_TOKEN):
        check(s not in dump, "a secret leaked into records")
    rc = d.role_credentials()
    if rc:
        check(rc[1] not in dump and rc[2] not in dump, "role secret leaked into records")


def imds_token(d, ttl=60, headers=None):
    h = {"X-aws-ec2-metadata-token-ttl-seconds": str(ttl)}
    h.update(headers or {})
    return request(d, "PUT", "/latest/api/token", b"", h)


def imds_get(d, path, token):
    h = {} if token is None else {"X-aws-ec2-metadata-token": token}
    return request(d, "GET", "/latest/" + path, None, h)


def new_double(**kw):
    args = dict(region=REGION,
                credentials={AK: (SECRET, None), TMP_AK: (TMP_SECRET, TMP_TOKEN)},
                instances={IID: {"local_ipv4": "127.0.0.9"}, IID2: {"public_ipv4": "127.0.0.10"}},
                role=ROLE)
    args.update(kw)
    return AwsDouble(**args).start()


# --------------------------------------------------------------------- cases

def case_curl_dry_run(d):
    st, hdrs, body, rc = ec2_curl(d, reboot_body(dry=True))
    check(rc == 0, "curl exit %d" % rc)
    text = expect_error((st, hdrs, body), 412, "DryRunOperation")
    check("Request would have succeeded, but DryRun flag is set." in text, text)
    r = last(d)
    check(r["signature_ok"] and r["auth_ok"] and r["dry_run"] is True, r)
    check(r["action"] == "RebootInstances" and r["instance"] == IID and r["access_key"] == AK, r)
    check(r["signed_headers"] == ["host", "x-amz-date"], r["signed_headers"])
    check(r["code"] == "DryRunOperation" and r["status"] == 412 and r["request_id"] in text, r)
    check(r["had_token"] is False and r["reject_reason"] is None, r)
    check(d.reboots() == [], "a dry run rebooted")
    # A Content-Type the client sets itself is signed by curl, and verified.
    st, hdrs, body, rc = ec2_curl(d, reboot_body(dry=True),
                                  extra=["-H", "Content-Type: application/x-www-form-urlencoded"])
    expect_error((st, hdrs, body), 412, "DryRunOperation")
    check(last(d)["signed_headers"] == ["content-type", "host", "x-amz-date"], last(d))
    no_secrets(d)
    return "curl-signed DryRun -> 412 DryRunOperation (also with content-type signed)"


def case_curl_reboot(d):
    called = []
    ev = threading.Event()
    d.on_reboot = lambda iid: (called.append(iid), ev.set())
    try:
        st, hdrs, body, rc = ec2_curl(d, reboot_body())
        check(rc == 0 and st == 200, "status %r rc %d %r" % (st, rc, body))
        m = re.match(r'^<\?xml version="1\.0" encoding="UTF-8"\?>\s*<RebootInstancesResponse '
                     r'xmlns="http://ec2\.amazonaws\.com/doc/2016-11-15/">\s*<requestId>(%s)</requestId>'
                     r'\s*<return>true</return>\s*</RebootInstancesResponse>$' % UUID_RE, body.decode())
        check(m, body)
        check(hdrs.get("x-amzn-requestid") == m.group(1), "request id header")
        check(ev.wait(3), "on_reboot not called")
        check(called == [IID] and d.reboots() == [IID], (called, d.reboots()))
        r = last(d)
        check(r["status"] == 200 and r["dry_run"] is False and r["rebooted"] == [IID], r)
    finally:
        d.on_reboot = None
    return "200 requestId=%s..., hook called with %s" % (m.group(1)[:8], IID)


def case_curl_wrong_secret(d):
    d.script_ec2("throttle")
    st, hdrs, body, rc = ec2_curl(d, reboot_body(dry=True), user="%s:%s" % (AK, "wrong" + SECRET))
    expect_error((st, hdrs, body), 403, "SignatureDoesNotMatch")
    r = last(d)
    check(not r["signature_ok"] and r["reject_reason"] == "bad_signature" and r["behaviour"] is None, r)
    check(d.state()["ec2_queue"] == ["throttle"], "a bad signature consumed a behaviour")
    st, hdrs, body, rc = ec2_curl(d, reboot_body(dry=True), user="AKIAUNKNOWN000000000:x")
    expect_error((st, hdrs, body), 401, "AuthFailure")
    check(last(d)["reject_reason"] == "unknown_key", last(d))
    expect_error(ec2_curl(d, reboot_body(dry=True)), 503, "RequestLimitExceeded")
    return "wrong secret 403 SignatureDoesNotMatch (queue untouched); unknown key 401 AuthFailure"


def case_curl_scope(d):
    st, hdrs, body, _ = ec2_curl(d, reboot_body(dry=True), provider="aws:amz:us-west-2:ec2")
    expect_error((st, hdrs, body), 401, "AuthFailure")
    check(last(d)["reject_reason"] == "scope_region", last(d))
    st, hdrs, body, _ = ec2_curl(d, reboot_body(dry=True), provider="aws:amz:us-east-1:s3")
    expect_error((st, hdrs, body), 401, "AuthFailure")
    check(last(d)["reject_reason"] == "scope_service", last(d))
    # Parameters in the query string: curl 7.88 signs them unsorted, AWS sorts.
    out = subprocess.run([CURL, "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--aws-sigv4",
                          "aws:amz:us-east-1:ec2", "--user", "%s:%s" % (AK, SECRET), "-X", "POST",
                          d.url + "/?Version=2016-11-15&Action=RebootInstances&InstanceId.1=" + IID
                          + "&DryRun=true"], capture_output=True, text=True, timeout=8)
    sorted_ok = out.stdout == "412"
    check(out.stdout in ("403", "412"), out.stdout)
    return "region/service scope -> 401 AuthFailure; unsorted query -> %s" % out.stdout + \
        ("" if sorted_ok else " (curl #9717 reproduced)")


def case_curl_session_token(d):
    tok = ["-H", "X-Amz-Security-Token: " + TMP_TOKEN]
    user = "%s:%s" % (TMP_AK, TMP_SECRET)
    st, hdrs, body, _ = ec2_curl(d, reboot_body(dry=True), user=user, extra=tok)
    expect_error((st, hdrs, body), 412, "DryRunOperation")
    r = last(d)
    check(r["had_token"] and r["token_signed"] and r["token_ok"] is True, r)
    check(r["signed_headers"] == ["host", "x-amz-date", "x-amz-security-token"], r["signed_headers"])
    st, hdrs, body, _ = ec2_curl(d, reboot_body(dry=True), user=user)
    expect_error((st, hdrs, body), 401, "AuthFailure")
    check(last(d)["reject_reason"] == "token_missing", last(d))
    st, hdrs, body, _ = ec2_curl(d, reboot_body(dry=True), user=user,
                                 extra=["-H", "X-Amz-Security-Token: " + TMP_TOKEN + "x"])
    expect_error((st, hdrs, body), 401, "AuthFailure")
    check(last(d)["reject_reason"] == "token_mismatch" and last(d)["token_ok"] is False, last(d))
    # A token sent with long-term keys is refused too.
    st, hdrs, body, _ = ec2_curl(d, reboot_body(dry=True), extra=tok)
    expect_error((st, hdrs, body), 401, "AuthFailure")
    check(last(d)["reject_reason"] == "token_unexpected", last(d))
    no_secrets(d)
    return "token signed -> ok; missing/other/unexpected -> 401 AuthFailure"


def case_curl_keepalive(d):
    # One curl, two requests on one connection: a throttled call and its retry.
    d.script_ec2("throttle")
    out = subprocess.run([CURL, "-sS", "--max-time", "3", "-w", "[%{http_code} %{num_connects}]\n",
                          "-o", "/dev/null", "-o", "/dev/null", "--aws-sigv4", "aws:amz:us-east-1:ec2",
                          "--user", "%s:%s" % (AK, SECRET), "-d", reboot_body(), d.url + "/",
                          d.url + "/"], capture_output=True, text=True, timeout=8)
    check(out.returncode == 0, out.stderr)
    check(out.stdout.split("\n")[:2] == ["[503 1]", "[200 0]"], out.stdout)
    check([r["status"] for r in d.ec2_requests()] == [503, 200] and d.reboots() == [IID],
          d.ec2_requests())
    return "503 then 200 on one reused connection"


def case_py_signer(d):
    expect_error(ec2_py(d, reboot_body(dry=True)), 412, "DryRunOperation")
    expect_error(ec2_py(d, reboot_body(dry=True), TMP_AK, TMP_SECRET, token=TMP_TOKEN),
                 412, "DryRunOperation")
    # The token is sent but left out of SignedHeaders: refused.
    expect_error(ec2_py(d, reboot_body(dry=True), TMP_AK, TMP_SECRET, token=TMP_TOKEN,
                        sign_token=False), 401, "AuthFailure")
    r = last(d)
    check(r["signature_ok"] and r["had_token"] and not r["token_signed"], r)
    check(r["reject_reason"] == "token_unsigned", r)
    # A body changed after signing.
    expect_error(ec2_py(d, reboot_body(dry=True), send_body=reboot_body(IID2, dry=True)),
                 403, "SignatureDoesNotMatch")
    expect_error(ec2_py(d, reboot_body(dry=True), region="eu-west-1"), 401, "AuthFailure")
    # GET with the parameters in a (sorted-when-signed) query string, as EC2 allows.
    q = "Version=2016-11-15&Action=RebootInstances&InstanceId.1=%s&DryRun=true" % IID
    h = sign_like_curl("GET", "127.0.0.1:%d" % d.port, "/", "", AK, SECRET, query=q)
    expect_error(request(d, "GET", "/?" + q, None, h), 412, "DryRunOperation")
    return "own signer agrees; unsigned token 401; tampered body 403; GET+query ok"


def case_stale_date(d):
    now = datetime.datetime.now(datetime.timezone.utc)
    old = now - datetime.timedelta(minutes=20)
    expect_error(ec2_py(d, reboot_body(dry=True), when=old), 400, "RequestExpired")
    r = last(d)
    check(r["signature_ok"] and r["reject_reason"] == "stale_date", r)
    expect_error(ec2_py(d, reboot_body(dry=True), when=now + datetime.timedelta(minutes=20)),
                 400, "RequestExpired")
    # 10 minutes: inside AWS's documented 15-minute window, outside a 5-minute one.
    ten = now - datetime.timedelta(minutes=10)
    expect_error(ec2_py(d, reboot_body(dry=True), when=ten), 412, "DryRunOperation")
    d.max_skew = 300
    try:
        expect_error(ec2_py(d, reboot_body(dry=True), when=ten), 400, "RequestExpired")
    finally:
        d.max_skew = 900
    # advance() moves the token/credential clock, not the SigV4 window.
    d.advance(3600)
    expect_error(ec2_py(d, reboot_body(dry=True)), 412, "DryRunOperation")
    return "+-20 min -> 400 RequestExpired; 10 min ok at 900 s, refused at max_skew=300"


def case_malformed_auth(d):
    expect_error(request(d, "POST", "/", reboot_body(dry=True),
                         {"Content-Type": "application/x-www-form-urlencoded"}),
                 403, "MissingAuthenticationToken")
    check(last(d)["reject_reason"] == "no_auth", last(d))
    h = sign_like_curl("POST", "127.0.0.1:%d" % d.port, "/", reboot_body(), AK, SECRET)
    h2 = dict(h, Authorization=h["Authorization"].replace("SignedHeaders=", "Signed="))
    expect_error(request(d, "POST", "/", reboot_body(), h2), 400, "IncompleteSignature")
    h3 = dict(h)
    del h3["X-Amz-Date"]
    expect_error(request(d, "POST", "/", reboot_body(), h3), 400, "IncompleteSignature")
    check(d.reboots() == [], "rebooted on a malformed request")
    return "no Authorization 403 MissingAuthenticationToken; malformed 400 IncompleteSignature"


def case_query_api(d):
    expect_error(ec2_py(d, reboot_body(action="StopInstances")), 400, "InvalidAction")
    expect_error(ec2_py(d, reboot_body(version="2014-01-01")), 400, "NoSuchVersion")
    expect_error(ec2_py(d, reboot_body(iid="i-zz")), 400, "InvalidInstanceID.Malformed")
    text = expect_error(ec2_py(d, reboot_body(iid="i-0aaaaaaaaaaaaaaaa")), 400,
                        "InvalidInstanceID.NotFound")
    check("i-0aaaaaaaaaaaaaaaa" in text, text)
    expect_error(ec2_py(d, "Action=RebootInstances&Version=2016-11-15"), 400, "MissingParameter")
    expect_error(ec2_py(d, reboot_body() + "&DryRun=maybe"), 400, "InvalidParameterValue")
    # Two instances in one call.
    st, _, body = ec2_py(d, reboot_body() + "&InstanceId.2=" + IID2)
    check(st == 200 and b"<return>true</return>" in body, body)
    check(d.reboots() == [IID, IID2], d.reboots())
    return "InvalidAction, NoSuchVersion, Malformed, NotFound, MissingParameter; 2 ids rebooted"


def case_unauthorized(d):
    d.set_allowed(False)
    text = expect_error(ec2_py(d, reboot_body(dry=True)), 403, "UnauthorizedOperation")
    check("You are not authorized to perform this operation. Encoded authorization failure "
          "message: " in text, text)
    expect_error(ec2_curl(d, reboot_body()), 403, "UnauthorizedOperation")
    check(d.reboots() == [], "rebooted while unauthorized")
    d.set_allowed(True)
    check(ec2_py(d, reboot_body())[0] == 200, "allowed again")
    return "DryRun and real -> 403 UnauthorizedOperation, nothing rebooted"


def case_scripted(d):
    d.script_ec2("throttle", "unavailable", "internal", "error:InsufficientInstanceCapacity:500",
                 "http:502", "garbage")
    expect_error(ec2_py(d, reboot_body()), 503, "RequestLimitExceeded")
    expect_error(ec2_py(d, reboot_body(dry=True)), 503, "Unavailable")
    expect_error(ec2_py(d, reboot_body()), 500, "InternalError")
    expect_error(ec2_py(d, reboot_body()), 500, "InsufficientInstanceCapacity")
    st, hdrs, body = ec2_py(d, reboot_body())
    check(st == 502 and body.startswith(b"502"), (st, body))
    st, hdrs, body = ec2_py(d, reboot_body())
    check(st == 200 and b"<RebootInstancesResponse" not in body, "garbage")
    check(d.reboots() == [], "a scripted failure rebooted")
    beh = [r["behaviour"] for r in d.ec2_requests()]
    check(beh == ["throttle", "unavailable", "internal", "error:InsufficientInstanceCapacity:500",
                  "http:502", "garbage"], beh)
    codes = [r["code"] for r in d.ec2_requests()]
    check(codes[:4] == ["RequestLimitExceeded", "Unavailable", "InternalError",
                        "InsufficientInstanceCapacity"], codes)
    # throttle then ok: the retry goes through.
    d.script_ec2("throttle")
    expect_error(ec2_curl(d, reboot_body()), 503, "RequestLimitExceeded")
    st, _, _, _ = ec2_curl(d, reboot_body())
    check(st == 200 and d.reboots() == [IID], (st, d.reboots()))
    # Sticky default.
    d.set_ec2_default("unavailable")
    expect_error(ec2_py(d, reboot_body()), 503, "Unavailable")
    expect_error(ec2_py(d, reboot_body()), 503, "Unavailable")
    d.set_ec2_default("ok")
    return "throttle/unavailable/internal/error/http/garbage; throttle then ok; sticky default"


def case_close_hang(d):
    d.script_ec2("close")
    _, _, _, rc = ec2_curl(d, reboot_body())
    check(rc == 52, "curl exit %d, want 52 (empty reply)" % rc)
    d.script_ec2("hang:5")
    t0 = time.monotonic()
    _, _, _, rc = ec2_curl(d, reboot_body(), timeout=1)
    check(rc == 28 and time.monotonic() - t0 < 3, "curl exit %d, want 28 (timeout)" % rc)
    check([r["answered"] for r in d.ec2_requests()] == [False, False], d.ec2_requests())
    check(d.reboots() == [], "rebooted")
    return "close -> curl 52; hang -> curl 28"


def case_imds_token(d):
    st, hdrs, body = imds_get(d, "meta-data/instance-id", None)
    check(st == 401, "IMDSv1 GET answered %d" % st)
    st, hdrs, body = imds_token(d, 30)
    check(st == 200 and hdrs.get("x-aws-ec2-metadata-token-ttl-seconds") == "30", (st, hdrs))
    tok = body.decode()
    check(len(tok) >= 40 and tok.strip() == tok, tok)
    st, _, body = imds_get(d, "meta-data/instance-id", tok)
    check(st == 200 and body == IID.encode(), (st, body))
    check(imds_get(d, "meta-data/instance-id", tok + "x")[0] == 401, "unknown token accepted")
    d.advance(29)
    check(imds_get(d, "meta-data/instance-id", tok)[0] == 200, "expired too early")
    d.advance(1.5)
    check(imds_get(d, "meta-data/instance-id", tok)[0] == 401, "expired token accepted")
    check(imds_token(d, 60, {"X-Forwarded-For": "127.0.0.99"})[0] == 403, "X-Forwarded-For")
    for ttl in ("0", "21601", "abc", "-5", ""):
        check(imds_token(d, ttl)[0] == 400, "ttl %r accepted" % ttl)
    check(request(d, "PUT", "/latest/api/token", b"")[0] == 400, "missing ttl accepted")
    check(imds_token(d, 21600)[0] == 200 and imds_token(d, 1)[0] == 200, "ttl bounds")
    check(request(d, "GET", "/latest/api/token")[0] == 405, "GET token")
    recs = d.imds_requests()
    check(recs[0]["token_ok"] is False and recs[0]["reject_reason"] == "no_token", recs[0])
    check(any(r["reject_reason"] == "x_forwarded_for" for r in recs), "xff record")
    check(tok not in json.dumps(recs), "IMDS token recorded")
    return "401 without token; TTL echoed; expiry after advance(); XFF 403; TTL 1..21600"


def case_imds_paths(d):
    tok = imds_token(d, 300)[2].decode()
    want = {"meta-data/instance-id": IID, "meta-data/placement/region": REGION,
            "meta-data/placement/availability-zone": REGION + "a",
            "meta-data/local-ipv4": "127.0.0.9",
            "meta-data/iam/security-credentials/": ROLE,
            "meta-data/iam/security-credentials": ROLE}
    for path, v in want.items():
        st, hdrs, body = imds_get(d, path, tok)
        check(st == 200 and body.decode() == v, "%s -> %d %r" % (path, st, body))
        check(hdrs.get("content-type") == "text/plain", hdrs)
    check(imds_get(d, "meta-data/public-ipv4", tok)[0] == 404, "public-ipv4 without one")
    check(imds_get(d, "meta-data/nope", tok)[0] == 404, "unknown path")
    check(imds_get(d, "meta-data/iam/security-credentials/other-role", tok)[0] == 404, "other role")
    listing = imds_get(d, "meta-data/", tok)[2].decode().split("\n")
    check("instance-id" in listing and "placement/" in listing and "iam/" in listing, listing)
    doc = json.loads(imds_get(d, "dynamic/instance-identity/document", tok)[2])
    check(doc["instanceId"] == IID and doc["region"] == REGION, doc)
    d2 = AwsDouble(instances={IID2: {"public_ipv4": "127.0.0.10"}}).start()
    try:
        tok2 = imds_token(d2, 60)[2].decode()
        check(imds_get(d2, "meta-data/public-ipv4", tok2)[2] == b"127.0.0.10", "public-ipv4")
        check(imds_get(d2, "meta-data/iam/security-credentials/", tok2)[0] == 404, "no role")
        check("iam/" not in imds_get(d2, "meta-data/", tok2)[2].decode(), "iam listed w/o role")
    finally:
        d2.stop()
    return "instance-id, region, az, local-ipv4, public-ipv4 (404/200), role list (404 w/o role)"


def case_imds_per_instance(d):
    """serve_imds: one metadata listener per instance on its own address;
    a token is good only where it was issued; EC2 is not served there."""
    urls = {IID: d.serve_imds(IID, "127.0.0.9"), IID2: d.serve_imds(IID2, "127.0.0.10")}

    def call(url, method, path, headers):
        host, port = urllib.parse.urlsplit(url).hostname, urllib.parse.urlsplit(url).port
        c = http.client.HTTPConnection(host, port, timeout=3.0)
        try:
            c.request(method, path, body=b"" if method == "PUT" else None, headers=headers)
            r = c.getresponse()
            return r.status, r.read().decode()
        finally:
            c.close()

    toks = {}
    for iid, url in urls.items():
        st, tok = call(url, "PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "60"})
        check(st == 200, "token at %s: %d" % (url, st))
        toks[iid] = tok
        st, body = call(url, "GET", "/latest/meta-data/instance-id", {"X-aws-ec2-metadata-token": tok})
        check(st == 200 and body == iid, "instance-id at %s: %d %r" % (url, st, body))
    st, _ = call(urls[IID2], "GET", "/latest/meta-data/instance-id", {"X-aws-ec2-metadata-token": toks[IID]})
    check(st == 401, "another instance's token: %d" % st)
    st, _ = call(urls[IID], "POST", "/", {"Content-Type": "application/x-www-form-urlencoded"})
    check(st == 404, "EC2 on a metadata listener: %d" % st)
    st, body = call(d.url, "GET", "/latest/meta-data/instance-id", {"X-aws-ec2-metadata-token": toks[IID]})
    check(st == 200 and body == IID, "the main URL still answers for imds_instance: %d %r" % (st, body))
    check(all(r["instance"] in urls for r in d.imds_requests()), "records name the instance")
    try:
        d.serve_imds(IID, "0.0.0.0")
        check(False, "a non-loopback address was accepted")
    except ValueError:
        pass
    return "two instances on 127.0.0.9/10, tokens bound to their listener, EC2 not served there"


def fetch_role(d, tok):
    st, _, body = imds_get(d, "meta-data/iam/security-credentials/" + ROLE, tok)
    check(st == 200, st)
    return json.loads(body)


def case_role_credentials(d):
    tok = imds_token(d, 21600)[2].decode()
    c = fetch_role(d, tok)
    check(c["Code"] == "Success" and c["Type"] == "AWS-HMAC", c)
    check(ISO_RE.match(c["LastUpdated"]) and ISO_RE.match(c["Expiration"]), c)
    exp = datetime.datetime.strptime(c["Expiration"], "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()
    check(abs(exp - (time.time() + 21600)) < 5, "Expiration %s not ~6 h ahead" % c["Expiration"])
    check(re.match(r"^ASIA[A-Z2-7]{16}$", c["AccessKeyId"]), c["AccessKeyId"])
    user = "%s:%s" % (c["AccessKeyId"], c["SecretAccessKey"])
    tokhdr = ["-H", "X-Amz-Security-Token: " + c["Token"]]
    expect_error(ec2_curl(d, reboot_body(dry=True), user=user, extra=tokhdr), 412, "DryRunOperation")
    check(last(d)["credential_kind"] == "role", last(d))
    expect_error(ec2_curl(d, reboot_body(dry=True), user=user), 401, "AuthFailure")

    # Rotation: new keys, the old ones good until their own Expiration.
    new_ak = d.rotate_role_credentials(600)
    c2 = fetch_role(d, tok)
    check(c2["AccessKeyId"] == new_ak != c["AccessKeyId"], (new_ak, c2["AccessKeyId"]))
    exp2 = datetime.datetime.strptime(c2["Expiration"], "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()
    check(abs(exp2 - (time.time() + 600)) < 5, c2["Expiration"])
    user2 = "%s:%s" % (c2["AccessKeyId"], c2["SecretAccessKey"])
    tokhdr2 = ["-H", "X-Amz-Security-Token: " + c2["Token"]]
    expect_error(ec2_curl(d, reboot_body(dry=True), user=user, extra=tokhdr), 412, "DryRunOperation")
    expect_error(ec2_curl(d, reboot_body(dry=True), user=user2, extra=tokhdr2), 412,
                 "DryRunOperation")
    # The new keys' token does not go with the old keys.
    expect_error(ec2_curl(d, reboot_body(dry=True), user=user, extra=tokhdr2), 401, "AuthFailure")

    d.advance(601)   # the rotated keys expire; the first ones (6 h) do not
    expect_error(ec2_curl(d, reboot_body(dry=True), user=user2, extra=tokhdr2), 400,
                 "RequestExpired")
    check(last(d)["reject_reason"] == "credentials_expired", last(d))
    expect_error(ec2_curl(d, reboot_body(dry=True), user=user, extra=tokhdr), 412, "DryRunOperation")
    # IMDS hands out fresh ones when the current ones are (nearly) expired.
    c3 = fetch_role(d, tok)
    check(c3["AccessKeyId"] not in (c["AccessKeyId"], c2["AccessKeyId"]), "no auto-rotation")
    d.advance(21600)
    expect_error(ec2_curl(d, reboot_body(dry=True), user=user, extra=tokhdr), 400, "RequestExpired")
    check(imds_get(d, "meta-data/instance-id", tok)[0] == 401, "IMDS token outlived its TTL")
    no_secrets(d)
    return "JSON ok; rotate(600): both valid, then old-by-expiry 400 RequestExpired; auto-rotate"


def case_imds_behaviours(d):
    d.script_imds("down", "http:500", "hang:3")
    with socket.create_connection(("127.0.0.1", d.port), timeout=3) as s:
        s.sendall(b"PUT /latest/api/token HTTP/1.1\r\nHost: x\r\n"
                  b"X-aws-ec2-metadata-token-ttl-seconds: 60\r\nContent-Length: 0\r\n\r\n")
        check(s.recv(100) == b"", "down answered")
    check(imds_token(d, 60)[0] == 500, "http:500")
    t0 = time.monotonic()
    try:
        request(d, "PUT", "/latest/api/token", b"", {"X-aws-ec2-metadata-token-ttl-seconds": "60"},
                timeout=0.5)
        raise Fail("hang answered")
    except (socket.timeout, TimeoutError):
        pass
    check(time.monotonic() - t0 < 2, "hang timeout")
    check(imds_token(d, 60)[0] == 200, "back to ok")
    beh = [r["behaviour"] for r in d.imds_requests()]
    check(beh == ["down", "http:500", "hang:3.0", "ok"], beh)
    return "down (no answer), http:500, hang, then ok"


def case_control_http(d):
    st, _, body = request(d, "POST", "/_double/script",
                          json.dumps({"ec2": ["throttle"], "imds": ["http:503"], "allowed": False,
                                      "advance": 10}), {"Content-Type": "application/json"})
    s = json.loads(body)
    check(st == 200 and s["ok"] and s["ec2_queue"] == ["throttle"] and s["allowed"] is False, s)
    check(s["advanced"] == 10 and s["imds_queue"] == ["http:503"], s)
    expect_error(ec2_py(d, reboot_body()), 503, "RequestLimitExceeded")
    expect_error(ec2_py(d, reboot_body()), 403, "UnauthorizedOperation")
    check(imds_token(d, 60)[0] == 503, "imds script")
    for bad in ({"ec2": ["explode"]}, {"imds": ["throttle"]}, {"allowed": "yes"}, {"advance": -1},
                {"nonsense": 1}, [1]):
        st, _, body = request(d, "POST", "/_double/script", json.dumps(bad))
        check(st == 400 and json.loads(body)["error"] == "bad_script", (bad, body))
    request(d, "POST", "/_double/script", json.dumps({"allowed": True}))
    check(ec2_py(d, reboot_body())[0] == 200, "allowed via HTTP")
    st, _, body = request(d, "GET", "/_double/ec2")
    check(st == 200 and len(json.loads(body)) == 3, body)
    check(json.loads(request(d, "GET", "/_double/reboots")[2]) == [IID], "reboots")
    check(len(json.loads(request(d, "GET", "/_double/imds")[2])) == 1, "imds list")
    old = d.role_credentials()[0]
    request(d, "POST", "/_double/script", json.dumps({"rotate_role_credentials": 120}))
    check(d.role_credentials()[0] != old, "rotate over HTTP")
    check(request(d, "POST", "/_double/reset", b"")[0] == 200, "reset")
    check(d.ec2_requests() == [] and d.reboots() == [], "reset clears")
    no_secrets(d)
    return "script/allowed/advance/rotate; ec2, imds, reboots, reset"


def case_wait_for(d):
    threading.Timer(0.2, lambda: ec2_py(d, reboot_body())).start()
    t0 = time.monotonic()
    rb = d.wait_for(lambda rs: rs == [IID], timeout=3, source="reboots")
    check(rb == [IID] and time.monotonic() - t0 < 2, "wait_for reboots")
    check(len(d.wait_for(lambda rs: len(rs) == 1, timeout=1)) == 1, "wait_for ec2")
    t0 = time.monotonic()
    try:
        d.wait_for(lambda rs: len(rs) > 5, timeout=0.3, source="imds")
        raise Fail("no timeout")
    except TimeoutError:
        pass
    check(time.monotonic() - t0 < 1.0, "wait_for overran")
    return "wakes on reboot; bounded"


def case_stop_with_hang():
    d = new_double()
    d.script_ec2("hang:60")
    s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
    body = reboot_body()
    h = sign_like_curl("POST", "x", "/", body, AK, SECRET)
    head = "".join("%s: %s\r\n" % kv for kv in h.items())
    s.sendall(("POST / HTTP/1.1\r\nHost: x\r\n%sContent-Length: %d\r\n\r\n%s"
               % (head, len(body), body)).encode())
    d.wait_for(lambda rs: len(rs) == 1, timeout=3)
    t0 = time.monotonic()
    d.stop()
    took = time.monotonic() - t0
    s.close()
    check(took < 2.0, "stop took %.2fs" % took)
    return "stop() in %.2fs with a 60 s hang open" % took


def case_cli(tmp):
    secret_f = os.path.join(tmp, "secret")
    token_f = os.path.join(tmp, "token")
    marker = os.path.join(tmp, "rebooted")
    log = os.path.join(tmp, "ec2.jsonl")
    with open(secret_f, "w") as f:
        f.write(TMP_SECRET + "\n")
    with open(token_f, "w") as f:
        f.write(TMP_TOKEN + "\n")
    p = subprocess.Popen([sys.executable, os.path.join(HERE, "aws_double.py"), "--port", "0",
                          "--access-key", TMP_AK, "--secret-file", secret_f,
                          "--session-token-file", token_f, "--instance", IID, "--role", ROLE,
                          "--ec2-log", log,
                          "--reboot-command", "echo {instance} >> " + marker],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        ready, _, _ = select.select([p.stdout], [], [], 5)
        check(ready, "no listening line within 5 s")
        line = p.stdout.readline().decode()
        m = re.match(r"^listening (http://127\.0\.0\.1:([0-9]+))\n$", line)
        check(m, "first line %r" % line)

        class U:
            pass
        u = U()
        u.url, u.port = m.group(1), int(m.group(2))
        user = "%s:%s" % (TMP_AK, TMP_SECRET)
        expect_error(ec2_curl(u, reboot_body(dry=True), user=user), 401, "AuthFailure")
        st, _, body, _ = ec2_curl(u, reboot_body(), user=user,
                                  extra=["-H", "X-Amz-Security-Token: " + TMP_TOKEN])
        check(st == 200, (st, body))
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and not os.path.exists(marker):
            time.sleep(0.05)
        with open(marker) as f:
            check(f.read() == IID + "\n", "reboot command output")
        # The instance role through IMDS works against the CLI double too.
        tok = imds_token(u, 60)[2].decode()
        c = fetch_role(u, tok)
        expect_error(ec2_curl(u, reboot_body(dry=True), user="%s:%s" % (c["AccessKeyId"],
                                                                       c["SecretAccessKey"]),
                              extra=["-H", "X-Amz-Security-Token: " + c["Token"]]),
                     412, "DryRunOperation")
        request(u, "POST", "/_double/script", json.dumps({"ec2": ["throttle"]}))
        expect_error(ec2_curl(u, reboot_body(), user=user,
                              extra=["-H", "X-Amz-Security-Token: " + TMP_TOKEN]),
                     503, "RequestLimitExceeded")
        check(json.loads(request(u, "GET", "/_double/reboots")[2]) == [IID], "cli reboots")
        p.send_signal(signal.SIGTERM)
        rc = p.wait(timeout=4)
        out, err = p.communicate(timeout=2)
        check(rc == 0, "exit %d: %s" % (rc, err))
        with open(log) as f:
            log_text = f.read()
        check(len(log_text.splitlines()) == 4, log_text)
        for s in (TMP_SECRET, TMP_TOKEN, c["SecretAccessKey"], c["Token"]):
            check(s.encode() not in out + err and s not in log_text, "secret printed or logged")
        return "%s; curl+token 200; reboot command ran; role creds; SIGTERM -> 0" % u.url
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=3)


# --------------------------------------------------------------------- runner

NEEDS_CURL = {"case_curl_dry_run", "case_curl_reboot", "case_curl_wrong_secret",
              "case_curl_scope", "case_curl_session_token", "case_curl_keepalive",
              "case_unauthorized", "case_scripted", "case_close_hang",
              "case_role_credentials", "case_cli"}

PER_DOUBLE = [case_curl_dry_run, case_curl_reboot, case_curl_wrong_secret, case_curl_scope,
              case_curl_session_token, case_curl_keepalive, case_py_signer, case_stale_date,
              case_malformed_auth, case_query_api, case_unauthorized, case_scripted,
              case_close_hang, case_imds_token, case_imds_paths, case_role_credentials,
              case_imds_behaviours, case_control_http, case_wait_for, case_imds_per_instance]


def main():
    t_start = time.monotonic()
    failed = 0
    total = 0
    tmp = tempfile.mkdtemp(prefix="aws-double-test.")
    try:
        for case in PER_DOUBLE:
            total += 1
            if case.__name__ in NEEDS_CURL and not CURL:
                failed += 1
                print("FAIL %-22s curl not found (it is the point of this test)" % case.__name__[5:])
                continue
            d = new_double()   # fresh clocks, queues and role keys per case
            try:
                failed += run(case.__name__, lambda: case(d))
            finally:
                d.stop()
        total += 2
        failed += run("case_stop_with_hang", case_stop_with_hang)
        failed += run("case_cli", lambda: case_cli(tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d passed, %d failed (%.1fs)" % (total - failed, failed, time.monotonic() - t_start))
    return 1 if failed else 0


def run(name, fn):
    t0 = time.monotonic()
    try:
        detail = fn()
    except Exception as e:
        print("FAIL %-22s %s" % (name[5:], e if isinstance(e, Fail) else repr(e)))
        if not isinstance(e, Fail):
            traceback.print_exc()
        sys.stdout.flush()
        return 1
    print("ok   %-22s %s (%.2fs)" % (name[5:], detail, time.monotonic() - t0))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
