#!/usr/bin/env python3
"""--version, --check-config on the shipped example and on broken files
(exit 2, one FILE:LINE: line), and monkeyd refusing to start on a bad file."""

import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (MONKEYCTL, MONKEYD, SOURCE_ROOT, BASE_CONFIG, check, describe, fail,  # noqa: E402
                     main, make_tmpdir)


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


if __name__ == "__main__":
    main([f1_version, f2_check_shipped_config, f3_bad_configs, f4_inline_secret_permissions,
          f5_command_line_usage])
