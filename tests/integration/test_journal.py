#!/usr/bin/env python3
"""Structured logging: with JOURNAL_STREAM naming its stderr, monkeyd writes
to journald's native socket with fields (MESSAGE_ID, MONKEY_STATE, ...).
PID 1 is not systemd here, so monkeyd runs in a private mount namespace
where /run is a tmpfs and /run/systemd/journal/socket is our own datagram
socket, speaking journald's native protocol to us."""

import os
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Agent, check, main, wait_until  # noqa: E402

TRANSITION_ID = "6d6f6e6b6579640a8c1e3f0b2a7d4e51"


def parse_native(data):
    """journald's native datagram: KEY=value lines, or KEY\\n<le64 size><value>\\n."""
    fields = {}
    i = 0
    while i < len(data):
        nl = data.index(b"\n", i)
        line = data[i:nl]
        if b"=" in line:
            k, v = line.split(b"=", 1)
            fields[k.decode()] = v.decode(errors="replace")
            i = nl + 1
        else:
            size = int.from_bytes(data[nl + 1:nl + 9], "little")
            fields[line.decode()] = data[nl + 9:nl + 9 + size].decode(errors="replace")
            i = nl + 9 + size + 1
    return fields


class JournalDouble(threading.Thread):
    def __init__(self, path):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.entries = []
        self.lock = threading.Lock()
        self.done = False

    def run(self):
        while not self.done:
            try:
                data = self.sock.recv(1 << 20)
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.entries.append(parse_native(data))

    def find(self, **want):
        with self.lock:
            return [e for e in self.entries if all(e.get(k) == v for k, v in want.items())]


def j1_transitions_are_structured():
    with Agent("journal") as a:
        sock = os.path.join(a.dir, "journal.socket")
        j = JournalDouble(sock)
        j.start()
        # Inside the namespace: /run is a fresh tmpfs holding only our socket.
        script = ('mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/journal && '
                  ': > /run/systemd/journal/socket && mount --bind "$0" /run/systemd/journal/socket && '
                  'exec "$@"')
        a.start(wrapper=["unshare", "--mount", "--propagation", "private", "sh", "-c", script, sock],
                journal_stream=True)

        serving = wait_until(lambda: j.find(MESSAGE_ID=TRANSITION_ID, MONKEY_STATE="SERVING"), 5,
                             what="a journal entry for the transition to SERVING")[0]
        print("   %s" % {k: v for k, v in serving.items() if k.startswith(("MESSAGE", "MONKEY", "PRIORITY"))})
        check(serving.get("MONKEY_FROM") == "CHECKING", "MONKEY_FROM %r" % serving.get("MONKEY_FROM"))
        check(serving.get("MONKEY_EVENT") == "checks-passed", "MONKEY_EVENT %r" % serving.get("MONKEY_EVENT"))
        check(serving.get("PRIORITY") == "5", "PRIORITY %r for a transition (want 5, notice)" % serving.get("PRIORITY"))
        check(serving.get("SYSLOG_IDENTIFIER") == "monkeyd", "SYSLOG_IDENTIFIER %r" % serving.get("SYSLOG_IDENTIFIER"))
        check("CHECKING -> SERVING" in serving.get("MESSAGE", ""), "MESSAGE %r" % serving.get("MESSAGE"))

        # Ordinary log lines carry the code location.
        plain = j.find(SYSLOG_IDENTIFIER="monkeyd", PRIORITY="6")
        check(plain, "no info-level entries")
        check(any("CODE_FILE" in e and "CODE_LINE" in e for e in plain), "no CODE_FILE/CODE_LINE on info entries")

        # A breach is a transition entry too.
        a.feeder.set_busy(95)
        over = wait_until(lambda: j.find(MESSAGE_ID=TRANSITION_ID, MONKEY_STATE="OVERLOADED"), 6,
                          what="a journal entry for OVERLOADED")[0]
        check(over.get("MONKEY_EVENT") == "breach", "MONKEY_EVENT %r" % over.get("MONKEY_EVENT"))

        # Nothing went to stderr while the journal took it.
        a.stop()
        with open(a.log_path, "rb") as f:
            err = f.read().decode(errors="replace")
        check("SERVING" not in err, "transitions were also written to stderr:\n" + err[:500])
        j.done = True


def j2_no_journal_falls_back_to_stderr():
    # JOURNAL_STREAM set but no journald socket (a private empty /run): the
    # lines must still reach stderr, not vanish.
    with Agent("journal-none") as a:
        script = 'mount -t tmpfs tmpfs /run && exec "$@"'
        a.start(wrapper=["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"],
                journal_stream=True)
        time.sleep(0.3)
        a.stop()
        with open(a.log_path, "rb") as f:
            err = f.read().decode(errors="replace")
        check("CHECKING -> SERVING" in err, "no transition line on stderr without journald:\n" + err[:500])


if __name__ == "__main__":
    # A private mount namespace needs "/" to be a mount point; inside a
    # chroot (the fresh-machine check) it is not. 77 = skipped, for meson.
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        print("SKIP: cannot make a private mount namespace for the journald double: %s"
              % probe.stderr.strip())
        sys.exit(77)
    main([j1_transitions_are_structured, j2_no_journal_falls_back_to_stderr])
