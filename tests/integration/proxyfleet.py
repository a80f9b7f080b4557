"""Real proxies and apps for the proxy-hooks tests: nginx apps on 127.0.0.N
that answer with their own name, haproxy with an admin stats socket, nginx
as a proxy, redis-server, monkey-proxy-sync, and a bounded HTTP load that
counts, per request, which app answered.

Every process is started in its own session so that a stop kills its whole
group (nginx workers included), and an atexit hook kills whatever is left.
Python 3 standard library only; loopback addresses only."""

import atexit
import http.client
import os
import signal
import socket
import subprocess
import threading
import time

from harness import BUILD_ROOT, check, fail, make_tmpdir, wait_until

PROXY_SYNC = os.path.join(BUILD_ROOT, "proxy-hooks", "monkey-proxy-sync")

_groups = []


def _kill_groups():
    for p in list(_groups):
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                p.wait(timeout=5)
            except Exception:
                pass
    _groups.clear()


atexit.register(_kill_groups)


def start_group(argv, log_path, env=None):
    log = open(log_path, "ab")
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                         start_new_session=True, env=env)
    log.close()
    _groups.append(p)
    return p


def stop_group(p, sig=signal.SIGTERM, timeout=5.0):
    if p is None:
        return
    if p.poll() is None:
        try:
            os.killpg(p.pid, sig)
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        except OSError:
            pass
    try:
        os.killpg(p.pid, signal.SIGKILL)  # leftovers of the group (nginx workers)
    except OSError:
        pass
    try:
        p.wait(timeout=5)
    except Exception:
        pass
    if p in _groups:
        _groups.remove(p)


def free_port(addrs=("127.0.0.1",)):
    """A TCP port that is free on every address in addrs right now."""
    for _ in range(50):
        s = socket.socket()
        s.bind((addrs[0], 0))
        port = s.getsockname()[1]
        held = [s]
        ok = True
        for a in addrs[1:]:
            t = socket.socket()
            try:
                t.bind((a, port))
                held.append(t)
            except OSError:
                ok = False
                t.close()
                break
        for h in held:
            h.close()
        if ok:
            return port
    fail("no port free on all of %s" % (addrs,))


def wait_port(addr, port, timeout=5.0, proc=None, what=None):
    def up():
        if proc is not None and proc.poll() is not None:
            fail("%s exited with status %s" % (what or "process", proc.returncode))
        with socket.create_connection((addr, port), timeout=0.5):
            return True
    wait_until(up, timeout, 0.02, what or "%s:%d to accept" % (addr, port))


def read_text(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""


# --------------------------------------------------------------------------
# nginx

NGINX_COMMON = """\
daemon off;
master_process on;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log off;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
{body}
}}
"""


class Nginx:
    """One nginx master (+1 worker) on its own prefix dir."""

    def __init__(self, name, body, addr, port):
        """body: the text inside http {}, or a function of the prefix dir
        that returns it."""
        self.name = name
        self.addr = addr
        self.port = port
        self.dir = make_tmpdir("monkey-it-nginx-%s-" % name)
        os.makedirs(os.path.join(self.dir, "tmp"), exist_ok=True)
        self.conf = os.path.join(self.dir, "nginx.conf")
        self.errlog = os.path.join(self.dir, "error.log")
        with open(self.conf, "w") as f:
            f.write(NGINX_COMMON.format(dir=self.dir, body=body(self.dir) if callable(body) else body))
        self.proc = None

    def argv(self, *extra):
        return ["nginx", "-p", self.dir + "/", "-c", self.conf, "-e", self.errlog] + list(extra)

    def start(self):
        self.proc = start_group(self.argv(), os.path.join(self.dir, "stdout.log"))
        wait_port(self.addr, self.port, 5.0, self.proc, "nginx %s on %s:%d" % (self.name, self.addr, self.port))
        return self

    def reload_command(self):
        return " ".join(self.argv("-s", "reload"))

    def stop(self):
        stop_group(self.proc, signal.SIGQUIT)
        self.proc = None

    def log(self):
        return read_text(self.errlog)


def nginx_app(name, addr, port):
    body = """\
    server {{
        listen {addr}:{port};
        location / {{
            default_type text/plain;
            return 200 "host={name}\\n";
        }}
    }}""".format(addr=addr, port=port, name=name)
    return Nginx(name, body, addr, port)


def nginx_proxy(port, upstream="web"):
    """nginx proxying 127.0.0.1:port to `upstream`, defined in the file
    .upstream_file (in its prefix dir), which must exist before start()."""
    def body(d):
        return """\
    include {file};
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://{up};
            proxy_next_upstream error timeout http_502 http_503;
            proxy_connect_timeout 1s;
        }}
    }}""".format(file=os.path.join(d, "upstream-%s.conf" % upstream), port=port, up=upstream)
    n = Nginx("proxy", body, "127.0.0.1", port)
    n.upstream_file = os.path.join(n.dir, "upstream-%s.conf" % upstream)
    return n


# --------------------------------------------------------------------------
# haproxy

HAPROXY_HEAD = """\
global
    stats socket {dir}/admin.sock level admin
    stats timeout 10s

defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
    retries 2
    option redispatch

frontend fe
    bind 127.0.0.1:{port}
    default_backend be

backend be
    balance roundrobin
"""


class HAProxy:
    def __init__(self, servers_text):
        self.dir = make_tmpdir("monkey-it-haproxy-")
        self.port = free_port()
        self.socket = os.path.join(self.dir, "admin.sock")
        self.cfg = os.path.join(self.dir, "haproxy.cfg")
        self.logfile = os.path.join(self.dir, "haproxy.log")
        with open(self.cfg, "w") as f:
            f.write(HAPROXY_HEAD.format(dir=self.dir, port=self.port) + servers_text)
        self.proc = None

    def start(self):
        cp = subprocess.run(["haproxy", "-c", "-f", self.cfg], capture_output=True, text=True, timeout=10)
        check(cp.returncode == 0, "haproxy -c: %s %s" % (cp.stdout[-800:], cp.stderr[-800:]))
        self.proc = start_group(["haproxy", "-f", self.cfg, "-db"], self.logfile)
        wait_port("127.0.0.1", self.port, 5.0, self.proc, "haproxy frontend")
        wait_until(lambda: os.path.exists(self.socket), 5.0, 0.02, "the haproxy stats socket")
        return self

    def cli(self, cmd, timeout=3.0):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(self.socket)
            s.sendall((cmd + "\n").encode())
            buf = b""
            while True:
                d = s.recv(65536)
                if not d:
                    break
                buf += d
        return buf.decode(errors="replace")

    def servers(self):
        """{srv_name: {"addr": "ip:port", "admin": int, "op": int}} from
        `show servers state be`."""
        text = self.cli("show servers state be")
        lines = text.splitlines()
        head = None
        out = {}
        for ln in lines:
            if ln.startswith("#"):
                head = ln[1:].split()
                continue
            f = ln.split()
            if head is None or len(f) < len(head):
                continue
            row = dict(zip(head, f))
            out[row["srv_name"]] = {"addr": "%s:%s" % (row["srv_addr"], row["srv_port"]),
                                    "admin": int(row["srv_admin_state"]),
                                    "op": int(row["srv_op_state"])}
        check(out, "no servers in `show servers state be`: %r" % text[:500])
        return out

    def stop(self):
        stop_group(self.proc, signal.SIGTERM)
        self.proc = None

    def log(self):
        return read_text(self.logfile)


ADMF_FMAINT, ADMF_FDRAIN = 0x01, 0x08


def mode_of(admin):
    if admin & 0x23:
        return "maint"
    if admin & 0x18:
        return "drain"
    return "ready"


# --------------------------------------------------------------------------
# redis

class Redis:
    def __init__(self, port=None):
        self.dir = make_tmpdir("monkey-it-redis-")
        self.port = port or free_port()
        self.proc = None
        self.logfile = os.path.join(self.dir, "redis.log")
        self.socket = os.path.join(self.dir, "redis.sock")

    def url(self):
        return "redis://127.0.0.1:%d" % self.port

    def unix_url(self, db=0):
        return "unix://%s?db=%d" % (self.socket, db)

    def start(self):
        self.proc = start_group(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                 "--unixsocket", self.socket, "--unixsocketperm", "700",
                                 "--save", "", "--appendonly", "no", "--dir", self.dir], self.logfile)
        def pong():
            if self.proc.poll() is not None:
                fail("redis-server exited: %s" % read_text(self.logfile)[-800:])
            cp = subprocess.run(["redis-cli", "-p", str(self.port), "PING"], capture_output=True, text=True, timeout=5)
            return cp.stdout.strip() == "PONG"
        wait_until(pong, 5.0, 0.05, "redis-server to answer PING")
        return self

    def cmd(self, *args):
        out = subprocess.run(["redis-cli", "-p", str(self.port), "--raw"] + [str(a) for a in args],
                             capture_output=True, text=True, timeout=5)
        if out.returncode != 0:
            fail("redis-cli %s: %s" % (" ".join(map(str, args)), out.stderr))
        return out.stdout.strip()

    def stop(self):
        stop_group(self.proc, signal.SIGTERM)
        self.proc = None


def pool_keys(pool):
    p = "monkey:{%s}:" % pool
    return {"serving": p + "serving", "addrs": p + "addrs", "events": p + "events", "budget": p + "budget",
            "lease": lambda h: p + "lease:" + h, "host": lambda h: p + "host:" + h}


def pool_put(redis, pool, host, addr, lease_ms=60000):
    """What an agent's join leaves in Redis (agent/routing/pool.h data model)."""
    k = pool_keys(pool)
    redis.cmd("SET", k["lease"](host), "1", "PX", lease_ms)
    redis.cmd("HSET", k["addrs"], addr, host)
    redis.cmd("HSET", k["host"](host), "addr", addr, "state", "SERVING")
    redis.cmd("SADD", k["serving"], addr)
    redis.cmd("PUBLISH", k["events"], '{"host":"%s","event":"join","addr":"%s"}' % (host, addr))


def pool_remove(redis, pool, host, addr):
    k = pool_keys(pool)
    redis.cmd("SREM", k["serving"], addr)
    redis.cmd("PUBLISH", k["events"], '{"host":"%s","event":"leave","addr":"%s"}' % (host, addr))


# --------------------------------------------------------------------------
# monkey-proxy-sync

class ProxySync:
    def __init__(self, args, name="sync"):
        check(os.access(PROXY_SYNC, os.X_OK),
              "%s is missing: the top meson.build needs subdir('proxy-hooks')" % PROXY_SYNC)
        self.dir = make_tmpdir("monkey-it-%s-" % name)
        self.args = list(args)
        self.logfile = os.path.join(self.dir, "sync.log")
        self.proc = None

    def start(self):
        self.proc = start_group([PROXY_SYNC] + self.args, self.logfile)
        return self

    def once(self, timeout=15.0):
        return subprocess.run([PROXY_SYNC, "--once"] + self.args, capture_output=True, text=True,
                              timeout=timeout)

    def assert_alive(self):
        check(self.proc is not None and self.proc.poll() is None,
              "monkey-proxy-sync exited (%s): %s" % (self.proc.returncode if self.proc else None,
                                                     self.log()[-1500:]))

    def stop(self):
        """SIGTERM; fails if it did not exit cleanly (sanitizer reports
        included) when it was still running."""
        p = self.proc
        was_running = p is not None and p.poll() is None
        stop_group(p, signal.SIGTERM)
        self.proc = None
        if was_running:
            text = self.log()
            check(p.returncode == 0 and "Sanitizer" not in text,
                  "monkey-proxy-sync exited with %s on SIGTERM: %s" % (p.returncode, text[-2000:]))

    def log(self):
        return read_text(self.logfile)


# --------------------------------------------------------------------------
# HTTP load

class Load:
    """`workers` threads, each sending GET / through the proxy with
    Connection: close, one after another with `pause` between requests,
    until stop() or `max_seconds`. Every request is recorded as (start,
    end, host or None, error or None)."""

    def __init__(self, port, workers=4, pause=0.01, max_seconds=25.0, addr="127.0.0.1"):
        self.addr = addr
        self.port = port
        self.workers = workers
        self.pause = pause
        self.max_seconds = max_seconds
        self.records = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = []

    def _one(self):
        t0 = time.monotonic()
        host = err = None
        try:
            c = http.client.HTTPConnection(self.addr, self.port, timeout=3.0)
            c.request("GET", "/", headers={"Connection": "close"})
            r = c.getresponse()
            body = r.read().decode(errors="replace")
            c.close()
            if r.status != 200:
                err = "status %d: %r" % (r.status, body[:100])
            elif body.startswith("host="):
                host = body.strip()[5:]
            else:
                err = "unexpected body %r" % body[:100]
        except Exception as e:  # noqa: BLE001 - every failure is counted
            err = repr(e)
        with self.lock:
            self.records.append((t0, time.monotonic(), host, err))

    def _run(self):
        deadline = time.monotonic() + self.max_seconds
        while not self.stopping.is_set() and time.monotonic() < deadline:
            self._one()
            if self.pause:
                self.stopping.wait(self.pause)

    def start(self):
        for _ in range(self.workers):
            t = threading.Thread(target=self._run, daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(5.0)

    def snapshot(self):
        with self.lock:
            return list(self.records)

    def failures(self):
        return [r for r in self.snapshot() if r[3] is not None]

    def count(self, host, since=0.0, until=float("inf")):
        return sum(1 for r in self.snapshot() if r[2] == host and since <= r[0] < until)

    def counts(self, since=0.0, until=float("inf")):
        out = {}
        for r in self.snapshot():
            if r[2] is not None and since <= r[0] < until:
                out[r[2]] = out.get(r[2], 0) + 1
        return out

    def last_start(self, host, until=float("inf")):
        ts = [r[0] for r in self.snapshot() if r[2] == host and r[0] < until]
        return max(ts) if ts else None

    def first_start(self, host, since):
        ts = [r[0] for r in self.snapshot() if r[2] == host and r[0] >= since]
        return min(ts) if ts else None

    def wait_host(self, host, since, timeout, what=None):
        """Wait until `host` answered a request started at or after `since`."""
        return wait_until(lambda: self.first_start(host, since), timeout, 0.02,
                          what or "%s to receive a request" % host)

    def total(self):
        return len(self.snapshot())
