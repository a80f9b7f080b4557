#!/usr/bin/env python3
"""Fault matrix, Redis: killed, restarted empty, slowed (DEBUG SLEEP while
the agent leaves), refusing auth (a rotated password, an ACL that takes
the scripts away). In every cell the agent keeps answering, never leaves
or remediates without a yes from the budget it can prove (on_unreachable =
hold), shows the error in status, and re-registers when Redis is back.
Outcomes are read from Redis itself and from the agent's status and
history."""

import os
import signal
import subprocess
import threading
import time

import faultlib
from faultlib import cell, check, states, wait_until

import harness  # noqa: E402
import test_pool  # noqa: E402
from harness import Agent  # noqa: E402
from test_pool import OUT, P, Resp  # noqa: E402

POOL = "web"


class Redis(test_pool.Redis):
    """test_pool's redis-server, DEBUG allowed from loopback (DEBUG SLEEP)."""

    def start(self):
        self.log = open(os.path.join(self.dir, "redis-%d.log" % time.monotonic_ns()), "wb")
        self.proc = harness.spawn([test_pool.REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
                                   "--save", "", "--appendonly", "no", "--dir", self.dir,
                                   "--enable-debug-command", "local"],
                                  stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_until(lambda: self.ping(), 10, 0.02, "redis-server on port %d" % self.port)
        return self


def pool_agent(c, redis_url, i=0, drain="1s", more="", host=None):
    addr = "127.0.0.%d:8080" % (2 + i)
    host = host or "web-%d" % (i + 1)
    extra = ("[pool]\nredis = %s\nname = %s\naddress = %s\nmin_serving = 0\nmax_unavailable = 1\n"
             "drain = %s\nlease = 3s\nheartbeat = 1s\n%s\n"
             "[remedy]\nladder = none\nmax_per_window = 100\nwindow = 1h\n" % (redis_url, POOL, addr, drain, more))
    a = Agent(name="redis-%s" % host, host=host, window="1s", interval="100ms", extra=extra)
    a.addr = addr
    a.host = host
    return c.track(a)


def registered(redis, a):
    """Redis knows the host again: its hash, its lease, and serving or out."""
    try:
        return (redis.cmd("HGET", P + "host:" + a.host, "addr") == a.addr and
                redis.cmd("EXISTS", P + "lease:" + a.host) == 1 and
                (a.addr in redis.smembers() or redis.cmd("ZSCORE", OUT, a.host) is not None))
    except (OSError, ConnectionError, test_pool.RedisError):
        return False


def first_at(a, state):
    for h in faultlib.history(a):
        if h["to"] == state:
            return h.get("at_unix") or 0.0
    return None


def never_left(a):
    s = states(a)
    check("DRAINING" not in s and "REMEDIATING" not in s, "left or remediated without the budget's yes: %s" % s)


@cell("redis", "killed")
def killed(c):
    """SIGKILL: unreachable in status, an overload holds, no leave; Redis
    back (empty): re-registered, then the held leave goes through."""
    redis = Redis().start()
    a = pool_agent(c, redis.url())
    a.start(wait_serving=False)
    a.wait_state("SERVING", 15)
    wait_until(lambda: redis.smembers() == [a.addr], 5, 0.05, "registered")
    redis.kill()
    c.wait(a, lambda: a.status()["pool"]["status"] == "unreachable" and
           "refused" in (a.status()["pool"]["last_error"] or "").lower(), 5,
           "pool 'unreachable' in status, last_error 'Connection refused'")
    err = a.status()["pool"]["last_error"]
    a.feeder.set_busy(97)
    c.wait(a, lambda: a.state() == "HOLDING", 5, "HOLDING with Redis dead")
    reason = a.status()["reason"] or ""
    check("unreachable" in reason and "not leaving" in reason, "HOLDING reason %r" % reason)
    c.probe_for(a, 2.0)
    check(a.state() == "HOLDING", "state %s with Redis dead" % a.state())
    never_left(a)
    cp = a.ctl("status")
    check("unreachable (last error:" in cp.stdout, "status text does not show the error: %r" % cp.stdout[-400:])
    t_back = time.time()
    redis.start()
    c.wait(a, lambda: registered(redis, a), 10, "re-registered in the restarted (empty) Redis")
    t_reg = time.time() - t_back
    c.wait(a, lambda: first_at(a, "DRAINING") is not None, 10, "the held leave to go through")
    check(first_at(a, "DRAINING") >= t_back, "left before Redis was back")
    check(redis.cmd("ZSCORE", OUT, a.host) is not None and a.addr not in redis.smembers(),
          "DRAINING but Redis does not count us out")
    a.feeder.set_busy(5)
    c.result("HOLDING (%s) while dead, never left; status 'unreachable' (%s); re-registered %.1fs after the "
             "restart, then left through the budget" % (reason.split(": not leaving")[0], err, t_reg))


@cell("redis", "restarted-empty")
def restarted_empty(c):
    """Redis restarted empty while web-1 is out (draining): web-2 is back in
    serving within a few heartbeats, web-1 is not, and web-1 still counts
    against max_unavailable = 1, so an overloaded web-2 holds."""
    redis = Redis().start()
    a = pool_agent(c, redis.url(), 0, drain="60s")
    b = pool_agent(c, redis.url(), 1)
    a.start(wait_serving=False)
    b.start(wait_serving=False)
    a.wait_state("SERVING", 15)
    b.wait_state("SERVING", 15)
    wait_until(lambda: redis.smembers() == sorted([a.addr, b.addr]), 5, 0.05, "both registered")
    a.feeder.set_busy(97)
    c.wait(a, lambda: a.state() == "DRAINING", 5, "web-1 to leave")
    check(redis.cmd("ZSCORE", OUT, a.host) is not None, "web-1 not counted out")
    redis.kill()
    c.probe_for(a, 0.5)
    t_back = time.monotonic()
    redis.start()
    c.wait(b, lambda: registered(redis, b) and b.addr in redis.smembers(), 8, "web-2 back in serving")
    t_b = time.monotonic() - t_back
    c.wait(a, lambda: redis.cmd("HGET", P + "host:" + a.host, "state") == "DRAINING", 8,
           "web-1's host hash rebuilt")
    check(a.addr not in redis.smembers(), "web-1 re-joined serving while draining: %s" % redis.smembers())
    c.wait(a, lambda: redis.cmd("ZSCORE", OUT, a.host) is not None, 5,
           "web-1 counted out again after the restart (the budget must see it)")
    b.feeder.set_busy(97)
    c.wait(b, lambda: b.state() in ("HOLDING", "DRAINING"), 5, "web-2 to ask the budget")
    c.probe_for(b, 1.5)
    never_left(b)
    reason = b.status()["reason"] or ""
    check("max_unavailable" in reason and a.host in reason, "web-2 held for another reason: %r" % reason)
    check(a.state() == "DRAINING", "web-1 state %s" % a.state())
    b.feeder.set_busy(5)
    c.result("web-2 back in serving %.1fs after the restart; draining web-1 stayed out and still counted "
             "(web-2 held: %s)" % (t_b, reason.split("disruption budget: ")[-1]))


@cell("redis", "slowed")
def slowed(c):
    """DEBUG SLEEP 5 while the agent must leave: the leave gets no answer,
    the agent holds (never leaves on a maybe); Redis awake: re-registered,
    then the leave goes through."""
    redis = Redis().start()
    a = pool_agent(c, redis.url())
    a.start(wait_serving=False)
    a.wait_state("SERVING", 15)
    wait_until(lambda: redis.smembers() == [a.addr], 5, 0.05, "registered")
    done = {}

    def sleeper():
        s = Resp(redis.port, timeout=15)
        try:
            done["reply"] = s.cmd("DEBUG", "SLEEP", "5")
        except Exception as e:  # noqa: BLE001 - reported below
            done["reply"] = e
        finally:
            done["at"] = time.time()
            s.close()
    t = threading.Thread(target=sleeper, daemon=True)
    t_sleep = time.time()
    t.start()
    time.sleep(0.2)
    a.feeder.set_busy(97)
    c.wait(a, lambda: a.state() == "HOLDING", 5, "HOLDING while Redis sleeps")
    t_hold = time.time() - t_sleep
    reason = a.status()["reason"] or ""
    check("unreachable" in reason, "HOLDING reason %r" % reason)
    c.wait(a, lambda: not t.is_alive(), 8, "DEBUG SLEEP to end")
    check(done.get("reply") == "OK", "DEBUG SLEEP: %r" % done.get("reply"))
    c.wait(a, lambda: registered(redis, a), 10, "re-registered after the sleep")
    c.wait(a, lambda: first_at(a, "DRAINING") is not None, 10, "the leave to go through")
    # Redis slept from some time after t_sleep for 5 s: no answer could leave us earlier
    check(first_at(a, "DRAINING") >= t_sleep + 5.0, "left %.2fs into the 5 s sleep"
          % (first_at(a, "DRAINING") - t_sleep))
    check(redis.cmd("ZSCORE", OUT, a.host) is not None and a.addr not in redis.smembers(),
          "DRAINING but Redis does not count us out")
    a.feeder.set_busy(5)
    c.result("HOLDING %.1fs into the 5 s sleep (%s), never left while Redis slept; re-registered and left "
             "through the budget after it" % (t_hold, reason.split(": not leaving")[0]))


def acl_redis():
    redis = Redis().start()
    redis.cmd("ACL", "SETUSER", "admin", "on", ">admin-pw-x", "~*", "&*", "+@all")
    redis.cmd("ACL", "SETUSER", "monkey", "on", ">first-Secret-1", "~*", "&*", "+@all")
    redis.cmd("ACL", "SETUSER", "default", "off")
    redis.auth = ("admin", "admin-pw-x")
    redis.reset()
    return redis


def secret_agent(c, redis, pw):
    a = pool_agent(c, "redis://monkey@127.0.0.1:%d/0" % redis.port)
    a.pwfile = os.path.join(a.dir, "redis-password")
    harness.atomic_write(a.pwfile, pw + "\n", mode=0o600)
    with open(a.config) as f:
        text = f.read()
    text = text.replace("heartbeat = 1s\n", "heartbeat = 1s\npassword_file = %s\n" % a.pwfile)
    a.write_config(raw=text)
    return a


@cell("redis", "wrong-password")
def wrong_password(c):
    """The password is rotated in Redis, not yet on the host: WRONGPASS in
    status, an overload holds; the new password and a reload: connected,
    re-registered, the leave goes through. Neither password in the log."""
    redis = acl_redis()
    a = secret_agent(c, redis, "first-Secret-1")
    a.start(wait_serving=False)
    a.wait_state("SERVING", 15)
    wait_until(lambda: redis.smembers() == [a.addr], 5, 0.05, "registered as monkey")
    redis.cmd("ACL", "SETUSER", "monkey", "resetpass", ">second-Secret-2")
    redis.cmd("CLIENT", "KILL", "USER", "monkey")
    c.wait(a, lambda: "WRONGPASS" in (a.status()["pool"]["last_error"] or "") and
           a.status()["pool"]["status"] != "connected", 5, "WRONGPASS in status")
    err = a.status()["pool"]["last_error"]
    a.feeder.set_busy(97)
    c.wait(a, lambda: a.state() == "HOLDING", 5, "HOLDING with AUTH refused")
    c.probe_for(a, 1.5)
    never_left(a)
    harness.atomic_write(a.pwfile, "second-Secret-2\n", mode=0o600)
    t_fix = time.time()
    a.signal(signal.SIGHUP)
    c.wait(a, lambda: a.status()["pool"]["status"] == "connected", 8, "connected with the new password")
    c.wait(a, lambda: registered(redis, a), 5, "re-registered")
    c.wait(a, lambda: first_at(a, "DRAINING") is not None, 8, "the held leave to go through")
    check(first_at(a, "DRAINING") >= t_fix, "left before the fix")
    a.feeder.set_busy(5)
    logs = a.all_logs()
    check("first-Secret-1" not in logs and "second-Secret-2" not in logs, "a password reached the log")
    c.result("status: %s; HOLDING, never left; new password + reload: connected, re-registered, left through "
             "the budget; no password in the log" % err)


@cell("redis", "acl-noperm")
def acl_noperm(c):
    """The ACL takes the scripts away from the agent's user, first on the live
    connection, then at the handshake: each error in status, an overload
    holds; scripts granted again: connected, re-registered, leave granted."""
    redis = acl_redis()
    a = secret_agent(c, redis, "first-Secret-1")
    a.start(wait_serving=False)
    a.wait_state("SERVING", 15)
    wait_until(lambda: redis.smembers() == [a.addr], 5, 0.05, "registered as monkey")
    redis.cmd("ACL", "SETUSER", "monkey", "-@scripting")
    c.wait(a, lambda: "NOPERM" in (a.status()["pool"]["last_error"] or ""), 5,
           "NOPERM (heartbeats refused on the live connection) in status")
    live_err = a.status()["pool"]
    a.feeder.set_busy(97)
    c.wait(a, lambda: a.state() == "HOLDING", 5, "HOLDING with the leave script refused")
    reason = a.status()["reason"] or ""
    check("NOPERM" in reason, "HOLDING reason does not say why: %r" % reason)
    redis.cmd("CLIENT", "KILL", "USER", "monkey")
    c.wait(a, lambda: a.status()["pool"]["status"] != "connected" and
           "NOPERM" in (a.status()["pool"]["last_error"] or ""), 5, "the handshake's NOPERM in status")
    hs_err = a.status()["pool"]["last_error"]
    c.probe_for(a, 1.0)
    never_left(a)
    t_fix = time.time()
    redis.cmd("ACL", "SETUSER", "monkey", "+@scripting")
    c.wait(a, lambda: a.status()["pool"]["status"] == "connected", 12, "connected once the ACL allows scripts")
    c.wait(a, lambda: registered(redis, a), 5, "re-registered")
    c.wait(a, lambda: first_at(a, "DRAINING") is not None, 8, "the held leave to go through")
    check(first_at(a, "DRAINING") >= t_fix, "left before the fix")
    a.feeder.set_busy(5)
    c.result("live connection: status %s, %s; handshake: %s; HOLDING, never left; scripts granted: "
             "re-registered, left through the budget" % (live_err["status"], live_err["last_error"], hs_err))


if __name__ == "__main__":
    if not test_pool.REDIS_SERVER:
        print("FAIL: redis-server is not installed (tests/setup-deps)")
        raise SystemExit(1)
    faultlib.main()
