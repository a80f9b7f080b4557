#!/usr/bin/env python3
"""The state dir full (a small real tmpfs, filled) and read-only (the tmpfs
remounted ro), against the real monkeyd: it keeps running and answering,
the previous state.json and outbox stay intact (never half-written), the
error is in status and the log, an alert is still delivered (from memory),
a remediation it cannot record is not taken (no reboot the reboot-loop
guard could not count: QUARANTINED instead), and it recovers when the space
or write access returns.

The mounts live in a private mount namespace (the test re-executes itself
under unshare -m): nothing is left mounted whatever happens. When mounting
is refused, the test says why and injects the same errors with faultshim.c
(ENOSPC on write, EROFS on create/rename/unlink); FAULTS_FORCE_SHIM=1
takes that path on purpose."""

import errno
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faults  # noqa: E402
from faults import (Cells, Host, StatusProbe, assert_responsive, check, fail, kinds, leftovers,  # noqa: E402
                    read_json, shim_env, wait_until)

NS_FLAG = "MONKEY_FAULTS_MOUNTNS"


def reexec_in_mount_namespace():
    """Run the rest in a private mount namespace, if we may make one."""
    if os.environ.get(NS_FLAG) or os.environ.get("FAULTS_FORCE_SHIM"):
        return
    env = dict(os.environ, **{NS_FLAG: "1"})
    # In a chroot, / is no mount point and unshare cannot make it private:
    # then no mount at all (one would show outside), the shim imitates it.
    try:
        probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"],
                               capture_output=True, text=True, timeout=10)
        refused = probe.returncode != 0 and (probe.stderr.strip() or "exit %d" % probe.returncode)
    except (OSError, subprocess.TimeoutExpired) as e:
        refused = str(e)
    if refused:
        print("note: no private mount namespace here (%s): faultshim.c imitates the full and read-only disk"
              % refused, flush=True)
        os.environ["FAULTS_FORCE_SHIM"] = "1"
        return
    try:
        os.execvpe("unshare", ["unshare", "--mount", "--propagation", "private", "--",
                               sys.executable] + sys.argv, env)
    except OSError as e:
        print("note: cannot exec unshare (%s): mounts go into this namespace, unmounted at exit" % e)
        os.environ[NS_FLAG] = "host"


class Disk:
    """A state dir that can be filled up or made read-only: a tmpfs of its
    own, or (mount refused) faultshim.c's imitation of one."""

    SIZE = "512k"

    def __init__(self, path, how):
        self.path = path
        self.how = how
        self.filler = os.path.join(path, "filler")
        self.ctl = path + ".faultshim-ctl"
        if how == "tmpfs":
            cp = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % self.SIZE, "tmpfs", path],
                                capture_output=True, text=True, timeout=10)
            check(cp.returncode == 0, "mount tmpfs: %s" % cp.stderr.strip())
        else:
            self._ctl("ok")

    def env(self):
        return {} if self.how == "tmpfs" else shim_env(disk_dir=self.path, disk_ctl=self.ctl)

    def _ctl(self, mode):
        with open(self.ctl, "w") as f:
            f.write(mode + "\n")

    def fill(self):
        """No space left: the tmpfs filled to the last page. The agent may
        free a page just after (a state.json or outbox file replaced by
        rename drops the old inode's pages), so the filling goes on until a
        probe page no longer fits: the probes that did fit stay as filler."""
        if self.how != "tmpfs":
            return self._ctl("full")
        self.fillers = []
        for round_ in range(50):
            name = "%s.%d" % (self.filler, round_)
            self.fillers.append(name)
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                for size in (65536, 4096, 512, 1):   # down to the last byte
                    while True:
                        try:
                            os.write(fd, b"\0" * size)
                        except OSError as e:
                            check(e.errno == errno.ENOSPC, "filling the tmpfs: %s" % e)
                            break
            finally:
                os.close(fd)
            time.sleep(0.02)   # a rename in flight lands, and frees its page
            try:
                with open(self.filler + ".probe", "wb") as f:
                    f.write(b"x" * 4096)
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as e:
                check(e.errno == errno.ENOSPC, "probe write: %s" % e)
                try:
                    os.unlink(self.filler + ".probe")
                except FileNotFoundError:
                    pass
                return
            os.rename(self.filler + ".probe", name + ".probe")
            self.fillers.append(name + ".probe")
        fail("the tmpfs does not stay full: something keeps freeing space in %s" % self.path)

    def free(self):
        if self.how != "tmpfs":
            return self._ctl("ok")
        for name in self.fillers:
            os.unlink(name)

    def readonly(self, ro=True):
        if self.how != "tmpfs":
            return self._ctl("ro" if ro else "ok")
        cp = subprocess.run(["mount", "-o", "remount,%s" % ("ro" if ro else "rw"), self.path],
                            capture_output=True, text=True, timeout=10)
        check(cp.returncode == 0, "remount %s: %s" % ("ro" if ro else "rw", cp.stderr.strip()))

    def close(self):
        if self.how == "tmpfs":
            subprocess.run(["umount", "-l", self.path], capture_output=True, timeout=10)


def choose_how():
    if os.environ.get("FAULTS_FORCE_SHIM"):
        print("note: FAULTS_FORCE_SHIM set: faultshim.c imitates the full and read-only disk", flush=True)
        return "shim"
    probe = faults.harness.make_tmpdir("monkey-faults-mountprobe-")
    cp = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", probe],
                        capture_output=True, text=True, timeout=10)
    if cp.returncode != 0:
        print("note: cannot mount a tmpfs (%s, exit %d): faultshim.c imitates the full and read-only disk"
              % (cp.stderr.strip() or "no message", cp.returncode), flush=True)
        return "shim"
    subprocess.run(["umount", probe], capture_output=True, timeout=10)
    return "tmpfs"


HOW = None


def new_host(name, **kw):
    h = Host(name, **kw)
    d = Disk(h.a.state_dir, HOW)
    h.start_env = d.env()
    return h, d


def outbox_bytes(h):
    return faults.outbox_snapshot(h.a)


def state_bytes(h):
    with open(h.a.state_json_path(), "rb") as f:
        return f.read()


def fault_while_serving(kind):
    """kind: "full" or "ro". The disk goes bad while SERVING, an overload
    comes: nothing half-written, the error shown, alerts delivered, no
    unrecorded remediation. Then the disk comes back: the next overload
    is remediated (and recorded) once."""
    h, d = new_host("disk-" + kind)
    try:
        with h:
            h.start()
            h.wait_permission()
            wait_until(lambda: faults.outbox_files(h.a) == [], 5, what="an empty outbox")
            # something in the outbox to keep intact: Slack down for a moment
            h.slack.set_default("http:503")
            check(h.a.ctl("drain", "before", "the", "disk", "fault").returncode == 0, "drain")
            h.a.wait_state("MAINTENANCE", 5)
            check(h.a.ctl("resume").returncode == 0, "resume")
            h.a.wait_state("SERVING", 10)
            wait_until(lambda: faults.outbox_files(h.a), 5, what="an alert spooled")
            # no write in flight when the disk fills: one finishing after it
            # would replace a file and free its pages, a later write succeed
            wait_until(lambda: (h.a.status()["disk_writes"]["pending"] == 0
                                and read_json(h.a.state_json_path())[1].get("state") == "SERVING"),
                       5, what="the agent's writes done (state.json says SERVING)")
            probe = StatusProbe(h.a)
            probe.start()
            if kind == "full":
                d.fill()
            else:
                d.readonly()
            # what must stay as it is from the moment no write can succeed
            # (before it, the agent may still rightly be writing)
            before_state, before_outbox = state_bytes(h), outbox_bytes(h)
            # Slack stays down until the overload has played out: nothing is
            # delivered, so nothing is deleted and no space comes back
            h.a.feeder.set_busy(95)
            try:
                st = h.wait_state_unless_rebooted("QUARANTINED", 15)
            except faults.TestFailure as e:
                fail("rebooted although the remediation could not be recorded (%s)" % e)
            h.a.feeder.set_busy(5)
            check("cannot record the remediation" in (st["reason"] or ""), "quarantine reason: %r" % st["reason"])
            check(state_bytes(h) == before_state, "state.json changed while the disk refused writes")
            read_json(h.a.state_json_path())
            check(not leftovers(h.a.state_dir), "temp files in state_dir: %r" % leftovers(h.a.state_dir))
            check(outbox_bytes(h) == before_outbox, "the outbox changed while the disk refused writes")
            check(not leftovers(os.path.join(h.a.state_dir, "outbox")), "temp files in the outbox")
            sf = st.get("state_file") or {}
            want = "No space left" if kind == "full" else "Read-only"
            check(sf.get("ok") is False and want in (sf.get("last_error") or ""), "status.state_file: %r" % sf)
            # the outbox's writes go through the writer thread: the quarantine
            # alert's failed write may land just after the state shows
            def outbox_in_memory():
                ob = h.a.status()["slack"]["outbox"]
                return want in (ob.get("disk_error") or "") and ob.get("in_memory", 0) >= 2 and ob
            try:
                wait_until(outbox_in_memory, 5, what="breach and quarantine alerts kept in memory")
            except faults.TestFailure as e:
                fail("%s: status.slack.outbox: %r" % (e, h.a.status()["slack"]["outbox"]))
            check(want in h.a.log_text(), "the log does not say %r" % want)
            h.assert_pool_consistent()
            check(h.addr() not in h.serving_set(), "still routed while quarantined")
            # Slack answers again, the disk is still bad: alerts go from memory
            h.slack.set_default("ok")
            msgs = h.slack.wait_for(lambda ms: all(k in kinds(ms) for k in ("maintenance", "breach", "quarantined")),
                                    15)
            ms = assert_responsive(h.a, "disk %s" % kind)
            probe.stop()
            faults.harness.check_answer_times(probe.times, "during the fault")
            seen = "+".join(kinds(msgs))

            # the disk comes back, and the overload with it
            if kind == "full":
                d.free()
            else:
                d.readonly(False)
            h.a.wait_state("SERVING", 15)
            h.a.feeder.set_busy(95)
            wait_until(lambda: len(h.reboots()) == 1, 20, what="the remediation once the disk takes writes")
            h.wait_reboots_done()
            st, _ = h.a.wait_state("SERVING", 15)
            _, sj = read_json(h.a.state_json_path())
            check(len(sj.get("remediations") or []) == 1, "remediations recorded: %r" % sj.get("remediations"))
            check(st["state_file"]["ok"] is True, "state_file after recovery: %r" % st["state_file"])
            msgs = h.assert_alerts(["maintenance", "breach", "quarantined", "step", "back"])
            check(h.a.status()["slack"]["outbox"]["in_memory"] == 0, "alerts still only in memory")
            check(len(h.reboot_calls()) == 1, "RebootInstances %d times" % len(h.reboot_calls()))
            return ("no reboot while it could not be recorded (QUARANTINED), state.json/outbox unchanged, "
                    "status says %r, alerts %s delivered from memory, status %.0f ms (worst %.0f ms of %d); "
                    "recovered: 1 recorded reboot, SERVING, %d alerts in all"
                    % (sf.get("last_error"), seen, ms * 1000, probe.worst * 1000, probe.n, len(msgs)))
    finally:
        d.close()


def readonly_at_start():
    """A fresh, read-only state dir at start: monkeyd still runs and
    serves (alerts in memory), and writes state.json once it can."""
    h, d = new_host("disk-rostart")
    try:
        with h:
            d.readonly()
            h.start()
            st = h.a.status()
            check(st["state_file"]["ok"] is False, "state_file: %r" % st["state_file"])
            check(st["slack"]["outbox"].get("disk_error"), "outbox: %r" % st["slack"]["outbox"])
            r = h.a.ctl("test-alert", "read-only", "state", "dir", timeout=30)
            check(r.returncode == 0, "test-alert from memory: %s %s" % (r.stdout, r.stderr))
            check(not os.path.exists(h.a.state_json_path()), "state.json written on a read-only dir")
            ms = assert_responsive(h.a, "read-only at start")
            d.readonly(False)
            h.a.ctl("drain", "disk", "back")
            h.a.wait_state("MAINTENANCE", 5)
            wait_until(lambda: os.path.exists(h.a.state_json_path()), 5, what="state.json once writable")
            _, sj = read_json(h.a.state_json_path())
            check(sj["state"] == "MAINTENANCE", "state.json: %s" % sj["state"])
            h.a.ctl("resume")
            h.a.wait_state("SERVING", 5)
            check(h.a.status()["state_file"]["ok"] is True, "state_file not ok after recovery")
            return ("runs and serves on a read-only fresh state dir (state_file.ok false), test alert "
                    "delivered from memory, status %.0f ms; state.json written once writable" % (ms * 1000))
    finally:
        d.close()


def main():
    global HOW
    reexec_in_mount_namespace()
    faults.preflight()
    HOW = choose_how()
    cells = Cells()
    cells.run("disk", "state-dir-full-%s" % HOW, fault_while_serving, "full")
    cells.run("disk", "state-dir-readonly-%s" % HOW, fault_while_serving, "ro")
    cells.run("disk", "state-dir-readonly-at-start-%s" % HOW, readonly_at_start)
    cells.finish()


if __name__ == "__main__":
    main()
