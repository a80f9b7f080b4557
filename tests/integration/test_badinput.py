#!/usr/bin/env python3
"""Bad input, beyond what test_control (c6) and test_config already throw.

Control socket: requests cut mid-line (then closed, half-closed, or
completed late), NUL bytes, invalid UTF-8 (including what json-c alone lets
through: overlong forms, surrogates), a version that is not an integer or
does not fit, clients that send `watch` or many requests and never read
(the agent neither blocks nor grows: VmRSS stays bounded and other clients
are answered within 100 ms), 200 clients at once (each answered or told
"too many clients", one log line, no leaked fd), an unprivileged user
holding every connection it may (the operator still gets in), and a log
line forged through a drain reason.

Config: every key of agent/core/config.c's table, generated from the table
itself, given a value of the wrong type and an out-of-range one:
`monkeyd --check-config` exits 2 with one line "FILE:LINE: message" naming
the key; then unknown section and key, duplicate key, a line without '=',
a 1 MB line, a NUL byte, invalid UTF-8, and files others may write."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import harness  # noqa: E402
from harness import (MONKEYD, SOURCE_ROOT, Agent, LineReader, check, control_send,  # noqa: E402
                     describe, fail, main, make_tmpdir, wait_until)

STATUS = b'{"version":1,"command":"status"}\n'


# --------------------------------------------------------------------------
# helpers

def connect(a, timeout=3.0):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(a.socket)
    return s


def read_all(s, timeout=3.0):
    """Everything until EOF (or the timeout: then what came so far + None)."""
    s.settimeout(timeout)
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            return out, True
        if not chunk:
            return out, True
        out += chunk
    return out, False


def reply_of(raw):
    line = raw.split(b"\n", 1)[0]
    try:
        return json.loads(line.decode("utf-8"))  # strict: a reply must be UTF-8
    except (UnicodeDecodeError, ValueError) as e:
        fail("reply is not UTF-8 JSON (%s): %r" % (e, line[:200]))


def exchange_raw(s, payload, timeout=3.0):
    s.sendall(payload)
    return LineReader(s).readline(timeout)


def vmrss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1])
    fail("no VmRSS for %d" % pid)


def asan_build():
    """monkeyd built with AddressSanitizer: its freed memory sits in a
    quarantine of up to 256 MiB, which looks like growth to VmRSS."""
    with open(MONKEYD, "rb") as f:
        return b"__asan_init" in f.read()


def rss_margin_kib(a):
    """How much VmRSS may grow in a storm; under ASan with a small
    quarantine (set here) and its allocator's own overhead."""
    if asan_build():
        a.env_extra["ASAN_OPTIONS"] = (os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=4").lstrip(":")
        return 64 * 1024
    return 16 * 1024


def n_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def status_latency(a):
    t = time.monotonic()
    with connect(a, 1.0) as s:
        s.sendall(STATUS)
        r = json.loads(LineReader(s).readline(1.0))
    check(r.get("ok") is True, "status: %r" % r)
    return time.monotonic() - t


def latencies(a, n=20):
    return [status_latency(a) for _ in range(n)]


def still_fine(a, what):
    a.assert_alive()
    harness.check_answer_times(latencies(a, 10), "after %s" % what)


# --------------------------------------------------------------------------
# Control socket

def b1_requests_cut_mid_line():
    with Agent("cut") as a:
        a.start()
        pid = a.proc.pid
        fds = n_fds(pid)

        # cut, then closed: nothing to answer, nothing left behind. The agent
        # is stopped meanwhile so that all of them wait in its backlog: the
        # burst a slow loop meets (CI once refused the next client with "too
        # many clients"). 60 fill the table twice over and still fit in one
        # accept pass, so the half-closed one below comes 61st in that pass.
        os.kill(pid, signal.SIGSTOP)
        try:
            for _ in range(60):
                s = connect(a)
                s.sendall(b'{"version":1,"comm')
                s.close()
            # cut, then half-closed: the fragment is judged as the last request
            s = connect(a)
            s.sendall(b'{"version":1,"command":"sta')
            s.shutdown(socket.SHUT_WR)
        finally:
            os.kill(pid, signal.SIGCONT)
        out, eof = read_all(s)
        s.close()
        r = reply_of(out)
        check(r.get("ok") is False and "not JSON" in r.get("error", "") and eof,
              "half-closed fragment: %r (eof %s)" % (out, eof))
        # cut, then completed late: one request in two writes is one request
        s = connect(a)
        s.sendall(b'{"version":1,"comm')
        time.sleep(0.2)
        r = json.loads(exchange_raw(s, b'and":"status"}\n'))
        check(r.get("ok") is True, "a request sent in two parts: %r" % r)
        # a byte at a time
        for i in range(len(STATUS) - 1):
            s.sendall(STATUS[i:i + 1])
        r = json.loads(exchange_raw(s, STATUS[-1:]))
        check(r.get("ok") is True, "a request sent a byte at a time: %r" % r)
        s.close()
        wait_until(lambda: n_fds(pid) <= fds, 3, what="the agent's fds back to %d (now %d)" % (fds, n_fds(pid)))
        still_fine(a, "cut requests")


def b2_nul_utf8_version():
    with Agent("bytes") as a:
        a.start()
        s = connect(a)
        rd = LineReader(s)
        cases = [
            ("NUL inside the command", b'{"version":1,"command":"sta\x00tus"}', "NUL"),
            ("NUL between members", b'{"version":1,\x00"command":"status"}', "NUL"),
            ("NUL after the object", b'{"version":1,"command":"status"}\x00', "NUL"),
            ("escaped NUL in the reason", b'{"version":1,"command":"drain","reason":"a\\u0000b"}', "NUL"),
            ("a stray continuation byte", b'{"version":1,"command":"drain","reason":"\x80"}', "UTF-8"),
            ("Latin-1", b'{"version":1,"command":"drain","reason":"caf\xe9"}', "UTF-8"),
            ("an overlong '/'", b'{"version":1,"command":"drain","reason":"\xc0\xaf"}', "UTF-8"),
            ("a UTF-16 surrogate", b'{"version":1,"command":"drain","reason":"\xed\xa0\x80"}', "UTF-8"),
            ("above U+10FFFF", b'{"version":1,"command":"drain","reason":"\xf4\x90\x80\x80"}', "UTF-8"),
            ("a cut sequence", b'{"version":1,"command":"drain","reason":"\xe2\x82"}', "UTF-8"),
            ("invalid UTF-8 in a key", b'{"version":1,"comm\xffand":"status"}', "UTF-8"),
            ("invalid UTF-8 in the command", b'{"version":1,"command":"st\xc3\x28tus"}', "UTF-8"),
            ("version as a string", b'{"version":"1","command":"status"}', "not an integer"),
            ("version as a float", b'{"version":1.0,"command":"status"}', "not an integer"),
            ("version with an exponent", b'{"version":1e0,"command":"status"}', "not an integer"),
            ("version as an object", b'{"version":{"major":1},"command":"status"}', "not an integer"),
            ("version as an array", b'{"version":[1],"command":"status"}', "not an integer"),
            ("version as a boolean", b'{"version":true,"command":"status"}', "not an integer"),
            ("version null", b'{"version":null,"command":"status"}', "not an integer"),
            ("version 0", b'{"version":0,"command":"status"}', "unsupported version 0"),
            ("version -1", b'{"version":-1,"command":"status"}', "unsupported version -1"),
            ("version 2^64+1", b'{"version":18446744073709551617,"command":"status"}', "out of range"),
            ("version 10^26", b'{"version":99999999999999999999999999,"command":"status"}', "out of range"),
            ("version -10^26", b'{"version":-99999999999999999999999999,"command":"status"}', "out of range"),
        ]
        for label, payload, want in cases:
            control_send(s, payload)
            line = rd.readline()
            r = reply_of(line.encode())
            check(r.get("ok") is False and want in r.get("error", ""),
                  "%s: want an error containing %r, got %r" % (label, want, r))
            check("9223372036854775807" not in r["error"], "%s: a number nobody sent: %r" % (label, r))
            print("   %-30s -> %s" % (label, r["error"]))
            # the connection stays usable, and nothing was drained
            r = json.loads(exchange_raw(s, STATUS))
            check(r.get("ok") is True and r["status"]["state"] == "SERVING", "after %s: %r" % (label, r))
        s.close()
        # and valid non-ASCII goes through, and comes back as sent
        r = a.request({"version": 1, "command": "drain", "reason": "caf\u00e9 \U0001F412"})
        check(r.get("ok") is True, "a UTF-8 reason: %r" % r)
        check(a.wait_state("MAINTENANCE", 3)[0]["maintenance_reason"] == "caf\u00e9 \U0001F412", "reason mangled")
        still_fine(a, "bad bytes")


def b3_clients_that_never_read():
    """A watcher and a status spammer that never read their sockets, while
    root drains and resumes as fast as it can: the agent answers everyone
    else within 100 ms, memory stays bounded, the watcher is dropped."""
    with Agent("nonreader", window="60s", interval="1s") as a:
        margin = rss_margin_kib(a)
        a.start()
        pid = a.proc.pid
        rss0, fds0 = vmrss_kib(pid), n_fds(pid)

        watcher = connect(a)
        watcher.sendall(b'{"version":1,"command":"watch"}\n')
        spammer = connect(a)
        spammer.setblocking(False)
        burst = STATUS * 2000
        sent = 0
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            try:
                sent += spammer.send(burst)
            except BlockingIOError:
                time.sleep(0.01)
        print("   the spammer got %d KiB of requests in before the agent stopped reading" % (sent // 1024))
        harness.check_answer_times(latencies(a), "while a client does not read")

        # events for the watcher, until it must have fallen 256 KiB behind;
        # a second watcher that reads paces the storm: each drain and resume
        # is a real transition, not a no-op racing the last one
        pacer = connect(a)
        prd = LineReader(pacer)
        control_send(pacer, {"version": 1, "command": "watch"})
        check(json.loads(prd.readline()).get("watching") is True, "the pacer's watch")

        def until(state):
            while json.loads(prd.readline(5))["event"]["to"] != state:
                pass
        root = connect(a)
        rd = LineReader(root)
        lat, t_end, n = [], time.monotonic() + 60 * harness.SLOWDOWN, 0
        log = open(a.log_path, "rb")  # read as it grows: the whole log would be MBs each time
        seen = b""
        while time.monotonic() < t_end:
            # long reasons: fat events, so the watcher falls behind sooner
            root.sendall(b'{"version":1,"command":"drain","reason":"%d %s"}\n' % (n, b"r" * 180))
            rd.readline(5)
            until("MAINTENANCE")
            root.sendall(b'{"version":1,"command":"resume"}\n')
            rd.readline(5)
            until("CHECKING")  # and drain again: CHECKING -> MAINTENANCE is a transition too
            n += 1
            if n % 25 == 0:
                lat.append(status_latency(a))
                seen = seen[-200:] + log.read()
                if b"behind on watch events, dropping it" in seen:
                    break
        log.close()
        root.close()
        pacer.close()
        print("   %d drain/resume cycles; status while they ran: worst %.1f ms" % (n, max(lat) * 1000))
        harness.check_answer_times(lat, "during the event storm")
        a.wait_log(r"behind on watch events, dropping it", 2, "the watcher that never reads dropped")
        out, eof = read_all(watcher, 3)
        check(eof, "the dropped watcher's connection was not closed")
        rss = vmrss_kib(pid)
        print("   VmRSS %d KiB before, %d KiB after (+%d)" % (rss0, rss, rss - rss0))
        check(rss - rss0 < margin, "VmRSS grew by %d KiB" % (rss - rss0))
        watcher.close()
        spammer.close()
        wait_until(lambda: n_fds(pid) <= fds0, 3, what="fds back to %d (now %d)" % (fds0, n_fds(pid)))
        still_fine(a, "clients that never read")


def b4_200_clients_at_once():
    with Agent("herd") as a:
        margin = rss_margin_kib(a) // 2
        a.start()
        pid = a.proc.pid
        fds0, rss0 = n_fds(pid), vmrss_kib(pid)
        results = {}
        lock = threading.Lock()
        go = threading.Event()

        def client(i):
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.settimeout(5)
                go.wait(5)
                s.connect(a.socket)
                try:
                    s.sendall(STATUS)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # refused at once: the error line is still there to read
                line = LineReader(s).readline(5)
                r = json.loads(line) if line else None
                k = "ok" if r and r.get("ok") else (r or {}).get("error", "closed without a word")
            except Exception as e:  # noqa: BLE001 - counted and reported
                k = "exception %s" % type(e).__name__
            with lock:
                results[k] = results.get(k, 0) + 1
            s.close()

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(200)]
        for t in threads:
            t.start()
        go.set()
        for t in threads:
            t.join(15)
        print("   %r" % results)
        check(sum(results.values()) == 200, "not every client finished: %r" % results)
        check(set(results) <= {"ok", "too many clients, try again later"}, "unexpected outcomes: %r" % results)
        check(results.get("ok", 0) >= 28, "too few answered: %r" % results)
        refusals = len(re.findall(r"refusing new ones", a.log_text()))
        check(refusals <= 2, "%d log lines for one burst of refusals" % refusals)
        wait_until(lambda: n_fds(pid) <= fds0, 3, what="fds back to %d (now %d)" % (fds0, n_fds(pid)))
        check(vmrss_kib(pid) - rss0 < margin, "VmRSS grew by %d KiB" % (vmrss_kib(pid) - rss0))
        still_fine(a, "200 clients")


HOLDER = r"""
import socket, sys, time
socks = []
for _ in range(int(sys.argv[2])):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sys.argv[1])
    socks.append(s)
print("holding", flush=True)
sys.stdin.read()
"""


SPAMMER = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
n = int(sys.argv[2])
s.sendall(b'{"version":1,"command":"drain","reason":"flood"}\n' * n)
buf = b""
while buf.count(b"\n") < n:
    chunk = s.recv(65536)
    if not chunk:
        break
    buf += chunk
print(sum(b"permission denied" in ln for ln in buf.splitlines()), flush=True)
"""


def b5_unprivileged_user_floods():
    """nobody sends 500 drains in one go: each is refused, in a handful of
    log lines. Then nobody opens every connection an unprivileged user may
    have: its next one is refused, but root still gets in and can drain."""
    with Agent("slots") as a:
        a.start()
        cp = subprocess.run(harness.NOBODY + [sys.executable, "-c", SPAMMER, a.socket, "500"], capture_output=True,
                            timeout=30, stdin=subprocess.DEVNULL)
        check(cp.stdout.strip() == b"500", "500 drains from nobody: %r %r" % (cp.stdout, cp.stderr[-300:]))
        check(a.state() == "SERVING", "nobody's flood changed the state")
        time.sleep(0.2)
        lines = [ln for ln in a.log_text().splitlines() if "refused 'drain'" in ln]
        print("   500 refusals, %d log lines; the last: %s" % (len(lines), lines[-1] if lines else None))
        check(1 <= len(lines) <= 6, "%d log lines for 500 refusals" % len(lines))

        holder = harness.spawn(harness.NOBODY + [sys.executable, "-c", HOLDER, a.socket, "28"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        line = holder.stdout.readline()
        check(line.strip() == b"holding", "the holder did not connect: %r" % line)
        time.sleep(0.2)
        cp = a.ctl("status", user="nobody")
        check(cp.returncode == 3 and "too many clients" in cp.stderr, "nobody's 29th connection: " + describe(cp))
        cp = a.ctl("drain", "locked", "out?")
        check(cp.returncode == 0, "root locked out by nobody's connections: " + describe(cp))
        a.wait_state("MAINTENANCE", 3)
        cp = a.ctl("resume")
        check(cp.returncode == 0, "resume: " + describe(cp))
        holder.stdin.close()
        holder.wait(5)
        cp = a.ctl("status", user="nobody")
        check(cp.returncode in (0, 1), "nobody after the holder left: " + describe(cp))


def b6_forged_log_line():
    """A drain reason with a newline and an escape sequence stays inside its
    own log line."""
    with Agent("forge") as a:
        a.start()
        r = a.request({"version": 1, "command": "drain", "reason": "x\nerror: FORGED line\x1b[2J\r"})
        check(r.get("ok") is True, "drain: %r" % r)
        a.wait_state("MAINTENANCE", 3)
        time.sleep(0.2)
        log = a.log_text()
        check("FORGED" in log, "the reason is not logged at all")
        forged = [ln for ln in log.splitlines() if ln.startswith("error: FORGED")]
        check(not forged and "\x1b" not in log and "\r" not in log, "a forged log line: %r" % forged)
        print("   %s" % [ln for ln in log.splitlines() if "FORGED" in ln][0][:120])


# --------------------------------------------------------------------------
# Config: every key from the table

def config_table():
    """(section, key, parser, min, max, flags) for every ITEM() in agent/core/config.c."""
    with open(os.path.join(SOURCE_ROOT, "agent", "core", "config.c")) as f:
        text = f.read()
    body = text[text.index("static const ConfigItem config_items[]"):]
    body = body[:body.index("};")]
    rx = re.compile(r'ITEM\("(\w+)",\s*"(\w+)",\s*(\w+),\s*[\w.]+,\s*([^,]+?),\s*([^,]+?),'
                    r'\s*(NULL|"[^"]*"),\s*([^)]*)\)')
    items = rx.findall(body)
    check(len(items) == body.count("ITEM("),
          "parsed %d of %d ITEM() lines in config.c" % (len(items), body.count("ITEM(")))
    names = {"MS": 1000, "SEC": 10**6, "MINUTE": 60 * 10**6, "HOUR": 3600 * 10**6, "DAY": 86400 * 10**6,
             "SUN_PATH_MAX": 107}

    def value(expr):
        e = expr.replace("ULL", "").strip()
        if not re.fullmatch(r"[\w\s*<+()-]+", e):
            fail("cannot evaluate %r from config.c" % expr)
        return int(eval(e, {"__builtins__": {}}, names))  # noqa: S307 - a constant expression from our own source
    return [(s, k, p, value(mn), value(mx), fl) for s, k, p, mn, mx, d, fl in items]


LONG = 250  # longer than inih's line: the reader must still name the key


def bad_values(parser, mn, mx):
    """(wrong type, [out of range...]) for one parser of the table."""
    if parser == "item_duration":
        out = ["%dus" % (mx + 1)] + (["%dus" % (mn - 1)] if mn > 0 else [])
        return "soon", out
    if parser == "item_percent":
        return "ninety", ["%d" % (mx + 1)] + (["0.5"] if mn > 0 else [])
    if parser == "item_unsigned":
        return "ten", ["%d" % (mx + 1)] + (["%d" % (mn - 1)] if mn > 0 else [])
    if parser == "item_size":
        return "big", ["%d" % (mx + 1), "%d" % (mn - 1)]
    if parser == "item_port":
        return "http", ["%d" % (mx + 1), "%d" % (mn - 1)]
    if parser == "item_bool":
        return "maybe", ["2"]
    if parser == "item_log_level":
        return "7", ["trace"]
    if parser == "item_on_unreachable":
        return "1", ["reboot"]
    if parser == "item_group":
        return "two words", ["4294967295", "g" * (mx + 1)]
    if parser == "item_path":
        return "relative/path", ["/" + "p" * (mx if mx else LONG)]
    if parser == "item_word":
        return "two words", ["w" * LONG]
    if parser == "item_name":
        return "a/b", ["n" * LONG]
    if parser == "item_unit":
        return "app", ["u" * LONG + ".service"]
    if parser == "item_url":
        return "example.com/x", ["http://" + "h" * LONG]
    if parser == "item_redis_url":
        return "http://127.0.0.1:6379", ["redis://127.0.0.1:6379/1001", "redis://127.0.0.1:65536/0"]
    if parser == "item_hostport":
        return "localhost", ["127.0.0.1:65536"]
    if parser == "item_ipaddr":
        return "localhost", ["256.0.0.1"]
    if parser == "item_status_set":
        return "ok", ["600", "99-200"]
    if parser == "item_content":
        return "re:(", ["c" * LONG]
    if parser == "item_ladder":
        return "reboot-now", [",".join("restart-unit:a%d.s" % i for i in range(9))]
    if parser == "item_budget":
        return "nobody", ["0"]
    if parser == "item_region":
        return "us-east1", ["r" * LONG + "-1"]
    if parser == "item_instance_id":
        return "0123456789", ["i-" + "0" * 16]
    if parser == "item_target_groups":
        arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef"
        return "web-tg", [arn + ":70000", arn + ", " + arn]
    if parser == "item_autoscaling":
        return "1", ["detach"]
    if parser == "item_http_path":
        return "health", ["/health?x=1", "/" + "p" * LONG]
    fail("no bad values for parser %s: teach test_badinput.py the new type" % parser)


def run_check(path, timeout=10):
    try:
        return subprocess.run([MONKEYD, "--check-config", path], capture_output=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        fail("--check-config %s did not finish within %ds" % (path, timeout))


def expect_refused(path, line, names=None, secret=None, what=""):
    """exit 2, one stderr line PATH:LINE: message (naming `names`)."""
    cp = run_check(path)
    err = cp.stderr.decode("utf-8", errors="strict") if cp.stderr else ""
    lines = err.splitlines()
    check(cp.returncode == 2, "%s: --check-config exit %d, want 2: %r" % (what, cp.returncode, err[:300]))
    check(len(lines) == 1, "%s: want one line on stderr, got %r" % (what, err[:500]))
    m = re.fullmatch(re.escape(path) + r":(\d+): (.+)", lines[0])
    check(m, "%s: %r is not 'FILE:LINE: message'" % (what, lines[0][:300]))
    if line is not None:
        check(int(m.group(1)) == line, "%s: line %s, want %d: %r" % (what, m.group(1), line, lines[0][:300]))
    if names:
        check(names in m.group(2), "%s: the message does not name %r: %r" % (what, names, lines[0][:300]))
    if secret and len(secret) >= 6:
        check(secret not in err, "%s: a secret value is quoted in the error" % what)
    return m.group(2)


def b7_every_key_wrong_type_and_out_of_range():
    d = make_tmpdir("monkey-it-badcfg-")
    path = os.path.join(d, "bad.conf")
    table = config_table()
    sections = sorted({s for s, *_ in table})
    print("   %d keys in %d sections, from agent/core/config.c" % (len(table), len(sections)))
    n = 0
    for section, key, parser, mn, mx, flags in table:
        wrong, ranges = bad_values(parser, mn, mx)
        for kind, value in [("wrong type", wrong)] + [("out of range", v) for v in ranges]:
            harness.atomic_write(path, "# generated: %s\n[%s]\n%s = %s\n" % (kind, section, key, value), mode=0o600)
            # a Redis URL is quoted with only its password hidden (none here)
            secret = value if "SECRET" in flags and parser != "item_redis_url" else None
            msg = expect_refused(path, 3, "[%s] %s" % (section, key), secret,
                                 "[%s] %s = %s (%s)" % (section, key, value[:40], kind))
            n += 1
            if n % 15 == 1:
                print("   %-46s %s" % ("[%s] %s = %s" % (section, key, value[:20]), msg[:110]))
    print("   %d values refused, each naming its key and line" % n)


def b8_broken_files():
    d = make_tmpdir("monkey-it-badcfg-")

    def write(name, data, mode=0o600):
        p = os.path.join(d, name)
        with open(p, "wb") as f:
            f.write(data if isinstance(data, bytes) else data.encode())
        os.chmod(p, mode)
        return p

    base = "[agent]\nhost = h1\n[cpu]\nthreshold = 80\n"
    cases = [
        ("unknown section", base + "[nosuch]\nx = 1\n", 5, "unknown section [nosuch]"),
        ("unknown key", base + "treshold = 80\n", 5, "unknown key 'treshold' in [cpu]"),
        ("duplicate key", base + "threshold = 85\n", 5, "duplicate key 'threshold'"),
        ("duplicate section", base + "[agent]\n", 5, "duplicate section [agent]"),
        ("a line without '='", base + "clear_below 50\n", 5, "syntax error"),
        ("a key outside any section", "threshold = 80\n" + base, 1, "outside of any section"),
        ("an empty value", base + "clear_below =\n", 5, "[cpu] clear_below: empty value"),
        ("a 1 MB value", base + "clear_below = " + "5" * 1000000 + "\n", 5, "[cpu] clear_below: line is too long"),
        ("a 1 MB comment", base + "# " + "c" * 1000000 + "\n", 5, "line is too long"),
        ("a NUL byte", base.encode() + b"clear_below = 5\x000\n", 5, "NUL byte"),
        ("a NUL byte in a comment", b"# \x00\n" + base.encode(), 1, "NUL byte"),
        ("invalid UTF-8 in a value", base.encode() + b"[slack]\nchannel = #caf\xe9\n", 6,
         "[slack] channel: invalid UTF-8"),
        ("an overlong UTF-8 form", base.replace("host = h1", "host = h\xc0\xaf1").encode("latin-1"), 2,
         "[agent] host: invalid UTF-8"),
        ("invalid UTF-8 in a section", b"[ag\xffent]\n", 1, "invalid UTF-8"),
        ("the control group does not exist", base.replace("host = h1", "host = h1\ncontrol_group = no-such-grp-x"),
         3, "[agent] control_group: no such group 'no-such-grp-x'"),
    ]
    for label, text, line, want in cases:
        p = write("broken.conf", text)
        msg = expect_refused(p, line, want, what=label)
        print("   %-34s -> %s" % (label, msg[:100]))

    # still fine: Latin-1 in a comment, and a UTF-8 value
    # (the token file must exist: the config check opens every secret file it names)
    tok = write("slack-token", "xoxb-badinput\n")
    p = write("ok.conf", "# caf\xe9\n".encode("latin-1") + base.encode() + "[slack]\nchannel = #caf\u00e9\n"
              "token_file = {}\n".format(tok).encode())
    cp = run_check(p)
    check(cp.returncode == 0, "a Latin-1 comment and a UTF-8 value: %s" % cp.stderr[-300:])

    # a file others may rewrite, or another user's: refused, naming the file
    for mode, want in ((0o620, "writable by its group"), (0o602, "writable by others")):
        p = write("open.conf", base, mode)
        cp = run_check(p)
        check(cp.returncode == 2 and want in cp.stderr.decode() and p in cp.stderr.decode(),
              "mode %o: %r" % (mode, cp.stderr))
        print("   mode %04o -> %s" % (mode, cp.stderr.decode().strip().replace(d, "D")))
    p = write("theirs.conf", base)
    os.chown(p, 65534, 65534)
    cp = run_check(p)
    check(cp.returncode == 2 and "owned by uid 65534" in cp.stderr.decode(), "another user's file: %r" % cp.stderr)
    print("   owned by nobody -> %s" % cp.stderr.decode().strip().replace(d, "D"))


if __name__ == "__main__":
    main([b1_requests_cut_mid_line, b2_nul_utf8_version, b3_clients_that_never_read, b4_200_clients_at_once,
          b5_unprivileged_user_floods, b6_forged_log_line, b7_every_key_wrong_type_and_out_of_range,
          b8_broken_files])
