#!/usr/bin/env python3
"""Prometheus metrics, as a scrape and node_exporter see them: GET
/metrics on the health endpoint's listener and on a listener of its own,
the textfile rewritten whole, every exposition accepted by `promtool
check metrics` (Debian's prometheus package), and the series moving: the
state, a breach, the transitions, a remediation, reloads failed and ok.

    m1  /metrics on the health endpoint's listener through a whole cycle
        (ladder = none): state, breach, transitions, remediation counted
    m2  [metrics] listen and textfile: its own listener, the textfile
        replaced atomically every interval; a failed and a good reload
    m3  [metrics] with nowhere to serve is refused, naming the section
    m4  with a real redis-server pool: monkeyd_redis_up follows the link
        and monkeyd_pool_budget shows the pool's rules and who is out
"""

import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from harness import free_port, MONKEYD, Agent, check, describe, main, make_tmpdir, wait_until  # noqa: E402

PROMTOOL = shutil.which("promtool")


def scrape(url):
    with urllib.request.urlopen(url, timeout=3) as r:
        check(r.status == 200, "GET %s: %d" % (url, r.status))
        ctype = r.headers.get("Content-Type", "")
        check(ctype.startswith("text/plain; version=0.0.4"), "content type %r" % ctype)
        return r.read().decode()


def promtool_ok(text, what):
    if not PROMTOOL:
        print("   (promtool not installed: the exposition's lint skipped)")
        return
    cp = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=20)
    check(cp.returncode == 0, "promtool check metrics on %s: %s" % (what, describe(cp)))


def series(text):
    """{'name{labels}': value} of the exposition's samples."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        out[key] = float(value)
    return out


class App(http.server.ThreadingHTTPServer):
    """The app the checks ask: 200 "ok"."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "3")
            self.end_headers()
            self.wfile.write(b"ok\n")

        def log_message(self, *args):
            pass

    def __init__(self):
        super().__init__(("127.0.0.1", 0), App.Handler)
        self.daemon_threads = True
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def close(self):
        self.shutdown()
        self.server_close()


def m1_on_the_health_listener():
    port = free_port()
    app = App()
    app_addr = "127.0.0.1:%d" % app.server_address[1]
    extra = ("[proxy]\nhealth_port = %d\nhealth_address = 127.0.0.1\n\n[metrics]\n\n"
             "[remedy]\nladder = none\nbudget = none\nmax_per_window = 3\n\n"
             "[checks]\nurl = http://%s/\nexpect_content = ok\npublic_address = %s\n" % (port, app_addr, app_addr))
    try:
        m1_cycle(port, extra)
    finally:
        app.close()


def m1_cycle(port, extra):
    with Agent("metrics", extra=extra, window="1s", interval="100ms") as a:
        a.start()
        url = "http://127.0.0.1:%d/metrics" % port
        # the CPU split is there from the first interval on
        wait_until(lambda: 'monkeyd_cpu_ratio{mode="busy"}' in scrape(url), 5, what="a CPU interval")
        text = scrape(url)
        promtool_ok(text, "the first scrape")
        s = series(text)
        check(s.get('monkeyd_build_info{version="0.1.0"}') == 1 or any(k.startswith("monkeyd_build_info{") for k in s),
              "no build info: %r" % [k for k in s if "build" in k])
        check(s.get('monkeyd_state{state="SERVING"}') == 1 and s.get('monkeyd_state{state="CHECKING"}') == 0,
              "state series: %r" % {k: v for k, v in s.items() if k.startswith("monkeyd_state{")})
        check(s.get("monkeyd_breaches_total") == 0, "breaches before any: %r" % s.get("monkeyd_breaches_total"))
        check(s.get('monkeyd_reloads_total{result="failed"}') == 0, "reload series not there from the start")
        check(s.get("monkeyd_state_since_seconds", 0) > time.time() - 60, "state_since %r" %
              s.get("monkeyd_state_since_seconds"))
        check(0 <= s.get('monkeyd_cpu_ratio{mode="busy"}', -1) <= 1, "cpu ratio %r" %
              s.get('monkeyd_cpu_ratio{mode="busy"}'))
        a.feeder.set_busy(95)
        wait_until(lambda: "REMEDIATING" in [h.get("to") for h in a.history()], 20, what="the rehearsal's ladder")
        a.feeder.set_busy(5)
        a.wait_state("SERVING", 20)
        text = scrape(url)
        promtool_ok(text, "the scrape after a cycle")
        s = series(text)
        check(s.get("monkeyd_breaches_total") == 1, "breaches %r" % s.get("monkeyd_breaches_total"))
        check(s.get('monkeyd_transitions_total{from="SERVING",to="OVERLOADED",event="breach"}') == 1,
              "transitions: %r" % {k: v for k, v in s.items() if "transitions" in k})
        rem = {k: v for k, v in s.items() if k.startswith("monkeyd_remediations_total")}
        check(sum(rem.values()) == 1 and any('step="none"' in k for k in rem), "remediations: %r" % rem)
        # the checks at start and after the rehearsal: counted and timed
        check(s.get('monkeyd_checks_total{check="content",result="pass"}', 0) >= 2,
              "checks: %r" % {k: v for k, v in s.items() if "checks_total" in k})
        for c in ("http", "binding"):
            n = s.get('monkeyd_check_duration_seconds_count{check="%s"}' % c, 0)
            inf = s.get('monkeyd_check_duration_seconds_bucket{check="%s",le="+Inf"}' % c)
            check(n >= 2 and inf == n, "%s duration: count %r, +Inf bucket %r" % (c, n, inf))
            check(s.get('monkeyd_check_duration_seconds_sum{check="%s"}' % c, 0) > 0, "%s: no time summed" % c)
        # monkeyctl stats: the same observations, with their statistics
        cp = a.ctl("stats", "--json")
        check(cp.returncode == 0, "monkeyctl stats: %s" % describe(cp))
        st = json.loads(cp.stdout)["checks"]["http"]
        since, hour = st["since_start"], st["last_hour"]
        check(since["count"] == s['monkeyd_check_duration_seconds_count{check="http"}'] and hour["count"] >= 2,
              "stats counts: since start %r, last hour %r" % (since["count"], hour["count"]))
        check(since["min"] <= since["p50"] <= since["p99"] <= since["max"] and since["mean"] > 0,
              "stats: %r" % {k: since[k] for k in ("min", "p50", "p99", "max", "mean")})
        cp = a.ctl("stats")
        check(cp.returncode == 0 and "check http" in cp.stdout and "last hour" in cp.stdout,
              "monkeyctl stats text: %s" % describe(cp))
        print("   " + "\n   ".join(cp.stdout.splitlines()))
        # the health endpoint is still what it was
        with urllib.request.urlopen("http://127.0.0.1:%d/" % port, timeout=3) as r:
            check(r.status == 200, "health endpoint %d" % r.status)


def m2_own_listener_and_textfile():
    port = free_port()
    d = make_tmpdir("monkey-it-textfile-")
    prom = os.path.join(d, "monkeyd.prom")
    extra = "[metrics]\nlisten = 127.0.0.1:%d\ntextfile = %s\ninterval = 1s\n" % (port, prom)
    with Agent("metrics-own", extra=extra) as a:
        a.start()
        text = scrape("http://127.0.0.1:%d/metrics" % port)
        promtool_ok(text, "the own listener")
        wait_until(lambda: os.path.exists(prom), 5, what="the textfile")
        first = os.stat(prom).st_ino
        with open(prom) as f:
            promtool_ok(f.read(), "the textfile")
        # replaced whole (a rename), never rewritten in place
        wait_until(lambda: os.stat(prom).st_ino != first, 5, what="the textfile rewritten")
        check(not [n for n in os.listdir(d) if n != "monkeyd.prom"], "leftovers beside the textfile: %r" %
              os.listdir(d))
        # a broken reload, then a good one
        good = open(a.config).read()
        a.write_config(raw=good + "\n[nonsense]\n")
        cp = a.ctl("reload")
        check(cp.returncode != 0, "a broken config reloaded: %s" % describe(cp))
        a.write_config(raw=good)
        cp = a.ctl("reload")
        check(cp.returncode == 0, "reload: %s" % describe(cp))
        s = series(scrape("http://127.0.0.1:%d/metrics" % port))
        check(s.get('monkeyd_reloads_total{result="failed"}') == 1 and s.get('monkeyd_reloads_total{result="ok"}') == 1,
              "reloads: %r" % {k: v for k, v in s.items() if "reloads" in k})
        check("monkeyd_redis_up" not in text, "a Redis series without [pool]")


def m3_nowhere_to_serve():
    d = make_tmpdir("monkey-it-metrics-bad-")
    a = Agent("metrics-bad", tmpdir=d)
    try:
        a.write_config(extra="[metrics]\ninterval = 5s\n")
        cp = subprocess.run([MONKEYD, "--check-config", a.config], capture_output=True, text=True, timeout=10)
        check(cp.returncode == 2 and "[metrics] needs listen" in cp.stderr, "accepted: %s" % describe(cp))
    finally:
        a.close()


def m4_pool_series():
    from proxyfleet import Redis
    from test_pool import pool_extra

    r = Redis().start()
    port = free_port()
    try:
        extra = pool_extra(r.url(), "127.0.0.2:8080", min_serving=1, max_unavailable=1) + \
            "\n[metrics]\nlisten = 127.0.0.1:%d\n" % port
        with Agent("metrics-pool", extra=extra) as a:
            a.start()
            url = "http://127.0.0.1:%d/metrics" % port

            def budget():
                s = series(scrape(url))
                return s if s.get('monkeyd_pool_budget{kind="serving"}') == 1 else None
            s = wait_until(budget, 10, 0.1, "the pool's view in the metrics")
            promtool_ok(scrape(url), "a pool member's scrape")
            check(s.get("monkeyd_redis_up") == 1, "redis_up %r" % s.get("monkeyd_redis_up"))
            check(s.get('monkeyd_pool_budget{kind="min_serving"}') == 1 and
                  s.get('monkeyd_pool_budget{kind="max_unavailable"}') == 1 and
                  s.get('monkeyd_pool_budget{kind="unavailable"}') == 0,
                  "budget: %r" % {k: v for k, v in s.items() if "budget" in k})
            r.stop()
            wait_until(lambda: series(scrape(url)).get("monkeyd_redis_up") == 0, 10, 0.1, "redis_up 0")
    finally:
        if r.proc is not None:
            r.stop()


if __name__ == "__main__":
    main([m1_on_the_health_listener, m2_own_listener_and_textfile, m3_nowhere_to_serve, m4_pool_series])
