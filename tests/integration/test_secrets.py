#!/usr/bin/env python3
"""Secrets stay secret. Distinctive secrets are planted (a Slack bot token
in a token_file, an AWS access key id and secret key in a credentials file,
instance-role credentials from the AWS double's IMDS, a Redis password in a
password_file), a whole incident is run (breach, leave the pool, Slack
alert, signed EC2 reboot, post-boot checks, rejoin, Slack result) and the
error paths (Slack invalid_auth, EC2 403, Redis refusing the password);
then every planted secret, raw and URL-encoded, JSON-escaped, base64 (at
each alignment) and as a fragment, is searched for in everything monkeyd
wrote to stdout/stderr, its /proc/PID/cmdline and environ, every monkeyctl
output, every file in the state dir, every Redis value, what reached Slack,
and this test's own output. Secret files open to group or others (0640,
0604) are refused with a clear error.

Every place searched has a positive control (something that must be found
there), and the matcher is shown to catch each form, so a search that
reads nothing cannot pass."""

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "doubles"))
import harness  # noqa: E402
from harness import BOOT_B, MONKEYCTL, MONKEYD, Agent, check, describe, main, wait_until  # noqa: E402
from proxyfleet import free_port, nginx_app  # noqa: E402
from aws_double import AwsDouble  # noqa: E402
from slack_double import SlackDouble  # noqa: E402


class Tee:
    """Everything this test prints is kept, to be searched at the end."""

    def __init__(self, stream):
        self.stream = stream
        self.parts = []

    def write(self, s):
        self.parts.append(s)
        return self.stream.write(s)

    def flush(self):
        self.stream.flush()

    def text(self):
        return "".join(self.parts)

    def __getattr__(self, name):
        return getattr(self.stream, name)


OUT = Tee(sys.stdout)
sys.stdout = OUT

# Each secret has characters that URL-encoding, JSON and base64 change, so
# every form differs from the raw one.
TOKEN = "xoxb-7357-8462-plantedSlackTok3n/Sq+Zz=Q"
AK = "AKIAPLANTEDKEY000042"
SECRET = "pLanted/AwsSecret+Key=0123456789abcdefXY"
REDIS_PW = "pLanted-Redis/Pass+word=77"
REDIS_WRONG_PW = "pLanted-Wrong/Redis+pw=13"
IID = "i-0123456789abcdef0"
ROLE = "monkey-role"

SECRETS = {"slack token": TOKEN, "aws access key id": AK, "aws secret key": SECRET,
           "redis password": REDIS_PW, "wrong redis password": REDIS_WRONG_PW}

# (where, bytes) of everything searched; filled by the scenarios
EVIDENCE = []


# --------------------------------------------------------------------------
# The matcher

def b64_fragments(secret):
    """Substrings any base64 text holding `secret` contains, whatever the
    secret's offset (mod 3) in the encoded bytes."""
    raw = secret.encode()
    out = []
    for pad in (b"", b"x", b"xx"):
        enc = base64.b64encode(pad + raw).decode()
        skip = (len(pad) * 4 + 2) // 3  # characters that mix the pad in
        body = enc[skip:]
        # the last group may mix in what follows the secret, or padding
        cut = len(body) - 4
        if cut > 8:
            out.append(body[:cut])
        for alt in (base64.urlsafe_b64encode(pad + raw).decode()[skip:][:cut],):
            if cut > 8:
                out.append(alt)
    return out


def forms(secret):
    f = {"raw": secret,
         "url-encoded": urllib.parse.quote(secret, safe=""),
         "url-encoded (form)": urllib.parse.quote_plus(secret),
         "url-encoded (lower hex)": urllib.parse.quote(secret, safe="").replace("%2F", "%2f")
         .replace("%2B", "%2b").replace("%3D", "%3d"),
         "json-escaped": json.dumps(secret)[1:-1],
         "json-escaped (slash)": json.dumps(secret)[1:-1].replace("/", "\\/")}
    for n, frag in enumerate(b64_fragments(secret)):
        f["base64 #%d" % n] = frag
    # a fragment of the middle: a truncated or partly masked secret
    if len(secret) >= 20:
        mid = len(secret) // 2
        f["fragment"] = secret[mid - 6:mid + 6]
    return f


def find_leaks(blob, secrets):
    """[(secret name, form name)] of every form found in blob (bytes)."""
    if isinstance(blob, str):
        blob = blob.encode(errors="surrogateescape")
    low = blob.lower()
    found = []
    for name, secret in secrets.items():
        for form, text in forms(secret).items():
            needle = text.encode()
            # URL encodings may come in either hex case
            hay = low if form.startswith("url") else blob
            if (needle.lower() if form.startswith("url") else needle) in hay:
                found.append((name, form))
    return found


def search(evidence, secrets, controls):
    """Fail naming where and which form (never the secret itself).
    controls: {where-prefix: bytes that must be in that place}, so an empty
    read cannot pass for a clean one."""
    leaks = []
    for where, blob in evidence:
        for name, form in find_leaks(blob, secrets):
            leaks.append("%s: %s (%s)" % (where, name, form))
    for prefix, marker in controls.items():
        blobs = [b for w, b in evidence if w.startswith(prefix)]
        check(blobs, "nothing was collected from %r" % prefix)
        m = marker.encode() if isinstance(marker, str) else marker
        check(any(m in (b if isinstance(b, bytes) else b.encode()) for b in blobs),
              "positive control: %r not found in %r: the search there reads nothing useful" % (marker, prefix))
    check(not leaks, "planted secrets found: " + "; ".join(leaks))
    print("   searched %d places (%d KiB) for %d secrets x %d forms: clean" % (
        len(evidence), sum(len(b) for _, b in evidence) // 1024, len(secrets),
        len(forms(next(iter(secrets.values()))))))


# --------------------------------------------------------------------------
# Collectors

def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def collect_process(a, where):
    pid = a.proc.pid
    EVIDENCE.append(("%s cmdline (run %d)" % (where, a.runs), read_bytes("/proc/%d/cmdline" % pid)))
    EVIDENCE.append(("%s environ (run %d)" % (where, a.runs), read_bytes("/proc/%d/environ" % pid)))


CTL_COMMANDS = [("status",), ("--json", "status"), ("history", "-n", "1000"), ("--json", "history", "-n", "1000"),
                ("pool",), ("--json", "pool"), ("check",), ("--json", "check"), ("test-reboot",),
                ("--json", "test-reboot"), ("test-alert", "secret", "check"), ("help",), ("--version",)]


def collect_ctl(a, where, commands=CTL_COMMANDS):
    for args in commands:
        cp = a.ctl(*args, timeout=40)
        EVIDENCE.append(("%s monkeyctl %s" % (where, " ".join(args)), (cp.stdout + cp.stderr).encode()))
    # watch: the stream a script would log, for a moment
    p = harness.spawn([MONKEYCTL, "--socket", a.socket, "--json", "watch"], stdout=subprocess.PIPE,
                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    time.sleep(0.5)
    p.terminate()
    out, _ = p.communicate(timeout=5)
    EVIDENCE.append(("%s monkeyctl watch" % where, out))


def collect_files(a, where):
    for root, _, names in os.walk(a.state_dir):
        for n in names:
            p = os.path.join(root, n)
            EVIDENCE.append(("%s state file %s" % (where, os.path.relpath(p, a.state_dir)), read_bytes(p)))


def collect_logs(a, where):
    EVIDENCE.append(("%s stdout/stderr" % where, a.all_logs().encode(errors="surrogateescape")))


def collect_slack(d, where):
    EVIDENCE.append(("%s Slack messages" % where, json.dumps(d.messages()).encode()))


# --------------------------------------------------------------------------
# Redis with a password (requirepass), and a tiny RESP client

class Resp:
    def __init__(self, port, password=None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=3)
        self.buf = b""
        if password:
            self.cmd("AUTH", password)

    def close(self):
        self.sock.close()

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("redis closed the connection")
        self.buf += chunk

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest
        if t == b"-":
            raise RuntimeError(rest.decode(errors="replace"))
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self._fill()
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise ConnectionError("bad RESP line %r" % line[:40])

    def cmd(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for x in args:
            x = x if isinstance(x, bytes) else str(x).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(x), x))
        self.sock.sendall(b"".join(out))
        return self.read()


class PasswordRedis:
    def __init__(self):
        self.port = free_port()
        self.dir = harness.make_tmpdir("monkey-it-redis-")
        self.proc = None

    def start(self):
        # The password goes in a config file, not redis-server's argv.
        conf = os.path.join(self.dir, "redis.conf")
        harness.atomic_write(conf, "requirepass %s\n" % REDIS_PW, mode=0o600)
        self.log = open(os.path.join(self.dir, "redis.log"), "wb")
        self.proc = harness.spawn(["redis-server", conf, "--port", str(self.port), "--bind", "127.0.0.1",
                                   "--save", "", "--appendonly", "no", "--dir", self.dir],
                                  stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

        def up():
            c = Resp(self.port, REDIS_PW)
            try:
                return c.cmd("PING") == b"PONG"
            finally:
                c.close()
        wait_until(up, 10, 0.05, "redis-server with requirepass")
        return self

    def url(self):
        return "redis://127.0.0.1:%d/0" % self.port

    def dump(self):
        """Every key and every value, whatever its type."""
        c = Resp(self.port, REDIS_PW)
        out = []
        try:
            for db in range(16):
                c.cmd("SELECT", db)
                cursor = b"0"
                for _ in range(1000):
                    cursor, keys = c.cmd("SCAN", cursor, "COUNT", 1000)
                    for k in keys:
                        t = c.cmd("TYPE", k)
                        if t == b"string":
                            v = [c.cmd("GET", k)]
                        elif t == b"hash":
                            v = c.cmd("HGETALL", k)
                        elif t == b"set":
                            v = c.cmd("SMEMBERS", k)
                        elif t == b"zset":
                            v = c.cmd("ZRANGE", k, 0, -1, "WITHSCORES")
                        elif t == b"list":
                            v = c.cmd("LRANGE", k, 0, -1)
                        elif t == b"stream":
                            v = [json.dumps(c.cmd("XRANGE", k, "-", "+"), default=repr).encode()]
                        else:
                            v = [c.cmd("DUMP", k) or b""]
                        out.append(b"db%d %s %s: %s" % (db, t, k, b" | ".join(x or b"" for x in v)))
                    if cursor == b"0":
                        break
        finally:
            c.close()
        return b"\n".join(out)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)
        self.proc = None


# --------------------------------------------------------------------------
# Config pieces

def secret_file(a, name, text, mode=0o600):
    p = os.path.join(a.dir, name)
    harness.atomic_write(p, text, mode=mode)
    return p


def slack_section(a, double):
    tok = secret_file(a, "slack-token", TOKEN + "\n")
    return "[slack]\ntoken_file = %s\nchannel = #incidents\napi_url = %s\ntimeout = 2s\n\n" % (tok, double.api_url)


def aws_section(a, double, credentials=True):
    extra = ""
    if credentials:
        cf = secret_file(a, "aws-credentials", "[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n"
                         % (AK, SECRET))
        extra = "credentials_file = %s\n" % cf
    return "[aws]\nregion = us-east-1\ninstance_id = %s\nendpoint_url = %s\nimds_url = %s\n%s\n" % (
        IID, double.endpoint_url, double.url, extra)


def pool_section(a, redis, password=REDIS_PW, addr="127.0.0.2:8080"):
    pw = secret_file(a, "redis-password", password + "\n")
    return ("[pool]\nredis = %s\npassword_file = %s\nname = sec\naddress = %s\nmin_serving = 0\n"
            "drain = 1s\nlease = 3s\nheartbeat = 1s\n\n" % (redis.url(), pw, addr))


def checks_section(port):
    return ("[checks]\nurl = http://127.0.0.2:%d/\nexpect_content = host=app1\npublic_address = 127.0.0.2:%d\n"
            "local_address = 127.0.0.1\nattempts = 5\ntimeout = 1s\n\n" % (port, port))


REMEDY = "[remedy]\nladder = reboot-instance\nmax_per_window = 2\nreboot_timeout = 30s\n\n"
# without [pool], remediating with no fleet budget must be written down
REMEDY_NO_POOL = REMEDY.rstrip("\n") + "\nbudget = none\n\n"
# No AWS variables, no ~/.aws: the secrets come from the files planted here.
ENV = {"HOME": "/nonexistent"}


def reboot_calls(d):
    return [r for r in d.ec2_requests() if r.get("action") == "RebootInstances" and not r.get("dry_run")]


def kinds(d):
    return [m["body"].get("text", "")[:60] for m in d.messages()]


# --------------------------------------------------------------------------
# Scenarios

def x0_matcher_catches_every_form():
    """The search is only worth something if it can fail: each form of each
    secret, buried in text (base64 at every offset), is found."""
    for name, secret in SECRETS.items():
        for form, text in forms(secret).items():
            blob = "log line: ...%s... end" % text
            check((name, form) in find_leaks(blob, {name: secret}), "%s not caught as %s" % (name, form))
        for pad in (b"", b"a", b"ab", b"abc"):
            enc = base64.b64encode(pad + b"Bearer " + secret.encode() + b"\n" + pad).decode()
            check(any(f.startswith("base64") for _, f in find_leaks("auth " + enc, {name: secret})),
                  "%s not caught inside base64 (pad %r)" % (name, pad))
            enc = base64.urlsafe_b64encode(pad + secret.encode()).decode()
            check(find_leaks(enc, {name: secret}), "%s not caught inside url-safe base64 (pad %r)" % (name, pad))
        check(not find_leaks("nothing to see here", {name: secret}), "false positive for %s" % name)


def x1_full_cycle():
    """Breach, leave, Slack alert, signed EC2 reboot with keys from the
    credentials file, the host goes down and comes back, checks pass, it
    rejoins the pool and Slack hears so: every secret in use, none out."""
    port = free_port(("127.0.0.2",))
    app = nginx_app("app1", "127.0.0.2", port).start()
    redis = PasswordRedis().start()
    try:
        with AwsDouble(credentials={AK: (SECRET, None)}) as d, SlackDouble(token=TOKEN) as sl:
            a = Agent("cycle", window="1s", interval="100ms")
            with a:
                a.write_config(extra=pool_section(a, redis, addr="127.0.0.2:%d" % port) + checks_section(port) +
                               slack_section(a, sl) + aws_section(a, d) + REMEDY)
                a.env_extra = dict(ENV)
                a.start(timeout=15)
                wait_until(lambda: (a.status()["remedy"].get("aws") or {}).get("permission") == "permitted", 10,
                           what="the EC2 self-test with the planted keys")
                addr = "127.0.0.2:%d" % port
                serving = lambda: [x.decode() for x in Resp(redis.port, REDIS_PW).cmd(  # noqa: E731
                    "SMEMBERS", "monkey:{sec}:serving")]
                wait_until(lambda: addr in serving(), 10, what="joined the pool (AUTH with the planted password)")
                collect_process(a, "cycle")

                a.feeder.set_busy(95)
                wait_until(lambda: addr not in serving() and a.state() in ("DRAINING", "REMEDIATING"), 15,
                           what="left the pool")
                wait_until(lambda: d.reboots() == [IID], 15, what="EC2 RebootInstances")
                call = reboot_calls(d)[0]
                check(call["signature_ok"] and call["access_key"] == AK, "reboot not signed with the planted keys")
                sl.wait_for(lambda ms: any("is overloaded" in m["body"]["text"] for m in ms), 10)
                a.wait_state("REMEDIATING", 5)
                collect_ctl(a, "cycle (incident)", [("status",), ("--json", "status"), ("--json", "history"),
                                                    ("--json", "pool")])
                # the instance reboots: the agent stops, a new boot id, back
                rc = a.stop()
                check(rc == 0, "monkeyd exited %s on SIGTERM" % rc)
                a.feeder.set_busy(5)
                a.set_boot_id(BOOT_B)
                a.start(wait_serving=False, timeout=15)
                collect_process(a, "cycle")
                st, _ = a.wait_state("SERVING", 20)
                check(st["last_incident"]["outcome"] == "rejoined", "incident: %r" % st["last_incident"])
                wait_until(lambda: addr in serving(), 10, what="rejoined the pool")
                sl.wait_for(lambda ms: any("is back in the pool" in m["body"]["text"] for m in ms), 15)
                print("   Slack: %s" % " / ".join(t[:40] for t in kinds(sl)))
                collect_ctl(a, "cycle")
                collect_process(a, "cycle")
                collect_files(a, "cycle")
                collect_slack(sl, "cycle")
                EVIDENCE.append(("cycle redis", redis.dump()))
                a.stop()
                collect_logs(a, "cycle")
        mine = [e for e in EVIDENCE if e[0].startswith("cycle")]
        search(mine, SECRETS, {"cycle stdout/stderr": "SERVING", "cycle cmdline": b"--config",
                               "cycle environ": b"HOME=/nonexistent", "cycle monkeyctl status": "cycle",
                               "cycle monkeyctl --json history": "CHECKING",
                               "cycle (incident) monkeyctl --json history": "REMEDIATING",
                               "cycle state file state.json": "test-1", "cycle redis": "test-1",
                               "cycle Slack messages": "is back in the pool"})
    finally:
        redis.stop()
        app.stop()


def x2_instance_role_credentials():
    """No static keys: IMDSv2 hands out role credentials; the DryRun and the
    reboot are signed with them; none of the three parts leaks."""
    with AwsDouble(credentials={}, role=ROLE) as d:
        a = Agent("role", window="1s", interval="100ms")
        with a:
            a.write_config(extra=aws_section(a, d, credentials=False) + REMEDY_NO_POOL)
            a.env_extra = dict(ENV)
            a.start()
            wait_until(lambda: (a.status()["remedy"].get("aws") or {}).get("permission") == "permitted", 10,
                       what="the EC2 self-test with role credentials")
            rak, rsecret, rtoken, _ = d.role_credentials()
            check(any(r.get("access_key") == rak for r in d.ec2_requests()), "not signed with the role's keys")
            collect_process(a, "role")
            a.feeder.set_busy(95)
            wait_until(lambda: d.reboots() == [IID], 15, what="the reboot signed with role credentials")
            a.feeder.set_busy(5)
            collect_ctl(a, "role")
            collect_files(a, "role")
            a.stop()
            collect_logs(a, "role")
        secrets = {"role access key id": rak, "role secret key": rsecret, "role session token": rtoken}
        SECRETS.update(secrets)
        mine = [e for e in EVIDENCE if e[0].startswith("role")]
        search(mine, secrets, {"role stdout/stderr": "REMEDIATING", "role environ": b"HOME=",
                               "role monkeyctl --json status": "instance-role"})


def x3_error_paths():
    """Slack says invalid_auth, EC2 answers 403 UnauthorizedOperation, Redis
    refuses the password: each is reported (status, log), none with a
    secret in it."""
    redis = PasswordRedis().start()
    try:
        with AwsDouble(credentials={AK: (SECRET, None)}, allowed=False) as d, \
                SlackDouble(token="xoxb-the-token-slack-expects") as sl:
            a = Agent("errors", window="1s", interval="100ms")
            with a:
                a.write_config(extra=pool_section(a, redis, password=REDIS_WRONG_PW) + slack_section(a, sl) +
                               aws_section(a, d) + REMEDY)
                a.env_extra = dict(ENV)
                a.start(wait_serving=False)
                collect_process(a, "errors")

                def pool_error():
                    return (a.status().get("pool") or {}).get("last_error") or ""
                wait_until(lambda: "WRONGPASS" in pool_error() or "invalid" in pool_error().lower(), 10,
                           what="Redis refusing the password")
                print("   redis: %s" % pool_error())
                wait_until(lambda: (a.status()["remedy"].get("aws") or {}).get("permission") == "denied", 10,
                           what="EC2 403 on the self-test")
                d.script_ec2("error:UnauthorizedOperation:403")
                r = a.ctl("test-reboot", timeout=30)
                check(r.returncode == 1 and "denied" in (r.stdout + r.stderr), "test-reboot: %s" % describe(r))
                r = a.ctl("test-alert", "secret", "check", timeout=30)
                EVIDENCE.append(("errors monkeyctl test-alert", (r.stdout + r.stderr).encode()))
                check(r.returncode == 1 and "invalid_auth" in r.stderr, "test-alert: %s" % describe(r))
                wait_until(lambda: a.status()["slack"]["outbox"].get("paused"), 5, what="Slack delivery paused")
                check(not sl.messages(), "Slack took a message with the wrong token")
                # (a second test-alert would wait 20 s: the paused outbox retries the
                # first one, and only the answer to its own message ends a test)
                collect_ctl(a, "errors", [c for c in CTL_COMMANDS if c[0] != "test-alert"])
                collect_files(a, "errors")
                collect_slack(sl, "errors")
                a.stop()
                collect_logs(a, "errors")
                logs = a.all_logs()
                check("invalid_auth" in logs, "invalid_auth is not logged")
        mine = [e for e in EVIDENCE if e[0].startswith("errors")]
        search(mine, SECRETS, {"errors stdout/stderr": "invalid_auth", "errors monkeyctl --json status": "WRONGPASS",
                               "errors monkeyctl test-reboot": "denied", "errors environ": b"PATH="})
    finally:
        redis.stop()


def x4_open_secret_files_refused():
    """A token_file, credentials_file or password_file that group or others
    may read (0640, 0604) stops the start, naming the file and the fix."""
    redis = PasswordRedis()  # never started: the start stops before Redis
    with AwsDouble(credentials={AK: (SECRET, None)}) as d, SlackDouble(token=TOKEN) as sl:
        for what, fname in (("slack", "slack-token"), ("aws", "aws-credentials"), ("pool", "redis-password")):
            for mode in (0o640, 0o604):
                a = Agent("perm-%s-%o" % (what, mode))
                try:
                    extra = {"slack": lambda: slack_section(a, sl), "aws": lambda: aws_section(a, d) + REMEDY_NO_POOL,
                             "pool": lambda: pool_section(a, redis)}[what]()
                    a.write_config(extra=extra)
                    path = os.path.join(a.dir, fname)
                    os.chmod(path, mode)
                    env = {"PATH": os.environ.get("PATH", ""), "HOME": "/nonexistent"}
                    cp = subprocess.run([MONKEYD, "--config", a.config], capture_output=True, text=True, timeout=15,
                                        env=env, stdin=subprocess.DEVNULL)
                    EVIDENCE.append(("perm %s %o output" % (what, mode), (cp.stdout + cp.stderr).encode()))
                    check(cp.returncode != 0, "%s file with mode %o accepted: %s" % (what, mode, describe(cp)))
                    err = cp.stderr
                    check(path in err and "group/others" in err and ("%04o" % mode) in err and "chmod 600" in err,
                          "%s file with mode %o: unclear error: %r" % (what, mode, err))
                    print("   %04o %-16s -> exit %d: %s" % (mode, fname, cp.returncode,
                                                            err.strip().splitlines()[-1].replace(a.dir, "D")))
                finally:
                    a.close()
    mine = [e for e in EVIDENCE if e[0].startswith("perm")]
    search(mine, SECRETS, {"perm slack": "slack-token"})


def x6_not_dumpable():
    """monkeyd makes itself non-dumpable (prctl PR_SET_DUMPABLE 0) before it
    reads anything: no core dump carries a secret, and another process of
    the same user can neither ptrace it nor read its memory or environment.
    Seen from outside with monkeyd running as nobody: its /proc files then
    belong to root, and nobody's own cat cannot read its environ."""
    if harness.VALGRIND:
        # valgrind, not monkeyd, would be what nobody runs; the plain and
        # ASan runs of this test check the prctl.
        print("   skipped under valgrind: it checks the prctl, not memory")
        return
    bindir = harness.make_tmpdir("monkey-it-bin-")
    exe = os.path.join(bindir, "monkeyd")
    shutil.copy(MONKEYD, exe)  # the build tree may be closed to nobody
    os.chmod(exe, 0o755)
    a = Agent("dumpable", window="1s", interval="100ms")
    with a:
        tok = secret_file(a, "slack-token", TOKEN + "\n")
        a.write_config(extra="[slack]\ntoken_file = %s\nchannel = #incidents\napi_url = http://127.0.0.1:9/api/\n"
                       % tok)
        for p in (a.config, tok, a.state_dir, os.path.dirname(a.socket)):
            os.chown(p, 65534, 65534)
        saved = harness.MONKEYD
        harness.MONKEYD = exe
        try:
            a.start(wrapper=harness.NOBODY)
        finally:
            harness.MONKEYD = saved
        pid = a.proc.pid
        with open("/proc/%d/status" % pid) as f:
            uids = [ln.split()[1:] for ln in f if ln.startswith("Uid:")][0]
        check(uids[:2] == ["65534", "65534"], "monkeyd does not run as nobody: Uid %r" % uids)
        owner = os.stat("/proc/%d/environ" % pid).st_uid
        check(owner == 0, "/proc/%d/environ belongs to uid %d: monkeyd is dumpable" % (pid, owner))
        cp = subprocess.run(harness.NOBODY + ["cat", "/proc/%d/environ" % pid], capture_output=True, timeout=10)
        check(cp.returncode != 0 and not cp.stdout, "nobody read monkeyd's environ: the process is dumpable")
        cp = subprocess.run(harness.NOBODY + ["cat", "/proc/%d/mem" % pid], capture_output=True, timeout=10)
        check(cp.returncode != 0 and b"ermission denied" in cp.stderr,
              "nobody opened monkeyd's memory: %r" % cp.stderr[-200:])
        print("   monkeyd as uid 65534: /proc/%d/environ owned by root, unreadable by its own uid" % pid)
        # and it works as such: status answers, the token was read
        check(a.status()["slack"]["mode"] == "bot-token", "slack not set up: %r" % a.status()["slack"])
        collect_logs(a, "dumpable")
    search([e for e in EVIDENCE if e[0].startswith("dumpable")], SECRETS, {"dumpable stdout/stderr": "SERVING"})


def x5_own_output():
    """Last: what this test printed, and everything collected once more with
    every secret now known (the role's too)."""
    EVIDENCE.append(("this test's output", OUT.text().encode()))
    search(EVIDENCE, SECRETS, {"this test's output": "x1_full_cycle"})


if __name__ == "__main__":
    for tool in ("redis-server", "nginx"):
        if not shutil.which(tool):
            print("FAIL: %s not installed (run tests/setup-deps)" % tool)
            sys.exit(1)
    main([x0_matcher_catches_every_form, x1_full_cycle, x2_instance_role_credentials, x3_error_paths,
          x4_open_secret_files_refused, x6_not_dumpable, x5_own_output])
