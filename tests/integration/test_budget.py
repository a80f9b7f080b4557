#!/usr/bin/env python3
"""One disruption budget per pool, kept in Redis (monkey:{P}:budget),
against a real redis-server: the first agent of a new pool seeds it from
its config; a second agent whose config disagrees works under the pool's
budget and says so (status text and JSON, once in its journal); `monkeyctl
pool budget` shows it, and set by root changes what the whole fleet
enforces at once, audited on the events channel; a peer without privilege
and numbers out of bounds are refused, and the budget stays as it was.

Numbered scenarios, each a short story; every outcome is read back from
Redis itself and from the agents."""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Agent, check, describe, wait_until  # noqa: E402
from test_pool import (OUT, P, POOL, REDIS_SERVER, Redis, Sampler, a_new_pool,  # noqa: E402
                       pool_extra, set_busy_now, start_agents)

BUDGET = P + "budget"


def budget_hash(redis):
    flat = redis.cmd("HGETALL", BUDGET) or []
    return dict(zip(flat[0::2], flat[1::2]))


def agent_on(redis, i, **kw):
    addr = "127.0.0.%d:8080" % (2 + i)
    a = Agent(name="budget%d" % i, host="web-%d" % (i + 1), window="1s", interval="100ms",
              extra=pool_extra(redis.url(), addr, **kw))
    a.addr = addr
    return a


def t1_seeded_by_first_agent_second_disagrees():
    """web-1 (min_serving 1, max_unavailable 2) is the first agent of a new
    pool: it seeds the budget. web-2 comes with min_serving 0,
    max_unavailable 5: it works under the pool's 1/2, shows both in status
    and says so once in its journal, not on every heartbeat."""
    with a_new_pool() as (redis, ev, agents):
        check(budget_hash(redis) == {}, "a new pool has a budget already")
        first = agent_on(redis, 0, min_serving=1, max_unavailable=2)
        agents.append(first)
        first.start(wait_serving=False)
        first.wait_state("SERVING", 15)
        b = wait_until(lambda: budget_hash(redis) or None, 5, 0.05, "the budget key seeded")
        print("   seeded: %s" % b)
        check(b.get("min_serving") == "1" and b.get("max_unavailable") == "2",
              "seeded budget is not web-1's config: %r" % b)
        check(b.get("how") == "seeded" and b.get("by") == "web-1", "seeded by whom? %r" % b)
        seeded = wait_until(lambda: [e for e in ev.of_type("budget") if e.get("action") == "seeded"] or None,
                            3, 0.05, "a 'seeded' budget event")
        check(len(seeded) == 1 and seeded[0].get("new") == {"min_serving": 1, "max_unavailable": 2},
              "seeded events: %r" % seeded)
        first.wait_log(r"had no budget: seeded it from this host's config", 3)
        st = first.status()["pool"]["budget"]
        check(st["config_differs"] == [] and st["source"] == "pool", "web-1 differs from its own seed: %r" % st)

        second = agent_on(redis, 1, min_serving=0, max_unavailable=5)
        agents.append(second)
        second.start(wait_serving=False)
        second.wait_state("SERVING", 15)
        wait_until(lambda: second.status()["pool"]["budget"]["source"] == "pool", 5, 0.05,
                   "web-2 read the pool's budget")
        st = second.status()["pool"]["budget"]
        print("   web-2 status budget: %s" % json.dumps(st, sort_keys=True))
        check(st["min_serving"] == 1 and st["max_unavailable"] == 2, "web-2 does not enforce the pool's: %r" % st)
        check(st["config"] == {"min_serving": 0, "max_unavailable": 5}, "web-2's config not shown: %r" % st)
        check(st["config_differs"] == ["min_serving", "max_unavailable"], "rules that differ: %r" % st)
        cp = second.ctl("status")
        check("this host's config differs: min_serving, max_unavailable" in cp.stdout,
              "status text does not say the config differs: " + describe(cp))
        cp = second.ctl("pool")
        check("this host's config says min_serving 0, max_unavailable 5" in cp.stdout,
              "pool text does not show the config beside the pool's: " + describe(cp))
        check(budget_hash(redis).get("by") == "web-1", "web-2 overwrote the pool's budget: %r" % budget_hash(redis))

        # Several heartbeats (1 s each): still one line in the journal.
        time.sleep(3.5)
        said = second.log_text().count("working under the pool's budget")
        print("   web-2's journal: %d line(s) about the budget" % said)
        check(said == 1, "web-2 said its config differs %d times in 3.5s of heartbeats, want once" % said)
        check(first.log_text().count("working under the pool's budget") == 0, "web-1 complained of its own seed")


def t2_set_by_root_the_fleet_follows():
    """6 agents, max_unavailable 1, a fleet-wide overload: one out at a
    time. Root runs `monkeyctl pool budget --max-unavailable 3` on one of
    them: at once the fleet lets exactly 3 out, never a 4th; the set is
    audited on the events channel (who, when, old -> new) and in the
    journal; every agent shows the new budget."""
    with a_new_pool() as (redis, ev, agents):
        agents.extend(start_agents(redis, 6, min_serving=1, max_unavailable=1))
        wait_until(lambda: len(redis.smembers()) == 6, 10, 0.05, "6 addresses in serving")
        sampler = Sampler(redis.port)
        set_busy_now(agents, 97)
        wait_until(lambda: sum(a.state() == "HOLDING" for a in agents) >= 4, 15, 0.1, "4+ agents HOLDING")
        time.sleep(1.5)
        before = sampler.max_out
        check(before <= 1, "ZCARD out reached %d with max_unavailable 1" % before)

        t0 = time.monotonic()
        cp = agents[2].ctl("pool", "budget", "--max-unavailable", "3")
        check(cp.returncode == 0, "pool budget set as root: " + describe(cp))
        print("   %s" % cp.stdout.strip().replace("\n", " | "))
        check("max_unavailable 1 -> 3" in cp.stdout, "the answer does not show old -> new: " + describe(cp))
        b = budget_hash(redis)
        check(b.get("min_serving") == "1" and b.get("max_unavailable") == "3" and b.get("how") == "set",
              "the budget key after the set: %r" % b)
        check(b.get("by", "").startswith("root (uid 0) on web-3"), "by: %r" % b.get("by"))

        wait_until(lambda: int(redis.cmd("ZCARD", OUT)) >= 3 or sampler.max_out >= 3, 10, 0.05,
                   "3 hosts out under the new budget")
        took = time.monotonic() - t0
        time.sleep(3)
        sampler.stop()
        print("   3 out %.1fs after the set; max out before %d, after %d (%d samples)"
              % (took, before, sampler.max_out, sampler.samples))
        check(sampler.max_out == 3, "max out %d under max_unavailable 3 (want exactly 3)" % sampler.max_out)

        sets = [e for e in ev.of_type("budget") if e.get("action") == "set"]
        check(len(sets) == 1, "budget set events: %r" % sets)
        e = sets[0]
        print("   audit event: %s" % json.dumps(e, sort_keys=True))
        check(e.get("old") == {"min_serving": 1, "max_unavailable": 1}, "old: %r" % e)
        check(e.get("new") == {"min_serving": 1, "max_unavailable": 3}, "new: %r" % e)
        check(e.get("uid") == 0 and e.get("user") == "root" and e.get("host") == "web-3" and e.get("pool") == POOL,
              "who: %r" % e)
        check(e.get("changed") is True and isinstance(e.get("at_ms"), int) and e.get("at", "").endswith("Z"),
              "when: %r" % e)
        agents[2].wait_log(r"budget set by root \(uid 0\) on web-3: min_serving 1 -> 1, max_unavailable 1 -> 3", 3)

        # Every agent sees it (the view, each heartbeat); another shows it read from Redis now.
        for a in agents:
            wait_until(lambda: a.status()["pool"]["budget"]["max_unavailable"] == 3, 5, 0.1,
                       "%s's status shows max_unavailable 3" % a.name)
        cp = agents[0].ctl("--json", "pool", "budget")
        check(cp.returncode == 0, "pool budget --json: " + describe(cp))
        shown = json.loads(cp.stdout)
        check(shown.get("max_unavailable") == 3 and shown.get("how") == "set" and shown.get("pool") == POOL,
              "pool budget --json on web-1: %r" % shown)
        # Their configs say 1: now they differ, and say so.
        check(agents[0].status()["pool"]["budget"]["config_differs"] == ["max_unavailable"],
              "web-1 does not see its config differ: %r" % agents[0].status()["pool"]["budget"])
        set_busy_now(agents, 5)


def t3_refused_for_a_peer_without_privilege():
    """nobody may read the budget, not set it: exit 1, permission denied,
    the key and the events channel untouched; numbers out of bounds are
    usage errors (exit 2) before anything is sent, and the agent refuses
    them too."""
    with a_new_pool() as (redis, ev, agents):
        agents.extend(start_agents(redis, 1, min_serving=1, max_unavailable=1))
        a = agents[0]
        wait_until(lambda: budget_hash(redis) or None, 5, 0.05, "the budget key seeded")
        before = budget_hash(redis)

        cp = a.ctl("pool", "budget", user="nobody")
        check(cp.returncode == 0 and "min_serving 1, max_unavailable 1" in cp.stdout,
              "pool budget as nobody (reading is open): " + describe(cp))
        cp = a.ctl("pool", "budget", "--max-unavailable", "4", user="nobody")
        print("   as nobody: exit %d, %s" % (cp.returncode, cp.stderr.strip()))
        check(cp.returncode == 1 and "permission denied" in cp.stderr, "set as nobody: " + describe(cp))

        for args, want in ((["--max-unavailable", "0"], "no host ever leave"),
                           (["--min-serving", "-1"], "invalid --min-serving"),
                           (["--min-serving", "x"], "invalid --min-serving"),
                           (["--max-unavailable", "100001"], "invalid --max-unavailable")):
            cp = a.ctl("pool", "budget", *args)
            check(cp.returncode == 2 and want in cp.stderr, "pool budget %s: %s" % (" ".join(args), describe(cp)))
        cp = a.ctl("status", "--max-unavailable", "3")
        check(cp.returncode == 2, "--max-unavailable with status: " + describe(cp))
        r = a.request({"version": 1, "command": "pool-budget-set", "max_unavailable": 0})
        check(r.get("ok") is False and "out of range" in r.get("error", ""), "raw request max_unavailable 0: %r" % r)
        r = a.request({"version": 1, "command": "pool-budget-set"})
        check(r.get("ok") is False and "nothing to set" in r.get("error", ""), "a set without numbers: %r" % r)

        time.sleep(0.5)
        check(budget_hash(redis) == before, "the budget changed: %r -> %r" % (before, budget_hash(redis)))
        sets = [e for e in ev.of_type("budget") if e.get("action") == "set"]
        check(sets == [], "budget set events after refusals: %r" % sets)


def main():
    if not REDIS_SERVER:
        print("FAIL: redis-server is not installed (tests/setup-deps)")
        sys.exit(1)
    harness.main([t1_seeded_by_first_agent_second_disagrees, t2_set_by_root_the_fleet_follows,
                  t3_refused_for_a_peer_without_privilege])


if __name__ == "__main__":
    main()
