#!/usr/bin/env python3
"""The HTTP health endpoint ([proxy] health_port), driven through the
agent's states with real clients, as an ALB/NLB target group's health
check would ask it.

  h1  [proxy] with only health_port (no HAProxy): GET / answers 200
      "serving" while SERVING and OVERLOADED (observe only), 503
      "maintenance: ..." after `monkeyctl drain`, 200 again after
      `monkeyctl resume`; HEAD gives the same headers and no body;
      ?format=json; 404 for another path, 405 + Allow for POST, 413 for a
      body; Cache-Control: no-store; status (JSON and text) shows it.
  h2  with a pool (real redis), the EC2 double and checks: HOLDING (the
      budget says no) 200; DRAINING and REMEDIATING 503; after the
      "reboot", CHECKING (a slow check) and QUARANTINED (a failing one) 503.
  h3  200 idle connections from 10 addresses held open: GET still
      answers, `monkeyctl status` within 100 ms; past the limits (256 in
      all, 32 per address) connections are refused and counted, the agent
      unharmed; a client sending half a request line is dropped after the
      timeout (10 s).
  h4  a reload that changes health_port moves the listener; a reload to a
      port in use keeps the old one, with an error naming address and port.
Every agent is stopped with SIGTERM and must exit 0 (ASan: no leak)."""

import http.client
import http.server
import os
import socket
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "doubles"))
from harness import Agent, check, check_answer_times, describe, main, wait_until  # noqa: E402
from proxyfleet import Redis, free_port  # noqa: E402
from aws_double import AwsDouble  # noqa: E402

AK = "AKIAHEALTHHTTP000001"
SECRET = "healthHttpSecretKey/0123456789abcdef"
IID = "i-0123456789abcdef0"


def ask(port, method="GET", path="/", body=None, host="127.0.0.1"):
    """(status, headers as a lower-case dict, body bytes)."""
    c = http.client.HTTPConnection(host, port, timeout=3)
    try:
        c.request(method, path, body=body)
        r = c.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        c.close()


def expect(port, status, start, path="/"):
    st, hd, body = ask(port, path=path)
    check(st == status and body.decode().startswith(start),
          "GET %s: %d %r, want %d %r..." % (path, st, body, status, start))
    check(hd.get("cache-control") == "no-store", "no Cache-Control: no-store: %r" % hd)
    return body.decode()


def stop_clean(agent):
    rc = agent.stop()
    check(rc == 0, "monkeyd exited %r at SIGTERM (ASan?): %s" % (rc, agent.log_text()[-1500:]))


def h1_answers_and_methods():
    port = free_port()
    with Agent("health1", window="1s", interval="100ms", extra="[proxy]\nhealth_port = %d\n" % port) as a:
        a.start()
        body = expect(port, 200, "serving")
        print("   SERVING -> 200 %r" % body)
        st, hd, data = ask(port, "HEAD")
        _, ghd, gbody = ask(port)
        check(st == 200 and data == b"", "HEAD: %d %r" % (st, data))
        for k in ("content-type", "content-length", "cache-control"):
            check(hd.get(k) == ghd.get(k), "HEAD header %s %r, GET %r" % (k, hd.get(k), ghd.get(k)))
        st, hd, data = ask(port, path="/?format=json")
        check(st == 200 and hd.get("content-type") == "application/json" and b'"state":"SERVING"' in data
              and b'"traffic":"send"' in data, "json: %d %r %r" % (st, hd, data))
        st, _, _ = ask(port, path="/metrics")
        check(st == 404, "GET /metrics: %d, want 404" % st)
        st, hd, _ = ask(port, "POST")
        check(st == 405 and hd.get("allow") == "GET, HEAD", "POST: %d %r" % (st, hd))
        st, _, _ = ask(port, "GET", body=b"x" * 100)
        check(st == 413, "a body: %d, want 413" % st)
        print("   HEAD same headers, no body; json; 404, 405 + Allow, 413")

        a.feeder.set_busy(95)
        a.wait_state("OVERLOADED", 10)
        expect(port, 200, "overloaded")
        a.feeder.set_busy(10)
        a.wait_state("SERVING", 10)
        cp = a.ctl("drain", "health", "test")
        check(cp.returncode == 0, "monkeyctl drain: " + describe(cp))
        a.wait_state("MAINTENANCE", 5)
        body = expect(port, 503, "maintenance")
        print("   OVERLOADED -> 200, MAINTENANCE -> 503 %r" % body)
        cp = a.ctl("resume")
        check(cp.returncode == 0, "monkeyctl resume: " + describe(cp))
        a.wait_state("SERVING", 10)
        expect(port, 200, "serving")

        h = a.status().get("health") or {}
        check(h.get("port") == port and h.get("path") == "/" and h.get("requests", 0) >= 10
              and h.get("connections") == 0 and h.get("refused") == 0, "status health: %r" % h)
        cp = a.ctl("status")
        check("health" in cp.stdout and "port %d path /" % port in cp.stdout, "text status: %s" % cp.stdout)
        print("   back after resume; status: %r" % h)
        stop_clean(a)


class Checked(http.server.BaseHTTPRequestHandler):
    mode = "ok"   # ok | fail | slow

    def do_GET(self):
        if Checked.mode == "slow":
            time.sleep(1.5)
        code = 500 if Checked.mode == "fail" else 200
        try:
            self.send_response(code)
            self.send_header("Content-Length", "3")
            self.end_headers()
            self.wfile.write(b"ok\n")
        except OSError:
            pass   # the agent's check timed out and went away

    def log_message(self, *args):
        pass


def h2_pool_states():
    hport = free_port()
    app = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Checked)
    threading.Thread(target=app.serve_forever, daemon=True).start()
    app_port = app.server_address[1]
    redis = Redis().start()
    Checked.mode = "ok"
    try:
        with AwsDouble(credentials={AK: (SECRET, None)}) as aws:
            def config(name, min_serving):
                return ("[pool]\nredis = %s\nname = %s\naddress = 127.0.0.1:%d\nmin_serving = %d\n"
                        "max_unavailable = 1\ndrain = 3s\nlease = 3s\nheartbeat = 1s\n\n"
                        "[proxy]\nhealth_port = %d\n\n"
                        "[checks]\nurl = http://127.0.0.1:%d/\nattempts = 2\ntimeout = 1s\n\n"
                        "[aws]\nregion = us-east-1\ninstance_id = %s\nendpoint_url = %s\nimds_url = %s\n\n"
                        "[remedy]\nladder = reboot-instance\nreboot_timeout = 30s\n"
                        % (redis.url(), name, app_port, min_serving, hport, app_port, IID, aws.endpoint_url, aws.url))
            env = {"AWS_ACCESS_KEY_ID": AK, "AWS_SECRET_ACCESS_KEY": SECRET}
            # a pool of one that must keep one serving: the budget says no
            with Agent("health2h", window="1s", interval="100ms", extra=config("hold", 1)) as a:
                a.env_extra = dict(env, HOME=a.dir)
                a.start()
                expect(hport, 200, "serving")
                a.feeder.set_busy(95)
                a.wait_state("HOLDING", 10)
                body = expect(hport, 200, "holding")
                print("   HOLDING -> 200 %r" % body)
                stop_clean(a)

            with Agent("health2", window="1s", interval="100ms", extra=config("hh", 0)) as a:
                a.env_extra = dict(env, HOME=a.dir)
                a.start()
                expect(hport, 200, "serving")
                a.feeder.set_busy(95)
                a.wait_state("DRAINING", 10)
                body = expect(hport, 503, "draining")
                print("   DRAINING -> 503 %r" % body)
                a.wait_state("REMEDIATING", 10)
                wait_until(lambda: aws.reboots() == [IID], 10, what="the reboot call")
                body = expect(hport, 503, "remediating")
                print("   REMEDIATING -> 503 %r" % body)
                stop_clean(a)

                # the "reboot": a new boot id; the checks are slow, then fail
                a.feeder.set_busy(10)
                a.set_boot_id("0a9b8c7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d")
                Checked.mode = "slow"
                a.start(wait_serving=False)
                a.wait_state("CHECKING", 5)
                body = expect(hport, 503, "checking")
                print("   CHECKING -> 503 %r" % body)
                Checked.mode = "fail"
                a.wait_state("QUARANTINED", 15)
                body = expect(hport, 503, "quarantined")
                print("   QUARANTINED -> 503 %r" % body)
                stop_clean(a)
    finally:
        app.shutdown()
        redis.stop()


def connect(port, src):
    s = socket.socket()
    s.settimeout(3)
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    return s


def closed_by_server(s, timeout):
    """True when the server closes s (EOF or reset) within timeout."""
    s.settimeout(timeout)
    try:
        return s.recv(100) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def count_refused(socks):
    """How many of socks the server closed at once (refused)."""
    time.sleep(0.3)
    n = 0
    for s in socks:
        s.setblocking(False)
        try:
            if s.recv(100) == b"":
                n += 1
        except BlockingIOError:
            pass
        except ConnectionResetError:
            n += 1
    return n


def h3_idle_limits_slowloris():
    port = free_port()
    held = []
    with Agent("health3", extra="[proxy]\nhealth_port = %d\n" % port) as a:
        a.start()
        try:
            for i in range(200):
                held.append(connect(port, "127.0.1.%d" % (1 + i % 10)))
            wait_until(lambda: (a.status().get("health") or {}).get("connections") == 200, 5,
                       what="200 connections in status")
            t0 = time.monotonic()
            expect(port, 200, "serving")
            t_get = time.monotonic() - t0
            times = []
            for _ in range(10):
                t0 = time.monotonic()
                a.status()
                times.append(time.monotonic() - t0)
            med, worst = check_answer_times(times, "with 200 idle HTTP connections")
            cp = a.ctl("status")   # the binary too (its own start-up is most of its time)
            check(cp.returncode == 0 and "200 connections" in cp.stdout, "monkeyctl status: " + describe(cp))
            print("   200 idle: GET in %.3f s, status in %.0f ms (median), %.0f ms at worst"
                  % (t_get, med * 1000, worst * 1000))

            # 40 more from one address: 32 per address at most
            extra = []
            for _ in range(40):
                extra.append(connect(port, "127.0.2.1"))
            refused = count_refused(extra)
            check(refused >= 8, "%d of 40 from one address refused, want >= 8" % refused)
            # and past 256 in all
            more = [connect(port, "127.0.3.%d" % (1 + i % 20)) for i in range(60)]
            refused_all = count_refused(more)
            check(refused_all >= 60 - (256 - 232), "%d of 60 refused past the limit" % refused_all)
            h = a.status().get("health") or {}
            check(h.get("refused", 0) >= refused + refused_all and h.get("connections", 999) <= 256,
                  "status health: %r" % h)
            print("   refused %d (per address) + %d (in all); status %r" % (refused, refused_all, h))
            for s in held + extra + more:
                s.close()
            held = []
            wait_until(lambda: (a.status().get("health") or {}).get("connections") == 0, 5,
                       what="connections back to 0")
            expect(port, 200, "serving")

            # slowloris: half a request line, then nothing
            s = connect(port, "127.0.0.1")
            s.sendall(b"GET / HT")
            t0 = time.monotonic()
            check(closed_by_server(s, 20), "a half request line was not dropped within 20 s")
            dt = time.monotonic() - t0
            check(8 <= dt <= 15, "the slow client was dropped after %.1f s, want ~10 s" % dt)
            s.close()
            expect(port, 200, "serving")
            print("   slow client dropped after %.1f s" % dt)
        finally:
            for s in held:
                s.close()
        a.assert_alive()
        stop_clean(a)


def h4_reload_moves_listener():
    p1 = free_port()
    p2 = free_port()
    with Agent("health4", extra="[proxy]\nhealth_port = %d\n" % p1) as a:
        a.start()
        expect(p1, 200, "serving")
        a.write_config(extra="[proxy]\nhealth_port = %d\nhealth_path = /healthz\n" % p2)
        cp = a.ctl("reload")
        check(cp.returncode == 0, "reload: " + describe(cp))
        expect(p2, 200, "serving", path="/healthz")
        st, _, _ = ask(p2)
        check(st == 404, "GET / after the path moved: %d" % st)
        try:
            ask(p1)
            check(False, "the old port %d still answers" % p1)
        except ConnectionRefusedError:
            pass
        print("   reload: port %d -> %d, path /healthz" % (p1, p2))

        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        p3 = busy.getsockname()[1]
        try:
            a.write_config(extra="[proxy]\nhealth_port = %d\nhealth_path = /healthz\n" % p3)
            cp = a.ctl("reload")
            a.wait_log(r"cannot listen for HTTP health checks on 0\.0\.0\.0 port %d: Address already in use, "
                       r"keeping the previous listener" % p3, 5)
            expect(p2, 200, "serving", path="/healthz")
            h = a.status().get("health") or {}
            check(h.get("port") == p2, "status health after the refused move: %r" % h)
            print("   reload to a port in use: kept %d, said so" % p2)
        finally:
            busy.close()
        stop_clean(a)


if __name__ == "__main__":
    main([h1_answers_and_methods, h2_pool_states, h3_idle_limits_slowloris, h4_reload_moves_listener])
