"""A process whose host names resolve through a DnsStub (dnsstub.py) and
nothing else: it runs in a private mount namespace where /etc/resolv.conf
names the stub, /etc/nsswitch.conf says `hosts: files dns` and /etc/hosts
knows only localhost. glibc's getaddrinfo (curl's threaded resolver,
sd-resolve, hiredis) reads those files, so every lookup of a test name
reaches the stub; no query leaves the machine, and the test process itself
(and everything else) keeps the real files.

    view = DnsView(stub, a.dir)               # the three files, in a.dir
    a.start(wrapper=view.wrapper())           # harness.Agent: monkeyd in it
    subprocess.run(view.wrapper() + ["getent", "ahosts", "x.test"])

A namespace needs root and "/" a mount point (not so in a chroot): call
refused() first and skip with its reason. Python 3 standard library only."""

import os
import subprocess
import time

_MOUNT = ("mount --bind \"$1\" /etc/resolv.conf && mount --bind \"$2\" /etc/nsswitch.conf && "
          "mount --bind \"$3\" /etc/hosts && shift 3 && exec \"$@\"")

_refused = []


def refused():
    """Why a process cannot get its own resolv.conf here, or None. The probe
    does the real thing once: a namespace, a bind mount over a file in /etc."""
    if os.environ.get("MONKEY_NO_DNSNS"):
        return "MONKEY_NO_DNSNS is set"
    if not _refused:
        why = None
        try:
            p = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                                "mount --bind /dev/null /etc/hosts"],
                               capture_output=True, text=True, timeout=10)
            if p.returncode != 0:
                why = "no private mount namespace with its own /etc/hosts: %s" % (
                    p.stderr.strip() or "exit %d" % p.returncode)
        except (OSError, subprocess.TimeoutExpired) as e:
            why = "cannot run unshare: %s" % e
        _refused.append(why)
    return _refused[0]


class DnsView:
    """The files that make a process ask the stub, and the argv prefix that
    runs a process with them. timeout and attempts are resolv.conf's: how
    long glibc waits for one answer, how many times it asks each server
    (a hanging stub holds a lookup timeout * attempts seconds). tcp: ask
    over TCP only (use-vc)."""

    def __init__(self, stub, directory, timeout=5, attempts=2, tcp=False):
        self.stub = stub
        self.resolv_conf = os.path.join(directory, "resolv.conf")
        self.nsswitch_conf = os.path.join(directory, "nsswitch.conf")
        self.hosts = os.path.join(directory, "hosts")
        options = "timeout:%d attempts:%d%s" % (timeout, attempts, " use-vc" if tcp else "")
        self._write(self.resolv_conf, "# the test's DNS stub (tests/integration/dnsns.py)\n"
                    "nameserver %s\noptions %s\n" % (stub.addr, options))
        self._write(self.nsswitch_conf, "hosts: files dns\n")
        self._write(self.hosts, "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n")

    @staticmethod
    def _write(path, text):
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o644)

    def wrapper(self):
        """argv to put before a command so it runs with these files."""
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", _MOUNT, "sh",
                self.resolv_conf, self.nsswitch_conf, self.hosts]

    def getent(self, name, timeout=30):
        """`getent ahosts name` inside: (exit code, the addresses, seconds)."""
        t = time.monotonic()
        p = subprocess.run(self.wrapper() + ["getent", "ahosts", name], capture_output=True, text=True,
                           timeout=timeout)
        addrs = sorted({line.split()[0] for line in p.stdout.splitlines() if line.strip()})
        return p.returncode, addrs, time.monotonic() - t
