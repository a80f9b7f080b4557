"""A Doctor Monkey fleet on one machine, for the demo and the end-to-end
test: a real redis-server, a real haproxy fed by monkey-proxy-sync, and N
simulated hosts on 127.0.0.2, 127.0.0.3, ..., each with a real nginx app
and its own monkeyd (own config, state dir, control socket, boot id file
and CPU source), plus the Slack double and the EC2/IMDS double (one EC2
endpoint, one metadata listener per host on the host's own address).

A host's CPU source is a file in /proc/stat format that the fleet writes
(harness.StatFeeder): the fleet decides when a host is overloaded. What
burns is real, though: an overload also starts a bounded, niced busy loop
(runaway_worker.c) so the agent's top-process evidence, read from the real
/proc, has a culprit to name.

The EC2 double "reboots" a host when it accepts a correctly signed
RebootInstances for that host's instance id: monkeyd and nginx are stopped
(SIGTERM, as systemd does at shutdown), the runaway worker dies with them,
the boot id changes, and after `boot_delay` nginx then monkeyd start again
(the app's unit is ordered before monkeyd's).

A Timeline thread samples everything ten times a second (each agent's
history, the pool's serving set in Redis, what haproxy routes to, Slack
messages, EC2 requests, the HTTP load) and records one event per change,
printed as it happens when `live` is set. The scenarios assert on it.

Loopback only; every process is stopped on exit, Ctrl-C and failure (the
harness's atexit hooks); every wait and loop is bounded."""

import html
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, os.path.join(HERE, "..", "doubles"))
import dnsns  # noqa: E402
import harness  # noqa: E402
import proxyfleet  # noqa: E402
from dnsstub import DnsStub, DnsStubError  # noqa: E402
from aws_double import AwsDouble  # noqa: E402
from alb import AlbFront  # noqa: E402
from slack_double import SlackDouble  # noqa: E402

POOL = "web"
TLS_NAME = "redis.pool.test"  # in the certificate test_pool.make_certs makes
SERVING_KEY = "monkey:{%s}:serving" % POOL
REGION = "us-east-1"
ROLE = "web-monkey"
BASELINE = 15.0      # % CPU of a healthy host
OVERLOAD = 97.0
RUNAWAY = os.path.join(harness.BUILD_ROOT, "tests", "runaway_worker")
MAX_RUNAWAY = 60.0   # a runaway worker never outlives this, whatever happens

AGENT_TIMING = dict(threshold=85, clear_below=60, window="3s", interval="250ms")

AGENT_CONFIG = """\
[pool]
redis = {redis}
name = {pool}
address = {addr}:{port}
min_serving = 1
max_unavailable = {max_unavailable}
drain = 2s
lease = 3s
heartbeat = 1s
{pool_more}

[slack]
token_file = {token_file}
channel = #incidents
api_url = {slack_api}

[aws]
endpoint_url = {ec2}
imds_url = {imds}
{aws_more}
[remedy]
ladder = reboot-instance
dry_run = {dry_run}
max_per_window = 3
window = 1h
reboot_timeout = 60s

[checks]
url = http://{addr}:{port}/health
expect_content = ok {name}
attempts = 3
timeout = 1s
every = 2s
rise = 2
fall = 3
"""

APP_BODY = """\
    server {{
        listen {addr}:{port};
        default_type text/plain;
        location = /health {{ return 200 "{health}\\n"; }}
        location / {{ return 200 "host={name}\\n"; }}
    }}"""

BROKEN_HEALTH = "maintenance: schema migration failed, serving the holding page"

# Behind an ALB, in an Auto Scaling group (Fleet(alb=True)): one target
# group of the three instances, its health check on each agent's health
# endpoint every 0.3 s (2 good to be healthy, 2 bad to be unhealthy), a
# 2 s deregistration delay; one group with ELB health checks and a 2 s
# grace, the ASG launching in 0.5 s.
TARGET_GROUP = "web-tg"
AUTOSCALING_GROUP = "web-asg"
DEREGISTRATION_DELAY = 2.0
HEALTH_INTERVAL = 0.3
HEALTH_GRACE = 2.0

AGENT_AWS_ALB = """\
elb_endpoint_url = {elb}
autoscaling_endpoint_url = {autoscaling}
target_groups = {arn}
autoscaling = {autoscaling_mode}
deregistration_timeout = 20s
registration_timeout = 20s
"""


# --------------------------------------------------------------------------
# terminal output

class Style:
    """ANSI colour when stdout is a terminal, plain text otherwise."""

    def __init__(self, colour):
        self.colour = colour

    def __call__(self, text, *codes):
        if not self.colour or not codes:
            return text
        return "\033[%sm%s\033[0m" % (";".join(codes), text)


STATE_COLOUR = {"SERVING": ("32",), "CHECKING": ("36",), "BOOT": ("36",), "OVERLOADED": ("33", "1"),
                "HOLDING": ("33",), "DRAINING": ("31",), "REMEDIATING": ("31", "1"),
                "QUARANTINED": ("41", "97", "1"), "MAINTENANCE": ("35",), "down": ("2",)}
HOST_COLOUR = ("36", "35", "33", "34", "32", "91")


# --------------------------------------------------------------------------
# small clients

def redis_smembers(port, key, timeout=0.5):
    """SMEMBERS over RESP with a raw socket (no redis-cli fork per sample);
    None when Redis does not answer."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            k = key.encode()
            s.sendall(b"*2\r\n$8\r\nSMEMBERS\r\n$%d\r\n%s\r\n" % (len(k), k))
            buf = b""
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                d = s.recv(65536)
                if not d:
                    return None
                buf += d
                parsed = _parse_array(buf)
                if parsed is not None:
                    return set(parsed)
    except OSError:
        return None
    return None


def _parse_array(buf):
    """The bulk strings of a complete RESP array reply, None if incomplete."""
    if not buf.startswith(b"*"):
        return None if b"\r\n" not in buf else []
    pos = buf.find(b"\r\n")
    if pos < 0:
        return None
    n = int(buf[1:pos])
    pos += 2
    out = []
    for _ in range(max(n, 0)):
        end = buf.find(b"\r\n", pos)
        if end < 0 or buf[pos:pos + 1] != b"$":
            return None
        ln = int(buf[pos + 1:end])
        start = end + 2
        if len(buf) < start + ln + 2:
            return None
        out.append(buf[start:start + ln].decode())
        pos = start + ln + 2
    return out


# --------------------------------------------------------------------------
# a simulated host

class Host:
    def __init__(self, fleet, index, name, addr, iid):
        self.fleet = fleet
        self.index = index
        self.name = name
        self.addr = addr
        self.iid = iid
        self.port = fleet.app_port
        self.broken_after_boot = False
        self.app = None
        self.agent = None
        self.runaway = None
        self.boot_ids = [str(uuid.uuid4())]
        self.reboot_thread = None
        self.rebooting = False
        self.history_runs = []   # each run's history, saved before the run ends
        self.lock = threading.Lock()

    @property
    def label(self):
        return self.fleet.style("%-5s" % self.name, HOST_COLOUR[self.index % len(HOST_COLOUR)], "1")

    def start_app(self, broken=False):
        body = APP_BODY.format(addr=self.addr, port=self.port, name=self.name,
                               health=BROKEN_HEALTH if broken else "ok %s build 42" % self.name)
        self.app = proxyfleet.Nginx(self.name, body, self.addr, self.port).start()

    def new_agent(self, dry_run):
        f = self.fleet
        a = harness.Agent(name="fleet-" + self.name, host=self.name, busy=BASELINE,
                          boot_id=self.boot_ids[-1], **AGENT_TIMING)
        token_file = os.path.join(a.dir, "slack-token")
        harness.atomic_write(token_file, f.slack_token + "\n", mode=0o600)
        a.write_config(extra=AGENT_CONFIG.format(
            redis=f.agent_redis_url(), pool_more=f.agent_redis_more(a), pool=POOL, addr=self.addr, port=self.port, name=self.name,
            max_unavailable=f.max_unavailable, token_file=token_file, slack_api=f.slack.api_url,
            ec2=f.aws.endpoint_url, imds=f.aws.serve_imds(self.iid, self.addr), aws_more=f.agent_aws_more(),
            dry_run="yes" if dry_run else "no") +
            ("\n[evidence]\nprofile = %s\n" % f.profile if f.profile else "") + f.agent_proxy_more())
        # Credentials come from the instance role through IMDS, as on EC2:
        # nothing in the environment or a home directory may shadow them.
        a.env_extra = {"HOME": a.dir}
        self.agent = a
        return a

    def start_agent(self):
        """monkeyd starts, in its own view of resolv.conf when the fleet's
        Redis goes by a name the DNS stub answers."""
        f = self.fleet
        wrapper = dnsns.DnsView(f.dns, self.agent.dir).wrapper() if f.dns else ()
        self.agent.start(wait_serving=False, wrapper=wrapper)

    def overload(self, seconds=30.0):
        """The host's CPU source goes to OVERLOAD and a real runaway worker
        starts; both end at the host's reboot, or by stop_overload()."""
        self.start_runaway(seconds)
        return self.agent.feeder.set_busy(OVERLOAD)

    def stop_overload(self):
        self.agent.feeder.set_busy(BASELINE)
        self.stop_runaway()

    def start_runaway(self, seconds):
        self.stop_runaway()
        self.runaway = harness.spawn([RUNAWAY, "--host", self.name, "--seconds", "%.0f" % min(seconds, MAX_RUNAWAY),
                                      "--work", self.fleet.work], stdin=subprocess.DEVNULL)

    def stop_runaway(self):
        p, self.runaway = self.runaway, None
        if p is not None and p.poll() is None:
            p.kill()
            p.wait(5)

    def save_history(self):
        try:
            h = self.agent.history(200)
        except Exception:  # noqa: BLE001 - the agent may already be gone
            return
        with self.lock:
            self.history_runs.append(h)

    def all_history(self):
        """Every transition of every run so far, oldest first."""
        with self.lock:
            runs = list(self.history_runs)
        out = [h for run in runs for h in run]
        if self.agent is not None and self.agent.alive():
            try:
                out += self.agent.history(200)
            except Exception:  # noqa: BLE001
                pass
        seen, uniq = set(), []
        for h in harness.sorted_history(out):
            k = (h.get("at_unix"), h.get("from"), h.get("to"), h.get("event"))
            if k not in seen:
                seen.add(k)
                uniq.append(h)
        return uniq

    def reboot(self):
        """What an instance reboot does to this host (called by the EC2
        double once it has answered RebootInstances)."""
        with self.lock:
            if self.rebooting:
                return
            self.rebooting = True
        self.reboot_thread = threading.Thread(target=self._reboot, name="reboot-" + self.name, daemon=True)
        self.reboot_thread.start()

    def _reboot(self):
        f = self.fleet
        try:
            f.timeline.add("reboot", self, "instance reboot: stopping monkeyd and nginx (SIGTERM)")
            self.save_history()
            rc = self.agent.stop()
            self.app.stop()
            self.stop_runaway()
            self.agent.feeder.set_busy(BASELINE)   # what burned is gone with the old boot
            self.boot_ids.append(str(uuid.uuid4()))
            self.agent.set_boot_id(self.boot_ids[-1])
            f.timeline.add("reboot", self, "down (monkeyd exited %s); boot id now %s..." % (rc, self.boot_ids[-1][:8]))
            if f.stopping.wait(f.boot_delay):
                return
            self.start_app(broken=self.broken_after_boot)
            f.timeline.add("reboot", self, "booted: nginx up%s, starting monkeyd"
                           % (" (serving a BROKEN health page)" if self.broken_after_boot else ""))
            self.start_agent()
        except Exception as e:  # noqa: BLE001 - reported, and the scenario fails on it
            f.timeline.add("error", self, "reboot simulation failed: %r" % (e,))
            f.errors.append("%s reboot: %r" % (self.name, e))
        finally:
            with self.lock:
                self.rebooting = False


# --------------------------------------------------------------------------
# the timeline

class Timeline:
    """Samples the fleet every `tick` s and records one event per change:
    (t, kind, host name or None, text). Prints each as it comes if live."""

    def __init__(self, fleet, live, tick=0.1):
        self.fleet = fleet
        self.live = live
        self.tick = tick
        self.events = []
        self.lock = threading.Lock()
        self.t0 = time.monotonic()
        self.stop_ev = threading.Event()
        self.thread = None
        self._hist_seen = {}
        self._serving = "unknown"
        self._routed = None
        self._slack_seen = 0
        self._ec2_seen = 0
        self._sync_seen = 0
        self._aws_seen = 0
        self._aws_keys = set()
        self._threads = {}
        self.t_ready = float("inf")  # set once the fleet is up
        self.pool_samples = []     # (t, serving set or None)
        self.routed_samples = []   # (t, set of host names haproxy routes to)
        self.state_samples = []    # (t, {host: state})

    def now(self):
        return time.monotonic() - self.t0

    def add(self, kind, host, text, t=None):
        """t: when it happened, on this timeline (default: now)."""
        t = self.now() if t is None else t
        name = host.name if isinstance(host, Host) else host
        with self.lock:
            self.events.append((t, kind, name, text))
        if self.live:
            self._print(t, kind, host, text)

    def _print(self, t, kind, host, text):
        st = self.fleet.style
        load = self.fleet.load
        counter = ""
        if load is not None:
            n, bad = load.total(), len(load.failures())
            counter = st("[http %5d ok %s]" % (n - bad, ("%d FAILED" % bad) if bad else "0 failed"),
                         "31" if bad else "2")
        who = host.label if isinstance(host, Host) else ("%-5s" % (host or ""))
        kind_s = st("%-6s" % kind, "2")
        lines = text.split("\n")
        with self.fleet.print_lock:
            print("%s %s %s %s %s" % (st("%6.1fs" % t, "2"), counter, kind_s, who, lines[0]), flush=True)
            for ln in lines[1:]:
                print("%s %s" % (" " * (8 + len("[http 00000 ok 0 failed]") + 14), ln), flush=True)

    def say(self, text):
        st = self.fleet.style
        with self.fleet.print_lock:
            if self.live:
                print("\n" + st("== " + text, "1"), flush=True)
        with self.lock:
            self.events.append((self.now(), "say", None, text))

    def start(self):
        self.thread = threading.Thread(target=self._run, name="timeline", daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.stop_ev.set()
        if self.thread:
            self.thread.join(5)

    def _run(self):
        while not self.stop_ev.is_set():
            try:
                self.sample()
            except Exception as e:  # noqa: BLE001 - a sampling hiccup is shown, not fatal
                self.add("error", None, "timeline sample failed: %r" % (e,))
            self.stop_ev.wait(self.tick)

    def sample(self):
        f = self.fleet
        t = self.now()
        states = {}
        for h in f.hosts:
            states[h.name] = self._sample_host(h)
        self.state_samples.append((t, states))

        serving = redis_smembers(f.redis.port, SERVING_KEY) if f.redis.proc is not None else None
        by_addr = {"%s:%d" % (h.addr, h.port): h.name for h in f.hosts}
        names = None if serving is None else frozenset(by_addr.get(a, a) for a in serving)
        self.pool_samples.append((t, names))
        if names != self._serving:
            if names is None:
                self.add("pool", None, "Redis does not answer")
            else:
                out = [h.name for h in f.hosts if h.name not in names]
                self.add("pool", None, "serving in Redis: %s%s" % (
                    ", ".join(sorted(names)) or "(none)", ("   out: " + ", ".join(out)) if out else ""))
            self._serving = names

        if f.front is not None and f.front.arn is not None:
            pick, failed_open = f.front.routable()
            routed = frozenset(f.front.names[i] for i in pick)
            self.routed_samples.append((t, routed))
            if routed != self._routed:
                self.add("lb", None, "the ALB routes to: %s%s" % (", ".join(sorted(routed)) or "(nobody)",
                                                                  "   (failing open: no target healthy)"
                                                                  if failed_open and routed else ""))
                self._routed = routed
        elif f.haproxy is not None:
            try:
                routed = set()
                for s in f.haproxy.servers().values():
                    if s["addr"] in by_addr and proxyfleet.mode_of(s["admin"]) == "ready" and s["op"] == 2:
                        routed.add(by_addr[s["addr"]])
                routed = frozenset(routed)
            except Exception:  # noqa: BLE001 - haproxy restarting: keep the last view
                routed = self._routed
            self.routed_samples.append((t, routed))
            if routed != self._routed and routed is not None:
                self.add("lb", None, "haproxy routes to: %s" % (", ".join(sorted(routed)) or "(nobody)"))
                self._routed = routed

        if f.sync is not None:
            lines = f.sync.log().splitlines()
            for ln in lines[self._sync_seen:]:
                if ln.startswith("warning:"):
                    self.add("sync", None, "monkey-proxy-sync: " + ln[len("warning:"):].strip())
            self._sync_seen = len(lines)

        msgs = f.slack.messages()
        for m in msgs[self._slack_seen:]:
            self._slack_event(m)
        self._slack_seen = len(msgs)

        reqs = f.aws.ec2_requests()
        for r in reqs[self._ec2_seen:]:
            self._ec2_event(r)
        self._ec2_seen = len(reqs)

        if f.alb:
            # The double files an API call before the changes it made,
            # once it has answered: a record may land a few places back.
            evs = f.aws.events()
            for e in evs[max(0, self._aws_seen - 64):]:
                k = json.dumps(e, sort_keys=True)
                if k not in self._aws_keys:
                    self._aws_keys.add(k)
                    self._aws_event(e)
            self._aws_seen = len(evs)

    def _sample_host(self, h):
        a = h.agent
        if a is None or not a.alive():
            return "down"
        try:
            hist = a.history(50)
        except Exception:  # noqa: BLE001 - stopping or starting
            return "down"
        seen = self._hist_seen.setdefault((h.name, a.runs), set())
        state = None
        for e in hist:
            k = (e.get("at_unix"), e.get("from"), e.get("to"), e.get("event"))
            state = e.get("to")
            if k in seen:
                continue
            seen.add(k)
            st = self.fleet.style
            self.add("state", h, "%s -> %s   %s" % (e.get("from"), st(e.get("to"), *STATE_COLOUR.get(e.get("to"), ())),
                                                   e.get("reason") or ""))
        return state or "BOOT"

    def _slack_event(self, m):
        body = m.get("body") or {}
        text = message_text(m).split("\n")
        root = m.get("thread_ts") or m["ts"]
        n = self._threads.setdefault(root, len(self._threads) + 1)
        where = "thread #%d, reply" % n if m.get("thread_ts") else "thread #%d, new" % n
        host = next((h for h in self.fleet.hosts if text and text[0].startswith(h.name)), None)
        lines = [self.fleet.style(text[0], "1") + "   (" + where + ")"]
        detail = []
        for b in body.get("blocks", []):
            t = (b.get("text") or {}).get("text", "")
            if t.startswith("```"):
                detail = html.unescape(t.strip("`")).strip("\n").split("\n")
        lines += ["  " + ln for ln in detail[:7]]
        self.add("slack", host, "\n".join(lines))

    def _ec2_event(self, r):
        host = next((h for h in self.fleet.hosts if h.iid == r.get("instance")), None)
        what = "%s %s%s" % (r.get("action"), r.get("instance"), " DryRun" if r.get("dry_run") else "")
        sig = "signed ok (%s credentials)" % r.get("credential_kind") if r.get("auth_ok") else \
            "REJECTED: %s" % r.get("reject_reason")
        self.add("ec2", host, "%s, %s -> %s %s" % (what, sig, r.get("status"), r.get("code") or ""))

    def _aws_event(self, e):
        """One of the ELB/Auto Scaling double's records, at the time it
        happened (its clock is this machine's monotonic one). The agents'
        polling (Describe*) shows only when it fails."""
        f = self.fleet
        host = next((h for h in f.hosts if h.iid in (e.get("target"), e.get("instance"))
                     or h.iid in (e.get("instances") or ())), None)
        t = e["t"] - self.t0
        k = e["kind"]
        if k == "api":
            if e["action"].startswith("Describe") and e["status"] == 200:
                return
            kind = "elb" if e["service"] == "elasticloadbalancing" else "asg"
            self.add(kind, host, "%s -> %s%s" % (e["action"], e["status"], (" " + e["code"]) if e.get("code") else ""),
                     t)
        elif k == "target":
            self.add("target", host, "target %s in %s: %s%s" % (e["target"], e["target_group"], e["state"],
                                                               " (%s)" % e["reason"] if e.get("reason") else ""), t)
        elif k == "lifecycle":
            self.add("asg", host, "%s in %s: %s (%s)" % (e["instance"], e["group"], e["state"], e["health"]), t)
        elif k == "violation":
            self.add("error", host, "the AWS double: " + e.get("message", ""), t)

    # -- queries for the assertions ----------------------------------------

    def of(self, kind, host=None):
        with self.lock:
            return [e for e in self.events if e[1] == kind and (host is None or e[2] == host)]

    def max_out(self, total):
        """The most hosts ever missing from Redis's serving set (samples
        where Redis answered)."""
        return max([total - len(s) for t, s in self.pool_samples if s is not None and t >= self.t_ready] or [0])


# --------------------------------------------------------------------------
# the fleet

class TlsRedis(proxyfleet.Redis):
    """redis-server with a TLS port for the agents (certificates made for
    TLS_NAME and 127.0.0.1) and the ACL users of conf/redis-acl.conf; the
    plain port stays for the timeline's own reads."""

    def __init__(self):
        super().__init__()
        from test_pool import make_certs
        self.certs = harness.make_tmpdir("monkey-fleet-certs-")
        make_certs(self.certs)
        self.tls_port = proxyfleet.free_port()
        self.passwords = {"monkey-agent": os.urandom(9).hex(), "monkey-proxy-sync": os.urandom(9).hex()}

    def start(self):
        c = lambda n: os.path.join(self.certs, n)  # noqa: E731
        self.proc = proxyfleet.start_group(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--unixsocket", self.socket,
             "--unixsocketperm", "700", "--tls-port", str(self.tls_port), "--tls-cert-file", c("server.crt"),
             "--tls-key-file", c("server.key"), "--tls-ca-cert-file", c("ca.crt"), "--tls-auth-clients", "no",
             "--save", "", "--appendonly", "no", "--dir", self.dir], self.logfile)
        harness.wait_until(lambda: subprocess.run(["redis-cli", "-p", str(self.port), "PING"], capture_output=True,
                                                  text=True, timeout=5).stdout.strip() == "PONG",
                           5.0, 0.05, "redis-server to answer PING")
        return self

    def add_acl_users(self):
        from test_acl import acl_rules
        for user, rules in acl_rules().items():
            self.cmd("ACL", "SETUSER", user, ">" + self.passwords[user], *rules)

    def describe(self):
        return "redis-server 127.0.0.1:%d, TLS on %d, ACL users monkey-agent and monkey-proxy-sync" % (
            self.port, self.tls_port)


class Fleet:
    def __init__(self, n=3, max_unavailable=1, dry_run=False, live=False, colour=None, boot_delay=2.0,
                 load_seconds=120.0, load_workers=3, title=None, work="checksum", production_redis=False,
                 alb=False, autoscaling="standby"):
        self.title = title
        # Behind an ALB (alb.AlbFront) in an Auto Scaling group instead of
        # haproxy: the agents deregister from the double's target group
        # and enter standby ([aws] autoscaling, "off" to see the group
        # replace a host that leaves without it).
        self.alb = alb
        self.autoscaling = autoscaling
        self.front = self.tg_arn = self.health_port = None
        # Redis as a managed service serves it: TLS only to the agents, by
        # a DNS name (the stub; 127.0.0.1 with tls_server_name where no
        # namespace may be made), each client as its own ACL user.
        self.production_redis = production_redis
        self.dns = None
        self.dns_why = None
        # What the runaway worker burns on ("checksum", or "both" with
        # compression: the regression of the demo's differential graph).
        self.work = work
        # [evidence] profile for every agent ("3s"), from the demo's
        # --profile; and where each host's incidents are copied at the
        # end (--keep-evidence). Off for the e2e test: its timings are
        # the cycle's own.
        self.profile = os.environ.get("MONKEY_FLEET_PROFILE") or None
        self.keep_evidence = os.environ.get("MONKEY_FLEET_KEEP_EVIDENCE") or None
        self.n = n
        self.max_unavailable = max_unavailable
        self.dry_run = dry_run
        self.boot_delay = boot_delay
        self.load_seconds = load_seconds
        self.load_workers = load_workers
        self.style = Style(sys.stdout.isatty() if colour is None else colour)
        self.print_lock = threading.Lock()
        self.stopping = threading.Event()
        self.errors = []
        self.hosts = []
        self.redis = self.haproxy = self.sync = self.load = self.slack = self.aws = None
        self.slack_token = "xoxb-fleet-" + os.urandom(8).hex()
        self.timeline = Timeline(self, live)

    def host(self, name):
        return next(h for h in self.hosts if h.name == name)

    def start(self):
        tl = self.timeline
        if self.title:
            tl.say(self.title)
        addrs = ["127.0.0.%d" % (i + 2) for i in range(self.n)]
        self.app_port = proxyfleet.free_port(tuple(addrs))
        iids = ["i-0f1ee7%011x" % (i + 1) for i in range(self.n)]
        self.redis = (TlsRedis() if self.production_redis else proxyfleet.Redis()).start()
        if self.production_redis:
            self.redis.add_acl_users()
            self.dns_why = dnsns.refused()
            if self.dns_why is None:
                try:
                    self.dns = DnsStub({TLS_NAME: "127.0.0.1"}).__enter__()
                except DnsStubError as e:
                    self.dns_why = str(e)
        self.slack = SlackDouble(token=self.slack_token).start()
        self.aws = AwsDouble(region=REGION, role=ROLE, credentials={},
                             instances={iid: {"local_ipv4": a} for iid, a in zip(iids, addrs)},
                             on_reboot=self._on_reboot).start()
        if self.alb:
            self._start_front(addrs, iids)
        for i, (a, iid) in enumerate(zip(addrs, iids)):
            h = Host(self, i, "app%d" % (i + 1), a, iid)
            self.hosts.append(h)
            h.start_app()
            h.new_agent(self.dry_run)
        for h in self.hosts:
            h.start_agent()
        if not self.alb:
            template = "    server-template s 1-%d 127.0.0.1:1 check inter 500ms disabled\n" % (self.n + 1)
            self.haproxy = proxyfleet.HAProxy(template).start()
            self.sync = proxyfleet.ProxySync(self.sync_redis_args() + ["--pool", POOL, "--haproxy-socket",
                                              self.haproxy.socket, "--backend", "be", "--drain-grace", "1s"],
                                             name="fleet-sync").start()
        tl.start()
        harness.wait_until(lambda: all(h.agent.state() == "SERVING" for h in self.hosts), 20, 0.1,
                           "every host SERVING")
        harness.wait_until(lambda: all((h.agent.status()["remedy"].get("aws") or {}).get("permission") == "permitted"
                                       for h in self.hosts), 20, 0.1, "every host's EC2 self-test (DryRun)")
        # (behind the ALB: healthy, every one; failing open routes to all too)
        harness.wait_until(lambda: tl._routed is not None and len(tl._routed) == self.n and
                           (self.front is None or not self.front.routable()[1]), 10, 0.1,
                           "%s routing to every host" % self.lb_name)
        if self.alb:
            self._start_autoscaling_group(iids)
        tl.t_ready = tl.now()  # the assertions look at what happens from here on
        self.load = proxyfleet.Load(self.front.port if self.alb else self.haproxy.port, workers=self.load_workers,
                                    max_seconds=self.load_seconds).start()
        return self

    @property
    def lb_name(self):
        return "the ALB" if self.alb else "haproxy"

    def _start_front(self, addrs, iids):
        """The ALB's front and its target group, the instances registered
        as at their launch; the health check on each agent's health
        endpoint, through the front's relay."""
        self.health_port = proxyfleet.free_port(tuple(addrs))
        self.front = AlbFront(self.aws, None, {iid: (a, self.app_port) for iid, a in zip(iids, addrs)},
                              names={iid: "app%d" % (i + 1) for i, iid in enumerate(iids)},
                              health_port=self.health_port).start()
        self.tg_arn = self.aws.add_target_group(TARGET_GROUP, port=self.app_port,
                                                deregistration_delay=DEREGISTRATION_DELAY,
                                                health_check_url=self.front.health_check_url,
                                                interval=HEALTH_INTERVAL, timeout=1.0, targets=iids)
        self.front.arn = self.tg_arn

    def _start_autoscaling_group(self, iids):
        """The running, healthy instances attached to a group with ELB
        health checks (as AttachInstances does): from here on, a host that
        leaves its target group while InService is replaced, the disaster
        standby avoids. Attached once the agents serve, so the short grace
        need not cover their start."""
        self.aws.add_autoscaling_group(AUTOSCALING_GROUP, instances=iids, target_groups=[self.tg_arn],
                                       health_check_type="ELB", health_check_grace=HEALTH_GRACE,
                                       launch_delay=0.5, health_check_period=0.3)
        self.timeline.add("asg", None, "instances %s attached to Auto Scaling group %s (ELB health checks, "
                                       "grace %.0f s)" % (", ".join(h.name for h in self.hosts), AUTOSCALING_GROUP,
                                                           HEALTH_GRACE))

    def agent_aws_more(self):
        if not self.alb:
            return ""
        return AGENT_AWS_ALB.format(elb=self.aws.elb_url, autoscaling=self.aws.autoscaling_url, arn=self.tg_arn,
                                    autoscaling_mode=self.autoscaling)

    def agent_proxy_more(self):
        return "\n[proxy]\nhealth_port = %d\n" % self.health_port if self.alb else ""

    def sync_redis_args(self):
        """monkey-proxy-sync's Redis: the same TLS endpoint by the same name
        (127.0.0.1 and --tls-server-name without the stub: proxy-sync runs
        in the machine's own resolv.conf), as the ACL user monkey-proxy-sync."""
        if not self.production_redis:
            return ["--redis", self.redis.url()]
        pw = os.path.join(self.redis.dir, "sync-password")
        harness.atomic_write(pw, self.redis.passwords["monkey-proxy-sync"] + "\n", mode=0o600)
        return ["--redis", "rediss://monkey-proxy-sync@127.0.0.1:%d/0" % self.redis.tls_port, "--password-file", pw,
                "--tls-ca-file", os.path.join(self.redis.certs, "ca.crt"), "--tls-server-name", TLS_NAME]

    def agent_redis_url(self):
        if not self.production_redis:
            return self.redis.url()
        host = TLS_NAME if self.dns else "127.0.0.1"
        return "rediss://monkey-agent@%s:%d/0" % (host, self.redis.tls_port)

    def agent_redis_more(self, a):
        if not self.production_redis:
            return ""
        pw = os.path.join(a.dir, "redis-password")
        harness.atomic_write(pw, self.redis.passwords["monkey-agent"] + "\n", mode=0o600)
        more = "password_file = %s\ntls_ca_file = %s\n" % (pw, os.path.join(self.redis.certs, "ca.crt"))
        if not self.dns:
            more += "tls_server_name = %s\n" % TLS_NAME
        return more

    def show(self, lines):
        """Print lines under the timeline, indented (live only)."""
        if self.timeline.live:
            with self.print_lock:
                for ln in lines:
                    print("   " + ln, flush=True)

    def describe(self):
        if self.alb:
            lb = "the ALB 127.0.0.1:%d (target group %s: deregistration delay %.0f s, health check every %.1f s " \
                 "on each agent's :%d)" % (self.front.port, TARGET_GROUP, DEREGISTRATION_DELAY, HEALTH_INTERVAL,
                                           self.health_port)
        else:
            lb = "haproxy 127.0.0.1:%d (monkey-proxy-sync, runtime API)" % self.haproxy.port
        lines = ["redis-server 127.0.0.1:%d   %s" % (self.redis.port, lb),
                 "slack double %s   EC2 double %s (SigV4 checked), IMDSv2 per host"
                 % (self.slack.url, self.aws.url)]
        if self.alb:
            lines.append("ELBv2 double %s   Auto Scaling double %s (group %s, the agents: autoscaling = %s)"
                         % (self.aws.elb_url, self.aws.autoscaling_url, AUTOSCALING_GROUP, self.autoscaling))
        for h in self.hosts:
            lines.append("%s  %s:%d  %s  nginx + monkeyd  socket %s" % (h.name, h.addr, h.port, h.iid, h.agent.socket))
        return lines

    def _on_reboot(self, iid):
        h = next((h for h in self.hosts if h.iid == iid), None)
        if h is not None and not self.stopping.is_set():
            h.reboot()

    def wait(self, pred, timeout, what):
        """wait_until that also fails at once on a fleet error."""
        def p():
            if self.errors:
                harness.fail("; ".join(self.errors))
            return pred()
        v = harness.wait_until(p, timeout, 0.05, what)
        time.sleep(2.5 * self.timeline.tick)  # the timeline shows it before the next line does
        return v

    def save_evidence(self, h):
        """Copy the host's incidents to keep_evidence/SCENARIO-HOST-ID/."""
        src = os.path.join(h.agent.state_dir, "incidents")
        if not self.keep_evidence or not os.path.isdir(src):
            return
        import shutil
        tag = (self.title or "fleet").split(":")[0].strip().lower().replace(" ", "")
        for iid in sorted(os.listdir(src)):
            dst = os.path.join(self.keep_evidence, "%s-%s-%s" % (tag, h.name, iid))
            shutil.copytree(os.path.join(src, iid), dst, dirs_exist_ok=True)

    def stop(self):
        self.stopping.set()
        if self.load is not None:
            self.load.stop()
        for h in self.hosts:
            if h.reboot_thread is not None:
                h.reboot_thread.join(15)
        self.timeline.stop()
        for t in (self.sync, self.haproxy, self.front):
            if t is not None:
                try:
                    t.stop()
                except Exception as e:  # noqa: BLE001 - keep stopping the rest
                    self.errors.append("stop: %r" % (e,))
        for h in self.hosts:
            h.stop_runaway()
            if h.agent is not None:
                if h.agent.alive():
                    rc = h.agent.stop()
                    if rc != 0:
                        self.errors.append("%s: monkeyd exited %s on SIGTERM" % (h.name, rc))
                self.save_evidence(h)
                h.agent.close()
                logs = h.agent.all_logs()
                for mark in ("Sanitizer", "runtime error:"):
                    if mark in logs:
                        self.errors.append("%s: monkeyd's log has a sanitizer report:\n%s"
                                           % (h.name, logs[logs.index(mark) - 200:][:3000]))
            if h.app is not None:
                h.app.stop()
        for t in (self.slack, self.aws, self.redis, self.dns):
            if t is not None:
                t.stop()

    def __enter__(self):
        try:
            return self.start()
        except BaseException as e:
            if not isinstance(e, (SystemExit, KeyboardInterrupt)):
                self.dump()
            self.stop()
            raise

    def __exit__(self, et, ev, tb):
        if et is not None and not issubclass(et, (SystemExit, KeyboardInterrupt)):
            self.dump()
        self.stop()
        if et is None and self.errors:
            harness.fail("on stopping the fleet: " + "; ".join(self.errors))
        return False

    def dump(self):
        """On failure: each agent's log tail and the sync's."""
        for h in self.hosts:
            if h.agent is not None:
                h.agent.dump_log()
        if self.sync is not None:
            sys.stdout.write("---- monkey-proxy-sync ----\n%s\n" % self.sync.log()[-3000:])
        sys.stdout.flush()

    # -- summaries ---------------------------------------------------------

    def slack_threads(self):
        """{root ts: [messages in order]} of everything the Slack double got."""
        out = {}
        for m in self.slack.messages():
            out.setdefault(m.get("thread_ts") or m["ts"], []).append(m)
        return out


def message_text(m):
    """The plain-text fallback, without the leading emoji (":no_entry: ")."""
    text = html.unescape((m.get("body") or {}).get("text", ""))
    if text.startswith(":") and ": " in text[:40]:
        text = text.split(": ", 1)[1]
    return text


def message_detail(m):
    for b in (m.get("body") or {}).get("blocks", []):
        t = (b.get("text") or {}).get("text", "")
        if t.startswith("```"):
            return html.unescape(t.strip("`"))
    return ""


def json_dump(obj):
    return json.dumps(obj, indent=1, sort_keys=True, default=str)
