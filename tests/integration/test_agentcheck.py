#!/usr/bin/env python3
"""HAProxy agent-check with the agent's default address, against a real
haproxy 2.6 whose server is on 127.0.0.3 with no agent-addr: HAProxy
connects agent-check to the server's own address, and a refused agent
connection is ignored silently (a drain then never reaches it).

  a1  [proxy] without agent_check_address, [pool] address 127.0.0.3:P:
      the agent listens on 127.0.0.3 (status says so, no warning); an
      operator's drain shows MAINT in HAProxy, and an overload's DRAINING
      (a real remediation through the EC2 double, drain grace from
      [pool]) shows DRAIN in `show servers state` and `show stat`, with
      traffic going to the other server; 0 failed requests.
  a2  agent_check_address = 127.0.0.1 written by hand behind the same
      server: the agent warns at start (log and status, text and JSON),
      and HAProxy indeed never sees the drain: what the warning says."""

import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "doubles"))
from harness import Agent, check, describe, main, wait_until  # noqa: E402
from proxyfleet import HAProxy, Load, Redis, free_port, mode_of, nginx_app  # noqa: E402
from aws_double import AwsDouble  # noqa: E402

SERVER = "127.0.0.3"   # the host under test, as HAProxy knows it
OTHER = "127.0.0.2"    # a second server, so traffic has somewhere to go
AK = "AKIAAGENTCHECK000001"
SECRET = "agentCheckSecretKey/0123456789abcdef"
IID = "i-0123456789abcdef0"


def agent_config(redis, port, agent_port, aws, extra_proxy=""):
    return ("[pool]\nredis = %s\nname = ac\naddress = %s:%d\nmin_serving = 0\nmax_unavailable = 1\ndrain = 3s\n"
            "lease = 3s\nheartbeat = 1s\n\n"
            "[proxy]\nagent_check_port = %d\n%s\n"
            "[aws]\nregion = us-east-1\ninstance_id = %s\nendpoint_url = %s\nimds_url = %s\n\n"
            "[remedy]\nladder = reboot-instance\nreboot_timeout = 30s\n"
            % (redis.url(), SERVER, port, agent_port, extra_proxy, IID, aws.endpoint_url, aws.url))


def haproxy_servers(port, agent_port):
    # no agent-addr: HAProxy asks the server's own address, as in production
    return ("    server s1 %s:%d check inter 500ms agent-check agent-port %d agent-inter 300ms\n"
            "    server s2 %s:%d check inter 500ms\n" % (SERVER, port, agent_port, OTHER, port))


def s1_mode(hx):
    return mode_of(hx.servers()["s1"]["admin"])


def s1_stat_status(hx):
    """The status column of `show stat` for be/s1 ("UP", "DRAIN", "MAINT", ...)."""
    text = hx.cli("show stat")
    head = None
    for ln in text.splitlines():
        if ln.startswith("# "):
            head = ln[2:].split(",")
            continue
        f = ln.split(",")
        if head and len(f) >= len(head) and f[0] == "be" and f[1] == "s1":
            return dict(zip(head, f))["status"]
    return None


def start(port, agent_port, redis, aws, extra_proxy=""):
    a = Agent("ac-default", host="app3", window="1s", interval="100ms",
              extra=agent_config(redis, port, agent_port, aws, extra_proxy))
    a.env_extra = {"AWS_ACCESS_KEY_ID": AK, "AWS_SECRET_ACCESS_KEY": SECRET, "HOME": a.dir}
    a.start(timeout=10)
    return a


def a1_default_address_reaches_haproxy():
    port = free_port((SERVER, OTHER))
    agent_port = free_port((SERVER,))
    apps = [nginx_app("app3", SERVER, port).start(), nginx_app("app2", OTHER, port).start()]
    redis = Redis().start()
    agent = hx = load = None
    try:
        with AwsDouble(credentials={AK: (SECRET, None)}) as aws:
            agent = start(port, agent_port, redis, aws)
            ac = agent.status().get("agent_check") or {}
            check(ac.get("address") == SERVER and ac.get("from") == "[pool] address" and ac.get("reachable") is True
                  and ac.get("warning") is None, "status agent_check: %r" % ac)
            check("agent-check" not in "".join(ln for ln in agent.log_text().splitlines() if ln.startswith("warning")),
                  "a warning at start: %r" % agent.log_text()[-600:])
            print("   agent-check on %s:%d (from %s), reachable" % (ac["address"], ac["port"], ac["from"]))

            hx = HAProxy(haproxy_servers(port, agent_port)).start()
            load = Load(hx.port, max_seconds=25).start()
            for n in ("app3", "app2"):
                load.wait_host(n, 0, 5.0)

            # an operator's drain: the agent answers maint, HAProxy follows
            cp = agent.ctl("drain", "agent-check", "test")
            check(cp.returncode == 0, "monkeyctl drain: " + describe(cp))
            wait_until(lambda: s1_mode(hx) == "maint", 2.0, 0.05, "HAProxy to show s1 in MAINT after the drain")
            cp = agent.ctl("resume")
            check(cp.returncode == 0, "monkeyctl resume: " + describe(cp))
            agent.wait_state("SERVING", 10)
            wait_until(lambda: s1_mode(hx) == "ready", 3.0, 0.05, "HAProxy to show s1 ready after the resume")
            print("   monkeyctl drain -> MAINT, resume -> ready")

            # an overload: DRAINING (3 s of grace) must show as DRAIN
            agent.feeder.set_busy(95)
            agent.wait_state("DRAINING", 10)
            t_draining = time.monotonic()
            wait_until(lambda: s1_mode(hx) == "drain", 2.0, 0.05, "HAProxy to show s1 as DRAIN")
            stat = s1_stat_status(hx)
            check(stat is not None and stat.startswith("DRAIN"), "show stat: s1 status %r, want DRAIN" % stat)
            print("   DRAINING -> %s in show stat after %.2f s" % (stat, time.monotonic() - t_draining))
            time.sleep(1.0)
            late = load.count("app3", since=t_draining + 1.0)
            check(late == 0, "app3 got %d new requests while draining" % late)
            check(load.count("app2", since=t_draining + 1.0) > 0, "no traffic went to app2 meanwhile")
            wait_until(lambda: aws.reboots() == [IID], 10, what="the reboot after the drain")
            load.stop()
            bad = load.failures()
            check(not bad, "%d of %d requests failed: %r" % (len(bad), load.total(), bad[:3]))
            print("   %d requests through haproxy, 0 failed" % load.total())
    except Exception:
        if agent:
            agent.dump_log()
        if hx:
            print(hx.log()[-1500:])
        raise
    finally:
        for t in (load, hx, agent):
            if t is not None:
                (t.close if isinstance(t, Agent) else t.stop)()
        for x in apps + [redis]:
            x.stop()


def a2_written_address_warned():
    port = free_port((SERVER, OTHER))
    agent_port = free_port((SERVER, "127.0.0.1"))
    apps = [nginx_app("app3", SERVER, port).start(), nginx_app("app2", OTHER, port).start()]
    redis = Redis().start()
    agent = hx = None
    try:
        with AwsDouble(credentials={AK: (SECRET, None)}) as aws:
            agent = start(port, agent_port, redis, aws, extra_proxy="agent_check_address = 127.0.0.1\n")
            warnings = [ln for ln in agent.log_text().splitlines()
                        if ln.startswith("warning: agent-check") and SERVER in ln and "agent-addr 127.0.0.1" in ln]
            check(warnings, "no start-up warning about the agent-check address: %r" % agent.log_text()[-800:])
            ac = agent.status().get("agent_check") or {}
            check(ac.get("reachable") is False and SERVER in (ac.get("warning") or ""), "status agent_check: %r" % ac)
            cp = agent.ctl("status")
            check("WARNING: HAProxy connects agent-check" in cp.stdout, "monkeyctl status (text): %r" % cp.stdout)
            print("   %s" % warnings[0][:160])

            # ... and it is true: HAProxy never hears the drain
            hx = HAProxy(haproxy_servers(port, agent_port)).start()
            wait_until(lambda: hx.servers()["s1"]["op"] == 2, 5.0, 0.05, "s1 up in HAProxy")
            cp = agent.ctl("drain", "agent-check", "test")
            check(cp.returncode == 0, "monkeyctl drain: " + describe(cp))
            time.sleep(1.5)  # five agent-inter periods
            check(s1_mode(hx) == "ready", "HAProxy saw the drain through 127.0.0.1: %r" % hx.servers()["s1"])
            print("   monkeyctl drain: HAProxy still shows s1 ready, as warned")
    except Exception:
        if agent:
            agent.dump_log()
        raise
    finally:
        for t in (hx, agent):
            if t is not None:
                (t.close if isinstance(t, Agent) else t.stop)()
        for x in apps + [redis]:
            x.stop()


if __name__ == "__main__":
    main([a1_default_address_reaches_haproxy, a2_written_address_warned])
