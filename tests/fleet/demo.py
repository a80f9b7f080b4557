"""Doctor Monkey demo. Part 1: one real monkeyd, a synthetic /proc/stat
advanced in real time, [remedy] dry_run = yes: the sustained-window rule,
the cycle, the reboot-loop guard, operator drain/resume and the history.
Part 2: a fleet of three on loopback: real redis-server, three nginx apps
on 127.0.0.2-4 each with its own monkeyd in the pool, real haproxy fed by
monkey-proxy-sync, HTTP load through haproxy; the whole fleet overloads at
once and the disruption budget lets only one host out at a time.
Everything runs in temp dirs and stops by itself (about 80 s)."""

import html
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "doubles"))
import harness  # noqa: E402
import proxyfleet  # noqa: E402
from slack_double import SlackDouble  # noqa: E402

WINDOW = 5.0


def say(text):
    print("\n\033[1m== %s\033[0m" % text if sys.stdout.isatty() else "\n== %s" % text, flush=True)


def ctl(agent, *args, user=None):
    argv = [harness.MONKEYCTL, "--socket", agent.socket] + list(args)
    if user:
        argv = harness.NOBODY + argv
    shown = ("(as nobody) " if user else "") + "monkeyctl " + " ".join(args)
    print("$ " + shown, flush=True)
    p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    out = (p.stdout + p.stderr).rstrip()
    if out:
        print("  " + out.replace("\n", "\n  "), flush=True)
    print("  (exit %d)" % p.returncode, flush=True)
    return p.returncode


def watch(agent, stop):
    p = harness.spawn([harness.MONKEYCTL, "--socket", agent.socket, "watch"],
                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in p.stdout:
        if stop.is_set():
            break
        print("  watch | " + line.rstrip(), flush=True)
    p.kill()


def slack_feed(double, stop):
    """Print each message the Slack double receives, with its thread."""
    seen = 0
    while not stop.is_set():
        msgs = double.messages()
        for m in msgs[seen:]:
            body = m["body"] or {}
            text = html.unescape(body.get("text", "")).split("\n")
            where = "reply in thread %s" % m["thread_ts"] if m.get("thread_ts") else "new thread %s" % m["ts"]
            print("  slack | %s  (%s)" % (text[0], where), flush=True)
            for line in text[1:3]:
                print("  slack |     %s" % line, flush=True)
            # the preformatted block: the top processes of a breach
            for b in body.get("blocks", []):
                t = (b.get("text") or {}).get("text", "")
                if t.startswith("```"):
                    for line in html.unescape(t.strip("`")).split("\n")[:4]:
                        print("  slack |     %s" % line, flush=True)
        seen = len(msgs)
        time.sleep(0.1)


def wait_transitions(agent, to, count, timeout):
    """Wait until `count` transitions into `to` are in the history: the
    dry-run cycle passes through states faster than anyone could poll."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(1 for h in agent.history(200) if h.get("to") == to) >= count:
            return time.monotonic()
        time.sleep(0.02)
    harness.fail("fewer than %d transitions into %s within %.0fs" % (count, to, timeout))


FLEET = (("app1", "127.0.0.2"), ("app2", "127.0.0.3"), ("app3", "127.0.0.4"))
POOL = """[pool]
redis = {url}
name = web
address = {address}
min_serving = 1
max_unavailable = 1
drain = 2s
lease = 3s
heartbeat = 1s

[remedy]
ladder = reboot-instance
dry_run = yes
max_per_window = 10
window = 1h
"""


def fleet_part():
    say("Part 2: a fleet of three behind haproxy, one Redis pool, max_unavailable = 1")
    redis = proxyfleet.Redis().start()
    port = proxyfleet.free_port(tuple(a for _, a in FLEET))
    apps = [proxyfleet.nginx_app(n, a, port).start() for n, a in FLEET]
    agents, hx, sync, load = [], None, None, None
    try:
        for n, a in FLEET:
            ag = harness.Agent(name="fleet-" + n, host=n, threshold=85, clear_below=60, window="3s",
                               interval="250ms", busy=15,
                               extra=POOL.format(url=redis.url(), address="%s:%d" % (a, port)))
            agents.append(ag.start())
        hx = proxyfleet.HAProxy("    server-template s 1-4 127.0.0.1:1 check inter 500ms disabled\n").start()
        sync = proxyfleet.ProxySync(["--redis", redis.url(), "--pool", "web", "--haproxy-socket", hx.socket,
                                     "--backend", "be", "--drain-grace", "1s"], name="demo-sync").start()
        harness.wait_until(lambda: redis.cmd("SCARD", "monkey:{web}:serving") == "3", 10, 0.05,
                           "three hosts serving")
        print("  redis on 127.0.0.1:%s, haproxy on 127.0.0.1:%d, apps on %s port %d"
              % (redis.url().rsplit(":", 1)[-1].split("/")[0], hx.port, ", ".join(a for _, a in FLEET), port))
        load = proxyfleet.Load(hx.port, workers=4, max_seconds=40).start()
        time.sleep(2.0)
        ctl(agents[0], "pool")

        say("Every host overloaded at once: one leaves, the others HOLD and keep serving")
        for ag in agents:
            ag.feeder.set_busy(97)
        t0 = time.monotonic()
        last = None
        max_out = 0
        while time.monotonic() - t0 < 16.0:
            states = [ag.state() for ag in agents]
            serving = int(redis.cmd("SCARD", "monkey:{web}:serving") or 0)
            max_out = max(max_out, 3 - serving)
            line = "  t=%4.1fs  %s   in Redis serving: %d of 3" % (
                time.monotonic() - t0, "  ".join("%s %-11s" % (n, st) for (n, _), st in zip(FLEET, states)),
                serving)
            if line[10:] != last:
                print(line, flush=True)
                last = line[10:]
            time.sleep(0.1)
        for ag in agents:
            ag.feeder.set_busy(15)
        held = [h for h in agents[1].history(100) if h.get("to") == "HOLDING"][:1] or \
               [h for h in agents[2].history(100) if h.get("to") == "HOLDING"][:1]
        if held:
            print("  why a host held: %s" % held[0].get("reason"), flush=True)
        print("  at most %d host(s) out of serving at any time (max_unavailable = 1)" % max_out, flush=True)
        harness.wait_until(lambda: all(ag.state() == "SERVING" for ag in agents), 20, 0.1,
                           "the fleet back in service")
        time.sleep(1.0)
        load.stop()
        bad = load.failures()
        print("  HTTP load through haproxy: %d requests, %d failed, per host %s"
              % (load.total(), len(bad), load.counts()), flush=True)
        return 0 if not bad and max_out <= 1 else 1
    finally:
        for t in (load, sync, hx):
            if t is not None:
                t.stop()
        for ag in agents:
            ag.close()
        for app in apps:
            app.stop()
        redis.stop()


def main():
    token_text = "xoxb-demo-" + os.urandom(8).hex()
    slack = SlackDouble(token=token_text).start()
    agent = harness.Agent(name="demo", host="demo-1", threshold=85, clear_below=60,
                          window="5s", interval="500ms", busy=15)
    token = os.path.join(agent.dir, "slack-token")
    with open(token, "w") as f:
        f.write(token_text + "\n")
    os.chmod(token, 0o600)
    agent.write_config(extra="[slack]\ntoken_file = %s\nchannel = #incidents\napi_url = %s\n\n"
                             "[remedy]\nladder = reboot-instance\ndry_run = yes\n"
                             "max_per_window = 2\nwindow = 1h\n" % (token, slack.api_url))
    say("Starting monkeyd (config %s) and a local Slack double at %s" % (agent.config, slack.url))
    print(open(agent.config).read(), flush=True)
    agent.start()
    stop = threading.Event()
    threading.Thread(target=watch, args=(agent, stop), daemon=True).start()
    threading.Thread(target=slack_feed, args=(slack, stop), daemon=True).start()
    ctl(agent, "test-alert", "hello from the demo")
    time.sleep(1.0)
    ctl(agent, "status")

    say("A 2-second spike to 100%: shorter than the 5 s window, so nothing happens")
    agent.feeder.set_busy(100)
    time.sleep(2.0)
    agent.feeder.set_busy(15)
    time.sleep(1.5)
    ctl(agent, "status")

    say("Sustained 97% load: OVERLOADED after the window, then the dry-run cycle")
    t0 = agent.feeder.set_busy(97)
    wait_transitions(agent, "OVERLOADED", 1, WINDOW + 3)
    print("  breach declared %.2f s after the load started (window %.0f s, interval 0.5 s)"
          % (time.monotonic() - t0, WINDOW), flush=True)
    wait_transitions(agent, "REMEDIATING", 1, 5)
    agent.wait_state("SERVING", 10)

    say("The load stays: a second cycle, then the reboot-loop guard (max_per_window = 2) gives up")
    agent.wait_state("QUARANTINED", 3 * WINDOW + 10)
    ctl(agent, "status")

    say("The load is gone; an operator resumes the host")
    agent.feeder.set_busy(15)
    time.sleep(1.0)
    ctl(agent, "resume", user="nobody")
    ctl(agent, "resume")
    agent.wait_state("SERVING", 10)

    say("Maintenance: drain takes the host out until resume")
    ctl(agent, "drain", "kernel", "upgrade")
    agent.wait_state("MAINTENANCE", 5)
    ctl(agent, "status")
    ctl(agent, "resume")
    agent.wait_state("SERVING", 10)

    say("History")
    ctl(agent, "history", "-n", "30")
    say("Final status")
    ctl(agent, "status")
    time.sleep(0.5)
    stop.set()
    rc = agent.stop()
    msgs = slack.messages()
    say("Slack received %d messages in %d threads; the outbox is empty: %s"
        % (len(msgs), len({m.get("thread_ts") or m["ts"] for m in msgs}),
           not any(n.endswith(".json") for n in os.listdir(os.path.join(agent.state_dir, "outbox")))))
    slack.stop()
    say("monkeyd stopped (exit %s)" % rc)
    if rc != 0 or not msgs:
        return 1
    return fleet_part()


if __name__ == "__main__":
    sys.exit(main())
