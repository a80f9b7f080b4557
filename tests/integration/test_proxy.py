#!/usr/bin/env python3
"""Egress proxies, as on a corporate host with http_proxy in the
environment: the real monkeyd with http_proxy, HTTP_PROXY, https_proxy and
all_proxy pointing at a logging proxy on 127.0.0.1.

  s1  the checks of the local app (nginx on 127.0.0.2) never go through the
      proxy, even one that answers 502 to everything: the host serves;
  s2  Slack goes through the proxy (its credentials sent to it, never
      logged), also with HTTP_PROXY alone, and directly when no_proxy names
      Slack's host;
  s3  EC2 goes through the proxy (SigV4 still verified), IMDS never does,
      though both are on one host:port here and no_proxy is unset."""

import base64
import os
import re
import socket
import sys
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "doubles"))
from harness import Agent, check, describe, main, wait_until  # noqa: E402
from proxyfleet import free_port, nginx_app  # noqa: E402
from aws_double import AwsDouble  # noqa: E402
from slack_double import SlackDouble  # noqa: E402

SLACK_TOKEN = "xoxb-proxy-test-0000000001"
PROXY_USER = "egress"
PROXY_PASSWORD = "plantedPROXYpassw0rd"
IO_TIMEOUT = 5.0


class LoggingProxy:
    """An HTTP proxy on 127.0.0.1 that logs every request it gets: the
    request line and whether Proxy-Authorization came. mode "502" answers
    502 Bad Gateway to everything; "forward" forwards absolute-form
    requests and tunnels CONNECT, to loopback targets only (the network
    rule: tests talk to 127.0.0.0/8 alone). One request per connection."""

    def __init__(self, mode="forward"):
        self.mode = mode
        self.lock = threading.Lock()
        self.log = []  # dicts: line, method, target, proxy_auth
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="logging-proxy", daemon=True)

    def url_with_credentials(self):
        return "http://%s:%s@127.0.0.1:%d" % (PROXY_USER, PROXY_PASSWORD, self.port)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.thread.join(2.0)
        self.sock.close()
        return False

    def requests(self):
        with self.lock:
            return list(self.log)

    def _serve(self):
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    @staticmethod
    def _read_head(conn):
        data = b""
        deadline = time.monotonic() + IO_TIMEOUT
        while b"\r\n\r\n" not in data:
            if time.monotonic() > deadline or len(data) > 65536:
                return None, b""
            chunk = conn.recv(4096)
            if not chunk:
                return None, b""
            data += chunk
        head, rest = data.split(b"\r\n\r\n", 1)
        return head.decode("latin-1"), rest

    def _handle(self, conn):
        conn.settimeout(IO_TIMEOUT)
        try:
            head, rest = self._read_head(conn)
            if head is None:
                return
            lines = head.split("\r\n")
            method, target, _ = (lines[0].split(" ", 2) + ["", ""])[:3]
            headers = {}
            for h in lines[1:]:
                k, _, v = h.partition(":")
                headers[k.strip().lower()] = v.strip()
            with self.lock:
                self.log.append({"line": lines[0], "method": method, "target": target,
                                 "proxy_auth": headers.get("proxy-authorization")})
            if self.mode == "502":
                conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n"
                             b"Connection: close\r\n\r\nbad gateway\n")
                return
            if method == "CONNECT":
                host, _, port = target.rpartition(":")
                up = self._connect(host, port)
                if up is None:
                    conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                    return
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                self._pipe(conn, up, rest)
                return
            m = re.match(r"http://([^/]+)(/.*)?$", target)
            if not m:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            host, _, port = m.group(1).rpartition(":")
            up = self._connect(host, port or "80")
            if up is None:
                conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            out = ["%s %s HTTP/1.1" % (method, m.group(2) or "/")]
            for h in lines[1:]:
                k = h.partition(":")[0].strip().lower()
                if k not in ("proxy-authorization", "proxy-connection", "connection"):
                    out.append(h)
            out.append("Connection: close")
            up.sendall(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + rest)
            self._pipe(conn, up, b"")
        except OSError:
            pass
        finally:
            conn.close()

    @staticmethod
    def _connect(host, port):
        host = host.strip("[]")
        if not (host.startswith("127.") or host == "localhost"):
            return None
        try:
            return socket.create_connection((host, int(port)), timeout=IO_TIMEOUT)
        except (OSError, ValueError):
            return None

    @staticmethod
    def _pipe(client, up, first):
        """Both ways until either side closes (or IO_TIMEOUT of silence)."""
        if first:
            up.sendall(first)
        done = threading.Event()

        def copy(src, dst):
            try:
                while not done.is_set():
                    b = src.recv(65536)
                    if not b:
                        break
                    dst.sendall(b)
            except OSError:
                pass
            done.set()
        t = threading.Thread(target=copy, args=(client, up), daemon=True)
        t.start()
        copy(up, client)
        done.set()
        up.close()
        t.join(IO_TIMEOUT + 1)


def proxy_env(url, **more):
    """Every variable a corporate host might set, pointing at the proxy."""
    env = {"http_proxy": url, "HTTP_PROXY": url, "https_proxy": url, "HTTPS_PROXY": url, "all_proxy": url,
           "ALL_PROXY": url}
    env.update(more)
    return env


def s1_checks_never_proxied():
    """A proxy that answers 502 to everything: with http_proxy & co. set,
    the checks of the app on 127.0.0.2 still go directly to it, the host
    reaches SERVING and stays there through readiness checks, and the
    proxy never sees the check URL."""
    port = free_port(("127.0.0.2",))
    app = nginx_app("app1", "127.0.0.2", port).start()
    check_url = "http://127.0.0.2:%d/health" % port
    try:
        with LoggingProxy("502") as proxy, Agent("proxy-checks") as a:
            # the proxy is live: a client that honours http_proxy gets its 502
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy.url}))
            try:
                opener.open(check_url, timeout=5)
                check(False, "the proxy did not answer 502")
            except urllib.error.HTTPError as e:
                check(e.code == 502, "the proxy answered %d" % e.code)
            check(any(r["target"] == check_url for r in proxy.requests()), "the proxy does not log: %r"
                  % proxy.requests())
            seen_before = len(proxy.requests())

            a.write_config(extra="[checks]\nurl = %s\nexpect_content = host=app1\npublic_address = 127.0.0.2:%d\n"
                                 "attempts = 3\ntimeout = 1s\nevery = 300ms\nrise = 1\nfall = 2\n" % (check_url, port))
            a.env_extra = proxy_env(proxy.url)
            a.start(timeout=15)
            lc = a.status()["last_checks"]
            check(lc["ok"] is True and lc.get("http_status") == 200, "last_checks: %r" % lc)
            # readiness checks keep running while serving: still direct
            time.sleep(1.5)
            st = a.status()
            check(st["state"] == "SERVING", "left SERVING: %r" % st.get("reason"))
            r = a.ctl("check")
            check(r.returncode == 0 and "content  pass" in r.stdout, "monkeyctl check: %s" % describe(r))
            seen = proxy.requests()[seen_before:]
            check(seen == [], "monkeyd sent %d request(s) to the proxy: %r" % (len(seen), seen[:3]))
    finally:
        app.stop()


def slack_agent(name, d):
    a = Agent(name)
    tok = os.path.join(a.dir, "slack-token")
    with open(tok, "w") as f:
        f.write(SLACK_TOKEN + "\n")
    os.chmod(tok, 0o600)
    a.write_config(extra="[slack]\ntoken_file = %s\nchannel = #incidents\napi_url = %s\ntimeout = 3s\n"
                         % (tok, d.api_url))
    return a


def test_alert(a, d, n_before):
    r = a.ctl("test-alert", timeout=30)
    check(r.returncode == 0, "test-alert: %s" % describe(r))
    d.wait_for(lambda ms: len(ms) > n_before, 10)


def s2_slack_through_proxy_unless_no_proxy():
    """Slack (api_url http://127.0.0.1:P here, https://slack.com in
    production) through the proxy: the request line is the absolute URL,
    the proxy's credentials come from the URL in http_proxy and appear in
    no log. With HTTP_PROXY alone as well. no_proxy naming the host: direct."""
    with SlackDouble(token=SLACK_TOKEN) as d, LoggingProxy("forward") as proxy:
        post_url = d.api_url + "chat.postMessage"
        a = slack_agent("proxy-slack", d)
        with a:
            a.env_extra = proxy_env(proxy.url_with_credentials())
            a.start()
            test_alert(a, d, 0)
            via = [r for r in proxy.requests() if r["target"] == post_url]
            check(via and via[0]["method"] == "POST", "Slack did not go through the proxy: %r" % proxy.requests())
            want_auth = "Basic " + base64.b64encode(("%s:%s" % (PROXY_USER, PROXY_PASSWORD)).encode()).decode()
            check(via[0]["proxy_auth"] == want_auth, "proxy credentials: %r" % via[0]["proxy_auth"])
            a.wait_log(r"slack: through the proxy http://127\.0\.0\.1:%d \(http_proxy\)" % proxy.port, 2)
            status_text = a.ctl("status", "--json").stdout
            a.stop()
            for where, text in (("the log", a.all_logs()), ("status", status_text)):
                check(PROXY_PASSWORD not in text, "the proxy password is in %s" % where)
        n = len(d.messages())

        # upper case alone (curl by itself would ignore HTTP_PROXY)
        a = slack_agent("proxy-slack-upper", d)
        with a:
            a.env_extra = {"HTTP_PROXY": proxy.url}
            a.start()
            before = len(proxy.requests())
            test_alert(a, d, n)
            via = [r for r in proxy.requests()[before:] if r["target"] == post_url]
            check(via, "HTTP_PROXY was ignored: %r" % proxy.requests()[before:])
        n = len(d.messages())

        # no_proxy names Slack's host: straight to it
        a = slack_agent("proxy-slack-noproxy", d)
        with a:
            a.env_extra = proxy_env(proxy.url, no_proxy="localhost,127.0.0.1", NO_PROXY="localhost,127.0.0.1")
            a.start()
            before = len(proxy.requests())
            test_alert(a, d, n)
            seen = proxy.requests()[before:]
            check(seen == [], "no_proxy was ignored: %r" % seen)
            check(not re.search(r"slack: through the proxy", a.log_text()), "the log says Slack uses the proxy")
            a.wait_log(r"slack: direct \(no_proxy names 127\.0\.0\.1\)", 2)


def s3_ec2_through_proxy_imds_direct():
    """Instance identity and role credentials from IMDS, then the signed
    DryRun self-test to EC2: EC2 through the proxy, IMDS straight to the
    double, though both listen on the same 127.0.0.1:P and no_proxy is
    unset."""
    with AwsDouble(credentials={}, role="monkey-role") as d, LoggingProxy("forward") as proxy:
        a = Agent("proxy-aws")
        with a:
            a.write_config(extra="[aws]\nendpoint_url = %s\nimds_url = %s\n\n"
                                 "[remedy]\nladder = reboot-instance\nbudget = none\n" % (d.endpoint_url, d.url))
            a.env_extra = proxy_env(proxy.url, HOME="/nonexistent")
            a.start()

            def permitted():
                aws = a.status()["remedy"].get("aws") or {}
                return aws.get("permission") == "permitted" and aws
            aws = wait_until(permitted, 15, what="the EC2 self-test to pass")
            check(aws["credentials"]["source"] == "instance-role", "credentials: %r" % aws["credentials"])
            dry = [r for r in d.ec2_requests() if r.get("dry_run")]
            check(dry and dry[0]["signature_ok"], "EC2 DryRun: %r" % dry)
            imds = d.imds_requests()
            check(any(r.get("path", "").endswith("/monkey-role") for r in imds), "no role credentials from IMDS")
            seen = proxy.requests()
            ec2 = [r for r in seen if r["method"] == "POST" and r["target"] == d.endpoint_url]
            check(ec2, "EC2 did not go through the proxy: %r" % seen)
            leaked = [r for r in seen if "/latest/" in r["target"]]
            check(leaked == [], "IMDS went through the proxy: %r" % leaked)
            check(len(ec2) == len(seen), "unexpected requests at the proxy: %r" % seen)
            a.wait_log(r"EC2 endpoint %s through the proxy http://127\.0\.0\.1:%d \(http_proxy\)"
                       % (re.escape(d.endpoint_url), proxy.port), 2)


def s4_tunnel_refused_names_the_proxy():
    """Slack over https through a proxy that refuses CONNECT (502): the
    failure says the proxy refused, not that Slack is down."""
    with LoggingProxy("502") as proxy:
        a = Agent("proxy-refused")
        with a:
            tok = os.path.join(a.dir, "slack-token")
            with open(tok, "w") as f:
                f.write(SLACK_TOKEN + "\n")
            os.chmod(tok, 0o600)
            # never reached: the proxy answers the CONNECT itself
            a.write_config(extra="[slack]\ntoken_file = %s\nchannel = #incidents\napi_url = https://127.0.0.1:9/api/\n"
                                 "timeout = 2s\n" % tok)
            a.env_extra = {"https_proxy": proxy.url}
            a.start()
            r = a.ctl("test-alert", "--timeout", "5", timeout=30)
            check(r.returncode != 0, "test-alert through a refusing proxy: %s" % describe(r))
            check(any(x["line"] == "CONNECT 127.0.0.1:9 HTTP/1.1" for x in proxy.requests()),
                  "no CONNECT at the proxy: %r" % proxy.requests())
            out = r.stdout + r.stderr
            check("the proxy answered CONNECT with HTTP 502" in out, "test-alert: %s" % describe(r))


if __name__ == "__main__":
    main([s1_checks_never_proxied, s2_slack_through_proxy_unless_no_proxy, s3_ec2_through_proxy_imds_direct,
          s4_tunnel_refused_names_the_proxy])
