"""Shared machinery for the integration tests: a synthetic /proc/stat that a
thread advances in real time, a monkeyd started on a temp dir, a client for
the control socket, and a runner that prints one line per scenario.

Python 3 standard library only. Every wait is bounded by a deadline; every
process started here is killed at exit, whatever happens."""

import atexit
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback

SOURCE_ROOT = os.environ.get(
    "MONKEY_SOURCE_ROOT",
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BUILD_ROOT = os.environ.get("MONKEY_BUILD_ROOT", os.path.join(SOURCE_ROOT, "build"))
MONKEYD = os.path.join(BUILD_ROOT, "monkeyd")
MONKEYCTL = os.path.join(BUILD_ROOT, "monkeyctl")

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]

# MONKEY_VALGRIND=1: every monkeyd this harness starts runs under valgrind
# memcheck (tests/memcheck runs a set of integration tests so). A run that
# ends by SIGTERM must report 0 errors and 0 definite/indirect leaks; a run
# the test SIGKILLs has no summary and is not judged.
VALGRIND = bool(os.environ.get("MONKEY_VALGRIND"))
VALGRIND_ARGS = ["valgrind", "--tool=memcheck", "--leak-check=full",
                 "--show-leak-kinds=definite,indirect", "--errors-for-leak-kinds=definite,indirect",
                 "--num-callers=30", "--child-silent-after-fork=yes"]
# Under valgrind the agent starts and answers many times slower.
SLOWDOWN = 8.0 if VALGRIND else 1.0

# Variables that would change how monkeyd behaves if inherited from the caller.
_SCRUB_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM",
              "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "CREDENTIALS_DIRECTORY")

_live_procs = []
_live_dirs = []
_keep_tmp = bool(os.environ.get("MONKEY_KEEP_TMP"))


class TestFailure(AssertionError):
    pass


def fail(msg):
    raise TestFailure(msg)


def check(cond, msg):
    if not cond:
        fail(msg)


def _cleanup():
    for p in list(_live_procs):
        if p.poll() is None:
            try:
                p.kill()
                p.wait(timeout=5)
            except Exception:
                pass
    _live_procs.clear()
    if not _keep_tmp:
        for d in _live_dirs:
            shutil.rmtree(d, ignore_errors=True)
    _live_dirs.clear()


atexit.register(_cleanup)


def _on_signal(signum, frame):
    # meson sends SIGTERM on timeout: run the atexit cleanup on the way out.
    sys.stderr.write("harness: got signal %d, cleaning up\n" % signum)
    sys.exit(128 + signum)


signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGINT, _on_signal)


def make_tmpdir(prefix="monkey-it-"):
    d = tempfile.mkdtemp(prefix=prefix)
    # Tests run monkeyctl as nobody: it must reach the socket inside.
    os.chmod(d, 0o755)
    _live_dirs.append(d)
    return d


def spawn(argv, **kw):
    p = subprocess.Popen(argv, **kw)
    _live_procs.append(p)
    return p


def check_answer_times(times, what):
    """The control socket's answer times (seconds) while something hangs:
    the typical answer within the 100 ms budget, and none that waited on
    the hang (a blocked loop shows as the hang's timeout, seconds). One
    slow answer on a loaded 2-CPU machine (CI runs memcheck beside the
    tests) is the scheduler, not the agent; the figures themselves are the
    benchmarks' (tests/bench). Returns (median, worst)."""
    check(len(times) > 0, "no status answer timed %s" % what)
    med, worst = statistics.median(times), max(times)
    check(med < 0.1 * SLOWDOWN, "status took %.0f ms (median of %d) %s" % (med * 1000, len(times), what))
    check(worst < 1.0 * SLOWDOWN,
          "status took %.0f ms (slowest of %d) %s: something blocks the loop" % (worst * 1000, len(times), what))
    return med, worst


def free_port(addr="127.0.0.1"):
    """A TCP port nothing listens on now (the kernel's pick)."""
    s = socket.socket()
    try:
        s.bind((addr, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def wait_until(pred, timeout, interval=0.02, what="condition"):
    """Poll pred() until it returns a true value; return that value, or fail."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = pred()
            if v:
                return v
        except TestFailure:
            raise
        except Exception as e:  # noqa: BLE001 - reported on timeout
            last_exc = e
        if time.monotonic() >= deadline:
            extra = " (last error: %r)" % (last_exc,) if last_exc else ""
            fail("timed out after %.1fs waiting for %s%s" % (timeout, what, extra))
        time.sleep(interval)


def atomic_write(path, data, mode=None):
    tmp = path + ".tmp-harness"
    with open(tmp, "w" if isinstance(data, str) else "wb") as f:
        f.write(data)
    if mode is not None:
        os.chmod(tmp, mode)
    os.rename(tmp, path)


# --------------------------------------------------------------------------
# Synthetic /proc/stat

class StatFeeder(threading.Thread):
    """Writes a /proc/stat look-alike every `tick` seconds, advancing the
    counters so that the busy share of each tick is the current target.
    busy = user + system here (70/30); the rest of the tick is idle."""

    UNITS_PER_TICK = 10000  # per CPU; the agent only looks at ratios

    def __init__(self, path, busy=10.0, ncpus=2, tick=0.05):
        super().__init__(daemon=True)
        self.path = path
        self.ncpus = ncpus
        self.tick = tick
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.busy = float(busy)
        self.garbage = None  # str: written instead of the real text
        self.writes = 0
        self.last_write = 0.0
        self.stopping = False
        # user nice system idle iowait irq softirq steal guest guest_nice, per CPU
        self.cpus = [[100000, 500, 50000, 9000000, 3000, 0, 700, 0, 0, 0]
                     for _ in range(ncpus)]
        with self.lock:
            self._write_locked()

    def _advance_locked(self):
        busy_units = self.UNITS_PER_TICK * self.busy / 100.0
        user = int(round(busy_units * 0.7))
        system = int(round(busy_units)) - user
        idle = self.UNITS_PER_TICK - user - system
        for c in self.cpus:
            c[0] += user
            c[2] += system
            c[3] += idle

    def text(self):
        agg = [sum(c[i] for c in self.cpus) for i in range(10)]
        lines = ["cpu  " + " ".join(str(v) for v in agg)]
        for n, c in enumerate(self.cpus):
            lines.append("cpu%d " % n + " ".join(str(v) for v in c))
        lines += ["intr 12345 0 0", "ctxt 67890", "btime 1700000000",
                  "processes 4242", "procs_running 1", "procs_blocked 0",
                  "softirq 1 0 0 0 0 0 0 0 0 0 0"]
        return "\n".join(lines) + "\n"

    def _write_locked(self):
        atomic_write(self.path, self.garbage if self.garbage is not None else self.text())
        self.writes += 1
        self.last_write = time.monotonic()
        self.cond.notify_all()

    def run(self):
        next_t = time.monotonic()
        while True:
            next_t += self.tick
            delay = next_t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_t = time.monotonic()
            with self.lock:
                if self.stopping:
                    return
                self._advance_locked()
                try:
                    self._write_locked()
                except OSError:
                    return  # the temp dir went away at cleanup

    def _wait_next_write_locked(self):
        n = self.writes
        deadline = time.monotonic() + 2.0
        while self.writes == n:
            left = deadline - time.monotonic()
            if left <= 0:
                fail("stat feeder stopped writing")
            self.cond.wait(left)
        return self.last_write

    def set_busy(self, pct):
        """Switch the load; returns the monotonic time at which the first
        counters of the new load were written."""
        with self.lock:
            self.busy = float(pct)
            self.garbage = None
            return self._wait_next_write_locked()

    def set_garbage(self, text):
        """Write `text` instead of the stat file until set_busy() is called."""
        with self.lock:
            self.garbage = text
            return self._wait_next_write_locked()

    def stop(self):
        with self.lock:
            self.stopping = True


# --------------------------------------------------------------------------
# Control socket client

def control_request(path, request, timeout=3.0):
    """Send one request (dict, or a raw str/bytes line) and return the parsed
    reply line."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        return control_exchange(s, request)


def control_send(s, request):
    if isinstance(request, dict):
        request = json.dumps(request)
    if isinstance(request, str):
        request = request.encode()
    if not request.endswith(b"\n"):
        request += b"\n"
    s.sendall(request)


class LineReader:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def readline(self, timeout=3.0):
        # Under valgrind the agent's first answer on each code path waits
        # for its translation (about 3 s for the first status).
        timeout *= SLOWDOWN
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                fail("no reply line within %.1fs (got %r so far)" % (timeout, self.buf[:200]))
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                if self.buf:
                    fail("connection closed inside a line: %r" % self.buf[:200])
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def readjson(self, timeout=3.0):
        line = self.readline(timeout)
        if line is None:
            fail("connection closed before a reply")
        try:
            return json.loads(line)
        except ValueError:
            fail("reply is not JSON: %r" % line[:300])


def control_exchange(s, request, timeout=3.0):
    control_send(s, request)
    return LineReader(s).readjson(timeout)


# --------------------------------------------------------------------------
# monkeyd under test

BASE_CONFIG = """\
[agent]
host = {host}
state_dir = {dir}/state
control_socket = {dir}/run/control.sock
proc_stat = {dir}/stat
boot_id = {dir}/boot_id

[cpu]
threshold = {threshold}
clear_below = {clear_below}
window = {window}
interval = {interval}
"""

BOOT_A = "6f1c2e4a-8b3d-4c5e-9f70-1a2b3c4d5e6f"
BOOT_B = "0a9b8c7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d"


class Agent:
    """One monkeyd on its own temp dir, with its stat feeder."""

    def __init__(self, name="agent", extra="", threshold=80, clear_below=50, window="2s",
                 interval="200ms", busy=10.0, boot_id=BOOT_A, tmpdir=None, host="test-1"):
        self.name = name
        self.dir = tmpdir or make_tmpdir("monkey-it-%s-" % name)
        os.makedirs(os.path.join(self.dir, "state"), exist_ok=True)
        run = os.path.join(self.dir, "run")
        os.makedirs(run, exist_ok=True)
        os.chmod(run, 0o755)
        self.socket = os.path.join(run, "control.sock")
        self.config = os.path.join(self.dir, "monkeyd.conf")
        self.state_dir = os.path.join(self.dir, "state")
        self.stat_path = os.path.join(self.dir, "stat")
        self.boot_id_path = os.path.join(self.dir, "boot_id")
        self.config_vars = dict(host=host, dir=self.dir, threshold=threshold,
                                clear_below=clear_below, window=window, interval=interval)
        self.write_config(extra=extra)
        self.set_boot_id(boot_id)
        self.feeder = StatFeeder(self.stat_path, busy=busy)
        self.feeder.start()
        self.proc = None
        self.log_path = None
        self.runs = 0
        self.valgrind_logs = []
        self.env_extra = {}

    # -- files
    def config_text(self, extra="", **override):
        v = dict(self.config_vars)
        v.update(override)
        return BASE_CONFIG.format(**v) + ("\n" + extra if extra else "")

    def write_config(self, extra="", raw=None, **override):
        text = raw if raw is not None else self.config_text(extra, **override)
        atomic_write(self.config, text, mode=0o600)
        return text

    def set_boot_id(self, boot_id):
        atomic_write(self.boot_id_path, boot_id + "\n")

    def state_json_path(self):
        return os.path.join(self.state_dir, "state.json")

    # -- process
    def start(self, env=None, wait_serving=True, timeout=10.0, wrapper=(), journal_stream=False):
        """wrapper: argv put before monkeyd's (e.g. unshare). journal_stream:
        set JOURNAL_STREAM to the log file's dev:ino, as systemd does when
        stderr is the journal."""
        check(self.proc is None or self.proc.poll() is not None, "agent already running")
        self.runs += 1
        self.log_path = os.path.join(self.dir, "monkeyd-%d.log" % self.runs)
        e = {k: v for k, v in os.environ.items() if k not in _SCRUB_ENV}
        e.update(self.env_extra)
        if env:
            e.update(env)
        self.log = open(self.log_path, "wb")
        if journal_stream:
            st = os.fstat(self.log.fileno())
            e["JOURNAL_STREAM"] = "%d:%d" % (st.st_dev, st.st_ino)
        self.t_start = time.monotonic()
        memcheck = []
        if VALGRIND:
            self.valgrind_logs.append(os.path.join(self.dir, "valgrind-%d.log" % self.runs))
            memcheck = VALGRIND_ARGS + ["--log-file=" + self.valgrind_logs[-1]]
            timeout *= SLOWDOWN
        self.proc = spawn(list(wrapper) + memcheck + [MONKEYD, "--config", self.config], stdin=subprocess.DEVNULL,
                          stdout=self.log, stderr=subprocess.STDOUT, env=e)
        self.wait_socket(timeout)
        if wait_serving:
            self.wait_state("SERVING", timeout)
        return self

    def wait_socket(self, timeout=10.0):
        def answering():
            self.assert_alive()
            return control_request(self.socket, {"version": 1, "command": "status"}, 1.0)
        wait_until(answering, timeout, 0.02, "the control socket %s to answer" % self.socket)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def assert_alive(self):
        if self.proc is None:
            fail("monkeyd was never started")
        rc = self.proc.poll()
        if rc is not None:
            fail("monkeyd exited unexpectedly with status %s" % rc)

    def signal(self, sig):
        self.assert_alive()
        self.proc.send_signal(sig)

    def stop(self, timeout=10.0):
        """SIGTERM and wait; returns the exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout * SLOWDOWN)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            fail("monkeyd did not exit within %.0fs of SIGTERM" % (timeout * SLOWDOWN))
        finally:
            self.log.close()
        if VALGRIND:
            check_memcheck_log(self.valgrind_logs[-1])
        return rc

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def close(self, judge=True):
        """Kill the agent; under valgrind, stop it with SIGTERM instead so
        that memcheck's summary is written and judged (judge=False after a
        failure: just kill)."""
        try:
            if VALGRIND and judge and self.alive():
                self.stop()
        finally:
            self.kill()
            self.feeder.stop()

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        if et is not None:
            self.dump_log()
        self.close(judge=et is None)
        return False

    def log_text(self):
        if not self.log_path:
            return ""
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def all_logs(self):
        out = []
        for n in range(1, self.runs + 1):
            p = os.path.join(self.dir, "monkeyd-%d.log" % n)
            try:
                with open(p, "rb") as f:
                    out.append(f.read().decode(errors="replace"))
            except OSError:
                pass
        return "".join(out)

    def dump_log(self):
        for n in range(1, self.runs + 1):
            p = os.path.join(self.dir, "monkeyd-%d.log" % n)
            try:
                with open(p, "rb") as f:
                    text = f.read().decode(errors="replace")
            except OSError:
                continue
            lines = text.splitlines()
            sys.stdout.write("---- monkeyd stderr (%s, run %d, last %d of %d lines) ----\n"
                             % (self.name, n, min(80, len(lines)), len(lines)))
            sys.stdout.write("\n".join(lines[-80:]) + "\n")
        sys.stdout.write("---- end ----\n")
        sys.stdout.flush()

    def wait_log(self, pattern, timeout=5.0, what=None):
        rx = re.compile(pattern, re.M)

        def found():
            return rx.search(self.log_text())
        return wait_until(found, timeout, 0.05, what or "log line matching %r" % pattern)

    # -- control
    def request(self, req, timeout=3.0):
        return control_request(self.socket, req, timeout)

    def status(self):
        r = self.request({"version": 1, "command": "status"})
        check(r.get("ok") is True and isinstance(r.get("status"), dict),
              "status request failed: %r" % (r,))
        return r["status"]

    def history(self, limit=50):
        r = self.request({"version": 1, "command": "history", "limit": limit})
        check(r.get("ok") is True and isinstance(r.get("history"), list),
              "history request failed: %r" % (r,))
        return r["history"]

    def state(self):
        return self.status()["state"]

    def wait_state(self, state, timeout=10.0, interval=0.02):
        """Wait for status.state == state (a str, or a set of str). Returns
        (status, seconds waited)."""
        want = {state} if isinstance(state, str) else set(state)
        t0 = time.monotonic()
        deadline = t0 + timeout
        seen = []
        while True:
            self.assert_alive()
            st = self.status()
            if not seen or seen[-1] != st["state"]:
                seen.append(st["state"])
            if st["state"] in want:
                return st, time.monotonic() - t0
            if time.monotonic() >= deadline:
                fail("state %s not reached within %.1fs; states seen: %s; last reason: %r"
                     % ("/".join(sorted(want)), timeout, " -> ".join(seen), st.get("reason")))
            time.sleep(interval)

    def ctl(self, *args, user=None, timeout=10.0, socket_path=None):
        argv = [MONKEYCTL, "--socket", socket_path or self.socket] + list(args)
        return run_ctl(argv, user=user, timeout=timeout)


_nobody_ctl = []


def _ctl_for_nobody():
    """A copy of monkeyctl that nobody can run: the build tree may sit
    under a directory that only root can enter."""
    if not _nobody_ctl:
        d = make_tmpdir("monkey-it-bin-")
        p = os.path.join(d, "monkeyctl")
        shutil.copy(MONKEYCTL, p)
        os.chmod(p, 0o755)
        _nobody_ctl.append(p)
    return _nobody_ctl[0]


def run_ctl(argv, user=None, timeout=10.0):
    if user == "nobody":
        if argv[0] == MONKEYCTL:
            argv = [_ctl_for_nobody()] + argv[1:]
        argv = NOBODY + argv
    try:
        return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=timeout, text=True)
    except subprocess.TimeoutExpired:
        fail("%s did not finish within %.0fs" % (" ".join(argv), timeout))


def check_memcheck_log(path):
    """Fail unless valgrind's log for one monkeyd run says 0 errors (leaks
    of kind definite or indirect count as errors, see VALGRIND_ARGS)."""
    try:
        with open(path, errors="replace") as f:
            text = f.read()
    except OSError as e:
        fail("valgrind log %s: %s" % (path, e))
    m = re.search(r"ERROR SUMMARY: (\d+) errors", text)
    check(m is not None, "valgrind log %s has no ERROR SUMMARY (did monkeyd exit?)" % path)
    if int(m.group(1)) != 0:
        fail("valgrind memcheck: %s errors in %s:\n%s" % (m.group(1), path, text[-4000:]))
    print("   memcheck %s: 0 errors" % os.path.basename(path), flush=True)


def describe(cp):
    return "exit %s, stdout %r, stderr %r" % (cp.returncode, cp.stdout[-500:], cp.stderr[-500:])


# --------------------------------------------------------------------------
# Runner

def main(scenarios):
    """Run each scenario function, print one line each, exit 1 if any failed."""
    for b in (MONKEYD, MONKEYCTL):
        if not os.access(b, os.X_OK):
            print("FAIL: %s is missing (set MONKEY_BUILD_ROOT)" % b)
            sys.exit(1)
    failed = []
    t_all = time.monotonic()
    for fn in scenarios:
        name = fn.__name__
        t0 = time.monotonic()
        print("== %s" % name, flush=True)
        try:
            fn()
        except TestFailure as e:
            failed.append(name)
            print("FAIL %s (%.1fs): %s" % (name, time.monotonic() - t0, e), flush=True)
        except Exception:  # noqa: BLE001 - a crash in a scenario is a failure
            failed.append(name)
            print("FAIL %s (%.1fs): exception" % (name, time.monotonic() - t0), flush=True)
            traceback.print_exc(file=sys.stdout)
        else:
            print("ok   %s (%.1fs)" % (name, time.monotonic() - t0), flush=True)
        _cleanup_procs_only()
    print("%d scenarios, %d failed%s (%.1fs)" % (
        len(scenarios), len(failed), (": " + ", ".join(failed)) if failed else "",
        time.monotonic() - t_all), flush=True)
    sys.exit(1 if failed else 0)


def _cleanup_procs_only():
    for p in list(_live_procs):
        if p.poll() is None:
            try:
                p.kill()
                p.wait(timeout=5)
            except Exception:
                pass
        _live_procs.remove(p)


def sorted_history(hist):
    """History entries oldest first, whatever order the agent sends (ties
    keep the agent's own order, read the right way round)."""
    hist = list(hist)
    if len(hist) > 1 and (hist[0].get("at_unix") or 0.0) > (hist[-1].get("at_unix") or 0.0):
        hist.reverse()
    return sorted(hist, key=lambda h: h.get("at_unix") or 0.0)
