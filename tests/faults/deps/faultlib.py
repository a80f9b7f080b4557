"""The fault matrix's machinery (issue 9, dependencies half): one cell per
(area, fault), each against the real monkeyd and monkeyctl, a real
redis-server and the Slack and EC2/IMDS doubles of tests/doubles.

A test file registers its cells with @cell(area, fault) and ends with
faultlib.main(). Run without arguments it runs every cell of the file, each
in its own Python process (its own agents, doubles, ports and temp dirs;
the harness's cleanup is per process), up to MONKEY_FAULTS_JOBS at a time
(default 3: the cells mostly wait), and prints each cell's output when it
ends. `FILE CELL...` runs only those cells; `--list` lists them.

Every cell prints one line `FAULT <area>/<fault>: <observed result>` and,
with MONKEY_FAULTS_JSON=path, appends one JSON line {"area", "fault",
"result", "ok", "seconds"} to that file (one O_APPEND write: cells running
side by side never interleave).

While a fault is on, a cell proves the control socket still answers with
Cell.probe(): `monkeyctl --timeout 0.1 status --json`, so the 100 ms bound
is measured by monkeyctl itself (exit 3 when the agent does not answer in
time), not by this process, whose threads share one GIL with the doubles.
A miss is tried again, up to PROBE_TRIES in a row, and counted on the
FAULT line: the agent's own fsyncs on a loaded disk can stall it for a few
hundred ms (not a dependency's doing); a dependency that blocks the loop
stalls it for seconds and fails the cell.

Python 3 standard library only; loopback only; every wait bounded."""

import json
import os
import signal
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(TESTS, "integration"))
sys.path.insert(0, os.path.join(TESTS, "doubles"))

import harness  # noqa: E402
from harness import MONKEYCTL, check, fail, wait_until  # noqa: E402

CELLS = {}
ORDER = []
# A cell that runs longer than this is killed and fails.
CELL_TIMEOUT = float(os.environ.get("MONKEY_FAULTS_CELL_TIMEOUT", "120")) * harness.SLOWDOWN
PROBE_TIMEOUT = "0.1"
# monkeyctl status answered: routed, not routed, degraded (a dependency down)
ANSWERED = (0, 1, 4)
# A probe is tried up to this many times in a row (each with the 100 ms
# bound) before the cell fails: a stall of a few hundred ms from a busy
# disk passes, a loop that a dependency blocks (seconds) does not.
PROBE_TRIES = 3


def cell(area, fault):
    def register(fn):
        name = "%s/%s" % (area, fault)
        CELLS[name] = (area, fault, fn)
        ORDER.append(name)
        return fn
    return register


class Cell:
    """What a cell function gets: probes, the result line, the agents to
    dump on failure."""

    def __init__(self, area, fault):
        self.area, self.fault = area, fault
        self.agents = []
        self.results = []
        self.probes = 0
        self.misses = 0
        self.worst_ms = 0.0
        self.t0 = time.monotonic()

    def track(self, *agents):
        self.agents.extend(agents)
        return agents[0] if len(agents) == 1 else agents

    def result(self, text):
        """A piece of the observed result (joined with '; ' on the FAULT line)."""
        self.results.append(text)

    def log(self, text):
        print("   %s" % text, flush=True)

    def elapsed(self):
        return time.monotonic() - self.t0

    def probe(self, agent, n=1, gap=0.05):
        """monkeyctl status, answered within 100 ms (monkeyctl's own
        timeout), n times; monkeyd still running. Returns the last status."""
        st = None
        for i in range(n):
            agent.assert_alive()
            cp, ms = self._ctl_status(agent)
            tries = 1
            while cp.returncode not in ANSWERED and tries < PROBE_TRIES:
                # Two cores shared with other jobs, and the agent's own fsyncs
                # (state.json, the outbox) on a busy disk: a miss may be
                # local. A loop blocked on a dependency misses every time.
                self.misses += 1
                tries += 1
                cp, ms = self._ctl_status(agent)
            if cp.returncode not in ANSWERED:
                agent.assert_alive()
                fail("monkeyctl status did not answer within %ss %d times in a row while the fault is on: exit %d, %s"
                     % (PROBE_TIMEOUT, tries, cp.returncode, cp.stderr.decode(errors="replace").strip()[:300]))
            try:
                # strict: status must stay valid UTF-8 and valid JSON whatever the dependency sent
                st = json.loads(cp.stdout.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as e:
                fail("monkeyctl status --json is not valid UTF-8 JSON: %s: %r" % (e, cp.stdout[:300]))
            if i + 1 < n:
                time.sleep(gap)
        return st

    def _ctl_status(self, agent):
        t = time.monotonic()
        cp = subprocess.run([MONKEYCTL, "--socket", agent.socket, "--timeout", PROBE_TIMEOUT, "status", "--json"],
                            stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
        ms = (time.monotonic() - t) * 1000
        self.probes += 1
        if cp.returncode in ANSWERED:
            self.worst_ms = max(self.worst_ms, ms)
        return cp, ms

    def probe_for(self, agent, seconds, gap=0.15):
        """Probe again and again for `seconds` (the fault is on meanwhile)."""
        end = time.monotonic() + seconds
        st = self.probe(agent)
        while time.monotonic() < end:
            time.sleep(gap)
            st = self.probe(agent)
        return st

    def wait(self, agent, pred, timeout, what, gap=0.1):
        """wait_until, probing the agent on every round: the socket must keep
        answering within 100 ms all along."""
        def step():
            self.probe(agent)
            return pred()
        return wait_until(step, timeout * harness.SLOWDOWN, gap, what)


def history(agent, limit=300):
    return harness.sorted_history(agent.history(limit))


def states(agent):
    return [h["to"] for h in history(agent)]


def state_at(agent, wall):
    """The agent's state at wall-clock time `wall`, from its history."""
    s = None
    for h in history(agent):
        if (h.get("at_unix") or 0) <= wall:
            s = h["to"]
    return s


def append_json(path, obj):
    line = (json.dumps(obj, separators=(",", ":")) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def run_one(name):
    area, fault, fn = CELLS[name]
    c = Cell(area, fault)
    print("== %s" % name, flush=True)
    ok, err = True, None
    try:
        fn(c)
    except Exception as e:  # noqa: BLE001 - a crash in a cell is a failure
        ok = False
        err = str(e) if isinstance(e, AssertionError) else "%s: %s" % (type(e).__name__, e)
        if not isinstance(e, harness.TestFailure):
            traceback.print_exc(file=sys.stdout)
        for a in c.agents:
            try:
                a.dump_log()
            except Exception:  # noqa: BLE001
                pass
    if ok:
        # After the fault, a clean stop: exit 0 on SIGTERM (under ASan, no
        # leak report), and no sanitizer report in any run's log.
        try:
            for a in c.agents:
                if a.alive():
                    rc = a.stop()
                    check(rc == 0, "%s exited %s on SIGTERM after the fault" % (a.name, rc))
                logs = a.all_logs()
                for word in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
                    check(word not in logs, "%s: a sanitizer report (%s) in monkeyd's log" % (a.name, word))
        except Exception as e:  # noqa: BLE001
            ok, err = False, str(e)
            for a in c.agents:
                a.dump_log()
    secs = time.monotonic() - c.t0
    probes = "status <= %.0f ms over %d probes%s" % (
        c.worst_ms, c.probes, ", %d miss(es) of 100 ms retried" % c.misses if c.misses else "") \
        if c.probes else "no probes"
    if ok and c.probes == 0:
        ok, err = False, "the cell never probed the control socket"
    if ok:
        result = "; ".join(c.results) if c.results else "ok"
        line = "%s (%s)" % (result, probes)
    else:
        result = "FAILED: %s" % err
        line = "%s (%s)" % (result, probes)
    print("FAULT %s: %s" % (name, line), flush=True)
    print("%s %s (%.1fs)" % ("ok  " if ok else "FAIL", name, secs), flush=True)
    path = os.environ.get("MONKEY_FAULTS_JSON")
    if path:
        append_json(path, {"area": area, "fault": fault, "result": line, "ok": ok, "seconds": round(secs, 1)})
    for a in c.agents:
        try:
            a.close(judge=ok)
        except Exception as e:  # noqa: BLE001 - valgrind's verdict, say
            if ok:
                print("FAIL %s: at close: %s" % (name, e), flush=True)
                ok = False
    return ok


def _kill_group(p):
    try:
        os.killpg(p.pid, signal.SIGTERM)
    except OSError:
        return
    try:
        p.wait(3)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except OSError:
        pass
    try:
        p.wait(5)
    except subprocess.TimeoutExpired:
        pass


def run_parallel(script, names, jobs):
    """Each cell in its own process group; output printed whole when it ends."""
    pending = list(names)
    running = {}
    failed = []
    t_all = time.monotonic()
    try:
        while pending or running:
            while pending and len(running) < jobs:
                name = pending.pop(0)
                out = open(_outfile(name), "w+b")
                p = subprocess.Popen([sys.executable, script, "--one", name], stdin=subprocess.DEVNULL,
                                     stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
                running[name] = (p, out, time.monotonic())
            time.sleep(0.05)
            for name, (p, out, t0) in list(running.items()):
                timed_out = time.monotonic() - t0 > CELL_TIMEOUT
                if p.poll() is None and not timed_out:
                    continue
                if timed_out and p.poll() is None:
                    _kill_group(p)
                out.seek(0)
                text = out.read().decode(errors="replace")
                out.close()
                os.unlink(out.name)
                sys.stdout.write(text)
                if timed_out:
                    sys.stdout.write("FAULT %s: FAILED: no verdict within %.0fs\nFAIL %s (timeout)\n"
                                     % (name, CELL_TIMEOUT, name))
                    path = os.environ.get("MONKEY_FAULTS_JSON")
                    if path:
                        area, fault, _ = CELLS[name]
                        append_json(path, {"area": area, "fault": fault, "ok": False,
                                           "result": "FAILED: no verdict within %.0fs" % CELL_TIMEOUT,
                                           "seconds": round(time.monotonic() - t0, 1)})
                if p.returncode != 0:
                    failed.append(name)
                else:
                    # a cell process also exits 0 on no verdict at all: trust only the line
                    if ("\nok   %s " % name) not in ("\n" + text):
                        failed.append(name)
                sys.stdout.flush()
                del running[name]
    finally:
        for name, (p, out, _) in running.items():
            _kill_group(p)
            out.close()
    print("%d cells, %d failed%s (%.1fs)" % (len(names), len(failed), (": " + ", ".join(failed)) if failed else "",
                                             time.monotonic() - t_all), flush=True)
    return not failed


def _outfile(name):
    import tempfile
    fd, path = tempfile.mkstemp(prefix="monkey-fault-%s-" % name.replace("/", "-"), suffix=".out")
    os.close(fd)
    return path


def main():
    for b in (harness.MONKEYD, MONKEYCTL):
        if not os.access(b, os.X_OK):
            print("FAIL: %s is missing (set MONKEY_BUILD_ROOT)" % b)
            sys.exit(1)
    args = sys.argv[1:]
    if args[:1] == ["--list"]:
        print("\n".join(ORDER))
        return
    if args[:1] == ["--one"]:
        sys.exit(0 if run_one(args[1]) else 1)
    names = args or list(ORDER)
    unknown = [n for n in names if n not in CELLS]
    if unknown:
        print("unknown cells: %s (have: %s)" % (", ".join(unknown), ", ".join(ORDER)))
        sys.exit(2)
    jobs = max(1, int(os.environ.get("MONKEY_FAULTS_JOBS", "3")))
    if harness.VALGRIND:
        jobs = 1
    sys.exit(0 if run_parallel(os.path.abspath(sys.argv[0]), names, jobs) else 1)
