#!/usr/bin/env python3
"""Proxies follow the pool, against real haproxy 2.6 and nginx, with nginx
apps on 127.0.0.2-4 that answer with their own name, under a bounded HTTP
load (4 threads, Connection: close) that records which app answered each
request:

  h1  agent-check: monkeyctl drain / resume on one host's monkeyd moves
      HAProxy within one agent-inter; 0 failed requests.
  h2  agent-check: an overload cycle (ladder = none) shows DRAINING as drain in
      HAProxy, then the host comes back (drain grace from [pool]).
  h3  runtime API: monkey-proxy-sync fills server-template slots from the
      Redis keys (pool.h data model, written directly): leave -> drain ->
      maint, rejoin, lease expiry without an event, Redis restarted empty
      (HAProxy keeps its servers, the syncer resubscribes); 0 failed.
  h4  runtime API with real monkeyd [pool] agents: drain/resume through
      Redis.
  h5  nginx: monkey-proxy-sync renders the upstream file and reloads a real
      nginx proxy; leave/rejoin; an empty pool does not empty the file.
  h6  monkey-proxy-sync's options follow monkeyd's rules: durations in
      monkeyd.conf's grammar (--interval 1m30s), and --password-file read
      by monkeyd's secret reader (a group-readable or symlinked file is
      refused, naming it; a 0600 one authenticates).
  h7  one Redis URL grammar: with unix:///PATH?db=2, monkeyd's config
      check takes it, its pool joins in DB 2 over the socket, and
      monkey-proxy-sync reads DB 2 over the same socket.

Prints the measured figures: time from the leave to the last request the
leaving host received, and from the rejoin to its first request."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Agent, TestFailure, check, describe, fail, main, make_tmpdir, wait_until  # noqa: E402
from proxyfleet import (HAProxy, Load, ProxySync, Redis, free_port, mode_of, nginx_app,  # noqa: E402
                        nginx_proxy, pool_put, pool_remove, read_text)

APP_ADDRS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
NAMES = ("app1", "app2", "app3")
SCENARIO_BUDGET = 30.0
FIGURES = []


def figure(label, seconds):
    line = "figure: %-58s %7.3f s" % (label, seconds)
    FIGURES.append(line)
    print(line, flush=True)


class Budget:
    def __init__(self, seconds=SCENARIO_BUDGET):
        self.t0 = time.monotonic()
        self.seconds = seconds

    def check(self, where):
        used = time.monotonic() - self.t0
        check(used < self.seconds, "scenario over its %.0f s budget at %s (%.1f s)" % (self.seconds, where, used))


def start_apps():
    port = free_port(APP_ADDRS)
    apps = [nginx_app(n, a, port).start() for n, a in zip(NAMES, APP_ADDRS)]
    return port, apps


def stop_all(*things):
    for t in things:
        if t is None:
            continue
        if isinstance(t, (list, tuple)):
            stop_all(*t)
        elif isinstance(t, Agent):
            t.close()
        elif isinstance(t, Load):
            t.stop()
        else:
            t.stop()


def assert_no_failures(load, what):
    bad = load.failures()
    check(not bad, "%s: %d of %d requests failed, first: %r" % (what, len(bad), load.total(), bad[:3]))
    print("%s: %d requests, 0 failed, per host %s" % (what, load.total(), load.counts()), flush=True)


def measure_leave(load, host, t_leave, settle, quiet, what):
    """After a leave at t_leave: the host must get nothing that started
    later than settle s after the leave, for `quiet` s. Returns the time from
    the leave to the last request it got."""
    time.sleep(settle + quiet)
    late = load.count(host, since=t_leave + settle)
    check(late == 0, "%s: %s still got %d requests more than %.1f s after the leave" % (what, host, late, settle))
    last = load.last_start(host)
    check(last is not None, "%s: %s never got a request" % (what, host))
    return max(0.0, last - t_leave)


def haproxy_mode(hx, srv):
    return mode_of(hx.servers()[srv]["admin"])


PROXY_EXTRA = """\
[proxy]
agent_check_port = {port}
agent_check_address = 127.0.0.1

[remedy]
ladder = none
"""


def agent_check_line(i, addr, port, agent_port):
    return ("    server s%d %s:%d check inter 500ms agent-check agent-addr 127.0.0.1 agent-port %d "
            "agent-inter 300ms\n" % (i, addr, port, agent_port))


def h1_agent_check_drain_resume():
    b = Budget()
    port, apps = start_apps()
    agents, hx, load = [], None, None
    try:
        lines = ""
        for i, (name, addr) in enumerate(zip(NAMES, APP_ADDRS), 1):
            ap = free_port()
            a = Agent("ac-%s" % name, host=name, extra=PROXY_EXTRA.format(port=ap) + "budget = none\n")
            agents.append(a)
            a.start()
            lines += agent_check_line(i, addr, port, ap)
        hx = HAProxy(lines).start()
        load = Load(hx.port, max_seconds=20).start()
        for n in NAMES:
            load.wait_host(n, 0, 5.0)
        time.sleep(0.5)
        b.check("warm-up")

        t_drain = time.monotonic()
        cp = agents[0].ctl("drain", "proxy", "test")
        check(cp.returncode == 0, "monkeyctl drain: " + describe(cp))
        took = measure_leave(load, "app1", t_drain, settle=1.0, quiet=1.0, what="agent-check drain")
        figure("agent-check: monkeyctl drain -> last request on the host", took)
        check(took <= 1.0, "app1 got requests %.2f s after the drain" % took)
        check(haproxy_mode(hx, "s1") == "maint", "s1 not in maint after drain: %r" % hx.servers()["s1"])
        for n in ("app2", "app3"):
            check(load.count(n, since=t_drain + 1.0) > 0, "%s got no traffic while app1 was out" % n)
        b.check("drain")

        t_resume = time.monotonic()
        cp = agents[0].ctl("resume")
        check(cp.returncode == 0, "monkeyctl resume: " + describe(cp))
        first = load.wait_host("app1", t_resume, 3.0, "app1 to get traffic again after resume")
        figure("agent-check: monkeyctl resume -> first request on the host", first - t_resume)
        check(haproxy_mode(hx, "s1") == "ready", "s1 not ready after resume: %r" % hx.servers()["s1"])
        time.sleep(0.5)
        load.stop()
        assert_no_failures(load, "agent-check drain/resume")
        b.check("end")
    except Exception:
        for a in agents:
            a.dump_log()
        if hx:
            print(hx.log()[-2000:])
        raise
    finally:
        stop_all(load, hx, agents, apps)


POOL_EXTRA = """\
[pool]
redis = {url}
name = {pool}
address = {address}
min_serving = {min_serving}
max_unavailable = 1
drain = {drain}
lease = 3s
heartbeat = 1s
"""


def h2_agent_check_overload_cycle():
    """DRAINING is only visible with a drain grace, which comes from [pool]."""
    b = Budget()
    redis = Redis().start()
    port, apps = start_apps()
    agent, hx, load = None, None, None
    try:
        ap = free_port()
        extra = PROXY_EXTRA.format(port=ap) + POOL_EXTRA.format(url=redis.url(), pool="ovl", address="%s:%d" % (APP_ADDRS[0], port),
                                                                min_serving=0, drain="3s")
        agent = Agent("ovl-app1", host="app1", extra=extra, window="1s", interval="100ms")
        agent.start(timeout=10)
        lines = agent_check_line(1, APP_ADDRS[0], port, ap)
        lines += "    server s2 %s:%d check inter 500ms\n    server s3 %s:%d check inter 500ms\n" % (
            APP_ADDRS[1], port, APP_ADDRS[2], port)
        hx = HAProxy(lines).start()
        load = Load(hx.port, max_seconds=20).start()
        for n in NAMES:
            load.wait_host(n, 0, 5.0)
        b.check("warm-up")

        t_busy = agent.feeder.set_busy(95)
        _, waited = agent.wait_state("DRAINING", 8.0)
        t_draining = time.monotonic()
        agent.feeder.set_busy(10)
        print("overload -> DRAINING after %.2f s" % (t_draining - t_busy), flush=True)
        wait_until(lambda: haproxy_mode(hx, "s1") == "drain", 1.5, 0.05, "HAProxy to show s1 as drain")
        figure("agent-check: DRAINING -> HAProxy shows drain", time.monotonic() - t_draining)
        check(agent.state() == "DRAINING", "agent left DRAINING before HAProxy was checked: %s" % agent.state())
        time.sleep(1.5)
        late = load.count("app1", since=t_draining + 1.0)
        check(late == 0, "app1 got %d requests while DRAINING" % late)
        figure("agent-check: DRAINING -> last request on the host",
               max(0.0, (load.last_start("app1") or t_draining) - t_draining))

        agent.wait_state("SERVING", 10.0)
        t_back = time.monotonic()
        load.wait_host("app1", t_back - 0.3, 3.0, "app1 to get traffic after the cycle")
        check(haproxy_mode(hx, "s1") == "ready", "s1 not ready after the cycle: %r" % hx.servers()["s1"])
        load.stop()
        assert_no_failures(load, "agent-check overload cycle")
        b.check("end")
    except Exception:
        if agent:
            agent.dump_log()
        raise
    finally:
        stop_all(load, hx, agent, apps, redis)


TEMPLATE = "    server-template s 1-4 127.0.0.1:1 check inter 500ms disabled\n"


def ready_slots(hx):
    return {v["addr"]: k for k, v in hx.servers().items() if mode_of(v["admin"]) == "ready"}


def h3_runtime_api_keys():
    b = Budget()
    redis = Redis().start()
    port, apps = start_apps()
    hx = sync = load = None
    addr = {n: "%s:%d" % (a, port) for n, a in zip(NAMES, APP_ADDRS)}
    try:
        for n in NAMES:
            pool_put(redis, "web", n, addr[n])
        hx = HAProxy(TEMPLATE).start()
        sync = ProxySync(["--redis", redis.url(), "--pool", "web", "--haproxy-socket", hx.socket, "--backend", "be",
                          "--drain-grace", "1s", "--interval", "5s", "--settle", "6s", "--log-level", "debug"]).start()
        wait_until(lambda: len(ready_slots(hx)) == 3, 5.0, 0.05, "three ready slots")
        load = Load(hx.port, max_seconds=25).start()
        for n in NAMES:
            load.wait_host(n, 0, 5.0)
        time.sleep(0.3)
        slot1 = ready_slots(hx)[addr["app1"]]
        b.check("warm-up")

        # Leave: SREM + PUBLISH, as the agent's leave script does.
        t_leave = time.monotonic()
        pool_remove(redis, "web", "app1", addr["app1"])
        took = measure_leave(load, "app1", t_leave, settle=0.5, quiet=1.0, what="runtime-API leave")
        figure("runtime API: leave (SREM+PUBLISH) -> last request on the host", took)
        check(took <= 1.0, "app1 got requests %.2f s after leaving" % took)
        # Drain first, then maint once the grace is over.
        wait_until(lambda: haproxy_mode(hx, slot1) == "maint", 4.0, 0.1, "%s to go from drain to maint" % slot1)
        # proxy-sync logs the change after HAProxy's answer: the log may trail the mode a moment
        try:
            wait_until(lambda: "draining" in sync.log() and "now maint" in sync.log(), 3.0, 0.05,
                       "drain-then-maint in proxy-sync's log")
        except TestFailure:
            fail("no drain-then-maint in the log:\n" + sync.log()[-1500:])
        b.check("leave")

        t_join = time.monotonic()
        pool_put(redis, "web", "app1", addr["app1"])
        first = load.wait_host("app1", t_join, 3.0, "app1 to get traffic after rejoining")
        figure("runtime API: rejoin (SADD+PUBLISH) -> first request on the host", first - t_join)
        check(ready_slots(hx).get(addr["app1"]) == slot1, "app1 did not get its old slot back: %r" % ready_slots(hx))
        b.check("rejoin")

        # A lease that runs out with no event (a dead agent): the syncer
        # comes back right after the soonest lease expiry, not at --interval.
        pool_put(redis, "web", "app3", addr["app3"], lease_ms=1200)
        t_set = time.monotonic()
        wait_until(lambda: redis.cmd("EXISTS", "monkey:{web}:lease:app3") == "0", 3.0, 0.02, "the app3 lease to expire")
        t_expired = time.monotonic()
        took = measure_leave(load, "app3", t_expired, settle=0.6, quiet=0.8, what="lease expiry")
        figure("runtime API: lease expiry (no event) -> last request on the host", took)
        check(t_expired - t_set < 2.0, "lease took %.1f s to expire" % (t_expired - t_set))

        pool_put(redis, "web", "app3", addr["app3"])
        load.wait_host("app3", time.monotonic(), 5.0, "app3 back before the Redis restart")

        # Redis restarts empty (no persistence): HAProxy keeps its servers
        # meanwhile, and the syncer reconnects, resubscribes and resyncs.
        rport = redis.port
        redis.stop()
        t_down = time.monotonic()
        time.sleep(0.5)
        redis = Redis(port=rport).start()
        time.sleep(0.5)
        check(load.count("app1", since=t_down) > 0 and load.count("app2", since=t_down) > 0,
              "traffic stopped while Redis was down or empty")
        # The agents come back one by one: app1 first. The servers Redis
        # does not know yet stay routed (--settle 6s), so app1 does not get
        # the whole site.
        pool_put(redis, "web", "app1", addr["app1"])
        t_partial = time.monotonic()
        wait_until(lambda: "Redis does not know" in sync.log(), 3.0, 0.05,
                   "the syncer to keep the servers Redis forgot")
        time.sleep(0.8)
        check(load.count("app2", since=t_partial + 0.3) > 0 and load.count("app3", since=t_partial + 0.3) > 0,
              "app2/app3 were drained while Redis did not know them yet: %r" % load.counts(since=t_partial))
        # app2's agent is back but out of the pool on purpose (its lease is
        # live, it did not join): drained at once, not after --settle.
        t_leave = time.monotonic()
        redis.cmd("SET", "monkey:{web}:lease:app2", "1", "PX", 60000)
        redis.cmd("PUBLISH", "monkey:{web}:events", "{}")
        took = measure_leave(load, "app2", t_leave, settle=0.5, quiet=0.8, what="an agent back but out")
        figure("runtime API: after a Redis restart, an agent back but out -> last request", took)
        # app3 never comes back (a host that died meanwhile): removed once
        # the settle time is over.
        wait_until(lambda: "still unknown to Redis after" in sync.log(), 9.0, 0.05, "the settle time to end for app3")
        t_gone = time.monotonic()
        figure("runtime API: Redis restarted, a host never re-registers -> removed after", t_gone - t_partial)
        measure_leave(load, "app3", t_gone, settle=0.5, quiet=0.8, what="forgotten host removed")
        t_back = time.monotonic()
        for n in ("app2", "app3"):
            pool_put(redis, "web", n, addr[n])
        first = load.wait_host("app3", t_back, 8.0, "app3 to be routed after Redis came back")
        figure("runtime API: Redis back (re-registered) -> first request on app3", first - t_back)
        load.wait_host("app2", t_back, 8.0, "app2 to be routed again")
        wait_until(lambda: "Subscribed" in sync.log().split("Lost the Redis events subscription")[-1], 5.0, 0.05,
                   "the syncer to subscribe again")

        load.stop()
        sync.assert_alive()
        assert_no_failures(load, "runtime-API leave/rejoin/expiry/Redis restart")
        b.check("end")
    except Exception:
        if sync:
            print("---- monkey-proxy-sync log ----\n" + sync.log()[-3000:])
        if hx:
            print("---- haproxy log ----\n" + hx.log()[-1500:])
        raise
    finally:
        stop_all(load, sync, hx, apps, redis)


def h4_runtime_api_agents():
    b = Budget()
    redis = Redis().start()
    port, apps = start_apps()
    agents, hx, sync, load = [], None, None, None
    addr = {n: "%s:%d" % (a, port) for n, a in zip(NAMES, APP_ADDRS)}
    try:
        for n in NAMES:
            a = Agent("pool-%s" % n, host=n, extra=POOL_EXTRA.format(url=redis.url(), pool="fleet", address=addr[n],
                                                                      min_serving=1, drain="1s"))
            agents.append(a)
            a.start(timeout=10)
        wait_until(lambda: redis.cmd("SCARD", "monkey:{fleet}:serving") == "3", 5.0, 0.05,
                   "the three agents to be in monkey:{fleet}:serving")
        hx = HAProxy(TEMPLATE).start()
        sync = ProxySync(["--redis", redis.url(), "--pool", "fleet", "--haproxy-socket", hx.socket, "--backend", "be",
                          "--drain-grace", "1s"]).start()
        wait_until(lambda: len(ready_slots(hx)) == 3, 5.0, 0.05, "three ready slots")
        load = Load(hx.port, max_seconds=25).start()
        for n in NAMES:
            load.wait_host(n, 0, 5.0)
        time.sleep(0.3)
        b.check("warm-up")

        t_drain = time.monotonic()
        cp = agents[1].ctl("drain", "proxy", "sync", "test")
        check(cp.returncode == 0, "monkeyctl drain: " + describe(cp))
        took = measure_leave(load, "app2", t_drain, settle=1.0, quiet=1.0, what="runtime-API drain")
        figure("runtime API + monkeyd: monkeyctl drain -> last request", took)
        check(took <= 1.0, "app2 got requests %.2f s after the drain" % took)
        b.check("drain")

        t_resume = time.monotonic()
        cp = agents[1].ctl("resume")
        check(cp.returncode == 0, "monkeyctl resume: " + describe(cp))
        first = load.wait_host("app2", t_resume, 5.0, "app2 to get traffic after resume")
        figure("runtime API + monkeyd: monkeyctl resume -> first request", first - t_resume)
        load.stop()
        sync.assert_alive()
        assert_no_failures(load, "runtime-API with agents")
        b.check("end")
    except Exception:
        for a in agents:
            a.dump_log()
        if sync:
            print("---- monkey-proxy-sync log ----\n" + sync.log()[-3000:])
        raise
    finally:
        stop_all(load, sync, hx, agents, apps, redis)


def h5_nginx_upstream():
    b = Budget()
    redis = Redis().start()
    port, apps = start_apps()
    proxy = sync = load = None
    addr = {n: "%s:%d" % (a, port) for n, a in zip(NAMES, APP_ADDRS)}
    try:
        for n in NAMES:
            pool_put(redis, "web", n, addr[n])
        pport = free_port()
        proxy = nginx_proxy(pport)
        upstream = proxy.upstream_file
        args = ["--redis", redis.url(), "--pool", "web", "--nginx-upstream", upstream, "--log-level", "debug"]
        # --once without a reload command renders the first file, which
        # nginx needs before it can start.
        cp = ProxySync(args, name="nginx-once").once()
        check(cp.returncode == 0, "monkey-proxy-sync --once: " + describe(cp))
        sync = ProxySync(args + ["--nginx-reload", proxy.reload_command()], name="nginx-sync")
        text = read_text(upstream)
        for n in NAMES:
            check("server %s;" % addr[n] in text, "%s missing from the first render:\n%s" % (n, text))
        proxy.start()
        sync.start()
        load = Load(pport, max_seconds=25).start()
        for n in NAMES:
            load.wait_host(n, 0, 5.0)
        time.sleep(0.3)
        b.check("warm-up")

        t_leave = time.monotonic()
        pool_remove(redis, "web", "app2", addr["app2"])
        wait_until(lambda: addr["app2"] not in read_text(upstream), 2.0, 0.02, "app2 to leave the upstream file")
        t_file = time.monotonic()
        took = measure_leave(load, "app2", t_leave, settle=1.0, quiet=1.0, what="nginx leave")
        figure("nginx: leave -> file rewritten", t_file - t_leave)
        figure("nginx: leave -> last request on the host", took)
        check(took <= 1.0, "app2 got requests %.2f s after leaving" % took)
        b.check("leave")

        t_join = time.monotonic()
        pool_put(redis, "web", "app2", addr["app2"])
        first = load.wait_host("app2", t_join, 3.0, "app2 to get traffic after rejoining")
        figure("nginx: rejoin -> first request on the host", first - t_join)
        b.check("rejoin")

        # Everything gone at once (a flushed Redis): the file keeps its
        # servers and traffic goes on.
        before = read_text(upstream)
        redis.cmd("DEL", "monkey:{web}:serving")
        redis.cmd("PUBLISH", "monkey:{web}:events", "{}")
        wait_until(lambda: "no routable member" in sync.log(), 2.0, 0.05, "the syncer to notice the empty pool")
        check(read_text(upstream) == before, "the upstream file changed on an empty pool")
        t_empty = time.monotonic()
        time.sleep(0.8)
        check(sum(load.counts(since=t_empty).values()) > 0, "no traffic after an empty pool was held")

        load.stop()
        sync.assert_alive()
        assert_no_failures(load, "nginx leave/rejoin")
        reloads = sync.log().count("Reloaded nginx")
        check(reloads == 2, "expected 2 reloads (leave, rejoin), got %d:\n%s" % (reloads, sync.log()[-2000:]))
        b.check("end")
    except Exception:
        if sync:
            print("---- monkey-proxy-sync log ----\n" + sync.log()[-3000:])
        if proxy:
            print("---- nginx proxy log ----\n" + proxy.log()[-1500:])
        raise
    finally:
        stop_all(load, sync, proxy, apps, redis)


def h6_options_as_monkeyd():
    redis = Redis().start()
    try:
        pool_put(redis, "web", "app1", "127.0.0.2:8080")
        d = make_tmpdir("monkey-it-sync-opts-")
        upstream = os.path.join(d, "upstream.conf")
        base = ["--redis", redis.url(), "--pool", "web", "--nginx-upstream", upstream]

        # The duration grammar is monkeyd's parse_duration: a compound
        # duration is taken (the private parser refused it).
        cp = ProxySync(base + ["--interval", "1m30s", "--settle", "1m 30s"], name="sync-dur").once()
        check(cp.returncode == 0, "--interval 1m30s: " + describe(cp))
        check("server 127.0.0.2:8080;" in read_text(upstream), "--once did not render:\n" + read_text(upstream))
        # Still at most a day: none of these is useful longer.
        cp = ProxySync(base + ["--interval", "25h"], name="sync-dur").once()
        check(cp.returncode == 2 and "invalid duration '25h' for --interval" in cp.stderr, "--interval 25h: " + describe(cp))

        # The password file is read by monkeyd's secret reader, with its
        # rules: a file group or others can read is refused, naming it, and
        # the password is neither used nor shown.
        password = "pxs-s3cret-pw"
        redis.cmd("CONFIG", "SET", "requirepass", password)
        pw = os.path.join(d, "redis-password")
        with open(pw, "w") as f:
            f.write(password + "\n")
        os.chmod(pw, 0o640)
        cp = ProxySync(base + ["--password-file", pw], name="sync-pw").once()
        check(cp.returncode != 0, "a group-readable --password-file was used: " + describe(cp))
        check(pw in cp.stderr and "group/others" in cp.stderr and "chmod 600" in cp.stderr,
              "the refusal does not name the file and why: " + describe(cp))
        check(password not in cp.stdout + cp.stderr, "the password is in the output")
        link = os.path.join(d, "redis-password.link")
        os.chmod(pw, 0o600)
        os.symlink(pw, link)
        cp = ProxySync(base + ["--password-file", link], name="sync-pw").once()
        check(cp.returncode != 0 and link in cp.stderr and "symlink" in cp.stderr,
              "a symlinked --password-file was followed: " + describe(cp))
        # The same file at mode 0600 authenticates.
        cp = ProxySync(base + ["--password-file", pw], name="sync-pw").once()
        check(cp.returncode == 0, "a 0600 --password-file: " + describe(cp))
    finally:
        stop_all(redis)


class RedisDb:
    """One DB of a Redis, for pool_put and cmd."""

    def __init__(self, redis, db):
        self.redis, self.db = redis, db

    def cmd(self, *args):
        return self.redis.cmd("-n", self.db, *args)


def h7_unix_socket_db():
    redis = Redis().start()
    port, apps = start_apps()
    agent = None
    try:
        db2 = RedisDb(redis, 2)
        url = redis.unix_url(db=2)
        # A decoy in DB 0: whoever read the wrong DB would route to it.
        pool_put(redis, "web", "decoy", "127.0.0.9:8080")
        addr = "%s:%d" % (APP_ADDRS[0], port)
        agent = Agent("pool-unix-db", host=NAMES[0],
                      extra=POOL_EXTRA.format(url=url, pool="web", address=addr, min_serving=0, drain="1s"))
        agent.start(timeout=10)
        wait_until(lambda: db2.cmd("SISMEMBER", "monkey:{web}:serving", addr) == "1", 8.0, 0.05,
                   "monkeyd to join the pool in DB 2 over %s" % url)
        check(redis.cmd("SISMEMBER", "monkey:{web}:serving", addr) == "0", "monkeyd joined in DB 0")

        d = make_tmpdir("monkey-it-sync-db-")
        upstream = os.path.join(d, "upstream.conf")
        cp = ProxySync(["--redis", url, "--pool", "web", "--nginx-upstream", upstream], name="sync-db").once()
        check(cp.returncode == 0, "monkey-proxy-sync --redis %s: %s" % (url, describe(cp)))
        text = read_text(upstream)
        check("server %s;" % addr in text and "127.0.0.9" not in text,
              "the upstream is not DB 2's pool:\n" + text)
    except Exception:
        if agent:
            agent.dump_log()
        raise
    finally:
        stop_all(agent, apps, redis)


if __name__ == "__main__":
    t0 = time.monotonic()
    try:
        main([h1_agent_check_drain_resume, h2_agent_check_overload_cycle, h3_runtime_api_keys,
              h4_runtime_api_agents, h5_nginx_upstream, h6_options_as_monkeyd,
              h7_unix_socket_db])
    finally:
        if FIGURES:
            print("figures (%.1f s in all):\n  %s" % (time.monotonic() - t0, "\n  ".join(FIGURES)), flush=True)
