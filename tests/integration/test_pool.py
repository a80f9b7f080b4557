#!/usr/bin/env python3
"""The pool against a real redis-server (and redis-sentinel): registration,
the disruption budget under a fleet-wide overload, min_serving, lease
expiry, Redis dying and hanging mid-cycle, on_unreachable = remediate, and
Sentinel discovery. Every outcome is read back from Redis itself (a tiny
RESP client below) and from monkeyd's status.

Numbered scenarios, each a short story; they print the figures they
measure (time to reconnect, how many left at once, ...)."""

import contextlib
import os
import shutil
import signal
import statistics
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dnsns  # noqa: E402
import harness  # noqa: E402
from dnsstub import DnsStub, DnsStubError  # noqa: E402
from harness import Agent, check, fail, wait_until  # noqa: E402

POOL = "web"
P = "monkey:{%s}:" % POOL
SERVING, OUT, EVENTS = P + "serving", P + "out", P + "events"
REDIS_SERVER = shutil.which("redis-server")


# --------------------------------------------------------------------------
# A tiny RESP client

class RedisError(Exception):
    pass


class Resp:
    def __init__(self, port, timeout=2.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def read(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            raise RedisError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n).decode()
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise ConnectionError("bad RESP line %r" % line)

    def cmd(self, *args):
        self.send(*args)
        return self.read()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Redis:
    """A redis-server on 127.0.0.1:port, killed at exit by the harness."""

    def __init__(self, port=None):
        self.port = port or free_port()
        self.dir = harness.make_tmpdir("monkey-it-redis-")
        self.proc = None
        self.c = None
        self.auth = None  # (user, password) once the default user is off

    def start(self):
        self.log = open(os.path.join(self.dir, "redis-%d.log" % time.monotonic_ns()), "wb")
        self.proc = harness.spawn([REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
                                   "--save", "", "--appendonly", "no", "--dir", self.dir],
                                  stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_until(lambda: self.ping(), 10, 0.02, "redis-server on port %d" % self.port)
        return self

    def ping(self):
        self.reset()
        return self.cmd("PING") == "PONG"

    def reset(self):
        if self.c:
            self.c.close()
        self.c = None

    def cmd(self, *args):
        if self.c is None:
            self.c = Resp(self.port)
            if self.auth:
                self.c.cmd("AUTH", *self.auth)
        try:
            return self.c.cmd(*args)
        except (OSError, ConnectionError):
            self.reset()
            raise

    def kill(self):
        self.reset()
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def url(self):
        return "redis://127.0.0.1:%d/0" % self.port

    def smembers(self):
        return sorted(self.cmd("SMEMBERS", SERVING))


class Events(threading.Thread):
    """PSUBSCRIBE to every pool's events channel; keeps our pool's messages
    in the order Redis published them."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.c = Resp(port, timeout=None)
        self.c.cmd("PSUBSCRIBE", "monkey:*:events")
        self.messages = []
        self.lock = threading.Lock()
        self.start()

    def run(self):
        import json
        while True:
            try:
                m = self.c.read()
            except Exception:  # noqa: BLE001 - the test closed us
                return
            if isinstance(m, list) and len(m) == 4 and m[0] == "pmessage" and m[2] == EVENTS:
                with self.lock:
                    self.messages.append((time.monotonic(), json.loads(m[3])))

    def of_type(self, t):
        with self.lock:
            return [e for _, e in self.messages if e.get("type") == t]

    def close(self):
        self.c.close()


def pool_extra(redis_url, addr, min_serving=1, max_unavailable=1, more=""):
    return ("[pool]\nredis = %s\nname = %s\naddress = %s\nmin_serving = %d\nmax_unavailable = %d\n"
            "drain = 1s\nlease = 3s\nheartbeat = 1s\n%s\n"
            "[remedy]\nladder = none\nmax_per_window = 100\nwindow = 1h\n"
            % (redis_url, POOL, addr, min_serving, max_unavailable, more))


def start_agents(redis, n, first_ip=2, wait_serving=True, **kw):
    agents = []
    for i in range(n):
        addr = "127.0.0.%d:8080" % (first_ip + i)
        a = Agent(name="pool%d" % i, host="web-%d" % (i + 1), window="1s", interval="100ms",
                  extra=pool_extra(redis.url(), addr, **kw))
        a.addr = addr
        agents.append(a)
    for a in agents:
        a.start(wait_serving=False)
    if wait_serving:
        for a in agents:
            a.wait_state("SERVING", 15)
    return agents


def close_all(agents):
    for a in agents:
        a.close()


@contextlib.contextmanager
def a_new_pool():
    """A fresh redis-server, a listener on the pool's events and the
    agents a scenario adds: their logs shown if it fails, all gone after."""
    redis = Redis().start()
    ev = Events(redis.port)
    agents = []
    try:
        yield redis, ev, agents
    except Exception:
        for a in agents[:3]:
            a.dump_log()
        raise
    finally:
        ev.close()
        close_all(agents)
        redis.kill()


def pool_status(a):
    return a.status()["pool"]


# --------------------------------------------------------------------------
# Scenarios

def t1_join_idempotent():
    """A serving agent is in `serving` exactly once, with its host hash,
    lease and list mirror; a restart leaves it there exactly once."""
    redis = Redis().start()
    ev = Events(redis.port)
    a = Agent(name="join", host="web-1", window="1s", interval="100ms",
              extra=pool_extra(redis.url(), "127.0.0.2:8080", more="list_key = ip_address"))
    try:
        t0 = time.monotonic()
        a.start(wait_serving=False)
        a.wait_state("SERVING", 15)
        wait_until(lambda: redis.smembers() == ["127.0.0.2:8080"], 5, 0.02, "the address in serving")
        print("   joined %.2fs after start" % (time.monotonic() - t0))
        h = dict(zip(*[iter(redis.cmd("HGETALL", P + "host:web-1"))] * 2))
        check(h.get("addr") == "127.0.0.2:8080", "host hash addr %r" % h)
        wait_until(lambda: redis.cmd("HGET", P + "host:web-1", "state") == "SERVING", 5, 0.05,
                   "host hash state SERVING")
        h = dict(zip(*[iter(redis.cmd("HGETALL", P + "host:web-1"))] * 2))
        for f in ("since", "reason", "version", "heartbeat"):
            check(h.get(f), "host hash has no %s: %r" % (f, h))
        ttl = redis.cmd("PTTL", P + "lease:web-1")
        check(0 < ttl <= 3000, "lease PTTL %r, want 0 < ttl <= 3000" % ttl)
        check(redis.cmd("GET", P + "lease:web-1") == "127.0.0.2:8080", "lease value")
        check(redis.cmd("HGET", P + "addrs", "127.0.0.2:8080") == "web-1", "addrs owner")
        check(redis.cmd("LRANGE", "ip_address", 0, -1) == ["127.0.0.2:8080"], "list mirror %r"
              % redis.cmd("LRANGE", "ip_address", 0, -1))

        # The lease is renewed: after two leases' time it is still there.
        time.sleep(1.2)
        check(redis.cmd("PTTL", P + "lease:web-1") > 1000, "lease not renewed")

        # Status reads the cached view.
        ps = wait_until(lambda: (lambda s: s if s.get("serving_count") == 1 else None)(pool_status(a)),
                        5, 0.1, "status serving_count 1")
        check(ps["status"] == "connected" and ps["connected"] is True, "pool status %r" % ps)
        check([m["host"] for m in ps["members"]] == ["web-1"], "members %r" % ps["members"])
        check(ps["members"][0]["lease_ttl_ms"] > 0, "member lease %r" % ps["members"][0])
        check(ps["budget"]["serving_alive"] == 1, "budget %r" % ps["budget"])

        # monkeyctl pool and the status line
        cp = a.ctl("pool")
        check(cp.returncode == 0, "monkeyctl pool: %s" % harness.describe(cp))
        check("web-1" in cp.stdout and "127.0.0.2:8080" in cp.stdout, "monkeyctl pool: %r" % cp.stdout)
        cp = a.ctl("pool", "--json")
        check(cp.returncode == 0 and '"members"' in cp.stdout, "monkeyctl pool --json: %s" % harness.describe(cp))
        cp = a.ctl("status")
        check("web: serving (1 of 1 serving, budget: 0 out of max 1)" in cp.stdout,
              "status pool line: %r" % cp.stdout)

        # One event per membership change and per state change.
        joins = ev.of_type("join")
        check(len(joins) == 1 and joins[0]["host"] == "web-1" and joins[0]["addr"] == "127.0.0.2:8080"
              and joins[0]["pool"] == POOL, "join events %r" % joins)
        # (BOOT and CHECKING may pass before the connection is up: the
        # state on connect is the current one)
        states = [e for e in ev.of_type("state") if e["host"] == "web-1"]
        check(states and states[-1]["state"] == "SERVING" and states[-1]["addr"] == "127.0.0.2:8080",
              "state events %r" % states)

        # Reload: the config's budget is only the pool's seed: the pool's
        # own (seeded 1) still applies, and status says the config differs
        # (test_budget.py sets it); a new list key reconnects and fills the
        # new list from our own view.
        a.write_config(extra=pool_extra(redis.url(), "127.0.0.2:8080", max_unavailable=2,
                                        more="list_key = ip_address2"))
        a.signal(signal.SIGHUP)
        wait_until(lambda: pool_status(a)["budget"]["config"]["max_unavailable"] == 2, 5, 0.05,
                   "the config's max_unavailable 2 after SIGHUP")
        wait_until(lambda: pool_status(a)["budget"]["config_differs"] == ["max_unavailable"], 5, 0.05,
                   "the config differing from the pool's budget after SIGHUP")
        check(pool_status(a)["budget"]["max_unavailable"] == 1, "a reload changed the pool's budget: %r"
              % pool_status(a)["budget"])
        wait_until(lambda: redis.cmd("LRANGE", "ip_address2", 0, -1) == ["127.0.0.2:8080"], 5, 0.05,
                   "the new list key filled after SIGHUP")
        a.write_config(extra=pool_extra(redis.url(), "127.0.0.2:8080", max_unavailable=2,
                                        more="list_key = ip_address"))
        a.signal(signal.SIGHUP)
        wait_until(lambda: pool_status(a)["status"] == "connected" and
                   redis.cmd("LRANGE", "ip_address", 0, -1) == ["127.0.0.2:8080"], 5, 0.05, "back on ip_address")

        # Restart: still exactly once, in the set and in the list; a clean
        # stop (ASan would fail it on a leak or a bad free).
        rc = a.stop()
        check(rc == 0, "monkeyd exited with %r on SIGTERM" % rc)
        n_leaves = len(ev.of_type("leave"))
        a.start(wait_serving=False)
        a.wait_state("SERVING", 15)
        time.sleep(1.5)
        check(redis.smembers() == ["127.0.0.2:8080"], "serving after restart %r" % redis.smembers())
        check(redis.cmd("LRANGE", "ip_address", 0, -1) == ["127.0.0.2:8080"], "list after restart %r"
              % redis.cmd("LRANGE", "ip_address", 0, -1))
        # Out until checks pass again: a leave and a join, or neither when
        # the checks passed before the connection was up.
        new_leaves, new_joins = len(ev.of_type("leave")) - n_leaves, len(ev.of_type("join")) - 1
        check(new_leaves == new_joins and new_joins <= 1,
              "events after restart: %r" % [e for _, e in ev.messages if e["type"] != "state"])
        print("   restart: %d leave/join pair(s) on the events channel" % new_joins)
        # Duplicates put there by someone else are repaired by the next join.
        redis.cmd("RPUSH", "ip_address", "127.0.0.2:8080")
        redis.cmd("SREM", SERVING, "127.0.0.2:8080")
        wait_until(lambda: redis.smembers() == ["127.0.0.2:8080"], 5, 0.05, "reconciled after SREM by hand")
        check(redis.cmd("LRANGE", "ip_address", 0, -1) == ["127.0.0.2:8080"], "list repaired %r"
              % redis.cmd("LRANGE", "ip_address", 0, -1))
    except Exception:
        a.dump_log()
        raise
    finally:
        ev.close()
        a.close()
        redis.kill()


class Sampler(threading.Thread):
    """Reads SCARD serving and ZCARD out every 20 ms on its own connection;
    keeps the extremes."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.c = Resp(port)
        self.stop_flag = False
        self.max_out = 0
        self.min_serving = None
        self.samples = 0
        self.start()

    def run(self):
        while not self.stop_flag:
            try:
                self.c.send("SCARD", SERVING)
                self.c.send("ZCARD", OUT)
                serving, out = self.c.read(), self.c.read()
            except Exception:  # noqa: BLE001 - redis went away: the test says so
                return
            self.samples += 1
            self.max_out = max(self.max_out, out)
            self.min_serving = serving if self.min_serving is None else min(self.min_serving, serving)
            time.sleep(0.02)

    def stop(self):
        self.stop_flag = True
        self.join(2)
        self.c.close()


def set_busy_now(agents, pct):
    """Switch every feeder at once (set_busy waits for a write each)."""
    for a in agents:
        with a.feeder.lock:
            a.feeder.busy = float(pct)


def max_concurrent_out(events):
    """From join/leave events in publish order: the most hosts out at once."""
    out, worst = set(), 0
    for e in events:
        if e.get("type") == "leave":
            out.add(e["host"])
        elif e.get("type") == "join":
            out.discard(e["host"])
        worst = max(worst, len(out))
    return worst


def ordered_membership_events(ev):
    with ev.lock:
        return [e for _, e in ev.messages if e.get("type") in ("join", "leave")]


def states_seen(a):
    return [h["to"] for h in harness.sorted_history(a.history(200))]


def t2_fleet_overload_budget():
    """20 agents overloaded at once with max_unavailable = 1: one leaves at
    a time, the others hold and say why; when the first is back, another
    may go."""
    with a_new_pool() as (redis, ev, agents):
        agents.extend(start_agents(redis, 20, min_serving=1, max_unavailable=1))
        wait_until(lambda: len(redis.smembers()) == 20, 10, 0.05, "20 addresses in serving")
        sampler = Sampler(redis.port)
        t0 = time.monotonic()
        set_busy_now(agents, 97)

        # Within a window and a bit: exactly one left, the rest hold.
        def settled():
            states = [a.state() for a in agents]
            holding = [a for a, s in zip(agents, states) if s == "HOLDING"]
            return (states, holding) if len(holding) >= 18 else None
        states, holding = wait_until(settled, 15, 0.1, "18+ agents HOLDING")
        print("   %.1fs after the overload: %s" % (time.monotonic() - t0,
              ", ".join("%s %d" % (k, states.count(k)) for k in sorted(set(states)))))
        reason = holding[0].status()["reason"] or ""
        check("budget" in reason and "max_unavailable 1" in reason,
              "HOLDING reason does not name the budget: %r" % reason)
        print("   holding reason: %s" % reason)

        # Keep going until a second host has left (the first one is back).
        wait_until(lambda: len(ev.of_type("leave")) >= 2, 30, 0.1, "a second leave after the first rejoined")
        t_second = time.monotonic() - t0
        sampler.stop()
        events = ordered_membership_events(ev)
        leaves = [e["host"] for e in events if e["type"] == "leave"]
        print("   leaves: %s (second %.1fs after the overload); %d samples, max out %d, min serving %s"
              % (", ".join(leaves), t_second, sampler.samples, sampler.max_out, sampler.min_serving))
        check(sampler.samples > 50, "sampler too slow: %d samples" % sampler.samples)
        check(sampler.max_out <= 1, "ZCARD out reached %d with max_unavailable 1" % sampler.max_out)
        check(sampler.min_serving >= 19, "SCARD serving fell to %s" % sampler.min_serving)
        check(max_concurrent_out(events) == 1, "two leaves overlapped in the events: %r" % events)
        held = {e["host"] for e in ev.of_type("state") if e["state"] == "HOLDING"}
        check(len(held) >= 18, "HOLDING state events from %d hosts" % len(held))
        for a in agents:
            hist = states_seen(a)
            check("DRAINING" not in hist or "REMEDIATING" in hist or a.state() in ("DRAINING",),
                  "%s drained without remediating: %s" % (a.name, hist))
        set_busy_now(agents, 5)


def t3_min_serving():
    """3 agents, min_serving 2 (max_unavailable out of the way): at most
    one of them is ever out."""
    redis = Redis().start()
    ev = Events(redis.port)
    agents = []
    try:
        agents = start_agents(redis, 3, min_serving=2, max_unavailable=3)
        wait_until(lambda: len(redis.smembers()) == 3, 10, 0.05, "3 addresses in serving")
        sampler = Sampler(redis.port)
        set_busy_now(agents, 97)
        wait_until(lambda: sum(a.state() == "HOLDING" for a in agents) >= 2, 10, 0.1, "2 agents HOLDING")
        reasons = [a.status()["reason"] for a in agents if a.state() == "HOLDING"]
        check(any("min_serving 2: only 2 serving" in (r or "") for r in reasons),
              "no HOLDING reason names min_serving: %r" % reasons)
        time.sleep(3)
        sampler.stop()
        events = ordered_membership_events(ev)
        print("   %d leave(s), max out %d, min serving %s; holding: %s" % (
            len([e for e in events if e["type"] == "leave"]), sampler.max_out, sampler.min_serving, reasons[0]))
        check(len([e for e in events if e["type"] == "leave"]) >= 1, "nobody left")
        check(sampler.min_serving >= 2, "serving fell to %s with min_serving 2" % sampler.min_serving)
        check(max_concurrent_out(events) == 1, "two out at once: %r" % events)
        set_busy_now(agents, 5)
    finally:
        ev.close()
        close_all(agents)
        redis.kill()


def t4_lease_expiry():
    """A SIGKILLed agent's lease expires; it no longer counts as serving
    for the budget, even though its address is still in the set."""
    redis = Redis().start()
    agents = []
    try:
        agents = start_agents(redis, 3, min_serving=2, max_unavailable=3)
        wait_until(lambda: len(redis.smembers()) == 3, 10, 0.05, "3 addresses in serving")
        dead = agents[2]
        check(redis.cmd("EXISTS", P + "lease:web-3") == 1, "web-3 has no lease")
        t0 = time.monotonic()
        dead.kill()
        wait_until(lambda: redis.cmd("EXISTS", P + "lease:web-3") == 0, 6, 0.02, "web-3's lease to expire")
        took = time.monotonic() - t0
        print("   lease of the killed agent gone %.2fs after SIGKILL (lease 3s)" % took)
        check(took <= 4.5, "lease outlived the agent by %.1fs" % took)
        check("127.0.0.4:8080" in redis.smembers(), "the dead address left serving by itself?")

        def alive_two():
            ps = pool_status(agents[0])
            return ps if ps["budget"]["serving_alive"] == 2 else None
        ps = wait_until(alive_two, 5, 0.1, "serving_alive 2 in web-1's view")
        m = [m for m in ps["members"] if m["host"] == "web-3"]
        check(m and m[0]["lease_ttl_ms"] is None, "web-3 in the view: %r" % m)

        # Only two alive with min_serving 2: nobody may leave now.
        set_busy_now(agents[:1], 97)
        st, _ = agents[0].wait_state("HOLDING", 10)
        check("min_serving 2: only 2 serving" in (st["reason"] or ""), "reason %r" % st["reason"])
        print("   web-1 holds: %s" % st["reason"])
        set_busy_now(agents[:1], 5)
    finally:
        close_all(agents)
        redis.kill()


def status_latency(a, seconds):
    """The times of status requests over `seconds`, in seconds."""
    times, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        t = time.monotonic()
        a.status()
        times.append(time.monotonic() - t)
        time.sleep(0.03)
    return times


def t5_redis_dies_mid_cycle():
    """Redis hangs (SIGSTOP) then dies while an agent must leave: the agent
    holds and never remediates while it may still be routed, status stays
    fast; Redis back empty: membership is rebuilt from the agents' own
    views, then the leave proceeds."""
    redis = Redis().start()
    agents = []
    try:
        agents = start_agents(redis, 2, min_serving=1, max_unavailable=1)
        a, b = agents
        wait_until(lambda: len(redis.smembers()) == 2, 10, 0.05, "2 addresses in serving")

        # Hang: the leave gets no reply; the command timer must fire.
        redis.proc.send_signal(signal.SIGSTOP)
        t0 = time.monotonic()
        set_busy_now([a], 97)
        times = status_latency(a, 2.0)
        st, _ = a.wait_state("HOLDING", 8)
        t_hold = time.monotonic() - t0
        times += status_latency(a, 0.5)
        print("   Redis paused: HOLDING %.1fs after the overload (%s); status median %.1f ms, worst %.1f ms "
              "over %d calls" % (t_hold, st["reason"], statistics.median(times) * 1000, max(times) * 1000,
                                 len(times)))
        check("unreachable" in st["reason"] and "not leaving" in st["reason"], "reason %r" % st["reason"])
        harness.check_answer_times(times, "while Redis was paused")
        ps = pool_status(a)
        check(ps["status"] != "connected", "pool still 'connected' with Redis paused: %r" % ps["status"])

        # Dies.
        redis.proc.send_signal(signal.SIGCONT)
        redis.kill()
        times = status_latency(a, 2.0)
        print("   Redis dead: status median %.1f ms, worst %.1f ms over %d calls; pool %s"
              % (statistics.median(times) * 1000, max(times) * 1000, len(times), pool_status(a)["status"]))
        harness.check_answer_times(times, "while Redis was down")
        check(a.state() == "HOLDING", "state %s with Redis down" % a.state())
        seen = states_seen(a)
        check("REMEDIATING" not in seen and "DRAINING" not in seen, "left or remediated while unreachable: %s" % seen)
        cp = a.ctl("status")
        check("web: unreachable (last error:" in cp.stdout, "status pool line: %r" % cp.stdout)

        # Back, empty: both re-register from their own views.
        t1 = time.monotonic()
        redis.start()

        def rebuilt():
            members = set(redis.smembers())
            # web-1 may already have left again, through the budget
            a_ok = "127.0.0.2:8080" in members or redis.cmd("ZSCORE", OUT, "web-1") is not None
            return "127.0.0.3:8080" in members and a_ok
        wait_until(rebuilt, 15, 0.05, "both agents re-registered")
        t_back = time.monotonic() - t1
        wait_until(lambda: pool_status(a)["status"] == "connected", 5, 0.05, "web-1 connected")
        print("   Redis restarted: membership rebuilt %.2fs later" % t_back)
        check(t_back < 12, "reconcile took %.1fs" % t_back)
        check(redis.cmd("EXISTS", P + "lease:web-1") == 1 and redis.cmd("EXISTS", P + "lease:web-2") == 1,
              "leases not renewed after the restart")

        # And the leave proceeds.
        def remediated():
            return "REMEDIATING" in states_seen(a)
        wait_until(remediated, 20, 0.1, "web-1 to remediate once Redis is back")
        print("   web-1 left and remediated %.1fs after Redis came back" % (time.monotonic() - t1))
        set_busy_now([a], 5)
        for x in agents:
            rc = x.stop()
            check(rc == 0, "%s exited with %r on SIGTERM after the outage" % (x.name, rc))
    except Exception:
        for x in agents:
            x.dump_log()
        raise
    finally:
        close_all(agents)
        redis.kill()


def t6_on_unreachable_remediate():
    """With on_unreachable = remediate, a dead Redis does not stop the cycle."""
    redis = Redis().start()
    a = Agent(name="remediate", host="web-1", window="1s", interval="100ms",
              extra=pool_extra(redis.url(), "127.0.0.2:8080", more="on_unreachable = remediate"))
    try:
        a.start(wait_serving=False)
        a.wait_state("SERVING", 15)
        wait_until(lambda: redis.smembers() == ["127.0.0.2:8080"], 5, 0.05, "registered")
        redis.kill()
        set_busy_now([a], 97)
        wait_until(lambda: "REMEDIATING" in states_seen(a), 15, 0.1, "REMEDIATING with Redis down")
        hist = harness.sorted_history(a.history(200))
        granted = [h for h in hist if h["to"] == "DRAINING"]
        check(granted and "on_unreachable = remediate" in (granted[-1]["reason"] or ""),
              "DRAINING reason %r" % (granted[-1]["reason"] if granted else None))
        print("   %s" % granted[-1]["reason"])
        set_busy_now([a], 5)
    finally:
        a.close()
        redis.kill()


def t7_sentinel():
    """sentinel://: the agent asks the sentinel for the master, registers
    there, and follows a failover to the replica."""
    master = Redis().start()
    # The replica first: the sentinel learns replicas from the master's INFO
    # every 10s, but reads it at once when it starts.
    replica = Redis().start()
    replica.cmd("REPLICAOF", "127.0.0.1", master.port)
    wait_until(lambda: replica.cmd("ROLE")[3] == "connected", 10, 0.05, "the replica to sync")
    sport = free_port()
    sdir = harness.make_tmpdir("monkey-it-sentinel-")
    conf = os.path.join(sdir, "sentinel.conf")
    with open(conf, "w") as f:
        f.write("port %d\nbind 127.0.0.1\ndir %s\n"
                "sentinel monitor mymaster 127.0.0.1 %d 1\n"
                "sentinel down-after-milliseconds mymaster 1000\n"
                "sentinel failover-timeout mymaster 5000\n"
                "sentinel parallel-syncs mymaster 1\n" % (sport, sdir, master.port))
    sentinel_bin = shutil.which("redis-sentinel")
    argv = [sentinel_bin, conf] if sentinel_bin else [REDIS_SERVER, conf, "--sentinel"]
    slog = open(os.path.join(sdir, "sentinel.log"), "wb")
    sproc = harness.spawn(argv, stdout=slog, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    s = None
    a = None
    try:
        def sentinel_knows():
            c = Resp(sport)
            try:
                return c.cmd("SENTINEL", "get-master-addr-by-name", "mymaster")
            finally:
                c.close()
        wait_until(sentinel_knows, 10, 0.05, "the sentinel to answer")
        a = Agent(name="sentinel", host="web-1", window="1s", interval="100ms",
                  extra=pool_extra("sentinel://127.0.0.1:1,127.0.0.1:%d/mymaster" % sport, "127.0.0.2:8080"))
        t0 = time.monotonic()
        a.start(wait_serving=False)
        a.wait_state("SERVING", 15)
        wait_until(lambda: master.smembers() == ["127.0.0.2:8080"], 10, 0.05, "registered on the master")
        print("   registered on the master %.2fs after start (first sentinel in the URL is dead)"
              % (time.monotonic() - t0))
        ps = pool_status(a)
        check(ps["master"] == "127.0.0.1:%d" % master.port, "status master %r" % ps["master"])

        # Failover: the replica, promoted by the sentinel.
        wait_until(lambda: replica.cmd("SMEMBERS", SERVING) == ["127.0.0.2:8080"], 10, 0.05, "the replica in sync")

        def sentinel_sees_replica():
            c = Resp(sport)
            try:
                return len(c.cmd("SENTINEL", "replicas", "mymaster")) >= 1
            finally:
                c.close()
        wait_until(sentinel_sees_replica, 15, 0.1, "the sentinel to see the replica")
        t1 = time.monotonic()
        c = Resp(sport)
        try:
            wait_until(lambda: c.cmd("SENTINEL", "failover", "mymaster") == "OK", 10, 0.2, "SENTINEL failover")
        finally:
            c.close()
        t2 = time.monotonic()
        wait_until(lambda: pool_status(a)["master"] == "127.0.0.1:%d" % replica.port and
                   pool_status(a)["status"] == "connected", 20, 0.1, "the agent on the new master")
        print("   sentinel accepted the failover after %.1fs; the agent was on the new master %.1fs later"
              % (t2 - t1, time.monotonic() - t2))
        # The promotion closed our test connections too: each call retries.
        wait_until(lambda: replica.cmd("ROLE")[0] == "master", 10, 0.1, "the replica promoted")
        wait_until(lambda: replica.cmd("SREM", SERVING, "127.0.0.2:8080") is not None, 5, 0.1, "SREM by hand")
        wait_until(lambda: replica.smembers() == ["127.0.0.2:8080"], 5, 0.05, "reconciled on the new master")
    except Exception:
        if a:
            a.dump_log()
        raise
    finally:
        if a:
            a.close()
        if sproc.poll() is None:
            sproc.kill()
            sproc.wait(5)
        replica.kill()
        master.kill()


def t8_auth():
    """An ACL user from the URL and its password from password_file; a wrong
    password is reported, never logged."""
    redis = Redis().start()
    redis.cmd("ACL", "SETUSER", "monkey", "on", ">s3cret-pw", "~*", "&*", "+@all")
    redis.cmd("ACL", "SETUSER", "default", "off")
    redis.auth = ("monkey", "s3cret-pw")
    redis.reset()
    a = Agent(name="auth", host="web-1", window="1s", interval="100ms")
    pw = os.path.join(a.dir, "redis-password")
    harness.atomic_write(pw, "s3cret-pw\n", mode=0o600)
    url = "redis://monkey@127.0.0.1:%d/3" % redis.port
    a.write_config(extra=pool_extra(url, "127.0.0.2:8080", more="password_file = %s" % pw))
    try:
        a.start(wait_serving=False)
        a.wait_state("SERVING", 15)
        wait_until(lambda: redis.cmd("SELECT", 3) == "OK" and redis.cmd("SMEMBERS", SERVING) == ["127.0.0.2:8080"],
                   5, 0.05, "registered in db 3 as user monkey")
        a.stop()

        harness.atomic_write(pw, "wrong-pw\n", mode=0o600)
        a.start(wait_serving=False)
        wait_until(lambda: pool_status(a)["status"] == "unreachable" and
                   "WRONGPASS" in (pool_status(a)["last_error"] or ""), 5, 0.05, "AUTH refused")
        print("   wrong password: %s" % pool_status(a)["last_error"])
        a.stop()
        logs = a.all_logs()
        check("wrong-pw" not in logs and "s3cret-pw" not in logs, "a password reached the log")
    finally:
        a.close()
        redis.kill()


def t9_first_come_first_served():
    """Held hosts get the budget in the order they first asked: a host that
    just came back cannot jump the queue, so under a long whole-fleet
    overload every host takes its turn instead of two hosts alternating."""
    redis = Redis().start()
    ev = Events(redis.port)
    agents = []
    try:
        agents = start_agents(redis, 3, max_unavailable=1)
        for a in agents:
            a.write_config(extra=pool_extra(redis.url(), a.addr, max_unavailable=1).replace("drain = 1s",
                                                                                           "drain = 3s"))
            a.signal(signal.SIGHUP)
        time.sleep(0.5)
        a1, a2, a3 = agents
        a1.feeder.set_busy(97)
        a1.wait_state("DRAINING", 5)
        a2.feeder.set_busy(97)
        a2.wait_state("HOLDING", 5)
        time.sleep(1.5)  # web-2 has asked (and waited) longer than web-3 will have
        a3.feeder.set_busy(97)
        a3.wait_state("HOLDING", 5)
        wait_until(lambda: len([e for e in ordered_membership_events(ev) if e["type"] == "leave"]) >= 3, 20, 0.1,
                   "three leaves")
        leaves = [e["host"] for e in ordered_membership_events(ev) if e["type"] == "leave"]
        print("   leave order: %s" % " -> ".join(leaves))
        check(leaves[:3] == ["web-1", "web-2", "web-3"],
              "leave order %r: web-2 asked before web-3 and web-1 came back last" % leaves[:3])
        reasons = [h.get("reason") or "" for h in a3.history(100) if h.get("to") == "HOLDING"]
        print("   web-3 held: %s" % "; ".join(sorted(set(reasons)))[:300])
        set_busy_now(agents, 5)
    finally:
        ev.close()
        close_all(agents)
        redis.kill()


def t10_pool_state_lost():
    """Redis loses the pool's keys while the connections stay up (FLUSHALL,
    eviction, a restore) and every host overloads before its next heartbeat
    re-joins it: the budget cannot see them, so nobody may leave on the
    strength of "already out". They hold until the heartbeat puts them back,
    then one at a time leaves."""
    if harness.VALGRIND:
        # The race it stages (every host breaches before its next heartbeat)
        # needs the agents started within a second of each other.
        print("   skipped under valgrind: the staged race needs native speed")
        return
    redis = Redis().start()
    agents = []
    try:
        agents = []
        for i in range(3):
            addr = "127.0.0.%d:8080" % (2 + i)
            a = Agent(name="lost%d" % i, host="web-%d" % (i + 1), window="1s", interval="100ms",
                      extra=("[pool]\nredis = %s\nname = %s\naddress = %s\nmin_serving = 1\nmax_unavailable = 1\n"
                             "drain = 1s\nlease = 20s\nheartbeat = 6s\n\n[remedy]\nladder = none\n"
                             "max_per_window = 100\nwindow = 1h\n" % (redis.url(), POOL, addr)))
            agents.append(a)
        for a in agents:
            a.start()
        wait_until(lambda: len(redis.smembers()) == 3, 10, 0.05, "3 addresses in serving")
        redis.cmd("FLUSHALL")
        set_busy_now(agents, 97)
        wait_until(lambda: all(a.state() == "HOLDING" for a in agents), 5, 0.05, "all three HOLDING")
        reason = agents[0].status()["reason"] or ""
        check("lost our membership" in reason, "HOLDING reason: %r" % reason)
        for a in agents:
            check("DRAINING" not in states_seen(a), "%s left a pool that had lost it: %s" % (a.name, states_seen(a)))
        # the heartbeat re-joins them; then the budget works again: one leaves
        wait_until(lambda: sum(a.state() in ("DRAINING", "REMEDIATING", "CHECKING") or
                               "DRAINING" in states_seen(a) for a in agents) >= 1, 20, 0.1,
                   "one host to leave once the heartbeats re-joined everyone")
        check(sum("DRAINING" in states_seen(a) for a in agents) == 1, "more than one left: %s"
              % [states_seen(a) for a in agents])
        print("   after FLUSHALL: all three held (%s), then one left" % reason)
        set_busy_now(agents, 5)
    except Exception:
        for a in agents:
            a.dump_log()
        raise
    finally:
        close_all(agents)
        redis.kill()


def t11_script_cache_flushed():
    """Redis forgets the scripts while the connections stay up (SCRIPT
    FLUSH): each script's NOSCRIPT is answered by sending its text, so the
    heartbeat still renews the lease and the budget-checked leave still
    goes through, and the pool never reports a refusal or a lost link."""
    redis = Redis().start()
    agents = []
    try:
        agents = start_agents(redis, 2, min_serving=1, max_unavailable=1)
        wait_until(lambda: len(redis.smembers()) == 2, 10, 0.05, "2 addresses in serving")
        redis.cmd("SCRIPT", "FLUSH")
        redis.cmd("DEL", P + "lease:web-1")
        wait_until(lambda: redis.cmd("EXISTS", P + "lease:web-1") == 1, 5, 0.05,
                   "web-1's heartbeat to renew its lease after SCRIPT FLUSH")
        set_busy_now(agents[:1], 97)
        wait_until(lambda: "DRAINING" in states_seen(agents[0]), 15, 0.1, "web-1 to leave through the budget")
        check("127.0.0.2:8080" not in redis.smembers(), "web-1 still in serving: %r" % redis.smembers())
        for a in agents:
            ps = pool_status(a)
            check(ps["status"] == "connected" and ps["last_error"] is None,
                  "%s after SCRIPT FLUSH: %s, %r" % (a.name, ps["status"], ps["last_error"]))
            log = a.log_text()
            for bad in ("failed", "unexpected reply", "lost Redis"):
                check(bad not in log, "%s logged %r after SCRIPT FLUSH" % (a.name, bad))
        print("   after SCRIPT FLUSH: the lease renewed and web-1 left through the budget")
        set_busy_now(agents[:1], 5)
    except Exception:
        for a in agents:
            a.dump_log()
        raise
    finally:
        close_all(agents)
        redis.kill()


# The TLS Redis's name: looked up through a DNS stub (dnsstub.py) in the
# agent's own resolv.conf view, never through the machine's /etc/hosts (a
# minimal Debian root has no "localhost" in it).
TLS_NAME = "redis.pool.test"


def make_certs(d):
    """A CA and a server certificate for redis.pool.test/127.0.0.1 it signs, and
    a second CA that signed nothing here: made with the openssl CLI."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "otherca"):
        subprocess.run(["openssl", "req", "-x509"] + ec + ["-keyout", ca + ".key", "-out", ca + ".crt",
                        "-subj", "/CN=" + ca, "-days", "2"], cwd=d, check=True, capture_output=True)
    subprocess.run(["openssl", "req"] + ec + ["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=" + TLS_NAME],
                   cwd=d, check=True, capture_output=True)
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("subjectAltName=DNS:%s,IP:127.0.0.1\n" % TLS_NAME)
    subprocess.run(["openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                    "-CAcreateserial", "-days", "2", "-out", "server.crt", "-extfile", "server.ext"],
                   cwd=d, check=True, capture_output=True)


class TlsRedis(Redis):
    """TLS on tls_port for the agent; the plain port stays for the test's
    own reads (Resp speaks no TLS)."""

    def __init__(self, certs):
        super().__init__()
        self.tls_port = free_port()
        self.certs = certs

    def start(self):
        self.log = open(os.path.join(self.dir, "redis-%d.log" % time.monotonic_ns()), "wb")
        c = lambda n: os.path.join(self.certs, n)
        self.proc = harness.spawn([REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
                                   "--tls-port", str(self.tls_port), "--tls-cert-file", c("server.crt"),
                                   "--tls-key-file", c("server.key"), "--tls-ca-cert-file", c("ca.crt"),
                                   "--tls-auth-clients", "no",
                                   "--save", "", "--appendonly", "no", "--dir", self.dir],
                                  stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_until(lambda: self.ping(), 10, 0.02, "redis-server on port %d" % self.port)
        return self


def t12_tls():
    """rediss:// with a host name: the agent joins over TLS, follows a
    restart of the TLS Redis, and a server its CA did not sign is refused
    with a clear error in status. The name comes from a DNS stub in the
    agent's own resolv.conf view; where no mount namespace may be made,
    the URL names 127.0.0.1 and tls_server_name the certificate's name."""
    certs = harness.make_tmpdir("monkey-it-certs-")
    make_certs(certs)
    redis = TlsRedis(certs).start()
    a = Agent(name="tls", host="web-1", window="1s", interval="100ms")
    why = dnsns.refused()
    stub = None
    try:
        if why is None:
            try:
                stub = DnsStub({TLS_NAME: "127.0.0.1"}).__enter__()
            except DnsStubError as e:
                why = str(e)
        if stub:
            url, more, wrapper = "rediss://%s:%d/0" % (TLS_NAME, redis.tls_port), "", None
            print("   the name %s from a DNS stub at %s" % (TLS_NAME, stub.addr))
        else:
            url, more, wrapper = "rediss://127.0.0.1:%d/0" % redis.tls_port, "tls_server_name = %s\n" % TLS_NAME, ()
            print("   no DNS stub here (%s): rediss://127.0.0.1 with tls_server_name %s" % (why, TLS_NAME))

        def start(ca):
            a.write_config(extra=pool_extra(url, "127.0.0.2:8080",
                                            more=more + "tls_ca_file = %s" % os.path.join(certs, ca)))
            a.start(wait_serving=False,
                    wrapper=dnsns.DnsView(stub, a.dir, timeout=1, attempts=1).wrapper() if stub else ())

        start("ca.crt")
        a.wait_state("SERVING", 15)
        wait_until(lambda: redis.smembers() == ["127.0.0.2:8080"], 5, 0.05, "registered over TLS")
        check(pool_status(a)["status"] == "connected", "status %r over TLS" % pool_status(a)["status"])
        if stub:
            check(any(q["name"].rstrip(".") == TLS_NAME for q in stub.questions()),
                  "the agent never asked the stub for %s" % TLS_NAME)

        # A restart of the TLS Redis (state lost): the agent reconnects and registers again.
        redis.kill()
        wait_until(lambda: pool_status(a)["status"] != "connected", 5, 0.05, "the loss seen")
        redis.start()
        wait_until(lambda: pool_status(a)["status"] == "connected" and redis.smembers() == ["127.0.0.2:8080"],
                   15, 0.05, "reconnected over TLS and registered again")
        a.stop()

        start("otherca.crt")
        wait_until(lambda: pool_status(a)["status"] == "unreachable" and
                   "unknown CA" in (pool_status(a)["last_error"] or ""), 10, 0.05, "unknown CA refused")
        print("   wrong CA: %s" % pool_status(a)["last_error"])
        a.stop()
    finally:
        a.close()
        redis.kill()
        if stub:
            stub.stop()


def t13_sentinel_tls():
    """rediss-sentinel://: the sentinel and the master speak only TLS; the
    agent asks the sentinel over TLS, checks the master's certificate (by
    the address the sentinel gives, in its IP SAN) and registers there. A
    CA that signed neither is refused at the sentinel, with the reason."""
    certs = harness.make_tmpdir("monkey-it-certs-")
    make_certs(certs)
    master = TlsRedis(certs).start()
    c = lambda n: os.path.join(certs, n)
    sport = free_port()
    sdir = harness.make_tmpdir("monkey-it-sentinel-")
    conf = os.path.join(sdir, "sentinel.conf")
    with open(conf, "w") as f:
        # port 0: TLS only; tls-replication: the sentinel reaches the master over TLS
        f.write("port 0\ntls-port %d\nbind 127.0.0.1\ndir %s\n"
                "tls-cert-file %s\ntls-key-file %s\ntls-ca-cert-file %s\ntls-auth-clients no\n"
                "tls-replication yes\n"
                "sentinel monitor mymaster 127.0.0.1 %d 1\n"
                "sentinel down-after-milliseconds mymaster 1000\n"
                % (sport, sdir, c("server.crt"), c("server.key"), c("ca.crt"), master.tls_port))
    sentinel_bin = shutil.which("redis-sentinel")
    argv = [sentinel_bin, conf] if sentinel_bin else [REDIS_SERVER, conf, "--sentinel"]
    slog = open(os.path.join(sdir, "sentinel.log"), "wb")
    sproc = harness.spawn(argv, stdout=slog, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    a = Agent(name="sentineltls", host="web-1", window="1s", interval="100ms")
    try:
        def start(ca):
            a.write_config(extra=pool_extra("rediss-sentinel://127.0.0.1:%d/mymaster" % sport, "127.0.0.2:8080",
                                            more="tls_ca_file = %s" % c(ca)))
            a.start(wait_serving=False)

        start("ca.crt")
        a.wait_state("SERVING", 15)
        wait_until(lambda: master.smembers() == ["127.0.0.2:8080"], 10, 0.05, "registered on the TLS master")
        ps = pool_status(a)
        check(ps["master"] == "127.0.0.1:%d" % master.tls_port, "status master %r" % ps["master"])
        check(ps["status"] == "connected", "status %r" % ps["status"])
        print("   through the TLS sentinel to the master at %s" % ps["master"])
        a.stop()

        start("otherca.crt")
        wait_until(lambda: "unknown CA" in (pool_status(a)["last_error"] or ""), 10, 0.05,
                   "the sentinel's certificate refused")
        print("   wrong CA: %s" % pool_status(a)["last_error"])
        a.stop()
    except Exception:
        a.dump_log()
        with open(os.path.join(sdir, "sentinel.log"), "rb") as f:
            sys.stdout.write(f.read().decode(errors="replace")[-1500:])
        raise
    finally:
        a.close()
        if sproc.poll() is None:
            sproc.kill()
            sproc.wait(5)
        master.kill()


def main():
    if not REDIS_SERVER:
        print("FAIL: redis-server is not installed (tests/setup-deps)")
        sys.exit(1)
    harness.main([t1_join_idempotent, t2_fleet_overload_budget, t3_min_serving, t4_lease_expiry,
                  t5_redis_dies_mid_cycle, t6_on_unreachable_remediate, t7_sentinel, t8_auth,
                  t9_first_come_first_served, t10_pool_state_lost, t11_script_cache_flushed, t12_tls,
                  t13_sentinel_tls])


if __name__ == "__main__":
    main()
