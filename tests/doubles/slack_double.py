#!/usr/bin/env python3
"""A Slack test double on 127.0.0.1 that speaks Slack's real wire formats.

It answers the Web API method chat.postMessage (Bearer token, JSON body,
HTTP 200 with {"ok": ...} for every Slack-level outcome, 429 + Retry-After
when rate limited) and incoming webhooks (HTTP status + a short text body:
"ok", "invalid_payload", "no_service", ...), so the agent's parsing is
tested against what Slack actually sends rather than a convenient variant.

Tests steer it with a queue of behaviours, one consumed per POST to /api/ or
/services/ (control requests under /_double/ consume nothing):

    ok                 validate and deliver (what an empty queue gives)
    http:CODE          HTTP CODE with a plain-text body, nothing delivered
    error:NAME         Web API: 200 {"ok":false,"error":NAME};
                       webhook: Slack's status for NAME with text NAME
    ratelimit:SECONDS  429, Retry-After: SECONDS; Web API body
                       {"ok":false,"error":"ratelimited"}, webhook "rate_limited"
    hang:SECONDS       read the request, answer nothing for SECONDS, close
    close              read the request, close without any response
    lost_reply         deliver (ts issued, counted) then close without a
                       response: the "Slack got it but we never heard" case
    garbage            HTTP 200 with a body that is not JSON (nor "ok")

set_default(b) makes a behaviour sticky once the queue is empty.

rate_per_channel=R (CLI --rate-per-channel R) enforces Slack's posting
limit of about one message per second per channel: a chat.postMessage to a
channel that had a message less than 1/R s before is answered 429 with
Retry-After (whole seconds, rounded up, as Slack sends it) and the body
{"ok":false,"error":"ratelimited"}, and nothing is delivered.

Python:  d = SlackDouble(token="xoxb-1"); d.start(); d.url; d.script("http:500");
         d.messages(); d.requests(); d.wait_for(lambda ms: len(ms) >= 2, 5); d.stop()
HTTP:    POST /_double/script {"behaviours": [...], "default": "..."}
         GET /_double/messages, GET /_double/requests, GET /_double/state,
         POST /_double/reset
CLI:     slack_double.py --port N --token xoxb-... --state-file F
         prints "listening http://127.0.0.1:PORT", runs until SIGTERM/SIGINT;
         every delivered message is appended to F as one JSON line.

The token is never stored or printed: records carry only auth_ok, and the
Authorization header is dropped from the recorded headers.

Python 3 standard library only. Every wait is bounded.
"""

import argparse
import http
import http.server
import json
import os
import re
import socket
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from served import ServedDouble, read_body  # noqa: E402

DEFAULT_TOKEN = "xoxb-0000000000-0000000000000-doubledoubledouble"
DEFAULT_CHANNEL_ID = "C0123456789"
DEFAULT_CHANNELS = ("#incidents", DEFAULT_CHANNEL_ID)
DEFAULT_WEBHOOK_PATH = "/services/T000/B000/XXXXXXXX"
BOT_ID = "B0DOUBLE01"

MAX_BODY = 4 * 1024 * 1024
MAX_HANG = 600.0
# Bounds how long an idle keep-alive connection or a slow sender may hold a
# handler thread; stop() also shuts live connections down, so this is only
# the backstop.
SOCKET_TIMEOUT = 5.0

# Incoming webhook errors as Slack documents them (changelog 2016-05-17 and
# the incoming-webhooks page): the HTTP status that carries each text body.
WEBHOOK_ERROR_STATUS = {
    "invalid_payload": 400,
    "user_not_found": 400,
    "no_text": 400,
    "too_many_attachments": 400,
    "no_service_id": 400,
    "no_team": 400,
    "invalid_token": 403,
    "action_prohibited": 403,
    "posting_to_general_channel_denied": 403,
    "channel_not_found": 404,
    "no_service": 404,
    "team_disabled": 404,
    "channel_is_archived": 410,
    "rollup_error": 500,
}

GARBAGE_BODY = (b"<html><head><title>502 Bad Gateway</title></head>"
                b"<body>upstream glitch: this is not JSON</body></html>\n")

_BEHAVIOUR_RE = re.compile(
    r"^(ok|close|garbage|lost_reply|"
    r"http:[1-5][0-9][0-9]|"
    r"error:[a-z0-9_]+|"
    r"ratelimit:[0-9]+|"
    r"hang:[0-9]+(\.[0-9]+)?)$")


def parse_behaviour(b):
    """Return (kind, arg) for a behaviour string, or raise ValueError."""
    if not isinstance(b, str) or not _BEHAVIOUR_RE.match(b):
        raise ValueError("bad behaviour %r" % (b,))
    kind, _, arg = b.partition(":")
    if kind == "http":
        code = int(arg)
        if code < 200:
            # 1xx is not a final response; a client would wait forever.
            raise ValueError("bad behaviour %r: 1xx is not a final status" % b)
        return kind, code
    if kind == "ratelimit":
        return kind, int(arg)
    if kind == "hang":
        secs = float(arg)
        if secs > MAX_HANG:
            raise ValueError("bad behaviour %r: hang is capped at %gs" % (b, MAX_HANG))
        return kind, secs
    return kind, (arg or None)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, addr, handler, double):
        self.double = double
        super().__init__(addr, handler)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = SOCKET_TIMEOUT

    def version_string(self):
        return "slack-double"

    # -- plumbing ---------------------------------------------------------

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
            sys.stderr.write("slack-double: %s\n" % (fmt % args))

    def _send(self, status, body, ctype, extra=None):
        if isinstance(body, str):
            body = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        try:
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            # the client gave up (its timeout, or it was killed): as Slack,
            # we never learn whether it heard us
            self.close_connection = True

    def _send_json(self, status, obj, extra=None):
        self._send(status, json.dumps(obj, separators=(",", ":")),
                   "application/json; charset=utf-8", extra)

    def _read_body(self):
        """Body bytes, or None if it could not be read (the connection is closed)."""
        return read_body(self.rfile, self.headers, MAX_BODY)

    def _headers_without_auth(self):
        out = {}
        for k, v in self.headers.items():
            if k.lower() == "authorization":
                continue
            out[k] = (out[k] + ", " + v) if k in out else v
        return out

    # -- dispatch ---------------------------------------------------------

    def do_GET(self):
        d = self.server.double
        path = urllib.parse.urlsplit(self.path).path
        if path == "/_double/messages":
            self._send_json(200, d.messages())
        elif path == "/_double/requests":
            self._send_json(200, d.requests())
        elif path == "/_double/state":
            self._send_json(200, d.state())
        else:
            self._send(404, "not found\n", "text/plain; charset=utf-8")

    def do_POST(self):
        d = self.server.double
        path = urllib.parse.urlsplit(self.path).path
        body = self._read_body()
        if body is None:
            self.close_connection = True
            self._send(400, "bad request body\n", "text/plain; charset=utf-8",
                       {"Connection": "close"})
            return
        if path.startswith("/_double/"):
            self._control(path, body)
        elif path.startswith("/api/"):
            self._api(path, body)
        elif path.startswith("/services/"):
            self._webhook(path, body)
        else:
            self._send(404, "not found\n", "text/plain; charset=utf-8")

    def do_PUT(self):
        self._send(405, "method not allowed\n", "text/plain; charset=utf-8")

    do_DELETE = do_PUT

    # -- control ----------------------------------------------------------

    def _control(self, path, body):
        d = self.server.double
        if path == "/_double/reset":
            d.reset()
            self._send_json(200, {"ok": True})
            return
        if path == "/_double/script":
            try:
                req = json.loads(body.decode("utf-8") or "{}")
                if not isinstance(req, dict):
                    raise ValueError("not an object")
                behaviours = req.get("behaviours", [])
                if not isinstance(behaviours, list):
                    raise ValueError("behaviours must be a list")
                for b in behaviours:
                    parse_behaviour(b)
                if "default" in req and req["default"] is not None:
                    parse_behaviour(req["default"])
            except (ValueError, UnicodeDecodeError) as e:
                self._send_json(400, {"ok": False, "error": "bad_script", "detail": str(e)})
                return
            if "default" in req and req["default"] is not None:
                d.set_default(req["default"])
            d.script(*behaviours)
            self._send_json(200, {"ok": True, **d.state()})
            return
        self._send(404, "not found\n", "text/plain; charset=utf-8")

    # -- the Web API ------------------------------------------------------

    def _auth_state(self):
        h = self.headers.get("Authorization")
        if h is None:
            return "missing"
        scheme, _, cred = h.strip().partition(" ")
        cred = cred.strip()
        if scheme.lower() != "bearer" or not cred:
            return "missing" if not cred else "invalid"
        return "ok" if cred == self.server.double._token else "invalid"

    def _parse_api_body(self, body):
        """The request's arguments as a dict, or None when the body is not
        parseable the way its Content-Type says."""
        ctype = (self.headers.get("Content-Type") or "").lower()
        if ctype.startswith("application/x-www-form-urlencoded"):
            try:
                form = urllib.parse.parse_qs(body.decode("utf-8"), strict_parsing=False)
            except UnicodeDecodeError:
                return None
            args = {k: v[-1] for k, v in form.items()}
            if "blocks" in args:
                try:
                    args["blocks"] = json.loads(args["blocks"])
                except ValueError:
                    pass
            return args
        try:
            obj = json.loads(body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return None
        return obj if isinstance(obj, dict) else None

    def _api(self, path, body):
        d = self.server.double
        kind, arg = d._next_behaviour()
        auth = self._auth_state()
        parsed = self._parse_api_body(body)
        rec = d._new_record(path, "api", auth == "ok", self._headers_without_auth(),
                            body, parsed, "%s:%s" % (kind, arg) if arg is not None else kind)

        if kind != "ok" and kind != "lost_reply":
            self._misbehave(rec, kind, arg, webhook=False)
            return

        method = path[len("/api/"):]
        if method != "chat.postMessage":
            self._api_answer(rec, {"ok": False, "error": "unknown_method"})
            return
        if auth == "missing":
            self._api_answer(rec, {"ok": False, "error": "not_authed"})
            return
        if auth == "invalid":
            self._api_answer(rec, {"ok": False, "error": "invalid_auth"})
            return
        if parsed is None:
            self._api_answer(rec, {"ok": False, "error": "invalid_json"})
            return
        channel = parsed.get("channel")
        if not isinstance(channel, str) or not channel:
            self._api_answer(rec, {"ok": False, "error": "channel_not_found"})
            return
        channel_id = d._resolve_channel(channel)
        if channel_id is None:
            self._api_answer(rec, {"ok": False, "error": "channel_not_found"})
            return
        text = parsed.get("text")
        blocks = parsed.get("blocks")
        attachments = parsed.get("attachments")
        if not text and not blocks and not attachments:
            self._api_answer(rec, {"ok": False, "error": "no_text"})
            return
        thread_ts = parsed.get("thread_ts")
        if thread_ts is not None:
            thread_ts = str(thread_ts)
            if not d._issued(thread_ts):
                rec["thread_ts"] = thread_ts
                self._api_answer(rec, {"ok": False, "error": "thread_not_found"})
                return

        wait = d._rate_wait(channel_id)
        if wait > 0:
            hdr = {"Retry-After": str(max(1, int(-(-wait // 1))))}
            answer = {"ok": False, "error": "ratelimited"}
            rec.update(status=429, result=answer, answered=True, rate_limited=True)
            d._finish_record(rec)
            self._send_json(429, answer, hdr)
            return

        ts = d._issue_ts()
        message = {"type": "message", "subtype": "bot_message", "text": text or "",
                   "ts": ts, "bot_id": BOT_ID, "username": "Doctor Monkey"}
        if blocks:
            message["blocks"] = blocks
        if attachments:
            message["attachments"] = attachments
        if thread_ts is not None:
            message["thread_ts"] = thread_ts
            message["parent_user_id"] = "U0DOUBLE01"
        answer = {"ok": True, "channel": channel_id, "ts": ts, "message": message}
        ctype = (self.headers.get("Content-Type") or "").lower()
        if ctype.startswith("application/json") and "charset" not in ctype:
            # Slack really does add this to otherwise successful answers; a
            # client must tolerate fields it does not know.
            answer["warning"] = "missing_charset"
            answer["response_metadata"] = {"warnings": ["missing_charset"]}
        rec["ts"] = ts
        rec["channel_id"] = channel_id
        if thread_ts is not None:
            rec["thread_ts"] = thread_ts
        if kind == "lost_reply":
            rec["status"] = None
            rec["result"] = None
            rec["answered"] = False
            d._finish_record(rec, delivered=True)
            self.close_connection = True
            return
        self._api_answer(rec, answer, delivered=True)

    def _api_answer(self, rec, answer, delivered=False):
        rec["status"] = 200
        rec["result"] = answer
        rec["answered"] = True
        self.server.double._finish_record(rec, delivered=delivered)
        self._send_json(200, answer)

    # -- incoming webhooks ------------------------------------------------

    def _parse_webhook_body(self, body):
        ctype = (self.headers.get("Content-Type") or "").lower()
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return None
        if ctype.startswith("application/x-www-form-urlencoded"):
            form = urllib.parse.parse_qs(text)
            if "payload" not in form:
                return None
            text = form["payload"][-1]
        try:
            obj = json.loads(text)
        except ValueError:
            return None
        return obj if isinstance(obj, dict) else None

    def _webhook(self, path, body):
        d = self.server.double
        kind, arg = d._next_behaviour()
        known = path == d.webhook_path
        parsed = self._parse_webhook_body(body)
        rec = d._new_record(path, "webhook", known, self._headers_without_auth(),
                            body, parsed, "%s:%s" % (kind, arg) if arg is not None else kind)
        if kind != "ok" and kind != "lost_reply":
            self._misbehave(rec, kind, arg, webhook=True)
            return
        if not known:
            self._webhook_answer(rec, 404, "no_service")
            return
        if parsed is None:
            self._webhook_answer(rec, 400, "invalid_payload")
            return
        if not parsed.get("text") and not parsed.get("blocks") and not parsed.get("attachments"):
            self._webhook_answer(rec, 400, "no_text")
            return
        if kind == "lost_reply":
            rec["status"] = None
            rec["result"] = None
            rec["answered"] = False
            d._finish_record(rec, delivered=True)
            self.close_connection = True
            return
        self._webhook_answer(rec, 200, "ok", delivered=True)

    def _webhook_answer(self, rec, status, text, delivered=False, extra=None):
        rec["status"] = status
        rec["result"] = text
        rec["answered"] = True
        self.server.double._finish_record(rec, delivered=delivered)
        self._send(status, text, "text/html", extra)

    # -- scripted failures ------------------------------------------------

    def _misbehave(self, rec, kind, arg, webhook):
        d = self.server.double
        if kind == "http":
            text = "%d %s\n" % (arg, _phrase(arg))
            rec.update(status=arg, result=text, answered=True)
            d._finish_record(rec)
            self._send(arg, text, "text/plain; charset=utf-8")
        elif kind == "error":
            if webhook:
                self._webhook_answer(rec, WEBHOOK_ERROR_STATUS.get(arg, 400), arg)
            else:
                self._api_answer(rec, {"ok": False, "error": arg})
        elif kind == "ratelimit":
            hdr = {"Retry-After": str(arg)}
            if webhook:
                self._webhook_answer(rec, 429, "rate_limited", extra=hdr)
            else:
                answer = {"ok": False, "error": "ratelimited"}
                rec.update(status=429, result=answer, answered=True)
                d._finish_record(rec)
                self._send_json(429, answer, hdr)
        elif kind == "garbage":
            rec.update(status=200, result=GARBAGE_BODY.decode(), answered=True)
            d._finish_record(rec)
            self._send(200, GARBAGE_BODY, "text/html; charset=utf-8")
        elif kind == "close":
            rec.update(status=None, result=None, answered=False)
            d._finish_record(rec)
            self.close_connection = True
        elif kind == "hang":
            rec.update(status=None, result=None, answered=False)
            d._finish_record(rec)
            # Wake early on stop() so shutdown never waits for a hang.
            d._stopping.wait(arg)
            self.close_connection = True
        else:  # parse_behaviour keeps this unreachable
            raise AssertionError(kind)


def _phrase(code):
    try:
        return http.HTTPStatus(code).phrase
    except ValueError:
        return "Status"


class SlackDouble(ServedDouble):
    """The double. Thread-safe; every public method may be called from any
    thread while the server runs."""

    _server_class = _Server
    _handler_class = _Handler
    _thread_name = "slack-double"

    def __init__(self, token=DEFAULT_TOKEN, port=0, channels=DEFAULT_CHANNELS,
                 channel_id=DEFAULT_CHANNEL_ID, webhook_path=DEFAULT_WEBHOOK_PATH,
                 state_file=None, requests_file=None, verbose=False, ts_clock=time.time,
                 rate_per_channel=None):
        if not token:
            raise ValueError("token must not be empty")
        if not webhook_path.startswith("/services/"):
            raise ValueError("webhook_path must start with /services/")
        self._token = token
        self._port = port
        self.channels = frozenset(channels)
        self.channel_id = channel_id
        self.webhook_path = webhook_path
        self.state_file = state_file
        self.requests_file = requests_file
        self.verbose = verbose
        # Injectable so a test can freeze it and see ts stay unique anyway.
        self._ts_clock = ts_clock
        self.rate_per_channel = rate_per_channel
        self._last_post = {}  # channel id -> time.monotonic() of its last delivered message
        self.rate_limited = 0

        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._queue = []
        self._default = ("ok", None)
        self._messages = []
        self._requests = []
        self._issued_ts = set()
        self._last_ts = (0, 0)
        self._conns = set()
        self._stopping = threading.Event()
        self._server = None
        self._thread = None
        self.url = None
        self.port = None

    def __repr__(self):
        # Never the token.
        return "<SlackDouble %s>" % (self.url or "not started")

    # -- life cycle -------------------------------------------------------


    @property
    def webhook_url(self):
        return self.url + self.webhook_path if self.url else None

    @property
    def api_url(self):
        """What `[slack] api_url` should be: Slack's is https://slack.com/api/."""
        return self.url + "/api/" if self.url else None

    # -- scripting --------------------------------------------------------

    def script(self, *behaviours):
        parsed = [parse_behaviour(b) for b in behaviours]
        with self._lock:
            self._queue.extend(parsed)

    def set_default(self, behaviour):
        parsed = parse_behaviour(behaviour)
        with self._lock:
            self._default = parsed

    def reset(self):
        with self._cond:
            self._queue.clear()
            self._default = ("ok", None)
            self._messages.clear()
            self._requests.clear()
            self._issued_ts.clear()
            self._last_post.clear()
            self.rate_limited = 0
            self._cond.notify_all()

    def state(self):
        with self._lock:
            return {"queue": [_fmt(b) for b in self._queue],
                    "default": _fmt(self._default),
                    "messages": len(self._messages),
                    "requests": len(self._requests)}

    # -- what was received ------------------------------------------------

    def messages(self):
        with self._lock:
            return json.loads(json.dumps(self._messages))

    def requests(self):
        with self._lock:
            return json.loads(json.dumps(self._requests))

    def wait_for(self, predicate, timeout=5.0, source="messages"):
        """Block until predicate(list) is true for messages() (or requests()
        with source="requests"); return that list. TimeoutError after
        timeout seconds."""
        if source not in ("messages", "requests"):
            raise ValueError("source must be messages or requests")
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                snap = json.loads(json.dumps(
                    self._messages if source == "messages" else self._requests))
                if predicate(snap):
                    return snap
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("slack double: condition not met within %.1fs "
                                       "(%d %s)" % (timeout, len(snap), source))
                self._cond.wait(left)

    def wait_for_messages(self, n, timeout=5.0):
        return self.wait_for(lambda ms: len(ms) >= n, timeout)

    # -- internals used by the handler ------------------------------------


    def _next_behaviour(self):
        with self._lock:
            if self._queue:
                return self._queue.pop(0)
            return self._default

    def _resolve_channel(self, channel):
        if channel not in self.channels:
            return None
        # Slack answers with the channel's ID even when given its name.
        if re.match(r"^[CGD][A-Z0-9]{8,}$", channel):
            return channel
        return self.channel_id

    def _rate_wait(self, channel_id):
        """Seconds until channel_id may take a message (0: now, and the
        slot is taken)."""
        if not self.rate_per_channel:
            return 0
        with self._lock:
            now = time.monotonic()
            last = self._last_post.get(channel_id)
            gap = 1.0 / self.rate_per_channel
            if last is not None and now - last < gap:
                self.rate_limited += 1
                return gap - (now - last)
            self._last_post[channel_id] = now
            return 0

    def _issue_ts(self):
        with self._lock:
            now = self._ts_clock()
            sec = int(now)
            usec = int((now - sec) * 1_000_000)
            if (sec, usec) <= self._last_ts:
                sec, usec = self._last_ts
                usec += 1
                if usec >= 1_000_000:
                    sec, usec = sec + 1, 0
            self._last_ts = (sec, usec)
            ts = "%d.%06d" % (sec, usec)
            self._issued_ts.add(ts)
            return ts

    def _issued(self, ts):
        with self._lock:
            return ts in self._issued_ts

    def _new_record(self, path, kind, auth_ok, headers, raw, parsed, behaviour):
        try:
            raw_text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raw_text = raw.decode("latin-1")
        return {"at": time.monotonic(), "wall": time.time(), "path": path,
                "method": "POST", "kind": kind, "auth_ok": bool(auth_ok),
                "headers": headers, "raw_body": raw_text, "body": parsed,
                "behaviour": behaviour, "ts": None, "thread_ts": None,
                "status": None, "result": None, "answered": False, "delivered": False}

    def _finish_record(self, rec, delivered=False):
        rec["delivered"] = delivered
        line = json.dumps(rec, separators=(",", ":")) + "\n"
        with self._cond:
            self._requests.append(rec)
            if delivered:
                self._messages.append(rec)
                if self.state_file:
                    _append(self.state_file, line)
            if self.requests_file:
                _append(self.requests_file, line)
            self._cond.notify_all()


def _fmt(b):
    kind, arg = b
    return kind if arg is None else "%s:%s" % (kind, arg)


def _append(path, line):
    # One write() on an O_APPEND descriptor: a reader never sees half a line
    # from two interleaved writers.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)


def main(argv=None):
    p = argparse.ArgumentParser(description="Slack API test double (loopback only)")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--token", default=None, help="bot token the Web API accepts")
    p.add_argument("--token-file", default=None, help="read the token from this file")
    p.add_argument("--channel", action="append", default=None,
                   help="known channel (repeatable); default #incidents and C0123456789")
    p.add_argument("--channel-id", default=DEFAULT_CHANNEL_ID,
                   help="ID answered for channels given by name")
    p.add_argument("--webhook-path", default=DEFAULT_WEBHOOK_PATH)
    p.add_argument("--state-file", default=None,
                   help="append every delivered message here as one JSON line")
    p.add_argument("--requests-file", default=None,
                   help="append every request (failed ones too) here as one JSON line")
    p.add_argument("--script", action="append", default=[], help="queue a behaviour")
    p.add_argument("--default", default=None, help="sticky behaviour once the queue is empty")
    p.add_argument("--rate-per-channel", type=float, default=None,
                   help="messages per second per channel before 429 + Retry-After (Slack: about 1)")
    p.add_argument("--verbose", action="store_true")
    a = p.parse_args(argv)

    token = a.token
    if a.token_file:
        with open(a.token_file, encoding="utf-8") as f:
            token = f.read().strip()
    if not token:
        token = DEFAULT_TOKEN

    try:
        d = SlackDouble(token=token, port=a.port,
                        channels=a.channel or DEFAULT_CHANNELS, channel_id=a.channel_id,
                        webhook_path=a.webhook_path, state_file=a.state_file,
                        requests_file=a.requests_file, verbose=a.verbose,
                        rate_per_channel=a.rate_per_channel)
        d.script(*a.script)
        if a.default:
            d.set_default(a.default)
    except ValueError as e:
        p.error(str(e))

    return d.serve_until_signal()


if __name__ == "__main__":
    sys.exit(main())
