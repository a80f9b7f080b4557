#!/usr/bin/env python3
"""Self-test of systemd_double (systemd1 + login1 managers) on a private bus
from dbus_bus.py. Calls go through busctl, through `busctl monitor`, and
through a tiny D-Bus client below that keeps one connection open, as the
agent does (Subscribe, match JobRemoved, RestartUnit, wait). One line per
case; exit 1 if any case fails. Standard library only; every wait bounded.

The double is $SYSTEMD_DOUBLE, else found in the build tree, else compiled
here with gcc. SYSTEMD_DOUBLE_WRAPPER (e.g. "valgrind --leak-check=full
--error-exitcode=99") runs it under a checker."""

import json
import os
import shlex
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from dbus_bus import PrivateBus, SystemdDouble, find_systemd_double  # noqa: E402

SD = ("org.freedesktop.systemd1", "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager")
LOGIN = ("org.freedesktop.login1", "/org/freedesktop/login1", "org.freedesktop.login1.Manager")
JOB_MATCH = ("type='signal',sender='org.freedesktop.systemd1',path='/org/freedesktop/systemd1',"
             "interface='org.freedesktop.systemd1.Manager',member='JobRemoved'")
WRAPPER = shlex.split(os.environ.get("SYSTEMD_DOUBLE_WRAPPER", ""))
SLOW = 4.0 if WRAPPER else 1.0


class Fail(AssertionError):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


# ---- a minimal D-Bus client (little endian, basic types, arrays, structs, variants)

_ALIGN = {"y": 1, "b": 4, "n": 2, "q": 2, "i": 4, "u": 4, "x": 8, "t": 8, "d": 8, "s": 4, "o": 4, "g": 1,
          "v": 1, "a": 4, "(": 8, "{": 8, "h": 4}
_FIXED = {"y": "B", "b": "I", "n": "h", "q": "H", "i": "i", "u": "I", "x": "q", "t": "Q", "d": "d", "h": "I"}


def _type_end(sig, i):
    """Index just past the complete type starting at sig[i]."""
    c = sig[i]
    if c == "a":
        return _type_end(sig, i + 1)
    if c in "({":
        close = ")" if c == "(" else "}"
        i += 1
        while sig[i] != close:
            i = _type_end(sig, i)
        return i + 1
    return i + 1


def _split(sig):
    out, i = [], 0
    while i < len(sig):
        j = _type_end(sig, i)
        out.append(sig[i:j])
        i = j
    return out


class _Writer:
    def __init__(self):
        self.buf = bytearray()

    def align(self, n):
        self.buf += b"\0" * (-len(self.buf) % n)

    def put(self, t, v):
        c = t[0]
        self.align(_ALIGN[c])
        if c in _FIXED:
            self.buf += struct.pack("<" + _FIXED[c], (1 if v else 0) if c == "b" else v)
        elif c in "so":
            b = v.encode()
            self.buf += struct.pack("<I", len(b)) + b + b"\0"
        elif c == "g":
            b = v.encode()
            self.buf += struct.pack("<B", len(b)) + b + b"\0"
        elif c == "v":
            self.put("g", v[0])
            self.put(v[0], v[1])
        elif c in "({":
            for st, sv in zip(_split(t[1:-1]), v):
                self.put(st, sv)
        else:  # array
            at = len(self.buf)
            self.buf += b"\0\0\0\0"
            self.align(_ALIGN[t[1]])
            start = len(self.buf)
            for e in v:
                self.put(t[1:], e)
            struct.pack_into("<I", self.buf, at, len(self.buf) - start)


class _Reader:
    def __init__(self, buf, pos=0):
        self.buf, self.pos = buf, pos

    def get(self, t):
        c = t[0]
        self.pos += -self.pos % _ALIGN[c]
        if c in _FIXED:
            f = "<" + _FIXED[c]
            (v,) = struct.unpack_from(f, self.buf, self.pos)
            self.pos += struct.calcsize(f)
            return bool(v) if c == "b" else v
        if c in "so":
            (n,) = struct.unpack_from("<I", self.buf, self.pos)
            v = self.buf[self.pos + 4:self.pos + 4 + n].decode()
            self.pos += 4 + n + 1
            return v
        if c == "g":
            n = self.buf[self.pos]
            v = self.buf[self.pos + 1:self.pos + 1 + n].decode()
            self.pos += 1 + n + 1
            return v
        if c == "v":
            sig = self.get("g")
            return sig, self.get(sig)
        if c in "({":
            return tuple(self.get(st) for st in _split(t[1:-1]))
        (n,) = struct.unpack_from("<I", self.buf, self.pos)
        self.pos += 4
        self.pos += -self.pos % _ALIGN[t[1]]
        end, out = self.pos + n, []
        while self.pos < end:
            out.append(self.get(t[1:]))
        return out


class DBusError(Exception):
    def __init__(self, name, message):
        super().__init__("%s: %s" % (name, message))
        self.name, self.message = name, message


class Client:
    """One connection; call() waits for its reply, keeping signals for wait_signal()."""

    def __init__(self, socket_path, timeout=3.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(socket_path)
        self.rbuf = b""
        self.serial = 0
        self.signals = []
        self.sock.sendall(b"\0AUTH EXTERNAL " + str(os.getuid()).encode().hex().encode() + b"\r\n")
        line = self._line()
        check(line.startswith(b"OK "), "auth refused: %r" % line)
        self.sock.sendall(b"BEGIN\r\n")
        self.unique_name = self.call("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                                     "Hello")[0]

    def close(self):
        self.sock.close()

    def _line(self):
        while b"\r\n" not in self.rbuf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise Fail("bus closed during auth")
            self.rbuf += chunk
        line, self.rbuf = self.rbuf.split(b"\r\n", 1)
        return line

    def _need(self, n):
        while len(self.rbuf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise Fail("bus closed the connection")
            self.rbuf += chunk

    def _read_message(self):
        self._need(16)
        check(self.rbuf[0:1] == b"l", "big-endian message")
        mtype, body_len, serial, fields_len = self.rbuf[1], *struct.unpack_from("<III", self.rbuf, 4)
        header_len = 16 + fields_len + (-(16 + fields_len) % 8)
        self._need(header_len + body_len)
        raw, self.rbuf = self.rbuf[:header_len + body_len], self.rbuf[header_len + body_len:]
        fields = {code: val for code, (_, val) in _Reader(raw, 12).get("a(yv)")}
        sig = fields.get(8, "")
        r = _Reader(raw[header_len:])
        body = tuple(r.get(t) for t in _split(sig))
        return {"type": mtype, "serial": serial, "path": fields.get(1), "interface": fields.get(2),
                "member": fields.get(3), "error": fields.get(4), "reply_serial": fields.get(5),
                "sender": fields.get(7), "signature": sig, "body": body, "at": time.monotonic()}

    def send_call(self, dest, path, iface, member, sig="", args=()):
        self.serial += 1
        body = _Writer()
        for t, v in zip(_split(sig), args):
            body.put(t, v)
        fields = [(1, ("o", path)), (3, ("s", member)), (6, ("s", dest))]
        if iface:
            fields.append((2, ("s", iface)))
        if sig:
            fields.append((8, ("g", sig)))
        h = _Writer()
        for t, v in (("y", ord("l")), ("y", 1), ("y", 0), ("y", 1), ("u", len(body.buf)), ("u", self.serial),
                     ("a(yv)", fields)):
            h.put(t, v)
        h.align(8)
        self.sock.sendall(bytes(h.buf + body.buf))
        return self.serial

    def call(self, dest, path, iface, member, sig="", args=()):
        serial = self.send_call(dest, path, iface, member, sig, args)
        while True:
            m = self._read_message()
            if m["type"] == 4:
                self.signals.append(m)
            elif m["reply_serial"] == serial:
                if m["type"] == 3:
                    raise DBusError(m["error"], m["body"][0] if m["body"] else "")
                return m["body"]

    def wait_signal(self, pred, timeout):
        deadline = time.monotonic() + timeout
        while True:
            for i, m in enumerate(self.signals):
                if pred(m):
                    return self.signals.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                m = self._read_message()
            except socket.timeout:
                return None
            finally:
                self.sock.settimeout(3.0)
            if m["type"] == 4:
                self.signals.append(m)


def is_job_removed(path):
    return lambda m: m["member"] == "JobRemoved" and m["body"][1] == path


def expect_error(fn, name, message=None):
    try:
        fn()
    except DBusError as e:
        check(e.name == name, "error %s, wanted %s" % (e.name, name))
        if message is not None:
            check(e.message == message, "message %r, wanted %r" % (e.message, message))
        return e
    raise Fail("call succeeded, wanted %s" % name)


# ---- helpers


def busctl(bus, *args, timeout=5.0):
    return subprocess.run(["busctl", "--address=" + bus.address] + list(args), capture_output=True, text=True,
                          timeout=timeout)


STARTED = []  # every double that should end with exit 0 (a checker's error exit shows up here)


def double(binary, bus, *args):
    d = SystemdDouble(WRAPPER + [binary] if WRAPPER else binary, bus, list(args), start_timeout=5.0 * SLOW)
    STARTED.append(d)
    return d


def case_all_exited_0(_ctx):
    bad = [(d.args, d.returncode, d.stderr_text()) for d in STARTED if d.returncode != 0]
    check(not bad, "doubles that did not exit 0: %s" % bad)


def restart(c, unit="app.service", mode="replace"):
    return c.call(*SD, "RestartUnit", "ss", (unit, mode))[0]


def build_double(tmp):
    found = find_systemd_double()
    if found:
        return found
    out = os.path.join(tmp, "systemd_double")
    src = os.path.join(HERE, "systemd_double.c")
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "libsystemd"], capture_output=True, text=True,
                           check=True).stdout.split()
    subprocess.run(["gcc", "-std=c17", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror", "-Wshadow", "-Wformat=2",
                    "-Wmissing-prototypes", "-Wstrict-prototypes", "-Wvla", src, "-o", out] + flags, check=True,
                   timeout=60)
    return out


# ---- cases


def case_bus(ctx):
    bus = ctx["bus"]
    check(bus.address == "unix:path=" + bus.socket_path, bus.address)
    check(bus.env() == {"DBUS_SYSTEM_BUS_ADDRESS": bus.address}, str(bus.env()))
    check(os.path.exists(bus.socket_path), "no socket")
    names = busctl(bus, "--json=short", "list")
    check(names.returncode == 0, names.stderr)
    owned = {n["name"] for n in json.loads(names.stdout)}
    check({"org.freedesktop.systemd1", "org.freedesktop.login1"} <= owned, "names not owned: %s" % owned)


def case_restart_busctl(ctx):
    bus, d = ctx["bus"], ctx["d"]
    mon = subprocess.Popen(["busctl", "--address=" + bus.address, "--json=short", "monitor",
                            "org.freedesktop.systemd1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # busctl prints this once BecomeMonitor succeeded
        deadline = time.monotonic() + 3
        line = b""
        while b"Monitoring" not in line and time.monotonic() < deadline:
            line = mon.stderr.readline()
        check(b"Monitoring" in line, "busctl monitor did not start")
        r = busctl(bus, "call", *SD, "RestartUnit", "ss", "app.service", "replace")
        check(r.returncode == 0, r.stderr)
        check(r.stdout.strip().startswith('o "/org/freedesktop/systemd1/job/'), r.stdout)
        job = r.stdout.strip()[3:-1]
        seen = None
        deadline = time.monotonic() + 3 * SLOW
        os.set_blocking(mon.stdout.fileno(), False)
        buf = b""
        while seen is None and time.monotonic() < deadline:
            chunk = mon.stdout.read() or b""
            buf += chunk
            for l in buf.split(b"\n")[:-1]:
                m = json.loads(l)
                if m.get("member") == "JobRemoved":
                    seen = m
            if not chunk:
                time.sleep(0.02)
        check(seen is not None, "no JobRemoved on the bus")
        check(seen["interface"] == SD[2] and seen["path"] == SD[1], str(seen))
        check("destination" not in seen, "JobRemoved must be a broadcast: %s" % seen)
        check(seen["payload"] == {"type": "uoss", "data": [int(job.rsplit("/", 1)[1]), job, "app.service", "done"]},
              str(seen["payload"]))
    finally:
        mon.terminate()
        mon.communicate(timeout=3)
    logged = d.calls("RestartUnit")[-1]
    check(logged["unit"] == "app.service" and logged["mode"] == "replace" and logged["job"] == job
          and logged["result"] == "done" and logged["error"] is None and logged["sender"].startswith(":1."),
          str(logged))


def case_client_flow(ctx):
    c = Client(ctx["bus"].socket_path)
    try:
        c.call("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "AddMatch", "s",
               (JOB_MATCH,))
        check(c.call(*SD, "Subscribe") == (), "Subscribe returns nothing")
        t0 = time.monotonic()
        job = restart(c)
        m = c.wait_signal(is_job_removed(job), 3 * SLOW)
        check(m is not None, "no JobRemoved for %s" % job)
        elapsed = m["at"] - t0
        check(elapsed >= 0.15, "JobRemoved after %.3fs, before the 200 ms delay" % elapsed)
        check(m["signature"] == "uoss" and m["body"] == (int(job.rsplit("/", 1)[1]), job, "app.service", "done"),
              str(m["body"]))
        logged = ctx["d"].calls("RestartUnit")[-1]
        check(logged["sender"] == c.unique_name, "sender %s vs %s" % (logged["sender"], c.unique_name))
        check(ctx["d"].calls("Subscribe")[-1]["sender"] == c.unique_name, "Subscribe not logged")
        job2 = restart(c, mode="fail")
        check(job2 != job and int(job2.rsplit("/", 1)[1]) > int(job.rsplit("/", 1)[1]), "job ids %s %s" % (job, job2))
        check(c.wait_signal(is_job_removed(job2), 3 * SLOW) is not None, "no JobRemoved for the second job")
        # default (non-strict): a second Subscribe is harmless
        c.call(*SD, "Subscribe")
    finally:
        c.close()


def case_no_such_unit(ctx):
    c = Client(ctx["bus"].socket_path)
    try:
        expect_error(lambda: restart(c, "ghost.service"), "org.freedesktop.systemd1.NoSuchUnit",
                     "Unit ghost.service not found.")
    finally:
        c.close()
    r = busctl(ctx["bus"], "call", *SD, "RestartUnit", "ss", "ghost.service", "replace")
    check(r.returncode != 0 and "Unit ghost.service not found." in r.stderr, r.stderr)
    logged = ctx["d"].calls("RestartUnit")[-1]
    check(logged["unit"] == "ghost.service" and logged["job"] is None
          and logged["error"] == "org.freedesktop.systemd1.NoSuchUnit", str(logged))


def case_invalid_args(ctx):
    c = Client(ctx["bus"].socket_path)
    try:
        expect_error(lambda: restart(c, mode="sometimes"), "org.freedesktop.DBus.Error.InvalidArgs",
                     "Job mode sometimes invalid")
        expect_error(lambda: restart(c, unit="app"), "org.freedesktop.DBus.Error.InvalidArgs",
                     "Unit name app is not valid.")
        for mode in ("replace", "fail", "isolate", "ignore-dependencies", "ignore-requirements"):
            restart(c, mode=mode)
        # wrong argument types are refused by sd-bus itself
        expect_error(lambda: c.call(*SD, "RestartUnit", "s", ("app.service",)),
                     "org.freedesktop.DBus.Error.InvalidArgs")
    finally:
        c.close()
    check(ctx["d"].calls("RestartUnit")[-6]["error"] == "org.freedesktop.DBus.Error.InvalidArgs", "not logged")


def case_unknown_method(ctx):
    c = Client(ctx["bus"].socket_path)
    try:
        expect_error(lambda: c.call(*SD, "StopUnit", "ss", ("app.service", "replace")),
                     "org.freedesktop.DBus.Error.UnknownMethod")
        expect_error(lambda: c.call(SD[0], SD[1], "org.example.Nope", "X"),
                     "org.freedesktop.DBus.Error.UnknownMethod")
        expect_error(lambda: c.call(SD[0], "/nowhere", SD[2], "RestartUnit", "ss", ("app.service", "replace")),
                     "org.freedesktop.DBus.Error.UnknownObject")
        check(c.call(*LOGIN, "Reboot", "b", (False,)) == (), "double died after unknown calls")
    finally:
        c.close()


def case_reboot(ctx):
    c = Client(ctx["bus"].socket_path)
    try:
        c.call("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "AddMatch", "s",
               ("type='signal',interface='org.freedesktop.login1.Manager',member='PrepareForShutdown'",))
        n = len(ctx["d"].calls("Reboot"))
        check(c.call(*LOGIN, "Reboot", "b", (False,)) == (), "Reboot returns nothing")
        m = c.wait_signal(lambda s: s["member"] == "PrepareForShutdown", 2 * SLOW)
        check(m is not None and m["body"] == (True,), "no PrepareForShutdown(true)")
        c.call(*LOGIN, "Reboot", "b", (True,))
        got = ctx["d"].calls("Reboot")[n:]
        check([(g["interactive"], g["error"], g["sender"]) for g in got]
              == [(False, None, c.unique_name), (True, None, c.unique_name)], str(got))
        check(c.call(*LOGIN, "RebootWithFlags", "t", (0,)) == (), "RebootWithFlags returns nothing")
        expect_error(lambda: c.call(*LOGIN, "RebootWithFlags", "t", (8,)), "org.freedesktop.DBus.Error.InvalidArgs")
        got = ctx["d"].calls("RebootWithFlags")
        check([(g["flags"], g["error"]) for g in got[-2:]]
              == [(0, None), (8, "org.freedesktop.DBus.Error.InvalidArgs")], str(got))
    finally:
        c.close()
    r = busctl(ctx["bus"], "call", *LOGIN, "Reboot", "b", "false")
    check(r.returncode == 0, r.stderr)


def case_job_results(ctx):
    with double(ctx["binary"], ctx["bus"], "--unit", "app.service", "--unit", "db.service",
                "--job-results", "failed,timeout", "--job-delay-ms", "0") as d:
        c = Client(ctx["bus"].socket_path)
        try:
            c.call("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "AddMatch", "s",
                   (JOB_MATCH,))
            c.call(*SD, "Subscribe")
            got = []
            for unit in ("app.service", "db.service", "app.service"):
                job = restart(c, unit)
                m = c.wait_signal(is_job_removed(job), 2 * SLOW)
                check(m is not None, "no JobRemoved for %s" % job)
                got.append((m["body"][2], m["body"][3]))
            check(got == [("app.service", "failed"), ("db.service", "timeout"), ("app.service", "done")], str(got))
            check([x["result"] for x in d.calls("RestartUnit")] == ["failed", "timeout", "done"], "log results")
        finally:
            c.close()
    check(d.returncode == 0, "exit %s: %s" % (d.returncode, d.stderr_text()))


def case_job_result_all(ctx):
    with double(ctx["binary"], ctx["bus"], "--unit", "app.service", "--job-result", "failed",
                "--job-delay-ms", "50") as d:
        c = Client(ctx["bus"].socket_path)
        try:
            c.call("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "AddMatch", "s",
                   (JOB_MATCH,))
            for _ in range(2):
                job = restart(c)
                m = c.wait_signal(is_job_removed(job), 2 * SLOW)
                check(m is not None and m["body"][3] == "failed", "JobRemoved %r" % (m and m["body"],))
        finally:
            c.close()


def case_fail_restart(ctx):
    with double(ctx["binary"], ctx["bus"], "--unit", "app.service",
                "--fail-restart", "org.freedesktop.DBus.Error.AccessDenied") as d:
        c = Client(ctx["bus"].socket_path)
        try:
            expect_error(lambda: restart(c), "org.freedesktop.DBus.Error.AccessDenied")
            check(c.call(*LOGIN, "Reboot", "b", (False,)) == (), "Reboot should still work")
        finally:
            c.close()
        logged = d.calls("RestartUnit")
        check(len(logged) == 1 and logged[0]["error"] == "org.freedesktop.DBus.Error.AccessDenied"
              and logged[0]["job"] is None, str(logged))


def case_fail_reboot(ctx):
    with double(ctx["binary"], ctx["bus"], "--fail-reboot", "org.freedesktop.DBus.Error.AccessDenied") as d:
        c = Client(ctx["bus"].socket_path)
        try:
            expect_error(lambda: c.call(*LOGIN, "Reboot", "b", (False,)), "org.freedesktop.DBus.Error.AccessDenied")
            expect_error(lambda: c.call(*LOGIN, "RebootWithFlags", "t", (0,)),
                         "org.freedesktop.DBus.Error.AccessDenied")
        finally:
            c.close()
        r = busctl(ctx["bus"], "call", *LOGIN, "Reboot", "b", "false")
        check(r.returncode != 0, "busctl Reboot should fail")
        got = d.calls()
        check([(g["method"], g["error"]) for g in got]
              == [("Reboot", "org.freedesktop.DBus.Error.AccessDenied"),
                  ("RebootWithFlags", "org.freedesktop.DBus.Error.AccessDenied"),
                  ("Reboot", "org.freedesktop.DBus.Error.AccessDenied")], str(got))


def case_strict_subscribe(ctx):
    with double(ctx["binary"], ctx["bus"], "--unit", "app.service", "--strict-subscribe", "--job-delay-ms", "20"):
        c = Client(ctx["bus"].socket_path)
        other = Client(ctx["bus"].socket_path)
        try:
            c.call("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "AddMatch", "s",
                   (JOB_MATCH,))
            job = restart(c)
            check(c.wait_signal(is_job_removed(job), 0.5) is None, "JobRemoved without any subscriber")
            c.call(*SD, "Subscribe")
            expect_error(lambda: c.call(*SD, "Subscribe"), "org.freedesktop.systemd1.AlreadySubscribed",
                         "Client is already subscribed.")
            job = restart(other)  # anyone's job reaches every listener once someone subscribed
            check(c.wait_signal(is_job_removed(job), 2 * SLOW) is not None, "no JobRemoved while subscribed")
            c.call(*SD, "Unsubscribe")
            expect_error(lambda: c.call(*SD, "Unsubscribe"), "org.freedesktop.systemd1.NotSubscribed")
            job = restart(c)
            check(c.wait_signal(is_job_removed(job), 0.5) is None, "JobRemoved after Unsubscribe")
            # a subscriber that disconnects is forgotten (sd_bus_track)
            other.call(*SD, "Subscribe")
            other.close()
            time.sleep(0.2)
            job = restart(c)
            check(c.wait_signal(is_job_removed(job), 0.5) is None, "JobRemoved for a departed subscriber")
        finally:
            c.close()
            other.close()


def case_bad_options(ctx):
    env = dict(os.environ, **ctx["bus"].env())
    for args in (["--job-result", "bogus"], ["--job-results", "done,,nope"], ["--fail-reboot", "NotAName"],
                 ["--fail-restart", "org..x"], ["--job-delay-ms", "-1"], ["--job-delay-ms", "12x"],
                 ["--bogus"], ["extra"], ["--log", "/nonexistent/dir/log"]):
        r = subprocess.run([ctx["binary"]] + args, env=env, capture_output=True, text=True, timeout=5)
        check(r.returncode == 2 and "ready" not in r.stdout, "%s: exit %d %r" % (args, r.returncode, r.stdout))
    r = subprocess.run([ctx["binary"]], env=dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS="unix:path=/nonexistent"),
                       capture_output=True, text=True, timeout=5)
    check(r.returncode == 1 and "ready" not in r.stdout, "no bus: exit %d" % r.returncode)
    # the names are taken: a second double must not claim to be ready
    with double(ctx["binary"], ctx["bus"]):
        r = subprocess.run([ctx["binary"]], env=env, capture_output=True, text=True, timeout=5)
    check(r.returncode == 1 and "ready" not in r.stdout, "second double: exit %d" % r.returncode)
    check("File exists" in r.stderr, "second double: %r" % r.stderr)


def case_sigterm(ctx):
    for sig in (signal.SIGTERM, signal.SIGINT):
        d = double(ctx["binary"], ctx["bus"], "--unit", "app.service", "--job-delay-ms", "10000").start()
        try:
            # a job still pending at exit must be freed, not crash
            r = busctl(ctx["bus"], "call", *SD, "RestartUnit", "ss", "app.service", "replace")
            check(r.returncode == 0, r.stderr)
            d.proc.send_signal(sig)
            d.proc.wait(timeout=5 * SLOW)
        finally:
            d.stop()
        check(d.returncode == 0, "%s: exit %s: %s" % (sig.name, d.returncode, d.stderr_text()))


def case_bus_gone(ctx):
    with PrivateBus() as bus:
        d = SystemdDouble(WRAPPER + [ctx["binary"]] if WRAPPER else ctx["binary"], bus, ["--unit", "app.service"],
                          start_timeout=5.0 * SLOW).start()
        try:
            bus.stop()
            d.proc.wait(timeout=5 * SLOW)
            check(d.proc.returncode != 0, "exit 0 after losing the bus")
        finally:
            d.stop()
    check(bus.dir is None, "bus dir not removed")


def run_case(name, fn, ctx):
    t0 = time.monotonic()
    try:
        fn(ctx)
    except Exception as e:  # noqa: BLE001 -- report every failure, keep going
        print("FAIL %s (%.2fs): %s" % (name, time.monotonic() - t0, e))
        if not isinstance(e, Fail):
            traceback.print_exc()
        return False
    print("ok   %s (%.2fs)" % (name, time.monotonic() - t0))
    return True


def main():
    ok = True
    with tempfile.TemporaryDirectory(prefix="sdd-") as tmp:
        binary = sys.argv[1] if len(sys.argv) > 1 else build_double(tmp)
        with PrivateBus() as bus:
            ctx = {"bus": bus, "binary": binary}
            with double(binary, bus, "--unit", "app.service") as d:
                ctx["d"] = d
                for name, fn in (("bus address, env and both names owned", case_bus),
                                 ("RestartUnit via busctl, JobRemoved seen by busctl monitor", case_restart_busctl),
                                 ("client flow: Subscribe, match, RestartUnit, JobRemoved", case_client_flow),
                                 ("NoSuchUnit for an unknown unit", case_no_such_unit),
                                 ("InvalidArgs for bad mode, bad name, bad signature", case_invalid_args),
                                 ("UnknownMethod/UnknownObject, double survives", case_unknown_method),
                                 ("Reboot and RebootWithFlags recorded", case_reboot)):
                    ok &= run_case(name, fn, ctx)
            ok &= run_case("first double exits 0 on SIGTERM", lambda _c: check(d.returncode == 0, "exit %s: %s" % (
                d.returncode, d.stderr_text())), ctx)
            for name, fn in (("--job-results failed,timeout then done", case_job_results),
                             ("--job-result failed for all jobs", case_job_result_all),
                             ("--fail-restart AccessDenied", case_fail_restart),
                             ("--fail-reboot AccessDenied", case_fail_reboot),
                             ("--strict-subscribe as real systemd", case_strict_subscribe),
                             ("bad options exit 2, no bus or taken names exit 1", case_bad_options),
                             ("SIGTERM and SIGINT with a pending job exit 0", case_sigterm),
                             ("double exits when the bus goes away", case_bus_gone),
                             ("every other double exited 0 (checker clean)", case_all_exited_0)):
                ok &= run_case(name, fn, ctx)
    print("all ok" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
