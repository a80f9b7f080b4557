"""Shared machinery for the local fault matrix (tests/faults/local): cells
that print one line each, the invariants every cell asserts, and a
simulated host: the real monkeyd with a Redis pool, the Slack and EC2/IMDS
doubles, an app to check, and an instance reboot done by the EC2 double's
hook as tests/fleet/fleet.py does (stop monkeyd with SIGTERM, new boot id,
start again).

Built on tests/integration/harness.py and the doubles; Python 3 standard
library only; every wait bounded; every process and mount undone at exit."""

import atexit
import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time
import traceback
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(TESTS, "integration"))
sys.path.insert(0, os.path.join(TESTS, "doubles"))
import harness  # noqa: E402
from harness import Agent, TestFailure, check, fail, wait_until  # noqa: E402,F401
from proxyfleet import Redis, free_port  # noqa: E402
from aws_double import AwsDouble  # noqa: E402
from slack_double import SlackDouble  # noqa: E402

SHIM = (sys.argv[1] if len(sys.argv) > 1 and sys.argv[1].endswith(".so")
        else os.path.join(harness.BUILD_ROOT, "tests", "faults", "local", "libfaultshim.so"))
LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"

AK = "AKIAFAULTSLOCAL00001"
SECRET = "faultsLocalSecretKey/0123456789abcdefXYZ"
IID = "i-0123456789abcdef0"    # the instance the EC2 double knows
TOKEN = "xoxb-7777777777-8888888888888-faultsLOCALtoken"
STATUS_BOUND = 0.100   # the agent answers status within this (DESIGN.md)


# `monkeyctl status` is a process start (a sanitizer build's takes tens of
# ms more) on a shared 2-CPU machine: a slow spawn is the scheduler's, and a
# blocked agent already shows on the socket. Its bound only catches a wait
# on the hang (seconds); the figure itself is the benchmark's and
# integration/detect's median.
CTL_BOUND = 1.0


# --------------------------------------------------------------------------
# cells: one line each, optionally one JSON line each

class Cells:
    def __init__(self):
        self.results = []
        self.t0 = time.monotonic()

    def run(self, area, fault, fn, *args):
        """Run fn(*args) -> observed result text. A TestFailure or any
        exception fails the cell; the line says what was observed."""
        only = os.environ.get("FAULTS_ONLY")   # a substring of area/fault: run only those
        if only and only not in "%s/%s" % (area, fault):
            return True
        t = time.monotonic()
        ok = True
        try:
            result = fn(*args)
        except TestFailure as e:
            ok, result = False, "FAILED: %s" % e
        except Exception as e:  # noqa: BLE001 - a crash in a cell is a failure
            ok, result = False, "FAILED: exception %r" % (e,)
            traceback.print_exc(file=sys.stdout)
        secs = time.monotonic() - t
        harness._cleanup_procs_only()
        line = "FAULT %s/%s: %s" % (area, fault, result)
        print(line + (" (%.1fs)" % secs), flush=True)
        self.results.append((area, fault, ok))
        path = os.environ.get("MONKEY_FAULTS_JSON")
        if path:
            rec = {"area": area, "fault": fault, "result": result, "ok": ok, "seconds": round(secs, 2)}
            with open(path, "a") as f:
                f.write(json.dumps(rec) + "\n")
        return ok

    def finish(self):
        failed = [("%s/%s" % (a, f)) for a, f, ok in self.results if not ok]
        print("%d cells, %d failed%s (%.1fs)" % (len(self.results), len(failed),
                                                ": " + ", ".join(failed) if failed else "",
                                                time.monotonic() - self.t0), flush=True)
        sys.exit(1 if failed else 0)


def preflight():
    for b in (harness.MONKEYD, harness.MONKEYCTL, SHIM):
        if not os.access(b, os.R_OK):
            print("FAIL: %s is missing (build with meson; MONKEY_BUILD_ROOT)" % b)
            sys.exit(1)


# --------------------------------------------------------------------------
# invariants

def ctl_status_timed(a):
    """`monkeyctl status --json` through the real binary: (seconds, exit
    status, parsed JSON)."""
    t = time.monotonic()
    cp = subprocess.run([harness.MONKEYCTL, "--socket", a.socket, "status", "--json"],
                        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=10)
    dt = time.monotonic() - t
    try:
        js = json.loads(cp.stdout) if cp.stdout.strip() else None
    except ValueError:
        js = None
    return dt, cp.returncode, js


def assert_responsive(a, what=""):
    """monkeyd runs, answers status on its socket within 100 ms, and
    `monkeyctl status` works without waiting on the fault (CTL_BOUND).
    The machine is shared and noisy: the best of three tries counts.
    Returns the socket's answer time."""
    a.assert_alive()
    best_sock = best_ctl = None
    for _ in range(3):
        t = time.monotonic()
        r = harness.control_request(a.socket, {"version": 1, "command": "status"}, 2.0)
        dt = time.monotonic() - t
        check(r.get("ok") is True, "status on the socket %sfailed: %r" % (what and what + ": ", r))
        best_sock = dt if best_sock is None else min(best_sock, dt)
        cdt, rc, js = ctl_status_timed(a)
        check(rc in (0, 1, 4) and isinstance(js, dict) and "state" in js,
              "monkeyctl status %sfailed: exit %s" % (what and what + ": ", rc))
        best_ctl = cdt if best_ctl is None else min(best_ctl, cdt)
        if best_sock <= STATUS_BOUND and best_ctl <= CTL_BOUND:
            break
    check(best_sock <= STATUS_BOUND, "status %stook %.0f ms on the socket (bound %.0f ms)"
          % (what and what + ": ", best_sock * 1000, STATUS_BOUND * 1000))
    check(best_ctl <= CTL_BOUND, "monkeyctl status %stook %.0f ms (bound %.0f ms)"
          % (what and what + ": ", best_ctl * 1000, CTL_BOUND * 1000))
    return best_sock


class StatusProbe(threading.Thread):
    """Asks the control socket for status every 50 ms while a fault lasts
    and keeps the answer times (the socket only, no process spawn)."""

    def __init__(self, a):
        super().__init__(daemon=True)
        self.a = a
        self.times = []
        self.errors = 0
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.is_set():
            if self.a.alive():
                t = time.monotonic()
                try:
                    harness.control_request(self.a.socket, {"version": 1, "command": "status"}, 2.0)
                    self.times.append(time.monotonic() - t)
                except Exception:  # noqa: BLE001 - a restart in between
                    self.errors += 1
            self.stopping.wait(0.05)

    def stop(self):
        self.stopping.set()
        self.join(5)

    @property
    def worst(self):
        return max(self.times, default=0.0)

    @property
    def n(self):
        return len(self.times)


def read_json(path):
    with open(path) as f:
        text = f.read()
    try:
        return text, json.loads(text)
    except ValueError:
        fail("%s is not JSON (half-written?): %r" % (path, text[:200]))


def leftovers(dirpath):
    """Temp files of atomic writes left in a directory."""
    try:
        return sorted(n for n in os.listdir(dirpath) if ".tmp-" in n)
    except FileNotFoundError:
        return []


def outbox_files(a):
    d = os.path.join(a.state_dir, "outbox")
    try:
        return sorted(n for n in os.listdir(d) if n.endswith(".json"))
    except FileNotFoundError:
        return []


def outbox_snapshot(a):
    """{file name: bytes} of the spooled alerts."""
    d = os.path.join(a.state_dir, "outbox")
    out = {}
    for n in outbox_files(a):
        try:
            with open(os.path.join(d, n), "rb") as f:
                out[n] = f.read()
        except FileNotFoundError:
            pass
    return out


def alert_lines(text):
    """The agent's own record of every alert it spooled: one log line each."""
    return [ln for ln in text.splitlines()
            if re.search(r"alert \((\w[\w-]*)\)(?! \[slack not configured\]):", ln)]


KINDS = (("breach", "is overloaded"), ("accepted", "accepted the reboot"), ("step", "reboot-instance"),
         ("back", "is back in the pool"), ("quarantined", "is quarantined"), ("gave-up", "until `monkeyctl resume`"),
         ("grace", "right after its reboot"), ("holding", "holding"), ("cleared", "cleared"),
         ("maintenance", "in maintenance"))


def kind_of(msg):
    t = (msg.get("body") or {}).get("text", "")
    for k, needle in KINDS:
        if needle in t:
            return k
    return "?" + t[:50]


def kinds(msgs):
    return [kind_of(m) for m in msgs]


# --------------------------------------------------------------------------
# the app the checks look at

class App:
    """A tiny HTTP service on 127.0.0.1 answering /health with 200 ok."""

    def __init__(self):
        self.port = free_port()

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                body = b"ok faults\n"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        class Quiet(http.server.ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # the binding check connects and hangs up

        self.server = Quiet(("127.0.0.1", self.port), H)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------
# a simulated host

_redis = []
_app = []


def redis():
    if not _redis:
        _redis.append(Redis().start())
        atexit.register(lambda: _redis[0].proc and _redis[0].stop())
    return _redis[0]


def app():
    if not _app:
        _app.append(App())
    return _app[0]


HOST_CONFIG = """\
[pool]
redis = {redis}
name = {pool}
address = 127.0.0.1:{port}
min_serving = 0
max_unavailable = 1
drain = 300ms
lease = 3s
heartbeat = 500ms

[slack]
token_file = {token_file}
channel = #incidents
api_url = {slack}
timeout = 2s

[aws]
region = us-east-1
instance_id = {iid}
endpoint_url = {ec2}
imds_url = {imds}

[remedy]
ladder = reboot-instance
max_per_window = {max_per_window}
window = 1h
reboot_timeout = {reboot_timeout}
grace = {grace}

[checks]
url = http://127.0.0.1:{port}/health
expect_content = ok faults
local_address = 127.0.0.1
attempts = 3
timeout = 1s
"""


class Host:
    """monkeyd on a simulated instance. The EC2 double reboots it: monkeyd
    stopped with SIGTERM (as systemd does at shutdown; already dead is
    fine), the load gone with the old boot, a new boot id, monkeyd started
    again. A test that kills monkeyd restarts it with restart()."""

    def __init__(self, name, max_per_window=2, reboot_timeout="30s", grace="0", slack=None, aws=None,
                 tmpdir=None, start_env=None):
        self.name = name
        self.slack = slack or SlackDouble(token=TOKEN).start()
        self.own_slack = slack is None
        self.aws = aws or AwsDouble(credentials={AK: (SECRET, None)}).start()
        self.own_aws = aws is None
        self.aws.on_reboot = self._on_reboot
        self.reboot_delay = 0.0     # how long the instance takes to go down after EC2 said yes
        self.pool = "f%s" % uuid.uuid4().hex[:8]
        self.a = Agent(name, window="1s", interval="100ms", host="fault-" + name, tmpdir=tmpdir)
        tok = os.path.join(self.a.dir, "slack-token")
        harness.atomic_write(tok, TOKEN + "\n", mode=0o600)
        self.extra = HOST_CONFIG.format(redis=redis().url(), pool=self.pool, port=app().port, token_file=tok,
                                        slack=self.slack.api_url, iid=IID, ec2=self.aws.endpoint_url,
                                        imds=self.aws.url, max_per_window=max_per_window,
                                        reboot_timeout=reboot_timeout, grace=grace)
        self.a.write_config(extra=self.extra)
        self.a.env_extra = {"AWS_ACCESS_KEY_ID": AK, "AWS_SECRET_ACCESS_KEY": SECRET, "HOME": self.a.dir}
        self.boot_ids = [harness.BOOT_A]
        self.lock = threading.RLock()
        self.reboot_threads = []
        self.reboot_errors = []
        self.reboots_simulated = 0
        self.start_env = start_env or {}
        self.next_env = None        # env for the start after the next reboot (a shim, say)
        self.on_killed = None       # called (lock held) once for a monkeyd found dead, before a restart
        self.handled_proc = None
        self.started_at = []        # wall clock of each start
        self.allowed_texts = []     # alerts in flight at a kill: may arrive twice

    # -- life cycle
    def start(self, env=None, wait_serving=True, timeout=10.0):
        with self.lock:
            self._spawn(env, timeout)
        if wait_serving:
            self.a.wait_state("SERVING", timeout)
        return self

    def _spawn(self, env, timeout=10.0):
        """Start monkeyd (lock held). A shim may kill it before its socket
        answers: that is the test's business, not a failed start."""
        e = dict(self.start_env)
        e.update(env or {})
        self.started_at.append(time.time())
        try:
            self.a.start(env=e, wait_serving=False, timeout=timeout)
        except TestFailure:
            # the kill comes from the writer thread, whenever the disk gets
            # there: its status answer may be cut short while the process
            # is still exiting (the socket closes before it can be reaped)
            try:
                if self.a.proc is not None:
                    self.a.proc.wait(2)
            except subprocess.TimeoutExpired:
                pass
            if self.a.proc is None or self.a.proc.poll() != -9:
                raise

    def _on_reboot(self, iid):
        t = threading.Thread(target=self._reboot, name="reboot-" + self.name, daemon=True)
        self.reboot_threads.append(t)
        t.start()

    def _reboot(self):
        try:
            time.sleep(self.reboot_delay)
            with self.lock:
                rc = self.a.stop() if self.a.alive() else None
                if rc == -9 or rc is None:
                    self.found_dead()       # a shim's SIGKILL got there first
                elif rc != 0:
                    self.reboot_errors.append("monkeyd exited %s on SIGTERM at the reboot" % rc)
                self.a.feeder.set_busy(5)           # what burned is gone with the old boot
                self.boot_ids.append(str(uuid.uuid4()))
                self.a.set_boot_id(self.boot_ids[-1])
                env, self.next_env = self.next_env, None
                self._spawn(env)
        except Exception as ex:  # noqa: BLE001 - reported by the cell
            self.reboot_errors.append("reboot simulation failed: %r" % (ex,))
        finally:
            self.reboots_simulated += 1

    def wait_reboots_done(self, timeout=15):
        """Every reboot EC2 accepted has been played out (the hook runs
        after EC2's answer is sent: it may not have started yet)."""
        wait_until(lambda: self.reboots_simulated >= len(self.reboots()), timeout,
                   what="the simulated reboot(s) to finish")
        check(not self.reboot_errors, "; ".join(self.reboot_errors))

    def found_dead(self):
        """monkeyd is dead (the lock is held): let the test look at what it
        left behind, once per process."""
        p = self.a.proc
        if p is not None and p is not self.handled_proc:
            self.handled_proc = p
            if self.on_killed:
                self.on_killed(p.returncode)
        self.a.kill()
        if not self.a.log.closed:
            self.a.log.close()

    def restart(self, env=None):
        """After monkeyd died (SIGKILL): start it again in the same boot."""
        with self.lock:
            if self.a.proc is not None and not self.a.alive():
                self.found_dead()
                self._spawn(env)

    def close(self, ok=True):
        try:
            if not ok:
                self.a.dump_log()
            self.a.close(judge=ok)
        finally:
            if self.own_slack:
                self.slack.stop()
            if self.own_aws:
                self.aws.stop()

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        ok = et is None
        try:
            if ok:
                # a sanitizer build reports into monkeyd's stderr
                bad = [ln for ln in self.a.all_logs().splitlines()
                       if "Sanitizer" in ln or "runtime error:" in ln]
                check(not bad, "sanitizer report in monkeyd's log: %s" % "; ".join(bad[:3]))
        except TestFailure:
            ok = False
            raise
        finally:
            self.close(ok=ok)
        return False

    # -- what the world saw
    def reboot_calls(self):
        return [r for r in self.aws.ec2_requests() if r.get("action") == "RebootInstances" and not r.get("dry_run")]

    def reboots(self):
        return self.aws.reboots()

    def serving_set(self):
        return set(x for x in redis().cmd("SMEMBERS", "monkey:{%s}:serving" % self.pool).split("\n") if x)

    def host_hash(self):
        out = redis().cmd("HGETALL", "monkey:{%s}:host:%s" % (self.pool, "fault-" + self.name)).split("\n")
        return dict(zip(out[0::2], out[1::2]))

    def addr(self):
        return "127.0.0.1:%d" % app().port

    def wait_state_unless_rebooted(self, state, timeout, calls_allowed=0):
        """Wait for `state`; fail at once, and say so, if RebootInstances
        is called more than calls_allowed times meanwhile (the reboot would
        take monkeyd down under the wait)."""
        def reached():
            if len(self.reboot_calls()) > calls_allowed:
                return "rebooted"
            try:
                st = self.a.status()
            except Exception:  # noqa: BLE001 - going down for a reboot
                return False
            return st["state"] == state and st
        got = wait_until(reached, timeout, 0.02, what="state %s" % state)
        check(got != "rebooted", "RebootInstances called (%d) while waiting for %s"
              % (len(self.reboot_calls()), state))
        return got

    def wait_permission(self, timeout=10):
        def ok():
            st = self.a.status()["remedy"].get("aws") or {}
            return st.get("permission") == "permitted"
        wait_until(ok, timeout, what="the EC2 self-test to pass")

    def state_json(self):
        return read_json(self.a.state_json_path())[1]

    # -- assertions shared by the cells
    def assert_pool_consistent(self, timeout=5):
        """Redis agrees with the agent: routed iff the state is routable."""
        def agree():
            st = self.a.status()
            routed = self.addr() in self.serving_set()
            want = st["state"] in ("SERVING", "OVERLOADED", "HOLDING")
            h = self.host_hash()
            return routed == want and h.get("state") == st["state"] and (st, routed)
        try:
            return wait_until(agree, timeout, 0.1, what="Redis to agree with the agent")
        except TestFailure:
            fail("pool inconsistent: agent %s, serving set %r, host hash state %r"
                 % (self.a.state(), self.serving_set(), self.host_hash().get("state")))

    def in_flight_at(self, spooled, killed_at):
        """Of the alerts spooled when monkeyd was killed (texts), those Slack
        got before the next start: nothing ran in between, so they were in
        flight at the kill (sent, the answer not yet read or not yet acted
        on). Each may arrive twice: the outbox is at-least-once."""
        nxt = min([t for t in self.started_at if t > killed_at] or [float("inf")])
        out = [t for t in spooled if any(m["wall"] < nxt and m["body"].get("text") == t
                                         for m in self.slack.messages())]
        self.allowed_texts.extend(out)
        return out

    def assert_alerts(self, want, allowed_dups=0, timeout=10):
        """Every alert the agent spooled (its log says so, across runs) was
        delivered, each kind in `want` at least once; more deliveries than
        spooled alerts only for the `allowed_dups` that were in flight at a
        SIGKILL (the documented at-least-once case)."""
        def delivered():
            n = len(alert_lines(self.a.all_logs()))
            msgs = self.slack.messages()
            have = kinds(msgs)
            return len(msgs) >= n and all(k in have for k in want) and msgs
        try:
            wait_until(delivered, timeout, 0.1, what="every spooled alert delivered")
        except TestFailure:
            fail("alerts lost: spooled %d %r, delivered %r" % (
                len(alert_lines(self.a.all_logs())),
                [re.sub(r".*alert \(", "(", ln)[:60] for ln in alert_lines(self.a.all_logs())],
                kinds(self.slack.messages())))
        time.sleep(0.3)  # a duplicate would show now
        msgs = self.slack.messages()
        n = len(alert_lines(self.a.all_logs()))
        check(len(msgs) <= n + allowed_dups, "%d deliveries for %d spooled alerts (%d allowed in flight): %r"
              % (len(msgs), n, allowed_dups, kinds(msgs)))
        # once per incident: a breach or a back report twice for the same
        # incident is a duplicate unless the first was in flight at a kill
        seen = {}
        for m in msgs:
            if kind_of(m) in ("breach", "back"):
                text = m["body"].get("text") or ""
                inc = re.search(r"\d{8}T\d{6}Z-[\w.-]+", text)
                key = (kind_of(m), inc.group(0) if inc else None)
                seen.setdefault(key, []).append(text)
        for key, texts in seen.items():
            extra = len(texts) - 1 - sum(1 for t in texts[:1] if t in self.allowed_texts)
            check(extra <= 0, "the %s alert of incident %s was sent %d times" % (key[0], key[1], len(texts)))
        parents = {m["ts"] for m in msgs if kind_of(m) == "breach"}
        for m in msgs:
            if kind_of(m) in ("step", "accepted", "back") and m.get("thread_ts") not in parents:
                fail("%s alert not in an incident thread: %r" % (kind_of(m), m["body"]["text"][:80]))
        return msgs


# --------------------------------------------------------------------------
# shim environment

def asan_env():
    """A sanitizer build checks that its runtime comes first in the initial
    library list; the shim is preloaded ahead of it on purpose."""
    opts = os.environ.get("ASAN_OPTIONS", "")
    return {"ASAN_OPTIONS": (opts + ":" if opts else "") + "verify_asan_link_order=0"}


def shim_env(**features):
    e = asan_env()
    e["LD_PRELOAD"] = SHIM
    for k, v in features.items():
        e["FAULTSHIM_" + k.upper()] = str(v)
    return e


def faketime_env(timestamp_file):
    e = asan_env()
    # the shim first: its timerfd calls must win over libfaketime's
    e["LD_PRELOAD"] = SHIM + ":" + LIBFAKETIME
    e["FAULTSHIM_TIMERFD_REAL"] = "1"
    e["FAKETIME_TIMESTAMP_FILE"] = timestamp_file
    e["FAKETIME_NO_CACHE"] = "1"
    e["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"
    e["FAKETIME_DONT_RESET"] = "1"
    e["NO_FAKE_STAT"] = "1"
    return e


def payload_text(raw):
    """The Slack text of a spooled outbox record (the file's bytes)."""
    try:
        return json.loads(raw)["payload"].get("text")
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
