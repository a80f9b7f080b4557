#!/usr/bin/env python3
"""--version, --check-config on the shipped example and on broken files
(exit 2, one FILE:LINE: line), and monkeyd refusing to start on a bad file.

  f6  [remedy] without [pool] is refused (exit 2, naming both sections) by
      --check-config, the start and a reload, unless `budget = none` says
      so; then status (JSON and text) and every remediation alert say "no
      fleet budget". A dry run needs no pool.
  f7  references checked offline: secret files (missing, too open, a
      symlink; as root and as an unprivileged user), region and instance-id
      forms, URLs; the Redis URL error hides only the password.
  f8  an instance id from IMDS that EC2 would refuse: the agent names it
      and the expected form instead of "Invalid argument"."""

import http.server
import os
import re
import shutil
import subprocess
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "doubles"))
import harness  # noqa: E402
from harness import (MONKEYCTL, MONKEYD, NOBODY, SOURCE_ROOT, BASE_CONFIG, Agent, check, describe, fail,  # noqa: E402
                     main, make_tmpdir, wait_until)
from aws_double import AwsDouble  # noqa: E402
from slack_double import SlackDouble  # noqa: E402


def run(argv, timeout=10):
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        fail("%s did not finish within %ds" % (" ".join(argv), timeout))


def base(d):
    return BASE_CONFIG.format(host="cfg-1", dir=d, threshold=80, clear_below=50,
                              window="2s", interval="200ms")


def write(d, name, text, mode=0o600):
    p = os.path.join(d, name)
    with open(p, "w") as f:
        f.write(text)
    os.chmod(p, mode)
    return p


def line_of(text, needle):
    for n, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return n
    raise AssertionError("%r not in %r" % (needle, text))


def f1_version():
    for exe, name in ((MONKEYD, "monkeyd"), (MONKEYCTL, "monkeyctl")):
        cp = run([exe, "--version"])
        check(cp.returncode == 0, "%s --version: %s" % (name, describe(cp)))
        first = cp.stdout.splitlines()[0] if cp.stdout else ""
        check(first == "%s 0.1.0" % name, "%s --version printed %r, want '%s 0.1.0'" % (name, first, name))


def f2_check_shipped_config():
    conf = os.path.join(SOURCE_ROOT, "conf", "monkeyd.conf")
    check(os.path.exists(conf), "%s is missing" % conf)
    # The repository copy may be 0644; the installed one is 0600. Check a
    # 0600 copy as installed, and the file in place.
    d = make_tmpdir("monkey-it-cfg-")
    with open(conf) as f:
        text = f.read()
    copy = write(d, "monkeyd.conf", text, 0o600)
    for p in (copy, conf):
        cp = run([MONKEYD, "--check-config", p])
        check(cp.returncode == 0, "--check-config %s: %s" % (p, describe(cp)))
        check(cp.stdout.strip() == "%s: ok" % p, "--check-config printed %r, want '%s: ok'" % (cp.stdout, p))

    minimal = write(d, "minimal.conf", base(d))
    cp = run([MONKEYD, "--check-config", minimal])
    check(cp.returncode == 0, "--check-config on the minimal test config: " + describe(cp))


def f3_bad_configs():
    d = make_tmpdir("monkey-it-cfg-")
    b = base(d)
    cases = [
        ("unknown key", b.replace("threshold = 80", "treshold = 80"), "treshold"),
        ("unknown section", b + "\n[cpuu]\nthreshold = 80\n", "[cpuu]"),
        ("bad duration", b.replace("window = 2s", "window = 2 parsecs"), "window = 2 parsecs"),
        ("percent over 100", b.replace("threshold = 80", "threshold = 101"), "threshold = 101"),
        ("not a number", b.replace("clear_below = 50", "clear_below = lots"), "clear_below = lots"),
        ("bad bool", b + "\n[remedy]\ndry_run = perhaps\n", "dry_run = perhaps"),
        ("not INI", b + "\nthis line is not ini\n", "this line is not ini"),
        ("zero interval", b.replace("interval = 200ms", "interval = 0"), "interval = 0"),
        ("clear_below above threshold", b.replace("clear_below = 50", "clear_below = 90"), None),
    ]
    for label, text, needle in cases:
        p = write(d, "bad.conf", text)
        cp = run([MONKEYD, "--check-config", p])
        check(cp.returncode == 2, "%s: --check-config want exit 2, %s" % (label, describe(cp)))
        lines = cp.stderr.splitlines()
        check(len(lines) == 1, "%s: want one line on stderr, got %r" % (label, cp.stderr))
        m = re.fullmatch(re.escape(p) + r":(\d+): (.+)", lines[0])
        check(m, "%s: stderr %r is not '%s:LINE: message'" % (label, lines[0], p))
        if needle is not None:
            want = line_of(text, needle)
            check(int(m.group(1)) == want, "%s: line %s, want %d (%r)" % (label, m.group(1), want, lines[0]))
        print("   %-28s %s" % (label + ":", lines[0].replace(d, "D")))

    # monkeyd itself refuses to start on a bad file, with the same message.
    p = write(d, "bad.conf", b.replace("threshold = 80", "threshold = 101"))
    cp = run([MONKEYD, "--config", p], timeout=10)
    check(cp.returncode != 0, "monkeyd --config on a bad file: " + describe(cp))
    check(re.search(re.escape(p) + r":%d: " % line_of(open(p).read(), "threshold = 101"), cp.stderr),
          "monkeyd --config on a bad file did not print FILE:LINE: %r" % cp.stderr)

    missing = os.path.join(d, "no-such.conf")
    cp = run([MONKEYD, "--check-config", missing])
    check(cp.returncode != 0, "--check-config on a missing file: " + describe(cp))
    check(missing in cp.stderr, "--check-config on a missing file does not name it: %r" % cp.stderr)


def f4_inline_secret_permissions():
    d = make_tmpdir("monkey-it-cfg-")
    text = base(d) + "\n[slack]\ntoken = xoxb-0000-not-a-real-token\nchannel = #ops\n"
    p = write(d, "secret.conf", text, 0o600)
    cp = run([MONKEYD, "--check-config", p])
    check(cp.returncode == 0, "inline token in a 0600 file: " + describe(cp))
    os.chmod(p, 0o644)
    cp = run([MONKEYD, "--check-config", p])
    check(cp.returncode == 2, "inline token in a 0644 file must be refused: " + describe(cp))
    check(re.match(re.escape(p) + r":\d+: ", cp.stderr),
          "refusal is not one 'FILE:LINE: message' line: %r" % cp.stderr)
    print("   %s" % cp.stderr.strip().replace(d, "D"))


def f5_command_line_usage():
    cp = run([MONKEYD, "--no-such-option"])
    check(cp.returncode != 0, "monkeyd --no-such-option: " + describe(cp))
    cp = run([MONKEYCTL, "--help"])
    check(cp.returncode == 0 and "status" in cp.stdout + cp.stderr, "monkeyctl --help: " + describe(cp))


def refused(p, text, needle, *words):
    """--check-config exits 2 with one 'p:LINE: message' line, LINE that of
    `needle`, the message naming every word."""
    cp = run([MONKEYD, "--check-config", p])
    check(cp.returncode == 2, "%s: want exit 2, %s" % (needle, describe(cp)))
    lines = cp.stderr.splitlines()
    check(len(lines) == 1, "%s: want one line on stderr, got %r" % (needle, cp.stderr))
    m = re.fullmatch(re.escape(p) + r":(\d+): (.+)", lines[0])
    check(m, "%s: %r is not 'FILE:LINE: message'" % (needle, lines[0]))
    check(int(m.group(1)) == line_of(text, needle), "%s: line %s, want %d" % (needle, m.group(1), line_of(text, needle)))
    for w in words:
        check(w in m.group(2), "%s: the message does not say %r: %r" % (needle, w, lines[0]))
    return m.group(2)


AK = "AKIACONFIGTEST000001"
SECRET = "configTestSecretKey/0123456789abcdef"
IID = "i-0123456789abcdef0"


def f6_budget():
    d = make_tmpdir("monkey-it-cfg-")
    b = base(d)

    # refused: [remedy] that acts, without [pool]
    text = b + "\n[remedy]\nladder = reboot-instance\n"
    p = write(d, "budget.conf", text)
    msg = refused(p, text, "[remedy]", "[remedy]", "[pool]", "budget = none")
    print("   no [pool]:        %s" % msg)
    cp = run([MONKEYD, "--config", p])
    check(cp.returncode == 2 and "[pool]" in cp.stderr, "monkeyd --config started without a budget: " + describe(cp))

    # accepted when written down, and for a dry run (no slot is taken)
    for extra in ("budget = none\n", "dry_run = yes\n"):
        p = write(d, "budget.conf", text + extra)
        cp = run([MONKEYD, "--check-config", p])
        check(cp.returncode == 0, "[remedy] %s without [pool]: %s" % (extra.strip(), describe(cp)))

    # budget = none next to a [pool] is a contradiction
    pooled = b + "\n[pool]\nredis = redis://127.0.0.1:6379/0\nname = web\naddress = 127.0.0.2:8080\n\n" \
                 "[remedy]\nbudget = none\n"
    p = write(d, "budget.conf", pooled)
    msg = refused(p, pooled, "budget = none", "contradicts [pool]")
    print("   none and [pool]:  %s" % msg.replace(d, "D"))

    # running with budget = none: status and every remediation alert say so
    with AwsDouble(credentials={AK: (SECRET, None)}) as aws, SlackDouble(token="xoxb-config-test") as sl:
        a = Agent("budget-none", window="1s", interval="100ms")
        with a:
            tok = write(a.dir, "slack-token", "xoxb-config-test\n")
            remedy = "[remedy]\nladder = reboot-instance\nreboot_timeout = 30s\nbudget = none\n"
            a.write_config(extra="[aws]\nregion = us-east-1\ninstance_id = %s\nendpoint_url = %s\nimds_url = %s\n\n"
                                 "[slack]\ntoken_file = %s\nchannel = #incidents\napi_url = %s\n\n%s"
                           % (IID, aws.endpoint_url, aws.url, tok, sl.api_url, remedy))
            a.env_extra = {"AWS_ACCESS_KEY_ID": AK, "AWS_SECRET_ACCESS_KEY": SECRET, "HOME": a.dir}
            a.start()
            st = a.status()["remedy"]
            check(st.get("budget") == "none" and (st.get("budget_note") or "").startswith("no fleet budget"),
                  "status remedy: %r" % {k: st.get(k) for k in ("mode", "budget", "budget_note")})
            cp = a.ctl("status")
            check("no fleet budget" in cp.stdout, "monkeyctl status (text) does not say it: %r" % cp.stdout)
            print("   status text:      %s" % [ln.strip() for ln in cp.stdout.splitlines() if "fleet" in ln][0])

            a.feeder.set_busy(95)
            wait_until(lambda: aws.reboots() == [IID], 15, what="the reboot")
            # the breach, the step, and the step's result (EC2 accepted it)
            msgs = sl.wait_for(lambda ms: any("accepted" in m["body"].get("text", "") for m in ms), 10)
            texts = [m["body"].get("text", "") for m in msgs]
            remediation = [t for t in texts if "is overloaded" in t or "reboot-instance" in t]
            check(len(remediation) >= 3, "want the breach, the step and its result: %r" % [t[:60] for t in texts])
            for t in remediation:
                check("no fleet budget" in t, "a remediation alert does not say 'no fleet budget': %r" % t[:400])
            print("   %d remediation alerts, each with 'no fleet budget'" % len(remediation))

            # a reload onto a file without the opt-out is refused, the running config stays
            with open(a.config) as f:
                running = f.read()
            harness.atomic_write(a.config, running.replace("budget = none\n", ""), mode=0o600)
            n_before = a.log_text().count("reload failed")
            a.signal(1)  # SIGHUP
            wait_until(lambda: a.log_text().count("reload failed") > n_before, 5, what="the reload to be refused")
            check("[pool]" in a.log_text().split("reload failed")[-1].splitlines()[0],
                  "the refused reload does not say why: %r" % a.log_text()[-400:])
            check(a.status()["remedy"].get("budget") == "none", "the running config changed")


def f7_references():
    d = make_tmpdir("monkey-it-cfg-")
    b = base(d)
    tok = write(d, "slack-token", "xoxb-config-test\n")
    missing = os.path.join(d, "no-such-token")
    slack = "\n[slack]\nchannel = #ops\ntoken_file = %s\n"

    cases = [
        ("missing token_file", b + slack % missing, "token_file", [missing, "No such file"]),
        ("region", b + "\n[aws]\nregion = us-east1\n", "region = us-east1", ["us-east1", "us-east-1"]),
        ("instance id", b + "\n[aws]\ninstance_id = 0123456789\n", "instance_id", ["0123456789", "i- followed by"]),
        ("URL without a host", b + slack % tok + "api_url = https://:443/api\n", "api_url", ["https://:443/api"]),
        ("Redis URL, no password", b + "\n[pool]\nredis = redis://127.0.0.1:0/0\nname = w\naddress = 127.0.0.2:80\n",
         "redis =", ["'redis://127.0.0.1:0/0'"]),
        ("Redis URL, a password", b + "\n[pool]\nredis = redis://:hunter22@127.0.0.1:0/0\nname = w\n"
         "address = 127.0.0.2:80\n", "redis =", ["'redis://:<redacted>@127.0.0.1:0/0'"]),
    ]
    for label, text, needle, words in cases:
        p = write(d, "ref.conf", text)
        msg = refused(p, text, needle, *words)
        check("hunter22" not in msg, "%s: the password is in the message" % label)
        print("   %-24s %s" % (label + ":", msg.replace(d, "D")))

    # the token file as the agent reads it: too open, or a symlink, refused at load
    p = write(d, "ref.conf", b + slack % tok)
    os.chmod(tok, 0o644)
    refused(p, b + slack % tok, "token_file", "group/others", "0644")
    os.chmod(tok, 0o600)
    cp = run([MONKEYD, "--check-config", p])
    check(cp.returncode == 0, "a good token file: " + describe(cp))

    # As an unprivileged user (CI, an operator without sudo) on root's
    # files: what it may see is checked, what it may not is left to the start.
    bindir = make_tmpdir("monkey-it-bin-")
    exe = os.path.join(bindir, "monkeyd")
    shutil.copy(MONKEYD, exe)  # the build tree may be closed to nobody
    os.chmod(exe, 0o755)
    closed = os.path.join(d, "closed")
    os.mkdir(closed, 0o700)
    hidden = write(closed, "slack-token", "xoxb-config-test\n")
    for label, token, mode, want_rc, want in (("root's 0600 file", tok, 0o600, 0, None),
                                              ("root's 0640 file", tok, 0o640, 2, "group/others"),
                                              ("a missing file", missing, None, 2, "No such file"),
                                              ("a file in a 0700 directory", hidden, None, 0,
                                               "checked when the agent starts")):
        if mode is not None:
            os.chmod(token, mode)
        p = write(d, "nobody.conf", b + slack % token, 0o644)  # no inline secret: others may read it
        cp = run(NOBODY + [exe, "--check-config", p])
        os.chmod(tok, 0o600)
        check(cp.returncode == want_rc, "as nobody, %s: want exit %d, %s" % (label, want_rc, describe(cp)))
        if want:
            check(want in cp.stderr, "as nobody, %s: %r not in %r" % (label, want, cp.stderr))
        print("   as nobody, %-28s exit %d %s" % (label + ":", cp.returncode,
                                                  cp.stderr.strip().replace(d, "D")[:120]))


class _BadImds(http.server.BaseHTTPRequestHandler):
    """IMDSv2 whose instance id is not one EC2 would take."""
    def do_PUT(self):
        self._answer(200, "imds-token")

    def do_GET(self):
        if self.path == "/latest/meta-data/instance-id":
            self._answer(200, "0123456789")
        else:
            self._answer(404, "not found")

    def _answer(self, status, body):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def f8_ec2_invalid_instance_id():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _BadImds)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        with Agent("bad-iid", window="1s", interval="100ms") as a:
            a.write_config(extra="[aws]\nregion = us-east-1\nendpoint_url = http://127.0.0.1:9/\n"
                                 "imds_url = http://127.0.0.1:%d\n\n[remedy]\nladder = reboot-instance\n"
                                 "budget = none\n" % srv.server_address[1])
            a.env_extra = {"AWS_ACCESS_KEY_ID": AK, "AWS_SECRET_ACCESS_KEY": SECRET, "HOME": a.dir}
            a.start()

            def detail():
                aws = a.status()["remedy"].get("aws") or {}
                return aws.get("instance_id") and "in flight" not in (aws.get("permission_detail") or "in flight") \
                    and aws["permission_detail"]
            d = wait_until(detail, 10, what="the self-test's verdict")
            check("'0123456789'" in d and "i- followed by 8 or 17 lowercase hex digits" in d,
                  "EC2 failure on a malformed id: %r" % d)
            print("   %s" % d)
    finally:
        srv.shutdown()
        srv.server_close()


if __name__ == "__main__":
    main([f1_version, f2_check_shipped_config, f3_bad_configs, f4_inline_secret_permissions,
          f5_command_line_usage, f6_budget, f7_references, f8_ec2_invalid_instance_id])
