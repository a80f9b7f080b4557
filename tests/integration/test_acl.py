#!/usr/bin/env python3
"""The minimal Redis ACL (conf/redis-acl.conf) is enough, and nothing
more is needed: a real redis-server whose default user is off and whose
users are exactly the file's lines runs the whole cycle:

- monkeyd as `monkey-agent` (user in the URL, password from a 0600 file):
  join, heartbeats, `monkeyctl pool`, `monkeyctl pool budget` set, a
  whole-pool overload (one leave at a time, the others held and queued,
  the fleet thread claimed in Redis and posted to a Slack double),
  remediation, rejoin, the next host's turn; a SCRIPT FLUSH mid-run (the
  EVAL fallback);
- monkey-proxy-sync as `monkey-proxy-sync`, following the same pool into
  an nginx upstream file.

Redis's own ACL LOG must stay empty: any command the file forgot is a
denial logged there (and a degraded agent), which fails the test."""

import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "doubles"))
import harness  # noqa: E402
from harness import Agent, check, wait_until  # noqa: E402
from slack_double import SlackDouble  # noqa: E402
from test_pool import OUT, SERVING, Redis, pool_extra, set_busy_now  # noqa: E402
from test_remedy_stuck import TOKEN, slack_section  # noqa: E402

ACL_FILE = os.path.join(os.path.dirname(os.path.dirname(HERE)), "conf", "redis-acl.conf")
ADMIN = ("admin", "admin-pw-for-the-test")


def acl_rules():
    """{user: [rule, ...]} from the shipped file, its placeholder dropped."""
    users = {}
    with open(ACL_FILE) as f:
        for line in f:
            if not line.startswith("user "):
                continue
            words = line.split()
            check(words[3] == "#PASSWORD-SHA256", "%s: the password placeholder moved: %r" % (ACL_FILE, words[3]))
            users[words[1]] = [w for w in words[2:] if w != "#PASSWORD-SHA256"]
    check({"monkey-agent", "monkey-proxy-sync"} <= set(users), "%s: users %r" % (ACL_FILE, sorted(users)))
    return users


def acl_redis(passwords):
    """A redis-server with the file's users (and an admin for the test)."""
    redis = Redis().start()
    for user, rules in acl_rules().items():
        check(redis.cmd("ACL", "SETUSER", user, ">" + passwords[user], *rules) == "OK", "ACL SETUSER " + user)
    redis.cmd("ACL", "SETUSER", ADMIN[0], "on", ">" + ADMIN[1], "~*", "&*", "+@all")
    redis.cmd("ACL", "SETUSER", "default", "off")
    redis.auth = ADMIN
    redis.reset()
    redis.cmd("ACL", "LOG", "RESET")
    return redis


def acl_denials(redis):
    """What Redis refused since the start: [(user, object, reason)]."""
    out = []
    for entry in redis.cmd("ACL", "LOG") or []:
        e = dict(zip(entry[0::2], entry[1::2]))
        out.append((e.get("username"), e.get("object"), e.get("reason")))
    return out


def password_file(a, pw):
    path = os.path.join(a.dir, "redis-password")
    harness.atomic_write(path, pw + "\n", mode=0o600)
    return path


def t1_agent_and_proxysync_whole_cycle():
    passwords = {"monkey-agent": "agent-pw-3f9", "monkey-proxy-sync": "sync-pw-7c1"}
    redis = acl_redis(passwords)
    slack = SlackDouble(token=TOKEN)
    slack.start()
    agents = []
    try:
        url = "redis://monkey-agent@127.0.0.1:%d/0" % redis.port
        for i in range(3):
            addr = "127.0.0.%d:8080" % (2 + i)
            a = Agent(name="acl%d" % i, host="web-%d" % (i + 1), window="1s", interval="100ms")
            a.addr = addr
            pool = pool_extra(url, addr, 1, 1, more="password_file = %s" % password_file(a, passwords["monkey-agent"]))
            a.write_config(extra=pool + "\n" + slack_section(a, slack))
            agents.append(a)
        for a in agents:
            a.start(wait_serving=False)
        for a in agents:
            a.wait_state("SERVING", 20)
        wait_until(lambda: len(redis.cmd("SMEMBERS", SERVING)) == 3, 10, 0.05, "3 members as monkey-agent")
        wait_until(lambda: "web-3" in agents[0].ctl("pool").stdout, 10, 0.2, "monkeyctl pool lists web-3")
        cp = agents[0].ctl("pool", "budget", "--max-unavailable", "1", "--min-serving", "1")
        check(cp.returncode == 0, "monkeyctl pool budget set: %s %s" % (cp.stdout, cp.stderr))

        # monkey-proxy-sync as its own user, into an nginx upstream file
        sync_dir = harness.make_tmpdir("monkey-it-acl-sync-")
        upstream = os.path.join(sync_dir, "upstream.conf")
        sync_pw = os.path.join(sync_dir, "password")
        harness.atomic_write(sync_pw, passwords["monkey-proxy-sync"] + "\n", mode=0o600)
        sync_log = open(os.path.join(sync_dir, "sync.log"), "wb")
        sync = harness.spawn([os.path.join(os.environ["MONKEY_BUILD_ROOT"], "proxy-hooks", "monkey-proxy-sync"),
                              "--redis", "redis://monkey-proxy-sync@127.0.0.1:%d/0" % redis.port,
                              "--password-file", sync_pw, "--pool", "web", "--nginx-upstream", upstream,
                              "--nginx-reload", "true", "--interval", "1s"],
                             stdout=sync_log, stderr=sync_log)

        def upstream_has(n):
            try:
                with open(upstream) as f:
                    return len(re.findall(r"^\s*server 127\.0\.0\.\d+:8080", f.read(), re.M)) == n
            except OSError:
                return False
        wait_until(lambda: upstream_has(3), 15, 0.1, "proxy-sync wrote 3 servers")

        # the whole pool overloaded: one out at a time, the rest held
        set_busy_now(agents, 97)
        wait_until(lambda: sum(a.state() == "HOLDING" for a in agents) >= 2, 20, 0.1, "two hosts held")
        wait_until(lambda: redis.cmd("EXISTS", "monkey:{web}:fleet-thread") == 1, 15, 0.1,
                   "the fleet thread claimed in Redis")
        wait_until(lambda: upstream_has(2), 15, 0.1, "proxy-sync took the host out")
        redis.cmd("SCRIPT", "FLUSH")  # the next calls go through EVAL
        leaves = lambda: sum(1 for a in agents for h in harness.sorted_history(a.history(300))  # noqa: E731
                             if h["to"] == "DRAINING")
        wait_until(lambda: leaves() >= 2, 40, 0.2, "a second host's turn")
        set_busy_now(agents, 5)
        wait_until(lambda: all(a.state() == "SERVING" for a in agents), 40, 0.2, "all back to SERVING")
        wait_until(lambda: upstream_has(3), 15, 0.1, "proxy-sync routes all 3 again")
        check(redis.cmd("ZCARD", OUT) == 0, "out entries left")
        parents = [m for m in slack.messages() if m.get("thread_ts") is None and "budget spent" in
                   ((m.get("body") or {}).get("text") or "")]
        print("   leaves %d, fleet parents in Slack %d" % (leaves(), len(parents)))
        check(len(parents) == 1, "fleet thread parents: %d" % len(parents))

        denied = acl_denials(redis)
        print("   ACL LOG: %s" % (denied or "empty"))
        check(not denied, "Redis refused commands the ACL file does not grant: %r" % denied)
        for a in agents:
            logs = a.all_logs()
            check("NOPERM" not in logs, "%s was refused: %s" % (a.name, [ln for ln in logs.splitlines()
                                                                         if "NOPERM" in ln][:3]))
            check(passwords["monkey-agent"] not in logs, "the password reached %s's log" % a.name)
        sync.terminate()
        sync.wait(5)
        sync_log.close()
        with open(os.path.join(sync_dir, "sync.log")) as f:
            text = f.read()
        check("NOPERM" not in text and passwords["monkey-proxy-sync"] not in text,
              "proxy-sync's log: %s" % text[-800:])
    except Exception:
        for a in agents[:2]:
            a.dump_log()
        raise
    finally:
        for a in agents:
            a.close()
        slack.stop()
        redis.kill()


def main():
    harness.main([t1_agent_and_proxysync_whole_cycle])


if __name__ == "__main__":
    main()
