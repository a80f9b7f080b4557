#!/usr/bin/env python3
"""Fault matrix, HTTP bodies: 50 MB answers from the app's health check,
from Slack, from EC2 and from IMDS (the agent keeps what it needs, hangs
up, says why, and its memory does not grow by the body: VmHWM before and
after); answers with a wrong Content-Type (read for what they are: no
duplicate Slack message, no second reboot); invalid UTF-8 where the agent
quotes what it got (the app's page in the quarantine alert, a process's
command line in the breach alert, text from monkeyctl test-alert, an EC2
error message cut in the middle of a character): every body the Slack
double got is valid UTF-8 JSON, and so is `monkeyctl status --json`."""

import http.server
import json
import os
import subprocess
import threading
import time

import faultlib
from faultlib import cell, check

import aws_double  # noqa: E402
import slack_double  # noqa: E402
from aws_double import AwsDouble  # noqa: E402
from harness import MONKEYCTL, Agent, atomic_write  # noqa: E402
from slack_double import SlackDouble  # noqa: E402

HUGE = 50 * 1024 * 1024
CHUNK = 256 * 1024
AK = "AKIAFAULTBODIES00001"
SECRET = "faultsBodiesSecretKey/0123456789abcdefXYZ"
IID = "i-0123456789abcdef0"
TOKEN = "xoxb-bodies-fault-matrix"
# nasty for JSON, mrkdwn and terminals alike, and not UTF-8 at all
NASTY = b"<b>maintenance</b> & `rm -rf` ```<!channel>``` \x1b[31m\x00\xff\xfe \xc3\x28 \xe2\x82 caf\xe9 \xf0\x9f\x90"


def send_huge(handler, status=200, ctype="text/html", first=b""):
    """Answer with a 50 MB body, written lazily; returns the bytes the peer
    took before it hung up."""
    handler.send_response(status)
    handler.send_header("Content-Type", ctype)
    handler.send_header("Content-Length", str(HUGE))
    handler.end_headers()
    sent = 0
    block = (first + b"x" * CHUNK)[:CHUNK]
    try:
        while sent < HUGE:
            handler.wfile.write(block)
            sent += len(block)
            block = b"x" * CHUNK
    except (BrokenPipeError, ConnectionResetError):
        pass
    handler.close_connection = True
    return sent


def vm_hwm_kb(a):
    with open("/proc/%d/status" % a.proc.pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def check_memory(a, before_kb, what):
    grew = (vm_hwm_kb(a) - before_kb) / 1024.0
    check(grew < 16, "peak RSS grew by %.1f MB reading %s" % (grew, what))
    return grew


def valid_slack_bodies(sl):
    for r in sl.requests():
        raw = r["raw_body"]
        try:
            raw.encode("utf-8")
            json.loads(raw)
        except ValueError as e:
            check(False, "a body Slack got is not valid UTF-8 JSON (%s): %r" % (e, raw[:300]))
        check(r["body"] is not None, "the double could not parse a body")


# --- doubles with a huge or mislabelled answer --------------------------------

class _SlackHandler(slack_double._Handler):
    def _api(self, path, body):
        d = self.server.double
        if d.take("huge"):
            rec = d._new_record(path, "api", True, self._headers_without_auth(), body,
                                self._parse_api_body(body), "huge")
            rec.update(status=200, answered=True, result="50 MB of HTML")
            d._finish_record(rec)
            d.huge_sent.append(send_huge(self, first=b"<html><body>upstream says hi"))
            return
        super()._api(path, body)

    def _send_json(self, status, obj, extra=None):
        ctype = "text/html; charset=iso-8859-1" if self.server.double.wrong_ctype else \
            "application/json; charset=utf-8"
        self._send(status, json.dumps(obj, separators=(",", ":")), ctype, extra)


class Slack(SlackDouble):
    _handler_class = _SlackHandler

    def __init__(self, **kw):
        super().__init__(token=TOKEN, **kw)
        self.counts = {}
        self.huge_sent = []
        self.wrong_ctype = False

    def take(self, what):
        with self._lock:
            n = self.counts.get(what, 0)
            if n > 0:
                self.counts[what] = n - 1
            return n > 0


class _AwsHandler(aws_double._Handler):
    def _ec2(self, path, query, body):
        d = self.server.double
        params = self._ec2_params(query, body)
        if params.get("DryRun") != "true" and d.take("ec2"):
            rec = d._new_ec2_record(self.command, path)
            rec.update(action=params.get("Action"), behaviour="huge", status=200, answered=True)
            d._finish_ec2(rec)
            d.huge_sent.append(send_huge(self, ctype="text/xml"))
            return
        super()._ec2(path, query, body)

    def _ec2_send(self, rec, status, body, ctype="text/xml;charset=UTF-8"):
        if self.server.double.wrong_ctype:
            ctype = "application/json"
        return super()._ec2_send(rec, status, body, ctype)

    def _ec2_error(self, rec, status, code, message):
        d = self.server.double
        if d.error_message is not None and code == "UnauthorizedOperation":
            message = d.error_message
        return super()._ec2_error(rec, status, code, message)

    def _imds(self, path, body):
        d = self.server.double
        if d.bad_code and "/security-credentials/" in path and not path.endswith("/"):
            # role credentials that failed, in words that are not ASCII
            rec = d._new_imds_record(self.command, path)
            rec.update(behaviour="bad_code", status=200, answered=True)
            d._finish_imds(rec)
            doc = json.dumps({"Code": "Unavailable" + "\u00e9" * 40, "LastUpdated": "2026-01-01T00:00:00Z"},
                             ensure_ascii=False)
            self._send(200, doc.encode("utf-8"), "text/plain")
            return
        if d.take("imds:" + self.command):
            rec = d._new_imds_record(self.command, path)
            rec.update(behaviour="huge", status=200, answered=True)
            d._finish_imds(rec)
            d.huge_sent.append(send_huge(self, ctype="text/plain"))
            return
        super()._imds(path, body)


class Aws(AwsDouble):
    _handler_class = _AwsHandler

    def __init__(self, **kw):
        super().__init__(**kw)
        self.counts = {}
        self.huge_sent = []
        self.wrong_ctype = False
        self.error_message = None
        self.bad_code = False

    def take(self, what):
        with self._lock:
            n = self.counts.get(what, 0)
            if n > 0:
                self.counts[what] = n - 1
            return n > 0


class App:
    """The app under the health check: a 50 MB page, or NASTY."""

    def __init__(self, mode):
        app = self
        self.mode = mode
        self.sent = []

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                if app.mode == "huge":
                    app.sent.append(send_huge(self, first=b"ok healthy " + b"y" * 1000))
                else:
                    page = b"<html>" + NASTY + b"</html>\n"
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                    self.send_header("Content-Length", str(len(page)))
                    self.end_headers()
                    self.wfile.write(page)

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.srv.daemon_threads = True
        self.url = "http://127.0.0.1:%d/health" % self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


def slack_section(a, sl):
    tok = os.path.join(a.dir, "slack-token")
    atomic_write(tok, TOKEN + "\n", mode=0o600)
    return "[slack]\ntoken_file = %s\nchannel = #incidents\napi_url = %s\ntimeout = 2s\n\n" % (tok, sl.api_url)


def aws_section(d, ladder="reboot-instance"):
    return ("[aws]\nregion = us-east-1\ninstance_id = %s\nendpoint_url = %s\nimds_url = %s\n\n"
            "[remedy]\nladder = %s\nmax_per_window = 3\nreboot_timeout = 30s\nbudget = none\n\n"
            % (IID, d.endpoint_url, d.url, ladder))


def new_agent(c, name, extra, env=None):
    a = Agent(name=name, window="1s", interval="100ms")
    a.write_config(extra=extra)
    a.env_extra = env or {"AWS_ACCESS_KEY_ID": AK, "AWS_SECRET_ACCESS_KEY": SECRET, "HOME": a.dir}
    return c.track(a)


def reboot_calls(d):
    return [r for r in d.ec2_requests() if r.get("action") == "RebootInstances" and not r.get("dry_run")]


@cell("bodies", "app-50MB")
def app_huge(c):
    app = App("huge")
    try:
        a = new_agent(c, "app", "[checks]\nurl = %s\nexpect_content = needle\nattempts = 1\ntimeout = 2s\n" % app.url)
        a.start(wait_serving=False)
        c.wait(a, lambda: a.state() == "QUARANTINED", 10, "QUARANTINED after the first check")
        hwm = vm_hwm_kb(a)
        t0 = time.monotonic()
        p = subprocess.Popen([MONKEYCTL, "--socket", a.socket, "check", "--json"], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        c.wait(a, lambda: p.poll() is not None, 10, "monkeyctl check", gap=0.02)
        out = json.loads(p.communicate()[0].decode("utf-8"))
        took = time.monotonic() - t0
        detail = json.dumps(out)
        check("262144+ bytes" in detail and "do not contain" in detail, "check result %s" % detail[:400])
        grew = check_memory(a, hwm, "a 50 MB page")
        check(max(app.sent) < 16 * 1024 * 1024, "the app sent %d MB before the agent hung up" %
              (max(app.sent) // (1024 * 1024)))
        reason = a.status()["reason"] or ""
        check("262144+ bytes" in reason, "quarantine reason %r" % reason)
        c.result("content check read 256 KiB of the 50 MB page and hung up (the app got %.1f MB out), "
                 "'%s' in %.2fs; peak RSS +%.1f MB" % (max(app.sent) / 1048576.0,
                                                      reason[reason.find("content"):][:60], took, grew))
    finally:
        app.stop()


@cell("bodies", "slack-50MB")
def slack_huge(c):
    sl = Slack().start()
    try:
        a = new_agent(c, "slackbig", "")
        a.write_config(extra=slack_section(a, sl) + "[remedy]\nladder = none\nbudget = none\n")
        a.start()
        hwm = vm_hwm_kb(a)
        sl.counts["huge"] = 2
        a.feeder.set_busy(95)
        c.wait(a, lambda: "REMEDIATING" in faultlib.states(a), 10, "a remediation")
        a.feeder.set_busy(5)
        msgs = c.wait(a, lambda: len(sl.messages()) >= 3 and sl.messages(), 15, "three messages delivered")
        time.sleep(1.0)
        msgs = sl.messages()
        texts = [m["body"]["text"] for m in msgs]
        check(len(msgs) == 3 and len(set(texts)) == 3, "delivered %d messages (%d distinct)" % (len(msgs),
                                                                                                len(set(texts))))
        check("is overloaded" in texts[0] and all(m["thread_ts"] == msgs[0]["ts"] for m in msgs[1:]),
              "order or thread broken")
        check("not Web API JSON" in a.log_text(), "the huge answer is not explained in the log")
        grew = check_memory(a, hwm, "two 50 MB answers from Slack")
        check(len(sl.huge_sent) == 2 and max(sl.huge_sent) < 16 * 1048576, "Slack sent %r" % sl.huge_sent)
        valid_slack_bodies(sl)
        c.result("two 50 MB answers: read 64 KiB each, hung up ('answer is not Web API JSON', retried); the 3 "
                 "messages once each, in order, in the thread; peak RSS +%.1f MB" % grew)
    finally:
        sl.stop()


@cell("bodies", "ec2-50MB")
def ec2_huge(c):
    d = Aws(credentials={AK: (SECRET, None)}).start()
    try:
        a = new_agent(c, "ec2big", aws_section(d))
        a.start()
        c.wait(a, lambda: (a.status()["remedy"]["aws"] or {}).get("permission") == "permitted", 10, "self-test")
        hwm = vm_hwm_kb(a)
        d.counts["ec2"] = 1
        a.feeder.set_busy(95)
        c.wait(a, lambda: d.reboots() == [IID], 15, "the reboot after the huge answer")
        calls = reboot_calls(d)
        check(len(calls) == 2 and calls[0]["behaviour"] == "huge", "calls %r" % [x["behaviour"] for x in calls])
        grew = check_memory(a, hwm, "a 50 MB answer from EC2")
        check(max(d.huge_sent) < 16 * 1048576, "EC2 sent %d bytes" % max(d.huge_sent))
        check("EC2 answered HTTP 200 with not XML" in a.log_text(), "the huge answer is not explained in the log")
        a.feeder.set_busy(5)
        c.result("the 50 MB 'HTTP 200' read to 64 KiB, not XML, retried; the next attempt rebooted once; "
                 "peak RSS +%.1f MB" % grew)
    finally:
        d.stop()


@cell("bodies", "imds-50MB")
def imds_huge(c):
    d = Aws(credentials={}, role="monkey-role").start()
    try:
        d.counts.update({"imds:PUT": 1, "imds:GET": 1})  # the token, then the next try's instance id
        a = new_agent(c, "imdsbig", "[aws]\nendpoint_url = %s\nimds_url = %s\n\n[remedy]\nladder = reboot-instance\nbudget = none\n"
                      % (d.endpoint_url, d.url), env={"HOME": "/nonexistent"})
        a.start()
        errors = set()

        def seen():
            e = (a.status()["remedy"]["aws"] or {}).get("last_error")
            if e:
                errors.add(e)
            return (a.status()["remedy"]["aws"] or {}).get("permission") == "permitted"
        c.wait(a, seen, 20, "identity and self-test once IMDS answers sanely", gap=0.05)
        big = sorted(e for e in errors if "too large" in e)
        check(any("token" in e for e in big) and any("instance-id" in e for e in big),
              "the huge answers are not explained in status: %r" % sorted(errors))
        # (both arrive right at start: the agent hanging up early is what bounds its memory here)
        check(len(d.huge_sent) == 2 and max(d.huge_sent) < 16 * 1048576, "IMDS sent %r" % d.huge_sent)
        c.result("status said %s; the agent hung up after %.1f MB at most; then identity and a permitted "
                 "self-test" % (" / ".join("'%s'" % e for e in big), max(d.huge_sent) / 1048576.0))
    finally:
        d.stop()


@cell("bodies", "wrong-content-type")
def wrong_ctype(c):
    d = Aws(credentials={AK: (SECRET, None)}).start()
    sl = Slack().start()
    try:
        d.wrong_ctype = True
        sl.wrong_ctype = True
        a = new_agent(c, "ctype", "")
        a.write_config(extra=aws_section(d) + slack_section(a, sl))
        a.start()
        c.wait(a, lambda: (a.status()["remedy"]["aws"] or {}).get("permission") == "permitted", 10,
               "self-test read from an XML answer labelled application/json")
        a.feeder.set_busy(95)
        c.wait(a, lambda: d.reboots() == [IID], 15, "the reboot")
        c.wait(a, lambda: len(sl.messages()) >= 3, 10, "breach, remediating, accepted in Slack")
        c.probe_for(a, 1.0)
        check(len(reboot_calls(d)) == 1, "%d reboot calls: a mislabelled 'accepted' was retried"
              % len(reboot_calls(d)))
        texts = [m["body"]["text"] for m in sl.messages()]
        check(len(texts) == len(set(texts)) and len(sl.requests()) == len(sl.messages()),
              "a Slack answer labelled text/html was taken for a failure: %d requests, %d messages, %d distinct"
              % (len(sl.requests()), len(texts), len(set(texts))))
        a.feeder.set_busy(5)
        c.result("EC2's XML as application/json and Slack's JSON as text/html read for what they are: one reboot "
                 "call, %d Slack posts for %d messages" % (len(sl.requests()), len(texts)))
    finally:
        d.stop()
        sl.stop()


def stop_burner(p):
    if p is None:
        return
    try:
        os.killpg(p.pid, 9)
    except OSError:
        pass
    p.wait(5)


@cell("bodies", "invalid-utf8")
def invalid_utf8(c):
    app = App("nasty")
    d = Aws(credentials={AK: (SECRET, None)}).start()
    sl = Slack().start()
    burner = None
    try:
        a = new_agent(c, "utf8", "")
        a.write_config(extra="[checks]\nurl = %s\nexpect_content = healthy\nattempts = 1\ntimeout = 2s\n\n"
                       % app.url + aws_section(d) + slack_section(a, sl))
        a.start(wait_serving=False)
        # 1. the app's page, quoted in the quarantine alert
        c.wait(a, lambda: any("is quarantined" in m["body"]["text"] for m in sl.messages()), 10,
               "the quarantine alert")
        q = [m for m in sl.messages() if "is quarantined" in m["body"]["text"]][0]
        # the invalid bytes reach Slack as U+FFFD (status keeps the page as
        # text, invalid UTF-8 replaced), escaped in the alert's quote
        check(any(x in q["body"]["text"] for x in ("\\xef\\xbf\\xbd", "\ufffd")),
              "the page is not quoted (escaped) in the alert: %r"
              % q["body"]["text"][:400])
        # 2. text from monkeyctl test-alert: invalid UTF-8 is refused cleanly; the rest is posted, escaped
        r = subprocess.run([MONKEYCTL, "--socket", a.socket, "test-alert", NASTY.replace(b"\x00", b"")],
                           capture_output=True, timeout=20)
        check(r.returncode == 1 and b"utf-8" in r.stderr.lower(), "test-alert with invalid UTF-8: %r" % r.stderr)
        text = NASTY.replace(b"\x00", b"").decode("utf-8", errors="replace").encode("utf-8")
        r = subprocess.run([MONKEYCTL, "--socket", a.socket, "test-alert", text], capture_output=True, timeout=20)
        check(r.returncode == 0, "test-alert: %r" % r.stderr)
        # 3. an EC2 error message that the agent cuts in the middle of a character
        d.error_message = "a" + "\u00e9" * 300
        d.set_allowed(False)
        r = subprocess.run([MONKEYCTL, "--socket", a.socket, "test-reboot"], capture_output=True, timeout=30)
        check(r.returncode == 1 and b"UnauthorizedOperation" in r.stderr + r.stdout, "test-reboot: %r" % r.stderr)
        st = c.probe(a)
        check("UnauthorizedOperation" in (st["remedy"]["aws"]["permission_detail"] or ""), "status %r" % st["remedy"])
        for out in (r.stdout, r.stderr, subprocess.run([MONKEYCTL, "--socket", a.socket, "status"],
                                                       capture_output=True, timeout=10).stdout):
            try:
                out.decode("utf-8")
            except UnicodeDecodeError as e:
                check(False, "monkeyctl printed invalid UTF-8: %s: %r" % (e, out[max(0, e.start - 40):e.end + 10]))
        with open(a.state_json_path(), "rb") as f:
            json.loads(f.read().decode("utf-8"))
        # 4. a process's command line in the breach alert's top processes
        b = new_agent(c, "utf8b", slack_section(a, sl) + "[remedy]\ndry_run = yes\n")
        b.start()
        name = b"burner " + NASTY.replace(b"\x00", b"")
        # bounded by itself (4 s), in its own process group, killed as a group at the end
        burner = subprocess.Popen(["nice", "-n", "10", "bash", "-c", 'exec -a "$0" python3 -c "$1"', name,
                                   "import time\nend = time.monotonic() + 4\nwhile time.monotonic() < end: pass\n"],
                                  stdin=subprocess.DEVNULL, start_new_session=True)
        time.sleep(0.3)
        b.feeder.set_busy(95)
        breach = c.wait(b, lambda: [m for m in sl.messages() if "is overloaded" in m["body"]["text"]], 10,
                        "the breach alert")
        b.feeder.set_busy(5)
        stop_burner(burner)
        listed = "burner" in json.dumps(breach[0]["body"])
        c.probe(b)
        # 5. role credentials whose Code is long and not ASCII (cut at 40 bytes in the message)
        d2 = Aws(credentials={}, role="monkey-role").start()
        try:
            d2.bad_code = True
            e = new_agent(c, "utf8c", "[aws]\nendpoint_url = %s\nimds_url = %s\n\n[remedy]\nladder = reboot-instance\nbudget = none\n"
                          % (d2.endpoint_url, d2.url), env={"HOME": "/nonexistent"})
            e.start()
            c.wait(e, lambda: "Code is" in ((e.status()["remedy"]["aws"] or {}).get("last_error") or ""), 8,
                   "the role credentials' Code in status")
            code_err = e.status()["remedy"]["aws"]["last_error"]
            check("not Success" in code_err, "status %r" % code_err)
        finally:
            d2.stop()
        valid_slack_bodies(sl)
        c.result("the page (quarantine alert), test-alert text, an EC2 message cut mid-character (status, "
                 "monkeyctl, state.json), a non-ASCII role credentials Code (status)%s: %d Slack bodies, all valid "
                 "UTF-8 JSON"
                 % (", the burner's command line (breach alert)" if listed else
                    " (the burner was not in the top 5 this time)", len(sl.requests())))
    finally:
        stop_burner(burner)
        app.stop()
        d.stop()
        sl.stop()


if __name__ == "__main__":
    faultlib.main()
