"""Doctor Monkey, the demo: a fleet of three on this machine (real
redis-server, haproxy, nginx apps and one monkeyd per host; Slack and EC2
doubles), one host overloads, and the whole cycle plays out live: it leaves
the pool, alerts with what burned, reboots through the (signed) EC2 API,
passes its checks after the boot, rejoins and reports in the same thread,
while HTTP load through haproxy loses nothing.

    tests/fleet/demo                 scenario 1: one host overloads
    tests/fleet/demo --whole-fleet   then scenario 2: every host at once
    tests/fleet/demo --alb           then scenario 7: behind an ALB, in an
                                     Auto Scaling group (standby, drain)
    tests/fleet/demo --all           every scenario the e2e test runs
    tests/fleet/demo --profile 0     without the CPU profiles (on by default
                                     where perf may profile the system)
    tests/fleet/demo --keep-evidence DIR   copy every incident's evidence there

Colour when stdout is a terminal (--colour/--no-colour to choose). Exits 0
when every step happened as it should; everything stops by itself."""

import argparse
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scenarios  # noqa: E402
import harness  # noqa: E402

LEGEND = """\
Each line: seconds since the fleet started, the HTTP load through haproxy
(or the ALB) so far, what happened (state: a monkeyd transition; pool:
Redis's serving set; lb: what haproxy or the ALB routes to; slack: a
message as the Slack double got it; ec2: a request to the EC2 double;
reboot: the simulated instance; behind the ALB, elb and asg: a call to the
ELBv2 or Auto Scaling double, target: a target's state in the target group,
asg: an instance's lifecycle in the group), the host, and the details."""


def perf_refusal():
    """None when `perf record -a -g` works here, else why not."""
    if not os.access("/usr/bin/perf", os.X_OK):
        return "/usr/bin/perf is not installed (Debian: linux-perf)"
    with tempfile.TemporaryDirectory() as d:
        try:
            cp = subprocess.run(["/usr/bin/perf", "record", "-a", "-g", "-q", "-o", os.path.join(d, "p"), "--", "true"],
                                capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as e:
            return "perf record failed: %s" % e
        if cp.returncode != 0:
            return "perf record -a -g is refused here: %s" % ((cp.stderr.strip().splitlines() or ["?"])[-1])
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--whole-fleet", action="store_true", help="also run scenario 2 (every host overloaded)")
    ap.add_argument("--alb", action="store_true",
                    help="also run scenario 7 (behind an ALB, in an Auto Scaling group)")
    ap.add_argument("--all", action="store_true", help="run every scenario")
    ap.add_argument("--colour", dest="colour", action="store_true", default=None)
    ap.add_argument("--no-colour", dest="colour", action="store_false")
    ap.add_argument("--profile", default="3s", metavar="DURATION",
                    help="[evidence] profile of every agent (default 3s; 0 turns it off)")
    ap.add_argument("--keep-evidence", metavar="DIR", help="copy every incident's evidence to DIR at the end")
    a = ap.parse_args()
    if a.profile not in ("0", "0s", ""):
        why = perf_refusal()
        if why:
            print("CPU profiles are off: %s" % why, flush=True)
        else:
            os.environ["MONKEY_FLEET_PROFILE"] = a.profile
    if a.keep_evidence:
        os.makedirs(a.keep_evidence, exist_ok=True)
        os.environ["MONKEY_FLEET_KEEP_EVIDENCE"] = os.path.abspath(a.keep_evidence)
    colour = sys.stdout.isatty() if a.colour is None else a.colour
    run = [scenarios.one_host]
    if a.all:
        run = scenarios.ALL
    else:
        if a.whole_fleet:
            run.append(scenarios.whole_fleet)
        if a.alb:
            run.append(scenarios.behind_alb)

    print(LEGEND, flush=True)
    t0 = time.monotonic()
    results, failed = [], []
    for fn in run:
        try:
            results.append(fn(live=True, colour=colour))
        except harness.TestFailure as e:
            failed.append((fn.__name__, str(e)))
            print("\nFAILED %s: %s" % (fn.__name__, e), flush=True)
    bold = (lambda t: "\033[1m%s\033[0m" % t) if colour else (lambda t: t)
    print("\n" + bold("Summary (%.0f s)" % (time.monotonic() - t0)))
    for r in results:
        extra = {k: v for k, v in r.items() if k not in ("scenario", "requests", "failed", "slack_messages",
                                                         "slack_threads", "ec2_requests", "reboots", "seconds")}
        print("  %-14s %5d requests, 0 failed; %2d Slack message(s) in %d thread(s); %d EC2 calls, %d reboot(s)%s"
              % (r["scenario"], r["requests"], r["slack_messages"], r["slack_threads"], r["ec2_requests"],
                 r["reboots"], ("; " + ", ".join("%s %s" % kv for kv in extra.items())) if extra else ""))
    for name, why in failed:
        print("  %-14s FAILED: %s" % (name, why))
    if not failed:
        print("Every step happened as it should. More: tests/fleet/demo --all, and the README.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
