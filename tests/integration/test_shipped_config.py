#!/usr/bin/env python3
"""The config `meson install` puts in /etc/monkeyd, used as an operator
would on a fresh host with no Redis, Slack or AWS:

  i1  the real monkeyd starts on conf/monkeyd.conf as shipped, with only
      state_dir and control_socket pointed at a temp dir (the two paths a
      test cannot take from a host): --check-config says ok, the agent
      runs observe-only on the real /proc/stat, `monkeyctl status` answers
      (text and JSON), nothing is logged at warning or worse, and SIGTERM
      stops it with exit 0.
  i2  `meson install --destdir` installs it as monkeyd.conf (0600) and the
      reference as monkeyd.conf.example; a second install keeps the
      operator's edited file as it is (content and mode)."""

import json
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (BUILD_ROOT, MONKEYCTL, MONKEYD, SOURCE_ROOT, _SCRUB_ENV, check, control_request,  # noqa: E402
                     describe, fail, main, make_tmpdir, spawn, wait_until)

SHIPPED = os.path.join(SOURCE_ROOT, "conf", "monkeyd.conf")


def run(argv, timeout=60, env=None):
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, env=env)
    except subprocess.TimeoutExpired:
        fail("%s did not finish within %ds" % (" ".join(argv), timeout))


def with_test_paths(text, d):
    """The shipped text with the two host paths pointed into d, and
    nothing else changed."""
    out, n = text, 0
    for key, value in (("state_dir", os.path.join(d, "state")), ("control_socket", os.path.join(d, "control.sock"))):
        out, k = re.subn(r"^;%s = .*$" % key, "%s = %s" % (key, value), out, count=1, flags=re.M)
        n += k
    check(n == 2, "the shipped config no longer shows ;state_dir and ;control_socket: update this test")
    return out


def i1_shipped_config_starts():
    d = make_tmpdir("monkey-it-shipped-")
    os.makedirs(os.path.join(d, "state"), mode=0o700)
    with open(SHIPPED) as f:
        text = with_test_paths(f.read(), d)
    conf = os.path.join(d, "monkeyd.conf")
    with open(conf, "w") as f:
        f.write(text)
    os.chmod(conf, 0o600)  # as installed
    sock = os.path.join(d, "control.sock")

    cp = run([MONKEYD, "--check-config", conf])
    check(cp.returncode == 0 and cp.stdout.strip() == "%s: ok" % conf, "--check-config: " + describe(cp))

    env = {k: v for k, v in os.environ.items() if k not in _SCRUB_ENV}
    log_path = os.path.join(d, "monkeyd.log")
    with open(log_path, "wb") as log:
        p = spawn([MONKEYD, "--config", conf], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                  env=env)
        try:
            def answering():
                if p.poll() is not None:
                    fail("monkeyd exited with %s on the shipped config:\n%s" % (p.returncode, open(log_path).read()))
                return control_request(sock, {"version": 1, "command": "status"}, 1.0)
            wait_until(answering, 15, 0.05, "the agent on the shipped config to answer")
            # a CHECKING -> SERVING step may still be under way
            wait_until(lambda: (lambda s: s if s.get("state") in ("SERVING", "OVERLOADED") else None)(
                json.loads(run([MONKEYCTL, "--socket", sock, "status", "--json"]).stdout or "{}")), 10, 0.1,
                "SERVING (observe only)")

            cp = run([MONKEYCTL, "--socket", sock, "status"])
            check(cp.returncode in (0, 1) and "observe only" in cp.stdout,
                  "monkeyctl status (text) on the shipped config: " + describe(cp))
            cp = run([MONKEYCTL, "--socket", sock, "status", "--json"])
            check(cp.returncode in (0, 1), "monkeyctl status --json: " + describe(cp))
            st = json.loads(cp.stdout)
            integ = st.get("integrations") or {}
            check(integ and all(v == "not configured" for v in integ.values()),
                  "the shipped config turns on an integration: %r" % integ)
            check(st["remedy"]["mode"] == "observe only", "remedy: %r" % st["remedy"])
            check(st["cpu"]["source"] == "/proc/stat" and st["cpu"]["samples"] >= 0, "cpu: %r" % st["cpu"])
            print("   state %s, integrations all off, remedy %s; monkeyctl status answers (text and JSON)"
                  % (st["state"], st["remedy"]["mode"]))
            time.sleep(1.5)  # a few real samples
            check(p.poll() is None, "monkeyd exited on the shipped config:\n" + open(log_path).read())
            p.send_signal(signal.SIGTERM)
            rc = p.wait(15)
            check(rc == 0, "monkeyd on the shipped config exited %d on SIGTERM" % rc)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(5)
    logged = open(log_path).read()
    bad = [ln for ln in logged.splitlines() if re.match(r"(warning|error|crit|alert|emerg):", ln)]
    check(not bad, "the shipped config logs warnings or errors: %r" % bad)
    print("   %d log lines, none at warning or worse; stopped with exit 0" % len(logged.splitlines()))


def installed_options():
    cp = run(["meson", "introspect", "--buildoptions", BUILD_ROOT])
    check(cp.returncode == 0, "meson introspect: " + describe(cp))
    opts = {o["name"]: o["value"] for o in json.loads(cp.stdout)}
    return opts["prefix"], opts["sysconfdir"], opts["datadir"]


def meson_install(destdir):
    cp = run(["meson", "install", "-C", BUILD_ROOT, "--no-rebuild", "--destdir", destdir], timeout=120)
    check(cp.returncode == 0, "meson install --destdir: " + describe(cp))
    return cp


def i2_install_keeps_an_edited_config():
    prefix, sysconfdir, datadir = installed_options()
    dest = make_tmpdir("monkey-it-destdir-")
    conf = os.path.join(dest, os.path.join(prefix, sysconfdir).lstrip("/"), "monkeyd", "monkeyd.conf")
    example = os.path.join(dest, os.path.join(prefix, datadir).lstrip("/"), "doctor-monkey", "monkeyd.conf.example")
    with open(SHIPPED) as f:
        shipped = f.read()

    meson_install(dest)
    check(os.path.isfile(conf), "not installed: %s" % conf)
    mode = os.stat(conf).st_mode & 0o7777
    check(mode == 0o600, "installed with mode %04o, want 0600" % mode)
    check(open(conf).read() == shipped, "the installed config is not conf/monkeyd.conf")
    check(open(example).read() == shipped, "the installed example is not conf/monkeyd.conf")
    print("   first install: %s (0600) and %s" % (conf.replace(dest, "DESTDIR"), example.replace(dest, "DESTDIR")))

    # the operator edits it (and tightens it further); a reinstall keeps both
    edited = shipped.replace("[cpu]\n", "[cpu]\n# edited by the operator\n", 1)
    with open(conf, "w") as f:
        f.write(edited)
    os.chmod(conf, 0o400)
    meson_install(dest)
    check(open(conf).read() == edited, "a second meson install overwrote the edited config")
    mode = os.stat(conf).st_mode & 0o7777
    check(mode == 0o400, "a second meson install changed the mode to %04o" % mode)
    check(open(example).read() == shipped, "the example was not refreshed")
    leftovers = [n for n in os.listdir(os.path.dirname(conf)) if n != "monkeyd.conf"]
    check(not leftovers, "the install left files beside the config: %r" % leftovers)
    print("   second install: the edited file kept (content and mode 0400)")


if __name__ == "__main__":
    main([i1_shipped_config_starts, i2_install_keeps_an_edited_config])
