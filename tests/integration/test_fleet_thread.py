#!/usr/bin/env python3
"""One fleet thread (issue 19, item 7): 20 agents of pool "web" on
127.0.0.2..21 share a real redis-server and one Slack channel whose double
enforces Slack's posting limit (1 message per second per channel, 429 +
Retry-After beyond it). A whole-fleet overload with max_unavailable = 1:

  - exactly 1 fleet parent ("pool web: budget spent, N of 20 holding");
  - every holding host's breach lands in that thread, none opens its own;
  - no message is lost (every outbox drains, nothing dead or dropped, the
    agents' delivered counts add up to what the double holds);
  - when the overload clears, the fleet thread is followed up once;
  - the total time is printed."""

import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "doubles"))
import harness  # noqa: E402
from harness import Agent, check, main, wait_until  # noqa: E402
from slack_double import SlackDouble  # noqa: E402
from test_pool import Redis, pool_extra, set_busy_now  # noqa: E402
from test_remedy_stuck import TOKEN, slack_section  # noqa: E402

N = 20


def text(m):
    return (m.get("body") or {}).get("text") or ""


def breach_of(h, m):
    """m is host h's breach alert (after its emoji)."""
    return (" " + h + " is overloaded") in (" " + text(m))


def t1_one_fleet_thread():
    """20 agents overloaded at once, Slack at 1 message/s: one thread."""
    redis = Redis().start()
    double = SlackDouble(token=TOKEN, rate_per_channel=1.0)
    double.start()
    agents = []
    try:
        for i in range(N):
            addr = "127.0.0.%d:8080" % (2 + i)
            a = Agent(name="fleet%d" % i, host="web-%d" % (i + 1), window="1s", interval="100ms")
            a.addr = addr
            # the one host the budget lets out stays out (a long drain): no
            # rotation, the other 19 hold until the overload clears
            pool = pool_extra(redis.url(), addr, 1, 1).replace("drain = 1s", "drain = 600s")
            a.write_config(extra=pool + "\n" + slack_section(a, double))
            agents.append(a)
        for a in agents:
            a.start(wait_serving=False)
        for a in agents:
            a.wait_state("SERVING", 20)
        t0 = time.monotonic()
        set_busy_now(agents, 97)
        held = set()

        def settled():
            for a in agents:
                if a.state() == "HOLDING":
                    held.add(a.config_vars["host"])
            return len(held) >= N - 2
        wait_until(settled, 20, 0.1, "%d+ agents HOLDING" % (N - 2))

        def fleet_parents(ms):
            return [m for m in ms if m.get("thread_ts") is None and "budget spent" in text(m)]

        def own_parents(ms):
            return [m for m in ms if m.get("thread_ts") is None and any(breach_of(h, m) for h in held)]

        # every held host's breach, delivered into the one fleet thread;
        # a second fleet parent or a held host's own parent ends the wait
        def breaches_in(ms):
            fp = fleet_parents(ms)
            if len(fp) > 1 or own_parents(ms):
                return True
            if len(fp) != 1:
                return False
            got = {h for h in held for m in ms if m.get("thread_ts") == fp[0]["ts"] and breach_of(h, m)}
            return got == held
        try:
            ms = double.wait_for(breaches_in, 300)
        except TimeoutError:
            ms = double.messages()
            fp = fleet_parents(ms)
            print("   fleet parents: %r" % [text(m)[:80] for m in fp])
            for h in sorted(held):
                print("   %s: %r" % (h, [(m.get("thread_ts"), text(m)[:50]) for m in ms if (" " + h + " ") in (" " + text(m))]))
            raise
        t_breaches = time.monotonic() - t0
        fp = fleet_parents(ms)
        check(len(fp) == 1, "%d fleet parents" % len(fp))
        fts = fp[0]["ts"]
        print("   fleet parent: %s" % text(fp[0])[:140])
        own = own_parents(ms)
        check(not own, "held hosts opened their own threads: %r" % [text(m)[:60] for m in own])

        set_busy_now(agents, 5)
        wait_until(lambda: all(a.state() == "SERVING" for a in agents if a.config_vars["host"] in held), 60, 0.2,
                   "every held host SERVING again")

        def followed_up(ms):
            return [m for m in ms if m.get("thread_ts") == fts and "no host holding any more" in text(m)]
        ms = double.wait_for(lambda ms: followed_up(ms), 300)

        def drained():
            outs = [a.status()["slack"]["outbox"] for a in agents]
            return outs if all(o["pending"] == 0 for o in outs) else None
        outs = wait_until(drained, 300, 0.5, "every outbox drained")
        total = time.monotonic() - t0
        ms = double.messages()
        check(all(o["dead"] == 0 and o["dropped"] == 0 for o in outs), "dead or dropped: %r" % outs)
        delivered = sum(o["delivered"] for o in outs)
        check(delivered == len(ms), "agents delivered %d, the double holds %d" % (delivered, len(ms)))
        check(len(fleet_parents(ms)) == 1, "%d fleet parents at the end" % len(fleet_parents(ms)))
        check(len(followed_up(ms)) == 1, "%d follow-ups" % len(followed_up(ms)))
        in_thread = sum(1 for m in ms if m.get("thread_ts") == fts)
        parents = sum(1 for m in ms if m.get("thread_ts") is None)
        print("   %d held; %d messages delivered (%d in the fleet thread, %d parents in all), %d answered 429; "
              "breaches in the thread after %.1fs; total %.1fs"
              % (len(held), len(ms), in_thread, parents, double.rate_limited, t_breaches, total))
        check(double.rate_limited > 0, "the double never rate-limited: the test proves nothing about 429")
    except Exception:
        for a in agents[:2]:
            a.dump_log()
        raise
    finally:
        for a in agents:
            a.close()
        double.stop()
        redis.kill()


if __name__ == "__main__":
    main([t1_one_fleet_thread])
