"""A private dbus-daemon standing in for the system bus, and a handle on the
systemd/logind double (systemd_double.c) that serves on it.

PID 1 is not systemd where the tests run, so the agent's "restart-unit" and
"reboot-local" steps talk to this bus instead: point the agent (or busctl)
at it with DBUS_SYSTEM_BUS_ADDRESS, which sd_bus_open_system() honours.
The bus has a "system" type but its own allow-everything policy; the host's
system bus policy files are never read. Standard library only; every wait
is bounded.

    with PrivateBus() as bus, SystemdDouble(binary, bus, ["--unit", "app.service"]) as d:
        subprocess.run(["busctl", "--address=" + bus.address, ...])
        d.calls()   # the JSON lines of --log
"""

import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time

_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_type="method_return"/>
    <allow send_type="error"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow receive_type="method_call"/>
    <allow receive_type="signal"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_sender="*"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
"""

# sun_path is 108 bytes; a long TMPDIR would make the socket unbindable
_SUN_PATH_MAX = 107


class BusError(RuntimeError):
    pass


def _read_line(stream, deadline):
    """One line from a pipe, or None at the deadline or at EOF."""
    fd = stream.fileno()
    buf = b""
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            return None
        chunk = os.read(fd, 1)
        if not chunk:
            return None
        buf += chunk
    return buf.decode("utf-8", "replace").rstrip("\n")


def _stop_process(proc, timeout):
    """SIGTERM, then SIGKILL after timeout; returns the exit status."""
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
    for s in (proc.stdin, proc.stdout, proc.stderr):
        if s:
            s.close()
    return proc.returncode


class PrivateBus:
    """dbus-daemon --nofork on a unix socket in a temporary directory."""

    def __init__(self, start_timeout=5.0, dbus_daemon="dbus-daemon"):
        self.start_timeout = start_timeout
        self.dbus_daemon = dbus_daemon
        self.dir = None
        self.socket_path = None
        self.address = None
        self.printed_address = None
        self.proc = None
        self._stderr = None

    def start(self):
        if self.proc:
            return self
        base = None
        if len(os.path.join(tempfile.gettempdir(), "dbus-XXXXXXXX", "system_bus_socket")) > _SUN_PATH_MAX:
            base = "/tmp"
        self.dir = tempfile.mkdtemp(prefix="dbus-", dir=base)
        try:
            self.socket_path = os.path.join(self.dir, "system_bus_socket")
            config = os.path.join(self.dir, "bus.conf")
            with open(config, "w") as f:
                f.write(_CONFIG.format(socket=self.socket_path))
            self._stderr = open(os.path.join(self.dir, "dbus-daemon.err"), "w+b")
            self.proc = subprocess.Popen(
                [self.dbus_daemon, "--config-file=" + config, "--nofork", "--print-address"],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr,
                close_fds=True)
            line = _read_line(self.proc.stdout, time.monotonic() + self.start_timeout)
            if not line or not line.startswith("unix:"):
                raise BusError("dbus-daemon did not print its address within %.1fs (got %r): %s"
                               % (self.start_timeout, line, self.stderr_text()))
            self.printed_address = line
            self.address = "unix:path=" + self.socket_path
            deadline = time.monotonic() + self.start_timeout
            while not os.path.exists(self.socket_path):
                if time.monotonic() > deadline:
                    raise BusError("dbus-daemon socket %s did not appear" % self.socket_path)
                time.sleep(0.01)
        except BaseException:
            self.stop()
            raise
        return self

    def env(self):
        """The variables that point sd-bus (and busctl) at this bus."""
        return {"DBUS_SYSTEM_BUS_ADDRESS": self.address}

    def stderr_text(self):
        if not self._stderr:
            return ""
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace").strip()

    def stop(self, timeout=3.0):
        """Kill the daemon and remove the directory; safe to call twice."""
        if self.proc:
            _stop_process(self.proc, timeout)
            self.proc = None
        if self._stderr:
            self._stderr.close()
            self._stderr = None
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False


def find_systemd_double():
    """The built double: $SYSTEMD_DOUBLE, else $MONKEY_BUILD_ROOT/tests/,
    else <source>/build/tests/. None when none of them exists."""
    candidates = []
    if os.environ.get("SYSTEMD_DOUBLE"):
        candidates.append(os.environ["SYSTEMD_DOUBLE"])
    if os.environ.get("MONKEY_BUILD_ROOT"):
        candidates.append(os.path.join(os.environ["MONKEY_BUILD_ROOT"], "tests", "systemd_double"))
    source_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    candidates.append(os.path.join(source_root, "build", "tests", "systemd_double"))
    for c in candidates:
        if os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


class SystemdDouble:
    """systemd_double running on a PrivateBus; started when it printed
    "ready" (both names owned). binary may be a command list (a checker such
    as valgrind in front). args are its options (--unit, --job-results,
    --fail-reboot, ...); a --log file in the bus directory is added unless
    args name one."""

    def __init__(self, binary, bus, args=(), start_timeout=5.0, log=None):
        self.binary = binary
        self.bus = bus
        self.args = list(args)
        self.start_timeout = start_timeout
        self.log = log
        self.proc = None
        self.returncode = None
        self._stderr = None
        self._stderr_saved = ""

    def start(self):
        if "--log" not in self.args:
            if self.log is None:
                fd, self.log = tempfile.mkstemp(prefix="systemd-double-", suffix=".jsonl", dir=self.bus.dir)
                os.close(fd)
            self.args += ["--log", self.log]
        else:
            self.log = self.args[self.args.index("--log") + 1]
        env = dict(os.environ)
        env.update(self.bus.env())
        self._stderr = tempfile.TemporaryFile()
        cmd = list(self.binary) if isinstance(self.binary, (list, tuple)) else [self.binary]
        self.proc = subprocess.Popen(cmd + self.args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=self._stderr, env=env, close_fds=True)
        line = _read_line(self.proc.stdout, time.monotonic() + self.start_timeout)
        if line != "ready":
            self.stop()
            raise BusError("systemd_double did not get ready (got %r): %s" % (line, self.stderr_text()))
        return self

    def stderr_text(self):
        if not self._stderr:
            return self._stderr_saved
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace").strip()

    def calls(self, method=None):
        """The logged calls so far, oldest first, optionally of one method."""
        out = []
        try:
            with open(self.log) as f:
                for line in f:
                    if line.strip():
                        out.append(json.loads(line))
        except FileNotFoundError:
            pass
        return [c for c in out if method is None or c.get("method") == method]

    def wait_calls(self, method, n=1, timeout=3.0):
        """Poll the log until at least n calls of method; returns them (maybe fewer at timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.calls(method)
            if len(got) >= n or time.monotonic() > deadline:
                return got
            time.sleep(0.02)

    def stop(self, timeout=3.0):
        """SIGTERM (SIGKILL after timeout); returns the exit status."""
        if self.proc:
            self.returncode = _stop_process(self.proc, timeout)
            self.proc = None
        if self._stderr:
            # keep stderr readable for a failing test's message
            self._stderr_saved = self.stderr_text()
            self._stderr.close()
            self._stderr = None
        return self.returncode

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False
