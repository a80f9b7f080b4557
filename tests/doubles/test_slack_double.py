#!/usr/bin/env python3
"""Self-test of slack_double.py: every behaviour, over real HTTP, in-process
and as a CLI. One line per case; exit 1 if any case fails. Standard library
only; every wait bounded (the whole run takes a few seconds)."""

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
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import slack_double  # noqa: E402
from slack_double import SlackDouble  # noqa: E402

TOKEN = "xoxb-111-222-selftestselftest"
TS_RE = re.compile(r"^[0-9]{10}\.[0-9]{6}$")


class Fail(AssertionError):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def post(url, body, headers=None, timeout=3.0, raw=False):
    """POST; returns (status, headers, body bytes) for any HTTP status."""
    data = body if raw else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method="POST")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.headers, e.read()


def get(url, timeout=3.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.headers, r.read()


JSON_HDR = {"Content-Type": "application/json; charset=utf-8"}


def api(d, body, token=TOKEN, timeout=3.0, headers=None):
    h = dict(JSON_HDR)
    if token is not None:
        h["Authorization"] = "Bearer " + token
    h.update(headers or {})
    return post(d.url + "/api/chat.postMessage", body, h, timeout)


def api_json(d, body, **kw):
    status, hdrs, raw = api(d, body, **kw)
    check(hdrs.get("Content-Type") == "application/json; charset=utf-8",
          "content-type %r" % hdrs.get("Content-Type"))
    return status, hdrs, json.loads(raw)


def hook(d, body, path=None, ctype="application/json", timeout=3.0):
    return post(d.url + (path or d.webhook_path), body, {"Content-Type": ctype}, timeout)


MSG = {"channel": "#incidents", "text": "web-1 is overloaded"}

# ---------------------------------------------------------------- cases


def case_api_ok(d):
    status, hdrs, r = api_json(d, MSG)
    check(status == 200, "status %d" % status)
    check(r["ok"] is True, r)
    check(r["channel"] == "C0123456789", "channel %r" % r.get("channel"))
    check(TS_RE.match(r["ts"]), "ts %r" % r["ts"])
    m = r["message"]
    check(m["type"] == "message" and m["text"] == MSG["text"] and m["ts"] == r["ts"], m)
    check("thread_ts" not in m, "top-level message has thread_ts")
    check("warning" not in r, "charset was given, no warning expected")
    ms = d.messages()
    check(len(ms) == 1, "messages %d" % len(ms))
    rec = ms[0]
    check(rec["kind"] == "api" and rec["auth_ok"] is True and rec["ts"] == r["ts"], rec)
    check(rec["body"] == MSG and rec["result"] == r and rec["path"] == "/api/chat.postMessage", rec)
    check(isinstance(rec["at"], float) and abs(rec["wall"] - time.time()) < 5, rec)
    check(not any(k.lower() == "authorization" for k in rec["headers"]), "auth header recorded")
    check(TOKEN not in json.dumps(d.requests()), "token leaked into records")
    check(TOKEN not in repr(d), "token in repr")
    return "ts=%s" % r["ts"]


def case_api_by_id_and_blocks(d):
    _, _, r = api_json(d, {"channel": "C0123456789",
                           "blocks": [{"type": "section",
                                       "text": {"type": "mrkdwn", "text": "*x*"}}]})
    check(r["ok"] and r["channel"] == "C0123456789" and r["message"]["blocks"], r)
    # No charset: Slack still answers ok, with a warning the client must ignore.
    _, _, r = api_json(d, MSG, headers={"Content-Type": "application/json"})
    check(r["ok"] and r["warning"] == "missing_charset", r)
    return "blocks-only accepted; missing_charset warning"


def case_thread(d):
    _, _, parent = api_json(d, MSG)
    _, _, r = api_json(d, dict(MSG, text="reply", thread_ts=parent["ts"]))
    check(r["ok"] and r["message"]["thread_ts"] == parent["ts"], r)
    check(r["ts"] != parent["ts"], "reply reused the ts")
    check(d.messages()[-1]["thread_ts"] == parent["ts"], "record thread_ts")
    _, _, r = api_json(d, dict(MSG, text="reply", thread_ts="1234567890.123456"))
    check(r == {"ok": False, "error": "thread_not_found"}, r)
    check(len(d.messages()) == 2, "failed reply counted as delivered")
    return "valid reply threaded; unknown thread_ts -> thread_not_found"


def case_auth(d):
    _, _, r = api_json(d, MSG, token=None)
    check(r == {"ok": False, "error": "not_authed"}, r)
    _, _, r = api_json(d, MSG, token="xoxb-wrong")
    check(r == {"ok": False, "error": "invalid_auth"}, r)
    reqs = d.requests()
    check([q["auth_ok"] for q in reqs] == [False, False], reqs)
    check(d.messages() == [], "failed auth delivered")
    return "not_authed, invalid_auth, auth_ok recorded, nothing delivered"


def case_validation(d):
    status, _, raw = api(d, b"{not json")
    r = json.loads(raw)
    check(status == 200 and r == {"ok": False, "error": "invalid_json"}, r)
    _, _, r = api_json(d, {"text": "no channel"})
    check(r["error"] == "channel_not_found", r)
    _, _, r = api_json(d, {"channel": "#random", "text": "x"})
    check(r["error"] == "channel_not_found", r)
    _, _, r = api_json(d, {"channel": "#incidents"})
    check(r["error"] == "no_text", r)
    status, _, raw = post(d.url + "/api/chat.update", MSG,
                          dict(JSON_HDR, Authorization="Bearer " + TOKEN))
    check(json.loads(raw)["error"] == "unknown_method", raw)
    check(d.messages() == [], "invalid requests delivered")
    return "invalid_json, channel_not_found x2, no_text, unknown_method"


def case_http500(d):
    d.script("http:500")
    status, hdrs, raw = api(d, MSG)
    check(status == 500 and hdrs.get("Content-Type").startswith("text/plain"), (status, raw))
    status, _, raw = api(d, MSG)
    check(status == 200 and json.loads(raw)["ok"], "queue not consumed: %r" % raw)
    check(len(d.requests()) == 2 and len(d.messages()) == 1, "records")
    return "500 plain, next request ok"


def case_ratelimit(d):
    d.script("ratelimit:7")
    status, hdrs, raw = api(d, MSG)
    check(status == 429 and hdrs.get("Retry-After") == "7", (status, dict(hdrs)))
    check(json.loads(raw) == {"ok": False, "error": "ratelimited"}, raw)
    check(d.messages() == [], "rate-limited delivered")
    return "429 Retry-After: 7"


def case_error(d):
    d.script("error:is_archived")
    status, _, raw = api(d, MSG)
    check(status == 200 and json.loads(raw) == {"ok": False, "error": "is_archived"}, raw)
    return "200 ok:false is_archived"


def case_hang(d):
    d.script("hang:3")
    t0 = time.monotonic()
    try:
        api(d, MSG, timeout=0.5)
        raise Fail("hang answered")
    except (socket.timeout, TimeoutError, urllib.error.URLError) as e:
        check("timed out" in str(e) or isinstance(e, (socket.timeout, TimeoutError)), repr(e))
    waited = time.monotonic() - t0
    check(waited < 1.5, "client waited %.2fs" % waited)
    # The hanging handler is still asleep; another connection must not care.
    t1 = time.monotonic()
    status, _, raw = api(d, MSG, timeout=2.0)
    check(status == 200 and json.loads(raw)["ok"], raw)
    check(time.monotonic() - t1 < 1.0, "second request was blocked")
    return "client timed out after %.2fs; next request ok at once" % waited


def case_close(d):
    d.script("close")
    try:
        api(d, MSG, timeout=2.0)
        raise Fail("close answered")
    except (http.client.RemoteDisconnected, ConnectionError, urllib.error.URLError) as e:
        msg = repr(e)
    status, _, _ = api(d, MSG)
    check(status == 200, "after close")
    check(d.requests()[0]["answered"] is False and len(d.messages()) == 1, "records")
    return "no response (%s)" % msg.split("(")[0]


def case_lost_reply(d):
    d.script("lost_reply")
    try:
        api(d, MSG, timeout=2.0)
        raise Fail("lost_reply answered")
    except (http.client.RemoteDisconnected, ConnectionError, urllib.error.URLError):
        pass
    ms = d.messages()
    check(len(ms) == 1 and ms[0]["answered"] is False and TS_RE.match(ms[0]["ts"]), ms)
    return "delivered (ts issued) but unanswered"


def case_garbage(d):
    d.script("garbage")
    status, _, raw = api(d, MSG)
    check(status == 200, status)
    try:
        json.loads(raw)
        raise Fail("garbage parsed as JSON")
    except ValueError:
        pass
    check(d.messages() == [], "garbage delivered")
    return "200 non-JSON"


def case_sticky(d):
    d.set_default("http:503")
    s = [api(d, MSG)[0] for _ in range(3)]
    check(s == [503, 503, 503], s)
    d.script("ok")  # the queue wins over the default
    check(api(d, MSG)[0] == 200, "queued ok")
    check(api(d, MSG)[0] == 503, "default again")
    d.set_default("ok")
    check(api(d, MSG)[0] == 200, "default cleared")
    try:
        d.script("explode")
        raise Fail("bad behaviour accepted")
    except ValueError:
        pass
    return "default 503 sticky, queue overrides, bad behaviour refused"


def case_ts_unique(d):
    tss = [api_json(d, MSG)[2]["ts"] for _ in range(25)]
    check(len(set(tss)) == 25, "duplicate ts")
    keys = [tuple(int(x) for x in t.split(".")) for t in tss]
    check(keys == sorted(keys), "ts not increasing")
    check(all(TS_RE.match(t) for t in tss), tss)
    # A clock that stands still (or steps back) must not repeat a ts.
    frozen = SlackDouble(token=TOKEN, ts_clock=lambda: 1795366800.999999).start()
    try:
        many = [api_json(frozen, MSG)[2]["ts"] for _ in range(5)]
    finally:
        frozen.stop()
    check(many == ["1795366800.999999", "1795366801.000000", "1795366801.000001",
                   "1795366801.000002", "1795366801.000003"], many)
    return "25 unique and increasing; frozen clock still unique"


def case_webhook(d):
    status, hdrs, raw = hook(d, {"text": "hello"})
    check(status == 200 and raw == b"ok" and hdrs.get("Content-Type") == "text/html",
          (status, raw, hdrs.get("Content-Type")))
    status, _, raw = hook(d, {"text": "hello"}, path="/services/T000/B000/nope")
    check((status, raw) == (404, b"no_service"), (status, raw))
    status, _, raw = hook(d, b"{bad")
    check((status, raw) == (400, b"invalid_payload"), (status, raw))
    status, _, raw = hook(d, {"username": "x"})
    check((status, raw) == (400, b"no_text"), (status, raw))
    form = ("payload=" + urllib.parse.quote(json.dumps({"text": "via form"}))).encode()
    status, _, raw = hook(d, form, ctype="application/x-www-form-urlencoded")
    check((status, raw) == (200, b"ok"), (status, raw))
    for behaviour, want in (("error:channel_is_archived", (410, b"channel_is_archived")),
                            ("error:action_prohibited", (403, b"action_prohibited")),
                            ("error:rollup_error", (500, b"rollup_error")),
                            ("http:502", (502, None))):
        d.script(behaviour)
        status, _, raw = hook(d, {"text": "x"})
        check(status == want[0] and (want[1] is None or raw == want[1]), (behaviour, status, raw))
    d.script("ratelimit:3")
    status, hdrs, raw = hook(d, {"text": "x"})
    check((status, raw, hdrs.get("Retry-After")) == (429, b"rate_limited", "3"), (status, raw))
    ms = d.messages()
    check([m["body"]["text"] for m in ms] == ["hello", "via form"], ms)
    check(all(m["kind"] == "webhook" and m["ts"] is None for m in ms), ms)
    check(len(d.requests()) == 10, len(d.requests()))
    return "ok, 404, 400 x2, form payload, 410/403/500/502, 429"


def case_keepalive_expect(d):
    # curl reuses connections and sends Expect: 100-continue for big bodies.
    c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=3)
    h = dict(JSON_HDR, Authorization="Bearer " + TOKEN)
    for _ in range(2):
        c.request("POST", "/api/chat.postMessage", json.dumps(MSG), h)
        r = c.getresponse()
        check(r.status == 200 and json.loads(r.read())["ok"], "keep-alive")
    c.close()
    big = json.dumps(dict(MSG, text="x" * 20000)).encode()
    s = socket.create_connection(("127.0.0.1", d.port), timeout=3)
    try:
        s.sendall(("POST /api/chat.postMessage HTTP/1.1\r\nHost: x\r\n"
                   "Authorization: Bearer %s\r\nContent-Type: application/json; charset=utf-8\r\n"
                   "Content-Length: %d\r\nExpect: 100-continue\r\n\r\n"
                   % (TOKEN, len(big))).encode())
        first = s.recv(64)
        check(first.startswith(b"HTTP/1.1 100"), first)
        s.sendall(big)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(4096)
            check(chunk, "eof")
            buf += chunk
        check(b"HTTP/1.1 200" in buf, buf[:80])
    finally:
        s.close()
    # Chunked upload (what curl does with a read callback of unknown size).
    c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=3)
    c.request("POST", "/api/chat.postMessage",
              body=iter([json.dumps(MSG)[:10].encode(), json.dumps(MSG)[10:].encode()]),
              headers=dict(h, **{"Transfer-Encoding": "chunked"}), encode_chunked=True)
    r = c.getresponse()
    check(r.status == 200 and json.loads(r.read())["ok"], "chunked")
    c.close()
    check(len(d.wait_for_messages(4, 2)) == 4, "count")
    return "keep-alive, Expect: 100-continue, chunked"


def case_curl(d):
    curl = shutil.which("curl")
    if not curl:
        return "SKIP no curl"
    out = subprocess.run(
        [curl, "-sS", "--max-time", "3", "-H", "Authorization: Bearer " + TOKEN,
         "-H", "Content-Type: application/json; charset=utf-8",
         "--data-binary", json.dumps(MSG), "-w", "\n%{http_code}",
         d.url + "/api/chat.postMessage"],
        capture_output=True, text=True, timeout=5)
    body, code = out.stdout.rsplit("\n", 1)
    check(code == "200" and json.loads(body)["ok"], out)
    d.script("close")
    out = subprocess.run([curl, "-sS", "--max-time", "3", "--data-binary", "{}",
                          d.url + "/api/chat.postMessage"],
                         capture_output=True, text=True, timeout=5)
    check(out.returncode == 52, "curl rc %d: %s" % (out.returncode, out.stderr))
    return "curl ok; close -> curl exit 52 (empty reply)"


def case_control_http(d):
    status, _, raw = post(d.url + "/_double/script",
                          {"behaviours": ["error:ratelimited", "http:500"], "default": "ok"})
    check(status == 200 and json.loads(raw)["queue"] == ["error:ratelimited", "http:500"], raw)
    check(json.loads(api(d, MSG)[2])["error"] == "ratelimited", "scripted over HTTP")
    check(api(d, MSG)[0] == 500, "second scripted")
    check(api(d, MSG)[0] == 200, "default")
    _, _, raw = get(d.url + "/_double/messages")
    ms = json.loads(raw)
    check(len(ms) == 1 and ms[0]["body"] == MSG, ms)
    _, _, raw = get(d.url + "/_double/requests")
    check(len(json.loads(raw)) == 3, raw)
    status, _, raw = post(d.url + "/_double/script", {"behaviours": ["nonsense"]})
    check(status == 400 and json.loads(raw)["error"] == "bad_script", raw)
    post(d.url + "/_double/script", {"default": "http:503"})
    check(api(d, MSG)[0] == 503, "default over HTTP")
    status, _, _ = post(d.url + "/_double/reset", b"")
    check(status == 200, status)
    _, _, raw = get(d.url + "/_double/requests")
    check(json.loads(raw) == [], raw)
    check(api(d, MSG)[0] == 200, "reset restores default ok")
    return "script/default/messages/requests/reset"


def case_wait_for(d):
    threading.Timer(0.2, lambda: api(d, MSG)).start()
    t0 = time.monotonic()
    ms = d.wait_for(lambda ms: len(ms) == 1, timeout=3)
    check(len(ms) == 1 and time.monotonic() - t0 < 2, "wait_for")
    t0 = time.monotonic()
    try:
        d.wait_for(lambda ms: len(ms) > 5, timeout=0.3)
        raise Fail("wait_for did not time out")
    except TimeoutError:
        pass
    check(time.monotonic() - t0 < 1.0, "wait_for overran")
    return "wakes on delivery; times out when bounded"


def case_stop_with_hang():
    d = SlackDouble(token=TOKEN).start()
    d.script("hang:60")
    s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
    body = json.dumps(MSG).encode()
    s.sendall(b"POST /api/chat.postMessage HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
              % len(body) + body)
    d.wait_for(lambda rs: len(rs) == 1, timeout=2, source="requests")
    handler_threads = lambda: [t for t in threading.enumerate() if t.name.startswith("Thread-")
                               and "process_request_thread" in repr(getattr(t, "_target", ""))]
    check(len(handler_threads()) >= 1, "no handler thread seen")
    idle = socket.create_connection(("127.0.0.1", d.port), timeout=5)  # idle keep-alive
    t0 = time.monotonic()
    d.stop()
    took = time.monotonic() - t0
    s.close()
    idle.close()
    check(took < 2.0, "stop took %.2fs" % took)
    deadline = time.monotonic() + 1.0
    while handler_threads() and time.monotonic() < deadline:
        time.sleep(0.02)
    check(not handler_threads(), "handler threads still alive after stop")
    return "stop() in %.2fs with a 60 s hang open" % took


def case_cli(tmp):
    state = os.path.join(tmp, "slack.jsonl")
    p = subprocess.Popen([sys.executable, os.path.join(HERE, "slack_double.py"),
                          "--port", "0", "--token", TOKEN, "--state-file", state],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        ready, _, _ = select.select([p.stdout], [], [], 5)
        check(ready, "no listening line within 5 s")
        line = p.stdout.readline().decode()
        m = re.match(r"^listening (http://127\.0\.0\.1:([0-9]+))\n$", line)
        check(m, "first line %r" % line)
        url = m.group(1)

        class U:
            pass
        u = U()
        u.url = url
        status, _, raw = api(u, MSG)
        check(status == 200 and json.loads(raw)["ok"], raw)
        check(json.loads(api(u, MSG, token="bad")[2])["error"] == "invalid_auth", "cli auth")
        post(url + "/_double/script", {"behaviours": ["ratelimit:2"]})
        check(api(u, MSG)[0] == 429, "cli script")
        status, _, raw = post(url + "/services/T000/B000/XXXXXXXX", {"text": "hook"},
                              {"Content-Type": "application/json"})
        check((status, raw) == (200, b"ok"), raw)
        with open(state, encoding="utf-8") as f:
            lines = [json.loads(x) for x in f]
        check([x["kind"] for x in lines] == ["api", "webhook"], lines)
        check(lines[0]["body"] == MSG and TS_RE.match(lines[0]["ts"]), lines[0])
        p.send_signal(signal.SIGTERM)
        rc = p.wait(timeout=3)
        out, err = p.communicate(timeout=2)
        check(rc == 0, "exit %d: %s" % (rc, err))
        check(TOKEN.encode() not in out + err, "token printed")
        with open(state, encoding="utf-8") as f:
            check(TOKEN not in f.read(), "token in state file")
        return "%s; state file has %d lines; SIGTERM -> exit 0" % (url, len(lines))
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=3)


# ---------------------------------------------------------------- runner

PER_DOUBLE = [case_api_ok, case_api_by_id_and_blocks, case_thread, case_auth,
              case_validation, case_http500, case_ratelimit, case_error, case_hang,
              case_close, case_lost_reply, case_garbage, case_sticky, case_ts_unique,
              case_webhook, case_keepalive_expect, case_curl, case_control_http,
              case_wait_for]


def case_rate_per_channel():
    """Slack's ~1 message per second per channel, as 429 + Retry-After."""
    d = SlackDouble(token=TOKEN, rate_per_channel=1.0).start()
    try:
        status, _, first = api_json(d, MSG)
        check(status == 200 and first["ok"], first)
        status, hdrs, raw = api(d, MSG)
        check(status == 429 and hdrs.get("Retry-After") == "1", (status, dict(hdrs)))
        check(json.loads(raw) == {"ok": False, "error": "ratelimited"}, raw)
        check(len(d.messages()) == 1 and d.rate_limited == 1, "delivered while limited")
        time.sleep(1.05)
        status, _, again = api_json(d, MSG)
        check(status == 200 and again["ok"], again)
    finally:
        d.stop()
    return "second message within 1 s: 429 Retry-After: 1; after 1 s: ok"


def main():
    t_start = time.monotonic()
    failed = 0
    tmp = tempfile.mkdtemp(prefix="slack-double-test.")
    try:
        d = SlackDouble(token=TOKEN).start()
        try:
            for case in PER_DOUBLE:
                d.reset()
                failed += run(case.__name__, lambda: case(d))
        finally:
            d.stop()
        failed += run("case_stop_with_hang", case_stop_with_hang)
        failed += run("case_cli", lambda: case_cli(tmp))
        failed += run("case_rate_per_channel", case_rate_per_channel)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    total = len(PER_DOUBLE) + 3
    print("%d passed, %d failed (%.1fs)" % (total - failed, failed, time.monotonic() - t_start))
    return 1 if failed else 0


def run(name, fn):
    t0 = time.monotonic()
    try:
        detail = fn()
    except Exception as e:
        print("FAIL %-28s %s" % (name[5:], e if isinstance(e, Fail) else repr(e)))
        if not isinstance(e, Fail):
            traceback.print_exc()
        sys.stdout.flush()
        return 1
    print("ok   %-28s %s (%.2fs)" % (name[5:], detail, time.monotonic() - t0))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
