#!/usr/bin/env python3
"""monkey-proxy-sync against a Sentinel-managed pool: a real redis-server
master, its replica and a redis-sentinel on 127.0.0.1, the syncer started
with --redis sentinel://DEAD,SENTINEL/mymaster and an nginx upstream file
(no nginx needed: the file is what it writes). --interval is a minute, so
only the events subscription (or the resync after a resubscription) can
bring a change in time.

  s1  the syncer asks the sentinels for the master (the first one in the URL
      is dead), routes the pool and subscribes on the master.
  s2  SENTINEL failover: the replica is promoted; the syncer subscribes on
      the new master within 6 s of the sentinel naming it (the old master
      still says "master" for 10 s: the sentinel's +switch-master is what
      moves it) and follows a join and a leave made there.
  s3  the new master is killed: the sentinel promotes the old one (now its
      replica); the syncer follows it again, subscribes there, and follows
      a join made there.

Prints how long each failover took to be followed."""

import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import check, fail, main, make_tmpdir, wait_until  # noqa: E402
from proxyfleet import (ProxySync, Redis, free_port, pool_keys, pool_put, pool_remove,  # noqa: E402
                        read_text, start_group, stop_group)

POOL = "web"
MASTER = "mymaster"
EVENTS = pool_keys(POOL)["events"]
# Each wait is bounded; these are the promises checked, not sleeps.
FOLLOW_TIMEOUT = 20.0
# From the sentinel naming the new master to the syncer subscribed there.
# A gracefully demoted master says "master" until the sentinel reconfigures
# it, 10 s later: only the +switch-master watch makes this bound.
SWITCH_TIMEOUT = 6.0


class Sentinel:
    """One redis-sentinel on 127.0.0.1 watching `master` as MASTER."""

    def __init__(self, master):
        self.port = free_port()
        self.dir = make_tmpdir("monkey-it-sentinel-")
        self.logfile = os.path.join(self.dir, "sentinel.log")
        self.conf = os.path.join(self.dir, "sentinel.conf")
        # failover-timeout 2s: a second failover of the same master may
        # start 2 x that after the first (s3 after s2).
        with open(self.conf, "w") as f:
            f.write("port %d\nbind 127.0.0.1\ndir %s\n"
                    "sentinel monitor %s 127.0.0.1 %d 1\n"
                    "sentinel down-after-milliseconds %s 1000\n"
                    "sentinel failover-timeout %s 2000\n"
                    "sentinel parallel-syncs %s 1\n"
                    % (self.port, self.dir, MASTER, master.port, MASTER, MASTER, MASTER))
        binary = shutil.which("redis-sentinel")
        argv = [binary, self.conf] if binary else ["redis-server", self.conf, "--sentinel"]
        self.proc = start_group(argv, self.logfile)

    def cmd(self, *args):
        import subprocess
        out = subprocess.run(["redis-cli", "-p", str(self.port), "--raw"] + [str(a) for a in args],
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() if out.returncode == 0 else None

    def master_port(self):
        v = self.cmd("SENTINEL", "get-master-addr-by-name", MASTER)
        lines = (v or "").split("\n")
        return int(lines[1]) if len(lines) == 2 and lines[1].isdigit() else None

    def stop(self):
        stop_group(self.proc)

    def log(self):
        return read_text(self.logfile)


def role(redis):
    try:
        return redis.cmd("ROLE").split("\n")[0]
    except Exception:  # noqa: BLE001 - a killed or restarting server
        return None


def numsub(redis):
    """Subscribers of the pool's events channel on this server itself."""
    try:
        v = redis.cmd("PUBSUB", "NUMSUB", EVENTS).split("\n")
        return int(v[1]) if len(v) == 2 else 0
    except Exception:  # noqa: BLE001
        return 0


class Setup:
    def __init__(self):
        self.a = Redis().start()
        self.b = Redis().start()
        # The replica before the sentinel: a sentinel reads the master's
        # INFO (and so learns its replicas) at once when it starts.
        self.b.cmd("REPLICAOF", "127.0.0.1", self.a.port)
        wait_until(lambda: "connected" in self.b.cmd("ROLE"), 10, 0.05, "the replica to sync")
        self.sentinel = Sentinel(self.a)
        wait_until(lambda: self.sentinel.master_port() == self.a.port, 10, 0.05, "the sentinel to answer")
        wait_until(lambda: self.sentinel.cmd("SENTINEL", "replicas", MASTER), 15, 0.1,
                   "the sentinel to know the replica")
        self.dir = make_tmpdir("monkey-it-sync-sentinel-")
        self.upstream = os.path.join(self.dir, "upstream.conf")
        dead = free_port()
        self.url = "sentinel://127.0.0.1:%d,127.0.0.1:%d/%s" % (dead, self.sentinel.port, MASTER)
        self.sync = None

    def start_sync(self):
        self.sync = ProxySync(["--redis", self.url, "--pool", POOL, "--nginx-upstream", self.upstream,
                               "--interval", "1m", "--timeout", "500ms", "--settle", "0",
                               "--log-level", "debug"], name="sync-sentinel").start()

    def by_port(self, port):
        return {self.a.port: self.a, self.b.port: self.b}[port]

    def routed(self):
        text = read_text(self.upstream) if os.path.exists(self.upstream) else ""
        return sorted(line.split()[1].rstrip(";") for line in text.splitlines()
                      if line.strip().startswith("server ") and " down" not in line)

    def wait_routed(self, want, what):
        self.sync.assert_alive()
        wait_until(lambda: self.routed() == sorted(want), FOLLOW_TIMEOUT, 0.05, what)

    def stop(self):
        if self.sync:
            self.sync.stop()
        self.sentinel.stop()
        self.a.stop()
        self.b.stop()

    def dump(self):
        if self.sync:
            print("---- monkey-proxy-sync log ----\n" + self.sync.log()[-4000:])
        print("---- sentinel log ----\n" + self.sentinel.log()[-2500:])


def s_all_sentinel_failovers():
    s = Setup()
    try:
        # s1: through the sentinel (the first in the URL is dead).
        pool_put(s.a, POOL, "app1", "127.0.0.2:8080")
        pool_put(s.a, POOL, "app2", "127.0.0.3:8080")
        s.start_sync()
        s.wait_routed(["127.0.0.2:8080", "127.0.0.3:8080"], "the first sync through the sentinel")
        wait_until(lambda: numsub(s.a) == 1, FOLLOW_TIMEOUT, 0.05, "the syncer to subscribe on the master")
        pool_remove(s.a, POOL, "app2", "127.0.0.3:8080")
        s.wait_routed(["127.0.0.2:8080"], "a leave on the master, by its event")
        print("s1: routed through the sentinel, subscribed on the master", flush=True)

        # The pool's budget (monkeyctl pool budget): a key the syncer does not
        # route by and an event on the channel it follows. It resyncs, routes
        # the same, and neither the key nor the event's JSON trips it.
        syncs = s.sync.log().count("routable")
        s.a.cmd("HSET", pool_keys(POOL)["budget"], "min_serving", "1", "max_unavailable", "3", "how", "set",
                "by", "root (uid 0) on app1", "at", "1796619773940")
        s.a.cmd("PUBLISH", EVENTS, '{"type":"budget","action":"set","pool":"web","host":"app1",'
                '"by":"root (uid 0) on app1","uid":0,"user":"root","old":{"min_serving":1,"max_unavailable":1},'
                '"new":{"min_serving":1,"max_unavailable":3},"changed":true,"at_ms":1796619773940}')
        wait_until(lambda: s.sync.log().count("routable") > syncs, FOLLOW_TIMEOUT, 0.05, "a resync after the budget event")
        s.sync.assert_alive()
        check(s.routed() == ["127.0.0.2:8080"], "the budget changed what is routed: %r" % s.routed())
        print("s1: the pool's budget key and its event: resynced, routing unchanged", flush=True)

        # s2: a graceful failover to the replica.
        wait_until(lambda: s.b.cmd("SISMEMBER", pool_keys(POOL)["serving"], "127.0.0.3:8080") == "0", 10, 0.05,
                   "the replica in sync")
        t0 = time.monotonic()
        wait_until(lambda: s.sentinel.cmd("SENTINEL", "failover", MASTER) == "OK", 10, 0.2, "SENTINEL failover")
        wait_until(lambda: s.sentinel.master_port() == s.b.port and role(s.b) == "master", FOLLOW_TIMEOUT, 0.05,
                   "the replica promoted")
        wait_until(lambda: numsub(s.b) == 1, SWITCH_TIMEOUT, 0.05, "the syncer to subscribe on the new master")
        t1 = time.monotonic()
        pool_put(s.b, POOL, "app3", "127.0.0.4:8080")
        s.wait_routed(["127.0.0.2:8080", "127.0.0.4:8080"], "a join on the new master")
        pool_remove(s.b, POOL, "app1", "127.0.0.2:8080")
        s.wait_routed(["127.0.0.4:8080"], "a leave on the new master")
        print("s2: SENTINEL failover: subscribed on the new master %.2f s after the command, "
              "a join and a leave there followed %.2f s later" % (t1 - t0, time.monotonic() - t1), flush=True)

        # s3: the new master dies; the sentinel promotes the old one.
        wait_until(lambda: role(s.a) == "slave" and "connected" in s.a.cmd("ROLE"), FOLLOW_TIMEOUT, 0.05,
                   "the old master to replicate the new one")
        wait_until(lambda: s.a.cmd("SISMEMBER", pool_keys(POOL)["serving"], "127.0.0.4:8080") == "1", 10, 0.05,
                   "the old master in sync")
        t0 = time.monotonic()
        s.b.stop()
        wait_until(lambda: s.sentinel.master_port() == s.a.port and role(s.a) == "master", 30, 0.1,
                   "the sentinel to promote the old master")
        t1 = time.monotonic()
        wait_until(lambda: numsub(s.a) == 1, SWITCH_TIMEOUT, 0.05, "the syncer to subscribe on the promoted master")
        t2 = time.monotonic()
        pool_put(s.a, POOL, "app1", "127.0.0.2:8080")
        s.wait_routed(["127.0.0.2:8080", "127.0.0.4:8080"], "a join on the promoted master")
        print("s3: master killed: promoted %.2f s later, subscribed there %.2f s after that, "
              "a join followed %.2f s later" % (t1 - t0, t2 - t1, time.monotonic() - t2), flush=True)
        s.sync.assert_alive()
        log = s.sync.log()
        check("is at 127.0.0.1:%d" % s.b.port in log and "is at 127.0.0.1:%d" % s.a.port in log,
              "the log does not say where the sentinel found the master")
    except Exception:
        s.dump()
        raise
    finally:
        s.stop()


if __name__ == "__main__":
    if not shutil.which("redis-server") or not shutil.which("redis-cli"):
        fail("redis-server and redis-cli are needed (tests/setup-deps)")
    main([s_all_sentinel_failovers])
