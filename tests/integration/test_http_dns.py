#!/usr/bin/env python3
"""Host names in the URLs that go through curl (Slack's API and webhook,
the checks; EC2 and IMDS take the same path in http.c) never block the
agent's loop, and a name that moves is followed. monkeyd runs in a mount
namespace of its own whose resolv.conf names a DNS stub on 127.53.x.y:53
(dnsstub.py, dnsns.py): no query leaves the machine.

- the stub through glibc, as monkeyd will use it: A and AAAA, NXDOMAIN,
  a move, a hang, TCP;
- the stub hangs: status answers fast throughout, the alert and the
  readiness check say they timed out resolving, the alert is delivered and
  the check passes once the stub answers, SIGTERM is prompt mid-lookup;
- failover: Slack and the app move to new loopback addresses (the old ones
  gone), the stub follows: the very next post and check go to the new one;
- IPv6: a name with only an AAAA record;
- the pool's Redis by name (respconn's lookup, not curl's): the name
  hangs while Redis is gone, then moves to a new address.

Skipped (exit 77) where a private mount namespace or port 53 is refused."""

import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "doubles"))
import dnsns  # noqa: E402
import harness  # noqa: E402
from dnsstub import DnsStub, DnsStubError  # noqa: E402
from harness import MONKEYCTL, Agent, check, describe, main, wait_until  # noqa: E402
from proxyfleet import Nginx, free_port, nginx_app  # noqa: E402
from slack_double import SlackDouble  # noqa: E402

TOKEN = "xoxb-1919191919-1919191919191-dnsSTUBtoken19"
SLACK_NAME, APP_NAME = "slack.monkey.test", "app.monkey.test"


def token_file(a):
    path = os.path.join(a.dir, "slack-token")
    harness.atomic_write(path, TOKEN + "\n", mode=0o600)
    return path


def dns_agent(name, slack_port, app_port, every="300ms"):
    """An agent whose Slack API and checks' URL are host names the stub
    answers for; readiness checks while serving, never taking it out."""
    a = Agent(name, window="1s", interval="100ms")
    a.write_config(extra="""[slack]
token_file = {token}
channel = #incidents
api_url = http://{slack}:{sp}/api/
timeout = 2s

[remedy]
ladder = none
budget = none

[checks]
url = http://{app}:{ap}/
expect_content = host=app
attempts = 3
timeout = 1s
every = {every}
fall = 1000
rise = 1
""".format(token=token_file(a), slack=SLACK_NAME, sp=slack_port, app=APP_NAME, ap=app_port, every=every))
    return a


def status_times(a, seconds):
    times = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t = time.monotonic()
        try:
            a.status()
        except harness.TestFailure:  # no answer within the request's 3 s: counted as such
            pass
        times.append(time.monotonic() - t)
        time.sleep(0.05)
    return times


def test_messages(d):
    return [m for m in d.messages() if "Test alert" in ((m["body"] or {}).get("text") or "")]


def fresh_app(name, addr, port):
    """An app that closes each connection after its answer, so that every
    check opens a new one and resolves the name (nginx_app's keep-alive
    would let a check reuse its connection and never ask DNS)."""
    listen = "[%s]" % addr if ":" in addr else addr
    return Nginx(name, """\
    server {{
        listen {listen}:{port};
        keepalive_timeout 0;
        location / {{
            default_type text/plain;
            return 200 "host={name}\\n";
        }}
    }}""".format(listen=listen, port=port, name=name), addr, port)


def h1_stub_through_glibc():
    """What monkeyd's resolver will see: the stub's table, NXDOMAIN, a move,
    a hang (resolv.conf's timeout), and the same over TCP."""
    d = harness.make_tmpdir("monkey-it-dnsview-")
    with DnsStub({"both.test": ["127.0.0.21", "::1"], "v6.test": "::1"}) as s:
        view = dnsns.DnsView(s, d, timeout=1, attempts=1)
        for name, want in (("both.test", ["127.0.0.21", "::1"]), ("v6.test", ["::1"])):
            rc, addrs, _ = view.getent(name)
            check(rc == 0 and addrs == want, "getent ahosts %s: exit %d, %r" % (name, rc, addrs))
        rc, addrs, _ = view.getent("unknown.test")
        check(rc == 2 and addrs == [], "an unknown name: exit %d, %r (want 2: not found)" % (rc, addrs))
        s.set("both.test", "127.0.0.22")
        rc, addrs, _ = view.getent("both.test")
        check(addrs == ["127.0.0.22"], "after the move: %r" % addrs)
        s.hang()
        rc, addrs, took = view.getent("both.test")
        check(rc != 0 and 0.8 < took < 5, "while hanging: exit %d after %.1fs (want a failure after ~1 s)" % (rc, took))
        s.answer()
        s.answer_late(0.5, count=2)  # A and AAAA
        rc, addrs, took = view.getent("both.test")
        check(addrs == ["127.0.0.22"] and took >= 0.5, "answered late: %r after %.2fs" % (addrs, took))
        rc, addrs, took = view.getent("both.test")
        check(addrs == ["127.0.0.22"] and took < 0.5, "after the late ones: %r after %.2fs" % (addrs, took))
        tcp = dnsns.DnsView(s, harness.make_tmpdir("monkey-it-dnsview-"), timeout=1, attempts=1, tcp=True)
        rc, addrs, _ = tcp.getent("both.test")
        check(addrs == ["127.0.0.22"], "over TCP: %r" % addrs)
        kinds = {(q["type"], q["proto"]) for q in s.questions() if q["name"] == "both.test"}
        check({("A", "udp"), ("AAAA", "udp"), ("A", "tcp")} <= kinds, "questions seen: %r" % kinds)
        check(not any(q["name"] == "localhost" for q in s.questions()), "the stub was asked for localhost")


def h2_hanging_dns_never_blocks():
    """The stub stops answering: status answers fast throughout, the post and
    the readiness check time out resolving (glibc's lookup, 5 s x 2, outlives
    curl's timeouts: the loop never waits for it), the alert is delivered and
    the check passes once the stub answers; SIGTERM mid-lookup is prompt."""
    app_port = free_port(("127.0.0.2",))
    app = fresh_app("app1", "127.0.0.2", app_port).start()
    try:
        with SlackDouble(token=TOKEN) as d, \
                DnsStub({SLACK_NAME: "127.0.0.1", APP_NAME: "127.0.0.2"}) as s:
            a = dns_agent("dnshang", d.port, app_port)
            view = dnsns.DnsView(s, a.dir, timeout=5, attempts=2)
            a.start(wrapper=view.wrapper())
            s.wait_asked(APP_NAME, 1)
            # no post before the hang: a kept-alive connection to Slack
            # would carry the next one without asking DNS at all

            s.hang()
            asked = len(s.questions())
            ctl = harness.spawn([MONKEYCTL, "--socket", a.socket, "test-alert", "during", "the", "hang"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            times = status_times(a, 4.0)
            med, worst = harness.check_answer_times(times, "while DNS hangs")
            out, err = ctl.communicate(timeout=10)
            check(ctl.returncode != 0 and "resolving" in err,
                  "test-alert while DNS hangs: exit %s, %r" % (ctl.returncode, (out + err)[-300:]))
            for name in (SLACK_NAME, APP_NAME):
                q = s.wait_asked(name, 1, since=asked)
                check(not q["answered"], "%s was answered during the hang" % name)
            ob = a.status()["slack"]["outbox"]
            check(ob["pending"] >= 1 and "resolving" in (ob.get("last_error") or ""), "outbox during the hang: %r" % ob)
            lc = wait_until(lambda: (lambda c: c if c and c["ok"] is False else None)(a.status()["last_checks"]),
                            5, what="a readiness check to fail during the hang")
            check("resolving" in str(lc.get("detail")), "the failed check does not say why: %r" % lc)
            check(a.state() == "SERVING", "state %s during the hang (fall = 1000)" % a.state())

            s.answer()
            t0 = time.monotonic()
            wait_until(lambda: len(test_messages(d)) == 1, 20, what="the held alert delivered once DNS answers")
            wait_until(lambda: a.status()["last_checks"]["ok"] is True, 5, what="a readiness check to pass again")
            delivered = time.monotonic() - t0
            check(a.status()["slack"]["outbox"]["pending"] == 0, "still pending: %r" % a.status()["slack"])

            s.hang()
            asked = len(s.questions())
            s.wait_asked(APP_NAME, 2, since=asked)
            t0 = time.monotonic()
            rc = a.stop(timeout=5)
            stopped = time.monotonic() - t0
            check(rc == 0 and stopped < 2 * harness.SLOWDOWN,
                  "SIGTERM mid-lookup: exit %s after %.1fs" % (rc, stopped))
            print("   status median %.1f ms, worst %.0f ms over %d calls during the hang; delivered %.1fs after "
                  "DNS came back; SIGTERM mid-lookup %.2fs" % (med * 1000, worst * 1000, len(times), delivered,
                                                               stopped))
    finally:
        app.stop()


def h3_name_moves():
    """Failover: Slack and the app come back on new addresses under the same
    names, the old ones gone. The next post and the next check go to the new
    address at once: nothing keeps the old one (no DNS cache in curl)."""
    old_slack, new_slack, old_app, new_app = "127.0.0.21", "127.0.0.23", "127.0.0.22", "127.0.0.24"
    slack_port = free_port((old_slack, new_slack))
    app_port = free_port((old_app, new_app))
    d_old, d_new = SlackDouble(token=TOKEN, port=slack_port), SlackDouble(token=TOKEN, port=slack_port)
    d_old.bind_address, d_new.bind_address = old_slack, new_slack
    app1, app2 = nginx_app("app1", old_app, app_port), nginx_app("app2", new_app, app_port)
    try:
        d_old.start()
        app1.start()
        with DnsStub({SLACK_NAME: old_slack, APP_NAME: old_app}) as s:
            a = dns_agent("dnsmove", slack_port, app_port, every="0")
            a.start(wrapper=dnsns.DnsView(s, a.dir, timeout=2, attempts=1).wrapper())
            r = a.ctl("test-alert", "before", "the", "move", timeout=15)
            check(r.returncode == 0 and len(test_messages(d_old)) == 1, "test-alert to the old address: %s" % describe(r))
            r = a.ctl("check", "--json", timeout=15)
            check(r.returncode == 0, "check against the old address: %s" % describe(r))

            # the failover: the old ones go, the new ones come, DNS follows
            d_new.start()
            app2.start()
            d_old.stop()
            app1.stop()
            s.set(SLACK_NAME, new_slack)
            s.set(APP_NAME, new_app)
            asked = len(s.questions())
            r = a.ctl("test-alert", "after", "the", "move", timeout=15)
            check(r.returncode == 0 and len(test_messages(d_new)) == 1,
                  "the first post after the move did not reach %s: %s" % (new_slack, describe(r)))
            r = a.ctl("check", timeout=15)
            check(r.returncode == 0, "the first check after the move: %s" % describe(r))
            names = {q["name"] for q in s.questions()[asked:]}
            check({SLACK_NAME, APP_NAME} <= names, "not asked again after the move: %r" % names)
            check(a.status()["slack"]["outbox"]["pending"] == 0, "pending: %r" % a.status()["slack"])
    finally:
        for x in (d_old, d_new, app1, app2):
            if getattr(x, "proc", True):
                x.stop()


def h4_ipv6_only_name():
    """A name with only an AAAA record: the check reaches the app on [::1]."""
    app_port = free_port(("127.0.0.1",))
    app = fresh_app("app6", "::1", app_port).start()
    try:
        with SlackDouble(token=TOKEN) as d, DnsStub({SLACK_NAME: "127.0.0.1", APP_NAME: "::1"}) as s:
            a = dns_agent("dns6", d.port, app_port, every="0")
            a.start(wrapper=dnsns.DnsView(s, a.dir, timeout=2, attempts=1).wrapper())
            lc = a.status()["last_checks"]
            check(lc["ok"] is True, "checks against [::1] by name: %r" % lc)
            check(any(q["name"] == APP_NAME and q["type"] == "AAAA" for q in s.questions()), "no AAAA question")
    finally:
        app.stop()


REDIS_NAME = "redis.pool.test"


def redis_on(ip, port):
    """A redis-server on ip:port (a loopback address the name points to)."""
    import shutil
    d = harness.make_tmpdir("monkey-it-dnsredis-")
    log = open(os.path.join(d, "redis.log"), "wb")
    p = harness.spawn([shutil.which("redis-server"), "--port", str(port), "--bind", ip, "--save", "",
                       "--appendonly", "no", "--dir", d], stdout=log, stderr=subprocess.STDOUT,
                      stdin=subprocess.DEVNULL)
    wait_until(lambda: subprocess.run(["redis-cli", "-h", ip, "-p", str(port), "PING"], capture_output=True,
                                      text=True).stdout.strip() == "PONG", 10, 0.05, "redis on %s:%d" % (ip, port))
    return p


def smembers(ip, port):
    cp = subprocess.run(["redis-cli", "-h", ip, "-p", str(port), "SMEMBERS", "monkey:{web}:serving"],
                        capture_output=True, text=True)
    return cp.stdout.split()


def h5_redis_name_hangs_then_moves():
    """[pool] redis names a host: while the stub hangs and Redis is gone,
    status answers fast and the CPU samples go on; the name then answers
    with a new address (an ElastiCache failover): the agent registers on
    the new Redis at its next reconnect; SIGTERM mid-lookup is prompt."""
    port = free_port(("127.0.0.31", "127.0.0.32"))
    old = redis_on("127.0.0.31", port)
    new = None
    try:
        with DnsStub({REDIS_NAME: "127.0.0.31"}) as s:
            a = Agent("dnsredis", host="web-1", window="1s", interval="100ms")
            a.write_config(extra="[pool]\nredis = redis://%s:%d/0\nname = web\naddress = 127.0.0.2:8080\n"
                                 "min_serving = 1\nmax_unavailable = 1\ndrain = 1s\nlease = 3s\nheartbeat = 1s\n"
                                 "[remedy]\nladder = none\nmax_per_window = 100\nwindow = 1h\n" % (REDIS_NAME, port))
            view = dnsns.DnsView(s, a.dir, timeout=5, attempts=2)
            a.start(wrapper=view.wrapper(), wait_serving=False)
            a.wait_state("SERVING", 15)
            wait_until(lambda: smembers("127.0.0.31", port) == ["127.0.0.2:8080"], 10, 0.05,
                       "registered through the name")

            s.hang()
            asked = len(s.questions())
            old.kill()
            old.wait(5)
            s.wait_asked(REDIS_NAME, 5, since=asked)
            samples = len(a.history(500))
            times = status_times(a, 4.0)
            med, worst = harness.check_answer_times(times, "while the Redis name hangs")
            pool = a.status()["pool"]
            check(pool["status"] != "connected", "connected during the hang? %r" % pool)
            check(len(a.history(500)) >= samples or a.status()["cpu"], "CPU samples stopped")

            new = redis_on("127.0.0.32", port)
            s.set(REDIS_NAME, "127.0.0.32")
            s.answer()
            t0 = time.monotonic()
            wait_until(lambda: smembers("127.0.0.32", port) == ["127.0.0.2:8080"], 20, 0.05,
                       "registered on the new address")
            moved = time.monotonic() - t0
            check(a.status()["pool"]["status"] == "connected", "status %r" % a.status()["pool"]["status"])

            s.hang()
            asked = len(s.questions())
            new.kill()
            new.wait(5)
            s.wait_asked(REDIS_NAME, 5, since=asked)
            t0 = time.monotonic()
            rc = a.stop(timeout=5)
            stopped = time.monotonic() - t0
            check(rc == 0 and stopped < 2 * harness.SLOWDOWN, "SIGTERM mid-lookup: exit %s after %.1fs" % (rc, stopped))
            print("   status median %.1f ms, worst %.0f ms over %d calls while the name hung; on the new "
                  "address %.1fs after the stub answered; SIGTERM mid-lookup %.2fs"
                  % (med * 1000, worst * 1000, len(times), moved, stopped))
            a.close()
    finally:
        for p in (old, new):
            if p and p.poll() is None:
                p.kill()
                p.wait(5)


if __name__ == "__main__":
    why = dnsns.refused()
    if not why:
        try:
            DnsStub().stop()
        except DnsStubError as e:
            why = str(e)
    if why:
        print("SKIP: no DNS stub for monkeyd here: %s" % why)
        sys.exit(77)
    main([h1_stub_through_glibc, h2_hanging_dns_never_blocks, h3_name_moves, h4_ipv6_only_name,
          h5_redis_name_hangs_then_moves])
