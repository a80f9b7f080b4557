"""Doctor Monkey demo: one real monkeyd, a synthetic /proc/stat advanced in
real time, [remedy] dry_run = yes. Shows the sustained-window rule, the
cycle, the reboot-loop guard, operator drain/resume and the history.
Everything runs in a temp dir and stops by itself (about 40 s)."""

import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import harness  # noqa: E402

WINDOW = 5.0


def say(text):
    print("\n\033[1m== %s\033[0m" % text if sys.stdout.isatty() else "\n== %s" % text, flush=True)


def ctl(agent, *args, user=None):
    argv = [harness.MONKEYCTL, "--socket", agent.socket] + list(args)
    if user:
        argv = harness.NOBODY + argv
    shown = ("(as nobody) " if user else "") + "monkeyctl " + " ".join(args)
    print("$ " + shown, flush=True)
    p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    out = (p.stdout + p.stderr).rstrip()
    if out:
        print("  " + out.replace("\n", "\n  "), flush=True)
    print("  (exit %d)" % p.returncode, flush=True)
    return p.returncode


def watch(agent, stop):
    p = harness.spawn([harness.MONKEYCTL, "--socket", agent.socket, "watch"],
                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in p.stdout:
        if stop.is_set():
            break
        print("  watch | " + line.rstrip(), flush=True)
    p.kill()


def wait_transitions(agent, to, count, timeout):
    """Wait until `count` transitions into `to` are in the history: the
    dry-run cycle passes through states faster than anyone could poll."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(1 for h in agent.history(200) if h.get("to") == to) >= count:
            return time.monotonic()
        time.sleep(0.02)
    harness.fail("fewer than %d transitions into %s within %.0fs" % (count, to, timeout))


def main():
    agent = harness.Agent(name="demo", host="demo-1", threshold=85, clear_below=60,
                          window="5s", interval="500ms", busy=15,
                          extra="[remedy]\nladder = reboot-instance\ndry_run = yes\n"
                                "max_per_window = 2\nwindow = 1h\n")
    say("Starting monkeyd (config %s)" % agent.config)
    print(open(agent.config).read(), flush=True)
    agent.start()
    stop = threading.Event()
    threading.Thread(target=watch, args=(agent, stop), daemon=True).start()
    time.sleep(1.0)
    ctl(agent, "status")

    say("A 2-second spike to 100%: shorter than the 5 s window, so nothing happens")
    agent.feeder.set_busy(100)
    time.sleep(2.0)
    agent.feeder.set_busy(15)
    time.sleep(1.5)
    ctl(agent, "status")

    say("Sustained 97% load: OVERLOADED after the window, then the dry-run cycle")
    t0 = agent.feeder.set_busy(97)
    wait_transitions(agent, "OVERLOADED", 1, WINDOW + 3)
    print("  breach declared %.2f s after the load started (window %.0f s, interval 0.5 s)"
          % (time.monotonic() - t0, WINDOW), flush=True)
    wait_transitions(agent, "REMEDIATING", 1, 5)
    agent.wait_state("SERVING", 10)

    say("The load stays: a second cycle, then the reboot-loop guard (max_per_window = 2) gives up")
    agent.wait_state("QUARANTINED", 3 * WINDOW + 10)
    ctl(agent, "status")

    say("The load is gone; an operator resumes the host")
    agent.feeder.set_busy(15)
    time.sleep(1.0)
    ctl(agent, "resume", user="nobody")
    ctl(agent, "resume")
    agent.wait_state("SERVING", 10)

    say("Maintenance: drain takes the host out until resume")
    ctl(agent, "drain", "kernel", "upgrade")
    agent.wait_state("MAINTENANCE", 5)
    ctl(agent, "status")
    ctl(agent, "resume")
    agent.wait_state("SERVING", 10)

    say("History")
    ctl(agent, "history", "-n", "30")
    say("Final status")
    ctl(agent, "status")
    stop.set()
    rc = agent.stop()
    say("The alerts monkeyd raised (no [slack] configured, so they went to its log)")
    with open(agent.log_path, errors="replace") as f:
        for line in f:
            if "alert (" in line:
                print("  " + line.rstrip())
    say("monkeyd stopped (exit %s)" % rc)
    return 0 if rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
