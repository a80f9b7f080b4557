#!/usr/bin/env python3
"""The checks that gate the rejoin, against real nginx apps on 127.0.0.x:
all pass -> SERVING with the report in status; wrong content, a 500, the
app bound to another address -> QUARANTINED naming the check and its
evidence; an app slow to start passes after retries without an early
rejoin."""

import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from harness import Agent, check, main  # noqa: E402
from proxyfleet import Nginx, free_port, nginx_app  # noqa: E402


def nginx_status(name, addr, port, code, text):
    body = """\
    server {{
        listen {addr}:{port};
        location / {{
            default_type text/plain;
            return {code} "{text}";
        }}
    }}""".format(addr=addr, port=port, code=code, text=text)
    return Nginx(name, body, addr, port)


def checks_config(url, public, content="host=app1", extra=""):
    return "[checks]\nurl = %s\nexpect_content = %s\npublic_address = %s\nattempts = 3\ntimeout = 1s\n%s" % (
        url, content, public, extra)


def s1_all_pass():
    port = free_port()
    app = nginx_app("app1", "127.0.0.2", port).start()
    try:
        with Agent("checks-ok") as a:
            a.write_config(extra=checks_config("http://127.0.0.2:%d/" % port, "127.0.0.2:%d" % port,
                                               extra="local_address = 127.0.0.1\n"))
            a.start()
            lc = a.status()["last_checks"]
            check(lc["ok"] is True and lc["content"] == "pass" and lc["status"] == "pass" and lc["binding"] == "pass",
                  "last_checks: %r" % lc)
            check("contain \"host=app1\"" in lc["detail"]["content"], "content detail: %r" % lc["detail"])
            check(lc["http_status"] == 200 and "127.0.0.1 is on an interface" in lc["detail"]["binding"],
                  "detail: %r" % lc)
            r = a.ctl("status")
            check("content \u2713" in r.stdout, "status text: %r" % r.stdout)
    finally:
        app.stop()


def s2_wrong_content():
    port = free_port()
    app = nginx_app("other", "127.0.0.2", port).start()
    try:
        with Agent("checks-content") as a:
            a.write_config(extra=checks_config("http://127.0.0.2:%d/" % port, "127.0.0.2:%d" % port))
            a.start(wait_serving=False)
            st, _ = a.wait_state("QUARANTINED", 15)
            check("content check failed" in st["reason"] and "host=app1" in st["reason"], "reason: %r" % st["reason"])
            lc = st["last_checks"]
            check(lc["content"] == "fail" and lc["status"] == "pass" and lc["body_excerpt"].startswith("host=other"),
                  "last_checks: %r" % lc)
            check(not st["pool"]["serving"], "serving while quarantined")
    finally:
        app.stop()


def s3_status_500():
    port = free_port()
    app = nginx_status("err", "127.0.0.2", port, 500, "host=app1 but broken").start()
    try:
        with Agent("checks-500") as a:
            a.write_config(extra=checks_config("http://127.0.0.2:%d/" % port, "127.0.0.2:%d" % port))
            a.start(wait_serving=False)
            st, _ = a.wait_state("QUARANTINED", 15)
            check("status check failed" in st["reason"] and "got 500, want 200-299" in st["reason"],
                  "reason: %r" % st["reason"])
            check(st["last_checks"]["http_status"] == 500, "http_status: %r" % st["last_checks"])
    finally:
        app.stop()


def s4_binding():
    """The app answers on 127.0.0.3, but proxies route to 127.0.0.2."""
    port = free_port()
    app = nginx_app("app1", "127.0.0.3", port).start()
    try:
        with Agent("checks-binding") as a:
            a.write_config(extra=checks_config("http://127.0.0.3:%d/" % port, "127.0.0.2:%d" % port))
            a.start(wait_serving=False)
            st, _ = a.wait_state("QUARANTINED", 15)
            check("binding check failed" in st["reason"] and "Connection refused" in st["reason"],
                  "reason: %r" % st["reason"])
            check(st["last_checks"]["content"] == "pass", "content should pass: %r" % st["last_checks"])
    finally:
        app.stop()


def s5_slow_start():
    """The app comes up 2.5 s after the agent: CHECKING until then, then SERVING."""
    port = free_port()
    app = nginx_app("app1", "127.0.0.2", port)
    with Agent("checks-slow") as a:
        a.write_config(extra=checks_config("http://127.0.0.2:%d/" % port, "127.0.0.2:%d" % port).replace(
            "attempts = 3", "attempts = 10"))
        a.start(wait_serving=False)
        t0 = time.monotonic()
        time.sleep(2.5)
        check(a.state() == "CHECKING", "rejoined before the app was up: %s" % a.state())
        app.start()
        try:
            st, _ = a.wait_state("SERVING", 15)
            check(time.monotonic() - t0 >= 2.5, "too early")
            check(st["last_checks"]["attempt"] >= 2, "passed on the first attempt? %r" % st["last_checks"])
        finally:
            app.stop()


if __name__ == "__main__":
    main([s1_all_pass, s2_wrong_content, s3_status_500, s4_binding, s5_slow_start])
